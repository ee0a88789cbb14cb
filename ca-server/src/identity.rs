//! Who is asking: the verified facts of an ID token that policy decides on,
//! the stable key the CA decides by, and how the CA spells an identity
//! wherever a person names one.
//!
//! An identity has two names. Its key, [`IdentityKey`], is the token's
//! `(iss, sub)`: the issuer promises `sub` is unique and never reassigned,
//! so every decision about a person (whose request it is, who approved it,
//! whose grant, whose ban, whose rate limit) compares keys. Its display
//! name, `user@issuer` ([`Identity::display_name`]), is what people read and
//! type; two people can share one (with `username_claim = "email"`,
//! `alice@corp.example` and `alice@contractor.example` are both
//! `alice@corp`), so it decides nothing on its own, except that a ban by
//! display name refuses everyone who shows it (docs/security.md).

use serde::Serialize;
use serde_json::{Map, Value};

use crate::config::{IssuerConfig, UsernameClaim};

/// A verified identity, produced only by [`crate::oidc`] after every check passed.
#[derive(Debug, Clone)]
pub struct Identity {
    /// Short name of the issuer that vouched for it (from the config).
    pub issuer_name: String,
    /// The issuer URL.
    pub issuer: String,
    /// The token's `sub`: stable, unique per issuer.
    pub subject: String,
    /// Unix login name derived from the username claim.
    pub username: String,
    /// `email`, when present.
    pub email: Option<String>,
    /// Group names from the groups claim.
    pub groups: Vec<String>,
    /// All other claims, for policy conditions on workload tokens.
    pub claims: Map<String, Value>,
}

impl Identity {
    /// `username@issuer`, the form used in key IDs, logs and audit records.
    pub fn display_name(&self) -> String {
        format!("{}@{}", self.username, self.issuer_name)
    }

    /// The stable key every decision compares: `(iss, sub)`.
    pub fn key(&self) -> IdentityKey {
        IdentityKey {
            issuer: self.issuer.clone(),
            subject: self.subject.clone(),
        }
    }
}

/// The stable key of an identity: the issuer's URL (the token's `iss`) and
/// the token's `sub`. Two people never share one; one person keeps it when
/// the claim their display name comes from changes.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct IdentityKey {
    /// The issuer URL, exactly as the token's `iss`.
    pub issuer: String,
    /// The token's `sub`.
    pub subject: String,
}

impl std::fmt::Display for IdentityKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "sub {:?} of {}", self.subject, self.issuer)
    }
}

/// The prefix that names an identity by its subject rather than its display
/// name: `sub:<sub>@<issuer>`.
pub const SUBJECT_PREFIX: &str = "sub:";

/// Longest `sub` accepted where a person names one (OpenID Connect caps it
/// at 255 ASCII characters).
const MAX_SUBJECT: usize = 255;

/// An identity as an administrator names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NamedIdentity {
    /// `user@issuer`: everyone who shows this display name, and every
    /// `(iss, sub)` the CA has seen showing it.
    Display(String),
    /// `sub:<sub>@<issuer>`: exactly one person.
    Subject {
        /// The key it resolves to, with the issuer's URL.
        key: IdentityKey,
        /// As the CA spells it back: `sub:<sub>@<issuer short name>`.
        spelled: String,
    },
}

/// Reads an identity named by a person: `sub:<sub>@<issuer>` (the subject
/// form, exact) or `user@issuer` as [`check_identity_spelling`] accepts it.
/// `<issuer>` is the short name of one of `issuers`; `<sub>` is the token's
/// `sub` as the audit log shows it (it may itself contain `@`: the issuer is
/// after the last one). A display name that begins with `sub:` cannot be
/// named by display; its subject form names its owner.
pub fn parse_named_identity<'a>(
    text: &str,
    issuers: impl IntoIterator<Item = &'a IssuerConfig>,
) -> Result<NamedIdentity, String> {
    let issuers: Vec<&IssuerConfig> = issuers.into_iter().collect();
    let Some(rest) = text.strip_prefix(SUBJECT_PREFIX) else {
        check_identity_spelling(text, issuers)?;
        return Ok(NamedIdentity::Display(text.to_string()));
    };
    let shown: String = text.chars().take(64).collect();
    let form = "the subject form is sub:<sub>@<issuer>, with the sub the audit log shows";
    let Some((subject, issuer_name)) = rest.rsplit_once('@') else {
        return Err(format!(
            "identity {shown:?} is not sub:<sub>@<issuer>: {form}"
        ));
    };
    if subject.is_empty() || subject.len() > MAX_SUBJECT || subject.chars().any(|c| c.is_control())
    {
        return Err(format!(
            "identity {shown:?}: a sub is 1 to {MAX_SUBJECT} printable characters; {form}"
        ));
    }
    let Some(issuer) = issuers.iter().find(|i| i.name == issuer_name) else {
        let names: Vec<&str> = issuers.iter().map(|i| i.name.as_str()).collect();
        return Err(format!(
            "identity {shown:?} names no configured issuer (this CA's issuers: {}); {form}",
            names.join(", ")
        ));
    };
    Ok(NamedIdentity::Subject {
        key: IdentityKey {
            issuer: issuer.issuer.clone(),
            subject: subject.to_string(),
        },
        spelled: format!("{SUBJECT_PREFIX}{subject}@{}", issuer.name),
    })
}

