//! HTTP on the public listener's connections: hyper's HTTP/1 and HTTP/2 with the limits a
//! public port needs, where `axum::serve` offers none.
//!
//! Owns the per-connection protocol settings: a request head must arrive within
//! `request_head_timeout` (which also closes an idle HTTP/1 keep-alive connection), HTTP/2
//! runs at most `http2_max_streams` streams per connection, every connection task belongs to
//! the node's `TaskTracker`, and shutdown lets in-flight requests finish (the node bounds how
//! long). Handlers see the client's address as `ConnectInfo<RemoteAddr>`, as under
//! `axum::serve`. Must not know routes: the router is given.

use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt as _;

use super::listener::RemoteAddr;

/// Per-connection HTTP limits (`[limits]` of the configuration).
#[derive(Debug, Clone, Copy)]
pub struct HttpLimits {
    /// A connection that sends no complete request head in this time is closed.
    pub request_head_timeout: Duration,
    /// Concurrent HTTP/2 streams per connection.
    pub http2_max_streams: u32,
}

/// Serves `app` on every connection `listener` yields until `cancel` fires, then stops
/// accepting and lets open connections finish their requests. The listener is the public
/// TLS/TCP one, or a `transport::TransportListener` on a simulated network.
pub async fn serve<L>(
    mut listener: L,
    app: Router,
    limits: HttpLimits,
    tasks: TaskTracker,
    cancel: CancellationToken,
) where
    L: axum::serve::Listener<Addr = std::net::SocketAddr>,
{
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.request_head_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(limits.http2_max_streams);
    let graceful = GracefulShutdown::new();
    loop {
        let (io, remote) = tokio::select! {
            biased;
            _ = cancel.cancelled() => break,
            c = listener.accept() => c,
        };
        let app = app.clone();
        let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
            req.extensions_mut().insert(ConnectInfo(RemoteAddr(remote)));
            app.clone().oneshot(req.map(axum::body::Body::new))
        });
        let conn = builder
            .serve_connection_with_upgrades(TokioIo::new(io), service)
            .into_owned();
        let conn = graceful.watch(conn);
        tasks.spawn(async move {
            // Errors here are the client's (reset, timeout, malformed head): nothing to report.
            let _ = conn.await;
        });
    }
    // In-flight requests finish; idle connections close now. The node's shutdown bounds the
    // wait with its grace period.
    graceful.shutdown().await;
}
