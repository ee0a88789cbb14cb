//! A string that must never be printed: refresh tokens, ID tokens, private
//! key text. `Debug` and `Display` print `[redacted]`, the memory is wiped on
//! drop, and the value is reached only through [`Secret::expose_secret`], so
//! every place that uses it is easy to find.

use zeroize::Zeroizing;

/// A secret string.
#[derive(Clone)]
pub struct Secret(Zeroizing<String>);

impl Secret {
    /// Wraps `value`.
    pub fn new(value: String) -> Self {
        Secret(Zeroizing::new(value))
    }

    /// The value; every caller is a place where the secret leaves this type.
    pub fn expose_secret(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

impl std::fmt::Display for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn secret_never_prints() {
        let s = Secret::new("refresh-token-value".into());
        assert_eq!(format!("{s:?} {s}"), "[redacted] [redacted]");
        assert_eq!(s.expose_secret(), "refresh-token-value");
    }
}
