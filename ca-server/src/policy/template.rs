//! Principal templates: `"{username}"`, `"ci-{claim.repository_owner}"`,
//! `"deploy"`.
//!
//! A template is checked when the policy loads: an unknown placeholder, an
//! unbalanced brace, or literal text that no Unix login name can contain
//! (`"{username}@host"`, `"Admin-{username}"`, a leading digit) is an error,
//! because such a rule could never grant anything. At evaluation every
//! expansion is checked again as a login name and dropped if it is not one;
//! values are never rewritten (lower-cased, trimmed) into one, because a
//! rewrite lets two identities collide on one account. An expansion that
//! names a reserved account ([`ReservedLogins`]: `root`, the system accounts)
//! is dropped too, whatever the token says; only a literal principal grants
//! one.

use serde_json::Value;

use super::reserved::ReservedLogins;
use crate::identity::{is_login_name, Identity, MAX_LOGIN_NAME};

/// Most principals one template may expand to (list claims multiply).
pub const MAX_EXPANSIONS: usize = 64;

/// A parsed principal template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    text: String,
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(String),
    Username,
    EmailLocal,
    Claim(String),
}

/// Why an expansion produced nothing, for the explain trace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expansion {
    /// Login names produced.
    pub principals: Vec<String>,
    /// Values that were produced but are not login names, or missing inputs.
    pub dropped: Vec<String>,
}

impl Template {
    /// Parses and statically checks a template.
    pub fn parse(text: &str) -> Result<Template, String> {
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut rest = text;
        while let Some(c) = rest.chars().next() {
            match c {
                '{' => {
                    let Some(end) = rest.find('}') else {
                        return Err(format!("template {text:?} has an unclosed `{{`"));
                    };
                    let name = &rest[1..end];
                    let part = match name {
                        "username" => Part::Username,
                        "email_local" => Part::EmailLocal,
                        _ => match name.strip_prefix("claim.") {
                            Some(claim) if is_claim_name(claim) => Part::Claim(claim.to_string()),
                            _ => {
                                return Err(format!(
                                    "template {text:?}: unknown placeholder {{{name}}} \
                                     (use {{username}}, {{email_local}} or {{claim.NAME}})"
                                ))
                            }
                        },
                    };
                    if !literal.is_empty() {
                        parts.push(Part::Literal(std::mem::take(&mut literal)));
                    }
                    parts.push(part);
                    rest = &rest[end + 1..];
                }
                '}' => return Err(format!("template {text:?} has a `}}` without `{{`")),
                c => {
                    literal.push(c);
                    rest = &rest[c.len_utf8()..];
                }
            }
        }
        if !literal.is_empty() {
            parts.push(Part::Literal(literal));
        }
        let template = Template {
            text: text.to_string(),
            parts,
        };
        template.check_can_expand()?;
        Ok(template)
    }

    /// The template as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The literal principal, when the template has no placeholder.
    pub fn literal(&self) -> Option<&str> {
        match self.parts.as_slice() {
            [Part::Literal(text)] => Some(text),
            _ => None,
        }
    }

