//! The directory's state file: `directory.json` in its data directory.
//!
//! Owns the file format (versioned JSON, keys in hex) and its atomic replacement: a temp file
//! in the same directory is written and fsynced, renamed over the old file, and the directory
//! is fsynced (`keys::write_private_file`), so a crash leaves the old state or the new one,
//! never a torn file. Must not decide anything about the state itself (that is `state`).

use super::state::{NodeRecord, Policy, Registry};
use crate::keys::write_private_file;
use crate::swarm::SwarmId;
use serde::{Deserialize, Serialize};
use std::io;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

/// File name of the state inside the directory's data dir.
pub const STATE_FILE: &str = "directory.json";
/// Version of the file format written.
const FORMAT_VERSION: u32 = 1;

/// Errors of loading or saving the state file. Each names the file.
#[derive(Debug, thiserror::Error)]
pub enum PersistError {
    /// Reading or writing failed.
    #[error("I/O error on directory state {}", path.display())]
    Io {
        /// The state file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The file is not a state file this version understands.
    #[error("directory state {} is malformed: {why}", path.display())]
    Malformed {
        /// The state file.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// The file is not JSON of the state file's shape (or the state does not encode).
    #[error("directory state {} is malformed", path.display())]
    Json {
        /// The state file.
        path: PathBuf,
        /// serde's error.
        #[source]
        source: serde_json::Error,
    },
}

/// The file as written.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StateFile {
    format: u32,
    height: u64,
    block_hash: String,
    nodes: Vec<NodeFile>,
}

/// One node in the file.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct NodeFile {
    pubkey_ed25519: String,
    pubkey_x25519: String,
    ip: Ipv4Addr,
    https_port: u16,
    omq_port: u16,
    version: [u16; 3],
    swarm_id: u64,
    decommissioned: bool,
    registered_at_ms: i64,
    announced_at_ms: i64,
    last_reachable_ms: Option<i64>,
    failing_since_ms: Option<i64>,
}

/// The state file's path in `data_dir`.
pub fn state_path(data_dir: &Path) -> PathBuf {
    data_dir.join(STATE_FILE)
}

