//! End-to-end: a revoked identity can do nothing at the CA until another
//! administrator lifts the revocation, identity revocations name identities
//! as the CA spells them, and a spent ID token reads nothing. Real tokens
//! from the real IdP, the real CA with its operator command line, and the
//! `jit-ssh` binary. bob asks for root; carol (sre-leads) approves and
//! administers; erin (on call) is a second administrator.

#![allow(clippy::unwrap_used, missing_docs)]

use e2e::client::ClientHome;
use e2e::*;
use serde_json::{json, Value};

/// erin, on call, administers too: someone other than carol to lift
/// carol's revocation.
const ONCALL_ADMINS: &str =
    "[[admin]]\nname = \"oncall-admins\"\n[admin.match]\ngroups_any = [\"oncall\"]\n";

const REVOKED: (u16, &str) = (403, "revoked_identity");

struct World {
    idp: Idp,
    setup: CaSetup,
    ca: Ca,
}

fn world() -> World {
    let idp = Idp::start();
    let setup = CaSetup::builder()
        .issuer("corp", &idp.issuer)
        .policy(BREAK_GLASS_POLICY)
        .policy_file("99-oncall-admins.toml", ONCALL_ADMINS)
        .build();
    let ca = setup.start();
    World { idp, setup, ca }
}

impl World {
    /// A fresh ID token of `user` from the real authorization-code flow.
    async fn token(&self, user: &str) -> String {
        self.idp
            .login(user, "jit-ssh", None)
            .await
            .unwrap_or_else(|e| panic!("login: {e}\n{}", self.idp.log()))
            .id_token
    }

    /// `path` called by `user` with a fresh token (GET without a body).
    async fn by(&self, user: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let token = self.token(user).await;
        self.ca.call(path, Some(&token), body).await
    }

    /// `user` asks for root (approved at once when `break_glass`); the id.
    async fn ask_root(&self, user: &str, break_glass: bool) -> u64 {
        let body = json!({"principals": ["root"], "reason": "INC-1", "break_glass": break_glass});
        let (status, created) = self.by(user, "/v1/requests", Some(body)).await;
        assert_eq!(status, 200, "{created}");
        created["id"].as_u64().unwrap()
    }

    /// `jit-ssh-ca ARGS` on the CA host: whether it succeeded, stdout, stderr.
    fn operator(&self, args: &[&str]) -> (bool, String, String) {
        let (status, out, err) = self.setup.cli(args);
        (status.success(), out, err)
    }

    /// Every call of `calls` by `user`, each with a fresh token, that was not
    /// answered `expected`: empty when all were.
    async fn not_answered(
        &self,
        user: &str,
        calls: Vec<(String, Option<Value>)>,
        expected: (u16, &str),
    ) -> Vec<String> {
        let mut wrong = Vec::new();
        for (path, body) in calls {
            let (status, answer) = self.by(user, &path, body).await;
            if (status, code(&answer)) != expected {
                wrong.push(format!("{path}: {status} {answer}"));
            }
        }
        wrong
    }

    /// The request `id` as `user` (an approver or its requester) lists it
    /// with `query`.
    async fn listed(&self, user: &str, query: &str, id: u64) -> Value {
        let (status, list) = self.by(user, &format!("/v1/requests{query}"), None).await;
        assert_eq!(status, 200, "{list}");
        list["requests"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["id"] == id)
            .cloned()
            .unwrap_or_else(|| panic!("request {id} not listed for {user}: {list}"))
    }
}

