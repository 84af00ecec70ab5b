//! The anti-entropy wire protocol between members of one swarm: paths, JSON bodies and
//! bounds. snode's own protocol (the original has no anti-entropy); every request and
//! response is signed like all `/snode/v1/…` traffic (`peer::auth`).
//!
//! | path | request | response |
//! |---|---|---|
//! | `/snode/v1/ae/digest` | `{"at": ms}` | `{"digest": b64(256 × u64 BE)}` |
//! | `/snode/v1/ae/bucket` | `{"at": ms, "buckets": [u8…]}` | `{"buckets": [{"bucket", "live": [h…], "tombstones": [h…]}…]}` |
//! | `/snode/v1/ae/fetch` | `{"hashes": [h…]}` | `sn.data` blob (`peer::wire`) of those live and owned |
//! | `/snode/v1/ae/delete` | `{"hashes": [h…]}` | `{"deleted": n}` |
//!
//! The hand-off sends an account's tombstones to its new owners alongside its messages:
//! `/snode/v1/tombstones` takes `{"tombstones": [{"account", "hash", "expiry", "deleted_at",
//! "unheld"}…]}` (at most [`MAX_TOMBSTONES_PER_REQUEST`]) and answers a [`DataResponse`].
//!
//! Subaccount revocations travel on `/snode/v1/revocations` ([`RevocationsRequest`]): the
//! hand-off pushes a foreign account's token states to its owners; an anti-entropy session
//! sends a digest of the swarm's states, pulls the peer's when they differ and pushes its own.
//!
//! `at` is the initiator's clock rounded down to a multiple of [`DIGEST_EPOCH_MS`]: both sides
//! scope their sets with it (`digest::in_scope`), and because every initiator rounds the same
//! way, a node asked by all its peers within one epoch computes one digest
//! (`replication::digest_cache`), not one per request. A responder refuses an `at` that is not
//! a multiple (400), so no requester can pick fresh keys to defeat the cache.
//! Pure: types, constants and arithmetic only.

use serde::{Deserialize, Serialize};

/// Digest exchange.
pub const PATH_AE_DIGEST: &str = "/snode/v1/ae/digest";
/// Hash lists of some buckets.
pub const PATH_AE_BUCKET: &str = "/snode/v1/ae/bucket";
/// Messages by hash.
pub const PATH_AE_FETCH: &str = "/snode/v1/ae/fetch";
/// Deletions a client made elsewhere (tombstones propagated).
pub const PATH_AE_DELETE: &str = "/snode/v1/ae/delete";

/// Buckets asked for in one bucket request.
pub const MAX_BUCKETS_PER_REQUEST: usize = 32;
/// Hashes in one fetch or delete request.
pub const MAX_HASHES_PER_REQUEST: usize = 2_000;
/// Hashes listed in one bucket response; buckets past it are left out (asked again later).
pub const MAX_LISTED_HASHES: usize = 40_000;
/// Bytes of one fetch response; messages past it are left out (fetched next round).
pub const MAX_FETCH_BYTES: usize = 4 << 20;
/// How far the initiator's reference time may be from the responder's clock in bucket
/// requests: a session's later steps still use the `at` of its digest exchange.
pub const MAX_AT_SKEW_MS: i64 = 10 * 60 * 1000;
/// Reference times are multiples of this (ms since the epoch). Equal to the default
/// `anti_entropy_interval`, so a node computes its digest about once per round however many
/// peers reconcile with it.
pub const DIGEST_EPOCH_MS: i64 = 30_000;
/// How far the clocks of two honest nodes may differ when a digest is asked for: the peer
/// authentication window, beyond which their requests fail anyway.
pub const MAX_DIGEST_SKEW_MS: i64 = crate::peer::auth::PEER_TOLERANCE_MS;
/// Bucket requests one session makes at most before it yields to the next interval. A
/// protocol bound: responders size their per-peer budget from it.
pub const MAX_STEPS_PER_SESSION: u32 = 64;
/// Requests one session makes of its responder at most: the digest, then per step one bucket
/// request, at most one delete and at most one fetch (each step's repairs are cut to
/// [`MAX_HASHES_PER_REQUEST`] per kind, one request's worth). Pushes go to `/snode/v1/data`.
pub const MAX_REQUESTS_PER_SESSION: u32 = 1 + 3 * MAX_STEPS_PER_SESSION;

/// The reference time of a reconciliation started at `now_ms`: the start of its epoch.
pub fn epoch_start(now_ms: i64) -> i64 {
    now_ms.saturating_sub(now_ms.rem_euclid(DIGEST_EPOCH_MS))
}

/// Whether `at` is a reference time an initiator could have sent (a multiple of
/// [`DIGEST_EPOCH_MS`]).
pub fn is_aligned(at: i64) -> bool {
    at.rem_euclid(DIGEST_EPOCH_MS) == 0
}

