//! `jit-ssh ssh-config [--install | --uninstall]`: the `~/.ssh/config`
//! block that makes plain `ssh` run `jit-ssh ensure` before connecting to
//! the hosts this CA serves, and the `@cert-authority` lines that let
//! `known_hosts` trust the CA's host certificates for those hosts.
//!
//! What it guarantees: the block is scoped (`Match host PATTERNS exec …`,
//! the patterns the CA publishes as `ssh_hosts`, or `--hosts`), and OpenSSH
//! skips a `Match` line's `exec` once an earlier criterion failed, so an
//! `ssh` to any other host never runs `jit-ssh`; without patterns nothing is
//! installed. The block names the `jit-ssh` on `PATH` when that is this
//! program, so a rebuild or a removed build directory does not break ssh.
//! Installing is idempotent: the block sits between markers naming the CA
//! and replaces an earlier one, and a `known_hosts` line already there is
//! not added again; the original config is backed up before the first
//! change. `--uninstall` removes exactly what installing added: the block
//! (and the blank line installing put before it) and the `known_hosts`
//! lines marked with this CA's name.

use std::path::{Path, PathBuf};

use super::{fetch_config, runtime, CaTarget, Env};
use crate::error::CliError;
use crate::known_cas;
use crate::paths::{create_private_dir, write_atomic, CaSlug};

/// What `ssh-config` does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SshConfigAction {
    /// Print the block and the `known_hosts` lines.
    Show,
    /// Add them (idempotent).
    Install,
    /// Remove what installing added.
    Uninstall,
}

/// The program the block runs: the `jit-ssh` found on `PATH` when it is
/// the same program as `exe` (the same file, or a copy with the same
/// bytes), else `exe` itself, with the warning to show.
pub fn stable_program(exe: &Path, path_var: Option<&str>) -> (PathBuf, Option<String>) {
    let exe_bytes = std::fs::read(exe).ok();
    let exe_real = std::fs::canonicalize(exe).ok();
    for dir in std::env::split_paths(path_var.unwrap_or_default()) {
        if !dir.is_absolute() {
            continue;
        }
        let candidate = dir.join("jit-ssh");
        if !candidate.is_file() {
            continue;
        }
        let same_file = exe_real.is_some() && std::fs::canonicalize(&candidate).ok() == exe_real;
        if same_file || (exe_bytes.is_some() && std::fs::read(&candidate).ok() == exe_bytes) {
            return (candidate, None);
        }
        return (
            exe.to_path_buf(),
            Some(format!(
                "the jit-ssh on PATH ({}) is another version than this one ({}); the block names \
                 this one: install it (`cargo install --locked --path ca-client`) and run \
                 `jit-ssh ssh-config --install` again",
                candidate.display(),
                exe.display()
            )),
        );
    }
    (
        exe.to_path_buf(),
        Some(format!(
            "jit-ssh is not on PATH: the block names {}, and ssh breaks if that file goes away; \
             install the client (`cargo install --locked --path ca-client` puts it in \
             ~/.cargo/bin) and run `jit-ssh ssh-config --install` again",
            exe.display()
        )),
    )
}

/// Splits `--hosts` values (repeatable, comma-separated) into patterns,
/// refusing what ssh would read differently from what was meant.
pub fn host_patterns(given: &[String]) -> Result<Vec<String>, CliError> {
    let mut patterns = Vec::new();
    for pattern in given.iter().flat_map(|g| g.split(',')) {
        let pattern = pattern.trim();
        if pattern.is_empty()
            || pattern == "!"
            || pattern
                .chars()
                .any(|c| c == '"' || c == '\'' || c == '\\' || c.is_whitespace() || c.is_control())
        {
            return Err(CliError::other(format!(
                "--hosts: {pattern:?} is not an OpenSSH host pattern (e.g. *.corp.example, 10.1.*)"
            )));
        }
        patterns.push(pattern.to_string());
    }
    Ok(patterns)
}

