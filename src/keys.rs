//! Node identity: the Ed25519 signing key, the X25519 key derived from it, and the key file.
//!
//! Owns `key_ed25519` in oxend's format (64 raw bytes: seed ‖ pubkey, mode 0600), the
//! libsodium-compatible Ed25519 → X25519 conversions, and the `.snode` address (base32z).
//! Must not log, print or `Debug` any secret: `NodeKeys`' Debug shows only the public key, and
//! every secret is zeroized on drop. No global state: a node owns its `NodeKeys` value.

use curve25519_dalek::edwards::CompressedEdwardsY;
use ed25519_dalek::{Signer as _, SigningKey};
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write as _};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use x25519_dalek::StaticSecret;
use zeroize::{Zeroize as _, Zeroizing};

/// File name of the node's Ed25519 key inside the data directory (oxend's name).
pub const KEY_FILE: &str = "key_ed25519";

/// Length of the key file: 32-byte seed followed by the 32-byte public key.
const KEY_FILE_LEN: usize = 64;

/// The z-base-32 alphabet, as oxen/lokinet use for `.snode` addresses.
const BASE32Z_ALPHABET: &[u8; 32] = b"ybndrfg8ejkmcpqxot1uwisza345h769";

/// Errors of loading or writing the key file. Each variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The key file does not exist (run `snode init`).
    #[error("key file {} does not exist", path.display())]
    Missing {
        /// The file we looked for.
        path: PathBuf,
    },
    /// The key file exists but is not a valid oxend `key_ed25519`.
    #[error("key file {} is malformed: {why}", path.display())]
    Malformed {
        /// The offending file.
        path: PathBuf,
        /// What is wrong with it.
        why: String,
    },
    /// Refused to overwrite an existing key file (pass `force` to replace it).
    #[error("key file {} already exists; refusing to overwrite it", path.display())]
    Exists {
        /// The existing file.
        path: PathBuf,
    },
    /// Reading or writing the file failed.
    #[error("I/O error on key file {}", path.display())]
    Io {
        /// The file we were reading or writing.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
}

/// The node's identity: an Ed25519 signing key and the X25519 key derived from it.
///
/// The X25519 pair is derived exactly as libsodium does, so peers and clients that only know
/// the Ed25519 pubkey compute the same X25519 pubkey:
/// secret = clamp(SHA-512(seed)[0..32]) (`crypto_sign_ed25519_sk_to_curve25519`),
/// public = the Edwards pubkey mapped to Montgomery form (`crypto_sign_ed25519_pk_to_curve25519`).
#[derive(Clone)]
pub struct NodeKeys {
    /// Zeroized on drop by ed25519-dalek (`zeroize` feature).
    signing: SigningKey,
    /// Zeroized on drop by x25519-dalek (`zeroize` feature).
    x25519_secret: StaticSecret,
    /// Cached: derived once, read on every onion layer and every get_swarm.
    x25519_public: [u8; 32],
}

/// Redacted: only the public key is shown, never a secret.
impl fmt::Debug for NodeKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodeKeys")
            .field("pubkey_ed25519", &hex::encode(self.pubkey_ed25519()))
            .field("secret", &"<redacted>")
            .finish()
    }
}

