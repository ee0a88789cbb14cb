//! Human durations in configuration files: `"90s"`, `"5m"`, `"1h30m"`.
//!
//! Only seconds, minutes and hours exist: a CA that signs for days is not what
//! this product is for, and a bare number is refused because its unit would be
//! a guess.

use std::time::Duration;

/// Parses `"<n>h<n>m<n>s"` (each part optional, in that order, at least one).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err("empty duration".into());
    }
    let mut total: u64 = 0;
    let mut digits = String::new();
    let mut last_unit_rank = 0;
    for ch in text.chars() {
        if ch.is_ascii_digit() {
            digits.push(ch);
            continue;
        }
        let (seconds, rank) = match ch {
            'h' => (3600, 1),
            'm' => (60, 2),
            's' => (1, 3),
            _ => return Err(format!("invalid duration {text:?}: unexpected {ch:?} (use e.g. \"5m\", \"90s\", \"1h30m\")")),
        };
        if digits.is_empty() || rank <= last_unit_rank {
            return Err(format!(
                "invalid duration {text:?} (use e.g. \"5m\", \"90s\", \"1h30m\")"
            ));
        }
        let value: u64 = digits
            .parse()
            .map_err(|_| format!("invalid duration {text:?}: number too large"))?;
        total = value
            .checked_mul(seconds)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(|| format!("invalid duration {text:?}: too large"))?;
        digits.clear();
        last_unit_rank = rank;
    }
    if !digits.is_empty() {
        return Err(format!(
            "invalid duration {text:?}: a number needs a unit (s, m or h)"
        ));
    }
    Ok(Duration::from_secs(total))
}

/// Formats whole seconds the way [`parse_duration`] reads them.
pub fn format_duration(duration: Duration) -> String {
    let secs = duration.as_secs();
    let (h, m, s) = (secs / 3600, (secs % 3600) / 60, secs % 60);
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if m > 0 {
        out.push_str(&format!("{m}m"));
    }
    if s > 0 || out.is_empty() {
        out.push_str(&format!("{s}s"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_common_forms() {
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration(" 2h "), Ok(Duration::from_secs(7200)));
    }

    #[test]
    fn refuses_ambiguous_or_malformed() {
        for bad in [
            "",
            "5",
            "m",
            "5d",
            "1m1h",
            "5m5m",
            "-5m",
            "99999999999999999999h",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn formats_round_trip() {
        for secs in [0, 59, 60, 300, 3600, 5400, 3661] {
            let d = Duration::from_secs(secs);
            assert_eq!(parse_duration(&format_duration(d)), Ok(d));
        }
    }
}
