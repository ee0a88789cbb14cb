//! Phase five: the deciding rules and the restrictions they agree on.
//!
//! The deciding rules are those that grant a principal the certificate
//! carries; each of them bounds the whole certificate, so the strictest
//! wins: extensions are those every deciding rule allows, source addresses
//! those every rule's list admits (none in common refuses the request), and
//! forced commands must be one and the same command.

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

/// The restrictions every deciding rule agrees on, or why they cannot agree.
pub(super) fn restrictions(deciding: &Deciding<'_>, ask: &Ask<'_>) -> Result<Restrictions, Denial> {
    let candidates = &deciding.candidates;
    let mut extensions: Vec<String> = candidates
        .first()
        .map(|c| c.rule.extensions.clone())
        .unwrap_or_default();
    for c in &candidates[1.min(candidates.len())..] {
        extensions.retain(|e| c.rule.extensions.contains(e));
    }
    let mut critical_options = Vec::new();
    if let Some(command) = forced_command(deciding)? {
        critical_options.push(("force-command".to_string(), command.to_string()));
    }
    let mut sources: Option<Vec<Cidr>> = None;
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
                    nets
                }
                Some(prev) => intersect(&prev, &nets),
            });
        }
    }
    if let Some(nets) = sources {
        if nets.is_empty() {
            return Err(denial(
                format!(
                    "the source addresses of rules {} have no address in common",
                    deciding.rules.join(", ")
                ),
                deciding.rules.clone(),
            ));
        }
        let list: Vec<String> = nets.iter().map(ToString::to_string).collect();
        critical_options.push(("source-address".to_string(), list.join(",")));
    }
    Ok(Restrictions {
        extensions,
        critical_options,
    })
}

/// The one command the deciding rules force, if any.
fn forced_command<'o>(deciding: &Deciding<'o>) -> Result<Option<&'o str>, Denial> {
    let mut command: Option<(&str, &str)> = None;
    for c in &deciding.candidates {
        if let Some(cmd) = &c.rule.force_command {
            match command {
                Some((other, other_rule)) if other != cmd => {
                    return Err(denial(
                        format!(
                            "rules {other_rule} and {} force different commands; ask for their principals in separate certificates",
                            c.rule.name
                        ),
                        deciding.rules.clone(),
                    ));
                }
                _ => command = Some((cmd, &c.rule.name)),
            }
        }
    }
    Ok(command.map(|(cmd, _)| cmd))
}