impl NodeKeys {
    /// Generates a fresh identity from the operating system's RNG.
    pub fn generate() -> Self {
        let mut seed = Zeroizing::new([0u8; 32]);
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, seed.as_mut());
        Self::from_seed(*seed)
    }

    /// Builds the identity from a 32-byte Ed25519 seed (the first half of `key_ed25519`).
    pub fn from_seed(seed: [u8; 32]) -> Self {
        let mut seed = seed;
        let signing = SigningKey::from_bytes(&seed);
        seed.zeroize();
        Self::from_signing_key(signing)
    }

    fn from_signing_key(signing: SigningKey) -> Self {
        // libsodium's sk_to_curve25519: the first half of SHA-512(seed), clamped. We clamp here
        // (StaticSecret would clamp at use anyway) so that `x25519_secret().to_bytes()` equals
        // libsodium's output byte for byte.
        let mut scalar = Zeroizing::new(signing.to_scalar_bytes());
        scalar[0] &= 248;
        scalar[31] &= 127;
        scalar[31] |= 64;
        let x25519_secret = StaticSecret::from(*scalar);
        let x25519_public = signing.verifying_key().to_montgomery().to_bytes();
        Self {
            signing,
            x25519_secret,
            x25519_public,
        }
    }

    /// The Ed25519 public key: the node's identity on the network.
    pub fn pubkey_ed25519(&self) -> [u8; 32] {
        self.signing.verifying_key().to_bytes()
    }

    /// The X25519 public key, used by clients to encrypt onion layers to this node.
    pub fn pubkey_x25519(&self) -> [u8; 32] {
        self.x25519_public
    }

    /// Signs `msg` with Ed25519 (deterministic, as libsodium `crypto_sign_detached`).
    pub fn sign(&self, msg: &[u8]) -> [u8; 64] {
        self.signing.sign(msg).to_bytes()
    }

    /// The X25519 secret, for peeling onion layers addressed to this node.
    pub fn x25519_secret(&self) -> &StaticSecret {
        &self.x25519_secret
    }

    /// The node's `.snode` address: base32z of the Ed25519 pubkey plus `.snode`.
    pub fn snode_address(&self) -> String {
        snode_address(&self.pubkey_ed25519())
    }

    /// Loads `key_ed25519` (oxend's format), checking its length and that its public half
    /// belongs to its seed.
    pub fn load(path: &Path) -> Result<Self, KeyError> {
        let bytes = Zeroizing::new(fs::read(path).map_err(|source| {
            if source.kind() == io::ErrorKind::NotFound {
                KeyError::Missing {
                    path: path.to_path_buf(),
                }
            } else {
                KeyError::Io {
                    path: path.to_path_buf(),
                    source,
                }
            }
        })?);
        let malformed = |why: String| KeyError::Malformed {
            path: path.to_path_buf(),
            why,
        };
        let raw: &[u8; KEY_FILE_LEN] = bytes.as_slice().try_into().map_err(|_| {
            malformed(format!(
                "expected {KEY_FILE_LEN} bytes (seed ‖ pubkey), found {}",
                bytes.len()
            ))
        })?;
        // from_keypair_bytes re-derives the pubkey from the seed and compares it with the
        // second half, so a truncated copy or a mixed-up pair is refused here, not at first use.
        let signing = SigningKey::from_keypair_bytes(raw)
            .map_err(|_| malformed("the public key half does not match the seed".to_string()))?;
        Ok(Self::from_signing_key(signing))
    }

    /// Writes `key_ed25519` (seed ‖ pubkey, mode 0600) atomically: a temp file created with
    /// mode 0600 is renamed into place, so a crash never leaves a half-written key.
    /// Refuses to replace an existing file unless `force`.
    pub fn write(&self, path: &Path, force: bool) -> Result<(), KeyError> {
        if !force && path.symlink_metadata().is_ok() {
            return Err(KeyError::Exists {
                path: path.to_path_buf(),
            });
        }
        let bytes = Zeroizing::new(self.signing.to_keypair_bytes());
        write_private_file(path, bytes.as_slice(), force).map_err(|source| {
            if source.kind() == io::ErrorKind::AlreadyExists {
                KeyError::Exists {
                    path: path.to_path_buf(),
                }
            } else {
                KeyError::Io {
                    path: path.to_path_buf(),
                    source,
                }
            }
        })
    }
}

/// libsodium's `crypto_sign_ed25519_pk_to_curve25519`: maps an Ed25519 pubkey to its X25519
/// pubkey. `None` for bytes that are not a point, a small-order point, or a point outside the
/// prime-order subgroup (libsodium refuses the same three).
///
/// Used by request-signature checks: a `05` account is an X25519 key, and its signatures are
/// verified through the `pubkey_ed25519` the client sends, whose conversion must equal it.
pub fn ed25519_pk_to_x25519(ed_pk: &[u8; 32]) -> Option<[u8; 32]> {
    let point = CompressedEdwardsY(*ed_pk).decompress()?;
    if point.is_small_order() || !point.is_torsion_free() {
        return None;
    }
    Some(point.to_montgomery().to_bytes())
}

