//! Wire types of the jit-ssh CA's HTTP API (`/v1`), shared by the server and the
//! client so that both sides agree on every field and on the exact bytes of the
//! proof of possession.
//!
//! The API is documented for humans in `docs/api.md`; this crate is its
//! machine-checked form. Request bodies reject unknown fields: a client that
//! sends a field the server does not understand gets an error rather than a
//! certificate that silently ignores what it asked for.

use std::collections::BTreeMap;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

mod error;
pub mod krl;
mod wire_name;

pub use error::{ErrorBody, ErrorCode, ErrorDetail};
pub use wire_name::OtherName;

/// Authorization request parameters the client sets itself (OAuth 2.0,
/// PKCE, OpenID Connect and JAR): a CA's published `auth_params` never
/// carries one, and a client refuses a CA that does.
pub const CLIENT_AUTH_PARAMS: &[&str] = &[
    "client_id",
    "redirect_uri",
    "response_type",
    "response_mode",
    "scope",
    "state",
    "nonce",
    "code_challenge",
    "code_challenge_method",
    "request",
    "request_uri",
];

use wire_name::wire_names;

/// The SSHSIG namespace of the proof-of-possession signature.
///
/// A signature made for any other purpose (git commit signing uses `git`,
/// `ssh-keygen -Y sign` users pick their own) can never be replayed here.
pub const PROOF_NAMESPACE: &str = "jit-ssh-pop-v1@jit-ssh";

/// First line of the proof-of-possession message; versions the format.
const PROOF_HEADER: &str = "jit-ssh-pop-v1";

/// `POST /v1/certs/user` request body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserCertRequest {
    /// The subject public key, one OpenSSH line (`ssh-ed25519 AAAA... comment`).
    pub public_key: String,
    /// Principals asked for; empty means "everything I am entitled to".
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub principals: Vec<String>,
    /// Requested lifetime in seconds; absent means the server's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<u64>,
    /// Armored SSHSIG (`-----BEGIN SSH SIGNATURE-----`) by the subject key over
    /// [`proof_message`] in namespace [`PROOF_NAMESPACE`].
    pub proof: String,
}

/// `POST /v1/requests` request body: ask for principals by access request.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessRequestCreate {
    /// Principals asked for; at least one.
    pub principals: Vec<String>,
    /// Why (required when the policy says so).
    #[serde(default)]
    pub reason: String,
    /// Window length in seconds; absent means the policy's `max_window`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_seconds: Option<u64>,
    /// Deprecated: the window as a duration string (`"for": "30m"`), as
    /// clients before `window_seconds` send it. Still accepted; giving both
    /// is refused.
    #[serde(default, rename = "for", skip_serializing_if = "Option::is_none")]
    pub deprecated_for: Option<String>,
    /// Approve it at once as its requester (only under rules with
    /// `break_glass = true`; a reason is then required). It is flagged for
    /// review.
    #[serde(default, skip_serializing_if = "is_false")]
    pub break_glass: bool,
    /// Open the window no earlier than this RFC 3339 time (at most 60 s in
    /// the past, at most 7 days ahead).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<String>,
    /// Open the window with the first certificate that carries the
    /// principals; an approved grant nobody uses lapses after the pending
    /// time.
    #[serde(default, skip_serializing_if = "is_false")]
    pub from_first_use: bool,
}

fn is_false(value: &bool) -> bool {
    !*value
}

/// `POST /v1/requests/{id}/approve`, `/deny` and `/done` request body.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessRequestDecision {
    /// Comment on an approval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    /// Reason for a denial (required) or for ending early.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// One approval of an access request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessApproval {
    /// `user@issuer` of the approver.
    pub approver: String,
    /// When, seconds since the Unix epoch.
    pub at: u64,
    /// Comment (may be empty).
    pub comment: String,
}

