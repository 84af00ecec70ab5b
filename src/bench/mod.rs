//! `snode bench`: a load tool that drives a running test network (from its `testnet.json`)
//! and reports throughput, latency percentiles and the nodes' CPU time per request.
//!
//! Owns load generation and measurement only. CPU time is read from `/proc/<pid>/stat` of every
//! node process before and after the run, so it is the servers' cost, not the tool's. It is a
//! command-level tool: errors are `anyhow`, output goes to stdout, progress to stderr.
//!
//! This file holds the throughput modes and the request helpers every mode shares (accounts,
//! signed params, HTTPS and onion calls); `soak` the long mixed run with kills and its
//! final check; `nodes` the test network's processes (kill, restart, RSS).

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Context as _, bail};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::{Signer as _, SigningKey};
use serde_json::{Value, json};
use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::directory::client::DirectoryClient;
use crate::message::AccountId;
use crate::swarm::{Membership, NodeInfo};

mod nodes;
pub mod soak;

/// What to measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BenchMode {
    /// `store` requests straight to a member of the owning swarm (replicated to the swarm).
    Store,
    /// Signed `retrieve` requests of accounts filled first.
    Retrieve,
    /// `store` through 3-hop onion paths (aes-gcm), as Session clients send it.
    OnionStore,
    /// Signed `retrieve` through 3-hop onion paths.
    OnionRetrieve,
    /// `store` straight to a member of the owning swarm over QUIC (one held connection per
    /// node and worker, as libsession holds its connections).
    QuicStore,
    /// Push latency: a `monitor` subscriber on one member of each account's swarm, stores sent
    /// over HTTPS to another member; the latency is store sent → `notify` received.
    Push,
    /// A steady mixed load (stores, retrieves, onion requests, deletes, expiries) for
    /// `--duration` while one node is killed and restarted every `--kill-every`; then every
    /// acknowledged message is looked for on every member of its swarm (see `soak`).
    Soak,
}

/// Options of one run.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// The test network's manifest.
    pub manifest: PathBuf,
    /// What to send.
    pub mode: BenchMode,
    /// Requests in total.
    pub requests: usize,
    /// Requests in flight at once.
    pub concurrency: usize,
    /// Message body size in bytes.
    pub size: usize,
    /// Distinct accounts the load is spread over.
    pub accounts: usize,
}

/// What a run measured.
#[derive(Debug, Clone)]
pub struct BenchReport {
    /// Requests answered 200.
    pub ok: usize,
    /// Requests that failed.
    pub failed: usize,
    /// Wall time of the run.
    pub elapsed: Duration,
    /// Latency percentiles (p50, p90, p99, max).
    pub latency: [Duration; 4],
    /// CPU seconds the node processes used during the run.
    pub server_cpu: f64,
    /// Node processes measured.
    pub processes: usize,
    /// CPU seconds this load tool used during the run: shown apart, so a reader can tell
    /// whether the generator (on the same cores as the nodes) was the bottleneck.
    pub tool_cpu: f64,
}

impl BenchReport {
    /// Human-readable summary lines.
    pub fn render(&self, mode: BenchMode) -> String {
        let what = if mode == BenchMode::Push {
            "push latency (store sent → notify received)"
        } else {
            "latency"
        };
        let rate = self.ok as f64 / self.elapsed.as_secs_f64();
        let cpu_us = if self.ok > 0 {
            self.server_cpu * 1e6 / self.ok as f64
        } else {
            0.0
        };
        format!(
            "mode {mode:?}: {} ok, {} failed in {:.2} s = {rate:.0} requests/s\n\
             {what} p50 {:?}  p90 {:?}  p99 {:?}  max {:?}\n\
             server CPU {:.2} s over {} processes = {cpu_us:.0} µs per request (summed over the nodes)\n\
             load tool CPU {:.2} s (not included above)\n",
            self.ok,
            self.failed,
            self.elapsed.as_secs_f64(),
            self.latency[0],
            self.latency[1],
            self.latency[2],
            self.latency[3],
            self.server_cpu,
            self.processes,
            self.tool_cpu,
        )
    }
}

/// CPU seconds (user + system) a process has used, from `/proc/<pid>/stat`.
pub fn process_cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    // Linux reports clock ticks; USER_HZ is 100 on every architecture Linux exports to users.
    Some((utime + stime) / 100.0)
}

fn total_cpu(pids: &[u32]) -> f64 {
    pids.iter().filter_map(|p| process_cpu_seconds(*p)).sum()
}

