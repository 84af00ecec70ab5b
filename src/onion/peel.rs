//! The node side of one onion layer: X25519 with the node's static key, then open the layer;
//! and the key that encrypts the final destination's reply (storage-server.md 2.2, 2.5).
//!
//! Owns: `NodeOnionKey` (the node's X25519 secret as an aws-lc-rs key, parsed once and reused by
//! every request), `peel`, `ReplyKey`. Must not: parse framing or JSON, log keys or plaintext, or
//! keep any state between requests.
//!
//! Why aws-lc-rs: X25519 is ~97 % of a 1 KiB peel; on these machines its X25519 costs about half
//! of x25519-dalek's (BENCHMARKS.md, "Onion"), and its AES-GCM is ~4x RustCrypto's.

use super::crypto::{EncType, LayerCipher, PeelError, is_all_zero};
use aws_lc_rs::agreement::{self, PrivateKey, UnparsedPublicKey, X25519};
use rand::rngs::OsRng;
use rand::{CryptoRng, RngCore};
use std::fmt;
use zeroize::Zeroizing;

/// Why the node's X25519 secret could not be loaded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NodeKeyError {
    /// aws-lc-rs refused the 32 secret bytes.
    #[error("X25519 secret key rejected by aws-lc-rs")]
    Rejected,
    /// The public key could not be computed from the secret.
    #[error("cannot compute the X25519 public key")]
    PublicKey,
}

/// The node's static X25519 key, ready for key agreement on every onion layer.
pub struct NodeOnionKey {
    /// Parsed once: re-parsing the secret per request would cost a key import each time.
    private: PrivateKey,
    /// `pubkey_x25519`: the `server_pub` of the xchacha20 key derivation.
    public: [u8; 32],
}

impl fmt::Debug for NodeOnionKey {
    /// Shows the public key only; the secret never reaches a log.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodeOnionKey")
            .field("public", &hex::encode(self.public))
            .finish_non_exhaustive()
    }
}

impl NodeOnionKey {
    /// Loads the node's 32-byte X25519 secret (derived from its Ed25519 key by `keys`).
    pub fn from_secret(secret: &[u8; 32]) -> Result<Self, NodeKeyError> {
        let private =
            PrivateKey::from_private_key(&X25519, secret).map_err(|_| NodeKeyError::Rejected)?;
        let public_key = private
            .compute_public_key()
            .map_err(|_| NodeKeyError::PublicKey)?;
        let public: [u8; 32] = public_key
            .as_ref()
            .try_into()
            .map_err(|_| NodeKeyError::PublicKey)?;
        Ok(Self { private, public })
    }

    /// The node's X25519 public key (`pubkey_x25519`).
    pub fn public_key(&self) -> &[u8; 32] {
        &self.public
    }

    /// `X25519(node_secret, eph_pub)`; an all-zero result (low-order point) is refused.
    pub fn shared_secret(&self, eph_pub: &[u8; 32]) -> Result<Zeroizing<[u8; 32]>, PeelError> {
        let peer = UnparsedPublicKey::new(&X25519, eph_pub);
        let shared = agreement::agree(&self.private, peer, PeelError::LowOrderKey, |s| {
            let bytes: [u8; 32] = s.try_into().map_err(|_| PeelError::LowOrderKey)?;
            Ok(Zeroizing::new(bytes))
        })?;
        // aws-lc already refuses the all-zero output (RFC 7748 section 6.1); the check is kept
        // here so the guarantee does not depend on a library detail.
        if is_all_zero(&shared) {
            return Err(PeelError::LowOrderKey);
        }
        Ok(shared)
    }

    /// Peels one layer: see the free function [`peel`].
    pub fn peel(
        &self,
        eph_pub: &[u8; 32],
        enc_type: EncType,
        ciphertext: &[u8],
    ) -> Result<(Vec<u8>, ReplyKey), PeelError> {
        // Reject impossible lengths before paying for the X25519.
        if ciphertext.len() < enc_type.min_ciphertext_len() {
            return Err(PeelError::Malformed {
                enc_type,
                len: ciphertext.len(),
            });
        }
        let shared = self.shared_secret(eph_pub)?;
        let cipher = LayerCipher::new(enc_type, &shared, eph_pub, &self.public)?;
        let plaintext = cipher.decrypt(ciphertext)?;
        Ok((plaintext, ReplyKey { cipher }))
    }
}

/// Decrypts one onion layer addressed to this node: `ciphertext` was sealed by the holder of
/// the ephemeral secret behind `eph_pub` with `enc_type`. Returns the plaintext (which `route`
/// then reads) and the key for the reply, should this node turn out to be the destination.
/// Every error means the node answers plain-text `400 Invalid ciphertext`.
pub fn peel(
    key: &NodeOnionKey,
    eph_pub: &[u8; 32],
    enc_type: EncType,
    ciphertext: &[u8],
) -> Result<(Vec<u8>, ReplyKey), PeelError> {
    key.peel(eph_pub, enc_type, ciphertext)
}

