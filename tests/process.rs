//! The real `snode` binary: init, run, errors before serving, SIGTERM, and `kill -9` in the
//! middle of writes losing no acknowledged message.

mod common;

use common::*;
use serde_json::Value;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

fn snode() -> Command {
    snode_bin()
}

fn init(dir: &Path) {
    let text = cli_init(dir);
    assert!(text.contains("pubkey_ed25519: "), "{text}");
    assert!(text.contains("pubkey_x25519: "), "{text}");
}

fn start(dir: &Path) -> Child {
    snode()
        .args([
            "run",
            "--bind-ip",
            "127.0.0.1",
            "--https-port",
            "0",
            "--quic-port",
            "0",
            "--admin-listen",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(dir)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .spawn()
        .expect("run starts")
}

/// Waits for the run file of process `pid`; returns its HTTPS address.
async fn https_addr(dir: &Path, pid: u32) -> String {
    let path = dir.join("snode.run.json");
    wait_for("run file", Duration::from_secs(60), || {
        let path = path.clone();
        async move {
            let v: Value = serde_json::from_str(&std::fs::read_to_string(&path).ok()?).ok()?;
            (v["pid"].as_u64()? == u64::from(pid)).then(|| format!("127.0.0.1:{}", v["https_port"]))
        }
    })
    .await
}

#[tokio::test]
async fn kill_9_mid_write_loses_no_acknowledged_message() {
    let dir = tempfile::tempdir().expect("tempdir");
    init(dir.path());
    let mut child = start(dir.path());
    let addr = https_addr(dir.path(), child.id()).await;
    let c = client();
    let dave = Arc::new(User::new(33));
    let acked = Arc::new(Mutex::new(Vec::<String>::new()));

    let mut writers = Vec::new();
    for w in 0..4 {
        let (c, addr, dave, acked) = (c.clone(), addr.clone(), dave.clone(), acked.clone());
        writers.push(tokio::spawn(async move {
            for i in 0.. {
                let params =
                    dave.store_params(format!("writer {w} message {i}").as_bytes(), 600_000);
                let resp = c
                    .post(format!("https://{addr}/storage_rpc/v1"))
                    .json(&serde_json::json!({"method": "store", "params": params}))
                    .send()
                    .await;
                let Ok(resp) = resp else { break };
                if resp.status().as_u16() != 200 {
                    break;
                }
                let Ok(v) = resp.json::<Value>().await else {
                    break;
                };
                if let Some(h) = v["hash"].as_str() {
                    acked.lock().expect("lock").push(h.to_string());
                }
            }
        }));
    }
    wait_for("acknowledged stores", Duration::from_secs(60), || {
        let n = acked.lock().expect("lock").len();
        async move { (n >= 400).then_some(()) }
    })
    .await;
    child.kill().expect("kill -9"); // SIGKILL while the writers are still sending
    child.wait().expect("reaped");
    for w in writers {
        w.await.expect("writer");
    }
    let acked = acked.lock().expect("lock").clone();

    let mut child = start(dir.path());
    let addr = https_addr(dir.path(), child.id()).await;
    let stored: std::collections::HashSet<String> = retrieve_all(&c, &addr, &dave)
        .await
        .into_iter()
        .map(|(h, _)| h)
        .collect();
    let lost: Vec<&String> = acked.iter().filter(|h| !stored.contains(*h)).collect();
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged messages lost",
        lost.len(),
        acked.len()
    );
    child.kill().expect("kill");
    child.wait().expect("reaped");
}

#[tokio::test]
async fn sigterm_drains_and_exits_zero() {
    let dir = tempfile::tempdir().expect("tempdir");
    init(dir.path());
    let mut child = start(dir.path());
    let addr = https_addr(dir.path(), child.id()).await;
    rpc_json(&client(), &addr, "info", serde_json::json!({})).await;
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let code = tokio::task::spawn_blocking(move || child.wait().expect("wait"))
        .await
        .expect("join");
    assert!(code.success(), "exit status {code:?}");
}

fn run_fails(dir: &Path, https_port: &str) -> String {
    let out = snode()
        .args([
            "run",
            "--bind-ip",
            "127.0.0.1",
            "--https-port",
            https_port,
            "--quic-port",
            "0",
            "--admin-listen",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(dir)
        .stdin(Stdio::null())
        .output()
        .expect("runs");
    assert!(!out.status.success(), "should fail");
    let err = String::from_utf8(out.stderr).expect("utf8");
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
    let segments: Vec<&str> = err.trim_end().split(": ").collect();
    let unique: std::collections::HashSet<&&str> = segments.iter().collect();
    assert_eq!(
        unique.len(),
        segments.len(),
        "a segment is said twice: {err}"
    );
    err
}

#[test]
fn bad_setups_fail_before_serving_with_one_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    // No key file.
    let err = run_fails(dir.path(), "0");
    assert!(err.contains("key_ed25519"), "{err}");

    init(dir.path());
    // init refuses to overwrite keys without --force.
    let out = snode()
        .args(["init", "--data-dir"])
        .arg(dir.path())
        .output()
        .expect("init");
    assert!(!out.status.success());
    // Unknown config key.
    std::fs::write(dir.path().join("node.toml"), "[network]\nhttps_prot = 5\n").expect("write");
    let err = run_fails(dir.path(), "0");
    assert!(err.contains("https_prot"), "{err}");
    // Malformed file.
    std::fs::write(dir.path().join("node.toml"), "[network\n").expect("write");
    let err = run_fails(dir.path(), "0");
    assert!(err.contains("node.toml"), "{err}");
    std::fs::write(dir.path().join("node.toml"), "").expect("write");
    // Busy port.
    let busy = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = busy.local_addr().expect("addr").port().to_string();
    let err = run_fails(dir.path(), &port);
    assert!(err.contains(&port), "{err}");

    // keys show prints the same keys init made.
    let out = snode()
        .args(["keys", "show", "--json", "--data-dir"])
        .arg(dir.path())
        .output()
        .expect("keys");
    assert!(out.status.success());
    let v: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["pubkey_ed25519"].as_str().expect("ed").len(), 64);
    assert_eq!(v["pubkey_x25519"].as_str().expect("x").len(), 64);
}
