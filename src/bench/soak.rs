//! `snode bench --mode soak`: a steady mixed load (stores, retrieves, onion requests,
//! deletes, expiry shortenings) against a test network while one node at a time is killed
//! and restarted, then the check that every acknowledged message is on every member of its
//! swarm, and the nodes' resident memory over the run.
//!
//! Owns the workload, the ledger of what the network acknowledged (account, hash, expiry;
//! deleted and shortened messages), the kill schedule, RSS sampling and the final check.
//! Processes are `nodes`' business; the signed-request helpers are the parent's.
//!
//! Only a 200 counts as acknowledged: a request that fails (its node is down, a timeout) is
//! counted failed and its message is never looked for. A delete or shortening whose answer
//! did not come may still have happened somewhere, so its message is left out of the check
//! (reported as uncertain), never counted lost or resurrected.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use anyhow::{Context as _, bail};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::Signer as _;
use serde_json::{Value, json};
use tokio::time::{Instant, MissedTickBehavior};

use super::nodes::{Nodes, rss_kib};
use super::{Account, post, retrieve_params};
use crate::clock::wall_clock_ms;
use crate::directory::client::DirectoryClient;
use crate::message::{AccountId, Namespace, message_hash};
use crate::swarm::{Membership, NodeInfo};

/// TTL of the long-lived messages (the short ones expire during the run).
const LONG_TTL_MS: i64 = 3_600_000;
/// Percentage of stores with a short TTL.
const SHORT_TTL_PERCENT: u64 = 20;
/// Onion clients shared by the load (each has its own guard and paths, as in Session).
const ONION_CLIENTS: usize = 4;
/// How often the final check runs again while copies are still missing.
const CHECK_INTERVAL: Duration = Duration::from_secs(5);
/// How often the load asks the directory for the membership.
const MEMBERSHIP_INTERVAL: Duration = Duration::from_secs(5);

/// Options of a soak run.
#[derive(Debug, Clone)]
pub struct SoakOptions {
    /// The test network's manifest (`testnet.json`); restarted nodes' pids are written back.
    pub manifest: PathBuf,
    /// The `snode` binary that restarts killed nodes.
    pub bin: PathBuf,
    /// How long the load runs.
    pub duration: Duration,
    /// Requests per second, paced steadily.
    pub rate: f64,
    /// A node is killed every this long (round robin); zero kills none.
    pub kill_every: Duration,
    /// How long a killed node stays down before its restart.
    pub down_for: Duration,
    /// RSS sampling interval.
    pub rss_every: Duration,
    /// How long the final check may wait for the network to converge.
    pub settle: Duration,
    /// Distinct accounts.
    pub accounts: usize,
    /// Message body size in bytes (at least 16).
    pub size: usize,
    /// Requests in flight at most.
    pub concurrency: usize,
}

/// The kinds of request of the load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `store` over HTTPS to a member of the owning swarm.
    Store,
    /// Signed `retrieve` over HTTPS.
    Retrieve,
    /// `store` through a 3-hop onion path.
    OnionStore,
    /// Signed `retrieve` through a 3-hop onion path.
    OnionRetrieve,
    /// `delete` of one acknowledged message.
    Delete,
    /// `expire` with `shorten` of one acknowledged message.
    Expire,
}

impl Op {
    /// Every kind, in report order.
    pub const ALL: [Op; 6] = [
        Op::Store,
        Op::Retrieve,
        Op::OnionStore,
        Op::OnionRetrieve,
        Op::Delete,
        Op::Expire,
    ];

    /// The mix, from a number in 0..100: 40 % stores, 25 % retrieves, 7 % onion stores,
    /// 8 % onion retrieves, 10 % deletes, 10 % shortenings.
    fn pick(r: u64) -> Op {
        match r % 100 {
            0..40 => Op::Store,
            40..65 => Op::Retrieve,
            65..72 => Op::OnionStore,
            72..80 => Op::OnionRetrieve,
            80..90 => Op::Delete,
            _ => Op::Expire,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Op::Store => "store",
            Op::Retrieve => "retrieve",
            Op::OnionStore => "onion store",
            Op::OnionRetrieve => "onion retrieve",
            Op::Delete => "delete",
            Op::Expire => "expire (shorten)",
        }
    }
}

/// One kill and restart.
#[derive(Debug, Clone)]
pub struct Kill {
    /// When the node was killed, from the start of the load.
    pub at: Duration,
    /// Its index in the manifest.
    pub node: usize,
    /// From the kill to its HTTPS port answering again, or why it did not come back.
    pub back_after: Result<Duration, String>,
}

