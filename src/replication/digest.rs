//! The pure part of anti-entropy: which messages a reconciliation covers, the 256-bucket
//! digest of a message set, and the repair plan for buckets that differ.
//!
//! Digest: bucket = first byte of the base64-decoded hash (`store::hash_bucket`); each bucket
//! is the XOR of the first 8 bytes of BLAKE2b-256(hash ‖ expiry) over its messages. XOR makes
//! it independent of order and cheap to build in one pass; two members with the same
//! messages and expiries have the same digest, and a difference shows which 1/256 of the
//! hashes to compare. The expiry is in it so that a member that missed a client's `expire`
//! is found (a hash-only digest cannot tell), and the plan then exchanges both copies, whose
//! expiry histories merge (`expiry_log`).
//!
//! Scope: both sides compute over the same reference time `at` (the initiator's clock rounded
//! down to an epoch start, `protocol::epoch_start`, sent along) and leave out messages that
//! expire within [`EXPIRY_MARGIN_MS`] of it or whose client timestamp is within
//! [`RECENT_MARGIN_MS`] before it. Without that, messages expiring or arriving while the two
//! digests are computed would make busy buckets differ on every round although nothing needs
//! repair; those messages are the sweep's and the forwarder's business. Digests are computed
//! once per `at` and cached (`digest_cache`), so a digest may be computed up to an epoch plus
//! the clock skew a responder admits after `at`; the margins are sized for that.
//! Pure: no I/O, no clock.

use blake2::digest::consts::U32;
use blake2::{Blake2b, Digest as _};
use std::collections::{BTreeMap, BTreeSet};

use crate::store::{MessageMeta, hash_bucket};

/// Number of buckets.
pub const BUCKETS: usize = 256;
/// Messages expiring within this long after the reference time are not reconciled. A digest
/// for `at` is computed (and cached) as late as `DIGEST_EPOCH_MS + MAX_DIGEST_SKEW_MS` (90 s)
/// after `at` — a responder admits that much — or, by an initiator, an epoch plus the peer's
/// answer time (at most 60 s). A message that expires before one side's computation may be
/// swept there and not on the other side; two minutes keeps every message that can be swept
/// by then out of scope.
pub const EXPIRY_MARGIN_MS: i64 = 120_000;
/// Messages whose client timestamp is within this long before the reference time are not
/// reconciled yet: forwarding delivers them (a failed forward is queued, and repaired here
/// later if the queue fails too). Both digests are computed after `at` — which is the clock
/// rounded down to an epoch start — so in-flight forwards had this margin plus up to an
/// epoch: the margin only needs the forward timeout (5 s) and the members' clock difference,
/// and a message waits 15–45 s (30 s on average, as when `at` was the clock itself) before
/// anti-entropy covers it.
pub const RECENT_MARGIN_MS: i64 = 15_000;

// The expiry margin covers the latest computation of a digest, on either side.
const _: () = {
    use super::protocol::{DIGEST_EPOCH_MS, MAX_DIGEST_SKEW_MS};
    assert!(EXPIRY_MARGIN_MS >= DIGEST_EPOCH_MS + MAX_DIGEST_SKEW_MS);
    assert!(EXPIRY_MARGIN_MS >= DIGEST_EPOCH_MS + super::BULK_TIMEOUT.as_millis() as i64);
};

/// Whether a message takes part in a reconciliation at reference time `at_ms`. Its horizon,
/// not its expiry, decides: a message a client shortened stays in scope as long as a copy
/// that missed the shortening could live, so that copy learns it.
///
/// A husk whose merged history is live again (a peer's history said so, but no body came
/// with it) is left out, so that a peer that has the body offers it.
pub fn in_scope(m: &MessageMeta<'_>, at_ms: i64) -> bool {
    !(m.husk && m.expiry_ms > at_ms)
        && m.horizon_ms > at_ms.saturating_add(EXPIRY_MARGIN_MS)
        && m.timestamp_ms <= at_ms.saturating_sub(RECENT_MARGIN_MS)
}

