//! The HTTP face of the CA: thin axum handlers that extract, call the
//! [`Authority`], and map the result. Errors become HTTP here and nowhere else.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{ConnectInfo, DefaultBodyLimit, MatchedPath, Path, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use ca_proto::{
    AccessRequestCreate, AccessRequestDecision, AccessRequestList, AccessRequestView, ErrorBody,
    ErrorDetail, OwnRevocationRequest, RevocationRequest, RevocationResponse, UserCertRequest,
};
use tokio::sync::Semaphore;
use tracing::Instrument as _;

use crate::access::{CreateRefusal, RequestError};
use crate::authority::{
    AccessError, AccessVerb, AuthError, Authority, IssueError, RevocationChange, RevokeError,
};
use crate::metrics::Metrics;
use crate::oidc::TokenError;
use crate::rate_limit::{RateLimits, RetryAfter};
use crate::secret::BearerToken;
use crate::subject_key::KeyRejection;

/// Largest request body accepted.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// Shared state of the handlers. Every request clones it twice (middleware
/// and handler), so its parts sit behind one reference count: each count is a
/// cache line that both cores write.
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
    /// Bounds requests in flight; beyond it the CA answers 429 at once.
    pub in_flight: Arc<Semaphore>,
    /// Longest time one issuance may take.
    pub request_timeout: Duration,
    /// Counters and histograms served at `/metrics`.
    pub metrics: Arc<Metrics>,
    /// What `/readyz` answers; cleared first when shutting down.
    pub ready: Arc<AtomicBool>,
    /// Per-address and per-identity request limits.
    pub rate_limits: Arc<RateLimits>,
}

/// The router; tests drive it without a socket.
pub fn app(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/v1/config", get(config))
        .route("/v1/ca/user.pub", get(user_ca))
        .route("/v1/ca/host.pub", get(host_ca))
        .route("/v1/certs/user", post(issue_user_cert))
        .route("/v1/krl", get(krl))
        .route("/v1/revocations", post(revoke))
        .route("/v1/revocations/lift", post(lift))
        .route("/v1/revocations/own", post(revoke_own))
        .route("/v1/requests", post(create_request).get(list_requests))
        .route("/v1/requests/{id}/approve", post(approve_request))
        .route("/v1/requests/{id}/deny", post(deny_request))
        .route("/v1/requests/{id}/done", post(end_request))
        .route("/v1/requests/{id}/review", post(review_request))
        .route_layer(middleware::from_fn_with_state(state.clone(), observe))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

/// Gives every request an id (the client's `x-request-id` when it is short
/// and plain, else a fresh one) carried by every log line of the request and
/// returned in the response, and records latency and outcome metrics.
async fn observe(State(state): State<AppState>, request: Request, next: Next) -> Response {
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
        if status.is_success() {
            state.metrics.issued.inc();
        } else if let Some(ErrorCode(code)) = response.extensions().get::<ErrorCode>() {
            state.metrics.denied.with_label_values(&[code]).inc();
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
/// without a `getrandom` call per request.
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

/// The stable error code of a response, for metrics.
#[derive(Debug, Clone, Copy)]
struct ErrorCode(&'static str);

async fn healthz() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "ok" }))
}

async fn readyz(State(state): State<AppState>) -> Response {
    if state.ready.load(Ordering::Relaxed) {
        Json(serde_json::json!({ "status": "ready" })).into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({ "status": "shutting down" })),
        )
            .into_response()
    }
}

async fn metrics(State(state): State<AppState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(),
    )
        .into_response()
}

async fn config(State(state): State<AppState>) -> Json<ca_proto::CaConfig> {
    Json(state.authority.published_config())
}

async fn user_ca(State(state): State<AppState>) -> Response {
    key_lines(state.authority.user_ca_lines())
}

async fn host_ca(State(state): State<AppState>) -> Response {
    key_lines(state.authority.host_ca_lines())
}

fn key_lines(lines: Vec<String>) -> Response {
    let mut body = lines.join("\n");
    body.push('\n');
    ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], body).into_response()
}

async fn not_found() -> ApiError {
    ApiError::NotFound
}

async fn issue_user_cert(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Result<Json<UserCertRequest>, JsonRejection>,
) -> Result<Json<ca_proto::UserCertResponse>, ApiError> {
    state
        .rate_limits
        .check_address(peer.ip())
        .map_err(ApiError::RateLimited)?;
    let Ok(_permit) = state.in_flight.try_acquire() else {
        return Err(ApiError::Overloaded);
    };
    let token = bearer_token(&headers)?;
    let Json(request) = body.map_err(ApiError::Body)?;
    let now = crate::unix_now();
    let issue = state
        .authority
        .issue_user_certificate(&token, request, peer.ip(), now);
    match tokio::time::timeout(state.request_timeout, issue).await {
        Ok(result) => result.map(Json).map_err(ApiError::Issue),
        Err(_) => Err(ApiError::Timeout),
    }
}

async fn krl(State(state): State<AppState>) -> Result<Response, ApiError> {
    let krl = state
        .authority
        .krl(crate::unix_now())
        .await
        .map_err(ApiError::Revoke)?;
    let signature = base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        krl.signature.as_bytes(),
    );
    let mut response = (
        [(header::CONTENT_TYPE, "application/octet-stream")],
        krl.bytes.clone(),
    )
        .into_response();
    if let Ok(value) = HeaderValue::from_str(&signature) {
        response
            .headers_mut()
            .insert(ca_proto::krl::KRL_SIGNATURE_HEADER, value);
    }
    if let Ok(value) = HeaderValue::from_str(&krl.version.to_string()) {
        response
            .headers_mut()
            .insert("x-jit-ssh-krl-version", value);
    }
    Ok(response)
}

