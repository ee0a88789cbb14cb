//! What an access request was approved under, and whether it still is.
//!
//! When a request is made, and again at every approval, the CA records for
//! each `[rule.approval]` rule that decides it a [`RuleRequirement`]: the
//! rule's name and, in a canonical form, everything it asked of approvers
//! and requester. A grant holds only while every rule that now guards its
//! principal for the requester is one it was approved under and
//! [`RuleRequirement::beyond`] finds that the rule asks no more than it did
//! then; otherwise it grants nothing, and the reason says which rule is
//! gone, was tightened, or no longer matches the requester.
//! docs/policies.md ("Rules of combination") is the long form.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::glob::Glob;
use super::rules::{AllowRule, Approval, ClaimMatch, Conditions};

/// What one `[rule.approval]` rule required when a request was decided
/// under it. Lists are sorted and free of repeats, so that equal
/// requirements have equal canonical forms.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleRequirement {
    /// The rule's name.
    pub rule: String,
    /// `min_approvals`.
    pub min_approvals: u32,
    /// `approver_groups`.
    pub approver_groups: Vec<String>,
    /// `approver_issuer` (empty: every issuer).
    pub approver_issuers: Vec<String>,
    /// `approver_users`.
    pub approver_users: Vec<String>,
    /// `max_window`, seconds.
    pub max_window_secs: u64,
    /// `break_glass`.
    pub break_glass: bool,
    /// `[rule.approval.auto]` in canonical form, if the rule has it.
    pub auto: Option<String>,
    /// The rule's `[rule.match]` in canonical form: who may ask.
    pub requester: String,
}

/// How an approved request came to be approved, which decides what of its
/// rule must still hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HowApproved {
    /// The window asked for, seconds.
    pub window_secs: u64,
    /// Approved by its requester (break-glass).
    pub break_glass: bool,
    /// Approved by the policy (`[rule.approval.auto]`).
    pub by_policy: bool,
}

impl RuleRequirement {
    /// The requirement of `rule`, which has `approval`.
    pub fn of(rule: &AllowRule, approval: &Approval) -> RuleRequirement {
        let auto = approval.auto.as_ref().map(|auto| {
            json!({
                "issuers": sorted(auto.issuers.iter().cloned()),
                "groups": sorted(auto.groups.iter().cloned()),
                "windows": sorted(auto.windows.iter().map(ToString::to_string)),
            })
            .to_string()
        });
        RuleRequirement {
            rule: rule.name.clone(),
            min_approvals: approval.min_approvals.max(1),
            approver_groups: sorted(approval.approver_groups.iter().cloned()),
            approver_issuers: sorted(approval.approver_issuers.iter().cloned()),
            approver_users: sorted(approval.approver_users.iter().cloned()),
            max_window_secs: approval.max_window.as_secs(),
            break_glass: approval.break_glass,
            auto,
            requester: canonical_conditions(&rule.conditions),
        }
    }

