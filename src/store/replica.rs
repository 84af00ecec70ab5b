//! What replication reads and deletes: message metadata for anti-entropy digests, the
//! messages of one hash bucket, accounts page by page for the hand-off, and deletions by hash
//! whatever the owner (with or without tombstones).
//!
//! Owns the hash-bucket mapping (first byte of the base64-decoded hash) and how a bucket maps
//! onto key ranges: a hash is stored as its base64 text, and one bucket is exactly the hashes
//! whose first two characters are `ALPHABET[b >> 2]` followed by one of 16 characters, so a
//! bucket is 16 short prefix scans of the hash index, never a scan of everything. Must not
//! know the swarm: callers pass ownership as a predicate over accounts.

use super::StoreError;
use super::db::{CF_ACCOUNTS, CF_HASHES, CF_MESSAGES, Store};
use super::keys::{self, ACCOUNT_LEN, Record};
use crate::message::{AccountId, Message, Namespace};
use std::collections::BTreeMap;

/// The standard base64 alphabet, in value order.
const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// The value of one base64 character.
fn b64_value(c: u8) -> Option<u8> {
    ALPHABET.iter().position(|&a| a == c).map(|p| p as u8)
}

/// The anti-entropy bucket of a hash: the first byte of its base64 decoding, or `None` when
/// the hash does not start with two base64 characters (no valid hash does that).
pub fn hash_bucket(hash: &str) -> Option<u8> {
    let b = hash.as_bytes();
    let (c0, c1) = (b64_value(*b.first()?)?, b64_value(*b.get(1)?)?);
    Some(c0 << 2 | c1 >> 4)
}

/// The 16 two-character prefixes whose hashes fall in `bucket`.
fn bucket_prefixes(bucket: u8) -> [[u8; 2]; 16] {
    let first = ALPHABET[usize::from(bucket >> 2)];
    let base = usize::from(bucket & 3) << 4;
    let mut out = [[0u8; 2]; 16];
    for (k, p) in out.iter_mut().enumerate() {
        *p = [first, ALPHABET[base + k]];
    }
    out
}

/// A stored message without its body: what digests and bucket listings need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MessageMeta<'a> {
    /// Owner.
    pub account: AccountId,
    /// Namespace.
    pub namespace: Namespace,
    /// The hash.
    pub hash: &'a str,
    /// Client timestamp (ms).
    pub timestamp_ms: i64,
    /// Expiry (ms).
    pub expiry_ms: i64,
    /// The latest expiry another member's copy could have: `expiry_ms`, unless a client's
    /// request moved it (`ExpiryLog::horizon`). Anti-entropy reconciles the message until
    /// then, so that a copy that missed a shortening learns it even when the shortened
    /// expiry is too close for the copy to be in scope.
    pub horizon_ms: i64,
    /// A husk: the history the sweep kept of a shortened message, without its body.
    pub husk: bool,
}

