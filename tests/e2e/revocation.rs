//! End-to-end revocation: real tokens from the real IdP, the real CA, the
//! `jit-ssh host sync-krl` puller, and real OpenSSH as the judge
//! (`ssh-keygen -Q` and an `sshd` with `RevokedKeys`). Admin rights come from
//! an `[[admin]]` policy rule (carol, in sre-leads); owners revoke their own
//! certificates by signing with the certificate's key. Each test starts and
//! stops its own processes, and every wait is bounded.

#![allow(clippy::unwrap_used, missing_docs)]

use std::path::PathBuf;
use std::time::Duration;

use ca_client::{nonce_for, CaClient, ClientError};
use ca_proto::UserCertResponse;
use e2e::client::{sync_krl, ClientHome};
use e2e::http_stub::{HttpStub, Route};
use e2e::openssh::ssh_keygen_revoked as revoked;
use e2e::openssh::SshAgent;
use e2e::*;
use serde_json::{json, Value};

const ADMIN_RULE: &str =
    "[[admin]]\nname = \"test-admins\"\n[admin.match]\ngroups_any = [\"sre-leads\"]\n";

struct World {
    idp: Idp,
    setup: CaSetup,
    ca: Ca,
    client: CaClient,
    user_ca: String,
    dir: tempfile::TempDir,
}

async fn world() -> World {
    let idp = Idp::start();
    let setup = CaSetup::builder()
        .issuer("test", &idp.issuer)
        .policy_file("admins.toml", ADMIN_RULE)
        .build();
    let ca = setup.start();
    let client = CaClient::new(&ca.url, None).unwrap();
    let user_ca = client.config().await.unwrap().user_ca_keys.join("\n") + "\n";
    World {
        idp,
        setup,
        ca,
        client,
        user_ca,
        dir: tempfile::tempdir().unwrap(),
    }
}

/// A fresh key for `user`, certified with a real login; returns the key
/// path, the certificate path and the CA's answer.
async fn certify(w: &World, user: &str, name: &str) -> (PathBuf, PathBuf, UserCertResponse) {
    let (key_path, issued) = try_certify(w, user, name).await;
    let issued = issued.unwrap_or_else(|e| panic!("issue: {e}\n{}", w.ca.process.stderr.text()));
    let cert_path = w.dir.path().join(format!("{name}-cert.pub"));
    std::fs::write(&cert_path, format!("{}\n", issued.certificate)).unwrap();
    (key_path, cert_path, issued)
}

async fn try_certify(
    w: &World,
    user: &str,
    name: &str,
) -> (PathBuf, Result<UserCertResponse, ClientError>) {
    let key_path = w.dir.path().join(name);
    let (key_path, key) = if key_path.exists() {
        let key = ssh_key::PrivateKey::read_openssh_file(&key_path).unwrap();
        (key_path, key)
    } else {
        ssh_keygen(w.dir.path(), name, &["-t", "ed25519"])
    };
    let tokens = w
        .idp
        .login(user, "jit-ssh", Some(&nonce_for(&key).unwrap()))
        .await
        .unwrap_or_else(|e| panic!("login: {e}\n{}", w.idp.log()));
    let issued = w
        .client
        .request_user_certificate(&tokens.id_token, &key, &[], None)
        .await;
    (key_path, issued)
}

/// A fresh ID token of `user` from the real authorization-code flow.
async fn token(w: &World, user: &str) -> String {
    w.idp
        .login(user, "jit-ssh", None)
        .await
        .unwrap_or_else(|e| panic!("login: {e}\n{}", w.idp.log()))
        .id_token
}

