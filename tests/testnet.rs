//! `snode testnet` as a user runs it: real node processes, the manifest, replication between
//! them, and a clean stop of every process on SIGTERM.

mod common;

use common::*;
use serde_json::Value;
use std::process::{Command, Stdio};
use std::time::Duration;

fn alive(pid: u64) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
        && std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| !s.contains(") Z "))
            .unwrap_or(false)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn testnet_runs_replicates_and_stops_cleanly() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("net");
    let mut child = Command::new(env!("CARGO_BIN_EXE_snode"))
        .args(["testnet", "--nodes", "3", "--dir"])
        .arg(&dir)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .expect("testnet starts");
    let manifest_path = dir.join("testnet.json");
    let manifest: Value = wait_for("testnet.json", Duration::from_secs(120), || {
        let p = manifest_path.clone();
        async move { serde_json::from_str(&std::fs::read_to_string(&p).ok()?).ok() }
    })
    .await;
    let nodes = manifest["nodes"].as_array().expect("nodes").clone();
    assert_eq!(nodes.len(), 3);
    assert!(
        manifest["directory_url"]
            .as_str()
            .expect("url")
            .starts_with("http://127.0.0.1:")
    );
    for n in &nodes {
        for key in ["pubkey_ed25519", "pubkey_x25519"] {
            assert_eq!(n[key].as_str().expect(key).len(), 64);
        }
        let data_dir = n["data_dir"].as_str().expect("data_dir");
        // A complete node.toml, so `snode run --data-dir` restarts the node alone.
        let toml = std::fs::read_to_string(format!("{data_dir}/node.toml")).expect("node.toml");
        assert!(toml.contains("directory = \"http://127.0.0.1:"), "{toml}");
        assert!(alive(n["pid"].as_u64().expect("pid")));
    }

    // A store at one node is retrievable from another (one swarm of 3).
    let c = client();
    let port = |i: usize| format!("127.0.0.1:{}", nodes[i]["https_port"]);
    let user = User::new(77);
    let v = rpc_json(
        &c,
        &port(0),
        "store",
        user.store_params(b"through the testnet", 600_000),
    )
    .await;
    let hash = v["hash"].as_str().expect("hash").to_string();
    assert_eq!(v["swarm"].as_object().expect("swarm").len(), 3, "{v}");
    let got = retrieve_all(&c, &port(2), &user).await;
    assert_eq!(got, vec![(hash, b"through the testnet".to_vec())]);

    // SIGTERM stops every node and the testnet itself, exit 0.
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let code = tokio::task::spawn_blocking(move || child.wait().expect("wait"))
        .await
        .expect("join");
    assert!(code.success(), "testnet exit status {code:?}");
    for n in &nodes {
        let pid = n["pid"].as_u64().expect("pid");
        wait_for(
            "node process to exit",
            Duration::from_secs(30),
            || async move { (!alive(pid)).then_some(()) },
        )
        .await;
    }
}
