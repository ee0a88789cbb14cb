//! The `jit-ssh` client binary under test: run in an isolated home (`HOME`,
//! `XDG_CONFIG_HOME`) with `$BROWSER` set to the committed test driver
//! `tests/idp/browser-login.sh`, a scripted person signing in with curl.
//! Every run is bounded and its output and exit code kept for assertions.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::time::Duration;

use serde_json::Value;
use tempfile::TempDir;

use crate::openssh::SshAgent;
use crate::process::{bin, repo_root, run};

/// An isolated user for `jit-ssh`.
pub struct ClientHome {
    pub dir: TempDir,
    pub browser_log: PathBuf,
    pub agent_socket: Option<PathBuf>,
    pub user: String,
    pub mode: String,
}

/// What a `jit-ssh` run produced.
#[derive(Debug)]
pub struct Outcome {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Outcome {
    pub fn code(&self) -> i32 {
        self.status.code().unwrap_or(-1)
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}\n{}", self.stdout, self.stderr))
    }

    /// Asserts the run succeeded; `what` names the step in the failure
    /// message, which shows both outputs.
    pub fn ok(&self, what: &str) -> &Outcome {
        assert!(
            self.status.success(),
            "{what}: exit {}\nstdout: {}\nstderr: {}",
            self.code(),
            self.stdout,
            self.stderr
        );
        self
    }

    /// The JSON output of a run that must have succeeded; `what` names the
    /// step in the failure message.
    pub fn ok_json(&self, what: &str) -> Value {
        self.ok(what).json()
    }
}

impl ClientHome {
    /// A fresh home, signing in as `user`, using `agent` when given.
    pub fn new(user: &str, agent: Option<&SshAgent>) -> ClientHome {
        let dir = tempfile::tempdir().unwrap();
        let browser_log = dir.path().join("browser.log");
        ClientHome {
            dir,
            browser_log,
            agent_socket: agent.map(|a| a.socket.clone()),
            user: user.to_string(),
            mode: "login".into(),
        }
    }

    pub fn home(&self) -> &Path {
        self.dir.path()
    }

    /// `~/.config/jit-ssh` (XDG_CONFIG_HOME is `<home>/xdg`).
    pub fn config_dir(&self) -> PathBuf {
        self.home().join("xdg").join("jit-ssh")
    }

    /// `~/.local/share/jit-ssh`, where the CAs' user-CA keys are pinned.
    pub fn data_dir(&self) -> PathBuf {
        self.home().join(".local").join("share").join("jit-ssh")
    }

    /// `~/.ssh/jit-ssh`.
    pub fn files_root(&self) -> PathBuf {
        self.home().join(".ssh").join("jit-ssh")
    }

    /// How many times `$BROWSER` ran.
    pub fn browser_runs(&self) -> usize {
        std::fs::read_to_string(&self.browser_log)
            .map(|t| t.lines().count())
            .unwrap_or(0)
    }

    /// The `jit-ssh` command in this home.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(bin("jit-ssh"));
        command
            .args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", self.home())
            .env("XDG_CONFIG_HOME", self.home().join("xdg"))
            .env("BROWSER", repo_root().join("tests/idp/browser-login.sh"))
            .env("JIT_TEST_USER", &self.user)
            .env("JIT_TEST_MODE", &self.mode)
            .env("JIT_TEST_BROWSER_LOG", &self.browser_log);
        if let Some(socket) = &self.agent_socket {
            command.env("SSH_AUTH_SOCK", socket);
        }
        command
    }

    /// Runs `jit-ssh args` to completion (bounded).
    pub fn run(&self, args: &[&str]) -> Outcome {
        self.run_command(&mut self.command(args))
    }

    pub fn run_command(&self, command: &mut Command) -> Outcome {
        let (status, stdout, stderr) = run(command, Duration::from_secs(90)).unwrap();
        Outcome {
            status,
            stdout,
            stderr,
        }
    }
}

/// Every regular file under `dir`, recursively.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(files_under(&path));
        } else {
            out.push(path);
        }
    }
    out
}

/// Mode bits of `path`.
pub fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// `jit-ssh --ca URL host sync-krl --json --out OUT [extra]`, as a host's
/// timer runs it; returns whether it succeeded, its stdout and its stderr.
pub fn sync_krl(ca_url: &str, out: &Path, extra: &[&str]) -> (bool, String, String) {
    let (status, stdout, stderr) = run(
        Command::new(bin("jit-ssh"))
            .args(["--ca", ca_url, "host", "sync-krl", "--json", "--out"])
            .arg(out)
            .args(extra),
        Duration::from_secs(30),
    )
    .unwrap();
    (status.success(), stdout, stderr)
}
