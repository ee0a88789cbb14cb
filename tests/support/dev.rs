//! `jit-ssh-ca dev` under test: started as a user would start it, with its
//! banner parsed for the CA URL and the `TrustedUserCAKeys` line.

use std::process::Command;
use std::time::Duration;

use anyhow::{anyhow, bail};

use crate::idp::{authorization_code, Pkce};
use crate::process::{bin, Running, STARTUP};

/// A running `jit-ssh-ca dev`.
pub struct DevCa {
    /// The CA URL from the banner.
    pub url: String,
    /// The identity provider URL from the banner.
    pub issuer: String,
    /// The `/metrics` URL from the banner (the monitoring listener).
    pub metrics: String,
    /// The user-CA key line from the banner.
    pub user_ca_line: String,
    /// The whole banner.
    pub banner: String,
    /// The process.
    pub process: Running,
}

/// Stops the CA as a user's Ctrl-C would (SIGTERM), so that dev mode
/// removes its temporary data directory; a CA that does not exit in time is
/// killed when its `Running` drops.
impl Drop for DevCa {
    fn drop(&mut self) {
        let pid = self.process.pid().to_string();
        // Never panic in drop: a CA that exited already is what is wanted.
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let _ = self.process.wait_exit(Duration::from_secs(5));
    }
}

impl DevCa {
    /// Runs `jit-ssh-ca dev --listen 127.0.0.1:0 ARGS...`.
    pub fn start(args: &[&str]) -> DevCa {
        let process = Running::spawn(
            Command::new(bin("jit-ssh-ca"))
                .args(["dev", "--listen", "127.0.0.1:0"])
                .args(args),
        )
        .unwrap();
        // The banner ends with the CA key line; serving starts after it.
        let ready = process
            .stdout
            .wait_for("ssh-ed25519 ", STARTUP)
            .and_then(|_| process.stderr.wait_for("listening on ", STARTUP));
        if let Err(e) = ready {
            panic!("dev CA did not start: {e}\n{}", process.stderr.text());
        }
        let banner = process.stdout.text();
        let field = |label: &str| {
            banner
                .lines()
                .find_map(|l| l.trim().strip_prefix(label).map(|v| v.trim().to_string()))
                .unwrap_or_else(|| panic!("banner lacks {label}:\n{banner}"))
        };
        let url = field("CA ");
        let issuer = field("Identity provider ");
        let metrics = field("Metrics ");
        let user_ca_line = banner
            .lines()
            .map(str::trim)
            .find(|l| l.starts_with("ssh-ed25519 "))
            .unwrap_or_else(|| panic!("banner lacks the CA key:\n{banner}"))
            .to_string();
        DevCa {
            url,
            issuer,
            metrics,
            user_ca_line,
            banner,
            process,
        }
    }
}

/// Runs the authorization-code flow against the dev provider the way a
/// redirect-following browser does. With `user`, it clicks that user on the
/// login page; without, it expects `--auto-login` to skip the page.
pub async fn dev_login(
    issuer: &str,
    user: Option<&str>,
    nonce: &str,
    scope: &str,
) -> anyhow::Result<serde_json::Value> {
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .build()?;
    let pkce = Pkce::new();
    let redirect_uri = "http://127.0.0.1:45678/callback";
    let response = http
        .get(format!("{issuer}/authorize"))
        .query(&[
            ("client_id", "jit-ssh"),
            ("response_type", "code"),
            ("redirect_uri", redirect_uri),
            ("scope", scope),
            ("state", "st-1"),
            ("nonce", nonce),
            ("code_challenge", &pkce.challenge),
            ("code_challenge_method", "S256"),
        ])
        .send()
        .await?;
    let response = match user {
        None => response,
        Some(user) => {
            let page = response.text().await?;
            let request_id = page
                .split("name=\"request_id\" value=\"")
                .nth(1)
                .and_then(|rest| rest.split('"').next())
                .ok_or_else(|| anyhow!("no login page: {page}"))?
                .to_string();
            http.post(format!("{issuer}/authorize"))
                .form(&[("request_id", request_id.as_str()), ("user", user)])
                .send()
                .await?
        }
    };
    let location = response
        .headers()
        .get("location")
        .ok_or_else(|| anyhow!("no redirect: {}", response.status()))?
        .to_str()?
        .to_string();
    let code = authorization_code(&location, "st-1")?;
    let tokens = http
        .post(format!("{issuer}/token"))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", redirect_uri),
            ("client_id", "jit-ssh"),
            ("code_verifier", &pkce.verifier),
        ])
        .send()
        .await?;
    if !tokens.status().is_success() {
        bail!("token: {} {}", tokens.status(), tokens.text().await?);
    }
    Ok(tokens.json().await?)
}

/// Starts a device authorization at the dev provider.
pub async fn device_authorize(
    http: &reqwest::Client,
    issuer: &str,
    scope: &str,
) -> anyhow::Result<serde_json::Value> {
    Ok(http
        .post(format!("{issuer}/device_authorization"))
        .form(&[("client_id", "jit-ssh"), ("scope", scope)])
        .send()
        .await?
        .json()
        .await?)
}

/// Polls the token endpoint once for `device` (a device authorization
/// response); returns the JSON body, tokens or an OAuth error.
pub async fn device_poll(
    http: &reqwest::Client,
    issuer: &str,
    device: &serde_json::Value,
) -> anyhow::Result<serde_json::Value> {
    let device_code = device["device_code"]
        .as_str()
        .ok_or_else(|| anyhow!("no device_code in {device}"))?;
    Ok(http
        .post(format!("{issuer}/token"))
        .form(&[
            ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
            ("device_code", device_code),
            ("client_id", "jit-ssh"),
        ])
        .send()
        .await?
        .json()
        .await?)
}
