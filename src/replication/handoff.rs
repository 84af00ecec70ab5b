//! The hand-off: when membership changes, data whose owning swarm is no longer ours goes to
//! every active member of the swarm that owns it now, and is deleted here once all of them
//! acknowledged it. The original keeps such data until it expires (issue #470) and pushes it
//! without acknowledgement (storage-server.md 3.4).
//!
//! A pass walks the accounts (not the messages: owned accounts are skipped without reading
//! their data), gathers the messages of foreign accounts per owning swarm in batches of about
//! 1 MB, sends each batch to every member of that swarm, and deletes the batch locally only
//! when every member answered 200 and accepted all of it. Deletion leaves no tombstone (the
//! data lives on at its owners). Nothing is deleted when the owning swarm has no member, nor
//! when a newer membership says we own the account after all. A pass is resumable by
//! construction: after a crash the next pass re-sends (imports are idempotent). Passes run on
//! every membership change, then every `handoff_interval` until one leaves nothing behind.
//!
//! Subaccount revocation states follow too (`replication::revocations`). Tombstones of
//! foreign accounts follow the same way (`/snode/v1/tombstones`), unheld ones
//! included, and are dropped here once every member took them: the simulation found a delete
//! that only this side of a partition had seen lost when the account moved to the other side's
//! swarm (docs/simulation.md).

use std::collections::BTreeMap;

use futures_util::future::join_all;
use tokio_util::sync::CancellationToken;

use crate::message::{AccountId, Message};
use crate::store::TombstoneRecord;
use crate::swarm::{Membership, SwarmId};

use super::protocol::{MAX_TOMBSTONES_PER_REQUEST, TombstoneEntry, TombstonesRequest};
use super::{BATCH_BYTES, PER_MESSAGE_OVERHEAD, ReplicationError, Replicator};

/// Accounts read per store call.
const ACCOUNTS_PAGE: usize = 1_000;
/// Messages read per store call.
const MESSAGES_PAGE: usize = 500;
/// Tombstones read per store call.
const TOMBSTONES_PAGE: usize = 1_000;
/// Bytes buffered across all owning swarms before the largest buffer is sent early.
const MAX_BUFFERED: usize = 8 * BATCH_BYTES;

/// Messages waiting to go to one swarm.
#[derive(Default)]
struct Pending {
    msgs: Vec<Message>,
    bytes: usize,
}

/// How a pass ended.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct PassOutcome {
    /// Messages handed off and deleted.
    moved: u64,
    /// Something could not be handed off yet (a batch not acknowledged).
    left_behind: bool,
}

impl Replicator {
    /// Runs the hand-off until `cancel`: a pass at start (to finish what a crash
    /// interrupted), on every membership change, and every `handoff_interval` while a pass
    /// leaves data behind.
    pub async fn run_handoff(self, cancel: CancellationToken) {
        let rx = self.inner.membership.clone();
        self.run_handoff_on(rx, cancel).await;
    }

    /// [`Replicator::run_handoff`], woken by `rx` (the node gives each membership consumer a
    /// channel of its own, so a change wakes them in a fixed order).
    pub async fn run_handoff_on(
        self,
        mut rx: tokio::sync::watch::Receiver<std::sync::Arc<crate::swarm::Membership>>,
        cancel: CancellationToken,
    ) {
        let mut watching = true;
        let mut pending = true;
        loop {
            if pending && !cancel.is_cancelled() {
                pending = match self.handoff_pass(&cancel).await {
                    Ok(o) => {
                        if o.moved > 0 {
                            tracing::info!(
                                messages = o.moved,
                                "handed off data this node no longer owns"
                            );
                        }
                        o.left_behind
                    }
                    Err(e) => {
                        tracing::warn!(error = %crate::error::chain(&e), "hand-off pass failed");
                        true
                    }
                };
            }
            tokio::select! {
                biased;
                _ = cancel.cancelled() => break,
                changed = rx.changed(), if watching => {
                    // A closed channel (one-node network) never changes again.
                    watching = changed.is_ok();
                    pending |= watching;
                }
                _ = tokio::time::sleep(self.inner.config.handoff_interval), if pending => {}
            }
        }
    }

