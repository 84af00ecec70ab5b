//! A hostile member of our own swarm against the anti-entropy endpoints: it is listed, signs
//! every request correctly and passes the swarm check, then asks as fast as it can. It gets a
//! 429 once its budget (two honest sessions) is spent, its digest requests make the node scan
//! its store at most once per reference time however many it sends, reference times it picks
//! itself are refused or bounded, and meanwhile the node serves its clients and an honest
//! member still reconciles with it, its data exactly what honest replication makes of it.
#![allow(missing_docs)]

mod common;

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use snode::api::listener::{PublicListener, RemoteAddr};
use snode::api::rate_limit::RateLimiter;
use snode::api::{AppState, onion::OnionServices, onion_exit::ExitClient};
use snode::clock::Clock;
use snode::config::{Config, ReplicationConfig};
use snode::keys::NodeKeys;
use snode::message::{AccountId, Message, Namespace, message_hash};
use snode::metrics::Metrics;
use snode::peer::client::PeerClient;
use snode::replication::protocol::{
    ADMISSIBLE_DIGEST_TIMES, BucketRequest, DIGEST_EPOCH_MS, DigestRequest,
    MAX_BUCKETS_PER_REQUEST, PATH_AE_BUCKET, PATH_AE_DIGEST, epoch_start,
};
use snode::replication::serve::{PeerBudget, Responder};
use snode::replication::{Replicator, ReplicatorParts};
use snode::rpc::RpcContext;
use snode::store::Store;
use snode::swarm::{Membership, NodeInfo, SwarmId, swarm_space};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

fn clock() -> Clock {
    Arc::new(snode::clock::wall_clock_ms)
}

fn now() -> i64 {
    snode::clock::wall_clock_ms()
}

/// The network the budget is sized for: the default 30 s rounds.
const NETWORK_INTERVAL: Duration = Duration::from_secs(30);

/// A member: store, peer and public routes on a real TLS listener, its anti-entropy loop
/// (started by the test, once the membership is in place).
struct Member {
    keys: Arc<NodeKeys>,
    store: Store,
    metrics: Metrics,
    repl: Replicator,
    membership: watch::Sender<Arc<Membership>>,
    addr: SocketAddr,
    cancel: CancellationToken,
    _tasks: tokio_util::task::TaskTracker,
    _dir: tempfile::TempDir,
}

impl Member {
    /// A member whose peers get the budget of a real network (30 s rounds).
    async fn start(seed: u8) -> Member {
        Member::start_with(seed, PeerBudget::for_interval(NETWORK_INTERVAL)).await
    }

