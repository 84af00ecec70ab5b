//! Attacks on the directory (issue 8, "Who may join"), each performed over HTTP against a real
//! directory on 127.0.0.1 port 0 with a temporary data dir: in-process (`serve`) where the
//! library's configuration is the subject, the real `snode directory` process where the
//! command line is (default admission, `--allow-file` and SIGHUP, flag conflicts).
//!
//! Every test asserts the refusal and that the listing did not change because of it. Traffic
//! goes to loopback only: announcements may name other addresses, but the directory never
//! connects to an announced address, and these tests do not either.
#![allow(clippy::unwrap_used, missing_docs)] // tests: a panic is the failure report

mod common;

use common::{snode_bin, wait_for};
use serde_json::Value;
use snode::directory::{
    Admission, DirectoryClient, DirectoryConfig, DirectoryHandle, DirectoryLimits, Rate, serve,
    sign_announcement, sign_report,
};
use snode::keys::NodeKeys;
use snode::swarm::{Membership, NodeInfo, SwarmId};
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::Duration;

/// How long a condition may take before a test gives up.
const PATIENCE: Duration = Duration::from_secs(20);

/// A local-network directory (loopback addresses allowed, limits that the tests' bursts stay
/// within); `tweak` adjusts it for the attack at hand.
async fn start(dir: &Path, tweak: impl FnOnce(&mut DirectoryConfig)) -> DirectoryHandle {
    let mut cfg = DirectoryConfig {
        decommission_after: Duration::from_secs(3600),
        allow_private_addresses: true,
        limits: DirectoryLimits::testnet(),
        ..DirectoryConfig::new(
            dir.to_path_buf(),
            "127.0.0.1:0".parse().unwrap(),
            Admission::Open,
        )
    };
    tweak(&mut cfg);
    serve(cfg).await.unwrap()
}

fn info_at(ip: Ipv4Addr, port: u16) -> NodeInfo {
    NodeInfo {
        pubkey_ed25519: [0; 32],
        pubkey_x25519: [0; 32],
        ip,
        https_port: port,
        omq_port: 0,
        swarm_id: SwarmId::UNASSIGNED,
        version: [2, 8, 0],
    }
}

fn info(port: u16) -> NodeInfo {
    info_at(Ipv4Addr::LOCALHOST, port)
}

fn now_ms() -> i64 {
    common::now_ms()
}

/// An HTTP client whose connections come from `from` (any 127.x address is loopback).
fn http_from(from: Ipv4Addr) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(IpAddr::V4(from))
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// POSTs `body` to `url/path`; returns the status and the `error` text (empty on success).
async fn post(
    http: &reqwest::Client,
    url: &str,
    path: &str,
    body: &impl serde::Serialize,
) -> (u16, String) {
    let resp = http
        .post(format!("{url}{path}"))
        .json(body)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let v: Value = resp.json().await.unwrap_or(Value::Null);
    (status, v["error"].as_str().unwrap_or_default().to_string())
}

/// Registers `k` at `info`; status and error text.
async fn register(url: &str, k: &NodeKeys, info: &NodeInfo) -> (u16, String) {
    let ann = sign_announcement(k, info, now_ms());
    post(&reqwest::Client::new(), url, "/register", &ann).await
}

/// `by` reports on `target`; status and error text.
async fn report(url: &str, by: &NodeKeys, target: &NodeKeys, reachable: bool) -> (u16, String) {
    let r = sign_report(by, &target.pubkey_ed25519(), reachable, now_ms());
    post(&reqwest::Client::new(), url, "/report", &r).await
}

async fn listing(url: &str) -> Membership {
    DirectoryClient::new(url)
        .unwrap()
        .get_service_nodes(None)
        .await
        .unwrap()
        .unwrap()
}

/// Registers `n` fresh nodes on 127.0.0.1, ports `base`…, all accepted.
async fn register_many(url: &str, n: u16, base: u16) -> Vec<NodeKeys> {
    let mut keys = Vec::new();
    for i in 0..n {
        let k = NodeKeys::generate();
        let (status, why) = register(url, &k, &info(base + i)).await;
        assert_eq!(status, 200, "{why}");
        keys.push(k);
    }
    keys
}

// ---- the real `snode directory` process ----

/// A `snode directory` process with its stderr in a file (the log says where it listens).
struct DirectoryProcess {
    child: Child,
    log: std::path::PathBuf,
    url: String,
}

