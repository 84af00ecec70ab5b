//! Onion layer cryptography: the three `enc_type`s, their key derivation and nonce-prefixed
//! wire formats (storage-server.md 2.2, clients.md 2.4).
//!
//! Owns: `EncType`, the per-layer symmetric key derived from an X25519 shared secret, and
//! sealing/opening of one layer in each cipher. Must not: compute the node-side X25519 (that is
//! `peel`'s job, with aws-lc-rs), parse framing or JSON, log anything, or do I/O.

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use aws_lc_rs::hmac;
use blake2::digest::consts::U32;
use blake2::{Blake2b, Digest};
use cbc::cipher::block_padding::Pkcs7;
use cbc::cipher::generic_array::GenericArray;
use cbc::cipher::{BlockDecryptMut, BlockEncryptMut, KeyIvInit};
use chacha20poly1305::aead::{AeadInPlace, KeyInit};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::{CryptoRng, RngCore};
use std::fmt;
use zeroize::Zeroizing;

/// AES-GCM nonce (IV) length on the wire.
const GCM_NONCE_LEN: usize = 12;
/// XChaCha20-Poly1305 nonce length on the wire.
const XCHACHA_NONCE_LEN: usize = 24;
/// AES-CBC IV length on the wire.
const CBC_IV_LEN: usize = 16;
/// Authentication tag length of both AEADs.
const TAG_LEN: usize = 16;
/// HMAC key of the aes-gcm key derivation (libsodium `crypto_auth_hmacsha256_init(key="LOKI")`).
const GCM_KDF_KEY: &[u8] = b"LOKI";

/// The cipher of one onion layer, named by the `enc_type` JSON field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum EncType {
    /// AES-256-GCM, key `HMAC-SHA256("LOKI", shared)`; the default when `enc_type` is absent.
    #[default]
    AesGcm,
    /// XChaCha20-Poly1305-IETF, key `BLAKE2b-256(shared || client_pub || server_pub)`.
    XChaCha20,
    /// Legacy AES-256-CBC with PKCS#7 padding, key = raw shared secret; no client uses it.
    AesCbc,
}

impl EncType {
    /// Parses an `enc_type` value, accepting every alias the C++ server accepts.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "aes-gcm" | "gcm" => Some(Self::AesGcm),
            "xchacha20" | "xchacha20-poly1305" => Some(Self::XChaCha20),
            "aes-cbc" | "cbc" => Some(Self::AesCbc),
            _ => None,
        }
    }

    /// The canonical name, as snode writes it in JSON and node-to-node requests.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AesGcm => "aes-gcm",
            Self::XChaCha20 => "xchacha20",
            Self::AesCbc => "aes-cbc",
        }
    }

    /// Shortest valid ciphertext: a sealed empty plaintext (CBC pads to one full block).
    pub fn min_ciphertext_len(self) -> usize {
        match self {
            Self::AesGcm => GCM_NONCE_LEN + TAG_LEN,
            Self::XChaCha20 => XCHACHA_NONCE_LEN + TAG_LEN,
            Self::AesCbc => CBC_IV_LEN + 16,
        }
    }
}

impl fmt::Display for EncType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a layer (or a reply) could not be opened. The node answers every variant with the same
/// plain-text `400 Invalid ciphertext`, so the variants only serve logs, metrics and tests.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PeelError {
    /// The peer key is a low-order point: the X25519 result is all zeros (or the public key was
    /// refused), so the "shared" secret would be known to everyone.
    #[error("ephemeral key gives no shared secret (low-order point)")]
    LowOrderKey,
    /// The ciphertext is shorter than nonce + tag (or not whole CBC blocks).
    #[error("{enc_type} ciphertext too short or misaligned ({len} bytes)")]
    Malformed {
        /// The cipher that was tried.
        enc_type: EncType,
        /// The length that was received.
        len: usize,
    },
    /// The tag (or the CBC padding) did not verify: wrong key, wrong cipher or tampered data.
    #[error("{enc_type} decryption failed")]
    Decrypt {
        /// The cipher that was tried.
        enc_type: EncType,
    },
    /// The AEAD library refused to build a key (cannot happen with 32-byte keys).
    #[error("{enc_type} key setup failed")]
    KeySetup {
        /// The cipher whose key was being set up.
        enc_type: EncType,
    },
}

/// True when all 32 bytes are zero; folds every byte so timing does not depend on the content.
pub(crate) fn is_all_zero(bytes: &[u8; 32]) -> bool {
    bytes.iter().fold(0u8, |acc, b| acc | b) == 0
}

