//! `expire` and `get_expiries` (storage-server.md 1.5). (`expire_all` shares the
//! namespace-wide flow in `delete`.)
//!
//! Owns single vs multi-expiry requests, the shorten/extend modes, the subaccount rule
//! (no Delete access → extend only) and the per-node signature of 1.11. Must not let an
//! expiry go past now + 30 days.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use crate::message::{AccountId, SIGNATURE_TOLERANCE_MS, TTL_MAXIMUM_PRIVATE_MS};
use crate::sign::{Access, RequestAuth, msg};
use crate::store::{ExpireMode, ExpiryUpdate};

use super::auth::{Auth, subaccount_flags, verify, within};
use super::params::{ParamError, Params, require};
use super::recursive::{distribute, query_failure};
use super::swarm_info::check_owner;
use super::{Origin, RpcContext, RpcResponse, json_resp, respond, text};

/// A parsed `expire` request.
struct ExpireReq<'a> {
    account: AccountId,
    hashes: Vec<&'a str>,
    /// One expiry for all hashes, or one per hash (`multi`).
    expiries: Vec<i64>,
    multi: bool,
    shorten: bool,
    extend: bool,
    auth: RequestAuth,
}

fn parse<'a>(p: &Params<'a>, testnet: bool) -> Result<ExpireReq<'a>, RpcResponse> {
    let account = p.account(testnet)?;
    let hashes = p.hashes(true)?;
    let multi = p.get("expiry").is_some_and(Value::is_array);
    let expiries = require("expiry", p.timestamp_list("expiry")?)?;
    if multi && expiries.len() != hashes.len() {
        return Err(ParamError(
            "Invalid value given for 'expiry': expected one expiry per message hash".into(),
        )
        .into());
    }
    let shorten = p.bool("shorten")?.unwrap_or(false);
    let extend = p.bool("extend")?.unwrap_or(false);
    if shorten && extend {
        return Err(ParamError("Cannot specify both 'shorten' and 'extend'".into()).into());
    }
    let auth = Auth::parse(p, &account, true)?.required()?;
    Ok(ExpireReq {
        account,
        hashes,
        expiries,
        multi,
        shorten,
        extend,
        auth,
    })
}

/// Applies the update (grouped by applied expiry for multi-expiry requests).
fn update(
    ctx: &RpcContext,
    req: &ExpireReq<'_>,
    applied: &[i64],
    mode: ExpireMode,
    now: i64,
) -> Result<ExpiryUpdate, crate::store::StoreError> {
    let mut groups: BTreeMap<i64, Vec<String>> = BTreeMap::new();
    for (i, h) in req.hashes.iter().enumerate() {
        let e = if req.multi { applied[i] } else { applied[0] };
        groups.entry(e).or_default().push((*h).to_string());
    }
    let mut out = ExpiryUpdate::default();
    for (expiry, hashes) in groups {
        let u = ctx
            .store
            .update_expiry(&req.account, &hashes, expiry, mode, now)?;
        out.updated.extend(u.updated);
        out.unchanged.extend(u.unchanged);
    }
    // A hash updated in one group is not "unchanged" because of another.
    out.unchanged.retain(|h, _| !out.updated.contains_key(h));
    Ok(out)
}

/// Our entry: `updated`, `expiry`, `unchanged` (modes only) and the node signature over
/// `PK ‖ EXPIRY ‖ requested hashes ‖ updated hashes (sorted) ‖ (hash ‖ expiry)* unchanged`.
fn entry(
    ctx: &RpcContext,
    req: &ExpireReq<'_>,
    applied: &[i64],
    u: &ExpiryUpdate,
    with_unchanged: bool,
) -> Value {
    let updated: Vec<&String> = u.updated.keys().collect();
    let (expiry_json, expiry_str) = if req.multi {
        let list: Vec<i64> = u.updated.values().copied().collect();
        let s: String = list.iter().map(i64::to_string).collect();
        (json!(list), s)
    } else {
        (json!(applied[0]), applied[0].to_string())
    };
    let mut m = format!("{}{}", req.account.to_hex(), expiry_str).into_bytes();
    req.hashes
        .iter()
        .for_each(|h| m.extend_from_slice(h.as_bytes()));
    updated
        .iter()
        .for_each(|h| m.extend_from_slice(h.as_bytes()));
    let mut obj = Map::new();
    obj.insert("updated".into(), json!(updated));
    obj.insert("expiry".into(), expiry_json);
    if with_unchanged {
        for (h, e) in &u.unchanged {
            m.extend_from_slice(h.as_bytes());
            m.extend_from_slice(e.to_string().as_bytes());
        }
        obj.insert("unchanged".into(), json!(u.unchanged));
    }
    obj.insert("signature".into(), json!(ctx.sign_b64(&m)));
    Value::Object(obj)
}

