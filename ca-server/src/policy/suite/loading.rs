//! Loading: diagnostics with file, line and column, shadowing, admin rules,
//! unknown issuers, an empty policy directory, and identities built from
//! claims as the server builds them.

use super::*;

#[test]
fn diagnostics_name_file_line_and_column() {
    let cases: &[(&str, &str)] = &[
        ("[[rule]]\nname = \"a\"\npricipals = [\"x\"]\n", "p.toml:3:1: unknown field `pricipals`"),
        ("[[rule]]\nname = \"a\"\nprincipals = [\"x\"]\nmax_ttl = \"1d\"\n[rule.match]\ngroups_any = [\"g\"]\n", "p.toml:4:11: max_ttl: invalid duration \"1d\""),
        ("[[rule]]\nname = \"a\"\nprincipals = [\"x\"]\nmax_ttl = \"2h\"\n[rule.match]\ngroups_any = [\"g\"]\n", "p.toml:4:11: max_ttl 2h is above the CA's hard ceiling"),
        ("[[rule]]\nname = \"a\"\nprincipals = [\"x\"]\n[rule.match]\nusername = [\"[ab\"]\n", "p.toml:5:13: username: glob \"[ab\" has an unclosed `[`"),
        ("[[rule]]\nname = \"a\"\nprincipals = [\"x\"]\n[rule.match]\ngroups_any = [\"g\"]\n[[rule.window]]\nfrom = \"09:00\"\nto = \"17:00\"\ntime_zone = \"Europe/Berlim\"\n", "p.toml:9:13: window: unknown time zone \"Europe/Berlim\""),
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
        email_domains: Vec::new(),
        scopes: vec!["openid".into()],
        nonce: crate::config::NonceRule::default(),
        provider: crate::config::ProviderSettings::default(),
    }];
    let id = cli::identity_from_claims(
        &issuers,
        &json!({"iss": "https://idp", "sub": "s", "preferred_username": "bob", "roles": ["sre"], "repository": "a/b"}),
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
    // As the server: a name that is not a login name is refused, not folded.
    assert!(cli::identity_from_claims(&issuers, &json!({"preferred_username": "Bob"})).is_err());
}
