//! A Session identity: an Ed25519 seed, the X25519 key derived from it, and the Session ID
//! `05 ‖ X25519 pubkey` (clients.md 4.1).
//!
//! Owns the seed file (64 hex digits and a newline, mode 0600 from creation on) and the
//! derivations, which are libsodium's (`crypto_sign_ed25519_{pk,sk}_to_curve25519`, via
//! `keys::NodeKeys`), so Session clients and nodes compute the same keys. Must not: print or
//! log the seed; `Debug` shows the Session ID only.

use std::fmt;
use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

use crate::keys::NodeKeys;
use crate::message::AccountId;

/// The type byte of a Session ID.
pub const SESSION_ID_PREFIX: u8 = 0x05;

/// Why an identity file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// Reading or writing the file failed.
    #[error("cannot {what} identity file {path}")]
    Io {
        /// `read` or `write`.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The file holds neither 64 hex digits nor 32 raw bytes.
    #[error("identity file {path} does not hold an Ed25519 seed (64 hex digits)")]
    Malformed {
        /// The file.
        path: PathBuf,
    },
    /// The file exists and overwriting was not asked for.
    #[error("identity file {path} already exists")]
    Exists {
        /// The file.
        path: PathBuf,
    },
}

/// A Session user's keys.
pub struct Identity {
    /// Kept to write the file; zeroized on drop.
    seed: Zeroizing<[u8; 32]>,
    /// The Ed25519 signing key and its libsodium-derived X25519 pair.
    keys: NodeKeys,
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field("session_id", &self.session_id())
            .finish_non_exhaustive()
    }
}

impl Identity {
    /// A fresh identity from the operating system's RNG.
    pub fn generate() -> Identity {
        let mut seed = Zeroizing::new([0u8; 32]);
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, seed.as_mut());
        Identity::from_seed(*seed)
    }

    /// The identity of a 32-byte Ed25519 seed.
    pub fn from_seed(seed: [u8; 32]) -> Identity {
        Identity {
            keys: NodeKeys::from_seed(seed),
            seed: Zeroizing::new(seed),
        }
    }

    /// Reads a seed file: 64 hex digits (surrounding whitespace ignored) or 32 raw bytes.
    pub fn load(path: &Path) -> Result<Identity, IdentityError> {
        let raw = Zeroizing::new(std::fs::read(path).map_err(|source| IdentityError::Io {
            what: "read",
            path: path.to_path_buf(),
            source,
        })?);
        let malformed = || IdentityError::Malformed {
            path: path.to_path_buf(),
        };
        let mut seed = Zeroizing::new([0u8; 32]);
        if raw.len() == 32 {
            seed.copy_from_slice(&raw);
        } else {
            let text = std::str::from_utf8(&raw).map_err(|_| malformed())?.trim();
            hex::decode_to_slice(text, seed.as_mut()).map_err(|_| malformed())?;
        }
        Ok(Identity::from_seed(*seed))
    }

    /// Writes the seed file (mode 0600); refuses to replace an existing file unless
    /// `overwrite`.
    pub fn save(&self, path: &Path, overwrite: bool) -> Result<(), IdentityError> {
        let mut text = Zeroizing::new(hex::encode(*self.seed));
        text.push('\n');
        crate::keys::write_private_file(path, text.as_bytes(), overwrite).map_err(|source| {
            if source.kind() == std::io::ErrorKind::AlreadyExists {
                IdentityError::Exists {
                    path: path.to_path_buf(),
                }
            } else {
                IdentityError::Io {
                    what: "write",
                    path: path.to_path_buf(),
                    source,
                }
            }
        })
    }

    /// The account this identity owns: `05 ‖ X25519 pubkey`.
    pub fn account(&self) -> AccountId {
        AccountId {
            kind: SESSION_ID_PREFIX,
            key: self.keys.pubkey_x25519(),
        }
    }

    /// The Session ID (66 hex digits, starting `05`).
    pub fn session_id(&self) -> String {
        self.account().to_hex()
    }

    /// The Ed25519 public key (sent as `pubkey_ed25519` with signed requests).
    pub fn ed25519_public(&self) -> [u8; 32] {
        self.keys.pubkey_ed25519()
    }

    /// The X25519 public key (the Session ID without its prefix).
    pub fn x25519_public(&self) -> [u8; 32] {
        self.keys.pubkey_x25519()
    }

    /// The X25519 secret, which opens messages sealed to this identity.
    pub(crate) fn x25519_secret(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(self.keys.x25519_secret().to_bytes())
    }

    /// Ed25519 signature of `msg` (request signatures, message signatures).
    pub fn sign(&self, msg: &[u8]) -> [u8; 64] {
        self.keys.sign(msg)
    }
}

