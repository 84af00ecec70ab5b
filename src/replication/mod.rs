//! Replication that loses nothing: swarm forwarding, a durable retry queue, the hand-off of
//! data this node no longer owns, and periodic anti-entropy between swarm members.
//!
//! Owns every node-to-node data movement after the client's request was answered. Must not
//! block requests: forwarding answers within the forward timeout and queues the rest; every
//! other task runs in the background on its own schedule.
//!
//! Layout: `forward` ([`HttpForwarder`], the `rpc::SwarmForwarder` of a networked node),
//! `coalesce` (its per-peer queues: concurrent forwards to one peer leave as one batch),
//! `retry` (drains the store's `pending` queue), `handoff` (membership changes), `digest`
//! (pure anti-entropy logic), `digest_cache` (the last few digests, computed once for all who
//! ask), `protocol` (anti-entropy wire types), `serve` (the local side of anti-entropy,
//! answering peers within their budget) and `anti_entropy` (the reconciliation loop).
//!
//! # Wiring (in `node.rs`)
//! ```ignore
//! let repl = Replicator::new(ReplicatorParts {
//!     store: store.clone(), client: peer_client.clone(), me: keys.pubkey_ed25519(),
//!     membership: membership_rx.clone(), metrics: metrics.clone(), clock: clock.clone(),
//!     config: cfg.replication.clone(), testnet: cfg.network.testnet,
//! });
//! // In RpcContext: `forwarder: Arc::new(repl.forwarder())` (instead of `NoPeers`).
//! // In AppState: `anti_entropy: repl.responder()` (shares the digest cache with the loop).
//! tracker.spawn(repl.clone().run_retry(cancel.clone()));
//! tracker.spawn(repl.clone().run_handoff(cancel.clone()));
//! tracker.spawn(repl.run_anti_entropy(cancel.clone()));
//! ```
//! The loops are harmless in a one-node network (nobody to send to); they may be spawned in
//! every mode. The peer router must be mounted (it serves `/snode/v1/data` and the
//! anti-entropy routes of `protocol`).

mod anti_entropy;
mod coalesce;
pub mod digest;
pub mod digest_cache;
mod forward;
mod handoff;
pub mod protocol;
mod retry;
pub(crate) mod revocations;
pub mod serve;

pub(crate) use forward::request_account;
pub use forward::{HttpForwarder, REQUEST_GIVE_UP_MS, store_target};

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, watch};

use crate::clock::Clock;
use crate::config::ReplicationConfig;
use crate::metrics::Metrics;
use crate::peer::client::{PeerClient, PeerError};
use crate::store::{Store, StoreError};
use crate::swarm::{Membership, NodeInfo};

/// First retry delay; then doubling up to `retry_max_backoff`.
pub const INITIAL_BACKOFF_MS: i64 = 250;
/// Timeout of bulk transfers (hand-off batches, anti-entropy pushes and fetches).
const BULK_TIMEOUT: Duration = Duration::from_secs(30);
/// Size of one bulk batch (hand-off, retried stores, anti-entropy pushes): small enough that a
/// slow link finishes it well within [`BULK_TIMEOUT`], large enough to move data quickly.
const BATCH_BYTES: usize = 1 << 20;
/// Wire overhead per message in a batch (keys, hash, integers, bencode framing).
const PER_MESSAGE_OVERHEAD: usize = 128;

/// What a [`Replicator`] is built from.
pub struct ReplicatorParts {
    /// The node's store.
    pub store: Store,
    /// The node's signed peer client.
    pub client: PeerClient,
    /// This node's Ed25519 pubkey.
    pub me: [u8; 32],
    /// The membership the node acts on.
    pub membership: watch::Receiver<Arc<Membership>>,
    /// The node's metrics.
    pub metrics: Metrics,
    /// The node's clock (ms since epoch).
    pub clock: Clock,
    /// `[replication]` settings.
    pub config: ReplicationConfig,
    /// Test network: 64-hex pubkeys are `05` accounts (as the RPC reads them).
    pub testnet: bool,
}

/// The replication machinery of one node; cheap to clone (one `Arc`).
#[derive(Clone)]
pub struct Replicator {
    inner: Arc<Shared>,
}

