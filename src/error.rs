//! How an error and its causes read on one line: `context: cause: cause`.
//!
//! Owns the one rule for error messages in this crate: a variant's text names its own
//! context only, and its cause stays a cause (`#[source]`/`#[from]`), printed once, by
//! [`chain`]. The command line (`main`) and log lines (`error = %chain(&e)`) both print
//! errors through it, so a cause is neither lost nor said twice.

use std::error::Error;
use std::fmt;

/// `e` and its causes, `: `-separated, on one line (see [`Chain`]).
pub fn chain<'a>(e: &'a (dyn Error + 'static)) -> Chain<'a> {
    Chain(e)
}

/// Displays an error and its `source()` chain as `a: b: c`.
///
/// Line breaks inside a message (some libraries quote input over several lines) become
/// spaces, so the whole chain is one line. Nothing is left out: a message that repeats its
/// source shows twice, which `tests/errors.rs` catches.
#[derive(Clone, Copy)]
pub struct Chain<'a>(&'a (dyn Error + 'static));

impl fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&one_line(&self.0.to_string()))?;
        let mut next = self.0.source();
        while let Some(e) = next {
            write!(f, ": {}", one_line(&e.to_string()))?;
            next = e.source();
        }
        Ok(())
    }
}

impl fmt::Debug for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// `s` with each run of line breaks (and the indentation after them) replaced by one space.
fn one_line(s: &str) -> String {
    let s = s.trim();
    if !s.contains(['\n', '\r']) {
        return s.to_owned();
    }
    s.split(['\n', '\r'])
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("cannot listen on 127.0.0.1:1 (admin)")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn prints_context_then_each_cause_once() {
        let io = std::io::Error::from(std::io::ErrorKind::AddrInUse);
        let want = format!("cannot listen on 127.0.0.1:1 (admin): {io}");
        assert_eq!(chain(&Outer(io)).to_string(), want);
    }

    #[test]
    fn multi_line_messages_become_one_line() {
        let io = std::io::Error::other("line one\n  |\n  line two\n");
        assert_eq!(chain(&io).to_string(), "line one | line two");
    }

    #[test]
    fn anyhow_context_chains_print_the_same() {
        let e = anyhow::Error::new(Outer(std::io::Error::other("busy"))).context("snode run");
        let dyn_e: &(dyn Error + 'static) = e.as_ref();
        assert_eq!(
            chain(dyn_e).to_string(),
            "snode run: cannot listen on 127.0.0.1:1 (admin): busy"
        );
    }
}