wire_names! {
    /// Where an access request stands, as of an answer.
    pub enum RequestStatus {
        /// Waiting for approvals.
        Pending = "pending",
        /// Approved (its window may not be open yet).
        Approved = "approved",
        /// Denied by an approver.
        Denied = "denied",
        /// Nobody decided in time, or an approved grant went unused.
        Expired = "expired",
        /// The window closed, or it was ended early.
        Ended = "ended",
    }
}

/// An access request, as every `/v1/requests` endpoint returns it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessRequestView {
    /// Identifier (`jit-ssh approve ID`).
    pub id: u64,
    /// `user@issuer` of the requester.
    pub requester: String,
    /// Principals asked for.
    pub principals: Vec<String>,
    /// Why.
    pub reason: String,
    /// Window length in seconds.
    pub window_seconds: u64,
    /// Where it stands, as of the answer.
    pub status: RequestStatus,
    /// When it was made.
    pub created_at: u64,
    /// When it expires unless decided.
    pub expires_at: u64,
    /// Start of the window, once approved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_start: Option<u64>,
    /// End of the window, once approved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_end: Option<u64>,
    /// The window opens no earlier than this (scheduled).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub starts_at: Option<u64>,
    /// The window opens with the first certificate under it; until then an
    /// approved request has no `window_start`/`window_end`.
    #[serde(default, skip_serializing_if = "is_false")]
    pub from_first_use: bool,
    /// Approvals so far.
    pub approvals: Vec<AccessApproval>,
    /// Who denied or ended it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub closed_by: Option<String>,
    /// Why it was denied or ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub closed_reason: Option<String>,
    /// Serials revoked by ending it (only in the answer to `done`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub revoked_serials: Vec<String>,
    /// Approved by its requester alone (break-glass).
    #[serde(default, skip_serializing_if = "is_false")]
    pub break_glass: bool,
    /// A break-glass request nobody has reviewed yet.
    #[serde(default, skip_serializing_if = "is_false")]
    pub needs_review: bool,
    /// Who reviewed it (break-glass only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reviewed_by: Option<String>,
    /// When it was reviewed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reviewed_at: Option<u64>,
    /// The reviewer's comment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub review_comment: Option<String>,
}

/// `GET /v1/requests` success body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessRequestList {
    /// Newest first.
    pub requests: Vec<AccessRequestView>,
}

/// `POST /v1/certs/user` success body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserCertResponse {
    /// The certificate, one OpenSSH line (`ssh-ed25519-cert-v01@openssh.com AAAA...`).
    pub certificate: String,
    /// Certificate serial as a decimal string (64-bit values do not survive
    /// JSON numbers in every language).
    pub serial: String,
    /// The key ID written into the certificate; sshd logs it on every login.
    pub key_id: String,
    /// Principals the certificate carries.
    pub principals: Vec<String>,
    /// Start of validity, seconds since the Unix epoch.
    pub valid_after: u64,
    /// End of validity (exclusive), seconds since the Unix epoch.
    pub valid_before: u64,
    /// Things the client should tell its user: principals the policy grants
    /// but left out of this certificate because their restrictions differ
    /// (a forced command, source addresses), and how to ask for them.
    /// Absent when there is nothing to say.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

/// `GET /v1/config` body: everything a client needs to log in with no other
/// configuration than the CA's URL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaConfig {
    /// Identity providers whose ID tokens this CA accepts.
    pub issuers: Vec<IssuerInfo>,
    /// Every trusted user-CA public key, OpenSSH lines; the first signs.
    pub user_ca_keys: Vec<String>,
    /// Every trusted host-CA public key, OpenSSH lines; the first signs.
    pub host_ca_keys: Vec<String>,
    /// Namespace of the proof-of-possession signature ([`PROOF_NAMESPACE`]).
    pub proof_namespace: String,
    /// Lifetime the CA gives when the client does not ask, in seconds.
    pub default_ttl: u64,
    /// Longest lifetime the CA ever gives, in seconds.
    pub max_ttl: u64,
    /// OpenSSH host patterns of the hosts that trust this CA (`[client]
    /// ssh_hosts`): `jit-ssh ssh-config` scopes its `Match` block to them.
    /// Empty when the CA's operators did not say; absent from older CAs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ssh_hosts: Vec<String>,
}

