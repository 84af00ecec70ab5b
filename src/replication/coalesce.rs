//! Coalesced forwards: concurrent forwards to the same peer leave as one batched exchange
//! (`peer::batch`, `/snode/v1/storage_cc_batch`) with one answer per forward.
//!
//! The rule is the one of Nagle without the timer: a forward goes out at once while fewer than
//! [`MAX_IN_FLIGHT`] exchanges to its peer are unanswered; otherwise it waits in the peer's
//! queue, and the next answer to come back sends everything queued as one batch (at most
//! [`batch::MAX_BATCH_ITEMS`] forwards, [`batch::MAX_BATCH_BODY_BYTES`] bytes). An idle node
//! therefore adds no latency (no window to wait out), and a busy one sends one exchange per
//! peer per round trip instead of one per message: the per-exchange cost (a QUIC stream or an
//! HTTP request, its framing, MAC and task hand-offs, ≈ 60 µs on each side) is paid once per
//! batch. BENCHMARKS.md "Coalesced forwards" has the figures.
//!
//! Owns the per-peer queues and the choice between one forward and a batch. Exchanges run on
//! spawned tasks, so a forward whose caller went away (a client that hung up) still reaches
//! the peer and still gets its answer classified. Ordering: a peer's forwards leave in the
//! order they were submitted, and a batch is applied in order by the receiver; exchanges in
//! flight at once may be applied in any order, exactly as concurrent single forwards were
//! (order-dependent requests are last-writer-wins on the acceptance time, see
//! `store::expiry`). Must not classify answers or queue retries (`forward`).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::oneshot;

use crate::metrics::Metrics;
use crate::peer::batch;
use crate::peer::client::{PeerClient, PeerError, PeerResponse};
use crate::peer::{PATH_STORAGE_CC, PATH_STORAGE_CC_BATCH};
use crate::swarm::NodeInfo;

/// Unanswered exchanges per peer before forwards wait to be batched. Two keeps a peer busy
/// while the previous answer travels back, without splitting a burst into many small batches.
pub(super) const MAX_IN_FLIGHT: usize = 2;
/// Forwards waiting for one peer, at most: beyond it a forward fails at once (as if the peer
/// had timed out, so it is queued durably for retry) instead of holding memory for a peer that
/// does not keep up.
const MAX_QUEUED: usize = 4 * batch::MAX_BATCH_ITEMS;

/// What a forward's caller gets back.
type Answer = Result<PeerResponse, PeerError>;

/// One forward waiting for its peer.
struct Waiting {
    body: Vec<u8>,
    done: oneshot::Sender<Answer>,
}

/// The state of one peer's forwards.
#[derive(Default)]
struct PeerQueue {
    in_flight: usize,
    waiting: VecDeque<Waiting>,
    /// The peer answered a batch 404 (a node without the batch endpoint): single forwards.
    no_batches: bool,
}

/// Per-peer forward queues of one node. Cheap to clone.
#[derive(Clone)]
pub(super) struct Coalescer {
    client: PeerClient,
    metrics: Metrics,
    timeout: Duration,
    peers: Arc<Mutex<HashMap<[u8; 32], PeerQueue>>>,
}

