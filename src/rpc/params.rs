//! JSON parameter parsing with the original's exact error texts.
//!
//! Owns the field typing rules of storage-server.md 1.2 (`parse_field` of the original):
//! non-negative integer timestamps, int16 namespaces (or `"all"`), single strings accepted
//! where lists are expected, base64/hex encodings of keys, signatures and tokens. Every failure
//! is a `ParamError` whose text the caller sends as `400 "invalid request: <text>"`.
//! Must not look at the store, the clock or the swarm.

use serde_json::{Map, Value};

use crate::message::{AccountId, BadPubkey, Namespace, NamespaceSel, b64_decode, is_valid_hash};
use crate::sign::{SUBACCOUNT_TOKEN_LEN, SubaccountToken};

/// A parameter the client got wrong; the text is the original's `parse_error` message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub(crate) struct ParamError(pub(crate) String);

/// Shorthand for the result of one field.
pub(crate) type PResult<T> = Result<T, ParamError>;

fn invalid(key: &str, what: &str) -> ParamError {
    ParamError(format!("Invalid value given for '{key}': {what}"))
}

/// "Required field 'X' missing".
pub(crate) fn missing(key: &str) -> ParamError {
    ParamError(format!("Required field '{key}' missing"))
}

/// Unwraps a required field.
pub(crate) fn require<T>(key: &str, v: Option<T>) -> PResult<T> {
    v.ok_or_else(|| missing(key))
}

/// Most message hashes one `delete` / `expire` / `get_expiries` may name. The original has no
/// bound beyond the 10 MiB body (≈ 228 000 hashes, each a store lookup); clients send a few
/// dozen at most (config hashes of one account), so 1 000 leaves ample room.
pub(crate) const MAX_MESSAGES: usize = 1000;

/// Timestamps below this many milliseconds (1 000 000 s after the epoch, early 1970) can only
/// be seconds sent by mistake: the original refuses them in JSON requests (1.2).
const MIN_TIMESTAMP_MS: u64 = 1_000_000_000;

/// The params object of one request.
#[derive(Clone, Copy)]
pub(crate) struct Params<'a> {
    map: Option<&'a Map<String, Value>>,
}

impl<'a> Params<'a> {
    /// Wraps a params value (the envelope already checked that it is an object).
    pub(crate) fn new(v: &'a Value) -> Self {
        Params { map: v.as_object() }
    }

