//! Tombstones: a record of every message a client deleted, kept until that message would have
//! expired, so that no replicated copy (a late or retried push, a hand-off batch, an
//! anti-entropy repair) brings it back.
//!
//! Owns the `tombstones` column family. Two key spaces share it:
//! `'h' ‖ hash → expiry(8) ‖ account(33)` answers "was this deleted?", and
//! `'x' ‖ expiry(8, sign-flipped) ‖ hash → account(33)` lets the sweep read only the expired
//! head, as the message expiry index does. A tombstone is written in the same batch as the
//! deletion it records (see `AccountTxn::tombstone`), under the account's lock.
//!
//! Only client deletions (`delete`, `delete_all`, `delete_before`, and their anti-entropy
//! propagation) leave tombstones; expiry, hand-off and public-outbox replacement do not.
//! `bulk_store` (replication imports) skips tombstoned hashes; the client `store` ignores
//! them, because a client may legitimately store the same content again. Must not delete
//! messages itself.

use super::StoreError;
use super::db::{CF_TOMBSTONES, Inner, Store};
use super::keys::{self, ACCOUNT_LEN};
use crate::message::AccountId;
use rocksdb::WriteBatch;
use std::collections::{BTreeMap, HashSet};

/// Prefix of the by-hash records.
const BY_HASH: u8 = b'h';
/// Prefix of the by-expiry index.
const BY_EXPIRY: u8 = b'x';
/// Index entries read per sweep round.
const SWEEP_CHUNK: usize = 1_024;

/// `'h' ‖ hash`.
pub(super) fn hash_key(hash: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + hash.len());
    k.push(BY_HASH);
    k.extend_from_slice(hash.as_bytes());
    k
}

/// `'x' ‖ expiry ‖ hash`.
fn expiry_key(expiry_ms: i64, hash: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(9 + hash.len());
    k.push(BY_EXPIRY);
    k.extend_from_slice(&keys::ordered_i64(expiry_ms));
    k.extend_from_slice(hash);
    k
}

/// The expiry and account of a by-hash record.
fn decode_record(v: &[u8]) -> Result<(i64, AccountId), StoreError> {
    let corrupt = || StoreError::Corrupt { what: "tombstone" };
    if v.len() != 8 + ACCOUNT_LEN {
        return Err(corrupt());
    }
    let mut e = [0u8; 8];
    e.copy_from_slice(&v[..8]);
    let account = AccountId::from_bytes(&v[8..]).map_err(|_| corrupt())?;
    Ok((i64::from_be_bytes(e), account))
}

/// Adds to `batch` the tombstone of `hash` (owned by `account`) until `expiry_ms`. An
/// existing tombstone is only ever lengthened. The caller holds `account`'s lock.
pub(super) fn put(
    inner: &Inner,
    batch: &mut WriteBatch,
    account: &AccountId,
    hash: &str,
    expiry_ms: i64,
) -> Result<(), StoreError> {
    let key = hash_key(hash);
    let cf = inner.cf(CF_TOMBSTONES)?;
    if let Some(v) = inner.get(CF_TOMBSTONES, &key, "read tombstone")? {
        // A corrupt record is replaced rather than failing the client's delete.
        if let Ok((old, _)) = decode_record(&v) {
            if old >= expiry_ms {
                return Ok(());
            }
            batch.delete_cf(cf, expiry_key(old, hash.as_bytes()));
        }
    }
    let acct = account.to_bytes();
    let mut value = Vec::with_capacity(8 + ACCOUNT_LEN);
    value.extend_from_slice(&expiry_ms.to_be_bytes());
    value.extend_from_slice(&acct);
    batch.put_cf(cf, key, value);
    batch.put_cf(cf, expiry_key(expiry_ms, hash.as_bytes()), acct);
    Ok(())
}

impl Store {
    /// Whether `hash` has a tombstone (expired but not yet swept ones count: a message whose
    /// tombstone expired is itself expired, and imports skip expired messages anyway).
    pub(super) fn is_tombstoned(&self, hash: &str) -> Result<bool, StoreError> {
        Ok(self
            .inner
            .get(CF_TOMBSTONES, &hash_key(hash), "read tombstone")?
            .is_some())
    }

    /// Those of `hashes` that a client deleted (and whose tombstone is not yet swept).
    pub fn tombstoned(&self, hashes: &[String]) -> Result<HashSet<String>, StoreError> {
        let mut out = HashSet::new();
        for h in hashes {
            if self.is_tombstoned(h)? {
                out.insert(h.clone());
            }
        }
        Ok(out)
    }

