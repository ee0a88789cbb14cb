//! Glob patterns for claim values, usernames, emails and deny principals.
//!
//! `*` matches any run of characters except `/`, `**` any run including `/`
//! (so `refs/heads/*` is one branch level, as in GitHub's own branch filters),
//! `?` one character other than `/`, `[abc]`/`[a-z]`/`[!a-z]` one character
//! from (or not from) a set, and `\x` a literal `x`. Matching is exact and
//! case-sensitive over the whole value, never a substring search.
//!
//! Matching runs in time proportional to the value's length times the
//! pattern's length, whatever the pattern: the value is read once, left to
//! right, while the set of pattern positions it could have reached is carried
//! along (a Thompson-style simulation of the pattern's automaton). There is no
//! backtracking, so an adversarial claim (a token may carry 16 KiB of them)
//! against a pattern with many stars costs the same as any other claim of its
//! length, and a policy decision stays short enough to run on the async
//! runtime's thread.

use std::fmt;

/// A compiled glob pattern.
#[derive(Clone, PartialEq, Eq)]
pub struct Glob {
    text: String,
    tokens: Vec<Token>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Literal(char),
    AnyOne,
    Star,
    DoubleStar,
    Class {
        negated: bool,
        ranges: Vec<(char, char)>,
    },
}

impl Glob {
    /// Compiles `text`; the error says what is wrong with it.
    pub fn new(text: &str) -> Result<Glob, String> {
        if text.is_empty() {
            return Err("empty glob pattern (it would match only an empty value)".into());
        }
        let chars: Vec<char> = text.chars().collect();
        let mut tokens = Vec::new();
        let mut i = 0;
        while i < chars.len() {
            match chars[i] {
                '\\' => {
                    let Some(&next) = chars.get(i + 1) else {
                        return Err(format!("glob {text:?} ends with a lone backslash"));
                    };
                    tokens.push(Token::Literal(next));
                    i += 2;
                }
                '*' => {
                    if chars.get(i + 1) == Some(&'*') {
                        if chars.get(i + 2) == Some(&'*') {
                            return Err(format!("glob {text:?} has `***`; use `*` or `**`"));
                        }
                        tokens.push(Token::DoubleStar);
                        i += 2;
                    } else {
                        tokens.push(Token::Star);
                        i += 1;
                    }
                }
                '?' => {
                    tokens.push(Token::AnyOne);
                    i += 1;
                }
                '[' => {
                    let mut j = i + 1;
                    let negated = matches!(chars.get(j), Some('!') | Some('^'));
                    if negated {
                        j += 1;
                    }
                    let mut ranges = Vec::new();
                    // A `]` right after `[` or `[!` is a member, not the end.
                    let mut first = true;
                    loop {
                        let Some(&c) = chars.get(j) else {
                            return Err(format!("glob {text:?} has an unclosed `[`"));
                        };
                        if c == ']' && !first {
                            break;
                        }
                        first = false;
                        if chars.get(j + 1) == Some(&'-')
                            && chars.get(j + 2).is_some_and(|&e| e != ']')
                        {
                            let end = chars[j + 2];
                            if end < c {
                                return Err(format!(
                                    "glob {text:?} has the backwards range `{c}-{end}`"
                                ));
                            }
                            ranges.push((c, end));
                            j += 3;
                        } else {
                            ranges.push((c, c));
                            j += 1;
                        }
                    }
                    tokens.push(Token::Class { negated, ranges });
                    i = j + 1;
                }
                c => {
                    tokens.push(Token::Literal(c));
                    i += 1;
                }
            }
        }
        Ok(Glob {
            text: text.to_string(),
            tokens,
        })
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether the pattern has no wildcard, i.e. matches exactly its text.
    pub fn is_literal(&self) -> bool {
        self.tokens.iter().all(|t| matches!(t, Token::Literal(_)))
    }

    /// The characters the pattern requires literally, outside wildcards and
    /// sets: a value without one of them can never match.
    pub fn literal_chars(&self) -> impl Iterator<Item = char> + '_ {
        self.tokens.iter().filter_map(|t| match t {
            Token::Literal(c) => Some(*c),
            _ => None,
        })
    }

    /// Whether the whole of `value` matches.
    pub fn matches(&self, value: &str) -> bool {
        // Fast path for the common literal pattern.
        if self.is_literal() && !self.text.contains('\\') {
            return self.text == value;
        }
        match_tokens(&self.tokens, value)
    }
}

/// Whether the whole of `value` matches `tokens`.
///
/// `active[i]` says the prefix of the value read so far can end just before
/// token `i` (`active[tokens.len()]`: the pattern is used up). A star position
/// stays active while it absorbs characters and also lets the next position be
/// active without consuming one; every other token moves one position forward
/// per character it accepts.
fn match_tokens(tokens: &[Token], value: &str) -> bool {
    let mut active = vec![false; tokens.len() + 1];
    let mut next = vec![false; tokens.len() + 1];
    active[0] = true;
    close_over_stars(tokens, &mut active);
    for c in value.chars() {
        next.iter_mut().for_each(|slot| *slot = false);
        let mut any = false;
        for (i, token) in tokens.iter().enumerate() {
            if !active[i] {
                continue;
            }
            let (stay, advance) = match token {
                Token::Star => (c != '/', false),
                Token::DoubleStar => (true, false),
                Token::AnyOne => (false, c != '/'),
                Token::Literal(expected) => (false, c == *expected),
                Token::Class { negated, ranges } => {
                    let inside = ranges.iter().any(|(lo, hi)| (*lo..=*hi).contains(&c));
                    (false, inside != *negated && c != '/')
                }
            };
            if stay {
                next[i] = true;
                any = true;
            }
            if advance {
                next[i + 1] = true;
                any = true;
            }
        }
        if !any {
            return false;
        }
        close_over_stars(tokens, &mut next);
        std::mem::swap(&mut active, &mut next);
    }
    active[tokens.len()]
}

