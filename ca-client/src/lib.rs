//! `jit-ssh`, the client of a jit-ssh CA, as a library: sign in with the
//! identity provider the CA trusts (browser or device flow), certify a fresh
//! key, load it into the ssh-agent with a lifetime, renew it silently with a
//! refresh token, and clean up at logout.
//!
//! Modules, from the wire up: [`ca`] (the CA's HTTP API), [`check`] (what a
//! certificate from the CA must be before it is stored), [`pins`] (the CA's
//! user-CA keys pinned at first use), [`known_cas`] (the CAs remembered
//! at login, so later commands need no `--ca`), [`oidc`] (the
//! identity provider), [`agent`] (ssh-agent protocol), [`session`] and
//! [`paths`] (what is kept on disk, 0600), [`commands`] (one file per
//! command family), [`access`] (the access request commands), [`host`] (the
//! hosts' KRL sync), [`error`] (one-line errors and exit codes), [`ui`]
//! (stderr only). The binary (`main.rs`, its arguments in `cli.rs`) only
//! parses arguments and calls these.

pub mod access;
pub mod agent;
pub mod ca;
pub mod check;
pub mod commands;
pub mod error;
pub mod host;
pub mod known_cas;
pub mod oidc;
pub mod paths;
pub mod pins;
pub mod session;
pub mod ui;

pub use ca::{http_client, nonce_for, sign_proof, CaClient, ClientError, FetchedConfig};
