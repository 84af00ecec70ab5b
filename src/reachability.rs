//! What this node has seen of the network's reachability: the result of its own tests of each
//! peer, and when peers last tested it (incoming `/ping_test/v1` and `/snode/v1/ping`).
//!
//! Owns this bookkeeping for `snode status`, the STATUS line and the reachability metrics.
//! Must not test anyone (`network` does) or decide anything: the directory decides who is
//! decommissioned. Records no IP address of whoever pinged us, only when and how often.
//! Per node, never global: a `std::sync::Mutex`, because it is never held across an `.await`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use serde::{Deserialize, Serialize};

use crate::metrics::{Metrics, PeerTestResult};
use crate::swarm::Membership;

pub use crate::metrics::PingKind;

/// The original warns its operator when no peer has tested it for this long
/// (storage-server.md 3.6, self-monitoring).
pub const PEER_SILENCE_MS: i64 = 2 * 60 * 1000;

/// What our last test of one peer found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerObservation {
    /// When we last tested it (ms since the epoch).
    pub last_test_ms: i64,
    /// Whether that test passed.
    pub reachable: bool,
    /// Failed tests in a row (0 after a pass).
    pub consecutive_failures: u32,
    /// When a test last passed, if ever.
    pub last_success_ms: Option<i64>,
}

/// How often and when one kind of incoming test reached us.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IncomingPings {
    /// Tests received since the node started.
    pub count: u64,
    /// When the last one arrived (ms since the epoch), if ever.
    pub last_ms: Option<i64>,
}

impl IncomingPings {
    fn record(&mut self, now_ms: i64) {
        self.count += 1;
        self.last_ms = Some(self.last_ms.map_or(now_ms, |t| t.max(now_ms)));
    }
}

/// A consistent copy of everything recorded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReachabilitySnapshot {
    /// Our latest observation of each peer we tested, sorted by pubkey.
    pub peers: Vec<([u8; 32], PeerObservation)>,
    /// Incoming `/ping_test/v1`.
    pub ping_tests: IncomingPings,
    /// Incoming signed peer pings.
    pub peer_pings: IncomingPings,
    /// `snode_ping` on our QUIC listener (a peer's QUIC reachability test, quic.md 1.13).
    pub quic_pings: IncomingPings,
}

impl ReachabilitySnapshot {
    /// When any peer last tested us, if ever.
    pub fn last_incoming_ms(&self) -> Option<i64> {
        self.ping_tests
            .last_ms
            .max(self.peer_pings.last_ms)
            .max(self.quic_pings.last_ms)
    }

    /// Peers whose latest test (by us) failed.
    pub fn unreachable(&self) -> usize {
        self.peers.iter().filter(|(_, o)| !o.reachable).count()
    }
}

#[derive(Default)]
struct Inner {
    peers: HashMap<[u8; 32], PeerObservation>,
    ping_tests: IncomingPings,
    peer_pings: IncomingPings,
    quic_pings: IncomingPings,
}

/// The node's reachability bookkeeping; cheap to clone (shared).
#[derive(Clone)]
pub struct Reachability {
    inner: Arc<Mutex<Inner>>,
    metrics: Metrics,
}

