//! Writing messages (`store`, `bulk_store`) and reading them by hash or in bulk (`scan`).
//!
//! Owns the dedupe rule (hashes are globally unique: a client's store of an existing hash
//! raises its expiry, never lowers it, as an extension in the message's expiry history; a
//! replicated copy changes an existing one only by merging its history in, `expiry_log`) and
//! the public-outbox rule (one message per account and namespace).
//! Must not bypass [`AccountTxn`](super::txn::AccountTxn) for any write.

use super::db::{CF_MESSAGES, Store};
use super::expiry::history;
use super::keys::{self, Record};
use super::txn::{AccountTxn, Met};
use super::{StoreError, StoreOutcome};
use crate::expiry_log::{ExpiryLog, ExpiryOp, OpKind};
use crate::message::Message;
use std::collections::BTreeMap;

/// What happens when an incoming message meets another one in its public outbox.
#[derive(Clone, Copy, PartialEq, Eq)]
enum OutboxRule {
    /// A client store: the latest store wins, whatever its timestamp (SS 2.8 behaviour).
    LatestStore,
    /// A replicated copy: it loses to an existing message with a newer timestamp, so that
    /// swarm members converge on the same single message whatever order copies arrive in.
    NewestTimestamp,
}

/// Inserts `msg` if its hash is not stored yet, inside `txn`, or merges its expiry history
/// into the stored copy's (a replicated copy: hand-off, anti-entropy). The merged history
/// holds every client request either copy saw, so the expiry is the one neither would have
/// had alone if it missed a request; a copy without history counts as its expiry, which a
/// stored copy without history takes only if it is later (a client stored the message twice).
/// An expired copy is not inserted, but its history still merges: it may carry the
/// shortening that ended it; so does a peer's husk, a history without a body
/// ([`Message::is_history_only`]). A copy with a body revives a husk here whose merged
/// history is live again.
fn merge_or_insert(
    txn: &mut AccountTxn<'_>,
    msg: &Message,
    now_ms: i64,
) -> Result<StoreOutcome, StoreError> {
    let Some((key, value)) = txn.lookup_owned(&msg.hash)? else {
        if msg.is_expired(now_ms) || msg.is_history_only() {
            return Ok(StoreOutcome::Exists);
        }
        txn.insert(msg)?;
        return Ok(StoreOutcome::New);
    };
    // Hashes cover the owner: a match under another account is forged data, left alone.
    if !key.starts_with(&txn.account().to_bytes()) {
        return Ok(StoreOutcome::Exists);
    }
    let rec = Record::decode(&value)?;
    let mine = history(&rec)?;
    let mut merged = mine.clone();
    match &msg.expiry_log {
        Some(theirs) => merged.merge(theirs),
        None => merged.merge(&ExpiryLog::new(msg.expiry_ms)),
    }
    // A husk (what the sweep left of a shortened message) that a copy with a body and a
    // later extension revives takes the body back.
    if rec.husk && !msg.is_history_only() && merged.expiry() > now_ms {
        let encoded = merged.encode();
        let revived = rec.with_log(&merged, &encoded).with_body(&msg.data);
        txn.rewrite(&key, &rec, &revived)?;
        return Ok(StoreOutcome::Exists);
    }
    if merged != mine {
        txn.set_expiry_log(&key, &rec, &merged)?;
    }
    Ok(StoreOutcome::Exists)
}

/// Inserts `msg` or raises the expiry of its existing copy, inside `txn` (a client's store,
/// accepted at `now_ms`): the raise is recorded in the message's history as an extension, so
/// that it orders with the client's `expire` requests on every member.
fn insert_or_raise(
    txn: &mut AccountTxn<'_>,
    msg: &Message,
    now_ms: i64,
) -> Result<StoreOutcome, StoreError> {
    let Some((key, value)) = txn.lookup(&msg.hash)? else {
        txn.insert(msg)?;
        return Ok(StoreOutcome::New);
    };
    // Hashes cover the owner, so a match under another account can only be forged data;
    // never touch another account's message (we do not hold its lock either).
    if !key.starts_with(&txn.account().to_bytes()) {
        return Ok(StoreOutcome::Exists);
    }
    let rec = Record::decode(&value)?;
    if msg.expiry_ms > rec.expiry_ms {
        let mut log = history(&rec)?;
        log.insert(ExpiryOp {
            at_ms: now_ms,
            kind: OpKind::Extend,
            value_ms: msg.expiry_ms,
        });
        txn.set_expiry_log(&key, &rec, &log)?;
        Ok(StoreOutcome::Extended)
    } else {
        Ok(StoreOutcome::Exists)
    }
}

