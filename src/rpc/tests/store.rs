//! Tests of `store` and of the recursive aggregation it shares with the other swarm-wide
//! methods.

use serde_json::{Value, json};

use super::util::*;
use crate::message::{Namespace, message_hash};
use crate::rpc::{ForwardOutcome, Origin, handle_method};
use crate::sign::{Access, SubaccountToken, msg};

fn store_params(pubkey: &str, ns: i16, data: &str) -> Value {
    json!({"pubkey": pubkey, "timestamp": NOW, "ttl": DAY, "data": data, "namespace": ns})
}

fn entry<'a>(v: &'a Value, n: &Net, i: usize) -> &'a Value {
    &v["swarm"][n.hex(i)]
}

#[tokio::test]
async fn public_store_is_signed_per_node_and_deduplicated() {
    let c = Client::new(1);
    let owner = c.session();
    let n = net(1, &owner);
    let r = n
        .call("store", store_params(&owner.to_hex(), 0, "aGVsbG8="))
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    let v = json_of(&r);
    let hash = message_hash(&owner, Namespace(0), b"hello");
    assert_eq!(v["hash"], json!(hash));
    assert_eq!(
        (v["t"].clone(), v["hf"].clone()),
        (json!(NOW), json!([19, 4]))
    );
    let e = entry(v, &n, 0);
    assert_eq!(e["hash"], json!(hash));
    assert_eq!(e["expiry"], json!(NOW + DAY));
    assert!(e.get("already").is_none());
    assert!(node_signed(n.entry(), hash.as_bytes(), &e["signature"]));
    assert_eq!(n.entry().metrics.messages_stored_total.get(), 1);
    assert_eq!(n.entry().metrics.bytes_stored_total.get(), 5);

    // The same content again: "already", not counted again.
    let r = n
        .call("store", store_params(&owner.to_hex(), 0, "aGVsbG8="))
        .await;
    assert_eq!(entry(json_of(&r), &n, 0)["already"], json!(true));
    assert_eq!(n.entry().metrics.messages_stored_total.get(), 1);

    // Retrievable by the owner.
    let got = n
        .entry()
        .store
        .get_by_hash(&hash, NOW)
        .expect("get")
        .expect("stored");
    assert_eq!(
        (got.data.as_slice(), got.timestamp_ms, got.expiry_ms),
        (&b"hello"[..], NOW, NOW + DAY)
    );
}

#[tokio::test]
async fn store_field_variants() {
    let c = Client::new(1);
    let owner = c.session();
    let n = net(1, &owner);
    // expiry instead of ttl; stringified timestamp and ttl; pubKey alias.
    let r = n
        .call("store", json!({"pubKey": owner.to_hex(), "timestamp": NOW, "expiry": NOW + 20_000, "data": "YQ=="}))
        .await;
    assert_eq!(entry(json_of(&r), &n, 0)["expiry"], json!(NOW + 20_000));
    let r = n
        .call("store", json!({"pubkey": owner.to_hex(), "timestamp": NOW.to_string(), "ttl": "30000", "data": "Yg=="}))
        .await;
    assert_eq!(entry(json_of(&r), &n, 0)["expiry"], json!(NOW + 30_000));
}

