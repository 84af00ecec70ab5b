//! Recent request counts: how many stores, retrieves, onion and proxy requests the node served
//! over roughly the last hour, as the original's `reqs(S/R/O/P): a/b/c/d (last 62.3min)`.
//!
//! Owns a small ring of samples of the request counters and the arithmetic over it. Must not
//! count requests itself: the totals come from the metrics catalogue, so the STATUS line,
//! `snode status` and Prometheus never disagree.

use std::collections::VecDeque;
use std::sync::{Mutex, PoisonError};

use prometheus::core::Collector;
use prometheus::proto::LabelPair;
use serde::{Deserialize, Serialize};

use crate::metrics::Metrics;

/// Span the recent counts cover (the original: six 10-minute windows).
pub const WINDOW_MS: i64 = 60 * 60 * 1000;
/// One sample per minute at most: the window needs ≤ 62 samples, whatever the tick rate.
pub const SAMPLE_EVERY_MS: i64 = 60 * 1000;

/// Requests by kind, the original's S/R/O/P.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestCounts {
    /// Client `store` requests.
    pub store: u64,
    /// Client `retrieve` requests.
    pub retrieve: u64,
    /// Onion requests that arrived here, whatever became of them.
    pub onion: u64,
    /// Onion requests this node proxied to an external server.
    pub proxy: u64,
}

impl RequestCounts {
    /// `self - earlier`, field by field (never below zero).
    pub fn since(&self, earlier: &RequestCounts) -> RequestCounts {
        RequestCounts {
            store: self.store.saturating_sub(earlier.store),
            retrieve: self.retrieve.saturating_sub(earlier.retrieve),
            onion: self.onion.saturating_sub(earlier.onion),
            proxy: self.proxy.saturating_sub(earlier.proxy),
        }
    }

    /// The totals so far, read from the node's counters.
    pub fn from_metrics(m: &Metrics) -> RequestCounts {
        let method_is = |name: &'static str| {
            move |labels: &[LabelPair]| {
                labels
                    .iter()
                    .any(|l| l.name() == "method" && l.value() == name)
            }
        };
        RequestCounts {
            store: sum_counters(&m.requests_total, method_is("store")),
            retrieve: sum_counters(&m.requests_total, method_is("retrieve")),
            onion: sum_counters(&m.onion_requests_total, |_| true),
            proxy: sum_counters(&m.onion_requests_total, |labels| {
                labels
                    .iter()
                    .any(|l| l.name() == "outcome" && l.value() == "proxied")
            }),
        }
    }
}

/// Sum of the counter series of `c` whose labels pass `keep`.
pub fn sum_counters(c: &dyn Collector, keep: impl Fn(&[LabelPair]) -> bool) -> u64 {
    c.collect()
        .iter()
        .flat_map(|mf| mf.get_metric())
        .filter(|m| keep(m.get_label()))
        .map(|m| m.get_counter().get_value())
        .sum::<f64>() as u64
}

/// Samples of the totals over the last hour.
#[derive(Debug, Default)]
pub struct RecentRequests {
    samples: Mutex<VecDeque<(i64, RequestCounts)>>,
}

impl RecentRequests {
    /// An empty window.
    pub fn new() -> Self {
        Self::default()
    }

    /// Offers the current totals; kept if the newest sample is a minute old (or none exists).
    pub fn record(&self, now_ms: i64, totals: RequestCounts) {
        // std Mutex: held for a few pushes and pops, never across an await.
        let mut s = self.samples.lock().unwrap_or_else(PoisonError::into_inner);
        if s.back().is_none_or(|(t, _)| now_ms - t >= SAMPLE_EVERY_MS) {
            s.push_back((now_ms, totals));
        }
        // Keep the newest sample at or before the window's start as the baseline, so the
        // span covered is at least the window once the node has run that long.
        while s.len() >= 2 && s[1].0 <= now_ms - WINDOW_MS {
            s.pop_front();
        }
    }

    /// Requests since the oldest kept sample, and the span that covers in ms. Before the
    /// first sample, everything counts and the span is zero.
    pub fn recent(&self, now_ms: i64, totals: RequestCounts) -> (RequestCounts, i64) {
        let s = self.samples.lock().unwrap_or_else(PoisonError::into_inner);
        match s.front() {
            Some((t, base)) => (totals.since(base), (now_ms - t).max(0)),
            None => (totals, 0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(n: u64) -> RequestCounts {
        RequestCounts {
            store: n,
            retrieve: 2 * n,
            onion: 3 * n,
            proxy: n / 2,
        }
    }

    #[test]
    fn counts_since_the_oldest_sample_within_the_hour() {
        let w = RecentRequests::new();
        assert_eq!(w.recent(0, counts(5)), (counts(5), 0));
        w.record(0, counts(0));
        // Ticks every 5 s: only one sample per minute is kept.
        for i in 1..=12 {
            w.record(i * 5_000, counts(i as u64));
        }
        assert_eq!(w.samples.lock().expect("lock").len(), 2);
        assert_eq!(w.recent(60_000, counts(12)), (counts(12), 60_000));

        // Two hours of minute samples, counter growing by 10 a minute.
        for m in 2..=120 {
            w.record(m * 60_000, counts(10 * m as u64));
        }
        let now = 120 * 60_000 + 30_000;
        let (recent, span) = w.recent(now, counts(1_205));
        assert_eq!(
            span,
            60 * 60_000 + 30_000,
            "baseline is the sample an hour ago"
        );
        assert_eq!(recent, counts(1_205).since(&counts(600)));
        assert!(w.samples.lock().expect("lock").len() <= 62);
    }

    #[test]
    fn since_never_goes_negative() {
        assert_eq!(counts(1).since(&counts(4)), RequestCounts::default());
    }

    #[test]
    fn totals_come_from_the_catalogue() {
        let m = Metrics::new();
        m.requests_total
            .with_label_values(&["store", "200"])
            .inc_by(3);
        m.requests_total.with_label_values(&["store", "406"]).inc();
        m.requests_total
            .with_label_values(&["retrieve", "200"])
            .inc_by(2);
        m.requests_total
            .with_label_values(&["info", "200"])
            .inc_by(9);
        m.onion_requests_total
            .with_label_values(&["final"])
            .inc_by(5);
        m.onion_requests_total
            .with_label_values(&["proxied"])
            .inc_by(2);
        assert_eq!(
            RequestCounts::from_metrics(&m),
            RequestCounts {
                store: 4,
                retrieve: 2,
                onion: 7,
                proxy: 2
            }
        );
    }
}
