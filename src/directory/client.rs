//! The node side of the directory: register, report, fetch the listing.
//!
//! Owns the HTTP calls to a directory (or to any oxend-compatible `/json_rpc`) and the
//! conversion of a `get_service_nodes` result into a `Membership`. Must not decide when to
//! call (the node's refresh loop does) and must not log keys.
//!
//! Parsing follows the storage server (storage-server.md 3.1): nodes with `funded: false` or
//! without both pubkeys are skipped; a missing swarm id means `UNASSIGNED`; `unchanged: true`
//! means the caller's snapshot is current.

use super::announce::{sign_announcement, sign_report};
use super::rpc::NODE_FIELDS;
use crate::clock::wall_clock_ms;
use crate::keys::NodeKeys;
use crate::swarm::{Membership, NodeInfo, SwarmId};
use crate::transport::{ExchangeError, Transport};
use bytes::Bytes;
use serde_json::{Value, json};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

/// Timeout of one call to the directory.
const TIMEOUT: Duration = Duration::from_secs(10);
/// Largest answer read from a directory: a full listing of `DEFAULT_MAX_NODES` nodes is
/// under 4 MiB; a directory cannot make a node buffer more.
const MAX_ANSWER_BYTES: usize = 16 * 1024 * 1024;
/// Longest error body quoted in an error.
const MAX_QUOTED: usize = 200;

/// Errors of talking to the directory. Each names the URL called.
#[derive(Debug, thiserror::Error)]
pub enum DirectoryClientError {
    /// The HTTP client could not be built.
    #[error("cannot build the HTTP client")]
    Build(#[source] reqwest::Error),
    /// The request failed (connect, timeout, body).
    #[error("request to {url} failed")]
    Request {
        /// The URL called.
        url: String,
        /// The underlying error.
        #[source]
        source: reqwest::Error,
    },
    /// The request failed on the node's transport (a simulated network).
    #[error("request to {url} failed")]
    Transport {
        /// The URL called.
        url: String,
        /// The underlying error.
        #[source]
        source: ExchangeError,
    },
    /// The answer was larger than `MAX_ANSWER_BYTES`.
    #[error("answer of {url} over {limit} bytes")]
    TooLarge {
        /// The URL called.
        url: String,
        /// The cap.
        limit: usize,
    },
    /// The directory answered with an error status (403: not admitted / not active).
    #[error("{url} answered {status}: {message}")]
    Status {
        /// The URL called.
        url: String,
        /// The HTTP status.
        status: u16,
        /// The error message of the body (truncated).
        message: String,
    },
    /// The directory answered a JSON-RPC error.
    #[error("{url} answered JSON-RPC error {code}: {message}")]
    Rpc {
        /// The URL called.
        url: String,
        /// The JSON-RPC error code.
        code: i64,
        /// Its message.
        message: String,
    },
    /// The request body could not be encoded.
    #[error("cannot encode the request to {url}")]
    Encode {
        /// The URL to call.
        url: String,
        /// serde's error.
        #[source]
        source: serde_json::Error,
    },
    /// The answer is not what the protocol says.
    #[error("unexpected answer from {url}: {why}")]
    Response {
        /// The URL called.
        url: String,
        /// What is wrong.
        why: String,
    },
}

/// One POST of `body` to `path` over `transport`, to the directory at `base`
/// (`http://IP:port`).
async fn post_transport(
    transport: &dyn Transport,
    base: &str,
    path: &str,
    body: Vec<u8>,
) -> Result<(http::StatusCode, Bytes), DirectoryClientError> {
    let url = format!("{base}{path}");
    let addr: SocketAddr = base
        .strip_prefix("http://")
        .and_then(|authority| authority.parse().ok())
        .ok_or_else(|| DirectoryClientError::Response {
            url: url.clone(),
            why: "a transport reaches http://IP:port only".into(),
        })?;
    let json = [(http::header::CONTENT_TYPE.as_str(), "application/json")];
    let answer = crate::transport::post(
        transport,
        addr,
        path,
        &json,
        body,
        MAX_ANSWER_BYTES,
        TIMEOUT,
    );
    match answer.await {
        Ok(resp) => Ok((resp.status(), resp.into_body())),
        Err(ExchangeError::Body { limit }) => Err(DirectoryClientError::TooLarge { url, limit }),
        Err(source) => Err(DirectoryClientError::Transport { url, source }),
    }
}

/// What the directory said to a registration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registration {
    /// The directory's height after it.
    pub height: u64,
    /// The block hash of that height.
    pub block_hash: String,
    /// The node's swarm (`UNASSIGNED` while decommissioned).
    pub swarm_id: SwarmId,
}

