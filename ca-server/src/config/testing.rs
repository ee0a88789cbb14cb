//! What the configuration's unit tests share: a minimal valid file and a
//! parser that returns the error message alone.

use std::path::Path;

use super::{Config, ParseError};

/// The smallest valid file: one listener on loopback, one issuer.
pub(super) const MINIMAL: &str = r#"
listen = "127.0.0.1:8443"
data_dir = "data"
[[oidc]]
name = "corp"
issuer = "https://idp.example.com"
client_id = "jit-ssh"
"#;

/// Parses `text` as a file in `/etc/jit`; an error is its one-line message.
pub(super) fn parse(text: &str) -> Result<Config, String> {
    Config::parse(text, Path::new("/etc/jit")).map_err(|e| match e {
        ParseError::Syntax(m) | ParseError::Invalid(m) => m,
    })
}
