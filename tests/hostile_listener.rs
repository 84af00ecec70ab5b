//! Attacks by anyone on the internet on the public listener, each against a real node on
//! 127.0.0.1 with short `[limits]`: a client that never finishes its TLS handshake, one that
//! never finishes its request head (slowloris), one that stalls its body, and one that opens
//! more connections than the cap. Each is cut off or held back, and the node keeps serving.
//! Waits are bounded by deadlines; the only fixed window is the one in which a connection
//! beyond the cap must NOT get through.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

/// Node certificates are self-signed, as Session clients expect: accept any, check signatures.
#[derive(Debug)]
struct AcceptAnyCert(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCert {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

fn connector() -> TlsConnector {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAnyCert(provider)))
        .with_no_client_auth();
    TlsConnector::from(Arc::new(config))
}

async fn tls_connect(port: u16) -> TlsStream<TcpStream> {
    let tcp = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    connector()
        .connect(ServerName::try_from("localhost").expect("name"), tcp)
        .await
        .expect("handshake")
}

/// Reads until the server closes the connection (or resets it), within `deadline`; what it
/// sent before closing.
async fn until_closed(s: &mut (impl AsyncReadExt + Unpin), deadline: Duration) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let read_all = async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    };
    tokio::time::timeout(deadline, read_all)
        .await
        .expect("the node should have closed the connection");
    got
}

async fn node_with(
    limits: impl FnOnce(&mut snode::config::LimitsConfig),
) -> (tempfile::TempDir, snode::node::NodeHandle) {
    let dir = tempfile::tempdir().expect("tempdir");
    init_dir(dir.path());
    let mut cfg = test_config();
    limits(&mut cfg.limits);
    let node = spawn_node(dir.path(), cfg).await;
    (dir, node)
}

async fn still_serves(node: &snode::node::NodeHandle) {
    let info = rpc_json(
        &client(),
        &node.https_addr().to_string(),
        "info",
        serde_json::json!({}),
    )
    .await;
    assert!(info["version"].is_array(), "{info}");
}

#[tokio::test]
async fn a_client_that_never_finishes_its_handshake_is_closed() {
    let (_dir, node) = node_with(|l| l.handshake_timeout = Duration::from_millis(500)).await;
    let mut tcp = TcpStream::connect(node.https_addr())
        .await
        .expect("connect");
    // Not a byte of TLS: the node drops the connection after its handshake timeout (the
    // deadline here is below the former fixed 10 s).
    until_closed(&mut tcp, Duration::from_secs(8)).await;
    still_serves(&node).await;
    node.shutdown().await;
}

