//! The fenced blocks of the project's markdown and the shell commands in
//! them, for the test that runs or accounts for every command the docs show
//! (tests/e2e/docs.rs).
//!
//! Reading is deliberately small and strict: a block is whatever lies between
//! a line starting with three backticks (indented or not) and the next line
//! that is exactly three backticks; a shell line is split into words and
//! operators with the quoting rules of POSIX sh (single and double quotes,
//! backslash, `$(…)` kept inside its word), which is all the docs use. What it
//! cannot read is reported, never skipped.

use std::path::Path;

/// One fenced block: where it opens (1-based line of the fence) and its body.
#[derive(Debug, Clone)]
pub struct Block {
    pub file: String,
    pub line: usize,
    pub lang: String,
    pub text: String,
}

/// One command as the docs show it: the block's file, the line it starts on,
/// and its text with `\`-continuations joined.
#[derive(Debug, Clone)]
pub struct DocCommand {
    pub file: String,
    pub line: usize,
    pub text: String,
}

impl DocCommand {
    /// `file:line`, as error messages name it.
    pub fn place(&self) -> String {
        format!("{}:{}", self.file, self.line)
    }
}

/// The markdown files whose commands are checked: README.md and docs/*.md,
/// sorted, as paths relative to `root`.
pub fn doc_files(root: &Path) -> Vec<String> {
    let mut files = vec!["README.md".to_string()];
    let mut docs: Vec<String> = std::fs::read_dir(root.join("docs"))
        .expect("docs/ exists")
        .map(|entry| entry.expect("docs/ entry").file_name())
        .map(|name| name.to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".md"))
        .map(|name| format!("docs/{name}"))
        .collect();
    docs.sort();
    files.extend(docs);
    files
}

/// Every fenced block of `markdown`. An unclosed fence is an error naming its
/// line, since everything after it would silently stop being checked.
pub fn blocks(file: &str, markdown: &str) -> Result<Vec<Block>, String> {
    let mut found = Vec::new();
    let mut open: Option<(usize, String, usize, Vec<&str>)> = None;
    for (index, line) in markdown.lines().enumerate() {
        let trimmed = line.trim_start();
        match open.as_mut() {
            None => {
                if let Some(info) = trimmed.strip_prefix("```") {
                    let indent = line.len() - trimmed.len();
                    open = Some((index + 1, info.trim().to_string(), indent, Vec::new()));
                }
            }
            Some((_, _, indent, body)) => {
                if trimmed.trim_end() == "```" {
                    let (start, lang, _, body) = open.take().expect("open block");
                    found.push(Block {
                        file: file.to_string(),
                        line: start,
                        lang,
                        text: body.join("\n"),
                    });
                } else {
                    let strip = line.len() - line.trim_start().len();
                    body.push(&line[strip.min(*indent)..]);
                }
            }
        }
    }
    match open {
        Some((start, ..)) => Err(format!("{file}:{start}: fenced block never closed")),
        None => Ok(found),
    }
}

/// The commands of a shell block: for `sh`/`bash`/`shell`, every line that is
/// not blank or a comment; for `console`, every line after a `$ ` prompt
/// (the rest is output). `\` at the end of a line continues the command.
pub fn commands(block: &Block) -> Vec<DocCommand> {
    let prompt_only = block.lang == "console";
    let mut found = Vec::new();
    let mut pending: Option<(usize, String)> = None;
    for (offset, raw) in block.text.lines().enumerate() {
        let line_no = block.line + 1 + offset;
        let line = match pending.take() {
            Some((start, so_far)) => (start, format!("{so_far} {}", raw.trim())),
            None => {
                let text = if prompt_only {
                    match raw.strip_prefix("$ ") {
                        Some(rest) => rest,
                        None => continue,
                    }
                } else {
                    raw
                };
                let text = text.trim();
                if text.is_empty() || text.starts_with('#') {
                    continue;
                }
                (line_no, text.to_string())
            }
        };
        match line.1.strip_suffix('\\') {
            Some(head) => pending = Some((line.0, head.trim_end().to_string())),
            None => found.push(DocCommand {
                file: block.file.clone(),
                line: line.0,
                text: line.1,
            }),
        }
    }
    if let Some((start, text)) = pending {
        found.push(DocCommand {
            file: block.file.clone(),
            line: start,
            text,
        });
    }
    found
}

