//! The client side of the request stream: connect to a node knowing only its Ed25519 key, IP
//! and QUIC port, open stream 0, and send commands with many in flight; replies are matched
//! to their request by id, and commands the node pushes (`notify`) are handed to the caller.
//!
//! Used by `snode client --transport quic`, `watch`, and a node's QUIC reachability tests.
//! Owns the stream's read loop and the pending-request table. Must not interpret bodies.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use super::endpoint::{EndpointError, client_config};
use super::frame::{Frame, FrameError, FrameReader};
use crate::keys::NodeKeys;

/// libquic's request timeout (`DEFAULT_TIMEOUT`, quic.md 4.3).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// libsession's keep-alive interval (quic.md 2.3).
pub const KEEP_ALIVE: Duration = Duration::from_secs(10);
/// Pushed commands kept for a slow reader before further ones are dropped.
const PUSH_QUEUE: usize = 1024;

/// Why a request got no answer.
#[derive(Debug, thiserror::Error)]
pub enum QuicError {
    /// The endpoint or its TLS configuration could not be made.
    #[error("cannot set up QUIC")]
    Endpoint(#[from] EndpointError),
    /// quinn refused to start the connection.
    #[error("cannot connect")]
    Connect(#[from] quinn::ConnectError),
    /// The handshake failed (a wrong server key ends here) or the connection was lost.
    #[error("connection failed")]
    Connection(#[from] quinn::ConnectionError),
    /// The handshake did not finish in time.
    #[error("handshake timed out")]
    HandshakeTimeout,
    /// Writing to the stream failed.
    #[error("stream write failed")]
    Write(#[from] quinn::WriteError),
    /// The request is too large to frame.
    #[error("request cannot be sent")]
    Frame(#[from] FrameError),
    /// No answer within the timeout.
    #[error("request timed out")]
    Timeout,
    /// The stream closed before the answer came.
    #[error("stream closed before the answer")]
    Closed,
}

/// What a command got back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// `R`: success, with its body.
    Reply(Vec<u8>),
    /// `E`: failure, with its text (`"<code> <reason>\n\n<body>"` from a storage node).
    Error(Vec<u8>),
}

/// A command the node sent us (a `notify` push).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pushed {
    /// The endpoint name (`notify`).
    pub endpoint: Vec<u8>,
    /// The body.
    pub body: Vec<u8>,
}

type Pending = Arc<Mutex<HashMap<i64, oneshot::Sender<Answer>>>>;

/// One connection to a node with its request stream.
pub struct QuicConnection {
    conn: quinn::Connection,
    send: tokio::sync::Mutex<quinn::SendStream>,
    pending: Pending,
    next_rid: AtomicI64,
    pushes: Mutex<Option<mpsc::Receiver<Pushed>>>,
}

/// Connects to `addr`, accepting only `server_key`, presenting `own` (a throw-away key for a
/// client, the node's identity for a node), through `endpoint`.
pub async fn connect(
    endpoint: &quinn::Endpoint,
    own: Arc<NodeKeys>,
    addr: SocketAddr,
    server_key: [u8; 32],
    handshake_timeout: Duration,
) -> Result<QuicConnection, QuicError> {
    let config = client_config(own, server_key, Duration::from_secs(30), Some(KEEP_ALIVE))?;
    // libquic clients always send SNI "localhost"; servers ignore it (quic.md 1.5).
    let connecting = endpoint.connect_with(config, addr, "localhost")?;
    let conn = tokio::time::timeout(handshake_timeout, connecting)
        .await
        .map_err(|_| QuicError::HandshakeTimeout)??;
    let (send, recv) = conn.open_bi().await?;
    let pending: Pending = Arc::default();
    let (push_tx, push_rx) = mpsc::channel(PUSH_QUEUE);
    tokio::spawn(read_loop(recv, pending.clone(), push_tx));
    Ok(QuicConnection {
        conn,
        send: tokio::sync::Mutex::new(send),
        pending,
        next_rid: AtomicI64::new(0),
        pushes: Mutex::new(Some(push_rx)),
    })
}

async fn read_loop(mut recv: quinn::RecvStream, pending: Pending, pushes: mpsc::Sender<Pushed>) {
    let mut reader = FrameReader::new();
    loop {
        let chunk = match recv.read_chunk(64 * 1024, true).await {
            Ok(Some(c)) => c,
            Ok(None) | Err(_) => break,
        };
        reader.push(&chunk.bytes);
        loop {
            match reader.next_frame() {
                Ok(Some(Frame::Reply { rid, body })) => answer(&pending, rid, Answer::Reply(body)),
                Ok(Some(Frame::Error { rid, body })) => answer(&pending, rid, Answer::Error(body)),
                Ok(Some(Frame::Command { endpoint, body, .. })) => {
                    // A slow reader loses pushes rather than stalling every reply behind them.
                    let _ = pushes.try_send(Pushed { endpoint, body });
                }
                Ok(None) => break,
                Err(_) => {
                    let _ = recv.stop(super::frame::BPARSER_ERROR.into());
                    pending_closed(&pending);
                    return;
                }
            }
        }
    }
    pending_closed(&pending);
}

fn answer(pending: &Pending, rid: i64, a: Answer) {
    let tx = pending.lock().ok().and_then(|mut p| p.remove(&rid));
    if let Some(tx) = tx {
        let _ = tx.send(a);
    }
}

/// Fails every waiting request at once, as libquic does when the stream closes.
fn pending_closed(pending: &Pending) {
    if let Ok(mut p) = pending.lock() {
        p.clear();
    }
}

impl QuicConnection {
    /// Sends `endpoint` with `body` and waits up to `timeout` for its answer. Any number may
    /// be in flight at once.
    pub async fn request(
        &self,
        endpoint: &str,
        body: &[u8],
        timeout: Duration,
    ) -> Result<Answer, QuicError> {
        let rid = self.next_rid.fetch_add(1, Ordering::Relaxed);
        let frame = Frame::Command {
            rid,
            endpoint: endpoint.as_bytes().to_vec(),
            body: body.to_vec(),
        }
        .encode()?;
        let (tx, rx) = oneshot::channel();
        if let Ok(mut p) = self.pending.lock() {
            p.insert(rid, tx);
        }
        let sent = self.send.lock().await.write_all(&frame).await;
        if let Err(e) = sent {
            answer_dropped(&self.pending, rid);
            return Err(e.into());
        }
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(a)) => Ok(a),
            Ok(Err(_)) => Err(QuicError::Closed),
            Err(_) => {
                answer_dropped(&self.pending, rid);
                Err(QuicError::Timeout)
            }
        }
    }

    /// Sends raw bytes on the request stream (tests of the node's framing checks).
    pub async fn send_raw(&self, bytes: &[u8]) -> Result<(), QuicError> {
        Ok(self.send.lock().await.write_all(bytes).await?)
    }

    /// The commands the node pushes (`notify`); only the first caller gets them.
    pub fn pushes(&self) -> Option<mpsc::Receiver<Pushed>> {
        self.pushes.lock().ok().and_then(|mut p| p.take())
    }

    /// Whether the connection is still up (a lost one is replaced by its holder).
    pub fn is_open(&self) -> bool {
        self.conn.close_reason().is_none()
    }

    /// The node's address.
    pub fn remote_address(&self) -> SocketAddr {
        self.conn.remote_address()
    }

    /// Closes the connection (application code 0, as libquic's normal close).
    pub fn close(&self) {
        self.conn.close(0u32.into(), b"No error");
    }
}

fn answer_dropped(pending: &Pending, rid: i64) {
    if let Ok(mut p) = pending.lock() {
        p.remove(&rid);
    }
}