/// The `~/.ssh/config` block and the `known_hosts` lines for a CA, scoped
/// to `hosts` (OpenSSH patterns, at least one).
pub fn ssh_config_block(
    program: &Path,
    target: &CaTarget,
    slug: &CaSlug,
    files_dir: &Path,
    hosts: &[String],
    host_ca_keys: &[String],
) -> (String, Vec<String>) {
    let (begin, end) = markers(slug);
    let program = shell_word(&program.display().to_string());
    // `--ca` after the subcommand: it is a global option.
    let ensure = format!("{program} ensure --quiet --ca {}", shell_word(&target.url));
    let key = files_dir.join("id_ed25519");
    let patterns = hosts.join(",");
    let block = format!(
        "{begin}\n\
         # Renews the certificate before each connection to the CA's hosts (no network\n\
         # when one is loaded); ssh runs nothing for other hosts.\n\
         Match host \"{patterns}\" exec \"{ensure}\"\n\
         \x20   # Used when the certificate went to files (--no-agent or no agent).\n\
         \x20   IdentityFile {key}\n\
         \x20   CertificateFile {key}-cert.pub\n\
         {end}\n",
        key = key.display()
    );
    let known_hosts = host_ca_keys
        .iter()
        .filter_map(|k| {
            let mut fields = k.split_whitespace();
            let (kind, blob) = (fields.next()?, fields.next()?);
            Some(format!(
                "@cert-authority {patterns} {kind} {blob} {}",
                known_hosts_mark(slug)
            ))
        })
        .collect();
    (block, known_hosts)
}

