//! The catalogue of every metric the node exports, with help text, on a per-node registry.
//!
//! Owns metric names, labels and help. Must not be global: each `Node` owns one `Metrics`
//! built on its own `prometheus::Registry`, so tests can run many nodes in one process.
//! No label ever carries a pubkey, a message hash or an IP: labels are closed vocabularies
//! (method names, status codes, outcome enums).
//!
//! The outcome vocabularies are defined here, one enum each (`Rejection`, `OnionOutcome`,
//! `ForwardResult`, …), and the call sites pass their values; every value of each is exported
//! at zero from the moment the registry is built (Prometheus convention), so dashboards and
//! alert rules see every series from the first scrape. The `method`/`status` labels of the
//! client RPC metrics come from the RPC's method table and the HTTP status, and appear with
//! the first request.

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

/// Every metric of one node: a handle on its [`Catalogue`], cheap to clone (one `Arc`).
///
/// Why a handle: axum clones the node's `AppState`, which holds two of these, for every
/// request; with the catalogue by value that was two clones and two drops of some 45
/// `Arc`-backed metrics, about 180 atomic operations on cache lines every core shares, per
/// request. `drop_in_place<Metrics>` alone took 0.56 % of the nodes' CPU in a profile of
/// onion retrieves on a 10-node testnet (2026-12-07, BENCHMARKS.md "Onion requests").
#[derive(Clone)]
pub struct Metrics(std::sync::Arc<Catalogue>);

impl std::ops::Deref for Metrics {
    type Target = Catalogue;

    fn deref(&self) -> &Catalogue {
        &self.0
    }
}

/// The metrics themselves, reached through [`Metrics`].
pub struct Catalogue {
    registry: Registry,
    /// Client RPC requests by method and HTTP status.
    pub requests_total: IntCounterVec,
    /// Client RPC latency by method.
    pub request_duration_seconds: HistogramVec,
    /// Messages newly stored (not duplicates).
    pub messages_stored_total: IntCounter,
    /// Bytes of message bodies newly stored.
    pub bytes_stored_total: IntCounter,
    /// Stores refused, by reason (`Rejection`).
    pub messages_rejected_total: IntCounterVec,
    /// Messages removed by the expiry sweep.
    pub messages_expired_total: IntCounter,
    /// Client requests refused by the per-IP rate limiter.
    pub rate_limited_total: IntCounter,
    /// Live messages held (gauge, refreshed by the node).
    pub messages_held: IntGauge,
    /// Bytes of message bodies held.
    pub data_bytes_held: IntGauge,
    /// Accounts with at least one message.
    pub accounts_held: IntGauge,
    /// Bytes the store occupies on disk.
    pub store_disk_bytes: IntGauge,
    /// The store's size cap in bytes.
    pub store_max_bytes: IntGauge,
    /// Memory the store holds, by part (`memtables`, `block_cache`, `table_readers`).
    pub store_memory_bytes: IntGaugeVec,
    /// The allocator's counters by kind (`allocated`, `active`, `resident`, `retained`; see
    /// `allocator`).
    pub allocator_bytes: IntGaugeVec,
    /// Onion requests by outcome (`OnionOutcome`).
    pub onion_requests_total: IntCounterVec,
    /// Onion request latency (entry to reply).
    pub onion_duration_seconds: Histogram,
    /// Forwards to swarm peers by result (`ForwardResult`).
    pub swarm_forwards_total: IntCounterVec,
    /// Forwards per exchange with a peer (1 = sent alone; more = coalesced into a batch).
    pub forward_batch_size: Histogram,
    /// Forwards queued for retry, by payload (`EnqueueKind`).
    pub replication_enqueued_total: IntCounterVec,
    /// Entries in the durable retry queue (gauge).
    pub replication_queue_depth: IntGauge,
    /// Tasks alive on the node's runtime: a count that only grows is a task leak.
    pub runtime_tasks: IntGauge,
    /// Retry attempts and their fate, by result (`RetryResult`).
    pub replication_retries_total: IntCounterVec,
    /// Messages handed to their new owners and deleted here.
    pub handoff_messages_total: IntCounter,
    /// Hand-off batches not acknowledged by every new owner (kept, resent later).
    pub handoff_batches_failed_total: IntCounter,
    /// Anti-entropy rounds by result (`RoundResult`).
    pub anti_entropy_rounds_total: IntCounterVec,
    /// Messages repaired by anti-entropy, by kind (`RepairKind`).
    pub anti_entropy_repairs_total: IntCounterVec,
    /// Anti-entropy requests from peers refused, by reason (`AntiEntropyRefusal`).
    pub anti_entropy_refused_total: IntCounterVec,
    /// Passes over the whole store to compute an anti-entropy digest (cache misses).
    pub anti_entropy_digest_scans_total: IntCounter,
    /// Constant 1, labelled with the build's version.
    pub build_info: IntGaugeVec,
    /// 1 while the node serves clients (`/ready` answers 200), else 0.
    pub ready: IntGauge,
    /// Our reachability tests of other nodes, by result (`PeerTestResult`).
    pub peer_tests_total: IntCounterVec,
    /// Listed nodes this node has tested.
    pub peers_tested: IntGauge,
    /// Of those, the ones whose latest test failed.
    pub peers_unreachable: IntGauge,
    /// Reachability tests of this node by its peers, by kind (`PingKind`).
    pub incoming_pings_total: IntCounterVec,
    /// When a peer last tested this node (Unix seconds; 0 = never).
    pub last_incoming_ping_timestamp_seconds: IntGauge,
    /// QUIC connections established and open now.
    pub quic_connections: IntGauge,
    /// QUIC connections refused before their handshake, by reason (`QuicRefusal`).
    pub quic_connections_refused_total: IntCounterVec,
    /// QUIC handshakes that failed or timed out.
    pub quic_handshakes_failed_total: IntCounter,
    /// QUIC requests by endpoint (a closed set: RPC method names, `snode_ping`, `onion_req`,
    /// `monitor`, `unknown`) and outcome (`QuicOutcome`).
    pub quic_requests_total: IntCounterVec,
    /// QUIC request streams reset for broken framing.
    pub quic_stream_errors_total: IntCounter,
    /// `notify` pushes, by outcome (`PushOutcome`).
    pub quic_pushes_total: IntCounterVec,
    /// `monitor` subscriptions held now (one per account per connection).
    pub monitor_subscriptions: IntGauge,
}

