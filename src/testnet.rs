//! `snode testnet`: a directory plus N node processes on 127.0.0.1, in one command.
//!
//! Owns laying out the test network's directories (each node gets its own data dir with keys,
//! certificate and a complete `node.toml`, so `snode run --data-dir <dir>` restarts one node
//! alone), starting and stopping the processes, and the `testnet.json` manifest. It is a
//! command-level orchestrator: errors are `anyhow`, like `cli`.

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context as _, bail};
use serde_json::json;

use crate::config::Config;
use crate::directory::DirectoryLimits;
use crate::directory::client::DirectoryClient;
use crate::directory::server::{DirectoryConfig, DirectoryHandle, serve};
use crate::directory::state::Admission;
use crate::keys::NodeKeys;
use crate::node::KEY_FILE;

/// How long the testnet waits for every node to register and be ready.
const START_DEADLINE: Duration = Duration::from_secs(180);
/// A node of a test network whose peers cannot reach it for this long is decommissioned:
/// short, so failure handling is visible in minutes, not hours.
pub const TESTNET_DECOMMISSION_AFTER: Duration = Duration::from_secs(30);
/// How long stopping nodes may take before they are killed.
const STOP_DEADLINE: Duration = Duration::from_secs(20);

/// What `snode testnet` was asked for.
pub struct TestnetOptions {
    /// Number of nodes.
    pub nodes: usize,
    /// Directory holding everything.
    pub dir: PathBuf,
    /// The `snode` binary to start nodes with (normally the running one).
    pub bin: PathBuf,
}

/// A started test network.
pub struct Testnet {
    directory: DirectoryHandle,
    /// `testnet.json`: read again at stop time for nodes restarted by other tools.
    manifest_path: PathBuf,
    /// Whether this network wrote `manifest_path` (an older file is none of its business).
    manifest_written: bool,
    directory_client: Option<DirectoryClient>,
    children: Vec<Child>,
    manifest: serde_json::Value,
}

/// A free TCP port on loopback (bound then released: a small race, acceptable for a dev tool).
fn free_port() -> anyhow::Result<u16> {
    let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("cannot find a free port")?;
    Ok(l.local_addr()?.port())
}

/// A free UDP port on loopback (same small race as [`free_port`]).
fn free_udp_port() -> anyhow::Result<u16> {
    let s = std::net::UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))
        .context("cannot find a free UDP port")?;
    Ok(s.local_addr()?.port())
}

/// The configuration of one test-network node: loopback, short intervals, no rate limit for
/// loopback clients (every client of a local network is 127.0.0.1).
pub fn node_config(
    directory_url: &str,
    https_port: u16,
    quic_port: u16,
    admin_port: u16,
) -> Config {
    let mut c = Config::default();
    c.network.bind_ip = Ipv4Addr::LOCALHOST.into();
    c.network.https_port = https_port;
    c.network.quic_port = quic_port;
    c.network.directory = directory_url.to_string();
    c.network.testnet = true;
    c.admin.listen = SocketAddr::from((Ipv4Addr::LOCALHOST, admin_port));
    c.rate_limit.exempt_loopback = true;
    // Every client and peer of a local network is 127.0.0.1: one IP, many connections.
    c.quic.max_connections_per_ip = c.quic.max_connections;
    // Every target of a local network is on 127.0.0.1.
    c.onion.allow_private_targets = true;
    c.storage.max_bytes = 1024 * 1024 * 1024;
    c.network.membership_poll_interval = Duration::from_millis(500);
    c.network.announce_interval = Duration::from_secs(10);
    c.network.ping_interval = Duration::from_secs(1);
    tune_for_testnet(&mut c);
    c
}

/// Runtime workers of each of `nodes` nodes sharing `cores` cores: the cores shared out,
/// at least one. Ten nodes of two workers each on two cores spent a third of a 3-hop onion
/// request's CPU on wake-ups across threads (BENCHMARKS.md "Runtime threads").
pub fn worker_threads_per_node(nodes: usize, cores: usize) -> usize {
    (cores / nodes.max(1)).max(1)
}

/// Replication timing of a local network: failures show and heal in seconds.
pub fn tune_for_testnet(c: &mut Config) {
    c.replication.retry_max_backoff = Duration::from_secs(2);
    c.replication.anti_entropy_interval = Duration::from_secs(5);
    c.replication.handoff_interval = Duration::from_secs(2);
}

/// Creates `dir` with keys and certificate when it is new; returns the node's keys.
fn prepare_node_dir(dir: &Path) -> anyhow::Result<NodeKeys> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let key_path = dir.join(KEY_FILE);
    if key_path.exists() {
        return Ok(NodeKeys::load(&key_path)?);
    }
    let keys = NodeKeys::generate();
    keys.write(&key_path, false)?;
    crate::tls::ensure_certificate(dir, &keys, false)?;
    Ok(keys)
}