/// RSS of every node at one time (KiB; `None` while a node is down).
#[derive(Debug, Clone)]
pub struct RssSample {
    /// From the start of the load.
    pub at: Duration,
    /// One value per node, in manifest order.
    pub kib: Vec<Option<u64>>,
}

/// What the final check found (its last round).
#[derive(Debug, Clone, Default)]
pub struct CheckResult {
    /// Messages the network acknowledged (200 to a store, direct or onion).
    pub acknowledged: usize,
    /// Acknowledged messages whose delete was acknowledged.
    pub deleted: usize,
    /// Acknowledged messages past their (possibly shortened) expiry at the check.
    pub expired: usize,
    /// Messages left out: a delete or shortening of them failed, so it may have happened.
    pub uncertain: usize,
    /// Live messages looked for on every member of their swarm.
    pub checked: usize,
    /// Live messages missing on at least one member.
    pub lost: usize,
    /// Member copies missing (a lost message may miss on several members).
    pub missing_copies: usize,
    /// Deleted messages some member still returns.
    pub resurrected: usize,
    /// (account, member) retrieves that failed, so nothing could be checked there.
    pub unreachable: usize,
    /// Members of the swarms the messages were looked for on.
    pub members: usize,
}

impl CheckResult {
    fn clean(&self) -> bool {
        self.lost == 0 && self.resurrected == 0 && self.unreachable == 0
    }
}

/// What a soak run did and found.
#[derive(Debug, Clone)]
pub struct SoakReport {
    /// The load's duration and rate as asked.
    pub duration: Duration,
    /// Requests per second asked for.
    pub rate: f64,
    /// Nodes in the manifest.
    pub nodes: usize,
    /// Answered 200 / failed, per kind (in `Op::ALL` order).
    pub ok: [u64; 6],
    /// Failed requests, per kind.
    pub failed: [u64; 6],
    /// Every kill and restart.
    pub kills: Vec<Kill>,
    /// RSS samples over the load.
    pub rss: Vec<RssSample>,
    /// The final check.
    pub check: CheckResult,
    /// Rounds of the final check, and the time from the end of the load to its last round.
    pub check_rounds: usize,
    /// From the end of the load to the last round of the check.
    pub settled_after: Duration,
}

impl SoakReport {
    /// Whether nothing acknowledged was lost and nothing deleted came back.
    pub fn passed(&self) -> bool {
        self.check.lost == 0 && self.check.resurrected == 0
    }

    /// Restarts whose node came back serving.
    pub fn restarts(&self) -> usize {
        self.kills.iter().filter(|k| k.back_after.is_ok()).count()
    }

    /// Growth of each node's RSS from the first sample at or after half the run to the last
    /// sample (`None` without two samples), and whether the node restarted in between.
    pub fn rss_growth_last_half(&self) -> Vec<(Option<f64>, bool)> {
        let half = self.duration / 2;
        let window: Vec<&RssSample> = self.rss.iter().filter(|s| s.at >= half).collect();
        (0..self.nodes)
            .map(|n| {
                let first = window.iter().find_map(|s| s.kib[n].map(|v| (s.at, v)));
                let last = window
                    .iter()
                    .rev()
                    .find_map(|s| s.kib[n].map(|v| (s.at, v)));
                let growth = match (first, last) {
                    (Some((t0, a)), Some((t1, b))) if t1 > t0 && a > 0 => {
                        Some((b as f64 - a as f64) / a as f64 * 100.0)
                    }
                    _ => None,
                };
                let restarted = self.kills.iter().any(|k| k.node == n && k.at >= half);
                (growth, restarted)
            })
            .collect()
    }

    /// Growth of each node's RSS over the last half read from the least-squares line through
    /// every sample of it: the line's value at the last sample against its value at the first
    /// (`None` without two samples). RSS swings by several MiB as memtables fill and flush, so
    /// two single samples (`rss_growth_last_half`) say as much about where in that cycle they
    /// fell as about a trend; the line uses them all.
    pub fn rss_trend_last_half(&self) -> Vec<Option<f64>> {
        let half = self.duration / 2;
        (0..self.nodes)
            .map(|n| {
                let points: Vec<(f64, f64)> = self
                    .rss
                    .iter()
                    .filter(|s| s.at >= half)
                    .filter_map(|s| s.kib[n].map(|v| (s.at.as_secs_f64(), v as f64)))
                    .collect();
                let (t0, t1) = (points.first()?.0, points.last()?.0);
                if points.len() < 2 || t1 <= t0 {
                    return None;
                }
                let count = points.len() as f64;
                let mean_t = points.iter().map(|p| p.0).sum::<f64>() / count;
                let mean_v = points.iter().map(|p| p.1).sum::<f64>() / count;
                let cov: f64 = points.iter().map(|p| (p.0 - mean_t) * (p.1 - mean_v)).sum();
                let var: f64 = points.iter().map(|p| (p.0 - mean_t).powi(2)).sum();
                let slope = cov / var;
                let start = mean_v + slope * (t0 - mean_t);
                (start > 0.0).then(|| slope * (t1 - t0) / start * 100.0)
            })
            .collect()
    }

