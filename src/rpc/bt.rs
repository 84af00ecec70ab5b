//! Bencoded request bodies, as QUIC (and the original's OxenMQ) clients may send them
//! (storage-server.md 1.1 `storage.<method>`): a body starting with `d` is a bt dict of the
//! same params, with byte fields raw instead of encoded and booleans as `i1e`/`i0e`; the
//! answer to such a request is bencoded too.
//!
//! Owns the two conversions: bt params → the JSON params every method parses (raw keys,
//! signatures, tokens and bodies put back into their JSON encodings), and a JSON answer → bt
//! (booleans as 0/1, signatures and message bodies raw). Must not parse any field's meaning.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Map, Value};

use crate::bencode::{self, Limits};

/// Fields carried raw in bt requests, with the raw length and the JSON encoding they have in
/// a JSON request; a value of another length is taken as already encoded.
const RAW_FIELDS: &[(&str, Option<usize>, Encoding)] = &[
    ("pubkey", Some(33), Encoding::Hex),
    ("pubKey", Some(33), Encoding::Hex),
    ("pubkey_ed25519", Some(32), Encoding::Hex),
    ("signature", Some(64), Encoding::Base64),
    ("subaccount_sig", Some(64), Encoding::Base64),
    ("subaccount", Some(36), Encoding::Base64),
    ("revoke", Some(36), Encoding::Base64),
    ("unrevoke", Some(36), Encoding::Base64),
    ("data", None, Encoding::Base64),
];

/// Fields that are booleans in JSON and 0/1 in bt.
const BOOL_FIELDS: &[&str] = &["shorten", "extend", "reverse_direction", "json", "base64"];

/// Fields answered raw to a bt request (their JSON form is base64).
const RAW_ANSWER_FIELDS: &[&str] = &["signature", "data"];

#[derive(Clone, Copy)]
enum Encoding {
    Hex,
    Base64,
}

/// The JSON params of a bt-dict request body, or the reason it is not one.
pub fn params_from_bt(body: &[u8]) -> Result<Value, String> {
    let v = bencode::Value::decode(body, Limits::DEFAULT).map_err(|e| e.to_string())?;
    match v {
        bencode::Value::Dict(_) => Ok(convert(&v, None)),
        _ => Err("request body is not a bencoded dict".into()),
    }
}

fn convert(v: &bencode::Value<'_>, key: Option<&str>) -> Value {
    match v {
        bencode::Value::Int(i) => match key {
            Some(k) if BOOL_FIELDS.contains(&k) && (*i == 0 || *i == 1) => Value::Bool(*i == 1),
            _ => Value::from(*i),
        },
        bencode::Value::Bytes(b) => bytes(b, key),
        // A list keeps its key's rules for each element (`revoke` may be a list of tokens).
        bencode::Value::List(items) => {
            Value::Array(items.iter().map(|i| convert(i, key)).collect())
        }
        bencode::Value::Dict(entries) => {
            let mut map = Map::new();
            for (k, val) in entries {
                let k = String::from_utf8_lossy(k).into_owned();
                let converted = if k == "params" {
                    // `oxend_request` carries its params as a JSON string (clients.md 1.2).
                    match val {
                        bencode::Value::Bytes(b) => serde_json::from_slice::<Value>(b)
                            .ok()
                            .filter(Value::is_object)
                            .unwrap_or_else(|| convert(val, Some(&k))),
                        _ => convert(val, Some(&k)),
                    }
                } else {
                    convert(val, Some(&k))
                };
                map.insert(k, converted);
            }
            Value::Object(map)
        }
    }
}

fn bytes(b: &[u8], key: Option<&str>) -> Value {
    let rule = key.and_then(|k| RAW_FIELDS.iter().find(|(name, _, _)| *name == k));
    match rule {
        Some((_, len, enc)) if len.is_none_or(|l| l == b.len()) => match enc {
            Encoding::Hex => Value::String(hex::encode(b)),
            Encoding::Base64 => Value::String(STANDARD.encode(b)),
        },
        // Text as text; other bytes base64, so nothing is lost (a method then reports the
        // field's usual encoding error).
        _ => match std::str::from_utf8(b) {
            Ok(s) => Value::String(s.to_owned()),
            Err(_) => Value::String(STANDARD.encode(b)),
        },
    }
}

