//! What the rules say about access requests: on which terms a principal may
//! be asked for, and whose approval counts.
//!
//! These answer from the same rules as a certificate decision, so a request
//! can only be made for principals that the rule it is made under would
//! grant once approved, and never for one that a deny rule takes away.

use super::allow::expand;
use super::{Notes, PolicySet};
use crate::identity::Identity;
use crate::policy::rules::{open_window, AllowRule, Approval};
use crate::policy::{AccessTerms, RuleRequirement};
use crate::UnixTime;

impl PolicySet {
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
                        && expand(rule, identity, &self.reserved, &mut Notes::quiet()).contains(p)
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
                    requirements: Vec::new(),
                });
                if t.rules.contains(&rule.name) {
                    continue;
                }
                t.rules.push(rule.name.clone());
                t.requirements.push(RuleRequirement::of(rule, approval));
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

    /// What each of `rules` requires now; `None` for one that is gone or
    /// has no `[rule.approval]`.
    pub fn requirements(&self, rules: &[String]) -> Vec<Option<RuleRequirement>> {
        rules
            .iter()
            .map(|name| {
                let rule = self.allow.iter().find(|rule| &rule.name == name)?;
                rule.approval
                    .as_ref()
                    .map(|approval| RuleRequirement::of(rule, approval))
            })
            .collect()
    }
}
