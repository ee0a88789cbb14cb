//! The compiled policy and its evaluation.
//!
//! A [`PolicySet`] is immutable once built: the server swaps whole sets, so
//! one decision always sees one policy. Evaluation is a pure function of the
//! set, the identity, the request and the time. It is written once and used
//! both by the server and by `jit-ssh-ca policy explain`, which asks for the
//! trace the server does not build.
//!
//! A decision runs in phases, one file each, and the first phase that refuses
//! ends it (docs/policies.md is the long form):
//! - `deny`: a deny rule that applies to the identity removes the
//!   principals it names (all of them when it names none); deny always wins.
//! - `allow`: an allow rule applies when all its conditions hold and, if it
//!   has time windows, the time is inside one. It grants its principals
//!   unless it requires an approval, which only an open approved access
//!   request supplies.
//!   A principal that any applying rule grants only with an approval is
//!   granted by no rule without one (the strictest rule wins).
//! - `select`: no requested principals: every granted principal that is
//!   bound by no forced command or source address (the others are named to
//!   the client). Requested principals: all of them must be granted, and
//!   bound alike, or nothing is.
//! - `lifetime` and `merge`: every rule that grants a principal in the
//!   certificate bounds it: the lifetime is at most the smallest `max_ttl`
//!   and the earliest window end, extensions are intersected, and forced
//!   commands and source addresses are those of the principals.
//!
//! `access` answers the questions of access requests (on which terms may
//! this be asked for, who may approve it) from the same rules.

mod access;
mod allow;
mod deny;
mod lifetime;
mod merge;
mod select;

use std::path::PathBuf;

use super::file::Diagnostic;
use super::reserved::ReservedLogins;
use super::rules::{AdminRule, AllowRule, DenyRule};
use super::{AccessTerms, CertRequest, Decision, Denial, Grant};
use crate::config::CertSettings;
use crate::identity::Identity;
use crate::UnixTime;
use allow::Offers;
use merge::{Deciding, Restrictions};

/// Most principals one certificate may carry.
pub const MAX_CERT_PRINCIPALS: usize = 64;

/// A checked, immutable policy: every rule of every file in `policy_dir`.
#[derive(Debug, Clone)]
pub struct PolicySet {
    pub(crate) allow: Vec<AllowRule>,
    pub(crate) deny: Vec<DenyRule>,
    pub(crate) admin: Vec<AdminRule>,
    pub(crate) certs: CertSettings,
    /// Names templates never expand to.
    pub(crate) reserved: ReservedLogins,
    pub(crate) files: Vec<PathBuf>,
    pub(crate) warnings: Vec<Diagnostic>,
}

/// What `policy explain` prints besides the decision.
pub type Trace = Vec<String>;

impl PolicySet {
    /// The allow rules.
    pub fn allow_rules(&self) -> &[AllowRule] {
        &self.allow
    }

    /// The deny rules.
    pub fn deny_rules(&self) -> &[DenyRule] {
        &self.deny
    }

    /// The admin rules.
    pub fn admin_rules(&self) -> &[AdminRule] {
        &self.admin
    }

    /// The first admin rule whose conditions `identity` meets, if any.
    pub fn admin_rule(&self, identity: &Identity) -> Option<&AdminRule> {
        self.admin
            .iter()
            .find(|rule| !rule.conditions.is_empty() && rule.conditions.check(identity).is_ok())
    }

    /// Problems that do not stop it from loading (e.g. an unknown issuer).
    pub fn warnings(&self) -> &[Diagnostic] {
        &self.warnings
    }

    /// The files it was built from.
    pub fn files(&self) -> &[PathBuf] {
        &self.files
    }

    /// Decides `request` by `identity` at `now`, optionally recording why.
    pub fn decide(
        &self,
        identity: &Identity,
        request: &CertRequest,
        now: UnixTime,
        trace: Option<&mut Trace>,
    ) -> Decision {
        let ask = Ask {
            identity,
            request,
            now,
            who: identity.display_name(),
            reserved: &self.reserved,
        };
        match self.phases(&ask, &mut Notes(trace)) {
            Ok(grant) => Decision::Allow(grant),
            Err(denial) => Decision::Deny(denial),
        }
    }

