//! The peer router: `/snode/v1/…` endpoints, accepted only from nodes the directory lists,
//! with every request and response authenticated (see `peer::auth`).
//!
//! Owns the HTTP side of peer authentication: [`AuthenticatedPeer`], the one extractor every
//! peer route (these and the onion hop in `api::onion`) takes, so the checks cannot drift
//! apart between routes, and [`AuthenticatedPeer::answer`], which signs the answer for the
//! peer that asked. Must not hold business logic: forwarded requests go to `rpc`, bulk data
//! to the store, anti-entropy to `replication::serve`; body formats are `peer`'s.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{FromRequest, Request, State};
use axum::http::HeaderValue;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::Value;
use tokio::time::Instant;

use super::response::{JSON, Reply, read_body, text};
use super::{AppState, MAX_REQUEST_BODY};
use crate::peer::auth::{HEADER_NONCE, HEADER_PUBKEY, HEADER_SIGNATURE, HEADER_TIMESTAMP, Nonce};
use crate::peer::{
    PATH_DATA, PATH_PING, PATH_REVOCATIONS, PATH_STORAGE_CC, PATH_STORAGE_CC_BATCH,
    PATH_TOMBSTONES, batch, wire,
};
use crate::replication::protocol::{PATH_AE_BUCKET, PATH_AE_DELETE, PATH_AE_DIGEST, PATH_AE_FETCH};
use crate::rpc::{Origin, handle_method};

/// Routes of the peer protocol (mounted on the public listener).
pub fn router(state: AppState) -> Router {
    Router::new()
        .route(PATH_STORAGE_CC, post(route))
        .route(PATH_STORAGE_CC_BATCH, post(route))
        .route(PATH_DATA, post(route))
        .route(PATH_TOMBSTONES, post(route))
        .route(PATH_REVOCATIONS, post(route))
        .route(PATH_PING, post(route))
        .route(PATH_AE_DIGEST, post(route))
        .route(PATH_AE_BUCKET, post(route))
        .route(PATH_AE_FETCH, post(route))
        .route(PATH_AE_DELETE, post(route))
        .with_state(state)
}

/// A peer request that passed authentication: its body (at most [`MAX_REQUEST_BODY`]), its
/// sender a listed node, its MAC checked for this path and body. The checks, in order, each
/// with the status it answers: body size (413, or 400 for a broken body), listed sender (403),
/// MAC (401 with the reason).
pub struct AuthenticatedPeer {
    /// The sending node's Ed25519 pubkey.
    pub sender: [u8; 32],
    /// The request path (bound into the answer's MAC).
    pub path: String,
    /// The request's nonce (bound into the answer's MAC).
    pub nonce: Nonce,
    /// The request body.
    pub body: Bytes,
    /// When the request reached the extractor, so a handler that times requests includes the
    /// body read and the checks.
    pub received: Instant,
}

/// A refused peer request: the answer (unsigned: we do not know whom to sign for) and when the
/// request arrived, for handlers that count refusals.
pub struct PeerRejection {
    /// When the request reached the extractor.
    pub received: Instant,
    response: Response,
}

impl IntoResponse for PeerRejection {
    fn into_response(self) -> Response {
        self.response
    }
}

