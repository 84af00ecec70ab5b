//! Byte layout of every RocksDB key and value the store writes.
//!
//! Owns the encodings (and their decoders) so that the ordering rules live in one place:
//! big-endian integers, with the sign bit flipped on signed ones, so that RocksDB's bytewise
//! order is numeric order. Pure: no database access, no clock.
//!
//! | column family | key | value |
//! |---|---|---|
//! | `messages` | account(33) ‖ ns(2) ‖ seq(8) | [`Record`] |
//! | `hashes` | hash (ASCII) | message key (43) |
//! | `expiries` | expiry(8) ‖ seq(8) | message key (43) |
//! | `revocations` | account(33) ‖ token(36) | revoked-at ms (8) |
//! | `accounts` | account(33) | message count(8) ‖ data bytes(8) |
//! | `meta` | ASCII name | see `db.rs` |

use super::StoreError;
use crate::message::{AccountId, Message, Namespace};

/// Length of an encoded account (type byte + 32 key bytes).
pub(super) const ACCOUNT_LEN: usize = 33;
/// Length of account ‖ namespace: the prefix shared by one account+namespace.
pub(super) const ACCOUNT_NS_LEN: usize = ACCOUNT_LEN + 2;
/// Length of a full message key.
pub(super) const MESSAGE_KEY_LEN: usize = ACCOUNT_NS_LEN + 8;
/// Length of an expiry-index key.
pub(super) const EXPIRY_KEY_LEN: usize = 16;
/// Length of a subaccount token.
pub(super) const TOKEN_LEN: usize = 36;
/// Format byte at the head of every [`Record`]: lets a future layout coexist with this one.
const RECORD_VERSION: u8 = 1;
/// Format byte of a record that carries the time its expiry was last set ([`Record::expiry_set_ms`]).
/// Records without one keep version 1, so stores written before it read unchanged.
const RECORD_VERSION_STAMPED: u8 = 2;
/// version(1) ‖ timestamp(8) ‖ expiry(8) ‖ hash length(2).
const RECORD_HEADER_LEN: usize = 1 + 8 + 8 + 2;
/// The stamp a version-2 record adds after the header.
const STAMP_LEN: usize = 8;

/// `i64` → 8 bytes whose bytewise order is the numeric order (sign bit flipped, big-endian).
pub(super) fn ordered_i64(v: i64) -> [u8; 8] {
    ((v as u64) ^ (1 << 63)).to_be_bytes()
}

/// Inverse of [`ordered_i64`] (only tests need to read an expiry key back).
#[cfg(test)]
pub(super) fn from_ordered_i64(b: [u8; 8]) -> i64 {
    (u64::from_be_bytes(b) ^ (1 << 63)) as i64
}

/// `i16` namespace → 2 bytes in numeric order (sign bit flipped, big-endian).
fn ordered_ns(ns: Namespace) -> [u8; 2] {
    ((ns.0 as u16) ^ 0x8000).to_be_bytes()
}

/// account ‖ ns: every message of one account+namespace starts with these 35 bytes.
pub(super) fn account_ns_prefix(account: &AccountId, ns: Namespace) -> [u8; ACCOUNT_NS_LEN] {
    let mut out = [0u8; ACCOUNT_NS_LEN];
    out[..ACCOUNT_LEN].copy_from_slice(&account.to_bytes());
    out[ACCOUNT_LEN..].copy_from_slice(&ordered_ns(ns));
    out
}

/// The message key: account ‖ ns ‖ seq. `seq` is store-wide and monotonic, so a range scan
/// of one account+namespace yields insertion order.
pub(super) fn message_key(account: &AccountId, ns: Namespace, seq: u64) -> [u8; MESSAGE_KEY_LEN] {
    let mut out = [0u8; MESSAGE_KEY_LEN];
    out[..ACCOUNT_NS_LEN].copy_from_slice(&account_ns_prefix(account, ns));
    out[ACCOUNT_NS_LEN..].copy_from_slice(&seq.to_be_bytes());
    out
}

