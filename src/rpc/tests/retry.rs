//! Tests of `Origin::PeerRetry`: a retried forward is checked like any other, its timestamp
//! windows against the entry node's acceptance time (the context's clock, set by `api::peer`),
//! and a late `delete_all` only removes what existed when the client asked.

use serde_json::{Value, json};

use super::util::*;
use crate::message::{Message, Namespace, NamespaceSel, message_hash};
use crate::rpc::{Origin, RpcContext, handle_method};

/// `ctx` as `api::peer` hands it a forward accepted at `accepted_ms`.
fn accepted_at(ctx: &RpcContext, accepted_ms: i64) -> RpcContext {
    RpcContext {
        clock: crate::clock::fixed(accepted_ms),
        ..ctx.clone()
    }
}
use crate::sign::msg;

fn put(
    ctx: &crate::rpc::RpcContext,
    owner: &crate::message::AccountId,
    data: &[u8],
    ts: i64,
) -> String {
    let m = Message {
        account: *owner,
        namespace: Namespace(0),
        hash: message_hash(owner, Namespace(0), data),
        timestamp_ms: ts,
        expiry_ms: NOW + DAY,
        data: data.to_vec(),
        expiry_log: None,
    };
    ctx.store.store(&m, NOW).expect("store");
    m.hash
}

fn delete_all_params(c: &Client, ts: i64) -> Value {
    json!({
        "pubkey": c.session().to_hex(),
        "pubkey_ed25519": c.ed_hex(),
        "timestamp": ts,
        "signature": c.sign(&msg::delete_all(NamespaceSel::One(Namespace(0)), ts)),
    })
}

#[tokio::test]
async fn retried_delete_all_is_checked_at_its_acceptance_time() {
    let c = Client::new(1);
    let owner = c.session();
    let n = net(2, &owner);
    let peer = &n.nodes[1];
    // The client asked an hour ago; it stored `newer` afterwards.
    let asked = NOW - 3_600_000;
    let older = put(peer, &owner, b"older", asked - 1_000);
    let newer = put(peer, &owner, b"newer", asked + 1_000);

    let p = delete_all_params(&c, asked);
    let late = handle_method(peer, "delete_all", &p, Origin::Peer).await;
    assert_text(&late, 406, "delete_all timestamp too far from current time");

    // No flag skips the window: a retry checked against our own clock is just as late.
    let r = handle_method(peer, "delete_all", &p, Origin::PeerRetry).await;
    assert_text(&r, 406, "delete_all timestamp too far from current time");

    let then = accepted_at(peer, asked + 2_000);
    let mut forged = p.clone();
    forged["timestamp"] = json!(asked + 1);
    let r = handle_method(&then, "delete_all", &forged, Origin::PeerRetry).await;
    assert_text(&r, 401, "delete_all signature verification failed");

    let r = handle_method(&then, "delete_all", &p, Origin::PeerRetry).await;
    assert_eq!(r.status, 200);
    assert_eq!(json_of(&r)["deleted"], json!([older.clone()]));
    assert!(peer.store.get_by_hash(&older, NOW).expect("get").is_none());
    assert!(
        peer.store.get_by_hash(&newer, NOW).expect("get").is_some(),
        "a late retry keeps what the client stored after asking"
    );
    // A retry is never forwarded again.
    assert!(n.forwarder.calls.lock().expect("lock").is_empty());
}

/// A first forward held up on the way (within the peers' window) behaves as a retry: the
/// client's store after its `delete_all` stays.
#[tokio::test]
async fn a_late_first_forward_of_delete_all_keeps_newer_messages() {
    let c = Client::new(4);
    let owner = c.session();
    let n = net(2, &owner);
    let peer = &n.nodes[1];
    let asked = NOW - 30_000;
    let older = put(peer, &owner, b"older", asked - 1_000);
    let newer = put(peer, &owner, b"newer", asked + 1_000);
    let then = accepted_at(peer, asked + 500);
    let r = handle_method(
        &then,
        "delete_all",
        &delete_all_params(&c, asked),
        Origin::Peer,
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(json_of(&r)["deleted"], json!([older.clone()]));
    assert!(peer.store.get_by_hash(&older, NOW).expect("get").is_none());
    assert!(peer.store.get_by_hash(&newer, NOW).expect("get").is_some());
}

#[tokio::test]
async fn retried_requests_are_still_only_recursive_methods() {
    let c = Client::new(2);
    let n = net(2, &c.session());
    let r = handle_method(&n.nodes[1], "retrieve", &json!({}), Origin::PeerRetry).await;
    assert_text(
        &r,
        400,
        "invalid request: received invalid forwarded non-forwardable request",
    );
}

#[tokio::test]
async fn retried_expire_accepts_an_expiry_that_was_future_when_accepted() {
    let c = Client::new(3);
    let owner = c.session();
    let n = net(2, &owner);
    let peer = &n.nodes[1];
    let h = put(peer, &owner, b"x", NOW - 600_000);
    let expiry = NOW - 120_000;
    let hashes = [h.as_str()];
    let p = json!({
        "pubkey": owner.to_hex(),
        "pubkey_ed25519": c.ed_hex(),
        "messages": [h.clone()],
        "expiry": expiry,
        "signature": c.sign(&msg::expire("", &[expiry], &hashes)),
    });
    let r = handle_method(peer, "expire", &p, Origin::Peer).await;
    assert_text(&r, 401, "expire: timestamp should be >= current time");
    let r = handle_method(peer, "expire", &p, Origin::PeerRetry).await;
    assert_text(&r, 401, "expire: timestamp should be >= current time");
    // Accepted three minutes ago, when the expiry was still ahead.
    let then = accepted_at(peer, NOW - 180_000);
    let r = handle_method(&then, "expire", &p, Origin::PeerRetry).await;
    assert_eq!(r.status, 200);
    assert_eq!(json_of(&r)["updated"], json!([h.clone()]));
    assert!(
        peer.store.get_by_hash(&h, NOW).expect("get").is_none(),
        "now expired"
    );
}
