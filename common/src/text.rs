//! Text that people typed, as the CA accepts it and as a terminal shows it.
//!
//! A reason or comment travels from one person (a requester, an approver,
//! an administrator) to another's terminal (`jit-ssh-ca audit`, `jit-ssh
//! requests`). A newline in it would forge a line of the table, and an
//! escape sequence would drive the reader's terminal. So the CA refuses
//! control characters other than tab in such text ([`control_refusal`]), and
//! every human-facing table prints what it shows through [`escape_control`],
//! which renders each control character visibly (`\n`, `\x1b`), for rows
//! recorded before the CA refused them and for text from anywhere else.
//! JSON outputs keep the raw values: their encoding escapes them already.

use std::borrow::Cow;
use std::fmt::Write as _;

/// Why `text`, the value of `field`, is refused: it holds a control
/// character other than tab. `None` when it is acceptable.
pub fn control_refusal(field: &str, text: &str) -> Option<String> {
    let found = text.chars().find(|&c| c.is_control() && c != '\t')?;
    Some(format!(
        "{field} contains the control character {}: only printable text (and tabs) is accepted",
        escape_control(&found.to_string())
    ))
}

/// `text` with every control character, and every Unicode character that
/// reorders the text around it (bidirectional overrides, isolates and
/// marks), written as a visible escape: `\n`, `\r`, `\t`, `\x1b`, `\u{202e}`.
/// Everything else is left as it is.
pub fn escape_control(text: &str) -> Cow<'_, str> {
    if !text.chars().any(needs_escape) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if needs_escape(c) && (c as u32) < 0x80 => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if needs_escape(c) => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// [`escape_control`] for text of several lines: each line escaped, the
/// line breaks kept.
pub fn escape_control_lines(text: &str) -> String {
    text.split('\n')
        .map(escape_control)
        .collect::<Vec<_>>()
        .join("\n")
}

/// Control characters (C0, DEL, C1) and the characters that change the
/// direction of the text after them.
fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_shown_as_escapes_and_the_rest_as_it_is() {
        let cases = [
            (
                "plain text, ünïcode, \\n typed",
                "plain text, ünïcode, \\n typed",
            ),
            (
                "fake\n2026-12-05 issued\u{1b}[8m",
                "fake\\n2026-12-05 issued\\x1b[8m",
            ),
            ("tab\there\r\u{7f}\u{0}", "tab\\there\\r\\x7f\\x00"),
            ("csi\u{9b}31m", "csi\\u{9b}31m"),
            ("abc\u{202e}fed", "abc\\u{202e}fed"),
        ];
        for (text, shown) in cases {
            assert_eq!(escape_control(text), shown, "{text:?}");
        }
        assert!(matches!(escape_control("clean"), Cow::Borrowed(_)));
        assert_eq!(escape_control_lines("a\u{1b}\nb\r"), "a\\x1b\nb\\r");
    }

    #[test]
    fn only_tabs_among_control_characters_are_accepted() {
        assert_eq!(control_refusal("reason", "INC-1\tdisk full"), None);
        assert_eq!(control_refusal("reason", "naïve \u{202e} text"), None);
        for bad in ["a\nb", "\u{1b}[8m", "nul\u{0}", "\r", "\u{85}"] {
            let refusal = control_refusal("reason", bad).expect("refused");
            assert!(
                refusal.starts_with("reason contains the control character \\"),
                "{refusal}"
            );
        }
    }
}
