//! A node's life in a network: registering with the directory, following membership, and
//! testing and reporting the reachability of peers.
//!
//! Owns the loops that keep `Membership` current (published through a `watch` channel the
//! rest of the node reads) and the reachability tests of storage-server.md 3.6 in snode's form:
//! `POST /ping_test/v1` (must answer 200 with the peer's pubkey) and the signed peer ping.
//! Must not touch the store or decide ownership: `swarm` does that from the snapshot.

use std::sync::Arc;
use std::time::Duration;

use rand::seq::SliceRandom as _;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::clock::Clock;
use crate::directory::client::DirectoryClient;
use crate::keys::NodeKeys;
use crate::message::b64;
use crate::peer::PATH_PING;
use crate::peer::client::PeerClient;
use crate::swarm::{Membership, NodeInfo};
use crate::transport::Transport;

/// Timing of the network loops.
#[derive(Debug, Clone, Copy)]
pub struct NetworkTiming {
    /// How often membership is polled (`poll_block_hash` makes unchanged polls cheap).
    pub poll_interval: Duration,
    /// How often the node re-announces itself (the directory keeps the newest announcement).
    pub announce_interval: Duration,
    /// How often one peer's reachability is tested.
    pub ping_interval: Duration,
}

/// Registers `me` with the directory, then keeps `tx` current until cancelled. `seen` is the
/// height of the last listing the node saw before this run (its memory of former owners,
/// `PreviousMembership::last_height`), if any: the listings served since are read back.
#[allow(clippy::too_many_arguments)] // the loop's inputs, each used once; no natural group
pub async fn follow_directory(
    client: DirectoryClient,
    keys: Arc<NodeKeys>,
    me: NodeInfo,
    tx: watch::Sender<Arc<Membership>>,
    timing: NetworkTiming,
    clock: Clock,
    seen: Option<u64>,
    cancel: CancellationToken,
) {
    let mut last_hash: Option<String> = None;
    // The height of the last listing seen: a jump past it is read back (`read_skipped`),
    // also across a restart (the downtime's listings, the latest `MAX_SKIPPED_READ`).
    let mut last_height: Option<u64> = seen;
    // Logged on change only (docs/logging.md): a directory that is down for an hour is one
    // warning and one "registered" line, not 720 warnings.
    let mut registered: Option<bool> = None;
    let mut next_announce = tokio::time::Instant::now();
    let mut poll = tokio::time::interval(timing.poll_interval);
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            _ = cancel.cancelled() => return,
            _ = poll.tick() => {}
        }
        if tokio::time::Instant::now() >= next_announce {
            match client.register_at(&keys, &me, clock()).await {
                Ok(_) => {
                    if registered != Some(true) {
                        tracing::info!("registered with the directory");
                    }
                    registered = Some(true);
                    next_announce = tokio::time::Instant::now() + timing.announce_interval;
                }
                Err(e) => {
                    // Retry at the next poll: a directory restart must not strand the node.
                    if registered != Some(false) {
                        tracing::warn!(error = %crate::error::chain(&e), "registration with the directory failed; retrying");
                    } else {
                        tracing::debug!(error = %crate::error::chain(&e), "registration with the directory failed");
                    }
                    registered = Some(false);
                    continue;
                }
            }
        }
        match client.get_service_nodes(last_hash.as_deref()).await {
            Ok(Some(mut m)) => {
                let changed = tx.borrow().block_hash != m.block_hash;
                if changed {
                    if let Some(last) = last_height
                        && m.height > last.saturating_add(1)
                    {
                        m.passed = read_skipped(&client, last, m.height).await;
                    }
                    last_height = Some(m.height);
                    let swarm = m.swarm_of(&me.pubkey_ed25519);
                    let swarm_hex = swarm.map(|s| format!("{:016x}", s.0));
                    // A change of our own swarm is a lifecycle event; the rest of the network
                    // changing is routine.
                    if tx.borrow().swarm_of(&me.pubkey_ed25519) != swarm {
                        tracing::info!(height = m.height, nodes = m.nodes.len(), swarm = ?swarm_hex, "swarm changed");
                    } else {
                        tracing::debug!(height = m.height, nodes = m.nodes.len(), swarm = ?swarm_hex, "membership changed");
                    }
                    last_hash = Some(m.block_hash.clone());
                    tx.send_replace(Arc::new(m));
                }
            }
            Ok(None) => {}
            Err(e) => tracing::debug!(error = %crate::error::chain(&e), "membership poll failed"),
        }
    }
}

/// The most skipped heights read back after one poll: a node that missed more (cut off from
/// the directory for a long time) reads back the latest ones only. Each is one request, and
/// most polls skip none.
pub const MAX_SKIPPED_READ: u64 = 16;

/// The listings the directory served after height `last` and before `now` (at most
/// [`MAX_SKIPPED_READ`], the latest), oldest first. A height the directory did not keep is
/// left out (it was replaced within one change, so no node acted on it, or is too old); the
/// first failure ends the reading (what was read is kept). Why: a node that owned an account
/// only between two of our polls must still be known to us as a former owner, or its
/// hand-off of what it alone took is refused (docs/simulation.md, finding 8).
pub async fn read_skipped(client: &DirectoryClient, last: u64, now: u64) -> Vec<Arc<Membership>> {
    let first = last
        .saturating_add(1)
        .max(now.saturating_sub(MAX_SKIPPED_READ));
    let mut out = Vec::new();
    for height in first..now {
        match client.get_service_nodes_at(height).await {
            Ok(Some(m)) => out.push(Arc::new(m)),
            Ok(None) => {}
            Err(e) => {
                tracing::debug!(error = %crate::error::chain(&e), height, "cannot read back a skipped listing");
                break;
            }
        }
    }
    out
}

