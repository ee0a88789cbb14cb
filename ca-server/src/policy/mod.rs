//! What an identity may get: the decision between authentication and signing.
//!
//! [`Policy::evaluate`] sees only the verified identity, the request and the
//! time; it never touches keys or the store, and the signer never reads
//! policy. The server runs admin-written policy files
//! ([`file`](mod@file) parses them into the [`rules`] of an immutable
//! [`PolicySet`], [`engine`] evaluates it, [`reload`] swaps it atomically
//! when the files change). docs/policies.md describes the language.

pub mod binding;
pub mod cli;
pub mod engine;
pub mod file;
pub mod glob;
pub mod reload;
pub mod reserved;
pub mod restrict;
pub mod rules;
pub mod template;
pub mod window;

#[cfg(test)]
mod suite;

use std::net::IpAddr;
use std::time::Duration;

pub use binding::{HowApproved, RuleRequirement};
pub use engine::PolicySet;
pub use file::{compile, load_dir, Diagnostic, PolicyContext};
pub use reload::ReloadablePolicy;

use crate::identity::Identity;
use crate::UnixTime;

/// OpenSSH's usual extensions (what `ssh-keygen -s` grants by default).
/// Policy files grant only [`restrict::DEFAULT_RULE_EXTENSIONS`] unless a rule
/// names more.
pub const DEFAULT_EXTENSIONS: [&str; 5] = [
    "permit-X11-forwarding",
    "permit-agent-forwarding",
    "permit-port-forwarding",
    "permit-pty",
    "permit-user-rc",
];

/// What the client asked for.
#[derive(Debug, Clone)]
pub struct CertRequest {
    /// Principals asked for; empty means all the caller may have.
    pub principals: Vec<String>,
    /// Lifetime asked for; `None` means the default.
    pub ttl: Option<Duration>,
    /// Where the request came from.
    pub client_addr: IpAddr,
    /// The requester's approved access requests whose windows are open.
    pub approved: Vec<ApprovedAccess>,
}

/// An approved access request, as policy sees it: it lets a rule with
/// `[rule.approval]` grant these principals until `window_end`, while the
/// rules that guard them are those it was approved under and ask no more
/// than they did then ([`binding`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApprovedAccess {
    /// The request.
    pub id: u64,
    /// Principals it names.
    pub principals: Vec<String>,
    /// End of its window.
    pub window_end: UnixTime,
    /// What each rule it was approved under required then; `None` for a
    /// request recorded before requirements were, which grants nothing.
    pub approved_under: Option<Vec<RuleRequirement>>,
    /// How it was approved.
    pub how: HowApproved,
}

/// What the certificate will carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// Principals, never empty.
    pub principals: Vec<String>,
    /// Lifetime from now.
    pub ttl: Duration,
    /// Extensions (all with empty values).
    pub extensions: Vec<String>,
    /// Critical options, name and value.
    pub critical_options: Vec<(String, String)>,
    /// Names of the rules that decided, for the key ID and the audit record.
    pub rules: Vec<String>,
    /// Approved access requests the certificate's principals come from
    /// (ending one revokes the certificate).
    pub request_ids: Vec<u64>,
    /// For the client: granted principals this certificate leaves out
    /// because their restrictions differ, and how to ask for them.
    pub notes: Vec<String>,
}

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    /// Human-readable reason naming the principal and rule involved; it names
    /// only rules that apply to the requester.
    pub reason: String,
    /// Names of the rules that decided (empty when none grants the principal).
    pub rules: Vec<String>,
    /// When the only obstacle is a missing approved access request: the
    /// principals that need one (empty for every other denial).
    pub approval_required: Vec<String>,
}

/// The outcome of [`Policy::evaluate`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Sign this.
    Allow(Grant),
    /// Sign nothing.
    Deny(Denial),
}

/// Decides what an identity gets.
pub trait Policy: Send + Sync {
    /// Evaluates `request` by `identity` at `now`.
    fn evaluate(&self, identity: &Identity, request: &CertRequest, now: UnixTime) -> Decision;

    /// The name of the `[[admin]]` rule that makes `identity` an
    /// administrator, or `None` (the default: nobody is).
    fn admin(&self, identity: &Identity) -> Option<String> {
        let _ = identity;
        None
    }

