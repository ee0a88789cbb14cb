//! End-to-end tests of the `jit-ssh` client binary: the real `oidc-provider`
//! test IdP, the real CA binary, a real `ssh-agent` on its own socket, a real
//! `sshd`, and `$BROWSER` = `tests/idp/browser-login.sh`, a scripted person
//! signing in with curl. Each test starts and stops its own processes, and
//! every wait is bounded.

#![allow(clippy::unwrap_used, missing_docs)]

use std::time::{Duration, Instant};

use e2e::client::{files_under, mode, ClientHome};
use e2e::openssh::SshAgent;
use e2e::*;

/// An IdP, a CA trusting it (issuer name `test`), and an sshd trusting the CA
/// that maps the current user to the principals alice and bob.
struct World {
    idp: Idp,
    _setup: CaSetup,
    ca: Ca,
    sshd: Sshd,
}

fn world() -> World {
    world_with(&[])
}

/// [`world`], with `settings` in the issuer's `[[oidc]]` table.
fn world_with(settings: &[&str]) -> World {
    let idp = Idp::start();
    let setup = settings
        .iter()
        .fold(CaSetup::builder().issuer("test", &idp.issuer), |b, line| {
            b.issuer_setting(line)
        })
        .build();
    let ca = setup.start();
    let sshd = Sshd::start(&ca.user_ca_keys(), &["alice", "bob"]);
    World {
        idp,
        _setup: setup,
        ca,
        sshd,
    }
}

fn assert_exit(outcome: &e2e::client::Outcome, code: i32, needle: &str) {
    assert_eq!(
        outcome.code(),
        code,
        "expected exit {code}:\nstdout: {}\nstderr: {}",
        outcome.stdout,
        outcome.stderr
    );
    assert!(
        outcome.stderr.contains(needle),
        "stderr lacks {needle:?}: {}",
        outcome.stderr
    );
    let error_lines: Vec<&str> = outcome
        .stderr
        .lines()
        .filter(|l| l.starts_with("jit-ssh: "))
        .collect();
    assert_eq!(error_lines.len(), 1, "one error line: {}", outcome.stderr);
}

/// A refresh token still works at the IdP.
fn refresh_works(idp: &Idp, token: &str) -> bool {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(idp.refresh(token, "jit-ssh")).is_ok()
}

#[test]
fn browser_login_loads_the_agent_with_a_lifetime_and_logout_leaves_nothing() {
    let w = world();
    let agent = SshAgent::start();
    let home = ClientHome::new("alice", Some(&agent));
    let login = home.run(&["--ca", &w.ca.url, "login", "--flow", "browser", "--json"]);
    assert!(
        login.status.success(),
        "login: {}\n{}",
        login.stderr,
        w.idp.log()
    );
    let issued = login.json();
    assert_eq!(issued["stored"], "agent");
    assert_eq!(issued["agent_lifetime"], true);
    assert_eq!(issued["renewable"], true);
    assert_eq!(issued["principals"], serde_json::json!(["alice"]));
    assert_eq!(home.browser_runs(), 1);
    // The URL went to stderr too, for a person to paste.
    assert!(login.stderr.contains("/auth?"), "{}", login.stderr);

    // A real agent holds exactly the certificate.
    let certs = agent.certificates();
    assert_eq!(certs.len(), 1, "{certs:?}");
    assert!(certs[0].starts_with("ssh-ed25519-cert-v01@openssh.com"));
    let (ok, err) = w.sshd.login_with_agent(&agent.socket);
    assert!(ok, "ssh with the agent only: {err}\n{}", w.sshd.log());

    // Nothing on disk but the session: refresh token and key, both 0600.
    assert!(!home.files_root().exists());
    let session: Vec<_> = files_under(&home.config_dir());
    assert_eq!(session.len(), 3, "{session:?}");
    for file in &session {
        assert_eq!(mode(file), 0o600, "{}", file.display());
    }
    let session_dir = session[0].parent().unwrap().to_path_buf();
    let refresh_token = std::fs::read_to_string(session_dir.join("refresh_token")).unwrap();
    assert!(!login.stderr.contains(refresh_token.trim()));
    assert!(!login.stdout.contains(refresh_token.trim()));

    // status sees it.
    let status = home.run(&["status", "--json"]);
    assert!(status.status.success(), "{}", status.stderr);
    let status = status.json();
    assert_eq!(status["certificates"].as_array().unwrap().len(), 1);
    assert_eq!(status["certificates"][0]["issuer"], "test");
    assert_eq!(status["certificates"][0]["stored"], "agent");
    assert_eq!(status["sessions"].as_array().unwrap().len(), 1);

    // ensure's fast path: nothing to do, no browser.
    let ensure = home.run(&["--ca", &w.ca.url, "ensure", "--no-login"]);
    assert!(ensure.status.success(), "{}", ensure.stderr);
    assert_eq!(home.browser_runs(), 1);

    // logout: agent empty, nothing on disk, refresh token revoked at the IdP.
    let logout = home.run(&["--ca", &w.ca.url, "logout", "--json"]);
    assert!(logout.status.success(), "{}", logout.stderr);
    let out = logout.json();
    assert_eq!(out["agent_removed"], 1);
    assert_eq!(out["session_removed"], true);
    assert_eq!(out["refresh_token_revoked"], true);
    assert!(agent.certificates().is_empty(), "{}", agent.list());
    // Nothing else: the CA's pinned user-CA keys outlive the session, as
    // ssh's known_hosts does (tests/e2e/certificate_checks.rs), and so does
    // the remembered CA (its URL, and that it is the default), so the next
    // `jit-ssh login` needs no --ca (tests/e2e/daily.rs).
    let slug = ca_client::paths::CaSlug::from_url(&w.ca.url).unwrap();
    let pins = home.data_dir().join(&slug.0).join("user_ca_keys.json");
    let remembered = home.data_dir().join(&slug.0).join("ca.json");
    let default = home.data_dir().join("default_ca");
    assert!(pins.exists());
    assert!(files_under(home.home())
        .iter()
        .all(|p| p.ends_with("browser.log") || p == &pins || p == &remembered || p == &default));
    assert!(!refresh_works(&w.idp, refresh_token.trim()));
    let (ok, _) = w.sshd.login_with_agent(&agent.socket);
    assert!(!ok, "ssh must fail after logout");
}

