//! Extractors that refuse before a handler runs, each with an [`ApiError`]
//! as its rejection: the client address under its rate limit, the
//! authenticated [`Caller`], a JSON body, an access request id.
//!
//! [`Caller`] fixes the order in which an authenticated request is refused:
//! the address's rate limit, then the in-flight limit, then the bearer
//! token; the body is read after it, by [`JsonBody`], within the body
//! deadline. (Extractors of the request's parts run before the one that
//! reads its body, so no byte of a body is read for a caller refused by
//! its address, the in-flight limit or a missing token.)

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Json, Path, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap};
use serde::de::DeserializeOwned;
use tokio::sync::OwnedSemaphorePermit;

use crate::secret::BearerToken;

use super::{ApiError, AppState};

/// The client's address, within its rate limit (checked before anything
/// else, the token included).
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub IpAddr);

impl FromRequestParts<AppState> for ClientAddr {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let ConnectInfo(peer) = ConnectInfo::<SocketAddr>::from_request_parts(parts, state)
            .await
            .map_err(|rejection| ApiError::internal(&rejection, "no client address"))?;
        state
            .rate_limits
            .check_address(peer.ip())
            .map_err(ApiError::address_rate_limited)?;
        Ok(ClientAddr(peer.ip()))
    }
}

/// Someone calling with an ID token as `Authorization: Bearer`: within the
/// address's rate limit, holding one permit of the in-flight limit for as
/// long as the request runs. The token is not verified yet; the authority
/// does that.
#[derive(Debug)]
pub struct Caller {
    /// The client's address.
    pub addr: IpAddr,
    /// The ID token as sent.
    pub token: BearerToken,
    _permit: OwnedSemaphorePermit,
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let ClientAddr(addr) = ClientAddr::from_request_parts(parts, state).await?;
        // At its limit the CA answers at once rather than queueing: a client
        // retrying later costs less than a request that waits out its timeout.
        let permit = state
            .in_flight
            .clone()
            .try_acquire_owned()
            .map_err(|_| ApiError::overloaded())?;
        let token = bearer_token(&parts.headers)?;
        Ok(Caller {
            addr,
            token,
            _permit: permit,
        })
    }
}

/// A JSON request body: unreadable, oversized or with unknown fields, it is
/// refused as `invalid_request` or `body_too_large`; not all there within
/// the body deadline (`body_timeout`), as `408 body_timeout`.
#[derive(Debug)]
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, ApiError> {
        let deadline = state.connections.body_timeout;
        let read = Json::<T>::from_request(request, state);
        let Json(value) = tokio::time::timeout(deadline, read)
            .await
            .map_err(|_| ApiError::body_timeout())??;
        Ok(JsonBody(value))
    }
}

/// The `{id}` of an access request's path.
#[derive(Debug, Clone, Copy)]
pub struct RequestId(pub u64);

impl<S: Send + Sync> FromRequestParts<S> for RequestId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Path(id) = Path::<u64>::from_request_parts(parts, state)
            .await
            .map_err(|_| ApiError::invalid_request("the request id must be a decimal number"))?;
        Ok(RequestId(id))
    }
}

fn bearer_token(headers: &HeaderMap) -> Result<BearerToken, ApiError> {
    let value = headers
        .get(header::AUTHORIZATION)
        .ok_or_else(ApiError::missing_token)?
        .to_str()
        .map_err(|_| ApiError::missing_token())?;
    let (scheme, token) = value.split_once(' ').ok_or_else(ApiError::missing_token)?;
    if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
        return Err(ApiError::missing_token());
    }
    Ok(BearerToken::new(token.trim().to_string()))
}
