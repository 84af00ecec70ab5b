//! The expiry history of one message: the client `expire` requests that moved it, each with
//! the time the swarm accepted it, so that members that saw different subsets of them agree
//! on one expiry once they exchange copies.
//!
//! Why a history and not just a value: an `expire` a member missed (its forward queued on a
//! node that then lost its disk, dropped when the account changed swarms, or never sent by an
//! entry that crashed) must be repaired from a copy that has it, and a value alone cannot say
//! which of two copies is right — after a shortening the old copy looks like an extension
//! (the simulation's finding 4, docs/simulation.md). Requests are applied in acceptance order
//! (`at_ms`, the entry node's clock, carried under the peer MAC): a plain set replaces the
//! expiry, a shorten takes the minimum, an extend the maximum. Folding the union of two
//! members' histories gives both the expiry they would have had if neither had missed
//! anything, whatever the order copies and retries arrive in; the storage-server applies
//! forwards as they arrive, so its members can end on different expiries.
//!
//! Bounded: at most [`MAX_OPS`] requests are kept; older ones fold into the base, whose
//! acceptance time then orders it. A request older than a copy's base is taken as already in
//! it (exact unless a member missed it and more than [`MAX_OPS`] later ones, all on one
//! message). Pure: no I/O, no clock; decoding is bounded and never panics.

/// Requests kept per message before the oldest fold into the base. Clients send one or two
/// per message (a disappearing-after-read message is shortened once, a config message
/// extended now and then), so eight keeps every real history exact; a record grows by at most
/// 17 bytes per request.
pub const MAX_OPS: usize = 8;

/// Encoded length of one request: at(8) ‖ kind(1) ‖ value(8).
const OP_LEN: usize = 17;
/// Encoded length of the head: base(8) ‖ base_at(8) ‖ count(1).
const HEAD_LEN: usize = 17;
/// The longest encoding.
pub const MAX_ENCODED_LEN: usize = HEAD_LEN + MAX_OPS * OP_LEN;

/// What a request does to the expiry. The order (sets, then extends, then shortens) decides
/// between requests accepted in the same millisecond, the same way on every member whatever
/// order they arrive in: the shortening applies last, so of two concurrent requests the
/// message lives the shorter time (privacy first), and a client that extends and then
/// shortens within one millisecond of one node's clock gets what it asked for last.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum OpKind {
    /// A plain `expire`: the expiry becomes the value.
    Set,
    /// `expire` with `extend`, or a client storing the same message again with a later
    /// expiry: the expiry becomes at least the value.
    Extend,
    /// `expire` with `shorten`, or `expire_all`: the expiry becomes at most the value.
    Shorten,
}

impl OpKind {
    fn byte(self) -> u8 {
        match self {
            OpKind::Set => 0,
            OpKind::Extend => 1,
            OpKind::Shorten => 2,
        }
    }

    fn from_byte(b: u8) -> Option<OpKind> {
        Some(match b {
            0 => OpKind::Set,
            1 => OpKind::Extend,
            2 => OpKind::Shorten,
            _ => return None,
        })
    }
}

/// One accepted request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ExpiryOp {
    /// When the swarm accepted it (the entry node's clock, ms).
    pub at_ms: i64,
    /// What it does.
    pub kind: OpKind,
    /// The expiry it names (ms).
    pub value_ms: i64,
}

impl ExpiryOp {
    /// `expiry_ms` after this request.
    pub fn apply(&self, expiry_ms: i64) -> i64 {
        match self.kind {
            OpKind::Set => self.value_ms,
            OpKind::Shorten => expiry_ms.min(self.value_ms),
            OpKind::Extend => expiry_ms.max(self.value_ms),
        }
    }
}

/// A message's expiry history: a base and the requests accepted after it, in acceptance order.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ExpiryLog {
    /// The expiry before the first kept request (the stored expiry, or the fold of requests
    /// that no longer fit).
    pub base_ms: i64,
    /// The acceptance time of the last request folded into the base; `i64::MIN` while none is.
    pub base_at_ms: i64,
    /// Requests accepted after `base_at_ms`: sorted, distinct, at most [`MAX_OPS`].
    ops: Vec<ExpiryOp>,
}

