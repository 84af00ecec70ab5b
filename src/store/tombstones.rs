//! Tombstones: a record of every message a client deleted, kept until every copy of it would
//! have expired (its horizon: a copy that missed a shortening keeps the older expiry), so that
//! no replicated copy (a late or retried push, a hand-off batch, an anti-entropy repair)
//! brings it back.
//!
//! Owns the `tombstones` column family. Three key spaces share it:
//! `'h' ‖ hash → expiry(8) ‖ account(33) ‖ deleted_at(8) ‖ unheld(1)` answers "was this
//! deleted, by whom, when?", `'x' ‖ expiry(8, sign-flipped) ‖ hash → account(33)` lets the
//! sweep read only the expired head, as the message expiry index does, and
//! `'c' ‖ account → count(8)` counts the account's *unheld* tombstones (below). A tombstone
//! is written in the same batch as the deletion it records (see `AccountTxn::tombstone`),
//! under the account's lock.
//!
//! Only client deletions (`delete`, `delete_all`, `delete_before`, and their anti-entropy
//! propagation) leave tombstones; expiry, hand-off and public-outbox replacement do not.
//!
//! **Unheld tombstones.** A client's `delete` can reach a member before the message does (a
//! partition kept the store's forward queued; the simulation found it, seed 213,
//! docs/simulation.md). The member then records the deletion anyway, as *unheld*: until
//! then it cannot know the hash is the account's, so an unheld tombstone only stops copies of
//! that account's message here and is not listed to anti-entropy peers (else an account could
//! delete another's message whose hash it knows, as its sender does). It becomes an ordinary
//! tombstone when the message itself arrives and is refused. Each account holds at most
//! [`MAX_UNHELD_PER_ACCOUNT`] of them.
//!
//! **Which wins, a store or a tombstone.** Imports (`bulk_store`) never override one. A
//! store — the client's at the entry node, or its forward, first attempt or retry — carries
//! the time the swarm accepted it; it replaces the tombstone only when accepted more than
//! [`CLOCK_MARGIN_MS`] after the deletion was, since a client may store the same content
//! (hence the same hash) again. Within the margin the deletion wins everywhere, so members
//! agree whatever order the two reach them in. Must not delete messages itself.

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
/// Prefix of the per-account count of unheld tombstones.
const UNHELD_COUNT: u8 = b'c';
/// Index entries read per sweep round.
const SWEEP_CHUNK: usize = 1_024;

/// How far apart two nodes' clocks may be and still talk (the peer authentication window,
/// `peer::auth::PEER_TOLERANCE_MS`): acceptance times stamped by different nodes compare
/// only beyond it. A store accepted within it of a deletion of its hash counts as concurrent,
/// and the deletion wins.
pub(super) const CLOCK_MARGIN_MS: i64 = 60_000;

/// Unheld tombstones one account may have at a time: far more than a client deleting what
/// it retrieved ever leaves (only a partition makes them), and small enough that an account
/// deleting random hashes costs a node at most a few MB.
pub(super) const MAX_UNHELD_PER_ACCOUNT: u64 = 10_000;

/// How long an unheld tombstone lasts: the longest a message accepted up to
/// [`CLOCK_MARGIN_MS`] after the deletion could live. The message's own expiry is unknown.
pub const UNHELD_LIFETIME_MS: i64 =
    crate::message::TTL_MAXIMUM_PRIVATE_MS + crate::message::STORE_TOLERANCE_MS + CLOCK_MARGIN_MS;

/// Length of a record written before deletion times were kept: expiry ‖ account.
const RECORD_V1_LEN: usize = 8 + ACCOUNT_LEN;
/// Length of a record: expiry ‖ account ‖ deleted_at ‖ unheld.
const RECORD_LEN: usize = RECORD_V1_LEN + 9;

