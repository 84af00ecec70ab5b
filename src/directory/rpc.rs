//! oxend's JSON-RPC at `/json_rpc`: `get_service_nodes` and `get_n_service_nodes`.
//!
//! Owns the envelope (`{"jsonrpc":"2.0","id","method","params"}` → `{"jsonrpc","id","result"}`
//! or `"error"`), the request fields (`fields` as an object of bools or a list of names,
//! `active_only`, `poll_block_hash`, `limit`, `service_node_pubkeys`) and the response shape
//! of storage-server.md 3.1 and clients.md 1.1–1.2. Pure: reads a `Membership` snapshot, and
//! takes the randomness of `limit` as a parameter. Must not change state.
//!
//! snode's one extension: `get_service_nodes` with `"height": N` answers the listing the
//! directory served at height N, if it kept it (`server::LISTINGS_KEPT`), or the error
//! `height not kept`. A node whose polls skipped heights reads them back, so it knows every
//! node that owned an account it holds (the hand-off admission of `swarm::may_push`;
//! docs/simulation.md, finding 8). oxend has no such parameter and ignores it.
//!
//! As oxend: `limit > 0` returns that many nodes chosen at random, in random order (clients
//! seed their pool from it); `limit < 0` returns all nodes shuffled; no limit (or 0) returns
//! all nodes in pubkey order. A decommissioned node is listed with `active: false` and
//! `swarm_id` 2^64 − 1 unless `active_only` is set.

use crate::swarm::{Membership, NodeInfo};
use rand::Rng;
use rand::seq::SliceRandom as _;
use serde_json::{Map, Value, json};
use std::collections::{BTreeSet, VecDeque};
use std::sync::Arc;

/// The error of a `height` the directory did not keep (never served, or too old).
pub const HEIGHT_NOT_KEPT: &str = "height not kept";

/// The hardfork version reported (19: what Session clients and storage servers expect).
pub const HARDFORK: u64 = 19;
/// The `snode_revision` reported alongside `HARDFORK`.
pub const SNODE_REVISION: u64 = 4;

/// JSON-RPC 2.0: the body is not JSON.
const PARSE_ERROR: i64 = -32700;
/// JSON-RPC 2.0: not a request object.
const INVALID_REQUEST: i64 = -32600;
/// JSON-RPC 2.0: unknown method.
const METHOD_NOT_FOUND: i64 = -32601;
/// JSON-RPC 2.0: bad params.
const INVALID_PARAMS: i64 = -32602;

/// Every per-node field, in listing order. With no `fields` in the request, all are sent.
pub const NODE_FIELDS: &[&str] = &[
    "service_node_pubkey",
    "pubkey_ed25519",
    "pubkey_x25519",
    "public_ip",
    "storage_port",
    "storage_lmq_port",
    "swarm_id",
    "funded",
    "active",
    "storage_server_version",
    "requested_unlock_height",
];

/// Handles one `/json_rpc` body and returns the response body (always a JSON-RPC response;
/// errors are in-band as oxend's, with HTTP 200). `membership` is the current listing,
/// `before` the ones served before it (any order), for the `height` parameter.
pub fn handle(
    body: &[u8],
    membership: &Membership,
    before: &VecDeque<Arc<Membership>>,
    rng: &mut impl Rng,
) -> Value {
    let request: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(_) => return error(Value::Null, PARSE_ERROR, "Parse error"),
    };
    let Some(obj) = request.as_object() else {
        return error(Value::Null, INVALID_REQUEST, "Invalid Request");
    };
    let id = obj.get("id").cloned().unwrap_or(Value::Null);
    let Some(method) = obj.get("method").and_then(Value::as_str) else {
        return error(id, INVALID_REQUEST, "Invalid Request");
    };
    let empty = Map::new();
    let params = match obj.get("params") {
        None | Some(Value::Null) => &empty,
        Some(Value::Object(p)) => p,
        Some(_) => return error(id, INVALID_PARAMS, "params must be an object"),
    };
    match method {
        "get_service_nodes" | "get_n_service_nodes" => {
            let listing = match params.get("height") {
                None | Some(Value::Null) => Some(membership),
                Some(h) => match h.as_u64() {
                    None => return error(id, INVALID_PARAMS, "height must be an integer"),
                    Some(h) => std::iter::once(membership)
                        .chain(before.iter().map(|m| &**m))
                        .find(|m| m.height == h),
                },
            };
            let Some(listing) = listing else {
                return error(id, INVALID_PARAMS, HEIGHT_NOT_KEPT);
            };
            match service_nodes(params, listing, rng) {
                Ok(result) => json!({"jsonrpc": "2.0", "id": id, "result": result}),
                Err(why) => error(id, INVALID_PARAMS, why),
            }
        }
        _ => error(id, METHOD_NOT_FOUND, "Method not found"),
    }
}

