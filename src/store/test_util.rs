//! Helpers shared by the store's unit tests: temp databases, accounts and messages.

use super::{Store, StoreOptions};
use crate::message::{AccountId, Message, Namespace, message_hash};

/// A fixed "now" (2023-11-14), far from zero so expiries in the past are positive.
pub(super) const NOW: i64 = 1_700_000_000_000;
/// One hour in ms.
pub(super) const HOUR: i64 = 3_600_000;
/// A size budget no test reaches.
pub(super) const BIG: i64 = i64::MAX;

/// A fresh temporary directory (removed on drop).
pub(super) fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().expect("tempdir")
}

/// Options with a cap no test reaches unless it sets its own.
pub(super) fn options() -> StoreOptions {
    StoreOptions {
        max_bytes: 1 << 40,
        ..Default::default()
    }
}

/// Opens the store in `dir`.
pub(super) fn open(dir: &tempfile::TempDir) -> Store {
    Store::open(dir.path(), options()).expect("open")
}

/// A distinct Session-ID-like account per `n`, spread over lock stripes.
pub(super) fn account(n: u8) -> AccountId {
    let mut key = [n; 32];
    key[0] = n.wrapping_mul(37);
    AccountId { kind: 0x05, key }
}

/// A message with its real hash.
pub(super) fn msg(account: &AccountId, ns: i16, data: &[u8], ts: i64, expiry: i64) -> Message {
    Message {
        account: *account,
        namespace: Namespace(ns),
        hash: message_hash(account, Namespace(ns), data),
        timestamp_ms: ts,
        expiry_ms: expiry,
        data: data.to_vec(),
        expiry_log: None,
    }
}
