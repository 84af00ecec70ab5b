//! The checks of the `rpc_params` fuzz target, shared with `tests/fuzz_corpus.rs` (both include
//! this file through `#[path]`): a request body is read as the node reads it (`serde_json`, at
//! most [`MAX_REQUEST_BODY`] bytes), and its params go through every `Params` accessor the RPC
//! handlers call, with the handlers' field names and in each handler's order (`store`,
//! `retrieve`, `delete`, … and the auth fields they share). Every answer is checked against the
//! raw JSON value: an accepted value is what the protocol says the field holds (a hash is 43
//! base64 characters of 32 bytes, a signature re-encodes to the base64 it came from, a
//! namespace is the JSON integer, a timestamp is a non-negative integer of milliseconds, …),
//! and every refusal is a `ParamError` with one of the protocol's texts for that field
//! (storage-server.md 1.2, 1.5). The params also go through the bt conversions of `rpc::bt`.
//!
//! The including crate's root must have the modules `params` (src/rpc/params.rs), `message`,
//! `bencode` and `bt` (src/rpc/bt.rs).

use base64::Engine as _;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use serde_json::Value;

use crate::bencode::{self, Limits};
use crate::message::{
    AccountId, BATCH_REQUEST_MAX, HASH_LEN, MAX_DATA_B64, MAX_DATA_BYTES, MAX_SUBACCOUNT_TOKENS,
    NamespaceSel, b64, b64_decode,
};
use crate::params::{MAX_MESSAGES, PResult, ParamError, Params, missing, require};

/// Largest request body the node reads (`api::MAX_REQUEST_BODY`; onion bodies have the same
/// bound, `onion::MAX_ONION_BODY`). serde_json's own nesting limit (128) is the node's too.
pub(crate) const MAX_REQUEST_BODY: usize = 10 * 1024 * 1024;

/// Milliseconds below which a timestamp is refused as seconds (storage-server.md 1.2).
const MIN_TIMESTAMP_MS: u64 = 1_000_000_000;

/// `ifelse` nesting the node allows (`rpc::MAX_META_DEPTH`).
const MAX_META_DEPTH: u8 = 8;

/// How every parse error text begins (storage-server.md 1.2, 1.4, 1.5). The node sends each as
/// `400 "invalid request: <text>"`.
const ERROR_PREFIXES: &[&str] = &[
    "Required field '",
    "Invalid value given for '",
    "Invalid timestamp for '",
    "Cannot specify both '",
    "Pubkey must be 66 hex digits (33 bytes) long",
    "invalid signature: expected base64 encoded Ed25519 signature",
    "invalid subaccount_sig: expected base64 encoded Ed25519 signature",
    "invalid pubkey_ed25519: expected 64 hex digits",
    "invalid subaccount: expected base64 or hex encoded subaccount token",
    "invalid revoke: expected base64 or hex encoded subaccount token",
    "invalid unrevoke: expected base64 or hex encoded subaccount token",
    "invalid message hash: ",
    "messages does not contain any message hashes",
    "pubkey_ed25519 is only permitted for 05[...] pubkeys",
    "Invalid oxend endpoint '",
];

/// Every method whose params the node parses (aliases included), and those without params.
const METHODS: &[&str] = &[
    "store",
    "retrieve",
    "get_swarm",
    "get_snodes_for_pubkey",
    "delete",
    "delete_all",
    "delete_before",
    "expire_all",
    "expire",
    "get_expiries",
    "revoke_subaccount",
    "unrevoke_subaccount",
    "revoked_subaccounts",
    "oxend_request",
    "info",
    "active_nodes_bin",
    "batch",
    "sequence",
    "ifelse",
];

/// Standard base64 that keeps the bits after the last whole byte: a message hash is any 43
/// characters of the alphabet (storage-server.md 1.5), not necessarily a canonical encoding.
const LENIENT_B64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_allow_trailing_bits(true)
        .with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// What the checks made of one input.
#[derive(Debug, Default)]
pub(crate) struct Outcome {
    /// The input is a JSON document the node would read.
    pub(crate) json: bool,
    /// The method of a `{"method": "…", "params": {…}}` envelope.
    pub(crate) method: Option<String>,
    /// That method's parse: `Ok` when its params parse, else the parse error's text (the node
    /// answers `400 "invalid request: <text>"`). `None` without an envelope and for methods
    /// whose own checks are structural (`batch`, `sequence`, `ifelse`, unknown names).
    pub(crate) verdict: Option<Result<(), String>>,
}

