//! Time: the one reading of the wall clock, and the `Clock` handle through which every
//! time-dependent decision (TTLs, expiries, signature windows, report timestamps) gets it.
//!
//! Owns `wall_clock_ms`, the only call of `SystemTime::now` in the crate (clippy.toml bans it,
//! and `std::time::Instant::now`, everywhere else). Code that decides something from the time
//! takes a `Clock` or a `now_ms` parameter instead of reading the clock itself, so tests (and a
//! simulation) can fix or skew it per node. Durations and deadlines use `tokio::time::Instant`,
//! which a paused test runtime controls. Must not do anything but tell the time.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch, as a per-node handle (one node's clock may be skewed).
pub type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;

/// Wall-clock milliseconds since the Unix epoch. A clock set before 1970 reads 0 and one past
/// the year 292 million saturates at `i64::MAX`, so callers never see a wrapped negative time.
#[allow(clippy::disallowed_methods)] // the one place that reads the system clock
pub fn wall_clock_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// The real wall clock as a `Clock`.
pub fn wall() -> Clock {
    Arc::new(wall_clock_ms)
}

/// A clock that always reads `ms` (tests, and replays where time is an input).
pub fn fixed(ms: i64) -> Clock {
    Arc::new(move || ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wall_clock_is_after_2020_and_monotone_enough() {
        let a = wall_clock_ms();
        let b = wall()();
        assert!(a > 1_577_836_800_000, "{a}");
        assert!(b >= a);
    }

    #[test]
    fn fixed_clock_reads_its_value() {
        assert_eq!(fixed(42)(), 42);
        assert_eq!(fixed(i64::MAX)(), i64::MAX);
    }
}
