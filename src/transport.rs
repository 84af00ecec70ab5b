//! The network a node runs on: where its public listener accepts connections and where its
//! peer requests open them, when that is not the host's own TCP stack.
//!
//! Owns the [`Transport`] seam (listen and connect, as byte streams), the adapter that lets
//! the node's HTTP serve loop accept from any transport ([`TransportListener`]), and the one
//! plain HTTP/1.1 exchange a node makes over a transport ([`http1_exchange`]). A node given no
//! transport uses OS sockets, TLS and QUIC as always; the deterministic simulation
//! (`tests/sim`, `docs/simulation.md`) gives every node a transport over turmoil's simulated
//! TCP, so the real serve loop, routers, peer client and replication run on simulated links
//! and simulated time. Must not know routes, peers or what is sent: callers do.
//!
//! Over a transport, traffic is plain HTTP/1.1 without TLS: peer requests and answers are
//! authenticated by their MACs (`peer::auth`) whatever carries them, and a simulated link has
//! no one to hide from; TLS would cost CPU per simulated history and test nothing new.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full, Limited};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};

/// A boxed, sendable future (the seam is a trait object).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A connected byte stream: a TCP connection, simulated or not.
pub trait Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> Stream for T {}

/// A boxed [`Stream`].
pub type BoxStream = Box<dyn Stream>;

/// Where a node listens and connects. Implementations must be cheap to share (`Arc`).
pub trait Transport: Send + Sync + 'static {
    /// Listens for connections on `addr` (port 0: any free port).
    fn listen(&self, addr: SocketAddr) -> BoxFuture<'_, io::Result<Box<dyn Acceptor>>>;
    /// Opens a connection to `addr`.
    fn connect(&self, addr: SocketAddr) -> BoxFuture<'_, io::Result<BoxStream>>;
}

/// A listening socket of a [`Transport`].
pub trait Acceptor: Send + 'static {
    /// The next connection and its remote address.
    fn accept(&mut self) -> BoxFuture<'_, io::Result<(BoxStream, SocketAddr)>>;
    /// The address actually bound.
    fn local_addr(&self) -> io::Result<SocketAddr>;
}

/// An [`Acceptor`] as an `axum::serve::Listener`, which the node's serve loop takes.
pub struct TransportListener(pub Box<dyn Acceptor>);

impl axum::serve::Listener for TransportListener {
    type Io = BoxStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.0.accept().await {
                Ok(c) => return c,
                // As axum's own TCP listener: an accept error (the peer reset before we took
                // the connection, a transient resource shortage) is not the listener's end.
                Err(e) => {
                    tracing::debug!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.0.local_addr()
    }
}

/// Why an exchange over a transport failed.
#[derive(Debug, thiserror::Error)]
pub enum ExchangeError {
    /// The connection could not be opened.
    #[error("cannot connect to {addr}")]
    Connect {
        /// Where to.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The HTTP exchange failed (reset, closed, malformed answer).
    #[error("HTTP exchange failed")]
    Http(#[source] hyper::Error),
    /// The request could not be built (a header value or path HTTP does not allow).
    #[error("invalid request")]
    Request(#[source] http::Error),
    /// No answer within the caller's time.
    #[error("no answer in time")]
    Timeout,
    /// The answer's body was larger than the caller's cap, or broke off.
    #[error("answer body over {limit} bytes or broken")]
    Body {
        /// The cap, in bytes.
        limit: usize,
    },
}

/// One HTTP/1.1 `POST` of `body` to `path` on `addr` (with `Host: addr` and `headers`), its
/// answer read whole up to `limit` bytes, all within `timeout`: what every caller on a
/// transport sends (peer exchanges, the directory client, reachability tests).
pub async fn post(
    transport: &dyn Transport,
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
    limit: usize,
    timeout: std::time::Duration,
) -> Result<http::Response<Bytes>, ExchangeError> {
    let mut req = http::Request::post(path).header(http::header::HOST, addr.to_string());
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    let req = req
        .body(Full::new(Bytes::from(body)))
        .map_err(ExchangeError::Request)?;
    tokio::time::timeout(timeout, http1_exchange(transport, addr, req, limit))
        .await
        .unwrap_or(Err(ExchangeError::Timeout))
}

/// One HTTP/1.1 request to `addr` on a fresh connection of `transport`, with the answer's body
/// read whole (at most `limit` bytes). Callers bound the time (`tokio::time::timeout`).
pub async fn http1_exchange(
    transport: &dyn Transport,
    addr: SocketAddr,
    req: http::Request<Full<Bytes>>,
    limit: usize,
) -> Result<http::Response<Bytes>, ExchangeError> {
    let stream = transport
        .connect(addr)
        .await
        .map_err(|source| ExchangeError::Connect { addr, source })?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(ExchangeError::Http)?;
    // The connection task ends with the exchange: one request per connection keeps the
    // simulated history simple (no pool whose reuse depends on timing).
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let resp = sender
        .send_request(req)
        .await
        .map_err(ExchangeError::Http)?;
    let (parts, body) = resp.into_parts();
    let body = Limited::new(body, limit)
        .collect()
        .await
        .map_err(|_| ExchangeError::Body { limit })?
        .to_bytes();
    Ok(http::Response::from_parts(parts, body))
}