/// The fuzz target's checks on one input. A request body (`{"method", "params": {…}}`) has
/// its params parsed by the named method; anything else JSON is taken as bare params (as an
/// onion request's or a subrequest's may arrive) and parsed by every method. The params then
/// go through the bt conversions, and what comes back through the named method's parse again
/// (without an envelope, one method picked by the input's length).
pub(crate) fn check_body(data: &[u8]) -> Outcome {
    let mut out = Outcome::default();
    if data.len() > MAX_REQUEST_BODY {
        return out;
    }
    let Ok(v) = serde_json::from_slice::<Value>(data) else {
        return out;
    };
    out.json = true;
    let method = v.get("method").and_then(Value::as_str);
    let params = v.get("params").filter(|p| p.is_object());
    let params = match (method, params) {
        (Some(m), Some(p)) => {
            out.method = Some(m.to_owned());
            out.verdict = check_request(m, p, 0);
            p
        }
        _ => {
            for m in METHODS {
                check_request(m, &v, MAX_META_DEPTH);
            }
            &v
        }
    };
    if let Some(back) = check_bt(params) {
        let m = out
            .method
            .as_deref()
            .unwrap_or(METHODS[data.len() % METHODS.len()]);
        check_request(m, &back, MAX_META_DEPTH);
    }
    out
}

/// One method's parse of `params`, as its handler does it, with every accessor checked;
/// `batch`/`sequence`/`ifelse` check their subrequests (down to `MAX_META_DEPTH`) instead.
fn check_request(method: &str, params: &Value, depth: u8) -> Option<Result<(), String>> {
    let p = Checked::new(params);
    let r = match method {
        "store" => store(&p),
        "retrieve" => retrieve(&p),
        "get_swarm" | "get_snodes_for_pubkey" => p.account(false).map(drop),
        "delete" => delete(&p),
        "delete_all" => ns_wide(&p, "timestamp"),
        "delete_before" => ns_wide(&p, "before"),
        "expire_all" => ns_wide(&p, "expiry"),
        "expire" => expire(&p),
        "get_expiries" => get_expiries(&p),
        "revoke_subaccount" => revoke(&p, "revoke"),
        "unrevoke_subaccount" => revoke(&p, "unrevoke"),
        "revoked_subaccounts" => revoked_subaccounts(&p),
        "oxend_request" => oxend_request(&p),
        "info" | "active_nodes_bin" => Ok(()),
        "batch" | "sequence" | "ifelse" => {
            subrequests(method, params, depth);
            return None;
        }
        _ => return None,
    };
    // A testnet node reads 64-hex pubkeys as `05` accounts; the same checks hold.
    let _ = p.account(true);
    if let Err(e) = &r {
        assert!(
            ERROR_PREFIXES.iter().any(|pre| e.0.starts_with(pre)),
            "{method}: parse error text {:?} is not one of the protocol's",
            e.0
        );
    }
    Some(r.map_err(|e| e.0))
}

/// The subrequests of a meta-request, each through its own method's parse.
fn subrequests(method: &str, params: &Value, depth: u8) {
    if depth >= MAX_META_DEPTH {
        return;
    }
    let subs: Vec<&Value> = if method == "ifelse" {
        ["then", "else"]
            .iter()
            .filter_map(|k| params.get(k))
            .collect()
    } else {
        params
            .get("requests")
            .and_then(Value::as_array)
            .map(|l| l.iter().take(BATCH_REQUEST_MAX).collect())
            .unwrap_or_default()
    };
    for s in subs {
        let m = s.get("method").and_then(Value::as_str);
        let p = s.get("params").filter(|p| p.is_object());
        if let (Some(m), Some(p)) = (m, p) {
            check_request(m, p, depth + 1);
        }
    }
}

