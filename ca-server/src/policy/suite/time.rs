//! Time: how windows bound decisions and certificate lifetimes, as policy
//! files + identity + time → decision and lifetime tables. A deny window
//! clips a certificate exactly as the end of an allow window does; windows
//! that touch are one window; daylight-saving days keep every window its
//! wall-clock length (issue 17 items 9 and 10).

use super::*;

fn at(rfc3339: &str) -> UnixTime {
    let ts: jiff::Timestamp = rfc3339.parse().unwrap();
    ts.as_second() as UnixTime
}

fn ask_for(principals: &[&str], minutes: u64) -> CertRequest {
    CertRequest {
        ttl: Some(Duration::from_secs(minutes * 60)),
        ..ask(principals)
    }
}

/// The lifetime granted, or `None` for a denial.
fn lifetime(set: &PolicySet, who: &Identity, request: &CertRequest, now: &str) -> Option<u64> {
    match set.evaluate(who, request, at(now)) {
        Decision::Allow(grant) => Some(grant.ttl.as_secs() / 60),
        Decision::Deny(_) => None,
    }
}

#[test]
fn a_deny_window_clips_certificates_like_an_allow_window() {
    let set = policy(
        r#"
[[rule]]
name = "sre"
principals = ["root", "deploy"]
max_ttl = "60m"
[rule.match]
issuer = ["corp"]
groups_any = ["sre"]

[[deny]]
name = "no-root-at-night"
principals = ["root"]
[deny.match]
issuer = ["corp"]
groups_any = ["sre"]
[[deny.window]]
from = "22:00"
to = "06:00"
time_zone = "UTC"

[[deny]]
name = "contractors-nothing-on-sundays"
[deny.match]
issuer = ["corp"]
groups_any = ["contractors"]
[[deny.window]]
days = ["sun"]
time_zone = "Europe/Berlin"
from = "00:00"
to = "24:00"
"#,
    );
    let sre = person("alice", &["sre"], json!({}));
    let contractor = person("carol", &["sre", "contractors"], json!({}));
    // (who, principals, minutes asked, now) → minutes granted, or denied.
    type Case<'a> = (&'a Identity, &'a [&'a str], u64, &'a str, Option<u64>);
    let cases: &[Case<'_>] = &[
        // The issue's case: root for 60 minutes at 21:55, deny from 22:00.
        (&sre, &["root"], 60, "2026-07-06T21:55:00Z", Some(5)),
        (&sre, &["root"], 60, "2026-07-06T20:30:00Z", Some(60)),
        (&sre, &["root"], 60, "2026-07-06T22:00:00Z", None),
        (&sre, &["root"], 60, "2026-07-07T05:59:00Z", None),
        (&sre, &["root"], 60, "2026-07-07T06:00:00Z", Some(60)),
        // A principal the deny rule does not name keeps its lifetime.
        (&sre, &["deploy"], 60, "2026-07-06T21:55:00Z", Some(60)),
        // Together, the certificate ends when root would be refused.
        (
            &sre,
            &["root", "deploy"],
            60,
            "2026-07-06T21:55:00Z",
            Some(5),
        ),
        // A deny rule that does not apply to the identity clips nothing:
        // alice is no contractor; Sunday 00:00 Berlin is Saturday 22:00Z.
        (&sre, &["deploy"], 60, "2026-07-11T21:30:00Z", Some(60)),
        // One that names no principal clips every certificate (Saturday
        // 23:30 Berlin; root is clipped earlier still by its own window).
        (
            &contractor,
            &["deploy"],
            60,
            "2026-07-11T21:30:00Z",
            Some(30),
        ),
        (&contractor, &["deploy"], 60, "2026-07-11T22:00:00Z", None),
    ];
    for (who, principals, minutes, now, expected) in cases {
        assert_eq!(
            lifetime(&set, who, &ask_for(principals, *minutes), now),
            *expected,
            "{} asking {principals:?} for {minutes}m at {now}",
            who.username
        );
    }
    let mut trace = Vec::new();
    set.decide(
        &sre,
        &ask_for(&["root"], 60),
        at("2026-07-06T21:55:00Z"),
        Some(&mut trace),
    );
    assert!(
        trace
            .iter()
            .any(|l| l.contains("start of deny rule no-root-at-night's window")),
        "{trace:#?}"
    );
}