#[tokio::test]
async fn store_param_errors() {
    let c = Client::new(1);
    let owner = c.session();
    let pk = owner.to_hex();
    let n = net(1, &owner);
    let cases = [
        (
            json!({"pubkey": pk, "timestamp": NOW, "ttl": DAY, "expiry": NOW + DAY, "data": "YQ=="}),
            "invalid request: Cannot specify both 'ttl' and 'expiry'",
        ),
        (
            json!({"pubkey": pk, "timestamp": NOW, "data": "YQ=="}),
            "invalid request: Required field 'ttl' missing",
        ),
        (
            json!({"pubkey": pk, "ttl": DAY, "data": "YQ=="}),
            "invalid request: Required field 'timestamp' missing",
        ),
        (
            json!({"pubkey": pk, "timestamp": NOW, "ttl": DAY}),
            "invalid request: Required field 'data' missing",
        ),
        (
            json!({"pubkey": pk, "timestamp": -5, "ttl": DAY, "data": "YQ=="}),
            "invalid request: Invalid value given for 'timestamp': expected integer timestamp (in milliseconds)",
        ),
        (
            json!({"pubkey": pk, "timestamp": 999_999_999, "ttl": DAY, "data": "YQ=="}),
            "invalid request: Invalid timestamp for 'timestamp': timestamp must be in milliseconds",
        ),
        (
            json!({"pubkey": pk, "timestamp": NOW, "ttl": DAY, "data": "YQ==", "namespace": 40000}),
            "invalid request: Invalid value given for 'namespace': value out of range",
        ),
        (
            json!({"pubkey": pk, "timestamp": NOW, "ttl": DAY, "data": "YQ==", "namespace": "all"}),
            "invalid request: Invalid value given for 'namespace': expected integer",
        ),
        (
            json!({"pubkey": pk, "timestamp": NOW, "ttl": DAY, "data": "!!!"}),
            "invalid request: Invalid value given for 'data': expected base64 encoded data",
        ),
        (
            json!({"pubkey": pk, "timestamp": NOW, "ttl": DAY, "data": "YQ==", "namespace": 2, "signature": "abc"}),
            "invalid request: invalid signature: expected base64 encoded Ed25519 signature",
        ),
    ];
    for (params, text) in cases {
        assert_text(&n.call("store", params).await, 400, text);
    }
    // The largest body passes, one byte more is refused (and counted as "size").
    let max = crate::message::b64(&vec![7u8; crate::message::MAX_DATA_BYTES]);
    assert_eq!(
        n.call("store", store_params(&pk, 0, &max)).await.status,
        200
    );
    let over = crate::message::b64(&vec![7u8; crate::message::MAX_DATA_BYTES + 1]);
    let r = n.call("store", store_params(&pk, 0, &over)).await;
    assert_eq!(r.status, 400);
    assert!(text_of(&r).starts_with("invalid request: Invalid value given for 'data'"));
    let size = n
        .entry()
        .metrics
        .messages_rejected_total
        .with_label_values(&["size"])
        .get();
    assert_eq!(size, 1);
}

#[tokio::test]
async fn ttl_and_clock_checks() {
    let c = Client::new(1);
    let owner = c.session();
    let pk = owner.to_hex();
    let n = net(1, &owner);
    let ttl = |ns: i16, ttl: i64| json!({"pubkey": pk, "timestamp": NOW, "ttl": ttl, "data": "YQ==", "namespace": ns});
    for (ns, t) in [(0, 9_999), (0, 14 * DAY + 1), (-10, 14 * DAY + 1)] {
        assert_text(
            &n.call("store", ttl(ns, t)).await,
            403,
            "Provided expiry/TTL is not valid.",
        );
    }
    assert_eq!(n.call("store", ttl(0, 10_000)).await.status, 200);
    assert_eq!(n.call("store", ttl(0, 14 * DAY)).await.status, 200);
    assert_eq!(
        n.entry()
            .metrics
            .messages_rejected_total
            .with_label_values(&["ttl"])
            .get(),
        3
    );

    let at = |ts: i64, ttl: i64| json!({"pubkey": pk, "timestamp": ts, "ttl": ttl, "data": "Yw=="});
    assert_text(
        &n.call("store", at(NOW + 10_001, DAY)).await,
        406,
        "Timestamp error: check your clock",
    );
    assert_text(
        &n.call("store", at(NOW - DAY, DAY - 10_001)).await,
        406,
        "Timestamp error: check your clock",
    );
    assert_eq!(n.call("store", at(NOW + 10_000, DAY)).await.status, 200);
    assert_eq!(
        n.call("store", at(NOW - DAY, DAY - 10_000)).await.status,
        200
    );
}

#[tokio::test]
async fn authenticated_namespaces() {
    let c = Client::new(1);
    let owner = c.session();
    let pk = owner.to_hex();
    let n = net(1, &owner);
    let base = |ns: i16| json!({"pubkey": pk, "timestamp": NOW, "ttl": 20 * DAY, "data": "YQ==", "namespace": ns});
    assert_text(
        &n.call("store", base(2)).await,
        401,
        "store: signature required to store to namespace 2",
    );

    let signed = |ns: i16, sig_ts: i64, sig: String| {
        let mut p = base(ns);
        p["signature"] = json!(sig);
        p["pubkey_ed25519"] = json!(c.ed_hex());
        p["sig_timestamp"] = json!(sig_ts);
        p
    };
    // 30-day TTLs are fine outside public inboxes; the signature covers sig_timestamp.
    let ok = signed(
        2,
        NOW - 50_000,
        c.sign(&msg::store(Namespace(2), NOW - 50_000)),
    );
    assert_eq!(n.call("store", ok).await.status, 200);
    let skew = signed(
        2,
        NOW - 61_000,
        c.sign(&msg::store(Namespace(2), NOW - 61_000)),
    );
    assert_text(
        &n.call("store", skew).await,
        406,
        "store signature timestamp too far from current time",
    );
    let wrong = signed(2, NOW, c.sign(&msg::store(Namespace(3), NOW)));
    assert_text(
        &n.call("store", wrong).await,
        401,
        "store signature verification failed",
    );
    // sig_timestamp defaults to timestamp.
    let mut p = base(-42);
    p["signature"] = json!(c.sign(&msg::store(Namespace(-42), NOW)));
    p["pubkey_ed25519"] = json!(c.ed_hex());
    assert_eq!(n.call("store", p).await.status, 200);
    // A 05 account without pubkey_ed25519 cannot verify.
    let mut p = base(2);
    p["signature"] = json!(c.sign(&msg::store(Namespace(2), NOW)));
    assert_text(
        &n.call("store", p).await,
        401,
        "store signature verification failed",
    );
    // Public inbox: a signature is format-checked but not verified.
    let mut p = base(0);
    p["ttl"] = json!(DAY);
    p["signature"] = json!(c.sign(b"anything"));
    assert_eq!(n.call("store", p).await.status, 200);
    assert_eq!(
        n.entry()
            .metrics
            .messages_rejected_total
            .with_label_values(&["auth"])
            .get(),
        3
    );
}