/// Applies the public-outbox rule before `msg` is stored: removes the other messages of its
/// account+namespace, or returns `false` when `msg` must be dropped as obsolete.
/// `txn` must have no pending writes (the scan reads committed data).
fn clear_outbox(
    store: &Store,
    txn: &mut AccountTxn<'_>,
    msg: &Message,
    rule: OutboxRule,
) -> Result<bool, StoreError> {
    let prefix = keys::account_ns_prefix(&msg.account, msg.namespace);
    let others: Vec<(Vec<u8>, Vec<u8>)> = store
        .inner
        .collect_prefix(&prefix)?
        .into_iter()
        .filter(|(_, v)| {
            Record::decode(v)
                .map(|r| r.hash != msg.hash)
                .unwrap_or(true)
        })
        .collect();
    if rule == OutboxRule::NewestTimestamp {
        for (_, v) in &others {
            if Record::decode(v)?.timestamp_ms > msg.timestamp_ms {
                return Ok(false);
            }
        }
    }
    for (k, v) in &others {
        txn.delete(k, &Record::decode(v)?)?;
    }
    Ok(true)
}

impl Store {
    /// Stores one message. Dedupe by hash: an existing hash has its expiry raised when the new
    /// one is later (`Extended`), else nothing changes (`Exists`). In a public-outbox
    /// namespace ([`Namespace::is_public_outbox`](crate::message::Namespace::is_public_outbox))
    /// the account's other messages there are deleted first: the latest store wins, as in
    /// SS 2.8. Refused with [`StoreError::Full`] once the size cap is reached.
    ///
    /// `now_ms` is when the swarm accepted the store (the entry node's clock, also for a
    /// forwarded copy): a client deletion of the hash accepted later, or up to
    /// `tombstones::CLOCK_MARGIN_MS` earlier, wins and nothing is
    /// stored (`Deleted`); an older deletion's tombstone is removed, since the client stored
    /// the same content again.
    pub fn store(&self, msg: &Message, now_ms: i64) -> Result<StoreOutcome, StoreError> {
        self.inner.check_capacity(now_ms)?;
        let mut txn = self.inner.begin(&msg.account);
        if txn.meet_tombstone(msg, Some(now_ms))? == Met::Deleted {
            txn.commit()?;
            return Ok(StoreOutcome::Deleted);
        }
        if msg.namespace.is_public_outbox() {
            clear_outbox(self, &mut txn, msg, OutboxRule::LatestStore)?;
        }
        let outcome = insert_or_raise(&mut txn, msg, now_ms)?;
        txn.commit()?;
        if outcome == StoreOutcome::New {
            self.notify_new([msg]);
        }
        Ok(outcome)
    }

    /// Bulk import for replication: inserts missing messages and merges the expiry history
    /// of existing ones (see `merge_or_insert`; an expired copy only merges), skips messages
    /// a client deleted (tombstoned, whenever: an import has no acceptance time). Returns how
    /// many were new. Writes one batch per account (chunked for very large accounts); in a public
    /// outbox the copy with the newest timestamp wins, so members converge.
    pub fn bulk_store(&self, msgs: &[Message], now_ms: i64) -> Result<usize, StoreError> {
        self.inner.check_capacity(now_ms)?;
        let mut by_account: BTreeMap<_, Vec<&Message>> = BTreeMap::new();
        // Expired copies too: their histories merge into live copies (`merge_or_insert`).
        for m in msgs {
            by_account.entry(m.account).or_default().push(m);
        }
        let mut new = 0;
        for (account, group) in by_account {
            let mut txn = self.inner.begin(&account);
            let mut inserted: Vec<&Message> = Vec::new();
            for m in group {
                // A client deleted it: a late or retried copy must not resurrect it. Checked
                // under the account lock, which client deletions also hold.
                if txn.meet_tombstone(m, None)? == Met::Deleted {
                    continue;
                }
                if m.namespace.is_public_outbox() && !m.is_expired(now_ms) {
                    txn.flush()?;
                    if !clear_outbox(self, &mut txn, m, OutboxRule::NewestTimestamp)? {
                        continue;
                    }
                    if merge_or_insert(&mut txn, m, now_ms)? == StoreOutcome::New {
                        inserted.push(m);
                    }
                    txn.flush()?;
                } else {
                    if merge_or_insert(&mut txn, m, now_ms)? == StoreOutcome::New {
                        inserted.push(m);
                    }
                    txn.maybe_flush()?;
                }
            }
            txn.commit()?;
            new += inserted.len();
            self.notify_new(inserted);
        }
        Ok(new)
    }