/// The JSON answer encoder (`bt::to_bt`) writes canonical bencode for any JSON value, and
/// an object comes back through `bt::params_from_bt` (the bt request path) as an object,
/// which is returned for the methods' parses.
fn check_bt(v: &Value) -> Option<Value> {
    let mut out = Vec::new();
    crate::bt::to_bt(v, &mut out);
    let unbounded = Limits {
        max_len: usize::MAX,
        max_depth: usize::MAX,
        max_values: usize::MAX,
    };
    let decoded = bencode::Value::decode(&out, unbounded).expect("to_bt writes bencode");
    let mut again = Vec::new();
    decoded.encode(&mut again);
    assert_eq!(again, out, "to_bt writes canonical bencode");
    if !v.is_object() || bencode::Value::decode(&out, Limits::DEFAULT).is_err() {
        return None;
    }
    let back = crate::bt::params_from_bt(&out).expect("a bencoded dict converts to params");
    assert!(back.is_object());
    Some(back)
}

/// The error texts of a timestamp field.
fn ts_errors(key: &str) -> [String; 3] {
    [
        format!("Invalid value given for '{key}': expected integer timestamp (in milliseconds)"),
        format!("Invalid value given for '{key}': value out of range"),
        format!("Invalid timestamp for '{key}': timestamp must be in milliseconds"),
    ]
}

/// Asserts that `e` is one of `allowed`.
fn expect_one_of<S: AsRef<str>>(what: &str, e: &ParamError, allowed: &[S]) {
    assert!(
        allowed.iter().any(|a| a.as_ref() == e.0),
        "{what}: error {:?} is none of the protocol's texts for it",
        e.0
    );
}

/// Checks one timestamp's parse against its raw value. `strings`: a stringified integer (ASCII
/// digits) is allowed too (`store`'s `timestamp` and `ttl`); `check_ms`: values below 10⁹ are
/// refused as seconds. Whatever the protocol accepts must be accepted as that value, and
/// nothing else.
fn check_ts(key: &str, raw: &Value, r: &PResult<i64>, strings: bool, check_ms: bool) {
    let number = match raw {
        Value::String(s) if strings => {
            if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
                s.parse::<u64>().ok()
            } else {
                None
            }
        }
        _ => raw.as_u64(),
    };
    let acceptable = number
        .filter(|&n| i64::try_from(n).is_ok())
        .filter(|&n| !check_ms || n >= MIN_TIMESTAMP_MS);
    match r {
        Ok(t) => {
            assert!(*t >= 0, "{key}: accepted negative {t}");
            assert_eq!(acceptable, Some(*t as u64), "{key}: accepted {raw} as {t}");
        }
        Err(e) => {
            assert_eq!(acceptable, None, "{key}: refused {raw} ({:?})", e.0);
            let errors = ts_errors(key);
            expect_one_of(key, e, &errors);
            if e.0 == errors[2] {
                assert!(
                    check_ms && number.is_some_and(|n| n < MIN_TIMESTAMP_MS),
                    "{key}: {raw}"
                );
            }
            if e.0 == errors[1] {
                assert!(
                    number.is_some_and(|n| i64::try_from(n).is_err()) || raw.is_u64(),
                    "{key}: {raw} called out of range"
                );
            }
        }
    }
}

/// Whether `h` is a message hash by the protocol's rule: 43 characters of the standard base64
/// alphabet (so 32 bytes and 2 spare bits).
fn is_hash(h: &str) -> bool {
    let ok = h.len() == HASH_LEN && LENIENT_B64.decode(h).is_ok_and(|b| b.len() == 32);
    assert_eq!(crate::message::is_valid_hash(h), ok, "is_valid_hash({h:?})");
    ok
}

/// A parsed `signature`/`subaccount_sig` re-encodes to the base64 it came from (86 characters,
/// or 88 ending in `==`).
fn check_sig_text(key: &str, sig: &[u8; 64], s: &str) {
    let canonical = b64(sig);
    match s.len() {
        86 => assert_eq!(canonical, format!("{s}=="), "{key}"),
        88 => assert_eq!(canonical, s, "{key}"),
        n => panic!("{key}: accepted {n} characters"),
    }
}

/// A parsed subaccount token re-encodes to its text (48 base64 or 72 hex characters).
fn check_token_text(key: &str, token: &[u8; 36], s: &str) {
    match s.len() {
        48 => assert_eq!(b64(token), s, "{key}"),
        72 => assert_eq!(hex::encode(token), s.to_ascii_lowercase(), "{key}"),
        n => panic!("{key}: accepted a token of {n} characters"),
    }
}