impl DirectoryProcess {
    /// Starts `snode directory --data-dir <dir>/state --listen 127.0.0.1:0 <args>` with `env`
    /// (and no `SNODE_*` from the test's own environment), and waits until it listens.
    async fn start(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> DirectoryProcess {
        let log = dir.join("directory.log");
        let mut cmd = snode_bin();
        cmd.arg("directory")
            .arg("--data-dir")
            .arg(dir.join("state"))
            .args(["--listen", "127.0.0.1:0"])
            .args(args)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap());
        for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("SNODE_")) {
            cmd.env_remove(k);
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().unwrap();
        let url = wait_for("the directory to listen", PATIENCE, || {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            let exited = child.try_wait().unwrap();
            assert!(exited.is_none(), "directory exited ({exited:?}): {text}");
            let found = text
                .lines()
                .find(|l| l.contains("directory listening"))
                .and_then(|l| l.split("addr=").nth(1))
                .and_then(|a| a.split_whitespace().next())
                .map(|a| format!("http://{a}"));
            async move { found }
        })
        .await;
        DirectoryProcess { child, log, url }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn signal(&self, sig: &str) {
        let ok = std::process::Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{sig}");
    }

    /// Waits until the log has `n` lines containing `what`.
    async fn wait_log(&self, what: &str, n: usize) -> String {
        wait_for(what, PATIENCE, || {
            let log = self.log();
            let seen = log.lines().filter(|l| l.contains(what)).count();
            async move { (seen >= n).then_some(log) }
        })
        .await
    }

    /// SIGTERM, and waits for the exit.
    async fn stop(mut self) {
        self.signal("TERM");
        let child = &mut self.child;
        wait_for("the directory to exit", PATIENCE, || {
            let done = child.try_wait().unwrap().is_some();
            async move { done.then_some(()) }
        })
        .await;
    }
}

impl Drop for DirectoryProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Attack: join a directory whose operator gave no admission flag.
#[tokio::test]
async fn without_an_admission_flag_no_unknown_node_joins() {
    let dir = tempfile::tempdir().unwrap();
    let d = DirectoryProcess::start(dir.path(), &[], &[]).await;
    // A valid, signed announcement at a public address, from a key nobody listed.
    let stranger = NodeKeys::generate();
    let (status, why) = register(&d.url, &stranger, &info_at(Ipv4Addr::new(8, 8, 8, 8), 443)).await;
    assert_eq!(status, 403, "{why}");
    assert!(why.contains("allow-list"), "{why}");
    let m = listing(&d.url).await;
    assert_eq!((m.height, m.nodes.len()), (0, 0));
    assert!(d.log().contains("allow-list is empty"), "{}", d.log());
    d.stop().await;

    // Open admission takes an explicit --open (here from the environment, as the unit files
    // set it), and loopback addresses their own flag.
    let dir = tempfile::tempdir().unwrap();
    let d = DirectoryProcess::start(
        dir.path(),
        &[],
        &[
            ("SNODE_DIRECTORY_OPEN", "true"),
            ("SNODE_DIRECTORY_ALLOW_PRIVATE_ADDRESSES", "1"),
        ],
    )
    .await;
    let (status, why) = register(&d.url, &stranger, &info(30_001)).await;
    assert_eq!(status, 200, "{why}");
    d.stop().await;
}

/// Attack: ask for open admission and an allow-list at once (which one would win?).
#[tokio::test]
async fn open_together_with_an_allow_list_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let key = hex::encode(NodeKeys::generate().pubkey_ed25519());
    let file = dir.path().join("allow");
    std::fs::write(&file, format!("{key}\n")).unwrap();
    let run = |args: Vec<String>, env: Option<(&str, &str)>| {
        let mut cmd = snode_bin();
        cmd.arg("directory")
            .arg("--data-dir")
            .arg(dir.path().join("state"))
            .args(["--listen", "127.0.0.1:0"])
            .args(args);
        for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("SNODE_")) {
            cmd.env_remove(k);
        }
        if let Some((k, v)) = env {
            cmd.env(k, v);
        }
        cmd.output().unwrap()
    };
    for (args, env) in [
        (vec!["--open".into(), "--allow".into(), key.clone()], None),
        (
            vec![
                "--open".into(),
                "--allow-file".into(),
                file.display().to_string(),
            ],
            None,
        ),
        (
            vec!["--allow-file".into(), file.display().to_string()],
            Some(("SNODE_DIRECTORY_OPEN", "true")),
        ),
    ] {
        let out = run(args.clone(), env);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains("cannot be used with"), "{args:?}: {err}");
    }
    // Nothing was started, so nothing was written.
    assert!(!dir.path().join("state").join("directory.json").exists());
}

