//! End-to-end access requests: the `jit-ssh` client binary for every person
//! (bob asks, alice and bob are refused as approvers, carol approves), the
//! real IdP, the real CA running the shipped policies (root needs approval by
//! sre-leads), a real ssh-agent, and a real `sshd` with `RevokedKeys` fed by
//! `jit-ssh host sync-krl` as the judge. Every wait is bounded.

#![allow(clippy::unwrap_used, missing_docs)]

use std::path::Path;
use std::time::Duration;

use e2e::client::{ClientHome, Outcome};
use e2e::openssh::SshAgent;
use e2e::*;
use serde_json::Value;

/// The host's KRL timer: pulls the CA's KRL into `out`, which must work.
fn sync_krl(ca_url: &str, out: &Path) {
    let (ok, _, stderr) = e2e::client::sync_krl(ca_url, out, &[]);
    assert!(ok, "sync-krl: {stderr}");
}

fn refused(outcome: &Outcome, needle: &str) {
    assert_eq!(
        outcome.code(),
        6,
        "expected a refusal (exit 6):\nstdout: {}\nstderr: {}",
        outcome.stdout,
        outcome.stderr
    );
    assert!(
        outcome.stderr.contains(needle),
        "stderr lacks {needle:?}: {}",
        outcome.stderr
    );
}

fn principals(issued: &Value) -> Vec<String> {
    issued["principals"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap().to_string())
        .collect()
}

#[test]
fn bob_gets_root_after_carols_approval_until_he_is_done() {
    let idp = Idp::start();
    let setup = CaSetup::builder()
        .issuer("corp", &idp.issuer)
        .shipped_policies()
        .build();
    let ca = setup.start();
    let url = ca.url.as_str();
    let dir = tempfile::tempdir().unwrap();
    let krl = dir.path().join("jit-ssh.krl");
    sync_krl(url, &krl);
    // The host lets in only root's principal, and refuses what the KRL lists.
    let sshd = Sshd::start_with(
        &ca.user_ca_keys(),
        &["root"],
        &format!("RevokedKeys {}", krl.display()),
    );

    let agent = SshAgent::start();
    let bob = ClientHome::new("bob", Some(&agent));
    let alice = ClientHome::new("alice", None);
    let carol = ClientHome::new("carol", None);

    // Without a request bob gets his usual principals, and no root.
    let first = bob
        .run(&["--ca", url, "login", "--json"])
        .ok_json("bob login");
    assert_eq!(principals(&first), ["bob", "deploy"]);
    assert!(
        !sshd.login_with_agent(&agent.socket).0,
        "root without approval"
    );

    // bob asks (authenticated by his stored sign-in session, no browser).
    let created = bob
        .run(&[
            "--ca",
            url,
            "request",
            "--principal",
            "root",
            "--reason",
            "INC-1234: disk full",
            "--for",
            "30m",
            "--no-wait",
            "--json",
        ])
        .ok_json("bob request");
    assert_eq!(
        bob.browser_runs(),
        1,
        "the session's refresh token, no browser"
    );
    assert_eq!(created["status"], "pending");
    assert_eq!(created["window_seconds"], 1800);
    let id = created["id"].as_u64().unwrap().to_string();

    // alice is no approver; bob cannot approve his own request.
    refused(
        &alice.run(&["--ca", url, "approve", &id]),
        "not an approver",
    );
    refused(
        &bob.run(&["--ca", url, "approve", &id]),
        "cannot decide your own",
    );
    // Asking for root before it is approved says it needs an approval, and
    // how to ask for one.
    let refused_root = bob.run(&["--ca", url, "login", "--principal", "root", "--json"]);
    refused(
        &refused_root,
        "jit-ssh request --principal root --reason \"...\"",
    );
    assert!(
        refused_root.stderr.contains("approval required"),
        "{}",
        refused_root.stderr
    );

    // carol (sre-leads) sees it among those she may decide, and approves.
    let pending = carol
        .run(&["--ca", url, "requests", "--pending", "--json"])
        .ok_json("carol requests");
    assert!(
        pending
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["id"].as_u64().map(|n| n.to_string()) == Some(id.clone())),
        "{pending}"
    );
    let approved = carol
        .run(&[
            "--ca",
            url,
            "approve",
            &id,
            "--comment",
            "go ahead",
            "--json",
        ])
        .ok_json("carol approve");
    assert_eq!(approved["status"], "approved");
    assert_eq!(approved["approvals"][0]["approver"], "carol@corp");
    let window_end = approved["window_end"].as_u64().unwrap();
    // Deciding it again is refused.
    refused(
        &carol.run(&["--ca", url, "deny", &id, "--reason", "changed my mind"]),
        "not pending",
    );

    // bob's next login carries root, minute-scale and inside the window,
    // and a real sshd lets him in as root's principal.
    let elevated = bob
        .run(&["--ca", url, "login", "--json"])
        .ok_json("bob login");
    assert_eq!(principals(&elevated), ["bob", "deploy", "root"]);
    let valid_before = elevated["valid_before"].as_u64().unwrap();
    assert!(valid_before <= window_end);
    assert!(valid_before - elevated["valid_after"].as_u64().unwrap() <= 15 * 60);
    let (ok_root, err) = sshd.login_with_agent(&agent.socket);
    assert!(ok_root, "ssh as root's principal: {err}\n{}", sshd.log());

    // done: the certificate issued under the request is revoked, the host
    // pulls the KRL and refuses it, and new logins lack root.
    let done = bob
        .run(&["--ca", url, "done", &id, "--json"])
        .ok_json("bob done");
    assert_eq!(done["status"], "ended");
    assert_eq!(
        done["revoked_serials"],
        serde_json::json!([elevated["serial"].as_str().unwrap()])
    );
    sync_krl(url, &krl);
    let (ok_root, _) = sshd.login_with_agent(&agent.socket);
    assert!(!ok_root, "sshd accepted a certificate of an ended request");
    assert!(sshd.log().contains("revoked"), "{}", sshd.log());
    let after = bob
        .run(&["--ca", url, "login", "--json"])
        .ok_json("bob login");
    assert_eq!(principals(&after), ["bob", "deploy"]);
    assert!(!sshd.login_with_agent(&agent.socket).0);

    // Every step is in the audit log.
    let events: Vec<String> = setup
        .audit(&[])
        .iter()
        .map(|e| e["event"].as_str().unwrap().to_string())
        .filter(|e| e.starts_with("request_"))
        .collect();
    assert_eq!(
        events,
        ["request_created", "request_approved", "request_ended"]
    );
}

