//! Node-level methods without an account: `info` and `oxend_request`.
//!
//! This network has no oxend: `oxend_request get_service_nodes` is answered from our
//! membership snapshot in oxend's response shape, so clients that bootstrap their node list
//! through a node keep working. Must not reach out to anything: every answer is local.

use serde_json::{Map, Value, json};

use super::params::{ParamError, Params, require};
use super::{RpcContext, RpcResponse, STORAGE_SERVER_VERSION, json_resp, respond, text};

/// `info`: `{"version":[2,8,0], "timestamp": ms, "t", "hf"}`.
pub(crate) fn info(ctx: &RpcContext) -> RpcResponse {
    let mut obj = Map::new();
    obj.insert("version".into(), json!(STORAGE_SERVER_VERSION));
    obj.insert("timestamp".into(), json!(ctx.now()));
    ctx.misc(&mut obj);
    json_resp(200, Value::Object(obj))
}

/// `oxend_request`: `get_service_nodes` from our membership; `ons_resolve` refused (this
/// network has no name system); anything else is the original's invalid-endpoint error.
pub(crate) fn oxend_request(ctx: &RpcContext, params: &Value) -> RpcResponse {
    respond((|| {
        let p = Params::new(params);
        let endpoint = require("endpoint", p.str("endpoint")?)?;
        let inner = match p.get("params") {
            None => &Value::Null,
            Some(v) if v.is_object() => v,
            Some(_) => {
                return Err(
                    ParamError("Invalid value given for 'params': expected object".into()).into(),
                );
            }
        };
        match endpoint {
            "get_service_nodes" => {
                // The same answer the directory gives, from this node's membership view.
                let empty = Map::new();
                let p = inner.as_object().unwrap_or(&empty);
                let m = ctx.snapshot();
                // The lock is held for one in-memory sample, never across an await.
                let sampled = match ctx.rng.lock() {
                    Ok(mut rng) => crate::directory::rpc::service_nodes(p, &m, &mut *rng),
                    Err(poisoned) => {
                        crate::directory::rpc::service_nodes(p, &m, &mut *poisoned.into_inner())
                    }
                };
                match sampled {
                    Ok(result) => {
                        let mut obj = Map::new();
                        obj.insert("result".into(), result);
                        ctx.misc(&mut obj);
                        Ok(json_resp(200, Value::Object(obj)))
                    }
                    // An oxend error: 400 with its message, as the original.
                    Err(why) => Ok(text(400, why)),
                }
            }
            // Same status as an oxend error in the original (400 with oxend's message).
            "ons_resolve" => Ok(text(400, "ONS is not available on this network")),
            other => Err(ParamError(format!("Invalid oxend endpoint '{other}'")).into()),
        }
    })())
}