/// Attack: join with a key the operator removed, or before it was added; and break the
/// allow-list with a bad edit.
#[tokio::test]
async fn the_allow_file_is_reread_on_sighup_and_a_bad_one_keeps_the_old_list() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b, c) = (
        NodeKeys::generate(),
        NodeKeys::generate(),
        NodeKeys::generate(),
    );
    let hex_of = |k: &NodeKeys| hex::encode(k.pubkey_ed25519());
    let file = dir.path().join("allow-list");
    std::fs::write(&file, format!("# operators\n{}  # alice\n", hex_of(&a))).unwrap();
    let d = DirectoryProcess::start(
        dir.path(),
        &[
            "--allow-file",
            file.to_str().unwrap(),
            "--allow-private-addresses",
        ],
        &[],
    )
    .await;
    assert_eq!(register(&d.url, &a, &info(30_001)).await.0, 200);
    let (status, why) = register(&d.url, &b, &info(30_002)).await;
    assert_eq!(status, 403, "{why}");
    assert_eq!(listing(&d.url).await.nodes.len(), 1);

    // The operator adds b and reloads.
    std::fs::write(&file, format!("{}\n{}\n", hex_of(&a), hex_of(&b))).unwrap();
    d.signal("HUP");
    let log = d.wait_log("allow-list re-read", 1).await;
    assert!(log.contains("keys=2"), "{log}");
    assert_eq!(register(&d.url, &b, &info(30_002)).await.0, 200);

    // A bad edit (c added, then a broken line): the old list stays, the log says why.
    std::fs::write(
        &file,
        format!("{}\n{}\nnot-a-key\n", hex_of(&a), hex_of(&c)),
    )
    .unwrap();
    d.signal("HUP");
    let log = d.wait_log("keeping the previous one", 1).await;
    assert!(log.contains("line 3"), "{log}");
    assert_eq!(register(&d.url, &c, &info(30_003)).await.0, 403);
    // A file that disappeared, likewise.
    std::fs::remove_file(&file).unwrap();
    d.signal("HUP");
    d.wait_log("keeping the previous one", 2).await;
    assert_eq!(register(&d.url, &c, &info(30_003)).await.0, 403);
    // The admitted ones re-announce as before.
    assert_eq!(register(&d.url, &a, &info(30_001)).await.0, 200);
    assert_eq!(register(&d.url, &b, &info(30_002)).await.0, 200);
    let m = listing(&d.url).await;
    assert_eq!((m.height, m.nodes.len()), (2, 2));
    // No log line holds a whole key.
    let log = d.log();
    for k in [&a, &b, &c] {
        assert!(!log.contains(&hex_of(k)), "{log}");
    }
    d.stop().await;
}

