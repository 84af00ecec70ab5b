//! The workload's side of the client RPC: Session-style accounts and the signed JSON requests
//! a Session client sends (`store`, `retrieve` with `last_hash` paging, `delete`, `expire`), carried to a
//! node over the simulated network as plain HTTP/1.1 (`snode::transport::http1_exchange`).
//!
//! Owns request building and answer parsing only; what to send and what an answer means for
//! the invariants are the workload's and the model's. Never logs bodies or keys.

use std::net::SocketAddr;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use ed25519_dalek::{Signer as _, SigningKey};
use http_body_util::Full;
use serde_json::{Value, json};
use sha2::Digest as _;

use super::net::SimTransport;

/// How long the client waits for one answer: a node forwards within 5 s, then answers.
const RPC_TIMEOUT: Duration = Duration::from_secs(15);
/// Retrieve page size: small, so every full read pages several times.
pub const PAGE: usize = 7;

/// One account: an Ed25519 key and its `05` Session ID, and one subaccount (another device's
/// key with a read token the account signed), which `revoke_subaccount` can shut out.
pub struct Account {
    sk: SigningKey,
    /// `05` ‖ X25519 pubkey, hex.
    pub session_id: String,
    sub: SigningKey,
}

impl Account {
    /// The account derived from `seed` (deterministic).
    pub fn new(seed: [u8; 32]) -> Account {
        let sk = SigningKey::from_bytes(&seed);
        let x = snode::keys::ed25519_pk_to_x25519(&sk.verifying_key().to_bytes()).expect("x25519");
        // The subaccount's key follows from the account's: no extra draw, so histories
        // without subaccount requests are unchanged.
        let sub_seed: [u8; 32] = sha2::Sha256::digest([&seed[..], b"subaccount"].concat()).into();
        Account {
            sk,
            session_id: format!("05{}", hex::encode(x)),
            sub: SigningKey::from_bytes(&sub_seed),
        }
    }

    /// The subaccount's token: the `05` prefix, read access, its key.
    pub fn token(&self) -> snode::sign::SubaccountToken {
        snode::sign::SubaccountToken::new(
            0x05,
            snode::sign::Access::READ,
            self.sub.verifying_key().to_bytes(),
        )
    }

    /// The parsed account id.
    pub fn id(&self) -> snode::message::AccountId {
        snode::message::AccountId::from_hex(&self.session_id).expect("account id")
    }

    fn sign(&self, msg: &[u8]) -> String {
        STANDARD.encode(self.sk.sign(msg).to_bytes())
    }

    fn ed_hex(&self) -> String {
        hex::encode(self.sk.verifying_key().to_bytes())
    }
}

/// A call's outcome: an HTTP status and JSON body, or no answer (`None`).
pub type Answer = Option<(u16, Value)>;

/// POSTs one JSON-RPC call to the node at `addr`.
pub async fn call(addr: SocketAddr, method: &str, params: Value) -> Answer {
    let body = serde_json::to_vec(&json!({"method": method, "params": params})).expect("json");
    let req = http::Request::post("/storage_rpc/v1")
        .header(http::header::HOST, addr.to_string())
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body)))
        .expect("request");
    let exchange = snode::transport::http1_exchange(&SimTransport, addr, req, 16 << 20);
    match tokio::time::timeout(RPC_TIMEOUT, exchange).await {
        Ok(Ok(resp)) => {
            let status = resp.status().as_u16();
            let v = serde_json::from_slice(resp.body()).unwrap_or(Value::Null);
            Some((status, v))
        }
        _ => None,
    }
}

/// `store` in namespace 0 (a public inbox: no signature), `ttl_ms` from `now_ms`.
pub async fn store(addr: SocketAddr, a: &Account, data: &[u8], now_ms: i64, ttl_ms: i64) -> Answer {
    let params = json!({
        "pubkey": a.session_id,
        "timestamp": now_ms,
        "ttl": ttl_ms,
        "data": STANDARD.encode(data),
    });
    call(addr, "store", params).await
}

/// One signed `retrieve` page of namespace 0 after `last_hash`.
pub async fn retrieve_page(
    addr: SocketAddr,
    a: &Account,
    last: Option<&str>,
    now_ms: i64,
) -> Answer {
    let mut p = json!({
        "pubkey": a.session_id,
        "pubkey_ed25519": a.ed_hex(),
        "timestamp": now_ms,
        "signature": a.sign(format!("retrieve{now_ms}").as_bytes()),
        "max_count": PAGE,
    });
    if let Some(h) = last {
        p["last_hash"] = json!(h);
    }
    call(addr, "retrieve", p).await
}

/// A signed `delete` of `hashes`.
pub async fn delete(addr: SocketAddr, a: &Account, hashes: &[String]) -> Answer {
    let mut msg = b"delete".to_vec();
    for h in hashes {
        msg.extend_from_slice(h.as_bytes());
    }
    let p = json!({
        "pubkey": a.session_id,
        "pubkey_ed25519": a.ed_hex(),
        "messages": hashes,
        "signature": a.sign(&msg),
    });
    call(addr, "delete", p).await
}