/// Encrypts the final destination's reply with the layer's own key and cipher (2.5): responses
/// are encrypted once, by the destination, and relays forward the bytes untouched.
pub struct ReplyKey {
    cipher: LayerCipher,
}

impl fmt::Debug for ReplyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReplyKey")
            .field("enc_type", &self.enc_type())
            .finish_non_exhaustive()
    }
}

impl ReplyKey {
    /// The cipher of the layer (and so of the reply).
    pub fn enc_type(&self) -> EncType {
        self.cipher.enc_type()
    }

    /// Seals `plaintext` (the `{"status":…,"body":…}` JSON) with a fresh random nonce from the
    /// operating system. The caller base64-encodes it unless the layer asked `"base64": false`.
    pub fn encrypt(&self, plaintext: &[u8]) -> Vec<u8> {
        self.encrypt_with_rng(plaintext, &mut OsRng)
    }

    /// As [`ReplyKey::encrypt`] with a caller-chosen RNG (tests, benches).
    pub fn encrypt_with_rng<R: RngCore + CryptoRng>(
        &self,
        plaintext: &[u8],
        rng: &mut R,
    ) -> Vec<u8> {
        // Sealing with a valid 32-byte key cannot fail (only a > 64 GiB GCM message could,
        // far above the 10 MiB bound); an empty reply then makes the client fail to decrypt,
        // which is the honest outcome, rather than a panic on the request path.
        self.cipher.encrypt(plaintext, rng).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::onion::build::ClientReplyKey;
    use crate::onion::parse::parse_combined;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    fn h32(s: &str) -> [u8; 32] {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).expect("test vector is 64 hex digits");
        out
    }

    // clients.md 3.1 (LSU "Onion request encryption").
    const A: &str = "bbdfc83022d0aff084a6f0c529a93d1c4d728bf7e41199afed0e01ae70d20540";
    const B: &str = "caea52c5b0c316d85ffb53ea536826618b13dee40685f166f632653114526a78";
    const B_SEC: &str = "8fcd8ad3a15c76f76f1c56dff0c529999f8c59b4acda79e05666e54d5727dca1";
    const ENC_GCM: &str =
        "1eb6ae1cd72f60999486365749bd5dc15cc0b6a2a44d7d063daa5e93722f0c025fd00306403b61";
    const ENC_GCM_BROKEN1: &str =
        "1eb6ae1cd72f60999486365759bd5dc15cc0b6a2a44d7d063daa5e93722f0c025fd00306403b61";
    const ENC_GCM_BROKEN2: &str =
        "1eb6ae1cd72f60999486365749bd5dc15cc0b6a2a44d7d063daa5e93722f0c025fd00306403b69";
    const ENC_XCHACHA: &str = "9e1a3abe60eff3ea5c23556cc7e225b6f94355315f7281f66ecf4dbb06e7899a52b863e03cde3b287d1638d765db75de02b032";
    const ENC_XCHACHA_BROKEN1: &str = "9e1a3abe60eff3ea5c23556cc7e225b6f94355315f7281f66ecf4dbb06e7899a52b863e03cde3b287d1638d765db75de02b033";
    const ENC_XCHACHA_BROKEN2: &str = "9e1a3abe60eff3ea5c23556ccfe225b6f94355315f7281f66ecf4dbb06e7899a52b863e03cde3b287d1638d765db75de02b032";

    // clients.md 3.2 (LSU "Onion request parser").
    const P_A_SEC: &str = "d2ee09e1a557a077d385fcb69a11ffb6909ecdcc8348def3e0e4172c8a1431c1";
    const P_B: &str = "8388de69bc0d4b6196133233ad9a46ba0473474bc67718aad96a3a33c257f726";
    const P_B_SEC: &str = "2f4d1c0d28e137777ec0a316e9f4f763e3e66662a6c51994c6315c9ef34b6deb";
    const P_A: &str = "8167e97672005c669a48858c69895f395ca235219ac3f7a4210022b1f910e652";

    #[test]
    fn node_key_public_matches_vectors() {
        assert_eq!(
            hex::encode(NodeOnionKey::from_secret(&h32(B_SEC)).expect("key").public),
            B
        );
        let k = NodeOnionKey::from_secret(&h32(P_B_SEC)).expect("key");
        assert_eq!(hex::encode(k.public_key()), P_B);
        let shown = format!("{k:?}");
        assert!(shown.contains(P_B) && !shown.contains(P_B_SEC), "{shown}");
    }

