//! `POST /v1/certs/user`: a user certificate for the caller's ID token.

use axum::extract::State;
use axum::Json;
use ca_proto::{UserCertRequest, UserCertResponse};

use super::{ApiError, AppState, Caller, JsonBody};

pub(super) async fn issue_user_cert(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(request): JsonBody<UserCertRequest>,
) -> Result<Json<UserCertResponse>, ApiError> {
    let issued = state
        .authority
        .issue_user_certificate(&caller.token, request, caller.addr, crate::unix_now())
        .await?;
    Ok(Json(issued))
}
