//! Rules of combination: what a decision is when several rules grant the
//! same identity. Approval binds to the principal (the strictest rule
//! wins), and critical options (forced command, source addresses) stay
//! with the principals whose rules set them. Each case is policy files +
//! claims + time → decision and certificate.

use super::*;
use crate::policy::engine::Trace;

/// What a case expects.
enum Expect {
    /// Allowed with these principals and critical options; each note the
    /// client gets contains the matching text, in order.
    Cert {
        principals: &'static [&'static str],
        critical: &'static [(&'static str, &'static str)],
        notes: &'static [&'static str],
        rules: &'static [&'static str],
    },
    /// Denied; the reason contains every one of these.
    Refused(&'static [&'static str]),
}

struct Case {
    name: &'static str,
    identity: Identity,
    principals: &'static [&'static str],
    approved: Vec<ApprovedAccess>,
    expect: Expect,
}

fn check_cases(set: &PolicySet, cases: Vec<Case>) {
    let now = MONDAY_NOON_BERLIN;
    for case in cases {
        let request = CertRequest {
            approved: case
                .approved
                .iter()
                .map(|a| bound(set, &case.identity, a, now))
                .collect(),
            ..ask(case.principals)
        };
        let decision = set.evaluate(&case.identity, &request, now);
        match (case.expect, decision) {
            (
                Expect::Cert {
                    principals,
                    critical,
                    notes,
                    rules,
                },
                Decision::Allow(grant),
            ) => {
                assert_eq!(grant.principals, principals, "{}", case.name);
                let got: Vec<(&str, &str)> = grant
                    .critical_options
                    .iter()
                    .map(|(n, v)| (n.as_str(), v.as_str()))
                    .collect();
                assert_eq!(got, critical, "{}", case.name);
                assert_eq!(
                    grant.notes.len(),
                    notes.len(),
                    "{}: {:?}",
                    case.name,
                    grant.notes
                );
                for (note, want) in grant.notes.iter().zip(notes) {
                    assert!(note.contains(want), "{}: {note}", case.name);
                }
                assert_eq!(grant.rules, rules, "{}", case.name);
            }
            (Expect::Refused(parts), Decision::Deny(denial)) => {
                for part in parts {
                    assert!(
                        denial.reason.contains(part),
                        "{}: {:?} lacks {part:?}",
                        case.name,
                        denial.reason
                    );
                }
            }
            (Expect::Cert { .. }, Decision::Deny(d)) => {
                panic!("{}: denied: {}", case.name, d.reason)
            }
            (Expect::Refused(_), Decision::Allow(g)) => {
                panic!("{}: allowed: {g:?}", case.name)
            }
        }
    }
}

fn approved_for(principal: &str) -> Vec<ApprovedAccess> {
    vec![approved(7, &[principal], MONDAY_NOON_BERLIN + 3600)]
}

/// The shipped engineers' rule, a release account that needs approval,
/// and a deploy account granted freely to one group but with approval to
/// another: names that are not reserved, so a template can reach them.
const APPROVAL_POLICY: &str = r#"
[[rule]]
name = "eng-own-login"
principals = ["{username}"]
[rule.match]
groups_any = ["eng"]

[[rule]]
name = "release-with-approval"
principals = ["release"]
[rule.approval]
approver_groups = ["release-leads"]
[rule.match]
groups_any = ["release-managers"]

[[rule]]
name = "ops-deploy"
principals = ["deploy"]
[rule.match]
groups_any = ["ops"]

[[rule]]
name = "sre-deploy-with-approval"
principals = ["deploy"]
[rule.approval]
approver_groups = ["sre-leads"]
[rule.match]
groups_any = ["sre"]
[[rule.window]]
days = ["sat"]
from = "00:00"
to = "23:59"
time_zone = "Europe/Berlin"
"#;

