//! The "v2 combined payload" framing `u32le N || bytes(N) || JSON` and the entry node's parse
//! of it (storage-server.md 2.1, clients.md 2.2).
//!
//! Owns: `parse_combined` (the body of `POST /onion_req/v2`), the framing helpers shared with
//! `route` and `build`, and the short fixed texts of `ParseError`. Must not: decrypt, allocate
//! copies of the ciphertext (it is borrowed from the body), or panic on any input.

use super::crypto::EncType;
use serde_json::{Map, Value};

/// Largest onion request body a node accepts (LSU `OnionReqParser::DEFAULT_MAX_SIZE`, 10 MiB).
/// The HTTP layer enforces it first; `parse_combined` checks it again so that the parser is
/// bounded on its own.
pub const MAX_ONION_BODY: usize = 10 * 1024 * 1024;

/// Largest JSON part (after the framed ciphertext or inner layer) a parser reads. Honest
/// clients send under 200 bytes; without a cap, the 10 MiB body allowed around it could
/// become a `serde_json::Value` tree of hundreds of MiB (a `[[[[…` or many small keys) on a
/// single request. Larger parts are refused as invalid JSON, the original's parse error.
pub(crate) const MAX_ONION_METADATA: usize = 64 * 1024;

/// Length of the little-endian size prefix.
const SIZE_PREFIX: usize = 4;

/// The entry node's view of an onion request body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Combined<'a> {
    /// The outermost layer's ciphertext, borrowed from the body.
    pub ciphertext: &'a [u8],
    /// The client's ephemeral X25519 public key for this layer.
    pub ephemeral_key: [u8; 32],
    /// The layer's cipher (`aes-gcm` when the JSON names none).
    pub enc_type: EncType,
    /// The (possibly faked) starting hop number, clamped to ≥ 0.
    pub hop_no: u32,
}

/// Why an entry body was refused. `Display` is the `<what>` of the node's plain-text
/// `400 Error parsing onion request: <what>`, so the texts are short, fixed and leak nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// Fewer than 4 bytes: no size prefix.
    #[error("body too short")]
    TooShort,
    /// More than `MAX_ONION_BODY` bytes.
    #[error("body too large")]
    TooLarge,
    /// The size prefix points past the end of the body.
    #[error("ciphertext length exceeds body size")]
    CiphertextLength,
    /// The bytes after the ciphertext are not a JSON object.
    #[error("invalid json")]
    InvalidJson,
    /// The JSON has no `ephemeral_key`.
    #[error("missing ephemeral_key")]
    MissingEphemeralKey,
    /// `ephemeral_key` is not a string of 64 hex digits.
    #[error("invalid ephemeral_key")]
    InvalidEphemeralKey,
    /// `enc_type` is not a string naming a known cipher.
    #[error("unknown enc_type")]
    UnknownEncType,
    /// `hop_no` is not an integer.
    #[error("invalid hop_no")]
    InvalidHopNo,
}

/// Splits `u32le N || bytes(N) || rest` into `(bytes, rest)`; `None` when the prefix is missing
/// or `N` does not fit in the data. Never panics: the arithmetic is checked.
pub(crate) fn split_frame(data: &[u8]) -> Option<(&[u8], &[u8])> {
    let (prefix, rest) = data.split_first_chunk::<SIZE_PREFIX>()?;
    let n = usize::try_from(u32::from_le_bytes(*prefix)).ok()?;
    if n > rest.len() {
        return None;
    }
    Some(rest.split_at(n))
}

/// Writes `u32le len(inner) || inner || json`; `None` if `inner` is 4 GiB or more.
pub(crate) fn frame(inner: &[u8], json: &[u8]) -> Option<Vec<u8>> {
    let n = u32::try_from(inner.len()).ok()?;
    let mut out = Vec::with_capacity(SIZE_PREFIX + inner.len() + json.len());
    out.extend_from_slice(&n.to_le_bytes());
    out.extend_from_slice(inner);
    out.extend_from_slice(json);
    Some(out)
}

/// Parses exactly 64 hex digits into 32 bytes.
pub(crate) fn hex32(s: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    if s.len() != 64 {
        return None;
    }
    hex::decode_to_slice(s, &mut out).ok()?;
    Some(out)
}

/// Parses a JSON object (any whitespace, any key order, unknown keys allowed).
pub(crate) fn json_object(data: &[u8]) -> Option<Map<String, Value>> {
    if data.len() > MAX_ONION_METADATA {
        return None;
    }
    serde_json::from_slice::<Map<String, Value>>(data).ok()
}

