//! Tests of the JSON-RPC: the requests real clients and storage servers send.

use super::*;
use crate::swarm::SwarmId;
use rand::SeedableRng as _;
use rand::rngs::StdRng;
use std::net::Ipv4Addr;

fn node(i: u8, swarm: SwarmId) -> NodeInfo {
    NodeInfo {
        pubkey_ed25519: [i; 32],
        pubkey_x25519: [i + 100; 32],
        ip: Ipv4Addr::new(127, 0, 0, i),
        https_port: 22000 + u16::from(i),
        omq_port: 23000 + u16::from(i),
        swarm_id: swarm,
        version: [2, 8, u16::from(i)],
    }
}

/// Nodes 1..=6 in swarm 0, node 7 decommissioned.
fn membership() -> Membership {
    let mut nodes: Vec<_> = (1..=6).map(|i| node(i, SwarmId(0))).collect();
    nodes.push(node(7, SwarmId::UNASSIGNED));
    Membership::new(42, "ab".repeat(32), nodes)
}

fn call(body: &str) -> Value {
    handle(
        body.as_bytes(),
        &membership(),
        &VecDeque::new(),
        &mut StdRng::seed_from_u64(1),
    )
}

fn states(v: &Value) -> &Vec<Value> {
    v["result"]["service_node_states"].as_array().unwrap()
}

#[test]
fn full_listing_has_every_field() {
    let v = call(r#"{"jsonrpc":"2.0","id":7,"method":"get_service_nodes"}"#);
    assert_eq!(v["jsonrpc"], "2.0");
    assert_eq!(v["id"], 7);
    let r = &v["result"];
    assert_eq!(r["height"], 42);
    assert_eq!(r["block_hash"], "ab".repeat(32));
    assert_eq!(r["hardfork"], 19);
    assert_eq!(r["snode_revision"], 4);
    assert_eq!(r["status"], "OK");
    assert!(r.get("unchanged").is_none());
    let s = states(&v);
    assert_eq!(s.len(), 7);
    let first = &s[0];
    assert_eq!(
        first,
        &json!({
            "service_node_pubkey": hex::encode([1u8; 32]),
            "pubkey_ed25519": hex::encode([1u8; 32]),
            "pubkey_x25519": hex::encode([101u8; 32]),
            "public_ip": "127.0.0.1",
            "storage_port": 22001,
            "storage_lmq_port": 23001,
            "swarm_id": 0,
            "funded": true,
            "active": true,
            "storage_server_version": [2, 8, 1],
            "requested_unlock_height": 0,
        })
    );
    // The decommissioned node: listed, inactive, swarm 2^64 - 1 (a JSON u64).
    assert_eq!(s[6]["active"], false);
    assert_eq!(s[6]["swarm_id"].as_u64(), Some(u64::MAX));
    assert_eq!(s[6]["funded"], true);
}

#[test]
fn desktop_seed_request() {
    // clients.md 1.1 (DESK SeedNodeAPI.ts), verbatim: no id, fields as an object.
    let v = call(
        r#"{"jsonrpc":"2.0","method":"get_n_service_nodes","params":{"active_only":true,"fields":{"public_ip":true,"storage_port":true,"pubkey_x25519":true,"pubkey_ed25519":true,"requested_unlock_height":true,"height":true}}}"#,
    );
    assert_eq!(v["id"], Value::Null);
    assert_eq!(v["result"]["height"], 42);
    let s = states(&v);
    assert_eq!(s.len(), 6, "active_only drops the decommissioned node");
    for e in s {
        let keys: BTreeSet<&str> = e.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            BTreeSet::from([
                "public_ip",
                "storage_port",
                "pubkey_x25519",
                "pubkey_ed25519",
                "requested_unlock_height"
            ])
        );
    }
}

#[test]
fn android_list_fields_and_storage_server_request() {
    // clients.md 1.1 (AND): fields as a JSON array.
    let v = call(
        r#"{"jsonrpc":"2.0","method":"get_n_service_nodes","params":{"active_only":true,"fields":["public_ip","storage_port","pubkey_x25519","pubkey_ed25519"]}}"#,
    );
    assert_eq!(states(&v).len(), 6);
    assert_eq!(states(&v)[0].as_object().unwrap().len(), 4);

    // storage-server.md 3.1: the storage server's own poll (all nodes, false fields ignored).
    let v = call(
        r#"{"jsonrpc":"2.0","id":1,"method":"get_service_nodes","params":{"fields":{"service_node_pubkey":true,"swarm_id":true,"storage_port":true,"public_ip":true,"height":true,"block_hash":true,"hardfork":true,"snode_revision":true,"funded":true,"pubkey_x25519":true,"pubkey_ed25519":true,"storage_lmq_port":true,"active":false},"active_only":false}}"#,
    );
    let s = states(&v);
    assert_eq!(s.len(), 7);
    assert!(s[0].get("active").is_none());
    assert_eq!(s[0]["storage_lmq_port"], 23001);
    assert_eq!(v["result"]["hardfork"], 19);
}

