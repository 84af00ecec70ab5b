//! A node as a value: `Node::spawn(options) -> NodeHandle`, owning every task it starts.
//!
//! Owns start-up order (keys → TLS → store → listeners → tasks), the background loops and
//! shutdown. Nothing is process-global, so tests run many nodes in one process.
//!
//! Teardown order: cancel the token → listeners stop accepting and in-flight requests drain
//! (bounded by `network.shutdown_grace`) → background loops exit at their next select → the
//! store flushes its memtables and WAL → `shutdown()` returns.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::time::Duration;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::api::listener::{ListenerLimits, PublicListener};
use crate::api::rate_limit::RateLimiter;
use crate::api::{self, AppState};
use crate::clock::{self, Clock};
use crate::config::Config;
use crate::directory::client::DirectoryClient;
use crate::keys::NodeKeys;
use crate::metrics::Metrics;
use crate::network::{self, NetworkTiming};
use crate::notify::Notifier;
use crate::peer::client::PeerClient;
use crate::replication::{Replicator, ReplicatorParts};
use crate::rpc::RpcContext;
use crate::status::{StatusSource, StatusState};
use crate::store::{Store, StoreOptions};
use crate::swarm::{Membership, NodeInfo, SwarmId};
use crate::transport::{Transport, TransportListener};

/// File name of the node's Ed25519 key in the data directory (oxend's format).
pub const KEY_FILE: &str = "key_ed25519";
/// File name of the TLS certificate in the data directory.
pub const TLS_CERT_FILE: &str = "tls_cert.pem";
/// File name of the TLS private key in the data directory.
pub const TLS_KEY_FILE: &str = "tls_key.pem";
/// Directory of the message store inside the data directory.
pub const STORE_DIR: &str = "storage";
/// File (in the data directory) of the former owners a node remembers for hand-off admission
/// (`swarm::PreviousMembership::snapshot`), rewritten on every membership change.
pub const FORMER_OWNERS_FILE: &str = "former_owners";
/// How often store gauges (messages, bytes, accounts, disk) are refreshed.
const STATS_INTERVAL: Duration = Duration::from_secs(5);

/// What a node needs to start.
pub struct NodeOptions {
    /// Data directory: keys, TLS files, store.
    pub data_dir: PathBuf,
    /// Effective configuration (file + flags).
    pub config: Config,
    /// Clock for TTL and signature windows; `None` = the wall clock.
    pub clock: Option<Clock>,
    /// Seed of the node's randomness (peer test order, sampled node lists); `None` = from
    /// the OS. Tests and simulations fix it to replay a history.
    pub rng_seed: Option<u64>,
    /// The service manager's notification socket (systemd `Type=notify`), when it gave one:
    /// the caller reads the environment (`cli`), the node only sends.
    pub notifier: Option<Notifier>,
    /// The network to listen and connect on; `None` = the host's sockets. With a transport
    /// (a simulated network, `crate::transport`) the public listener serves plain HTTP on it,
    /// every peer request goes over it, and the node opens no QUIC and no admin listener.
    pub transport: Option<Arc<dyn Transport>>,
    /// Membership handed in by the caller, instead of registering with and following
    /// `network.directory`: a simulation's directory drives it. `None` = as configured.
    pub membership: Option<watch::Receiver<Arc<Membership>>>,
}

