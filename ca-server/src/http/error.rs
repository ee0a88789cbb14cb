//! Every refusal as HTTP: status, stable [`ErrorCode`] and message, decided
//! here once per error, with no catch-all over domain errors, so that a new
//! variant forces a decision.
//!
//! 4xx answers carry the domain's message, which is safe to show; 5xx
//! answers carry a generic one, and the cause goes to the log.

use axum::extract::rejection::JsonRejection;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use ca_proto::{ErrorBody, ErrorCode, ErrorDetail};

use crate::access::{CreateRefusal, RequestError};
use crate::authority::{AccessError, AuthError, IssueError, RevokeError};
use crate::oidc::TokenError;
use crate::rate_limit::RetryAfter;
use crate::store::StoreError;
use crate::subject_key::KeyRejection;

use super::{MAX_BODY_BYTES, MAX_HEADERS, MAX_HEADER_BYTES};

/// A refusal on its way to the client.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: ErrorCode,
    message: String,
    /// Sent as `Retry-After` (rate limits).
    retry_after: Option<RetryAfter>,
}

/// The code of a refused response, for the metrics middleware.
#[derive(Debug, Clone)]
pub(super) struct Refused(pub ErrorCode);

impl ApiError {
    fn new(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    /// No `Authorization: Bearer` header.
    pub fn missing_token() -> ApiError {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            ErrorCode::MissingToken,
            "send the ID token as `Authorization: Bearer <token>`",
        )
    }

    /// Too many requests from this client address.
    pub fn address_rate_limited(wait: RetryAfter) -> ApiError {
        ApiError {
            retry_after: Some(wait),
            ..ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                ErrorCode::RateLimited,
                format!(
                    "too many requests from this address; retry in {}s",
                    wait.seconds()
                ),
            )
        }
    }

    /// Too many requests in flight.
    pub fn overloaded() -> ApiError {
        ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::Overloaded,
            "the CA is at its limit of requests in flight; retry shortly",
        )
    }

    /// The request took longer than the configured timeout.
    pub fn timeout() -> ApiError {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::Timeout,
            "the request took too long; retry shortly",
        )
    }

    /// The body did not arrive within the body deadline.
    pub fn body_timeout() -> ApiError {
        ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            ErrorCode::BodyTimeout,
            "the request body did not arrive in time",
        )
    }

    /// The body is, or is declared, over [`MAX_BODY_BYTES`].
    pub fn body_too_large() -> ApiError {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::BodyTooLarge,
            format!("request bodies are limited to {MAX_BODY_BYTES} bytes"),
        )
    }

    /// Too many header fields, or too many bytes of them.
    pub fn headers_too_large() -> ApiError {
        ApiError::new(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            ErrorCode::HeadersTooLarge,
            format!(
                "requests are limited to {MAX_HEADERS} header fields and {MAX_HEADER_BYTES} \
                 bytes of headers"
            ),
        )
    }

    /// A known path with a method it does not take.
    pub fn method_not_allowed() -> ApiError {
        ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            ErrorCode::MethodNotAllowed,
            "this endpoint does not take that method; see docs/api.md",
        )
    }

    /// No such route.
    pub fn not_found() -> ApiError {
        ApiError::new(
            StatusCode::NOT_FOUND,
            ErrorCode::NotFound,
            "no such endpoint; see docs/api.md",
        )
    }

    /// A request that makes no sense, with what is wrong.
    pub fn invalid_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, ErrorCode::InvalidRequest, message)
    }

    /// A request naming a host this server does not answer for (dev mode's
    /// defence against DNS rebinding), with the names it does answer for.
    pub fn misdirected(message: impl Into<String>) -> ApiError {
        ApiError::new(
            StatusCode::MISDIRECTED_REQUEST,
            ErrorCode::InvalidRequest,
            message,
        )
    }

    /// A fault of the CA itself: logged with `what`, answered generically.
    pub fn internal(error: &dyn std::fmt::Display, what: &str) -> ApiError {
        tracing::error!(%error, "{what}");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::Internal,
            "internal error",
        )
    }

    /// The database failed: answered with `message`. The store's writer
    /// logs each change between accepting writes and not, with SQLite's
    /// reason, so a full disk is one line rather than one per request; the
    /// request's own line is for debugging.
    fn store_unavailable(error: &StoreError, what: &str, message: &str) -> ApiError {
        tracing::debug!(%error, "{what}");
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::StoreUnavailable,
            message,
        )
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The stable code.
    pub fn code(&self) -> &ErrorCode {
        &self.code
    }

    /// How a use case's authentication failure answers, in its words.
    fn auth(error: &AuthError, message: String) -> ApiError {
        let (status, code) = match error {
            AuthError::Token(TokenError::IssuerUnavailable(_)) => (
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorCode::IssuerUnavailable,
            ),
            AuthError::Token(
                TokenError::Malformed(_)
                | TokenError::AccessToken(_)
                | TokenError::NotAnIdToken(_)
                | TokenError::Unsigned
                | TokenError::SymmetricAlgorithm(_)
                | TokenError::UnsupportedAlgorithm(_)
                | TokenError::CriticalHeader
                | TokenError::UntrustedIssuer
                | TokenError::UnknownKey
                | TokenError::BadSignature
                | TokenError::Expired
                | TokenError::NotYetValid
                | TokenError::IssuedInFuture
                | TokenError::WrongAudience
                | TokenError::WrongAuthorizedParty
                | TokenError::NonceMismatch
                | TokenError::MissingClaim(_)
                | TokenError::InvalidUsername,
            ) => (StatusCode::UNAUTHORIZED, ErrorCode::InvalidToken),
            // The token is genuine; the CA does not accept its address as
            // naming a user, and signing in again will not change that.
            AuthError::Token(
                TokenError::EmailNotVerified
                | TokenError::EmailDomainNotAccepted { .. }
                | TokenError::UpnDomainNotAccepted { .. },
            ) => (StatusCode::FORBIDDEN, ErrorCode::EmailNotAccepted),
            // Signing in again gives the same token: only the identity
            // provider's configuration can change the answer.
            AuthError::Token(TokenError::GroupsOverage(_)) => {
                (StatusCode::FORBIDDEN, ErrorCode::GroupsOverage)
            }
            AuthError::Replayed => (StatusCode::UNAUTHORIZED, ErrorCode::ReplayedToken),
            AuthError::RateLimited(_) => (StatusCode::TOO_MANY_REQUESTS, ErrorCode::RateLimited),
            AuthError::RevokedIdentity(_) => (StatusCode::FORBIDDEN, ErrorCode::RevokedIdentity),
            AuthError::Store(error) => {
                return ApiError::store_unavailable(
                    error,
                    "the caller's standing could not be read",
                    &message,
                )
            }
        };
        let retry_after = match error {
            AuthError::RateLimited(wait) => Some(*wait),
            AuthError::Token(_)
            | AuthError::Replayed
            | AuthError::RevokedIdentity(_)
            | AuthError::Store(_) => None,
        };
        ApiError {
            retry_after,
            ..ApiError::new(status, code, message)
        }
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> ApiError {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::body_too_large()
        } else {
            ApiError::invalid_request(rejection.body_text())
        }
    }
}

