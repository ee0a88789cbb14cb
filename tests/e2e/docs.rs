//! Every command in README.md and docs/*.md is run here or accounted for, so
//! the docs cannot drift from the binaries again.
//!
//! The markdown is read (tests/support/markdown.rs) and each fenced block is
//! handled by its language:
//! - `sh`, `bash`, `console` (the lines after `$ `): every simple command is
//!   either a `jit-ssh`/`jit-ssh-ca` invocation, run with the real binary from
//!   target/debug in a sandbox (temporary HOME and XDG directories, system
//!   paths moved into a temporary directory by `SUBSTITUTIONS`
//!   (tests/support/doc_sandbox.rs), CA URLs
//!   pointed at a closed loopback port) and required to get past argument
//!   parsing (clap answers a usage error with exit 2 and "For more
//!   information, try '--help'"); or shell plumbing ([`PLUMBING`]); or listed
//!   in [`LISTED`] with the test that runs it or why no test can. Anything
//!   else fails the build, naming its `file:line` and what to do.
//! - `toml`: a CA config (it has `[[oidc]]`) must pass `jit-ssh-ca policy
//!   check --config`, with the repository's example policies in its
//!   `policy_dir`; a policy snippet (`[[rule]]`, `[[admin]]`, or a `[rule.…]`
//!   part of a rule) must pass `policy check` on its own; `keys.toml` must be
//!   what `jit-ssh-ca init` writes.
//! - untagged blocks holding sshd keywords must pass `sshd -t` in a
//!   temporary config; other untagged blocks (output, diagrams) must hold no
//!   `$ ` prompt.
//! - `ini` blocks naming a file in `contrib/` must equal it.
//! - `json`, `http`, `text`, `yaml` hold no commands; any other language is an
//!   error until this file says how to check it.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::Path;
use std::process::Command;

use e2e::doc_sandbox::Sandbox;
use e2e::markdown::{blocks, commands, doc_files, simple_commands, Block, DocCommand};
use e2e::openssh::current_user;
use e2e::{bin, repo_root, run, STARTUP};

/// Programs that are shell plumbing around the documented steps (files,
/// variables, text): what they do is the shell's, not jit-ssh's.
const PLUMBING: &[&str] = &[
    "awk", "base64", "basenc", "cat", "cd", "cp", "echo", "eval", "export", "head", "mkdir",
    "mktemp", "mv", "printf", "sed", "tr", "umask",
];

