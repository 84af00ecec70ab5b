//! `delete`, `delete_all`, `delete_before` (storage-server.md 1.5) and the namespace-wide
//! flow they share with `expire_all`.
//!
//! Owns the per-node signed entries of 1.11 for these methods (`PK ‖ …` signed by the node)
//! and the `required` → 404 rule. Must not decide what the store deletes beyond passing the
//! account, namespace selection and bounds.

use serde_json::{Map, Value, json};

use crate::message::{AccountId, Namespace, NamespaceSel, SIGNATURE_TOLERANCE_MS};
use crate::sign::{Access, msg};
use crate::store::StoreError;

use super::auth::{Auth, verify};
use super::params::{Params, require};
use super::recursive::{distribute, query_failure};
use super::swarm_info::check_owner;
use super::{Origin, RpcContext, RpcResponse, text};

/// `delete`: remove the listed hashes of the account (any namespace). No timestamp: the
/// signed message is the hash list alone (replayable, as in the original).
pub(crate) async fn delete(ctx: &RpcContext, params: &Value, origin: Origin) -> RpcResponse {
    let p = Params::new(params);
    let parsed = (|| {
        let account = p.account(ctx.testnet)?;
        let hashes = p.hashes(true)?;
        let required = p.bool("required")?.unwrap_or(false);
        let auth = Auth::parse(&p, &account, true)?.required()?;
        Ok::<_, RpcResponse>((account, hashes, required, auth))
    })();
    let (account, hashes, required, auth) = match parsed {
        Ok(v) => v,
        Err(e) => return e,
    };
    if let Err(r) = check_owner(ctx, &account) {
        return r;
    }
    if !verify(
        ctx,
        &account,
        &auth,
        &msg::delete(&hashes),
        Access::DELETE,
        true,
    ) {
        return text(401, "delete_msgs signature verification failed");
    }
    let local = || {
        let owned: Vec<String> = hashes.iter().map(|h| (*h).to_string()).collect();
        // The swarm's acceptance time: the entry node's clock, also in a forwarded copy.
        match ctx.store.delete_hashes(&account, &owned, ctx.now()) {
            Ok(deleted) => {
                // PUBKEY_HEX ‖ requested hashes (request order) ‖ deleted hashes (sorted).
                let mut m = account.to_hex().into_bytes();
                hashes
                    .iter()
                    .for_each(|h| m.extend_from_slice(h.as_bytes()));
                deleted
                    .iter()
                    .for_each(|h| m.extend_from_slice(h.as_bytes()));
                json!({"deleted": deleted, "signature": ctx.sign_b64(&m)})
            }
            Err(e) => {
                tracing::error!(error = %crate::error::chain(&e), "delete failed");
                query_failure()
            }
        }
    };
    let d = distribute(ctx, "delete", params, origin, ctx.now(), local).await;
    // `required`: 404 when no member deleted anything (the body is unchanged).
    d.finish(ctx, origin, Map::new(), |swarm| {
        let any_deleted = swarm.values().any(|e| {
            e.get("deleted")
                .and_then(Value::as_array)
                .is_some_and(|a| !a.is_empty())
        });
        if required && !any_deleted { 404 } else { 200 }
    })
}

/// What differs between the namespace-wide methods.
pub(crate) struct NsWide {
    /// Method name (signature errors, forwarding).
    pub(crate) method: &'static str,
    /// The timestamp field (`timestamp`, `before`, `expiry`).
    pub(crate) ts_field: &'static str,
    /// The result key of the entry (`deleted`, `updated`).
    pub(crate) result_key: &'static str,
    /// The timestamp check: `Some(response)` refuses.
    pub(crate) check_ts: fn(now: i64, ts: i64, origin: Origin) -> Option<RpcResponse>,
    /// The signed message.
    pub(crate) sig_msg: fn(NamespaceSel, i64) -> Vec<u8>,
    /// The store operation; returns the affected (namespace, hash) pairs.
    pub(crate) op: NsOp,
}

/// A namespace-wide store operation: (store, account, selection, timestamp, now) → the
/// affected (namespace, hash) pairs.
pub(crate) type NsOp = fn(
    &crate::store::Store,
    &AccountId,
    NamespaceSel,
    i64,
    i64,
) -> Result<Vec<(Namespace, String)>, StoreError>;

/// The affected hashes as the entry shows them — a sorted list for one namespace, or
/// `{"<ns>": [sorted…]}` for `"all"` — and all hashes sorted (what the node signs).
fn by_namespace(sel: NamespaceSel, pairs: Vec<(Namespace, String)>) -> (Value, Vec<String>) {
    let mut all: Vec<String> = pairs.iter().map(|(_, h)| h.clone()).collect();
    all.sort();
    let shown = match sel {
        NamespaceSel::One(_) => json!(all),
        NamespaceSel::All => {
            let mut obj: Map<String, Value> = Map::new();
            for (ns, h) in pairs {
                let list = obj.entry(ns.to_string()).or_insert_with(|| json!([]));
                if let Value::Array(a) = list {
                    a.push(json!(h));
                }
            }
            for list in obj.values_mut() {
                if let Value::Array(a) = list {
                    a.sort_by(|x, y| x.as_str().cmp(&y.as_str()));
                }
            }
            Value::Object(obj)
        }
    };
    (shown, all)
}