    /// Calls `f(hash)` for every tombstone whose hash starts with `prefix` (ASCII) and
    /// whose expiry is after `now_ms`.
    pub(super) fn tombstones_with_prefix(
        &self,
        prefix: &[u8],
        now_ms: i64,
        mut f: impl FnMut(&str),
    ) -> Result<(), StoreError> {
        let mut lower = vec![BY_HASH];
        lower.extend_from_slice(prefix);
        let upper = keys::prefix_end(&lower);
        self.inner.iterate(CF_TOMBSTONES, &lower, upper, |k, v| {
            let (expiry, _) = decode_record(v)?;
            if expiry > now_ms
                && let Ok(h) = std::str::from_utf8(&k[1..])
            {
                f(h);
            }
            Ok(true)
        })
    }

    /// Deletes the tombstones that expired at `now_ms`; returns how many. Reads only the
    /// expired head of the index; each one is re-checked under its account's lock, because a
    /// concurrent deletion may have lengthened it.
    pub(super) fn sweep_tombstones(&self, now_ms: i64) -> Result<u64, StoreError> {
        let Some(upper) = now_ms.checked_add(1).map(|t| {
            let mut u = vec![BY_EXPIRY];
            u.extend_from_slice(&keys::ordered_i64(t));
            u
        }) else {
            return Ok(0);
        };
        let mut lower = vec![BY_EXPIRY];
        let mut removed = 0u64;
        loop {
            let mut chunk: Vec<(Vec<u8>, Vec<u8>)> = Vec::with_capacity(SWEEP_CHUNK);
            self.inner
                .iterate(CF_TOMBSTONES, &lower, Some(upper.clone()), |k, v| {
                    chunk.push((k.to_vec(), v.to_vec()));
                    Ok(chunk.len() < SWEEP_CHUNK)
                })?;
            let Some((last, _)) = chunk.last() else {
                return Ok(removed);
            };
            lower = [last.as_slice(), &[0u8]].concat();
            removed += self.sweep_tombstone_chunk(chunk, now_ms)?;
        }
    }