async fn revoke(
    state: State<AppState>,
    peer: ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Result<Json<RevocationRequest>, JsonRejection>,
) -> Result<Json<RevocationResponse>, ApiError> {
    admin_revocation(state, peer, headers, body, RevocationChange::Revoke).await
}

async fn lift(
    state: State<AppState>,
    peer: ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Result<Json<RevocationRequest>, JsonRejection>,
) -> Result<Json<RevocationResponse>, ApiError> {
    admin_revocation(state, peer, headers, body, RevocationChange::Lift).await
}

async fn admin_revocation(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Result<Json<RevocationRequest>, JsonRejection>,
    change: RevocationChange,
) -> Result<Json<RevocationResponse>, ApiError> {
    state
        .rate_limits
        .check_address(peer.ip())
        .map_err(ApiError::RateLimited)?;
    let token = bearer_token(&headers)?;
    let Json(request) = body.map_err(ApiError::Body)?;
    let change =
        state
            .authority
            .admin_revocation(&token, request, change, peer.ip(), crate::unix_now());
    match tokio::time::timeout(state.request_timeout, change).await {
        Ok(result) => result.map(Json).map_err(ApiError::Revoke),
        Err(_) => Err(ApiError::Timeout),
    }
}

async fn revoke_own(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    body: Result<Json<OwnRevocationRequest>, JsonRejection>,
) -> Result<Json<RevocationResponse>, ApiError> {
    state
        .rate_limits
        .check_address(peer.ip())
        .map_err(ApiError::RateLimited)?;
    let Json(request) = body.map_err(ApiError::Body)?;
    let change = state
        .authority
        .revoke_own(request, peer.ip(), crate::unix_now());
    match tokio::time::timeout(state.request_timeout, change).await {
        Ok(result) => result.map(Json).map_err(ApiError::Revoke),
        Err(_) => Err(ApiError::Timeout),
    }
}

async fn create_request(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Result<Json<AccessRequestCreate>, JsonRejection>,
) -> Result<Json<AccessRequestView>, ApiError> {
    state
        .rate_limits
        .check_address(peer.ip())
        .map_err(ApiError::RateLimited)?;
    let token = bearer_token(&headers)?;
    let Json(request) = body.map_err(ApiError::Body)?;
    let create =
        state
            .authority
            .create_access_request(&token, request, peer.ip(), crate::unix_now());
    match tokio::time::timeout(state.request_timeout, create).await {
        Ok(result) => result.map(Json).map_err(ApiError::Access),
        Err(_) => Err(ApiError::Timeout),
    }
}

/// Query of `GET /v1/requests`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    #[serde(default)]
    pending: bool,
    /// Only unreviewed break-glass requests the caller may review.
    #[serde(default)]
    needs_review: bool,
}

async fn list_requests(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<AccessRequestList>, ApiError> {
    state
        .rate_limits
        .check_address(peer.ip())
        .map_err(ApiError::RateLimited)?;
    let token = bearer_token(&headers)?;
    let Query(query) = query.map_err(|rejection| {
        ApiError::Access(AccessError::InvalidRequest(rejection.body_text()))
    })?;
    let now = crate::unix_now();
    let list = async {
        if query.needs_review {
            state
                .authority
                .unreviewed_access_requests(&token, now)
                .await
        } else {
            state
                .authority
                .list_access_requests(&token, query.pending, now)
                .await
        }
    };
    match tokio::time::timeout(state.request_timeout, list).await {
        Ok(result) => result
            .map(|requests| Json(AccessRequestList { requests }))
            .map_err(ApiError::Access),
        Err(_) => Err(ApiError::Timeout),
    }
}

async fn approve_request(
    state: State<AppState>,
    peer: ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    id: Result<Path<u64>, PathRejection>,
    body: Result<Json<AccessRequestDecision>, JsonRejection>,
) -> Result<Json<AccessRequestView>, ApiError> {
    decide_request(state, peer, headers, id, body, AccessVerb::Approve).await
}

async fn deny_request(
    state: State<AppState>,
    peer: ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    id: Result<Path<u64>, PathRejection>,
    body: Result<Json<AccessRequestDecision>, JsonRejection>,
) -> Result<Json<AccessRequestView>, ApiError> {
    decide_request(state, peer, headers, id, body, AccessVerb::Deny).await
}

async fn end_request(
    state: State<AppState>,
    peer: ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    id: Result<Path<u64>, PathRejection>,
    body: Result<Json<AccessRequestDecision>, JsonRejection>,
) -> Result<Json<AccessRequestView>, ApiError> {
    decide_request(state, peer, headers, id, body, AccessVerb::Done).await
}

async fn review_request(
    state: State<AppState>,
    peer: ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    id: Result<Path<u64>, PathRejection>,
    body: Result<Json<AccessRequestDecision>, JsonRejection>,
) -> Result<Json<AccessRequestView>, ApiError> {
    decide_request(state, peer, headers, id, body, AccessVerb::Review).await
}

async fn decide_request(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    id: Result<Path<u64>, PathRejection>,
    body: Result<Json<AccessRequestDecision>, JsonRejection>,
    verb: AccessVerb,
) -> Result<Json<AccessRequestView>, ApiError> {
    state
        .rate_limits
        .check_address(peer.ip())
        .map_err(ApiError::RateLimited)?;
    let token = bearer_token(&headers)?;
    let Path(id) = id.map_err(|_| {
        ApiError::Access(AccessError::InvalidRequest(
            "the request id must be a decimal number".into(),
        ))
    })?;
    let Json(body) = body.map_err(ApiError::Body)?;
    let decide =
        state
            .authority
            .decide_access_request(&token, id, verb, body, peer.ip(), crate::unix_now());
    match tokio::time::timeout(state.request_timeout, decide).await {
        Ok(result) => result.map(Json).map_err(ApiError::Access),
        Err(_) => Err(ApiError::Timeout),
    }
}

fn bearer_token(headers: &HeaderMap) -> Result<BearerToken, ApiError> {
    let value = headers
        .get(header::AUTHORIZATION)
        .ok_or(ApiError::MissingToken)?
        .to_str()
        .map_err(|_| ApiError::MissingToken)?;
    let (scheme, token) = value.split_once(' ').ok_or(ApiError::MissingToken)?;
    if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
        return Err(ApiError::MissingToken);
    }
    Ok(BearerToken::new(token.trim().to_string()))
}

