//! Data survives a clean restart of an in-process node on the same directory.

mod common;

use common::*;

#[tokio::test]
async fn restart_keeps_messages_and_identity() {
    let dir = tempfile::tempdir().expect("tempdir");
    init_dir(dir.path());
    let c = client();
    let carol = User::new(21);

    let node = spawn_node(dir.path(), test_config()).await;
    let addr = node.https_addr().to_string();
    let first_key = node.pubkey_ed25519();
    let mut hashes = Vec::new();
    for i in 0..50 {
        let v = rpc_json(
            &c,
            &addr,
            "store",
            carol.store_params(format!("msg {i}").as_bytes(), 600_000),
        )
        .await;
        hashes.push(v["hash"].as_str().expect("hash").to_string());
    }
    node.shutdown().await;

    let node = spawn_node(dir.path(), test_config()).await;
    assert_eq!(node.pubkey_ed25519(), first_key);
    let addr = node.https_addr().to_string();
    let got: Vec<String> = retrieve_all(&c, &addr, &carol)
        .await
        .into_iter()
        .map(|(h, _)| h)
        .collect();
    assert_eq!(got, hashes, "every message, in insertion order");
    node.shutdown().await;
}

/// The former owners a node remembers for hand-off admission survive a restart: the node
/// saves them on every membership change (`node::FORMER_OWNERS_FILE`) and loads them at
/// start, so after a restart it still knows who owned what before (and goes on recording).
#[tokio::test]
async fn restart_keeps_the_former_owners() {
    use snode::node::{FORMER_OWNERS_FILE, Node, NodeOptions};
    use snode::swarm::{Membership, NodeInfo, PreviousMembership, SwarmId};
    use std::sync::Arc;
    use std::time::Duration;

    let dir = tempfile::tempdir().expect("tempdir");
    init_dir(dir.path());
    let me = snode::keys::NodeKeys::load(&dir.path().join(snode::node::KEY_FILE)).expect("key");
    let nine = snode::keys::NodeKeys::from_seed([9; 32]);
    let info = |keys: &snode::keys::NodeKeys, swarm: u64| NodeInfo {
        pubkey_ed25519: keys.pubkey_ed25519(),
        pubkey_x25519: keys.pubkey_x25519(),
        ip: std::net::Ipv4Addr::LOCALHOST,
        https_port: 1,
        omq_port: 0,
        swarm_id: SwarmId(swarm),
        version: [2, 11, 0],
    };
    let listing =
        |h: u64, nodes: Vec<NodeInfo>| Arc::new(Membership::new(h, format!("{h:064x}"), nodes));
    // Swarm space 2: swarm 1 owns it whenever it exists.
    let nine_owned_it = |p: &PreviousMembership| {
        p.read()
            .owned_within_window(&nine.pubkey_ed25519(), 2, now_ms())
    };
    let path = dir.path().join(FORMER_OWNERS_FILE);
    // Sends membership changes (node 9 in swarm `nines`) until the saved file satisfies
    // `done`: the node may read its first membership after the first of them, so one change
    // is not enough to see.
    let changes_until = async |tx: &tokio::sync::watch::Sender<Arc<Membership>>,
                               first: u64,
                               nines: u64,
                               done: &dyn Fn(&PreviousMembership) -> bool| {
        let mut h = first;
        wait_for(
            "the former owners saved",
            Duration::from_secs(20),
            async || {
                tx.send_replace(listing(h, vec![info(&me, 1), info(&nine, nines)]));
                h += 1;
                let bytes = std::fs::read(&path).ok()?;
                let p = PreviousMembership::restore(&bytes).expect("a whole file");
                done(&p).then_some(())
            },
        )
        .await;
    };

    // Node 9 and we own swarm space 2 (swarm 1).
    let (tx, rx) = tokio::sync::watch::channel(listing(1, vec![info(&me, 1), info(&nine, 1)]));
    let mut opts = NodeOptions::new(dir.path().to_path_buf(), test_config());
    opts.membership = Some(rx);
    let node = Node::spawn(opts).await.expect("node starts");
    changes_until(&tx, 2, 1, &|p| nine_owned_it(p)).await;
    node.shutdown().await;

    // Restarted, 9 now in another swarm and never listed in swarm 1 again: the next saves
    // still say it owned swarm space 2.
    let (tx, rx) =
        tokio::sync::watch::channel(listing(100, vec![info(&me, 1), info(&nine, 1 << 63)]));
    let mut opts = NodeOptions::new(dir.path().to_path_buf(), test_config());
    opts.membership = Some(rx);
    let node = Node::spawn(opts).await.expect("node restarts");
    std::fs::remove_file(&path).expect("remove the first run's file");
    changes_until(&tx, 101, 1 << 63, &|p| p.read().former_len() > 3).await;
    let p = PreviousMembership::restore(&std::fs::read(&path).expect("file")).expect("whole");
    assert!(
        nine_owned_it(&p),
        "the restart forgot who owned swarm space 2"
    );
    node.shutdown().await;
}
