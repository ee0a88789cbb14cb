//! The certificate authority's use cases, one file each, over one shared
//! [`Authority`]: the token verifier, the policy, the CA keys and the store,
//! wired together.
//!
//! - [`issue`]: a user certificate for a verified ID token and a proven key;
//! - [`revocations`]: an administrator's revoke and lift (through the API or,
//!   as the operator, on the CA host), an owner's revocation of their own
//!   certificate, and the signed KRL with its cache;
//! - [`access_requests`]: asking for principals, listing, deciding and
//!   reviewing access requests, and their wire view.
//!
//! Every use case authenticates its caller the same way ([`AuthError`] is
//! what that can refuse): the ID token verifies, the identity is within its
//! rate limit, no unlifted revocation names it, and the token is unspent.
//! A caller is known by two names (identity.rs): the display name
//! `user@issuer` that records and messages show, and the key `(iss, sub)`
//! that every decision compares: rate limits, revocations, whose request,
//! whose approval, whose grant. A
//! read spends nothing; a change spends the token in the transaction that
//! records it, where the store checks the revocation again. Every use case
//! answers only after its change is committed, and
//! builds its store records in `records.rs`, one function per kind. Nothing
//! here knows HTTP: `crate::http` maps each error to a status exactly once.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use ca_proto::{CaConfig, IssuerInfo, PROOF_NAMESPACE};

use crate::access::DEFAULT_PENDING_SECS;
use crate::ca_keys::CaKeys;
use crate::cert::SerialSource;
use crate::config::CertSettings;
use crate::identity::{is_login_name, IdentityKey};
use crate::oidc::{TokenError, TokenVerifier, VerifiedToken};
use crate::policy::Policy;
use crate::rate_limit::{RateLimits, RetryAfter};
use crate::secret::BearerToken;
use crate::store::{SpentToken, Store, StoreError};
use crate::webhook::Notifier;
use crate::UnixTime;

pub mod access_requests;
pub mod issue;
mod records;
pub mod revocations;

pub use access_requests::{
    access_view, AccessError, AccessVerb, MIN_ACCESS_WINDOW, REQUEST_LIST_DAYS,
};
pub use issue::{IssueError, Issued, MAX_REQUESTED_PRINCIPALS};
pub use revocations::{
    revocation_target, HostRevocation, RevocationChange, RevokeError, KRL_CACHE_SECONDS,
};

/// Longest free text (a revocation or access request reason, a comment)
/// accepted.
pub const MAX_REASON_LEN: usize = 500;

/// Why a caller could not act at all, whatever they asked: every use case's
/// error wraps it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// The ID token failed verification.
    #[error(transparent)]
    Token(TokenError),
    /// The ID token was already spent, on a certificate or another change.
    #[error("this ID token was already used; get a fresh one (log in again)")]
    Replayed,
    /// This identity sent more requests than its limit allows.
    #[error("too many requests for this identity; retry in {}s", .0.seconds())]
    RateLimited(RetryAfter),
    /// An unlifted revocation names the caller's identity: it may do
    /// nothing, read nothing, until another administrator (or the operator)
    /// lifts it.
    #[error("identity {0} is revoked: it can do nothing at this CA until an administrator lifts the revocation")]
    RevokedIdentity(String),
    /// The caller's standing could not be read.
    #[error("the CA cannot read its records right now; nothing changed")]
    Store(#[source] StoreError),
}

impl AuthError {
    /// The refusal of a store that found the caller revoked or the token
    /// spent; any other store failure as [`AuthError::Store`].
    fn from_store(error: StoreError) -> AuthError {
        match error {
            StoreError::Replayed => AuthError::Replayed,
            StoreError::RevokedIdentity(who) => AuthError::RevokedIdentity(who),
            other => AuthError::Store(other),
        }
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
    /// The last KRL built, served briefly to every host that polls.
    krl_cache: revocations::KrlCache,
    /// Posts access-request events to the configured webhooks.
    webhooks: Notifier,
    serials: SerialSource,
    /// Host patterns published to clients (`[client] ssh_hosts`).
    ssh_hosts: Vec<String>,
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
        let serials = SerialSource::starting_after(store.last_serial());
        Authority {
            verifier,
            policy,
            keys,
            store,
            certs,
            rate_limits: Arc::new(RateLimits::disabled()),
            pending_secs: DEFAULT_PENDING_SECS,
            krl_cache: revocations::KrlCache::default(),
            webhooks: Notifier::disabled(),
            serials,
            ssh_hosts: Vec::new(),
        }
    }