impl NodeOptions {
    /// Options for a node in `data_dir` with `config`, the wall clock, OS randomness and no
    /// service manager.
    pub fn new(data_dir: PathBuf, config: Config) -> NodeOptions {
        NodeOptions {
            data_dir,
            config,
            clock: None,
            rng_seed: None,
            notifier: None,
            transport: None,
            membership: None,
        }
    }
}

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The key file is missing or unreadable.
    #[error(transparent)]
    Keys(#[from] crate::keys::KeyError),
    /// The TLS certificate could not be loaded.
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    /// The store could not be opened.
    #[error("cannot open the message store in {path}")]
    Store {
        /// The store directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: crate::store::StoreError,
    },
    /// The HTTP client for peers could not be built (TLS back-end failure).
    #[error("cannot build the peer HTTP client")]
    HttpClient(#[source] reqwest::Error),
    /// The node's X25519 secret was refused by the onion layer's crypto back-end.
    #[error("cannot load the onion key")]
    OnionKey(#[source] crate::onion::NodeKeyError),
    /// The client of the directory could not be built.
    #[error("cannot set up the client of directory {url}")]
    Directory {
        /// The directory's URL.
        url: String,
        /// Why.
        #[source]
        source: crate::directory::client::DirectoryClientError,
    },
    /// The QUIC listener could not be set up.
    #[error("cannot listen for QUIC on {addr}")]
    Quic {
        /// The address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: crate::quic::endpoint::EndpointError,
    },
    /// A listener could not bind (port busy, no permission, bad address).
    #[error("cannot listen on {addr} ({what})")]
    Bind {
        /// Which listener.
        what: &'static str,
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

/// A running node. Dropping it without `shutdown()` cancels its tasks abruptly.
pub struct NodeHandle {
    membership: watch::Receiver<Arc<Membership>>,
    https_addr: SocketAddr,
    quic_addr: SocketAddr,
    admin_addr: SocketAddr,
    keys: Arc<NodeKeys>,
    store: Store,
    metrics: Metrics,
    cancel: CancellationToken,
    tracker: TaskTracker,
    grace: Duration,
}

/// Entry point: `Node::spawn`.
pub struct Node;

/// Peer traffic leaves from the bind address when it is a specific one, so a multi-homed host
/// (or a test network on several loopback addresses) uses the address peers know it by.
fn outgoing_address(cfg: &Config) -> Option<std::net::IpAddr> {
    let ip = cfg.network.bind_ip;
    (!ip.is_unspecified()).then_some(ip)
}

async fn bind(what: &'static str, addr: SocketAddr) -> Result<TcpListener, NodeError> {
    match listen(addr) {
        // A host without IPv6 (a kernel built without it, some containers) still serves IPv4
        // on the default wildcard rather than refusing to start.
        Err(e) if addr.ip() == std::net::Ipv6Addr::UNSPECIFIED && no_ipv6(&e) => {
            let v4 = SocketAddr::new(std::net::Ipv4Addr::UNSPECIFIED.into(), addr.port());
            tracing::warn!(
                listener = what,
                "no IPv6 on this host: listening on IPv4 only"
            );
            listen(v4).map_err(|source| NodeError::Bind {
                what,
                addr: v4,
                source,
            })
        }
        r => r.map_err(|source| NodeError::Bind { what, addr, source }),
    }
}

/// Whether `e` says the host has no IPv6 (EAFNOSUPPORT, or no usable IPv6 address).
fn no_ipv6(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(97) | Some(99))
        || e.kind() == std::io::ErrorKind::AddrNotAvailable
}

/// A TCP listener on `addr`. The IPv6 wildcard `::` listens dual-stack, whatever the host's
/// `net.ipv6.bindv6only` says, as upstream 2.11 does for Session Router: IPv4 clients arrive
/// as v4-mapped addresses, which the public listener maps back to IPv4 so that rate limits and
/// the loopback exemption see one address per client.
fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    if addr.is_ipv6() && addr.ip().is_unspecified() {
        socket.set_only_v6(false)?;
    }
    // As tokio's own `bind`: a restarted node can listen while old connections linger.
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    TcpListener::from_std(socket.into())
}

/// The node's listening sockets: the host's (public TLS/TCP, admin TCP, QUIC UDP), or one
/// public listener on a transport (plain HTTP; no QUIC, no admin: see `NodeOptions`).
enum Bound {
    Host {
        public: TcpListener,
        admin: TcpListener,
        quic: quinn::Endpoint,
    },
    Transport {
        public: TransportListener,
    },
}

/// What is bound, and where. On a transport the QUIC and admin addresses are unspecified with
/// port 0 (not listening), and the node announces no QUIC port.
struct Listeners {
    bound: Bound,
    https: SocketAddr,
    quic: SocketAddr,
    admin: SocketAddr,
}

impl Listeners {
    async fn on_host(
        cfg: &Config,
        keys: &Arc<NodeKeys>,
        public_addr: SocketAddr,
    ) -> Result<Listeners, NodeError> {
        let public = bind("public HTTPS", public_addr).await?;
        let admin = bind("admin", cfg.admin.listen).await?;
        let https = public.local_addr().map_err(|source| NodeError::Bind {
            what: "public HTTPS",
            addr: public_addr,
            source,
        })?;
        let quic_bind = SocketAddr::new(
            cfg.network.quic_bind_ip.unwrap_or(cfg.network.bind_ip),
            cfg.network.quic_port,
        );
        let quic = api::quic::bind(quic_bind, keys.clone(), &cfg.quic).map_err(|source| {
            NodeError::Quic {
                addr: quic_bind,
                source,
            }
        })?;
        let quic_addr = quic.local_addr().map_err(|source| NodeError::Bind {
            what: "QUIC",
            addr: quic_bind,
            source,
        })?;
        let admin_addr = admin.local_addr().map_err(|source| NodeError::Bind {
            what: "admin",
            addr: cfg.admin.listen,
            source,
        })?;
        Ok(Listeners {
            bound: Bound::Host {
                public,
                admin,
                quic,
            },
            https,
            quic: quic_addr,
            admin: admin_addr,
        })
    }

    async fn on_transport(t: &dyn Transport, addr: SocketAddr) -> Result<Listeners, NodeError> {
        let what = "public HTTP (transport)";
        let acceptor =
            t.listen(addr)
                .await
                .map_err(|source| NodeError::Bind { what, addr, source })?;
        let https =
            acceptor
                .local_addr()
                .map_err(|source| NodeError::Bind { what, addr, source })?;
        let unbound = SocketAddr::new(std::net::Ipv4Addr::UNSPECIFIED.into(), 0);
        Ok(Listeners {
            bound: Bound::Transport {
                public: TransportListener(acceptor),
            },
            https,
            quic: unbound,
            admin: unbound,
        })
    }
}

impl Node {
    /// Loads keys, opens the store, binds both listeners and starts every task. Fails before
    /// serving anything if any of these fails.
    pub async fn spawn(opts: NodeOptions) -> Result<NodeHandle, NodeError> {
        let cfg = opts.config;
        let dir = opts.data_dir;
        let keys = Arc::new(NodeKeys::load(&dir.join(KEY_FILE))?);
        let tls = crate::tls::server_config(&dir.join(TLS_CERT_FILE), &dir.join(TLS_KEY_FILE))?;
        let store_path = dir.join(STORE_DIR);
        let store = Store::open(
            &store_path,
            StoreOptions {
                max_bytes: cfg.storage.max_bytes,
                cache_bytes: cfg.storage.cache_bytes,
                memtable_bytes: cfg.storage.memtable_bytes,
            },
        )
        .map_err(|source| NodeError::Store {
            path: store_path.clone(),
            source,
        })?;

        let public_addr = SocketAddr::new(cfg.network.bind_ip, cfg.network.https_port);
        let listeners = match &opts.transport {
            Some(t) => Listeners::on_transport(t.as_ref(), public_addr).await?,
            None => Listeners::on_host(&cfg, &keys, public_addr).await?,
        };
        let (https_addr, quic_addr, admin_addr) =
            (listeners.https, listeners.quic, listeners.admin);

        let me = NodeInfo {
            pubkey_ed25519: keys.pubkey_ed25519(),
            pubkey_x25519: keys.pubkey_x25519(),
            ip: cfg.public_ipv4(),
            https_port: match cfg.network.public_https_port {
                0 => https_addr.port(),
                p => p,
            },
            // The original announces its OxenMQ port, on which it also serves QUIC (UDP).
            omq_port: quic_addr.port(),
            swarm_id: SwarmId(0),
            version: crate::rpc::STORAGE_SERVER_VERSION,
        };
        // Without a directory the node is a one-node network owning every account; with one,
        // it owns nothing (and is not ready) until the directory places it in a swarm. A
        // membership handed in by the caller stands for the directory.
        let networked = !cfg.network.directory.is_empty() || opts.membership.is_some();
        let initial = if networked {
            Membership::default()
        } else {
            Membership::single(me.clone())
        };
        let (membership_tx, membership_rx) = match opts.membership {
            Some(rx) => (None, rx),
            None => {
                let (tx, rx) = watch::channel(Arc::new(initial));
                (Some(tx), rx)
            }
        };

        let metrics = Metrics::new();
        metrics.store_max_bytes.set(cfg.storage.max_bytes as i64);
        let clock: Clock = opts.clock.unwrap_or_else(clock::wall);
        let status = Arc::new(StatusState::new(metrics.clone(), clock(), networked));
        let allow_private_peers = cfg.network.allow_private_peers || cfg.network.testnet;
        let peer_client = PeerClient::new(
            keys.clone(),
            clock.clone(),
            outgoing_address(&cfg),
            allow_private_peers,
        )
        .map_err(NodeError::HttpClient)?
        .with_quic(cfg.network.peer_transport == crate::config::PeerTransport::Quic);
        let peer_client = match &opts.transport {
            Some(t) => peer_client.with_transport(t.clone()),
            None => peer_client,
        };
        let directory = if membership_tx.is_some() && networked {
            let client = DirectoryClient::new(&cfg.network.directory).map_err(|source| {
                NodeError::Directory {
                    url: cfg.network.directory.clone(),
                    source,
                }
            })?;
            Some(match &opts.transport {
                Some(t) => client.with_transport(t.clone()),
                None => client,
            })
        } else {
            None
        };
        // Swarm forwarding, durable retries, hand-off and anti-entropy. In a one-node network
        // there are no peers: the loops find nothing to do.
        let replicator = Replicator::new(ReplicatorParts {
            store: store.clone(),
            client: peer_client.clone(),
            me: keys.pubkey_ed25519(),
            membership: membership_rx.clone(),
            metrics: metrics.clone(),
            clock: clock.clone(),
            config: cfg.replication.clone(),
            testnet: cfg.network.testnet,
        });
        // One seed, then an independent stream per consumer, so adding a consumer does not
        // shift what the others draw.
        let mut seeds = match opts.rng_seed {
            Some(seed) => StdRng::seed_from_u64(seed),
            None => StdRng::from_entropy(),
        };
        let rpc_rng = crate::rpc::seeded_rng(seeds.r#gen());
        let reachability_rng = StdRng::seed_from_u64(seeds.r#gen());
        let rpc = RpcContext {
            store: store.clone(),
            keys: keys.clone(),
            membership: membership_rx.clone(),
            forwarder: Arc::new(replicator.forwarder()),
            metrics: metrics.clone(),
            clock: clock.clone(),
            testnet: cfg.network.testnet,
            rng: rpc_rng,
        };
        let former_owners_path = dir.join(FORMER_OWNERS_FILE);
        let previous_membership = Arc::new(load_former_owners(&former_owners_path));
        let state = AppState {
            rpc,
            limiter: Arc::new(RateLimiter::new(
                cfg.rate_limit.clone(),
                tokio::time::Instant::now(),
            )),
            metrics: metrics.clone(),
            keys: keys.clone(),
            onion_key: Arc::new(
                crate::onion::NodeOnionKey::from_secret(&zeroize::Zeroizing::new(
                    keys.x25519_secret().to_bytes(),
                ))
                .map_err(NodeError::OnionKey)?,
            ),
            peers: peer_client.clone(),
            onion: crate::api::onion::OnionServices {
                exit: Arc::new(
                    crate::api::onion_exit::ExitClient::new(cfg.onion.allow_private_targets)
                        .map_err(NodeError::HttpClient)?,
                ),
            },
            status: status.clone(),
            previous_membership: previous_membership.clone(),
            anti_entropy: replicator.responder(),
        };

        let cancel = CancellationToken::new();
        let tracker = TaskTracker::new();

        let limits = &cfg.limits;
        // A body that stalls is cut off: without this, a client could hold a request (and
        // its handler) open forever by sending a byte a minute.
        let public_app = api::public::router(state.clone()).layer(
            tower_http::timeout::RequestBodyTimeoutLayer::new(limits.request_body_timeout),
        );
        let http_limits = api::serve::HttpLimits {
            request_head_timeout: limits.request_head_timeout,
            http2_max_streams: limits.http2_max_streams,
        };
        let (quic_endpoint, admin_tcp) = match listeners.bound {
            Bound::Host {
                public,
                admin,
                quic,
            } => {
                let listener = PublicListener::start(
                    public,
                    Some(tls),
                    ListenerLimits {
                        handshake_timeout: limits.handshake_timeout,
                        max_connections: limits.max_connections,
                        max_handshakes: limits.max_handshakes,
                    },
                    &tracker,
                    cancel.child_token(),
                )
                .map_err(|source| NodeError::Bind {
                    what: "public HTTPS",
                    addr: public_addr,
                    source,
                })?;
                tracker.spawn(api::serve::serve(
                    listener,
                    public_app,
                    http_limits,
                    tracker.clone(),
                    cancel.clone(),
                ));
                (Some(quic), Some(admin))
            }
            Bound::Transport { public } => {
                tracker.spawn(api::serve::serve(
                    public,
                    public_app,
                    http_limits,
                    tracker.clone(),
                    cancel.clone(),
                ));
                (None, None)
            }
        };
        // `monitor` subscriptions hear of every message the store newly inserts, whatever
        // wrote it (a client, a peer's forward, a retry, a hand-off or anti-entropy).
        let subscriptions = Arc::new(api::quic::monitor::Subscriptions::new(
            cfg.quic.max_subscriptions_per_connection,
            cfg.quic.max_subscriptions,
            clock.clone(),
            metrics.clone(),
        ));
        let observer = subscriptions.clone();
        store.observe(Arc::new(move |m: &crate::message::Message| {
            observer.on_new_message(m);
        }));
        if let Some(endpoint) = quic_endpoint {
            tracker.spawn(api::quic::serve(
                endpoint,
                api::quic::QuicState {
                    app: state.clone(),
                    subscriptions,
                    limits: cfg.quic.clone(),
                },
                cancel.clone(),
            ));
        }
        let status_source = StatusSource {
            me: keys.pubkey_ed25519(),
            membership: membership_rx.clone(),
            store: store.clone(),
            metrics: metrics.clone(),
            state: status.clone(),
            clock: clock.clone(),
        };
        let admin_app = api::admin::router(status_source.clone());
        if let Some(admin_tcp) = admin_tcp {
            let c = cancel.clone();
            tracker.spawn(async move {
                if let Err(e) = axum::serve(admin_tcp, admin_app)
                    .with_graceful_shutdown(c.cancelled_owned())
                    .await
                {
                    tracing::error!(error = %e, "admin listener failed");
                }
            });
        }
        // One channel per task that waits for membership changes, fed in this order: a change
        // then wakes them in a fixed order (tokio's watch wakes the waiters of one channel in
        // an order drawn from its RNG, which a simulated history must not depend on).
        let [previous_feed, handoff_feed, anti_entropy_feed] =
            relay_membership(membership_rx.clone(), &tracker, cancel.clone());
        // The height this node last saw before a restart, read before the tracker records
        // anything new: the follower reads back the listings served since.
        let seen_height = previous_membership.last_height();
        tracker.spawn(track_previous_membership(
            previous_feed,
            previous_membership,
            clock.clone(),
            former_owners_path,
            cancel.clone(),
        ));
        tracker.spawn(sweep_expired(
            store.clone(),
            metrics.clone(),
            clock.clone(),
            cfg.storage.expiry_sweep_interval,
            cancel.clone(),
        ));
        tracker.spawn(refresh_stats(
            store.clone(),
            metrics.clone(),
            cancel.clone(),
        ));
        tracker.spawn(replicator.clone().run_retry(cancel.clone()));
        tracker.spawn(
            replicator
                .clone()
                .run_handoff_on(handoff_feed, cancel.clone()),
        );
        tracker.spawn(replicator.run_anti_entropy_on(anti_entropy_feed, cancel.clone()));
        // systemd's READY/STATUS/WATCHDOG, only when it supervises us (NOTIFY_SOCKET set).
        let notifier = opts.notifier;
        if let Some(n) = &notifier
            && let Some(every) = n.watchdog_every()
        {
            tracker.spawn(crate::notify::watchdog(n.clone(), every, cancel.clone()));
        }
        tracker.spawn(crate::status::monitor::run(
            status_source,
            notifier,
            cancel.clone(),
        ));
        if let (Some(dir_client), Some(membership_tx)) = (directory, membership_tx) {
            let timing = NetworkTiming {
                poll_interval: cfg.network.membership_poll_interval,
                announce_interval: cfg.network.announce_interval,
                ping_interval: cfg.network.ping_interval,
            };
            tracker.spawn(network::follow_directory(
                dir_client.clone(),
                keys.clone(),
                me,
                membership_tx,
                timing,
                clock.clone(),
                seen_height,
                cancel.clone(),
            ));
            tracker.spawn(network::test_reachability(
                dir_client,
                keys.clone(),
                peer_client.clone(),
                membership_rx.clone(),
                timing,
                clock.clone(),
                status.reachability.clone(),
                reachability_rng,
                cancel.clone(),
            ));
        }
        tracker.close();

        tracing::info!(
            https = %https_addr,
            quic = %quic_addr,
            admin = %admin_addr,
            pubkey = %hex::encode(keys.pubkey_ed25519()),
            "node started"
        );
        Ok(NodeHandle {
            membership: membership_rx,
            https_addr,
            quic_addr,
            admin_addr,
            keys,
            store,
            metrics,
            cancel,
            tracker,
            grace: cfg.network.shutdown_grace,
        })
    }
}

/// `N` channels that follow `source`, each sent every change in turn, by one task on `tracker`
/// until `cancel`: each waiting consumer gets a channel of its own.
fn relay_membership<const N: usize>(
    mut source: watch::Receiver<Arc<Membership>>,
    tracker: &TaskTracker,
    cancel: CancellationToken,
) -> [watch::Receiver<Arc<Membership>>; N] {
    let current = source.borrow_and_update().clone();
    let channels: [_; N] = std::array::from_fn(|_| watch::channel(current.clone()));
    let (senders, receivers): (Vec<_>, Vec<_>) = channels.into_iter().unzip();
    tracker.spawn(async move {
        loop {
            tokio::select! {
                biased;
                _ = cancel.cancelled() => return,
                changed = source.changed() => {
                    if changed.is_err() {
                        return;
                    }
                }
            }
            let m = source.borrow_and_update().clone();
            for s in &senders {
                s.send_replace(m.clone());
            }
        }
    });
    match receivers.try_into() {
        Ok(r) => r,
        Err(_) => unreachable!("N receivers from N channels"),
    }
}

/// The former owners saved at `path` by an earlier run; none when there is no file (a
/// first start) or it does not parse (logged: the node then refuses a late hand-off it would
/// have admitted, and the copy reaches it from a swarm peer through anti-entropy).
fn load_former_owners(path: &Path) -> crate::swarm::PreviousMembership {
    match std::fs::read(path) {
        Ok(bytes) => crate::swarm::PreviousMembership::restore(&bytes).unwrap_or_else(|| {
            tracing::warn!(path = %path.display(), "former owners file unreadable; starting without it");
            crate::swarm::PreviousMembership::default()
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            crate::swarm::PreviousMembership::default()
        }
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "cannot read the former owners file");
            crate::swarm::PreviousMembership::default()
        }
    }
}

/// Writes `bytes` to `path` atomically: a temporary file, synced, renamed over it, so a crash
/// leaves the old file or the new one, never half of one.
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// Keeps the memberships before the current one in `previous` (for the peer routes' checks of
/// who may push what during a hand-off), each with the time, on `clock`, it was replaced, and
/// saves the former owners to `path` after every change, so a restart keeps them (issue 12:
/// a node restarted after an account moved refused its former owner's late hand-off).
async fn track_previous_membership(
    mut membership: watch::Receiver<Arc<Membership>>,
    previous: Arc<crate::swarm::PreviousMembership>,
    clock: Clock,
    path: PathBuf,
    cancel: CancellationToken,
) {
    let mut current = membership.borrow_and_update().clone();
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            changed = membership.changed() => {
                if changed.is_err() {
                    return;
                }
            }
        }
        let new = membership.borrow_and_update().clone();
        let now = clock();
        let old = std::mem::replace(&mut current, new);
        let old_height = old.height;
        previous.set(old, now);
        // The listings the follower read back between the two, in order: each stopped being
        // current before now, which the memory takes as their end (a former owner's window
        // is then seconds longer than the truth, within the window's extra day).
        for passed in current
            .passed
            .iter()
            .filter(|m| m.height > old_height && m.height < current.height)
        {
            previous.set(passed.clone(), now);
        }
        let bytes = previous.snapshot(&current, now);
        let path = path.clone();
        // A few hundred KB on a production network, written once per change (minutes apart).
        match crate::blocking::run(move || write_atomically(&path, &bytes)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "cannot save the former owners"),
            Err(_) => tracing::warn!("cannot save the former owners: task failed"),
        }
    }
}

