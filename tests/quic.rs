//! The QUIC transport against real nodes, with a client written from quic.md alone
//! (`common::quic`): every client RPC method, `snode_ping`, pipelined requests answered by id,
//! `monitor` + `notify`, onion requests relayed through 3 nodes, framing errors, the wrong
//! server key, and the listener's limits.

mod common;

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use common::quic::{Msg, bt_dict, connect, endpoint, try_connect};
use common::{User, client, init_dir, now_ms, rpc_json, spawn_node, test_config};
use ed25519_dalek::Signer as _;
use serde_json::{Value, json};

fn monitor_body(user: &User, namespaces: &[i16], want_data: bool, t: i64) -> Vec<u8> {
    let account = user.session_id.clone();
    let ns: Vec<String> = namespaces.iter().map(i16::to_string).collect();
    let msg = format!(
        "MONITOR{account}{t}{}{}",
        if want_data { 1 } else { 0 },
        ns.join(",")
    );
    let sig = user.sk.sign(msg.as_bytes()).to_bytes();
    let mut b = b"d1:P32:".to_vec();
    b.extend_from_slice(&user.sk.verifying_key().to_bytes());
    b.extend_from_slice(format!("1:di{}e1:nl", u8::from(want_data)).as_bytes());
    for n in namespaces {
        b.extend_from_slice(format!("i{n}e").as_bytes());
    }
    b.extend_from_slice(b"e1:s64:");
    b.extend_from_slice(&sig);
    b.extend_from_slice(format!("1:ti{t}ee").as_bytes());
    b
}

/// A node on port 0 in a fresh directory, configured by `tweak`.
async fn node_with(
    tweak: impl FnOnce(&mut snode::config::Config),
) -> (tempfile::TempDir, snode::node::NodeHandle) {
    let tmp = tempfile::tempdir().expect("tmp");
    init_dir(tmp.path());
    let mut cfg = test_config();
    tweak(&mut cfg);
    let node = spawn_node(tmp.path(), cfg).await;
    (tmp, node)
}

