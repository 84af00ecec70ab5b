//! Router tests of the directory (no sockets): status codes, limits, save-before-install.

use super::*;
use crate::clock::wall_clock_ms as now_ms;
use crate::directory::announce::{sign_announcement, sign_report};
use crate::keys::NodeKeys;
use crate::swarm::{NodeInfo, SwarmId};
use axum::body::Body;
use axum::http::Request;
use http_body_util::BodyExt as _;
use std::net::Ipv4Addr;
use tower::ServiceExt as _;

fn shared(dir: &std::path::Path, admission: Admission) -> Arc<Shared> {
    let reg = Registry::new(Policy {
        // These nodes are on 127.0.0.1.
        allow_private_addresses: true,
        ..Policy::new(admission, 60_000)
    });
    shared_state(
        reg,
        state_path(dir),
        &DirectoryLimits::testnet(),
        crate::clock::wall(),
        None,
    )
}

fn info() -> NodeInfo {
    info_at(4433)
}

fn info_at(port: u16) -> NodeInfo {
    NodeInfo {
        pubkey_ed25519: [0; 32],
        pubkey_x25519: [0; 32],
        ip: Ipv4Addr::LOCALHOST,
        https_port: port,
        omq_port: 0,
        swarm_id: SwarmId::UNASSIGNED,
        version: [0, 1, 0],
    }
}

async fn post(s: &Arc<Shared>, path: &str, body: impl Into<Body>) -> (StatusCode, Value) {
    let mut req = Request::post(path)
        .header("content-type", "application/json")
        .body(body.into())
        .unwrap();
    // What `into_make_service_with_connect_info` adds for a real connection.
    req.extensions_mut()
        .insert(ConnectInfo(PeerAddr(SocketAddr::from((
            Ipv4Addr::LOCALHOST,
            1,
        )))));
    let resp = router(Arc::clone(s)).oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

fn json_body(v: &impl serde::Serialize) -> String {
    serde_json::to_string(v).unwrap()
}

const LIST: &str = r#"{"jsonrpc":"2.0","id":1,"method":"get_service_nodes"}"#;

#[tokio::test]
async fn register_then_list_then_report() {
    let dir = tempfile::tempdir().unwrap();
    let s = shared(dir.path(), Admission::Open);
    let (status, v) = post(&s, "/json_rpc", LIST).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v["result"]["height"], 0);
    assert_eq!(v["result"]["service_node_states"], json!([]));

    let k = NodeKeys::generate();
    let ann = sign_announcement(&k, &info(), now_ms());
    let (status, v) = post(&s, "/register", json_body(&ann)).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["status"], "OK");
    assert_eq!(v["height"], 1);
    assert_eq!(v["swarm_id"], 0);
    assert_eq!(v["block_hash"].as_str().unwrap().len(), 64);
    assert!(state_path(dir.path()).exists(), "saved before answering");

    let (_, v) = post(&s, "/json_rpc", LIST).await;
    let states = v["result"]["service_node_states"].as_array().unwrap();
    assert_eq!(states.len(), 1);
    assert_eq!(states[0]["pubkey_ed25519"], hex::encode(k.pubkey_ed25519()));

    // A report by a node that is not listed: 403. About an unknown node: 400.
    let stranger = NodeKeys::generate();
    let r = sign_report(&stranger, &k.pubkey_ed25519(), false, now_ms());
    assert_eq!(
        post(&s, "/report", json_body(&r)).await.0,
        StatusCode::FORBIDDEN
    );
    let r = sign_report(&k, &stranger.pubkey_ed25519(), false, now_ms());
    assert_eq!(
        post(&s, "/report", json_body(&r)).await.0,
        StatusCode::BAD_REQUEST
    );
    let other = NodeKeys::generate();
    post(
        &s,
        "/register",
        json_body(&sign_announcement(&other, &info_at(4434), now_ms())),
    )
    .await;
    let r = sign_report(&k, &other.pubkey_ed25519(), true, now_ms());
    let (status, v) = post(&s, "/report", json_body(&r)).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["height"], 2);

    // The listings served before stay readable by height: height 1 listed one node.
    let at = |h: u64| {
        format!(
            r#"{{"jsonrpc":"2.0","id":1,"method":"get_service_nodes","params":{{"height":{h}}}}}"#
        )
    };
    let (_, v) = post(&s, "/json_rpc", at(1)).await;
    assert_eq!(v["result"]["height"], 1, "{v}");
    assert_eq!(
        v["result"]["service_node_states"].as_array().unwrap().len(),
        1
    );
    let (_, v) = post(&s, "/json_rpc", at(2)).await;
    assert_eq!(
        v["result"]["service_node_states"].as_array().unwrap().len(),
        2
    );
    let (_, v) = post(&s, "/json_rpc", at(3)).await;
    assert_eq!(v["error"]["message"], rpc::HEIGHT_NOT_KEPT);
}

