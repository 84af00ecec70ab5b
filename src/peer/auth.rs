//! Authentication of node-to-node requests and responses (`/snode/v1/…`).
//!
//! snode's own protocol (the original used OxenMQ over CurveZMQ, whose per-connection keys
//! come from the nodes' X25519 identities). Every pair of nodes shares a MAC key derived once
//! from a static X25519 exchange of their identity keys (the X25519 form of each node's Ed25519
//! key, as listed by the directory):
//! `key = BLAKE2b-256(key = "snode-peer-mac-v1", X25519(mine, theirs) ‖ sorted pubkeys)`.
//! Each request carries the sender's Ed25519 pubkey, a millisecond timestamp and
//! `HMAC-SHA256(key, sender ‖ 0 ‖ METHOD ‖ 0 ‖ path ‖ 0 ‖ timestamp ‖ 0 ‖ BLAKE2b-256(body))`;
//! responses the same with method `RESPONSE` and the responder as sender. So a message cannot
//! be forged by anyone but the two nodes, altered, replayed to another endpoint, reflected to
//! its sender, or replayed after the window. A per-request Ed25519 signature and verification
//! (the first version of this module) cost ≈ 130 µs per hop and answer; the MAC costs ≈ 1 µs
//! after the once-per-peer exchange. Receivers also require the sender to be listed by the
//! directory (checked by the caller). Pure apart from the cache; time is a parameter.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use blake2::digest::consts::U32;
use blake2::digest::{KeyInit, Mac};
use blake2::{Blake2b, Blake2bMac, Digest};
use hmac::Hmac;
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::keys::NodeKeys;

/// Header carrying the sender's Ed25519 pubkey (hex).
pub const HEADER_PUBKEY: &str = "x-snode-pubkey";
/// Header carrying the signing time (ms since epoch).
pub const HEADER_TIMESTAMP: &str = "x-snode-timestamp";
/// Header carrying the MAC (hex).
pub const HEADER_SIGNATURE: &str = "x-snode-signature";
/// How far a peer request's timestamp may be from our clock.
pub const PEER_TOLERANCE_MS: i64 = 60_000;
/// Pair keys cached at most (a network's size; beyond it the cache starts over).
const MAX_CACHED_PEERS: usize = 10_000;

/// Why a peer request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PeerAuthError {
    /// A header is missing or malformed.
    #[error("missing or malformed peer authentication headers")]
    Malformed,
    /// The timestamp is outside the window.
    #[error("peer request timestamp too far from current time")]
    Stale,
    /// The MAC does not verify (or the claimed key is not a usable curve point).
    #[error("peer request signature verification failed")]
    BadSignature,
}

fn mac_input(
    sender: &[u8; 32],
    method: &str,
    path: &str,
    timestamp_ms: i64,
    body: &[u8],
) -> Vec<u8> {
    let digest = Blake2b::<U32>::digest(body);
    let mut m = Vec::with_capacity(128 + method.len() + path.len());
    m.extend_from_slice(sender);
    m.push(0);
    m.extend_from_slice(method.as_bytes());
    m.push(0);
    m.extend_from_slice(path.as_bytes());
    m.push(0);
    m.extend_from_slice(timestamp_ms.to_string().as_bytes());
    m.push(0);
    m.extend_from_slice(&digest);
    m
}

/// One node's side of peer authentication: its keys and the cached pair keys.
pub struct PeerAuth {
    keys: Arc<NodeKeys>,
    // std Mutex: held for a map lookup or insert, never across an await.
    pairs: Mutex<HashMap<[u8; 32], Zeroizing<[u8; 32]>>>,
}

impl PeerAuth {
    /// Authentication for the node with `keys`.
    pub fn new(keys: Arc<NodeKeys>) -> PeerAuth {
        PeerAuth {
            keys,
            pairs: Mutex::new(HashMap::new()),
        }
    }

    /// This node's Ed25519 pubkey.
    pub fn me(&self) -> [u8; 32] {
        self.keys.pubkey_ed25519()
    }

    /// The MAC key shared with `peer` (computed once, then cached).
    /// How many pair keys are cached (for tests that show who gets one).
    pub fn cached_pairs(&self) -> usize {
        self.pairs.lock().map_or(0, |p| p.len())
    }

