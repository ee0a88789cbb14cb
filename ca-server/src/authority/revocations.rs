//! Revocations and the KRL: an administrator revokes or lifts a serial, an
//! identity or a key; the holder of a certificate's key revokes that
//! certificate; the operator on the CA host does what an administrator does,
//! straight in the database file ([`HostRevocation`]). All three check the
//! target alike (an identity must be spelled as the CA spells identities,
//! `user@issuer`, or name one person as `sub:<sub>@<issuer>`, for a
//! configured issuer) and write the same records and audit events; the
//! signed KRL that hosts poll is built from them and cached briefly.
//!
//! An administrator whose own identity is revoked can revoke and lift
//! nothing, her own revocation included: authentication refuses her (by her
//! key, or her display name), and the store refuses again in the transaction
//! that would record the change. Another administrator, or the operator,
//! lifts it.

use std::net::IpAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};

use ca_proto::{
    own_revocation_message, OwnRevocationRequest, RevocationRequest, RevocationResponse,
    OWN_REVOCATION_NAMESPACE,
};
use jit_ssh_common::text::control_refusal;
use ssh_key::{Certificate, HashAlg, SshSig};

use crate::config::IssuerConfig;
use crate::identity::{parse_named_identity, NamedIdentity};
use crate::krl::SignedKrl;
use crate::secret::BearerToken;
use crate::store::{self, RevocationRecord, RevocationTarget, Revoked, StoreError};
use crate::UnixTime;

use super::records::{self, Acting};
use super::{AuthError, Authority, MAX_REASON_LEN};

/// How long a generated KRL is served before it is rebuilt. Revocations made
/// through the API clear it at once; `jit-ssh-ca revoke` (another process)
/// shows within this delay.
pub const KRL_CACHE_SECONDS: u64 = 5;

/// Why a revocation, lift or KRL request failed. Mapped to HTTP in
/// `crate::http`, once.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RevokeError {
    /// The request body makes no sense.
    #[error("{0}")]
    InvalidRequest(String),
    /// The reason holds a control character other than tab.
    #[error("{0}")]
    InvalidText(String),
    /// The caller could not act: token, replay, rate limit or revoked
    /// identity.
    #[error(transparent)]
    Auth(#[from] AuthError),
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
}

impl From<StoreError> for RevokeError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Replayed => RevokeError::Auth(AuthError::Replayed),
            StoreError::RevokedIdentity(who) => RevokeError::Auth(AuthError::RevokedIdentity(who)),
            StoreError::UnknownCertificate(serial) => RevokeError::UnknownCertificate(serial),
            StoreError::NotRevoked(what) => RevokeError::NotRevoked(what),
            other => RevokeError::Store(other),
        }
    }
}

/// Which way a revocation changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RevocationChange {
    /// Revoke the target.
    Revoke,
    /// Lift (unrevoke) it.
    Lift,
}

impl RevocationChange {
    /// The command that makes it: `revoke` or `unrevoke`.
    fn verb(self) -> &'static str {
        match self {
            RevocationChange::Revoke => "revoke",
            RevocationChange::Lift => "unrevoke",
        }
    }
}

