//! The compiled policy and its evaluation.
//!
//! A [`PolicySet`] is immutable once built: the server swaps whole sets, so
//! one decision always sees one policy. Evaluation is a pure function of the
//! set, the identity, the request and the time. It is written once and used
//! both by the server and by `jit-ssh-ca policy explain`, which asks for the
//! trace the server does not build.
//!
//! Semantics (docs/policies.md is the long form):
//! - A deny rule that applies to the identity removes the principals it
//!   names (all of them when it names none); deny always wins.
//! - An allow rule applies when all its conditions hold and, if it has time
//!   windows, the time is inside one. It grants its principals unless it
//!   requires an approval, which nobody holds yet.
//! - No requested principals: every granted principal. Requested principals:
//!   all of them must be granted, or nothing is.
//! - Every rule that grants a principal in the certificate bounds it: the
//!   lifetime is at most the smallest `max_ttl` and the earliest window end,
//!   extensions and source addresses are intersected, and forced commands
//!   must agree.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use jit_ssh_common::duration::format_duration;
use serde_json::Value;

use super::glob::Glob;
use super::restrict::{intersect, Cidr, SourceEntry};
use super::template::{verified_email, Template};
use super::window::TimeWindow;
use super::{AccessTerms, CertRequest, Decision, Denial, Grant};
use crate::config::CertSettings;
use crate::identity::Identity;
use crate::UnixTime;

/// Most principals one certificate may carry.
pub const MAX_CERT_PRINCIPALS: usize = 64;

/// Where something is in a policy file, 1-based.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// The file, as given to the loader.
    pub file: Arc<PathBuf>,
    /// Line, from 1.
    pub line: usize,
    /// Column in characters, from 1.
    pub column: usize,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file.display(), self.line, self.column)
    }
}

/// A claim condition's accepted values.
#[derive(Debug, Clone)]
pub enum ClaimMatch {
    /// The claim is this boolean.
    Bool(bool),
    /// The claim (a string, or any string of a list claim) matches one of these.
    Globs(Vec<Glob>),
}

/// Who a rule applies to: every present condition must hold; within a list,
/// any entry suffices (except `groups_all`).
#[derive(Debug, Clone, Default)]
pub struct Conditions {
    /// Issuer short names (`[[oidc]] name`).
    pub issuers: Vec<String>,
    /// Globs over the login name.
    pub usernames: Vec<Glob>,
    /// Globs over the verified email, lower-cased.
    pub emails: Vec<Glob>,
    /// Domains of the verified email, lower-cased, exact.
    pub email_domains: Vec<String>,
    /// At least one of these groups.
    pub groups_any: Vec<String>,
    /// Every one of these groups.
    pub groups_all: Vec<String>,
    /// Other claims.
    pub claims: Vec<(String, ClaimMatch)>,
}

/// The first condition that did not hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failed {
    /// `issuer`.
    Issuer,
    /// `username`.
    Username,
    /// `email`.
    Email,
    /// `email_domain`.
    EmailDomain,
    /// `groups_any`.
    GroupsAny,
    /// `groups_all`.
    GroupsAll,
    /// `claims.NAME`, by index.
    Claim(usize),
}

impl Conditions {
    /// Whether no condition is set (matches every identity).
    pub fn is_empty(&self) -> bool {
        self.issuers.is_empty()
            && self.usernames.is_empty()
            && self.emails.is_empty()
            && self.email_domains.is_empty()
            && self.groups_any.is_empty()
            && self.groups_all.is_empty()
            && self.claims.is_empty()
    }

