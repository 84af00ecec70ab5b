//! Request signatures: the exact signed messages of every client method, subaccount tokens,
//! and the verification of storage-server.md 1.4.
//!
//! Owns key selection (`pubkey_ed25519` for `05` accounts, else the raw account key),
//! subaccount token checks (prefix, flags, revocation, the account's signature over the token)
//! and the Ed25519 check itself. Pure: no I/O, no clock; revocation is asked through a closure
//! so the caller decides where revocations live (and whether the check is skipped).

use crate::message::{AccountId, Namespace, NamespaceSel};
use ed25519_dalek::{Signature, VerifyingKey};

/// Length of a subaccount token.
pub const SUBACCOUNT_TOKEN_LEN: usize = 36;

/// Access bits of a subaccount token (`[1]` of the token), and the access a method requires.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Access(pub u8);

impl Access {
    /// No access bits.
    pub const NONE: Access = Access(0);
    /// May retrieve.
    pub const READ: Access = Access(0x01);
    /// May store and extend expiries.
    pub const WRITE: Access = Access(0x02);
    /// May delete and shorten expiries.
    pub const DELETE: Access = Access(0x04);
    /// The token is valid for accounts of any network prefix.
    pub const ANY_PREFIX: Access = Access(0x08);

    /// Whether every bit of `other` is set here.
    pub fn contains(self, other: Access) -> bool {
        self.0 & other.0 == other.0
    }
}

impl std::ops::BitOr for Access {
    type Output = Access;
    fn bitor(self, rhs: Access) -> Access {
        Access(self.0 | rhs.0)
    }
}

/// A subaccount token: network prefix, flags, two reserved bytes, the subaccount's Ed25519 key.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SubaccountToken(pub [u8; SUBACCOUNT_TOKEN_LEN]);

impl SubaccountToken {
    /// Builds a token as network-tests' `subaccount.py` does.
    pub fn new(prefix: u8, flags: Access, pubkey: [u8; 32]) -> Self {
        let mut t = [0u8; SUBACCOUNT_TOKEN_LEN];
        t[0] = prefix;
        t[1] = flags.0;
        t[4..].copy_from_slice(&pubkey);
        SubaccountToken(t)
    }

    /// The network prefix the token is for (must equal the account type unless AnyPrefix).
    pub fn prefix(&self) -> u8 {
        self.0[0]
    }

    /// The access bits.
    pub fn flags(&self) -> Access {
        Access(self.0[1])
    }

    /// The subaccount's Ed25519 pubkey, which signs the requests.
    pub fn pubkey(&self) -> [u8; 32] {
        let mut pk = [0u8; 32];
        pk.copy_from_slice(&self.0[4..]);
        pk
    }
}

/// Debug shows only the prefix and flags: the key identifies a group member.
impl std::fmt::Debug for SubaccountToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "SubaccountToken(prefix={:02x}, flags={:02x})",
            self.prefix(),
            self.0[1]
        )
    }
}

/// A token with the account's signature over its 36 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SignedSubaccount {
    /// The token.
    pub token: SubaccountToken,
    /// Ed25519 signature by the account key over the token bytes.
    pub sig: [u8; 64],
}

/// The authentication a client attached to a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestAuth {
    /// For `05` accounts: the Ed25519 key whose X25519 form is the account key.
    pub pubkey_ed25519: Option<[u8; 32]>,
    /// Present when a subaccount (group member) signs instead of the account key.
    pub subaccount: Option<SignedSubaccount>,
    /// The request signature.
    pub signature: [u8; 64],
}

