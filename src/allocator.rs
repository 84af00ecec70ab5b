//! The process allocator (jemalloc, chosen in `main.rs`): its statistics, so an operator can
//! tell memory the node uses (`allocated`) from memory the allocator keeps from the OS
//! (`resident`, `retained`), and its background purge.
//!
//! Owns every `jemalloc-ctl` call. Must not choose the global allocator (the binary does):
//! under the library's tests the system allocator is global and these figures stay near 0.

/// One reading of the allocator's counters, in bytes (jemalloc's `stats.*`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AllocatorStats {
    /// Bytes the program holds in live allocations.
    pub allocated: u64,
    /// Bytes in pages with live allocations (allocated plus fragmentation inside them).
    pub active: u64,
    /// Bytes of physically resident pages the allocator maps (includes its metadata and
    /// freed pages not yet given back).
    pub resident: u64,
    /// Bytes of virtual memory kept for reuse and not returned (not resident).
    pub retained: u64,
}

impl AllocatorStats {
    /// The counters by metric label, in a fixed order.
    pub fn by_kind(&self) -> [(&'static str, u64); 4] {
        [
            ("allocated", self.allocated),
            ("active", self.active),
            ("resident", self.resident),
            ("retained", self.retained),
        ]
    }
}

/// Reads the counters (jemalloc caches them until the epoch advances, so this advances it).
/// `None` when the allocator cannot be read.
pub fn stats() -> Option<AllocatorStats> {
    use tikv_jemalloc_ctl::{epoch, stats};
    epoch::advance().ok()?;
    let as_u64 = |n: usize| u64::try_from(n).unwrap_or(u64::MAX);
    Some(AllocatorStats {
        allocated: as_u64(stats::allocated::read().ok()?),
        active: as_u64(stats::active::read().ok()?),
        resident: as_u64(stats::resident::read().ok()?),
        retained: as_u64(stats::retained::read().ok()?),
    })
}

/// Starts jemalloc's background threads, which give freed pages back to the OS on their
/// decay schedule (10 s) also while the node is idle. Without them purging happens only
/// inside later allocations, so the memory a burst of recovery traffic freed stayed resident
/// on a quiet node. Returns whether they run.
pub fn start_background_purge() -> bool {
    tikv_jemalloc_ctl::background_thread::write(true).is_ok()
}

#[cfg(test)]
mod tests {
    #[test]
    fn stats_read_and_order_is_fixed() {
        let s = super::stats().expect("jemalloc stats");
        let kinds: Vec<&str> = s.by_kind().iter().map(|(k, _)| *k).collect();
        assert_eq!(kinds, ["allocated", "active", "resident", "retained"]);
        assert!(s.active >= s.allocated, "{s:?}");
    }
}
