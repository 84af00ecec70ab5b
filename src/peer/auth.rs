//! Authentication of node-to-node requests and responses (`/snode/v1/…`).
//!
//! snode's own protocol (the original used OxenMQ over CurveZMQ, whose per-connection keys
//! come from the nodes' X25519 identities). Every pair of nodes shares a MAC key derived once
//! from a static X25519 exchange of their identity keys (the X25519 form of each node's Ed25519
//! key, as listed by the directory):
//! `key = BLAKE2b-256(key = "snode-peer-mac-v2", X25519(mine, theirs) ‖ sorted pubkeys)`.
//! Each request carries the sender's Ed25519 pubkey, a millisecond timestamp, a random 16-byte
//! nonce and `HMAC-SHA256(key, sender ‖ 0 ‖ "POST" ‖ 0 ‖ path ‖ 0 ‖ timestamp ‖ 0 ‖ nonce ‖ 0 ‖
//! "0" ‖ 0 ‖ BLAKE2b-256(body))`; a response the same with method `RESPONSE`, the responder as
//! sender, the **request's** nonce and the response's HTTP status. So a message cannot be
//! forged by anyone but the two nodes, altered, replayed to another endpoint, reflected to its
//! sender, or replayed after the window; the receiver remembers each request's nonce for the
//! window and refuses it a second time, and an answer cannot be replayed for another request
//! or have its status rewritten (a 200 turned 500 would make a hand-off resend, a 500 turned
//! 200 would make it delete). A per-request Ed25519 signature and verification
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
/// Header carrying a request's nonce (hex, 16 bytes); answers are MACed over it.
pub const HEADER_NONCE: &str = "x-snode-nonce";
/// A request's nonce.
pub type Nonce = [u8; 16];
/// Nonces remembered at once: several times what an honest network sends within the window;
/// beyond it requests are refused until old ones are forgotten.
const MAX_REMEMBERED_NONCES: usize = 1_000_000;
/// How far a peer request's timestamp may be from our clock.
pub const PEER_TOLERANCE_MS: i64 = crate::message::PEER_CLOCK_TOLERANCE_MS;
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
    /// This request (its sender and nonce) was already accepted within the window.
    #[error("peer request replayed")]
    Replayed,
    /// Too many requests within the window to remember them all.
    #[error("too many peer requests, try again later")]
    Overloaded,
}

/// What one MAC covers.
struct MacInput<'a> {
    sender: &'a [u8; 32],
    method: &'a str,
    path: &'a str,
    timestamp_ms: i64,
    nonce: &'a Nonce,
    /// 0 for requests; the HTTP status for responses.
    status: u16,
    body: &'a [u8],
}

impl MacInput<'_> {
    fn bytes(&self) -> Vec<u8> {
        let digest = Blake2b::<U32>::digest(self.body);
        let mut m = Vec::with_capacity(160 + self.method.len() + self.path.len());
        for part in [
            &self.sender[..],
            self.method.as_bytes(),
            self.path.as_bytes(),
            self.timestamp_ms.to_string().as_bytes(),
            &self.nonce[..],
            self.status.to_string().as_bytes(),
        ] {
            m.extend_from_slice(part);
            m.push(0);
        }
        m.extend_from_slice(&digest);
        m
    }
}

/// Request nonces accepted within the window, in arrival order.
#[derive(Default)]
struct ReplayCache {
    seen: std::collections::HashSet<([u8; 32], Nonce)>,
    order: std::collections::VecDeque<(i64, [u8; 32], Nonce)>,
}

impl ReplayCache {
    /// Remembers `(sender, nonce)` until `forget_at`; `Err` if already seen or full.
    fn insert(
        &mut self,
        sender: [u8; 32],
        nonce: Nonce,
        forget_at: i64,
        now_ms: i64,
    ) -> Result<(), PeerAuthError> {
        while let Some(&(at, s, n)) = self.order.front() {
            if at >= now_ms {
                break;
            }
            self.order.pop_front();
            self.seen.remove(&(s, n));
        }
        if self.seen.contains(&(sender, nonce)) {
            return Err(PeerAuthError::Replayed);
        }
        if self.seen.len() >= MAX_REMEMBERED_NONCES {
            return Err(PeerAuthError::Overloaded);
        }
        self.seen.insert((sender, nonce));
        self.order.push_back((forget_at, sender, nonce));
        Ok(())
    }
}

fn parse_hex<const N: usize>(v: Option<&str>) -> Result<[u8; N], PeerAuthError> {
    let mut out = [0u8; N];
    hex::decode_to_slice(v.ok_or(PeerAuthError::Malformed)?, &mut out)
        .map_err(|_| PeerAuthError::Malformed)?;
    Ok(out)
}

