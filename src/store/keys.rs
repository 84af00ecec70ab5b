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
use crate::expiry_log::{ExpiryLog, ExpiryOp, OpKind};
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
/// Format byte of a record written by an earlier version that carried the time a plain
/// `expire` last set its expiry (read as a history of that one set; never written now).
const RECORD_VERSION_STAMPED: u8 = 2;
/// Format byte of a record that carries its expiry history ([`RecordLog::Encoded`]).
/// Records without one keep version 1, so stores written before it read unchanged.
const RECORD_VERSION_LOGGED: u8 = 3;
/// Format byte of a husk ([`Record::husk`]): version 3's layout, with no body.
const RECORD_VERSION_HUSK: u8 = 4;
/// version(1) ‖ timestamp(8) ‖ expiry(8) ‖ hash length(2).
const RECORD_HEADER_LEN: usize = 1 + 8 + 8 + 2;
/// The stamp a version-2 record adds after the header.
const STAMP_LEN: usize = 8;
/// The history length a version-3 record adds after the header (its history follows).
const LOG_LEN_LEN: usize = 1;

/// Where a record's expiry came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum RecordLog<'a> {
    /// No client request moved it.
    None,
    /// Version 2: a plain `expire` accepted at this time set it.
    SetAt(i64),
    /// Version 3: an encoded [`ExpiryLog`].
    Encoded(&'a [u8]),
}

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
    /// The client requests that moved the expiry (`expiry_log`); `expiry_ms` is their fold.
    pub(super) log: RecordLog<'a>,
    /// What the sweep leaves of a message a client's request shortened: its history without
    /// its body, kept until its horizon so that a copy that missed the shortening learns it
    /// (and cannot bring the message back), and one that saw a later extension revives it.
    /// Never shown to a client ([`Record::is_expired`]); indexed at its horizon.
    pub(super) husk: bool,
}

impl<'a> Record<'a> {
    /// The record of `msg`.
    pub(super) fn of(msg: &'a Message) -> Self {
        Record {
            timestamp_ms: msg.timestamp_ms,
            expiry_ms: msg.expiry_ms,
            hash: &msg.hash,
            data: &msg.data,
            log: RecordLog::None,
            husk: false,
        }
    }

    /// The record's history, if a request moved its expiry.
    pub(super) fn expiry_log(&self) -> Result<Option<ExpiryLog>, StoreError> {
        Ok(match self.log {
            RecordLog::None => None,
            RecordLog::SetAt(at_ms) => {
                let mut log = ExpiryLog::new(self.expiry_ms);
                log.insert(ExpiryOp {
                    at_ms,
                    kind: OpKind::Set,
                    value_ms: self.expiry_ms,
                });
                Some(log)
            }
            RecordLog::Encoded(b) => Some(ExpiryLog::decode(b).ok_or(StoreError::Corrupt {
                what: "expiry history",
            })?),
        })
    }