    /// One pass over every account.
    async fn handoff_pass(
        &self,
        cancel: &CancellationToken,
    ) -> Result<PassOutcome, ReplicationError> {
        let m = self.snapshot();
        let me = self.inner.me;
        // A membership that does not list us (not yet registered, or not yet fetched) says
        // nothing about what we own: do not give anything away on its word.
        if m.node(&me).is_none() {
            return Ok(PassOutcome::default());
        }
        let ours = m.swarm_of(&me);
        let mut out = PassOutcome::default();
        let mut buffers: BTreeMap<SwarmId, Pending> = BTreeMap::new();
        let mut buffered = 0usize;
        let mut after: Option<AccountId> = None;
        loop {
            if cancel.is_cancelled() {
                return Ok(out);
            }
            let a = after;
            let page = self
                .blocking("list accounts", move |s| {
                    s.accounts_page(a.as_ref(), ACCOUNTS_PAGE)
                })
                .await?;
            let Some(last) = page.last().copied() else {
                break;
            };
            after = Some(last);
            for account in page {
                let Some(owner) = m.swarm_for(&account) else {
                    continue;
                };
                if Some(owner) == ours || m.members(owner).is_empty() {
                    continue;
                }
                let mut cursor: Option<Vec<u8>> = None;
                loop {
                    let now = self.now();
                    let c = cursor.take();
                    let (msgs, next) = self
                        .blocking("read account", move |s| {
                            let mut v = Vec::new();
                            let next = s.account_messages(
                                &account,
                                c.as_deref(),
                                MESSAGES_PAGE,
                                now,
                                |msg| v.push(msg),
                            )?;
                            Ok((v, next))
                        })
                        .await?;
                    let buf = buffers.entry(owner).or_default();
                    for msg in msgs {
                        let size = msg.data.len() + PER_MESSAGE_OVERHEAD;
                        buf.bytes += size;
                        buffered += size;
                        buf.msgs.push(msg);
                    }
                    if buf.bytes >= BATCH_BYTES {
                        buffered -= buf.bytes;
                        let full = std::mem::take(buf);
                        self.ship(&m, owner, full.msgs, &mut out).await?;
                    }
                    if buffered > MAX_BUFFERED
                        && let Some((&big, _)) = buffers.iter().max_by_key(|(_, p)| p.bytes)
                        && let Some(p) = buffers.remove(&big)
                    {
                        buffered -= p.bytes;
                        self.ship(&m, big, p.msgs, &mut out).await?;
                    }
                    match next {
                        Some(n) => cursor = Some(n),
                        None => break,
                    }
                }
            }
        }
        for (owner, p) in std::mem::take(&mut buffers) {
            self.ship(&m, owner, p.msgs, &mut out).await?;
        }
        self.handoff_tombstones(&m, ours, cancel, &mut out).await?;
        if !cancel.is_cancelled() && !self.handoff_revocations(&m, ours).await? {
            self.inner.metrics.handoff_batches_failed_total.inc();
            out.left_behind = true;
        }
        Ok(out)
    }

    /// Sends the tombstones of accounts our swarm no longer owns to their owners.
    async fn handoff_tombstones(
        &self,
        m: &Membership,
        ours: Option<SwarmId>,
        cancel: &CancellationToken,
        out: &mut PassOutcome,
    ) -> Result<(), ReplicationError> {
        let mut after: Option<String> = None;
        loop {
            if cancel.is_cancelled() {
                return Ok(());
            }
            let (a, now) = (after.take(), self.now());
            let (page, next) = self
                .blocking("list tombstones", move |s| {
                    s.tombstones_page(a.as_deref(), TOMBSTONES_PAGE, now)
                })
                .await?;
            let mut by_owner: BTreeMap<SwarmId, Vec<TombstoneRecord>> = BTreeMap::new();
            for t in page {
                let Some(owner) = m.swarm_for(&t.account) else {
                    continue;
                };
                if Some(owner) != ours && !m.members(owner).is_empty() {
                    by_owner.entry(owner).or_default().push(t);
                }
            }
            for (owner, tombs) in by_owner {
                self.ship_tombstones(m, owner, tombs, out).await?;
            }
            match next {
                Some(n) => after = Some(n),
                None => return Ok(()),
            }
        }
    }