/// Puts `block` into `config` text: replaces an existing block of the same
/// CA, else appends. Returns the new text.
pub fn install_block(config: &str, block: &str, slug: &CaSlug) -> String {
    if let Some((start, after)) = block_span(config, slug) {
        return format!("{}{block}{}", &config[..start], &config[after..]);
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

/// Removes this CA's block from `config` text, with the blank line
/// [`install_block`] put before it. Returns the new text.
pub fn uninstall_block(config: &str, slug: &CaSlug) -> String {
    let Some((mut start, after)) = block_span(config, slug) else {
        return config.to_string();
    };
    if config[..start].ends_with("\n\n") {
        start -= 1;
    }
    format!("{}{}", &config[..start], &config[after..])
}

/// `jit-ssh ssh-config`; returns what to print (stdout for `Show`, the
/// report otherwise). `hosts` overrides the CA's published patterns.
pub fn ssh_config(
    env: &Env,
    target: &CaTarget,
    program: &Path,
    hosts: &[String],
    action: SshConfigAction,
) -> Result<String, CliError> {
    let slug = target.slug()?;
    if action == SshConfigAction::Uninstall {
        return uninstall(env, &slug);
    }
    let config = runtime()?.block_on(async {
        let ca = target.client()?;
        Ok::<_, CliError>(fetch_config(&ca, env).await?.config)
    })?;
    let hosts = if hosts.is_empty() {
        host_patterns(&config.ssh_hosts)?
    } else {
        hosts.to_vec()
    };
    if hosts.is_empty() {
        return Err(CliError::other(format!(
            "the CA at {} publishes no host patterns ([client] ssh_hosts in its config), and \
             a block for every host would run jit-ssh before every ssh: name the CA's hosts \
             with --hosts, e.g. --hosts '*.corp.example'",
            target.url
        )));
    }
    let (block, known_hosts) = ssh_config_block(
        program,
        target,
        &slug,
        &env.dirs.files_dir(&slug),
        &hosts,
        &config.host_ca_keys,
    );
    if action == SshConfigAction::Show {
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
    // The block names the CA by URL; remembering it lets `ensure` find the
    // TLS root given with --ca-cert.
    known_cas::remember(&env.dirs, &target.url, target.root_pem.as_deref())
        .map_err(CliError::other)?;
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
            "Added the jit-ssh block for {} to {}",
            hosts.join(","),
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

/// `--uninstall`: this CA's block out of `~/.ssh/config` and its marked
/// lines out of `known_hosts`; a file left empty that way is removed.
fn uninstall(env: &Env, slug: &CaSlug) -> Result<String, CliError> {
    let io = |path: &Path, e: std::io::Error| CliError::other(format!("{}: {e}", path.display()));
    let mut report = Vec::new();
    let config_path = env.dirs.ssh.join("config");
    let old = std::fs::read_to_string(&config_path).unwrap_or_default();
    let new = uninstall_block(&old, slug);
    if new != old {
        rewrite(&config_path, &new, 0o600).map_err(|e| io(&config_path, e))?;
        report.push(format!(
            "Removed the jit-ssh block of {slug} from {}",
            config_path.display()
        ));
    } else {
        report.push(format!(
            "{} has no jit-ssh block of {slug}",
            config_path.display()
        ));
    }
    let kh_path = env.dirs.ssh.join("known_hosts");
    let old = std::fs::read_to_string(&kh_path).unwrap_or_default();
    let mark = known_hosts_mark(slug);
    let kept: String = old
        .split_inclusive('\n')
        .filter(|line| {
            let line = line.trim_end();
            !(line.starts_with("@cert-authority ") && line.ends_with(&format!(" {mark}")))
        })
        .collect();
    if kept != old {
        rewrite(&kh_path, &kept, 0o644).map_err(|e| io(&kh_path, e))?;
        report.push(format!("Removed the host CA from {}", kh_path.display()));
    }
    Ok(report.join("\n") + "\n")
}

/// Writes `text` to `path`, or removes the file when `text` is empty.
fn rewrite(path: &Path, text: &str, mode: u32) -> std::io::Result<()> {
    if text.is_empty() {
        std::fs::remove_file(path)
    } else {
        write_atomic(path, text.as_bytes(), mode)
    }
}

/// Where this CA's block starts and where the text after it (and its
/// newline) begins.
fn block_span(config: &str, slug: &CaSlug) -> Option<(usize, usize)> {
    let (begin, end) = markers(slug);
    let start = config.find(&begin)?;
    let stop = start + config[start..].find(&end)?;
    let after = stop + end.len();
    let after = if config[after..].starts_with('\n') {
        after + 1
    } else {
        after
    };
    Some((start, after))
}

/// Markers around the block `ssh-config --install` manages.
fn markers(slug: &CaSlug) -> (String, String) {
    (
        format!("# BEGIN jit-ssh {slug} (managed by `jit-ssh ssh-config --install`)"),
        format!("# END jit-ssh {slug}"),
    )
}

/// The comment that marks the `known_hosts` lines installing added.
fn known_hosts_mark(slug: &CaSlug) -> String {
    format!("jit-ssh:{slug}")
}

/// `word` as one shell word: as is when it holds only safe characters,
/// else single-quoted (the `exec` string runs through the user's shell).
fn shell_word(word: &str) -> String {
    if word
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "/._-+:@%=".contains(c))
    {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', "'\\''"))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn block(program: &str) -> (String, Vec<String>) {
        let target = CaTarget {
            url: "https://ca.example.com".into(),
            root_pem: None,
        };
        ssh_config_block(
            Path::new(program),
            &target,
            &CaSlug("ca.example.com".into()),
            Path::new("/h/.ssh/jit-ssh/ca.example.com"),
            &["*.corp.example".into(), "10.1.*".into()],
            &["ssh-ed25519 AAAAC3 host-ca".into()],
        )
    }

    #[test]
    fn install_is_idempotent_and_replaces_its_own_block() {
        let slug = CaSlug("ca.example.com".into());
        let (block, known_hosts) = block("/usr/bin/jit-ssh");
        let original = "Host a\n  User b\n";
        let once = install_block(original, &block, &slug);
        assert!(once.starts_with(original));
        assert!(once.contains(
            "Match host \"*.corp.example,10.1.*\" exec \"/usr/bin/jit-ssh ensure --quiet --ca \
             https://ca.example.com\""
        ));
        assert_eq!(
            known_hosts,
            ["@cert-authority *.corp.example,10.1.* ssh-ed25519 AAAAC3 jit-ssh:ca.example.com"]
        );
        assert_eq!(install_block(&once, &block, &slug), once);
        let changed = block.replace("ensure", "ensure --no-login");
        let twice = install_block(&once, &changed, &slug);
        assert_eq!(twice.matches("# BEGIN jit-ssh").count(), 1);
        assert!(twice.contains("--no-login"));
        assert_eq!(uninstall_block(&twice, &slug), original);
        assert_eq!(
            uninstall_block(&install_block("", &block, &slug), &slug),
            ""
        );
    }

    #[test]
    fn a_program_path_with_spaces_is_one_shell_word() {
        let (block, _) = block("/opt/my tools/jit-ssh");
        assert!(
            block.contains("exec \"'/opt/my tools/jit-ssh' ensure"),
            "{block}"
        );
    }

    #[test]
    fn host_patterns_split_on_commas_and_refuse_quotes() {
        assert_eq!(
            host_patterns(&["*.a.example,10.1.*".into(), "b".into()]).unwrap(),
            ["*.a.example", "10.1.*", "b"]
        );
        for bad in ["a b", "", "a\"", "x,,y"] {
            assert!(host_patterns(&[bad.into()]).is_err(), "{bad}");
        }
    }
}