    /// Encodes version ‖ timestamp ‖ expiry ‖ hash length(u16) ‖ [stamp(8) | history
    /// length(1) ‖ history] ‖ hash ‖ data (version 1 without either, 2 with the stamp, 3 with
    /// a history).
    pub(super) fn encode(&self) -> Result<Vec<u8>, StoreError> {
        // Hashes are 43 characters on the wire; a longer one can only come from a bug or a
        // malicious peer, and refusing it beats truncating it.
        let hash_len = u16::try_from(self.hash.len()).map_err(|_| StoreError::Corrupt {
            what: "message hash longer than 65535 bytes",
        })?;
        let (version, extra) = match self.log {
            RecordLog::None => (RECORD_VERSION, 0),
            RecordLog::SetAt(_) => (RECORD_VERSION_STAMPED, STAMP_LEN),
            RecordLog::Encoded(b) if self.husk => (RECORD_VERSION_HUSK, LOG_LEN_LEN + b.len()),
            RecordLog::Encoded(b) => (RECORD_VERSION_LOGGED, LOG_LEN_LEN + b.len()),
        };
        let mut out =
            Vec::with_capacity(RECORD_HEADER_LEN + extra + self.hash.len() + self.data.len());
        out.push(version);
        out.extend_from_slice(&self.timestamp_ms.to_be_bytes());
        out.extend_from_slice(&self.expiry_ms.to_be_bytes());
        out.extend_from_slice(&hash_len.to_be_bytes());
        match self.log {
            RecordLog::None => {}
            RecordLog::SetAt(stamp) => out.extend_from_slice(&stamp.to_be_bytes()),
            RecordLog::Encoded(b) => {
                let len = u8::try_from(b.len()).map_err(|_| StoreError::Corrupt {
                    what: "expiry history longer than 255 bytes",
                })?;
                out.push(len);
                out.extend_from_slice(b);
            }
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
        let version = *value.first().ok_or_else(corrupt)?;
        if value.len() < RECORD_HEADER_LEN {
            return Err(corrupt());
        }
        let int = |at: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&value[at..at + 8]);
            i64::from_be_bytes(b)
        };
        let (log, header) = match version {
            RECORD_VERSION => (RecordLog::None, RECORD_HEADER_LEN),
            RECORD_VERSION_STAMPED if value.len() >= RECORD_HEADER_LEN + STAMP_LEN => (
                RecordLog::SetAt(int(RECORD_HEADER_LEN)),
                RECORD_HEADER_LEN + STAMP_LEN,
            ),
            RECORD_VERSION_LOGGED | RECORD_VERSION_HUSK if value.len() > RECORD_HEADER_LEN => {
                let start = RECORD_HEADER_LEN + LOG_LEN_LEN;
                let end = start + usize::from(value[RECORD_HEADER_LEN]);
                let b = value.get(start..end).ok_or_else(corrupt)?;
                (RecordLog::Encoded(b), end)
            }
            _ => return Err(corrupt()),
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
            log,
            husk: version == RECORD_VERSION_HUSK,
        })
    }

    /// The same record with the expiry `log` folds to; `encoded` is `log.encode()`.
    pub(super) fn with_log(self, log: &ExpiryLog, encoded: &'a [u8]) -> Self {
        Record {
            expiry_ms: log.expiry(),
            log: RecordLog::Encoded(encoded),
            ..self
        }
    }

    /// The latest expiry any copy of this message could have (`ExpiryLog::horizon`): the
    /// expiry itself unless a client request moved it.
    pub(super) fn horizon(&self) -> i64 {
        match self.log {
            RecordLog::None => self.expiry_ms,
            _ => self
                .expiry_log()
                .ok()
                .flatten()
                .map_or(self.expiry_ms, |l| l.horizon().max(self.expiry_ms)),
        }
    }

    /// Whether the record is expired at `now_ms` (same rule as [`Message::is_expired`]); a
    /// husk always is (it has no body to show).
    pub(super) fn is_expired(&self, now_ms: i64) -> bool {
        self.husk || self.expiry_ms <= now_ms
    }

    /// Where the expiry index files the record: a message at its expiry, a husk at its
    /// horizon (when the sweep drops it).
    pub(super) fn index_ms(&self) -> i64 {
        if self.husk {
            self.horizon()
        } else {
            self.expiry_ms
        }
    }

    /// The husk of this record: its history `encoded`, no body.
    pub(super) fn husked(self, encoded: &'a [u8]) -> Self {
        Record {
            data: &[],
            log: RecordLog::Encoded(encoded),
            husk: true,
            ..self
        }
    }

    /// This record with the body of `msg` (a husk a peer's copy revives).
    pub(super) fn with_body(self, data: &'a [u8]) -> Self {
        Record {
            data,
            husk: false,
            ..self
        }
    }

    /// An owned [`Message`] for `key`'s account and namespace (its history too: a corrupt one
    /// is left out rather than failing the read, the expiry is still the stored one).
    pub(super) fn to_message(self, key: &MessageKey) -> Message {
        Message {
            account: key.account,
            namespace: key.namespace,
            hash: self.hash.to_string(),
            timestamp_ms: self.timestamp_ms,
            expiry_ms: self.expiry_ms,
            data: self.data.to_vec(),
            expiry_log: self.expiry_log().ok().flatten(),
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
            log: RecordLog::None,
            husk: false,
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
            log: RecordLog::SetAt(3),
            husk: false,
        }
        .encode()
        .expect("encode");
        v.truncate(RECORD_HEADER_LEN + 4);
        assert!(Record::decode(&v).is_err());
        // A history cut short, and one that does not decode.
        let log = ExpiryLog::new(2).encode();
        let r = Record {
            timestamp_ms: 1,
            expiry_ms: 2,
            hash: "",
            data: b"",
            log: RecordLog::Encoded(&log),
            husk: false,
        };
        let mut v = r.encode().expect("encode");
        v.truncate(RECORD_HEADER_LEN + 4);
        assert!(Record::decode(&v).is_err());
        let bad = [0u8; 3];
        let v = Record {
            log: RecordLog::Encoded(&bad),
            ..r
        }
        .encode()
        .expect("encode");
        assert!(
            Record::decode(&v)
                .expect("the record reads")
                .expiry_log()
                .is_err()
        );
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
                             set in proptest::option::of(any::<i64>()),
                             log in proptest::collection::vec(any::<u8>(), 0..200),
                             logged: bool, husk: bool) {
            let log = if logged { RecordLog::Encoded(&log) } else {
                set.map_or(RecordLog::None, RecordLog::SetAt)
            };
            let husk = husk && logged;
            let r = Record { timestamp_ms: ts, expiry_ms: exp, hash: &hash, data: &data, log, husk };
            let v = r.encode().expect("encode");
            let extra = match log {
                RecordLog::None => 0,
                RecordLog::SetAt(_) => STAMP_LEN,
                RecordLog::Encoded(b) => 1 + b.len(),
            };
            prop_assert_eq!(v.len(), RECORD_HEADER_LEN + extra + hash.len() + data.len());
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
