//! `POST /v1/certs/user`: a user certificate for the caller's ID token. The
//! answer to a retry (the certificate its token paid for before) is marked
//! [`Retried`], so that it is not counted as an issuance.

use axum::extract::State;
use axum::response::{IntoResponse as _, Response};
use axum::Json;
use ca_proto::UserCertRequest;

use super::{ApiError, AppState, Caller, JsonBody};

/// Marks the answer to a retry of an issuance.
#[derive(Debug, Clone, Copy)]
pub(super) struct Retried;

pub(super) async fn issue_user_cert(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(request): JsonBody<UserCertRequest>,
) -> Result<Response, ApiError> {
    let issued = state
        .authority
        .issue_user_certificate(&caller.token, request, caller.addr, crate::unix_now())
        .await?;
    let mut response = Json(issued.certificate).into_response();
    if issued.retry {
        response.extensions_mut().insert(Retried);
    }
    Ok(response)
}