/// The first 8 bytes (big-endian) of BLAKE2b-256 of the hash text.
pub fn fingerprint(hash: &str) -> u64 {
    let d = Blake2b::<U32>::digest(hash.as_bytes());
    let mut b = [0u8; 8];
    b.copy_from_slice(&d[..8]);
    u64::from_be_bytes(b)
}

/// The first 8 bytes (big-endian) of BLAKE2b-256 of the hash text and the expiry
/// (8 bytes, big-endian): one message's contribution to its bucket.
pub fn entry_fingerprint(hash: &str, expiry_ms: i64) -> u64 {
    let d = Blake2b::<U32>::new()
        .chain_update(hash.as_bytes())
        .chain_update(expiry_ms.to_be_bytes())
        .finalize();
    let mut b = [0u8; 8];
    b.copy_from_slice(&d[..8]);
    u64::from_be_bytes(b)
}

/// A 256-bucket digest of a set of messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Digest(pub [u64; BUCKETS]);

impl Default for Digest {
    fn default() -> Self {
        Digest([0; BUCKETS])
    }
}

impl Digest {
    /// Adds (or, XOR being its own inverse, removes) one message. Hashes that are not
    /// base64 have no bucket and are left out (no valid message has one).
    pub fn toggle(&mut self, hash: &str, expiry_ms: i64) {
        if let Some(b) = hash_bucket(hash) {
            self.0[usize::from(b)] ^= entry_fingerprint(hash, expiry_ms);
        }
    }

    /// The buckets whose values differ, ascending.
    pub fn differing(&self, other: &Digest) -> Vec<u8> {
        (0..=255u8)
            .filter(|&b| self.0[usize::from(b)] != other.0[usize::from(b)])
            .collect()
    }

    /// 256 big-endian u64s (2048 bytes).
    pub fn to_bytes(&self) -> Vec<u8> {
        self.0.iter().flat_map(|v| v.to_be_bytes()).collect()
    }

    /// Inverse of [`Digest::to_bytes`]; `None` unless exactly 2048 bytes.
    pub fn from_bytes(b: &[u8]) -> Option<Digest> {
        if b.len() != BUCKETS * 8 {
            return None;
        }
        let mut d = Digest::default();
        for (slot, chunk) in d.0.iter_mut().zip(b.chunks_exact(8)) {
            let mut w = [0u8; 8];
            w.copy_from_slice(chunk);
            *slot = u64::from_be_bytes(w);
        }
        Some(d)
    }
}

/// `buckets` in ascending order starting from the first one ≥ `from` and wrapping, so that
/// successive rounds with a bound on buckets visit every differing bucket in turn.
pub fn rotate(buckets: &[u8], from: u8) -> Vec<u8> {
    let split = buckets.partition_point(|&b| b < from);
    buckets[split..]
        .iter()
        .chain(&buckets[..split])
        .copied()
        .collect()
}

/// One side's view of some buckets: in-scope live hashes and tombstoned hashes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct View {
    /// Live, in-scope messages.
    pub live: BTreeSet<String>,
    /// Their expiries, where known (a peer that lists none sends hashes only).
    pub expiries: BTreeMap<String, i64>,
    /// Tombstones in force.
    pub tombstones: BTreeSet<String>,
}

/// What to do to make two views agree.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Ours, missing at the peer and not deleted there: send them.
    pub push: Vec<String>,
    /// The peer's, missing here and not deleted here: fetch them.
    pub pull: Vec<String>,
    /// Live here, deleted by a client at the peer (and not live there): delete here.
    pub delete_local: Vec<String>,
    /// Live at the peer, deleted by a client here (and not live here): the peer deletes.
    pub delete_remote: Vec<String>,
}

