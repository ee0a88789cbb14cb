//! What the CA tells its clients beyond how to sign in (`[client]`):
//! `ssh_hosts`, the OpenSSH host patterns of the hosts that trust this CA,
//! published in `/v1/config` so that `jit-ssh ssh-config --install` scopes
//! its `Match` block to them and an `ssh` to any other host never runs
//! `jit-ssh`. Each pattern is checked here: a pattern ssh would read as
//! several (a comma, a space, a quote) or an empty one is refused, because
//! the client writes them into `~/.ssh/config` as given.

use serde::Deserialize;

/// The checked `[client]` settings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientSettings {
    /// OpenSSH host patterns (`*.corp.example`, `10.1.*`, `!bastion`) of the
    /// hosts that accept this CA's certificates; empty when not configured.
    pub ssh_hosts: Vec<String>,
}

/// The `[client]` section as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawClient {
    #[serde(default)]
    ssh_hosts: Vec<String>,
}

impl RawClient {
    pub(super) fn check(self) -> Result<ClientSettings, String> {
        for pattern in &self.ssh_hosts {
            let bad = pattern.is_empty()
                || pattern == "!"
                || pattern.chars().any(|c| {
                    c == ','
                        || c == '"'
                        || c == '\''
                        || c == '\\'
                        || c.is_whitespace()
                        || c.is_control()
                });
            if bad {
                return Err(format!(
                    "[client] ssh_hosts: {pattern:?} is not one OpenSSH host pattern \
                     (one pattern per string, no commas, quotes or spaces)"
                ));
            }
        }
        Ok(ClientSettings {
            ssh_hosts: self.ssh_hosts,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn check(patterns: &[&str]) -> Result<ClientSettings, String> {
        RawClient {
            ssh_hosts: patterns.iter().map(|p| p.to_string()).collect(),
        }
        .check()
    }

    #[test]
    fn host_patterns_are_kept_as_written() {
        let settings = check(&["*.corp.example", "10.1.*", "!bastion.corp.example"]).unwrap();
        assert_eq!(
            settings.ssh_hosts,
            ["*.corp.example", "10.1.*", "!bastion.corp.example"]
        );
        assert!(check(&[]).unwrap().ssh_hosts.is_empty());
    }

    #[test]
    fn a_pattern_ssh_would_split_or_unquote_is_refused() {
        for bad in ["a,b", "a b", "", "!", "a\"b", "a\nb", "it's"] {
            let error = check(&[bad]).expect_err(bad);
            assert!(error.contains("ssh_hosts"), "{error}");
        }
    }
}
