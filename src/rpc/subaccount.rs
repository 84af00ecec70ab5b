//! `revoke_subaccount`, `unrevoke_subaccount` and ([dev]) `revoked_subaccounts`.
//!
//! Owns token-list bounds and the per-node signature `PK ‖ timestamp ‖ tokens`. Only the
//! account key may (un)revoke: subaccount auth is not accepted here. Revocations are kept
//! by the store independently of messages, so unlike the original they do not vanish when
//! the account's last message expires (storage-server.md 1.5).

use serde_json::{Value, json};

use crate::message::{MAX_SUBACCOUNT_TOKENS, SIGNATURE_TOLERANCE_MS, b64};
use crate::sign::{Access, SubaccountToken, msg};

use super::auth::{Auth, verify, within};
use super::params::{ParamError, Params, require};
use super::recursive::{distribute, query_failure};
use super::swarm_info::check_owner;
use super::{Origin, RpcContext, RpcResponse, json_resp, respond, text};

/// `revoke_subaccount` (`revoke` true) or `unrevoke_subaccount`.
pub(crate) async fn revoke(
    ctx: &RpcContext,
    params: &Value,
    origin: Origin,
    revoke: bool,
) -> RpcResponse {
    let (method, key) = if revoke {
        ("revoke_subaccount", "revoke")
    } else {
        ("unrevoke_subaccount", "unrevoke")
    };
    let now = ctx.now();
    let p = Params::new(params);
    let parsed = (|| {
        let account = p.account(ctx.testnet)?;
        let tokens = require(key, p.tokens(key)?)?;
        if tokens.is_empty() {
            return Err(ParamError(format!(
                "Invalid value given for '{key}': expected at least one subaccount token"
            ))
            .into());
        }
        // The original bounds revoke lists at 50; unrevoke gets the same bound since no
        // account can have more than 50 revocations to undo.
        if tokens.len() > MAX_SUBACCOUNT_TOKENS {
            return Err(ParamError(format!(
                "Invalid value given for '{key}': too many subaccount tokens (max {MAX_SUBACCOUNT_TOKENS})"
            ))
            .into());
        }
        let ts = require("timestamp", p.timestamp("timestamp")?)?;
        let auth = Auth::parse(&p, &account, false)?.required()?;
        Ok::<_, RpcResponse>((account, tokens, ts, auth))
    })();
    let (account, tokens, ts, auth) = match parsed {
        Ok(v) => v,
        Err(e) => return e,
    };
    if let Err(r) = check_owner(ctx, &account) {
        return r;
    }
    // For a forward, `now` is the entry node's acceptance time (see `Origin::PeerRetry`).
    if !within(now, ts, SIGNATURE_TOLERANCE_MS) {
        return text(406, format!("{method} timestamp too far from current time"));
    }
    if !verify(
        ctx,
        &account,
        &auth,
        &msg::revoke(method, ts, &tokens),
        Access::NONE,
        false,
    ) {
        return text(401, format!("{method} signature verification failed"));
    }
    let raw: Vec<[u8; 36]> = tokens.iter().map(|t: &SubaccountToken| t.0).collect();
    let local = || {
        let mut m = format!("{}{}", account.to_hex(), ts).into_bytes();
        raw.iter().for_each(|t| m.extend_from_slice(t));
        let result = if revoke {
            ctx.store
                // The client's signed time orders revokes and unrevokes on every member,
                // however late a forward or retry arrives (last writer wins).
                .revoke_subaccounts(&account, &raw, ts)
                .map(|()| json!({"signature": ctx.sign_b64(&m)}))
        } else {
            ctx.store
                .unrevoke_subaccounts(&account, &raw, ts)
                .map(|count| json!({"signature": ctx.sign_b64(&m), "count": count}))
        };
        result.unwrap_or_else(|e| {
            tracing::error!(error = %crate::error::chain(&e), method, "revocation update failed");
            query_failure()
        })
    };
    let d = distribute(ctx, method, params, origin, now, local).await;
    d.finish(ctx, origin, serde_json::Map::new(), |_| 200)
}

/// `revoked_subaccounts` ([dev]): the account's revoked tokens, base64, signed by the
/// account key over `"revoked_subaccounts" ‖ timestamp`.
pub(crate) fn revoked_subaccounts(ctx: &RpcContext, params: &Value) -> RpcResponse {
    respond((|| {
        let now = ctx.now();
        let p = Params::new(params);
        let account = p.account(ctx.testnet)?;
        let ts = require("timestamp", p.timestamp("timestamp")?)?;
        let auth = Auth::parse(&p, &account, false)?.required()?;
        check_owner(ctx, &account)?;
        if !within(now, ts, SIGNATURE_TOLERANCE_MS) {
            return Err(text(
                406,
                "revoked_subaccounts timestamp too far from current time",
            ));
        }
        let m = msg::revoked_subaccounts(ts);
        if !verify(ctx, &account, &auth, &m, Access::NONE, false) {
            return Err(text(
                401,
                "revoked_subaccounts signature verification failed",
            ));
        }
        let list = ctx.store.revoked_subaccounts(&account).map_err(|e| {
            tracing::error!(error = %crate::error::chain(&e), "listing revocations failed");
            text(500, "request failed")
        })?;
        let revoked: Vec<String> = list.iter().map(|t| b64(t)).collect();
        // Upstream names the list after the method (2.11); 2.8's dev branch said `revoked`.
        Ok(json_resp(200, json!({ "revoked_subaccounts": revoked })))
    })())
}