impl ExpiryLog {
    /// The history of a message stored with `expiry_ms` and never moved.
    pub fn new(expiry_ms: i64) -> ExpiryLog {
        ExpiryLog {
            base_ms: expiry_ms,
            base_at_ms: i64::MIN,
            ops: Vec::new(),
        }
    }

    /// The kept requests, in acceptance order.
    pub fn ops(&self) -> &[ExpiryOp] {
        &self.ops
    }

    /// The expiry: every request applied to the base in acceptance order.
    pub fn expiry(&self) -> i64 {
        self.ops.iter().fold(self.base_ms, |e, op| op.apply(e))
    }

    /// The latest expiry any copy of this message could have from the requests seen here:
    /// the base or any request's value, whichever is later. Anti-entropy reconciles a message
    /// until then, and a shortened message's tombstone lasts that long.
    pub fn horizon(&self) -> i64 {
        self.ops
            .iter()
            .map(|op| op.value_ms)
            .fold(self.base_ms, i64::max)
    }

    /// Adds `op`; returns whether it was new. A request accepted at or before the base's time
    /// counts as already folded into it.
    pub fn insert(&mut self, op: ExpiryOp) -> bool {
        if op.at_ms <= self.base_at_ms {
            return false;
        }
        match self.ops.binary_search(&op) {
            Ok(_) => false,
            Err(i) => {
                self.ops.insert(i, op);
                self.collapse();
                true
            }
        }
    }

    /// Merges another copy's history into this one: the later base (by its time, then its
    /// value, so that two bases of equal time — a message stored twice with different
    /// expiries — settle on the later expiry, as a client's second store would), then every
    /// request of either after it. Commutative and idempotent while neither side folded
    /// requests the other lacks.
    pub fn merge(&mut self, other: &ExpiryLog) {
        if (other.base_at_ms, other.base_ms) > (self.base_at_ms, self.base_ms) {
            self.base_ms = other.base_ms;
            self.base_at_ms = other.base_at_ms;
            let base_at = self.base_at_ms;
            self.ops.retain(|op| op.at_ms > base_at);
        }
        for op in &other.ops {
            if op.at_ms > self.base_at_ms && self.ops.binary_search(op).is_err() {
                let i = self.ops.partition_point(|o| o < op);
                self.ops.insert(i, *op);
            }
        }
        self.collapse();
    }

    /// The same history with every expiry no later than `latest_ms` nor than its request's
    /// acceptance time plus `longest_ms` (the protocol's cap on a request), and no request
    /// accepted after `accepted_by_ms`, as a peer's copy must be admitted: a request from the
    /// future or naming an expiry no client request could have is not a client's.
    pub fn bounded(mut self, accepted_by_ms: i64, latest_ms: i64, longest_ms: i64) -> ExpiryLog {
        self.base_ms = self.base_ms.min(latest_ms);
        self.base_at_ms = self.base_at_ms.min(accepted_by_ms);
        self.ops.retain(|op| op.at_ms <= accepted_by_ms);
        for op in &mut self.ops {
            let cap = op.at_ms.saturating_add(longest_ms);
            op.value_ms = op.value_ms.min(cap).min(latest_ms);
        }
        // Capping may have made two requests equal.
        self.ops.dedup();
        self
    }

    /// Folds the oldest requests into the base until at most [`MAX_OPS`] remain.
    fn collapse(&mut self) {
        if self.ops.len() <= MAX_OPS {
            return;
        }
        let extra = self.ops.len() - MAX_OPS;
        for op in self.ops.drain(..extra) {
            self.base_ms = op.apply(self.base_ms);
            self.base_at_ms = op.at_ms;
        }
    }

