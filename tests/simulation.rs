//! Deterministic simulation (docs/simulation.md): a fixed set of seeds through the harness of
//! `tests/sim`, the checker shown to catch a lost message, the same seed shown to give the same
//! history, and the many-seed sweep `scripts/simulate` runs (ignored here).

mod sim;

use sim::plan::FaultMix;
use sim::{SimConfig, run};

/// Prints a failing history's reproduction line, its violations and its trace.
fn report(o: &sim::Outcome) -> String {
    let mut s = format!(
        "seed {} violated ({} violations); reproduce: {}\n",
        o.seed,
        o.violations.len(),
        o.repro
    );
    for v in &o.violations {
        s.push_str(&format!("  {v}\n"));
    }
    s.push_str("trace:\n");
    for l in &o.trace {
        s.push_str(&format!("  {l}\n"));
    }
    s
}

#[test]
fn baseline_without_faults_loses_nothing() {
    let mut cfg = SimConfig::new(1);
    cfg.faults = FaultMix::NONE;
    let o = run(&cfg);
    assert!(o.violations.is_empty(), "{}", report(&o));
    assert!(o.acked > 10, "too few acknowledged stores: {}", o.acked);
}

/// Seeds whose plans together draw every fault kind but churn; each must hold every
/// invariant, and each gives one history (see `same_seed_same_history`). A seed the
/// simulation once failed on stays here as a regression case once its bug is fixed.
const FIXED_SEEDS: &[u64] = &[200, 201, 202, 203];

fn no_churn(seed: u64) -> SimConfig {
    let mut cfg = SimConfig::new(seed);
    cfg.faults = FaultMix::NO_CHURN;
    cfg
}

#[test]
fn fixed_seeds_hold_every_invariant() {
    let mut kinds = std::collections::BTreeMap::new();
    for &seed in FIXED_SEEDS {
        let o = run(&no_churn(seed));
        assert!(o.violations.is_empty(), "{}", report(&o));
        for (k, n) in &o.faults {
            *kinds.entry(*k).or_insert(0) += n;
        }
    }
    for k in ["crash", "disk_loss", "partition", "delay_loss", "skew"] {
        assert!(kinds[k] > 0, "no seed drew a {k} fault: {kinds:?}");
    }
}

/// Membership churn (joins and decommissions, so hand-off moves data between swarms) with
/// crashes and skewed clocks; partitions and flaky links are left out here because with them
/// the delete-before-store bug below shows up in some interleavings of a churn history.
#[test]
fn churn_loses_nothing() {
    let mut cfg = SimConfig::new(6);
    cfg.faults = FaultMix::parse("churn,crash,skew").expect("mix");
    let o = run(&cfg);
    assert!(o.violations.is_empty(), "{}", report(&o));
    assert!(
        o.faults["churn"] > 0,
        "seed 6 drew no churn: {:?}",
        o.faults
    );
}

/// Found by the simulation (docs/simulation.md "Findings"): a delete that
/// reaches a member before the message does (the entry that took the store was partitioned
/// away) leaves no tombstone there, so the store's retried forward brings the message back on
/// every such member. Ignored until the store keeps a tombstone for a delete of a hash it does
/// not hold and forwarded stores respect it; then these seeds join `FIXED_SEEDS`.
#[test]
#[ignore = "known bug: delete before store resurrects (docs/simulation.md)"]
fn regression_delete_before_store() {
    for &seed in DELETE_BEFORE_STORE_SEEDS {
        let o = run(&no_churn(seed));
        assert!(o.violations.is_empty(), "{}", report(&o));
    }
}

/// Seeds (without churn) on which the checker reports the delete-before-store resurrection.
const DELETE_BEFORE_STORE_SEEDS: &[u64] = &[213, 224];

#[test]
fn same_seed_same_history() {
    for seed in [5, 11] {
        let a = run(&no_churn(seed));
        let b = run(&no_churn(seed));
        if let Some(i) =
            (0..a.trace.len().max(b.trace.len())).find(|i| a.trace.get(*i) != b.trace.get(*i))
        {
            panic!(
                "seed {seed} gave two histories; first difference at line {i}:\n  {:?}\n  {:?}",
                a.trace.get(i),
                b.trace.get(i)
            );
        }
        assert_eq!(a.digest, b.digest);
    }
}

#[test]
fn checker_reports_a_dropped_acknowledged_store() {
    let mut cfg = SimConfig::new(1);
    cfg.faults = FaultMix::NONE;
    cfg.sabotage = true;
    let o = run(&cfg);
    assert!(
        o.violations.iter().any(|v| v.contains("I1 lost")),
        "the checker missed a dropped store: {:?}",
        o.violations
    );
}

/// `scripts/simulate`: many seeds, or one replayed (`SNODE_SIM_SEED`), from the environment.
#[test]
#[ignore = "run by scripts/simulate"]
fn sweep() {
    sim::sweep::main();
}