/// The parts of a message key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct MessageKey {
    /// Owner.
    pub(super) account: AccountId,
    /// Namespace.
    pub(super) namespace: Namespace,
    /// Store-wide insertion sequence number.
    pub(super) seq: u64,
}

/// Decodes a message key (from the `messages` CF or an index value).
pub(super) fn parse_message_key(key: &[u8]) -> Result<MessageKey, StoreError> {
    let corrupt = || StoreError::Corrupt {
        what: "message key",
    };
    if key.len() != MESSAGE_KEY_LEN {
        return Err(corrupt());
    }
    let account = AccountId::from_bytes(&key[..ACCOUNT_LEN]).map_err(|_| corrupt())?;
    let ns_raw = u16::from_be_bytes([key[ACCOUNT_LEN], key[ACCOUNT_LEN + 1]]) ^ 0x8000;
    let mut seq = [0u8; 8];
    seq.copy_from_slice(&key[ACCOUNT_NS_LEN..]);
    Ok(MessageKey {
        account,
        namespace: Namespace(ns_raw as i16),
        seq: u64::from_be_bytes(seq),
    })
}

/// The smallest key greater than every key starting with `prefix` (an exclusive upper
/// bound), or `None` when the prefix is all `0xff` and nothing can follow it.
pub(super) fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

/// Expiry-index key: expiry ‖ seq. Ordered by expiry first, so a sweep reads only the
/// expired head of the index and never live data.
pub(super) fn expiry_key(expiry_ms: i64, seq: u64) -> [u8; EXPIRY_KEY_LEN] {
    let mut out = [0u8; EXPIRY_KEY_LEN];
    out[..8].copy_from_slice(&ordered_i64(expiry_ms));
    out[8..].copy_from_slice(&seq.to_be_bytes());
    out
}

/// Revocation key: account ‖ token.
pub(super) fn revocation_key(account: &AccountId, token: &[u8; TOKEN_LEN]) -> Vec<u8> {
    let mut out = Vec::with_capacity(ACCOUNT_LEN + TOKEN_LEN);
    out.extend_from_slice(&account.to_bytes());
    out.extend_from_slice(token);
    out
}

/// A stored message as it sits in the `messages` CF, borrowing the value bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Record<'a> {
    /// Client timestamp (ms).
    pub(super) timestamp_ms: i64,
    /// Expiry (ms).
    pub(super) expiry_ms: i64,
    /// The message hash.
    pub(super) hash: &'a str,
    /// The body.
    pub(super) data: &'a [u8],
    /// When a client's plain `expire` (set) last set the expiry: the entry node's acceptance
    /// time, the same on every member. Later sets win, older ones are dropped
    /// (`store::expiry`). `None` until the first set.
    pub(super) expiry_set_ms: Option<i64>,
}

impl<'a> Record<'a> {
    /// The record of `msg`.
    pub(super) fn of(msg: &'a Message) -> Self {
        Record {
            timestamp_ms: msg.timestamp_ms,
            expiry_ms: msg.expiry_ms,
            hash: &msg.hash,
            data: &msg.data,
            expiry_set_ms: None,
        }
    }

    /// Encodes version ‖ timestamp ‖ expiry ‖ hash length(u16) ‖ [set stamp(8)] ‖ hash ‖ data
    /// (the stamp, and version 2, only when the expiry was set by a client).
    pub(super) fn encode(&self) -> Result<Vec<u8>, StoreError> {
        // Hashes are 43 characters on the wire; a longer one can only come from a bug or a
        // malicious peer, and refusing it beats truncating it.
        let hash_len = u16::try_from(self.hash.len()).map_err(|_| StoreError::Corrupt {
            what: "message hash longer than 65535 bytes",
        })?;
        let stamp_len = if self.expiry_set_ms.is_some() {
            STAMP_LEN
        } else {
            0
        };
        let mut out =
            Vec::with_capacity(RECORD_HEADER_LEN + stamp_len + self.hash.len() + self.data.len());
        out.push(match self.expiry_set_ms {
            None => RECORD_VERSION,
            Some(_) => RECORD_VERSION_STAMPED,
        });
        out.extend_from_slice(&self.timestamp_ms.to_be_bytes());
        out.extend_from_slice(&self.expiry_ms.to_be_bytes());
        out.extend_from_slice(&hash_len.to_be_bytes());
        if let Some(stamp) = self.expiry_set_ms {
            out.extend_from_slice(&stamp.to_be_bytes());
        }
        out.extend_from_slice(self.hash.as_bytes());
        out.extend_from_slice(self.data);
        Ok(out)
    }

