//! The CA under test: the real `jit-ssh-ca` binary, set up by
//! [`CaSetup::builder`] in a directory of its own, started as `serve`, and
//! driven through its command line (`audit`, `revoke`, `backup`...) as an
//! operator would. A started CA is killed when its handle drops.

mod builder;

use std::path::PathBuf;
use std::process::{Command, ExitStatus};

use serde_json::Value;
use tempfile::TempDir;

use crate::idp::Idp;
use crate::process::{bin, run, Running, STARTUP};

pub use builder::CaBuilder;

/// Passphrase the test CAs are created with.
pub const PASSPHRASE: &str = "e2e test passphrase";

/// A policy where sre members may break the glass for root, and those on
/// call get it approved by the policy.
pub const BREAK_GLASS_POLICY: &str = r#"
[[rule]]
name = "own-login"
principals = ["{username}"]
[rule.match]
issuer = ["corp"]

[[rule]]
name = "sre-root"
principals = ["root"]
max_ttl = "10m"
[rule.approval]
approver_groups = ["sre-leads"]
break_glass = true
reason_required = false
[rule.approval.auto]
groups = ["oncall"]
[rule.match]
groups_any = ["sre"]

[[admin]]
name = "leads"
[admin.match]
groups_any = ["sre-leads"]
"#;

/// A CA data directory with keys, a policy and a config file for it.
pub struct CaSetup {
    /// The directory holding all of it; the config sits at its top.
    pub dir: TempDir,
    pub data_dir: PathBuf,
    pub config_path: PathBuf,
    /// The directory the CA reads its policy from.
    pub policy_dir: PathBuf,
    /// With [`CaBuilder::tls`]: the private root the CA's certificate
    /// chains to, in PEM.
    pub tls_root: Option<PathBuf>,
}

impl CaSetup {
    /// A set-up with the defaults, to change before [`CaBuilder::build`].
    pub fn builder() -> CaBuilder {
        CaBuilder::new()
    }

    /// The usual set-up: `idp` trusted as issuer `corp`, everything else as
    /// by default.
    pub fn trusting(idp: &Idp) -> CaSetup {
        CaSetup::builder().issuer("corp", &idp.issuer).build()
    }

    /// Starts `jit-ssh-ca serve`; panics with its log if it does not come up.
    pub fn start(&self) -> Ca {
        self.try_start()
            .unwrap_or_else(|(e, log)| panic!("CA did not start: {e}\n{log}"))
    }

    /// Starts `jit-ssh-ca serve`; on failure returns the error and its log.
    pub fn try_start(&self) -> Result<Ca, (anyhow::Error, String)> {
        self.try_start_with(&[], "info")
    }

    /// Starts `jit-ssh-ca [GLOBAL_ARGS] serve` with `RUST_LOG=log_filter`.
    pub fn try_start_with(
        &self,
        global_args: &[&str],
        log_filter: &str,
    ) -> Result<Ca, (anyhow::Error, String)> {
        CaSetup::started(
            Command::new(bin("jit-ssh-ca"))
                .args(global_args)
                .arg("serve")
                .arg("--config")
                .arg(&self.config_path)
                .env("RUST_LOG", log_filter),
        )
    }

    /// Starts `jit-ssh-ca serve` with the file-creation mask `umask` (octal,
    /// as the shell writes it), as a shell or a service manager with that
    /// mask would; panics with its log if it does not come up.
    pub fn start_with_umask(&self, umask: &str) -> Ca {
        CaSetup::started(
            Command::new("sh")
                .arg("-c")
                .arg(format!(
                    "umask {umask} && exec \"$0\" serve --config \"$1\""
                ))
                .arg(bin("jit-ssh-ca"))
                .arg(&self.config_path)
                .env("RUST_LOG", "info"),
        )
        .unwrap_or_else(|(e, log)| panic!("CA did not start: {e}\n{log}"))
    }

    /// Starts `jit-ssh-ca serve` with SIGXFSZ ignored (as a shell's
    /// `trap '' XFSZ` leaves it across `exec`), so that a file-size limit
    /// put on the running CA (`prlimit --fsize`) fails its writes, as a
    /// full disk does, rather than killing it.
    pub fn start_ignoring_sigxfsz(&self) -> Ca {
        CaSetup::started(
            Command::new("sh")
                .arg("-c")
                .arg("trap '' XFSZ && exec \"$0\" serve --config \"$1\"")
                .arg(bin("jit-ssh-ca"))
                .arg(&self.config_path)
                .env("RUST_LOG", "info"),
        )
        .unwrap_or_else(|(e, log)| panic!("CA did not start: {e}\n{log}"))
    }

