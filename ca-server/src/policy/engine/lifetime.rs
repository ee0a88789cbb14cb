//! Phase four: how long the certificate lives.
//!
//! The lifetime asked for (or, when none is, the smallest `default_ttl` of
//! the deciding rules), cut to the tightest bound: `certs.max_ttl`, each
//! deciding rule's `max_ttl`, and the time left in each time window or
//! access request window the certificate's principals come from. The trace
//! names the bound that won.

use std::time::Duration;

use jit_ssh_common::duration::format_duration;

use super::merge::Deciding;
use super::{Ask, Notes};
use crate::config::CertSettings;

/// The lifetime for `ask` under the `deciding` rules and the CA's `certs`.
pub(super) fn ttl(
    certs: &CertSettings,
    deciding: &Deciding<'_>,
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
                    Some(id) => format!("end of access request {id}'s window"),
                    None => format!("end of rule {}'s window", c.rule.name),
                };
            }
        }
        default = default.min(c.rule.default_ttl);
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
