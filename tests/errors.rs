//! What an operator sees when `snode` cannot do what it was asked: a non-zero exit and exactly
//! one line on stderr, `error: <context>: <cause>: …`, in which no segment is said twice (a
//! busy port names its OS error once). Each case runs the real binary against a bad setup and
//! must fail fast: a bounded wait, and the process is killed if it outlives it.
//!
//! An unreachable directory does not stop `snode run`: the node starts, logs a warning and
//! retries registration at every poll (a directory restart must not strand a node). The
//! one-shot commands that need the directory or a node, `snode client` and `snode status`,
//! are the ones that fail, and are tested here.

mod common;

use std::collections::HashSet;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// How long a failing command may take (cold start of a debug build on a busy machine).
const DEADLINE: Duration = Duration::from_secs(60);

/// A child process, killed if the test ends (or panics) before it exits.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// `snode args…`, with the environment that could change its output removed.
fn snode(args: &[&str]) -> Command {
    let mut cmd = common::snode_bin();
    cmd.args(args)
        .env_remove("RUST_LOG")
        .env_remove("NOTIFY_SOCKET")
        .env_remove("WATCHDOG_USEC")
        .env_remove("WATCHDOG_PID")
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("SNODE_") {
            cmd.env_remove(k);
        }
    }
    cmd
}

/// `snode run` on loopback with `dir` as data directory, the public HTTPS listener on `port`,
/// the admin listener on `admin` and `extra` flags.
fn run_on(dir: &Path, port: &str, admin: &str, extra: &[&str]) -> Command {
    let mut cmd = snode(&[
        "run",
        "--bind-ip",
        "127.0.0.1",
        "--https-port",
        port,
        "--quic-port",
        "0",
        "--admin-listen",
        admin,
    ]);
    cmd.args(extra).arg("--data-dir").arg(dir);
    cmd
}

/// `snode run` on loopback, port 0 everywhere, with `extra` flags.
fn run(dir: &Path, extra: &[&str]) -> Command {
    run_on(dir, "0", "127.0.0.1:0", extra)
}

/// Runs `cmd`, which must exit non-zero within `DEADLINE`, and returns its one stderr line
/// after checking it: one line, `error: ` first, no `: `-separated segment twice.
async fn fails_with_one_line(mut cmd: Command) -> String {
    let logs = tempfile::tempdir().expect("tempdir");
    let log = logs.path().join("stderr");
    cmd.stderr(Stdio::from(std::fs::File::create(&log).expect("log file")));
    let mut child = Killed(cmd.spawn().expect("snode starts"));
    let status = common::wait_for("snode to exit", DEADLINE, || {
        let exited = child.0.try_wait().expect("try_wait");
        async move { exited }
    })
    .await;
    let err = std::fs::read_to_string(&log).expect("stderr");
    assert!(!status.success(), "{cmd:?} succeeded; stderr:\n{err}");
    let line = err
        .strip_suffix('\n')
        .unwrap_or_else(|| panic!("stderr does not end in a line break: {err:?}"));
    assert!(!line.contains('\n'), "more than one line on stderr:\n{err}");
    assert!(line.starts_with("error: "), "{line}");
    let mut seen = HashSet::new();
    for segment in line.split(": ") {
        assert!(seen.insert(segment), "{segment:?} is said twice in: {line}");
    }
    assert!(
        line.matches("os error").count() <= 1,
        "an OS error is said twice in: {line}"
    );
    line.to_owned()
}

/// `needle` occurs exactly once in `line`.
fn once(line: &str, needle: &str) {
    assert_eq!(
        line.matches(needle).count(),
        1,
        "{needle:?} once in: {line}"
    );
}

/// A data directory made by the real `snode init`, with an empty node.toml.
fn data_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    common::cli_init(dir.path());
    std::fs::write(dir.path().join("node.toml"), "").expect("write node.toml");
    dir
}

/// A loopback address nothing listens on (bound, then closed), and what connecting to it
/// says.
fn closed_port() -> (SocketAddr, String) {
    let addr = TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr");
    let refused = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .expect_err("nothing listens")
        .to_string();
    (addr, refused)
}

/// What binding `addr` says while `_busy` holds it.
fn bind_error(addr: SocketAddr) -> String {
    TcpListener::bind(addr)
        .expect_err("port is busy")
        .to_string()
}

#[tokio::test]
async fn busy_https_port() {
    let dir = data_dir();
    let busy = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = busy.local_addr().expect("addr");
    let port = addr.port().to_string();
    let line = fails_with_one_line(run_on(dir.path(), &port, "127.0.0.1:0", &[])).await;
    once(&line, &format!("cannot listen on {addr} (public HTTPS)"));
    once(&line, &bind_error(addr));
}

#[tokio::test]
async fn busy_admin_port() {
    let dir = data_dir();
    let busy = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = busy.local_addr().expect("addr");
    let line = fails_with_one_line(run_on(dir.path(), "0", &addr.to_string(), &[])).await;
    once(&line, &format!("cannot listen on {addr} (admin)"));
    once(&line, &bind_error(addr));
}

#[tokio::test]
async fn unknown_config_key() {
    let dir = data_dir();
    let toml = dir.path().join("node.toml");
    std::fs::write(&toml, "[network]\nhttps_prot = 5\n").expect("write");
    let line = fails_with_one_line(run(dir.path(), &[])).await;
    once(&line, &format!("invalid config file {}", toml.display()));
    once(&line, "https_prot");
}

#[tokio::test]
async fn malformed_config() {
    let dir = data_dir();
    let toml = dir.path().join("node.toml");
    std::fs::write(&toml, "[network\nhttps_port = 1\n").expect("write");
    let line = fails_with_one_line(run(dir.path(), &[])).await;
    once(&line, &format!("invalid config file {}", toml.display()));
}

