//! Phase three: the principals the certificate will carry.
//!
//! With no principals asked for, every granted principal that no deny rule
//! takes away. With principals asked for, all of them or nothing: the first
//! one that cannot be had refuses the request, and the reason says why that
//! one (denied, outside a time window, never granted), or, when an approval
//! is all that is missing, which access request to make.
//!
//! One certificate carries only principals bound by the same critical
//! options (forced command, source addresses). With nothing asked for, the
//! certificate carries the principals bound by none (or, when every
//! principal is bound, those alike with the first rule's), and the client
//! is told which others exist and how to ask for them. A request that names
//! principals bound differently is refused with the split to ask for
//! instead; a principal whose own rules cannot agree is never issued.

use std::collections::BTreeMap;

use super::allow::{expand, Granted, Offers};
use super::deny::denied_by;
use super::merge::{critical_text, Critical};
use super::{denial, needs_request, request_command, Ask, Notes, MAX_CERT_PRINCIPALS};
use crate::policy::rules::{windows_text, AllowRule, DenyRule};
use crate::policy::Denial;

/// Each granted principal's critical options, or why none can be issued.
pub(super) type Bindings<'o> = BTreeMap<&'o str, Result<Critical, String>>;

/// The principals chosen, and what the client should hear about the rest.
pub(super) struct Selection {
    pub(super) principals: Vec<String>,
    /// For the client: granted principals left out because they are bound
    /// differently, and how to ask for them.
    pub(super) notes: Vec<String>,
}

/// The principals for `ask`, given what the rules offer and deny.
pub(super) fn principals(
    ask: &Ask<'_>,
    offers: &Offers<'_>,
    granted: &Granted<'_>,
    bindings: &Bindings<'_>,
    denies: &[&DenyRule],
    notes: &mut Notes<'_>,
) -> Result<Selection, Denial> {
    let selection = if ask.request.principals.is_empty() {
        all_granted(ask, offers, granted, bindings, denies, notes)?
    } else {
        let principals = all_requested(ask, offers, granted, denies)?;
        alike(ask, offers, granted, bindings, &principals)?;
        Selection {
            principals,
            notes: Vec::new(),
        }
    };
    let chosen = &selection.principals;
    if chosen.len() > MAX_CERT_PRINCIPALS {
        return Err(denial(
            format!(
                "{} principals are more than one certificate may carry ({MAX_CERT_PRINCIPALS}); ask for the ones you need",
                chosen.len()
            ),
            vec![],
        ));
    }
    Ok(selection)
}