impl FromRequest<AppState> for AuthenticatedPeer {
    type Rejection = PeerRejection;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let received = Instant::now();
        let reject = |response| PeerRejection { received, response };
        let (parts, body) = req.into_parts();
        let get = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok());
        // Headers before the body, membership before crypto: an unlisted sender costs a map
        // lookup — no body read into memory, no X25519 agreement — and never enters the
        // pair-key cache (where random keys would evict the real peers' keys); a request
        // without the headers, or out of the time window, is refused before its body too. A
        // malformed key header is left to `verify`'s 401; a sender `verify` accepts is the key
        // checked here, so it is listed.
        let mut claimed = [0u8; 32];
        if let Some(h) = get(HEADER_PUBKEY)
            && hex::decode_to_slice(h, &mut claimed).is_ok()
            && state.rpc.membership.borrow().node(&claimed).is_none()
        {
            return Err(reject(text(403, "peer is not a listed service node")));
        }
        use crate::peer::auth::{PEER_TOLERANCE_MS, PeerAuthError};
        let ts = get(HEADER_TIMESTAMP).and_then(|t| t.parse::<i64>().ok());
        let headers_ok = [HEADER_PUBKEY, HEADER_NONCE, HEADER_SIGNATURE]
            .iter()
            .all(|h| get(h).is_some());
        let Some(ts) = ts.filter(|_| headers_ok) else {
            return Err(reject(text(401, PeerAuthError::Malformed.to_string())));
        };
        if ts.abs_diff((state.rpc.clock)()) > PEER_TOLERANCE_MS.unsigned_abs() {
            return Err(reject(text(401, PeerAuthError::Stale.to_string())));
        }
        let body = read_body(body, MAX_REQUEST_BODY).await.map_err(reject)?;
        let (sender, nonce) = state
            .peers
            .auth()
            .verify_request(
                get(HEADER_PUBKEY),
                get(HEADER_TIMESTAMP),
                get(HEADER_NONCE),
                get(HEADER_SIGNATURE),
                parts.uri.path(),
                &body,
                (state.rpc.clock)(),
            )
            .map_err(|e| reject(text(401, e.to_string())))?;
        Ok(AuthenticatedPeer {
            sender,
            nonce,
            path: parts.uri.path().to_string(),
            body,
            received,
        })
    }
}

impl AuthenticatedPeer {
    /// Frames `reply` as our answer to this peer, authenticated for it and this path, so the
    /// requester knows it came from us (and a relaying node can pass it on unchanged). The MAC
    /// covers the request's nonce, the status and the body (the content type is
    /// informational).
    pub fn answer(&self, state: &AppState, reply: Reply) -> Response {
        let clock = (state.rpc.clock)();
        let Ok(sig) = state.peers.auth().sign_response(
            &self.sender,
            &self.path,
            &self.nonce,
            reply.status,
            &reply.body,
            clock,
        ) else {
            // Only reachable for a sender whose key is not a curve point, which the extractor
            // already refused.
            return text(500, "Internal Server Error\n");
        };
        let mut resp = reply.into_response();
        let headers = resp.headers_mut();
        for (name, value) in sig {
            if let Ok(v) = HeaderValue::from_str(&value) {
                headers.insert(name, v);
            }
        }
        resp
    }
}

/// A peer request as every carrier hands it over once the sender is authenticated (HTTPS:
/// [`AuthenticatedPeer`]'s MAC; QUIC: the connection's raw-key client certificate) and listed.
pub struct PeerCall<'a> {
    /// The sending node's Ed25519 pubkey.
    pub sender: [u8; 32],
    /// The endpoint (`/snode/v1/…`).
    pub path: &'a str,
    /// The request body.
    pub body: Bytes,
    /// When the request arrived.
    pub received: Instant,
}

/// Answers one authenticated peer request, whatever carried it.
pub async fn handle(state: &AppState, call: PeerCall<'_>) -> Reply {
    match call.path {
        PATH_STORAGE_CC => storage_cc(state, &call).await,
        PATH_STORAGE_CC_BATCH => storage_cc_batch(state, &call).await,
        PATH_DATA => data(state, &call).await,
        PATH_TOMBSTONES => tombstones(state, &call).await,
        PATH_REVOCATIONS => revocations(state, &call).await,
        PATH_PING => ping(state),
        PATH_AE_DIGEST | PATH_AE_BUCKET | PATH_AE_FETCH | PATH_AE_DELETE => {
            anti_entropy(state, &call).await
        }
        crate::peer::PATH_ONION => super::onion::hop(state, &call.body, call.received).await,
        _ => Reply::text(404, "no such peer endpoint"),
    }
}

