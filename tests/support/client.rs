//! Helpers for the `jit-ssh` client tests: a real `ssh-agent` on its own
//! socket (killed on drop), and an isolated home (`HOME`, `XDG_CONFIG_HOME`)
//! in which to run the `jit-ssh` binary with `$BROWSER` set to the committed
//! test driver `tests/idp/browser-login.sh`.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::{bin, repo_root, run, Lines, Running, STARTUP};

/// A real `ssh-agent -D` listening on a socket of its own.
pub struct SshAgent {
    pub socket: PathBuf,
    _process: Running,
    _dir: TempDir,
}

impl SshAgent {
    /// Starts the agent and waits for its socket.
    pub fn start() -> SshAgent {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("agent.sock");
        let mut child = Command::new("ssh-agent")
            .arg("-D")
            .arg("-a")
            .arg(&socket)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("ssh-agent must be installed (openssh-client)");
        let (stderr, _) = Lines::drain(child.stderr.take().unwrap());
        let process = Running { child, stderr };
        let deadline = Instant::now() + STARTUP;
        while !socket.exists() {
            assert!(
                Instant::now() < deadline,
                "ssh-agent did not create its socket"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        SshAgent {
            socket,
            _process: process,
            _dir: dir,
        }
    }

    /// `ssh-add -L` against this agent: the public keys and certificates.
    pub fn list(&self) -> String {
        let (_, out, _) = run(
            Command::new("ssh-add")
                .arg("-L")
                .env("SSH_AUTH_SOCK", &self.socket),
            Duration::from_secs(10),
        )
        .unwrap();
        out
    }

    /// The certificate lines of `ssh-add -L`.
    pub fn certificates(&self) -> Vec<String> {
        self.list()
            .lines()
            .filter(|l| l.contains("-cert-v01@openssh.com"))
            .map(str::to_string)
            .collect()
    }
}

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

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}\n{}", self.stdout, self.stderr))
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

/// `ssh` into `sshd` using only the agent at `socket` (no key file).
pub fn ssh_with_agent(sshd: &crate::Sshd, socket: &Path) -> (bool, String) {
    let (status, out, err) = run(
        Command::new("ssh")
            .args(["-F", "/dev/null", "-o", "BatchMode=yes"])
            .args([
                "-o",
                "StrictHostKeyChecking=no",
                "-o",
                "UserKnownHostsFile=/dev/null",
            ])
            .arg("-o")
            .arg(format!("IdentityAgent={}", socket.display()))
            .args(["-o", "IdentityFile=none", "-o", "ConnectTimeout=10"])
            .args(["-o", "LogLevel=ERROR"])
            .args(["-p", &sshd.port.to_string()])
            .arg(format!("{}@127.0.0.1", sshd.user))
            .arg("echo jit-ssh-ok"),
        Duration::from_secs(30),
    )
    .unwrap();
    (status.success() && out.contains("jit-ssh-ok"), err)
}