/// `Params` with every answer checked against the raw params value.
struct Checked<'a> {
    p: Params<'a>,
    raw: &'a Value,
}

impl<'a> Checked<'a> {
    fn new(raw: &'a Value) -> Self {
        Checked {
            p: Params::new(raw),
            raw,
        }
    }

    /// The raw field (JSON `null` is absent), which `get` and `has` must agree with.
    fn field(&self, key: &str) -> Option<&'a Value> {
        let v = self
            .raw
            .as_object()
            .and_then(|m| m.get(key))
            .filter(|v| !v.is_null());
        assert_eq!(self.p.get(key), v, "get({key})");
        assert_eq!(self.p.has(key), v.is_some(), "has({key})");
        v
    }

    fn has(&self, key: &str) -> bool {
        self.field(key).is_some()
    }

    fn either(
        &self,
        a: &'static str,
        b: &'static str,
    ) -> PResult<Option<(&'static str, &'a Value)>> {
        let r = self.p.either(a, b);
        match (&r, self.field(a), self.field(b)) {
            (Ok(None), None, None) => {}
            (Ok(Some((k, v))), Some(x), None) => assert!(*k == a && std::ptr::eq(*v, x)),
            (Ok(Some((k, v))), None, Some(x)) => assert!(*k == b && std::ptr::eq(*v, x)),
            (Err(e), Some(_), Some(_)) => {
                assert_eq!(e.0, format!("Cannot specify both '{a}' and '{b}'"));
            }
            _ => panic!("either({a}, {b}): {r:?}"),
        }
        r
    }

    fn str(&self, key: &str) -> PResult<Option<&'a str>> {
        let r = self.p.str(key);
        match (&r, self.field(key)) {
            (Ok(None), None) => {}
            (Ok(Some(s)), Some(Value::String(raw))) => assert_eq!(*s, raw.as_str()),
            (Err(e), Some(v)) if !v.is_string() => {
                assert_eq!(
                    e.0,
                    format!("Invalid value given for '{key}': expected string")
                );
            }
            _ => panic!("str({key}): {r:?}"),
        }
        r
    }

    fn bool(&self, key: &str) -> PResult<Option<bool>> {
        let r = self.p.bool(key);
        match (&r, self.field(key)) {
            (Ok(None), None) => {}
            (Ok(Some(b)), Some(v)) => {
                assert!(
                    v.as_bool() == Some(*b) || v.as_u64() == Some(u64::from(*b)),
                    "{key}"
                );
            }
            (Err(e), Some(v)) => {
                assert!(v.as_bool().is_none() && !matches!(v.as_u64(), Some(0 | 1)));
                assert_eq!(
                    e.0,
                    format!("Invalid value given for '{key}': expected boolean")
                );
            }
            _ => panic!("bool({key}): {r:?}"),
        }
        r
    }

    fn int(&self, key: &str) -> PResult<Option<i64>> {
        let r = self.p.int(key);
        match (&r, self.field(key)) {
            (Ok(None), None) => {}
            (Ok(Some(n)), Some(v)) => assert_eq!(v.as_i64(), Some(*n), "{key}"),
            (Err(e), Some(v)) => {
                assert!(v.as_i64().is_none(), "{key}: refused {v}");
                let want = if v.is_u64() {
                    "value out of range"
                } else {
                    "expected integer"
                };
                assert_eq!(e.0, format!("Invalid value given for '{key}': {want}"));
            }
            _ => panic!("int({key}): {r:?}"),
        }
        r
    }

    fn timestamp(&self, key: &str) -> PResult<Option<i64>> {
        let r = self.p.timestamp(key);
        match (&r, self.field(key)) {
            (Ok(None), None) => {}
            (Ok(Some(t)), Some(v)) => check_ts(key, v, &Ok(*t), false, true),
            (Err(e), Some(v)) => check_ts(key, v, &Err(e.clone()), false, true),
            _ => panic!("timestamp({key}): {r:?}"),
        }
        r
    }

    fn timestamp_or_string(&self, key: &str, check_ms: bool) -> PResult<Option<i64>> {
        let r = self.p.timestamp_or_string(key, check_ms);
        match (&r, self.field(key)) {
            (Ok(None), None) => {}
            (Ok(Some(t)), Some(v)) => check_ts(key, v, &Ok(*t), true, check_ms),
            (Err(e), Some(v)) => check_ts(key, v, &Err(e.clone()), true, check_ms),
            _ => panic!("timestamp_or_string({key}): {r:?}"),
        }
        r
    }

    fn timestamp_list(&self, key: &str) -> PResult<Option<Vec<i64>>> {
        let r = self.p.timestamp_list(key);
        match (&r, self.field(key)) {
            (Ok(None), None) => {}
            (Ok(Some(list)), Some(Value::Array(items))) => {
                assert_eq!(list.len(), items.len(), "{key}");
                for (t, v) in list.iter().zip(items) {
                    check_ts(key, v, &Ok(*t), false, true);
                }
            }
            (Ok(Some(list)), Some(v)) => {
                assert_eq!(list.len(), 1, "{key}");
                check_ts(key, v, &Ok(list[0]), false, true);
            }
            (Err(e), Some(_)) => expect_one_of(key, e, &ts_errors(key)),
            _ => panic!("timestamp_list({key}): {r:?}"),
        }
        r
    }

    fn str_list(&self, key: &str) -> PResult<Option<Vec<&'a str>>> {
        let r = self.p.str_list(key);
        match (&r, self.field(key)) {
            (Ok(None), None) => {}
            (Ok(Some(list)), Some(Value::String(s))) => assert_eq!(list, &[s.as_str()]),
            (Ok(Some(list)), Some(Value::Array(items))) => {
                let want: Vec<Option<&str>> = items.iter().map(Value::as_str).collect();
                let got: Vec<Option<&str>> = list.iter().map(|s| Some(*s)).collect();
                assert_eq!(got, want, "{key}");
            }
            (Err(e), Some(v)) => {
                let all_str = v.as_array().is_some_and(|l| l.iter().all(Value::is_string));
                assert!(!v.is_string() && !all_str, "{key}: refused {v}");
                assert_eq!(
                    e.0,
                    format!("Invalid value given for '{key}': expected string or array of strings")
                );
            }
            _ => panic!("str_list({key}): {r:?}"),
        }
        r
    }

    fn hashes(&self, validate: bool) -> PResult<Vec<&'a str>> {
        let r = self.p.hashes(validate);
        let list = self.str_list("messages");
        match &r {
            Ok(hashes) => {
                assert_eq!(list.as_ref().ok(), Some(&Some(hashes.clone())));
                assert!(!hashes.is_empty() && hashes.len() <= MAX_MESSAGES);
                if validate {
                    for h in hashes {
                        assert!(is_hash(h), "accepted the hash {h:?}");
                    }
                }
            }
            Err(e) => match list {
                Err(le) => assert_eq!(e, &le),
                Ok(None) => assert_eq!(e, &missing("messages")),
                Ok(Some(l)) if l.is_empty() => {
                    assert_eq!(e.0, "messages does not contain any message hashes");
                }
                Ok(Some(l)) if l.len() > MAX_MESSAGES => assert_eq!(
                    e.0,
                    format!(
                        "Invalid value given for 'messages': too many message hashes (max {MAX_MESSAGES})"
                    )
                ),
                Ok(Some(l)) => {
                    assert!(validate, "unvalidated hashes refused: {e:?}");
                    let bad =
                        e.0.strip_prefix("invalid message hash: ")
                            .expect("a hash error");
                    assert!(l.contains(&bad), "{bad:?} is not a listed hash");
                    assert!(!is_hash(bad), "refused the hash {bad:?}");
                }
            },
        }
        r
    }

    fn namespace(&self) -> PResult<Option<crate::message::Namespace>> {
        let r = self.p.namespace();
        match (&r, self.field("namespace")) {
            (Ok(None), None) => {}
            (Ok(Some(ns)), Some(v)) => assert_eq!(v.as_i64(), Some(i64::from(ns.0))),
            (Err(e), Some(v)) => check_ns_error(e, v, false),
            _ => panic!("namespace: {r:?}"),
        }
        r
    }

    fn namespace_sel(&self) -> PResult<Option<NamespaceSel>> {
        let r = self.p.namespace_sel();
        match (&r, self.field("namespace")) {
            (Ok(None), None) => {}
            (Ok(Some(NamespaceSel::All)), Some(v)) => assert_eq!(v.as_str(), Some("all")),
            (Ok(Some(NamespaceSel::One(ns))), Some(v)) => {
                assert_eq!(v.as_i64(), Some(i64::from(ns.0)));
            }
            (Err(e), Some(v)) => check_ns_error(e, v, true),
            _ => panic!("namespace_sel: {r:?}"),
        }
        r
    }

    fn account(&self, testnet: bool) -> PResult<AccountId> {
        let r = self.p.account(testnet);
        let given = (self.field("pubkey"), self.field("pubKey"));
        match (&r, given) {
            (Ok(a), (Some(v), None) | (None, Some(v))) => {
                let s = v.as_str().expect("an accepted pubkey is a string");
                let want = if testnet && s.len() == 64 {
                    format!("05{}", s.to_ascii_lowercase())
                } else {
                    s.to_ascii_lowercase()
                };
                assert_eq!(a.to_hex(), want);
                assert_eq!(AccountId::from_bytes(&a.to_bytes()).ok(), Some(*a));
            }
            (Err(e), (None, None)) => assert_eq!(e.0, "Required field 'pubkey' missing"),
            (Err(e), (Some(_), Some(_))) => {
                assert_eq!(e.0, "Cannot specify both 'pubkey' and 'pubKey'");
            }
            (Err(e), (Some(v), None)) => check_pubkey_error(e, "pubkey", v),
            (Err(e), (None, Some(v))) => check_pubkey_error(e, "pubKey", v),
            _ => panic!("account: {r:?}"),
        }
        r
    }

    fn signature(&self, key: &str) -> PResult<Option<[u8; 64]>> {
        let r = self.p.signature(key);
        match (&r, self.field(key)) {
            (Ok(None), None) => {}
            (Ok(Some(sig)), Some(Value::String(s))) => check_sig_text(key, sig, s),
            (Err(e), Some(v)) if !v.is_string() => {
                assert_eq!(
                    e.0,
                    format!("Invalid value given for '{key}': expected string")
                );
            }
            (Err(e), Some(_)) => assert_eq!(
                e.0,
                format!("invalid {key}: expected base64 encoded Ed25519 signature")
            ),
            _ => panic!("signature({key}): {r:?}"),
        }
        r
    }

    fn ed25519_pubkey(&self, key: &str) -> PResult<Option<[u8; 32]>> {
        let r = self.p.ed25519_pubkey(key);
        match (&r, self.field(key)) {
            (Ok(None), None) => {}
            (Ok(Some(pk)), Some(Value::String(s))) => {
                assert_eq!(hex::encode(pk), s.to_ascii_lowercase(), "{key}");
            }
            (Err(e), Some(v)) if !v.is_string() => {
                assert_eq!(
                    e.0,
                    format!("Invalid value given for '{key}': expected string")
                );
            }
            (Err(e), Some(_)) => assert_eq!(e.0, format!("invalid {key}: expected 64 hex digits")),
            _ => panic!("ed25519_pubkey({key}): {r:?}"),
        }
        r
    }

    fn token(&self, key: &str) -> PResult<Option<crate::sign::SubaccountToken>> {
        let r = self.p.token(key);
        match (&r, self.field(key)) {
            (Ok(None), None) => {}
            (Ok(Some(t)), Some(Value::String(s))) => check_token_text(key, &t.0, s),
            (Err(e), Some(v)) if !v.is_string() => {
                assert_eq!(
                    e.0,
                    format!("Invalid value given for '{key}': expected string")
                );
            }
            (Err(e), Some(_)) => assert_eq!(
                e.0,
                format!("invalid {key}: expected base64 or hex encoded subaccount token")
            ),
            _ => panic!("token({key}): {r:?}"),
        }
        r
    }

    fn tokens(&self, key: &str) -> PResult<Option<Vec<crate::sign::SubaccountToken>>> {
        let r = self.p.tokens(key);
        let list = self.str_list(key);
        match (&r, list) {
            (Ok(None), Ok(None)) => {}
            (Ok(Some(tokens)), Ok(Some(texts))) => {
                assert_eq!(tokens.len(), texts.len(), "{key}");
                for (t, s) in tokens.iter().zip(texts) {
                    check_token_text(key, &t.0, s);
                }
            }
            (Err(e), Err(le)) => assert_eq!(e, &le),
            (Err(e), Ok(Some(_))) => assert_eq!(
                e.0,
                format!("invalid {key}: expected base64 or hex encoded subaccount token")
            ),
            _ => panic!("tokens({key}): {r:?}"),
        }
        r
    }
}

