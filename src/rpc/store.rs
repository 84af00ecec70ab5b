//! `store` (storage-server.md 1.5): validate, store locally while forwarding to the swarm,
//! answer one signed entry per member.
//!
//! Owns the store checks in the original's order (421 → TTL → clock → auth) with their exact
//! texts, and the store metrics. Must not touch RocksDB details (the `Store` API does).

use serde_json::{Map, Value, json};

use crate::message::{
    AccountId, MAX_DATA_B64, MAX_DATA_BYTES, Message, Namespace, SIGNATURE_TOLERANCE_MS,
    STORE_TOLERANCE_MS, TTL_MINIMUM_MS, b64_decode, message_hash,
};
use crate::metrics::Rejection;
use crate::sign::{Access, msg};
use crate::store::{StoreError, StoreOutcome};

use super::auth::{Auth, verify, within};
use super::params::{PResult, ParamError, Params, missing, require};
use super::recursive::{distribute, query_failure};
use super::swarm_info::check_owner;
use super::{Origin, RpcContext, RpcResponse, text};

/// A parsed `store` request.
struct StoreReq {
    account: AccountId,
    namespace: Namespace,
    timestamp: i64,
    expiry: i64,
    data: Vec<u8>,
    /// `(auth, sig_timestamp)` when a signature was given; otherwise the auth fields are
    /// ignored, as in the original.
    auth: Option<(Auth, i64)>,
}

/// Why the data field was refused (a `size` rejection in the metrics).
const DATA_TOO_LONG: &str =
    "Invalid value given for 'data': exceeds the maximum message size of 76800 bytes";

fn parse(p: &Params<'_>, testnet: bool) -> PResult<StoreReq> {
    let account = p.account(testnet)?;
    let timestamp = require("timestamp", p.timestamp_or_string("timestamp", true)?)?;
    let expiry = match (p.timestamp_or_string("ttl", false)?, p.timestamp("expiry")?) {
        (Some(_), Some(_)) => {
            return Err(ParamError("Cannot specify both 'ttl' and 'expiry'".into()));
        }
        (Some(ttl), None) => timestamp.saturating_add(ttl),
        (None, Some(expiry)) => expiry,
        (None, None) => return Err(missing("ttl")),
    };
    let b64 = require("data", p.str("data")?)?;
    if b64.len() > MAX_DATA_B64 {
        return Err(ParamError(DATA_TOO_LONG.into()));
    }
    let data = b64_decode(b64).ok_or_else(|| {
        ParamError("Invalid value given for 'data': expected base64 encoded data".into())
    })?;
    if data.len() > MAX_DATA_BYTES {
        return Err(ParamError(DATA_TOO_LONG.into()));
    }
    let namespace = p.namespace()?.unwrap_or_default();
    let auth = if p.has("signature") {
        let auth = Auth::parse(p, &account, true)?;
        let sig_ts = p.timestamp("sig_timestamp")?.unwrap_or(timestamp);
        Some((auth, sig_ts))
    } else {
        None
    };
    Ok(StoreReq {
        account,
        namespace,
        timestamp,
        expiry,
        data,
        auth,
    })
}

/// Counts a refused store by reason (closed vocabulary, see `metrics`).
fn reject(ctx: &RpcContext, reason: Rejection, resp: RpcResponse) -> RpcResponse {
    ctx.metrics
        .messages_rejected_total
        .with_label_values(&[reason.label()])
        .inc();
    resp
}