#[tokio::test]
async fn missing_config_file() {
    let dir = data_dir();
    let toml = dir.path().join("absent.toml");
    let line = fails_with_one_line(run(dir.path(), &["--config", &toml.to_string_lossy()])).await;
    once(
        &line,
        &format!("cannot read config file {}", toml.display()),
    );
    once(&line, "os error");
}

#[tokio::test]
async fn missing_key_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let line = fails_with_one_line(run(dir.path(), &[])).await;
    once(&line, "key_ed25519");
}

#[tokio::test]
async fn unreachable_directory_for_the_client() {
    let dir = tempfile::tempdir().expect("tempdir");
    let id = dir.path().join("alice.id");
    let out = snode(&["client", "new-id", "--out"])
        .arg(&id)
        .output()
        .expect("new-id");
    assert!(out.status.success(), "{out:?}");
    let (addr, refused) = closed_port();
    let url = format!("http://{addr}");
    let mut poll = snode(&["client", "--directory", &url, "--id"]);
    poll.arg(&id).arg("poll");
    let line = fails_with_one_line(poll).await;
    once(&line, "cannot get the node list");
    once(&line, &url);
    once(&line, &refused);
}

#[tokio::test]
async fn unreachable_node_for_status() {
    let (addr, refused) = closed_port();
    let line = fails_with_one_line(snode(&["status", "--admin", &addr.to_string()])).await;
    once(&line, &addr.to_string());
    once(&line, "did not answer");
    once(&line, &refused);
}

/// The library's error variants that carry a cause, made with a recognisable cause: each
/// names its own context only (its message does not hold its cause's), and the printed chain
/// says the cause once. Covers the variants no bad setup above reaches.
#[test]
fn no_variant_repeats_its_cause() {
    use snode::client::identity::IdentityError;
    use snode::client::paths::PathError;
    use snode::client::state::StateError;
    use snode::client::transport::SendError;
    use snode::client::{ClientError, LastAttempt};
    use snode::config::{ConfigError, TomlError};
    use snode::directory::client::DirectoryClientError;
    use snode::directory::persist::PersistError;
    use snode::directory::server::DirectoryError;
    use snode::keys::KeyError;
    use snode::node::NodeError;
    use snode::replication::ReplicationError;
    use snode::status::client::StatusError;
    use snode::store::StoreError;
    use snode::tls::TlsError;
    use std::error::Error;
    use std::path::PathBuf;

    const CAUSE: &str = "disk on fire";
    let io = || std::io::Error::other(CAUSE);
    let path = || PathBuf::from("/var/lib/snode/file");
    let addr: SocketAddr = "127.0.0.1:22021".parse().expect("addr");
    let json = || serde_json::from_str::<u8>("disk on fire").expect_err("not JSON");
    let toml = || toml::from_str::<snode::config::Config>("disk = on fire").expect_err("bad");
    let cases: Vec<Box<dyn Error + 'static>> = vec![
        Box::new(NodeError::Bind {
            what: "admin",
            addr,
            source: io(),
        }),
        Box::new(NodeError::Keys(KeyError::Io {
            path: path(),
            source: io(),
        })),
        Box::new(NodeError::Tls(TlsError::Write {
            path: path(),
            source: io(),
        })),
        Box::new(NodeError::Store {
            path: path(),
            source: StoreError::Full { used: 2, max: 1 },
        }),
        Box::new(NodeError::Directory {
            url: "http://127.0.0.1:1".into(),
            source: DirectoryClientError::Encode {
                url: "http://127.0.0.1:1".into(),
                source: json(),
            },
        }),
        Box::new(ConfigError::Read {
            path: path(),
            source: io(),
        }),
        Box::new(ConfigError::Parse {
            path: path(),
            source: TomlError(toml()),
        }),
        Box::new(DirectoryError::DataDir {
            path: path(),
            source: io(),
        }),
        Box::new(DirectoryError::Load(PersistError::Io {
            path: path(),
            source: io(),
        })),
        Box::new(DirectoryError::Bind { addr, source: io() }),
        Box::new(PersistError::Json {
            path: path(),
            source: json(),
        }),
        Box::new(StatusError::RunFile {
            path: path(),
            dir: "/var/lib/snode".into(),
            source: io(),
        }),
        Box::new(StatusError::NotAReport {
            addr,
            source: json(),
        }),
        Box::new(StateError::Io {
            what: "read",
            path: path(),
            source: io(),
        }),
        Box::new(StateError::Corrupt {
            path: path(),
            source: json(),
        }),
        Box::new(IdentityError::Io {
            what: "read",
            path: path(),
            source: io(),
        }),
        Box::new(ClientError::Directory(DirectoryClientError::Encode {
            url: "http://127.0.0.1:1".into(),
            source: json(),
        })),
        Box::new(ClientError::Unreachable {
            method: "store".into(),
            attempts: 3,
            last: LastAttempt::Failed(SendError::NoPath(PathError::NoNodes)),
        }),
        Box::new(ReplicationError::Store {
            op: "hand-off",
            source: StoreError::Full { used: 2, max: 1 },
        }),
    ];
    for e in &cases {
        let line = snode::error::chain(e.as_ref()).to_string();
        let own = e.to_string();
        let cause = e.source().expect("a cause").to_string();
        assert!(!own.contains(&cause), "{own:?} repeats its cause {cause:?}");
        assert!(!line.contains('\n'), "{line:?}");
        let mut seen = HashSet::new();
        for segment in line.split(": ") {
            assert!(seen.insert(segment), "{segment:?} is said twice in: {line}");
        }
        assert!(line.matches(CAUSE).count() <= 1, "{line}");
    }
}
