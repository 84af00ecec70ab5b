//! One account's atomic change: the stripe lock, a `WriteBatch`, and the bookkeeping that
//! keeps the three message column families and the per-account counters in step.
//!
//! Every mutation of messages goes through an [`AccountTxn`], so the invariants live here:
//! a message row, its hash-index entry and its expiry-index entry are written and removed
//! together in one batch; the account's counters change in that same batch. Must not decide
//! *which* messages to change (that is the operation files' job).

use super::StoreError;
use super::db::{CF_ACCOUNTS, CF_EXPIRIES, CF_HASHES, CF_MESSAGES, Inner};
use super::keys::{self, AccountCounts, Record};
use super::tombstones::{self, Tomb};
use crate::expiry_log::ExpiryLog;
use crate::message::{AccountId, Message};
use rocksdb::{ReadOptions, WriteBatch};
use std::collections::HashMap;
use std::sync::MutexGuard;
use std::sync::atomic::{AtomicU64, Ordering};

/// Batch size (operations) past which long loops write what they have so far.
const FLUSH_EVERY_OPS: usize = 3_000;

/// A stored message found by hash: its key and its encoded record.
pub(super) type Found = (Vec<u8>, Vec<u8>);

/// An open change to one account, holding the account's lock stripe until dropped.
pub(super) struct AccountTxn<'a> {
    inner: &'a Inner,
    account: AccountId,
    _guard: MutexGuard<'a, ()>,
    batch: WriteBatch,
    delta_messages: i64,
    delta_bytes: i64,
    /// Hashes this txn wrote or removed, so later steps of the same txn see them before the
    /// batch reaches RocksDB (bulk imports may carry the same hash twice).
    overlay: HashMap<String, Option<Found>>,
    /// Tombstones this txn wrote or removed, for the same reason.
    tombs: HashMap<String, Option<Tomb>>,
    /// Change to the account's count of unheld tombstones, written with the batch.
    delta_unheld: i64,
}

/// What a store met in the tombstones (see `tombstones.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Met {
    /// No tombstone of this account's for the hash.
    Nothing,
    /// A deletion that wins: the message must not be stored.
    Deleted,
    /// A deletion the store is newer than: the tombstone is gone (in this txn).
    Cleared,
}