/// POSTs `body` to `path` with `token`; returns the status and JSON body.
async fn post(w: &World, path: &str, token: Option<&str>, body: Value) -> (u16, Value) {
    let mut request = http_client()
        .post(format!("{}{path}", w.ca.url))
        .json(&body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// `GET /v1/krl` written to a file.
async fn krl_file(w: &World, name: &str) -> PathBuf {
    let bytes = http_client()
        .get(format!("{}/v1/krl", w.ca.url))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let path = w.dir.path().join(name);
    std::fs::write(&path, &bytes).unwrap();
    path
}

/// `jit-ssh-ca ARGS --config ...` on the CA host; returns whether it
/// succeeded, its stdout and its stderr.
fn ca_cli(setup: &CaSetup, args: &[&str]) -> (bool, String, String) {
    let (status, out, err) = setup.cli(args);
    (status.success(), out, err)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_revocation_reaches_sshd_through_the_synced_krl() {
    let w = world().await;
    let (bob_key, bob_cert, bob) = certify(&w, "bob", "bob").await;
    let (alice_key, alice_cert, _) = certify(&w, "alice", "alice").await;

    // The host's KRL before any revocation: sshd lets both in.
    let krl = w.dir.path().join("etc-ssh-jit-ssh.krl");
    let (ok, out, err) = sync_krl(&w.ca.url, &krl, &[]);
    assert!(ok, "sync-krl: {err}");
    let synced: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(synced["changed"], true);
    assert_eq!(synced["serials"], 0);
    let sshd = Sshd::start_with(
        &w.user_ca,
        &["alice", "bob"],
        &format!("RevokedKeys {}", krl.display()),
    );
    assert!(sshd.login(&bob_key, &bob_cert).0, "{}", sshd.log());
    assert!(sshd.login(&alice_key, &alice_cert).0, "{}", sshd.log());
    assert!(!revoked(&krl, &bob_cert));

    // alice is no admin: 403, nothing changes, the refusal is audited.
    let revoke_bob = json!({"serial": bob.serial, "reason": "INC-7: laptop stolen"});
    let alice_token = token(&w, "alice").await;
    let (status, body) = post(
        &w,
        "/v1/revocations",
        Some(&alice_token),
        revoke_bob.clone(),
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("not_admin")),
        "{body}"
    );
    // No token at all: 401.
    let (status, _) = post(&w, "/v1/revocations", None, revoke_bob.clone()).await;
    assert_eq!(status, 401);
    // A body naming two targets is refused before any token is looked at.
    let carol_token = token(&w, "carol").await;
    let (status, body) = post(
        &w,
        "/v1/revocations",
        Some(&carol_token),
        json!({"serial": bob.serial, "identity": "bob@test", "reason": "x"}),
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("invalid_request"))
    );

    // carol (sre-leads) revokes bob's certificate; her token is then spent.
    let (status, body) = post(
        &w,
        "/v1/revocations",
        Some(&carol_token),
        revoke_bob.clone(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["revoked_serials"], json!([bob.serial]));
    let (status, body) = post(
        &w,
        "/v1/revocations",
        Some(&carol_token),
        revoke_bob.clone(),
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (401, Some("replayed_token"))
    );

    // The host pulls the new KRL; OpenSSH refuses bob's still-valid
    // certificate and keeps letting alice in.
    let (ok, out, err) = sync_krl(&w.ca.url, &krl, &[]);
    assert!(ok, "sync-krl: {err}");
    let synced: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (synced["changed"].clone(), synced["serials"].clone()),
        (json!(true), json!(1))
    );
    assert!(bob.valid_before > now() + 60, "still well within validity");
    assert!(revoked(&krl, &bob_cert));
    assert!(!revoked(&krl, &alice_cert));
    let (ok, _) = sshd.login(&bob_key, &bob_cert);
    assert!(!ok, "sshd accepted a revoked certificate:\n{}", sshd.log());
    assert!(sshd.log().contains("revoked"), "{}", sshd.log());
    assert!(sshd.login(&alice_key, &alice_cert).0, "{}", sshd.log());
    // Unchanged KRL: the file is left alone.
    let (ok, out, _) = sync_krl(&w.ca.url, &krl, &[]);
    assert!(ok);
    assert_eq!(
        serde_json::from_str::<Value>(&out).unwrap()["changed"],
        false
    );

    // The audit log names who did what under which rule.
    let audit = w.setup.audit(&[]);
    let revoked_event = audit.iter().find(|e| e["event"] == "revoked").unwrap();
    assert_eq!(revoked_event["identity"], "carol@test");
    assert_eq!(revoked_event["serial"], bob.serial.as_str());
    assert_eq!(revoked_event["rules"], json!(["test-admins"]));
    assert!(revoked_event["detail"]
        .as_str()
        .unwrap()
        .contains("laptop stolen"));
    assert!(audit.iter().any(|e| e["event"] == "denied"
        && e["identity"] == "alice@test"
        && e["detail"]
            .as_str()
            .unwrap()
            .contains("not an administrator")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn owners_revoke_their_own_certificates_and_nobody_elses() {
    let w = world().await;
    let (bob_key_path, bob_cert, bob) = certify(&w, "bob", "bob").await;
    let bob_key = ssh_key::PrivateKey::read_openssh_file(&bob_key_path).unwrap();
    let (mallory_path, _) = ssh_keygen(w.dir.path(), "mallory", &["-t", "ed25519"]);
    let mallory = ssh_key::PrivateKey::read_openssh_file(&mallory_path).unwrap();
    let refused = |r: Result<ca_proto::RevocationResponse, ClientError>| match r {
        Err(ClientError::Refused { status, code, .. }) => (status, code),
        other => panic!("expected a refusal, got {other:?}"),
    };
    // Another key cannot revoke bob's certificate; unknown serials are 404.
    assert_eq!(
        refused(w.client.revoke_own(&bob.serial, &mallory).await),
        (403, "not_owner".into())
    );
    assert_eq!(
        refused(w.client.revoke_own("12345", &bob_key).await),
        (404, "unknown_certificate".into())
    );
    // A signature in another namespace (here: real ssh-keygen, git's) is refused.
    let wrong_ns = ssh_keygen_sign(
        &bob_key_path,
        "git",
        &ca_proto::own_revocation_message(&bob.serial),
    );
    let (status, body) = post(
        &w,
        "/v1/revocations/own",
        None,
        json!({"serial": bob.serial, "signature": wrong_ns}),
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("not_owner"))
    );
    assert!(!revoked(&krl_file(&w, "before.krl").await, &bob_cert));
    // A signature made by real ssh-keygen in the right namespace works.
    let signature = ssh_keygen_sign(
        &bob_key_path,
        ca_proto::OWN_REVOCATION_NAMESPACE,
        &ca_proto::own_revocation_message(&bob.serial),
    );
    let (status, body) = post(
        &w,
        "/v1/revocations/own",
        None,
        json!({"serial": bob.serial, "signature": signature}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(revoked(&krl_file(&w, "after.krl").await, &bob_cert));
    // Replaying it is harmless: the same certificate, nothing new.
    let again = w.client.revoke_own(&bob.serial, &bob_key).await.unwrap();
    assert!(again.revoked_serials.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoking_an_identity_or_key_blocks_issuance_until_unrevoked() {
    let w = world().await;
    let (_, first_cert, first) = certify(&w, "alice", "alice").await;

    // Identity revocation over the API by an admin lists every unexpired
    // certificate of alice and refuses her new ones.
    let carol = token(&w, "carol").await;
    let (status, body) = post(
        &w,
        "/v1/revocations",
        Some(&carol),
        json!({"identity": "alice@test", "reason": "account compromised"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["revoked_serials"], json!([first.serial]));
    match try_certify(&w, "alice", "alice2").await.1 {
        Err(ClientError::Refused { status, code, .. }) => {
            assert_eq!((status, code.as_str()), (403, "revoked_identity"))
        }
        other => panic!("revoked identity got {other:?}"),
    }
    // bob is unaffected.
    certify(&w, "bob", "bob").await;

    // The operator on the CA host lifts it; alice's old certificate stays
    // revoked, new ones are issued again.
    let (ok, out, err) = ca_cli(
        &w.setup,
        &[
            "unrevoke",
            "--identity",
            "alice@test",
            "--reason",
            "password reset",
        ],
    );
    assert!(ok, "{err}");
    assert!(out.contains("Lifted"), "{out}");
    let (ok, _, err) = ca_cli(
        &w.setup,
        &["unrevoke", "--identity", "alice@test", "--reason", "twice"],
    );
    assert!(!ok && err.contains("not revoked"), "{err}");
    let (alice_key, alice_cert, second) = certify(&w, "alice", "alice2").await;
    let krl = krl_file(&w, "k1.krl").await;
    assert!(revoked(&krl, &first_cert));
    assert!(!revoked(&krl, &alice_cert));

    // The operator revokes one serial directly in the database; a bad or
    // unknown serial is refused with a message.
    let (ok, out, err) = ca_cli(
        &w.setup,
        &["revoke", "--serial", &second.serial, "--reason", "test"],
    );
    assert!(ok, "{err}");
    assert!(
        out.contains("1 unexpired certificate(s) newly listed"),
        "{out}"
    );
    // The CA serves a KRL for up to 5 s; a revocation written by another
    // process (the CLI) shows within that.
    let mut attempt = 0;
    eventually_async(Duration::from_secs(15), || {
        attempt += 1;
        let name = format!("k2-{attempt}.krl");
        let (w, alice_cert) = (&w, &alice_cert);
        async move {
            if revoked(&krl_file(w, &name).await, alice_cert) {
                Ok(())
            } else {
                Err("the CLI's revocation has not reached the KRL")
            }
        }
    })
    .await;
    let (ok, _, err) = ca_cli(&w.setup, &["revoke", "--serial", "1", "--reason", "x"]);
    assert!(!ok && err.contains("no certificate with serial 1"), "{err}");
    let (ok, _, err) = ca_cli(
        &w.setup,
        &["revoke", "--identity", "alice", "--reason", "x"],
    );
    assert!(!ok && err.contains("user@issuer"), "{err}");

    // Key revocation: the key itself is listed, and no certificate is issued
    // for it until lifted.
    let fingerprint = ssh_key::PublicKey::read_openssh_file(&alice_key.with_extension("pub"))
        .unwrap()
        .fingerprint(ssh_key::HashAlg::Sha256)
        .to_string();
    let carol = token(&w, "carol").await;
    let (status, body) = post(
        &w,
        "/v1/revocations",
        Some(&carol),
        json!({"key_fingerprint": fingerprint, "reason": "key leaked"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let krl = krl_file(&w, "k3.krl").await;
    assert!(revoked(&krl, &alice_key.with_extension("pub")));
    match try_certify(&w, "alice", "alice2").await.1 {
        Err(ClientError::Refused { status, code, .. }) => {
            assert_eq!((status, code.as_str()), (403, "revoked_key"))
        }
        other => panic!("revoked key got {other:?}"),
    }
    certify(&w, "alice", "alice3").await;
    // Lifting needs an admin too.
    let lift = json!({"key_fingerprint": fingerprint, "reason": "rotated"});
    let alice_token = token(&w, "alice").await;
    let (status, _) = post(&w, "/v1/revocations/lift", Some(&alice_token), lift.clone()).await;
    assert_eq!(status, 403);
    let carol = token(&w, "carol").await;
    let (status, body) = post(&w, "/v1/revocations/lift", Some(&carol), lift.clone()).await;
    assert_eq!(status, 200, "{body}");
    let carol = token(&w, "carol").await;
    let (status, body) = post(&w, "/v1/revocations/lift", Some(&carol), lift).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("not_revoked"))
    );
    assert!(!revoked(
        &krl_file(&w, "k4.krl").await,
        &alice_key.with_extension("pub")
    ));

    let audit = w.setup.audit(&[]);
    let kinds: Vec<(&str, &str)> = audit
        .iter()
        .filter(|e| e["event"] == "revoked" || e["event"] == "unrevoked")
        .map(|e| {
            (
                e["event"].as_str().unwrap(),
                e["identity"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        [
            ("revoked", "carol@test"),
            ("unrevoked", "operator@local"),
            ("revoked", "operator@local"),
            ("revoked", "carol@test"),
            ("unrevoked", "carol@test"),
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_krl_keeps_the_last_good_file_on_any_failure() {
    let mut w = world().await;
    let (_, bob_cert, bob) = certify(&w, "bob", "bob").await;
    let carol = token(&w, "carol").await;
    let (status, _) = post(
        &w,
        "/v1/revocations",
        Some(&carol),
        json!({"serial": bob.serial, "reason": "test"}),
    )
    .await;
    assert_eq!(status, 200);
    let krl = w.dir.path().join("hosts/jit-ssh.krl");
    std::fs::create_dir_all(krl.parent().unwrap()).unwrap();
    // --trusted-ca-keys: the host's own TrustedUserCAKeys file.
    let trusted = w.dir.path().join("trusted_ca.pub");
    std::fs::write(&trusted, &w.user_ca).unwrap();
    let trusted_arg = trusted.to_str().unwrap();
    let (ok, _, err) = sync_krl(&w.ca.url, &krl, &["--trusted-ca-keys", trusted_arg]);
    assert!(ok, "{err}");
    let good = std::fs::read(&krl).unwrap();
    assert!(revoked(&krl, &bob_cert));

    // What the real CA serves, to build bad variants from.
    let response = http_client()
        .get(format!("{}/v1/krl", w.ca.url))
        .send()
        .await
        .unwrap();
    let signature = response
        .headers()
        .get(ca_proto::krl::KRL_SIGNATURE_HEADER)
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    let real_krl = response.bytes().await.unwrap().to_vec();
    let config = http_client()
        .get(format!("{}/v1/config", w.ca.url))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap()
        .to_vec();
    let krl_route = |body: Vec<u8>, signature: Option<&str>| {
        let route = Route::new("/v1/krl", body);
        match signature {
            Some(value) => route.header(ca_proto::krl::KRL_SIGNATURE_HEADER, value),
            None => route,
        }
    };
    let config_route = || Route::new("/v1/config", config.clone());
    // An empty KRL signed by another key (a forged CA).
    let forger =
        ssh_key::PrivateKey::random(&mut rand_core::OsRng, ssh_key::Algorithm::Ed25519).unwrap();
    let empty = ca_proto::krl::KrlContents {
        version: u64::MAX,
        ..Default::default()
    }
    .encode();
    let forged = forger
        .sign(
            ca_proto::krl::KRL_SIGNATURE_NAMESPACE,
            ssh_key::HashAlg::Sha512,
            &empty,
        )
        .unwrap()
        .to_pem(ssh_key::LineEnding::LF)
        .unwrap();
    let forged = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, forged);
    let cases: Vec<(&str, Vec<Route>, &str)> = vec![
        (
            "garbage",
            vec![
                config_route(),
                krl_route(b"<html>502 Bad Gateway</html>".to_vec(), Some(&signature)),
            ],
            "no valid KRL",
        ),
        (
            "empty body",
            vec![config_route(), krl_route(Vec::new(), Some(&signature))],
            "no valid KRL",
        ),
        (
            "unsigned",
            vec![config_route(), krl_route(real_krl.clone(), None)],
            "without the CA's signature",
        ),
        (
            "forged signature",
            vec![config_route(), krl_route(empty.clone(), Some(&forged))],
            "does not verify",
        ),
        (
            "truncated",
            vec![
                config_route(),
                krl_route(real_krl[..real_krl.len() - 3].to_vec(), Some(&signature)),
            ],
            "no valid KRL",
        ),
    ];
    for (name, routes, needle) in cases {
        let fake = HttpStub::start(routes);
        let (ok, _, err) = sync_krl(&fake.url, &krl, &[]);
        assert!(!ok, "{name}: sync-krl accepted it");
        assert!(
            err.contains(needle) && err.contains("left unchanged"),
            "{name}: {err}"
        );
        assert_eq!(std::fs::read(&krl).unwrap(), good, "{name}: file changed");
    }
    // The forged KRL is also refused against the host's trusted keys.
    let fake = HttpStub::start(vec![krl_route(empty, Some(&forged))]);
    let (ok, _, err) = sync_krl(&fake.url, &krl, &["--trusted-ca-keys", trusted_arg]);
    assert!(!ok && err.contains("does not verify"), "{err}");
    drop(fake);

    // The CA goes down: the last good file stays.
    w.ca.process.terminate();
    w.ca.process.wait_exit(Duration::from_secs(20)).unwrap();
    let (ok, _, err) = sync_krl(&w.ca.url, &krl, &[]);
    assert!(!ok, "sync-krl succeeded without a CA");
    assert!(err.contains("cannot reach the CA"), "{err}");
    assert_eq!(std::fs::read(&krl).unwrap(), good);
    assert!(revoked(&krl, &bob_cert));
    // No temporary files left behind next to it.
    let names: Vec<String> = std::fs::read_dir(krl.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    assert_eq!(names, ["jit-ssh.krl"]);
}

#[test]
fn logout_revokes_the_current_certificate_at_the_ca() {
    let idp = Idp::start();
    let setup = CaSetup::builder().issuer("test", &idp.issuer).build();
    let ca = setup.start();
    let dir = tempfile::tempdir().unwrap();
    let fetch_krl = |ca: &Ca, name: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, ca.download("/v1/krl")).unwrap();
        path
    };

    // Agent storage: the session key signs the revocation.
    let agent = SshAgent::start();
    let home = ClientHome::new("alice", Some(&agent));
    let login = home.run(&["--ca", &ca.url, "login", "--flow", "browser", "--json"]);
    assert!(login.status.success(), "{}", login.stderr);
    let serial = login.json()["serial"].as_str().unwrap().to_string();
    let cert = dir.path().join("agent-cert.pub");
    std::fs::write(&cert, agent.certificates()[0].clone() + "\n").unwrap();
    assert!(!revoked(&fetch_krl(&ca, "before.krl"), &cert));
    let logout = home.run(&["--ca", &ca.url, "logout", "--json"]);
    assert!(logout.status.success(), "{}", logout.stderr);
    assert_eq!(logout.json()["certificates_revoked"], json!([serial]));
    assert!(revoked(&fetch_krl(&ca, "after.krl"), &cert));

    // Files storage: the key file signs it; the text output says so.
    let home = ClientHome::new("bob", None);
    let login = home.run(&[
        "--ca",
        &ca.url,
        "login",
        "--flow",
        "browser",
        "--no-agent",
        "--json",
    ]);
    assert!(login.status.success(), "{}", login.stderr);
    let cert_path = PathBuf::from(login.json()["certificate_path"].as_str().unwrap());
    let cert = dir.path().join("files-cert.pub");
    std::fs::copy(&cert_path, &cert).unwrap();
    let logout = home.run(&["--ca", &ca.url, "logout"]);
    assert!(logout.status.success(), "{}", logout.stderr);
    assert!(
        logout.stderr.contains("Revoked at the CA"),
        "{}",
        logout.stderr
    );
    assert!(revoked(&fetch_krl(&ca, "after2.krl"), &cert));

    // With the CA down, logout still cleans up and says what it could not do.
    let home = ClientHome::new("alice", None);
    let login = home.run(&["--ca", &ca.url, "login", "--flow", "browser", "--no-agent"]);
    assert!(login.status.success(), "{}", login.stderr);
    let mut ca = ca;
    ca.process.terminate();
    ca.process.wait_exit(Duration::from_secs(20)).unwrap();
    let logout = home.run(&["--ca", &ca.url, "logout", "--json"]);
    assert!(logout.status.success(), "{}", logout.stderr);
    let out = logout.json();
    assert_eq!(out["certificates_revoked"], json!([]));
    assert!(out["files_removed"].as_bool().unwrap());
    assert!(
        out["notes"].to_string().contains("could not revoke"),
        "{out}"
    );
}