    /// Sends `tombs` to every member of `owner` and drops them here once all took them.
    async fn ship_tombstones(
        &self,
        m: &Membership,
        owner: SwarmId,
        tombs: Vec<TombstoneRecord>,
        out: &mut PassOutcome,
    ) -> Result<(), ReplicationError> {
        let members = m.members(owner);
        for chunk in tombs.chunks(MAX_TOMBSTONES_PER_REQUEST) {
            let req = TombstonesRequest {
                tombstones: chunk
                    .iter()
                    .map(|t| TombstoneEntry {
                        account: t.account.to_hex(),
                        hash: t.hash.clone(),
                        expiry: t.expiry_ms,
                        deleted_at: t.deleted_ms,
                        unheld: t.unheld,
                    })
                    .collect(),
            };
            // Plain structs of strings and integers: serialising cannot fail.
            let body = serde_json::to_vec(&req).unwrap_or_default();
            let sent = members
                .iter()
                .map(|peer| self.push_tombstones(peer, body.clone(), chunk.len()));
            if !self.all_took(join_all(sent).await, out) {
                continue;
            }
            let gone: Vec<(AccountId, String)> = self
                .no_longer_ours(chunk, |t| &t.account)
                .map(|t| (t.account, t.hash.clone()))
                .collect();
            self.blocking("drop handed-off tombstones", move |s| {
                s.drop_tombstones(&gone)
            })
            .await?;
        }
        Ok(())
    }

    /// Sends `msgs` to every member of `owner` and deletes them here once all acknowledged.
    async fn ship(
        &self,
        m: &Membership,
        owner: SwarmId,
        msgs: Vec<Message>,
        out: &mut PassOutcome,
    ) -> Result<(), ReplicationError> {
        let members = m.members(owner);
        if msgs.is_empty() || members.is_empty() {
            return Ok(());
        }
        for batch in super::chunk_by_size(msgs) {
            let sent = members.iter().map(|peer| self.push_batch(peer, &batch));
            if !self.all_took(join_all(sent).await, out) {
                continue;
            }
            let gone: Vec<String> = self
                .no_longer_ours(&batch, |msg| &msg.account)
                .map(|msg| msg.hash.clone())
                .collect();
            let dropped = self
                .blocking("delete handed-off data", move |s| s.drop_hashes(&gone))
                .await?;
            self.inner.metrics.handoff_messages_total.inc_by(dropped);
            out.moved += dropped;
        }
        Ok(())
    }

    /// Whether every member took a batch (`answers`, one per member); a batch some member
    /// did not take is counted and leaves the pass unfinished.
    fn all_took(
        &self,
        answers: Vec<Result<bool, ReplicationError>>,
        out: &mut PassOutcome,
    ) -> bool {
        let took = answers.into_iter().all(|r| matches!(r, Ok(true)));
        if !took {
            self.inner.metrics.handoff_batches_failed_total.inc();
            out.left_behind = true;
        }
        took
    }

    /// Those of `items` whose account the newest membership gives to another swarm: what we
    /// own again after all stays.
    fn no_longer_ours<'i, T>(
        &self,
        items: &'i [T],
        account: impl Fn(&T) -> &AccountId + 'i,
    ) -> impl Iterator<Item = &'i T> {
        let latest = self.snapshot();
        let ours_now = latest.swarm_of(&self.inner.me);
        items
            .iter()
            .filter(move |t| latest.swarm_for(account(t)) != ours_now)
    }
}
