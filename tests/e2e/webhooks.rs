//! End-to-end webhooks: a CA configured with a `[[webhook]]` posts signed
//! events to a loopback receiver when bob's request is created, approved by
//! carol and ended; a break-glass request arrives as its own loud kind and a
//! policy approval as `approved` by `policy:<rule>`; a CA whose webhook never
//! answers still issues and takes requests at once. Every wait is bounded.

#![allow(clippy::unwrap_used, missing_docs)]

use std::net::TcpListener;
use std::time::{Duration, Instant};

use e2e::client::ClientHome;
use e2e::http_stub::{HttpStub, Route};
use e2e::*;
use serde_json::Value;
use sha2::{Digest as _, Sha256};

const SECRET: &str = "webhook-test-secret-0123456789";

/// HMAC-SHA256 (RFC 2104) written out, so the test does not share the
/// server's implementation.
fn hmac_sha256_hex(key: &[u8], message: &[u8]) -> String {
    assert!(key.len() <= 64);
    let mut block = [0u8; 64];
    block[..key.len()].copy_from_slice(key);
    let ipad: Vec<u8> = block.iter().map(|b| b ^ 0x36).collect();
    let opad: Vec<u8> = block.iter().map(|b| b ^ 0x5c).collect();
    let inner = Sha256::new()
        .chain_update(&ipad)
        .chain_update(message)
        .finalize();
    let outer = Sha256::new()
        .chain_update(&opad)
        .chain_update(inner)
        .finalize();
    outer.iter().map(|b| format!("{b:02x}")).collect()
}

/// A webhook receiver on a loopback port: answers 200 to every POST on
/// `/hook` and records it. Returns it and the URL to configure.
fn receiver() -> (HttpStub, String) {
    let stub = HttpStub::start(vec![Route::new("/hook", Vec::new())]);
    let url = format!("{}/hook", stub.url);
    (stub, url)
}

/// The usual CA for these tests: the shipped policies and one webhook to
/// `url`, its secret file ending in a newline as an editor leaves it.
fn setup_with_webhook(idp: &Idp, url: &str) -> CaSetup {
    CaSetup::builder()
        .issuer("corp", &idp.issuer)
        .shipped_policies()
        .webhook(url, &format!("{SECRET}\n"))
        .build()
}

#[test]
fn request_events_arrive_signed_at_a_loopback_receiver() {
    let idp = Idp::start();
    let (hook, hook_url) = receiver();
    let deliveries = &hook.received;
    let setup = setup_with_webhook(&idp, &hook_url);
    let ca = setup.start();
    let url = ca.url.as_str();
    let bob = ClientHome::new("bob", None);
    let carol = ClientHome::new("carol", None);

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
    let id = created["id"].as_u64().unwrap();
    let id_text = id.to_string();
    carol
        .run(&[
            "--ca",
            url,
            "approve",
            &id_text,
            "--comment",
            "go ahead",
            "--json",
        ])
        .ok_json("carol approve");
    bob.run(&["--ca", url, "done", &id_text, "--json"])
        .ok_json("bob done");

    let mut events = Vec::new();
    for _ in 0..3 {
        let delivery = deliveries
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("webhook deliveries so far: {}", events.len()));
        assert_eq!(
            (delivery.method.as_str(), delivery.path.as_str()),
            ("POST", "/hook")
        );
        // The signature is HMAC-SHA256 of "<timestamp>.<body>" under the secret.
        let timestamp = delivery.header("x-jit-ssh-timestamp");
        let timestamp_secs: u64 = timestamp.parse().unwrap();
        assert!(timestamp_secs.abs_diff(now()) < 120);
        let mut signed = format!("{timestamp}.").into_bytes();
        signed.extend_from_slice(&delivery.body);
        assert_eq!(
            delivery.header("x-jit-ssh-signature"),
            format!("sha256={}", hmac_sha256_hex(SECRET.as_bytes(), &signed)),
        );
        assert_eq!(delivery.header("content-type"), "application/json");
        let event: Value = serde_json::from_slice(&delivery.body).unwrap();
        assert_eq!(event["request_id"], id);
        assert_eq!(event["requester"], "bob@corp");
        assert_eq!(event["principals"], serde_json::json!(["root"]));
        assert!(
            event["text"].as_str().unwrap().contains("bob@corp"),
            "{event}"
        );
        events.push(event);
    }
    let by_kind = |kind: &str| {
        events
            .iter()
            .find(|e| e["kind"] == kind)
            .unwrap_or_else(|| panic!("no {kind} event among {events:?}"))
    };
    assert_eq!(by_kind("created")["actor"], "bob@corp");
    assert_eq!(by_kind("created")["reason"], "INC-1234: disk full");
    assert_eq!(by_kind("approved")["actor"], "carol@corp");
    assert_eq!(by_kind("approved")["comment"], "go ahead");
    assert!(by_kind("approved")["window_end"].as_u64().is_some());
    assert_eq!(by_kind("ended")["actor"], "bob@corp");
    // Nothing else was sent (a bounded wait for something that must not
    // come), and the secret is in no log line.
    assert!(deliveries.recv_timeout(Duration::from_millis(500)).is_err());
    let log = ca.process.stderr.text();
    assert!(!log.contains(SECRET), "{log}");
}

