//! End-to-end message bodies: sealed to the recipient's Session ID, signed by the sender —
//! Session's one-to-one scheme (libsession `encrypt_for_recipient`), so nodes only ever hold
//! ciphertext and a recipient knows who wrote a message.
//!
//! Exact framing of a stored message's `data`:
//!
//! ```text
//! sig  = Ed25519_sign(sender_ed25519_secret, text ‖ sender_ed25519_pub ‖ recipient_x25519_pub)
//! data = crypto_box_seal(text ‖ sender_ed25519_pub (32) ‖ sig (64), recipient_x25519_pub)
//! ```
//!
//! `text` is UTF-8; `crypto_box_seal` is libsodium's sealed box (ephemeral X25519 key ‖
//! XSalsa20-Poly1305, nonce = BLAKE2b-192(ephemeral_pub ‖ recipient_pub)). Signing the
//! recipient's key stops a recipient from re-sealing a message to someone else as if it came
//! from the sender. (Session clients further wrap `text` in protobuf envelopes; snode's client
//! seals the text alone.) Must not: log texts or keys. Pure: no I/O.

use crypto_box::{PublicKey, SecretKey};
use ed25519_dalek::{Signature, Verifier as _, VerifyingKey};
use rand::rngs::OsRng;
use zeroize::Zeroizing;

use super::identity::{Identity, SESSION_ID_PREFIX};
use crate::keys::ed25519_pk_to_x25519;
use crate::message::AccountId;

/// Bytes after the text: sender Ed25519 key and signature.
const TRAILER: usize = 32 + 64;

/// A message that opened and verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opened {
    /// The sender's Session ID (from the Ed25519 key that signed).
    pub from: String,
    /// The text.
    pub text: String,
}

/// Why a message was rejected. `Display` is the short reason `poll` reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Rejected {
    /// Not sealed to us, or altered in transit.
    #[error("cannot decrypt")]
    Undecryptable,
    /// Too short to hold a sender key and a signature.
    #[error("malformed")]
    Malformed,
    /// The sender key is not a valid Ed25519 key.
    #[error("invalid sender key")]
    BadSenderKey,
    /// The signature does not verify: forged or altered.
    #[error("bad signature")]
    BadSignature,
    /// The text is not UTF-8.
    #[error("text is not UTF-8")]
    NotUtf8,
}

/// Why a message could not be sealed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    /// Only `05` Session IDs have the X25519 key a message is sealed to.
    #[error("recipient is not a Session ID")]
    NotSessionId,
    /// The cipher refused (cannot happen for in-memory sizes).
    #[error("sealing failed")]
    Seal,
}

/// What the sender signs: `text ‖ sender_ed25519 ‖ recipient_x25519`.
fn signed_part(text: &[u8], sender_ed: &[u8; 32], recipient_x: &[u8; 32]) -> Vec<u8> {
    let mut m = Vec::with_capacity(text.len() + 64);
    m.extend_from_slice(text);
    m.extend_from_slice(sender_ed);
    m.extend_from_slice(recipient_x);
    m
}

/// Seals `text` from `sender` to the Session ID `recipient`.
pub fn seal_message(
    sender: &Identity,
    recipient: &AccountId,
    text: &str,
) -> Result<Vec<u8>, SealError> {
    if recipient.kind != SESSION_ID_PREFIX {
        return Err(SealError::NotSessionId);
    }
    let sender_ed = sender.ed25519_public();
    let sig = sender.sign(&signed_part(text.as_bytes(), &sender_ed, &recipient.key));
    let mut plain = Zeroizing::new(Vec::with_capacity(text.len() + TRAILER));
    plain.extend_from_slice(text.as_bytes());
    plain.extend_from_slice(&sender_ed);
    plain.extend_from_slice(&sig);
    PublicKey::from(recipient.key)
        .seal(&mut OsRng, &plain)
        .map_err(|_| SealError::Seal)
}

