//! The one framing of answers into HTTP responses: [`Reply`] (status, content type, body) and
//! its [`Reply::into_response`], used by every router — public and admin answers as they are,
//! peer answers after `api::peer` adds the authentication headers, onion answers whatever
//! their source.
//!
//! Owns content types, the RPC body → content type mapping and the plain-text error framing of
//! the original (bodies end with a newline only where the original's do). Must not decide
//! statuses (callers pass them) or add headers of a protocol (signatures are `api::peer`'s).

use axum::body::{Body, Bytes};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use http_body_util::{BodyExt, Limited};

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

    /// The HTTP response: status, `Content-Type`, body (its length is known, so the server
    /// sends `Content-Length`).
    pub fn into_response(self) -> Response {
        let mut r = Response::new(Body::from(self.body));
        *r.status_mut() =
            StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        r.headers_mut()
            .insert(header::CONTENT_TYPE, self.content_type);
        r
    }
}

impl axum::response::IntoResponse for Reply {
    fn into_response(self) -> Response {
        Reply::into_response(self)
    }
}

/// A plain-text response (shorthand for `Reply::text(..).into_response()`).
pub fn text(code: u16, body: impl Into<String>) -> Response {
    Reply::text(code, body).into_response()
}

/// An RPC result as a response (shorthand for `Reply::rpc(..).into_response()`).
pub fn rpc(resp: RpcResponse) -> Response {
    Reply::rpc(resp).into_response()
}

/// Reads a request body of at most `max` bytes; a larger one gets the original's 413.
pub async fn read_body(body: Body, max: usize) -> Result<Bytes, Response> {
    match Limited::new(body, max).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) => {
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some()
            {
                Err(text(413, "Request body too large"))
            } else {
                // The client went away or sent a broken body: nothing useful to say.
                Err(text(400, "Bad Request\n"))
            }
        }
    }
}