/// Marks the positions reachable from active ones without reading a
/// character: past any star, which may match the empty run.
fn close_over_stars(tokens: &[Token], active: &mut [bool]) {
    for (i, token) in tokens.iter().enumerate() {
        if active[i] && matches!(token, Token::Star | Token::DoubleStar) {
            active[i + 1] = true;
        }
    }
}

impl fmt::Debug for Glob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Glob({:?})", self.text)
    }
}

impl fmt::Display for Glob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_table() {
        let cases: &[(&str, &str, bool)] = &[
            ("main", "main", true),
            ("main", "main2", false),
            ("main", "xmain", false),
            ("refs/heads/*", "refs/heads/main", true),
            ("refs/heads/*", "refs/heads/feature/x", false),
            ("refs/heads/**", "refs/heads/feature/x", true),
            ("refs/tags/v*", "refs/tags/v1.2", true),
            ("refs/tags/v*", "refs/tags/x1.2", false),
            ("acme/*", "acme/deploy", true),
            ("acme/*", "acme-evil/deploy", false),
            ("*@example.com", "alice@example.com", true),
            ("*@example.com", "alice@example.com.evil", false),
            ("a?c", "abc", true),
            ("a?c", "a/c", false),
            ("a?c", "ac", false),
            ("[a-c]x", "bx", true),
            ("[a-c]x", "dx", false),
            ("[!a-c]x", "dx", true),
            ("[!a-c]x", "ax", false),
            ("[]]", "]", true),
            ("\\*", "*", true),
            ("\\*", "a", false),
            ("*", "", true),
            ("*", "anything", true),
            ("*", "a/b", false),
            ("**", "a/b", true),
            ("a*b*c", "axxbyyc", true),
            ("a*b*c", "axxbyy", false),
            ("Alice", "alice", false),
        ];
        for (pattern, value, expected) in cases {
            let glob = Glob::new(pattern).expect(pattern);
            assert_eq!(glob.matches(value), *expected, "{pattern:?} vs {value:?}");
        }
    }

    #[test]
    fn refuses_bad_patterns() {
        for (bad, why) in [
            ("", "empty"),
            ("[abc", "unclosed"),
            ("a\\", "backslash"),
            ("[z-a]", "backwards"),
            ("a***", "***"),
        ] {
            let err = Glob::new(bad).expect_err(bad);
            assert!(err.contains(why), "{bad:?}: {err}");
        }
    }

    /// The backtracking matcher this module used before it became linear:
    /// the plain statement of the semantics, kept to check the automaton
    /// against on small inputs.
    fn reference(tokens: &[Token], value: &[char]) -> bool {
        let Some((token, rest)) = tokens.split_first() else {
            return value.is_empty();
        };
        match token {
            Token::Star => {
                for split in 0..=value.len() {
                    if reference(rest, &value[split..]) {
                        return true;
                    }
                    if value.get(split) == Some(&'/') {
                        return false;
                    }
                }
                false
            }
            Token::DoubleStar => (0..=value.len()).any(|split| reference(rest, &value[split..])),
            Token::AnyOne => match value.split_first() {
                Some((c, tail)) if *c != '/' => reference(rest, tail),
                _ => false,
            },
            Token::Literal(expected) => match value.split_first() {
                Some((c, tail)) if c == expected => reference(rest, tail),
                _ => false,
            },
            Token::Class { negated, ranges } => match value.split_first() {
                Some((c, tail)) => {
                    let inside = ranges.iter().any(|(lo, hi)| (*lo..=*hi).contains(c));
                    inside != *negated && *c != '/' && reference(rest, tail)
                }
                None => false,
            },
        }
    }

    proptest::proptest! {
        #[test]
        fn linear_matcher_agrees_with_backtracking(
            pattern in "([ab/?*-]|\\*\\*|\\[!?a-b\\]){1,8}",
            value in "[ab/-]{0,10}",
        ) {
            // `***` is refused at compile time; nothing to compare.
            let Ok(glob) = Glob::new(&pattern) else {
                return Ok(());
            };
            let chars: Vec<char> = value.chars().collect();
            proptest::prop_assert_eq!(
                glob.matches(&value),
                reference(&glob.tokens, &chars),
                "{:?} vs {:?}", pattern, value
            );
        }
    }

    /// Issue 17 item 11: `*-*-*-*-prod` against a run of dashes took time
    /// growing with the fourth power of its length. A token may carry 16 KiB
    /// of claims; one such claim against a pattern with many stars must
    /// decide at once (the bound is generous: a debug build on a busy
    /// machine; the release figure is in docs/benchmarks.md).
    #[test]
    fn adversarial_claim_decides_in_linear_time() {
        let claim = "-".repeat(16 * 1024);
        for pattern in [
            "*-*-*-*-prod",
            "*-*-*-*-*-*-*-*-*-*-*-*-*-*-*-*-prod",
            "**-**-**-**-x",
        ] {
            let glob = Glob::new(pattern).expect("valid");
            let started = std::time::Instant::now();
            assert!(!glob.matches(&claim), "{pattern}");
            let elapsed = started.elapsed();
            assert!(
                elapsed < std::time::Duration::from_secs(1),
                "{pattern} against 16 KiB of dashes took {elapsed:?}"
            );
        }
        let mut matching = claim.clone();
        matching.push_str("-prod");
        assert!(Glob::new("*-*-*-*-prod").expect("valid").matches(&matching));
    }

    #[test]
    fn literal_detection() {
        assert!(Glob::new("root").expect("ok").is_literal());
        assert!(!Glob::new("ro*t").expect("ok").is_literal());
    }
}