fn check_ns_error(e: &ParamError, v: &Value, all_allowed: bool) {
    let want = if v.as_i64().is_some() || v.is_u64() {
        assert!(
            v.as_i64().is_none_or(|n| i16::try_from(n).is_err()),
            "refused the namespace {v}"
        );
        "value out of range"
    } else if all_allowed && v.is_string() {
        assert_ne!(v.as_str(), Some("all"));
        "expected integer or \"all\""
    } else {
        "expected integer"
    };
    assert_eq!(e.0, format!("Invalid value given for 'namespace': {want}"));
}

fn check_pubkey_error(e: &ParamError, key: &str, v: &Value) {
    if v.is_string() {
        assert_eq!(e.0, "Pubkey must be 66 hex digits (33 bytes) long");
    } else {
        assert_eq!(
            e.0,
            format!("Invalid value given for '{key}': expected string")
        );
    }
}

// Each handler's parse, in its order (src/rpc/*.rs); `Ok` when nothing was refused.

/// `rpc::auth::Auth::parse`; the signature, which `required` methods must have.
fn auth(p: &Checked<'_>, account: &AccountId, allow_subaccount: bool) -> PResult<Option<[u8; 64]>> {
    let pubkey_ed25519 = p.ed25519_pubkey("pubkey_ed25519")?;
    if pubkey_ed25519.is_some() && account.kind != 0x05 {
        return Err(ParamError(
            "pubkey_ed25519 is only permitted for 05[...] pubkeys".into(),
        ));
    }
    let signature = p.signature("signature")?;
    if allow_subaccount {
        match (p.token("subaccount")?, p.signature("subaccount_sig")?) {
            (Some(_), None) => return Err(missing("subaccount_sig")),
            (None, Some(_)) => return Err(missing("subaccount")),
            _ => {}
        }
    }
    Ok(signature)
}

