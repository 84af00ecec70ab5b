//! The anti-entropy loop: every `anti_entropy_interval` this node reconciles its data with the
//! next member of its swarm (round robin; members that just joined first), so a member that
//! missed writes (restart, partition, lost retries) converges without any client action.
//!
//! One session: exchange digests at a shared reference time (`protocol`, `digest`), then for
//! the differing buckets, a bounded number at a time: exchange hash lists, push what the peer
//! lacks (unless it has a tombstone), pull what we lack (unless we have one, and only messages
//! whose content matches their hash), and propagate client deletions both ways. Every step is
//! bounded; what does not fit is done by the next step of the same session, and a session that
//! hits its own bound carries on in the next one. The reference time is the start of the
//! current epoch (`protocol::epoch_start`), and our own digest comes from the digest cache the
//! peer routes use, so our rounds and our peers' share one scan per epoch. A 429 from the peer
//! (its budget for us is spent) ends the session quietly; the next one resumes where it
//! stopped. Each session ends by comparing the swarm's subaccount revocations
//! (`replication::revocations`). Must not touch data our swarm does not own.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::metrics::{RepairKind, RoundResult};
use crate::peer::wire;
use crate::swarm::{Membership, NodeInfo, SwarmId};

use super::digest::{Plan, View, rotate};
use super::protocol::{
    BucketRequest, BucketResponse, DeleteResponse, DigestRequest, HashesRequest,
    MAX_BUCKETS_PER_REQUEST, MAX_HASHES_PER_REQUEST, MAX_STEPS_PER_SESSION, PATH_AE_BUCKET,
    PATH_AE_DELETE, PATH_AE_DIGEST, PATH_AE_FETCH, epoch_start,
};
use super::serve::{cached_digest, decode_digest, local_view, owned_by};
use super::{BULK_TIMEOUT, ReplicationError, Replicator, chunk_by_size};

/// Repairs of each kind per step.
const MAX_REPAIRS_PER_STEP: usize = MAX_HASHES_PER_REQUEST;

/// Where the round robin stands.
#[derive(Default)]
struct Cursor {
    /// The last peer reconciled with.
    last_peer: Option<[u8; 32]>,
    /// Members to visit before resuming the round robin (they just joined our swarm).
    priority: VecDeque<[u8; 32]>,
    /// First bucket of the next session's walk, so bounded sessions cover every bucket.
    next_bucket: u8,
}

/// Counts of one step's repairs.
#[derive(Debug, Default, Clone, Copy)]
struct Repairs {
    pushed: u64,
    pulled: u64,
    deleted_local: u64,
    deleted_remote: u64,
}

/// How a session ended without error.
#[derive(Debug, Default, Clone, Copy)]
struct Session {
    /// What it repaired.
    repairs: Repairs,
    /// The peer refused a request with 429 before the session was done.
    limited: bool,
}

/// `Err(Limited)` for a 429 answer, so callers end the session instead of counting a failure.
fn refused(path: &'static str, status: u16) -> Result<(), ReplicationError> {
    if status == 429 {
        return Err(ReplicationError::Limited { path });
    }
    Ok(())
}

impl Replicator {
    /// Runs anti-entropy until `cancel`.
    pub async fn run_anti_entropy(self, cancel: CancellationToken) {
        let rx = self.inner.membership.clone();
        self.run_anti_entropy_on(rx, cancel).await;
    }