#[tokio::test]
async fn bad_requests_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let s = shared(dir.path(), Admission::Open);
    let k = NodeKeys::generate();

    assert_eq!(post(&s, "/register", "{").await.0, StatusCode::BAD_REQUEST);
    assert_eq!(post(&s, "/report", "[]").await.0, StatusCode::BAD_REQUEST);
    let mut ann = sign_announcement(&k, &info(), now_ms());
    ann.storage_port += 1;
    let (status, v) = post(&s, "/register", json_body(&ann)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(v["error"], "invalid signature");
    // Ten minutes old.
    let ann = sign_announcement(&k, &info(), now_ms() - 600_000);
    assert_eq!(
        post(&s, "/register", json_body(&ann)).await.0,
        StatusCode::BAD_REQUEST
    );

    // Bodies are bounded.
    let big = vec![b' '; MAX_BODY_BYTES + 1];
    assert_eq!(
        post(&s, "/register", big.clone()).await.0,
        StatusCode::PAYLOAD_TOO_LARGE
    );
    assert_eq!(
        post(&s, "/json_rpc", big).await.0,
        StatusCode::PAYLOAD_TOO_LARGE
    );

    // Only POST.
    let req = Request::get("/json_rpc").body(Body::empty()).unwrap();
    let resp = router(Arc::clone(&s)).oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED);

    // JSON-RPC errors are in-band.
    let (status, v) = post(&s, "/json_rpc", "nope").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v["error"]["code"], -32700);
    assert_eq!(s.registry.lock().unwrap().height(), 0);
}

#[tokio::test]
async fn allow_list_refusal_is_403() {
    let dir = tempfile::tempdir().unwrap();
    let ok = NodeKeys::generate();
    let s = shared(
        dir.path(),
        Admission::AllowList([ok.pubkey_ed25519()].into()),
    );
    let no = NodeKeys::generate();
    let (status, v) = post(
        &s,
        "/register",
        json_body(&sign_announcement(&no, &info(), now_ms())),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(v["status"], "error");
    let (status, _) = post(
        &s,
        "/register",
        json_body(&sign_announcement(&ok, &info(), now_ms())),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn a_failed_save_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let s = shared(dir.path(), Admission::Open);
    // A directory where the state file goes: the rename over it fails.
    std::fs::create_dir(state_path(dir.path())).unwrap();
    std::fs::write(state_path(dir.path()).join("x"), b"x").unwrap();
    let k = NodeKeys::generate();
    let (status, _) = post(
        &s,
        "/register",
        json_body(&sign_announcement(&k, &info(), now_ms())),
    )
    .await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(s.registry.lock().unwrap().height(), 0);
    let (_, v) = post(&s, "/json_rpc", LIST).await;
    assert_eq!(v["result"]["height"], 0);
}

#[tokio::test]
async fn refusals_have_their_status_and_a_clear_text() {
    let dir = tempfile::tempdir().unwrap();
    let reg = Registry::new(Policy {
        max_nodes: 2,
        ..Policy::new(Admission::Open, 60_000)
    });
    let s = shared_state(
        reg,
        state_path(dir.path()),
        &DirectoryLimits::testnet(),
        crate::clock::wall(),
        None,
    );
    let at = |ip: [u8; 4], port: u16| NodeInfo {
        ip: Ipv4Addr::from(ip),
        ..info_at(port)
    };
    let k = NodeKeys::generate();
    let (status, v) = post(
        &s,
        "/register",
        json_body(&sign_announcement(&k, &at([127, 0, 0, 1], 1), now_ms())),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(v["error"].as_str().unwrap().contains("loopback"), "{v}");

    let ok =
        |k: &NodeKeys, port| json_body(&sign_announcement(k, &at([8, 8, 8, 8], port), now_ms()));
    assert_eq!(post(&s, "/register", ok(&k, 443)).await.0, StatusCode::OK);
    let (status, v) = post(&s, "/register", ok(&NodeKeys::generate(), 443)).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("public_ip and storage_port"),
        "{v}"
    );
    assert_eq!(
        post(&s, "/register", ok(&NodeKeys::generate(), 444))
            .await
            .0,
        StatusCode::OK
    );
    let (status, v) = post(&s, "/register", ok(&NodeKeys::generate(), 445)).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(v["error"].as_str().unwrap().contains("maximum of 2"), "{v}");
    assert_eq!(s.registry.lock().unwrap().nodes().count(), 2);
}
