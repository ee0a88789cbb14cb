//! The one way jit-ssh reads a length of time, wherever a person writes one:
//! the client's flags (`--ttl 10m`, `--for 30m`, `--wait 1h`, `--timeout 90s`),
//! the CA's configuration (`token_leeway = "60s"`), its policy files
//! (`max_ttl = "15m"`, `max_window = "1h"`) and its command line
//! (`--since 1h`). docs/policies.md ("Durations") is the same text for users.
//!
//! # Grammar
//!
//! A duration is one to three parts, each a whole number followed by its
//! unit, hours first: `<n>h`, `<n>m`, `<n>s`, as in `"90s"`, `"5m"`, `"2h"`,
//! `"1h30m"`, `"1h0m30s"`. Spaces around it are ignored; nothing else is
//! accepted:
//!
//! - **A number needs its unit.** `"90"` is refused, because its unit would be
//!   a guess (seconds to one reader, minutes to another); the error says what
//!   to write instead (`"90s"`).
//! - **Units come in the order h, m, s, each once at most.** `"30m1h"` and
//!   `"5m5m"` are refused: a duration reads largest unit first, as
//!   [`format_duration`] writes it, and a slip of the keyboard is caught
//!   rather than added up.
//! - **Only hours, minutes and seconds exist.** Certificates live minutes,
//!   and the longest value anywhere, a week's access window, is written
//!   `"168h"`; so `"1d"` is refused, as are fractions (`"1.5h"`), signs and
//!   inner spaces.
//!
//! What range a duration may take (a lifetime of at most 60 minutes, a
//! leeway of at most 60 seconds) is for the reader of each value to check.

use std::fmt;
use std::time::Duration;

/// The units, largest first: the order they must be written in.
const UNITS: [(char, u64); 3] = [('h', 3600), ('m', 60), ('s', 1)];

/// How the error messages show a valid duration.
const EXAMPLES: &str = "e.g. \"90s\", \"5m\" or \"1h30m\"";

/// Reads `text` by the [grammar](self#grammar).
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    let text = text.trim();
    let fail = |problem| DurationError {
        text: text.to_string(),
        problem,
    };
    if text.is_empty() {
        return Err(fail(Problem::Empty));
    }
    let mut total: u64 = 0;
    // Index into UNITS of the first unit still allowed.
    let mut next_unit = 0;
    let mut number_start = 0;
    for (at, ch) in text.char_indices() {
        if ch.is_ascii_digit() {
            continue;
        }
        let Some(rank) = UNITS.iter().position(|&(unit, _)| unit == ch) else {
            return Err(fail(if ch.is_alphabetic() {
                Problem::UnknownUnit(ch)
            } else {
                Problem::Unexpected(ch)
            }));
        };
        let digits = &text[number_start..at];
        if digits.is_empty() {
            return Err(fail(Problem::MissingNumber(ch)));
        }
        if rank < next_unit {
            return Err(fail(Problem::OutOfOrder));
        }
        total = digits
            .parse::<u64>()
            .ok()
            .and_then(|n| n.checked_mul(UNITS[rank].1))
            .and_then(|seconds| total.checked_add(seconds))
            .ok_or_else(|| fail(Problem::TooLong))?;
        next_unit = rank + 1;
        number_start = at + ch.len_utf8();
    }
    if number_start < text.len() {
        // A bare number meant seconds to the client before the grammar was
        // shared; a trailing one most likely means the next smaller unit.
        let unit = match next_unit {
            0 => 's',
            n if n < UNITS.len() => UNITS[n].0,
            _ => return Err(fail(Problem::OutOfOrder)),
        };
        return Err(fail(Problem::MissingUnit {
            write: format!("{text}{unit}"),
        }));
    }
    Ok(Duration::from_secs(total))
}

/// Writes whole seconds of `duration` the way [`parse_duration`] reads them:
/// `"1h30m"`, `"90s"` is `"1m30s"`, zero is `"0s"`. Exact: reading the text
/// back gives the same whole seconds.
pub fn format_duration(duration: Duration) -> String {
    let mut left = duration.as_secs();
    let mut out = String::new();
    for (unit, seconds) in UNITS {
        let count = left / seconds;
        left %= seconds;
        if count > 0 || (unit == 's' && out.is_empty()) {
            out.push_str(&count.to_string());
            out.push(unit);
        }
    }
    out
}

