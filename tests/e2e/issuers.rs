//! End-to-end: one CA trusting two identity providers, `corp` and `ci`, two
//! processes of the real test IdP. Both know the same people in the same
//! groups, as a CI issuer whose groups claim its users control could claim
//! them. A policy that reads groups, or makes admins or approvers, without
//! saying whose is refused by `policy check`, at start-up and on reload,
//! with file:line:column and the line to write; a policy that names `corp`
//! gives `ci`'s tokens nothing it means for `corp`'s groups: no principal,
//! no admin rights, no approval or review, no auto-approval.

#![allow(clippy::unwrap_used, missing_docs)]

use std::path::PathBuf;
use std::time::Duration;

use ca_client::{nonce_for, CaClient, ClientError};
use e2e::*;
use serde_json::{json, Value};
use ssh_key::PrivateKey;

/// A policy written while the CA trusted one issuer: it names none.
const UNNAMED: &str = r#"[[rule]]
name = "sre-deploy"
principals = ["deploy"]
[rule.match]
groups_any = ["sre"]

[[rule]]
name = "sre-root"
principals = ["root"]
max_ttl = "10m"
[rule.approval]
approver_groups = ["sre-leads"]
reason_required = false
[rule.approval.auto]
groups = ["oncall"]
[rule.match]
issuer = ["corp", "ci"]
groups_any = ["sre"]

[[admin]]
name = "leads"
[admin.match]
groups_any = ["sre-leads"]
"#;

/// The same policy saying whose groups it means: `corp`'s, except that
/// `ci`'s sre may ask for root too (and wait for a corp lead).
const NAMED: &str = r#"[[rule]]
name = "sre-deploy"
principals = ["deploy"]
[rule.match]
issuer = ["corp"]
groups_any = ["sre"]

[[rule]]
name = "sre-root"
principals = ["root"]
max_ttl = "10m"
[rule.approval]
approver_groups = ["sre-leads"]
approver_issuer = ["corp"]
reason_required = false
break_glass = true
[rule.approval.auto]
issuer = ["corp"]
groups = ["oncall"]
[rule.match]
issuer = ["corp", "ci"]
groups_any = ["sre"]

[[admin]]
name = "leads"
[admin.match]
issuer = ["corp"]
groups_any = ["sre-leads"]
"#;

/// The diagnostics `UNNAMED` gets from a CA trusting corp and ci, in the
/// order the loader reports them, for the file at `path`.
fn unnamed_diagnostics(path: &str) -> Vec<String> {
    let trusts = "and this CA trusts 2 issuers (corp, ci)";
    vec![
        format!("{path}:5:14: [rule.match] names no issuer, {trusts}: groups_any would hold for a token of any of them. Add `issuer = [\"corp\"]` to [rule.match], listing every issuer whose groups count here"),
        format!("{path}:12:19: approval.approver_groups names no issuer, {trusts}: a member of these groups by a token of any of them could approve. Add `approver_issuer = [\"corp\"]` to [rule.approval], listing the issuers whose groups approve"),
        format!("{path}:15:10: approval.auto.groups names no issuer, {trusts}: a requester in these groups by a token of any of them would be approved at once. Add `issuer = [\"corp\"]` to [rule.approval.auto], listing the issuers whose groups are approved"),
        format!("{path}:23:14: [admin.match] names no issuer, {trusts}: groups_any would hold for a token of any of them. Add `issuer = [\"corp\"]` to [admin.match], listing every issuer whose groups count here"),
    ]
}

fn two_issuers(corp: &Idp, ci: &Idp, policy: &str) -> CaSetup {
    CaSetup::builder()
        .issuer("corp", &corp.issuer)
        .issuer("ci", &ci.issuer)
        .policy(policy)
        .build()
}

fn policy_file(setup: &CaSetup) -> PathBuf {
    setup.policy_dir.join("10-test.toml")
}

