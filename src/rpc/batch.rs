//! Meta-requests (storage-server.md 1.5): `batch` (subrequests run concurrently),
//! `sequence` (in order, stopping after the first non-2xx) and `ifelse` (a branch chosen by
//! hardfork / version / height conditions).
//!
//! Owns the structural checks and their texts; every subrequest goes back through
//! `dispatch`, so it gets exactly the checks it would get alone. Structural errors fail the
//! whole meta-request; a subrequest's own errors (bad params, 401, 421…) are its result
//! only, so one bad subrequest does not hide the others' answers. Must not run nested
//! batches: batch/sequence contain no meta-requests, and `ifelse` nesting is bounded.

use futures_util::future::join_all;
use serde_json::{Map, Value, json};

use crate::message::{BATCH_REQUEST_MAX, b64};

use super::params::{PResult, ParamError};
use super::{
    HARDFORK, Method, Origin, RpcBody, RpcContext, RpcResponse, STORAGE_SERVER_VERSION, dispatch,
    json_resp,
};

/// One subrequest result: `{"code": status, "body": json | string}` (bytes as base64).
fn result_json(r: RpcResponse) -> Value {
    let body = match r.body {
        RpcBody::Json(v) => v,
        RpcBody::Text(t) => Value::String(t),
        RpcBody::Bytes(b) => Value::String(b64(&b)),
    };
    json!({"code": r.status, "body": body})
}

fn perr(msg: &str) -> ParamError {
    ParamError(msg.to_string())
}

/// A `{"method", "params"}` subrequest; `what` names the container for error texts.
fn subrequest<'a>(v: &'a Value, shape_err: &str, what: &str) -> PResult<(&'a str, &'a Value)> {
    let method = v.get("method").and_then(Value::as_str);
    let params = v.get("params").filter(|p| p.is_object());
    let (Some(method), Some(params)) = (method, params) else {
        return Err(perr(shape_err));
    };
    if Method::from_name(method).is_none() {
        return Err(ParamError(format!(
            "Invalid {what} subrequest: invalid method \"{method}\""
        )));
    }
    Ok((method, params))
}

/// The `requests` list of batch/sequence, checked.
fn requests(params: &Value) -> PResult<Vec<(&str, &Value)>> {
    let list = params
        .get("requests")
        .and_then(Value::as_array)
        .filter(|l| !l.is_empty())
        .ok_or_else(|| perr("Invalid batch request: no valid \"requests\" field"))?;
    if list.len() > BATCH_REQUEST_MAX {
        return Err(perr("Invalid batch request: subrequest limit exceeded"));
    }
    list.iter()
        .map(|v| {
            let (method, p) = subrequest(
                v,
                "Invalid batch request: subrequests must have method/params keys",
                "batch",
            )?;
            if Method::from_name(method).is_some_and(Method::is_meta) {
                return Err(perr(
                    "Invalid batch request: subrequests may not contain meta-requests",
                ));
            }
            Ok((method, p))
        })
        .collect()
}

/// `batch` (`sequence` false) or `sequence`. Always 200; statuses are per subrequest.
pub(crate) async fn batch(
    ctx: &RpcContext,
    params: &Value,
    origin: Origin,
    depth: u8,
    sequence: bool,
) -> RpcResponse {
    let subs = match requests(params) {
        Ok(s) => s,
        Err(e) => return e.into(),
    };
    let results: Vec<Value> = if sequence {
        let mut out = Vec::with_capacity(subs.len());
        for (method, p) in subs {
            let r = dispatch(ctx, method, p, origin, depth + 1).await;
            let ok = (200..300).contains(&r.status);
            out.push(result_json(r));
            if !ok {
                break;
            }
        }
        out
    } else {
        let futs = subs
            .into_iter()
            .map(|(method, p)| dispatch(ctx, method, p, origin, depth + 1));
        join_all(futs).await.into_iter().map(result_json).collect()
    };
    json_resp(200, json!({ "results": results }))
}

/// Reads `[a, b, …]` as up to `N` non-negative components, missing ones 0.
fn version_value<const N: usize>(key: &str, v: &Value) -> PResult<[u64; N]> {
    let bad = || {
        ParamError(format!(
            "Invalid ifelse request: invalid value for \"{key}\""
        ))
    };
    let list = v
        .as_array()
        .filter(|l| !l.is_empty() && l.len() <= N)
        .ok_or_else(bad)?;
    let mut out = [0u64; N];
    for (slot, item) in out.iter_mut().zip(list) {
        *slot = item.as_u64().ok_or_else(bad)?;
    }
    Ok(out)
}

/// Evaluates the ANDed conditions of `if`.
fn condition(conds: &Map<String, Value>, height: u64) -> PResult<bool> {
    let hf = HARDFORK.map(u64::from);
    let v = STORAGE_SERVER_VERSION.map(u64::from);
    let mut result = true;
    for (key, val) in conds {
        let holds = match key.as_str() {
            "hf_at_least" => hf >= version_value::<2>(key, val)?,
            "hf_before" => hf < version_value::<2>(key, val)?,
            "v_at_least" => v >= version_value::<3>(key, val)?,
            "v_before" => v < version_value::<3>(key, val)?,
            "height_at_least" | "height_before" => {
                let h = val.as_u64().ok_or_else(|| {
                    ParamError(format!(
                        "Invalid ifelse request: invalid value for \"{key}\""
                    ))
                })?;
                if key == "height_at_least" {
                    height >= h
                } else {
                    height < h
                }
            }
            other => {
                return Err(ParamError(format!(
                    "Invalid ifelse request: unknown condition \"{other}\""
                )));
            }
        };
        result &= holds;
    }
    Ok(result)
}

/// `ifelse`: `{"hf", "v", "height", "condition", ["result"]}`.
pub(crate) async fn ifelse(
    ctx: &RpcContext,
    params: &Value,
    origin: Origin,
    depth: u8,
) -> RpcResponse {
    let height = ctx.snapshot().height;
    let parsed = (|| {
        let conds = params
            .get("if")
            .and_then(Value::as_object)
            .ok_or_else(|| perr("Invalid ifelse request: no valid \"if\" field"))?;
        let shape = "Invalid ifelse request: then/else must have method/params keys";
        let then = params
            .get("then")
            .map(|v| subrequest(v, shape, "ifelse"))
            .transpose()?;
        let otherwise = params
            .get("else")
            .map(|v| subrequest(v, shape, "ifelse"))
            .transpose()?;
        if then.is_none() && otherwise.is_none() {
            return Err(perr(
                "Invalid ifelse request: at least one of \"then\" or \"else\" is required",
            ));
        }
        Ok((condition(conds, height)?, then, otherwise))
    })();
    let (cond, then, otherwise) = match parsed {
        Ok(v) => v,
        Err(e) => return e.into(),
    };
    let mut obj = Map::new();
    obj.insert("hf".into(), json!(HARDFORK));
    obj.insert("v".into(), json!(STORAGE_SERVER_VERSION));
    obj.insert("height".into(), json!(height));
    obj.insert("condition".into(), json!(cond));
    if let Some((method, p)) = if cond { then } else { otherwise } {
        let r = dispatch(ctx, method, p, origin, depth + 1).await;
        obj.insert("result".into(), result_json(r));
    }
    json_resp(200, Value::Object(obj))
}
