//! Swarm forwarding: [`HttpForwarder`] sends a recursive request to every other member of the
//! swarm at once (the original's `sn.storage_cc`; batched with other forwards to the same peer
//! by `coalesce`) and queues durably what a peer did not take.
//!
//! Owns the mapping from a peer's answer to a `ForwardOutcome` and the decision to queue: a
//! 2xx or 4xx answer is final (the peer applied it, or will never accept it); no answer in
//! time, no connection, a 5xx, a 421 (the peer's listing lags ours) or an answer not signed by
//! that peer is queued for `retry` — a store as its message hash (the retry pushes the message
//! as it is then), anything else as the request itself. The original drops such forwards
//! (storage-server.md 1.6, #511). Must not aggregate entries (that is `rpc::recursive`) nor
//! count them (`rpc` counts every reply in `snode_swarm_forwards_total{result}` once,
//! whichever forwarder produced it).

use std::sync::Arc;

use futures_util::future::join_all;
use serde_json::{Value, json};
use tokio::sync::Notify;

use crate::clock::Clock;
use crate::message::{AccountId, Namespace, b64_decode, message_hash};
use crate::metrics::{EnqueueKind, Metrics};
use crate::peer::client::{PeerError, PeerResponse};
use crate::rpc::{ForwardFuture, ForwardOutcome, SwarmForwarder};
use crate::store::{PendingPayload, Store};
use crate::swarm::NodeInfo;

use super::INITIAL_BACKOFF_MS;

/// Queued requests other than stores are given up after 30 days: nothing a client signed
/// lives longer than the longest TTL.
pub const REQUEST_GIVE_UP_MS: i64 = crate::message::TTL_MAXIMUM_PRIVATE_MS;

/// Forwards recursive requests to swarm peers over the signed peer protocol.
#[derive(Clone)]
pub struct HttpForwarder {
    /// Carries the forwards, batching those that meet on their way to one peer.
    pub(super) coalescer: super::coalesce::Coalescer,
    pub(super) store: Store,
    pub(super) metrics: Metrics,
    pub(super) clock: Clock,
    pub(super) testnet: bool,
    /// Wakes the retry loop after an enqueue.
    pub(super) wake: Arc<Notify>,
}

/// What to tell `rpc`, and whether to queue a retry.
fn classify(result: Result<PeerResponse, PeerError>) -> (ForwardOutcome, bool) {
    match result {
        Ok(r) if (200..300).contains(&r.status) => match serde_json::from_slice::<Value>(&r.body) {
            Ok(v) => (ForwardOutcome::Ok(v), false),
            // The peer applied it (2xx) but answered nonsense: report it, nothing to retry.
            Err(_) => (ForwardOutcome::BadResponse, false),
        },
        Ok(r) => {
            let reply = ForwardOutcome::Failed {
                code: r.status,
                reason: String::from_utf8_lossy(&r.body).into_owned(),
            };
            // A 421 ("not my swarm") from a member of the swarm our listing gives the
            // account: the two listings differ for a poll or two; the retry keeps it until
            // they agree (`retry.rs`; docs/simulation.md, finding 9's neighbour). Other 4xx
            // are final.
            (reply, r.status == 421 || !(400..500).contains(&r.status))
        }
        // The original cannot tell "no answer" from "cannot connect": both are `timeout`.
        Err(
            PeerError::Timeout(_)
            | PeerError::Unreachable(_)
            | PeerError::Transport(_)
            | PeerError::QuicLost(_)
            | PeerError::NotPublic { .. },
        ) => (ForwardOutcome::Timeout, true),
        Err(PeerError::NotAuthentic | PeerError::TooLarge { .. }) => {
            (ForwardOutcome::BadResponse, true)
        }
    }
}

/// Reads an integer that may also be a decimal string (`timestamp`, `ttl`).
fn int_or_string(v: Option<&Value>) -> Option<i64> {
    match v? {
        Value::String(s) => s.parse().ok(),
        v => v.as_i64(),
    }
}

