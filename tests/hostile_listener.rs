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
