//! Onion requests on real nodes (storage-server.md section 2): 3-hop requests to a swarm
//! member (aes-gcm and xchacha20), a 421 inside an onion reply, the hop limit, relays that do
//! not know the next node, exits to a local HTTP server, and every error path with its exact
//! status and text, counted in the metrics by outcome.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};
use axum::body::Bytes;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use common::net::TestNet;
use common::*;
use hmac::{Hmac, Mac};
use rand::RngCore;
use rand::rngs::OsRng;
use serde_json::{Value, json};
use sha2::Sha256;
use snode::node::NodeHandle;
use snode::onion::{
    ClientReplyKey, Destination, EncType, HopKeys, NodeOnionKey, build_onion, parse_combined,
};
use snode::swarm::NodeInfo;
use x25519_dalek::{PublicKey, StaticSecret};

fn keys_of(n: &NodeInfo) -> HopKeys {
    HopKeys {
        ed25519: n.pubkey_ed25519,
        x25519: n.pubkey_x25519,
    }
}

fn keys_of_handle(n: &NodeHandle) -> HopKeys {
    HopKeys {
        ed25519: n.pubkey_ed25519(),
        x25519: n.pubkey_x25519(),
    }
}

/// POSTs an onion body to `addr` (`host:port`); status and body bytes.
async fn post_onion(c: &reqwest::Client, addr: &str, body: Vec<u8>) -> (u16, Vec<u8>) {
    let resp = c
        .post(format!("https://{addr}/onion_req/v2"))
        .body(body)
        .send()
        .await
        .expect("request");
    let status = resp.status().as_u16();
    (status, resp.bytes().await.expect("body").to_vec())
}

/// Opens a destination's answer: base64, then the reply key, then `{"status","body"}`.
fn open(key: &ClientReplyKey, body: &[u8]) -> (u16, Value) {
    try_open(key, body).unwrap_or_else(|e| panic!("{e}"))
}

/// `open`, saying what went wrong instead of panicking.
fn try_open(key: &ClientReplyKey, body: &[u8]) -> Result<(u16, Value), String> {
    let b64 = std::str::from_utf8(body).map_err(|_| "reply is not base64 text")?;
    let sealed = STANDARD.decode(b64).map_err(|e| format!("base64: {e}"))?;
    let plain = key
        .decrypt_reply(&sealed)
        .map_err(|e| format!("reply does not decrypt: {e:?}"))?;
    let v: Value = serde_json::from_slice(&plain).map_err(|e| format!("json: {e}"))?;
    let status = v["status"]
        .as_u64()
        .ok_or_else(|| format!("no status: {v}"))? as u16;
    let body = match &v["body"] {
        Value::String(s) => serde_json::from_str(s).unwrap_or_else(|_| json!(s)),
        other => other.clone(),
    };
    Ok((status, body))
}

fn text(body: &[u8]) -> String {
    String::from_utf8_lossy(body).into_owned()
}

