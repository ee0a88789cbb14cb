//! What the API refuses before routing, from the request head alone: a
//! declared body over the size limit (413 at once, before a byte of it is
//! read) and headers past the CA's limits (431), each with the JSON error
//! body every refusal carries.
//!
//! hyper refuses heads it cannot parse, or larger than its read buffer,
//! before any of this runs (see `server::serve`); these limits sit below
//! hyper's so that what reaches the service is answered here, in JSON.

use axum::extract::Request;
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::{ApiError, MAX_BODY_BYTES, MAX_HEADERS, MAX_HEADER_BYTES};

/// Refuses a request whose head is over a limit; passes the rest on.
pub(super) async fn refuse_oversized(request: Request, next: Next) -> Response {
    let headers = request.headers();
    let header_bytes: usize = headers
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len())
        .sum();
    if headers.len() > MAX_HEADERS || header_bytes > MAX_HEADER_BYTES {
        return ApiError::headers_too_large().into_response();
    }
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    if declared.is_some_and(|length| length > MAX_BODY_BYTES as u64) {
        return ApiError::body_too_large().into_response();
    }
    next.run(request).await
}
