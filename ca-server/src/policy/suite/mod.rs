//! Engine and loader tests: table-driven cases for every condition, template
//! and request rule, file:line:column diagnostics, the shipped examples, and
//! properties (proptest) that must hold for any policy and request.
//!
//! The helpers here build policies, identities and requests in a line each;
//! the tests are grouped by what they pin down: decisions, access requests
//! and approvals, loading and diagnostics, and properties.

#![allow(clippy::unwrap_used)]

mod approvals;
mod binding;
mod combination;
mod decisions;
mod issuers;
mod loading;
mod properties;
mod time;
mod values;

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{json, Value};

use super::file::{compile, load_dir, PolicyContext, Source};
use super::*;
use crate::config::CertSettings;

/// A CA trusting one issuer, `corp`: most tests are about what a rule
/// decides, not whose word it takes (a rule naming another issuer loads with
/// a warning and is evaluated all the same).
fn context() -> PolicyContext {
    issuers(&["corp"])
}

/// A CA trusting `names`, in this order.
fn issuers(names: &[&str]) -> PolicyContext {
    PolicyContext {
        issuers: Some(names.iter().map(|n| n.to_string()).collect()),
        certs: CertSettings::default(),
        reserved: crate::policy::reserved::ReservedLogins::default(),
    }
}

/// The CA the shipped examples are written for: people from `corp`, CI
/// workloads from `github`.
fn two_issuers() -> PolicyContext {
    issuers(&["corp", "github"])
}

fn policy(text: &str) -> PolicySet {
    compile(
        &[Source {
            path: PathBuf::from("test.toml"),
            text: text.into(),
        }],
        &context(),
    )
    .unwrap_or_else(|d| {
        panic!(
            "{}",
            d.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n")
        )
    })
}

fn errors(text: &str) -> Vec<String> {
    match compile(
        &[Source {
            path: PathBuf::from("p.toml"),
            text: text.into(),
        }],
        &context(),
    ) {
        Ok(_) => panic!("should be refused:\n{text}"),
        Err(d) => d.iter().map(ToString::to_string).collect(),
    }
}

fn person(username: &str, groups: &[&str], claims: Value) -> Identity {
    let claims = claims.as_object().cloned().unwrap_or_default();
    Identity {
        issuer_name: claims
            .get("_issuer")
            .and_then(Value::as_str)
            .unwrap_or("corp")
            .into(),
        issuer: "https://idp".into(),
        subject: format!("user-{username}"),
        username: username.into(),
        email: claims
            .get("email")
            .and_then(Value::as_str)
            .map(String::from),
        groups: groups.iter().map(|g| g.to_string()).collect(),
        claims,
    }
}

fn ask(principals: &[&str]) -> CertRequest {
    CertRequest {
        principals: principals.iter().map(|p| p.to_string()).collect(),
        ttl: None,
        client_addr: IpAddr::from([192, 0, 2, 10]),
        approved: Vec::new(),
    }
}

/// Approved by people, for a window of an hour.
const BY_PEOPLE: HowApproved = HowApproved {
    window_secs: 3600,
    break_glass: false,
    by_policy: false,
};

/// An access request `id` for `principals`, approved by people for a window
/// ending at `end`, recorded with nothing it was approved under (a row from
/// before requirements were recorded); [`bound`] binds it.
fn approved(id: u64, principals: &[&str], end: UnixTime) -> ApprovedAccess {
    ApprovedAccess {
        id,
        principals: principals.iter().map(|p| p.to_string()).collect(),
        window_end: end,
        approved_under: None,
        how: BY_PEOPLE,
    }
}

/// `access` as approved under the rules `who` would ask for its principals
/// under, as `set` reads at `now`.
fn bound(
    set: &PolicySet,
    who: &Identity,
    access: &ApprovedAccess,
    now: UnixTime,
) -> ApprovedAccess {
    let terms = set
        .access_terms(who, &access.principals, now)
        .unwrap_or_else(|e| panic!("{e}"));
    ApprovedAccess {
        approved_under: Some(terms.requirements),
        ..access.clone()
    }
}

/// 2026-07-06 (Monday) 12:00 Berlin time.
const MONDAY_NOON_BERLIN: UnixTime = 1_783_332_000;

fn allowed(decision: Decision) -> Grant {
    match decision {
        Decision::Allow(grant) => grant,
        Decision::Deny(denial) => panic!("denied: {}", denial.reason),
    }
}

fn denied(decision: Decision) -> Denial {
    match decision {
        Decision::Deny(denial) => denial,
        Decision::Allow(grant) => panic!("allowed: {grant:?}"),
    }
}

fn shipped() -> PolicySet {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies");
    load_dir(&dir, &two_issuers())
        .unwrap_or_else(|d| {
            panic!(
                "{}",
                d.iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("\n")
            )
        })
        .0
}
