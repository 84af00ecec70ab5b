//! The deploy/ files, checked without running a node: promtool accepts the Prometheus config,
//! the alert rules and their unit tests (structural checks where promtool is not installed);
//! the Grafana provisioning and the compose file fit together; the systemd units pass
//! `systemd-analyze verify` and, like the Dockerfile, have what operators expect.
//! (That the dashboard and alerts name only exported metrics is checked in `tests/ops.rs`,
//! against running nodes.)

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

fn deploy(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("deploy")
        .join(file)
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
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
        for key in [
            "expr: ",
            "for: ",
            "severity: ",
            "summary: ",
            "description: ",
        ] {
            assert!(rule.contains(key), "alert {name} lacks {key}");
        }
    }
    for needed in [
        "SnodeNotReady",
        "SnodeUnreachableByPeers",
        "SnodeReplicationQueueGrowing",
        "SnodeStoreNearCap",
    ] {
        assert!(
            rules.iter().any(|r| r.starts_with(needed)),
            "no alert {needed}"
        );
    }
    let prom = read(&deploy("prometheus.yml"));
    for needed in [
        "rule_files:",
        "- alerts.yml",
        "job_name: snode",
        "metrics_path: /metrics",
    ] {
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
        let out = Command::new(&promtool)
            .args(args)
            .current_dir(deploy(""))
            .output()
            .expect("promtool runs");
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
    let dashboard: Value =
        serde_json::from_str(&read(&deploy("grafana/dashboards/snode.json"))).expect("JSON");
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
            assert!(
                compose.contains(&format!("\n  {service}:\n")),
                "no service {service}"
            );
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
    assert!(
        stop >= snode::config::DEFAULT_SHUTDOWN_GRACE.as_secs() * 3,
        "TimeoutStopSec={stop}"
    );
    let directory = read(&deploy("directory.service"));
    assert!(directory.contains("ExecStart=/usr/local/bin/snode directory"));
    assert!(directory.contains("StateDirectory=snode-directory"));

    // systemd's own parser, where installed (the binary path swapped for the test build).
    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        let tmp = tempfile::tempdir().expect("tempdir");
        for (name, text) in [
            ("snode.service", &unit),
            ("snode-directory.service", &directory),
        ] {
            let path = tmp.path().join(name);
            std::fs::write(
                &path,
                text.replace("/usr/local/bin/snode", env!("CARGO_BIN_EXE_snode")),
            )
            .expect("write");
            let out = Command::new("systemd-analyze")
                .arg("verify")
                .arg(&path)
                .output()
                .expect("verify");
            let said = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(
                out.status.success() && !said.contains("Unknown"),
                "{name}: {said}"
            );
        }
    }

    let docker = read(&deploy("Dockerfile"));
    assert!(docker.matches("\nFROM ").count() >= 2, "multi-stage");
    assert!(docker.contains("\nUSER snode\n"), "runs as non-root");
    assert!(docker.contains("VOLUME [\"/var/lib/snode\"]"));
    assert!(docker.contains("HEALTHCHECK") && docker.contains("/health"));
    let entry = deploy("docker-entrypoint.sh");
    let out = Command::new("sh")
        .arg("-n")
        .arg(&entry)
        .output()
        .expect("sh");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
