//! The status monitor: every few seconds, look at the node as an operator would, export what
//! it sees as gauges, log what changed (one line per change, never per tick) and tell systemd.
//!
//! Owns the node's operator-facing state transitions: ready / not ready, reached by peers or
//! not, store near or at its cap. Must not act on them: it observes and reports.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::render::status_line;
use super::window::RequestCounts;
use super::{StatusReport, StatusSource};
use crate::notify::Notifier;

/// How often the monitor looks (and refreshes systemd's STATUS line).
pub const MONITOR_INTERVAL: Duration = Duration::from_secs(5);
/// Store use (percent of the cap) above which the operator is warned before stores fail.
pub const STORE_NEAR_CAP_PERCENT: f64 = 90.0;

/// What the monitor last saw, to log changes only.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Observed {
    /// Ready, or not yet looked.
    pub ready: Option<bool>,
    /// Whether peers reach us (`None`: cannot tell).
    pub reached_by_peers: Option<bool>,
    /// 0 below the warning level, 1 near the cap, 2 at it.
    pub store_level: u8,
}

/// One operator-facing state transition, with the level it is logged at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transition {
    /// The node serves clients now.
    Ready,
    /// The node stopped serving clients (or does not yet, at start), and why.
    NotReady {
        /// Why.
        why: String,
        /// Whether it was ready before (a warning) or is just starting (info).
        was_ready: bool,
    },
    /// No peer has tested us for 2 minutes.
    Unreached,
    /// Peers test us again.
    ReachedAgain,
    /// Store use crossed the warning level or the cap, upwards or downwards.
    Store {
        /// The new level (see `Observed::store_level`).
        level: u8,
        /// Use in percent of the cap.
        percent: u64,
    },
}

fn store_level(r: &StatusReport) -> u8 {
    let p = r.store.used_percent();
    if p >= 100.0 {
        2
    } else if p >= STORE_NEAR_CAP_PERCENT {
        1
    } else {
        0
    }
}

/// The transitions between what was observed and `r` (pure); updates `seen`.
pub fn transitions(seen: &mut Observed, r: &StatusReport) -> Vec<Transition> {
    let mut out = Vec::new();
    let ready = r.not_ready.is_none();
    if seen.ready != Some(ready) {
        out.push(match &r.not_ready {
            None => Transition::Ready,
            Some(why) => Transition::NotReady {
                why: why.clone(),
                was_ready: seen.ready == Some(true),
            },
        });
        seen.ready = Some(ready);
    }
    let reached = r.reachability.reached_by_peers;
    match (seen.reached_by_peers, reached) {
        (prev, Some(false)) if prev != Some(false) => out.push(Transition::Unreached),
        (Some(false), Some(true)) => out.push(Transition::ReachedAgain),
        _ => {}
    }
    if reached.is_some() {
        seen.reached_by_peers = reached;
    }
    let level = store_level(r);
    if level != seen.store_level {
        out.push(Transition::Store {
            level,
            percent: r.store.used_percent() as u64,
        });
        seen.store_level = level;
    }
    out
}

fn log(change: &Transition) {
    match change {
        Transition::Ready => tracing::info!("node ready: serving clients"),
        Transition::NotReady {
            why,
            was_ready: true,
        } => {
            tracing::warn!(reason = %why, "node no longer ready: refusing clients")
        }
        Transition::NotReady {
            why,
            was_ready: false,
        } => {
            tracing::info!(reason = %why, "node not ready yet")
        }
        Transition::Unreached => tracing::warn!(
            "no peer has tested this node for 2 minutes: check that its HTTPS port is reachable \
             from the internet at the address the directory lists"
        ),
        Transition::ReachedAgain => tracing::info!("peers reach this node again"),
        Transition::Store { level: 2, percent } => {
            tracing::warn!(
                percent,
                "store is full: refusing new messages until some expire"
            )
        }
        Transition::Store { level: 1, percent } => {
            tracing::warn!(percent, "store is nearly full")
        }
        Transition::Store { percent, .. } => tracing::info!(percent, "store has room again"),
    }
}

