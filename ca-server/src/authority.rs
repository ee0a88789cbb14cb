//! The certificate authority's one operation, in order: vet the subject key,
//! verify the ID token, check the proof of possession, ask the policy, sign,
//! record, and only then answer.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use ca_proto::{
    own_revocation_message, AccessApproval, AccessRequestCreate, AccessRequestDecision,
    AccessRequestView, CaConfig, IssuerInfo, OwnRevocationRequest, RevocationRequest,
    RevocationResponse, UserCertRequest, UserCertResponse, OWN_REVOCATION_NAMESPACE,
    PROOF_NAMESPACE,
};
use ssh_key::{Certificate, HashAlg, SshSig};

use crate::access::{
    check_start, instant_approval, AccessRequest, CreateRefusal, InstantApproval, RequestError,
    RequestStatus, DEFAULT_PENDING_SECS,
};
use crate::ca_keys::CaKeys;
use crate::cert::{self, CertificateSpec, SerialSource};
use crate::config::CertSettings;
use crate::identity::{is_login_name, is_workload_name, Identity};
use crate::krl::SignedKrl;
use crate::oidc::{TokenError, TokenVerifier, VerifiedToken};
use crate::policy::{CertRequest, Decision, Policy};
use crate::rate_limit::{RateLimits, RetryAfter};
use crate::secret::BearerToken;
use crate::store::{
    DenialRecord, IssuanceRecord, NewRequest, RequestAction, RequestChange, RevocationRecord,
    RevocationTarget, Revoked, Store, StoreError,
};
use crate::subject_key::{KeyRejection, ProofCheck, SubjectKey};
use crate::webhook::{Event as WebhookEvent, EventKind, Notifier};
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
    /// This identity sent more requests than its limit allows.
    #[error("too many certificate requests for this identity; retry in {}s", .0.seconds())]
    RateLimited(RetryAfter),
    /// The identity is revoked until an admin lifts it.
    #[error("identity {0} is revoked: no certificates until an administrator lifts it (jit-ssh-ca unrevoke)")]
    RevokedIdentity(String),
    /// The subject key is revoked.
    #[error("key {0} is revoked: log in again to certify a fresh key")]
    RevokedKey(String),
}

/// Why a revocation, lift or KRL request failed. Mapped to HTTP in
/// [`crate::http`], once.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RevokeError {
    /// The request body makes no sense.
    #[error("{0}")]
    InvalidRequest(String),
    /// The ID token failed verification.
    #[error(transparent)]
    Token(TokenError),
    /// The ID token was already spent.
    #[error("this ID token was already used; get a fresh one (log in again)")]
    Replayed,
    /// The caller is not an administrator.
    #[error("{0} is not an administrator: no [[admin]] rule of the policy applies")]
    NotAdmin(String),
    /// The owner's signature does not prove possession of the certificate's key.
    #[error("the signature does not prove possession of this certificate's key: {0}")]
    NotOwner(String),
    /// No such certificate.
    #[error("no certificate with serial {0} was issued by this CA")]
    UnknownCertificate(String),
    /// Nothing to lift.
    #[error("{0} is not revoked")]
    NotRevoked(String),
    /// The database failed.
    #[error("the revocation could not be recorded")]
    Store(#[source] StoreError),
    /// Signing the KRL (or reading a recorded certificate) failed.
    #[error("signing the KRL failed")]
    Signing(#[source] ssh_key::Error),
    /// This identity sent more requests than its limit allows.
    #[error("too many requests for this identity; retry in {}s", .0.seconds())]
    RateLimited(RetryAfter),
}

impl From<StoreError> for RevokeError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Replayed => RevokeError::Replayed,
            StoreError::UnknownCertificate(serial) => RevokeError::UnknownCertificate(serial),
            StoreError::NotRevoked(what) => RevokeError::NotRevoked(what),
            other => RevokeError::Store(other),
        }
    }
}