/// State shared by the forwarder and the loops.
struct Shared {
    store: Store,
    client: PeerClient,
    me: [u8; 32],
    membership: watch::Receiver<Arc<Membership>>,
    metrics: Metrics,
    clock: Clock,
    config: ReplicationConfig,
    testnet: bool,
    /// Set by the forwarder after queuing; wakes the retry loop.
    wake: Arc<Notify>,
    /// The anti-entropy routes' state; its digest cache serves our own sessions too.
    responder: Arc<serve::Responder>,
    /// Per-peer forward queues, shared by every forwarder handed out.
    coalescer: coalesce::Coalescer,
}

/// Why one replication step failed (logged by the loops, which carry on).
#[derive(Debug, thiserror::Error)]
pub enum ReplicationError {
    /// The store failed.
    #[error("store error during {op}")]
    Store {
        /// What we were doing.
        op: &'static str,
        /// The store's error.
        #[source]
        source: StoreError,
    },
    /// A peer could not be asked.
    #[error("request to a peer at {path} failed")]
    Peer {
        /// The endpoint.
        path: &'static str,
        /// Why.
        #[source]
        source: PeerError,
    },
    /// A peer answered with an unexpected status or body.
    #[error("peer answered {status} at {path}")]
    BadAnswer {
        /// The endpoint.
        path: &'static str,
        /// Its status.
        status: u16,
    },
    /// A peer refused an anti-entropy request with 429: our budget with it is spent until its
    /// bucket refills, so the session ends here (and resumes next interval).
    #[error("peer refused {path}: anti-entropy budget spent")]
    Limited {
        /// The endpoint.
        path: &'static str,
    },
    /// A blocking store task panicked or was cancelled.
    #[error("blocking store task failed during {op}")]
    Join {
        /// What we were doing.
        op: &'static str,
    },
}

impl Replicator {
    /// Builds the machinery; nothing runs until the `run_*` loops are spawned.
    pub fn new(parts: ReplicatorParts) -> Replicator {
        let digests = Arc::new(digest_cache::DigestCache::new(
            parts.metrics.anti_entropy_digest_scans_total.clone(),
        ));
        let budget = serve::PeerBudget::for_interval(parts.config.anti_entropy_interval);
        let coalescer = coalesce::Coalescer::new(
            parts.client.clone(),
            parts.metrics.clone(),
            parts.config.forward_timeout,
        );
        Replicator {
            inner: Arc::new(Shared {
                coalescer,
                store: parts.store,
                client: parts.client,
                me: parts.me,
                membership: parts.membership,
                metrics: parts.metrics,
                clock: parts.clock,
                config: parts.config,
                testnet: parts.testnet,
                wake: Arc::new(Notify::new()),
                responder: Arc::new(serve::Responder::new(digests, budget)),
            }),
        }
    }

    /// What the peer routes answer anti-entropy requests with (`AppState::anti_entropy`):
    /// per-peer budgets sized from `anti_entropy_interval`, and the digest cache our own
    /// sessions use, so peers asking and our own rounds share one scan per epoch.
    pub fn responder(&self) -> Arc<serve::Responder> {
        self.inner.responder.clone()
    }

    /// The forwarder to put in the `RpcContext`: forwards with `forward_timeout` and queues
    /// failures for [`Replicator::run_retry`].
    pub fn forwarder(&self) -> HttpForwarder {
        let s = &self.inner;
        HttpForwarder {
            coalescer: s.coalescer.clone(),
            store: s.store.clone(),
            metrics: s.metrics.clone(),
            clock: s.clock.clone(),
            testnet: s.testnet,
            wake: s.wake.clone(),
        }
    }

    /// Now, ms since epoch.
    fn now(&self) -> i64 {
        (self.inner.clock)()
    }

    /// The current membership (never held across an await).
    fn snapshot(&self) -> Arc<Membership> {
        self.inner.membership.borrow().clone()
    }

    /// Runs blocking store work off the async workers.
    async fn blocking<T: Send + 'static>(
        &self,
        op: &'static str,
        f: impl FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, ReplicationError> {
        let store = self.inner.store.clone();
        match crate::blocking::run(move || f(&store)).await {
            Ok(r) => r.map_err(|source| ReplicationError::Store { op, source }),
            Err(_) => Err(ReplicationError::Join { op }),
        }
    }

