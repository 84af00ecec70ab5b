//! Account pubkeys, namespaces, message hashes, TTL rules and protocol limits.
//!
//! Owns the vocabulary every other module speaks about messages, exactly as
//! `protocol/storage-server.md` sections 1.3, 1.7, 1.8 and 1.9 give it.
//! Pure: no I/O, no clock (callers pass `now_ms`).

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use blake2::digest::consts::U32;
use blake2::{Blake2b, Digest};
use std::fmt;

/// Largest message body, in raw bytes (102 400 base64 characters).
pub const MAX_DATA_BYTES: usize = 76_800;
/// Largest message body as base64 text.
pub const MAX_DATA_B64: usize = MAX_DATA_BYTES * 4 / 3;
/// Shortest TTL accepted by `store`, in ms.
pub const TTL_MINIMUM_MS: i64 = 10_000;
/// Longest TTL for public-inbox namespaces (ns % 10 == 0), in ms: 14 days.
pub const TTL_MAXIMUM_PUBLIC_MS: i64 = 14 * 24 * 3600 * 1000;
/// Longest TTL for authenticated namespaces, in ms: 30 days.
pub const TTL_MAXIMUM_PRIVATE_MS: i64 = 30 * 24 * 3600 * 1000;
/// How far a store's timestamp may be ahead of (or its expiry behind) our clock.
pub const STORE_TOLERANCE_MS: i64 = 10_000;
/// Window for request-signature timestamps.
pub const SIGNATURE_TOLERANCE_MS: i64 = 60_000;
/// Window for signature timestamps of requests forwarded by a swarm peer.
pub const SIGNATURE_TOLERANCE_FORWARDED_MS: i64 = 70_000;
/// Default and largest `retrieve` size budget.
pub const RETRIEVE_MAX_SIZE: i64 = 7_800_000;
/// Subrequests allowed in one `batch`/`sequence`.
pub const BATCH_REQUEST_MAX: usize = 20;
/// Revoked subaccount tokens kept per account (newest win).
pub const MAX_REVOKED_PER_ACCOUNT: usize = 50;
/// Tokens accepted in one `revoke_subaccount` request.
pub const MAX_SUBACCOUNT_TOKENS: usize = 50;
/// Length of a message hash as unpadded base64.
pub const HASH_LEN: usize = 43;

/// An account: one network/type byte and a 32-byte key (`05` Session ID, `03` group, …).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AccountId {
    /// The type byte (`0x05`, `0x03`, …).
    pub kind: u8,
    /// The 32 key bytes (X25519 for `05`, Ed25519 otherwise).
    pub key: [u8; 32],
}

/// Why a pubkey parameter was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Pubkey must be 66 hex digits (33 bytes) long")]
pub struct BadPubkey;

impl AccountId {
    /// Parses the 66-hex form the JSON RPC uses.
    pub fn from_hex(s: &str) -> Result<Self, BadPubkey> {
        if s.len() != 66 {
            return Err(BadPubkey);
        }
        let raw = hex::decode(s).map_err(|_| BadPubkey)?;
        Self::from_bytes(&raw)
    }

    /// Parses the 33-byte raw form.
    pub fn from_bytes(raw: &[u8]) -> Result<Self, BadPubkey> {
        if raw.len() != 33 {
            return Err(BadPubkey);
        }
        let mut key = [0u8; 32];
        key.copy_from_slice(&raw[1..]);
        Ok(Self { kind: raw[0], key })
    }

    /// The 33 raw bytes.
    pub fn to_bytes(&self) -> [u8; 33] {
        let mut out = [0u8; 33];
        out[0] = self.kind;
        out[1..].copy_from_slice(&self.key);
        out
    }

    /// The 66-hex form (`prefixed_hex` of the original).
    pub fn to_hex(&self) -> String {
        hex::encode(self.to_bytes())
    }

    /// A short, log-safe prefix: logs never carry a full account pubkey (ARCHITECTURE.md, invariants).
    pub fn short(&self) -> String {
        let h = self.to_hex();
        format!("{}…", &h[..8])
    }
}

/// Debug prints only a short prefix, so a stray `{:?}` cannot leak a full account.
impl fmt::Debug for AccountId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AccountId({})", self.short())
    }
}