/// The account a request's params name (`pubkey`/`pubKey`: 66 hex, or 64 hex read as `05` on
/// a test network), as the RPC layer reads it.
pub(crate) fn request_account(params: &Value, testnet: bool) -> Option<AccountId> {
    let pk = params
        .get("pubkey")
        .or_else(|| params.get("pubKey"))?
        .as_str()?;
    crate::rpc::parse_account(pk, testnet).ok()
}

/// The hash and expiry of the message a `store` request's params describe, computed as the
/// store handler does: `pubkey`/`pubKey` (66 hex, or 64 hex read as `05` on a test network),
/// `namespace` (default 0), base64 `data`, and `expiry` or `timestamp + ttl`. `None` when the
/// params do not describe one (the request is then queued as a request).
pub fn store_target(params: &Value, testnet: bool) -> Option<(String, i64)> {
    let account = request_account(params, testnet)?;
    let namespace = match params.get("namespace") {
        None => Namespace::DEFAULT,
        Some(v) => Namespace(i16::try_from(v.as_i64()?).ok()?),
    };
    let data = b64_decode(params.get("data")?.as_str()?)?;
    let expiry = match params.get("expiry") {
        Some(e) => e.as_i64()?,
        None => int_or_string(params.get("timestamp"))?
            .checked_add(int_or_string(params.get("ttl"))?)?,
    };
    Some((message_hash(&account, namespace, &data), expiry))
}

impl HttpForwarder {
    /// Queues `method`/`params` for each of `peers`. A failure to queue is logged: the
    /// client's request already succeeded here, and anti-entropy still repairs the peer.
    fn enqueue(&self, peers: &[[u8; 32]], method: &str, params: &Value, accepted_ms: i64) {
        let now = (self.clock)();
        let (payload, give_up, kind) = match (method, store_target(params, self.testnet)) {
            ("store", Some((hash, expiry))) => (
                PendingPayload::Message { hash },
                expiry,
                EnqueueKind::Message,
            ),
            _ => (
                PendingPayload::Request {
                    method: method.to_string(),
                    params_json: params.to_string(),
                },
                // Given up 30 days after the client's request was accepted; the retry reads
                // the acceptance time back from here (`accepted_at`).
                accepted_ms.saturating_add(REQUEST_GIVE_UP_MS),
                EnqueueKind::Request,
            ),
        };
        let due = now.saturating_add(INITIAL_BACKOFF_MS);
        for peer in peers {
            match self.store.pending_add(peer, &payload, due, give_up) {
                Ok(()) => self
                    .metrics
                    .replication_enqueued_total
                    .with_label_values(&[kind.label()])
                    .inc(),
                Err(e) => {
                    tracing::warn!(error = %crate::error::chain(&e), method, "cannot queue a forward for retry")
                }
            }
        }
        self.metrics
            .replication_queue_depth
            .set(i64::try_from(self.store.pending_len()).unwrap_or(i64::MAX));
        self.wake.notify_one();
    }
}

