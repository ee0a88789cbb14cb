//! Shadowing: an allow rule that a deny rule always cancels is a mistake in
//! the policy, reported when it loads rather than discovered when nobody can
//! log in.

use crate::policy::glob::Glob;
use crate::policy::rules::{AllowRule, ClaimMatch, Conditions, DenyRule};

/// Whether `deny` applies to everyone `allow` applies to, at all times, and
/// denies every principal `allow` can grant. Conservative: only what can be
/// shown from the rules' text counts.
pub(super) fn shadows(deny: &DenyRule, allow: &AllowRule) -> bool {
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
