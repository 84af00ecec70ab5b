//! The directory service over HTTP: `serve(config) -> DirectoryHandle`.
//!
//! Owns the listener, the routes (`POST /json_rpc`, `POST /register`, `POST /report`), the
//! decommission timer, the rate limits of the write routes (`limit`: per source IP before a
//! body is parsed, per node key once its signature holds, 429 beyond them), and the order
//! "apply to a copy → save → install", so the state on disk is never behind what a client was
//! told. Must not hold business rules (they are in `state`, `announce` and `rpc`), and never
//! logs a source address.
//!
//! Concurrency: the registry sits behind a std `Mutex`, taken only in blocking work
//! (`crate::blocking`: the blocking pool, or in place on a simulated host; mutations save to
//! disk while holding it, which serialises them in one order on disk and in memory). Reads
//! never wait for the disk: they clone an `Arc<Membership>` from a separate lock, replaced
//! after each saved change.

use super::limit::{Buckets, DirectoryLimits, IpKey, MAX_TRACKED};
use super::persist::{PersistError, load, save, state_path};
use super::state::{
    Admission, DEFAULT_MAX_NODES, Effect, Policy, RegisterError, Registry, ReportError,
};
use super::{announce, rpc};
use crate::blocking;
use crate::clock::Clock;
use crate::swarm::Membership;
use crate::transport::{Transport, TransportListener};
use axum::Router;
use axum::body::Bytes;
use axum::extract::connect_info::Connected;
use axum::extract::{ConnectInfo, DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::serve::IncomingStream;
use rand::SeedableRng as _;
use rand::rngs::StdRng;
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower_http::timeout::TimeoutLayer;

/// Largest request body accepted; announcements and reports are a few hundred bytes.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// Default time a node may fail every reachability test before it is decommissioned
/// (oxend: "unreachable after >1 h of failures, may decommission"; two hours is lenient
/// enough for a restart or an upgrade). Local test networks use seconds.
pub const DEFAULT_DECOMMISSION_AFTER: Duration = Duration::from_secs(2 * 3600);
/// A request still running after this gets 408, so shutdown is bounded.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Bounds of the decommission timer's period (a quarter of `decommission_after`).
const MIN_TICK: Duration = Duration::from_millis(100);
/// See `MIN_TICK`.
const MAX_TICK: Duration = Duration::from_secs(30);

/// How to run a directory.
#[derive(Clone)]
pub struct DirectoryConfig {
    /// Where `directory.json` lives (created if missing).
    pub data_dir: PathBuf,
    /// Address to listen on (port 0 picks a free port; see `DirectoryHandle::addr`).
    pub listen: SocketAddr,
    /// Who may register.
    pub admission: Admission,
    /// How long a node may fail every reachability report before it is decommissioned.
    pub decommission_after: Duration,
    /// Whether nodes may announce loopback, private and other non-public addresses
    /// (`addr::classify`): only for networks on one host or a LAN.
    pub allow_private_addresses: bool,
    /// Most nodes listed (active and decommissioned).
    pub max_nodes: usize,
    /// Rate limits of `/register` and `/report`.
    pub limits: DirectoryLimits,
    /// The clock announcements, reports and decommissioning are judged by (the wall clock
    /// but in a simulation).
    pub clock: Clock,
    /// The network to listen on; `None` = the host's TCP. A simulated network serves the
    /// directory on its own transport (`crate::transport`), as it does nodes.
    pub transport: Option<Arc<dyn Transport>>,
    /// Seed of the randomness `/json_rpc` answers draw from (sampled node lists); `None` =
    /// from the OS. A simulation fixes it to replay a history.
    pub rng_seed: Option<u64>,
}

impl std::fmt::Debug for DirectoryConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DirectoryConfig")
            .field("data_dir", &self.data_dir)
            .field("listen", &self.listen)
            .field("admission", &self.admission)
            .field("decommission_after", &self.decommission_after)
            .field("allow_private_addresses", &self.allow_private_addresses)
            .field("max_nodes", &self.max_nodes)
            .field("limits", &self.limits)
            .field("transport", &self.transport.is_some())
            .field("rng_seed", &self.rng_seed)
            .finish_non_exhaustive()
    }
}

