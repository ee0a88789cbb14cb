//! The HTTP face of the CA: thin axum handlers that extract, call the
//! [`Authority`], and map the result. Errors become HTTP here and nowhere else.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::JsonRejection;
use axum::extract::{ConnectInfo, DefaultBodyLimit, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use ca_proto::{ErrorBody, ErrorDetail, UserCertRequest};
use tokio::sync::Semaphore;

use crate::authority::{Authority, IssueError};
use crate::oidc::TokenError;
use crate::secret::BearerToken;
use crate::store::StoreError;
use crate::subject_key::KeyRejection;

/// Largest request body accepted.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// Shared state of the handlers.
#[derive(Clone)]
pub struct AppState {
    /// The CA.
    pub authority: Arc<Authority>,
    /// Bounds requests in flight; beyond it the CA answers 429 at once.
    pub in_flight: Arc<Semaphore>,
    /// Longest time one issuance may take.
    pub request_timeout: Duration,
}

/// The router; tests drive it without a socket.
pub fn app(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/v1/config", get(config))
        .route("/v1/ca/user.pub", get(user_ca))
        .route("/v1/ca/host.pub", get(host_ca))
        .route("/v1/certs/user", post(issue_user_cert))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

async fn healthz() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "ok" }))
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
    /// Too many requests in flight.
    Overloaded,
    /// The request took longer than the configured timeout.
    Timeout,
    /// No such route.
    NotFound,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
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
        };
        let body = ErrorBody {
            error: ErrorDetail {
                code: code.to_string(),
                message,
            },
        };
        let mut response = (status, Json(body)).into_response();
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
        }
        response
    }
}

fn issue_error_parts(error: IssueError) -> (StatusCode, &'static str, String) {
    let message = error.to_string();
    match error {
        IssueError::InvalidRequest(_) => (StatusCode::BAD_REQUEST, "invalid_request", message),
        IssueError::SubjectKey(rejection) => {
            let code = match rejection {
                KeyRejection::CertificateOffered => "certificate_offered",
                KeyRejection::Dsa | KeyRejection::RsaSize { .. } | KeyRejection::Unsupported(_) => {
                    "weak_key"
                }
                KeyRejection::Malformed(_)
                | KeyRejection::ProofMalformed(_)
                | KeyRejection::ProofWrongKey
                | KeyRejection::ProofWrongNamespace(_)
                | KeyRejection::ProofInvalid => "invalid_key",
            };
            (StatusCode::BAD_REQUEST, code, message)
        }
        IssueError::Proof(_) => (StatusCode::UNAUTHORIZED, "invalid_proof", message),
        IssueError::Token(TokenError::IssuerUnavailable(_)) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "issuer_unavailable",
            message,
        ),
        IssueError::Token(_) => (StatusCode::UNAUTHORIZED, "invalid_token", message),
        IssueError::Replayed => (StatusCode::UNAUTHORIZED, "replayed_token", message),
        IssueError::Denied(_) => (StatusCode::FORBIDDEN, "denied", message),
        IssueError::Store(StoreError::Replayed) => {
            (StatusCode::UNAUTHORIZED, "replayed_token", message)
        }
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
