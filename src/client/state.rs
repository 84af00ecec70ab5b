//! The client's small state file, next to its identity file (`<id>.state.json`): where each
//! swarm node's `retrieve` cursor stands (clients poll with `last_hash` per node), which
//! messages were already reported (nodes of one swarm hold the same messages under different
//! cursors), and the guard node to reuse.
//!
//! Owns the file's format (JSON) and its bounds: seen hashes are kept only until their
//! message expires. Must not hold secrets (the file is private anyway: mode 0600).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Why the state file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// Reading or writing failed.
    #[error("cannot {what} client state {path}")]
    Io {
        /// `read` or `write`.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not this format.
    #[error("client state {path} is corrupt")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// serde's error.
        #[source]
        source: serde_json::Error,
    },
}

/// What the client remembers between runs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ClientState {
    /// Last message hash retrieved from each node (ed25519 hex → hash).
    pub last_hash: BTreeMap<String, String>,
    /// Messages already reported (hash → expiry in ms), pruned once expired.
    pub seen: BTreeMap<String, i64>,
    /// The guard node (ed25519 hex), reused across runs as Session clients do.
    pub guard: Option<String>,
}

/// The state file that belongs to an identity file.
pub fn state_path(id_path: &Path) -> PathBuf {
    let mut name = id_path.as_os_str().to_owned();
    name.push(".state.json");
    PathBuf::from(name)
}

impl ClientState {
    /// Reads the file; a missing file is a fresh state.
    pub fn load(path: &Path) -> Result<ClientState, StateError> {
        match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|source| StateError::Corrupt {
                path: path.to_path_buf(),
                source,
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(ClientState::default()),
            Err(source) => Err(StateError::Io {
                what: "read",
                path: path.to_path_buf(),
                source,
            }),
        }
    }

    /// Writes the file atomically (a crash leaves the old or the new state, never half).
    pub fn save(&self, path: &Path) -> Result<(), StateError> {
        let text = serde_json::to_vec_pretty(self).map_err(|source| StateError::Corrupt {
            path: path.to_path_buf(),
            source,
        })?;
        crate::keys::write_private_file(path, &text, true).map_err(|source| StateError::Io {
            what: "write",
            path: path.to_path_buf(),
            source,
        })
    }

    /// Records a message as reported; false if it already was.
    pub fn mark_seen(&mut self, hash: &str, expiry_ms: i64) -> bool {
        self.seen.insert(hash.to_owned(), expiry_ms).is_none()
    }

    /// Forgets messages that have expired: no node returns them any more.
    pub fn prune(&mut self, now_ms: i64) {
        self.seen.retain(|_, expiry| *expiry > now_ms);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_prune_and_missing_file() {
        let dir = tempfile::tempdir().unwrap();
        let id = dir.path().join("alice.id");
        let path = state_path(&id);
        assert_eq!(path, dir.path().join("alice.id.state.json"));
        assert_eq!(ClientState::load(&path).unwrap(), ClientState::default());

        let mut s = ClientState::default();
        s.last_hash.insert("ab".repeat(32), "h1".into());
        assert!(s.mark_seen("h1", 100));
        assert!(!s.mark_seen("h1", 100));
        assert!(s.mark_seen("h2", 300));
        s.guard = Some("cd".repeat(32));
        s.save(&path).unwrap();
        assert_eq!(ClientState::load(&path).unwrap(), s);

        s.prune(200);
        assert_eq!(s.seen.keys().collect::<Vec<_>>(), vec!["h2"]);

        std::fs::write(&path, "[").unwrap();
        assert!(matches!(
            ClientState::load(&path),
            Err(StateError::Corrupt { .. })
        ));
    }
}
