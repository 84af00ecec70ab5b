//! Replication end to end, below the node: replicas made of a store, the peer router on a real
//! TLS listener, an `HttpForwarder` in the RPC context and the replication loops, with the
//! membership set by the test (no directory), so every scenario is exact: a peer that is down
//! while clients write, a client deletion that must not come back, a member that missed data,
//! and a swarm change that moves data to its new owners.
#![allow(missing_docs)]

mod common;

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::{Signer as _, SigningKey};
use serde_json::{Value, json};
use snode::api::listener::{PublicListener, RemoteAddr};
use snode::api::rate_limit::RateLimiter;
use snode::api::{AppState, onion::OnionServices, onion_exit::ExitClient};
use snode::clock::Clock;
use snode::config::{Config, ReplicationConfig};
use snode::keys::NodeKeys;
use snode::message::{AccountId, Message, Namespace, message_hash};
use snode::metrics::Metrics;
use snode::peer::client::PeerClient;
use snode::replication::{Replicator, ReplicatorParts};
use snode::rpc::{Origin, RpcContext, handle_method};
use snode::store::Store;
use snode::swarm::{Membership, NodeInfo, SwarmId, swarm_space};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// One replica: everything of a node that replication touches.
struct Replica {
    keys: Arc<NodeKeys>,
    store: Store,
    ctx: RpcContext,
    state: AppState,
    metrics: Metrics,
    membership: watch::Sender<Arc<Membership>>,
    addr: SocketAddr,
    tcp: Option<TcpListener>,
    tls: Arc<rustls::ServerConfig>,
    cancel: CancellationToken,
    tasks: tokio_util::task::TaskTracker,
    _dir: tempfile::TempDir,
}

fn clock() -> Clock {
    Arc::new(snode::clock::wall_clock_ms)
}

fn now() -> i64 {
    snode::clock::wall_clock_ms()
}

fn fast() -> ReplicationConfig {
    ReplicationConfig {
        forward_timeout: Duration::from_millis(800),
        retry_max_backoff: Duration::from_millis(400),
        anti_entropy_interval: Duration::from_millis(300),
        handoff_interval: Duration::from_millis(300),
    }
}

impl Replica {
    /// A replica with its listener bound (not yet serving) and its loops running.
    async fn new(seed: u8) -> Replica {
        let common::ReplicaParts {
            dir,
            keys,
            tls,
            store,
        } = common::replica_parts(seed);
        let tcp = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .expect("bind");
        let addr = tcp.local_addr().expect("addr");
        let (tx, rx) = watch::channel(Arc::new(Membership::default()));
        let metrics = Metrics::new();
        let client = PeerClient::new(keys.clone(), clock(), None, true).expect("client");
        let repl = Replicator::new(ReplicatorParts {
            store: store.clone(),
            client: client.clone(),
            me: keys.pubkey_ed25519(),
            membership: rx.clone(),
            metrics: metrics.clone(),
            clock: clock(),
            config: fast(),
            testnet: false,
        });
        let ctx = RpcContext {
            store: store.clone(),
            keys: keys.clone(),
            membership: rx,
            forwarder: Arc::new(repl.forwarder()),
            metrics: metrics.clone(),
            clock: clock(),
            testnet: false,
            rng: snode::rpc::seeded_rng(7),
        };
        let cfg = Config::default();
        let state = AppState {
            rpc: ctx.clone(),
            limiter: Arc::new(RateLimiter::new(
                cfg.rate_limit,
                tokio::time::Instant::now(),
            )),
            metrics: metrics.clone(),
            keys: keys.clone(),
            onion_key: Arc::new(
                snode::onion::NodeOnionKey::from_secret(&keys.x25519_secret().to_bytes())
                    .expect("onion key"),
            ),
            peers: client,
            onion: OnionServices {
                exit: Arc::new(ExitClient::new(true).expect("exit")),
            },
            status: Arc::new(snode::status::StatusState::new(
                metrics.clone(),
                now(),
                true,
            )),
            previous_membership: Arc::default(),
            anti_entropy: repl.responder(),
        };
        let cancel = CancellationToken::new();
        tokio::spawn(repl.clone().run_retry(cancel.clone()));
        tokio::spawn(repl.clone().run_handoff(cancel.clone()));
        tokio::spawn(repl.run_anti_entropy(cancel.clone()));
        Replica {
            keys,
            store,
            ctx,
            state,
            metrics,
            membership: tx,
            addr,
            tcp: Some(tcp),
            tls,
            cancel,
            tasks: tokio_util::task::TaskTracker::new(),
            _dir: dir,
        }
    }