/// A closed set of label values: every value, and the label it exports.
pub trait Vocabulary: Copy + 'static {
    /// Every value, in declaration order.
    const ALL: &'static [Self];
    /// The label value exported for it.
    fn label(self) -> &'static str;
}

/// Declares a vocabulary enum: its values with their labels, `ALL` and `label()`.
macro_rules! vocabulary {
    (
        $(#[$doc:meta])*
        pub enum $name:ident {
            $($(#[$vdoc:meta])* $variant:ident => $label:literal,)+
        }
    ) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum $name {
            $($(#[$vdoc])* $variant,)+
        }

        impl $name {
            /// The label value exported for it.
            pub const fn label(self) -> &'static str {
                match self {
                    $(Self::$variant => $label,)+
                }
            }
        }

        impl Vocabulary for $name {
            const ALL: &'static [Self] = &[$(Self::$variant,)+];
            fn label(self) -> &'static str {
                $name::label(self)
            }
        }
    };
}

vocabulary! {
    /// Why a store was refused: the `reason` label of `snode_messages_rejected_total`.
    pub enum Rejection {
        /// The store is at its size cap.
        Full => "full",
        /// The TTL or expiry is outside the namespace's range.
        Ttl => "ttl",
        /// The timestamp or expiry is too far from our clock.
        Clock => "clock",
        /// The signature is missing or does not verify.
        Auth => "auth",
        /// The message body is too large.
        Size => "size",
        /// The namespace refuses every store (the testing namespace).
        Namespace => "namespace",
    }
}

vocabulary! {
    /// What became of one onion request at this node: the `outcome` label of
    /// `snode_onion_requests_total`. A closed set, so clients cannot mint label values.
    pub enum OnionOutcome {
        /// This node was the destination and answered.
        Final => "final",
        /// Relayed to the next node, whose answer (whatever its status) went back.
        Relayed => "relayed",
        /// Proxied to an external server, whose answer went back.
        Proxied => "proxied",
        /// Refused: this node is not ready (503).
        NotReady => "not_ready",
        /// Refused: body over 10 MiB (413).
        TooLarge => "too_large",
        /// The entry body or hop request did not parse (400).
        ParseError => "parse_error",
        /// The layer did not decrypt (400 `Invalid ciphertext`).
        BadCiphertext => "bad_ciphertext",
        /// The decrypted layer had no valid routing (encrypted 400 `Invalid json`).
        InvalidJson => "invalid_json",
        /// The next node is not listed (502).
        NextNodeNotFound => "next_node_not_found",
        /// The next node could not be reached (502).
        NextNodeUnreachable => "next_node_unreachable",
        /// The next node did not answer in time (504).
        RelayTimeout => "relay_timeout",
        /// The next node's answer was not signed by it (500 `Invalid response from snode`).
        BadPeerResponse => "bad_peer_response",
        /// `hop_no` over the limit (400).
        MaxHops => "max_hops",
        /// The exit target is not an allowed URL (encrypted 400 `Invalid url`).
        InvalidUrl => "invalid_url",
        /// The exit target is a private or local address this node does not proxy to (502).
        TargetRefused => "target_refused",
        /// The external server could not be reached or answered too much (502).
        ProxyError => "proxy_error",
        /// The external server did not answer in time (504).
        ProxyTimeout => "proxy_timeout",
        /// A hop request from an unlisted or unauthenticated sender (401/403).
        Unauthenticated => "unauthenticated",
    }
}

vocabulary! {
    /// How a swarm peer answered a forwarded request: the `result` label of
    /// `snode_swarm_forwards_total`.
    pub enum ForwardResult {
        /// It answered 2xx with its entry.
        Ok => "ok",
        /// Its answer could not be understood.
        BadResponse => "bad_response",
        /// It did not answer in time.
        Timeout => "timeout",
        /// It answered with a non-2xx status.
        Failed => "failed",
    }
}

vocabulary! {
    /// What a forward queued for retry carries: the `kind` label of
    /// `snode_replication_enqueued_total`.
    pub enum EnqueueKind {
        /// A stored message, re-sent as bulk data.
        Message => "message",
        /// Any other request, re-sent as it was.
        Request => "request",
    }
}

vocabulary! {
    /// The fate of one retry-queue entry in a round: the `result` label of
    /// `snode_replication_retries_total`.
    pub enum RetryResult {
        /// The peer took it.
        Delivered => "delivered",
        /// The peer refused it for good (4xx).
        Rejected => "rejected",
        /// Try again later.
        Retry => "retry",
        /// Past its give-up time.
        GaveUp => "gave_up",
        /// The peer is no longer listed.
        PeerGone => "peer_gone",
        /// Nothing left to send (message gone or expired, or no longer the peer's).
        Moot => "moot",
    }
}

vocabulary! {
    /// How an anti-entropy round with a peer ended: the `result` label of
    /// `snode_anti_entropy_rounds_total`.
    pub enum RoundResult {
        /// Reconciled.
        Ok => "ok",
        /// The round failed (the peer did not answer, or answered wrongly).
        Failed => "failed",
        /// The peer refused a request with 429 (our budget with it is spent); the round
        /// stopped there and resumes next interval.
        RateLimited => "rate_limited",
    }
}

vocabulary! {
    /// Why this node refused a peer's anti-entropy request: the `reason` label of
    /// `snode_anti_entropy_refused_total`.
    pub enum AntiEntropyRefusal {
        /// The peer's budget is spent (429).
        RateLimited => "rate_limited",
        /// The peer is not a member of our swarm (403).
        NotSwarmPeer => "not_swarm_peer",
        /// Malformed, oversized, or a reference time that is not an epoch start or too far
        /// from our clock (400).
        BadRequest => "bad_request",
    }
}

vocabulary! {
    /// What an anti-entropy repair did: the `kind` label of `snode_anti_entropy_repairs_total`.
    pub enum RepairKind {
        /// Messages sent to the peer.
        Pushed => "pushed",
        /// Messages fetched from the peer.
        Pulled => "pulled",
        /// Messages deleted here.
        DeletedLocal => "deleted_local",
        /// Messages deleted at the peer.
        DeletedRemote => "deleted_remote",
    }
}

vocabulary! {
    /// The result of our reachability test of a peer: the `result` label of
    /// `snode_peer_tests_total`.
    pub enum PeerTestResult {
        /// It answered.
        Pass => "pass",
        /// It did not.
        Fail => "fail",
    }
}

vocabulary! {
    /// Which reachability test reached us: the `kind` label of `snode_incoming_pings_total`.
    pub enum PingKind {
        /// `POST /ping_test/v1` over the public HTTPS listener (anyone may send it).
        PingTest => "ping_test",
        /// The signed peer ping `POST /snode/v1/ping` from a listed node.
        PeerPing => "peer_ping",
        /// `snode_ping` on the QUIC listener (quic.md 1.13).
        QuicPing => "quic_ping",
    }
}

vocabulary! {
    /// Why a QUIC connection was refused before its handshake: the `reason` label of
    /// `snode_quic_connections_refused_total`.
    pub enum QuicRefusal {
        /// `quic.max_connections` connections are open.
        Total => "total",
        /// `quic.max_connections_per_ip` connections from that IP are open.
        PerIp => "per_ip",
        /// `quic.max_handshakes` handshakes are in progress (the Initial is ignored).
        Handshakes => "handshakes",
    }
}

vocabulary! {
    /// How a QUIC request ended: the `outcome` label of `snode_quic_requests_total`.
    pub enum QuicOutcome {
        /// Answered with `R`.
        Reply => "reply",
        /// Answered with `E`.
        Error => "error",
    }
}

vocabulary! {
    /// What became of a `notify` push: the `outcome` label of `snode_quic_pushes_total`.
    pub enum PushOutcome {
        /// Queued on the subscriber's stream.
        Sent => "sent",
        /// Dropped: the subscriber's stream was full (it reads too slowly) or closed.
        Dropped => "dropped",
    }
}

/// Latency buckets from 100 µs to 10 s: store/retrieve sit at the bottom, onion hops higher.
const LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// Registering a freshly built collector on a fresh registry cannot fail except on duplicate
/// names, which would be a bug in this catalogue (caught by the unit test).
fn reg<C: prometheus::core::Collector + Clone + 'static>(r: &Registry, c: C) -> C {
    if let Err(e) = r.register(Box::new(c.clone())) {
        tracing::error!(error = %e, "metric registration failed (duplicate name in catalogue)");
    }
    c
}

fn counter(r: &Registry, name: &str, help: &str) -> IntCounter {
    reg(
        r,
        IntCounter::new(name, help).expect("valid metric name and help (static)"),
    )
}

fn gauge(r: &Registry, name: &str, help: &str) -> IntGauge {
    reg(
        r,
        IntGauge::new(name, help).expect("valid metric name and help (static)"),
    )
}

fn counter_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    reg(
        r,
        IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric opts (static)"),
    )
}