/// Why a request signature was refused. Every variant is the caller's 401.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// `pubkey_ed25519` was given for an account that is not a `05` Session ID.
    #[error("pubkey_ed25519 given for a non-05 account")]
    Ed25519NotPermitted,
    /// `pubkey_ed25519` does not convert to the account's X25519 key.
    #[error("pubkey_ed25519 does not match the account's X25519 pubkey")]
    Ed25519Mismatch,
    /// The subaccount token was revoked by the account.
    #[error("subaccount token is revoked")]
    Revoked,
    /// The token is for another network prefix and lacks AnyPrefix.
    #[error("subaccount token is for another network prefix")]
    WrongPrefix,
    /// The token lacks an access bit the method needs.
    #[error("subaccount token lacks the required access")]
    MissingAccess,
    /// The account's signature over the token does not verify.
    #[error("subaccount token signature is invalid")]
    BadSubaccountSig,
    /// The request signature does not verify.
    #[error("request signature is invalid")]
    BadSignature,
}

/// Ed25519 detached verification, with libsodium's acceptance rules.
///
/// libsodium's `crypto_sign_verify_detached` (≥ 1.0.16, as the original links it) rejects a
/// non-canonical `S`, a small-order public key and a small-order `R`; ed25519-dalek's
/// `verify_strict` rejects the same three, while its plain `verify` accepts small-order keys
/// and `R`. So `verify_strict` is the one that accepts exactly what the original accepts for
/// every signature an honest client can produce, and refuses the weak-key forgeries it refuses.
pub fn verify_ed25519(pubkey: &[u8; 32], msg: &[u8], sig: &[u8; 64]) -> bool {
    let Ok(vk) = VerifyingKey::from_bytes(pubkey) else {
        return false;
    };
    vk.verify_strict(msg, &Signature::from_bytes(sig)).is_ok()
}

/// The key that must have signed for `account` (before any subaccount): `pubkey_ed25519` for a
/// `05` account (checked to convert to the account's X25519 key), else the 32 account bytes.
pub fn account_verify_key(
    account: &AccountId,
    pubkey_ed25519: Option<&[u8; 32]>,
) -> Result<[u8; 32], VerifyError> {
    match pubkey_ed25519 {
        None => Ok(account.key),
        Some(_) if account.kind != 0x05 => Err(VerifyError::Ed25519NotPermitted),
        Some(ed) => match crate::keys::ed25519_pk_to_x25519(ed) {
            Some(x) if x == account.key => Ok(*ed),
            _ => Err(VerifyError::Ed25519Mismatch),
        },
    }
}

/// Verifies a request signature over `msg` for `account` (storage-server.md 1.4).
///
/// With a subaccount: the token must not be revoked (`is_revoked`; pass `|_| false` where the
/// namespace is unrevocable), its prefix must equal the account type unless AnyPrefix, it must
/// carry every bit of `required`, the account key must have signed it, and the request
/// signature is then checked with the token's key.
pub fn verify_request(
    account: &AccountId,
    auth: &RequestAuth,
    msg: &[u8],
    required: Access,
    is_revoked: impl FnOnce(&SubaccountToken) -> bool,
) -> Result<(), VerifyError> {
    let account_key = account_verify_key(account, auth.pubkey_ed25519.as_ref())?;
    let signer = match &auth.subaccount {
        None => account_key,
        Some(sub) => {
            check_subaccount(account, &account_key, sub, required, is_revoked)?;
            sub.token.pubkey()
        }
    };
    if verify_ed25519(&signer, msg, &auth.signature) {
        Ok(())
    } else {
        Err(VerifyError::BadSignature)
    }
}

/// The subaccount checks, in the original's order (revocation, prefix, flags, signature).
fn check_subaccount(
    account: &AccountId,
    account_key: &[u8; 32],
    sub: &SignedSubaccount,
    required: Access,
    is_revoked: impl FnOnce(&SubaccountToken) -> bool,
) -> Result<(), VerifyError> {
    if is_revoked(&sub.token) {
        return Err(VerifyError::Revoked);
    }
    let flags = sub.token.flags();
    if sub.token.prefix() != account.kind && !flags.contains(Access::ANY_PREFIX) {
        return Err(VerifyError::WrongPrefix);
    }
    if !flags.contains(required) {
        return Err(VerifyError::MissingAccess);
    }
    if !verify_ed25519(account_key, &sub.token.0, &sub.sig) {
        return Err(VerifyError::BadSubaccountSig);
    }
    Ok(())
}

