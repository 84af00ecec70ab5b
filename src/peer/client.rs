//! Authenticated requests to other nodes (`/snode/v1/…`), with authenticated responses
//! checked: on the held QUIC connection to a peer that lists a QUIC port (`peer::quic`,
//! authenticated by the handshake), else — and whenever no QUIC connection can be made, so a
//! network with older nodes keeps working — as a signed HTTPS request.
//!
//! Owns the one pooled HTTP client a node uses for its peers. Certificates are self-signed and
//! not tied to node identities, so authenticity comes from the pairwise MACs of `peer::auth`
//! on both the request and the response (a forged acknowledgement could otherwise make a node drop data it
//! handed off). Must not decide what to send: callers (replication, onion relay) do.

use std::time::Duration;

use axum::body::Bytes;

use super::auth::{HEADER_PUBKEY, HEADER_SIGNATURE, HEADER_TIMESTAMP, PeerAuth};
use crate::clock::Clock;
use crate::keys::NodeKeys;
use crate::swarm::NodeInfo;
use std::sync::Arc;

/// Why a peer request failed.
#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    /// No answer in time.
    #[error("peer did not answer within {0:?}")]
    Timeout(Duration),
    /// Connection refused, reset, TLS failure…
    #[error("cannot reach peer")]
    Unreachable(#[source] reqwest::Error),
    /// The answer was not signed by the peer we asked.
    #[error("peer response is not authentic")]
    NotAuthentic,
    /// The peer is listed at a non-public address and this node may not reach those.
    #[error("peer address is not public ({class})")]
    NotPublic {
        /// The address class (loopback, private, …).
        class: &'static str,
    },
    /// The QUIC connection was lost before the answer (the request may have been handled).
    #[error("connection to peer lost")]
    QuicLost(#[source] crate::quic::client::QuicError),
    /// The node's transport (a simulated network) could not carry the exchange.
    #[error("cannot reach peer over the transport")]
    Transport(#[source] crate::transport::ExchangeError),
    /// The answer's body was larger than any answer a node sends.
    #[error("peer response over {limit} bytes")]
    TooLarge {
        /// The cap, in bytes.
        limit: usize,
    },
}

/// Largest peer answer read, in bytes: a relayed onion answer is at most what an exit hop
/// passes back (10 MiB), anti-entropy and hand-off answers far less. The body is counted while
/// it streams in, so a hostile peer cannot make us buffer more than this.
pub const MAX_PEER_RESPONSE: usize = 10 * 1024 * 1024;

/// A peer's answer: status and body (signature already verified).
#[derive(Debug, Clone)]
pub struct PeerResponse {
    /// HTTP status.
    pub status: u16,
    /// Body bytes.
    pub body: Bytes,
}

/// The node's client for peer traffic.
#[derive(Clone)]
pub struct PeerClient {
    http: reqwest::Client,
    auth: Arc<PeerAuth>,
    /// Held QUIC connections, when peer traffic may use them.
    quic: Option<Arc<super::quic::PeerQuic>>,
    clock: Clock,
    allow_private: bool,
    /// When set, every exchange is plain HTTP/1.1 over this transport (`crate::transport`)
    /// instead of reqwest's sockets: how a simulated node reaches its peers.
    transport: Option<Arc<dyn crate::transport::Transport>>,
}

impl PeerClient {
    /// A client signing with `keys`; `allow_private` lets it reach peers listed at non-public
    /// addresses (local networks only).
    pub fn new(
        keys: Arc<NodeKeys>,
        clock: Clock,
        local_address: Option<std::net::IpAddr>,
        allow_private: bool,
    ) -> Result<PeerClient, reqwest::Error> {
        let http = reqwest::Client::builder()
            .local_address(local_address)
            // Self-signed certificates everywhere; identity is proven by signatures instead.
            .danger_accept_invalid_certs(true)
            .pool_idle_timeout(Duration::from_secs(60))
            .connect_timeout(Duration::from_secs(5))
            .build()?;
        Ok(PeerClient {
            http,
            quic: Some(Arc::new(super::quic::PeerQuic::new(keys.clone()))),
            auth: Arc::new(PeerAuth::new(keys)),
            clock,
            allow_private,
            transport: None,
        })
    }

    /// Sends every exchange over `transport` (plain HTTP/1.1, MACed as over HTTPS) instead of
    /// the host's sockets, and never over QUIC: a node on a simulated network.
    pub fn with_transport(mut self, transport: Arc<dyn crate::transport::Transport>) -> PeerClient {
        self.quic = None;
        self.transport = Some(transport);
        self
    }

    /// The transport every exchange goes over, when the node runs on one (`with_transport`).
    pub fn transport(&self) -> Option<&Arc<dyn crate::transport::Transport>> {
        self.transport.as_ref()
    }

    /// Whether peers that list a QUIC port are reached over QUIC (the default) or always over
    /// HTTPS (`network.peer_transport = "https"`).
    pub fn with_quic(mut self, enabled: bool) -> PeerClient {
        if !enabled {
            self.quic = None;
        }
        self
    }

    /// Why this node may not connect to `peer`, if it may not: a listed node at a non-public
    /// address would otherwise make us send requests into our own network (the exit hop's rule,
    /// for peers). The directory refuses such announcements too; this holds whatever it lists.
    pub fn refuses(&self, peer: &NodeInfo) -> Option<&'static str> {
        if self.allow_private {
            return None;
        }
        crate::directory::addr::classify(peer.ip)
    }

    /// The node's peer authentication (shared with the receiving side of the node).
    pub fn auth(&self) -> &PeerAuth {
        &self.auth
    }

    /// POSTs `body` to `path` on `peer`, within `timeout`.
    pub async fn post(
        &self,
        peer: &NodeInfo,
        path: &str,
        body: Vec<u8>,
        timeout: Duration,
    ) -> Result<PeerResponse, PeerError> {
        if let Some(class) = self.refuses(peer) {
            return Err(PeerError::NotPublic { class });
        }
        if let Some(quic) = &self.quic
            && peer.omq_port != 0
        {
            use super::quic::QuicPeerError;
            match quic.post(peer, path, &body, timeout).await {
                Ok((status, body)) => {
                    if body.len() > MAX_PEER_RESPONSE {
                        return Err(PeerError::TooLarge {
                            limit: MAX_PEER_RESPONSE,
                        });
                    }
                    return Ok(PeerResponse { status, body });
                }
                Err(QuicPeerError::Lost(crate::quic::client::QuicError::Timeout)) => {
                    return Err(PeerError::Timeout(timeout));
                }
                Err(QuicPeerError::Lost(e)) => return Err(PeerError::QuicLost(e)),
                Err(QuicPeerError::BadAnswer) => return Err(PeerError::NotAuthentic),
                // Nothing was sent: an older node without QUIC, or UDP blocked on the way.
                Err(QuicPeerError::NotConnected(e)) => {
                    tracing::debug!(error = %crate::error::chain(&e), "no QUIC connection to peer; using HTTPS");
                }
            }
        }
        let now = (self.clock)();
        let signed = self
            .auth
            .sign_request(&peer.pubkey_ed25519, path, &body, now)
            .map_err(|_| PeerError::NotAuthentic)?;
        let (status, headers, body) = match &self.transport {
            Some(t) => {
                over_transport(t.as_ref(), peer, path, &signed.headers, body, timeout).await?
            }
            None => {
                let url = format!("https://{}:{}{}", peer.ip, peer.https_port, path);
                let mut req = self.http.post(url).timeout(timeout);
                for (name, value) in &signed.headers {
                    req = req.header(*name, value.clone());
                }
                let resp = req
                    .body(body)
                    .send()
                    .await
                    .map_err(|e| classify(e, timeout))?;
                let status = resp.status().as_u16();
                let headers = resp.headers().clone();
                let body = read_capped(resp, MAX_PEER_RESPONSE, timeout).await?;
                (status, headers, body)
            }
        };
        let get = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        // The answer's MAC covers our nonce and its status: it answers this request, as sent.
        let signer = self
            .auth
            .verify_response(
                get(HEADER_PUBKEY),
                get(HEADER_TIMESTAMP),
                get(HEADER_SIGNATURE),
                path,
                &signed.nonce,
                status,
                &body,
                (self.clock)(),
            )
            .map_err(|_| PeerError::NotAuthentic)?;
        if signer != peer.pubkey_ed25519 {
            return Err(PeerError::NotAuthentic);
        }
        Ok(PeerResponse { status, body })
    }
}

/// One signed exchange over a node's transport: POST `body` to `path` on `peer` as plain
/// HTTP/1.1, within `timeout`, its answer capped at [`MAX_PEER_RESPONSE`].
async fn over_transport(
    transport: &dyn crate::transport::Transport,
    peer: &NodeInfo,
    path: &str,
    headers: &[(&'static str, String)],
    body: Vec<u8>,
    timeout: Duration,
) -> Result<(u16, reqwest::header::HeaderMap, Bytes), PeerError> {
    let addr = std::net::SocketAddr::new(peer.ip.into(), peer.https_port);
    let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
    use crate::transport::ExchangeError;
    let answer = crate::transport::post(
        transport,
        addr,
        path,
        &headers,
        body,
        MAX_PEER_RESPONSE,
        timeout,
    )
    .await;
    match answer {
        Err(ExchangeError::Timeout) => Err(PeerError::Timeout(timeout)),
        Err(ExchangeError::Request(_)) => Err(PeerError::NotAuthentic),
        Err(ExchangeError::Body { limit }) => Err(PeerError::TooLarge { limit }),
        Err(e) => Err(PeerError::Transport(e)),
        Ok(resp) => {
            let (parts, body) = resp.into_parts();
            Ok((parts.status.as_u16(), parts.headers, body))
        }
    }
}

/// The body of `resp`, refused as soon as it is known to exceed `limit` bytes: from its
/// `Content-Length` before reading, else while its chunks arrive.
async fn read_capped(
    mut resp: reqwest::Response,
    limit: usize,
    timeout: Duration,
) -> Result<Bytes, PeerError> {
    if resp.content_length().is_some_and(|n| n > limit as u64) {
        return Err(PeerError::TooLarge { limit });
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| classify(e, timeout))? {
        if body.len() + chunk.len() > limit {
            return Err(PeerError::TooLarge { limit });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Bytes::from(body))
}

fn classify(e: reqwest::Error, timeout: Duration) -> PeerError {
    if e.is_timeout() {
        PeerError::Timeout(timeout)
    } else {
        // reqwest's message names the URL (a peer's public address, not a client's): fine.
        PeerError::Unreachable(e)
    }
}