impl Inner {
    /// Starts a change to `account` (blocks while another change to its stripe runs).
    pub(super) fn begin(&self, account: &AccountId) -> AccountTxn<'_> {
        AccountTxn {
            inner: self,
            account: *account,
            _guard: self.lock(account),
            batch: WriteBatch::default(),
            delta_messages: 0,
            delta_bytes: 0,
            overlay: HashMap::new(),
            tombs: HashMap::new(),
            delta_unheld: 0,
        }
    }

    /// Looks `hash` up in committed data: its message key and record bytes.
    pub(super) fn find_hash(&self, hash: &str) -> Result<Option<Found>, StoreError> {
        let Some(key) = self.get(CF_HASHES, hash.as_bytes(), "read hash index")? else {
            return Ok(None);
        };
        // A dangling index entry cannot be produced by our batches; treat it as absent
        // rather than failing every later lookup of that hash.
        Ok(self
            .get(CF_MESSAGES, &key, "read message")?
            .map(|value| (key, value)))
    }

    /// Calls `f(key, value)` for the keys of `cf` in `[lower, upper)` in order, until `f`
    /// returns `false`. Reads an implicit snapshot taken when the iterator opens.
    pub(super) fn iterate(
        &self,
        cf: &'static str,
        lower: &[u8],
        upper: Option<Vec<u8>>,
        f: impl FnMut(&[u8], &[u8]) -> Result<bool, StoreError>,
    ) -> Result<(), StoreError> {
        self.iterate_with(cf, lower, upper, true, f)
    }

    /// Like [`Inner::iterate`] for scans over much of the store (anti-entropy digests,
    /// hand-off, fetches): the blocks they read do not enter the block cache, where they
    /// would evict what clients are reading (the cache is small, 16 MiB by default; a digest reads everything).
    pub(super) fn scan(
        &self,
        cf: &'static str,
        lower: &[u8],
        upper: Option<Vec<u8>>,
        f: impl FnMut(&[u8], &[u8]) -> Result<bool, StoreError>,
    ) -> Result<(), StoreError> {
        self.iterate_with(cf, lower, upper, false, f)
    }

    fn iterate_with(
        &self,
        cf: &'static str,
        lower: &[u8],
        upper: Option<Vec<u8>>,
        fill_cache: bool,
        mut f: impl FnMut(&[u8], &[u8]) -> Result<bool, StoreError>,
    ) -> Result<(), StoreError> {
        let mut ro = ReadOptions::default();
        ro.fill_cache(fill_cache);
        // The messages CF has a prefix extractor; a total-order iterator ignores it, so
        // ranges that cross account ‖ namespace prefixes are always complete.
        ro.set_total_order_seek(true);
        if let Some(u) = upper {
            ro.set_iterate_upper_bound(u);
        }
        Self::run_iterator(self.db.raw_iterator_cf_opt(self.cf(cf)?, ro), lower, &mut f)
    }

    /// Like [`Inner::iterate`] over the messages of one account ‖ namespace `prefix` (35
    /// bytes), from `lower` (which starts with `prefix`). Uses the prefix bloom filter, so
    /// the seek skips SST files that hold nothing of this prefix.
    pub(super) fn iterate_account_ns(
        &self,
        prefix: &[u8],
        lower: &[u8],
        mut f: impl FnMut(&[u8], &[u8]) -> Result<bool, StoreError>,
    ) -> Result<(), StoreError> {
        let mut ro = ReadOptions::default();
        ro.set_prefix_same_as_start(true);
        if let Some(u) = keys::prefix_end(prefix) {
            ro.set_iterate_upper_bound(u);
        }
        Self::run_iterator(
            self.db.raw_iterator_cf_opt(self.cf(CF_MESSAGES)?, ro),
            lower,
            &mut f,
        )
    }

    /// Like `iterate_account_ns`, newest first: the keys of `prefix` strictly below `upper`
    /// (the whole range when `None`), in descending order.
    pub(super) fn iterate_account_ns_rev(
        &self,
        prefix: &[u8],
        upper: Option<&[u8]>,
        mut f: impl FnMut(&[u8], &[u8]) -> Result<bool, StoreError>,
    ) -> Result<(), StoreError> {
        // Reverse iteration cannot use the prefix bloom (prefix mode needs a forward seek
        // target), so it runs in total order, bounded on both sides to this one range.
        let mut ro = ReadOptions::default();
        ro.set_total_order_seek(true);
        ro.set_iterate_lower_bound(prefix.to_vec());
        match upper {
            Some(u) => ro.set_iterate_upper_bound(u.to_vec()),
            None => {
                if let Some(u) = keys::prefix_end(prefix) {
                    ro.set_iterate_upper_bound(u);
                }
            }
        }
        let mut it = self.db.raw_iterator_cf_opt(self.cf(CF_MESSAGES)?, ro);
        it.seek_to_last();
        while let Some((k, v)) = it.item() {
            if !f(k, v)? {
                return Ok(());
            }
            it.prev();
        }
        it.status().map_err(|source| StoreError::Db {
            op: "iterate",
            source,
        })
    }

    fn run_iterator(
        mut it: rocksdb::DBRawIteratorWithThreadMode<'_, rocksdb::DB>,
        lower: &[u8],
        f: &mut impl FnMut(&[u8], &[u8]) -> Result<bool, StoreError>,
    ) -> Result<(), StoreError> {
        it.seek(lower);
        while let Some((k, v)) = it.item() {
            if !f(k, v)? {
                return Ok(());
            }
            it.next();
        }
        it.status().map_err(|source| StoreError::Db {
            op: "iterate",
            source,
        })
    }

    /// The message key the hash index holds for `hash`, without reading the message.
    pub(super) fn find_hash_key(&self, hash: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.get(CF_HASHES, hash.as_bytes(), "read hash index")
    }

    /// Every message in the key range starting with `prefix`, as (key, record bytes).
    pub(super) fn collect_prefix(&self, prefix: &[u8]) -> Result<Vec<Found>, StoreError> {
        let mut out = Vec::new();
        self.iterate(CF_MESSAGES, prefix, keys::prefix_end(prefix), |k, v| {
            out.push((k.to_vec(), v.to_vec()));
            Ok(true)
        })?;
        Ok(out)
    }
}

