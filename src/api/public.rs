//! The public router: client RPC, reachability ping, stats, and the original's 404 text.
//!
//! Owns the edge checks of storage-server.md 1.1 in their order (ready → rate limit →
//! long-poll refusal → body size) and per-request metrics. Must not interpret RPC bodies or
//! frame answers itself (`api::response` does).

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tokio::time::Instant;

use super::listener::RemoteAddr;
use super::response::{JSON, Reply, read_body, rpc, text};
use super::{AppState, MAX_REQUEST_BODY, SERVER_HEADER};
use crate::message::b64;
use crate::rpc::{Origin, handle_request_labelled};

/// Routes of the public listener.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/storage_rpc/v1", post(storage_rpc))
        .route("/ping_test/v1", post(ping_test))
        .route("/get_stats/v1", get(get_stats))
        .with_state(state.clone())
        .merge(super::onion::router(state.clone()))
        .merge(super::peer::router(state))
        .fallback(not_found)
        .layer(axum::middleware::map_response(server_header))
}

async fn server_header(mut resp: Response) -> Response {
    resp.headers_mut()
        .insert(header::SERVER, HeaderValue::from_static(SERVER_HEADER));
    resp
}

async fn storage_rpc(
    State(state): State<AppState>,
    ConnectInfo(RemoteAddr(remote)): ConnectInfo<RemoteAddr>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let started = Instant::now();
    if let Some(why) = state.not_ready_reason() {
        return text(503, format!("Service node is not ready: {why}\n"));
    }
    if !state.limiter.allow(remote.ip(), started) {
        state.metrics.rate_limited_total.inc();
        return text(429, "Too Many Requests\n");
    }
    if headers.contains_key("x-loki-long-poll") {
        return text(
            410,
            "long polling is no longer supported, client upgrade required",
        );
    }
    let bytes = match read_body(body, MAX_REQUEST_BODY).await {
        Ok(b) => b,
        Err(resp) => return resp,
    };
    let (label, resp) = handle_request_labelled(&state.rpc, &bytes, Origin::Client).await;
    let status = resp.status.to_string();
    state
        .metrics
        .requests_total
        .with_label_values(&[label, &status])
        .inc();
    state
        .metrics
        .request_duration_seconds
        .with_label_values(&[label])
        .observe(started.elapsed().as_secs_f64());
    rpc(resp)
}

/// Reachability ping: 200, empty, with our pubkey so the pinger knows it reached us.
/// Recorded (when, how often; never from where) for `snode status`, as the original.
async fn ping_test(State(state): State<AppState>) -> Response {
    state
        .status
        .reachability
        .record_incoming(crate::reachability::PingKind::PingTest, (state.rpc.clock)());
    let mut r = ().into_response();
    if let Ok(v) = HeaderValue::from_str(&b64(&state.keys.pubkey_ed25519())) {
        r.headers_mut().insert("x-oxen-snode-pubkey", v);
    }
    r
}

/// Deprecated in the original; kept because old tooling still calls it.
async fn get_stats() -> Response {
    Reply::new(200, JSON, r#"{"version":"2.8.0"}"#).into_response()
}

async fn not_found(method: Method, uri: Uri, _req: Request) -> Response {
    // The request target as the client wrote it (HTTP/2 requests carry the authority too).
    let target = uri.path_and_query().map_or("/", |p| p.as_str());
    text(404, format!("{method} {target} Not Found"))
}