/// Deletes expired messages every `every`; expired messages are already invisible to reads,
/// this reclaims their space within the protocol's 10 s.
async fn sweep_expired(
    store: Store,
    metrics: Metrics,
    clock: Clock,
    every: Duration,
    cancel: CancellationToken,
) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            _ = cancel.cancelled() => break,
            _ = tick.tick() => {}
        }
        let store = store.clone();
        let now = clock();
        // RocksDB deletes are blocking I/O: keep them off the async workers.
        match crate::blocking::run(move || store.sweep_expired(now)).await {
            Ok(Ok(n)) => metrics.messages_expired_total.inc_by(n),
            Ok(Err(e)) => tracing::warn!(error = %crate::error::chain(&e), "expiry sweep failed"),
            Err(e) => tracing::error!(error = %e, "expiry sweep task panicked"),
        }
    }
}

/// Copies store counters into gauges.
async fn refresh_stats(store: Store, metrics: Metrics, cancel: CancellationToken) {
    let mut tick = tokio::time::interval(STATS_INTERVAL);
    loop {
        tokio::select! {
            biased;
            _ = cancel.cancelled() => break,
            _ = tick.tick() => {}
        }
        let s = store.stats();
        metrics.messages_held.set(s.messages as i64);
        metrics.data_bytes_held.set(s.data_bytes as i64);
        metrics.accounts_held.set(s.accounts as i64);
        metrics.store_disk_bytes.set(s.disk_bytes as i64);
        for (part, bytes) in [
            ("memtables", s.memtable_bytes),
            ("block_cache", s.cache_bytes),
            ("table_readers", s.table_reader_bytes),
        ] {
            metrics
                .store_memory_bytes
                .with_label_values(&[part])
                .set(i64::try_from(bytes).unwrap_or(i64::MAX));
        }
        if let Some(a) = crate::allocator::stats() {
            for (kind, bytes) in a.by_kind() {
                metrics
                    .allocator_bytes
                    .with_label_values(&[kind])
                    .set(i64::try_from(bytes).unwrap_or(i64::MAX));
            }
        }
        metrics
            .replication_queue_depth
            .set(store.pending_len() as i64);
        let tasks = tokio::runtime::Handle::current()
            .metrics()
            .num_alive_tasks();
        metrics
            .runtime_tasks
            .set(i64::try_from(tasks).unwrap_or(i64::MAX));
    }
}

