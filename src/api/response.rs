//! The one framing of answers into HTTP responses: [`Reply`] (status, content type, body;
//! defined in `peer::reply`, below every user) and its [`Reply::into_response`], used by every
//! router — public and admin answers as they are,
//! peer answers after `api::peer` adds the authentication headers, onion answers whatever
//! their source.
//!
//! Owns content types, the RPC body → content type mapping and the plain-text error framing of
//! the original (bodies end with a newline only where the original's do). Must not decide
//! statuses (callers pass them) or add headers of a protocol (signatures are `api::peer`'s).

use axum::body::{Body, Bytes};
use axum::http::{StatusCode, header};
use axum::response::Response;
use http_body_util::{BodyExt, Limited};

use crate::rpc::RpcResponse;

pub use crate::peer::reply::{BINARY, JSON, Reply, TEXT};

impl Reply {
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

/// Whether the body read failed because the body timeout fired (anywhere in the chain).
fn timed_out(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if err.is::<tower_http::timeout::TimeoutError>() {
            return true;
        }
        cur = err.source();
    }
    false
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
            } else if timed_out(e.as_ref()) {
                // `[limits] request_body_timeout` (the body timeout layer of the public router).
                Err(text(408, "Request Timeout\n"))
            } else {
                // The client went away or sent a broken body: nothing useful to say.
                Err(text(400, "Bad Request\n"))
            }
        }
    }
}
