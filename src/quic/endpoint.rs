//! quinn endpoints with the transport settings libquic peers need (quic.md 1.7–1.9, 2.2–2.5):
//! QUIC v1, UDP payloads ≤ 1452 bytes, no datagrams, no uni streams, 30 s idle timeout, and
//! libquic's flow-control windows; the listener's UDP socket dual-stack on `::`.
//!
//! Owns building sockets and endpoints. Must not decide what is sent on them.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use quinn::{EndpointConfig, IdleTimeout, MtuDiscoveryConfig, TransportConfig, VarInt};

use crate::keys::NodeKeys;

/// libquic receives into 1452-byte buffers and drops anything larger (quic.md 1.8).
pub const MAX_UDP_PAYLOAD: u16 = 1452;
/// libquic's stream flow-control window (6 MiB) and connection window (15 MiB).
const STREAM_WINDOW: u32 = 6 * 1024 * 1024;
const CONNECTION_WINDOW: u32 = 15 * 1024 * 1024;
/// Client bidi streams a server allows: libquic clients use one (stream 0); a few more cost
/// nothing, as extra streams are refused at once.
pub const SERVER_MAX_BIDI_STREAMS: u32 = 4;

/// Why an endpoint could not be made.
#[derive(Debug, thiserror::Error)]
pub enum EndpointError {
    /// The UDP socket could not be bound.
    #[error("cannot bind UDP {addr}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// rustls refused the configuration.
    #[error("invalid QUIC TLS configuration")]
    Tls(#[source] rustls::Error),
    /// quinn refused the rustls configuration (no TLS 1.3 suite usable for QUIC).
    #[error("TLS configuration unusable for QUIC")]
    Crypto(#[source] quinn::crypto::rustls::NoInitialCipherSuite),
}

/// The transport settings shared by both sides; `keep_alive` for clients (libsession pings
/// every 10 s), none for servers (the storage server sends none).
pub fn transport(idle: Duration, keep_alive: Option<Duration>) -> TransportConfig {
    let mut t = TransportConfig::default();
    // A value quinn cannot express (over 2^62 ms) falls back to libquic's 30 s.
    let idle =
        IdleTimeout::try_from(idle).unwrap_or_else(|_| IdleTimeout::from(VarInt::from_u32(30_000)));
    t.max_idle_timeout(Some(idle));
    t.keep_alive_interval(keep_alive);
    t.max_concurrent_uni_streams(VarInt::from_u32(0));
    t.datagram_receive_buffer_size(None);
    t.stream_receive_window(VarInt::from_u32(STREAM_WINDOW));
    t.receive_window(VarInt::from_u32(CONNECTION_WINDOW));
    t.send_window(u64::from(CONNECTION_WINDOW));
    t.initial_mtu(1200);
    let mut mtu = MtuDiscoveryConfig::default();
    mtu.upper_bound(MAX_UDP_PAYLOAD);
    t.mtu_discovery_config(Some(mtu));
    t
}

/// The quinn server configuration of a node: its raw key, and the transport above with
/// [`SERVER_MAX_BIDI_STREAMS`].
pub fn server_config(
    keys: Arc<NodeKeys>,
    idle: Duration,
) -> Result<quinn::ServerConfig, EndpointError> {
    let tls = super::tls::server_config(keys).map_err(EndpointError::Tls)?;
    let crypto = QuicServerConfig::try_from(tls).map_err(EndpointError::Crypto)?;
    let mut config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    let mut t = transport(idle, None);
    t.max_concurrent_bidi_streams(VarInt::from_u32(SERVER_MAX_BIDI_STREAMS));
    config.transport_config(Arc::new(t));
    Ok(config)
}

/// The quinn client configuration for the node whose key is `server_key`, presenting `own`.
pub fn client_config(
    own: Arc<NodeKeys>,
    server_key: [u8; 32],
    idle: Duration,
    keep_alive: Option<Duration>,
) -> Result<quinn::ClientConfig, EndpointError> {
    let tls = super::tls::client_config(own, server_key).map_err(EndpointError::Tls)?;
    let crypto = QuicClientConfig::try_from(tls).map_err(EndpointError::Crypto)?;
    let mut config = quinn::ClientConfig::new(Arc::new(crypto));
    let mut t = transport(idle, keep_alive);
    // Servers open no streams towards us (quic.md 1.7).
    t.max_concurrent_bidi_streams(VarInt::from_u32(0));
    config.transport_config(Arc::new(t));
    Ok(config)
}

/// A UDP socket on `addr`; on the IPv6 wildcard it is dual-stack (IPv4 arrives v4-mapped), and
/// where the host has no IPv6 it falls back to `0.0.0.0` on the same port, as the HTTPS
/// listener does.
pub fn bind_udp(addr: SocketAddr) -> Result<std::net::UdpSocket, EndpointError> {
    use socket2::{Domain, Protocol, Socket, Type};
    let make = |addr: SocketAddr| -> std::io::Result<std::net::UdpSocket> {
        let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
        if addr.is_ipv6() {
            socket.set_only_v6(addr.ip() != IpAddr::V6(Ipv6Addr::UNSPECIFIED))?;
        }
        socket.set_nonblocking(true)?;
        socket.bind(&addr.into())?;
        Ok(socket.into())
    };
    match make(addr) {
        Ok(s) => Ok(s),
        Err(e) if addr.ip() == IpAddr::V6(Ipv6Addr::UNSPECIFIED) => {
            let v4 = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), addr.port());
            tracing::warn!(error = %e, "no IPv6 here: QUIC listens on IPv4 only");
            make(v4).map_err(|source| EndpointError::Bind { addr: v4, source })
        }
        Err(source) => Err(EndpointError::Bind { addr, source }),
    }
}

/// A server endpoint on `socket` (which it also uses to connect out).
pub fn server(
    socket: std::net::UdpSocket,
    config: quinn::ServerConfig,
) -> Result<quinn::Endpoint, EndpointError> {
    let addr = socket
        .local_addr()
        .unwrap_or_else(|_| SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)));
    quinn::Endpoint::new(
        EndpointConfig::default(),
        Some(config),
        socket,
        Arc::new(quinn::TokioRuntime),
    )
    .map_err(|source| EndpointError::Bind { addr, source })
}

/// A client-only endpoint on an ephemeral port of `local` (IPv4 or IPv6 wildcard).
pub fn client(local: IpAddr) -> Result<quinn::Endpoint, EndpointError> {
    let addr = SocketAddr::new(local, 0);
    quinn::Endpoint::client(addr).map_err(|source| EndpointError::Bind { addr, source })
}