/// A message namespace: a signed 16-bit integer with rules by value (section 1.7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Namespace(pub i16);

impl Namespace {
    /// The default namespace.
    pub const DEFAULT: Namespace = Namespace(0);
    /// Legacy closed groups: unauthenticated store and retrieve.
    pub const LEGACY_CLOSED: Namespace = Namespace(-10);
    /// Reserved testing namespace: stores always refused, retrieves always empty.
    pub const TESTING: Namespace = Namespace(-3741);

    /// Anyone may store here (ns % 10 == 0); TTL ≤ 14 days.
    pub fn is_public_inbox(self) -> bool {
        self.0 % 10 == 0
    }

    /// `-(20n+1)`: one message per account, retrievable without auth.
    pub fn is_public_outbox(self) -> bool {
        self.0 < 0 && (-(self.0 as i32)) % 20 == 1
    }

    /// Retrieval needs no signature (legacy closed groups and public outboxes).
    pub fn is_noauth_retrieve(self) -> bool {
        self == Self::LEGACY_CLOSED || self.is_public_outbox()
    }

    /// `-(100n+11)`: revoked subaccounts may still read.
    pub fn is_unrevocable(self) -> bool {
        self.0 < 0 && (-(self.0 as i32)) % 100 == 11
    }

    /// Longest TTL allowed in this namespace.
    pub fn max_ttl_ms(self) -> i64 {
        if self.is_public_inbox() {
            TTL_MAXIMUM_PUBLIC_MS
        } else {
            TTL_MAXIMUM_PRIVATE_MS
        }
    }

    /// The namespace as it appears in signed messages and hashes: "" for 0, else decimal.
    pub fn sig_str(self) -> String {
        if self.0 == 0 {
            String::new()
        } else {
            self.0.to_string()
        }
    }
}

impl fmt::Display for Namespace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Either one namespace or all of them (`"all"` in delete_all, delete_before, expire_all).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NamespaceSel {
    /// One namespace.
    One(Namespace),
    /// Every namespace of the account.
    All,
}

impl NamespaceSel {
    /// The namespace part of a signature message: "" for 0, "all", or decimal.
    pub fn sig_str(self) -> String {
        match self {
            NamespaceSel::One(ns) => ns.sig_str(),
            NamespaceSel::All => "all".to_string(),
        }
    }
}

/// A stored message, as the store and the RPC see it.
#[derive(Clone, PartialEq, Eq)]
pub struct Message {
    /// Owner.
    pub account: AccountId,
    /// Namespace.
    pub namespace: Namespace,
    /// 43-char unpadded base64 hash (section 1.9).
    pub hash: String,
    /// Client timestamp, ms since epoch.
    pub timestamp_ms: i64,
    /// Expiry, ms since epoch.
    pub expiry_ms: i64,
    /// The opaque body (ciphertext to us).
    pub data: Vec<u8>,
    /// The client `expire` requests that moved `expiry_ms`, with their acceptance times
    /// (`expiry_log`): carried between members so that one that missed a request takes it
    /// from a copy that has it. `None` for a message no request moved (`expiry_ms` is then
    /// the stored one); when `Some`, `expiry_ms` is its fold.
    pub expiry_log: Option<crate::expiry_log::ExpiryLog>,
}

impl Message {
    /// Whether this is a history without a body: what a member sends of a husk (the sweep's
    /// remains of a message a client shortened, `store::keys::Record::husk`), so that a copy
    /// that missed the shortening learns it. Its body is empty and its hash is not that of
    /// an empty body; it only ever merges into a copy the receiver holds.
    pub fn is_history_only(&self) -> bool {
        self.data.is_empty()
            && self.expiry_log.is_some()
            && message_hash(&self.account, self.namespace, &self.data) != self.hash
    }

