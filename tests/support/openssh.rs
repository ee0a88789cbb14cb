//! Real OpenSSH as the judge: `ssh-keygen` makes keys, lists certificates
//! and signs proofs; an `sshd` trusting a CA decides who gets in; an
//! `ssh-agent` on its own socket holds what the client loads; `ssh` logs in.
//! Servers are [`Running`] handles, stopped when dropped.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use tempfile::TempDir;

use crate::process::{run, Running, STARTUP};
use crate::wait::eventually;

/// Writes a fresh key pair with `ssh-keygen` and loads the private key.
pub fn ssh_keygen(dir: &Path, name: &str, args: &[&str]) -> (PathBuf, ssh_key::PrivateKey) {
    let path = dir.join(name);
    let (status, _, err) = run(
        Command::new("ssh-keygen")
            .args(["-q", "-N", "", "-C", name, "-f"])
            .arg(&path)
            .args(args),
        Duration::from_secs(30),
    )
    .unwrap();
    assert!(status.success(), "ssh-keygen failed: {err}");
    let key = ssh_key::PrivateKey::read_openssh_file(&path).unwrap();
    (path, key)
}

/// `ssh-keygen -L -f CERT` output.
pub fn ssh_keygen_list(cert_path: &Path) -> String {
    let (status, out, err) = run(
        Command::new("ssh-keygen")
            .arg("-L")
            .arg("-f")
            .arg(cert_path),
        Duration::from_secs(10),
    )
    .unwrap();
    assert!(
        status.success(),
        "ssh-keygen -L refused the certificate: {err}"
    );
    out
}