    /// The human report.
    pub fn render(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "soak: {} s at {} requests/s against {} nodes",
            self.duration.as_secs(),
            self.rate,
            self.nodes
        );
        let _ = writeln!(s, "{:<18} {:>8} {:>8}", "request", "ok", "failed");
        for (i, op) in Op::ALL.iter().enumerate() {
            let _ = writeln!(
                s,
                "{:<18} {:>8} {:>8}",
                op.name(),
                self.ok[i],
                self.failed[i]
            );
        }
        let _ = writeln!(
            s,
            "kills: {} ({} restarted and serving again)",
            self.kills.len(),
            self.restarts()
        );
        for k in &self.kills {
            let back = match &k.back_after {
                Ok(d) => format!("serving again after {:.1} s", d.as_secs_f64()),
                Err(e) => format!("NOT BACK: {e}"),
            };
            let _ = writeln!(
                s,
                "  {:>6.0} s  node-{}  {back}",
                k.at.as_secs_f64(),
                k.node
            );
        }
        let c = &self.check;
        let _ = writeln!(
            s,
            "final check ({} rounds, {:.0} s after the load): {} deleted, {} expired, {} uncertain \
             (a delete or shortening without answer), {} live checked on {} swarm members",
            self.check_rounds,
            self.settled_after.as_secs_f64(),
            c.deleted,
            c.expired,
            c.uncertain,
            c.checked,
            c.members
        );
        let _ = writeln!(
            s,
            "acknowledged {}, lost {} ({} missing copies, {} unreachable member retrieves), resurrected {}",
            c.acknowledged, c.lost, c.missing_copies, c.unreachable, c.resurrected
        );
        let _ = writeln!(
            s,
            "RSS (MiB) over time (* = restarted since the previous sample):"
        );
        let _ = write!(s, "{:>7}", "t (s)");
        for n in 0..self.nodes {
            let name = format!("node-{n}");
            let _ = write!(s, " {name:>8}");
        }
        s.push('\n');
        let mut prev = Duration::ZERO;
        for sample in &self.rss {
            let _ = write!(s, "{:>7.0}", sample.at.as_secs_f64());
            for (n, v) in sample.kib.iter().enumerate() {
                let mark = if self
                    .kills
                    .iter()
                    .any(|k| k.node == n && k.at > prev && k.at <= sample.at)
                {
                    "*"
                } else {
                    ""
                };
                let cell = v.map_or("-".to_string(), |kib| {
                    format!("{:.1}{mark}", kib as f64 / 1024.0)
                });
                let _ = write!(s, " {cell:>8}");
            }
            s.push('\n');
            prev = sample.at;
        }
        let (growth, restarted): (Vec<Option<f64>>, Vec<bool>) =
            self.rss_growth_last_half().into_iter().unzip();
        let title = format!(
            "RSS growth over the last half (from {} s):",
            (self.duration / 2).as_secs()
        );
        percent_line(&mut s, &title, &growth, &restarted);
        let title = "RSS trend over the last half (least-squares line, end vs start):";
        percent_line(&mut s, title, &self.rss_trend_last_half(), &[]);
        s
    }
}

/// Appends `title` and one `node-N ±x.x %` per node (`n/a` without a figure, `(restarted)`
/// where `restarted` says so), then a newline.
fn percent_line(s: &mut String, title: &str, figures: &[Option<f64>], restarted: &[bool]) {
    s.push_str(title);
    for (n, g) in figures.iter().enumerate() {
        let r = if restarted.get(n).copied().unwrap_or(false) {
            " (restarted)"
        } else {
            ""
        };
        let _ = match g {
            Some(g) => write!(s, " node-{n} {g:+.1} %{r};"),
            None => write!(s, " node-{n} n/a;"),
        };
    }
    s.push('\n');
}

/// One acknowledged message.
struct Tracked {
    account: usize,
    /// Its expiry as the network acknowledged it.
    expiry: i64,
    /// The earliest it may expire on some member: lower than `expiry` after a shortening
    /// that failed (it may have reached some members).
    earliest: i64,
    state: State,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    Live,
    /// A delete is in flight.
    Deleting,
    Deleted,
    /// A delete failed: it may have happened on some members.
    Uncertain,
}

