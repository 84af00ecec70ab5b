//! Expiry: client updates (`expire_all`, `update_expiry`), reads (`get_expiries`) and the
//! periodic sweep that deletes what has expired.
//!
//! Every client request that moves an expiry is recorded in the message's history
//! (`expiry_log`) with its acceptance time, and the expiry is the history's fold, so requests
//! apply in acceptance order whatever order they arrive in and a copy that missed one learns
//! it from another copy (`bulk_store` merges histories).
//!
//! The sweep walks only the head of the expiry index (keys ordered by expiry), so its cost is
//! the number of expired messages, never the live data. A swept message whose expiry a
//! client shortened leaves a husk (`Record::husk`: its history, not its body) until no copy
//! can outlive it, so that a copy that missed the shortening learns it and cannot bring the
//! message back, while one that saw a later extension revives it. Reads elsewhere already hide expired
//! messages, so the sweep only reclaims space. Must not lengthen a message's life except
//! where the caller's mode says so.

use super::db::{CF_EXPIRIES, CF_MESSAGES, Store};
use super::delete::selection_prefix;
use super::keys::{self, Record};
use super::{ExpireMode, ExpiryUpdate, StoreError};
use crate::expiry_log::{ExpiryLog, ExpiryOp, OpKind};
use crate::message::{AccountId, Namespace, NamespaceSel};
use std::collections::{BTreeMap, BTreeSet};

/// One expiry-index entry: (expiry ‖ seq key, message key).
type IndexEntry = (Vec<u8>, Vec<u8>);

/// Expiry-index entries read per sweep round (each round locks one account at a time).
const SWEEP_CHUNK: usize = 1_024;
/// Messages read by one MultiGet of the sweep: at most 64 × 76.8 KB (the largest body) ≈ 5 MB
/// held at once, where a whole round of one account's largest messages would be 79 MB.
const SWEEP_READ_BATCH: usize = 64;

/// How far ahead of its clock an entry node may stamp an `expire` to order it after the
/// requests a message already has (`Store::expiry_acceptance_time`): half the peers' clock
/// tolerance, so a forward is still admitted by a peer whose clock is as far behind.
pub(crate) const ORDER_LEAD_MS: i64 = crate::message::PEER_CLOCK_TOLERANCE_MS / 2;

/// `rec`'s expiry history, or a fresh one if no request moved it yet.
pub(super) fn history(rec: &Record<'_>) -> Result<ExpiryLog, StoreError> {
    Ok(rec
        .expiry_log()?
        .unwrap_or_else(|| ExpiryLog::new(rec.expiry_ms)))
}

/// The request `mode` makes of a message whose expiry is `current_ms` (born at
/// `timestamp_ms`), accepted at `at_ms`: `None` when the mode refuses it outright — a trivial
/// extension, judged against the expiry at arrival as the storage-server does. An extension
/// to an expiry the message already passes is kept (it changes nothing here, but a member
/// that saw an earlier shortening needs it: the simulation's seed 300006, where the members
/// that missed a shortening dropped the extension after it, and their copies then took the
/// shortening and lost the extension).
fn request(
    mode: ExpireMode,
    new_expiry_ms: i64,
    at_ms: i64,
    timestamp_ms: i64,
    current_ms: i64,
) -> Option<ExpiryOp> {
    let kind = match mode {
        ExpireMode::Set => OpKind::Set,
        ExpireMode::ShortenOnly => OpKind::Shorten,
        ExpireMode::ExtendOnly => OpKind::Extend,
        ExpireMode::ExtendNonTrivial => {
            if current_ms < new_expiry_ms
                && super::is_trivial_extension(timestamp_ms, current_ms, new_expiry_ms)
            {
                return None;
            }
            OpKind::Extend
        }
    };
    Some(ExpiryOp {
        at_ms,
        kind,
        value_ms: new_expiry_ms,
    })
}

