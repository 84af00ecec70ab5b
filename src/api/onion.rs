//! Onion requests on the node (storage-server.md 2.1–2.7): the public entry
//! `POST /onion_req/v2` and the node-to-node hop `POST /snode/v1/onion`.
//!
//! Owns what a node does with one layer: peel it with the node's key (`onion::NodeOnionKey`),
//! route it (`onion::route`), then act — run the RPC and encrypt the answer once (final
//! destination), relay the next layer to the next node (relay), or POST the layer to an
//! external server (exit, via `onion_exit`) — and the exact statuses and texts of each error.
//! Relays and exits pass the answer back verbatim; only the destination encrypts.
//! Must not: log payloads, targets or keys (outcomes go to metrics, details at debug at most),
//! hold RPC logic (that is `rpc`), codecs (the hop body is `peer::hop`, layers are `onion`),
//! peer authentication (`api::peer`) or HTTP framing (`api::response`).

use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::HeaderValue;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};
use tokio::time::{Duration, Instant};

use super::onion_exit::{ExitClient, ExitError};
use super::peer::{AuthenticatedPeer, PeerRejection};
use super::response::{BINARY, Reply, TEXT, read_body, text};
use super::{AppState, MAX_REQUEST_BODY};
use crate::onion::{EncType, Layer, ReplyKey, allowed_target, parse_combined, route};
use crate::peer::PATH_ONION;
use crate::peer::client::PeerError;
use crate::peer::hop::{decode_hop, encode_hop};
use crate::rpc::{Origin, RpcBody, handle_request};

pub use crate::metrics::OnionOutcome;

/// Highest `hop_no` a node accepts from the previous hop (the original's `MAX_ONION_HOPS`).
pub const MAX_ONION_HOPS: u32 = 15;
/// Time a relay gives the next node (the original's 30 s).
pub const RELAY_TIMEOUT: Duration = Duration::from_secs(30);

/// What onion routing needs of its own to reach beyond the node: the exit client to external
/// servers. (Relays to other nodes use the node's one peer client, `AppState::peers`, shared
/// with replication.) Cheap to clone.
#[derive(Clone)]
pub struct OnionServices {
    /// HTTP(S) to external servers, with the node's address policy.
    pub exit: Arc<ExitClient>,
}

/// Bytes whose type we do not know (a relayed answer): text when they read as text.
fn opaque(status: u16, body: Bytes) -> Reply {
    let ct = if std::str::from_utf8(&body).is_ok() {
        TEXT
    } else {
        BINARY
    };
    Reply::new(status, ct, body)
}

/// `{"status": status, "body": body}` sealed with the layer's key; base64 unless the layer
/// asked for raw bytes. Always HTTP 200: the inner status is for the client only.
fn sealed(key: &ReplyKey, status: u16, body: Value, base64: bool) -> Reply {
    let plain = json!({"status": status, "body": body}).to_string();
    let sealed = key.encrypt(plain.as_bytes());
    if base64 {
        Reply::new(200, TEXT, STANDARD.encode(sealed))
    } else {
        Reply::new(200, BINARY, sealed)
    }
}

/// The public entry (`/onion_req/v2`) and the peer hop (`/snode/v1/onion`).
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/onion_req/v2", post(onion_req_v2))
        .with_state(state.clone())
        .merge(peer_router(state))
}

/// The peer hop endpoint alone (signed, listed nodes only).
pub fn peer_router(state: AppState) -> Router {
    Router::new()
        .route(PATH_ONION, post(onion_hop))
        .with_state(state)
}

pub(crate) fn record(state: &AppState, outcome: OnionOutcome, started: Instant) {
    state
        .metrics
        .onion_requests_total
        .with_label_values(&[outcome.label()])
        .inc();
    state
        .metrics
        .onion_duration_seconds
        .observe(started.elapsed().as_secs_f64());
    tracing::debug!(outcome = outcome.label(), "onion request");
}

/// `POST /onion_req/v2`: ready check (no rate limit, as the original), body ≤ 10 MiB, parse,
/// then the layer.
async fn onion_req_v2(State(state): State<AppState>, body: Body) -> Response {
    let started = Instant::now();
    if let Some(why) = state.not_ready_reason() {
        record(&state, OnionOutcome::NotReady, started);
        return text(503, format!("Service node is not ready: {why}\n"));
    }
    let bytes = match read_body(body, MAX_REQUEST_BODY).await {
        Ok(b) => b,
        Err(resp) => {
            let outcome = if resp.status().as_u16() == 413 {
                OnionOutcome::TooLarge
            } else {
                OnionOutcome::ParseError
            };
            record(&state, outcome, started);
            return resp;
        }
    };
    entry_layer(&state, &bytes, started).await.into_response()
}

