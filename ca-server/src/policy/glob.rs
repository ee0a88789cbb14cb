//! Glob patterns for claim values, usernames, emails and deny principals.
//!
//! `*` matches any run of characters except `/`, `**` any run including `/`
//! (so `refs/heads/*` is one branch level, as in GitHub's own branch filters),
//! `?` one character other than `/`, `[abc]`/`[a-z]`/`[!a-z]` one character
//! from (or not from) a set, and `\x` a literal `x`. Matching is exact and
//! case-sensitive over the whole value, never a substring search.
//!
//! Matching runs in time proportional to the value's length times the
//! pattern's length in 64-position words, whatever the pattern: the value is
//! read once, left to right, while the set of pattern positions it could have
//! reached is carried along as a bit set (a bit-parallel simulation of the
//! pattern's automaton). There is no backtracking, so an adversarial claim (a
//! token may carry 16 KiB of them) against a pattern with many stars costs
//! the same as any other claim of its length, and a policy decision stays
//! short enough to run on the async runtime's thread.

use std::fmt;

/// A compiled glob pattern.
#[derive(Clone, PartialEq, Eq)]
pub struct Glob {
    text: String,
    tokens: Vec<Token>,
    matcher: Matcher,
}

/// How a pattern is matched.
#[derive(Clone, PartialEq, Eq)]
enum Matcher {
    /// Literals only: the characters they stand for (escapes resolved),
    /// compared directly.
    Exact(String),
    /// Wildcards: the automaton.
    Masks(Masks),
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
            matcher: match tokens
                .iter()
                .map(|t| match t {
                    Token::Literal(c) => Some(*c),
                    _ => None,
                })
                .collect::<Option<String>>()
            {
                Some(exact) => Matcher::Exact(exact),
                None => Matcher::Masks(Masks::of(&tokens)),
            },
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
        match &self.matcher {
            Matcher::Exact(exact) => exact == value,
            Matcher::Masks(masks) => masks.matches(&self.tokens, value),
        }
    }
}

/// The pattern as bit sets over its positions, so one character is tried
/// against every position at once.
///
/// Position `i` is "just before token `i`"; position `tokens.len()` is "the
/// pattern is used up". A set of positions is a bit set of `words` words. A
/// star position stays in the set while it absorbs characters and also puts
/// the next position in without consuming one; every other token moves its
/// position one forward per character it accepts.
#[derive(Clone, PartialEq, Eq)]
struct Masks {
    words: usize,
    /// For each ASCII character, `words` words: the positions whose token
    /// accepts it and moves on.
    ascii: Vec<u64>,
    /// Positions of `?`, which accepts any character but `/`.
    any_one: Vec<u64>,
    /// Positions of `*` and `**`.
    stars: Vec<u64>,
    /// Positions of `**`, the stars that also absorb `/`.
    double_stars: Vec<u64>,
    /// Positions whose token decides a non-ASCII character itself: sets, and
    /// non-ASCII literals.
    others: Vec<usize>,
}

impl Masks {
    fn of(tokens: &[Token]) -> Masks {
        let words = (tokens.len() + 1).div_ceil(64);
        let mut masks = Masks {
            words,
            ascii: vec![0; 128 * words],
            any_one: vec![0; words],
            stars: vec![0; words],
            double_stars: vec![0; words],
            others: Vec::new(),
        };
        for (i, token) in tokens.iter().enumerate() {
            let (word, bit) = (i / 64, 1u64 << (i % 64));
            match token {
                Token::Star => masks.stars[word] |= bit,
                Token::DoubleStar => {
                    masks.stars[word] |= bit;
                    masks.double_stars[word] |= bit;
                }
                Token::AnyOne => masks.any_one[word] |= bit,
                Token::Literal(c) if !c.is_ascii() => masks.others.push(i),
                Token::Class { .. } => masks.others.push(i),
                Token::Literal(_) => {}
            }
            for c in 0..128u8 {
                if accepts(token, char::from(c)) {
                    masks.ascii[usize::from(c) * words + word] |= bit;
                }
            }
        }
        masks
    }

