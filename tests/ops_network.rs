//! The operator's view of a network, on in-process nodes with a real directory: `/status`
//! shows swarm peers reaching each other and then one cut off, and the dashboard and the alert
//! rules in deploy/ name only metrics a running node exports (with the traffic that makes the
//! event-driven ones appear: forwards, failed forwards and retries, refusals, onion requests),
//! and a fresh node exports them from its first scrape.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::net::TestNet;
use common::*;
use serde_json::{Value, json};
use snode::status::StatusReport;

fn deploy(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("deploy")
        .join(file)
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// `snode_*` names in `text` (PromQL expressions).
fn metric_names(text: &str, into: &mut BTreeSet<String>) {
    let mut rest = text;
    while let Some(i) = rest.find("snode_") {
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        into.insert(tail[..end].to_string());
        rest = &tail[end..];
    }
}

fn exprs_in_json(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                match (k.as_str(), v) {
                    ("expr", Value::String(s)) => out.push(s.clone()),
                    _ => exprs_in_json(v, out),
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|v| exprs_in_json(v, out)),
        _ => {}
    }
}

/// Every `snode_*` metric the dashboard and the alert rules use.
fn metrics_used_by_deploy() -> BTreeSet<String> {
    let dashboard: Value = serde_json::from_str(&read(&deploy("grafana/dashboards/snode.json")))
        .expect("dashboard is JSON");
    let mut exprs = Vec::new();
    exprs_in_json(&dashboard, &mut exprs);
    assert!(
        exprs.len() >= 20,
        "the dashboard has its queries: {}",
        exprs.len()
    );
    for line in read(&deploy("alerts.yml")).lines() {
        if let Some(e) = line.trim_start().strip_prefix("expr:") {
            exprs.push(e.to_string());
        }
    }
    let mut names = BTreeSet::new();
    for e in &exprs {
        metric_names(e, &mut names);
    }
    names
}

