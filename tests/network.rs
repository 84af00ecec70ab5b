//! Multi-node behaviour: in-process nodes (`Node::spawn`) with a real directory, each behind a
//! proxy that really drops traffic. No acknowledged message may be lost in any scenario.

mod common;

use common::net::TestNet;
use common::*;
use serde_json::json;
use std::collections::HashSet;
use std::time::Duration;

const CONVERGE: Duration = Duration::from_secs(60);

async fn hashes_at(c: &reqwest::Client, addr: &str, user: &User) -> HashSet<String> {
    retrieve_all(c, addr, user)
        .await
        .into_iter()
        .map(|(h, _)| h)
        .collect()
}

/// Waits until every member in `idx` holds exactly `want` for `user`.
async fn wait_all_hold(net: &TestNet, idx: &[usize], user: &User, want: &HashSet<String>) {
    let c = client();
    for &i in idx {
        let addr = net.addr(i);
        wait_for(&format!("member {i} to converge"), CONVERGE, || {
            let (c, addr) = (c.clone(), addr.clone());
            async move {
                // A member just restarted answers 503 until the directory places it again.
                let (status, _) = rpc(&c, &addr, "retrieve", user.retrieve_params(None)).await;
                if status != 200 {
                    return None;
                }
                (hashes_at(&c, &addr, user).await == *want).then_some(())
            }
        })
        .await;
    }
}