#[test]
fn break_glass_is_a_loud_event_and_a_policy_approval_is_approved_by_the_rule() {
    let idp = Idp::start();
    let (hook, hook_url) = receiver();
    let deliveries = &hook.received;
    // A secret file without a final newline works the same.
    let setup = CaSetup::builder()
        .issuer("corp", &idp.issuer)
        .policy(BREAK_GLASS_POLICY)
        .webhook(&hook_url, SECRET)
        .build();
    let ca = setup.start();
    let url = ca.url.as_str();
    let bob = ClientHome::new("bob", None);
    let erin = ClientHome::new("erin", None);
    let request = |home: &ClientHome, extra: &[&str]| {
        let mut args = vec![
            "--ca",
            url,
            "request",
            "--principal",
            "root",
            "--reason",
            "INC-99: site down",
            "--json",
        ];
        args.extend_from_slice(extra);
        let created = home.run(&args).ok_json("request");
        let delivery = deliveries
            .recv_timeout(Duration::from_secs(30))
            .expect("a webhook delivery");
        let event: Value = serde_json::from_slice(&delivery.body).unwrap();
        assert_eq!(event["request_id"], created["id"]);
        event
    };
    let glass = request(&bob, &["--break-glass"]);
    assert_eq!(glass["kind"], "break_glass");
    assert_eq!(glass["actor"], "bob@corp");
    let text = glass["text"].as_str().unwrap();
    assert!(
        text.starts_with("\u{1f6a8} BREAK-GLASS: bob@corp approved root"),
        "{text}"
    );
    assert!(text.contains("INC-99: site down"), "{text}");
    let auto = request(&erin, &[]);
    assert_eq!(auto["kind"], "approved");
    assert_eq!(auto["actor"], "policy:sre-root");
    assert!(auto["window_end"].as_u64().is_some());
    // Nothing else (a bounded wait for something that must not come): no
    // `created` event for requests approved at once.
    assert!(deliveries.recv_timeout(Duration::from_millis(500)).is_err());
}

#[test]
fn a_dead_receiver_does_not_slow_issuance_or_requests() {
    let idp = Idp::start();
    // Accepts connections into its backlog and never answers.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let hook_url = format!("http://{}/hook", silent.local_addr().unwrap());
    let setup = setup_with_webhook(&idp, &hook_url);
    let ca = setup.start();
    let url = ca.url.as_str();
    let bob = ClientHome::new("bob", None);
    bob.run(&["--ca", url, "login", "--json"])
        .ok_json("bob first login");

    for round in 0..3 {
        let started = Instant::now();
        bob.run(&[
            "--ca",
            url,
            "request",
            "--principal",
            "root",
            "--reason",
            "INC-9: dead hook",
            "--for",
            "30m",
            "--no-wait",
            "--json",
        ])
        .ok_json("bob request");
        let took = started.elapsed();
        assert!(
            took < Duration::from_secs(2),
            "request {round} took {took:?}"
        );
        let started = Instant::now();
        bob.run(&["--ca", url, "login", "--json"])
            .ok_json("bob login");
        let took = started.elapsed();
        assert!(took < Duration::from_secs(2), "login {round} took {took:?}");
    }
    drop(silent);
}