/// Attack: list the network's own loopback, LAN or metadata service as a node, so that every
/// client and node connects there.
#[tokio::test]
async fn non_public_addresses_are_refused_with_their_class() {
    let dir = tempfile::tempdir().unwrap();
    let d = start(dir.path(), |c| c.allow_private_addresses = false).await;
    let url = d.url();
    for (ip, class) in [
        ([127, 0, 0, 1], "loopback"),
        ([10, 0, 0, 1], "RFC 1918"),
        ([172, 16, 0, 1], "RFC 1918"),
        ([192, 168, 1, 1], "RFC 1918"),
        ([169, 254, 169, 254], "link-local"),
        ([100, 64, 0, 1], "CGNAT"),
        ([192, 0, 2, 1], "TEST-NET-1"),
        ([198, 51, 100, 1], "TEST-NET-2"),
        ([203, 0, 113, 1], "TEST-NET-3"),
        ([198, 18, 0, 1], "benchmarking"),
        ([240, 0, 0, 1], "reserved"),
        ([0, 1, 2, 3], "this network"),
    ] {
        let (status, why) = register(&url, &NodeKeys::generate(), &info_at(ip.into(), 443)).await;
        assert_eq!(status, 400, "{ip:?}: {why}");
        assert!(why.contains(class), "{ip:?}: {why}");
    }
    // Multicast, broadcast and unspecified are no unicast address at all: refused even on a
    // local network, with their class too.
    for (ip, class) in [
        ([224, 0, 0, 1], "multicast"),
        ([255, 255, 255, 255], "broadcast"),
        ([0, 0, 0, 0], "unspecified"),
    ] {
        let (status, why) = register(&url, &NodeKeys::generate(), &info_at(ip.into(), 443)).await;
        assert_eq!(status, 400, "{ip:?}");
        assert!(why.contains(class), "{ip:?}: {why}");
    }
    let m = listing(&url).await;
    assert_eq!((m.height, m.nodes.len()), (0, 0));
    // A known node cannot move to one either.
    let k = NodeKeys::generate();
    let public = info_at(Ipv4Addr::new(8, 8, 8, 8), 443);
    assert_eq!(register(&url, &k, &public).await.0, 200);
    let (status, why) = register(&url, &k, &info_at(Ipv4Addr::new(10, 1, 1, 1), 443)).await;
    assert_eq!(status, 400, "{why}");
    let m = listing(&url).await;
    assert_eq!(
        m.node(&k.pubkey_ed25519()).unwrap().ip,
        Ipv4Addr::new(8, 8, 8, 8)
    );
    d.shutdown().await;

    // With --allow-private-addresses (local networks), loopback is fine.
    let dir = tempfile::tempdir().unwrap();
    let d = start(dir.path(), |_| {}).await;
    assert_eq!(register(&d.url(), &k, &info(30_001)).await.0, 200);
    d.shutdown().await;
}

/// Attack: take over an active node's address with another key (clients would be sent to
/// whichever answers there, under two identities).
#[tokio::test]
async fn a_taken_endpoint_is_refused_while_its_holder_is_active() {
    let dir = tempfile::tempdir().unwrap();
    let d = start(dir.path(), |c| {
        c.decommission_after = Duration::from_millis(300);
    })
    .await;
    let url = d.url();
    let keys = register_many(&url, 3, 31_001).await;
    let holder = &keys[0];
    let before = listing(&url).await;

    let thief = NodeKeys::generate();
    let (status, why) = register(&url, &thief, &info(31_001)).await;
    assert_eq!(status, 409, "{why}");
    assert!(why.contains("public_ip and storage_port"), "{why}");
    // Nor may a listed node move onto it.
    let (status, _) = register(&url, &keys[1], &info(31_001)).await;
    assert_eq!(status, 409);
    assert_eq!(listing(&url).await, before);
    // The holder re-announcing itself is fine (and changes nothing).
    assert_eq!(register(&url, holder, &info(31_001)).await.0, 200);
    assert_eq!(listing(&url).await, before);

    // Once the holder is decommissioned, the endpoint is free.
    assert_eq!(report(&url, &keys[1], holder, false).await.0, 200);
    let t = holder.pubkey_ed25519();
    wait_for("decommission", PATIENCE, || {
        let url = url.clone();
        async move { (!listing(&url).await.is_active(&t)).then_some(()) }
    })
    .await;
    let (status, why) = register(&url, &thief, &info(31_001)).await;
    assert_eq!(status, 200, "{why}");
    d.shutdown().await;
}

/// Attack: flood `/register` and `/report` from one address; the directory's limits hold at
/// their defaults, and loopback is not exempt.
#[tokio::test]
async fn one_source_address_is_rate_limited_by_default() {
    let dir = tempfile::tempdir().unwrap();
    let d = start(dir.path(), |c| c.limits = DirectoryLimits::default()).await;
    let url = d.url();
    let flooder = http_from(Ipv4Addr::new(127, 0, 0, 2));
    let bystander = http_from(Ipv4Addr::new(127, 0, 0, 3));
    let junk = serde_json::json!({"not": "an announcement"});
    for path in ["/register", "/report"] {
        let mut limited = None;
        for i in 0..2_000 {
            let (status, why) = post(&flooder, &url, path, &junk).await;
            if status == 429 {
                limited = Some((i, why));
                break;
            }
            assert_eq!(status, 400, "{why}");
        }
        let (i, why) = limited.unwrap_or_else(|| panic!("{path}: 2000 requests, no 429"));
        assert!(i >= 10, "{path}: limited after only {i}");
        assert!(why.contains("too many"), "{why}");
        assert!(!why.contains("127.0.0.2"), "{why}");
        // Another address is not affected: it gets an answer to what it sent.
        assert_eq!(post(&bystander, &url, path, &junk).await.0, 400);
    }
    // A valid registration from the flooding address is refused too; from elsewhere it works.
    let k = NodeKeys::generate();
    let ann = sign_announcement(&k, &info(32_001), now_ms());
    assert_eq!(post(&flooder, &url, "/register", &ann).await.0, 429);
    assert_eq!(listing(&url).await.nodes.len(), 0);
    assert_eq!(post(&bystander, &url, "/register", &ann).await.0, 200);
    d.shutdown().await;
}