    /// Whether the whole of `value` matches `tokens`, whose masks these are:
    /// one pass over the value, a few word operations per character.
    fn matches(&self, tokens: &[Token], value: &str) -> bool {
        if self.words == 1 {
            return self.matches_in_one_word(tokens, value);
        }
        let words = self.words;
        let mut active = vec![0u64; words];
        let mut next = vec![0u64; words];
        let mut scratch = vec![0u64; words];
        active[0] = 1;
        self.close_over_stars(&mut active);
        for c in value.chars() {
            let accepting: &[u64] = if c.is_ascii() {
                let at = c as usize * words;
                &self.ascii[at..at + words]
            } else {
                scratch.copy_from_slice(&self.any_one);
                for &i in &self.others {
                    if accepts(&tokens[i], c) {
                        scratch[i / 64] |= 1 << (i % 64);
                    }
                }
                &scratch
            };
            let absorbing = if c == '/' {
                &self.double_stars
            } else {
                &self.stars
            };
            let mut carry = 0;
            let mut any = 0;
            for w in 0..words {
                let moved = active[w] & accepting[w];
                next[w] = (active[w] & absorbing[w]) | (moved << 1) | carry;
                carry = moved >> 63;
                any |= next[w];
            }
            if any == 0 {
                return false;
            }
            self.close_over_stars(&mut next);
            std::mem::swap(&mut active, &mut next);
        }
        let end = tokens.len();
        active[end / 64] & (1 << (end % 64)) != 0
    }

    /// [`Masks::matches`] for patterns of fewer than 64 tokens, nearly all
    /// of them: the same steps on one word, without allocating.
    fn matches_in_one_word(&self, tokens: &[Token], value: &str) -> bool {
        let (stars, double_stars) = (self.stars[0], self.double_stars[0]);
        let close = |mut set: u64| loop {
            let widened = set | ((set & stars) << 1);
            if widened == set {
                return set;
            }
            set = widened;
        };
        let mut active = close(1);
        for c in value.chars() {
            let accepting = if c.is_ascii() {
                self.ascii[c as usize]
            } else {
                self.others
                    .iter()
                    .filter(|&&i| accepts(&tokens[i], c))
                    .fold(self.any_one[0], |set, &i| set | 1 << i)
            };
            let absorbing = if c == '/' { double_stars } else { stars };
            active = close((active & absorbing) | ((active & accepting) << 1));
            if active == 0 {
                return false;
            }
        }
        active & (1 << tokens.len()) != 0
    }

    /// Adds the positions reachable without reading a character: past any
    /// star in the set, which may match the empty run.
    fn close_over_stars(&self, active: &mut [u64]) {
        loop {
            let mut carry = 0;
            let mut changed = false;
            for (w, word) in active.iter_mut().enumerate() {
                let passed = *word & self.stars[w];
                let widened = *word | (passed << 1) | carry;
                carry = passed >> 63;
                changed |= widened != *word;
                *word = widened;
            }
            if !changed {
                return;
            }
        }
    }
}

/// Whether `token` accepts `c` and moves on (stars absorb rather than move).
fn accepts(token: &Token, c: char) -> bool {
    match token {
        Token::Literal(expected) => c == *expected,
        Token::AnyOne => c != '/',
        Token::Class { negated, ranges } => {
            let inside = ranges.iter().any(|(lo, hi)| (*lo..=*hi).contains(&c));
            inside != *negated && c != '/'
        }
        Token::Star | Token::DoubleStar => false,
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
            pattern in "([ab/?*é-]|\\*\\*|\\[!?a-b\\]|\\[!?é-ü\\]){1,8}",
            value in "[ab/éz-]{0,10}",
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

    proptest::proptest! {
        /// Patterns longer than one 64-position word.
        #[test]
        fn long_patterns_agree_with_backtracking(
            pattern in "[aa?é]{55,70}\\*?[a?]{0,10}",
            value in "[aé]{50,85}",
        ) {
            let glob = Glob::new(&pattern).expect("valid");
            let chars: Vec<char> = value.chars().collect();
            proptest::prop_assert_eq!(glob.matches(&value), reference(&glob.tokens, &chars));
        }
    }

    #[test]
    fn positions_carry_across_words() {
        let glob = Glob::new(&format!("{}*b", "a".repeat(70))).expect("valid");
        assert!(glob.matches(&format!("{}b", "a".repeat(70))));
        assert!(glob.matches(&format!("{}xyzb", "a".repeat(70))));
        assert!(!glob.matches(&format!("{}b", "a".repeat(69))));
        assert!(!glob.matches(&"a".repeat(80)));
        let exact = Glob::new(&"?".repeat(128)).expect("valid");
        assert!(exact.matches(&"é".repeat(128)));
        assert!(!exact.matches(&"é".repeat(127)));
        assert!(!exact.matches(&"é".repeat(129)));
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