impl DirectoryConfig {
    /// A directory for a public network: `admission`, public addresses only, the default
    /// decommission period, size bound and rate limits.
    pub fn new(data_dir: PathBuf, listen: SocketAddr, admission: Admission) -> Self {
        DirectoryConfig {
            data_dir,
            listen,
            admission,
            decommission_after: DEFAULT_DECOMMISSION_AFTER,
            allow_private_addresses: false,
            max_nodes: DEFAULT_MAX_NODES,
            limits: DirectoryLimits::default(),
            clock: crate::clock::wall(),
            transport: None,
            rng_seed: None,
        }
    }
}

/// Errors of starting the directory. Each says what and where.
#[derive(Debug, thiserror::Error)]
pub enum DirectoryError {
    /// The data directory could not be created.
    #[error("cannot create directory data dir {}", path.display())]
    DataDir {
        /// The data directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The saved state could not be read.
    #[error("cannot load the directory state")]
    Load(#[source] PersistError),
    /// The listener could not be bound.
    #[error("cannot listen on {addr}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

/// A running directory. Dropping it stops the service (without waiting);
/// `shutdown` stops it and waits.
pub struct DirectoryHandle {
    addr: SocketAddr,
    cancel: CancellationToken,
    tasks: TaskTracker,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for DirectoryHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DirectoryHandle")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl DirectoryHandle {
    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://<addr>`: the URL nodes and clients use.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Replaces who may register (e.g. an allow-list file re-read on SIGHUP). Takes effect
    /// for the next announcement; listed nodes stay listed.
    pub async fn set_admission(&self, admission: Admission) {
        let shared = Arc::clone(&self.shared);
        // The registry lock is held while saving (an fsync): wait for it off the runtime.
        let _ = blocking::run(move || {
            let mut reg = match shared.registry.lock() {
                Ok(r) => r,
                Err(poisoned) => poisoned.into_inner(),
            };
            reg.set_admission(admission);
        })
        .await;
    }

    /// How many times the state file has been written since the start (for tests and
    /// operators: a re-announcement that changes nothing must not write).
    pub fn state_writes(&self) -> u64 {
        self.shared.writes.load(Ordering::Relaxed)
    }

    /// Stops serving and waits until every task has ended.
    pub async fn shutdown(self) {
        self.cancel.cancel();
        self.tasks.close();
        self.tasks.wait().await;
    }
}

impl Drop for DirectoryHandle {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// The shared state of the handlers.
struct Shared {
    /// The registry; taken only on blocking threads (it is held while saving).
    registry: Mutex<Registry>,
    /// What `/json_rpc` serves: the current listing, then the ones served before it, newest
    /// first (at most [`LISTINGS_KEPT`]); replaced after each saved change.
    snapshot: RwLock<Served>,
    /// `directory.json`.
    path: PathBuf,
    /// Saves of `directory.json` so far.
    writes: AtomicU64,
    /// The write routes' buckets. std Mutex: held for a few arithmetic operations, never
    /// across an await.
    limiters: Mutex<Limiters>,
    /// What "now" is (`DirectoryConfig::clock`).
    clock: Clock,
    /// What `/json_rpc` samples with. std Mutex: held for one answer, never across an await.
    rng: Mutex<StdRng>,
}

/// How many listings served before the current one are kept, so a node whose polls
/// skipped a height can still read who owned what then (`rpc`'s `height` parameter):
/// about an hour of oxend's 2-minute blocks, a few MB at 2,000 nodes. Listings are kept as
/// served, not per height: a height made and replaced within one change (a decommission pass
/// commits one per node) was never served, so no node acted on it.
pub const LISTINGS_KEPT: usize = 32;

/// The current listing and the ones served before it, newest first. Cloning copies two
/// `Arc`s: every poll takes one, while the history changes only with the listing.
#[derive(Clone)]
struct Served {
    current: Arc<Membership>,
    before: Arc<std::collections::VecDeque<Arc<Membership>>>,
}

impl Served {
    fn new(current: Arc<Membership>) -> Self {
        Served {
            current,
            before: Arc::default(),
        }
    }

    /// Serves `listing` from now on; the current one joins the history (copied first only
    /// if a request still reads the old one).
    fn install(&mut self, listing: Arc<Membership>) {
        let old = std::mem::replace(&mut self.current, listing);
        let before = Arc::make_mut(&mut self.before);
        before.push_front(old);
        before.truncate(LISTINGS_KEPT);
    }
}

/// The buckets of `DirectoryLimits`.
struct Limiters {
    register_ip: Buckets<IpKey>,
    register_key: Buckets<[u8; 32]>,
    report_ip: Buckets<IpKey>,
    report_key: Buckets<[u8; 32]>,
}

impl Limiters {
    fn new(l: &DirectoryLimits) -> Self {
        Limiters {
            register_ip: Buckets::new(l.register_per_ip, MAX_TRACKED),
            register_key: Buckets::new(l.register_per_key, MAX_TRACKED),
            report_ip: Buckets::new(l.report_per_ip, MAX_TRACKED),
            report_key: Buckets::new(l.report_per_key, MAX_TRACKED),
        }
    }
}

/// Which bucket a request is counted in.
#[derive(Clone, Copy)]
enum Limit {
    RegisterIp(IpKey),
    RegisterKey([u8; 32]),
    ReportIp(IpKey),
    ReportKey([u8; 32]),
}

/// Why a mutation did not happen.
enum MutateError<E> {
    /// The registry refused it.
    Refused(E),
    /// Saving failed; nothing changed.
    Persist(PersistError),
    /// A lock was poisoned or the blocking task died: a bug elsewhere.
    Internal,
}

impl Shared {
    /// Applies `f` to a copy of the registry; if it succeeds, saves the copy when it is dirty
    /// and installs it. Runs on the calling (blocking) thread.
    fn mutate<T, E>(
        &self,
        f: impl FnOnce(&mut Registry) -> Result<(Effect, T), E>,
    ) -> Result<T, MutateError<E>> {
        let mut reg = self.registry.lock().map_err(|_| MutateError::Internal)?;
        let mut next = reg.clone();
        let (effect, out) = f(&mut next).map_err(MutateError::Refused)?;
        if effect.dirty || effect.new_block {
            save(&self.path, &next).map_err(MutateError::Persist)?;
            self.writes.fetch_add(1, Ordering::Relaxed);
        }
        if effect.new_block {
            let listing = Arc::new(next.membership());
            let mut served = self.snapshot.write().map_err(|_| MutateError::Internal)?;
            served.install(listing);
        }
        *reg = next;
        Ok(out)
    }

    /// Milliseconds since the epoch by the directory's clock.
    fn now_ms(&self) -> i64 {
        (self.clock)()
    }

    /// The current listing and the ones served before it (`rpc::handle`'s `height`).
    fn snapshot(&self) -> Option<Served> {
        self.snapshot.read().ok().map(|s| s.clone())
    }

    /// Whether one more request counted in `which` is within its limit (it takes a token).
    fn allow(&self, which: Limit) -> bool {
        let mut l = match self.limiters.lock() {
            Ok(l) => l,
            // A panic elsewhere left arithmetic state only: keep going.
            Err(poisoned) => poisoned.into_inner(),
        };
        let now = Instant::now();
        match which {
            Limit::RegisterIp(k) => l.register_ip.allow(k, now),
            Limit::RegisterKey(k) => l.register_key.allow(k, now),
            Limit::ReportIp(k) => l.report_ip.allow(k, now),
            Limit::ReportKey(k) => l.report_key.allow(k, now),
        }
    }
}

/// The handlers' shared state around `registry`, saving to `path`, limited by `limits`,
/// telling the time by `clock` and sampling from `rng_seed` (`DirectoryConfig`).
fn shared_state(
    registry: Registry,
    path: PathBuf,
    limits: &DirectoryLimits,
    clock: Clock,
    rng_seed: Option<u64>,
) -> Arc<Shared> {
    let rng = match rng_seed {
        Some(seed) => StdRng::seed_from_u64(seed),
        None => StdRng::from_entropy(),
    };
    Arc::new(Shared {
        snapshot: RwLock::new(Served::new(Arc::new(registry.membership()))),
        registry: Mutex::new(registry),
        path,
        writes: AtomicU64::new(0),
        limiters: Mutex::new(Limiters::new(limits)),
        clock,
        rng: Mutex::new(rng),
    })
}

/// Starts the directory: loads (or creates) its state, binds, serves, and runs the
/// decommission timer until the handle is shut down or dropped.
pub async fn serve(cfg: DirectoryConfig) -> Result<DirectoryHandle, DirectoryError> {
    std::fs::create_dir_all(&cfg.data_dir).map_err(|source| DirectoryError::DataDir {
        path: cfg.data_dir.clone(),
        source,
    })?;
    let policy = Policy {
        admission: cfg.admission.clone(),
        decommission_after_ms: i64::try_from(cfg.decommission_after.as_millis())
            .unwrap_or(i64::MAX),
        allow_private_addresses: cfg.allow_private_addresses,
        max_nodes: cfg.max_nodes,
    };
    let path = state_path(&cfg.data_dir);
    let registry = load(&path, policy.clone())
        .map_err(DirectoryError::Load)?
        .unwrap_or_else(|| Registry::new(policy));
    tracing::info!(
        height = registry.height(),
        nodes = registry.nodes().count(),
        "directory state loaded"
    );
    match cfg.admission.allowed_count() {
        None => tracing::info!("admission: open (any node with a valid announcement)"),
        Some(0) => tracing::warn!(
            "admission: allow-list is empty, no new node can register (give --allow, --allow-file or --open)"
        ),
        Some(n) => tracing::info!(keys = n, "admission: allow-list"),
    }
    if cfg.allow_private_addresses {
        tracing::info!("non-public node addresses allowed (local network)");
    }
    let shared = shared_state(
        registry,
        path,
        &cfg.limits,
        Arc::clone(&cfg.clock),
        cfg.rng_seed,
    );

    let bind_error = |source| DirectoryError::Bind {
        addr: cfg.listen,
        source,
    };
    let cancel = CancellationToken::new();
    let tasks = TaskTracker::new();
    let addr = match &cfg.transport {
        None => {
            let listener = TcpListener::bind(cfg.listen).await.map_err(bind_error)?;
            let addr = listener.local_addr().map_err(bind_error)?;
            spawn_server(&tasks, listener, &shared, &cancel);
            addr
        }
        Some(t) => {
            let acceptor = t.listen(cfg.listen).await.map_err(bind_error)?;
            let addr = acceptor.local_addr().map_err(bind_error)?;
            spawn_server(&tasks, TransportListener(acceptor), &shared, &cancel);
            addr
        }
    };
    let tick = (cfg.decommission_after / 4).clamp(MIN_TICK, MAX_TICK);
    tasks.spawn(decommission_timer(
        Arc::clone(&shared),
        tick,
        cancel.clone(),
    ));
    tracing::info!(%addr, "directory listening");
    Ok(DirectoryHandle {
        addr,
        cancel,
        tasks,
        shared,
    })
}

/// Serves the routes on `listener` until `cancel`.
fn spawn_server<L>(
    tasks: &TaskTracker,
    listener: L,
    shared: &Arc<Shared>,
    cancel: &CancellationToken,
) where
    L: axum::serve::Listener<Addr = SocketAddr>,
    PeerAddr: for<'a> Connected<IncomingStream<'a, L>>,
{
    let app = router(Arc::clone(shared)).into_make_service_with_connect_info::<PeerAddr>();
    let stop = cancel.clone();
    tasks.spawn(async move {
        // axum's serve returns only when stopped; an accept error is logged by the listener.
        axum::serve(listener, app)
            .with_graceful_shutdown(stop.cancelled_owned())
            .await
            .unwrap_or_else(|e| tracing::error!(error = %e, "directory server failed"));
    });
}

/// The address a request came from, on TCP or on a transport (axum knows it for its own
/// TCP listener only).
#[derive(Clone, Copy, Debug)]
struct PeerAddr(SocketAddr);

impl Connected<IncomingStream<'_, TcpListener>> for PeerAddr {
    fn connect_info(stream: IncomingStream<'_, TcpListener>) -> Self {
        PeerAddr(*stream.remote_addr())
    }
}

impl Connected<IncomingStream<'_, TransportListener>> for PeerAddr {
    fn connect_info(stream: IncomingStream<'_, TransportListener>) -> Self {
        PeerAddr(*stream.remote_addr())
    }
}

/// Every `period`, decommissions the nodes whose failing period is over.
async fn decommission_timer(shared: Arc<Shared>, period: Duration, cancel: CancellationToken) {
    let mut interval = tokio::time::interval(period);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            _ = cancel.cancelled() => break,
            _ = interval.tick() => {}
        }
        let s = Arc::clone(&shared);
        let done = blocking::run(move || {
            let now = s.now_ms();
            s.mutate(|r| {
                let n = r.tick(now);
                let effect = Effect {
                    new_block: n > 0,
                    dirty: n > 0,
                };
                Ok::<_, ()>((effect, n))
            })
        })
        .await;
        match done {
            Ok(Ok(0)) => {}
            Ok(Ok(n)) => tracing::info!(count = n, "decommissioned unreachable nodes"),
            Ok(Err(MutateError::Persist(e))) => {
                tracing::error!(error = %crate::error::chain(&e), "cannot save the directory state")
            }
            _ => tracing::error!("decommission timer failed"),
        }
    }
}