/// The flow of delete_all, delete_before and expire_all: 421 → timestamp → signature
/// (Delete access) → store operation here and on every peer.
pub(crate) async fn ns_wide(
    ctx: &RpcContext,
    params: &Value,
    origin: Origin,
    spec: &NsWide,
) -> RpcResponse {
    let now = ctx.now();
    let p = Params::new(params);
    let parsed = (|| {
        let account = p.account(ctx.testnet)?;
        let sel = p
            .namespace_sel()?
            .unwrap_or(NamespaceSel::One(Namespace(0)));
        let ts = require(spec.ts_field, p.timestamp(spec.ts_field)?)?;
        let auth = Auth::parse(&p, &account, true)?.required()?;
        Ok::<_, RpcResponse>((account, sel, ts, auth))
    })();
    let (account, sel, ts, auth) = match parsed {
        Ok(v) => v,
        Err(e) => return e,
    };
    if let Err(r) = check_owner(ctx, &account) {
        return r;
    }
    // For a forward, `now` is the entry node's acceptance time (see `Origin::PeerRetry`).
    if let Some(r) = (spec.check_ts)(now, ts, origin) {
        return r;
    }
    if !verify(
        ctx,
        &account,
        &auth,
        &(spec.sig_msg)(sel, ts),
        Access::DELETE,
        true,
    ) {
        return text(
            401,
            format!("{} signature verification failed", spec.method),
        );
    }
    let local = || match (spec.op)(&ctx.store, &account, sel, ts, now) {
        Ok(pairs) => {
            let (shown, sorted) = by_namespace(sel, pairs);
            // PUBKEY_HEX ‖ timestamp ‖ every affected hash, sorted.
            let mut m = format!("{}{}", account.to_hex(), ts).into_bytes();
            sorted
                .iter()
                .for_each(|h| m.extend_from_slice(h.as_bytes()));
            let mut entry = Map::new();
            entry.insert(spec.result_key.into(), shown);
            entry.insert("signature".into(), json!(ctx.sign_b64(&m)));
            Value::Object(entry)
        }
        Err(e) => {
            tracing::error!(error = %crate::error::chain(&e), method = spec.method, "store operation failed");
            query_failure()
        }
    };
    let d = distribute(ctx, spec.method, params, origin, now, local).await;
    d.finish(ctx, origin, Map::new(), |_| 200)
}

/// ±60 s, or ±70 s when a peer forwarded it (its clock and the hop add skew).
fn tolerance(origin: Origin) -> i64 {
    if origin.is_peer() {
        crate::message::SIGNATURE_TOLERANCE_FORWARDED_MS
    } else {
        SIGNATURE_TOLERANCE_MS
    }
}

/// `delete_all`.
pub(crate) async fn delete_all(ctx: &RpcContext, params: &Value, origin: Origin) -> RpcResponse {
    let spec = NsWide {
        method: "delete_all",
        ts_field: "timestamp",
        result_key: "deleted",
        check_ts: |now, ts, origin| {
            (!super::auth::within(now, ts, tolerance(origin)))
                .then(|| text(406, "delete_all timestamp too far from current time"))
        },
        sig_msg: msg::delete_all,
        op: if origin.is_peer() {
            // A forward may arrive late — a retry days later, or a first forward held up on
            // the way for up to the peers' 60 s window, after the client stored more
            // through another member. It must not delete what the client stored after
            // asking: only what existed then (client timestamp up to the request's).
            // Otherwise this member would delete newer messages, and its tombstones would
            // then spread that loss to the whole swarm. The entry deleted everything it held
            // when it accepted the request; its tombstones carry any newer-stamped message it
            // deleted to the other members.
            |store, account, sel, ts, now| store.delete_before(account, sel, ts, now)
        } else {
            |store, account, sel, _ts, now| store.delete_all(account, sel, now)
        },
    };
    ns_wide(ctx, params, origin, &spec).await
}

/// `delete_before`: messages with timestamp ≤ `before`. The original's all-namespace query
/// reads `RETURNING hash` as (namespace, hash) pairs and fails with 500; snode returns the
/// pairs the response needs (storage-server.md 1.5).
pub(crate) async fn delete_before(ctx: &RpcContext, params: &Value, origin: Origin) -> RpcResponse {
    let spec = NsWide {
        method: "delete_before",
        ts_field: "before",
        result_key: "deleted",
        // 401, not 406: the original's (irregular) status for this check.
        check_ts: |now, before, _| {
            (before > now.saturating_add(SIGNATURE_TOLERANCE_MS))
                .then(|| text(401, "delete_before timestamp too far in the future"))
        },
        sig_msg: msg::delete_before,
        op: |store, account, sel, before, now| store.delete_before(account, sel, before, now),
    };
    ns_wide(ctx, params, origin, &spec).await
}

/// `expire_all` (shorten only), sharing the namespace-wide flow.
pub(crate) async fn expire_all(ctx: &RpcContext, params: &Value, origin: Origin) -> RpcResponse {
    let spec = NsWide {
        method: "expire_all",
        ts_field: "expiry",
        result_key: "updated",
        check_ts: |now, expiry, origin| {
            (expiry < now.saturating_sub(tolerance(origin)))
                .then(|| text(406, "expire_all timestamp should be >= current time"))
        },
        sig_msg: msg::expire_all,
        op: |store, account, sel, expiry, now| store.expire_all(account, sel, expiry, now),
    };
    ns_wide(ctx, params, origin, &spec).await
}
