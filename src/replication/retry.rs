//! The retry loop: drains the store's durable `pending` queue until every peer took what it
//! missed, or the entry stopped mattering.
//!
//! Every ~250 ms (at once when the forwarder queues something, and not at all while the queue
//! is empty) it takes the due entries, earliest first, and handles each peer's share
//! concurrently: a stored message is pushed as bulk data (`/snode/v1/data`; done iff the peer
//! answers 200 and accepts every message), a request is re-sent to `/snode/v1/storage_cc`
//! marked `"retry": true` (done on any 2xx or 4xx: a 4xx will never change, but for a 421
//! from a peer our listing still puts in the account's swarm, kept until the two listings
//! agree). A failure reschedules the entry with exponential backoff (250 ms doubling to
//! `retry_max_backoff`) and skips the peer's remaining entries this round, so a dead peer
//! costs one attempt per round.
//! Entries for peers no longer listed, messages gone or no longer the peer's, and entries past
//! their give-up time are dropped. Must not block: store work runs on blocking threads.

use std::collections::{BTreeMap, HashMap};

use futures_util::future::join_all;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

// The fate of one entry in a round is its `snode_replication_retries_total` result.
use crate::metrics::RetryResult as Fate;
use crate::peer::PATH_STORAGE_CC;
use crate::store::{PendingItem, PendingPayload};
use crate::swarm::{Membership, NodeInfo};

use super::{ReplicationError, Replicator, backoff_ms, chunk_by_size};

/// Pause between rounds while the queue is not empty.
const TICK: std::time::Duration = std::time::Duration::from_millis(250);
/// Entries taken per round; a full round is followed by another at once.
const ROUND_LIMIT: usize = 512;

impl Replicator {
    /// Runs the retry loop until `cancel`.
    pub async fn run_retry(self, cancel: CancellationToken) {
        loop {
            let idle = self.inner.store.pending_len() == 0;
            tokio::select! {
                biased;
                _ = cancel.cancelled() => break,
                _ = self.inner.wake.notified() => {}
                _ = tokio::time::sleep(TICK), if !idle => {}
            }
            loop {
                match self.retry_round().await {
                    Ok(true) if !cancel.is_cancelled() => continue,
                    Ok(_) => break,
                    Err(e) => {
                        tracing::warn!(error = %crate::error::chain(&e), "replication retry round failed");
                        break;
                    }
                }
            }
            self.inner
                .metrics
                .replication_queue_depth
                .set(i64::try_from(self.inner.store.pending_len()).unwrap_or(i64::MAX));
        }
    }

    /// One round; `Ok(true)` when it took a full load (more may be due).
    async fn retry_round(&self) -> Result<bool, ReplicationError> {
        let membership = self.snapshot();
        // Before the first membership arrives every peer would look unlisted: wait rather
        // than drop the queue.
        if membership.nodes.is_empty() {
            return Ok(false);
        }
        let now = self.now();
        let items = self
            .blocking("read retry queue", move |s| s.pending_due(now, ROUND_LIMIT))
            .await?;
        let full = items.len() == ROUND_LIMIT;
        let mut by_peer: BTreeMap<[u8; 32], Vec<PendingItem>> = BTreeMap::new();
        for item in items {
            by_peer.entry(item.peer).or_default().push(item);
        }
        let mut fates: Vec<(PendingItem, Fate)> = Vec::new();
        let mut work = Vec::new();
        for (peer, items) in by_peer {
            let Some(info) = membership.node(&peer).cloned() else {
                fates.extend(items.into_iter().map(|i| (i, Fate::PeerGone)));
                continue;
            };
            let (expired, live): (Vec<_>, Vec<_>) =
                items.into_iter().partition(|i| i.give_up_ms <= now);
            fates.extend(expired.into_iter().map(|i| (i, Fate::GaveUp)));
            if !live.is_empty() {
                work.push(self.retry_peer(info, live, membership.clone(), now));
            }
        }
        for peer_fates in join_all(work).await {
            fates.extend(peer_fates?);
        }
        self.settle(fates, now).await?;
        Ok(full)
    }

    /// Records the fates: done entries removed, retries rescheduled, metrics counted.
    async fn settle(
        &self,
        fates: Vec<(PendingItem, Fate)>,
        now: i64,
    ) -> Result<(), ReplicationError> {
        let max = self.inner.config.retry_max_backoff;
        let mut done = Vec::new();
        let mut again = Vec::new();
        for (item, fate) in fates {
            self.inner
                .metrics
                .replication_retries_total
                .with_label_values(&[fate.label()])
                .inc();
            if fate == Fate::Retry {
                let due = now.saturating_add(backoff_ms(item.attempts, max));
                again.push((item, due));
            } else {
                done.push(item);
            }
        }
        self.blocking("update retry queue", move |s| {
            s.pending_done_many(&done)?;
            s.pending_reschedule_many(&again)
        })
        .await
    }