/// A client account of the load: its signing key, Session ID and Ed25519 key in hex.
pub(crate) struct Account {
    pub(crate) sk: SigningKey,
    pub(crate) id: String,
    pub(crate) ed_hex: String,
}

impl Account {
    fn new(i: usize) -> Account {
        let mut seed = [0u8; 32];
        seed[..8].copy_from_slice(&(i as u64).to_le_bytes());
        seed[8] = 0xbe;
        Account::from_seed(seed)
    }

    /// The account of an Ed25519 seed.
    pub(crate) fn from_seed(seed: [u8; 32]) -> Account {
        let sk = SigningKey::from_bytes(&seed);
        let ed = sk.verifying_key().to_bytes();
        let x = crate::keys::ed25519_pk_to_x25519(&ed).unwrap_or([0; 32]);
        Account {
            sk,
            id: format!("05{}", hex::encode(x)),
            ed_hex: hex::encode(ed),
        }
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let idx = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

pub(crate) fn read_manifest(path: &Path) -> anyhow::Result<(String, Vec<u32>)> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let v: Value = serde_json::from_str(&text).context("testnet.json is not JSON")?;
    let url = v["directory_url"]
        .as_str()
        .context("testnet.json has no directory_url")?
        .to_string();
    let pids = v["nodes"]
        .as_array()
        .context("testnet.json has no nodes")?
        .iter()
        .filter_map(|n| n["pid"].as_u64().map(|p| p as u32))
        .collect();
    Ok((url, pids))
}

fn pick<'a>(m: &'a Membership, account: &str, n: usize) -> Option<&'a NodeInfo> {
    let id = AccountId::from_hex(account).ok()?;
    let members = m.members(m.swarm_for(&id)?);
    members.get(n % members.len().max(1)).copied()
}

