//! Client RPC: every method of storage-server.md 1.5, from decoded JSON params to the
//! protocol's JSON (or text) answer with its exact status and error texts.
//!
//! Owns the envelope (1.2), the closed method set, dispatch, and the context a handler needs
//! (store, node keys, membership, swarm forwarder, metrics, clock). Must not know sockets or
//! HTTP framing: the `api` layer (HTTP), the onion final destination and the peer endpoint
//! call `handle_request` / `handle_method` and frame the `RpcResponse` themselves.
//!
//! Layout: `params` (field parsing), `auth` (signature glue), one file per method family
//! (`store`, `retrieve`, `delete`, `expire`, `subaccount`, `info`, `swarm_info`), `batch`
//! (batch/sequence/ifelse) and `recursive` (forwarding to the swarm and aggregation).

mod auth;
mod batch;
pub mod bt;
mod delete;
mod expire;
mod info;
mod params;

pub(crate) use params::parse_account;
mod recursive;
mod retrieve;
mod store;
mod subaccount;
mod swarm_info;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use serde_json::{Map, Value, json};

use crate::swarm::{Membership, NodeInfo};

/// A boxed, sendable future (handlers recurse through batch/ifelse).
pub(crate) type BoxFut<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What `SwarmForwarder::forward` returns: one reply per peer, keyed by its Ed25519 pubkey.
pub type ForwardFuture<'a> =
    Pin<Box<dyn Future<Output = Vec<([u8; 32], ForwardOutcome)>> + Send + 'a>>;

/// Sends a recursive request to the other members of our swarm.
pub trait SwarmForwarder: Send + Sync {
    /// Send `method`+`params` (the client's original JSON params) to each peer concurrently
    /// (timeout 5 s); one result per peer, with `accepted_ms`, the time this node accepted the
    /// request. The node layer implements it over HTTPS.
    fn forward<'a>(
        &'a self,
        peers: Vec<NodeInfo>,
        method: &'a str,
        params: &'a Value,
        accepted_ms: i64,
    ) -> ForwardFuture<'a>;
}

/// What one swarm peer answered to a forwarded request.
#[derive(Debug, Clone, PartialEq)]
pub enum ForwardOutcome {
    /// A 2xx answer: the peer's own entry (its response to an `Origin::Peer` request).
    Ok(Value),
    /// A non-2xx answer (e.g. 421 or 401 when the peer disagrees).
    Failed {
        /// The peer's status code.
        code: u16,
        /// The peer's body, as text.
        reason: String,
    },
    /// No answer within the timeout.
    Timeout,
    /// An answer that could not be understood.
    BadResponse,
}

/// Everything a handler needs; cheap to clone (all shared).
#[derive(Clone)]
pub struct RpcContext {
    /// The message store.
    pub store: crate::store::Store,
    /// This node's identity (signs per-node response entries).
    pub keys: Arc<crate::keys::NodeKeys>,
    /// The current membership snapshot.
    pub membership: tokio::sync::watch::Receiver<Arc<Membership>>,
    /// Forwards recursive requests to swarm peers.
    pub forwarder: Arc<dyn SwarmForwarder>,
    /// This node's metrics.
    pub metrics: crate::metrics::Metrics,
    /// Wall clock, ms since epoch.
    pub clock: crate::clock::Clock,
    /// Accept 64-hex pubkeys as type `05` (storage-server.md 1.3).
    pub testnet: bool,
    /// Randomness of answers that sample (`oxend_request get_service_nodes` with a `limit`);
    /// seeded by the node's caller, so a test or simulation replays the same answers.
    pub rng: Arc<std::sync::Mutex<rand::rngs::StdRng>>,
}

/// The randomness of an `RpcContext`, from a seed.
pub fn seeded_rng(seed: u64) -> Arc<std::sync::Mutex<rand::rngs::StdRng>> {
    use rand::SeedableRng as _;
    Arc::new(std::sync::Mutex::new(rand::rngs::StdRng::seed_from_u64(
        seed,
    )))
}

/// Who sent a request; decides recursion and timestamp tolerances.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// Direct `/storage_rpc/v1` client.
    Client,
    /// Final destination of an onion request.
    Onion,
    /// Forwarded by a member of our swarm: no further recursion, 70 s tolerance for
    /// delete_all/expire_all, only recursive methods allowed.
    Peer,
    /// Re-sent by a swarm member's retry queue after the first forward failed
    /// (`replication::retry`), minutes or days after the client's request: everything as
    /// `Peer`, the timestamp windows included — checked against the entry node's acceptance
    /// time, which travels under the peer MAC (`api::peer` gives the handler a context whose
    /// clock reads that time, and refuses retries accepted more than 30 days ago). What
    /// differs is what a late request may still do (`delete_all` deletes only what existed
    /// when it was accepted).
    PeerRetry,
}

