//! The token endpoint (authorization code, refresh token and device code
//! grants, refresh tokens rotating on use) and token revocation (RFC 7009).

use std::sync::Arc;

use axum::extract::{Form, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq as _;

use super::{DevIdp, Session, CLIENT_ID, DEVICE_POLL_INTERVAL, REFRESH_TTL};

/// `/token` and `/revoke`.
pub(super) fn routes() -> Router<Arc<DevIdp>> {
    Router::new()
        .route("/token", post(token))
        .route("/revoke", post(revoke))
}

#[derive(Deserialize)]
struct TokenForm {
    grant_type: String,
    client_id: Option<String>,
    code: Option<String>,
    code_verifier: Option<String>,
    redirect_uri: Option<String>,
    refresh_token: Option<String>,
    device_code: Option<String>,
}

async fn token(State(idp): State<Arc<DevIdp>>, Form(form): Form<TokenForm>) -> Response {
    let now = crate::unix_now();
    if form.client_id.as_deref() != Some(CLIENT_ID) {
        return oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "unknown client_id",
        );
    }
    let invalid_grant =
        |description: &str| oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", description);
    match form.grant_type.as_str() {
        "authorization_code" => {
            let issued = form
                .code
                .as_ref()
                .and_then(|code| idp.sessions().codes.remove(code));
            let Some(issued) = issued.filter(|c| c.expires_at > now) else {
                return invalid_grant("unknown, used or expired code");
            };
            if form.redirect_uri.as_deref() != Some(issued.redirect_uri.as_str()) {
                return invalid_grant("redirect_uri differs from the authorization request");
            }
            let verifier = form.code_verifier.unwrap_or_default();
            let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
            if !bool::from(challenge.as_bytes().ct_eq(issued.code_challenge.as_bytes())) {
                return invalid_grant("PKCE code_verifier does not match the code_challenge");
            }
            idp.token_response(issued.session, now)
        }
        "refresh_token" => {
            // Refresh tokens rotate: the one presented is spent.
            let session = form
                .refresh_token
                .as_ref()
                .and_then(|token| idp.sessions().refresh.remove(token));
            match session.filter(|s| s.expires_at > now) {
                Some(session) => idp.token_response(session, now),
                None => invalid_grant("unknown, used, revoked or expired refresh token"),
            }
        }
        "urn:ietf:params:oauth:grant-type:device_code" => {
            let Some(device_code) = form.device_code else {
                return invalid_grant("device_code is required");
            };
            let mut sessions = idp.sessions();
            let Some(grant) = sessions.devices.get_mut(&device_code) else {
                return invalid_grant("unknown or used device_code");
            };
            if grant.expires_at <= now {
                sessions.devices.remove(&device_code);
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "expired_token",
                    "the device code expired",
                );
            }
            let too_soon = grant
                .last_poll
                .is_some_and(|last| now < last + DEVICE_POLL_INTERVAL);
            grant.last_poll = Some(now);
            if too_soon {
                return oauth_error(StatusCode::BAD_REQUEST, "slow_down", "polling too fast");
            }
            let Some(user) = grant.approved_by.clone() else {
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "authorization_pending",
                    "the user has not signed in yet",
                );
            };
            let scopes = grant.scopes.clone();
            sessions.devices.remove(&device_code);
            drop(sessions);
            let session = Session {
                user,
                nonce: None,
                scopes,
                auth_time: now,
                expires_at: now + REFRESH_TTL,
            };
            idp.token_response(session, now)
        }
        _ => oauth_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "use authorization_code, refresh_token or device_code",
        ),
    }
}

#[derive(Deserialize)]
struct RevokeForm {
    token: String,
}

async fn revoke(State(idp): State<Arc<DevIdp>>, Form(form): Form<RevokeForm>) -> StatusCode {
    // RFC 7009: unknown tokens are not an error.
    idp.sessions().refresh.remove(&form.token);
    StatusCode::OK
}

pub(super) fn oauth_error(status: StatusCode, code: &str, description: &str) -> Response {
    (
        status,
        Json(json!({"error": code, "error_description": description})),
    )
        .into_response()
}