/// Runs the load and measures it.
pub async fn run(opts: &BenchOptions) -> anyhow::Result<BenchReport> {
    if opts.mode == BenchMode::Soak {
        bail!("the soak mode runs through `soak::run`");
    }
    if opts.requests == 0 || opts.concurrency == 0 || opts.accounts == 0 {
        bail!("requests, concurrency and accounts must be positive");
    }
    let (url, pids) = read_manifest(&opts.manifest)?;
    let membership = DirectoryClient::new(&url)?
        .get_service_nodes(None)
        .await?
        .context("the directory returned no listing")?;
    let http = reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(opts.concurrency)
        .build()?;
    let accounts: Arc<Vec<Account>> = Arc::new((0..opts.accounts).map(Account::new).collect());
    let body = STANDARD.encode(vec![0x5a_u8; opts.size]);

    let pushes = if opts.mode == BenchMode::Push {
        Some(Pushes::subscribe(&membership, &accounts).await?)
    } else {
        None
    };
    if matches!(opts.mode, BenchMode::Retrieve | BenchMode::OnionRetrieve) {
        // Something to read: one message per account.
        for (i, a) in accounts.iter().enumerate() {
            let node = pick(&membership, &a.id, i).context("no swarm owns the account")?;
            store_once(&http, node, a, &body, i as u64).await?;
        }
    }

    let next = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicU64::new(0));
    let latencies = Arc::new(Mutex::new(Vec::with_capacity(opts.requests)));
    let membership = Arc::new(membership);
    let cpu_before = total_cpu(&pids);
    let tool_before = process_cpu_seconds(std::process::id()).unwrap_or(0.0);
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..opts.concurrency {
        let (http, accounts, next, failed, done, latencies, membership, body) = (
            http.clone(),
            accounts.clone(),
            next.clone(),
            failed.clone(),
            done.clone(),
            latencies.clone(),
            membership.clone(),
            body.clone(),
        );
        let (total, mode) = (opts.requests, opts.mode);
        let pending = pushes.as_ref().map(|p| p.pending.clone());
        workers.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            let mut quic = QuicConns::default();
            // One onion client per worker (paths and guard are per client, as in Session).
            let mut onion = match mode {
                BenchMode::OnionStore | BenchMode::OnionRetrieve => {
                    crate::client::Client::from_nodes(
                        crate::client::Identity::generate(),
                        membership.nodes.clone(),
                        crate::onion::EncType::AesGcm,
                        None,
                    )
                    .ok()
                }
                _ => None,
            };
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    break;
                }
                let a = &accounts[i % accounts.len()];
                let Some(node) = pick(&membership, &a.id, i / accounts.len()) else {
                    failed.fetch_add(1, Ordering::Relaxed);
                    continue;
                };
                let t = Instant::now();
                let ok = match (mode, onion.as_mut()) {
                    (BenchMode::Store, _) => {
                        store_once(&http, node, a, &body, i as u64).await.is_ok()
                    }
                    (BenchMode::Retrieve, _) => retrieve_once(&http, node, a).await.is_ok(),
                    (BenchMode::OnionStore, Some(c)) => {
                        let params = store_params(a, &body, i as u64);
                        onion_call(c, a, "store", params).await
                    }
                    (BenchMode::OnionRetrieve, Some(c)) => {
                        onion_call(c, a, "retrieve", retrieve_params(a)).await
                    }
                    (BenchMode::QuicStore, _) => {
                        let params = store_params(a, &body, i as u64);
                        quic.store(node, &params).await
                    }
                    (BenchMode::Push, _) => {
                        // Stored on another member than the subscriber's (member 0), so the
                        // push follows the swarm forward, as most of a client's pushes do.
                        let Some(via) = pick(&membership, &a.id, 1) else {
                            failed.fetch_add(1, Ordering::Relaxed);
                            continue;
                        };
                        let params = store_params(a, &body, i as u64);
                        let hash = push_hash(a, &params);
                        if let Some(p) = &pending {
                            p.lock().await.insert(hash.clone(), Instant::now());
                        }
                        let sent =
                            post(&http, via, json!({"method": "store", "params": params})).await;
                        if sent.is_err() {
                            if let Some(p) = &pending {
                                p.lock().await.remove(&hash);
                            }
                            failed.fetch_add(1, Ordering::Relaxed);
                        }
                        done.fetch_add(1, Ordering::Relaxed);
                        // The latency is the push's, recorded by the subscriber.
                        continue;
                    }
                    _ => false,
                };
                if ok {
                    mine.push(t.elapsed());
                } else {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
                done.fetch_add(1, Ordering::Relaxed);
            }
            latencies.lock().await.extend(mine);
        }));
    }
    let progress = tokio::spawn(progress_line(done.clone(), opts.requests as u64));
    for w in workers {
        w.await.context("a load worker failed")?;
    }
    progress.abort();
    let mut lost = 0;
    if let Some(p) = pushes {
        let (got, missing) = p.finish().await;
        latencies.lock().await.extend(got);
        lost = missing;
    }
    let elapsed = started.elapsed();
    let server_cpu = total_cpu(&pids) - cpu_before;
    let tool_cpu = process_cpu_seconds(std::process::id()).unwrap_or(0.0) - tool_before;
    eprintln!();
    let mut lat = latencies.lock().await.clone();
    lat.sort();
    Ok(BenchReport {
        ok: lat.len(),
        failed: failed.load(Ordering::Relaxed) + lost,
        elapsed,
        latency: [
            percentile(&lat, 0.5),
            percentile(&lat, 0.9),
            percentile(&lat, 0.99),
            lat.last().copied().unwrap_or_default(),
        ],
        server_cpu,
        processes: pids.len(),
        tool_cpu,
    })
}

/// Held QUIC connections of one worker, one per node (a throw-away client key, as libsession).
#[derive(Default)]
struct QuicConns {
    endpoint: Option<quinn::Endpoint>,
    conns: std::collections::HashMap<[u8; 32], crate::quic::client::QuicConnection>,
}

impl QuicConns {
    async fn conn(&mut self, node: &NodeInfo) -> Option<&crate::quic::client::QuicConnection> {
        if !self.conns.contains_key(&node.pubkey_ed25519) {
            if self.endpoint.is_none() {
                self.endpoint =
                    crate::quic::endpoint::client(std::net::Ipv4Addr::UNSPECIFIED.into()).ok();
            }
            let c = crate::quic::client::connect(
                self.endpoint.as_ref()?,
                Arc::new(crate::keys::NodeKeys::generate()),
                std::net::SocketAddr::from((node.ip, node.omq_port)),
                node.pubkey_ed25519,
                Duration::from_secs(5),
            )
            .await
            .ok()?;
            self.conns.insert(node.pubkey_ed25519, c);
        }
        self.conns.get(&node.pubkey_ed25519)
    }

    /// A JSON `store` over QUIC; true on an `R` answer.
    async fn store(&mut self, node: &NodeInfo, params: &Value) -> bool {
        let Some(c) = self.conn(node).await else {
            return false;
        };
        let body = params.to_string();
        let ok = matches!(
            c.request("store", body.as_bytes(), Duration::from_secs(30))
                .await,
            Ok(crate::quic::client::Answer::Reply(_))
        );
        if !ok {
            self.conns.remove(&node.pubkey_ed25519);
        }
        ok
    }
}

