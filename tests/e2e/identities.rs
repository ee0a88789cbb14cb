//! End-to-end: one person is one identity. An issuer that names users by
//! their email accepts only the domains its `email_domains` lists (and only
//! verified addresses), so another domain's `alice@` never becomes `alice`;
//! and a provider that calls someone `root` (a `preferred_username` of
//! `root`, an address `root@…`) never gets them the principal `root`
//! through a template, while a rule naming `root` literally still grants it.
//! Tokens come from the real test IdP (tests/idp/users.json: mallory and
//! alice-contractor).

#![allow(clippy::unwrap_used)]

use std::process::Command;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ca_client::{nonce_for, CaClient};
use e2e::*;
use ssh_key::PrivateKey;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_email_named_issuer_accepts_only_its_domains_so_two_alices_stay_two() {
    let idp = Idp::start();

    // Without email_domains the CA refuses to start, saying what to add.
    let unlisted = CaSetup::builder()
        .issuer_with_username_claim("corp", &idp.issuer, "email")
        .build();
    let err = unlisted.expect_start_failure();
    assert!(
        err.contains("[[oidc]] corp: username_claim = \"email\" needs email_domains"),
        "{err}"
    );

    let setup = CaSetup::builder()
        .issuer_with_username_claim("corp", &idp.issuer, "email")
        .issuer_setting("email_domains = [\"example.com\"]")
        .build();
    let ca = setup.start();
    let client = CaClient::new(&ca.url, None).unwrap();

    let alice = idp.certify(&client, "alice", &[]).await.unwrap();
    assert_eq!(alice.principals, ["alice"]);
    let recorded = setup.audit(&[]).len();

    // alice@contractor.example is another person: refused, not merged into
    // alice@corp, with a stable code and a reason naming the domain.
    let (status, code, message) = refusal(idp.certify(&client, "alice-contractor", &[]).await);
    assert_eq!((status, code.as_str()), (403, "email_not_accepted"));
    assert!(
        message.contains("email domain \"contractor.example\" is not accepted by this CA (accepted: example.com)"),
        "{message}"
    );
    // dave's address is unverified: refused alike.
    let (status, code, message) = refusal(idp.certify(&client, "dave", &[]).await);
    assert_eq!((status, code.as_str()), (403, "email_not_accepted"));
    assert!(message.contains("email is not verified"), "{message}");
    // A refusal changes nothing.
    assert_eq!(setup.audit(&[]).len(), recorded, "refusals left records");
    drop(ca);

    // Listing both domains is the admin's decision that their alices are
    // one person: then both become alice@corp.
    let both = CaSetup::builder()
        .issuer_with_username_claim("corp", &idp.issuer, "email")
        .issuer_setting("email_domains = [\"example.com\", \"contractor.example\"]")
        .build();
    let ca = both.start();
    let client = CaClient::new(&ca.url, None).unwrap();
    let contractor = idp.certify(&client, "alice-contractor", &[]).await.unwrap();
    assert_eq!(contractor.principals, ["alice"]);
}

const ROOT_POLICY: &str = r#"
[[rule]]
name = "own"
principals = ["{username}", "{email_local}"]
[rule.match]
issuer = ["corp"]

[[rule]]
name = "root-for-sre-leads"
principals = ["root"]
[rule.match]
groups_any = ["sre-leads"]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_naming_someone_root_never_gets_root_through_a_template() {
    let idp = Idp::start();
    let setup = CaSetup::builder()
        .issuer("corp", &idp.issuer)
        .policy(ROOT_POLICY)
        .build();
    let ca = setup.start();
    let client = CaClient::new(&ca.url, None).unwrap();

    // mallory's preferred_username is "root" and her verified email
    // root@example.com: neither template grants root, so nothing is left.
    let (status, code, message) = refusal(idp.certify(&client, "mallory", &[]).await);
    assert_eq!((status, code.as_str()), (403, "denied"), "{message}");
    let (status, code, message) = refusal(idp.certify(&client, "mallory", &["root"]).await);
    assert_eq!((status, code.as_str()), (403, "denied"));
    assert!(
        message.contains("principal \"root\" is not granted to root@corp: no rule grants it"),
        "{message}"
    );
    // The rule that names root literally still grants it.
    let carol = idp.certify(&client, "carol", &["root"]).await.unwrap();
    assert_eq!(carol.principals, ["root"]);

    // policy explain, on mallory's real token, shows the drop and why.
    let key = PrivateKey::random(&mut rand_core::OsRng, ssh_key::Algorithm::Ed25519).unwrap();
    let tokens = idp
        .login("mallory", "jit-ssh", Some(&nonce_for(&key).unwrap()))
        .await
        .unwrap();
    let payload = tokens.id_token.split('.').nth(1).unwrap();
    let claims_path = setup.dir.path().join("mallory.json");
    std::fs::write(&claims_path, URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
    let (status, out, err) = run(
        Command::new(bin("jit-ssh-ca"))
            .args(["policy", "explain", "--config"])
            .arg(&setup.config_path)
            .arg("--claims")
            .arg(&claims_path)
            .args(["--at", "2026-07-06T12:00:00+02:00", "--from", "192.0.2.7"]),
        STARTUP,
    )
    .unwrap();
    assert_eq!(status.code(), Some(3), "{out}{err}");
    assert_eq!(
        out,
        "identity: root@corp (groups: eng)\n\
         at: 2026-07-06T10:00:00Z  from: 192.0.2.7\n\
         decision: DENY\n\
         reason: no rule grants root@corp any principal\n\
         rules: none\n\
         admin: no (no [[admin]] rule applies)\n\
         approvals held: none\n\
         trace:\n  \
           rule own: {username}: \"root\" dropped: root is a built-in reserved login; a template never grants a reserved account (name it literally in a rule to grant it)\n  \
           rule own: {email_local}: \"root\" dropped: root is a built-in reserved login; a template never grants a reserved account (name it literally in a rule to grant it)\n  \
           rule own: grants []\n  \
           rule root-for-sre-leads: does not apply: groups [\"eng\"] contain none of [\"sre-leads\"]",
        "{err}"
    );
}