#[test]
fn ensure_renews_through_the_refresh_token_without_the_browser() {
    let w = world();
    let agent = SshAgent::start();
    let home = ClientHome::new("bob", Some(&agent));
    // 30 s is under ensure's one-minute margin: the next ensure must renew.
    let login = home.run(&["--ca", &w.ca.url, "login", "--ttl", "30s", "--json"]);
    assert!(login.status.success(), "login: {}", login.stderr);
    let first = login.json();
    assert_eq!(home.browser_runs(), 1);

    let mut serials = vec![first["serial"].as_str().unwrap().to_string()];
    for _ in 0..2 {
        // Twice: refresh tokens rotate, so the second renewal proves the
        // rotated token was stored.
        let ensure = home.run(&["--ca", &w.ca.url, "ensure", "--no-login"]);
        assert!(
            ensure.status.success(),
            "ensure: {}\n{}",
            ensure.stderr,
            w.idp.log()
        );
        assert!(ensure.stderr.contains("Renewed"), "{}", ensure.stderr);
        let status = home.run(&["status", "--json"]).json();
        let certs = status["certificates"].as_array().unwrap().clone();
        assert_eq!(
            certs.len(),
            1,
            "the renewal replaces, never piles up: {certs:?}"
        );
        serials.push(certs[0]["serial"].as_str().unwrap().to_string());
    }
    assert_eq!(home.browser_runs(), 1, "no browser for renewals");
    serials.dedup();
    assert_eq!(serials.len(), 3, "{serials:?}");
    assert_eq!(agent.certificates().len(), 1);
    let (ok, err) = w.sshd.login_with_agent(&agent.socket);
    assert!(ok, "ssh after renewal: {err}");
}

/// The device flow of the test IdP (npm oidc-provider, like RFC 8628) puts
/// no nonce in the ID token, so it certifies a key only where the issuer is
/// configured not to require one (docs/security.md, *Key binding*).
#[test]
fn device_flow_loads_the_agent_and_the_agent_forgets_at_expiry() {
    let w = world_with(&["require_nonce = false"]);
    let agent = SshAgent::start();
    let home = ClientHome::new("alice", Some(&agent));
    let login = home.run(&[
        "--ca",
        &w.ca.url,
        "login",
        "--flow",
        "device",
        "--ttl",
        "8s",
        "--timeout",
        "60s",
        "--json",
    ]);
    assert!(
        login.status.success(),
        "login: {}\n{}",
        login.stderr,
        w.idp.log()
    );
    assert!(login.stderr.contains("enter the code"), "{}", login.stderr);
    let issued = login.json();
    assert_eq!(issued["agent_lifetime"], true);
    assert_eq!(home.browser_runs(), 1);
    assert!(std::fs::read_to_string(&home.browser_log)
        .unwrap()
        .contains("/device?user_code="));
    assert_eq!(agent.certificates().len(), 1);
    let (ok, err) = w.sshd.login_with_agent(&agent.socket);
    assert!(ok, "ssh with the agent only: {err}\n{}", w.sshd.log());

    // The lifetime constraint: the agent itself drops the key at expiry.
    let valid_before = issued["valid_before"].as_u64().unwrap();
    eventually(Duration::from_secs(30), || {
        let held = agent.certificates();
        if held.is_empty() {
            Ok(())
        } else {
            Err(format!("the agent kept an expired key: {held:?}"))
        }
    });
    assert!(now() + 2 >= valid_before, "dropped before expiry");
}

