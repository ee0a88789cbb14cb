//! The KRL and the revocation endpoints: an administrator's revoke and lift,
//! and an owner's revocation of their own certificate (signed by its key, no
//! token).

use axum::extract::State;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;
use ca_proto::{OwnRevocationRequest, RevocationRequest, RevocationResponse};

use crate::authority::RevocationChange;

use super::{ApiError, AppState, Caller, ClientAddr, JsonBody};

pub(super) async fn krl(State(state): State<AppState>) -> Result<Response, ApiError> {
    let krl = state.authority.krl(crate::unix_now()).await?;
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

pub(super) async fn revoke(
    state: State<AppState>,
    caller: Caller,
    body: JsonBody<RevocationRequest>,
) -> Result<Json<RevocationResponse>, ApiError> {
    admin_revocation(state, caller, body, RevocationChange::Revoke).await
}

pub(super) async fn lift(
    state: State<AppState>,
    caller: Caller,
    body: JsonBody<RevocationRequest>,
) -> Result<Json<RevocationResponse>, ApiError> {
    admin_revocation(state, caller, body, RevocationChange::Lift).await
}

async fn admin_revocation(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(request): JsonBody<RevocationRequest>,
    change: RevocationChange,
) -> Result<Json<RevocationResponse>, ApiError> {
    let changed = state
        .authority
        .admin_revocation(
            &caller.token,
            request,
            change,
            caller.addr,
            crate::unix_now(),
        )
        .await?;
    Ok(Json(changed))
}

pub(super) async fn revoke_own(
    State(state): State<AppState>,
    ClientAddr(addr): ClientAddr,
    JsonBody(request): JsonBody<OwnRevocationRequest>,
) -> Result<Json<RevocationResponse>, ApiError> {
    let revoked = state
        .authority
        .revoke_own(request, addr, crate::unix_now())
        .await?;
    Ok(Json(revoked))
}