/// Checks that `text` names an identity exactly as the CA spells it in
/// certificates, logs and records ([`Identity::display_name`]): `user@issuer`,
/// where `issuer` is the short name of one of `issuers`, and `user` is a login
/// name (lower case) for an issuer of people, or a workload name for an
/// issuer whose usernames come from another claim. A revocation naming any
/// other spelling would match nobody, so the error says what is wrong, and
/// the CA's spelling when a near miss (case) has one.
pub fn check_identity_spelling<'a>(
    text: &str,
    issuers: impl IntoIterator<Item = &'a IssuerConfig>,
) -> Result<(), String> {
    let issuers: Vec<&IssuerConfig> = issuers.into_iter().collect();
    let shown: String = text.chars().take(64).collect();
    let example = issuers.first().map_or("corp", |i| i.name.as_str());
    let form =
        format!("identities are spelled user@issuer, as in the audit log, e.g. alice@{example}");
    let Some((user, issuer_name)) = text.rsplit_once('@') else {
        return Err(format!("identity {shown:?} is not user@issuer: {form}"));
    };
    let exact = issuers.iter().find(|i| i.name == issuer_name);
    let Some(issuer) = exact.or_else(|| {
        issuers
            .iter()
            .find(|i| i.name.eq_ignore_ascii_case(issuer_name))
    }) else {
        let names: Vec<&str> = issuers.iter().map(|i| i.name.as_str()).collect();
        return Err(format!(
            "identity {shown:?} names no configured issuer (this CA's issuers: {}); {form}",
            names.join(", ")
        ));
    };
    match user_spelling(user, issuer) {
        Some(spelled) if exact.is_some() && spelled == user => Ok(()),
        Some(spelled) => Err(format!(
            "identity {shown:?} is not spelled as the CA spells identities: did you mean \
             {spelled}@{}? ({form})",
            issuer.name
        )),
        None => Err(format!(
            "identity {shown:?}: the CA gives users of issuer {} no such name; {form}",
            issuer.name
        )),
    }
}

/// How the CA spells `user` for a user of `issuer`, when it can be one.
fn user_spelling(user: &str, issuer: &IssuerConfig) -> Option<String> {
    match issuer.username_claim {
        UsernameClaim::PreferredUsername | UsernameClaim::Email => {
            let lowered = user.to_ascii_lowercase();
            is_login_name(&lowered).then_some(lowered)
        }
        UsernameClaim::Claim(_) => is_workload_name(user).then(|| user.to_string()),
    }
}

/// Longest Unix login name accepted (Linux `LOGIN_NAME_MAX` minus NUL is 255;
/// `useradd` and most tools stop at 32).
pub const MAX_LOGIN_NAME: usize = 32;

/// Whether `name` is a portable Unix login name: lower-case letters, digits,
/// `_`, `.`, `-`, starting with a letter or `_`, at most 32 characters.
pub fn is_login_name(name: &str) -> bool {
    let mut chars = name.chars();
    match chars.next() {
        Some(c) if c.is_ascii_lowercase() || c == '_' => {}
        _ => return false,
    }
    name.len() <= MAX_LOGIN_NAME
        && chars
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '.' | '-'))
}

/// Whether `name` can be a workload's name (from an arbitrary claim, such as
/// GitHub's `repository`): printable ASCII without spaces, quotes or
/// backslashes (it goes into key IDs and log lines), at most 128 characters.
pub fn is_workload_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\')
}

