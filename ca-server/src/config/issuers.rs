//! The trusted OpenID providers (`[[oidc]]`). At least one is listed; names
//! and issuer URLs are unique; each issuer is reached over https (plain
//! http only on loopback); its username claim can name a user, and an
//! email-named issuer lists the domains whose addresses name users; its
//! nonce rule (`require_nonce`, `nonce_session`) is bounded.
//!
//! It also says what clients send when they sign in ([`sign_in`]): the
//! extra authorization parameters a provider needs before it grants a
//! refresh token, and the public-client secret some providers demand of
//! installed apps. Microsoft Entra ID issuers must name one tenant, and
//! say explicitly how a user principal name becomes a login name.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use serde::Deserialize;

use super::duration_field;
use super::urls::https_or_loopback;

mod sign_in;

/// Which claim names the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UsernameClaim {
    /// `preferred_username`, which must be a Unix login name.
    PreferredUsername,
    /// `email` (its local part, a Unix login name), which then requires
    /// `email_verified: true`.
    Email,
    /// Any other claim, for workloads whose tokens name no person (GitHub
    /// Actions: `repository`). Its value names the identity in key IDs and
    /// records; it need not be a login name, and policy templates that
    /// expand it to something that is not one grant nothing.
    Claim(String),
}

/// One trusted OpenID provider.
#[derive(Debug, Clone)]
pub struct IssuerConfig {
    /// Short name used in key IDs and records.
    pub name: String,
    /// Issuer URL, compared exactly with `iss`.
    pub issuer: String,
    /// The audience ID tokens must carry.
    pub client_id: String,
    /// Which claim names the user.
    pub username_claim: UsernameClaim,
    /// Claim holding group names.
    pub groups_claim: String,
    /// Scopes clients should request.
    pub scopes: Vec<String>,
    /// With `username_claim = "email"` (where it is required and never
    /// empty): the only domains, lower-cased, whose verified addresses name
    /// a user, so that `alice@` of two domains cannot both become `alice`
    /// unless the admin lists both. Empty for every other username claim.
    pub email_domains: Vec<String>,
    /// Whether a certificate needs a token bound to its key by a nonce.
    pub nonce: NonceRule,
    /// What this provider needs in particular (sign-in parameters, public
    /// client secret, user principal names).
    pub provider: ProviderSettings,
}

/// The settings particular to some providers; the default suits a provider
/// that needs none of them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProviderSettings {
    /// With `username_claim = "preferred_username"`: when not empty,
    /// `preferred_username` is a user principal name (`user@domain`, as
    /// Entra ID writes it) whose domain must be one of these, lower-cased,
    /// and whose local part is the login name.
    pub upn_domains: Vec<String>,
    /// Extra parameters of the browser sign-in's authorization request
    /// (`prompt`, Google's `access_type`), published to clients.
    pub auth_params: BTreeMap<String, String>,
    /// The public-client secret clients present at the provider's token
    /// endpoint (Google's installed apps). Published to everyone: not a
    /// credential, and the CA never uses it.
    pub public_client_secret: Option<String>,
}

/// How an issuer's ID tokens must be bound to the key they certify
/// (`require_nonce`, `nonce_session`; docs/security.md, *Key binding*).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NonceRule {
    /// A token without a nonce certifies only a key that the same `(issuer,
    /// sub)` certified with a nonce within [`NonceRule::session`]; `false`
    /// (workload issuers, whose tokens carry no nonce) lets it certify any
    /// key its bearer proves.
    pub required: bool,
    /// How long after a certificate for a key bound by a nonce a token
    /// without one still certifies that key: the sign-in session a refresh
    /// token renews silently.
    pub session: Duration,
}

impl Default for NonceRule {
    /// Required, with a 12-hour sign-in session.
    fn default() -> NonceRule {
        NonceRule {
            required: true,
            session: DEFAULT_NONCE_SESSION,
        }
    }
}

/// The default `nonce_session`: a working day and then some, about as long
/// as identity providers keep a refresh token alive without a new sign-in.
pub const DEFAULT_NONCE_SESSION: Duration = Duration::from_secs(12 * 3600);
/// The longest `nonce_session` accepted.
pub const MAX_NONCE_SESSION: Duration = Duration::from_secs(30 * 24 * 3600);