/// One aes-gcm layer with arbitrary plaintext (the builder only makes well-formed layers):
/// the entry body and the key of the answer.
fn raw_layer(node_x25519: &[u8; 32], plaintext: &[u8]) -> (Vec<u8>, ClientReplyKey) {
    let eph = StaticSecret::random_from_rng(OsRng);
    let eph_pub = PublicKey::from(&eph).to_bytes();
    let shared = eph.diffie_hellman(&PublicKey::from(*node_x25519));
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(b"LOKI").expect("hmac key");
    mac.update(shared.as_bytes());
    let key = mac.finalize().into_bytes();
    let mut nonce = [0u8; 12];
    OsRng.fill_bytes(&mut nonce);
    let mut ct = nonce.to_vec();
    ct.extend(
        Aes256Gcm::new_from_slice(&key)
            .expect("key")
            .encrypt(Nonce::from_slice(&nonce), plaintext)
            .expect("seal"),
    );
    let json = format!(r#"{{"ephemeral_key":"{}"}}"#, hex::encode(eph_pub));
    let reply = ClientReplyKey::new(&eph.to_bytes(), node_x25519, EncType::AesGcm).expect("key");
    (framed(&ct, json.as_bytes()), reply)
}

fn framed(inner: &[u8], json: &[u8]) -> Vec<u8> {
    let mut out = (inner.len() as u32).to_le_bytes().to_vec();
    out.extend_from_slice(inner);
    out.extend_from_slice(json);
    out
}

/// Rewrites a built entry body with a fake starting `hop_no`.
fn with_hop_no(guard_body: &[u8], hop_no: u32) -> Vec<u8> {
    let c = parse_combined(guard_body).expect("parses");
    let json = format!(
        r#"{{"enc_type":"{}","ephemeral_key":"{}","hop_no":{hop_no}}}"#,
        c.enc_type,
        hex::encode(c.ephemeral_key)
    );
    framed(c.ciphertext, json.as_bytes())
}

fn rpc_payload(method: &str, params: Value) -> Vec<u8> {
    json!({"method": method, "params": params})
        .to_string()
        .into_bytes()
}

fn count(node: &NodeHandle, outcome: &str) -> u64 {
    node.metrics()
        .onion_requests_total
        .with_label_values(&[outcome])
        .get()
}

/// A local "external server" (the role of SOGS or the file server): it peels the layer the
/// exit hop POSTs with its own key and answers `201` with the payload sealed back.
async fn start_server(key: NodeOnionKey) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let key = std::sync::Arc::new(key);
    let app = axum::Router::new().route(
        "/oxen/v4/lsrpc",
        axum::routing::post(move |headers: axum::http::HeaderMap, body: Bytes| {
            let key = key.clone();
            async move {
                assert_eq!(headers["user-agent"], "Oxen Storage Server/2.8.0");
                assert_eq!(headers["content-type"], "application/octet-stream");
                let c = parse_combined(&body).expect("the whole layer is posted");
                let (payload, reply) = key
                    .peel(&c.ephemeral_key, c.enc_type, c.ciphertext)
                    .expect("server peels");
                let mut answer = b"echo:".to_vec();
                answer.extend_from_slice(&payload);
                (
                    axum::http::StatusCode::CREATED,
                    [("content-type", "application/octet-stream")],
                    reply.encrypt(&answer),
                )
            }
        }),
    );
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (addr, task)
}

/// Opens and inspects a reply with the layer's key; `Err` says what is wrong.
type ReplyCheck = dyn Fn(&ClientReplyKey, &[u8]) -> Result<(), String>;

/// What one case's answer must be.
enum Expect {
    /// A plain answer: this HTTP status and text.
    Plain(u16, String),
    /// 200 with the reply sealed (base64) with the layer's key: this inner status and body.
    Sealed(u16, Value),
    /// 200 with a reply that this check opens with the layer's key; `Err` says what is wrong.
    Reply(Box<ReplyCheck>),
    /// This status, whatever the body.
    Status(u16),
    /// This status, unless the node closes the connection while the client still sends (the
    /// metric is then the witness).
    StatusOrClosed(u16),
}

/// `Expect::Reply` with `check`.
fn reply(check: impl Fn(&ClientReplyKey, &[u8]) -> Result<(), String> + 'static) -> Expect {
    Expect::Reply(Box::new(check))
}

/// One request to a one-node network and the answer it must get.
struct Case {
    name: String,
    /// Where it is posted.
    path: &'static str,
    body: Vec<u8>,
    /// The key of the reply, for `Sealed` and `Reply`.
    key: Option<ClientReplyKey>,
    expect: Expect,
    /// The `snode_onion_requests_total` outcome it is counted under.
    outcome: &'static str,
}

impl Case {
    fn new(name: impl Into<String>, outcome: &'static str, body: Vec<u8>, expect: Expect) -> Case {
        Case {
            name: name.into(),
            path: "/onion_req/v2",
            body,
            key: None,
            expect,
            outcome,
        }
    }

