//! What a node does with a layer it has decrypted (storage-server.md 2.3, 2.6): the closed set
//! of outcomes `Layer::{Final, ToServer, ToNode}`.
//!
//! Owns: reading the decrypted `u32le N || inner || JSON`, the priority `headers` → `host` →
//! `destination`, the defaults, and the exit hop's target allow-list. Must not: decrypt, look up
//! nodes, contact servers, or copy the payload (the outcome borrows from the plaintext).

use super::crypto::EncType;
use super::parse::{hex32, json_object, split_frame};
use serde_json::{Map, Value};

/// The routing decision for one decrypted layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Layer<'a> {
    /// This node is the destination: `body` is the client RPC `{"method","params"}`.
    Final {
        /// The RPC request JSON (the `N` bytes of the layer).
        body: &'a [u8],
        /// `"json": true` embeds a JSON RPC result as an object instead of a string.
        json: bool,
        /// `"base64": false` returns the encrypted reply as raw bytes.
        base64: bool,
    },
    /// This node is the exit hop to an external server (SOGS, file server, …).
    ToServer {
        /// Host name or address to POST to.
        host: String,
        /// Path on that host; see [`is_allowed_target`].
        target: String,
        /// TCP port (default 443).
        port: u16,
        /// `http` or `https` (default `https`); anything else fails `is_allowed_target`.
        protocol: String,
        /// What to POST: the **entire** decrypted layer `N || inner || JSON`, as the C++ server
        /// does (the server decrypts `inner` itself with the key in the JSON).
        payload: &'a [u8],
    },
    /// This node relays to the next service node.
    ToNode {
        /// The next node's Ed25519 public key.
        destination: [u8; 32],
        /// The ephemeral X25519 key of the next layer.
        ephemeral_key: [u8; 32],
        /// The cipher of the next layer (default aes-gcm).
        enc_type: EncType,
        /// The next layer's ciphertext.
        inner: &'a [u8],
    },
}

/// Why a decrypted layer has no valid routing. The node answers every variant with the
/// encrypted `{"status":400,"body":"Invalid json"}`; the variants serve logs and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    /// The plaintext is not `u32le N || inner || rest`.
    #[error("layer is not size-prefixed")]
    Framing,
    /// The rest is not a JSON object.
    #[error("layer json is not an object")]
    Json,
    /// A required key is absent.
    #[error("layer json lacks {0}")]
    Missing(&'static str),
    /// A key has the wrong type or an invalid value.
    #[error("layer json has an invalid {0}")]
    Invalid(&'static str),
}

/// Reads a decrypted layer and decides where it goes (storage-server.md 2.3).
pub fn route(plaintext: &[u8]) -> Result<Layer<'_>, RouteError> {
    let (inner, json) = split_frame(plaintext).ok_or(RouteError::Framing)?;
    let meta = json_object(json).ok_or(RouteError::Json)?;

    // 1. `headers` (any value, even null) marks the final destination.
    if meta.contains_key("headers") {
        return Ok(Layer::Final {
            body: inner,
            json: opt_bool(&meta, "json")?.unwrap_or(false),
            base64: opt_bool(&meta, "base64")?.unwrap_or(true),
        });
    }
    // 2. `host` marks the exit to an external server.
    if meta.contains_key("host") {
        let port = match meta.get("port") {
            None => 443,
            Some(v) => v
                .as_u64()
                .and_then(|p| u16::try_from(p).ok())
                .filter(|p| *p != 0)
                .ok_or(RouteError::Invalid("port"))?,
        };
        return Ok(Layer::ToServer {
            host: req_str(&meta, "host")?.to_owned(),
            target: req_str(&meta, "target")?.to_owned(),
            port,
            protocol: opt_str(&meta, "protocol")?.unwrap_or("https").to_owned(),
            payload: plaintext,
        });
    }
    // 3. Otherwise relay to the next node.
    let destination =
        hex32(req_str(&meta, "destination")?).ok_or(RouteError::Invalid("destination"))?;
    let ephemeral_key =
        hex32(req_str(&meta, "ephemeral_key")?).ok_or(RouteError::Invalid("ephemeral_key"))?;
    let enc_type = match opt_str(&meta, "enc_type")? {
        None => EncType::default(),
        Some(name) => EncType::from_name(name).ok_or(RouteError::Invalid("enc_type"))?,
    };
    Ok(Layer::ToNode {
        destination,
        ephemeral_key,
        enc_type,
        inner,
    })
}

/// Whether an exit hop may proxy to `protocol://host/target` (storage-server.md 2.6): only
/// http(s), only `/loki/…` or `/oxen/…` paths ending in `/lsrpc`, and no query string.
pub fn is_allowed_target(protocol: &str, target: &str) -> bool {
    allowed_target(protocol, target).is_some()
}

