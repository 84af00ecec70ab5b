//! A QUIC client written from `quic.md` alone, for the integration tests: its own rustls
//! raw-public-key configuration and its own reading and writing of the request stream's
//! framing (`<len>:l1:C i<rid>e <endpoint> <body> e`), sharing nothing with the node's codec.
#![allow(dead_code, unreachable_pub)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, SubjectPublicKeyInfoDer, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio::sync::mpsc;

const SPKI_HEADER: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

/// One message read off the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Msg {
    /// `C`: a command the node sent (a `notify`).
    Command {
        rid: i64,
        endpoint: Vec<u8>,
        body: Vec<u8>,
    },
    /// `R`.
    Reply { rid: i64, body: Vec<u8> },
    /// `E`.
    Error { rid: i64, body: Vec<u8> },
}

#[derive(Debug)]
struct ExpectKey([u8; 32]);

impl ServerCertVerifier for ExpectKey {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        // libquic's check: skip the 12-byte header, the rest must be exactly the key.
        let cert = end_entity.as_ref();
        if cert.len() == 44 && cert[12..] == self.0 {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General("unexpected server key".into()))
        }
    }
    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::General("TLS 1.2".into()))
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature_with_raw_key(
            message,
            &SubjectPublicKeyInfoDer::from(cert.as_ref()),
            dss,
            &rustls::crypto::aws_lc_rs::default_provider().signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        vec![SignatureScheme::ED25519]
    }
    fn requires_raw_public_keys(&self) -> bool {
        true
    }
}

/// A throw-away Ed25519 key as a raw-public-key certificate (as libsession makes per
/// connection), through aws-lc-rs's PKCS#8 loader rather than the node's signer.
fn throwaway_key() -> Arc<rustls::sign::CertifiedKey> {
    let seed: [u8; 32] = rand::random();
    let sk = ed25519_dalek::SigningKey::from_bytes(&seed);
    let mut pkcs8 = hex::decode("302e020100300506032b657004220420").expect("hex");
    pkcs8.extend_from_slice(&seed);
    let key = rustls::crypto::aws_lc_rs::sign::any_eddsa_type(
        &rustls::pki_types::PrivatePkcs8KeyDer::from(pkcs8),
    )
    .expect("ed25519 key");
    let mut spki = SPKI_HEADER.to_vec();
    spki.extend_from_slice(&sk.verifying_key().to_bytes());
    Arc::new(rustls::sign::CertifiedKey::new(
        vec![CertificateDer::from(spki)],
        key,
    ))
}

fn client_config(server_key: [u8; 32]) -> quinn::ClientConfig {
    let mut tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13])
    .expect("tls13")
    .dangerous()
    .with_custom_certificate_verifier(Arc::new(ExpectKey(server_key)))
    .with_client_cert_resolver(Arc::new(
        rustls::client::AlwaysResolvesClientRawPublicKeys::new(throwaway_key()),
    ));
    tls.alpn_protocols = vec![b"oxenstorage".to_vec()];
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls).expect("quic tls");
    let mut c = quinn::ClientConfig::new(Arc::new(crypto));
    let mut t = quinn::TransportConfig::default();
    t.keep_alive_interval(Some(Duration::from_secs(10)));
    c.transport_config(Arc::new(t));
    c
}

fn put_str(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(format!("{}:", b.len()).as_bytes());
    out.extend_from_slice(b);
}

/// `<len>:l1:Ci<rid>e<endpoint><body>e`, written by hand from quic.md 4.2.
pub fn command(rid: i64, endpoint: &str, body: &[u8]) -> Vec<u8> {
    let mut list = b"l1:C".to_vec();
    list.extend_from_slice(format!("i{rid}e").as_bytes());
    put_str(&mut list, endpoint.as_bytes());
    put_str(&mut list, body);
    list.push(b'e');
    let mut out = Vec::new();
    put_str(&mut out, &list);
    out
}