/// Whether a peer passes both reachability tests.
/// QUIC part of a reachability test, as the original's (quic.md 1.13): connect to the peer's
/// QUIC port presenting our own key (5 s handshake), send `snode_ping`, expect `pong` within
/// 10 s. A peer that lists no QUIC port (an older node) is not tested over QUIC.
async fn test_quic(endpoint: &quinn::Endpoint, keys: &Arc<NodeKeys>, peer: &NodeInfo) -> bool {
    if peer.omq_port == 0 {
        return true;
    }
    let addr = std::net::SocketAddr::from((peer.ip, peer.omq_port));
    let conn = match crate::quic::client::connect(
        endpoint,
        keys.clone(),
        addr,
        peer.pubkey_ed25519,
        Duration::from_secs(5),
    )
    .await
    {
        Ok(c) => c,
        Err(_) => return false,
    };
    let ok = matches!(
        conn.request("snode_ping", b"", Duration::from_secs(10)).await,
        Ok(crate::quic::client::Answer::Reply(b)) if b == b"pong"
    );
    conn.close();
    ok
}

/// `POST /ping_test/v1` over a node's transport (a simulated network: plain HTTP, no QUIC).
async fn ping_test_over(transport: &dyn Transport, peer: &NodeInfo) -> Option<http::HeaderMap> {
    let addr = std::net::SocketAddr::new(peer.ip.into(), peer.https_port);
    let timeout = Duration::from_secs(5);
    let r = crate::transport::post(
        transport,
        addr,
        "/ping_test/v1",
        &[],
        Vec::new(),
        64 * 1024,
        timeout,
    )
    .await
    .ok()?;
    (r.status() == http::StatusCode::OK).then(|| r.headers().clone())
}

async fn test_peer(
    http: &reqwest::Client,
    quic: Option<(&quinn::Endpoint, &Arc<NodeKeys>)>,
    peers: &PeerClient,
    peer: &NodeInfo,
) -> bool {
    // Same rule as every other peer connection: no test of a non-public address.
    if peers.refuses(peer).is_some() {
        return false;
    }
    let headers = match peers.transport() {
        Some(t) => ping_test_over(t.as_ref(), peer).await,
        None => {
            let url = format!("https://{}:{}/ping_test/v1", peer.ip, peer.https_port);
            match http.post(url).send().await {
                Ok(r) if r.status().as_u16() == 200 => Some(r.headers().clone()),
                _ => None,
            }
        }
    };
    let expected = b64(&peer.pubkey_ed25519);
    let https_ok = headers.is_some_and(|h| {
        h.get("x-oxen-snode-pubkey").and_then(|v| v.to_str().ok()) == Some(expected.as_str())
    });
    if !https_ok {
        return false;
    }
    if let Some((endpoint, keys)) = quic
        && !test_quic(endpoint, keys, peer).await
    {
        return false;
    }
    match peers
        .post(peer, PATH_PING, Vec::new(), Duration::from_secs(5))
        .await
    {
        Ok(r) => r.status == 200 && &r.body[..] == b"pong",
        Err(_) => false,
    }
}

/// Tests one random active peer every `ping_interval`, reports the result to the directory
/// and records it in `observed` (for `snode status` and the reachability metrics).
#[allow(clippy::too_many_arguments)] // each is a distinct per-node resource; a struct would only rename them
pub async fn test_reachability(
    client: DirectoryClient,
    keys: Arc<NodeKeys>,
    peers: PeerClient,
    membership: watch::Receiver<Arc<Membership>>,
    timing: NetworkTiming,
    clock: Clock,
    observed: crate::reachability::Reachability,
    mut rng: rand::rngs::StdRng,
    cancel: CancellationToken,
) {
    let http = match reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .timeout(Duration::from_secs(5))
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %crate::error::chain(&e), "cannot build the reachability client");
            return;
        }
    };
    // Without a client endpoint (no UDP socket to be had) peers are tested over HTTPS only;
    // on a transport (a simulated network) there is no QUIC at all.
    let quic = if peers.transport().is_some() {
        None
    } else {
        match crate::quic::endpoint::client(std::net::Ipv4Addr::UNSPECIFIED.into()) {
            Ok(e) => Some(e),
            Err(e) => {
                tracing::warn!(error = %crate::error::chain(&e), "no QUIC reachability tests");
                None
            }
        }
    };
    let me = keys.pubkey_ed25519();
    let mut order: Vec<NodeInfo> = Vec::new();
    let mut tick = tokio::time::interval(timing.ping_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            _ = cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        if order.is_empty() {
            // A shuffled round over every listed node (decommissioned ones too, so they can
            // come back), as the original's random test order.
            let m = membership.borrow().clone();
            order = m
                .nodes
                .iter()
                .filter(|n| n.pubkey_ed25519 != me)
                .cloned()
                .collect();
            order.shuffle(&mut rng);
        }
        let Some(peer) = order.pop() else { continue };
        let passed = test_peer(&http, quic.as_ref().map(|e| (e, &keys)), &peers, &peer).await;
        observed.record_test(&peer.pubkey_ed25519, passed, clock());
        if !passed {
            tracing::debug!(peer = %&hex::encode(peer.pubkey_ed25519)[..8], "peer unreachable");
        }
        if let Err(e) = client
            .report_at(&keys, &peer.pubkey_ed25519, passed, clock())
            .await
        {
            tracing::debug!(error = %crate::error::chain(&e), "reachability report failed");
        }
    }
}
