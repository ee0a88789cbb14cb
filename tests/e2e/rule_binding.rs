//! End-to-end: an approval is bound to the rule it was approved under. The
//! real CA binary runs a policy directory the test rewrites (atomically:
//! write, then rename) and the CA reloads; bob asks for root, approvers from
//! the real test IdP approve, and then the rule is removed, renamed,
//! tightened or loosened, or bob leaves the group it requires. A grant
//! holds only while the rule still asks no more than when it was approved,
//! and the requester still matches it.

#![allow(clippy::unwrap_used, missing_docs)]

use std::time::Duration;

use ca_client::{nonce_for, CaClient};
use e2e::*;
use serde_json::{json, Value};
use ssh_key::PrivateKey;

/// A rule `name` that lets `group` ask for root, approved by `min` members
/// of `approvers` (quoted, comma-separated group names) from corp.
fn approval_rule(name: &str, group: &str, approvers: &str, min: u32) -> String {
    format!(
        r#"
[[rule]]
name = "{name}"
principals = ["root"]
max_ttl = "10m"
[rule.match]
issuer = ["corp"]
groups_any = ["{group}"]
[rule.approval]
approver_groups = [{approvers}]
approver_issuer = ["corp"]
min_approvals = {min}
max_window = "1h"
"#
    )
}