/// z-base-32 encoding as oxenc's `to_base32z`: 5-bit groups, most significant bit first, the
/// last group padded with zero bits, no `=` padding. 32 bytes give 52 characters.
pub fn base32z(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(5) * 8);
    let mut acc: u32 = 0;
    let mut bits: u32 = 0;
    for &b in bytes {
        acc = (acc << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(char::from(
                BASE32Z_ALPHABET[((acc >> bits) & 0x1f) as usize],
            ));
        }
        // Keep only the bits not yet emitted, so `acc` never overflows.
        acc &= (1 << bits) - 1;
    }
    if bits > 0 {
        out.push(char::from(
            BASE32Z_ALPHABET[((acc << (5 - bits)) & 0x1f) as usize],
        ));
    }
    out
}

/// The `.snode` address of a node: `base32z(ed25519 pubkey) + ".snode"`.
pub fn snode_address(pubkey_ed25519: &[u8; 32]) -> String {
    let mut s = base32z(pubkey_ed25519);
    s.push_str(".snode");
    s
}

/// Writes `bytes` to `path` atomically with mode 0600 from creation on: a uniquely named temp
/// file in the same directory is written, synced and then moved into place. With `overwrite`
/// false an existing `path` is never replaced (a hard link is the atomic "create if absent";
/// the error then has kind `AlreadyExists`). Shared with `tls` for its key and certificate.
pub(crate) fn write_private_file(path: &Path, bytes: &[u8], overwrite: bool) -> io::Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no file name"))?;
    let tmp = dir.join(format!(
        ".{}.tmp-{:016x}",
        name.to_string_lossy(),
        rand::random::<u64>()
    ));
    let result = write_then_place(&tmp, path, bytes, overwrite);
    if result.is_err() {
        // Best effort: the temp file is ours and useless once placing failed.
        let _ = fs::remove_file(&tmp);
    }
    result?;
    // Make the rename itself durable: a node acknowledged as initialised keeps its key.
    File::open(&dir)?.sync_all()
}

