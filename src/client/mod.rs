//! A Session-compatible client: identity, node list from the directory,
//! 3-hop onion paths with a reused guard, signed storage requests, retry on 421 with the
//! swarm the node returns, and end-to-end sealed, signed message bodies.
//!
//! Layout: `identity` (seed file, Session ID), `sealed` (message bodies), `paths` (pool,
//! guard, strikes), `transport` (one onion request), `state` (poll cursors), `cli`
//! (`snode client …`); this file holds `Client`, which ties them together and owns the retry
//! policy. Must not: log keys, texts or full Session IDs; everything it sends to nodes goes
//! through onion requests (the guard learns the client's address, never what it asks).

pub mod cli;
pub mod identity;
pub mod paths;
pub mod sealed;
pub mod state;
pub mod transport;
pub mod watch;

use std::collections::HashMap;
use std::net::Ipv4Addr;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use serde_json::{Value, json};

use crate::directory::client::{DirectoryClient, DirectoryClientError};
use crate::message::{AccountId, Namespace, message_hash};
use crate::onion::EncType;
use crate::swarm::{Membership, NodeInfo, SwarmId};
pub use identity::{Identity, IdentityError, parse_session_id};
pub use paths::{Culprit, PathManager};
pub use sealed::{Opened, Rejected, SealError, open_message, seal_message};
pub use state::{ClientState, StateError, state_path};
pub use transport::{Carrier, NodeResponse, SendError, TransportKind};

/// Default lifetime of a sent message: the public inbox maximum, as Session clients use.
pub const DEFAULT_TTL_MS: i64 = crate::message::TTL_MAXIMUM_PUBLIC_MS;
/// Tries of one request (new destination or new path each time) before giving up.
pub const MAX_ATTEMPTS: usize = 6;
/// Swarm members polled per `poll` (Session desktop polls 2 and merges by hash).
pub const POLL_NODES: usize = 2;
/// Pages of one node's `retrieve` followed per poll.
const MAX_PAGES: usize = 100;