fn code(answer: &Value) -> &str {
    answer["error"]["code"].as_str().unwrap_or("")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_approver_and_admin_can_do_nothing_until_another_admin_lifts_it() {
    let w = world();
    let pending = w.ask_root("bob", false).await;
    let to_deny = w.ask_root("bob", false).await;
    let glass = w.ask_root("bob", true).await;

    // The operator revokes carol on the CA host.
    let (ok, out, err) = w.operator(&[
        "revoke",
        "--identity",
        "carol@corp",
        "--reason",
        "INC-5: account taken over",
    ]);
    assert!(ok, "{err}");
    assert!(out.contains("it can do nothing at the CA"), "{out}");

    // With fresh tokens, whatever she tries is refused as revoked: deciding,
    // reviewing, reading, revoking, and lifting her own revocation.
    let calls = vec![
        (format!("/v1/requests/{pending}/approve"), Some(json!({}))),
        (
            format!("/v1/requests/{to_deny}/deny"),
            Some(json!({"reason": "no"})),
        ),
        (
            format!("/v1/requests/{glass}/review"),
            Some(json!({"comment": "fine"})),
        ),
        ("/v1/requests".to_string(), None),
        ("/v1/requests?pending=true".to_string(), None),
        ("/v1/requests?needs_review=true".to_string(), None),
        (
            "/v1/revocations".to_string(),
            Some(json!({"identity": "bob@corp", "reason": "spite"})),
        ),
        (
            "/v1/revocations/lift".to_string(),
            Some(json!({"identity": "carol@corp", "reason": "it was me all along"})),
        ),
    ];
    let wrong = w.not_answered("carol", calls, REVOKED).await;
    assert!(
        wrong.is_empty(),
        "not refused as revoked:\n{}",
        wrong.join("\n")
    );

    // The client says so in one line, as a refusal (exit 6).
    let carol = ClientHome::new("carol", None);
    let approve = carol.run(&["--ca", &w.ca.url, "approve", &pending.to_string()]);
    assert_eq!(approve.code(), 6, "{}", approve.stderr);
    assert!(
        approve.stderr.contains("carol@corp is revoked"),
        "{}",
        approve.stderr
    );

    // Nothing changed.
    assert_eq!(w.listed("bob", "", pending).await["status"], "pending");
    assert_eq!(w.listed("bob", "", to_deny).await["status"], "pending");
    assert_eq!(w.listed("bob", "", glass).await["needs_review"], true);
    let by_carol: Vec<Value> = w
        .setup
        .audit(&[])
        .into_iter()
        .filter(|e| e["identity"] == "carol@corp" && e["event"] != "denied")
        .collect();
    assert!(by_carol.is_empty(), "{by_carol:?}");

    // Another administrator lifts it; carol acts again.
    let (status, lifted) = w
        .by(
            "erin",
            "/v1/revocations/lift",
            Some(json!({"identity": "carol@corp", "reason": "account recovered"})),
        )
        .await;
    assert_eq!(status, 200, "{lifted}");
    let (status, approved) = w
        .by(
            "carol",
            &format!("/v1/requests/{pending}/approve"),
            Some(json!({})),
        )
        .await;
    assert_eq!(status, 200, "{approved}");
    assert_eq!(approved["status"], "approved");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_requester_can_neither_ask_nor_end_nor_read() {
    let w = world();
    let glass = w.ask_root("bob", true).await;
    let open = w.ask_root("bob", false).await;

    // erin, an administrator, revokes bob over the API.
    let (status, body) = w
        .by(
            "erin",
            "/v1/revocations",
            Some(json!({"identity": "bob@corp", "reason": "left the company"})),
        )
        .await;
    assert_eq!(status, 200, "{body}");

    let calls = vec![
        (
            "/v1/requests".to_string(),
            Some(json!({"principals": ["root"], "reason": "INC-2"})),
        ),
        (format!("/v1/requests/{glass}/done"), Some(json!({}))),
        (format!("/v1/requests/{open}/done"), Some(json!({}))),
        ("/v1/requests".to_string(), None),
        ("/v1/requests?needs_review=true".to_string(), None),
    ];
    let wrong = w.not_answered("bob", calls, REVOKED).await;
    assert!(
        wrong.is_empty(),
        "not refused as revoked:\n{}",
        wrong.join("\n")
    );

    let bob = ClientHome::new("bob", None);
    let asked = bob.run(&[
        "--ca",
        &w.ca.url,
        "request",
        "--principal",
        "root",
        "--reason",
        "INC-3",
        "--no-wait",
    ]);
    assert_eq!(asked.code(), 6, "{}", asked.stderr);
    assert!(
        asked.stderr.contains("bob@corp is revoked"),
        "{}",
        asked.stderr
    );

    // Nothing changed: the open request still waits for carol, the
    // break-glass one is still approved and awaits review.
    assert_eq!(w.listed("carol", "", open).await["status"], "pending");
    let glass = w.listed("carol", "?needs_review=true", glass).await;
    assert_eq!(glass["status"], "approved");
    let requests = w
        .setup
        .audit(&[])
        .into_iter()
        .filter(|e| e["event"] == "request_created")
        .count();
    assert_eq!(requests, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity_revocations_name_an_identity_as_the_ca_spells_it() {
    let w = world();
    // A near miss (case, an email, an issuer URL or a name the CA does not
    // know) is refused with the spelling the CA uses, through the API and
    // on the CA host, for a revocation and for a lift.
    let near_misses = [
        ("Alice@corp", "did you mean alice@corp"),
        ("alice@CORP", "did you mean alice@corp"),
        ("alice@example.com", "names no configured issuer"),
        ("alice@nowhere", "names no configured issuer"),
        ("Alice Example@corp", "user@issuer"),
    ];
    for (identity, needle) in near_misses {
        for path in ["/v1/revocations", "/v1/revocations/lift"] {
            let (status, body) = w
                .by(
                    "carol",
                    path,
                    Some(json!({"identity": identity, "reason": "test"})),
                )
                .await;
            assert_eq!(
                (status, code(&body)),
                (400, "invalid_request"),
                "{identity}: {body}"
            );
            let message = body["error"]["message"].as_str().unwrap();
            assert!(message.contains(needle), "{identity}: {message}");
        }
        for verb in ["revoke", "unrevoke"] {
            let (ok, _, err) = w.operator(&[verb, "--identity", identity, "--reason", "test"]);
            assert!(!ok && err.contains(needle), "{verb} {identity}: {err}");
        }
    }
    let audit = w.setup.audit(&[]);
    assert!(
        !audit.iter().any(|e| e["event"] == "revoked"),
        "a near miss was recorded: {audit:?}"
    );

    // Spelled as the CA spells it, it works both ways.
    let (status, body) = w
        .by(
            "carol",
            "/v1/revocations",
            Some(json!({"identity": "alice@corp", "reason": "test"})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (ok, _, err) = w.operator(&["unrevoke", "--identity", "alice@corp", "--reason", "ok"]);
    assert!(ok, "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spent_token_reads_nothing_and_a_read_spends_nothing() {
    let w = world();
    let url = w.ca.url.clone();

    // bob's token is spent on his request; it lists nothing afterwards.
    let bob_token = w.token("bob").await;
    let body = json!({"principals": ["root"], "reason": "INC-1"});
    let (status, created) =
        w.ca.call("/v1/requests", Some(&bob_token), Some(body))
            .await;
    assert_eq!(status, 200, "{created}");
    let first = created["id"].as_u64().unwrap();
    for path in [
        "/v1/requests",
        "/v1/requests?pending=true",
        "/v1/requests?needs_review=true",
    ] {
        let (status, body) = w.ca.call(path, Some(&bob_token), None).await;
        assert_eq!(
            (status, code(&body)),
            (401, "replayed_token"),
            "{path}: {body}"
        );
    }

    // A read spends nothing: carol reads twice with one token, then decides
    // with it; then it reads nothing either.
    let carol_token = w.token("carol").await;
    for _ in 0..2 {
        let (status, body) = w.ca.call("/v1/requests", Some(&carol_token), None).await;
        assert_eq!(status, 200, "{body}");
    }
    let approve = format!("/v1/requests/{first}/approve");
    let (status, body) =
        w.ca.call(&approve, Some(&carol_token), Some(json!({})))
            .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = w.ca.call("/v1/requests", Some(&carol_token), None).await;
    assert_eq!((status, code(&body)), (401, "replayed_token"), "{body}");

    // The client with one given token: `requests`, then `approve`; the
    // token is then spent, and the next `requests` says so.
    let second = w.ask_root("bob", false).await;
    let carol = ClientHome::new("carol", None);
    let token_file = carol.home().join("carol.jwt");
    std::fs::write(&token_file, w.token("carol").await).unwrap();
    let given = ["--id-token-file", token_file.to_str().unwrap()];
    let run = |args: &[&str]| carol.run(&[&["--ca", url.as_str()], args, &given].concat());
    let listed = run(&["requests", "--pending", "--json"]).ok_json("carol requests");
    assert!(listed.as_array().unwrap().iter().any(|r| r["id"] == second));
    run(&["approve", &second.to_string(), "--json"]).ok_json("carol approve");
    let again = run(&["requests"]);
    assert_eq!(again.code(), 5, "{}", again.stderr);
    assert!(again.stderr.contains("already used"), "{}", again.stderr);

    // A given token pays for one call, so it cannot pay for a request and
    // the wait for its decision: refused before anything is asked.
    let bob = ClientHome::new("bob", None);
    let bob_file = bob.home().join("bob.jwt");
    std::fs::write(&bob_file, w.token("bob").await).unwrap();
    let bob_file = bob_file.to_str().unwrap();
    let request = [
        "--ca",
        url.as_str(),
        "request",
        "--principal",
        "root",
        "--reason",
        "INC-9",
    ];
    let waiting = bob.run(&[&request[..], &["--id-token-file", bob_file]].concat());
    assert_eq!(waiting.code(), 1, "{}", waiting.stderr);
    assert!(waiting.stderr.contains("--no-wait"), "{}", waiting.stderr);
    let created = bob
        .run(
            &[
                &request[..],
                &["--id-token-file", bob_file, "--no-wait", "--json"],
            ]
            .concat(),
        )
        .ok_json("bob request --no-wait");
    assert_eq!(created["status"], "pending");
    let asked = w
        .setup
        .audit(&[])
        .into_iter()
        .filter(|e| e["event"] == "request_created")
        .count();
    assert_eq!(asked, 3, "the refused wait asked nothing");
}
