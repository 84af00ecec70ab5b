//! The fault plan of one history: which faults happen, to whom and when, all drawn from the
//! seed before the history starts, so a seed names one plan.
//!
//! Owns the choice of faults and their timing; applying them to turmoil is the driver's job
//! (`mod.rs`). Every fault ends by `heal_ms`: crashed nodes are restarted, partitions and
//! flaky links repaired, latency back to normal. Clock skews stay: a skewed clock is a
//! property of a node, not a fault that heals.

use rand::Rng as _;
use rand_chacha::ChaCha8Rng;

/// Fault kinds, as the summary counts them.
pub const KINDS: [&str; 6] = [
    "crash",
    "disk_loss",
    "partition",
    "delay_loss",
    "skew",
    "churn",
];

/// Which fault kinds a run may draw.
#[derive(Clone, Copy, Debug)]
pub struct FaultMix {
    pub crash: bool,
    pub disk_loss: bool,
    pub partition: bool,
    pub delay_loss: bool,
    pub skew: bool,
    pub churn: bool,
}

impl FaultMix {
    /// Every kind the harness implements.
    pub const ALL: FaultMix = FaultMix {
        crash: true,
        disk_loss: true,
        partition: true,
        delay_loss: true,
        skew: true,
        churn: true,
    };
    /// No faults: the baseline.
    pub const NONE: FaultMix = FaultMix {
        crash: false,
        disk_loss: false,
        partition: false,
        delay_loss: false,
        skew: false,
        churn: false,
    };

    /// The kinds on, as `parse` reads them (`none` when none).
    pub fn name(&self) -> String {
        let on = [
            ("crash", self.crash),
            ("disk_loss", self.disk_loss),
            ("partition", self.partition),
            ("delay_loss", self.delay_loss),
            ("skew", self.skew),
            ("churn", self.churn),
        ];
        let names: Vec<&str> = on.iter().filter(|(_, b)| *b).map(|(n, _)| *n).collect();
        if names.is_empty() {
            "none".into()
        } else {
            names.join(",")
        }
    }

    /// Parses `crash,disk_loss,…` (or `all`, `none`).
    pub fn parse(s: &str) -> Result<FaultMix, String> {
        let mut m = FaultMix::NONE;
        for k in s.split(',').map(str::trim).filter(|k| !k.is_empty()) {
            match k {
                "all" => m = FaultMix::ALL,
                "none" => {}
                "crash" => m.crash = true,
                "disk_loss" => m.disk_loss = true,
                "partition" => m.partition = true,
                "delay_loss" => m.delay_loss = true,
                "skew" => m.skew = true,
                "churn" => m.churn = true,
                other => {
                    return Err(format!(
                        "unknown fault kind {other:?} (known: {})",
                        KINDS.join(",")
                    ));
                }
            }
        }
        Ok(m)
    }
}

/// One thing the driver does to the simulated world.
#[derive(Clone, Debug)]
pub enum Action {
    /// Kill the node's process (its RocksDB directory stays as it was); with `wipe`, its
    /// store directory is deleted too (a lost disk) and it rejoins empty on restart.
    Crash { node: usize, wipe: bool },
    /// Start the node's software again on its data directory.
    Restart { node: usize },
    /// Cut every link between `side` and the other nodes (the client stays with the others).
    Partition { side: Vec<usize> },
    /// Make the links of `node` flaky: each step a healthy link breaks with `rate`, and a
    /// broken one comes back with turmoil's repair rate; and slow, up to `max_latency_ms`.
    Flaky {
        node: usize,
        rate: f64,
        max_latency_ms: u64,
    },
    /// The directory admits `node` (running, but not yet listed) and reassigns swarms with
    /// oxend's rules drawn from `seed`; nodes hear of it over the next seconds, each on its
    /// own poll.
    Join { node: usize, seed: u64 },
    /// The directory decommissions `node` (it keeps running, owns nothing, and must hand its
    /// data to the new owners before deleting it) and reassigns swarms from `seed`.
    Leave { node: usize, seed: u64 },
    /// Set the node's clock offset.
    Skew { node: usize, offset_ms: i64 },
    /// The end of faults: repair every link, restore latency, restart whoever is down.
    Heal,
}

