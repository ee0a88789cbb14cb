//! Who is asking: the verified facts of an ID token that policy decides on.

use serde_json::{Map, Value};

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
mod tests {
    use super::*;

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