/// Why a client operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The directory could not be asked for nodes.
    #[error("cannot get the node list")]
    Directory(#[from] DirectoryClientError),
    /// The HTTP client could not be built.
    #[error("cannot build the HTTP client")]
    Http(#[source] reqwest::Error),
    /// No node is left to talk to, or no swarm owns the account.
    #[error("no usable service nodes")]
    NoNodes,
    /// The destination answered with an error status.
    #[error("{method} failed with status {status}: {body}")]
    Rpc {
        /// The RPC method.
        method: String,
        /// Its status.
        status: u16,
        /// Its body (text or JSON).
        body: String,
    },
    /// No answer after every retry.
    #[error("{method}: no answer after {attempts} attempts")]
    Unreachable {
        /// The RPC method.
        method: String,
        /// Attempts made.
        attempts: usize,
        /// The last failure.
        #[source]
        last: LastAttempt,
    },
    /// The answer is not what the protocol says.
    #[error("{method}: unexpected answer: {why}")]
    BadResponse {
        /// The RPC method.
        method: String,
        /// What is wrong.
        why: String,
    },
    /// The message could not be sealed.
    #[error(transparent)]
    Seal(#[from] SealError),
    /// A push subscription failed (`watch`).
    #[error("watch: {0}")]
    Watch(String),
}

/// One message `poll` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    /// The node's hash of the message.
    pub hash: String,
    /// The sender's timestamp (ms).
    pub timestamp: i64,
    /// When the node drops it (ms).
    pub expiry: i64,
    /// The text and sender, or why the message was rejected.
    pub content: Result<Opened, Rejected>,
}

/// How the last of several attempts ended.
#[derive(Debug, thiserror::Error)]
pub enum LastAttempt {
    /// Nothing was tried.
    #[error("no attempt")]
    None,
    /// The node answered 421: the account's swarm changed.
    #[error("421 Misdirected Request")]
    Misdirected,
    /// The onion request failed.
    #[error(transparent)]
    Failed(#[from] SendError),
}

/// A client session: one identity and its view of the network.
pub struct Client {
    identity: Identity,
    carrier: Carrier,
    paths: PathManager,
    membership: Membership,
    /// Swarms learnt from 421 answers, which win over the directory's view.
    swarm_overrides: HashMap<AccountId, Vec<NodeInfo>>,
    enc_type: EncType,
    rng: StdRng,
}

impl Client {
    /// Fetches the active nodes from the directory (`get_n_service_nodes`).
    pub async fn connect(
        identity: Identity,
        directory_url: &str,
        enc_type: EncType,
        guard: Option<[u8; 32]>,
    ) -> Result<Client, ClientError> {
        let directory = DirectoryClient::new(directory_url)?;
        let nodes = directory.get_n_service_nodes(0, true).await?;
        Client::from_nodes(identity, nodes, enc_type, guard)
    }

    /// A client over a known node list.
    pub fn from_nodes(
        identity: Identity,
        nodes: Vec<NodeInfo>,
        enc_type: EncType,
        guard: Option<[u8; 32]>,
    ) -> Result<Client, ClientError> {
        let carrier = Carrier::new(TransportKind::Https).map_err(ClientError::Http)?;
        let membership = Membership::new(0, String::new(), nodes.clone());
        Ok(Client {
            identity,
            carrier,
            paths: PathManager::new(nodes, guard),
            membership,
            swarm_overrides: HashMap::new(),
            enc_type,
            rng: StdRng::from_entropy(),
        })
    }

    /// Reaches guards over `kind` from now on (HTTPS unless told; `snode client` defaults to
    /// QUIC, as libsession).
    pub fn with_transport(mut self, kind: TransportKind) -> Result<Client, ClientError> {
        self.carrier = Carrier::new(kind).map_err(ClientError::Http)?;
        Ok(self)
    }

    /// The nodes of the network as this client knows them.
    pub fn nodes(&self) -> &[NodeInfo] {
        &self.membership.nodes
    }

    /// This client's identity.
    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// The guard in use (to remember across runs).
    pub fn guard(&self) -> Option<[u8; 32]> {
        self.paths.guard()
    }

    /// The nodes believed to hold `account`'s messages.
    pub fn swarm_of(&self, account: &AccountId) -> Vec<NodeInfo> {
        let swarm: Vec<NodeInfo> = match self.swarm_overrides.get(account) {
            Some(nodes) => nodes.clone(),
            None => self
                .membership
                .swarm_for(account)
                .map(|s| self.membership.members(s).into_iter().cloned().collect())
                .unwrap_or_default(),
        };
        // Nodes struck out of the pool are avoided while others remain.
        let alive: Vec<NodeInfo> = swarm
            .iter()
            .filter(|n| self.paths.node(&n.pubkey_ed25519).is_some())
            .cloned()
            .collect();
        if alive.is_empty() { swarm } else { alive }
    }

    /// Sends one RPC to a member of `account`'s swarm: a new destination or path after each
    /// failure, the returned swarm after a 421. Returns the 2xx answer.
    pub async fn request(
        &mut self,
        account: &AccountId,
        method: &str,
        params: Value,
    ) -> Result<NodeResponse, ClientError> {
        let payload = rpc_payload(method, params);
        let mut tried: Vec<[u8; 32]> = Vec::new();
        let mut last = LastAttempt::None;
        for _ in 0..MAX_ATTEMPTS {
            let swarm = self.swarm_of(account);
            let Some(dest) = self.pick_destination(&swarm, &tried) else {
                return Err(ClientError::NoNodes);
            };
            tried.push(dest.pubkey_ed25519);
            match self.attempt(&dest, &payload).await {
                Ok(reply) if reply.status == 421 => {
                    last = LastAttempt::Misdirected;
                    self.apply_421(account, &reply.body);
                    // The new swarm's members are fresh destinations.
                    tried.retain(|k| k == &dest.pubkey_ed25519);
                }
                Ok(reply) => return check_status(method, reply),
                Err(e) => last = LastAttempt::Failed(e),
            }
        }
        Err(ClientError::Unreachable {
            method: method.into(),
            attempts: MAX_ATTEMPTS,
            last,
        })
    }

    /// Sends one RPC to exactly `dest` (retrying over new paths), whatever it answers.
    pub async fn request_node(
        &mut self,
        dest: &NodeInfo,
        method: &str,
        params: Value,
    ) -> Result<NodeResponse, ClientError> {
        let payload = rpc_payload(method, params);
        let mut last = LastAttempt::None;
        for _ in 0..MAX_ATTEMPTS {
            match self.attempt(dest, &payload).await {
                Ok(reply) => return Ok(reply),
                Err(e) => last = LastAttempt::Failed(e),
            }
            if self.paths.node(&dest.pubkey_ed25519).is_none() {
                break;
            }
        }
        Err(ClientError::Unreachable {
            method: method.into(),
            attempts: MAX_ATTEMPTS,
            last,
        })
    }

    /// A swarm member not on the current path and not yet tried, if there is one.
    fn pick_destination(&mut self, swarm: &[NodeInfo], tried: &[[u8; 32]]) -> Option<NodeInfo> {
        let path = self.paths.current_path().to_vec();
        let fresh = |n: &&NodeInfo| !tried.contains(&n.pubkey_ed25519);
        let off_path: Vec<&NodeInfo> = swarm
            .iter()
            .filter(fresh)
            .filter(|n| !path.contains(&n.pubkey_ed25519))
            .collect();
        let untried: Vec<&NodeInfo> = swarm.iter().filter(fresh).collect();
        let pick = if !off_path.is_empty() {
            off_path.choose(&mut self.rng).copied()
        } else if !untried.is_empty() {
            untried.choose(&mut self.rng).copied()
        } else {
            // Every member was tried: start over with any of them.
            swarm.choose(&mut self.rng)
        };
        pick.cloned()
    }

    /// One onion request to `dest` over the current path; failures strike the culprit.
    async fn attempt(
        &mut self,
        dest: &NodeInfo,
        payload: &[u8],
    ) -> Result<NodeResponse, SendError> {
        let path = match self.paths.path_for(&dest.pubkey_ed25519, &mut self.rng) {
            Ok(p) => p,
            Err(e) => return Err(SendError::NoPath(e)),
        };
        let result =
            transport::send_onion(&mut self.carrier, &path, dest, payload, self.enc_type).await;
        if let Err(e) = &result {
            self.blame(e, &path, dest);
        }
        result
    }

    /// Applies the strike rules of clients.md 1.3 to a failure.
    fn blame(&mut self, e: &SendError, path: &[NodeInfo], dest: &NodeInfo) {
        let culprit = match e {
            SendError::Build(crate::onion::BuildError::BadKey { hop }) => {
                Culprit::Node(path.get(*hop).unwrap_or(dest).pubkey_ed25519)
            }
            SendError::Build(_) => Culprit::Path,
            // Nothing was sent: nobody to blame.
            SendError::NoPath(_) => return,
            // An empty path means the destination itself was the entry.
            SendError::Guard(_) | SendError::GuardQuic(_) | SendError::NoQuicPort
                if path.is_empty() =>
            {
                Culprit::Node(dest.pubkey_ed25519)
            }
            SendError::Guard(_) | SendError::GuardQuic(_) | SendError::NoQuicPort => Culprit::Guard,
            SendError::Path { status, .. } => match e.named_node() {
                Some(k) => Culprit::Node(k),
                None if *status == 503 => Culprit::Guard,
                None => Culprit::Path,
            },
            SendError::Undecryptable => Culprit::Path,
        };
        self.paths.strike(culprit);
    }

    /// Replaces the cached swarm of `account` with the one a 421 answer carries.
    fn apply_421(&mut self, account: &AccountId, body: &Value) {
        let nodes: Vec<NodeInfo> = body["snodes"]
            .as_array()
            .map(|a| a.iter().filter_map(parse_swarm_node).collect())
            .unwrap_or_default();
        let swarm = body["swarm"]
            .as_str()
            .and_then(|s| u64::from_str_radix(s, 16).ok())
            .map_or(SwarmId::UNASSIGNED, SwarmId);
        if !nodes.is_empty() {
            let nodes = nodes
                .into_iter()
                .map(|mut n| {
                    n.swarm_id = swarm;
                    n
                })
                .collect();
            self.swarm_overrides.insert(*account, nodes);
        }
    }

    /// Stores `data` in `to`'s inbox (namespace 0, unauthenticated); returns the hash.
    pub async fn store(
        &mut self,
        to: &AccountId,
        data: &[u8],
        ttl_ms: i64,
        now_ms: i64,
    ) -> Result<String, ClientError> {
        let params = json!({
            "pubkey": to.to_hex(),
            "timestamp": now_ms,
            "ttl": ttl_ms,
            "data": STANDARD.encode(data),
        });
        let reply = self.request(to, "store", params).await?;
        let bad = |why: &str| ClientError::BadResponse {
            method: "store".into(),
            why: why.into(),
        };
        let hash = reply.body["hash"].as_str().ok_or_else(|| bad("no hash"))?;
        if hash != message_hash(to, Namespace::DEFAULT, data) {
            return Err(bad("the node's hash is not the message's"));
        }
        if let Some(swarm) = reply.body["swarm"].as_object()
            && !swarm.is_empty()
            && swarm.values().all(|e| e.get("failed").is_some())
        {
            return Err(bad("every swarm member failed to store"));
        }
        Ok(hash.to_owned())
    }

    /// Seals `text` to the Session ID `to`, signed by this identity, and stores it; returns
    /// the message hash.
    pub async fn send(
        &mut self,
        to: &AccountId,
        text: &str,
        ttl_ms: i64,
        now_ms: i64,
    ) -> Result<String, ClientError> {
        let data = seal_message(&self.identity, to, text)?;
        self.store(to, &data, ttl_ms, now_ms).await
    }

    /// The signed params of a `retrieve` of our namespace 0 (clients.md 4.2).
    fn retrieve_params(&self, last_hash: Option<&str>, now_ms: i64) -> Value {
        let sig = self
            .identity
            .sign(&crate::sign::msg::retrieve(Namespace::DEFAULT, now_ms));
        let mut p = json!({
            "pubkey": self.identity.session_id(),
            "pubkey_ed25519": hex::encode(self.identity.ed25519_public()),
            "timestamp": now_ms,
            "signature": STANDARD.encode(sig),
        });
        if let Some(h) = last_hash {
            p["last_hash"] = json!(h);
        }
        p
    }

    /// Fetches new messages from up to `POLL_NODES` members of our swarm (each from its own
    /// cursor in `state`), merges them by hash, and opens them. Messages already reported
    /// are skipped. Fails only if no polled node answered.
    pub async fn poll(
        &mut self,
        state: &mut ClientState,
        now_ms: i64,
    ) -> Result<Vec<Received>, ClientError> {
        state.prune(now_ms);
        let me = self.identity.account();
        let mut swarm = self.swarm_of(&me);
        if swarm.is_empty() {
            return Err(ClientError::NoNodes);
        }
        swarm.shuffle(&mut self.rng);
        let mut out = Vec::new();
        let mut answered = 0;
        let mut last_err = None;
        for node in swarm.iter().take(POLL_NODES) {
            match self.poll_node(node, state, now_ms, &mut out).await {
                Ok(()) => answered += 1,
                Err(e) => last_err = Some(e),
            }
        }
        if let Some(g) = self.guard() {
            state.guard = Some(hex::encode(g));
        }
        match (answered, last_err) {
            (0, Some(e)) => Err(e),
            _ => Ok(out),
        }
    }

    async fn poll_node(
        &mut self,
        node: &NodeInfo,
        state: &mut ClientState,
        now_ms: i64,
        out: &mut Vec<Received>,
    ) -> Result<(), ClientError> {
        let key = hex::encode(node.pubkey_ed25519);
        for _ in 0..MAX_PAGES {
            let params =
                self.retrieve_params(state.last_hash.get(&key).map(String::as_str), now_ms);
            let reply = self.request_node(node, "retrieve", params).await?;
            if reply.status == 421 {
                let me = self.identity.account();
                self.apply_421(&me, &reply.body);
                return Err(ClientError::Rpc {
                    method: "retrieve".into(),
                    status: 421,
                    body: "node is not in our swarm".into(),
                });
            }
            let reply = check_status("retrieve", reply)?;
            let messages = reply.body["messages"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            for m in &messages {
                let Some(r) = self.open_retrieved(m) else {
                    continue;
                };
                state.last_hash.insert(key.clone(), r.hash.clone());
                if state.mark_seen(&r.hash, r.expiry) {
                    out.push(r);
                }
            }
            if messages.is_empty() || reply.body["more"].as_bool() != Some(true) {
                break;
            }
        }
        Ok(())
    }

    /// One entry of a `retrieve` answer, opened; `None` if the entry itself is malformed.
    fn open_retrieved(&self, m: &Value) -> Option<Received> {
        let hash = m["hash"].as_str()?.to_owned();
        let data = m["data"].as_str()?;
        let data = STANDARD
            .decode(data)
            .or_else(|_| STANDARD_NO_PAD.decode(data))
            .ok();
        let content = match data {
            Some(d) => open_message(&self.identity, &d),
            None => Err(Rejected::Malformed),
        };
        Some(Received {
            hash,
            timestamp: m["timestamp"].as_i64().unwrap_or(0),
            expiry: m["expiration"].as_i64().unwrap_or(0),
            content,
        })
    }
}

fn rpc_payload(method: &str, params: Value) -> Vec<u8> {
    json!({"method": method, "params": params})
        .to_string()
        .into_bytes()
}

fn check_status(method: &str, reply: NodeResponse) -> Result<NodeResponse, ClientError> {
    if (200..300).contains(&reply.status) {
        Ok(reply)
    } else {
        Err(ClientError::Rpc {
            method: method.into(),
            status: reply.status,
            body: match &reply.body {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            },
        })
    }
}

/// A node of a `get_swarm` / 421 answer (`pubkey_ed25519`, `pubkey_x25519`, `ip`,
/// `port_https`).
fn parse_swarm_node(v: &Value) -> Option<NodeInfo> {
    let key = |name: &str| -> Option<[u8; 32]> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(v[name].as_str()?, &mut out).ok()?;
        Some(out)
    };
    Some(NodeInfo {
        pubkey_ed25519: key("pubkey_ed25519")?,
        pubkey_x25519: key("pubkey_x25519")?,
        ip: v["ip"].as_str()?.parse::<Ipv4Addr>().ok()?,
        https_port: v["port_https"]
            .as_u64()
            .and_then(|p| u16::try_from(p).ok())?,
        omq_port: v["port_omq"]
            .as_u64()
            .and_then(|p| u16::try_from(p).ok())
            .unwrap_or(0),
        swarm_id: SwarmId::UNASSIGNED,
        version: [0; 3],
    })
}
