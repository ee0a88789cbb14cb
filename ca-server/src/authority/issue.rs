//! User certificate issuance, in order: vet the subject key, verify the ID
//! token, check the proof of possession, ask the policy, sign, record, and
//! only then answer. On any error nothing was issued and the token is not
//! spent. Issuance is idempotent for a token and a key: a retry with the
//! token that paid for a certificate, for the same key, is answered with
//! that certificate, byte for byte (the store's `retries.rs`); with another
//! key it is a replay.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::time::Duration;

use ca_proto::{UserCertRequest, UserCertResponse};

use crate::cert::{self, CertificateSpec};
use crate::policy::{CertRequest, Decision};
use crate::secret::BearerToken;
use crate::store::StoreError;
use crate::subject_key::{KeyRejection, ProofCheck, SubjectKey};
use crate::UnixTime;

use super::records::{self, Acting, Signed};
use super::{principals_problem, AuthError, Authenticated, Authority};

/// Most principals one request may name.
pub const MAX_REQUESTED_PRINCIPALS: usize = 32;

/// Why no certificate was issued. Every variant is mapped to an HTTP status
/// in exactly one place (`crate::http`).
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
    /// The caller could not act: token, replay, rate limit or revoked
    /// identity.
    #[error("{}", for_a_certificate(.0))]
    Auth(AuthError),
    /// Policy said no.
    #[error("{0}")]
    Denied(String),
    /// Policy said no only because the principals need an approved access
    /// request; the message names them and the command that asks.
    #[error("{0}")]
    ApprovalRequired(String),
    /// The database could not record the issuance, so nothing was issued.
    #[error("the issuance could not be recorded")]
    Store(#[source] StoreError),
    /// Signing failed.
    #[error("signing failed")]
    Signing(#[source] ssh_key::Error),
    /// The subject key is revoked.
    #[error("key {0} is revoked: log in again to certify a fresh key")]
    RevokedKey(String),
    /// The ID token has no nonce, its issuer requires one, and the key was
    /// not certified for this identity with a nonce-bound token during the
    /// issuer's sign-in session.
    #[error(
        "the ID token has no nonce, and issuer {issuer} requires one: it certifies only a key \
         {identity} certified with a nonce in the same sign-in session; sign in again \
         (jit-ssh login) to certify a fresh key"
    )]
    NonceRequired {
        /// `user@issuer`.
        identity: String,
        /// The issuer's short name.
        issuer: String,
    },
}

/// A certificate for the caller: newly issued, or, for a retry with the
/// token that paid for it, the one on record.
#[derive(Debug, Clone)]
pub struct Issued {
    /// What the caller is answered.
    pub certificate: UserCertResponse,
    /// Whether it is the answer to a retry (issued before, not now).
    pub retry: bool,
}

impl From<AuthError> for IssueError {
    fn from(error: AuthError) -> Self {
        IssueError::Auth(error)
    }
}