    /// Checks the conditions, cheapest first.
    pub fn check(&self, id: &Identity) -> Result<(), Failed> {
        if !self.issuers.is_empty() && !self.issuers.contains(&id.issuer_name) {
            return Err(Failed::Issuer);
        }
        if !self.groups_any.is_empty() && !self.groups_any.iter().any(|g| id.groups.contains(g)) {
            return Err(Failed::GroupsAny);
        }
        if !self.groups_all.iter().all(|g| id.groups.contains(g)) {
            return Err(Failed::GroupsAll);
        }
        if !self.usernames.is_empty() && !self.usernames.iter().any(|g| g.matches(&id.username)) {
            return Err(Failed::Username);
        }
        if !self.emails.is_empty() || !self.email_domains.is_empty() {
            let email = verified_email(id).map(str::to_ascii_lowercase);
            if !self.emails.is_empty()
                && !email
                    .as_deref()
                    .is_some_and(|e| self.emails.iter().any(|g| g.matches(e)))
            {
                return Err(Failed::Email);
            }
            if !self.email_domains.is_empty() {
                let domain = email
                    .as_deref()
                    .and_then(|e| e.rsplit_once('@'))
                    .map(|(_, d)| d);
                if !domain.is_some_and(|d| self.email_domains.iter().any(|x| x == d)) {
                    return Err(Failed::EmailDomain);
                }
            }
        }
        for (index, (name, matcher)) in self.claims.iter().enumerate() {
            if !claim_matches(id.claims.get(name), matcher) {
                return Err(Failed::Claim(index));
            }
        }
        Ok(())
    }

    /// Explains a failed condition (for `policy explain` only: it shows the
    /// rule's own values).
    pub fn describe(&self, failed: Failed, id: &Identity) -> String {
        match failed {
            Failed::Issuer => format!(
                "issuer {:?} is not one of {:?}",
                id.issuer_name, self.issuers
            ),
            Failed::Username => format!(
                "username {:?} matches none of {:?}",
                id.username,
                self.usernames.iter().map(Glob::as_str).collect::<Vec<_>>()
            ),
            Failed::Email => match verified_email(id) {
                Some(e) => format!(
                    "email {e:?} matches none of {:?}",
                    self.emails.iter().map(Glob::as_str).collect::<Vec<_>>()
                ),
                None => "email: the token has no verified email".into(),
            },
            Failed::EmailDomain => match verified_email(id) {
                Some(e) => format!("email {e:?} is not in domains {:?}", self.email_domains),
                None => "email_domain: the token has no verified email".into(),
            },
            Failed::GroupsAny => format!(
                "groups {:?} contain none of {:?}",
                id.groups, self.groups_any
            ),
            Failed::GroupsAll => {
                format!("groups {:?} lack some of {:?}", id.groups, self.groups_all)
            }
            Failed::Claim(index) => {
                let (name, matcher) = &self.claims[index];
                let wanted = match matcher {
                    ClaimMatch::Bool(b) => b.to_string(),
                    ClaimMatch::Globs(globs) => {
                        format!("{:?}", globs.iter().map(Glob::as_str).collect::<Vec<_>>())
                    }
                };
                match id.claims.get(name) {
                    Some(value) => format!("claim {name} = {value} does not match {wanted}"),
                    None => format!("claim {name} is missing (wanted {wanted})"),
                }
            }
        }
    }
}

fn claim_matches(value: Option<&Value>, matcher: &ClaimMatch) -> bool {
    match (matcher, value) {
        (ClaimMatch::Bool(want), Some(Value::Bool(got))) => want == got,
        (ClaimMatch::Globs(globs), Some(Value::String(s))) => globs.iter().any(|g| g.matches(s)),
        (ClaimMatch::Globs(globs), Some(Value::Array(items))) => items
            .iter()
            .filter_map(Value::as_str)
            .any(|s| globs.iter().any(|g| g.matches(s))),
        _ => false,
    }
}

/// Who may approve access to a rule's principals.
#[derive(Debug, Clone)]
pub struct Approval {
    /// Groups whose members may approve.
    pub approver_groups: Vec<String>,
    /// Identities (`user@issuer`) who may approve.
    pub approver_users: Vec<String>,
    /// Distinct approvals needed.
    pub min_approvals: u32,
    /// Longest window an approved request may open.
    pub max_window: Duration,
    /// Whether a request must give a reason.
    pub reason_required: bool,
    /// Whether the requester may approve their own request at once, with a
    /// reason, for review afterwards (`jit-ssh request --break-glass`).
    pub break_glass: bool,
    /// When set, requests whose requester meets it are approved at once.
    pub auto: Option<AutoApproval>,
    /// Whether an approved window opens with the first certificate that
    /// uses it rather than at approval.
    pub window_from_first_use: bool,
}

/// `[rule.approval.auto]`: conditions under which the policy itself approves
/// a request when it is made.
#[derive(Debug, Clone)]
pub struct AutoApproval {
    /// The requester is in at least one of these groups (never empty).
    pub groups: Vec<String>,
    /// When it applies; empty means always.
    pub windows: Vec<TimeWindow>,
}