/// Sample names of a Prometheus text exposition.
fn exported(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(str::to_string)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dashboard_and_alerts_name_only_metrics_a_running_node_exports() {
    let used = metrics_used_by_deploy();
    for must in [
        "snode_ready",
        "snode_requests_total",
        "snode_request_duration_seconds_bucket",
        "snode_onion_requests_total",
        "snode_replication_queue_depth",
        "snode_swarm_forwards_total",
        "snode_handoff_messages_total",
        "snode_store_disk_bytes",
        "snode_store_max_bytes",
        "snode_last_incoming_ping_timestamp_seconds",
        "snode_peers_unreachable",
        "snode_rate_limited_total",
    ] {
        assert!(
            used.contains(must),
            "deploy/ should chart or alert on {must}: {used:?}"
        );
    }

    // Two nodes of one swarm, so writes are forwarded (and, with the peer cut off, retried).
    let net = TestNet::start(2).await;
    net.wait_converged().await;
    let c = client();
    let admin = net.node(0).admin_addr();
    let dave = User::new(72);
    rpc_json(
        &c,
        &net.addr(0),
        "store",
        dave.store_params(b"to both", 600_000),
    )
    .await;
    let (status, _) = rpc(
        &c,
        &net.addr(0),
        "store",
        dave.store_params(b"ttl too long", 40 * 86_400_000),
    )
    .await;
    assert_eq!(status, 403);
    let resp = c
        .post(format!("https://{}/onion_req/v2", net.addr(0)))
        .body("not an onion")
        .send()
        .await
        .expect("onion");
    assert!(resp.status().is_client_error(), "{}", resp.status());
    net.partition(1);

    let mut missing = BTreeSet::new();
    let mut i = 0;
    poll_until(Duration::from_millis(500), Duration::from_secs(90), async || {
        // Writes while the peer is cut off fail to forward and queue for retry. (Cutting the
        // peer off also resets our pooled connection once: errors are expected here.)
        let body = json!({"method": "store", "params": dave.store_params(format!("while cut {i}").as_bytes(), 600_000)});
        i += 1;
        let _ = c
            .post(format!("https://{}/storage_rpc/v1", net.addr(0)))
            .json(&body)
            .send()
            .await;
        let text = c
            .get(format!("http://{admin}/metrics"))
            .send()
            .await
            .expect("scrape")
            .text()
            .await
            .expect("body");
        let have = exported(&text);
        missing = used.difference(&have).cloned().collect();
        missing.is_empty().then_some(())
    })
    .await;
    net.heal();
    net.shutdown().await;
    assert!(
        missing.is_empty(),
        "deploy/ names metrics no running node exports: {missing:?}"
    );
}

#[tokio::test]
async fn a_fresh_node_exports_the_series_deploy_names_from_the_first_scrape() {
    let used = metrics_used_by_deploy();
    for event_driven in [
        "snode_onion_requests_total",
        "snode_swarm_forwards_total",
        "snode_replication_retries_total",
        "snode_messages_rejected_total",
    ] {
        assert!(used.contains(event_driven), "{event_driven}: {used:?}");
    }
    let dir = tempfile::tempdir().expect("tempdir");
    init_dir(dir.path());
    let node = spawn_node(dir.path(), test_config()).await;
    let text = client()
        .get(format!("http://{}/metrics", node.admin_addr()))
        .send()
        .await
        .expect("scrape")
        .text()
        .await
        .expect("body");
    node.shutdown().await;
    let have = exported(&text);
    // Labelled by RPC method and HTTP status: these appear with the first client request.
    let per_request = [
        "snode_requests_total",
        "snode_request_duration_seconds_bucket",
    ];
    let missing: Vec<&String> = used
        .iter()
        .filter(|n| !per_request.contains(&n.as_str()) && !have.contains(*n))
        .collect();
    assert!(
        missing.is_empty(),
        "a fresh node does not export {missing:?}:\n{text}"
    );
    assert!(
        text.lines()
            .any(|l| l == r#"snode_replication_retries_total{result="gave_up"} 0"#),
        "{text}"
    );
}

/// Node `i`'s report, from its admin listener.
async fn status_of(c: &reqwest::Client, net: &TestNet, i: usize) -> StatusReport {
    let admin = net.node(i).admin_addr();
    c.get(format!("http://{admin}/status"))
        .send()
        .await
        .expect("status")
        .json()
        .await
        .expect("a status report")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn status_shows_peers_reaching_each_other_and_then_a_cut_off_peer() {
    let net = TestNet::start(2).await;
    net.wait_converged().await;
    let c = client();
    let peer = hex::encode(net.node(1).pubkey_ed25519());

    // Both ways: node 0 tested node 1 and passed, and node 1's tests reached node 0.
    let r = wait_for(
        "node 0 to see its peer both ways",
        Duration::from_secs(60),
        || async {
            let r = status_of(&c, &net, 0).await;
            let s = r.swarm.as_ref()?;
            let seen = s
                .peers
                .iter()
                .find(|p| p.pubkey_ed25519 == peer)?
                .last_test?;
            (seen.reachable
                && r.reachability.peer_pings.count > 0
                && r.reachability.ping_tests.count > 0)
                .then_some(r)
        },
    )
    .await;
    assert!(r.ready);
    assert!(
        r.network.directory && r.network.registered,
        "{:?}",
        r.network
    );
    assert_eq!(r.network.nodes, 2);
    assert_eq!(r.swarm.as_ref().map(|s| s.members), Some(2));
    assert_eq!(r.reachability.reached_by_peers, Some(true));

    // Cut node 1 off: node 0's next test of it fails, and says so.
    net.partition(1);
    let r = wait_for(
        "node 0 to find its peer unreachable",
        Duration::from_secs(60),
        || async {
            let r = status_of(&c, &net, 0).await;
            let s = r.swarm.as_ref()?;
            let seen = s
                .peers
                .iter()
                .find(|p| p.pubkey_ed25519 == peer)?
                .last_test?;
            (!seen.reachable).then_some(r)
        },
    )
    .await;
    assert!(
        r.reachability.reachable < r.reachability.tested,
        "{:?}",
        r.reachability
    );
    assert!(snode::status::render::text(&r).contains("UNREACHABLE: "));
    net.heal();
    net.shutdown().await;
}
