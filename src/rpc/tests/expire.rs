//! Tests of `expire` (single, multi, shorten/extend, subaccount rules) and `get_expiries`.

use serde_json::{Value, json};

use super::util::*;
use crate::message::{AccountId, Message, Namespace, TTL_MAXIMUM_PRIVATE_MS, message_hash};
use crate::sign::{Access, SubaccountToken, msg};

fn put(n: &Net, account: &AccountId, data: &[u8], expiry: i64) -> String {
    let hash = message_hash(account, Namespace(0), data);
    for ctx in &n.nodes {
        let m = Message {
            account: *account,
            namespace: Namespace(0),
            hash: hash.clone(),
            timestamp_ms: NOW,
            expiry_ms: expiry,
            data: data.to_vec(),
            expiry_log: None,
        };
        ctx.store.store(&m, NOW).expect("store");
    }
    hash
}

fn expire_req(c: &Client, mode: &str, expiry: Value, hashes: &[String]) -> Value {
    let list: Vec<i64> = match &expiry {
        Value::Array(a) => a.iter().map(|v| v.as_i64().expect("int")).collect(),
        v => vec![v.as_i64().expect("int")],
    };
    let mut p = json!({"pubkey": c.session().to_hex(), "pubkey_ed25519": c.ed_hex(), "messages": hashes,
        "expiry": expiry, "signature": c.sign(&msg::expire(mode, &list, hashes))});
    if !mode.is_empty() {
        p[mode] = json!(true);
    }
    p
}

fn expiry_of(n: &Net, h: &str) -> i64 {
    n.entry()
        .store
        .get_by_hash(h, NOW)
        .expect("get")
        .expect("present")
        .expiry_ms
}

#[tokio::test]
async fn single_expiry_sets_both_ways_and_is_capped() {
    let c = Client::new(1);
    let owner = c.session();
    let n = net(2, &owner);
    let a = put(&n, &owner, b"a", NOW + DAY);
    let b = put(&n, &owner, b"b", NOW + 2 * DAY);
    let target = NOW + 3 * DAY;
    let hashes = vec![b.clone(), a.clone()];
    let r = n
        .call("expire", expire_req(&c, "", json!(target), &hashes))
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    let mut upd = vec![a.clone(), b.clone()];
    upd.sort();
    for i in 0..2 {
        let e = &json_of(&r)["swarm"][n.hex(i)];
        assert_eq!(e["updated"], json!(upd));
        assert_eq!(e["expiry"], json!(target));
        assert!(e.get("unchanged").is_none());
        // PUBKEY ‖ EXPIRY ‖ requested (request order) ‖ updated (sorted).
        let signed = format!("{}{}{}{}{}{}", owner.to_hex(), target, b, a, upd[0], upd[1]);
        assert!(
            node_signed(&n.nodes[i], signed.as_bytes(), &e["signature"]),
            "node {i}"
        );
    }
    assert_eq!(expiry_of(&n, &a), target);
    // Far future → capped at now + 30 days (the signature still covers the requested value).
    let far = NOW + 100 * DAY;
    let r = n
        .call(
            "expire",
            expire_req(&c, "", json!(far), std::slice::from_ref(&a)),
        )
        .await;
    // The clock stands still in this test, so the entry accepts the request 1 ms after the
    // message's last one (`Store::expiry_acceptance_time`): the cap counts from then.
    let capped = NOW + 1 + TTL_MAXIMUM_PRIVATE_MS;
    assert_eq!(json_of(&r)["swarm"][n.hex(0)]["expiry"], json!(capped));
    assert_eq!(expiry_of(&n, &a), capped);
}

#[tokio::test]
async fn shorten_and_extend_report_unchanged() {
    let c = Client::new(1);
    let owner = c.session();
    let n = net(1, &owner);
    let short = put(&n, &owner, b"short", NOW + DAY);
    let long = put(&n, &owner, b"long", NOW + 3 * DAY);
    let target = NOW + 2 * DAY;
    let hashes = vec![short.clone(), long.clone()];
    let r = n
        .call("expire", expire_req(&c, "extend", json!(target), &hashes))
        .await;
    let e = json_of(&r)["swarm"][n.hex(0)].clone();
    assert_eq!(e["updated"], json!([short]));
    assert_eq!(e["unchanged"], json!({ long.clone(): NOW + 3 * DAY }));
    let signed = format!(
        "{}{}{}{}{}{}{}",
        owner.to_hex(),
        target,
        short,
        long,
        short,
        long,
        NOW + 3 * DAY
    );
    assert!(node_signed(n.entry(), signed.as_bytes(), &e["signature"]));

    let r = n
        .call(
            "expire",
            expire_req(&c, "shorten", json!(NOW + DAY), &hashes),
        )
        .await;
    let e = &json_of(&r)["swarm"][n.hex(0)];
    let mut both = hashes.clone();
    both.sort();
    assert_eq!(e["updated"], json!(both));
    assert_eq!(e["unchanged"], json!({}));

    let mut p = expire_req(&c, "shorten", json!(target), &hashes);
    p["extend"] = json!(true);
    assert_text(
        &n.call("expire", p).await,
        400,
        "invalid request: Cannot specify both 'shorten' and 'extend'",
    );
}

