//! Tests of the status report: how it is built from a node's state and how it reads.

use std::net::Ipv4Addr;

use super::render::{bytes, minutes, short_swarm, span, status_line, text};
use super::window::RequestCounts;
use super::*;
use crate::swarm::NodeInfo;

fn node(k: u8, swarm: u64) -> NodeInfo {
    NodeInfo {
        pubkey_ed25519: [k; 32],
        pubkey_x25519: [k; 32],
        ip: Ipv4Addr::new(203, 0, 113, k),
        https_port: 22021,
        omq_port: 0,
        swarm_id: SwarmId(swarm),
        version: [2, 8, 0],
    }
}

const NOW: i64 = 1_764_000_000_000;

/// A ready node of a 7-member swarm with a known history, for rendering tests.
pub(crate) fn sample_report() -> StatusReport {
    let metrics = Metrics::new();
    metrics.store_max_bytes.set(10_000_000_000);
    metrics
        .requests_total
        .with_label_values(&["store", "200"])
        .inc_by(40);
    metrics
        .requests_total
        .with_label_values(&["retrieve", "200"])
        .inc_by(7);
    metrics
        .onion_requests_total
        .with_label_values(&["final"])
        .inc_by(3);
    metrics
        .onion_requests_total
        .with_label_values(&["proxied"])
        .inc_by(1);
    metrics
        .swarm_forwards_total
        .with_label_values(&["ok"])
        .inc_by(10);
    metrics
        .swarm_forwards_total
        .with_label_values(&["failed"])
        .inc_by(2);
    metrics
        .swarm_forwards_total
        .with_label_values(&["timeout"])
        .inc_by(1);
    metrics.replication_queue_depth.set(4);
    metrics.handoff_messages_total.inc_by(12);
    metrics.rate_limited_total.inc_by(5);
    let state = StatusState::new(metrics.clone(), NOW - 3_600_000 - 120_000, true);
    // An hour ago the node had served 30 stores and 2 retrieves.
    state.recent.record(
        NOW - 3_740_000,
        RequestCounts {
            store: 30,
            retrieve: 2,
            onion: 0,
            proxy: 0,
        },
    );
    state.reachability.record_test(&[2; 32], true, NOW - 12_000);
    state
        .reachability
        .record_test(&[3; 32], false, NOW - 30_000);
    state
        .reachability
        .record_test(&[3; 32], false, NOW - 20_000);
    state.reachability.record_test(&[9; 32], true, NOW - 5_000);
    state
        .reachability
        .record_incoming(crate::reachability::PingKind::PingTest, NOW - 8_000);
    let swarm = 0xabcd_0000_0000_0789;
    let mut nodes: Vec<NodeInfo> = (1..=7).map(|k| node(k, swarm)).collect();
    nodes.push(node(9, 0x10));
    let membership = Membership::new(42, "ab".repeat(32), nodes);
    build(ReportInputs {
        me: [1; 32],
        membership: &membership,
        not_ready: None,
        store: StoreStats {
            messages: 1234,
            data_bytes: 47_300_000,
            accounts: 567,
            disk_bytes: 120_000_000,
            ..StoreStats::default()
        },
        metrics: &metrics,
        state: &state,
        now_ms: NOW,
    })
}

#[test]
fn report_collects_swarm_reachability_replication_and_store() {
    let r = sample_report();
    assert!(r.ready);
    assert_eq!(r.pubkey_ed25519, "01".repeat(32));
    assert_eq!(r.protocol_version, "2.8.0");
    assert_eq!(r.uptime_ms, 3_720_000);
    assert_eq!(
        r.network,
        NetworkStatus {
            directory: true,
            registered: true,
            height: 42,
            nodes: 8,
            swarms: 2
        }
    );
    let s = r.swarm.as_ref().expect("in a swarm");
    assert_eq!(s.id, "abcd000000000789");
    assert_eq!(s.members, 7);
    assert_eq!(s.peers.len(), 6, "every member but this node");
    assert_eq!(s.peers[0].pubkey_ed25519, "02".repeat(32));
    assert_eq!(s.peers[0].address, "203.0.113.2:22021");
    assert!(s.peers[0].last_test.expect("tested").reachable);
    assert_eq!(
        s.peers[1].last_test.expect("tested").consecutive_failures,
        2
    );
    assert_eq!(s.peers[2].last_test, None);
    assert_eq!(
        r.reachability.tested, 3,
        "node 9 of another swarm counts too"
    );
    assert_eq!(r.reachability.reachable, 2);
    assert_eq!(r.reachability.ping_tests.count, 1);
    assert_eq!(r.reachability.reached_by_peers, Some(true));
    assert_eq!(
        r.replication,
        ReplicationStatus {
            retry_queue: 4,
            forwards_failed: 3,
            handoff_messages: 12,
            handoff_batches_failed: 0
        }
    );
    assert_eq!(r.store.max_bytes, 10_000_000_000);
    assert!((r.store.used_percent() - 1.2).abs() < 1e-9);
    assert_eq!(
        r.requests.total,
        RequestCounts {
            store: 40,
            retrieve: 7,
            onion: 4,
            proxy: 1
        }
    );
    assert_eq!(
        r.requests.recent,
        RequestCounts {
            store: 10,
            retrieve: 5,
            onion: 4,
            proxy: 1
        }
    );
    assert_eq!(r.requests.recent_span_ms, 3_740_000);
    assert_eq!(r.requests.rate_limited, 5);
}