impl NodeHandle {
    /// The bound public (HTTPS) address.
    pub fn https_addr(&self) -> SocketAddr {
        self.https_addr
    }

    /// The bound QUIC (UDP) address.
    pub fn quic_addr(&self) -> SocketAddr {
        self.quic_addr
    }

    /// The bound admin address.
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin_addr
    }

    /// The node's Ed25519 pubkey.
    pub fn pubkey_ed25519(&self) -> [u8; 32] {
        self.keys.pubkey_ed25519()
    }

    /// The node's X25519 pubkey.
    pub fn pubkey_x25519(&self) -> [u8; 32] {
        self.keys.pubkey_x25519()
    }

    /// The membership snapshot the node currently acts on.
    pub fn membership(&self) -> Arc<Membership> {
        self.membership.borrow().clone()
    }

    /// The store's counters (messages, bytes, accounts, disk use).
    pub fn stats(&self) -> crate::store::StoreStats {
        self.store.stats()
    }

    /// The node's metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Stops accepting, drains in-flight requests (bounded), stops every task, flushes the
    /// store. Resolves when all of it is done.
    pub async fn shutdown(self) {
        self.cancel.cancel();
        if tokio::time::timeout(self.grace, self.tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                grace = ?self.grace,
                "in-flight requests did not finish within the grace period"
            );
        }
        if let Err(e) = self.store.flush() {
            tracing::error!(error = %crate::error::chain(&e), "store flush at shutdown failed");
        }
        tracing::info!("node stopped");
    }
}

