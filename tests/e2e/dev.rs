//! End-to-end: `jit-ssh-ca dev` is a complete CA. Its embedded identity
//! provider runs real OpenID flows, its certificates are accepted by a real
//! sshd trusting the key its banner prints, and it refuses to be anything but
//! a loopback toy.

#![allow(clippy::unwrap_used)]

use std::process::Command;
use std::time::Duration;

use ca_client::{nonce_for, CaClient};
use e2e::client::ClientHome;
use e2e::dev::{dev_login, device_authorize, device_poll, DevCa};
use e2e::openssh::{current_user, ssh_with_agent, SshAgent};
use e2e::*;
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_mode_login_page_flow_gives_a_certificate_sshd_accepts() {
    let dev = DevCa::start(&[]);
    assert!(dev.banner.contains("DEVELOPMENT MODE"), "{}", dev.banner);
    // A newcomer's first run starts without warnings (the example CI rule,
    // for an issuer dev mode cannot trust, is left out).
    let startup = dev.process.stderr.text();
    assert!(!startup.contains("WARN"), "{startup}");
    assert!(dev
        .banner
        .contains(&format!("jit-ssh login --ca {}", dev.url)));
    let dir = tempfile::tempdir().unwrap();
    let (key_path, key) = ssh_keygen(dir.path(), "bob", &["-t", "ed25519"]);
    let nonce = nonce_for(&key).unwrap();
    let tokens = dev_login(
        &dev.issuer,
        Some("bob"),
        &nonce,
        "openid groups offline_access",
    )
    .await
    .unwrap();
    let id_token = tokens["id_token"].as_str().unwrap();
    let client = CaClient::new(&dev.url, None).unwrap();
    let issued = client
        .request_user_certificate(id_token, &key, &[], None)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", dev.process.stderr.text()));
    assert_eq!(issued.principals, ["bob", "deploy"]);
    let cert_path = dir.path().join("bob-cert.pub");
    std::fs::write(&cert_path, format!("{}\n", issued.certificate)).unwrap();
    let sshd = Sshd::start(&format!("{}\n", dev.user_ca_line), &["bob"]);
    let (ok, err) = sshd.login(&key_path, &cert_path);
    assert!(
        ok,
        "sshd refused the dev certificate: {err}\n{}",
        sshd.log()
    );

    // The refresh token rotates and the refreshed ID token keeps the nonce,
    // so it certifies the same key again (once).
    let refresh = tokens["refresh_token"].as_str().unwrap();
    let http = http_client();
    let refresh_with = |token: String| {
        let http = http.clone();
        let url = format!("{}/token", dev.issuer);
        async move {
            http.post(url)
                .form(&[
                    ("grant_type", "refresh_token"),
                    ("refresh_token", token.as_str()),
                    ("client_id", "jit-ssh"),
                ])
                .send()
                .await
                .unwrap()
        }
    };
    let renewed: Value = refresh_with(refresh.to_string())
        .await
        .json()
        .await
        .unwrap();
    assert_ne!(renewed["refresh_token"], tokens["refresh_token"]);
    let again = client
        .request_user_certificate(renewed["id_token"].as_str().unwrap(), &key, &[], None)
        .await
        .unwrap();
    assert_eq!(again.principals, ["bob", "deploy"]);
    let spent = refresh_with(refresh.to_string()).await;
    assert_eq!(spent.status(), 400, "a rotated refresh token must be spent");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_login_and_device_flow_need_no_page() {
    let dev = DevCa::start(&["--user", "erin:eng", "--auto-login", "erin"]);
    let key =
        ssh_key::PrivateKey::random(&mut rand_core::OsRng, ssh_key::Algorithm::Ed25519).unwrap();
    let nonce = nonce_for(&key).unwrap();
    let tokens = dev_login(&dev.issuer, None, &nonce, "openid")
        .await
        .unwrap();
    assert!(
        tokens.get("refresh_token").is_none(),
        "no offline_access, no refresh token"
    );
    let client = CaClient::new(&dev.url, None).unwrap();
    let issued = client
        .request_user_certificate(tokens["id_token"].as_str().unwrap(), &key, &[], None)
        .await
        .unwrap();
    assert_eq!(issued.principals, ["erin"]);

    // Device flow: with --auto-login it completes at the first poll, and a
    // poll faster than the interval is told to slow down.
    let http = http_client();
    let device = device_authorize(&http, &dev.issuer, "openid groups")
        .await
        .unwrap();
    assert!(device["verification_uri_complete"]
        .as_str()
        .unwrap()
        .contains(device["user_code"].as_str().unwrap()));
    let first = device_poll(&http, &dev.issuer, &device).await.unwrap();
    assert!(first["id_token"].is_string(), "{first}");
    let reused = device_poll(&http, &dev.issuer, &device).await.unwrap();
    assert_eq!(reused["error"], "invalid_grant");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn device_flow_waits_for_the_user_and_enforces_the_interval() {
    let dev = DevCa::start(&[]);
    let http = http_client();
    let device = device_authorize(&http, &dev.issuer, "openid offline_access")
        .await
        .unwrap();
    let interval = device["interval"].as_u64().unwrap();
    let pending = device_poll(&http, &dev.issuer, &device).await.unwrap();
    assert_eq!(pending["error"], "authorization_pending");
    let hurried = device_poll(&http, &dev.issuer, &device).await.unwrap();
    assert_eq!(hurried["error"], "slow_down");
    // The user opens verification_uri_complete and picks carol.
    let page = http
        .get(device["verification_uri_complete"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("carol"), "{page}");
    let done = http
        .post(format!("{}/device", dev.issuer))
        .form(&[
            ("user_code", device["user_code"].as_str().unwrap()),
            ("user", "carol"),
        ])
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(done.contains("device-success"), "{done}");
    // Waits, on purpose, for the polling interval the provider asked for:
    // polling sooner is answered slow_down, as checked above.
    tokio::time::sleep(Duration::from_secs(interval + 1)).await;
    let tokens = device_poll(&http, &dev.issuer, &device).await.unwrap();
    assert!(tokens["refresh_token"].is_string(), "{tokens}");
    let claims: Value = serde_json::from_slice(
        &base64::Engine::decode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            tokens["id_token"]
                .as_str()
                .unwrap()
                .split('.')
                .nth(1)
                .unwrap(),
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(claims["preferred_username"], "carol");
    assert_eq!(claims["groups"], serde_json::json!(["sre-leads"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_provider_refuses_what_a_real_one_refuses() {
    let dev = DevCa::start(&[]);
    let http = http_client();
    let authorize = |params: &[(&str, &str)]| {
        http.get(format!("{}/authorize", dev.issuer))
            .query(params)
            .send()
    };
    let base = [
        ("client_id", "jit-ssh"),
        ("response_type", "code"),
        ("redirect_uri", "http://127.0.0.1:1/cb"),
        ("scope", "openid"),
        ("state", "s"),
        ("code_challenge", "abc"),
        ("code_challenge_method", "S256"),
    ];
    let with = |name: &str, value: &'static str| {
        base.iter()
            .map(|(k, v)| if *k == name { (*k, value) } else { (*k, *v) })
            .collect::<Vec<_>>()
    };
    // A redirect to a non-loopback host is never followed.
    let evil = authorize(&with("redirect_uri", "https://evil.example/cb"))
        .await
        .unwrap();
    assert_eq!(evil.status(), 400);
    let other_client = authorize(&with("client_id", "someone-else")).await.unwrap();
    assert_eq!(other_client.status(), 400);
    // Without PKCE S256 the error goes back to the client.
    let plain = authorize(&with("code_challenge_method", "plain"))
        .await
        .unwrap();
    let location = plain.headers()["location"].to_str().unwrap().to_string();
    assert!(location.contains("error=invalid_request"), "{location}");
    // A wrong PKCE verifier or a replayed code gets no tokens.
    let token = http
        .post(format!("{}/token", dev.issuer))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", "made-up"),
            ("redirect_uri", "http://127.0.0.1:1/cb"),
            ("client_id", "jit-ssh"),
            ("code_verifier", "x"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(token.status(), 400);
}

/// DNS rebinding: a web page at evil.example whose name then resolves to
/// 127.0.0.1 talks to the dev CA as its own origin, so the browser would let
/// it read what the password-less provider answers. The dev CA answers only
/// requests naming it by a loopback name with its port.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_mode_refuses_requests_for_another_host_against_dns_rebinding() {
    // With --auto-login, a device authorization is approved at once: what a
    // rebinding page would go for first.
    let dev = DevCa::start(&["--user", "erin:eng", "--auto-login", "erin"]);
    let origin = |url: &str| -> (String, std::net::SocketAddr) {
        let authority = url
            .strip_prefix("http://")
            .and_then(|rest| rest.split('/').next())
            .unwrap()
            .to_string();
        let address = authority.parse().unwrap();
        (authority, address)
    };
    let (ca_authority, ca_address) = origin(&dev.url);
    let (metrics_authority, metrics_address) = origin(&dev.metrics);
    // The browser after the rebinding: evil.example resolves to the CA.
    let rebound = |address: std::net::SocketAddr| {
        reqwest::Client::builder()
            .resolve("evil.example", address)
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap()
    };
    // It names the page's host, with the port, as a browser does.
    let evil = |url: &str, authority: &str, address: std::net::SocketAddr| {
        url.replace(authority, &format!("evil.example:{}", address.port()))
    };
    let evil_issuer = evil(&dev.issuer, &ca_authority, ca_address);
    let evil_ca = evil(&dev.url, &ca_authority, ca_address);
    let evil_metrics = evil(&dev.metrics, &metrics_authority, metrics_address);
    let http = rebound(ca_address);
    for (refused, own) in [
        (
            http.post(format!("{evil_issuer}/device_authorization"))
                .form(&[("client_id", "jit-ssh"), ("scope", "openid")]),
            &ca_authority,
        ),
        (
            http.get(format!("{evil_issuer}/.well-known/openid-configuration")),
            &ca_authority,
        ),
        (
            http.get(format!("{evil_issuer}/authorize?client_id=jit-ssh")),
            &ca_authority,
        ),
        (http.get(format!("{evil_ca}/v1/config")), &ca_authority),
        (http.get(format!("{evil_ca}/nowhere")), &ca_authority),
        (
            rebound(metrics_address).get(&evil_metrics),
            &metrics_authority,
        ),
    ] {
        let answer = refused.send().await.unwrap();
        let url = answer.url().to_string();
        assert_eq!(answer.status(), 421, "{url}");
        let body: Value = answer.json().await.unwrap();
        assert_eq!(body["error"]["code"], "invalid_request", "{url}: {body}");
        // It says which names it answers for, and why.
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains(own.as_str()), "{url}: {message}");
        assert!(message.contains("DNS rebinding"), "{url}: {message}");
    }
    // The same requests by loopback name are answered, and the device flow
    // completes as usual.
    let http = http_client();
    let localhost = |url: &str, authority: &str, port: u16| {
        url.replace(authority, &format!("localhost:{port}"))
    };
    let config = http
        .get(localhost(
            &format!("{}/v1/config", dev.url),
            &ca_authority,
            ca_address.port(),
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(config.status(), 200);
    let metrics = http
        .get(localhost(
            &dev.metrics,
            &metrics_authority,
            metrics_address.port(),
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(metrics.status(), 200);
    assert!(metrics
        .text()
        .await
        .unwrap()
        .contains("jit_ssh_ca_build_info"));
    let device = device_authorize(&http, &dev.issuer, "openid")
        .await
        .unwrap();
    let tokens = device_poll(&http, &dev.issuer, &device).await.unwrap();
    assert!(tokens["id_token"].is_string(), "{tokens}");
}

#[test]
fn dev_mode_refuses_non_loopback_and_real_data_dirs() {
    for listen in ["--listen", "--metrics-listen"] {
        let (status, _, err) = run(
            Command::new(bin("jit-ssh-ca")).args(["dev", listen, "0.0.0.0:0"]),
            STARTUP,
        )
        .unwrap();
        assert!(!status.success(), "{listen}");
        assert!(err.contains("loopback only"), "{listen}: {err}");
    }

    // A data directory with real (non-dev) keys is never opened by dev mode.
    let real = CaSetup::builder()
        .issuer("corp", "https://idp.example.com")
        .build();
    let (status, _, err) = run(
        Command::new(bin("jit-ssh-ca"))
            .args(["dev", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(&real.data_dir),
        STARTUP,
    )
    .unwrap();
    assert!(!status.success());
    assert!(err.contains("not from dev mode"), "{err}");
}

#[test]
fn the_client_logs_in_to_dev_mode_with_both_flows_and_ssh_works() {
    let dev = DevCa::start(&[]);
    let sshd = Sshd::start(&format!("{}\n", dev.user_ca_line), &["alice", "bob"]);
    // The example policies: alice (eng) gets her login, bob (eng, sre) also deploy.
    for (flow, user, principals) in [
        ("browser", "alice", vec!["alice"]),
        ("device", "bob", vec!["bob", "deploy"]),
    ] {
        let agent = SshAgent::start();
        let home = ClientHome::new(user, Some(&agent));
        // 30 s is under ensure's one-minute margin: ensure must renew.
        let login = home.run(&[
            "--ca", &dev.url, "login", "--flow", flow, "--ttl", "30s", "--json",
        ]);
        assert!(
            login.status.success(),
            "{flow} login: {}\n{}",
            login.stderr,
            dev.process.stderr.text()
        );
        assert_eq!(
            login.json()["principals"],
            serde_json::json!(principals),
            "{flow}"
        );
        assert_eq!(agent.certificates().len(), 1, "{flow}");
        let (ok, err) = sshd.login_with_agent(&agent.socket);
        assert!(
            ok,
            "{flow}: ssh with the dev certificate: {err}\n{}",
            sshd.log()
        );
        // Renewal goes through the dev provider's refresh token, no browser.
        let runs = home.browser_runs();
        let renewed = home.run(&["--ca", &dev.url, "ensure", "--no-login"]);
        assert!(
            renewed.status.success(),
            "{flow} ensure: {}",
            renewed.stderr
        );
        assert!(
            renewed.stderr.contains("Renewed"),
            "{flow}: {}",
            renewed.stderr
        );
        assert_eq!(
            home.browser_runs(),
            runs,
            "{flow}: renewal opened the browser"
        );
    }
}

#[test]
fn readme_quick_start_works_as_written() {
    let readme = std::fs::read_to_string(repo_root().join("README.md")).unwrap();
    // The set-up commands and the walk-through, exactly as a newcomer copies them.
    for line in [
        "cargo build --release --locked && target/release/jit-ssh-ca dev",
        "scripts/test",
        "$ jit-ssh login --ca http://127.0.0.1:8443",
        "TrustedUserCAKeys",
    ] {
        assert!(readme.contains(line), "README lacks {line:?}");
    }
    // The same steps, on a free port instead of 8443.
    let dev = DevCa::start(&[]);
    let sshd = Sshd::start(&format!("{}\n", dev.user_ca_line), &["alice"]);
    let agent = SshAgent::start();
    let home = ClientHome::new("alice", Some(&agent));
    let login = home.run(&["login", "--ca", &dev.url]);
    assert!(login.status.success(), "{}", login.stderr);
    assert!(
        login.stderr.contains("Certificate for principal alice"),
        "{}",
        login.stderr
    );
    let (ok, err) = sshd.login_with_agent(&agent.socket);
    assert!(ok, "ssh after the README login: {err}");
}

/// docs/getting-started.md step 2 (a host that trusts the CA), run exactly as
/// written but in a temporary directory and on a free port, then steps 3 and
/// 4 against it.
#[test]
fn getting_started_host_setup_works_as_written() {
    let guide = std::fs::read_to_string(repo_root().join("docs/getting-started.md")).unwrap();
    let after = |marker: &str, fence: &str| -> String {
        guide
            .split(marker)
            .nth(1)
            .and_then(|rest| rest.split(fence).nth(1))
            .and_then(|rest| rest.split("```").next())
            .unwrap_or_else(|| panic!("getting-started.md lacks the block after {marker:?}"))
            .to_string()
    };
    let config = after("Write `/tmp/jit-sshd/sshd_config`:", "```\n");
    let commands = after("then:", "```sh\n");
    let dev = DevCa::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let localize = |text: &str| {
        text.replace("/tmp/jit-sshd", &dir.path().display().to_string())
            .replace("127.0.0.1:2222", &format!("127.0.0.1:{port}"))
            .replace("http://127.0.0.1:8443", &dev.url)
    };
    std::fs::write(dir.path().join("sshd_config"), localize(&config)).unwrap();
    // Everything but the last line (sshd in the foreground), as a script.
    let commands = localize(&commands);
    let (setup, sshd_line) = commands.trim_end().rsplit_once('\n').unwrap();
    let (status, _, err) = run(
        Command::new("bash")
            .args(["-euo", "pipefail", "-c", setup])
            .env("USER", current_user()),
        STARTUP,
    )
    .unwrap();
    assert!(status.success(), "getting-started step 2 failed: {err}");
    assert!(
        sshd_line.starts_with("/usr/sbin/sshd -D -e -f "),
        "{sshd_line}"
    );
    std::fs::create_dir_all("/run/sshd").ok();
    let mut words = sshd_line.split_whitespace();
    let sshd = Running::spawn(Command::new(words.next().unwrap()).args(words)).unwrap();
    sshd.stderr
        .wait_for("Server listening on", STARTUP)
        .unwrap_or_else(|e| {
            panic!(
                "sshd from the guide did not start: {e}\n{}",
                sshd.stderr.text()
            )
        });

    let agent = SshAgent::start();
    let home = ClientHome::new("alice", Some(&agent));
    let login = home.run(&["login", "--ca", &dev.url]);
    assert!(login.status.success(), "{}", login.stderr);
    let (ok, err) = ssh_with_agent(port, &current_user(), &agent.socket);
    assert!(ok, "ssh as in step 4: {err}\n{}", sshd.stderr.text());
    // The principals file is per account (`%u`): alice's certificate opens
    // no account but the one whose file names her (nobody is not locked).
    let (ok, err) = ssh_with_agent(port, "nobody", &agent.socket);
    assert!(
        !ok && err.contains("Permission denied"),
        "alice's certificate opened another account: {err}\n{}",
        sshd.stderr.text()
    );
}
