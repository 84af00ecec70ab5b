//! What an operator asks of a running node: am I registered, which swarm, do my peers reach me
//! and I them, how far is hand-off, how full is the store, how busy am I.
//!
//! Owns the `StatusReport` (the JSON of `GET /status` on the admin listener), how it is built
//! from the node's live state, its text rendering for `snode status` and the systemd STATUS
//! line (`render`), the periodic monitor that logs state changes and notifies systemd
//! (`monitor`), and the client side of `snode status` (`client`). Must not change the node's
//! behaviour: it only reads. The report names node pubkeys and addresses (public in the
//! directory anyway) but never an account, a message or a client address.

pub mod client;
pub mod monitor;
pub mod render;
pub mod window;

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::clock::Clock;
use crate::metrics::Metrics;
use crate::reachability::{IncomingPings, PEER_SILENCE_MS, PeerObservation, Reachability};
use crate::store::{Store, StoreStats};
use crate::swarm::{Membership, SwarmId};
use window::{RecentRequests, RequestCounts, sum_counters};

/// The per-node state behind the report that nothing else keeps; cheap to share in an `Arc`.
pub struct StatusState {
    /// Our tests of peers and theirs of us.
    pub reachability: Reachability,
    /// Request counts over the last hour.
    pub recent: RecentRequests,
    /// When the node started (ms since the epoch).
    pub started_ms: i64,
    /// Whether the node follows a directory (false: a one-node network).
    pub networked: bool,
}

impl StatusState {
    /// Fresh state for a node started at `started_ms`.
    pub fn new(metrics: Metrics, started_ms: i64, networked: bool) -> Self {
        StatusState {
            reachability: Reachability::new(metrics),
            recent: RecentRequests::new(),
            started_ms,
            networked,
        }
    }
}

/// Everything `snode status` shows; the JSON body of `GET /status`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusReport {
    /// snode's version.
    pub version: String,
    /// The storage-server protocol version the node speaks.
    pub protocol_version: String,
    /// The node's Ed25519 pubkey (hex): its identity in the directory.
    pub pubkey_ed25519: String,
    /// When the report was made (ms since the epoch).
    pub now_ms: i64,
    /// How long the node has run (ms).
    pub uptime_ms: i64,
    /// Whether the node serves clients (`/ready`).
    pub ready: bool,
    /// Why not, when not ready.
    pub not_ready: Option<String>,
    /// The node's view of its network.
    pub network: NetworkStatus,
    /// The node's swarm, when it is in one.
    pub swarm: Option<SwarmStatus>,
    /// Reachability both ways.
    pub reachability: ReachabilityStatus,
    /// Replication and hand-off progress.
    pub replication: ReplicationStatus,
    /// The message store.
    pub store: StoreStatus,
    /// Requests served.
    pub requests: RequestStatus,
}

/// The node's view of its network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkStatus {
    /// Whether the node follows a directory (false: a one-node network owning every account).
    pub directory: bool,
    /// Whether the directory lists this node.
    pub registered: bool,
    /// The membership height the node acts on.
    pub height: u64,
    /// Nodes listed (active or decommissioned).
    pub nodes: usize,
    /// Active swarms.
    pub swarms: usize,
}

/// The node's swarm.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SwarmStatus {
    /// Swarm id, 16 hex digits.
    pub id: String,
    /// Members, this node included.
    pub members: usize,
    /// The other members and what our last test of each found.
    pub peers: Vec<PeerStatus>,
}

/// One swarm peer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerStatus {
    /// Its Ed25519 pubkey (hex).
    pub pubkey_ed25519: String,
    /// `ip:port` of its public listener, as listed.
    pub address: String,
    /// Our last test of it, if any yet.
    pub last_test: Option<PeerObservation>,
}