    /// This message as received from a peer (hand-off, anti-entropy), admitted as strictly as
    /// a client's `store` would be: `None` when no client request could have produced it — a
    /// hash that is not its own (a forged copy would shadow the real message, since dedupe is
    /// by hash; a history without a body, [`Message::is_history_only`], only needs a valid
    /// hash, since it only ever merges into a copy the receiver holds), a body over [`MAX_DATA_BYTES`], the reserved testing namespace, a timestamp
    /// further ahead of `now_ms` than [`STORE_TOLERANCE_MS`] — else the message with its expiry
    /// clamped to
    /// the latest any client request could have set by now: `now_ms` plus the longest TTL
    /// (what `expire` caps extensions at). The clamp is not `timestamp + the namespace's
    /// TTL`, because a client may have extended a message since it was stored.
    pub fn admitted_from_peer(mut self, now_ms: i64) -> Option<Message> {
        if self.data.len() > MAX_DATA_BYTES
            || (message_hash(&self.account, self.namespace, &self.data) != self.hash
                && !(self.is_history_only() && is_valid_hash(&self.hash)))
            || self.namespace == Namespace::TESTING
            || self.timestamp_ms > now_ms.saturating_add(STORE_TOLERANCE_MS)
        {
            return None;
        }
        let latest = now_ms
            .saturating_add(TTL_MAXIMUM_PRIVATE_MS)
            .saturating_add(STORE_TOLERANCE_MS);
        self.expiry_ms = self.expiry_ms.min(latest);
        // The history too: no request accepted later than another node's clock may be ahead
        // of ours, none naming an expiry no client could have asked for; the expiry is then
        // its fold, so a peer cannot send an expiry its history does not explain.
        if let Some(log) = self.expiry_log.take() {
            let accepted_by = now_ms.saturating_add(PEER_CLOCK_TOLERANCE_MS);
            let longest = TTL_MAXIMUM_PRIVATE_MS.saturating_add(STORE_TOLERANCE_MS);
            let log = log.bounded(accepted_by, latest, longest);
            self.expiry_ms = log.expiry();
            self.expiry_log = Some(log);
        }
        Some(self)
    }
}

/// How far ahead of our clock another node's acceptance time may be (`peer::auth` refuses
/// peer requests stamped further away).
pub const PEER_CLOCK_TOLERANCE_MS: i64 = 60_000;

/// Debug omits the body and shortens the account (privacy).
impl fmt::Debug for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Message")
            .field("account", &self.account)
            .field("namespace", &self.namespace)
            .field("hash", &self.hash)
            .field("timestamp_ms", &self.timestamp_ms)
            .field("expiry_ms", &self.expiry_ms)
            .field("data_len", &self.data.len())
            .finish()
    }
}

impl Message {
    /// Whether the message has expired at `now_ms` (expired messages are never returned).
    pub fn is_expired(&self, now_ms: i64) -> bool {
        self.expiry_ms <= now_ms
    }
}

/// Message hash: unpadded base64 of BLAKE2b-256(type ‖ key32 ‖ ns-string ‖ data).
pub fn message_hash(account: &AccountId, namespace: Namespace, data: &[u8]) -> String {
    let mut h = Blake2b::<U32>::new();
    h.update([account.kind]);
    h.update(account.key);
    h.update(namespace.sig_str().as_bytes());
    h.update(data);
    STANDARD_NO_PAD.encode(h.finalize())
}

/// Whether `s` looks like a message hash: 43 characters of the standard base64 alphabet.
pub fn is_valid_hash(s: &str) -> bool {
    s.len() == HASH_LEN
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/')
}

/// Standard padded base64, as the protocol uses for data and signatures.
pub fn b64(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}

