//! systemd's notification protocol (`Type=notify`): `READY=1` once the node serves clients,
//! `STATUS=…` every few seconds, `WATCHDOG=1` at half of `WATCHDOG_USEC`, `STOPPING=1` at the
//! end. Sent only when systemd (or anything else) set `NOTIFY_SOCKET`.
//!
//! Owns interpreting what systemd hands the process (`Notifier::from_vars`: the socket path and
//! the watchdog variables, read from the environment by `cli` only and given to the node in
//! `NodeOptions`) and sending the datagrams. Must not decide what to say: the status monitor
//! (`status::monitor`) does. Reads no environment variable itself, so two nodes in one process
//! (tests) can have different notifiers, or none.

use std::ffi::{OsStr, OsString};
use std::os::unix::net::UnixDatagram;
use std::time::Duration;

use sd_notify::NotifyState;
use tokio_util::sync::CancellationToken;

/// A handle on the service manager's notification socket; exists only when the service
/// manager gave one (`NOTIFY_SOCKET`).
#[derive(Debug, Clone)]
pub struct Notifier {
    socket: OsString,
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
    /// The notifier the service manager asked for, from the values of `NOTIFY_SOCKET`,
    /// `WATCHDOG_USEC` and `WATCHDOG_PID` and our pid; `None` without a socket.
    pub fn from_vars(
        socket: Option<&OsStr>,
        watchdog_usec: Option<&str>,
        watchdog_pid: Option<&str>,
        my_pid: u32,
    ) -> Option<Notifier> {
        let socket = socket.filter(|s| !s.is_empty())?;
        Some(Notifier {
            socket: socket.to_owned(),
            watchdog: watchdog_interval(watchdog_usec, watchdog_pid, my_pid),
        })
    }

    /// A notifier sending to `socket` (a path, or `@name` for an abstract socket).
    pub fn new(socket: impl Into<OsString>, watchdog: Option<Duration>) -> Notifier {
        Notifier {
            socket: socket.into(),
            watchdog,
        }
    }

    /// How often the watchdog wants `WATCHDOG=1`, if it is on.
    pub fn watchdog_every(&self) -> Option<Duration> {
        self.watchdog
    }

    fn send(&self, state: NotifyState<'_>) {
        // A failed notification must not take the node down; systemd will notice on its own
        // (start timeout, watchdog) if notifications keep failing.
        if let Err(e) = send_datagram(&self.socket, &format!("{state}\n")) {
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

/// One datagram to the notification socket, as sd_notify(3) sends it. A socket name starting
/// with `@` is in Linux's abstract namespace (systemd uses one for containers); the
/// `sd-notify` crate would treat it as a file path, so the datagram is sent here and the crate
/// only formats the lines.
fn send_datagram(socket: &OsStr, msg: &str) -> std::io::Result<()> {
    let sock = UnixDatagram::unbound()?;
    let bytes = std::os::unix::ffi::OsStrExt::as_bytes(socket);
    #[cfg(target_os = "linux")]
    if let Some(name) = bytes.strip_prefix(b"@") {
        use std::os::linux::net::SocketAddrExt as _;
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
        sock.connect_addr(&addr)?;
        return sock.send(msg.as_bytes()).map(|_| ());
    }
    let _ = bytes;
    sock.connect(socket)?;
    let sent = sock.send(msg.as_bytes())?;
    if sent != msg.len() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::WriteZero,
            "incomplete notification",
        ));
    }
    Ok(())
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
    fn notifier_exists_only_with_a_socket() {
        assert!(Notifier::from_vars(None, Some("30000000"), None, 7).is_none());
        assert!(Notifier::from_vars(Some(OsStr::new("")), None, None, 7).is_none());
        let n = Notifier::from_vars(Some(OsStr::new("/run/x")), Some("30000000"), None, 7);
        assert_eq!(
            n.and_then(|n| n.watchdog_every()),
            Some(Duration::from_secs(15))
        );
    }

    #[test]
    fn datagrams_reach_a_path_socket_and_an_abstract_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        let server = UnixDatagram::bind(&path).unwrap();
        Notifier::new(path.as_os_str(), None).ready();
        let mut buf = [0u8; 64];
        let n = server.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1\n");

        #[cfg(target_os = "linux")]
        {
            use std::os::linux::net::SocketAddrExt as _;
            let name = format!("snode-notify-test-{}", std::process::id());
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(&name).unwrap();
            let server = UnixDatagram::bind_addr(&addr).unwrap();
            Notifier::new(format!("@{name}"), None).stopping();
            let n = server.recv(&mut buf).unwrap();
            assert_eq!(&buf[..n], b"STOPPING=1\n");
        }
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
