//! `jit-ssh`: short-lived SSH certificates from a jit-ssh CA. Parses
//! arguments (defined in `cli.rs`), reads the environment once, calls
//! `ca_client::commands`, prints, and maps errors to the exit codes listed
//! in `--help`.

mod cli;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use ca_client::access::{AccessCommand, Auth};
use ca_client::commands::{self, CaTarget, EnsureOptions, Ensured, Env, LoginOptions};
use ca_client::error::{CliError, Failure};
use ca_client::paths::Dirs;
use ca_client::ui::Ui;
use clap::Parser;
use jit_ssh_common::text::escape_control_lines;

use crate::cli::{default_flow, CaArgs, Cli, Command, HostCommand, InteractiveArgs, UserAuthArgs};

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(error) => {
            // A CA's or provider's message may carry control characters.
            eprintln!("jit-ssh: {}", escape_control_lines(&error.to_string()));
            ExitCode::from(error.failure.exit_code())
        }
    }
}

/// An environment variable, `None` when unset or empty.
fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// `value` as pretty JSON on stdout.
fn print_json(value: &impl serde::Serialize) -> Result<(), CliError> {
    let text = serde_json::to_string_pretty(value).map_err(|e| CliError::other(e.to_string()))?;
    println!("{text}");
    Ok(())
}