/// One by-hash record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Tomb {
    /// Kept until then (the deleted message's horizon, or [`UNHELD_LIFETIME_MS`] on).
    pub expiry_ms: i64,
    /// The account that deleted it.
    pub account: AccountId,
    /// When the swarm accepted the deletion (its entry node's clock); `i64::MIN` for records
    /// of the first format, which never stopped a store.
    pub deleted_ms: i64,
    /// Recorded for a hash this node did not hold (see the module header).
    pub unheld: bool,
}

impl Tomb {
    fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(RECORD_LEN);
        v.extend_from_slice(&self.expiry_ms.to_be_bytes());
        v.extend_from_slice(&self.account.to_bytes());
        v.extend_from_slice(&self.deleted_ms.to_be_bytes());
        v.push(u8::from(self.unheld));
        v
    }

    fn decode(v: &[u8]) -> Result<Tomb, StoreError> {
        let corrupt = || StoreError::Corrupt { what: "tombstone" };
        if v.len() != RECORD_LEN && v.len() != RECORD_V1_LEN {
            return Err(corrupt());
        }
        let i64_at = |at: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&v[at..at + 8]);
            i64::from_be_bytes(b)
        };
        let account = AccountId::from_bytes(&v[8..RECORD_V1_LEN]).map_err(|_| corrupt())?;
        let (deleted_ms, unheld) = if v.len() == RECORD_LEN {
            (i64_at(RECORD_V1_LEN), v[RECORD_LEN - 1] != 0)
        } else {
            (i64::MIN, false)
        };
        Ok(Tomb {
            expiry_ms: i64_at(0),
            account,
            deleted_ms,
            unheld,
        })
    }

    /// Whether a store accepted at `accepted_ms` (`None`: an import, which has no acceptance
    /// time) of this account's message loses to this deletion.
    pub(super) fn beats(&self, accepted_ms: Option<i64>) -> bool {
        accepted_ms.is_none_or(|a| a <= self.deleted_ms.saturating_add(CLOCK_MARGIN_MS))
    }
}

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

/// `'c' ‖ account`.
fn count_key(account: &AccountId) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + ACCOUNT_LEN);
    k.push(UNHELD_COUNT);
    k.extend_from_slice(&account.to_bytes());
    k
}

/// The committed record of `hash`. A corrupt record reads as none: it is replaced rather
/// than failing a client's delete or store.
pub(super) fn read(inner: &Inner, hash: &str) -> Result<Option<Tomb>, StoreError> {
    Ok(inner
        .get(CF_TOMBSTONES, &hash_key(hash), "read tombstone")?
        .and_then(|v| Tomb::decode(&v).ok()))
}

/// Adds to `batch` the record `new` of `hash`, replacing `old` (its index entry too).
pub(super) fn write(
    inner: &Inner,
    batch: &mut WriteBatch,
    hash: &str,
    old: Option<&Tomb>,
    new: &Tomb,
) -> Result<(), StoreError> {
    let cf = inner.cf(CF_TOMBSTONES)?;
    if let Some(old) = old
        && old.expiry_ms != new.expiry_ms
    {
        batch.delete_cf(cf, expiry_key(old.expiry_ms, hash.as_bytes()));
    }
    batch.put_cf(cf, hash_key(hash), new.encode());
    batch.put_cf(
        cf,
        expiry_key(new.expiry_ms, hash.as_bytes()),
        new.account.to_bytes(),
    );
    Ok(())
}

/// Adds to `batch` the removal of `old`, the record of `hash`.
pub(super) fn remove(
    inner: &Inner,
    batch: &mut WriteBatch,
    hash: &str,
    old: &Tomb,
) -> Result<(), StoreError> {
    let cf = inner.cf(CF_TOMBSTONES)?;
    batch.delete_cf(cf, hash_key(hash));
    batch.delete_cf(cf, expiry_key(old.expiry_ms, hash.as_bytes()));
    Ok(())
}