/// The HTTPS route of every peer endpoint: the extractor authenticated the request; the
/// answer is MACed for the sender.
async fn route(State(state): State<AppState>, peer: AuthenticatedPeer) -> Response {
    let call = PeerCall {
        sender: peer.sender,
        path: &peer.path,
        body: peer.body.clone(),
        received: peer.received,
    };
    let reply = handle(&state, call).await;
    peer.answer(&state, reply)
}

/// The 403 of a listed node that is not one of our swarm's: no work is done for it.
fn not_swarm_peer(state: &AppState, sender: &[u8; 32]) -> Option<Reply> {
    let current = state.rpc.membership.borrow().clone();
    let previous = state.previous_membership.get();
    let me = state.keys.pubkey_ed25519();
    (!crate::swarm::is_swarm_peer(&current, &previous, &me, sender))
        .then(|| Reply::text(403, "peer is not a member of this swarm"))
}

async fn storage_cc(state: &AppState, call: &PeerCall<'_>) -> Reply {
    // Forwards come from the entry node, a member of the account's swarm, which is ours (or
    // the request is answered 421 anyway). Anyone else is refused before any work, but for
    // a former owner's retry.
    if let Some(refused) = not_swarm_peer(state, &call.sender)
        && !is_former_owners_retry(state, &call.sender, &call.body)
    {
        return refused;
    }
    forwarded(state, &call.body).await
}

/// Whether `body` is a retried forward (`"retry": true`) about an account `sender` may push
/// (`may_push_all`: it owned the account in a membership we remember). The entry node queued
/// it while the account was its swarm's; when the account moved before we took it, refusing
/// it would lose a request the client was told succeeded, possibly held by that node alone
/// (docs/simulation.md, finding 8). It grants nothing the node's hand-off may not already
/// do, and the request still needs the client's signature wherever the method does.
fn is_former_owners_retry(state: &AppState, sender: &[u8; 32], body: &[u8]) -> bool {
    let Ok(req) = serde_json::from_slice::<Value>(body) else {
        return false;
    };
    if req.get("retry") != Some(&Value::Bool(true)) {
        return false;
    }
    let Some(account) = req
        .get("params")
        .and_then(|p| crate::replication::request_account(p, state.rpc.testnet))
    else {
        return false;
    };
    let membership = state.rpc.membership.borrow().clone();
    may_push_all(state, &membership, sender, std::iter::once(&account))
}

/// A batch of forwards from one peer (`peer::batch`): the sender is checked once, then each
/// body is handled exactly as a single forward, in the order sent (the order the entry node
/// accepted them), and answered with its own status and body.
async fn storage_cc_batch(state: &AppState, call: &PeerCall<'_>) -> Reply {
    if let Some(refused) = not_swarm_peer(state, &call.sender) {
        return refused;
    }
    let Some(bodies) = batch::decode_requests(&call.body) else {
        return Reply::text(400, "invalid forward batch");
    };
    let mut answers = Vec::with_capacity(bodies.len());
    for body in bodies {
        let reply = forwarded(state, body).await;
        answers.push((reply.status, reply.body));
    }
    Reply::new(
        200,
        crate::peer::reply::BINARY,
        batch::encode_answers(&answers),
    )
}

/// Handles one forwarded request body (`{"method","params","accepted_at"[,"retry"]}`).
async fn forwarded(state: &AppState, body: &[u8]) -> Reply {
    let req: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(_) => return Reply::text(400, "invalid json"),
    };
    let (Some(method), Some(params)) = (req["method"].as_str(), req.get("params")) else {
        return Reply::text(400, "invalid json");
    };
    // `"retry": true`: re-sent from the sender's durable retry queue, possibly long after
    // the client signed it (see `Origin::PeerRetry`).
    let retry = req.get("retry") == Some(&Value::Bool(true));
    let origin = if retry {
        Origin::PeerRetry
    } else {
        Origin::Peer
    };
    let ctx = match acceptance_clock(state, &req, retry) {
        Ok(ctx) => ctx,
        Err(why) => return Reply::text(400, why),
    };
    let resp = handle_method(&ctx, method, params, origin).await;
    Reply::rpc(resp)
}