    fn with_key(mut self, key: ClientReplyKey) -> Case {
        self.key = Some(key);
        self
    }

    /// Sends it; `Err` says how the answer differs from the expected one.
    async fn run(&self, c: &reqwest::Client, addr: &str) -> Result<(), String> {
        let resp = c
            .post(format!("https://{addr}{}", self.path))
            .body(self.body.clone())
            .send()
            .await;
        let resp = match (resp, &self.expect) {
            (Ok(r), _) => r,
            (Err(_), Expect::StatusOrClosed(_)) => return Ok(()),
            (Err(e), _) => return Err(format!("request failed: {e}")),
        };
        let status = resp.status().as_u16();
        let body = resp
            .bytes()
            .await
            .map_err(|e| format!("body: {e}"))?
            .to_vec();
        let key = || self.key.as_ref().ok_or("the case has no reply key");
        match &self.expect {
            Expect::Plain(want, want_text) => {
                let got = (status, text(&body));
                if got == (*want, want_text.clone()) {
                    Ok(())
                } else {
                    Err(format!("got {got:?}, want {:?}", (want, want_text)))
                }
            }
            Expect::Status(want) | Expect::StatusOrClosed(want) if status == *want => Ok(()),
            Expect::Status(want) | Expect::StatusOrClosed(want) => {
                Err(format!("status {status}, want {want}"))
            }
            _ if status != 200 => Err(format!("status {status}: {}", text(&body))),
            Expect::Sealed(want, want_body) => {
                let got = try_open(key()?, &body)?;
                if got == (*want, want_body.clone()) {
                    Ok(())
                } else {
                    Err(format!("sealed {got:?}, want {:?}", (want, want_body)))
                }
            }
            Expect::Reply(check) => check(key()?, &body),
        }
    }
}