    /// A field, with JSON `null` treated as absent.
    pub(crate) fn get(&self, key: &str) -> Option<&'a Value> {
        self.map.and_then(|m| m.get(key)).filter(|v| !v.is_null())
    }

    /// Whether the field is present (and not null).
    pub(crate) fn has(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// One of two alias keys (`pubkey`/`pubKey`): at most one may be given.
    pub(crate) fn either(
        &self,
        a: &'static str,
        b: &'static str,
    ) -> PResult<Option<(&'static str, &'a Value)>> {
        match (self.get(a), self.get(b)) {
            (Some(_), Some(_)) => Err(ParamError(format!("Cannot specify both '{a}' and '{b}'"))),
            (Some(v), None) => Ok(Some((a, v))),
            (None, Some(v)) => Ok(Some((b, v))),
            (None, None) => Ok(None),
        }
    }

    /// A string field.
    pub(crate) fn str(&self, key: &str) -> PResult<Option<&'a str>> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(invalid(key, "expected string")),
        }
    }

    /// A boolean field (`1`/`0` accepted too, as bt-encoded forwards carry them).
    pub(crate) fn bool(&self, key: &str) -> PResult<Option<bool>> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(v) if v.as_u64() == Some(1) => Ok(Some(true)),
            Some(v) if v.as_u64() == Some(0) => Ok(Some(false)),
            Some(_) => Err(invalid(key, "expected boolean")),
        }
    }

    /// A signed integer field.
    pub(crate) fn int(&self, key: &str) -> PResult<Option<i64>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) if v.is_i64() => Ok(v.as_i64()),
            Some(v) if v.is_u64() => Err(invalid(key, "value out of range")),
            Some(_) => Err(invalid(key, "expected integer")),
        }
    }

    /// A millisecond timestamp: a non-negative JSON integer.
    pub(crate) fn timestamp(&self, key: &str) -> PResult<Option<i64>> {
        self.get(key).map(|v| timestamp_value(key, v)).transpose()
    }

    /// A timestamp or duration that may also be a stringified integer (`store`'s `timestamp`
    /// and `ttl`, for old clients that sent strings).
    pub(crate) fn timestamp_or_string(&self, key: &str, check_ms: bool) -> PResult<Option<i64>> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => {
                // Decimal digits only (a stringified integer, storage-server.md 1.2):
                // `u64::from_str` alone would also take a leading `+`.
                let n: u64 = Some(s.as_str())
                    .filter(|s| s.bytes().all(|b| b.is_ascii_digit()))
                    .and_then(|s| s.parse().ok())
                    .ok_or_else(|| invalid(key, "expected integer timestamp (in milliseconds)"))?;
                let n = i64::try_from(n).map_err(|_| invalid(key, "value out of range"))?;
                if check_ms && (n as u64) < MIN_TIMESTAMP_MS {
                    return Err(not_ms(key));
                }
                Ok(Some(n))
            }
            Some(v) if check_ms => timestamp_value(key, v).map(Some),
            Some(v) => unsigned(key, v).map(Some),
        }
    }

    /// One timestamp or a list of them.
    pub(crate) fn timestamp_list(&self, key: &str) -> PResult<Option<Vec<i64>>> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| timestamp_value(key, v))
                .collect::<PResult<Vec<_>>>()
                .map(Some),
            Some(v) => Ok(Some(vec![timestamp_value(key, v)?])),
        }
    }

    /// A list of strings, or one string standing for a one-element list.
    pub(crate) fn str_list(&self, key: &str) -> PResult<Option<Vec<&'a str>>> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(vec![s.as_str()])),
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| {
                    v.as_str()
                        .ok_or_else(|| invalid(key, "expected string or array of strings"))
                })
                .collect::<PResult<Vec<_>>>()
                .map(Some),
            Some(_) => Err(invalid(key, "expected string or array of strings")),
        }
    }

    /// `messages`: a non-empty list of hashes (at most `MAX_MESSAGES`); `validate` checks each
    /// is a 43-character base64 hash (`get_expiries` does not, as in the original).
    pub(crate) fn hashes(&self, validate: bool) -> PResult<Vec<&'a str>> {
        let list = require("messages", self.str_list("messages")?)?;
        if list.is_empty() {
            return Err(ParamError(
                "messages does not contain any message hashes".into(),
            ));
        }
        if list.len() > MAX_MESSAGES {
            return Err(invalid(
                "messages",
                &format!("too many message hashes (max {MAX_MESSAGES})"),
            ));
        }
        if validate && let Some(bad) = list.iter().find(|h| !is_valid_hash(h)) {
            return Err(ParamError(format!("invalid message hash: {bad}")));
        }
        Ok(list)
    }

    /// `namespace`: an integer in the int16 range.
    pub(crate) fn namespace(&self) -> PResult<Option<Namespace>> {
        match self.get("namespace") {
            None => Ok(None),
            Some(v) => namespace_value(v).map(Some),
        }
    }

    /// `namespace` where `"all"` is allowed (delete_all, delete_before, expire_all).
    pub(crate) fn namespace_sel(&self) -> PResult<Option<NamespaceSel>> {
        match self.get("namespace") {
            None => Ok(None),
            Some(Value::String(s)) if s == "all" => Ok(Some(NamespaceSel::All)),
            Some(Value::String(_)) => Err(invalid("namespace", "expected integer or \"all\"")),
            Some(v) => namespace_value(v).map(|ns| Some(NamespaceSel::One(ns))),
        }
    }

    /// The account: `pubkey` or its alias `pubKey`; 66 hex digits (or 64 on testnet, read as
    /// a `05` Session ID, storage-server.md 1.3).
    pub(crate) fn account(&self, testnet: bool) -> PResult<AccountId> {
        let Some((key, v)) = self.either("pubkey", "pubKey")? else {
            return Err(missing("pubkey"));
        };
        let s = v.as_str().ok_or_else(|| invalid(key, "expected string"))?;
        parse_account(s, testnet).map_err(|e| ParamError(e.to_string()))
    }

    /// An Ed25519 signature: base64 of 64 bytes (86 characters, or 88 ending in `==`).
    pub(crate) fn signature(&self, key: &str) -> PResult<Option<[u8; 64]>> {
        let Some(s) = self.str(key)? else {
            return Ok(None);
        };
        let ok_len = s.len() == 86 || (s.len() == 88 && s.ends_with("=="));
        let bytes = if ok_len { b64_decode(s) } else { None };
        match bytes.and_then(|b| <[u8; 64]>::try_from(b).ok()) {
            Some(sig) => Ok(Some(sig)),
            None if key == "signature" => Err(ParamError(
                "invalid signature: expected base64 encoded Ed25519 signature".into(),
            )),
            None => Err(ParamError(format!(
                "invalid {key}: expected base64 encoded Ed25519 signature"
            ))),
        }
    }

    /// `pubkey_ed25519`: 64 hex digits.
    pub(crate) fn ed25519_pubkey(&self, key: &str) -> PResult<Option<[u8; 32]>> {
        let Some(s) = self.str(key)? else {
            return Ok(None);
        };
        let bytes = if s.len() == 64 {
            hex::decode(s).ok()
        } else {
            None
        };
        bytes
            .and_then(|b| <[u8; 32]>::try_from(b).ok())
            .map(Some)
            .ok_or_else(|| ParamError(format!("invalid {key}: expected 64 hex digits")))
    }

    /// One subaccount token or a list of them (base64 of 36 bytes, or 72 hex digits).
    pub(crate) fn tokens(&self, key: &str) -> PResult<Option<Vec<SubaccountToken>>> {
        let Some(list) = self.str_list(key)? else {
            return Ok(None);
        };
        list.into_iter()
            .map(|s| parse_token(s).ok_or_else(|| bad_token(key)))
            .collect::<PResult<Vec<_>>>()
            .map(Some)
    }

    /// One subaccount token.
    pub(crate) fn token(&self, key: &str) -> PResult<Option<SubaccountToken>> {
        match self.str(key)? {
            None => Ok(None),
            Some(s) => parse_token(s).map(Some).ok_or_else(|| bad_token(key)),
        }
    }
}