/// Every acknowledged message, and the live ones a delete or shortening may pick.
#[derive(Default)]
struct Ledger {
    msgs: HashMap<String, Tracked>,
    /// Hashes free for a delete or a shortening (none in flight on them).
    free: Vec<String>,
}

impl Ledger {
    fn ack(&mut self, hash: String, account: usize, expiry: i64) {
        if self.msgs.contains_key(&hash) {
            return;
        }
        self.free.push(hash.clone());
        self.msgs.insert(
            hash,
            Tracked {
                account,
                expiry,
                earliest: expiry,
                state: State::Live,
            },
        );
    }

    /// Takes a random free message that lives at least `min_left_ms` more.
    fn take(&mut self, now: i64, min_left_ms: i64) -> Option<(String, usize)> {
        for _ in 0..8 {
            if self.free.is_empty() {
                return None;
            }
            let i = (rand::random::<u64>() % self.free.len() as u64) as usize;
            let hash = self.free.swap_remove(i);
            let Some(t) = self.msgs.get(&hash) else {
                continue;
            };
            if t.state == State::Live && t.earliest > now + min_left_ms {
                return Some((hash, t.account));
            }
            // Expired or about to: no longer a candidate.
        }
        None
    }
}

/// What the load's tasks share.
struct Load {
    http: reqwest::Client,
    accounts: Vec<Account>,
    account_ids: Vec<AccountId>,
    membership: RwLock<Arc<Membership>>,
    ledger: Mutex<Ledger>,
    onion: Vec<tokio::sync::Mutex<crate::client::Client>>,
    ok: [AtomicU64; 6],
    failed: [AtomicU64; 6],
    run_id: u64,
    seq: AtomicU64,
    size: usize,
    short_ttl_ms: i64,
}

impl Load {
    fn member(&self, account: usize) -> Option<NodeInfo> {
        let m = self.membership.read().ok()?.clone();
        let members = m.members(m.swarm_for(&self.account_ids[account])?);
        if members.is_empty() {
            return None;
        }
        let i = (rand::random::<u64>() % members.len() as u64) as usize;
        Some(members[i].clone())
    }

    fn count(&self, op: Op, ok: bool) {
        let i = Op::ALL.iter().position(|o| *o == op).unwrap_or(0);
        let c = if ok { &self.ok[i] } else { &self.failed[i] };
        c.fetch_add(1, Ordering::Relaxed);
    }

    /// A store of a distinct body (run id and sequence number first); its hash and expiry.
    fn store_params(&self, account: usize) -> (Value, String, i64) {
        let mut data = vec![0x5a_u8; self.size.max(16)];
        data[..8].copy_from_slice(&self.run_id.to_le_bytes());
        let n = self.seq.fetch_add(1, Ordering::Relaxed);
        data[8..16].copy_from_slice(&n.to_le_bytes());
        let ttl = if rand::random::<u64>() % 100 < SHORT_TTL_PERCENT {
            self.short_ttl_ms + (rand::random::<u64>() % 1000) as i64 * self.short_ttl_ms / 2000
        } else {
            LONG_TTL_MS
        };
        let now = wall_clock_ms();
        let hash = message_hash(&self.account_ids[account], Namespace::DEFAULT, &data);
        let params = json!({"pubkey": self.accounts[account].id, "timestamp": now, "ttl": ttl,
            "data": STANDARD.encode(&data)});
        (params, hash, now + ttl)
    }

    async fn one(&self, op: Op) {
        let account = (rand::random::<u64>() % self.accounts.len() as u64) as usize;
        let (op, ok) = match op {
            Op::Store => {
                let (params, hash, expiry) = self.store_params(account);
                let ok = self.call(account, "store", params).await;
                if ok && let Ok(mut l) = self.ledger.lock() {
                    l.ack(hash, account, expiry);
                }
                (op, ok)
            }
            Op::Retrieve => (op, self.retrieve(account).await),
            Op::OnionStore => {
                let (params, hash, expiry) = self.store_params(account);
                let ok = self.onion_call(account, "store", params).await;
                if ok && let Ok(mut l) = self.ledger.lock() {
                    l.ack(hash, account, expiry);
                }
                (op, ok)
            }
            Op::OnionRetrieve => {
                let params = retrieve_params(&self.accounts[account]);
                (op, self.onion_call(account, "retrieve", params).await)
            }
            // Nothing to delete or shorten yet: a retrieve instead.
            Op::Delete => match self.delete().await {
                Some(ok) => (op, ok),
                None => (Op::Retrieve, self.retrieve(account).await),
            },
            Op::Expire => match self.shorten().await {
                Some(ok) => (op, ok),
                None => (Op::Retrieve, self.retrieve(account).await),
            },
        };
        self.count(op, ok);
    }