    /// Handles one peer's due entries: messages first (batched), then requests in order.
    async fn retry_peer(
        &self,
        peer: NodeInfo,
        items: Vec<PendingItem>,
        membership: std::sync::Arc<Membership>,
        now: i64,
    ) -> Result<Vec<(PendingItem, Fate)>, ReplicationError> {
        let (messages, requests): (Vec<_>, Vec<_>) = items
            .into_iter()
            .partition(|i| matches!(i.payload, PendingPayload::Message { .. }));
        let mut fates = Vec::new();
        let reachable = self
            .retry_messages(&peer, messages, &membership, now, &mut fates)
            .await?;
        let mut down = !reachable;
        for item in requests {
            if down {
                fates.push((item, Fate::Retry));
                continue;
            }
            let fate = self.retry_request(&peer, &item, &membership).await;
            down = fate == Fate::Retry;
            fates.push((item, fate));
        }
        Ok(fates)
    }

    /// Pushes the queued messages still worth sending; returns whether the peer answered.
    async fn retry_messages(
        &self,
        peer: &NodeInfo,
        items: Vec<PendingItem>,
        membership: &Membership,
        now: i64,
        fates: &mut Vec<(PendingItem, Fate)>,
    ) -> Result<bool, ReplicationError> {
        if items.is_empty() {
            return Ok(true);
        }
        let hashes: Vec<String> = items
            .iter()
            .filter_map(|i| match &i.payload {
                PendingPayload::Message { hash } => Some(hash.clone()),
                PendingPayload::Request { .. } => None,
            })
            .collect();
        let found = self
            .blocking("load queued messages", move |s| s.get_live(&hashes, now))
            .await?;
        // Only what the peer's swarm owns now: after a membership change the new owners get
        // it through the hand-off instead.
        // Ordered by hash: a batch's order is a function of its content (a simulated history
        // is a function of its seed; std's HashMap iterates in a per-process random order).
        let msgs: BTreeMap<String, _> = found
            .into_iter()
            .filter(|m| owns(peer, membership, &m.account))
            .map(|m| (m.hash.clone(), m))
            .collect();
        let mut by_hash: HashMap<String, Vec<PendingItem>> = HashMap::new();
        for item in items {
            match &item.payload {
                PendingPayload::Message { hash } if msgs.contains_key(hash) => {
                    by_hash.entry(hash.clone()).or_default().push(item)
                }
                _ => fates.push((item, Fate::Moot)),
            }
        }
        let mut reachable = true;
        for chunk in chunk_by_size(msgs.into_values().collect()) {
            let fate = if !reachable {
                Fate::Retry
            } else {
                match self.push_batch(peer, &chunk).await {
                    Ok(true) => Fate::Delivered,
                    Ok(false) => Fate::Retry,
                    Err(e) => {
                        tracing::debug!(error = %crate::error::chain(&e), "queued messages not delivered");
                        reachable = false;
                        Fate::Retry
                    }
                }
            };
            for m in &chunk {
                for item in by_hash.remove(&m.hash).unwrap_or_default() {
                    fates.push((item, fate));
                }
            }
        }
        Ok(reachable)
    }

    /// Whether `peer` is in the swarm that owns the account `params` name, in `membership`.
    fn owns_request(&self, peer: &NodeInfo, params: &Value, membership: &Membership) -> bool {
        super::forward::request_account(params, self.inner.testnet)
            .is_some_and(|account| owns(peer, membership, &account))
    }

    /// Re-sends one queued request, marked as a retry.
    async fn retry_request(
        &self,
        peer: &NodeInfo,
        item: &PendingItem,
        membership: &Membership,
    ) -> Fate {
        let PendingPayload::Request {
            method,
            params_json,
        } = &item.payload
        else {
            return Fate::Moot;
        };
        let Ok(params) = serde_json::from_str::<Value>(params_json) else {
            return Fate::Rejected;
        };
        // Requests are given up `REQUEST_GIVE_UP_MS` after their acceptance (`forward.rs`).
        let accepted = item
            .give_up_ms
            .saturating_sub(super::forward::REQUEST_GIVE_UP_MS);
        let body =
            json!({"method": method, "params": params, "retry": true, "accepted_at": accepted})
                .to_string()
                .into_bytes();
        match self
            .post(
                peer,
                PATH_STORAGE_CC,
                body,
                self.inner.config.forward_timeout,
            )
            .await
        {
            Ok(r) if (200..300).contains(&r.status) => Fate::Delivered,
            // "Not my swarm" while our listing says it is: the two listings differ for a
            // poll or two, and the request is kept until they agree. Dropped at once, a
            // delete would miss a member that just came back into the swarm holding the
            // message, which then depends on anti-entropy reaching it within the tombstones'
            // lifetime (docs/simulation.md, finding 9 and its neighbour). Once our listing
            // agrees the peer no longer owns the account, the hand-off carries the request's
            // effect (tombstones, histories) to the new owners instead.
            Ok(r) if r.status == 421 && self.owns_request(peer, &params, membership) => {
                tracing::debug!(method = %method, "peer is not yet in the request's swarm");
                Fate::Retry
            }
            Ok(r) if (400..500).contains(&r.status) => {
                tracing::debug!(status = r.status, method = %method, "peer refused a retried request");
                Fate::Rejected
            }
            Ok(_) => Fate::Retry,
            Err(e) => {
                tracing::debug!(error = %crate::error::chain(&e), "retried request not delivered");
                Fate::Retry
            }
        }
    }
}

/// Whether `peer` is an active member of the swarm that owns `account` in `membership`: what
/// a queued entry must still be for the retry to send it.
fn owns(peer: &NodeInfo, membership: &Membership, account: &crate::message::AccountId) -> bool {
    peer.is_active() && membership.swarm_for(account) == Some(peer.swarm_id)
}