/// Why an access request could not be made, listed or decided. Mapped to
/// HTTP in [`crate::http`], once.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AccessError {
    /// The request body makes no sense.
    #[error("{0}")]
    InvalidRequest(String),
    /// The ID token failed verification.
    #[error(transparent)]
    Token(TokenError),
    /// The ID token was already spent.
    #[error("this ID token was already used; get a fresh one (log in again)")]
    Replayed,
    /// The policy lets nobody, or not this caller, ask for these principals.
    #[error("{0}")]
    NotRequestable(String),
    /// The caller is not an approver of the request's rules.
    #[error("{who} may not decide access request {id}: not an approver of its policy rules")]
    NotApprover {
        /// The caller.
        who: String,
        /// The request.
        id: u64,
    },
    /// Nobody decides their own request.
    #[error("you cannot decide your own access request (end it with `jit-ssh done`)")]
    OwnRequest,
    /// Only the requester (or an administrator) ends a request.
    #[error("only its requester or an administrator may end access request {0}")]
    NotRequester(u64),
    /// The request cannot be made as asked: break-glass where the policy
    /// does not allow it or without a reason, or a bad window start.
    #[error(transparent)]
    Refused(CreateRefusal),
    /// Only an approver of the request's rules or an administrator reviews
    /// a break-glass request.
    #[error("{who} may not review access request {id}: neither an approver of its policy rules nor an administrator")]
    NotReviewer {
        /// The caller.
        who: String,
        /// The request.
        id: u64,
    },
    /// No such request.
    #[error("no access request {0}")]
    Unknown(u64),
    /// The request's state does not allow this (expired, already decided,
    /// already approved by this approver, already ended).
    #[error(transparent)]
    Conflict(RequestError),
    /// This identity sent more requests than its limit allows.
    #[error("too many requests for this identity; retry in {}s", .0.seconds())]
    RateLimited(RetryAfter),
    /// The database failed.
    #[error("the access request could not be read or recorded")]
    Store(#[source] StoreError),
}

impl From<StoreError> for AccessError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Replayed => AccessError::Replayed,
            StoreError::Request(RequestError::OwnRequest) => AccessError::OwnRequest,
            StoreError::Request(RequestError::Unknown(id)) => AccessError::Unknown(id),
            StoreError::Request(other) => AccessError::Conflict(other),
            other => AccessError::Store(other),
        }
    }
}

/// What a caller does to an access request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccessVerb {
    /// Approve it.
    Approve,
    /// Deny it.
    Deny,
    /// End it (withdraw, or close the window early).
    Done,
    /// Mark a break-glass request reviewed.
    Review,
}

/// Shortest window an access request may ask for.
pub const MIN_ACCESS_WINDOW: Duration = Duration::from_secs(60);
/// How far back `GET /v1/requests` lists the caller's own requests.
pub const REQUEST_LIST_DAYS: u64 = 7;

/// The wire form of `request` at `now`.
pub fn access_view(
    request: &AccessRequest,
    now: UnixTime,
    revoked: Vec<String>,
) -> AccessRequestView {
    AccessRequestView {
        id: request.id,
        requester: request.requester.clone(),
        principals: request.principals.clone(),
        reason: request.reason.clone(),
        window_seconds: request.window_secs,
        status: wire_status(request.status_at(now)),
        created_at: request.created_at,
        expires_at: request.expires_at,
        window_start: request.window_start,
        window_end: request.window_end,
        starts_at: request.starts_at,
        from_first_use: request.from_first_use,
        approvals: request
            .approvals
            .iter()
            .map(|a| AccessApproval {
                approver: a.approver.clone(),
                at: a.at,
                comment: a.comment.clone(),
            })
            .collect(),
        closed_by: request.closed_by.clone(),
        closed_reason: request.closed_reason.clone(),
        revoked_serials: revoked,
        break_glass: request.break_glass,
        needs_review: request.needs_review(),
        reviewed_by: request.review.as_ref().map(|r| r.by.clone()),
        reviewed_at: request.review.as_ref().map(|r| r.at),
        review_comment: request.review.as_ref().map(|r| r.comment.clone()),
    }
}

fn wire_status(status: RequestStatus) -> ca_proto::RequestStatus {
    match status {
        RequestStatus::Pending => ca_proto::RequestStatus::Pending,
        RequestStatus::Approved => ca_proto::RequestStatus::Approved,
        RequestStatus::Denied => ca_proto::RequestStatus::Denied,
        RequestStatus::Expired => ca_proto::RequestStatus::Expired,
        RequestStatus::Ended => ca_proto::RequestStatus::Ended,
    }
}

/// The window asked for: `window_seconds`, or the deprecated `for` string
/// of older clients; `None` when neither is given.
fn asked_window(request: &AccessRequestCreate) -> Result<Option<Duration>, AccessError> {
    match (request.window_seconds, request.deprecated_for.as_deref()) {
        (None, None) => Ok(None),
        (Some(seconds), None) => Ok(Some(Duration::from_secs(seconds))),
        (None, Some(text)) => crate::duration::parse_duration(text)
            .map(Some)
            .map_err(|e| AccessError::InvalidRequest(format!("for: {e}"))),
        (Some(_), Some(_)) => Err(AccessError::InvalidRequest(
            "give the window as window_seconds or as for (deprecated), not both".into(),
        )),
    }
}