impl Testnet {
    /// Starts the directory and the nodes, and waits until every node is registered and ready.
    pub async fn start(opts: &TestnetOptions) -> anyhow::Result<Testnet> {
        if opts.nodes == 0 {
            bail!("a test network needs at least one node");
        }
        std::fs::create_dir_all(&opts.dir)
            .with_context(|| format!("cannot create {}", opts.dir.display()))?;
        let mut all_keys = Vec::with_capacity(opts.nodes);
        for i in 0..opts.nodes {
            all_keys.push(prepare_node_dir(&opts.dir.join(format!("node-{i}")))?);
        }
        // Admission is the allow-list of the nodes made here rather than `--open`: the
        // directory listens on 127.0.0.1, where any local process (or a page in a browser)
        // could otherwise join the network; a node restarted with `snode run` keeps its key.
        // An ad-hoc local network that needs other nodes runs `snode directory --open
        // --allow-private-addresses` itself. Its nodes are on 127.0.0.1 (private addresses
        // allowed) and share one source address (limits sized for that).
        let directory = serve(DirectoryConfig {
            decommission_after: TESTNET_DECOMMISSION_AFTER,
            allow_private_addresses: true,
            limits: DirectoryLimits::testnet(),
            ..DirectoryConfig::new(
                opts.dir.join("directory"),
                SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
                Admission::AllowList(all_keys.iter().map(NodeKeys::pubkey_ed25519).collect()),
            )
        })
        .await
        .context("cannot start the directory")?;
        let url = format!("http://{}", directory.addr());

        let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
        let mut children = Vec::new();
        let mut nodes = Vec::new();
        for (i, keys) in all_keys.iter().enumerate() {
            let dir = opts.dir.join(format!("node-{i}"));
            let (https_port, quic_port, admin_port) =
                (free_port()?, free_udp_port()?, free_port()?);
            let mut cfg = node_config(&url, https_port, quic_port, admin_port);
            cfg.runtime.worker_threads = worker_threads_per_node(all_keys.len(), cores);
            std::fs::write(dir.join("node.toml"), cfg.to_toml())
                .with_context(|| format!("cannot write {}", dir.join("node.toml").display()))?;
            let log = std::fs::File::create(dir.join("snode.log"))
                .with_context(|| format!("cannot create {}", dir.join("snode.log").display()))?;
            let child = Command::new(&opts.bin)
                .arg("run")
                .arg("--data-dir")
                .arg(&dir)
                .stdin(Stdio::null())
                .stdout(log.try_clone()?)
                .stderr(log)
                .spawn()
                .with_context(|| format!("cannot start {}", opts.bin.display()))?;
            nodes.push(json!({
                "pubkey_ed25519": hex::encode(keys.pubkey_ed25519()),
                "pubkey_x25519": hex::encode(keys.pubkey_x25519()),
                "https_port": https_port,
                "quic_port": quic_port,
                "admin_port": admin_port,
                "data_dir": dir,
                "pid": child.id(),
            }));
            children.push(child);
        }
        let manifest = json!({"directory_url": url, "nodes": nodes});
        let mut net = Testnet {
            manifest_path: opts.dir.join("testnet.json"),
            manifest_written: false,
            directory_client: DirectoryClient::new(&url).ok(),
            directory,
            children,
            manifest,
        };
        if let Err(e) = net.wait_ready().await {
            net.stop().await;
            return Err(e);
        }
        let path = &net.manifest_path;
        std::fs::write(path, serde_json::to_string_pretty(&net.manifest)?)
            .with_context(|| format!("cannot write {}", path.display()))?;
        net.manifest_written = true;
        Ok(net)
    }

    /// The manifest written to `testnet.json`.
    pub fn manifest(&self) -> &serde_json::Value {
        &self.manifest
    }