/// Parses a Session ID (`05` + 64 hex digits).
pub fn parse_session_id(s: &str) -> Option<AccountId> {
    AccountId::from_hex(s.trim())
        .ok()
        .filter(|a| a.kind == SESSION_ID_PREFIX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    fn h32(s: &str) -> [u8; 32] {
        hex::decode(s).unwrap().try_into().unwrap()
    }

    /// clients.md 3.3 (DERIVED): the Session ID of seed 4cb76f…; storage-server.md 1.9 (b):
    /// the seed 0x01..0x20.
    #[test]
    fn session_id_vectors() {
        let id = Identity::from_seed(h32(
            "4cb76fdc6d32278e3f83dbf608360ecc6b65727934b85d2fb86862ff98c46ab7",
        ));
        assert_eq!(
            id.session_id(),
            "0577cb6c50ed49a2c45e383ac3ca855375c68300f7ff0c803ea93cb18437d61f46"
        );
        assert_eq!(
            hex::encode(id.ed25519_public()),
            "8862834829a87e0afadfed763fa8785e893dbde7f2c001ff1071aa55005c347f"
        );
        assert_eq!(
            hex::encode(*id.x25519_secret()),
            "207e5d97e761300f96c10adc11efdd6d5c15188a9a7682ec05b30ca017e9b447"
        );
        let seed: [u8; 32] = std::array::from_fn(|i| i as u8 + 1);
        let id = Identity::from_seed(seed);
        assert_eq!(
            id.session_id(),
            "054a3807d064d077181cc070989e76891d20dca5559548dc2c77c1a50273882b38"
        );
        assert_eq!(
            hex::encode(id.ed25519_public()),
            "79b5562e8fe654f94078b112e8a98ba7901f853ae695bed7e0e3910bad049664"
        );
        // clients.md 3.3: Ed25519 signature of "hello" with seed 4cb76f….
        let id = Identity::from_seed(h32(
            "4cb76fdc6d32278e3f83dbf608360ecc6b65727934b85d2fb86862ff98c46ab7",
        ));
        assert_eq!(
            hex::encode(id.sign(b"hello")),
            "e03b6e87a53d83f202f2501e9b52193dbe4a64c6503f88244948dee5327185011574589aa7b59bc9757f9b9c31b7be9c9212b92ac7c81e029ee21c338ee12405"
        );
    }

    #[test]
    fn seed_file_round_trip_and_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("id");
        let id = Identity::generate();
        id.save(&path, false).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(Identity::load(&path).unwrap().session_id(), id.session_id());
        assert!(matches!(
            Identity::generate().save(&path, false),
            Err(IdentityError::Exists { .. })
        ));
        let other = Identity::generate();
        other.save(&path, true).unwrap();
        assert_eq!(
            Identity::load(&path).unwrap().session_id(),
            other.session_id()
        );
        // 32 raw bytes are accepted too.
        std::fs::write(&path, [9u8; 32]).unwrap();
        assert_eq!(
            Identity::load(&path).unwrap().session_id(),
            Identity::from_seed([9; 32]).session_id()
        );
        std::fs::write(&path, "not a seed\n").unwrap();
        assert!(matches!(
            Identity::load(&path),
            Err(IdentityError::Malformed { .. })
        ));
        assert!(matches!(
            Identity::load(&dir.path().join("missing")),
            Err(IdentityError::Io { .. })
        ));
        // Debug never shows the seed.
        let dbg = format!("{id:?}");
        assert!(dbg.contains(&id.session_id()));
        assert!(!dbg.contains(&hex::encode(*id.seed)));
    }

    #[test]
    fn session_ids_parse() {
        let id = Identity::from_seed([3; 32]);
        assert_eq!(parse_session_id(&id.session_id()), Some(id.account()));
        let mut group = id.session_id();
        group.replace_range(..2, "03");
        assert_eq!(parse_session_id(&group), None);
        assert_eq!(parse_session_id("05abc"), None);
    }
}
