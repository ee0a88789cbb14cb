//! Child processes under test: started with their output collected, stopped
//! when their handle drops, and never waited for without a deadline.
//!
//! Every server a test starts (the CA, the IdP, sshd, ssh-agent) is a
//! [`Running`], killed on drop, so a failing test cannot leak one; every
//! command a test runs to completion goes through [`run`], which kills it
//! if it overstays and returns its whole output.

use std::io::{BufRead as _, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{anyhow, bail, Context as _};

use crate::wait::poll_until;

/// How long any one process gets to become ready.
pub const STARTUP: Duration = Duration::from_secs(30);

/// How long a stream may stay open after its process exited. Past this, a
/// process the command left behind still holds it, and its output is not
/// known to be complete.
const DRAIN: Duration = Duration::from_secs(10);

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// Path of a workspace binary (built by `cargo build --workspace`, which
/// `scripts/test` runs before the tests).
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    // target/<profile>/deps/<test> -> target/<profile>/<name>
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test binary lives in target/<profile>/deps");
    let path = profile_dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: run `cargo build --workspace` first (scripts/test does)",
        path.display()
    );
    path
}

/// The lines of one output stream of a child, collected by a background
/// reader thread until the stream closes.
#[derive(Clone, Default)]
pub struct Lines(Arc<Collected>);

impl Lines {
    /// Starts collecting `stream` on a thread of its own.
    fn drain(stream: impl Read + Send + 'static) -> Lines {
        let lines = Lines::default();
        let sink = lines.0.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines() {
                let Ok(line) = line else { break };
                sink.lines.lock().unwrap().push(line);
            }
            sink.closed.store(true, Ordering::SeqCst);
        });
        lines
    }

    /// Everything read so far.
    pub fn text(&self) -> String {
        self.0.lines.lock().unwrap().join("\n")
    }

    /// Waits up to `within` for a line containing `needle` and returns it;
    /// gives up at once if the stream closes without one.
    pub fn wait_for(&self, needle: &str, within: Duration) -> anyhow::Result<String> {
        poll_until(within, || {
            // Read `closed` first: a line pushed after it is still seen below.
            let closed = self.0.closed.load(Ordering::SeqCst);
            let found = self
                .0
                .lines
                .lock()
                .unwrap()
                .iter()
                .find(|l| l.contains(needle))
                .cloned();
            match (found, closed) {
                (Some(line), _) => Ok(Ok(line)),
                (None, true) => Ok(Err(anyhow!(
                    "the process closed its output before {needle:?}"
                ))),
                (None, false) => Err(anyhow!("timed out waiting for {needle:?}")),
            }
        })?
    }

    /// Waits up to `within` for the stream to close, so that [`Lines::text`]
    /// is all the process wrote.
    pub fn wait_closed(&self, within: Duration) -> anyhow::Result<()> {
        poll_until(within, || {
            if self.0.closed.load(Ordering::SeqCst) {
                Ok(())
            } else {
                Err(anyhow!("output still open after {within:?}"))
            }
        })
    }
}

#[derive(Default)]
struct Collected {
    lines: Mutex<Vec<String>>,
    closed: AtomicBool,
}

/// A running child process, killed when dropped.
pub struct Running {
    child: Child,
    /// Held, never written: a child that exits when its stdin closes (the
    /// test IdP) then dies with the test, however the test ends.
    _stdin: Option<ChildStdin>,
    /// Its standard output, as read so far.
    pub stdout: Lines,
    /// Its standard error, as read so far.
    pub stderr: Lines,
}

impl Running {
    /// Spawns `command` with stdin from /dev/null and both outputs collected.
    pub fn spawn(command: &mut Command) -> anyhow::Result<Running> {
        Running::start(command.stdin(Stdio::null()))
    }

    /// Spawns `command` with its stdin a pipe that stays open while this
    /// handle lives.
    pub fn spawn_tied(command: &mut Command) -> anyhow::Result<Running> {
        Running::start(command.stdin(Stdio::piped()))
    }

    fn start(command: &mut Command) -> anyhow::Result<Running> {
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("spawning {command:?}"))?;
        let stdout = Lines::drain(child.stdout.take().expect("stdout is piped"));
        let stderr = Lines::drain(child.stderr.take().expect("stderr is piped"));
        Ok(Running {
            _stdin: child.stdin.take(),
            child,
            stdout,
            stderr,
        })
    }

    /// The process id, for tools that act on a running process (`strace`,
    /// `prlimit`).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM, as a service manager stopping the process would.
    pub fn terminate(&self) {
        let pid = self.child.id().to_string();
        let (status, _, err) = run(Command::new("kill").args(["-TERM", &pid]), STARTUP).unwrap();
        // A process that has already exited is what terminating asks for.
        assert!(
            status.success() || err.contains("No such process"),
            "kill: {err}"
        );
    }

    /// Waits up to `within` for the process to exit by itself; kills it and
    /// fails if it does not.
    pub fn wait_exit(&mut self, within: Duration) -> anyhow::Result<ExitStatus> {
        let exited = poll_until(within, || match self.child.try_wait() {
            Ok(Some(status)) => Ok(Ok(status)),
            Ok(None) => Err(()),
            Err(e) => Ok(Err(e)),
        });
        match exited {
            Ok(status) => Ok(status?),
            Err(()) => {
                self.kill_hard();
                bail!("process did not exit within {within:?}")
            }
        }
    }

    /// Kills the process with SIGKILL, as a crash would.
    pub fn kill_hard(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.kill_hard();
    }
}

/// Runs a command to completion with a deadline; returns (status, stdout,
/// stderr), each output complete.
pub fn run(
    command: &mut Command,
    timeout: Duration,
) -> anyhow::Result<(ExitStatus, String, String)> {
    let mut process = Running::spawn(command)?;
    let status = process.wait_exit(timeout)?;
    for (name, lines) in [("stdout", &process.stdout), ("stderr", &process.stderr)] {
        lines
            .wait_closed(DRAIN)
            .with_context(|| format!("{command:?} left a process holding its {name}"))?;
    }
    Ok((status, process.stdout.text(), process.stderr.text()))
}