/// The exact signed messages of each method (storage-server.md 1.5, clients.md 4.2): plain
/// concatenation, integers in decimal, namespace "" for 0, "all" for every namespace.
pub mod msg {
    use super::*;

    /// `"store" ‖ ns ‖ sig_timestamp`.
    pub fn store(ns: Namespace, sig_timestamp_ms: i64) -> Vec<u8> {
        format!("store{}{}", ns.sig_str(), sig_timestamp_ms).into_bytes()
    }

    /// `"retrieve" ‖ ns ‖ timestamp`.
    pub fn retrieve(ns: Namespace, timestamp_ms: i64) -> Vec<u8> {
        format!("retrieve{}{}", ns.sig_str(), timestamp_ms).into_bytes()
    }

    /// `"delete" ‖ hash…` in request order (no timestamp: replayable, as in the original).
    pub fn delete<S: AsRef<str>>(hashes: &[S]) -> Vec<u8> {
        let mut m = b"delete".to_vec();
        for h in hashes {
            m.extend_from_slice(h.as_ref().as_bytes());
        }
        m
    }

    /// `"delete_all" ‖ ns ‖ timestamp`.
    pub fn delete_all(sel: NamespaceSel, timestamp_ms: i64) -> Vec<u8> {
        format!("delete_all{}{}", sel.sig_str(), timestamp_ms).into_bytes()
    }

    /// `"delete_before" ‖ ns ‖ before`.
    pub fn delete_before(sel: NamespaceSel, before_ms: i64) -> Vec<u8> {
        format!("delete_before{}{}", sel.sig_str(), before_ms).into_bytes()
    }

    /// `"expire_all" ‖ ns ‖ expiry`.
    pub fn expire_all(sel: NamespaceSel, expiry_ms: i64) -> Vec<u8> {
        format!("expire_all{}{}", sel.sig_str(), expiry_ms).into_bytes()
    }

    /// `"expire" ‖ ("shorten"|"extend"|"") ‖ expiry or expiries ‖ hash…` (request order).
    pub fn expire<S: AsRef<str>>(mode: &str, expiries_ms: &[i64], hashes: &[S]) -> Vec<u8> {
        let mut m = format!("expire{mode}");
        for e in expiries_ms {
            m.push_str(&e.to_string());
        }
        for h in hashes {
            m.push_str(h.as_ref());
        }
        m.into_bytes()
    }

    /// `"get_expiries" ‖ timestamp ‖ hash…` (the timestamp comes before the list).
    pub fn get_expiries<S: AsRef<str>>(timestamp_ms: i64, hashes: &[S]) -> Vec<u8> {
        let mut m = format!("get_expiries{timestamp_ms}");
        for h in hashes {
            m.push_str(h.as_ref());
        }
        m.into_bytes()
    }

    /// `method ‖ timestamp ‖ token bytes…` for `revoke_subaccount` / `unrevoke_subaccount`.
    pub fn revoke(method: &str, timestamp_ms: i64, tokens: &[SubaccountToken]) -> Vec<u8> {
        let mut m = format!("{method}{timestamp_ms}").into_bytes();
        for t in tokens {
            m.extend_from_slice(&t.0);
        }
        m
    }

