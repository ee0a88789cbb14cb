//! The store records the use cases write, each kind built in one function.
//!
//! Every record names who acted, from which issuer and address, under which
//! rules and when (the store's `Actor`); those made with an ID token also
//! spend it, in the same transaction ([`Acting`] carries both). Building each
//! kind in one place keeps the audit trail alike whichever door a change came
//! through (the API, the owner's signature, the operator's CLI), and gives a
//! change of the records' shape one place to land.

use std::net::IpAddr;

use ssh_key::Certificate;

use crate::access::InstantApproval;
use crate::cert::Serial;
use crate::oidc::KeyBinding;
use crate::policy::Grant;
use crate::store::{
    Actor, CertificateEntry, DenialRecord, IssuanceRecord, NewRequest, NonceBinding, RequestAction,
    RequestChange, Retry, RevocationRecord, RevocationTarget, SpentToken,
};
use crate::UnixTime;

use super::Authenticated;

/// Who acts through a use case, and the ID token their change spends.
#[derive(Debug, Clone)]
pub(super) struct Acting {
    /// Who, from where, when; each record adds the rules it acted under.
    pub who: Actor,
    /// The ID token spent with the change; `None` when no token is involved
    /// (an owner's signature, the operator).
    pub spent_token: Option<SpentToken>,
}

impl Acting {
    /// The bearer of a verified ID token, calling from `client_addr`.
    pub fn bearer(caller: &Authenticated, client_addr: IpAddr, at: UnixTime) -> Acting {
        Acting {
            who: Actor {
                identity: caller.name.clone(),
                key: Some(caller.key.clone()),
                issuer: caller.token.identity.issuer_name.clone(),
                client_addr: client_addr.to_string(),
                rules: Vec::new(),
                at,
            },
            spent_token: Some(caller.spent_token()),
        }
    }

    /// The holder of `certificate`'s key, proven by a signature: acts as the
    /// identity the certificate was issued to.
    pub fn owner(certificate: &CertificateEntry, client_addr: IpAddr, at: UnixTime) -> Acting {
        Acting {
            who: Actor {
                identity: certificate.identity.clone(),
                key: certificate.key.clone(),
                issuer: certificate.issuer.clone(),
                client_addr: client_addr.to_string(),
                rules: Vec::new(),
                at,
            },
            spent_token: None,
        }
    }

    /// The operator on the CA host (`jit-ssh-ca revoke`), who needs no token:
    /// access to the database file is the authority.
    pub fn operator(at: UnixTime) -> Acting {
        Acting {
            who: Actor::local_operator(at),
            spent_token: None,
        }
    }

    /// Who acts, under `rules`.
    fn under(&self, rules: Vec<String>) -> Actor {
        Actor {
            rules,
            ..self.who.clone()
        }
    }
}

/// A refused request by `acting`; denials spend no token.
pub(super) fn denial(acting: &Acting, reason: String, rules: Vec<String>) -> DenialRecord {
    DenialRecord {
        actor: acting.under(rules),
        reason,
    }
}

/// A retry by `caller`, whose token was spent already, of the act it paid
/// for.
pub(super) fn retry(caller: &Authenticated, acting: &Acting) -> Retry {
    Retry {
        actor: acting.who.clone(),
        spent_token: caller.spent_token(),
    }
}

/// A revocation or lift of `target` by `acting`, authorised by `rules`.
pub(super) fn revocation(
    target: RevocationTarget,
    reason: &str,
    acting: Acting,
    rules: Vec<String>,
) -> RevocationRecord {
    RevocationRecord {
        target,
        reason: reason.trim().to_string(),
        actor: Actor {
            rules,
            ..acting.who
        },
        spent_token: acting.spent_token,
    }
}

/// A change to access request `id` by `acting`, authorised by `rules`.
pub(super) fn request_action(
    id: u64,
    change: RequestChange,
    acting: Acting,
    rules: Vec<String>,
) -> RequestAction {
    RequestAction {
        id,
        change,
        actor: Actor {
            rules,
            ..acting.who
        },
        spent_token: acting.spent_token,
    }
}

/// What a new access request asks for, besides who asks.
pub(super) struct Asked {
    /// Principals, deduplicated and sorted.
    pub principals: Vec<String>,
    /// Why.
    pub reason: String,
    /// Window length, seconds.
    pub window_secs: u64,
    /// The policy rules whose approvers decide it.
    pub rules: Vec<String>,
    /// What each of `rules` requires.
    pub approved_under: Vec<crate::policy::RuleRequirement>,
    /// When it expires unless decided.
    pub expires_at: UnixTime,
    /// Approved at once, or `None` to wait for approvers.
    pub approval: Option<InstantApproval>,
    /// The window opens no earlier than this.
    pub starts_at: Option<UnixTime>,
    /// The window opens with the first certificate under it.
    pub from_first_use: bool,
}

/// A new access request by `acting`, decided by the approvers of
/// `asked.rules`.
pub(super) fn new_request(acting: Acting, asked: Asked) -> NewRequest {
    NewRequest {
        requester: Actor {
            rules: asked.rules,
            ..acting.who
        },
        principals: asked.principals,
        reason: asked.reason,
        window_secs: asked.window_secs,
        expires_at: asked.expires_at,
        spent_token: acting.spent_token,
        approval: asked.approval,
        starts_at: asked.starts_at,
        from_first_use: asked.from_first_use,
        approved_under: asked.approved_under,
    }
}

/// A certificate signed for `caller` under `grant`, about to be recorded;
/// the record spends the caller's token.
pub(super) struct Signed<'a> {
    /// Its serial.
    pub serial: Serial,
    /// The certificate.
    pub certificate: &'a Certificate,
    /// The certificate, one OpenSSH line.
    pub line: &'a str,
    /// SHA-256 fingerprint of the subject key.
    pub key_fingerprint: &'a str,
    /// What the policy granted.
    pub grant: &'a Grant,
}

/// The issuance of `signed` to `caller`, acting as `acting`; it spends the
/// caller's token, and binds the key to the caller when the token's nonce
/// named it (or needs it bound when the token has none).
pub(super) fn issuance(
    caller: &Authenticated,
    acting: &Acting,
    signed: &Signed<'_>,
) -> IssuanceRecord {
    IssuanceRecord {
        actor: acting.under(signed.grant.rules.clone()),
        serial: signed.serial.to_string(),
        key_id: signed.certificate.key_id().to_string(),
        principals: signed.grant.principals.clone(),
        valid_after: signed.certificate.valid_after(),
        valid_before: signed.certificate.valid_before(),
        key_fingerprint: signed.key_fingerprint.to_string(),
        certificate: signed.line.to_string(),
        spent_token: caller.spent_token(),
        request_ids: signed.grant.request_ids.clone(),
        nonce_binding: match caller.token.key_binding {
            KeyBinding::Nonce { session } => NonceBinding::Bind {
                until: acting.who.at.saturating_add(session.as_secs()),
            },
            KeyBinding::NonceMissing => NonceBinding::Required,
            KeyBinding::NotRequired => NonceBinding::NotRequired,
        },
    }
}
