//! `jit-ssh-ca policy check` and `policy explain`: the admin's view of the
//! same loader and engine the server runs. The binary only parses arguments
//! and prints what these functions return.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use jit_ssh_common::duration::{format_duration, parse_duration};
use serde_json::{Map, Value};

use super::engine::Trace;
use super::file::{load_dir, PolicyContext};
use super::reserved::ReservedLogins;
use super::window::format_instant;
use super::{CertRequest, Decision};
use crate::config::{CertSettings, Config, IssuerConfig};
use crate::identity::Identity;
use crate::UnixTime;

/// The check context of a config, or a config-less one (issuer names then go
/// unchecked, lifetimes are the defaults).
pub fn context(config: Option<&Config>) -> PolicyContext {
    PolicyContext {
        issuers: config.map(|c| c.issuers.iter().map(|i| i.name.clone()).collect()),
        certs: config.map_or_else(CertSettings::default, |c| c.certs),
        reserved: config.map_or_else(ReservedLogins::default, |c| c.reserved_logins.clone()),
    }
}

/// What `policy check` prints, and whether the policy is valid.
#[derive(Debug)]
pub struct CheckReport {
    /// Text for stdout (valid) or stderr (invalid).
    pub text: String,
    /// Whether the server would load it.
    pub ok: bool,
}

