//! The error body of every non-2xx answer and its stable codes.
//!
//! The server picks an [`ErrorCode`] for every refusal and the client decides
//! what to tell a person from it; the message is for people only and may
//! change. Codes serialise as the same strings they always had, and a code
//! this side does not know parses as [`ErrorCode::Other`], so adding one never
//! breaks an older client.

use serde::{Deserialize, Serialize};

use crate::wire_name::wire_names;

wire_names! {
    /// Stable machine-readable code of a refusal (`docs/api.md`, "Errors").
    pub enum ErrorCode {
        /// Malformed JSON, an unknown field, or a value out of range.
        InvalidRequest = "invalid_request",
        /// `public_key` is not an OpenSSH public key, or the proof is unreadable.
        InvalidKey = "invalid_key",
        /// A key type or size the CA refuses to certify.
        WeakKey = "weak_key",
        /// `public_key` is a certificate.
        CertificateOffered = "certificate_offered",
        /// No `Authorization: Bearer` header.
        MissingToken = "missing_token",
        /// The ID token failed verification.
        InvalidToken = "invalid_token",
        /// The token names its user by email, and that email is unverified
        /// or outside the issuer's `email_domains`.
        EmailNotAccepted = "email_not_accepted",
        /// The proof of possession failed.
        InvalidProof = "invalid_proof",
        /// The ID token was already spent.
        ReplayedToken = "replayed_token",
        /// The ID token has no nonce, its issuer requires one, and the key
        /// was not certified with a nonce-bound token in the same sign-in
        /// session.
        NonceRequired = "nonce_required",
        /// The policy refused.
        Denied = "denied",
        /// The principals need an approved access request.
        ApprovalRequired = "approval_required",
        /// The identity is revoked.
        RevokedIdentity = "revoked_identity",
        /// The subject key is revoked.
        RevokedKey = "revoked_key",
        /// The caller is not an administrator.
        NotAdmin = "not_admin",
        /// The signature is not by the certificate's key.
        NotOwner = "not_owner",
        /// The policy lets the caller ask for none of these principals.
        NotRequestable = "not_requestable",
        /// The caller is not an approver of the request's rules.
        NotApprover = "not_approver",
        /// The caller made the request.
        OwnRequest = "own_request",
        /// The caller is neither the requester nor an administrator.
        NotRequester = "not_requester",
        /// A rule covering the principals does not allow break-glass.
        BreakGlassNotAllowed = "break_glass_not_allowed",
        /// The caller may not review this break-glass request.
        NotReviewer = "not_reviewer",
        /// No access request with that id.
        UnknownRequest = "unknown_request",
        /// The request is no longer pending.
        NotPending = "not_pending",
        /// The caller already approved the request.
        AlreadyApproved = "already_approved",
        /// The request is already closed.
        RequestClosed = "request_closed",
        /// The request is not a break-glass request.
        NotBreakGlass = "not_break_glass",
        /// The request was already reviewed.
        AlreadyReviewed = "already_reviewed",
        /// No certificate with that serial was issued here.
        UnknownCertificate = "unknown_certificate",
        /// Nothing to lift.
        NotRevoked = "not_revoked",
        /// No such endpoint.
        NotFound = "not_found",
        /// The body is over the size limit.
        BodyTooLarge = "body_too_large",
        /// Too many requests from this address or identity.
        RateLimited = "rate_limited",
        /// Too many requests in flight.
        Overloaded = "overloaded",
        /// The identity provider's keys could not be fetched.
        IssuerUnavailable = "issuer_unavailable",
        /// The request took too long.
        Timeout = "timeout",
        /// The database could not read or record; nothing changed.
        StoreUnavailable = "store_unavailable",
        /// A fault inside the CA; the details are in its log.
        Internal = "internal",
        /// A reason or comment holds a control character other than tab.
        InvalidText = "invalid_text",
        /// The endpoint does not take the request's method.
        MethodNotAllowed = "method_not_allowed",
        /// Too many header fields, or too many bytes of them.
        HeadersTooLarge = "headers_too_large",
        /// The request body did not arrive within the body deadline.
        BodyTimeout = "body_timeout",
        /// The ID token refers to the user's groups instead of carrying
        /// them (Entra ID's groups overage); the provider must be set up to
        /// send fewer.
        GroupsOverage = "groups_overage",
        /// The access request's policy rules changed since it was made so
        /// that approvals under them no longer count; ask again.
        RulesChanged = "rules_changed",
    }
}

/// Error body of every non-2xx response: `{"error":{"code":..,"message":..}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// A stable machine-readable `code` and a message safe to show to the user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorDetail {
    /// Stable identifier, e.g. `invalid_token`, `weak_key`, `replayed_token`.
    pub code: ErrorCode,
    /// Human-readable explanation.
    pub message: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_travels_as_its_string_and_back() {
        for code in ErrorCode::KNOWN {
            let json = serde_json::to_string(code).expect("json");
            assert_eq!(json, format!("\"{}\"", code.as_str()));
            let back: ErrorCode = serde_json::from_str(&json).expect("parse");
            assert_eq!(&back, code);
        }
        let texts: std::collections::BTreeSet<&str> =
            ErrorCode::KNOWN.iter().map(ErrorCode::as_str).collect();
        assert_eq!(texts.len(), ErrorCode::KNOWN.len(), "a string used twice");
    }

    #[test]
    fn a_code_from_a_newer_server_still_parses() {
        let body: ErrorBody =
            serde_json::from_str(r#"{"error":{"code":"quantum_flux","message":"later"}}"#)
                .expect("an unknown code must parse");
        assert_eq!(body.error.code.as_str(), "quantum_flux");
        assert!(matches!(body.error.code, ErrorCode::Other(_)));
        assert_eq!(
            serde_json::to_string(&body).expect("json"),
            r#"{"error":{"code":"quantum_flux","message":"later"}}"#
        );
        assert_eq!(ErrorCode::from("denied"), ErrorCode::Denied);
    }
}
