//! The peer router: `/snode/v1/…` endpoints, accepted only from nodes the directory lists,
//! with every request and response signed (see `peer::auth`).
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
use crate::peer::auth::{self, HEADER_PUBKEY, HEADER_SIGNATURE, HEADER_TIMESTAMP};
use crate::peer::{PATH_DATA, PATH_PING, PATH_STORAGE_CC, wire};
use crate::rpc::{Origin, RpcBody, RpcResponse, handle_method};

/// Routes of the peer protocol (mounted on the public listener).
pub fn router(state: AppState) -> Router {
    Router::new()
        .route(PATH_STORAGE_CC, post(storage_cc))
        .route(PATH_DATA, post(data))
        .route(PATH_PING, post(ping))
        .with_state(state)
}

/// Checks the request signature and that the sender is a listed node; returns the body.
async fn authenticate(
    state: &AppState,
    uri: &Uri,
    headers: &HeaderMap,
    body: Body,
) -> Result<(axum::body::Bytes, [u8; 32]), Response> {
    let body = read_body(body, MAX_REQUEST_BODY).await?;
    let get = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let sender = auth::verify_request(
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
    Ok((body, sender))
}

/// Builds a response signed so the requester knows it came from us.
fn signed(state: &AppState, path: &str, status: u16, content_type: &'static str, body: Vec<u8>) -> Response {
    let sig = auth::sign_request(&state.keys, "RESPONSE", path, &body, (state.rpc.clock)());
    let mut resp = Response::new(Body::from(body));
    *resp.status_mut() =
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let headers = resp.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    for (name, value) in sig {
        if let Ok(v) = HeaderValue::from_str(&value) {
            headers.insert(name, v);
        }
    }
    resp
}

fn signed_text(state: &AppState, path: &str, status: u16, body: &str) -> Response {
    signed(state, path, status, "text/plain; charset=utf-8", body.as_bytes().to_vec())
}

fn signed_rpc(state: &AppState, path: &str, resp: RpcResponse) -> Response {
    match resp.body {
        RpcBody::Json(v) => signed(state, path, resp.status, "application/json", v.to_string().into_bytes()),
        RpcBody::Text(t) => signed_text(state, path, resp.status, &t),
        RpcBody::Bytes(b) => signed(state, path, resp.status, "application/octet-stream", b),
    }
}

async fn storage_cc(State(state): State<AppState>, uri: Uri, headers: HeaderMap, body: Body) -> Response {
    let path = uri.path().to_string();
    let (body, _sender) = match authenticate(&state, &uri, &headers, body).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let req: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(_) => return signed_text(&state, &path, 400, "invalid json"),
    };
    let (Some(method), Some(params)) = (req["method"].as_str(), req.get("params")) else {
        return signed_text(&state, &path, 400, "invalid json");
    };
    let resp = handle_method(&state.rpc, method, params, Origin::Peer).await;
    signed_rpc(&state, &path, resp)
}

async fn data(State(state): State<AppState>, uri: Uri, headers: HeaderMap, body: Body) -> Response {
    let path = uri.path().to_string();
    let (body, _sender) = match authenticate(&state, &uri, &headers, body).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let msgs = match wire::decode_batch(&body) {
        Ok(m) => m,
        Err(e) => return signed_text(&state, &path, 400, &e.to_string()),
    };
    // Only keep what our swarm owns: a confused or stale sender must not fill our disk.
    let membership = state.rpc.membership.borrow().clone();
    let me = state.keys.pubkey_ed25519();
    let ours = membership.swarm_of(&me);
    let owned: Vec<_> = msgs
        .into_iter()
        .filter(|m| ours.is_some() && membership.swarm_for(&m.account) == ours)
        .collect();
    let store = state.rpc.store.clone();
    let now = (state.rpc.clock)();
    let n = owned.len();
    let result = tokio::task::spawn_blocking(move || store.bulk_store(&owned, now)).await;
    match result {
        Ok(Ok(new)) => {
            let body = serde_json::json!({"accepted": n, "new": new}).to_string();
            signed(&state, &path, 200, "application/json", body.into_bytes())
        }
        Ok(Err(crate::store::StoreError::Full { .. })) => {
            signed_text(&state, &path, 507, "store is full")
        }
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "bulk store from peer failed");
            signed_text(&state, &path, 500, "Internal Server Error\n")
        }
        Err(_) => signed_text(&state, &path, 500, "Internal Server Error\n"),
    }
}

async fn ping(State(state): State<AppState>, uri: Uri, headers: HeaderMap, body: Body) -> Response {
    let path = uri.path().to_string();
    if let Err(r) = authenticate(&state, &uri, &headers, body).await {
        return r;
    }
    signed_text(&state, &path, 200, "pong")
}