/// Parses the body of `POST /onion_req/v2` (storage-server.md 2.1):
/// `u32le N || ciphertext(N) || {"ephemeral_key": hex, "enc_type"?: name, "hop_no"?: int}`.
pub fn parse_combined(body: &[u8]) -> Result<Combined<'_>, ParseError> {
    if body.len() > MAX_ONION_BODY {
        return Err(ParseError::TooLarge);
    }
    if body.len() < SIZE_PREFIX {
        return Err(ParseError::TooShort);
    }
    let (ciphertext, json) = split_frame(body).ok_or(ParseError::CiphertextLength)?;
    let meta = json_object(json).ok_or(ParseError::InvalidJson)?;

    let ephemeral_key = match meta.get("ephemeral_key") {
        None => return Err(ParseError::MissingEphemeralKey),
        Some(v) => v
            .as_str()
            .and_then(hex32)
            .ok_or(ParseError::InvalidEphemeralKey)?,
    };
    let enc_type = match meta.get("enc_type") {
        None => EncType::default(),
        Some(v) => v
            .as_str()
            .and_then(EncType::from_name)
            .ok_or(ParseError::UnknownEncType)?,
    };
    let hop_no = match meta.get("hop_no") {
        None => 0,
        Some(v) => clamp_hop_no(v).ok_or(ParseError::InvalidHopNo)?,
    };
    Ok(Combined {
        ciphertext,
        ephemeral_key,
        enc_type,
        hop_no,
    })
}

