//! What the rules of combination make of a policy, reported when it loads:
//! a principal one rule grants only with an approval and another rule may
//! grant without (the approval wins, which the second rule's author may not
//! expect), a principal that two rules bind with critical options that can
//! never agree (it can never be issued to someone both apply to), and claim
//! conditions on claims the CA never hands to policy.
//!
//! These are warnings: the engine decides each case safely, and the policy
//! loads. Only what can be shown from the rules' text counts: two rules are
//! taken to possibly apply to one identity unless their issuers differ.

use crate::oidc::UNMATCHED_CLAIMS;
use crate::policy::glob::Glob;
use crate::policy::reserved::ReservedLogins;
use crate::policy::restrict::{intersect, Cidr, SourceEntry};
use crate::policy::rules::{AdminRule, AllowRule, Conditions, DenyRule, Location};
use crate::policy::template::Template;

use super::Diagnostic;

/// Every combination warning for these rules.
pub(super) fn warnings(
    allow: &[AllowRule],
    deny: &[DenyRule],
    admin: &[AdminRule],
    reserved: &ReservedLogins,
) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    for (i, a) in allow.iter().enumerate() {
        for b in &allow[i + 1..] {
            if !may_share_identity(&a.conditions, &b.conditions) {
                continue;
            }
            let Some(shared) = shared_principal(a, b, reserved) else {
                continue;
            };
            match (&a.approval, &b.approval) {
                (Some(_), None) => out.push(approval_warning(b, a, &shared)),
                (None, Some(_)) => out.push(approval_warning(a, b, &shared)),
                _ => {}
            }
            if let Some(why) = never_agree(a, b) {
                out.push(warn(
                    &b.location,
                    format!(
                        "rules {:?} and {:?} both grant {shared} and {why}: someone both apply to can never get it (docs/policies.md, \"Rules of combination\")",
                        a.name, b.name
                    ),
                ));
            }
        }
    }
    let conditions = allow
        .iter()
        .map(|r| (&r.name, &r.location, &r.conditions))
        .chain(deny.iter().map(|r| (&r.name, &r.location, &r.conditions)))
        .chain(admin.iter().map(|r| (&r.name, &r.location, &r.conditions)));
    for (name, location, conditions) in conditions {
        for (claim, _) in &conditions.claims {
            if UNMATCHED_CLAIMS.contains(&claim.as_str()) {
                out.push(warn(
                    location,
                    format!(
                        "rule {name:?}: claims.{claim} can never match: the CA does not hand {claim} to policy (name issuers with `issuer`; times and the nonce change with every sign-in)"
                    ),
                ));
            }
        }
    }
    out
}

fn warn(location: &Location, message: String) -> Diagnostic {
    Diagnostic {
        location: Some(location.clone()),
        message,
    }
}

fn approval_warning(free: &AllowRule, gated: &AllowRule, shared: &str) -> Diagnostic {
    warn(
        &free.location,
        format!(
            "rule {:?} may grant {shared}, which rule {:?} ({}) grants only with an approved access request: whoever both apply to gets it only with one (the strictest rule wins; docs/policies.md, \"Rules of combination\")",
            free.name, gated.name, gated.location
        ),
    )
}

/// Whether one identity may meet both `a` and `b`: yes unless both name
/// issuers and none in common.
fn may_share_identity(a: &Conditions, b: &Conditions) -> bool {
    a.issuers.is_empty() || b.issuers.is_empty() || a.issuers.iter().any(|i| b.issuers.contains(i))
}

/// A principal both rules may grant, as a warning names it: the literal
/// name, or the templates that may expand to the same name.
fn shared_principal(a: &AllowRule, b: &AllowRule, reserved: &ReservedLogins) -> Option<String> {
    for x in &a.principals {
        for y in &b.principals {
            match (x.literal(), y.literal()) {
                (Some(l), Some(m)) if l == m => return Some(format!("{l:?}")),
                (Some(_), Some(_)) => {}
                (Some(l), None) if expands_to(y, l, reserved) => {
                    return Some(format!("{l:?} (through {:?})", y.as_str()))
                }
                (None, Some(m)) if expands_to(x, m, reserved) => {
                    return Some(format!("{m:?} (through {:?})", x.as_str()))
                }
                (None, None) => {
                    return Some(format!(
                        "what {:?} and {:?} may both expand to",
                        x.as_str(),
                        y.as_str()
                    ))
                }
                _ => {}
            }
        }
    }
    None
}

/// Whether `template` (with a placeholder) may expand to `name`: never to a
/// reserved login, otherwise when its literal parts fit around `name`.
fn expands_to(template: &Template, name: &str, reserved: &ReservedLogins) -> bool {
    if reserved.reason(name).is_some() {
        return false;
    }
    let mut pattern = String::new();
    let mut in_placeholder = false;
    for c in template.as_str().chars() {
        match c {
            '{' => {
                in_placeholder = true;
                pattern.push('*');
            }
            '}' => in_placeholder = false,
            c if !in_placeholder => pattern.push(c),
            _ => {}
        }
    }
    Glob::new(&pattern).is_ok_and(|g| g.matches(name))
}

/// Why `a` and `b` can never bind one principal together: different forced
/// commands, or fixed source addresses with none in common.
fn never_agree(a: &AllowRule, b: &AllowRule) -> Option<String> {
    if let (Some(x), Some(y)) = (&a.force_command, &b.force_command) {
        if x != y {
            return Some(format!("force different commands ({x:?}, {y:?})"));
        }
    }
    let fixed = |entries: &Option<Vec<SourceEntry>>| -> Option<Vec<Cidr>> {
        entries
            .as_ref()?
            .iter()
            .map(|e| match e {
                SourceEntry::Net(net) => Some(*net),
                SourceEntry::ClientIp => None,
            })
            .collect()
    };
    if let (Some(x), Some(y)) = (fixed(&a.source_address), fixed(&b.source_address)) {
        if intersect(&x, &y).is_empty() {
            return Some("admit source addresses with none in common".into());
        }
    }
    None
}