fn write_then_place(tmp: &Path, path: &Path, bytes: &[u8], overwrite: bool) -> io::Result<()> {
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    if overwrite {
        return fs::rename(tmp, path);
    }
    match fs::hard_link(tmp, path) {
        Ok(()) => fs::remove_file(tmp),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Err(e),
        // A filesystem without hard links: fall back to check-then-rename, racy only against
        // a concurrent `init` of the same data directory.
        Err(_) => {
            if path.symlink_metadata().is_ok() {
                return Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    "destination exists",
                ));
            }
            fs::rename(tmp, path)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    fn h32(s: &str) -> [u8; 32] {
        hex::decode(s).unwrap().try_into().unwrap()
    }

    const SEED1: &str = "4cb76fdc6d32278e3f83dbf608360ecc6b65727934b85d2fb86862ff98c46ab7";
    const SEED2: &str = "5ea34e72bb044654a6a23675690ef5ffaaf1656b02f93fb76655f9cbdbe89876";

    #[test]
    fn clients_3_3_seed_to_ed_pk() {
        assert_eq!(
            hex::encode(NodeKeys::from_seed(h32(SEED1)).pubkey_ed25519()),
            "8862834829a87e0afadfed763fa8785e893dbde7f2c001ff1071aa55005c347f"
        );
        assert_eq!(
            hex::encode(NodeKeys::from_seed(h32(SEED2)).pubkey_ed25519()),
            "cd83ca3d13ad8a954d5011aa7861abe3a29ac25b70c4ed5234aff74d34ef5786"
        );
    }

    #[test]
    fn clients_3_3_ed_pk_to_x25519_pk() {
        // The upstream test feeds the 32 bytes 4cb76f…/5ea34e… themselves as Ed25519 pubkeys.
        assert_eq!(
            hex::encode(ed25519_pk_to_x25519(&h32(SEED1)).unwrap()),
            "d2ad010eeb72d72e561d9de7bd7b6989af77dcabffa03a5111a6c859ae5c3a72"
        );
        assert_eq!(
            hex::encode(ed25519_pk_to_x25519(&h32(SEED2)).unwrap()),
            "aa654f00fc39fc69fd0db829410ca38177d7732a8d2f0934ab3872ac56d5aa74"
        );
    }

    #[test]
    fn clients_3_3_ed_sk_to_x25519_sk() {
        assert_eq!(
            hex::encode(NodeKeys::from_seed(h32(SEED1)).x25519_secret().to_bytes()),
            "207e5d97e761300f96c10adc11efdd6d5c15188a9a7682ec05b30ca017e9b447"
        );
        assert_eq!(
            hex::encode(NodeKeys::from_seed(h32(SEED2)).x25519_secret().to_bytes()),
            "904943eff27142a8e5cd37c84e2437c9979a560b044bf9a65a8d644b325fe56a"
        );
    }

    #[test]
    fn clients_3_3_sign_hello() {
        assert_eq!(
            hex::encode(NodeKeys::from_seed(h32(SEED1)).sign(b"hello")),
            "e03b6e87a53d83f202f2501e9b52193dbe4a64c6503f88244948dee5327185011574589aa7b59bc9757f9b9c31b7be9c9212b92ac7c81e029ee21c338ee12405"
        );
    }

    #[test]
    fn session_ids() {
        // clients.md 3.3 (derived): seed 4cb76f… → Session ID 0577cb…
        let k = NodeKeys::from_seed(h32(SEED1));
        assert_eq!(
            format!("05{}", hex::encode(k.pubkey_x25519())),
            "0577cb6c50ed49a2c45e383ac3ca855375c68300f7ff0c803ea93cb18437d61f46"
        );
        // storage-server.md 1.9(b): seed 0x01..0x20.
        let seed: [u8; 32] = std::array::from_fn(|i| i as u8 + 1);
        let k = NodeKeys::from_seed(seed);
        assert_eq!(
            hex::encode(k.pubkey_ed25519()),
            "79b5562e8fe654f94078b112e8a98ba7901f853ae695bed7e0e3910bad049664"
        );
        assert_eq!(
            format!("05{}", hex::encode(k.pubkey_x25519())),
            "054a3807d064d077181cc070989e76891d20dca5559548dc2c77c1a50273882b38"
        );
    }

    #[test]
    fn x25519_derivations_agree() {
        for _ in 0..16 {
            let k = NodeKeys::generate();
            let from_secret = x25519_dalek::PublicKey::from(k.x25519_secret()).to_bytes();
            assert_eq!(from_secret, k.pubkey_x25519());
            assert_eq!(ed25519_pk_to_x25519(&k.pubkey_ed25519()), Some(from_secret));
        }
    }

    #[test]
    fn ed_to_x_rejects_bad_points() {
        // The identity point (y = 1) has small order.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        assert_eq!(ed25519_pk_to_x25519(&identity), None);
        // y = 2 is not on the curve.
        let mut not_a_point = [0u8; 32];
        not_a_point[0] = 2;
        assert_eq!(ed25519_pk_to_x25519(&not_a_point), None);
        // A valid key plus a small-order component lies outside the prime-order subgroup.
        let k = NodeKeys::from_seed(h32(SEED1));
        let p = CompressedEdwardsY(k.pubkey_ed25519()).decompress().unwrap();
        let t = curve25519_dalek::constants::EIGHT_TORSION[1];
        let mixed = (p + t).compress().to_bytes();
        assert_eq!(ed25519_pk_to_x25519(&mixed), None);
    }

    #[test]
    fn debug_is_redacted() {
        let k = NodeKeys::from_seed(h32(SEED1));
        let dbg = format!("{k:?}");
        assert!(dbg.contains("8862834829a87e0a"));
        assert!(!dbg.contains(SEED1));
        assert!(!dbg.contains("207e5d97e761300f"));
    }

    #[test]
    fn base32z_vectors() {
        // The z-base-32 specification's examples.
        assert_eq!(base32z(&[0xf0, 0xbf, 0xc7]), "6n9hq");
        assert_eq!(base32z(&[0xd4, 0x7a, 0x04]), "4t7ye");
        assert_eq!(base32z(&[0x00]), "yy");
        assert_eq!(base32z(&[0xff]), "9h");
        assert_eq!(base32z(&[]), "");
        assert_eq!(base32z(&[0u8; 32]), "y".repeat(52));
        assert_eq!(base32z(&[0xff; 5]), "99999999");
        // Computed independently (Python) for the 1.9(b) key's ed25519 pubkey.
        let k = NodeKeys::from_seed(std::array::from_fn(|i| i as u8 + 1));
        assert_eq!(k.snode_address(), B32Z_79B5);
        assert_eq!(k.snode_address().len(), 52 + ".snode".len());
    }

    /// base32z(79b5562e…9664) + ".snode".
    const B32Z_79B5: &str = "xg4icmwxh3kx1odasrjqtkcmw6eb9bj4h4k57i9yhqeozmer131y.snode";

    #[test]
    fn key_file_round_trip_and_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(KEY_FILE);
        let k = NodeKeys::generate();
        k.write(&path, false).unwrap();
        let raw = fs::read(&path).unwrap();
        assert_eq!(raw.len(), 64);
        assert_eq!(&raw[32..], &k.pubkey_ed25519());
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let back = NodeKeys::load(&path).unwrap();
        assert_eq!(back.pubkey_ed25519(), k.pubkey_ed25519());
        assert_eq!(back.pubkey_x25519(), k.pubkey_x25519());
        assert_eq!(back.sign(b"x"), k.sign(b"x"));
        // No temp file is left behind.
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn key_file_no_overwrite_unless_forced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(KEY_FILE);
        let first = NodeKeys::generate();
        first.write(&path, false).unwrap();
        let second = NodeKeys::generate();
        let err = second.write(&path, false).unwrap_err();
        assert!(matches!(err, KeyError::Exists { ref path } if path.ends_with(KEY_FILE)));
        assert_eq!(
            NodeKeys::load(&path).unwrap().pubkey_ed25519(),
            first.pubkey_ed25519()
        );
        second.write(&path, true).unwrap();
        assert_eq!(
            NodeKeys::load(&path).unwrap().pubkey_ed25519(),
            second.pubkey_ed25519()
        );
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn key_file_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(KEY_FILE);
        assert!(matches!(
            NodeKeys::load(&path),
            Err(KeyError::Missing { .. })
        ));

        fs::write(&path, [7u8; 63]).unwrap();
        let err = NodeKeys::load(&path).unwrap_err();
        assert!(matches!(err, KeyError::Malformed { .. }));
        assert!(err.to_string().contains("found 63"), "{err}");
        assert!(err.to_string().contains(KEY_FILE), "{err}");

        // A seed followed by someone else's pubkey.
        let a = NodeKeys::from_seed(h32(SEED1));
        let b = NodeKeys::from_seed(h32(SEED2));
        let mut raw = h32(SEED1).to_vec();
        raw.extend_from_slice(&b.pubkey_ed25519());
        fs::write(&path, &raw).unwrap();
        let err = NodeKeys::load(&path).unwrap_err();
        assert!(err.to_string().contains("does not match"), "{err}");

        raw.truncate(32);
        raw.extend_from_slice(&a.pubkey_ed25519());
        fs::write(&path, &raw).unwrap();
        assert_eq!(
            NodeKeys::load(&path).unwrap().pubkey_ed25519(),
            a.pubkey_ed25519()
        );

        // A directory where the file should be is an I/O error, not "missing".
        let sub = dir.path().join("sub");
        fs::create_dir(&sub).unwrap();
        assert!(matches!(NodeKeys::load(&sub), Err(KeyError::Io { .. })));
    }
}