/// Clamps an integer `hop_no` into `0..=u32::MAX` (negative → 0, as the C++ server does; huge
/// values saturate and are refused later by the hop limit). Non-integers are `None`.
fn clamp_hop_no(v: &Value) -> Option<u32> {
    let n = v.as_number()?;
    if let Some(i) = n.as_i64() {
        return Some(u32::try_from(i.max(0)).unwrap_or(u32::MAX));
    }
    // Integers above i64::MAX: only u64 is left (a float has no as_u64).
    n.as_u64().map(|_| u32::MAX)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    const A: &str = "8167e97672005c669a48858c69895f395ca235219ac3f7a4210022b1f910e652";

    /// LSU tests/test_onionreq.cpp "Onion request parser" bodies (clients.md 3.2).
    pub(crate) const LSU_GCM_BODY: &str = "270000009525d587d188c92a966eef0e7162bef99a6171a124575b998072a8ee7eb265e0b6f0930ed965047b22656e635f74797065223a20226165732d67636d222c2022657068656d6572616c5f6b6579223a202238313637653937363732303035633636396134383835386336393839356633393563613233353231396163336637613432313030323262316639313065363532227d";
    pub(crate) const LSU_XCHACHA_BODY: &str = "33000000e440bc244ddcafd947b86fc5a964aa58de54a6d75cc0f0f3840db14b6c1176a8e2e0a04d5fbdf98f23adee1edc8362ab99b10b7b22656e635f74797065223a2022786368616368613230222c2022657068656d6572616c5f6b6579223a202238313637653937363732303035633636396134383835386336393839356633393563613233353231396163336637613432313030323262316639313065363532227d";

    fn body(ct: &[u8], json: &str) -> Vec<u8> {
        frame(ct, json.as_bytes()).expect("small")
    }

    #[test]
    fn lsu_parser_vectors_split() {
        let raw = hex::decode(LSU_GCM_BODY).expect("hex");
        let c = parse_combined(&raw).expect("valid");
        assert_eq!(c.ciphertext.len(), 39);
        assert_eq!(
            hex::encode(c.ciphertext),
            "9525d587d188c92a966eef0e7162bef99a6171a124575b998072a8ee7eb265e0b6f0930ed96504"
        );
        assert_eq!(hex::encode(c.ephemeral_key), A);
        assert_eq!((c.enc_type, c.hop_no), (EncType::AesGcm, 0));

        let raw = hex::decode(LSU_XCHACHA_BODY).expect("hex");
        let c = parse_combined(&raw).expect("valid");
        assert_eq!(c.ciphertext.len(), 51);
        assert_eq!(hex::encode(c.ephemeral_key), A);
        assert_eq!(c.enc_type, EncType::XChaCha20);
    }

    #[test]
    fn metadata_over_64_kib_is_refused_before_it_is_parsed() {
        let fits = |pad: usize| {
            let j = format!(r#"{{"ephemeral_key":"{A}","pad":"{}"}}"#, "x".repeat(pad));
            (j.len(), parse_combined(&body(b"ct", &j)).map(|c| c.hop_no))
        };
        let overhead = fits(0).0;
        let (len, at_cap) = fits(MAX_ONION_METADATA - overhead);
        assert_eq!(len, MAX_ONION_METADATA);
        assert_eq!(at_cap, Ok(0));
        let (_, over) = fits(MAX_ONION_METADATA - overhead + 1);
        assert_eq!(over, Err(ParseError::InvalidJson));
        // The same cap holds for a decrypted layer's routing JSON.
        let relay = |pad: usize| {
            let j = format!(
                r#"{{"destination":"{A}","ephemeral_key":"{A}","pad":"{}"}}"#,
                "x".repeat(pad)
            );
            frame(b"inner", j.as_bytes()).expect("small")
        };
        assert!(crate::onion::route(&relay(10)).is_ok());
        assert!(crate::onion::route(&relay(MAX_ONION_METADATA)).is_err());
    }

    #[test]
    fn defaults_aliases_and_hop_no() {
        let ek = format!(r#""ephemeral_key":"{A}""#);
        let raw = body(b"ct", &format!("{{{ek}}}"));
        let c = parse_combined(&raw).expect("valid");
        assert_eq!(
            (c.ciphertext, c.enc_type, c.hop_no),
            (&b"ct"[..], EncType::AesGcm, 0)
        );
        for (name, want) in [
            ("gcm", EncType::AesGcm),
            ("xchacha20-poly1305", EncType::XChaCha20),
            ("cbc", EncType::AesCbc),
        ] {
            let j = format!(r#"{{{ek},"enc_type":"{name}"}}"#);
            assert_eq!(
                parse_combined(&body(b"", &j)).expect("valid").enc_type,
                want
            );
        }
        for (hop, want) in [
            ("3", 3),
            ("-5", 0),
            ("0", 0),
            ("18446744073709551615", u32::MAX),
            ("4294967296", u32::MAX),
        ] {
            let j = format!(r#"{{{ek},"hop_no":{hop},"extra":[1,2]}}"#);
            assert_eq!(
                parse_combined(&body(b"x", &j)).expect("valid").hop_no,
                want,
                "{hop}"
            );
        }
        // Upper-case hex and surrounding whitespace are fine.
        let j = format!(" {{ \"ephemeral_key\" : \"{}\" }}\n", A.to_uppercase());
        assert_eq!(
            hex::encode(parse_combined(&body(b"", &j)).expect("valid").ephemeral_key),
            A
        );
    }

    #[test]
    fn errors_have_short_fixed_texts() {
        let ek = format!(r#""ephemeral_key":"{A}""#);
        let cases: Vec<(Vec<u8>, ParseError, &str)> = vec![
            (vec![1, 0, 0], ParseError::TooShort, "body too short"),
            (
                b"\x0d\0\0\0ciphertext{}".to_vec(),
                ParseError::CiphertextLength,
                "ciphertext length exceeds body size",
            ),
            (
                b"\xff\xff\xff\xff".to_vec(),
                ParseError::CiphertextLength,
                "",
            ),
            (body(b"ct", ""), ParseError::InvalidJson, "invalid json"),
            (body(b"ct", "[1]"), ParseError::InvalidJson, ""),
            (
                body(b"ct", &format!("{{{ek}}} trailing")),
                ParseError::InvalidJson,
                "",
            ),
            (
                body(b"ct", "{}"),
                ParseError::MissingEphemeralKey,
                "missing ephemeral_key",
            ),
            (
                body(b"ct", r#"{"ephemeral_key":"abcd"}"#),
                ParseError::InvalidEphemeralKey,
                "",
            ),
            (
                body(b"ct", r#"{"ephemeral_key":7}"#),
                ParseError::InvalidEphemeralKey,
                "",
            ),
            (
                body(b"ct", &format!(r#"{{"ephemeral_key":"{}zz"}}"#, &A[..62])),
                ParseError::InvalidEphemeralKey,
                "invalid ephemeral_key",
            ),
            (
                body(b"ct", &format!(r#"{{{ek},"enc_type":"rot13"}}"#)),
                ParseError::UnknownEncType,
                "unknown enc_type",
            ),
            (
                body(b"ct", &format!(r#"{{{ek},"enc_type":1}}"#)),
                ParseError::UnknownEncType,
                "",
            ),
            (
                body(b"ct", &format!(r#"{{{ek},"hop_no":"1"}}"#)),
                ParseError::InvalidHopNo,
                "invalid hop_no",
            ),
            (
                body(b"ct", &format!(r#"{{{ek},"hop_no":1.5}}"#)),
                ParseError::InvalidHopNo,
                "",
            ),
        ];
        for (input, want, text) in cases {
            assert_eq!(parse_combined(&input), Err(want), "{input:?}");
            if !text.is_empty() {
                assert_eq!(want.to_string(), text);
            }
        }
        let huge = vec![0u8; MAX_ONION_BODY + 1];
        assert_eq!(parse_combined(&huge), Err(ParseError::TooLarge));
    }

    #[test]
    fn frame_helpers() {
        assert_eq!(split_frame(b"\x03\0\0\0abc"), Some((&b"abc"[..], &b""[..])));
        assert_eq!(split_frame(b"\0\0\0\0{}"), Some((&b""[..], &b"{}"[..])));
        assert_eq!(split_frame(b"\x04\0\0\0abc"), None);
        assert_eq!(split_frame(b"\x03\0\0"), None);
        let f = frame(b"inner", b"{}").expect("small");
        assert_eq!(f, b"\x05\0\0\0inner{}");
        assert_eq!(split_frame(&f), Some((&b"inner"[..], &b"{}"[..])));
        assert_eq!(hex32(A).map(hex::encode).as_deref(), Some(A));
        assert_eq!(hex32(&A[..63]), None);
        assert_eq!(hex32(&format!("{A}00")), None);
    }
}