    /// Spawns `command` (a `serve`) with the test passphrase in its
    /// environment and waits until it listens.
    fn started(command: &mut Command) -> Result<Ca, (anyhow::Error, String)> {
        let process = Running::spawn(command.env("JIT_SSH_CA_PASSPHRASE", PASSPHRASE)).unwrap();
        match process.stderr.wait_for("listening on ", STARTUP) {
            Ok(line) => {
                let url = url_after(&line, "listening on ");
                // The monitoring listener is announced before the API's.
                let log = process.stderr.text();
                let metrics_url = log
                    .lines()
                    .find(|l| l.contains(METRICS_ANNOUNCEMENT))
                    .map(|l| url_after(l, METRICS_ANNOUNCEMENT))
                    .unwrap_or_else(|| panic!("no metrics listener in the log:\n{log}"));
                Ok(Ca {
                    url,
                    metrics_url,
                    process,
                })
            }
            Err(e) => Err((e, process.stderr.text())),
        }
    }

    /// Runs `jit-ssh-ca serve` expecting it to refuse to start; returns its stderr.
    pub fn expect_start_failure(&self) -> String {
        let (status, _, err) = run(
            Command::new(bin("jit-ssh-ca"))
                .arg("serve")
                .arg("--config")
                .arg(&self.config_path)
                .env("JIT_SSH_CA_PASSPHRASE", PASSPHRASE),
            STARTUP,
        )
        .unwrap();
        assert!(
            !status.success(),
            "serve should have refused to start:\n{err}"
        );
        err
    }

    /// Runs `jit-ssh-ca ARGS --config CONFIG` to completion, as an operator
    /// on the CA host would; returns (status, stdout, stderr).
    pub fn cli(&self, args: &[&str]) -> (ExitStatus, String, String) {
        run(
            Command::new(bin("jit-ssh-ca"))
                .args(args)
                .arg("--config")
                .arg(&self.config_path),
            STARTUP,
        )
        .unwrap()
    }

    /// `jit-ssh-ca audit --json` (reads the database directly).
    pub fn audit(&self, args: &[&str]) -> Vec<Value> {
        let (status, out, err) = self.cli(&[&["audit", "--json"], args].concat());
        assert!(status.success(), "audit failed: {err}");
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("audit output: {e}\n{out}"))
    }
}

/// A running CA.
pub struct Ca {
    /// The API's base URL.
    pub url: String,
    /// The monitoring listener's base URL (`metrics_listen`), serving
    /// `/metrics`.
    pub metrics_url: String,
    pub process: Running,
}

/// What the CA logs before the monitoring listener's URL.
const METRICS_ANNOUNCEMENT: &str = "metrics listener on ";

/// The URL that follows `marker` in a log line, text or JSON: it ends at a
/// space or a quote.
fn url_after(line: &str, marker: &str) -> String {
    line.split(marker)
        .nth(1)
        .unwrap_or_else(|| panic!("{marker:?} not in {line}"))
        .split(|c: char| c.is_whitespace() || c == '"')
        .next()
        .unwrap_or_default()
        .to_string()
}

impl Ca {
    /// `GET url/path` with curl, which needs no async runtime; fails the
    /// test unless the CA answers 2xx.
    pub fn download(&self, path: &str) -> Vec<u8> {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("body");
        let (status, _, err) = run(
            Command::new("curl")
                .args(["-fsS", "--max-time", "10", "-o"])
                .arg(&file)
                .arg(format!("{}{path}", self.url)),
            STARTUP,
        )
        .unwrap();
        assert!(status.success(), "GET {path}: {err}");
        std::fs::read(file).unwrap()
    }

    /// The user-CA keys the CA publishes (`/v1/ca/user.pub`), as a host's
    /// `TrustedUserCAKeys` would hold them.
    pub fn user_ca_keys(&self) -> String {
        String::from_utf8(self.download("/v1/ca/user.pub")).unwrap()
    }

    /// `GET path` (with no `body`) or `POST path` with the JSON `body`,
    /// sending `token` as `Authorization: Bearer`; returns the status and
    /// the JSON answer (`null` when there is none).
    pub async fn call(&self, path: &str, token: Option<&str>, body: Option<Value>) -> (u16, Value) {
        let url = format!("{}{path}", self.url);
        let mut request = match body {
            Some(body) => crate::http_client().post(url).json(&body),
            None => crate::http_client().get(url),
        };
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }
}