/// The hash of the message `store_params` made.
fn push_hash(a: &Account, params: &Value) -> String {
    let data = params["data"]
        .as_str()
        .and_then(|d| STANDARD.decode(d).ok())
        .unwrap_or_default();
    match AccountId::from_hex(&a.id) {
        Ok(id) => crate::message::message_hash(&id, crate::message::Namespace::DEFAULT, &data),
        Err(_) => String::new(),
    }
}

type Pending = Arc<Mutex<std::collections::HashMap<String, Instant>>>;

/// The subscribers of a push run: one QUIC connection to member 0 of each swarm, watching
/// every account that swarm owns.
struct Pushes {
    pending: Pending,
    latencies: Arc<Mutex<Vec<Duration>>>,
    listeners: Vec<tokio::task::JoinHandle<()>>,
    _conns: Vec<crate::quic::client::QuicConnection>,
}

impl Pushes {
    async fn subscribe(m: &Membership, accounts: &[Account]) -> anyhow::Result<Pushes> {
        let endpoint = crate::quic::endpoint::client(std::net::Ipv4Addr::UNSPECIFIED.into())?;
        let mut by_node: std::collections::HashMap<[u8; 32], (NodeInfo, Vec<&Account>)> =
            std::collections::HashMap::new();
        for a in accounts {
            let node = pick(m, &a.id, 0).context("no swarm owns an account")?;
            by_node
                .entry(node.pubkey_ed25519)
                .or_insert_with(|| (node.clone(), Vec::new()))
                .1
                .push(a);
        }
        let pending: Pending = Arc::default();
        let latencies: Arc<Mutex<Vec<Duration>>> = Arc::default();
        let mut listeners = Vec::new();
        let mut conns = Vec::new();
        let now_s = crate::clock::wall_clock_ms() / 1000;
        for (node, accs) in by_node.into_values() {
            let conn = crate::quic::client::connect(
                &endpoint,
                Arc::new(crate::keys::NodeKeys::generate()),
                std::net::SocketAddr::from((node.ip, node.omq_port)),
                node.pubkey_ed25519,
                Duration::from_secs(5),
            )
            .await
            .context("cannot reach a node over QUIC")?;
            let mut body = Vec::new();
            crate::bencode::put_list(&mut body);
            for a in &accs {
                monitor_entry(a, now_s, &mut body);
            }
            crate::bencode::put_end(&mut body);
            match conn
                .request("monitor", &body, Duration::from_secs(30))
                .await
                .context("monitor")?
            {
                crate::quic::client::Answer::Reply(r) if !r.windows(7).any(|w| w == b"errcode") => {
                }
                other => bail!("monitor refused: {other:?}"),
            }
            let mut pushes = conn.pushes().context("pushes taken")?;
            let (pending, latencies) = (pending.clone(), latencies.clone());
            listeners.push(tokio::spawn(async move {
                while let Some(p) = pushes.recv().await {
                    let Some(n) = crate::client::watch::parse_notify(&p.body) else {
                        continue;
                    };
                    if let Some(sent) = pending.lock().await.remove(&n.hash) {
                        latencies.lock().await.push(sent.elapsed());
                    }
                }
            }));
            conns.push(conn);
        }
        Ok(Pushes {
            pending,
            latencies,
            listeners,
            _conns: conns,
        })
    }

    /// Waits (5 s at most) for the pushes still due; their latencies and how many never came.
    async fn finish(self) -> (Vec<Duration>, usize) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline && !self.pending.lock().await.is_empty() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        for l in &self.listeners {
            l.abort();
        }
        let missing = self.pending.lock().await.len();
        let got = self.latencies.lock().await.clone();
        (got, missing)
    }
}

/// One signed `monitor` dict for `a`'s namespace 0, without bodies.
fn monitor_entry(a: &Account, now_s: i64, out: &mut Vec<u8>) {
    let sig =
        a.sk.sign(format!("MONITOR{}{now_s}00", a.id).as_bytes())
            .to_bytes();
    crate::bencode::put_dict(out);
    crate::bencode::put_bytes(out, b"P");
    crate::bencode::put_bytes(out, &a.sk.verifying_key().to_bytes());
    crate::bencode::put_bytes(out, b"d");
    crate::bencode::put_int(out, 0);
    crate::bencode::put_bytes(out, b"n");
    crate::bencode::put_list(out);
    crate::bencode::put_int(out, 0);
    crate::bencode::put_end(out);
    crate::bencode::put_bytes(out, b"s");
    crate::bencode::put_bytes(out, &sig);
    crate::bencode::put_bytes(out, b"t");
    crate::bencode::put_int(out, now_s);
    crate::bencode::put_end(out);
}