/// Every way a request can fail, before or inside the domain.
#[derive(Debug)]
pub enum ApiError {
    /// No `Authorization: Bearer` header.
    MissingToken,
    /// The JSON body was unreadable, too large or had unknown fields.
    Body(JsonRejection),
    /// The domain refused.
    Issue(IssueError),
    /// A revocation, lift or KRL request failed.
    Revoke(RevokeError),
    /// An access request could not be made, listed or decided.
    Access(AccessError),
    /// Too many requests in flight.
    Overloaded,
    /// Too many requests from this client address.
    RateLimited(RetryAfter),
    /// The request took longer than the configured timeout.
    Timeout,
    /// No such route.
    NotFound,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let retry_after = match &self {
            ApiError::RateLimited(wait)
            | ApiError::Issue(IssueError::Auth(AuthError::RateLimited(wait)))
            | ApiError::Revoke(RevokeError::Auth(AuthError::RateLimited(wait)))
            | ApiError::Access(AccessError::Auth(AuthError::RateLimited(wait))) => {
                Some(wait.seconds())
            }
            _ => None,
        };
        let (status, code, message) = match self {
            ApiError::MissingToken => (
                StatusCode::UNAUTHORIZED,
                "missing_token",
                "send the ID token as `Authorization: Bearer <token>`".to_string(),
            ),
            ApiError::Body(rejection) => {
                if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    (
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "body_too_large",
                        format!("request bodies are limited to {MAX_BODY_BYTES} bytes"),
                    )
                } else {
                    (
                        StatusCode::BAD_REQUEST,
                        "invalid_request",
                        rejection.body_text(),
                    )
                }
            }
            ApiError::RateLimited(wait) => (
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                format!(
                    "too many requests from this address; retry in {}s",
                    wait.seconds()
                ),
            ),
            ApiError::Overloaded => (
                StatusCode::TOO_MANY_REQUESTS,
                "overloaded",
                "the CA is at its limit of requests in flight; retry shortly".to_string(),
            ),
            ApiError::Timeout => (
                StatusCode::SERVICE_UNAVAILABLE,
                "timeout",
                "the request took too long; retry shortly".to_string(),
            ),
            ApiError::NotFound => (
                StatusCode::NOT_FOUND,
                "not_found",
                "no such endpoint; see docs/api.md".to_string(),
            ),
            ApiError::Issue(error) => issue_error_parts(error),
            ApiError::Revoke(error) => revoke_error_parts(error),
            ApiError::Access(error) => access_error_parts(error),
        };
        let body = ErrorBody {
            error: ErrorDetail {
                code: code.into(),
                message,
            },
        };
        let mut response = (status, Json(body)).into_response();
        response.extensions_mut().insert(ErrorCode(code));
        if let Some(seconds) = retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
        }
        response
    }
}

fn auth_error_parts(error: &AuthError, message: String) -> (StatusCode, &'static str, String) {
    match error {
        AuthError::Token(TokenError::IssuerUnavailable(_)) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "issuer_unavailable",
            message,
        ),
        AuthError::Token(_) => (StatusCode::UNAUTHORIZED, "invalid_token", message),
        AuthError::Replayed => (StatusCode::UNAUTHORIZED, "replayed_token", message),
        AuthError::RateLimited(_) => (StatusCode::TOO_MANY_REQUESTS, "rate_limited", message),
    }
}

fn issue_error_parts(error: IssueError) -> (StatusCode, &'static str, String) {
    let message = error.to_string();
    match error {
        IssueError::InvalidRequest(_) => (StatusCode::BAD_REQUEST, "invalid_request", message),
        IssueError::SubjectKey(rejection) => {
            let code = match rejection {
                KeyRejection::CertificateOffered => "certificate_offered",
                KeyRejection::Dsa
                | KeyRejection::RsaSize { .. }
                | KeyRejection::WeakEd25519
                | KeyRejection::Unsupported(_) => "weak_key",
                KeyRejection::Malformed(_)
                | KeyRejection::ProofMalformed(_)
                | KeyRejection::ProofWrongKey
                | KeyRejection::ProofWrongNamespace(_)
                | KeyRejection::ProofInvalid => "invalid_key",
            };
            (StatusCode::BAD_REQUEST, code, message)
        }
        IssueError::Proof(_) => (StatusCode::UNAUTHORIZED, "invalid_proof", message),
        IssueError::Auth(error) => auth_error_parts(&error, message),
        IssueError::Denied(_) => (StatusCode::FORBIDDEN, "denied", message),
        IssueError::ApprovalRequired(_) => (StatusCode::FORBIDDEN, "approval_required", message),
        IssueError::RevokedIdentity(_) => (StatusCode::FORBIDDEN, "revoked_identity", message),
        IssueError::RevokedKey(_) => (StatusCode::FORBIDDEN, "revoked_key", message),
        IssueError::Store(error) => {
            tracing::error!(%error, "issuance not recorded; no certificate returned");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "store_unavailable",
                "the CA cannot record issuances right now; nothing was issued".into(),
            )
        }
        IssueError::Signing(error) => {
            tracing::error!(%error, "signing failed");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "internal error".into(),
            )
        }
    }
}