/// The merge of a deletion into the existing record: the later expiry and deletion time; held
/// once either was. Across accounts a held record wins over anything, else the newer.
pub(super) fn merged(old: Option<&Tomb>, new: Tomb) -> Tomb {
    match old {
        Some(o) if o.account == new.account => Tomb {
            expiry_ms: o.expiry_ms.max(new.expiry_ms),
            account: new.account,
            deleted_ms: o.deleted_ms.max(new.deleted_ms),
            unheld: o.unheld && new.unheld,
        },
        // Another account's held record stays: a hash covers its owner, so that account's
        // message was deleted, and a second account naming the hash must not lift that.
        Some(o) if !o.unheld => *o,
        // Another account's unheld record (only ever a guess) gives way.
        _ => new,
    }
}

/// The committed count of `account`'s unheld tombstones.
pub(super) fn unheld_count(inner: &Inner, account: &AccountId) -> Result<u64, StoreError> {
    Ok(inner
        .get(CF_TOMBSTONES, &count_key(account), "read unheld count")?
        .and_then(|v| <[u8; 8]>::try_from(v.as_slice()).ok())
        .map_or(0, u64::from_be_bytes))
}

/// Adds to `batch` the count `n` of `account`'s unheld tombstones.
pub(super) fn put_unheld_count(
    inner: &Inner,
    batch: &mut WriteBatch,
    account: &AccountId,
    n: u64,
) -> Result<(), StoreError> {
    let cf = inner.cf(CF_TOMBSTONES)?;
    if n == 0 {
        batch.delete_cf(cf, count_key(account));
    } else {
        batch.put_cf(cf, count_key(account), n.to_be_bytes());
    }
    Ok(())
}

/// A tombstone as the hand-off carries it to an account's new owners.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TombstoneRecord {
    /// The account that deleted the hash.
    pub account: AccountId,
    /// The deleted message's hash.
    pub hash: String,
    /// Kept until then.
    pub expiry_ms: i64,
    /// When the swarm accepted the deletion (`i64::MIN`: not recorded).
    pub deleted_ms: i64,
    /// The sender did not hold the message (see the module header).
    pub unheld: bool,
}

impl Store {
    /// Up to `limit` tombstones in force at `now_ms`, in hash order after `after`; with the
    /// hash to resume from when more may follow.
    pub fn tombstones_page(
        &self,
        after: Option<&str>,
        limit: usize,
        now_ms: i64,
    ) -> Result<(Vec<TombstoneRecord>, Option<String>), StoreError> {
        let mut lower = vec![BY_HASH];
        if let Some(a) = after {
            lower.extend_from_slice(a.as_bytes());
            lower.push(0);
        }
        let upper = keys::prefix_end(&[BY_HASH]);
        let (mut out, mut last, mut more) = (Vec::new(), None, false);
        self.inner.scan(CF_TOMBSTONES, &lower, upper, |k, v| {
            if last.is_some() && out.len() >= limit.max(1) {
                more = true;
                return Ok(false);
            }
            let hash = std::str::from_utf8(&k[1..])
                .map_err(|_| StoreError::Corrupt { what: "tombstone" })?
                .to_string();
            let t = Tomb::decode(v)?;
            if t.expiry_ms > now_ms {
                out.push(TombstoneRecord {
                    account: t.account,
                    hash: hash.clone(),
                    expiry_ms: t.expiry_ms,
                    deleted_ms: t.deleted_ms,
                    unheld: t.unheld,
                });
            }
            last = Some(hash);
            Ok(true)
        })?;
        Ok((out, if more { last } else { None }))
    }

