//! Policy files: TOML text compiled into rules (`policy::compile`, what the
//! CA runs at start-up and on every reload, and `jit-ssh-ca policy check`).
//! [`check`] compiles any text, with and without the issuer names of a
//! config, and asserts that nothing panics, that a refused policy says why
//! at a place inside the file, and that the same text always compiles to
//! the same verdict.

use std::path::PathBuf;

use ca_server::policy::cli::context;
use ca_server::policy::file::Source;
use ca_server::policy::{compile, Diagnostic, PolicyContext};

/// Asserts that `data`, as a policy file, compiles or is refused with
/// diagnostics that point into it.
pub fn check(data: &[u8]) {
    // Policy files are read as UTF-8 text; anything else is refused before.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let sources = [Source {
        path: PathBuf::from("fuzz.toml"),
        text: text.to_string(),
    }];
    let with_issuers = PolicyContext {
        issuers: Some(vec!["corp".into(), "ci".into()]),
        ..context(None)
    };
    for context in [context(None), with_issuers] {
        let first = compile(&sources, &context);
        if let Err(diagnostics) = &first {
            assert!(!diagnostics.is_empty(), "refused without a reason");
            for diagnostic in diagnostics {
                assert_inside(diagnostic, text);
            }
        }
        let again = compile(&sources, &context);
        assert_eq!(first.as_ref().err(), again.as_ref().err());
        assert_eq!(first.is_ok(), again.is_ok());
    }
}

/// A diagnostic's place, when it has one, is a line of `text` (or the one
/// after its last) and a column of that line (or the one after its end).
fn assert_inside(diagnostic: &Diagnostic, text: &str) {
    let Some(location) = &diagnostic.location else {
        return;
    };
    let lines: Vec<&str> = text.split('\n').collect();
    assert!(
        (1..=lines.len()).contains(&location.line),
        "{diagnostic}: line outside the file"
    );
    let columns = lines[location.line - 1].chars().count() + 1;
    assert!(
        (1..=columns).contains(&location.column),
        "{diagnostic}: column outside line {}",
        location.line
    );
}