/// A JSON-RPC error response.
fn error(id: Value, code: i64, message: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}})
}

/// The requested per-node fields: every known field when `fields` is absent, otherwise the
/// names set to `true` (object form) or listed (list form). Unknown names are ignored, as
/// oxend ignores fields it does not have.
fn requested_fields(params: &Map<String, Value>) -> Result<BTreeSet<&'static str>, &'static str> {
    let wanted = |name: &str| NODE_FIELDS.iter().copied().find(|f| *f == name);
    match params.get("fields") {
        None | Some(Value::Null) => Ok(NODE_FIELDS.iter().copied().collect()),
        Some(Value::Object(m)) => {
            let mut out = BTreeSet::new();
            for (name, on) in m {
                match on {
                    Value::Bool(true) => out.extend(wanted(name)),
                    Value::Bool(false) => {}
                    _ => return Err("fields values must be booleans"),
                }
            }
            Ok(out)
        }
        Some(Value::Array(list)) => {
            let mut out = BTreeSet::new();
            for name in list {
                let name = name.as_str().ok_or("fields must be a list of names")?;
                out.extend(wanted(name));
            }
            Ok(out)
        }
        Some(_) => Err("fields must be an object or a list"),
    }
}

/// The body of `get_service_nodes` / `get_n_service_nodes` (also what a node answers to a
/// client's `oxend_request`, from its own membership view). Errors are oxend's messages.
pub fn service_nodes(
    params: &Map<String, Value>,
    m: &Membership,
    rng: &mut impl Rng,
) -> Result<Value, &'static str> {
    match params.get("poll_block_hash") {
        None | Some(Value::Null) => {}
        Some(Value::String(h)) if h.eq_ignore_ascii_case(&m.block_hash) => {
            return Ok(json!({
                "unchanged": true,
                "height": m.height,
                "block_hash": m.block_hash,
                "status": "OK",
            }));
        }
        Some(Value::String(_)) => {}
        Some(_) => return Err("poll_block_hash must be a string"),
    }
    let active_only = match params.get("active_only") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err("active_only must be a boolean"),
    };
    let limit = match params.get("limit") {
        None | Some(Value::Null) => 0,
        Some(v) => v.as_i64().ok_or("limit must be an integer")?,
    };
    let only: Option<BTreeSet<String>> = match params.get("service_node_pubkeys") {
        None | Some(Value::Null) => None,
        Some(Value::Array(list)) if list.is_empty() => None,
        Some(Value::Array(list)) => Some(
            list.iter()
                .map(|v| v.as_str().map(str::to_ascii_lowercase))
                .collect::<Option<_>>()
                .ok_or("service_node_pubkeys must be a list of hex strings")?,
        ),
        Some(_) => return Err("service_node_pubkeys must be a list"),
    };
    let fields = requested_fields(params)?;

    let mut nodes: Vec<&NodeInfo> = m
        .nodes
        .iter()
        .filter(|n| !active_only || n.is_active())
        .filter(|n| {
            only.as_ref()
                .is_none_or(|set| set.contains(&hex::encode(n.pubkey_ed25519)))
        })
        .collect();
    if limit != 0 {
        nodes.shuffle(rng);
        if let Ok(keep) = usize::try_from(limit) {
            nodes.truncate(keep);
        }
    }
    let states: Vec<Value> = nodes.iter().map(|n| node_entry(n, &fields)).collect();
    Ok(json!({
        "service_node_states": states,
        "height": m.height,
        "block_hash": m.block_hash,
        "hardfork": HARDFORK,
        "snode_revision": SNODE_REVISION,
        "status": "OK",
    }))
}

/// One entry of `service_node_states` with the requested fields.
fn node_entry(n: &NodeInfo, fields: &BTreeSet<&'static str>) -> Value {
    let mut e = Map::new();
    for &f in NODE_FIELDS.iter().filter(|f| fields.contains(*f)) {
        let v = match f {
            // The "legacy" pubkey of oxend; snode's nodes use their Ed25519 key for both.
            "service_node_pubkey" | "pubkey_ed25519" => json!(hex::encode(n.pubkey_ed25519)),
            "pubkey_x25519" => json!(hex::encode(n.pubkey_x25519)),
            "public_ip" => json!(n.ip.to_string()),
            "storage_port" => json!(n.https_port),
            "storage_lmq_port" => json!(n.omq_port),
            "swarm_id" => json!(n.swarm_id.0),
            "funded" => json!(true),
            "active" => json!(n.is_active()),
            "storage_server_version" => json!(n.version),
            // Nobody is unlocking: there is no stake to unlock.
            "requested_unlock_height" => json!(0),
            _ => continue,
        };
        e.insert(f.to_string(), v);
    }
    Value::Object(e)
}

#[cfg(test)]
mod tests;
