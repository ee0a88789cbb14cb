//! Engine and loader tests: table-driven cases for every condition, template
//! and request rule, file:line:column diagnostics, the shipped examples, and
//! properties (proptest) that must hold for any policy and request.

#![allow(clippy::unwrap_used)]

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use proptest::prelude::*;
use serde_json::{json, Value};

use super::file::{compile, load_dir, PolicyContext, Source};
use super::*;
use crate::config::CertSettings;

fn context() -> PolicyContext {
    PolicyContext {
        issuers: Some(vec!["corp".into(), "github".into()]),
        certs: CertSettings::default(),
    }
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
    load_dir(&dir, &context())
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

#[test]
fn every_condition_table() {
    let set = policy(
        r#"
[[rule]]
name = "issuer"
principals = ["p-issuer"]
[rule.match]
issuer = ["github"]

[[rule]]
name = "username"
principals = ["p-username"]
[rule.match]
username = ["svc-*"]

[[rule]]
name = "email"
principals = ["p-email"]
[rule.match]
email = ["Alice@Example.com"]

[[rule]]
name = "domain"
principals = ["p-domain"]
[rule.match]
email_domain = ["example.com"]

[[rule]]
name = "any"
principals = ["p-any"]
[rule.match]
groups_any = ["a", "b"]

[[rule]]
name = "all"
principals = ["p-all"]
[rule.match]
groups_all = ["a", "b"]

[[rule]]
name = "claim-glob"
principals = ["p-claim"]
[rule.match]
issuer = ["corp"]
claims = { ref = "refs/heads/release/*", environment = ["prod", "staging"] }

[[rule]]
name = "claim-bool"
principals = ["p-bool"]
[rule.match]
issuer = ["corp"]
claims = { admin = true }
"#,
    );
    let verified = json!({"email": "alice@example.com", "email_verified": true});
    let unverified = json!({"email": "alice@example.com", "email_verified": false});
    let cases: Vec<(&str, Identity, Vec<&str>)> = vec![
        ("nothing", person("bob", &[], json!({})), vec![]),
        (
            "issuer",
            person("bob", &[], json!({"_issuer": "github"})),
            vec!["p-issuer"],
        ),
        (
            "username glob",
            person("svc-ci", &[], json!({})),
            vec!["p-username"],
        ),
        (
            "username glob miss",
            person("svcci", &[], json!({})),
            vec![],
        ),
        (
            "verified email, case-insensitive",
            person("alice", &[], verified.clone()),
            vec!["p-domain", "p-email"],
        ),
        (
            "unverified email never matches",
            person("alice", &[], unverified),
            vec![],
        ),
        (
            "email domain is exact",
            person(
                "x",
                &[],
                json!({"email": "x@evil-example.com", "email_verified": true}),
            ),
            vec![],
        ),
        (
            "subdomain is not the domain",
            person(
                "x",
                &[],
                json!({"email": "x@a.example.com", "email_verified": true}),
            ),
            vec![],
        ),
        ("groups any", person("x", &["b"], json!({})), vec!["p-any"]),
        (
            "groups all",
            person("x", &["a", "b"], json!({})),
            vec!["p-all", "p-any"],
        ),
        (
            "groups are case-sensitive",
            person("x", &["A"], json!({})),
            vec![],
        ),
        (
            "claim glob",
            person(
                "x",
                &[],
                json!({"ref": "refs/heads/release/1.2", "environment": "prod"}),
            ),
            vec!["p-claim"],
        ),
        (
            "claim glob needs every claim",
            person("x", &[], json!({"ref": "refs/heads/release/1.2"})),
            vec![],
        ),
        (
            "claim glob does not cross /",
            person(
                "x",
                &[],
                json!({"ref": "refs/heads/release/1/2", "environment": "prod"}),
            ),
            vec![],
        ),
        (
            "claim list value",
            person(
                "x",
                &[],
                json!({"ref": "refs/heads/release/1", "environment": ["dev", "staging"]}),
            ),
            vec!["p-claim"],
        ),
        (
            "claim of another issuer",
            person(
                "x",
                &[],
                json!({"_issuer": "github", "ref": "refs/heads/release/1", "environment": "prod"}),
            ),
            vec!["p-issuer"],
        ),
        (
            "claim bool",
            person("x", &[], json!({"admin": true})),
            vec!["p-bool"],
        ),
        (
            "claim bool is not a string",
            person("x", &[], json!({"admin": "true"})),
            vec![],
        ),
    ];
    for (name, who, expected) in cases {
        match set.evaluate(&who, &ask(&[]), MONDAY_NOON_BERLIN) {
            Decision::Allow(grant) => assert_eq!(grant.principals, expected, "{name}"),
            Decision::Deny(denial) => assert!(expected.is_empty(), "{name}: {}", denial.reason),
        }
    }
}

#[test]
fn shipped_examples_load_and_decide_as_documented() {
    let set = shipped();
    assert_eq!(set.files().len(), 6);
    assert!(set.warnings().is_empty(), "{:?}", set.warnings());
    let alice = person("alice", &["eng"], json!({}));
    let bob = person("bob", &["eng", "sre"], json!({}));
    let carol = person("carol", &["sre-leads"], json!({}));
    let rm = person("rita", &["release-managers"], json!({}));
    let contractor = person("cody", &["eng", "sre", "contractors"], json!({}));
    let ci = person(
        "ci",
        &[],
        json!({"_issuer": "github", "repository": "acme/app", "ref": "refs/heads/main"}),
    );
    let ci_branch = person(
        "ci",
        &[],
        json!({"_issuer": "github", "repository": "acme/app", "ref": "refs/heads/feature"}),
    );
    let now = MONDAY_NOON_BERLIN;

    let g = allowed(set.evaluate(&alice, &ask(&[]), now));
    assert_eq!(
        (g.principals.as_slice(), g.ttl),
        (&["alice".to_string()][..], Duration::from_secs(300))
    );
    assert_eq!(g.extensions, ["permit-pty"]);
    assert_eq!(g.rules, ["eng-own-login"]);

    let g = allowed(set.evaluate(&bob, &ask(&[]), now));
    assert_eq!(g.principals, ["bob", "deploy"]);
    assert_eq!(g.rules, ["eng-own-login", "sre-deploy"]);
    let long = CertRequest {
        ttl: Some(Duration::from_secs(3600)),
        ..ask(&["bob", "deploy"])
    };
    assert_eq!(
        allowed(set.evaluate(&bob, &long, now)).ttl,
        Duration::from_secs(600),
        "smallest max_ttl"
    );
    let own = CertRequest {
        ttl: Some(Duration::from_secs(3600)),
        ..ask(&["bob"])
    };
    assert_eq!(
        allowed(set.evaluate(&bob, &own, now)).ttl,
        Duration::from_secs(900)
    );

    let d = denied(set.evaluate(&bob, &ask(&["root"]), now));
    assert!(
        d.reason.contains("requires an approved access request"),
        "{}",
        d.reason
    );
    assert_eq!(d.rules, ["sre-root-with-approval"]);
    let d = denied(set.evaluate(&alice, &ask(&["deploy"]), now));
    assert!(
        d.reason.contains("\"deploy\"") && d.reason.contains("no rule grants it"),
        "{}",
        d.reason
    );
    assert!(
        !d.reason.contains("sre"),
        "must not name rules that do not apply to alice: {}",
        d.reason
    );
    let d = denied(set.evaluate(&alice, &ask(&["alice", "deploy"]), now));
    assert!(
        d.reason.contains("\"deploy\""),
        "no partial certificates: {}",
        d.reason
    );

    let d = denied(set.evaluate(&carol, &ask(&[]), now));
    assert_eq!(d.reason, "no rule grants carol@corp any principal");

    assert_eq!(
        allowed(set.evaluate(&rm, &ask(&[]), now)).principals,
        ["release"]
    );
    // Saturday: outside the window.
    let saturday = now + 5 * 86_400;
    let d = denied(set.evaluate(&rm, &ask(&["release"]), saturday));
    assert!(
        d.reason
            .contains("only Mon,Tue,Wed,Thu,Fri 09:00–17:00 Europe/Berlin"),
        "{}",
        d.reason
    );
    // 16:55 Berlin: the certificate ends at 17:00.
    let late = now + 4 * 3600 + 55 * 60;
    assert_eq!(
        allowed(set.evaluate(&rm, &ask(&[]), late)).ttl,
        Duration::from_secs(300)
    );

    let g = allowed(set.evaluate(&ci, &ask(&[]), now));
    assert_eq!(g.principals, ["deploy"]);
    assert_eq!(g.ttl, Duration::from_secs(300));
    assert!(g.extensions.is_empty());
    assert_eq!(
        g.critical_options,
        [
            (
                "force-command".to_string(),
                "/usr/local/bin/deploy-acme-app".to_string()
            ),
            ("source-address".to_string(), "192.0.2.10/32".to_string())
        ]
    );
    denied(set.evaluate(&ci_branch, &ask(&[]), now));

    // Contractors: root denied whatever else matches; the rest still granted.
    let g = allowed(set.evaluate(&contractor, &ask(&[]), now));
    assert_eq!(g.principals, ["cody", "deploy"]);
    let d = denied(set.evaluate(&contractor, &ask(&["root"]), now));
    assert!(d.reason.contains("contractors-never-root"), "{}", d.reason);
}

#[test]
fn approved_access_grants_its_principals_until_the_window_ends() {
    let set = shipped();
    let bob = person("bob", &["eng", "sre"], json!({}));
    let now = MONDAY_NOON_BERLIN;
    let access = |end: UnixTime| ApprovedAccess {
        id: 42,
        principals: vec!["root".into()],
        window_end: end,
    };
    // Asked for explicitly: granted, capped at the window's end.
    let g = allowed(set.evaluate(
        &bob,
        &CertRequest {
            approved: vec![access(now + 120)],
            ..ask(&["root"])
        },
        now,
    ));
    assert_eq!(g.principals, ["root"]);
    assert_eq!(g.ttl, Duration::from_secs(120), "never past the window");
    assert_eq!(g.request_ids, [42]);
    assert_eq!(g.rules, ["sre-root-with-approval"]);
    // Asked for everything: root joins bob's usual principals, minute-scale.
    let g = allowed(set.evaluate(
        &bob,
        &CertRequest {
            approved: vec![access(now + 3600)],
            ..ask(&[])
        },
        now,
    ));
    assert_eq!(g.principals, ["bob", "deploy", "root"]);
    assert_eq!(g.ttl, Duration::from_secs(300));
    assert_eq!(g.request_ids, [42]);
    // Without it, or once it ended, nothing changes.
    let g = allowed(set.evaluate(&bob, &ask(&[]), now));
    assert_eq!(g.principals, ["bob", "deploy"]);
    assert!(g.request_ids.is_empty());
    let ended = CertRequest {
        approved: vec![access(now)],
        ..ask(&["root"])
    };
    assert!(denied(set.evaluate(&bob, &ended, now))
        .reason
        .contains("requires an approved access request"));
    // An approval for root does not make alice, whom no rule covers, root.
    let alice = person("alice", &["eng"], json!({}));
    let d = denied(set.evaluate(
        &alice,
        &CertRequest {
            approved: vec![access(now + 3600)],
            ..ask(&["root"])
        },
        now,
    ));
    assert!(d.reason.contains("no rule grants it"), "{}", d.reason);
}

#[test]
fn access_terms_and_approver_rights_come_from_approval_rules() {
    let set = shipped();
    let now = MONDAY_NOON_BERLIN;
    let bob = person("bob", &["eng", "sre"], json!({}));
    let alice = person("alice", &["eng"], json!({}));
    let carol = person("carol", &["sre-leads"], json!({}));
    let terms = set.access_terms(&bob, &["root".into()], now).unwrap();
    assert_eq!(terms.rules, ["sre-root-with-approval"]);
    assert_eq!(terms.min_approvals, 1);
    assert!(terms.reason_required);
    assert_eq!(terms.max_window, Duration::from_secs(3600));
    let refused = set.access_terms(&alice, &["root".into()], now).unwrap_err();
    assert!(
        refused.contains("no rule with [rule.approval]"),
        "{refused}"
    );
    assert!(set.access_terms(&bob, &["deploy".into()], now).is_err());
    assert!(set.access_terms(&bob, &[], now).is_err());
    let rules = terms.rules;
    assert_eq!(set.approval_rights(&carol, &rules), Some(1));
    assert_eq!(set.approval_rights(&alice, &rules), None);
    assert_eq!(set.approval_rights(&bob, &rules), None);
    assert_eq!(set.approval_rights(&carol, &["gone".into()]), None);
    assert_eq!(set.approval_rights(&carol, &[]), None);

    let set = policy(
        "[[rule]]\nname = \"db\"\nprincipals = [\"postgres\"]\n[rule.approval]\napprover_users = [\"dana@corp\"]\nmin_approvals = 2\nmax_window = \"2h\"\nreason_required = false\n[rule.match]\ngroups_any = [\"dba\"]\n",
    );
    let eve = person("eve", &["dba"], json!({}));
    let terms = set.access_terms(&eve, &["postgres".into()], now).unwrap();
    assert_eq!(
        (terms.min_approvals, terms.max_window, terms.reason_required),
        (2, Duration::from_secs(7200), false)
    );
    let dana = person("dana", &[], json!({}));
    let dana_elsewhere = person("dana", &[], json!({"_issuer": "github"}));
    assert_eq!(set.approval_rights(&dana, &terms.rules), Some(2));
    assert_eq!(set.approval_rights(&dana_elsewhere, &terms.rules), None);
}

#[test]
fn approval_required_only_when_an_approval_is_all_that_is_missing() {
    let set = shipped();
    let now = MONDAY_NOON_BERLIN;
    let bob = person("bob", &["eng", "sre"], json!({}));
    let d = denied(set.evaluate(&bob, &ask(&["root"]), now));
    assert_eq!(d.approval_required, ["root"]);
    assert!(
        d.reason
            .contains("ask with `jit-ssh request --principal root --reason \"...\"`"),
        "{}",
        d.reason
    );
    // With principals he is granted anyway: still only the approval.
    let d = denied(set.evaluate(&bob, &ask(&["bob", "root"]), now));
    assert_eq!(d.approval_required, ["root"]);
    // Another principal refused for another reason: a plain denial, whatever
    // the order.
    for asked in [["root", "nobody"], ["nobody", "root"]] {
        let d = denied(set.evaluate(&bob, &ask(&asked), now));
        assert!(d.approval_required.is_empty(), "{asked:?}: {}", d.reason);
        assert!(d.reason.contains("\"nobody\""), "{}", d.reason);
    }
    // Someone whom no approval rule covers: plain denial.
    let alice = person("alice", &["eng"], json!({}));
    assert!(denied(set.evaluate(&alice, &ask(&["root"]), now))
        .approval_required
        .is_empty());
    // Only approval-bound principals, none asked for: approval required.
    let only_root = policy(
        "[[rule]]\nname = \"r\"\nprincipals = [\"root\"]\n[rule.approval]\napprover_groups = [\"leads\"]\n[rule.match]\ngroups_any = [\"sre\"]\n",
    );
    let d = denied(only_root.evaluate(&bob, &ask(&[]), now));
    assert_eq!(d.approval_required, ["root"]);
}

#[test]
fn break_glass_and_auto_approval_terms() {
    let set = policy(
        r#"
[[rule]]
name = "root"
principals = ["root"]
[rule.approval]
approver_groups = ["leads"]
break_glass = true
reason_required = false
[rule.approval.auto]
groups = ["oncall"]
[[rule.approval.auto.window]]
days = ["Mon-Fri"]
from = "09:00"
to = "17:00"
time_zone = "Europe/Berlin"
[rule.match]
groups_any = ["sre"]

[[rule]]
name = "db"
principals = ["postgres"]
[rule.approval]
approver_groups = ["leads"]
[rule.match]
groups_any = ["sre"]
"#,
    );
    let now = MONDAY_NOON_BERLIN;
    let bob = person("bob", &["sre"], json!({}));
    let erin = person("erin", &["sre", "oncall"], json!({}));
    let root = ["root".to_string()];
    let terms = set.access_terms(&bob, &root, now).unwrap();
    assert!(terms.break_glass);
    assert!(terms.auto_approved_by.is_empty(), "bob is not on call");
    let terms = set.access_terms(&erin, &root, now).unwrap();
    assert_eq!(terms.auto_approved_by, ["root"]);
    // Outside the auto window: approvers decide.
    let saturday = now + 5 * 86_400;
    assert!(set
        .access_terms(&erin, &root, saturday)
        .unwrap()
        .auto_approved_by
        .is_empty());
    // A rule without break_glass or auto among the covering ones: neither.
    let both = ["postgres".to_string(), "root".to_string()];
    let terms = set.access_terms(&erin, &both, now).unwrap();
    assert!(!terms.break_glass);
    assert!(terms.auto_approved_by.is_empty());
    assert_eq!(terms.rules, ["db", "root"]);
    assert!(!terms.from_first_use);
    let first_use = policy(
        "[[rule]]\nname = \"r\"\nprincipals = [\"root\"]\n[rule.approval]\napprover_groups = [\"leads\"]\nwindow_from_first_use = true\n[rule.match]\ngroups_any = [\"sre\"]\n",
    );
    assert!(
        first_use
            .access_terms(&bob, &root, now)
            .unwrap()
            .from_first_use
    );

    let refused = errors(
        "[[rule]]\nname = \"a\"\nprincipals = [\"x\"]\n[rule.approval]\napprover_groups = [\"l\"]\n[rule.approval.auto]\n[rule.match]\ngroups_any = [\"g\"]\n",
    );
    assert!(
        refused[0].contains("approval.auto needs `groups`"),
        "{refused:?}"
    );
    let refused = errors(
        "[[rule]]\nname = \"a\"\nprincipals = [\"x\"]\n[rule.approval]\napprover_groups = [\"l\"]\n[rule.approval.auto]\ngroups = [\"o\"]\n[[rule.approval.auto.window]]\nfrom = \"09:00\"\nto = \"17:00\"\ntime_zone = \"Mars/Olympus\"\n[rule.match]\ngroups_any = [\"g\"]\n",
    );
    assert!(refused[0].contains("unknown time zone"), "{refused:?}");
}

#[test]
fn request_semantics_table() {
    let set = policy(
        r#"
[[rule]]
name = "own"
principals = ["{username}", "shared"]
default_ttl = "2m"
max_ttl = "20m"
[rule.match]
groups_any = ["eng"]

[[rule]]
name = "ops"
principals = ["ops", "shared"]
max_ttl = "8m"
extensions = ["permit-pty", "permit-port-forwarding"]
source_address = ["10.0.0.0/8"]
[rule.match]
groups_any = ["ops"]

[[rule]]
name = "locked"
principals = ["locked"]
force_command = "/bin/true"
[rule.match]
groups_any = ["ops"]

[[rule]]
name = "locked2"
principals = ["locked2"]
force_command = "/bin/false"
[rule.match]
groups_any = ["ops"]

[[deny]]
name = "no-shared-for-temps"
principals = ["shar*"]
[deny.match]
groups_any = ["temps"]

[[deny]]
name = "banned"
[deny.match]
username = ["mallory"]
"#,
    );
    let now = MONDAY_NOON_BERLIN;
    let eng = person("ann", &["eng"], json!({}));
    let both = person("ann", &["eng", "ops"], json!({}));
    let temp = person("tim", &["eng", "temps"], json!({}));
    let mallory = person("mallory", &["eng"], json!({}));

    let g = allowed(set.evaluate(&eng, &ask(&[]), now));
    assert_eq!(
        (g.principals.clone(), g.ttl, g.rules.clone()),
        (
            vec!["ann".into(), "shared".into()],
            Duration::from_secs(120),
            vec!["own".into()]
        )
    );
    // Only "own" grants ann: ops restrictions do not apply to it.
    let g = allowed(set.evaluate(&both, &ask(&["ann"]), now));
    assert_eq!(
        (g.rules.as_slice(), g.critical_options.len()),
        (&["own".to_string()][..], 0)
    );
    // "shared" comes from both rules: both bound the certificate.
    let asked = CertRequest {
        ttl: Some(Duration::from_secs(1200)),
        ..ask(&["shared"])
    };
    let g = allowed(set.evaluate(&both, &asked, now));
    assert_eq!(g.rules, ["own", "ops"]);
    assert_eq!(g.ttl, Duration::from_secs(480));
    assert_eq!(g.extensions, ["permit-pty"], "extensions are intersected");
    assert_eq!(
        g.critical_options,
        [("source-address".into(), "10.0.0.0/8".into())]
    );
    // Forced commands that differ cannot share a certificate.
    let d = denied(set.evaluate(&both, &ask(&["locked", "locked2"]), now));
    assert!(
        d.reason.contains("force different commands"),
        "{}",
        d.reason
    );
    let g = allowed(set.evaluate(&both, &ask(&["locked"]), now));
    assert_eq!(
        g.critical_options,
        [("force-command".into(), "/bin/true".into())]
    );
    // Deny removes from an implicit request, refuses an explicit one.
    assert_eq!(
        allowed(set.evaluate(&temp, &ask(&[]), now)).principals,
        ["tim"]
    );
    let d = denied(set.evaluate(&temp, &ask(&["tim", "shared"]), now));
    assert_eq!(d.rules, ["no-shared-for-temps"]);
    assert!(d.reason.contains("\"shared\""), "{}", d.reason);
    // A deny without principals refuses everything.
    let d = denied(set.evaluate(&mallory, &ask(&[]), now));
    assert_eq!(d.rules, ["banned"]);
}

#[test]
fn explain_traces_every_rule_and_the_failed_condition() {
    let set = shipped();
    let alice = person("alice", &["eng"], json!({}));
    let (decision, text) = cli::explain(&set, &alice, &ask(&["deploy"]), MONDAY_NOON_BERLIN);
    denied(decision);
    for needle in [
        "decision: DENY",
        "rule eng-own-login: grants [\"alice\"]",
        "rule sre-deploy: does not apply: groups [\"eng\"] contain none of [\"sre\"]",
        "rule ci-acme-app-deploy: does not apply: issuer \"corp\" is not one of [\"github\"]",
        "deny contractors-never-root: does not apply",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in\n{text}");
    }
}

#[test]
fn diagnostics_name_file_line_and_column() {
    let cases: &[(&str, &str)] = &[
        ("[[rule]]\nname = \"a\"\npricipals = [\"x\"]\n", "p.toml:3:1: unknown field `pricipals`"),
        ("[[rule]]\nname = \"a\"\nprincipals = [\"x\"]\nmax_ttl = \"1d\"\n[rule.match]\ngroups_any = [\"g\"]\n", "p.toml:4:11: max_ttl: invalid duration \"1d\""),
        ("[[rule]]\nname = \"a\"\nprincipals = [\"x\"]\nmax_ttl = \"2h\"\n[rule.match]\ngroups_any = [\"g\"]\n", "p.toml:4:11: max_ttl 2h is above the CA's hard ceiling"),
        ("[[rule]]\nname = \"a\"\nprincipals = [\"x\"]\n[rule.match]\nusername = [\"[ab\"]\n", "p.toml:5:13: username: glob \"[ab\" has an unclosed `[`"),
        ("[[rule]]\nname = \"a\"\nprincipals = [\"x\"]\n[rule.match]\ngroups_any = [\"g\"]\n[[rule.window]]\nfrom = \"09:00\"\nto = \"17:00\"\ntime_zone = \"Europe/Berlim\"\n", "p.toml:6:1: window: unknown time zone \"Europe/Berlim\""),
        ("[[rule]]\nname = \"a\"\nprincipals = [\"{username}@corp\"]\n[rule.match]\ngroups_any = [\"g\"]\n", "p.toml:3:15: template \"{username}@corp\" can never expand to a login name"),
        ("[[rule]]\nname = \"a\"\nprincipals = [\"x\"]\n[rule.match]\ngroups_any = [\"g\"]\n[[rule]]\nname = \"a\"\nprincipals = [\"y\"]\n[rule.match]\ngroups_any = [\"g\"]\n", "p.toml:7:8: duplicate rule name \"a\" (first defined at p.toml:2:8)"),
        ("[[rule]]\nname = \"a\"\nprincipals = [\"root\"]\n[rule.match]\ngroups_any = [\"ops\"]\n[[deny]]\nname = \"d\"\nprincipals = [\"root\"]\n", "p.toml:2:8: rule \"a\" is shadowed by deny rule \"d\""),
        ("[[rule]]\nname = \"a\"\nprincipals = [\"root\"]\n[rule.match]\ngroups_all = [\"ops\", \"x\"]\n[[deny]]\nname = \"d\"\n[deny.match]\ngroups_any = [\"x\"]\n", "rule \"a\" is shadowed by deny rule \"d\""),
        ("[[rule]]\nname = \"a\"\nprincipals = [\"root\"]\n", "p.toml:2:8: rule has no [rule.match] conditions"),
        ("[[rule]]\nname = \"a\"\nprincipals = [\"x\"]\n[rule.match]\nclaims = { repository = \"a/b\" }\n", "claims conditions need an `issuer` condition"),
        ("[[rule]]\nname = \"a\"\nprincipals = [\"x\"]\nextensions = [\"permit-everything\"]\n[rule.match]\ngroups_any = [\"g\"]\n", "p.toml:4:15: unknown extension \"permit-everything\""),
        ("[[rule]]\nname = \"a\"\nprincipals = [\"x\"]\nsource_address = [\"10.1.0.0/8\"]\n[rule.match]\ngroups_any = [\"g\"]\n", "p.toml:4:19: source address \"10.1.0.0/8\" has host bits set"),
        ("[[rule]]\nname = \"a\"\nprincipals = [\"x\"]\nforce_command = \"/bin/x\"\nextensions = [\"permit-user-rc\"]\n[rule.match]\ngroups_any = [\"g\"]\n", "p.toml:4:17: force_command with the permit-user-rc extension"),
        ("[[rule]]\nname = \"a\"\nprincipals = [\"x\"]\n[rule.approval]\napprover_groups = []\n[rule.match]\ngroups_any = [\"g\"]\n", "p.toml:5:19: approval.approver_groups is empty"),
        ("[[rule]]\nname = \"a\"\nprincipals = [\"x\"]\n[rule.approval]\napprover_users = [\"carol\"]\n[rule.match]\ngroups_any = [\"g\"]\n", "p.toml:5:19: approval.approver_users entries are `user@issuer`"),
        ("[[rule]]\nname = \"a\"\nprincipals = [\"x\"]\n[rule.approval]\napprover_users = [\"carol@corp\"]\nmax_window = \"30s\"\n[rule.match]\ngroups_any = [\"g\"]\n", "p.toml:6:14: approval.max_window must be between 1m and 168h"),
        ("[[rule]]\nname = \"a\"\nprincipals = [\"x\"]\n[rule.approval]\nmin_approvals = 2\n[rule.match]\ngroups_any = [\"g\"]\n", "p.toml:4:1: approval.approver_groups is empty: nobody could approve"),
        ("[[rule]]\nname = \"Bad Name\"\nprincipals = [\"x\"]\n[rule.match]\ngroups_any = [\"g\"]\n", "p.toml:2:8: rule name \"Bad Name\""),
        ("[[rule]]\nname = \"a\"\nprincipals = [\"x\"]\ndefault_ttl = \"20m\"\nmax_ttl = \"10m\"\n[rule.match]\ngroups_any = [\"g\"]\n", "p.toml:4:15: default_ttl 20m is longer than max_ttl 10m"),
        ("[[rule]]\nname = \"a\"\nprincipals = [\"x\"]\n[rule.match]\ngroups_any = []\n", "p.toml:5:14: groups_any is an empty list"),
        ("[[deny]]\nname = \"d\"\n", "no [[rule]] that grants anything"),
        ("[[rule]\n", "p.toml:1:"),
    ];
    for (text, expected) in cases {
        let errs = errors(text);
        assert!(
            errs.iter().any(|e| e.contains(expected)),
            "expected {expected:?} in {errs:#?}"
        );
    }
}

#[test]
fn deny_only_shadows_what_it_provably_covers() {
    // Different principal, narrower deny, or a deny with a window: no shadow.
    policy(
        r#"
[[rule]]
name = "a"
principals = ["root", "{username}"]
[rule.match]
groups_any = ["ops"]
[[deny]]
name = "d1"
principals = ["root"]
[[deny]]
name = "d2"
[deny.match]
groups_all = ["ops", "contractors"]
[[deny]]
name = "d3"
[[deny.window]]
days = ["sat-sun"]
from = "00:00"
to = "24:00"
time_zone = "UTC"
"#,
    );
}

#[test]
fn admin_rules_match_like_allow_rules_and_are_checked_like_them() {
    let set = policy(
        r#"
[[rule]]
name = "own"
principals = ["{username}"]
[rule.match]
issuer = ["corp"]

[[admin]]
name = "leads"
[admin.match]
groups_any = ["sre-leads"]

[[admin]]
name = "root-of-trust"
[admin.match]
issuer = ["corp"]
claims.admin = true
"#,
    );
    let carol = person("carol", &["sre-leads"], json!({}));
    let alice = person("alice", &["eng"], json!({}));
    let flagged = person("dana", &[], json!({"admin": true}));
    assert_eq!(
        set.admin_rule(&carol).map(|r| r.name.as_str()),
        Some("leads")
    );
    assert_eq!(
        set.admin_rule(&flagged).map(|r| r.name.as_str()),
        Some("root-of-trust")
    );
    assert!(set.admin_rule(&alice).is_none());
    let (_, text) = super::cli::explain(&set, &carol, &ask(&[]), MONDAY_NOON_BERLIN);
    assert!(
        text.contains("admin: yes, by [[admin]] rule leads (test.toml:"),
        "{text}"
    );
    // The shipped example makes sre-leads admins and nobody else.
    let shipped = shipped();
    assert!(shipped.admin_rule(&carol).is_some());
    assert!(shipped
        .admin_rule(&person("bob", &["eng", "sre"], json!({})))
        .is_none());

    let own = "[[rule]]\nname = \"own\"\nprincipals = [\"x\"]\n[rule.match]\nissuer = [\"corp\"]\n";
    let no_match = errors(&format!("{own}[[admin]]\nname = \"everyone\"\n"));
    assert!(
        no_match
            .iter()
            .any(|e| e.starts_with("p.toml:7:8: admin rule has no [admin.match]")),
        "{no_match:?}"
    );
    let claims = errors(&format!(
        "{own}[[admin]]\nname = \"c\"\n[admin.match]\nclaims.x = true\n"
    ));
    assert!(
        claims.iter().any(|e| e.contains("need an `issuer`")),
        "{claims:?}"
    );
    let duplicate = errors(&format!(
        "{own}[[admin]]\nname = \"own\"\n[admin.match]\ngroups_any = [\"a\"]\n"
    ));
    assert!(
        duplicate.iter().any(|e| e.contains("duplicate rule name")),
        "{duplicate:?}"
    );
    let unknown = errors(&format!(
        "{own}[[admin]]\nname = \"a\"\ntoken = \"s3cret\"\n"
    ));
    assert!(
        unknown.iter().any(|e| e.starts_with("p.toml:8:1:")),
        "{unknown:?}"
    );
}

#[test]
fn unknown_issuers_warn_but_load() {
    let set = policy(
        "[[rule]]\nname = \"a\"\nprincipals = [\"x\"]\n[rule.match]\nissuer = [\"gitlab\"]\n",
    );
    assert_eq!(set.warnings().len(), 1);
    assert!(set.warnings()[0]
        .to_string()
        .starts_with("test.toml:5:11: issuer \"gitlab\""));
}

#[test]
fn an_empty_or_missing_policy_dir_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("notes.txt"), "not a policy").unwrap();
    std::fs::write(dir.path().join(".#lock.toml"), "garbage").unwrap();
    let err = load_dir(dir.path(), &context()).unwrap_err();
    assert!(
        err[0].message.contains("has no *.toml policy files"),
        "{}",
        err[0]
    );
    let err = load_dir(&dir.path().join("nope"), &context()).unwrap_err();
    assert!(err[0].message.contains("policy_dir"), "{}", err[0]);
}