    /// `"revoked_subaccounts" ‖ timestamp`.
    pub fn revoked_subaccounts(timestamp_ms: i64) -> Vec<u8> {
        format!("revoked_subaccounts{timestamp_ms}").into_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::b64;
    use ed25519_dalek::{Signer, SigningKey};

    /// storage-server.md 1.9(b): seed 0x01..0x20.
    fn key_01_20() -> SigningKey {
        let mut seed = [0u8; 32];
        for (i, b) in seed.iter_mut().enumerate() {
            *b = i as u8 + 1;
        }
        SigningKey::from_bytes(&seed)
    }

    /// clients.md 3.3/3.5: seed 4cb76f….
    fn key_4cb76f() -> SigningKey {
        let seed = hex::decode("4cb76fdc6d32278e3f83dbf608360ecc6b65727934b85d2fb86862ff98c46ab7")
            .expect("hex");
        SigningKey::from_bytes(&seed.try_into().expect("32 bytes"))
    }

    fn sig_b64(k: &SigningKey, m: &[u8]) -> String {
        b64(&k.sign(m).to_bytes())
    }

    fn auth(k: &SigningKey, ed: Option<[u8; 32]>, m: &[u8]) -> RequestAuth {
        RequestAuth {
            pubkey_ed25519: ed,
            subaccount: None,
            signature: k.sign(m).to_bytes(),
        }
    }

    fn never(_: &SubaccountToken) -> bool {
        false
    }

    #[test]
    fn vectors_seed_01_20() {
        let k = key_01_20();
        assert_eq!(
            hex::encode(k.verifying_key().to_bytes()),
            "79b5562e8fe654f94078b112e8a98ba7901f853ae695bed7e0e3910bad049664"
        );
        let cases: [(Vec<u8>, &str); 3] = [
            (
                msg::retrieve(Namespace(0), 1_700_000_000_000),
                "WnkNhuk40lC7fDRUkMpAtR4FzFCnu15cJDoqkSBe+azc71k2tcwrl2fL/VQF0PiLuUuTvNcNkTc8KOmfH4N+BA==",
            ),
            (
                msg::store(Namespace(-42), 1_700_000_000_000),
                "vnn02qv5ihGoNDRcLICL7DcYWKfwtjLOl/D6ElfGSRZhlxQGv5xf+QkBszghPbPJiEgzX1f8LxwaHiaaKpnUDQ==",
            ),
            (
                msg::delete_all(NamespaceSel::All, 1_700_000_000_000),
                "V7PcL6bhteAeRCdZZw9aVStDWBCDs5c4X5HeKAYeqPooz3lzVOr77iLdZ77hhv+cFpNZQ4HwKydBPtnVYDpwBw==",
            ),
        ];
        let sid = AccountId::from_hex(
            "054a3807d064d077181cc070989e76891d20dca5559548dc2c77c1a50273882b38",
        )
        .expect("sid");
        let group = AccountId::from_hex(
            "0379b5562e8fe654f94078b112e8a98ba7901f853ae695bed7e0e3910bad049664",
        )
        .expect("group");
        let ed = k.verifying_key().to_bytes();
        for (m, expected) in &cases {
            assert_eq!(&sig_b64(&k, m), expected);
            // A 05 Session ID verifies through pubkey_ed25519; a 03 account by its own key.
            assert_eq!(
                verify_request(&sid, &auth(&k, Some(ed), m), m, Access::READ, never),
                Ok(())
            );
            assert_eq!(
                verify_request(&group, &auth(&k, None, m), m, Access::READ, never),
                Ok(())
            );
        }
        assert_eq!(
            String::from_utf8(msg::store(Namespace(-42), 1_700_000_000_000)).expect("utf8"),
            "store-421700000000000"
        );
    }

    #[test]
    fn vectors_clients_3_5() {
        let k = key_4cb76f();
        assert_eq!(
            hex::encode(k.verifying_key().to_bytes()),
            "8862834829a87e0afadfed763fa8785e893dbde7f2c001ff1071aa55005c347f"
        );
        let ts = 1_700_000_000_000;
        let cases: [(Vec<u8>, &str, &str); 6] = [
            (
                msg::retrieve(Namespace(0), ts),
                "retrieve1700000000000",
                "DPYEOYSIoU+ClsdCflttvHWF4qZ83hjJmWV2NQX9kBrBbyjIMICoIPO1QmMVyB/SXq5+r5GSKka/5qbLSqNSCw==",
            ),
            (
                msg::retrieve(Namespace(2), ts),
                "retrieve21700000000000",
                "Y1ygUUY8HzwaDJ9zFyB0y/ohk0D706+gxh1u/rCokeVVg0ORr8gA3nfWuyjV+z+QStNJ/ck5v/8Yg5YN6T7lAg==",
            ),
            (
                msg::store(Namespace(4), ts),
                "store41700000000000",
                "uiQIq0f4HS/GpvwS9UJopLXVtmzdXUYqtHMkoudMNnnU52f7FyyTGj9nsU+9mUI2TxogJFQhcI2vPL+ovIY4DA==",
            ),
            (
                msg::delete_all(NamespaceSel::All, ts),
                "delete_allall1700000000000",
                "E6JRI5hvqGUoeNZed3soZ9ifB2KA8zaWny5OWO4069OLD01VLjyOvqizeT93GS/3WxtcjFrRcXulGH7DWSDuCA==",
            ),
            (
                msg::delete(&["hash1", "hash2"]),
                "deletehash1hash2",
                "6PcIyZ1T6kCs7Tj654pSF7vC7j5uNb6JFvHmOg3hZpJ/aYR7VfZ1NVmryv3espNr5xPwMKY49scHiC+/nu4IAg==",
            ),
            (
                msg::expire("", &[ts], &["hash1"]),
                "expire1700000000000hash1",
                "JkXtle9sWm8G0VzF9bBoTyy1f/vicYfloKAvD1ooOwpt0I3fX+J9FXa0bloMwySG/7pQB7KHx6uDaTAiRo8+Cg==",
            ),
        ];
        let sid = AccountId::from_hex(
            "0577cb6c50ed49a2c45e383ac3ca855375c68300f7ff0c803ea93cb18437d61f46",
        )
        .expect("sid");
        let ed = k.verifying_key().to_bytes();
        for (m, text, expected) in &cases {
            assert_eq!(String::from_utf8(m.clone()).expect("utf8"), *text);
            assert_eq!(&sig_b64(&k, m), expected, "{text}");
            let a = auth(&k, Some(ed), m);
            assert_eq!(verify_request(&sid, &a, m, Access::NONE, never), Ok(()));
            // The same signature over another message fails.
            assert_eq!(
                verify_request(&sid, &a, b"other", Access::NONE, never),
                Err(VerifyError::BadSignature)
            );
        }
    }

    #[test]
    fn session_id_key_selection() {
        let k = key_4cb76f();
        let ed = k.verifying_key().to_bytes();
        let sid = AccountId::from_hex(
            "0577cb6c50ed49a2c45e383ac3ca855375c68300f7ff0c803ea93cb18437d61f46",
        )
        .expect("sid");
        let m = b"retrieve1700000000000";
        // Without pubkey_ed25519 the X25519 bytes are tried as an Ed25519 key: fails (401).
        assert_eq!(
            verify_request(&sid, &auth(&k, None, m), m, Access::NONE, never),
            Err(VerifyError::BadSignature)
        );
        // Another node's ed key does not convert to this Session ID.
        let other = key_01_20().verifying_key().to_bytes();
        assert_eq!(
            verify_request(&sid, &auth(&k, Some(other), m), m, Access::NONE, never),
            Err(VerifyError::Ed25519Mismatch)
        );
        // pubkey_ed25519 is refused for non-05 accounts.
        let group = AccountId { kind: 3, key: ed };
        assert_eq!(
            verify_request(&group, &auth(&k, Some(ed), m), m, Access::NONE, never),
            Err(VerifyError::Ed25519NotPermitted)
        );
        assert!(!verify_ed25519(&[0xff; 32], m, &[0; 64]));
    }

    /// A group account (admin key `admin`) and a member signing through a token.
    fn sub_auth(
        admin: &SigningKey,
        member: &SigningKey,
        token: SubaccountToken,
        m: &[u8],
    ) -> RequestAuth {
        RequestAuth {
            pubkey_ed25519: None,
            subaccount: Some(SignedSubaccount {
                token,
                sig: admin.sign(&token.0).to_bytes(),
            }),
            signature: member.sign(m).to_bytes(),
        }
    }

    #[test]
    fn subaccounts() {
        let admin = key_01_20();
        let member = key_4cb76f();
        let group = AccountId {
            kind: 3,
            key: admin.verifying_key().to_bytes(),
        };
        let mpk = member.verifying_key().to_bytes();
        let m = msg::retrieve(Namespace(11), 1_700_000_000_000);
        let rw = SubaccountToken::new(3, Access::READ | Access::WRITE, mpk);
        assert_eq!(rw.prefix(), 3);
        assert_eq!(rw.pubkey(), mpk);
        assert_eq!(&rw.0[2..4], &[0, 0]);

        // Good: flags cover the requirement.
        let a = sub_auth(&admin, &member, rw, &m);
        assert_eq!(verify_request(&group, &a, &m, Access::READ, never), Ok(()));
        assert_eq!(
            verify_request(&group, &a, &m, Access::READ | Access::WRITE, never),
            Ok(())
        );
        // Wrong flags.
        assert_eq!(
            verify_request(&group, &a, &m, Access::DELETE, never),
            Err(VerifyError::MissingAccess)
        );
        // Revoked (the closure sees the token).
        assert_eq!(
            verify_request(&group, &a, &m, Access::READ, |t| *t == rw),
            Err(VerifyError::Revoked)
        );
        // Wrong prefix, then the same with AnyPrefix.
        let other_net = SubaccountToken::new(5, Access::READ, mpk);
        assert_eq!(
            verify_request(
                &group,
                &sub_auth(&admin, &member, other_net, &m),
                &m,
                Access::READ,
                never
            ),
            Err(VerifyError::WrongPrefix)
        );
        let any = SubaccountToken::new(5, Access::READ | Access::ANY_PREFIX, mpk);
        assert_eq!(
            verify_request(
                &group,
                &sub_auth(&admin, &member, any, &m),
                &m,
                Access::READ,
                never
            ),
            Ok(())
        );
        // Token signed by someone other than the account key.
        let forged = sub_auth(&member, &member, rw, &m);
        assert_eq!(
            verify_request(&group, &forged, &m, Access::READ, never),
            Err(VerifyError::BadSubaccountSig)
        );
        // Request signed by the admin instead of the token's key.
        let mut wrong_signer = a;
        wrong_signer.signature = admin.sign(&m).to_bytes();
        assert_eq!(
            verify_request(&group, &wrong_signer, &m, Access::READ, never),
            Err(VerifyError::BadSignature)
        );
        assert!(!format!("{rw:?}").contains(&hex::encode(mpk)));
    }

    #[test]
    fn message_builders() {
        let s = |v: Vec<u8>| String::from_utf8(v).expect("utf8");
        assert_eq!(s(msg::store(Namespace(0), 5)), "store5");
        assert_eq!(
            s(msg::delete_all(NamespaceSel::One(Namespace(0)), 7)),
            "delete_all7"
        );
        assert_eq!(
            s(msg::delete_before(NamespaceSel::One(Namespace(-3)), 7)),
            "delete_before-37"
        );
        assert_eq!(s(msg::expire_all(NamespaceSel::All, 9)), "expire_allall9");
        assert_eq!(
            s(msg::expire("shorten", &[1, 2], &["a", "b"])),
            "expireshorten12ab"
        );
        assert_eq!(s(msg::get_expiries(3, &["x", "y"])), "get_expiries3xy");
        assert_eq!(s(msg::revoked_subaccounts(4)), "revoked_subaccounts4");
        let t = SubaccountToken::new(3, Access::READ, [7; 32]);
        let r = msg::revoke("unrevoke_subaccount", 8, &[t]);
        assert_eq!(&r[..20], b"unrevoke_subaccount8");
        assert_eq!(&r[20..], &t.0);
    }
}
