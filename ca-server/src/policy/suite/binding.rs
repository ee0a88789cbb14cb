//! Approvals bound to their rules: a request approved under one policy,
//! decided under another. It grants only while every rule guarding its
//! principal is one it was approved under, still matches the requester, and
//! asks no more than it did; the trace (`policy explain`) says which.

use super::*;
use crate::policy::engine::Trace;

/// `sre-root`: sre may ask for root, one of sre-leads approves.
fn rule(name: &str, groups: &str, approval: &str) -> String {
    format!(
        r#"
[[rule]]
name = "{name}"
principals = ["root"]
max_ttl = "10m"
[rule.match]
issuer = ["corp"]
groups_any = [{groups}]
[rule.approval]
approver_issuer = ["corp"]
max_window = "1h"
{approval}
"#
    )
}

const LEADS: &str = r#"approver_groups = ["sre-leads"]"#;

fn sre_root(approval: &str) -> String {
    rule("sre-root", r#""sre""#, approval)
}

/// Contractors may ask for root too, approved by security: a second rule
/// that guards root for whoever is in that group.
fn contractors_root() -> String {
    rule(
        "contractors-root",
        r#""contractors""#,
        r#"approver_groups = ["security"]"#,
    )
}

struct Case {
    name: &'static str,
    /// The policy the request was made and approved under.
    before: String,
    /// The policy when the certificate is asked for.
    after: String,
    /// The requester's groups when the certificate is asked for (they were
    /// `sre` at approval).
    groups_after: &'static [&'static str],
    how: HowApproved,
    /// `None`: root is still granted; otherwise the trace line that says
    /// why not.
    lapses: Option<&'static str>,
}

fn case(name: &'static str, before: String, after: String, lapses: Option<&'static str>) -> Case {
    Case {
        name,
        before,
        after,
        groups_after: &["sre"],
        how: BY_PEOPLE,
        lapses,
    }
}

