//! `retrieve` (storage-server.md 1.5): auth rules by namespace, paging after `last_hash` (or
//! before it, newest first, with upstream 2.9's `reverse_direction`), and the `max_count` /
//! `max_size` budget.
//!
//! Owns the choice between the signed and unsigned paths and the budget arithmetic; the
//! store does the per-message size accounting. Must not return expired messages (the store
//! guarantees it) nor write anything.

use serde_json::{Map, Value, json};

use crate::message::{Namespace, RETRIEVE_MAX_SIZE, SIGNATURE_TOLERANCE_MS, b64, is_valid_hash};
use crate::sign::{Access, msg};

use super::auth::{Auth, verify, within};
use super::params::{ParamError, Params, require};
use super::swarm_info::check_owner;
use super::{RpcContext, RpcResponse, json_resp, respond, text};

/// `max_count` when the client sets none: the store reads 0 as "no count limit". The size
/// budget alone caps a reply at 7 800 000 / 143 (the smallest accounted message) ≈ 54 546
/// messages, so an unset count cannot make a reply unbounded.
pub(crate) const UNLIMITED_COUNT: usize = 0;

/// The `(max_count, max_size)` the store gets (1.5): 0 means unset; neither set → `-5`;
/// `-k` → `7 800 000 / k`; unset or above 7 800 000 → 7 800 000.
pub(crate) fn budget(max_count: Option<i64>, max_size: Option<i64>) -> (usize, i64) {
    let count = max_count
        .filter(|&c| c > 0)
        .and_then(|c| usize::try_from(c).ok());
    let size = match (count, max_size.filter(|&s| s != 0)) {
        (None, None) => Some(-5),
        (_, s) => s,
    };
    let size = match size {
        Some(s) if s < 0 => {
            // unsigned_abs: `-i64::MIN` would overflow; a huge k just gives a budget of 0
            // (the store still returns one message).
            i64::try_from(RETRIEVE_MAX_SIZE.unsigned_abs() / s.unsigned_abs()).unwrap_or(0)
        }
        Some(s) if s <= RETRIEVE_MAX_SIZE => s,
        _ => RETRIEVE_MAX_SIZE,
    };
    (count.unwrap_or(UNLIMITED_COUNT), size)
}

/// `retrieve`.
pub(crate) fn handle(ctx: &RpcContext, params: &Value) -> RpcResponse {
    respond(retrieve(ctx, params))
}

fn retrieve(ctx: &RpcContext, params: &Value) -> Result<RpcResponse, RpcResponse> {
    let now = ctx.now();
    let p = Params::new(params);
    let account = p.account(ctx.testnet)?;
    let ns_given = p.namespace()?;
    let ns = ns_given.unwrap_or_default();
    let last_hash = match p.either("last_hash", "lastHash")? {
        None => None,
        Some((key, v)) => match v.as_str() {
            Some("") => None,
            Some(h) if is_valid_hash(h) => Some(h),
            _ => {
                return Err(ParamError(format!(
                    "Invalid value given for '{key}': expected base64 encoded message hash"
                ))
                .into());
            }
        },
    };
    let (max_count, max_size) = budget(p.int("max_count")?, p.int("max_size")?);
    // Upstream 2.9+: newest first, `last_hash` paging backwards (storage-server.md 8).
    let newest_first = p.bool("reverse_direction")?.unwrap_or(false);

    // The signed path is taken as soon as any auth field is present or a namespace that
    // needs auth is named explicitly (the original's parse).
    let signed_path = p.has("pubkey_ed25519")
        || p.has("signature")
        || p.has("timestamp")
        || (ns_given.is_some() && !ns.is_noauth_retrieve());
    let signed = if signed_path {
        let auth = Auth::parse(&p, &account, true)?.required()?;
        // The original does not require `timestamp` here and then verifies against an
        // unset time; snode reports the missing field instead (storage-server.md 1.5).
        let ts = require("timestamp", p.timestamp("timestamp")?)?;
        Some((auth, ts))
    } else if !ns.is_noauth_retrieve() {
        return Err(text(401, "retrieve: request signature required"));
    } else {
        None
    };

    check_owner(ctx, &account)?;
    if let Some((auth, ts)) = signed {
        if !within(now, ts, SIGNATURE_TOLERANCE_MS) {
            return Err(text(406, "retrieve timestamp too far from current time"));
        }
        // Revoked members may still read the "unrevocable" namespaces (-11, -111, …).
        let check_revoked = !ns.is_unrevocable();
        if !verify(
            ctx,
            &account,
            &auth,
            &msg::retrieve(ns, ts),
            Access::READ,
            check_revoked,
        ) {
            return Err(text(401, "retrieve signature verification failed"));
        }
    }

    let mut obj = Map::new();
    // The reserved testing namespace ([dev]) always reads as empty.
    let (messages, more) = if ns == Namespace::TESTING {
        (Vec::new(), false)
    } else {
        let r = if newest_first {
            ctx.store
                .retrieve_newest_first(&account, ns, last_hash, max_count, max_size, now)
        } else {
            ctx.store
                .retrieve(&account, ns, last_hash, max_count, max_size, now)
        };
        let r = r.map_err(|e| {
            tracing::error!(error = %crate::error::chain(&e), "retrieve failed");
            text(500, "request failed")
        })?;
        let list = r
            .messages
            .iter()
            .map(|m| {
                json!({
                    "hash": m.hash,
                    "timestamp": m.timestamp_ms,
                    "expiration": m.expiry_ms,
                    "data": b64(&m.data),
                })
            })
            .collect();
        (list, r.more)
    };
    obj.insert("messages".into(), Value::Array(messages));
    obj.insert("more".into(), json!(more));
    ctx.misc(&mut obj);
    Ok(json_resp(200, Value::Object(obj)))
}
