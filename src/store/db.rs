//! Opening the RocksDB database, its tuning, and the store-wide machinery every operation
//! shares: column-family handles, per-account lock stripes, the sequence allocator, the size
//! cap and the stats counters.
//!
//! Must not hold message semantics (that is `txn.rs` and the operation files) and must not
//! take a store-wide write lock: concurrency comes from RocksDB plus the account stripes.
//!
//! Durability choice: every write goes through the WAL with `sync = false`. RocksDB has
//! handed the WAL record to the kernel (a `write(2)`) before `write()` returns, so an
//! acknowledged store survives `kill -9` of the process; it is not fsynced, so a power loss
//! may lose the last moments (the C++ server's SQLite `synchronous=NORMAL` in WAL mode makes
//! the same trade). `flush()` syncs everything on shutdown, and `sync_wal()` before a
//! hand-off is acknowledged: the sender deletes its copy on that acknowledgement.

use super::keys::{self, AccountCounts};
use super::{StoreError, StoreOptions, StoreStats};
use crate::message::AccountId;
use rocksdb::{
    BlockBasedOptions, Cache, ColumnFamily, ColumnFamilyDescriptor, DB, DBCompressionType,
    FlushOptions, Options, SliceTransform, WriteBatch, WriteBufferManager, WriteOptions,
};
use std::path::Path;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// Column family of messages (account ‖ ns ‖ seq → record).
pub(super) const CF_MESSAGES: &str = "messages";
/// Column family of the hash index (hash → message key).
pub(super) const CF_HASHES: &str = "hashes";
/// Column family of the expiry index (expiry ‖ seq → message key).
pub(super) const CF_EXPIRIES: &str = "expiries";
/// Column family of revoked subaccount tokens (account ‖ token → revoked-at).
pub(super) const CF_REVOCATIONS: &str = "revocations";
/// Column family of per-account counters (account → count ‖ bytes).
pub(super) const CF_ACCOUNTS: &str = "accounts";
/// Column family of store-wide records (format version, sequence reservation).
pub(super) const CF_META: &str = "meta";
/// Column family of the replication retry queue (due ‖ id → entry), see `pending.rs`.
pub(super) const CF_PENDING: &str = "pending";
/// Column family of client-deletion tombstones (hash → expiry), see `tombstones.rs`.
pub(super) const CF_TOMBSTONES: &str = "tombstones";
const ALL_CFS: [&str; 8] = [
    CF_MESSAGES,
    CF_HASHES,
    CF_EXPIRIES,
    CF_REVOCATIONS,
    CF_ACCOUNTS,
    CF_META,
    CF_PENDING,
    CF_TOMBSTONES,
];

/// Meta key of the on-disk format version.
const META_FORMAT: &[u8] = b"format";
/// The format this code writes and reads.
const FORMAT_VERSION: u64 = 1;
/// Meta key of the sequence reservation: every seq ever handed out is below it.
const META_SEQ_RESERVED: &[u8] = b"seq_reserved";
/// Sequence numbers reserved per meta write. A restart skips at most this many (u64 never
/// runs out), in exchange for one tiny synchronous write per 65 536 inserts.
const SEQ_BLOCK: u64 = 1 << 16;
/// Lock stripes: enough that two busy accounts rarely share one on a many-core box.
const LOCK_STRIPES: usize = 256;
/// The size figure is re-read from RocksDB at most this often.
const SIZE_CACHE_MS: i64 = 1_000;
/// Block size of the messages CF. A retrieve reads consecutive messages (10 × 1 KiB is
/// typical), so 16 KiB blocks mean one or two block reads per page instead of three or four
/// at the default 4 KiB (BENCHMARKS.md "Store").
const MESSAGES_BLOCK_BYTES: usize = 16 << 10;
/// The smallest memtable a column family gets, whatever the budget: below this RocksDB
/// flushes tiny files and compaction does nothing else.
const MIN_CF_MEMTABLE_BYTES: usize = 1 << 20;

/// The message store. Cheap to clone (one `Arc`); `Send + Sync`; every method is
/// synchronous and short, so async callers may run it on a blocking thread or inline.
#[derive(Clone)]
pub struct Store {
    pub(super) inner: Arc<Inner>,
}

