//! Human durations on the command line: `90`, `90s`, `10m`, `1h30m`.

use std::time::Duration;

/// Parses `text` as a duration: a sequence of `<number><unit>` with units
/// `s`, `m`, `h`, or a bare number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err("empty duration".into());
    }
    if let Ok(seconds) = text.parse::<u64>() {
        return Ok(Duration::from_secs(seconds));
    }
    let mut total: u64 = 0;
    let mut number = String::new();
    for c in text.chars() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            _ => {
                return Err(format!(
                    "{text:?}: unknown unit {c:?} (use s, m or h, e.g. 10m)"
                ))
            }
        };
        let value: u64 = number
            .parse()
            .map_err(|_| format!("{text:?}: expected a number before {c:?}"))?;
        number.clear();
        total = value
            .checked_mul(unit)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(|| format!("{text:?} is too long"))?;
    }
    if !number.is_empty() {
        return Err(format!("{text:?}: a number without a unit at the end"));
    }
    Ok(Duration::from_secs(total))
}

/// `4m12s`-style text for a number of seconds.
pub fn format_seconds(seconds: u64) -> String {
    let (h, m, s) = (seconds / 3600, (seconds % 3600) / 60, seconds % 60);
    match (h, m) {
        (0, 0) => format!("{s}s"),
        (0, _) => format!("{m}m{s:02}s"),
        _ => format!("{h}h{m:02}m"),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn parses_units() {
        assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("45s"), Ok(Duration::from_secs(45)));
        assert!(parse_duration("1d").is_err());
        assert!(parse_duration("10m5").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn formats() {
        assert_eq!(format_seconds(42), "42s");
        assert_eq!(format_seconds(252), "4m12s");
        assert_eq!(format_seconds(3700), "1h01m");
    }
}