fn access_error_parts(error: AccessError) -> (StatusCode, &'static str, String) {
    let message = error.to_string();
    match error {
        AccessError::InvalidRequest(_) => (StatusCode::BAD_REQUEST, "invalid_request", message),
        AccessError::Auth(error) => auth_error_parts(&error, message),
        AccessError::NotRequestable(_) => (StatusCode::FORBIDDEN, "not_requestable", message),
        AccessError::NotApprover { .. } => (StatusCode::FORBIDDEN, "not_approver", message),
        AccessError::OwnRequest => (StatusCode::FORBIDDEN, "own_request", message),
        AccessError::NotRequester(_) => (StatusCode::FORBIDDEN, "not_requester", message),
        AccessError::NotReviewer { .. } => (StatusCode::FORBIDDEN, "not_reviewer", message),
        AccessError::Refused(CreateRefusal::BreakGlassNotAllowed(_)) => {
            (StatusCode::FORBIDDEN, "break_glass_not_allowed", message)
        }
        AccessError::Refused(
            CreateRefusal::BreakGlassReason
            | CreateRefusal::StartInPast(_)
            | CreateRefusal::StartTooFar(_)
            | CreateRefusal::StartAndFirstUse,
        ) => (StatusCode::BAD_REQUEST, "invalid_request", message),
        AccessError::Unknown(_) => (StatusCode::NOT_FOUND, "unknown_request", message),
        AccessError::Conflict(conflict) => {
            let (status, code) = match conflict {
                RequestError::NotPending { .. } => (StatusCode::CONFLICT, "not_pending"),
                RequestError::AlreadyApproved(_) => (StatusCode::CONFLICT, "already_approved"),
                RequestError::Closed { .. } => (StatusCode::CONFLICT, "request_closed"),
                RequestError::NotBreakGlass(_) => (StatusCode::CONFLICT, "not_break_glass"),
                RequestError::AlreadyReviewed { .. } => (StatusCode::CONFLICT, "already_reviewed"),
                RequestError::OwnReview => (StatusCode::FORBIDDEN, "own_request"),
                // The store reports these as their own AccessError variants.
                RequestError::Unknown(_) => (StatusCode::CONFLICT, "unknown_request"),
                RequestError::OwnRequest => (StatusCode::CONFLICT, "own_request"),
            };
            (status, code, message)
        }
        AccessError::Store(error) => {
            tracing::error!(%error, "access request store failure");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "store_unavailable",
                "the CA cannot read or record access requests right now; nothing changed".into(),
            )
        }
    }
}

