//! Test fixtures for the RPC: nodes on temp stores with a fixed clock, a hand-built
//! membership, a loopback forwarder that runs peers' handlers in-process (or answers with
//! scripted failures), and a signing client.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};

use ed25519_dalek::{Signer, SigningKey};
use serde_json::Value;
use tokio::sync::watch;

use crate::keys::{NodeKeys, ed25519_pk_to_x25519};
use crate::message::{AccountId, b64};
use crate::metrics::Metrics;
use crate::rpc::{
    ForwardOutcome, Origin, RpcBody, RpcContext, RpcResponse, SwarmForwarder, handle_method,
};
use crate::store::{Store, StoreOptions};
use crate::swarm::{Membership, NodeInfo, SwarmId, swarm_space};

/// The fixed "now" of every test (2023-11-14T22:13:20Z).
pub(super) const NOW: i64 = 1_700_000_000_000;
/// One day in ms.
pub(super) const DAY: i64 = 86_400_000;

/// How a scripted peer answers.
#[derive(Clone)]
pub(super) enum PeerBehaviour {
    /// Runs the request on this node's context with `Origin::Peer`.
    Node(Box<RpcContext>),
    /// Answers this, whatever was asked.
    Fixed(ForwardOutcome),
}

/// A forwarder that records calls and answers per peer.
#[derive(Default)]
pub(super) struct TestForwarder {
    pub(super) peers: Mutex<HashMap<[u8; 32], PeerBehaviour>>,
    /// (method, params, number of peers) per call.
    pub(super) calls: Mutex<Vec<(String, Value, usize)>>,
}

/// What a real peer's answer becomes on the wire back to the entry node.
pub(super) fn to_reply(r: RpcResponse) -> ForwardOutcome {
    match (r.status, r.body) {
        (200..=299, RpcBody::Json(v)) => ForwardOutcome::Ok(v),
        (200..=299, _) => ForwardOutcome::BadResponse,
        (code, RpcBody::Text(t)) => ForwardOutcome::Failed { code, reason: t },
        (code, RpcBody::Json(v)) => ForwardOutcome::Failed {
            code,
            reason: v.to_string(),
        },
        (code, RpcBody::Bytes(_)) => ForwardOutcome::Failed {
            code,
            reason: String::new(),
        },
    }
}

impl SwarmForwarder for TestForwarder {
    fn forward<'a>(
        &'a self,
        peers: Vec<NodeInfo>,
        method: &'a str,
        params: &'a Value,
        _accepted_ms: i64,
    ) -> crate::rpc::ForwardFuture<'a> {
        Box::pin(async move {
            self.calls.lock().expect("lock").push((
                method.to_string(),
                params.clone(),
                peers.len(),
            ));
            let mut out = Vec::new();
            for p in peers {
                let b = self
                    .peers
                    .lock()
                    .expect("lock")
                    .get(&p.pubkey_ed25519)
                    .cloned();
                let reply = match b {
                    Some(PeerBehaviour::Node(ctx)) => {
                        to_reply(handle_method(&ctx, method, params, Origin::Peer).await)
                    }
                    Some(PeerBehaviour::Fixed(r)) => r,
                    None => ForwardOutcome::Timeout,
                };
                out.push((p.pubkey_ed25519, reply));
            }
            out
        })
    }
}

/// A test network: `nodes[0]` is the entry node, `nodes[1..]` its swarm peers; one more
/// node sits alone in a far-away swarm (`foreign`), so wrong-swarm accounts exist.
pub(super) struct Net {
    pub(super) nodes: Vec<RpcContext>,
    pub(super) forwarder: Arc<TestForwarder>,
    pub(super) membership: Arc<Membership>,
    pub(super) foreign: NodeInfo,
    _dirs: Vec<tempfile::TempDir>,
}

fn node_info(keys: &NodeKeys, swarm: u64, port: u16) -> NodeInfo {
    NodeInfo {
        pubkey_ed25519: keys.pubkey_ed25519(),
        pubkey_x25519: keys.pubkey_x25519(),
        ip: Ipv4Addr::new(10, 0, 0, port as u8),
        https_port: port,
        omq_port: port + 1,
        swarm_id: SwarmId(swarm),
        version: [2, 8, 0],
    }
}

/// The far-away swarm of a network centred on `owner`.
pub(super) fn foreign_swarm(owner: &AccountId) -> u64 {
    swarm_space(owner).wrapping_add(1 << 63)
}

/// An account that maps to the foreign swarm.
pub(super) fn foreign_account(owner: &AccountId) -> AccountId {
    let mut key = [0u8; 32];
    key[..8].copy_from_slice(&foreign_swarm(owner).to_be_bytes());
    AccountId { kind: 0x05, key }
}

/// A network of `size` swarm members whose swarm owns `owner`; every peer runs for real.
pub(super) fn net(size: usize, owner: &AccountId) -> Net {
    net_with(size, owner, 1 << 40)
}

