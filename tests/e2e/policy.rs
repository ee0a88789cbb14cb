//! End-to-end: the shipped policies/ decide, from the real IdP's `groups`
//! claim, what a real sshd lets in; `policy check` and `policy explain`
//! output and exit codes are pinned, with windows, claims and checks as
//! issue 17 fixed them; the running CA picks up policy edits and refuses
//! broken ones without losing the last good policy.

#![allow(clippy::unwrap_used)]

use std::process::Command;
use std::time::Duration;

use ca_client::{nonce_for, CaClient};
use e2e::*;
use ssh_key::PrivateKey;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_membership_from_the_idp_decides_what_sshd_lets_in() {
    let idp = Idp::start();
    let github = Idp::start();
    // GitHub Actions tokens name no person: the workload issuer takes its
    // identity from `repository`, and carry no nonce.
    let setup = CaSetup::builder()
        .issuer("corp", &idp.issuer)
        .issuer_with_username_claim("github", &github.issuer, "repository")
        .issuer_setting("require_nonce = false")
        .shipped_policies()
        .build();
    let ca = setup.start();
    let client = CaClient::new(&ca.url, None).unwrap();
    let user_ca = client.config().await.unwrap().user_ca_keys.join("\n");
    let deploy_host = Sshd::start(&user_ca, &["deploy"]);
    let dir = tempfile::tempdir().unwrap();

    // bob is in eng and sre (the IdP's groups claim): his own login and deploy.
    let (bob_path, bob_key) = ssh_keygen(dir.path(), "bob", &["-t", "ed25519"]);
    let tokens = idp
        .login("bob", "jit-ssh", Some(&nonce_for(&bob_key).unwrap()))
        .await
        .unwrap();
    let issued = client
        .request_user_certificate(&tokens.id_token, &bob_key, &[], None)
        .await
        .unwrap_or_else(|e| panic!("bob: {e}\n{}", ca.process.stderr.text()));
    assert_eq!(issued.principals, ["bob", "deploy"]);
    assert_eq!(issued.valid_before - issued.valid_after, 300 + 60);
    let bob_cert = write_certificate(dir.path(), &bob_path, &issued.certificate);
    let listing = ssh_keygen_list(&bob_cert);
    assert!(
        listing.contains("rule=eng-own-login,sre-deploy"),
        "{listing}"
    );
    assert!(listing.contains("permit-pty"), "{listing}");
    assert!(!listing.contains("permit-port-forwarding"), "{listing}");
    assert!(!listing.contains("permit-agent-forwarding"), "{listing}");
    let (ok, err) = deploy_host.login(&bob_path, &bob_cert);
    assert!(
        ok,
        "sshd refused bob as deploy: {err}\n{}",
        deploy_host.log()
    );

    // alice is only in eng: her own login, which the deploy host refuses.
    let (alice_path, alice_key) = ssh_keygen(dir.path(), "alice", &["-t", "ed25519"]);
    let nonce = nonce_for(&alice_key).unwrap();
    let tokens = idp.login("alice", "jit-ssh", Some(&nonce)).await.unwrap();
    let issued = client
        .request_user_certificate(&tokens.id_token, &alice_key, &[], None)
        .await
        .unwrap();
    assert_eq!(issued.principals, ["alice"]);
    let alice_cert = write_certificate(dir.path(), &alice_path, &issued.certificate);
    assert!(
        !deploy_host.login(&alice_path, &alice_cert).0,
        "alice must not get in as deploy"
    );
    // Asking for deploy is denied, naming it, without naming sre's rules.
    let tokens = idp.login("alice", "jit-ssh", Some(&nonce)).await.unwrap();
    let (status, code, message) = refusal(
        client
            .request_user_certificate(
                &tokens.id_token,
                &alice_key,
                &["alice".into(), "deploy".into()],
                None,
            )
            .await,
    );
    assert_eq!((status, code.as_str()), (403, "denied"));
    assert_eq!(
        message,
        "principal \"deploy\" is not granted to alice@corp: no rule grants it"
    );

    // root needs an approval nobody can hold yet.
    let key = PrivateKey::random(&mut rand_core::OsRng, ssh_key::Algorithm::Ed25519).unwrap();
    let tokens = idp
        .login("bob", "jit-ssh", Some(&nonce_for(&key).unwrap()))
        .await
        .unwrap();
    let (status, _, message) = refusal(
        client
            .request_user_certificate(&tokens.id_token, &key, &["root".into()], None)
            .await,
    );
    assert_eq!(status, 403);
    assert!(
        message.contains("requires an approved access request (rule sre-root-with-approval)"),
        "{message}"
    );

    // carol is only in sre-leads: nothing.
    let tokens = idp
        .login("carol", "jit-ssh", Some(&nonce_for(&key).unwrap()))
        .await
        .unwrap();
    let (status, _, message) = refusal(
        client
            .request_user_certificate(&tokens.id_token, &key, &[], None)
            .await,
    );
    assert_eq!(
        (status, message.as_str()),
        (403, "no rule grants carol@corp any principal")
    );

    // A contractor in sre still gets deploy, never root.
    let mut claims = idp.claims("cody", "jit-ssh", Some(&nonce_for(&key).unwrap()), now());
    claims["groups"] = serde_json::json!(["eng", "sre", "contractors"]);
    let issued = client
        .request_user_certificate(&idp.sign("RS256", &claims), &key, &[], None)
        .await
        .unwrap();
    assert_eq!(issued.principals, ["cody", "deploy"]);
    claims["iat"] = serde_json::json!(now() + 1);
    let (_, _, message) = refusal(
        client
            .request_user_certificate(&idp.sign("ES256", &claims), &key, &["root".into()], None)
            .await,
    );
    assert!(
        message.contains("denied to cody@corp by rule contractors-never-root"),
        "{message}"
    );

    // The CI workload: a GitHub-style token from the other issuer.
    let (ci_path, ci_key) = ssh_keygen(dir.path(), "ci", &["-t", "ed25519"]);
    // Shaped like GitHub's: no preferred_username, email, groups or nonce.
    let mut ci = serde_json::json!({
        "iss": github.issuer,
        "sub": "repo:acme/app:ref:refs/heads/main",
        "aud": "jit-ssh",
        "iat": now(),
        "exp": now() + 300,
        "repository": "acme/app",
        "repository_owner": "acme",
        "ref": "refs/heads/main",
        "actor": "octocat",
        "event_name": "push",
    });
    let issued = client
        .request_user_certificate(&github.sign("RS256", &ci), &ci_key, &[], None)
        .await
        .unwrap();
    assert_eq!(issued.principals, ["deploy"]);
    assert!(
        issued.key_id.contains("user=acme/app issuer=github"),
        "{}",
        issued.key_id
    );
    let listing = ssh_keygen_list(&write_certificate(
        dir.path(),
        &ci_path,
        &issued.certificate,
    ));
    assert!(
        listing.contains("force-command /usr/local/bin/deploy-acme-app"),
        "{listing}"
    );
    assert!(listing.contains("source-address 127.0.0.1/32"), "{listing}");
    assert!(!listing.contains("permit-pty"), "{listing}");
    ci["ref"] = "refs/heads/feature".into();
    ci["iat"] = serde_json::json!(now() + 1);
    let (status, _, _) = refusal(
        client
            .request_user_certificate(&github.sign("RS256", &ci), &ci_key, &[], None)
            .await,
    );
    assert_eq!(status, 403);

    // Every decision is on record with the rules that decided.
    let audit = setup.audit(&[]);
    let rules: Vec<(String, Vec<String>)> = audit
        .iter()
        .map(|e| {
            (
                e["event"].as_str().unwrap().to_string(),
                serde_json::from_value(e["rules"].clone()).unwrap(),
            )
        })
        .collect();
    let expected: Vec<(&str, Vec<&str>)> = vec![
        ("issued", vec!["eng-own-login", "sre-deploy"]),
        ("issued", vec!["eng-own-login"]),
        ("denied", vec![]),
        ("denied", vec!["sre-root-with-approval"]),
        ("denied", vec![]),
        ("issued", vec!["eng-own-login", "sre-deploy"]),
        ("denied", vec!["contractors-never-root"]),
        ("issued", vec!["ci-acme-app-deploy"]),
        ("denied", vec![]),
    ];
    let expected: Vec<(String, Vec<String>)> = expected
        .into_iter()
        .map(|(e, r)| (e.to_string(), r.into_iter().map(String::from).collect()))
        .collect();
    assert_eq!(rules, expected);
}

