//! The directory end to end over loopback: registration, swarms, polling, persistence,
//! admission, decommission and recommission, `get_n_service_nodes`.
#![allow(clippy::unwrap_used, missing_docs)] // tests: a panic is the failure report

mod common;

use serde_json::{Value, json};
use snode::directory::{
    Admission, DirectoryClient, DirectoryClientError, DirectoryConfig, DirectoryHandle,
    DirectoryLimits, serve,
};
use snode::keys::NodeKeys;
use snode::swarm::{Membership, NodeInfo, SwarmId};
use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::path::Path;
use std::time::Duration;

/// How long a condition may take before a test gives up.
const PATIENCE: Duration = Duration::from_secs(15);

/// A directory for a local network: these nodes are on 127.0.0.1 and the test registers
/// them faster than a public directory's per-address limits allow.
async fn start(dir: &Path, admission: Admission, decommission_after: Duration) -> DirectoryHandle {
    serve(DirectoryConfig {
        decommission_after,
        allow_private_addresses: true,
        limits: DirectoryLimits::testnet(),
        ..DirectoryConfig::new(dir.to_path_buf(), "127.0.0.1:0".parse().unwrap(), admission)
    })
    .await
    .unwrap()
}

fn info(port: u16) -> NodeInfo {
    NodeInfo {
        pubkey_ed25519: [0; 32],
        pubkey_x25519: [0; 32],
        ip: Ipv4Addr::LOCALHOST,
        https_port: port,
        omq_port: 0,
        swarm_id: SwarmId::UNASSIGNED,
        version: [2, 8, 0],
    }
}

/// Registers `n` fresh nodes (ports 30001…), checking each registration makes one block.
async fn register_many(c: &DirectoryClient, n: u16) -> Vec<NodeKeys> {
    let mut keys = Vec::new();
    let mut last: Option<(u64, String)> = None;
    for i in 0..n {
        let k = NodeKeys::generate();
        let r = c.register(&k, &info(30_001 + i)).await.unwrap();
        if let Some((h, hash)) = &last {
            assert_eq!(r.height, h + 1);
            assert_ne!(&r.block_hash, hash);
        }
        assert_ne!(r.swarm_id, SwarmId::UNASSIGNED);
        last = Some((r.height, r.block_hash.clone()));
        keys.push(k);

        let m = c.get_service_nodes(None).await.unwrap().unwrap();
        assert_eq!((m.height, &m.block_hash), (r.height, &r.block_hash));
        assert_eq!(
            m.swarm_of(&keys[keys.len() - 1].pubkey_ed25519()),
            Some(r.swarm_id)
        );
        check_swarms(&m);
    }
    keys
}

/// Swarm sizes of the active nodes.
fn sizes(m: &Membership) -> BTreeMap<SwarmId, usize> {
    m.swarms()
        .into_iter()
        .map(|(id, v)| (id, v.len()))
        .collect()
}

/// Fewer than 5 active nodes share one swarm; from 5 on, every swarm has 5 to 10 members.
fn check_swarms(m: &Membership) {
    let s = sizes(m);
    let active: usize = s.values().sum();
    if active < 5 {
        assert!(s.len() <= 1, "{s:?}");
    } else {
        assert!(
            s.values().all(|n| (5..=10).contains(n)),
            "{active} nodes: {s:?}"
        );
    }
}

/// Polls the listing until `pred` holds.
async fn wait_for(
    c: &DirectoryClient,
    what: &str,
    pred: impl Fn(&Membership) -> bool,
) -> Membership {
    common::wait_for(what, PATIENCE, async || {
        let m = c.get_service_nodes(None).await.unwrap().unwrap();
        pred(&m).then_some(m)
    })
    .await
}

