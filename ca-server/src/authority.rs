//! The certificate authority's one operation, in order: vet the subject key,
//! verify the ID token, check the proof of possession, ask the policy, sign,
//! record, and only then answer.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use ca_proto::{CaConfig, IssuerInfo, UserCertRequest, UserCertResponse, PROOF_NAMESPACE};

use crate::ca_keys::CaKeys;
use crate::cert::{self, CertificateSpec, Serial};
use crate::config::CertSettings;
use crate::identity::{is_login_name, Identity};
use crate::oidc::{TokenError, TokenVerifier};
use crate::policy::{CertRequest, Decision, Policy};
use crate::rate_limit::{RateLimits, RetryAfter};
use crate::secret::BearerToken;
use crate::store::{DenialRecord, IssuanceRecord, Store, StoreError};
use crate::subject_key::{KeyRejection, SubjectKey};
use crate::UnixTime;

/// Most principals one request may name.
pub const MAX_REQUESTED_PRINCIPALS: usize = 32;

/// Why no certificate was issued. Every variant is mapped to an HTTP status
/// in exactly one place ([`crate::http`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IssueError {
    /// The request body makes no sense.
    #[error("{0}")]
    InvalidRequest(String),
    /// The subject key is unacceptable.
    #[error(transparent)]
    SubjectKey(KeyRejection),
    /// The proof of possession failed.
    #[error(transparent)]
    Proof(KeyRejection),
    /// The ID token failed verification.
    #[error(transparent)]
    Token(TokenError),
    /// The token was already spent on another certificate.
    #[error("this ID token was already used for a certificate; get a fresh one (log in again)")]
    Replayed,
    /// Policy said no.
    #[error("{0}")]
    Denied(String),
    /// The database could not record the issuance, so nothing was issued.
    #[error("the issuance could not be recorded")]
    Store(#[source] StoreError),
    /// Signing failed.
    #[error("signing failed")]
    Signing(#[source] ssh_key::Error),
    /// This identity sent more requests than its limit allows.
    #[error("too many certificate requests for this identity; retry in {}s", .0.seconds())]
    RateLimited(RetryAfter),
}

/// The CA: verifier, policy, keys and store, wired together.
pub struct Authority {
    verifier: TokenVerifier,
    policy: Arc<dyn Policy>,
    keys: CaKeys,
    store: Store,
    certs: CertSettings,
    rate_limits: Arc<RateLimits>,
}

impl Authority {
    /// Wires the parts together.
    pub fn new(
        verifier: TokenVerifier,
        policy: Arc<dyn Policy>,
        keys: CaKeys,
        store: Store,
        certs: CertSettings,
    ) -> Self {
        Authority {
            verifier,
            policy,
            keys,
            store,
            certs,
            rate_limits: Arc::new(RateLimits::disabled()),
        }
    }

    /// Applies `limits` per identity (the per-address limit is the HTTP
    /// layer's, before any token is looked at).
    pub fn with_rate_limits(mut self, limits: Arc<RateLimits>) -> Self {
        self.rate_limits = limits;
        self
    }

    /// What `GET /v1/config` publishes.
    pub fn published_config(&self) -> CaConfig {
        CaConfig {
            issuers: self
                .verifier
                .issuers()
                .map(|i| IssuerInfo {
                    name: i.name.clone(),
                    issuer: i.issuer.clone(),
                    client_id: i.client_id.clone(),
                    scopes: i.scopes.clone(),
                })
                .collect(),
            user_ca_keys: self.keys.user.trusted_lines(),
            host_ca_keys: self.keys.host.trusted_lines(),
            proof_namespace: PROOF_NAMESPACE.into(),
            default_ttl: self.certs.default_ttl.as_secs(),
            max_ttl: self.certs.max_ttl.as_secs(),
        }
    }

    /// Trusted user-CA keys, one OpenSSH line each.
    pub fn user_ca_lines(&self) -> Vec<String> {
        self.keys.user.trusted_lines()
    }

    /// Trusted host-CA keys, one OpenSSH line each.
    pub fn host_ca_lines(&self) -> Vec<String> {
        self.keys.host.trusted_lines()
    }

    /// Issues a user certificate. Returns only after the issuance record is
    /// committed; on any error nothing was issued and the token is not spent.
    pub async fn issue_user_certificate(
        &self,
        token: &BearerToken,
        request: UserCertRequest,
        client_addr: IpAddr,
        now: UnixTime,
    ) -> Result<UserCertResponse, IssueError> {
        let cert_request = checked_request(&request, client_addr)?;
        let subject = SubjectKey::parse(&request.public_key).map_err(IssueError::SubjectKey)?;
        let verified = self
            .verifier
            .verify(token.expose_secret(), &subject.expected_nonce(), now)
            .await
            .map_err(IssueError::Token)?;
        let identity = verified.identity;
        self.rate_limits
            .check_identity(&identity.display_name())
            .map_err(IssueError::RateLimited)?;
        subject
            .verify_proof(token.expose_secret(), &request.proof)
            .map_err(IssueError::Proof)?;
        let grant = match self.policy.evaluate(&identity, &cert_request, now) {
            Decision::Allow(grant) => grant,
            Decision::Deny(denial) => {
                self.record_denial(&identity, client_addr, now, &denial.reason, &denial.rules)
                    .await?;
                return Err(IssueError::Denied(denial.reason));
            }
        };
        let signer = self.keys.user.signer();
        // A serial collision (1 in 2^64 per pair) is retried, never reused.
        for _ in 0..3 {
            let serial = Serial::random(&mut rand_core::OsRng);
            let spec = CertificateSpec {
                subject: &subject,
                identity: &identity,
                grant: &grant,
                serial,
                now,
                backdate: self.certs.backdate,
            };
            let certificate = cert::sign_user_certificate(signer, &spec, &mut rand_core::OsRng)
                .map_err(IssueError::Signing)?;
            let line = certificate.to_openssh().map_err(IssueError::Signing)?;
            let record = IssuanceRecord {
                serial: serial.to_string(),
                key_id: certificate.key_id().to_string(),
                issuer: identity.issuer_name.clone(),
                subject: identity.subject.clone(),
                identity: identity.display_name(),
                principals: grant.principals.clone(),
                valid_after: certificate.valid_after(),
                valid_before: certificate.valid_before(),
                key_fingerprint: subject.fingerprint(),
                client_addr: client_addr.to_string(),
                rule: grant.rules.join(","),
                issued_at: now,
                certificate: line.clone(),
                token_digest: verified.digest,
                token_expires_at: verified.expires_at,
            };
            match self.store.record_issuance(record).await {
                Ok(()) => {
                    tracing::info!(
                        serial = %serial,
                        identity = %identity.display_name(),
                        principals = ?grant.principals,
                        rules = %grant.rules.join(","),
                        key = %subject.fingerprint(),
                        valid_before = certificate.valid_before(),
                        client = %client_addr,
                        "issued user certificate"
                    );
                    return Ok(UserCertResponse {
                        certificate: line,
                        serial: serial.to_string(),
                        key_id: certificate.key_id().to_string(),
                        principals: grant.principals,
                        valid_after: certificate.valid_after(),
                        valid_before: certificate.valid_before(),
                    });
                }
                Err(StoreError::DuplicateSerial) => continue,
                Err(StoreError::Replayed) => {
                    self.record_denial(&identity, client_addr, now, "replayed ID token", &[])
                        .await?;
                    return Err(IssueError::Replayed);
                }
                Err(other) => return Err(IssueError::Store(other)),
            }
        }
        Err(IssueError::Store(StoreError::DuplicateSerial))
    }

    async fn record_denial(
        &self,
        identity: &Identity,
        client_addr: IpAddr,
        now: UnixTime,
        reason: &str,
        rules: &[String],
    ) -> Result<(), IssueError> {
        tracing::info!(identity = %identity.display_name(), client = %client_addr, %reason, rules = %rules.join(","), "denied certificate");
        self.store
            .record_denial(DenialRecord {
                at: now,
                identity: identity.display_name(),
                issuer: identity.issuer_name.clone(),
                client_addr: client_addr.to_string(),
                reason: reason.into(),
                rules: rules.to_vec(),
            })
            .await
            .map_err(IssueError::Store)
    }
}

fn checked_request(
    request: &UserCertRequest,
    client_addr: IpAddr,
) -> Result<CertRequest, IssueError> {
    if request.principals.len() > MAX_REQUESTED_PRINCIPALS {
        return Err(IssueError::InvalidRequest(format!(
            "at most {MAX_REQUESTED_PRINCIPALS} principals per request"
        )));
    }
    if let Some(bad) = request.principals.iter().find(|p| !is_login_name(p)) {
        return Err(IssueError::InvalidRequest(format!(
            "principal {:?} is not a valid login name",
            bad.chars().take(40).collect::<String>()
        )));
    }
    if request.ttl == Some(0) {
        return Err(IssueError::InvalidRequest(
            "ttl must be at least 1 second".into(),
        ));
    }
    let principals: BTreeSet<&String> = request.principals.iter().collect();
    Ok(CertRequest {
        principals: principals.into_iter().cloned().collect(),
        ttl: request.ttl.map(Duration::from_secs),
        client_addr,
    })
}
