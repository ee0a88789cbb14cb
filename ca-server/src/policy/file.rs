//! Policy files: reading `policy_dir`, parsing TOML into checked rules, and
//! reporting every problem as `file:line:column: what is wrong`.
//!
//! Reading is separate from parsing ([`read_dir`] then [`compile`]) so the
//! server can tell whether anything changed before parsing, and tests can
//! compile text without files. A policy that has any error is refused as a
//! whole: there is no partial load and never an empty policy.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use jit_ssh_common::duration::{format_duration, parse_duration};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use toml::Spanned;

use super::engine::{
    AdminRule, AllowRule, Approval, AutoApproval, ClaimMatch, Conditions, DenyRule, Location,
    PolicySet,
};
use super::glob::Glob;
use super::restrict::{check_extension, SourceEntry, DEFAULT_RULE_EXTENSIONS};
use super::template::{is_claim_name, Template};
use super::window::TimeWindow;
use crate::config::{CertSettings, MAX_TTL_CEILING};

/// Largest policy file read.
pub const MAX_FILE_BYTES: u64 = 1024 * 1024;

/// What the policy is checked against.
#[derive(Debug, Clone)]
pub struct PolicyContext {
    /// Issuer names of the config, when known; `match.issuer` must name one.
    pub issuers: Option<Vec<String>>,
    /// Global lifetimes: the fallback `default_ttl` and the ceiling.
    pub certs: CertSettings,
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

/// A policy file's text.
#[derive(Debug, Clone)]
pub struct Source {
    /// Path shown in diagnostics.
    pub path: PathBuf,
    /// Its contents.
    pub text: String,
}

/// SHA-256 over the names and contents of the files read.
pub type Fingerprint = [u8; 32];

/// Reads every `*.toml` directly in `dir` (not hidden ones), sorted by name.
/// A symlinked `dir` is resolved first, so an atomic symlink swap is read
/// entirely before or entirely after.
pub fn read_dir(dir: &Path) -> Result<(Vec<Source>, Fingerprint), Diagnostic> {
    let fail = |message: String| Diagnostic {
        location: None,
        message,
    };
    let real = std::fs::canonicalize(dir)
        .map_err(|e| fail(format!("policy_dir {}: {e}", dir.display())))?;
    let entries =
        std::fs::read_dir(&real).map_err(|e| fail(format!("policy_dir {}: {e}", dir.display())))?;
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| fail(format!("policy_dir {}: {e}", dir.display())))?;
        let name = entry.file_name().to_string_lossy().to_string();
        if name.ends_with(".toml") && !name.starts_with('.') {
            names.push(name);
        }
    }
    names.sort();
    if names.is_empty() {
        return Err(fail(format!(
            "policy_dir {} has no *.toml policy files; the CA never runs without a policy \
             (see docs/policies.md, or copy the examples in policies/)",
            dir.display()
        )));
    }
    let mut hasher = Sha256::new();
    let mut sources = Vec::new();
    for name in names {
        let path = real.join(&name);
        let shown = dir.join(&name);
        let size = std::fs::metadata(&path)
            .map_err(|e| fail(format!("{}: {e}", shown.display())))?
            .len();
        if size > MAX_FILE_BYTES {
            return Err(fail(format!(
                "{}: larger than {MAX_FILE_BYTES} bytes",
                shown.display()
            )));
        }
        let text = std::fs::read_to_string(&path)
            .map_err(|e| fail(format!("{}: {e}", shown.display())))?;
        hasher.update((name.len() as u64).to_le_bytes());
        hasher.update(name.as_bytes());
        hasher.update((text.len() as u64).to_le_bytes());
        hasher.update(text.as_bytes());
        sources.push(Source { path: shown, text });
    }
    Ok((sources, hasher.finalize().into()))
}

