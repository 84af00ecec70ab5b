//! What the QUIC listener answers to each command on a request stream (quic.md 5): the storage
//! server's endpoints — `snode_ping`, `onion_req`, `monitor` and every client RPC method —
//! and the exact reply and error bodies the original sends.
//!
//! Owns the mapping of an endpoint name and body to an `R` or `E` answer. Must not touch the
//! stream (the listener frames and sends the answer) or hold RPC logic (`rpc`).

use std::net::IpAddr;

use serde_json::Value;
use tokio::time::Instant;

use super::QuicState;
use super::monitor::{MonitorContext, PushTarget};
use crate::metrics::{PingKind, QuicOutcome};
use crate::peer::reply::Reply;
use crate::rpc::{Origin, RpcBody, RpcResponse, method_label};

/// An answer to one command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// `R` with this body.
    Reply(Vec<u8>),
    /// `E` with this body.
    Error(Vec<u8>),
}

/// The connection a command came on.
pub struct Caller<'a> {
    /// Its id in the subscription table.
    pub conn: u64,
    /// Where pushes for it go.
    pub push: &'a PushTarget,
    /// Its IP (rate limit only; never logged).
    pub ip: IpAddr,
    /// The Ed25519 key of its client certificate (a node's identity, or a client's
    /// throw-away key).
    pub key: Option<[u8; 32]>,
}

/// `"<code> <reason>\n\n<body>"`, the original's error text (quic.md 5).
pub fn error_text(code: u16, body: &[u8]) -> Vec<u8> {
    let reason = http::StatusCode::from_u16(code)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("Unknown");
    let mut out = format!("{code} {reason}\n\n").into_bytes();
    out.extend_from_slice(body);
    out
}

/// Answers one command; also the metrics label of its endpoint.
pub async fn answer(
    state: &QuicState,
    caller: &Caller<'_>,
    endpoint: &[u8],
    body: &[u8],
) -> (&'static str, Answer) {
    let name = std::str::from_utf8(endpoint).unwrap_or("");
    let (label, answer) = match name {
        "snode_ping" => {
            state
                .app
                .status
                .reachability
                .record_incoming(PingKind::QuicPing, (state.app.rpc.clock)());
            ("snode_ping", Answer::Reply(b"pong".to_vec()))
        }
        "onion_req" => ("onion_req", onion(state, body).await),
        "monitor" => ("monitor", monitor(state, caller, body)),
        _ if name.starts_with("/snode/v1/") => ("peer", peer(state, caller, name, body).await),
        _ => match method_label(name) {
            "unknown" => (
                "unknown",
                // libquic's own text for a command nobody handles (quic.md 4.4).
                Answer::Error(
                    format!("Invalid endpoint '{}'", String::from_utf8_lossy(endpoint))
                        .into_bytes(),
                ),
            ),
            label => (label, rpc(state, caller, name, body).await),
        },
    };
    let outcome = match answer {
        Answer::Reply(_) => QuicOutcome::Reply,
        Answer::Error(_) => QuicOutcome::Error,
    };
    state
        .app
        .metrics
        .quic_requests_total
        .with_label_values(&[label, outcome.label()])
        .inc();
    (label, answer)
}

/// A peer command (`peer::quic`): only from a node the directory lists, known by its client
/// certificate, which the handshake proved; then exactly what the HTTPS peer route does.
/// Always an `R` with `[status, body]`.
async fn peer(state: &QuicState, caller: &Caller<'_>, path: &str, body: &[u8]) -> Answer {
    let received = Instant::now();
    let listed = caller
        .key
        .filter(|k| state.app.rpc.membership.borrow().node(k).is_some());
    let Some(sender) = listed else {
        return Answer::Reply(crate::peer::quic::encode_answer(
            403,
            b"peer is not a listed service node",
        ));
    };
    let call = super::super::peer::PeerCall {
        sender,
        path,
        body: bytes::Bytes::copy_from_slice(body),
        received,
    };
    let reply = super::super::peer::handle(&state.app, call).await;
    Answer::Reply(crate::peer::quic::encode_answer(reply.status, &reply.body))
}

fn not_ready(state: &QuicState) -> Option<Answer> {
    state.app.not_ready_reason().map(|why| {
        Answer::Error(error_text(
            503,
            format!("Service node is not ready: {why}\n").as_bytes(),
        ))
    })
}

/// `onion_req`: the same bytes and the same answers as `POST /onion_req/v2`; a 200 is an `R`
/// with the body, anything else an `E` with the status and body.
async fn onion(state: &QuicState, body: &[u8]) -> Answer {
    let started = Instant::now();
    if let Some(a) = not_ready(state) {
        super::super::onion::record(&state.app, crate::metrics::OnionOutcome::NotReady, started);
        return a;
    }
    let reply: Reply = super::super::onion::entry_layer(&state.app, body, started).await;
    if reply.status == 200 {
        Answer::Reply(reply.body.to_vec())
    } else {
        Answer::Error(error_text(reply.status, &reply.body))
    }
}