#[tokio::test]
async fn multi_expiry() {
    let c = Client::new(1);
    let owner = c.session();
    let n = net(1, &owner);
    let a = put(&n, &owner, b"a", NOW + DAY);
    let b = put(&n, &owner, b"b", NOW + DAY);
    let (ea, eb) = (NOW + 2 * DAY, NOW + 5 * DAY);
    let hashes = vec![a.clone(), b.clone()];
    let r = n
        .call("expire", expire_req(&c, "", json!([ea, eb]), &hashes))
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    let e = &json_of(&r)["swarm"][n.hex(0)];
    let mut pairs = [(a.clone(), ea), (b.clone(), eb)];
    pairs.sort();
    assert_eq!(e["updated"], json!([pairs[0].0, pairs[1].0]));
    assert_eq!(e["expiry"], json!([pairs[0].1, pairs[1].1]));
    let signed = format!(
        "{}{}{}{}{}{}{}",
        owner.to_hex(),
        pairs[0].1,
        pairs[1].1,
        a,
        b,
        pairs[0].0,
        pairs[1].0
    );
    assert!(node_signed(n.entry(), signed.as_bytes(), &e["signature"]));
    assert_eq!((expiry_of(&n, &a), expiry_of(&n, &b)), (ea, eb));
    let bad = expire_req(&c, "", json!([ea]), &hashes);
    assert_text(
        &n.call("expire", bad).await,
        400,
        "invalid request: Invalid value given for 'expiry': expected one expiry per message hash",
    );
}

#[tokio::test]
async fn expire_errors() {
    let c = Client::new(1);
    let owner = c.session();
    let n = net(1, &owner);
    let a = put(&n, &owner, b"a", NOW + DAY);
    let past = NOW - 60_001;
    let r = n
        .call(
            "expire",
            expire_req(&c, "", json!(past), std::slice::from_ref(&a)),
        )
        .await;
    assert_text(&r, 401, "expire: timestamp should be >= current time");
    let mut p = expire_req(&c, "", json!(NOW + DAY), std::slice::from_ref(&a));
    p["signature"] = json!(c.sign(b"expire"));
    assert_text(
        &n.call("expire", p).await,
        401,
        "expire_msgs signature verification failed",
    );
    let mut p = expire_req(&c, "", json!(NOW + DAY), std::slice::from_ref(&a));
    p.as_object_mut().expect("obj").remove("expiry");
    assert_text(
        &n.call("expire", p).await,
        400,
        "invalid request: Required field 'expiry' missing",
    );
}

#[tokio::test]
async fn subaccount_without_delete_only_extends() {
    let admin = Client::new(3);
    let member = Client::new(4);
    let group = admin.group();
    let n = net(1, &group);
    let h = put(&n, &group, b"g", NOW + 2 * DAY);
    let req = |flags: Access, mode: &str, expiry: i64| {
        let t = SubaccountToken::new(3, flags, member.ed());
        let mut p = json!({"pubkey": group.to_hex(), "messages": [h], "expiry": expiry,
            "signature": member.sign(&msg::expire(mode, &[expiry], std::slice::from_ref(&h))),
            "subaccount": crate::message::b64(&t.0), "subaccount_sig": admin.sign(&t.0)});
        if !mode.is_empty() {
            p[mode] = json!(true);
        }
        p
    };
    assert_text(
        &n.call("expire", req(Access::WRITE, "shorten", NOW + DAY))
            .await,
        400,
        "expire: shorten parameter cannot be used with this subaccount token (missing delete access)",
    );
    // No mode: implicitly extend-only, so an earlier expiry leaves it unchanged.
    let r = n.call("expire", req(Access::WRITE, "", NOW + DAY)).await;
    let e = &json_of(&r)["swarm"][n.hex(0)];
    assert_eq!(e["updated"], json!([]));
    assert_eq!(e["unchanged"], json!({ h.clone(): NOW + 2 * DAY }));
    let r = n
        .call("expire", req(Access::WRITE, "", NOW + 3 * DAY))
        .await;
    assert_eq!(json_of(&r)["swarm"][n.hex(0)]["updated"], json!([h]));
    // With Delete access shortening works; without Write nothing does.
    let r = n
        .call(
            "expire",
            req(Access::WRITE | Access::DELETE, "shorten", NOW + DAY),
        )
        .await;
    assert_eq!(json_of(&r)["swarm"][n.hex(0)]["updated"], json!([h]));
    assert_eq!(
        n.call("expire", req(Access::READ, "", NOW + DAY))
            .await
            .status,
        401
    );
}