#[tokio::test]
async fn pubkey_ed25519_only_for_session_ids() {
    let admin = Client::new(3);
    let group = admin.group();
    let n = net(1, &group);
    let p = json!({"pubkey": group.to_hex(), "timestamp": NOW, "ttl": DAY, "data": "YQ==", "namespace": 11,
        "signature": admin.sign(&msg::store(Namespace(11), NOW)), "pubkey_ed25519": admin.ed_hex()});
    assert_text(
        &n.call("store", p).await,
        400,
        "invalid request: pubkey_ed25519 is only permitted for 05[...] pubkeys",
    );
}

#[tokio::test]
async fn group_subaccount_store() {
    let admin = Client::new(3);
    let member = Client::new(4);
    let group = admin.group();
    let n = net(1, &group);
    let store_as = |flags: Access, ns: i16| {
        let token = SubaccountToken::new(3, flags, member.ed());
        json!({"pubkey": group.to_hex(), "timestamp": NOW, "ttl": DAY, "data": crate::message::b64(&[ns as u8]),
            "namespace": ns, "signature": member.sign(&msg::store(Namespace(ns), NOW)),
            "subaccount": crate::message::b64(&token.0), "subaccount_sig": admin.sign(&token.0)})
    };
    assert_eq!(
        n.call("store", store_as(Access::WRITE, 11)).await.status,
        200
    );
    let r = n.call("store", store_as(Access::READ, 11)).await;
    assert_text(&r, 401, "store signature verification failed");
    // Public outbox (-21): needs Write and Delete.
    assert_text(
        &n.call("store", store_as(Access::WRITE, -21)).await,
        401,
        "store signature verification failed",
    );
    assert_eq!(
        n.call("store", store_as(Access::WRITE | Access::DELETE, -21))
            .await
            .status,
        200
    );
    // Hex tokens are accepted too; a token without its signature is a parse error.
    let token = SubaccountToken::new(3, Access::WRITE, member.ed());
    let mut p = store_as(Access::WRITE, 12);
    p["subaccount"] = json!(hex::encode(token.0));
    assert_eq!(n.call("store", p.clone()).await.status, 200);
    p.as_object_mut().expect("obj").remove("subaccount_sig");
    assert_text(
        &n.call("store", p).await,
        400,
        "invalid request: Required field 'subaccount_sig' missing",
    );
    // Group admin signs directly with the group key.
    let p = json!({"pubkey": group.to_hex(), "timestamp": NOW, "ttl": DAY, "data": "eA==", "namespace": 13,
        "signature": admin.sign(&msg::store(Namespace(13), NOW))});
    assert_eq!(n.call("store", p).await.status, 200);
}

#[tokio::test]
async fn testing_namespace_refuses_stores() {
    let c = Client::new(1);
    let owner = c.session();
    let n = net(2, &owner);
    let p = json!({"pubkey": owner.to_hex(), "timestamp": NOW, "ttl": DAY, "data": "YQ==", "namespace": -3741,
        "signature": c.sign(&msg::store(Namespace(-3741), NOW)), "pubkey_ed25519": c.ed_hex()});
    assert_text(
        &n.call("store", p).await,
        400,
        "invalid request: testing namespace",
    );
    assert!(n.forwarder.calls.lock().expect("lock").is_empty());
    assert_eq!(
        n.entry()
            .metrics
            .messages_rejected_total
            .with_label_values(&["namespace"])
            .get(),
        1
    );
}