#[test]
fn a_principal_needing_approval_by_any_applying_rule_needs_it_from_every_rule() {
    let set = policy(APPROVAL_POLICY);
    let cases = vec![
        Case {
            name: "{username} does not hand out release without the approval",
            identity: person("release", &["eng", "release-managers"], json!({})),
            principals: &["release"],
            approved: vec![],
            expect: Expect::Refused(&[
                "requires an approved access request (rule release-with-approval)",
                "jit-ssh request --principal release",
            ]),
        },
        Case {
            name: "asking for everything leaves it out",
            identity: person("release", &["eng", "release-managers"], json!({})),
            principals: &[],
            approved: vec![],
            expect: Expect::Refused(&["release-with-approval", "need an approved access request"]),
        },
        Case {
            name: "with the approval it is granted, by the approval rule alone",
            identity: person("release", &["eng", "release-managers"], json!({})),
            principals: &["release"],
            approved: approved_for("release"),
            expect: Expect::Cert {
                principals: &["release"],
                critical: &[],
                notes: &[],
                rules: &["release-with-approval"],
            },
        },
        Case {
            name: "someone the approval rule does not apply to keeps their login",
            identity: person("release", &["eng"], json!({})),
            principals: &["release"],
            approved: vec![],
            expect: Expect::Cert {
                principals: &["release"],
                critical: &[],
                notes: &[],
                rules: &["eng-own-login"],
            },
        },
        Case {
            name: "a second rule naming it literally does not bypass it either",
            identity: person("bob", &["ops", "sre"], json!({})),
            principals: &["deploy"],
            approved: vec![],
            expect: Expect::Refused(&["sre-deploy-with-approval", "only"]),
        },
        Case {
            name: "ops alone get deploy freely",
            identity: person("bob", &["ops"], json!({})),
            principals: &["deploy"],
            approved: vec![],
            expect: Expect::Cert {
                principals: &["deploy"],
                critical: &[],
                notes: &[],
                rules: &["ops-deploy"],
            },
        },
    ];
    check_cases(&set, cases);
}

#[test]
fn explain_names_the_rule_that_demands_the_approval() {
    let set = policy(APPROVAL_POLICY);
    let release = person("release", &["eng", "release-managers"], json!({}));
    let mut trace = Trace::new();
    let decision = set.decide(
        &release,
        &ask(&["release"]),
        MONDAY_NOON_BERLIN,
        Some(&mut trace),
    );
    assert_eq!(denied(decision).rules, ["release-with-approval"]);
    assert!(
        trace.iter().any(|l| l
            == "rule eng-own-login: \"release\" withheld: rule release-with-approval grants it only with an approved access request (the strictest rule wins)"),
        "{trace:#?}"
    );
}

/// Own logins for eng, a backup account with a forced command, and two
/// accounts bound to different networks.
const RESTRICTED_POLICY: &str = r#"
[[rule]]
name = "eng-own-login"
principals = ["{username}"]
[rule.match]
groups_any = ["eng"]

[[rule]]
name = "backup-ops"
principals = ["backup"]
extensions = []
force_command = "/usr/local/bin/backup"
[rule.match]
groups_any = ["backup-ops"]

[[rule]]
name = "office-net"
principals = ["office"]
source_address = ["10.0.0.0/8"]
[rule.match]
groups_any = ["net"]

[[rule]]
name = "lab-net"
principals = ["lab"]
source_address = ["192.168.0.0/16"]
[rule.match]
groups_any = ["net"]

[[rule]]
name = "restore-a"
principals = ["restore"]
force_command = "/usr/local/bin/restore --a"
[rule.match]
groups_any = ["restore"]

[[rule]]
name = "restore-b"
principals = ["restore"]
force_command = "/usr/local/bin/restore --b"
[rule.match]
groups_any = ["restore"]
"#;