impl Plan {
    /// The repairs for `ours` against `theirs`. A hash live on both sides is left alone even
    /// if one side also holds a tombstone for it: a client stored the same content again
    /// after deleting it, and the newer store wins. A hash live on both sides with different
    /// expiries is both pushed and pulled: each side merges the other's expiry history into
    /// its own, and both end on the same expiry.
    pub fn between(ours: &View, theirs: &View) -> Plan {
        let only = |a: &BTreeSet<String>, b: &View, keep: fn(bool, bool) -> bool| -> Vec<String> {
            a.iter()
                .filter(|h| keep(b.live.contains(*h), b.tombstones.contains(*h)))
                .cloned()
                .collect()
        };
        let differ: Vec<String> = ours
            .expiries
            .iter()
            .filter(|(h, e)| theirs.expiries.get(*h).is_some_and(|t| t != *e))
            .map(|(h, _)| h.clone())
            .collect();
        let with_differing = |mut v: Vec<String>| {
            v.extend(differ.iter().cloned());
            v.sort();
            v
        };
        Plan {
            push: with_differing(only(&ours.live, theirs, |live, dead| !live && !dead)),
            pull: with_differing(only(&theirs.live, ours, |live, dead| !live && !dead)),
            delete_local: only(&ours.live, theirs, |live, dead| !live && dead),
            delete_remote: only(&theirs.live, ours, |live, dead| !live && dead),
        }
    }

    /// Nothing to repair.
    pub fn is_empty(&self) -> bool {
        self.push.is_empty()
            && self.pull.is_empty()
            && self.delete_local.is_empty()
            && self.delete_remote.is_empty()
    }