/// Where the issuer requires nonces (the default), the device flow's
/// nonce-less token is refused, nothing is stored, and the client says in
/// one line what happened and what to do.
#[test]
fn device_login_is_refused_in_one_line_where_the_issuer_requires_nonces() {
    let w = world();
    let agent = SshAgent::start();
    let home = ClientHome::new("alice", Some(&agent));
    let login = home.run(&[
        "--ca",
        &w.ca.url,
        "login",
        "--flow",
        "device",
        "--timeout",
        "60s",
    ]);
    assert_exit(&login, 5, "left the nonce out of the device-flow ID token");
    assert!(
        login.stderr.contains("--flow browser") && login.stderr.contains("require_nonce = false"),
        "{}",
        login.stderr
    );
    assert!(agent.certificates().is_empty());
    assert!(!home.config_dir().exists(), "no session kept");
    // A workload token (no nonce) is refused the same way, with its own hint.
    let token = w
        .idp
        .sign("RS256", &w.idp.claims("bob", "jit-ssh", None, now()));
    let token_path = home.home().join("token.jwt");
    std::fs::write(&token_path, &token).unwrap();
    let login = home.run(&[
        "--ca",
        &w.ca.url,
        "login",
        "--id-token-file",
        token_path.to_str().unwrap(),
        "--no-agent",
    ]);
    assert_exit(&login, 5, "workload tokens carry none");
}

/// A workload's token has no nonce: its issuer has `require_nonce = false`.
#[test]
fn workload_id_token_file_gives_key_files_and_ssh_config_installs_once() {
    let w = world_with(&["require_nonce = false"]);
    let home = ClientHome::new("bob", None);
    let token = w
        .idp
        .sign("RS256", &w.idp.claims("bob", "jit-ssh", None, now()));
    let token_path = home.home().join("token.jwt");
    std::fs::write(&token_path, &token).unwrap();
    let login = home.run(&[
        "--ca",
        &w.ca.url,
        "login",
        "--id-token-file",
        token_path.to_str().unwrap(),
        "--principal",
        "bob",
        "--no-agent",
        "--json",
    ]);
    assert!(login.status.success(), "login: {}", login.stderr);
    let issued = login.json();
    assert_eq!(issued["stored"], "files");
    assert_eq!(issued["renewable"], false);
    let key = std::path::PathBuf::from(issued["key_path"].as_str().unwrap());
    let cert = std::path::PathBuf::from(issued["certificate_path"].as_str().unwrap());
    assert!(key.starts_with(home.files_root()));
    assert_eq!(mode(&key), 0o600);
    assert!(ssh_keygen_list(&cert).contains("bob"));
    let (ok, err) = w.sshd.login(&key, &cert);
    assert!(ok, "ssh -i: {err}");
    assert_eq!(home.browser_runs(), 0);
    // No refresh token: no session kept.
    assert!(!home.config_dir().exists());
    assert!(!token.is_empty() && !login.stderr.contains(&token));

    // ensure sees the files (no network needed), then ssh-config --install.
    let ensure = home.run(&["--ca", &w.ca.url, "ensure", "--no-login"]);
    assert!(ensure.status.success(), "{}", ensure.stderr);
    let ssh_dir = home.home().join(".ssh");
    std::fs::write(ssh_dir.join("config"), "Host example\n  User me\n").unwrap();
    for _ in 0..2 {
        // This CA publishes no host patterns: the test names every host.
        let install = home.run(&["--ca", &w.ca.url, "ssh-config", "--install", "--hosts", "*"]);
        assert!(install.status.success(), "{}", install.stderr);
    }
    let config = std::fs::read_to_string(ssh_dir.join("config")).unwrap();
    assert!(config.starts_with("Host example\n"));
    assert_eq!(
        config.matches("Match host \"*\" exec").count(),
        1,
        "{config}"
    );
    assert!(config.contains("ensure --quiet --ca"));
    assert_eq!(
        std::fs::read_to_string(ssh_dir.join("config.jit-ssh.bak")).unwrap(),
        "Host example\n  User me\n"
    );
    let known_hosts = std::fs::read_to_string(ssh_dir.join("known_hosts")).unwrap();
    assert_eq!(known_hosts.matches("@cert-authority * ").count(), 1);

    // logout removes the files.
    let logout = home.run(&["--ca", &w.ca.url, "logout"]);
    assert!(logout.status.success(), "{}", logout.stderr);
    assert!(!home.files_root().exists());
}