/// Opens a message sealed to `recipient` and checks its signature.
pub fn open_message(recipient: &Identity, data: &[u8]) -> Result<Opened, Rejected> {
    let secret = SecretKey::from(*recipient.x25519_secret());
    let plain = Zeroizing::new(secret.unseal(data).map_err(|_| Rejected::Undecryptable)?);
    let text_len = plain
        .len()
        .checked_sub(TRAILER)
        .ok_or(Rejected::Malformed)?;
    let (text, trailer) = plain.split_at(text_len);
    let (sender_ed, sig) = trailer.split_at(32);
    let sender_ed: [u8; 32] = sender_ed.try_into().map_err(|_| Rejected::Malformed)?;
    let sig: [u8; 64] = sig.try_into().map_err(|_| Rejected::Malformed)?;
    let key = VerifyingKey::from_bytes(&sender_ed).map_err(|_| Rejected::BadSenderKey)?;
    let sender_x = ed25519_pk_to_x25519(&sender_ed).ok_or(Rejected::BadSenderKey)?;
    key.verify(
        &signed_part(text, &sender_ed, &recipient.x25519_public()),
        &Signature::from_bytes(&sig),
    )
    .map_err(|_| Rejected::BadSignature)?;
    let text = std::str::from_utf8(text).map_err(|_| Rejected::NotUtf8)?;
    Ok(Opened {
        from: AccountId {
            kind: SESSION_ID_PREFIX,
            key: sender_x,
        }
        .to_hex(),
        text: text.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_names_the_sender() {
        let alice = Identity::from_seed([1; 32]);
        let bob = Identity::from_seed([2; 32]);
        let data = seal_message(&alice, &bob.account(), "hi bob ✓").unwrap();
        // Sealed box overhead (32-byte ephemeral key + 16-byte tag) plus the trailer.
        assert_eq!(data.len(), "hi bob ✓".len() + TRAILER + 48);
        let opened = open_message(&bob, &data).unwrap();
        assert_eq!(
            opened,
            Opened {
                from: alice.session_id(),
                text: "hi bob ✓".into()
            }
        );
        // Only the recipient can open it.
        assert_eq!(open_message(&alice, &data), Err(Rejected::Undecryptable));
        // Sealing is randomised.
        assert_ne!(
            data,
            seal_message(&alice, &bob.account(), "hi bob ✓").unwrap()
        );
    }

    #[test]
    fn tampering_and_forgery_are_rejected() {
        let alice = Identity::from_seed([1; 32]);
        let bob = Identity::from_seed([2; 32]);
        let mallory = Identity::from_seed([3; 32]);
        let mut data = seal_message(&alice, &bob.account(), "pay 10").unwrap();
        data[40] ^= 1;
        assert_eq!(open_message(&bob, &data), Err(Rejected::Undecryptable));

        // Mallory claims Alice's key but cannot sign as her.
        let sig = mallory.sign(&signed_part(
            b"pay 1000",
            &alice.ed25519_public(),
            &bob.x25519_public(),
        ));
        let mut plain = b"pay 1000".to_vec();
        plain.extend_from_slice(&alice.ed25519_public());
        plain.extend_from_slice(&sig);
        let forged = PublicKey::from(bob.x25519_public())
            .seal(&mut OsRng, &plain)
            .unwrap();
        assert_eq!(open_message(&bob, &forged), Err(Rejected::BadSignature));

        // A message Alice sealed to Mallory, re-sealed by Mallory to Bob, fails: the signature
        // covers the intended recipient.
        let to_mallory = seal_message(&alice, &mallory.account(), "secret").unwrap();
        let inner = SecretKey::from(*mallory.x25519_secret())
            .unseal(&to_mallory)
            .unwrap();
        let resealed = PublicKey::from(bob.x25519_public())
            .seal(&mut OsRng, &inner)
            .unwrap();
        assert_eq!(open_message(&bob, &resealed), Err(Rejected::BadSignature));

        let short = PublicKey::from(bob.x25519_public())
            .seal(&mut OsRng, &[0; 95])
            .unwrap();
        assert_eq!(open_message(&bob, &short), Err(Rejected::Malformed));
        assert_eq!(open_message(&bob, b"short"), Err(Rejected::Undecryptable));

        let mut group = bob.account();
        group.kind = 0x03;
        assert_eq!(
            seal_message(&alice, &group, "x"),
            Err(SealError::NotSessionId)
        );
    }

    #[test]
    fn non_utf8_text_is_rejected() {
        let alice = Identity::from_seed([1; 32]);
        let bob = Identity::from_seed([2; 32]);
        let text = [0xffu8, 0xfe];
        let sig = alice.sign(&signed_part(
            &text,
            &alice.ed25519_public(),
            &bob.x25519_public(),
        ));
        let mut plain = text.to_vec();
        plain.extend_from_slice(&alice.ed25519_public());
        plain.extend_from_slice(&sig);
        let data = PublicKey::from(bob.x25519_public())
            .seal(&mut OsRng, &plain)
            .unwrap();
        assert_eq!(open_message(&bob, &data), Err(Rejected::NotUtf8));
    }
}