impl From<IssueError> for ApiError {
    fn from(error: IssueError) -> ApiError {
        let message = error.to_string();
        let (status, code) = match error {
            IssueError::InvalidRequest(_) => (StatusCode::BAD_REQUEST, ErrorCode::InvalidRequest),
            IssueError::SubjectKey(rejection) => (StatusCode::BAD_REQUEST, key_code(&rejection)),
            IssueError::Proof(_) => (StatusCode::UNAUTHORIZED, ErrorCode::InvalidProof),
            IssueError::Auth(error) => return ApiError::auth(&error, message),
            IssueError::Denied(_) => (StatusCode::FORBIDDEN, ErrorCode::Denied),
            IssueError::ApprovalRequired(_) => (StatusCode::FORBIDDEN, ErrorCode::ApprovalRequired),
            IssueError::RevokedKey(_) => (StatusCode::FORBIDDEN, ErrorCode::RevokedKey),
            IssueError::NonceRequired { .. } => {
                (StatusCode::UNAUTHORIZED, ErrorCode::NonceRequired)
            }
            IssueError::Store(error) => {
                return ApiError::store_unavailable(
                    &error,
                    "issuance not recorded; no certificate returned",
                    "the CA cannot record issuances right now; nothing was issued",
                )
            }
            IssueError::Signing(error) => return ApiError::internal(&error, "signing failed"),
        };
        ApiError::new(status, code, message)
    }
}

/// Why a subject key is refused, as a code.
fn key_code(rejection: &KeyRejection) -> ErrorCode {
    match rejection {
        KeyRejection::CertificateOffered => ErrorCode::CertificateOffered,
        KeyRejection::Dsa
        | KeyRejection::RsaSize { .. }
        | KeyRejection::RsaExponent(_)
        | KeyRejection::WeakEd25519
        | KeyRejection::Unsupported(_) => ErrorCode::WeakKey,
        KeyRejection::Malformed(_)
        | KeyRejection::EcdsaPoint(_)
        | KeyRejection::ProofMalformed(_)
        | KeyRejection::ProofWrongKey
        | KeyRejection::ProofWrongNamespace(_)
        | KeyRejection::ProofInvalid => ErrorCode::InvalidKey,
    }
}

