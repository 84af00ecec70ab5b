//! Attacks by a listed peer on what this node reads from it: an answer larger than any a node
//! sends must be refused while it streams in (10 MiB cap), whether the peer announces its size
//! or streams it chunked, and the honest-sized answer still goes through the size check to the
//! authentication check. Everything runs on loopback.

mod common;

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::routing::post;
use snode::api::listener::{PublicListener, RemoteAddr};
use snode::keys::NodeKeys;
use snode::peer::client::{MAX_PEER_RESPONSE, PeerClient, PeerError};
use snode::swarm::{NodeInfo, SwarmId};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// A TLS server on 127.0.0.1 answering every POST with `answer()`; the peer as we list it.
async fn hostile_peer(answer: fn() -> Body) -> (NodeInfo, CancellationToken) {
    let dir = tempfile::tempdir().expect("tempdir");
    let keys = NodeKeys::generate();
    let (cert, key) = snode::tls::ensure_certificate(dir.path(), &keys, false).expect("cert");
    let tls = snode::tls::server_config(&cert, &key).expect("tls");
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = tcp.local_addr().expect("addr").port();
    let cancel = CancellationToken::new();
    let tasks = TaskTracker::new();
    let listener = PublicListener::start(
        tcp,
        Some(tls),
        snode::api::listener::ListenerLimits::default(),
        &tasks,
        cancel.child_token(),
    )
    .expect("listener");
    let app = Router::new()
        .fallback(post(move || async move { answer() }))
        .into_make_service_with_connect_info::<RemoteAddr>();
    let c = cancel.clone();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(c.cancelled_owned())
            .await;
        drop(dir);
    });
    let info = NodeInfo {
        pubkey_ed25519: keys.pubkey_ed25519(),
        pubkey_x25519: keys.pubkey_x25519(),
        ip: Ipv4Addr::LOCALHOST,
        https_port: port,
        omq_port: 0,
        swarm_id: SwarmId(1),
        version: [2, 8, 0],
    };
    (info, cancel)
}

fn me() -> PeerClient {
    PeerClient::new(
        Arc::new(NodeKeys::generate()),
        Arc::new(snode::clock::wall_clock_ms),
        None,
        true,
    )
    .expect("client")
}

/// One peer request to `peer`, as the onion relay sends it.
async fn ask(
    client: &PeerClient,
    peer: &NodeInfo,
    timeout: Duration,
) -> Result<snode::peer::client::PeerResponse, PeerError> {
    client
        .post(peer, "/snode/v1/onion", b"x".to_vec(), timeout)
        .await
}

fn oversized_with_length() -> Body {
    Body::from(vec![0u8; MAX_PEER_RESPONSE + 1])
}

fn oversized_chunked() -> Body {
    // 11 chunks of 1 MiB with no Content-Length: only counting while reading catches it.
    let chunks = (0..11).map(|_| Ok::<_, std::io::Error>(vec![0u8; 1 << 20]));
    Body::from_stream(futures_util::stream::iter(chunks))
}

fn small() -> Body {
    Body::from("not signed")
}

#[tokio::test]
async fn an_oversized_peer_answer_is_refused_while_it_streams() {
    for (name, answer) in [
        ("with Content-Length", oversized_with_length as fn() -> Body),
        ("chunked", oversized_chunked),
    ] {
        let (peer, stop) = hostile_peer(answer).await;
        let r = ask(&me(), &peer, Duration::from_secs(20)).await;
        assert!(
            matches!(r, Err(PeerError::TooLarge { limit }) if limit == MAX_PEER_RESPONSE),
            "{name}: {r:?}"
        );
        stop.cancel();
    }
}

#[tokio::test]
async fn a_small_unsigned_answer_reaches_the_authentication_check() {
    let (peer, stop) = hostile_peer(small).await;
    let r = ask(&me(), &peer, Duration::from_secs(20)).await;
    assert!(matches!(r, Err(PeerError::NotAuthentic)), "{r:?}");
    stop.cancel();
}

/// A listed node at a non-public address cannot make us connect into our own network: the
/// refusal happens before any connection. The "private" peer here is a loopback listener
/// that counts connections, so a broken guard would show as a connection on 127.0.0.1 and
/// nothing leaves the machine either way.
#[tokio::test]
async fn a_peer_at_a_non_public_address_is_never_connected_to() {
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = tcp.local_addr().expect("addr").port();
    let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = accepted.clone();
    let watcher = tokio::spawn(async move {
        while tcp.accept().await.is_ok() {
            seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    });
    let peer = NodeInfo {
        pubkey_ed25519: NodeKeys::generate().pubkey_ed25519(),
        pubkey_x25519: [0; 32],
        ip: Ipv4Addr::LOCALHOST,
        https_port: port,
        omq_port: 0,
        swarm_id: SwarmId(1),
        version: [2, 8, 0],
    };
    let strict = PeerClient::new(
        Arc::new(NodeKeys::generate()),
        Arc::new(snode::clock::wall_clock_ms),
        None,
        false,
    )
    .expect("client");
    assert_eq!(strict.refuses(&peer), Some("loopback (127.0.0.0/8)"));
    let r = ask(&strict, &peer, Duration::from_secs(5)).await;
    assert!(matches!(r, Err(PeerError::NotPublic { .. })), "{r:?}");
    // The same request from a local-network node does connect (so the counter works).
    let _ = ask(&me(), &peer, Duration::from_secs(2)).await;
    common::wait_for(
        "the permissive client's connection",
        Duration::from_secs(10),
        async || (accepted.load(std::sync::atomic::Ordering::SeqCst) > 0).then_some(()),
    )
    .await;
    assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 1);
    watcher.abort();
}