/// `expire`.
pub(crate) async fn expire(ctx: &RpcContext, params: &Value, origin: Origin) -> RpcResponse {
    let req = match parse(&Params::new(params), ctx.testnet) {
        Ok(r) => r,
        Err(e) => return e,
    };
    if let Err(r) = check_owner(ctx, &req.account) {
        return r;
    }
    // The entry orders the request after those the messages already have
    // (`Store::expiry_acceptance_time`); a forward's clock reads the entry's choice.
    let now = if origin.is_peer() {
        ctx.now()
    } else {
        let hashes: Vec<String> = req.hashes.iter().map(|h| (*h).to_string()).collect();
        match ctx
            .store
            .expiry_acceptance_time(&req.account, &hashes, ctx.now())
        {
            Ok(t) => t,
            Err(e) => {
                tracing::error!(error = %crate::error::chain(&e), "expire failed");
                return text(500, "request failed");
            }
        }
    };
    let earliest = now.saturating_sub(SIGNATURE_TOLERANCE_MS);
    // For a forward, `now` is the entry node's acceptance time (see `Origin::PeerRetry`).
    if req.expiries.iter().any(|&e| e < earliest) {
        // 401, not 406: the original's (irregular) status for this check.
        return text(401, "expire: timestamp should be >= current time");
    }
    let mode_str = if req.shorten {
        "shorten"
    } else if req.extend {
        "extend"
    } else {
        ""
    };
    let sig_msg = msg::expire(mode_str, &req.expiries, &req.hashes);
    if !verify(ctx, &req.account, &req.auth, &sig_msg, Access::WRITE, true) {
        return text(401, "expire_msgs signature verification failed");
    }
    // A member without Delete access may only extend: shortening is a partial delete.
    let may_shorten = subaccount_flags(&req.auth).is_none_or(|f| f.contains(Access::DELETE));
    if req.shorten && !may_shorten {
        return text(
            400,
            "expire: shorten parameter cannot be used with this subaccount token (missing delete access)",
        );
    }
    // Only a request that itself says `extend` skips trivial extensions (upstream 2.9+); a
    // subaccount forced into extend-only mode gets every extension it asks for.
    let mode = if req.shorten {
        ExpireMode::ShortenOnly
    } else if req.extend {
        ExpireMode::ExtendNonTrivial
    } else if !may_shorten {
        ExpireMode::ExtendOnly
    } else {
        ExpireMode::Set
    };
    // Nothing lives longer than the longest TTL from now.
    let cap = now.saturating_add(TTL_MAXIMUM_PRIVATE_MS);
    let applied: Vec<i64> = req.expiries.iter().map(|&e| e.min(cap)).collect();
    let local = || match update(ctx, &req, &applied, mode, now) {
        Ok(u) => entry(ctx, &req, &applied, &u, mode != ExpireMode::Set),
        Err(e) => {
            tracing::error!(error = %crate::error::chain(&e), "expire failed");
            query_failure()
        }
    };
    let d = distribute(ctx, "expire", params, origin, now, local).await;
    d.finish(ctx, origin, Map::new(), |_| 200)
}

/// `get_expiries`: `{"expiries": {hash: expiry}}` for the account's live messages among the
/// listed hashes (no `t`/`hf`, as the original).
pub(crate) fn get_expiries(ctx: &RpcContext, params: &Value) -> RpcResponse {
    respond((|| {
        let now = ctx.now();
        let p = Params::new(params);
        let account = p.account(ctx.testnet)?;
        let hashes = p.hashes(false)?;
        let ts = require("timestamp", p.timestamp("timestamp")?)?;
        let auth = Auth::parse(&p, &account, true)?.required()?;
        check_owner(ctx, &account)?;
        if !within(now, ts, SIGNATURE_TOLERANCE_MS) {
            return Err(text(
                406,
                "get_expiries timestamp too far from current time",
            ));
        }
        let m = msg::get_expiries(ts, &hashes);
        if !verify(ctx, &account, &auth, &m, Access::READ, true) {
            return Err(text(401, "get_expiries signature verification failed"));
        }
        let owned: Vec<String> = hashes.iter().map(|h| (*h).to_string()).collect();
        let found = ctx.store.get_expiries(&account, &owned, now).map_err(|e| {
            tracing::error!(error = %crate::error::chain(&e), "get_expiries failed");
            text(500, "request failed")
        })?;
        Ok(json_resp(200, json!({ "expiries": found })))
    })())
}