/// The entry node's work on a whole `/onion_req/v2` body (or a QUIC `onion_req` body, which is
/// the same bytes): parse the combined payload, then the layer; recorded in the metrics.
/// Readiness and size are the caller's checks.
pub(crate) async fn entry_layer(state: &AppState, bytes: &[u8], started: Instant) -> Reply {
    let combined = match parse_combined(bytes) {
        Ok(c) => c,
        Err(e) => {
            record(state, OnionOutcome::ParseError, started);
            return Reply::text(400, format!("Error parsing onion request: {e}"));
        }
    };
    let (reply, outcome) = process_layer(
        state,
        &combined.ephemeral_key,
        combined.enc_type,
        combined.ciphertext,
        combined.hop_no,
    )
    .await;
    record(state, outcome, started);
    reply
}

/// `POST /snode/v1/onion`: a layer relayed by a listed node. Every answer is signed, so the
/// relaying node knows it came from us and can pass it on unchanged. A refused peer counts as
/// an onion request too (`unauthenticated`), so the extractor's refusal is taken, not thrown.
async fn onion_hop(
    State(state): State<AppState>,
    peer: Result<AuthenticatedPeer, PeerRejection>,
) -> Response {
    let peer = match peer {
        Ok(p) => p,
        Err(rejection) => {
            record(&state, OnionOutcome::Unauthenticated, rejection.received);
            return rejection.into_response();
        }
    };
    let reply = hop(&state, &peer.body, peer.received).await;
    peer.answer(&state, reply)
}

/// A layer relayed by a listed node, whatever carried it (HTTPS here, or a QUIC peer
/// connection): the answer to pass back, recorded in the metrics.
pub(crate) async fn hop(state: &AppState, body: &[u8], received: Instant) -> Reply {
    let (reply, outcome) = hop_layer(state, body).await;
    record(state, outcome, received);
    reply
}

async fn hop_layer(state: &AppState, body: &[u8]) -> (Reply, OnionOutcome) {
    let hop = match decode_hop(body) {
        Ok(h) => h,
        Err(e) => {
            return (
                Reply::text(400, format!("Error parsing onion request: {e}")),
                OnionOutcome::ParseError,
            );
        }
    };
    if hop.hop_no > MAX_ONION_HOPS {
        return (
            Reply::text(400, "onion request max path length exceeded"),
            OnionOutcome::MaxHops,
        );
    }
    if state.not_ready_reason().is_some() {
        return (
            Reply::text(
                503,
                format!(
                    "Snode not ready: {}",
                    hex::encode(state.keys.pubkey_ed25519())
                ),
            ),
            OnionOutcome::NotReady,
        );
    }
    process_layer(
        state,
        &hop.ephemeral_key,
        hop.enc_type,
        hop.data,
        hop.hop_no,
    )
    .await
}

/// Peels one layer addressed to this node and acts on it.
async fn process_layer(
    state: &AppState,
    ephemeral_key: &[u8; 32],
    enc_type: EncType,
    ciphertext: &[u8],
    hop_no: u32,
) -> (Reply, OnionOutcome) {
    // Inline, not on a blocking thread: a peel is tens of microseconds per KiB, less than
    // the hand-off would cost.
    let (plain, reply_key) = match state.onion_key.peel(ephemeral_key, enc_type, ciphertext) {
        Ok(x) => x,
        Err(_) => {
            return (
                Reply::text(400, "Invalid ciphertext"),
                OnionOutcome::BadCiphertext,
            );
        }
    };
    let plain = zeroize::Zeroizing::new(plain);
    match route(&plain) {
        Err(_) => (
            sealed(&reply_key, 400, json!("Invalid json"), true),
            OnionOutcome::InvalidJson,
        ),
        Ok(Layer::Final { body, json, base64 }) => {
            let reply = final_destination(state, &reply_key, body, json, base64).await;
            (reply, OnionOutcome::Final)
        }
        Ok(Layer::ToNode {
            destination,
            ephemeral_key,
            enc_type,
            inner,
        }) => relay(state, &destination, &ephemeral_key, enc_type, inner, hop_no).await,
        Ok(Layer::ToServer {
            host,
            target,
            port,
            protocol,
            payload,
        }) => {
            let Some(target) = allowed_target(&protocol, &target) else {
                return (
                    sealed(&reply_key, 400, json!("Invalid url"), true),
                    OnionOutcome::InvalidUrl,
                );
            };
            exit(
                &state.onion.exit,
                &reply_key,
                &protocol,
                &host,
                port,
                &target,
                payload,
            )
            .await
        }
    }
}

