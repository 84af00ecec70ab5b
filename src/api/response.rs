//! The one mapping from RPC results and edge errors to HTTP responses.
//!
//! Owns content types and the plain-text error framing of the original (bodies end with a
//! newline only where the original's do). Must not decide statuses: callers pass them.

use axum::body::{Body, Bytes};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use http_body_util::{BodyExt, Limited};

use crate::rpc::{RpcBody, RpcResponse};

/// A status code from the RPC layer; unknown codes become 500, as in the original.
fn status(code: u16) -> StatusCode {
    StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

/// A plain-text response.
pub fn text(code: u16, body: impl Into<String>) -> Response {
    let mut r = (status(code), body.into()).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// Frames an RPC response: JSON bodies as `application/json`, text as `text/plain`,
/// bytes as `application/octet-stream`.
pub fn rpc(resp: RpcResponse) -> Response {
    let code = status(resp.status);
    match resp.body {
        RpcBody::Json(v) => {
            let mut r = (code, v.to_string()).into_response();
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            r
        }
        RpcBody::Text(t) => text(resp.status, t),
        RpcBody::Bytes(b) => {
            let mut r = (code, b).into_response();
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            );
            r
        }
    }
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