/// A client of one directory.
#[derive(Clone)]
pub struct DirectoryClient {
    base: String,
    http: reqwest::Client,
    /// When set, every call is plain HTTP/1.1 over this transport (`crate::transport`) to
    /// the `host:port` of `base`, which must be an IP address.
    transport: Option<Arc<dyn Transport>>,
}

impl std::fmt::Debug for DirectoryClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DirectoryClient")
            .field("base", &self.base)
            .field("transport", &self.transport.is_some())
            .finish_non_exhaustive()
    }
}

impl DirectoryClient {
    /// A client of the directory at `url` (`http://host:port` or `https://…`, without path).
    pub fn new(url: &str) -> Result<Self, DirectoryClientError> {
        let http = reqwest::Client::builder()
            .timeout(TIMEOUT)
            .build()
            .map_err(DirectoryClientError::Build)?;
        Ok(Self::with_http(url, http))
    }

    /// A client sharing an existing HTTP client (one pool per node).
    pub fn with_http(url: &str, http: reqwest::Client) -> Self {
        Self {
            base: url.trim_end_matches('/').to_string(),
            http,
            transport: None,
        }
    }

    /// Calls the directory over `transport` (plain HTTP/1.1) instead of the host's sockets.
    pub fn with_transport(mut self, transport: Arc<dyn Transport>) -> Self {
        self.transport = Some(transport);
        self
    }

    /// The directory's base URL.
    pub fn url(&self) -> &str {
        &self.base
    }

    /// POSTs `body` to `path` and returns the JSON answer of a 2xx, or the error.
    async fn post(&self, path: &str, body: &Value) -> Result<Value, DirectoryClientError> {
        let url = format!("{}{path}", self.base);
        let encoded = serde_json::to_vec(body).map_err(|source| DirectoryClientError::Encode {
            url: url.clone(),
            source,
        })?;
        let (status, bytes) = match &self.transport {
            None => self.post_http(&url, encoded).await?,
            Some(t) => post_transport(t.as_ref(), &self.base, path, encoded).await?,
        };
        let parsed: Option<Value> = serde_json::from_slice(&bytes).ok();
        if !status.is_success() {
            let message = parsed
                .as_ref()
                .and_then(|v| v.get("error"))
                .and_then(Value::as_str)
                .map(str::to_string)
                .unwrap_or_else(|| String::from_utf8_lossy(&bytes).into_owned());
            return Err(DirectoryClientError::Status {
                url,
                status: status.as_u16(),
                message: message.chars().take(MAX_QUOTED).collect(),
            });
        }
        parsed.ok_or_else(|| DirectoryClientError::Response {
            url,
            why: "body is not JSON".into(),
        })
    }

    /// One POST with reqwest; the answer is read while it is under `MAX_ANSWER_BYTES`.
    async fn post_http(
        &self,
        url: &str,
        body: Vec<u8>,
    ) -> Result<(http::StatusCode, Bytes), DirectoryClientError> {
        // The variant names the URL; reqwest's message need not repeat it.
        let request_error = |source: reqwest::Error| DirectoryClientError::Request {
            url: url.to_string(),
            source: source.without_url(),
        };
        let mut resp = self
            .http
            .post(url)
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await
            .map_err(request_error)?;
        let status = resp.status();
        let mut bytes = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(request_error)? {
            if bytes.len() + chunk.len() > MAX_ANSWER_BYTES {
                return Err(DirectoryClientError::TooLarge {
                    url: url.to_string(),
                    limit: MAX_ANSWER_BYTES,
                });
            }
            bytes.extend_from_slice(&chunk);
        }
        Ok((status, bytes.into()))
    }

