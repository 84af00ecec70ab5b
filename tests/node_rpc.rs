//! A real node on port 0, spoken to over HTTPS as a Session client would.

mod common;

use common::*;
use serde_json::json;
use std::time::Duration;

#[tokio::test]
async fn store_and_retrieve_over_https() {
    let dir = tempfile::tempdir().expect("tempdir");
    init_dir(dir.path());
    let node = spawn_node(dir.path(), test_config()).await;
    let addr = node.https_addr().to_string();
    let c = client();
    let alice = User::new(7);

    let info = rpc_json(&c, &addr, "info", json!({})).await;
    assert_eq!(info["version"], json!([2, 8, 0]));
    assert!(info["t"].as_i64().expect("t") > 0);
    assert!(info["hf"].is_array());

    let stored = rpc_json(
        &c,
        &addr,
        "store",
        alice.store_params(b"hello alice", 60_000),
    )
    .await;
    let hash = stored["hash"].as_str().expect("hash").to_string();
    assert_eq!(hash.len(), 43);
    let me = hex::encode(node.pubkey_ed25519());
    let entry = &stored["swarm"][&me];
    assert_eq!(entry["hash"], json!(hash));
    assert!(entry["signature"].as_str().is_some(), "{stored}");

    let got = retrieve_all(&c, &addr, &alice).await;
    assert_eq!(got, vec![(hash.clone(), b"hello alice".to_vec())]);

    // Unsigned retrieve of an authenticated namespace is refused with the protocol's text.
    let (status, body) = rpc(&c, &addr, "retrieve", json!({"pubkey": alice.session_id})).await;
    assert_eq!(status, 401);
    assert_eq!(body, "retrieve: request signature required");

    // get_swarm lists this node with the original's field shapes.
    let swarm = rpc_json(&c, &addr, "get_swarm", json!({"pubkey": alice.session_id})).await;
    let snode = &swarm["snodes"][0];
    assert_eq!(snode["pubkey_ed25519"], json!(me));
    assert_eq!(snode["port"], json!(node.https_addr().port().to_string()));
    assert_eq!(snode["port_https"], json!(node.https_addr().port()));

    node.shutdown().await;
}

#[tokio::test]
async fn edge_errors_have_the_original_texts() {
    let dir = tempfile::tempdir().expect("tempdir");
    init_dir(dir.path());
    let node = spawn_node(dir.path(), test_config()).await;
    let addr = node.https_addr().to_string();
    let c = client();

    let r = c
        .post(format!("https://{addr}/storage_rpc/v1"))
        .body("not json")
        .send()
        .await
        .expect("send");
    assert_eq!(r.status().as_u16(), 400);
    assert_eq!(r.text().await.expect("body"), "invalid json");

    let r = c
        .get(format!("https://{addr}/nope"))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status().as_u16(), 404);
    assert_eq!(r.text().await.expect("body"), "GET /nope Not Found");

    let big = vec![b'x'; 10 * 1024 * 1024 + 1];
    let r = c
        .post(format!("https://{addr}/storage_rpc/v1"))
        .body(big)
        .send()
        .await;
    // The node may close the connection while the client is still sending; either way the
    // request is refused and the node keeps serving.
    if let Ok(r) = r {
        assert_eq!(r.status().as_u16(), 413);
    }

    let r = c
        .post(format!("https://{addr}/storage_rpc/v1"))
        .header("X-Loki-Long-Poll", "1")
        .json(&json!({"method": "info", "params": {}}))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status().as_u16(), 410);

    let r = c
        .post(format!("https://{addr}/ping_test/v1"))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status().as_u16(), 200);
    assert!(r.headers().contains_key("x-oxen-snode-pubkey"));
    assert!(
        r.headers()["server"]
            .to_str()
            .expect("server")
            .contains("snode")
    );

    let r = c
        .get(format!("https://{addr}/get_stats/v1"))
        .send()
        .await
        .expect("send");
    assert_eq!(r.text().await.expect("body"), r#"{"version":"2.8.0"}"#);

    // The node still answers after all that.
    rpc_json(&c, &addr, "info", json!({})).await;
    node.shutdown().await;
}

#[tokio::test]
async fn rate_limit_refuses_bursts_with_429() {
    let dir = tempfile::tempdir().expect("tempdir");
    init_dir(dir.path());
    let mut cfg = test_config();
    cfg.rate_limit.burst = 5;
    cfg.rate_limit.per_second = 1;
    let node = spawn_node(dir.path(), cfg).await;
    let addr = node.https_addr().to_string();
    let c = client();
    let mut statuses = Vec::new();
    for _ in 0..8 {
        statuses.push(rpc(&c, &addr, "info", json!({})).await.0);
    }
    assert_eq!(&statuses[..5], &[200; 5]);
    assert!(statuses[5..].iter().all(|s| *s == 429), "{statuses:?}");

    let metrics = reqwest::get(format!("http://{}/metrics", node.admin_addr()))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(metrics.contains("snode_rate_limited_total 3"), "{metrics}");
    node.shutdown().await;
}

#[tokio::test]
async fn admin_endpoints_and_metrics() {
    let dir = tempfile::tempdir().expect("tempdir");
    init_dir(dir.path());
    let node = spawn_node(dir.path(), test_config()).await;
    let addr = node.https_addr().to_string();
    let admin = node.admin_addr();
    let c = client();
    let alice = User::new(9);
    rpc_json(&c, &addr, "store", alice.store_params(b"m1", 60_000)).await;
    rpc_json(&c, &addr, "retrieve", alice.retrieve_params(None)).await;

    let health = reqwest::get(format!("http://{admin}/health"))
        .await
        .expect("health");
    assert_eq!(health.status().as_u16(), 200);
    let ready = reqwest::get(format!("http://{admin}/ready"))
        .await
        .expect("ready");
    assert_eq!(ready.status().as_u16(), 200);

    let text = reqwest::get(format!("http://{admin}/metrics"))
        .await
        .expect("m")
        .text()
        .await
        .expect("t");
    assert!(
        text.contains(r#"snode_requests_total{method="store",status="200"} 1"#),
        "{text}"
    );
    assert!(
        text.contains(r#"snode_requests_total{method="retrieve",status="200"} 1"#),
        "{text}"
    );
    assert!(text.contains("snode_messages_stored_total 1"), "{text}");
    assert!(text.contains("snode_build_info{version="), "{text}");
    assert!(text.contains("process_resident_memory_bytes"), "{text}");
    // No label carries an account, a hash or an address.
    assert!(!text.contains(&alice.session_id[2..18]));
    assert!(!text.contains("127.0.0.1"));
    node.shutdown().await;
}

#[tokio::test]
async fn expired_messages_disappear() {
    let dir = tempfile::tempdir().expect("tempdir");
    init_dir(dir.path());
    let node = spawn_node(dir.path(), test_config()).await;
    let addr = node.https_addr().to_string();
    let c = client();
    let bob = User::new(11);
    // The shortest TTL the protocol allows is 10 s; the sweep runs every 200 ms in tests.
    let mut p = bob.store_params(b"short-lived", 10_000);
    p["timestamp"] = json!(now_ms() - 9_000);
    rpc_json(&c, &addr, "store", p).await;
    assert_eq!(retrieve_all(&c, &addr, &bob).await.len(), 1);
    wait_for("expiry", Duration::from_secs(15), || {
        let c = c.clone();
        let addr = addr.clone();
        let bob = &bob;
        async move { retrieve_all(&c, &addr, bob).await.is_empty().then_some(()) }
    })
    .await;
    node.shutdown().await;
}