/// A signed `expire` of one message to `expiry_ms`, shortening only (`shorten`) or extending
/// only.
pub async fn expire(
    addr: SocketAddr,
    a: &Account,
    hash: &str,
    expiry_ms: i64,
    shorten: bool,
) -> Answer {
    let mode = if shorten { "shorten" } else { "extend" };
    let mut p = json!({
        "pubkey": a.session_id,
        "pubkey_ed25519": a.ed_hex(),
        "messages": [hash],
        "expiry": expiry_ms,
        "signature": a.sign(format!("expire{mode}{expiry_ms}{hash}").as_bytes()),
    });
    p[mode] = json!(true);
    call(addr, "expire", p).await
}

/// One signed `retrieve` page of namespace 0 by the account's subaccount (its token, signed by
/// the account; the request signed by the subaccount's key).
pub async fn retrieve_as_subaccount(addr: SocketAddr, a: &Account, now_ms: i64) -> Answer {
    let token = a.token();
    let p = json!({
        "pubkey": a.session_id,
        "pubkey_ed25519": a.ed_hex(),
        "timestamp": now_ms,
        "signature": STANDARD.encode(a.sub.sign(format!("retrieve{now_ms}").as_bytes()).to_bytes()),
        "subaccount": STANDARD.encode(token.0),
        "subaccount_sig": a.sign(&token.0),
        "max_count": PAGE,
    });
    call(addr, "retrieve", p).await
}

/// A signed `revoke_subaccount` (`revoke`) or `unrevoke_subaccount` of the account's
/// subaccount at `now_ms`.
pub async fn revoke(addr: SocketAddr, a: &Account, revoke: bool, now_ms: i64) -> Answer {
    let (method, key) = if revoke {
        ("revoke_subaccount", "revoke")
    } else {
        ("unrevoke_subaccount", "unrevoke")
    };
    let token = a.token();
    let mut msg = format!("{method}{now_ms}").into_bytes();
    msg.extend_from_slice(&token.0);
    let mut p = json!({
        "pubkey": a.session_id,
        "pubkey_ed25519": a.ed_hex(),
        "timestamp": now_ms,
        "signature": a.sign(&msg),
    });
    p[key] = json!([STANDARD.encode(token.0)]);
    call(addr, method, p).await
}

/// A signed `delete_all` (at `ts_ms`) or, with `before`, `delete_before` of namespace 0, or of
/// every namespace (`all`).
pub async fn delete_ns(
    addr: SocketAddr,
    a: &Account,
    all: bool,
    ts_ms: i64,
    before: bool,
) -> Answer {
    let ns = if all { "all" } else { "" };
    let (method, field) = if before {
        ("delete_before", "before")
    } else {
        ("delete_all", "timestamp")
    };
    let mut p = json!({
        "pubkey": a.session_id,
        "pubkey_ed25519": a.ed_hex(),
        "signature": a.sign(format!("{method}{ns}{ts_ms}").as_bytes()),
    });
    p[field] = json!(ts_ms);
    p["namespace"] = if all { json!("all") } else { json!(0) };
    call(addr, method, p).await
}

/// Per member (hex Ed25519) that did not fail, the hashes its entry of a `delete_all` or
/// `delete_before` answer lists as deleted: a list for one namespace, `{"<ns>": [...]}` for all.
pub fn deleted_by(v: &Value) -> Vec<(String, Vec<String>)> {
    let strs = |l: &Value| -> Vec<String> {
        l.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|h| h.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    v["swarm"]
        .as_object()
        .map(|m| {
            m.iter()
                .filter(|(_, e)| !e["failed"].as_bool().unwrap_or(false))
                .map(|(k, e)| {
                    let d = &e["deleted"];
                    let hashes = match d.as_object() {
                        Some(by_ns) => by_ns.values().flat_map(strs).collect(),
                        None => strs(d),
                    };
                    (k.clone(), hashes)
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The members (hex Ed25519) whose entry in a recursive answer's `swarm` map did not fail.
pub fn acknowledged_by(v: &Value) -> Vec<String> {
    v["swarm"]
        .as_object()
        .map(|m| {
            m.iter()
                .filter(|(_, e)| !e["failed"].as_bool().unwrap_or(false))
                .map(|(k, _)| k.clone())
                .collect()
        })
        .unwrap_or_default()
}

/// The members (keys) whose entry of an `expire` answer says they hold `hash` (in `updated`,
/// or in `unchanged` when its expiry already satisfied the request).
pub fn expire_applied_by(v: &Value, hash: &str) -> Vec<String> {
    v["swarm"]
        .as_object()
        .map(|m| {
            m.iter()
                .filter(|(_, e)| {
                    let updated = e["updated"]
                        .as_array()
                        .is_some_and(|u| u.iter().any(|h| h.as_str() == Some(hash)));
                    updated || e["unchanged"].get(hash).is_some()
                })
                .map(|(k, _)| k.clone())
                .collect()
        })
        .unwrap_or_default()
}

/// One message of a retrieve page: hash and expiry.
pub struct Seen {
    pub hash: String,
    pub expiry_ms: i64,
}

/// A retrieve page's messages and whether more follow.
pub fn page(v: &Value) -> (Vec<Seen>, bool) {
    let msgs = v["messages"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|m| Seen {
                    hash: m["hash"].as_str().unwrap_or_default().to_string(),
                    expiry_ms: m["expiration"].as_i64().unwrap_or(0),
                })
                .collect()
        })
        .unwrap_or_default();
    (msgs, v["more"].as_bool().unwrap_or(false))
}