/// The simple commands of one shell line, each as its words (quotes removed,
/// `$…` left as written), split at `&&`, `||`, `;`, `|`, a trailing `&`, and
/// a `#` comment cut off. Redirections (`> FILE`, `2>&1`, `< FILE`) are left
/// out of the words. Errors name what could not be read.
pub fn simple_commands(line: &str) -> Result<Vec<Vec<String>>, String> {
    let mut commands = vec![Vec::new()];
    let mut word = String::new();
    let mut in_word = false;
    let mut redirect = false;
    let mut chars = line.chars().peekable();
    let finish = |word: &mut String,
                  in_word: &mut bool,
                  redirect: &mut bool,
                  commands: &mut Vec<Vec<String>>| {
        if *in_word {
            if *redirect {
                *redirect = false;
            } else {
                commands.last_mut().expect("one command").push(word.clone());
            }
        }
        word.clear();
        *in_word = false;
    };
    while let Some(c) = chars.next() {
        match c {
            ' ' | '\t' => finish(&mut word, &mut in_word, &mut redirect, &mut commands),
            '#' if !in_word => break,
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => word.push(c),
                        None => return Err(format!("unclosed ' in {line:?}")),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => word.push(chars.next().unwrap_or('\\')),
                        Some('$') if chars.peek() == Some(&'(') => {
                            word.push('$');
                            substitution(&mut chars, &mut word, line)?;
                        }
                        Some(c) => word.push(c),
                        None => return Err(format!("unclosed \" in {line:?}")),
                    }
                }
            }
            '\\' => {
                in_word = true;
                word.push(chars.next().unwrap_or('\\'));
            }
            '$' if chars.peek() == Some(&'(') => {
                in_word = true;
                word.push('$');
                substitution(&mut chars, &mut word, line)?;
            }
            '&' | '|' | ';' => {
                finish(&mut word, &mut in_word, &mut redirect, &mut commands);
                if matches!(chars.peek(), Some('&' | '|')) {
                    chars.next();
                }
                if !commands.last().expect("one command").is_empty() {
                    commands.push(Vec::new());
                }
            }
            '>' | '<' => {
                // `2>`: the digit was the start of a word; it is no word.
                if word.chars().all(|c| c.is_ascii_digit()) {
                    word.clear();
                    in_word = false;
                } else {
                    finish(&mut word, &mut in_word, &mut redirect, &mut commands);
                }
                if chars.peek() == Some(&'>') {
                    chars.next();
                }
                if chars.peek() == Some(&'&') {
                    chars.next();
                    // `>&1`: the target is the next word, a descriptor.
                }
                redirect = true;
            }
            ')' | '(' if c == ')' || !in_word => {
                finish(&mut word, &mut in_word, &mut redirect, &mut commands);
                if !commands.last().expect("one command").is_empty() {
                    commands.push(Vec::new());
                }
            }
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    finish(&mut word, &mut in_word, &mut redirect, &mut commands);
    commands.retain(|words| !words.is_empty());
    Ok(commands)
}

/// Copies a `$(…)` (the `$` already copied) into `word`, nested parentheses
/// included.
fn substitution(
    chars: &mut std::iter::Peekable<std::str::Chars<'_>>,
    word: &mut String,
    line: &str,
) -> Result<(), String> {
    let mut depth = 0usize;
    for c in chars.by_ref() {
        word.push(c);
        match c {
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth == 0 {
                    return Ok(());
                }
            }
            _ => {}
        }
    }
    Err(format!("unclosed $( in {line:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_operators_quotes_and_redirections() {
        let got = simple_commands(
            r#"umask 077; head -c 32 /dev/urandom | base64 > /etc/x && sudo -u u sh -c 'a; b' 2>&1"#,
        )
        .unwrap();
        assert_eq!(
            got,
            vec![
                vec!["umask", "077"],
                vec!["head", "-c", "32", "/dev/urandom"],
                vec!["base64"],
                vec!["sudo", "-u", "u", "sh", "-c", "a; b"],
            ]
        );
        let got = simple_commands(r#"x -N "$(cat /p)" --out /b/c-$(date +%F).db # note"#).unwrap();
        assert_eq!(
            got,
            vec![vec!["x", "-N", "$(cat /p)", "--out", "/b/c-$(date +%F).db"]]
        );
        let got = simple_commands("(printf 'ca '; curl -sS https://x/y) > a").unwrap();
        assert_eq!(
            got,
            vec![vec!["printf", "ca "], vec!["curl", "-sS", "https://x/y"]]
        );
        assert!(simple_commands("echo 'open").is_err());
    }

    #[test]
    fn console_blocks_take_prompted_lines_and_continuations() {
        let block = Block {
            file: "f.md".into(),
            line: 10,
            lang: "console".into(),
            text: "$ a --x \\\n    --y\noutput\n$ b".into(),
        };
        let got: Vec<(usize, String)> = commands(&block)
            .into_iter()
            .map(|c| (c.line, c.text))
            .collect();
        assert_eq!(got, vec![(11, "a --x --y".into()), (14, "b".into())]);
        assert!(blocks("f.md", "```sh\nx\n").is_err());
    }
}
