//! Reserved logins: the accounts a principal template never expands to.
//!
//! A template such as `{username}` or `{email_local}` turns what an identity
//! provider says into a login name, and a provider will say `root` if a user
//! may pick their own `preferred_username` or an address `root@…` exists.
//! The system accounts of a host are nobody's personal login, so a template
//! that expands to one of them grants nothing, whoever the token names. A
//! rule that writes the account literally (`principals = ["root"]`) still
//! grants it: that is the policy author's decision, not the provider's.
//!
//! The built-in list is where the names come from, in three groups:
//! - Debian's `base-passwd` (`/usr/share/base-passwd/passwd.master`): the
//!   fixed system accounts of every Debian and Ubuntu system, `root` to
//!   `nobody`, with `gnats` (dropped from newer releases, still present on
//!   older hosts);
//! - accounts the packages of a typical SSH host create: `_apt`, `sshd`,
//!   `messagebus`, `polkitd`, `systemd-*`, time, syslog and mail daemons,
//!   and the database servers whose accounts have a login shell and own
//!   every database (`postgres`, `mysql`); Debian's convention for new
//!   system accounts, a leading `_` (`_apt`, `_chrony`, `_rpc`), is
//!   reserved as a whole;
//! - the default accounts of cloud images (`admin`, `debian`, `ubuntu`,
//!   `ec2-user`, `cloud-user`, `centos`, `fedora`), which have password-less
//!   `sudo`, so landing in one is landing in `root`.
//!
//! `reserved_logins` in the CA's config adds names (or `prefix*` patterns).
//! Comparison ignores case, so no spelling of a reserved name gets through.

use crate::identity::is_login_name;

/// The built-in reserved names; an entry ending in `*` reserves every name
/// it begins.
pub const BUILT_IN: &[&str] = &[
    // Debian base-passwd, passwd.master.
    "root",
    "daemon",
    "bin",
    "sys",
    "sync",
    "games",
    "man",
    "lp",
    "mail",
    "news",
    "uucp",
    "proxy",
    "www-data",
    "backup",
    "list",
    "irc",
    "gnats",
    "nobody",
    // Accounts the packages of a typical SSH host create.
    "_*",
    "sshd",
    "messagebus",
    "polkitd",
    "systemd-*",
    "syslog",
    "tss",
    "uuidd",
    "tcpdump",
    "ntp",
    "dnsmasq",
    "avahi",
    "statd",
    "postfix",
    "exim",
    "postgres",
    "mysql",
    // Default accounts of cloud images (password-less sudo).
    "admin",
    "debian",
    "ubuntu",
    "ec2-user",
    "cloud-user",
    "centos",
    "fedora",
];

/// The reserved names in force: the built-in list and the config's
/// additions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReservedLogins {
    entries: Vec<Entry>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    /// Lower-cased; without the `*` when it is a prefix.
    name: String,
    prefix: bool,
    built_in: bool,
}

impl Default for ReservedLogins {
    /// The built-in list alone.
    fn default() -> Self {
        ReservedLogins {
            entries: BUILT_IN
                .iter()
                .map(|text| entry(text, true).expect("the built-in entries are well formed"))
                .collect(),
        }
    }
}

impl ReservedLogins {
    /// The built-in list plus `extra` (`reserved_logins` of the config):
    /// each a login name, or a login name's beginning followed by `*`.
    pub fn with_extra(extra: &[String]) -> Result<ReservedLogins, String> {
        let mut reserved = ReservedLogins::default();
        for text in extra {
            reserved.entries.push(entry(text, false).ok_or_else(|| {
                format!(
                    "reserved_logins: {text:?} is neither a login name nor a login name's \
                     beginning followed by '*' (e.g. \"svc-*\")"
                )
            })?);
        }
        Ok(reserved)
    }

    /// Why `name` is reserved (the entry that matches and where it comes
    /// from), or `None` when it is not. Case is ignored.
    pub fn reason(&self, name: &str) -> Option<String> {
        let lowered = name.to_ascii_lowercase();
        let found = self.entries.iter().find(|e| match e.prefix {
            true => lowered.starts_with(&e.name),
            false => lowered == e.name,
        })?;
        let shown = match found.prefix {
            true => format!("{}*", found.name),
            false => found.name.clone(),
        };
        Some(match found.built_in {
            true => format!("{shown} is a built-in reserved login"),
            false => format!("{shown} is in reserved_logins"),
        })
    }
}

fn entry(text: &str, built_in: bool) -> Option<Entry> {
    let lowered = text.to_ascii_lowercase();
    let (name, prefix) = match lowered.strip_suffix('*') {
        Some(beginning) => (beginning, true),
        None => (lowered.as_str(), false),
    };
    // A beginning need only start like a login name: `_` alone is one.
    let well_formed = match prefix {
        true => !name.is_empty() && is_login_name(name),
        false => is_login_name(name),
    };
    well_formed.then(|| Entry {
        name: name.to_string(),
        prefix,
        built_in,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_built_in_list_covers_system_accounts_in_any_case() {
        let reserved = ReservedLogins::default();
        for name in [
            "root",
            "Root",
            "ROOT",
            "nobody",
            "www-data",
            "sshd",
            "_apt",
            "_chrony",
            "systemd-network",
            "systemd-timesync",
            "postgres",
            "ubuntu",
        ] {
            assert!(reserved.reason(name).is_some(), "{name} should be reserved");
        }
        for name in [
            "alice",
            "rooted",
            "deploy",
            "systemd",
            "bob.smith",
            "admins",
        ] {
            assert_eq!(reserved.reason(name), None, "{name} should not be reserved");
        }
        assert_eq!(
            reserved.reason("Root").as_deref(),
            Some("root is a built-in reserved login")
        );
        assert_eq!(
            reserved.reason("systemd-resolve").as_deref(),
            Some("systemd-* is a built-in reserved login")
        );
    }

    #[test]
    fn the_config_adds_names_and_prefixes() {
        let reserved =
            ReservedLogins::with_extra(&["Jenkins".into(), "svc-*".into()]).expect("valid");
        assert_eq!(
            reserved.reason("jenkins").as_deref(),
            Some("jenkins is in reserved_logins")
        );
        assert_eq!(
            reserved.reason("svc-backup").as_deref(),
            Some("svc-* is in reserved_logins")
        );
        assert!(reserved.reason("root").is_some(), "the built-in list stays");
        for bad in ["", "*", "a b", "1abc", "svc*x", "root@host", "**"] {
            let err = ReservedLogins::with_extra(&[bad.into()]).expect_err(bad);
            assert!(err.contains("reserved_logins"), "{bad:?}: {err}");
        }
    }
}
