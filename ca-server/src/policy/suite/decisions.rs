//! Decisions: every condition, the request semantics, the shipped example
//! policies as documented, and the trace `policy explain` prints.

use super::*;

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
fn a_template_never_grants_a_reserved_login_but_a_literal_rule_does() {
    let set = policy(
        "[[rule]]\nname = \"own\"\nprincipals = [\"{username}\", \"{email_local}\", \"{username}-ops\"]\n\
         [rule.match]\nissuer = [\"corp\"]\n\
         [[rule]]\nname = \"break-glass-root\"\nprincipals = [\"root\"]\n\
         [rule.match]\ngroups_any = [\"sre\"]\n",
    );
    let verified_root = json!({"email": "Root@corp.example", "email_verified": true});
    // The provider calls someone root: the templates grant nothing by it.
    let mallory = person("root", &["eng"], verified_root.clone());
    let grant = allowed(set.evaluate(&mallory, &ask(&[]), MONDAY_NOON_BERLIN));
    assert_eq!(grant.principals, ["root-ops"]);
    let d = denied(set.evaluate(&mallory, &ask(&["root"]), MONDAY_NOON_BERLIN));
    assert!(d.reason.contains("no rule grants it"), "{}", d.reason);
    // An email root@ under another username: {email_local} is dropped alike.
    let alice = person("alice", &["eng"], verified_root.clone());
    let grant = allowed(set.evaluate(&alice, &ask(&[]), MONDAY_NOON_BERLIN));
    assert_eq!(grant.principals, ["alice", "alice-ops"]);
    // The rule that names root literally still grants it to its group.
    let sre = person("root", &["sre"], verified_root);
    let grant = allowed(set.evaluate(&sre, &ask(&["root"]), MONDAY_NOON_BERLIN));
    assert_eq!(grant.rules, ["break-glass-root"]);
    let (_, text) = cli::explain(&set, &mallory, &ask(&[]), MONDAY_NOON_BERLIN);
    for needle in [
        "rule own: {username}: \"root\" dropped: root is a built-in reserved login; a template never grants a reserved account (name it literally in a rule to grant it)",
        "rule own: {email_local}: \"root\" dropped: root is a built-in reserved login",
        "rule own: grants [\"root-ops\"]",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in\n{text}");
    }
}
