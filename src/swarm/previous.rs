//! The memberships before the current one, kept two ways for two questions:
//!
//! - the last [`PREVIOUS_KEPT`] whole (`Remembered::recent`): who was a peer of our swarm just
//!   before the latest changes, while views lag ([`super::is_swarm_peer`]);
//! - every membership that stopped being current less than [`FORMER_OWNERS_WINDOW_MS`] ago (at
//!   most [`FORMER_OWNERS_MAX_MEMBERSHIPS`] of them), compactly (`FormerOwners`): which nodes
//!   owned which accounts, for the hand-off of a former owner that comes back late
//!   ([`super::may_push`]; docs/simulation.md, finding 6).
//!
//! Pure: the time is a parameter (`now_ms`, from the node's clock), never read here; the
//! bytes of the durable form are built and parsed here ([`PreviousMembership::snapshot`],
//! [`PreviousMembership::restore`]), and the node writes them to its data directory on every
//! change, so a node that restarts still admits the late hand-off of a former owner. The
//! whole memberships for swarm-peer rights are not kept across a restart: they matter only
//! while views lag, seconds to minutes.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, RwLock, RwLockReadGuard};

use super::{Membership, nearest_swarm};

/// How many memberships before the current one are remembered whole, for swarm-peer rights.
///
/// A count, not a time: swarm-peer rights (forwarded client requests, anti-entropy, bootstrap
/// pushes, for every account of our swarm) are only needed while a peer's view of a change
/// lags ours, seconds to minutes; a node that left our swarm days ago must not keep forwarding
/// writes to all our accounts.
pub const PREVIOUS_KEPT: usize = 3;

/// How long after a membership stopped being current its owners may still push the accounts
/// they owned then (a hand-off): 31 days.
///
/// A copy a former owner may legitimately hold was stored (or its expiry extended) while it
/// owned the account, so it expires at most 30 days (`TTL_MAXIMUM_PRIVATE_MS`, the longest
/// TTL of any namespace) after that ownership ended; the extra day covers clock skew. The
/// hand-off retries a copy until it is acknowledged or expires (`replication::handoff`: a pass
/// on every change, then every `handoff_interval`), so this is its retry horizon: a node cut
/// off, decommissioned and back any time before its copies expire is still admitted (counting
/// changes is no measure: every decommission, recommission and join is one, and seed 201389
/// saw six in 41 s), while a node whose ownership ended longer ago than any copy it could
/// hold may not push at all. The window grants no more than ownership did: as an owner, the
/// node could already place messages that live 30 days.
pub const FORMER_OWNERS_WINDOW_MS: i64 = crate::message::TTL_MAXIMUM_PRIVATE_MS + 24 * 3600 * 1000;

/// The most memberships remembered for hand-off admission, however recent: about one change
/// every 2.6 minutes for the whole window (oxend changes at most once a 2-minute block).
/// Beyond it, the oldest are forgotten first; their ending times take 8 bytes each (128 KB).
pub const FORMER_OWNERS_MAX_MEMBERSHIPS: usize = 16_384;

/// The most entries (a node's run in one swarm, or one swarm id of a remembered swarm set)
/// kept for hand-off admission; beyond it, the oldest memberships are forgotten first (but
/// never the newest).
///
/// Memory bound: an entry costs at most about 120 bytes (a run, 24 bytes, in a `Vec` that may
/// be half empty, plus its node's key and map slot when every run is another node's), so the
/// history stays under about 16 MB whatever the directory lists. A production network (about
/// 2,000 nodes, a few hundred swarms, a node moving a few times a month, swarms forming or
/// dissolving a few times a day) needs about 2,000 runs plus a few hundred ids per change of
/// the swarm set: a few hundred KB for the whole window. Whole `Membership` clones (about 100
/// bytes per listed node each, 200 KB per membership at 2,000 nodes) would take gigabytes over
/// 30 days of changes.
pub const FORMER_OWNERS_MAX_ENTRIES: usize = 1 << 17;

/// The memberships before the current one: see the module documentation. Fed by the node on
/// every membership change ([`PreviousMembership::set`]); read by the peer routes' admission
/// checks.
#[derive(Debug, Default)]
pub struct PreviousMembership(RwLock<Remembered>);

impl PreviousMembership {
    /// The last [`PREVIOUS_KEPT`] snapshots, newest first (none before the first change).
    pub fn get(&self) -> Vec<Arc<Membership>> {
        self.read().recent.clone()
    }

