//! HTTP edge: the axum routers (public, admin, peer, onion), the listener, rate limiting,
//! the peer-authentication extractor (`peer`) and the one framing of answers into HTTP
//! responses (`response`).
//!
//! Owns status codes, headers and body framing at the edge. Must not hold business logic or
//! protocol codecs: every request is handed to `rpc` (or `onion`, `replication`), bodies
//! between nodes are decoded by `peer`, and the answer is only framed here.

pub mod admin;
pub mod listener;
pub mod onion;
pub mod onion_exit;
pub mod peer;
pub mod public;
pub mod quic;
pub mod rate_limit;
pub mod response;
pub mod serve;

use std::sync::Arc;

use crate::keys::NodeKeys;
use crate::metrics::Metrics;
use crate::rpc::RpcContext;
use rate_limit::RateLimiter;

/// Largest request body accepted on the public listener (the original's 10 MiB).
pub const MAX_REQUEST_BODY: usize = 10 * 1024 * 1024;

/// Version string in the `Server` header: the protocol version clients know, then ours.
pub const SERVER_HEADER: &str = concat!(
    "Oxen Storage Server/2.8.0 snode/",
    env!("CARGO_PKG_VERSION")
);

/// Everything a handler needs; cheap to clone (all shared).
#[derive(Clone)]
pub struct AppState {
    /// The RPC context (store, keys, membership, forwarder, clock).
    pub rpc: RpcContext,
    /// Per-IP client limiter.
    pub limiter: Arc<RateLimiter>,
    /// This node's metrics.
    pub metrics: Metrics,
    /// This node's keys.
    pub keys: Arc<NodeKeys>,
    /// The node's X25519 key for peeling onion layers, parsed once per node.
    pub onion_key: Arc<crate::onion::NodeOnionKey>,
    /// The node's one signed HTTPS client to other nodes, and its peer authentication, which
    /// also checks what peers send us (`peer::AuthenticatedPeer`). Built once in `node`,
    /// shared with replication, used here by the onion relay.
    pub peers: crate::peer::client::PeerClient,
    /// What onion routing needs of its own (the exit client to external servers).
    pub onion: onion::OnionServices,
    /// What `/status` reports beyond the above: reachability, recent requests, start time.
    pub status: Arc<crate::status::StatusState>,
    /// The membership before the current one (kept by `node`): previous owners may still
    /// hand data off, and swarm peers with a lagging view may still forward.
    pub previous_membership: Arc<crate::swarm::PreviousMembership>,
    /// The anti-entropy endpoints' shared state (`Replicator::responder`): per-peer budgets
    /// and the digest cache the node's own anti-entropy rounds use too.
    pub anti_entropy: Arc<crate::replication::serve::Responder>,
}

impl AppState {
    /// Why the node cannot serve clients yet, or `None` when it can (keys are loaded and the
    /// store is open by construction; what remains is knowing our swarm).
    pub fn not_ready_reason(&self) -> Option<String> {
        crate::status::not_ready_reason(&self.rpc.membership.borrow(), &self.keys.pubkey_ed25519())
    }
}