/// The path an exit hop requests for `target`, or `None` when it may not proxy there: the
/// rule of [`is_allowed_target`], checked on the normalised path (see [`normalize_target`]),
/// which is also the path sent. The original checks the raw string, so `/oxen/../x/lsrpc`
/// passes its prefix test and the server it reaches resolves it to `/x/lsrpc`.
pub fn allowed_target(protocol: &str, target: &str) -> Option<String> {
    if !matches!(protocol, "http" | "https") {
        return None;
    }
    let path = normalize_target(target)?;
    ((path.starts_with("/loki/") || path.starts_with("/oxen/")) && path.ends_with("/lsrpc"))
        .then_some(path)
}

/// `target` with its dot segments resolved (`.` dropped, `..` removes the segment before it,
/// RFC 3986 5.2.4), `%2e` read as a dot as servers do. `None` for a path a server could read
/// otherwise than we check it: not absolute, a query or fragment, a backslash, whitespace or a
/// control character, any other percent escape (`%2f` would hide a slash), or `..` above the
/// root.
pub fn normalize_target(target: &str) -> Option<String> {
    let rest = target.strip_prefix('/')?;
    if target
        .bytes()
        .any(|b| matches!(b, b'?' | b'#' | b'\\') || b <= b' ' || b == 0x7f)
    {
        return None;
    }
    let mut out: Vec<String> = Vec::new();
    for raw in rest.split('/') {
        let seg = decode_dots(raw)?;
        match seg.as_str() {
            "." => {}
            ".." => {
                out.pop()?;
            }
            _ => out.push(seg),
        }
    }
    Some(format!("/{}", out.join("/")))
}

/// A path segment with `%2e`/`%2E` decoded; `None` if it holds any other percent escape.
fn decode_dots(seg: &str) -> Option<String> {
    let mut out = String::with_capacity(seg.len());
    let mut rest = seg;
    while let Some(i) = rest.find('%') {
        out.push_str(&rest[..i]);
        let esc = rest.get(i + 1..i + 3)?;
        if !esc.eq_ignore_ascii_case("2e") {
            return None;
        }
        out.push('.');
        rest = &rest[i + 3..];
    }
    out.push_str(rest);
    Some(out)
}

fn req_str<'m>(meta: &'m Map<String, Value>, key: &'static str) -> Result<&'m str, RouteError> {
    opt_str(meta, key)?.ok_or(RouteError::Missing(key))
}

fn opt_str<'m>(
    meta: &'m Map<String, Value>,
    key: &'static str,
) -> Result<Option<&'m str>, RouteError> {
    meta.get(key)
        .map(|v| v.as_str().ok_or(RouteError::Invalid(key)))
        .transpose()
}

