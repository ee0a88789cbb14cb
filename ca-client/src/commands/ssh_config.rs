//! `jit-ssh ssh-config [--install]`: the `~/.ssh/config` block that makes
//! plain `ssh` run `jit-ssh ensure` before each connection, and the
//! `@cert-authority` lines that let `known_hosts` trust the CA's host
//! certificates. Installing is idempotent: the block sits between markers
//! naming the CA and replaces an earlier one; the original config is backed
//! up before the first change.

use std::path::Path;

use super::{fetch_config, runtime, CaTarget, Env};
use crate::error::CliError;
use crate::paths::{create_private_dir, write_atomic, CaSlug};

/// The `~/.ssh/config` block and the `known_hosts` lines for a CA.
pub fn ssh_config_block(
    exe: &Path,
    target: &CaTarget,
    slug: &CaSlug,
    files_dir: &Path,
    host_ca_keys: &[String],
) -> (String, Vec<String>) {
    let (begin, end) = markers(slug);
    let mut ensure = format!("{} ensure --quiet --ca {}", exe.display(), target.url);
    if target.root_pem.is_some() {
        ensure.push_str(" --ca-cert <FILE>");
    }
    let key = files_dir.join("id_ed25519");
    let block = format!(
        "{begin}\n\
         # Renews the certificate before each connection (no network when one is loaded).\n\
         Match exec \"{ensure}\"\n\
         \x20   # Used when the certificate went to files (--no-agent or no agent).\n\
         \x20   IdentityFile {key}\n\
         \x20   CertificateFile {key}-cert.pub\n\
         {end}\n",
        key = key.display()
    );
    let known_hosts = host_ca_keys
        .iter()
        .map(|k| format!("@cert-authority * {k}"))
        .collect();
    (block, known_hosts)
}

/// Puts `block` into `config` text: replaces an existing block of the same
/// CA, else appends. Returns the new text.
pub fn install_block(config: &str, block: &str, slug: &CaSlug) -> String {
    let (begin, end) = markers(slug);
    if let (Some(start), Some(stop)) = (config.find(&begin), config.find(&end)) {
        if stop > start {
            let after = stop + end.len();
            let after = if config[after..].starts_with('\n') {
                after + 1
            } else {
                after
            };
            return format!("{}{block}{}", &config[..start], &config[after..]);
        }
    }
    // `Match` applies to everything after it: append at the end.
    let mut out = config.to_string();
    if !out.is_empty() && !out.ends_with('\n') {
        out.push('\n');
    }
    if !out.is_empty() {
        out.push('\n');
    }
    out.push_str(block);
    out
}

/// `jit-ssh ssh-config [--install]`; returns what to print.
pub fn ssh_config(
    env: &Env,
    target: &CaTarget,
    exe: &Path,
    install: bool,
) -> Result<String, CliError> {
    let slug = target.slug()?;
    let config = runtime()?.block_on(async {
        let ca = target.client()?;
        Ok::<_, CliError>(fetch_config(&ca, env).await?.config)
    })?;
    let (block, known_hosts) = ssh_config_block(
        exe,
        target,
        &slug,
        &env.dirs.files_dir(&slug),
        &config.host_ca_keys,
    );
    if !install {
        let mut out = format!("# ~/.ssh/config\n{block}");
        if !known_hosts.is_empty() {
            out.push_str("\n# ~/.ssh/known_hosts\n");
            for line in &known_hosts {
                out.push_str(line);
                out.push('\n');
            }
        }
        return Ok(out);
    }
    let io = |path: &Path, e: std::io::Error| CliError::other(format!("{}: {e}", path.display()));
    create_private_dir(&env.dirs.ssh).map_err(|e| io(&env.dirs.ssh, e))?;
    let config_path = env.dirs.ssh.join("config");
    let old = std::fs::read_to_string(&config_path).unwrap_or_default();
    let new = install_block(&old, &block, &slug);
    let mut report = Vec::new();
    if new != old {
        if config_path.exists() {
            let backup = env.dirs.ssh.join("config.jit-ssh.bak");
            std::fs::copy(&config_path, &backup).map_err(|e| io(&backup, e))?;
            report.push(format!(
                "Backed up {} to {}",
                config_path.display(),
                backup.display()
            ));
        }
        write_atomic(&config_path, new.as_bytes(), 0o600).map_err(|e| io(&config_path, e))?;
        report.push(format!(
            "Added the jit-ssh block to {}",
            config_path.display()
        ));
    } else {
        report.push(format!(
            "{} already has the jit-ssh block",
            config_path.display()
        ));
    }
    if !known_hosts.is_empty() {
        let kh_path = env.dirs.ssh.join("known_hosts");
        let old = std::fs::read_to_string(&kh_path).unwrap_or_default();
        let missing: Vec<&String> = known_hosts
            .iter()
            .filter(|l| !old.lines().any(|o| o.trim() == l.as_str()))
            .collect();
        if !missing.is_empty() {
            let mut new = old.clone();
            if !new.is_empty() && !new.ends_with('\n') {
                new.push('\n');
            }
            for line in missing {
                new.push_str(line);
                new.push('\n');
            }
            write_atomic(&kh_path, new.as_bytes(), 0o644).map_err(|e| io(&kh_path, e))?;
            report.push(format!("Added the host CA to {}", kh_path.display()));
        }
    }
    Ok(report.join("\n") + "\n")
}

/// Markers around the block `ssh-config --install` manages.
fn markers(slug: &CaSlug) -> (String, String) {
    (
        format!("# BEGIN jit-ssh {slug} (managed by `jit-ssh ssh-config --install`)"),
        format!("# END jit-ssh {slug}"),
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn install_is_idempotent_and_replaces_its_own_block() {
        let slug = CaSlug("ca.example.com".into());
        let target = CaTarget {
            url: "https://ca.example.com".into(),
            root_pem: None,
        };
        let (block, _) = ssh_config_block(
            Path::new("/usr/bin/jit-ssh"),
            &target,
            &slug,
            Path::new("/h/.ssh/jit-ssh/ca.example.com"),
            &[],
        );
        let original = "Host a\n  User b\n";
        let once = install_block(original, &block, &slug);
        assert!(once.starts_with(original));
        assert!(once.contains(
            "Match exec \"/usr/bin/jit-ssh ensure --quiet --ca https://ca.example.com\""
        ));
        assert_eq!(install_block(&once, &block, &slug), once);
        let changed = block.replace("ensure", "ensure --no-login");
        let twice = install_block(&once, &changed, &slug);
        assert_eq!(twice.matches("# BEGIN jit-ssh").count(), 1);
        assert!(twice.contains("--no-login"));
    }
}