/// A one-line progress bar on stderr, redrawn every 200 ms.
async fn progress_line(done: Arc<AtomicU64>, total: u64) {
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    loop {
        tick.tick().await;
        let d = done.load(Ordering::Relaxed).min(total);
        let width = 40;
        let filled = (d * width / total.max(1)) as usize;
        let mut err = std::io::stderr().lock();
        let _ = write!(
            err,
            "\r[{}{}] {d}/{total}",
            "#".repeat(filled),
            ".".repeat(width as usize - filled)
        );
        let _ = err.flush();
    }
}

pub(crate) async fn post(
    http: &reqwest::Client,
    node: &NodeInfo,
    req: Value,
) -> anyhow::Result<Value> {
    let url = format!("https://{}:{}/storage_rpc/v1", node.ip, node.https_port);
    let resp = http.post(url).json(&req).send().await?;
    if !resp.status().is_success() {
        bail!("status {}", resp.status());
    }
    Ok(resp.json().await?)
}

/// Params of an unauthenticated store with a distinct body (the counter in the first bytes).
fn store_params(a: &Account, body_b64: &str, n: u64) -> Value {
    let mut data = STANDARD.decode(body_b64).unwrap_or_default();
    let len = data.len().min(8);
    data[..len].copy_from_slice(&n.to_le_bytes()[..len]);
    let now = crate::clock::wall_clock_ms();
    json!({"pubkey": a.id, "timestamp": now, "ttl": 3_600_000, "data": STANDARD.encode(&data)})
}

/// Params of a signed retrieve of namespace 0.
pub(crate) fn retrieve_params(a: &Account) -> Value {
    let now = crate::clock::wall_clock_ms();
    let sig = STANDARD.encode(a.sk.sign(format!("retrieve{now}").as_bytes()).to_bytes());
    json!({"pubkey": a.id, "pubkey_ed25519": a.ed_hex, "timestamp": now, "signature": sig})
}

async fn store_once(
    http: &reqwest::Client,
    node: &NodeInfo,
    a: &Account,
    body_b64: &str,
    n: u64,
) -> anyhow::Result<()> {
    let params = store_params(a, body_b64, n);
    post(http, node, json!({"method": "store", "params": params}))
        .await
        .map(|_| ())
}

async fn retrieve_once(http: &reqwest::Client, node: &NodeInfo, a: &Account) -> anyhow::Result<()> {
    let params = retrieve_params(a);
    post(http, node, json!({"method": "retrieve", "params": params}))
        .await
        .map(|_| ())
}

/// One RPC through an onion path; true on a 2xx answer.
async fn onion_call(
    c: &mut crate::client::Client,
    a: &Account,
    method: &str,
    params: Value,
) -> bool {
    match AccountId::from_hex(&a.id) {
        Ok(account) => c.request(&account, method, params).await.is_ok(),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_own_cpu_time() {
        let cpu = process_cpu_seconds(std::process::id()).expect("own /proc stat");
        assert!(cpu >= 0.0);
        assert!(process_cpu_seconds(u32::MAX).is_none());
    }

    #[test]
    fn percentiles() {
        let v: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(percentile(&v, 0.5), Duration::from_millis(51));
        assert_eq!(percentile(&v, 0.99), Duration::from_millis(99));
        assert_eq!(percentile(&[], 0.5), Duration::ZERO);
    }

    #[test]
    fn the_report_shows_node_and_tool_cpu_apart() {
        let r = BenchReport {
            ok: 1_000,
            failed: 2,
            elapsed: Duration::from_secs(2),
            latency: [Duration::from_millis(1); 4],
            server_cpu: 0.5,
            processes: 7,
            tool_cpu: 0.25,
        };
        let text = r.render(BenchMode::Store);
        assert!(text.contains("1000 ok, 2 failed"), "{text}");
        assert!(text.contains("= 500 µs per request"), "{text}");
        assert!(
            text.contains("load tool CPU 0.25 s (not included above)"),
            "{text}"
        );
    }

    #[test]
    fn accounts_are_session_ids() {
        let a = Account::new(3);
        assert_eq!(a.id.len(), 66);
        assert!(a.id.starts_with("05"));
    }
}