/// How a listed command is accounted for.
#[derive(Clone, Copy)]
enum Proof {
    /// Run, as the doc shows it, by this test (`file::function` in tests/e2e).
    Test(&'static str),
    /// Not run by any test, and why none can.
    NotRun(&'static str),
}

/// Commands that are neither jit-ssh invocations nor plumbing: (doc file,
/// the simple command's words joined by spaces must start with this, proof).
/// Every row must match a command in the docs, and every test it names must
/// exist, so the table cannot go stale.
const LISTED: &[(&str, &str, Proof)] = &[
    ("README.md", "cargo build --release --locked", Proof::NotRun(BUILD)),
    ("README.md", "scripts/test", Proof::NotRun("the whole suite, this test among it")),
    ("README.md", "ssh alice@test-host", Proof::Test("dev::readme_quick_start_works_as_written")),
    ("docs/api.md", "curl -fsS https://ca.example.com/v1/ca/user.pub", Proof::Test(HOST_SETUP)),
    ("docs/api.md", "ssh-keygen -Y sign -n jit-ssh-pop-v1@jit-ssh", Proof::Test(POP)),
    ("docs/api.md", "curl -sSD headers -o jit-ssh.krl", Proof::Test(KRL_CHECK)),
    ("docs/api.md", "curl -sS https://ca.example.com/v1/ca/user.pub", Proof::Test(KRL_CHECK)),
    ("docs/api.md", "ssh-keygen -Y verify -f allowed_signers", Proof::Test(KRL_CHECK)),
    ("docs/api.md", "openssl dgst -sha256 -hmac", Proof::Test(WEBHOOK)),
    ("docs/benchmarks.md", "scripts/bench-issuance", Proof::NotRun(BENCH)),
    ("docs/benchmarks.md", "ssh-keygen -q -t ed25519", Proof::NotRun(BENCH)),
    ("docs/benchmarks.md", "ssh-keygen -q -s ca", Proof::NotRun(BENCH)),
    ("docs/benchmarks.md", "ssh-add -t 3600 user", Proof::NotRun(BENCH)),
    ("docs/benchmarks.md", "hyperfine", Proof::NotRun(BENCH)),
    ("docs/client.md", "cargo install --locked --path ca-client", Proof::Test(INSTALLED)),
    ("docs/client.md", "ssh-add -L", Proof::Test(CLIENT_LOGIN)),
    ("docs/client.md", "ssh -p 2222 root@127.0.0.1", Proof::Test(CLIENT_LOGIN)),
    ("docs/deploy.md", "cargo build --release --locked", Proof::NotRun(BUILD)),
    ("docs/deploy.md", "useradd --system", Proof::NotRun(
        "creates a system user: deploy_keys_section_runs_as_written puts the current user in its place",
    )),
    ("docs/deploy.md", "install -d -m 0700", Proof::Test("docs::deploy_keys_section_runs_as_written")),
    ("docs/deploy.md", "sh -c umask 077;", Proof::Test("docs::deploy_keys_section_runs_as_written")),
    ("docs/deploy.md", "curl -fsS https://ca.example.com/v1/ca/user.pub", Proof::Test(HOST_SETUP)),
    ("docs/deploy.md", "install -m 0644 contrib/jit-ssh-ca.service", Proof::NotRun(SYSTEMD)),
    ("docs/deploy.md", "systemd-creds encrypt", Proof::NotRun(SYSTEMD)),
    ("docs/deploy.md", "shred -u", Proof::NotRun(SYSTEMD)),
    ("docs/deploy.md", "systemctl ", Proof::NotRun(SYSTEMD)),
    ("docs/getting-started.md", "cargo build --release --locked", Proof::NotRun(BUILD)),
    ("docs/getting-started.md", "cargo install --locked --path ca-client", Proof::Test(INSTALLED)),
    ("docs/getting-started.md", "ssh-keygen -q -t ed25519 -N  -f host_key", Proof::Test(HOST_SETUP)),
    ("docs/getting-started.md", "curl -fsS http://127.0.0.1:8443/v1/ca/user.pub", Proof::Test(HOST_SETUP)),
    ("docs/getting-started.md", "/usr/sbin/sshd -D -e -f", Proof::Test(HOST_SETUP)),
    ("docs/getting-started.md", "ssh-add -l", Proof::Test(CLIENT_LOGIN)),
    ("docs/getting-started.md", "ssh -p 2222 $USER@127.0.0.1", Proof::Test(HOST_SETUP)),
    ("docs/hosts.md", "curl -fsS https://ca.example.com/v1/ca/user.pub", Proof::Test(HOST_SETUP)),
    ("docs/hosts.md", "systemctl ", Proof::NotRun(SYSTEMD)),
    ("docs/policies.md", "$EDITOR", Proof::NotRun("a person edits the file")),
];

const BUILD: &str = "the build itself: every test runs the binaries the same sources make";
const BENCH: &str = "a benchmark, run by hand; docs/benchmarks.md reports what it measured";
const SYSTEMD: &str = "changes the host's systemd; the units are contrib/*, which \
     systemd_units_in_the_docs_are_the_ones_in_contrib compares with the docs";
const HOST_SETUP: &str = "dev::getting_started_host_setup_works_as_written";
const CLIENT_LOGIN: &str =
    "client::browser_login_loads_the_agent_with_a_lifetime_and_logout_leaves_nothing";
const INSTALLED: &str = "daily::the_block_names_the_jit_ssh_on_path_not_the_build_directory";
const POP: &str = "issuance::real_tokens_get_certificates_that_openssh_accepts";
const KRL_CHECK: &str = "docs::the_krl_signature_check_in_api_md_runs_as_written";
const WEBHOOK: &str = "webhooks::request_events_arrive_signed_at_a_loopback_receiver";

#[test]
fn every_fenced_command_in_the_docs_is_run_or_listed() {
    let root = repo_root();
    let docs: Vec<(String, String)> = doc_files(&root)
        .into_iter()
        .map(|file| {
            let text = std::fs::read_to_string(root.join(&file)).unwrap();
            (file, text)
        })
        .collect();
    let sandbox = Sandbox::create();
    let mut used = BTreeSet::new();
    let mut problems = Vec::new();
    let mut invocations = 0;
    for command in docs
        .iter()
        .flat_map(|(file, text)| shell_commands(file, text))
    {
        let command = match command {
            Ok(command) => command,
            Err(problem) => {
                problems.push(problem);
                continue;
            }
        };
        for words in account(&command, &mut used, &mut problems) {
            invocations += 1;
            if let Err(problem) = sandbox.parses(&words) {
                problems.push(format!(
                    "{}: `{}`: {problem}",
                    command.place(),
                    command.text
                ));
            }
        }
    }
    for (index, (file, prefix, proof)) in LISTED.iter().enumerate() {
        if !used.contains(&index) {
            problems.push(format!(
                "LISTED row ({file}, {prefix:?}) matches no command in the docs: remove it"
            ));
        }
        match proof {
            Proof::Test(test) => {
                if let Err(problem) = test_exists(&root, test) {
                    problems.push(problem);
                }
            }
            Proof::NotRun(why) if why.trim().is_empty() => {
                problems.push(format!(
                    "LISTED row ({file}, {prefix:?}) says no test runs it, but not why"
                ));
            }
            Proof::NotRun(_) => {}
        }
    }
    assert!(
        problems.is_empty(),
        "docs commands not accounted for:\n{}",
        problems.join("\n")
    );
    assert!(
        invocations > 20,
        "only {invocations} jit-ssh invocations found"
    );
}

/// The gate itself: a command nobody runs or lists is reported with its
/// place, and a listed or plumbing one is not.
#[test]
fn a_new_unlisted_command_in_a_doc_fails_with_its_place() {
    let markdown = "# x\n\n```sh\ncd /tmp\nfrobnicate --now\n```\n";
    let mut used = BTreeSet::new();
    let mut problems = Vec::new();
    for command in shell_commands("docs/new.md", markdown) {
        account(&command.unwrap(), &mut used, &mut problems);
    }
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(
        problems[0].starts_with("docs/new.md:5: `frobnicate --now`"),
        "{}",
        problems[0]
    );
    assert!(problems[0].contains("LISTED"), "{}", problems[0]);
    // A usage error from clap is told apart from every other failure.
    let sandbox = Sandbox::create();
    let err = sandbox
        .parses(&["jit-ssh".into(), "login".into(), "--no-such-flag".into()])
        .unwrap_err();
    assert!(err.contains("--no-such-flag"), "{err}");
    sandbox
        .parses(&["jit-ssh".into(), "login".into(), "--no-agent".into()])
        .unwrap();
}

#[test]
fn toml_snippets_in_the_docs_load() {
    let root = repo_root();
    let sandbox = Sandbox::create();
    let mut checked = 0;
    let mut problems = Vec::new();
    for block in all_blocks(&root).into_iter().filter(|b| b.lang == "toml") {
        let place = format!("{}:{}", block.file, block.line);
        let result = if block.text.contains("[[oidc]]") {
            sandbox.check_config(&place, &block.text)
        } else if block.text.contains("[[rule]]")
            || block.text.contains("[[admin]]")
            || block.text.trim_start().starts_with("[rule.")
        {
            sandbox.check_policy(&place, &block.text)
        } else if block.text.trim_start().starts_with("[user]") {
            sandbox.check_keys_toml(&block.text)
        } else {
            Err("a toml block that is no CA config, policy or keys.toml: \
                 teach tests/e2e/docs.rs how to load it"
                .to_string())
        };
        checked += 1;
        if let Err(problem) = result {
            problems.push(format!("{place}: {problem}"));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    assert!(checked >= 5, "only {checked} toml blocks found");
}

#[test]
fn sshd_config_snippets_in_the_docs_pass_sshd_t() {
    let root = repo_root();
    let sandbox = Sandbox::create();
    let mut checked = 0;
    let mut problems = Vec::new();
    for block in all_blocks(&root).into_iter().filter(|b| b.lang.is_empty()) {
        let place = format!("{}:{}", block.file, block.line);
        if !is_sshd_config(&block.text) {
            if let Some(line) = block.text.lines().find(|l| l.starts_with("$ ")) {
                problems.push(format!(
                    "{place}: untagged block with a command {line:?}: tag it ```console"
                ));
            }
            continue;
        }
        checked += 1;
        if let Err(problem) = sandbox.sshd_t(&block.text) {
            problems.push(format!("{place}: {problem}"));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    assert!(checked >= 4, "only {checked} sshd_config blocks found");
}

#[test]
fn systemd_units_in_the_docs_are_the_ones_in_contrib() {
    let root = repo_root();
    let mut checked = 0;
    for block in all_blocks(&root).into_iter().filter(|b| b.lang == "ini") {
        let place = format!("{}:{}", block.file, block.line);
        let (first, rest) = block.text.split_once('\n').unwrap();
        let contrib = first
            .split(['(', ')'])
            .find(|part| part.starts_with("contrib/"))
            .unwrap_or_else(|| panic!("{place}: an ini block names its contrib/ file"));
        let shipped = std::fs::read_to_string(root.join(contrib)).unwrap();
        // The docs show the unit without its comments and sandboxing: every
        // line they show is the shipped one, in its order.
        let mut shipped_lines = shipped.lines();
        for line in rest.lines().filter(|l| !l.trim().is_empty()) {
            assert!(
                shipped_lines.any(|s| s == line),
                "{place}: {line:?} is not in {contrib} (or not in this order)"
            );
        }
        checked += 1;
    }
    assert!(checked >= 2, "only {checked} unit blocks found");
}

/// docs/deploy.md section 1, run line by line with the paths in a temporary
/// directory and the current user in place of `jit-ssh-ca` (no user is
/// created): the directories exist 0700 and are the user's, the passphrase
/// is 0600, and `init` made the keys.
#[test]
fn deploy_keys_section_runs_as_written() {
    let root = repo_root();
    let guide = std::fs::read_to_string(root.join("docs/deploy.md")).unwrap();
    let block = blocks("docs/deploy.md", &guide)
        .unwrap()
        .into_iter()
        .find(|b| b.lang == "sh" && b.text.contains("jit-ssh-ca init"))
        .expect("docs/deploy.md has the keys block");
    let sandbox = Sandbox::create();
    let user = current_user();
    let (_, group, _) = run(Command::new("id").arg("-gn"), STARTUP).unwrap();
    let mut script = Vec::new();
    for line in block.text.lines() {
        if line.starts_with("useradd ") {
            continue; // creates a system user: the current user stands in
        }
        let line = sandbox
            .localize(line)
            .replace(
                "-o jit-ssh-ca -g jit-ssh-ca",
                &format!("-o {user} -g {}", group.trim()),
            )
            .replace("sudo -u jit-ssh-ca ", "");
        script.push(line);
    }
    assert_eq!(script.len(), 3, "{script:?}");
    let path = format!(
        "{}:{}",
        bin("jit-ssh-ca").parent().unwrap().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let (status, _, err) = run(
        Command::new("bash")
            .args(["-euo", "pipefail", "-c", &script.join("\n")])
            .env("PATH", path),
        STARTUP,
    )
    .unwrap();
    assert!(status.success(), "deploy.md section 1: {err}\n{script:#?}");
    let uid = std::fs::metadata("/proc/self").unwrap().uid();
    for dir in ["etc/jit-ssh-ca", "var/lib/jit-ssh-ca"] {
        let meta = std::fs::metadata(sandbox.dir.path().join(dir)).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o700, "{dir}");
        assert_eq!(meta.uid(), uid, "{dir}");
    }
    let passphrase = sandbox.dir.path().join("etc/jit-ssh-ca/passphrase");
    let meta = std::fs::metadata(&passphrase).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    assert!(std::fs::read_to_string(&passphrase).unwrap().trim().len() >= 12);
    assert!(sandbox
        .dir
        .path()
        .join("var/lib/jit-ssh-ca/keys.toml")
        .exists());
}

/// A console example that shows what `logout` revoked names a serial the
/// same example issued: an example never revokes a certificate it did not
/// show being made.
#[test]
fn console_examples_revoke_only_serials_they_issued() {
    let root = repo_root();
    let mut checked = 0;
    for block in all_blocks(&root)
        .into_iter()
        .filter(|b| b.lang == "console")
    {
        let mut issued = BTreeSet::new();
        for line in block.text.lines() {
            if let Some(rest) = line.split("serial ").nth(1) {
                issued.insert(rest.split([')', ' ', ',']).next().unwrap().to_string());
            }
            if let Some(list) = line.split("Revoked at the CA: certificate(s) ").nth(1) {
                for serial in list.trim_end_matches('.').split(", ") {
                    checked += 1;
                    assert!(
                        issued.contains(serial),
                        "{}:{}: revokes serial {serial}, which the example never issued \
                         (issued: {issued:?})",
                        block.file,
                        block.line
                    );
                }
            }
        }
    }
    assert!(checked >= 1, "no console example shows a revocation");
}

/// README.md says what a host needs for each feature: the sshd line to
/// accept certificates, and the binary, timer and `RevokedKeys` line for
/// revocation (docs/hosts.md has the details).
#[test]
fn readme_says_what_each_host_feature_needs() {
    let readme = std::fs::read_to_string(repo_root().join("README.md")).unwrap();
    for needed in [
        "TrustedUserCAKeys",
        "RevokedKeys",
        "jit-ssh host sync-krl",
        "timer",
    ] {
        assert!(
            readme.contains(needed),
            "README.md does not mention {needed:?}"
        );
    }
    assert!(
        !readme.contains("nothing but one"),
        "README.md says a host needs nothing but one line, and revocation needs more"
    );
}

/// docs/api.md's recipe for checking a KRL's signature by hand, run as
/// written against a real CA (`jit-ssh-ca dev`) in a temporary directory:
/// `ssh-keygen -Y verify` accepts the signature the CA sent.
#[test]
fn the_krl_signature_check_in_api_md_runs_as_written() {
    let root = repo_root();
    let text = std::fs::read_to_string(root.join("docs/api.md")).unwrap();
    let block = blocks("docs/api.md", &text)
        .unwrap()
        .into_iter()
        .find(|b| b.lang == "sh" && b.text.contains("ssh-keygen -Y verify"))
        .expect("docs/api.md has the KRL check");
    let mut dev = e2e::dev::DevCa::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let script = block.text.replace("https://ca.example.com", &dev.url);
    let (status, out, err) = run(
        Command::new("bash")
            .args(["-euo", "pipefail", "-c", &script])
            .current_dir(dir.path()),
        STARTUP,
    )
    .unwrap();
    assert!(status.success(), "{script}\n{out}{err}");
    assert!(
        out.contains("Good \"jit-ssh-krl-v1@jit-ssh\" signature for ca"),
        "{out}{err}"
    );
    // Stopped as systemd would, so that it deletes its throw-away data.
    dev.process.terminate();
    dev.process.wait_exit(STARTUP).unwrap();
}

/// Every fenced shell command of one markdown file, or what could not be read.
fn shell_commands(file: &str, text: &str) -> Vec<Result<DocCommand, String>> {
    let blocks = match blocks(file, text) {
        Ok(blocks) => blocks,
        Err(problem) => return vec![Err(problem)],
    };
    let mut found = Vec::new();
    for block in blocks {
        match block.lang.as_str() {
            "sh" | "bash" | "console" => found.extend(commands(&block).into_iter().map(Ok)),
            "ini" => found.extend(block.text.lines().enumerate().filter_map(|(i, line)| {
                line.strip_prefix("ExecStart=").map(|command| {
                    Ok(DocCommand {
                        file: file.to_string(),
                        line: block.line + 1 + i,
                        text: command.to_string(),
                    })
                })
            })),
            "" | "toml" | "json" | "http" | "text" | "yaml" => {}
            other => found.push(Err(format!(
                "{file}:{}: fenced block in language {other:?}: say in tests/e2e/docs.rs \
                 how to check it (or tag it `text` when it holds no command)",
                block.line
            ))),
        }
    }
    found
}

/// Accounts for each simple command of `command`: returns the jit-ssh
/// invocations to run (program name first), marks the [`LISTED`] rows used,
/// and records a problem for a command nothing accounts for.
fn account(
    command: &DocCommand,
    used: &mut BTreeSet<usize>,
    problems: &mut Vec<String>,
) -> Vec<Vec<String>> {
    let simple = match simple_commands(&command.text) {
        Ok(simple) => simple,
        Err(problem) => {
            problems.push(format!("{}: {problem}", command.place()));
            return Vec::new();
        }
    };
    let mut invocations = Vec::new();
    for mut words in simple {
        // `VAR=value cmd` and `sudo -u USER cmd` run `cmd`.
        while words.first().is_some_and(|w| is_assignment(w)) {
            words.remove(0);
        }
        if words.len() > 3 && words[0] == "sudo" && words[1] == "-u" {
            words.drain(..3);
        }
        let Some(program) = words.first() else {
            continue;
        };
        let name = program.rsplit('/').next().unwrap_or(program);
        if name == "jit-ssh" || name == "jit-ssh-ca" {
            let mut invocation = vec![name.to_string()];
            invocation.extend(words[1..].iter().cloned());
            invocations.push(invocation);
            continue;
        }
        if PLUMBING.contains(&name) {
            continue;
        }
        let joined = words.join(" ");
        match LISTED
            .iter()
            .position(|(file, prefix, _)| *file == command.file && joined.starts_with(prefix))
        {
            Some(index) => {
                used.insert(index);
            }
            None => problems.push(format!(
                "{}: `{}` is neither run nor listed: run it from a test and add a row \
                 ({:?}, {:?}, Proof::Test(\"module::test\")) to LISTED in tests/e2e/docs.rs, \
                 or Proof::NotRun(\"why\") when no test can",
                command.place(),
                joined,
                command.file,
                joined
            )),
        }
    }
    invocations
}

fn is_assignment(word: &str) -> bool {
    word.split_once('=').is_some_and(|(name, _)| {
        !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
    })
}

fn all_blocks(root: &Path) -> Vec<Block> {
    doc_files(root)
        .into_iter()
        .flat_map(|file| {
            let text = std::fs::read_to_string(root.join(&file)).unwrap();
            blocks(&file, &text).unwrap()
        })
        .collect()
}

/// Whether a `module::function` test exists in tests/e2e.
fn test_exists(root: &Path, test: &str) -> Result<(), String> {
    let (module, function) = test
        .split_once("::")
        .ok_or_else(|| format!("LISTED names {test:?}, not module::function"))?;
    let source = std::fs::read_to_string(root.join("tests/e2e").join(format!("{module}.rs")))
        .map_err(|e| format!("LISTED names {test}: tests/e2e/{module}.rs: {e}"))?;
    if source.contains(&format!("fn {function}(")) {
        Ok(())
    } else {
        Err(format!(
            "LISTED names {test}, which tests/e2e/{module}.rs lacks"
        ))
    }
}

const SSHD_KEYWORDS: &[&str] = &[
    "TrustedUserCAKeys",
    "AuthorizedPrincipalsFile",
    "RevokedKeys",
    "ListenAddress",
];

fn is_sshd_config(text: &str) -> bool {
    text.lines().any(|line| {
        line.split_whitespace()
            .next()
            .is_some_and(|word| SSHD_KEYWORDS.contains(&word))
    })
}