impl AutoApproval {
    /// Whether it approves a request by `requester` made at `now`.
    pub fn holds(&self, requester: &Identity, now: UnixTime) -> bool {
        self.groups.iter().any(|g| requester.groups.contains(g))
            && open_window(&self.windows, now).is_some()
    }
}

impl Approval {
    /// Whether `identity` is one of this rule's approvers.
    pub fn approver(&self, identity: &Identity) -> bool {
        let name = identity.display_name();
        self.approver_users.contains(&name)
            || identity
                .groups
                .iter()
                .any(|g| self.approver_groups.contains(g))
    }
}

/// A rule that grants principals.
#[derive(Debug, Clone)]
pub struct AllowRule {
    /// Unique name, in key IDs and the audit log.
    pub name: String,
    /// Where it is defined.
    pub location: Location,
    /// Who it applies to.
    pub conditions: Conditions,
    /// What it grants.
    pub principals: Vec<Template>,
    /// Lifetime when the client asks for none.
    pub default_ttl: Duration,
    /// Longest lifetime of a certificate it contributes to.
    pub max_ttl: Duration,
    /// When it applies; empty means always.
    pub windows: Vec<TimeWindow>,
    /// Extensions it allows.
    pub extensions: Vec<String>,
    /// `force-command`.
    pub force_command: Option<String>,
    /// `source-address`.
    pub source_address: Option<Vec<SourceEntry>>,
    /// Set when its principals need an approved access request.
    pub approval: Option<Approval>,
}

/// A rule that takes principals away, whatever grants them.
#[derive(Debug, Clone)]
pub struct DenyRule {
    /// Unique name.
    pub name: String,
    /// Where it is defined.
    pub location: Location,
    /// Who it applies to (empty: everyone).
    pub conditions: Conditions,
    /// Principals it denies; empty means every principal.
    pub principals: Vec<Glob>,
    /// When it applies; empty means always.
    pub windows: Vec<TimeWindow>,
}

impl DenyRule {
    fn denies(&self, principal: &str) -> bool {
        self.principals.is_empty() || self.principals.iter().any(|g| g.matches(principal))
    }
}

/// Who may act as an administrator (revoke and unrevoke other people's
/// certificates and identities): an `[[admin]]` block.
#[derive(Debug, Clone)]
pub struct AdminRule {
    /// Unique name, recorded in the audit log of every admin action.
    pub name: String,
    /// Where it is defined.
    pub location: Location,
    /// Who it applies to; never empty.
    pub conditions: Conditions,
}

/// A checked, immutable policy: every rule of every file in `policy_dir`.
#[derive(Debug, Clone)]
pub struct PolicySet {
    pub(crate) allow: Vec<AllowRule>,
    pub(crate) deny: Vec<DenyRule>,
    pub(crate) admin: Vec<AdminRule>,
    pub(crate) certs: CertSettings,
    pub(crate) files: Vec<PathBuf>,
    pub(crate) warnings: Vec<super::file::Diagnostic>,
}

/// What `policy explain` prints besides the decision.
pub type Trace = Vec<String>;

struct Candidate<'a> {
    rule: &'a AllowRule,
    principals: Vec<String>,
    window_end: Option<UnixTime>,
    /// The approved access request that lets `rule` grant `principals`.
    request_id: Option<u64>,
}

fn open_window(windows: &[TimeWindow], now: UnixTime) -> Option<Option<UnixTime>> {
    if windows.is_empty() {
        return Some(None);
    }
    windows
        .iter()
        .filter_map(|w| w.end_if_open(now))
        .max()
        .map(Some)
}

fn windows_text(windows: &[TimeWindow]) -> String {
    windows
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(" or ")
}

impl PolicySet {
    /// The allow rules.
    pub fn allow_rules(&self) -> &[AllowRule] {
        &self.allow
    }

    /// The deny rules.
    pub fn deny_rules(&self) -> &[DenyRule] {
        &self.deny
    }

    /// The admin rules.
    pub fn admin_rules(&self) -> &[AdminRule] {
        &self.admin
    }

    /// The first admin rule whose conditions `identity` meets, if any.
    pub fn admin_rule(&self, identity: &Identity) -> Option<&AdminRule> {
        self.admin
            .iter()
            .find(|rule| !rule.conditions.is_empty() && rule.conditions.check(identity).is_ok())
    }

