//! The access request endpoints: create, list, and the four changes
//! (approve, deny, done, review) of one request.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::routing::{post, MethodRouter};
use axum::Json;
use ca_proto::{AccessRequestCreate, AccessRequestDecision, AccessRequestList, AccessRequestView};

use crate::authority::AccessVerb;

use super::caller::RequestId;
use super::{ApiError, AppState, Caller, JsonBody};

pub(super) async fn create(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(request): JsonBody<AccessRequestCreate>,
) -> Result<Json<AccessRequestView>, ApiError> {
    let created = state
        .authority
        .create_access_request(&caller.token, request, caller.addr, crate::unix_now())
        .await?;
    Ok(Json(created))
}

/// Query of `GET /v1/requests`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ListQuery {
    #[serde(default)]
    pending: bool,
    /// Only unreviewed break-glass requests the caller may review.
    #[serde(default)]
    needs_review: bool,
}

pub(super) async fn list(
    State(state): State<AppState>,
    caller: Caller,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<AccessRequestList>, ApiError> {
    let Query(query) =
        query.map_err(|rejection| ApiError::invalid_request(rejection.body_text()))?;
    let now = crate::unix_now();
    let requests = if query.needs_review {
        state
            .authority
            .unreviewed_access_requests(&caller.token, caller.addr, now)
            .await?
    } else {
        state
            .authority
            .list_access_requests(&caller.token, query.pending, caller.addr, now)
            .await?
    };
    Ok(Json(AccessRequestList { requests }))
}

/// The route of one change to a request: `POST /v1/requests/{id}/<verb>`.
pub(super) fn decide(verb: AccessVerb) -> MethodRouter<AppState> {
    post(
        move |State(state): State<AppState>,
              caller: Caller,
              RequestId(id): RequestId,
              JsonBody(body): JsonBody<AccessRequestDecision>| async move {
            let changed = state
                .authority
                .decide_access_request(
                    &caller.token,
                    id,
                    verb,
                    body,
                    caller.addr,
                    crate::unix_now(),
                )
                .await?;
            Ok::<_, ApiError>(Json(changed))
        },
    )
}