/// One trusted OpenID provider as published to clients.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IssuerInfo {
    /// Short name used in key IDs, audit records and `jit-ssh login --issuer`.
    pub name: String,
    /// The issuer URL (`iss`), also the base of OpenID discovery.
    pub issuer: String,
    /// OAuth client ID the client must use; ID tokens must carry it in `aud`.
    pub client_id: String,
    /// Scopes clients should request.
    pub scopes: Vec<String>,
    /// Extra parameters of the browser sign-in's authorization request, such
    /// as `prompt=consent`, without which strict providers (OpenID Connect
    /// Core §11) grant no refresh token, or Google's `access_type=offline`.
    /// Never one the client sets itself (`client_id`, `redirect_uri`,
    /// `scope`, `state`, `nonce`, PKCE, `response_type`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub auth_params: BTreeMap<String, String>,
    /// The client secret of an installed-app (public) client whose provider
    /// requires one at its token endpoint although it is not confidential
    /// (Google). It is published to every client, so it is no credential:
    /// neither the CA nor the client relies on it for anything.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_client_secret: Option<String>,
}

/// SSHSIG namespace of an owner's request to revoke their own certificate.
pub const OWN_REVOCATION_NAMESPACE: &str = "jit-ssh-revoke-v1@jit-ssh";

/// `POST /v1/revocations` (revoke) and `POST /v1/revocations/lift`
/// (unrevoke) request body: exactly one target and a reason. Admin only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevocationRequest {
    /// One certificate, by decimal serial.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serial: Option<String>,
    /// Every unexpired certificate of `user@issuer`, and no new ones until lifted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<String>,
    /// Every certificate for the key `SHA256:...`, and no new ones until lifted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_fingerprint: Option<String>,
    /// Why; recorded in the audit log.
    pub reason: String,
}

/// `POST /v1/revocations/own` request body: the holder of a certificate's
/// key revokes that certificate, without an ID token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OwnRevocationRequest {
    /// The certificate's decimal serial.
    pub serial: String,
    /// Armored SSHSIG by the certificate's key over
    /// [`own_revocation_message`] in namespace [`OWN_REVOCATION_NAMESPACE`].
    pub signature: String,
}

/// Success body of the revocation endpoints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevocationResponse {
    /// `serial`, `identity` or `key`.
    pub kind: String,
    /// The serial, identity or fingerprint.
    pub value: String,
    /// Serials now listed in the KRL because of this call (revocations only).
    pub revoked_serials: Vec<String>,
    /// The KRL version that includes this change.
    pub krl_version: u64,
}

/// The exact bytes signed to revoke one's own certificate:
///
/// ```text
/// jit-ssh-revoke-v1\n
/// <decimal serial>\n
/// ```
///
/// Replaying it can only revoke that same certificate again.
pub fn own_revocation_message(serial: &str) -> Vec<u8> {
    format!("jit-ssh-revoke-v1\n{serial}\n").into_bytes()
}

/// The OIDC `nonce` a client must request for a given subject key:
/// base64url (no padding) of SHA-256 over the key's SSH wire-format blob.
///
/// Binding the nonce to the key means an ID token obtained for one key cannot
/// certify another, even before its single use is recorded.
pub fn nonce_for_key(public_key_blob: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(public_key_blob))
}

/// SHA-256 of the ID token's compact serialisation, as base64url without padding.
pub fn token_digest(id_token: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(id_token.as_bytes()))
}