    /// One RPC over HTTPS to a random member of the account's swarm; true on 200.
    async fn call(&self, account: usize, method: &str, params: Value) -> bool {
        match self.member(account) {
            Some(node) => post(
                &self.http,
                &node,
                json!({"method": method, "params": params}),
            )
            .await
            .is_ok(),
            None => false,
        }
    }

    async fn retrieve(&self, account: usize) -> bool {
        let params = retrieve_params(&self.accounts[account]);
        self.call(account, "retrieve", params).await
    }

    async fn onion_call(&self, account: usize, method: &str, params: Value) -> bool {
        let i = (rand::random::<u64>() % self.onion.len().max(1) as u64) as usize;
        let Some(c) = self.onion.get(i) else {
            return false;
        };
        let mut c = c.lock().await;
        c.request(&self.account_ids[account], method, params)
            .await
            .is_ok()
    }

    /// Deletes a random acknowledged message; `None` when there is none to delete.
    async fn delete(&self) -> Option<bool> {
        let now = wall_clock_ms();
        let (hash, account) = self.ledger.lock().ok().and_then(|mut l| {
            let (hash, account) = l.take(now, 15_000)?;
            if let Some(t) = l.msgs.get_mut(&hash) {
                t.state = State::Deleting;
            }
            Some((hash, account))
        })?;
        let a = &self.accounts[account];
        let sig = a.sk.sign(&crate::sign::msg::delete(&[&hash])).to_bytes();
        let params = json!({"pubkey": a.id, "pubkey_ed25519": a.ed_hex, "messages": [hash],
            "signature": STANDARD.encode(sig)});
        let ok = self.call(account, "delete", params).await;
        if let Ok(mut l) = self.ledger.lock()
            && let Some(t) = l.msgs.get_mut(&hash)
        {
            t.state = if ok { State::Deleted } else { State::Uncertain };
        }
        Some(ok)
    }

    /// Shortens a random acknowledged message's expiry to 20–60 s from now; `None` when there
    /// is none to shorten.
    async fn shorten(&self) -> Option<bool> {
        let now = wall_clock_ms();
        let (hash, account) = self
            .ledger
            .lock()
            .ok()
            .and_then(|mut l| l.take(now, 70_000))?;
        let a = &self.accounts[account];
        let expiry = now + 20_000 + (rand::random::<u64>() % 40_000) as i64;
        let sig =
            a.sk.sign(&crate::sign::msg::expire("shorten", &[expiry], &[&hash]))
                .to_bytes();
        let params = json!({"pubkey": a.id, "pubkey_ed25519": a.ed_hex, "messages": [hash],
            "expiry": expiry, "shorten": true, "signature": STANDARD.encode(sig)});
        let ok = self.call(account, "expire", params).await;
        if let Ok(mut l) = self.ledger.lock() {
            if let Some(t) = l.msgs.get_mut(&hash) {
                t.earliest = t.earliest.min(expiry);
                if ok {
                    t.expiry = t.expiry.min(expiry);
                }
            }
            l.free.push(hash);
        }
        Some(ok)
    }
}