    /// POSTs to a peer; a transport failure is an error, any answer is returned.
    async fn post(
        &self,
        peer: &NodeInfo,
        path: &'static str,
        body: Vec<u8>,
        timeout: Duration,
    ) -> Result<crate::peer::client::PeerResponse, ReplicationError> {
        self.inner
            .client
            .post(peer, path, body, timeout)
            .await
            .map_err(|source| ReplicationError::Peer { path, source })
    }

    /// Pushes `msgs` as one bulk-data blob to `peer`; `Ok(true)` iff the peer answered 200
    /// and owns (accepted) every one of them. Callers pass about [`BATCH_BYTES`]
    /// ([`chunk_by_size`]), far below the receiver's body limit, so one blob carries them all.
    async fn push_batch(
        &self,
        peer: &NodeInfo,
        msgs: &[crate::message::Message],
    ) -> Result<bool, ReplicationError> {
        let Some(blob) = crate::peer::wire::encode_batches(msgs, usize::MAX).pop() else {
            return Ok(true);
        };
        let r = self
            .post(peer, crate::peer::PATH_DATA, blob, BULK_TIMEOUT)
            .await?;
        if r.status != 200 {
            return Ok(false);
        }
        Ok(serde_json::from_slice::<protocol::DataResponse>(&r.body)
            .is_ok_and(|ack| ack.accepted == msgs.len()))
    }
}

impl Replicator {
    /// Sends handed-off tombstones (`body`, `n` of them) to `peer`; `Ok(true)` when it took
    /// all of them (durably: the receiver syncs before answering).
    async fn push_tombstones(
        &self,
        peer: &NodeInfo,
        body: Vec<u8>,
        n: usize,
    ) -> Result<bool, ReplicationError> {
        let r = self
            .post(peer, crate::peer::PATH_TOMBSTONES, body, BULK_TIMEOUT)
            .await?;
        Ok(r.status == 200
            && serde_json::from_slice::<protocol::DataResponse>(&r.body)
                .is_ok_and(|ack| ack.accepted == n))
    }
}

/// Splits `msgs` into groups of about [`BATCH_BYTES`] (a larger message goes alone).
fn chunk_by_size(msgs: Vec<crate::message::Message>) -> Vec<Vec<crate::message::Message>> {
    let mut out = Vec::new();
    let mut cur = Vec::new();
    let mut bytes = 0usize;
    for m in msgs {
        let size = m.data.len() + m.hash.len() + PER_MESSAGE_OVERHEAD;
        if !cur.is_empty() && bytes + size > BATCH_BYTES {
            out.push(std::mem::take(&mut cur));
            bytes = 0;
        }
        bytes += size;
        cur.push(m);
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// Retry delay after `attempts` failed retries: 250 ms doubling, capped at `max`.
fn backoff_ms(attempts: u32, max: Duration) -> i64 {
    let max_ms = i64::try_from(max.as_millis()).unwrap_or(i64::MAX);
    INITIAL_BACKOFF_MS
        .saturating_mul(1i64 << attempts.min(40))
        .min(max_ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_the_cap() {
        let max = Duration::from_secs(10);
        let seq: Vec<i64> = (0..8).map(|a| backoff_ms(a, max)).collect();
        assert_eq!(seq, vec![250, 500, 1000, 2000, 4000, 8000, 10_000, 10_000]);
        assert_eq!(backoff_ms(u32::MAX, max), 10_000);
        assert_eq!(backoff_ms(3, Duration::from_millis(300)), 300);
    }

    #[test]
    fn chunks_stay_near_the_batch_size() {
        let a = crate::message::AccountId {
            kind: 5,
            key: [1; 32],
        };
        let m = |n: usize| crate::message::Message {
            account: a,
            namespace: crate::message::Namespace(0),
            hash: "h".repeat(43),
            timestamp_ms: 0,
            expiry_ms: 1,
            data: vec![0; n],
            expiry_log: None,
        };
        let msgs: Vec<_> = (0..30).map(|_| m(100_000)).collect();
        let chunks = chunk_by_size(msgs);
        assert_eq!(chunks.iter().map(Vec::len).sum::<usize>(), 30);
        assert!(chunks.iter().all(|c| c.len() <= 10));
        let big = chunk_by_size(vec![m(3 << 20), m(1)]);
        assert_eq!(big.iter().map(Vec::len).collect::<Vec<_>>(), vec![1, 1]);
        assert!(chunk_by_size(Vec::new()).is_empty());
    }
}
