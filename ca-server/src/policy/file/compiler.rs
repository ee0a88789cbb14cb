//! From raw TOML to checked rules, one rule at a time: every value is
//! parsed and bounded here, and every problem becomes a [`Diagnostic`] with
//! its file, line and column, so a policy is reported in full rather than
//! one error per attempt.

use std::ops::Range;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use jit_ssh_common::duration::{format_duration, parse_duration};
use toml::Spanned;

use super::issuers::Table;
use super::raw::{
    RawAdmin, RawAllow, RawApproval, RawClaim, RawDeny, RawMatch, RawScalar, RawWindow, Strings,
};
use super::{Diagnostic, PolicyContext, Source};
use crate::config::MAX_TTL_CEILING;
use crate::policy::glob::Glob;
use crate::policy::restrict::{check_extension, SourceEntry, DEFAULT_RULE_EXTENSIONS};
use crate::policy::rules::{
    AdminRule, AllowRule, Approval, AutoApproval, ClaimMatch, Conditions, DenyRule, Location,
};
use crate::policy::template::{is_claim_name, Template};
use crate::policy::window::{TimeWindow, WindowField};

/// Longest access window of a rule that names no `max_window`.
pub const DEFAULT_MAX_WINDOW: Duration = Duration::from_secs(3600);
/// No approval rule may allow a longer window than this.
pub const MAX_WINDOW_CEILING: Duration = Duration::from_secs(7 * 24 * 3600);

/// Turns byte offsets of one file into locations.
pub(super) struct Locator {
    file: Arc<PathBuf>,
    line_starts: Vec<usize>,
    text: String,
}

impl Locator {
    pub(super) fn new(source: &Source) -> Locator {
        let mut line_starts = vec![0];
        line_starts.extend(source.text.match_indices('\n').map(|(i, _)| i + 1));
        Locator {
            file: Arc::new(source.path.clone()),
            line_starts,
            text: source.text.clone(),
        }
    }

