//! The soak mode of `snode bench` on a small test network of real node processes: a mixed
//! load while nodes are SIGKILLed and restarted loses no acknowledged message, brings no
//! deleted one back, records the restarted pids in `testnet.json`, and `Testnet::stop`
//! stops the restarted processes too.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::wait_for;
use snode::bench::soak::{SoakOptions, run};
use snode::testnet::{Testnet, TestnetOptions, gone};

fn pids(manifest: &serde_json::Value) -> Vec<u32> {
    manifest["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .map(|n| u32::try_from(n["pid"].as_u64().expect("pid")).expect("pid fits"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soak_with_kills_loses_nothing() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("net");
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_snode"));
    let net = Testnet::start(&TestnetOptions {
        nodes: 4,
        dir: dir.clone(),
        bin: bin.clone(),
    })
    .await
    .expect("test network starts");
    let started = pids(net.manifest());

    let report = run(&SoakOptions {
        manifest: dir.join("testnet.json"),
        bin,
        duration: Duration::from_secs(20),
        rate: 10.0,
        kill_every: Duration::from_secs(8),
        down_for: Duration::from_secs(1),
        rss_every: Duration::from_secs(2),
        settle: Duration::from_secs(120),
        accounts: 20,
        size: 256,
        concurrency: 16,
    })
    .await;

    // The manifest names the live processes: the restarted nodes' new pids.
    let now: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("testnet.json")).expect("manifest"))
            .expect("json");
    let now = pids(&now);
    net.stop().await;
    for pid in now.iter().chain(&started).copied() {
        wait_for(
            "node processes to exit",
            Duration::from_secs(30),
            || async move { gone(pid).then_some(()) },
        )
        .await;
    }

    let report = report.expect("the soak runs");
    let text = report.render();
    assert!(
        report.restarts() >= 1,
        "no node was killed and restarted:\n{text}"
    );
    assert_eq!(
        report.kills.len(),
        report.restarts(),
        "a restart failed:\n{text}"
    );
    let changed = now.iter().zip(&started).filter(|(a, b)| a != b).count();
    assert_eq!(
        changed,
        report.restarts(),
        "testnet.json pids: {now:?} vs {started:?}"
    );
    assert!(report.ok[0] > 0, "no store acknowledged:\n{text}");
    assert!(report.check.checked > 0, "nothing checked:\n{text}");
    assert_eq!(report.check.lost, 0, "acknowledged messages lost:\n{text}");
    assert_eq!(
        report.check.resurrected, 0,
        "deleted messages back:\n{text}"
    );
    assert!(report.passed());
    assert!(text.contains(&format!(
        "acknowledged {}, lost 0",
        report.check.acknowledged
    )));
    // RSS was sampled for every node over the run.
    assert!(report.rss.len() >= 5, "{text}");
    assert!(report.rss.iter().all(|s| s.kib.len() == 4));
}