/// A node's Prometheus text.
async fn metrics_of(node: &snode::node::NodeHandle) -> String {
    reqwest::get(format!("http://{}/metrics", node.admin_addr()))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_client_method_over_quic() {
    let (_tmp, node) = node_with(|_| {}).await;
    let ep = endpoint();
    let mut q = connect(&ep, node.quic_addr(), node.pubkey_ed25519()).await;

    assert_eq!(q.call("snode_ping", b"").await, Ok(b"pong".to_vec()));
    let info = q.rpc_ok("info", &json!({})).await;
    assert!(info["version"].is_array(), "{info}");
    // An empty body is `{}`, as the original reads zero data parts.
    let v: Value = serde_json::from_slice(&q.call("info", b"").await.expect("info")).expect("json");
    assert_eq!(v[0], 200);

    let alice = User::new(11);
    let stored = q
        .rpc_ok("store", &alice.store_params(b"over quic", 600_000))
        .await;
    let hash = stored["hash"].as_str().expect("hash").to_string();
    let got = q.rpc_ok("retrieve", &alice.retrieve_params(None)).await;
    assert_eq!(got["messages"][0]["hash"], json!(hash));
    assert_eq!(
        got["messages"][0]["data"],
        json!(STANDARD.encode(b"over quic"))
    );

    let swarm = q
        .rpc_ok("get_swarm", &json!({"pubkey": alice.session_id}))
        .await;
    assert_eq!(swarm["snodes"].as_array().expect("snodes").len(), 1);
    let alias = q
        .rpc_ok(
            "get_snodes_for_pubkey",
            &json!({"pubkey": alice.session_id}),
        )
        .await;
    assert_eq!(alias["snodes"], swarm["snodes"]);
    // The node lists its own QUIC port as port_quic / port_omq.
    assert_eq!(
        swarm["snodes"][0]["port_quic"],
        json!(node.quic_addr().port())
    );

    let ts = now_ms();
    let get_exp = q
        .rpc_ok(
            "get_expiries",
            &json!({
                "pubkey": alice.session_id, "pubkey_ed25519": alice.ed_hex(),
                "messages": [hash], "timestamp": ts,
                "signature": alice.sign(&format!("get_expiries{ts}{hash}")),
            }),
        )
        .await;
    assert!(get_exp["expiries"][&hash].is_i64(), "{get_exp}");

    let expiry = now_ms() + 300_000;
    let exp = q
        .rpc_ok(
            "expire",
            &json!({
                "pubkey": alice.session_id, "pubkey_ed25519": alice.ed_hex(),
                "messages": [hash], "expiry": expiry, "shorten": true,
                "signature": alice.sign(&format!("expireshorten{expiry}{hash}")),
            }),
        )
        .await;
    assert!(exp["swarm"].is_object(), "{exp}");

    let ts = now_ms();
    let revoked = q
        .rpc_ok(
            "revoked_subaccounts",
            &json!({
                "pubkey": alice.session_id, "pubkey_ed25519": alice.ed_hex(),
                "timestamp": ts, "signature": alice.sign(&format!("revoked_subaccounts{ts}")),
            }),
        )
        .await;
    assert_eq!(revoked["revoked_subaccounts"], json!([]), "{revoked}");

    let del = q
        .rpc_ok(
            "delete",
            &json!({
                "pubkey": alice.session_id, "pubkey_ed25519": alice.ed_hex(),
                "messages": [hash], "signature": alice.sign(&format!("delete{hash}")),
            }),
        )
        .await;
    assert!(del["swarm"].is_object(), "{del}");
    for (method, sig_of) in [
        ("delete_all", "delete_all"),
        ("expire_all", "expire_all"),
        ("delete_before", "delete_before"),
    ] {
        let t = now_ms();
        let (field, value) = match method {
            "delete_all" => ("timestamp", t),
            "expire_all" => ("expiry", t + 60_000),
            _ => ("before", t),
        };
        let v = q
            .rpc_ok(
                method,
                &json!({
                    "pubkey": alice.session_id, "pubkey_ed25519": alice.ed_hex(),
                    field: value, "timestamp": t, "namespace": "all",
                    "signature": alice.sign(&format!("{sig_of}all{value}")),
                }),
            )
            .await;
        assert!(v["swarm"].is_object(), "{method}: {v}");
    }

    let nodes = q
        .rpc_ok(
            "oxend_request",
            &json!({"endpoint": "get_service_nodes", "params": {"active_only": true}}),
        )
        .await;
    assert!(nodes["result"]["service_node_states"].is_array(), "{nodes}");
    let bin = q
        .call("active_nodes_bin", b"{}")
        .await
        .expect("active_nodes_bin");
    assert_eq!(bin.len() % 51, 0, "records of 51 bytes");

    let batch = q
        .rpc_ok(
            "batch",
            &json!({"requests": [{"method": "info", "params": {}}, {"method": "get_swarm", "params": {"pubkey": alice.session_id}}]}),
        )
        .await;
    assert_eq!(batch["results"][0]["code"], 200, "{batch}");
    let seq = q
        .rpc_ok(
            "sequence",
            &json!({"requests": [{"method": "info", "params": {}}]}),
        )
        .await;
    assert_eq!(seq["results"][0]["code"], 200, "{seq}");
    let ifelse = q
        .rpc_ok(
            "ifelse",
            &json!({"if": {"v_at_least": [2, 0, 0]}, "then": {"method": "info", "params": {}}, "else": {"method": "get_swarm", "params": {}}}),
        )
        .await;
    assert_eq!(ifelse["condition"], json!(true), "{ifelse}");

    // A bt-dict body gets a bt-list answer; raw byte fields stand for their encodings.
    let bt = q.call("info", b"de").await.expect("bt info");
    assert!(
        bt.starts_with(b"li200ed"),
        "{}",
        String::from_utf8_lossy(&bt)
    );
    let mut store_bt = b"d4:data5:hello6:pubkey33:".to_vec();
    store_bt.extend_from_slice(&hex::decode(&alice.session_id).expect("hex"));
    store_bt.extend_from_slice(format!("9:timestampi{}e3:ttli600000ee", now_ms()).as_bytes());
    let bt = q.call("store", &store_bt).await.expect("bt store");
    assert!(
        bt.starts_with(b"li200ed"),
        "{}",
        String::from_utf8_lossy(&bt)
    );
    assert!(
        bt.windows(4).any(|w| w == b"hash"),
        "{}",
        String::from_utf8_lossy(&bt)
    );

    // Errors: the original's "<code> <reason>\n\n<body>", and libquic's unknown endpoint.
    let unsigned = json!({"pubkey": alice.session_id});
    assert_eq!(
        String::from_utf8(
            q.call("retrieve", unsigned.to_string().as_bytes())
                .await
                .expect_err("401")
        )
        .expect("utf8"),
        "401 Unauthorized\n\nretrieve: request signature required"
    );
    assert_eq!(
        q.call("no_such_ep", b"{}").await,
        Err(b"Invalid endpoint 'no_such_ep'".to_vec())
    );
    let bad = q.call("info", b"{nope").await.expect_err("400");
    assert!(
        bad.starts_with(b"400 Bad Request\n\ninvalid request: "),
        "{}",
        String::from_utf8_lossy(&bad)
    );
    let misdirected = q
        .call("store", b"{\"pubkey\":\"05\"}")
        .await
        .expect_err("400");
    assert!(
        misdirected.starts_with(b"400 Bad Request\n\n"),
        "{}",
        String::from_utf8_lossy(&misdirected)
    );
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_requests_are_each_answered_once_by_id() {
    let (_tmp, node) = node_with(|_| {}).await;
    let ep = endpoint();
    let mut q = connect(&ep, node.quic_addr(), node.pubkey_ed25519()).await;
    let bob = User::new(12);
    // 40 commands written before reading anything: stores, retrieves, pings, one unknown.
    let mut expect = std::collections::HashMap::new();
    for i in 0..40 {
        let (ep_name, body) = match i % 4 {
            0 => (
                "store",
                bob.store_params(format!("m{i}").as_bytes(), 600_000)
                    .to_string(),
            ),
            1 => ("retrieve", bob.retrieve_params(None).to_string()),
            2 => ("snode_ping", String::new()),
            _ => ("nope", String::new()),
        };
        let rid = q.send(ep_name, body.as_bytes()).await;
        expect.insert(rid, ep_name);
    }
    let mut seen = std::collections::HashSet::new();
    while seen.len() < 40 {
        let m = q.next().await.expect("an answer");
        let (rid, ok) = match m {
            Msg::Reply { rid, .. } => (rid, true),
            Msg::Error { rid, .. } => (rid, false),
            Msg::Command { .. } => panic!("no pushes expected"),
        };
        assert!(seen.insert(rid), "rid {rid} answered twice");
        assert_eq!(ok, expect[&rid] != "nope", "rid {rid}");
    }
    // Nothing more comes.
    assert!(q.pushes(Duration::from_millis(300)).await.is_empty());
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn monitor_pushes_each_new_message_once() {
    let (_tmp, node) = node_with(|_| {}).await;
    let ep = endpoint();
    let mut sub = connect(&ep, node.quic_addr(), node.pubkey_ed25519()).await;
    let carol = User::new(13);
    let t = now_ms() / 1000;
    assert_eq!(
        sub.call("monitor", &monitor_body(&carol, &[0], true, t))
            .await,
        Ok(b"d7:successi1ee".to_vec())
    );
    // A store from another client, over HTTPS.
    let c = client();
    let addr = node.https_addr().to_string();
    let stored = rpc_json(&c, &addr, "store", carol.store_params(b"push me", 600_000)).await;
    let hash = stored["hash"].as_str().expect("hash");
    let pushes = sub.pushes(Duration::from_secs(10)).await;
    assert_eq!(pushes.len(), 1, "{pushes:?}");
    let Msg::Command {
        rid,
        endpoint,
        body,
    } = &pushes[0]
    else {
        panic!("a command")
    };
    assert_eq!(endpoint, b"notify");
    assert_eq!(*rid, 0, "the node's own command ids start at 0");
    let d = bt_dict(body);
    assert_eq!(d["@"], hex::decode(&carol.session_id).expect("hex"));
    assert_eq!(d["h"], hash.as_bytes());
    assert_eq!(d["n"], b"0");
    assert_eq!(d["~"], b"push me");
    assert!(d.contains_key("t") && d.contains_key("z"));
    // The same message again is a duplicate: no push. Another namespace: none either.
    rpc_json(&c, &addr, "store", carol.store_params(b"push me", 600_000)).await;
    assert!(sub.pushes(Duration::from_millis(500)).await.is_empty());

    // Refusals are R answers with the original's codes.
    let mut both = b"d1:P32:".to_vec();
    both.extend_from_slice(&[1; 32]);
    both.extend_from_slice(b"1:p33:");
    both.extend_from_slice(&[3; 33]);
    both.extend_from_slice(b"e");
    let r = sub.call("monitor", &both).await.expect("R");
    assert_eq!(r, b"d7:errcodei1e5:error29:Cannot provide both p= and P=e");
    let mut forged = monitor_body(&carol, &[0], false, t);
    let n = forged.len();
    forged[n - 20] ^= 1; // inside the signature
    let r = sub.call("monitor", &forged).await.expect("R");
    assert!(
        r.starts_with(b"d7:errcodei5e"),
        "{}",
        String::from_utf8_lossy(&r)
    );
    let r = sub
        .call(
            "monitor",
            &monitor_body(&carol, &[0], false, t - 15 * 86_400),
        )
        .await
        .expect("R");
    assert!(
        r.starts_with(b"d7:errcodei4e"),
        "{}",
        String::from_utf8_lossy(&r)
    );
    let r = sub.call("monitor", b"i5e").await.expect("R");
    assert_eq!(
        r,
        b"d7:errcodei1e5:error81:Invalid arguments: monitor request takes a single bencoded dict or list parametere"
    );
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_framing_resets_only_that_stream() {
    let (_tmp, node) = node_with(|_| {}).await;
    let ep = endpoint();
    for garbage in [&b"x:"[..], b"0:", b"10000001:", b"5:i42ee", b"8:l1:Ci0ee"] {
        let mut q = connect(&ep, node.quic_addr(), node.pubkey_ed25519()).await;
        q.send.write_all(garbage).await.expect("write");
        let closed = common::wait_for("stream reset", Duration::from_secs(10), || {
            let r = *q.reset.lock().expect("lock");
            async move { r }
        })
        .await;
        assert_eq!(closed, 777_000_105, "{}", String::from_utf8_lossy(garbage));
    }
    // Everyone else is still served.
    let mut q = connect(&ep, node.quic_addr(), node.pubkey_ed25519()).await;
    assert_eq!(q.call("snode_ping", b"").await, Ok(b"pong".to_vec()));
    let text = metrics_of(&node).await;
    assert!(text.contains("snode_quic_stream_errors_total 5"), "{text}");
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_refuses_a_node_with_another_key() {
    let (_tmp, node) = node_with(|_| {}).await;
    let ep = endpoint();
    let mut wrong = node.pubkey_ed25519();
    wrong[0] ^= 1;
    assert!(try_connect(&ep, node.quic_addr(), wrong).await.is_err());
    // And snode's own client refuses it too.
    let keys = std::sync::Arc::new(snode::keys::NodeKeys::generate());
    let own = snode::quic::endpoint::client("127.0.0.1".parse().expect("ip")).expect("endpoint");
    let r = snode::quic::client::connect(
        &own,
        keys.clone(),
        node.quic_addr(),
        wrong,
        Duration::from_secs(5),
    )
    .await;
    assert!(r.is_err());
    let ok = snode::quic::client::connect(
        &own,
        keys,
        node.quic_addr(),
        node.pubkey_ed25519(),
        Duration::from_secs(5),
    )
    .await
    .expect("right key");
    let pong = ok
        .request("snode_ping", b"", Duration::from_secs(5))
        .await
        .expect("pong");
    assert_eq!(pong, snode::quic::client::Answer::Reply(b"pong".to_vec()));
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_listener_bounds_connections_idle_time_and_subscriptions() {
    let (_tmp, node) = node_with(|c| {
        c.quic.max_connections_per_ip = 2;
        c.quic.idle_timeout = Duration::from_secs(1);
        c.quic.max_subscriptions_per_connection = 1;
    })
    .await;
    let ep = endpoint();
    let mut a = connect(&ep, node.quic_addr(), node.pubkey_ed25519()).await;
    let b = connect(&ep, node.quic_addr(), node.pubkey_ed25519()).await;
    // A third connection from the same IP is refused before its handshake.
    assert!(
        try_connect(&ep, node.quic_addr(), node.pubkey_ed25519())
            .await
            .is_err()
    );
    // One subscription per connection: a second account is refused, the first renewed.
    let t = now_ms() / 1000;
    let dave = User::new(14);
    let erin = User::new(15);
    assert_eq!(
        a.call("monitor", &monitor_body(&dave, &[0], false, t))
            .await,
        Ok(b"d7:successi1ee".to_vec())
    );
    let r = a
        .call("monitor", &monitor_body(&erin, &[0], false, t))
        .await
        .expect("R");
    assert!(
        r.starts_with(b"d7:errcodei1e"),
        "{}",
        String::from_utf8_lossy(&r)
    );
    assert_eq!(
        a.call("monitor", &monitor_body(&dave, &[0, 1], false, t))
            .await,
        Ok(b"d7:successi1ee".to_vec())
    );
    // Only the first stream is the request stream: a second one is refused at once.
    let (mut extra_send, _extra_recv) = b.conn.open_bi().await.expect("a second stream");
    let refused = wait_for_write_refusal(&mut extra_send).await;
    assert!(refused, "the node stops a second stream");
    // An idle connection (this client pings every 10 s, beyond the node's 1 s idle timeout)
    // is closed by the node.
    drop(a);
    common::wait_for("idle connection closed", Duration::from_secs(10), || {
        let closed = b.conn.close_reason().is_some();
        async move { closed.then_some(()) }
    })
    .await;
    // Closed connections free their slots.
    common::wait_for("slots freed", Duration::from_secs(10), || async {
        try_connect(&ep, node.quic_addr(), node.pubkey_ed25519())
            .await
            .ok()
            .map(|_| ())
    })
    .await;
    node.shutdown().await;
}

/// Writes to `send` until the peer stops the stream (true) or 10 s pass (false).
async fn wait_for_write_refusal(send: &mut quinn::SendStream) -> bool {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while tokio::time::Instant::now() < deadline {
        if send.write_all(b"18:l1:Ci0e4:info2:{}e").await.is_err() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_rpc_over_quic_is_rate_limited_per_ip_like_https() {
    let (_tmp, node) = node_with(|c| {
        c.rate_limit.burst = 3;
        c.rate_limit.per_second = 1;
    })
    .await;
    let ep = endpoint();
    let mut q = connect(&ep, node.quic_addr(), node.pubkey_ed25519()).await;
    let mut refused = None;
    for _ in 0..10 {
        if let Err(e) = q.call("info", b"{}").await {
            refused = Some(e);
            break;
        }
    }
    assert_eq!(
        refused.as_deref(),
        Some(&b"429 Too Many Requests\n\nToo many requests, try again later"[..])
    );
    // Pings and onion requests are not client RPCs: not limited (as the original).
    assert_eq!(q.call("snode_ping", b"").await, Ok(b"pong".to_vec()));
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn onion_requests_relay_through_three_nodes_over_quic() {
    use common::net::TestNet;
    use snode::onion::{Destination, EncType, HopKeys, build_onion};
    let net = TestNet::start(4).await;
    net.wait_converged().await;
    let view = net.directory_view().await;
    let keys = |i: usize| {
        let n = view.node(&net.members[i].pubkey).expect("listed");
        HopKeys {
            ed25519: n.pubkey_ed25519,
            x25519: n.pubkey_x25519,
        }
    };
    // The directory lists each node's QUIC port as its storage_lmq_port.
    for i in 0..4 {
        let n = view.node(&net.members[i].pubkey).expect("listed");
        assert_eq!(n.omq_port, net.node(i).quic_addr().port());
    }
    let frank = User::new(16);
    let dest = keys(3);
    let path = [keys(0), keys(1), keys(2)];
    let payload =
        json!({"method": "store", "params": frank.store_params(b"onion over quic", 600_000)});
    let built = build_onion(
        &path,
        &Destination::Node(dest),
        payload.to_string().as_bytes(),
        EncType::XChaCha20,
    )
    .expect("builds");
    let ep = endpoint();
    let mut guard = connect(&ep, net.node(0).quic_addr(), net.node(0).pubkey_ed25519()).await;
    let reply = guard.call("onion_req", &built.guard_body).await.expect("R");
    let plain = built
        .reply_key
        .decrypt_reply(&STANDARD.decode(&reply).expect("base64"))
        .expect("opens");
    let v: Value = serde_json::from_slice(&plain).expect("json");
    assert_eq!(v["status"], 200, "{v}");
    // A request the guard cannot parse: the original's 400 text as an E.
    let err = guard.call("onion_req", b"\x01\x00").await.expect_err("E");
    assert!(
        err.starts_with(b"400 Bad Request\n\nError parsing onion request: "),
        "{}",
        String::from_utf8_lossy(&err)
    );
    // A destination nobody lists: 502 "Next node not found: " as libsession matches it.
    let stranger = HopKeys {
        ed25519: [9; 32],
        x25519: [9; 32],
    };
    let built = build_onion(
        &path[..1],
        &Destination::Node(stranger),
        b"{}",
        EncType::AesGcm,
    )
    .expect("builds");
    let err = guard
        .call("onion_req", &built.guard_body)
        .await
        .expect_err("E");
    assert!(
        err.starts_with(b"502 Bad Gateway\n\nNext node not found: "),
        "{}",
        String::from_utf8_lossy(&err)
    );
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn peer_traffic_rides_held_quic_connections_and_strangers_are_refused() {
    use common::net::TestNet;
    let net = TestNet::start_with(4, |c| {
        c.network.peer_transport = snode::config::PeerTransport::Quic;
    })
    .await;
    net.wait_converged().await;
    // One swarm of 4: a store at one member is forwarded to the three others.
    let grace = User::new(17);
    let c = client();
    let stored = rpc_json(
        &c,
        &net.addr(0),
        "store",
        grace.store_params(b"over quic peers", 600_000),
    )
    .await;
    let hash = stored["hash"].as_str().expect("hash").to_string();
    for i in 1..4 {
        let entry = &stored["swarm"][hex::encode(net.node(i).pubkey_ed25519())];
        assert!(entry["hash"].is_string(), "member {i}: {stored}");
    }
    // The forwards arrived as QUIC peer commands, not HTTPS requests.
    let mut quic_peer_requests = 0;
    for i in 1..4 {
        let text = metrics_of(net.node(i)).await;
        quic_peer_requests += text
            .lines()
            .find(|l| {
                l.starts_with("snode_quic_requests_total{endpoint=\"peer\",outcome=\"reply\"}")
            })
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
    }
    assert!(
        quic_peer_requests >= 3,
        "{quic_peer_requests} peer commands over QUIC"
    );
    let got = rpc_json(&c, &net.addr(3), "retrieve", grace.retrieve_params(None)).await;
    assert_eq!(got["messages"][0]["hash"], json!(hash));

    // A client whose key no directory lists gets 403 for every peer command, with no work.
    let ep = endpoint();
    let mut q = connect(&ep, net.node(0).quic_addr(), net.node(0).pubkey_ed25519()).await;
    for path in [
        "/snode/v1/data",
        "/snode/v1/storage_cc",
        "/snode/v1/onion",
        "/snode/v1/ping",
    ] {
        assert_eq!(
            q.call(path, b"x").await,
            Ok(b"li403e33:peer is not a listed service nodee".to_vec()),
            "{path}"
        );
    }
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_total_cap_are_refused() {
    let (_tmp, node) = node_with(|c| {
        c.quic.max_connections = 1;
    })
    .await;
    let ep = endpoint();
    let mut first = connect(&ep, node.quic_addr(), node.pubkey_ed25519()).await;
    assert!(
        try_connect(&ep, node.quic_addr(), node.pubkey_ed25519())
            .await
            .is_err()
    );
    assert_eq!(first.call("snode_ping", b"").await, Ok(b"pong".to_vec()));
    let text = metrics_of(&node).await;
    assert!(
        text.contains("snode_quic_connections_refused_total{reason=\"total\"} 1"),
        "{text}"
    );
    assert!(text.contains("snode_quic_connections 1"), "{text}");
    node.shutdown().await;
}

/// A UDP relay for one client: what it receives goes to `target` (switchable), and what the
/// target answers goes back to the client; `cut` drops everything, as a dead host would.
struct UdpRelay {
    addr: std::net::SocketAddr,
    target: std::sync::Arc<std::sync::Mutex<std::net::SocketAddr>>,
    cut: std::sync::Arc<std::sync::atomic::AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl UdpRelay {
    async fn start(target: std::net::SocketAddr) -> UdpRelay {
        use std::sync::atomic::Ordering;
        let front = tokio::net::UdpSocket::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let back = tokio::net::UdpSocket::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = front.local_addr().expect("addr");
        let target = std::sync::Arc::new(std::sync::Mutex::new(target));
        let cut = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (t, c) = (target.clone(), cut.clone());
        let task = tokio::spawn(async move {
            let mut client = None;
            let (mut a, mut b) = (vec![0u8; 65_536], vec![0u8; 65_536]);
            loop {
                tokio::select! {
                    r = front.recv_from(&mut a) => {
                        let Ok((n, from)) = r else { return };
                        client = Some(from);
                        let to = *t.lock().expect("target");
                        if !c.load(Ordering::Relaxed) {
                            let _ = back.send_to(&a[..n], to).await;
                        }
                    }
                    r = back.recv_from(&mut b) => {
                        let Ok((n, _)) = r else { return };
                        if let (Some(to), false) = (client, c.load(Ordering::Relaxed)) {
                            let _ = front.send_to(&b[..n], to).await;
                        }
                    }
                }
            }
        });
        UdpRelay {
            addr,
            target,
            cut,
            task,
        }
    }
}

impl Drop for UdpRelay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A peer killed and restarted at the same address never answers on the connection held to
/// its old process, and QUIC notices only at the idle timeout (30 s). The first request that
/// times out drops the held connection, so the next one reaches the new process at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_connection_that_stops_answering_is_replaced_after_one_timeout() {
    use std::sync::atomic::Ordering;
    let tmp = tempfile::tempdir().expect("tmp");
    init_dir(tmp.path());
    let first = spawn_node(tmp.path(), test_config()).await;
    let relay = UdpRelay::start(first.quic_addr()).await;
    let peer = snode::swarm::NodeInfo {
        pubkey_ed25519: first.pubkey_ed25519(),
        pubkey_x25519: [0; 32],
        ip: std::net::Ipv4Addr::LOCALHOST,
        https_port: first.https_addr().port(),
        omq_port: relay.addr.port(),
        swarm_id: snode::swarm::SwarmId(1),
        version: [2, 11, 0],
    };
    let us = std::sync::Arc::new(snode::keys::NodeKeys::from_seed([77; 32]));
    let quic = snode::peer::quic::PeerQuic::new(us);
    let ask = async || {
        quic.post(&peer, "/snode/v1/ping", b"", Duration::from_secs(1))
            .await
    };
    // Not listed by the node's (empty) directory view: an authentic 403, over QUIC.
    assert_eq!(ask().await.expect("answer").0, 403);

    // The old process dies without a word (the relay drops its close), a new one with the same
    // key starts elsewhere, and the relay now leads there.
    relay.cut.store(true, Ordering::Relaxed);
    first.shutdown().await;
    let second = spawn_node(tmp.path(), test_config()).await;
    *relay.target.lock().expect("target") = second.quic_addr();
    relay.cut.store(false, Ordering::Relaxed);

    assert!(
        matches!(ask().await, Err(snode::peer::quic::QuicPeerError::Lost(_))),
        "the old connection gets no answer"
    );
    let answer = ask()
        .await
        .expect("a new connection reaches the new process");
    assert_eq!(answer.0, 403);
    second.shutdown().await;
}