/// The exact bytes the subject key signs as proof of possession:
///
/// ```text
/// jit-ssh-pop-v1\n
/// <base64url(SHA-256(id_token))>\n
/// <base64url(SHA-256(public key blob))>\n
/// ```
pub fn proof_message(id_token: &str, public_key_blob: &[u8]) -> Vec<u8> {
    format!(
        "{PROOF_HEADER}\n{}\n{}\n",
        token_digest(id_token),
        nonce_for_key(public_key_blob)
    )
    .into_bytes()
}

/// Whether a URL host (as `url::Url::host_str` spells it) is loopback, the
/// only place where the CA, the identity provider or a webhook may be plain
/// http. Compared whole: `localhost.example.com` is not loopback.
pub fn is_loopback_host(host: Option<&str>) -> bool {
    matches!(host, Some("127.0.0.1" | "localhost" | "[::1]"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proof_message_binds_token_and_key() {
        let a = proof_message("token-a", b"key-1");
        assert_eq!(a, proof_message("token-a", b"key-1"));
        assert_ne!(a, proof_message("token-b", b"key-1"));
        assert_ne!(a, proof_message("token-a", b"key-2"));
        let text = String::from_utf8(a).expect("ascii");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "jit-ssh-pop-v1");
        assert_eq!(lines[2], nonce_for_key(b"key-1"));
        assert!(text.ends_with('\n'));
    }

    #[test]
    fn nonce_is_base64url_sha256() {
        // SHA-256("") = e3b0c442...; base64url without padding is 43 characters.
        assert_eq!(
            nonce_for_key(b""),
            "47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU"
        );
    }

    #[test]
    fn access_request_fields_are_optional_and_omitted_when_unset() {
        let old: AccessRequestCreate =
            serde_json::from_str(r#"{"principals":["root"],"reason":"r"}"#).expect("parse");
        assert!(!old.break_glass && !old.from_first_use && old.start.is_none());
        let text = serde_json::to_string(&old).expect("json");
        assert_eq!(text, r#"{"principals":["root"],"reason":"r"}"#);
        let new: AccessRequestCreate = serde_json::from_str(
            r#"{"principals":["root"],"break_glass":true,"start":"2026-12-01T09:00:00Z"}"#,
        )
        .expect("parse");
        assert!(new.break_glass);
        assert_eq!(new.start.as_deref(), Some("2026-12-01T09:00:00Z"));
    }

    #[test]
    fn the_window_travels_in_seconds_and_the_old_string_still_parses() {
        let new = AccessRequestCreate {
            principals: vec!["root".into()],
            window_seconds: Some(1800),
            ..AccessRequestCreate::default()
        };
        let text = serde_json::to_string(&new).expect("json");
        assert_eq!(
            text,
            r#"{"principals":["root"],"reason":"","window_seconds":1800}"#
        );
        let old: AccessRequestCreate =
            serde_json::from_str(r#"{"principals":["root"],"for":"30m"}"#).expect("parse");
        assert_eq!(old.deprecated_for.as_deref(), Some("30m"));
        assert_eq!(old.window_seconds, None);
    }

    #[test]
    fn statuses_travel_as_their_strings() {
        for status in RequestStatus::KNOWN {
            let json = serde_json::to_string(status).expect("json");
            assert_eq!(json, format!("\"{status}\""));
            assert_eq!(
                &serde_json::from_str::<RequestStatus>(&json).expect("parse"),
                status
            );
        }
        let later: RequestStatus = serde_json::from_str("\"archived\"").expect("parse");
        assert_eq!(later.as_str(), "archived");
        assert_eq!(RequestStatus::from("pending"), RequestStatus::Pending);
    }

    #[test]
    fn request_rejects_unknown_fields() {
        let err = serde_json::from_str::<UserCertRequest>(
            r#"{"public_key":"k","proof":"p","force_command":"sh"}"#,
        )
        .expect_err("unknown field must be refused");
        assert!(err.to_string().contains("force_command"));
    }
}
