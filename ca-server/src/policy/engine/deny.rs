//! Phase one: the deny rules that apply to this identity now.
//!
//! A deny rule that applies and names no principal refuses everything, so
//! the decision ends here; the others are handed on, and later phases take
//! their principals away whatever grants them.

use super::{denial, Ask, Notes};
use crate::policy::rules::{open_window, windows_text, DenyRule};
use crate::policy::Denial;

/// The deny rules of `rules` that apply to `ask`, or the denial of a rule
/// that takes every principal away.
pub(super) fn applying<'p>(
    rules: &'p [DenyRule],
    ask: &Ask<'_>,
    notes: &mut Notes<'_>,
) -> Result<Vec<&'p DenyRule>, Denial> {
    let mut denies = Vec::new();
    for rule in rules {
        match rule.conditions.check(ask.identity) {
            Err(failed) => notes.add(|| {
                format!(
                    "deny {}: does not apply: {}",
                    rule.name,
                    rule.conditions.describe(failed, ask.identity)
                )
            }),
            Ok(()) if open_window(&rule.windows, ask.now).is_none() => notes.add(|| {
                format!(
                    "deny {}: does not apply now: only {}",
                    rule.name,
                    windows_text(&rule.windows)
                )
            }),
            Ok(()) => {
                notes.add(|| format!("deny {}: applies", rule.name));
                if rule.principals.is_empty() {
                    return Err(denial(
                        format!(
                            "{} is denied every certificate by rule {}",
                            ask.who, rule.name
                        ),
                        vec![rule.name.clone()],
                    ));
                }
                denies.push(rule);
            }
        }
    }
    Ok(denies)
}

/// The first of `denies` that takes `principal` away.
pub(super) fn denied_by<'p>(denies: &[&'p DenyRule], principal: &str) -> Option<&'p DenyRule> {
    denies.iter().find(|d| d.denies(principal)).copied()
}