    /// The terms on which `identity` may ask for `principals` by access
    /// request at `now`, or why it may not (the default: nobody may).
    fn access_terms(
        &self,
        identity: &Identity,
        principals: &[String],
        now: UnixTime,
    ) -> Result<AccessTerms, String> {
        let _ = (identity, principals, now);
        Err("this policy has no rule with [rule.approval]".into())
    }

    /// The approvals needed when `approver` may decide requests made under
    /// all of `rules`; `None` when they may not (the default).
    fn approval_rights(&self, approver: &Identity, rules: &[String]) -> Option<u32> {
        let _ = (approver, rules);
        None
    }

    /// [`Policy::approval_rights`] and, from the same policy, what each of
    /// `rules` requires now (`None`: gone, or without `[rule.approval]`):
    /// what an approval by `approver` is checked and recorded against.
    /// `None` when they may not approve (the default).
    fn approver_terms(
        &self,
        approver: &Identity,
        rules: &[String],
    ) -> Option<(u32, Vec<Option<RuleRequirement>>)> {
        let _ = (approver, rules);
        None
    }
}

/// What the policy says about one access request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessTerms {
    /// The `[rule.approval]` rules that cover the principals; their
    /// approvers decide.
    pub rules: Vec<String>,
    /// Longest window: the smallest `max_window` of those rules.
    pub max_window: Duration,
    /// Whether a reason is required (any rule requires one).
    pub reason_required: bool,
    /// Approvals needed: the largest `min_approvals` of those rules.
    pub min_approvals: u32,
    /// Whether the requester may approve it themselves at once (every rule
    /// sets `break_glass = true`).
    pub break_glass: bool,
    /// When every rule's `[rule.approval.auto]` conditions hold now: those
    /// rules, which approve the request at once as `policy:<rule>`.
    pub auto_approved_by: Vec<String>,
    /// Whether the window opens with the first certificate that uses it (a
    /// rule sets `window_from_first_use = true`).
    pub from_first_use: bool,
    /// What each of `rules` requires, in the same order; recorded with the
    /// request.
    pub requirements: Vec<RuleRequirement>,
}

/// The example policies shipped in `policies/`, built into the binary so that
/// `jit-ssh-ca dev` and `init` work from any directory.
pub const EXAMPLE_POLICIES: [(&str, &str); 6] = [
    (
        "10-engineers.toml",
        include_str!("../../../policies/10-engineers.toml"),
    ),
    ("20-sre.toml", include_str!("../../../policies/20-sre.toml")),
    (
        "30-release.toml",
        include_str!("../../../policies/30-release.toml"),
    ),
    ("40-ci.toml", include_str!("../../../policies/40-ci.toml")),
    (
        "90-deny.toml",
        include_str!("../../../policies/90-deny.toml"),
    ),
    (
        "95-admins.toml",
        include_str!("../../../policies/95-admins.toml"),
    ),
];

/// Writes [`EXAMPLE_POLICIES`] but those named in `except` into `dir`
/// (created if needed), never replacing a file that is already there.
pub fn write_examples(dir: &std::path::Path, except: &[&str]) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    for (name, text) in EXAMPLE_POLICIES {
        if except.contains(&name) {
            continue;
        }
        let path = dir.join(name);
        if !path.exists() {
            std::fs::write(path, text)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn embedded_example_policies_are_the_shipped_files() {
        let shipped_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies");
        let mut shipped: Vec<(String, String)> = std::fs::read_dir(&shipped_dir)
            .expect("policies/")
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
            .map(|p| {
                let name = p.file_name().map(|n| n.to_string_lossy().to_string());
                (
                    name.unwrap_or_default(),
                    std::fs::read_to_string(&p).expect("read"),
                )
            })
            .collect();
        shipped.sort();
        let embedded: Vec<(String, String)> = EXAMPLE_POLICIES
            .iter()
            .map(|(n, t)| (n.to_string(), t.to_string()))
            .collect();
        assert_eq!(
            embedded, shipped,
            "dev mode must embed exactly the files in policies/ (update EXAMPLE_POLICIES)"
        );
    }
}