    async fn start_with(seed: u8, budget: PeerBudget) -> Member {
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
        // Rounds every 300 ms so the honest member converges within the test; the budget
        // peers get is the one of a real network (30 s rounds), which is what is attacked.
        let repl = Replicator::new(ReplicatorParts {
            store: store.clone(),
            client: client.clone(),
            me: keys.pubkey_ed25519(),
            membership: rx.clone(),
            metrics: metrics.clone(),
            clock: clock(),
            config: ReplicationConfig {
                forward_timeout: Duration::from_millis(800),
                anti_entropy_interval: Duration::from_millis(300),
                ..ReplicationConfig::default()
            },
            testnet: false,
        });
        let responder = Responder::new(repl.responder().digests().clone(), budget);
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
            rpc: ctx,
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
            anti_entropy: Arc::new(responder),
        };
        let cancel = CancellationToken::new();
        let tasks = tokio_util::task::TaskTracker::new();
        let listener = PublicListener::start(
            tcp,
            Some(tls),
            snode::api::listener::ListenerLimits::default(),
            &tasks,
            cancel.child_token(),
        )
        .expect("listener");
        // The public router: client RPC and the peer routes, as a node mounts them.
        let app =
            snode::api::public::router(state).into_make_service_with_connect_info::<RemoteAddr>();
        let c = cancel.clone();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(c.cancelled_owned())
                .await;
        });
        Member {
            keys,
            store,
            metrics,
            repl,
            membership: tx,
            addr,
            cancel,
            _tasks: tasks,
            _dir: dir,
        }
    }

    fn run_anti_entropy(&self) {
        tokio::spawn(self.repl.clone().run_anti_entropy(self.cancel.clone()));
    }

    fn info(&self, swarm: u64) -> NodeInfo {
        node_info(&self.keys, self.addr.port(), swarm)
    }

    fn hashes(&self) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        self.store
            .visit_meta(|m| {
                out.insert(m.hash.to_string());
            })
            .expect("visit");
        out
    }

    fn scans(&self) -> u64 {
        self.metrics.anti_entropy_digest_scans_total.get()
    }

    fn rounds(&self, result: &str) -> u64 {
        self.metrics
            .anti_entropy_rounds_total
            .with_label_values(&[result])
            .get()
    }

    fn refused(&self, reason: &str) -> u64 {
        self.metrics
            .anti_entropy_refused_total
            .with_label_values(&[reason])
            .get()
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

fn node_info(keys: &NodeKeys, port: u16, swarm: u64) -> NodeInfo {
    NodeInfo {
        pubkey_ed25519: keys.pubkey_ed25519(),
        pubkey_x25519: keys.pubkey_x25519(),
        ip: Ipv4Addr::LOCALHOST,
        https_port: port,
        omq_port: 0,
        swarm_id: SwarmId(swarm),
        version: [2, 8, 0],
    }
}

/// A message of `account` written `age_ms` ago, old enough for every reconciliation.
fn message(account: &AccountId, data: &[u8], age_ms: i64) -> Message {
    Message {
        account: *account,
        namespace: Namespace(0),
        hash: message_hash(account, Namespace(0), data),
        timestamp_ms: now() - age_ms,
        expiry_ms: now() + 3_600_000,
        data: data.to_vec(),
        expiry_log: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_swarm_member_cannot_make_a_node_scan_or_serve_it_without_bound() {
    let user = common::User::new(7);
    let account = AccountId::from_hex(&user.session_id).expect("account");
    let swarm = swarm_space(&account);

    let victim = Member::start(61).await;
    let honest = Member::start(62).await;
    // The attacker is a listed member of the same swarm with its own (valid) key; it serves
    // nothing (a closed port), it only asks.
    let attacker_keys = Arc::new(NodeKeys::from_seed([63; 32]));
    let closed = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .expect("bind");
    let closed_port = closed.local_addr().expect("addr").port();
    drop(closed);
    let attacker = PeerClient::new(attacker_keys.clone(), clock(), None, true).expect("client");

    // Data: both hold 300 messages; the honest member also holds 20 the victim lacks.
    let shared: Vec<Message> = (0..300u16)
        .map(|i| message(&account, &i.to_be_bytes(), 300_000))
        .collect();
    let missing: Vec<Message> = (0..20u8)
        .map(|i| message(&account, &[i; 50], 300_000))
        .collect();
    victim.store.bulk_store(&shared, now()).expect("bulk");
    honest.store.bulk_store(&shared, now()).expect("bulk");
    honest.store.bulk_store(&missing, now()).expect("bulk");
    let before = victim.hashes();
    let want: BTreeSet<String> = before
        .iter()
        .cloned()
        .chain(missing.iter().map(|m| m.hash.clone()))
        .collect();

    let m = Arc::new(Membership::new(
        1,
        "00".repeat(32),
        vec![
            victim.info(swarm),
            honest.info(swarm),
            node_info(&attacker_keys, closed_port, swarm),
        ],
    ));
    victim.membership.send_replace(m.clone());
    honest.membership.send_replace(m);
    // Only the honest member reconciles; the victim answers (its own rounds would add scans
    // of their own, which the digest counter must not be confused by).
    honest.run_anti_entropy();
    let target = victim.info(swarm);

    let ask = async |path: &'static str, body: Vec<u8>| {
        attacker
            .post(&target, path, body, Duration::from_secs(10))
            .await
            .expect("a signed answer")
    };
    let digest_body = |at: i64| serde_json::to_vec(&DigestRequest { at }).expect("json");

    // 1. Many digest requests for the current reference time: at most one scan per epoch.
    let started = tokio::time::Instant::now();
    let first_epoch = epoch_start(now());
    let scans_before = victim.scans();
    let mut ok = 0u32;
    for _ in 0..150 {
        let r = ask(PATH_AE_DIGEST, digest_body(first_epoch)).await;
        assert_eq!(r.status, 200, "{:?}", String::from_utf8_lossy(&r.body));
        ok += 1;
    }
    let epochs = (epoch_start(now()) - first_epoch) / DIGEST_EPOCH_MS + 1;
    let scanned = victim.scans() - scans_before;
    assert!(
        scanned <= epochs as u64,
        "150 digest requests over {epochs} epoch(s) made {scanned} scans"
    );

    // 2. Reference times it picks itself: not an epoch start, or outside the few an honest
    // clock gives, are refused before any work; cycling through the admissible ones costs at
    // most one scan each, and they fit the cache, so asking again costs nothing.
    let scans_before = victim.scans();
    let r = ask(PATH_AE_DIGEST, digest_body(first_epoch + 1)).await;
    assert_eq!(r.status, 400);
    assert_eq!(
        String::from_utf8_lossy(&r.body),
        format!("reference time must be a multiple of {DIGEST_EPOCH_MS} ms")
    );
    let r = ask(
        PATH_AE_DIGEST,
        digest_body(first_epoch - 100 * DIGEST_EPOCH_MS),
    )
    .await;
    assert_eq!(r.status, 400);
    assert_eq!(
        victim.scans(),
        scans_before,
        "refused requests scan nothing"
    );
    let mut admissible = 0u32;
    for _round in 0..3 {
        for k in -5..=5 {
            let r = ask(
                PATH_AE_DIGEST,
                digest_body(first_epoch + k * DIGEST_EPOCH_MS),
            )
            .await;
            ok += 1;
            if r.status == 200 {
                admissible += 1;
            }
        }
    }
    let scanned = victim.scans() - scans_before;
    let epochs = (epoch_start(now()) - first_epoch) / DIGEST_EPOCH_MS + 1;
    assert!(admissible > 0);
    assert!(
        scanned <= (ADMISSIBLE_DIGEST_TIMES as i64 + epochs) as u64,
        "{scanned} scans for 33 requests over {epochs} epoch(s)"
    );

    // 3. Bucket requests (each reads 32 buckets of the hash index) until refused: a 429 once
    // the budget of two whole honest sessions, plus what refilled meanwhile, is spent.
    let budget = PeerBudget::for_interval(NETWORK_INTERVAL);
    let bucket_body = serde_json::to_vec(&BucketRequest {
        at: first_epoch,
        buckets: (0..MAX_BUCKETS_PER_REQUEST as u8).collect(),
    })
    .expect("json");
    let mut refused = None;
    for _ in 0..2 * budget.burst {
        let r = ask(PATH_AE_BUCKET, bucket_body.clone()).await;
        if r.status == 429 {
            refused = Some(r);
            break;
        }
        assert_eq!(r.status, 200);
        ok += 1;
    }
    let refused = refused.expect("the attacker is refused within two budgets");
    assert_eq!(
        String::from_utf8_lossy(&refused.body),
        "anti-entropy budget of this peer spent; try again next interval"
    );
    let elapsed = started.elapsed().as_secs_f64();
    let allowed = f64::from(budget.burst) + budget.per_second * elapsed + 1.0;
    assert!(
        f64::from(ok) + 2.0 <= allowed,
        "{ok} requests (and 2 refused ones) answered in {elapsed:.1} s; budget {allowed:.0}"
    );
    // It stays refused while it keeps asking, on every endpoint: only what refills gets
    // through, and digest requests still do not scan.
    let scans_before = victim.scans();
    let (refused_before, again) = (victim.refused("rate_limited"), tokio::time::Instant::now());
    let mut answered = 0u32;
    for i in 0..40 {
        let (path, body) = if i % 2 == 0 {
            (PATH_AE_DIGEST, digest_body(first_epoch))
        } else {
            (PATH_AE_BUCKET, bucket_body.clone())
        };
        if ask(path, body).await.status != 429 {
            answered += 1;
        }
    }
    let refilled = budget.per_second * again.elapsed().as_secs_f64() + 1.0;
    assert!(
        f64::from(answered) <= refilled,
        "{answered} of 40 answered after the refusal; {refilled:.1} tokens refilled"
    );
    assert_eq!(
        victim.refused("rate_limited") - refused_before,
        u64::from(40 - answered)
    );
    let epochs = (epoch_start(now()) - first_epoch) / DIGEST_EPOCH_MS + 1;
    assert!(victim.scans() - scans_before <= epochs as u64);

    // 4. Meanwhile the node serves its clients, and the honest member (its own budget)
    // reconciled with it: the victim holds exactly its data plus what it lacked, nothing
    // the attacker did changed it.
    let client = common::client();
    let node = format!("127.0.0.1:{}", victim.addr.port());
    let (status, body) = common::rpc(&client, &node, "retrieve", user.retrieve_params(None)).await;
    assert_eq!(status, 200, "{body}");
    common::wait_for(
        "the honest member's reconciliation",
        Duration::from_secs(20),
        async || (victim.hashes() == want).then_some(()),
    )
    .await;
    let listed: BTreeSet<String> = common::retrieve_all(&client, &node, &user)
        .await
        .into_iter()
        .map(|(h, _)| h)
        .collect();
    assert_eq!(listed, want);
    assert_eq!(victim.refused("not_swarm_peer"), 0);
    assert!(
        honest.rounds("ok") >= 1,
        "the honest member's rounds succeed"
    );
}

/// A listed node outside the swarm is refused (403) before the budget table: it can neither
/// take a place there nor make the node compute a digest.
#[tokio::test]
async fn a_node_of_another_swarm_is_refused_before_any_work() {
    let victim = Member::start(71).await;
    let stranger_keys = Arc::new(NodeKeys::from_seed([72; 32]));
    let stranger = PeerClient::new(stranger_keys.clone(), clock(), None, true).expect("client");
    let m = Arc::new(Membership::new(
        1,
        "00".repeat(32),
        vec![victim.info(1), node_info(&stranger_keys, 1, 1 << 63)],
    ));
    victim.membership.send_replace(m);
    let target = victim.info(1);
    let body = serde_json::to_vec(&DigestRequest {
        at: epoch_start(now()),
    })
    .expect("json");
    for _ in 0..20 {
        let r = stranger
            .post(
                &target,
                PATH_AE_DIGEST,
                body.clone(),
                Duration::from_secs(10),
            )
            .await
            .expect("a signed answer");
        assert_eq!(r.status, 403);
    }
    assert_eq!(victim.scans(), 0);
    assert_eq!(victim.refused("not_swarm_peer"), 20);
    assert_eq!(victim.refused("rate_limited"), 0);
}

/// The other side: an initiator whose budget at a peer is spent takes the 429 as the end of
/// its session — one refused request per round, no retries, no failure counted — and goes on
/// next round where it stopped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_initiator_ends_its_session_at_the_first_429() {
    let user = common::User::new(8);
    let account = AccountId::from_hex(&user.session_id).expect("account");
    let swarm = swarm_space(&account);
    // The responder allows three requests in all (nothing refills during the test).
    let responder = Member::start_with(
        81,
        PeerBudget {
            burst: 3,
            per_second: 1e-9,
        },
    )
    .await;
    let initiator = Member::start(82).await;
    // 600 messages the responder lacks, over most buckets: many bucket steps' worth.
    let msgs: Vec<Message> = (0..600u16)
        .map(|i| message(&account, &i.to_be_bytes(), 300_000))
        .collect();
    initiator.store.bulk_store(&msgs, now()).expect("bulk");
    let m = Arc::new(Membership::new(
        1,
        "00".repeat(32),
        vec![responder.info(swarm), initiator.info(swarm)],
    ));
    responder.membership.send_replace(m.clone());
    initiator.membership.send_replace(m);
    initiator.run_anti_entropy();

    common::wait_for(
        "five rounds cut short by the budget",
        Duration::from_secs(20),
        async || (initiator.rounds("rate_limited") >= 5).then_some(()),
    )
    .await;
    let limited = initiator.rounds("rate_limited");
    let refused = responder.refused("rate_limited");
    // Each cut-short round cost the responder exactly one refused request (the round in
    // flight may have made its one already).
    assert!(
        (limited..=limited + 1).contains(&refused),
        "{limited} rounds cut short, {refused} requests refused"
    );
    assert_eq!(initiator.rounds("failed"), 0, "a 429 is not a failure");
    // What the three admitted requests allowed was repaired (pushes are not budgeted).
    assert!(!responder.hashes().is_empty());
}