impl Authority {
    /// Issues a user certificate. Returns only after the issuance record is
    /// committed; on any error nothing was issued and the token is not spent.
    /// A retry with the token that paid for a certificate, for the same key,
    /// returns that certificate (and its retry is on record).
    pub async fn issue_user_certificate(
        &self,
        token: &BearerToken,
        request: UserCertRequest,
        client_addr: IpAddr,
        now: UnixTime,
    ) -> Result<Issued, IssueError> {
        let mut cert_request = checked_request(&request, client_addr)?;
        let subject = SubjectKey::parse(&request.public_key).map_err(IssueError::SubjectKey)?;
        // An Ed25519 proof's signature is checked in the token's batch (one
        // wait); another key's after the token, so that a forged token never
        // costs an RSA or ECDSA verification. Refusals keep their order:
        // token, rate limit, standing (revoked identity, spent token), proof.
        let (proof_check, proof) = match subject.proof_check(token.expose_secret(), &request.proof)
        {
            Ok(ProofCheck::Ed25519(check)) => (Some(*check), Ok(None)),
            Ok(ProofCheck::Other(proof)) => (None, Ok(Some(proof))),
            Err(refusal) => (None, Err(refusal)),
        };
        let (verified, proof_verdict) = self
            .verifier
            .verify_with(
                token.expose_secret(),
                &subject.expected_nonce(),
                now,
                proof_check,
            )
            .await
            .map_err(AuthError::Token)?;
        // The caller's standing is checked in the transaction that records
        // the certificate: a revoked identity and a spent token are refused
        // there, with the denial on record. So issuance skips admit's read of
        // it, one trip to the store's writer per certificate instead of two.
        let caller = self.within_limits(verified)?;
        if let Some(proof) = proof.map_err(IssueError::Proof)? {
            proof.verify().map_err(IssueError::Proof)?;
        }
        if proof_verdict == Some(false) {
            return Err(IssueError::Proof(KeyRejection::ProofInvalid));
        }
        let acting = Acting::bearer(&caller, client_addr, now);
        let identity = &caller.token.identity;
        // Approved access requests with open windows let `[rule.approval]`
        // rules grant their principals; the policy still decides.
        cert_request.approved = self
            .store
            .open_grants(caller.key.clone(), now)
            .await
            .map_err(IssueError::Store)?
            .iter()
            .filter_map(|r| r.as_approved(now))
            .collect();
        let grant = match self.policy.evaluate(identity, &cert_request, now) {
            Decision::Allow(grant) => grant,
            Decision::Deny(denial) => {
                self.record_denial(&acting, &denial.reason, denial.rules)
                    .await?;
                if !denial.approval_required.is_empty() {
                    return Err(IssueError::ApprovalRequired(denial.reason));
                }
                return Err(IssueError::Denied(denial.reason));
            }
        };
        let signer = self.keys.user.signer();
        let key_fingerprint = subject.fingerprint();
        // A serial already on record (the clock was set back across a
        // restart) is skipped, never reused.
        for _ in 0..3 {
            let serial = self.serials.next(crate::unix_now_micros());
            let spec = CertificateSpec {
                subject: &subject,
                identity,
                grant: &grant,
                serial,
                now,
                backdate: self.certs.backdate,
            };
            let certificate =
                cert::sign_user_certificate(signer, &spec).map_err(IssueError::Signing)?;
            let line = certificate.to_openssh().map_err(IssueError::Signing)?;
            let signed = Signed {
                serial,
                certificate: &certificate,
                line: &line,
                key_fingerprint: &key_fingerprint,
                grant: &grant,
            };
            let record = records::issuance(&caller, &acting, &signed);
            match self.store.record_issuance(record).await {
                Ok(()) => {
                    tracing::info!(
                        serial = %serial,
                        identity = %caller.name,
                        principals = ?grant.principals,
                        rules = %grant.rules.join(","),
                        key = %key_fingerprint,
                        valid_before = certificate.valid_before(),
                        client = %client_addr,
                        "issued user certificate"
                    );
                    return Ok(Issued {
                        certificate: UserCertResponse {
                            serial: serial.to_string(),
                            key_id: certificate.key_id().to_string(),
                            principals: grant.principals,
                            valid_after: certificate.valid_after(),
                            valid_before: certificate.valid_before(),
                            certificate: line,
                            notes: grant.notes,
                        },
                        retry: false,
                    });
                }
                Err(StoreError::DuplicateSerial) => continue,
                Err(StoreError::RevokedIdentity(who)) => {
                    self.record_denial(&acting, "revoked identity", Vec::new())
                        .await?;
                    return Err(AuthError::RevokedIdentity(who).into());
                }
                Err(StoreError::RevokedKey(key)) => {
                    self.record_denial(&acting, "revoked key", Vec::new())
                        .await?;
                    return Err(IssueError::RevokedKey(key));
                }
                Err(StoreError::UnboundKey { identity, issuer }) => {
                    self.record_denial(
                        &acting,
                        "ID token without a nonce for a key not bound by one",
                        Vec::new(),
                    )
                    .await?;
                    return Err(IssueError::NonceRequired { identity, issuer });
                }
                Err(StoreError::Request(closed)) => {
                    return Err(IssueError::Denied(format!(
                        "{closed} while the certificate was being issued; log in again"
                    )));
                }
                Err(StoreError::Replayed) => {
                    return self.retried(&caller, &acting, &key_fingerprint).await;
                }
                Err(other) => return Err(IssueError::Store(other)),
            }
        }
        Err(IssueError::Store(StoreError::DuplicateSerial))
    }