    /// Everything remembered, for [`super::may_push`] (held only while checking: a change
    /// waits for it).
    pub fn read(&self) -> RwLockReadGuard<'_, Remembered> {
        self.0.read().unwrap_or_else(|e| e.into_inner())
    }

    /// The durable form of the former owners, with `current` recorded as if it stopped
    /// being current at `now_ms`: after a restart the node cannot know how long it stayed
    /// current, and the time it was last seen so is the conservative end (a former owner's
    /// window is never longer than the truth).
    pub fn snapshot(&self, current: &Membership, now_ms: i64) -> Vec<u8> {
        let mut former = self.read().former.clone();
        former.push(current, now_ms);
        former.encode()
    }

    /// A memory restored from [`PreviousMembership::snapshot`]'s bytes (no whole memberships:
    /// see the module documentation); `None` when they do not parse.
    pub fn restore(bytes: &[u8]) -> Option<PreviousMembership> {
        let former = FormerOwners::decode(bytes)?;
        Some(PreviousMembership(RwLock::new(Remembered {
            recent: Vec::new(),
            former,
        })))
    }

    /// The directory height of the latest membership remembered (restored ones included):
    /// after a restart, the follower reads back the listings served since
    /// (`network::follow_directory`).
    pub fn last_height(&self) -> Option<u64> {
        self.read().former.last_height
    }

    /// Records the snapshot that was current until now, `now_ms` (the node's clock): it
    /// stopped being current then.
    pub fn set(&self, m: Arc<Membership>, now_ms: i64) {
        let mut g = self.0.write().unwrap_or_else(|e| e.into_inner());
        g.former.push(&m, now_ms);
        g.recent.insert(0, m);
        g.recent.truncate(PREVIOUS_KEPT);
    }
}

/// What a node remembers of the memberships before the current one ([`PreviousMembership`]).
#[derive(Debug, Default)]
pub struct Remembered {
    /// The last [`PREVIOUS_KEPT`] snapshots, newest first.
    recent: Vec<Arc<Membership>>,
    /// Who owned what in the memberships of the last [`FORMER_OWNERS_WINDOW_MS`].
    former: FormerOwners,
}

impl Remembered {
    /// The last [`PREVIOUS_KEPT`] snapshots, newest first.
    pub fn recent(&self) -> &[Arc<Membership>] {
        &self.recent
    }

    /// Whether `node` was in the swarm that owned swarm space `space` in a membership that
    /// stopped being current less than [`FORMER_OWNERS_WINDOW_MS`] before `now_ms` (among the
    /// last [`FORMER_OWNERS_MAX_MEMBERSHIPS`]).
    pub fn owned_within_window(&self, node: &[u8; 32], space: u64, now_ms: i64) -> bool {
        self.former.owned(node, space, now_ms)
    }

    /// Whether `node` was in a swarm in a remembered membership: one of the last
    /// [`PREVIOUS_KEPT`], or one that stopped being current less than
    /// [`FORMER_OWNERS_WINDOW_MS`] before `now_ms`.
    pub fn was_in_a_swarm(&self, node: &[u8; 32], now_ms: i64) -> bool {
        self.recent.iter().any(|m| m.is_active(node)) || self.former.was_active(node, now_ms)
    }

    /// How many memberships are remembered for hand-off admission (tests, metrics).
    pub fn former_len(&self) -> usize {
        self.former.ended.len()
    }
}

/// A node's swarm over consecutive remembered memberships `from..=to` (sequence numbers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Run {
    from: u64,
    to: u64,
    swarm: u64,
}

/// The memberships that stopped being current within the window, reduced to what hand-off
/// admission asks (who was in which swarm, and which swarms there were), and stored by change:
/// a node that stays in its swarm is one run however many memberships go by, and a set of
/// swarm ids is stored once while it does not change. Memberships are numbered in the order
/// they were recorded.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct FormerOwners {
    /// The sequence number of `ended[0]`.
    first: u64,
    /// When each remembered membership stopped being current (node clock, ms), oldest first;
    /// never decreasing (a clock that steps back records the previous time again).
    ended: VecDeque<i64>,
    /// The active swarm ids from each sequence number on, until the next set's: oldest first,
    /// the first one covering `first`.
    swarms: VecDeque<(u64, Box<[u64]>)>,
    /// Each node active in a remembered membership: its swarms, oldest first, disjoint.
    nodes: BTreeMap<[u8; 32], Vec<Run>>,
    /// Runs plus stored swarm ids (a set counts one more, so an empty set counts).
    entries: usize,
    /// The directory height of the latest membership recorded: where a restarted node
    /// resumes reading back the listings it missed (`network::follow_directory`).
    last_height: Option<u64>,
}