    /// Cuts every list to at most `max` entries; returns whether anything was cut.
    pub fn truncate(&mut self, max: usize) -> bool {
        let mut cut = false;
        for list in [
            &mut self.push,
            &mut self.pull,
            &mut self.delete_local,
            &mut self.delete_remote,
        ] {
            cut |= list.len() > max;
            list.truncate(max);
        }
        cut
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::{AccountId, Namespace, message_hash};

    fn hashes(n: u32) -> Vec<String> {
        let a = AccountId {
            kind: 5,
            key: [9; 32],
        };
        (0..n)
            .map(|i| message_hash(&a, Namespace(0), &i.to_be_bytes()))
            .collect()
    }

    fn set(v: &[&str]) -> BTreeSet<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn fingerprint_is_the_head_of_blake2b_256() {
        // BLAKE2b-256("") = 0e5751c026e543b2e8ab2eb06099daa1d1e5df47778f7787faab45cdf12fe3a8.
        assert_eq!(fingerprint(""), 0x0e57_51c0_26e5_43b2);
        assert_ne!(fingerprint("a"), fingerprint("b"));
    }

    #[test]
    fn digest_is_order_independent_and_shows_the_bucket() {
        let hs = hashes(500);
        let mut a = Digest::default();
        let mut b = Digest::default();
        hs.iter().for_each(|h| a.toggle(h, 1));
        hs.iter().rev().for_each(|h| b.toggle(h, 1));
        assert_eq!(a, b);
        assert!(a.differing(&b).is_empty());
        // One hash missing on one side: exactly its bucket differs.
        b.toggle(&hs[7], 1);
        assert_eq!(a.differing(&b), vec![hash_bucket(&hs[7]).expect("bucket")]);
        b.toggle(&hs[7], 1);
        assert_eq!(a, b);
        // Not-base64 hashes are ignored.
        b.toggle("**not a hash**", 1);
        assert_eq!(a, b);
        let bytes = a.to_bytes();
        assert_eq!(bytes.len(), 2048);
        assert_eq!(Digest::from_bytes(&bytes), Some(a));
        assert_eq!(Digest::from_bytes(&bytes[1..]), None);
    }

    #[test]
    fn empty_set_digest_differs_everywhere_it_has_data() {
        let hs = hashes(5000);
        let mut full = Digest::default();
        hs.iter().for_each(|h| full.toggle(h, 1));
        let buckets: BTreeSet<u8> = hs.iter().filter_map(|h| hash_bucket(h)).collect();
        assert_eq!(
            full.differing(&Digest::default()),
            buckets.into_iter().collect::<Vec<_>>()
        );
    }

    #[test]
    fn rotation_wraps_from_the_cursor() {
        let b = [1u8, 5, 9, 200];
        assert_eq!(rotate(&b, 0), vec![1, 5, 9, 200]);
        assert_eq!(rotate(&b, 6), vec![9, 200, 1, 5]);
        assert_eq!(rotate(&b, 201), vec![1, 5, 9, 200]);
        assert_eq!(rotate(&b, 200), vec![200, 1, 5, 9]);
        assert!(rotate(&[], 3).is_empty());
    }

    #[test]
    fn scope_leaves_out_expiring_and_recent_messages() {
        let a = AccountId {
            kind: 5,
            key: [1; 32],
        };
        let at = 1_000_000_000;
        let meta = |ts: i64, exp: i64| MessageMeta {
            account: a,
            namespace: Namespace(0),
            hash: "h",
            timestamp_ms: ts,
            expiry_ms: exp,
            horizon_ms: exp,
            husk: false,
        };
        assert!(in_scope(
            &meta(at - RECENT_MARGIN_MS, at + EXPIRY_MARGIN_MS + 1),
            at
        ));
        assert!(!in_scope(
            &meta(at - RECENT_MARGIN_MS + 1, at + 3_600_000),
            at
        ));
        assert!(!in_scope(&meta(at - 3_600_000, at + EXPIRY_MARGIN_MS), at));
        assert!(!in_scope(&meta(i64::MIN, i64::MIN), i64::MIN));
        assert!(!in_scope(&meta(i64::MIN, i64::MAX), i64::MAX - 1));
        // Shortened to expire within the margin, but a copy that missed it could live on.
        let shortened = MessageMeta {
            expiry_ms: at + 1,
            horizon_ms: at + 3_600_000,
            ..meta(at - 3_600_000, at + 1)
        };
        assert!(in_scope(&shortened, at));
    }

    #[test]
    fn a_different_expiry_changes_the_bucket_and_is_exchanged_both_ways() {
        let hs = hashes(3);
        let (mut a, mut b) = (Digest::default(), Digest::default());
        a.toggle(&hs[0], 10);
        b.toggle(&hs[0], 11);
        assert_eq!(a.differing(&b), vec![hash_bucket(&hs[0]).expect("bucket")]);
        let view = |e: i64| View {
            live: set(&["h", "same"]),
            expiries: [("h".to_string(), e), ("same".to_string(), 5)].into(),
            ..View::default()
        };
        let p = Plan::between(&view(10), &view(11));
        assert_eq!(
            (p.push.clone(), p.pull.clone()),
            (vec!["h".to_string()], vec!["h".to_string()])
        );
        assert!(Plan::between(&view(10), &view(10)).is_empty());
        // A peer that lists no expiries (hashes only) is compared by hash.
        let bare = View {
            live: set(&["h", "same"]),
            ..View::default()
        };
        assert!(Plan::between(&view(10), &bare).is_empty());
    }

    #[test]
    fn plan_pushes_pulls_and_propagates_deletions() {
        let ours = View {
            live: set(&["both", "mine", "dead_there", "revived"]),
            expiries: BTreeMap::new(),
            tombstones: set(&["gone_here", "revived"]),
        };
        let theirs = View {
            live: set(&["both", "theirs", "gone_here", "revived"]),
            expiries: BTreeMap::new(),
            tombstones: set(&["dead_there", "old"]),
        };
        let p = Plan::between(&ours, &theirs);
        assert_eq!(p.push, vec!["mine"]);
        assert_eq!(p.pull, vec!["theirs"]);
        assert_eq!(p.delete_local, vec!["dead_there"]);
        assert_eq!(p.delete_remote, vec!["gone_here"]);
        // The mirror plan is the mirror image.
        let q = Plan::between(&theirs, &ours);
        assert_eq!((q.push, q.pull), (p.pull.clone(), p.push.clone()));
        assert_eq!(
            (q.delete_local, q.delete_remote),
            (p.delete_remote.clone(), p.delete_local.clone())
        );
        assert!(Plan::between(&ours, &ours).is_empty());
        let mut big = Plan {
            push: hashes(10),
            ..Plan::default()
        };
        assert!(!big.clone().truncate(10));
        assert!(big.truncate(3));
        assert_eq!(big.push.len(), 3);
    }
}