    /// Decodes a value written by [`Record::encode`].
    pub(super) fn decode(value: &'a [u8]) -> Result<Self, StoreError> {
        let corrupt = || StoreError::Corrupt {
            what: "message record",
        };
        let stamped = match value.first() {
            Some(&RECORD_VERSION) => false,
            Some(&RECORD_VERSION_STAMPED) => true,
            _ => return Err(corrupt()),
        };
        let header = RECORD_HEADER_LEN + if stamped { STAMP_LEN } else { 0 };
        if value.len() < header {
            return Err(corrupt());
        }
        let int = |at: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&value[at..at + 8]);
            i64::from_be_bytes(b)
        };
        let hash_len = u16::from_be_bytes([value[17], value[18]]) as usize;
        let rest = &value[header..];
        if rest.len() < hash_len {
            return Err(corrupt());
        }
        let (hash, data) = rest.split_at(hash_len);
        Ok(Record {
            timestamp_ms: int(1),
            expiry_ms: int(9),
            hash: std::str::from_utf8(hash).map_err(|_| corrupt())?,
            data,
            expiry_set_ms: stamped.then(|| int(RECORD_HEADER_LEN)),
        })
    }

    /// The same record with another expiry.
    pub(super) fn with_expiry(self, expiry_ms: i64) -> Self {
        Record { expiry_ms, ..self }
    }

    /// The same record with another expiry, set by a client's `expire` accepted at `at_ms`.
    pub(super) fn with_expiry_set(self, expiry_ms: i64, at_ms: i64) -> Self {
        Record {
            expiry_ms,
            expiry_set_ms: Some(at_ms),
            ..self
        }
    }

    /// Whether the record is expired at `now_ms` (same rule as [`Message::is_expired`]).
    pub(super) fn is_expired(&self, now_ms: i64) -> bool {
        self.expiry_ms <= now_ms
    }

    /// An owned [`Message`] for `key`'s account and namespace.
    pub(super) fn to_message(self, key: &MessageKey) -> Message {
        Message {
            account: key.account,
            namespace: key.namespace,
            hash: self.hash.to_string(),
            timestamp_ms: self.timestamp_ms,
            expiry_ms: self.expiry_ms,
            data: self.data.to_vec(),
        }
    }
}

/// Per-account counters kept in the `accounts` CF, so store-wide stats are cheap on open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(super) struct AccountCounts {
    /// Messages stored (swept or not).
    pub(super) messages: u64,
    /// Sum of their body lengths.
    pub(super) data_bytes: u64,
}

impl AccountCounts {
    /// count ‖ bytes, big-endian.
    pub(super) fn encode(&self) -> [u8; 16] {
        let mut out = [0u8; 16];
        out[..8].copy_from_slice(&self.messages.to_be_bytes());
        out[8..].copy_from_slice(&self.data_bytes.to_be_bytes());
        out
    }

    /// Inverse of [`AccountCounts::encode`].
    pub(super) fn decode(v: &[u8]) -> Result<Self, StoreError> {
        if v.len() != 16 {
            return Err(StoreError::Corrupt {
                what: "account counters",
            });
        }
        let mut a = [0u8; 8];
        let mut b = [0u8; 8];
        a.copy_from_slice(&v[..8]);
        b.copy_from_slice(&v[8..]);
        Ok(AccountCounts {
            messages: u64::from_be_bytes(a),
            data_bytes: u64::from_be_bytes(b),
        })
    }
}

