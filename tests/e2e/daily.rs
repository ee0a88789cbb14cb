//! End-to-end tests of the `jit-ssh` days around the happy path (issue 21):
//! plain `ssh` through the installed block (real `ssh`, `ssh-agent`, `sshd`,
//! the real test IdP and CA), the binary the block names, the CA remembered
//! at login, the approvers' sign-in session, and the messages that point the
//! right way. Each test starts and stops its own processes; every wait is
//! bounded.

#![allow(clippy::unwrap_used, missing_docs)]

use std::process::Command;
use std::time::{Duration, Instant};

use e2e::client::{mode, ClientHome, Outcome};
use e2e::openssh::{current_user, SshAgent};
use e2e::*;

/// The CA's hosts in these tests: the sshd on 127.0.0.1. `localhost` is the
/// same machine under a name outside the scope.
const SCOPE: &str = "[client]\nssh_hosts = [\"127.0.0.1\"]";

struct World {
    idp: Idp,
    _setup: CaSetup,
    ca: Ca,
}

/// An IdP and a CA trusting it as issuer `test`, publishing `127.0.0.1` as
/// its hosts when `scoped`.
fn world(scoped: bool) -> World {
    let idp = Idp::start();
    let mut builder = CaSetup::builder().issuer("test", &idp.issuer);
    if scoped {
        builder = builder.top_level_line(SCOPE);
    }
    let setup = builder.build();
    let ca = setup.start();
    World {
        idp,
        _setup: setup,
        ca,
    }
}

/// `ssh ARGS` with `home`'s surroundings (so a `Match exec` runs `jit-ssh`
/// as that user would), its `~/.ssh/config`, no host key checks, and no
/// prompt of ssh's own; bounded.
fn ssh(home: &ClientHome, args: &[&str]) -> (Outcome, Duration) {
    let jit = home.command(&[]);
    let mut command = Command::new("ssh");
    command.env_clear();
    for (key, value) in jit.get_envs() {
        if let Some(value) = value {
            command.env(key, value);
        }
    }
    command
        .arg("-F")
        .arg(home.home().join(".ssh").join("config"))
        .args(["-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no"])
        .args([
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "ConnectTimeout=10",
        ])
        .args(args);
    let started = Instant::now();
    let outcome = home.run_command(&mut command);
    (outcome, started.elapsed())
}

fn ok(outcome: &Outcome, what: &str) {
    outcome.ok(what);
}

/// Item 1: the block is scoped to the hosts the CA publishes. While signed
/// out, an `ssh` to another host never runs jit-ssh and fails at once; an
/// `ssh` to the CA's host runs `ensure`, whose sign-in prompt shows
/// although the block says `--quiet`, and gets in.
#[test]
fn ssh_runs_jit_ssh_only_for_the_cas_hosts_and_never_hides_the_sign_in() {
    let w = world(true);
    let sshd = Sshd::start(&w.ca.user_ca_keys(), &["alice"]);
    let agent = SshAgent::start();
    let home = ClientHome::new("alice", Some(&agent));
    let port = sshd.port.to_string();
    let install = home.run(&["--ca", &w.ca.url, "ssh-config", "--install"]);
    ok(&install, "ssh-config --install");
    let config = std::fs::read_to_string(home.home().join(".ssh/config")).unwrap();
    assert!(
        config.contains("Match host \"127.0.0.1\" exec \""),
        "{config}"
    );

    // Out of scope, signed out: ssh -G evaluates the config without
    // connecting, and ssh skips the exec.
    let (shown, _) = ssh(&home, &["-vvv", "-G", "-p", &port, "localhost"]);
    ok(&shown, "ssh -G localhost");
    assert!(shown.stderr.contains("skipped exec"), "{}", shown.stderr);
    assert!(
        !shown.stderr.contains("Executing command"),
        "{}",
        shown.stderr
    );
    assert!(
        !shown.stdout.contains("certificatefile"),
        "{}",
        shown.stdout
    );
    // A real ssh there fails (no certificate) at once, without jit-ssh.
    let user_at = |host: &str| format!("{}@{host}", current_user());
    let (outside, took) = ssh(&home, &["-v", "-p", &port, &user_at("localhost"), "true"]);
    assert!(!outside.status.success(), "no certificate yet");
    assert!(
        !outside.stderr.contains("Executing command"),
        "{}",
        outside.stderr
    );
    assert!(took < Duration::from_secs(20), "took {took:?}");
    assert_eq!(home.browser_runs(), 0, "no sign-in for another host");
    assert!(agent.certificates().is_empty());

    // In scope, signed out: ensure signs in, and its prompt reaches ssh's
    // stderr (the person's terminal) despite --quiet.
    let (inside, _) = ssh(
        &home,
        &["-p", &port, &user_at("127.0.0.1"), "echo jit-ssh-ok"],
    );
    ok(&inside, "ssh 127.0.0.1 through the block");
    assert!(inside.stdout.contains("jit-ssh-ok"));
    assert!(
        inside.stderr.contains("Sign in with your browser"),
        "the prompt was hidden: {}",
        inside.stderr
    );
    assert_eq!(home.browser_runs(), 1);
    assert_eq!(agent.certificates().len(), 1);

    // Signed in: ssh -G to the CA's host runs ensure (no network, no
    // browser) and the block applies.
    let (shown, _) = ssh(&home, &["-G", "-p", &port, "127.0.0.1"]);
    ok(&shown, "ssh -G 127.0.0.1");
    assert!(shown.stdout.contains("certificatefile"), "{}", shown.stdout);
    assert_eq!(home.browser_runs(), 1);
    drop(w.idp);
}