    /// Problems that do not stop it from loading (e.g. an unknown issuer).
    pub fn warnings(&self) -> &[super::file::Diagnostic] {
        &self.warnings
    }

    /// The files it was built from.
    pub fn files(&self) -> &[PathBuf] {
        &self.files
    }

    /// Decides `request` by `identity` at `now`, optionally recording why.
    pub fn decide(
        &self,
        identity: &Identity,
        request: &CertRequest,
        now: UnixTime,
        mut trace: Option<&mut Trace>,
    ) -> Decision {
        let who = identity.display_name();
        // Lazy: the server evaluates without a trace and must not pay for
        // formatting lines nobody reads.
        let mut note = |line: &dyn Fn() -> String| {
            if let Some(t) = trace.as_deref_mut() {
                t.push(line());
            }
        };

        // Deny rules that apply to this identity now.
        let mut denies: Vec<&DenyRule> = Vec::new();
        for rule in &self.deny {
            match rule.conditions.check(identity) {
                Err(failed) => note(&|| {
                    format!(
                        "deny {}: does not apply: {}",
                        rule.name,
                        rule.conditions.describe(failed, identity)
                    )
                }),
                Ok(()) if open_window(&rule.windows, now).is_none() => note(&|| {
                    format!(
                        "deny {}: does not apply now: only {}",
                        rule.name,
                        windows_text(&rule.windows)
                    )
                }),
                Ok(()) => {
                    note(&|| format!("deny {}: applies", rule.name));
                    if rule.principals.is_empty() {
                        return deny(
                            format!("{who} is denied every certificate by rule {}", rule.name),
                            vec![rule.name.clone()],
                        );
                    }
                    denies.push(rule);
                }
            }
        }

        // Allow rules that apply.
        let mut candidates: Vec<Candidate<'_>> = Vec::new();
        let mut needs_approval: Vec<(&AllowRule, Vec<String>)> = Vec::new();
        let mut outside_window: Vec<&AllowRule> = Vec::new();
        for rule in &self.allow {
            if let Err(failed) = rule.conditions.check(identity) {
                note(&|| {
                    format!(
                        "rule {}: does not apply: {}",
                        rule.name,
                        rule.conditions.describe(failed, identity)
                    )
                });
                continue;
            }
            let Some(window_end) = open_window(&rule.windows, now) else {
                note(&|| {
                    format!(
                        "rule {}: matches, but not now: only {}",
                        rule.name,
                        windows_text(&rule.windows)
                    )
                });
                outside_window.push(rule);
                continue;
            };
            let principals = self.expand(rule, identity, &mut note);
            if let Some(approval) = &rule.approval {
                // Each open approved request grants the rule's principals it
                // names, until the earlier of its window's end and the rule's.
                let mut unapproved = principals.clone();
                for access in &request.approved {
                    let covered: Vec<String> = principals
                        .iter()
                        .filter(|p| access.principals.contains(p))
                        .cloned()
                        .collect();
                    if covered.is_empty() || access.window_end <= now {
                        continue;
                    }
                    note(&|| {
                        format!(
                            "rule {}: grants {:?} by approved access request {} until {}",
                            rule.name, covered, access.id, access.window_end
                        )
                    });
                    unapproved.retain(|p| !covered.contains(p));
                    let end = window_end.map_or(access.window_end, |e| e.min(access.window_end));
                    candidates.push(Candidate {
                        rule,
                        principals: covered,
                        window_end: Some(end),
                        request_id: Some(access.id),
                    });
                }
                if !unapproved.is_empty() {
                    note(&|| {
                        format!(
                            "rule {}: matches; {:?} need an approved access request (approvers: groups {:?}, users {:?}); none is held",
                            rule.name, unapproved, approval.approver_groups, approval.approver_users
                        )
                    });
                    needs_approval.push((rule, unapproved));
                }
                continue;
            }
            note(&|| format!("rule {}: grants {:?}", rule.name, principals));
            candidates.push(Candidate {
                rule,
                principals,
                window_end,
                request_id: None,
            });
        }

        let mut granted: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
        for (index, candidate) in candidates.iter().enumerate() {
            for p in &candidate.principals {
                granted.entry(p.as_str()).or_default().push(index);
            }
        }
        let denied_by = |p: &str| denies.iter().find(|d| d.denies(p)).copied();

        let chosen: Vec<String> = if request.principals.is_empty() {
            let mut chosen = Vec::new();
            let mut removed: Option<(String, &DenyRule)> = None;
            for p in granted.keys() {
                match denied_by(p) {
                    Some(d) => {
                        note(&|| format!("principal {p:?}: removed by deny {}", d.name));
                        removed.get_or_insert((p.to_string(), d));
                    }
                    None => chosen.push(p.to_string()),
                }
            }
            if chosen.is_empty() {
                if let Some((p, d)) = removed {
                    return deny(
                        format!("principal {p:?} is denied to {who} by rule {}", d.name),
                        vec![d.name.clone()],
                    );
                }
                if let Some((rule, principals)) = needs_approval.first() {
                    return needs_request(
                        format!(
                            "{who} has no principal without approval: {principals:?} (rule {}) need an approved access request; ask with `{}`",
                            rule.name,
                            request_command(principals)
                        ),
                        vec![rule.name.clone()],
                        principals.clone(),
                    );
                }
                if let Some(rule) = outside_window.first() {
                    return deny(
                        format!(
                            "{who} has no principal now: rule {} applies only {}",
                            rule.name,
                            windows_text(&rule.windows)
                        ),
                        vec![rule.name.clone()],
                    );
                }
                return deny(format!("no rule grants {who} any principal"), vec![]);
            }
            chosen
        } else {
            let mut unapproved: Vec<(String, &AllowRule)> = Vec::new();
            for p in &request.principals {
                if let Some(d) = denied_by(p) {
                    return deny(
                        format!("principal {p:?} is denied to {who} by rule {}", d.name),
                        vec![d.name.clone()],
                    );
                }
                if granted.contains_key(p.as_str()) {
                    continue;
                }
                // Reported only if nothing else is wrong with the request:
                // an approval would then be all it takes.
                if let Some((rule, _)) = needs_approval.iter().find(|(_, ps)| ps.contains(p)) {
                    unapproved.push((p.clone(), rule));
                    continue;
                }
                if let Some(rule) = outside_window.iter().find(|r| {
                    let mut quiet = |_: &dyn Fn() -> String| {};
                    self.expand(r, identity, &mut quiet).contains(p)
                }) {
                    return deny(
                        format!(
                            "principal {p:?} is granted to {who} by rule {} only {}",
                            rule.name,
                            windows_text(&rule.windows)
                        ),
                        vec![rule.name.clone()],
                    );
                }
                return deny(
                    format!("principal {p:?} is not granted to {who}: no rule grants it"),
                    vec![],
                );
            }
            if !unapproved.is_empty() {
                let principals: Vec<String> = unapproved.iter().map(|(p, _)| p.clone()).collect();
                let mut rules: Vec<String> = Vec::new();
                for (_, rule) in &unapproved {
                    if !rules.contains(&rule.name) {
                        rules.push(rule.name.clone());
                    }
                }
                let what = match principals.as_slice() {
                    [one] => format!("principal {one:?} requires"),
                    many => format!("principals {many:?} require"),
                };
                return needs_request(
                    format!(
                        "{what} an approved access request (rule {}); ask with `{}`",
                        rules.join(", "),
                        request_command(&principals)
                    ),
                    rules,
                    principals,
                );
            }
            request.principals.clone()
        };
        if chosen.len() > MAX_CERT_PRINCIPALS {
            return deny(
                format!(
                    "{} principals are more than one certificate may carry ({MAX_CERT_PRINCIPALS}); ask for the ones you need",
                    chosen.len()
                ),
                vec![],
            );
        }

        // The rules that decided: every one granting a chosen principal.
        let mut deciding: Vec<usize> = chosen
            .iter()
            .flat_map(|p| granted.get(p.as_str()).cloned().unwrap_or_default())
            .collect();
        deciding.sort_unstable();
        deciding.dedup();
        let deciding: Vec<&Candidate<'_>> = deciding.iter().map(|&i| &candidates[i]).collect();
        let mut rules: Vec<String> = Vec::new();
        for c in &deciding {
            if !rules.contains(&c.rule.name) {
                rules.push(c.rule.name.clone());
            }
        }
        let mut request_ids: Vec<u64> = deciding.iter().filter_map(|c| c.request_id).collect();
        request_ids.sort_unstable();
        request_ids.dedup();

        // Lifetime.
        let mut cap = self.certs.max_ttl;
        let mut cap_by = "certs.max_ttl".to_string();
        let mut default = self.certs.max_ttl;
        for c in &deciding {
            if c.rule.max_ttl < cap {
                cap = c.rule.max_ttl;
                cap_by = format!("max_ttl of rule {}", c.rule.name);
            }
            if let Some(end) = c.window_end {
                let left = Duration::from_secs(end.saturating_sub(now));
                if left < cap {
                    cap = left;
                    cap_by = match c.request_id {
                        Some(id) => format!("end of access request {id}'s window"),
                        None => format!("end of rule {}'s window", c.rule.name),
                    };
                }
            }
            default = default.min(c.rule.default_ttl);
        }
        let asked = request.ttl.unwrap_or(default);
        let ttl = asked.min(cap);
        note(&|| {
            format!(
                "lifetime: {} {} (at most {}, set by {cap_by})",
                format_duration(ttl),
                if request.ttl.is_some() {
                    "asked for"
                } else {
                    "default"
                },
                format_duration(cap)
            )
        });

        // Restrictions: strictest of all deciding rules.
        let mut extensions: Vec<String> = deciding
            .first()
            .map(|c| c.rule.extensions.clone())
            .unwrap_or_default();
        for c in &deciding[1.min(deciding.len())..] {
            extensions.retain(|e| c.rule.extensions.contains(e));
        }
        let mut critical_options = Vec::new();
        let mut command: Option<(&str, &str)> = None;
        for c in &deciding {
            if let Some(cmd) = &c.rule.force_command {
                match command {
                    Some((other, other_rule)) if other != cmd => {
                        return deny(
                            format!(
                                "rules {other_rule} and {} force different commands; ask for their principals in separate certificates",
                                c.rule.name
                            ),
                            rules,
                        );
                    }
                    _ => command = Some((cmd, &c.rule.name)),
                }
            }
        }
        if let Some((cmd, _)) = command {
            critical_options.push(("force-command".to_string(), cmd.to_string()));
        }
        let mut sources: Option<Vec<Cidr>> = None;
        for c in &deciding {
            if let Some(entries) = &c.rule.source_address {
                let nets: Vec<Cidr> = entries
                    .iter()
                    .map(|e| e.resolve(request.client_addr))
                    .collect();
                sources = Some(match sources {
                    None => {
                        let mut nets = nets;
                        nets.sort();
                        nets.dedup();
                        nets
                    }
                    Some(prev) => intersect(&prev, &nets),
                });
            }
        }
        if let Some(nets) = sources {
            if nets.is_empty() {
                return deny(
                    format!(
                        "the source addresses of rules {} have no address in common",
                        rules.join(", ")
                    ),
                    rules,
                );
            }
            let list: Vec<String> = nets.iter().map(ToString::to_string).collect();
            critical_options.push(("source-address".to_string(), list.join(",")));
        }
        note(&|| {
            format!(
            "allow {chosen:?} by {rules:?}, extensions {extensions:?}, critical options {critical_options:?}"
        )
        });
        Decision::Allow(Grant {
            principals: chosen,
            ttl,
            extensions,
            critical_options,
            rules,
            request_ids,
        })
    }