#[tokio::test]
async fn get_expiries() {
    let c = Client::new(1);
    let owner = c.session();
    let n = net(1, &owner);
    let a = put(&n, &owner, b"a", NOW + DAY);
    let hashes = vec![a.clone(), "not-a-hash".to_string()];
    let req = |ts: i64| {
        json!({"pubkey": owner.to_hex(), "pubkey_ed25519": c.ed_hex(), "messages": hashes, "timestamp": ts,
            "signature": c.sign(&msg::get_expiries(ts, &hashes))})
    };
    let r = n.call("get_expiries", req(NOW)).await;
    assert_eq!(r.status, 200);
    assert_eq!(json_of(&r), &json!({"expiries": { a.clone(): NOW + DAY }}));
    assert_text(
        &n.call("get_expiries", req(NOW - 61_000)).await,
        406,
        "get_expiries timestamp too far from current time",
    );
    let mut bad = req(NOW);
    bad["timestamp"] = json!(NOW + 1);
    assert_text(
        &n.call("get_expiries", bad).await,
        401,
        "get_expiries signature verification failed",
    );
}

#[tokio::test]
async fn extend_skips_trivial_extensions_only_when_the_request_says_extend() {
    let c = Client::new(1);
    let owner = c.session();
    let n = net(1, &owner);
    // Lifetime one day: 1 % of it is 864 000 ms.
    let h = put(&n, &owner, b"m", NOW + DAY);
    let one_percent = DAY / 100;
    let ask = |target: i64| expire_req(&c, "extend", json!(target), std::slice::from_ref(&h));
    // Less than 1 % further: not rewritten, reported unchanged with the current expiry.
    let r = n.call("expire", ask(NOW + DAY + one_percent - 1)).await;
    let e = &json_of(&r)["swarm"][n.hex(0)];
    assert_eq!(e["updated"], json!([]), "{r:?}");
    assert_eq!(e["unchanged"], json!({ h.clone(): NOW + DAY }));
    assert_eq!(expiry_of(&n, &h), NOW + DAY);
    // Exactly 1 %: applied.
    let r = n.call("expire", ask(NOW + DAY + one_percent)).await;
    let e = &json_of(&r)["swarm"][n.hex(0)];
    assert_eq!(e["updated"], json!([h.clone()]), "{r:?}");
    assert_eq!(expiry_of(&n, &h), NOW + DAY + one_percent);
    // Without `extend` (set semantics) a small raise is applied as before.
    let small = NOW + DAY + one_percent + 1;
    let r = n
        .call(
            "expire",
            expire_req(&c, "", json!(small), std::slice::from_ref(&h)),
        )
        .await;
    assert_eq!(
        json_of(&r)["swarm"][n.hex(0)]["updated"],
        json!([h.clone()])
    );
    assert_eq!(expiry_of(&n, &h), small);
}

#[tokio::test]
async fn a_subaccount_forced_to_extend_gets_small_extensions() {
    let admin = Client::new(3);
    let member = Client::new(4);
    let group = admin.group();
    let n = net(1, &group);
    let h = put(&n, &group, b"g", NOW + DAY);
    // No Delete access and no mode: extend-only by force, not by request, so the trivial
    // extension rule does not apply (upstream 2.11 behaves the same).
    let target = NOW + DAY + 1_000;
    let t = SubaccountToken::new(3, Access::WRITE, member.ed());
    let p = json!({"pubkey": group.to_hex(), "messages": [h], "expiry": target,
        "signature": member.sign(&msg::expire("", &[target], std::slice::from_ref(&h))),
        "subaccount": crate::message::b64(&t.0), "subaccount_sig": admin.sign(&t.0)});
    let r = n.call("expire", p).await;
    assert_eq!(
        json_of(&r)["swarm"][n.hex(0)]["updated"],
        json!([h.clone()]),
        "{r:?}"
    );
    assert_eq!(expiry_of(&n, &h), target);
}
