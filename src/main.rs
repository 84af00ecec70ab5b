//! The `snode` binary: parse the command line, run it, print one line on failure.

use clap::Parser as _;
use std::process::ExitCode;

fn main() -> ExitCode {
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