/// A counter with one label of vocabulary `V`, every value of which starts at zero.
fn counter_of<V: Vocabulary>(r: &Registry, name: &str, help: &str, label: &str) -> IntCounterVec {
    let c = counter_vec(r, name, help, &[label]);
    for v in V::ALL {
        c.with_label_values(&[v.label()]);
    }
    c
}

impl Metrics {
    /// Builds the catalogue on a new registry, with the process collector.
    pub fn new() -> Self {
        let r = Registry::new();
        #[cfg(target_os = "linux")]
        {
            let pc = prometheus::process_collector::ProcessCollector::for_self();
            if let Err(e) = r.register(Box::new(pc)) {
                tracing::error!(error = %e, "process collector registration failed");
            }
        }
        let request_duration_seconds = reg(
            &r,
            HistogramVec::new(
                HistogramOpts::new(
                    "snode_request_duration_seconds",
                    "Client RPC latency in seconds, by method",
                )
                .buckets(LATENCY_BUCKETS.to_vec()),
                &["method"],
            )
            .expect("valid histogram opts (static)"),
        );
        let onion_duration_seconds = reg(
            &r,
            Histogram::with_opts(
                HistogramOpts::new(
                    "snode_onion_duration_seconds",
                    "Onion request latency in seconds, from arrival to reply",
                )
                .buckets(LATENCY_BUCKETS.to_vec()),
            )
            .expect("valid histogram opts (static)"),
        );
        let forward_batch_size = reg(
            &r,
            Histogram::with_opts(
                HistogramOpts::new(
                    "snode_forward_batch_size",
                    "Forwards carried by one exchange with a swarm peer (1: sent alone)",
                )
                .buckets(vec![1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0]),
            )
            .expect("valid histogram opts (static)"),
        );
        let build_info = reg(
            &r,
            IntGaugeVec::new(
                Opts::new(
                    "snode_build_info",
                    "Build information; the value is always 1",
                ),
                &["version"],
            )
            .expect("valid metric opts (static)"),
        );
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        let store_memory_bytes = reg(
            &r,
            IntGaugeVec::new(
                Opts::new(
                    "snode_store_memory_bytes",
                    "Memory the message store holds, by part (memtables, block_cache, table_readers)",
                ),
                &["part"],
            )
            .expect("valid metric opts (static)"),
        );
        for part in ["memtables", "block_cache", "table_readers"] {
            store_memory_bytes.with_label_values(&[part]).set(0);
        }
        let allocator_bytes = reg(
            &r,
            IntGaugeVec::new(
                Opts::new(
                    "snode_allocator_bytes",
                    "The memory allocator's counters: allocated (live allocations), active, \
                     resident (held from the OS), retained (kept for reuse, not resident)",
                ),
                &["kind"],
            )
            .expect("valid metric opts (static)"),
        );
        for (kind, _) in crate::allocator::AllocatorStats::default().by_kind() {
            allocator_bytes.with_label_values(&[kind]).set(0);
        }
        let peer_tests_total = counter_of::<PeerTestResult>(
            &r,
            "snode_peer_tests_total",
            "Reachability tests of other nodes by this node, by result",
            "result",
        );
        let incoming_pings_total = counter_of::<PingKind>(
            &r,
            "snode_incoming_pings_total",
            "Reachability tests of this node by its peers, by kind",
            "kind",
        );
        Metrics(std::sync::Arc::new(Catalogue {
            requests_total: counter_vec(
                &r,
                "snode_requests_total",
                "Client RPC requests by method and HTTP status",
                &["method", "status"],
            ),
            request_duration_seconds,
            messages_stored_total: counter(
                &r,
                "snode_messages_stored_total",
                "Messages newly stored (duplicates not counted)",
            ),
            bytes_stored_total: counter(
                &r,
                "snode_bytes_stored_total",
                "Bytes of message bodies newly stored",
            ),
            messages_rejected_total: counter_of::<Rejection>(
                &r,
                "snode_messages_rejected_total",
                "Stores refused, by reason",
                "reason",
            ),
            messages_expired_total: counter(
                &r,
                "snode_messages_expired_total",
                "Messages deleted by the expiry sweep",
            ),
            rate_limited_total: counter(
                &r,
                "snode_rate_limited_total",
                "Client requests refused by the per-IP rate limiter",
            ),
            messages_held: gauge(&r, "snode_messages", "Messages held in the store"),
            data_bytes_held: gauge(
                &r,
                "snode_message_bytes",
                "Bytes of message bodies held in the store",
            ),
            accounts_held: gauge(&r, "snode_accounts", "Accounts with at least one message"),
            store_disk_bytes: gauge(
                &r,
                "snode_store_disk_bytes",
                "Bytes the message store occupies on disk",
            ),
            store_max_bytes: gauge(
                &r,
                "snode_store_max_bytes",
                "Size cap of the message store in bytes; stores are refused above it",
            ),
            store_memory_bytes,
            allocator_bytes,
            onion_requests_total: counter_of::<OnionOutcome>(
                &r,
                "snode_onion_requests_total",
                "Onion requests by outcome",
                "outcome",
            ),
            onion_duration_seconds,
            swarm_forwards_total: counter_of::<ForwardResult>(
                &r,
                "snode_swarm_forwards_total",
                "Requests forwarded to swarm peers, by result",
                "result",
            ),
            forward_batch_size,
            replication_enqueued_total: counter_of::<EnqueueKind>(
                &r,
                "snode_replication_enqueued_total",
                "Forwards to swarm peers queued for retry, by payload",
                "kind",
            ),
            replication_queue_depth: gauge(
                &r,
                "snode_replication_queue_depth",
                "Entries in the durable replication retry queue",
            ),
            runtime_tasks: gauge(
                &r,
                "snode_runtime_tasks",
                "Tasks alive on the node's async runtime",
            ),
            replication_retries_total: counter_of::<RetryResult>(
                &r,
                "snode_replication_retries_total",
                "Replication retry attempts, by result",
                "result",
            ),
            handoff_messages_total: counter(
                &r,
                "snode_handoff_messages_total",
                "Messages handed to the swarm that now owns them and deleted here",
            ),
            handoff_batches_failed_total: counter(
                &r,
                "snode_handoff_batches_failed_total",
                "Hand-off batches not acknowledged by every member of the owning swarm",
            ),
            anti_entropy_rounds_total: counter_of::<RoundResult>(
                &r,
                "snode_anti_entropy_rounds_total",
                "Anti-entropy reconciliation rounds with a swarm peer, by result",
                "result",
            ),
            anti_entropy_repairs_total: counter_of::<RepairKind>(
                &r,
                "snode_anti_entropy_repairs_total",
                "Messages repaired by anti-entropy, by kind",
                "kind",
            ),
            anti_entropy_refused_total: counter_of::<AntiEntropyRefusal>(
                &r,
                "snode_anti_entropy_refused_total",
                "Anti-entropy requests from peers refused, by reason",
                "reason",
            ),
            anti_entropy_digest_scans_total: counter(
                &r,
                "snode_anti_entropy_digest_scans_total",
                "Passes over the store to compute an anti-entropy digest (digest cache misses)",
            ),
            build_info,
            ready: gauge(&r, "snode_ready", "1 while the node serves clients, else 0"),
            peer_tests_total,
            peers_tested: gauge(
                &r,
                "snode_peers_tested",
                "Listed nodes this node has tested",
            ),
            peers_unreachable: gauge(
                &r,
                "snode_peers_unreachable",
                "Tested nodes whose latest reachability test failed",
            ),
            incoming_pings_total,
            last_incoming_ping_timestamp_seconds: gauge(
                &r,
                "snode_last_incoming_ping_timestamp_seconds",
                "When a peer last tested this node, in Unix seconds (0 = never)",
            ),
            quic_connections: gauge(
                &r,
                "snode_quic_connections",
                "QUIC connections established and open",
            ),
            quic_connections_refused_total: counter_of::<QuicRefusal>(
                &r,
                "snode_quic_connections_refused_total",
                "QUIC connections refused before their handshake, by reason",
                "reason",
            ),
            quic_handshakes_failed_total: counter(
                &r,
                "snode_quic_handshakes_failed_total",
                "QUIC handshakes that failed or timed out",
            ),
            quic_requests_total: counter_vec(
                &r,
                "snode_quic_requests_total",
                "QUIC requests by endpoint and outcome",
                &["endpoint", "outcome"],
            ),
            quic_stream_errors_total: counter(
                &r,
                "snode_quic_stream_errors_total",
                "QUIC request streams reset for broken framing",
            ),
            quic_pushes_total: counter_of::<PushOutcome>(
                &r,
                "snode_quic_pushes_total",
                "notify pushes to monitor subscribers, by outcome",
                "outcome",
            ),
            monitor_subscriptions: gauge(
                &r,
                "snode_monitor_subscriptions",
                "monitor subscriptions held (one per account per connection)",
            ),
            registry: r,
        }))
    }
}

