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

use std::collections::BTreeMap;

use super::{Ask, Notes};
use crate::identity::Identity;
use crate::policy::reserved::ReservedLogins;
use crate::policy::rules::{open_window, windows_text, AllowRule, Approval};
use crate::policy::window::format_instant;
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
                offers.approved(rule, approval, principals, window_end, ask, notes);
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
    /// request grants the rule's principals it names, until the earlier of
    /// its window's end and the rule's.
    fn approved(
        &mut self,
        rule: &'p AllowRule,
        approval: &Approval,
        principals: Vec<String>,
        window_end: Option<UnixTime>,
        ask: &Ask<'_>,
        notes: &mut Notes<'_>,
    ) {
        let mut unapproved = principals.clone();
        for access in &ask.request.approved {
            let covered: Vec<String> = principals
                .iter()
                .filter(|p| access.principals.contains(p))
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