/// Forwards older than this are refused: nothing a client signed lives longer.
const MAX_FORWARD_AGE_MS: i64 = crate::replication::REQUEST_GIVE_UP_MS;

/// The RPC context a forwarded request is handled in: its clock reads the entry node's
/// acceptance time (`accepted_at`, under the peer MAC), so the client's timestamps are checked
/// against the time the request was accepted, also when a retry comes days later. A first
/// forward must have been accepted within the peer window; any forward within 30 days; an
/// older node's first forward without the field is checked against our clock, a retry
/// without it refused.
fn acceptance_clock(
    state: &AppState,
    req: &Value,
    retry: bool,
) -> Result<crate::rpc::RpcContext, &'static str> {
    let now = (state.rpc.clock)();
    let Some(accepted) = req.get("accepted_at").and_then(Value::as_i64) else {
        return if retry {
            Err("retried forward without acceptance time")
        } else {
            Ok(state.rpc.clone())
        };
    };
    let tolerance = crate::peer::auth::PEER_TOLERANCE_MS;
    if accepted > now.saturating_add(tolerance) {
        return Err("forward accepted in the future");
    }
    let age = now.saturating_sub(accepted);
    if age > MAX_FORWARD_AGE_MS || (!retry && age > tolerance) {
        return Err("forward too old");
    }
    Ok(crate::rpc::RpcContext {
        clock: crate::clock::fixed(accepted),
        ..state.rpc.clone()
    })
}

/// The anti-entropy endpoints (`replication::protocol`): authenticated like every peer
/// request, admitted by `replication::serve::Responder` (members of our swarm only, each within
/// its budget: a listed but hostile member must not keep our disk busy) before any store
/// read, then answered by `replication::serve` on a blocking thread, since it reads the store
/// (digests from the node's digest cache). Refusals are counted by reason.
async fn anti_entropy(state: &AppState, call: &PeerCall<'_>) -> Reply {
    let membership = state.rpc.membership.borrow().clone();
    let me = state.keys.pubkey_ed25519();
    let responder = state.anti_entropy.clone();
    let reply = match responder.admit(&membership, &me, &call.sender, Instant::now()) {
        Err(refused) => refused,
        Ok(_) => {
            let store = state.rpc.store.clone();
            let now = (state.rpc.clock)();
            let (p, sender, body) = (call.path.to_string(), call.sender, call.body.clone());
            let served = crate::blocking::run(move || {
                crate::replication::serve::serve(
                    &p,
                    &store,
                    responder.digests(),
                    &membership,
                    &me,
                    &sender,
                    &body,
                    now,
                )
            })
            .await;
            served.unwrap_or_else(|_| Reply::text(500, "Internal Server Error\n"))
        }
    };
    use crate::metrics::AntiEntropyRefusal as Why;
    let why = match reply.status {
        429 => Some(Why::RateLimited),
        403 => Some(Why::NotSwarmPeer),
        400 => Some(Why::BadRequest),
        _ => None,
    };
    if let Some(why) = why {
        state
            .metrics
            .anti_entropy_refused_total
            .with_label_values(&[why.label()])
            .inc();
    }
    reply
}

