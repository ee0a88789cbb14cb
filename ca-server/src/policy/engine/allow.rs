//! Phase two: what the allow rules that apply would grant.
//!
//! Each applying rule becomes a [`Candidate`]: the principals it grants and
//! until when. A rule with `[rule.approval]` grants only what an open
//! approved access request names, one candidate per request; the rest of its
//! principals, and the rules whose time windows are closed, are kept aside so
//! that a refusal can say what would have helped.
//!
//! Approval binds to the principal, not to the rule that says so: a
//! principal that any rule applying to the identity grants only with an
//! approval (whatever its time windows) is granted by no other rule without
//! one. The strictest rule wins, so `{username}` or a second rule naming
//! `release` can never hand out what `[rule.approval]` guards.
//!
//! An approval is bound to the rules it was approved under
//! ([`crate::policy::binding`]): a request grants a principal only while
//! each of those rules is still there, still matches the requester and asks
//! no more than it did, and every rule that now guards the principal is one
//! of them. Otherwise it grants nothing, and the trace says why.

use std::collections::BTreeMap;

use super::{Ask, Notes};
use crate::identity::Identity;
use crate::policy::reserved::ReservedLogins;
use crate::policy::rules::{open_window, windows_text, AllowRule, Approval};
use crate::policy::window::format_instant;
use crate::policy::{ApprovedAccess, RuleRequirement};
use crate::UnixTime;

/// Principals one allow rule grants for this request.
pub(super) struct Candidate<'p> {
    pub(super) rule: &'p AllowRule,
    pub(super) principals: Vec<String>,
    /// When the grant ends: the end of the rule's open window or of the
    /// access request's, whichever is first; `None` is never.
    pub(super) window_end: Option<UnixTime>,
    /// The approved access request that lets `rule` grant `principals`.
    pub(super) request_id: Option<u64>,
}

/// Everything the allow rules offer this request, and what they would offer
/// with an approval or at another time.
pub(super) struct Offers<'p> {
    pub(super) candidates: Vec<Candidate<'p>>,
    /// Rules that apply but whose principals (listed) need an approved access
    /// request nobody holds.
    pub(super) needs_approval: Vec<(&'p AllowRule, Vec<String>)>,
    /// Rules that apply, but not at this time.
    pub(super) outside_window: Vec<&'p AllowRule>,
}

/// For each granted principal, the indices of the candidates granting it,
/// in principal order.
pub(super) type Granted<'o> = BTreeMap<&'o str, Vec<usize>>;

impl<'p> Offers<'p> {
    /// What `rules` offer `ask`.
    pub(super) fn of(rules: &'p [AllowRule], ask: &Ask<'_>, notes: &mut Notes<'_>) -> Offers<'p> {
        let mut offers = Offers {
            candidates: Vec::new(),
            needs_approval: Vec::new(),
            outside_window: Vec::new(),
        };
        let gated = gated(rules, ask);
        let holding: Vec<Vec<String>> = ask
            .request
            .approved
            .iter()
            .map(|access| holding(rules, access, ask, notes))
            .collect();
        for rule in rules {
            if let Err(failed) = rule.conditions.check(ask.identity) {
                notes.add(|| {
                    format!(
                        "rule {}: does not apply: {}",
                        rule.name,
                        rule.conditions.describe(failed, ask.identity)
                    )
                });
                continue;
            }
            let Some(window_end) = open_window(&rule.windows, ask.now) else {
                notes.add(|| {
                    format!(
                        "rule {}: matches, but not now: only {}",
                        rule.name,
                        windows_text(&rule.windows)
                    )
                });
                offers.outside_window.push(rule);
                continue;
            };
            let mut principals = expand(rule, ask.identity, ask.reserved, notes);
            if let Some(approval) = &rule.approval {
                offers.approved(rule, approval, principals, window_end, &holding, ask, notes);
                continue;
            }
            principals.retain(|p| match gated.get(p.as_str()) {
                Some(by) => {
                    notes.add(|| {
                        format!(
                            "rule {}: {p:?} withheld: rule {by} grants it only with an approved access request (the strictest rule wins)",
                            rule.name
                        )
                    });
                    false
                }
                None => true,
            });
            notes.add(|| format!("rule {}: grants {:?}", rule.name, principals));
            offers.candidates.push(Candidate {
                rule,
                principals,
                window_end,
                request_id: None,
            });
        }
        offers
    }

    /// What `rule`, which needs `approval`, offers: each open approved
    /// request grants the rule's principals it names and still holds
    /// (`holding`, by request), until the earlier of its window's end and
    /// the rule's.
    #[allow(clippy::too_many_arguments)]
    fn approved(
        &mut self,
        rule: &'p AllowRule,
        approval: &Approval,
        principals: Vec<String>,
        window_end: Option<UnixTime>,
        holding: &[Vec<String>],
        ask: &Ask<'_>,
        notes: &mut Notes<'_>,
    ) {
        let mut unapproved = principals.clone();
        for (access, held) in ask.request.approved.iter().zip(holding) {
            let covered: Vec<String> = principals
                .iter()
                .filter(|p| held.contains(p))
                .cloned()
                .collect();
            if covered.is_empty() || access.window_end <= ask.now {
                continue;
            }
            notes.add(|| {
                format!(
                    "rule {}: grants {:?} by approved access request {} until {}",
                    rule.name,
                    covered,
                    access.id,
                    format_instant(access.window_end)
                )
            });
            unapproved.retain(|p| !covered.contains(p));
            let end = window_end.map_or(access.window_end, |e| e.min(access.window_end));
            self.candidates.push(Candidate {
                rule,
                principals: covered,
                window_end: Some(end),
                request_id: Some(access.id),
            });
        }
        if !unapproved.is_empty() {
            notes.add(|| {
                format!(
                    "rule {}: matches; {:?} need an approved access request (approvers: groups {:?}, users {:?}); none is held",
                    rule.name, unapproved, approval.approver_groups, approval.approver_users
                )
            });
            self.needs_approval.push((rule, unapproved));
        }
    }

    /// Which candidates grant each principal.
    pub(super) fn by_principal(&self) -> Granted<'_> {
        let mut granted: Granted<'_> = BTreeMap::new();
        for (index, candidate) in self.candidates.iter().enumerate() {
            for p in &candidate.principals {
                granted.entry(p.as_str()).or_default().push(index);
            }
        }
        granted
    }
}