/// Derives the 32-byte symmetric key of one layer from the X25519 shared secret (2.2).
///
/// `client_pub` is always the sender's ephemeral key and `server_pub` the node's static key, in
/// both directions: the reply uses the very same key.
pub(crate) fn derive_key(
    enc_type: EncType,
    shared: &[u8; 32],
    client_pub: &[u8; 32],
    server_pub: &[u8; 32],
) -> Zeroizing<[u8; 32]> {
    let mut key = Zeroizing::new([0u8; 32]);
    match enc_type {
        EncType::AesGcm => {
            let mac_key = hmac::Key::new(hmac::HMAC_SHA256, GCM_KDF_KEY);
            key.copy_from_slice(hmac::sign(&mac_key, shared).as_ref());
        }
        EncType::XChaCha20 => {
            let mut h = Blake2b::<U32>::new();
            h.update(shared);
            h.update(client_pub);
            h.update(server_pub);
            key.copy_from_slice(&h.finalize());
        }
        // Legacy: the raw shared secret is the key, exactly as the C++ server does.
        EncType::AesCbc => key.copy_from_slice(shared),
    }
    key
}

/// Computes `X25519(secret, public)` with x25519-dalek: the client side, where speed matters
/// less than on the node (which uses aws-lc-rs in `peel`).
pub(crate) fn client_shared_secret(
    secret: &[u8; 32],
    public: &[u8; 32],
) -> Result<Zeroizing<[u8; 32]>, PeelError> {
    let secret = x25519_dalek::StaticSecret::from(*secret);
    let shared = secret.diffie_hellman(&x25519_dalek::PublicKey::from(*public));
    if !shared.was_contributory() {
        return Err(PeelError::LowOrderKey);
    }
    Ok(Zeroizing::new(shared.to_bytes()))
}

/// A ready-to-use layer key: the expanded cipher state for one `enc_type`.
pub(crate) enum LayerCipher {
    /// AES-256-GCM through aws-lc-rs (≈4x faster than RustCrypto here, see BENCHMARKS.md).
    AesGcm(LessSafeKey),
    /// XChaCha20-Poly1305 through RustCrypto (aws-lc-rs has no XChaCha).
    XChaCha20(Box<XChaCha20Poly1305>),
    /// AES-256-CBC key bytes; the cipher state is rebuilt per use with its IV.
    AesCbc(Zeroizing<[u8; 32]>),
}

impl LayerCipher {
    /// Builds the cipher of one layer from its shared secret and the two public keys.
    pub(crate) fn new(
        enc_type: EncType,
        shared: &[u8; 32],
        client_pub: &[u8; 32],
        server_pub: &[u8; 32],
    ) -> Result<Self, PeelError> {
        let key = derive_key(enc_type, shared, client_pub, server_pub);
        Ok(match enc_type {
            EncType::AesGcm => {
                let unbound = UnboundKey::new(&AES_256_GCM, key.as_ref())
                    .map_err(|_| PeelError::KeySetup { enc_type })?;
                Self::AesGcm(LessSafeKey::new(unbound))
            }
            EncType::XChaCha20 => {
                let key = chacha20poly1305::Key::from_slice(&key[..]);
                Self::XChaCha20(Box::new(XChaCha20Poly1305::new(key)))
            }
            EncType::AesCbc => Self::AesCbc(key),
        })
    }

    /// The cipher this key belongs to.
    pub(crate) fn enc_type(&self) -> EncType {
        match self {
            Self::AesGcm(_) => EncType::AesGcm,
            Self::XChaCha20(_) => EncType::XChaCha20,
            Self::AesCbc(_) => EncType::AesCbc,
        }
    }

