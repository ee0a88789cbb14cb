//! End-to-end tests of identity providers as they ship, with the real test
//! IdP (npm oidc-provider in its default refresh-token behaviour, OpenID
//! Connect Core §11), the real CA and `jit-ssh` binaries, and `$BROWSER` =
//! `tests/idp/browser-login.sh`:
//!
//! * a strict provider grants a refresh token because the CA publishes
//!   `prompt=consent`, so `ensure` renews without the browser; where none is
//!   granted, `login` says so in one line and `status` promises nothing;
//! * Google-shaped tokens: an installed-app client whose token endpoint
//!   wants the public client secret the CA publishes, and `hd` as a policy
//!   condition;
//! * Entra-ID-shaped tokens: user principal names through `upn_domains`,
//!   the groups overage refused with what to configure, and only one
//!   tenant's exact issuer trusted.
//!
//! Each test starts and stops its own processes; every wait is bounded.

#![allow(clippy::unwrap_used, missing_docs)]

use e2e::client::ClientHome;
use e2e::openssh::SshAgent;
use e2e::*;

/// The CA's published configuration, as any client reads it.
fn published(ca: &Ca) -> serde_json::Value {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (status, body) = runtime.block_on(ca.call("/v1/config", None, None));
    assert_eq!(status, 200, "{body}");
    body
}

fn lines_with<'a>(text: &'a str, needle: &str) -> Vec<&'a str> {
    text.lines().filter(|l| l.contains(needle)).collect()
}

#[test]
fn a_strict_provider_grants_a_refresh_token_and_ensure_renews_without_the_browser() {
    let idp = Idp::start();
    let setup = CaSetup::builder().issuer("test", &idp.issuer).build();
    let ca = setup.start();
    assert_eq!(
        published(&ca)["issuers"][0]["auth_params"]["prompt"],
        "consent",
        "the default for a provider that is not Entra ID"
    );
    let agent = SshAgent::start();
    let home = ClientHome::new("bob", Some(&agent));
    // 30 s is under ensure's one-minute margin: the next ensure must renew.
    let login = home.run(&["--ca", &ca.url, "login", "--ttl", "30s", "--json"]);
    let first = login.ok_json("login");
    assert!(
        !login.stderr.contains("Silent renewal is off"),
        "{}",
        login.stderr
    );
    let asked = std::fs::read_to_string(&home.browser_log).unwrap();
    assert!(asked.contains("prompt=consent"), "{asked}");
    assert!(first["renewable"].as_bool().unwrap(), "{first}");

    let ensure = home.run(&["--ca", &ca.url, "ensure", "--no-login"]);
    assert!(
        ensure.status.success(),
        "ensure: {}\n{}",
        ensure.stderr,
        idp.log()
    );
    assert!(ensure.stderr.contains("Renewed"), "{}", ensure.stderr);
    assert_eq!(home.browser_runs(), 1, "no browser for the renewal");
    let status = home.run(&["status"]);
    assert!(
        status.stdout.contains("renewals need no browser"),
        "{}",
        status.stdout
    );
}

/// Both ways a provider may grant no refresh token, each as its docs allow:
/// the CA's operators chose to send no prompt (`prompt = ""`), or the
/// provider's client is not allowed the refresh_token grant.
#[test]
fn without_a_refresh_token_login_says_in_one_line_that_silent_renewal_is_off() {
    let idp = Idp::start();
    for (client_id, setting, why) in [
        (
            "jit-ssh",
            "prompt = \"\"",
            "set prompt = \"consent\" for issuer test",
        ),
        (
            "jit-ssh-no-refresh",
            "",
            "allow client jit-ssh-no-refresh the refresh_token grant",
        ),
    ] {
        let mut builder = CaSetup::builder().issuer_for_client("test", &idp.issuer, client_id);
        if !setting.is_empty() {
            builder = builder.issuer_setting(setting);
        }
        let setup = builder.build();
        let ca = setup.start();
        let home = ClientHome::new("bob", None);
        let login = home.run(&["--ca", &ca.url, "login", "--no-agent", "--json"]);
        let issued = login.ok_json("login");
        assert!(!issued["renewable"].as_bool().unwrap(), "{issued}");
        let notes = lines_with(&login.stderr, "Silent renewal is off");
        assert_eq!(notes.len(), 1, "{client_id}: {}", login.stderr);
        assert!(
            notes[0].contains("granted no refresh token") && notes[0].contains(why),
            "{}",
            notes[0]
        );
        let status = home.run(&["status"]);
        assert!(status.status.success(), "{}", status.stderr);
        assert!(
            !status.stdout.contains("renewals need no browser"),
            "{client_id}: status promises silent renewal: {}",
            status.stdout
        );
        let json = home.run(&["status", "--json"]).json();
        assert_eq!(json["sessions"], serde_json::json!([]), "{json}");
    }
}

const GOOGLE_SECRET: &str = "GOCSPX-public-installed-app-secret";

const WORKSPACE_POLICY: &str = "[[rule]]\nname = \"workspace\"\nprincipals = [\"{username}\"]\n\
    default_ttl = \"5m\"\nmax_ttl = \"60m\"\n[rule.match]\nissuer = [\"google\"]\n\
    claims = { hd = \"corp.example\" }\n";