    /// [`Replicator::run_anti_entropy`], woken by `rx` (the node gives each membership
    /// consumer a channel of its own, so a change wakes them in a fixed order).
    pub async fn run_anti_entropy_on(
        self,
        mut rx: tokio::sync::watch::Receiver<std::sync::Arc<crate::swarm::Membership>>,
        cancel: CancellationToken,
    ) {
        let mut watching = true;
        let mut cursor = Cursor::default();
        let mut previous = self.snapshot();
        // An interval, not a sleep, so membership changes do not postpone the schedule.
        let mut tick = tokio::time::interval(self.inner.config.anti_entropy_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                _ = cancel.cancelled() => break,
                changed = rx.changed(), if watching => {
                    watching = changed.is_ok();
                    let current = self.snapshot();
                    self.note_joiners(&previous, &current, &mut cursor);
                    previous = current;
                    if cursor.priority.is_empty() {
                        continue;
                    }
                }
                _ = tick.tick() => {}
            }
            let m = self.snapshot();
            let Some(peer) = self.next_peer(&m, &mut cursor) else {
                continue;
            };
            let short = hex::encode(&peer.pubkey_ed25519[..4]);
            match self.session(&m, &peer, &mut cursor, &cancel).await {
                Ok(Session {
                    repairs: r,
                    limited,
                }) => {
                    if limited {
                        tracing::debug!(peer = %short, "anti-entropy round cut short: the peer's budget for us is spent");
                    }
                    let result = if limited {
                        RoundResult::RateLimited
                    } else {
                        RoundResult::Ok
                    };
                    self.count_round(result, r);
                    if r.pushed + r.pulled + r.deleted_local + r.deleted_remote > 0 {
                        tracing::info!(peer = %short, pushed = r.pushed, pulled = r.pulled,
                            deleted_local = r.deleted_local, deleted_remote = r.deleted_remote,
                            "anti-entropy repaired differences with a swarm peer");
                    }
                }
                Err(e) => {
                    self.count_round(RoundResult::Failed, Repairs::default());
                    tracing::debug!(peer = %short, error = %crate::error::chain(&e), "anti-entropy round failed");
                }
            }
        }
    }

    fn count_round(&self, result: RoundResult, r: Repairs) {
        let m = &self.inner.metrics;
        m.anti_entropy_rounds_total
            .with_label_values(&[result.label()])
            .inc();
        for (kind, n) in [
            (RepairKind::Pushed, r.pushed),
            (RepairKind::Pulled, r.pulled),
            (RepairKind::DeletedLocal, r.deleted_local),
            (RepairKind::DeletedRemote, r.deleted_remote),
        ] {
            if n > 0 {
                m.anti_entropy_repairs_total
                    .with_label_values(&[kind.label()])
                    .inc_by(n);
            }
        }
    }

    /// Queues the members that joined our swarm between two snapshots (all of them when we
    /// moved), so they are reconciled first.
    fn note_joiners(&self, old: &Membership, new: &Membership, cursor: &mut Cursor) {
        let me = self.inner.me;
        let Some(ours) = new.swarm_of(&me) else {
            return;
        };
        let moved = old.swarm_of(&me) != Some(ours);
        for n in new.members(ours) {
            let joined = old.swarm_of(&n.pubkey_ed25519) != Some(ours);
            if n.pubkey_ed25519 != me
                && (moved || joined)
                && !cursor.priority.contains(&n.pubkey_ed25519)
            {
                cursor.priority.push_back(n.pubkey_ed25519);
            }
        }
    }

    /// The next member to reconcile with: a queued joiner, else the member after the last
    /// one in pubkey order (wrapping). `None` when we have no swarm peer.
    fn next_peer(&self, m: &Membership, cursor: &mut Cursor) -> Option<NodeInfo> {
        let me = self.inner.me;
        let ours = m.swarm_of(&me)?;
        let members: Vec<&NodeInfo> = m
            .members(ours)
            .into_iter()
            .filter(|n| n.pubkey_ed25519 != me)
            .collect();
        while let Some(pk) = cursor.priority.pop_front() {
            if let Some(n) = members.iter().find(|n| n.pubkey_ed25519 == pk) {
                return Some((*n).clone());
            }
        }
        let next = match cursor.last_peer {
            Some(last) => members
                .iter()
                .find(|n| n.pubkey_ed25519 > last)
                .or_else(|| members.first()),
            None => members.first(),
        }?;
        cursor.last_peer = Some(next.pubkey_ed25519);
        Some((*next).clone())
    }

    /// One reconciliation with `peer`.
    async fn session(
        &self,
        m: &Arc<Membership>,
        peer: &NodeInfo,
        cursor: &mut Cursor,
        cancel: &CancellationToken,
    ) -> Result<Session, ReplicationError> {
        let me = self.inner.me;
        let Some(ours) = m.swarm_of(&me) else {
            return Ok(Session::default());
        };
        // Every member rounds the same way, so the digests of one epoch are computed once.
        let at = epoch_start(self.now());
        let body = serde_json::to_vec(&DigestRequest { at }).unwrap_or_default();
        let r = self.post(peer, PATH_AE_DIGEST, body, BULK_TIMEOUT).await?;
        if r.status == 429 {
            return Ok(Session {
                limited: true,
                ..Session::default()
            });
        }
        let theirs = match (r.status, decode_digest(&r.body)) {
            (200, Some(d)) => d,
            (status, _) => {
                return Err(ReplicationError::BadAnswer {
                    path: PATH_AE_DIGEST,
                    status,
                });
            }
        };
        let (mm, digests) = (m.clone(), self.inner.responder.digests().clone());
        let mine = self
            .blocking("compute digest", move |s| {
                cached_digest(s, &digests, &mm, ours, at)
            })
            .await?;
        let mut todo: VecDeque<u8> = rotate(&mine.differing(&theirs), cursor.next_bucket).into();
        let mut total = Repairs::default();
        let mut limited = false;
        for _ in 0..MAX_STEPS_PER_SESSION {
            if todo.is_empty() || cancel.is_cancelled() {
                break;
            }
            let asked: Vec<u8> = todo.iter().take(MAX_BUCKETS_PER_REQUEST).copied().collect();
            let (answered, more) = match self.step(m, ours, peer, at, &asked, &mut total).await {
                Ok(done) => done,
                // The peer's budget for us is spent: stop asking (no retry storm) and keep
                // what was repaired; the next session starts at the bucket we were on.
                Err(ReplicationError::Limited { .. }) => {
                    limited = true;
                    break;
                }
                Err(e) => return Err(e),
            };
            if answered.is_empty() {
                break;
            }
            // Answered buckets are done unless their repairs were cut short (redo them).
            for b in answered {
                if !more {
                    todo.retain(|&x| x != b);
                }
            }
        }
        // The next session starts where this one stopped, so a bounded session still lets
        // every bucket have its turn.
        cursor.next_bucket = todo.front().copied().unwrap_or(0);
        // Subaccount revocations: compared whole each session (a digest, usually equal).
        // Their failure does not undo the repairs above.
        if !limited && !cancel.is_cancelled() {
            match self.sync_revocations(m, ours, peer).await {
                Ok(n) if n > 0 => {
                    tracing::debug!(merged = n, "anti-entropy merged a peer's revocations");
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::debug!(error = %crate::error::chain(&e), "revocation sync failed");
                }
            }
        }
        Ok(Session {
            repairs: total,
            limited,
        })
    }

    /// One bounded step over some buckets: returns the buckets answered and whether repairs
    /// were cut short.
    async fn step(
        &self,
        m: &Arc<Membership>,
        ours: SwarmId,
        peer: &NodeInfo,
        at: i64,
        buckets: &[u8],
        total: &mut Repairs,
    ) -> Result<(Vec<u8>, bool), ReplicationError> {
        let body = serde_json::to_vec(&BucketRequest {
            at,
            buckets: buckets.to_vec(),
        })
        .unwrap_or_default();
        let r = self.post(peer, PATH_AE_BUCKET, body, BULK_TIMEOUT).await?;
        refused(PATH_AE_BUCKET, r.status)?;
        let resp: BucketResponse = match serde_json::from_slice(&r.body) {
            Ok(v) if r.status == 200 => v,
            _ => {
                return Err(ReplicationError::BadAnswer {
                    path: PATH_AE_BUCKET,
                    status: r.status,
                });
            }
        };
        let answered: Vec<u8> = resp
            .buckets
            .iter()
            .map(|e| e.bucket)
            .filter(|b| buckets.contains(b))
            .collect();
        if answered.is_empty() {
            return Ok((answered, false));
        }
        let mut theirs = View::default();
        for e in resp
            .buckets
            .into_iter()
            .filter(|e| buckets.contains(&e.bucket))
        {
            // Expiries only when listed for every hash (else the entry is malformed or
            // from a member that lists hashes only): compared by hash then.
            if e.expiries.len() == e.live.len() {
                theirs
                    .expiries
                    .extend(e.live.iter().cloned().zip(e.expiries.iter().copied()));
            }
            theirs.live.extend(e.live);
            theirs.tombstones.extend(e.tombstones);
        }
        let (mm, bs) = (m.clone(), answered.clone());
        let ours_view = self
            .blocking("read buckets", move |s| {
                let mut v = View::default();
                for b in bs {
                    let one = local_view(s, &mm, ours, at, b)?;
                    v.live.extend(one.live);
                    v.expiries.extend(one.expiries);
                    v.tombstones.extend(one.tombstones);
                }
                Ok(v)
            })
            .await?;
        let mut plan = Plan::between(&ours_view, &theirs);
        let cut = plan.truncate(MAX_REPAIRS_PER_STEP);
        self.repair(m, ours, peer, plan, total).await?;
        Ok((answered, cut))
    }

    /// Carries out a plan: deletions first (so nothing deleted is pushed), then pushes, then
    /// pulls.
    async fn repair(
        &self,
        m: &Arc<Membership>,
        ours: SwarmId,
        peer: &NodeInfo,
        plan: Plan,
        total: &mut Repairs,
    ) -> Result<(), ReplicationError> {
        if !plan.delete_local.is_empty() {
            let (hashes, now) = (plan.delete_local, self.now());
            let n = self
                .blocking("apply peer deletions", move |s| {
                    s.delete_by_hashes_any(&hashes, now)
                })
                .await?
                .len();
            total.deleted_local += n as u64;
        }
        if !plan.delete_remote.is_empty() {
            let body = serde_json::to_vec(&HashesRequest {
                hashes: plan.delete_remote,
            })
            .unwrap_or_default();
            let r = self.post(peer, PATH_AE_DELETE, body, BULK_TIMEOUT).await?;
            refused(PATH_AE_DELETE, r.status)?;
            match serde_json::from_slice::<DeleteResponse>(&r.body) {
                Ok(d) if r.status == 200 => total.deleted_remote += d.deleted as u64,
                _ => {
                    return Err(ReplicationError::BadAnswer {
                        path: PATH_AE_DELETE,
                        status: r.status,
                    });
                }
            }
        }
        if !plan.push.is_empty() {
            let (hashes, now) = (plan.push, self.now());
            let msgs = self
                .blocking("load messages to push", move |s| s.get_live(&hashes, now))
                .await?;
            for batch in chunk_by_size(msgs) {
                if !self.push_batch(peer, &batch).await? {
                    return Err(ReplicationError::BadAnswer {
                        path: crate::peer::PATH_DATA,
                        status: 0,
                    });
                }
                total.pushed += batch.len() as u64;
            }
        }
        if !plan.pull.is_empty() {
            total.pulled += self.pull(m, ours, peer, plan.pull).await?;
        }
        Ok(())
    }

    /// Fetches `hashes` from `peer` and imports those that are what they claim to be.
    async fn pull(
        &self,
        m: &Arc<Membership>,
        ours: SwarmId,
        peer: &NodeInfo,
        hashes: Vec<String>,
    ) -> Result<u64, ReplicationError> {
        let wanted: HashSet<String> = hashes.iter().cloned().collect();
        let body = serde_json::to_vec(&HashesRequest { hashes }).unwrap_or_default();
        let r = self.post(peer, PATH_AE_FETCH, body, BULK_TIMEOUT).await?;
        refused(PATH_AE_FETCH, r.status)?;
        if r.status != 200 {
            return Err(ReplicationError::BadAnswer {
                path: PATH_AE_FETCH,
                status: r.status,
            });
        }
        let msgs = wire::decode_batch(&r.body).map_err(|_| ReplicationError::BadAnswer {
            path: PATH_AE_FETCH,
            status: r.status,
        })?;
        let owned = owned_by(m, ours);
        // A peer is trusted to replicate, not to invent: every message must be one we asked
        // for, belong to our swarm, and be one a client's store could have made
        // (`admitted_from_peer`: its own hash, size, namespace, clock, expiry).
        let now = self.now();
        let good: Vec<_> = msgs
            .into_iter()
            .filter(|msg| wanted.contains(&msg.hash) && owned(&msg.account))
            .filter_map(|msg| msg.admitted_from_peer(now))
            .collect();
        if good.is_empty() {
            return Ok(0);
        }
        let new = self
            .blocking("import pulled messages", move |s| s.bulk_store(&good, now))
            .await?;
        Ok(new as u64)
    }
}