    /// Answers a request whose token was spent already: with the certificate
    /// it paid for when this is a retry for the same key (its first answer
    /// lost, say to a timeout that fired as the writer committed), as a
    /// replay otherwise.
    async fn retried(
        &self,
        caller: &Authenticated,
        acting: &Acting,
        key_fingerprint: &str,
    ) -> Result<Issued, IssueError> {
        let retry = records::retry(caller, acting);
        match self
            .store
            .retried_issuance(retry, key_fingerprint.to_string())
            .await
        {
            Ok(recorded) => {
                let certificate = ssh_key::Certificate::from_openssh(&recorded.certificate)
                    .map_err(IssueError::Signing)?;
                tracing::info!(
                    serial = %recorded.serial,
                    identity = %caller.name,
                    key = %key_fingerprint,
                    client = %acting.who.client_addr,
                    "returned the certificate a retry's ID token paid for"
                );
                Ok(Issued {
                    certificate: UserCertResponse {
                        serial: recorded.serial,
                        key_id: certificate.key_id().to_string(),
                        principals: certificate.valid_principals().to_vec(),
                        valid_after: certificate.valid_after(),
                        valid_before: certificate.valid_before(),
                        certificate: recorded.certificate,
                        // The first answer's notes were about choosing
                        // principals; the retry returns what was chosen.
                        notes: Vec::new(),
                    },
                    retry: true,
                })
            }
            Err(StoreError::Replayed) => {
                self.record_denial(acting, "replayed ID token", Vec::new())
                    .await?;
                Err(AuthError::Replayed.into())
            }
            Err(StoreError::RevokedIdentity(who)) => {
                self.record_denial(acting, "revoked identity", Vec::new())
                    .await?;
                Err(AuthError::RevokedIdentity(who).into())
            }
            Err(StoreError::RevokedKey(key)) => {
                self.record_denial(acting, "revoked key", Vec::new())
                    .await?;
                Err(IssueError::RevokedKey(key))
            }
            Err(other) => Err(IssueError::Store(other)),
        }
    }

    /// Logs and records a refused certificate request.
    async fn record_denial(
        &self,
        acting: &Acting,
        reason: &str,
        rules: Vec<String>,
    ) -> Result<(), IssueError> {
        tracing::info!(identity = %acting.who.identity, client = %acting.who.client_addr, %reason, rules = %rules.join(","), "denied certificate");
        self.store
            .record_denial(records::denial(acting, reason.into(), rules))
            .await
            .map_err(IssueError::Store)
    }
}

/// What the policy is asked, from a request whose principals and lifetime
/// make sense.
fn checked_request(
    request: &UserCertRequest,
    client_addr: IpAddr,
) -> Result<CertRequest, IssueError> {
    if let Some(problem) = principals_problem(&request.principals, true) {
        return Err(IssueError::InvalidRequest(problem));
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
        approved: Vec::new(),
    })
}

/// An [`AuthError`]'s words when the token was meant for a certificate.
fn for_a_certificate(error: &AuthError) -> String {
    match error {
        AuthError::Token(error) => error.to_string(),
        AuthError::Replayed => {
            "this ID token was already used for a certificate; get a fresh one (log in again)"
                .into()
        }
        AuthError::RateLimited(wait) => format!(
            "too many certificate requests for this identity; retry in {}s",
            wait.seconds()
        ),
        AuthError::RevokedIdentity(who) => format!(
            "identity {who} is revoked: no certificates until an administrator lifts it \
             (jit-ssh-ca unrevoke)"
        ),
        AuthError::Store(_) => {
            "the CA cannot read its records right now; nothing was issued".into()
        }
    }
}