/// As `net`, with the entry node's store capped at `max_bytes`.
pub(super) fn net_with(size: usize, owner: &AccountId, max_bytes: u64) -> Net {
    let ours = swarm_space(owner);
    let keys: Vec<Arc<NodeKeys>> = (0..size)
        .map(|i| Arc::new(NodeKeys::from_seed([i as u8 + 1; 32])))
        .collect();
    let foreign_keys = NodeKeys::from_seed([99; 32]);
    let foreign = node_info(&foreign_keys, foreign_swarm(owner), 9000);
    let mut infos: Vec<NodeInfo> = keys
        .iter()
        .enumerate()
        .map(|(i, k)| node_info(k, ours, 1000 + 10 * i as u16))
        .collect();
    infos.push(foreign.clone());
    let membership = Arc::new(Membership::new(7, "ab".repeat(32), infos));
    let forwarder = Arc::new(TestForwarder::default());
    let mut dirs = Vec::new();
    let mut nodes = Vec::new();
    for (i, k) in keys.iter().enumerate() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cap = if i == 0 { max_bytes } else { 1 << 40 };
        let store = Store::open(
            dir.path(),
            StoreOptions {
                max_bytes: cap,
                ..Default::default()
            },
        )
        .expect("open");
        dirs.push(dir);
        let (_tx, rx) = watch::channel(membership.clone());
        let ctx = RpcContext {
            store,
            keys: k.clone(),
            membership: rx,
            forwarder: forwarder.clone(),
            metrics: Metrics::new(),
            clock: Arc::new(|| NOW),
            testnet: false,
            rng: crate::rpc::seeded_rng(i as u64),
        };
        if i > 0 {
            forwarder.peers.lock().expect("lock").insert(
                k.pubkey_ed25519(),
                PeerBehaviour::Node(Box::new(ctx.clone())),
            );
        }
        nodes.push(ctx);
    }
    Net {
        nodes,
        forwarder,
        membership,
        foreign,
        _dirs: dirs,
    }
}

impl Net {
    /// The entry node.
    pub(super) fn entry(&self) -> &RpcContext {
        &self.nodes[0]
    }

    /// Scripts peer `i`'s answer.
    pub(super) fn script(&self, i: usize, reply: ForwardOutcome) {
        let pk = self.nodes[i].keys.pubkey_ed25519();
        self.forwarder
            .peers
            .lock()
            .expect("lock")
            .insert(pk, PeerBehaviour::Fixed(reply));
    }

    /// Runs a method on the entry node as a client.
    pub(super) async fn call(&self, method: &str, params: Value) -> RpcResponse {
        handle_method(self.entry(), method, &params, Origin::Client).await
    }

    /// Node `i`'s ed25519 pubkey as hex (the key of its `swarm` entry).
    pub(super) fn hex(&self, i: usize) -> String {
        hex::encode(self.nodes[i].keys.pubkey_ed25519())
    }
}

/// A client identity: an Ed25519 key, its Session ID (`05`) and its group form (`03`).
pub(super) struct Client {
    pub(super) sk: SigningKey,
}

impl Client {
    /// The client of seed `[n; 32]`.
    pub(super) fn new(n: u8) -> Self {
        Client {
            sk: SigningKey::from_bytes(&[n; 32]),
        }
    }

    /// Ed25519 pubkey.
    pub(super) fn ed(&self) -> [u8; 32] {
        self.sk.verifying_key().to_bytes()
    }

    /// `pubkey_ed25519` param.
    pub(super) fn ed_hex(&self) -> String {
        hex::encode(self.ed())
    }

    /// The `05` Session ID.
    pub(super) fn session(&self) -> AccountId {
        AccountId {
            kind: 0x05,
            key: ed25519_pk_to_x25519(&self.ed()).expect("valid key"),
        }
    }

    /// The `03` group account keyed by this Ed25519 key.
    pub(super) fn group(&self) -> AccountId {
        AccountId {
            kind: 0x03,
            key: self.ed(),
        }
    }

    /// Base64 signature of `msg`.
    pub(super) fn sign(&self, msg: &[u8]) -> String {
        b64(&self.sk.sign(msg).to_bytes())
    }
}

/// The text body of a response (panics on other bodies: tests only).
pub(super) fn text_of(r: &RpcResponse) -> &str {
    match &r.body {
        RpcBody::Text(t) => t,
        other => panic!("expected text, got {other:?}"),
    }
}

/// The JSON body of a response.
pub(super) fn json_of(r: &RpcResponse) -> &Value {
    match &r.body {
        RpcBody::Json(v) => v,
        other => panic!("expected json, got {other:?}"),
    }
}

/// Asserts a status and text body.
#[track_caller]
pub(super) fn assert_text(r: &RpcResponse, status: u16, text: &str) {
    assert_eq!((r.status, text_of(r)), (status, text), "{r:?}");
}

/// Verifies a node's base64 signature over `msg`.
pub(super) fn node_signed(ctx: &RpcContext, msg: &[u8], sig_b64: &Value) -> bool {
    let sig = crate::message::b64_decode(sig_b64.as_str().expect("signature string")).expect("b64");
    let sig: [u8; 64] = sig.try_into().expect("64 bytes");
    crate::sign::verify_ed25519(&ctx.keys.pubkey_ed25519(), msg, &sig)
}
