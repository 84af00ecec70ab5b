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
//! `at` is the initiator's clock: both sides scope their sets with it (`digest::in_scope`).
//! Pure: types and constants only.

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
/// How far the initiator's reference time may be from the responder's clock.
pub const MAX_AT_SKEW_MS: i64 = 10 * 60 * 1000;

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
            tombstones: vec![],
        };
        let v = serde_json::to_value(BucketResponse { buckets: vec![e] }).expect("json");
        assert_eq!(
            v,
            serde_json::json!({"buckets": [{"bucket": 7, "live": ["a"], "tombstones": []}]})
        );
    }
}