#[test]
fn identity_from_claims_matches_the_servers_mapping() {
    let issuers = vec![crate::config::IssuerConfig {
        name: "corp".into(),
        issuer: "https://idp".into(),
        client_id: "jit-ssh".into(),
        username_claim: crate::config::UsernameClaim::PreferredUsername,
        groups_claim: "roles".into(),
        scopes: vec!["openid".into()],
    }];
    let id = cli::identity_from_claims(
        &issuers,
        &json!({"iss": "https://idp", "sub": "s", "preferred_username": "Bob", "roles": ["sre"], "repository": "a/b"}),
    )
    .unwrap();
    assert_eq!(
        (
            id.issuer_name.as_str(),
            id.username.as_str(),
            id.groups.as_slice()
        ),
        ("corp", "bob", &["sre".to_string()][..])
    );
    assert_eq!(id.claims["repository"], "a/b");
    assert!(cli::identity_from_claims(
        &issuers,
        &json!({"iss": "https://other", "preferred_username": "x"})
    )
    .is_err());
    assert!(
        cli::identity_from_claims(&issuers, &json!({"preferred_username": "not valid"})).is_err()
    );
}

// ---------------------------------------------------------------------------
// Properties over generated policies and requests.

const GROUPS: [&str; 4] = ["g0", "g1", "g2", "g3"];
const NAMES: [&str; 5] = ["p0", "p1", "p2", "root", "{username}"];