/// Runs the soak: load, kills, RSS samples, then the final check.
pub async fn run(opts: &SoakOptions) -> anyhow::Result<SoakReport> {
    if !(opts.rate.is_finite() && opts.rate > 0.0) || opts.accounts == 0 || opts.concurrency == 0 {
        bail!("rate, accounts and concurrency must be positive");
    }
    let (url, _) = super::read_manifest(&opts.manifest)?;
    let mut nodes = Nodes::load(&opts.manifest, &opts.bin)?;
    let directory = DirectoryClient::new(&url)?;
    let membership = directory
        .get_service_nodes(None)
        .await?
        .context("the directory returned no listing")?;
    let http = reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .timeout(Duration::from_secs(10))
        .pool_max_idle_per_host(opts.concurrency)
        .build()?;
    let run_id: u64 = rand::random();
    let accounts: Vec<Account> = (0..opts.accounts)
        .map(|i| {
            let mut seed = [0u8; 32];
            seed[..8].copy_from_slice(&(i as u64).to_le_bytes());
            seed[8..16].copy_from_slice(&run_id.to_le_bytes());
            seed[16] = 0x50;
            Account::from_seed(seed)
        })
        .collect();
    let account_ids = accounts
        .iter()
        .map(|a| AccountId::from_hex(&a.id))
        .collect::<Result<Vec<_>, _>>()
        .context("a load account is not an account")?;
    let onion = (0..ONION_CLIENTS)
        .map(|_| {
            crate::client::Client::from_nodes(
                crate::client::Identity::generate(),
                membership.nodes.clone(),
                crate::onion::EncType::AesGcm,
                None,
            )
            .map(tokio::sync::Mutex::new)
        })
        .collect::<Result<Vec<_>, _>>()?;
    // Short TTLs expire during the run: a third of it, between 12 s and 2 min.
    let short_ttl_ms = (opts.duration.as_millis() as i64 / 3).clamp(12_000, 120_000);
    let load = Arc::new(Load {
        http: http.clone(),
        accounts,
        account_ids,
        membership: RwLock::new(Arc::new(membership)),
        ledger: Mutex::default(),
        onion,
        ok: Default::default(),
        failed: Default::default(),
        run_id,
        seq: AtomicU64::new(0),
        size: opts.size,
        short_ttl_ms,
    });

    let start = Instant::now();
    let end = start + opts.duration;
    let refresher = tokio::spawn(refresh_membership(load.clone(), directory.clone()));
    let sampler = tokio::spawn(sample_rss(nodes.pids(), start, end, opts.rss_every));
    let killer = {
        let (opts, http) = (opts.clone(), http.clone());
        tokio::spawn(async move {
            let kills = kill_loop(&mut nodes, &opts, start, end, &http).await;
            (nodes, kills)
        })
    };

    // The pacer: one request every 1/rate s, at most `concurrency` in flight.
    let permits = Arc::new(tokio::sync::Semaphore::new(opts.concurrency));
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / opts.rate));
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut tasks = tokio::task::JoinSet::new();
    let mut last_progress = start;
    loop {
        tick.tick().await;
        if Instant::now() >= end {
            break;
        }
        let permit = permits.clone().acquire_owned().await?;
        let (worker, op) = (load.clone(), Op::pick(rand::random::<u64>()));
        tasks.spawn(async move {
            worker.one(op).await;
            drop(permit);
        });
        while tasks.try_join_next().is_some() {}
        if last_progress.elapsed() >= Duration::from_secs(10) {
            last_progress = Instant::now();
            let ok: u64 = load.ok.iter().map(|c| c.load(Ordering::Relaxed)).sum();
            let failed: u64 = load.failed.iter().map(|c| c.load(Ordering::Relaxed)).sum();
            let acked = load.ledger.lock().map(|l| l.msgs.len()).unwrap_or(0);
            eprintln!(
                "soak: {:>5.0} s  {ok} ok, {failed} failed, {acked} messages acknowledged",
                start.elapsed().as_secs_f64()
            );
        }
    }
    while tasks.join_next().await.is_some() {}
    let (_nodes, kills) = killer.await.context("the kill loop failed")?;
    let rss = sampler.await.context("the RSS sampler failed")?;
    let load_end = Instant::now();
    eprintln!("soak: load done; checking every acknowledged message on every swarm member");

    // The final check, again until clean or out of time.
    let deadline = load_end + opts.settle;
    let mut rounds = 0;
    let last_round = loop {
        rounds += 1;
        let r = check(&load, &directory, opts.concurrency.min(32)).await?;
        if r.clean() || Instant::now() + CHECK_INTERVAL > deadline {
            break r;
        }
        eprintln!(
            "soak: check round {rounds}: {} missing copies, {} resurrected, {} unreachable; again in {CHECK_INTERVAL:?}",
            r.missing_copies, r.resurrected, r.unreachable
        );
        tokio::time::sleep(CHECK_INTERVAL).await;
    };
    refresher.abort();
    Ok(SoakReport {
        duration: opts.duration,
        rate: opts.rate,
        nodes: rss.first().map_or(0, |s| s.kib.len()),
        ok: std::array::from_fn(|i| load.ok[i].load(Ordering::Relaxed)),
        failed: std::array::from_fn(|i| load.failed[i].load(Ordering::Relaxed)),
        kills,
        rss,
        check: last_round,
        check_rounds: rounds,
        settled_after: load_end.elapsed(),
    })
}

/// Keeps the load's membership current (a node down too long is decommissioned).
async fn refresh_membership(load: Arc<Load>, directory: DirectoryClient) {
    let mut tick = tokio::time::interval(MEMBERSHIP_INTERVAL);
    loop {
        tick.tick().await;
        if let Ok(Some(m)) = directory.get_service_nodes(None).await
            && let Ok(mut current) = load.membership.write()
        {
            *current = Arc::new(m);
        }
    }
}

