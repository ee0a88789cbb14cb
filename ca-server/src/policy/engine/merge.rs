//! Phase five: the deciding rules and the restrictions they agree on.
//!
//! The deciding rules are those that grant a principal the certificate
//! carries. Critical options (`force-command`, `source-address`) stay with
//! their principals: a principal is bound by those of every rule granting
//! it, and select puts only principals bound alike into one certificate, so
//! one principal's forced command or address list never reaches another.
//! Extensions are an allow-list each deciding rule sets for the whole
//! certificate: those every deciding rule allows.

use std::collections::BTreeMap;

use super::allow::{Candidate, Granted, Offers};
use super::{denial, Ask};
use crate::policy::restrict::{intersect, Cidr};
use crate::policy::Denial;

/// The candidates behind the chosen principals.
pub(super) struct Deciding<'o> {
    /// In the order the allow rules were offered.
    pub(super) candidates: Vec<&'o Candidate<'o>>,
    /// Their rules' names, each once, for the key ID and the audit record.
    pub(super) rules: Vec<String>,
    /// The approved access requests among them, ascending.
    pub(super) request_ids: Vec<u64>,
}

impl<'o> Deciding<'o> {
    /// The candidates of `offers` that grant one of `chosen`.
    pub(super) fn of(
        chosen: &[String],
        granted: &Granted<'_>,
        offers: &'o Offers<'o>,
    ) -> Deciding<'o> {
        let mut indices: Vec<usize> = chosen
            .iter()
            .flat_map(|p| granted.get(p.as_str()).cloned().unwrap_or_default())
            .collect();
        indices.sort_unstable();
        indices.dedup();
        let candidates: Vec<&Candidate<'_>> =
            indices.iter().map(|&i| &offers.candidates[i]).collect();
        let mut rules: Vec<String> = Vec::new();
        for c in &candidates {
            if !rules.contains(&c.rule.name) {
                rules.push(c.rule.name.clone());
            }
        }
        let mut request_ids: Vec<u64> = candidates.iter().filter_map(|c| c.request_id).collect();
        request_ids.sort_unstable();
        request_ids.dedup();
        Deciding {
            candidates,
            rules,
            request_ids,
        }
    }
}

/// What the certificate lets its holder do, as every deciding rule allows.
pub(super) struct Restrictions {
    pub(super) extensions: Vec<String>,
    /// Name and value.
    pub(super) critical_options: Vec<(String, String)>,
}

/// The critical options (`force-command`, `source-address`) that bind a
/// principal: those of every candidate granting it, strictest first.
pub(super) type Critical = Vec<(String, String)>;

/// For each granted principal, the critical options that bind it, or why
/// no certificate can carry it (its rules force different commands, or
/// their source addresses have nothing in common).
pub(super) fn critical_by_principal<'o>(
    offers: &'o Offers<'o>,
    granted: &Granted<'o>,
    ask: &Ask<'_>,
) -> BTreeMap<&'o str, Result<Critical, String>> {
    granted
        .iter()
        .map(|(p, indices)| {
            let candidates: Vec<&Candidate<'_>> =
                indices.iter().map(|&i| &offers.candidates[i]).collect();
            (*p, critical(&candidates, ask))
        })
        .collect()
}

/// Critical options as reasons name them.
pub(super) fn critical_text(critical: &Critical) -> String {
    if critical.is_empty() {
        return "no forced command or source address".into();
    }
    critical
        .iter()
        .map(|(name, value)| format!("{name} {value:?}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The restrictions every deciding rule agrees on, or why they cannot agree.
/// The chosen principals share their critical options (select sees to it),
/// so a conflict here is one the selection let through, and refuses.
pub(super) fn restrictions(deciding: &Deciding<'_>, ask: &Ask<'_>) -> Result<Restrictions, Denial> {
    let candidates = &deciding.candidates;
    let mut extensions: Vec<String> = candidates
        .first()
        .map(|c| c.rule.extensions.clone())
        .unwrap_or_default();
    for c in &candidates[1.min(candidates.len())..] {
        extensions.retain(|e| c.rule.extensions.contains(e));
    }
    let critical_options =
        critical(candidates, ask).map_err(|reason| denial(reason, deciding.rules.clone()))?;
    Ok(Restrictions {
        extensions,
        critical_options,
    })
}

/// The critical options `candidates` impose together: one forced command
/// (differing ones cannot be combined) and the source addresses every list
/// admits (none in common cannot be combined).
fn critical(candidates: &[&Candidate<'_>], ask: &Ask<'_>) -> Result<Critical, String> {
    let mut critical_options = Vec::new();
    if let Some(command) = forced_command(candidates)? {
        critical_options.push(("force-command".to_string(), command.to_string()));
    }
    let mut sources: Option<(Vec<Cidr>, Vec<&str>)> = None;
    for c in candidates {
        if let Some(entries) = &c.rule.source_address {
            let nets: Vec<Cidr> = entries
                .iter()
                .map(|e| e.resolve(ask.request.client_addr))
                .collect();
            sources = Some(match sources {
                None => {
                    let mut nets = nets;
                    nets.sort();
                    nets.dedup();
                    (nets, vec![c.rule.name.as_str()])
                }
                Some((prev, mut rules)) => {
                    if !rules.contains(&c.rule.name.as_str()) {
                        rules.push(&c.rule.name);
                    }
                    (intersect(&prev, &nets), rules)
                }
            });
        }
    }
    if let Some((nets, rules)) = sources {
        if nets.is_empty() {
            return Err(format!(
                "the source addresses of rules {} have no address in common",
                rules.join(", ")
            ));
        }
        let list: Vec<String> = nets.iter().map(ToString::to_string).collect();
        critical_options.push(("source-address".to_string(), list.join(",")));
    }
    Ok(critical_options)
}

/// The one command `candidates` force, if any.
fn forced_command<'o>(candidates: &[&'o Candidate<'o>]) -> Result<Option<&'o str>, String> {
    let mut command: Option<(&str, &str)> = None;
    for c in candidates {
        if let Some(cmd) = &c.rule.force_command {
            match command {
                Some((other, other_rule)) if other != cmd => {
                    return Err(format!(
                        "rules {other_rule} and {} force different commands",
                        c.rule.name
                    ));
                }
                _ => command = Some((cmd, &c.rule.name)),
            }
        }
    }
    Ok(command.map(|(cmd, _)| cmd))
}