    /// The phases of [`PolicySet::decide`], in order; any of them may end the
    /// decision with a denial.
    fn phases(&self, ask: &Ask<'_>, notes: &mut Notes<'_>) -> Result<Grant, Denial> {
        let denies = deny::applying(&self.deny, ask, notes)?;
        let offers = Offers::of(&self.allow, ask, notes);
        let granted = offers.by_principal();
        let bindings = merge::critical_by_principal(&offers, &granted, ask);
        let select::Selection {
            principals,
            notes: client_notes,
        } = select::principals(ask, &offers, &granted, &bindings, &denies, notes)?;
        let deciding = Deciding::of(&principals, &granted, &offers);
        let ttl = lifetime::ttl(&self.certs, &deciding, &self.deny, &principals, ask, notes);
        let Restrictions {
            extensions,
            critical_options,
        } = merge::restrictions(&deciding, ask)?;
        let Deciding {
            rules, request_ids, ..
        } = deciding;
        notes.add(|| {
            format!(
            "allow {principals:?} by {rules:?}, extensions {extensions:?}, critical options {critical_options:?}"
        )
        });
        Ok(Grant {
            principals,
            ttl,
            extensions,
            critical_options,
            rules,
            request_ids,
            notes: client_notes,
        })
    }
}

/// One request under decision: what every phase reads.
struct Ask<'a> {
    identity: &'a Identity,
    request: &'a CertRequest,
    now: UnixTime,
    /// The identity as reasons name it (`user@issuer`).
    who: String,
    /// Names templates never expand to.
    reserved: &'a ReservedLogins,
}

/// The trace, when one is asked for. Lines come as closures so that the
/// server, which evaluates without a trace, never pays for formatting lines
/// nobody reads.
struct Notes<'t>(Option<&'t mut Trace>);

impl Notes<'_> {
    /// Notes that go nowhere, for lookups whose steps are not the decision's.
    fn quiet() -> Notes<'static> {
        Notes(None)
    }

    fn add(&mut self, line: impl FnOnce() -> String) {
        if let Some(trace) = self.0.as_deref_mut() {
            trace.push(line());
        }
    }
}

fn denial(reason: String, rules: Vec<String>) -> Denial {
    Denial {
        reason,
        rules,
        approval_required: Vec::new(),
    }
}

/// A denial whose only cause is that `principals` need an approved access
/// request.
fn needs_request(reason: String, rules: Vec<String>, principals: Vec<String>) -> Denial {
    Denial {
        reason,
        rules,
        approval_required: principals,
    }
}

/// The command that asks for `principals`, for messages.
pub fn request_command(principals: &[String]) -> String {
    let mut command = "jit-ssh request".to_string();
    for p in principals {
        command.push_str(" --principal ");
        command.push_str(p);
    }
    command.push_str(" --reason \"...\"");
    command
}

impl super::Policy for PolicySet {
    fn admin(&self, identity: &Identity) -> Option<String> {
        self.admin_rule(identity).map(|rule| rule.name.clone())
    }

    fn evaluate(&self, identity: &Identity, request: &CertRequest, now: UnixTime) -> Decision {
        self.decide(identity, request, now, None)
    }

    fn access_terms(
        &self,
        identity: &Identity,
        principals: &[String],
        now: UnixTime,
    ) -> Result<AccessTerms, String> {
        PolicySet::access_terms(self, identity, principals, now)
    }

    fn approval_rights(&self, approver: &Identity, rules: &[String]) -> Option<u32> {
        PolicySet::approval_rights(self, approver, rules)
    }

    fn approver_terms(
        &self,
        approver: &Identity,
        rules: &[String],
    ) -> Option<(u32, Vec<Option<super::RuleRequirement>>)> {
        PolicySet::approval_rights(self, approver, rules).map(|n| (n, self.requirements(rules)))
    }
}