    /// Applies tombstones a previous owner of their accounts handed off, as its client
    /// deletions: a message held here under the same account is deleted; an unheld one
    /// stays unheld (within the account's cap). Returns how many messages were deleted.
    pub fn import_tombstones(
        &self,
        tombs: &[TombstoneRecord],
        now_ms: i64,
    ) -> Result<usize, StoreError> {
        let mut by_account: BTreeMap<AccountId, Vec<&TombstoneRecord>> = BTreeMap::new();
        for t in tombs.iter().filter(|t| t.expiry_ms > now_ms) {
            by_account.entry(t.account).or_default().push(t);
        }
        let mut deleted = 0;
        for (account, group) in by_account {
            let mut txn = self.inner.begin(&account);
            for t in group {
                match txn.lookup(&t.hash)? {
                    Some((key, value)) if key.starts_with(&account.to_bytes()) => {
                        let rec = super::keys::Record::decode(&value)?;
                        txn.delete(&key, &rec)?;
                        txn.tombstone(&rec, t.deleted_ms)?;
                        deleted += 1;
                    }
                    // Another account's message: a hash covers its owner, so this tombstone
                    // was a guess that cannot apply.
                    Some(_) => {}
                    None if t.unheld => {
                        txn.tombstone_unheld(&t.hash, t.deleted_ms)?;
                    }
                    None => txn.tombstone_held(&t.hash, t.expiry_ms, t.deleted_ms)?,
                }
                txn.maybe_flush()?;
            }
            txn.commit()?;
        }
        Ok(deleted)
    }

    /// Removes the tombstones `(account, hash)` once handed off to their accounts' owners.
    pub fn drop_tombstones(&self, tombs: &[(AccountId, String)]) -> Result<(), StoreError> {
        let mut by_account: BTreeMap<AccountId, Vec<&str>> = BTreeMap::new();
        for (a, h) in tombs {
            by_account.entry(*a).or_default().push(h);
        }
        for (account, hashes) in by_account {
            let mut txn = self.inner.begin(&account);
            for h in hashes {
                txn.drop_tombstone(h)?;
                txn.maybe_flush()?;
            }
            txn.commit()?;
        }
        Ok(())
    }

    /// Those of `hashes` that a client deleted (and whose tombstone is not yet swept),
    /// unheld ones included.
    pub fn tombstoned(&self, hashes: &[String]) -> Result<HashSet<String>, StoreError> {
        let mut out = HashSet::new();
        for h in hashes {
            if read(&self.inner, h)?.is_some() {
                out.insert(h.clone());
            }
        }
        Ok(out)
    }

    /// How many unheld tombstones `account` has (see the module header).
    pub fn unheld_tombstones(&self, account: &AccountId) -> Result<u64, StoreError> {
        unheld_count(&self.inner, account)
    }