/// A count of seconds for a person to read at a glance, as in "4m12s left":
/// `"42s"`, `"4m12s"`, and past an hour `"1h01m"` with the seconds dropped.
/// Still a valid duration, but rounded down: use [`format_duration`] where
/// the text is read back.
pub fn format_seconds(seconds: u64) -> String {
    let (h, m, s) = (seconds / 3600, (seconds % 3600) / 60, seconds % 60);
    match (h, m) {
        (0, 0) => format!("{s}s"),
        (0, _) => format!("{m}m{s:02}s"),
        _ => format!("{h}h{m:02}m"),
    }
}

/// Why a text is not a duration. Its message quotes the text, says what is
/// wrong and how to write it instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DurationError {
    text: String,
    problem: Problem,
}

impl DurationError {
    /// What is wrong with the text.
    pub fn problem(&self) -> &Problem {
        &self.problem
    }
}

/// What is wrong with a text that is not a duration.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Problem {
    /// Nothing but spaces.
    Empty,
    /// A number without its unit, as in `"90"` or `"1h30"`.
    MissingUnit {
        /// The likeliest correct spelling (`"90s"`, `"1h30m"`).
        write: String,
    },
    /// A unit without its number, as in `"m"` or `"1hm"`.
    MissingNumber(char),
    /// A letter that is not h, m or s, as in `"1d"`.
    UnknownUnit(char),
    /// Anything else that is neither a digit nor a unit, as in `"1.5h"`.
    Unexpected(char),
    /// Units out of order or repeated, as in `"30m1h"` or `"5m5m"`.
    OutOfOrder,
    /// More seconds than fit in 64 bits.
    TooLong,
}

impl fmt::Display for DurationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid duration {:?}: ", self.text)?;
        match &self.problem {
            Problem::Empty => write!(f, "it is empty ({EXAMPLES})"),
            Problem::MissingUnit { write } => {
                write!(f, "a number needs its unit (h, m or s): write {write:?}")
            }
            Problem::MissingNumber(unit) => {
                write!(f, "{unit:?} has no number before it ({EXAMPLES})")
            }
            Problem::UnknownUnit(unit) => {
                write!(
                    f,
                    "unknown unit {unit:?}; only h, m and s exist ({EXAMPLES})"
                )
            }
            Problem::Unexpected(ch) => {
                write!(
                    f,
                    "unexpected {ch:?}; write whole numbers with units ({EXAMPLES})"
                )
            }
            Problem::OutOfOrder => {
                write!(
                    f,
                    "units go h, m, s in that order, each once at most ({EXAMPLES})"
                )
            }
            Problem::TooLong => f.write_str("too long"),
        }
    }
}