/// Every check before the write; `Err` is the response to send. For a forwarded request
/// `now` is the entry node's acceptance time (see `Origin::PeerRetry`).
fn check(ctx: &RpcContext, req: &StoreReq, now: i64) -> Result<(), RpcResponse> {
    check_owner(ctx, &req.account)?;
    let ns = req.namespace;
    let ttl = req.expiry.saturating_sub(req.timestamp);
    if !(TTL_MINIMUM_MS..=ns.max_ttl_ms()).contains(&ttl) {
        return Err(reject(
            ctx,
            Rejection::Ttl,
            text(403, "Provided expiry/TTL is not valid."),
        ));
    }
    if req.timestamp > now.saturating_add(STORE_TOLERANCE_MS)
        || req.expiry < now.saturating_sub(STORE_TOLERANCE_MS)
    {
        return Err(reject(
            ctx,
            Rejection::Clock,
            text(406, "Timestamp error: check your clock"),
        ));
    }
    // Public inboxes take unauthenticated stores. A signature sent there is format-checked
    // (by parsing) but not verified, exactly as the original: verifying it would refuse
    // stores the rest of the network accepts.
    if !ns.is_public_inbox() {
        let Some((auth, sig_ts)) = &req.auth else {
            return Err(reject(
                ctx,
                Rejection::Auth,
                text(
                    401,
                    format!("store: signature required to store to namespace {ns}"),
                ),
            ));
        };
        if !within(now, *sig_ts, SIGNATURE_TOLERANCE_MS) {
            return Err(reject(
                ctx,
                Rejection::Clock,
                text(406, "store signature timestamp too far from current time"),
            ));
        }
        // A public outbox keeps only the newest message, so storing there deletes.
        let access = if ns.is_public_outbox() {
            Access::WRITE | Access::DELETE
        } else {
            Access::WRITE
        };
        let verified = auth.required().is_ok_and(|a| {
            verify(
                ctx,
                &req.account,
                &a,
                &msg::store(ns, *sig_ts),
                access,
                true,
            )
        });
        if !verified {
            return Err(reject(
                ctx,
                Rejection::Auth,
                text(401, "store signature verification failed"),
            ));
        }
    }
    // The reserved testing namespace (-3741, [dev]) refuses every store. snode refuses it
    // after the auth checks, so a test client still exercises the whole validation path,
    // and before forwarding, so nothing is written anywhere.
    if ns == Namespace::TESTING {
        return Err(reject(
            ctx,
            Rejection::Namespace,
            text(400, "invalid request: testing namespace"),
        ));
    }
    Ok(())
}

/// Writes the message and builds our entry: `{"hash","signature","expiry"[,"already"]}`.
fn store_local(ctx: &RpcContext, m: &Message, now: i64) -> Value {
    match ctx.store.store(m, now) {
        Ok(outcome) => {
            let mut expiry = m.expiry_ms;
            match outcome {
                StoreOutcome::New => {
                    ctx.metrics.messages_stored_total.inc();
                    ctx.metrics.bytes_stored_total.inc_by(m.data.len() as u64);
                }
                StoreOutcome::Extended => {}
                // A client deleted this hash since the store was accepted (a late forward):
                // it was accepted, so it is acknowledged as stored (and deleted).
                StoreOutcome::Deleted => {}
                // The stored expiry is later than ours: report the one that holds.
                StoreOutcome::Exists => {
                    if let Ok(Some(stored)) = ctx.store.get_by_hash(&m.hash, now) {
                        expiry = stored.expiry_ms;
                    }
                }
            }
            let mut entry = Map::new();
            entry.insert("hash".into(), json!(m.hash));
            entry.insert("signature".into(), json!(ctx.sign_b64(m.hash.as_bytes())));
            entry.insert("expiry".into(), json!(expiry));
            if outcome != StoreOutcome::New {
                entry.insert("already".into(), json!(true));
            }
            Value::Object(entry)
        }
        Err(StoreError::Full { .. }) => {
            ctx.metrics
                .messages_rejected_total
                .with_label_values(&[Rejection::Full.label()])
                .inc();
            // Per request, so debug: the status monitor warns once when the store fills up.
            tracing::debug!("store is full: refusing new messages until some expire");
            query_failure()
        }
        Err(e) => {
            tracing::error!(error = %crate::error::chain(&e), "storing a message failed");
            query_failure()
        }
    }
}

/// `store`.
pub(crate) async fn handle(ctx: &RpcContext, params: &Value, origin: Origin) -> RpcResponse {
    let now = ctx.now();
    let req = match parse(&Params::new(params), ctx.testnet) {
        Ok(r) => r,
        Err(e) if e.0 == DATA_TOO_LONG => return reject(ctx, Rejection::Size, e.into()),
        Err(e) => return e.into(),
    };
    if let Err(resp) = check(ctx, &req, now) {
        return resp;
    }
    let hash = message_hash(&req.account, req.namespace, &req.data);
    let m = Message {
        account: req.account,
        namespace: req.namespace,
        hash: hash.clone(),
        timestamp_ms: req.timestamp,
        expiry_ms: req.expiry,
        data: req.data,
        expiry_log: None,
    };
    let d = distribute(ctx, "store", params, origin, now, || {
        store_local(ctx, &m, now)
    })
    .await;
    let mut top = Map::new();
    top.insert("hash".into(), json!(hash));
    d.finish(ctx, origin, top, |_| 200)
}