/// Reads a `<n>:` string at `pos`.
fn read_str(b: &[u8], pos: &mut usize) -> Option<Vec<u8>> {
    let colon = b[*pos..].iter().position(|&c| c == b':')? + *pos;
    let n: usize = std::str::from_utf8(&b[*pos..colon]).ok()?.parse().ok()?;
    let s = b.get(colon + 1..colon + 1 + n)?.to_vec();
    *pos = colon + 1 + n;
    Some(s)
}

fn read_int(b: &[u8], pos: &mut usize) -> Option<i64> {
    if b.get(*pos) != Some(&b'i') {
        return None;
    }
    let end = b[*pos..].iter().position(|&c| c == b'e')? + *pos;
    let v = std::str::from_utf8(&b[*pos + 1..end]).ok()?.parse().ok()?;
    *pos = end + 1;
    Some(v)
}

/// Parses one payload list.
fn parse(payload: &[u8]) -> Option<Msg> {
    if payload.first() != Some(&b'l') {
        return None;
    }
    let mut pos = 1;
    let kind = read_str(payload, &mut pos)?;
    let rid = read_int(payload, &mut pos)?;
    let endpoint = if kind == b"C" {
        Some(read_str(payload, &mut pos)?)
    } else {
        None
    };
    let body = read_str(payload, &mut pos)?;
    Some(match (kind.as_slice(), endpoint) {
        (b"R", _) => Msg::Reply { rid, body },
        (b"E", _) => Msg::Error { rid, body },
        (_, e) => Msg::Command {
            rid,
            endpoint: e.unwrap_or_default(),
            body,
        },
    })
}

/// A connection with its stream 0.
pub struct QuicTestClient {
    pub conn: quinn::Connection,
    pub send: quinn::SendStream,
    pub incoming: mpsc::UnboundedReceiver<Msg>,
    /// How the read side ended: `Some(code)` when the node reset the stream.
    pub reset: Arc<std::sync::Mutex<Option<u64>>>,
    next_rid: i64,
    /// Messages read while waiting for another one.
    stash: Vec<Msg>,
}

pub fn endpoint() -> quinn::Endpoint {
    quinn::Endpoint::client("127.0.0.1:0".parse().expect("addr")).expect("client endpoint")
}

/// Connects (within 5 s) or returns the connection error.
pub async fn try_connect(
    ep: &quinn::Endpoint,
    addr: SocketAddr,
    key: [u8; 32],
) -> Result<QuicTestClient, String> {
    let connecting = ep
        .connect_with(client_config(key), addr, "localhost")
        .map_err(|e| e.to_string())?;
    let conn = tokio::time::timeout(Duration::from_secs(5), connecting)
        .await
        .map_err(|_| "handshake timed out".to_string())?
        .map_err(|e| e.to_string())?;
    let (send, mut recv) = conn.open_bi().await.map_err(|e| e.to_string())?;
    let (tx, rx) = mpsc::unbounded_channel();
    let reset = Arc::new(std::sync::Mutex::new(None));
    let reset2 = reset.clone();
    tokio::spawn(async move {
        let mut buf: Vec<u8> = Vec::new();
        let mut chunk = vec![0u8; 65536];
        loop {
            match recv.read(&mut chunk).await {
                Ok(Some(n)) => buf.extend_from_slice(&chunk[..n]),
                Ok(None) => break,
                Err(quinn::ReadError::Reset(code)) => {
                    *reset2.lock().expect("lock") = Some(code.into_inner());
                    break;
                }
                Err(e) => {
                    eprintln!("quic test client: stream read ended: {e}");
                    break;
                }
            }
            loop {
                let mut pos = 0;
                let Some(payload) = read_str(&buf, &mut pos) else {
                    break;
                };
                let msg = parse(&payload).expect("node sent a well-formed message");
                buf.drain(..pos);
                let _ = tx.send(msg);
            }
        }
    });
    Ok(QuicTestClient {
        conn,
        send,
        incoming: rx,
        reset,
        next_rid: 0,
        stash: Vec::new(),
    })
}