impl std::error::Error for DurationError {}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(n: u64) -> Result<Duration, DurationError> {
        Ok(Duration::from_secs(n))
    }

    fn problem(text: &str) -> Problem {
        parse_duration(text).expect_err(text).problem().clone()
    }

    #[test]
    fn parses_every_documented_form() {
        assert_eq!(parse_duration("5m"), secs(300));
        assert_eq!(parse_duration("90s"), secs(90));
        assert_eq!(parse_duration("45s"), secs(45));
        assert_eq!(parse_duration("10m"), secs(600));
        assert_eq!(parse_duration("1h30m"), secs(5400));
        assert_eq!(parse_duration("1h0m30s"), secs(3630));
        assert_eq!(parse_duration("2h5s"), secs(7205));
        assert_eq!(parse_duration(" 2h "), secs(7200));
        assert_eq!(parse_duration("0s"), secs(0));
        assert_eq!(parse_duration("007m"), secs(420));
    }

    #[test]
    fn empty_is_refused() {
        for text in ["", "   ", "\n"] {
            assert_eq!(problem(text), Problem::Empty, "{text:?}");
        }
    }

    #[test]
    fn a_bare_number_is_refused_with_what_to_write() {
        let error = parse_duration("90").expect_err("bare number");
        assert_eq!(
            error.problem(),
            &Problem::MissingUnit {
                write: "90s".into()
            }
        );
        assert_eq!(
            error.to_string(),
            "invalid duration \"90\": a number needs its unit (h, m or s): write \"90s\""
        );
        let write = |text| match problem(text) {
            Problem::MissingUnit { write } => write,
            other => panic!("{text:?}: {other:?}"),
        };
        assert_eq!(write("5"), "5s");
        assert_eq!(write("1h30"), "1h30m");
        assert_eq!(write("10m5"), "10m5s");
        assert_eq!(problem("5s5"), Problem::OutOfOrder);
    }

    #[test]
    fn units_go_in_order_each_once() {
        for text in ["1m1h", "30m1h", "5s1m", "5m5m", "1h1h", "1s1s", "1h2m3s4s"] {
            assert_eq!(problem(text), Problem::OutOfOrder, "{text:?}");
        }
    }

    #[test]
    fn unknown_units_and_characters_are_named() {
        assert_eq!(problem("1d"), Problem::UnknownUnit('d'));
        assert_eq!(problem("5d"), Problem::UnknownUnit('d'));
        assert_eq!(problem("5M"), Problem::UnknownUnit('M'));
        assert_eq!(problem("5min"), Problem::UnknownUnit('i'));
        assert_eq!(problem("2µs"), Problem::UnknownUnit('µ'));
        assert_eq!(problem("1.5h"), Problem::Unexpected('.'));
        assert_eq!(problem("-5m"), Problem::Unexpected('-'));
        assert_eq!(problem("+5m"), Problem::Unexpected('+'));
        assert_eq!(problem("1h 30m"), Problem::Unexpected(' '));
        assert!(parse_duration("1d")
            .expect_err("days")
            .to_string()
            .starts_with("invalid duration \"1d\": unknown unit 'd'"));
    }

    #[test]
    fn a_unit_needs_its_number() {
        assert_eq!(problem("m"), Problem::MissingNumber('m'));
        assert_eq!(problem("1hm"), Problem::MissingNumber('m'));
        assert_eq!(problem("h1m"), Problem::MissingNumber('h'));
    }

    #[test]
    fn overflow_is_refused_not_wrapped() {
        for text in [
            "99999999999999999999s",
            "99999999999999999999h",
            "18446744073709551616s",
            "5124095576030432h",
            "5124095576030431h1m",
            "5124095576030431h16s",
        ] {
            assert_eq!(problem(text), Problem::TooLong, "{text:?}");
        }
        assert_eq!(parse_duration("18446744073709551615s"), secs(u64::MAX));
        assert_eq!(parse_duration("5124095576030431h15s"), secs(u64::MAX));
    }

    #[test]
    fn formats_round_trip() {
        for n in [
            0,
            1,
            59,
            60,
            90,
            300,
            3600,
            3630,
            5400,
            3661,
            86_400,
            u64::MAX,
        ] {
            let d = Duration::from_secs(n);
            assert_eq!(parse_duration(&format_duration(d)), Ok(d), "{n}");
        }
        assert_eq!(format_duration(Duration::from_secs(0)), "0s");
        assert_eq!(format_duration(Duration::from_secs(90)), "1m30s");
        assert_eq!(format_duration(Duration::from_secs(5400)), "1h30m");
        assert_eq!(format_duration(Duration::from_secs(3630)), "1h30s");
        assert_eq!(format_duration(Duration::from_millis(1999)), "1s");
    }

    #[test]
    fn countdowns_are_rounded_for_reading() {
        assert_eq!(format_seconds(0), "0s");
        assert_eq!(format_seconds(42), "42s");
        assert_eq!(format_seconds(252), "4m12s");
        assert_eq!(format_seconds(3700), "1h01m");
        for n in [42, 252, 3700] {
            let shown = parse_duration(&format_seconds(n)).expect("readable");
            assert!(shown.as_secs() <= n && n - shown.as_secs() < 60, "{n}");
        }
    }
}
