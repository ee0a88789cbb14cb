//! The CA set-up a test asks for, as a builder: every test starts from the
//! same defaults (listening, API and metrics, on free loopback ports, every configured
//! issuer's users getting their own login) and names only what differs.
//! [`CaBuilder::build`] runs `jit-ssh-ca init` and writes the TOML the CA
//! reads, so no test spells out configuration text by position.

use std::fmt::Write as _;
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::ca::{CaSetup, PASSPHRASE};
use crate::process::{bin, repo_root, run, STARTUP};
use crate::tls::tls_files;

/// A CA set-up under construction; see [`CaSetup::builder`].
pub struct CaBuilder {
    issuers: Vec<Issuer>,
    policy: Policy,
    policy_files: Vec<(String, String)>,
    listen: String,
    rate_limit_per_identity: Option<u32>,
    access_request_pending: Option<String>,
    webhooks: Vec<(String, String)>,
    tls: bool,
    passphrase_file: Option<String>,
    top_level: Vec<String>,
}

impl CaBuilder {
    pub(crate) fn new() -> CaBuilder {
        CaBuilder {
            issuers: Vec::new(),
            policy: Policy::OwnLogin,
            policy_files: Vec::new(),
            listen: "127.0.0.1:0".into(),
            rate_limit_per_identity: None,
            access_request_pending: None,
            webhooks: Vec::new(),
            tls: false,
            passphrase_file: None,
            top_level: Vec::new(),
        }
    }

    /// Trusts the OpenID provider at `url` under `name`, for client_id
    /// `jit-ssh`.
    pub fn issuer(self, name: &str, url: &str) -> CaBuilder {
        self.issuer_for_client(name, url, "jit-ssh")
    }

    /// [`CaBuilder::issuer`] for `client_id` (the test IdP's clients differ
    /// in the algorithm they sign ID tokens with).
    pub fn issuer_for_client(mut self, name: &str, url: &str, client_id: &str) -> CaBuilder {
        self.issuers.push(Issuer {
            name: name.into(),
            url: url.into(),
            client_id: client_id.into(),
            username_claim: None,
            settings: Vec::new(),
        });
        self
    }

    /// [`CaBuilder::issuer`] for a workload issuer whose tokens name no
    /// person: the login name comes from `claim`.
    pub fn issuer_with_username_claim(mut self, name: &str, url: &str, claim: &str) -> CaBuilder {
        self.issuers.push(Issuer {
            name: name.into(),
            url: url.into(),
            client_id: "jit-ssh".into(),
            username_claim: Some(claim.into()),
            settings: Vec::new(),
        });
        self
    }

    /// Adds `line` (`key = value`) to the `[[oidc]]` table of the issuer
    /// added last, e.g. `require_nonce = false` or `email_domains = [..]`.
    pub fn issuer_setting(mut self, line: &str) -> CaBuilder {
        self.issuers
            .last_mut()
            .expect("issuer_setting follows an issuer")
            .settings
            .push(line.into());
        self
    }

    /// `text` is the whole policy, instead of the own-login default.
    pub fn policy(mut self, text: &str) -> CaBuilder {
        self.policy = Policy::Text(text.into());
        self
    }

    /// The CA reads the repository's example policies (`policies/`).
    pub fn shipped_policies(mut self) -> CaBuilder {
        self.policy = Policy::Shipped;
        self
    }

    /// The CA reads a copy of the example policies in
    /// [`CaSetup::policy_dir`], where the test may edit them.
    pub fn copy_of_shipped_policies(mut self) -> CaBuilder {
        self.policy = Policy::CopyOfShipped;
        self
    }

    /// Adds the policy file `name` next to the policy chosen otherwise.
    pub fn policy_file(mut self, name: &str, text: &str) -> CaBuilder {
        self.policy_files.push((name.into(), text.into()));
        self
    }

    /// Listens on `address` instead of a free loopback port.
    pub fn listen(mut self, address: &str) -> CaBuilder {
        self.listen = address.into();
        self
    }

    /// `rate_limit_per_identity`.
    pub fn rate_limit_per_identity(mut self, limit: u32) -> CaBuilder {
        self.rate_limit_per_identity = Some(limit);
        self
    }

    /// `access_request_pending`, a duration as the config file writes it.
    pub fn access_request_pending(mut self, duration: &str) -> CaBuilder {
        self.access_request_pending = Some(duration.into());
        self
    }

    /// A `[[webhook]]` posting to `url`, whose secret file holds
    /// `secret_file_text`.
    pub fn webhook(mut self, url: &str, secret_file_text: &str) -> CaBuilder {
        self.webhooks.push((url.into(), secret_file_text.into()));
        self
    }

    /// Serves HTTPS with a leaf from a private root (see
    /// [`CaSetup::tls_root`]).
    pub fn tls(mut self) -> CaBuilder {
        self.tls = true;
        self
    }

    /// `passphrase_file`, holding `text` (instead of the passphrase in the
    /// environment), created 0600 as docs/deploy.md has it.
    pub fn passphrase_file(mut self, text: &str) -> CaBuilder {
        self.passphrase_file = Some(text.into());
        self
    }

    /// A top-level line the builder does not otherwise write, such as a key
    /// the CA must refuse.
    pub fn top_level_line(mut self, line: &str) -> CaBuilder {
        self.top_level.push(line.into());
        self
    }