pub async fn connect(ep: &quinn::Endpoint, addr: SocketAddr, key: [u8; 32]) -> QuicTestClient {
    try_connect(ep, addr, key).await.expect("QUIC connection")
}

impl QuicTestClient {
    /// Sends a command; returns its rid.
    pub async fn send(&mut self, endpoint: &str, body: &[u8]) -> i64 {
        let rid = self.next_rid;
        self.next_rid += 1;
        self.send
            .write_all(&command(rid, endpoint, body))
            .await
            .expect("write");
        rid
    }

    /// The next message (10 s at most).
    pub async fn next(&mut self) -> Option<Msg> {
        if !self.stash.is_empty() {
            return Some(self.stash.remove(0));
        }
        tokio::time::timeout(Duration::from_secs(10), self.incoming.recv())
            .await
            .ok()
            .flatten()
    }

    /// Waits for the answer to `rid`, keeping other messages for later.
    pub async fn answer(&mut self, rid: i64) -> Msg {
        if let Some(i) = self.stash.iter().position(|m| answers(m, rid)) {
            return self.stash.remove(i);
        }
        loop {
            let m = tokio::time::timeout(Duration::from_secs(10), self.incoming.recv())
                .await
                .expect("answer within 10 s")
                .expect("stream open");
            if answers(&m, rid) {
                return m;
            }
            self.stash.push(m);
        }
    }

    /// Sends and waits: `Ok(reply body)` or `Err(error body)`.
    pub async fn call(&mut self, endpoint: &str, body: &[u8]) -> Result<Vec<u8>, Vec<u8>> {
        let rid = self.send(endpoint, body).await;
        match self.answer(rid).await {
            Msg::Reply { body, .. } => Ok(body),
            Msg::Error { body, .. } => Err(body),
            Msg::Command { .. } => unreachable!(),
        }
    }

    /// A JSON RPC call answered `[200, body]`; returns body.
    pub async fn rpc_ok(&mut self, method: &str, params: &serde_json::Value) -> serde_json::Value {
        let body = self
            .call(method, params.to_string().as_bytes())
            .await
            .unwrap_or_else(|e| panic!("{method}: {}", String::from_utf8_lossy(&e)));
        let v: serde_json::Value = serde_json::from_slice(&body).expect("json reply");
        assert_eq!(v[0], 200, "{method}: {v}");
        v[1].clone()
    }

    /// Commands (pushes) received, waiting up to `wait` for the first.
    pub async fn pushes(&mut self, wait: Duration) -> Vec<Msg> {
        let mut out: Vec<Msg> = Vec::new();
        let mut kept = Vec::new();
        for m in self.stash.drain(..) {
            if matches!(m, Msg::Command { .. }) {
                out.push(m);
            } else {
                kept.push(m);
            }
        }
        self.stash = kept;
        if out.is_empty()
            && let Ok(Some(m)) = tokio::time::timeout(wait, self.incoming.recv()).await
        {
            out.push(m);
        }
        while let Ok(m) = self.incoming.try_recv() {
            out.push(m);
        }
        out
    }
}

fn answers(m: &Msg, rid: i64) -> bool {
    matches!(m, Msg::Reply { rid: r, .. } | Msg::Error { rid: r, .. } if *r == rid)
}

/// Parses a bencoded dict of byte strings and ints (a `notify` body) into a map.
pub fn bt_dict(b: &[u8]) -> HashMap<String, Vec<u8>> {
    assert_eq!(b.first(), Some(&b'd'), "a dict");
    let mut pos = 1;
    let mut out = HashMap::new();
    while b[pos] != b'e' {
        let k = String::from_utf8(read_str(b, &mut pos).expect("key")).expect("utf8 key");
        let v = if b[pos] == b'i' {
            read_int(b, &mut pos).expect("int").to_string().into_bytes()
        } else {
            read_str(b, &mut pos).expect("value")
        };
        out.insert(k, v);
    }
    out
}
