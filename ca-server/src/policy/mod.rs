//! What an identity may get: the decision between authentication and signing.
//!
//! [`Policy::evaluate`] sees only the verified identity, the request and the
//! time; it never touches keys or the store, and the signer never reads
//! policy. The server runs admin-written policy files ([`file`] parses them
//! into an immutable [`PolicySet`], [`engine`] evaluates it, [`reload`] swaps
//! it atomically when the files change); [`UsernamePolicy`] is the fixed
//! one-rule policy of dev mode. docs/policies.md describes the language.

pub mod cli;
pub mod engine;
pub mod file;
pub mod glob;
pub mod reload;
pub mod restrict;
pub mod template;
pub mod window;

#[cfg(test)]
mod suite;

use std::net::IpAddr;
use std::time::Duration;

pub use engine::PolicySet;
pub use file::{compile, load_dir, Diagnostic, PolicyContext};
pub use reload::ReloadablePolicy;

use crate::config::CertSettings;
use crate::identity::Identity;
use crate::UnixTime;

/// OpenSSH's usual extensions, which the dev-mode [`UsernamePolicy`] grants.
/// Policy files grant [`restrict::DEFAULT_RULE_EXTENSIONS`] unless a rule
/// names more.
pub const DEFAULT_EXTENSIONS: [&str; 5] = [
    "permit-X11-forwarding",
    "permit-agent-forwarding",
    "permit-port-forwarding",
    "permit-pty",
    "permit-user-rc",
];

/// What the client asked for.
#[derive(Debug, Clone)]
pub struct CertRequest {
    /// Principals asked for; empty means all the caller may have.
    pub principals: Vec<String>,
    /// Lifetime asked for; `None` means the default.
    pub ttl: Option<Duration>,
    /// Where the request came from.
    pub client_addr: IpAddr,
}

/// What the certificate will carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// Principals, never empty.
    pub principals: Vec<String>,
    /// Lifetime from now.
    pub ttl: Duration,
    /// Extensions (all with empty values).
    pub extensions: Vec<String>,
    /// Critical options, name and value.
    pub critical_options: Vec<(String, String)>,
    /// Names of the rules that decided, for the key ID and the audit record.
    pub rules: Vec<String>,
}

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    /// Human-readable reason naming the principal and rule involved; it names
    /// only rules that apply to the requester.
    pub reason: String,
    /// Names of the rules that decided (empty when none grants the principal).
    pub rules: Vec<String>,
}

/// The outcome of [`Policy::evaluate`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Sign this.
    Allow(Grant),
    /// Sign nothing.
    Deny(Denial),
}

/// Decides what an identity gets.
pub trait Policy: Send + Sync {
    /// Evaluates `request` by `identity` at `now`.
    fn evaluate(&self, identity: &Identity, request: &CertRequest, now: UnixTime) -> Decision;
}

/// The built-in policy: one principal, the user's own login name, for at most
/// the configured maximum lifetime.
#[derive(Debug, Clone)]
pub struct UsernamePolicy {
    settings: CertSettings,
}

/// Rule name [`UsernamePolicy`] reports.
pub const USERNAME_RULE: &str = "builtin-username";

impl UsernamePolicy {
    /// A policy with the given lifetimes.
    pub fn new(settings: CertSettings) -> Self {
        UsernamePolicy { settings }
    }
}

impl Policy for UsernamePolicy {
    fn evaluate(&self, identity: &Identity, request: &CertRequest, _now: UnixTime) -> Decision {
        if let Some(other) = request.principals.iter().find(|p| **p != identity.username) {
            return Decision::Deny(Denial {
                reason: format!(
                    "principal {other:?} is not granted to {}: rule {USERNAME_RULE} grants only {:?}",
                    identity.display_name(),
                    identity.username
                ),
                rules: vec![USERNAME_RULE.into()],
            });
        }
        let ttl = request
            .ttl
            .unwrap_or(self.settings.default_ttl)
            .min(self.settings.max_ttl);
        Decision::Allow(Grant {
            principals: vec![identity.username.clone()],
            ttl,
            extensions: DEFAULT_EXTENSIONS.map(String::from).to_vec(),
            critical_options: Vec::new(),
            rules: vec![USERNAME_RULE.into()],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alice() -> Identity {
        Identity {
            issuer_name: "corp".into(),
            issuer: "https://idp".into(),
            subject: "user-alice".into(),
            username: "alice".into(),
            email: None,
            groups: vec!["eng".into()],
            claims: Default::default(),
        }
    }

    fn request(principals: &[&str], ttl: Option<u64>) -> CertRequest {
        CertRequest {
            principals: principals.iter().map(|p| p.to_string()).collect(),
            ttl: ttl.map(Duration::from_secs),
            client_addr: IpAddr::from([127, 0, 0, 1]),
        }
    }

    #[test]
    fn grants_own_username_with_default_ttl() {
        let policy = UsernamePolicy::new(CertSettings::default());
        let Decision::Allow(grant) = policy.evaluate(&alice(), &request(&[], None), 0) else {
            panic!("alice should get her own name");
        };
        assert_eq!(grant.principals, ["alice"]);
        assert_eq!(grant.ttl, Duration::from_secs(300));
        assert_eq!(grant.rules, [USERNAME_RULE]);
    }

    #[test]
    fn never_exceeds_max_ttl() {
        let policy = UsernamePolicy::new(CertSettings::default());
        let Decision::Allow(grant) =
            policy.evaluate(&alice(), &request(&["alice"], Some(86400)), 0)
        else {
            panic!("allowed");
        };
        assert_eq!(grant.ttl, Duration::from_secs(3600));
    }

    #[test]
    fn denies_any_other_principal_naming_it() {
        let policy = UsernamePolicy::new(CertSettings::default());
        let Decision::Deny(denial) =
            policy.evaluate(&alice(), &request(&["alice", "root"], None), 0)
        else {
            panic!("root must be denied");
        };
        assert!(denial.reason.contains("\"root\""), "{}", denial.reason);
        assert!(denial.reason.contains(USERNAME_RULE));
    }
}