impl Catalogue {
    /// The registry, for collectors added by other modules.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        let enc = TextEncoder::new();
        if let Err(e) = enc.encode(&self.registry.gather(), &mut buf) {
            tracing::error!(error = %e, "metrics encoding failed");
        }
        String::from_utf8(buf).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalogue_registers_and_renders() {
        let m = Metrics::new();
        m.requests_total.with_label_values(&["store", "200"]).inc();
        m.messages_rejected_total.with_label_values(&["full"]).inc();
        m.onion_requests_total.with_label_values(&["final"]).inc();
        m.swarm_forwards_total.with_label_values(&["ok"]).inc();
        m.replication_enqueued_total
            .with_label_values(&["message"])
            .inc();
        m.replication_retries_total
            .with_label_values(&["delivered"])
            .inc();
        m.anti_entropy_rounds_total.with_label_values(&["ok"]).inc();
        m.anti_entropy_repairs_total
            .with_label_values(&["pushed"])
            .inc();
        m.request_duration_seconds
            .with_label_values(&["store"])
            .observe(0.001);
        let text = m.render();
        for name in [
            "snode_requests_total",
            "snode_request_duration_seconds",
            "snode_messages_stored_total",
            "snode_bytes_stored_total",
            "snode_messages_rejected_total",
            "snode_messages_expired_total",
            "snode_rate_limited_total",
            "snode_messages",
            "snode_message_bytes",
            "snode_accounts",
            "snode_store_disk_bytes",
            "snode_store_max_bytes",
            "snode_store_memory_bytes",
            "snode_allocator_bytes",
            "snode_onion_requests_total",
            "snode_onion_duration_seconds",
            "snode_swarm_forwards_total",
            "snode_forward_batch_size",
            "snode_replication_enqueued_total",
            "snode_replication_queue_depth",
            "snode_runtime_tasks",
            "snode_replication_retries_total",
            "snode_handoff_messages_total",
            "snode_handoff_batches_failed_total",
            "snode_anti_entropy_rounds_total",
            "snode_anti_entropy_repairs_total",
            "snode_anti_entropy_refused_total",
            "snode_anti_entropy_digest_scans_total",
            "snode_build_info",
            "snode_ready",
            "snode_peer_tests_total",
            "snode_peers_tested",
            "snode_peers_unreachable",
            "snode_incoming_pings_total",
            "snode_last_incoming_ping_timestamp_seconds",
        ] {
            assert!(text.contains(&format!("# TYPE {name} ")), "missing {name}");
        }
    }

