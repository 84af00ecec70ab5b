//! The catalogue of every metric the node exports, with help text, on a per-node registry.
//!
//! Owns metric names, labels and help. Must not be global: each `Node` owns one `Metrics`
//! built on its own `prometheus::Registry`, so tests can run many nodes in one process.
//! No label ever carries a pubkey, a message hash or an IP: labels are closed vocabularies
//! (method names, status codes, outcome enums).

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

/// Every metric of one node.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    /// Client RPC requests by method and HTTP status.
    pub requests_total: IntCounterVec,
    /// Client RPC latency by method.
    pub request_duration_seconds: HistogramVec,
    /// Messages newly stored (not duplicates).
    pub messages_stored_total: IntCounter,
    /// Bytes of message bodies newly stored.
    pub bytes_stored_total: IntCounter,
    /// Stores refused, by reason (`full`, `ttl`, `clock`, `auth`, `size`, `namespace`).
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
    /// Onion requests by outcome.
    pub onion_requests_total: IntCounterVec,
    /// Onion request latency (entry to reply).
    pub onion_duration_seconds: Histogram,
    /// Forwards to swarm peers by outcome (`ok`, `failed`, `timeout`).
    pub swarm_forwards_total: IntCounterVec,
    /// Forwards queued for retry, by payload (`message`, `request`).
    pub replication_enqueued_total: IntCounterVec,
    /// Entries in the durable retry queue (gauge).
    pub replication_queue_depth: IntGauge,
    /// Retry attempts and their fate, by result (`delivered`, `rejected`, `retry`,
    /// `gave_up`, `peer_gone`, `moot`).
    pub replication_retries_total: IntCounterVec,
    /// Messages handed to their new owners and deleted here.
    pub handoff_messages_total: IntCounter,
    /// Hand-off batches not acknowledged by every new owner (kept, resent later).
    pub handoff_batches_failed_total: IntCounter,
    /// Anti-entropy rounds by result (`ok`, `failed`).
    pub anti_entropy_rounds_total: IntCounterVec,
    /// Messages repaired by anti-entropy, by kind (`pushed`, `pulled`, `deleted_local`,
    /// `deleted_remote`).
    pub anti_entropy_repairs_total: IntCounterVec,
    /// Constant 1, labelled with the build's version.
    pub build_info: IntGaugeVec,
    /// 1 while the node serves clients (`/ready` answers 200), else 0.
    pub ready: IntGauge,
    /// Our reachability tests of other nodes, by result (`pass`, `fail`).
    pub peer_tests_total: IntCounterVec,
    /// Listed nodes this node has tested.
    pub peers_tested: IntGauge,
    /// Of those, the ones whose latest test failed.
    pub peers_unreachable: IntGauge,
    /// Reachability tests of this node by its peers, by kind (`ping_test`, `peer_ping`).
    pub incoming_pings_total: IntCounterVec,
    /// When a peer last tested this node (Unix seconds; 0 = never).
    pub last_incoming_ping_timestamp_seconds: IntGauge,
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
        let peer_tests_total = counter_vec(
            &r,
            "snode_peer_tests_total",
            "Reachability tests of other nodes by this node, by result",
            &["result"],
        );
        let incoming_pings_total = counter_vec(
            &r,
            "snode_incoming_pings_total",
            "Reachability tests of this node by its peers, by kind",
            &["kind"],
        );
        // Their label sets are closed and known here: export zeros from the start, so
        // dashboards and alerts see the series before the first test.
        for result in ["pass", "fail"] {
            peer_tests_total.with_label_values(&[result]);
        }
        for kind in ["ping_test", "peer_ping"] {
            incoming_pings_total.with_label_values(&[kind]);
        }
        Metrics {
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
            messages_rejected_total: counter_vec(
                &r,
                "snode_messages_rejected_total",
                "Stores refused, by reason",
                &["reason"],
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
            onion_requests_total: counter_vec(
                &r,
                "snode_onion_requests_total",
                "Onion requests by outcome",
                &["outcome"],
            ),
            onion_duration_seconds,
            swarm_forwards_total: counter_vec(
                &r,
                "snode_swarm_forwards_total",
                "Requests forwarded to swarm peers, by result",
                &["result"],
            ),
            replication_enqueued_total: counter_vec(
                &r,
                "snode_replication_enqueued_total",
                "Forwards to swarm peers queued for retry, by payload",
                &["kind"],
            ),
            replication_queue_depth: gauge(
                &r,
                "snode_replication_queue_depth",
                "Entries in the durable replication retry queue",
            ),
            replication_retries_total: counter_vec(
                &r,
                "snode_replication_retries_total",
                "Replication retry attempts, by result",
                &["result"],
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
            anti_entropy_rounds_total: counter_vec(
                &r,
                "snode_anti_entropy_rounds_total",
                "Anti-entropy reconciliation rounds with a swarm peer, by result",
                &["result"],
            ),
            anti_entropy_repairs_total: counter_vec(
                &r,
                "snode_anti_entropy_repairs_total",
                "Messages repaired by anti-entropy, by kind",
                &["kind"],
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
            registry: r,
        }
    }

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
            "snode_onion_requests_total",
            "snode_onion_duration_seconds",
            "snode_swarm_forwards_total",
            "snode_replication_enqueued_total",
            "snode_replication_queue_depth",
            "snode_replication_retries_total",
            "snode_handoff_messages_total",
            "snode_handoff_batches_failed_total",
            "snode_anti_entropy_rounds_total",
            "snode_anti_entropy_repairs_total",
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

    #[test]
    fn registries_are_per_node() {
        let a = Metrics::new();
        let b = Metrics::new();
        a.messages_stored_total.inc();
        assert_eq!(a.messages_stored_total.get(), 1);
        assert_eq!(b.messages_stored_total.get(), 0);
    }
}