/// An action at a simulated time (ms since the history began).
#[derive(Clone, Debug)]
pub struct Event {
    pub at_ms: u64,
    pub action: Action,
}

/// The plan: events in time order, and when faults end.
pub struct Plan {
    pub events: Vec<Event>,
    pub heal_ms: u64,
}

/// Draws a plan for `nodes` nodes, of which `0..members` are listed from the start, with
/// faults in `[start_ms, heal_ms)`.
pub fn draw(
    rng: &mut ChaCha8Rng,
    nodes: usize,
    members: usize,
    mix: FaultMix,
    start_ms: u64,
    heal_ms: u64,
) -> Plan {
    let mut ev = Vec::new();
    let span = heal_ms - start_ms;
    let at = |rng: &mut ChaCha8Rng| start_ms + rng.gen_range(0..span.max(1));
    if mix.skew {
        // A few nodes run with a clock off by up to ±30 s from the start.
        for n in 0..nodes {
            if rng.gen_bool(0.3) {
                let offset_ms = rng.gen_range(-30_000..=30_000);
                ev.push(Event {
                    at_ms: 0,
                    action: Action::Skew { node: n, offset_ms },
                });
            }
        }
    }
    if mix.crash || mix.disk_loss {
        let count = rng.gen_range(1..=3);
        for _ in 0..count {
            let node = rng.gen_range(0..nodes);
            let t = at(rng);
            let wipe = mix.disk_loss && (!mix.crash || rng.gen_bool(0.4));
            let down = rng.gen_range(500..20_000);
            ev.push(Event {
                at_ms: t,
                action: Action::Crash { node, wipe },
            });
            ev.push(Event {
                at_ms: (t + down).min(heal_ms),
                action: Action::Restart { node },
            });
        }
    }
    if mix.partition {
        let count = rng.gen_range(1..=2);
        for _ in 0..count {
            let size = rng.gen_range(1..=nodes / 2);
            let mut side: Vec<usize> = (0..nodes).collect();
            for i in (1..side.len()).rev() {
                let j = rng.gen_range(0..=i);
                side.swap(i, j);
            }
            side.truncate(size);
            side.sort_unstable();
            ev.push(Event {
                at_ms: at(rng),
                action: Action::Partition { side },
            });
        }
    }
    if mix.delay_loss {
        let count = rng.gen_range(1..=3);
        for _ in 0..count {
            let node = rng.gen_range(0..nodes);
            let rate = rng.gen_range(0.001..0.02);
            let max_latency_ms = rng.gen_range(10..2_000);
            ev.push(Event {
                at_ms: at(rng),
                action: Action::Flaky {
                    node,
                    rate,
                    max_latency_ms,
                },
            });
        }
    }
    if mix.churn {
        // In time order, so each join takes a node not listed then, and each leave keeps at
        // least the 5 nodes a swarm needs.
        let mut listed: Vec<bool> = (0..nodes).map(|n| n < members).collect();
        let count = rng.gen_range(1..=3);
        let mut times: Vec<u64> = (0..count).map(|_| at(rng)).collect();
        times.sort_unstable();
        for t in times {
            let out: Vec<usize> = (0..nodes).filter(|n| !listed[*n]).collect();
            let inn: Vec<usize> = (0..nodes).filter(|n| listed[*n]).collect();
            let join = !out.is_empty() && (inn.len() <= 6 || rng.gen_bool(0.5));
            let seed = rng.r#gen();
            let action = if join {
                let node = out[rng.gen_range(0..out.len())];
                listed[node] = true;
                Action::Join { node, seed }
            } else if inn.len() > 6 {
                let node = inn[rng.gen_range(0..inn.len())];
                listed[node] = false;
                Action::Leave { node, seed }
            } else {
                continue;
            };
            ev.push(Event { at_ms: t, action });
        }
    }
    ev.push(Event {
        at_ms: heal_ms,
        action: Action::Heal,
    });
    // Stable: equal times keep their drawing order, so the plan is a function of the seed.
    ev.sort_by_key(|e| e.at_ms);
    Plan {
        events: ev,
        heal_ms,
    }
}