/// Item 1: without host patterns (the CA publishes none and no --hosts)
/// nothing is installed; --hosts scopes it; installing twice, and again
/// after the CA restarted, adds nothing; --uninstall leaves the files as
/// they were.
#[test]
fn ssh_config_needs_a_scope_installs_once_and_uninstalls_exactly() {
    let idp = Idp::start();
    let setup = CaSetup::builder()
        .issuer("test", &idp.issuer)
        .listen(&format!("127.0.0.1:{}", free_port()))
        .build();
    let ca = setup.start();
    let url = ca.url.clone();
    let home = ClientHome::new("alice", None);
    let ssh_dir = home.home().join(".ssh");
    std::fs::create_dir_all(&ssh_dir).unwrap();
    let original_config = "Host example\n  User me\n";
    let original_known = "example.org ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOriginal\n";
    std::fs::write(ssh_dir.join("config"), original_config).unwrap();
    std::fs::write(ssh_dir.join("known_hosts"), original_known).unwrap();

    let unscoped = home.run(&["--ca", &url, "ssh-config", "--install"]);
    assert_eq!(unscoped.code(), 1, "{}", unscoped.stderr);
    assert!(unscoped.stderr.contains("--hosts"), "{}", unscoped.stderr);
    assert_eq!(
        std::fs::read_to_string(ssh_dir.join("config")).unwrap(),
        original_config
    );

    let install = || {
        let out = home.run(&[
            "--ca",
            &url,
            "ssh-config",
            "--install",
            "--hosts",
            "*.corp.test,127.0.0.1",
        ]);
        ok(&out, "ssh-config --install --hosts");
    };
    let check_once = || {
        let config = std::fs::read_to_string(ssh_dir.join("config")).unwrap();
        assert_eq!(
            config
                .matches("Match host \"*.corp.test,127.0.0.1\" exec")
                .count(),
            1,
            "{config}"
        );
        assert_eq!(config.matches("# BEGIN jit-ssh").count(), 1, "{config}");
        let known = std::fs::read_to_string(ssh_dir.join("known_hosts")).unwrap();
        assert_eq!(
            known
                .matches("@cert-authority *.corp.test,127.0.0.1 ")
                .count(),
            1,
            "{known}"
        );
        assert_eq!(known.matches("@cert-authority").count(), 1, "{known}");
        assert_eq!(mode(&ssh_dir.join("config")), 0o600);
    };
    install();
    install();
    check_once();

    // The CA restarts on its address: nothing is added twice.
    drop(ca);
    let _ca = setup.start();
    install();
    check_once();

    let out = home.run(&["--ca", &url, "ssh-config", "--uninstall"]);
    ok(&out, "ssh-config --uninstall");
    assert_eq!(
        std::fs::read_to_string(ssh_dir.join("config")).unwrap(),
        original_config
    );
    assert_eq!(
        std::fs::read_to_string(ssh_dir.join("known_hosts")).unwrap(),
        original_known
    );
}