/// Reachability both ways.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReachabilityStatus {
    /// Listed nodes we have tested.
    pub tested: usize,
    /// Of those, the ones whose last test passed.
    pub reachable: usize,
    /// Incoming `/ping_test/v1`.
    pub ping_tests: IncomingPings,
    /// Incoming signed peer pings.
    pub peer_pings: IncomingPings,
    /// Incoming QUIC `snode_ping`s (peers' tests of the QUIC port).
    #[serde(default)]
    pub quic_pings: IncomingPings,
    /// Whether peers reach us: a test arrived within the last 2 minutes. `None` when it cannot
    /// be told yet (no directory, or up for less than 2 minutes without one).
    pub reached_by_peers: Option<bool>,
}

/// Replication and hand-off progress, from the metrics catalogue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicationStatus {
    /// Forwards waiting in the durable retry queue.
    pub retry_queue: i64,
    /// Forwards to swarm peers that did not succeed at once (since start).
    pub forwards_failed: u64,
    /// Messages handed to the swarm that now owns them (since start).
    pub handoff_messages: u64,
    /// Hand-off batches not acknowledged yet by every new owner (since start).
    pub handoff_batches_failed: u64,
}

/// The message store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreStatus {
    /// Live messages.
    pub messages: u64,
    /// Bytes of message bodies.
    pub data_bytes: u64,
    /// Accounts with at least one message.
    pub accounts: u64,
    /// Bytes the store occupies on disk.
    pub disk_bytes: u64,
    /// The cap on `disk_bytes`; stores are refused above it.
    pub max_bytes: u64,
}

impl StoreStatus {
    /// `disk_bytes / max_bytes` in percent.
    pub fn used_percent(&self) -> f64 {
        if self.max_bytes == 0 {
            return 0.0;
        }
        self.disk_bytes as f64 * 100.0 / self.max_bytes as f64
    }
}

/// Requests served.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestStatus {
    /// Since start.
    pub total: RequestCounts,
    /// Over the last `recent_span_ms`.
    pub recent: RequestCounts,
    /// The span `recent` covers (about an hour once the node has run that long).
    pub recent_span_ms: i64,
    /// Client requests refused by the rate limiter since start.
    pub rate_limited: u64,
}

/// What the report is made of, gathered from the node (see `report`).
pub struct ReportInputs<'a> {
    /// The node's Ed25519 pubkey.
    pub me: [u8; 32],
    /// The membership it acts on.
    pub membership: &'a Membership,
    /// Why it is not ready, if it is not.
    pub not_ready: Option<String>,
    /// Store counters.
    pub store: StoreStats,
    /// The node's metrics (replication figures, request counters, store cap).
    pub metrics: &'a Metrics,
    /// Reachability, recent requests, start time.
    pub state: &'a StatusState,
    /// Now (ms since the epoch).
    pub now_ms: i64,
}

/// Why a node cannot serve clients, or `None` when it can. Keys are loaded and the store is
/// open by construction of a running node; what remains is knowing our swarm. The one rule
/// behind `/ready`, the public endpoints' 503 and the report's `ready`.
pub fn not_ready_reason(membership: &Membership, me: &[u8; 32]) -> Option<String> {
    match membership.swarm_of(me) {
        Some(id) if id != SwarmId::UNASSIGNED => None,
        _ => Some("not in any swarm".to_string()),
    }
}

/// What status reads of a running node: a narrow view assembled by `node` and shared by the
/// admin endpoints (`/ready`, `/status`, `/metrics`) and the monitor. It holds handles, not
/// copies, so every report is current; nothing here can change the node.
#[derive(Clone)]
pub struct StatusSource {
    /// The node's Ed25519 pubkey.
    pub me: [u8; 32],
    /// The membership the node acts on.
    pub membership: watch::Receiver<Arc<Membership>>,
    /// The message store (read for its counters only).
    pub store: Store,
    /// The node's metrics.
    pub metrics: Metrics,
    /// Reachability, recent requests, start time.
    pub state: Arc<StatusState>,
    /// The node's clock.
    pub clock: Clock,
}

impl StatusSource {
    /// Why the node cannot serve clients now (see [`not_ready_reason`]).
    pub fn not_ready(&self) -> Option<String> {
        not_ready_reason(&self.membership.borrow(), &self.me)
    }