impl Origin {
    /// Whether a swarm member forwarded the request (first attempt or retry).
    pub fn is_peer(self) -> bool {
        matches!(self, Origin::Peer | Origin::PeerRetry)
    }
}

/// The answer to one RPC.
#[derive(Debug, Clone, PartialEq)]
pub struct RpcResponse {
    /// HTTP-style status code.
    pub status: u16,
    /// The body.
    pub body: RpcBody,
}

/// An RPC body: JSON for successes (and 421), text for errors, bytes for `active_nodes_bin`.
#[derive(Debug, Clone, PartialEq)]
pub enum RpcBody {
    /// A JSON document.
    Json(Value),
    /// Plain text (error messages).
    Text(String),
    /// Raw bytes (the onion layer base64s them).
    Bytes(Vec<u8>),
}

/// The `hf` we report: `[hardfork, snode_revision]`. 19.4 is the revision from which the
/// original accepts multi-expiry `expire` requests, which snode always accepts; reporting it
/// keeps clients that gate features on `hf` consistent with what we do.
pub const HARDFORK: [u16; 2] = [19, 4];

/// The storage-server protocol version snode is compatible with (reported by `info` and
/// `ifelse`): clients compare it against the original's releases, so it is not our crate
/// version.
pub const STORAGE_SERVER_VERSION: [u16; 3] = [2, 8, 0];

/// The closed set of methods (aliases map to one variant).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Method {
    Store,
    Retrieve,
    Info,
    GetSwarm,
    Delete,
    DeleteAll,
    DeleteBefore,
    ExpireAll,
    Expire,
    GetExpiries,
    RevokeSubaccount,
    UnrevokeSubaccount,
    RevokedSubaccounts,
    OxendRequest,
    ActiveNodesBin,
    Batch,
    Sequence,
    IfElse,
}

/// Every accepted method name, aliases included.
const METHODS: &[(&str, Method)] = &[
    ("store", Method::Store),
    ("retrieve", Method::Retrieve),
    ("info", Method::Info),
    ("get_swarm", Method::GetSwarm),
    ("get_snodes_for_pubkey", Method::GetSwarm),
    ("delete", Method::Delete),
    ("delete_all", Method::DeleteAll),
    ("delete_before", Method::DeleteBefore),
    ("expire_all", Method::ExpireAll),
    ("expire", Method::Expire),
    ("get_expiries", Method::GetExpiries),
    ("revoke_subaccount", Method::RevokeSubaccount),
    ("unrevoke_subaccount", Method::UnrevokeSubaccount),
    ("revoked_subaccounts", Method::RevokedSubaccounts),
    ("oxend_request", Method::OxendRequest),
    ("active_nodes_bin", Method::ActiveNodesBin),
    ("batch", Method::Batch),
    ("sequence", Method::Sequence),
    ("ifelse", Method::IfElse),
];

impl Method {
    /// Looks a method name up (exact, case-sensitive, as the original).
    pub(crate) fn from_name(name: &str) -> Option<Method> {
        METHODS.iter().find(|(n, _)| *n == name).map(|(_, m)| *m)
    }

    /// Forwarded to the whole swarm (1.6).
    pub(crate) fn is_recursive(self) -> bool {
        matches!(
            self,
            Method::Store
                | Method::Delete
                | Method::DeleteAll
                | Method::DeleteBefore
                | Method::ExpireAll
                | Method::Expire
                | Method::RevokeSubaccount
                | Method::UnrevokeSubaccount
        )
    }

    /// batch/sequence/ifelse.
    pub(crate) fn is_meta(self) -> bool {
        matches!(self, Method::Batch | Method::Sequence | Method::IfElse)
    }
}

/// A closed set of metric labels: the method name as given (aliases kept apart), or
/// `"unknown"`, so a client cannot mint label values.
pub fn method_label(method: &str) -> &'static str {
    METHODS
        .iter()
        .find(|(n, _)| *n == method)
        .map_or("unknown", |(n, _)| n)
}

/// A plain-text response.
pub(crate) fn text(status: u16, msg: impl Into<String>) -> RpcResponse {
    RpcResponse {
        status,
        body: RpcBody::Text(msg.into()),
    }
}

/// A JSON response.
pub(crate) fn json_resp(status: u16, v: Value) -> RpcResponse {
    RpcResponse {
        status,
        body: RpcBody::Json(v),
    }
}

/// The original's answer to a parse error: `400 "invalid request: <message>"`.
impl From<params::ParamError> for RpcResponse {
    fn from(e: params::ParamError) -> Self {
        text(400, format!("invalid request: {}", e.0))
    }
}