fn required_auth(p: &Checked<'_>, account: &AccountId, allow_subaccount: bool) -> PResult<()> {
    auth(p, account, allow_subaccount)?
        .map(drop)
        .ok_or_else(|| missing("signature"))
}

/// `rpc::store::parse`.
fn store(p: &Checked<'_>) -> PResult<()> {
    const TOO_LONG: &str =
        "Invalid value given for 'data': exceeds the maximum message size of 76800 bytes";
    let account = p.account(false)?;
    let timestamp = require("timestamp", p.timestamp_or_string("timestamp", true)?)?;
    let expiry = match (p.timestamp_or_string("ttl", false)?, p.timestamp("expiry")?) {
        (Some(_), Some(_)) => {
            return Err(ParamError("Cannot specify both 'ttl' and 'expiry'".into()));
        }
        (Some(ttl), None) => timestamp.saturating_add(ttl),
        (None, Some(expiry)) => expiry,
        (None, None) => return Err(missing("ttl")),
    };
    assert!(expiry >= 0);
    let text = require("data", p.str("data")?)?;
    if text.len() > MAX_DATA_B64 {
        return Err(ParamError(TOO_LONG.into()));
    }
    let data = b64_decode(text).ok_or_else(|| {
        ParamError("Invalid value given for 'data': expected base64 encoded data".into())
    })?;
    if data.len() > MAX_DATA_BYTES {
        return Err(ParamError(TOO_LONG.into()));
    }
    assert_eq!(b64_decode(&b64(&data)).as_deref(), Some(&data[..]));
    let _ = p.namespace()?;
    if p.has("signature") {
        auth(p, &account, true)?;
        let _ = p.timestamp("sig_timestamp")?;
    }
    Ok(())
}

