//! Blocking work — RocksDB reads, writes, scans and WAL syncs — kept off the async workers of
//! a multi-threaded runtime, and run in place on a current-thread runtime.
//!
//! Owns the one rule for where blocking work runs. On the node's multi-threaded runtime it
//! goes to tokio's blocking pool, as `spawn_blocking` always did. On a current-thread runtime
//! (each host of the deterministic simulation, `#[tokio::test]`s) there is no other worker to
//! protect, and a pool thread would make the moment the task resumes depend on the OS
//! scheduler: the same seed would give different histories. There it runs inline, so a
//! simulated history is a function of its seed. Must not decide what the work is.

use std::panic::{AssertUnwindSafe, catch_unwind};

use tokio::runtime::{Handle, RuntimeFlavor};

/// Blocking work that gave no result: it panicked, or its pool thread was cancelled.
#[derive(Debug, thiserror::Error)]
#[error("blocking task failed ({0})")]
pub struct BlockingError(&'static str);

/// Runs `f` where blocking work belongs on the current runtime (module doc) and returns its
/// result; a panic in `f` is caught and becomes an error, as with `spawn_blocking`.
pub async fn run<T, F>(f: F) -> Result<T, BlockingError>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    let inline =
        Handle::try_current().is_ok_and(|h| h.runtime_flavor() == RuntimeFlavor::CurrentThread);
    if inline {
        return catch_unwind(AssertUnwindSafe(f)).map_err(|_| BlockingError("panicked"));
    }
    tokio::task::spawn_blocking(f).await.map_err(|e| {
        if e.is_panic() {
            BlockingError("panicked")
        } else {
            BlockingError("cancelled")
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "current_thread")]
    async fn inline_on_a_current_thread_runtime() {
        let here = std::thread::current().id();
        let there = run(move || std::thread::current().id())
            .await
            .expect("runs");
        assert_eq!(here, there);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn on_the_pool_of_a_multi_thread_runtime() {
        let here = std::thread::current().id();
        let there = run(move || std::thread::current().id())
            .await
            .expect("runs");
        assert_ne!(here, there);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_panic_is_an_error() {
        let r = run(|| -> u8 { panic!("boom") }).await;
        assert!(r.is_err());
    }
}