    /// Looks a live message up by hash, whatever its account.
    pub fn get_by_hash(&self, hash: &str, now_ms: i64) -> Result<Option<Message>, StoreError> {
        let Some((key, value)) = self.inner.find_hash(hash)? else {
            return Ok(None);
        };
        let rec = Record::decode(&value)?;
        if rec.is_expired(now_ms) {
            return Ok(None);
        }
        Ok(Some(rec.to_message(&keys::parse_message_key(&key)?)))
    }

    /// Visits live messages in key order (account, namespace, insertion), starting after the
    /// opaque cursor `after` (a message key from a previous call), calling `f` for at most
    /// `limit` of them. Returns the cursor to resume from, or `None` when nothing follows.
    pub fn scan(
        &self,
        after: Option<&[u8]>,
        limit: usize,
        now_ms: i64,
        mut f: impl FnMut(&Message),
    ) -> Result<Option<Vec<u8>>, StoreError> {
        // The smallest key after `after` is `after ‖ 0x00`.
        let lower = after.map(|a| [a, &[0u8]].concat()).unwrap_or_default();
        self.scan_range(&lower, None, limit, now_ms, |m| f(&m))
    }

    /// Visits live messages with keys in `[lower, upper)` in key order, at most `limit` of
    /// them; returns the last visited key when more follow (the resume cursor), else `None`.
    pub(super) fn scan_range(
        &self,
        lower: &[u8],
        upper: Option<Vec<u8>>,
        limit: usize,
        now_ms: i64,
        mut f: impl FnMut(Message),
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let limit = limit.max(1);
        let mut visited = 0usize;
        let mut last: Option<Vec<u8>> = None;
        let mut more = false;
        self.inner.scan(CF_MESSAGES, lower, upper, |k, v| {
            if visited == limit {
                more = true;
                return Ok(false);
            }
            let rec = Record::decode(v)?;
            if !rec.is_expired(now_ms) {
                f(rec.to_message(&keys::parse_message_key(k)?));
                visited += 1;
            }
            last = Some(k.to_vec());
            Ok(true)
        })?;
        Ok(if more { last } else { None })
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_util::*;
    use crate::message::Namespace;

    #[test]
    fn persistence_across_reopen_including_namespace() {
        let dir = tempdir();
        let a = account(1);
        let m0 = msg(&a, 0, b"hello", NOW, NOW + HOUR);
        let m42 = msg(&a, 42, b"hello", NOW, NOW + HOUR);
        {
            let s = open(&dir);
            assert_eq!(s.store(&m0, NOW).expect("store"), StoreOutcome::New);
            assert_eq!(s.store(&m42, NOW).expect("store"), StoreOutcome::New);
        }
        let s = open(&dir);
        let r0 = s
            .retrieve(&a, Namespace(0), None, 100, BIG, NOW)
            .expect("retrieve");
        assert_eq!(r0.messages, vec![m0.clone()]);
        let r42 = s
            .retrieve(&a, Namespace(42), None, 100, BIG, NOW)
            .expect("retrieve");
        assert_eq!(r42.messages, vec![m42.clone()]);
        assert_ne!(m0.hash, m42.hash);
        let st = s.stats();
        assert_eq!((st.messages, st.data_bytes, st.accounts), (2, 10, 1));
        assert_eq!(s.get_by_hash(&m42.hash, NOW).expect("get"), Some(m42));
    }

    #[test]
    fn new_extended_exists() {
        let dir = tempdir();
        let s = open(&dir);
        let a = account(1);
        let m = msg(&a, 0, b"x", NOW, NOW + HOUR);
        assert_eq!(s.store(&m, NOW).expect("store"), StoreOutcome::New);
        assert_eq!(s.store(&m, NOW).expect("store"), StoreOutcome::Exists);
        let later = Message {
            expiry_ms: NOW + 2 * HOUR,
            ..m.clone()
        };
        assert_eq!(s.store(&later, NOW).expect("store"), StoreOutcome::Extended);
        let earlier = Message {
            expiry_ms: NOW + HOUR / 2,
            ..m.clone()
        };
        assert_eq!(s.store(&earlier, NOW).expect("store"), StoreOutcome::Exists);
        let got = s.get_by_hash(&m.hash, NOW).expect("get").expect("present");
        assert_eq!(got.expiry_ms, NOW + 2 * HOUR);
        assert_eq!(s.stats().messages, 1);
        // The old expiry entry is gone: sweeping at the old expiry keeps the message.
        assert_eq!(s.sweep_expired(NOW + HOUR).expect("sweep"), 0);
        assert!(s.get_by_hash(&m.hash, NOW + HOUR).expect("get").is_some());
    }

    #[test]
    fn per_account_isolation() {
        let dir = tempdir();
        let s = open(&dir);
        let (a, b) = (account(1), account(2));
        let ma = msg(&a, 0, b"same body", NOW, NOW + HOUR);
        let mb = msg(&b, 0, b"same body", NOW, NOW + HOUR);
        s.store(&ma, NOW).expect("store");
        s.store(&mb, NOW).expect("store");
        let ra = s
            .retrieve(&a, Namespace(0), None, 100, BIG, NOW)
            .expect("r");
        let rb = s
            .retrieve(&b, Namespace(0), None, 100, BIG, NOW)
            .expect("r");
        assert_eq!(ra.messages, vec![ma.clone()]);
        assert_eq!(rb.messages, vec![mb.clone()]);
        // b cannot delete or expire a's message.
        assert!(
            s.delete_hashes(&b, std::slice::from_ref(&ma.hash), NOW)
                .expect("d")
                .is_empty()
        );
        assert!(
            s.get_expiries(&b, std::slice::from_ref(&ma.hash), NOW)
                .expect("g")
                .is_empty()
        );
        assert_eq!(s.stats().accounts, 2);
    }

    #[test]
    fn public_outbox_keeps_only_the_latest_store() {
        let dir = tempdir();
        let s = open(&dir);
        let a = account(1);
        let ns = Namespace(-21);
        let first = msg(&a, ns.0, b"v1", NOW, NOW + HOUR);
        let second = msg(&a, ns.0, b"v2", NOW + 1, NOW + HOUR);
        let other_ns = msg(&a, 0, b"v1", NOW, NOW + HOUR);
        s.store(&first, NOW).expect("store");
        s.store(&other_ns, NOW).expect("store");
        assert_eq!(s.store(&second, NOW).expect("store"), StoreOutcome::New);
        let r = s.retrieve(&a, ns, None, 100, BIG, NOW).expect("r");
        assert_eq!(r.messages, vec![second.clone()]);
        assert!(s.get_by_hash(&first.hash, NOW).expect("g").is_none());
        assert!(s.get_by_hash(&other_ns.hash, NOW).expect("g").is_some());
        // Re-storing the current message keeps it.
        assert_eq!(s.store(&second, NOW).expect("store"), StoreOutcome::Exists);
        assert_eq!(s.stats().messages, 2);
    }

    #[test]
    fn a_replicated_copy_never_changes_an_existing_message() {
        let dir = tempdir();
        let s = open(&dir);
        let a = account(1);
        let m = msg(&a, 0, b"x", NOW, NOW + 2 * HOUR);
        s.store(&m, NOW).expect("store");
        // A client shortened it here (`expire` with `shorten`).
        s.update_expiry(
            &a,
            std::slice::from_ref(&m.hash),
            NOW + HOUR,
            crate::store::ExpireMode::ShortenOnly,
            NOW,
        )
        .expect("shorten");
        // A peer that missed the shortening pushes its copy with the old expiry.
        assert_eq!(
            s.bulk_store(std::slice::from_ref(&m), NOW).expect("bulk"),
            0
        );
        let got = s.get_by_hash(&m.hash, NOW).expect("get").expect("present");
        assert_eq!(got.expiry_ms, NOW + HOUR, "the client's shortening stands");
    }

    #[test]
    fn bulk_outbox_newest_timestamp_wins() {
        let dir = tempdir();
        let s = open(&dir);
        let a = account(1);
        let newer = msg(&a, -1, b"new", NOW + 5, NOW + HOUR);
        let older = msg(&a, -1, b"old", NOW, NOW + HOUR);
        assert_eq!(s.bulk_store(&[newer.clone(), older], NOW).expect("bulk"), 1);
        let r = s
            .retrieve(&a, Namespace(-1), None, 10, BIG, NOW)
            .expect("r");
        assert_eq!(r.messages, vec![newer]);
    }

    #[test]
    fn bulk_store_with_overlap() {
        let dir = tempdir();
        let s = open(&dir);
        let a = account(3);
        let ms: Vec<_> = (0..10u8)
            .map(|i| msg(&a, 0, &[i; 10], NOW, NOW + HOUR))
            .collect();
        assert_eq!(s.bulk_store(&ms[..6], NOW).expect("bulk"), 6);
        // 4..10 overlaps 4 and 5; a duplicate inside the batch counts once; expired skipped.
        let mut second = ms[4..].to_vec();
        second.push(ms[9].clone());
        second.push(msg(&a, 0, b"dead", NOW - 10, NOW));
        let raised = Message {
            expiry_ms: NOW + 3 * HOUR,
            ..ms[0].clone()
        };
        let lowered = Message {
            expiry_ms: NOW + 1,
            ..ms[1].clone()
        };
        second.push(raised);
        second.push(lowered);
        assert_eq!(s.bulk_store(&second, NOW).expect("bulk"), 4);
        let r = s
            .retrieve(&a, Namespace(0), None, 100, BIG, NOW)
            .expect("r");
        assert_eq!(r.messages.len(), 10);
        let exp = s
            .get_expiries(&a, &[ms[0].hash.clone(), ms[1].hash.clone()], NOW)
            .expect("exp");
        // A copy without history is taken as a second store of the same content: a later
        // expiry raises the stored one, an earlier one changes nothing (only a client's
        // request, in a history, can lower it).
        assert_eq!(exp[&ms[0].hash], NOW + 3 * HOUR);
        assert_eq!(exp[&ms[1].hash], NOW + HOUR);
        assert_eq!(s.stats().messages, 10);
    }

    #[test]
    fn scan_visits_everything_in_pages() {
        let dir = tempdir();
        let s = open(&dir);
        let mut all = Vec::new();
        for acc in 0..5u8 {
            for i in 0..7u8 {
                let m = msg(&account(acc), i16::from(i % 3), &[acc, i], NOW, NOW + HOUR);
                s.store(&m, NOW).expect("store");
                all.push(m.hash);
            }
        }
        s.store(&msg(&account(9), 0, b"expired", NOW - 20, NOW), NOW)
            .expect("store");
        let mut seen = Vec::new();
        let mut cursor: Option<Vec<u8>> = None;
        let mut pages = 0;
        loop {
            let next = s
                .scan(cursor.as_deref(), 4, NOW, |m| seen.push(m.hash.clone()))
                .expect("scan");
            pages += 1;
            match next {
                Some(c) => cursor = Some(c),
                None => break,
            }
        }
        assert_eq!(pages, 9);
        seen.sort();
        all.sort();
        assert_eq!(seen, all);
    }

    #[test]
    fn concurrent_stores_from_many_threads() {
        let dir = tempdir();
        let s = open(&dir);
        const THREADS: u8 = 4;
        const PER_THREAD: u32 = 300;
        let shared = msg(&account(200), 0, b"everyone stores this", NOW, NOW + HOUR);
        let outcomes: Vec<Vec<StoreOutcome>> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..THREADS)
                .map(|t| {
                    let s = s.clone();
                    let shared = shared.clone();
                    scope.spawn(move || {
                        let mut out = Vec::new();
                        for i in 0..PER_THREAD {
                            // Accounts 0..8 are shared between threads; bodies are unique.
                            let acc = account((i % 8) as u8);
                            let body = [[t].as_slice(), &i.to_be_bytes()].concat();
                            let m = msg(&acc, 0, &body, NOW + i64::from(i), NOW + HOUR);
                            assert_eq!(s.store(&m, NOW).expect("store"), StoreOutcome::New);
                            out.push(s.store(&shared, NOW).expect("store shared"));
                        }
                        out
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("thread"))
                .collect()
        });
        let news = outcomes
            .iter()
            .flatten()
            .filter(|o| **o == StoreOutcome::New)
            .count();
        assert_eq!(news, 1, "the shared message is new exactly once");
        let total = u64::from(THREADS) * u64::from(PER_THREAD) + 1;
        let st = s.stats();
        assert_eq!((st.messages, st.accounts), (total, 9));
        let mut seen = 0;
        for a in 0..8u8 {
            let r = s
                .retrieve(&account(a), Namespace(0), None, 0, BIG, NOW)
                .expect("r");
            // Each thread's messages to one account appear in the order it stored them.
            for t in 0..THREADS {
                let own: Vec<i64> = r
                    .messages
                    .iter()
                    .filter(|m| m.data[0] == t)
                    .map(|m| m.timestamp_ms)
                    .collect();
                assert!(own.windows(2).all(|w| w[0] < w[1]));
            }
            seen += r.messages.len();
        }
        assert_eq!(seen as u64, total - 1);
        // Counters on disk agree with the live ones after a reopen.
        drop(s);
        let st2 = open(&dir).stats();
        assert_eq!(
            (st2.messages, st2.data_bytes, st2.accounts),
            (st.messages, st.data_bytes, st.accounts)
        );
    }

    use super::super::StoreOutcome;
    use crate::message::Message;
}