/// One `[[oidc]]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawIssuer {
    name: String,
    issuer: String,
    client_id: String,
    username_claim: Option<String>,
    #[serde(default = "default_groups_claim")]
    groups_claim: String,
    scopes: Option<Vec<String>>,
    #[serde(default)]
    email_domains: Vec<String>,
    #[serde(default = "default_require_nonce")]
    require_nonce: bool,
    #[serde(default = "default_nonce_session")]
    nonce_session: String,
    #[serde(default)]
    upn_domains: Vec<String>,
    prompt: Option<String>,
    #[serde(default)]
    auth_params: BTreeMap<String, String>,
    public_client_secret: Option<String>,
}
fn default_groups_claim() -> String {
    "groups".into()
}
fn default_scopes() -> Vec<String> {
    ["openid", "email", "profile", "groups", "offline_access"]
        .map(String::from)
        .to_vec()
}
fn default_require_nonce() -> bool {
    true
}
fn default_nonce_session() -> String {
    "12h".into()
}

/// Checks every `[[oidc]]` in order: at least one, each valid, no name or
/// issuer URL twice.
pub(super) fn check_issuers(oidc: Vec<RawIssuer>) -> Result<Vec<IssuerConfig>, String> {
    if oidc.is_empty() {
        return Err("no [[oidc]] issuer: the CA needs at least one identity provider".into());
    }
    let mut names = HashSet::new();
    let mut issuer_urls = HashSet::new();
    let mut issuers = Vec::new();
    for raw in oidc {
        let issuer = raw.check()?;
        if !names.insert(issuer.name.clone()) {
            return Err(format!("[[oidc]] name {:?} is used twice", issuer.name));
        }
        if !issuer_urls.insert(issuer.issuer.clone()) {
            return Err(format!(
                "[[oidc]] issuer {:?} is listed twice",
                issuer.issuer
            ));
        }
        issuers.push(issuer);
    }
    Ok(issuers)
}

impl RawIssuer {
    fn check(self) -> Result<IssuerConfig, String> {
        let name_ok = !self.name.is_empty()
            && self.name.len() <= 32
            && self
                .name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
        if !name_ok {
            return Err(format!(
                "[[oidc]] name {:?}: use 1-32 of a-z, 0-9, '-', '_'",
                self.name
            ));
        }
        if !https_or_loopback(&self.issuer) {
            return Err(format!(
                "[[oidc]] {}: issuer {:?} must be an https:// URL (plain http only on loopback)",
                self.name, self.issuer
            ));
        }
        if self.client_id.is_empty() {
            return Err(format!("[[oidc]] {}: client_id is empty", self.name));
        }
        sign_in::check_entra(&self)?;
        let username_claim_text = self
            .username_claim
            .clone()
            .unwrap_or_else(|| "preferred_username".into());
        let username_claim = match username_claim_text.as_str() {
            "preferred_username" => UsernameClaim::PreferredUsername,
            "email" => UsernameClaim::Email,
            "" | "iss" | "aud" | "azp" | "exp" | "iat" | "nbf" | "nonce" | "sub" => {
                return Err(format!(
                    "[[oidc]] {}: username_claim {:?} cannot name a user \
                     (use \"preferred_username\", \"email\", or a claim such as \"repository\")",
                    self.name, username_claim_text
                ))
            }
            other => UsernameClaim::Claim(other.to_string()),
        };
        let email_domains = self.checked_email_domains(&username_claim)?;
        let upn_domains = self.checked_upn_domains(&username_claim)?;
        let auth_params = sign_in::auth_params(&self)?;
        let public_client_secret = sign_in::public_client_secret(&self)?;
        let scopes = self.scopes.clone().unwrap_or_else(|| {
            sign_in::default_scopes(&self.issuer).unwrap_or_else(default_scopes)
        });
        if !scopes.iter().any(|s| s == "openid") {
            return Err(format!(
                "[[oidc]] {}: scopes must include \"openid\"",
                self.name
            ));
        }
        let session = duration_field("nonce_session", &self.nonce_session)
            .map_err(|e| format!("[[oidc]] {}: {e}", self.name))?;
        if session.is_zero() || session > MAX_NONCE_SESSION {
            return Err(format!(
                "[[oidc]] {}: nonce_session must be between 1s and 720h",
                self.name
            ));
        }
        Ok(IssuerConfig {
            name: self.name,
            issuer: self.issuer,
            client_id: self.client_id,
            username_claim,
            groups_claim: self.groups_claim,
            scopes,
            email_domains,
            nonce: NonceRule {
                required: self.require_nonce,
                session,
            },
            provider: ProviderSettings {
                upn_domains,
                auth_params,
                public_client_secret,
            },
        })
    }