fn google_ca(idp: &Idp, secret: Option<&str>) -> CaSetup {
    let mut builder = CaSetup::builder()
        .issuer_for_client("google", &idp.issuer, "jit-ssh-google")
        .issuer_setting("username_claim = \"email\"")
        .issuer_setting("email_domains = [\"corp.example\"]")
        .policy(WORKSPACE_POLICY);
    if let Some(secret) = secret {
        builder = builder.issuer_setting(&format!("public_client_secret = \"{secret}\""));
    }
    builder.build()
}

/// Google's shape: no `preferred_username`, no groups, `hd` for a Workspace
/// account, and an installed-app client whose token endpoint wants its
/// client secret, which the CA publishes (it is no credential).
#[test]
fn a_google_workspace_user_signs_in_with_the_published_secret_and_hd_decides() {
    let idp = Idp::start();
    let setup = google_ca(&idp, Some(GOOGLE_SECRET));
    let ca = setup.start();
    let config = published(&ca);
    assert_eq!(
        config["issuers"][0]["public_client_secret"], GOOGLE_SECRET,
        "{config}"
    );
    assert_eq!(config["issuers"][0]["auth_params"]["prompt"], "consent");

    let agent = SshAgent::start();
    let gina = ClientHome::new("gina", Some(&agent));
    let login = gina.run(&["--ca", &ca.url, "login", "--ttl", "30s", "--json"]);
    let issued = login.ok_json("gina's login");
    assert_eq!(issued["principals"], serde_json::json!(["gina"]));
    assert!(issued["renewable"].as_bool().unwrap(), "{issued}");
    // The renewal, too, presents the secret at the token endpoint.
    let ensure = gina.run(&["--ca", &ca.url, "ensure", "--no-login"]);
    assert!(
        ensure.status.success() && ensure.stderr.contains("Renewed"),
        "ensure: {}\n{}",
        ensure.stderr,
        idp.log()
    );
    assert_eq!(gina.browser_runs(), 1);

    // A personal Google account registered with a corp.example address has
    // a verified corp.example email but no hd: the hd condition keeps it out.
    let gabe = ClientHome::new("gabe", None);
    let refused = gabe.run(&["--ca", &ca.url, "login", "--no-agent"]);
    assert!(!refused.status.success(), "{}", refused.stderr);
    assert!(refused.stderr.contains("denied"), "{}", refused.stderr);
}

#[test]
fn without_the_published_secret_googles_token_endpoint_refuses_the_client() {
    let idp = Idp::start();
    let setup = google_ca(&idp, None);
    let ca = setup.start();
    let gina = ClientHome::new("gina", None);
    let refused = gina.run(&["--ca", &ca.url, "login", "--no-agent"]);
    assert!(!refused.status.success());
    assert!(
        refused.stderr.contains("invalid_client"),
        "{}",
        refused.stderr
    );
}

/// Entra ID's shape: `preferred_username` is a user principal name, and a
/// user in too many groups gets a reference to them instead of the groups.
#[test]
fn entra_user_principal_names_need_upn_domains_and_the_groups_overage_is_refused() {
    let idp = Idp::start();
    let setup = CaSetup::builder()
        .issuer("entra", &idp.issuer)
        .issuer_setting("upn_domains = [\"corp.example\"]")
        .build();
    let ca = setup.start();
    let ellen = ClientHome::new("ellen", None);
    let issued = ellen
        .run(&["--ca", &ca.url, "login", "--no-agent", "--json"])
        .ok_json("ellen's login");
    assert_eq!(issued["principals"], serde_json::json!(["ellen"]));

    let olive = ClientHome::new("olive", None);
    let refused = olive.run(&["--ca", &ca.url, "login", "--no-agent"]);
    assert!(!refused.status.success(), "{}", refused.stdout);
    for needle in [
        "groups_overage",
        "will not decide as if there were none",
        "groups assigned to the application",
        "signing in again gives the same answer",
    ] {
        assert!(
            refused.stderr.contains(needle),
            "{needle}: {}",
            refused.stderr
        );
    }

    // Without upn_domains the UPN is no login name.
    let plain = CaSetup::builder().issuer("entra", &idp.issuer).build();
    let plain_ca = plain.start();
    let refused =
        ClientHome::new("ellen", None).run(&["--ca", &plain_ca.url, "login", "--no-agent"]);
    assert!(!refused.status.success());
    assert!(
        refused.stderr.contains("invalid_token"),
        "{}",
        refused.stderr
    );
}

#[test]
fn an_entra_issuer_must_be_one_tenants_exact_issuer_with_an_explicit_login_name() {
    for (issuer, settings, needle) in [
        (
            "https://login.microsoftonline.com/{tenantid}/v2.0",
            "upn_domains = [\"corp.example\"]",
            "is a template",
        ),
        (
            "https://login.microsoftonline.com/common/v2.0",
            "upn_domains = [\"corp.example\"]",
            "does not name one Entra ID tenant",
        ),
        (
            "https://login.microsoftonline.com/9188040d-6c67-4c5b-b112-36a304b66dad/v2.0",
            "require_nonce = true",
            "preferred_username is a user principal name",
        ),
    ] {
        let setup = CaSetup::builder()
            .issuer("entra", issuer)
            .issuer_setting(settings)
            .build();
        let err = setup.expect_start_failure();
        assert!(err.contains(needle), "{issuer}: {err}");
    }
}
