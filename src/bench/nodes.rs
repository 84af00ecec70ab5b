//! The test network's node processes as the soak mode handles them: their pids from
//! `testnet.json`, SIGKILL and restart (`snode run --data-dir`, output appended to the node's
//! `snode.log`, the new pid written back to `testnet.json`), and their resident memory.
//!
//! Owns process handling only; what to send and what to check is `soak`'s.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context as _, bail};
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::testnet::{gone, is_node_process};

/// How long a killed process may take to disappear, and a restarted one to serve HTTPS.
const KILL_DEADLINE: Duration = Duration::from_secs(15);
const SERVE_DEADLINE: Duration = Duration::from_secs(90);

/// One node of the manifest.
struct NodeProc {
    /// As the manifest and the node's command line spell it (maybe relative to `cwd`).
    data_dir: PathBuf,
    /// The working directory of the node's process, where a relative `data_dir` starts.
    cwd: Option<PathBuf>,
    https_port: u16,
    /// The process this tool started for the node (after its first restart).
    child: Option<tokio::process::Child>,
}

/// The nodes of a test network, with their current pids shared with the RSS sampler.
pub(super) struct Nodes {
    manifest_path: PathBuf,
    manifest: Value,
    bin: PathBuf,
    procs: Vec<NodeProc>,
    pids: Arc<Mutex<Vec<u32>>>,
}

impl Nodes {
    /// Reads `testnet.json`: every node needs `pid`, `data_dir` and `https_port`.
    pub(super) fn load(manifest_path: &Path, bin: &Path) -> anyhow::Result<Nodes> {
        let text = std::fs::read_to_string(manifest_path)
            .with_context(|| format!("cannot read {}", manifest_path.display()))?;
        let manifest: Value = serde_json::from_str(&text).context("testnet.json is not JSON")?;
        let mut procs = Vec::new();
        let mut pids = Vec::new();
        for (i, n) in manifest["nodes"]
            .as_array()
            .context("testnet.json has no nodes")?
            .iter()
            .enumerate()
        {
            let pid = n["pid"]
                .as_u64()
                .with_context(|| format!("node-{i}: no pid"))?;
            let data_dir = n["data_dir"]
                .as_str()
                .with_context(|| format!("node-{i}: no data_dir"))?;
            let https_port = n["https_port"]
                .as_u64()
                .and_then(|p| u16::try_from(p).ok())
                .with_context(|| format!("node-{i}: no https_port"))?;
            let pid = u32::try_from(pid).context("pid out of range")?;
            procs.push(NodeProc {
                data_dir: PathBuf::from(data_dir),
                // The restarted node runs where the original ran, with the same arguments, so
                // `snode testnet` recognises it at stop time (`testnet::is_node_process`).
                cwd: std::fs::read_link(format!("/proc/{pid}/cwd")).ok(),
                https_port,
                child: None,
            });
            pids.push(pid);
        }
        if procs.is_empty() {
            bail!("testnet.json lists no nodes");
        }
        Ok(Nodes {
            manifest_path: manifest_path.to_path_buf(),
            manifest,
            bin: bin.to_path_buf(),
            procs,
            pids: Arc::new(Mutex::new(pids)),
        })
    }

    /// Number of nodes.
    pub(super) fn len(&self) -> usize {
        self.procs.len()
    }

    /// The current pids, shared (the RSS sampler reads them while nodes restart).
    pub(super) fn pids(&self) -> Arc<Mutex<Vec<u32>>> {
        self.pids.clone()
    }

    fn pid(&self, i: usize) -> u32 {
        self.pids.lock().map(|p| p[i]).unwrap_or(0)
    }

    /// SIGKILLs node `i` and waits until its process is gone (or a zombie: its sockets and
    /// its store's lock are released then).
    pub(super) async fn kill(&mut self, i: usize) -> anyhow::Result<()> {
        let pid = self.pid(i);
        if let Some(child) = self.procs[i].child.as_mut() {
            // Ours: kill and reap it.
            child.start_kill().context("cannot kill the node")?;
            let _status = tokio::time::timeout(KILL_DEADLINE, child.wait())
                .await
                .context("the killed node did not exit")??;
            self.procs[i].child = None;
            return Ok(());
        }
        if !is_node_process(pid, &self.procs[i].data_dir) {
            bail!("node-{i}: pid {pid} is not that node's process");
        }
        let status = tokio::process::Command::new("kill")
            .arg("-KILL")
            .arg(pid.to_string())
            .status()
            .await
            .context("cannot run kill")?;
        if !status.success() {
            bail!("kill -KILL {pid} failed");
        }
        let deadline = Instant::now() + KILL_DEADLINE;
        while !gone(pid) {
            if Instant::now() > deadline {
                bail!("node-{i} (pid {pid}) did not exit after SIGKILL");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    }

    /// Starts node `i` again with `snode run --data-dir`, appending to its `snode.log`, and
    /// writes the new pid into `testnet.json`.
    pub(super) fn start(&mut self, i: usize) -> anyhow::Result<u32> {
        let node = &mut self.procs[i];
        let dir = match &node.cwd {
            Some(cwd) => cwd.join(&node.data_dir),
            None => node.data_dir.clone(),
        };
        let log_path = dir.join("snode.log");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .with_context(|| format!("cannot open {}", log_path.display()))?;
        let mut cmd = tokio::process::Command::new(&self.bin);
        if let Some(cwd) = &node.cwd {
            cmd.current_dir(cwd);
        }
        let child = cmd
            .arg("run")
            .arg("--data-dir")
            .arg(&node.data_dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("cannot start {}", self.bin.display()))?;
        let pid = child.id().context("the restarted node has no pid")?;
        node.child = Some(child);
        if let Ok(mut pids) = self.pids.lock() {
            pids[i] = pid;
        }
        self.manifest["nodes"][i]["pid"] = json!(pid);
        // Written then renamed, so a reader never sees half a file.
        let tmp = self.manifest_path.with_extension("json.tmp");
        std::fs::write(&tmp, serde_json::to_string_pretty(&self.manifest)?)
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        std::fs::rename(&tmp, &self.manifest_path)
            .with_context(|| format!("cannot write {}", self.manifest_path.display()))?;
        Ok(pid)
    }

    /// Polls node `i`'s HTTPS port with `info` until it answers 200.
    pub(super) async fn wait_serving(
        &mut self,
        i: usize,
        http: &reqwest::Client,
    ) -> anyhow::Result<()> {
        let url = format!(
            "https://127.0.0.1:{}/storage_rpc/v1",
            self.procs[i].https_port
        );
        let deadline = Instant::now() + SERVE_DEADLINE;
        loop {
            let answered = http
                .post(&url)
                .json(&json!({"method": "info", "params": {}}))
                .timeout(Duration::from_secs(2))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if answered {
                return Ok(());
            }
            if let Some(child) = self.procs[i].child.as_mut()
                && let Some(status) = child.try_wait()?
            {
                bail!("node-{i} exited after its restart ({status}); see its snode.log");
            }
            if Instant::now() > deadline {
                bail!("node-{i} does not serve HTTPS {SERVE_DEADLINE:?} after its restart");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Resident memory of `pid` in KiB (`VmRSS` of `/proc/<pid>/status`).
pub(super) fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_own_rss_and_state() {
        let me = std::process::id();
        assert!(rss_kib(me).expect("own VmRSS") > 0);
        assert!(!gone(me));
        assert!(gone(u32::MAX));
        assert!(!is_node_process(me, Path::new("/nonexistent-dir")));
    }
}