    /// Registers (or re-announces) the node with `keys` at the address, ports and version of
    /// `info`, signed now (wall clock: the directory checks it against its own, ±5 min).
    pub async fn register(
        &self,
        keys: &NodeKeys,
        info: &NodeInfo,
    ) -> Result<Registration, DirectoryClientError> {
        self.register_at(keys, info, wall_clock_ms()).await
    }

    /// `register`, signed at `now_ms`.
    pub async fn register_at(
        &self,
        keys: &NodeKeys,
        info: &NodeInfo,
        now_ms: i64,
    ) -> Result<Registration, DirectoryClientError> {
        let body =
            serde_json::to_value(sign_announcement(keys, info, now_ms)).map_err(|source| {
                DirectoryClientError::Encode {
                    url: self.base.clone(),
                    source,
                }
            })?;
        let v = self.post("/register", &body).await?;
        let bad = |why: &str| DirectoryClientError::Response {
            url: format!("{}/register", self.base),
            why: why.into(),
        };
        Ok(Registration {
            height: v["height"].as_u64().ok_or_else(|| bad("no height"))?,
            block_hash: v["block_hash"]
                .as_str()
                .ok_or_else(|| bad("no block_hash"))?
                .to_string(),
            swarm_id: SwarmId(v["swarm_id"].as_u64().unwrap_or(SwarmId::UNASSIGNED.0)),
        })
    }

    /// Reports whether the node `target` passed a reachability test by the node with `keys`,
    /// signed now (wall clock).
    pub async fn report(
        &self,
        keys: &NodeKeys,
        target: &[u8; 32],
        reachable: bool,
    ) -> Result<(), DirectoryClientError> {
        self.report_at(keys, target, reachable, wall_clock_ms())
            .await
    }

    /// `report`, signed at `now_ms`.
    pub async fn report_at(
        &self,
        keys: &NodeKeys,
        target: &[u8; 32],
        reachable: bool,
        now_ms: i64,
    ) -> Result<(), DirectoryClientError> {
        let body = serde_json::to_value(sign_report(keys, target, reachable, now_ms)).map_err(
            |source| DirectoryClientError::Encode {
                url: self.base.clone(),
                source,
            },
        )?;
        self.post("/report", &body).await.map(|_| ())
    }

    /// Calls a `/json_rpc` method and returns its `result`.
    async fn rpc(&self, method: &str, params: Value) -> Result<Value, DirectoryClientError> {
        let body = json!({"jsonrpc": "2.0", "id": 0, "method": method, "params": params});
        let mut v = self.post("/json_rpc", &body).await?;
        let url = format!("{}/json_rpc", self.base);
        if let Some(err) = v.get("error") {
            return Err(DirectoryClientError::Rpc {
                url,
                code: err["code"].as_i64().unwrap_or(0),
                message: err["message"].as_str().unwrap_or("").to_string(),
            });
        }
        match v.get_mut("result") {
            Some(r) => Ok(r.take()),
            None => Err(DirectoryClientError::Response {
                url,
                why: "no result".into(),
            }),
        }
    }

    /// The whole listing, active and decommissioned, as a snapshot; `None` when
    /// `poll_block_hash` is the current block hash (nothing changed).
    pub async fn get_service_nodes(
        &self,
        poll_block_hash: Option<&str>,
    ) -> Result<Option<Membership>, DirectoryClientError> {
        let mut params = json!({"active_only": false, "fields": NODE_FIELDS});
        if let Some(h) = poll_block_hash {
            params["poll_block_hash"] = json!(h);
        }
        let result = self.rpc("get_service_nodes", params).await?;
        parse_listing(&result).map_err(|why| DirectoryClientError::Response {
            url: format!("{}/json_rpc", self.base),
            why,
        })
    }

