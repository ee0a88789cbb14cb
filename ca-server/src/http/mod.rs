//! The HTTP face of the CA: thin axum handlers that extract, call the
//! [`Authority`], and map the result.
//!
//! What every authenticated endpoint does first (the per-address rate limit,
//! a permit of the in-flight limit, the bearer token) is the [`Caller`]
//! extractor, so no handler can skip a step or change their order. Every
//! domain error becomes HTTP in `error.rs`, once. The endpoints that do
//! domain work answer `503 timeout` past the configured request timeout (a
//! tower layer), and every request gets an id and metrics (`observe.rs`).
//! Before routing, a request whose head is over a limit (a declared body
//! over [`MAX_BODY_BYTES`], headers over [`MAX_HEADERS`] or
//! [`MAX_HEADER_BYTES`]) is refused (`edge.rs`); a known path with another
//! method is answered `405 method_not_allowed`: every refusal has the JSON
//! error body.
//!
//! The CA serves two routers on two listeners: [`app`], the API, and
//! [`monitoring_app`], the only one that serves `/metrics`. Metrics name the
//! issuers and count issuances and refusals, which is the operator's to
//! watch, not everyone's who can reach the API; the monitoring listener has
//! no authentication, so where it listens is the control (loopback by
//! default).

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use axum::error_handling::HandleErrorLayer;
use axum::extract::DefaultBodyLimit;
use axum::middleware;
use axum::routing::{get, post};
use axum::{BoxError, Router};
use tokio::sync::Semaphore;
use tower::timeout::TimeoutLayer;
use tower::ServiceBuilder;

use crate::authority::{AccessVerb, Authority};
use crate::config::ConnectionLimits;
use crate::metrics::Metrics;
use crate::rate_limit::RateLimits;

mod caller;
mod edge;
mod error;
mod issue;
mod observe;
mod public;
mod requests;
mod revocations;

pub use caller::{Caller, ClientAddr, JsonBody};
pub use error::ApiError;

/// Largest request body accepted.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// Most header fields one request may carry.
pub const MAX_HEADERS: usize = 100;
/// Largest header section (names and values) one request may carry: an ID
/// token with many group claims fits with room to spare.
pub const MAX_HEADER_BYTES: usize = 32 * 1024;

/// Shared state of the handlers. The middleware and the handler of every
/// request each clone it, so its parts sit behind one reference count: a
/// clone is one count, whatever the state holds.
#[derive(Clone)]
pub struct AppState(Arc<SharedState>);

impl AppState {
    /// Shares `shared` between the handlers.
    pub fn new(shared: SharedState) -> Self {
        Self(Arc::new(shared))
    }
}

impl std::ops::Deref for AppState {
    type Target = SharedState;

    fn deref(&self) -> &SharedState {
        &self.0
    }
}

/// What [`AppState`] holds.
pub struct SharedState {
    /// The CA.
    pub authority: Arc<Authority>,
    /// Bounds authenticated requests in flight; beyond it the CA answers 429
    /// at once.
    pub in_flight: Arc<Semaphore>,
    /// Longest time one request doing domain work may take.
    pub request_timeout: Duration,
    /// Connection deadlines (the body's is checked by [`JsonBody`]) and
    /// caps, for the server that serves [`app`].
    pub connections: ConnectionLimits,
    /// Counters and histograms, served at `/metrics` by [`monitoring_app`].
    pub metrics: Arc<Metrics>,
    /// What `/readyz` answers; cleared first when shutting down.
    pub ready: Arc<AtomicBool>,
    /// Per-address and per-identity request limits.
    pub rate_limits: Arc<RateLimits>,
}

/// The router; tests drive it without a socket.
pub fn app(state: AppState) -> Router {
    let domain = Router::new()
        .route("/v1/certs/user", post(issue::issue_user_cert))
        .route("/v1/revocations", post(revocations::revoke))
        .route("/v1/revocations/lift", post(revocations::lift))
        .route("/v1/revocations/own", post(revocations::revoke_own))
        .route("/v1/requests", post(requests::create).get(requests::list))
        .route(
            "/v1/requests/{id}/approve",
            requests::decide(AccessVerb::Approve),
        )
        .route("/v1/requests/{id}/deny", requests::decide(AccessVerb::Deny))
        .route("/v1/requests/{id}/done", requests::decide(AccessVerb::Done))
        .route(
            "/v1/requests/{id}/review",
            requests::decide(AccessVerb::Review),
        )
        .route_layer(
            ServiceBuilder::new()
                .layer(HandleErrorLayer::new(timed_out))
                .layer(TimeoutLayer::new(state.request_timeout)),
        );
    Router::new()
        .route("/healthz", get(public::healthz))
        .route("/readyz", get(public::readyz))
        .route("/v1/config", get(public::config))
        .route("/v1/ca/user.pub", get(public::user_ca))
        .route("/v1/ca/host.pub", get(public::host_ca))
        .route("/v1/krl", get(revocations::krl))
        .merge(domain)
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            observe::observe,
        ))
        .fallback(public::not_found)
        .method_not_allowed_fallback(public::method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(middleware::from_fn(edge::refuse_oversized))
        .with_state(state)
}

/// The router of the monitoring listener (`metrics_listen`): `/metrics`,
/// and `/healthz` and `/readyz` for probes that should not go through the
/// API's address. Nothing here reads a request body or does domain work, and
/// scrapes are not counted among the API's requests.
pub fn monitoring_app(state: AppState) -> Router {
    Router::new()
        .route("/metrics", get(public::metrics))
        .route("/healthz", get(public::healthz))
        .route("/readyz", get(public::readyz))
        .fallback(public::not_found)
        .method_not_allowed_fallback(public::method_not_allowed)
        .with_state(state)
}

/// The answer of a request that outlived the request timeout. Handlers never
/// fail (their errors are answers), so the timeout is the only error the
/// layer below can report.
async fn timed_out(_elapsed: BoxError) -> ApiError {
    ApiError::timeout()
}