    async fn wait_ready(&mut self) -> anyhow::Result<()> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()?;
        let deadline = tokio::time::Instant::now() + START_DEADLINE;
        let nodes = self.manifest["nodes"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        loop {
            for (i, child) in self.children.iter_mut().enumerate() {
                if let Some(status) = child.try_wait()? {
                    bail!("node-{i} exited during start-up ({status}); see its snode.log");
                }
            }
            let listing = match &self.directory_client {
                Some(dc) => dc.get_service_nodes(None).await.ok().flatten(),
                None => None,
            };
            let (registered, height) = listing.map_or((0, 0), |m| (m.nodes.len(), m.height));
            // Ready means serving *and* acting on the directory's current membership, so the
            // first store after start-up reaches every member of its swarm.
            let mut ready = 0;
            for n in &nodes {
                let url = format!("http://127.0.0.1:{}/status", n["admin_port"]);
                let Ok(r) = http.get(url).send().await else {
                    continue;
                };
                let Ok(v) = r.json::<serde_json::Value>().await else {
                    continue;
                };
                if v["ready"] == json!(true) && v["network"]["height"] == json!(height) {
                    ready += 1;
                }
            }
            if registered == nodes.len() && ready == nodes.len() {
                return Ok(());
            }
            if tokio::time::Instant::now() > deadline {
                bail!(
                    "test network not ready after {START_DEADLINE:?}: {registered} of {} registered, {ready} ready",
                    nodes.len()
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// A short human summary: directory, swarms and members, how to use it.
    pub async fn summary(&self) -> String {
        let m = match &self.directory_client {
            Some(dc) => dc
                .get_service_nodes(None)
                .await
                .ok()
                .flatten()
                .unwrap_or_default(),
            None => Default::default(),
        };
        let mut s = format!(
            "snode testnet: {} nodes\n  directory: {}\n",
            m.nodes.len(),
            self.manifest["directory_url"].as_str().unwrap_or_default()
        );
        for (id, members) in m.swarms() {
            s.push_str(&format!("  swarm {:016x}:", id.0));
            for n in members {
                s.push_str(&format!(
                    " {}…@{}",
                    &hex::encode(n.pubkey_ed25519)[..8],
                    n.https_port
                ));
            }
            s.push('\n');
        }
        s.push_str(
            "  clients: point them at the directory (get_n_service_nodes), any node's QUIC\n  \
             port (quic_port in the manifest, ALPN oxenstorage, the node's Ed25519 key) or\n  \
             https://127.0.0.1:<port>/storage_rpc/v1 (self-signed certificate);\n  \
             the manifest is testnet.json. Ctrl-C stops every node.\n",
        );
        s
    }

    /// Sends SIGTERM to every node, waits for them (killing stragglers), stops the directory.
    /// Nodes restarted by another tool (`snode bench --mode soak`) are found by the pid
    /// `testnet.json` lists at this time, and stopped the same way.
    pub async fn stop(mut self) {
        let restarted = self.restarted_nodes();
        for pid in self
            .children
            .iter()
            .map(Child::id)
            .chain(restarted.iter().copied())
        {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(pid.to_string())
                .status();
        }
        let deadline = tokio::time::Instant::now() + STOP_DEADLINE;
        for pid in restarted {
            while !gone(pid) {
                if tokio::time::Instant::now() > deadline {
                    let _ = Command::new("kill")
                        .arg("-KILL")
                        .arg(pid.to_string())
                        .status();
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        for child in &mut self.children {
            loop {
                match child.try_wait() {
                    Ok(Some(_)) | Err(_) => break,
                    Ok(None) if tokio::time::Instant::now() > deadline => {
                        let _ = child.kill();
                        let _ = child.wait();
                        break;
                    }
                    Ok(None) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        }
        self.directory.shutdown().await;
    }

    /// Pids in `testnet.json` now that are not our children but are `snode run` on one of
    /// our nodes' data directories (never a reused pid of another program).
    fn restarted_nodes(&self) -> Vec<u32> {
        let ours: Vec<u32> = self.children.iter().map(Child::id).collect();
        if !self.manifest_written {
            return Vec::new();
        }
        let Ok(text) = std::fs::read_to_string(&self.manifest_path) else {
            return Vec::new();
        };
        let Ok(manifest) = serde_json::from_str::<serde_json::Value>(&text) else {
            return Vec::new();
        };
        manifest["nodes"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|n| {
                let pid = u32::try_from(n["pid"].as_u64()?).ok()?;
                let dir = Path::new(n["data_dir"].as_str()?);
                (!ours.contains(&pid) && !gone(pid) && is_node_process(pid, dir)).then_some(pid)
            })
            .collect()
    }
}

/// Whether `pid` is `snode run` with `--data-dir` `data_dir`, spelt as in the manifest (so a
/// reused pid is never signalled).
pub fn is_node_process(pid: u32, data_dir: &Path) -> bool {
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
    let dir = data_dir.as_os_str().as_encoded_bytes();
    args.contains(&b"run".as_slice()) && args.contains(&dir)
}

/// Whether process `pid` has exited (no such process, or a zombie not yet reaped).
pub fn gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rfind(')')
            .and_then(|i| stat.get(i + 2..i + 3))
            .is_none_or(|state| state == "Z" || state == "X"),
        Err(_) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::worker_threads_per_node;

    #[test]
    fn nodes_share_the_cores_out_with_at_least_one_worker_each() {
        assert_eq!(worker_threads_per_node(10, 2), 1);
        assert_eq!(worker_threads_per_node(1, 8), 8);
        assert_eq!(worker_threads_per_node(3, 8), 2);
        assert_eq!(worker_threads_per_node(0, 4), 4);
    }
}
