//! Client deletions: by hash (`delete`), by namespace (`delete_all`) and by timestamp
//! (`delete_before`).
//!
//! Owns which messages each method removes and the sorted lists the RPC signs. Deletes are
//! never refused by the size cap (they are how a full node recovers). Every live message a
//! client deletes leaves a tombstone (`tombstones.rs`), and so does a hash deleted before its
//! message arrived. Must not write outside
//! an [`AccountTxn`](super::txn::AccountTxn).

use super::StoreError;
use super::db::{CF_MESSAGES, Store};
use super::keys::{self, Record};
use crate::message::{AccountId, Namespace, NamespaceSel};
use std::collections::BTreeSet;

/// The key prefix covering `sel` of `account`.
pub(super) fn selection_prefix(account: &AccountId, sel: NamespaceSel) -> Vec<u8> {
    match sel {
        NamespaceSel::One(ns) => keys::account_ns_prefix(account, ns).to_vec(),
        NamespaceSel::All => account.to_bytes().to_vec(),
    }
}

impl Store {
    /// Deletes those of `hashes` that `account` owns (in any namespace), as accepted by the
    /// swarm at `now_ms`; returns the deleted hashes sorted. Foreign hashes are ignored;
    /// unknown ones get an unheld tombstone (`tombstones.rs`), so that the message, should it
    /// arrive later, is not stored (up to the account's cap; past it they are ignored).
    pub fn delete_hashes(
        &self,
        account: &AccountId,
        hashes: &[String],
        now_ms: i64,
    ) -> Result<Vec<String>, StoreError> {
        let wanted: BTreeSet<&str> = hashes.iter().map(String::as_str).collect();
        let mut txn = self.inner.begin(account);
        let mut deleted = Vec::new();
        let mut capped = 0usize;
        for h in wanted {
            match txn.lookup(h)? {
                Some((key, value)) if key.starts_with(&account.to_bytes()) => {
                    let rec = Record::decode(&value)?;
                    txn.delete(&key, &rec)?;
                    txn.tombstone(&rec, now_ms)?;
                    deleted.push(h.to_string());
                }
                Some(_) => {}
                None => {
                    if !txn.tombstone_unheld(h, now_ms)? {
                        capped += 1;
                    }
                }
            }
            txn.maybe_flush()?;
        }
        txn.commit()?;
        if capped > 0 {
            tracing::debug!(capped, "account at its cap of unheld tombstones");
        }
        Ok(deleted)
    }

    /// Deletes every message of one namespace or of all of them. Returns the deleted live
    /// messages as (namespace, hash) sorted by (namespace, hash); already-expired ones are
    /// removed too but not reported (they were invisible already).
    pub fn delete_all(
        &self,
        account: &AccountId,
        sel: NamespaceSel,
        now_ms: i64,
    ) -> Result<Vec<(Namespace, String)>, StoreError> {
        self.delete_where(account, sel, now_ms, |_| true)
    }

    /// Deletes the messages whose (client) timestamp is `<= before_ms`; returns the deleted
    /// live ones as (namespace, hash) sorted. Unlike SS 2.8, whose all-namespace statement
    /// returns hashes only and fails with a 500 (storage-server.md 1.5), both are returned.
    pub fn delete_before(
        &self,
        account: &AccountId,
        sel: NamespaceSel,
        before_ms: i64,
        now_ms: i64,
    ) -> Result<Vec<(Namespace, String)>, StoreError> {
        self.delete_where(account, sel, now_ms, |rec| rec.timestamp_ms <= before_ms)
    }