fn checked_text(field: &str, text: Option<&str>, required: bool) -> Result<String, AccessError> {
    let text = text.unwrap_or("").trim();
    if text.len() > MAX_REASON_LEN || text.contains('\0') {
        return Err(AccessError::InvalidRequest(format!(
            "{field} must be at most {MAX_REASON_LEN} characters"
        )));
    }
    if required && text.is_empty() {
        return Err(AccessError::InvalidRequest(format!("{field} is required")));
    }
    Ok(text.to_string())
}

/// Longest revocation reason accepted.
pub const MAX_REASON_LEN: usize = 500;

/// Checks a revocation request's target and reason.
pub fn revocation_target(request: &RevocationRequest) -> Result<RevocationTarget, RevokeError> {
    let reason = request.reason.trim();
    if reason.is_empty() || reason.len() > MAX_REASON_LEN {
        return Err(RevokeError::InvalidRequest(format!(
            "reason must be 1 to {MAX_REASON_LEN} characters"
        )));
    }
    let target = match (&request.serial, &request.identity, &request.key_fingerprint) {
        (Some(serial), None, None) => {
            RevocationTarget::Serial(serial.trim().parse().map_err(|_| {
                RevokeError::InvalidRequest("serial must be a decimal 64-bit number".into())
            })?)
        }
        (None, Some(identity), None) => {
            let identity = identity.trim();
            // The issuer's name never holds an `@`; a workload's name may
            // (any printable claim value, e.g. acme/app@gh). Every login
            // name is also a workload name.
            let valid = identity
                .rsplit_once('@')
                .is_some_and(|(user, issuer)| is_workload_name(user) && !issuer.is_empty());
            if !valid {
                return Err(RevokeError::InvalidRequest(
                    "identity must be user@issuer (as in the audit log), e.g. alice@corp".into(),
                ));
            }
            RevocationTarget::Identity(identity.to_string())
        }
        (None, None, Some(fingerprint)) => {
            let fingerprint = fingerprint.trim();
            if crate::krl::fingerprint_hash(fingerprint).is_none() {
                return Err(RevokeError::InvalidRequest(
                    "key_fingerprint must be a SHA256:... fingerprint (ssh-keygen -lf)".into(),
                ));
            }
            RevocationTarget::Key(fingerprint.to_string())
        }
        _ => {
            return Err(RevokeError::InvalidRequest(
                "name exactly one of serial, identity, key_fingerprint".into(),
            ))
        }
    };
    Ok(target)
}

fn revocation_response(target: &RevocationTarget, revoked: Revoked) -> RevocationResponse {
    RevocationResponse {
        kind: target.kind().into(),
        value: target.value(),
        revoked_serials: revoked.serials,
        krl_version: revoked.krl_version,
    }
}

/// The CA: verifier, policy, keys and store, wired together.
pub struct Authority {
    verifier: TokenVerifier,
    policy: Arc<dyn Policy>,
    keys: CaKeys,
    store: Store,
    certs: CertSettings,
    rate_limits: Arc<RateLimits>,
    /// How long an access request waits for a decision.
    pending_secs: u64,
    /// The last KRL built, with its generation time: hosts poll every
    /// minute, and thousands of them must not each cost a database read and
    /// a signature. Cleared by every revocation made through this CA.
    krl_cache: std::sync::Mutex<Option<Arc<SignedKrl>>>,
    /// Posts access-request events to the configured webhooks.
    webhooks: Notifier,
    serials: SerialSource,
}

/// How long a generated KRL is served before it is rebuilt. Revocations made
/// through the API clear it at once; `jit-ssh-ca revoke` (another process)
/// shows within this delay.
pub const KRL_CACHE_SECONDS: u64 = 5;

impl Authority {
    /// Wires the parts together.
    pub fn new(
        verifier: TokenVerifier,
        policy: Arc<dyn Policy>,
        keys: CaKeys,
        store: Store,
        certs: CertSettings,
    ) -> Self {
        let serials = SerialSource::starting_after(store.last_serial());
        Authority {
            verifier,
            policy,
            keys,
            store,
            certs,
            rate_limits: Arc::new(RateLimits::disabled()),
            pending_secs: DEFAULT_PENDING_SECS,
            krl_cache: std::sync::Mutex::new(None),
            webhooks: Notifier::disabled(),
            serials,
        }
    }

    /// Sends access-request events through `notifier` once they are committed.
    pub fn with_webhooks(mut self, notifier: Notifier) -> Self {
        self.webhooks = notifier;
        self
    }

