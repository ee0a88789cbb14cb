//! The running ssh-agent (`SSH_AUTH_SOCK`), spoken to directly with the
//! ssh-agent protocol (ssh-agent-lib's blocking client over a Unix socket).
//!
//! jit-ssh entries are recognised by their agent comment,
//! `jit-ssh:<user>@<issuer> ca=<ca>`: a new certificate from a CA replaces
//! the previous one from the same CA, and expired jit-ssh certificates are
//! removed, so the agent never offers sshd a pile of dead keys ("Too many
//! authentication failures").

use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use ssh_agent_lib::blocking::Client;
use ssh_agent_lib::proto::{
    AddIdentity, AddIdentityConstrained, KeyConstraint, PrivateCredential, PrivateKeyData,
    PublicCredential, RemoveIdentity,
};
use ssh_key::private::KeypairData;
use ssh_key::{Certificate, PrivateKey};

use crate::paths::CaSlug;

/// Prefix of every agent comment jit-ssh writes.
pub const COMMENT_PREFIX: &str = "jit-ssh:";

/// Errors talking to the agent.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AgentError {
    /// No agent socket, or it does not answer.
    #[error("cannot reach the ssh-agent at {path}: {message}")]
    Unreachable {
        /// Socket path.
        path: String,
        /// Why.
        message: String,
    },
    /// The agent answered with a failure.
    #[error("the ssh-agent refused to {action}: {message}")]
    Refused {
        /// What was asked.
        action: &'static str,
        /// What the agent said.
        message: String,
    },
    /// The key cannot go into an agent (only Ed25519 session keys are made).
    #[error("this key type cannot be added to the agent")]
    UnsupportedKey,
}

/// One jit-ssh certificate held by the agent.
#[derive(Debug, Clone)]
pub struct AgentEntry {
    /// The certificate.
    pub certificate: Certificate,
    /// The agent comment.
    pub comment: String,
}

impl AgentEntry {
    /// Whether this entry was loaded from `ca`.
    pub fn is_from(&self, ca: &CaSlug) -> bool {
        self.comment.ends_with(&format!(" ca={ca}"))
    }
}

/// How a certificate went into the agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Added {
    /// With a lifetime constraint: the agent forgets it by itself.
    WithLifetime,
    /// The agent refused constraints; added without, jit-ssh removes it later.
    WithoutLifetime,
}

/// A connection to an agent.
pub struct Agent {
    client: Client<UnixStream>,
}

impl Agent {
    /// Connects to the agent socket at `path`.
    pub fn connect(path: &Path) -> Result<Agent, AgentError> {
        let stream = UnixStream::connect(path).map_err(|e| AgentError::Unreachable {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        // A wedged agent must not hang `ssh` (ensure runs before each connection).
        let timeout = Some(Duration::from_secs(5));
        let _ = stream.set_read_timeout(timeout);
        let _ = stream.set_write_timeout(timeout);
        Ok(Agent {
            client: Client::new(stream),
        })
    }

    /// Every jit-ssh certificate the agent holds.
    pub fn jit_entries(&mut self) -> Result<Vec<AgentEntry>, AgentError> {
        let identities = self
            .client
            .request_identities()
            .map_err(|e| AgentError::Refused {
                action: "list its keys",
                message: e.to_string(),
            })?;
        Ok(identities
            .into_iter()
            .filter_map(|identity| match identity.credential {
                PublicCredential::Cert(certificate)
                    if identity.comment.starts_with(COMMENT_PREFIX) =>
                {
                    Some(AgentEntry {
                        certificate: *certificate,
                        comment: identity.comment,
                    })
                }
                _ => None,
            })
            .collect())
    }

    /// Removes one certificate.
    pub fn remove(&mut self, certificate: &Certificate) -> Result<(), AgentError> {
        self.client
            .remove_identity(RemoveIdentity {
                credential: PublicCredential::Cert(Box::new(certificate.clone())),
            })
            .map_err(|e| AgentError::Refused {
                action: "remove a key",
                message: e.to_string(),
            })
    }

    /// Removes this CA's entries and every expired jit-ssh entry; returns how
    /// many were removed.
    pub fn remove_stale(
        &mut self,
        ca: &CaSlug,
        now: u64,
        all_of_ca: bool,
    ) -> Result<usize, AgentError> {
        let mut removed = 0;
        for entry in self.jit_entries()? {
            let expired = entry.certificate.valid_before() <= now;
            if expired || (all_of_ca && entry.is_from(ca)) {
                self.remove(&entry.certificate)?;
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// Adds `key` with `certificate`, forgotten by the agent after `lifetime`.
    /// When the agent refuses constraints, adds it without a lifetime (and
    /// without `confirm`, which would be a constraint too).
    pub fn add(
        &mut self,
        key: &PrivateKey,
        certificate: &Certificate,
        comment: &str,
        lifetime: Duration,
        confirm: bool,
    ) -> Result<Added, AgentError> {
        let KeypairData::Ed25519(pair) = key.key_data() else {
            return Err(AgentError::UnsupportedKey);
        };
        let credential = PrivateCredential::Cert {
            algorithm: key.algorithm(),
            certificate: Box::new(certificate.clone()),
            privkey: PrivateKeyData::Ed25519(pair.clone()),
            comment: comment.to_string(),
        };
        let seconds = u32::try_from(lifetime.as_secs().max(1)).unwrap_or(u32::MAX);
        let mut constraints = vec![KeyConstraint::Lifetime(seconds)];
        if confirm {
            constraints.push(KeyConstraint::Confirm);
        }
        let constrained = self
            .client
            .add_identity_constrained(AddIdentityConstrained {
                identity: AddIdentity {
                    credential: credential.clone(),
                },
                constraints,
            });
        match constrained {
            Ok(()) => Ok(Added::WithLifetime),
            Err(first) => {
                if confirm {
                    // Never silently drop confirm-each-use: refuse instead.
                    return Err(AgentError::Refused {
                        action: "add the key with confirm-each-use",
                        message: first.to_string(),
                    });
                }
                self.client
                    .add_identity(AddIdentity { credential })
                    .map_err(|e| AgentError::Refused {
                        action: "add the key",
                        message: e.to_string(),
                    })?;
                Ok(Added::WithoutLifetime)
            }
        }
    }
}

/// The agent comment of a certificate from `ca` for `user@issuer`.
pub fn comment_for(user_at_issuer: &str, ca: &CaSlug) -> String {
    format!("{COMMENT_PREFIX}{user_at_issuer} ca={ca}")
}