/// The policy: `name` lets sre ask for root, approved by `min` of sre-leads
/// (carol) and oncall (erin); contractors may ask for root too, approved by
/// security (nobody here).
fn policy(name: &str, min: u32) -> String {
    approval_rule(name, "sre", r#""sre-leads", "oncall""#, min)
        + &approval_rule("contractors-root", "contractors", r#""security""#, 1)
}

/// sre-root replaced by a rule of another name, whose approvers are
/// security: the principal is still guarded, by a rule nobody approved under.
fn replaced() -> String {
    approval_rule("root-by-security", "sre", r#""security""#, 1)
}

struct World {
    idp: Idp,
    setup: CaSetup,
    ca: Ca,
    client: CaClient,
}

impl World {
    /// A CA running `policy`, trusting the test IdP as `corp`.
    fn start(idp: Idp, policy: &str) -> World {
        let setup = CaSetup::builder()
            .issuer("corp", &idp.issuer)
            .policy(policy)
            .build();
        let ca = setup.start();
        let client = CaClient::new(&ca.url, None).unwrap();
        World {
            idp,
            setup,
            ca,
            client,
        }
    }

    async fn call(&self, user: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let token = self
            .idp
            .login(user, "jit-ssh", None)
            .await
            .unwrap()
            .id_token;
        self.ca.call(path, Some(&token), body).await
    }

    /// bob asks for root for half an hour; the request's id.
    async fn bob_asks(&self) -> u64 {
        let body = json!({"principals": ["root"], "reason": "INC-9", "window_seconds": 1800});
        let (status, created) = self.call("bob", "/v1/requests", Some(body)).await;
        assert_eq!(status, 200, "{created}");
        assert_eq!(created["status"], "pending");
        created["id"].as_u64().unwrap()
    }

    /// `approver` approves request `id`: the status and the answer.
    async fn approve(&self, approver: &str, id: u64) -> (u16, Value) {
        self.call(
            approver,
            &format!("/v1/requests/{id}/approve"),
            Some(json!({})),
        )
        .await
    }

    /// bob asks for root, and each of `approvers` approves.
    async fn approved(&self, approvers: &[&str]) -> u64 {
        let id = self.bob_asks().await;
        for approver in approvers {
            let (status, answer) = self.approve(approver, id).await;
            assert_eq!(status, 200, "{answer}");
        }
        id
    }

    /// Whether bob (signed in through the real IdP) is certified for root;
    /// anything but a policy refusal fails the test.
    async fn bob_gets_root(&self) -> bool {
        match self.idp.certify(&self.client, "bob", &["root"]).await {
            Ok(cert) => {
                assert_eq!(cert.principals, ["root"]);
                true
            }
            Err(refused) => {
                let (status, code, message) = refusal::<()>(Err(refused));
                assert_eq!(status, 403, "{message}");
                assert!(
                    ["approval_required", "denied"].contains(&code.as_str()),
                    "{code}: {message}"
                );
                false
            }
        }
    }

    /// Replaces the policy with `text` (written beside it, then renamed
    /// over it, as docs/policies.md asks) and waits until the CA reloads.
    fn rewrite(&self, text: &str) {
        let reloads = || {
            self.ca
                .process
                .stderr
                .text()
                .matches("policy reloaded")
                .count()
        };
        let before = reloads();
        let dir = &self.setup.policy_dir;
        std::fs::write(dir.join(".10-test.toml.new"), text).unwrap();
        std::fs::rename(dir.join(".10-test.toml.new"), dir.join("10-test.toml")).unwrap();
        eventually(Duration::from_secs(30), || {
            if reloads() > before {
                Ok(())
            } else {
                Err(format!(
                    "policy not reloaded\n{}",
                    self.ca.process.stderr.text()
                ))
            }
        });
    }

    /// `policy explain` of bob (with `groups`) asking for root, on the CA's
    /// database: its output.
    fn explain(&self, groups: &[&str]) -> String {
        let claims = json!({
            "iss": self.idp.issuer,
            "sub": "user-bob",
            "aud": "jit-ssh",
            "preferred_username": "bob",
            "email": "bob@example.com",
            "email_verified": true,
            "groups": groups,
        });
        let path = self.setup.dir.path().join("bob.json");
        std::fs::write(&path, claims.to_string()).unwrap();
        let (_, out, err) = self.ca_cli_explain(&path);
        format!("{out}{err}")
    }

    fn ca_cli_explain(&self, claims: &std::path::Path) -> (Option<i32>, String, String) {
        let (status, out, err) = run(
            std::process::Command::new(bin("jit-ssh-ca"))
                .args(["policy", "explain", "--config"])
                .arg(&self.setup.config_path)
                .arg("--claims")
                .arg(claims)
                .args(["--principal", "root"]),
            STARTUP,
        )
        .unwrap();
        (status.code(), out, err)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grant_ends_when_its_rule_is_removed() {
    // (a) removed: another rule now guards root, one nobody approved under.
    let w = World::start(Idp::start(), &policy("sre-root", 1));
    w.approved(&["carol"]).await;
    assert!(w.bob_gets_root().await, "approved under sre-root");
    w.rewrite(&replaced());
    assert!(!w.bob_gets_root().await, "sre-root is gone");
    let explained = w.explain(&["eng", "sre"]);
    assert!(
        explained.contains("no longer holds: rule sre-root, under which it was approved, is gone"),
        "{explained}"
    );
    // And with no rule for root at all, nothing either.
    w.rewrite(
        "[[rule]]\nname = \"eng-deploy\"\nprincipals = [\"deploy\"]\n[rule.match]\nissuer = [\"corp\"]\ngroups_any = [\"eng\"]\n",
    );
    assert!(!w.bob_gets_root().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grant_ends_when_its_rule_is_renamed() {
    // (b) renamed, every word of it unchanged otherwise: nothing.
    let w = World::start(Idp::start(), &policy("sre-root", 1));
    w.approved(&["carol"]).await;
    assert!(w.bob_gets_root().await);
    w.rewrite(&policy("sre-root-renamed", 1));
    assert!(!w.bob_gets_root().await, "sre-root is gone, renamed");
    // Back under its old name and terms, the grant is what it was.
    w.rewrite(&policy("sre-root", 1));
    assert!(w.bob_gets_root().await, "sre-root reads as it did");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tightened_rule_grants_nothing_until_approved_as_it_reads_now() {
    let w = World::start(Idp::start(), &policy("sre-root", 1));
    w.approved(&["carol"]).await;
    let pending = w.bob_asks().await;
    assert!(w.bob_gets_root().await);

    // (c) two approvals now: the grant by carol alone is worth nothing.
    w.rewrite(&policy("sre-root", 2));
    assert!(!w.bob_gets_root().await, "approved by one, two needed now");
    let explained = w.explain(&["eng", "sre"]);
    assert!(
        explained.contains(
            "rule tightened: rule sre-root now needs 2 approvals, 1 when it was approved"
        ),
        "{explained}"
    );
    // A request made under the old terms takes no approval now.
    let (status, answer) = w.approve("carol", pending).await;
    assert_eq!(status, 409, "{answer}");
    assert_eq!(answer["error"]["code"], "rules_changed", "{answer}");
    // A new request, approved by two as the rule now reads, grants again.
    let again = w.bob_asks().await;
    let (status, answer) = w.approve("carol", again).await;
    assert_eq!((status, answer["status"].as_str()), (200, Some("pending")));
    assert!(!w.bob_gets_root().await, "one of two approvals");
    let (status, answer) = w.approve("erin", again).await;
    assert_eq!((status, answer["status"].as_str()), (200, Some("approved")));
    assert!(w.bob_gets_root().await, "two approvals under the new rule");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_loosened_rule_keeps_the_grant() {
    // (d) approved by two, then one is enough: the grant holds.
    let w = World::start(Idp::start(), &policy("sre-root", 2));
    w.approved(&["carol", "erin"]).await;
    assert!(w.bob_gets_root().await);
    w.rewrite(&policy("sre-root", 1));
    assert!(w.bob_gets_root().await, "asks less than it did");
    let explained = w.explain(&["eng", "sre"]);
    assert!(
        explained.contains("approved access request 1: still holds for [\"root\"]"),
        "{explained}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_requester_who_leaves_the_rules_group_loses_the_grant() {
    let w = World::start(Idp::start(), &policy("sre-root", 1));
    w.approved(&["carol"]).await;
    // bob's token as the IdP signs it once his groups change (signed with
    // its real key: the test IdP's accounts are fixed).
    let bob_in = |groups: &[&str]| {
        let key = PrivateKey::random(&mut rand_core::OsRng, ssh_key::Algorithm::Ed25519).unwrap();
        let mut claims = w
            .idp
            .claims("bob", "jit-ssh", Some(&nonce_for(&key).unwrap()), now());
        claims["groups"] = json!(groups);
        (key, w.idp.sign("RS256", &claims))
    };
    let (key, token) = bob_in(&["eng", "sre"]);
    let cert = w
        .client
        .request_user_certificate(&token, &key, &["root".into()], None)
        .await
        .unwrap();
    assert_eq!(cert.principals, ["root"], "still in sre");

    // (e) bob leaves sre for contractors, whose rule guards root as well:
    // his approval under sre-root does not follow him there.
    let (key, token) = bob_in(&["eng", "contractors"]);
    let (status, code, message) = refusal(
        w.client
            .request_user_certificate(&token, &key, &["root".into()], None)
            .await,
    );
    assert_eq!(
        (status, code.as_str()),
        (403, "approval_required"),
        "{message}"
    );
    let explained = w.explain(&["eng", "contractors"]);
    assert!(
        explained.contains("no longer holds: the requester no longer matches rule sre-root"),
        "{explained}"
    );
}