impl FormerOwners {
    /// Records `m`, which stopped being current at `now_ms`, and forgets what fell out of the
    /// window or beyond the caps.
    fn push(&mut self, m: &Membership, now_ms: i64) {
        self.last_height = Some(m.height);
        let seq = self.first + self.ended.len() as u64;
        let ended = self.ended.back().map_or(now_ms, |&last| last.max(now_ms));
        self.ended.push_back(ended);
        if self
            .swarms
            .back()
            .is_none_or(|(_, ids)| **ids != *m.swarm_ids)
        {
            self.entries += m.swarm_ids.len() + 1;
            self.swarms.push_back((seq, m.swarm_ids.clone().into()));
        }
        for n in m.nodes.iter().filter(|n| n.is_active()) {
            let swarm = n.swarm_id.0;
            let runs = self.nodes.entry(n.pubkey_ed25519).or_default();
            match runs.last_mut() {
                Some(r) if r.to + 1 == seq && r.swarm == swarm => r.to = seq,
                _ => {
                    runs.push(Run {
                        from: seq,
                        to: seq,
                        swarm,
                    });
                    self.entries += 1;
                }
            }
        }
        let expired = self
            .ended
            .partition_point(|&e| now_ms.saturating_sub(e) >= FORMER_OWNERS_WINDOW_MS);
        let over = self
            .ended
            .len()
            .saturating_sub(FORMER_OWNERS_MAX_MEMBERSHIPS);
        self.forget(expired.max(over));
        while self.entries > FORMER_OWNERS_MAX_ENTRIES && self.ended.len() > 1 {
            // Forgetting a membership frees only the runs that end there: forget by eighths
            // so an oversized history costs a few passes, not one per membership.
            self.forget((self.ended.len() / 8).clamp(1, self.ended.len() - 1));
        }
    }

    /// Forgets the `k` oldest memberships.
    fn forget(&mut self, k: usize) {
        let k = k.min(self.ended.len());
        if k == 0 {
            return;
        }
        self.ended.drain(..k);
        self.first += k as u64;
        let first = self.first;
        while self.swarms.len() > 1 && self.swarms[1].0 <= first {
            if let Some((_, ids)) = self.swarms.pop_front() {
                self.entries -= ids.len() + 1;
            }
        }
        if self.ended.is_empty()
            && let Some((_, ids)) = self.swarms.pop_front()
        {
            self.entries -= ids.len() + 1;
        }
        let mut freed = 0;
        self.nodes.retain(|_, runs| {
            let gone = runs.partition_point(|r| r.to < first);
            freed += gone;
            runs.drain(..gone);
            if let Some(r) = runs.first_mut() {
                r.from = r.from.max(first);
            }
            !runs.is_empty()
        });
        self.entries -= freed;
    }

    /// The durable form: a version byte, then `first`, the ending times, the swarm-id sets,
    /// each node's runs and the last height (0 for none), as big-endian integers with u32
    /// counts. Version 1 had no height.
    fn encode(&self) -> Vec<u8> {
        let mut out = vec![FORMAT_VERSION];
        let u32_of = |n: usize| u32::try_from(n).unwrap_or(u32::MAX).to_be_bytes();
        out.extend_from_slice(&self.first.to_be_bytes());
        out.extend_from_slice(&u32_of(self.ended.len()));
        for e in &self.ended {
            out.extend_from_slice(&e.to_be_bytes());
        }
        out.extend_from_slice(&u32_of(self.swarms.len()));
        for (seq, ids) in &self.swarms {
            out.extend_from_slice(&seq.to_be_bytes());
            out.extend_from_slice(&u32_of(ids.len()));
            for id in ids.iter() {
                out.extend_from_slice(&id.to_be_bytes());
            }
        }
        out.extend_from_slice(&u32_of(self.nodes.len()));
        for (key, runs) in &self.nodes {
            out.extend_from_slice(key);
            out.extend_from_slice(&u32_of(runs.len()));
            for r in runs {
                for v in [r.from, r.to, r.swarm] {
                    out.extend_from_slice(&v.to_be_bytes());
                }
            }
        }
        out.extend_from_slice(&self.last_height.unwrap_or(0).to_be_bytes());
        out
    }