/// Loads `dir` exactly as the server would and reports the outcome.
pub fn check(dir: &Path, context: &PolicyContext) -> CheckReport {
    let mut text = String::new();
    match load_dir(dir, context) {
        Ok((set, _)) => {
            let _ = writeln!(
                text,
                "policy OK: {} file(s), {} allow rule(s), {} deny rule(s), {} admin rule(s)",
                set.files().len(),
                set.allow_rules().len(),
                set.deny_rules().len(),
                set.admin_rules().len()
            );
            for rule in set.allow_rules() {
                let _ = writeln!(
                    text,
                    "  allow {:<28} {} -> {} (max {}{})",
                    rule.name,
                    rule.location,
                    rule.principals
                        .iter()
                        .map(|t| t.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                    format_duration(rule.max_ttl),
                    if rule.approval.is_some() {
                        ", needs approval"
                    } else {
                        ""
                    }
                );
            }
            for warning in set.warnings() {
                let _ = writeln!(text, "warning: {warning}");
            }
            for rule in set.deny_rules() {
                let principals: Vec<&str> = rule.principals.iter().map(|g| g.as_str()).collect();
                let _ = writeln!(
                    text,
                    "  deny  {:<28} {} -> {}",
                    rule.name,
                    rule.location,
                    if principals.is_empty() {
                        "every principal".to_string()
                    } else {
                        principals.join(", ")
                    }
                );
            }
            for rule in set.admin_rules() {
                let _ = writeln!(
                    text,
                    "  admin {:<28} {} -> revoke and unrevoke any certificate, identity or key",
                    rule.name, rule.location
                );
            }
            CheckReport { text, ok: true }
        }
        Err(diagnostics) => {
            for d in &diagnostics {
                let _ = writeln!(text, "error: {d}");
            }
            let _ = writeln!(
                text,
                "{} error(s); the CA would refuse this policy",
                diagnostics.len()
            );
            CheckReport { text, ok: false }
        }
    }
}

/// Builds the identity the server would build from a token's verified
/// claims: the issuer from `iss` (or the only configured one), the login
/// name from the issuer's username claim, the groups from its groups claim.
/// Signature and time checks are not repeated: explain is about policy.
pub fn identity_from_claims(issuers: &[IssuerConfig], claims: &Value) -> Result<Identity, String> {
    let Some(map) = claims.as_object() else {
        return Err("the claims file must hold a JSON object (an ID token's payload)".into());
    };
    let issuer = match map.get("iss").and_then(Value::as_str) {
        Some(iss) => issuers
            .iter()
            .find(|i| i.issuer == iss)
            .ok_or_else(|| format!("iss {iss:?} is not a configured issuer"))?,
        None if issuers.len() == 1 => &issuers[0],
        None => return Err("the claims have no iss, and the config has several issuers".into()),
    };
    let subject = Some(
        map.get("sub")
            .and_then(Value::as_str)
            .unwrap_or("explain")
            .to_string(),
    );
    // The same split the verifier makes: registered claims out, the rest kept.
    let mut other: Map<String, Value> = map.clone();
    for registered in crate::oidc::UNMATCHED_CLAIMS {
        other.remove(registered);
    }
    crate::oidc::identity_from_claims(issuer, subject, other).map_err(|e| e.to_string())
}

/// Evaluates with a trace and renders decision and trace for people.
pub fn explain(
    set: &super::PolicySet,
    identity: &Identity,
    request: &CertRequest,
    now: UnixTime,
) -> (Decision, String) {
    let mut trace = Trace::new();
    let decision = set.decide(identity, request, now, Some(&mut trace));
    let mut out = String::new();
    let _ = writeln!(
        out,
        "identity: {} (groups: {})",
        identity.display_name(),
        if identity.groups.is_empty() {
            "none".into()
        } else {
            identity.groups.join(", ")
        }
    );
    let _ = writeln!(
        out,
        "at: {}  from: {}",
        format_instant(now),
        request.client_addr
    );
    match &decision {
        Decision::Allow(grant) => {
            let _ = writeln!(out, "decision: ALLOW");
            let _ = writeln!(out, "principals: {}", grant.principals.join(", "));
            let _ = writeln!(
                out,
                "valid for: {} (until {})",
                format_duration(grant.ttl),
                format_instant(now + grant.ttl.as_secs())
            );
            let _ = writeln!(out, "rules: {}", grant.rules.join(", "));
            let _ = writeln!(out, "extensions: {}", list_or_none(&grant.extensions));
            let options: Vec<String> = grant
                .critical_options
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            let _ = writeln!(out, "critical options: {}", list_or_none(&options));
        }
        Decision::Deny(denial) => {
            let _ = writeln!(out, "decision: DENY");
            let _ = writeln!(out, "reason: {}", denial.reason);
            let _ = writeln!(out, "rules: {}", list_or_none(&denial.rules));
        }
    }
    let _ = writeln!(
        out,
        "admin: {}",
        match set.admin_rule(identity) {
            Some(rule) => format!(
                "yes, by [[admin]] rule {} ({}): may revoke and unrevoke others' certificates",
                rule.name, rule.location
            ),
            None => "no (no [[admin]] rule applies)".into(),
        }
    );
    let held: Vec<String> = request
        .approved
        .iter()
        .map(|a| {
            format!(
                "request {} ({}) until {}",
                a.id,
                a.principals.join(", "),
                format_instant(a.window_end)
            )
        })
        .collect();
    let _ = writeln!(out, "approvals held: {}", list_or_none(&held));
    let _ = writeln!(out, "trace:");
    for line in trace {
        let _ = writeln!(out, "  {line}");
    }
    (decision, out)
}

fn list_or_none(items: &[String]) -> String {
    if items.is_empty() {
        "none".into()
    } else {
        items.join(", ")
    }
}

/// Parses `--ttl` as the server reads a request's lifetime: a duration of
/// at least one second (the server refuses `ttl: 0`, so explain must too).
pub fn parse_ttl(text: &str) -> Result<Duration, String> {
    let ttl = parse_duration(text).map_err(|e| format!("--ttl: {e}"))?;
    if ttl.is_zero() {
        return Err(format!(
            "--ttl {text:?}: a certificate lifetime must be at least 1 second (the CA refuses 0)"
        ));
    }
    Ok(ttl)
}

/// Parses `--at` (RFC 3339) into Unix seconds.
pub fn parse_at(text: &str) -> Result<UnixTime, String> {
    let ts: jiff::Timestamp = text.parse().map_err(|e| {
        format!("--at {text:?}: {e} (use RFC 3339, e.g. 2026-07-06T18:55:00+02:00)")
    })?;
    u64::try_from(ts.as_second()).map_err(|_| format!("--at {text:?} is before 1970"))
}
