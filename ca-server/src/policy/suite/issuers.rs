//! Whose word a rule takes: with two issuers trusted, a rule that reads
//! groups (or, to grant, login names and emails), an admin rule, approver
//! groups and auto-approval must name their issuers, and what they name is
//! what holds; with one issuer, policies load as they always did.

use super::*;

/// The policy of a CA that trusted one issuer, then added a second: nothing
/// in it says whose groups, names or admins it means.
const UNNAMED: &str = r#"[[rule]]
name = "sre-deploy"
principals = ["deploy"]
[rule.match]
groups_any = ["sre"]

[[rule]]
name = "sre-root"
principals = ["root"]
[rule.approval]
approver_groups = ["sre-leads"]
[rule.approval.auto]
groups = ["oncall"]
[rule.match]
issuer = ["corp"]
groups_any = ["sre"]

[[rule]]
name = "by-name"
principals = ["{username}"]
[rule.match]
username = ["alice", "bob"]

[[deny]]
name = "no-contractors"
principals = ["root"]
[deny.match]
groups_all = ["contractors"]

[[deny]]
name = "nobody-as-nobody"
principals = ["nobody"]

[[admin]]
name = "leads"
[admin.match]
groups_any = ["sre-leads"]
"#;

fn compile_with(text: &str, context: &PolicyContext) -> Result<PolicySet, Vec<String>> {
    compile(
        &[Source {
            path: PathBuf::from("p.toml"),
            text: text.into(),
        }],
        context,
    )
    .map_err(|d| d.iter().map(ToString::to_string).collect())
}

#[test]
fn with_two_issuers_every_unnamed_group_admin_and_approver_is_refused_where_it_stands() {
    let mut errors = compile_with(UNNAMED, &issuers(&["corp", "ci"])).unwrap_err();
    errors.sort();
    let trusts = "and this CA trusts 2 issuers (corp, ci)";
    let expected = [
        format!("p.toml:11:19: approval.approver_groups names no issuer, {trusts}: a member of these groups by a token of any of them could approve. Add `approver_issuer = [\"corp\"]` to [rule.approval], listing the issuers whose groups approve"),
        format!("p.toml:13:10: approval.auto.groups names no issuer, {trusts}: a requester in these groups by a token of any of them would be approved at once. Add `issuer = [\"corp\"]` to [rule.approval.auto], listing the issuers whose groups are approved"),
        format!("p.toml:22:12: [rule.match] names no issuer, {trusts}: username would hold for a token of any of them. Add `issuer = [\"corp\"]` to [rule.match], listing every issuer whose login names count here"),
        format!("p.toml:28:14: [deny.match] names no issuer, {trusts}: groups_all would hold for a token of any of them. Add `issuer = [\"corp\"]` to [deny.match], listing every issuer whose groups count here"),
        format!("p.toml:37:14: [admin.match] names no issuer, {trusts}: groups_any would hold for a token of any of them. Add `issuer = [\"corp\"]` to [admin.match], listing every issuer whose groups count here"),
        format!("p.toml:5:14: [rule.match] names no issuer, {trusts}: groups_any would hold for a token of any of them. Add `issuer = [\"corp\"]` to [rule.match], listing every issuer whose groups count here"),
    ];
    assert_eq!(errors, expected);

    // With one issuer there is nobody else to believe: the same text loads,
    // and so it does where the config is not known (`policy check` without
    // one cannot tell how many issuers the CA trusts).
    let one = compile_with(UNNAMED, &issuers(&["corp"])).unwrap();
    assert!(one.warnings().is_empty(), "{:?}", one.warnings());
    let unknown = PolicyContext {
        issuers: None,
        ..context()
    };
    compile_with(UNNAMED, &unknown).unwrap();
}

