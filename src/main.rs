//! The `snode` binary: parse the command line, run it, print one line on failure.

use clap::Parser as _;
use std::process::ExitCode;

/// jemalloc instead of glibc's malloc: under RocksDB and bursts of multi-MiB peer batches
/// (recovery after a peer restarts), glibc's per-thread arenas kept every peak, and a node's
/// RSS grew by a third in five minutes of the soak; jemalloc gives freed pages back. With the
/// crate's `override_allocator_on_supported_platforms` feature it is also the process's
/// `malloc`, so RocksDB's C++ allocations use it too: over the last five minutes of the soak
/// RSS then grew +0.1 % to +8.6 % on the nodes not restarted meanwhile, against +4 % to +37 %
/// with two glibc arenas for RocksDB (BENCHMARKS.md "Soak", runs G and H).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    // Before any thread starts: freed memory goes back to the OS also while the node idles.
    snode::allocator::start_background_purge();
    let cli = snode::cli::Cli::parse();
    match snode::cli::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line naming the problem and then each cause once, for operators and scripts.
            eprintln!("error: {}", snode::error::chain(e.as_ref()));
            ExitCode::FAILURE
        }
    }
}
