//! End-to-end: text people send each other cannot forge output or drive a
//! terminal. A request reason, an approver's comment and a revocation
//! reason with a newline or an escape sequence are refused at the API
//! (`400 invalid_text`) before anything is recorded or the token spent; and
//! rows recorded before that rule (written into the database directly here)
//! print escaped in `jit-ssh-ca audit` and `jit-ssh requests`, while their
//! JSON keeps the raw values.

#![allow(clippy::unwrap_used, missing_docs)]

use std::process::Command;
use std::time::Duration;

use e2e::client::ClientHome;
use e2e::*;
use serde_json::{json, Value};

const FORGED: &str = "disk full\n2026-12-05 09:00:00  issued     mallory@corp\u{1b}[8m";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_characters_in_reasons_and_comments_are_refused_before_anything_is_recorded() {
    let idp = Idp::start();
    let setup = CaSetup::builder()
        .issuer("corp", &idp.issuer)
        .shipped_policies()
        .build();
    let ca = setup.start();
    let token = |user: &'static str| {
        let idp = &idp;
        async move { idp.login(user, "jit-ssh", None).await.unwrap().id_token }
    };

    // bob asks with a forged line in his reason, then with an escape alone.
    let bob = token("bob").await;
    for reason in [FORGED, "INC-1 \u{1b}[8m", "INC-1\r", "INC-1\u{0}"] {
        let body = json!({"principals": ["root"], "reason": reason, "window_seconds": 600});
        let (status, refused) = ca.call("/v1/requests", Some(&bob), Some(body)).await;
        assert_invalid_text(status, &refused);
    }
    // A tab is text.
    let body = json!({"principals": ["root"], "reason": "INC-1\tdisk full", "window_seconds": 600});
    let (status, created) = ca.call("/v1/requests", Some(&bob), Some(body)).await;
    assert_eq!(
        status, 200,
        "bob's token was not spent by the refusals: {created}"
    );
    let id = created["id"].as_u64().unwrap();

    // carol's approval with a forged comment, and her revocation with one.
    let carol = token("carol").await;
    let approve = format!("/v1/requests/{id}/approve");
    let (status, refused) = ca
        .call(&approve, Some(&carol), Some(json!({"comment": FORGED})))
        .await;
    assert_invalid_text(status, &refused);
    let revocation =
        json!({"identity": "mallory@corp", "reason": "stolen laptop\u{1b}]0;pwned\u{7}"});
    let (status, refused) = ca
        .call("/v1/revocations", Some(&carol), Some(revocation))
        .await;
    assert_invalid_text(status, &refused);
    let (status, denied) = ca
        .call(
            &format!("/v1/requests/{id}/deny"),
            Some(&carol),
            Some(json!({"reason": "no\nway"})),
        )
        .await;
    assert_invalid_text(status, &denied);
    let (status, approved) = ca
        .call(&approve, Some(&carol), Some(json!({"comment": "ok"})))
        .await;
    assert_eq!(
        status, 200,
        "carol's token was not spent by the refusals: {approved}"
    );

    // Nothing of the refused requests is on record.
    let events = setup.audit(&[]);
    let kinds: Vec<&str> = events
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["request_created", "request_approved"], "{events:?}");
    assert!(
        events
            .iter()
            .all(|e| !e["detail"].as_str().unwrap().contains('\u{1b}')),
        "{events:?}"
    );
}

#[test]
fn rows_recorded_with_control_characters_print_escaped_and_raw_in_json() {
    let idp = Idp::start();
    let setup = CaSetup::builder()
        .issuer("corp", &idp.issuer)
        .shipped_policies()
        .build();
    let ca = setup.start();
    let url = ca.url.as_str();
    let bob = ClientHome::new("bob", None);
    let created = bob
        .run(&[
            "--ca",
            url,
            "request",
            "--principal",
            "root",
            "--reason",
            "INC-1",
            "--for",
            "10m",
            "--no-wait",
            "--json",
        ])
        .ok_json("bob request");
    let id = created["id"].as_u64().unwrap();

    // What an older CA could have recorded: the reason with a forged audit
    // line and an escape sequence that hides the rest of the terminal.
    let database = setup.data_dir.join("jit-ssh-ca.db");
    let forged_sql = "'disk full' || char(10) || '2026-12-05 09:00:00  issued     mallory@corp' || char(27) || '[8m'";
    let (status, _, err) = run(
        Command::new("sqlite3").arg(&database).arg(format!(
            "UPDATE access_requests SET reason = {forged_sql} WHERE id = {id}; \
             UPDATE audit_events SET detail = {forged_sql} WHERE kind = 'request_created';"
        )),
        Duration::from_secs(10),
    )
    .unwrap();
    assert!(status.success(), "sqlite3: {err}");

    let (status, table, err) = setup.cli(&["audit"]);
    assert!(status.success(), "audit: {err}");
    assert_escaped(&table, 1);
    let json = setup.audit(&[]);
    assert_eq!(json[0]["detail"], FORGED, "JSON keeps the recorded value");

    let listed = bob.run(&["--ca", url, "requests"]);
    assert_eq!(listed.code(), 0, "{}", listed.stderr);
    assert_escaped(&listed.stdout, 0);
    let listed: Value = bob
        .run(&["--ca", url, "requests", "--json"])
        .ok_json("requests --json");
    assert_eq!(listed[0]["reason"], FORGED, "JSON keeps the recorded value");
}

/// `out`, a table with `headers` header lines and one row, shows the forged
/// reason escaped on that one row.
fn assert_escaped(out: &str, headers: usize) {
    assert!(!out.contains('\u{1b}'), "a raw escape was printed: {out:?}");
    assert_eq!(out.lines().count(), headers + 1, "a row was forged: {out}");
    assert!(
        out.contains("disk full\\n2026-12-05 09:00:00  issued     mallory@corp\\x1b[8m"),
        "{out}"
    );
}

fn assert_invalid_text(status: u16, body: &Value) {
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("invalid_text")),
        "{body}"
    );
}