/// Every granted principal not denied and bound alike; when that leaves
/// none, the reason names what would have come closest.
fn all_granted(
    ask: &Ask<'_>,
    offers: &Offers<'_>,
    granted: &Granted<'_>,
    bindings: &Bindings<'_>,
    denies: &[&DenyRule],
    notes: &mut Notes<'_>,
) -> Result<Selection, Denial> {
    let who = &ask.who;
    let mut issuable: Vec<(&str, &Critical)> = Vec::new();
    let mut removed: Option<(String, &DenyRule)> = None;
    let mut unbindable: Option<(String, &str)> = None;
    for p in granted.keys() {
        if let Some(d) = denied_by(denies, p) {
            notes.add(|| format!("principal {p:?}: removed by deny {}", d.name));
            removed.get_or_insert((p.to_string(), d));
            continue;
        }
        match &bindings[p] {
            Ok(critical) => issuable.push((p, critical)),
            Err(reason) => {
                notes.add(|| format!("principal {p:?}: can never be issued: {reason}"));
                unbindable.get_or_insert((p.to_string(), reason));
            }
        }
    }
    let mut groups = by_binding(issuable);
    // Unbound principals if there are any; otherwise those bound like the
    // principal of the earliest rule.
    let earliest = |ps: &[&str]| {
        ps.iter()
            .filter_map(|p| granted.get(p).and_then(|c| c.first().copied()))
            .min()
            .unwrap_or(usize::MAX)
    };
    let chosen = groups
        .iter()
        .position(|(critical, _)| critical.is_empty())
        .or_else(|| (0..groups.len()).min_by_key(|&i| earliest(&groups[i].1)));
    if let Some(chosen) = chosen {
        let (_, principals) = groups.remove(chosen);
        let client_notes: Vec<String> = groups
            .iter()
            .map(|(critical, ps)| {
                format!(
                    "also granted, but bound by other restrictions ({}) and so left out of this certificate: {}; ask for them on their own with `{}`",
                    critical_text(critical),
                    ps.join(", "),
                    principal_flags(ps)
                )
            })
            .collect();
        for line in &client_notes {
            notes.add(|| format!("note for the client: {line}"));
        }
        return Ok(Selection {
            principals: principals.iter().map(ToString::to_string).collect(),
            notes: client_notes,
        });
    }
    if let Some((p, reason)) = unbindable {
        return Err(denial(
            format!("principal {p:?} can never be issued to {who}: {reason} (`jit-ssh-ca policy check` reports it)"),
            granted_rules(offers, granted, &p),
        ));
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

/// Refuses `chosen` unless every one of them is bound by the same critical
/// options, naming the certificates to ask for instead.
fn alike(
    ask: &Ask<'_>,
    offers: &Offers<'_>,
    granted: &Granted<'_>,
    bindings: &Bindings<'_>,
    chosen: &[String],
) -> Result<(), Denial> {
    let mut bound = Vec::new();
    for p in chosen {
        match &bindings[p.as_str()] {
            Ok(critical) => bound.push((p.as_str(), critical)),
            Err(reason) => {
                return Err(denial(
                    format!(
                        "principal {p:?} can never be issued to {}: {reason} (`jit-ssh-ca policy check` reports it)",
                        ask.who
                    ),
                    granted_rules(offers, granted, p),
                ))
            }
        }
    }
    let groups = by_binding(bound);
    if groups.len() < 2 {
        return Ok(());
    }
    let split: Vec<String> = groups
        .iter()
        .map(|(critical, ps)| format!("`{}` ({})", principal_flags(ps), critical_text(critical)))
        .collect();
    let mut rules = Vec::new();
    for p in chosen {
        for rule in granted_rules(offers, granted, p) {
            if !rules.contains(&rule) {
                rules.push(rule);
            }
        }
    }
    let option = |critical: &Critical, name: &str| {
        critical
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    };
    let first = groups[0].0;
    let cause = if groups
        .iter()
        .any(|(c, _)| option(c, "force-command") != option(first, "force-command"))
    {
        "their rules force different commands"
    } else {
        "their rules admit different source addresses"
    };
    Err(denial(
        format!(
            "principals {chosen:?} cannot share a certificate: {cause}; ask for each set in a certificate of its own: {}",
            split.join(" and ")
        ),
        rules,
    ))
}

/// `principals` grouped by the critical options that bind them, groups and
/// their principals in the order given.
fn by_binding<'a>(
    principals: impl IntoIterator<Item = (&'a str, &'a Critical)>,
) -> Vec<(&'a Critical, Vec<&'a str>)> {
    let mut groups: Vec<(&Critical, Vec<&str>)> = Vec::new();
    for (p, critical) in principals {
        match groups.iter_mut().find(|(c, _)| *c == critical) {
            Some((_, ps)) => ps.push(p),
            None => groups.push((critical, vec![p])),
        }
    }
    groups
}

/// How the client asks for `principals`: `--principal a --principal b`.
fn principal_flags(principals: &[&str]) -> String {
    principals
        .iter()
        .map(|p| format!("--principal {p}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The names of the rules that grant `principal`, each once.
fn granted_rules(offers: &Offers<'_>, granted: &Granted<'_>, principal: &str) -> Vec<String> {
    let mut rules: Vec<String> = Vec::new();
    for &i in granted
        .get(principal)
        .map(Vec::as_slice)
        .unwrap_or_default()
    {
        let name = &offers.candidates[i].rule.name;
        if !rules.contains(name) {
            rules.push(name.clone());
        }
    }
    rules
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