#[test]
fn windows_that_touch_are_one_window() {
    let set = policy(
        r#"
[[rule]]
name = "office"
principals = ["release"]
max_ttl = "60m"
[rule.match]
issuer = ["corp"]
groups_any = ["rm"]
[[rule.window]]
days = ["mon-fri"]
from = "09:00"
to = "12:00"
time_zone = "UTC"
[[rule.window]]
days = ["mon-fri"]
from = "12:00"
to = "17:00"
time_zone = "UTC"

[[rule]]
name = "always"
principals = ["ops"]
max_ttl = "60m"
[rule.match]
issuer = ["corp"]
groups_any = ["ops"]
[[rule.window]]
from = "00:00"
to = "24:00"
time_zone = "Europe/Berlin"

[[rule]]
name = "overlapping"
principals = ["batch"]
max_ttl = "60m"
[rule.match]
issuer = ["corp"]
groups_any = ["batch"]
[[rule.window]]
from = "20:00"
to = "23:00"
time_zone = "UTC"
[[rule.window]]
days = ["fri"]
from = "22:30"
to = "02:00"
time_zone = "UTC"
"#,
    );
    let who = person("alice", &["rm", "ops", "batch"], json!({}));
    // 2026-07-06 is a Monday, 2026-07-10 a Friday.
    let cases: &[(&str, &str, Option<u64>)] = &[
        ("release", "2026-07-06T11:30:00Z", Some(60)),
        ("release", "2026-07-06T16:30:00Z", Some(30)),
        ("release", "2026-07-06T17:00:00Z", None),
        // Daily 00:00–24:00 runs through midnight (22:00Z is 24:00 Berlin).
        ("ops", "2026-07-06T21:30:00Z", Some(60)),
        // Overlapping windows: 20:00–23:00 then Friday 22:30–02:00.
        ("batch", "2026-07-10T22:45:00Z", Some(60)),
        ("batch", "2026-07-11T01:30:00Z", Some(30)),
        ("batch", "2026-07-09T22:45:00Z", Some(15)),
    ];
    for (principal, now, expected) in cases {
        assert_eq!(
            lifetime(&set, &who, &ask_for(&[principal], 60), now),
            *expected,
            "{principal} at {now}"
        );
    }
}