    /// Runs `jit-ssh-ca init` in a fresh directory and writes the policy and
    /// the config there.
    pub fn build(self) -> CaSetup {
        assert!(
            !self.issuers.is_empty(),
            "a CA trusts at least one issuer: call .issuer(..)"
        );
        let dir = tempfile::tempdir().unwrap();
        let data_dir = dir.path().join("data");
        let (status, out, err) = run(
            Command::new(bin("jit-ssh-ca"))
                .args(["init", "--data-dir"])
                .arg(&data_dir)
                .env("JIT_SSH_CA_PASSPHRASE", PASSPHRASE),
            STARTUP,
        )
        .unwrap();
        assert!(status.success(), "init failed: {out}\n{err}");

        // The CA's default policy_dir is `policies` next to the config;
        // the config names it only when it is elsewhere.
        let own_policies = dir.path().join("policies");
        let policy_dir = match &self.policy {
            Policy::Shipped => repo_root().join("policies"),
            _ => own_policies.clone(),
        };
        match &self.policy {
            Policy::OwnLogin => {
                write_policy(&own_policies, "test-own-login.toml", &self.own_login())
            }
            Policy::Text(text) => write_policy(&own_policies, "10-test.toml", text),
            Policy::CopyOfShipped => copy_policies(&repo_root().join("policies"), &own_policies),
            Policy::Shipped => {}
        }
        for (name, text) in &self.policy_files {
            assert!(
                !matches!(self.policy, Policy::Shipped),
                "policy_file {name} would be written into the repository's policies/"
            );
            write_policy(&own_policies, name, text);
        }

        let tls_root = self.tls.then(|| tls_files(dir.path()).root);
        let config = self.config_text(dir.path(), &data_dir, &policy_dir, &own_policies);
        let config_path = dir.path().join("jit-ssh-ca.toml");
        std::fs::write(&config_path, config).unwrap();
        CaSetup {
            dir,
            data_dir,
            config_path,
            policy_dir,
            tls_root,
        }
    }

    /// The default policy: each issuer's users get their own login.
    fn own_login(&self) -> String {
        let names: Vec<String> = self.issuers.iter().map(|i| quote(&i.name)).collect();
        format!(
            "[[rule]]\nname = \"test-own-login\"\nprincipals = [\"{{username}}\"]\n\
             default_ttl = \"5m\"\nmax_ttl = \"60m\"\n[rule.match]\nissuer = [{}]\n",
            names.join(", ")
        )
    }

    /// The config file: top-level keys first, then tables.
    fn config_text(&self, dir: &Path, data_dir: &Path, policy_dir: &Path, own: &Path) -> String {
        let mut toml = String::new();
        let mut line = |key: &str, value: String| writeln!(toml, "{key} = {value}").unwrap();
        line("listen", quote(&self.listen));
        // A free port too: tests run many CAs at once.
        line("metrics_listen", quote("127.0.0.1:0"));
        line("data_dir", quote_path(data_dir));
        line("discovery_attempts", "2".into());
        if policy_dir != own {
            line("policy_dir", quote_path(policy_dir));
        }
        if let Some(text) = &self.passphrase_file {
            let path = dir.join("passphrase");
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
                .and_then(|mut file| file.write_all(text.as_bytes()))
                .unwrap();
            line("passphrase_file", quote_path(&path));
        }
        if let Some(limit) = self.rate_limit_per_identity {
            line("rate_limit_per_identity", limit.to_string());
        }
        if let Some(pending) = &self.access_request_pending {
            line("access_request_pending", quote(pending));
        }
        for extra in &self.top_level {
            writeln!(toml, "{extra}").unwrap();
        }
        for issuer in &self.issuers {
            toml.push_str("\n[[oidc]]\n");
            writeln!(toml, "name = {}", quote(&issuer.name)).unwrap();
            writeln!(toml, "issuer = {}", quote(&issuer.url)).unwrap();
            writeln!(toml, "client_id = {}", quote(&issuer.client_id)).unwrap();
            if let Some(claim) = &issuer.username_claim {
                writeln!(toml, "username_claim = {}", quote(claim)).unwrap();
            }
            for setting in &issuer.settings {
                writeln!(toml, "{setting}").unwrap();
            }
        }
        if self.tls {
            // Relative paths: the CA reads them next to its config.
            toml.push_str("\n[tls]\ncert = \"tls.crt\"\nkey = \"tls.key\"\n");
        }
        for (index, (url, secret)) in self.webhooks.iter().enumerate() {
            let secret_file = dir.join(format!("webhook-{index}.secret"));
            std::fs::write(&secret_file, secret).unwrap();
            toml.push_str("\n[[webhook]]\n");
            writeln!(toml, "url = {}", quote(url)).unwrap();
            writeln!(toml, "secret_file = {}", quote_path(&secret_file)).unwrap();
        }
        toml
    }
}

/// Where the CA's policy comes from.
enum Policy {
    /// Every identity of the configured issuers gets its own login (5 min by
    /// default, at most 60), as the issuance tests expect.
    OwnLogin,
    /// The given text, as the only policy file.
    Text(String),
    /// The repository's `policies/`, read in place.
    Shipped,
    /// A copy of the repository's `policies/`, which the test may edit.
    CopyOfShipped,
}

struct Issuer {
    name: String,
    url: String,
    client_id: String,
    username_claim: Option<String>,
    /// Further `key = value` lines of its `[[oidc]]` table.
    settings: Vec<String>,
}

fn write_policy(dir: &Path, name: &str, text: &str) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join(name), text).unwrap();
}

fn copy_policies(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let path: PathBuf = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            std::fs::copy(&path, to.join(path.file_name().unwrap())).unwrap();
        }
    }
}

/// `text` as a TOML basic string.
fn quote(text: &str) -> String {
    let mut quoted = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => quoted.push_str("\\\""),
            '\\' => quoted.push_str("\\\\"),
            c if c.is_control() => write!(quoted, "\\u{:04X}", c as u32).unwrap(),
            c => quoted.push(c),
        }
    }
    quoted.push('"');
    quoted
}

fn quote_path(path: &Path) -> String {
    quote(path.to_str().expect("test paths are UTF-8"))
}