/// The routes, with the body limit and the request timeout.
fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/json_rpc", post(json_rpc))
        .route("/register", post(register))
        .route("/report", post(report))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            REQUEST_TIMEOUT,
        ))
        .with_state(shared)
}

/// A JSON response.
fn reply(status: StatusCode, body: Value) -> Response {
    (status, axum::Json(body)).into_response()
}

/// A JSON error response `{"status":"error","error":…}`.
fn refuse(status: StatusCode, why: impl std::fmt::Display) -> Response {
    reply(status, json!({"status": "error", "error": why.to_string()}))
}

/// Maps a failed mutation to a response (refusals by `status_of`).
fn mutate_error<E: std::fmt::Display>(
    e: MutateError<E>,
    status_of: impl Fn(&E) -> StatusCode,
) -> Response {
    match e {
        MutateError::Refused(e) => refuse(status_of(&e), e),
        MutateError::Persist(e) => {
            tracing::error!(error = %crate::error::chain(&e), "cannot save the directory state");
            refuse(
                StatusCode::INTERNAL_SERVER_ERROR,
                "cannot save the directory state",
            )
        }
        MutateError::Internal => refuse(StatusCode::INTERNAL_SERVER_ERROR, "internal error"),
    }
}

/// `POST /json_rpc`: oxend's JSON-RPC (`rpc`).
async fn json_rpc(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    let Some(snapshot) = shared.snapshot() else {
        return refuse(StatusCode::INTERNAL_SERVER_ERROR, "internal error");
    };
    let mut rng = match shared.rng.lock() {
        Ok(r) => r,
        // Only a generator's state: a panic elsewhere cannot leave it inconsistent.
        Err(poisoned) => poisoned.into_inner(),
    };
    reply(
        StatusCode::OK,
        rpc::handle(&body, &snapshot.current, &snapshot.before, &mut *rng),
    )
}