    /// Calls `f(hash)` for every held tombstone whose hash starts with `prefix` (ASCII) and
    /// whose expiry is after `now_ms`. Unheld ones are this node's guess, not for peers.
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
            let t = Tomb::decode(v)?;
            if t.expiry_ms > now_ms
                && !t.unheld
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
            let mut unheld = 0u64;
            for ik in index_keys {
                let hash = &ik[9..];
                let mut hk = vec![BY_HASH];
                hk.extend_from_slice(hash);
                let current = i
                    .get(CF_TOMBSTONES, &hk, "sweep read tombstone")?
                    .and_then(|v| Tomb::decode(&v).ok());
                if let Some(t) = current
                    && t.expiry_ms <= now_ms
                {
                    batch.delete_cf(cf, &hk);
                    removed += 1;
                    unheld += u64::from(t.unheld && t.account == account);
                }
                // Either the record expired with it, or the index entry is stale.
                batch.delete_cf(cf, &ik);
            }
            if unheld > 0 {
                let n = unheld_count(i, &account)?.saturating_sub(unheld);
                put_unheld_count(i, &mut batch, &account, n)?;
            }
            i.write(batch, "sweep tombstones")?;
        }
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_util::*;
    use super::{CLOCK_MARGIN_MS, MAX_UNHELD_PER_ACCOUNT, UNHELD_LIFETIME_MS};
    use crate::message::{Message, NamespaceSel};
    use crate::store::{StoreOutcome, hash_bucket};

    /// Whether anti-entropy peers are told about `m`'s tombstone.
    fn listed(s: &crate::store::Store, m: &Message, now: i64) -> bool {
        let bucket = hash_bucket(&m.hash).expect("bucket");
        s.tombstones_in_bucket(bucket, now)
            .expect("list")
            .contains(&m.hash)
    }

    #[test]
    fn a_delete_before_its_message_arrives_stops_the_message() {
        let dir = tempdir();
        let s = open(&dir);
        let a = account(5);
        // Accepted by the swarm before the deletion, delivered here after it.
        let late = msg(&a, 0, b"late", NOW, NOW + HOUR);
        let retried = msg(&a, 0, b"retried", NOW, NOW + HOUR);
        let imported = msg(&a, 0, b"imported", NOW, NOW + HOUR);
        let hashes = [&late, &retried, &imported].map(|m| m.hash.clone());
        assert!(
            s.delete_hashes(&a, &hashes, NOW + 5_000)
                .expect("d")
                .is_empty()
        );
        assert_eq!(s.unheld_tombstones(&a).expect("n"), 3);
        // Unheld: kept to ourselves until the message proves the hash is the account's.
        assert!(!listed(&s, &late, NOW));
        assert_eq!(s.store(&late, NOW).expect("store"), StoreOutcome::Deleted);
        assert_eq!(
            s.store(&retried, NOW - HOUR).expect("store"),
            StoreOutcome::Deleted
        );
        assert_eq!(
            s.bulk_store(std::slice::from_ref(&imported), NOW)
                .expect("bulk"),
            0
        );
        assert_eq!(s.stats().messages, 0);
        assert!(listed(&s, &late, NOW) && listed(&s, &imported, NOW));
        assert_eq!(s.unheld_tombstones(&a).expect("n"), 0);
        // The deletion is dated: a store accepted well after it is the client's new store.
        let fresh = msg(&a, 0, b"fresh", NOW + HOUR, NOW + 2 * HOUR);
        s.delete_hashes(&a, std::slice::from_ref(&fresh.hash), NOW)
            .expect("d");
        assert_eq!(
            s.store(&fresh, NOW + HOUR).expect("store"),
            StoreOutcome::New
        );
        assert_eq!(s.unheld_tombstones(&a).expect("n"), 0);
    }

    #[test]
    fn an_unheld_tombstone_never_touches_another_accounts_message() {
        let dir = tempdir();
        let s = open(&dir);
        let (owner, other) = (account(6), account(7));
        let m = msg(&owner, 0, b"the owner's", NOW, NOW + HOUR);
        // `other` learnt the hash (it sent the message) and deletes it first.
        s.delete_hashes(&other, std::slice::from_ref(&m.hash), NOW + 1_000)
            .expect("d");
        assert_eq!(s.store(&m, NOW).expect("store"), StoreOutcome::New);
        assert!(!listed(&s, &m, NOW));
        // Held by its owner now: `other`'s deletion of it is ignored, as before.
        assert!(
            s.delete_hashes(&other, std::slice::from_ref(&m.hash), NOW + 2_000)
                .expect("d")
                .is_empty()
        );
        assert!(s.get_by_hash(&m.hash, NOW).expect("get").is_some());
        // The owner's own deletion replaces `other`'s unheld record.
        s.delete_hashes(&owner, std::slice::from_ref(&m.hash), NOW + 3_000)
            .expect("d");
        assert!(listed(&s, &m, NOW));
        assert_eq!(
            s.bulk_store(std::slice::from_ref(&m), NOW).expect("bulk"),
            0
        );
        // And `other` naming the hash again cannot lift the owner's deletion.
        s.delete_hashes(&other, std::slice::from_ref(&m.hash), NOW + 4_000)
            .expect("d");
        assert!(listed(&s, &m, NOW));
        assert_eq!(
            s.bulk_store(std::slice::from_ref(&m), NOW).expect("bulk"),
            0
        );
        assert_eq!(
            s.store(&m, NOW + 1_000).expect("store"),
            StoreOutcome::Deleted
        );
    }

    #[test]
    fn tombstones_hand_off_page_by_page_and_apply_as_deletions() {
        let (d1, d2) = (tempdir(), tempdir());
        let (from, to) = (open(&d1), open(&d2));
        let (a, b) = (account(11), account(12));
        let held = msg(&a, 0, b"held here", NOW, NOW + HOUR);
        let there = msg(&a, 0, b"held there only", NOW, NOW + HOUR);
        let foreign = msg(&b, 0, b"b's own", NOW, NOW + HOUR);
        from.store(&held, NOW).expect("store");
        to.store(&there, NOW).expect("store");
        to.store(&foreign, NOW).expect("store");
        // `from` saw the deletions: one of a message it held, one of a message it never got,
        // and `a` naming `b`'s hash.
        let named = [held.hash.clone(), there.hash.clone(), foreign.hash.clone()];
        from.delete_hashes(&a, &named, NOW).expect("delete");
        let mut all = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let (page, next) = from
                .tombstones_page(after.as_deref(), 2, NOW)
                .expect("page");
            assert!(page.len() <= 2);
            all.extend(page);
            match next {
                Some(n) => after = Some(n),
                None => break,
            }
        }
        assert_eq!(all.len(), 3, "{all:?}");
        assert!(
            from.tombstones_page(None, 10, NOW + 2 * UNHELD_LIFETIME_MS)
                .expect("p")
                .0
                .is_empty()
        );
        // The new owner deletes what the account deleted, never another account's message.
        assert_eq!(to.import_tombstones(&all, NOW).expect("import"), 1);
        assert!(to.get_by_hash(&there.hash, NOW).expect("get").is_none());
        assert!(to.get_by_hash(&foreign.hash, NOW).expect("get").is_some());
        assert_eq!(
            to.bulk_store(std::slice::from_ref(&held), NOW)
                .expect("bulk"),
            0
        );
        assert!(listed(&to, &held, NOW) && listed(&to, &there, NOW));
        // Delivered: the sender drops its copies, and its unheld count with them.
        let gone: Vec<_> = all.iter().map(|t| (t.account, t.hash.clone())).collect();
        assert_eq!(from.unheld_tombstones(&a).expect("n"), 2);
        from.drop_tombstones(&gone).expect("drop");
        assert!(from.tombstoned(&named).expect("t").is_empty());
        assert_eq!(from.unheld_tombstones(&a).expect("n"), 0);
    }

    #[test]
    fn first_format_records_block_imports_but_not_stores() {
        let dir = tempdir();
        let s = open(&dir);
        let a = account(10);
        let m = msg(&a, 0, b"v1", NOW, NOW + HOUR);
        // A record as written before deletion times were kept: expiry ‖ account.
        let mut v1 = (NOW + HOUR).to_be_bytes().to_vec();
        v1.extend_from_slice(&a.to_bytes());
        let mut batch = rocksdb::WriteBatch::default();
        let cf = s.inner.cf(super::CF_TOMBSTONES).expect("cf");
        batch.put_cf(cf, super::hash_key(&m.hash), v1);
        s.inner.write(batch, "test").expect("write");
        assert!(listed(&s, &m, NOW));
        assert_eq!(
            s.bulk_store(std::slice::from_ref(&m), NOW).expect("bulk"),
            0
        );
        // It has no deletion time: a store replaces it, as every store did then.
        assert_eq!(s.store(&m, NOW).expect("store"), StoreOutcome::New);
        assert!(!listed(&s, &m, NOW));
    }

    #[test]
    fn unheld_tombstones_are_capped_per_account_and_swept() {
        let dir = tempdir();
        let s = open(&dir);
        let (a, b) = (account(8), account(9));
        let fake = |i: u64| format!("{:0>43}", i);
        let many: Vec<String> = (0..MAX_UNHELD_PER_ACCOUNT + 50).map(fake).collect();
        s.delete_hashes(&a, &many, NOW).expect("d");
        assert_eq!(s.unheld_tombstones(&a).expect("n"), MAX_UNHELD_PER_ACCOUNT);
        let past_cap = many.last().expect("last").clone();
        assert!(
            s.tombstoned(std::slice::from_ref(&past_cap))
                .expect("t")
                .is_empty()
        );
        // Repeating one changes nothing; another account has its own budget.
        s.delete_hashes(&a, &many[..10], NOW + 1).expect("d");
        assert_eq!(s.unheld_tombstones(&a).expect("n"), MAX_UNHELD_PER_ACCOUNT);
        s.delete_hashes(&b, &[fake(u64::MAX)], NOW).expect("d");
        assert_eq!(s.unheld_tombstones(&b).expect("n"), 1);
        // They last as long as a message accepted with the deletion could, then go.
        assert_eq!(
            s.sweep_tombstones(NOW + UNHELD_LIFETIME_MS - 1)
                .expect("sweep"),
            0
        );
        s.sweep_tombstones(NOW + UNHELD_LIFETIME_MS + 1)
            .expect("sweep");
        assert_eq!(s.unheld_tombstones(&a).expect("n"), 0);
        assert_eq!(s.unheld_tombstones(&b).expect("n"), 0);
        assert!(s.tombstoned(&many).expect("t").is_empty());
    }

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
        s.delete_hashes(&a, &[ms[0].hash.clone()], NOW)
            .expect("delete");
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
        // A store accepted at the deletion's time, or within the clock margin, is concurrent
        // with it and loses; a client may store the same content again after that.
        for at in [NOW, NOW + CLOCK_MARGIN_MS] {
            assert_eq!(s.store(&ms[0], at).expect("store"), StoreOutcome::Deleted);
        }
        assert_eq!(
            s.store(&ms[0], NOW + CLOCK_MARGIN_MS + 1).expect("store"),
            StoreOutcome::New
        );
        assert!(
            s.tombstoned(&all).expect("t").len() == 2,
            "its tombstone went"
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

    /// docs/simulation.md, finding 9: a member that missed a shortening (and the delete)
    /// holds a copy with the old expiry; the tombstone must outlive that copy.
    #[test]
    fn a_shortened_messages_tombstone_lasts_until_its_old_expiry() {
        let dir = tempdir();
        let s = open(&dir);
        let a = account(4);
        let m = msg(&a, 0, b"shortened", NOW, NOW + 3 * HOUR);
        s.store(&m, NOW).expect("store");
        let hashes = vec![m.hash.clone()];
        let shortened = s
            .update_expiry(
                &a,
                &hashes,
                NOW + HOUR,
                crate::store::ExpireMode::ShortenOnly,
                NOW + 1,
            )
            .expect("shorten");
        assert_eq!(shortened.updated.get(&m.hash), Some(&(NOW + HOUR)));
        s.delete_hashes(&a, &hashes, NOW + 2).expect("delete");
        // Past the shortened expiry the tombstone stays, and the copy of a member that
        // missed both requests is refused.
        s.sweep_expired(NOW + 2 * HOUR).expect("sweep");
        assert_eq!(s.tombstoned(&hashes).expect("t").len(), 1);
        assert!(listed(&s, &m, NOW + 2 * HOUR), "peers are told of it");
        assert_eq!(
            s.bulk_store(std::slice::from_ref(&m), NOW + 2 * HOUR)
                .expect("bulk"),
            0
        );
        assert!(s.get_by_hash(&m.hash, NOW + 2 * HOUR).expect("g").is_none());
        // Past the old expiry no copy can live, and it goes.
        s.sweep_expired(NOW + 3 * HOUR).expect("sweep");
        assert!(s.tombstoned(&hashes).expect("t").is_empty());
    }

    #[test]
    fn a_later_deletion_lengthens_the_tombstone() {
        let dir = tempdir();
        let s = open(&dir);
        let a = account(3);
        let m = msg(&a, 0, b"again", NOW, NOW + HOUR);
        s.store(&m, NOW).expect("store");
        s.delete_hashes(&a, std::slice::from_ref(&m.hash), NOW)
            .expect("delete");
        let longer = Message {
            expiry_ms: NOW + 4 * HOUR,
            ..m.clone()
        };
        let again = NOW + CLOCK_MARGIN_MS + 1;
        s.store(&longer, again).expect("store again");
        s.delete_hashes(&a, std::slice::from_ref(&m.hash), again)
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
            s.delete_hashes(&a, std::slice::from_ref(&m.hash), NOW)
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