    /// The terms on which `identity` may ask for `principals` by access
    /// request at `now`: every principal must be one that a rule with
    /// `[rule.approval]` applying to `identity` would grant, and no deny
    /// rule may take it away.
    pub fn access_terms(
        &self,
        identity: &Identity,
        principals: &[String],
        now: UnixTime,
    ) -> Result<AccessTerms, String> {
        let who = identity.display_name();
        if principals.is_empty() {
            return Err("name at least one principal".into());
        }
        let mut quiet = |_: &dyn Fn() -> String| {};
        let mut terms: Option<AccessTerms> = None;
        for p in principals {
            let denied = self.deny.iter().find(|d| {
                d.conditions.check(identity).is_ok()
                    && open_window(&d.windows, now).is_some()
                    && d.denies(p)
            });
            if let Some(d) = denied {
                return Err(format!(
                    "principal {p:?} is denied to {who} by rule {}",
                    d.name
                ));
            }
            let covering: Vec<(&AllowRule, &Approval)> = self
                .allow
                .iter()
                .filter_map(|rule| rule.approval.as_ref().map(|a| (rule, a)))
                .filter(|(rule, _)| {
                    rule.conditions.check(identity).is_ok()
                        && self.expand(rule, identity, &mut quiet).contains(p)
                })
                .collect();
            if covering.is_empty() {
                return Err(format!(
                    "no rule with [rule.approval] lets {who} ask for principal {p:?}"
                ));
            }
            for (rule, approval) in covering {
                let t = terms.get_or_insert_with(|| AccessTerms {
                    rules: Vec::new(),
                    max_window: approval.max_window,
                    reason_required: false,
                    min_approvals: 1,
                    break_glass: true,
                    auto_approved_by: Vec::new(),
                    from_first_use: false,
                });
                if t.rules.contains(&rule.name) {
                    continue;
                }
                t.rules.push(rule.name.clone());
                t.max_window = t.max_window.min(approval.max_window);
                t.reason_required |= approval.reason_required;
                t.min_approvals = t.min_approvals.max(approval.min_approvals);
                t.break_glass &= approval.break_glass;
                t.from_first_use |= approval.window_from_first_use;
                if approval
                    .auto
                    .as_ref()
                    .is_some_and(|auto| auto.holds(identity, now))
                {
                    t.auto_approved_by.push(rule.name.clone());
                }
            }
        }
        let mut terms = terms.ok_or_else(|| "name at least one principal".to_string())?;
        // The policy approves only when every rule whose approvers would
        // decide agrees.
        if terms.auto_approved_by.len() != terms.rules.len() {
            terms.auto_approved_by.clear();
        }
        Ok(terms)
    }