/// Decodes an 8-byte big-endian `u64` (meta records).
pub(super) fn decode_u64(v: &[u8], what: &'static str) -> Result<u64, StoreError> {
    let b: [u8; 8] = v.try_into().map_err(|_| StoreError::Corrupt { what })?;
    Ok(u64::from_be_bytes(b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn acct(kind: u8, fill: u8) -> AccountId {
        AccountId {
            kind,
            key: [fill; 32],
        }
    }

    #[test]
    fn namespace_order_is_numeric() {
        let a = acct(5, 7);
        let nss = [i16::MIN, -3741, -21, -10, -1, 0, 1, 2, 40, i16::MAX];
        let keys: Vec<_> = nss
            .iter()
            .map(|&n| message_key(&a, Namespace(n), 0))
            .collect();
        let mut sorted = keys.clone();
        sorted.sort();
        assert_eq!(keys, sorted);
    }

    #[test]
    fn expiry_order_is_numeric() {
        let ks: Vec<_> = [-5_i64, 0, 1, 1_700_000_000_000, i64::MAX]
            .iter()
            .map(|&e| expiry_key(e, 3))
            .collect();
        let mut sorted = ks.clone();
        sorted.sort();
        assert_eq!(ks, sorted);
        assert!(expiry_key(10, u64::MAX) < expiry_key(11, 0));
    }

    #[test]
    fn prefix_end_bounds() {
        assert_eq!(prefix_end(&[1, 2, 3]), Some(vec![1, 2, 4]));
        assert_eq!(prefix_end(&[1, 0xff]), Some(vec![2]));
        assert_eq!(prefix_end(&[0xff, 0xff]), None);
    }

    #[test]
    fn corrupt_values_are_errors() {
        assert!(Record::decode(&[]).is_err());
        assert!(Record::decode(&[9; 40]).is_err());
        let mut v = Record {
            timestamp_ms: 1,
            expiry_ms: 2,
            hash: "abc",
            data: b"",
            expiry_set_ms: None,
        }
        .encode()
        .expect("encode");
        v.truncate(RECORD_HEADER_LEN + 2);
        assert!(Record::decode(&v).is_err());
        // A stamped record cut inside its stamp.
        let mut v = Record {
            timestamp_ms: 1,
            expiry_ms: 2,
            hash: "",
            data: b"",
            expiry_set_ms: Some(3),
        }
        .encode()
        .expect("encode");
        v.truncate(RECORD_HEADER_LEN + 4);
        assert!(Record::decode(&v).is_err());
        assert!(parse_message_key(&[0; 10]).is_err());
        assert!(AccountCounts::decode(&[0; 15]).is_err());
        assert!(decode_u64(&[0; 7], "x").is_err());
    }

    proptest! {
        #[test]
        fn message_key_round_trip(kind: u8, key: [u8; 32], ns: i16, seq: u64) {
            let a = AccountId { kind, key };
            let k = message_key(&a, Namespace(ns), seq);
            let p = parse_message_key(&k).expect("parse");
            prop_assert_eq!(p, MessageKey { account: a, namespace: Namespace(ns), seq });
            prop_assert!(k.starts_with(&account_ns_prefix(&a, Namespace(ns))));
        }

        #[test]
        fn record_round_trip(ts: i64, exp: i64, hash in "[A-Za-z0-9+/]{0,60}",
                             data in proptest::collection::vec(any::<u8>(), 0..300),
                             set in proptest::option::of(any::<i64>())) {
            let r = Record { timestamp_ms: ts, expiry_ms: exp, hash: &hash, data: &data,
                             expiry_set_ms: set };
            let v = r.encode().expect("encode");
            let stamp = if set.is_some() { STAMP_LEN } else { 0 };
            prop_assert_eq!(v.len(), RECORD_HEADER_LEN + stamp + hash.len() + data.len());
            prop_assert_eq!(Record::decode(&v).expect("decode"), r);
        }

        #[test]
        fn ordered_i64_round_trip_and_order(a: i64, b: i64) {
            prop_assert_eq!(from_ordered_i64(ordered_i64(a)), a);
            prop_assert_eq!(a.cmp(&b), ordered_i64(a).cmp(&ordered_i64(b)));
        }

        #[test]
        fn counts_round_trip(m: u64, d: u64) {
            let c = AccountCounts { messages: m, data_bytes: d };
            prop_assert_eq!(AccountCounts::decode(&c.encode()).expect("decode"), c);
        }
    }
}