#[test]
fn restrictions_stay_with_their_principals() {
    let set = policy(RESTRICTED_POLICY);
    let cases = vec![
        Case {
            name: "everything: own login unrestricted, backup named to the client",
            identity: person("bob", &["eng", "backup-ops"], json!({})),
            principals: &[],
            approved: vec![],
            expect: Expect::Cert {
                principals: &["bob"],
                critical: &[],
                notes: &["backup; ask for them on their own with `--principal backup`"],
                rules: &["eng-own-login"],
            },
        },
        Case {
            name: "backup asked for alone carries its forced command",
            identity: person("bob", &["eng", "backup-ops"], json!({})),
            principals: &["backup"],
            approved: vec![],
            expect: Expect::Cert {
                principals: &["backup"],
                critical: &[("force-command", "/usr/local/bin/backup")],
                notes: &[],
                rules: &["backup-ops"],
            },
        },
        Case {
            name: "a mix is refused with the split to ask for",
            identity: person("bob", &["eng", "backup-ops"], json!({})),
            principals: &["bob", "backup"],
            approved: vec![],
            expect: Expect::Refused(&[
                "cannot share a certificate",
                "`--principal bob` (no forced command or source address)",
                "`--principal backup` (force-command \"/usr/local/bin/backup\")",
            ]),
        },
        Case {
            name: "different networks: the default login still works",
            identity: person("carol", &["eng", "net"], json!({})),
            principals: &[],
            approved: vec![],
            expect: Expect::Cert {
                principals: &["carol"],
                critical: &[],
                notes: &["lab", "office"],
                rules: &["eng-own-login"],
            },
        },
        Case {
            name: "only bound principals: those of the first rule",
            identity: person("carol", &["net"], json!({})),
            principals: &[],
            approved: vec![],
            expect: Expect::Cert {
                principals: &["office"],
                critical: &[("source-address", "10.0.0.0/8")],
                notes: &["(source-address \"192.168.0.0/16\") and so left out of this certificate: lab; ask for them on their own with `--principal lab`"],
                rules: &["office-net"],
            },
        },
        Case {
            name: "both networks asked for: the split",
            identity: person("carol", &["net"], json!({})),
            principals: &["office", "lab"],
            approved: vec![],
            expect: Expect::Refused(&["`--principal office`", "`--principal lab`"]),
        },
        Case {
            name: "two forced commands on one principal: never issued, no advice to split",
            identity: person("dan", &["restore"], json!({})),
            principals: &["restore"],
            approved: vec![],
            expect: Expect::Refused(&[
                "can never be issued",
                "rules restore-a and restore-b force different commands",
                "policy check",
            ]),
        },
        Case {
            name: "and left out of everything, the rest still issued",
            identity: person("dan", &["restore", "eng"], json!({})),
            principals: &[],
            approved: vec![],
            expect: Expect::Cert {
                principals: &["dan"],
                critical: &[],
                notes: &[],
                rules: &["eng-own-login"],
            },
        },
    ];
    check_cases(&set, cases);
}

fn warnings_of(text: &str) -> Vec<String> {
    policy(text)
        .warnings()
        .iter()
        .map(ToString::to_string)
        .collect()
}

#[test]
fn policy_check_reports_what_the_rules_of_combination_decide() {
    // The approval demanded by one rule over another's grant.
    let w = warnings_of(APPROVAL_POLICY);
    assert!(
        w.iter().any(|w| w.starts_with("test.toml:3:8: ")
            && w.contains("rule \"eng-own-login\" may grant \"release\" (through \"{username}\"), which rule \"release-with-approval\" (test.toml:9:8) grants only with an approved access request")),
        "{w:#?}"
    );
    assert!(
        w.iter().any(|w| w.contains(
            "rule \"ops-deploy\" may grant \"deploy\", which rule \"sre-deploy-with-approval\""
        )),
        "{w:#?}"
    );
    // Principals that can never be issued to someone both rules apply to.
    let w = warnings_of(RESTRICTED_POLICY);
    assert_eq!(w.len(), 1, "{w:#?}");
    assert!(
        w[0].contains("rules \"restore-a\" and \"restore-b\" both grant \"restore\" and force different commands"),
        "{w:#?}"
    );
    let w = warnings_of(
        r#"
[[rule]]
name = "office"
principals = ["shared"]
source_address = ["10.0.0.0/8"]
[rule.match]
issuer = ["corp"]

[[rule]]
name = "lab"
principals = ["shared"]
source_address = ["192.168.0.0/16"]
[rule.match]
issuer = ["corp"]

[[rule]]
name = "near"
principals = ["near"]
source_address = ["10.0.0.0/8"]
[rule.match]
issuer = ["corp"]
[[rule]]
name = "client"
principals = ["near"]
source_address = ["{client_ip}"]
[rule.match]
issuer = ["corp"]
"#,
    );
    assert_eq!(w.len(), 1, "{w:#?}");
    assert!(
        w[0].contains("admit source addresses with none in common"),
        "{w:#?}"
    );
    // Rules whose issuers differ never meet one identity; a reserved login
    // is never a template's expansion.
    let w = warnings_of(
        r#"
[[rule]]
name = "own"
principals = ["{username}"]
[rule.match]
issuer = ["corp"]

[[rule]]
name = "ci"
principals = ["deploy"]
force_command = "/bin/deploy"
[rule.match]
issuer = ["github"]

[[rule]]
name = "people-deploy"
principals = ["deploy"]
force_command = "/bin/other"
[rule.match]
issuer = ["corp"]

[[rule]]
name = "root"
principals = ["root"]
[rule.approval]
approver_groups = ["leads"]
approver_issuer = ["corp"]
[rule.match]
issuer = ["corp"]
"#,
    );
    assert!(
        w.iter().all(|w| !w.contains("force different commands")),
        "{w:#?}"
    );
    assert!(w.iter().all(|w| !w.contains("\"root\"")), "{w:#?}");
}

