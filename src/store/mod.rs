//! The message store: the only module that names `rocksdb`.
//!
//! Owns the on-disk layout (column families, key encoding), expiry, the size cap and
//! revocations. Must not know HTTP, JSON or the swarm. Every method takes `now_ms` where
//! time matters, so tests control the clock.
//!
//! Layout: `keys` (byte encodings), `db` (open, tuning, shared machinery, [`Store`]),
//! `txn` (one account's atomic change), and one file per group of operations: `messages`
//! (store, bulk_store, get_by_hash, scan), `retrieve`, `delete`, `expiry` (expire, sweep),
//! `revocations`; for replication: `pending` (durable retry queue), `tombstones` (client
//! deletions, so replicated copies never resurrect them) and `replica` (the reads and
//! deletions hand-off and anti-entropy need). The types below are the contract the rest of
//! the crate uses.

mod db;
mod delete;
mod expiry;
mod keys;
mod messages;
mod pending;
mod replica;
mod retrieve;
mod revocations;
#[cfg(test)]
mod test_util;
mod tombstones;
mod txn;

pub use db::{NewMessageObserver, Store};
pub use pending::{PendingItem, PendingPayload};
pub use replica::{MessageMeta, hash_bucket};
pub use revocations::RevocationState;
pub use tombstones::{TombstoneRecord, UNHELD_LIFETIME_MS};

use crate::message::Message;
use std::collections::BTreeMap;

/// Tuning of the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreOptions {
    /// Refuse stores once the database occupies this many bytes on disk.
    pub max_bytes: u64,
    /// RocksDB's block cache (decoded SST blocks), shared by every column family.
    pub cache_bytes: u64,
    /// All memtables together (writes not yet flushed to SST files): past this, RocksDB
    /// flushes the largest. With `cache_bytes` it bounds what the store holds in memory.
    pub memtable_bytes: u64,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            max_bytes: crate::config::DEFAULT_MAX_STORE_BYTES,
            cache_bytes: crate::config::DEFAULT_CACHE_BYTES,
            memtable_bytes: crate::config::DEFAULT_MEMTABLE_BYTES,
        }
    }
}

/// What `store` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreOutcome {
    /// A new message was inserted.
    New,
    /// The hash existed; its expiry was raised to the new, later expiry.
    Extended,
    /// The hash existed with an equal or later expiry: nothing changed.
    Exists,
    /// A client deleted the hash after (or concurrently with) this store's acceptance:
    /// nothing was stored (see `tombstones.rs`).
    Deleted,
}

/// Errors of the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The size cap is reached: stores are refused until messages expire.
    #[error("store is full ({used} of {max} bytes)")]
    Full {
        /// Bytes in use.
        used: u64,
        /// The cap.
        max: u64,
    },
    /// RocksDB failed.
    #[error("database error during {op}")]
    Db {
        /// What we were doing.
        op: &'static str,
        /// The RocksDB error.
        #[source]
        source: rocksdb::Error,
    },
    /// Data on disk did not decode (corruption or a format from the future).
    #[error("corrupt record in {what}")]
    Corrupt {
        /// Which record kind.
        what: &'static str,
    },
}

/// Result of a retrieve.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Retrieved {
    /// Messages in insertion order.
    pub messages: Vec<Message>,
    /// More messages follow (truncated by count or size).
    pub more: bool,
}

/// How `update_expiry` may move expiries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpireMode {
    /// Set to the new value in either direction.
    Set,
    /// Only lower (`WHERE expiry > new`).
    ShortenOnly,
    /// Only raise (`WHERE expiry < new`).
    ExtendOnly,
    /// Only raise, and not trivially: the client asked to `extend` (upstream 2.9+). A raise of
    /// less than 1 % of the message's lifetime (expiry − timestamp) leaves it unchanged, so
    /// clients that re-extend on every read do not rewrite every message every time.
    ExtendNonTrivial,
}

/// Whether raising `expiry_ms` to `new_expiry_ms` is a trivial extension: less than 1 % of
/// the lifetime `expiry_ms - timestamp_ms` (exact integer arithmetic, no overflow).
pub fn is_trivial_extension(timestamp_ms: i64, expiry_ms: i64, new_expiry_ms: i64) -> bool {
    let gain = i128::from(new_expiry_ms) - i128::from(expiry_ms);
    let lifetime = i128::from(expiry_ms) - i128::from(timestamp_ms);
    gain * 100 < lifetime
}

/// Result of `update_expiry`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ExpiryUpdate {
    /// Hashes whose expiry was set, with the new expiry.
    pub updated: BTreeMap<String, i64>,
    /// Hashes found but not changed (mode forbade it), with their current expiry.
    pub unchanged: BTreeMap<String, i64>,
}

/// Counters for metrics and status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StoreStats {
    /// Live (possibly not yet swept) messages.
    pub messages: u64,
    /// Sum of message body bytes.
    pub data_bytes: u64,
    /// Accounts holding at least one message.
    pub accounts: u64,
    /// Bytes the database occupies on disk (compared with the cap).
    pub disk_bytes: u64,
    /// Bytes held in memtables (unflushed writes), at most about `memtable_bytes`.
    pub memtable_bytes: u64,
    /// Bytes held in the block cache, at most `cache_bytes`.
    pub cache_bytes: u64,
    /// Bytes of SST index and filter blocks held outside the cache (grows with the data).
    pub table_reader_bytes: u64,
}