/// Whether a digest request's `at` (aligned) fits our clock `now_ms`: an honest initiator's
/// `at` is at most one epoch behind its own clock, which is within [`MAX_DIGEST_SKEW_MS`] of
/// ours. The window is narrow on purpose: it holds at most [`ADMISSIBLE_DIGEST_TIMES`]
/// multiples, so a requester choosing `at` can make us compute only that many digests, then
/// one per epoch as the window moves.
pub fn digest_at_fits(at: i64, now_ms: i64) -> bool {
    let earliest = now_ms.saturating_sub(DIGEST_EPOCH_MS + MAX_DIGEST_SKEW_MS);
    let latest = now_ms.saturating_add(MAX_DIGEST_SKEW_MS);
    (earliest..=latest).contains(&at)
}

/// How many aligned reference times [`digest_at_fits`] accepts at most at one moment.
pub const ADMISSIBLE_DIGEST_TIMES: usize =
    ((DIGEST_EPOCH_MS + 2 * MAX_DIGEST_SKEW_MS) / DIGEST_EPOCH_MS) as usize + 1;

/// `POST /snode/v1/ae/digest` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DigestRequest {
    /// Reference time (ms).
    pub at: i64,
}

/// Answer to a digest request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DigestResponse {
    /// Base64 of the 2048-byte digest.
    pub digest: String,
}

/// `POST /snode/v1/ae/bucket` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BucketRequest {
    /// Reference time (ms).
    pub at: i64,
    /// The buckets wanted (at most [`MAX_BUCKETS_PER_REQUEST`]).
    pub buckets: Vec<u8>,
}

/// One bucket's hashes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BucketEntry {
    /// The bucket.
    pub bucket: u8,
    /// Live, in-scope hashes owned by the swarm.
    pub live: Vec<String>,
    /// The expiry of each of `live`, in the same order (left out by a member that lists
    /// hashes only: its view is then compared by hash).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub expiries: Vec<i64>,
    /// Hashes with a tombstone in force.
    pub tombstones: Vec<String>,
}

/// Answer to a bucket request: the buckets that fit, in request order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BucketResponse {
    /// The answered buckets.
    pub buckets: Vec<BucketEntry>,
}

/// `POST /snode/v1/ae/fetch` and `/snode/v1/ae/delete` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HashesRequest {
    /// Message hashes (at most [`MAX_HASHES_PER_REQUEST`]).
    pub hashes: Vec<String>,
}

/// Answer to a delete request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeleteResponse {
    /// Messages deleted.
    pub deleted: usize,
}

/// Tombstones in one hand-off request.
pub const MAX_TOMBSTONES_PER_REQUEST: usize = 2_000;

/// One handed-off tombstone (`store::TombstoneRecord` on the wire).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TombstoneEntry {
    /// The deleting account, hex (66 characters).
    pub account: String,
    /// The deleted hash.
    pub hash: String,
    /// Kept until then (ms).
    pub expiry: i64,
    /// When the swarm accepted the deletion (ms).
    pub deleted_at: i64,
    /// The sender never held the message.
    pub unheld: bool,
}

/// Body of `/snode/v1/tombstones`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TombstonesRequest {
    /// The tombstones.
    pub tombstones: Vec<TombstoneEntry>,
}

/// Token states in one `/snode/v1/revocations` request or answer.
pub const MAX_REVOCATIONS_PER_REQUEST: usize = 2_000;
/// Token states a node reads to digest or list its swarm's revocations in one request: what a
/// swarm holds beyond it is not compared (each account keeps at most 250).
pub const MAX_REVOCATIONS_SCANNED: usize = 200_000;

/// One token's last (un)revocation (`store::RevocationState` on the wire).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevocationEntry {
    /// The account, hex (66 characters).
    pub account: String,
    /// The subaccount token, hex (72 characters).
    pub token: String,
    /// The client's signed time of the operation (ms).
    pub at: i64,
    /// Revoked, or else unrevoked.
    pub revoked: bool,
}

/// Body of `/snode/v1/revocations`: states to merge (a hand-off's or an anti-entropy push),
/// and, from a member of the receiver's swarm, a digest of the sender's states of the
/// accounts the swarm owns: when the receiver's differ, it answers with its own, a page at a
/// time after `after` (an account, hex).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevocationsRequest {
    /// States to merge.
    #[serde(default)]
    pub revocations: Vec<RevocationEntry>,
    /// SHA-256 (hex) of the sender's states of the swarm's accounts (`digest_revocations`).
    #[serde(default)]
    pub digest: Option<String>,
    /// The account after which to list (a later page).
    #[serde(default)]
    pub after: Option<String>,
}

/// Answer of `/snode/v1/revocations`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevocationsResponse {
    /// States of the request of accounts the receiver's swarm owns (merged).
    pub accepted: usize,
    /// Whether the receiver's digest differs from the request's (its states may be none:
    /// the sender then pushes its own).
    #[serde(default)]
    pub differs: bool,
    /// The receiver's states, when the digests differ.
    #[serde(default)]
    pub revocations: Vec<RevocationEntry>,
    /// Where the next page starts, when more follow.
    #[serde(default)]
    pub more: Option<String>,
}