    /// The report of the node as it is now. Reads a RocksDB property for the disk figure:
    /// cheap, but callers on async workers run it with `spawn_blocking`.
    pub fn report(&self) -> StatusReport {
        let membership = self.membership.borrow().clone();
        build(ReportInputs {
            me: self.me,
            membership: &membership,
            not_ready: not_ready_reason(&membership, &self.me),
            store: self.store.stats(),
            metrics: &self.metrics,
            state: &self.state,
            now_ms: (self.clock)(),
        })
    }
}

/// Builds a report from its inputs (pure apart from reading counters).
pub fn build(i: ReportInputs<'_>) -> StatusReport {
    let m = i.membership;
    let reach = i.state.reachability.snapshot();
    let swarm = m
        .swarm_of(&i.me)
        .filter(|id| *id != SwarmId::UNASSIGNED)
        .map(|id| {
            let members = m.members(id);
            SwarmStatus {
                id: format!("{:016x}", id.0),
                members: members.len(),
                peers: members
                    .iter()
                    .filter(|n| n.pubkey_ed25519 != i.me)
                    .map(|n| PeerStatus {
                        pubkey_ed25519: hex::encode(n.pubkey_ed25519),
                        address: format!("{}:{}", n.ip, n.https_port),
                        last_test: reach
                            .peers
                            .iter()
                            .find(|(k, _)| *k == n.pubkey_ed25519)
                            .map(|(_, o)| *o),
                    })
                    .collect(),
            }
        });
    let uptime_ms = (i.now_ms - i.state.started_ms).max(0);
    let reached_by_peers = if !i.state.networked {
        None
    } else {
        match reach.last_incoming_ms() {
            Some(t) if i.now_ms - t <= PEER_SILENCE_MS => Some(true),
            _ if uptime_ms < PEER_SILENCE_MS => None,
            _ => Some(false),
        }
    };
    let totals = RequestCounts::from_metrics(i.metrics);
    let (recent, recent_span_ms) = i.state.recent.recent(i.now_ms, totals);
    let forwards_failed = sum_counters(&i.metrics.swarm_forwards_total, |labels| {
        labels
            .iter()
            .any(|l| l.name() == "result" && l.value() != "ok")
    });
    StatusReport {
        version: env!("CARGO_PKG_VERSION").to_string(),
        protocol_version: crate::rpc::STORAGE_SERVER_VERSION
            .map(|v| v.to_string())
            .join("."),
        pubkey_ed25519: hex::encode(i.me),
        now_ms: i.now_ms,
        uptime_ms,
        ready: i.not_ready.is_none(),
        not_ready: i.not_ready,
        network: NetworkStatus {
            directory: i.state.networked,
            registered: m.node(&i.me).is_some(),
            height: m.height,
            nodes: m.nodes.len(),
            swarms: m.swarm_ids().count(),
        },
        swarm,
        reachability: ReachabilityStatus {
            tested: reach.peers.len(),
            reachable: reach.peers.len() - reach.unreachable(),
            ping_tests: reach.ping_tests,
            peer_pings: reach.peer_pings,
            quic_pings: reach.quic_pings,
            reached_by_peers,
        },
        replication: ReplicationStatus {
            retry_queue: i.metrics.replication_queue_depth.get(),
            forwards_failed,
            handoff_messages: i.metrics.handoff_messages_total.get(),
            handoff_batches_failed: i.metrics.handoff_batches_failed_total.get(),
        },
        store: StoreStatus {
            messages: i.store.messages,
            data_bytes: i.store.data_bytes,
            accounts: i.store.accounts,
            disk_bytes: i.store.disk_bytes,
            max_bytes: u64::try_from(i.metrics.store_max_bytes.get()).unwrap_or(0),
        },
        requests: RequestStatus {
            total: totals,
            recent,
            recent_span_ms,
            rate_limited: i.metrics.rate_limited_total.get(),
        },
    }
}

#[cfg(test)]
mod tests;
