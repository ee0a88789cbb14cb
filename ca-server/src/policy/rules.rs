//! The compiled rules: what [`super::file`] makes of policy files and
//! [`super::engine`] evaluates.
//!
//! Every value here is checked when the policy loads (globs compiled, time
//! zones resolved, templates parsed), so nothing is parsed per request.
//! Conditions are checked cheapest first, and a failed condition can be
//! described in the rule's own words for `policy explain`.

use std::borrow::Cow;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use super::glob::Glob;
use super::restrict::SourceEntry;
use super::template::{claim_text, verified_email, Template};
use super::window::TimeWindow;
use crate::identity::Identity;
use crate::UnixTime;

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
/// any entry suffices (except `groups_all`). `claims.email` reads only a
/// verified email, as `email` does.
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
        if !of_issuers(&self.issuers, id) {
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
            if !claim_matches(claim_value(id, name).as_deref(), matcher) {
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
                match claim_value(id, name) {
                    Some(value) => format!("claim {name} = {value} does not match {wanted}"),
                    None if name == "email" => {
                        format!("claims.email: the token has no verified email (wanted {wanted})")
                    }
                    None => format!("claim {name} is missing (wanted {wanted})"),
                }
            }
        }
    }
}

/// The value a `claims.NAME` condition reads: the claim as the token has
/// it, except `email`, which is read as the `email` condition reads it (only
/// when `email_verified` is true, lower-cased): an address the provider did
/// not verify says nothing about who holds the token.
fn claim_value<'i>(id: &'i Identity, name: &str) -> Option<Cow<'i, Value>> {
    if name == "email" {
        return verified_email(id).map(|e| Cow::Owned(Value::String(e.to_ascii_lowercase())));
    }
    id.claims.get(name).map(Cow::Borrowed)
}

fn claim_matches(value: Option<&Value>, matcher: &ClaimMatch) -> bool {
    match (matcher, value) {
        (ClaimMatch::Bool(want), Some(Value::Bool(got))) => want == got,
        // Integers match as their decimal strings; an empty string is missing.
        (ClaimMatch::Globs(globs), Some(Value::Array(items))) => items
            .iter()
            .filter_map(claim_text)
            .any(|s| globs.iter().any(|g| g.matches(&s))),
        (ClaimMatch::Globs(globs), Some(value)) => {
            claim_text(value).is_some_and(|s| globs.iter().any(|g| g.matches(&s)))
        }
        _ => false,
    }
}

/// Who may approve access to a rule's principals.
#[derive(Debug, Clone)]
pub struct Approval {
    /// Groups whose members may approve.
    pub approver_groups: Vec<String>,
    /// Issuer short names whose tokens' groups count for `approver_groups`;
    /// empty means every trusted issuer (the loader allows that only while
    /// the CA trusts one).
    pub approver_issuers: Vec<String>,
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
    /// The requester's token comes from one of these issuers (short names);
    /// empty means any (the loader allows that only while the CA trusts one).
    pub issuers: Vec<String>,
    /// The requester is in at least one of these groups (never empty).
    pub groups: Vec<String>,
    /// When it applies; empty means always.
    pub windows: Vec<TimeWindow>,
}

impl AutoApproval {
    /// Whether it approves a request by `requester` made at `now`.
    pub fn holds(&self, requester: &Identity, now: UnixTime) -> bool {
        of_issuers(&self.issuers, requester)
            && self.groups.iter().any(|g| requester.groups.contains(g))
            && open_window(&self.windows, now).is_some()
    }
}

impl Approval {
    /// Whether `identity` is one of this rule's approvers: one of
    /// `approver_users`, or a member of `approver_groups` by a token of one
    /// of `approver_issuers`.
    pub fn approver(&self, identity: &Identity) -> bool {
        let name = identity.display_name();
        self.approver_users.contains(&name)
            || (of_issuers(&self.approver_issuers, identity)
                && identity
                    .groups
                    .iter()
                    .any(|g| self.approver_groups.contains(g)))
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
    /// Whether it takes `principal` away (when it applies at all).
    pub(super) fn denies(&self, principal: &str) -> bool {
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

/// Whether `identity`'s token comes from one of `issuers` (short names);
/// an empty list names no issuer and so holds for every one.
fn of_issuers(issuers: &[String], identity: &Identity) -> bool {
    issuers.is_empty() || issuers.contains(&identity.issuer_name)
}

/// Whether `windows` are open at `now`: `None` when none is, otherwise the
/// end of the continuous run of occurrences `now` is in (`Some(None)`: no
/// windows, always open).
pub(super) fn open_window(windows: &[TimeWindow], now: UnixTime) -> Option<Option<UnixTime>> {
    if windows.is_empty() {
        return Some(None);
    }
    super::window::open_until(windows, now).map(Some)
}

/// `windows` as reasons name them.
pub(super) fn windows_text(windows: &[TimeWindow]) -> String {
    windows
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(" or ")
}