    /// Parses [`FormerOwners::encode`]'s bytes; `None` for anything else, or for counts
    /// beyond the caps (a damaged file must not make the node allocate without bound).
    fn decode(b: &[u8]) -> Option<FormerOwners> {
        let mut r = Reader(b);
        let version = r.take(1)?[0];
        if version != FORMAT_VERSION && version != 1 {
            return None;
        }
        let mut f = FormerOwners {
            first: r.u64()?,
            ..FormerOwners::default()
        };
        let n = r.count(FORMER_OWNERS_MAX_MEMBERSHIPS + 1)?;
        for _ in 0..n {
            f.ended.push_back(r.u64()? as i64);
        }
        for _ in 0..r.count(FORMER_OWNERS_MAX_ENTRIES)? {
            let seq = r.u64()?;
            let ids: Vec<u64> = (0..r.count(FORMER_OWNERS_MAX_ENTRIES)?)
                .map(|_| r.u64())
                .collect::<Option<_>>()?;
            f.entries += ids.len() + 1;
            f.swarms.push_back((seq, ids.into()));
        }
        for _ in 0..r.count(FORMER_OWNERS_MAX_ENTRIES)? {
            let key: [u8; 32] = r.take(32)?.try_into().ok()?;
            let runs: Vec<Run> = (0..r.count(FORMER_OWNERS_MAX_ENTRIES)?)
                .map(|_| {
                    Some(Run {
                        from: r.u64()?,
                        to: r.u64()?,
                        swarm: r.u64()?,
                    })
                })
                .collect::<Option<_>>()?;
            f.entries += runs.len();
            f.nodes.insert(key, runs);
        }
        if version >= 2 {
            f.last_height = Some(r.u64()?).filter(|&h| h > 0);
        }
        (r.0.is_empty() && f.entries <= 2 * FORMER_OWNERS_MAX_ENTRIES).then_some(f)
    }

    /// The sequence number of the oldest membership still within the window at `now_ms`.
    fn live_from(&self, now_ms: i64) -> u64 {
        let i = self
            .ended
            .partition_point(|&e| now_ms.saturating_sub(e) >= FORMER_OWNERS_WINDOW_MS);
        self.first + i as u64
    }

    /// The node's runs that overlap the window at `now_ms`, clipped to it.
    fn live_runs(&self, node: &[u8; 32], now_ms: i64) -> impl Iterator<Item = Run> + '_ {
        let live_from = self.live_from(now_ms);
        let end = self.first + self.ended.len() as u64;
        self.nodes
            .get(node)
            .into_iter()
            .flatten()
            .filter(move |r| r.to >= live_from && r.from < end)
            .map(move |r| Run {
                from: r.from.max(live_from),
                ..*r
            })
    }

    fn was_active(&self, node: &[u8; 32], now_ms: i64) -> bool {
        self.live_runs(node, now_ms).next().is_some()
    }

    /// See [`Remembered::owned_within_window`]: some live run of `node` in swarm S overlaps a
    /// swarm set in which S is the nearest to `space`.
    fn owned(&self, node: &[u8; 32], space: u64, now_ms: i64) -> bool {
        self.live_runs(node, now_ms).any(|r| {
            // The set that covers `r.from`, and every later one that starts within the run.
            let start = self
                .swarms
                .partition_point(|(s, _)| *s <= r.from)
                .saturating_sub(1);
            self.swarms
                .range(start..)
                .take_while(|(s, _)| *s <= r.to)
                .any(|(_, ids)| nearest_swarm(ids, space) == Some(r.swarm))
        })
    }
}

/// Version byte of [`FormerOwners::encode`] (version 1, without the last height, is still
/// read).
const FORMAT_VERSION: u8 = 2;

/// A cursor over the durable form.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }

    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_be_bytes(self.take(8)?.try_into().ok()?))
    }

    /// A u32 count, refused above `max`.
    fn count(&mut self, max: usize) -> Option<usize> {
        let n = u32::from_be_bytes(self.take(4)?.try_into().ok()?) as usize;
        (n <= max).then_some(n)
    }
}

#[cfg(test)]
impl Remembered {
    /// The entry count and the sum it should equal, recomputed.
    pub(super) fn former_entries(&self) -> (usize, usize) {
        let f = &self.former;
        let runs: usize = f.nodes.values().map(Vec::len).sum();
        let ids: usize = f.swarms.iter().map(|(_, ids)| ids.len() + 1).sum();
        (f.entries, runs + ids)
    }
}