/// Runs until cancelled: samples request counters, exports gauges, logs changes, and — when
/// systemd supervises the node — sends `READY=1` once ready, `STATUS=` every tick and
/// `STOPPING=1` at the end.
pub async fn run(source: StatusSource, notifier: Option<Notifier>, cancel: CancellationToken) {
    let mut tick = tokio::time::interval(MONITOR_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut seen = Observed::default();
    let mut ready_sent = false;
    loop {
        tokio::select! {
            biased;
            _ = cancel.cancelled() => break,
            _ = tick.tick() => {}
        }
        let now = (source.clock)();
        source
            .state
            .recent
            .record(now, RequestCounts::from_metrics(&source.metrics));
        let membership = source.membership.borrow().clone();
        source.state.reachability.retain_listed(&membership);
        let r = source.report();
        export(&source.metrics, &r);
        for c in transitions(&mut seen, &r) {
            log(&c);
        }
        if let Some(n) = &notifier {
            if r.ready && !ready_sent {
                n.ready();
                ready_sent = true;
            }
            n.status(&status_line(&r));
        }
    }
    if let Some(n) = &notifier {
        n.stopping();
    }
}

/// Copies what the report knows into the gauges the dashboard and alerts use.
fn export(m: &crate::metrics::Metrics, r: &StatusReport) {
    m.ready.set(i64::from(r.ready));
    m.peers_tested.set(r.reachability.tested as i64);
    m.peers_unreachable
        .set((r.reachability.tested - r.reachability.reachable) as i64);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::tests::sample_report;

    #[test]
    fn each_change_is_reported_once() {
        let mut seen = Observed::default();
        let mut r = sample_report();
        r.not_ready = Some("not in any swarm".into());
        r.ready = false;
        assert_eq!(
            transitions(&mut seen, &r),
            vec![Transition::NotReady {
                why: "not in any swarm".into(),
                was_ready: false
            }]
        );
        assert_eq!(transitions(&mut seen, &r), vec![], "no change, no line");
        r.not_ready = None;
        r.ready = true;
        assert_eq!(transitions(&mut seen, &r), vec![Transition::Ready]);
        r.not_ready = Some("not in any swarm".into());
        assert_eq!(
            transitions(&mut seen, &r),
            vec![Transition::NotReady {
                why: "not in any swarm".into(),
                was_ready: true
            }]
        );
    }

    #[test]
    fn silence_from_peers_is_reported_once_and_so_is_its_end() {
        let mut seen = Observed::default();
        let mut r = sample_report();
        r.reachability.reached_by_peers = None;
        let _ = transitions(&mut seen, &r);
        r.reachability.reached_by_peers = Some(true);
        assert_eq!(
            transitions(&mut seen, &r),
            vec![],
            "reached from the start is no news"
        );
        r.reachability.reached_by_peers = Some(false);
        assert_eq!(transitions(&mut seen, &r), vec![Transition::Unreached]);
        assert_eq!(transitions(&mut seen, &r), vec![]);
        r.reachability.reached_by_peers = Some(true);
        assert_eq!(transitions(&mut seen, &r), vec![Transition::ReachedAgain]);
    }

    #[test]
    fn store_levels_are_reported_on_crossing() {
        let mut seen = Observed::default();
        let mut r = sample_report();
        r.store.max_bytes = 1000;
        r.store.disk_bytes = 100;
        let _ = transitions(&mut seen, &r);
        r.store.disk_bytes = 950;
        assert_eq!(
            transitions(&mut seen, &r),
            vec![Transition::Store {
                level: 1,
                percent: 95
            }]
        );
        r.store.disk_bytes = 1000;
        assert_eq!(
            transitions(&mut seen, &r),
            vec![Transition::Store {
                level: 2,
                percent: 100
            }]
        );
        assert_eq!(transitions(&mut seen, &r), vec![]);
        r.store.disk_bytes = 10;
        assert_eq!(
            transitions(&mut seen, &r),
            vec![Transition::Store {
                level: 0,
                percent: 1
            }]
        );
    }
}
