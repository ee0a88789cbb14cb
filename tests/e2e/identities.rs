//! End-to-end: one person is one identity. An issuer that names users by
//! their email accepts only the domains its `email_domains` lists (and only
//! verified addresses), so another domain's `alice@` never becomes `alice`;
//! and a provider that calls someone `root` (a `preferred_username` of
//! `root`, an address `root@…`) never gets them the principal `root`
//! through a template, while a rule naming `root` literally still grants it.
//! When an issuer accepts both domains, their two alices are two people
//! who show one display name, `alice@corp`: the CA tells them apart by
//! `(iss, sub)` in every decision (grants, approvals, `done`, revocation,
//! rate limits), and the audit log shows both names.
//! Tokens come from the real test IdP (tests/idp/users.json: mallory and
//! alice-contractor).

#![allow(clippy::unwrap_used)]

use std::process::Command;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ca_client::{nonce_for, CaClient};
use e2e::*;
use serde_json::{json, Value};
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

/// Both alices are eng, so either may approve the other's request for
/// `deploy`, as may carol (sre-leads), who also administers.
const TWO_ALICES_POLICY: &str = r#"
[[rule]]
name = "own-login"
principals = ["{username}"]
[rule.match]
issuer = ["corp"]

[[rule]]
name = "deploy-with-approval"
principals = ["deploy"]
[rule.approval]
approver_groups = ["eng", "sre-leads"]
[rule.match]
groups_any = ["eng"]

[[admin]]
name = "leads"
[admin.match]
groups_any = ["sre-leads"]
"#;

/// A CA whose issuer `corp` names users by email and accepts both domains:
/// alice (alice@example.com, sub user-alice) and alice-contractor
/// (alice@contractor.example, sub user-alice-contractor) both show as
/// alice@corp.
fn two_alices(idp: &Idp) -> CaBuilder {
    CaSetup::builder()
        .issuer_with_username_claim("corp", &idp.issuer, "email")
        .issuer_setting("email_domains = [\"example.com\", \"contractor.example\"]")
        .policy(TWO_ALICES_POLICY)
}

/// `path` called by `user` with a fresh ID token from the real sign-in.
async fn call_as(idp: &Idp, ca: &Ca, user: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let token = idp.login(user, "jit-ssh", None).await.unwrap().id_token;
    ca.call(path, Some(&token), body).await
}

fn error_code(answer: &Value) -> &str {
    answer["error"]["code"].as_str().unwrap_or("")
}

/// The two alices, each with a certificate (both `alice@corp`), and a
/// pending request of alice's for `deploy`.
struct TwoAlices {
    idp: Idp,
    setup: CaSetup,
    ca: Ca,
    client: CaClient,
    /// The request's id.
    asked: u64,
    /// The serial of the other alice's certificate.
    contractor_serial: String,
}

async fn two_alices_and_a_request() -> TwoAlices {
    let idp = Idp::start();
    let setup = two_alices(&idp).build();
    let ca = setup.start();
    let client = CaClient::new(&ca.url, None).unwrap();
    let alice = idp.certify(&client, "alice", &[]).await.unwrap();
    assert_eq!(alice.principals, ["alice"]);
    let contractor = idp.certify(&client, "alice-contractor", &[]).await.unwrap();
    assert_eq!(contractor.principals, ["alice"], "one display name");
    let body = json!({"principals": ["deploy"], "reason": "INC-7: release"});
    let (status, created) = call_as(&idp, &ca, "alice", "/v1/requests", Some(body)).await;
    assert_eq!(status, 200, "{created}");
    assert_eq!(created["requester"], "alice@corp");
    TwoAlices {
        asked: created["id"].as_u64().unwrap(),
        contractor_serial: contractor.serial,
        idp,
        setup,
        ca,
        client,
    }
}

impl TwoAlices {
    async fn call(&self, user: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        call_as(&self.idp, &self.ca, user, path, body).await
    }