/// State shared by all clones of a [`Store`].
pub(super) struct Inner {
    pub(super) db: DB,
    /// The block cache and the memtable budget, kept to report their usage.
    cache: Cache,
    write_buffers: WriteBufferManager,
    /// Serialises check-then-write on one account; different stripes write concurrently.
    locks: Box<[Mutex<()>]>,
    seq_next: AtomicU64,
    seq_reserved: AtomicU64,
    seq_reserve_lock: Mutex<()>,
    pub(super) messages: AtomicU64,
    pub(super) data_bytes: AtomicU64,
    pub(super) accounts: AtomicU64,
    size_checked_at: AtomicI64,
    size_bytes: AtomicU64,
    max_bytes: u64,
    write_opts: WriteOptions,
    /// Length counter and lock of the retry queue (`pending.rs`).
    pub(super) pending: super::pending::PendingState,
    /// How many times `sync_wal` ran (tests show who syncs before acknowledging).
    wal_syncs: AtomicU64,
    /// Told of every message newly inserted, whatever wrote it (`Store::observe`).
    pub(super) observer: std::sync::OnceLock<NewMessageObserver>,
}

/// A callback run for every message the store newly inserts (never for a duplicate), right
/// after its write is committed: push subscriptions (`monitor`) hang off it. It runs on the
/// writer's thread, so it must be quick and must not call back into the store.
pub type NewMessageObserver = Arc<dyn Fn(&crate::message::Message) + Send + Sync>;

/// Options of one column family: no compression (bodies are ciphertext, so it would burn CPU
/// for nothing), the shared block cache, a memtable of `memtable` bytes, and a bloom filter
/// where point lookups dominate.
fn cf_options(cache: &Cache, memtable: usize, bloom: bool, tombstone_heavy: bool) -> Options {
    let mut block = BlockBasedOptions::default();
    block.set_block_cache(cache);
    if bloom {
        block.set_bloom_filter(10.0, false);
        block.set_whole_key_filtering(true);
    }
    let mut o = Options::default();
    o.set_compression_type(DBCompressionType::None);
    o.set_block_based_table_factory(&block);
    o.set_write_buffer_size(memtable);
    if tombstone_heavy {
        // Sweeps and deletes leave runs of tombstones at the head of the expiry index and
        // inside accounts; compacting such files early keeps seeks over them cheap.
        o.add_compact_on_deletion_collector_factory(128, 64, 0.5);
    }
    o
}

/// Options of the messages CF: like [`cf_options`], plus a bloom filter over the
/// account ‖ namespace prefix (and whole keys). A retrieve seeks one such prefix; the filter
/// lets that seek skip every SST file (so every LSM level) that holds nothing of it, instead
/// of reading a data block per level. Measured in BENCHMARKS.md ("Store").
fn messages_cf_options(cache: &Cache, memtable: usize) -> Options {
    let mut block = BlockBasedOptions::default();
    block.set_block_cache(cache);
    block.set_block_size(MESSAGES_BLOCK_BYTES);
    block.set_bloom_filter(10.0, false);
    block.set_whole_key_filtering(true);
    let mut o = Options::default();
    o.set_prefix_extractor(SliceTransform::create_fixed_prefix(keys::ACCOUNT_NS_LEN));
    o.set_compression_type(DBCompressionType::None);
    o.set_block_based_table_factory(&block);
    o.set_write_buffer_size(memtable);
    // Deletes leave runs of tombstones inside accounts (see `cf_options`).
    o.add_compact_on_deletion_collector_factory(128, 64, 0.5);
    o
}

/// A byte budget as `usize`, saturating on 32-bit targets.
fn to_usize(bytes: u64) -> usize {
    usize::try_from(bytes).unwrap_or(usize::MAX)
}