fn monitor(state: &QuicState, caller: &Caller<'_>, body: &[u8]) -> Answer {
    let membership = state.app.rpc.snapshot();
    let ctx = MonitorContext {
        store: &state.app.rpc.store,
        membership: &membership,
        me: state.app.keys.pubkey_ed25519(),
        now_ms: (state.app.rpc.clock)(),
    };
    let (reply, granted) = super::monitor::handle(&ctx, body);
    match state
        .subscriptions
        .subscribe(caller.conn, caller.push, granted)
    {
        Ok(()) => Answer::Reply(reply),
        // Always an R (quic.md 5): a full table is the caller's BAD_ARGS.
        Err(_) => {
            let mut out = Vec::new();
            crate::bencode::put_dict(&mut out);
            crate::bencode::put_bytes(&mut out, b"errcode");
            crate::bencode::put_int(&mut out, super::monitor::MonitorError::BadArgs as i64);
            crate::bencode::put_bytes(&mut out, b"error");
            crate::bencode::put_bytes(&mut out, b"Too many subscriptions");
            crate::bencode::put_end(&mut out);
            Answer::Reply(out)
        }
    }
}

/// A client RPC method: JSON params (or `{}` for an empty body) or a bt dict (a body starting
/// with `d`); answered `R [code, body]` (bencoded for a bt request) or
/// `E "<code> <reason>\n\n<body>"`.
async fn rpc(state: &QuicState, caller: &Caller<'_>, method: &str, body: &[u8]) -> Answer {
    if let Some(a) = not_ready(state) {
        return a;
    }
    if !state.app.limiter.allow(caller.ip, Instant::now()) {
        state.app.metrics.rate_limited_total.inc();
        return Answer::Error(error_text(429, b"Too many requests, try again later"));
    }
    let bt = body.first() == Some(&b'd');
    let params = if bt {
        crate::rpc::bt::params_from_bt(body)
    } else if body.is_empty() {
        Ok(Value::Object(serde_json::Map::new()))
    } else {
        serde_json::from_slice::<Value>(body).map_err(|e| e.to_string())
    };
    let params = match params {
        Ok(p) if p.is_object() => p,
        Ok(_) => {
            return Answer::Error(error_text(
                400,
                b"invalid request: params must be an object",
            ));
        }
        Err(e) => {
            return Answer::Error(error_text(400, format!("invalid request: {e}").as_bytes()));
        }
    };
    let resp = crate::rpc::handle_method(&state.app.rpc, method, &params, Origin::Client).await;
    frame_rpc(resp, bt)
}

/// The original's framing of an RPC result (quic.md 5): 2xx JSON → `R [code, body]` (a bt list
/// for bt requests), other bodies raw; non-2xx → `E` with the wrapped JSON or the text.
pub fn frame_rpc(resp: RpcResponse, bt: bool) -> Answer {
    let ok = (200..300).contains(&resp.status);
    let code = resp.status;
    match resp.body {
        RpcBody::Json(v) if ok && bt => {
            let mut out = Vec::new();
            crate::bencode::put_list(&mut out);
            crate::bencode::put_int(&mut out, i64::from(code));
            crate::rpc::bt::to_bt(&v, &mut out);
            crate::bencode::put_end(&mut out);
            Answer::Reply(out)
        }
        RpcBody::Json(v) if ok => {
            Answer::Reply(Value::Array(vec![code.into(), v]).to_string().into_bytes())
        }
        RpcBody::Json(v) => Answer::Error(error_text(
            code,
            Value::Array(vec![code.into(), v]).to_string().as_bytes(),
        )),
        RpcBody::Text(t) if ok => Answer::Reply(t.into_bytes()),
        RpcBody::Text(t) => Answer::Error(error_text(code, t.as_bytes())),
        RpcBody::Bytes(b) if ok => Answer::Reply(b),
        RpcBody::Bytes(b) => Answer::Error(error_text(code, &b)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn errors_read_as_the_original() {
        assert_eq!(
            error_text(400, b"invalid request: x"),
            b"400 Bad Request\n\ninvalid request: x"
        );
        assert_eq!(
            error_text(429, b"Too many requests, try again later"),
            b"429 Too Many Requests\n\nToo many requests, try again later"
        );
    }

    #[test]
    fn rpc_results_are_wrapped() {
        let ok = RpcResponse {
            status: 200,
            body: RpcBody::Json(json!({"a": 1})),
        };
        assert_eq!(
            frame_rpc(ok.clone(), false),
            Answer::Reply(b"[200,{\"a\":1}]".to_vec())
        );
        assert_eq!(
            frame_rpc(ok, true),
            Answer::Reply(b"li200ed1:ai1eee".to_vec())
        );
        let misdirected = RpcResponse {
            status: 421,
            body: RpcBody::Json(json!({"snodes": []})),
        };
        assert_eq!(
            frame_rpc(misdirected, false),
            Answer::Error(b"421 Misdirected Request\n\n[421,{\"snodes\":[]}]".to_vec())
        );
        let text = RpcResponse {
            status: 401,
            body: RpcBody::Text("retrieve: request signature required".into()),
        };
        assert_eq!(
            frame_rpc(text, false),
            Answer::Error(b"401 Unauthorized\n\nretrieve: request signature required".to_vec())
        );
    }
}