#[test]
fn poll_block_hash_reports_unchanged() {
    let same = format!(
        r#"{{"jsonrpc":"2.0","id":"x","method":"get_service_nodes","params":{{"poll_block_hash":"{}"}}}}"#,
        "AB".repeat(32)
    );
    let v = call(&same);
    assert_eq!(v["id"], "x");
    assert_eq!(
        v["result"],
        json!({"unchanged": true, "height": 42, "block_hash": "ab".repeat(32), "status": "OK"})
    );
    let other = format!(
        r#"{{"method":"get_service_nodes","params":{{"poll_block_hash":"{}"}}}}"#,
        "cd".repeat(32)
    );
    assert_eq!(states(&call(&other)).len(), 7);
}

#[test]
fn limit_picks_a_random_subset() {
    let m = membership();
    let body =
        br#"{"method":"get_n_service_nodes","params":{"limit":3,"fields":["pubkey_ed25519"]}}"#;
    let mut seen = BTreeSet::new();
    for seed in 0..20 {
        let v = handle(body, &m, &VecDeque::new(), &mut StdRng::seed_from_u64(seed));
        let s = states(&v);
        assert_eq!(s.len(), 3);
        let keys: BTreeSet<String> = s
            .iter()
            .map(|e| e["pubkey_ed25519"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(keys.len(), 3, "distinct nodes");
        seen.extend(keys);
    }
    assert!(seen.len() > 3, "different seeds pick different nodes");

    // More than there are: all of them. Negative: all, shuffled. Zero: all, in order.
    let all = |limit: i64, seed| {
        let body = format!(r#"{{"method":"get_n_service_nodes","params":{{"limit":{limit}}}}}"#);
        let v = handle(
            body.as_bytes(),
            &m,
            &VecDeque::new(),
            &mut StdRng::seed_from_u64(seed),
        );
        states(&v)
            .iter()
            .map(|e| e["pubkey_ed25519"].as_str().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(all(100, 1).len(), 7);
    let ordered = all(0, 1);
    let mut sorted = ordered.clone();
    sorted.sort();
    assert_eq!(ordered, sorted);
    assert!((0..10).any(|s| all(-1, s) != ordered));
    let mut shuffled = all(-1, 3);
    shuffled.sort();
    assert_eq!(shuffled, sorted);
}

#[test]
fn service_node_pubkeys_filter() {
    let body = format!(
        r#"{{"method":"get_service_nodes","params":{{"service_node_pubkeys":["{}","{}"]}}}}"#,
        hex::encode([2u8; 32]).to_uppercase(),
        hex::encode([9u8; 32])
    );
    let v = call(&body);
    let s = states(&v);
    assert_eq!(s.len(), 1);
    assert_eq!(s[0]["pubkey_ed25519"], hex::encode([2u8; 32]));
}

#[test]
fn errors_are_json_rpc_errors() {
    let code = |v: &Value| v["error"]["code"].as_i64().unwrap();
    assert_eq!(code(&call("{")), PARSE_ERROR);
    assert_eq!(code(&call("[1,2]")), INVALID_REQUEST);
    assert_eq!(code(&call(r#"{"id":1}"#)), INVALID_REQUEST);
    let v = call(r#"{"id":5,"method":"ons_resolve","params":{}}"#);
    assert_eq!(code(&v), METHOD_NOT_FOUND);
    assert_eq!(v["id"], 5);
    assert!(v.get("result").is_none());
    for params in [
        r#"[]"#,
        r#"{"fields":"public_ip"}"#,
        r#"{"fields":{"public_ip":1}}"#,
        r#"{"fields":[1]}"#,
        r#"{"active_only":"yes"}"#,
        r#"{"limit":"3"}"#,
        r#"{"poll_block_hash":5}"#,
        r#"{"service_node_pubkeys":"ab"}"#,
        r#"{"service_node_pubkeys":[1]}"#,
    ] {
        let body = format!(r#"{{"method":"get_service_nodes","params":{params}}}"#);
        assert_eq!(code(&call(&body)), INVALID_PARAMS, "{params}");
    }
}

#[test]
fn a_kept_height_is_answered_and_others_are_refused() {
    let now = membership();
    let older = Membership::new(40, "cd".repeat(32), now.nodes[..2].to_vec());
    let before: VecDeque<_> = [Arc::new(older)].into();
    let ask = |body: &str| {
        handle(
            body.as_bytes(),
            &now,
            &before,
            &mut StdRng::seed_from_u64(1),
        )
    };
    let v = ask(r#"{"method":"get_service_nodes","params":{"height":40}}"#);
    assert_eq!(v["result"]["height"], 40);
    assert_eq!(v["result"]["block_hash"], "cd".repeat(32));
    assert_eq!(states(&v).len(), 2);
    // The current height is the current listing; no height is too.
    for body in [
        r#"{"method":"get_service_nodes","params":{"height":42}}"#,
        r#"{"method":"get_service_nodes"}"#,
    ] {
        assert_eq!(ask(body)["result"]["height"], 42, "{body}");
    }
    // A height never served (41: made and replaced within one change) or forgotten, and a
    // malformed one, are errors, never another listing.
    for (height, why) in [
        ("41", HEIGHT_NOT_KEPT),
        ("7", HEIGHT_NOT_KEPT),
        ("-1", "height must be an integer"),
        ("\"40\"", "height must be an integer"),
    ] {
        let v = ask(&format!(
            r#"{{"method":"get_service_nodes","params":{{"height":{height}}}}}"#
        ));
        assert!(v.get("result").is_none(), "{height}");
        assert_eq!(v["error"]["code"], INVALID_PARAMS, "{height}");
        assert_eq!(v["error"]["message"], why, "{height}");
    }
}