async fn store_n(c: &reqwest::Client, addr: &str, user: &User, n: usize, tag: &str) -> Vec<String> {
    let mut out = Vec::new();
    for i in 0..n {
        let v = rpc_json(
            c,
            addr,
            "store",
            user.store_params(format!("{tag} {i}").as_bytes(), 600_000),
        )
        .await;
        out.push(v["hash"].as_str().expect("hash").to_string());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stores_deletes_and_expiries_reach_every_member() {
    let net = TestNet::start(5).await;
    net.wait_converged().await;
    let c = client();
    let alice = User::new(41);

    // A store at one member is retrievable from every member; the response has one signed
    // entry per member.
    let v = rpc_json(
        &c,
        &net.addr(2),
        "store",
        alice.store_params(b"to everyone", 600_000),
    )
    .await;
    let swarm = v["swarm"].as_object().expect("swarm");
    assert_eq!(swarm.len(), 5, "{v}");
    assert!(swarm.values().all(|e| e["signature"].is_string()), "{v}");
    let mut want: HashSet<String> = [v["hash"].as_str().expect("hash").to_string()].into();
    want.extend(store_n(&c, &net.addr(0), &alice, 20, "batch").await);
    wait_all_hold(&net, &[0, 1, 2, 3, 4], &alice, &want).await;

    // A delete at one member reaches all of them.
    let victim = want.iter().next().expect("one").clone();
    let sig = alice.sign(&format!("delete{victim}"));
    let v = rpc_json(
        &c,
        &net.addr(4),
        "delete",
        json!({"pubkey": alice.session_id, "pubkey_ed25519": alice.ed_hex(), "messages": [victim], "signature": sig}),
    )
    .await;
    assert_eq!(v["swarm"].as_object().expect("swarm").len(), 5, "{v}");
    want.remove(&victim);
    wait_all_hold(&net, &[0, 1, 2, 3, 4], &alice, &want).await;

    // expire_all shortening everything to "now" empties the account everywhere.
    let expiry = now_ms();
    let sig = alice.sign(&format!("expire_all{expiry}"));
    rpc_json(
        &c,
        &net.addr(1),
        "expire_all",
        json!({"pubkey": alice.session_id, "pubkey_ed25519": alice.ed_hex(), "expiry": expiry, "signature": sig}),
    )
    .await;
    wait_all_hold(&net, &[0, 1, 2, 3, 4], &alice, &HashSet::new()).await;
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_member_down_during_stores_catches_up_after_restart() {
    let mut net = TestNet::start(5).await;
    net.wait_converged().await;
    let c = client();
    let bob = User::new(42);
    let mut want: HashSet<String> = store_n(&c, &net.addr(0), &bob, 10, "before")
        .await
        .into_iter()
        .collect();
    net.stop(3).await;
    want.extend(store_n(&c, &net.addr(1), &bob, 30, "while down").await);
    net.restart(3).await;
    want.extend(store_n(&c, &net.addr(2), &bob, 5, "after").await);
    wait_all_hold(&net, &[0, 1, 2, 3, 4], &bob, &want).await;
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_partitioned_member_converges_after_healing() {
    let net = TestNet::start(5).await;
    net.wait_converged().await;
    let c = client();
    let carol = User::new(43);
    let mut want: HashSet<String> = store_n(&c, &net.addr(0), &carol, 5, "before")
        .await
        .into_iter()
        .collect();
    net.partition(4);
    want.extend(store_n(&c, &net.addr(1), &carol, 25, "during").await);
    // While cut off it cannot have them (its proxy drops everything, including its own
    // outgoing peer traffic, which the other proxies block).
    net.heal();
    wait_all_hold(&net, &[0, 1, 2, 3, 4], &carol, &want).await;
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_joining_later_gets_its_swarms_data() {
    let mut net = TestNet::start(5).await;
    net.wait_converged().await;
    let c = client();
    let dave = User::new(44);
    let want: HashSet<String> = store_n(&c, &net.addr(0), &dave, 40, "existing")
        .await
        .into_iter()
        .collect();
    let new = net.add_member().await;
    net.wait_converged().await;
    wait_all_hold(&net, &[new], &dave, &want).await;
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_swarm_split_moves_data_and_frees_old_owners() {
    // 10 nodes are one swarm (the maximum size); the 11th makes the directory split it
    // (storage-server.md 3.3 rules with MAX_SWARM_SIZE enforced, see directory::assign).
    let mut net = TestNet::start(10).await;
    net.wait_converged().await;
    assert_eq!(net.directory_view().await.swarms().len(), 1);
    let c = client();
    let users: Vec<User> = (0..16).map(|i| User::new(100 + i)).collect();
    let mut stored = Vec::new();
    for u in &users {
        stored.push(
            store_n(&c, &net.addr(0), u, 3, "pre-split")
                .await
                .into_iter()
                .collect::<HashSet<_>>(),
        );
    }
    net.add_member().await;
    net.wait_converged().await;
    let view = net.directory_view().await;
    assert_eq!(view.swarms().len(), 2, "the 11th node splits the network");

    for (u, want) in users.iter().zip(&stored) {
        let owners = net.owners(&u.session_id).await;
        // Every new owner holds the account's messages…
        wait_all_hold(&net, &owners, u, want).await;
        // …and a non-owner answers 421 with the owning swarm.
        let other = (0..net.members.len())
            .find(|i| !owners.contains(i))
            .expect("a non-owner");
        let (status, body) = rpc(&c, &net.addr(other), "retrieve", u.retrieve_params(None)).await;
        assert_eq!(status, 421, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).expect("json");
        assert!(v["snodes"].as_array().is_some_and(|s| !s.is_empty()), "{v}");
    }
    // Old owners delete what they no longer own once the new owners have it.
    let users = &users;
    wait_for("old owners to free moved data", CONVERGE, || {
        let net = &net;
        async move {
            let held: u64 = net
                .members
                .iter()
                .filter_map(|m| m.node.as_ref())
                .map(|n| n.stats().messages)
                .sum();
            // Each account's 3 messages live only on its own swarm's members.
            let expected: u64 = {
                let mut total = 0;
                for u in users {
                    total += 3 * net.owners(&u.session_id).await.len() as u64;
                }
                total
            };
            (held == expected).then_some(())
        }
    })
    .await;
    net.shutdown().await;
}
