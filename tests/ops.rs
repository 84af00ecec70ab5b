//! The operator's side of a real `snode run` process: systemd notifications on a notify socket
//! of the test's own, `snode status` against it, and the log policy at the default level.
//! (A network's view is tested in `tests/ops_network.rs`, the deploy/ files on their own in
//! `tests/ops_files.rs`.)

mod common;

use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;
use serde_json::{Value, json};
use snode::status::StatusReport;

fn snode() -> Command {
    common::snode_bin()
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn init(dir: &Path) {
    common::cli_init(dir);
}

/// A `snode run` process, killed if a test fails before stopping it.
struct Running(Child);

impl Running {
    fn id(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// `snode run` on loopback, port 0 everywhere, with `envs` and stderr to `log`.
fn run(dir: &Path, envs: &[(&str, &str)], extra: &[&str], log: &Path) -> Running {
    let mut cmd = snode();
    cmd.args([
        "run",
        "--bind-ip",
        "127.0.0.1",
        "--https-port",
        "0",
        "--quic-port",
        "0",
        "--admin-listen",
        "127.0.0.1:0",
    ])
    .args(extra)
    .arg("--data-dir")
    .arg(dir)
    .env_remove("RUST_LOG")
    .env_remove("NOTIFY_SOCKET")
    .env_remove("WATCHDOG_USEC")
    .env_remove("WATCHDOG_PID")
    .stdin(Stdio::null())
    .stderr(Stdio::from(std::fs::File::create(log).expect("log file")));
    for (k, v) in envs {
        cmd.env(k, v);
    }
    Running(cmd.spawn().expect("snode run starts"))
}

/// The run file of process `pid`, once written.
fn run_file(dir: &Path, pid: u32) -> Value {
    wait_for_blocking(
        &format!("the run file of pid {pid}"),
        Duration::from_secs(60),
        || {
            let text = std::fs::read_to_string(dir.join("snode.run.json")).ok()?;
            let v = serde_json::from_str::<Value>(&text).ok()?;
            (v["pid"].as_u64() == Some(u64::from(pid))).then_some(v)
        },
    )
}

fn sigterm(child: &mut Running) {
    let ok = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(ok.success());
    let status = child.0.wait().expect("wait");
    assert!(status.success(), "exit status {status:?}");
}

#[test]
fn a_supervised_node_sends_ready_status_watchdog_and_stopping() {
    let dir = tempfile::tempdir().expect("tempdir");
    init(dir.path());
    let sock_path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).expect("bind notify socket");
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    let mut child = run(
        dir.path(),
        &[
            ("NOTIFY_SOCKET", sock_path.to_str().expect("utf8 path")),
            // A 400 ms watchdog: WATCHDOG=1 every 200 ms.
            ("WATCHDOG_USEC", "400000"),
        ],
        &[],
        &dir.path().join("log"),
    );

    let mut got: Vec<String> = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    let has = |got: &[String], p: &str| got.iter().any(|l| l.starts_with(p));
    // Each poll blocks up to the socket's 200 ms read timeout, so no extra pause between polls.
    let started = poll_until_blocking(Duration::ZERO, Duration::from_secs(60), || {
        if let Ok(n) = sock.recv(&mut buf) {
            let text = String::from_utf8(buf[..n].to_vec()).expect("utf8 datagram");
            got.extend(text.lines().map(str::to_string));
        }
        (has(&got, "READY=1")
            && has(&got, "STATUS=")
            && got.iter().filter(|l| *l == "WATCHDOG=1").count() >= 2)
            .then_some(())
    });
    assert!(started.is_some(), "notifications so far: {got:?}");
    assert_eq!(
        got.iter().filter(|l| *l == "READY=1").count(),
        1,
        "READY=1 once: {got:?}"
    );
    let status = got
        .iter()
        .find(|l| l.starts_with("STATUS="))
        .expect("status");
    // A one-node network: swarm 0 of one member, nothing stored yet.
    assert!(status.starts_with("STATUS=v2.8.0 (snode "), "{status}");
    assert!(
        status
            .contains("; sw=0000…000(n=1); 0 msgs (0B) for 0 users; reqs(S/R/O/P): 0/0/0/0 (last "),
        "{status}"
    );

    // SIGTERM: STOPPING=1, then a clean exit.
    let ok = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(ok.success());
    let stopping = poll_until_blocking(Duration::ZERO, Duration::from_secs(30), || {
        if let Ok(n) = sock.recv(&mut buf) {
            got.extend(
                String::from_utf8_lossy(&buf[..n])
                    .lines()
                    .map(str::to_string),
            );
        }
        got.iter().any(|l| l == "STOPPING=1").then_some(())
    });
    assert!(stopping.is_some(), "no STOPPING=1: {got:?}");
    assert!(child.0.wait().expect("wait").success());
}

#[test]
fn without_notify_socket_nothing_is_sent_and_the_node_runs() {
    // A socket nobody names: the node must not find it, and must run normally.
    let dir = tempfile::tempdir().expect("tempdir");
    init(dir.path());
    let sock = UnixDatagram::bind(dir.path().join("notify.sock")).expect("bind");
    sock.set_nonblocking(true).expect("nonblocking");
    let mut child = run(
        dir.path(),
        &[("WATCHDOG_USEC", "400000")],
        &[],
        &dir.path().join("log"),
    );
    run_file(dir.path(), child.id());
    // Not a wait for anything: the window in which nothing may arrive.
    std::thread::sleep(Duration::from_millis(600));
    let mut buf = [0u8; 1024];
    assert!(sock.recv(&mut buf).is_err(), "nothing may arrive");
    sigterm(&mut child);
}

#[tokio::test]
async fn snode_status_reports_a_running_node_and_logs_stay_quiet() {
    let dir = tempfile::tempdir().expect("tempdir");
    init(dir.path());
    let log = dir.path().join("log.json");
    let mut child = run(dir.path(), &[], &["--log-format", "json"], &log);
    let rf = run_file(dir.path(), child.id());
    let addr = format!("127.0.0.1:{}", rf["https_port"]);
    let admin = rf["admin_addr"]
        .as_str()
        .expect("run file names the admin listener")
        .to_string();

    // Twenty requests of each kind: none may add a log line at the default level.
    let c = client();
    let carol = User::new(71);
    for i in 0..20 {
        let body = format!("secret body {i}");
        rpc_json(
            &c,
            &addr,
            "store",
            carol.store_params(body.as_bytes(), 600_000),
        )
        .await;
        rpc_json(&c, &addr, "retrieve", carol.retrieve_params(None)).await;
    }
    let (status, _) = rpc(
        &c,
        &addr,
        "store",
        json!({"pubkey": carol.session_id, "ttl": 1}),
    )
    .await;
    assert_ne!(status, 200);
    let resp = c
        .post(format!("https://{addr}/ping_test/v1"))
        .send()
        .await
        .expect("ping");
    assert_eq!(resp.status().as_u16(), 200);

    let out = snode()
        .args(["status", "--data-dir"])
        .arg(dir.path())
        .output()
        .expect("status");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let page = String::from_utf8(out.stdout).expect("utf8");
    for want in [
        "state        ready",
        "one-node network (no directory)",
        "store        20 msgs",
        "for 1 users",
        "requests     last ",
        ": 21 store, 20 retrieve, 0 onion, 0 proxy",
        "last test ",
    ] {
        assert!(page.contains(want), "missing {want:?} in:\n{page}");
    }

    let out = snode()
        .args(["status", "--json", "--admin", &admin])
        .output()
        .expect("status");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: StatusReport = serde_json::from_slice(&out.stdout).expect("a status report");
    assert!(r.ready);
    assert_eq!(r.not_ready, None);
    assert!(!r.network.directory);
    assert_eq!(r.swarm.as_ref().map(|s| s.members), Some(1));
    assert_eq!(r.store.messages, 20);
    assert_eq!(r.store.accounts, 1);
    assert_eq!(r.store.max_bytes, snode::config::DEFAULT_MAX_STORE_BYTES);
    assert_eq!(
        (r.requests.total.store, r.requests.total.retrieve),
        (21, 20)
    );
    assert_eq!(r.reachability.ping_tests.count, 1);
    assert_eq!(
        r.reachability.reached_by_peers, None,
        "nobody tests a one-node network"
    );
    // The admin listener serves the same report.
    let v: Value = c
        .get(format!("http://{admin}/status"))
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    assert_eq!(
        v["pubkey_ed25519"].as_str(),
        Some(r.pubkey_ed25519.as_str())
    );

    // Off the runtime: the client's connections must keep answering (h2 GOAWAY/PING) while
    // the node drains them, or the drain would wait for its whole grace period.
    tokio::task::spawn_blocking(move || sigterm(&mut child))
        .await
        .expect("sigterm");

    // The log: JSON lines, lifecycle events only, nothing about the account or its messages.
    let text = read(&log);
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let messages: Vec<&str> = lines
        .iter()
        .filter_map(|l| l["fields"]["message"].as_str())
        .collect();
    assert!(
        lines.len() <= 8,
        "one line per lifecycle event, not per request:\n{text}"
    );
    for want in [
        "node started",
        "node ready: serving clients",
        "shutting down",
        "node stopped",
    ] {
        assert!(messages.contains(&want), "missing {want:?} in:\n{text}");
    }
    for l in &lines {
        assert_eq!(l["level"], "INFO", "a healthy node logs no warnings: {l}");
    }
    assert!(
        !text.contains(&carol.session_id[2..]),
        "an account pubkey was logged"
    );
    assert!(!text.contains("secret body"), "a message body was logged");
    // Only the node's own listeners may appear as addresses (in "node started").
    for l in &lines {
        let own = l["fields"]["message"] == "node started";
        assert!(
            own || !l.to_string().contains("127.0.0.1"),
            "an address was logged: {l}"
        );
    }

    // A stopped node: the stale run file leads nowhere, in one line.
    let out = snode()
        .args(["status", "--data-dir"])
        .arg(dir.path())
        .output()
        .expect("status");
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).expect("utf8");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.contains("did not answer"), "{err}");
    assert_eq!(
        err.matches("os error").count(),
        1,
        "the OS error once: {err}"
    );
    // A directory no node ever ran from.
    let empty = tempfile::tempdir().expect("tempdir");
    let out = snode()
        .args(["status", "--data-dir"])
        .arg(empty.path())
        .output()
        .expect("status");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("snode.run.json"));
}