#[derive(Debug, Clone)]
struct GenRule {
    deny: bool,
    group: usize,
    principals: Vec<usize>,
    max_minutes: u64,
    window: Option<(u8, u8)>,
}

fn gen_rule() -> impl Strategy<Value = GenRule> {
    (
        prop::bool::weighted(0.25),
        0..GROUPS.len(),
        prop::collection::vec(0..NAMES.len(), 1..3),
        1u64..60,
        prop::option::of((0u8..23, 1u8..24)),
    )
        .prop_map(|(deny, group, principals, max_minutes, window)| GenRule {
            deny,
            group,
            principals,
            max_minutes,
            window: window.filter(|(a, b)| a != b),
        })
}

fn render(rules: &[GenRule]) -> String {
    let mut text = String::new();
    for (i, r) in rules.iter().enumerate() {
        let principals: Vec<String> = r
            .principals
            .iter()
            .map(|&p| {
                format!(
                    "{:?}",
                    if r.deny && NAMES[p] == "{username}" {
                        "u*"
                    } else {
                        NAMES[p]
                    }
                )
            })
            .collect();
        let kind = if r.deny { "deny" } else { "rule" };
        text.push_str(&format!(
            "[[{kind}]]\nname = \"r{i}\"\nprincipals = [{}]\n",
            principals.join(", ")
        ));
        if !r.deny {
            text.push_str(&format!(
                "max_ttl = \"{}m\"\ndefault_ttl = \"1m\"\n",
                r.max_minutes
            ));
        }
        text.push_str(&format!(
            "[{kind}.match]\ngroups_any = [{:?}]\n",
            GROUPS[r.group]
        ));
        if let Some((from, to)) = r.window {
            text.push_str(&format!("[[{kind}.window]]\nfrom = \"{from:02}:00\"\nto = \"{to:02}:00\"\ntime_zone = \"Europe/Berlin\"\n"));
        }
    }
    // Always one rule, so the policy is never empty.
    text.push_str("[[rule]]\nname = \"base\"\nprincipals = [\"base\"]\nmax_ttl = \"60m\"\n[rule.match]\ngroups_any = [\"g0\"]\n");
    text
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn certificates_carry_only_granted_principals_within_the_smallest_max_ttl_and_deny_wins(
        rules in prop::collection::vec(gen_rule(), 0..8),
        groups in prop::collection::vec(0..GROUPS.len(), 0..3),
        asked in prop::collection::vec(0..NAMES.len(), 0..3),
        ttl_minutes in prop::option::of(1u64..120),
        hour in 0u64..168,
    ) {
        let text = render(&rules);
        let Ok(set) = compile(&[Source { path: "gen.toml".into(), text: text.clone() }], &context()) else {
            // Generated policies may be refused (e.g. a deny shadowing a rule).
            return Ok(());
        };
        let user_groups: Vec<&str> = groups.iter().map(|&g| GROUPS[g]).collect();
        let who = person("u1", &user_groups, json!({}));
        let principals: Vec<String> = {
            let mut p: Vec<String> = asked.iter().map(|&p| NAMES[p].replace("{username}", "u1")).collect();
            p.sort();
            p.dedup();
            p
        };
        let request = CertRequest {
            principals: principals.clone(),
            ttl: ttl_minutes.map(|m| Duration::from_secs(m * 60)),
            client_addr: IpAddr::from([127, 0, 0, 1]),
            approved: Vec::new(),
        };
        let now = MONDAY_NOON_BERLIN + hour * 3600;
        let Decision::Allow(grant) = set.evaluate(&who, &request, now) else { return Ok(()) };
        prop_assert!(!grant.principals.is_empty());
        if !principals.is_empty() {
            prop_assert_eq!(&grant.principals, &principals, "exactly what was asked");
        }
        // Reference model, straight from the generated rules.
        let applies = |r: &GenRule| {
            user_groups.contains(&GROUPS[r.group])
                && r.window.is_none_or(|(from, to)| {
                    window::TimeWindow::parse(&[], &format!("{from:02}:00"), &format!("{to:02}:00"), "Europe/Berlin")
                        .unwrap()
                        .end_if_open(now)
                        .is_some()
                })
        };
        let grants = |r: &GenRule, p: &str| r.principals.iter().any(|&i| NAMES[i].replace("{username}", "u1") == p);
        let denies = |r: &GenRule, p: &str| r.principals.iter().any(|&i| {
            let pattern = NAMES[i];
            if pattern == "{username}" { p.starts_with('u') } else { pattern == p }
        });
        for p in &grant.principals {
            let granting: Vec<u64> = rules
                .iter()
                .filter(|r| !r.deny && applies(r) && grants(r, p))
                .map(|r| r.max_minutes)
                .chain((p == "base" && user_groups.contains(&"g0")).then_some(60))
                .collect();
            prop_assert!(!granting.is_empty(), "principal {} granted by no rule\n{}", p, text);
            let smallest = granting.iter().min().copied().unwrap_or(60);
            prop_assert!(grant.ttl <= Duration::from_secs(smallest * 60), "ttl {:?} beyond max_ttl {}m for {}\n{}", grant.ttl, smallest, p, text);
            let denied_by = rules.iter().any(|r| r.deny && applies(r) && denies(r, p));
            prop_assert!(!denied_by, "principal {} was denied by a deny rule but granted\n{}", p, text);
        }
    }
}