/// Item 2: the block names the `jit-ssh` on PATH when it is this program,
/// and says why when it cannot.
#[test]
fn the_block_names_the_jit_ssh_on_path_not_the_build_directory() {
    let w = world(true);
    let home = ClientHome::new("alice", None);
    let bin_dir = home.home().join("bin");
    std::fs::create_dir_all(&bin_dir).unwrap();
    let installed = bin_dir.join("jit-ssh");
    std::os::unix::fs::symlink(bin("jit-ssh"), &installed).unwrap();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let shown = home.run_command(
        home.command(&["--ca", &w.ca.url, "ssh-config"])
            .env("PATH", &path),
    );
    ok(&shown, "ssh-config with jit-ssh on PATH");
    assert!(
        shown
            .stdout
            .contains(&format!("exec \"{} ensure", installed.display())),
        "{}",
        shown.stdout
    );
    assert!(!shown.stderr.contains("warning"), "{}", shown.stderr);

    // Not on PATH: the running program, with the way out.
    let shown = home.run(&["--ca", &w.ca.url, "ssh-config"]);
    ok(&shown, "ssh-config, jit-ssh not on PATH");
    assert!(
        shown
            .stdout
            .contains(&format!("exec \"{} ensure", bin("jit-ssh").display())),
        "{}",
        shown.stdout
    );
    assert!(
        shown
            .stderr
            .contains("cargo install --locked --path ca-client"),
        "{}",
        shown.stderr
    );

    // Another program of that name on PATH is not taken for this one.
    std::fs::remove_file(&installed).unwrap();
    std::fs::write(&installed, "#!/bin/sh\nexit 0\n").unwrap();
    let shown = home.run_command(
        home.command(&["--ca", &w.ca.url, "ssh-config"])
            .env("PATH", &path),
    );
    ok(&shown, "ssh-config with another jit-ssh on PATH");
    assert!(!shown.stdout.contains(&installed.display().to_string()));
    assert!(shown.stderr.contains("another version"), "{}", shown.stderr);
}

/// Item 3: after `login --ca URL` the CA is remembered (and said so):
/// `ensure`, `ssh-config`, `status`, `logout` need no `--ca`; a second CA is
/// kept apart by name.
#[test]
fn a_login_remembers_its_ca_and_later_commands_need_no_ca() {
    let w = world(true);
    let agent = SshAgent::start();
    let home = ClientHome::new("alice", Some(&agent));
    let first = home.run(&["--ca", &w.ca.url, "login", "--flow", "browser"]);
    ok(&first, "login");
    assert!(
        first.stderr.contains("as your default CA"),
        "{}",
        first.stderr
    );
    let remembered = home.data_dir();
    for path in e2e::client::files_under(&remembered) {
        assert_eq!(mode(&path), 0o600, "{}", path.display());
    }

    ok(&home.run(&["ensure", "--no-login"]), "ensure without --ca");
    let shown = home.run(&["ssh-config"]);
    ok(&shown, "ssh-config without --ca");
    assert!(shown.stdout.contains(&w.ca.url), "{}", shown.stdout);

    // A second CA: remembered beside the first, picked by name.
    let setup2 = CaSetup::builder().issuer("test", &w.idp.issuer).build();
    let ca2 = setup2.start();
    let second = home.run(&["--ca", &ca2.url, "login", "--flow", "browser"]);
    ok(&second, "login at a second CA");
    let name2 = ca2.url.trim_start_matches("http://").replace(':', "_");
    assert!(
        second.stderr.contains(&format!("--ca {name2}")),
        "{}",
        second.stderr
    );
    ok(
        &home.run(&["--ca", &name2, "ensure", "--no-login"]),
        "ensure --ca NAME",
    );
    let status = home.run(&["status", "--json"]);
    ok(&status, "status");
    let cas = status.json()["cas"].clone();
    let urls: Vec<&str> = cas
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["url"].as_str().unwrap())
        .collect();
    assert_eq!(urls.len(), 2, "{cas}");
    assert!(urls.contains(&w.ca.url.as_str()) && urls.contains(&ca2.url.as_str()));
    let defaults: Vec<&serde_json::Value> = cas
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["default"] == true)
        .collect();
    assert_eq!(defaults.len(), 1);
    assert_eq!(defaults[0]["url"], w.ca.url.as_str());
    let text = home.run(&["status"]);
    assert!(text.stdout.contains(&name2), "{}", text.stdout);

    // logout without --ca: the default CA's certificate goes, the other stays.
    ok(&home.run(&["logout"]), "logout without --ca");
    assert_eq!(agent.certificates().len(), 1);
    ok(&home.run(&["--ca", &name2, "logout"]), "logout --ca NAME");
    assert!(agent.certificates().is_empty());
    assert_eq!(home.browser_runs(), 2);
}

