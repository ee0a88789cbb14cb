//! Phase three: the principals the certificate will carry.
//!
//! With no principals asked for, every granted principal that no deny rule
//! takes away. With principals asked for, all of them or nothing: the first
//! one that cannot be had refuses the request, and the reason says why that
//! one (denied, outside a time window, never granted), or, when an approval
//! is all that is missing, which access request to make.

use super::allow::{expand, Granted, Offers};
use super::deny::denied_by;
use super::{denial, needs_request, request_command, Ask, Notes, MAX_CERT_PRINCIPALS};
use crate::policy::rules::{windows_text, AllowRule, DenyRule};
use crate::policy::Denial;

/// The principals for `ask`, given what the rules offer and deny.
pub(super) fn principals(
    ask: &Ask<'_>,
    offers: &Offers<'_>,
    granted: &Granted<'_>,
    denies: &[&DenyRule],
    notes: &mut Notes<'_>,
) -> Result<Vec<String>, Denial> {
    let chosen = if ask.request.principals.is_empty() {
        all_granted(ask, offers, granted, denies, notes)?
    } else {
        all_requested(ask, offers, granted, denies)?
    };
    if chosen.len() > MAX_CERT_PRINCIPALS {
        return Err(denial(
            format!(
                "{} principals are more than one certificate may carry ({MAX_CERT_PRINCIPALS}); ask for the ones you need",
                chosen.len()
            ),
            vec![],
        ));
    }
    Ok(chosen)
}

/// Every granted principal not denied; when that leaves none, the reason
/// names what would have come closest.
fn all_granted(
    ask: &Ask<'_>,
    offers: &Offers<'_>,
    granted: &Granted<'_>,
    denies: &[&DenyRule],
    notes: &mut Notes<'_>,
) -> Result<Vec<String>, Denial> {
    let who = &ask.who;
    let mut chosen = Vec::new();
    let mut removed: Option<(String, &DenyRule)> = None;
    for p in granted.keys() {
        match denied_by(denies, p) {
            Some(d) => {
                notes.add(|| format!("principal {p:?}: removed by deny {}", d.name));
                removed.get_or_insert((p.to_string(), d));
            }
            None => chosen.push(p.to_string()),
        }
    }
    if !chosen.is_empty() {
        return Ok(chosen);
    }
    if let Some((p, d)) = removed {
        return Err(denial(
            format!("principal {p:?} is denied to {who} by rule {}", d.name),
            vec![d.name.clone()],
        ));
    }
    if let Some((rule, principals)) = offers.needs_approval.first() {
        return Err(needs_request(
            format!(
                "{who} has no principal without approval: {principals:?} (rule {}) need an approved access request; ask with `{}`",
                rule.name,
                request_command(principals)
            ),
            vec![rule.name.clone()],
            principals.clone(),
        ));
    }
    if let Some(rule) = offers.outside_window.first() {
        return Err(denial(
            format!(
                "{who} has no principal now: rule {} applies only {}",
                rule.name,
                windows_text(&rule.windows)
            ),
            vec![rule.name.clone()],
        ));
    }
    Err(denial(
        format!("no rule grants {who} any principal"),
        vec![],
    ))
}

/// The requested principals when every one is granted and none denied.
fn all_requested(
    ask: &Ask<'_>,
    offers: &Offers<'_>,
    granted: &Granted<'_>,
    denies: &[&DenyRule],
) -> Result<Vec<String>, Denial> {
    let who = &ask.who;
    let mut unapproved: Vec<(String, &AllowRule)> = Vec::new();
    for p in &ask.request.principals {
        if let Some(d) = denied_by(denies, p) {
            return Err(denial(
                format!("principal {p:?} is denied to {who} by rule {}", d.name),
                vec![d.name.clone()],
            ));
        }
        if granted.contains_key(p.as_str()) {
            continue;
        }
        // Reported only if nothing else is wrong with the request:
        // an approval would then be all it takes.
        if let Some((rule, _)) = offers.needs_approval.iter().find(|(_, ps)| ps.contains(p)) {
            unapproved.push((p.clone(), rule));
            continue;
        }
        if let Some(rule) = offers
            .outside_window
            .iter()
            .find(|r| expand(r, ask.identity, ask.reserved, &mut Notes::quiet()).contains(p))
        {
            return Err(denial(
                format!(
                    "principal {p:?} is granted to {who} by rule {} only {}",
                    rule.name,
                    windows_text(&rule.windows)
                ),
                vec![rule.name.clone()],
            ));
        }
        return Err(denial(
            format!("principal {p:?} is not granted to {who}: no rule grants it"),
            vec![],
        ));
    }
    if unapproved.is_empty() {
        return Ok(ask.request.principals.clone());
    }
    let principals: Vec<String> = unapproved.iter().map(|(p, _)| p.clone()).collect();
    let mut rules: Vec<String> = Vec::new();
    for (_, rule) in &unapproved {
        if !rules.contains(&rule.name) {
            rules.push(rule.name.clone());
        }
    }
    let what = match principals.as_slice() {
        [one] => format!("principal {one:?} requires"),
        many => format!("principals {many:?} require"),
    };
    Err(needs_request(
        format!(
            "{what} an approved access request (rule {}); ask with `{}`",
            rules.join(", "),
            request_command(&principals)
        ),
        rules,
        principals,
    ))
}