/// Windows around daylight-saving changes: a window inside a repeated hour
/// opens (the first time round); one whose end the clocks skip lasts as long
/// as written; one starting in a skipped hour never opens early; one running
/// across midnight into a skipped midnight continues.
#[test]
fn daylight_saving_days_keep_each_window_its_wall_clock_length() {
    let window = |zone: &str, days: &str, from: &str, to: &str| {
        format!(
            "[[rule.window]]\ndays = [\"{days}\"]\nfrom = \"{from}\"\nto = \"{to}\"\ntime_zone = \"{zone}\"\n"
        )
    };
    let rule = |name: &str, windows: &[String]| {
        format!(
            "[[rule]]\nname = \"{name}\"\nprincipals = [\"{name}\"]\nmax_ttl = \"60m\"\n\
             [rule.match]\nissuer = [\"corp\"]\ngroups_any = [\"eng\"]\n{}",
            windows.concat()
        )
    };
    let text = [
        // New York falls back on 2026-11-01 at 02:00 EDT to 01:00 EST.
        rule(
            "ny-fold",
            &[window("America/New_York", "sun", "01:00", "01:45")],
        ),
        // New York springs forward on 2026-03-08 at 02:00 EST to 03:00 EDT.
        rule(
            "ny-gap",
            &[window("America/New_York", "sun", "01:00", "02:30")],
        ),
        // Berlin springs forward on 2026-03-29 at 02:00 CET to 03:00 CEST.
        rule(
            "berlin-gap-start",
            &[window("Europe/Berlin", "sun", "02:30", "05:00")],
        ),
        rule(
            "berlin-in-gap",
            &[window("Europe/Berlin", "sun", "02:15", "02:45")],
        ),
        rule(
            "berlin-emptied",
            &[window("Europe/Berlin", "sun", "02:30", "03:00")],
        ),
        // Berlin falls back on 2026-10-25 at 03:00 CEST to 02:00 CET.
        rule(
            "berlin-fold",
            &[window("Europe/Berlin", "sun", "02:15", "02:45")],
        ),
        // Santiago springs forward at midnight: Sunday 2026-09-06 00:00 -04
        // is 01:00 -03, so Sunday's 00:00 does not exist.
        rule(
            "santiago-midnight",
            &[
                window("America/Santiago", "sat", "20:00", "24:00"),
                window("America/Santiago", "sun", "00:00", "06:00"),
            ],
        ),
        // Santiago falls back on Saturday 2026-04-04 at 24:00 -03 to 23:00 -04.
        rule(
            "santiago-fold",
            &[window("America/Santiago", "sat", "23:15", "23:45")],
        ),
        // Lord Howe shifts by 30 minutes: back on 2026-04-05 at 02:00 +11 to
        // 01:30 +10:30, forward on 2026-10-04 at 02:00 +10:30 to 02:30 +11.
        rule(
            "lh-fold",
            &[window("Australia/Lord_Howe", "sun", "01:40", "01:50")],
        ),
        rule(
            "lh-gap",
            &[window("Australia/Lord_Howe", "sun", "01:00", "02:15")],
        ),
    ]
    .join("\n");
    let set = policy(&text);
    let who = person("alice", &["eng"], json!({}));
    // (principal, now) → minutes granted of 60 asked, or denied.
    let cases: &[(&str, &str, Option<u64>)] = &[
        // 01:00–01:45 EDT is 05:00Z–05:45Z; the second 01:00 (06:00Z) is past.
        ("ny-fold", "2026-11-01T04:59:00Z", None),
        ("ny-fold", "2026-11-01T05:00:00Z", Some(45)),
        ("ny-fold", "2026-11-01T05:30:00Z", Some(15)),
        ("ny-fold", "2026-11-01T06:10:00Z", None),
        // 01:00 EST is 06:00Z; 02:30 does not exist and is read as EST:
        // 07:30Z (03:30 EDT), 90 minutes as written, not an hour less.
        ("ny-gap", "2026-03-08T06:00:00Z", Some(60)),
        ("ny-gap", "2026-03-08T07:10:00Z", Some(20)),
        ("ny-gap", "2026-03-08T07:30:00Z", None),
        // 02:30 does not exist; read as CET it is 01:30Z (03:30 CEST): the
        // window never opens before then.
        ("berlin-gap-start", "2026-03-29T01:00:00Z", None),
        ("berlin-gap-start", "2026-03-29T01:30:00Z", Some(60)),
        // Wholly inside the gap: moved by it, 03:15–03:45 CEST.
        ("berlin-in-gap", "2026-03-29T01:00:00Z", None),
        ("berlin-in-gap", "2026-03-29T01:15:00Z", Some(30)),
        // 02:30 is read as 03:30 CEST, after the end at 03:00: never open.
        ("berlin-emptied", "2026-03-29T00:45:00Z", None),
        ("berlin-emptied", "2026-03-29T01:15:00Z", None),
        ("berlin-emptied", "2026-03-29T01:40:00Z", None),
        // 02:15–02:45 CEST (00:15Z–00:45Z), the first time round only.
        ("berlin-fold", "2026-10-25T00:15:00Z", Some(30)),
        ("berlin-fold", "2026-10-25T01:15:00Z", None),
        // Saturday 21:00 -04 is 01:00Z; the run goes on through the skipped
        // midnight (04:00Z) to Sunday 06:00 -03 = 09:00Z.
        ("santiago-midnight", "2026-09-06T03:30:00Z", Some(60)),
        ("santiago-midnight", "2026-09-06T08:30:00Z", Some(30)),
        // Saturday 23:15–23:45 -03 (02:15Z–02:45Z), the first time round.
        ("santiago-fold", "2026-04-05T02:15:00Z", Some(30)),
        ("santiago-fold", "2026-04-05T03:20:00Z", None),
        // 01:40–01:50 +11 is 14:40Z–14:50Z on Saturday 4 April.
        ("lh-fold", "2026-04-04T14:40:00Z", Some(10)),
        ("lh-fold", "2026-04-04T15:10:00Z", None),
        // 01:00 +10:30 is 14:30Z; 02:15 does not exist and is read as
        // +10:30: 15:45Z (02:45 +11), not 15:15Z.
        ("lh-gap", "2026-10-03T14:30:00Z", Some(60)),
        ("lh-gap", "2026-10-03T15:30:00Z", Some(15)),
        ("lh-gap", "2026-10-03T15:45:00Z", None),
    ];
    for (principal, now, expected) in cases {
        assert_eq!(
            lifetime(&set, &who, &ask_for(&[principal], 60), now),
            *expected,
            "{principal} at {now}"
        );
    }
}
