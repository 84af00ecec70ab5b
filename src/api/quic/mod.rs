//! The node's QUIC listener (quic.md): what libquic clients (Session's apps through
//! libsession, the push server) and upstream nodes connect to on UDP `network.quic_port`.
//!
//! Owns accepting connections within `[quic]`'s limits (connections in total and per IP,
//! handshakes in progress, handshake time; the idle timeout is the transport's), the request
//! stream of each connection (the first client stream; others are refused), reading commands
//! off it with a bounded number in flight, answering each exactly once with its id, and
//! resetting a stream whose framing is broken (the connection and everyone else carry on).
//! Endpoint semantics are in `dispatch`, subscriptions and pushes in `monitor`. Must not log
//! addresses, keys or bodies.

pub mod dispatch;
pub mod monitor;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::AppState;
use crate::config::QuicConfig;
use crate::metrics::QuicRefusal;
use crate::quic::frame::{BPARSER_ERROR, Frame, FrameReader};
use dispatch::{Answer, Caller};
use monitor::{PushTarget, Subscriptions};

/// Outgoing frames queued per stream (replies and pushes); a subscriber that reads slower
/// than this loses pushes, never replies (those wait for room).
const STREAM_QUEUE: usize = 1024;
/// Largest read from the stream at once.
const READ_CHUNK: usize = 64 * 1024;

/// Everything the listener needs; cheap to clone.
#[derive(Clone)]
pub struct QuicState {
    /// The node's HTTP-side state (RPC, onion, limiter, metrics, readiness).
    pub app: AppState,
    /// `monitor` subscriptions, also fed by the store.
    pub subscriptions: Arc<Subscriptions>,
    /// `[quic]` limits.
    pub limits: QuicConfig,
}

/// Connections open per IP (v4-mapped addresses count as their IPv4).
#[derive(Default)]
struct PerIp(Mutex<HashMap<IpAddr, usize>>);

/// One connection's hold on its IP's count, released on drop.
struct IpSlot {
    table: Arc<PerIp>,
    ip: IpAddr,
}

impl PerIp {
    fn try_add(self: &Arc<Self>, ip: IpAddr, max: usize) -> Option<IpSlot> {
        let mut t = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let n = t.entry(ip).or_insert(0);
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(IpSlot {
            table: self.clone(),
            ip,
        })
    }
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        let mut t = self.table.0.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(n) = t.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                t.remove(&self.ip);
            }
        }
    }
}

fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// Accepts connections on `endpoint` until `cancel`, then closes the endpoint.
pub async fn serve(endpoint: quinn::Endpoint, state: QuicState, cancel: CancellationToken) {
    let connections = Arc::new(Semaphore::new(state.limits.max_connections));
    let handshakes = Arc::new(Semaphore::new(state.limits.max_handshakes));
    let per_ip = Arc::new(PerIp::default());
    let next_id = Arc::new(AtomicU64::new(1));
    let tracker = TaskTracker::new();
    let refuse = |reason: QuicRefusal| {
        state
            .app
            .metrics
            .quic_connections_refused_total
            .with_label_values(&[reason.label()])
            .inc();
    };
    loop {
        let incoming = tokio::select! {
            () = cancel.cancelled() => break,
            i = endpoint.accept() => match i { Some(i) => i, None => break },
        };
        let ip = canonical(incoming.remote_address().ip());
        let Ok(conn_permit) = connections.clone().try_acquire_owned() else {
            refuse(QuicRefusal::Total);
            incoming.refuse();
            continue;
        };
        let Some(ip_slot) = per_ip.try_add(ip, state.limits.max_connections_per_ip) else {
            refuse(QuicRefusal::PerIp);
            incoming.refuse();
            continue;
        };
        // Ignored, not refused: a flood of Initials gets no answer to amplify.
        let Ok(hs_permit) = handshakes.clone().try_acquire_owned() else {
            refuse(QuicRefusal::Handshakes);
            incoming.ignore();
            continue;
        };
        let id = next_id.fetch_add(1, Ordering::Relaxed);
        let state = state.clone();
        let cancel = cancel.clone();
        tracker.spawn(async move {
            let Some(conn) = handshake(&state, incoming).await else {
                return;
            };
            drop(hs_permit);
            state.app.metrics.quic_connections.inc();
            connection(&state, conn, id, ip, cancel).await;
            state.app.metrics.quic_connections.dec();
            state.subscriptions.remove_connection(id);
            drop((conn_permit, ip_slot));
        });
    }
    endpoint.close(0u32.into(), b"shutting down");
    tracker.close();
    tracker.wait().await;
}

async fn handshake(state: &QuicState, incoming: quinn::Incoming) -> Option<quinn::Connection> {
    let failed = || state.app.metrics.quic_handshakes_failed_total.inc();
    let Ok(connecting) = incoming.accept() else {
        failed();
        return None;
    };
    match tokio::time::timeout(state.limits.handshake_timeout, connecting).await {
        Ok(Ok(c)) => Some(c),
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "QUIC handshake failed");
            failed();
            None
        }
        Err(_) => {
            tracing::debug!("QUIC handshake timed out");
            failed();
            None
        }
    }
}

/// The Ed25519 key of the connection's raw-key client certificate (required by the handshake).
fn client_key(conn: &quinn::Connection) -> Option<[u8; 32]> {
    let certs = conn
        .peer_identity()?
        .downcast::<Vec<rustls::pki_types::CertificateDer<'static>>>()
        .ok()?;
    crate::quic::tls::key_of_spki(certs.first()?)
}

/// Requests in flight on one listed node's connection: peer traffic of a busy swarm, and
/// onion relays that wait on the next hop (a small cap could make hops wait on each other).
const PEER_REQUESTS_IN_FLIGHT: usize = 1024;