async fn data(state: &AppState, call: &PeerCall<'_>) -> Reply {
    let msgs = match wire::decode_batch(&call.body) {
        Ok(m) => m,
        Err(e) => return Reply::text(400, e.to_string()),
    };
    // Only keep what our swarm owns: a confused or stale sender must not fill our disk.
    let membership = state.rpc.membership.borrow().clone();
    let ours = membership.swarm_of(&state.keys.pubkey_ed25519());
    // A batch with any message the sender may not push is refused whole, before anything is
    // stored.
    if !may_push_all(
        state,
        &membership,
        &call.sender,
        msgs.iter().map(|m| &m.account),
    ) {
        return Reply::text(403, "peer may not push these accounts' messages");
    }
    // And admit each only as a client's store could have made it (`admitted_from_peer`:
    // its own hash, size, namespace, clock, expiry).
    let now = (state.rpc.clock)();
    let owned: Vec<_> = msgs
        .into_iter()
        .filter(|m| ours.is_some() && membership.swarm_for(&m.account) == ours)
        .filter_map(|m| m.admitted_from_peer(now))
        .collect();
    let store = state.rpc.store.clone();
    let n = owned.len();
    // Durable before acknowledged: the sender of a hand-off deletes its copy once every new
    // owner said yes, so a power loss here must not lose what we acknowledged.
    let result = crate::blocking::run(move || {
        let new = store.bulk_store(&owned, now)?;
        store.sync_wal()?;
        Ok::<_, crate::store::StoreError>(new)
    })
    .await;
    match result {
        Ok(Ok(new)) => {
            let body = serde_json::json!({"accepted": n, "new": new}).to_string();
            Reply::new(200, JSON, body)
        }
        Ok(Err(crate::store::StoreError::Full { .. })) => Reply::text(507, "store is full"),
        Ok(Err(e)) => {
            tracing::warn!(error = %crate::error::chain(&e), "bulk store from peer failed");
            Reply::text(500, "Internal Server Error\n")
        }
        Err(_) => Reply::text(500, "Internal Server Error\n"),
    }
}

/// Whether `sender` may push data of every one of `accounts` to us: a member of our swarm,
/// or a node of the swarm that owned the account in a remembered membership (a hand-off,
/// possibly from a node back long after the account moved: `swarm::may_push`). A listed node
/// elsewhere in the network could otherwise put messages into any account's signed
/// namespaces here, or delete them, with no client signature.
fn may_push_all<'a>(
    state: &AppState,
    membership: &crate::swarm::Membership,
    sender: &[u8; 32],
    mut accounts: impl Iterator<Item = &'a crate::message::AccountId>,
) -> bool {
    let me = state.keys.pubkey_ed25519();
    let without = crate::swarm::without_our_swarm(membership, &me);
    let now = (state.rpc.clock)();
    let remembered = state.previous_membership.read();
    accounts.all(|a| crate::swarm::may_push(membership, &remembered, now, &without, &me, sender, a))
}

/// Subaccount revocation states (`replication::revocations`): a push (hand-off or
/// anti-entropy) is admitted as a data push is, the request refused whole otherwise, and
/// merged durably before the answer (a hand-off's sender then forgets them); a digest (the
/// anti-entropy comparison, which reads our swarm's states) only from a member of our swarm
/// within its anti-entropy budget.
async fn revocations(state: &AppState, call: &PeerCall<'_>) -> Reply {
    use crate::replication::protocol::RevocationsRequest;
    let bad = || Reply::text(400, "invalid revocations");
    let Ok(req) = serde_json::from_slice::<RevocationsRequest>(&call.body) else {
        return bad();
    };
    let now = (state.rpc.clock)();
    let latest = now.saturating_add(crate::peer::auth::PEER_TOLERANCE_MS);
    let Some(mut states) = crate::replication::revocations::admit_states(&req.revocations, latest)
    else {
        return bad();
    };
    let after = match req
        .after
        .as_deref()
        .map(crate::message::AccountId::from_hex)
    {
        None => None,
        Some(Ok(a)) => Some(a),
        Some(Err(_)) => return bad(),
    };
    let membership = state.rpc.membership.borrow().clone();
    let me = state.keys.pubkey_ed25519();
    if req.digest.is_some()
        && let Err(refused) =
            state
                .anti_entropy
                .admit(&membership, &me, &call.sender, Instant::now())
    {
        return refused;
    }
    if !may_push_all(
        state,
        &membership,
        &call.sender,
        states.iter().map(|s| &s.account),
    ) {
        return Reply::text(403, "peer may not push these accounts' revocations");
    }
    let ours = membership.swarm_of(&me);
    states.retain(|s| ours.is_some() && membership.swarm_for(&s.account) == ours);
    let accepted = states.len();
    let store = state.rpc.store.clone();
    let result = crate::blocking::run(move || {
        if !states.is_empty() {
            store.merge_revocations(&states)?;
            store.sync_wal()?;
        }
        crate::replication::revocations::answer(
            &store,
            &membership,
            ours,
            req.digest.as_deref(),
            after.as_ref(),
            accepted,
        )
    })
    .await;
    match result {
        Ok(Ok(resp)) => Reply::new(200, JSON, serde_json::to_vec(&resp).unwrap_or_default()),
        Ok(Err(e)) => {
            tracing::warn!(error = %crate::error::chain(&e), "revocations not merged");
            Reply::text(500, "Internal Server Error\n")
        }
        Err(_) => Reply::text(500, "Internal Server Error\n"),
    }
}