    /// Seals `plaintext` as `nonce || ciphertext || tag` (or `IV || CBC blocks`) with a fresh
    /// random nonce from `rng`; no associated data, as every Session implementation does.
    pub(crate) fn encrypt<R: RngCore + CryptoRng>(
        &self,
        plaintext: &[u8],
        rng: &mut R,
    ) -> Result<Vec<u8>, PeelError> {
        match self {
            Self::AesGcm(key) => {
                let mut iv = [0u8; GCM_NONCE_LEN];
                rng.fill_bytes(&mut iv);
                let mut out = Vec::with_capacity(GCM_NONCE_LEN + plaintext.len() + TAG_LEN);
                out.extend_from_slice(&iv);
                out.extend_from_slice(plaintext);
                let tag = key
                    .seal_in_place_separate_tag(
                        Nonce::assume_unique_for_key(iv),
                        Aad::empty(),
                        &mut out[GCM_NONCE_LEN..],
                    )
                    .map_err(|_| PeelError::KeySetup {
                        enc_type: EncType::AesGcm,
                    })?;
                out.extend_from_slice(tag.as_ref());
                Ok(out)
            }
            Self::XChaCha20(cipher) => {
                let mut nonce = [0u8; XCHACHA_NONCE_LEN];
                rng.fill_bytes(&mut nonce);
                let mut out = Vec::with_capacity(XCHACHA_NONCE_LEN + plaintext.len() + TAG_LEN);
                out.extend_from_slice(&nonce);
                out.extend_from_slice(plaintext);
                let tag = cipher
                    .encrypt_in_place_detached(
                        XNonce::from_slice(&nonce),
                        b"",
                        &mut out[XCHACHA_NONCE_LEN..],
                    )
                    .map_err(|_| PeelError::KeySetup {
                        enc_type: EncType::XChaCha20,
                    })?;
                out.extend_from_slice(&tag);
                Ok(out)
            }
            Self::AesCbc(key) => {
                let mut iv = [0u8; CBC_IV_LEN];
                rng.fill_bytes(&mut iv);
                let enc = cbc::Encryptor::<aes::Aes256>::new(
                    GenericArray::from_slice(&key[..]),
                    GenericArray::from_slice(&iv),
                );
                let body = enc.encrypt_padded_vec_mut::<Pkcs7>(plaintext);
                let mut out = Vec::with_capacity(CBC_IV_LEN + body.len());
                out.extend_from_slice(&iv);
                out.extend_from_slice(&body);
                Ok(out)
            }
        }
    }