/// Checks a revocation request's target and reason (no control character
/// but tab); an identity must name one of `issuers` and be spelled as the CA
/// spells identities (`user@issuer`), or name one subject
/// (`sub:<sub>@<issuer>`).
pub fn revocation_target<'a>(
    request: &RevocationRequest,
    issuers: impl IntoIterator<Item = &'a IssuerConfig>,
) -> Result<RevocationTarget, RevokeError> {
    if let Some(refusal) = control_refusal("reason", &request.reason) {
        return Err(RevokeError::InvalidText(refusal));
    }
    let reason = request.reason.trim();
    if reason.is_empty() || reason.len() > MAX_REASON_LEN {
        return Err(RevokeError::InvalidRequest(format!(
            "reason must be 1 to {MAX_REASON_LEN} characters"
        )));
    }
    let target = match (&request.serial, &request.identity, &request.key_fingerprint) {
        (Some(serial), None, None) => RevocationTarget::Serial(decimal_serial(serial)?),
        (None, Some(identity), None) => {
            match parse_named_identity(identity.trim(), issuers)
                .map_err(RevokeError::InvalidRequest)?
            {
                NamedIdentity::Display(name) => RevocationTarget::Identity(name),
                NamedIdentity::Subject { key, spelled } => {
                    RevocationTarget::Subject { key, spelled }
                }
            }
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

/// A revocation or lift by the operator on the CA host (`jit-ssh-ca revoke`
/// and `unrevoke`), checked and recorded as the API's, as `operator@local`.
/// It writes the database file directly, which is safe while the server
/// runs (SQLite serialises the writers); the server's KRL shows it within
/// [`KRL_CACHE_SECONDS`].
#[derive(Debug)]
pub struct HostRevocation {
    change: RevocationChange,
    record: RevocationRecord,
}

impl HostRevocation {
    /// Checks `request` as the API does, for a CA trusting `issuers`, and
    /// prepares its record at `now`.
    pub fn new(
        request: &RevocationRequest,
        change: RevocationChange,
        issuers: &[IssuerConfig],
        now: UnixTime,
    ) -> Result<HostRevocation, RevokeError> {
        let target = revocation_target(request, issuers)?;
        let record =
            records::revocation(target, &request.reason, Acting::operator(now), Vec::new());
        Ok(HostRevocation { change, record })
    }

    /// What it names.
    pub fn target(&self) -> &RevocationTarget {
        &self.record.target
    }

    /// Writes it, with its audit event, to the database at `database`.
    pub fn write(self, database: &Path) -> Result<Revoked, RevokeError> {
        let written = match self.change {
            RevocationChange::Revoke => store::revoke_offline(database, &self.record),
            RevocationChange::Lift => store::lift_offline(database, &self.record),
        };
        Ok(written?)
    }
}

/// The last KRL built, served until it is [`KRL_CACHE_SECONDS`] old: hosts
/// poll often, and thousands of them must not each cost a database read and
/// a signature. Every revocation made through this process clears it.
#[derive(Debug, Default)]
pub(super) struct KrlCache(Mutex<Option<Arc<SignedKrl>>>);

impl KrlCache {
    /// The cached KRL, if it was generated at most a few seconds before `now`.
    fn fresh(&self, now: UnixTime) -> Option<Arc<SignedKrl>> {
        let cache = self.0.lock().ok()?;
        cache
            .as_ref()
            .filter(|k| now >= k.generated && now < k.generated + KRL_CACHE_SECONDS)
            .cloned()
    }

    fn keep(&self, krl: Arc<SignedKrl>) {
        if let Ok(mut cache) = self.0.lock() {
            *cache = Some(krl);
        }
    }

    /// Drops the cached KRL so that the next request builds one with the
    /// latest change.
    pub(super) fn forget(&self) {
        if let Ok(mut cache) = self.0.lock() {
            *cache = None;
        }
    }
}

impl Authority {
    /// An administrator revokes or lifts a target. The ID token is verified
    /// without nonce binding (there is no subject key), must meet an
    /// `[[admin]]` rule, and is spent in the same transaction as the change,
    /// so a token works for one action only. A revoked administrator is
    /// refused, whatever the target.
    pub async fn admin_revocation(
        &self,
        token: &BearerToken,
        request: RevocationRequest,
        change: RevocationChange,
        client_addr: IpAddr,
        now: UnixTime,
    ) -> Result<RevocationResponse, RevokeError> {
        let target = revocation_target(&request, self.verifier.issuers())?;
        let caller = self.authenticate(token, client_addr, now).await?;
        let acting = Acting::bearer(&caller, client_addr, now);
        let Some(rule) = self.policy.admin(&caller.token.identity) else {
            let reason = format!("not an administrator: {} {target} refused", change.verb());
            self.store
                .record_denial(records::denial(&acting, reason, Vec::new()))
                .await?;
            return Err(RevokeError::NotAdmin(caller.name));
        };
        let record = records::revocation(target.clone(), &request.reason, acting, vec![rule]);
        let revoked = match change {
            RevocationChange::Revoke => self.store.revoke(record).await?,
            RevocationChange::Lift => self.store.lift(record).await?,
        };
        self.krl_cache.forget();
        let lift = change == RevocationChange::Lift;
        tracing::info!(admin = %caller.name, %target, lift, "revocation changed");
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
        let serial = decimal_serial(&request.serial)?;
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
        let acting = Acting::owner(&entry, client_addr, now);
        let record =
            records::revocation(target.clone(), "revoked by its owner", acting, Vec::new());
        let revoked = self.store.revoke(record).await?;
        self.krl_cache.forget();
        tracing::info!(owner = %entry.identity, serial = %serial_text, key = %key.fingerprint(HashAlg::Sha256), "certificate revoked by its owner");
        Ok(revocation_response(&target, revoked))
    }

    /// The current KRL, signed by the active user-CA key.
    pub async fn krl(&self, now: UnixTime) -> Result<Arc<SignedKrl>, RevokeError> {
        if let Some(cached) = self.krl_cache.fresh(now) {
            return Ok(cached);
        }
        let set = self.store.revoked_set(now).await?;
        let krl =
            crate::krl::build_signed(&set, self.keys.user.trusted(), self.keys.user.signer(), now)
                .map_err(RevokeError::Signing)?;
        let krl = Arc::new(krl);
        self.krl_cache.keep(krl.clone());
        Ok(krl)
    }
}

fn decimal_serial(text: &str) -> Result<u64, RevokeError> {
    text.trim()
        .parse()
        .map_err(|_| RevokeError::InvalidRequest("serial must be a decimal 64-bit number".into()))
}

fn revocation_response(target: &RevocationTarget, revoked: Revoked) -> RevocationResponse {
    RevocationResponse {
        kind: target.kind().into(),
        value: target.value(),
        revoked_serials: revoked.serials,
        krl_version: revoked.krl_version,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::UsernameClaim;
    use crate::identity::tests::issuer;
    use crate::store::Actor;

    fn issuers() -> Vec<IssuerConfig> {
        vec![
            issuer("corp", UsernameClaim::PreferredUsername),
            issuer("github", UsernameClaim::Claim("repository".into())),
        ]
    }

    fn by_identity(identity: &str) -> Result<RevocationTarget, RevokeError> {
        let request = RevocationRequest {
            serial: None,
            identity: Some(identity.into()),
            key_fingerprint: None,
            reason: "test".into(),
        };
        revocation_target(&request, &issuers())
    }

    #[test]
    fn people_and_workloads_can_be_revoked_by_identity() {
        for identity in ["alice@corp", "acme/app@github", "acme/app@scope@github"] {
            assert_eq!(
                by_identity(identity).expect(identity),
                RevocationTarget::Identity(identity.into())
            );
        }
        for bad in [
            "alice",
            "@corp",
            "alice@",
            "a b@corp",
            "\"x\"@corp",
            "",
            "Alice@corp",
            "alice@elsewhere",
            "sub:user-alice",
            "sub:user-alice@elsewhere",
        ] {
            assert!(
                matches!(by_identity(bad), Err(RevokeError::InvalidRequest(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn one_person_can_be_revoked_by_subject() {
        assert_eq!(
            by_identity(" sub:user-alice@corp ").expect("subject form"),
            RevocationTarget::Subject {
                key: crate::identity::IdentityKey {
                    issuer: "https://corp.example".into(),
                    subject: "user-alice".into(),
                },
                spelled: "sub:user-alice@corp".into(),
            }
        );
    }

    #[test]
    fn the_operator_revokes_as_operator_at_local_with_the_reason_trimmed() {
        let request = RevocationRequest {
            serial: Some(" 42 ".into()),
            identity: None,
            key_fingerprint: None,
            reason: "  laptop stolen ".into(),
        };
        let revocation =
            HostRevocation::new(&request, RevocationChange::Revoke, &[], 1_700_000_000)
                .expect("valid");
        assert_eq!(revocation.target(), &RevocationTarget::Serial(42));
        let record = &revocation.record;
        assert_eq!(record.actor, Actor::local_operator(1_700_000_000));
        assert_eq!(record.reason, "laptop stolen");
        assert!(record.spent_token.is_none());
        let no_reason = RevocationRequest {
            reason: " ".into(),
            ..request
        };
        assert!(matches!(
            HostRevocation::new(&no_reason, RevocationChange::Lift, &[], 0),
            Err(RevokeError::InvalidRequest(_))
        ));
    }
}