    /// Removes one chunk of expired index entries (and their records), one account at a time.
    fn sweep_tombstone_chunk(
        &self,
        chunk: Vec<(Vec<u8>, Vec<u8>)>,
        now_ms: i64,
    ) -> Result<u64, StoreError> {
        let i = &self.inner;
        let cf = i.cf(CF_TOMBSTONES)?;
        let mut by_account: BTreeMap<AccountId, Vec<Vec<u8>>> = BTreeMap::new();
        let mut orphans = WriteBatch::default();
        for (k, v) in chunk {
            match AccountId::from_bytes(&v) {
                Ok(a) if k.len() > 9 => by_account.entry(a).or_default().push(k),
                _ => orphans.delete_cf(cf, &k),
            }
        }
        if !orphans.is_empty() {
            i.write(orphans, "sweep tombstones")?;
        }
        let mut removed = 0;
        for (account, index_keys) in by_account {
            let _guard = i.lock(&account);
            let mut batch = WriteBatch::default();
            for ik in index_keys {
                let hash = &ik[9..];
                let mut hk = vec![BY_HASH];
                hk.extend_from_slice(hash);
                let current = i
                    .get(CF_TOMBSTONES, &hk, "sweep read tombstone")?
                    .and_then(|v| decode_record(&v).ok());
                if let Some((expiry, _)) = current
                    && expiry <= now_ms
                {
                    batch.delete_cf(cf, &hk);
                    removed += 1;
                }
                // Either the record expired with it, or the index entry is stale.
                batch.delete_cf(cf, &ik);
            }
            i.write(batch, "sweep tombstones")?;
        }
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_util::*;
    use crate::message::{Message, NamespaceSel};

    #[test]
    fn client_deletes_leave_tombstones_that_block_imports() {
        let dir = tempdir();
        let s = open(&dir);
        let a = account(1);
        let ms: Vec<Message> = (0..4u8)
            .map(|i| msg(&a, i16::from(i % 2), &[i], NOW + i64::from(i), NOW + HOUR))
            .collect();
        for m in &ms {
            s.store(m, NOW).expect("store");
        }
        s.delete_hashes(&a, &[ms[0].hash.clone()]).expect("delete");
        s.delete_before(&a, NamespaceSel::All, NOW + 1, NOW)
            .expect("delete_before");
        s.delete_all(&a, NamespaceSel::One(crate::message::Namespace(0)), NOW)
            .expect("delete_all");
        let all: Vec<String> = ms.iter().map(|m| m.hash.clone()).collect();
        let dead = s.tombstoned(&all).expect("tombstoned");
        let want: std::collections::HashSet<String> =
            [0usize, 1, 2].iter().map(|&i| ms[i].hash.clone()).collect();
        assert_eq!(dead, want);
        // A retried push of everything brings back only the one never deleted (it exists).
        assert_eq!(s.bulk_store(&ms, NOW).expect("bulk"), 0);
        assert_eq!(s.stats().messages, 1);
        for m in &ms[..3] {
            assert!(s.get_by_hash(&m.hash, NOW).expect("g").is_none());
        }
        // A client may store the same content again.
        assert_eq!(
            s.store(&ms[0], NOW).expect("store"),
            crate::store::StoreOutcome::New
        );
    }

    #[test]
    fn tombstones_expire_with_their_message() {
        let dir = tempdir();
        let s = open(&dir);
        let a = account(2);
        let short = msg(&a, 0, b"short", NOW, NOW + HOUR);
        let long = msg(&a, 0, b"long", NOW, NOW + 3 * HOUR);
        s.store(&short, NOW).expect("store");
        s.store(&long, NOW).expect("store");
        s.delete_all(&a, NamespaceSel::All, NOW).expect("delete");
        let both = vec![short.hash.clone(), long.hash.clone()];
        assert_eq!(s.tombstoned(&both).expect("t").len(), 2);
        // The regular sweep removes tombstones too, once their message would have expired.
        s.sweep_expired(NOW + HOUR).expect("sweep");
        let left = s.tombstoned(&both).expect("t");
        assert_eq!(
            left.into_iter().collect::<Vec<_>>(),
            vec![long.hash.clone()]
        );
        // The message is importable again when it is still live under a later expiry.
        let revived = Message {
            expiry_ms: NOW + 5 * HOUR,
            ..short.clone()
        };
        assert_eq!(s.bulk_store(&[revived], NOW + HOUR).expect("bulk"), 1);
        assert_eq!(s.sweep_tombstones(NOW + 3 * HOUR).expect("sweep"), 1);
        assert!(s.tombstoned(&both).expect("t").is_empty());
        assert_eq!(s.sweep_tombstones(NOW + 9 * HOUR).expect("sweep"), 0);
    }

    #[test]
    fn a_later_deletion_lengthens_the_tombstone() {
        let dir = tempdir();
        let s = open(&dir);
        let a = account(3);
        let m = msg(&a, 0, b"again", NOW, NOW + HOUR);
        s.store(&m, NOW).expect("store");
        s.delete_hashes(&a, std::slice::from_ref(&m.hash))
            .expect("delete");
        let longer = Message {
            expiry_ms: NOW + 4 * HOUR,
            ..m.clone()
        };
        s.store(&longer, NOW).expect("store again");
        s.delete_hashes(&a, std::slice::from_ref(&m.hash))
            .expect("delete again");
        // The old index entry is stale: sweeping past the first expiry keeps the tombstone.
        assert_eq!(s.sweep_tombstones(NOW + 2 * HOUR).expect("sweep"), 0);
        assert_eq!(
            s.tombstoned(std::slice::from_ref(&m.hash))
                .expect("t")
                .len(),
            1
        );
        assert_eq!(s.sweep_tombstones(NOW + 4 * HOUR).expect("sweep"), 1);
        assert!(
            s.tombstoned(std::slice::from_ref(&m.hash))
                .expect("t")
                .is_empty()
        );
    }

    #[test]
    fn tombstones_survive_reopen() {
        let dir = tempdir();
        let a = account(4);
        let m = msg(&a, 5, b"gone", NOW, NOW + HOUR);
        {
            let s = open(&dir);
            s.store(&m, NOW).expect("store");
            s.delete_hashes(&a, std::slice::from_ref(&m.hash))
                .expect("delete");
        }
        let s = open(&dir);
        assert_eq!(
            s.bulk_store(std::slice::from_ref(&m), NOW).expect("bulk"),
            0
        );
        assert_eq!(
            s.tombstoned(std::slice::from_ref(&m.hash))
                .expect("t")
                .len(),
            1
        );
    }
}