    /// Opens one nonce-prefixed ciphertext; any tampering, a wrong key or a wrong cipher fails.
    pub(crate) fn decrypt(&self, data: &[u8]) -> Result<Vec<u8>, PeelError> {
        let enc_type = self.enc_type();
        let malformed = PeelError::Malformed {
            enc_type,
            len: data.len(),
        };
        if data.len() < enc_type.min_ciphertext_len() {
            return Err(malformed);
        }
        match self {
            Self::AesGcm(key) => {
                let (iv, sealed) = data.split_at(GCM_NONCE_LEN);
                let nonce = Nonce::try_assume_unique_for_key(iv).map_err(|_| malformed)?;
                let mut buf = sealed.to_vec();
                let len = key
                    .open_in_place(nonce, Aad::empty(), &mut buf)
                    .map_err(|_| PeelError::Decrypt { enc_type })?
                    .len();
                buf.truncate(len);
                Ok(buf)
            }
            Self::XChaCha20(cipher) => {
                let (nonce, sealed) = data.split_at(XCHACHA_NONCE_LEN);
                let (body, tag) = sealed.split_at(sealed.len() - TAG_LEN);
                let mut buf = body.to_vec();
                cipher
                    .decrypt_in_place_detached(
                        XNonce::from_slice(nonce),
                        b"",
                        &mut buf,
                        chacha20poly1305::Tag::from_slice(tag),
                    )
                    .map_err(|_| PeelError::Decrypt { enc_type })?;
                Ok(buf)
            }
            Self::AesCbc(key) => {
                let (iv, body) = data.split_at(CBC_IV_LEN);
                if body.len() % 16 != 0 {
                    return Err(malformed);
                }
                let dec = cbc::Decryptor::<aes::Aes256>::new(
                    GenericArray::from_slice(&key[..]),
                    GenericArray::from_slice(iv),
                );
                dec.decrypt_padded_vec_mut::<Pkcs7>(body)
                    .map_err(|_| PeelError::Decrypt { enc_type })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    fn h32(s: &str) -> [u8; 32] {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).expect("test vector is 64 hex digits");
        out
    }

    // LSU tests/test_onionreq.cpp "Onion request encryption" keys (clients.md 3.1).
    const LSU_A: &str = "bbdfc83022d0aff084a6f0c529a93d1c4d728bf7e41199afed0e01ae70d20540";
    const LSU_A_SEC: &str = "ccc335912da8939e2b44816728a5a4773063efa82bf7ae2d42a0abfa2caa452d";
    const LSU_B: &str = "caea52c5b0c316d85ffb53ea536826618b13dee40685f166f632653114526a78";
    const LSU_B_SEC: &str = "8fcd8ad3a15c76f76f1c56dff0c529999f8c59b4acda79e05666e54d5727dca1";

    // SS unit_test/encrypt.cpp keys (storage-server.md 2.9).
    const ALICE_PUB: &str = "01c7391664840b2ef7126b3709dbac178ba5f3ef2335a62343d5df7da4a11c30";
    const ALICE_SEC: &str = "7d446468c186d6fb3c83365ab77a37b1f9fa3e59eb9788a40ae2e9560f196f30";
    const BOB_PUB: &str = "f7b99da2e25e3c399902641c707ae20ad72b63ed0cc487730ff0b3bcecf18609";
    const BOB_SEC: &str = "f512f68e81a932aa2ff6d8723baa260a43a6f789d61c91b71f73e4f284e3600a";

    #[test]
    fn enc_type_names_and_aliases() {
        for (name, want) in [
            ("aes-gcm", EncType::AesGcm),
            ("gcm", EncType::AesGcm),
            ("xchacha20", EncType::XChaCha20),
            ("xchacha20-poly1305", EncType::XChaCha20),
            ("aes-cbc", EncType::AesCbc),
            ("cbc", EncType::AesCbc),
        ] {
            assert_eq!(EncType::from_name(name), Some(want), "{name}");
        }
        for bad in ["", "AES-GCM", "chacha20", "aes-gcm ", "xchacha"] {
            assert_eq!(EncType::from_name(bad), None, "{bad:?}");
        }
        assert_eq!(EncType::default(), EncType::AesGcm);
        for e in [EncType::AesGcm, EncType::XChaCha20, EncType::AesCbc] {
            assert_eq!(EncType::from_name(e.as_str()), Some(e));
            assert_eq!(e.to_string(), e.as_str());
        }
    }

    #[test]
    fn lsu_derived_keys() {
        let shared = client_shared_secret(&h32(LSU_B_SEC), &h32(LSU_A)).expect("valid keys");
        assert_eq!(
            hex::encode(*shared),
            "d18901cbf26809d48c34c4fba44d3b908dbf1bdd3a7ee601a49f1e11ea70ea6e"
        );
        // ECDH is symmetric: the client computes the same secret.
        let other = client_shared_secret(&h32(LSU_A_SEC), &h32(LSU_B)).expect("valid keys");
        assert_eq!(*shared, *other);
        let (a, b) = (h32(LSU_A), h32(LSU_B));
        assert_eq!(
            hex::encode(*derive_key(EncType::AesGcm, &shared, &a, &b)),
            "4f310f62c43f14d7fea7c084819a4e394d9fc7005919275ac18d9eb8bf3e4231"
        );
        assert_eq!(
            hex::encode(*derive_key(EncType::XChaCha20, &shared, &a, &b)),
            "37a3af90eb276c0b4069998e97edf956b6933bd3c77d330a072cdf274e757ab5"
        );
        assert_eq!(*derive_key(EncType::AesCbc, &shared, &a, &b), *shared);
    }

    #[test]
    fn ss_encrypt_cpp_derived_keys() {
        let shared = client_shared_secret(&h32(ALICE_SEC), &h32(BOB_PUB)).expect("valid keys");
        assert_eq!(
            hex::encode(*shared),
            "82febb47d580439e5b71d2784f87a6946a898d71fed262aeb5bf03c2447f6069"
        );
        let (alice, bob) = (h32(ALICE_PUB), h32(BOB_PUB));
        assert_eq!(
            hex::encode(*derive_key(EncType::AesGcm, &shared, &alice, &bob)),
            "3bb5fc9d718d88fa673d69829e737b97b4a0e4be2915fc7ef8a5f5d0776c1e6f"
        );
        assert_eq!(
            hex::encode(*derive_key(EncType::XChaCha20, &shared, &alice, &bob)),
            "489bc44da3522e9acd6fb1b4c6cbf42d1d2739de64466dfafa819a9f8c21c403"
        );
    }

    /// SS unit_test/encrypt.cpp: "Grumpy cat says no!" round-trips with the documented overheads
    /// (cbc +29, gcm +28, xchacha +40), alice encrypting as client, bob decrypting as server.
    #[test]
    fn ss_encrypt_cpp_sizes_and_round_trip() {
        let pt = b"Grumpy cat says no!";
        assert_eq!(pt.len(), 19);
        let (alice, bob) = (h32(ALICE_PUB), h32(BOB_PUB));
        let alice_side = client_shared_secret(&h32(ALICE_SEC), &bob).expect("valid keys");
        let bob_side = client_shared_secret(&h32(BOB_SEC), &alice).expect("valid keys");
        let mut rng = StdRng::seed_from_u64(7);
        for (enc_type, overhead) in [
            (EncType::AesCbc, 29),
            (EncType::AesGcm, 28),
            (EncType::XChaCha20, 40),
        ] {
            let sender = LayerCipher::new(enc_type, &alice_side, &alice, &bob).expect("key");
            let ct = sender.encrypt(pt, &mut rng).expect("seal");
            assert_eq!(ct.len(), pt.len() + overhead, "{enc_type}");
            let receiver = LayerCipher::new(enc_type, &bob_side, &alice, &bob).expect("key");
            assert_eq!(receiver.decrypt(&ct).expect("open"), pt, "{enc_type}");
        }
    }

    /// SS unit_test/encrypt.cpp: xchacha binds the roles, so bob decrypting "as client" (his own
    /// key first in the hash) must fail.
    #[test]
    fn ss_encrypt_cpp_xchacha_swapped_roles_fail() {
        let (alice, bob) = (h32(ALICE_PUB), h32(BOB_PUB));
        let shared = client_shared_secret(&h32(ALICE_SEC), &bob).expect("valid keys");
        let mut rng = StdRng::seed_from_u64(8);
        let sender = LayerCipher::new(EncType::XChaCha20, &shared, &alice, &bob).expect("key");
        let ct = sender
            .encrypt(b"Grumpy cat says no!", &mut rng)
            .expect("seal");
        let swapped = LayerCipher::new(EncType::XChaCha20, &shared, &bob, &alice).expect("key");
        assert_eq!(
            swapped.decrypt(&ct),
            Err(PeelError::Decrypt {
                enc_type: EncType::XChaCha20
            })
        );
    }

    #[test]
    fn every_byte_flip_fails_and_short_inputs_are_malformed() {
        let (a, b) = (h32(LSU_A), h32(LSU_B));
        let shared = client_shared_secret(&h32(LSU_A_SEC), &b).expect("valid keys");
        let mut rng = StdRng::seed_from_u64(9);
        for enc_type in [EncType::AesGcm, EncType::XChaCha20] {
            let key = LayerCipher::new(enc_type, &shared, &a, &b).expect("key");
            let ct = key.encrypt(b"Hello world", &mut rng).expect("seal");
            for i in 0..ct.len() {
                let mut bad = ct.clone();
                bad[i] ^= 0x01;
                assert!(key.decrypt(&bad).is_err(), "{enc_type} flip at {i}");
            }
            // The empty plaintext is the shortest valid ciphertext; one byte less is malformed.
            let empty = key.encrypt(b"", &mut rng).expect("seal");
            assert_eq!(empty.len(), enc_type.min_ciphertext_len());
            assert_eq!(key.decrypt(&empty).expect("open"), b"");
            let short = &empty[..empty.len() - 1];
            assert_eq!(
                key.decrypt(short),
                Err(PeelError::Malformed {
                    enc_type,
                    len: short.len()
                })
            );
        }
        let cbc = LayerCipher::new(EncType::AesCbc, &shared, &a, &b).expect("key");
        let ct = cbc.encrypt(b"0123456789abcdef", &mut rng).expect("seal");
        assert_eq!(
            ct.len(),
            16 + 32,
            "a full block of plaintext gets a full block of padding"
        );
        assert!(matches!(
            cbc.decrypt(&ct[..ct.len() - 1]),
            Err(PeelError::Malformed { .. })
        ));
        assert!(matches!(
            cbc.decrypt(&ct[..20]),
            Err(PeelError::Malformed { .. })
        ));
    }

    #[test]
    fn low_order_points_are_refused() {
        // The identity (u = 0) and u = 1 are low-order points: X25519 gives all zeros.
        let secret = h32(LSU_B_SEC);
        let mut one = [0u8; 32];
        one[0] = 1;
        assert_eq!(
            client_shared_secret(&secret, &[0u8; 32]),
            Err(PeelError::LowOrderKey)
        );
        assert_eq!(
            client_shared_secret(&secret, &one),
            Err(PeelError::LowOrderKey)
        );
        assert!(is_all_zero(&[0u8; 32]) && !is_all_zero(&one));
    }
}
