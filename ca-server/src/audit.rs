//! `jit-ssh-ca audit`: the issuance record as people and scripts read it.
//! Each line names its actor by display name and by subject (the `sub` its
//! issuer vouched for, and the issuer's URL), which tells apart two people
//! who show one display name.
//!
//! The table escapes every control character it prints (a reason recorded
//! with a newline or an escape sequence shows as `\n` or `\x1b`, and can
//! neither forge a row nor drive the terminal); `--json` keeps the values
//! as recorded.

use std::fmt::Write as _;

use jit_ssh_common::text::escape_control;

use crate::store::AuditEntry;

/// Renders entries as an aligned text table, oldest first, with control
/// characters escaped.
pub fn render_table(entries: &[AuditEntry]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<20}  {:<9}  {:<24}  {:<40}  {:<20}  {:<16}  {:<20}  {:<24}  DETAIL",
        "TIME (UTC)",
        "EVENT",
        "IDENTITY",
        "SUBJECT (ISSUER URL)",
        "SERIAL",
        "PRINCIPALS",
        "VALID UNTIL (UTC)",
        "RULES"
    );
    for e in entries {
        let principals = e
            .principals
            .as_ref()
            .map(|p| p.join(","))
            .unwrap_or_default();
        let until = e.valid_before.map(format_utc).unwrap_or_default();
        let subject = match (&e.subject, &e.issuer_url) {
            (Some(subject), Some(issuer)) => format!("{subject} ({issuer})"),
            _ => "-".to_string(),
        };
        let _ = writeln!(
            out,
            "{:<20}  {:<9}  {:<24}  {:<40}  {:<20}  {:<16}  {:<20}  {:<24}  {}",
            format_utc(e.at),
            escape_control(&e.event),
            escape_control(&e.identity),
            escape_control(&subject),
            escape_control(e.serial.as_deref().unwrap_or("-")),
            escape_control(&principals),
            until,
            escape_control(&if e.rules.is_empty() {
                "-".to_string()
            } else {
                e.rules.join(",")
            }),
            escape_control(&e.detail)
        );
    }
    out
}

/// `YYYY-MM-DD HH:MM:SS` in UTC, without a time-zone library.
pub fn format_utc(unix: u64) -> String {
    let days = (unix / 86_400) as i64;
    let secs = unix % 86_400;
    // Civil-from-days (Howard Hinnant's algorithm), proleptic Gregorian.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}",
        secs / 3600,
        (secs % 3600) / 60,
        secs % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_shows_one_line_per_event_with_its_rules() {
        let issued = AuditEntry {
            at: 1_796_083_199,
            event: "issued".into(),
            identity: "bob@corp".into(),
            issuer: "corp".into(),
            issuer_url: Some("https://corp.example".into()),
            subject: Some("user-bob".into()),
            serial: Some("42".into()),
            principals: Some(vec!["bob".into(), "deploy".into()]),
            valid_after: Some(1_796_083_139),
            valid_before: Some(1_796_083_499),
            key_fingerprint: Some("SHA256:x".into()),
            client_addr: "127.0.0.1".into(),
            detail: "jit-ssh user=bob".into(),
            rules: vec!["eng-own-login".into(), "sre-deploy".into()],
        };
        let denied = AuditEntry {
            event: "denied".into(),
            serial: None,
            principals: None,
            valid_before: None,
            rules: vec![],
            detail: "principal \"root\" is not granted".into(),
            ..issued.clone()
        };
        let table = render_table(&[issued, denied]);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[0].contains("RULES") && lines[0].contains("SUBJECT (ISSUER URL)"));
        assert!(lines[1].contains("bob,deploy") && lines[1].contains("eng-own-login,sre-deploy"));
        assert!(
            lines[1].contains("bob@corp  ") && lines[1].contains("user-bob (https://corp.example)")
        );
        assert!(lines[2].contains("denied") && lines[2].contains("not granted"));
    }

    #[test]
    fn control_characters_print_escaped_on_their_own_row() {
        let forged = AuditEntry {
            at: 1_796_083_199,
            event: "request_created".into(),
            identity: "bob@corp".into(),
            issuer: "corp".into(),
            issuer_url: Some("https://idp.example".into()),
            subject: Some("user-bob\u{1b}[2J".into()),
            serial: None,
            principals: None,
            valid_after: None,
            valid_before: None,
            key_fingerprint: None,
            client_addr: "127.0.0.1".into(),
            detail: "disk full\n2026-12-05 issued mallory@corp\u{1b}[8m".into(),
            rules: vec!["sre\u{9b}2J".into()],
        };
        let table = render_table(&[forged]);
        assert_eq!(table.lines().count(), 2, "{table}");
        assert!(
            !table.contains('\u{1b}') && !table.contains('\u{9b}'),
            "{table:?}"
        );
        assert!(
            table.contains("disk full\\n2026-12-05 issued mallory@corp\\x1b[8m"),
            "{table}"
        );
        assert!(table.contains("sre\\u{9b}2J"), "{table}");
        assert!(table.contains("user-bob\\x1b[2J"), "{table}");
    }

    #[test]
    fn formats_utc() {
        assert_eq!(format_utc(0), "1970-01-01 00:00:00");
        assert_eq!(format_utc(951_782_400), "2000-02-29 00:00:00");
        assert_eq!(format_utc(1_796_083_199), "2026-11-30 23:59:59");
    }
}