/// The bt encoding of a JSON answer: objects as dicts (keys sorted, nulls left out), booleans
/// as 1/0, numbers as integers, `signature` and `data` strings raw.
pub fn to_bt(v: &Value, out: &mut Vec<u8>) {
    write(v, None, out);
}

fn write(v: &Value, key: Option<&str>, out: &mut Vec<u8>) {
    match v {
        Value::Null => bencode::put_bytes(out, b""),
        Value::Bool(b) => bencode::put_int(out, i64::from(*b)),
        Value::Number(n) => match n.as_i64() {
            Some(i) => bencode::put_int(out, i),
            // u64 above i64 or a float: its decimal text (no protocol field is either).
            None => bencode::put_bytes(out, n.to_string().as_bytes()),
        },
        Value::String(s) => {
            let raw = key
                .filter(|k| RAW_ANSWER_FIELDS.contains(k))
                .and_then(|_| STANDARD.decode(s).ok());
            bencode::put_bytes(out, raw.as_deref().unwrap_or(s.as_bytes()));
        }
        Value::Array(items) => {
            bencode::put_list(out);
            for i in items {
                write(i, key, out);
            }
            bencode::put_end(out);
        }
        Value::Object(map) => {
            bencode::put_dict(out);
            // serde_json's map iterates in key order, which is bencode's byte order for UTF-8.
            for (k, val) in map.iter().filter(|(_, v)| !v.is_null()) {
                bencode::put_bytes(out, k.as_bytes());
                write(val, Some(k), out);
            }
            bencode::put_end(out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn raw_fields_become_their_json_encodings() {
        let mut body = Vec::new();
        bencode::put_dict(&mut body);
        bencode::put_bytes(&mut body, b"data");
        bencode::put_bytes(&mut body, &[0xff, 0x00]);
        bencode::put_bytes(&mut body, b"extend");
        bencode::put_int(&mut body, 1);
        bencode::put_bytes(&mut body, b"namespace");
        bencode::put_int(&mut body, -10);
        bencode::put_bytes(&mut body, b"pubkey");
        bencode::put_bytes(&mut body, &[5u8; 33]);
        bencode::put_bytes(&mut body, b"signature");
        bencode::put_bytes(&mut body, &[1u8; 64]);
        bencode::put_end(&mut body);
        let p = params_from_bt(&body).expect("dict");
        assert_eq!(p["data"], json!("/wA="));
        assert_eq!(p["extend"], json!(true));
        assert_eq!(p["namespace"], json!(-10));
        assert_eq!(p["pubkey"], json!("05".repeat(33)));
        assert_eq!(p["signature"], json!(STANDARD.encode([1u8; 64])));
    }

    #[test]
    fn oxend_request_params_string_is_parsed() {
        let body = b"d8:endpoint17:get_service_nodes6:params17:{\"active_only\":1}e";
        let p = params_from_bt(body).expect("dict");
        assert_eq!(p["endpoint"], json!("get_service_nodes"));
        assert_eq!(p["params"], json!({"active_only": 1}));
    }

    #[test]
    fn refuses_what_is_not_a_dict() {
        assert!(params_from_bt(b"li1ee").is_err());
        assert!(params_from_bt(b"d3:fooe").is_err());
        assert!(params_from_bt(b"d1:b0:1:a0:e").is_err()); // unsorted keys
    }

    #[test]
    fn answers_encode_canonically() {
        let mut out = Vec::new();
        to_bt(
            &json!({"b": true, "a": [1, "x"], "signature": STANDARD.encode([9u8; 2]), "n": null}),
            &mut out,
        );
        assert_eq!(out, b"d1:ali1e1:xe1:bi1e9:signature2:\x09\x09e");
    }
}