async fn raw_rpc(url: &str, body: Value) -> Value {
    reqwest::Client::new()
        .post(format!("{url}/json_rpc"))
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test]
async fn twelve_nodes_register_poll_and_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let d = start(dir.path(), Admission::Open, Duration::from_secs(3600)).await;
    let c = DirectoryClient::new(&d.url()).unwrap();

    let empty = c.get_service_nodes(None).await.unwrap().unwrap();
    assert_eq!((empty.height, empty.nodes.len()), (0, 0));

    let keys = register_many(&c, 12).await;
    let m = c.get_service_nodes(None).await.unwrap().unwrap();
    assert_eq!(m.height, 12);
    assert_eq!(m.nodes.len(), 12);
    let s = sizes(&m);
    assert!(s.len() >= 2, "12 nodes split: {s:?}");
    assert_eq!(s.values().sum::<usize>(), 12);

    // Polling with the current hash: unchanged.
    assert_eq!(
        c.get_service_nodes(Some(&m.block_hash)).await.unwrap(),
        None
    );
    // Re-announcing the same data is not a change.
    let again = c.register(&keys[0], &info(30_001)).await.unwrap();
    assert_eq!((again.height, &again.block_hash), (m.height, &m.block_hash));
    assert_eq!(
        c.get_service_nodes(Some(&m.block_hash)).await.unwrap(),
        None
    );
    // A new port is (signed later than the re-announcement: both can fall in one
    // millisecond, and an update must be newer than what was accepted).
    let later = snode::clock::wall_clock_ms() + 1_000;
    let moved = c.register_at(&keys[0], &info(40_001), later).await.unwrap();
    assert_eq!(moved.height, m.height + 1);
    let m2 = c
        .get_service_nodes(Some(&m.block_hash))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        m2.node(&keys[0].pubkey_ed25519()).unwrap().https_port,
        40_001
    );
    // oxend's wire shape, as a client sees it.
    let raw = raw_rpc(
        &d.url(),
        json!({"jsonrpc":"2.0","id":3,"method":"get_service_nodes","params":{"active_only":true,"fields":{"public_ip":true,"storage_port":true,"pubkey_x25519":true,"pubkey_ed25519":true}}}),
    )
    .await;
    assert_eq!(raw["id"], 3);
    assert_eq!(raw["result"]["height"], 13);
    let entry = &raw["result"]["service_node_states"][0];
    assert_eq!(entry["public_ip"], "127.0.0.1");
    assert_eq!(entry.as_object().unwrap().len(), 4);

    // Restart on the same data dir: the same chain and the same swarms.
    d.shutdown().await;
    let d = start(dir.path(), Admission::Open, Duration::from_secs(3600)).await;
    let c = DirectoryClient::new(&d.url()).unwrap();
    let after = c.get_service_nodes(None).await.unwrap().unwrap();
    assert_eq!(after, m2);
    assert_eq!(
        c.get_service_nodes(Some(&m2.block_hash)).await.unwrap(),
        None
    );
    // And it keeps going from there.
    let next = c
        .register(&NodeKeys::generate(), &info(50_000))
        .await
        .unwrap();
    assert_eq!(next.height, 14);
    check_swarms(&c.get_service_nodes(None).await.unwrap().unwrap());
    d.shutdown().await;
}

#[tokio::test]
async fn allow_list_admits_only_listed_operators() {
    let dir = tempfile::tempdir().unwrap();
    let ok = NodeKeys::generate();
    let allow = Admission::AllowList(BTreeSet::from([ok.pubkey_ed25519()]));
    let d = start(dir.path(), allow, Duration::from_secs(3600)).await;
    let c = DirectoryClient::new(&d.url()).unwrap();

    let err = c
        .register(&NodeKeys::generate(), &info(1))
        .await
        .unwrap_err();
    assert!(
        matches!(err, DirectoryClientError::Status { status: 403, .. }),
        "{err}"
    );
    let r = c.register(&ok, &info(1)).await.unwrap();
    assert_eq!((r.height, r.swarm_id), (1, SwarmId(0)));
    let m = c.get_service_nodes(None).await.unwrap().unwrap();
    assert_eq!(m.nodes.len(), 1);
    d.shutdown().await;
}

#[tokio::test]
async fn unreachable_nodes_are_decommissioned_and_recommissioned() {
    let dir = tempfile::tempdir().unwrap();
    let d = start(dir.path(), Admission::Open, Duration::from_millis(600)).await;
    let c = DirectoryClient::new(&d.url()).unwrap();
    let keys = register_many(&c, 11).await;
    let (a, b, target) = (&keys[0], &keys[1], &keys[2]);
    let t = target.pubkey_ed25519();

    // Only listed, active nodes may report.
    let stranger = NodeKeys::generate();
    let err = c.report(&stranger, &t, false).await.unwrap_err();
    assert!(
        matches!(err, DirectoryClientError::Status { status: 403, .. }),
        "{err}"
    );

    let before = c.get_service_nodes(None).await.unwrap().unwrap();
    c.report(a, &t, false).await.unwrap();
    // No further reports: the directory's timer decommissions it.
    let m = wait_for(&c, "decommission", |m| !m.is_active(&t)).await;
    assert!(m.height > before.height);
    let listed = m.node(&t).unwrap();
    assert_eq!(listed.swarm_id, SwarmId::UNASSIGNED);
    check_swarms(&m);
    assert_eq!(sizes(&m).values().sum::<usize>(), 10);
    // Listed as inactive, and left out by active_only.
    let raw = raw_rpc(&d.url(), json!({"method":"get_service_nodes","params":{}})).await;
    let entry = raw["result"]["service_node_states"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["pubkey_ed25519"] == hex::encode(t))
        .unwrap()
        .clone();
    assert_eq!(entry["active"], false);
    assert_eq!(entry["swarm_id"].as_u64(), Some(u64::MAX));
    let active = c.get_n_service_nodes(0, true).await.unwrap();
    assert_eq!(active.len(), 10);
    assert!(active.iter().all(|n| n.pubkey_ed25519 != t));

    // A decommissioned node cannot report.
    let err = c
        .report(target, &a.pubkey_ed25519(), true)
        .await
        .unwrap_err();
    assert!(
        matches!(err, DirectoryClientError::Status { status: 403, .. }),
        "{err}"
    );

    // Reachable again, says one node: not enough on its own.
    c.report(b, &t, true).await.unwrap();
    assert!(
        !c.get_service_nodes(None)
            .await
            .unwrap()
            .unwrap()
            .is_active(&t)
    );
    // A second reporter agrees: back in a swarm.
    c.report(&keys[3], &t, true).await.unwrap();
    let m2 = c.get_service_nodes(None).await.unwrap().unwrap();
    assert!(m2.is_active(&t));
    assert_eq!(m2.height, m.height + 1);
    check_swarms(&m2);

    // The state on disk says the same after a restart.
    d.shutdown().await;
    let d = start(dir.path(), Admission::Open, Duration::from_millis(600)).await;
    let c = DirectoryClient::new(&d.url()).unwrap();
    assert_eq!(
        c.get_service_nodes(Some(&m2.block_hash)).await.unwrap(),
        None
    );
    d.shutdown().await;
}