/// Attack: one node key hammers `/register` and `/report` (from addresses it rotates through).
#[tokio::test]
async fn one_node_key_is_rate_limited() {
    let dir = tempfile::tempdir().unwrap();
    let d = start(dir.path(), |c| {
        c.limits = DirectoryLimits {
            register_per_ip: None,
            register_per_key: Some(Rate::new(0.01, 3)),
            report_per_ip: None,
            report_per_key: Some(Rate::new(0.01, 3)),
        };
    })
    .await;
    let url = d.url();
    let keys = register_many(&url, 2, 33_001).await;
    let (noisy, quiet) = (&keys[0], &keys[1]);
    // Each from another source address: only the key ties them together.
    let mut statuses = Vec::new();
    for i in 0..5u8 {
        let http = http_from(Ipv4Addr::new(127, 0, 2, i + 1));
        let ann = sign_announcement(noisy, &info(33_001), now_ms());
        statuses.push(post(&http, &url, "/register", &ann).await.0);
    }
    // One token went on the registration above, two remain.
    assert_eq!(statuses, [200, 200, 429, 429, 429]);
    assert_eq!(register(&url, quiet, &info(33_002)).await.0, 200);

    // Reports forged in the noisy key's name fail their signature check and do not spend
    // its budget.
    for _ in 0..5 {
        let mut forged = sign_report(quiet, &quiet.pubkey_ed25519(), false, now_ms());
        forged.reporter = hex::encode(noisy.pubkey_ed25519());
        assert_eq!(
            post(&reqwest::Client::new(), &url, "/report", &forged)
                .await
                .0,
            400
        );
    }
    let mut statuses = Vec::new();
    for _ in 0..5 {
        statuses.push(report(&url, noisy, quiet, true).await.0);
    }
    assert_eq!(statuses, [200, 200, 200, 429, 429]);
    assert_eq!(report(&url, quiet, noisy, true).await.0, 200);
    let m = listing(&url).await;
    assert_eq!(m.nodes.len(), 2);
    d.shutdown().await;
}

/// Attack: register keys until the directory runs out of memory or disk.
#[tokio::test]
async fn the_registry_is_bounded_and_known_nodes_still_announce() {
    let dir = tempfile::tempdir().unwrap();
    let d = start(dir.path(), |c| c.max_nodes = 5).await;
    let url = d.url();
    let keys = register_many(&url, 5, 34_001).await;
    let before = listing(&url).await;
    for i in 0..3 {
        let (status, why) = register(&url, &NodeKeys::generate(), &info(34_100 + i)).await;
        assert_eq!(status, 503, "{why}");
        assert!(why.contains("maximum of 5"), "{why}");
    }
    assert_eq!(listing(&url).await, before);
    // Known nodes re-announce, and may move.
    assert_eq!(register(&url, &keys[0], &info(34_001)).await.0, 200);
    assert_eq!(register(&url, &keys[0], &info(34_200)).await.0, 200);
    assert_eq!(listing(&url).await.height, before.height + 1);
    d.shutdown().await;
}

