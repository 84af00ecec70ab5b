//! Paged reads of one account+namespace (`retrieve`), with the protocol's size accounting.
//!
//! Owns the paging rules of storage-server.md 1.5: insertion order, `last_hash` cursor,
//! count and size budgets, `more`. One account+namespace is one contiguous key range, so the
//! cost depends on the page, not on how many messages the store holds. Must not resolve the
//! RPC's 0/negative `max_size` forms (the caller passes the budget in bytes).

use super::db::Store;
use super::keys::{self, Record};
use super::{Retrieved, StoreError};
use crate::message::{AccountId, Namespace};

/// Fixed per-message overhead the original's DB accounting adds (storage-server.md 1.5).
const PER_MESSAGE_OVERHEAD: i64 = 100;

/// The size a message counts for against `max_size`: `100 + len(hash) + len(data)*4/3`
/// (integer math; the base64 size even when the transport is binary).
pub(super) fn accounted_size(rec: &Record<'_>) -> i64 {
    PER_MESSAGE_OVERHEAD + rec.hash.len() as i64 + (rec.data.len() as i64) * 4 / 3
}

impl Store {
    /// Paged read of one account+namespace in insertion order, after `last_hash` (unknown,
    /// or another account's/namespace's hash, or `None` → from the start). Stops *before*
    /// the message that would push the running size over `max_size` bytes, but returns at
    /// least one message when any remain; at most `max_count` messages (0 = no count limit,
    /// as the protocol's "unset"); `more` tells that the page was truncated. Expired messages
    /// are skipped even before the sweep removes them.
    pub fn retrieve(
        &self,
        account: &AccountId,
        ns: Namespace,
        last_hash: Option<&str>,
        max_count: usize,
        max_size: i64,
        now_ms: i64,
    ) -> Result<Retrieved, StoreError> {
        self.page(
            account,
            ns,
            last_hash,
            Budget::new(max_count, max_size),
            Direction::OldestFirst,
            now_ms,
        )
    }

    /// `retrieve` with `reverse_direction` (upstream 2.9+): newest first, and `last_hash`
    /// pages backwards (only messages older than it). An unknown `last_hash` (or `None`)
    /// starts at the newest; budgets and `more` as `retrieve`.
    pub fn retrieve_newest_first(
        &self,
        account: &AccountId,
        ns: Namespace,
        last_hash: Option<&str>,
        max_count: usize,
        max_size: i64,
        now_ms: i64,
    ) -> Result<Retrieved, StoreError> {
        self.page(
            account,
            ns,
            last_hash,
            Budget::new(max_count, max_size),
            Direction::NewestFirst,
            now_ms,
        )
    }

    fn page(
        &self,
        account: &AccountId,
        ns: Namespace,
        last_hash: Option<&str>,
        mut budget: Budget,
        direction: Direction,
        now_ms: i64,
    ) -> Result<Retrieved, StoreError> {
        let prefix = keys::account_ns_prefix(account, ns);
        // The cursor is a position, so it counts even if that message has just expired; one
        // of another account or namespace is unknown here.
        let cursor = match last_hash.filter(|h| !h.is_empty()) {
            Some(h) => self
                .inner
                .find_hash_key(h)?
                .filter(|key| key.starts_with(&prefix)),
            None => None,
        };
        let mut out = Retrieved::default();
        let mut take = |k: &[u8], v: &[u8]| -> Result<bool, StoreError> {
            let rec = Record::decode(v)?;
            if rec.is_expired(now_ms) {
                return Ok(true);
            }
            if !budget.admit(&rec, out.messages.len()) {
                out.more = true;
                return Ok(false);
            }
            out.messages
                .push(rec.to_message(&keys::parse_message_key(k)?));
            Ok(true)
        };
        match direction {
            Direction::OldestFirst => {
                let lower = match cursor {
                    Some(mut key) => {
                        key.push(0);
                        key
                    }
                    None => prefix.to_vec(),
                };
                self.inner.iterate_account_ns(&prefix, &lower, &mut take)?;
            }
            Direction::NewestFirst => {
                self.inner
                    .iterate_account_ns_rev(&prefix, cursor.as_deref(), &mut take)?;
            }
        }
        Ok(out)
    }
}

