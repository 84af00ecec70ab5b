//! Shared helpers for integration tests: data directories, in-process nodes on port 0, an
//! HTTPS client that accepts the nodes' self-signed certificates, and signed requests.
#![allow(dead_code, missing_docs, unreachable_pub)]

use std::path::Path;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::{Signer as _, SigningKey};
use serde_json::{Value, json};
use snode::config::Config;
use snode::keys::NodeKeys;
use snode::node::{KEY_FILE, Node, NodeHandle, NodeOptions};

/// The `snode` binary under test.
pub fn snode_bin() -> std::process::Command {
    std::process::Command::new(env!("CARGO_BIN_EXE_snode"))
}

/// Runs the real `snode init --data-dir dir`; returns what it printed.
pub fn cli_init(dir: &Path) -> String {
    let out = snode_bin()
        .args(["init", "--data-dir"])
        .arg(dir)
        .output()
        .expect("init runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf8")
}

/// Writes keys and a TLS certificate into `dir`, as `snode init` does.
pub fn init_dir(dir: &Path) {
    std::fs::create_dir_all(dir).expect("mkdir");
    let keys = NodeKeys::generate();
    keys.write(&dir.join(KEY_FILE), false).expect("write key");
    snode::tls::ensure_certificate(dir, &keys, false).expect("cert");
}

/// A configuration for tests: loopback, port 0 everywhere.
pub fn test_config() -> Config {
    let mut c = Config::default();
    c.network.bind_ip = "127.0.0.1".parse().expect("ip");
    c.network.https_port = 0;
    c.network.quic_port = 0;
    c.admin.listen = "127.0.0.1:0".parse().expect("addr");
    c.storage.expiry_sweep_interval = Duration::from_millis(200);
    c.network.shutdown_grace = Duration::from_secs(5);
    // Every peer of a test is on 127.0.0.1.
    c.network.allow_private_peers = true;
    c
}

pub async fn spawn_node(dir: &Path, config: Config) -> NodeHandle {
    Node::spawn(NodeOptions::new(dir.to_path_buf(), config))
        .await
        .expect("node starts")
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .timeout(Duration::from_secs(20))
        .build()
        .expect("client")
}

pub fn now_ms() -> i64 {
    snode::clock::wall_clock_ms()
}

/// A Session-style user: Ed25519 key and the `05` Session ID derived from it.
pub struct User {
    pub sk: SigningKey,
    pub session_id: String,
}

impl User {
    pub fn new(seed: u8) -> User {
        let sk = SigningKey::from_bytes(&[seed; 32]);
        let x = snode::keys::ed25519_pk_to_x25519(&sk.verifying_key().to_bytes()).expect("x25519");
        User {
            sk,
            session_id: format!("05{}", hex::encode(x)),
        }
    }

    pub fn ed_hex(&self) -> String {
        hex::encode(self.sk.verifying_key().to_bytes())
    }

    pub fn sign(&self, msg: &str) -> String {
        STANDARD.encode(self.sk.sign(msg.as_bytes()).to_bytes())
    }

    /// Params of an unauthenticated store to namespace 0.
    pub fn store_params(&self, data: &[u8], ttl_ms: i64) -> Value {
        json!({
            "pubkey": self.session_id,
            "timestamp": now_ms(),
            "ttl": ttl_ms,
            "data": STANDARD.encode(data),
        })
    }

    /// Params of a signed retrieve of namespace 0.
    pub fn retrieve_params(&self, last_hash: Option<&str>) -> Value {
        let ts = now_ms();
        let mut p = json!({
            "pubkey": self.session_id,
            "pubkey_ed25519": self.ed_hex(),
            "timestamp": ts,
            "signature": self.sign(&format!("retrieve{ts}")),
        });
        if let Some(h) = last_hash {
            p["last_hash"] = json!(h);
        }
        p
    }
}

