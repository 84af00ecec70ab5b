//! The operator's side of snode, tested: systemd notifications from a real `snode run`,
//! `snode status`, the log policy, and the deploy/ files (dashboard and alerts name only
//! metrics a running node exports; promtool accepts the Prometheus files; the units and the
//! Dockerfile have what operators expect).

mod common;

use std::collections::BTreeSet;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::net::TestNet;
use common::*;
use serde_json::{Value, json};
use snode::status::StatusReport;

fn snode() -> Command {
    Command::new(env!("CARGO_BIN_EXE_snode"))
}

fn deploy(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy").join(file)
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn init(dir: &Path) {
    let out = snode().args(["init", "--data-dir"]).arg(dir).output().expect("init runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// `snode run` on loopback, port 0 everywhere, with `envs` and stderr to `log`.
fn run(dir: &Path, envs: &[(&str, &str)], extra: &[&str], log: &Path) -> Child {
    let mut cmd = snode();
    cmd.args(["run", "--bind-ip", "127.0.0.1", "--https-port", "0", "--admin-listen", "127.0.0.1:0"])
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
    cmd.spawn().expect("snode run starts")
}

/// The run file of process `pid`, once written.
fn run_file(dir: &Path, pid: u32) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(text) = std::fs::read_to_string(dir.join("snode.run.json")) {
            if let Ok(v) = serde_json::from_str::<Value>(&text) {
                if v["pid"].as_u64() == Some(u64::from(pid)) {
                    return v;
                }
            }
        }
        assert!(Instant::now() < deadline, "no run file from pid {pid}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn sigterm(child: &mut Child) {
    let ok = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().expect("kill");
    assert!(ok.success());
    let status = child.wait().expect("wait");
    assert!(status.success(), "exit status {status:?}");
}

#[test]
fn a_supervised_node_sends_ready_status_watchdog_and_stopping() {
    let dir = tempfile::tempdir().expect("tempdir");
    init(dir.path());
    let sock_path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).expect("bind notify socket");
    sock.set_read_timeout(Some(Duration::from_millis(200))).expect("timeout");
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
    let deadline = Instant::now() + Duration::from_secs(60);
    let has = |got: &[String], p: &str| got.iter().any(|l| l.starts_with(p));
    while !(has(&got, "READY=1") && has(&got, "STATUS=") && got.iter().filter(|l| *l == "WATCHDOG=1").count() >= 2) {
        assert!(Instant::now() < deadline, "notifications so far: {got:?}");
        if let Ok(n) = sock.recv(&mut buf) {
            let text = String::from_utf8(buf[..n].to_vec()).expect("utf8 datagram");
            got.extend(text.lines().map(str::to_string));
        }
    }
    assert_eq!(got.iter().filter(|l| *l == "READY=1").count(), 1, "READY=1 once: {got:?}");
    let status = got.iter().find(|l| l.starts_with("STATUS=")).expect("status");
    // A one-node network: swarm 0 of one member, nothing stored yet.
    assert!(status.starts_with("STATUS=v2.8.0 (snode "), "{status}");
    assert!(status.contains("; sw=0000…000(n=1); 0 msgs (0B) for 0 users; reqs(S/R/O/P): 0/0/0/0 (last "), "{status}");

    // SIGTERM: STOPPING=1, then a clean exit.
    let ok = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().expect("kill");
    assert!(ok.success());
    let deadline = Instant::now() + Duration::from_secs(30);
    while !got.iter().any(|l| l == "STOPPING=1") {
        assert!(Instant::now() < deadline, "no STOPPING=1: {got:?}");
        if let Ok(n) = sock.recv(&mut buf) {
            got.extend(String::from_utf8_lossy(&buf[..n]).lines().map(str::to_string));
        }
    }
    assert!(child.wait().expect("wait").success());
}

#[test]
fn without_notify_socket_nothing_is_sent_and_the_node_runs() {
    // A socket nobody names: the node must not find it, and must run normally.
    let dir = tempfile::tempdir().expect("tempdir");
    init(dir.path());
    let sock = UnixDatagram::bind(dir.path().join("notify.sock")).expect("bind");
    sock.set_nonblocking(true).expect("nonblocking");
    let mut child = run(dir.path(), &[("WATCHDOG_USEC", "400000")], &[], &dir.path().join("log"));
    run_file(dir.path(), child.id());
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
    let admin = rf["admin_addr"].as_str().expect("run file names the admin listener").to_string();

    // Twenty requests of each kind: none may add a log line at the default level.
    let c = client();
    let carol = User::new(71);
    for i in 0..20 {
        let body = format!("secret body {i}");
        rpc_json(&c, &addr, "store", carol.store_params(body.as_bytes(), 600_000)).await;
        rpc_json(&c, &addr, "retrieve", carol.retrieve_params(None)).await;
    }
    let (status, _) = rpc(&c, &addr, "store", json!({"pubkey": carol.session_id, "ttl": 1})).await;
    assert_ne!(status, 200);
    let resp = c.post(format!("https://{addr}/ping_test/v1")).send().await.expect("ping");
    assert_eq!(resp.status().as_u16(), 200);

    let out = snode().args(["status", "--data-dir"]).arg(dir.path()).output().expect("status");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let page = String::from_utf8(out.stdout).expect("utf8");
    for want in [
        "state        ready",
        "one-node network (no directory)",
        "store        20 msgs",
        "for 1 users",
        "requests     last ",
        ": 20 store, 20 retrieve, 0 onion, 0 proxy",
        "last test ",
    ] {
        assert!(page.contains(want), "missing {want:?} in:\n{page}");
    }

    let out = snode().args(["status", "--json", "--admin", &admin]).output().expect("status");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let r: StatusReport = serde_json::from_slice(&out.stdout).expect("a status report");
    assert!(r.ready);
    assert_eq!(r.not_ready, None);
    assert!(!r.network.directory);
    assert_eq!(r.swarm.as_ref().map(|s| s.members), Some(1));
    assert_eq!(r.store.messages, 20);
    assert_eq!(r.store.accounts, 1);
    assert_eq!(r.store.max_bytes, snode::config::DEFAULT_MAX_STORE_BYTES);
    assert_eq!((r.requests.total.store, r.requests.total.retrieve), (21, 20));
    assert_eq!(r.reachability.ping_tests.count, 1);
    assert_eq!(r.reachability.reached_by_peers, None, "nobody tests a one-node network");
    // The admin listener serves the same report.
    let v: Value = c.get(format!("http://{admin}/status")).send().await.expect("get").json().await.expect("json");
    assert_eq!(v["pubkey_ed25519"].as_str(), Some(r.pubkey_ed25519.as_str()));

    sigterm(&mut child);

    // The log: JSON lines, lifecycle events only, nothing about the account or its messages.
    let text = read(&log);
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let messages: Vec<&str> = lines.iter().filter_map(|l| l["fields"]["message"].as_str()).collect();
    assert!(lines.len() <= 8, "one line per lifecycle event, not per request:\n{text}");
    for want in ["node started", "node ready: serving clients", "shutting down", "node stopped"] {
        assert!(messages.contains(&want), "missing {want:?} in:\n{text}");
    }
    for l in &lines {
        assert_eq!(l["level"], "INFO", "a healthy node logs no warnings: {l}");
    }
    assert!(!text.contains(&carol.session_id[2..]), "an account pubkey was logged");
    assert!(!text.contains("secret body"), "a message body was logged");
    // Only the node's own listeners may appear as addresses (in "node started").
    for l in &lines {
        let own = l["fields"]["message"] == "node started";
        assert!(own || !l.to_string().contains("127.0.0.1"), "an address was logged: {l}");
    }

    // A stopped node: the stale run file leads nowhere, in one line.
    let out = snode().args(["status", "--data-dir"]).arg(dir.path()).output().expect("status");
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).expect("utf8");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.contains("did not answer"), "{err}");
    // A directory no node ever ran from.
    let empty = tempfile::tempdir().expect("tempdir");
    let out = snode().args(["status", "--data-dir"]).arg(empty.path()).output().expect("status");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("snode.run.json"));
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
    let dashboard: Value =
        serde_json::from_str(&read(&deploy("grafana/dashboards/snode.json"))).expect("dashboard is JSON");
    let mut exprs = Vec::new();
    exprs_in_json(&dashboard, &mut exprs);
    assert!(exprs.len() >= 20, "the dashboard has its queries: {}", exprs.len());
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
        assert!(used.contains(must), "deploy/ should chart or alert on {must}: {used:?}");
    }

    // Two nodes of one swarm, so writes are forwarded (and, with the peer cut off, retried).
    let net = TestNet::start(2).await;
    net.wait_converged().await;
    let c = client();
    let admin = net.node(0).admin_addr();
    let dave = User::new(72);
    rpc_json(&c, &net.addr(0), "store", dave.store_params(b"to both", 600_000)).await;
    let (status, _) = rpc(&c, &net.addr(0), "store", dave.store_params(b"ttl too long", 40 * 86_400_000)).await;
    assert_eq!(status, 403);
    let resp = c.post(format!("https://{}/onion_req/v2", net.addr(0))).body("not an onion").send().await.expect("onion");
    assert!(resp.status().is_client_error(), "{}", resp.status());
    net.partition(1);

    let mut missing = BTreeSet::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    for i in 0.. {
        // Writes while the peer is cut off fail to forward and queue for retry.
        let _ = rpc(&c, &net.addr(0), "store", dave.store_params(format!("while cut {i}").as_bytes(), 600_000)).await;
        let text = c.get(format!("http://{admin}/metrics")).send().await.expect("scrape").text().await.expect("body");
        let have = exported(&text);
        missing = used.difference(&have).cloned().collect();
        if missing.is_empty() || tokio::time::Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    net.heal();
    net.shutdown().await;
    assert!(missing.is_empty(), "deploy/ names metrics no running node exports: {missing:?}");
}

