//! Tests of `delete`, `delete_all`, `delete_before` and `expire_all`.

use serde_json::{Value, json};

use super::util::*;
use crate::message::{AccountId, Message, Namespace, NamespaceSel, message_hash};
use crate::rpc::{Origin, handle_method};
use crate::sign::{Access, SubaccountToken, msg};

fn put(ctx: &crate::rpc::RpcContext, account: &AccountId, ns: i16, data: &[u8], ts: i64) -> String {
    let hash = message_hash(account, Namespace(ns), data);
    let m = Message {
        account: *account,
        namespace: Namespace(ns),
        hash: hash.clone(),
        timestamp_ms: ts,
        expiry_ms: NOW + DAY,
        data: data.to_vec(),
        expiry_log: None,
    };
    ctx.store.store(&m, NOW).expect("store");
    hash
}

fn put_all(n: &Net, account: &AccountId, ns: i16, data: &[u8], ts: i64) -> String {
    let all: Vec<String> = n
        .nodes
        .iter()
        .map(|c| put(c, account, ns, data, ts))
        .collect();
    all[0].clone()
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

fn auth(c: &Client, m: &[u8]) -> Value {
    json!({"pubkey": c.session().to_hex(), "pubkey_ed25519": c.ed_hex(), "signature": c.sign(m)})
}

fn with(mut base: Value, extra: Value) -> Value {
    for (k, v) in extra.as_object().expect("obj") {
        base[k] = v.clone();
    }
    base
}

#[tokio::test]
async fn delete_listed_hashes() {
    let c = Client::new(1);
    let owner = c.session();
    let n = net(2, &owner);
    let h1 = put_all(&n, &owner, 0, b"one", NOW);
    let h2 = put_all(&n, &owner, 5, b"two", NOW);
    let keep = put_all(&n, &owner, 0, b"keep", NOW);
    let missing = message_hash(&owner, Namespace(0), b"never stored");
    let req = vec![h2.clone(), missing.clone(), h1.clone()];
    let p = with(auth(&c, &msg::delete(&req)), json!({"messages": req}));
    let r = n.call("delete", p).await;
    assert_eq!(r.status, 200, "{r:?}");
    let v = json_of(&r);
    assert_eq!(
        (v["t"].clone(), v["hf"].clone()),
        (json!(NOW), json!([19, 4]))
    );
    let deleted = sorted(vec![h1.clone(), h2.clone()]);
    for i in 0..2 {
        let e = &v["swarm"][n.hex(i)];
        assert_eq!(e["deleted"], json!(deleted), "node {i}");
        // PUBKEY_HEX ‖ requested (request order) ‖ deleted (sorted).
        let signed = format!(
            "{}{}{}{}{}{}",
            owner.to_hex(),
            h2,
            missing,
            h1,
            deleted[0],
            deleted[1]
        );
        assert!(
            node_signed(&n.nodes[i], signed.as_bytes(), &e["signature"]),
            "node {i}"
        );
        assert!(
            n.nodes[i]
                .store
                .get_by_hash(&keep, NOW)
                .expect("get")
                .is_some()
        );
        assert!(
            n.nodes[i]
                .store
                .get_by_hash(&h1, NOW)
                .expect("get")
                .is_none()
        );
    }
}

#[tokio::test]
async fn delete_errors_and_required() {
    let c = Client::new(1);
    let owner = c.session();
    let n = net(2, &owner);
    let h = message_hash(&owner, Namespace(0), b"absent");
    let ok =
        |hashes: Vec<String>| with(auth(&c, &msg::delete(&hashes)), json!({"messages": hashes}));
    let mut bad = ok(vec![h.clone()]);
    bad["signature"] = json!(c.sign(b"deleteX"));
    assert_text(
        &n.call("delete", bad).await,
        401,
        "delete_msgs signature verification failed",
    );
    assert_text(
        &n.call("delete", ok(vec![])).await,
        400,
        "invalid request: messages does not contain any message hashes",
    );
    assert_text(
        &n.call("delete", ok(vec!["xyz".into()])).await,
        400,
        "invalid request: invalid message hash: xyz",
    );
    let many: Vec<String> = (0..1001).map(|_| h.clone()).collect();
    assert_eq!(n.call("delete", ok(many)).await.status, 400);
    // A single string stands for a one-element list.
    let single = with(
        auth(&c, &msg::delete(std::slice::from_ref(&h))),
        json!({"messages": h}),
    );
    assert_eq!(n.call("delete", single).await.status, 200);
    // required: nothing deleted anywhere → 404 with the usual body.
    let req = with(ok(vec![h.clone()]), json!({"required": true}));
    let r = n.call("delete", req.clone()).await;
    assert_eq!(r.status, 404);
    assert_eq!(json_of(&r)["swarm"][n.hex(1)]["deleted"], json!([]));
    // Deleted on one peer only → 200. The delete above left an unheld tombstone there, so the
    // message is stored as a client's new store a while after it (within a minute it loses).
    let later = Message {
        account: owner,
        namespace: Namespace(0),
        hash: h.clone(),
        timestamp_ms: NOW,
        expiry_ms: NOW + DAY,
        data: b"absent".to_vec(),
        expiry_log: None,
    };
    let again = NOW + 2 * 60_000;
    let stored = n.nodes[1].store.store(&later, again).expect("store");
    assert_eq!(stored, crate::store::StoreOutcome::New);
    assert_eq!(n.call("delete", req).await.status, 200);
}

#[tokio::test]
async fn delete_needs_delete_access() {
    let admin = Client::new(3);
    let member = Client::new(4);
    let group = admin.group();
    let n = net(1, &group);
    let h = put(n.entry(), &group, 11, b"m", NOW);
    let as_member = |flags: Access| {
        let t = SubaccountToken::new(3, flags, member.ed());
        json!({"pubkey": group.to_hex(), "messages": [h], "signature": member.sign(&msg::delete(std::slice::from_ref(&h))),
            "subaccount": crate::message::b64(&t.0), "subaccount_sig": admin.sign(&t.0)})
    };
    assert_eq!(
        n.call("delete", as_member(Access::READ | Access::WRITE))
            .await
            .status,
        401
    );
    let r = n.call("delete", as_member(Access::DELETE)).await;
    assert_eq!(json_of(&r)["swarm"][n.hex(0)]["deleted"], json!([h]));
}

#[tokio::test]
async fn delete_all_one_namespace_and_all() {
    let c = Client::new(1);
    let owner = c.session();
    let n = net(2, &owner);
    let a = put_all(&n, &owner, 0, b"a", NOW);
    let b = put_all(&n, &owner, 0, b"b", NOW);
    let x = put_all(&n, &owner, 3, b"x", NOW);
    let y = put_all(&n, &owner, -5, b"y", NOW);
    let one = NamespaceSel::One(Namespace(0));
    let p = with(
        auth(&c, &msg::delete_all(one, NOW)),
        json!({"timestamp": NOW}),
    );
    let r = n.call("delete_all", p).await;
    assert_eq!(r.status, 200);
    let e = &json_of(&r)["swarm"][n.hex(1)];
    let ab = sorted(vec![a.clone(), b.clone()]);
    assert_eq!(e["deleted"], json!(ab));
    let signed = format!("{}{}{}{}", owner.to_hex(), NOW, ab[0], ab[1]);
    assert!(node_signed(&n.nodes[1], signed.as_bytes(), &e["signature"]));

    let p = with(
        auth(&c, &msg::delete_all(NamespaceSel::All, NOW)),
        json!({"timestamp": NOW, "namespace": "all"}),
    );
    let r = n.call("delete_all", p).await;
    let e = &json_of(&r)["swarm"][n.hex(0)];
    assert_eq!(e["deleted"], json!({"3": [x], "-5": [y]}));
    let xy = sorted(vec![x.clone(), y.clone()]);
    let signed = format!("{}{}{}{}", owner.to_hex(), NOW, xy[0], xy[1]);
    assert!(node_signed(n.entry(), signed.as_bytes(), &e["signature"]));
}

#[tokio::test]
async fn delete_all_time_window() {
    let c = Client::new(1);
    let owner = c.session();
    let n = net(1, &owner);
    let one = NamespaceSel::One(Namespace(0));
    let at = |ts: i64| {
        with(
            auth(&c, &msg::delete_all(one, ts)),
            json!({"timestamp": ts}),
        )
    };
    assert_text(
        &n.call("delete_all", at(NOW - 65_000)).await,
        406,
        "delete_all timestamp too far from current time",
    );
    // A forwarded request gets 70 s.
    let r = handle_method(n.entry(), "delete_all", &at(NOW - 65_000), Origin::Peer).await;
    assert_eq!(r.status, 200);
    assert!(
        json_of(&r).get("deleted").is_some(),
        "peer answers its entry alone"
    );
    let mut bad = at(NOW);
    bad["signature"] = json!(c.sign(&msg::delete_all(NamespaceSel::All, NOW)));
    assert_text(
        &n.call("delete_all", bad).await,
        401,
        "delete_all signature verification failed",
    );
    let missing = auth(&c, b"x");
    assert_text(
        &n.call("delete_all", missing).await,
        400,
        "invalid request: Required field 'timestamp' missing",
    );
    let nosig = json!({"pubkey": owner.to_hex(), "timestamp": NOW});
    assert_text(
        &n.call("delete_all", nosig).await,
        400,
        "invalid request: Required field 'signature' missing",
    );
    let badns = with(at(NOW), json!({"namespace": "some"}));
    assert_text(
        &n.call("delete_all", badns).await,
        400,
        "invalid request: Invalid value given for 'namespace': expected integer or \"all\"",
    );
}

#[tokio::test]
async fn delete_before_all_namespaces() {
    let c = Client::new(1);
    let owner = c.session();
    let n = net(1, &owner);
    let old0 = put_all(&n, &owner, 0, b"old0", NOW - 5_000);
    let old7 = put_all(&n, &owner, 7, b"old7", NOW - 4_000);
    let newer = put_all(&n, &owner, 7, b"new", NOW);
    let before = NOW - 4_000;
    let p = with(
        auth(&c, &msg::delete_before(NamespaceSel::All, before)),
        json!({"before": before, "namespace": "all"}),
    );
    let r = n.call("delete_before", p).await;
    assert_eq!(r.status, 200, "{r:?}");
    let e = &json_of(&r)["swarm"][n.hex(0)];
    assert_eq!(e["deleted"], json!({"0": [old0], "7": [old7]}));
    let both = sorted(vec![old0, old7]);
    let signed = format!("{}{}{}{}", owner.to_hex(), before, both[0], both[1]);
    assert!(node_signed(n.entry(), signed.as_bytes(), &e["signature"]));
    assert!(
        n.entry()
            .store
            .get_by_hash(&newer, NOW)
            .expect("get")
            .is_some()
    );

    let future = NOW + 60_001;
    let p = with(
        auth(
            &c,
            &msg::delete_before(NamespaceSel::One(Namespace(0)), future),
        ),
        json!({"before": future}),
    );
    assert_text(
        &n.call("delete_before", p).await,
        401,
        "delete_before timestamp too far in the future",
    );
}

#[tokio::test]
async fn expire_all_only_shortens() {
    let c = Client::new(1);
    let owner = c.session();
    let n = net(2, &owner);
    let long = put_all(&n, &owner, 0, b"long", NOW);
    let sel = NamespaceSel::One(Namespace(0));
    let target = NOW + 3_600_000;
    let p = with(
        auth(&c, &msg::expire_all(sel, target)),
        json!({"expiry": target}),
    );
    let r = n.call("expire_all", p).await;
    assert_eq!(r.status, 200);
    for i in 0..2 {
        let e = &json_of(&r)["swarm"][n.hex(i)];
        assert_eq!(e["updated"], json!([long]));
        let signed = format!("{}{}{}", owner.to_hex(), target, long);
        assert!(node_signed(&n.nodes[i], signed.as_bytes(), &e["signature"]));
        let m = n.nodes[i]
            .store
            .get_by_hash(&long, NOW)
            .expect("get")
            .expect("kept");
        assert_eq!(m.expiry_ms, target);
    }
    // Raising is not possible with expire_all.
    let later = NOW + DAY;
    let p = with(
        auth(&c, &msg::expire_all(sel, later)),
        json!({"expiry": later}),
    );
    let r = n.call("expire_all", p).await;
    assert_eq!(json_of(&r)["swarm"][n.hex(0)]["updated"], json!([]));
    let past = NOW - 61_000;
    let p = with(
        auth(&c, &msg::expire_all(sel, past)),
        json!({"expiry": past}),
    );
    assert_text(
        &n.call("expire_all", p).await,
        406,
        "expire_all timestamp should be >= current time",
    );
    let mut bad = with(
        auth(&c, &msg::expire_all(sel, target)),
        json!({"expiry": target}),
    );
    bad["namespace"] = json!("all");
    assert_text(
        &n.call("expire_all", bad).await,
        401,
        "expire_all signature verification failed",
    );
}
