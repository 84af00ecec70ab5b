//! The peer router: `/snode/v1/…` endpoints, accepted only from nodes the directory lists,
//! with every request and response authenticated (see `peer::auth`).
//!
//! Owns authentication of peers and the framing of their requests. Must not hold business
//! logic: forwarded requests go to `rpc`, bulk data to the store.

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::Response;
use axum::routing::post;
use serde_json::Value;

use super::response::{read_body, text};
use super::{AppState, MAX_REQUEST_BODY};
use crate::peer::auth::{HEADER_PUBKEY, HEADER_SIGNATURE, HEADER_TIMESTAMP};
use crate::peer::{PATH_DATA, PATH_PING, PATH_STORAGE_CC, wire};
use crate::replication::protocol::{PATH_AE_BUCKET, PATH_AE_DELETE, PATH_AE_DIGEST, PATH_AE_FETCH};
use crate::rpc::{Origin, RpcBody, RpcResponse, handle_method};

/// Routes of the peer protocol (mounted on the public listener).
pub fn router(state: AppState) -> Router {
    Router::new()
        .route(PATH_STORAGE_CC, post(storage_cc))
        .route(PATH_DATA, post(data))
        .route(PATH_PING, post(ping))
        .route(PATH_AE_DIGEST, post(anti_entropy))
        .route(PATH_AE_BUCKET, post(anti_entropy))
        .route(PATH_AE_FETCH, post(anti_entropy))
        .route(PATH_AE_DELETE, post(anti_entropy))
        .with_state(state)
}

/// An authenticated peer request's sender and path: what its answer is authenticated for.
pub(crate) struct Caller {
    /// The sending node's Ed25519 pubkey.
    pub(crate) sender: [u8; 32],
    /// The request path (bound into the answer's MAC).
    pub(crate) path: String,
}

/// Checks the request's MAC and that the sender is a listed node; returns the body.
pub(crate) async fn authenticate(
    state: &AppState,
    uri: &Uri,
    headers: &HeaderMap,
    body: Body,
) -> Result<(axum::body::Bytes, Caller), Response> {
    let body = read_body(body, MAX_REQUEST_BODY).await?;
    let get = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let sender = state
        .onion
        .peers
        .auth()
        .verify(
            get(HEADER_PUBKEY),
            get(HEADER_TIMESTAMP),
            get(HEADER_SIGNATURE),
            "POST",
            uri.path(),
            &body,
            (state.rpc.clock)(),
        )
        .map_err(|e| text(401, e.to_string()))?;
    if state.rpc.membership.borrow().node(&sender).is_none() {
        return Err(text(403, "peer is not a listed service node"));
    }
    Ok((
        body,
        Caller {
            sender,
            path: uri.path().to_string(),
        },
    ))
}

/// Builds a response authenticated for `to`, so the requester knows it came from us.
pub(crate) fn signed(
    state: &AppState,
    to: &Caller,
    status: u16,
    content_type: &'static str,
    body: Vec<u8>,
) -> Response {
    let clock = (state.rpc.clock)();
    let Ok(sig) = state
        .onion
        .peers
        .auth()
        .sign(&to.sender, "RESPONSE", &to.path, &body, clock)
    else {
        // Only reachable for a sender whose key is not a curve point, which authenticate()
        // already refused.
        return text(500, "Internal Server Error\n");
    };
    let mut resp = Response::new(Body::from(body));
    *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let headers = resp.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    for (name, value) in sig {
        if let Ok(v) = HeaderValue::from_str(&value) {
            headers.insert(name, v);
        }
    }
    resp
}

fn signed_text(state: &AppState, to: &Caller, status: u16, body: &str) -> Response {
    signed(
        state,
        to,
        status,
        "text/plain; charset=utf-8",
        body.as_bytes().to_vec(),
    )
}

fn signed_rpc(state: &AppState, to: &Caller, resp: RpcResponse) -> Response {
    match resp.body {
        RpcBody::Json(v) => signed(
            state,
            to,
            resp.status,
            "application/json",
            v.to_string().into_bytes(),
        ),
        RpcBody::Text(t) => signed_text(state, to, resp.status, &t),
        RpcBody::Bytes(b) => signed(state, to, resp.status, "application/octet-stream", b),
    }
}

