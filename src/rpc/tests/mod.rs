//! Tests of the envelope, dispatch, `info`, `get_swarm`, the 421 body, `active_nodes_bin`
//! and `oxend_request`.

mod batch;
mod delete;
mod expire;
mod retrieve;
mod retry;
mod store;
mod subaccount;
mod util;

use serde_json::{Value, json};

use super::{
    Origin, RpcBody, handle_method, handle_request, method_label,
    swarm_info::ACTIVE_NODE_RECORD_LEN,
};
use crate::message::AccountId;
use util::*;

async fn envelope(n: &Net, body: &str) -> super::RpcResponse {
    handle_request(n.entry(), body.as_bytes(), Origin::Client).await
}

#[tokio::test]
async fn envelope_errors() {
    let c = Client::new(1);
    let n = net(1, &c.session());
    assert_text(&envelope(&n, "{nope").await, 400, "invalid json");
    assert_text(
        &envelope(&n, r#"{"params":{}}"#).await,
        400,
        "invalid json: no `method` field",
    );
    assert_text(
        &envelope(&n, r#"{"method":5,"params":{}}"#).await,
        400,
        "invalid json: no `method` field",
    );
    assert_text(
        &envelope(&n, r#"{"method":"info"}"#).await,
        400,
        "invalid json: no `params` field",
    );
    assert_text(
        &envelope(&n, r#"{"method":"info","params":[]}"#).await,
        400,
        "invalid json: no `params` field",
    );
    assert_text(
        &envelope(&n, r#"{"method":"nope","params":{}}"#).await,
        400,
        "no method nope",
    );
    // Session Desktop adds "jsonrpc": ignored.
    let r = envelope(&n, r#"{"jsonrpc":"2.0","method":"info","params":{}}"#).await;
    assert_eq!(r.status, 200);
}

#[test]
fn labels_are_a_closed_set() {
    assert_eq!(method_label("store"), "store");
    assert_eq!(
        method_label("get_snodes_for_pubkey"),
        "get_snodes_for_pubkey"
    );
    assert_eq!(method_label("ifelse"), "ifelse");
    assert_eq!(method_label("Store"), "unknown");
    assert_eq!(method_label("x".repeat(1000).as_str()), "unknown");
}

#[tokio::test]
async fn peers_may_only_forward_recursive_methods() {
    let c = Client::new(1);
    let n = net(1, &c.session());
    for m in ["info", "retrieve", "get_swarm", "batch", "get_expiries"] {
        let r = handle_method(n.entry(), m, &json!({}), Origin::Peer).await;
        assert_text(
            &r,
            400,
            "invalid request: received invalid forwarded non-forwardable request",
        );
    }
}

#[tokio::test]
async fn info_reports_version_and_time() {
    let c = Client::new(1);
    let n = net(1, &c.session());
    let r = n.call("info", json!({})).await;
    assert_eq!(r.status, 200);
    assert_eq!(
        json_of(&r),
        &json!({"version": [2, 8, 0], "timestamp": NOW, "t": NOW, "hf": [19, 4]})
    );
}

#[tokio::test]
async fn get_swarm_lists_the_owning_swarm() {
    let c = Client::new(1);
    let owner = c.session();
    let n = net(2, &owner);
    for (method, key) in [("get_swarm", "pubkey"), ("get_snodes_for_pubkey", "pubKey")] {
        let r = n.call(method, json!({ key: owner.to_hex() })).await;
        assert_eq!(r.status, 200);
        let v = json_of(&r);
        assert_eq!(
            v["swarm"],
            json!(format!("{:x}", crate::swarm::swarm_space(&owner)))
        );
        assert_eq!(v["t"], json!(NOW));
        assert_eq!(v["hf"], json!([19, 4]));
        let snodes = v["snodes"].as_array().expect("snodes");
        assert_eq!(snodes.len(), 2);
        let me = snodes
            .iter()
            .find(|s| s["pubkey_ed25519"] == json!(n.hex(0)))
            .expect("entry node listed");
        let info = n
            .membership
            .node(&n.entry().keys.pubkey_ed25519())
            .expect("node");
        assert_eq!(
            me,
            &json!({
                "address": crate::keys::snode_address(&info.pubkey_ed25519),
                "pubkey_legacy": n.hex(0),
                "pubkey_x25519": hex::encode(info.pubkey_x25519),
                "pubkey_ed25519": n.hex(0),
                "port": info.https_port.to_string(),
                "port_https": info.https_port,
                "port_omq": info.omq_port,
                "port_quic": info.omq_port,
                "ip": info.ip.to_string(),
            })
        );
        assert!(me["address"].as_str().expect("str").ends_with(".snode"));
    }
    // get_swarm answers for any account (no 421).
    let far = foreign_account(&owner);
    let r = n.call("get_swarm", json!({"pubkey": far.to_hex()})).await;
    assert_eq!(r.status, 200);
    assert_eq!(
        json_of(&r)["snodes"][0]["pubkey_ed25519"],
        json!(hex::encode(n.foreign.pubkey_ed25519))
    );
}

#[tokio::test]
async fn pubkey_param_errors() {
    let c = Client::new(1);
    let owner = c.session();
    let n = net(1, &owner);
    let r = n.call("get_swarm", json!({})).await;
    assert_text(&r, 400, "invalid request: Required field 'pubkey' missing");
    let r = n
        .call(
            "get_swarm",
            json!({"pubkey": owner.to_hex(), "pubKey": owner.to_hex()}),
        )
        .await;
    assert_text(
        &r,
        400,
        "invalid request: Cannot specify both 'pubkey' and 'pubKey'",
    );
    for bad in [json!("05abc"), json!(hex::encode(owner.key))] {
        let r = n.call("get_swarm", json!({ "pubkey": bad })).await;
        assert_text(
            &r,
            400,
            "invalid request: Pubkey must be 66 hex digits (33 bytes) long",
        );
    }
    let r = n.call("get_swarm", json!({"pubkey": 5})).await;
    assert_text(
        &r,
        400,
        "invalid request: Invalid value given for 'pubkey': expected string",
    );
}

#[tokio::test]
async fn testnet_accepts_64_hex_as_session_ids() {
    let c = Client::new(1);
    let owner = c.session();
    let mut n = net(1, &owner);
    n.nodes[0].testnet = true;
    let r = n
        .call("get_swarm", json!({"pubkey": hex::encode(owner.key)}))
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(json_of(&r)["snodes"].as_array().map(Vec::len), Some(1));
}

#[tokio::test]
async fn no_swarms_at_all() {
    let c = Client::new(1);
    let n = net(1, &c.session());
    let (_tx, rx) =
        tokio::sync::watch::channel(std::sync::Arc::new(crate::swarm::Membership::default()));
    let mut ctx = n.entry().clone();
    ctx.membership = rx;
    let r = handle_method(
        &ctx,
        "get_swarm",
        &json!({"pubkey": c.session().to_hex()}),
        Origin::Client,
    )
    .await;
    assert_eq!(r.status, 200);
    let v = json_of(&r);
    assert_eq!(v["snodes"], json!([]));
    assert_eq!(v["swarm"], json!("ffffffffffffffff"));
    // And every account method is misdirected.
    let r = handle_method(
        &ctx,
        "retrieve",
        &json!({"pubkey": c.session().to_hex(), "namespace": -10}),
        Origin::Client,
    )
    .await;
    assert_eq!(r.status, 421);
}

#[tokio::test]
async fn wrong_swarm_is_421_with_the_right_swarm() {
    let c = Client::new(1);
    let owner = c.session();
    let n = net(2, &owner);
    let far = foreign_account(&owner);
    let store = json!({"pubkey": far.to_hex(), "timestamp": NOW, "ttl": 60_000, "data": "aGk="});
    for (method, params) in [
        ("store", store),
        (
            "retrieve",
            json!({"pubkey": far.to_hex(), "namespace": -10}),
        ),
    ] {
        let r = n.call(method, params).await;
        assert_eq!(r.status, 421, "{method}");
        let v = json_of(&r);
        assert_eq!(v["swarm"], json!(format!("{:x}", foreign_swarm(&owner))));
        assert_eq!(v["snodes"].as_array().map(Vec::len), Some(1));
        assert_eq!(
            v["snodes"][0]["pubkey_ed25519"],
            json!(hex::encode(n.foreign.pubkey_ed25519))
        );
        assert_eq!(
            (v["t"].clone(), v["hf"].clone()),
            (json!(NOW), json!([19, 4]))
        );
    }
    // Nothing was forwarded for a misdirected request.
    assert!(n.forwarder.calls.lock().expect("lock").is_empty());
}

#[tokio::test]
async fn active_nodes_bin_records() {
    let c = Client::new(1);
    let n = net(2, &c.session());
    let r = n.call("active_nodes_bin", json!({})).await;
    assert_eq!(r.status, 200);
    let RpcBody::Bytes(b) = &r.body else {
        panic!("bytes expected")
    };
    assert_eq!(b.len(), 3 * ACTIVE_NODE_RECORD_LEN);
    for rec in b.chunks(ACTIVE_NODE_RECORD_LEN) {
        let ed: [u8; 32] = rec[..32].try_into().expect("32");
        let info = n.membership.node(&ed).expect("listed node");
        assert_eq!(&rec[32..40], &info.swarm_id.0.to_be_bytes());
        assert_eq!(&rec[40..44], &info.ip.octets());
        assert_eq!(&rec[44..46], &info.https_port.to_be_bytes());
        assert_eq!(&rec[46..48], &info.omq_port.to_be_bytes());
        assert_eq!(&rec[48..], &[2, 8, 0]);
    }
}

#[tokio::test]
async fn active_nodes_bin_skips_decommissioned_and_clamps_versions() {
    let c = Client::new(1);
    let n = net(1, &c.session());
    let mut nodes = n.membership.nodes.clone();
    nodes[0].version = [300, 1, 256];
    nodes[1].swarm_id = crate::swarm::SwarmId::UNASSIGNED;
    let m = crate::swarm::Membership::new(1, String::new(), nodes.clone());
    let (_tx, rx) = tokio::sync::watch::channel(std::sync::Arc::new(m));
    let mut ctx = n.entry().clone();
    ctx.membership = rx;
    let r = handle_method(&ctx, "active_nodes_bin", &json!({}), Origin::Onion).await;
    let RpcBody::Bytes(b) = &r.body else {
        panic!("bytes expected")
    };
    assert_eq!(b.len(), ACTIVE_NODE_RECORD_LEN);
    assert_eq!(&b[..32], &nodes[0].pubkey_ed25519);
    assert_eq!(&b[48..], &[0xff, 1, 0xff]);
}

#[tokio::test]
async fn oxend_get_service_nodes() {
    let c = Client::new(1);
    let n = net(2, &c.session());
    let params = json!({"endpoint": "get_service_nodes", "params": {
        "active_only": true,
        "fields": {"public_ip": true, "storage_port": true, "pubkey_x25519": true, "pubkey_ed25519": true}
    }});
    let r = n.call("oxend_request", params).await;
    assert_eq!(r.status, 200);
    let v = json_of(&r);
    assert_eq!(
        (v["t"].clone(), v["hf"].clone()),
        (json!(NOW), json!([19, 4]))
    );
    let res = &v["result"];
    assert_eq!(res["height"], json!(7));
    assert_eq!(res["block_hash"], json!("ab".repeat(32)));
    assert_eq!(
        (res["hardfork"].clone(), res["snode_revision"].clone()),
        (json!(19), json!(4))
    );
    let states = res["service_node_states"].as_array().expect("states");
    assert_eq!(states.len(), 3);
    for s in states {
        let keys: Vec<&String> = s.as_object().expect("obj").keys().collect();
        assert_eq!(keys.len(), 4, "{s}");
        let ed: [u8; 32] = hex::decode(s["pubkey_ed25519"].as_str().expect("hex"))
            .expect("hex")
            .try_into()
            .expect("32");
        let info = n.membership.node(&ed).expect("node");
        assert_eq!(s["public_ip"], json!(info.ip.to_string()));
        assert_eq!(s["storage_port"], json!(info.https_port));
        assert_eq!(s["pubkey_x25519"], json!(hex::encode(info.pubkey_x25519)));
    }
    // No fields → every field.
    let r = n
        .call("oxend_request", json!({"endpoint": "get_service_nodes"}))
        .await;
    let s = &json_of(&r)["result"]["service_node_states"][0];
    for k in [
        "service_node_pubkey",
        "swarm_id",
        "storage_lmq_port",
        "funded",
    ] {
        assert!(s.get(k).is_some(), "{k}");
    }
    assert_eq!(s["funded"], json!(true));
}

#[tokio::test]
async fn oxend_other_endpoints() {
    let c = Client::new(1);
    let n = net(1, &c.session());
    let r = n
        .call(
            "oxend_request",
            json!({"endpoint": "ons_resolve", "params": {"type": 0, "name_hash": "x"}}),
        )
        .await;
    assert_text(&r, 400, "ONS is not available on this network");
    let r = n
        .call("oxend_request", json!({"endpoint": "get_info"}))
        .await;
    assert_text(
        &r,
        400,
        "invalid request: Invalid oxend endpoint 'get_info'",
    );
    let r = n.call("oxend_request", json!({})).await;
    assert_text(
        &r,
        400,
        "invalid request: Required field 'endpoint' missing",
    );
    let r = n
        .call(
            "oxend_request",
            json!({"endpoint": "get_service_nodes", "params": "x"}),
        )
        .await;
    assert_text(
        &r,
        400,
        "invalid request: Invalid value given for 'params': expected object",
    );
}

#[test]
fn foreign_accounts_map_elsewhere() {
    let c = Client::new(1);
    let owner: AccountId = c.session();
    let n = net(1, &owner);
    assert_ne!(
        n.membership.swarm_for(&foreign_account(&owner)),
        n.membership.swarm_for(&owner)
    );
    let ours: Vec<Value> = n
        .membership
        .members(n.membership.swarm_for(&owner).expect("swarm"))
        .iter()
        .map(|m| json!(hex::encode(m.pubkey_ed25519)))
        .collect();
    assert_eq!(ours, vec![json!(n.hex(0))]);
}