impl Store {
    /// Shortens only: every live message of `sel` whose expiry is later than `new_expiry_ms`
    /// gets `new_expiry_ms`. Returns the updated ones as (namespace, hash) sorted.
    pub fn expire_all(
        &self,
        account: &AccountId,
        sel: NamespaceSel,
        new_expiry_ms: i64,
        now_ms: i64,
    ) -> Result<Vec<(Namespace, String)>, StoreError> {
        let prefix = selection_prefix(account, sel);
        let mut txn = self.inner.begin(account);
        let mut updated = Vec::new();
        self.inner
            .iterate(CF_MESSAGES, &prefix, keys::prefix_end(&prefix), |k, v| {
                let rec = Record::decode(v)?;
                if !rec.is_expired(now_ms) && rec.expiry_ms > new_expiry_ms {
                    let mut log = history(&rec)?;
                    // Recorded even where a set accepted later keeps the expiry (applied in
                    // acceptance order, this shortening came before it), so that a member
                    // that missed either request learns both from this copy.
                    if log.insert(ExpiryOp {
                        at_ms: now_ms,
                        kind: OpKind::Shorten,
                        value_ms: new_expiry_ms,
                    }) {
                        txn.set_expiry_log(k, &rec, &log)?;
                        txn.maybe_flush()?;
                    }
                    if log.expiry() < rec.expiry_ms {
                        updated.push((keys::parse_message_key(k)?.namespace, rec.hash.to_string()));
                    }
                }
                Ok(true)
            })?;
        txn.commit()?;
        updated.sort();
        Ok(updated)
    }

    /// Sets the expiry of those of `hashes` that are live messages of `account`, as `mode`
    /// allows: `updated` gets the changed ones (with the new expiry), `unchanged` the ones the
    /// mode left alone (with their current expiry). Unknown hashes appear in neither. The
    /// caller caps `new_expiry_ms` (the protocol's now + 30 d).
    ///
    /// `now_ms` is the time the swarm accepted the request (the entry node's clock, carried by
    /// forwards and retries): requests apply in that order (`expiry_log`), whatever order
    /// they arrive in, and the message keeps the request in its history.
    pub fn update_expiry(
        &self,
        account: &AccountId,
        hashes: &[String],
        new_expiry_ms: i64,
        mode: ExpireMode,
        now_ms: i64,
    ) -> Result<ExpiryUpdate, StoreError> {
        let wanted: BTreeSet<&str> = hashes.iter().map(String::as_str).collect();
        let mut txn = self.inner.begin(account);
        let mut out = ExpiryUpdate::default();
        for h in wanted {
            let Some((key, value)) = txn.lookup_owned(h)? else {
                continue;
            };
            let rec = Record::decode(&value)?;
            if rec.is_expired(now_ms) {
                continue;
            }
            let Some(op) = request(mode, new_expiry_ms, now_ms, rec.timestamp_ms, rec.expiry_ms)
            else {
                out.unchanged.insert(h.to_string(), rec.expiry_ms);
                continue;
            };
            // Recorded whether or not it moves the expiry now: a request that changes nothing
            // here (a shortening past a lower expiry) still counts, in acceptance order, for a
            // member that missed an earlier one.
            let mut log = history(&rec)?;
            if log.insert(op) {
                txn.set_expiry_log(&key, &rec, &log)?;
                txn.maybe_flush()?;
            }
            let now = log.expiry();
            // A set answers "updated" when it decides the expiry (SS's UPDATE matches a set to
            // the current value); it does not when a set accepted later does (it arrived late:
            // a retry, or a forward overtaken by a later one). The others answer "updated"
            // when they moved it.
            let took = match op.kind {
                OpKind::Set => now == new_expiry_ms,
                OpKind::Shorten | OpKind::Extend => now != rec.expiry_ms,
            };
            if took {
                out.updated.insert(h.to_string(), now);
            } else {
                out.unchanged.insert(h.to_string(), now);
            }
        }
        txn.commit()?;
        Ok(out)
    }

    /// The acceptance time an entry node gives an `expire` of `hashes` arriving at `now_ms`:
    /// its clock, or just after the latest request in those messages' histories if that is
    /// later — a request it accepted through another node whose clock runs ahead. Requests
    /// apply in acceptance order, so without this a client that shortens a message through
    /// one node and then extends it through another whose clock is behind would see the
    /// shortening win on every member (the simulation's seed 9 with `--expiries`, nodes up
    /// to 30 s apart). It never runs more than [`ORDER_LEAD_MS`] ahead of the clock, so that
    /// forwards stay within the peers' clock tolerance.
    pub fn expiry_acceptance_time(
        &self,
        account: &AccountId,
        hashes: &[String],
        now_ms: i64,
    ) -> Result<i64, StoreError> {
        let owner = account.to_bytes();
        let mut at = now_ms;
        for h in hashes {
            if let Some((key, value)) = self.inner.find_hash(h)?
                && key.starts_with(&owner)
                && let Some(log) = Record::decode(&value)?.expiry_log()?
            {
                let latest = log.ops().last().map_or(log.base_at_ms, |op| op.at_ms);
                at = at.max(latest.saturating_add(1));
            }
        }
        Ok(at.min(now_ms.saturating_add(ORDER_LEAD_MS)))
    }

