//! Webhooks (`[[webhook]]`): where access-request events are posted. Each
//! has an https URL (plain http only on loopback) and exactly one non-empty
//! secret, read at start-up from a file or the environment, never inline;
//! neither the secret nor the whole URL (a Slack or Teams URL is itself a
//! credential) is ever printed.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::urls::https_or_loopback;
use crate::webhook::{WebhookSecret, WebhookTarget};

/// One `[[webhook]]` as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawWebhook {
    url: String,
    secret_file: Option<PathBuf>,
    secret_env: Option<String>,
}

/// Shows the URL as logs do: a Slack or Teams webhook URL is itself a
/// credential.
impl std::fmt::Debug for RawWebhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawWebhook")
            .field("url", &crate::webhook::loggable_url(&self.url))
            .field("secret_file", &self.secret_file)
            .field("secret_env", &self.secret_env)
            .finish()
    }
}

impl RawWebhook {
    /// The target, its secret read; `secret_file` is taken from `base`.
    pub(super) fn check(self, base: &Path) -> Result<WebhookTarget, String> {
        if !https_or_loopback(&self.url) {
            return Err(format!(
                "[[webhook]] url {} must be an https:// URL (plain http only on loopback)",
                crate::webhook::loggable_url(&self.url)
            ));
        }
        let shown = crate::webhook::loggable_url(&self.url);
        let text = match (self.secret_file, self.secret_env) {
            (Some(file), None) => {
                let path = base.join(file);
                std::fs::read_to_string(&path).map_err(|e| {
                    format!(
                        "[[webhook]] {}: cannot read secret_file {}: {e}",
                        shown,
                        path.display()
                    )
                })?
            }
            (None, Some(name)) => std::env::var(&name).map_err(|_| {
                format!(
                    "[[webhook]] {}: environment variable {name} (secret_env) is not set",
                    shown
                )
            })?,
            _ => {
                return Err(format!(
                    "[[webhook]] {}: give exactly one of secret_file or secret_env",
                    shown
                ))
            }
        };
        let secret = WebhookSecret::new(text);
        if secret.is_empty() {
            return Err(format!("[[webhook]] {shown}: the secret is empty"));
        }
        Ok(WebhookTarget {
            url: self.url,
            secret,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::testing::MINIMAL;
    use crate::config::Config;

    #[test]
    fn a_webhook_url_is_never_printed_whole() {
        let raw = RawWebhook {
            url: "https://hooks.slack.com/services/T000/B000/sEcReTtOkEn".into(),
            secret_file: None,
            secret_env: None,
        };
        let shown = format!("{raw:?}");
        assert!(!shown.contains("sEcReTtOkEn"), "{shown}");
        assert!(shown.contains("hooks.slack.com"), "{shown}");
    }

    #[test]
    fn webhook_secret_is_read_from_a_file_and_never_printed() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("hook.secret"), "s3cret-value\n").expect("write");
        let text = format!(
            "{MINIMAL}\n[[webhook]]\nurl = \"https://hooks.example.com/x\"\nsecret_file = \"hook.secret\"\n"
        );
        let config = Config::parse(&text, dir.path())
            .map_err(|_| "parse")
            .expect("valid");
        assert_eq!(config.webhooks.len(), 1);
        assert_eq!(config.webhooks[0].url, "https://hooks.example.com/x");
        assert!(!format!("{config:?}").contains("s3cret"));
    }
}