/// Item 4 (and item 10's request messages): a person who never ran `login`
/// signs in once for `requests` and `approve` needs no second browser
/// trip; a missing reason names `--reason`; a principal no rule offers
/// says whom to ask.
#[test]
fn an_approver_signs_in_once_and_request_refusals_speak_to_the_person() {
    let idp = Idp::start();
    let setup = CaSetup::builder()
        .issuer("corp", &idp.issuer)
        .shipped_policies()
        .build();
    let ca = setup.start();
    let url = ca.url.as_str();
    let bob = ClientHome::new("bob", None);
    let alice = ClientHome::new("alice", None);
    let carol = ClientHome::new("carol", None);

    let no_reason = bob.run(&["--ca", url, "request", "--principal", "root", "--no-wait"]);
    assert_eq!(no_reason.code(), 1, "{}", no_reason.stderr);
    assert!(
        no_reason.stderr.contains("add --reason"),
        "{}",
        no_reason.stderr
    );
    let created = bob
        .run(&[
            "--ca",
            url,
            "request",
            "--principal",
            "root",
            "--reason",
            "INC-1: disk full",
            "--no-wait",
            "--json",
        ])
        .ok_json("bob request");
    let id = created["id"].as_u64().unwrap().to_string();
    assert_eq!(
        bob.browser_runs(),
        1,
        "bob's first command kept his session"
    );

    let not_offered = alice.run(&[
        "--ca",
        url,
        "request",
        "--principal",
        "root",
        "--reason",
        "curious",
        "--no-wait",
    ]);
    assert_eq!(not_offered.code(), 6, "{}", not_offered.stderr);
    assert!(
        not_offered
            .stderr
            .contains("ask the CA's operators which principals"),
        "{}",
        not_offered.stderr
    );

    // carol signs in once, for `requests`; `approve` renews silently.
    carol
        .run(&["--ca", url, "requests", "--pending", "--json"])
        .ok_json("carol requests");
    assert_eq!(carol.browser_runs(), 1);
    let approved = carol
        .run(&["--ca", url, "approve", &id, "--json"])
        .ok_json("carol approve");
    assert_eq!(approved["status"], "approved");
    assert_eq!(carol.browser_runs(), 1, "approve opened the browser again");
    let status = carol.run(&["status"]);
    assert!(
        status.stdout.contains("renewals need no browser"),
        "{}",
        status.stdout
    );
    drop(idp);
}

/// Item 10: once the identity provider refused the stored refresh token,
/// `status` no longer says renewals need no browser.
#[test]
fn a_refused_refresh_token_is_forgotten_and_status_stops_promising_renewals() {
    let w = world(false);
    let mut home = ClientHome::new("alice", None);
    ok(
        &home.run(&["--ca", &w.ca.url, "login", "--flow", "browser"]),
        "login",
    );
    let session = std::fs::read_dir(home.config_dir())
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.join("refresh_token").exists())
        .expect("a session");
    std::fs::write(session.join("refresh_token"), "not-a-refresh-token").unwrap();
    home.mode = "cancel".into();
    let requests = home.run(&["--ca", &w.ca.url, "requests"]);
    assert_eq!(requests.code(), 9, "{}", requests.stderr);
    assert!(
        requests.stderr.contains("sign-in session has ended"),
        "{}",
        requests.stderr
    );
    let status = home.run(&["status"]);
    assert!(
        !status.stdout.contains("renewals need no browser"),
        "{}",
        status.stdout
    );
}