/// One connection: its first client stream is the request stream; others are refused.
async fn connection(
    state: &QuicState,
    conn: quinn::Connection,
    id: u64,
    ip: IpAddr,
    cancel: CancellationToken,
) {
    let key = client_key(&conn);
    let streams = TaskTracker::new();
    let mut have_request_stream = false;
    loop {
        let accepted = tokio::select! {
            () = cancel.cancelled() => {
                conn.close(0u32.into(), b"shutting down");
                break;
            }
            s = conn.accept_bi() => s,
        };
        match accepted {
            Ok((send, recv)) if !have_request_stream => {
                have_request_stream = true;
                let state = state.clone();
                let cancel = cancel.clone();
                streams.spawn(async move {
                    request_stream(&state, id, ip, key, send, recv, cancel).await;
                });
            }
            Ok((mut send, mut recv)) => {
                // The original attaches no handler to further streams; refusing them at once
                // frees their slot instead of leaving them open forever.
                let _ = recv.stop(0u32.into());
                let _ = send.reset(0u32.into());
            }
            Err(_) => break,
        }
    }
    streams.close();
    streams.wait().await;
}

/// What the stream's writer is asked to do.
enum Out {
    Bytes(Vec<u8>),
    /// Reset with the framing error code and stop.
    Reset,
}

async fn request_stream(
    state: &QuicState,
    conn_id: u64,
    ip: IpAddr,
    key: Option<[u8; 32]>,
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
    cancel: CancellationToken,
) {
    let (out_tx, mut out_rx) = mpsc::channel::<Out>(STREAM_QUEUE);
    // Pushes come from the store's thread and must never wait: they have their own queue,
    // merged into the writer here.
    let (push_tx, mut push_rx) = mpsc::channel::<Vec<u8>>(STREAM_QUEUE);
    let push = PushTarget {
        queue: push_tx,
        next_rid: Arc::new(AtomicI64::new(0)),
    };
    let writer = tokio::spawn(async move {
        let mut pushes_open = true;
        loop {
            let next = tokio::select! {
                o = out_rx.recv() => match o {
                    Some(o) => o,
                    None => break,
                },
                p = push_rx.recv(), if pushes_open => match p {
                    Some(b) => Out::Bytes(b),
                    None => {
                        pushes_open = false;
                        continue;
                    }
                },
            };
            match next {
                Out::Bytes(b) => {
                    if send.write_all(&b).await.is_err() {
                        break;
                    }
                }
                Out::Reset => {
                    let _ = send.reset(BPARSER_ERROR.into());
                    break;
                }
            }
        }
    });
    let listed = key.is_some_and(|k| state.app.rpc.membership.borrow().node(&k).is_some());
    let in_flight = Arc::new(Semaphore::new(if listed {
        PEER_REQUESTS_IN_FLIGHT
    } else {
        state.limits.max_requests_per_connection
    }));
    let handlers = TaskTracker::new();
    let mut reader = FrameReader::new();
    'read: loop {
        let chunk = tokio::select! {
            () = cancel.cancelled() => break,
            c = recv.read_chunk(READ_CHUNK, true) => c,
        };
        let Ok(Some(chunk)) = chunk else { break };
        reader.push(&chunk.bytes);
        loop {
            let frame = match reader.next_frame() {
                Ok(Some(f)) => f,
                Ok(None) => break,
                Err(e) => {
                    // quic.md 4.4: a framing error closes the stream with 777000105; the
                    // connection and the node carry on.
                    tracing::debug!(error = %e, "QUIC request stream framing error");
                    state.app.metrics.quic_stream_errors_total.inc();
                    let _ = recv.stop(BPARSER_ERROR.into());
                    let _ = out_tx.send(Out::Reset).await;
                    break 'read;
                }
            };
            let Frame::Command {
                rid,
                endpoint,
                body,
            } = frame
            else {
                // Replies to our pushes: none are expected (pushes are fire-and-forget).
                continue;
            };
            // Bounded work per connection: the stream is not read further until a slot frees.
            let Ok(permit) = in_flight.clone().acquire_owned().await else {
                break 'read;
            };
            let state = state.clone();
            let out = out_tx.clone();
            let push = push.clone();
            handlers.spawn(async move {
                let caller = Caller {
                    conn: conn_id,
                    push: &push,
                    ip,
                    key,
                };
                let (_, answer) = dispatch::answer(&state, &caller, &endpoint, &body).await;
                let frame = match answer {
                    Answer::Reply(body) => Frame::Reply { rid, body },
                    Answer::Error(body) => Frame::Error { rid, body },
                };
                let bytes = frame.encode().or_else(|_| {
                    Frame::Error {
                        rid,
                        body: dispatch::error_text(500, b"response too large"),
                    }
                    .encode()
                });
                if let Ok(b) = bytes {
                    let _ = out.send(Out::Bytes(b)).await;
                }
                drop(permit);
            });
        }
    }
    handlers.close();
    handlers.wait().await;
    drop(out_tx);
    state.subscriptions.remove_connection(conn_id);
    drop(push);
    let _ = writer.await;
}

/// Binds the QUIC listener's UDP socket on `addr` and makes the endpoint.
pub fn bind(
    addr: SocketAddr,
    keys: Arc<crate::keys::NodeKeys>,
    limits: &QuicConfig,
) -> Result<quinn::Endpoint, crate::quic::endpoint::EndpointError> {
    let socket = crate::quic::endpoint::bind_udp(addr)?;
    let config = crate::quic::endpoint::server_config(keys, limits.idle_timeout)?;
    crate::quic::endpoint::server(socket, config)
}