fn ca_cli(args: &[&str]) -> (i32, String, String) {
    let (status, out, err) = run(Command::new(bin("jit-ssh-ca")).args(args), STARTUP).unwrap();
    (status.code().unwrap_or(-1), out, err)
}

#[test]
fn policy_check_and_explain_output_and_exit_codes() {
    let setup = CaSetup::builder()
        .issuer("corp", "https://idp.example.com")
        .issuer("github", "https://token.actions.githubusercontent.com")
        .shipped_policies()
        .build();
    let config = setup.config_path.to_str().unwrap();

    let (code, out, err) = ca_cli(&["policy", "check", "--config", config]);
    assert_eq!(code, 0, "{err}");
    let first = out.lines().next().unwrap();
    assert_eq!(
        first,
        "policy OK: 6 file(s), 5 allow rule(s), 1 deny rule(s), 1 admin rule(s)"
    );
    assert!(out.contains("admin sre-leads-admin"), "{out}");
    assert!(
        out.contains("allow sre-root-with-approval") && out.contains("needs approval"),
        "{out}"
    );
    assert!(out.contains("deny  contractors-never-root"), "{out}");

    let broken = setup.dir.path().join("broken");
    std::fs::create_dir(&broken).unwrap();
    std::fs::write(
        broken.join("a.toml"),
        "[[rule]]\nname = \"a\"\npricipals = [\"x\"]\n",
    )
    .unwrap();
    std::fs::write(
        broken.join("b.toml"),
        "[[rule]]\nname = \"b\"\nprincipals = [\"{username}@corp\"]\nmax_ttl = \"1d\"\n[rule.match]\ngroups_any = [\"eng\"]\n[[rule.window]]\nfrom = \"09:00\"\nto = \"17:00\"\ntime_zone = \"Europe/Berln\"\n",
    )
    .unwrap();
    let (code, out, err) = ca_cli(&[
        "policy",
        "check",
        "--config",
        config,
        "--policy-dir",
        broken.to_str().unwrap(),
    ]);
    assert_eq!(code, 1, "{out}{err}");
    let b = broken.display();
    for needle in [
        format!("error: {b}/a.toml:3:1: unknown field `pricipals`"),
        format!("error: {b}/b.toml:3:15: template \"{{username}}@corp\" can never expand to a login name"),
        format!("error: {b}/b.toml:4:11: max_ttl: invalid duration \"1d\""),
        format!("error: {b}/b.toml:10:13: window: unknown time zone \"Europe/Berln\""),
        // This CA trusts corp and github: a group means nothing without its issuer.
        format!("error: {b}/b.toml:6:14: [rule.match] names no issuer, and this CA trusts 2 issuers (corp, github): groups_any would hold for a token of any of them. Add `issuer = [\"corp\"]` to [rule.match]"),
        "5 error(s); the CA would refuse this policy".to_string(),
    ] {
        assert!(err.contains(&needle), "missing {needle:?} in\n{err}");
    }
    let (code, _, err) = ca_cli(&["policy", "check"]);
    assert_eq!(code, 1);
    assert!(err.contains("give --config FILE"), "{err}");

    let claims = |name: &str, value: serde_json::Value| {
        let path = setup.dir.path().join(format!("{name}.json"));
        std::fs::write(&path, value.to_string()).unwrap();
        path.display().to_string()
    };
    let bob = claims(
        "bob",
        serde_json::json!({"iss": "https://idp.example.com", "preferred_username": "bob", "groups": ["eng", "sre"]}),
    );
    let (code, out, err) = ca_cli(&[
        "policy",
        "explain",
        "--config",
        config,
        "--claims",
        &bob,
        "--principal",
        "deploy",
        "--ttl",
        "1h",
        "--at",
        "2026-07-06T12:00:00+02:00",
        "--from",
        "192.0.2.7",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("identity: bob@corp (groups: eng, sre)\nat: 2026-07-06T10:00:00Z  from: 192.0.2.7\ndecision: ALLOW\nprincipals: deploy\nvalid for: 10m (until 2026-07-06T10:10:00Z)\nrules: sre-deploy\n"), "{out}");
    assert!(
        out.contains("admin: no (no [[admin]] rule applies)\n"),
        "{out}"
    );
    assert!(
        out.contains("lifetime: 10m asked for (at most 10m, set by max_ttl of rule sre-deploy)"),
        "{out}"
    );

    let (code, out, _) = ca_cli(&[
        "policy",
        "explain",
        "--config",
        config,
        "--claims",
        &bob,
        "--principal",
        "root",
    ]);
    assert_eq!(code, 3);
    assert!(
        out.contains(
            "decision: DENY\nreason: principal \"root\" requires an approved access request"
        ),
        "{out}"
    );

    let rm = claims(
        "rm",
        serde_json::json!({"iss": "https://idp.example.com", "preferred_username": "rita", "groups": ["release-managers"]}),
    );
    let (code, out, _) = ca_cli(&[
        "policy",
        "explain",
        "--config",
        config,
        "--claims",
        &rm,
        "--at",
        "2026-07-06T16:55:00+02:00",
    ]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("valid for: 5m (until 2026-07-06T15:00:00Z)"),
        "a cert asked for at 16:55 ends at 17:00:\n{out}"
    );
    let (code, out, _) = ca_cli(&[
        "policy",
        "explain",
        "--config",
        config,
        "--claims",
        &rm,
        "--at",
        "2026-07-04T12:00:00+02:00",
    ]);
    assert_eq!(code, 3, "{out}");
    assert!(
        out.contains("rule release-weekdays: matches, but not now"),
        "{out}"
    );

    let (code, _, err) = ca_cli(&[
        "policy",
        "explain",
        "--config",
        config,
        "--claims",
        &rm,
        "--at",
        "yesterday",
    ]);
    assert_eq!(code, 1);
    assert!(err.contains("--at \"yesterday\""), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_running_ca_reloads_edits_and_keeps_the_last_good_policy() {
    let idp = Idp::start();
    let setup = CaSetup::builder()
        .issuer("corp", &idp.issuer)
        .copy_of_shipped_policies()
        .build();
    let policies = &setup.policy_dir;
    let ca = setup.start();
    let client = CaClient::new(&ca.url, None).unwrap();
    let key = PrivateKey::random(&mut rand_core::OsRng, ssh_key::Algorithm::Ed25519).unwrap();
    let nonce = nonce_for(&key).unwrap();
    let alice_gets = || async {
        let tokens = idp.login("alice", "jit-ssh", Some(&nonce)).await.unwrap();
        client
            .request_user_certificate(&tokens.id_token, &key, &[], None)
            .await
            .map(|c| c.principals)
    };
    assert_eq!(alice_gets().await.unwrap(), ["alice"]);

    std::fs::write(
        policies.join("50-shared.toml"),
        "[[rule]]\nname = \"eng-shared\"\nprincipals = [\"shared\"]\n[rule.match]\ngroups_any = [\"eng\"]\n",
    )
    .unwrap();
    eventually_async(Duration::from_secs(10), || async {
        let principals = alice_gets().await.unwrap();
        if principals == ["alice", "shared"] {
            Ok(())
        } else {
            Err(format!(
                "edit not picked up: alice gets {principals:?}\n{}",
                ca.process.stderr.text()
            ))
        }
    })
    .await;

    // A broken edit is refused and logged; the last good policy stays.
    std::fs::write(
        policies.join("50-shared.toml"),
        "[[rule]]\nname = \"eng-shared\"\nprincipals = [\"Shared\"]\n",
    )
    .unwrap();
    ca.process
        .stderr
        .wait_for("policy reload refused", Duration::from_secs(10))
        .unwrap_or_else(|e| {
            panic!(
                "broken edit not reported: {e}\n{}",
                ca.process.stderr.text()
            )
        });
    let log = ca.process.stderr.text();
    assert!(
        log.contains("50-shared.toml:3:15: principal \"Shared\" is not a Unix login name"),
        "{log}"
    );
    assert_eq!(alice_gets().await.unwrap(), ["alice", "shared"]);
}

/// Issue 17 items 7 to 10 and its small things, through the binary: what
/// `policy explain` decides and prints for a deny window ahead, windows that
/// touch, a window inside New York's repeated hour, an empty claim in a
/// template and `--ttl 0s`, and what `policy check` reports of rules that can
/// never match and of a directory with unreadable files.
#[test]
fn explain_clips_at_deny_windows_and_joins_touching_windows() {
    let setup = CaSetup::builder()
        .issuer("corp", "https://idp.example.com")
        .policy(
            r#"
[[rule]]
name = "sre"
principals = ["root", "deploy"]
max_ttl = "60m"
[rule.match]
groups_any = ["sre"]
[[rule.window]]
days = ["mon-fri"]
from = "09:00"
to = "12:00"
time_zone = "UTC"
[[rule.window]]
days = ["mon-fri"]
from = "12:00"
to = "24:00"
time_zone = "UTC"

[[rule]]
name = "ny-night"
principals = ["batch"]
max_ttl = "60m"
[rule.match]
groups_any = ["sre"]
[[rule.window]]
days = ["sun"]
from = "01:00"
to = "01:45"
time_zone = "America/New_York"

[[rule]]
name = "team-login"
principals = ["ci-{claim.team}"]
[rule.match]
groups_any = ["sre"]

[[deny]]
name = "no-root-at-night"
principals = ["root"]
[deny.match]
groups_any = ["sre"]
[[deny.window]]
from = "22:00"
to = "06:00"
time_zone = "UTC"
"#,
        )
        .build();
    let config = setup.config_path.to_str().unwrap();
    let claims = setup.dir.path().join("sre.json");
    std::fs::write(
        &claims,
        serde_json::json!({"iss": "https://idp.example.com", "preferred_username": "sam", "groups": ["sre"]}).to_string(),
    )
    .unwrap();
    let claims = claims.to_str().unwrap();
    let explain = |principal: &str, ttl: &str, at: &str| {
        ca_cli(&[
            "policy",
            "explain",
            "--config",
            config,
            "--claims",
            claims,
            "--principal",
            principal,
            "--ttl",
            ttl,
            "--at",
            at,
        ])
    };
    // Root for an hour at 21:55, the deny window from 22:00: five minutes.
    let (code, out, err) = explain("root", "1h", "2026-07-06T21:55:00Z");
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("valid for: 5m (until 2026-07-06T22:00:00Z)")
            && out.contains(
                "set by start of deny rule no-root-at-night's window at 2026-07-06T22:00:00Z"
            ),
        "{out}"
    );
    // deploy at 11:30: 09–12 and 12–24 are one window, so a full hour.
    let (code, out, err) = explain("deploy", "1h", "2026-07-06T11:30:00Z");
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("valid for: 1h (until 2026-07-06T12:30:00Z)"),
        "{out}"
    );
    // 01:00–01:45 inside New York's repeated hour opens, the first time round.
    let (code, out, err) = explain("batch", "1h", "2026-11-01T01:10:00-04:00");
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("valid for: 35m (until 2026-11-01T05:45:00Z)"),
        "{out}"
    );
    // The server refuses a zero lifetime; so does explain.
    let (code, out, err) = explain("deploy", "0s", "2026-07-06T11:30:00Z");
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        err.contains("--ttl \"0s\": a certificate lifetime must be at least 1 second"),
        "{err}"
    );

    // An empty claim is a missing one: `ci-{claim.team}` gives nothing, and
    // the trace names the claim.
    let empty_team = setup.dir.path().join("empty-team.json");
    std::fs::write(
        &empty_team,
        serde_json::json!({"iss": "https://idp.example.com", "preferred_username": "sam", "groups": ["sre"], "team": ""}).to_string(),
    )
    .unwrap();
    let (code, out, err) = ca_cli(&[
        "policy",
        "explain",
        "--config",
        config,
        "--claims",
        empty_team.to_str().unwrap(),
        "--at",
        "2026-07-06T11:30:00Z",
    ]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("principals: deploy, root\n")
            && out.contains("{claim.team} in \"ci-{claim.team}\": claim missing or empty"),
        "{out}"
    );

    // Rules that can never match are reported where they are written.
    let never = setup.dir.path().join("never");
    std::fs::create_dir(&never).unwrap();
    std::fs::write(
        never.join("a.toml"),
        "[[rule]]\nname = \"a\"\nprincipals = [\"ops\"]\n[rule.match]\nusername = [\"ALICE\"]\n\
         [[deny]]\nname = \"d\"\nprincipals = [\"Ops\", \"ops@host\"]\n",
    )
    .unwrap();
    let (code, out, err) = ca_cli(&[
        "policy",
        "check",
        "--config",
        config,
        "--policy-dir",
        never.to_str().unwrap(),
    ]);
    assert_eq!(code, 1, "{out}{err}");
    let n = never.display();
    for needle in [
        format!("error: {n}/a.toml:8:15: principals: \"Ops\" can never match"),
        format!("error: {n}/a.toml:8:22: principals: \"ops@host\" can never match"),
    ] {
        assert!(err.contains(&needle), "missing {needle:?} in\n{err}");
    }
    std::fs::write(
        never.join("a.toml"),
        "[[rule]]\nname = \"a\"\nprincipals = [\"ops\"]\n[rule.match]\nusername = [\"ALICE\"]\n",
    )
    .unwrap();
    let (code, out, err) = ca_cli(&[
        "policy",
        "check",
        "--config",
        config,
        "--policy-dir",
        never.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains(&format!(
            "warning: {n}/a.toml:5:13: username \"ALICE\" contains 'A'"
        )),
        "{out}"
    );

    // Every unreadable file is reported, and the problems of the readable.
    let broken = setup.dir.path().join("unreadable");
    std::fs::create_dir(&broken).unwrap();
    std::fs::write(broken.join("a.toml"), [0xff, 0xfe, b'\n']).unwrap();
    std::fs::write(broken.join("b.toml"), [b'#', 0xc3, b'\n']).unwrap();
    std::fs::write(
        broken.join("c.toml"),
        "[[rule]]\nname = \"c\"\nprincipals = [\"Root\"]\n[rule.match]\ngroups_any = [\"g\"]\n",
    )
    .unwrap();
    let (code, out, err) = ca_cli(&[
        "policy",
        "check",
        "--config",
        config,
        "--policy-dir",
        broken.to_str().unwrap(),
    ]);
    assert_eq!(code, 1, "{out}{err}");
    let b = broken.display();
    for needle in [
        format!("error: {b}/a.toml: "),
        format!("error: {b}/b.toml: "),
        format!("error: {b}/c.toml:3:15: principal \"Root\" is not a Unix login name"),
        "3 error(s); the CA would refuse this policy".to_string(),
    ] {
        assert!(err.contains(&needle), "missing {needle:?} in\n{err}");
    }
}