#[test]
fn an_undecided_request_expires_and_can_no_longer_be_approved() {
    let idp = Idp::start();
    let setup = CaSetup::builder()
        .issuer("corp", &idp.issuer)
        .shipped_policies()
        .access_request_pending("3s")
        .build();
    let ca = setup.start();
    let url = ca.url.as_str();
    let bob = ClientHome::new("bob", None);
    let carol = ClientHome::new("carol", None);
    bob.run(&["--ca", url, "login", "--no-agent", "--json"])
        .ok_json("bob login");

    // bob waits (spinner, polling) until nobody has decided in time.
    let waited = bob.run(&[
        "--ca",
        url,
        "request",
        "--principal",
        "root",
        "--reason",
        "INC-9: nobody around",
        "--wait",
        "60s",
        "--json",
    ]);
    refused(&waited, "was expired");
    let expired = waited.json();
    assert_eq!(expired["status"], "expired");
    let id = expired["id"].as_u64().unwrap().to_string();

    // carol is an approver, but too late.
    refused(
        &carol.run(&["--ca", url, "approve", &id]),
        "is expired, not pending",
    );
    let mine = bob
        .run(&["--ca", url, "requests", "--json"])
        .ok_json("bob requests");
    assert_eq!(mine[0]["status"], "expired", "{mine}");
    // Expired requests grant nothing.
    let login = bob
        .run(&["--ca", url, "login", "--no-agent", "--json"])
        .ok_json("bob login");
    assert_eq!(principals(&login), ["bob", "deploy"]);
}