/// 429 for a request over `limit`. The text names the limit, never the address or key.
fn too_many(what: &str) -> Response {
    refuse(
        StatusCode::TOO_MANY_REQUESTS,
        format!("too many {what}; slow down and retry later"),
    )
}

/// `POST /register`: a signed announcement. 200 with the node's swarm; 400 for a bad or
/// stale announcement or a non-public address; 403 when the allow-list does not admit the
/// node; 409 when another active node holds its `IP:port`; 429 over a rate limit; 503 when
/// the registry is full.
async fn register(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(PeerAddr(peer)): ConnectInfo<PeerAddr>,
    body: Bytes,
) -> Response {
    if !shared.allow(Limit::RegisterIp(IpKey::of(peer.ip()))) {
        return too_many("registrations from this address");
    }
    let signed: announce::SignedAnnouncement = match serde_json::from_slice(&body) {
        Ok(s) => s,
        Err(e) => {
            return refuse(
                StatusCode::BAD_REQUEST,
                format!("invalid announcement: {e}"),
            );
        }
    };
    let a = match announce::verify_announcement(&signed, shared.now_ms()) {
        Ok(a) => a,
        Err(e) => return refuse(StatusCode::BAD_REQUEST, e),
    };
    let key = a.pubkey_ed25519;
    // Counted once the signature holds, so nobody can spend another node's budget.
    if !shared.allow(Limit::RegisterKey(key)) {
        return too_many("registrations of this node");
    }
    let done = blocking::run(move || {
        let now = shared.now_ms();
        shared.mutate(|r| {
            let effect = r.register(&a, now)?;
            let swarm = r.node(&key).map(|n| n.swarm_id.0);
            Ok::<_, RegisterError>((effect, (r.height(), r.block_hash_hex(), swarm, effect)))
        })
    })
    .await
    .unwrap_or(Err(MutateError::Internal));
    match done {
        Ok((height, block_hash, swarm_id, effect)) => {
            if effect.new_block {
                tracing::debug!(node = %hex::encode(&key[..4]), height, "node registered or updated");
            }
            reply(
                StatusCode::OK,
                json!({"status": "OK", "height": height, "block_hash": block_hash, "swarm_id": swarm_id}),
            )
        }
        Err(e) => mutate_error(e, |e| match e {
            RegisterError::NotAdmitted => StatusCode::FORBIDDEN,
            RegisterError::Stale | RegisterError::NonPublicAddress { .. } => {
                StatusCode::BAD_REQUEST
            }
            RegisterError::EndpointTaken => StatusCode::CONFLICT,
            RegisterError::Full { .. } => StatusCode::SERVICE_UNAVAILABLE,
        }),
    }
}