/// `rpc::retrieve::retrieve`, up to the auth decision.
fn retrieve(p: &Checked<'_>) -> PResult<()> {
    let account = p.account(false)?;
    let ns_given = p.namespace()?;
    let ns = ns_given.unwrap_or_default();
    if let Some((key, v)) = p.either("last_hash", "lastHash")? {
        match v.as_str() {
            Some("") => {}
            Some(h) if is_hash(h) => {}
            _ => {
                return Err(ParamError(format!(
                    "Invalid value given for '{key}': expected base64 encoded message hash"
                )));
            }
        }
    }
    let _ = (p.int("max_count")?, p.int("max_size")?);
    let _ = p.bool("reverse_direction")?;
    let signed_path = p.has("pubkey_ed25519")
        || p.has("signature")
        || p.has("timestamp")
        || (ns_given.is_some() && !ns.is_noauth_retrieve());
    if signed_path {
        required_auth(p, &account, true)?;
        require("timestamp", p.timestamp("timestamp")?)?;
    }
    Ok(())
}

/// `rpc::delete::delete`.
fn delete(p: &Checked<'_>) -> PResult<()> {
    let account = p.account(false)?;
    p.hashes(true)?;
    let _ = p.bool("required")?;
    required_auth(p, &account, true)
}

/// `rpc::delete::ns_wide` (delete_all, delete_before, expire_all).
fn ns_wide(p: &Checked<'_>, ts_field: &str) -> PResult<()> {
    let account = p.account(false)?;
    let _ = p.namespace_sel()?;
    require(ts_field, p.timestamp(ts_field)?)?;
    required_auth(p, &account, true)
}

