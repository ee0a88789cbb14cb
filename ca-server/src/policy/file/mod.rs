//! Policy files: reading `policy_dir`, parsing TOML into checked rules, and
//! reporting every problem as `file:line:column: what is wrong`.
//!
//! Reading is separate from parsing ([`read_dir`] then [`compile`]) so the
//! server can tell whether anything changed before parsing, and tests can
//! compile text without files. A policy that has any error is refused as a
//! whole: there is no partial load and never an empty policy.
//!
//! `read` reads the directory, `raw` is the file format as TOML gives it,
//! `compiler` checks one rule at a time, `issuers` makes every rule that
//! hands out power name the issuers it believes when the config trusts
//! several, and `shadow` finds allow rules a deny rule always cancels;
//! [`compile`] runs them and checks across files.

mod combination;
mod compiler;
mod issuers;
mod raw;
mod read;
mod shadow;

use std::collections::HashMap;
use std::fmt;
use std::path::Path;

use super::engine::PolicySet;
use super::reserved::ReservedLogins;
use super::rules::Location;
use crate::config::CertSettings;
use compiler::{Compiler, Locator};
use raw::RawFile;
use shadow::shadows;

pub use compiler::{DEFAULT_MAX_WINDOW, MAX_WINDOW_CEILING};
pub use read::{read_dir, Fingerprint, Source, MAX_FILE_BYTES};

/// What the policy is checked against.
#[derive(Debug, Clone)]
pub struct PolicyContext {
    /// Issuer names of the config, when known; `match.issuer` must name one.
    pub issuers: Option<Vec<String>>,
    /// Global lifetimes: the fallback `default_ttl` and the ceiling.
    pub certs: CertSettings,
    /// Names templates never expand to (`reserved_logins` and the built-in
    /// list).
    pub reserved: ReservedLogins,
}

/// One problem in the policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// Where, when it is in a file.
    pub location: Option<Location>,
    /// What is wrong, and how to fix it when that is not obvious.
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.location {
            Some(location) => write!(f, "{location}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

/// Reads and compiles `dir`. When some files cannot be read, the policy is
/// refused with every one of them and every problem in the files that could
/// be read, so one run of `policy check` lists everything to fix.
pub fn load_dir(
    dir: &Path,
    context: &PolicyContext,
) -> Result<(PolicySet, Fingerprint), Vec<Diagnostic>> {
    let read = read::read_each(dir)?;
    if read.unreadable.is_empty() {
        return compile(&read.sources, context).map(|set| (set, read.fingerprint));
    }
    let mut problems = read.unreadable;
    if let Err(diagnostics) = compile(&read.sources, context) {
        // Problems of the policy as a whole (no rule grants anything) have
        // no location, and say nothing true while files are missing from it.
        problems.extend(diagnostics.into_iter().filter(|d| d.location.is_some()));
    }
    Err(problems)
}

/// Parses and checks every source into one policy, or reports every problem.
pub fn compile(sources: &[Source], context: &PolicyContext) -> Result<PolicySet, Vec<Diagnostic>> {
    let mut errors = Vec::new();
    let mut warnings = Vec::new();
    let mut allow = Vec::new();
    let mut deny = Vec::new();
    let mut admin = Vec::new();
    for source in sources {
        let locator = Locator::new(source);
        let raw: RawFile = match toml::from_str(&source.text) {
            Ok(raw) => raw,
            Err(e) => {
                errors.push(Diagnostic {
                    location: Some(locator.at(e.span().unwrap_or(0..0))),
                    message: e.message().trim().to_string(),
                });
                continue;
            }
        };
        let mut compiler = Compiler {
            locator,
            context,
            errors: &mut errors,
            warnings: &mut warnings,
        };
        for rule in &raw.rule {
            allow.push(compiler.allow(rule));
        }
        for rule in &raw.deny {
            deny.push(compiler.deny(rule));
        }
        for rule in &raw.admin {
            admin.push(compiler.admin(rule));
        }
    }
    let mut seen: HashMap<&str, &Location> = HashMap::new();
    let named = allow
        .iter()
        .map(|r| (&r.name, &r.location))
        .chain(deny.iter().map(|r| (&r.name, &r.location)))
        .chain(admin.iter().map(|r| (&r.name, &r.location)));
    let mut order: Vec<(&String, &Location)> = named.collect();
    order.sort_by(|a, b| (a.1.file.as_ref(), a.1.line).cmp(&(b.1.file.as_ref(), b.1.line)));
    for (name, location) in order {
        if let Some(first) = seen.get(name.as_str()) {
            errors.push(Diagnostic {
                location: Some(location.clone()),
                message: format!("duplicate rule name {name:?} (first defined at {first})"),
            });
        } else {
            seen.insert(name, location);
        }
    }
    for rule in &allow {
        if let Some(d) = deny.iter().find(|d| shadows(d, rule)) {
            errors.push(Diagnostic {
                location: Some(rule.location.clone()),
                message: format!(
                    "rule {:?} is shadowed by deny rule {:?} ({}): it can never grant anything",
                    rule.name, d.name, d.location
                ),
            });
        }
    }
    if errors.is_empty() && allow.is_empty() {
        errors.push(Diagnostic {
            location: None,
            message:
                "the policy has no [[rule]] that grants anything; every request would be denied"
                    .into(),
        });
    }
    warnings.extend(combination::warnings(
        &allow,
        &deny,
        &admin,
        &context.reserved,
    ));
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(PolicySet {
        allow,
        deny,
        admin,
        certs: context.certs,
        reserved: context.reserved.clone(),
        files: sources.iter().map(|s| s.path.clone()).collect(),
        warnings,
    })
}
