//! Phase four: how long the certificate lives.
//!
//! The lifetime asked for (or, when none is, the smallest `default_ttl` of
//! the deciding rules), cut to the tightest bound: `certs.max_ttl`, each
//! deciding rule's `max_ttl`, the time left in each time window or access
//! request window the certificate's principals come from, and the time until
//! the next window of a deny rule that would refuse one of them opens. So a
//! certificate never outlives the conditions it was granted under: a deny
//! window clips it exactly as the end of an allow window does. The trace
//! names the bound that won.

use std::time::Duration;

use jit_ssh_common::duration::format_duration;

use super::merge::Deciding;
use super::{Ask, Notes};
use crate::config::CertSettings;
use crate::policy::rules::DenyRule;
use crate::policy::window::{format_instant, next_start};

/// The lifetime for `ask` of a certificate for `principals` under the
/// `deciding` rules, the `deny` rules and the CA's `certs`.
pub(super) fn ttl(
    certs: &CertSettings,
    deciding: &Deciding<'_>,
    deny: &[DenyRule],
    principals: &[String],
    ask: &Ask<'_>,
    notes: &mut Notes<'_>,
) -> Duration {
    let mut cap = certs.max_ttl;
    let mut cap_by = "certs.max_ttl".to_string();
    let mut default = certs.max_ttl;
    for c in &deciding.candidates {
        if c.rule.max_ttl < cap {
            cap = c.rule.max_ttl;
            cap_by = format!("max_ttl of rule {}", c.rule.name);
        }
        if let Some(end) = c.window_end {
            let left = Duration::from_secs(end.saturating_sub(ask.now));
            if left < cap {
                cap = left;
                cap_by = match c.request_id {
                    Some(id) => format!(
                        "end of access request {id}'s window at {}",
                        format_instant(end)
                    ),
                    None => format!(
                        "end of rule {}'s window at {}",
                        c.rule.name,
                        format_instant(end)
                    ),
                };
            }
        }
        default = default.min(c.rule.default_ttl);
    }
    // A deny rule with windows that applies to this identity and would take
    // one of the principals away: the certificate ends when its next window
    // opens. (One open now has already taken its principals away.)
    for rule in deny {
        if rule.windows.is_empty()
            || !principals.iter().any(|p| rule.denies(p))
            || rule.conditions.check(ask.identity).is_err()
        {
            continue;
        }
        if let Some(start) = next_start(&rule.windows, ask.now) {
            let left = Duration::from_secs(start.saturating_sub(ask.now));
            if left < cap {
                cap = left;
                cap_by = format!(
                    "start of deny rule {}'s window at {}",
                    rule.name,
                    format_instant(start)
                );
            }
        }
    }
    let asked = ask.request.ttl.unwrap_or(default);
    let ttl = asked.min(cap);
    notes.add(|| {
        format!(
            "lifetime: {} {} (at most {}, set by {cap_by})",
            format_duration(ttl),
            if ask.request.ttl.is_some() {
                "asked for"
            } else {
                "default"
            },
            format_duration(cap)
        )
    });
    ttl
}