/// Runs the RPC as `/storage_rpc/v1` would (no rate limit) and seals
/// `{"status", "body"}` with the layer's key (storage-server.md 2.5).
async fn final_destination(
    state: &AppState,
    key: &ReplyKey,
    rpc_body: &[u8],
    json: bool,
    base64: bool,
) -> Reply {
    let resp = handle_request(&state.rpc, rpc_body, Origin::Onion).await;
    let body = match resp.body {
        RpcBody::Json(v) if json => v,
        RpcBody::Json(v) => Value::String(v.to_string()),
        RpcBody::Text(t) => Value::String(t),
        // Binary bodies (active_nodes_bin) cannot go into JSON raw: upstream PR #513 base64s
        // them (the original first answered 500 here).
        RpcBody::Bytes(b) => Value::String(STANDARD.encode(b)),
    };
    sealed(key, resp.status, body, base64)
}

/// Sends the next layer to the next node and passes its answer back unchanged.
async fn relay(
    state: &AppState,
    destination: &[u8; 32],
    ephemeral_key: &[u8; 32],
    enc_type: EncType,
    inner: &[u8],
    hop_no: u32,
) -> (Reply, OnionOutcome) {
    // Every listed node, decommissioned ones included, as the original looks them up.
    let next = state.rpc.membership.borrow().node(destination).cloned();
    let Some(next) = next else {
        return (
            Reply::text(
                502,
                format!("Next node not found: {}", hex::encode(destination)),
            ),
            OnionOutcome::NextNodeNotFound,
        );
    };
    let unreachable = || {
        (
            Reply::text(
                502,
                format!(
                    "Next node is currently unreachable: {}",
                    hex::encode(destination)
                ),
            ),
            OnionOutcome::NextNodeUnreachable,
        )
    };
    // Listed before its first announcement reached the directory: no address yet.
    if next.ip.is_unspecified() || next.https_port == 0 {
        return unreachable();
    }
    let body = encode_hop(inner, enc_type, ephemeral_key, hop_no.saturating_add(1));
    match state
        .peers
        .post(&next, PATH_ONION, body, RELAY_TIMEOUT)
        .await
    {
        Ok(r) => (opaque(r.status, r.body), OnionOutcome::Relayed),
        Err(PeerError::Timeout(_)) => (
            Reply::text(504, "Request time out"),
            OnionOutcome::RelayTimeout,
        ),
        Err(PeerError::NotPublic { .. }) => {
            tracing::debug!("onion relay: next node listed at a non-public address");
            unreachable()
        }
        Err(PeerError::Unreachable(e)) => {
            tracing::debug!(error = %crate::error::chain(&e), "onion relay: next node unreachable");
            unreachable()
        }
        Err(PeerError::Transport(e)) => {
            tracing::debug!(error = %crate::error::chain(&e), "onion relay: next node unreachable");
            unreachable()
        }
        Err(PeerError::QuicLost(e)) => {
            tracing::debug!(error = %crate::error::chain(&e), "onion relay: connection lost");
            unreachable()
        }
        Err(PeerError::NotAuthentic | PeerError::TooLarge { .. }) => (
            Reply::text(500, "Invalid response from snode"),
            OnionOutcome::BadPeerResponse,
        ),
    }
}

/// POSTs the whole decrypted layer to the external server and passes its answer back
/// verbatim (storage-server.md 2.6).
async fn exit(
    client: &ExitClient,
    key: &ReplyKey,
    protocol: &str,
    host: &str,
    port: u16,
    target: &str,
    payload: &[u8],
) -> (Reply, OnionOutcome) {
    match client
        .post(protocol, host, port, target, payload.to_vec())
        .await
    {
        Ok(r) => {
            let content_type = r
                .content_type
                .unwrap_or_else(|| HeaderValue::from_static(BINARY));
            (
                Reply {
                    status: r.status,
                    content_type,
                    body: r.body,
                },
                OnionOutcome::Proxied,
            )
        }
        Err(ExitError::InvalidHost) => (
            sealed(key, 400, json!("Invalid url"), true),
            OnionOutcome::InvalidUrl,
        ),
        // Not in the original, which proxied anywhere: plain text like its other exit
        // failures, so the client learns the target is unusable through this node.
        Err(ExitError::Refused) => (
            Reply::text(502, "Destination not allowed: private or local address"),
            OnionOutcome::TargetRefused,
        ),
        Err(ExitError::Timeout) => (
            Reply::text(504, "Request time out"),
            OnionOutcome::ProxyTimeout,
        ),
        Err(e @ (ExitError::TooLarge | ExitError::Transport(_))) => {
            (Reply::text(502, e.to_string()), OnionOutcome::ProxyError)
        }
    }
}