#[test]
fn a_policy_naming_no_issuer_is_refused_with_two_issuers_at_check_start_and_reload() {
    let corp = Idp::start();
    let ci = Idp::start();
    let setup = two_issuers(&corp, &ci, UNNAMED);
    let path = policy_file(&setup).display().to_string();

    let (status, out, err) = setup.cli(&["policy", "check"]);
    assert_eq!(
        status.code(),
        Some(1),
        "policy check accepted it:\n{out}{err}"
    );
    let mut expected: Vec<String> = unnamed_diagnostics(&path)
        .into_iter()
        .map(|d| format!("error: {d}"))
        .collect();
    expected.push("4 error(s); the CA would refuse this policy".into());
    assert_eq!(err.lines().collect::<Vec<_>>(), expected);

    let refused = setup.expect_start_failure();
    for diagnostic in unnamed_diagnostics(&path) {
        assert!(
            refused.contains(&diagnostic),
            "{diagnostic:?} not in\n{refused}"
        );
    }

    // The same policy, each group naming its issuer, loads; an edit back to
    // the unnamed form is refused and the named policy stays in force.
    std::fs::write(policy_file(&setup), NAMED).unwrap();
    let (status, out, err) = setup.cli(&["policy", "check"]);
    assert!(status.success(), "{out}{err}");
    let ca = setup.start();
    std::fs::write(policy_file(&setup), UNNAMED).unwrap();
    ca.process
        .stderr
        .wait_for("policy reload refused", Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("reload not refused: {e}\n{}", ca.process.stderr.text()));
    let log = ca.process.stderr.text();
    for diagnostic in unnamed_diagnostics(&path) {
        assert!(log.contains(&diagnostic), "{diagnostic:?} not in\n{log}");
    }
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let world = World::new(&ca, &corp, &ci);
        let (status, _) = world.admin_revocation(Party::Ci, "carol", "bob@corp").await;
        assert_eq!(status, 403, "the refused edit made ci's sre-leads admins");
    });

    // One issuer: the unnamed policy loads as it always did.
    let one = CaSetup::builder()
        .issuer("corp", &corp.issuer)
        .policy(UNNAMED)
        .build();
    let (status, out, err) = one.cli(&["policy", "check"]);
    assert!(status.success(), "{out}{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_issuers_token_satisfies_none_of_the_first_issuers_group_rules() {
    let corp = Idp::start();
    let ci = Idp::start();
    let setup = two_issuers(&corp, &ci, NAMED);
    let ca = setup.start();
    let world = World::new(&ca, &corp, &ci);

    // The group condition: bob is in sre at both providers; only corp's
    // sre gets deploy.
    let issued = world.certify(Party::Corp, "bob", "deploy").await.unwrap();
    assert_eq!(issued.principals, ["deploy"]);
    let (status, code, message) = refusal(world.certify(Party::Ci, "bob", "deploy").await);
    assert_eq!((status, code.as_str()), (403, "denied"), "{message}");
    assert!(message.contains("no rule grants it"), "{message}");

    // Auto-approval: erin is on call at both; corp's request is approved by
    // the policy at once, ci's (whose sre may ask) waits for a corp lead.
    let (status, auto) = world.request_root(Party::Corp, "erin", false).await;
    assert_eq!(status, 200, "{auto}");
    assert_eq!(auto["status"], "approved", "{auto}");
    assert_eq!(auto["approvals"][0]["approver"], "policy:sre-root");
    let (status, waiting) = world.request_root(Party::Ci, "erin", false).await;
    assert_eq!(status, 200, "{waiting}");
    assert_eq!(waiting["status"], "pending", "{waiting}");
    let id = waiting["id"].as_u64().unwrap();

    // Approvers: carol leads sre at both; ci's carol is no approver, and her
    // attempt changes nothing; corp's carol approves.
    let (status, body) = world.decide(Party::Ci, "carol", id, "approve").await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("not_approver")),
        "{body}"
    );
    let (status, body) = world.decide(Party::Corp, "carol", id, "approve").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "approved");
    assert_eq!(body["approvals"].as_array().unwrap().len(), 1, "{body}");
    assert_eq!(body["approvals"][0]["approver"], "carol@corp");

    // Reviewers of a break-glass request: ci's carol is neither approver nor
    // admin; corp's carol reviews it.
    let (status, glass) = world.request_root(Party::Corp, "bob", true).await;
    assert_eq!(status, 200, "{glass}");
    assert_eq!(glass["needs_review"], true, "{glass}");
    let id = glass["id"].as_u64().unwrap();
    let (status, body) = world.decide(Party::Ci, "carol", id, "review").await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("not_reviewer")),
        "{body}"
    );
    let (status, body) = world.decide(Party::Corp, "carol", id, "review").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["reviewed_by"], "carol@corp");

    // The admin rule: ci's carol may not ban an identity; corp's carol may.
    let (status, body) = world.admin_revocation(Party::Ci, "carol", "bob@corp").await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("not_admin")),
        "{body}"
    );
    let (status, body) = world.admin_revocation(Party::Corp, "carol", "bob@ci").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["value"], "bob@ci");
}

