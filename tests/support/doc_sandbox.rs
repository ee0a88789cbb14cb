//! The sandbox the docs' commands run in (tests/e2e/docs.rs): a temporary
//! directory standing in for the system paths the docs name, an environment
//! of its own (HOME, XDG directories, a CA URL nobody answers), and the
//! checks that load the docs' configs, policies and sshd_config snippets
//! with the real binaries. Nothing here writes outside the directory, except
//! `/run/sshd`, which `sshd -t` needs when run as root.

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use tempfile::TempDir;

use crate::openssh::{free_port, ssh_keygen};
use crate::process::{bin, repo_root, run, Running, STARTUP};

/// System paths in the docs and where the sandbox puts them (below its
/// temporary directory). A command naming another absolute path outside the
/// sandbox fails with a message asking for a row here.
pub const SUBSTITUTIONS: &[(&str, &str)] = &[
    ("/etc/jit-ssh-ca", "etc/jit-ssh-ca"),
    ("/etc/jit-ssh/", "etc/jit-ssh/"),
    ("/etc/ssh", "etc/ssh"),
    ("/var/lib/jit-ssh-ca", "var/lib/jit-ssh-ca"),
    ("/backup", "backup"),
    ("/tmp/jit-dev", "jit-dev"),
    ("/tmp/jit-sshd", "jit-sshd"),
    ("/tmp/check", "check"),
];

/// CA URLs in the docs; the sandbox answers none of them (a closed loopback
/// port), so a command gets past parsing and stops at its first request.
pub const CA_URLS: &[&str] = &[
    "https://ca.example.com",
    "http://127.0.0.1:8443",
    "http://127.0.0.1:18443",
];

/// A temporary directory standing in for the system paths of the docs, and
/// the environment the binaries run in there.
pub struct Sandbox {
    pub dir: TempDir,
    pub dead_url: String,
}

impl Sandbox {
    pub fn create() -> Sandbox {
        let dir = tempfile::tempdir().unwrap();
        for sub in ["home", "config", "data"] {
            std::fs::create_dir_all(dir.path().join(sub)).unwrap();
        }
        Sandbox {
            dir,
            dead_url: format!("http://127.0.0.1:{}", free_port()),
        }
    }

    /// `text` with the docs' system paths and CA URLs moved into the sandbox.
    pub fn localize(&self, text: &str) -> String {
        let mut text = text.to_string();
        for url in CA_URLS {
            text = text.replace(url, &self.dead_url);
        }
        for (from, to) in SUBSTITUTIONS {
            let target = format!("{}/{to}", self.dir.path().display());
            text = text.replace(from, &target);
        }
        text
    }

    /// Runs a jit-ssh invocation (program name first) in the sandbox and
    /// fails only when the binary refused its arguments.
    pub fn parses(&self, words: &[String]) -> Result<(), String> {
        let root = self.dir.path().display().to_string();
        let mut args: Vec<String> = words[1..].iter().map(|w| self.localize(w)).collect();
        for arg in &args {
            let value = arg.split_once('=').map_or(arg.as_str(), |(_, v)| v);
            if value.starts_with('/') && !value.starts_with(&root) && !value.starts_with("/dev/") {
                return Err(format!(
                    "names the system path {value}: add a row to SUBSTITUTIONS \
                     in tests/support/doc_sandbox.rs"
                ));
            }
        }
        // A server would bind the documented port: give it a free one.
        let serves = args.first().is_some_and(|a| a == "dev" || a == "serve");
        if args.first().is_some_and(|a| a == "dev") && !args.iter().any(|a| a == "--listen") {
            args.extend(["--listen".into(), "127.0.0.1:0".into()]);
        }
        let mut process = Running::spawn(
            Command::new(bin(&words[0]))
                .args(&args)
                .current_dir(self.dir.path())
                .env_clear()
                .env("PATH", std::env::var("PATH").unwrap_or_default())
                .env("HOME", self.dir.path().join("home"))
                .env("XDG_CONFIG_HOME", self.dir.path().join("config"))
                .env("XDG_DATA_HOME", self.dir.path().join("data"))
                .env("JIT_SSH_CA", &self.dead_url)
                .env("BROWSER", "false"),
        )
        .map_err(|e| e.to_string())?;
        // A server that comes up took its arguments; it is stopped as a
        // service manager would, so that it cleans up after itself (dev
        // mode deletes its throw-away data directory).
        if serves && process.stderr.wait_for("listening on ", STARTUP).is_ok() {
            process.terminate();
            process.wait_exit(STARTUP).map_err(|e| e.to_string())?;
            return Ok(());
        }
        let status = process
            .wait_exit(Duration::from_secs(10))
            .map_err(|e| format!("did not finish: {e}"))?;
        process
            .stderr
            .wait_closed(STARTUP)
            .map_err(|e| e.to_string())?;
        let stderr = process.stderr.text();
        if status.code() == Some(2) && stderr.contains("For more information, try") {
            return Err(format!("refused its arguments: {}", stderr.trim()));
        }
        Ok(())
    }

    /// `jit-ssh-ca policy check --config` on a CA config from the docs, with
    /// the repository's example policies in its policy directory.
    pub fn check_config(&self, place: &str, text: &str) -> Result<(), String> {
        let name = place.replace(['/', ':', '.'], "_");
        let dir = self.dir.path().join("configs").join(&name);
        std::fs::create_dir_all(&dir).unwrap();
        let config = self.localize(text);
        // The examples go where the config says its policies are; a config
        // that names no policy_dir gets none, as on a host, and fails.
        if let Some(policy_dir) = config.lines().find_map(|line| {
            let value = line.strip_prefix("policy_dir = ")?;
            let value = value.split('#').next()?.trim().trim_matches('"');
            Some(PathBuf::from(value))
        }) {
            copy_example_policies(&dir.join(policy_dir));
        }
        let path = dir.join("ca.toml");
        std::fs::write(&path, config).unwrap();
        self.policy_check(&["--config".into(), path.display().to_string()])
    }