    /// The canonical form: this requirement as compact JSON, fields in
    /// declaration order, lists sorted.
    pub fn canonical(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// SHA-256 of [`RuleRequirement::canonical`], lower-case hex: equal
    /// digests, equal requirements.
    pub fn digest(&self) -> String {
        Sha256::digest(self.canonical().as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// What `self` (the rule as it reads now) asks beyond `recorded` (what
    /// it asked when the request was decided) of a request approved `how`;
    /// `None` when it asks no more. "No more" is this partial order:
    /// - `min_approvals` is no larger;
    /// - `approver_groups` and `approver_users` keep every entry they had,
    ///   and `approver_issuer` is empty (any issuer) or keeps every entry
    ///   (so everyone whose approval counted then would count now);
    /// - `max_window` still admits the request's window;
    /// - a break-glass request's rule still allows break-glass;
    /// - a request the policy approved finds `[rule.approval.auto]` as it was.
    ///
    /// The requester conditions are not compared here: the requester must
    /// meet the rule as it reads now, at every certificate.
    pub fn beyond(&self, recorded: &RuleRequirement, how: HowApproved) -> Option<String> {
        let rule = &self.rule;
        if self.min_approvals > recorded.min_approvals {
            return Some(format!(
                "rule {rule} now needs {} approvals, {} when it was approved",
                self.min_approvals, recorded.min_approvals
            ));
        }
        for (what, now, then) in [
            (
                "approver_groups",
                &self.approver_groups,
                &recorded.approver_groups,
            ),
            (
                "approver_users",
                &self.approver_users,
                &recorded.approver_users,
            ),
        ] {
            let dropped: Vec<&String> = then.iter().filter(|x| !now.contains(x)).collect();
            if !dropped.is_empty() {
                return Some(format!(
                    "rule {rule}'s {what} no longer include {dropped:?}, whose approval counted when it was approved"
                ));
            }
        }
        let issuers_kept = self.approver_issuers.is_empty()
            || (!recorded.approver_issuers.is_empty()
                && recorded
                    .approver_issuers
                    .iter()
                    .all(|i| self.approver_issuers.contains(i)));
        if !issuers_kept {
            return Some(format!(
                "rule {rule}'s approver_issuer is now {:?}, {:?} when it was approved",
                self.approver_issuers, recorded.approver_issuers
            ));
        }
        if self.max_window_secs < how.window_secs {
            return Some(format!(
                "rule {rule}'s max_window is now {}s, shorter than the approved window of {}s",
                self.max_window_secs, how.window_secs
            ));
        }
        if how.break_glass && !self.break_glass {
            return Some(format!("rule {rule} no longer allows break-glass"));
        }
        if how.by_policy && self.auto != recorded.auto {
            return Some(format!(
                "rule {rule}'s [rule.approval.auto], which approved it, has changed"
            ));
        }
        None
    }
}

/// A rule's conditions in canonical form: every condition, lists sorted.
fn canonical_conditions(c: &Conditions) -> String {
    let globs = |gs: &[Glob]| sorted(gs.iter().map(|g| g.as_str().to_string()));
    let claims: Vec<Value> = {
        let mut claims: Vec<(String, Value)> = c
            .claims
            .iter()
            .map(|(name, matcher)| {
                let wanted = match matcher {
                    ClaimMatch::Bool(b) => Value::Bool(*b),
                    ClaimMatch::Globs(gs) => json!(globs(gs)),
                };
                (name.clone(), wanted)
            })
            .collect();
        claims.sort_by(|a, b| a.0.cmp(&b.0));
        claims.into_iter().map(|(n, w)| json!([n, w])).collect()
    };
    json!({
        "issuer": sorted(c.issuers.iter().cloned()),
        "username": globs(&c.usernames),
        "email": globs(&c.emails),
        "email_domain": sorted(c.email_domains.iter().cloned()),
        "groups_any": sorted(c.groups_any.iter().cloned()),
        "groups_all": sorted(c.groups_all.iter().cloned()),
        "claims": claims,
    })
    .to_string()
}

fn sorted(items: impl Iterator<Item = String>) -> Vec<String> {
    let mut items: Vec<String> = items.collect();
    items.sort();
    items.dedup();
    items
}

#[cfg(test)]
mod tests {
    use super::*;

    fn requirement(min: u32, groups: &[&str], issuers: &[&str]) -> RuleRequirement {
        RuleRequirement {
            rule: "r".into(),
            min_approvals: min,
            approver_groups: groups.iter().map(ToString::to_string).collect(),
            approver_issuers: issuers.iter().map(ToString::to_string).collect(),
            approver_users: Vec::new(),
            max_window_secs: 3600,
            break_glass: false,
            auto: None,
            requester: "{}".into(),
        }
    }

    const BY_PEOPLE: HowApproved = HowApproved {
        window_secs: 1800,
        break_glass: false,
        by_policy: false,
    };

    #[test]
    fn a_requirement_asks_more_only_when_it_tightens() {
        let then = requirement(2, &["leads"], &["corp"]);
        let no_more = [
            requirement(2, &["leads"], &["corp"]),
            requirement(1, &["leads"], &["corp"]),
            requirement(2, &["leads", "sre"], &["corp"]),
            requirement(2, &["leads"], &[]),
            requirement(2, &["leads"], &["corp", "github"]),
        ];
        for now in no_more {
            assert_eq!(now.beyond(&then, BY_PEOPLE), None, "{now:?}");
        }
        let more = [
            requirement(3, &["leads"], &["corp"]),
            requirement(2, &["security"], &["corp"]),
            requirement(2, &["leads"], &["github"]),
            RuleRequirement {
                max_window_secs: 600,
                ..requirement(2, &["leads"], &["corp"])
            },
        ];
        for now in more {
            assert!(now.beyond(&then, BY_PEOPLE).is_some(), "{now:?}");
        }
        // From any issuer to one is a tightening too.
        assert!(requirement(2, &["leads"], &["corp"])
            .beyond(&requirement(2, &["leads"], &[]), BY_PEOPLE)
            .is_some());
    }

    #[test]
    fn equal_requirements_have_equal_digests_and_unequal_ones_differ() {
        let a = requirement(2, &["leads", "sre"], &["corp"]);
        let b = RuleRequirement {
            approver_groups: vec!["leads".into(), "sre".into()],
            ..requirement(2, &[], &["corp"])
        };
        assert_eq!(a.digest(), b.digest());
        assert_eq!(a.digest().len(), 64);
        assert_ne!(
            a.digest(),
            requirement(1, &["leads", "sre"], &["corp"]).digest()
        );
    }
}