    /// `upn_domains`, lower-cased: only with `username_claim =
    /// "preferred_username"`, the claim it reads.
    fn checked_upn_domains(&self, username_claim: &UsernameClaim) -> Result<Vec<String>, String> {
        if self.upn_domains.is_empty() {
            return Ok(Vec::new());
        }
        if *username_claim != UsernameClaim::PreferredUsername {
            return Err(format!(
                "[[oidc]] {}: upn_domains applies only with username_claim = \"preferred_username\" \
                 (it says that claim is a user principal name, user@domain)",
                self.name
            ));
        }
        checked_domains(&self.name, "upn_domains", &self.upn_domains)
    }

    /// `email_domains`, lower-cased: required with `username_claim =
    /// "email"` (the local part alone would let one name stand for people
    /// of every domain the provider serves), refused with any other claim,
    /// where it would restrict nothing.
    fn checked_email_domains(&self, username_claim: &UsernameClaim) -> Result<Vec<String>, String> {
        let name = &self.name;
        if *username_claim != UsernameClaim::Email {
            if !self.email_domains.is_empty() {
                return Err(format!(
                    "[[oidc]] {name}: email_domains applies only with username_claim = \"email\" \
                     (to restrict other issuers by domain, use an email_domain condition in the policy)"
                ));
            }
            return Ok(Vec::new());
        }
        if self.email_domains.is_empty() {
            return Err(format!(
                "[[oidc]] {name}: username_claim = \"email\" needs email_domains = [\"corp.example\", ...]: \
                 the login name is the address's local part, so without it alice@ of any domain \
                 the provider vouches for would be the same user"
            ));
        }
        checked_domains(name, "email_domains", &self.email_domains)
    }
}

/// A list of domain names, lower-cased and without repeats; `field` names it
/// in the error.
fn checked_domains(name: &str, field: &str, listed: &[String]) -> Result<Vec<String>, String> {
    let mut domains = Vec::new();
    for domain in listed {
        let lowered = domain.to_ascii_lowercase();
        let well_formed = lowered.contains('.')
            && lowered.len() <= 253
            && lowered.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && !label.starts_with('-')
                    && !label.ends_with('-')
                    && label
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            });
        if !well_formed {
            return Err(format!(
                "[[oidc]] {name}: {field} entry {domain:?} is not a domain name \
                     (write the part after '@', e.g. \"corp.example\"; no wildcards)"
            ));
        }
        if !domains.contains(&lowered) {
            domains.push(lowered);
        }
    }
    Ok(domains)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::config::testing::{parse, MINIMAL};

    #[test]
    fn nonce_rules_are_per_issuer_and_bounded() {
        let config = parse(&format!(
            "{MINIMAL}require_nonce = false\nnonce_session = \"2h\"\n"
        ))
        .expect("valid");
        let nonce = config.issuers[0].nonce;
        assert!(!nonce.required);
        assert_eq!(nonce.session, Duration::from_secs(7200));
        for bad in ["0s", "721h", "soon"] {
            let err = parse(&format!("{MINIMAL}nonce_session = \"{bad}\"\n")).expect_err(bad);
            assert!(
                err.contains("[[oidc]] corp") && err.contains("nonce_session"),
                "{err}"
            );
        }
    }

    #[test]
    fn an_email_named_issuer_must_list_its_domains() {
        let email = MINIMAL.replace(
            "client_id = \"jit-ssh\"",
            "client_id = \"jit-ssh\"\nusername_claim = \"email\"",
        );
        let err = parse(&email).expect_err("no email_domains");
        assert!(
            err.contains("[[oidc]] corp: username_claim = \"email\" needs email_domains"),
            "{err}"
        );
        let listed = format!("{email}email_domains = [\"Corp.Example\", \"contractor.example\"]\n");
        let config = parse(&listed).expect("valid");
        assert_eq!(
            config.issuers[0].email_domains,
            ["corp.example", "contractor.example"]
        );
        for bad in [
            "\"*.corp.example\"",
            "\"@corp.example\"",
            "\"corp\"",
            "\"a..b\"",
            "\"-a.example\"",
        ] {
            let err = parse(&format!("{email}email_domains = [{bad}]\n")).expect_err(bad);
            assert!(err.contains("is not a domain name"), "{bad}: {err}");
        }
        let err = parse(&format!("{email}email_domains = []\n")).expect_err("empty");
        assert!(err.contains("needs email_domains"), "{err}");
        let err = parse(&format!("{MINIMAL}email_domains = [\"corp.example\"]\n"))
            .expect_err("not an email-named issuer");
        assert!(
            err.contains("only with username_claim = \"email\""),
            "{err}"
        );
        assert!(parse(MINIMAL).expect("valid").issuers[0]
            .email_domains
            .is_empty());
    }
}