#[tokio::test]
async fn a_request_head_that_never_completes_is_closed() {
    let (_dir, node) = node_with(|l| l.request_head_timeout = Duration::from_millis(500)).await;
    let mut s = tls_connect(node.https_addr().port()).await;
    // Slowloris: part of a head, then silence.
    s.write_all(b"POST /storage_rpc/v1 HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        .await
        .expect("write");
    s.flush().await.expect("flush");
    until_closed(&mut s, Duration::from_secs(8)).await;
    still_serves(&node).await;
    node.shutdown().await;
}

#[tokio::test]
async fn a_stalled_body_gets_408_and_the_connection_ends() {
    let (_dir, node) = node_with(|l| l.request_body_timeout = Duration::from_millis(500)).await;
    let mut s = tls_connect(node.https_addr().port()).await;
    s.write_all(
        b"POST /storage_rpc/v1 HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"method\":",
    )
    .await
    .expect("write");
    s.flush().await.expect("flush");
    let got = until_closed(&mut s, Duration::from_secs(8)).await;
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    still_serves(&node).await;
    node.shutdown().await;
}

#[tokio::test]
async fn connections_beyond_the_cap_wait_until_a_slot_frees() {
    let (_dir, node) = node_with(|l| l.max_connections = 2).await;
    let port = node.https_addr().port();
    let first = tls_connect(port).await;
    let _second = tls_connect(port).await;
    // The third gets a TCP connection from the kernel's backlog, but no handshake while both
    // slots are held.
    let third = tokio::spawn(tls_connect(port));
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(
        !third.is_finished(),
        "a third connection got through a cap of 2"
    );
    drop(first);
    let mut third = tokio::time::timeout(Duration::from_secs(10), third)
        .await
        .expect("the third connection should get the freed slot")
        .expect("task");
    third
        .write_all(b"GET /nothing HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .expect("write");
    let got = until_closed(&mut third, Duration::from_secs(10)).await;
    assert!(String::from_utf8_lossy(&got).starts_with("HTTP/1.1 "));
    node.shutdown().await;
}

/// One HTTP/2 frame: type, flags, stream id, payload.
fn h2_frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// Reads whole frames until `want` returns something or the connection ends (10 s at most).
async fn h2_until<T>(
    s: &mut (impl AsyncReadExt + Unpin),
    mut want: impl FnMut(u8, u8, u32, &[u8]) -> Option<T>,
) -> Option<T> {
    let mut buf = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        while buf.len() >= 9 {
            let len = usize::from(buf[0]) << 16 | usize::from(buf[1]) << 8 | usize::from(buf[2]);
            if buf.len() < 9 + len {
                break;
            }
            let stream = u32::from_be_bytes([buf[5], buf[6], buf[7], buf[8]]) & 0x7fff_ffff;
            if let Some(v) = want(buf[3], buf[4], stream, &buf[9..9 + len]) {
                return Some(v);
            }
            buf.drain(..9 + len);
        }
        let mut chunk = [0u8; 4096];
        match tokio::time::timeout_at(deadline, s.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => buf.extend_from_slice(&chunk[..n]),
            _ => return None,
        }
    }
}

/// HTTP/2 with the `h2` ALPN, spoken frame by frame (no client library to be polite for us):
/// the node advertises `http2_max_streams`, and a client that opens more streams than that
/// at once has the excess refused (`REFUSED_STREAM`), while the node serves everyone else.
#[tokio::test]
async fn http2_streams_beyond_the_cap_are_refused() {
    let (_dir, node) = node_with(|l| l.http2_max_streams = 2).await;
    let tcp = TcpStream::connect(("127.0.0.1", node.https_addr().port()))
        .await
        .expect("connect");
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAnyCert(provider)))
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let mut s = TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("localhost").expect("name"), tcp)
        .await
        .expect("handshake");
    s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        .await
        .expect("preface");
    s.write_all(&h2_frame(4, 0, 0, &[]))
        .await
        .expect("settings");
    // The node's SETTINGS: SETTINGS_MAX_CONCURRENT_STREAMS (0x3) is the configured cap.
    let cap = h2_until(&mut s, |kind, flags, _, payload| {
        (kind == 4 && flags & 1 == 0).then(|| {
            payload
                .chunks_exact(6)
                .find(|p| p[..2] == [0, 3])
                .map(|p| u32::from_be_bytes([p[2], p[3], p[4], p[5]]))
        })
    })
    .await
    .flatten();
    assert_eq!(cap, Some(2));
    s.write_all(&h2_frame(4, 1, 0, &[]))
        .await
        .expect("settings ack");
    // Three POSTs whose bodies never come (END_HEADERS, no END_STREAM): each holds a stream.
    // HPACK: :method POST (3), :scheme https (7), :path / (4), then :authority literal.
    let mut headers = vec![0x83, 0x87, 0x84, 0x41, 9];
    headers.extend_from_slice(b"localhost");
    for stream in [1u32, 3, 5] {
        s.write_all(&h2_frame(1, 4, stream, &headers))
            .await
            .expect("headers");
    }
    let refused = h2_until(&mut s, |kind, _, stream, payload| {
        (kind == 3 && payload.len() == 4).then(|| {
            (
                stream,
                u32::from_be_bytes([payload[0], payload[1], payload[2], payload[3]]),
            )
        })
    })
    .await;
    assert_eq!(
        refused,
        Some((5, 7)),
        "the third stream is refused with REFUSED_STREAM"
    );
    still_serves(&node).await;
    node.shutdown().await;
}

/// A peer request from a key no directory lists is refused on its headers: the node answers
/// 403 without waiting for (or buffering) the body it announced.
#[tokio::test]
async fn an_unlisted_peer_is_refused_before_its_body_is_read() {
    let (_dir, node) = node_with(|l| l.request_body_timeout = Duration::from_secs(120)).await;
    let mut s = tls_connect(node.https_addr().port()).await;
    let stranger = hex::encode([0x42u8; 32]);
    let head = format!(
        "POST /snode/v1/data HTTP/1.1\r\nHost: localhost\r\nx-snode-pubkey: {stranger}\r\n\
         x-snode-timestamp: 1\r\nx-snode-nonce: {}\r\nx-snode-signature: {}\r\n\
         Content-Length: 9000000\r\n\r\n",
        "00".repeat(16),
        "00".repeat(32)
    );
    s.write_all(head.as_bytes()).await.expect("head");
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    let answered = tokio::time::timeout(Duration::from_secs(10), async {
        while !got.windows(4).any(|w| w == b"\r\n\r\n") {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(answered.is_ok(), "no answer before the body");
    assert!(
        got.starts_with(b"HTTP/1.1 403"),
        "{}",
        String::from_utf8_lossy(&got)
    );
    still_serves(&node).await;
    node.shutdown().await;
}