    fn check_can_expand(&self) -> Result<(), String> {
        let text = &self.text;
        if self.parts.is_empty() {
            return Err("empty principal".into());
        }
        if let Some(literal) = self.literal() {
            if !is_login_name(literal) {
                return Err(format!(
                    "principal {literal:?} is not a Unix login name \
                     (a-z, 0-9, '_', '.', '-', starting with a letter or '_', at most {MAX_LOGIN_NAME})"
                ));
            }
            return Ok(());
        }
        let mut literal_len = 0;
        for (index, part) in self.parts.iter().enumerate() {
            let Part::Literal(literal) = part else {
                continue;
            };
            literal_len += literal.len();
            if let Some(bad) = literal
                .chars()
                .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || "_.-".contains(*c)))
            {
                return Err(format!(
                    "template {text:?} can never expand to a login name: it contains {bad:?}"
                ));
            }
            if index == 0 && !literal.starts_with(|c: char| c.is_ascii_lowercase() || c == '_') {
                return Err(format!(
                    "template {text:?} can never expand to a login name: \
                     login names start with a letter or '_'"
                ));
            }
        }
        if literal_len >= MAX_LOGIN_NAME {
            return Err(format!(
                "template {text:?} can never expand to a login name: \
                 longer than {MAX_LOGIN_NAME} characters"
            ));
        }
        Ok(())
    }

    /// Expands the template for `identity`. Multi-valued claims give one
    /// principal per value (several give their product, capped at
    /// [`MAX_EXPANSIONS`]). A template with a placeholder never yields a
    /// name in `reserved`; a literal one yields its name whatever it is.
    pub fn expand(&self, identity: &Identity, reserved: &ReservedLogins) -> Expansion {
        if let Some(literal) = self.literal() {
            return Expansion {
                principals: vec![literal.to_string()],
                dropped: Vec::new(),
            };
        }
        let mut partial = vec![String::new()];
        let mut dropped = Vec::new();
        for part in &self.parts {
            let values: Vec<String> = match part {
                Part::Literal(text) => vec![text.clone()],
                Part::Username => vec![identity.username.clone()],
                Part::EmailLocal => match verified_email_local(identity) {
                    Some(local) => vec![local],
                    None => {
                        dropped.push("{email_local}: no verified email".into());
                        return Expansion {
                            principals: Vec::new(),
                            dropped,
                        };
                    }
                },
                Part::Claim(name) => {
                    let values = claim_values(name, identity.claims.get(name), &mut dropped);
                    if values.is_empty() {
                        dropped.push(format!(
                            "{{claim.{name}}} in {:?}: claim missing or empty",
                            self.text
                        ));
                        return Expansion {
                            principals: Vec::new(),
                            dropped,
                        };
                    }
                    values
                }
            };
            let mut next = Vec::new();
            'outer: for prefix in &partial {
                for value in &values {
                    if next.len() >= MAX_EXPANSIONS {
                        dropped.push(format!("more than {MAX_EXPANSIONS} expansions"));
                        break 'outer;
                    }
                    next.push(format!("{prefix}{value}"));
                }
            }
            partial = next;
        }
        let mut principals = Vec::new();
        for candidate in partial {
            if !is_login_name(&candidate) {
                dropped.push(format!(
                    "{:?} is not a login name",
                    candidate.chars().take(40).collect::<String>()
                ));
            } else if let Some(why) = reserved.reason(&candidate) {
                dropped.push(format!(
                    "{candidate:?} dropped: {why}; a template never grants a reserved \
                     account (name it literally in a rule to grant it)"
                ));
            } else if !principals.contains(&candidate) {
                principals.push(candidate);
            }
        }
        Expansion {
            principals,
            dropped,
        }
    }
}

/// The values a claim gives a template: a string, an integer as its decimal
/// string, or each such item of a list. An empty string is a missing value,
/// never an empty part of a name (`ci-{claim.team}` with an empty team gives
/// nothing, not `ci-`); every other value is left out and said in `dropped`,
/// for the trace.
fn claim_values(name: &str, value: Option<&Value>, dropped: &mut Vec<String>) -> Vec<String> {
    match value {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .filter_map(|(index, item)| match scalar(item) {
                Ok(text) => Some(text),
                Err(what) => {
                    dropped.push(format!("claim {name}[{index}] is {what}, left out"));
                    None
                }
            })
            .collect(),
        Some(one) => match scalar(one) {
            Ok(text) => vec![text],
            Err(what) => {
                dropped.push(format!("claim {name} is {what}"));
                Vec::new()
            }
        },
    }
}

/// A claim value as text to match or expand: a non-empty string, or an
/// integer as its decimal string. Anything else (an empty string, a
/// boolean, a fraction, null, a list or an object) is not one.
pub fn claim_text(value: &Value) -> Option<String> {
    scalar(value).ok()
}