/// Which end of an account+namespace a page starts from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    OldestFirst,
    NewestFirst,
}

/// The count and size budget of one page.
struct Budget {
    max_count: usize,
    max_size: i64,
    used: i64,
}

impl Budget {
    fn new(max_count: usize, max_size: i64) -> Budget {
        Budget {
            max_count: if max_count == 0 {
                usize::MAX
            } else {
                max_count
            },
            max_size,
            used: 0,
        }
    }

    /// Whether the page, holding `taken` messages, may take `rec` too. Stops *before* the
    /// message that would push the size over the budget, but a page always takes one.
    fn admit(&mut self, rec: &Record<'_>, taken: usize) -> bool {
        let size = accounted_size(rec);
        let over_size = taken > 0 && self.used.saturating_add(size) > self.max_size;
        if taken >= self.max_count || over_size {
            return false;
        }
        self.used = self.used.saturating_add(size);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_util::*;
    use super::super::{Retrieved, StoreError};
    use crate::message::{Message, Namespace, RETRIEVE_MAX_SIZE};

    /// Every message of a paged read, page after page: each page's cursor is the last hash of
    /// the page before, until one says there is no more.
    fn walk(mut page: impl FnMut(Option<&str>) -> Result<Retrieved, StoreError>) -> Vec<Message> {
        let mut got = Vec::new();
        let mut last: Option<String> = None;
        loop {
            let r = page(last.as_deref()).expect("retrieve");
            got.extend(r.messages.iter().cloned());
            last = r.messages.last().map(|m| m.hash.clone());
            if !r.more {
                return got;
            }
        }
    }

    #[test]
    fn last_hash_paging_over_100_messages() {
        let dir = tempdir();
        let s = open(&dir);
        let a = account(1);
        let ms: Vec<_> = (0..100u32)
            .map(|i| msg(&a, 0, &i.to_be_bytes(), NOW + i64::from(i), NOW + HOUR))
            .collect();
        for m in &ms {
            s.store(m, NOW).expect("store");
        }
        // Pages of 7 by last_hash walk through all 100 in insertion order.
        let got = walk(|last| s.retrieve(&a, Namespace(0), last, 7, BIG, NOW));
        assert_eq!(got, ms);
        // Every position: after message i come messages i+1.. .
        for i in [0usize, 1, 50, 98] {
            let r = s
                .retrieve(&a, Namespace(0), Some(&ms[i].hash), 1000, BIG, NOW)
                .expect("retrieve");
            assert_eq!(r.messages, ms[i + 1..].to_vec());
            assert!(!r.more);
        }
        // The last hash → nothing; an unknown hash or one of another namespace → start.
        let r = s
            .retrieve(&a, Namespace(0), Some(&ms[99].hash), 10, BIG, NOW)
            .expect("r");
        assert!(r.messages.is_empty() && !r.more);
        let unknown = "A".repeat(43);
        let r = s
            .retrieve(&a, Namespace(0), Some(&unknown), 1, BIG, NOW)
            .expect("r");
        assert_eq!(r.messages, vec![ms[0].clone()]);
        assert!(r.more);
        let other = msg(&a, 5, b"elsewhere", NOW, NOW + HOUR);
        s.store(&other, NOW).expect("store");
        let r = s
            .retrieve(&a, Namespace(0), Some(&other.hash), 1, BIG, NOW)
            .expect("r");
        assert_eq!(r.messages, vec![ms[0].clone()]);
        let r = s
            .retrieve(&a, Namespace(0), Some(""), 1, BIG, NOW)
            .expect("r");
        assert_eq!(r.messages, vec![ms[0].clone()]);
    }

    #[test]
    fn newest_first_pages_backwards_without_skips_or_repeats() {
        let dir = tempdir();
        let s = open(&dir);
        let a = account(1);
        let ms: Vec<_> = (0..50u32)
            .map(|i| msg(&a, 0, &i.to_be_bytes(), NOW + i64::from(i), NOW + HOUR))
            .collect();
        for m in &ms {
            s.store(m, NOW).expect("store");
        }
        // Neighbours in key order must never leak in: another namespace and another account.
        s.store(&msg(&a, 5, b"other ns", NOW, NOW + HOUR), NOW)
            .expect("store");
        s.store(&msg(&account(2), 0, b"other account", NOW, NOW + HOUR), NOW)
            .expect("store");
        let mut want = ms.clone();
        want.reverse();
        // Pages of 7 from the newest, each `last_hash` the oldest of the previous page.
        let got = walk(|last| s.retrieve_newest_first(&a, Namespace(0), last, 7, BIG, NOW));
        assert_eq!(got, want);
        // Before message i come messages i-1 … 0; before the oldest, nothing.
        let r = s
            .retrieve_newest_first(&a, Namespace(0), Some(&ms[10].hash), 1000, BIG, NOW)
            .expect("r");
        assert_eq!(r.messages, want[40..].to_vec());
        assert!(!r.more);
        let r = s
            .retrieve_newest_first(&a, Namespace(0), Some(&ms[0].hash), 10, BIG, NOW)
            .expect("r");
        assert!(r.messages.is_empty() && !r.more);
        // Unknown, empty or another namespace's cursor → from the newest.
        for cursor in ["A".repeat(43), String::new()] {
            let r = s
                .retrieve_newest_first(&a, Namespace(0), Some(&cursor), 1, BIG, NOW)
                .expect("r");
            assert_eq!(r.messages, vec![ms[49].clone()]);
            assert!(r.more);
        }
        // Expired messages are skipped; the size budget stops before the message that would
        // exceed it but takes at least one.
        let r = s
            .retrieve_newest_first(&a, Namespace(0), None, 0, 1, NOW + 2 * HOUR)
            .expect("r");
        assert!(r.messages.is_empty() && !r.more);
        let r = s
            .retrieve_newest_first(&a, Namespace(0), None, 0, 1, NOW)
            .expect("r");
        assert_eq!(r.messages, vec![ms[49].clone()]);
        assert!(r.more);
    }

    #[test]
    fn paging_across_sst_files_and_memtable() {
        // The prefix bloom must never hide messages: spread one account+namespace (and its
        // neighbours in key order) over several flushed SST files and the memtable.
        let dir = tempdir();
        let s = open(&dir);
        let a = account(7);
        let mut want = Vec::new();
        for round in 0..4u8 {
            for ns in [-1i16, 0, 1] {
                for acc in [account(6), a, account(8)] {
                    let m = msg(&acc, ns, &[round, ns as u8, acc.key[1]], NOW, NOW + HOUR);
                    s.store(&m, NOW).expect("store");
                    if acc == a && ns == 0 {
                        want.push(m);
                    }
                }
            }
            if round < 3 {
                s.flush().expect("flush");
            }
        }
        let r = s
            .retrieve(&a, Namespace(0), None, 0, BIG, NOW)
            .expect("retrieve");
        assert_eq!(r.messages, want);
        for (i, m) in want.iter().enumerate() {
            let r = s
                .retrieve(&a, Namespace(0), Some(&m.hash), 2, BIG, NOW)
                .expect("retrieve");
            let rest: Vec<_> = want[i + 1..].iter().take(2).cloned().collect();
            assert_eq!(r.messages, rest);
            assert_eq!(r.more, want.len() > i + 3);
        }
        let r = s
            .retrieve(&account(9), Namespace(0), None, 0, BIG, NOW)
            .expect("retrieve");
        assert!(r.messages.is_empty());
    }

    #[test]
    fn retrieve_count_limits() {
        // storage.cpp: 100 stored → limit 10/88/99/100/101 → 10/88/99/100/100.
        let dir = tempdir();
        let s = open(&dir);
        let a = account(2);
        for i in 0..100u32 {
            s.store(&msg(&a, 0, &i.to_le_bytes(), NOW, NOW + HOUR), NOW)
                .expect("store");
        }
        for (limit, want, more) in [
            (10, 10, true),
            (88, 88, true),
            (99, 99, true),
            (100, 100, false),
            (101, 100, false),
            (0, 100, false),
        ] {
            let r = s
                .retrieve(&a, Namespace(0), None, limit, BIG, NOW)
                .expect("retrieve");
            assert_eq!(r.messages.len(), want, "limit {limit}");
            assert_eq!(r.more, more, "limit {limit}");
        }
    }

    #[test]
    fn retrieve_size_figures() {
        // network-tests/test_big_retrieve.py: 70 000-byte messages count 93 476 bytes each.
        let dir = tempdir();
        let s = open(&dir);
        let a = account(3);
        for i in 0..100u32 {
            let mut data = vec![0u8; 70_000];
            data[..4].copy_from_slice(&i.to_be_bytes());
            s.store(&msg(&a, 0, &data, NOW, NOW + HOUR), NOW)
                .expect("store");
        }
        let rec_size = 100 + 43 + 70_000 * 4 / 3;
        assert_eq!(rec_size, 93_476);
        for (budget, want) in [
            (RETRIEVE_MAX_SIZE / 5, 16),
            (RETRIEVE_MAX_SIZE / 3, 27),
            (RETRIEVE_MAX_SIZE, 83),
            (500_000, 5),
            (600_000, 6),
        ] {
            let r = s
                .retrieve(&a, Namespace(0), None, 100, budget, NOW)
                .expect("retrieve");
            assert_eq!(r.messages.len(), want, "budget {budget}");
            assert!(r.more);
        }
        // max_count 100 with the full budget: still 83 (size binds first).
        let r = s
            .retrieve(&a, Namespace(0), None, 100, RETRIEVE_MAX_SIZE, NOW)
            .expect("retrieve");
        assert_eq!(r.messages.len(), 83);
        // A budget smaller than one message still returns one.
        let r = s.retrieve(&a, Namespace(0), None, 100, 1, NOW).expect("r");
        assert_eq!(r.messages.len(), 1);
        assert!(r.more);
    }

    #[test]
    fn expired_never_returned_and_swept() {
        let dir = tempdir();
        let s = open(&dir);
        let a = account(4);
        let short = msg(&a, 0, b"short", NOW, NOW + 10_000);
        let long = msg(&a, 0, b"long", NOW, NOW + HOUR);
        s.store(&short, NOW).expect("store");
        s.store(&long, NOW).expect("store");
        let later = NOW + 10_000;
        // Not yet swept, already invisible everywhere.
        let r = s
            .retrieve(&a, Namespace(0), None, 10, BIG, later)
            .expect("r");
        assert_eq!(r.messages, vec![long.clone()]);
        assert!(s.get_by_hash(&short.hash, later).expect("g").is_none());
        assert!(
            s.get_expiries(&a, std::slice::from_ref(&short.hash), later)
                .expect("g")
                .is_empty()
        );
        let mut seen = 0;
        s.scan(None, 100, later, |_| seen += 1).expect("scan");
        assert_eq!(seen, 1);
        assert_eq!(s.stats().messages, 2);
        // A count limit of 1 is not "used up" by the expired message: more is exact.
        let r = s
            .retrieve(&a, Namespace(0), None, 1, BIG, later)
            .expect("r");
        assert_eq!((r.messages.len(), r.more), (1, false));
        assert_eq!(s.sweep_expired(later - 1).expect("sweep"), 0);
        assert_eq!(s.sweep_expired(later).expect("sweep"), 1);
        assert_eq!(s.sweep_expired(later).expect("sweep"), 0);
        let st = s.stats();
        assert_eq!((st.messages, st.data_bytes, st.accounts), (1, 4, 1));
        assert_eq!(s.sweep_expired(NOW + HOUR).expect("sweep"), 1);
        let st = s.stats();
        assert_eq!((st.messages, st.data_bytes, st.accounts), (0, 0, 0));
    }
}