fn opt_bool(meta: &Map<String, Value>, key: &'static str) -> Result<Option<bool>, RouteError> {
    meta.get(key)
        .map(|v| v.as_bool().ok_or(RouteError::Invalid(key)))
        .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SS unit_test/onion_requests.cpp prefix: N = 10, then "ciphertext".
    const PREFIX: &[u8] = b"\x0a\0\0\0ciphertext";

    fn layer(json: &str) -> Vec<u8> {
        [PREFIX, json.as_bytes()].concat()
    }

    #[test]
    fn ss_final_destination_vector() {
        let data = layer(r#"{"headers":"something"}"#);
        assert_eq!(
            route(&data),
            Ok(Layer::Final {
                body: b"ciphertext",
                json: false,
                base64: true
            })
        );
        // Any value of `headers` counts, and the flags are read.
        let data = layer(r#"{"headers":null,"json":true,"base64":false}"#);
        assert_eq!(
            route(&data),
            Ok(Layer::Final {
                body: b"ciphertext",
                json: true,
                base64: false
            })
        );
        // `headers` wins over `host` and `destination`.
        let data = layer(r#"{"host":"h","target":"t","destination":"x","headers":{}}"#);
        assert!(matches!(route(&data), Ok(Layer::Final { .. })));
        assert_eq!(
            route(&layer(r#"{"headers":"","json":"yes"}"#)),
            Err(RouteError::Invalid("json"))
        );
    }

    #[test]
    fn ss_relay_to_server_vector() {
        let data = layer(r#"{"host":"host","target":"target"}"#);
        assert_eq!(
            route(&data),
            Ok(Layer::ToServer {
                host: "host".into(),
                target: "target".into(),
                port: 443,
                protocol: "https".into(),
                payload: &data,
            })
        );
        let data = layer(
            r#"{"host":"file.example","target":"/oxen/v4/lsrpc","method":"POST","protocol":"http","port":80,"ephemeral_key":"ab","enc_type":"xchacha20"}"#,
        );
        match route(&data) {
            Ok(Layer::ToServer {
                port,
                protocol,
                payload,
                ..
            }) => {
                assert_eq!((port, protocol.as_str(), payload), (80, "http", &data[..]));
            }
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(
            route(&layer(r#"{"host":"h"}"#)),
            Err(RouteError::Missing("target"))
        );
        assert_eq!(
            route(&layer(r#"{"host":1,"target":"t"}"#)),
            Err(RouteError::Invalid("host"))
        );
        for port in ["0", "65536", "-1", "\"443\"", "4.5"] {
            let j = format!(r#"{{"host":"h","target":"t","port":{port}}}"#);
            assert_eq!(
                route(&layer(&j)),
                Err(RouteError::Invalid("port")),
                "{port}"
            );
        }
    }

    #[test]
    fn ss_relay_to_node_vector() {
        let dest = "ffffeeeeddddccccbbbbaaaa9999888877776666555544443333222211110000";
        let eph = "0000111122223333444455556666777788889999aaaabbbbccccddddeeeeffff";
        let data = layer(&format!(
            r#"{{"destination":"{dest}","ephemeral_key":"{eph}"}}"#
        ));
        let want_dest = hex32(dest).expect("hex");
        let want_eph = hex32(eph).expect("hex");
        assert_eq!(
            route(&data),
            Ok(Layer::ToNode {
                destination: want_dest,
                ephemeral_key: want_eph,
                enc_type: EncType::AesGcm,
                inner: b"ciphertext",
            })
        );
        let data = layer(&format!(
            r#"{{"destination":"{dest}","ephemeral_key":"{eph}","enc_type":"xchacha20"}}"#
        ));
        assert!(matches!(
            route(&data),
            Ok(Layer::ToNode {
                enc_type: EncType::XChaCha20,
                ..
            })
        ));

        let missing_eph = layer(&format!(r#"{{"destination":"{dest}"}}"#));
        assert_eq!(
            route(&missing_eph),
            Err(RouteError::Missing("ephemeral_key"))
        );
        let short_dest = layer(&format!(
            r#"{{"destination":"abcd","ephemeral_key":"{eph}"}}"#
        ));
        assert_eq!(route(&short_dest), Err(RouteError::Invalid("destination")));
        let bad_enc = layer(&format!(
            r#"{{"destination":"{dest}","ephemeral_key":"{eph}","enc_type":"rot13"}}"#
        ));
        assert_eq!(route(&bad_enc), Err(RouteError::Invalid("enc_type")));
        assert_eq!(route(&layer("{}")), Err(RouteError::Missing("destination")));
    }

    #[test]
    fn bad_framing_and_json() {
        assert_eq!(route(b""), Err(RouteError::Framing));
        assert_eq!(route(b"\x0d\0\0\0ciphertext{}"), Err(RouteError::Framing));
        assert_eq!(route(&layer("")), Err(RouteError::Json));
        assert_eq!(route(&layer("not json")), Err(RouteError::Json));
        assert_eq!(route(&layer(r#"["headers"]"#)), Err(RouteError::Json));
    }

    /// SS unit_test/onion_requests.cpp target vectors (storage-server.md 2.6).
    #[test]
    fn ss_allowed_targets() {
        for ok in [
            "/loki/v3/lsrpc",
            "/loki/oxen/v4/lsrpc",
            "/oxen/v3/lsrpc",
            "/oxen/v4/lsrpc",
        ] {
            assert!(is_allowed_target("https", ok), "{ok}");
            assert!(is_allowed_target("http", ok), "{ok}");
        }
        for bad in [
            "/not_loki/v3/lsrpc",
            "/loki/v3",
            "/loki/v3/lsrpc?foo=bar",
            "",
            "/lsrpc",
        ] {
            assert!(!is_allowed_target("https", bad), "{bad}");
        }
        for proto in ["ftp", "HTTPS", "", "file"] {
            assert!(!is_allowed_target(proto, "/loki/v3/lsrpc"), "{proto}");
        }
    }

    #[test]
    fn targets_are_checked_after_normalisation() {
        // Dot segments that climb out of the allowed prefixes, plain or percent-encoded.
        for bad in [
            "/oxen/../x/lsrpc",
            "/loki/v3/../../etc/lsrpc",
            "/oxen/%2e%2e/x/lsrpc",
            "/oxen/%2E%2e/x/lsrpc",
            "/oxen/.%2e/x/lsrpc",
            "/oxen/../../../lsrpc",
            "/../oxen/v4/lsrpc",
            "/oxen/v4%2flsrpc",
            "/oxen/v4/%6csrpc",
            "/oxen\\..\\x/lsrpc",
            "/oxen/v4/lsrpc#x",
            "/oxen/v4 /lsrpc",
            "/oxen/v4/lsrpc%",
            "oxen/v4/lsrpc",
        ] {
            assert_eq!(allowed_target("https", bad), None, "{bad}");
        }
        // Harmless dot segments resolve, and the resolved path is what gets requested.
        assert_eq!(
            allowed_target("https", "/oxen/./v4/lsrpc").as_deref(),
            Some("/oxen/v4/lsrpc")
        );
        assert_eq!(
            allowed_target("http", "/loki/x/../v3/lsrpc").as_deref(),
            Some("/loki/v3/lsrpc")
        );
        assert_eq!(
            allowed_target("https", "/oxen/v4/lsrpc").as_deref(),
            Some("/oxen/v4/lsrpc")
        );
    }
}