#[tokio::test]
async fn get_n_service_nodes_returns_a_random_subset() {
    let dir = tempfile::tempdir().unwrap();
    let d = start(dir.path(), Admission::Open, Duration::from_secs(3600)).await;
    let c = DirectoryClient::new(&d.url()).unwrap();
    let keys = register_many(&c, 8).await;
    let all: BTreeSet<[u8; 32]> = keys.iter().map(NodeKeys::pubkey_ed25519).collect();

    let mut seen = BTreeSet::new();
    for _ in 0..10 {
        let some = c.get_n_service_nodes(3, true).await.unwrap();
        assert_eq!(some.len(), 3);
        let picked: BTreeSet<_> = some.iter().map(|n| n.pubkey_ed25519).collect();
        assert_eq!(picked.len(), 3);
        assert!(picked.is_subset(&all));
        seen.extend(picked);
    }
    assert!(
        seen.len() > 3,
        "ten random draws of 3 out of 8 are not all the same"
    );
    assert_eq!(c.get_n_service_nodes(100, false).await.unwrap().len(), 8);
    assert_eq!(c.get_n_service_nodes(0, false).await.unwrap().len(), 8);
    d.shutdown().await;
}

#[tokio::test]
async fn bad_input_is_refused_and_bodies_are_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let d = start(dir.path(), Admission::Open, Duration::from_secs(3600)).await;
    let http = reqwest::Client::new();
    let status = |path: &str, body: Vec<u8>| {
        let req = http.post(format!("{}{path}", d.url())).body(body);
        async move { req.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(status("/register", b"{}".to_vec()).await, 400);
    assert_eq!(status("/report", b"nonsense".to_vec()).await, 400);
    assert_eq!(status("/json_rpc", vec![b' '; 64 * 1024 + 1]).await, 413);
    let mut ann = snode::directory::sign_announcement(&NodeKeys::generate(), &info(1), 0);
    ann.timestamp = 0;
    assert_eq!(
        status("/register", serde_json::to_vec(&ann).unwrap()).await,
        400
    );
    let rpc = raw_rpc(&d.url(), json!({"jsonrpc":"2.0","id":1,"method":"nope"})).await;
    assert_eq!(rpc["error"]["code"], -32601);
    d.shutdown().await;
}

/// A node whose polls skipped heights reads back the listings served in between (oldest
/// first, the latest `MAX_SKIPPED_READ` at most), each as it was served; heights the
/// directory never served or no longer keeps are left out.
#[tokio::test]
async fn skipped_heights_are_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let d = start(dir.path(), Admission::Open, Duration::from_secs(3600)).await;
    let c = DirectoryClient::new(&d.url()).unwrap();
    let keys = register_many(&c, 6).await;
    let now = c.get_service_nodes(None).await.unwrap().unwrap().height;
    let read = snode::network::read_skipped(&c, now - 5, now).await;
    let heights: Vec<u64> = read.iter().map(|m| m.height).collect();
    assert_eq!(heights, (now - 4..now).collect::<Vec<_>>());
    for m in &read {
        // Height `now - k` listed the first `6 - k` nodes.
        let listed = usize::try_from(6 - (now - m.height)).unwrap();
        assert_eq!(m.nodes.len(), listed, "height {}", m.height);
        assert!(m.node(&keys[listed - 1].pubkey_ed25519()).is_some());
        assert_eq!(
            **m,
            c.get_service_nodes_at(m.height).await.unwrap().unwrap()
        );
    }
    // Never more than the bound, and nothing for heights not served.
    let far = now + 3 * snode::network::MAX_SKIPPED_READ;
    assert!(snode::network::read_skipped(&c, now, far).await.is_empty());
    assert!(c.get_service_nodes_at(now + 1).await.unwrap().is_none());
    d.shutdown().await;
}