/// `POST /report`: a signed reachability report. 200; 400 for a bad report or an unknown
/// target; 403 when the reporter is not an active listed node; 429 over a rate limit.
async fn report(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(PeerAddr(peer)): ConnectInfo<PeerAddr>,
    body: Bytes,
) -> Response {
    if !shared.allow(Limit::ReportIp(IpKey::of(peer.ip()))) {
        return too_many("reports from this address");
    }
    let signed: announce::SignedReport = match serde_json::from_slice(&body) {
        Ok(s) => s,
        Err(e) => return refuse(StatusCode::BAD_REQUEST, format!("invalid report: {e}")),
    };
    let r = match announce::verify_report(&signed, shared.now_ms()) {
        Ok(r) => r,
        Err(e) => return refuse(StatusCode::BAD_REQUEST, e),
    };
    if !shared.allow(Limit::ReportKey(r.reporter)) {
        return too_many("reports by this node");
    }
    let done = blocking::run(move || {
        let now = shared.now_ms();
        shared.mutate(|reg| {
            let effect = reg.report(&r, now)?;
            Ok::<_, ReportError>((effect, (reg.height(), reg.block_hash_hex())))
        })
    })
    .await
    .unwrap_or(Err(MutateError::Internal));
    match done {
        Ok((height, block_hash)) => reply(
            StatusCode::OK,
            json!({"status": "OK", "height": height, "block_hash": block_hash}),
        ),
        Err(e) => mutate_error(e, |e| match e {
            ReportError::ReporterNotActive => StatusCode::FORBIDDEN,
            ReportError::UnknownTarget => StatusCode::BAD_REQUEST,
        }),
    }
}

#[cfg(test)]
mod tests;