/// A claim value as a name part, or what it is instead.
fn scalar(value: &Value) -> Result<String, &'static str> {
    match value {
        Value::String(s) if s.is_empty() => Err("an empty string"),
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) if n.is_i64() || n.is_u64() => Ok(n.to_string()),
        Value::Number(_) => Err("a fractional number, not a string or integer"),
        Value::Bool(_) => Err("a boolean, not a string or integer"),
        Value::Null => Err("null"),
        Value::Array(_) => Err("a nested list"),
        Value::Object(_) => Err("an object, not a string or integer"),
    }
}

/// The lower-cased local part of the identity's email, only when the token
/// says the email is verified: an unverified address is whatever the user
/// typed, and `root@…` must not become the principal `root`.
pub fn verified_email_local(identity: &Identity) -> Option<String> {
    let email = verified_email(identity)?;
    let (local, _) = email.rsplit_once('@')?;
    Some(local.to_ascii_lowercase())
}

/// The identity's email when `email_verified` is true.
pub fn verified_email(identity: &Identity) -> Option<&str> {
    if identity.claims.get("email_verified") != Some(&Value::Bool(true)) {
        return None;
    }
    identity.email.as_deref()
}

/// Claim names allowed in `{claim.NAME}` and `[rule.match.claims]`.
pub fn is_claim_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-:.".contains(c))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn identity(claims: Value) -> Identity {
        let claims = claims.as_object().cloned().unwrap_or_default();
        Identity {
            issuer_name: "corp".into(),
            issuer: "https://idp".into(),
            subject: "u1".into(),
            username: "alice".into(),
            email: claims
                .get("email")
                .and_then(Value::as_str)
                .map(String::from),
            groups: vec![],
            claims,
        }
    }

    #[test]
    fn expansion_table() {
        let verified = json!({"email": "Alice.B@example.com", "email_verified": true,
            "repo_owner": "acme", "teams": ["web", "db", "Bad Team", 7.5, true, ""], "empty": [],
            "uid": 1001, "team": "", "ids": [7, "", "x"]});
        let unverified = json!({"email": "root@evil.example", "email_verified": false});
        let cases: &[(&str, &Value, &[&str])] = &[
            ("deploy", &verified, &["deploy"]),
            ("{username}", &verified, &["alice"]),
            ("{username}-admin", &verified, &["alice-admin"]),
            ("{email_local}", &verified, &["alice.b"]),
            ("{email_local}", &unverified, &[]),
            ("ci-{claim.repo_owner}", &verified, &["ci-acme"]),
            ("team-{claim.teams}", &verified, &["team-web", "team-db"]),
            ("{claim.missing}", &verified, &[]),
            ("{claim.empty}", &verified, &[]),
            (
                "{claim.repo_owner}-{claim.teams}",
                &verified,
                &["acme-web", "acme-db"],
            ),
            // Integers expand to their decimal strings.
            ("u{claim.uid}", &verified, &["u1001"]),
            ("id-{claim.ids}", &verified, &["id-7", "id-x"]),
            // An empty string is a missing value, not an empty part.
            ("ci-{claim.team}", &verified, &[]),
        ];
        for (text, claims, expected) in cases {
            let template = Template::parse(text).expect(text);
            let got = template.expand(&identity((*claims).clone()), &ReservedLogins::default());
            assert_eq!(got.principals, *expected, "{text} with {claims}");
        }
    }

    /// Issue 17 item 8: an empty claim is missing, and the trace names the
    /// claim and every list item left out.
    #[test]
    fn empty_and_non_string_values_are_reported_by_claim() {
        let who = identity(json!({"team": "", "teams": ["web", 7.5, "", {"a": 1}], "flag": true}));
        let cases: &[(&str, &[&str], &[&str])] = &[
            (
                "ci-{claim.team}",
                &[],
                &[
                    "claim team is an empty string",
                    "{claim.team} in \"ci-{claim.team}\": claim missing or empty",
                ],
            ),
            (
                "t-{claim.teams}",
                &["t-web"],
                &[
                    "claim teams[1] is a fractional number",
                    "claim teams[2] is an empty string",
                    "claim teams[3] is an object",
                ],
            ),
            (
                "f-{claim.flag}",
                &[],
                &["claim flag is a boolean", "{claim.flag} in"],
            ),
            ("m-{claim.missing}", &[], &["{claim.missing} in"]),
        ];
        for (text, principals, dropped) in cases {
            let got = Template::parse(text)
                .expect(text)
                .expand(&who, &ReservedLogins::default());
            assert_eq!(got.principals, *principals, "{text}");
            assert_eq!(
                got.dropped.len(),
                dropped.len(),
                "{text}: {:?}",
                got.dropped
            );
            for (line, want) in got.dropped.iter().zip(dropped.iter()) {
                assert!(
                    line.starts_with(want),
                    "{text}: {line:?} should start with {want:?}"
                );
            }
        }
    }

    #[test]
    fn claim_values_that_are_not_login_names_are_dropped_not_rewritten() {
        let template = Template::parse("{claim.name}").expect("parses");
        for value in ["Alice", "root;", "a b", "../x", "1abc", ""] {
            let got = template.expand(
                &identity(json!({ "name": value })),
                &ReservedLogins::default(),
            );
            assert!(
                got.principals.is_empty(),
                "{value:?} -> {:?}",
                got.principals
            );
        }
        let many = json!({ "teams": (0..200).map(|i| format!("t{i}")).collect::<Vec<_>>() });
        let got = Template::parse("{claim.teams}")
            .expect("parses")
            .expand(&identity(many), &ReservedLogins::default());
        assert_eq!(got.principals.len(), MAX_EXPANSIONS);
    }

    #[test]
    fn templates_never_expand_to_a_reserved_account_but_literals_do() {
        let reserved = ReservedLogins::with_extra(&["jenkins".into()]).expect("valid");
        let root_everywhere = json!({"email": "Root@corp.example", "email_verified": true,
            "login": "root", "logins": ["alice", "daemon", "systemd-network", "jenkins"]});
        let mut as_root = identity(root_everywhere);
        as_root.username = "root".into();
        let cases: &[(&str, &[&str], &[&str])] = &[
            (
                "{username}",
                &[],
                &["\"root\" dropped: root is a built-in reserved login"],
            ),
            (
                "{email_local}",
                &[],
                &["\"root\" dropped: root is a built-in reserved login"],
            ),
            ("{claim.login}", &[], &["\"root\" dropped"]),
            (
                "{claim.logins}",
                &["alice"],
                &[
                    "\"daemon\" dropped",
                    "\"systemd-network\" dropped: systemd-*",
                    "\"jenkins\" dropped: jenkins is in reserved_logins",
                ],
            ),
            ("{username}-ops", &["root-ops"], &[]),
            ("root", &["root"], &[]),
            ("jenkins", &["jenkins"], &[]),
        ];
        for (text, principals, dropped) in cases {
            let got = Template::parse(text)
                .expect(text)
                .expand(&as_root, &reserved);
            assert_eq!(got.principals, *principals, "{text}");
            assert_eq!(
                got.dropped.len(),
                dropped.len(),
                "{text}: {:?}",
                got.dropped
            );
            for (line, want) in got.dropped.iter().zip(dropped.iter()) {
                assert!(
                    line.starts_with(want),
                    "{text}: {line:?} should start with {want:?}"
                );
            }
        }
    }

    #[test]
    fn templates_that_can_never_expand_are_refused() {
        for (bad, why) in [
            ("{username}@host", "'@'"),
            ("Admin-{username}", "'A'"),
            ("1{username}", "start with"),
            ("{user}", "unknown placeholder"),
            ("{claim.}", "unknown placeholder"),
            ("{claim.a b}", "unknown placeholder"),
            ("{username", "unclosed"),
            ("user}", "without"),
            ("Root", "not a Unix login name"),
            ("", "empty"),
            (&format!("{}{{username}}", "a".repeat(32)), "longer than"),
        ] {
            let err = Template::parse(bad).expect_err(bad);
            assert!(err.contains(why), "{bad:?}: {err}");
        }
        for good in [
            "root",
            "_svc",
            "{username}",
            "{claim.x}-deploy",
            "u.{email_local}",
        ] {
            Template::parse(good).expect(good);
        }
    }
}
