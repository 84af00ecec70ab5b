//! Expiry: client updates (`expire_all`, `update_expiry`), reads (`get_expiries`) and the
//! periodic sweep that deletes what has expired.
//!
//! The sweep walks only the head of the expiry index (keys ordered by expiry), so its cost is
//! the number of expired messages, never the live data. Reads elsewhere already hide expired
//! messages, so the sweep only reclaims space. Must not lengthen a message's life except
//! where the caller's mode says so.

use super::db::{CF_EXPIRIES, CF_MESSAGES, Store};
use super::delete::selection_prefix;
use super::keys::{self, Record};
use super::{ExpireMode, ExpiryUpdate, StoreError};
use crate::message::{AccountId, Namespace, NamespaceSel};
use std::collections::{BTreeMap, BTreeSet};

/// One expiry-index entry: (expiry ‖ seq key, message key).
type IndexEntry = (Vec<u8>, Vec<u8>);

/// Expiry-index entries read per sweep round (each round locks one account at a time).
const SWEEP_CHUNK: usize = 1_024;

/// Whether a plain `expire` (set) accepted after `at_ms` already set `rec`'s expiry.
///
/// Ordering (storage-server.md has none: the original applies forwards as they arrive, so two
/// sets of one message can end differently on different members): a set is last-writer-wins
/// on its acceptance time, the instant the entry node accepted it, which every member sees
/// (`accepted_at` under the peer MAC). Anything accepted before the last applied set (a
/// set, shorten, extend or `expire_all`) is dropped when it arrives, since in acceptance order
/// the set overwrote it. Chosen over per-peer FIFO because it holds across retries, hand-offs
/// and entry nodes racing each other, with no sequencing between nodes. Left inexact: an
/// older set that arrives after a newer shorten or extend still applies (it needs two expiry
/// requests for one message within one forwarding delay, and the result is still one of the
/// client's requested values); shortens and extends alone commute (min and max).
fn set_later(rec: &Record<'_>, at_ms: i64) -> bool {
    rec.expiry_set_ms.is_some_and(|set| set > at_ms)
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
                if !rec.is_expired(now_ms)
                    && rec.expiry_ms > new_expiry_ms
                    && !set_later(&rec, now_ms)
                {
                    txn.set_expiry(k, &rec, new_expiry_ms, None)?;
                    updated.push((keys::parse_message_key(k)?.namespace, rec.hash.to_string()));
                    txn.maybe_flush()?;
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
    /// forwards and retries), which orders plain sets: see [`set_later`].
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
            // A set accepted after this request already decided the expiry: applying this one
            // now would undo it on this member only (it arrived late: a retry, or a forward
            // overtaken by a later one), so it is dropped as it would have been overwritten.
            if set_later(&rec, now_ms) {
                out.unchanged.insert(h.to_string(), rec.expiry_ms);
                continue;
            }
            let allowed = match mode {
                // Two sets accepted in the same millisecond (concurrent requests) apply in
                // arrival order, as two sets at one node always have.
                ExpireMode::Set => true,
                ExpireMode::ShortenOnly => rec.expiry_ms > new_expiry_ms,
                ExpireMode::ExtendOnly => rec.expiry_ms < new_expiry_ms,
                ExpireMode::ExtendNonTrivial => {
                    rec.expiry_ms < new_expiry_ms
                        && !super::is_trivial_extension(
                            rec.timestamp_ms,
                            rec.expiry_ms,
                            new_expiry_ms,
                        )
                }
            };
            if !allowed {
                out.unchanged.insert(h.to_string(), rec.expiry_ms);
                continue;
            }
            // `Set` to the current value still counts as updated (SS's UPDATE matches it), and
            // still records its time, so an older set arriving later cannot undo it.
            let stamp = (mode == ExpireMode::Set).then_some(now_ms);
            if rec.expiry_ms != new_expiry_ms || (stamp.is_some() && rec.expiry_set_ms != stamp) {
                txn.set_expiry(&key, &rec, new_expiry_ms, stamp)?;
                txn.maybe_flush()?;
            }
            out.updated.insert(h.to_string(), new_expiry_ms);
        }
        txn.commit()?;
        Ok(out)
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
        for (account, entries) in by_account {
            let mut txn = self.inner.begin(&account);
            for (ek, mk) in entries {
                // Re-read under the lock: the message may have been extended or deleted
                // since the index was read.
                match self.inner.get_uncached(CF_MESSAGES, &mk, "sweep read")? {
                    Some(value) => {
                        let rec = Record::decode(&value)?;
                        let seq = keys::parse_message_key(&mk)?.seq;
                        if rec.is_expired(now_ms) {
                            txn.delete(&mk, &rec)?;
                            removed += 1;
                        }
                        if keys::expiry_key(rec.expiry_ms, seq).as_slice() != ek.as_slice() {
                            txn.delete_expiry_entry(&ek)?;
                        }
                    }
                    None => txn.delete_expiry_entry(&ek)?,
                }
            }
            txn.commit()?;
        }
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_util::*;
    use super::super::{ExpireMode, Store};
    use crate::message::{Message, Namespace, NamespaceSel};

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
        // Accepted in the same millisecond: arrival order, as at a single node.
        let tie = (set, NOW + 3 * HOUR, NOW + 2);
        assert_eq!(apply(&[second, tie]), NOW + 3 * HOUR);
        assert_eq!(apply(&[tie, second]), NOW + 5 * HOUR);
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
            .update_expiry(&a, &hashes, NOW + HOUR, ExpireMode::ShortenOnly, NOW)
            .expect("shorten");
        assert_eq!(up.updated.len(), 3);
        assert!(up.unchanged.is_empty());

        let mut req = hashes.clone();
        req.push("C".repeat(43));
        let up = s
            .update_expiry(&a, &req, NOW + HOUR, ExpireMode::Set, NOW)
            .expect("set");
        assert_eq!(up.updated.len(), 3, "set to the same value still counts");
        let up = s
            .update_expiry(&a, &hashes[..1], NOW + 5 * HOUR, ExpireMode::Set, NOW)
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