/// Attack: make the directory rewrite its state file with every re-announcement (each node
/// re-announces every minute; each write is an fsync of the whole file).
#[tokio::test]
async fn a_timestamp_only_reannouncement_does_not_rewrite_the_state_file() {
    let dir = tempfile::tempdir().unwrap();
    let d = start(dir.path(), |_| {}).await;
    let url = d.url();
    let c = DirectoryClient::new(&url).unwrap();
    let keys = register_many(&url, 3, 35_001).await;
    let file = dir.path().join("directory.json");
    let contents = std::fs::read(&file).unwrap();
    let writes = d.state_writes();
    assert_eq!(writes, 3);
    for (i, k) in keys.iter().enumerate() {
        for later in 1..=3 {
            // Same data, newer timestamps (still inside the signature window).
            c.register_at(k, &info(35_001 + i as u16), now_ms() + later * 1_000)
                .await
                .unwrap();
        }
    }
    assert_eq!(d.state_writes(), writes);
    assert_eq!(std::fs::read(&file).unwrap(), contents);
    // A real change is written (newer than the re-announcements, or it would be stale).
    c.register_at(&keys[0], &info(35_100), now_ms() + 10_000)
        .await
        .unwrap();
    assert_eq!(d.state_writes(), writes + 1);
    assert_ne!(std::fs::read(&file).unwrap(), contents);
    d.shutdown().await;
}

/// Attack: a single listed node brings back a node that everyone else found dead.
#[tokio::test]
async fn one_reporter_cannot_recommission_a_node() {
    let dir = tempfile::tempdir().unwrap();
    let d = start(dir.path(), |c| {
        c.decommission_after = Duration::from_millis(300);
    })
    .await;
    let url = d.url();
    let keys = register_many(&url, 4, 36_001).await;
    let (liar, honest, other, dead) = (&keys[0], &keys[1], &keys[2], &keys[3]);
    let t = dead.pubkey_ed25519();
    assert_eq!(report(&url, honest, dead, false).await.0, 200);
    wait_for("decommission", PATIENCE, || {
        let url = url.clone();
        async move { (!listing(&url).await.is_active(&t)).then_some(()) }
    })
    .await;
    let decommissioned = listing(&url).await;

    for _ in 0..5 {
        let (status, why) = report(&url, liar, dead, true).await;
        assert_eq!(status, 200, "{why}");
    }
    assert_eq!(
        listing(&url).await,
        decommissioned,
        "one reporter brought it back"
    );

    // Two distinct reporters do.
    assert_eq!(report(&url, other, dead, true).await.0, 200);
    let m = listing(&url).await;
    assert!(m.is_active(&t));
    assert_eq!(m.height, decommissioned.height + 1);
    d.shutdown().await;
}

/// Attack: a single listed node keeps its dead accomplice listed by answering every failure
/// report of the others with a success.
#[tokio::test]
async fn one_reporter_cannot_keep_a_dead_node_listed() {
    let dir = tempfile::tempdir().unwrap();
    let d = start(dir.path(), |c| {
        c.decommission_after = Duration::from_millis(500);
    })
    .await;
    let url = d.url();
    let keys = register_many(&url, 4, 37_001).await;
    let (liar, b, c, dead) = (&keys[0], &keys[1], &keys[2], &keys[3]);
    let t = dead.pubkey_ed25519();
    let before = listing(&url).await;
    assert!(before.is_active(&t));
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        assert_eq!(report(&url, b, dead, false).await.0, 200);
        assert_eq!(report(&url, c, dead, false).await.0, 200);
        assert_eq!(report(&url, liar, dead, true).await.0, 200);
        if !listing(&url).await.is_active(&t) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the liar kept a dead node listed for {PATIENCE:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The others are untouched.
    let m = listing(&url).await;
    for k in [liar, b, c] {
        assert!(m.is_active(&k.pubkey_ed25519()));
    }
    d.shutdown().await;
}

/// The documented defaults of `snode directory` are the library's (README "The directory"),
/// and no admission flag means an empty allow-list, not open admission.
#[test]
fn cli_defaults_are_the_library_defaults() {
    use clap::Parser as _;
    let cli = snode::cli::Cli::try_parse_from(["snode", "directory", "--data-dir", "/nonexistent"])
        .unwrap();
    let snode::cli::Command::Directory(a) = cli.command else {
        panic!("not the directory command");
    };
    let limits = DirectoryLimits {
        register_per_ip: a.register_limit_ip.0,
        register_per_key: a.register_limit_key.0,
        report_per_ip: a.report_limit_ip.0,
        report_per_key: a.report_limit_key.0,
    };
    assert_eq!(limits, DirectoryLimits::default());
    assert_eq!(a.max_nodes, snode::directory::state::DEFAULT_MAX_NODES);
    assert!(!a.open && !a.allow_private_addresses && a.allow.is_empty() && a.allow_file.is_none());
}