/// `Err(what)` unless `ok`.
fn ensure(ok: bool, what: impl FnOnce() -> String) -> Result<(), String> {
    if ok { Ok(()) } else { Err(what()) }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_node_entry_errors_and_refused_targets() {
    let dir = tempfile::tempdir().expect("tmp");
    init_dir(dir.path());
    let node = spawn_node(dir.path(), test_config()).await;
    let addr = node.https_addr().to_string();
    let me = keys_of_handle(&node);
    let c = client();
    let mut cases = Vec::new();

    // A well-formed request with no hop: the node is the destination.
    let built = build_onion(
        &[],
        &Destination::Node(me),
        &rpc_payload("info", json!({})),
        EncType::AesGcm,
    )
    .expect("builds");
    cases.push(
        Case::new(
            "info with no hop",
            "final",
            built.guard_body,
            reply(move |key, body| {
                let (inner, v) = try_open(key, body)?;
                ensure((inner, &v["version"]) == (200, &json!([2, 8, 0])), || {
                    format!("{inner} {v}")
                })
            }),
        )
        .with_key(built.reply_key),
    );

    // The final layer's flags: `json: true` embeds the JSON answer as an object,
    // `base64: false` returns the sealed bytes raw.
    let (body, key) = raw_layer(
        &me.x25519,
        &framed(
            &rpc_payload("info", json!({})),
            br#"{"headers":"","json":true}"#,
        ),
    );
    cases.push(
        Case::new(
            "json: true embeds the answer as an object",
            "final",
            body,
            reply(move |key, body| {
                let sealed = STANDARD.decode(body).map_err(|e| format!("base64: {e}"))?;
                let plain = key.decrypt_reply(&sealed).map_err(|e| format!("{e:?}"))?;
                let v: Value = serde_json::from_slice(&plain).map_err(|e| format!("json: {e}"))?;
                ensure(v["body"].is_object(), || format!("{v}"))?;
                ensure(v["body"]["version"] == json!([2, 8, 0]), || format!("{v}"))
            }),
        )
        .with_key(key),
    );
    let (body, key) = raw_layer(
        &me.x25519,
        &framed(
            &rpc_payload("info", json!({})),
            br#"{"headers":{},"base64":false}"#,
        ),
    );
    cases.push(
        Case::new(
            "base64: false returns the sealed bytes raw",
            "final",
            body,
            reply(move |key, body| {
                let plain = key
                    .decrypt_reply(body)
                    .map_err(|e| format!("raw bytes: {e:?}"))?;
                let v: Value = serde_json::from_slice(&plain).map_err(|e| format!("json: {e}"))?;
                ensure(v["body"].is_string(), || format!("{v}"))
            }),
        )
        .with_key(key),
    );
    // Binary RPC answers are base64'd inside the reply (upstream PR #513).
    let (body, key) = raw_layer(
        &me.x25519,
        &framed(
            &rpc_payload("active_nodes_bin", json!({})),
            br#"{"headers":""}"#,
        ),
    );
    cases.push(
        Case::new(
            "a binary answer is base64'd inside the reply",
            "final",
            body,
            reply(move |key, body| {
                let (inner, v) = try_open(key, body)?;
                ensure(inner == 200, || format!("{inner} {v}"))?;
                let bin = STANDARD
                    .decode(v.as_str().ok_or("not a base64 string")?)
                    .map_err(|e| format!("base64: {e}"))?;
                ensure(bin.len() == 51, || format!("{} bytes", bin.len()))?;
                ensure(bin[..32] == me.ed25519, || "not our pubkey first".into())
            }),
        )
        .with_key(key),
    );

    // Framing errors: plain 400 with the parser's reason.
    for (bad, why) in [
        (b"\x01\0".to_vec(), "body too short"),
        (
            b"\x09\0\0\0abc{}".to_vec(),
            "ciphertext length exceeds body size",
        ),
        (framed(b"ct", b"not json"), "invalid json"),
        (framed(b"ct", b"{}"), "missing ephemeral_key"),
        (
            framed(b"ct", br#"{"ephemeral_key":"abcd"}"#),
            "invalid ephemeral_key",
        ),
        (
            framed(
                b"ct",
                format!(
                    r#"{{"ephemeral_key":"{}","enc_type":"rot13"}}"#,
                    "11".repeat(32)
                )
                .as_bytes(),
            ),
            "unknown enc_type",
        ),
    ] {
        cases.push(Case::new(
            format!("framing: {why}"),
            "parse_error",
            bad,
            Expect::Plain(400, format!("Error parsing onion request: {why}")),
        ));
    }

    // Ciphertext that does not open: plain 400 `Invalid ciphertext`.
    let (mut body, _) = raw_layer(&me.x25519, b"\x02\0\0\0hi{\"headers\":\"\"}");
    body[10] ^= 0x40;
    cases.push(Case::new(
        "ciphertext that does not open",
        "bad_ciphertext",
        body,
        Expect::Plain(400, "Invalid ciphertext".into()),
    ));

    // A decrypted layer without valid routing: 200, encrypted with that layer's key.
    for (what, plain) in [
        ("not json", b"\x02\0\0\0hi{not json".to_vec()),
        ("frame longer than the layer", b"\x09\0\0\0hi{}".to_vec()),
        (
            "destination not a key",
            framed(b"x", br#"{"destination":"abcd","ephemeral_key":"00"}"#),
        ),
    ] {
        let (body, key) = raw_layer(&me.x25519, &plain);
        cases.push(
            Case::new(
                format!("routing: {what}"),
                "invalid_json",
                body,
                Expect::Sealed(400, json!("Invalid json")),
            )
            .with_key(key),
        );
    }

    // Exit targets outside /loki|oxen/…/lsrpc: encrypted 400 `Invalid url`. The hosts are
    // loopback, which this node refuses as an exit target: were the URL check broken, the
    // address check would still stop the request before it left the machine.
    for route in [
        json!({"host": "127.0.0.1", "target": "/not_loki/v3/lsrpc"}),
        json!({"host": "127.0.0.1", "target": "/loki/v3/lsrpc?x=1"}),
        json!({"host": "127.0.0.1", "target": "/oxen/v4/lsrpc", "protocol": "ftp"}),
        json!({"host": "a@127.0.0.1", "target": "/oxen/v4/lsrpc"}),
        // Normalised before the check: dot segments cannot climb out of /oxen/ (issue 8).
        json!({"host": "127.0.0.1", "target": "/oxen/../x/lsrpc"}),
        json!({"host": "127.0.0.1", "target": "/oxen/%2e%2e/x/lsrpc"}),
    ] {
        let (body, key) = raw_layer(&me.x25519, &framed(b"x", route.to_string().as_bytes()));
        cases.push(
            Case::new(
                format!("exit target {route}"),
                "invalid_url",
                body,
                Expect::Sealed(400, json!("Invalid url")),
            )
            .with_key(key),
        );
    }

    // Private and local targets are refused by default, literal or by name, before any
    // connection is attempted (the local server is never reached).
    let (server_addr, server) =
        start_server(NodeOnionKey::from_secret(&[5; 32]).expect("key")).await;
    let server_x = *NodeOnionKey::from_secret(&[5; 32])
        .expect("key")
        .public_key();
    for host in [
        "127.0.0.1",
        "localhost",
        "10.1.2.3",
        "::1",
        "169.254.169.254",
    ] {
        let dest = Destination::Server {
            host: host.into(),
            target: "/oxen/v4/lsrpc".into(),
            port: server_addr.port(),
            protocol: "http".into(),
            x25519: server_x,
        };
        let built = build_onion(&[me], &dest, b"hello", EncType::AesGcm).expect("builds");
        cases.push(Case::new(
            format!("private target {host}"),
            "target_refused",
            built.guard_body,
            Expect::Plain(
                502,
                "Destination not allowed: private or local address".into(),
            ),
        ));
    }

    // A next node nobody lists: plain 502 naming it.
    let stranger = HopKeys {
        ed25519: [0x5a; 32],
        x25519: me.x25519,
    };
    let built =
        build_onion(&[me], &Destination::Node(stranger), b"{}", EncType::AesGcm).expect("builds");
    cases.push(Case::new(
        "a next node nobody lists",
        "next_node_not_found",
        built.guard_body,
        Expect::Plain(502, format!("Next node not found: {}", "5a".repeat(32))),
    ));

    // Over 10 MiB: 413 (the node may close the connection while the client still sends).
    cases.push(Case::new(
        "a body over 10 MiB",
        "too_large",
        vec![0u8; 10 * 1024 * 1024 + 1],
        Expect::StatusOrClosed(413),
    ));

    // The node-to-node hop refuses senders that are not listed nodes.
    cases.push(Case {
        path: "/snode/v1/onion",
        ..Case::new(
            "a hop request from an unlisted sender",
            "unauthenticated",
            b"d4:data0:e".to_vec(),
            Expect::Status(401),
        )
    });

    let mut failures = Vec::new();
    for case in &cases {
        if let Err(e) = case.run(&c, &addr).await {
            failures.push(format!("case {}: {e}", case.name));
        }
    }
    server.abort();
    assert!(failures.is_empty(), "failed:\n{}", failures.join("\n"));

    // Every outcome was counted, once per case (the 413 perhaps after its connection closed).
    wait_for("the 413 to be counted", Duration::from_secs(10), || async {
        (count(&node, "too_large") == 1).then_some(())
    })
    .await;
    let mut outcomes = std::collections::BTreeMap::new();
    for case in &cases {
        *outcomes.entry(case.outcome).or_insert(0) += 1;
    }
    for (outcome, n) in &outcomes {
        assert_eq!(count(&node, outcome), *n, "{outcome}");
    }
    let total = cases.len();
    let text = reqwest::get(format!("http://{}/metrics", node.admin_addr()))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(
        text.contains(r#"snode_onion_requests_total{outcome="invalid_url"} 6"#),
        "{text}"
    );
    assert!(
        text.contains(&format!("snode_onion_duration_seconds_count {total}")),
        "{text}"
    );
    node.shutdown().await;
}

fn allow_private(c: &mut snode::config::Config) {
    c.onion.allow_private_targets = true;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_hop_requests_through_a_two_swarm_network() {
    // 14 nodes: the directory splits them into two swarms of 7, so a node can be asked about
    // an account it does not own.
    let net = TestNet::start_with(14, allow_private).await;
    net.wait_converged().await;
    let view = net.directory_view().await;
    assert!(view.swarm_ids().count() >= 2, "two swarms expected");
    let c = client();
    let node_info = |i: usize| view.node(&net.members[i].pubkey).expect("listed").clone();

    let alice = User::new(71);
    let owners = net.owners(&alice.session_id).await;
    let dest_i = owners[0];
    let dest = node_info(dest_i);
    let others: Vec<usize> = (0..14).filter(|i| !owners.contains(i)).collect();
    let path_i = [others[0], others[1], owners[1]];
    let path: Vec<HopKeys> = path_i.iter().map(|&i| keys_of(&node_info(i))).collect();
    let guard_addr = net.addr(path_i[0]);

    // Store and retrieve through 3 hops, with both ciphers.
    let mut hashes = Vec::new();
    for (n, enc_type) in [EncType::AesGcm, EncType::XChaCha20]
        .into_iter()
        .enumerate()
    {
        let data = format!("via onion {n}");
        let built = build_onion(
            &path,
            &Destination::Node(keys_of(&dest)),
            &rpc_payload("store", alice.store_params(data.as_bytes(), 600_000)),
            enc_type,
        )
        .expect("builds");
        let (status, body) = post_onion(&c, &guard_addr, built.guard_body).await;
        assert_eq!(status, 200, "{enc_type}: {}", text(&body));
        let (inner, v) = open(&built.reply_key, &body);
        assert_eq!(inner, 200, "{enc_type}: {v}");
        let hash = v["hash"].as_str().expect("hash").to_string();
        assert!(
            v["swarm"][hex::encode(dest.pubkey_ed25519)]["signature"].is_string(),
            "{v}"
        );
        hashes.push((hash, data));

        let built = build_onion(
            &path,
            &Destination::Node(keys_of(&dest)),
            &rpc_payload("retrieve", alice.retrieve_params(None)),
            enc_type,
        )
        .expect("builds");
        let (status, body) = post_onion(&c, &guard_addr, built.guard_body).await;
        assert_eq!(status, 200);
        let (inner, v) = open(&built.reply_key, &body);
        assert_eq!(inner, 200, "{v}");
        let got: Vec<(String, Vec<u8>)> = v["messages"]
            .as_array()
            .expect("messages")
            .iter()
            .map(|m| {
                (
                    m["hash"].as_str().expect("hash").to_string(),
                    STANDARD
                        .decode(m["data"].as_str().expect("data"))
                        .expect("b64"),
                )
            })
            .collect();
        for (h, d) in &hashes {
            assert!(got.contains(&(h.clone(), d.as_bytes().to_vec())), "{v}");
        }
    }
    assert_eq!(count(net.node(path_i[0]), "relayed"), 4);
    assert_eq!(count(net.node(path_i[2]), "relayed"), 4);
    assert_eq!(count(net.node(dest_i), "final"), 4);

    // A node that does not own the account answers 421 inside the encrypted reply, with the
    // owning swarm.
    let wrong = node_info(others[2]);
    let built = build_onion(
        &path[..2],
        &Destination::Node(keys_of(&wrong)),
        &rpc_payload("retrieve", alice.retrieve_params(None)),
        EncType::AesGcm,
    )
    .expect("builds");
    let (status, body) = post_onion(&c, &guard_addr, built.guard_body).await;
    assert_eq!(status, 200, "{}", text(&body));
    let (inner, v) = open(&built.reply_key, &body);
    assert_eq!(inner, 421, "{v}");
    let mut listed: Vec<String> = v["snodes"]
        .as_array()
        .expect("snodes")
        .iter()
        .map(|n| n["pubkey_ed25519"].as_str().expect("key").to_string())
        .collect();
    listed.sort();
    let mut want: Vec<String> = owners
        .iter()
        .map(|&i| hex::encode(net.members[i].pubkey))
        .collect();
    want.sort();
    assert_eq!(listed, want);

    // The hop limit: a client may fake a starting hop_no; the hop that would be the 16th
    // refuses, and its plain answer comes back through the relay unchanged.
    let built = build_onion(
        &path,
        &Destination::Node(keys_of(&dest)),
        &rpc_payload("info", json!({})),
        EncType::AesGcm,
    )
    .expect("builds");
    let (status, body) = post_onion(&c, &guard_addr, with_hop_no(&built.guard_body, 15)).await;
    assert_eq!(
        (status, text(&body)),
        (400, "onion request max path length exceeded".into())
    );
    assert_eq!(count(net.node(path_i[1]), "max_hops"), 1);
    let (status, body) = post_onion(&c, &guard_addr, with_hop_no(&built.guard_body, 12)).await;
    assert_eq!(status, 200, "{}", text(&body));
    assert_eq!(open(&built.reply_key, &body).0, 200);

    // A relay in the middle that does not know the next node: 502 naming it, passed back.
    let stranger = HopKeys {
        ed25519: [0x77; 32],
        x25519: dest.pubkey_x25519,
    };
    let built = build_onion(
        &path[..2],
        &Destination::Node(stranger),
        b"{}",
        EncType::AesGcm,
    )
    .expect("builds");
    let (status, body) = post_onion(&c, &guard_addr, built.guard_body).await;
    assert_eq!(
        (status, text(&body)),
        (502, format!("Next node not found: {}", "77".repeat(32)))
    );
    assert_eq!(count(net.node(path_i[1]), "next_node_not_found"), 1);

    // An exit to a local server (allowed on this network): the server gets the whole layer,
    // and its status and sealed answer come back verbatim through three hops.
    let server_key = NodeOnionKey::from_secret(&[9; 32]).expect("key");
    let server_x = *server_key.public_key();
    let (server_addr, server) = start_server(server_key).await;
    let dest = Destination::Server {
        host: "127.0.0.1".into(),
        target: "/oxen/v4/lsrpc".into(),
        port: server_addr.port(),
        protocol: "http".into(),
        x25519: server_x,
    };
    let built = build_onion(&path, &dest, b"l5:helloe", EncType::XChaCha20).expect("builds");
    let (status, body) = post_onion(&c, &guard_addr, built.guard_body).await;
    assert_eq!(status, 201, "{}", text(&body));
    assert_eq!(
        built
            .reply_key
            .decrypt_reply(&body)
            .expect("server's answer opens"),
        b"echo:l5:helloe"
    );
    assert_eq!(count(net.node(path_i[2]), "proxied"), 1);
    server.abort();

    // Nothing listens on a closed port: 502 with the transport error, through the relays.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let dest = Destination::Server {
        host: "127.0.0.1".into(),
        target: "/oxen/v4/lsrpc".into(),
        port: closed,
        protocol: "http".into(),
        x25519: server_x,
    };
    let built = build_onion(&path, &dest, b"x", EncType::AesGcm).expect("builds");
    let (status, body) = post_onion(&c, &guard_addr, built.guard_body).await;
    assert_eq!(status, 502, "{}", text(&body));
    assert!(!body.is_empty());
    assert_eq!(count(net.node(path_i[2]), "proxy_error"), 1);

    tokio::time::timeout(Duration::from_secs(60), net.shutdown())
        .await
        .expect("network stops");
}