fn not_ms(key: &str) -> ParamError {
    ParamError(format!(
        "Invalid timestamp for '{key}': timestamp must be in milliseconds"
    ))
}

fn unsigned(key: &str, v: &Value) -> PResult<i64> {
    let n = v
        .as_u64()
        .ok_or_else(|| invalid(key, "expected integer timestamp (in milliseconds)"))?;
    i64::try_from(n).map_err(|_| invalid(key, "value out of range"))
}

fn timestamp_value(key: &str, v: &Value) -> PResult<i64> {
    let n = unsigned(key, v)?;
    if (n as u64) < MIN_TIMESTAMP_MS {
        return Err(not_ms(key));
    }
    Ok(n)
}

fn namespace_value(v: &Value) -> PResult<Namespace> {
    if let Some(n) = v.as_i64() {
        return i16::try_from(n)
            .map(Namespace)
            .map_err(|_| invalid("namespace", "value out of range"));
    }
    if v.is_u64() {
        return Err(invalid("namespace", "value out of range"));
    }
    Err(invalid("namespace", "expected integer"))
}

/// Parses an account pubkey string (see `Params::account`).
pub(crate) fn parse_account(s: &str, testnet: bool) -> Result<AccountId, BadPubkey> {
    if testnet && s.len() == 64 {
        let mut raw = [0u8; 33];
        raw[0] = 0x05;
        hex::decode_to_slice(s, &mut raw[1..]).map_err(|_| BadPubkey)?;
        return AccountId::from_bytes(&raw);
    }
    AccountId::from_hex(s)
}

fn bad_token(key: &str) -> ParamError {
    ParamError(format!(
        "invalid {key}: expected base64 or hex encoded subaccount token"
    ))
}

/// A token as base64 (48 characters) or hex (72 characters).
fn parse_token(s: &str) -> Option<SubaccountToken> {
    let bytes = match s.len() {
        48 => b64_decode(s)?,
        72 => hex::decode(s).ok()?,
        _ => return None,
    };
    <[u8; SUBACCOUNT_TOKEN_LEN]>::try_from(bytes)
        .ok()
        .map(SubaccountToken)
}