/// Item 9: a URL where no CA answers, a bare `host:port`, and `https://`
/// to a plain-http CA each say what is wrong.
#[test]
fn a_wrong_ca_url_says_what_is_wrong_with_it() {
    let w = world(false);
    let home = ClientHome::new("alice", None);
    let wrong = format!("{}/dev-idp", w.ca.url);
    let out = home.run(&["--ca", &wrong, "login", "--flow", "browser"]);
    assert_eq!(out.code(), 3, "{}", out.stderr);
    assert!(
        out.stderr.contains("no jit-ssh CA at this URL"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains(&format!("{wrong}/v1/config")),
        "{}",
        out.stderr
    );
    assert!(
        !out.stderr.contains("jit-ssh login` again"),
        "{}",
        out.stderr
    );

    let bare = w.ca.url.trim_start_matches("http://");
    let out = home.run(&["--ca", bare, "login", "--flow", "browser"]);
    assert_eq!(out.code(), 1, "{}", out.stderr);
    assert!(
        out.stderr.contains(&format!("https://{bare}")),
        "{}",
        out.stderr
    );

    let tls = format!("https://{bare}");
    let out = home.run(&["--ca", &tls, "login", "--flow", "browser"]);
    assert_eq!(out.code(), 3, "{}", out.stderr);
    assert!(out.stderr.contains("plain HTTP"), "{}", out.stderr);
    assert!(!out.stderr.contains("InvalidContentType"), "{}", out.stderr);
    assert_eq!(home.browser_runs(), 0);
}

/// Item 10: a lifetime the policy caps is said with the rule that capped
/// it, and a certificate's principals are called principals.
#[test]
fn a_capped_lifetime_is_said_and_principals_are_named_as_such() {
    let idp = Idp::start();
    let setup = CaSetup::builder()
        .issuer("test", &idp.issuer)
        .policy(
            "[[rule]]\nname = \"short-logins\"\nprincipals = [\"{username}\", \"deploy\"]\n\
             default_ttl = \"5m\"\nmax_ttl = \"15m\"\n[rule.match]\nissuer = [\"test\"]\n",
        )
        .build();
    let ca = setup.start();
    let home = ClientHome::new("bob", None);
    let out = home.run(&[
        "--ca", &ca.url, "login", "--flow", "browser", "--ttl", "30m",
    ]);
    ok(&out, "login --ttl 30m");
    assert!(out.stderr.contains("Asked for --ttl 30m"), "{}", out.stderr);
    assert!(out.stderr.contains("short-logins"), "{}", out.stderr);
    assert!(
        out.stderr
            .contains("Certificate for principals bob, deploy"),
        "{}",
        out.stderr
    );
    let out = home.run(&[
        "--ca", &ca.url, "login", "--flow", "browser", "--ttl", "10m",
    ]);
    ok(&out, "login --ttl 10m");
    assert!(!out.stderr.contains("Asked for"), "{}", out.stderr);
}

/// Item 10: `status` shows an expired certificate with a hint and exits
/// 14 while no valid certificate of its CA replaces it.
#[test]
fn status_of_an_expired_certificate_hints_and_exits_14() {
    let home = ClientHome::new("alice", None);
    let dir = home.files_root().join("ca.example.com");
    std::fs::create_dir_all(&dir).unwrap();
    let keys = tempfile::tempdir().unwrap();
    let (ca_key, _) = ssh_keygen(keys.path(), "ca", &["-t", "ed25519"]);
    let (user_key, _) = ssh_keygen(keys.path(), "user", &["-t", "ed25519"]);
    let (status, _, err) = run(
        Command::new("ssh-keygen")
            .arg("-s")
            .arg(&ca_key)
            .args(["-I", "jit-ssh user=alice issuer=test", "-n", "alice"])
            .args(["-V", "20200101:20200102"])
            .arg(user_key.with_extension("pub")),
        Duration::from_secs(10),
    )
    .unwrap();
    assert!(status.success(), "{err}");
    let cert = std::fs::read_to_string(keys.path().join("user-cert.pub")).unwrap();
    std::fs::write(dir.join("id_ed25519-cert.pub"), cert).unwrap();
    let out = home.run(&["status"]);
    assert_eq!(out.code(), 14, "{}\n{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("expired"), "{}", out.stdout);
    assert!(
        out.stdout
            .contains("The certificate from CA ca.example.com has expired"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("login"), "{}", out.stdout);
}

/// Item 10: `jit-ssh-ca dev` on a taken port says so once and names
/// `--listen`, before it creates anything in `--data-dir`.
#[test]
fn dev_on_a_taken_port_names_listen_once_and_creates_no_keys() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = taken.local_addr().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("dev-data");
    let (status, _, stderr) = run(
        Command::new(bin("jit-ssh-ca"))
            .args(["dev", "--listen", &address, "--data-dir"])
            .arg(&data_dir),
        STARTUP,
    )
    .unwrap();
    assert!(!status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("cannot listen on {address}")),
        "{stderr}"
    );
    assert_eq!(stderr.matches("--listen").count(), 1, "{stderr}");
    assert_eq!(stderr.matches("os error").count(), 1, "{stderr}");
    assert!(
        !data_dir.exists(),
        "keys were made for a CA that never started"
    );
}

/// docs/getting-started.md step 4: the dev CA publishes its loopback hosts,
/// so `ssh-config` needs no `--hosts` there.
#[test]
fn the_dev_ca_publishes_its_loopback_hosts_for_ssh_config() {
    let dev = e2e::dev::DevCa::start(&[]);
    let home = ClientHome::new("alice", None);
    let shown = home.run(&["--ca", &dev.url, "ssh-config"]);
    ok(&shown, "ssh-config against the dev CA");
    assert!(
        shown
            .stdout
            .contains("Match host \"127.0.0.1,localhost\" exec \""),
        "{}",
        shown.stdout
    );
}
