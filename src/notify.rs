//! systemd's notification protocol (`Type=notify`): `READY=1` once the node serves clients,
//! `STATUS=…` every few seconds, `WATCHDOG=1` at half of `WATCHDOG_USEC`, `STOPPING=1` at the
//! end. Sent only when systemd (or anything else) set `NOTIFY_SOCKET`.
//!
//! Owns reading the environment systemd sets and sending datagrams through the `sd-notify`
//! crate. Must not decide what to say: the status monitor (`status::monitor`) does. Never
//! changes the environment (the crate's `unset_env` is always false), so nothing here is
//! process-global beyond what systemd handed the process.

use std::time::Duration;

use sd_notify::NotifyState;
use tokio_util::sync::CancellationToken;

/// A handle on the service manager's notification socket; exists only when `NOTIFY_SOCKET`
/// is set.
#[derive(Debug, Clone)]
pub struct Notifier {
    watchdog: Option<Duration>,
}

/// How often to send `WATCHDOG=1`: half of `WATCHDOG_USEC`, as sd_watchdog_enabled(3)
/// recommends, unless `WATCHDOG_PID` names another process. `None` when there is no
/// watchdog (unset, unparsable or zero).
pub fn watchdog_interval(usec: Option<&str>, pid: Option<&str>, my_pid: u32) -> Option<Duration> {
    let usec: u64 = usec?.trim().parse().ok()?;
    if usec == 0 {
        return None;
    }
    // systemd sets WATCHDOG_PID to the main process; a child that inherited the variables
    // must not keep the watchdog of its parent alive. Unset means "this process".
    if let Some(pid) = pid
        && pid.trim().parse::<u32>().ok()? != my_pid
    {
        return None;
    }
    Some(Duration::from_micros(usec / 2))
}

impl Notifier {
    /// The notifier systemd asked for, or `None` when `NOTIFY_SOCKET` is not set.
    pub fn from_env() -> Option<Notifier> {
        let socket = std::env::var_os("NOTIFY_SOCKET")?;
        if socket.is_empty() {
            return None;
        }
        let var = |k: &str| std::env::var(k).ok();
        Some(Notifier {
            watchdog: watchdog_interval(
                var("WATCHDOG_USEC").as_deref(),
                var("WATCHDOG_PID").as_deref(),
                std::process::id(),
            ),
        })
    }

    /// How often the watchdog wants `WATCHDOG=1`, if it is on.
    pub fn watchdog_every(&self) -> Option<Duration> {
        self.watchdog
    }

    fn send(&self, state: NotifyState<'_>) {
        // A failed notification must not take the node down; systemd will notice on its own
        // (start timeout, watchdog) if notifications keep failing.
        if let Err(e) = sd_notify::notify(false, &[state]) {
            tracing::debug!(error = %e, "systemd notification failed");
        }
    }

    /// `READY=1`: start-up is finished.
    pub fn ready(&self) {
        self.send(NotifyState::Ready);
    }

    /// `STATUS=<line>` (newlines would end the field: they become spaces).
    pub fn status(&self, line: &str) {
        let line = line.replace('\n', " ");
        self.send(NotifyState::Status(&line));
    }

    /// `WATCHDOG=1`: still alive.
    pub fn watchdog(&self) {
        self.send(NotifyState::Watchdog);
    }

    /// `STOPPING=1`: shutting down.
    pub fn stopping(&self) {
        self.send(NotifyState::Stopping);
    }
}

/// Sends `WATCHDOG=1` every `every` until cancelled. Runs on the node's runtime, so a wedged
/// runtime stops the pings and systemd restarts the node.
pub async fn watchdog(notifier: Notifier, every: Duration, cancel: CancellationToken) {
    let mut tick = tokio::time::interval(every.max(Duration::from_millis(10)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            _ = cancel.cancelled() => return,
            _ = tick.tick() => notifier.watchdog(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watchdog_pings_at_half_the_timeout() {
        assert_eq!(
            watchdog_interval(Some("30000000"), None, 7),
            Some(Duration::from_secs(15))
        );
        assert_eq!(
            watchdog_interval(Some("30000000"), Some("7"), 7),
            Some(Duration::from_secs(15))
        );
    }

    #[test]
    fn no_watchdog_when_unset_zero_garbage_or_meant_for_another_process() {
        assert_eq!(watchdog_interval(None, None, 7), None);
        assert_eq!(watchdog_interval(Some("0"), None, 7), None);
        assert_eq!(watchdog_interval(Some("soon"), None, 7), None);
        assert_eq!(watchdog_interval(Some("30000000"), Some("8"), 7), None);
        assert_eq!(watchdog_interval(Some("30000000"), Some("x"), 7), None);
    }

    #[test]
    fn notifications_are_the_protocols_lines() {
        // What the crate puts in the datagram for each call above.
        assert_eq!(NotifyState::Ready.to_string(), "READY=1");
        assert_eq!(NotifyState::Watchdog.to_string(), "WATCHDOG=1");
        assert_eq!(NotifyState::Stopping.to_string(), "STOPPING=1");
        assert_eq!(
            NotifyState::Status("v2.8.0; sw=none").to_string(),
            "STATUS=v2.8.0; sw=none"
        );
    }
}