    pub(super) fn at(&self, span: Range<usize>) -> Location {
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

/// Checks the rules of one file, adding every problem to `errors` (the
/// policy is refused) or `warnings` (it loads).
pub(super) struct Compiler<'a> {
    pub(super) locator: Locator,
    pub(super) context: &'a PolicyContext,
    pub(super) errors: &'a mut Vec<Diagnostic>,
    pub(super) warnings: &'a mut Vec<Diagnostic>,
}

impl Compiler<'_> {
    pub(super) fn error(&mut self, span: Range<usize>, message: impl Into<String>) {
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

    pub(super) fn plain(&mut self, field: &str, list: &Option<Spanned<Strings>>) -> Vec<String> {
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
        let issuers = self.issuer_names("issuer", &m.issuer);
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
                RawClaim::Integer(n) => vec![n.to_string()],
                RawClaim::One(s) => vec![s.clone()],
                RawClaim::Many(list) if list.is_empty() => {
                    self.error(
                        value.span(),
                        format!("claims.{name} is an empty list, which matches nothing"),
                    );
                    continue;
                }
                RawClaim::Many(list) => list.iter().map(RawScalar::text).collect(),
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
        let usernames = self.globs("username", &m.username, false);
        self.check_usernames(&m.username, &usernames);
        Conditions {
            issuers,
            usernames,
            emails: self.globs("email", &m.email, true),
            email_domains,
            groups_any: self.plain("groups_any", &m.groups_any),
            groups_all: self.plain("groups_all", &m.groups_all),
            claims,
        }
    }

    /// The conditions of a rule that must have some (`missing` says why,
    /// when it has none) and whose claims must come from a named issuer.
    fn required_conditions(
        &mut self,
        name: &Spanned<String>,
        raw: &Option<Spanned<RawMatch>>,
        missing: &str,
    ) -> Conditions {
        let conditions = self.conditions(raw);
        if raw.is_none() || conditions.is_empty() {
            self.error(name.span(), missing);
        }
        if !conditions.claims.is_empty() && conditions.issuers.is_empty() {
            if let Some(m) = raw {
                self.error(
                    m.span(),
                    "claims conditions need an `issuer` condition too: otherwise any trusted issuer \
                     could vouch for the claim",
                );
            }
        }
        conditions
    }

    /// Username globs that can never match a person's login name: a
    /// character no name can hold is an error; an upper-case letter is a
    /// warning, since only a workload's name (an issuer whose
    /// `username_claim` is another claim) keeps its case.
    fn check_usernames(&mut self, raw: &Option<Spanned<Strings>>, globs: &[Glob]) {
        let items = raw.iter().flat_map(|l| l.get_ref());
        for (item, glob) in items.zip(globs) {
            let text = item.get_ref();
            if let Some(bad) = glob.literal_chars().find(|c| !workload_char(*c)) {
                self.error(
                    item.span(),
                    format!(
                        "username {text:?} can never match: no username contains {bad:?} \
                         (login names are a-z, 0-9, '_', '.', '-'; workload names printable \
                         ASCII without spaces, quotes or backslashes)"
                    ),
                );
            } else if let Some(upper) = glob.literal_chars().find(char::is_ascii_uppercase) {
                self.warn(
                    item.span(),
                    format!(
                        "username {text:?} contains {upper:?}: people's login names are lower \
                         case, so it can only match a workload's name; write {:?} to match a person",
                        text.to_ascii_lowercase()
                    ),
                );
            }
        }
    }

    fn warn(&mut self, span: Range<usize>, message: impl Into<String>) {
        let location = Some(self.locator.at(span));
        self.warnings.push(Diagnostic {
            location,
            message: message.into(),
        });
    }

    fn windows(&mut self, raw: &[Spanned<RawWindow>]) -> Vec<TimeWindow> {
        let mut out = Vec::new();
        for w in raw {
            let r = w.get_ref();
            let days = r.days.as_ref().map_or(&[][..], |d| d.get_ref().as_slice());
            match TimeWindow::parse_fields(
                days,
                r.from.get_ref(),
                r.to.get_ref(),
                r.time_zone.get_ref(),
            ) {
                Ok(window) => out.push(window),
                Err((field, e)) => {
                    let span = match field {
                        WindowField::Days => r.days.as_ref().map_or(w.span(), Spanned::span),
                        WindowField::From => r.from.span(),
                        WindowField::To => r.to.span(),
                        WindowField::TimeZone => r.time_zone.span(),
                    };
                    self.error(span, format!("window: {e}"))
                }
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

    pub(super) fn allow(&mut self, raw: &RawAllow) -> AllowRule {
        self.name(&raw.name);
        let conditions = self.required_conditions(
            &raw.name,
            &raw.conditions,
            "rule has no [rule.match] conditions; an allow rule never applies to everyone \
             implicitly (name the issuer, e.g. `issuer = [\"corp\"]`, to mean every identity of it)",
        );
        self.name_issuers(Table::Rule, &raw.conditions);
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
        let approval = raw
            .approval
            .as_ref()
            .map(|a| self.approval(a, &conditions.issuers));
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

    /// `[rule.approval]`: who may approve, how many must, and for how long.
    /// `rule_issuers` are those of the rule's `[rule.match]`, suggested
    /// when an approver or auto-approval group names no issuer.
    fn approval(&mut self, a: &Spanned<RawApproval>, rule_issuers: &[String]) -> Approval {
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
        let approver_issuers = self.approver_issuers(r, rule_issuers);
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
            } else if let Some((_, issuer)) = user.get_ref().rsplit_once('@') {
                self.known_issuer(issuer, user.span(), "this approver can never approve here");
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
                issuers: self.auto_issuers(raw_auto, rule_issuers),
                groups,
                windows: self.windows(&raw_auto.window),
            }
        });
        Approval {
            approver_groups,
            approver_issuers,
            approver_users,
            min_approvals: *r.min_approvals.get_ref(),
            max_window,
            reason_required: r.reason_required.unwrap_or(true),
            break_glass: r.break_glass.unwrap_or(false),
            auto,
            window_from_first_use: r.window_from_first_use.unwrap_or(false),
        }
    }

    pub(super) fn admin(&mut self, raw: &RawAdmin) -> AdminRule {
        self.name(&raw.name);
        let conditions = self.required_conditions(
            &raw.name,
            &raw.conditions,
            "admin rule has no [admin.match] conditions; admin rights never go to everyone \
             implicitly (name a group, e.g. `groups_any = [\"sre-leads\"]`)",
        );
        self.name_issuers(Table::Admin, &raw.conditions);
        AdminRule {
            name: raw.name.get_ref().clone(),
            location: self.locator.at(raw.name.span()),
            conditions,
        }
    }

    pub(super) fn deny(&mut self, raw: &RawDeny) -> DenyRule {
        self.name(&raw.name);
        let conditions = self.conditions(&raw.conditions);
        self.name_issuers(Table::Deny, &raw.conditions);
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
                    Ok(g) => {
                        if let Some(bad) = g.literal_chars().find(|c| !login_char(*c)) {
                            self.error(
                                p.span(),
                                format!(
                                    "principals: {:?} can never match: principals are login \
                                     names (a-z, 0-9, '_', '.', '-'), and it contains {bad:?}",
                                    p.get_ref()
                                ),
                            );
                        }
                        principals.push(g)
                    }
                    Err(e) => self.error(p.span(), format!("principals: {e}")),
                }
            }
        }
        if !conditions.claims.is_empty() && conditions.issuers.is_empty() {
            if let Some((name, span)) = raw
                .conditions
                .as_ref()
                .and_then(|m| m.get_ref().claims.as_ref())
                .and_then(|c| c.iter().next())
                .map(|(name, value)| (name.clone(), value.span()))
            {
                self.error(
                    span,
                    format!(
                        "claims.{name} in a deny rule needs an `issuer` condition too: a claim \
                         means what its issuer says, and another issuer's `{name}` is another thing"
                    ),
                );
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

/// Whether `c` can be in a login name.
fn login_char(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '.' | '-')
}

/// Whether `c` can be in a workload's name (`identity::is_workload_name`).
fn workload_char(c: char) -> bool {
    c.is_ascii_graphic() && c != '"' && c != '\\'
}