async fn storage_cc(
    State(state): State<AppState>,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let (body, caller) = match authenticate(&state, &uri, &headers, body).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let req: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(_) => return signed_text(&state, &caller, 400, "invalid json"),
    };
    let (Some(method), Some(params)) = (req["method"].as_str(), req.get("params")) else {
        return signed_text(&state, &caller, 400, "invalid json");
    };
    // `"retry": true`: re-sent from the sender's durable retry queue, possibly long after
    // the client signed it (see `Origin::PeerRetry`).
    let origin = if req.get("retry") == Some(&Value::Bool(true)) {
        Origin::PeerRetry
    } else {
        Origin::Peer
    };
    let resp = handle_method(&state.rpc, method, params, origin).await;
    signed_rpc(&state, &caller, resp)
}

/// The anti-entropy endpoints (`replication::protocol`): authenticated like every peer
/// request, answered by `replication::serve` (which admits only members of our swarm) on a
/// blocking thread, since it reads the store.
async fn anti_entropy(
    State(state): State<AppState>,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let (body, caller) = match authenticate(&state, &uri, &headers, body).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let store = state.rpc.store.clone();
    let membership = state.rpc.membership.borrow().clone();
    let me = state.keys.pubkey_ed25519();
    let now = (state.rpc.clock)();
    let (p, sender) = (caller.path.clone(), caller.sender);
    let served = tokio::task::spawn_blocking(move || {
        crate::replication::serve::serve(&p, &store, &membership, &me, &sender, &body, now)
    })
    .await;
    match served {
        Ok(r) => signed(&state, &caller, r.status, r.content_type, r.body),
        Err(_) => signed_text(&state, &caller, 500, "Internal Server Error\n"),
    }
}

async fn data(State(state): State<AppState>, uri: Uri, headers: HeaderMap, body: Body) -> Response {
    let (body, caller) = match authenticate(&state, &uri, &headers, body).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let msgs = match wire::decode_batch(&body) {
        Ok(m) => m,
        Err(e) => return signed_text(&state, &caller, 400, &e.to_string()),
    };
    // Only keep what our swarm owns: a confused or stale sender must not fill our disk.
    let membership = state.rpc.membership.borrow().clone();
    let me = state.keys.pubkey_ed25519();
    let ours = membership.swarm_of(&me);
    // Nor store a body under a hash that is not its own: a forged copy would shadow the real
    // message (dedupe is by hash) wherever it landed first.
    let owned: Vec<_> = msgs
        .into_iter()
        .filter(|m| ours.is_some() && membership.swarm_for(&m.account) == ours)
        .filter(|m| crate::message::message_hash(&m.account, m.namespace, &m.data) == m.hash)
        .collect();
    let store = state.rpc.store.clone();
    let now = (state.rpc.clock)();
    let n = owned.len();
    let result = tokio::task::spawn_blocking(move || store.bulk_store(&owned, now)).await;
    match result {
        Ok(Ok(new)) => {
            let body = serde_json::json!({"accepted": n, "new": new}).to_string();
            signed(&state, &caller, 200, "application/json", body.into_bytes())
        }
        Ok(Err(crate::store::StoreError::Full { .. })) => {
            signed_text(&state, &caller, 507, "store is full")
        }
        Ok(Err(e)) => {
            tracing::warn!(error = %crate::error::chain(&e), "bulk store from peer failed");
            signed_text(&state, &caller, 500, "Internal Server Error\n")
        }
        Err(_) => signed_text(&state, &caller, 500, "Internal Server Error\n"),
    }
}

async fn ping(State(state): State<AppState>, uri: Uri, headers: HeaderMap, body: Body) -> Response {
    let caller = match authenticate(&state, &uri, &headers, body).await {
        Ok((_, caller)) => caller,
        Err(r) => return r,
    };
    // Only authenticated pings from listed nodes count as "peers reach us".
    state
        .status
        .reachability
        .record_incoming(crate::reachability::PingKind::PeerPing, (state.rpc.clock)());
    signed_text(&state, &caller, 200, "pong")
}
