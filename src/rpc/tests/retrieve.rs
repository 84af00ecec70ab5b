//! Tests of `retrieve`: auth paths, paging, the size budget and its upstream figures.

use serde_json::{Value, json};

use super::util::*;
use crate::message::{AccountId, Message, Namespace, RETRIEVE_MAX_SIZE, message_hash};
use crate::rpc::retrieve::{UNLIMITED_COUNT, budget};
use crate::sign::{Access, SubaccountToken, msg};

fn put(n: &Net, account: &AccountId, ns: i16, data: &[u8]) -> String {
    let hash = message_hash(account, Namespace(ns), data);
    let m = Message {
        account: *account,
        namespace: Namespace(ns),
        hash: hash.clone(),
        timestamp_ms: NOW,
        expiry_ms: NOW + DAY,
        data: data.to_vec(),
        expiry_log: None,
    };
    n.entry().store.store(&m, NOW).expect("store");
    hash
}

fn signed(c: &Client, ns: i16, ts: i64) -> Value {
    json!({"pubkey": c.session().to_hex(), "pubkey_ed25519": c.ed_hex(), "namespace": ns,
        "timestamp": ts, "signature": c.sign(&msg::retrieve(Namespace(ns), ts))})
}

fn hashes(v: &Value) -> Vec<String> {
    v["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| m["hash"].as_str().expect("hash").to_string())
        .collect()
}

#[test]
fn budget_rules() {
    assert_eq!(budget(None, None), (UNLIMITED_COUNT, 1_560_000));
    assert_eq!(budget(Some(0), Some(0)), (UNLIMITED_COUNT, 1_560_000));
    assert_eq!(budget(None, Some(-3)), (UNLIMITED_COUNT, 2_600_000));
    assert_eq!(budget(None, Some(-1)), (UNLIMITED_COUNT, RETRIEVE_MAX_SIZE));
    assert_eq!(budget(None, Some(500_000)), (UNLIMITED_COUNT, 500_000));
    assert_eq!(
        budget(None, Some(RETRIEVE_MAX_SIZE + 1)),
        (UNLIMITED_COUNT, RETRIEVE_MAX_SIZE)
    );
    assert_eq!(budget(Some(100), None), (100, RETRIEVE_MAX_SIZE));
    assert_eq!(budget(Some(-4), None), (UNLIMITED_COUNT, 1_560_000));
    assert_eq!(budget(None, Some(i64::MIN)), (UNLIMITED_COUNT, 0));
}

#[tokio::test]
async fn upstream_big_retrieve_figures() {
    // network-tests/test_big_retrieve.py: 70 000-byte messages (93 476 accounted bytes each).
    let c = Client::new(1);
    let n = net(1, &c.session());
    for i in 0..100u8 {
        let mut data = vec![i; 70_000];
        data[0] = 0xAA;
        put(&n, &c.session(), 0, &data);
    }
    for (extra, expected) in [
        (json!({}), 16),
        (json!({"max_size": -3}), 27),
        (json!({"max_size": -1}), 83),
        (json!({"max_size": 500_000}), 5),
        (json!({"max_size": 600_000}), 6),
        (json!({"max_count": 100}), 83),
    ] {
        let mut p = signed(&c, 0, NOW);
        for (k, v) in extra.as_object().expect("obj") {
            p[k] = v.clone();
        }
        let r = n.call("retrieve", p).await;
        assert_eq!(r.status, 200);
        let v = json_of(&r);
        assert_eq!(hashes(v).len(), expected, "{extra}");
        assert_eq!(v["more"], json!(true));
    }
}

#[tokio::test]
async fn paging_with_last_hash() {
    let c = Client::new(1);
    let owner = c.session();
    let n = net(1, &owner);
    let all: Vec<String> = (0..5u8).map(|i| put(&n, &owner, 0, &[i])).collect();
    let mut p = signed(&c, 0, NOW);
    p["max_count"] = json!(2);
    let r = n.call("retrieve", p.clone()).await;
    let v = json_of(&r);
    assert_eq!(hashes(v), all[..2]);
    assert_eq!(v["more"], json!(true));
    let m0 = &v["messages"][0];
    assert_eq!(m0["timestamp"], json!(NOW));
    assert_eq!(m0["expiration"], json!(NOW + DAY));
    assert_eq!(m0["data"], json!("AA=="));
    assert!(m0.get("expiry").is_none());
    assert_eq!(
        (v["t"].clone(), v["hf"].clone()),
        (json!(NOW), json!([19, 4]))
    );

    p["last_hash"] = json!(all[1]);
    assert_eq!(
        hashes(json_of(&n.call("retrieve", p.clone()).await)),
        all[2..4]
    );
    let mut q = p.clone();
    q.as_object_mut().expect("obj").remove("last_hash");
    q["lastHash"] = json!(all[3]);
    q["max_count"] = json!(10);
    let v = json_of(&n.call("retrieve", q).await).clone();
    assert_eq!(hashes(&v), all[4..]);
    assert_eq!(v["more"], json!(false));
    // "" means from the start; a malformed hash is refused; both aliases at once too.
    p["last_hash"] = json!("");
    assert_eq!(
        hashes(json_of(&n.call("retrieve", p.clone()).await)),
        all[..2]
    );
    p["last_hash"] = json!("short");
    assert_text(
        &n.call("retrieve", p.clone()).await,
        400,
        "invalid request: Invalid value given for 'last_hash': expected base64 encoded message hash",
    );
    p["last_hash"] = json!(all[0]);
    p["lastHash"] = json!(all[0]);
    assert_text(
        &n.call("retrieve", p).await,
        400,
        "invalid request: Cannot specify both 'last_hash' and 'lastHash'",
    );
}

#[tokio::test]
async fn auth_paths() {
    let c = Client::new(1);
    let owner = c.session();
    let pk = owner.to_hex();
    let n = net(1, &owner);
    put(&n, &owner, 0, b"x");
    assert_text(
        &n.call("retrieve", json!({"pubkey": pk})).await,
        401,
        "retrieve: request signature required",
    );
    assert_text(
        &n.call("retrieve", json!({"pubkey": pk, "namespace": 0}))
            .await,
        400,
        "invalid request: Required field 'signature' missing",
    );
    assert_text(
        &n.call("retrieve", json!({"pubkey": pk, "timestamp": NOW}))
            .await,
        400,
        "invalid request: Required field 'signature' missing",
    );
    // The original's bug: it does not require the timestamp here. snode does.
    let mut p = signed(&c, 0, NOW);
    p.as_object_mut().expect("obj").remove("timestamp");
    assert_text(
        &n.call("retrieve", p).await,
        400,
        "invalid request: Required field 'timestamp' missing",
    );
    assert_text(
        &n.call("retrieve", signed(&c, 0, NOW + 60_001)).await,
        406,
        "retrieve timestamp too far from current time",
    );
    assert_eq!(
        n.call("retrieve", signed(&c, 0, NOW - 60_000)).await.status,
        200
    );
    let mut bad = signed(&c, 0, NOW);
    bad["signature"] = json!(c.sign(&msg::retrieve(Namespace(1), NOW)));
    assert_text(
        &n.call("retrieve", bad).await,
        401,
        "retrieve signature verification failed",
    );
    let mut other = signed(&c, 0, NOW);
    other["pubkey_ed25519"] = json!(Client::new(2).ed_hex());
    assert_text(
        &n.call("retrieve", other).await,
        401,
        "retrieve signature verification failed",
    );
    let r = n.call("retrieve", signed(&c, 0, NOW)).await;
    assert_eq!(hashes(json_of(&r)).len(), 1);
}

#[tokio::test]
async fn noauth_namespaces() {
    let c = Client::new(1);
    let owner = c.session();
    let n = net(1, &owner);
    let legacy = put(&n, &owner, -10, b"legacy");
    let outbox = put(&n, &owner, -1, b"outbox");
    for (ns, h) in [(-10, &legacy), (-1, &outbox)] {
        let r = n
            .call(
                "retrieve",
                json!({"pubkey": owner.to_hex(), "namespace": ns}),
            )
            .await;
        assert_eq!(r.status, 200);
        assert_eq!(&hashes(json_of(&r)), std::slice::from_ref(h));
    }
    // Signed requests to those namespaces are verified like any other.
    let mut p = signed(&c, -10, NOW);
    p["signature"] = json!(c.sign(b"nope"));
    assert_eq!(n.call("retrieve", p).await.status, 401);
    assert_eq!(n.call("retrieve", signed(&c, -10, NOW)).await.status, 200);
}

#[tokio::test]
async fn testing_namespace_reads_empty() {
    let c = Client::new(1);
    let owner = c.session();
    let n = net(1, &owner);
    put(&n, &owner, -3741, b"hidden");
    let r = n.call("retrieve", signed(&c, -3741, NOW)).await;
    assert_eq!(r.status, 200);
    assert_eq!(json_of(&r)["messages"], json!([]));
}

#[tokio::test]
async fn subaccounts_and_revocation() {
    let admin = Client::new(3);
    let member = Client::new(4);
    let group = admin.group();
    let n = net(1, &group);
    put(&n, &group, 11, b"group msg");
    put(&n, &group, -11, b"unrevocable");
    let token = SubaccountToken::new(3, Access::READ, member.ed());
    let req = |ns: i16| {
        json!({"pubkey": group.to_hex(), "namespace": ns, "timestamp": NOW,
            "signature": member.sign(&msg::retrieve(Namespace(ns), NOW)),
            "subaccount": crate::message::b64(&token.0), "subaccount_sig": admin.sign(&token.0)})
    };
    assert_eq!(hashes(json_of(&n.call("retrieve", req(11)).await)).len(), 1);
    n.entry()
        .store
        .revoke_subaccounts(&group, &[token.0], NOW)
        .expect("revoke");
    assert_text(
        &n.call("retrieve", req(11)).await,
        401,
        "retrieve signature verification failed",
    );
    // Revoked members may still read the unrevocable namespaces.
    assert_eq!(
        hashes(json_of(&n.call("retrieve", req(-11)).await)).len(),
        1
    );
    // A write-only token cannot read.
    let w = SubaccountToken::new(3, Access::WRITE, member.ed());
    let mut p = req(11);
    p["subaccount"] = json!(crate::message::b64(&w.0));
    p["subaccount_sig"] = json!(admin.sign(&w.0));
    assert_eq!(n.call("retrieve", p).await.status, 401);
}

#[tokio::test]
async fn reverse_direction_pages_from_the_newest_backwards() {
    let c = Client::new(1);
    let owner = c.session();
    let n = net(1, &owner);
    let all: Vec<String> = (0..5u8).map(|i| put(&n, &owner, 0, &[i])).collect();
    let newest_first: Vec<String> = all.iter().rev().cloned().collect();
    let mut p = signed(&c, 0, NOW);
    p["reverse_direction"] = json!(true);
    p["max_count"] = json!(2);
    let v = json_of(&n.call("retrieve", p.clone()).await).clone();
    assert_eq!(hashes(&v), newest_first[..2]);
    assert_eq!(v["more"], json!(true));
    // `last_hash` pages backwards: only older messages, none repeated.
    p["last_hash"] = json!(all[3]);
    let v = json_of(&n.call("retrieve", p.clone()).await).clone();
    assert_eq!(hashes(&v), newest_first[2..4]);
    assert_eq!(v["more"], json!(true));
    p["last_hash"] = json!(all[1]);
    let v = json_of(&n.call("retrieve", p.clone()).await).clone();
    assert_eq!(hashes(&v), newest_first[4..]);
    assert_eq!(v["more"], json!(false));
    // An unknown or empty cursor starts from the newest.
    for cursor in ["A".repeat(43), String::new()] {
        p["last_hash"] = json!(cursor);
        assert_eq!(
            hashes(json_of(&n.call("retrieve", p.clone()).await)),
            newest_first[..2]
        );
    }
    // `false` is the forwards order.
    p["reverse_direction"] = json!(false);
    p.as_object_mut().expect("obj").remove("last_hash");
    assert_eq!(
        hashes(json_of(&n.call("retrieve", p.clone()).await)),
        all[..2]
    );
    // A non-boolean is refused like any malformed field.
    p["reverse_direction"] = json!("yes");
    assert_eq!(n.call("retrieve", p).await.status, 400);
}