    /// base(8) ‖ base_at(8) ‖ count(1) ‖ count × (at(8) ‖ kind(1) ‖ value(8)), big-endian.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEAD_LEN + self.ops.len() * OP_LEN);
        out.extend_from_slice(&self.base_ms.to_be_bytes());
        out.extend_from_slice(&self.base_at_ms.to_be_bytes());
        // `collapse` keeps the count at or under MAX_OPS.
        out.push(self.ops.len() as u8);
        for op in &self.ops {
            out.extend_from_slice(&op.at_ms.to_be_bytes());
            out.push(op.kind.byte());
            out.extend_from_slice(&op.value_ms.to_be_bytes());
        }
        out
    }

    /// Inverse of [`ExpiryLog::encode`]; `None` for anything else (wrong length, more than
    /// [`MAX_OPS`] requests, an unknown kind, requests out of order, repeated or not after
    /// the base).
    pub fn decode(b: &[u8]) -> Option<ExpiryLog> {
        let int = |at: usize| -> Option<i64> {
            let bytes: [u8; 8] = b.get(at..at + 8)?.try_into().ok()?;
            Some(i64::from_be_bytes(bytes))
        };
        let count = usize::from(*b.get(HEAD_LEN - 1)?);
        if count > MAX_OPS || b.len() != HEAD_LEN + count * OP_LEN {
            return None;
        }
        let base_at_ms = int(8)?;
        let mut ops = Vec::with_capacity(count);
        for i in 0..count {
            let at = HEAD_LEN + i * OP_LEN;
            let op = ExpiryOp {
                at_ms: int(at)?,
                kind: OpKind::from_byte(b[at + 8])?,
                value_ms: int(at + 9)?,
            };
            if op.at_ms <= base_at_ms || ops.last().is_some_and(|last| *last >= op) {
                return None;
            }
            ops.push(op);
        }
        Some(ExpiryLog {
            base_ms: int(0)?,
            base_at_ms,
            ops,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(at_ms: i64, kind: OpKind, value_ms: i64) -> ExpiryOp {
        ExpiryOp {
            at_ms,
            kind,
            value_ms,
        }
    }

    fn log(base: i64, ops: &[ExpiryOp]) -> ExpiryLog {
        let mut l = ExpiryLog::new(base);
        for o in ops {
            l.insert(*o);
        }
        l
    }

    #[test]
    fn requests_apply_in_acceptance_order_whatever_the_arrival_order() {
        let ops = [
            op(10, OpKind::Shorten, 500),
            op(20, OpKind::Extend, 800),
            op(30, OpKind::Shorten, 600),
        ];
        // 1000 → 500 → 800 → 600.
        assert_eq!(log(1000, &ops).expiry(), 600);
        let mut rev = ops;
        rev.reverse();
        assert_eq!(log(1000, &rev).expiry(), 600);
        // A set resets what came before it, not what came after.
        let set = op(25, OpKind::Set, 2000);
        assert_eq!(log(1000, &[ops[0], ops[1], ops[2], set]).expiry(), 600);
        assert_eq!(log(1000, &[set, ops[0]]).expiry(), 2000);
    }

    /// The failure the simulation found: two members each missed the other's request. A
    /// value-based rule (newest wins, or lowest wins) gets one of these wrong; the union of
    /// the histories gets both right.
    #[test]
    fn members_that_each_missed_a_request_converge_on_the_acceptance_order_fold() {
        let cases = [
            // Two shortenings on opposite sides: the lower one holds.
            (
                [op(10, OpKind::Shorten, 300)],
                [op(20, OpKind::Shorten, 500)],
                300,
            ),
            // Two extensions: the higher one holds.
            (
                [op(10, OpKind::Extend, 3000)],
                [op(20, OpKind::Extend, 2000)],
                3000,
            ),
            // A shortening, then an extension past it, each seen by one side.
            (
                [op(10, OpKind::Shorten, 300)],
                [op(20, OpKind::Extend, 700)],
                700,
            ),
            // An extension, then a shortening.
            (
                [op(10, OpKind::Extend, 3000)],
                [op(20, OpKind::Shorten, 700)],
                700,
            ),
        ];
        for (a_ops, b_ops, want) in cases {
            let (a, b) = (log(1000, &a_ops), log(1000, &b_ops));
            let mut ab = a.clone();
            ab.merge(&b);
            let mut ba = b.clone();
            ba.merge(&a);
            assert_eq!(ab, ba, "commutative");
            assert_eq!(ab.expiry(), want, "{a_ops:?} {b_ops:?}");
            let mut again = ab.clone();
            again.merge(&a);
            assert_eq!(again, ab, "idempotent");
        }
        // A copy that never saw a request (no history) merges as its base.
        let mut plain = ExpiryLog::new(1000);
        plain.merge(&log(1000, &[op(10, OpKind::Shorten, 300)]));
        assert_eq!(plain.expiry(), 300);
    }

    #[test]
    fn the_history_is_bounded_and_old_requests_fold_into_the_base() {
        let mut l = ExpiryLog::new(1000);
        for i in 0..20 {
            assert!(l.insert(op(i, OpKind::Extend, 1000 + i)));
        }
        assert_eq!(l.ops().len(), MAX_OPS);
        assert_eq!(l.expiry(), 1019);
        assert_eq!(l.base_at_ms, 11);
        assert_eq!(l.base_ms, 1011);
        // Older than the base: already in it.
        assert!(!l.insert(op(5, OpKind::Shorten, 0)));
        assert!(
            !l.insert(op(19, OpKind::Extend, 1019)),
            "a retry is not new"
        );
        assert_eq!(l.encode().len(), MAX_ENCODED_LEN);
        // Merging with a copy that folded less keeps the later base.
        let mut short = log(1000, &[op(15, OpKind::Shorten, 900)]);
        short.merge(&l);
        // Nine requests in the union: one more folds.
        assert_eq!(short.base_at_ms, 12);
        assert_eq!(short.ops().len(), MAX_OPS);
        assert_eq!(short.expiry(), 1019);
    }

    #[test]
    fn encoding_round_trips_and_garbage_is_refused() {
        let l = log(
            1000,
            &[op(-5, OpKind::Set, 7), op(3, OpKind::Shorten, i64::MIN)],
        );
        assert_eq!(ExpiryLog::decode(&l.encode()), Some(l.clone()));
        assert_eq!(
            ExpiryLog::decode(&ExpiryLog::new(5).encode()),
            Some(ExpiryLog::new(5))
        );
        let good = l.encode();
        for bad in [
            &good[..good.len() - 1],
            &[good.as_slice(), &[0]].concat()[..],
            &[][..],
            &[0u8; HEAD_LEN - 1][..],
        ] {
            assert_eq!(ExpiryLog::decode(bad), None, "{bad:?}");
        }
        let mut kind = good.clone();
        kind[HEAD_LEN + 8] = 9;
        assert_eq!(ExpiryLog::decode(&kind), None, "unknown kind");
        // Two requests swapped: out of order.
        let mut swapped = good.clone();
        let (a, b) = swapped[HEAD_LEN..].split_at_mut(OP_LEN);
        a.swap_with_slice(b);
        assert_eq!(ExpiryLog::decode(&swapped), None);
        // More than MAX_OPS.
        let mut many = vec![0u8; HEAD_LEN];
        many[HEAD_LEN - 1] = (MAX_OPS + 1) as u8;
        many.resize(HEAD_LEN + (MAX_OPS + 1) * OP_LEN, 0);
        assert_eq!(ExpiryLog::decode(&many), None);
    }

    #[test]
    fn a_peers_history_is_bounded_by_what_a_client_could_have_asked() {
        let (now, ttl) = (1_000_000, 5_000);
        let far = now + 10 * ttl;
        let l = log(
            far,
            &[
                op(now - 10, OpKind::Extend, far),
                op(now - 3 * ttl, OpKind::Extend, far),
                op(now + 99, OpKind::Set, 1),
            ],
        )
        .bounded(now, now + ttl, ttl);
        assert_eq!(l.ops().len(), 2, "the request from the future is dropped");
        assert_eq!(
            l.ops()[0].value_ms,
            now - 2 * ttl,
            "capped at its time + the TTL"
        );
        assert!(l.expiry() <= now + ttl);
        assert!(l.horizon() <= now + ttl);
    }
}