impl Store {
    /// Opens (creating if missing) the store at `path`, recovering the sequence counter and
    /// the stats counters from disk.
    pub fn open(path: &Path, opts: StoreOptions) -> Result<Store, StoreError> {
        // HyperClockCache: lookups take no shard mutex, so concurrent readers that miss and
        // insert blocks do not serialise on a cache shard as they can with the LRU cache.
        let cache = Cache::new_hyper_clock_cache(to_usize(opts.cache_bytes), 0);
        // One budget for every memtable: past it RocksDB flushes the largest, so memory stays
        // bounded however the writes spread over column families. No stall: a node that
        // writes faster than it flushes is better slowed by RocksDB's own L0 limits.
        let memtables = to_usize(opts.memtable_bytes);
        let write_buffers = WriteBufferManager::new_write_buffer_manager(memtables, false);
        // Bodies dominate the bytes; the indexes and counters get a fraction each.
        let messages_memtable = (memtables / 2).max(MIN_CF_MEMTABLE_BYTES);
        let index_memtable = (memtables / 8).max(MIN_CF_MEMTABLE_BYTES);
        let mut db_opts = Options::default();
        db_opts.create_if_missing(true);
        db_opts.create_missing_column_families(true);
        db_opts.set_compression_type(DBCompressionType::None);
        db_opts.set_max_background_jobs(2);
        db_opts.set_write_buffer_manager(&write_buffers);
        // A rarely written family (meta, revocations) would otherwise pin every WAL file
        // since its last flush; past this much WAL RocksDB flushes it.
        db_opts.set_max_total_wal_size(opts.memtable_bytes.saturating_mul(4));
        // Concurrent writers of different accounts overlap their WAL and memtable phases.
        db_opts.set_enable_pipelined_write(true);
        let descriptors = ALL_CFS.iter().map(|&name| {
            let o = match name {
                CF_HASHES | CF_ACCOUNTS | CF_REVOCATIONS => {
                    cf_options(&cache, index_memtable, true, false)
                }
                CF_MESSAGES => messages_cf_options(&cache, messages_memtable),
                CF_EXPIRIES | CF_PENDING => cf_options(&cache, index_memtable, false, true),
                // Looked up by hash on every replicated import, and swept like the index.
                CF_TOMBSTONES => cf_options(&cache, index_memtable, true, true),
                _ => cf_options(&cache, index_memtable, false, false),
            };
            ColumnFamilyDescriptor::new(name, o)
        });
        let db = DB::open_cf_descriptors(&db_opts, path, descriptors)
            .map_err(|source| StoreError::Db { op: "open", source })?;

        let mut inner = Inner {
            db,
            cache,
            write_buffers,
            locks: (0..LOCK_STRIPES).map(|_| Mutex::new(())).collect(),
            seq_next: AtomicU64::new(0),
            seq_reserved: AtomicU64::new(0),
            seq_reserve_lock: Mutex::new(()),
            messages: AtomicU64::new(0),
            data_bytes: AtomicU64::new(0),
            accounts: AtomicU64::new(0),
            size_checked_at: AtomicI64::new(i64::MIN),
            size_bytes: AtomicU64::new(0),
            max_bytes: opts.max_bytes,
            write_opts: WriteOptions::default(),
            pending: super::pending::PendingState::default(),
            wal_syncs: AtomicU64::new(0),
            observer: std::sync::OnceLock::new(),
        };
        inner.check_format()?;
        let reserved = match inner.get(CF_META, META_SEQ_RESERVED, "read seq")? {
            Some(v) => keys::decode_u64(&v, "sequence reservation")?,
            None => 0,
        };
        *inner.seq_next.get_mut() = reserved;
        *inner.seq_reserved.get_mut() = reserved;
        inner.load_counters()?;
        inner.load_pending_len()?;
        Ok(Store {
            inner: Arc::new(inner),
        })
    }

    /// Sets the one observer of new messages (a node sets it once, before serving); `false`
    /// if one was already set.
    pub fn observe(&self, observer: NewMessageObserver) -> bool {
        self.inner.observer.set(observer).is_ok()
    }

    /// Tells the observer, if any, of newly inserted messages.
    pub(super) fn notify_new<'m>(
        &self,
        new: impl IntoIterator<Item = &'m crate::message::Message>,
    ) {
        if let Some(observer) = self.inner.observer.get() {
            for m in new {
                observer(m);
            }
        }
    }

    /// Store-wide counters and the on-disk size.
    pub fn stats(&self) -> StoreStats {
        let i = &self.inner;
        StoreStats {
            messages: i.messages.load(Ordering::Relaxed),
            data_bytes: i.data_bytes.load(Ordering::Relaxed),
            accounts: i.accounts.load(Ordering::Relaxed),
            // A stats read is rare (metrics scrape), so read the live figure, not the cache.
            disk_bytes: i
                .disk_bytes()
                .unwrap_or(i.size_bytes.load(Ordering::Relaxed)),
            // Every memtable, flushed ones still pinned by a reader included: the budget
            // (`write_buffers`) counts only those it manages.
            memtable_bytes: i
                .sum_property(c"rocksdb.size-all-mem-tables")
                .max(i.write_buffers.get_usage() as u64),
            cache_bytes: i.cache.get_usage() as u64,
            table_reader_bytes: i.sum_property(c"rocksdb.estimate-table-readers-mem"),
        }
    }

    /// Fsyncs the WAL: every write so far survives a power loss, not only a crash of the
    /// process. For acknowledgements another node acts on by deleting its copy (hand-off).
    pub fn sync_wal(&self) -> Result<(), StoreError> {
        self.inner.wal_syncs.fetch_add(1, Ordering::Relaxed);
        self.inner
            .db
            .flush_wal(true)
            .map_err(|source| StoreError::Db {
                op: "sync wal",
                source,
            })
    }

    /// How many times [`Store::sync_wal`] ran since the store was opened.
    pub fn wal_syncs(&self) -> u64 {
        self.inner.wal_syncs.load(Ordering::Relaxed)
    }

    /// Flushes every memtable to SST files and syncs the WAL (call on shutdown).
    pub fn flush(&self) -> Result<(), StoreError> {
        let i = &self.inner;
        let cfs = ALL_CFS
            .iter()
            .map(|name| i.cf(name))
            .collect::<Result<Vec<_>, _>>()?;
        let mut fo = FlushOptions::default();
        fo.set_wait(true);
        i.db.flush_cfs_opt(&cfs, &fo)
            .map_err(|source| StoreError::Db {
                op: "flush",
                source,
            })?;
        i.db.flush_wal(true).map_err(|source| StoreError::Db {
            op: "flush wal",
            source,
        })
    }
}