#[test]
fn a_waiting_request_returns_when_approved_and_an_admin_can_end_it() {
    let idp = Idp::start();
    let setup = CaSetup::builder()
        .issuer("corp", &idp.issuer)
        .shipped_policies()
        .build();
    let ca = setup.start();
    let url = ca.url.clone();
    let bob = ClientHome::new("bob", None);
    let carol = ClientHome::new("carol", None);
    bob.run(&["--ca", &url, "login", "--no-agent", "--json"])
        .ok_json("bob login");

    // bob waits in the background; carol finds the request and approves it.
    let waiting = std::thread::scope(|scope| {
        let waiter = scope.spawn(|| {
            bob.run(&[
                "--ca",
                &url,
                "request",
                "--principal",
                "root",
                "--reason",
                "INC-5: deploy stuck",
                "--wait",
                "60s",
                "--json",
            ])
        });
        let id = eventually(Duration::from_secs(30), || {
            let pending = carol
                .run(&["--ca", &url, "requests", "--pending", "--json"])
                .ok_json("carol requests");
            match pending.as_array().unwrap().first() {
                Some(first) => Ok(first["id"].as_u64().unwrap().to_string()),
                None => Err(format!(
                    "bob's request not yet pending for carol: {pending}"
                )),
            }
        });
        carol
            .run(&["--ca", &url, "approve", &id, "--json"])
            .ok_json("approve");
        waiter.join().unwrap()
    });
    let approved = waiting.ok_json("bob's waiting request");
    assert_eq!(approved["status"], "approved");
    let id = approved["id"].as_u64().unwrap().to_string();

    // `policy explain` reads the approvals the server holds, and agrees.
    let claims = setup.dir.path().join("bob-claims.json");
    std::fs::write(
        &claims,
        serde_json::json!({"iss": idp.issuer, "sub": "user-bob", "preferred_username": "bob", "groups": ["eng", "sre"]})
            .to_string(),
    )
    .unwrap();
    let explain = || {
        setup.cli(&[
            "policy",
            "explain",
            "--claims",
            claims.to_str().unwrap(),
            "--principal",
            "root",
        ])
    };
    let (status, out, err) = explain();
    assert!(status.success(), "{out}\n{err}");
    assert!(out.contains("decision: ALLOW\nprincipals: root\n"), "{out}");
    assert!(
        out.contains(&format!("approvals held: request {id} (root) until ")),
        "{out}"
    );

    // carol is an administrator ([[admin]] sre-leads): she may end it too.
    let ended = carol
        .run(&[
            "--ca",
            &url,
            "done",
            &id,
            "--reason",
            "incident closed",
            "--json",
        ])
        .ok_json("carol done");
    assert_eq!(ended["status"], "ended");
    assert_eq!(ended["closed_by"], "carol@corp");
    let (status, out, _) = explain();
    assert_eq!(status.code(), Some(3), "{out}");
    assert!(out.contains("approvals held: none"), "{out}");
    let login = bob
        .run(&["--ca", &url, "login", "--no-agent", "--json"])
        .ok_json("bob login");
    assert_eq!(principals(&login), ["bob", "deploy"]);
}