    #[test]
    fn lsu_encryption_vectors() {
        let node = NodeOnionKey::from_secret(&h32(B_SEC)).expect("key");
        let a = h32(A);
        let dec = |enc_type, ct: &str| {
            node.peel(&a, enc_type, &hex::decode(ct).expect("hex"))
                .map(|(pt, _)| pt)
        };
        assert_eq!(
            dec(EncType::AesGcm, ENC_GCM).expect("valid"),
            b"Hello world"
        );
        assert_eq!(
            dec(EncType::XChaCha20, ENC_XCHACHA).expect("valid"),
            b"Hello world"
        );
        for broken in [ENC_GCM_BROKEN1, ENC_GCM_BROKEN2] {
            assert_eq!(
                dec(EncType::AesGcm, broken),
                Err(PeelError::Decrypt {
                    enc_type: EncType::AesGcm
                })
            );
        }
        for broken in [ENC_XCHACHA_BROKEN1, ENC_XCHACHA_BROKEN2] {
            assert_eq!(
                dec(EncType::XChaCha20, broken),
                Err(PeelError::Decrypt {
                    enc_type: EncType::XChaCha20
                })
            );
            // The upstream test also decrypts these as GCM: that must fail too.
            assert!(dec(EncType::AesGcm, broken).is_err());
        }
        // Wrong cipher for good data fails as well.
        assert!(dec(EncType::XChaCha20, ENC_GCM).is_err());
        assert!(dec(EncType::AesGcm, ENC_XCHACHA).is_err());
        assert!(dec(EncType::AesCbc, ENC_GCM).is_err());
    }

    /// clients.md 3.2: the full entry-node wire format, payload, remote key and reply sizes,
    /// and the reply decrypts on the client side.
    #[test]
    fn lsu_parser_vectors_peel_and_reply() {
        let node = NodeOnionKey::from_secret(&h32(P_B_SEC)).expect("key");
        let mut rng = StdRng::seed_from_u64(1);
        for (body_hex, enc_type, sizes) in [
            (
                crate::onion::parse::tests::LSU_GCM_BODY,
                EncType::AesGcm,
                (12, 16),
            ),
            (
                crate::onion::parse::tests::LSU_XCHACHA_BODY,
                EncType::XChaCha20,
                (24, 16),
            ),
        ] {
            let body = hex::decode(body_hex).expect("hex");
            let c = parse_combined(&body).expect("valid body");
            assert_eq!(hex::encode(c.ephemeral_key), P_A);
            assert_eq!(c.enc_type, enc_type);
            let (payload, reply_key) =
                peel(&node, &c.ephemeral_key, c.enc_type, c.ciphertext).expect("decrypts");
            assert_eq!(payload, b"Hello world");
            assert_eq!(reply_key.enc_type(), enc_type);

            let reply = reply_key.encrypt(b"Goodbye world");
            assert_eq!(reply.len(), sizes.0 + 13 + sizes.1, "{enc_type}");
            let seeded = reply_key.encrypt_with_rng(b"Goodbye world", &mut rng);
            assert_ne!(reply, seeded, "fresh nonce per reply");
            let client = ClientReplyKey::new(&h32(P_A_SEC), &h32(P_B), enc_type).expect("key");
            assert_eq!(
                client.decrypt_reply(&reply).expect("client opens"),
                b"Goodbye world"
            );
            assert_eq!(
                client.decrypt_reply(&seeded).expect("client opens"),
                b"Goodbye world"
            );
            let mut tampered = reply.clone();
            tampered[reply.len() - 1] ^= 1;
            assert!(client.decrypt_reply(&tampered).is_err());
        }
    }

    #[test]
    fn low_order_and_short_inputs_are_refused_before_decrypting() {
        let node = NodeOnionKey::from_secret(&h32(B_SEC)).expect("key");
        let ct = hex::decode(ENC_GCM).expect("hex");
        let mut one = [0u8; 32];
        one[0] = 1;
        for low in [[0u8; 32], one] {
            assert_eq!(node.shared_secret(&low), Err(PeelError::LowOrderKey));
            assert_eq!(
                node.peel(&low, EncType::AesGcm, &ct).map(|(p, _)| p),
                Err(PeelError::LowOrderKey)
            );
        }
        assert_eq!(
            node.peel(&h32(A), EncType::XChaCha20, &ct[..39])
                .map(|(p, _)| p),
            Err(PeelError::Malformed {
                enc_type: EncType::XChaCha20,
                len: 39
            })
        );
        assert!(matches!(
            node.peel(&h32(A), EncType::AesGcm, &[]),
            Err(PeelError::Malformed { len: 0, .. })
        ));
    }

    #[test]
    fn node_key_is_shareable_across_tasks() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<NodeOnionKey>();
        assert_send_sync::<ReplyKey>();
    }
}