#[test]
fn an_approval_holds_only_while_its_rules_ask_no_more() {
    let two = format!("{LEADS}\nmin_approvals = 2");
    let cases = vec![
        case("unchanged", sre_root(LEADS), sre_root(LEADS), None),
        case(
            "removed",
            sre_root(LEADS),
            contractors_root(),
            Some("rule sre-root, under which it was approved, is gone"),
        ),
        case(
            "replaced by another rule for root",
            sre_root(LEADS),
            rule("root-now", r#""sre""#, r#"approver_groups = ["security"]"#),
            Some("rule sre-root, under which it was approved, is gone"),
        ),
        case(
            "renamed",
            sre_root(LEADS),
            rule("sre-root-renamed", r#""sre""#, LEADS),
            Some("rule sre-root, under which it was approved, is gone"),
        ),
        case(
            "more approvers",
            sre_root(LEADS),
            sre_root(&two),
            Some("rule tightened: rule sre-root now needs 2 approvals, 1 when it was approved"),
        ),
        case(
            "other approver groups",
            sre_root(LEADS),
            sre_root(r#"approver_groups = ["security"]"#),
            Some("approver_groups no longer include [\"sre-leads\"]"),
        ),
        case(
            "a shorter max_window than the window",
            sre_root(LEADS),
            sre_root(LEADS).replace(r#"max_window = "1h""#, r#"max_window = "30m""#),
            Some("max_window is now 1800s, shorter than the approved window of 3600s"),
        ),
        case("fewer approvers", sre_root(&two), sre_root(LEADS), None),
        case(
            "more approver groups",
            sre_root(LEADS),
            sre_root(r#"approver_groups = ["sre-leads", "security"]"#),
            None,
        ),
        case(
            "another rule now guards root as well",
            sre_root(LEADS),
            sre_root(LEADS) + &rule("sre-root-too", r#""sre""#, LEADS),
            Some("rule sre-root-too guards it now and it was not approved under that rule"),
        ),
        Case {
            groups_after: &["contractors"],
            ..case(
                "the requester left sre for contractors",
                sre_root(LEADS) + &contractors_root(),
                sre_root(LEADS) + &contractors_root(),
                Some("the requester no longer matches rule sre-root"),
            )
        },
        Case {
            how: HowApproved {
                break_glass: true,
                ..BY_PEOPLE
            },
            ..case(
                "break-glass no longer allowed",
                sre_root(&format!("{LEADS}\nbreak_glass = true")),
                sre_root(LEADS),
                Some("rule sre-root no longer allows break-glass"),
            )
        },
    ];
    let now = MONDAY_NOON_BERLIN;
    for c in cases {
        let before = policy(&c.before);
        let after = policy(&c.after);
        let at_approval = person("bob", &["sre"], json!({}));
        let access = ApprovedAccess {
            how: c.how,
            ..bound(
                &before,
                &at_approval,
                &approved(5, &["root"], now + 3600),
                now,
            )
        };
        let bob = person("bob", c.groups_after, json!({}));
        let request = CertRequest {
            approved: vec![access],
            ..ask(&["root"])
        };
        let mut trace = Trace::new();
        let decision = after.decide(&bob, &request, now, Some(&mut trace));
        let trace = trace.join("\n");
        match c.lapses {
            None => {
                let grant = allowed(decision);
                assert_eq!(grant.principals, ["root"], "{}", c.name);
                assert_eq!(grant.request_ids, [5], "{}", c.name);
                assert!(
                    trace.contains("approved access request 5: still holds for [\"root\"]"),
                    "{}: {trace}",
                    c.name
                );
            }
            Some(why) => {
                let denial = denied(decision);
                assert!(
                    trace.contains(why),
                    "{}: trace lacks {why:?}:\n{trace}\n(denied: {})",
                    c.name,
                    denial.reason
                );
            }
        }
    }
}

#[test]
fn a_request_recorded_before_requirements_grants_nothing() {
    let set = policy(&sre_root(LEADS));
    let bob = person("bob", &["sre"], json!({}));
    let now = MONDAY_NOON_BERLIN;
    let request = CertRequest {
        approved: vec![approved(9, &["root"], now + 3600)],
        ..ask(&["root"])
    };
    let mut trace = Trace::new();
    let denial = denied(set.decide(&bob, &request, now, Some(&mut trace)));
    assert!(
        denial
            .reason
            .contains("requires an approved access request"),
        "{}",
        denial.reason
    );
    assert!(
        trace
            .join("\n")
            .contains("recorded before approvals were bound to their rules"),
        "{trace:?}"
    );
}

#[test]
fn an_auto_approval_holds_only_while_its_auto_table_is_unchanged() {
    let auto = |groups: &str| {
        format!("{LEADS}\n[rule.approval.auto]\nissuer = [\"corp\"]\ngroups = [{groups}]")
    };
    let before = policy(&sre_root(&auto(r#""oncall""#)));
    let bob = person("bob", &["sre", "oncall"], json!({}));
    let now = MONDAY_NOON_BERLIN;
    let access = ApprovedAccess {
        how: HowApproved {
            by_policy: true,
            ..BY_PEOPLE
        },
        ..bound(&before, &bob, &approved(3, &["root"], now + 3600), now)
    };
    let request = CertRequest {
        approved: vec![access],
        ..ask(&["root"])
    };
    assert_eq!(
        allowed(before.evaluate(&bob, &request, now)).principals,
        ["root"]
    );
    let changed = policy(&sre_root(&auto(r#""oncall", "sre""#)));
    let mut trace = Trace::new();
    denied(changed.decide(&bob, &request, now, Some(&mut trace)));
    assert!(
        trace
            .join("\n")
            .contains("[rule.approval.auto], which approved it, has changed"),
        "{trace:?}"
    );
}

#[test]
fn the_requirement_is_recorded_in_canonical_form() {
    let set = policy(&sre_root(
        r#"approver_groups = ["sre-leads", "oncall-leads", "sre-leads"]
approver_users = ["carol@corp"]
min_approvals = 2"#,
    ));
    let bob = person("bob", &["sre"], json!({}));
    let terms = set
        .access_terms(&bob, &["root".into()], MONDAY_NOON_BERLIN)
        .unwrap();
    assert_eq!(terms.rules, ["sre-root"]);
    assert_eq!(
        terms.requirements[0].canonical(),
        r#"{"rule":"sre-root","min_approvals":2,"approver_groups":["oncall-leads","sre-leads"],"approver_issuers":["corp"],"approver_users":["carol@corp"],"max_window_secs":3600,"break_glass":false,"auto":null,"requester":"{\"claims\":[],\"email\":[],\"email_domain\":[],\"groups_all\":[],\"groups_any\":[\"sre\"],\"issuer\":[\"corp\"],\"username\":[]}"}"#
    );
    assert_eq!(
        set.requirements(&["sre-root".into(), "gone".into()]),
        vec![Some(terms.requirements[0].clone()), None]
    );
}