/// Adds a signed delta to a counter without wrapping below zero.
fn add_signed(counter: &AtomicU64, delta: i64) {
    // fetch_update only fails when the closure returns None, which it never does.
    let _ = counter.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
        Some(v.saturating_add_signed(delta))
    });
}

impl AccountTxn<'_> {
    /// The account this txn changes.
    pub(super) fn account(&self) -> &AccountId {
        &self.account
    }

    /// Looks `hash` up, seeing this txn's own pending writes first.
    pub(super) fn lookup(&self, hash: &str) -> Result<Option<Found>, StoreError> {
        match self.overlay.get(hash) {
            Some(state) => Ok(state.clone()),
            None => self.inner.find_hash(hash),
        }
    }

    /// Like [`AccountTxn::lookup`], but only a message owned by this txn's account.
    pub(super) fn lookup_owned(&self, hash: &str) -> Result<Option<Found>, StoreError> {
        let account = self.account.to_bytes();
        Ok(self
            .lookup(hash)?
            .filter(|(key, _)| key.starts_with(&account)))
    }

    /// Inserts `msg` (which must belong to this account) under a fresh sequence number.
    pub(super) fn insert(&mut self, msg: &Message) -> Result<(), StoreError> {
        let seq = self.inner.next_seq()?;
        let key = keys::message_key(&msg.account, msg.namespace, seq);
        // A copy with a history (an import) keeps it, and its expiry is the history's fold.
        let encoded = msg.expiry_log.as_ref().map(ExpiryLog::encode);
        let record = match (&msg.expiry_log, &encoded) {
            (Some(log), Some(b)) => Record::of(msg).with_log(log, b),
            _ => Record::of(msg),
        };
        let value = record.encode()?;
        self.batch.put_cf(self.inner.cf(CF_MESSAGES)?, key, &value);
        self.batch
            .put_cf(self.inner.cf(CF_HASHES)?, msg.hash.as_bytes(), key);
        self.batch.put_cf(
            self.inner.cf(CF_EXPIRIES)?,
            keys::expiry_key(record.expiry_ms, seq),
            key,
        );
        self.delta_messages += 1;
        self.delta_bytes += msg.data.len() as i64;
        self.overlay
            .insert(msg.hash.clone(), Some((key.to_vec(), value)));
        Ok(())
    }

    /// Removes the message at `key` (its row and both index entries).
    pub(super) fn delete(&mut self, key: &[u8], rec: &Record<'_>) -> Result<(), StoreError> {
        let seq = keys::parse_message_key(key)?.seq;
        self.batch.delete_cf(self.inner.cf(CF_MESSAGES)?, key);
        self.batch
            .delete_cf(self.inner.cf(CF_HASHES)?, rec.hash.as_bytes());
        self.batch.delete_cf(
            self.inner.cf(CF_EXPIRIES)?,
            keys::expiry_key(rec.index_ms(), seq),
        );
        self.delta_messages -= 1;
        self.delta_bytes -= rec.data.len() as i64;
        self.overlay.insert(rec.hash.to_string(), None);
        Ok(())
    }

    /// Gives the message at `key` the expiry history `log` and the expiry it folds to (row
    /// rewritten, expiry index re-keyed). Every change of a stored message's expiry goes
    /// through here, so that the history and the expiry never disagree.
    pub(super) fn set_expiry_log(
        &mut self,
        key: &[u8],
        rec: &Record<'_>,
        log: &ExpiryLog,
    ) -> Result<(), StoreError> {
        let encoded = log.encode();
        self.rewrite(key, rec, &rec.with_log(log, &encoded))
    }

    /// Replaces the message at `key`, `old`, by `new` (same hash): row rewritten, expiry
    /// index re-keyed, the body's bytes counted (a husk has none).
    pub(super) fn rewrite(
        &mut self,
        key: &[u8],
        old: &Record<'_>,
        new: &Record<'_>,
    ) -> Result<(), StoreError> {
        let seq = keys::parse_message_key(key)?.seq;
        let new_value = new.encode()?;
        let expiries = self.inner.cf(CF_EXPIRIES)?;
        self.batch
            .delete_cf(expiries, keys::expiry_key(old.index_ms(), seq));
        self.batch
            .put_cf(expiries, keys::expiry_key(new.index_ms(), seq), key);
        self.batch
            .put_cf(self.inner.cf(CF_MESSAGES)?, key, &new_value);
        self.delta_bytes += new.data.len() as i64 - old.data.len() as i64;
        self.overlay
            .insert(old.hash.to_string(), Some((key.to_vec(), new_value)));
        Ok(())
    }

    /// The tombstone of `hash`, seeing this txn's own pending writes first.
    fn tomb(&self, hash: &str) -> Result<Option<Tomb>, StoreError> {
        match self.tombs.get(hash) {
            Some(t) => Ok(*t),
            None => tombstones::read(self.inner, hash),
        }
    }

    /// Writes `new` as the tombstone of `hash` in place of `old`, keeping the unheld count.
    fn set_tomb(&mut self, hash: &str, old: Option<&Tomb>, new: Tomb) -> Result<(), StoreError> {
        tombstones::write(self.inner, &mut self.batch, hash, old, &new)?;
        let mine = |t: &Tomb| i64::from(t.unheld && t.account == self.account);
        self.delta_unheld += mine(&new) - old.map_or(0, mine);
        self.tombs.insert(hash.to_string(), Some(new));
        Ok(())
    }

    /// Records, in this txn's batch, that a client deleted `rec` at `deleted_ms` (the swarm's
    /// acceptance time, see `tombstones.rs`): the deletion and its tombstone commit together.
    /// An existing tombstone is only ever lengthened.
    ///
    /// It lasts until the message's horizon, the latest expiry any copy could have, not its
    /// expiry here: a member that missed a shortening (and the delete) holds a copy that
    /// outlives the shortened expiry, and once the tombstone went, anti-entropy spread that
    /// copy again (docs/simulation.md, finding 9).
    pub(super) fn tombstone(
        &mut self,
        rec: &Record<'_>,
        deleted_ms: i64,
    ) -> Result<(), StoreError> {
        self.tombstone_held(rec.hash, rec.horizon(), deleted_ms)
    }

    /// [`AccountTxn::tombstone`] by hash: a held tombstone of `hash` until `expiry_ms`.
    pub(super) fn tombstone_held(
        &mut self,
        hash: &str,
        expiry_ms: i64,
        deleted_ms: i64,
    ) -> Result<(), StoreError> {
        let old = self.tomb(hash)?;
        let new = tombstones::merged(
            old.as_ref(),
            Tomb {
                expiry_ms,
                account: self.account,
                deleted_ms,
                unheld: false,
            },
        );
        if old != Some(new) {
            self.set_tomb(hash, old.as_ref(), new)?;
        }
        Ok(())
    }

    /// Removes this account's tombstone of `hash`, if it has one (the hand-off delivered it).
    pub(super) fn drop_tombstone(&mut self, hash: &str) -> Result<(), StoreError> {
        if let Some(t) = self.tomb(hash)?
            && t.account == self.account
        {
            tombstones::remove(self.inner, &mut self.batch, hash, &t)?;
            self.delta_unheld -= i64::from(t.unheld);
            self.tombs.insert(hash.to_string(), None);
        }
        Ok(())
    }

    /// Records that a client deleted `hash`, which this node does not hold, at `deleted_ms`
    /// (an unheld tombstone, see `tombstones.rs`). Returns `false`, writing nothing, when the
    /// account already has its maximum of unheld tombstones.
    pub(super) fn tombstone_unheld(
        &mut self,
        hash: &str,
        deleted_ms: i64,
    ) -> Result<bool, StoreError> {
        let old = self.tomb(hash)?;
        let fresh = Tomb {
            expiry_ms: deleted_ms.saturating_add(tombstones::UNHELD_LIFETIME_MS),
            account: self.account,
            deleted_ms,
            unheld: true,
        };
        let new = tombstones::merged(old.as_ref(), fresh);
        if old == Some(new) {
            return Ok(true);
        }
        if new.unheld && !old.is_some_and(|o| o.unheld && o.account == self.account) {
            let count = tombstones::unheld_count(self.inner, &self.account)?;
            if count.saturating_add_signed(self.delta_unheld) >= tombstones::MAX_UNHELD_PER_ACCOUNT
            {
                return Ok(false);
            }
        }
        self.set_tomb(hash, old.as_ref(), new)?;
        Ok(true)
    }

    /// Checks a store of `msg` (this account's) accepted at `accepted_ms` (`None`: an
    /// import) against the hash's tombstone. A winning deletion stays (an unheld tombstone
    /// becomes held: the message proves the hash is the account's); one the store is newer
    /// than is removed in this txn.
    pub(super) fn meet_tombstone(
        &mut self,
        msg: &Message,
        accepted_ms: Option<i64>,
    ) -> Result<Met, StoreError> {
        let Some(t) = self.tomb(&msg.hash)? else {
            return Ok(Met::Nothing);
        };
        if t.account != self.account {
            return Ok(Met::Nothing);
        }
        if t.beats(accepted_ms) {
            if t.unheld {
                self.set_tomb(&msg.hash, Some(&t), Tomb { unheld: false, ..t })?;
            }
            return Ok(Met::Deleted);
        }
        tombstones::remove(self.inner, &mut self.batch, &msg.hash, &t)?;
        self.delta_unheld -= i64::from(t.unheld);
        self.tombs.insert(msg.hash.clone(), None);
        Ok(Met::Cleared)
    }

    /// Deletes an expiry-index entry that no longer matches its message (sweep clean-up).
    pub(super) fn delete_expiry_entry(&mut self, expiry_key: &[u8]) -> Result<(), StoreError> {
        self.batch
            .delete_cf(self.inner.cf(CF_EXPIRIES)?, expiry_key);
        Ok(())
    }

    /// Flushes once the batch holds many operations, bounding its memory in long loops.
    /// Each message's keys are always in one batch, so atomicity per message holds.
    pub(super) fn maybe_flush(&mut self) -> Result<(), StoreError> {
        if self.batch.len() >= FLUSH_EVERY_OPS {
            self.flush()?;
        }
        Ok(())
    }

    /// Writes what is pending (with the account counters) and keeps the lock for more.
    pub(super) fn flush(&mut self) -> Result<(), StoreError> {
        if self.batch.is_empty() {
            return Ok(());
        }
        let mut became = 0i64;
        if self.delta_messages != 0 || self.delta_bytes != 0 {
            let acct_key = self.account.to_bytes();
            let old = match self.inner.get(CF_ACCOUNTS, &acct_key, "read account")? {
                Some(v) => AccountCounts::decode(&v)?,
                None => AccountCounts::default(),
            };
            let new = AccountCounts {
                messages: old.messages.saturating_add_signed(self.delta_messages),
                data_bytes: old.data_bytes.saturating_add_signed(self.delta_bytes),
            };
            let cf = self.inner.cf(CF_ACCOUNTS)?;
            if new.messages == 0 {
                self.batch.delete_cf(cf, acct_key);
            } else {
                self.batch.put_cf(cf, acct_key, new.encode());
            }
            became = i64::from(new.messages > 0) - i64::from(old.messages > 0);
        }
        if self.delta_unheld != 0 {
            let n = tombstones::unheld_count(self.inner, &self.account)?
                .saturating_add_signed(self.delta_unheld);
            tombstones::put_unheld_count(self.inner, &mut self.batch, &self.account, n)?;
        }
        let batch = std::mem::take(&mut self.batch);
        self.inner.write(batch, "write account batch")?;
        add_signed(&self.inner.messages, self.delta_messages);
        add_signed(&self.inner.data_bytes, self.delta_bytes);
        add_signed(&self.inner.accounts, became);
        self.delta_messages = 0;
        self.delta_bytes = 0;
        self.delta_unheld = 0;
        self.overlay.clear();
        self.tombs.clear();
        Ok(())
    }

    /// Writes what is pending and releases the lock.
    pub(super) fn commit(mut self) -> Result<(), StoreError> {
        self.flush()
    }
}