/// Collapses a handler's early-return style into one response.
pub(crate) fn respond(r: Result<RpcResponse, RpcResponse>) -> RpcResponse {
    match r {
        Ok(r) | Err(r) => r,
    }
}

/// Nesting allowed for `ifelse` inside `ifelse` (each level is a boxed future).
const MAX_META_DEPTH: u8 = 8;

impl RpcContext {
    /// Now, in ms since epoch.
    pub(crate) fn now(&self) -> i64 {
        (self.clock)()
    }

    /// A snapshot of the membership (never hold the watch guard across an await).
    pub(crate) fn snapshot(&self) -> Arc<Membership> {
        self.membership.borrow().clone()
    }

    /// Adds the `t` and `hf` fields of 1.2 (`add_misc_response_fields`).
    pub(crate) fn misc(&self, obj: &mut Map<String, Value>) {
        obj.insert("t".into(), json!(self.now()));
        obj.insert("hf".into(), json!(HARDFORK));
    }

    /// Signs a per-node response entry with the node key, base64.
    pub(crate) fn sign_b64(&self, msg: &[u8]) -> String {
        crate::message::b64(&self.keys.sign(msg))
    }
}

/// Handles a whole request body: the JSON envelope of 1.2, then the method.
pub async fn handle_request(ctx: &RpcContext, body: &[u8], origin: Origin) -> RpcResponse {
    handle_request_labelled(ctx, body, origin).await.1
}

/// As [`handle_request`], also returning the method's metrics label (`method_label`, or
/// `"invalid"` when the envelope has no usable method), so the edge parses the body once.
pub async fn handle_request_labelled(
    ctx: &RpcContext,
    body: &[u8],
    origin: Origin,
) -> (&'static str, RpcResponse) {
    let Ok(v) = serde_json::from_slice::<Value>(body) else {
        return ("invalid", text(400, "invalid json"));
    };
    let Some(method) = v.get("method").and_then(Value::as_str) else {
        return ("invalid", text(400, "invalid json: no `method` field"));
    };
    let label = method_label(method);
    let params = match v.get("params") {
        Some(p) if p.is_object() => p,
        _ => return (label, text(400, "invalid json: no `params` field")),
    };
    (label, handle_method(ctx, method, params, origin).await)
}

/// Handles one method with its params object.
pub async fn handle_method(
    ctx: &RpcContext,
    method: &str,
    params: &Value,
    origin: Origin,
) -> RpcResponse {
    dispatch(ctx, method, params, origin, 0).await
}

/// Dispatch, boxed because batch/sequence/ifelse come back here for their subrequests.
pub(crate) fn dispatch<'a>(
    ctx: &'a RpcContext,
    method: &'a str,
    params: &'a Value,
    origin: Origin,
    depth: u8,
) -> BoxFut<'a, RpcResponse> {
    Box::pin(async move {
        let Some(m) = Method::from_name(method) else {
            return text(400, format!("no method {method}"));
        };
        if origin.is_peer() && !m.is_recursive() {
            return text(
                400,
                "invalid request: received invalid forwarded non-forwardable request",
            );
        }
        if !params.is_object() {
            return text(400, "invalid json: no `params` field");
        }
        match m {
            Method::Store => store::handle(ctx, params, origin).await,
            Method::Retrieve => retrieve::handle(ctx, params),
            Method::Info => info::info(ctx),
            Method::GetSwarm => swarm_info::get_swarm(ctx, params),
            Method::Delete => delete::delete(ctx, params, origin).await,
            Method::DeleteAll => delete::delete_all(ctx, params, origin).await,
            Method::DeleteBefore => delete::delete_before(ctx, params, origin).await,
            Method::ExpireAll => delete::expire_all(ctx, params, origin).await,
            Method::Expire => expire::expire(ctx, params, origin).await,
            Method::GetExpiries => expire::get_expiries(ctx, params),
            Method::RevokeSubaccount => subaccount::revoke(ctx, params, origin, true).await,
            Method::UnrevokeSubaccount => subaccount::revoke(ctx, params, origin, false).await,
            Method::RevokedSubaccounts => subaccount::revoked_subaccounts(ctx, params),
            Method::OxendRequest => info::oxend_request(ctx, params),
            Method::ActiveNodesBin => swarm_info::active_nodes_bin(ctx),
            Method::Batch => batch::batch(ctx, params, origin, depth, false).await,
            Method::Sequence => batch::batch(ctx, params, origin, depth, true).await,
            Method::IfElse if depth >= MAX_META_DEPTH => text(
                400,
                "invalid request: Invalid ifelse request: nesting too deep",
            ),
            Method::IfElse => batch::ifelse(ctx, params, origin, depth).await,
        }
    })
}

#[cfg(test)]
mod tests;