    /// Starts answering peers. Until then connections hang (the socket is bound but nobody
    /// accepts), which the sender sees as a timeout.
    fn serve(&mut self) {
        let tcp = self.tcp.take().expect("serve once");
        let listener = PublicListener::start(
            tcp,
            Some(self.tls.clone()),
            snode::api::listener::ListenerLimits::default(),
            &self.tasks,
            self.cancel.child_token(),
        )
        .expect("listener");
        let app = snode::api::peer::router(self.state.clone())
            .into_make_service_with_connect_info::<RemoteAddr>();
        let c = self.cancel.clone();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(c.cancelled_owned())
                .await;
        });
    }

    fn info(&self, swarm: u64) -> NodeInfo {
        NodeInfo {
            pubkey_ed25519: self.keys.pubkey_ed25519(),
            pubkey_x25519: self.keys.pubkey_x25519(),
            ip: Ipv4Addr::LOCALHOST,
            https_port: self.addr.port(),
            omq_port: 0,
            swarm_id: SwarmId(swarm),
            version: [2, 8, 0],
        }
    }

    fn has(&self, hash: &str) -> bool {
        self.store.get_by_hash(hash, now()).expect("get").is_some()
    }

    /// Sends `body` to `to` (a member of swarm 1) as a forwarded client request signed by this
    /// node; the answer's status and text.
    async fn forward_to(&self, to: &Replica, body: &Value) -> (u16, String) {
        let a = self
            .state
            .peers
            .post(
                &to.info(1),
                snode::peer::PATH_STORAGE_CC,
                body.to_string().into_bytes(),
                Duration::from_secs(10),
            )
            .await
            .expect("answer");
        (a.status, String::from_utf8_lossy(&a.body).into_owned())
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// Gives every replica the membership placing replica `i` in `swarms[i]`.
fn place(replicas: &[&Replica], swarms: &[u64]) {
    for r in replicas {
        view(r, replicas, swarms);
    }
}

/// Gives `viewer` alone the membership placing replica `i` in `swarms[i]` (a node whose
/// directory poll ran ahead of, or behind, the others').
fn view(viewer: &Replica, replicas: &[&Replica], swarms: &[u64]) {
    let nodes = replicas
        .iter()
        .zip(swarms)
        .map(|(r, &s)| r.info(s))
        .collect();
    let m = Arc::new(Membership::new(
        now() as u64,
        format!("{:064x}", now()),
        nodes,
    ));
    // As `node` keeps it: the snapshot replaced is the previous membership.
    let old = viewer.membership.send_replace(m);
    viewer.state.previous_membership.set(old, now());
}

/// A Session user.
struct User {
    sk: SigningKey,
    account: AccountId,
}

impl User {
    fn new(seed: u8) -> User {
        let sk = SigningKey::from_bytes(&[seed; 32]);
        let x = snode::keys::ed25519_pk_to_x25519(&sk.verifying_key().to_bytes()).expect("x");
        User {
            sk,
            account: AccountId { kind: 5, key: x },
        }
    }

    fn swarm(&self) -> u64 {
        swarm_space(&self.account)
    }

    /// A message of this user with a client timestamp `age_ms` in the past.
    fn message(&self, data: &[u8], age_ms: i64) -> Message {
        Message {
            account: self.account,
            namespace: Namespace(0),
            hash: message_hash(&self.account, Namespace(0), data),
            timestamp_ms: now() - age_ms,
            expiry_ms: now() + 3_600_000,
            data: data.to_vec(),
            expiry_log: None,
        }
    }

    async fn store(&self, at: &Replica, data: &[u8]) -> (String, Value) {
        let p = json!({"pubkey": self.account.to_hex(), "timestamp": now(), "ttl": 3_600_000,
                       "data": STANDARD.encode(data)});
        let r = handle_method(&at.ctx, "store", &p, Origin::Client).await;
        assert_eq!(r.status, 200, "{r:?}");
        let snode::rpc::RpcBody::Json(v) = r.body else {
            panic!("json")
        };
        (v["hash"].as_str().expect("hash").to_string(), v)
    }

    async fn delete(&self, at: &Replica, hash: &str) {
        let sig = STANDARD.encode(self.sk.sign(format!("delete{hash}").as_bytes()).to_bytes());
        let p = json!({"pubkey": self.account.to_hex(),
                       "pubkey_ed25519": hex::encode(self.sk.verifying_key().to_bytes()),
                       "messages": [hash], "signature": sig});
        let r = handle_method(&at.ctx, "delete", &p, Origin::Client).await;
        assert_eq!(r.status, 200, "{r:?}");
    }
}

async fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    common::wait_for(what, Duration::from_secs(20), async || f().then_some(())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_was_down_gets_every_write_it_missed_and_no_deleted_one() {
    let user = User::new(1);
    let mut a = Replica::new(11).await;
    let mut b = Replica::new(12).await;
    let mut c = Replica::new(13).await;
    let s = user.swarm();
    place(&[&a, &b, &c], &[s, s, s]);
    a.serve();
    b.serve();

    // C is down: its entries time out, and the forwards are queued.
    let (kept, resp) = user.store(&a, b"kept").await;
    let c_entry = &resp["swarm"][hex::encode(c.keys.pubkey_ed25519())];
    assert_eq!(c_entry["failed"], json!(true), "{resp}");
    assert!(b.has(&kept));
    let (gone, _) = user.store(&a, b"deleted while C was down").await;
    user.delete(&a, &gone).await;
    assert!(!a.has(&gone) && !b.has(&gone));
    assert!(
        a.store.pending_len() >= 3,
        "store, store, delete queued for C"
    );

    c.serve();
    eventually("C receives the missed store", || c.has(&kept)).await;
    eventually("the retry queue drains", || a.store.pending_len() == 0).await;
    assert!(!c.has(&gone), "a deleted message is never delivered late");
    let delivered = a
        .metrics
        .replication_retries_total
        .with_label_values(&["delivered"])
        .get();
    assert!(
        delivered >= 2,
        "the store push and the delete retry were delivered"
    );
    // A late copy of the deleted message (a retried push from anywhere) does not resurrect it.
    let stale = user.message(b"deleted while C was down", 60_000);
    assert_eq!(stale.hash, gone);
    assert_eq!(b.store.bulk_store(&[stale], now()).expect("bulk"), 0);
}

/// docs/simulation.md, finding 9: a member whose listing says for a moment that it left the
/// account's swarm answers a forwarded delete 421. The entry node keeps the delete queued
/// while its own listing still puts the member in the swarm, and delivers it once the two
/// agree; it drops the delete once its own listing moves the member out (the hand-off then
/// carries the account's tombstones).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delete_refused_421_by_a_listed_member_is_kept_until_the_listings_agree() {
    let user = User::new(4);
    let mut a = Replica::new(41).await;
    let mut b = Replica::new(42).await;
    let mut c = Replica::new(43).await;
    let s = user.swarm();
    let elsewhere = s ^ (1 << 63);
    a.serve();
    b.serve();
    c.serve();
    let all = [&a, &b, &c];
    place(&all, &[s, s, s]);
    let (kept, _) = user.store(&a, b"deleted while C's listing lags").await;
    eventually("C holds the message", || c.has(&kept)).await;

    // C's listing moves C out of the account's swarm; A's and B's do not.
    view(&c, &all, &[s, s, elsewhere]);
    user.delete(&a, &kept).await;
    assert!(!a.has(&kept) && !b.has(&kept));
    assert!(
        a.store.pending_len() >= 1,
        "the delete C refused 421 is queued"
    );
    let retried = || {
        a.metrics
            .replication_retries_total
            .with_label_values(&["retry"])
            .get()
    };
    eventually("A retries the delete and C refuses it again", || {
        retried() >= 2
    })
    .await;
    assert!(
        a.store.pending_len() >= 1,
        "still queued while the listings differ"
    );

    // The listings agree again: the queued delete reaches C.
    view(&c, &all, &[s, s, s]);
    eventually("C applies the delete", || !c.has(&kept)).await;
    eventually("A's queue drains", || a.store.pending_len() == 0).await;

    // The same refusal, but now A's own listing moves C out too: the entry is dropped.
    let (second, _) = user.store(&a, b"deleted after C left").await;
    eventually("C holds the second message", || c.has(&second)).await;
    view(&c, &all, &[s, s, elsewhere]);
    user.delete(&a, &second).await;
    assert!(
        a.store.pending_len() >= 1,
        "the delete C refused 421 is queued"
    );
    view(&a, &all, &[s, s, elsewhere]);
    eventually("A drops the delete C's swarm no longer needs", || {
        a.store.pending_len() == 0
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anti_entropy_repairs_missing_data_and_spreads_deletions() {
    let user = User::new(2);
    let mut a = Replica::new(21).await;
    let mut b = Replica::new(22).await;
    let s = user.swarm();
    place(&[&a, &b], &[s, s]);
    // Written behind the forwarder's back: B has two messages A lacks; both have a third,
    // which a client then deletes on A only.
    let only_b: Vec<Message> = (0..2u8).map(|i| user.message(&[i; 40], 120_000)).collect();
    b.store.bulk_store(&only_b, now()).expect("bulk");
    let shared = user.message(b"shared", 120_000);
    a.store
        .bulk_store(std::slice::from_ref(&shared), now())
        .expect("bulk");
    b.store
        .bulk_store(std::slice::from_ref(&shared), now())
        .expect("bulk");
    assert_eq!(
        a.store
            .delete_hashes(&user.account, std::slice::from_ref(&shared.hash), now())
            .expect("d")
            .len(),
        1
    );
    a.serve();
    b.serve();
    eventually("A pulls what only B had", || {
        only_b.iter().all(|m| a.has(&m.hash))
    })
    .await;
    eventually("B applies A's deletion", || !b.has(&shared.hash)).await;
    assert_eq!(
        b.store
            .tombstoned(std::slice::from_ref(&shared.hash))
            .expect("t")
            .len(),
        1
    );
    // A session counts its repairs when it ends, after the repairs themselves (and after the
    // revocation comparison that closes it): poll for the count too.
    let repaired = || -> u64 {
        ["pushed", "pulled", "deleted_local", "deleted_remote"]
            .iter()
            .map(|k| {
                a.metrics
                    .anti_entropy_repairs_total
                    .with_label_values(&[k])
                    .get()
                    + b.metrics
                        .anti_entropy_repairs_total
                        .with_label_values(&[k])
                        .get()
            })
            .sum()
    };
    eventually("two copies and one deletion counted", || repaired() >= 3).await;
}

/// Subaccount revocations reach the members that missed them (issue 12, finding 7): A and B
/// each took requests the other never saw — A revoked token 1, B unrevoked it later and
/// revoked token 2 — and anti-entropy leaves both on the latest operation of each token.
/// When the account then moves to D's swarm, the hand-off gives D the states; A and B keep
/// theirs (seed 400357).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocations_converge_by_anti_entropy_and_follow_the_account() {
    let user = User::new(5);
    let mut a = Replica::new(51).await;
    let mut b = Replica::new(52).await;
    let mut d = Replica::new(53).await;
    let (here, far) = (user.swarm(), user.swarm().wrapping_add(1 << 63));
    place(&[&a, &b, &d], &[here, here, far]);
    let (t1, t2) = ([1u8; 36], [2u8; 36]);
    a.store
        .revoke_subaccounts(&user.account, &[t1], now() - 10_000)
        .expect("revoke");
    b.store
        .unrevoke_subaccounts(&user.account, &[t1], now() - 5_000)
        .expect("unrevoke");
    b.store
        .revoke_subaccounts(&user.account, &[t2], now() - 5_000)
        .expect("revoke");
    a.serve();
    b.serve();
    d.serve();
    let settled = |r: &Replica| {
        !r.store.is_revoked(&user.account, &t1).expect("q")
            && r.store.is_revoked(&user.account, &t2).expect("q")
    };
    eventually("A and B agree on the latest operations", || {
        settled(&a) && settled(&b)
    })
    .await;
    place(&[&a, &b, &d], &[far, far, here]);
    eventually("D holds the states", || settled(&d)).await;
    // A and B keep theirs: back in the account's swarm, they still refuse the token.
    assert!(settled(&a) && settled(&b));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_swarm_change_hands_data_to_its_new_owners_then_deletes_it() {
    let user = User::new(3);
    let mut a = Replica::new(31).await;
    let mut d = Replica::new(32).await;
    let (here, far) = (user.swarm(), user.swarm().wrapping_add(1 << 63));
    place(&[&a, &d], &[here, far]);
    let msgs: Vec<Message> = (0..50u8).map(|i| user.message(&[i; 500], 1_000)).collect();
    a.store.bulk_store(&msgs, now()).expect("bulk");
    a.serve();
    d.serve();
    // The swarms swap: D's swarm now owns the user.
    place(&[&a, &d], &[far, here]);
    eventually("D holds everything", || msgs.iter().all(|m| d.has(&m.hash))).await;
    eventually("A let go of it", || a.store.stats().messages == 0).await;
    assert_eq!(a.metrics.handoff_messages_total.get(), 50);
    // Hand-off deletions leave no tombstone: the data may legitimately come back.
    let hashes: Vec<String> = msgs.iter().map(|m| m.hash.clone()).collect();
    assert!(a.store.tombstoned(&hashes).expect("t").is_empty());
}

/// Many stores at once through one entry node: their forwards to each peer leave in batches
/// (fewer exchanges than forwards), and every forward still gets its own answer, so each
/// client sees every member's signed entry and every member holds every message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_forwards_to_a_peer_travel_in_batches_with_their_own_answers() {
    let user = User::new(4);
    let mut a = Replica::new(35).await;
    let mut b = Replica::new(36).await;
    let mut c = Replica::new(37).await;
    let s = user.swarm();
    place(&[&a, &b, &c], &[s, s, s]);
    a.serve();
    b.serve();
    c.serve();
    const STORES: usize = 150;
    let bodies: Vec<Vec<u8>> = (0..STORES)
        .map(|i| format!("concurrent store {i}").into_bytes())
        .collect();
    let answers = futures_util::future::join_all(bodies.iter().map(|d| user.store(&a, d))).await;
    for (hash, resp) in &answers {
        for peer in [&b, &c] {
            let entry = &resp["swarm"][hex::encode(peer.keys.pubkey_ed25519())];
            assert!(entry["signature"].is_string(), "{resp}");
            assert_eq!(entry["hash"].as_str(), Some(hash.as_str()), "{resp}");
            assert!(peer.has(hash));
        }
    }
    let sizes = &a.metrics.forward_batch_size;
    assert_eq!(sizes.get_sample_sum() as usize, 2 * STORES);
    assert!(
        (sizes.get_sample_count() as usize) < 2 * STORES,
        "{} exchanges for {} forwards: nothing was batched",
        sizes.get_sample_count(),
        2 * STORES
    );
    assert_eq!(a.store.pending_len(), 0, "nothing needed a retry");
}

/// A batch of forwards is refused whole when its sender is not a swarm peer or when it is not
/// a batch (too many items, not a list), and otherwise each item is checked as a single
/// forward would be: a bad item gets its own error and the others are stored.
#[tokio::test]
async fn a_forward_batch_is_checked_whole_then_item_by_item() {
    let mut r = Replica::new(38).await;
    let peer = Replica::new(39).await;
    let stranger = Replica::new(40).await;
    let user = User::new(5);
    let here = user.swarm();
    place(&[&r, &peer, &stranger], &[here, here, here ^ (1 << 63)]);
    r.serve();
    let target = r.info(here);
    let store = |data: &str| {
        json!({"method": "store", "accepted_at": now(), "params": {
            "pubkey": user.account.to_hex(), "timestamp": now(), "ttl": 600_000,
            "data": STANDARD.encode(data)}})
        .to_string()
        .into_bytes()
    };
    let send = async |from: &Replica, body: Vec<u8>| {
        from.state
            .peers
            .post(
                &target,
                snode::peer::PATH_STORAGE_CC_BATCH,
                body,
                Duration::from_secs(10),
            )
            .await
            .expect("an authenticated answer")
    };
    let good = snode::peer::batch::encode_requests(&[store("one"), store("two")]);
    let refused = send(&stranger, good.clone()).await;
    assert_eq!(refused.status, 403, "{:?}", refused.body);
    assert_eq!(r.store.stats().messages, 0);
    let too_many = vec![store("x"); snode::peer::batch::MAX_BATCH_ITEMS + 1];
    for bad in [
        snode::peer::batch::encode_requests(&too_many),
        b"not a batch".to_vec(),
    ] {
        let a = send(&peer, bad).await;
        assert_eq!(
            (a.status, &a.body[..]),
            (400, &b"invalid forward batch"[..])
        );
    }
    assert_eq!(r.store.stats().messages, 0);
    // One item whose data is far too large, between two good ones.
    let huge = store(&"x".repeat(80_000));
    let mixed = snode::peer::batch::encode_requests(&[store("one"), huge, store("two")]);
    let a = send(&peer, mixed).await;
    assert_eq!(a.status, 200);
    let answers = snode::peer::batch::decode_answers(&a.body, 3).expect("three answers");
    assert_eq!(answers[0].0, 200);
    assert_eq!(answers[1].0, 400, "{:?}", answers[1].1);
    assert!(String::from_utf8_lossy(&answers[1].1).contains("exceeds the maximum message size"));
    assert_eq!(answers[2].0, 200);
    assert_eq!(r.store.stats().messages, 2);
}

/// An unlisted node — or an attacker with fresh keys per request — is refused with 403 before
/// any key agreement: its requests never enter the pair-key cache, so they can neither burn
/// CPU on X25519 nor evict the keys of real peers. Its MAC is valid (it has its own key), so
/// only the membership check stands in its way.
#[tokio::test]
async fn unlisted_senders_are_refused_before_any_crypto() {
    let mut r = Replica::new(41).await;
    place(&[&r], &[1]);
    r.serve();
    let target = r.info(1);
    let before = r.state.peers.auth().cached_pairs();
    for seed in 0..20u8 {
        let stranger = PeerClient::new(
            Arc::new(NodeKeys::from_seed([200u8.wrapping_add(seed); 32])),
            clock(),
            None,
            true,
        )
        .expect("client");
        // The stranger reads our 403 as an unauthenticated answer.
        let got = stranger
            .post(
                &target,
                snode::peer::PATH_DATA,
                vec![1],
                Duration::from_secs(10),
            )
            .await;
        assert!(
            matches!(got, Err(snode::peer::client::PeerError::NotAuthentic)),
            "{got:?}"
        );
    }
    // On the wire: a plain 403 with the reason.
    let stranger = snode::peer::auth::PeerAuth::new(Arc::new(NodeKeys::from_seed([199; 32])));
    let mut req = common::client().post(format!(
        "https://127.0.0.1:{}{}",
        target.https_port,
        snode::peer::PATH_DATA
    ));
    for (name, value) in stranger
        .sign_request(&target.pubkey_ed25519, snode::peer::PATH_DATA, b"x", now())
        .expect("sign")
        .headers
    {
        req = req.header(name, value);
    }
    let resp = req.body("x").send().await.expect("send");
    assert_eq!(resp.status().as_u16(), 403);
    assert_eq!(
        resp.text().await.expect("text"),
        "peer is not a listed service node"
    );
    assert_eq!(r.state.peers.auth().cached_pairs(), before);
}

/// A listed node outside our swarm (that never owned the account either) cannot push
/// messages into an account we own, nor forward requests to us, nor hand off deletions or
/// subaccount (un)revocations: 403, nothing stored, deleted or unrevoked. A member of our
/// swarm, and a node that owned the account before the last change (a hand-off), can.
#[tokio::test]
async fn only_swarm_peers_and_previous_owners_may_push_or_forward() {
    let mut r = Replica::new(44).await;
    let stranger = Replica::new(45).await;
    let former = Replica::new(46).await;
    let user = User::new(12);
    let here = user.swarm();
    let far = here ^ (1 << 63);
    // Before: `former` owned the account with us; now it sits in the other swarm with the
    // stranger, which never owned it.
    place(&[&r, &former], &[here, here]);
    place(&[&r, &stranger, &former], &[here, far, far]);
    r.serve();
    let target = r.info(here);
    let msg = |data: &[u8]| Message {
        account: user.account,
        namespace: Namespace(0),
        hash: message_hash(&user.account, Namespace(0), data),
        timestamp_ms: now(),
        expiry_ms: now() + 600_000,
        data: data.to_vec(),
        expiry_log: None,
    };
    let batch = |m: Message| snode::peer::wire::encode_batches(&[m], usize::MAX).remove(0);
    let pushed = stranger
        .state
        .peers
        .post(
            &target,
            snode::peer::PATH_DATA,
            batch(msg(b"injected")),
            Duration::from_secs(10),
        )
        .await
        .expect("an authenticated answer");
    assert_eq!(pushed.status, 403, "{:?}", pushed.body);
    let forwarded = stranger
        .state
        .peers
        .post(
            &target,
            snode::peer::PATH_STORAGE_CC,
            json!({"method": "store", "params": {}})
                .to_string()
                .into_bytes(),
            Duration::from_secs(10),
        )
        .await
        .expect("an authenticated answer");
    assert_eq!(forwarded.status, 403, "{:?}", forwarded.body);
    assert_eq!(r.store.stats().messages, 0);
    // The former owner's hand-off is taken.
    let handed = former
        .state
        .peers
        .post(
            &target,
            snode::peer::PATH_DATA,
            batch(msg(b"handed off")),
            Duration::from_secs(10),
        )
        .await
        .expect("an authenticated answer");
    assert_eq!(handed.status, 200, "{:?}", handed.body);
    assert_eq!(r.store.stats().messages, 1);
    // Tombstones: the stranger's deletion is refused whole, the former owner's applied.
    let tombstones = json!({"tombstones": [{
        "account": user.account.to_hex(),
        "hash": msg(b"handed off").hash,
        "expiry": now() + 600_000,
        "deleted_at": now(),
        "unheld": true,
    }]})
    .to_string()
    .into_bytes();
    for (from, status, left) in [(&stranger, 403, 1), (&former, 200, 0)] {
        let answer = from
            .state
            .peers
            .post(
                &target,
                snode::peer::PATH_TOMBSTONES,
                tombstones.clone(),
                Duration::from_secs(10),
            )
            .await
            .expect("an authenticated answer");
        assert_eq!(answer.status, status, "{:?}", answer.body);
        assert_eq!(r.store.stats().messages, left);
    }
    assert_eq!(r.store.stats().messages, 0);
    assert_eq!(
        r.store
            .bulk_store(&[msg(b"handed off")], now())
            .expect("bulk"),
        0,
        "the deletion stands"
    );
    // Subaccount revocations: the stranger can neither unrevoke a token nor ask for our
    // swarm's states; the former owner's hand-off of a revocation is taken.
    let token = [5u8; 36];
    r.store
        .revoke_subaccounts(&user.account, &[token], now() - 1_000)
        .expect("revoke");
    let state = |revoked: bool| {
        json!({"revocations": [{
            "account": user.account.to_hex(),
            "token": hex::encode(token),
            "at": now(),
            "revoked": revoked,
        }]})
        .to_string()
        .into_bytes()
    };
    let ask = json!({"digest": "00"}).to_string().into_bytes();
    for body in [state(false), ask] {
        let answer = stranger
            .state
            .peers
            .post(
                &target,
                snode::peer::PATH_REVOCATIONS,
                body,
                Duration::from_secs(10),
            )
            .await
            .expect("an authenticated answer");
        assert_eq!(answer.status, 403, "{:?}", answer.body);
    }
    assert!(r.store.is_revoked(&user.account, &token).expect("q"));
    let other = [6u8; 36];
    let handed = json!({"revocations": [{
        "account": user.account.to_hex(),
        "token": hex::encode(other),
        "at": now(),
        "revoked": true,
    }]})
    .to_string()
    .into_bytes();
    let answer = former
        .state
        .peers
        .post(
            &target,
            snode::peer::PATH_REVOCATIONS,
            handed,
            Duration::from_secs(10),
        )
        .await
        .expect("an authenticated answer");
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    assert!(r.store.is_revoked(&user.account, &other).expect("q"));
}

/// A node that owned the account only long ago (more membership changes ago than swarm-peer
/// rights last) retries a client's request it queued then: admitted, as its hand-off is; the
/// same request as a first forward, or retried by a node that never owned the account, is
/// refused. Without it, a delete taken only by a node that owned the account briefly was lost
/// (docs/simulation.md, finding 8).
#[tokio::test]
async fn a_former_owners_retry_is_admitted_and_a_strangers_is_not() {
    let mut r = Replica::new(49).await;
    let stranger = Replica::new(50).await;
    let former = Replica::new(51).await;
    let user = User::new(14);
    let here = user.swarm();
    let far = here ^ (1 << 63);
    place(&[&r, &former], &[here, here]);
    // Enough changes since that `former` is no longer a recent swarm peer.
    for _ in 0..=snode::swarm::PREVIOUS_KEPT {
        place(&[&r, &stranger, &former], &[here, far, far]);
    }
    r.serve();
    let target = r.info(here);
    let (hash, _) = user.store(&r, b"deleted through a former owner").await;
    let sig = STANDARD.encode(user.sk.sign(format!("delete{hash}").as_bytes()).to_bytes());
    let params = json!({"pubkey": user.account.to_hex(),
                        "pubkey_ed25519": hex::encode(user.sk.verifying_key().to_bytes()),
                        "messages": [hash], "signature": sig});
    let body = |retry: bool| {
        let mut b = json!({"method": "delete", "params": params, "accepted_at": now()});
        if retry {
            b["retry"] = json!(true);
        }
        b.to_string().into_bytes()
    };
    // The stranger's retry and the former owner's first forward delete nothing; then the
    // former owner's retry applies.
    for (from, retry, status, left) in [
        (&stranger, true, 403, 1),
        (&former, false, 403, 1),
        (&former, true, 200, 0),
    ] {
        let answer = from
            .state
            .peers
            .post(
                &target,
                snode::peer::PATH_STORAGE_CC,
                body(retry),
                Duration::from_secs(10),
            )
            .await
            .expect("an authenticated answer");
        assert_eq!(answer.status, status, "retry {retry}: {:?}", answer.body);
        assert_eq!(r.store.stats().messages, left, "retry {retry}");
    }
}

/// A swarm peer that missed a client's `expire … shorten` pushes its copy with the old,
/// longer expiry (a hand-off or anti-entropy repair), or with a history that leaves the
/// shortening out and sets a longer expiry before it: the shortened expiry stands — a peer's
/// history merges into ours, it never replaces it, and an item whose expiry its history does
/// not explain is refused. (What a member could still do is claim a client request we never
/// saw, accepted after the shortening, as it could claim a client deletion: swarm members are
/// trusted to relay client requests, `ARCHITECTURE.md`.)
#[tokio::test]
async fn a_peer_cannot_raise_an_expiry_a_client_shortened() {
    let mut r = Replica::new(47).await;
    let peer = Replica::new(48).await;
    place(&[&r, &peer], &[1, 1]);
    r.serve();
    let user = User::new(13);
    let m = Message {
        account: user.account,
        namespace: Namespace(0),
        hash: message_hash(&user.account, Namespace(0), b"short-lived"),
        timestamp_ms: now(),
        expiry_ms: now() + 3_600_000,
        data: b"short-lived".to_vec(),
        expiry_log: None,
    };
    r.store.store(&m, now()).expect("store");
    let short = now() + 60_000;
    r.store
        .update_expiry(
            &user.account,
            std::slice::from_ref(&m.hash),
            short,
            snode::store::ExpireMode::ShortenOnly,
            now(),
        )
        .expect("shorten");
    let longer = now() + 7_200_000;
    let mut older = snode::expiry_log::ExpiryLog::new(m.expiry_ms);
    older.insert(snode::expiry_log::ExpiryOp {
        at_ms: now() - 1_000,
        kind: snode::expiry_log::OpKind::Set,
        value_ms: longer,
    });
    let rewritten = Message {
        expiry_ms: older.expiry(),
        expiry_log: Some(older),
        ..m.clone()
    };
    let push = async |body: Vec<u8>| {
        peer.state
            .peers
            .post(
                &r.info(1),
                snode::peer::PATH_DATA,
                body,
                Duration::from_secs(10),
            )
            .await
            .expect("answer")
            .status
    };
    let expiry_here = || {
        r.store
            .get_by_hash(&m.hash, now())
            .expect("get")
            .expect("held")
            .expiry_ms
    };
    let batch = |copy: &Message| {
        snode::peer::wire::encode_batches(std::slice::from_ref(copy), usize::MAX).remove(0)
    };
    for copy in [&m, &rewritten] {
        assert_eq!(push(batch(copy)).await, 200);
        assert_eq!(expiry_here(), short);
    }
    // The same item claiming the longer expiry without a history that explains it.
    let mut lying = batch(&rewritten);
    let claimed = format!("i{longer}e");
    let lie = format!("i{}e", longer + 1_800_000);
    let at = lying
        .windows(claimed.len())
        .position(|w| w == claimed.as_bytes())
        .expect("the expiry is in the item");
    lying.splice(at..at + claimed.len(), lie.bytes());
    assert_eq!(push(lying).await, 400);
    assert_eq!(expiry_here(), short);
}

/// A forward's acceptance time travels under the peer MAC and bounds it: a retry accepted more
/// than 30 days ago, a retry without the time, a first forward accepted long ago and one
/// accepted in the future are refused before the method runs; the client's timestamps are
/// checked against the acceptance time (a retry does not turn the windows off).
#[tokio::test]
async fn forwards_are_checked_against_their_acceptance_time() {
    let mut r = Replica::new(49).await;
    let peer = Replica::new(50).await;
    place(&[&r, &peer], &[1, 1]);
    r.serve();
    let user = User::new(14);
    let ts = now() - 3_600_000;
    let sig = STANDARD.encode(
        user.sk
            .sign(format!("delete_all{ts}").as_bytes())
            .to_bytes(),
    );
    let ed = hex::encode(user.sk.verifying_key().to_bytes());
    let params = json!({"pubkey": user.account.to_hex(), "pubkey_ed25519": ed,
        "namespace": 0, "timestamp": ts, "signature": sig});
    let send = async |extra: Value| {
        let mut body = json!({"method": "delete_all", "params": params});
        for (k, v) in extra.as_object().expect("object") {
            body[k] = v.clone();
        }
        peer.forward_to(&r, &body).await
    };
    let day = 86_400_000;
    for (extra, want) in [
        (
            json!({"retry": true, "accepted_at": now() - 31 * day}),
            "forward too old",
        ),
        (
            json!({"retry": true}),
            "retried forward without acceptance time",
        ),
        (json!({"accepted_at": now() - 300_000}), "forward too old"),
        (
            json!({"accepted_at": now() + 300_000}),
            "forward accepted in the future",
        ),
    ] {
        assert_eq!(
            send(extra.clone()).await,
            (400, want.to_string()),
            "{extra}"
        );
    }
    // The client signed an hour ago: a retry claiming acceptance now is outside the window…
    let (status, body) = send(json!({"retry": true, "accepted_at": now()})).await;
    assert_eq!(
        (status, body.as_str()),
        (406, "delete_all timestamp too far from current time")
    );
    // … and one accepted right after the client signed is in it.
    let (status, body) = send(json!({"retry": true, "accepted_at": ts + 1_000})).await;
    assert_eq!(status, 200, "{body}");
}

/// Revokes and unrevokes are order-dependent; forwards race and retries come late. Each
/// member applies the one with the latest signed time (last writer wins), so a retried revoke
/// that arrives after the newer unrevoke does not revoke the token again.
#[tokio::test]
async fn a_late_retried_revoke_does_not_undo_a_newer_unrevoke() {
    let mut r = Replica::new(51).await;
    let peer = Replica::new(52).await;
    place(&[&r, &peer], &[1, 1]);
    r.serve();
    let admin = SigningKey::from_bytes(&[53; 32]);
    let group = AccountId {
        kind: 3,
        key: admin.verifying_key().to_bytes(),
    };
    let token = [7u8; 36];
    let req = |method: &str, key: &str, ts: i64| {
        let mut m = format!("{method}{ts}").into_bytes();
        m.extend_from_slice(&token);
        json!({"pubkey": group.to_hex(), key: [STANDARD.encode(token)], "timestamp": ts,
            "signature": STANDARD.encode(admin.sign(&m).to_bytes())})
    };
    let forward = async |body: Value| {
        let (status, text) = peer.forward_to(&r, &body).await;
        assert_eq!(status, 200, "{text}");
    };
    let (revoked_at, unrevoked_at) = (now() - 5_000, now() - 1_000);
    forward(json!({"method": "unrevoke_subaccount",
        "params": req("unrevoke_subaccount", "unrevoke", unrevoked_at), "accepted_at": now()}))
    .await;
    forward(json!({"method": "revoke_subaccount",
        "params": req("revoke_subaccount", "revoke", revoked_at),
        "retry": true, "accepted_at": revoked_at + 100}))
    .await;
    assert!(
        !r.store.is_revoked(&group, &token).expect("q"),
        "the newer unrevoke stands"
    );
    let later = now();
    forward(json!({"method": "revoke_subaccount",
        "params": req("revoke_subaccount", "revoke", later), "accepted_at": now()}))
    .await;
    assert!(r.store.is_revoked(&group, &token).expect("q"));
}

/// A plain `expire` (set) is order-dependent too: two sets of one message accepted in one
/// order can reach a member in the other (a forward that failed and is retried later, or two
/// entry nodes racing). Each member keeps the set with the latest acceptance time, so the
/// late older set is dropped and every member ends with the client's last choice.
#[tokio::test]
async fn a_late_older_expire_set_does_not_undo_a_newer_one() {
    let mut r = Replica::new(54).await;
    let peer = Replica::new(55).await;
    place(&[&r, &peer], &[1, 1]);
    r.serve();
    let user = User::new(56);
    let msg = user.message(b"expiring", 1_000);
    r.store.store(&msg, now()).expect("store");
    let ed = hex::encode(user.sk.verifying_key().to_bytes());
    let set = |expiry: i64| {
        let sig = user
            .sk
            .sign(format!("expire{expiry}{}", msg.hash).as_bytes());
        json!({"pubkey": user.account.to_hex(), "pubkey_ed25519": ed, "messages": [msg.hash],
            "expiry": expiry, "signature": STANDARD.encode(sig.to_bytes())})
    };
    let forward = async |body: Value| {
        let (status, text) = peer.forward_to(&r, &body).await;
        assert_eq!(status, 200, "{text}");
    };
    let expiry = |r: &Replica| {
        r.store
            .get_expiries(&user.account, std::slice::from_ref(&msg.hash), now())
            .expect("expiries")[&msg.hash]
    };
    // The client first set 20 minutes, then 40; the second arrives first.
    let (first_at, second_at) = (now() - 2_000, now() - 1_000);
    let (short, long) = (now() + 1_200_000, now() + 2_400_000);
    forward(json!({"method": "expire", "params": set(long), "accepted_at": second_at})).await;
    assert_eq!(expiry(&r), long);
    // The first, retried late: dropped.
    forward(
        json!({"method": "expire", "params": set(short), "retry": true,
        "accepted_at": first_at}),
    )
    .await;
    assert_eq!(expiry(&r), long, "the newer set stands");
    // A set accepted later still applies.
    forward(json!({"method": "expire", "params": set(short), "accepted_at": now()})).await;
    assert_eq!(expiry(&r), short);
}

/// A listed peer's request captured on the wire (or re-sent by anyone who saw it) is refused
/// the second time: the receiver remembers each request's nonce for the timestamp window.
/// And the answer is bound to that nonce and its status, so it cannot be passed off as the
/// answer to another request.
#[tokio::test]
async fn a_replayed_peer_request_is_refused() {
    let mut r = Replica::new(42).await;
    let b = Replica::new(43).await;
    place(&[&r, &b], &[1, 1]);
    r.serve();
    let target = r.info(1);
    let msg = Message {
        account: User::new(9).account,
        namespace: Namespace(0),
        hash: String::new(),
        timestamp_ms: now(),
        expiry_ms: now() + 600_000,
        data: b"once".to_vec(),
        expiry_log: None,
    };
    let msg = Message {
        hash: snode::message::message_hash(&msg.account, msg.namespace, &msg.data),
        ..msg
    };
    let body = snode::peer::wire::encode_batches(std::slice::from_ref(&msg), usize::MAX).remove(0);
    let signed = b
        .state
        .peers
        .auth()
        .sign_request(&target.pubkey_ed25519, snode::peer::PATH_DATA, &body, now())
        .expect("sign");
    let send = || {
        let mut req = common::client().post(format!(
            "https://127.0.0.1:{}{}",
            target.https_port,
            snode::peer::PATH_DATA
        ));
        for (name, value) in &signed.headers {
            req = req.header(*name, value);
        }
        req.body(body.clone()).send()
    };
    let first = send().await.expect("send");
    assert_eq!(first.status().as_u16(), 200);
    // The answer verifies for this request only.
    let headers = first.headers().clone();
    let answer = first.bytes().await.expect("body");
    let get = |n: &str| headers.get(n).and_then(|v| v.to_str().ok());
    let check = |nonce: &[u8; 16], status: u16| {
        b.state.peers.auth().verify_response(
            get(snode::peer::auth::HEADER_PUBKEY),
            get(snode::peer::auth::HEADER_TIMESTAMP),
            get(snode::peer::auth::HEADER_SIGNATURE),
            snode::peer::PATH_DATA,
            nonce,
            status,
            &answer,
            now(),
        )
    };
    assert_eq!(check(&signed.nonce, 200), Ok(target.pubkey_ed25519));
    assert!(
        check(&signed.nonce, 500).is_err(),
        "a rewritten status fails"
    );
    assert!(
        check(&[0; 16], 200).is_err(),
        "another request's nonce fails"
    );
    // The same bytes again: refused, and nothing more is done.
    let again = send().await.expect("send");
    assert_eq!(again.status().as_u16(), 401);
    assert_eq!(again.text().await.expect("text"), "peer request replayed");
    assert_eq!(r.store.stats().messages, 1);
}

/// A listed swarm peer pushing data (`/snode/v1/data`, the hand-off route) cannot store what
/// no client could: an oversized body, a timestamp from the future, or an expiry beyond any a
/// request could set. What a client could have stored is still taken.
#[tokio::test]
async fn pushed_messages_are_admitted_as_strictly_as_a_client_store() {
    let a = Replica::new(45).await;
    let mut b = Replica::new(46).await;
    place(&[&a, &b], &[1, 1]);
    b.serve();
    let user = User::new(9);
    let now = now();
    let mk = |data: Vec<u8>, ts: i64, expiry: i64| {
        let account = user.account;
        Message {
            account,
            namespace: Namespace(0),
            hash: message_hash(&account, Namespace(0), &data),
            timestamp_ms: ts,
            expiry_ms: expiry,
            data,
            expiry_log: None,
        }
    };
    let huge = mk(vec![7; 100_000], now, now + 3_600_000);
    let future = mk(
        b"from the future".to_vec(),
        now + 3_600_000,
        now + 7_200_000,
    );
    let forever = mk(b"forever".to_vec(), now, i64::MAX / 2);
    let honest = mk(b"honest".to_vec(), now, now + 3_600_000);
    let batch = [
        huge.clone(),
        future.clone(),
        forever.clone(),
        honest.clone(),
    ];
    for blob in snode::peer::wire::encode_batches(&batch, 10 << 20) {
        let r = a
            .state
            .peers
            .post(
                &b.info(1),
                snode::peer::PATH_DATA,
                blob,
                Duration::from_secs(10),
            )
            .await
            .expect("answer");
        assert_eq!(r.status, 200);
    }
    // What it acknowledged is synced to disk first (the hand-off sender deletes on the ack).
    assert!(b.store.wal_syncs() >= 1);
    assert!(!b.has(&huge.hash), "oversized body stored");
    assert!(!b.has(&future.hash), "future timestamp stored");
    assert!(b.has(&honest.hash));
    let kept = b
        .store
        .get_by_hash(&forever.hash, now)
        .expect("get")
        .expect("stored");
    assert!(
        kept.expiry_ms <= now + 31 * 24 * 3_600_000,
        "expiry not clamped: {}",
        kept.expiry_ms
    );
}