    /// Every value of `V` is a `name{label="value"} 0` line of `text`, each label distinct.
    fn zeros<V: Vocabulary>(text: &str, name: &str, label: &str) {
        let labels: std::collections::BTreeSet<&str> = V::ALL.iter().map(|v| v.label()).collect();
        assert_eq!(labels.len(), V::ALL.len(), "{name}: duplicate label values");
        for value in labels {
            let line = format!("{name}{{{label}=\"{value}\"}} 0");
            assert!(text.lines().any(|l| l == line), "missing {line}");
        }
    }

    #[test]
    fn a_fresh_registry_exports_every_closed_label_value_at_zero() {
        let text = Metrics::new().render();
        zeros::<Rejection>(&text, "snode_messages_rejected_total", "reason");
        zeros::<OnionOutcome>(&text, "snode_onion_requests_total", "outcome");
        zeros::<ForwardResult>(&text, "snode_swarm_forwards_total", "result");
        zeros::<EnqueueKind>(&text, "snode_replication_enqueued_total", "kind");
        zeros::<RetryResult>(&text, "snode_replication_retries_total", "result");
        zeros::<RoundResult>(&text, "snode_anti_entropy_rounds_total", "result");
        zeros::<RepairKind>(&text, "snode_anti_entropy_repairs_total", "kind");
        zeros::<AntiEntropyRefusal>(&text, "snode_anti_entropy_refused_total", "reason");
        zeros::<PeerTestResult>(&text, "snode_peer_tests_total", "result");
        zeros::<PingKind>(&text, "snode_incoming_pings_total", "kind");
        assert_eq!(OnionOutcome::ALL.len(), 18);
        assert_eq!(RetryResult::ALL.len(), 6);
        assert_eq!(Rejection::ALL.len(), 6);
    }

    #[test]
    fn registries_are_per_node() {
        let a = Metrics::new();
        let b = Metrics::new();
        a.messages_stored_total.inc();
        assert_eq!(a.messages_stored_total.get(), 1);
        assert_eq!(b.messages_stored_total.get(), 0);
    }
}