/// POSTs a JSON-RPC call to `/storage_rpc/v1`; returns status and body text.
pub async fn rpc(
    client: &reqwest::Client,
    node: &str,
    method: &str,
    params: Value,
) -> (u16, String) {
    let resp = client
        .post(format!("https://{node}/storage_rpc/v1"))
        .json(&json!({"method": method, "params": params}))
        .send()
        .await
        .expect("request");
    let status = resp.status().as_u16();
    (status, resp.text().await.expect("body"))
}

pub async fn rpc_json(client: &reqwest::Client, node: &str, method: &str, params: Value) -> Value {
    let (status, body) = rpc(client, node, method, params).await;
    assert_eq!(status, 200, "{method} failed: {body}");
    serde_json::from_str(&body).expect("json body")
}

/// Every message hash the node returns for `user`, following `more` pages.
pub async fn retrieve_all(
    client: &reqwest::Client,
    node: &str,
    user: &User,
) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut last: Option<String> = None;
    loop {
        let v = rpc_json(
            client,
            node,
            "retrieve",
            user.retrieve_params(last.as_deref()),
        )
        .await;
        let msgs = v["messages"].as_array().expect("messages").clone();
        for m in &msgs {
            let hash = m["hash"].as_str().expect("hash").to_string();
            let data = STANDARD
                .decode(m["data"].as_str().expect("data"))
                .expect("b64");
            out.push((hash, data));
        }
        if !v["more"].as_bool().unwrap_or(false) || msgs.is_empty() {
            return out;
        }
        last = out.last().map(|(h, _)| h.clone());
    }
}

/// How often the wait helpers poll, unless a caller needs gentler polling.
pub const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// The one polling loop of the tests: calls `f` every `every` until it returns `Some` or
/// `timeout` has passed; `None` at the deadline (after one last try).
pub async fn poll_until<T>(
    every: Duration,
    timeout: Duration,
    mut f: impl AsyncFnMut() -> Option<T>,
) -> Option<T> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return Some(v);
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(every).await;
    }
}

/// Polls `f` until it returns `Some`; panics naming `what` when `timeout` passes first.
pub async fn wait_for<T>(what: &str, timeout: Duration, f: impl AsyncFnMut() -> Option<T>) -> T {
    match poll_until(POLL_INTERVAL, timeout, f).await {
        Some(v) => v,
        None => panic!("timed out after {timeout:?} waiting for {what}"),
    }
}

/// `poll_until` for tests without a runtime (blocking `f`, thread sleeps). Outside a runtime
/// tokio's `Instant` is the monotonic clock.
pub fn poll_until_blocking<T>(
    every: Duration,
    timeout: Duration,
    mut f: impl FnMut() -> Option<T>,
) -> Option<T> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(every);
    }
}

/// `wait_for` for tests without a runtime.
pub fn wait_for_blocking<T>(what: &str, timeout: Duration, f: impl FnMut() -> Option<T>) -> T {
    match poll_until_blocking(POLL_INTERVAL, timeout, f) {
        Some(v) => v,
        None => panic!("timed out after {timeout:?} waiting for {what}"),
    }
}

pub mod net;
pub mod quic;

/// What an in-process replica (tests driving `Replicator` directly) starts from: a temporary
/// data directory, the node keys of `seed`, its TLS config and an open store with a cap no
/// test reaches.
pub struct ReplicaParts {
    pub dir: tempfile::TempDir,
    pub keys: std::sync::Arc<NodeKeys>,
    pub tls: std::sync::Arc<rustls::ServerConfig>,
    pub store: snode::store::Store,
}

/// [`ReplicaParts`] for the keys of `seed`.
pub fn replica_parts(seed: u8) -> ReplicaParts {
    let dir = tempfile::tempdir().expect("tempdir");
    let keys = std::sync::Arc::new(NodeKeys::from_seed([seed; 32]));
    let (cert, key) = snode::tls::ensure_certificate(dir.path(), &keys, false).expect("cert");
    let tls = snode::tls::server_config(&cert, &key).expect("tls");
    let store = snode::store::Store::open(
        &dir.path().join("db"),
        snode::store::StoreOptions {
            max_bytes: 1 << 40,
            ..Default::default()
        },
    )
    .expect("store");
    ReplicaParts {
        dir,
        keys,
        tls,
        store,
    }
}