impl Store {
    /// Calls `f` for every stored message (expired or not: the caller decides), without
    /// copying bodies. One pass over a consistent snapshot.
    pub fn visit_meta(&self, mut f: impl FnMut(&MessageMeta<'_>)) -> Result<(), StoreError> {
        let mut last: Option<(Vec<u8>, AccountId)> = None;
        self.inner.scan(CF_MESSAGES, &[], None, |k, v| {
            let rec = Record::decode(v)?;
            let key = keys::parse_message_key(k)?;
            // Keys group an account's messages, so the account decodes once per account.
            let account = match &last {
                Some((prefix, a)) if k.starts_with(prefix) => *a,
                _ => {
                    last = Some((k[..ACCOUNT_LEN].to_vec(), key.account));
                    key.account
                }
            };
            f(&MessageMeta {
                account,
                namespace: key.namespace,
                hash: rec.hash,
                timestamp_ms: rec.timestamp_ms,
                expiry_ms: rec.expiry_ms,
                horizon_ms: rec.horizon(),
                husk: rec.husk,
            });
            Ok(true)
        })
    }

    /// Calls `f` for every stored message (expired or not) whose hash is in `bucket`.
    pub fn bucket_meta(
        &self,
        bucket: u8,
        mut f: impl FnMut(&MessageMeta<'_>),
    ) -> Result<(), StoreError> {
        for prefix in bucket_prefixes(bucket) {
            let mut found: Vec<Vec<u8>> = Vec::new();
            self.inner
                .iterate(CF_HASHES, &prefix, keys::prefix_end(&prefix), |_, v| {
                    found.push(v.to_vec());
                    Ok(true)
                })?;
            for mk in found {
                let Some(value) = self.inner.get(CF_MESSAGES, &mk, "read bucket message")? else {
                    continue;
                };
                let rec = Record::decode(&value)?;
                let key = keys::parse_message_key(&mk)?;
                f(&MessageMeta {
                    account: key.account,
                    namespace: key.namespace,
                    hash: rec.hash,
                    timestamp_ms: rec.timestamp_ms,
                    expiry_ms: rec.expiry_ms,
                    horizon_ms: rec.horizon(),
                    husk: rec.husk,
                });
            }
        }
        Ok(())
    }

    /// The hashes in `bucket` that carry a tombstone still in force at `now_ms`.
    pub fn tombstones_in_bucket(&self, bucket: u8, now_ms: i64) -> Result<Vec<String>, StoreError> {
        let mut out = Vec::new();
        for prefix in bucket_prefixes(bucket) {
            self.tombstones_with_prefix(&prefix, now_ms, |h| out.push(h.to_string()))?;
        }
        Ok(out)
    }

    /// The stored messages among `hashes`, expired ones included and a husk as its history
    /// without a body ([`Message::is_history_only`]): what anti-entropy sends a member whose
    /// copy differs, which merges the histories.
    pub fn get_held(&self, hashes: &[String]) -> Result<Vec<Message>, StoreError> {
        let mut out = Vec::with_capacity(hashes.len());
        for h in hashes {
            if let Some((key, value)) = self.inner.find_hash(h)? {
                out.push(Record::decode(&value)?.to_message(&keys::parse_message_key(&key)?));
            }
        }
        Ok(out)
    }

    /// The live messages among `hashes` (unknown and expired ones are left out).
    pub fn get_live(&self, hashes: &[String], now_ms: i64) -> Result<Vec<Message>, StoreError> {
        let mut out = Vec::with_capacity(hashes.len());
        for h in hashes {
            if let Some(m) = self.get_by_hash(h, now_ms)? {
                out.push(m);
            }
        }
        Ok(out)
    }

    /// Deletes those of `hashes` that are stored, whatever their owner, leaving tombstones
    /// (anti-entropy: another member saw a client delete them). Returns (owner, namespace,
    /// hash) of each deleted message.
    pub fn delete_by_hashes_any(
        &self,
        hashes: &[String],
        now_ms: i64,
    ) -> Result<Vec<(AccountId, Namespace, String)>, StoreError> {
        self.delete_any(hashes, Some(now_ms))
    }

    /// Deletes those of `hashes` that are stored, whatever their owner, without tombstones:
    /// for the hand-off, whose data lives on at its new owners. Returns how many were deleted.
    pub fn drop_hashes(&self, hashes: &[String]) -> Result<u64, StoreError> {
        Ok(self.delete_any(hashes, None)?.len() as u64)
    }

    /// Deletes by hash, grouped per owner so each account's change is one locked batch;
    /// with tombstones dated `tombstone_ms` when given.
    fn delete_any(
        &self,
        hashes: &[String],
        tombstone_ms: Option<i64>,
    ) -> Result<Vec<(AccountId, Namespace, String)>, StoreError> {
        let mut by_account: BTreeMap<AccountId, Vec<&str>> = BTreeMap::new();
        for h in hashes {
            if let Some((key, _)) = self.inner.find_hash(h)? {
                let account = keys::parse_message_key(&key)?.account;
                by_account.entry(account).or_default().push(h);
            }
        }
        let mut out = Vec::new();
        for (account, group) in by_account {
            let mut txn = self.inner.begin(&account);
            for h in group {
                // Re-read under the lock: it may have gone (or been replaced) meanwhile.
                let Some((key, value)) = txn.lookup_owned(h)? else {
                    continue;
                };
                let rec = Record::decode(&value)?;
                txn.delete(&key, &rec)?;
                if let Some(at) = tombstone_ms {
                    txn.tombstone(&rec, at)?;
                }
                out.push((
                    account,
                    keys::parse_message_key(&key)?.namespace,
                    h.to_string(),
                ));
                txn.maybe_flush()?;
            }
            txn.commit()?;
        }
        Ok(out)
    }

    /// Up to `limit` accounts holding messages, in key order, starting after `after`.
    pub fn accounts_page(
        &self,
        after: Option<&AccountId>,
        limit: usize,
    ) -> Result<Vec<AccountId>, StoreError> {
        let lower = after
            .map(|a| [a.to_bytes().as_slice(), &[0u8]].concat())
            .unwrap_or_default();
        let mut out = Vec::new();
        self.inner.iterate(CF_ACCOUNTS, &lower, None, |k, _| {
            if out.len() >= limit.max(1) {
                return Ok(false);
            }
            out.push(AccountId::from_bytes(k).map_err(|_| StoreError::Corrupt {
                what: "account key",
            })?);
            Ok(true)
        })?;
        Ok(out)
    }

    /// Visits up to `limit` live messages of `account` (all namespaces) in key order, after
    /// the opaque cursor `after`. Returns the cursor to resume from, or `None` at the end.
    pub fn account_messages(
        &self,
        account: &AccountId,
        after: Option<&[u8]>,
        limit: usize,
        now_ms: i64,
        f: impl FnMut(Message),
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let prefix = account.to_bytes();
        let lower = match after {
            Some(a) => [a, &[0u8]].concat(),
            None => prefix.to_vec(),
        };
        self.scan_range(&lower, keys::prefix_end(&prefix), limit, now_ms, f)
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_util::*;
    use super::*;
    use crate::message::{NamespaceSel, b64_decode};
    use std::collections::HashSet;

    #[test]
    fn bucket_is_the_first_decoded_byte() {
        for i in 0..300u32 {
            let h = msg(
                &account((i % 7) as u8),
                0,
                &i.to_be_bytes(),
                NOW,
                NOW + HOUR,
            )
            .hash;
            let raw = b64_decode(&h).expect("base64");
            assert_eq!(hash_bucket(&h), Some(raw[0]));
            let prefix = [h.as_bytes()[0], h.as_bytes()[1]];
            assert!(bucket_prefixes(raw[0]).contains(&prefix));
        }
        assert_eq!(hash_bucket(""), None);
        assert_eq!(hash_bucket("A"), None);
        assert_eq!(hash_bucket("*A"), None);
        assert_eq!(hash_bucket("//"), Some(255));
        assert_eq!(hash_bucket("AA"), Some(0));
        // The 256 buckets partition the 4096 two-character prefixes.
        let mut all = HashSet::new();
        for b in 0..=255u8 {
            for p in bucket_prefixes(b) {
                assert_eq!(
                    hash_bucket(std::str::from_utf8(&p).expect("ascii")),
                    Some(b)
                );
                assert!(all.insert(p));
            }
        }
        assert_eq!(all.len(), 4096);
    }

    #[test]
    fn bucket_listing_matches_a_full_scan() {
        let dir = tempdir();
        let s = open(&dir);
        let ms: Vec<_> = (0..600u32)
            .map(|i| {
                msg(
                    &account((i % 5) as u8),
                    (i % 3) as i16,
                    &i.to_be_bytes(),
                    NOW,
                    NOW + HOUR,
                )
            })
            .collect();
        s.bulk_store(&ms, NOW).expect("bulk");
        let mut full: BTreeMap<u8, Vec<String>> = BTreeMap::new();
        s.visit_meta(|m| {
            full.entry(hash_bucket(m.hash).expect("bucket"))
                .or_default()
                .push(m.hash.to_string())
        })
        .expect("visit");
        assert_eq!(full.values().map(Vec::len).sum::<usize>(), 600);
        for b in 0..=255u8 {
            let mut listed = Vec::new();
            s.bucket_meta(b, |m| {
                assert_eq!(m.expiry_ms, NOW + HOUR);
                listed.push(m.hash.to_string())
            })
            .expect("bucket");
            listed.sort();
            let mut want = full.remove(&b).unwrap_or_default();
            want.sort();
            assert_eq!(listed, want, "bucket {b}");
        }
    }

    #[test]
    fn delete_any_owner_with_and_without_tombstones() {
        let dir = tempdir();
        let s = open(&dir);
        let a = msg(&account(1), 0, b"a", NOW, NOW + HOUR);
        let b = msg(&account(2), 3, b"b", NOW, NOW + HOUR);
        let c = msg(&account(2), 0, b"c", NOW, NOW + HOUR);
        for m in [&a, &b, &c] {
            s.store(m, NOW).expect("store");
        }
        let got = s
            .delete_by_hashes_any(&[b.hash.clone(), a.hash.clone(), "nope".into()], NOW)
            .expect("delete");
        let mut got_hashes: Vec<_> = got.iter().map(|(_, _, h)| h.clone()).collect();
        got_hashes.sort();
        let mut want = vec![a.hash.clone(), b.hash.clone()];
        want.sort();
        assert_eq!(got_hashes, want);
        assert!(got.contains(&(account(2), Namespace(3), b.hash.clone())));
        assert_eq!(s.tombstoned(&want).expect("t").len(), 2);
        // Hand-off deletions leave no tombstone: the data may come back legitimately.
        assert_eq!(
            s.drop_hashes(&[c.hash.clone(), c.hash.clone()])
                .expect("drop"),
            1
        );
        assert!(
            s.tombstoned(std::slice::from_ref(&c.hash))
                .expect("t")
                .is_empty()
        );
        assert_eq!(
            s.bulk_store(&[a.clone(), b.clone(), c.clone()], NOW)
                .expect("bulk"),
            1
        );
        assert_eq!(s.stats().messages, 1);
        let in_bucket = s
            .tombstones_in_bucket(hash_bucket(&a.hash).expect("b"), NOW)
            .expect("tombs");
        assert!(in_bucket.contains(&a.hash));
        assert!(
            s.tombstones_in_bucket(hash_bucket(&a.hash).expect("b"), NOW + HOUR)
                .expect("tombs")
                .is_empty(),
            "expired tombstones are not listed"
        );
    }

    #[test]
    fn accounts_and_their_messages_page_by_page() {
        let dir = tempdir();
        let s = open(&dir);
        for acc in 0..5u8 {
            for i in 0..7u8 {
                s.store(
                    &msg(&account(acc), i16::from(i % 2), &[acc, i], NOW, NOW + HOUR),
                    NOW,
                )
                .expect("store");
            }
        }
        s.store(&msg(&account(1), 0, b"old", NOW - 20, NOW), NOW)
            .expect("store");
        let mut accounts = Vec::new();
        let mut after: Option<AccountId> = None;
        loop {
            let page = s.accounts_page(after.as_ref(), 2).expect("page");
            let Some(last) = page.last().copied() else {
                break;
            };
            accounts.extend(page);
            after = Some(last);
        }
        let mut want: Vec<_> = (0..5u8).map(account).collect();
        want.sort();
        assert_eq!(accounts, want);
        let mut seen = Vec::new();
        let mut cursor: Option<Vec<u8>> = None;
        loop {
            let next = s
                .account_messages(&account(1), cursor.as_deref(), 3, NOW, |m| {
                    assert_eq!(m.account, account(1));
                    seen.push(m.hash)
                })
                .expect("messages");
            match next {
                Some(c) => cursor = Some(c),
                None => break,
            }
        }
        assert_eq!(seen.len(), 7, "live messages only, every namespace");
        s.delete_all(&account(1), NamespaceSel::All, NOW)
            .expect("d");
        assert!(
            !s.accounts_page(None, 10)
                .expect("page")
                .contains(&account(1))
        );
        let live = s
            .get_live(
                &[
                    msg(&account(2), 0, &[2, 0], NOW, NOW + HOUR).hash,
                    "x".into(),
                ],
                NOW,
            )
            .expect("live");
        assert_eq!(live.len(), 1);
    }
}