#[test]
fn another_issuers_groups_satisfy_nothing_meant_for_the_first() {
    let named = policy(
        r#"
[[rule]]
name = "sre-deploy"
principals = ["deploy"]
[rule.match]
issuer = ["corp"]
groups_any = ["sre"]

[[rule]]
name = "sre-root"
principals = ["root"]
[rule.approval]
approver_groups = ["sre-leads"]
approver_issuer = ["corp"]
approver_users = ["dana@github"]
[rule.approval.auto]
issuer = ["corp"]
groups = ["oncall"]
[rule.match]
issuer = ["corp", "github"]
groups_any = ["sre"]

[[admin]]
name = "leads"
[admin.match]
issuer = ["corp"]
groups_any = ["sre-leads"]
"#,
    );
    let now = MONDAY_NOON_BERLIN;
    let of = |issuer: &str, name: &str, groups: &[&str]| {
        person(name, groups, json!({ "_issuer": issuer }))
    };
    // The group condition: deploy for corp's sre, not for github's.
    let g = allowed(named.evaluate(&of("corp", "bob", &["sre"]), &ask(&["deploy"]), now));
    assert_eq!(g.principals, ["deploy"]);
    let d = denied(named.evaluate(&of("github", "bob", &["sre"]), &ask(&["deploy"]), now));
    assert!(d.reason.contains("no rule grants it"), "{}", d.reason);
    // The admin rule.
    assert!(named
        .admin_rule(&of("corp", "carol", &["sre-leads"]))
        .is_some());
    assert!(named
        .admin_rule(&of("github", "carol", &["sre-leads"]))
        .is_none());
    // Approvers: corp's sre-leads and dana of github by name, not github's
    // sre-leads.
    let rules = ["sre-root".to_string()];
    assert_eq!(
        named.approval_rights(&of("corp", "carol", &["sre-leads"]), &rules),
        Some(1)
    );
    assert_eq!(
        named.approval_rights(&of("github", "carol", &["sre-leads"]), &rules),
        None
    );
    assert_eq!(
        named.approval_rights(&of("github", "dana", &[]), &rules),
        Some(1)
    );
    // Auto-approval: both issuers' sre may ask, only corp's on-call engineers
    // are approved at once.
    let root = ["root".to_string()];
    let terms = |who: &Identity| named.access_terms(who, &root, now).unwrap();
    assert_eq!(
        terms(&of("corp", "erin", &["sre", "oncall"])).auto_approved_by,
        ["sre-root"]
    );
    assert!(terms(&of("github", "erin", &["sre", "oncall"]))
        .auto_approved_by
        .is_empty());

    // The shipped examples are written for corp and github: github's tokens
    // carry nothing the rules give corp's groups.
    let shipped = shipped();
    let bob = of("github", "bob", &["eng", "sre"]);
    assert!(denied(shipped.evaluate(&bob, &ask(&[]), now))
        .reason
        .contains("no rule"));
    assert!(shipped
        .admin_rule(&of("github", "carol", &["sre-leads"]))
        .is_none());
    assert!(shipped.access_terms(&bob, &root, now).is_err());
}

#[test]
fn approver_and_auto_issuers_are_checked_like_every_issuer_name() {
    let rule = |approval: &str| {
        format!(
            "[[rule]]\nname = \"r\"\nprincipals = [\"root\"]\n{approval}[rule.match]\nissuer = [\"corp\"]\n"
        )
    };
    // approver_issuer qualifies approver_groups: without any it says nothing.
    let errors = compile_with(
        &rule("[rule.approval]\napprover_users = [\"dana@corp\"]\napprover_issuer = [\"corp\"]\n"),
        &context(),
    )
    .unwrap_err();
    assert!(
        errors[0].starts_with(
            "p.toml:6:19: approval.approver_issuer says whose approver_groups approve, and there are none"
        ),
        "{errors:?}"
    );
    let errors = compile_with(
        &rule("[rule.approval]\napprover_groups = [\"leads\"]\napprover_issuer = []\n"),
        &context(),
    )
    .unwrap_err();
    assert!(
        errors[0].starts_with("p.toml:6:19: approval.approver_issuer is an empty list"),
        "{errors:?}"
    );
    // Names the config does not know warn, as in [rule.match].
    let set = compile_with(
        &rule("[rule.approval]\napprover_groups = [\"leads\"]\napprover_issuer = [\"gitlab\"]\napprover_users = [\"dana@gitlab\"]\n[rule.approval.auto]\nissuer = [\"gitlab\"]\ngroups = [\"oncall\"]\n"),
        &context(),
    )
    .unwrap();
    let warnings: Vec<String> = set.warnings().iter().map(ToString::to_string).collect();
    assert_eq!(
        warnings,
        [
            "p.toml:6:20: issuer \"gitlab\" is not an [[oidc]] name of the config (known: corp); this condition never holds here",
            "p.toml:7:19: issuer \"gitlab\" is not an [[oidc]] name of the config (known: corp); this approver can never approve here",
            "p.toml:9:11: issuer \"gitlab\" is not an [[oidc]] name of the config (known: corp); this condition never holds here",
        ]
    );
}