    /// The approvals needed when `approver` is an approver of every rule in
    /// `rules` (each must still exist and have `[rule.approval]`); `None`
    /// when they are not.
    pub fn approval_rights(&self, approver: &Identity, rules: &[String]) -> Option<u32> {
        if rules.is_empty() {
            return None;
        }
        let mut needed = 1;
        for name in rules {
            let approval = self
                .allow
                .iter()
                .find(|rule| &rule.name == name)
                .and_then(|rule| rule.approval.as_ref())?;
            if !approval.approver(approver) {
                return None;
            }
            needed = needed.max(approval.min_approvals);
        }
        Some(needed)
    }

    fn expand(
        &self,
        rule: &AllowRule,
        identity: &Identity,
        note: &mut impl FnMut(&dyn Fn() -> String),
    ) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for template in &rule.principals {
            let expansion = template.expand(identity);
            for dropped in expansion.dropped {
                note(&|| format!("rule {}: {}: {dropped}", rule.name, template.as_str()));
            }
            for p in expansion.principals {
                if !out.contains(&p) {
                    out.push(p);
                }
            }
        }
        out
    }
}

fn deny(reason: String, rules: Vec<String>) -> Decision {
    Decision::Deny(Denial {
        reason,
        rules,
        approval_required: Vec::new(),
    })
}

/// A denial whose only cause is that `principals` need an approved access
/// request.
fn needs_request(reason: String, rules: Vec<String>, principals: Vec<String>) -> Decision {
    Decision::Deny(Denial {
        reason,
        rules,
        approval_required: principals,
    })
}

/// The command that asks for `principals`, for messages.
pub fn request_command(principals: &[String]) -> String {
    let mut command = "jit-ssh request".to_string();
    for p in principals {
        command.push_str(" --principal ");
        command.push_str(p);
    }
    command.push_str(" --reason \"...\"");
    command
}

impl super::Policy for PolicySet {
    fn admin(&self, identity: &Identity) -> Option<String> {
        self.admin_rule(identity).map(|rule| rule.name.clone())
    }

    fn evaluate(&self, identity: &Identity, request: &CertRequest, now: UnixTime) -> Decision {
        self.decide(identity, request, now, None)
    }

    fn access_terms(
        &self,
        identity: &Identity,
        principals: &[String],
        now: UnixTime,
    ) -> Result<AccessTerms, String> {
        PolicySet::access_terms(self, identity, principals, now)
    }

    fn approval_rights(&self, approver: &Identity, rules: &[String]) -> Option<u32> {
        PolicySet::approval_rights(self, approver, rules)
    }
}