/// The principals of `access` it still grants to the identity of `ask`:
/// none when a rule it was approved under is gone, no longer matches the
/// identity, or asks more than it did; of the rest, those that every rule
/// with `[rule.approval]` now guarding them was among its rules.
fn holding(
    rules: &[AllowRule],
    access: &ApprovedAccess,
    ask: &Ask<'_>,
    notes: &mut Notes<'_>,
) -> Vec<String> {
    let id = access.id;
    let lapsed = |why: String, notes: &mut Notes<'_>| {
        notes.add(|| format!("approved access request {id}: no longer holds: {why}"));
        Vec::new()
    };
    let Some(under) = &access.approved_under else {
        return lapsed(
            "it was recorded before approvals were bound to their rules; ask again".into(),
            notes,
        );
    };
    for then in under {
        let Some((rule, approval)) = rules
            .iter()
            .find(|r| r.name == then.rule)
            .and_then(|r| r.approval.as_ref().map(|a| (r, a)))
        else {
            return lapsed(
                format!(
                    "rule {}, under which it was approved, is gone (removed, renamed or without [rule.approval])",
                    then.rule
                ),
                notes,
            );
        };
        if let Err(failed) = rule.conditions.check(ask.identity) {
            return lapsed(
                format!(
                    "the requester no longer matches rule {}: {}",
                    rule.name,
                    rule.conditions.describe(failed, ask.identity)
                ),
                notes,
            );
        }
        if let Some(more) = RuleRequirement::of(rule, approval).beyond(then, access.how) {
            return lapsed(format!("rule tightened: {more}"), notes);
        }
    }
    let mut held = Vec::new();
    for p in &access.principals {
        let guarding: Vec<&AllowRule> = rules
            .iter()
            .filter(|r| r.approval.is_some() && r.conditions.check(ask.identity).is_ok())
            .filter(|r| expand(r, ask.identity, ask.reserved, &mut Notes::quiet()).contains(p))
            .collect();
        if guarding.is_empty() {
            notes.add(|| {
                format!("approved access request {id}: {p:?}: no rule with [rule.approval] that applies grants it now")
            });
            continue;
        }
        match guarding
            .iter()
            .find(|r| !under.iter().any(|then| then.rule == r.name))
        {
            Some(other) => notes.add(|| {
                format!(
                    "approved access request {id}: {p:?}: no longer held: rule {} guards it now and it was not approved under that rule",
                    other.name
                )
            }),
            None => held.push(p.clone()),
        }
    }
    if !held.is_empty() {
        notes.add(|| {
            let digests: Vec<String> = under
                .iter()
                .map(|r| format!("{} (requirement {})", r.rule, &r.digest()[..16]))
                .collect();
            format!(
                "approved access request {id}: still holds for {held:?}: approved under {}, which ask no more now",
                digests.join(", ")
            )
        });
    }
    held
}

/// The principals that a rule with `[rule.approval]` applying to the
/// identity names, each with the first such rule: no other rule grants them
/// without an approved access request. Windows do not count here: a closed
/// window keeps the approval rule from granting, not from guarding.
fn gated<'p>(rules: &'p [AllowRule], ask: &Ask<'_>) -> BTreeMap<String, &'p str> {
    let mut gated = BTreeMap::new();
    for rule in rules {
        if rule.approval.is_none() || rule.conditions.check(ask.identity).is_err() {
            continue;
        }
        for p in expand(rule, ask.identity, ask.reserved, &mut Notes::quiet()) {
            gated.entry(p).or_insert(rule.name.as_str());
        }
    }
    gated
}

/// The principals `rule` names for `identity`, templates expanded, each once
/// and in the rule's order. Templates that expand to nothing usable, or to a
/// name in `reserved`, are noted.
pub(super) fn expand(
    rule: &AllowRule,
    identity: &Identity,
    reserved: &ReservedLogins,
    notes: &mut Notes<'_>,
) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for template in &rule.principals {
        let expansion = template.expand(identity, reserved);
        for dropped in expansion.dropped {
            notes.add(|| format!("rule {}: {}: {dropped}", rule.name, template.as_str()));
        }
        for p in expansion.principals {
            if !out.contains(&p) {
                out.push(p);
            }
        }
    }
    out
}
