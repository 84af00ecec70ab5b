//! Signatures on node-to-node requests (`/snode/v1/…`).
//!
//! snode's own protocol (the original used OxenMQ with CurveZMQ identities): every peer request
//! carries the sender's Ed25519 pubkey, a millisecond timestamp and an Ed25519 signature over
//! `"snode-peer-v1" ‖ 0 ‖ METHOD ‖ 0 ‖ path ‖ 0 ‖ timestamp ‖ 0 ‖ BLAKE2b-256(body)`, so a
//! request cannot be replayed to another endpoint, altered, or replayed after the window.
//! Receivers also require the sender to be listed by the directory (checked by the caller).
//! Pure: no I/O; time is a parameter.

use blake2::digest::consts::U32;
use blake2::{Blake2b, Digest};
use ed25519_dalek::{Signature, Verifier as _, VerifyingKey};

use crate::keys::NodeKeys;

/// Header carrying the sender's Ed25519 pubkey (hex).
pub const HEADER_PUBKEY: &str = "x-snode-pubkey";
/// Header carrying the signing time (ms since epoch).
pub const HEADER_TIMESTAMP: &str = "x-snode-timestamp";
/// Header carrying the signature (hex).
pub const HEADER_SIGNATURE: &str = "x-snode-signature";
/// How far a peer request's timestamp may be from our clock.
pub const PEER_TOLERANCE_MS: i64 = 60_000;

/// Why a peer request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PeerAuthError {
    /// A header is missing or malformed.
    #[error("missing or malformed peer authentication headers")]
    Malformed,
    /// The timestamp is outside the window.
    #[error("peer request timestamp too far from current time")]
    Stale,
    /// The signature does not verify.
    #[error("peer request signature verification failed")]
    BadSignature,
}

fn signed_bytes(method: &str, path: &str, timestamp_ms: i64, body: &[u8]) -> Vec<u8> {
    let digest = Blake2b::<U32>::digest(body);
    let mut m = Vec::with_capacity(64 + method.len() + path.len());
    m.extend_from_slice(b"snode-peer-v1\0");
    m.extend_from_slice(method.as_bytes());
    m.push(0);
    m.extend_from_slice(path.as_bytes());
    m.push(0);
    m.extend_from_slice(timestamp_ms.to_string().as_bytes());
    m.push(0);
    m.extend_from_slice(&digest);
    m
}

/// The three header values for a request from `keys`.
pub fn sign_request(
    keys: &NodeKeys,
    method: &str,
    path: &str,
    body: &[u8],
    now_ms: i64,
) -> [(&'static str, String); 3] {
    let sig = keys.sign(&signed_bytes(method, path, now_ms, body));
    [
        (HEADER_PUBKEY, hex::encode(keys.pubkey_ed25519())),
        (HEADER_TIMESTAMP, now_ms.to_string()),
        (HEADER_SIGNATURE, hex::encode(sig)),
    ]
}

/// Verifies header values; returns the sender's Ed25519 pubkey.
pub fn verify_request(
    pubkey_hex: Option<&str>,
    timestamp: Option<&str>,
    signature_hex: Option<&str>,
    method: &str,
    path: &str,
    body: &[u8],
    now_ms: i64,
) -> Result<[u8; 32], PeerAuthError> {
    let mut pk = [0u8; 32];
    hex::decode_to_slice(pubkey_hex.ok_or(PeerAuthError::Malformed)?, &mut pk)
        .map_err(|_| PeerAuthError::Malformed)?;
    let ts: i64 = timestamp
        .ok_or(PeerAuthError::Malformed)?
        .parse()
        .map_err(|_| PeerAuthError::Malformed)?;
    let mut sig = [0u8; 64];
    hex::decode_to_slice(signature_hex.ok_or(PeerAuthError::Malformed)?, &mut sig)
        .map_err(|_| PeerAuthError::Malformed)?;
    if (ts - now_ms).abs() > PEER_TOLERANCE_MS {
        return Err(PeerAuthError::Stale);
    }
    let key = VerifyingKey::from_bytes(&pk).map_err(|_| PeerAuthError::BadSignature)?;
    key.verify(
        &signed_bytes(method, path, ts, body),
        &Signature::from_bytes(&sig),
    )
    .map_err(|_| PeerAuthError::BadSignature)?;
    Ok(pk)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers<'a>(
        h: &'a [(&'static str, String); 3],
    ) -> (Option<&'a str>, Option<&'a str>, Option<&'a str>) {
        (Some(h[0].1.as_str()), Some(h[1].1.as_str()), Some(h[2].1.as_str()))
    }

    #[test]
    fn round_trip_and_tampering() {
        let keys = NodeKeys::from_seed([3; 32]);
        let h = sign_request(&keys, "POST", "/snode/v1/data", b"body", 1_000_000);
        let (p, t, s) = headers(&h);
        assert_eq!(
            verify_request(p, t, s, "POST", "/snode/v1/data", b"body", 1_000_500),
            Ok(keys.pubkey_ed25519())
        );
        assert_eq!(
            verify_request(p, t, s, "POST", "/snode/v1/data", b"bodx", 1_000_500),
            Err(PeerAuthError::BadSignature)
        );
        assert_eq!(
            verify_request(p, t, s, "POST", "/snode/v1/ping", b"body", 1_000_500),
            Err(PeerAuthError::BadSignature)
        );
        assert_eq!(
            verify_request(p, t, s, "POST", "/snode/v1/data", b"body", 1_100_001),
            Err(PeerAuthError::Stale)
        );
        assert_eq!(
            verify_request(None, t, s, "POST", "/snode/v1/data", b"body", 1_000_000),
            Err(PeerAuthError::Malformed)
        );
        assert_eq!(
            verify_request(p, Some("x"), s, "POST", "/snode/v1/data", b"body", 1_000_000),
            Err(PeerAuthError::Malformed)
        );
    }
}