#[test]
fn report_round_trips_through_json() {
    let r = sample_report();
    let json = serde_json::to_string(&r).expect("serialize");
    let back: StatusReport = serde_json::from_str(&json).expect("parse");
    assert_eq!(back, r);
}

fn lone_node(networked: bool, uptime_ms: i64, not_ready: Option<&str>) -> StatusReport {
    let metrics = Metrics::new();
    let state = StatusState::new(metrics.clone(), NOW - uptime_ms, networked);
    let membership = if networked {
        Membership::default()
    } else {
        Membership::single(node(1, 0))
    };
    build(ReportInputs {
        me: [1; 32],
        membership: &membership,
        not_ready: not_ready.map(str::to_string),
        store: StoreStats::default(),
        metrics: &metrics,
        state: &state,
        now_ms: NOW,
    })
}

#[test]
fn reached_by_peers_is_unknown_alone_or_early_and_false_after_two_silent_minutes() {
    assert_eq!(
        lone_node(false, 3_600_000, None)
            .reachability
            .reached_by_peers,
        None
    );
    let early = lone_node(true, 60_000, Some("not in any swarm"));
    assert_eq!(early.reachability.reached_by_peers, None);
    assert!(!early.ready);
    assert!(!early.network.registered);
    assert_eq!(early.swarm, None);
    assert_eq!(
        lone_node(true, 121_000, None).reachability.reached_by_peers,
        Some(false)
    );
}

#[test]
fn status_line_has_the_originals_shape() {
    let line = status_line(&sample_report());
    let want_prefix = format!(
        "v2.8.0 (snode {}); sw=abcd…789(n=7); 1234 msgs (47.3MB) for 567 users; \
         reqs(S/R/O/P): 10/5/4/1 (last 62.3min); disk 1.2% of cap; peers 2/3 reachable; retry queue 4",
        env!("CARGO_PKG_VERSION")
    );
    assert_eq!(line, want_prefix);
    assert!(!line.contains('\n'), "one line");
}

#[test]
fn status_line_leads_with_why_a_node_is_not_ready() {
    let line = status_line(&lone_node(true, 200_000, Some("not in any swarm")));
    assert!(
        line.starts_with("NOT READY (not in any swarm); v2.8.0"),
        "{line}"
    );
    assert!(line.contains("sw=none;"), "{line}");
    assert!(line.contains("NOT TESTED BY PEERS"), "{line}");
}

#[test]
fn text_page_answers_the_operators_questions() {
    let page = text(&sample_report());
    for want in [
        "state        ready",
        "this node is registered",
        "swarm        abcd000000000789 (7 members)",
        "I reach      1 of 6 swarm peers (4 not tested yet); 2 of 3 nodes tested",
        "reach me     yes; last test 8s ago (1 ping tests, 0 peer pings)",
        "replication  4 forwards queued for retry; 3 forwards failed",
        "hand-off     12 messages handed to their new owners",
        "store        1234 msgs (47.3MB) for 567 users; disk 120.0MB of 10.0GB cap (1.2%)",
        "requests     last 62.3min: 10 store, 5 retrieve, 4 onion, 1 proxy; 5 rate-limited",
        "  02020202…  203.0.113.2:22021      reachable, tested 12s ago",
        "  03030303…  203.0.113.3:22021      UNREACHABLE: 2 failed test(s) in a row, last 20s ago; never passed",
        "  04040404…  203.0.113.4:22021      not tested yet",
    ] {
        assert!(page.contains(want), "missing {want:?} in:\n{page}");
    }
    let alone = text(&lone_node(false, 5_000, None));
    assert!(alone.contains("one-node network (no directory)"), "{alone}");
    assert!(alone.contains("not applicable (no directory)"), "{alone}");
}

#[test]
fn number_formats() {
    assert_eq!(bytes(0), "0B");
    assert_eq!(bytes(999), "999B");
    assert_eq!(bytes(1_000), "1.0kB");
    assert_eq!(bytes(47_300_000), "47.3MB");
    assert_eq!(bytes(999_960), "1.0MB");
    assert_eq!(bytes(10 * 1024 * 1024 * 1024), "10.7GB");
    assert_eq!(minutes(3_738_000), "62.3min");
    assert_eq!(span(8_400), "8s");
    assert_eq!(span(300_000), "5m");
    assert_eq!(span(11_520_000), "3h 12m");
    assert_eq!(span(183_600_000), "2d 3h");
    assert_eq!(span(-5), "0s");
    assert_eq!(short_swarm("abcd000000000789"), "abcd…789");
    assert_eq!(short_swarm("0"), "0");
}