#[test]
fn bob_breaks_the_glass_and_carol_reviews_it_once() {
    let idp = Idp::start();
    let setup = CaSetup::builder()
        .issuer("corp", &idp.issuer)
        .policy(BREAK_GLASS_POLICY)
        .build();
    let ca = setup.start();
    let url = ca.url.as_str();
    let bob = ClientHome::new("bob", None);
    let alice = ClientHome::new("alice", None);
    let carol = ClientHome::new("carol", None);
    let root_request = |extra: &[&str]| {
        let mut args = vec!["--ca", url, "request", "--principal", "root", "--json"];
        args.extend_from_slice(extra);
        bob.run(&args)
    };

    // The reason is mandatory for break-glass even where the rule needs none.
    let no_reason = root_request(&["--break-glass"]);
    assert_eq!(no_reason.code(), 1, "{}", no_reason.stderr);
    assert!(
        no_reason
            .stderr
            .contains("break-glass request needs a reason"),
        "{}",
        no_reason.stderr
    );

    let glass = root_request(&[
        "--break-glass",
        "--reason",
        "INC-99: site down, nobody awake",
    ]);
    let created = glass.ok_json("bob break-glass");
    assert_eq!(created["status"], "approved");
    assert_eq!(created["break_glass"], true);
    assert_eq!(created["needs_review"], true);
    assert_eq!(created["approvals"][0]["approver"], "bob@corp");
    assert!(glass.stderr.contains("BREAK-GLASS"), "{}", glass.stderr);
    let id = created["id"].as_u64().unwrap().to_string();
    // The CA log says it loudly, at WARN (the log is written in batches, so
    // the line may follow the answer by a moment).
    let line = ca
        .process
        .stderr
        .wait_for("BREAK-GLASS", Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("{e}\n{}", ca.process.stderr.text()));
    assert!(line.contains("WARN"), "{line}");

    // The window is open at once.
    let login = bob
        .run(&["--ca", url, "login", "--no-agent", "--json"])
        .ok_json("bob login");
    assert_eq!(principals(&login), ["bob", "root"]);

    // carol (approver and admin) sees it awaiting review; alice and bob do not.
    let listed = carol
        .run(&["--ca", url, "requests", "--needs-review", "--json"])
        .ok_json("carol needs-review");
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");
    assert_eq!(listed[0]["id"].as_u64().unwrap().to_string(), id);
    for (who, home) in [("alice", &alice), ("bob", &bob)] {
        let theirs = home
            .run(&["--ca", url, "requests", "--needs-review", "--json"])
            .ok_json(who);
        assert_eq!(theirs, serde_json::json!([]), "{who}");
    }
    refused(
        &bob.run(&["--ca", url, "review", &id]),
        "cannot review your own break-glass",
    );
    refused(
        &alice.run(&["--ca", url, "review", &id]),
        "may not review access request",
    );
    let reviewed = carol
        .run(&[
            "--ca",
            url,
            "review",
            &id,
            "--comment",
            "justified: INC-99",
            "--json",
        ])
        .ok_json("carol review");
    assert_eq!(reviewed["reviewed_by"], "carol@corp");
    assert_eq!(reviewed["review_comment"], "justified: INC-99");
    assert!(reviewed.get("needs_review").is_none(), "{reviewed}");
    refused(
        &carol.run(&["--ca", url, "review", &id]),
        "already reviewed by carol@corp",
    );
    let listed = carol
        .run(&["--ca", url, "requests", "--needs-review", "--json"])
        .ok_json("carol needs-review");
    assert_eq!(listed, serde_json::json!([]));

    let events: Vec<(String, String)> = setup
        .audit(&[])
        .iter()
        .filter(|e| e["event"].as_str().unwrap().starts_with("request_"))
        .map(|e| {
            (
                e["event"].as_str().unwrap().to_string(),
                e["identity"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        events,
        [
            ("request_created".to_string(), "bob@corp".to_string()),
            ("request_break_glass".into(), "bob@corp".into()),
            ("request_reviewed".into(), "carol@corp".into()),
        ]
    );
}

#[test]
fn erin_on_call_is_approved_by_the_policy_and_bob_still_waits() {
    let idp = Idp::start();
    let setup = CaSetup::builder()
        .issuer("corp", &idp.issuer)
        .policy(BREAK_GLASS_POLICY)
        .build();
    let ca = setup.start();
    let url = ca.url.as_str();
    let erin = ClientHome::new("erin", None);
    let bob = ClientHome::new("bob", None);

    let auto = erin
        .run(&[
            "--ca",
            url,
            "request",
            "--principal",
            "root",
            "--reason",
            "INC-7: pager",
            "--json",
        ])
        .ok_json("erin request");
    assert_eq!(auto["status"], "approved");
    assert_eq!(auto["approvals"][0]["approver"], "policy:sre-root");
    assert!(auto.get("break_glass").is_none(), "{auto}");
    let login = erin
        .run(&["--ca", url, "login", "--no-agent", "--json"])
        .ok_json("erin login");
    assert_eq!(principals(&login), ["erin", "root"]);

    // bob is not on call: his request waits for an approver.
    let pending = bob
        .run(&[
            "--ca",
            url,
            "request",
            "--principal",
            "root",
            "--no-wait",
            "--json",
        ])
        .ok_json("bob request");
    assert_eq!(pending["status"], "pending");
    let approved: Vec<String> = setup
        .audit(&[])
        .iter()
        .filter(|e| e["event"] == "request_approved")
        .map(|e| e["identity"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(approved, ["policy:sre-root"]);
}

fn rfc3339(unix: u64) -> String {
    jiff::Timestamp::from_second(unix as i64)
        .unwrap()
        .to_string()
}

#[test]
fn a_scheduled_window_opens_at_its_start() {
    let idp = Idp::start();
    let setup = CaSetup::builder()
        .issuer("corp", &idp.issuer)
        .shipped_policies()
        .build();
    let ca = setup.start();
    let url = ca.url.as_str();
    let bob = ClientHome::new("bob", None);
    let carol = ClientHome::new("carol", None);
    bob.run(&["--ca", url, "login", "--no-agent", "--json"])
        .ok_json("bob login");
    let ask = |start: &str| {
        bob.run(&[
            "--ca",
            url,
            "request",
            "--principal",
            "root",
            "--reason",
            "CHG-42: kernel upgrade",
            "--for",
            "5m",
            "--start",
            start,
            "--no-wait",
            "--json",
        ])
    };
    for (start, needle) in [
        (rfc3339(now() - 300), "is in the past"),
        (rfc3339(now() + 8 * 86_400), "more than 7 days ahead"),
        ("tomorrow".to_string(), "not an RFC 3339 time"),
    ] {
        let refused = ask(&start);
        assert_eq!(refused.code(), 1, "{start}: {}", refused.stderr);
        assert!(refused.stderr.contains(needle), "{}", refused.stderr);
    }

    let start = now() + 6;
    let created = ask(&rfc3339(start)).ok_json("bob scheduled request");
    assert_eq!(created["status"], "pending");
    assert_eq!(created["starts_at"], start);
    let id = created["id"].as_u64().unwrap().to_string();
    let approved = carol
        .run(&["--ca", url, "approve", &id, "--json"])
        .ok_json("carol approve");
    assert_eq!(approved["status"], "approved");
    assert_eq!(approved["window_start"], start, "opens at its start");
    let window_end = approved["window_end"].as_u64().unwrap();
    assert_eq!(window_end, start + 300);

    // Approved, but not yet open: no root.
    let early = bob
        .run(&["--ca", url, "login", "--no-agent", "--json"])
        .ok_json("bob early login");
    assert!(
        now() < start,
        "the test machine was too slow to check early"
    );
    assert_eq!(principals(&early), ["bob", "deploy"]);

    // Waits, on purpose, for the clock to reach the window's start.
    eventually(Duration::from_secs(20), || {
        let now = now();
        if now >= start {
            Ok(())
        } else {
            Err(format!("now {now}, the window starts at {start}"))
        }
    });
    let open = bob
        .run(&["--ca", url, "login", "--no-agent", "--json"])
        .ok_json("bob login in the window");
    assert_eq!(principals(&open), ["bob", "deploy", "root"]);
    assert!(open["valid_before"].as_u64().unwrap() <= window_end);
}

#[test]
fn a_window_from_first_use_opens_at_login_and_an_unused_one_lapses() {
    let idp = Idp::start();
    let setup = CaSetup::builder()
        .issuer("corp", &idp.issuer)
        .shipped_policies()
        .access_request_pending("8s")
        .build();
    let ca = setup.start();
    let url = ca.url.as_str();
    let bob = ClientHome::new("bob", None);
    let carol = ClientHome::new("carol", None);
    bob.run(&["--ca", url, "login", "--no-agent", "--json"])
        .ok_json("bob login");
    // carol signs in once, so that approving later takes no browser.
    carol
        .run(&["--ca", url, "requests", "--json"])
        .ok_json("carol");
    let request_and_approve = || {
        let created = bob
            .run(&[
                "--ca",
                url,
                "request",
                "--principal",
                "root",
                "--reason",
                "INC-7: later tonight",
                "--for",
                "2m",
                "--from-first-use",
                "--no-wait",
                "--json",
            ])
            .ok_json("bob request");
        assert_eq!(created["from_first_use"], true);
        let id = created["id"].as_u64().unwrap().to_string();
        let approved = carol
            .run(&["--ca", url, "approve", &id, "--json"])
            .ok_json("carol approve");
        assert_eq!(approved["status"], "approved");
        assert!(approved.get("window_start").is_none(), "{approved}");
        id
    };

    let id = request_and_approve();
    let first = bob
        .run(&["--ca", url, "login", "--no-agent", "--json"])
        .ok_json("bob first use");
    assert_eq!(principals(&first), ["bob", "deploy", "root"]);
    let mine = bob
        .run(&["--ca", url, "requests", "--json"])
        .ok_json("requests");
    let used = mine
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"].as_u64().unwrap().to_string() == id)
        .unwrap();
    let start = used["window_start"].as_u64().expect("opened by the login");
    assert_eq!(used["window_end"].as_u64().unwrap(), start + 120);
    assert!(first["valid_before"].as_u64().unwrap() <= start + 120);
    // It is an ordinary open window now: done ends it.
    bob.run(&["--ca", url, "done", &id, "--json"])
        .ok_json("bob done");

    // Approved and never used: it lapses after the pending time.
    let unused = request_and_approve();
    eventually(Duration::from_secs(30), || {
        let mine = bob
            .run(&["--ca", url, "requests", "--json"])
            .ok_json("requests");
        let status = mine
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["id"].as_u64().unwrap().to_string() == unused)
            .map(|r| r["status"].as_str().unwrap().to_string())
            .unwrap();
        if status == "expired" {
            return Ok(());
        }
        assert_eq!(status, "approved");
        Err("the unused grant has not lapsed yet")
    });
    let after = bob
        .run(&["--ca", url, "login", "--no-agent", "--json"])
        .ok_json("bob login");
    assert_eq!(principals(&after), ["bob", "deploy"]);
}
