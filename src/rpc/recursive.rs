//! Swarm-wide (recursive) requests, storage-server.md 1.6: forward to the other members of
//! our swarm while doing the local work, then aggregate one entry per member under `swarm`.
//!
//! Owns the failure entries of 1.6 and the top-level status rule. The original means "200
//! unless every entry failed → 500" but, by iterating the wrong object, always answers 200
//! (`reply_or_fail`); snode implements the intended rule. Must not retry: durable retries
//! belong to the replication layer behind the `SwarmForwarder`.

use serde_json::{Map, Value, json};

use crate::metrics::ForwardResult;

use super::swarm_info::swarm_peers;
use super::{ForwardOutcome, Origin, RpcContext, RpcResponse, json_resp};

/// This node's entry and the peers' replies.
pub(crate) struct Distributed {
    /// Our own per-node entry (success or a `failed` entry).
    pub(crate) own: Value,
    /// One reply per peer (empty when the request came from a peer).
    pub(crate) peers: Vec<([u8; 32], ForwardOutcome)>,
}

/// Runs `local` concurrently with forwarding `method`/`params` to our swarm peers. A request
/// from a peer is never forwarded again. `accepted_ms` is the time this node accepted the
/// request (the `now` its handler used): it travels with the forward so that every member
/// checks and orders the request by the same instant (see `store::expiry`).
pub(crate) async fn distribute<F>(
    ctx: &RpcContext,
    method: &str,
    params: &Value,
    origin: Origin,
    accepted_ms: i64,
    local: F,
) -> Distributed
where
    F: FnOnce() -> Value + Send,
{
    let peers = if origin.is_peer() {
        Vec::new()
    } else {
        swarm_peers(ctx)
    };
    if peers.is_empty() {
        return Distributed {
            own: local(),
            peers: Vec::new(),
        };
    }
    // `join!` polls the forward first, so the requests are on their way while the local
    // (synchronous, fast) store work runs.
    let forward = ctx.forwarder.forward(peers, method, params, accepted_ms);
    let (peers, own) = tokio::join!(forward, async move { local() });
    Distributed { own, peers }
}

/// Whether an entry is a failure (`"failed": true`, or `1` from bt-encoded peers).
pub(crate) fn is_failed(entry: &Value) -> bool {
    match entry.get("failed") {
        Some(Value::Bool(b)) => *b,
        Some(v) => v.as_i64().is_some_and(|n| n != 0),
        None => false,
    }
}

/// The `{"failed":true,"query_failure":true}` entry of a local store failure.
pub(crate) fn query_failure() -> Value {
    json!({"failed": true, "query_failure": true})
}

/// The entry recorded for one peer reply.
fn peer_entry(ctx: &RpcContext, reply: ForwardOutcome) -> Value {
    let (label, entry) = match reply {
        ForwardOutcome::Ok(v) if v.is_object() => (ForwardResult::Ok, v),
        ForwardOutcome::Ok(_) | ForwardOutcome::BadResponse => (
            ForwardResult::BadResponse,
            json!({"failed": true, "bad_peer_response": true}),
        ),
        ForwardOutcome::Timeout => (
            ForwardResult::Timeout,
            json!({"failed": true, "timeout": true}),
        ),
        ForwardOutcome::Failed { code, reason } => (
            ForwardResult::Failed,
            json!({"failed": true, "code": code.to_string(), "reason": reason}),
        ),
    };
    ctx.metrics
        .swarm_forwards_total
        .with_label_values(&[label.label()])
        .inc();
    entry
}

impl Distributed {
    /// `{ed25519_hex: entry}` for us and every peer.
    pub(crate) fn swarm_map(self, ctx: &RpcContext) -> Map<String, Value> {
        let mut swarm = Map::new();
        swarm.insert(hex::encode(ctx.keys.pubkey_ed25519()), self.own);
        for (pk, reply) in self.peers {
            swarm.insert(hex::encode(pk), peer_entry(ctx, reply));
        }
        swarm
    }

    /// The response: a peer gets just our entry; the entry node answers `top` plus `swarm`,
    /// `t` and `hf`, with 500 when every entry failed, else the status `status` picks.
    pub(crate) fn finish(
        self,
        ctx: &RpcContext,
        origin: Origin,
        mut top: Map<String, Value>,
        status: impl FnOnce(&Map<String, Value>) -> u16,
    ) -> RpcResponse {
        if origin.is_peer() {
            return json_resp(200, self.own);
        }
        let swarm = self.swarm_map(ctx);
        let code = if swarm.values().all(is_failed) {
            500
        } else {
            status(&swarm)
        };
        top.insert("swarm".into(), Value::Object(swarm));
        ctx.misc(&mut top);
        json_resp(code, Value::Object(top))
    }
}