#[test]
fn denied_principal_gives_the_reason_and_exit_6() {
    let w = world();
    let agent = SshAgent::start();
    let home = ClientHome::new("alice", Some(&agent));
    let login = home.run(&["--ca", &w.ca.url, "login", "--principal", "root"]);
    assert_exit(&login, 6, "denied by the CA's policy");
    assert!(login.stderr.contains("root"), "{}", login.stderr);
    assert!(agent.certificates().is_empty());
    assert!(!home.config_dir().exists(), "nothing kept after a denial");
}

#[test]
fn forged_state_on_the_callback_is_refused_with_exit_11() {
    let w = world();
    let agent = SshAgent::start();
    let mut home = ClientHome::new("alice", Some(&agent));
    home.mode = "wrong-state".into();
    let login = home.run(&["--ca", &w.ca.url, "login", "--flow", "browser"]);
    assert_exit(&login, 11, "state that this login did not send");
    assert!(agent.certificates().is_empty());
}

#[test]
fn browser_that_never_comes_back_times_out_with_exit_10() {
    let w = world();
    let mut home = ClientHome::new("alice", None);
    home.mode = "ignore".into();
    let started = Instant::now();
    let login = home.run(&[
        "--ca",
        &w.ca.url,
        "login",
        "--flow",
        "browser",
        "--timeout",
        "2s",
    ]);
    assert_exit(&login, 10, "no answer from the browser");
    assert!(started.elapsed() < Duration::from_secs(30));
}

#[test]
fn cancel_in_the_browser_exits_9() {
    let w = world();
    let mut home = ClientHome::new("alice", None);
    home.mode = "cancel".into();
    let login = home.run(&["--ca", &w.ca.url, "login", "--flow", "browser"]);
    assert_exit(&login, 9, "cancelled");
}

#[test]
fn ca_down_exits_3_and_ensure_without_login_exits_14() {
    let home = ClientHome::new("alice", None);
    let url = format!("http://127.0.0.1:{}", free_port());
    let login = home.run(&["--ca", &url, "login"]);
    assert_exit(&login, 3, "cannot reach the CA");
    let ensure = home.run(&["--ca", &url, "ensure", "--no-login"]);
    assert_exit(&ensure, 14, "jit-ssh login");
    // ID tokens never go to a CA over plain http off loopback.
    let plain = home.run(&[
        "--ca",
        "http://ca.example.com",
        "login",
        "--id-token-env",
        "PATH",
    ]);
    assert_exit(&plain, 1, "must be https://");
    let help = home.run(&["--help"]);
    assert!(
        help.stdout.contains("Exit codes:") && help.stdout.contains("  6  the CA's policy denied")
    );
}

#[test]
fn shell_completions_and_help_examples() {
    for shell in ["bash", "zsh", "fish"] {
        let (status, out, err) = run(
            std::process::Command::new(bin("jit-ssh")).args(["completions", shell]),
            Duration::from_secs(10),
        )
        .unwrap();
        assert!(status.success(), "{shell}: {err}");
        assert!(
            out.contains("login") && out.contains("ssh-config"),
            "{shell}: {out}"
        );
    }
    for (binary, args) in [
        ("jit-ssh", vec!["login", "--help"]),
        ("jit-ssh-ca", vec!["dev", "--help"]),
        ("jit-ssh-ca", vec!["serve", "--help"]),
    ] {
        let (status, out, _) = run(
            std::process::Command::new(bin(binary)).args(&args),
            Duration::from_secs(10),
        )
        .unwrap();
        assert!(status.success());
        assert!(
            out.contains("Example"),
            "{binary} {args:?} --help has no example:\n{out}"
        );
    }
}