/// Signs `message` with `ssh-keygen -Y sign` (real OpenSSH) in `namespace`;
/// returns the armored signature.
pub fn ssh_keygen_sign(key: &Path, namespace: &str, message: &[u8]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let message_path = dir.path().join("message");
    std::fs::write(&message_path, message).unwrap();
    // ssh-keygen refuses private keys readable by others, and a git checkout
    // leaves fixtures 0644: sign with a 0600 copy.
    let private_copy = dir.path().join("key");
    std::fs::copy(key, &private_copy).unwrap();
    std::fs::set_permissions(
        &private_copy,
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    let (status, _, err) = run(
        Command::new("ssh-keygen")
            .args(["-Y", "sign", "-n", namespace, "-f"])
            .arg(&private_copy)
            .arg(&message_path),
        Duration::from_secs(30),
    )
    .unwrap();
    assert!(status.success(), "ssh-keygen -Y sign: {err}");
    std::fs::read_to_string(dir.path().join("message.sig")).unwrap()
}

/// `ssh-keygen -Q -f KRL FILE`: whether real OpenSSH considers the key or
/// certificate in `file` revoked by the KRL at `krl`.
pub fn ssh_keygen_revoked(krl: &Path, file: &Path) -> bool {
    let (status, out, err) = run(
        Command::new("ssh-keygen")
            .arg("-Q")
            .arg("-f")
            .arg(krl)
            .arg(file),
        Duration::from_secs(15),
    )
    .unwrap();
    if out.contains("REVOKED") {
        assert!(!status.success());
        true
    } else {
        assert!(status.success() && out.contains(": ok"), "{out}\n{err}");
        false
    }
}

/// Writes `certificate` where OpenSSH looks for the certificate of the key
/// at `key_path`, in `dir`: `<key name>-cert.pub`.
pub fn write_certificate(dir: &Path, key_path: &Path, certificate: &str) -> PathBuf {
    let cert_path = dir.join(format!(
        "{}-cert.pub",
        key_path.file_name().unwrap().to_string_lossy()
    ));
    std::fs::write(&cert_path, format!("{certificate}\n")).unwrap();
    cert_path
}

/// A real `sshd` on 127.0.0.1 that trusts a CA for logins as the current user.
pub struct Sshd {
    pub port: u16,
    pub user: String,
    process: Running,
    _dir: TempDir,
}

impl Sshd {
    /// Starts sshd trusting `ca_keys` (OpenSSH lines) and mapping the current
    /// user to `principals` (`AuthorizedPrincipalsFile`).
    pub fn start(ca_keys: &str, principals: &[&str]) -> Sshd {
        Sshd::start_with(ca_keys, principals, "")
    }

    /// [`Sshd::start`] with `extra_config` lines appended to sshd_config
    /// (e.g. `RevokedKeys /path/to.krl`).
    pub fn start_with(ca_keys: &str, principals: &[&str], extra_config: &str) -> Sshd {
        let sshd = ["/usr/sbin/sshd", "/usr/local/sbin/sshd"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .expect("sshd must be installed (scripts/test installs openssh-server)");
        let dir = tempfile::tempdir().unwrap();
        let (host_key, _) = ssh_keygen(dir.path(), "host_ed25519", &["-t", "ed25519"]);
        std::fs::write(dir.path().join("trusted_ca.pub"), ca_keys).unwrap();
        let user = current_user();
        std::fs::create_dir(dir.path().join("principals")).unwrap();
        std::fs::write(
            dir.path().join("principals").join(&user),
            principals.join("\n") + "\n",
        )
        .unwrap();
        if is_root() {
            // sshd's privilege separation needs this directory when run as root.
            std::fs::create_dir_all("/run/sshd").unwrap();
        }
        // The port was free a moment ago; another process may take it first,
        // so a few ports are tried.
        for _ in 0..5 {
            let port = free_port();
            let config = format!(
                "ListenAddress 127.0.0.1:{port}\n\
                 HostKey {host}\n\
                 PidFile none\n\
                 TrustedUserCAKeys {dir}/trusted_ca.pub\n\
                 AuthorizedPrincipalsFile {dir}/principals/%u\n\
                 AuthorizedKeysFile none\n\
                 PubkeyAuthentication yes\n\
                 PasswordAuthentication no\n\
                 KbdInteractiveAuthentication no\n\
                 PermitRootLogin prohibit-password\n\
                 StrictModes no\n\
                 UsePAM no\n\
                 LogLevel VERBOSE\n\
                 {extra_config}\n",
                host = host_key.display(),
                dir = dir.path().display()
            );
            let config_path = dir.path().join("sshd_config");
            std::fs::write(&config_path, config).unwrap();
            let process = Running::spawn(
                Command::new(sshd)
                    .args(["-D", "-e", "-f"])
                    .arg(&config_path),
            )
            .unwrap();
            if process
                .stderr
                .wait_for("Server listening on", STARTUP)
                .is_ok()
            {
                return Sshd {
                    port,
                    user,
                    process,
                    _dir: dir,
                };
            }
        }
        panic!("sshd did not start");
    }

    /// Runs `ssh user@127.0.0.1 echo jit-ssh-ok` with exactly this key and
    /// certificate; returns whether the login worked and ssh's stderr.
    pub fn login(&self, key: &Path, cert: &Path) -> (bool, String) {
        let mut ssh = ssh_command(self.port);
        ssh.args(["-o", "IdentitiesOnly=yes", "-o", "IdentityAgent=none"])
            .arg("-i")
            .arg(key)
            .arg("-o")
            .arg(format!("CertificateFile={}", cert.display()));
        ssh_echo(&mut ssh, &self.user)
    }

    /// Runs `ssh user@127.0.0.1 echo jit-ssh-ok` with only what the agent at
    /// `socket` holds (no key file); returns whether the login worked and
    /// ssh's stderr.
    pub fn login_with_agent(&self, socket: &Path) -> (bool, String) {
        ssh_with_agent(self.port, &self.user, socket)
    }

    /// sshd's log so far.
    pub fn log(&self) -> String {
        self.process.stderr.text()
    }
}

/// [`Sshd::login_with_agent`] for an sshd started otherwise, listening on
/// 127.0.0.1:`port`.
pub fn ssh_with_agent(port: u16, user: &str, socket: &Path) -> (bool, String) {
    let mut ssh = ssh_command(port);
    ssh.arg("-o")
        .arg(format!("IdentityAgent={}", socket.display()))
        .args(["-o", "IdentityFile=none"]);
    ssh_echo(&mut ssh, user)
}

/// `ssh` to port `port` of 127.0.0.1 with no user configuration, no host
/// key checks and no prompts; the caller adds the identity to offer, and
/// [`ssh_echo`] the destination.
fn ssh_command(port: u16) -> Command {
    let mut ssh = Command::new("ssh");
    ssh.args(["-F", "/dev/null", "-o", "BatchMode=yes"])
        .args([
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
        ])
        .args(["-o", "ConnectTimeout=10", "-o", "LogLevel=ERROR"])
        .args(["-p", &port.to_string()]);
    ssh
}

/// Runs `ssh` as `user` with the remote command `echo jit-ssh-ok`; returns
/// whether it got in and ran it, and ssh's stderr.
fn ssh_echo(ssh: &mut Command, user: &str) -> (bool, String) {
    ssh.arg(format!("{user}@127.0.0.1")).arg("echo jit-ssh-ok");
    let (status, out, err) = run(ssh, Duration::from_secs(30)).unwrap();
    (status.success() && out.contains("jit-ssh-ok"), err)
}

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
        let process = Running::spawn(Command::new("ssh-agent").arg("-D").arg("-a").arg(&socket))
            .expect("ssh-agent must be installed (openssh-client)");
        eventually(STARTUP, || {
            if socket.exists() {
                Ok(())
            } else {
                Err(format!(
                    "no socket yet; agent says: {}",
                    process.stderr.text()
                ))
            }
        });
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

/// The login name this test runs as (which sshd lets in).
pub fn current_user() -> String {
    let (_, out, _) = run(Command::new("id").arg("-un"), Duration::from_secs(5)).unwrap();
    out.trim().to_string()
}

fn is_root() -> bool {
    let (_, out, _) = run(Command::new("id").arg("-u"), Duration::from_secs(5)).unwrap();
    out.trim() == "0"
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