/// `rpc::expire::parse`.
fn expire(p: &Checked<'_>) -> PResult<()> {
    let account = p.account(false)?;
    let hashes = p.hashes(true)?;
    let multi = p.field("expiry").is_some_and(Value::is_array);
    let expiries = require("expiry", p.timestamp_list("expiry")?)?;
    if multi && expiries.len() != hashes.len() {
        return Err(ParamError(
            "Invalid value given for 'expiry': expected one expiry per message hash".into(),
        ));
    }
    let shorten = p.bool("shorten")?.unwrap_or(false);
    let extend = p.bool("extend")?.unwrap_or(false);
    if shorten && extend {
        return Err(ParamError(
            "Cannot specify both 'shorten' and 'extend'".into(),
        ));
    }
    required_auth(p, &account, true)
}

/// `rpc::expire::get_expiries`.
fn get_expiries(p: &Checked<'_>) -> PResult<()> {
    let account = p.account(false)?;
    p.hashes(false)?;
    require("timestamp", p.timestamp("timestamp")?)?;
    required_auth(p, &account, true)
}

/// `rpc::subaccount::revoke` (`key` is `revoke` or `unrevoke`).
fn revoke(p: &Checked<'_>, key: &str) -> PResult<()> {
    let account = p.account(false)?;
    let tokens = require(key, p.tokens(key)?)?;
    if tokens.is_empty() {
        return Err(ParamError(format!(
            "Invalid value given for '{key}': expected at least one subaccount token"
        )));
    }
    if tokens.len() > MAX_SUBACCOUNT_TOKENS {
        return Err(ParamError(format!(
            "Invalid value given for '{key}': too many subaccount tokens (max {MAX_SUBACCOUNT_TOKENS})"
        )));
    }
    require("timestamp", p.timestamp("timestamp")?)?;
    required_auth(p, &account, false)
}

/// `rpc::subaccount::revoked_subaccounts`.
fn revoked_subaccounts(p: &Checked<'_>) -> PResult<()> {
    let account = p.account(false)?;
    require("timestamp", p.timestamp("timestamp")?)?;
    required_auth(p, &account, false)
}

/// `rpc::info::oxend_request`, up to the endpoint choice.
fn oxend_request(p: &Checked<'_>) -> PResult<()> {
    let endpoint = require("endpoint", p.str("endpoint")?)?;
    if p.field("params").is_some_and(|v| !v.is_object()) {
        return Err(ParamError(
            "Invalid value given for 'params': expected object".into(),
        ));
    }
    match endpoint {
        "get_service_nodes" | "ons_resolve" => Ok(()),
        other => Err(ParamError(format!("Invalid oxend endpoint '{other}'"))),
    }
}
