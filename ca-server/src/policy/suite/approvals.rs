//! Approvals: what an approved access request grants, on which terms a
//! request may be made, who may approve it, break-glass and auto-approval.

use super::*;

#[test]
fn approved_access_grants_its_principals_until_the_window_ends() {
    let set = shipped();
    let bob = person("bob", &["eng", "sre"], json!({}));
    let now = MONDAY_NOON_BERLIN;
    let access = |end: UnixTime| bound(&set, &bob, &approved(42, &["root"], end), now);
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
