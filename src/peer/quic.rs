//! Peer traffic over held QUIC connections (upstream 2.12 moves its node-to-node traffic the
//! same way): one connection per peer, both ends authenticated by their Ed25519 raw public
//! keys in the TLS handshake, and each `/snode/v1/…` exchange a command on the request
//! stream — endpoint = the path, body = the request body, answered `R` with the bencoded list
//! `[status, body]`.
//!
//! The channel gives what `peer::auth`'s MACs give over HTTPS: only the peer holding the key
//! we dialled can answer (the server proves its key; a wrong key fails the handshake), the
//! receiver knows the sender by its client certificate, TLS 1.3 refuses replayed or altered
//! records, and each answer is matched to its request by id on the connection and carries its
//! status inside the authenticated stream. So no per-request MAC or nonce is added here.
//! Owns the connection table and the answer encoding. Must not decide what to send.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use crate::bencode::{Decoder, Limits};
use crate::keys::NodeKeys;
use crate::quic::client::{Answer, QuicConnection, QuicError};
use crate::swarm::NodeInfo;

/// Handshake time given to a peer (the original's reachability tests use 5 s).
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// After a failed handshake a peer is reached over HTTPS for this long before QUIC is tried
/// again, so a peer whose UDP is blocked does not cost a handshake timeout per request.
const RETRY_QUIC_AFTER: Duration = Duration::from_secs(60);

/// One peer's connection, or when it last failed.
#[derive(Default)]
struct Slot {
    conn: Option<Arc<QuicConnection>>,
    failed_at: Option<tokio::time::Instant>,
}

/// The answer body of a peer command: `l i<status>e <body> e`.
pub fn encode_answer(status: u16, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 16);
    super::batch::put_answer(&mut out, status, body);
    out
}

/// Reads [`encode_answer`]'s bytes.
pub fn decode_answer(b: &[u8]) -> Option<(u16, Bytes)> {
    let mut d = Decoder::new(
        b,
        Limits {
            max_depth: 1,
            max_values: 3,
            ..Limits::DEFAULT
        },
    )
    .ok()?;
    let (status, body) = super::batch::read_answer(&mut d)?;
    d.finish().ok()?;
    Some((status, body))
}

/// Why a request did not go over QUIC.
#[derive(Debug)]
pub enum QuicPeerError {
    /// No connection could be made: nothing was sent (the caller may use HTTPS instead).
    NotConnected(QuicError),
    /// The request was sent (or may have been) and got no answer: not to be re-sent blindly.
    Lost(QuicError),
    /// The answer is not `[status, body]`.
    BadAnswer,
}

/// The held connections of one node to its peers, presenting the node's own key.
pub struct PeerQuic {
    keys: Arc<NodeKeys>,
    endpoint: tokio::sync::OnceCell<quinn::Endpoint>,
    /// One slot per peer, each with its own lock: a handshake to one peer (up to 5 s) holds
    /// only that peer's slot, never the others' traffic.
    slots: std::sync::Mutex<HashMap<[u8; 32], Arc<tokio::sync::Mutex<Slot>>>>,
}

impl PeerQuic {
    /// A table for the node with `keys`; its UDP endpoint is made on first use.
    pub fn new(keys: Arc<NodeKeys>) -> PeerQuic {
        PeerQuic {
            keys,
            endpoint: tokio::sync::OnceCell::new(),
            slots: std::sync::Mutex::new(HashMap::new()),
        }
    }

    fn slot(&self, peer: &[u8; 32]) -> Arc<tokio::sync::Mutex<Slot>> {
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        // Bounded by the network's size: slots of nodes no longer listed are dropped when the
        // table outgrows any network (their connections close when idle anyway).
        if slots.len() > 10_000 {
            slots.clear();
        }
        slots.entry(*peer).or_default().clone()
    }

    async fn connection(&self, peer: &NodeInfo) -> Result<Arc<QuicConnection>, QuicError> {
        let slot = self.slot(&peer.pubkey_ed25519);
        let mut slot = slot.lock().await;
        if let Some(c) = &slot.conn
            && c.is_open()
        {
            return Ok(c.clone());
        }
        if slot
            .failed_at
            .is_some_and(|t| t.elapsed() < RETRY_QUIC_AFTER)
        {
            return Err(QuicError::HandshakeTimeout);
        }
        let endpoint = self
            .endpoint
            .get_or_try_init(|| async {
                crate::quic::endpoint::client(std::net::Ipv4Addr::UNSPECIFIED.into())
            })
            .await?;
        let addr = SocketAddr::from((peer.ip, peer.omq_port));
        // Connecting under the peer's slot lock: concurrent first requests to one peer wait
        // for one handshake instead of each making a connection.
        match crate::quic::client::connect(
            endpoint,
            self.keys.clone(),
            addr,
            peer.pubkey_ed25519,
            HANDSHAKE_TIMEOUT,
        )
        .await
        {
            Ok(c) => {
                let c = Arc::new(c);
                slot.conn = Some(c.clone());
                slot.failed_at = None;
                Ok(c)
            }
            Err(e) => {
                slot.conn = None;
                slot.failed_at = Some(tokio::time::Instant::now());
                Err(e)
            }
        }
    }

    /// Sends `path` with `body` to `peer` on its held connection; its status and body.
    pub async fn post(
        &self,
        peer: &NodeInfo,
        path: &str,
        body: &[u8],
        timeout: Duration,
    ) -> Result<(u16, Bytes), QuicPeerError> {
        let conn = self
            .connection(peer)
            .await
            .map_err(QuicPeerError::NotConnected)?;
        match conn.request(path, body, timeout).await {
            Ok(Answer::Reply(b)) => decode_answer(&b).ok_or(QuicPeerError::BadAnswer),
            Ok(Answer::Error(_)) => Err(QuicPeerError::BadAnswer),
            Err(QuicError::Timeout) => {
                // A peer that was killed and restarted never answers on the old connection,
                // and QUIC itself notices only at the idle timeout (30 s): every forward to
                // it would wait out its own timeout meanwhile (the soak saw writes to the
                // swarm stall for 30 s after each restart). Drop the connection now; the
                // next request makes a new one (or finds the peer down and uses HTTPS).
                self.forget(peer, &conn).await;
                Err(QuicPeerError::Lost(QuicError::Timeout))
            }
            // A lost connection is replaced on the next request (`is_open`).
            Err(e) => Err(QuicPeerError::Lost(e)),
        }
    }

    /// Closes `conn` and empties the peer's slot, unless another request already replaced it.
    async fn forget(&self, peer: &NodeInfo, conn: &Arc<QuicConnection>) {
        let slot = self.slot(&peer.pubkey_ed25519);
        let mut slot = slot.lock().await;
        if slot.conn.as_ref().is_some_and(|c| Arc::ptr_eq(c, conn)) {
            slot.conn = None;
        }
        conn.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_round_trip_and_refuse_other_shapes() {
        let b = encode_answer(421, b"{\"snodes\":[]}");
        assert_eq!(b, b"li421e13:{\"snodes\":[]}e");
        assert_eq!(
            decode_answer(&b),
            Some((421, Bytes::from_static(b"{\"snodes\":[]}")))
        );
        for bad in [
            &b"li200ee"[..],
            b"li70000e0:e",
            b"li200e0:0:e",
            b"i5e",
            b"li200e0:ex",
        ] {
            assert_eq!(decode_answer(bad), None, "{}", String::from_utf8_lossy(bad));
        }
    }
}