    /// Lets access requests wait `pending` for a decision before they
    /// expire (default one hour).
    pub fn with_access_request_pending(mut self, pending: Duration) -> Self {
        self.pending_secs = pending.as_secs().max(1);
        self
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
        let mut cert_request = checked_request(&request, client_addr)?;
        let subject = SubjectKey::parse(&request.public_key).map_err(IssueError::SubjectKey)?;
        // An Ed25519 proof's signature is checked in the token's batch (one
        // wait); another key's after the token, so that a forged token never
        // costs an RSA or ECDSA verification. Refusals keep their order:
        // token, rate limit, proof.
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
            .map_err(IssueError::Token)?;
        let identity = verified.identity;
        let me = identity.display_name();
        self.rate_limits
            .check_identity(&me)
            .map_err(IssueError::RateLimited)?;
        if let Some(proof) = proof.map_err(IssueError::Proof)? {
            proof.verify().map_err(IssueError::Proof)?;
        }
        if proof_verdict == Some(false) {
            return Err(IssueError::Proof(KeyRejection::ProofInvalid));
        }
        // Approved access requests with open windows let `[rule.approval]`
        // rules grant their principals; the policy still decides.
        cert_request.approved = self
            .store
            .open_grants(me.clone(), now)
            .await
            .map_err(IssueError::Store)?
            .iter()
            .filter_map(|r| r.as_approved(now))
            .collect();
        let grant = match self.policy.evaluate(&identity, &cert_request, now) {
            Decision::Allow(grant) => grant,
            Decision::Deny(denial) => {
                self.record_denial(&identity, client_addr, now, &denial.reason, &denial.rules)
                    .await?;
                if !denial.approval_required.is_empty() {
                    return Err(IssueError::ApprovalRequired(denial.reason));
                }
                return Err(IssueError::Denied(denial.reason));
            }
        };
        let signer = self.keys.user.signer();
        let fingerprint = subject.fingerprint();
        // A serial already on record (the clock was set back across a
        // restart) is skipped, never reused.
        for _ in 0..3 {
            let serial = self.serials.next(crate::unix_now_micros());
            let spec = CertificateSpec {
                subject: &subject,
                identity: &identity,
                grant: &grant,
                serial,
                now,
                backdate: self.certs.backdate,
            };
            let certificate =
                cert::sign_user_certificate(signer, &spec).map_err(IssueError::Signing)?;
            let line = certificate.to_openssh().map_err(IssueError::Signing)?;
            let key_id = certificate.key_id().to_string();
            let record = IssuanceRecord {
                serial: serial.to_string(),
                key_id: key_id.clone(),
                issuer: identity.issuer_name.clone(),
                subject: identity.subject.clone(),
                identity: me.clone(),
                principals: grant.principals.clone(),
                valid_after: certificate.valid_after(),
                valid_before: certificate.valid_before(),
                key_fingerprint: fingerprint.clone(),
                client_addr: client_addr.to_string(),
                rules: grant.rules.clone(),
                issued_at: now,
                certificate: line.clone(),
                token_digest: verified.digest,
                token_expires_at: verified.expires_at,
                request_ids: grant.request_ids.clone(),
            };
            match self.store.record_issuance(record).await {
                Ok(()) => {
                    tracing::info!(
                        serial = %serial,
                        identity = %me,
                        principals = ?grant.principals,
                        rules = %grant.rules.join(","),
                        key = %fingerprint,
                        valid_before = certificate.valid_before(),
                        client = %client_addr,
                        "issued user certificate"
                    );
                    return Ok(UserCertResponse {
                        certificate: line,
                        serial: serial.to_string(),
                        key_id,
                        principals: grant.principals,
                        valid_after: certificate.valid_after(),
                        valid_before: certificate.valid_before(),
                    });
                }
                Err(StoreError::DuplicateSerial) => continue,
                Err(StoreError::RevokedIdentity(who)) => {
                    self.record_denial(&identity, client_addr, now, "revoked identity", &[])
                        .await?;
                    return Err(IssueError::RevokedIdentity(who));
                }
                Err(StoreError::RevokedKey(key)) => {
                    self.record_denial(&identity, client_addr, now, "revoked key", &[])
                        .await?;
                    return Err(IssueError::RevokedKey(key));
                }
                Err(StoreError::Request(closed)) => {
                    return Err(IssueError::Denied(format!(
                        "{closed} while the certificate was being issued; log in again"
                    )));
                }
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

    /// Verifies the ID token of someone acting through the API (without key
    /// binding: there is no subject key) and counts the call against their
    /// rate limit. Returns the token's facts and the caller's `user@issuer`.
    async fn authenticate<E>(
        &self,
        token: &BearerToken,
        now: UnixTime,
        token_error: fn(TokenError) -> E,
        rate_limited: fn(RetryAfter) -> E,
    ) -> Result<(VerifiedToken, String), E> {
        let verified = self
            .verifier
            .verify_unbound(token.expose_secret(), now)
            .await
            .map_err(token_error)?;
        let me = verified.identity.display_name();
        self.rate_limits.check_identity(&me).map_err(rate_limited)?;
        Ok((verified, me))
    }

    /// An administrator revokes (`lift` false) or unrevokes (`lift` true) a
    /// target. The ID token is verified without nonce binding (there is no
    /// subject key), must meet an `[[admin]]` rule, and is spent in the same
    /// transaction as the change, so a token works for one action only.
    pub async fn admin_revocation(
        &self,
        token: &BearerToken,
        request: RevocationRequest,
        lift: bool,
        client_addr: IpAddr,
        now: UnixTime,
    ) -> Result<RevocationResponse, RevokeError> {
        let target = revocation_target(&request)?;
        let (verified, me) = self
            .authenticate(token, now, RevokeError::Token, RevokeError::RateLimited)
            .await?;
        let identity = verified.identity;
        let Some(rule) = self.policy.admin(&identity) else {
            let reason = format!(
                "not an administrator: {} {target} refused",
                if lift { "unrevoke" } else { "revoke" }
            );
            self.store
                .record_denial(DenialRecord {
                    at: now,
                    identity: me.clone(),
                    issuer: identity.issuer_name.clone(),
                    client_addr: client_addr.to_string(),
                    reason,
                    rules: Vec::new(),
                })
                .await?;
            return Err(RevokeError::NotAdmin(me));
        };
        let record = RevocationRecord {
            target: target.clone(),
            reason: request.reason.trim().to_string(),
            actor: me.clone(),
            actor_issuer: identity.issuer_name.clone(),
            client_addr: client_addr.to_string(),
            rules: vec![rule],
            at: now,
            spent_token: Some((verified.digest, verified.expires_at)),
        };
        let revoked = if lift {
            self.store.lift(record).await?
        } else {
            self.store.revoke(record).await?
        };
        self.forget_krl();
        tracing::info!(admin = %me, %target, lift, "revocation changed");
        Ok(revocation_response(&target, revoked))
    }

    /// The holder of a certificate's key revokes that certificate: the
    /// signature over [`own_revocation_message`] must verify with the
    /// certificate's key. No ID token: logging out must work after it expired.
    pub async fn revoke_own(
        &self,
        request: OwnRevocationRequest,
        client_addr: IpAddr,
        now: UnixTime,
    ) -> Result<RevocationResponse, RevokeError> {
        let serial: u64 = request.serial.trim().parse().map_err(|_| {
            RevokeError::InvalidRequest("serial must be a decimal 64-bit number".into())
        })?;
        let serial_text = serial.to_string();
        let entry = self
            .store
            .certificate(&serial_text)
            .await?
            .ok_or_else(|| RevokeError::UnknownCertificate(serial_text.clone()))?;
        let certificate =
            Certificate::from_openssh(&entry.certificate).map_err(RevokeError::Signing)?;
        let signature = SshSig::from_pem(request.signature.trim())
            .map_err(|e| RevokeError::NotOwner(format!("not an armored SSH signature ({e})")))?;
        if signature.public_key() != certificate.public_key() {
            return Err(RevokeError::NotOwner(
                "signed by another key than the certificate's".into(),
            ));
        }
        if signature.namespace() != OWN_REVOCATION_NAMESPACE {
            return Err(RevokeError::NotOwner(format!(
                "namespace must be {OWN_REVOCATION_NAMESPACE}"
            )));
        }
        let key = ssh_key::PublicKey::from(certificate.public_key().clone());
        key.verify(
            OWN_REVOCATION_NAMESPACE,
            &own_revocation_message(&serial_text),
            &signature,
        )
        .map_err(|_| {
            RevokeError::NotOwner("it does not verify over this serial's message".into())
        })?;
        let target = RevocationTarget::Serial(serial);
        let record = RevocationRecord {
            target: target.clone(),
            reason: "revoked by its owner".into(),
            actor: entry.identity.clone(),
            actor_issuer: entry.issuer.clone(),
            client_addr: client_addr.to_string(),
            rules: Vec::new(),
            at: now,
            spent_token: None,
        };
        let revoked = self.store.revoke(record).await?;
        self.forget_krl();
        tracing::info!(owner = %entry.identity, serial = %serial_text, key = %key.fingerprint(HashAlg::Sha256), "certificate revoked by its owner");
        Ok(revocation_response(&target, revoked))
    }

    /// Records a new access request by the bearer of `token` (verified
    /// without nonce binding and spent with the request): the policy must let
    /// the caller ask for every principal, for at most its longest window.
    pub async fn create_access_request(
        &self,
        token: &BearerToken,
        request: AccessRequestCreate,
        client_addr: IpAddr,
        now: UnixTime,
    ) -> Result<AccessRequestView, AccessError> {
        let principals: BTreeSet<String> = request.principals.iter().cloned().collect();
        let principals: Vec<String> = principals.into_iter().collect();
        if principals.is_empty() || principals.len() > MAX_REQUESTED_PRINCIPALS {
            return Err(AccessError::InvalidRequest(format!(
                "name 1 to {MAX_REQUESTED_PRINCIPALS} principals"
            )));
        }
        if let Some(bad) = principals.iter().find(|p| !is_login_name(p)) {
            return Err(AccessError::InvalidRequest(format!(
                "principal {:?} is not a valid login name",
                bad.chars().take(40).collect::<String>()
            )));
        }
        let from_first_use_asked = request.from_first_use;
        let start = match request.start.as_deref() {
            None => None,
            Some(text) => {
                let at: jiff::Timestamp = text.trim().parse().map_err(|_| {
                    AccessError::InvalidRequest(format!(
                        "start {:?} is not an RFC 3339 time such as 2026-12-01T09:00:00Z",
                        text.chars().take(40).collect::<String>()
                    ))
                })?;
                Some((
                    u64::try_from(at.as_second()).unwrap_or(0),
                    text.trim().to_string(),
                ))
            }
        };
        let asked = asked_window(&request)?;
        let (verified, me) = self
            .authenticate(token, now, AccessError::Token, AccessError::RateLimited)
            .await?;
        let identity = verified.identity;
        let terms = match self.policy.access_terms(&identity, &principals, now) {
            Ok(terms) => terms,
            Err(reason) => {
                self.store
                    .record_denial(DenialRecord {
                        at: now,
                        identity: me.clone(),
                        issuer: identity.issuer_name.clone(),
                        client_addr: client_addr.to_string(),
                        reason: format!("access request refused: {reason}"),
                        rules: Vec::new(),
                    })
                    .await?;
                return Err(AccessError::NotRequestable(reason));
            }
        };
        let window = asked.unwrap_or(terms.max_window);
        if window < MIN_ACCESS_WINDOW || window > terms.max_window {
            return Err(AccessError::InvalidRequest(format!(
                "for must be between {} and {} (max_window of rule {})",
                crate::duration::format_duration(MIN_ACCESS_WINDOW),
                crate::duration::format_duration(terms.max_window),
                terms.rules.join(", ")
            )));
        }
        let reason = checked_text("reason", Some(&request.reason), terms.reason_required)?;
        let starts_at = check_start(
            start.as_ref().map(|(at, _)| *at),
            start.as_ref().map_or("", |(_, text)| text.as_str()),
            from_first_use_asked,
            now,
        )
        .map_err(AccessError::Refused)?;
        // A rule's `window_from_first_use` is the default; an explicit start
        // replaces it.
        let from_first_use = from_first_use_asked || (terms.from_first_use && starts_at.is_none());
        let approval = instant_approval(
            request.break_glass,
            terms.break_glass,
            &reason,
            &terms.rules,
            &terms.auto_approved_by,
        )
        .map_err(AccessError::Refused)?;
        let created = self
            .store
            .create_request(NewRequest {
                requester: me,
                issuer: identity.issuer_name.clone(),
                principals,
                reason,
                window_secs: window.as_secs(),
                rules: terms.rules,
                at: now,
                expires_at: starts_at.unwrap_or(now).max(now) + self.pending_secs,
                client_addr: client_addr.to_string(),
                spent_token: Some((verified.digest, verified.expires_at)),
                approval: approval.clone(),
                starts_at,
                from_first_use,
            })
            .await?;
        let (kind, actor) = match &approval {
            None => {
                tracing::info!(id = created.id, requester = %created.requester, principals = ?created.principals, "access request created");
                (EventKind::Created, created.requester.clone())
            }
            Some(InstantApproval::BreakGlass) => {
                tracing::warn!(id = created.id, requester = %created.requester, principals = ?created.principals, reason = %created.reason, window_end = ?created.window_end, "BREAK-GLASS: access request approved by its requester; it needs review");
                (EventKind::BreakGlass, created.requester.clone())
            }
            Some(InstantApproval::Policy(rules)) => {
                tracing::info!(id = created.id, requester = %created.requester, principals = ?created.principals, rules = %rules.join(","), "access request approved by the policy");
                let actor = created
                    .approvals
                    .first()
                    .map(|a| a.approver.clone())
                    .unwrap_or_default();
                (EventKind::Approved, actor)
            }
        };
        self.webhooks
            .notify(WebhookEvent::new(kind, &created, &actor, "", now));
        Ok(access_view(&created, now, Vec::new()))
    }

    /// The caller's own access requests of the last week and, for an
    /// approver, the pending requests of others they may decide; newest
    /// first. Reading spends no token.
    pub async fn list_access_requests(
        &self,
        token: &BearerToken,
        pending_only: bool,
        now: UnixTime,
    ) -> Result<Vec<AccessRequestView>, AccessError> {
        let (verified, me) = self
            .authenticate(token, now, AccessError::Token, AccessError::RateLimited)
            .await?;
        let identity = verified.identity;
        let mut requests = self
            .store
            .requests(
                Some(me.clone()),
                now.saturating_sub(REQUEST_LIST_DAYS * 86_400),
            )
            .await?;
        // Pending by expiry, not by age: a scheduled request stays open for
        // decisions until its start plus the pending time.
        let others = self.store.pending_requests(now).await?;
        requests.extend(others.into_iter().filter(|r| {
            r.requester != me
                && r.status_at(now) == RequestStatus::Pending
                && self.policy.approval_rights(&identity, &r.rules).is_some()
        }));
        requests.sort_by_key(|r| std::cmp::Reverse(r.id));
        requests.dedup_by_key(|r| r.id);
        Ok(requests
            .iter()
            .filter(|r| !pending_only || r.status_at(now) == RequestStatus::Pending)
            .map(|r| access_view(r, now, Vec::new()))
            .collect())
    }

    /// Break-glass requests nobody has reviewed yet that the caller may
    /// review (as an approver of their rules, or an administrator), newest
    /// first. Reading spends no token.
    pub async fn unreviewed_access_requests(
        &self,
        token: &BearerToken,
        now: UnixTime,
    ) -> Result<Vec<AccessRequestView>, AccessError> {
        let (verified, me) = self
            .authenticate(token, now, AccessError::Token, AccessError::RateLimited)
            .await?;
        let identity = verified.identity;
        let admin = self.policy.admin(&identity).is_some();
        Ok(self
            .store
            .unreviewed_requests()
            .await?
            .iter()
            .filter(|r| {
                r.requester != me
                    && (admin || self.policy.approval_rights(&identity, &r.rules).is_some())
            })
            .map(|r| access_view(r, now, Vec::new()))
            .collect())
    }

    /// Approves, denies or ends access request `id` for the bearer of
    /// `token` (verified without nonce binding, spent with the change).
    /// Approvers are those of every policy rule the request was made under,
    /// as the policy reads now; only the requester or an administrator ends
    /// it, and ending it revokes the certificates issued under it.
    pub async fn decide_access_request(
        &self,
        token: &BearerToken,
        id: u64,
        verb: AccessVerb,
        body: AccessRequestDecision,
        client_addr: IpAddr,
        now: UnixTime,
    ) -> Result<AccessRequestView, AccessError> {
        let (verified, me) = self
            .authenticate(token, now, AccessError::Token, AccessError::RateLimited)
            .await?;
        let identity = verified.identity;
        let request = self
            .store
            .request(id)
            .await?
            .ok_or(AccessError::Unknown(id))?;
        let (change, rules) = match verb {
            AccessVerb::Approve | AccessVerb::Deny => {
                if request.requester == me {
                    return Err(AccessError::OwnRequest);
                }
                let Some(required) = self.policy.approval_rights(&identity, &request.rules) else {
                    self.store
                        .record_denial(DenialRecord {
                            at: now,
                            identity: me.clone(),
                            issuer: identity.issuer_name.clone(),
                            client_addr: client_addr.to_string(),
                            reason: format!("not an approver of access request {id}"),
                            rules: request.rules.clone(),
                        })
                        .await?;
                    return Err(AccessError::NotApprover { who: me, id });
                };
                let change = if verb == AccessVerb::Approve {
                    RequestChange::Approve {
                        required,
                        comment: checked_text("comment", body.comment.as_deref(), false)?,
                    }
                } else {
                    RequestChange::Deny {
                        reason: checked_text("reason", body.reason.as_deref(), true)?,
                    }
                };
                (change, request.rules.clone())
            }
            AccessVerb::Done => {
                let admin = self.policy.admin(&identity);
                if request.requester != me && admin.is_none() {
                    return Err(AccessError::NotRequester(id));
                }
                let reason = checked_text("reason", body.reason.as_deref(), false)?;
                let reason = if reason.is_empty() {
                    "done".to_string()
                } else {
                    reason
                };
                (RequestChange::End { reason }, admin.into_iter().collect())
            }
            AccessVerb::Review => {
                if request.requester == me {
                    return Err(AccessError::Conflict(RequestError::OwnReview));
                }
                let approver = self.policy.approval_rights(&identity, &request.rules);
                let admin = self.policy.admin(&identity);
                if approver.is_none() && admin.is_none() {
                    self.store
                        .record_denial(DenialRecord {
                            at: now,
                            identity: me.clone(),
                            issuer: identity.issuer_name.clone(),
                            client_addr: client_addr.to_string(),
                            reason: format!("not a reviewer of access request {id}"),
                            rules: request.rules.clone(),
                        })
                        .await?;
                    return Err(AccessError::NotReviewer { who: me, id });
                }
                let comment = checked_text("comment", body.comment.as_deref(), false)?;
                let rules = if approver.is_some() {
                    request.rules.clone()
                } else {
                    admin.into_iter().collect()
                };
                (RequestChange::Review { comment }, rules)
            }
        };
        let changed = self
            .store
            .change_request(RequestAction {
                id,
                change,
                actor: me.clone(),
                actor_issuer: identity.issuer_name.clone(),
                client_addr: client_addr.to_string(),
                rules,
                at: now,
                spent_token: Some((verified.digest, verified.expires_at)),
            })
            .await?;
        if !changed.revoked.serials.is_empty() {
            self.forget_krl();
        }
        tracing::info!(id, actor = %me, ?verb, status = %changed.request.status_at(now), revoked = changed.revoked.serials.len(), "access request changed");
        let event = match verb {
            AccessVerb::Approve if changed.request.status_at(now) == RequestStatus::Approved => {
                let comment = changed
                    .request
                    .approvals
                    .iter()
                    .rev()
                    .find(|a| a.approver == me)
                    .map(|a| a.comment.clone())
                    .unwrap_or_default();
                Some((EventKind::Approved, comment))
            }
            AccessVerb::Approve => None,
            AccessVerb::Deny => Some((
                EventKind::Denied,
                changed.request.closed_reason.clone().unwrap_or_default(),
            )),
            AccessVerb::Done => Some((
                EventKind::Ended,
                changed.request.closed_reason.clone().unwrap_or_default(),
            )),
            AccessVerb::Review => None,
        };
        if let Some((kind, comment)) = event {
            self.webhooks.notify(WebhookEvent::new(
                kind,
                &changed.request,
                &me,
                &comment,
                now,
            ));
        }
        Ok(access_view(&changed.request, now, changed.revoked.serials))
    }

    /// The current KRL, signed by the active user-CA key.
    pub async fn krl(&self, now: UnixTime) -> Result<Arc<SignedKrl>, RevokeError> {
        if let Some(cached) = self.cached_krl(now) {
            return Ok(cached);
        }
        let set = self.store.revoked_set(now).await?;
        let krl =
            crate::krl::build_signed(&set, self.keys.user.trusted(), self.keys.user.signer(), now)
                .map_err(RevokeError::Signing)?;
        let krl = Arc::new(krl);
        if let Ok(mut cache) = self.krl_cache.lock() {
            *cache = Some(krl.clone());
        }
        Ok(krl)
    }

    fn cached_krl(&self, now: UnixTime) -> Option<Arc<SignedKrl>> {
        let cache = self.krl_cache.lock().ok()?;
        cache
            .as_ref()
            .filter(|k| now >= k.generated && now < k.generated + KRL_CACHE_SECONDS)
            .cloned()
    }

    fn forget_krl(&self) {
        if let Ok(mut cache) = self.krl_cache.lock() {
            *cache = None;
        }
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
        approved: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn by_identity(identity: &str) -> Result<RevocationTarget, RevokeError> {
        revocation_target(&RevocationRequest {
            serial: None,
            identity: Some(identity.into()),
            key_fingerprint: None,
            reason: "test".into(),
        })
    }

    #[test]
    fn people_and_workloads_can_be_revoked_by_identity() {
        for identity in ["alice@corp", "acme/app@github", "acme/app@scope@github"] {
            assert_eq!(
                by_identity(identity).expect(identity),
                RevocationTarget::Identity(identity.into())
            );
        }
        for bad in ["alice", "@corp", "alice@", "a b@corp", "\"x\"@corp", ""] {
            assert!(
                matches!(by_identity(bad), Err(RevokeError::InvalidRequest(_))),
                "{bad:?}"
            );
        }
    }
}
