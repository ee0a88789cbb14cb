//! Endpoints anyone may call, which change nothing: health, readiness,
//! the published configuration and the CA's public keys on the API's
//! listener; metrics, health and readiness on the monitoring listener.

use std::sync::atomic::Ordering;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::{ApiError, AppState};

pub(super) async fn healthz() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "ok" }))
}

/// Ready while not shutting down and while the database accepts writes
/// (the store's writer keeps `store_writable`): a CA whose every issuance
/// would fail is taken out of rotation rather than left to answer 503s.
pub(super) async fn readyz(State(state): State<AppState>) -> Response {
    let status = if !state.ready.load(Ordering::Relaxed) {
        "shutting down"
    } else if state.metrics.store_writable.get() == 0 {
        "database not accepting writes"
    } else {
        return Json(serde_json::json!({ "status": "ready" })).into_response();
    };
    (
        StatusCode::SERVICE_UNAVAILABLE,
        Json(serde_json::json!({ "status": status })),
    )
        .into_response()
}

pub(super) async fn metrics(State(state): State<AppState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(),
    )
        .into_response()
}

pub(super) async fn config(State(state): State<AppState>) -> Json<ca_proto::CaConfig> {
    Json(state.authority.published_config())
}

pub(super) async fn user_ca(State(state): State<AppState>) -> Response {
    key_lines(state.authority.user_ca_lines())
}

pub(super) async fn host_ca(State(state): State<AppState>) -> Response {
    key_lines(state.authority.host_ca_lines())
}

fn key_lines(lines: Vec<String>) -> Response {
    let mut body = lines.join("\n");
    body.push('\n');
    ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], body).into_response()
}

pub(super) async fn not_found() -> ApiError {
    ApiError::not_found()
}

pub(super) async fn method_not_allowed() -> ApiError {
    ApiError::method_not_allowed()
}