    /// The listing the directory served at `height` (`rpc`'s extension); `None` when it did
    /// not keep it (never served, or too old) or ignores the parameter (it answered another
    /// height: an oxend, or an older directory).
    pub async fn get_service_nodes_at(
        &self,
        height: u64,
    ) -> Result<Option<Membership>, DirectoryClientError> {
        let params = json!({"active_only": false, "fields": NODE_FIELDS, "height": height});
        let result = match self.rpc("get_service_nodes", params).await {
            Ok(r) => r,
            Err(DirectoryClientError::Rpc { message, .. })
                if message == super::rpc::HEIGHT_NOT_KEPT =>
            {
                return Ok(None);
            }
            Err(e) => return Err(e),
        };
        let listing = parse_listing(&result).map_err(|why| DirectoryClientError::Response {
            url: format!("{}/json_rpc", self.base),
            why,
        })?;
        Ok(listing.filter(|m| m.height == height))
    }

    /// `limit` random nodes (all if `limit` ≤ 0), as clients seed their node pool.
    pub async fn get_n_service_nodes(
        &self,
        limit: i64,
        active_only: bool,
    ) -> Result<Vec<NodeInfo>, DirectoryClientError> {
        let params = json!({"active_only": active_only, "limit": limit, "fields": NODE_FIELDS});
        let result = self.rpc("get_n_service_nodes", params).await?;
        let states = result["service_node_states"].as_array().ok_or_else(|| {
            DirectoryClientError::Response {
                url: format!("{}/json_rpc", self.base),
                why: "no service_node_states".into(),
            }
        })?;
        Ok(states.iter().filter_map(parse_node).collect())
    }
}

/// Converts a `get_service_nodes` result into a snapshot; `Ok(None)` for `unchanged`.
pub fn parse_listing(result: &Value) -> Result<Option<Membership>, String> {
    if result["unchanged"].as_bool() == Some(true) {
        return Ok(None);
    }
    let height = result["height"].as_u64().ok_or("no height")?;
    let block_hash = result["block_hash"].as_str().ok_or("no block_hash")?;
    let states = result["service_node_states"]
        .as_array()
        .ok_or("no service_node_states")?;
    let nodes = states.iter().filter_map(parse_node).collect();
    Ok(Some(Membership::new(height, block_hash.to_string(), nodes)))
}