    async fn certify(
        &self,
        user: &str,
        principals: &[&str],
    ) -> Result<ca_proto::UserCertResponse, ca_client::ClientError> {
        self.idp.certify(&self.client, user, principals).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grant_approved_for_one_alice_does_not_let_the_other_certify() {
    let w = two_alices_and_a_request().await;
    let approve = format!("/v1/requests/{}/approve", w.asked);
    let (status, approved) = w.call("carol", &approve, Some(json!({}))).await;
    assert_eq!(status, 200, "{approved}");
    assert_eq!(approved["status"], "approved");

    let granted = w.certify("alice", &["deploy"]).await.unwrap();
    assert_eq!(granted.principals, ["deploy"]);
    let (status, code, message) = refusal(w.certify("alice-contractor", &["deploy"]).await);
    assert_eq!(
        (status, code.as_str()),
        (403, "approval_required"),
        "another person's grant certified: {message}"
    );
    // Nor does she list it as her own.
    let (status, listed) = w.call("alice-contractor", "/v1/requests", None).await;
    assert_eq!(status, 200, "{listed}");
    assert!(
        listed["requests"].as_array().unwrap().is_empty(),
        "{listed}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_other_alice_may_approve_alices_request_and_the_audit_tells_them_apart() {
    let w = two_alices_and_a_request().await;
    let approve = format!("/v1/requests/{}/approve", w.asked);
    // alice may not approve her own request...
    let (status, answer) = w.call("alice", &approve, Some(json!({}))).await;
    assert_eq!(
        (status, error_code(&answer)),
        (403, "own_request"),
        "{answer}"
    );
    // ...but the other alice is another person, not refused as a
    // self-approval.
    let (status, approved) = w.call("alice-contractor", &approve, Some(json!({}))).await;
    assert_eq!(
        status, 200,
        "approving another person's request: {approved}"
    );
    assert_eq!(approved["status"], "approved");
    assert_eq!(approved["approvals"][0]["approver"], "alice@corp");

    // The audit log shows both names: one display name, two subjects.
    let seen: std::collections::BTreeSet<(String, String)> = w
        .setup
        .audit(&["--identity", "alice@corp"])
        .iter()
        .map(|e| {
            assert_eq!(e["identity"], "alice@corp", "{e}");
            assert_eq!(e["issuer_url"], w.idp.issuer.as_str(), "{e}");
            let event = e["event"].as_str().unwrap().to_string();
            (event, e["subject"].as_str().unwrap().to_string())
        })
        .collect();
    for (event, subject) in [
        ("issued", "user-alice"),
        ("issued", "user-alice-contractor"),
        ("request_created", "user-alice"),
        ("request_approved", "user-alice-contractor"),
    ] {
        assert!(
            seen.contains(&(event.to_string(), subject.to_string())),
            "{event} by {subject} not in {seen:?}"
        );
    }
    let (status, table, err) = w.setup.cli(&["audit", "--identity", "alice@corp"]);
    assert!(status.success(), "{err}");
    let line = table
        .lines()
        .find(|l| l.contains("request_approved"))
        .unwrap_or_else(|| panic!("{table}"));
    assert!(
        line.contains("alice@corp") && line.contains("user-alice-contractor"),
        "{table}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_alice_who_asked_ends_her_request() {
    let w = two_alices_and_a_request().await;
    let done = format!("/v1/requests/{}/done", w.asked);
    let (status, answer) = w.call("alice-contractor", &done, Some(json!({}))).await;
    assert_eq!(
        (status, error_code(&answer)),
        (403, "not_requester"),
        "{answer}"
    );
    let (status, ended) = w.call("alice", &done, Some(json!({}))).await;
    assert_eq!(status, 200, "{ended}");
    assert_eq!(ended["status"], "ended");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoking_one_alice_by_subject_revokes_only_her() {
    let w = two_alices_and_a_request().await;
    let revoke = json!({"identity": "sub:user-alice-contractor@corp", "reason": "contract ended"});
    let (status, revoked) = w.call("carol", "/v1/revocations", Some(revoke)).await;
    assert_eq!(status, 200, "{revoked}");
    assert_eq!(revoked["kind"], "subject");
    assert_eq!(revoked["value"], "sub:user-alice-contractor@corp");
    assert_eq!(
        revoked["revoked_serials"],
        json!([w.contractor_serial]),
        "her certificate, not alice's"
    );
    let (status, code, _) = refusal(w.certify("alice-contractor", &[]).await);
    assert_eq!((status, code.as_str()), (403, "revoked_identity"));
    let (status, answer) = w.call("alice-contractor", "/v1/requests", None).await;
    assert_eq!(
        (status, error_code(&answer)),
        (403, "revoked_identity"),
        "{answer}"
    );
    // alice, who shows the same display name, is not revoked.
    let still = w.certify("alice", &[]).await.unwrap();
    assert_eq!(still.principals, ["alice"]);
    let (status, listed) = w.call("alice", "/v1/requests", None).await;
    assert_eq!(status, 200, "{listed}");
    // A subject of no configured issuer is refused, saying the form.
    let bad = json!({"identity": "sub:user-alice@elsewhere", "reason": "x"});
    let (status, answer) = w.call("carol", "/v1/revocations", Some(bad)).await;
    assert_eq!(status, 400, "{answer}");
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("sub:<sub>@<issuer>"),
        "{answer}"
    );
    // The operator lifts it by the same spelling.
    let (status, _, err) = w.setup.cli(&[
        "unrevoke",
        "--identity",
        "sub:user-alice-contractor@corp",
        "--reason",
        "rehired",
    ]);
    assert!(status.success(), "{err}");
    w.certify("alice-contractor", &[]).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limit_one_person_exhausts_leaves_another_with_the_same_name_alone() {
    let idp = Idp::start();
    let setup = two_alices(&idp).rate_limit_per_identity(3).build();
    let ca = setup.start();
    // Tokens as the IdP issues them to each (users.json): their own sub,
    // and an address that makes each alice@corp.
    let list = |user: &'static str, email: &'static str| {
        let mut claims = idp.claims(user, "jit-ssh", None, now());
        claims["email"] = json!(email);
        let token = idp.sign("RS256", &claims);
        let ca = &ca;
        async move { ca.call("/v1/requests", Some(&token), None).await }
    };
    let contractor = || list("alice-contractor", "alice@contractor.example");
    for _ in 0..3 {
        let (status, answer) = contractor().await;
        assert_eq!(status, 200, "{answer}");
    }
    let (status, answer) = contractor().await;
    assert_eq!(
        (status, error_code(&answer)),
        (429, "rate_limited"),
        "{answer}"
    );
    let (status, answer) = list("alice", "alice@example.com").await;
    assert_eq!(
        status, 200,
        "the other alice@corp has a bucket of her own: {answer}"
    );
}