#[tokio::test]
async fn store_replicates_to_the_swarm() {
    let c = Client::new(1);
    let owner = c.session();
    let n = net(3, &owner);
    let params = store_params(&owner.to_hex(), 0, "aGVsbG8=");
    let r = n.call("store", params.clone()).await;
    assert_eq!(r.status, 200);
    let v = json_of(&r);
    let hash = message_hash(&owner, Namespace(0), b"hello");
    assert_eq!(v["swarm"].as_object().map(|m| m.len()), Some(3));
    for i in 0..3 {
        let e = entry(v, &n, i);
        assert_eq!(e["hash"], json!(hash), "node {i}");
        assert!(
            node_signed(&n.nodes[i], hash.as_bytes(), &e["signature"]),
            "node {i}"
        );
        assert!(
            n.nodes[i]
                .store
                .get_by_hash(&hash, NOW)
                .expect("get")
                .is_some(),
            "node {i}"
        );
    }
    // One forward, to both peers, with the client's own params.
    let calls = n.forwarder.calls.lock().expect("lock").clone();
    assert_eq!(calls, vec![("store".to_string(), params.clone(), 2)]);
    // A peer answers a forwarded request with its entry alone and never forwards again.
    let r = handle_method(&n.nodes[1], "store", &params, Origin::Peer).await;
    assert_eq!(r.status, 200);
    let e = json_of(&r);
    assert_eq!(
        (e["hash"].clone(), e["already"].clone()),
        (json!(hash), json!(true))
    );
    assert!(e.get("swarm").is_none() && e.get("t").is_none());
    assert_eq!(n.forwarder.calls.lock().expect("lock").len(), 1);
}

#[tokio::test]
async fn failed_peers_are_reported_per_entry() {
    let c = Client::new(1);
    let owner = c.session();
    let n = net(4, &owner);
    n.script(1, ForwardOutcome::Timeout);
    n.script(
        2,
        ForwardOutcome::Failed {
            code: 421,
            reason: "wrong swarm".into(),
        },
    );
    n.script(3, ForwardOutcome::BadResponse);
    let r = n
        .call("store", store_params(&owner.to_hex(), 0, "YQ=="))
        .await;
    assert_eq!(r.status, 200, "our own entry succeeded");
    let v = json_of(&r);
    assert_eq!(entry(v, &n, 1), &json!({"failed": true, "timeout": true}));
    assert_eq!(
        entry(v, &n, 2),
        &json!({"failed": true, "code": "421", "reason": "wrong swarm"})
    );
    assert_eq!(
        entry(v, &n, 3),
        &json!({"failed": true, "bad_peer_response": true})
    );
    let m = &n.entry().metrics.swarm_forwards_total;
    let counts: Vec<u64> = ["ok", "timeout", "failed", "bad_response"]
        .iter()
        .map(|l| m.with_label_values(&[l]).get())
        .collect();
    assert_eq!(counts, vec![0, 1, 1, 1]);
}

#[tokio::test]
async fn every_entry_failed_is_500() {
    let c = Client::new(1);
    let owner = c.session();
    // A cap of 0 bytes: our own store is refused as full.
    let n = net_with(2, &owner, 0);
    n.script(1, ForwardOutcome::Timeout);
    let r = n
        .call("store", store_params(&owner.to_hex(), 0, "YQ=="))
        .await;
    assert_eq!(r.status, 500);
    let v = json_of(&r);
    assert_eq!(
        entry(v, &n, 0),
        &json!({"failed": true, "query_failure": true})
    );
    assert_eq!(
        n.entry()
            .metrics
            .messages_rejected_total
            .with_label_values(&["full"])
            .get(),
        1
    );
    // One peer succeeding is enough for 200.
    let n = net_with(2, &owner, 0);
    let r = n
        .call("store", store_params(&owner.to_hex(), 0, "YQ=="))
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(entry(json_of(&r), &n, 0)["failed"], json!(true));
    assert!(entry(json_of(&r), &n, 1)["signature"].is_string());
}

#[tokio::test]
async fn peer_entries_with_integer_flags_count_as_failed() {
    assert!(crate::rpc::recursive::is_failed(&json!({"failed": 1})));
    assert!(crate::rpc::recursive::is_failed(&json!({"failed": true})));
    assert!(!crate::rpc::recursive::is_failed(&json!({"failed": 0})));
    assert!(!crate::rpc::recursive::is_failed(&json!({"hash": "x"})));
}