impl SwarmForwarder for HttpForwarder {
    fn forward<'a>(
        &'a self,
        peers: Vec<NodeInfo>,
        method: &'a str,
        params: &'a Value,
        accepted: i64,
    ) -> ForwardFuture<'a> {
        Box::pin(async move {
            // The acceptance time travels under the peer MAC: the receiver checks the
            // client's timestamps against it (and a retry's age), not against its own clock,
            // and orders expiry changes by it.
            let body = json!({"method": method, "params": params, "accepted_at": accepted})
                .to_string()
                .into_bytes();
            let sends = peers.iter().map(|p| {
                let body = body.clone();
                async move { classify(self.coalescer.forward(p, body).await) }
            });
            let results = join_all(sends).await;
            let mut out = Vec::with_capacity(peers.len());
            let mut queue = Vec::new();
            for (peer, (reply, retry)) in peers.iter().zip(results) {
                if retry {
                    tracing::debug!(peer = %hex::encode(&peer.pubkey_ed25519[..4]), method, "forward failed; queued for retry");
                    queue.push(peer.pubkey_ed25519);
                }
                out.push((peer.pubkey_ed25519, reply));
            }
            if !queue.is_empty() {
                self.enqueue(&queue, method, params, accepted);
            }
            out
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Bytes;
    use std::time::Duration;

    const PK: &str = "054368520005786b249bcd461d28f75e560ea794014eeb17fcf6003f37d876783e";

    fn resp(status: u16, body: &'static str) -> Result<PeerResponse, PeerError> {
        Ok(PeerResponse {
            status,
            body: Bytes::from_static(body.as_bytes()),
        })
    }

    /// A reqwest error without a network: a URL it refuses.
    fn unreachable() -> reqwest::Error {
        reqwest::Client::new()
            .get("not a url")
            .build()
            .expect_err("not a URL")
    }

    #[test]
    fn store_target_matches_the_message_hash() {
        let account = AccountId::from_hex(PK).expect("pk");
        let data = b"hello world";
        let want = message_hash(&account, Namespace(-21), data);
        let p = json!({"pubkey": PK, "namespace": -21, "data": crate::message::b64(data),
                       "timestamp": 1_700_000_000_000i64, "ttl": 86_400_000});
        assert_eq!(store_target(&p, false), Some((want, 1_700_086_400_000)));
        // Alias, string timestamps, explicit expiry, default namespace.
        let p = json!({"pubKey": PK, "data": "aGk=", "timestamp": "5", "ttl": "10"});
        assert_eq!(
            store_target(&p, false),
            Some((message_hash(&account, Namespace(0), b"hi"), 15))
        );
        let p = json!({"pubkey": PK, "data": "aGk", "expiry": 99});
        assert_eq!(store_target(&p, false).map(|t| t.1), Some(99));
        // 64 hex digits are a Session ID only on a test network.
        let p = json!({"pubkey": &PK[2..], "data": "aGk=", "expiry": 99});
        assert_eq!(store_target(&p, false), None);
        assert_eq!(
            store_target(&p, true).map(|t| t.0),
            Some(message_hash(&account, Namespace(0), b"hi"))
        );
        for bad in [
            json!({"data": "aGk=", "expiry": 1}),
            json!({"pubkey": PK, "expiry": 1}),
            json!({"pubkey": PK, "data": "***", "expiry": 1}),
            json!({"pubkey": PK, "data": "aGk=", "namespace": 40000, "expiry": 1}),
            json!({"pubkey": PK, "data": "aGk=", "timestamp": 1}),
        ] {
            assert_eq!(store_target(&bad, false), None, "{bad}");
        }
    }

    #[test]
    fn answers_map_to_replies_and_retries() {
        let ok = classify(resp(200, r#"{"hash":"x"}"#));
        assert_eq!(ok, (ForwardOutcome::Ok(json!({"hash": "x"})), false));
        assert_eq!(
            classify(resp(200, "not json")),
            (ForwardOutcome::BadResponse, false)
        );
        let refused = classify(resp(421, "wrong swarm"));
        assert_eq!(
            refused,
            (
                ForwardOutcome::Failed {
                    code: 421,
                    reason: "wrong swarm".into()
                },
                true
            )
        );
        assert!(
            !classify(resp(401, "bad signature")).1,
            "other 4xx are final"
        );
        assert!(classify(resp(503, "busy")).1);
        assert_eq!(
            classify(Err(PeerError::Timeout(Duration::from_secs(5)))),
            (ForwardOutcome::Timeout, true)
        );
        assert_eq!(
            classify(Err(PeerError::Unreachable(unreachable()))),
            (ForwardOutcome::Timeout, true)
        );
        assert_eq!(
            classify(Err(PeerError::NotAuthentic)),
            (ForwardOutcome::BadResponse, true)
        );
    }
}