fn run(cli: Cli) -> Result<ExitCode, CliError> {
    let dirs = Dirs::from_env(var).map_err(CliError::other)?;
    let env = Env {
        dirs: dirs.clone(),
        browser: var("BROWSER"),
        auth_sock: var("SSH_AUTH_SOCK").map(PathBuf::from),
        ui: Ui::detect(cli.ca.quiet),
    };
    match cli.command {
        Command::Completions { shell } => {
            let mut command = <Cli as clap::CommandFactory>::command();
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut command, "jit-ssh", &mut script);
            // A closed pipe (`| head`) is not an error worth a message.
            let _ = std::io::Write::write_all(&mut std::io::stdout(), &script);
        }
        Command::Login {
            auth,
            principals,
            ttl,
            no_agent,
            confirm,
            accept_ca_keys,
            json,
        } => {
            let target = cli.ca.target(&dirs)?;
            let (issuer, source) = auth.into_parts()?;
            let issued = commands::login(
                &env,
                &target,
                LoginOptions {
                    issuer,
                    source,
                    principals,
                    ttl,
                    no_agent,
                    confirm,
                    accept_ca_keys,
                },
            )?;
            if json {
                print_json(&issued)?;
            } else {
                env.ui
                    .info(&commands::describe(&issued, commands::unix_now()));
            }
        }
        Command::Ensure {
            interactive,
            no_login,
        } => {
            let target = cli.ca.target(&dirs)?;
            ensure(&env, &target, &interactive, no_login)?;
        }
        Command::Status { json } => {
            let status = commands::status(&env);
            if json {
                print_json(&status)?;
            } else {
                print!("{}", commands::describe_status(&status));
            }
            if status.needs_login() {
                return Ok(ExitCode::from(Failure::NotLoggedIn.exit_code()));
            }
        }
        Command::SshConfig {
            install,
            uninstall,
            hosts,
        } => {
            let target = cli.ca.target(&dirs)?;
            let hosts = commands::host_patterns(&hosts)?;
            let action = match (install, uninstall) {
                (true, _) => commands::SshConfigAction::Install,
                (_, true) => commands::SshConfigAction::Uninstall,
                _ => commands::SshConfigAction::Show,
            };
            let exe = std::env::current_exe()
                .map_err(|e| CliError::other(format!("cannot find this program's path: {e}")))?;
            let (program, warning) = commands::stable_program(&exe, var("PATH").as_deref());
            if let (Some(warning), false) = (warning, uninstall) {
                env.ui.warn(&warning);
            }
            let text = commands::ssh_config(&env, &target, &program, &hosts, action)?;
            if action == commands::SshConfigAction::Show {
                print!("{text}");
            } else {
                env.ui.info(text.trim_end());
            }
        }
        Command::Ssh { args } => {
            let target = cli.ca.target(&dirs)?;
            let interactive = InteractiveArgs {
                flow: None,
                timeout: Duration::from_secs(300),
            };
            ensure(&env, &target, &interactive, false)?;
            return Err(commands::exec_ssh(&env, &target.slug()?, &args));
        }
        Command::Host {
            command:
                HostCommand::SyncKrl {
                    out,
                    trusted_ca_keys,
                    json,
                },
        } => {
            let target = cli.ca.target(&dirs)?;
            let trusted = match &trusted_ca_keys {
                Some(path) => Some(
                    std::fs::read_to_string(path)
                        .map_err(|e| CliError::other(format!("reading {}: {e}", path.display())))?,
                ),
                None => None,
            };
            let synced = ca_client::host::sync_krl(&target, &out, trusted.as_deref())?;
            if json {
                print_json(&synced)?;
            } else {
                env.ui.info(&format!(
                    "{} {} (KRL version {}, {} revoked certificate(s), {} revoked key(s), signed by {})",
                    if synced.changed { "Updated" } else { "Unchanged:" },
                    synced.path.display(),
                    synced.version,
                    synced.serials,
                    synced.keys,
                    synced.signed_by
                ));
            }
        }
        Command::Request {
            auth,
            principals,
            reason,
            window,
            break_glass,
            start,
            from_first_use,
            no_wait,
            wait,
            json,
        } => {
            let wait = (!no_wait).then_some(wait);
            let command = AccessCommand::Request {
                principals,
                reason,
                window,
                break_glass,
                start,
                from_first_use,
                wait,
            };
            let done = access(&env, &cli.ca, &dirs, auth, command, json)?;
            if let Some(request) = done.first() {
                if !no_wait && request.status != ca_proto::RequestStatus::Approved {
                    return Err(CliError::new(
                        Failure::Denied,
                        format!("access request {} was {}", request.id, request.status),
                    ));
                }
            }
        }
        Command::Requests {
            auth,
            pending,
            needs_review,
            json,
        } => {
            access(
                &env,
                &cli.ca,
                &dirs,
                auth,
                AccessCommand::List {
                    pending,
                    needs_review,
                },
                json,
            )?;
        }
        Command::Review {
            auth,
            id,
            comment,
            json,
        } => {
            access(
                &env,
                &cli.ca,
                &dirs,
                auth,
                AccessCommand::Review { id, comment },
                json,
            )?;
        }
        Command::Approve {
            auth,
            id,
            comment,
            json,
        } => {
            access(
                &env,
                &cli.ca,
                &dirs,
                auth,
                AccessCommand::Approve { id, comment },
                json,
            )?;
        }
        Command::Deny {
            auth,
            id,
            reason,
            json,
        } => {
            access(
                &env,
                &cli.ca,
                &dirs,
                auth,
                AccessCommand::Deny { id, reason },
                json,
            )?;
        }
        Command::Done {
            auth,
            id,
            reason,
            json,
        } => {
            access(
                &env,
                &cli.ca,
                &dirs,
                auth,
                AccessCommand::Done { id, reason },
                json,
            )?;
        }
        Command::Logout { json } => {
            let target = cli.ca.target(&dirs)?;
            let out = commands::logout(&env, &target)?;
            if json {
                print_json(&out)?;
            } else {
                for line in commands::describe_logged_out(&out) {
                    env.ui.info(&line);
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs an access request command and prints what it returns: JSON (one
/// object for a single request, an array for `requests`), else one line each.
fn access(
    env: &Env,
    ca: &CaArgs,
    dirs: &Dirs,
    auth: UserAuthArgs,
    command: AccessCommand,
    json: bool,
) -> Result<Vec<ca_proto::AccessRequestView>, CliError> {
    let target = ca.target(dirs)?;
    let list = matches!(command, AccessCommand::List { .. });
    let (issuer, source) = auth.into_parts()?;
    let requests = ca_client::access::run(env, &target, Auth { issuer, source }, command)?;
    match (json, list, requests.as_slice()) {
        (true, false, [one]) => print_json(one)?,
        (true, _, _) => print_json(&requests)?,
        (false, _, _) => {
            for request in &requests {
                println!(
                    "{}",
                    ca_client::access::describe(request, commands::unix_now())
                );
            }
        }
    }
    Ok(requests)
}

/// `ensure` with the flow the arguments choose; says what it renewed.
fn ensure(
    env: &Env,
    target: &CaTarget,
    interactive: &InteractiveArgs,
    no_login: bool,
) -> Result<(), CliError> {
    let options = EnsureOptions {
        no_login,
        flow: default_flow(interactive.flow),
        timeout: interactive.timeout,
    };
    match commands::ensure(env, target, &options)? {
        Ensured::Fresh => {}
        Ensured::Renewed(issued) => env.ui.info(&format!(
            "Renewed: {}",
            commands::describe(&issued, commands::unix_now())
        )),
        Ensured::LoggedIn(issued) => env
            .ui
            .info(&commands::describe(&issued, commands::unix_now())),
    }
    Ok(())
}