    /// `policy check` on a policy snippet alone; a `[rule.…]` part of a rule
    /// is checked inside the smallest rule that can hold it.
    pub fn check_policy(&self, place: &str, text: &str) -> Result<(), String> {
        let name = place.replace(['/', ':', '.'], "_");
        let dir = self.dir.path().join("policy-snippets").join(&name);
        std::fs::create_dir_all(&dir).unwrap();
        let policy = if text.trim_start().starts_with("[rule.") {
            format!(
                "[[rule]]\nname = \"doc-snippet\"\nprincipals = [\"root\"]\n\
                 [rule.match]\nissuer = [\"corp\"]\ngroups_any = [\"sre\"]\n{text}\n"
            )
        } else {
            text.to_string()
        };
        std::fs::write(dir.join("snippet.toml"), policy).unwrap();
        // A snippet that grants nothing by itself (an admin rule) is checked
        // beside one rule that does, as a policy needs.
        std::fs::write(
            dir.join("00-grant.toml"),
            "[[rule]]\nname = \"doc-grant\"\nprincipals = [\"{username}\"]\n\
             [rule.match]\nissuer = [\"corp\"]\ngroups_any = [\"eng\"]\n",
        )
        .unwrap();
        let config = self.dir.path().join("snippet-ca.toml");
        std::fs::write(
            &config,
            format!(
                "listen = \"127.0.0.1:8443\"\ndata_dir = \"{}\"\n[[oidc]]\nname = \"corp\"\n\
                 issuer = \"https://corp.example.com\"\nclient_id = \"jit-ssh\"\n",
                self.dir.path().join("data").display()
            ),
        )
        .unwrap();
        self.policy_check(&[
            "--config".into(),
            config.display().to_string(),
            "--policy-dir".into(),
            dir.display().to_string(),
        ])
    }

    fn policy_check(&self, args: &[String]) -> Result<(), String> {
        let (status, out, err) = run(
            Command::new(bin("jit-ssh-ca"))
                .args(["policy", "check"])
                .args(args),
            STARTUP,
        )
        .map_err(|e| e.to_string())?;
        if status.success() {
            Ok(())
        } else {
            Err(format!("policy check: {status}: {out}{err}"))
        }
    }

    /// A keys.toml snippet holds only lines `jit-ssh-ca init` writes.
    pub fn check_keys_toml(&self, text: &str) -> Result<(), String> {
        let data = self.dir.path().join("init-data");
        let passphrase = self.dir.path().join("init-passphrase");
        std::fs::write(&passphrase, "a passphrase of some length\n").unwrap();
        std::fs::set_permissions(&passphrase, std::fs::Permissions::from_mode(0o600)).unwrap();
        if !data.join("keys.toml").exists() {
            let (status, _, err) = run(
                Command::new(bin("jit-ssh-ca"))
                    .args(["init", "--data-dir"])
                    .arg(&data)
                    .arg("--passphrase-file")
                    .arg(&passphrase),
                STARTUP,
            )
            .map_err(|e| e.to_string())?;
            if !status.success() {
                return Err(format!("init: {err}"));
            }
        }
        let written = std::fs::read_to_string(data.join("keys.toml")).unwrap();
        let written: BTreeSet<&str> = written.lines().map(str::trim).collect();
        match text
            .lines()
            .map(str::trim)
            .find(|line| !line.is_empty() && !written.contains(line))
        {
            Some(line) => Err(format!("init's keys.toml has no line {line:?}")),
            None => Ok(()),
        }
    }

    /// `sshd -t` on a snippet: its lines with paths moved into the sandbox,
    /// a host key (generated where the snippet names one), and the files it
    /// names present.
    pub fn sshd_t(&self, text: &str) -> Result<(), String> {
        let config = self.localize(text);
        let dir = self.dir.path().join(format!("sshd-{}", free_port()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut full = String::new();
        let mut has_host_key = false;
        for line in config.lines() {
            let mut words = line.split_whitespace();
            if let (Some(keyword), Some(value)) = (words.next(), words.next()) {
                let path = Path::new(value);
                if keyword == "HostKey" {
                    has_host_key = true;
                    let parent = path.parent().unwrap();
                    std::fs::create_dir_all(parent).unwrap();
                    if !path.exists() {
                        ssh_keygen(
                            parent,
                            &path.file_name().unwrap().to_string_lossy(),
                            &["-t", "ed25519"],
                        );
                    }
                }
            }
            full.push_str(line);
            full.push('\n');
        }
        if !has_host_key {
            let (key, _) = ssh_keygen(&dir, "host_key", &["-t", "ed25519"]);
            full.push_str(&format!("HostKey {}\n", key.display()));
        }
        let path = dir.join("sshd_config");
        std::fs::write(&path, &full).unwrap();
        let sshd = ["/usr/sbin/sshd", "/usr/local/sbin/sshd"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .expect("sshd must be installed (scripts/test installs openssh-server)");
        std::fs::create_dir_all("/run/sshd").ok();
        let (status, _, err) = run(Command::new(sshd).arg("-t").arg("-f").arg(&path), STARTUP)
            .map_err(|e| e.to_string())?;
        if status.success() {
            Ok(())
        } else {
            Err(format!("sshd -t: {}\n{full}", err.trim()))
        }
    }
}

/// The repository's policies/*.toml, copied into `dir`.
pub fn copy_example_policies(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    for entry in std::fs::read_dir(repo_root().join("policies")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            std::fs::copy(&path, dir.join(path.file_name().unwrap())).unwrap();
        }
    }
}