fn revoke_error_parts(error: RevokeError) -> (StatusCode, &'static str, String) {
    let message = error.to_string();
    match error {
        RevokeError::InvalidRequest(_) => (StatusCode::BAD_REQUEST, "invalid_request", message),
        RevokeError::Auth(error) => auth_error_parts(&error, message),
        RevokeError::NotAdmin(_) => (StatusCode::FORBIDDEN, "not_admin", message),
        RevokeError::NotOwner(_) => (StatusCode::FORBIDDEN, "not_owner", message),
        RevokeError::UnknownCertificate(_) => {
            (StatusCode::NOT_FOUND, "unknown_certificate", message)
        }
        RevokeError::NotRevoked(_) => (StatusCode::NOT_FOUND, "not_revoked", message),
        RevokeError::Store(error) => {
            tracing::error!(%error, "revocation store failure");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "store_unavailable",
                "the CA cannot read or record revocations right now; nothing changed".into(),
            )
        }
        RevokeError::Signing(error) => {
            tracing::error!(%error, "KRL signing failed");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "internal error".into(),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    //! Router tests: requests through `app()` with no socket.

    use std::net::SocketAddr;
    use std::sync::Arc;

    use axum::body::Body;
    use axum::extract::connect_info::MockConnectInfo;
    use axum::http::Request;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine as _;
    use ed25519_dalek::Signer as _;
    use http_body_util::BodyExt as _;
    use serde_json::{json, Value};
    use tower::ServiceExt as _;

    use super::*;
    use crate::ca_keys::{self, CaKeyType};
    use crate::config::{Config, IssuerConfig, UsernameClaim};
    use crate::metrics::Metrics;
    use crate::oidc::TokenVerifier;
    use crate::policy::{cli, ReloadablePolicy};
    use crate::secret::Passphrase;
    use crate::server::{assemble, CaParts};
    use crate::store::{Store, DATABASE_FILE};

    const ISSUER: &str = "http://127.0.0.1:9/idp";

    struct Fixture {
        router: Router,
        state: AppState,
        issuer_key: ed25519_dalek::SigningKey,
        _dir: tempfile::TempDir,
    }

    async fn fixture() -> Fixture {
        fixture_with(Duration::from_secs(crate::access::DEFAULT_PENDING_SECS)).await
    }

    /// Users' own login names for everyone of `corp`; `root` by access
    /// request for `sre` members, approved by `sre-leads` (break-glass
    /// allowed); `admins` are administrators.
    const POLICY: &str = r#"
[[rule]]
name = "own-login"
principals = ["{username}"]
[rule.match]
issuer = ["corp"]

[[rule]]
name = "sre-root"
principals = ["root"]
[rule.approval]
approver_groups = ["sre-leads"]
break_glass = true
[rule.match]
groups_any = ["sre"]

[[admin]]
name = "admins"
[admin.match]
groups_any = ["admins"]
"#;

    async fn fixture_with(pending: Duration) -> Fixture {
        let dir = tempfile::tempdir().expect("tempdir");
        let passphrase = Passphrase::new("router test passphrase".into());
        ca_keys::init(dir.path(), CaKeyType::Ed25519, &passphrase).expect("init");
        let policy_dir = dir.path().join("policies");
        std::fs::create_dir(&policy_dir).expect("mkdir");
        std::fs::write(policy_dir.join("own.toml"), POLICY).expect("policy");
        let issuer = IssuerConfig {
            name: "corp".into(),
            issuer: ISSUER.into(),
            client_id: "jit-ssh".into(),
            username_claim: UsernameClaim::PreferredUsername,
            groups_claim: "groups".into(),
            scopes: vec!["openid".into()],
        };
        let mut config = Config::with_defaults(
            SocketAddr::from(([127, 0, 0, 1], 0)),
            dir.path().to_path_buf(),
            policy_dir.clone(),
            vec![issuer.clone()],
        );
        config.access_request_pending = pending;
        let issuer_key = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
        let jwks = json!({"keys": [{"kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "kid": "k1",
            "x": URL_SAFE_NO_PAD.encode(issuer_key.verifying_key().as_bytes())}]});
        let metrics = Metrics::new();
        let state = assemble(
            CaParts {
                verifier: TokenVerifier::with_known_issuer(
                    issuer,
                    format!("{ISSUER}/jwks"),
                    jwks.to_string().as_bytes(),
                    config.token_leeway,
                    reqwest::Client::new(),
                    &metrics,
                )
                .expect("verifier"),
                policy: Arc::new(
                    ReloadablePolicy::load(&policy_dir, cli::context(Some(&config)))
                        .expect("policy"),
                ),
                keys: ca_keys::load(dir.path(), &passphrase).expect("keys"),
                store: Store::open(&dir.path().join(DATABASE_FILE), &metrics).expect("store"),
                metrics,
            },
            &config,
        );
        let router =
            app(state.clone()).layer(MockConnectInfo(SocketAddr::from(([127, 0, 0, 1], 40000))));
        Fixture {
            router,
            state,
            issuer_key,
            _dir: dir,
        }
    }

    fn token(key: &ed25519_dalek::SigningKey, nonce: &str) -> String {
        user_token(key, nonce, "alice", &[])
    }

    /// An ID token of `user` in `groups`; `nonce` makes it unique (each
    /// change spends its token).
    fn user_token(
        key: &ed25519_dalek::SigningKey,
        nonce: &str,
        user: &str,
        groups: &[&str],
    ) -> String {
        let now = crate::unix_now();
        let header = URL_SAFE_NO_PAD.encode(json!({"alg": "EdDSA", "kid": "k1"}).to_string());
        let claims = URL_SAFE_NO_PAD.encode(
            json!({"iss": ISSUER, "sub": format!("u-{user}"), "aud": "jit-ssh", "iat": now,
                   "exp": now + 300, "nonce": nonce, "preferred_username": user,
                   "groups": groups})
            .to_string(),
        );
        let input = format!("{header}.{claims}");
        format!(
            "{input}.{}",
            URL_SAFE_NO_PAD.encode(key.sign(input.as_bytes()).to_bytes())
        )
    }

    async fn send(router: &Router, request: Request<Body>) -> (StatusCode, HeaderMap, Vec<u8>) {
        let response = router.clone().oneshot(request).await.expect("infallible");
        let status = response.status();
        let headers = response.headers().clone();
        let body = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        (status, headers, body.to_vec())
    }

    fn get(path: &str) -> Request<Body> {
        Request::get(path).body(Body::empty()).expect("request")
    }

    fn error_code(body: &[u8]) -> String {
        let value: Value = serde_json::from_slice(body).expect("JSON error body");
        value["error"]["code"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    #[tokio::test]
    async fn public_endpoints_answer() {
        let f = fixture().await;
        let (status, _, body) = send(&f.router, get("/healthz")).await;
        assert_eq!(status, StatusCode::OK, "{body:?}");
        let (status, _, body) = send(&f.router, get("/v1/config")).await;
        assert_eq!(status, StatusCode::OK);
        let config: ca_proto::CaConfig = serde_json::from_slice(&body).expect("config");
        assert_eq!(config.issuers[0].issuer, ISSUER);
        assert_eq!(config.user_ca_keys.len(), 1);
        let (status, headers, body) = send(&f.router, get("/v1/ca/user.pub")).await;
        assert_eq!(status, StatusCode::OK);
        assert!(headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap_or_default()
            .starts_with("text/plain"));
        assert_eq!(
            String::from_utf8_lossy(&body).trim(),
            config.user_ca_keys[0]
        );
        let (status, _, body) = send(&f.router, get("/metrics")).await;
        assert_eq!(status, StatusCode::OK);
        assert!(String::from_utf8_lossy(&body).contains("jit_ssh_ca_build_info"));
    }

    #[tokio::test]
    async fn errors_are_json_with_stable_codes() {
        let f = fixture().await;
        let (status, _, body) = send(&f.router, get("/v1/nope")).await;
        assert_eq!(
            (status, error_code(&body).as_str()),
            (StatusCode::NOT_FOUND, "not_found")
        );
        let post = |body: String, bearer: bool| {
            let mut request =
                Request::post("/v1/certs/user").header("content-type", "application/json");
            if bearer {
                request = request.header("authorization", "Bearer x.y.z");
            }
            request.body(Body::from(body)).expect("request")
        };
        let (status, headers, body) = send(&f.router, post("{}".into(), false)).await;
        assert_eq!(
            (status, error_code(&body).as_str()),
            (StatusCode::UNAUTHORIZED, "missing_token")
        );
        assert_eq!(headers[header::WWW_AUTHENTICATE], "Bearer");
        let huge = format!("{{\"public_key\":\"{}\"}}", "A".repeat(MAX_BODY_BYTES));
        let (status, _, body) = send(&f.router, post(huge, true)).await;
        assert_eq!(
            (status, error_code(&body).as_str()),
            (StatusCode::PAYLOAD_TOO_LARGE, "body_too_large")
        );
        let (status, _, body) = send(&f.router, post("{\"public_key\":1}".into(), true)).await;
        assert_eq!(
            (status, error_code(&body).as_str()),
            (StatusCode::BAD_REQUEST, "invalid_request")
        );
    }

    #[tokio::test]
    async fn a_valid_request_gets_a_certificate_and_readyz_follows_shutdown() {
        let f = fixture().await;
        let user = ssh_key::PrivateKey::random(&mut rand_core::OsRng, ssh_key::Algorithm::Ed25519)
            .expect("key");
        let blob = user.public_key().to_bytes().expect("blob");
        let token = token(&f.issuer_key, &ca_proto::nonce_for_key(&blob));
        let proof = user
            .sign(
                ca_proto::PROOF_NAMESPACE,
                ssh_key::HashAlg::Sha512,
                &ca_proto::proof_message(&token, &blob),
            )
            .expect("sign")
            .to_pem(ssh_key::LineEnding::LF)
            .expect("pem");
        let body = serde_json::to_string(&UserCertRequest {
            public_key: user.public_key().to_openssh().expect("line"),
            principals: vec![],
            ttl: Some(120),
            proof,
        })
        .expect("json");
        let request = Request::post("/v1/certs/user")
            .header("content-type", "application/json")
            .header("authorization", format!("Bearer {token}"))
            .header("x-request-id", "router-test-1")
            .body(Body::from(body))
            .expect("request");
        let (status, headers, body) = send(&f.router, request).await;
        assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
        assert_eq!(headers["x-request-id"], "router-test-1");
        let issued: ca_proto::UserCertResponse = serde_json::from_slice(&body).expect("response");
        assert_eq!(issued.principals, ["alice"]);
        assert_eq!(issued.valid_before - issued.valid_after, 120 + 60);

        let (status, _, _) = send(&f.router, get("/readyz")).await;
        assert_eq!(status, StatusCode::OK);
        f.state.ready.store(false, Ordering::SeqCst);
        let (status, _, _) = send(&f.router, get("/readyz")).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    }

    /// A request's token and proof signatures are checked in one batch; a
    /// forged token is still refused as a token when its proof is bad too.
    #[tokio::test]
    async fn a_forged_token_is_refused_as_a_token_whatever_its_proof() {
        let f = fixture().await;
        let algorithms = [
            ssh_key::Algorithm::Ed25519,
            ssh_key::Algorithm::Ecdsa {
                curve: ssh_key::EcdsaCurve::NistP256,
            },
        ];
        for algorithm in algorithms {
            forged_token_refused_as_token(&f, algorithm).await;
        }
    }

    async fn forged_token_refused_as_token(f: &Fixture, algorithm: ssh_key::Algorithm) {
        let user = ssh_key::PrivateKey::random(&mut rand_core::OsRng, algorithm).expect("key");
        let blob = user.public_key().to_bytes().expect("blob");
        let nonce = ca_proto::nonce_for_key(&blob);
        let good = token(&f.issuer_key, &nonce);
        let forged = token(&ed25519_dalek::SigningKey::from_bytes(&[8; 32]), &nonce);
        let proof_for = |token: &str| {
            user.sign(
                ca_proto::PROOF_NAMESPACE,
                ssh_key::HashAlg::Sha512,
                &ca_proto::proof_message(token, &blob),
            )
            .expect("sign")
            .to_pem(ssh_key::LineEnding::LF)
            .expect("pem")
        };
        let cases = [
            (&forged, proof_for(&forged), "invalid_token"),
            (&forged, proof_for(&good), "invalid_token"),
            (&forged, "not a proof".to_string(), "invalid_token"),
            (&good, proof_for(&forged), "invalid_proof"),
        ];
        for (token, proof, code) in cases {
            let body = serde_json::to_string(&UserCertRequest {
                public_key: user.public_key().to_openssh().expect("line"),
                principals: vec![],
                ttl: None,
                proof,
            })
            .expect("json");
            let request = Request::post("/v1/certs/user")
                .header("content-type", "application/json")
                .header("authorization", format!("Bearer {token}"))
                .body(Body::from(body))
                .expect("request");
            let (status, _, body) = send(&f.router, request).await;
            assert_eq!(
                (status, error_code(&body).as_str()),
                (StatusCode::UNAUTHORIZED, code)
            );
        }
    }

    /// People of the request tests, by name: (user, groups).
    const BOB: (&str, &[&str]) = ("bob", &["sre"]);
    const ALICE: (&str, &[&str]) = ("alice", &["eng"]);
    const CAROL: (&str, &[&str]) = ("carol", &["sre-leads"]);
    const ADA: (&str, &[&str]) = ("ada", &["admins"]);

    impl Fixture {
        /// A fresh token of `who` (unique, so that each may be spent).
        fn token_of(&self, who: (&str, &[&str])) -> String {
            user_token(&self.issuer_key, &new_request_id(), who.0, who.1)
        }

        async fn call(
            &self,
            method: &str,
            path: &str,
            bearer: Option<&str>,
            body: Value,
        ) -> (StatusCode, Value) {
            let mut request = Request::builder()
                .method(method)
                .uri(path)
                .header("content-type", "application/json");
            if let Some(token) = bearer {
                request = request.header("authorization", format!("Bearer {token}"));
            }
            let body = if method == "GET" {
                Body::empty()
            } else {
                Body::from(body.to_string())
            };
            let (status, _, bytes) = send(&self.router, request.body(body).expect("request")).await;
            (
                status,
                serde_json::from_slice(&bytes).unwrap_or(Value::Null),
            )
        }

        /// POSTs `body` to `path` with a fresh token of `who`; the status and
        /// the JSON answer.
        async fn post_as(
            &self,
            who: (&str, &[&str]),
            path: &str,
            body: Value,
        ) -> (StatusCode, Value) {
            let token = self.token_of(who);
            self.call("POST", path, Some(&token), body).await
        }

        async fn list_as(&self, who: (&str, &[&str]), query: &str) -> Vec<u64> {
            let token = self.token_of(who);
            let (status, body) = self
                .call(
                    "GET",
                    &format!("/v1/requests{query}"),
                    Some(&token),
                    json!({}),
                )
                .await;
            assert_eq!(status, StatusCode::OK, "{body}");
            body["requests"]
                .as_array()
                .expect("requests")
                .iter()
                .map(|r| r["id"].as_u64().expect("id"))
                .collect()
        }

        async fn create(&self, who: (&str, &[&str]), extra: Value) -> (StatusCode, Value) {
            let mut body = json!({"principals": ["root"], "reason": "INC-1"});
            if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
                body.extend(extra.clone());
            }
            self.post_as(who, "/v1/requests", body).await
        }
    }

    fn code(answer: &(StatusCode, Value)) -> (StatusCode, &str) {
        (
            answer.0,
            answer.1["error"]["code"].as_str().unwrap_or_default(),
        )
    }

    #[tokio::test]
    async fn request_endpoints_check_the_token_first() {
        let f = fixture().await;
        let body = json!({"principals": ["root"], "reason": "x"});
        let decision = json!({"reason": "x"});
        for (method, path, body) in [
            ("POST", "/v1/requests", &body),
            ("GET", "/v1/requests", &body),
            ("POST", "/v1/requests/1/approve", &decision),
            ("POST", "/v1/requests/1/deny", &decision),
            ("POST", "/v1/requests/1/done", &decision),
            ("POST", "/v1/requests/1/review", &decision),
        ] {
            let missing = f.call(method, path, None, body.clone()).await;
            assert_eq!(
                code(&missing),
                (StatusCode::UNAUTHORIZED, "missing_token"),
                "{method} {path}"
            );
            let forged = user_token(
                &ed25519_dalek::SigningKey::from_bytes(&[8; 32]),
                "n",
                "carol",
                &["sre-leads"],
            );
            let bad = f.call(method, path, Some(&forged), body.clone()).await;
            assert_eq!(
                code(&bad),
                (StatusCode::UNAUTHORIZED, "invalid_token"),
                "{method} {path}"
            );
        }
        // A token makes one change.
        let token = f.token_of(BOB);
        let created = f
            .call("POST", "/v1/requests", Some(&token), body.clone())
            .await;
        assert_eq!(created.0, StatusCode::OK, "{}", created.1);
        let again = f.call("POST", "/v1/requests", Some(&token), body).await;
        assert_eq!(code(&again), (StatusCode::UNAUTHORIZED, "replayed_token"));
        // Ids are numbers; unknown ids are 404.
        let word = f
            .post_as(CAROL, "/v1/requests/seven/approve", json!({}))
            .await;
        assert_eq!(code(&word), (StatusCode::BAD_REQUEST, "invalid_request"));
        let unknown = f
            .post_as(CAROL, "/v1/requests/999/approve", json!({}))
            .await;
        assert_eq!(code(&unknown), (StatusCode::NOT_FOUND, "unknown_request"));
        let unknown_field = f
            .post_as(CAROL, "/v1/requests/1/approve", json!({"approve": true}))
            .await;
        assert_eq!(
            code(&unknown_field),
            (StatusCode::BAD_REQUEST, "invalid_request")
        );
    }

    #[tokio::test]
    async fn create_approve_deny_and_done_answer_stable_codes() {
        let f = fixture().await;
        let refused = f.create(ALICE, json!({})).await;
        assert_eq!(code(&refused), (StatusCode::FORBIDDEN, "not_requestable"));
        let no_reason = f.create(BOB, json!({"reason": ""})).await;
        assert_eq!(
            code(&no_reason),
            (StatusCode::BAD_REQUEST, "invalid_request")
        );
        let too_long = f.create(BOB, json!({"for": "2h"})).await;
        assert_eq!(
            code(&too_long),
            (StatusCode::BAD_REQUEST, "invalid_request")
        );

        let created = f.create(BOB, json!({"for": "30m"})).await;
        assert_eq!(created.0, StatusCode::OK, "{}", created.1);
        assert_eq!(created.1["status"], "pending");
        let id = created.1["id"].as_u64().expect("id");
        let at = |verb: &str| format!("/v1/requests/{id}/{verb}");
        // carol may decide it and sees it; alice does not.
        assert_eq!(f.list_as(CAROL, "?pending=true").await, [id]);
        assert!(f.list_as(ALICE, "").await.is_empty());
        assert_eq!(f.list_as(BOB, "").await, [id]);

        let not_approver = f.post_as(ALICE, &at("approve"), json!({})).await;
        assert_eq!(code(&not_approver), (StatusCode::FORBIDDEN, "not_approver"));
        let own = f.post_as(BOB, &at("approve"), json!({})).await;
        assert_eq!(code(&own), (StatusCode::FORBIDDEN, "own_request"));
        let no_deny_reason = f.post_as(CAROL, &at("deny"), json!({})).await;
        assert_eq!(
            code(&no_deny_reason),
            (StatusCode::BAD_REQUEST, "invalid_request")
        );
        let approved = f
            .post_as(CAROL, &at("approve"), json!({"comment": "ok"}))
            .await;
        assert_eq!(approved.0, StatusCode::OK, "{}", approved.1);
        assert_eq!(approved.1["status"], "approved");
        for (verb, body) in [("approve", json!({})), ("deny", json!({"reason": "no"}))] {
            let decided = f.post_as(CAROL, &at(verb), body).await;
            assert_eq!(
                code(&decided),
                (StatusCode::CONFLICT, "not_pending"),
                "{verb}"
            );
        }
        let not_requester = f.post_as(ALICE, &at("done"), json!({})).await;
        assert_eq!(
            code(&not_requester),
            (StatusCode::FORBIDDEN, "not_requester")
        );
        let done = f.post_as(BOB, &at("done"), json!({})).await;
        assert_eq!(done.0, StatusCode::OK, "{}", done.1);
        assert_eq!(done.1["status"], "ended");
        let closed = f.post_as(ADA, &at("done"), json!({})).await;
        assert_eq!(code(&closed), (StatusCode::CONFLICT, "request_closed"));

        // Denied by an approver: closed for everyone.
        let second = f.create(BOB, json!({})).await;
        let second = second.1["id"].as_u64().expect("id");
        let denied = f
            .post_as(
                CAROL,
                &format!("/v1/requests/{second}/deny"),
                json!({"reason": "use the runbook"}),
            )
            .await;
        assert_eq!(denied.1["status"], "denied");
        let late = f
            .post_as(CAROL, &format!("/v1/requests/{second}/approve"), json!({}))
            .await;
        assert_eq!(code(&late), (StatusCode::CONFLICT, "not_pending"));
    }

    #[tokio::test]
    async fn an_expired_request_can_no_longer_be_decided() {
        let f = fixture_with(Duration::from_secs(1)).await;
        let created = f.create(BOB, json!({})).await;
        let id = created.1["id"].as_u64().expect("id");
        tokio::time::sleep(Duration::from_millis(2100)).await;
        let late = f
            .post_as(CAROL, &format!("/v1/requests/{id}/approve"), json!({}))
            .await;
        assert_eq!(code(&late), (StatusCode::CONFLICT, "not_pending"));
        assert!(late.1["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("expired"));
    }

    #[tokio::test]
    async fn break_glass_review_answers_stable_codes() {
        let f = fixture().await;
        let no_reason = f
            .create(BOB, json!({"break_glass": true, "reason": " "}))
            .await;
        assert_eq!(
            code(&no_reason),
            (StatusCode::BAD_REQUEST, "invalid_request")
        );
        let glass = f
            .create(BOB, json!({"break_glass": true, "reason": "INC-9: down"}))
            .await;
        assert_eq!(glass.0, StatusCode::OK, "{}", glass.1);
        assert_eq!(glass.1["status"], "approved");
        assert_eq!(glass.1["needs_review"], true);
        let id = glass.1["id"].as_u64().expect("id");
        let review = format!("/v1/requests/{id}/review");
        // Approvers and admins see it; nobody else, not even its requester.
        assert_eq!(f.list_as(CAROL, "?needs_review=true").await, [id]);
        assert_eq!(f.list_as(ADA, "?needs_review=true").await, [id]);
        assert!(f.list_as(ALICE, "?needs_review=true").await.is_empty());
        assert!(f.list_as(BOB, "?needs_review=true").await.is_empty());

        let outsider = f.post_as(ALICE, &review, json!({})).await;
        assert_eq!(code(&outsider), (StatusCode::FORBIDDEN, "not_reviewer"));
        let own = f.post_as(BOB, &review, json!({})).await;
        assert_eq!(code(&own), (StatusCode::FORBIDDEN, "own_request"));
        let reviewed = f
            .post_as(ADA, &review, json!({"comment": "justified"}))
            .await;
        assert_eq!(reviewed.0, StatusCode::OK, "{}", reviewed.1);
        assert_eq!(reviewed.1["reviewed_by"], "ada@corp");
        let twice = f.post_as(CAROL, &review, json!({})).await;
        assert_eq!(code(&twice), (StatusCode::CONFLICT, "already_reviewed"));
        assert!(f.list_as(CAROL, "?needs_review=true").await.is_empty());

        let ordinary = f.create(BOB, json!({})).await;
        let ordinary = ordinary.1["id"].as_u64().expect("id");
        let nothing = f
            .post_as(CAROL, &format!("/v1/requests/{ordinary}/review"), json!({}))
            .await;
        assert_eq!(code(&nothing), (StatusCode::CONFLICT, "not_break_glass"));
        let start = f
            .create(BOB, json!({"start": "2001-01-01T00:00:00Z"}))
            .await;
        assert_eq!(code(&start), (StatusCode::BAD_REQUEST, "invalid_request"));
    }

    #[tokio::test]
    async fn a_principal_needing_approval_is_approval_required_not_denied() {
        let f = fixture().await;
        let user = ssh_key::PrivateKey::random(&mut rand_core::OsRng, ssh_key::Algorithm::Ed25519)
            .expect("key");
        let blob = user.public_key().to_bytes().expect("blob");
        let ask = |principals: &[&str]| {
            let token = user_token(&f.issuer_key, &ca_proto::nonce_for_key(&blob), BOB.0, BOB.1);
            let proof = user
                .sign(
                    ca_proto::PROOF_NAMESPACE,
                    ssh_key::HashAlg::Sha512,
                    &ca_proto::proof_message(&token, &blob),
                )
                .expect("sign")
                .to_pem(ssh_key::LineEnding::LF)
                .expect("pem");
            let body = serde_json::to_string(&UserCertRequest {
                public_key: user.public_key().to_openssh().expect("line"),
                principals: principals.iter().map(|p| p.to_string()).collect(),
                ttl: None,
                proof,
            })
            .expect("json");
            Request::post("/v1/certs/user")
                .header("content-type", "application/json")
                .header("authorization", format!("Bearer {token}"))
                .body(Body::from(body))
                .expect("request")
        };
        let (status, _, body) = send(&f.router, ask(&["root"])).await;
        assert_eq!(
            (status, error_code(&body).as_str()),
            (StatusCode::FORBIDDEN, "approval_required")
        );
        let message = String::from_utf8_lossy(&body).to_string();
        assert!(
            message.contains("jit-ssh request --principal root --reason"),
            "{message}"
        );
        // Another principal that nothing grants makes it a plain denial.
        let (status, _, body) = send(&f.router, ask(&["root", "postgres"])).await;
        assert_eq!(
            (status, error_code(&body).as_str()),
            (StatusCode::FORBIDDEN, "denied")
        );
        // The metric counts it under its own code.
        let (_, _, metrics) = send(&f.router, get("/metrics")).await;
        assert!(
            String::from_utf8_lossy(&metrics).contains("approval_required"),
            "metrics lack the code"
        );
    }
}
