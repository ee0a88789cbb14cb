//! `jit-ssh ssh`: after `ensure`, replace this process with OpenSSH's `ssh`,
//! pointing it at the key files when the certificate went to files (an
//! agent-held certificate needs no arguments: `ssh` asks the agent).

use std::os::unix::process::CommandExt as _;
use std::process::Command;

use super::Env;
use crate::error::{CliError, Failure};
use crate::paths::CaSlug;

/// The `ssh` command line for `args`, with this CA's key files when they
/// exist.
pub fn ssh_command(env: &Env, slug: &CaSlug, args: &[String]) -> Command {
    let mut command = Command::new("ssh");
    let files_dir = env.dirs.files_dir(slug);
    let cert = files_dir.join("id_ed25519-cert.pub");
    if cert.exists() {
        command
            .arg("-i")
            .arg(files_dir.join("id_ed25519"))
            .arg("-o")
            .arg(format!("CertificateFile={}", cert.display()));
    }
    command.args(args);
    command
}

/// Runs `ssh` in place of this process; returns only when it cannot start.
pub fn exec_ssh(env: &Env, slug: &CaSlug, args: &[String]) -> CliError {
    let error = ssh_command(env, slug, args).exec();
    CliError::new(
        Failure::Other,
        format!("cannot run ssh: {error}: is OpenSSH installed?"),
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::ffi::OsStr;

    use super::*;
    use crate::commands::tests::env_in;

    #[test]
    fn ssh_gets_the_key_files_only_when_the_certificate_went_to_files() {
        let home = tempfile::tempdir().unwrap();
        let env = env_in(home.path(), None);
        let slug = CaSlug("ca.example.com".into());
        let args = vec!["-p".to_string(), "2222".into(), "alice@db1".into()];
        let plain = ssh_command(&env, &slug, &args);
        assert_eq!(plain.get_program(), "ssh");
        assert_eq!(
            plain.get_args().collect::<Vec<_>>(),
            ["-p", "2222", "alice@db1"]
        );

        let dir = env.dirs.files_dir(&slug);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("id_ed25519-cert.pub"), "cert\n").unwrap();
        let with_files = ssh_command(&env, &slug, &args);
        let key = dir.join("id_ed25519");
        let certificate = format!(
            "CertificateFile={}",
            dir.join("id_ed25519-cert.pub").display()
        );
        assert_eq!(
            with_files.get_args().collect::<Vec<_>>(),
            [
                OsStr::new("-i"),
                key.as_os_str(),
                OsStr::new("-o"),
                OsStr::new(&certificate),
                OsStr::new("-p"),
                OsStr::new("2222"),
                OsStr::new("alice@db1"),
            ]
        );
    }
}