/// Samples every node's RSS every `every` from `start`, and once more at `end`.
async fn sample_rss(
    pids: Arc<Mutex<Vec<u32>>>,
    start: Instant,
    end: Instant,
    every: Duration,
) -> Vec<RssSample> {
    let mut out = Vec::new();
    let mut tick = tokio::time::interval_at(start, every.max(Duration::from_millis(100)));
    loop {
        let last = tokio::select! {
            _ = tick.tick() => false,
            () = tokio::time::sleep_until(end) => true,
        };
        let now = Instant::now();
        let current = pids.lock().map(|p| p.clone()).unwrap_or_default();
        out.push(RssSample {
            at: now.min(end) - start,
            kib: current.into_iter().map(rss_kib).collect(),
        });
        if last || now >= end {
            return out;
        }
    }
}

/// Kills node k mod n at every `kill_every` until `end`, each restarted after `down_for`.
async fn kill_loop(
    nodes: &mut Nodes,
    opts: &SoakOptions,
    start: Instant,
    end: Instant,
    http: &reqwest::Client,
) -> Vec<Kill> {
    let mut kills = Vec::new();
    if opts.kill_every.is_zero() {
        return kills;
    }
    for k in 0.. {
        let at = start + opts.kill_every * (k + 1);
        if at >= end {
            break;
        }
        tokio::time::sleep_until(at).await;
        let node = k as usize % nodes.len();
        let killed = Instant::now();
        let back_after = async {
            nodes.kill(node).await?;
            tokio::time::sleep(opts.down_for).await;
            nodes.start(node)?;
            nodes.wait_serving(node, http).await?;
            Ok::<_, anyhow::Error>(killed.elapsed())
        }
        .await
        .map_err(|e| format!("{e:#}"));
        match &back_after {
            Ok(d) => eprintln!(
                "soak: node-{node} killed at {:.0} s, serving again after {:.1} s",
                (killed - start).as_secs_f64(),
                d.as_secs_f64()
            ),
            Err(e) => eprintln!("soak: node-{node} kill/restart failed: {e}"),
        }
        kills.push(Kill {
            at: killed - start,
            node,
            back_after,
        });
    }
    kills
}

/// Every message of `account` on `node` (signed retrieve, paged).
async fn retrieve_all(
    http: &reqwest::Client,
    node: &NodeInfo,
    a: &Account,
) -> anyhow::Result<HashSet<String>> {
    let mut out = HashSet::new();
    let mut last: Option<String> = None;
    for _ in 0..1000 {
        let mut params = retrieve_params(a);
        if let Some(h) = &last {
            params["last_hash"] = json!(h);
        }
        let v = post(http, node, json!({"method": "retrieve", "params": params})).await?;
        let msgs = v["messages"]
            .as_array()
            .context("no messages in a retrieve")?;
        for m in msgs {
            if let Some(h) = m["hash"].as_str() {
                out.insert(h.to_string());
            }
        }
        last = msgs
            .last()
            .and_then(|m| m["hash"].as_str())
            .map(String::from);
        if v["more"] != json!(true) || last.is_none() {
            return Ok(out);
        }
    }
    bail!("retrieve kept saying more")
}

/// What the final check expects of one account: live messages (hash, earliest expiry) and
/// deleted hashes.
type Expected = (Vec<(String, i64)>, Vec<String>);