    /// Publishes `patterns` as the hosts that trust this CA (`/v1/config`
    /// `ssh_hosts`).
    pub fn with_ssh_hosts(mut self, patterns: Vec<String>) -> Self {
        self.ssh_hosts = patterns;
        self
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
                    auth_params: i.provider.auth_params.clone(),
                    public_client_secret: i.provider.public_client_secret.clone(),
                })
                .collect(),
            user_ca_keys: self.keys.user.trusted_lines(),
            host_ca_keys: self.keys.host.trusted_lines(),
            proof_namespace: PROOF_NAMESPACE.into(),
            default_ttl: self.certs.default_ttl.as_secs(),
            max_ttl: self.certs.max_ttl.as_secs(),
            ssh_hosts: self.ssh_hosts.clone(),
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

    /// Verifies the ID token of someone acting through the API without key
    /// binding (there is no subject key), then admits them
    /// ([`Authority::admit`]). A caller who changes something must spend the
    /// token with their change.
    async fn authenticate(
        &self,
        token: &BearerToken,
        client_addr: IpAddr,
        now: UnixTime,
    ) -> Result<Authenticated, AuthError> {
        let token = self
            .verifier
            .verify_unbound(token.expose_secret(), now)
            .await
            .map_err(AuthError::Token)?;
        self.admit(token, client_addr, now).await
    }

    /// Admits the bearer of a verified `token`, calling from `client_addr`:
    /// within their rate limit, not revoked, and with a token not yet spent.
    /// Every authenticated call passes here, reads included, so no use case
    /// can act for a revoked identity or accept a spent token; issuance
    /// alone makes the same two checks in the transaction that records its
    /// certificate instead. A refusal for revocation or replay is on record
    /// as a denial.
    async fn admit(
        &self,
        token: VerifiedToken,
        client_addr: IpAddr,
        now: UnixTime,
    ) -> Result<Authenticated, AuthError> {
        let caller = self.within_limits(token)?;
        self.in_standing(caller, client_addr, now).await
    }

    /// [`Authority::admit`] for a caller already within their rate limit.
    async fn in_standing(
        &self,
        caller: Authenticated,
        client_addr: IpAddr,
        now: UnixTime,
    ) -> Result<Authenticated, AuthError> {
        let refusal = match self
            .store
            .check_standing(
                caller.name.clone(),
                caller.key.clone(),
                caller.spent_token(),
            )
            .await
        {
            Ok(()) => return Ok(caller),
            Err(error) => AuthError::from_store(error),
        };
        let reason = match &refusal {
            AuthError::RevokedIdentity(_) => "revoked identity",
            AuthError::Replayed => "replayed ID token",
            _ => return Err(refusal),
        };
        let acting = records::Acting::bearer(&caller, client_addr, now);
        self.store
            .record_denial(records::denial(&acting, reason.into(), Vec::new()))
            .await
            .map_err(AuthError::Store)?;
        Err(refusal)
    }

    /// The bearer of a verified `token`, within their identity's rate limit
    /// (counted by key: two people with one display name have a bucket
    /// each). Their standing is not checked here: [`Authority::admit`] does
    /// that, or the transaction of an act that checks it itself.
    fn within_limits(&self, token: VerifiedToken) -> Result<Authenticated, AuthError> {
        let name = token.identity.display_name();
        let key = token.identity.key();
        self.rate_limits
            .check_identity(&key)
            .map_err(AuthError::RateLimited)?;
        Ok(Authenticated { token, name, key })
    }
}

/// A caller whose ID token verified, within their rate limit, not revoked,
/// with a token not yet spent.
struct Authenticated {
    /// The token's facts; its digest is spent with the caller's change.
    token: VerifiedToken,
    /// `user@issuer`, for people to read.
    name: String,
    /// `(iss, sub)`, which every decision about the caller compares.
    key: IdentityKey,
}

impl Authenticated {
    /// The caller's token as the store spends it.
    fn spent_token(&self) -> SpentToken {
        SpentToken {
            digest: self.token.digest,
            expires_at: self.token.expires_at,
        }
    }
}

/// Why `principals` cannot be asked for: more than
/// [`MAX_REQUESTED_PRINCIPALS`] (or none, unless `may_be_empty`), or one that
/// is not a login name.
fn principals_problem(principals: &[String], may_be_empty: bool) -> Option<String> {
    if principals.len() > MAX_REQUESTED_PRINCIPALS || (principals.is_empty() && !may_be_empty) {
        return Some(if may_be_empty {
            format!("at most {MAX_REQUESTED_PRINCIPALS} principals per request")
        } else {
            format!("name 1 to {MAX_REQUESTED_PRINCIPALS} principals")
        });
    }
    let bad = principals.iter().find(|p| !is_login_name(p))?;
    Some(format!(
        "principal {:?} is not a valid login name",
        bad.chars().take(40).collect::<String>()
    ))
}