impl From<RevokeError> for ApiError {
    fn from(error: RevokeError) -> ApiError {
        let message = error.to_string();
        let (status, code) = match error {
            RevokeError::InvalidRequest(_) => (StatusCode::BAD_REQUEST, ErrorCode::InvalidRequest),
            RevokeError::InvalidText(_) => (StatusCode::BAD_REQUEST, ErrorCode::InvalidText),
            RevokeError::Auth(error) => return ApiError::auth(&error, message),
            RevokeError::NotAdmin(_) => (StatusCode::FORBIDDEN, ErrorCode::NotAdmin),
            RevokeError::NotOwner(_) => (StatusCode::FORBIDDEN, ErrorCode::NotOwner),
            RevokeError::UnknownCertificate(_) => {
                (StatusCode::NOT_FOUND, ErrorCode::UnknownCertificate)
            }
            RevokeError::NotRevoked(_) => (StatusCode::NOT_FOUND, ErrorCode::NotRevoked),
            RevokeError::Store(error) => {
                return ApiError::store_unavailable(
                    &error,
                    "revocation store failure",
                    "the CA cannot read or record revocations right now; nothing changed",
                )
            }
            RevokeError::Signing(error) => return ApiError::internal(&error, "KRL signing failed"),
        };
        ApiError::new(status, code, message)
    }
}

impl From<AccessError> for ApiError {
    fn from(error: AccessError) -> ApiError {
        let message = error.to_string();
        let (status, code) = match error {
            AccessError::InvalidRequest(_) => (StatusCode::BAD_REQUEST, ErrorCode::InvalidRequest),
            AccessError::InvalidText(_) => (StatusCode::BAD_REQUEST, ErrorCode::InvalidText),
            AccessError::Auth(error) => return ApiError::auth(&error, message),
            AccessError::NotRequestable(_) => (StatusCode::FORBIDDEN, ErrorCode::NotRequestable),
            AccessError::NotApprover { .. } => (StatusCode::FORBIDDEN, ErrorCode::NotApprover),
            AccessError::OwnRequest => (StatusCode::FORBIDDEN, ErrorCode::OwnRequest),
            AccessError::NotRequester(_) => (StatusCode::FORBIDDEN, ErrorCode::NotRequester),
            AccessError::NotReviewer { .. } => (StatusCode::FORBIDDEN, ErrorCode::NotReviewer),
            AccessError::Refused(CreateRefusal::BreakGlassNotAllowed(_)) => {
                (StatusCode::FORBIDDEN, ErrorCode::BreakGlassNotAllowed)
            }
            AccessError::Refused(
                CreateRefusal::BreakGlassReason
                | CreateRefusal::StartInPast(_)
                | CreateRefusal::StartTooFar(_)
                | CreateRefusal::StartAndFirstUse,
            ) => (StatusCode::BAD_REQUEST, ErrorCode::InvalidRequest),
            AccessError::Unknown(_) => (StatusCode::NOT_FOUND, ErrorCode::UnknownRequest),
            AccessError::Conflict(conflict) => conflict_parts(&conflict),
            AccessError::Store(error) => {
                return ApiError::store_unavailable(
                    &error,
                    "access request store failure",
                    "the CA cannot read or record access requests right now; nothing changed",
                )
            }
        };
        ApiError::new(status, code, message)
    }
}

/// A state the access request is in that refuses the change.
fn conflict_parts(conflict: &RequestError) -> (StatusCode, ErrorCode) {
    match conflict {
        RequestError::NotPending { .. } => (StatusCode::CONFLICT, ErrorCode::NotPending),
        RequestError::AlreadyApproved(_) => (StatusCode::CONFLICT, ErrorCode::AlreadyApproved),
        RequestError::Closed { .. } => (StatusCode::CONFLICT, ErrorCode::RequestClosed),
        RequestError::NotBreakGlass(_) => (StatusCode::CONFLICT, ErrorCode::NotBreakGlass),
        RequestError::AlreadyReviewed { .. } => (StatusCode::CONFLICT, ErrorCode::AlreadyReviewed),
        RequestError::OwnReview => (StatusCode::FORBIDDEN, ErrorCode::OwnRequest),
        RequestError::RulesChanged { .. } => (StatusCode::CONFLICT, ErrorCode::RulesChanged),
        // The store reports these as their own AccessError variants.
        RequestError::Unknown(_) => (StatusCode::CONFLICT, ErrorCode::UnknownRequest),
        RequestError::OwnRequest => (StatusCode::CONFLICT, ErrorCode::OwnRequest),
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code.clone(),
                message: self.message,
            },
        };
        let mut response = (self.status, Json(body)).into_response();
        if let Some(wait) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(wait.seconds()));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response.extensions_mut().insert(Refused(self.code));
        response
    }
}