/// The digest two members compare: SHA-256 over their sorted states, hex.
pub fn digest_revocations(states: &[crate::store::RevocationState]) -> String {
    use sha2::Digest as _;
    let mut h = sha2::Sha256::new();
    for s in states {
        h.update(s.account.to_bytes());
        h.update(s.token);
        h.update(s.at_ms.to_be_bytes());
        h.update([u8::from(s.revoked)]);
    }
    hex::encode(h.finalize())
}

impl RevocationEntry {
    /// The wire form of a state.
    pub fn from_state(s: &crate::store::RevocationState) -> RevocationEntry {
        RevocationEntry {
            account: s.account.to_hex(),
            token: hex::encode(s.token),
            at: s.at_ms,
            revoked: s.revoked,
        }
    }

    /// The state, if account and token parse.
    pub fn to_state(&self) -> Option<crate::store::RevocationState> {
        let account = crate::message::AccountId::from_hex(&self.account).ok()?;
        let mut token = [0u8; crate::sign::SUBACCOUNT_TOKEN_LEN];
        hex::decode_to_slice(&self.token, &mut token).ok()?;
        Some(crate::store::RevocationState {
            account,
            token,
            at_ms: self.at,
            revoked: self.revoked,
        })
    }
}

/// Answer of the bulk data endpoint (`/snode/v1/data`): how many of the sent messages the
/// receiver owns (and therefore stored, unless already there or deleted by a client).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataResponse {
    /// Messages owned by the receiver's swarm.
    pub accepted: usize,
    /// Messages that were new to the receiver.
    #[serde(default)]
    pub new: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_have_the_documented_shape() {
        let r: BucketRequest =
            serde_json::from_str(r#"{"at": 5, "buckets": [0, 255]}"#).expect("parse");
        assert_eq!(r.buckets, vec![0, 255]);
        assert!(serde_json::from_str::<BucketRequest>(r#"{"at": 5, "buckets": [256]}"#).is_err());
        assert!(serde_json::from_str::<DigestRequest>(r#"{"at": 5, "x": 1}"#).is_err());
        let d: DataResponse = serde_json::from_str(r#"{"accepted": 3, "new": 1}"#).expect("data");
        assert_eq!(
            d,
            DataResponse {
                accepted: 3,
                new: 1
            }
        );
        let e = BucketEntry {
            bucket: 7,
            live: vec!["a".into()],
            expiries: vec![],
            tombstones: vec![],
        };
        let v = serde_json::to_value(BucketResponse { buckets: vec![e] }).expect("json");
        assert_eq!(
            v,
            serde_json::json!({"buckets": [{"bucket": 7, "live": ["a"], "tombstones": []}]})
        );
    }

    #[test]
    fn reference_times_are_epoch_starts() {
        let e = DIGEST_EPOCH_MS;
        assert_eq!(epoch_start(10 * e), 10 * e);
        assert_eq!(epoch_start(10 * e + e - 1), 10 * e);
        assert_eq!(epoch_start(-1), -e);
        assert!(is_aligned(epoch_start(1_700_000_012_345)));
        assert!(!is_aligned(1_700_000_012_345));
        assert!(is_aligned(0) && is_aligned(-e) && !is_aligned(e / 2));
        assert_eq!(epoch_start(i64::MIN), i64::MIN);
    }

    #[test]
    fn the_digest_window_holds_few_reference_times() {
        let now = 1_700_000_012_345;
        // An initiator up to MAX_DIGEST_SKEW_MS ahead or behind, rounding down, fits.
        for skew in [-MAX_DIGEST_SKEW_MS, 0, MAX_DIGEST_SKEW_MS] {
            assert!(digest_at_fits(epoch_start(now + skew), now), "skew {skew}");
        }
        assert!(!digest_at_fits(
            epoch_start(now - MAX_DIGEST_SKEW_MS - DIGEST_EPOCH_MS),
            now
        ));
        assert!(!digest_at_fits(
            epoch_start(now + MAX_DIGEST_SKEW_MS) + DIGEST_EPOCH_MS,
            now
        ));
        for now in [now, 0, 15_000, 29_999, 1_700_000_010_000] {
            let fitting = (-20..20)
                .map(|k| epoch_start(now) + k * DIGEST_EPOCH_MS)
                .filter(|&at| digest_at_fits(at, now))
                .count();
            assert!(fitting <= ADMISSIBLE_DIGEST_TIMES, "{fitting} at {now}");
        }
        assert!(!digest_at_fits(i64::MAX, 0) && !digest_at_fits(i64::MIN, 0));
        assert_eq!(MAX_REQUESTS_PER_SESSION, 193);
    }
}
