//! Node-level methods without an account: `info` and `oxend_request`.
//!
//! This network has no oxend: `oxend_request get_service_nodes` is answered from our
//! membership snapshot in oxend's response shape, so clients that bootstrap their node list
//! through a node keep working. Must not reach out to anything: every answer is local.

use serde_json::{Map, Value, json};

use crate::swarm::{NodeInfo, SwarmId};

use super::params::{ParamError, Params, require};
use super::{HARDFORK, RpcContext, RpcResponse, STORAGE_SERVER_VERSION, json_resp, respond, text};

/// `info`: `{"version":[2,8,0], "timestamp": ms, "t", "hf"}`.
pub(crate) fn info(ctx: &RpcContext) -> RpcResponse {
    let mut obj = Map::new();
    obj.insert("version".into(), json!(STORAGE_SERVER_VERSION));
    obj.insert("timestamp".into(), json!(ctx.now()));
    ctx.misc(&mut obj);
    json_resp(200, Value::Object(obj))
}

/// Fields of a `get_service_nodes` entry that we can fill, in oxend's names.
const SN_FIELDS: &[&str] = &[
    "service_node_pubkey",
    "pubkey_ed25519",
    "pubkey_x25519",
    "public_ip",
    "storage_port",
    "storage_lmq_port",
    "swarm_id",
    "funded",
    "active",
];

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
                let result = get_service_nodes(ctx, inner);
                let mut obj = Map::new();
                obj.insert("result".into(), result);
                ctx.misc(&mut obj);
                Ok(json_resp(200, Value::Object(obj)))
            }
            // Same status as an oxend error in the original (400 with oxend's message).
            "ons_resolve" => Ok(text(400, "ONS is not available on this network")),
            other => Err(ParamError(format!("Invalid oxend endpoint '{other}'")).into()),
        }
    })())
}

/// Which fields were asked for: oxend's `fields` object (`{"name": true}`), a list of names,
/// or absent (all of them).
fn wanted_fields(params: &Value) -> Vec<&'static str> {
    match params.get("fields") {
        Some(Value::Object(f)) if f.get("all").and_then(Value::as_bool) != Some(true) => SN_FIELDS
            .iter()
            .copied()
            .filter(|k| f.get(*k).and_then(Value::as_bool) == Some(true))
            .collect(),
        Some(Value::Array(list)) => SN_FIELDS
            .iter()
            .copied()
            .filter(|k| list.iter().any(|v| v.as_str() == Some(k)))
            .collect(),
        _ => SN_FIELDS.to_vec(),
    }
}

fn sn_field(n: &NodeInfo, field: &str) -> Value {
    match field {
        // snode has no separate legacy key: the Ed25519 key is the identity.
        "service_node_pubkey" | "pubkey_ed25519" => json!(hex::encode(n.pubkey_ed25519)),
        "pubkey_x25519" => json!(hex::encode(n.pubkey_x25519)),
        "public_ip" => json!(n.ip.to_string()),
        "storage_port" => json!(n.https_port),
        "storage_lmq_port" => json!(n.omq_port),
        "swarm_id" => json!(n.swarm_id.0),
        "funded" => json!(true),
        "active" => json!(n.swarm_id != SwarmId::UNASSIGNED),
        _ => Value::Null,
    }
}

/// oxend's `get_service_nodes` result, honouring `fields`, `active_only` and
/// `service_node_pubkeys`.
fn get_service_nodes(ctx: &RpcContext, params: &Value) -> Value {
    let m = ctx.snapshot();
    let fields = wanted_fields(params);
    let active_only = params.get("active_only").and_then(Value::as_bool) == Some(true);
    let only: Option<Vec<&str>> = params
        .get("service_node_pubkeys")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect());
    let states: Vec<Value> = m
        .nodes
        .iter()
        .filter(|n| !active_only || n.swarm_id != SwarmId::UNASSIGNED)
        .filter(|n| {
            only.as_ref()
                .is_none_or(|o| o.contains(&hex::encode(n.pubkey_ed25519).as_str()))
        })
        .map(|n| {
            let obj: Map<String, Value> = fields
                .iter()
                .map(|f| ((*f).to_string(), sn_field(n, f)))
                .collect();
            Value::Object(obj)
        })
        .collect();
    json!({
        "service_node_states": states,
        "height": m.height,
        "block_hash": m.block_hash,
        "hardfork": HARDFORK[0],
        "snode_revision": HARDFORK[1],
        "status": "OK",
    })
}