    fn pair_key(&self, peer: &[u8; 32]) -> Result<Zeroizing<[u8; 32]>, PeerAuthError> {
        if let Ok(pairs) = self.pairs.lock()
            && let Some(k) = pairs.get(peer)
        {
            return Ok(k.clone());
        }
        let their_x = crate::keys::ed25519_pk_to_x25519(peer).ok_or(PeerAuthError::BadSignature)?;
        let shared = self
            .keys
            .x25519_secret()
            .diffie_hellman(&x25519_dalek::PublicKey::from(their_x));
        if !shared.was_contributory() {
            return Err(PeerAuthError::BadSignature);
        }
        let me = self.me();
        let (lo, hi) = if me <= *peer {
            (me, *peer)
        } else {
            (*peer, me)
        };
        let mut mac = <Blake2bMac<U32> as KeyInit>::new_from_slice(b"snode-peer-mac-v1")
            .map_err(|_| PeerAuthError::BadSignature)?;
        Mac::update(&mut mac, shared.as_bytes());
        Mac::update(&mut mac, &lo);
        Mac::update(&mut mac, &hi);
        let key = Zeroizing::new(<[u8; 32]>::from(Mac::finalize(mac).into_bytes()));
        if let Ok(mut pairs) = self.pairs.lock() {
            if pairs.len() >= MAX_CACHED_PEERS {
                pairs.clear();
            }
            pairs.insert(*peer, key.clone());
        }
        Ok(key)
    }

    fn mac(
        &self,
        key: &[u8; 32],
        sender: &[u8; 32],
        method: &str,
        path: &str,
        timestamp_ms: i64,
        body: &[u8],
    ) -> Result<Hmac<Sha256>, PeerAuthError> {
        let mut mac = <Hmac<Sha256> as hmac::Mac>::new_from_slice(key)
            .map_err(|_| PeerAuthError::BadSignature)?;
        hmac::Mac::update(
            &mut mac,
            &mac_input(sender, method, path, timestamp_ms, body),
        );
        Ok(mac)
    }

