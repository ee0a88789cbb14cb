//! Values that cannot match: rules whose conditions or principals no token
//! can ever satisfy are reported at load time with file:line:column, and
//! claim values are compared and expanded the same way everywhere (an
//! integer is its decimal string, an empty string is missing) (issue 17
//! items 7 and 8).

use super::*;

fn warnings(text: &str) -> Vec<String> {
    policy(text)
        .warnings()
        .iter()
        .map(ToString::to_string)
        .collect()
}

#[test]
fn rules_that_can_never_match_are_reported_where_they_are_written() {
    let refused: &[(&str, &str)] = &[
        // Deny principals are login names: these would deny nothing.
        (
            "[[rule]]\nname = \"a\"\nprincipals = [\"ops\"]\n[rule.match]\ngroups_any = [\"g\"]\n\
             [[deny]]\nname = \"d\"\nprincipals = [\"Ops\"]\n",
            "p.toml:8:15: principals: \"Ops\" can never match",
        ),
        (
            "[[rule]]\nname = \"a\"\nprincipals = [\"ops\"]\n[rule.match]\ngroups_any = [\"g\"]\n\
             [[deny]]\nname = \"d\"\nprincipals = [\"root\", \"ops@host\"]\n",
            "p.toml:8:23: principals: \"ops@host\" can never match",
        ),
        // No username holds a space.
        (
            "[[rule]]\nname = \"a\"\nprincipals = [\"x\"]\n[rule.match]\nusername = [\"alice smith\"]\n",
            "p.toml:5:13: username \"alice smith\" can never match",
        ),
        // A deny rule's claims mean what their issuer says.
        (
            "[[rule]]\nname = \"a\"\nprincipals = [\"x\"]\n[rule.match]\ngroups_any = [\"g\"]\n\
             [[deny]]\nname = \"d\"\n[deny.match]\nclaims = { environment = \"prod\" }\n",
            "p.toml:9:26: claims.environment in a deny rule needs an `issuer` condition",
        ),
        // Window problems point at the key that is wrong.
        (
            "[[rule]]\nname = \"a\"\nprincipals = [\"x\"]\n[rule.match]\ngroups_any = [\"g\"]\n\
             [[rule.window]]\ndays = [\"mon-fry\"]\nfrom = \"09:00\"\nto = \"17:00\"\ntime_zone = \"UTC\"\n",
            "p.toml:7:8: window: unknown day \"fry\"",
        ),
        (
            "[[rule]]\nname = \"a\"\nprincipals = [\"x\"]\n[rule.match]\ngroups_any = [\"g\"]\n\
             [[rule.window]]\nfrom = \"9:00\"\nto = \"17:00\"\ntime_zone = \"UTC\"\n",
            "p.toml:7:8: window: invalid time \"9:00\"",
        ),
        (
            "[[rule]]\nname = \"a\"\nprincipals = [\"x\"]\n[rule.match]\ngroups_any = [\"g\"]\n\
             [[rule.window]]\nfrom = \"09:00\"\nto = \"25:00\"\ntime_zone = \"UTC\"\n",
            "p.toml:8:6: window: invalid time \"25:00\"",
        ),
    ];
    for (text, expected) in refused {
        let errs = errors(text);
        assert!(
            errs.iter().any(|e| e.starts_with(expected)),
            "expected {expected:?} in {errs:#?}"
        );
    }
    // Upper case matches only a workload's name (GitHub repositories keep
    // their case): a warning, with the spelling that matches a person.
    let warned = warnings(
        "[[rule]]\nname = \"a\"\nprincipals = [\"x\"]\n[rule.match]\nissuer = [\"corp\"]\nusername = [\"ALICE\", \"bob\"]\n",
    );
    assert_eq!(warned.len(), 1, "{warned:#?}");
    assert!(
        warned[0].starts_with("test.toml:6:13: username \"ALICE\" contains 'A'")
            && warned[0].contains("write \"alice\""),
        "{warned:#?}"
    );
}

#[test]
fn integer_claims_match_and_expand_as_their_decimal_strings() {
    let set = policy(
        r#"
[[rule]]
name = "by-uid"
principals = ["u{claim.uid}"]
[rule.match]
issuer = ["corp"]
claims = { uid = 1001 }

[[rule]]
name = "by-uid-text"
principals = ["t{claim.uid}"]
[rule.match]
issuer = ["corp"]
claims = { uid = "10*" }

[[rule]]
name = "by-project"
principals = ["p{claim.projects}"]
[rule.match]
issuer = ["corp"]
claims = { projects = [42, "x"] }
"#,
    );
    let cases: &[(Value, &[&str])] = &[
        (json!({"uid": 1001}), &["u1001", "t1001"]),
        (json!({"uid": "1001"}), &["u1001", "t1001"]),
        (json!({"uid": 1002}), &["t1002"]),
        (json!({"uid": 1001.5}), &[]),
        (json!({"projects": [7, 42]}), &["p7", "p42"]),
        (json!({"projects": ["42"]}), &["p42"]),
        (json!({"projects": [true, 4.2]}), &[]),
    ];
    for (claims, expected) in cases {
        let who = person("alice", &[], claims.clone());
        let mut got = match set.evaluate(&who, &ask(&[]), MONDAY_NOON_BERLIN) {
            Decision::Allow(grant) => grant.principals,
            Decision::Deny(_) => Vec::new(),
        };
        got.sort();
        let mut expected = expected.to_vec();
        expected.sort();
        assert_eq!(got, expected, "{claims}");
    }
}

#[test]
fn an_empty_claim_is_missing_and_dropped_values_are_traced() {
    let set = policy(
        r#"
[[rule]]
name = "ci"
principals = ["ci-{claim.team}", "ci-{claim.teams}"]
[rule.match]
issuer = ["corp"]
claims = { team = "*" }

[[rule]]
name = "base"
principals = ["base"]
[rule.match]
issuer = ["corp"]
groups_any = ["eng"]
"#,
    );
    // An empty team is no team: neither `ci-` from the template nor a match
    // of `*`.
    let empty = person(
        "alice",
        &["eng"],
        json!({"team": "", "teams": ["", 7.5, "web"]}),
    );
    let mut trace = Vec::new();
    let grant = allowed(set.decide(&empty, &ask(&[]), MONDAY_NOON_BERLIN, Some(&mut trace)));
    assert_eq!(grant.principals, ["base"]);
    let full = person(
        "alice",
        &["eng"],
        json!({"team": "db", "teams": ["", 7.5, "web"]}),
    );
    let mut trace = Vec::new();
    let grant = allowed(set.decide(&full, &ask(&[]), MONDAY_NOON_BERLIN, Some(&mut trace)));
    assert_eq!(grant.principals, ["base", "ci-db", "ci-web"]);
    for expected in [
        "claim teams[0] is an empty string, left out",
        "claim teams[1] is a fractional number",
    ] {
        assert!(
            trace.iter().any(|l| l.contains(expected)),
            "{expected}: {trace:#?}"
        );
    }
    // The claim is named when a template gives nothing.
    let no_team = person("alice", &["eng"], json!({"team": "db"}));
    let mut trace = Vec::new();
    allowed(set.decide(&no_team, &ask(&[]), MONDAY_NOON_BERLIN, Some(&mut trace)));
    assert!(
        trace
            .iter()
            .any(|l| l.contains("{claim.teams} in \"ci-{claim.teams}\": claim missing or empty")),
        "{trace:#?}"
    );
}
