//! Tests of `revoke_subaccount`, `unrevoke_subaccount` and `revoked_subaccounts`.

use serde_json::{Value, json};

use super::util::*;
use crate::message::{Namespace, b64};
use crate::sign::{Access, SubaccountToken, msg};

fn token(member: &Client) -> SubaccountToken {
    SubaccountToken::new(3, Access::READ, member.ed())
}

fn revoke_req(admin: &Client, method: &str, ts: i64, tokens: &[SubaccountToken]) -> Value {
    let key = if method == "revoke_subaccount" {
        "revoke"
    } else {
        "unrevoke"
    };
    let list: Vec<String> = tokens.iter().map(|t| b64(&t.0)).collect();
    json!({"pubkey": admin.group().to_hex(), key: list, "timestamp": ts,
        "signature": admin.sign(&msg::revoke(method, ts, tokens))})
}

fn retrieve_as(admin: &Client, member: &Client, t: &SubaccountToken) -> Value {
    json!({"pubkey": admin.group().to_hex(), "namespace": 11, "timestamp": NOW,
        "signature": member.sign(&msg::retrieve(Namespace(11), NOW)),
        "subaccount": b64(&t.0), "subaccount_sig": admin.sign(&t.0)})
}

#[tokio::test]
async fn revoke_then_unrevoke_across_the_swarm() {
    let admin = Client::new(3);
    let member = Client::new(4);
    let group = admin.group();
    let n = net(2, &group);
    let t = token(&member);
    // The account has no messages at all: the revocation must still hold.
    assert_eq!(
        n.call("retrieve", retrieve_as(&admin, &member, &t))
            .await
            .status,
        200
    );
    let r = n
        .call(
            "revoke_subaccount",
            revoke_req(&admin, "revoke_subaccount", NOW, &[t]),
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    let v = json_of(&r);
    for i in 0..2 {
        let e = &v["swarm"][n.hex(i)];
        let mut signed = format!("{}{}", group.to_hex(), NOW).into_bytes();
        signed.extend_from_slice(&t.0);
        assert!(
            node_signed(&n.nodes[i], &signed, &e["signature"]),
            "node {i}"
        );
        assert!(
            n.nodes[i].store.is_revoked(&group, &t.0).expect("lookup"),
            "node {i}"
        );
    }
    assert_eq!(
        n.call("retrieve", retrieve_as(&admin, &member, &t))
            .await
            .status,
        401
    );

    // Listing ([dev]).
    let list = json!({"pubkey": group.to_hex(), "timestamp": NOW,
        "signature": admin.sign(&msg::revoked_subaccounts(NOW))});
    let r = n.call("revoked_subaccounts", list).await;
    assert_eq!(json_of(&r), &json!({"revoked_subaccounts": [b64(&t.0)]}));

    let r = n
        .call(
            "unrevoke_subaccount",
            // Later than the revoke: the later signed time wins (on a tie the revoke would).
            revoke_req(&admin, "unrevoke_subaccount", NOW + 1, &[t]),
        )
        .await;
    let e = &json_of(&r)["swarm"][n.hex(1)];
    assert_eq!(e["count"], json!(1));
    assert_eq!(
        n.call("retrieve", retrieve_as(&admin, &member, &t))
            .await
            .status,
        200
    );
}

#[tokio::test]
async fn revoke_errors() {
    let admin = Client::new(3);
    let member = Client::new(4);
    let n = net(1, &admin.group());
    let t = token(&member);
    let r = n
        .call(
            "revoke_subaccount",
            revoke_req(&admin, "revoke_subaccount", NOW - 61_000, &[t]),
        )
        .await;
    assert_text(
        &r,
        406,
        "revoke_subaccount timestamp too far from current time",
    );
    let r = n
        .call(
            "unrevoke_subaccount",
            revoke_req(&admin, "unrevoke_subaccount", NOW + 61_000, &[t]),
        )
        .await;
    assert_text(
        &r,
        406,
        "unrevoke_subaccount timestamp too far from current time",
    );
    // Signed for the other method.
    let mut p = revoke_req(&admin, "revoke_subaccount", NOW, &[t]);
    p["signature"] = json!(admin.sign(&msg::revoke("unrevoke_subaccount", NOW, &[t])));
    assert_text(
        &n.call("revoke_subaccount", p).await,
        401,
        "revoke_subaccount signature verification failed",
    );
    // A member cannot revoke through a subaccount token: the subaccount fields are ignored
    // and the member's signature is checked against the group key.
    let admin_token = SubaccountToken::new(
        3,
        Access::READ | Access::WRITE | Access::DELETE,
        member.ed(),
    );
    let p = json!({"pubkey": admin.group().to_hex(), "revoke": b64(&t.0), "timestamp": NOW,
        "signature": member.sign(&msg::revoke("revoke_subaccount", NOW, &[t])),
        "subaccount": b64(&admin_token.0), "subaccount_sig": admin.sign(&admin_token.0)});
    assert_text(
        &n.call("revoke_subaccount", p).await,
        401,
        "revoke_subaccount signature verification failed",
    );
    // Bounds and formats.
    let many: Vec<SubaccountToken> = (0..51u8)
        .map(|i| SubaccountToken::new(3, Access::READ, [i; 32]))
        .collect();
    let r = n
        .call(
            "revoke_subaccount",
            revoke_req(&admin, "revoke_subaccount", NOW, &many),
        )
        .await;
    assert_text(
        &r,
        400,
        "invalid request: Invalid value given for 'revoke': too many subaccount tokens (max 50)",
    );
    let p = json!({"pubkey": admin.group().to_hex(), "revoke": "zz", "timestamp": NOW, "signature": admin.sign(b"x")});
    assert_text(
        &n.call("revoke_subaccount", p).await,
        400,
        "invalid request: invalid revoke: expected base64 or hex encoded subaccount token",
    );
    // Hex tokens work and a single string is one token.
    let p = json!({"pubkey": admin.group().to_hex(), "revoke": hex::encode(t.0), "timestamp": NOW,
        "signature": admin.sign(&msg::revoke("revoke_subaccount", NOW, &[t]))});
    assert_eq!(n.call("revoke_subaccount", p).await.status, 200);
}

#[tokio::test]
async fn revoked_subaccounts_errors() {
    let admin = Client::new(3);
    let n = net(1, &admin.group());
    let req = |ts: i64, signed_ts: i64| {
        json!({"pubkey": admin.group().to_hex(), "timestamp": ts,
            "signature": admin.sign(&msg::revoked_subaccounts(signed_ts))})
    };
    let r = n.call("revoked_subaccounts", req(NOW, NOW)).await;
    assert_eq!(json_of(&r), &json!({"revoked_subaccounts": []}));
    assert_text(
        &n.call("revoked_subaccounts", req(NOW + 61_000, NOW + 61_000))
            .await,
        406,
        "revoked_subaccounts timestamp too far from current time",
    );
    assert_text(
        &n.call("revoked_subaccounts", req(NOW, NOW + 1)).await,
        401,
        "revoked_subaccounts signature verification failed",
    );
    let r = n
        .call(
            "revoked_subaccounts",
            json!({"pubkey": admin.group().to_hex(), "timestamp": NOW}),
        )
        .await;
    assert_text(
        &r,
        400,
        "invalid request: Required field 'signature' missing",
    );
}