    /// The current expiry of each of `hashes` that is a live message of `account`.
    pub fn get_expiries(
        &self,
        account: &AccountId,
        hashes: &[String],
        now_ms: i64,
    ) -> Result<BTreeMap<String, i64>, StoreError> {
        let owner = account.to_bytes();
        let mut out = BTreeMap::new();
        for h in hashes {
            if let Some((key, value)) = self.inner.find_hash(h)?
                && key.starts_with(&owner)
            {
                let rec = Record::decode(&value)?;
                if !rec.is_expired(now_ms) {
                    out.insert(h.clone(), rec.expiry_ms);
                }
            }
        }
        Ok(out)
    }

    /// Deletes every message whose expiry is `<= now_ms` (and the tombstones that expired
    /// with them); returns how many messages. Reads the expiry
    /// index from its head and stops at `now_ms`, so live data is never scanned. Safe to run
    /// while clients write: each message is re-checked under its account's lock.
    pub fn sweep_expired(&self, now_ms: i64) -> Result<u64, StoreError> {
        let Some(upper) = now_ms
            .checked_add(1)
            .map(|t| keys::expiry_key(t, 0).to_vec())
        else {
            return Ok(0);
        };
        let mut lower: Vec<u8> = Vec::new();
        let mut removed = 0u64;
        loop {
            let mut chunk: Vec<IndexEntry> = Vec::with_capacity(SWEEP_CHUNK);
            self.inner
                .scan(CF_EXPIRIES, &lower, Some(upper.clone()), |k, v| {
                    chunk.push((k.to_vec(), v.to_vec()));
                    Ok(chunk.len() < SWEEP_CHUNK)
                })?;
            let Some((last, _)) = chunk.last() else {
                // Tombstones live exactly as long as the messages they stand for.
                self.sweep_tombstones(now_ms)?;
                return Ok(removed);
            };
            lower = [last.as_slice(), &[0u8]].concat();
            removed += self.sweep_chunk(chunk, now_ms)?;
        }
    }

    /// Deletes the expired messages an expiry-index chunk points at, one account at a time.
    fn sweep_chunk(&self, chunk: Vec<IndexEntry>, now_ms: i64) -> Result<u64, StoreError> {
        let mut by_account: BTreeMap<AccountId, Vec<IndexEntry>> = BTreeMap::new();
        for (ek, mk) in chunk {
            let account = keys::parse_message_key(&mk)?.account;
            by_account.entry(account).or_default().push((ek, mk));
        }
        let mut removed = 0;
        for (account, mut entries) in by_account {
            let mut txn = self.inner.begin(&account);
            // Re-read under the lock: the message may have been extended or deleted since
            // the index was read. The account's messages are read by batched MultiGets in key
            // order (each data block once): the sweep of 1 M messages took 25.0 s with a
            // `get` per message, 12.4 s so (BENCHMARKS.md "Store", 2026-12-07). At most
            // `SWEEP_READ_BATCH` values are held at once.
            entries.sort_by(|a, b| a.1.cmp(&b.1));
            for batch in entries.chunks(SWEEP_READ_BATCH) {
                let mut wanted: Vec<&[u8]> = batch.iter().map(|(_, mk)| mk.as_slice()).collect();
                wanted.dedup();
                let values = self
                    .inner
                    .multi_get_uncached(CF_MESSAGES, &wanted, "sweep read")?;
                let read: BTreeMap<&[u8], Option<Vec<u8>>> =
                    wanted.into_iter().zip(values).collect();
                removed += Self::sweep_batch(&mut txn, batch, &read, now_ms)?;
            }
            txn.commit()?;
        }
        Ok(removed)
    }