    /// Deletes the messages of `sel` matching `pred`, reporting the live ones.
    fn delete_where(
        &self,
        account: &AccountId,
        sel: NamespaceSel,
        now_ms: i64,
        pred: impl Fn(&Record<'_>) -> bool,
    ) -> Result<Vec<(Namespace, String)>, StoreError> {
        let prefix = selection_prefix(account, sel);
        let mut txn = self.inner.begin(account);
        let mut deleted = Vec::new();
        // The iterator reads a snapshot taken under the lock, so flushing mid-way is safe.
        self.inner
            .iterate(CF_MESSAGES, &prefix, keys::prefix_end(&prefix), |k, v| {
                let rec = Record::decode(v)?;
                if pred(&rec) {
                    txn.delete(k, &rec)?;
                    if !rec.is_expired(now_ms) {
                        // So a replicated copy never brings it back (`tombstones.rs`).
                        txn.tombstone(&rec, now_ms)?;
                        let ns = keys::parse_message_key(k)?.namespace;
                        deleted.push((ns, rec.hash.to_string()));
                    }
                    txn.maybe_flush()?;
                }
                Ok(true)
            })?;
        txn.commit()?;
        deleted.sort();
        Ok(deleted)
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_util::*;
    use crate::message::{Namespace, NamespaceSel};

    fn fill(s: &super::Store) -> Vec<crate::message::Message> {
        let a = account(1);
        let mut ms = Vec::new();
        for (i, ns) in [0i16, 0, 3, 3, -10, 42].iter().enumerate() {
            let m = msg(&a, *ns, &[i as u8; 3], NOW + i as i64 * 1000, NOW + HOUR);
            s.store(&m, NOW).expect("store");
            ms.push(m);
        }
        // Another account's messages are never touched.
        s.store(&msg(&account(2), 0, b"other", NOW, NOW + HOUR), NOW)
            .expect("store");
        ms
    }

    #[test]
    fn delete_hashes_only_owned_sorted() {
        let dir = tempdir();
        let s = open(&dir);
        let ms = fill(&s);
        let a = account(1);
        let req = vec![
            ms[3].hash.clone(),
            ms[0].hash.clone(),
            "B".repeat(43),
            ms[0].hash.clone(),
        ];
        let mut want = vec![ms[0].hash.clone(), ms[3].hash.clone()];
        want.sort();
        assert_eq!(s.delete_hashes(&a, &req, NOW).expect("delete"), want);
        assert!(s.delete_hashes(&a, &req, NOW).expect("delete").is_empty());
        assert_eq!(s.stats().messages, 5);
        assert!(s.get_by_hash(&ms[0].hash, NOW).expect("g").is_none());
        assert!(s.get_by_hash(&ms[1].hash, NOW).expect("g").is_some());
    }

    #[test]
    fn delete_all_one_and_all_namespaces() {
        let dir = tempdir();
        let s = open(&dir);
        let ms = fill(&s);
        let a = account(1);
        let mut want: Vec<_> = ms[2..4]
            .iter()
            .map(|m| (Namespace(3), m.hash.clone()))
            .collect();
        want.sort();
        let got = s
            .delete_all(&a, NamespaceSel::One(Namespace(3)), NOW)
            .expect("delete_all");
        assert_eq!(got, want);
        let got = s
            .delete_all(&a, NamespaceSel::All, NOW)
            .expect("delete_all");
        let mut want: Vec<_> = [0usize, 1, 4, 5]
            .iter()
            .map(|&i| (ms[i].namespace, ms[i].hash.clone()))
            .collect();
        want.sort();
        assert_eq!(got, want);
        assert_eq!(got[0].0, Namespace(-10));
        let st = s.stats();
        assert_eq!((st.messages, st.accounts), (1, 1));
        assert!(
            s.delete_all(&a, NamespaceSel::All, NOW)
                .expect("d")
                .is_empty()
        );
    }

    #[test]
    fn delete_before_by_timestamp() {
        let dir = tempdir();
        let s = open(&dir);
        let ms = fill(&s);
        let a = account(1);
        // Timestamps are NOW + i*1000: "<= NOW + 2000" catches i = 0, 1, 2.
        let got = s
            .delete_before(&a, NamespaceSel::All, NOW + 2000, NOW)
            .expect("delete_before");
        let mut want: Vec<_> = ms[..3]
            .iter()
            .map(|m| (m.namespace, m.hash.clone()))
            .collect();
        want.sort();
        assert_eq!(got, want);
        let got = s
            .delete_before(&a, NamespaceSel::One(Namespace(42)), NOW + 4000, NOW)
            .expect("delete_before");
        assert!(got.is_empty());
        let got = s
            .delete_before(&a, NamespaceSel::One(Namespace(42)), NOW + 5000, NOW)
            .expect("delete_before");
        assert_eq!(got, vec![(Namespace(42), ms[5].hash.clone())]);
        assert_eq!(s.stats().messages, 3);
    }

    #[test]
    fn deleting_expired_messages_reports_nothing() {
        let dir = tempdir();
        let s = open(&dir);
        let a = account(1);
        s.store(&msg(&a, 0, b"e", NOW, NOW + 1000), NOW)
            .expect("store");
        let got = s
            .delete_all(&a, NamespaceSel::All, NOW + 1000)
            .expect("delete");
        assert!(got.is_empty());
        assert_eq!(s.stats().messages, 0);
    }
}