/// Tombstones a previous owner of their accounts handed off (`replication::handoff`):
/// admitted as a data push is, the request refused whole otherwise; each checked (a valid
/// hash, an expiry no later than a tombstone can last, a deletion time not in the future),
/// applied as the account's deletions, durable before the answer (the sender then drops its
/// copies).
async fn tombstones(state: &AppState, call: &PeerCall<'_>) -> Reply {
    use crate::replication::protocol::{
        DataResponse, MAX_TOMBSTONES_PER_REQUEST, TombstonesRequest,
    };
    let bad = || Reply::text(400, "invalid tombstones");
    let Ok(req) = serde_json::from_slice::<TombstonesRequest>(&call.body) else {
        return bad();
    };
    if req.tombstones.len() > MAX_TOMBSTONES_PER_REQUEST {
        return bad();
    }
    let now = (state.rpc.clock)();
    let tolerance = crate::peer::auth::PEER_TOLERANCE_MS;
    let latest_expiry = now
        .saturating_add(crate::store::UNHELD_LIFETIME_MS)
        .saturating_add(tolerance);
    let mut records = Vec::with_capacity(req.tombstones.len());
    for t in req.tombstones {
        let Ok(account) = crate::message::AccountId::from_hex(&t.account) else {
            return bad();
        };
        if !crate::message::is_valid_hash(&t.hash)
            || t.expiry > latest_expiry
            || t.deleted_at > now.saturating_add(tolerance)
        {
            return bad();
        }
        records.push(crate::store::TombstoneRecord {
            account,
            hash: t.hash,
            expiry_ms: t.expiry,
            deleted_ms: t.deleted_at,
            unheld: t.unheld,
        });
    }
    let membership = state.rpc.membership.borrow().clone();
    if !may_push_all(
        state,
        &membership,
        &call.sender,
        records.iter().map(|t| &t.account),
    ) {
        return Reply::text(403, "peer may not push these accounts' tombstones");
    }
    let ours = membership.swarm_of(&state.keys.pubkey_ed25519());
    records.retain(|t| ours.is_some() && membership.swarm_for(&t.account) == ours);
    let accepted = records.len();
    let store = state.rpc.store.clone();
    let result = crate::blocking::run(move || {
        let deleted = store.import_tombstones(&records, now)?;
        store.sync_wal()?;
        Ok::<_, crate::store::StoreError>(deleted)
    })
    .await;
    match result {
        Ok(Ok(new)) => Reply::new(
            200,
            JSON,
            serde_json::to_vec(&DataResponse { accepted, new }).unwrap_or_default(),
        ),
        Ok(Err(e)) => {
            tracing::warn!(error = %crate::error::chain(&e), "tombstones from peer failed");
            Reply::text(500, "Internal Server Error\n")
        }
        Err(_) => Reply::text(500, "Internal Server Error\n"),
    }
}

fn ping(state: &AppState) -> Reply {
    // Only authenticated pings from listed nodes count as "peers reach us".
    state
        .status
        .reachability
        .record_incoming(crate::reachability::PingKind::PeerPing, (state.rpc.clock)());
    Reply::text(200, "pong")
}