#[test]
fn claim_conditions_read_what_reaches_policy() {
    let set = policy(
        r#"
[[rule]]
name = "mail"
principals = ["mail"]
[rule.match]
issuer = ["corp"]
claims = { email = "*@corp.example" }

[[rule]]
name = "workflow"
principals = ["ci"]
[rule.match]
issuer = ["corp"]
claims = { sub = "repo:acme/app:ref:refs/heads/main", aud = "jit-ssh" }
"#,
    );
    let now = MONDAY_NOON_BERLIN;
    let principals = |identity: &Identity| match set.evaluate(identity, &ask(&[]), now) {
        Decision::Allow(g) => g.principals,
        Decision::Deny(_) => Vec::new(),
    };
    let cases: Vec<(&str, Value, Vec<&str>)> = vec![
        (
            "unverified",
            json!({"email": "a@corp.example", "email_verified": false}),
            vec![],
        ),
        (
            "verified",
            json!({"email": "a@corp.example", "email_verified": true}),
            vec!["mail"],
        ),
        (
            "verified, any case",
            json!({"email": "A@Corp.Example", "email_verified": true}),
            vec!["mail"],
        ),
        (
            "no email_verified",
            json!({"email": "a@corp.example"}),
            vec![],
        ),
        (
            "email_verified as a string",
            json!({"email": "a@corp.example", "email_verified": "true"}),
            vec![],
        ),
        (
            "sub and aud as the verifier hands them on",
            json!({"sub": "repo:acme/app:ref:refs/heads/main", "aud": ["jit-ssh", "x"]}),
            vec!["ci"],
        ),
        (
            "another branch",
            json!({"sub": "repo:acme/app:ref:refs/heads/dev", "aud": "jit-ssh"}),
            vec![],
        ),
    ];
    for (name, claims, want) in cases {
        assert_eq!(principals(&person("a", &[], claims)), want, "{name}");
    }
    // Through the mapping the server and explain share: `sub` reaches policy.
    let issuers = [crate::identity::tests::issuer(
        "corp",
        crate::config::UsernameClaim::Claim("repository".into()),
    )];
    let id = cli::identity_from_claims(
        &issuers,
        &json!({"iss": "https://corp.example", "sub": "repo:acme/app:ref:refs/heads/main",
            "aud": "jit-ssh", "repository": "acme/app", "exp": 1}),
    )
    .unwrap();
    assert_eq!(principals(&id), ["ci"]);
    // Claims that never reach policy are reported when it loads.
    let w = warnings_of(
        r#"
[[rule]]
name = "by-issuer-claim"
principals = ["x"]
[rule.match]
issuer = ["corp"]
claims = { iss = "https://corp.example" }
"#,
    );
    assert!(
        w.iter()
            .any(|w| w.contains("rule \"by-issuer-claim\": claims.iss can never match")),
        "{w:#?}"
    );
}
