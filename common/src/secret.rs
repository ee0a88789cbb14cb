//! A string that must never be printed: ID, refresh and bearer tokens, a
//! key passphrase, private key text.
//!
//! [`Secret`] has no derived `Debug`, no `Serialize`: `Debug` and `Display`
//! print `[redacted]`, so a secret that reaches a log line or an error message
//! by mistake leaks nothing. Its memory is wiped on drop. The value is reached
//! only through [`Secret::expose_secret`], which makes every place where it
//! leaves the type easy to find in review. Two secrets compare in constant
//! time, so comparing a presented token with a stored one says nothing about
//! how many leading bytes matched.
//!
//! Crates wrap it in newtypes where a secret carries more meaning (the CA key
//! passphrase, with where it is read from and how long it must be).

use std::fmt;

use subtle::ConstantTimeEq as _;
use zeroize::Zeroizing;

/// A secret string. See the [module documentation](self).
#[derive(Clone)]
pub struct Secret(Zeroizing<String>);

impl Secret {
    /// Wraps `value`; the secret owns it from here on.
    pub fn new(value: String) -> Self {
        Secret(Zeroizing::new(value))
    }

    /// Wraps `text` read from a file or an environment variable, without the
    /// trailing newlines (`\n`, `\r`) that `echo` into a file leaves: they
    /// are never part of a passphrase or a shared secret.
    pub fn new_trimmed(mut text: String) -> Self {
        while text.ends_with('\n') || text.ends_with('\r') {
            text.pop();
        }
        Secret::new(text)
    }

    /// The value; every caller is a place where the secret leaves this type.
    /// Never log or format the result.
    pub fn expose_secret(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl PartialEq for Secret {
    fn eq(&self, other: &Self) -> bool {
        constant_time_eq(self.0.as_bytes(), other.0.as_bytes())
    }
}

impl Eq for Secret {}

/// Whether `a` and `b` are equal, in a time that depends on their lengths
/// only, never on where they first differ. For comparing anything an attacker
/// may be guessing byte by byte (a token, an OAuth `state`, a nonce).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    bool::from(a.ct_eq(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_never_prints() {
        let s = Secret::new("refresh-token-value".into());
        assert_eq!(format!("{s:?} {s}"), "[redacted] [redacted]");
        assert_eq!(format!("{:?}", Some(&s)), "Some([redacted])");
        assert_eq!(s.expose_secret(), "refresh-token-value");
        assert_eq!(s.clone().expose_secret(), "refresh-token-value");
    }

    #[test]
    fn trailing_newlines_are_not_part_of_a_secret() {
        for text in ["pass\n", "pass\r\n", "pass\n\n", "pass"] {
            assert_eq!(Secret::new_trimmed(text.into()).expose_secret(), "pass");
        }
        let inner = Secret::new_trimmed("two\nlines \n".into());
        assert_eq!(inner.expose_secret(), "two\nlines ");
        assert_eq!(Secret::new_trimmed("\n".into()).expose_secret(), "");
    }

    #[test]
    fn secrets_compare_by_value() {
        let token = Secret::new("eyJhbGciOi.x.y".into());
        assert_eq!(token, Secret::new("eyJhbGciOi.x.y".into()));
        assert_ne!(token, Secret::new("eyJhbGciOi.x.z".into()));
        assert_ne!(token, Secret::new("eyJhbGciOi.x.y.".into()));
        assert_ne!(token, Secret::new(String::new()));
        assert!(constant_time_eq(b"", b""));
        assert!(!constant_time_eq(b"state", b"stat"));
    }
}
