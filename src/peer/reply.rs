//! An answer before HTTP framing: status, content type and body. One type for every answer a
//! node gives — to clients, to onion layers, to peers (the peer routes sign exactly these
//! bytes) and from the anti-entropy endpoints — so there is one framing and one naming.
//!
//! Owns the content types and the RPC body → content type mapping. Must not know the server
//! (the HTTP response is made in `api::response`) or decide statuses (callers pass them).

use bytes::Bytes;
use http::HeaderValue;

use crate::rpc::{RpcBody, RpcResponse};

/// `Content-Type` of text bodies.
pub const TEXT: &str = "text/plain; charset=utf-8";
/// `Content-Type` of JSON bodies.
pub const JSON: &str = "application/json";
/// `Content-Type` of binary bodies.
pub const BINARY: &str = "application/octet-stream";

/// An answer before HTTP framing. Kept apart from the `Response` so that a peer answer can be
/// signed over exactly the bytes that go out.
#[derive(Debug, Clone)]
pub struct Reply {
    /// HTTP status (unknown codes frame as 500, as in the original).
    pub status: u16,
    /// `Content-Type`.
    pub content_type: HeaderValue,
    /// The body, as sent.
    pub body: Bytes,
}

impl Reply {
    /// A body with a fixed content type.
    pub fn new(status: u16, content_type: &'static str, body: impl Into<Bytes>) -> Reply {
        Reply {
            status,
            content_type: HeaderValue::from_static(content_type),
            body: body.into(),
        }
    }

    /// A plain-text answer.
    pub fn text(status: u16, body: impl Into<String>) -> Reply {
        Reply::new(status, TEXT, body.into())
    }

    /// An RPC result: JSON bodies as `application/json`, text as `text/plain`, bytes as
    /// `application/octet-stream`.
    pub fn rpc(resp: RpcResponse) -> Reply {
        match resp.body {
            RpcBody::Json(v) => Reply::new(resp.status, JSON, v.to_string()),
            RpcBody::Text(t) => Reply::text(resp.status, t),
            RpcBody::Bytes(b) => Reply::new(resp.status, BINARY, b),
        }
    }
}
