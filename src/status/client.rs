//! The client side of `snode status`: find a running node's admin listener from its data
//! directory (`snode.run.json`, written by `snode run`) and fetch its `GET /status`.
//!
//! Owns locating and fetching only; rendering is `render`'s. Talks plain HTTP to the admin
//! listener, which is loopback (or a private address) by design.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::StatusReport;

/// Name of the file `snode run` writes in its data directory once it listens (pid and bound
/// ports), for `snode status`, scripts and tests that start nodes on port 0. Its reader is
/// below; the writer is `cli`'s `run`.
pub const RUN_FILE: &str = "snode.run.json";

/// How long `snode status` waits for the node.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// Why the status could not be fetched.
#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    /// No run file: the node is not running from this data directory (or never listened).
    #[error("cannot read {path} (is `snode run --data-dir {dir}` running?)")]
    RunFile {
        /// The run file.
        path: PathBuf,
        /// Its data directory.
        dir: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The run file is not what `snode run` writes.
    #[error("{path} is not a snode run file: {why}")]
    BadRunFile {
        /// The run file.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// The admin listener did not answer (node stopped, or a stale run file).
    #[error("the node's admin listener at {addr} did not answer (is snode running?)")]
    Unreachable {
        /// Where we asked.
        addr: SocketAddr,
        /// The HTTP error.
        #[source]
        source: reqwest::Error,
    },
    /// The answer was not a status report (an older snode, or something else on that port).
    #[error("unexpected answer from {addr}/status: {why}")]
    BadAnswer {
        /// Where we asked.
        addr: SocketAddr,
        /// What is wrong.
        why: String,
    },
    /// The answer is not the JSON of a status report.
    #[error("unexpected answer from {addr}/status")]
    NotAReport {
        /// Where we asked.
        addr: SocketAddr,
        /// serde's error.
        #[source]
        source: serde_json::Error,
    },
}

/// The address to reach a listener bound to `bound` from this host: a wildcard bind is
/// reached on loopback.
pub fn reachable_from_here(bound: SocketAddr) -> SocketAddr {
    match bound.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => (Ipv4Addr::LOCALHOST, bound.port()).into(),
        IpAddr::V6(ip) if ip.is_unspecified() => (Ipv6Addr::LOCALHOST, bound.port()).into(),
        _ => bound,
    }
}

/// The admin address a run file names: `admin_addr` when present, else loopback at
/// `admin_port` (run files of older builds).
pub fn admin_addr_from_run_file(text: &str) -> Result<SocketAddr, String> {
    let v: serde_json::Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
    if let Some(addr) = v["admin_addr"].as_str() {
        let bound: SocketAddr = addr
            .parse()
            .map_err(|_| format!("admin_addr {addr:?} is not an address"))?;
        return Ok(reachable_from_here(bound));
    }
    let port = v["admin_port"]
        .as_u64()
        .and_then(|p| u16::try_from(p).ok())
        .ok_or("no admin_addr or admin_port")?;
    Ok((Ipv4Addr::LOCALHOST, port).into())
}

/// The admin address of the node running from `data_dir`.
pub fn admin_addr(data_dir: &Path) -> Result<SocketAddr, StatusError> {
    let path = data_dir.join(RUN_FILE);
    let text = std::fs::read_to_string(&path).map_err(|source| StatusError::RunFile {
        path: path.clone(),
        dir: data_dir.display().to_string(),
        source,
    })?;
    admin_addr_from_run_file(&text).map_err(|why| StatusError::BadRunFile { path, why })
}

/// Fetches `GET /status` from the admin listener at `addr`.
pub async fn fetch(addr: SocketAddr) -> Result<StatusReport, StatusError> {
    // The variant names the address; reqwest's message need not repeat the URL.
    let unreachable = |source: reqwest::Error| StatusError::Unreachable {
        addr,
        source: source.without_url(),
    };
    let client = reqwest::Client::builder()
        .timeout(FETCH_TIMEOUT)
        .build()
        .map_err(unreachable)?;
    let resp = client
        .get(format!("http://{addr}/status"))
        .send()
        .await
        .map_err(unreachable)?;
    let status = resp.status();
    let body = resp.bytes().await.map_err(unreachable)?;
    if !status.is_success() {
        return Err(StatusError::BadAnswer {
            addr,
            why: format!("HTTP {status}"),
        });
    }
    serde_json::from_slice(&body).map_err(|source| StatusError::NotAReport { addr, source })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_files_name_the_admin_listener() {
        assert_eq!(
            admin_addr_from_run_file(
                r#"{"pid":1,"admin_addr":"10.0.0.5:22029","admin_port":22029}"#
            ),
            Ok("10.0.0.5:22029".parse().expect("addr"))
        );
        assert_eq!(
            admin_addr_from_run_file(r#"{"admin_addr":"0.0.0.0:7000"}"#),
            Ok("127.0.0.1:7000".parse().expect("addr")),
            "a wildcard bind is reached on loopback"
        );
        assert_eq!(
            admin_addr_from_run_file(r#"{"admin_addr":"[::]:7000"}"#),
            Ok("[::1]:7000".parse().expect("addr"))
        );
        assert_eq!(
            admin_addr_from_run_file(r#"{"pid":1,"https_port":1,"admin_port":38885}"#),
            Ok("127.0.0.1:38885".parse().expect("addr")),
            "older run files only have the port"
        );
        assert!(admin_addr_from_run_file(r#"{"pid":1}"#).is_err());
        assert!(admin_addr_from_run_file("not json").is_err());
        assert!(admin_addr_from_run_file(r#"{"admin_port":70000}"#).is_err());
    }

    #[test]
    fn a_missing_run_file_says_what_to_do() {
        let dir = tempfile::tempdir().expect("tempdir");
        let err = admin_addr(dir.path()).expect_err("no run file").to_string();
        assert!(err.contains("snode.run.json"), "{err}");
        assert!(err.contains("snode run --data-dir"), "{err}");
    }
}