/// Turns a username claim into a login name: the local part of an email,
/// lower-cased. Anything else that is not already a login name is refused
/// rather than rewritten, because rewriting (`a.b` → `a_b`) lets two people
/// collide on one account.
pub fn login_name_from_claim(value: &str, is_email: bool) -> Option<String> {
    let local = if is_email {
        let (local, domain) = value.rsplit_once('@')?;
        if domain.is_empty() {
            return None;
        }
        local
    } else {
        value
    };
    let lowered = local.to_ascii_lowercase();
    is_login_name(&lowered).then_some(lowered)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// An issuer named `name` whose usernames come from `username_claim`.
    pub(crate) fn issuer(name: &str, username_claim: UsernameClaim) -> IssuerConfig {
        IssuerConfig {
            name: name.into(),
            issuer: format!("https://{name}.example"),
            client_id: "jit-ssh".into(),
            username_claim,
            groups_claim: "groups".into(),
            email_domains: Vec::new(),
            scopes: vec!["openid".into()],
            nonce: crate::config::NonceRule::default(),
            provider: crate::config::ProviderSettings::default(),
        }
    }

    #[test]
    fn identities_are_named_as_the_ca_spells_them_or_refused_with_its_spelling() {
        let issuers = [
            issuer("corp", UsernameClaim::PreferredUsername),
            issuer("mail", UsernameClaim::Email),
            issuer("github", UsernameClaim::Claim("repository".into())),
        ];
        for spelled in [
            "alice@corp",
            "bob.smith@mail",
            "Acme/App@github",
            "a@b@github",
        ] {
            assert_eq!(
                check_identity_spelling(spelled, &issuers),
                Ok(()),
                "{spelled}"
            );
        }
        let refused = |text: &str| check_identity_spelling(text, &issuers).expect_err(text);
        for (near_miss, spelling) in [
            ("Alice@corp", "alice@corp"),
            ("alice@CORP", "alice@corp"),
            ("Bob.Smith@Mail", "bob.smith@mail"),
            ("Acme/App@GitHub", "Acme/App@github"),
        ] {
            let message = refused(near_miss);
            assert!(
                message.contains(&format!("did you mean {spelling}?")),
                "{message}"
            );
        }
        for unknown in ["alice@example.com", "alice@", "alice@corp.example"] {
            let message = refused(unknown);
            assert!(message.contains("names no configured issuer"), "{message}");
            assert!(message.contains("corp, mail, github"), "{message}");
        }
        for bad in ["alice", "", "@corp", "a b@corp", "root;@corp", "a b@github"] {
            let message = refused(bad);
            assert!(message.contains("user@issuer"), "{bad:?}: {message}");
            assert!(!message.contains("did you mean"), "{bad:?}: {message}");
        }
        let long = format!("{}@corp", "A".repeat(5000));
        assert!(
            refused(&long).len() < 400,
            "a long name is not echoed whole"
        );
    }

    #[test]
    fn the_subject_form_names_one_key_of_a_configured_issuer() {
        let issuers = [
            issuer("corp", UsernameClaim::Email),
            issuer("github", UsernameClaim::Claim("repository".into())),
        ];
        assert_eq!(
            parse_named_identity("sub:user-alice@corp", &issuers),
            Ok(NamedIdentity::Subject {
                key: IdentityKey {
                    issuer: "https://corp.example".into(),
                    subject: "user-alice".into(),
                },
                spelled: "sub:user-alice@corp".into(),
            })
        );
        // A sub with an @ in it: the issuer is after the last one.
        assert!(matches!(
            parse_named_identity("sub:alice@corp.example@corp", &issuers),
            Ok(NamedIdentity::Subject { key, .. }) if key.subject == "alice@corp.example"
        ));
        assert_eq!(
            parse_named_identity("alice@corp", &issuers),
            Ok(NamedIdentity::Display("alice@corp".into()))
        );
        for (bad, says) in [
            ("sub:user-alice", "is not sub:<sub>@<issuer>"),
            ("sub:@corp", "1 to 255 printable"),
            ("sub:a\nb@corp", "1 to 255 printable"),
            ("sub:user-alice@CORP", "names no configured issuer"),
            ("sub:user-alice@elsewhere", "corp, github"),
            ("Alice@corp", "did you mean alice@corp?"),
        ] {
            let message = parse_named_identity(bad, &issuers).expect_err(bad);
            assert!(message.contains(says), "{bad:?}: {message}");
        }
        let long = format!("sub:{}@corp", "x".repeat(256));
        assert!(parse_named_identity(&long, &issuers).is_err());
    }

    #[test]
    fn login_names() {
        assert!(is_login_name("alice"));
        assert!(is_login_name("_svc-deploy.1"));
        for bad in [
            "",
            "1abc",
            "-rf",
            "a b",
            "root;",
            "ALICE",
            "a/b",
            &"a".repeat(33),
        ] {
            assert!(!is_login_name(bad), "{bad:?}");
        }
    }

    #[test]
    fn claims_become_login_names_or_are_refused() {
        assert_eq!(
            login_name_from_claim("Alice", false).as_deref(),
            Some("alice")
        );
        assert_eq!(
            login_name_from_claim("Bob.Smith@example.com", true).as_deref(),
            Some("bob.smith")
        );
        assert_eq!(login_name_from_claim("bob@", true), None);
        assert_eq!(login_name_from_claim("no-at-sign", true), None);
        assert_eq!(login_name_from_claim("Zoë", false), None);
        assert_eq!(login_name_from_claim("alice@corp", false), None);
    }
}