/// Reads and compiles `dir`.
pub fn load_dir(
    dir: &Path,
    context: &PolicyContext,
) -> Result<(PolicySet, Fingerprint), Vec<Diagnostic>> {
    let (sources, fingerprint) = read_dir(dir).map_err(|d| vec![d])?;
    compile(&sources, context).map(|set| (set, fingerprint))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    rule: Vec<RawAllow>,
    #[serde(default)]
    deny: Vec<RawDeny>,
    #[serde(default)]
    admin: Vec<RawAdmin>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAdmin {
    name: Spanned<String>,
    #[allow(dead_code)]
    description: Option<String>,
    #[serde(rename = "match")]
    conditions: Option<Spanned<RawMatch>>,
}

type Strings = Vec<Spanned<String>>;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAllow {
    name: Spanned<String>,
    #[allow(dead_code)]
    description: Option<String>,
    #[serde(rename = "match")]
    conditions: Option<Spanned<RawMatch>>,
    principals: Spanned<Strings>,
    default_ttl: Option<Spanned<String>>,
    max_ttl: Option<Spanned<String>>,
    #[serde(default)]
    window: Vec<Spanned<RawWindow>>,
    extensions: Option<Strings>,
    force_command: Option<Spanned<String>>,
    source_address: Option<Spanned<Strings>>,
    approval: Option<Spanned<RawApproval>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDeny {
    name: Spanned<String>,
    #[allow(dead_code)]
    description: Option<String>,
    #[serde(rename = "match")]
    conditions: Option<Spanned<RawMatch>>,
    principals: Option<Spanned<Strings>>,
    #[serde(default)]
    window: Vec<Spanned<RawWindow>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawMatch {
    issuer: Option<Spanned<Strings>>,
    username: Option<Spanned<Strings>>,
    email: Option<Spanned<Strings>>,
    email_domain: Option<Spanned<Strings>>,
    groups_any: Option<Spanned<Strings>>,
    groups_all: Option<Spanned<Strings>>,
    claims: Option<BTreeMap<String, Spanned<RawClaim>>>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawClaim {
    Bool(bool),
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWindow {
    #[serde(default)]
    days: Vec<String>,
    from: String,
    to: String,
    time_zone: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawApproval {
    approver_groups: Option<Spanned<Strings>>,
    approver_users: Option<Spanned<Strings>>,
    #[serde(default = "one")]
    min_approvals: Spanned<u32>,
    max_window: Option<Spanned<String>>,
    reason_required: Option<bool>,
    break_glass: Option<bool>,
    auto: Option<Spanned<RawAuto>>,
    window_from_first_use: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAuto {
    groups: Option<Spanned<Strings>>,
    #[serde(default)]
    window: Vec<Spanned<RawWindow>>,
}

/// Longest access window of a rule that names no `max_window`.
pub const DEFAULT_MAX_WINDOW: Duration = Duration::from_secs(3600);
/// No approval rule may allow a longer window than this.
pub const MAX_WINDOW_CEILING: Duration = Duration::from_secs(7 * 24 * 3600);

fn one() -> Spanned<u32> {
    Spanned::new(0..0, 1)
}

/// Turns byte offsets of one file into locations.
struct Locator {
    file: Arc<PathBuf>,
    line_starts: Vec<usize>,
    text: String,
}

impl Locator {
    fn new(source: &Source) -> Locator {
        let mut line_starts = vec![0];
        line_starts.extend(source.text.match_indices('\n').map(|(i, _)| i + 1));
        Locator {
            file: Arc::new(source.path.clone()),
            line_starts,
            text: source.text.clone(),
        }
    }

    fn at(&self, span: Range<usize>) -> Location {
        let offset = span.start.min(self.text.len());
        let line = self.line_starts.partition_point(|&s| s <= offset);
        let start = self.line_starts[line - 1];
        let column = self
            .text
            .get(start..offset)
            .map_or(1, |s| s.chars().count() + 1);
        Location {
            file: self.file.clone(),
            line,
            column,
        }
    }
}

struct Compiler<'a> {
    locator: Locator,
    context: &'a PolicyContext,
    errors: &'a mut Vec<Diagnostic>,
    warnings: &'a mut Vec<Diagnostic>,
}

impl Compiler<'_> {
    fn error(&mut self, span: Range<usize>, message: impl Into<String>) {
        let location = Some(self.locator.at(span));
        self.errors.push(Diagnostic {
            location,
            message: message.into(),
        });
    }

    fn duration(
        &mut self,
        field: &str,
        value: &Option<Spanned<String>>,
    ) -> Option<Option<Duration>> {
        let Some(value) = value else {
            return Some(None);
        };
        match parse_duration(value.get_ref()) {
            Ok(d) if d.is_zero() => {
                self.error(value.span(), format!("{field} must be at least 1s"));
                None
            }
            Ok(d) if d > MAX_TTL_CEILING => {
                self.error(
                    value.span(),
                    format!(
                        "{field} {} is above the CA's hard ceiling of {}",
                        format_duration(d),
                        format_duration(MAX_TTL_CEILING)
                    ),
                );
                None
            }
            Ok(d) => Some(Some(d)),
            Err(e) => {
                self.error(value.span(), format!("{field}: {e}"));
                None
            }
        }
    }

    fn non_empty<'s>(
        &mut self,
        field: &str,
        list: &'s Option<Spanned<Strings>>,
    ) -> &'s [Spanned<String>] {
        match list {
            Some(list) if list.get_ref().is_empty() => {
                self.error(
                    list.span(),
                    format!(
                        "{field} is an empty list, which matches nothing; remove it or add values"
                    ),
                );
                &[]
            }
            Some(list) => list.get_ref(),
            None => &[],
        }
    }

    fn globs(&mut self, field: &str, list: &Option<Spanned<Strings>>, lower: bool) -> Vec<Glob> {
        let mut out = Vec::new();
        for item in self.non_empty(field, list) {
            let text = if lower {
                item.get_ref().to_ascii_lowercase()
            } else {
                item.get_ref().clone()
            };
            match Glob::new(&text) {
                Ok(g) => out.push(g),
                Err(e) => self.error(item.span(), format!("{field}: {e}")),
            }
        }
        out
    }

    fn plain(&mut self, field: &str, list: &Option<Spanned<Strings>>) -> Vec<String> {
        let mut out = Vec::new();
        for item in self.non_empty(field, list) {
            if item.get_ref().trim().is_empty() {
                self.error(item.span(), format!("{field}: empty value"));
            } else {
                out.push(item.get_ref().clone());
            }
        }
        out
    }

    fn conditions(&mut self, raw: &Option<Spanned<RawMatch>>) -> Conditions {
        let Some(raw) = raw else {
            return Conditions::default();
        };
        let m = raw.get_ref();
        let issuers = self.plain("issuer", &m.issuer);
        if let (Some(known), Some(list)) = (self.context.issuers.clone(), &m.issuer) {
            for item in list.get_ref() {
                // A warning, not an error: one policy may serve several CAs
                // with different issuers, and the rule simply cannot apply here.
                if !known.contains(item.get_ref()) {
                    let location = Some(self.locator.at(item.span()));
                    self.warnings.push(Diagnostic {
                        location,
                        message: format!(
                            "issuer {:?} is not an [[oidc]] name of the config (known: {}); this condition never holds here",
                            item.get_ref(),
                            known.join(", ")
                        ),
                    });
                }
            }
        }
        let email_domains = self
            .plain("email_domain", &m.email_domain)
            .into_iter()
            .map(|d| d.to_ascii_lowercase())
            .collect();
        let mut claims = Vec::new();
        for (name, value) in m.claims.iter().flatten() {
            if !is_claim_name(name) {
                self.error(
                    value.span(),
                    format!("claims: {name:?} is not a claim name"),
                );
                continue;
            }
            let texts: Vec<String> = match value.get_ref() {
                RawClaim::Bool(b) => {
                    claims.push((name.clone(), ClaimMatch::Bool(*b)));
                    continue;
                }
                RawClaim::One(s) => vec![s.clone()],
                RawClaim::Many(list) if list.is_empty() => {
                    self.error(
                        value.span(),
                        format!("claims.{name} is an empty list, which matches nothing"),
                    );
                    continue;
                }
                RawClaim::Many(list) => list.clone(),
            };
            let mut globs = Vec::new();
            for text in texts {
                match Glob::new(&text) {
                    Ok(g) => globs.push(g),
                    Err(e) => self.error(value.span(), format!("claims.{name}: {e}")),
                }
            }
            claims.push((name.clone(), ClaimMatch::Globs(globs)));
        }
        Conditions {
            issuers,
            usernames: self.globs("username", &m.username, false),
            emails: self.globs("email", &m.email, true),
            email_domains,
            groups_any: self.plain("groups_any", &m.groups_any),
            groups_all: self.plain("groups_all", &m.groups_all),
            claims,
        }
    }

    fn windows(&mut self, raw: &[Spanned<RawWindow>]) -> Vec<TimeWindow> {
        let mut out = Vec::new();
        for w in raw {
            let r = w.get_ref();
            match TimeWindow::parse(&r.days, &r.from, &r.to, &r.time_zone) {
                Ok(window) => out.push(window),
                Err(e) => self.error(w.span(), format!("window: {e}")),
            }
        }
        out
    }

    fn name(&mut self, name: &Spanned<String>) {
        let n = name.get_ref();
        let ok = !n.is_empty()
            && n.len() <= 64
            && n.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
            && n.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.".contains(c));
        if !ok {
            self.error(name.span(), format!("rule name {n:?}: use 1-64 of a-z, 0-9, '-', '_', '.' (it goes into certificate key IDs)"));
        }
    }

    fn allow(&mut self, raw: &RawAllow) -> AllowRule {
        self.name(&raw.name);
        let conditions = self.conditions(&raw.conditions);
        if raw.conditions.is_none() || conditions.is_empty() {
            self.error(
                raw.name.span(),
                "rule has no [rule.match] conditions; an allow rule never applies to everyone \
                 implicitly (name the issuer, e.g. `issuer = [\"corp\"]`, to mean every identity of it)",
            );
        }
        if !conditions.claims.is_empty() && conditions.issuers.is_empty() {
            if let Some(m) = &raw.conditions {
                self.error(
                    m.span(),
                    "claims conditions need an `issuer` condition too: otherwise any trusted issuer \
                     could vouch for the claim",
                );
            }
        }
        let mut principals = Vec::new();
        if raw.principals.get_ref().is_empty() {
            self.error(
                raw.principals.span(),
                "principals is empty: the rule would grant nothing",
            );
        }
        for p in raw.principals.get_ref() {
            match Template::parse(p.get_ref()) {
                Ok(t) => principals.push(t),
                Err(e) => self.error(p.span(), e),
            }
        }
        let max_ttl = self.duration("max_ttl", &raw.max_ttl).flatten();
        let default_ttl = self.duration("default_ttl", &raw.default_ttl).flatten();
        let max_ttl = max_ttl.unwrap_or(self.context.certs.max_ttl);
        let default_ttl = default_ttl.unwrap_or(self.context.certs.default_ttl.min(max_ttl));
        if default_ttl > max_ttl {
            if let Some(span) = raw.default_ttl.as_ref().map(Spanned::span) {
                self.error(
                    span,
                    format!(
                        "default_ttl {} is longer than max_ttl {}",
                        format_duration(default_ttl),
                        format_duration(max_ttl)
                    ),
                );
            }
        }
        let mut extensions = Vec::new();
        match &raw.extensions {
            None => extensions = DEFAULT_RULE_EXTENSIONS.map(String::from).to_vec(),
            Some(list) => {
                for e in list {
                    match check_extension(e.get_ref()) {
                        Ok(()) if extensions.contains(e.get_ref()) => self.error(
                            e.span(),
                            format!("extension {:?} is listed twice", e.get_ref()),
                        ),
                        Ok(()) => extensions.push(e.get_ref().clone()),
                        Err(msg) => self.error(e.span(), msg),
                    }
                }
            }
        }
        let force_command = raw.force_command.as_ref().and_then(|c| {
            let cmd = c.get_ref();
            if cmd.trim().is_empty() || cmd.contains('\n') || cmd.contains('\0') {
                self.error(c.span(), "force_command must be one non-empty line");
                return None;
            }
            if extensions.iter().any(|e| e == "permit-user-rc") {
                self.error(c.span(), "force_command with the permit-user-rc extension: ~/.ssh/rc would run before the forced command; drop permit-user-rc");
            }
            Some(cmd.clone())
        });
        let source_address = raw.source_address.as_ref().map(|list| {
            if list.get_ref().is_empty() {
                self.error(list.span(), "source_address is empty: no address could use the certificate; remove it to allow any");
            }
            let mut entries = Vec::new();
            for item in list.get_ref() {
                match SourceEntry::parse(item.get_ref()) {
                    Ok(e) => entries.push(e),
                    Err(msg) => self.error(item.span(), msg),
                }
            }
            entries
        });
        let approval = raw.approval.as_ref().map(|a| {
            let r = a.get_ref();
            let list = |v: &Option<Spanned<Strings>>| -> Vec<String> {
                v.as_ref()
                    .map(|l| l.get_ref().iter().map(|g| g.get_ref().clone()).collect())
                    .unwrap_or_default()
            };
            let approver_groups = list(&r.approver_groups);
            let approver_users = list(&r.approver_users);
            if approver_groups.is_empty() && approver_users.is_empty() {
                let (span, field) = match (&r.approver_groups, &r.approver_users) {
                    (Some(g), _) => (g.span(), "approver_groups"),
                    (None, Some(u)) => (u.span(), "approver_users"),
                    (None, None) => (a.span(), "approver_groups"),
                };
                self.error(
                    span,
                    format!("approval.{field} is empty: nobody could approve"),
                );
            }
            for user in r.approver_users.iter().flat_map(|l| l.get_ref()) {
                let valid = user
                    .get_ref()
                    .split_once('@')
                    .is_some_and(|(name, issuer)| !name.is_empty() && !issuer.is_empty());
                if !valid {
                    self.error(
                        user.span(),
                        "approval.approver_users entries are `user@issuer` (the issuer's short name)",
                    );
                }
            }
            if *r.min_approvals.get_ref() == 0 || *r.min_approvals.get_ref() > 10 {
                self.error(
                    r.min_approvals.span(),
                    "approval.min_approvals must be between 1 and 10",
                );
            }
            let max_window = match &r.max_window {
                None => DEFAULT_MAX_WINDOW,
                Some(w) => match parse_duration(w.get_ref()) {
                    Ok(d) if d >= Duration::from_secs(60) && d <= MAX_WINDOW_CEILING => d,
                    Ok(_) => {
                        self.error(
                            w.span(),
                            format!(
                                "approval.max_window must be between 1m and {}",
                                format_duration(MAX_WINDOW_CEILING)
                            ),
                        );
                        DEFAULT_MAX_WINDOW
                    }
                    Err(e) => {
                        self.error(w.span(), format!("approval.max_window: {e}"));
                        DEFAULT_MAX_WINDOW
                    }
                },
            };
            let auto = r.auto.as_ref().map(|auto| {
                let raw_auto = auto.get_ref();
                let groups = self.plain("approval.auto.groups", &raw_auto.groups);
                if raw_auto.groups.is_none() {
                    self.error(
                        auto.span(),
                        "approval.auto needs `groups`: the policy approves only for members of a group",
                    );
                }
                AutoApproval {
                    groups,
                    windows: self.windows(&raw_auto.window),
                }
            });
            Approval {
                approver_groups,
                approver_users,
                min_approvals: *r.min_approvals.get_ref(),
                max_window,
                reason_required: r.reason_required.unwrap_or(true),
                break_glass: r.break_glass.unwrap_or(false),
                auto,
                window_from_first_use: r.window_from_first_use.unwrap_or(false),
            }
        });
        AllowRule {
            name: raw.name.get_ref().clone(),
            location: self.locator.at(raw.name.span()),
            conditions,
            principals,
            default_ttl,
            max_ttl,
            windows: self.windows(&raw.window),
            extensions,
            force_command,
            source_address,
            approval,
        }
    }

    fn admin(&mut self, raw: &RawAdmin) -> AdminRule {
        self.name(&raw.name);
        let conditions = self.conditions(&raw.conditions);
        if raw.conditions.is_none() || conditions.is_empty() {
            self.error(
                raw.name.span(),
                "admin rule has no [admin.match] conditions; admin rights never go to everyone \
                 implicitly (name a group, e.g. `groups_any = [\"sre-leads\"]`)",
            );
        }
        if !conditions.claims.is_empty() && conditions.issuers.is_empty() {
            if let Some(m) = &raw.conditions {
                self.error(
                    m.span(),
                    "claims conditions need an `issuer` condition too: otherwise any trusted issuer \
                     could vouch for the claim",
                );
            }
        }
        AdminRule {
            name: raw.name.get_ref().clone(),
            location: self.locator.at(raw.name.span()),
            conditions,
        }
    }

    fn deny(&mut self, raw: &RawDeny) -> DenyRule {
        self.name(&raw.name);
        let conditions = self.conditions(&raw.conditions);
        let mut principals = Vec::new();
        if let Some(list) = &raw.principals {
            if list.get_ref().is_empty() {
                self.error(
                    list.span(),
                    "principals is empty: leave it out to deny every principal",
                );
            }
            for p in list.get_ref() {
                match Glob::new(p.get_ref()) {
                    Ok(g) => principals.push(g),
                    Err(e) => self.error(p.span(), format!("principals: {e}")),
                }
            }
        }
        DenyRule {
            name: raw.name.get_ref().clone(),
            location: self.locator.at(raw.name.span()),
            conditions,
            principals,
            windows: self.windows(&raw.window),
        }
    }
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
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(PolicySet {
        allow,
        deny,
        admin,
        certs: context.certs,
        files: sources.iter().map(|s| s.path.clone()).collect(),
        warnings,
    })
}

/// Whether `deny` applies to everyone `allow` applies to, at all times, and
/// denies every principal `allow` can grant. Conservative: only what can be
/// shown from the rules' text counts.
fn shadows(deny: &DenyRule, allow: &AllowRule) -> bool {
    if !deny.windows.is_empty() {
        return false;
    }
    let covers_all = deny.principals.is_empty()
        || allow.principals.iter().all(|t| {
            deny.principals.iter().any(|g| {
                matches!(g.as_str(), "*" | "**") || t.literal().is_some_and(|l| g.matches(l))
            })
        });
    covers_all && implied(&deny.conditions, &allow.conditions)
}

/// Whether every identity satisfying `a` also satisfies `d`.
fn implied(d: &Conditions, a: &Conditions) -> bool {
    let subset = |small: &[String], big: &[String]| {
        !small.is_empty() && small.iter().all(|x| big.contains(x))
    };
    let glob_subset = |small: &[Glob], big: &[Glob]| {
        !small.is_empty()
            && small
                .iter()
                .all(|x| big.iter().any(|y| y.as_str() == x.as_str()))
    };
    (d.issuers.is_empty() || subset(&a.issuers, &d.issuers))
        && (d.usernames.is_empty() || glob_subset(&a.usernames, &d.usernames))
        && (d.emails.is_empty() || glob_subset(&a.emails, &d.emails))
        && (d.email_domains.is_empty() || subset(&a.email_domains, &d.email_domains))
        && (d.groups_any.is_empty()
            || a.groups_all.iter().any(|g| d.groups_any.contains(g))
            || subset(&a.groups_any, &d.groups_any))
        && d.groups_all
            .iter()
            .all(|g| a.groups_all.contains(g) || (a.groups_any.len() == 1 && a.groups_any[0] == *g))
        && d.claims.iter().all(|(name, dm)| {
            a.claims.iter().any(|(an, am)| {
                an == name
                    && match (dm, am) {
                        (ClaimMatch::Bool(x), ClaimMatch::Bool(y)) => x == y,
                        (ClaimMatch::Globs(dg), ClaimMatch::Globs(ag)) => glob_subset(ag, dg),
                        _ => false,
                    }
            })
        })
}
