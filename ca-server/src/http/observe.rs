//! Request ids and metrics for every routed request.
//!
//! Each request gets an id (the client's `x-request-id` when it is short and
//! plain, else a fresh one) carried by every log line of the request and
//! returned in the response; its latency is recorded by route and status,
//! and certificate requests count as issued or refused by code.

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument as _;

use super::error::Refused;
use super::issue::Retried;
use super::AppState;

/// Runs `request` inside its id's span and records its metrics.
pub(super) async fn observe(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let id = request
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            !v.is_empty()
                && v.len() <= 64
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
        })
        .map(String::from)
        .unwrap_or_else(new_request_id);
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_default();
    let span = tracing::info_span!("request", id = %id);
    let mut response = next.run(request).instrument(span).await;
    let status = response.status();
    if route == "/v1/certs/user" {
        if status.is_success() && response.extensions().get::<Retried>().is_none() {
            state.metrics.issued.inc();
        } else if let Some(Refused(code)) = response.extensions().get::<Refused>() {
            state
                .metrics
                .denied
                .with_label_values(&[code.as_str()])
                .inc();
        }
    }
    state
        .metrics
        .request_seconds
        .with_label_values(&[route.as_str(), status.as_str()])
        .observe(started.elapsed().as_secs_f64());
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert("x-request-id", value);
    }
    response
}

/// 16 hex digits, unique per serving thread and unlikely to repeat across
/// threads and restarts. Ids correlate log lines; they are not secrets, so a
/// counter (seeded once per thread) through the splitmix64 bijection does,
/// without asking the operating system for randomness per request.
fn new_request_id() -> String {
    thread_local! {
        static COUNTER: std::cell::Cell<u64> =
            std::cell::Cell::new(rand_core::RngCore::next_u64(&mut rand_core::OsRng));
    }
    let count = COUNTER.with(|counter| {
        let next = counter.get().wrapping_add(0x9e37_79b9_7f4a_7c15);
        counter.set(next);
        next
    });
    let mut mixed = (count ^ (count >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    mixed = (mixed ^ (mixed >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    format!("{:016x}", mixed ^ (mixed >> 31))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_sixteen_hex_digits_and_do_not_repeat() {
        let ids: std::collections::HashSet<String> = (0..1000).map(|_| new_request_id()).collect();
        assert_eq!(ids.len(), 1000);
        assert!(ids
            .iter()
            .all(|id| id.len() == 16 && id.bytes().all(|b| b.is_ascii_hexdigit())));
    }
}
