//! The admin router: `/metrics` (Prometheus text), `/health` (alive), `/ready`, `/status`
//! (the JSON `snode status` renders).
//!
//! Owns only these four read-only endpoints. It is plain HTTP on a loopback address by
//! default, because metrics describe the node's load and must not be public by accident.

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::response::text;
use crate::status::StatusSource;

/// Routes of the admin listener: they read the node through its `StatusSource` only.
pub fn router(state: StatusSource) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/health", get(|| async { text(200, "ok\n") }))
        .route("/ready", get(ready))
        .route("/status", get(status))
        .with_state(state)
}

async fn metrics(State(state): State<StatusSource>) -> Response {
    let mut r = state.metrics.render().into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    r
}

async fn ready(State(state): State<StatusSource>) -> Response {
    match state.not_ready() {
        None => text(200, "ready\n"),
        Some(why) => text(503, format!("not ready: {why}\n")),
    }
}

async fn status(State(state): State<StatusSource>) -> Response {
    // The store's disk figure is a RocksDB property read: cheap, but keep it off the workers.
    match tokio::task::spawn_blocking(move || state.report()).await {
        Ok(r) => axum::Json(r).into_response(),
        Err(_) => text(500, "Internal Server Error\n"),
    }
}
