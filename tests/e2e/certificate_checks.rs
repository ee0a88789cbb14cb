//! The client checks what a CA gives it before it stores anything, and pins
//! the CA's user-CA keys at the first login (issue 16, items 3 and 4).
//!
//! The `jit-ssh` binary signs in at the real test IdP (browser flow, the
//! scripted person) and asks a fake CA (tests/support/fake_ca.rs) that
//! answers one bad certificate after another: each must end in one error
//! line and a distinct exit code, with nothing in the real `ssh-agent` and
//! nothing on disk. Pinning is shown against the fake CA, whose published
//! keys a test can change, and against the real CA for the first login.

#![allow(clippy::unwrap_used, missing_docs)]

use std::path::PathBuf;

use e2e::client::{files_under, mode, ClientHome, Outcome};
use e2e::fake_ca::{fingerprint, random_key, Answer, FakeCa};
use e2e::openssh::SshAgent;
use e2e::*;

/// `jit-ssh --ca URL login --flow browser ARGS…` as alice.
fn login(home: &ClientHome, url: &str, args: &[&str]) -> Outcome {
    let mut all = vec!["--ca", url, "login", "--flow", "browser"];
    all.extend_from_slice(args);
    home.run(&all)
}

/// Where `home` pins the user-CA keys of the CA at `url`.
fn pins(home: &ClientHome, url: &str) -> PathBuf {
    let slug = ca_client::paths::CaSlug::from_url(url).unwrap();
    home.data_dir().join(slug.0).join("user_ca_keys.json")
}

/// The one `jit-ssh: ` line of a failed run, after checking its exit code.
fn error_line(outcome: &Outcome, code: i32, what: &str) -> String {
    assert_eq!(
        outcome.code(),
        code,
        "{what}: expected exit {code}\nstdout: {}\nstderr: {}",
        outcome.stdout,
        outcome.stderr
    );
    let lines: Vec<&str> = outcome
        .stderr
        .lines()
        .filter(|l| l.starts_with("jit-ssh: "))
        .collect();
    assert_eq!(lines.len(), 1, "{what}: one error line: {}", outcome.stderr);
    lines[0].to_string()
}

/// `ssh-add -D`: empties the agent.
fn remove_all(agent: &SshAgent) {
    let (status, _, err) = run(
        std::process::Command::new("ssh-add")
            .arg("-D")
            .env("SSH_AUTH_SOCK", &agent.socket),
        std::time::Duration::from_secs(10),
    )
    .unwrap();
    assert!(status.success(), "ssh-add -D: {err}");
}

/// What each bad answer must be called.
fn needle(answer: Answer) -> &'static str {
    match answer {
        Answer::OtherKey => "the CA certified another key",
        Answer::ExtraRoot => "names principal \"root\", which was not asked for",
        Answer::UnpublishedSigner => "which is not one of the CA's user-CA keys this client trusts",
        Answer::Expired => "the certificate expired",
        Answer::FromTomorrow => "the certificate is not valid until",
        Answer::TenYears => "longer than the 1h00m the CA may give",
        Answer::HostCertificate => "a host certificate, not a user certificate",
        Answer::NoPrincipals => "the certificate names no principal",
        Answer::JsonValidBefore => "the CA's answer says valid_before",
        Answer::Good => unreachable!("not a bad answer"),
    }
}