impl Inner {
    /// The handle of a column family opened in [`Store::open`].
    /// An integer property summed over every column family (0 where RocksDB has none).
    fn sum_property(&self, name: &std::ffi::CStr) -> u64 {
        ALL_CFS
            .iter()
            .filter_map(|&cf| self.cf(cf).ok())
            .filter_map(|cf| self.db.property_int_value_cf(cf, name).ok().flatten())
            .sum()
    }

    pub(super) fn cf(&self, name: &'static str) -> Result<&ColumnFamily, StoreError> {
        self.db
            .cf_handle(name)
            .ok_or(StoreError::Corrupt { what: name })
    }

    /// Point read of one key.
    pub(super) fn get(
        &self,
        cf: &'static str,
        key: &[u8],
        op: &'static str,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        self.db
            .get_cf(self.cf(cf)?, key)
            .map_err(|source| StoreError::Db { op, source })
    }

    /// Values of many keys of one column family, in `keys`' order, for reads of data nobody
    /// will ask for again (the sweep reading the messages it is about to delete): the block
    /// reads do not enter the block cache. Why batched: RocksDB's batched MultiGet reads each data block once for all the keys in it,
    /// where one uncached `get` per key re-reads (and re-checks) the block every time; a 4 KiB
    /// block holds several 1 KiB messages of one account, which the sweep reads together.
    pub(super) fn multi_get_uncached(
        &self,
        cf: &'static str,
        keys: &[&[u8]],
        op: &'static str,
    ) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        let mut ro = rocksdb::ReadOptions::default();
        ro.fill_cache(false);
        let sorted = keys.windows(2).all(|w| w[0] <= w[1]);
        self.db
            .batched_multi_get_cf_opt(self.cf(cf)?, keys.iter().copied(), sorted, &ro)
            .into_iter()
            .map(|r| {
                r.map(|v| v.map(|slice| slice.to_vec()))
                    .map_err(|source| StoreError::Db { op, source })
            })
            .collect()
    }

    /// Writes a batch atomically through the WAL (see the header for the durability choice).
    pub(super) fn write(&self, batch: WriteBatch, op: &'static str) -> Result<(), StoreError> {
        self.db
            .write_opt(batch, &self.write_opts)
            .map_err(|source| StoreError::Db { op, source })
    }

    /// Locks the stripe of `account`. The mutex guards no data, so a poisoned one (a panic
    /// elsewhere while holding it) is still a valid lock.
    pub(super) fn lock(&self, account: &AccountId) -> MutexGuard<'_, ()> {
        // Account keys are public keys (uniformly random), so two bytes spread evenly.
        let idx =
            (usize::from(account.key[0]) << 8 | usize::from(account.key[31])) % self.locks.len();
        self.locks[idx]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The next insertion sequence number. Numbers are persisted as reserved blocks before
    /// use, so a number is never handed out twice, even across a crash.
    pub(super) fn next_seq(&self) -> Result<u64, StoreError> {
        let s = self.seq_next.fetch_add(1, Ordering::SeqCst);
        if s < self.seq_reserved.load(Ordering::Acquire) {
            return Ok(s);
        }
        let _g = self
            .seq_reserve_lock
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let reserved = self.seq_reserved.load(Ordering::Acquire);
        if s >= reserved {
            let new_reserved = (s / SEQ_BLOCK + 1) * SEQ_BLOCK;
            let mut batch = WriteBatch::default();
            batch.put_cf(
                self.cf(CF_META)?,
                META_SEQ_RESERVED,
                new_reserved.to_be_bytes(),
            );
            self.write(batch, "reserve seq")?;
            self.seq_reserved.store(new_reserved, Ordering::Release);
        }
        Ok(s)
    }

    /// Refuses a store when the database has reached the cap. The figure is cached for at
    /// most [`SIZE_CACHE_MS`] of caller time, so the property reads cost nothing per store.
    pub(super) fn check_capacity(&self, now_ms: i64) -> Result<(), StoreError> {
        let at = self.size_checked_at.load(Ordering::Relaxed);
        let fresh = matches!(now_ms.checked_sub(at), Some(d) if (0..SIZE_CACHE_MS).contains(&d));
        let used = if fresh {
            self.size_bytes.load(Ordering::Relaxed)
        } else {
            let used = self.disk_bytes()?;
            self.size_bytes.store(used, Ordering::Relaxed);
            self.size_checked_at.store(now_ms, Ordering::Relaxed);
            used
        };
        if used >= self.max_bytes {
            return Err(StoreError::Full {
                used,
                max: self.max_bytes,
            });
        }
        Ok(())
    }

    /// SST files plus memtables of every column family, as RocksDB reports them.
    fn disk_bytes(&self) -> Result<u64, StoreError> {
        let mut total = 0u64;
        for name in ALL_CFS {
            let cf = self.cf(name)?;
            for prop in [
                rocksdb::properties::LIVE_SST_FILES_SIZE,
                rocksdb::properties::CUR_SIZE_ALL_MEM_TABLES,
            ] {
                let v =
                    self.db
                        .property_int_value_cf(cf, prop)
                        .map_err(|source| StoreError::Db {
                            op: "size property",
                            source,
                        })?;
                total = total.saturating_add(v.unwrap_or(0));
            }
        }
        Ok(total)
    }

    /// Writes the format version into a new database, refuses one from the future.
    fn check_format(&self) -> Result<(), StoreError> {
        match self.get(CF_META, META_FORMAT, "read format")? {
            Some(v) => {
                if keys::decode_u64(&v, "format version")? != FORMAT_VERSION {
                    return Err(StoreError::Corrupt {
                        what: "unsupported store format version",
                    });
                }
                Ok(())
            }
            None => {
                let mut batch = WriteBatch::default();
                batch.put_cf(self.cf(CF_META)?, META_FORMAT, FORMAT_VERSION.to_be_bytes());
                self.write(batch, "write format")
            }
        }
    }

    /// Sums the per-account counters (one small record per account, not a message scan).
    fn load_counters(&mut self) -> Result<(), StoreError> {
        let (mut messages, mut bytes, mut accounts) = (0u64, 0u64, 0u64);
        let mut it = self.db.raw_iterator_cf(self.cf(CF_ACCOUNTS)?);
        it.seek_to_first();
        while let Some(v) = it.value() {
            let c = AccountCounts::decode(v)?;
            messages += c.messages;
            bytes += c.data_bytes;
            accounts += 1;
            it.next();
        }
        it.status().map_err(|source| StoreError::Db {
            op: "load counters",
            source,
        })?;
        drop(it);
        *self.messages.get_mut() = messages;
        *self.data_bytes.get_mut() = bytes;
        *self.accounts.get_mut() = accounts;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_util::*;
    use super::*;

    #[test]
    fn store_is_send_sync_clone() {
        fn assert_traits<T: Send + Sync + Clone + 'static>() {}
        assert_traits::<Store>();
    }

    #[test]
    fn sequence_survives_reopen_without_reuse() {
        let dir = tempdir();
        let first = {
            let s = open(&dir);
            let a = s.inner.next_seq().expect("seq");
            let b = s.inner.next_seq().expect("seq");
            assert!(b > a);
            b
        };
        let s = open(&dir);
        assert!(s.inner.next_seq().expect("seq") > first);
    }

    #[test]
    fn flush_and_stats_on_empty_store() {
        let dir = tempdir();
        let s = open(&dir);
        s.flush().expect("flush");
        let st = s.stats();
        assert_eq!((st.messages, st.data_bytes, st.accounts), (0, 0, 0));
    }

    #[test]
    fn size_cap_refuses_stores_not_deletes() {
        let dir = tempdir();
        let cap = 4 << 20;
        let s = Store::open(
            dir.path(),
            StoreOptions {
                max_bytes: cap,
                ..Default::default()
            },
        )
        .expect("open");
        let a = account(1);
        let mut stored = Vec::new();
        let mut now = NOW;
        let full = loop {
            now += SIZE_CACHE_MS;
            let m = msg(&a, 0, &[stored.len() as u8; 60_000], now, now + HOUR);
            match s.store(&m, now) {
                Ok(_) => stored.push(m),
                Err(e) => break e,
            }
            assert!(stored.len() < 200, "cap never reached");
        };
        match full {
            StoreError::Full { used, max } => {
                assert_eq!(max, cap);
                assert!(used >= cap);
            }
            other => panic!("expected Full, got {other:?}"),
        }
        assert!(stored.len() >= 10, "cap hit too early: {}", stored.len());
        assert!(s.stats().disk_bytes >= cap);
        // Bulk imports are refused too, but deletes still work.
        assert!(matches!(
            s.bulk_store(&[msg(&a, 0, b"more", now, now + HOUR)], now),
            Err(StoreError::Full { .. })
        ));
        let gone = s
            .delete_hashes(&a, &[stored[0].hash.clone()], NOW)
            .expect("delete");
        assert_eq!(gone.len(), 1);
        assert_eq!(s.stats().messages as usize, stored.len() - 1);
    }

    #[test]
    fn memtables_stay_within_their_budget() {
        // 24 MiB of writes through a 4 MiB memtable budget: RocksDB must flush as it goes
        // (with one big default memtable all of it would still be in memory) and lose nothing.
        let dir = tempdir();
        let budget = 4u64 << 20;
        let s = Store::open(
            dir.path(),
            StoreOptions {
                memtable_bytes: budget,
                cache_bytes: 2 << 20,
                ..options()
            },
        )
        .expect("open");
        let a = account(3);
        let mut hashes = Vec::new();
        let mut peak = 0;
        for i in 0..400u32 {
            let mut body = vec![0x5a; 60_000];
            body[..4].copy_from_slice(&i.to_be_bytes());
            let m = msg(&a, 0, &body, NOW, NOW + HOUR);
            s.store(&m, NOW).expect("store");
            hashes.push(m.hash);
            peak = peak.max(s.stats().memtable_bytes);
        }
        // A memtable being flushed still counts until its file is written: allow two budgets.
        assert!(
            peak > 0 && peak <= 2 * budget,
            "memtables peaked at {peak} bytes"
        );
        let ssts = std::fs::read_dir(dir.path())
            .expect("read dir")
            .filter(|e| {
                let name = e.as_ref().expect("entry").file_name();
                name.to_string_lossy().ends_with(".sst")
            })
            .count();
        assert!(ssts > 0, "nothing was flushed");
        let st = s.stats();
        assert_eq!(st.messages, 400);
        assert!(st.cache_bytes <= 2 << 20, "cache {} bytes", st.cache_bytes);
        let found = s.get_live(&hashes[..5], NOW).expect("get");
        assert_eq!(found.len(), 5);
    }

    #[test]
    fn size_figure_is_cached_for_a_second() {
        let dir = tempdir();
        let s = Store::open(
            dir.path(),
            StoreOptions {
                max_bytes: 2 << 20,
                ..Default::default()
            },
        )
        .expect("open");
        let a = account(2);
        // Within one second of the first check, the cached (small) figure lets stores pass.
        for i in 0..60u32 {
            let mut body = vec![0u8; 50_000];
            body[..4].copy_from_slice(&i.to_be_bytes());
            s.store(&msg(&a, 0, &body, NOW, NOW + HOUR), NOW + 999)
                .expect("cached figure admits the store");
        }
        assert!(s.stats().disk_bytes >= 2 << 20);
        assert!(matches!(
            s.store(
                &msg(&a, 0, b"x", NOW, NOW + HOUR),
                NOW + 999 + SIZE_CACHE_MS
            ),
            Err(StoreError::Full { .. })
        ));
    }

    #[test]
    fn future_format_is_refused() {
        let dir = tempdir();
        {
            let s = open(&dir);
            let mut b = WriteBatch::default();
            b.put_cf(
                s.inner.cf(CF_META).expect("cf"),
                META_FORMAT,
                99u64.to_be_bytes(),
            );
            s.inner.write(b, "test").expect("write");
        }
        assert!(matches!(
            Store::open(dir.path(), options()),
            Err(StoreError::Corrupt { .. })
        ));
    }
}
