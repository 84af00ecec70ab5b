//! `scripts/simulate`'s driver: many histories in parallel with a progress line and a summary
//! table, or one history replayed with its trace and digest. Settings come from the
//! environment the script sets (`SNODE_SIM_*`), since the test harness owns the command line.
//!
//! Owns the fan-out over seeds and the report; each history is `super::run`.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use super::plan::{FaultMix, KINDS};
use super::{DirectoryMode, Outcome, SimConfig, run};

/// One history's figures for the table.
struct Summary {
    bad: usize,
    /// Violations by kind: the invariant (`I1`…), `nondeterministic`, or `other`.
    kinds: BTreeMap<&'static str, u64>,
    faults: BTreeMap<&'static str, u64>,
    acked: u64,
    deletes: u64,
    expires: u64,
    account_ops: u64,
    sim_ms: u64,
    directory: BTreeMap<&'static str, u64>,
}

/// Counts violation lines by the invariant they name.
fn kinds_of(violations: &[String]) -> BTreeMap<&'static str, u64> {
    let mut m = BTreeMap::new();
    for v in violations {
        // Lines read "t=…ms I2 resurrected: …" or "nondeterministic: …".
        let text = v.split_once(' ').map_or(v.as_str(), |(_, rest)| rest);
        let k = ["I1", "I2", "I3", "I4", "I5", "I6"]
            .into_iter()
            .find(|i| text.starts_with(i))
            .unwrap_or(if v.starts_with("nondeterministic") {
                "nondeterministic"
            } else {
                "other"
            });
        *m.entry(k).or_default() += 1;
    }
    m
}

fn env<T: std::str::FromStr>(name: &str, default: T) -> T {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v} is not valid")),
        Err(_) => default,
    }
}

fn config(seed: u64) -> SimConfig {
    let mut c = SimConfig::new(seed);
    c.nodes = env("SNODE_SIM_NODES", c.nodes);
    c.accounts = env("SNODE_SIM_ACCOUNTS", c.accounts);
    c.work_ms = env("SNODE_SIM_WORK_MS", c.work_ms);
    c.converge_ms = env("SNODE_SIM_CONVERGE_MS", c.converge_ms);
    if let Ok(f) = std::env::var("SNODE_SIM_FAULTS") {
        c.faults = FaultMix::parse(&f).unwrap_or_else(|e| panic!("SNODE_SIM_FAULTS: {e}"));
    }
    if let Ok(d) = std::env::var("SNODE_SIM_DIRECTORY") {
        c.directory =
            DirectoryMode::parse(&d).unwrap_or_else(|e| panic!("SNODE_SIM_DIRECTORY: {e}"));
    }
    // On by default with the live directory, off with the harness's (`SimConfig::harness`).
    let default_expiries = u8::from(c.directory == DirectoryMode::Live);
    c.expiries = env("SNODE_SIM_EXPIRIES", default_expiries) == 1;
    c.account_ops = env("SNODE_SIM_ACCOUNT_OPS", default_expiries) == 1;
    c
}