impl Coalescer {
    /// Forwards over `client`, each exchange given `timeout`.
    pub(super) fn new(client: PeerClient, metrics: Metrics, timeout: Duration) -> Coalescer {
        Coalescer {
            client,
            metrics,
            timeout,
            peers: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], PeerQueue>> {
        self.peers.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Sends one `/snode/v1/storage_cc` body to `peer`, alone or in a batch; its answer.
    pub(super) async fn forward(&self, peer: &NodeInfo, body: Vec<u8>) -> Answer {
        let (done, answer) = oneshot::channel();
        let start = {
            let mut peers = self.lock();
            let q = peers.entry(peer.pubkey_ed25519).or_default();
            if q.waiting.len() >= MAX_QUEUED {
                return Err(PeerError::Timeout(self.timeout));
            }
            q.waiting.push_back(Waiting { body, done });
            if q.in_flight < MAX_IN_FLIGHT {
                q.in_flight += 1;
                Some(take_batch(q))
            } else {
                None
            }
        };
        if let Some(first) = start {
            tokio::spawn(self.clone().drain(peer.clone(), first));
        }
        // The drain task always answers; a dropped sender would mean it panicked.
        answer
            .await
            .unwrap_or(Err(PeerError::Timeout(self.timeout)))
    }

    /// Sends `batch`, then whatever queued for the peer meanwhile, until its queue is empty.
    async fn drain(self, peer: NodeInfo, mut next: Vec<Waiting>) {
        loop {
            self.exchange(&peer, next).await;
            let mut peers = self.lock();
            let Some(q) = peers.get_mut(&peer.pubkey_ed25519) else {
                return;
            };
            if q.waiting.is_empty() {
                q.in_flight -= 1;
                if q.in_flight == 0 && !q.no_batches {
                    // Nothing owed to this peer: forget it (the table holds busy peers only).
                    peers.remove(&peer.pubkey_ed25519);
                }
                return;
            }
            next = take_batch(q);
        }
    }

    /// One exchange: a single forward as `/snode/v1/storage_cc`, several as a batch.
    async fn exchange(&self, peer: &NodeInfo, mut items: Vec<Waiting>) {
        self.metrics.forward_batch_size.observe(items.len() as f64);
        if items.len() == 1 {
            let w = items.pop().expect("one item");
            let answer = self
                .client
                .post(peer, PATH_STORAGE_CC, w.body, self.timeout)
                .await;
            let _ = w.done.send(answer);
            return;
        }
        let body = batch::encode_requests(&items.iter().map(|w| &w.body).collect::<Vec<_>>());
        let answer = self
            .client
            .post(peer, PATH_STORAGE_CC_BATCH, body, self.timeout)
            .await;
        match answer {
            Ok(r) if r.status == 200 => match batch::decode_answers(&r.body, items.len()) {
                Some(answers) => {
                    for (w, (status, body)) in items.into_iter().zip(answers) {
                        let _ = w.done.send(Ok(PeerResponse { status, body }));
                    }
                }
                // Authentic but not an answer to this batch: each forward got no answer.
                None => answer_all(items, || Err(PeerError::NotAuthentic)),
            },
            // A node without the batch endpoint: send these one by one, and every later
            // forward to it too.
            Ok(r) if r.status == 404 => {
                if let Some(q) = self.lock().get_mut(&peer.pubkey_ed25519) {
                    q.no_batches = true;
                }
                let sends = items.into_iter().map(|w| async move {
                    let answer = self
                        .client
                        .post(peer, PATH_STORAGE_CC, w.body, self.timeout)
                        .await;
                    let _ = w.done.send(answer);
                });
                futures_util::future::join_all(sends).await;
            }
            // Refused as a whole (403 not a swarm member, 5xx, …): every forward got that.
            Ok(r) => answer_all(items, || {
                Ok(PeerResponse {
                    status: r.status,
                    body: r.body.clone(),
                })
            }),
            Err(e) => {
                let like = same_fate(&e, self.timeout);
                let mut first = Some(e);
                answer_all(items, || Err(first.take().unwrap_or_else(&like)))
            }
        }
    }
}

/// Takes the next batch off `q`: up to the batch limits, at least one forward.
fn take_batch(q: &mut PeerQueue) -> Vec<Waiting> {
    let limit = if q.no_batches {
        1
    } else {
        batch::MAX_BATCH_ITEMS
    };
    let mut out = Vec::new();
    let mut bytes = 0;
    while let Some(w) = q.waiting.front() {
        if !out.is_empty()
            && (out.len() == limit || bytes + w.body.len() > batch::MAX_BATCH_BODY_BYTES)
        {
            break;
        }
        bytes += w.body.len();
        out.extend(q.waiting.pop_front());
    }
    out
}

/// Gives every forward of `items` the answer `f` makes.
fn answer_all(items: Vec<Waiting>, mut f: impl FnMut() -> Answer) {
    for w in items {
        let _ = w.done.send(f());
    }
}

/// Makes errors that `forward` classifies exactly as `e` (the outcome a client sees and
/// whether the forward is queued for retry), for the other forwards of a failed batch:
/// `PeerError` holds transport errors that cannot be cloned.
fn same_fate(e: &PeerError, timeout: Duration) -> impl Fn() -> PeerError + use<> {
    enum Like {
        NoAnswer,
        NotAuthentic,
        NotPublic(&'static str),
    }
    let like = match e {
        PeerError::Timeout(_)
        | PeerError::Unreachable(_)
        | PeerError::QuicLost(_)
        | PeerError::Transport(_) => Like::NoAnswer,
        PeerError::NotPublic { class } => Like::NotPublic(class),
        PeerError::NotAuthentic | PeerError::TooLarge { .. } => Like::NotAuthentic,
    };
    move || match like {
        Like::NoAnswer => PeerError::Timeout(timeout),
        Like::NotAuthentic => PeerError::NotAuthentic,
        Like::NotPublic(class) => PeerError::NotPublic { class },
    }
}