impl Reachability {
    /// Empty bookkeeping that also counts into `metrics`.
    pub fn new(metrics: Metrics) -> Self {
        Reachability {
            inner: Arc::new(Mutex::new(Inner::default())),
            metrics,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic elsewhere while holding this lock leaves plain counters behind: still usable.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records the result of our test of `peer`.
    pub fn record_test(&self, peer: &[u8; 32], passed: bool, now_ms: i64) {
        {
            let mut inner = self.lock();
            let prev = inner.peers.get(peer).copied();
            let failures = match (passed, prev) {
                (true, _) => 0,
                (false, Some(p)) => p.consecutive_failures.saturating_add(1),
                (false, None) => 1,
            };
            inner.peers.insert(
                *peer,
                PeerObservation {
                    last_test_ms: now_ms,
                    reachable: passed,
                    consecutive_failures: failures,
                    last_success_ms: if passed {
                        Some(now_ms)
                    } else {
                        prev.and_then(|p| p.last_success_ms)
                    },
                },
            );
        }
        self.metrics
            .peer_tests_total
            .with_label_values(&[if passed {
                PeerTestResult::Pass
            } else {
                PeerTestResult::Fail
            }
            .label()])
            .inc();
    }

    /// Records that a peer's test reached us.
    pub fn record_incoming(&self, kind: PingKind, now_ms: i64) {
        let last = {
            let mut inner = self.lock();
            let slot = match kind {
                PingKind::PingTest => &mut inner.ping_tests,
                PingKind::PeerPing => &mut inner.peer_pings,
                PingKind::QuicPing => &mut inner.quic_pings,
            };
            slot.record(now_ms);
            inner
                .ping_tests
                .last_ms
                .max(inner.peer_pings.last_ms)
                .max(inner.quic_pings.last_ms)
        };
        self.metrics
            .incoming_pings_total
            .with_label_values(&[kind.label()])
            .inc();
        if let Some(ms) = last {
            self.metrics
                .last_incoming_ping_timestamp_seconds
                .set(ms.div_euclid(1000));
        }
    }

    /// Our latest observation of `peer`, if we tested it.
    pub fn peer(&self, peer: &[u8; 32]) -> Option<PeerObservation> {
        self.lock().peers.get(peer).copied()
    }

    /// Forgets peers the directory no longer lists, so the map stays as large as the network.
    pub fn retain_listed(&self, membership: &Membership) {
        self.lock()
            .peers
            .retain(|pk, _| membership.node(pk).is_some());
    }

    /// A consistent copy of everything recorded.
    pub fn snapshot(&self) -> ReachabilitySnapshot {
        let inner = self.lock();
        let mut peers: Vec<_> = inner.peers.iter().map(|(k, v)| (*k, *v)).collect();
        peers.sort_by_key(|(k, _)| *k);
        ReachabilitySnapshot {
            peers,
            ping_tests: inner.ping_tests,
            peer_pings: inner.peer_pings,
            quic_pings: inner.quic_pings,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::swarm::{NodeInfo, SwarmId};

    fn node(k: u8) -> NodeInfo {
        NodeInfo {
            pubkey_ed25519: [k; 32],
            pubkey_x25519: [k; 32],
            ip: std::net::Ipv4Addr::LOCALHOST,
            https_port: 1,
            omq_port: 0,
            swarm_id: SwarmId(0),
            version: [2, 8, 0],
        }
    }

    #[test]
    fn failures_count_up_and_a_pass_resets_them() {
        let r = Reachability::new(Metrics::new());
        let p = [7u8; 32];
        assert_eq!(r.peer(&p), None);
        r.record_test(&p, true, 1_000);
        r.record_test(&p, false, 2_000);
        r.record_test(&p, false, 3_000);
        let o = r.peer(&p).expect("observed");
        assert_eq!(o.consecutive_failures, 2);
        assert!(!o.reachable);
        assert_eq!(o.last_test_ms, 3_000);
        assert_eq!(
            o.last_success_ms,
            Some(1_000),
            "the last pass is remembered"
        );
        r.record_test(&p, true, 4_000);
        let o = r.peer(&p).expect("observed");
        assert_eq!(
            (o.consecutive_failures, o.reachable, o.last_success_ms),
            (0, true, Some(4_000))
        );
        assert_eq!(r.snapshot().unreachable(), 0);
    }

    #[test]
    fn incoming_pings_are_counted_by_kind_and_exported() {
        let m = Metrics::new();
        let r = Reachability::new(m.clone());
        assert_eq!(r.snapshot().last_incoming_ms(), None);
        r.record_incoming(PingKind::PingTest, 10_000);
        r.record_incoming(PingKind::PingTest, 12_500);
        r.record_incoming(PingKind::PeerPing, 11_000);
        let s = r.snapshot();
        assert_eq!(
            s.ping_tests,
            IncomingPings {
                count: 2,
                last_ms: Some(12_500)
            }
        );
        assert_eq!(
            s.peer_pings,
            IncomingPings {
                count: 1,
                last_ms: Some(11_000)
            }
        );
        assert_eq!(s.last_incoming_ms(), Some(12_500));
        assert_eq!(
            m.incoming_pings_total
                .with_label_values(&["ping_test"])
                .get(),
            2
        );
        assert_eq!(
            m.incoming_pings_total
                .with_label_values(&["peer_ping"])
                .get(),
            1
        );
        // The gauge keeps the newest arrival even when an older one is recorded later.
        assert_eq!(m.last_incoming_ping_timestamp_seconds.get(), 12);
    }

    #[test]
    fn outgoing_tests_are_exported_by_result() {
        let m = Metrics::new();
        let r = Reachability::new(m.clone());
        r.record_test(&[1; 32], true, 1);
        r.record_test(&[2; 32], false, 1);
        r.record_test(&[2; 32], false, 2);
        assert_eq!(m.peer_tests_total.with_label_values(&["pass"]).get(), 1);
        assert_eq!(m.peer_tests_total.with_label_values(&["fail"]).get(), 2);
        assert_eq!(r.snapshot().unreachable(), 1);
    }

    #[test]
    fn peers_no_longer_listed_are_forgotten() {
        let r = Reachability::new(Metrics::new());
        r.record_test(&[1; 32], true, 1);
        r.record_test(&[2; 32], false, 1);
        r.retain_listed(&Membership::new(1, "h".into(), vec![node(1), node(3)]));
        let s = r.snapshot();
        assert_eq!(s.peers.len(), 1);
        assert_eq!(s.peers[0].0, [1; 32]);
    }
}