/// One `service_node_states` entry, or `None` if it is to be skipped (unfunded, or without
/// usable pubkeys). Missing contact data reads as `0.0.0.0` / port 0, as oxend lists a node
/// before its first uptime proof.
fn parse_node(e: &Value) -> Option<NodeInfo> {
    if e["funded"].as_bool() == Some(false) {
        return None;
    }
    let key = |name: &str| -> Option<[u8; 32]> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(e[name].as_str()?, &mut out).ok()?;
        Some(out)
    };
    let port = |name: &str| {
        e[name]
            .as_u64()
            .and_then(|p| u16::try_from(p).ok())
            .unwrap_or(0)
    };
    let mut version = [0u16; 3];
    if let Some(parts) = e["storage_server_version"].as_array() {
        for (slot, v) in version.iter_mut().zip(parts) {
            *slot = v.as_u64().and_then(|x| u16::try_from(x).ok()).unwrap_or(0);
        }
    }
    Some(NodeInfo {
        pubkey_ed25519: key("pubkey_ed25519")?,
        pubkey_x25519: key("pubkey_x25519")?,
        ip: e["public_ip"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .unwrap_or(Ipv4Addr::UNSPECIFIED),
        https_port: port("storage_port"),
        omq_port: port("storage_lmq_port"),
        swarm_id: SwarmId(e["swarm_id"].as_u64().unwrap_or(SwarmId::UNASSIGNED.0)),
        version,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A hostile (or broken) directory answering an endless body: the node stops reading at
    /// `MAX_ANSWER_BYTES` instead of buffering it all.
    #[tokio::test]
    async fn an_oversized_answer_is_refused_while_streaming() {
        use axum::body::Body;
        let sent = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = sent.clone();
        let app = axum::Router::new().route(
            "/json_rpc",
            axum::routing::post(move || {
                let counter = counter.clone();
                async move {
                    // 64 KiB chunks without end (bounded by the test: 4 × the cap).
                    let chunks = (0..4 * MAX_ANSWER_BYTES / 65_536).map(move |_| {
                        counter.fetch_add(65_536, std::sync::atomic::Ordering::Relaxed);
                        Ok::<_, std::io::Error>(Bytes::from(vec![b' '; 65_536]))
                    });
                    Body::from_stream(futures_util::stream::iter(chunks))
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        let client = DirectoryClient::new(&format!("http://{addr}")).unwrap();
        let err = client.get_service_nodes(None).await.unwrap_err();
        assert!(
            matches!(err, DirectoryClientError::TooLarge { limit, .. } if limit == MAX_ANSWER_BYTES),
            "{err:?}"
        );
        assert!(sent.load(std::sync::atomic::Ordering::Relaxed) < 2 * MAX_ANSWER_BYTES);
    }

    #[test]
    fn listing_is_parsed_as_the_storage_server_does() {
        let ed = hex::encode([1u8; 32]);
        let x = hex::encode([2u8; 32]);
        let result = json!({
            "height": 9,
            "block_hash": "cd".repeat(32),
            "hardfork": 19,
            "service_node_states": [
                {"pubkey_ed25519": ed, "pubkey_x25519": x, "public_ip": "10.0.0.1",
                 "storage_port": 22021, "storage_lmq_port": 22020, "swarm_id": 77,
                 "funded": true, "storage_server_version": [2, 8, 0]},
                // Decommissioned: kept, unassigned.
                {"pubkey_ed25519": hex::encode([3u8; 32]), "pubkey_x25519": x,
                 "public_ip": "10.0.0.3", "storage_port": 1, "swarm_id": u64::MAX},
                // Unfunded: skipped.
                {"pubkey_ed25519": hex::encode([4u8; 32]), "pubkey_x25519": x, "funded": false},
                // Missing x25519: skipped.
                {"pubkey_ed25519": hex::encode([5u8; 32])},
                // Bad hex: skipped.
                {"pubkey_ed25519": "xyz", "pubkey_x25519": x},
                // No contact data yet: listed as 0.0.0.0:0, swarm unknown.
                {"pubkey_ed25519": hex::encode([6u8; 32]), "pubkey_x25519": x},
            ],
        });
        let m = parse_listing(&result).unwrap().unwrap();
        assert_eq!(
            (m.height, m.block_hash.as_str()),
            (9, "cd".repeat(32).as_str())
        );
        assert_eq!(m.nodes.len(), 3);
        let n = m.node(&[1u8; 32]).unwrap();
        assert_eq!(n.pubkey_x25519, [2u8; 32]);
        assert_eq!(n.ip, Ipv4Addr::new(10, 0, 0, 1));
        assert_eq!((n.https_port, n.omq_port), (22021, 22020));
        assert_eq!(n.swarm_id, SwarmId(77));
        assert_eq!(n.version, [2, 8, 0]);
        assert!(!m.is_active(&[3u8; 32]));
        let bare = m.node(&[6u8; 32]).unwrap();
        assert_eq!((bare.ip, bare.https_port), (Ipv4Addr::UNSPECIFIED, 0));
        assert_eq!(m.swarm_ids().collect::<Vec<_>>(), vec![SwarmId(77)]);
    }

    #[test]
    fn unchanged_and_malformed_results() {
        assert_eq!(
            parse_listing(&json!({"unchanged": true, "height": 3, "block_hash": "ab"})),
            Ok(None)
        );
        assert!(parse_listing(&json!({"block_hash": "ab", "service_node_states": []})).is_err());
        assert!(parse_listing(&json!({"height": 1, "service_node_states": []})).is_err());
        assert!(parse_listing(&json!({"height": 1, "block_hash": "ab"})).is_err());
        let empty =
            parse_listing(&json!({"height": 0, "block_hash": "ab", "service_node_states": []}));
        assert_eq!(empty.unwrap().unwrap().nodes.len(), 0);
    }

    #[test]
    fn base_url_is_normalised() {
        let c = DirectoryClient::new("http://127.0.0.1:1/").unwrap();
        assert_eq!(c.url(), "http://127.0.0.1:1");
    }
}