#[test]
fn every_bad_certificate_is_refused_in_one_line_and_nothing_is_stored() {
    let idp = Idp::start();
    let fake = FakeCa::start(&idp.issuer);
    let agent = SshAgent::start();
    // Every case runs, and every case that goes wrong is reported at once.
    let mut wrong = Vec::new();
    for no_agent in [false, true] {
        for answer in Answer::BAD {
            fake.answer_with(answer);
            let home = ClientHome::new("alice", Some(&agent));
            let mut args = vec!["--principal", "alice"];
            if no_agent {
                args.push("--no-agent");
            }
            let outcome = login(&home, &fake.url, &args);
            let errors: Vec<&str> = outcome
                .stderr
                .lines()
                .filter(|l| l.starts_with("jit-ssh: "))
                .collect();
            let mut problems = Vec::new();
            if outcome.code() != 15 {
                problems.push(format!("exit {}, not 15", outcome.code()));
            }
            match errors.as_slice() {
                [line] => {
                    if !line.contains(needle(answer)) || !line.contains("nothing was stored") {
                        problems.push(format!("error {line:?}"));
                    }
                    // Item 4: the agent is never handed a certificate it
                    // cannot pair, so it is not blamed for the CA's answer.
                    if line.contains("start an agent") {
                        problems.push("the agent is blamed".into());
                    }
                }
                _ => problems.push(format!("not one error line: {:?}", outcome.stderr)),
            }
            if home.browser_runs() != 1 {
                problems.push("not signed in at the IdP once".into());
            }
            if !agent.certificates().is_empty() || agent.list().contains("ssh-ed25519") {
                problems.push(format!("the agent holds {:?}", agent.list()));
            }
            if home.files_root().exists() {
                problems.push("key files written".into());
            }
            if home.config_dir().exists() {
                problems.push("a session kept".into());
            }
            if home.data_dir().exists() {
                problems.push("CA keys pinned".into());
            }
            if !problems.is_empty() {
                wrong.push(format!("{answer:?} (no_agent: {no_agent}): {problems:?}"));
            }
            // The next case starts with an empty agent, whatever this left.
            remove_all(&agent);
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    assert_eq!(fake.requests(), 2 * Answer::BAD.len());

    // The same fake CA answering well: the client stores it.
    fake.answer_with(Answer::Good);
    let home = ClientHome::new("alice", Some(&agent));
    let outcome = login(&home, &fake.url, &["--principal", "alice", "--json"]);
    let issued = outcome.ok_json("good answer");
    assert_eq!(issued["principals"], serde_json::json!(["alice"]));
    assert_eq!(agent.certificates().len(), 1, "{}", agent.list());
}

#[test]
fn the_first_login_pins_the_ca_keys_and_a_changed_key_is_refused_until_accepted() {
    let idp = Idp::start();
    let fake = FakeCa::start(&idp.issuer);
    let agent = SshAgent::start();
    let home = ClientHome::new("alice", Some(&agent));
    let first = fake.keys()[0].clone();
    let pin_file = pins(&home, &fake.url);

    // First login: pinned, fingerprint shown, file private.
    // 55 s: under ensure's one-minute margin, so `ensure` renews below.
    let outcome = login(&home, &fake.url, &["--ttl", "55s"]);
    assert!(outcome.status.success(), "{}", outcome.stderr);
    assert!(outcome.stderr.contains("Pinned"), "{}", outcome.stderr);
    assert!(
        outcome.stderr.contains(&fingerprint(&first)),
        "{}",
        outcome.stderr
    );
    assert_eq!(mode(&pin_file), 0o600);
    assert_eq!(mode(pin_file.parent().unwrap()), 0o700);
    let held = agent.certificates();
    assert_eq!(held.len(), 1);

    // The key swapped outside a rotation: refused loudly, before the
    // browser, before the CA is asked, by login and by silent renewal.
    let rogue = random_key();
    fake.publish(&[&rogue]);
    let requests = fake.requests();
    let outcome = login(&home, &fake.url, &[]);
    let line = error_line(&outcome, 16, "swapped key at login");
    assert!(line.contains("HAS CHANGED"), "{line}");
    assert!(line.contains(&fingerprint(&rogue)), "{line}");
    assert!(line.contains(&fingerprint(&first)), "{line}");
    assert!(
        line.contains(&format!("--accept-ca-key {}", fingerprint(&rogue))),
        "{line}"
    );
    assert_eq!(home.browser_runs(), 1, "no sign-in for a changed CA");
    let ensure = home.run(&["--ca", &fake.url, "ensure", "--no-login"]);
    let line = error_line(&ensure, 16, "swapped key at renewal");
    assert!(line.contains("HAS CHANGED"), "{line}");
    assert_eq!(fake.requests(), requests, "the CA was asked nothing");
    assert_eq!(agent.certificates(), held, "the agent is unchanged");
    assert!(std::fs::read_to_string(&pin_file)
        .unwrap()
        .contains(&first.public_key().to_openssh().unwrap()[..60]));

    // Accepting a key the CA does not publish is a mistake, said so.
    let outcome = login(&home, &fake.url, &["--accept-ca-key", "SHA256:nothing"]);
    let line = error_line(&outcome, 1, "accepting an unpublished key");
    assert!(line.contains("publishes no such user-CA key"), "{line}");

    // Accepted deliberately: trusted from now on, without the flag.
    let outcome = login(&home, &fake.url, &["--accept-ca-key", &fingerprint(&rogue)]);
    assert!(outcome.status.success(), "{}", outcome.stderr);
    assert!(outcome.stderr.contains("Accepted"), "{}", outcome.stderr);
    let outcome = login(&home, &fake.url, &[]);
    assert!(outcome.status.success(), "{}", outcome.stderr);
    assert!(!outcome.stderr.contains("Pinned"), "{}", outcome.stderr);

    // A published rotation needs nothing: announced beside the signing
    // key first, then signing.
    let next = random_key();
    fake.publish(&[&rogue, &next]);
    let outcome = login(&home, &fake.url, &[]);
    assert!(outcome.status.success(), "{}", outcome.stderr);
    assert!(outcome.stderr.contains("announces"), "{}", outcome.stderr);
    fake.publish(&[&next, &rogue]);
    let outcome = login(&home, &fake.url, &[]);
    assert!(outcome.status.success(), "{}", outcome.stderr);
    assert!(outcome.stderr.contains("rotated"), "{}", outcome.stderr);
    // The retired key is no longer trusted once it is no longer published.
    fake.publish(&[&next]);
    assert!(login(&home, &fake.url, &[]).status.success());
    fake.publish(&[&rogue]);
    let outcome = login(&home, &fake.url, &[]);
    error_line(&outcome, 16, "a retired key back");
}

#[test]
fn the_first_login_at_the_real_ca_pins_its_key_and_logout_keeps_the_pin() {
    let idp = Idp::start();
    let setup = CaSetup::builder().issuer("test", &idp.issuer).build();
    let ca = setup.start();
    let agent = SshAgent::start();
    let home = ClientHome::new("alice", Some(&agent));
    let key = ssh_key::PublicKey::from_openssh(ca.user_ca_keys().lines().next().unwrap()).unwrap();
    let shown = key.fingerprint(ssh_key::HashAlg::Sha256).to_string();

    let outcome = login(&home, &ca.url, &[]);
    assert!(outcome.status.success(), "{}", outcome.stderr);
    assert!(outcome.stderr.contains("Pinned"), "{}", outcome.stderr);
    assert!(outcome.stderr.contains(&shown), "{}", outcome.stderr);
    let logout = home.run(&["--ca", &ca.url, "logout"]);
    assert!(logout.status.success(), "{}", logout.stderr);
    // The pins stay, beside the remembered CA (its URL, and that it is the
    // default: tests/e2e/daily.rs).
    let slug = ca_client::paths::CaSlug::from_url(&ca.url).unwrap().0;
    let mut kept = files_under(&home.data_dir());
    kept.sort();
    assert_eq!(
        kept,
        vec![
            home.data_dir().join(&slug).join("ca.json"),
            pins(&home, &ca.url),
            home.data_dir().join("default_ca"),
        ]
    );
    let outcome = login(&home, &ca.url, &[]);
    assert!(outcome.status.success(), "{}", outcome.stderr);
    assert!(!outcome.stderr.contains("Pinned"), "{}", outcome.stderr);
}