fn promtool() -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| Path::new(d).join("promtool"))
        .find(|p| p.is_file())
}

#[test]
fn prometheus_files_pass_promtool_or_at_least_a_structural_check() {
    // Structural checks, always: each rule has what an operator needs to act.
    let alerts = read(&deploy("alerts.yml"));
    assert!(alerts.contains("groups:\n"));
    let rules: Vec<&str> = alerts.split("- alert: ").skip(1).collect();
    assert!(rules.len() >= 5, "{} rules", rules.len());
    for rule in &rules {
        let name = rule.lines().next().unwrap_or_default();
        for key in ["expr: ", "for: ", "severity: ", "summary: ", "description: "] {
            assert!(rule.contains(key), "alert {name} lacks {key}");
        }
    }
    for needed in ["SnodeNotReady", "SnodeUnreachableByPeers", "SnodeReplicationQueueGrowing", "SnodeStoreNearCap"] {
        assert!(rules.iter().any(|r| r.starts_with(needed)), "no alert {needed}");
    }
    let prom = read(&deploy("prometheus.yml"));
    for needed in ["rule_files:", "- alerts.yml", "job_name: snode", "metrics_path: /metrics"] {
        assert!(prom.contains(needed), "prometheus.yml lacks {needed}");
    }

    let Some(promtool) = promtool() else {
        eprintln!("promtool not on PATH (Debian: prometheus package): structural checks only");
        return;
    };
    for args in [
        ["check", "config", "prometheus.yml"],
        ["check", "rules", "alerts.yml"],
        ["test", "rules", "alerts_test.yml"],
    ] {
        let out = Command::new(&promtool).args(args).current_dir(deploy("")).output().expect("promtool runs");
        assert!(
            out.status.success(),
            "promtool {args:?}:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn grafana_and_compose_fit_together() {
    let dashboard: Value = serde_json::from_str(&read(&deploy("grafana/dashboards/snode.json"))).expect("JSON");
    assert_eq!(dashboard["uid"], "snode");
    let panels = dashboard["panels"].as_array().expect("panels");
    let ids: BTreeSet<u64> = panels.iter().filter_map(|p| p["id"].as_u64()).collect();
    assert_eq!(ids.len(), panels.len(), "panel ids are unique");
    let provider = read(&deploy("grafana/provisioning/dashboards/snode.yml"));
    let datasource = read(&deploy("grafana/provisioning/datasources/prometheus.yml"));
    let compose = read(&deploy("compose.yaml"));
    assert!(provider.contains("path: /var/lib/grafana/dashboards"));
    assert!(compose.contains("./grafana/dashboards:/var/lib/grafana/dashboards:ro"));
    assert!(compose.contains("./grafana/provisioning:/etc/grafana/provisioning:ro"));
    assert!(compose.contains("./prometheus.yml:/etc/prometheus/prometheus.yml:ro"));
    assert!(compose.contains("./alerts.yml:/etc/prometheus/alerts.yml:ro"));
    assert!(datasource.contains("url: http://prometheus:9090"));
    // Every node Prometheus scrapes is a compose service.
    for line in read(&deploy("prometheus.yml")).lines() {
        if let Some(target) = line.trim().strip_prefix("- node-") {
            let service = format!("node-{}", target.split(':').next().unwrap_or_default());
            assert!(compose.contains(&format!("\n  {service}:\n")), "no service {service}");
        }
    }
}

#[test]
fn units_and_image_have_what_operators_expect() {
    let unit = read(&deploy("snode.service"));
    for needed in [
        "Type=notify",
        "WatchdogSec=",
        "ExecStart=/usr/local/bin/snode run --data-dir /var/lib/snode",
        "User=snode",
        "StateDirectory=snode",
        "LimitNOFILE=",
        "Restart=always",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "CapabilityBoundingSet=\n",
    ] {
        assert!(unit.contains(needed), "snode.service lacks {needed:?}");
    }
    // Stopping drains for up to network.shutdown_grace, then flushes: systemd must wait longer.
    let stop: u64 = unit
        .lines()
        .find_map(|l| l.strip_prefix("TimeoutStopSec="))
        .and_then(|v| v.trim_end_matches('s').parse().ok())
        .expect("TimeoutStopSec=<n>s");
    assert!(stop >= snode::config::DEFAULT_SHUTDOWN_GRACE.as_secs() * 3, "TimeoutStopSec={stop}");
    let directory = read(&deploy("directory.service"));
    assert!(directory.contains("ExecStart=/usr/local/bin/snode directory"));
    assert!(directory.contains("StateDirectory=snode-directory"));

    // systemd's own parser, where installed (the binary path swapped for the test build).
    if Command::new("systemd-analyze").arg("--version").output().is_ok_and(|o| o.status.success()) {
        let tmp = tempfile::tempdir().expect("tempdir");
        for (name, text) in [("snode.service", &unit), ("snode-directory.service", &directory)] {
            let path = tmp.path().join(name);
            std::fs::write(&path, text.replace("/usr/local/bin/snode", env!("CARGO_BIN_EXE_snode"))).expect("write");
            let out = Command::new("systemd-analyze").arg("verify").arg(&path).output().expect("verify");
            let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
            assert!(out.status.success() && !said.contains("Unknown"), "{name}: {said}");
        }
    }

    let docker = read(&deploy("Dockerfile"));
    assert!(docker.matches("\nFROM ").count() >= 2, "multi-stage");
    assert!(docker.contains("\nUSER snode\n"), "runs as non-root");
    assert!(docker.contains("VOLUME [\"/var/lib/snode\"]"));
    assert!(docker.contains("HEALTHCHECK") && docker.contains("/health"));
    let entry = deploy("docker-entrypoint.sh");
    let out = Command::new("sh").arg("-n").arg(&entry).output().expect("sh");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}