/// Decodes standard base64, with or without padding.
pub fn b64_decode(s: &str) -> Option<Vec<u8>> {
    let trimmed = s.trim_end_matches('=');
    STANDARD_NO_PAD.decode(trimmed).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_hash_vector() {
        let pk = AccountId::from_hex(
            "05ffba630924aa1224bb930dde21c0d11bf004608f2812217f8ac812d6c7e3ad48",
        )
        .expect("pk");
        let data = b64_decode("CAES1gIKA1BVVBIPL2FwaS92MS9tZXNzYWdlGrsCCAYovfqZv4YvQq8CVwutUBbhRzZw80TvR6uTYMKg9DSagrtpeEpY31L7VxawfS8aSya0SiDa4J025SkjP13YX8g5pxgQ8Z6hgfNArMqr/tSijJ9miVKVDJ63YWE85O8kyWF8tdtZR5j0Vxb+JH5U8Rg1bp7ftKk3OSf7JJMcrUUrDnctQHe540zJ2OTDJ03DfubkX5NmKqEu5nhXGxeeDv3mTiL63fjtCvZYcikfjf6Nh1AX++HTgJ9SGoEIMastGUorFrmmXb2sbjHxNiJn0Radj/VzcA9VxYwBW5+AbGQ2d9+vvm7X+8vh+jIenJfjxf+8CWER+9adNfb4YUH07I+godNCV0O0J05gzqfKdT7J8MBZzFBtKrbk8oCagPpTsq/wZyYFKFKKD+q+zh704dYBILvs5yXUA96pIAA=").expect("b64");
        assert_eq!(
            message_hash(&pk, Namespace(0), &data),
            "4sMyAuaZlMwww3oFvfhazfw7ASx/7TDtO+TVc8aAjHs"
        );
    }

    #[test]
    fn computed_hash_vectors() {
        let sid = AccountId::from_hex(
            "054a3807d064d077181cc070989e76891d20dca5559548dc2c77c1a50273882b38",
        )
        .expect("sid");
        assert_eq!(
            message_hash(&sid, Namespace(0), b"abc 123"),
            "IF/70deZ18dBVDPXn6jK0omdyedSYcKo1Q6d8BnJsfs"
        );
        assert_eq!(
            message_hash(&sid, Namespace(40), b"abc 123"),
            "Lh68YxmnKBLYSzmSvQg98Fy5V6m9RWk/B0zCWrdTefE"
        );
        let group = AccountId::from_hex(
            "0379b5562e8fe654f94078b112e8a98ba7901f853ae695bed7e0e3910bad049664",
        )
        .expect("group");
        assert_eq!(
            message_hash(&group, Namespace(-42), b"abc 123"),
            "9siU2X/fcCu74uazuJhr/zx74LBkdwYaztEjzugTMVo"
        );
        let sid2 = AccountId::from_hex(
            "0577cb6c50ed49a2c45e383ac3ca855375c68300f7ff0c803ea93cb18437d61f46",
        )
        .expect("sid2");
        assert_eq!(
            message_hash(&sid2, Namespace(0), b"hello"),
            "3JvvAVECPzcoul21lnEpiisHluhiuJGbDQErpPqBV74"
        );
        assert_eq!(
            message_hash(&sid2, Namespace(2), b"hello"),
            "drFulvKBpOeaUsuAvUt3S3RNb6Wo7ywuSHe/dmOU6Pc"
        );
    }

    #[test]
    fn namespace_rules() {
        assert!(Namespace(0).is_public_inbox());
        assert!(Namespace(-10).is_public_inbox());
        assert!(Namespace(-10).is_noauth_retrieve());
        assert!(Namespace(-1).is_public_outbox());
        assert!(Namespace(-21).is_public_outbox());
        assert!(!Namespace(1).is_public_outbox());
        assert!(Namespace(-11).is_unrevocable());
        assert!(Namespace(-111).is_unrevocable());
        assert!(!Namespace(11).is_unrevocable());
        assert!(!Namespace(5).is_public_inbox());
        assert_eq!(Namespace(0).sig_str(), "");
        assert_eq!(Namespace(-42).sig_str(), "-42");
        assert_eq!(NamespaceSel::All.sig_str(), "all");
        assert_eq!(Namespace(i16::MIN).max_ttl_ms(), TTL_MAXIMUM_PRIVATE_MS);
    }

    #[test]
    fn pubkey_parsing() {
        assert!(AccountId::from_hex("05").is_err());
        assert!(AccountId::from_hex(&"zz".repeat(33)).is_err());
        let a = AccountId::from_hex(&format!("03{}", "ab".repeat(32))).expect("ok");
        assert_eq!(a.kind, 3);
        assert_eq!(a.to_hex(), format!("03{}", "ab".repeat(32)));
        assert!(!format!("{a:?}").contains(&"ab".repeat(32)));
    }

    #[test]
    fn hash_format() {
        assert!(is_valid_hash("4sMyAuaZlMwww3oFvfhazfw7ASx/7TDtO+TVc8aAjHs"));
        assert!(!is_valid_hash("4sMyAuaZlMwww3oFvfhazfw7ASx/7TDtO+TVc8aAjH"));
        assert!(!is_valid_hash(
            "4sMyAuaZlMwww3oFvfhazfw7ASx/7TDtO+TVc8aAjH_"
        ));
    }

    #[test]
    fn peer_copies_are_admitted_as_a_client_store_would_be() {
        let now = 1_700_000_000_000;
        let account = AccountId::from_hex(
            "05ffba630924aa1224bb930dde21c0d11bf004608f2812217f8ac812d6c7e3ad48",
        )
        .unwrap();
        let m = |ns: i16, len: usize, ts: i64, expiry: i64| Message {
            account,
            namespace: Namespace(ns),
            hash: message_hash(&account, Namespace(ns), &vec![0; len]),
            timestamp_ms: ts,
            expiry_ms: expiry,
            data: vec![0; len],
            expiry_log: None,
        };
        let fine = m(0, MAX_DATA_BYTES, now, now + 3_600_000);
        assert_eq!(fine.clone().admitted_from_peer(now), Some(fine.clone()));
        // A body under another message's hash is a forgery.
        let mut forged = fine;
        forged.data[0] = 1;
        assert_eq!(forged.admitted_from_peer(now), None);
        assert_eq!(
            m(0, MAX_DATA_BYTES + 1, now, now + 1).admitted_from_peer(now),
            None
        );
        assert_eq!(m(-3741, 1, now, now + 1).admitted_from_peer(now), None);
        let ahead = now + STORE_TOLERANCE_MS + 1;
        assert_eq!(m(0, 1, ahead, ahead + 1).admitted_from_peer(now), None);
        // Within the tolerance is fine; an expiry beyond what any request could set is cut.
        let edge = now + STORE_TOLERANCE_MS;
        assert!(m(0, 1, edge, edge + 1).admitted_from_peer(now).is_some());
        let far = m(0, 1, now, i64::MAX).admitted_from_peer(now).unwrap();
        assert_eq!(
            far.expiry_ms,
            now + TTL_MAXIMUM_PRIVATE_MS + STORE_TOLERANCE_MS
        );
        // A shortened expiry (below timestamp + the minimum TTL) is a client's right: kept.
        let short = m(0, 1, now - 60_000, now - 59_000 + 5_000);
        assert_eq!(short.clone().admitted_from_peer(now), Some(short));

        // A history without a body (a husk's): only a valid hash is asked of it, and its
        // history is bounded like any other; without a history an empty body must hash.
        use crate::expiry_log::{ExpiryLog, ExpiryOp, OpKind};
        let real = m(0, 10, now - 60_000, now + 3_600_000);
        let mut log = ExpiryLog::new(real.expiry_ms);
        log.insert(ExpiryOp {
            at_ms: now - 1_000,
            kind: OpKind::Shorten,
            value_ms: now - 500,
        });
        let husk = Message {
            data: Vec::new(),
            expiry_ms: log.expiry(),
            expiry_log: Some(log.clone()),
            ..real.clone()
        };
        assert!(husk.is_history_only());
        assert_eq!(husk.clone().admitted_from_peer(now), Some(husk.clone()));
        let bad_hash = Message {
            hash: "not a hash".into(),
            ..husk.clone()
        };
        assert_eq!(bad_hash.admitted_from_peer(now), None);
        let bare = Message {
            expiry_log: None,
            ..husk.clone()
        };
        assert!(!bare.is_history_only());
        assert_eq!(bare.admitted_from_peer(now), None);
        // A request from beyond the peers' clock tolerance is dropped from the history.
        let mut ahead = log;
        ahead.insert(ExpiryOp {
            at_ms: now + 2 * PEER_CLOCK_TOLERANCE_MS,
            kind: OpKind::Extend,
            value_ms: now + 7_200_000,
        });
        let from_ahead = Message {
            expiry_ms: ahead.expiry(),
            expiry_log: Some(ahead),
            ..real
        };
        let got = from_ahead.admitted_from_peer(now).expect("admitted");
        assert_eq!(got.expiry_log.map(|l| l.ops().len()), Some(1));
        assert_eq!(got.expiry_ms, now - 500);
    }
}