/// One round of the final check: every (account, member) retrieve against the ledger.
async fn check(
    load: &Arc<Load>,
    directory: &DirectoryClient,
    concurrency: usize,
) -> anyhow::Result<CheckResult> {
    let membership = directory
        .get_service_nodes(None)
        .await?
        .context("the directory returned no listing")?;
    let mut result = CheckResult::default();
    // Per account: live candidates (hash, earliest expiry) and deleted hashes.
    let mut by_account: HashMap<usize, Expected> = HashMap::new();
    {
        let now = wall_clock_ms();
        let l = load
            .ledger
            .lock()
            .map_err(|_| anyhow::anyhow!("ledger poisoned"))?;
        result.acknowledged = l.msgs.len();
        for (hash, t) in &l.msgs {
            let e = by_account.entry(t.account).or_default();
            match t.state {
                State::Deleted => {
                    result.deleted += 1;
                    e.1.push(hash.clone());
                }
                State::Uncertain | State::Deleting => result.uncertain += 1,
                State::Live if t.earliest < t.expiry && t.earliest > now => {
                    // A failed shortening: the message may be gone on some members only.
                    result.uncertain += 1;
                }
                State::Live if t.earliest <= now => result.expired += 1,
                State::Live => e.0.push((hash.clone(), t.earliest)),
            }
        }
    }
    let permits = Arc::new(tokio::sync::Semaphore::new(concurrency.max(1)));
    let mut tasks = tokio::task::JoinSet::new();
    let mut members_seen = HashSet::new();
    for (account, (live, deleted)) in by_account {
        let Some(swarm) = membership.swarm_for(&load.account_ids[account]) else {
            bail!("no swarm owns a load account");
        };
        let live = Arc::new(live);
        let deleted = Arc::new(deleted);
        for node in membership.members(swarm) {
            members_seen.insert(node.pubkey_ed25519);
            let (load, node, live, deleted) =
                (load.clone(), node.clone(), live.clone(), deleted.clone());
            let permit = permits.clone().acquire_owned().await?;
            tasks.spawn(async move {
                let got = retrieve_all(&load.http, &node, &load.accounts[account]).await;
                drop(permit);
                // The node filtered by its clock at the retrieve, no later than now.
                let now = wall_clock_ms();
                let Ok(got) = got else {
                    return None;
                };
                let missing: Vec<String> = live
                    .iter()
                    .filter(|(h, earliest)| *earliest > now + 1000 && !got.contains(h))
                    .map(|(h, _)| h.clone())
                    .collect();
                let back: Vec<String> = deleted
                    .iter()
                    .filter(|h| got.contains(*h))
                    .cloned()
                    .collect();
                let checked: Vec<String> = live
                    .iter()
                    .filter(|(_, earliest)| *earliest > now + 1000)
                    .map(|(h, _)| h.clone())
                    .collect();
                Some((missing, back, checked))
            });
        }
    }
    let (mut lost, mut back, mut checked) = (HashSet::new(), HashSet::new(), HashSet::new());
    while let Some(r) = tasks.join_next().await {
        match r.context("a check task failed")? {
            Some((missing, resurrected, seen)) => {
                result.missing_copies += missing.len();
                lost.extend(missing);
                back.extend(resurrected);
                checked.extend(seen);
            }
            None => result.unreachable += 1,
        }
    }
    result.lost = lost.len();
    result.resurrected = back.len();
    result.checked = checked.len();
    result.members = members_seen.len();
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mix_covers_every_kind() {
        let picked: HashSet<_> = (0..100).map(|r| Op::pick(r) as usize).collect();
        assert_eq!(picked.len(), Op::ALL.len());
    }

    #[test]
    fn ledger_hands_out_live_messages_once() {
        let mut l = Ledger::default();
        l.ack("a".into(), 0, 100_000);
        l.ack("b".into(), 1, 1_000);
        l.ack("a".into(), 0, 100_000);
        assert_eq!(l.msgs.len(), 2);
        // "b" expires too soon to be picked; "a" is handed out once.
        let mut got = Vec::new();
        while let Some((h, _)) = l.take(0, 5_000) {
            got.push(h);
        }
        assert_eq!(got, vec!["a".to_string()]);
    }

    #[test]
    fn growth_over_the_last_half() {
        let r = SoakReport {
            duration: Duration::from_secs(100),
            rate: 1.0,
            nodes: 2,
            ok: [0; 6],
            failed: [0; 6],
            kills: vec![Kill {
                at: Duration::from_secs(70),
                node: 1,
                back_after: Ok(Duration::from_secs(1)),
            }],
            rss: [0u64, 40, 60, 80, 100]
                .iter()
                .map(|t| RssSample {
                    at: Duration::from_secs(*t),
                    kib: vec![Some(1000 + t), Some(2000)],
                })
                .collect(),
            check: CheckResult::default(),
            check_rounds: 1,
            settled_after: Duration::ZERO,
        };
        let g = r.rss_growth_last_half();
        let first = g[0].0.expect("growth");
        assert!((first - 40.0 / 1060.0 * 100.0).abs() < 1e-9, "{first}");
        assert_eq!(g[1], (Some(0.0), true));
        // Node 0 grows by 1 KiB/s: the line from 60 s (1060) to 100 s (1100) is +40 KiB.
        let trend = r.rss_trend_last_half();
        let t0 = trend[0].expect("trend");
        assert!((t0 - 40.0 / 1060.0 * 100.0).abs() < 1e-9, "{t0}");
        assert_eq!(trend[1], Some(0.0));
        assert!(r.render().contains("acknowledged 0, lost 0"));
        assert!(r.render().contains("RSS trend over the last half"));
    }
}