/// A signed request: its headers, and the nonce its answer must be MACed over.
#[derive(Debug, Clone)]
pub struct SignedRequest {
    /// Header names and values to send.
    pub headers: [(&'static str, String); 4],
    /// The request's nonce.
    pub nonce: Nonce,
}

/// One node's side of peer authentication: its keys and the cached pair keys.
pub struct PeerAuth {
    keys: Arc<NodeKeys>,
    // std Mutex: held for a map lookup or insert, never across an await.
    pairs: Mutex<HashMap<[u8; 32], Zeroizing<[u8; 32]>>>,
    replays: Mutex<ReplayCache>,
}

impl PeerAuth {
    /// Authentication for the node with `keys`.
    pub fn new(keys: Arc<NodeKeys>) -> PeerAuth {
        PeerAuth {
            keys,
            pairs: Mutex::new(HashMap::new()),
            replays: Mutex::new(ReplayCache::default()),
        }
    }

    /// This node's Ed25519 pubkey.
    pub fn me(&self) -> [u8; 32] {
        self.keys.pubkey_ed25519()
    }

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
        let mut mac = <Blake2bMac<U32> as KeyInit>::new_from_slice(b"snode-peer-mac-v2")
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

    fn mac(&self, key: &[u8; 32], input: &MacInput<'_>) -> Result<Hmac<Sha256>, PeerAuthError> {
        let mut mac = <Hmac<Sha256> as hmac::Mac>::new_from_slice(key)
            .map_err(|_| PeerAuthError::BadSignature)?;
        hmac::Mac::update(&mut mac, &input.bytes());
        Ok(mac)
    }

    fn tag(&self, peer: &[u8; 32], input: &MacInput<'_>) -> Result<String, PeerAuthError> {
        let key = self.pair_key(peer)?;
        Ok(hex::encode(
            hmac::Mac::finalize(self.mac(&key, input)?).into_bytes(),
        ))
    }

    /// Signs a request from us to `peer` with a fresh random nonce.
    pub fn sign_request(
        &self,
        peer: &[u8; 32],
        path: &str,
        body: &[u8],
        now_ms: i64,
    ) -> Result<SignedRequest, PeerAuthError> {
        let nonce: Nonce = rand::random();
        let me = self.me();
        let tag = self.tag(
            peer,
            &MacInput {
                sender: &me,
                method: "POST",
                path,
                timestamp_ms: now_ms,
                nonce: &nonce,
                status: 0,
                body,
            },
        )?;
        Ok(SignedRequest {
            headers: [
                (HEADER_PUBKEY, hex::encode(me)),
                (HEADER_TIMESTAMP, now_ms.to_string()),
                (HEADER_NONCE, hex::encode(nonce)),
                (HEADER_SIGNATURE, tag),
            ],
            nonce,
        })
    }

    /// Signs our answer (`status`, `body`) to `peer`'s request with `nonce` on `path`.
    pub fn sign_response(
        &self,
        peer: &[u8; 32],
        path: &str,
        nonce: &Nonce,
        status: u16,
        body: &[u8],
        now_ms: i64,
    ) -> Result<[(&'static str, String); 3], PeerAuthError> {
        let me = self.me();
        let tag = self.tag(
            peer,
            &MacInput {
                sender: &me,
                method: "RESPONSE",
                path,
                timestamp_ms: now_ms,
                nonce,
                status,
                body,
            },
        )?;
        Ok([
            (HEADER_PUBKEY, hex::encode(me)),
            (HEADER_TIMESTAMP, now_ms.to_string()),
            (HEADER_SIGNATURE, tag),
        ])
    }

    /// Checks the timestamp window and the MAC; the sender.
    fn check(
        &self,
        pubkey_hex: Option<&str>,
        timestamp: Option<&str>,
        mac_hex: Option<&str>,
        input: impl FnOnce(&[u8; 32], i64) -> Vec<u8>,
        now_ms: i64,
    ) -> Result<([u8; 32], i64), PeerAuthError> {
        let sender: [u8; 32] = parse_hex(pubkey_hex)?;
        let ts: i64 = timestamp
            .ok_or(PeerAuthError::Malformed)?
            .parse()
            .map_err(|_| PeerAuthError::Malformed)?;
        let tag: [u8; 32] = parse_hex(mac_hex)?;
        // `abs_diff`: a timestamp of i64::MIN or MAX from an attacker cannot overflow.
        if ts.abs_diff(now_ms) > PEER_TOLERANCE_MS.unsigned_abs() {
            return Err(PeerAuthError::Stale);
        }
        let key = self.pair_key(&sender)?;
        let mut mac = <Hmac<Sha256> as hmac::Mac>::new_from_slice(&key[..])
            .map_err(|_| PeerAuthError::BadSignature)?;
        hmac::Mac::update(&mut mac, &input(&sender, ts));
        // Constant-time comparison (hmac's verify_slice).
        hmac::Mac::verify_slice(mac, &tag).map_err(|_| PeerAuthError::BadSignature)?;
        Ok((sender, ts))
    }

    /// Verifies a request to us; its sender and nonce. A nonce is remembered (per sender) for
    /// as long as its timestamp is in the window, and refused a second time.
    #[allow(clippy::too_many_arguments)]
    pub fn verify_request(
        &self,
        pubkey_hex: Option<&str>,
        timestamp: Option<&str>,
        nonce_hex: Option<&str>,
        mac_hex: Option<&str>,
        path: &str,
        body: &[u8],
        now_ms: i64,
    ) -> Result<([u8; 32], Nonce), PeerAuthError> {
        let nonce: Nonce = parse_hex(nonce_hex)?;
        let (sender, ts) = self.check(
            pubkey_hex,
            timestamp,
            mac_hex,
            |sender, ts| {
                MacInput {
                    sender,
                    method: "POST",
                    path,
                    timestamp_ms: ts,
                    nonce: &nonce,
                    status: 0,
                    body,
                }
                .bytes()
            },
            now_ms,
        )?;
        // Remembered only once authentic, so nobody but a listed peer fills the cache.
        let forget_at = ts.saturating_add(PEER_TOLERANCE_MS);
        self.replays
            .lock()
            .map_err(|_| PeerAuthError::Overloaded)?
            .insert(sender, nonce, forget_at, now_ms)?;
        Ok((sender, nonce))
    }

    /// Verifies an answer to our request with `nonce` on `path`, with its HTTP `status`; the
    /// answering node.
    #[allow(clippy::too_many_arguments)]
    pub fn verify_response(
        &self,
        pubkey_hex: Option<&str>,
        timestamp: Option<&str>,
        mac_hex: Option<&str>,
        path: &str,
        nonce: &Nonce,
        status: u16,
        body: &[u8],
        now_ms: i64,
    ) -> Result<[u8; 32], PeerAuthError> {
        self.check(
            pubkey_hex,
            timestamp,
            mac_hex,
            |sender, ts| {
                MacInput {
                    sender,
                    method: "RESPONSE",
                    path,
                    timestamp_ms: ts,
                    nonce,
                    status,
                    body,
                }
                .bytes()
            },
            now_ms,
        )
        .map(|(sender, _)| sender)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair() -> (PeerAuth, PeerAuth) {
        (
            PeerAuth::new(Arc::new(NodeKeys::from_seed([3; 32]))),
            PeerAuth::new(Arc::new(NodeKeys::from_seed([4; 32]))),
        )
    }

    fn get<'a>(h: &'a [(&'static str, String)], name: &str) -> Option<&'a str> {
        h.iter().find(|(n, _)| *n == name).map(|(_, v)| v.as_str())
    }

    fn verify(
        b: &PeerAuth,
        r: &SignedRequest,
        path: &str,
        body: &[u8],
        now: i64,
    ) -> Result<([u8; 32], Nonce), PeerAuthError> {
        let h = &r.headers;
        b.verify_request(
            get(h, HEADER_PUBKEY),
            get(h, HEADER_TIMESTAMP),
            get(h, HEADER_NONCE),
            get(h, HEADER_SIGNATURE),
            path,
            body,
            now,
        )
    }

    #[test]
    fn round_trip_and_tampering() {
        let (a, b) = pair();
        let r = a
            .sign_request(&b.me(), "/snode/v1/data", b"body", 1_000_000)
            .expect("sign");
        assert_eq!(
            verify(&b, &r, "/snode/v1/data", b"bodx", 1_000_500),
            Err(PeerAuthError::BadSignature)
        );
        assert_eq!(
            verify(&b, &r, "/snode/v1/ping", b"body", 1_000_500),
            Err(PeerAuthError::BadSignature)
        );
        assert_eq!(
            verify(&b, &r, "/snode/v1/data", b"body", 1_100_001),
            Err(PeerAuthError::Stale)
        );
        let mut no_key = r.clone();
        no_key.headers[0].1 = "zz".into();
        assert_eq!(
            verify(&b, &no_key, "/snode/v1/data", b"body", 1_000_000),
            Err(PeerAuthError::Malformed)
        );
        let mut bad_ts = r.clone();
        bad_ts.headers[1].1 = "x".into();
        assert_eq!(
            verify(&b, &bad_ts, "/snode/v1/data", b"body", 1_000_000),
            Err(PeerAuthError::Malformed)
        );
        // Another nonce under the same MAC fails.
        let mut other_nonce = r.clone();
        other_nonce.headers[2].1 = hex::encode([9u8; 16]);
        assert_eq!(
            verify(&b, &other_nonce, "/snode/v1/data", b"body", 1_000_500),
            Err(PeerAuthError::BadSignature)
        );
        assert_eq!(
            verify(&b, &r, "/snode/v1/data", b"body", 1_000_500),
            Ok((a.me(), r.nonce))
        );
    }

    #[test]
    fn a_request_is_accepted_once_and_forgotten_after_the_window() {
        let (a, b) = pair();
        let r = a.sign_request(&b.me(), "/x", b"", 1_000_000).expect("sign");
        assert!(verify(&b, &r, "/x", b"", 1_000_000).is_ok());
        assert_eq!(
            verify(&b, &r, "/x", b"", 1_000_001),
            Err(PeerAuthError::Replayed)
        );
        assert_eq!(
            verify(&b, &r, "/x", b"", 1_059_999),
            Err(PeerAuthError::Replayed)
        );
        // Once out of the window it is stale anyway (and no longer remembered).
        assert_eq!(
            verify(&b, &r, "/x", b"", 1_060_001),
            Err(PeerAuthError::Stale)
        );
        let fresh = a.sign_request(&b.me(), "/x", b"", 1_060_001).expect("sign");
        assert!(verify(&b, &fresh, "/x", b"", 1_060_002).is_ok());
        assert_eq!(
            b.replays.lock().expect("lock").seen.len(),
            1,
            "the old nonce was forgotten"
        );
    }

    #[test]
    fn an_answer_is_bound_to_its_request_and_status() {
        let (a, b) = pair();
        let r = a.sign_request(&b.me(), "/x", b"req", 1_000).expect("sign");
        let h = b
            .sign_response(&a.me(), "/x", &r.nonce, 200, b"ok", 1_001)
            .expect("sign");
        let check = |nonce: &Nonce, status: u16, body: &[u8]| {
            a.verify_response(
                get(&h, HEADER_PUBKEY),
                get(&h, HEADER_TIMESTAMP),
                get(&h, HEADER_SIGNATURE),
                "/x",
                nonce,
                status,
                body,
                1_002,
            )
        };
        assert_eq!(check(&r.nonce, 200, b"ok"), Ok(b.me()));
        assert_eq!(
            check(&r.nonce, 500, b"ok"),
            Err(PeerAuthError::BadSignature)
        );
        assert_eq!(
            check(&[0; 16], 200, b"ok"),
            Err(PeerAuthError::BadSignature)
        );
        assert_eq!(
            check(&r.nonce, 200, b"no"),
            Err(PeerAuthError::BadSignature)
        );
        // A response is not a request.
        let as_request = b.verify_request(
            get(&h, HEADER_PUBKEY),
            get(&h, HEADER_TIMESTAMP),
            Some(&hex::encode(r.nonce)),
            get(&h, HEADER_SIGNATURE),
            "/x",
            b"ok",
            1_002,
        );
        assert_eq!(as_request, Err(PeerAuthError::BadSignature));
    }

    #[test]
    fn extreme_timestamps_are_stale_not_an_overflow() {
        let (a, b) = pair();
        for ts in [i64::MIN, i64::MAX, i64::MIN + 1] {
            for now in [0, 1_000, i64::MAX, i64::MIN] {
                let r = a.sign_request(&b.me(), "/x", b"", ts).expect("sign");
                let got = verify(&b, &r, "/x", b"", now);
                if ts.abs_diff(now) > 60_000 {
                    assert_eq!(got, Err(PeerAuthError::Stale), "ts {ts} now {now}");
                } else {
                    assert_eq!(got.map(|(s, _)| s), Ok(a.me()), "ts {ts} now {now}");
                }
            }
        }
    }

    #[test]
    fn a_third_node_cannot_forge_or_reflect() {
        let (a, b) = pair();
        let c = PeerAuth::new(Arc::new(NodeKeys::from_seed([5; 32])));
        // C claims to be A: it does not know the A–B key.
        let mut forged = c.sign_request(&b.me(), "/x", b"", 1_000).expect("sign");
        forged.headers[0].1 = hex::encode(a.me());
        assert_eq!(
            verify(&b, &forged, "/x", b"", 1_000),
            Err(PeerAuthError::BadSignature)
        );
        // A's own request reflected back to A as if B had sent it fails: the sender is MACed.
        let mut reflected = a.sign_request(&b.me(), "/x", b"", 1_000).expect("sign");
        reflected.headers[0].1 = hex::encode(b.me());
        assert_eq!(
            verify(&a, &reflected, "/x", b"", 1_000),
            Err(PeerAuthError::BadSignature)
        );
    }
}
