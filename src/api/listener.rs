//! The public listener: TCP with TLS (or plain TCP for loopback development), as an
//! `axum::serve::Listener`.
//!
//! Owns accepting connections and TLS handshakes, and the caps on both: at most
//! `max_connections` connections are held at once (each holds a slot until it closes; further
//! ones wait in the kernel's backlog) and at most `max_handshakes` handshake at once, each
//! within `handshake_timeout`. Handshakes run in their own tasks, so one slow or malicious
//! client cannot stall accepting others; finished streams reach `accept` through a bounded
//! channel. The accept loop and every handshake task belong to the node's
//! `TaskTracker` and stop on its cancellation token, so a node's shutdown waits for them and
//! none outlives it. Must not know about routes or requests.

use axum::extract::connect_info::Connected;
use axum::serve::{IncomingStream, Listener};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::time::Duration;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// What the listener lets connections hold (`[limits]` of the configuration).
#[derive(Debug, Clone, Copy)]
pub struct ListenerLimits {
    /// A client that has not finished its handshake in this time is dropped.
    pub handshake_timeout: Duration,
    /// Connections held at once.
    pub max_connections: usize,
    /// Handshakes in progress at once.
    pub max_handshakes: usize,
}

impl Default for ListenerLimits {
    fn default() -> Self {
        let l = crate::config::LimitsConfig::default();
        ListenerLimits {
            handshake_timeout: l.handshake_timeout,
            max_connections: l.max_connections,
            max_handshakes: l.max_handshakes,
        }
    }
}
/// Handshaken connections waiting for the server loop; beyond this, accepting slows down.
const READY_QUEUE: usize = 256;

/// A public connection: TLS, or plain TCP when TLS is off, holding its connection slot until
/// it is dropped.
pub struct PublicIo {
    stream: Stream,
    _slot: OwnedSemaphorePermit,
}

enum Stream {
    /// TLS over TCP.
    Tls(Box<TlsStream<TcpStream>>),
    /// Plain TCP (loopback development only).
    Plain(TcpStream),
}

impl AsyncRead for PublicIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match &mut self.get_mut().stream {
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for PublicIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match &mut self.get_mut().stream {
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match &mut self.get_mut().stream {
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match &mut self.get_mut().stream {
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}

/// The listener handed to `axum::serve`.
pub struct PublicListener {
    local: SocketAddr,
    ready: mpsc::Receiver<(PublicIo, SocketAddr)>,
}

/// The remote address of a public connection, for handlers (`ConnectInfo<RemoteAddr>`).
#[derive(Debug, Clone, Copy)]
pub struct RemoteAddr(pub SocketAddr);

impl Connected<IncomingStream<'_, PublicListener>> for RemoteAddr {
    fn connect_info(stream: IncomingStream<'_, PublicListener>) -> Self {
        RemoteAddr(*stream.remote_addr())
    }
}

impl PublicListener {
    /// Starts accepting on `tcp`; handshakes with `tls` when given. The accept task and the
    /// handshake tasks run on `tasks` and stop when `cancel` fires.
    pub fn start(
        tcp: TcpListener,
        tls: Option<Arc<rustls::ServerConfig>>,
        limits: ListenerLimits,
        tasks: &TaskTracker,
        cancel: CancellationToken,
    ) -> std::io::Result<PublicListener> {
        let local = tcp.local_addr()?;
        let (tx, rx) = mpsc::channel(READY_QUEUE);
        let acceptor = tls.map(TlsAcceptor::from);
        tasks.spawn(accept_loop(
            tcp,
            acceptor,
            tx,
            limits,
            tasks.clone(),
            cancel,
        ));
        Ok(PublicListener { local, ready: rx })
    }
}

async fn accept_loop(
    tcp: TcpListener,
    acceptor: Option<TlsAcceptor>,
    tx: mpsc::Sender<(PublicIo, SocketAddr)>,
    limits: ListenerLimits,
    tasks: TaskTracker,
    cancel: CancellationToken,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let handshakes = Arc::new(Semaphore::new(limits.max_handshakes.max(1)));
    loop {
        // A free connection slot before accepting: at the cap, new connections stay in the
        // kernel's backlog (bounded by it) instead of costing us memory or a task.
        let slot = tokio::select! {
            biased;
            _ = cancel.cancelled() => return,
            s = slots.clone().acquire_owned() => match s {
                Ok(s) => s,
                Err(_) => return,
            },
        };
        let (stream, addr) = tokio::select! {
            biased;
            _ = cancel.cancelled() => return,
            r = tcp.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // EMFILE and friends: back off briefly instead of spinning.
                    tracing::debug!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        // A dual-stack listener sees IPv4 clients as `::ffff:a.b.c.d`: one client, one address.
        let addr = SocketAddr::new(addr.ip().to_canonical(), addr.port());
        let _ = stream.set_nodelay(true);
        match &acceptor {
            None => {
                let io = PublicIo {
                    stream: Stream::Plain(stream),
                    _slot: slot,
                };
                if tx.send((io, addr)).await.is_err() {
                    return;
                }
            }
            Some(acc) => {
                // At most `max_handshakes` at once: a flood of clients that never finish their
                // handshake holds these (each for at most the timeout), not every slot.
                let turn = tokio::select! {
                    biased;
                    _ = cancel.cancelled() => return,
                    t = handshakes.clone().acquire_owned() => match t {
                        Ok(t) => t,
                        Err(_) => return,
                    },
                };
                let acc = acc.clone();
                let tx = tx.clone();
                let cancel = cancel.clone();
                let timeout = limits.handshake_timeout;
                tasks.spawn(async move {
                    let handshake = tokio::time::timeout(timeout, acc.accept(stream));
                    let done = tokio::select! {
                        biased;
                        // Shutting down: a half-open handshake is dropped, not waited for.
                        _ = cancel.cancelled() => return,
                        r = handshake => r,
                    };
                    drop(turn);
                    match done {
                        Ok(Ok(tls)) => {
                            let io = PublicIo {
                                stream: Stream::Tls(Box::new(tls)),
                                _slot: slot,
                            };
                            tokio::select! {
                                // The server stopped taking connections: drop this one.
                                _ = cancel.cancelled() => {}
                                _ = tx.send((io, addr)) => {}
                            }
                        }
                        // Failed handshakes are routine on a public port (scanners); debug only.
                        Ok(Err(e)) => tracing::debug!(error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!("TLS handshake timed out"),
                    }
                });
            }
        }
    }
}

impl Listener for PublicListener {
    type Io = PublicIo;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(x) => x,
            // The accept loop stopped (shutdown): park forever; graceful shutdown ends serving.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}