/// Writes `reg` to `path` atomically (module doc).
pub fn save(path: &Path, reg: &Registry) -> Result<(), PersistError> {
    let file = StateFile {
        format: FORMAT_VERSION,
        height: reg.height(),
        block_hash: reg.block_hash_hex(),
        nodes: reg
            .nodes()
            .map(|n| NodeFile {
                pubkey_ed25519: hex::encode(n.pubkey_ed25519),
                pubkey_x25519: hex::encode(n.pubkey_x25519),
                ip: n.ip,
                https_port: n.https_port,
                omq_port: n.omq_port,
                version: n.version,
                swarm_id: n.swarm_id.0,
                decommissioned: n.decommissioned,
                registered_at_ms: n.registered_at_ms,
                announced_at_ms: n.announced_at_ms,
                last_reachable_ms: n.last_reachable_ms,
                failing_since_ms: n.failing_since_ms,
            })
            .collect(),
    };
    let mut bytes = serde_json::to_vec_pretty(&file).map_err(|source| PersistError::Json {
        path: path.to_path_buf(),
        source,
    })?;
    bytes.push(b'\n');
    write_private_file(path, &bytes, true).map_err(|source| PersistError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// Reads the state at `path` under `policy`; `Ok(None)` if there is no file yet.
pub fn load(path: &Path, policy: Policy) -> Result<Option<Registry>, PersistError> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(PersistError::Io {
                path: path.to_path_buf(),
                source,
            });
        }
    };
    let malformed = |why: String| PersistError::Malformed {
        path: path.to_path_buf(),
        why,
    };
    let file: StateFile = serde_json::from_slice(&bytes).map_err(|source| PersistError::Json {
        path: path.to_path_buf(),
        source,
    })?;
    if file.format != FORMAT_VERSION {
        return Err(malformed(format!("unknown format {}", file.format)));
    }
    let key = |what: &str, s: &str| -> Result<[u8; 32], PersistError> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).map_err(|_| malformed(format!("bad {what} {s:?}")))?;
        Ok(out)
    };
    let block_hash = key("block_hash", &file.block_hash)?;
    let mut nodes = Vec::with_capacity(file.nodes.len());
    for n in file.nodes {
        let decommissioned = n.decommissioned;
        // A decommissioned node is in no swarm; an active one must be in one.
        if decommissioned != (n.swarm_id == SwarmId::UNASSIGNED.0) {
            return Err(malformed(format!(
                "node {} has swarm {} but decommissioned = {decommissioned}",
                n.pubkey_ed25519, n.swarm_id
            )));
        }
        nodes.push(NodeRecord {
            pubkey_ed25519: key("pubkey_ed25519", &n.pubkey_ed25519)?,
            pubkey_x25519: key("pubkey_x25519", &n.pubkey_x25519)?,
            ip: n.ip,
            https_port: n.https_port,
            omq_port: n.omq_port,
            version: n.version,
            swarm_id: SwarmId(n.swarm_id),
            decommissioned,
            registered_at_ms: n.registered_at_ms,
            announced_at_ms: n.announced_at_ms,
            last_reachable_ms: n.last_reachable_ms,
            failing_since_ms: n.failing_since_ms,
        });
    }
    Ok(Some(Registry::from_parts(
        policy,
        file.height,
        block_hash,
        nodes,
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::directory::announce::{
        sign_announcement, sign_report, verify_announcement, verify_report,
    };
    use crate::directory::state::Admission;
    use crate::keys::NodeKeys;
    use crate::swarm::NodeInfo;

    const NOW: i64 = 1_700_000_000_000;

    fn policy() -> Policy {
        Policy {
            // The nodes below are at a documentation address.
            allow_private_addresses: true,
            ..Policy::new(Admission::Open, 1000)
        }
    }

    fn registry() -> Registry {
        let mut r = Registry::new(policy());
        let keys: Vec<NodeKeys> = (1..=7u8).map(|i| NodeKeys::from_seed([i; 32])).collect();
        for (i, k) in keys.iter().enumerate() {
            let info = NodeInfo {
                pubkey_ed25519: [0; 32],
                pubkey_x25519: [0; 32],
                ip: Ipv4Addr::new(192, 0, 2, 1),
                https_port: 1000 + i as u16,
                omq_port: 2000,
                swarm_id: SwarmId::UNASSIGNED,
                version: [1, 2, 3],
            };
            let a = verify_announcement(&sign_announcement(k, &info, NOW), NOW).unwrap();
            r.register(&a, NOW).unwrap();
        }
        // One decommissioned, one failing.
        let rep = |by: &NodeKeys, t: &NodeKeys, ts| {
            verify_report(&sign_report(by, &t.pubkey_ed25519(), false, ts), ts).unwrap()
        };
        r.report(&rep(&keys[0], &keys[1], NOW), NOW).unwrap();
        r.report(&rep(&keys[0], &keys[1], NOW + 1000), NOW + 1000)
            .unwrap();
        r.report(&rep(&keys[0], &keys[2], NOW + 1000), NOW + 1000)
            .unwrap();
        assert!(r.nodes().any(|n| n.decommissioned));
        r
    }

    #[test]
    fn save_then_load_is_identity() {
        let dir = tempfile::tempdir().unwrap();
        let path = state_path(dir.path());
        assert!(load(&path, policy()).unwrap().is_none());
        let r = registry();
        save(&path, &r).unwrap();
        let back = load(&path, policy()).unwrap().unwrap();
        assert_eq!(back, r);
        // Saving again replaces the file (and leaves no temp files behind).
        save(&path, &back).unwrap();
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from(STATE_FILE)]);
    }

    #[test]
    fn malformed_files_are_reported() {
        let dir = tempfile::tempdir().unwrap();
        let path = state_path(dir.path());
        for bad in [
            "not json",
            r#"{"format":2,"height":0,"block_hash":"00","nodes":[]}"#,
            r#"{"format":1,"height":0,"block_hash":"00","nodes":[]}"#,
            r#"{"format":1,"height":0,"block_hash":"00","nodes":[],"extra":1}"#,
        ] {
            std::fs::write(&path, bad).unwrap();
            assert!(
                matches!(
                    load(&path, policy()),
                    Err(PersistError::Malformed { .. } | PersistError::Json { .. })
                ),
                "{bad}"
            );
        }
        // Active but unassigned is inconsistent.
        save(&path, &registry()).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
        let first = &mut v["nodes"][0];
        first["decommissioned"] = serde_json::Value::Bool(false);
        first["swarm_id"] = serde_json::json!(u64::MAX);
        std::fs::write(&path, v.to_string()).unwrap();
        assert!(matches!(
            load(&path, policy()),
            Err(PersistError::Malformed { .. })
        ));
        // A directory where the file should be is an I/O error.
        let dir2 = tempfile::tempdir().unwrap();
        std::fs::create_dir(state_path(dir2.path())).unwrap();
        assert!(matches!(
            load(&state_path(dir2.path()), policy()),
            Err(PersistError::Io { .. })
        ));
    }
}