/// Which provider a person signs in at.
#[derive(Clone, Copy)]
enum Party {
    Corp,
    Ci,
}

/// The running CA and both providers, for calls that sign in afresh each
/// time (every call spends its token).
struct World<'a> {
    ca: &'a Ca,
    corp: &'a Idp,
    ci: &'a Idp,
}

impl<'a> World<'a> {
    fn new(ca: &'a Ca, corp: &'a Idp, ci: &'a Idp) -> World<'a> {
        World { ca, corp, ci }
    }

    fn idp(&self, party: Party) -> &Idp {
        match party {
            Party::Corp => self.corp,
            Party::Ci => self.ci,
        }
    }

    async fn token(&self, party: Party, user: &str, nonce: Option<&str>) -> String {
        let idp = self.idp(party);
        idp.login(user, "jit-ssh", nonce)
            .await
            .unwrap_or_else(|e| panic!("login {user}: {e}\n{}", idp.log()))
            .id_token
    }

    /// A certificate for a fresh key, asking for `principal`.
    async fn certify(
        &self,
        party: Party,
        user: &str,
        principal: &str,
    ) -> Result<ca_proto::UserCertResponse, ClientError> {
        let key = PrivateKey::random(&mut rand_core::OsRng, ssh_key::Algorithm::Ed25519).unwrap();
        let token = self
            .token(party, user, Some(&nonce_for(&key).unwrap()))
            .await;
        CaClient::new(&self.ca.url, None)
            .unwrap()
            .request_user_certificate(&token, &key, &[principal.to_string()], None)
            .await
    }

    async fn post(&self, party: Party, user: &str, path: &str, body: Value) -> (u16, Value) {
        let token = self.token(party, user, None).await;
        let response = http_client()
            .post(format!("{}{path}", self.ca.url))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// `POST /v1/requests` for root.
    async fn request_root(&self, party: Party, user: &str, break_glass: bool) -> (u16, Value) {
        let body = json!({"principals": ["root"], "reason": "INC-8", "break_glass": break_glass});
        self.post(party, user, "/v1/requests", body).await
    }

    /// `POST /v1/requests/{id}/{verb}`.
    async fn decide(&self, party: Party, user: &str, id: u64, verb: &str) -> (u16, Value) {
        let path = format!("/v1/requests/{id}/{verb}");
        self.post(party, user, &path, json!({})).await
    }

    /// `POST /v1/revocations` banning `identity`.
    async fn admin_revocation(&self, party: Party, user: &str, identity: &str) -> (u16, Value) {
        let body = json!({"identity": identity, "reason": "test"});
        self.post(party, user, "/v1/revocations", body).await
    }
}