impl Drop for NodeHandle {
    fn drop(&mut self) {
        // Without shutdown(), at least stop the tasks: nothing may outlive its node.
        self.cancel.cancel();
    }
}

/// The paths `snode init` writes and `snode run` reads, for messages and tests.
pub fn data_paths(dir: &Path) -> [PathBuf; 3] {
    [
        dir.join(KEY_FILE),
        dir.join(TLS_CERT_FILE),
        dir.join(TLS_KEY_FILE),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(key: u8, swarm: u64) -> NodeInfo {
        NodeInfo {
            pubkey_ed25519: [key; 32],
            pubkey_x25519: [key; 32],
            ip: std::net::Ipv4Addr::LOCALHOST,
            https_port: 1,
            omq_port: 0,
            swarm_id: SwarmId(swarm),
            version: [2, 8, 0],
        }
    }

    fn listing(height: u64, nodes: Vec<NodeInfo>) -> Membership {
        Membership::new(height, format!("{height:064x}"), nodes)
    }

    /// A node that was in our swarm only at a height our polls skipped (read back by the
    /// follower into `passed`) is remembered as a former owner; a "passed" listing outside
    /// the two heights is not taken.
    #[tokio::test]
    async fn listings_read_back_are_remembered() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (tx, rx) = watch::channel(Arc::new(listing(1, vec![node(1, 7), node(2, 7)])));
        let previous = Arc::new(crate::swarm::PreviousMembership::default());
        let cancel = CancellationToken::new();
        let now = 1_000_000;
        let task = tokio::spawn(track_previous_membership(
            rx,
            previous.clone(),
            clock::fixed(now),
            dir.path().join(FORMER_OWNERS_FILE),
            cancel.clone(),
        ));
        // Let the tracker take height 1 as current (this runtime has one thread: it runs now
        // and waits for a change).
        tokio::task::yield_now().await;
        let mut next = listing(3, vec![node(1, 7), node(2, 7)]);
        next.passed = vec![
            Arc::new(listing(2, vec![node(1, 7), node(2, 7), node(3, 7)])),
            // Not between 1 and 3: ignored.
            Arc::new(listing(5, vec![node(1, 7), node(4, 7)])),
        ];
        tx.send_replace(Arc::new(next));
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let recorded = previous.read().former_len();
            if recorded >= 2 {
                break;
            }
            assert!(tokio::time::Instant::now() < deadline, "not recorded");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        {
            let remembered = previous.read();
            assert_eq!(remembered.former_len(), 2, "height 1, then height 2");
            assert!(remembered.owned_within_window(&[3; 32], 7, now));
            assert!(!remembered.owned_within_window(&[4; 32], 7, now));
        }
        cancel.cancel();
        task.await.expect("tracker");
    }
}
