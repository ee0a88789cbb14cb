//! End-to-end: the rules of combination through the API, with tokens from
//! the real test IdP (tests/idp/users.json). A principal that one rule
//! grants only with an approval is not granted freely by another; a
//! principal bound by a forced command stays in a certificate of its own,
//! and the answer tells the client how to ask for it; claim conditions read
//! `sub` and `aud`, and `claims.email` only a verified address; a username
//! claim that is not already a login name is refused, not folded.

#![allow(clippy::unwrap_used)]

use ca_client::CaClient;
use e2e::*;
use ssh_key::Certificate;

const POLICY: &str = r#"
[[rule]]
name = "eng-own-login"
principals = ["{username}"]
[rule.match]
issuer = ["corp"]
groups_any = ["eng"]

[[rule]]
name = "eng-deploy"
principals = ["deploy"]
[rule.match]
issuer = ["corp"]
groups_any = ["eng"]

[[rule]]
name = "sre-deploy-with-approval"
principals = ["deploy"]
[rule.approval]
approver_groups = ["sre-leads"]
approver_issuer = ["corp"]
[rule.match]
issuer = ["corp"]
groups_any = ["sre"]

[[rule]]
name = "sre-backup"
principals = ["backup"]
extensions = []
force_command = "/usr/local/bin/backup"
[rule.match]
issuer = ["corp"]
groups_any = ["sre"]

[[rule]]
name = "bob-by-subject"
principals = ["by-subject"]
[rule.match]
issuer = ["corp"]
claims = { sub = "user-bob", aud = "jit-ssh" }

[[rule]]
name = "example-mail"
principals = ["by-mail"]
[rule.match]
issuer = ["corp"]
claims = { email = "*@example.com" }
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_combine_by_principal_through_the_api() {
    let idp = Idp::start();
    let setup = CaSetup::builder()
        .issuer("corp", &idp.issuer)
        .policy(POLICY)
        .build();
    let ca = setup.start();
    let client = CaClient::new(&ca.url, None).unwrap();

    // bob (eng, sre): deploy needs an approval for sre, so eng-deploy does
    // not hand it out; backup is bound by a forced command, so it is left
    // out and the answer says how to ask for it.
    let bob = idp.certify(&client, "bob", &[]).await.unwrap();
    assert_eq!(bob.principals, ["bob", "by-mail", "by-subject"]);
    assert_eq!(bob.notes.len(), 1, "{:?}", bob.notes);
    assert!(
        bob.notes[0].contains("backup; ask for them on their own with `--principal backup`"),
        "{:?}",
        bob.notes
    );
    let cert = Certificate::from_openssh(&bob.certificate).unwrap();
    assert!(cert.critical_options().is_empty());
    assert!(cert.extensions().contains_key("permit-pty"));

    let (status, code, message) = refusal(idp.certify(&client, "bob", &["deploy"]).await);
    assert_eq!(
        (status, code.as_str()),
        (403, "approval_required"),
        "{message}"
    );
    assert!(
        message.contains("(rule sre-deploy-with-approval)"),
        "{message}"
    );

    // Asked for alone, backup carries its command; mixed, the request is
    // refused with the split to ask for.
    let backup = idp.certify(&client, "bob", &["backup"]).await.unwrap();
    let cert = Certificate::from_openssh(&backup.certificate).unwrap();
    assert_eq!(
        cert.critical_options()
            .get("force-command")
            .map(String::as_str),
        Some("/usr/local/bin/backup")
    );
    assert!(backup.notes.is_empty());
    let (status, code, message) = refusal(idp.certify(&client, "bob", &["bob", "backup"]).await);
    assert_eq!((status, code.as_str()), (403, "denied"), "{message}");
    assert!(
        message.contains(
            "ask for each set in a certificate of its own: `--principal backup` (force-command \"/usr/local/bin/backup\") and `--principal bob` (no forced command or source address)"
        ),
        "{message}"
    );

    // alice (eng only) gets deploy freely; her verified email matches
    // claims.email, her sub does not match bob's.
    let alice = idp.certify(&client, "alice", &[]).await.unwrap();
    assert_eq!(alice.principals, ["alice", "by-mail", "deploy"]);
    assert!(alice.notes.is_empty());

    // dave's email is not verified: claims.email does not match it.
    let dave = idp.certify(&client, "dave", &[]).await.unwrap();
    assert_eq!(dave.principals, ["dave", "deploy"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_username_claim_that_is_not_a_login_name_is_refused_not_folded() {
    let idp = Idp::start();
    let setup = CaSetup::builder()
        .issuer("corp", &idp.issuer)
        .policy(POLICY)
        .build();
    let ca = setup.start();
    let client = CaClient::new(&ca.url, None).unwrap();
    let recorded = setup.audit(&[]).len();
    // alice-cased's preferred_username is "Alice": not alice, and refused.
    let (status, code, message) = refusal(idp.certify(&client, "alice-cased", &[]).await);
    assert_eq!((status, code.as_str()), (401, "invalid_token"), "{message}");
    assert!(
        message.contains("\"Alice\" is refused, not folded to \"alice\""),
        "{message}"
    );
    assert_eq!(
        setup.audit(&[]).len(),
        recorded,
        "a refusal leaves no record"
    );
    let alice = idp.certify(&client, "alice", &[]).await.unwrap();
    assert_eq!(alice.principals, ["alice", "by-mail", "deploy"]);
}

#[test]
fn jit_ssh_login_tells_the_person_which_principals_to_ask_for_apart() {
    let idp = Idp::start();
    let setup = CaSetup::builder()
        .issuer("corp", &idp.issuer)
        .policy(POLICY)
        .build();
    let ca = setup.start();
    let agent = e2e::openssh::SshAgent::start();
    let home = e2e::client::ClientHome::new("bob", Some(&agent));
    let login = home.run(&["--ca", &ca.url, "login", "--flow", "browser"]);
    assert!(
        login.status.success(),
        "login: {}\n{}",
        login.stderr,
        idp.log()
    );
    let output = format!("{}{}", login.stdout, login.stderr);
    assert!(
        output.contains("Certificate for principals bob, by-mail, by-subject"),
        "{output}"
    );
    assert!(
        output.contains(
            "Note: also granted, but bound by other restrictions (force-command \"/usr/local/bin/backup\") and so left out of this certificate: backup; ask for them on their own with `--principal backup`"
        ),
        "{output}"
    );
    let json = home.run(&["--ca", &ca.url, "login", "--flow", "browser", "--json"]);
    let issued = json.ok_json("login --json");
    assert_eq!(
        issued["notes"].as_array().map(Vec::len),
        Some(1),
        "{issued}"
    );
}
