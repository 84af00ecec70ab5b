//! One onion request from the client: build the layers for a path and a destination node,
//! send them to the guard — as the `onion_req` command on a QUIC connection kept to it
//! (libsession, quic.md), or as a POST to its `/onion_req/v2` (Session's older clients) — and
//! open the destination's answer (clients.md 2.1–2.5).
//!
//! Owns the classification of what came back: an answer from the destination (its inner
//! status and body), a plain-text path error (with the culprit it names, if any), or a guard
//! that could not be reached. Must not: choose paths or retry (the `Client` does), or log
//! payloads.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use serde_json::Value;

use crate::onion::{BuildError, Destination, EncType, HopKeys, build_onion};
use crate::swarm::NodeInfo;

/// How long the client waits for the guard: the relays' 30 s plus margin.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(40);

/// The destination's answer, decrypted.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeResponse {
    /// The RPC status (`status` inside the encrypted reply).
    pub status: u16,
    /// The RPC body: JSON when it parses as JSON (the node sends JSON bodies as strings),
    /// else the text as a JSON string.
    pub body: Value,
}

/// Why no answer came from the destination.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// The onion could not be built (a bad key in the node list).
    #[error("cannot build the onion request")]
    Build(#[from] BuildError),
    /// No path could be chosen (every node left the pool); nothing was sent.
    #[error("cannot choose a path")]
    NoPath(#[source] crate::client::paths::PathError),
    /// The guard could not be reached (connect, TLS, timeout).
    #[error("guard unreachable")]
    Guard(#[source] reqwest::Error),
    /// The guard could not be reached over QUIC (handshake, wrong key, timeout).
    #[error("guard unreachable over QUIC")]
    GuardQuic(#[source] crate::quic::client::QuicError),
    /// The guard lists no QUIC port.
    #[error("guard has no QUIC port")]
    NoQuicPort,
    /// A hop answered with a plain-text error (`502 Next node not found: …`, 504, …).
    #[error("path error {status}: {text}")]
    Path {
        /// HTTP status of the guard's answer.
        status: u16,
        /// Its text.
        text: String,
    },
    /// A 200 whose body did not open with the destination's key (a hop's own "Invalid json"
    /// answer is encrypted for that hop, or something is corrupted on the way).
    #[error("the answer does not decrypt")]
    Undecryptable,
}

impl SendError {
    /// The node a path error names (`Next node not found: <ed25519 hex>`,
    /// `Next node is currently unreachable: <hex>`, `Snode not ready: <hex>`).
    pub fn named_node(&self) -> Option<[u8; 32]> {
        let SendError::Path { text, .. } = self else {
            return None;
        };
        [
            "Next node not found: ",
            "Next node is currently unreachable: ",
            "Snode not ready: ",
        ]
        .iter()
        .find_map(|prefix| text.trim().strip_prefix(prefix))
        .and_then(|rest| {
            let mut key = [0u8; 32];
            hex::decode_to_slice(rest.get(..64)?, &mut key).ok()?;
            Some(key)
        })
    }
}

/// The keys of a node as the onion builder wants them.
pub fn hop_keys(n: &NodeInfo) -> HopKeys {
    HopKeys {
        ed25519: n.pubkey_ed25519,
        x25519: n.pubkey_x25519,
    }
}

/// How guards are reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransportKind {
    /// QUIC (oxen-libquic's request stream), as libsession-based clients.
    Quic,
    /// HTTPS `POST /onion_req/v2`, as Session's older clients.
    Https,
}

impl TransportKind {
    /// `quic` or `https`.
    pub fn from_name(s: &str) -> Option<TransportKind> {
        match s {
            "quic" => Some(TransportKind::Quic),
            "https" => Some(TransportKind::Https),
            _ => None,
        }
    }
}

/// The client's way to its guards, with what it keeps between requests: the HTTPS client,
/// or one QUIC connection per guard (libsession holds its guard connection too).
pub enum Carrier {
    /// HTTPS.
    Https(reqwest::Client),
    /// QUIC, connections made on first use and kept.
    Quic(QuicGuards),
}

/// Held QUIC connections to guards, with a throw-away client key (as libsession makes).
#[derive(Default)]
pub struct QuicGuards {
    endpoint: Option<quinn::Endpoint>,
    key: Option<Arc<crate::keys::NodeKeys>>,
    conns: HashMap<[u8; 32], Arc<crate::quic::client::QuicConnection>>,
}

/// libsession's handshake timeout to a guard (clients.md 1.3).
const QUIC_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(3);

impl Carrier {
    /// A carrier of `kind`.
    pub fn new(kind: TransportKind) -> Result<Carrier, reqwest::Error> {
        Ok(match kind {
            TransportKind::Https => Carrier::Https(
                reqwest::Client::builder()
                    // Node certificates are self-signed, and Session clients do not check
                    // them either: the onion layers, encrypted to each node's X25519 key,
                    // are what authenticates the hops.
                    .danger_accept_invalid_certs(true)
                    .no_proxy()
                    .build()?,
            ),
            TransportKind::Quic => Carrier::Quic(QuicGuards::default()),
        })
    }
}

impl QuicGuards {
    /// The held connection to `node`, connecting first if there is none.
    pub async fn connection(
        &mut self,
        node: &NodeInfo,
    ) -> Result<Arc<crate::quic::client::QuicConnection>, SendError> {
        if let Some(c) = self.conns.get(&node.pubkey_ed25519) {
            return Ok(c.clone());
        }
        if node.omq_port == 0 {
            return Err(SendError::NoQuicPort);
        }
        let endpoint = match &self.endpoint {
            Some(e) => e.clone(),
            None => {
                let e = crate::quic::endpoint::client(std::net::Ipv4Addr::UNSPECIFIED.into())
                    .map_err(|e| SendError::GuardQuic(e.into()))?;
                self.endpoint = Some(e.clone());
                e
            }
        };
        let key = self
            .key
            .get_or_insert_with(|| Arc::new(crate::keys::NodeKeys::generate()))
            .clone();
        let addr = SocketAddr::from((node.ip, node.omq_port));
        let conn = crate::quic::client::connect(
            &endpoint,
            key,
            addr,
            node.pubkey_ed25519,
            QUIC_HANDSHAKE_TIMEOUT,
        )
        .await
        .map_err(SendError::GuardQuic)?;
        let conn = Arc::new(conn);
        self.conns.insert(node.pubkey_ed25519, conn.clone());
        Ok(conn)
    }

    /// Forgets a connection that failed, so the next request makes a new one.
    pub fn drop_connection(&mut self, node: &[u8; 32]) {
        if let Some(c) = self.conns.remove(node) {
            c.close();
        }
    }
}

/// Splits the original's QUIC error text `"<code> <reason>\n\n<body>"` into status and body.
fn split_error(body: &[u8]) -> (u16, String) {
    let text = String::from_utf8_lossy(body);
    let code = text
        .split(' ')
        .next()
        .and_then(|c| c.parse::<u16>().ok())
        .unwrap_or(500);
    let rest = text.split_once("\n\n").map_or(text.as_ref(), |(_, b)| b);
    (code, rest.to_owned())
}

/// Sends `payload` (`{"method","params"}`) to `dest` through `path` and returns its answer.
pub async fn send_onion(
    carrier: &mut Carrier,
    path: &[NodeInfo],
    dest: &NodeInfo,
    payload: &[u8],
    enc_type: EncType,
) -> Result<NodeResponse, SendError> {
    let hops: Vec<HopKeys> = path.iter().map(hop_keys).collect();
    let built = build_onion(&hops, &Destination::Node(hop_keys(dest)), payload, enc_type)?;
    // The guard: the path's first node, or the destination itself for an empty path.
    let entry = path.first().unwrap_or(dest);
    let (status, body) = match carrier {
        Carrier::Https(http) => {
            let resp = http
                .post(format!(
                    "https://{}:{}/onion_req/v2",
                    entry.ip, entry.https_port
                ))
                .timeout(REQUEST_TIMEOUT)
                .body(built.guard_body)
                .send()
                .await
                .map_err(SendError::Guard)?;
            let status = resp.status().as_u16();
            (
                status,
                resp.bytes().await.map_err(SendError::Guard)?.to_vec(),
            )
        }
        Carrier::Quic(guards) => {
            let conn = guards.connection(entry).await?;
            match conn
                .request("onion_req", &built.guard_body, REQUEST_TIMEOUT)
                .await
            {
                Ok(crate::quic::client::Answer::Reply(b)) => (200, b),
                Ok(crate::quic::client::Answer::Error(b)) => {
                    let (status, text) = split_error(&b);
                    return Err(SendError::Path { status, text });
                }
                Err(e) => {
                    guards.drop_connection(&entry.pubkey_ed25519);
                    return Err(SendError::GuardQuic(e));
                }
            }
        }
    };
    if status != 200 {
        return Err(SendError::Path {
            status,
            text: String::from_utf8_lossy(&body).into_owned(),
        });
    }
    let sealed = decode_base64(&body).ok_or(SendError::Undecryptable)?;
    let plain = built
        .reply_key
        .decrypt_reply(&sealed)
        .map_err(|_| SendError::Undecryptable)?;
    parse_reply(&plain).ok_or(SendError::Undecryptable)
}

/// The answer is base64 (standard alphabet; padded as libsession writes it, unpadded
/// accepted), possibly with a trailing newline.
fn decode_base64(body: &[u8]) -> Option<Vec<u8>> {
    let text = std::str::from_utf8(body).ok()?.trim();
    STANDARD
        .decode(text)
        .or_else(|_| STANDARD_NO_PAD.decode(text))
        .ok()
}

/// `{"status": n, "body": …}` (libsession also accepts `status_code`).
fn parse_reply(plain: &[u8]) -> Option<NodeResponse> {
    let v: Value = serde_json::from_slice(plain).ok()?;
    let status = v
        .get("status")
        .or_else(|| v.get("status_code"))?
        .as_u64()
        .and_then(|s| u16::try_from(s).ok())?;
    let body = match v.get("body") {
        Some(Value::String(s)) => {
            serde_json::from_str(s).unwrap_or_else(|_| Value::String(s.clone()))
        }
        Some(other) => other.clone(),
        None => Value::Null,
    };
    Some(NodeResponse { status, body })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn replies_parse_whether_the_body_is_embedded_or_a_string() {
        let r = parse_reply(br#"{"status":200,"body":"{\"hash\":\"h\"}"}"#).unwrap();
        assert_eq!(
            r,
            NodeResponse {
                status: 200,
                body: json!({"hash": "h"})
            }
        );
        let r = parse_reply(br#"{"status":421,"body":{"snodes":[]}}"#).unwrap();
        assert_eq!(r.body, json!({"snodes": []}));
        let r =
            parse_reply(br#"{"status_code":401,"body":"retrieve signature verification failed"}"#)
                .unwrap();
        assert_eq!(
            (r.status, r.body),
            (401, json!("retrieve signature verification failed"))
        );
        assert_eq!(parse_reply(b"{}"), None);
        assert_eq!(parse_reply(b"not json"), None);
    }

    #[test]
    fn quic_errors_split_into_status_and_text() {
        let k = "ab".repeat(32);
        let (status, text) =
            split_error(format!("502 Bad Gateway\n\nNext node not found: {k}").as_bytes());
        assert_eq!(status, 502);
        let e = SendError::Path { status, text };
        assert_eq!(e.named_node(), Some([0xab; 32]));
        assert_eq!(split_error(b"garbage"), (500, "garbage".to_string()));
    }

    #[test]
    fn base64_padded_or_not() {
        assert_eq!(decode_base64(b"aGk=\n"), Some(b"hi".to_vec()));
        assert_eq!(decode_base64(b"aGk"), Some(b"hi".to_vec()));
        assert_eq!(decode_base64(b"***"), None);
    }

    #[test]
    fn named_nodes_are_extracted() {
        let k = "ab".repeat(32);
        for text in [
            format!("Next node not found: {k}"),
            format!("Next node is currently unreachable: {k}"),
            format!("Snode not ready: {k}\n"),
        ] {
            let e = SendError::Path { status: 502, text };
            assert_eq!(e.named_node(), Some([0xab; 32]));
        }
        let e = SendError::Path {
            status: 504,
            text: "Request time out".into(),
        };
        assert_eq!(e.named_node(), None);
        let e = SendError::Path {
            status: 502,
            text: "Next node not found: zz".into(),
        };
        assert_eq!(e.named_node(), None);
        assert_eq!(SendError::Undecryptable.named_node(), None);
    }
}