/// Runs what the environment asks; panics (fails) when any history violated an invariant.
pub fn main() {
    #[allow(clippy::print_stdout)]
    let out = |s: String| {
        let mut o = std::io::stdout().lock();
        let _ = writeln!(o, "{s}");
    };
    if let Ok(seed) = std::env::var("SNODE_SIM_SEED") {
        let seed: u64 = seed.parse().expect("SNODE_SIM_SEED is a number");
        // `SNODE_SIM_LOG=filter`: the nodes' own logs on stderr (a replay's debugging aid).
        if let Ok(filter) = std::env::var("SNODE_SIM_LOG") {
            let _ = tracing_subscriber::fmt()
                .with_env_filter(filter)
                .with_writer(std::io::stderr)
                .try_init();
        }
        let o = run(&config(seed));
        // `SNODE_SIM_REPEAT=N`: replay N more times and show where a replay first differs.
        for _ in 0..env("SNODE_SIM_REPEAT", 0u32) {
            let again = run(&config(seed));
            if let Some(i) = (0..o.trace.len().max(again.trace.len()))
                .find(|i| o.trace.get(*i) != again.trace.get(*i))
            {
                let from = i.saturating_sub(3);
                out(format!("replay differs at line {i}:"));
                for (tag, t) in [("first", &o.trace), ("replay", &again.trace)] {
                    for l in t.iter().skip(from).take(6) {
                        out(format!("  {tag} | {l}"));
                    }
                }
                panic!("seed {seed} is not deterministic");
            }
        }
        for l in &o.trace {
            out(l.clone());
        }
        for v in &o.violations {
            out(format!("VIOLATION {v}"));
        }
        out(format!(
            "seed {seed} digest {} violations {}",
            o.digest,
            o.violations.len()
        ));
        assert!(o.violations.is_empty(), "seed {seed} violated an invariant");
        return;
    }
    let count: u64 = env("SNODE_SIM_SEEDS", 100);
    let first: u64 = env("SNODE_SIM_FIRST", 1);
    let jobs: usize = env("SNODE_SIM_JOBS", 2);
    let twice: bool = env("SNODE_SIM_TWICE", 0u8) == 1;
    let next = AtomicU64::new(first);
    let done = AtomicU64::new(0);
    let results: Mutex<Vec<Summary>> = Mutex::new(Vec::new());
    let failed: Mutex<Vec<Outcome>> = Mutex::new(Vec::new());
    // Wall time only for the progress line and the table: nothing in a history reads it.
    #[allow(clippy::disallowed_methods)]
    let started = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..jobs {
            s.spawn(|| {
                loop {
                    let seed = next.fetch_add(1, Ordering::Relaxed);
                    if seed >= first + count {
                        return;
                    }
                    let mut o = run(&config(seed));
                    if twice {
                        // The same seed must give the same history, byte for byte.
                        let again = run(&config(seed));
                        if again.digest != o.digest {
                            let line = (0..o.trace.len().max(again.trace.len()))
                                .find(|i| o.trace.get(*i) != again.trace.get(*i))
                                .unwrap_or(0);
                            o.violations.push(format!(
                                "nondeterministic: digests {} and {}, first difference at trace line {line}",
                                o.digest, again.digest
                            ));
                        }
                    }
                    let n = done.fetch_add(1, Ordering::Relaxed) + 1;
                    let bad = o.violations.len();
                    results.lock().expect("results").push(Summary {
                        bad,
                        kinds: kinds_of(&o.violations),
                        faults: o.faults.clone(),
                        acked: o.acked,
                        deletes: o.deletes,
                        expires: o.expires,
                        account_ops: o.account_ops,
                        sim_ms: o.sim_ms,
                        directory: o.directory_events.clone(),
                    });
                    if bad > 0 {
                        eprintln!("\nseed {seed}: {bad} violations; reproduce: {}", o.repro);
                        for v in o.violations.iter().take(5) {
                            eprintln!("  {v}");
                        }
                        failed.lock().expect("failed").push(o);
                    }
                    let secs = started.elapsed().as_secs_f64();
                    eprint!("\r[{n}/{count}] {:.1} histories/s", n as f64 / secs.max(0.001));
                }
            });
        }
    });
    eprintln!();
    let results = results.into_inner().expect("results");
    let mut faults: BTreeMap<&'static str, u64> = KINDS.iter().map(|k| (*k, 0)).collect();
    let (mut acked, mut deletes, mut expires, mut sim_ms, mut violations) = (0, 0, 0, 0, 0);
    let mut account_ops = 0;
    let mut violating = 0;
    let mut by_kind: BTreeMap<&'static str, u64> = BTreeMap::new();
    let mut directory: BTreeMap<&'static str, u64> = BTreeMap::new();
    for r in &results {
        for (k, n) in &r.directory {
            *directory.entry(k).or_default() += n;
        }
        for (k, n) in &r.faults {
            *faults.entry(k).or_default() += n;
        }
        acked += r.acked;
        deletes += r.deletes;
        expires += r.expires;
        account_ops += r.account_ops;
        sim_ms += r.sim_ms;
        violations += r.bad;
        if r.bad > 0 {
            violating += 1;
        }
        for (k, n) in &r.kinds {
            *by_kind.entry(k).or_default() += n;
        }
    }
    out(format!("| histories | {} |", results.len()));
    out(format!(
        "| simulated hours | {:.1} |",
        sim_ms as f64 / 3_600_000.0
    ));
    for (k, n) in &faults {
        out(format!("| faults: {k} | {n} |"));
    }
    for (k, n) in &directory {
        out(format!("| live directory: {k} | {n} |"));
    }
    out(format!("| acknowledged stores | {acked} |"));
    out(format!("| acknowledged deletes | {deletes} |"));
    out(format!("| acknowledged expires | {expires} |"));
    out(format!(
        "| acknowledged delete_all, delete_before, (un)revocations | {account_ops} |"
    ));
    out(format!(
        "| violations | {violations} in {violating} histories |"
    ));
    for (k, n) in &by_kind {
        out(format!("| violations: {k} | {n} |"));
    }
    out(format!(
        "| wall time | {:.0} s |",
        started.elapsed().as_secs_f64()
    ));
    out(format!(
        "{} histories, {violations} violations",
        results.len()
    ));
    let failed = failed.into_inner().expect("failed");
    let seeds: Vec<u64> = failed.iter().map(|o| o.seed).collect();
    assert!(violations == 0, "violating seeds: {seeds:?}");
}