    /// Sweeps the index entries of one read batch (`read`: their messages' values), in
    /// `txn`; how many messages expired.
    fn sweep_batch(
        txn: &mut super::txn::AccountTxn<'_>,
        batch: &[IndexEntry],
        read: &BTreeMap<&[u8], Option<Vec<u8>>>,
        now_ms: i64,
    ) -> Result<u64, StoreError> {
        let mut removed = 0;
        for (ek, mk) in batch {
            match read.get(mk.as_slice()).and_then(Option::as_ref) {
                Some(value) => {
                    let rec = Record::decode(value)?;
                    let seq = keys::parse_message_key(mk)?.seq;
                    if rec.husk {
                        if rec.horizon() <= now_ms {
                            txn.delete(mk, &rec)?;
                        }
                    } else if rec.is_expired(now_ms) {
                        match rec.expiry_log().ok().flatten() {
                            // A client's request shortened it: a copy elsewhere that
                            // missed the request would bring it back (anti-entropy offers
                            // it, with the old expiry), and one that saw a later
                            // extension must still revive it. The husk keeps the history
                            // (not the body) until no copy can live any more.
                            Some(log) if log.horizon() > now_ms => {
                                let encoded = log.encode();
                                txn.rewrite(mk, &rec, &rec.husked(&encoded))?;
                            }
                            // Nothing moved it (every copy expires by now), or no copy
                            // can outlive it.
                            _ => txn.delete(mk, &rec)?,
                        }
                        removed += 1;
                    }
                    if keys::expiry_key(rec.index_ms(), seq).as_slice() != ek.as_slice() {
                        txn.delete_expiry_entry(ek)?;
                    }
                }
                None => txn.delete_expiry_entry(ek)?,
            }
        }
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_util::*;
    use super::super::{ExpireMode, Store};
    use super::{SWEEP_CHUNK, SWEEP_READ_BATCH};
    use crate::message::{Message, Namespace, NamespaceSel};

    /// `n` members (temp stores), each holding `m`, stored at `NOW`.
    fn members_holding(m: &Message, n: usize) -> Vec<(tempfile::TempDir, Store)> {
        (0..n)
            .map(|_| {
                let d = tempdir();
                let s = open(&d);
                s.store(m, NOW).expect("store");
                (d, s)
            })
            .collect()
    }

    fn three(s: &Store) -> Vec<Message> {
        let a = account(1);
        let ms: Vec<_> = [(0i16, HOUR), (0, 3 * HOUR), (7, 2 * HOUR)]
            .iter()
            .enumerate()
            .map(|(i, &(ns, ttl))| msg(&a, ns, &[i as u8], NOW, NOW + ttl))
            .collect();
        for m in &ms {
            s.store(m, NOW).expect("store");
        }
        ms
    }

    #[test]
    fn expire_all_only_shortens() {
        let dir = tempdir();
        let s = open(&dir);
        let ms = three(&s);
        let a = account(1);
        let t = NOW + 2 * HOUR;
        let got = s
            .expire_all(&a, NamespaceSel::One(Namespace(0)), t, NOW)
            .expect("expire_all");
        assert_eq!(got, vec![(Namespace(0), ms[1].hash.clone())]);
        let got = s
            .expire_all(&a, NamespaceSel::All, t, NOW)
            .expect("expire_all");
        assert!(got.is_empty(), "ms[2] already at t, ms[0] earlier");
        let hashes: Vec<_> = ms.iter().map(|m| m.hash.clone()).collect();
        let exp = s.get_expiries(&a, &hashes, NOW).expect("get");
        assert_eq!(exp[&ms[0].hash], NOW + HOUR);
        assert_eq!(exp[&ms[1].hash], t);
        assert_eq!(exp[&ms[2].hash], t);
        let mut want: Vec<_> = ms.iter().map(|m| (m.namespace, m.hash.clone())).collect();
        want.sort();
        assert_eq!(
            s.expire_all(&a, NamespaceSel::All, NOW + 1, NOW)
                .expect("e"),
            want
        );
        // Shortened into the past of the sweep: everything goes.
        assert_eq!(s.sweep_expired(NOW + 1).expect("sweep"), 3);
    }

    /// An account with more expired messages than one sweep read batch (and than one round
    /// of the index), among messages that stay: every expired one goes in one sweep, every
    /// other stays, and the counts agree.
    #[test]
    fn the_sweep_reads_in_bounded_batches_and_misses_nothing() {
        let dir = tempdir();
        let s = open(&dir);
        let a = account(7);
        let n = SWEEP_CHUNK + SWEEP_READ_BATCH + 3;
        let (mut going, mut staying) = (Vec::new(), Vec::new());
        for i in 0..n {
            let expiry = if i % 10 == 0 {
                NOW + 2 * HOUR
            } else {
                NOW + HOUR
            };
            let m = msg(&a, 0, format!("m{i}").as_bytes(), NOW, expiry);
            s.store(&m, NOW).expect("store");
            if i % 10 == 0 {
                &mut staying
            } else {
                &mut going
            }
            .push(m.hash);
        }
        assert_eq!(
            s.sweep_expired(NOW + HOUR).expect("sweep"),
            going.len() as u64
        );
        assert_eq!(s.stats().messages, staying.len() as u64);
        let left = s.get_expiries(&a, &staying, NOW + HOUR).expect("get");
        assert_eq!(left.len(), staying.len());
        assert!(s.get_expiries(&a, &going, NOW).expect("get").is_empty());
        assert_eq!(s.sweep_expired(NOW + HOUR).expect("again"), 0);
    }

    /// One message's expiry after each `(mode, expiry, accepted_at)` operation, applied in
    /// the order given.
    fn apply(ops: &[(ExpireMode, i64, i64)]) -> i64 {
        let dir = tempdir();
        let s = open(&dir);
        let a = account(1);
        let m = msg(&a, 0, b"x", NOW, NOW + 10 * HOUR);
        s.store(&m, NOW).expect("store");
        let h = vec![m.hash.clone()];
        for &(mode, exp, at) in ops {
            s.update_expiry(&a, &h, exp, mode, at).expect("update");
        }
        s.get_expiries(&a, &h, NOW).expect("get")[&m.hash]
    }

    #[test]
    fn plain_sets_are_last_writer_wins_on_acceptance_time_in_any_arrival_order() {
        let set = ExpireMode::Set;
        let (first, second) = (
            (set, NOW + 2 * HOUR, NOW + 1),
            (set, NOW + 5 * HOUR, NOW + 2),
        );
        // Accepted in this order: the second set decides, whichever arrives last.
        assert_eq!(apply(&[first, second]), NOW + 5 * HOUR);
        assert_eq!(apply(&[second, first]), NOW + 5 * HOUR);
        // A late copy of the first (a retry) after both still changes nothing.
        assert_eq!(apply(&[first, second, first]), NOW + 5 * HOUR);
        // A shorten or extend accepted before the set arrives after it: dropped, as the set
        // overwrote it in acceptance order.
        let shorten = (ExpireMode::ShortenOnly, NOW + HOUR, NOW + 1);
        let extend = (ExpireMode::ExtendOnly, NOW + 9 * HOUR, NOW + 1);
        assert_eq!(apply(&[second, shorten]), NOW + 5 * HOUR);
        assert_eq!(apply(&[shorten, second]), NOW + 5 * HOUR);
        assert_eq!(apply(&[second, extend]), NOW + 5 * HOUR);
        // Accepted in the same millisecond (concurrent requests): one order on every member,
        // whatever the arrival order (`expiry_log::OpKind`, then the value).
        let tie = (set, NOW + 3 * HOUR, NOW + 2);
        assert_eq!(apply(&[second, tie]), NOW + 5 * HOUR);
        assert_eq!(apply(&[tie, second]), NOW + 5 * HOUR);
    }

    /// Finding 4 of docs/simulation.md: a member that missed a client's shortening learns it
    /// from any copy that has it (hand-off, anti-entropy), and a copy that missed it cannot
    /// undo it — before the sweep (histories merge) or after (the sweep's husk).
    #[test]
    fn a_shortening_a_member_missed_travels_with_the_copy_and_survives_the_sweep() {
        let a = account(1);
        let m = msg(&a, 0, b"x", NOW, NOW + 10 * HOUR);
        let members = members_holding(&m, 2);
        let (sa, sb) = (&members[0].1, &members[1].1);
        let h = vec![m.hash.clone()];
        // Only A applies the shortening (B was cut off).
        let up = sa
            .update_expiry(&a, &h, NOW + HOUR, ExpireMode::ShortenOnly, NOW + 5)
            .expect("shorten");
        assert_eq!(up.updated[&m.hash], NOW + HOUR);
        let stale = sb.get_by_hash(&m.hash, NOW).expect("g").expect("held");
        assert_eq!(stale.expiry_log, None);
        // B's stale copy reaches A: nothing changes there.
        sa.bulk_store(std::slice::from_ref(&stale), NOW + 10)
            .expect("import");
        assert_eq!(
            sa.get_expiries(&a, &h, NOW).expect("g")[&m.hash],
            NOW + HOUR
        );
        // A's copy reaches B: B takes the shortening.
        let fresh = sa.get_by_hash(&m.hash, NOW).expect("g").expect("held");
        assert!(fresh.expiry_log.is_some());
        sb.bulk_store(std::slice::from_ref(&fresh), NOW + 10)
            .expect("import");
        assert_eq!(
            sb.get_expiries(&a, &h, NOW).expect("g")[&m.hash],
            NOW + HOUR
        );
        // Even once the copy has expired (not yet swept): its history still merges.
        let c = members_holding(&m, 1);
        let sc = &c[0].1;
        sc.bulk_store(std::slice::from_ref(&fresh), NOW + 2 * HOUR)
            .expect("import");
        assert!(
            sc.get_by_hash(&m.hash, NOW + 2 * HOUR)
                .expect("g")
                .is_none(),
            "expired on C too"
        );
        // After A sweeps it, the stale copy cannot bring it back.
        assert_eq!(sa.sweep_expired(NOW + HOUR).expect("sweep"), 1);
        assert_eq!(
            sa.bulk_store(std::slice::from_ref(&stale), NOW + HOUR + 10)
                .expect("import"),
            0
        );
        assert!(
            sa.get_by_hash(&m.hash, NOW + HOUR + 10)
                .expect("g")
                .is_none()
        );
    }

    /// Seed 42 of the simulation with `--expiries`: the members that missed an extension
    /// sweep the message at the shortened expiry; what they keep (a husk) must neither show
    /// it to a client nor stop the extended copies — it merges with them and revives.
    #[test]
    fn a_husk_hides_the_message_teaches_stale_copies_and_revives_with_a_later_extension() {
        let a = account(1);
        let m = msg(&a, 0, b"x", NOW, NOW + 10 * HOUR);
        let h = vec![m.hash.clone()];
        let members = members_holding(&m, 3);
        let (sa, sb, sc) = (&members[0].1, &members[1].1, &members[2].1);
        // Everyone shortens to 1 h; B alone then extends to 5 h; C never hears of either.
        for s in [sa, sb] {
            s.update_expiry(&a, &h, NOW + HOUR, ExpireMode::ShortenOnly, NOW + 5)
                .expect("shorten");
        }
        sb.update_expiry(&a, &h, NOW + 5 * HOUR, ExpireMode::ExtendOnly, NOW + 9)
            .expect("extend");
        // A sweeps at 1 h: a husk, invisible to clients, its body gone.
        assert_eq!(sa.sweep_expired(NOW + HOUR).expect("sweep"), 1);
        assert!(sa.get_by_hash(&m.hash, NOW + HOUR).expect("g").is_none());
        assert!(sa.get_expiries(&a, &h, NOW).expect("g").is_empty());
        let husk = sa.get_held(&h).expect("held").pop().expect("the husk");
        assert!(husk.is_history_only() && husk.data.is_empty());
        assert_eq!(sa.stats().data_bytes, 0);
        // The husk teaches C, which missed the shortening, and is never stored as a message.
        sc.bulk_store(std::slice::from_ref(&husk), NOW + 10)
            .expect("import");
        assert_eq!(
            sc.get_expiries(&a, &h, NOW).expect("g")[&m.hash],
            NOW + HOUR
        );
        let de = tempdir();
        let se = open(&de);
        assert_eq!(
            se.bulk_store(std::slice::from_ref(&husk), NOW + 10)
                .expect("i"),
            0
        );
        assert!(
            se.get_held(&h).expect("held").is_empty(),
            "nothing to merge into"
        );
        // C's stale copy cannot bring the message back to A.
        let stale = members_holding(&m, 1)[0]
            .1
            .get_by_hash(&m.hash, NOW)
            .expect("g")
            .expect("held");
        sa.bulk_store(std::slice::from_ref(&stale), NOW + HOUR + 10)
            .expect("import");
        assert!(
            sa.get_by_hash(&m.hash, NOW + HOUR + 10)
                .expect("g")
                .is_none()
        );
        // B's extended copy revives it on A, body and all.
        let extended = sb.get_by_hash(&m.hash, NOW).expect("g").expect("b");
        sa.bulk_store(std::slice::from_ref(&extended), NOW + HOUR + 20)
            .expect("import");
        let back = sa
            .get_by_hash(&m.hash, NOW + HOUR + 20)
            .expect("g")
            .expect("revived");
        assert_eq!(
            (back.expiry_ms, back.data.clone()),
            (NOW + 5 * HOUR, m.data.clone())
        );
        assert_eq!(sa.stats().data_bytes, m.data.len() as u64);
        // A husk goes at its horizon (the original 10 h here).
        sc.sweep_expired(NOW + HOUR).expect("sweep");
        assert_eq!(sc.get_held(&h).expect("held").len(), 1, "C keeps a husk");
        sc.sweep_expired(NOW + 10 * HOUR).expect("sweep");
        assert!(sc.get_held(&h).expect("held").is_empty());
    }

    /// An extension accepted after a shortening, each applied on one member only: both end
    /// on the extension, the acceptance order's result.
    #[test]
    fn members_that_each_missed_one_request_end_on_the_acceptance_order_result() {
        let a = account(1);
        let m = msg(&a, 0, b"x", NOW, NOW + 10 * HOUR);
        let members = members_holding(&m, 2);
        let (sa, sb) = (&members[0].1, &members[1].1);
        let h = vec![m.hash.clone()];
        sa.update_expiry(&a, &h, NOW + HOUR, ExpireMode::ShortenOnly, NOW + 5)
            .expect("shorten");
        // The client's `extend: true` (trivial extensions skipped): unchanged on B, which still
        // has 10 h, but recorded (seed 300006 of the simulation).
        let up = sb
            .update_expiry(
                &a,
                &h,
                NOW + 3 * HOUR,
                ExpireMode::ExtendNonTrivial,
                NOW + 9,
            )
            .expect("extend");
        assert_eq!(up.unchanged[&m.hash], NOW + 10 * HOUR);
        let ca = sa.get_by_hash(&m.hash, NOW).expect("g").expect("a");
        let cb = sb.get_by_hash(&m.hash, NOW).expect("g").expect("b");
        sa.bulk_store(&[cb], NOW + 10).expect("import");
        sb.bulk_store(&[ca], NOW + 10).expect("import");
        for s in [sa, sb] {
            // 10 h → 1 h (shorten) → 3 h (extend).
            assert_eq!(
                s.get_expiries(&a, &h, NOW).expect("g")[&m.hash],
                NOW + 3 * HOUR
            );
        }
    }

    /// Seed 9 of the simulation with `--expiries`: a shortening accepted by a node whose clock
    /// runs ahead, then an extension through a node 20 s behind it. Stamped by the second
    /// node's clock alone, the extension would sort first and the shortening win.
    #[test]
    fn an_entry_orders_an_expire_after_the_requests_the_message_already_has() {
        let dir = tempdir();
        let s = open(&dir);
        let a = account(1);
        let m = msg(&a, 0, b"x", NOW, NOW + 10 * HOUR);
        s.store(&m, NOW).expect("store");
        let h = vec![m.hash.clone()];
        assert_eq!(
            s.expiry_acceptance_time(&a, &h, NOW).expect("t"),
            NOW,
            "no history"
        );
        s.update_expiry(&a, &h, NOW + HOUR, ExpireMode::ShortenOnly, NOW + 20_000)
            .expect("shorten, stamped by a clock 20 s ahead");
        let at = s.expiry_acceptance_time(&a, &h, NOW).expect("t");
        assert_eq!(at, NOW + 20_001);
        s.update_expiry(&a, &h, NOW + 5 * HOUR, ExpireMode::ExtendOnly, at)
            .expect("extend");
        assert_eq!(
            s.get_expiries(&a, &h, NOW).expect("g")[&m.hash],
            NOW + 5 * HOUR
        );
        // Never further ahead of the clock than the lead; other accounts' hashes do not count.
        assert_eq!(
            s.expiry_acceptance_time(&a, &h, NOW - HOUR).expect("t"),
            NOW - HOUR + super::ORDER_LEAD_MS
        );
        assert_eq!(
            s.expiry_acceptance_time(&account(2), &h, NOW).expect("t"),
            NOW
        );
    }

    #[test]
    fn expire_all_accepted_before_a_set_does_not_undo_it() {
        let dir = tempdir();
        let s = open(&dir);
        let ms = three(&s);
        let a = account(1);
        let h = vec![ms[1].hash.clone()];
        let up = s
            .update_expiry(&a, &h, NOW + 2 * HOUR, ExpireMode::Set, NOW + 10)
            .expect("set");
        assert_eq!(up.updated.len(), 1);
        // Accepted at NOW + 5, arriving after the set accepted at NOW + 10.
        let got = s
            .expire_all(&a, NamespaceSel::All, NOW + HOUR / 2, NOW + 5)
            .expect("expire_all");
        assert!(!got.iter().any(|(_, x)| *x == ms[1].hash), "{got:?}");
        assert_eq!(got.len(), 2, "the other two shorten");
        let exp = s.get_expiries(&a, &h, NOW).expect("get");
        assert_eq!(exp[&ms[1].hash], NOW + 2 * HOUR);
        // Accepted after the set: applies.
        s.expire_all(&a, NamespaceSel::All, NOW + HOUR / 2, NOW + 11)
            .expect("expire_all");
        let exp = s.get_expiries(&a, &h, NOW).expect("get");
        assert_eq!(exp[&ms[1].hash], NOW + HOUR / 2);
    }

    #[test]
    fn update_expiry_modes() {
        let dir = tempdir();
        let s = open(&dir);
        let ms = three(&s);
        let a = account(1);
        let hashes: Vec<_> = ms.iter().map(|m| m.hash.clone()).collect();
        let mid = NOW + 2 * HOUR;

        let up = s
            .update_expiry(&a, &hashes, mid, ExpireMode::ExtendOnly, NOW)
            .expect("extend");
        assert_eq!(up.updated.keys().collect::<Vec<_>>(), vec![&ms[0].hash]);
        assert_eq!(up.updated[&ms[0].hash], mid);
        assert_eq!(up.unchanged[&ms[1].hash], NOW + 3 * HOUR);
        assert_eq!(up.unchanged[&ms[2].hash], mid);

        let up = s
            .update_expiry(&a, &hashes, NOW + HOUR, ExpireMode::ShortenOnly, NOW + 1)
            .expect("shorten");
        assert_eq!(up.updated.len(), 3);
        assert!(up.unchanged.is_empty());

        let mut req = hashes.clone();
        req.push("C".repeat(43));
        let up = s
            .update_expiry(&a, &req, NOW + HOUR, ExpireMode::Set, NOW + 2)
            .expect("set");
        assert_eq!(up.updated.len(), 3, "set to the same value still counts");
        let up = s
            .update_expiry(&a, &hashes[..1], NOW + 5 * HOUR, ExpireMode::Set, NOW + 3)
            .expect("set");
        assert_eq!(up.updated[&ms[0].hash], NOW + 5 * HOUR);
        // Another account cannot touch them; expired ones are not found.
        let up = s
            .update_expiry(&account(2), &hashes, NOW, ExpireMode::Set, NOW)
            .expect("foreign");
        assert!(up.updated.is_empty() && up.unchanged.is_empty());
        let up = s
            .update_expiry(&a, &hashes, NOW + 9 * HOUR, ExpireMode::Set, NOW + 2 * HOUR)
            .expect("late");
        assert_eq!(up.updated.keys().collect::<Vec<_>>(), vec![&ms[0].hash]);
        // The sweep follows the index: the moved message survives its old expiry.
        assert_eq!(s.sweep_expired(NOW + HOUR).expect("sweep"), 2);
        assert!(
            s.get_by_hash(&ms[0].hash, NOW + 8 * HOUR)
                .expect("g")
                .is_some()
        );
    }

    #[test]
    fn get_expiries_only_live_and_owned() {
        let dir = tempdir();
        let s = open(&dir);
        let ms = three(&s);
        let a = account(1);
        let mut req: Vec<_> = ms.iter().map(|m| m.hash.clone()).collect();
        req.push("not a hash".to_string());
        assert_eq!(s.get_expiries(&a, &req, NOW).expect("g").len(), 3);
        assert_eq!(s.get_expiries(&a, &req, NOW + HOUR).expect("g").len(), 2);
        assert!(
            s.get_expiries(&account(2), &req, NOW)
                .expect("g")
                .is_empty()
        );
    }

    #[test]
    fn sweep_large_backlog_in_chunks() {
        let dir = tempdir();
        let s = open(&dir);
        let batch: Vec<_> = (0..2_500u32)
            .map(|i| {
                let acc = account((i % 7) as u8);
                msg(
                    &acc,
                    0,
                    &i.to_be_bytes(),
                    NOW,
                    NOW + 1_000 + i64::from(i % 3),
                )
            })
            .collect();
        assert_eq!(s.bulk_store(&batch, NOW).expect("bulk"), 2_500);
        let keep = msg(&account(1), 0, b"keep", NOW, NOW + HOUR);
        s.store(&keep, NOW).expect("store");
        assert_eq!(s.sweep_expired(NOW + 1_002).expect("sweep"), 2_500);
        let st = s.stats();
        assert_eq!((st.messages, st.accounts), (1, 1));
        assert!(s.get_by_hash(&keep.hash, NOW).expect("g").is_some());
    }

    #[test]
    fn trivial_extension_is_under_one_percent_of_the_lifetime_and_cannot_overflow() {
        use super::super::is_trivial_extension;
        // Lifetime 10 000 ms: 1 % is 100 ms.
        assert!(is_trivial_extension(0, 10_000, 10_099));
        assert!(!is_trivial_extension(0, 10_000, 10_100));
        assert!(!is_trivial_extension(0, 10_000, 20_000));
        assert!(is_trivial_extension(i64::MIN, i64::MAX, i64::MAX));
        assert!(is_trivial_extension(i64::MIN, 0, 1));
        assert!(!is_trivial_extension(i64::MAX, i64::MIN, i64::MAX));
    }
}
