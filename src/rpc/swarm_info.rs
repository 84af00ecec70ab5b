//! Swarm-facing answers: `get_swarm`, the 421 "wrong swarm" body, the swarm ownership check,
//! our swarm peers, and `active_nodes_bin`.
//!
//! Owns the snode JSON object of 1.5 and the 51-byte record of `active_nodes_bin`. Must not
//! compute swarm mapping itself (`swarm::Membership` does) nor forward anything.

use serde_json::{Map, Value, json};

use crate::keys::snode_address;
use crate::message::AccountId;
use crate::swarm::{Membership, NodeInfo, SwarmId};

use super::params::Params;
use super::{RpcBody, RpcContext, RpcResponse, json_resp, respond};

/// Length of one `active_nodes_bin` record.
pub(crate) const ACTIVE_NODE_RECORD_LEN: usize = 51;

/// One snode as `get_swarm` and 421 bodies list it. snode has no separate legacy key, so
/// `pubkey_legacy` (and the `.snode` address) use the Ed25519 key, as oxend's Ed25519-era
/// nodes do; `port` is a string for the oldest clients, `port_quic` equals `port_omq`.
pub(crate) fn snode_json(n: &NodeInfo) -> Value {
    json!({
        "address": snode_address(&n.pubkey_ed25519),
        "pubkey_legacy": hex::encode(n.pubkey_ed25519),
        "pubkey_x25519": hex::encode(n.pubkey_x25519),
        "pubkey_ed25519": hex::encode(n.pubkey_ed25519),
        "port": n.https_port.to_string(),
        "port_https": n.https_port,
        "port_omq": n.omq_port,
        "port_quic": n.omq_port,
        "ip": n.ip.to_string(),
    })
}

/// `{"snodes":[…], "swarm":"<hex>", "t", "hf"}` for the swarm owning `account`; with no
/// swarm at all: no snodes and the unassigned id.
fn swarm_body(ctx: &RpcContext, m: &Membership, account: &AccountId) -> Value {
    let swarm = m.swarm_for(account);
    let snodes: Vec<Value> = swarm
        .map(|id| m.members(id).into_iter().map(snode_json).collect())
        .unwrap_or_default();
    let id = swarm.unwrap_or(SwarmId::UNASSIGNED);
    let mut obj = Map::new();
    obj.insert("snodes".into(), Value::Array(snodes));
    obj.insert("swarm".into(), json!(format!("{:x}", id.0)));
    ctx.misc(&mut obj);
    Value::Object(obj)
}

/// The 421 check every account method does first: the account must map to our swarm.
pub(crate) fn check_owner(ctx: &RpcContext, account: &AccountId) -> Result<(), RpcResponse> {
    let m = ctx.snapshot();
    let ours = m.swarm_of(&ctx.keys.pubkey_ed25519());
    let theirs = m.swarm_for(account);
    match theirs {
        Some(id) if Some(id) == ours && id != SwarmId::UNASSIGNED => Ok(()),
        _ => {
            tracing::debug!(account = %account.short(), "request for another swarm");
            Err(json_resp(421, swarm_body(ctx, &m, account)))
        }
    }
}

/// The other members of our swarm (the targets of recursive requests).
pub(crate) fn swarm_peers(ctx: &RpcContext) -> Vec<NodeInfo> {
    let m = ctx.snapshot();
    let me = ctx.keys.pubkey_ed25519();
    match m.swarm_of(&me) {
        Some(id) if id != SwarmId::UNASSIGNED => m
            .members(id)
            .into_iter()
            .filter(|n| n.pubkey_ed25519 != me)
            .cloned()
            .collect(),
        _ => Vec::new(),
    }
}

/// `get_swarm` / `get_snodes_for_pubkey`: always 200, no ownership check.
pub(crate) fn get_swarm(ctx: &RpcContext, params: &Value) -> RpcResponse {
    respond((|| {
        let account = Params::new(params).account(ctx.testnet)?;
        let m = ctx.snapshot();
        Ok(json_resp(200, swarm_body(ctx, &m, &account)))
    })())
}

/// `active_nodes_bin` ([dev]): 51 bytes per active node: ed25519 (32) ‖ swarm id u64 BE ‖
/// IPv4 (4) ‖ HTTPS port BE ‖ OMQ/QUIC port BE ‖ version (3 bytes, components > 255 → 0xff).
pub(crate) fn active_nodes_bin(ctx: &RpcContext) -> RpcResponse {
    let m = ctx.snapshot();
    let active: Vec<&NodeInfo> = m
        .nodes
        .iter()
        .filter(|n| n.swarm_id != SwarmId::UNASSIGNED)
        .collect();
    let mut out = Vec::with_capacity(active.len() * ACTIVE_NODE_RECORD_LEN);
    for n in active {
        out.extend_from_slice(&n.pubkey_ed25519);
        out.extend_from_slice(&n.swarm_id.0.to_be_bytes());
        out.extend_from_slice(&n.ip.octets());
        out.extend_from_slice(&n.https_port.to_be_bytes());
        out.extend_from_slice(&n.omq_port.to_be_bytes());
        out.extend(n.version.iter().map(|&c| u8::try_from(c).unwrap_or(0xff)));
    }
    RpcResponse {
        status: 200,
        body: RpcBody::Bytes(out),
    }
}