    /// The three header values for a message from us to `peer`.
    pub fn sign(
        &self,
        peer: &[u8; 32],
        method: &str,
        path: &str,
        body: &[u8],
        now_ms: i64,
    ) -> Result<[(&'static str, String); 3], PeerAuthError> {
        let key = self.pair_key(peer)?;
        let me = self.me();
        let tag =
            hmac::Mac::finalize(self.mac(&key, &me, method, path, now_ms, body)?).into_bytes();
        Ok([
            (HEADER_PUBKEY, hex::encode(me)),
            (HEADER_TIMESTAMP, now_ms.to_string()),
            (HEADER_SIGNATURE, hex::encode(tag)),
        ])
    }

    /// Verifies header values of a message to us; returns the sender's Ed25519 pubkey.
    #[allow(clippy::too_many_arguments)]
    pub fn verify(
        &self,
        pubkey_hex: Option<&str>,
        timestamp: Option<&str>,
        mac_hex: Option<&str>,
        method: &str,
        path: &str,
        body: &[u8],
        now_ms: i64,
    ) -> Result<[u8; 32], PeerAuthError> {
        let mut sender = [0u8; 32];
        hex::decode_to_slice(pubkey_hex.ok_or(PeerAuthError::Malformed)?, &mut sender)
            .map_err(|_| PeerAuthError::Malformed)?;
        let ts: i64 = timestamp
            .ok_or(PeerAuthError::Malformed)?
            .parse()
            .map_err(|_| PeerAuthError::Malformed)?;
        let mut tag = [0u8; 32];
        hex::decode_to_slice(mac_hex.ok_or(PeerAuthError::Malformed)?, &mut tag)
            .map_err(|_| PeerAuthError::Malformed)?;
        // `abs_diff`: a timestamp of i64::MIN or MAX from an attacker cannot overflow.
        if ts.abs_diff(now_ms) > PEER_TOLERANCE_MS.unsigned_abs() {
            return Err(PeerAuthError::Stale);
        }
        let key = self.pair_key(&sender)?;
        // Constant-time comparison (hmac's verify_slice).
        hmac::Mac::verify_slice(self.mac(&key, &sender, method, path, ts, body)?, &tag)
            .map_err(|_| PeerAuthError::BadSignature)?;
        Ok(sender)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers<'a>(
        h: &'a [(&'static str, String); 3],
    ) -> (Option<&'a str>, Option<&'a str>, Option<&'a str>) {
        (
            Some(h[0].1.as_str()),
            Some(h[1].1.as_str()),
            Some(h[2].1.as_str()),
        )
    }

    fn pair() -> (PeerAuth, PeerAuth) {
        (
            PeerAuth::new(Arc::new(NodeKeys::from_seed([3; 32]))),
            PeerAuth::new(Arc::new(NodeKeys::from_seed([4; 32]))),
        )
    }

    #[test]
    fn round_trip_and_tampering() {
        let (a, b) = pair();
        let h = a
            .sign(&b.me(), "POST", "/snode/v1/data", b"body", 1_000_000)
            .expect("sign");
        let (p, t, s) = headers(&h);
        assert_eq!(
            b.verify(p, t, s, "POST", "/snode/v1/data", b"body", 1_000_500),
            Ok(a.me())
        );
        assert_eq!(
            b.verify(p, t, s, "POST", "/snode/v1/data", b"bodx", 1_000_500),
            Err(PeerAuthError::BadSignature)
        );
        assert_eq!(
            b.verify(p, t, s, "POST", "/snode/v1/ping", b"body", 1_000_500),
            Err(PeerAuthError::BadSignature)
        );
        assert_eq!(
            b.verify(p, t, s, "RESPONSE", "/snode/v1/data", b"body", 1_000_500),
            Err(PeerAuthError::BadSignature)
        );
        assert_eq!(
            b.verify(p, t, s, "POST", "/snode/v1/data", b"body", 1_100_001),
            Err(PeerAuthError::Stale)
        );
        assert_eq!(
            b.verify(None, t, s, "POST", "/snode/v1/data", b"body", 1_000_000),
            Err(PeerAuthError::Malformed)
        );
        assert_eq!(
            b.verify(
                p,
                Some("x"),
                s,
                "POST",
                "/snode/v1/data",
                b"body",
                1_000_000
            ),
            Err(PeerAuthError::Malformed)
        );
    }

    #[test]
    fn extreme_timestamps_are_stale_not_an_overflow() {
        let (a, b) = pair();
        let a_hex = hex::encode(a.me());
        for ts in [i64::MIN, i64::MAX, i64::MIN + 1] {
            let h = a.sign(&b.me(), "POST", "/x", b"", ts).expect("sign");
            for now in [0, 1_000, i64::MAX, i64::MIN] {
                let r = b.verify(
                    Some(&a_hex),
                    Some(&h[1].1),
                    Some(&h[2].1),
                    "POST",
                    "/x",
                    b"",
                    now,
                );
                if ts.abs_diff(now) > 60_000 {
                    assert_eq!(r, Err(PeerAuthError::Stale), "ts {ts} now {now}");
                } else {
                    assert_eq!(r, Ok(a.me()), "ts {ts} now {now}");
                }
            }
        }
    }

    #[test]
    fn a_third_node_cannot_forge_or_reflect() {
        let (a, b) = pair();
        let c = PeerAuth::new(Arc::new(NodeKeys::from_seed([5; 32])));
        // C claims to be A: it does not know the A–B key.
        let forged = c.sign(&b.me(), "POST", "/x", b"", 1_000).expect("sign");
        let a_hex = hex::encode(a.me());
        assert_eq!(
            b.verify(
                Some(&a_hex),
                Some(&forged[1].1),
                Some(&forged[2].1),
                "POST",
                "/x",
                b"",
                1_000
            ),
            Err(PeerAuthError::BadSignature)
        );
        // A's own message reflected back to A as if B had sent it fails: the sender is MACed.
        let h = a.sign(&b.me(), "POST", "/x", b"", 1_000).expect("sign");
        let b_hex = hex::encode(b.me());
        assert_eq!(
            a.verify(
                Some(&b_hex),
                Some(&h[1].1),
                Some(&h[2].1),
                "POST",
                "/x",
                b"",
                1_000
            ),
            Err(PeerAuthError::BadSignature)
        );
        // Both directions share one key.
        let back = b
            .sign(&a.me(), "RESPONSE", "/x", b"ok", 1_000)
            .expect("sign");
        let (p, t, s) = headers(&back);
        assert_eq!(
            a.verify(p, t, s, "RESPONSE", "/x", b"ok", 1_000),
            Ok(b.me())
        );
    }
}
