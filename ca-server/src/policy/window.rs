//! Time windows: "Mon–Fri 09:00–17:00 Europe/Berlin".
//!
//! Windows are wall-clock times in an IANA time zone (through `jiff` and the
//! system's tz database, with a bundled copy as fallback), so "09:00" stays
//! 09:00 local across daylight-saving changes. A window whose end is not
//! after its start (`22:00`–`06:00`) runs overnight into the next day; `days`
//! name the day it starts.
//!
//! On the days the clocks change, a local time may occur twice (clocks go
//! back) or not at all (clocks go forward). Both starts and ends are read the
//! way iCalendar (RFC 5545) reads them: a repeated time is its first
//! occurrence, and a skipped time is read with the offset in force before the
//! change (02:30 in a gap from 02:00 to 03:00 is 03:30 by the new clock). So
//! a window never opens before the clock first shows its start, a window
//! inside the repeated hour opens (the first time round), and a window whose
//! end falls in the skipped hour lasts as long as written instead of ending
//! an hour early. A window that starts where another ends (09:00–12:00 and
//! 12:00–17:00, or a daily 00:00–24:00 from one day to the next) is one
//! continuous window: [`open_until`] follows such a run to its real end.
//! The same reading of start and end makes a joint exact on DST days too.

use std::fmt;

use jiff::civil::{Date, DateTime, Time, Weekday};
use jiff::tz::TimeZone;
use jiff::Timestamp;

use crate::UnixTime;

/// One recurring window.
#[derive(Debug, Clone)]
pub struct TimeWindow {
    days: [bool; 7],
    start: Time,
    /// `None` is 24:00, the end of the day.
    end: Option<Time>,
    zone_name: String,
    zone: TimeZone,
}

/// The part of a window a problem is in, so a policy diagnostic can point
/// at the key rather than the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowField {
    /// `days`.
    Days,
    /// `from`.
    From,
    /// `to`.
    To,
    /// `time_zone`.
    TimeZone,
}

impl TimeWindow {
    /// Builds a window from its parts as written in a policy file.
    pub fn parse(days: &[String], from: &str, to: &str, time_zone: &str) -> Result<Self, String> {
        Self::parse_fields(days, from, to, time_zone).map_err(|(_, message)| message)
    }

    /// As [`TimeWindow::parse`], saying which part is wrong.
    pub fn parse_fields(
        days: &[String],
        from: &str,
        to: &str,
        time_zone: &str,
    ) -> Result<Self, (WindowField, String)> {
        let zone = TimeZone::get(time_zone).map_err(|_| {
            (WindowField::TimeZone, format!("unknown time zone {time_zone:?} (use an IANA name such as \"Europe/Berlin\" or \"UTC\")"))
        })?;
        // Without allow_24, parse_time never returns None.
        let start = parse_time(from, false)
            .map_err(|e| (WindowField::From, e))?
            .unwrap_or(Time::midnight());
        let end = parse_time(to, true).map_err(|e| (WindowField::To, e))?;
        if Some(start) == end {
            return Err((
                WindowField::To,
                format!(
                    "window {from}–{to} is empty; leave out [[window]] for a rule that applies at any time"
                ),
            ));
        }
        let mut day_set = [false; 7];
        if days.is_empty() {
            day_set = [true; 7];
        }
        let day = |text: &str| parse_day(text).map_err(|e| (WindowField::Days, e));
        for entry in days {
            let (first, last) = match entry.split_once('-') {
                Some((a, b)) => (day(a)?, day(b)?),
                None => {
                    let d = day(entry)?;
                    (d, d)
                }
            };
            let mut d = first;
            loop {
                day_set[d] = true;
                if d == last {
                    break;
                }
                d = (d + 1) % 7;
            }
        }
        Ok(TimeWindow {
            days: day_set,
            start,
            end,
            zone_name: time_zone.to_string(),
            zone,
        })
    }

    /// When `now` is inside an occurrence of this window, that occurrence's
    /// end (Unix seconds); otherwise `None`. An occurrence is half-open: it
    /// includes its start and excludes its end.
    pub fn end_if_open(&self, now: UnixTime) -> Option<UnixTime> {
        let now_ts = Timestamp::from_second(i64::try_from(now).ok()?).ok()?;
        let today = self.zone.to_datetime(now_ts).date();
        // An occurrence that began yesterday may still be open (overnight).
        [today.yesterday().ok()?, today]
            .into_iter()
            .filter_map(|day| self.occurrence(day))
            .filter(|(start, end)| *start <= now_ts && now_ts < *end)
            .map(|(_, end)| end.as_second())
            .max()
            .and_then(|end| u64::try_from(end).ok())
    }

    /// The start of the first occurrence that starts after `now` (Unix
    /// seconds), if one starts within the next eight days.
    pub fn next_start(&self, now: UnixTime) -> Option<UnixTime> {
        let now_ts = Timestamp::from_second(i64::try_from(now).ok()?).ok()?;
        let mut day = self.zone.to_datetime(now_ts).date();
        for _ in 0..8 {
            if let Some((start, end)) = self.occurrence(day) {
                // An occurrence the clock change made empty never starts.
                if start > now_ts && start < end {
                    return u64::try_from(start.as_second()).ok();
                }
            }
            day = day.tomorrow().ok()?;
        }
        None
    }

    /// The occurrence starting on `day`, if `days` names it: its start and
    /// end instants, with repeated and skipped local times read as the
    /// module documentation says.
    fn occurrence(&self, day: Date) -> Option<(Timestamp, Timestamp)> {
        if !self.days[day_index(day.weekday())] {
            return None;
        }
        let start = self.instant(day.to_datetime(self.start))?;
        let end_day_time = match self.end {
            Some(end) if end > self.start => day.to_datetime(end),
            Some(end) => day.tomorrow().ok()?.to_datetime(end),
            None => day.tomorrow().ok()?.to_datetime(Time::midnight()),
        };
        Some((start, self.instant(end_day_time)?))
    }

    /// The instant a local date and time names: the first of two, or for
    /// one the clocks skip, the reading with the offset before the change.
    fn instant(&self, local: DateTime) -> Option<Timestamp> {
        self.zone.to_ambiguous_timestamp(local).compatible().ok()
    }
}

/// An instant as people read it in traces and reports: RFC 3339 in UTC
/// (`2026-07-06T22:00:00Z`), or the raw seconds when it is out of range.
pub fn format_instant(unix: UnixTime) -> String {
    i64::try_from(unix)
        .ok()
        .and_then(|s| Timestamp::from_second(s).ok())
        .map_or_else(|| unix.to_string(), |t| t.to_string())
}

/// How far [`open_until`] follows a run of adjacent occurrences: beyond
/// anything a window end bounds (certificates live at most an hour, access
/// request windows at most a week), so a run longer than this is as good as
/// endless.
const RUN_HORIZON: UnixTime = 8 * 24 * 3600;

/// When `now` is inside an occurrence of one of `windows`, the end of the
/// continuous run of occurrences it is in (occurrences that touch or
/// overlap, of the same window or of different ones, are one run), at most
/// about eight days ahead; otherwise `None`.
pub fn open_until(windows: &[TimeWindow], now: UnixTime) -> Option<UnixTime> {
    let open_at = |t: UnixTime| windows.iter().filter_map(|w| w.end_if_open(t)).max();
    let mut end = open_at(now)?;
    while end < now.saturating_add(RUN_HORIZON) {
        match open_at(end) {
            Some(next) if next > end => end = next,
            _ => break,
        }
    }
    Some(end)
}

/// The start of the next occurrence of one of `windows` after `now`, if any
/// starts within the next eight days.
pub fn next_start(windows: &[TimeWindow], now: UnixTime) -> Option<UnixTime> {
    windows.iter().filter_map(|w| w.next_start(now)).min()
}

impl fmt::Display for TimeWindow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const NAMES: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
        let days: Vec<&str> = (0..7).filter(|&d| self.days[d]).map(|d| NAMES[d]).collect();
        let days = if days.len() == 7 {
            "daily".to_string()
        } else {
            days.join(",")
        };
        let end = match self.end {
            Some(end) => end.strftime("%H:%M").to_string(),
            None => "24:00".into(),
        };
        write!(
            f,
            "{days} {}–{end} {}",
            self.start.strftime("%H:%M"),
            self.zone_name
        )
    }
}

fn day_index(weekday: Weekday) -> usize {
    (weekday.to_monday_zero_offset() as usize) % 7
}

fn parse_day(text: &str) -> Result<usize, String> {
    let index = match text.trim().to_ascii_lowercase().as_str() {
        "mon" => 0,
        "tue" => 1,
        "wed" => 2,
        "thu" => 3,
        "fri" => 4,
        "sat" => 5,
        "sun" => 6,
        other => {
            return Err(format!(
                "unknown day {other:?} (use mon, tue, wed, thu, fri, sat, sun or a range like \"mon-fri\")"
            ))
        }
    };
    Ok(index)
}

/// `HH:MM`, 00:00–23:59, and 24:00 when `allow_24` (returned as `None`).
fn parse_time(text: &str, allow_24: bool) -> Result<Option<Time>, String> {
    let bad = || format!("invalid time {text:?} (use 24-hour \"HH:MM\", e.g. \"09:00\")");
    let (h, m) = text.split_once(':').ok_or_else(bad)?;
    if h.len() != 2 || m.len() != 2 {
        return Err(bad());
    }
    let h: i8 = h.parse().map_err(|_| bad())?;
    let m: i8 = m.parse().map_err(|_| bad())?;
    if allow_24 && h == 24 && m == 0 {
        return Ok(None);
    }
    Time::new(h, m, 0, 0).map(Some).map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(rfc3339: &str) -> UnixTime {
        let ts: Timestamp = rfc3339.parse().expect("timestamp");
        ts.as_second() as UnixTime
    }

    fn berlin_office() -> TimeWindow {
        TimeWindow::parse(&["mon-fri".into()], "09:00", "17:00", "Europe/Berlin").expect("window")
    }

    #[test]
    fn inside_and_outside_table() {
        let w = berlin_office();
        // 2026-07-06 is a Monday; Berlin is UTC+2 in summer.
        let cases: &[(&str, Option<&str>)] = &[
            ("2026-07-06T07:00:00Z", Some("2026-07-06T15:00:00Z")),
            ("2026-07-06T06:59:59Z", None),
            ("2026-07-06T14:59:59Z", Some("2026-07-06T15:00:00Z")),
            ("2026-07-06T15:00:00Z", None),
            ("2026-07-04T10:00:00Z", None), // Saturday
            ("2026-07-10T10:00:00Z", Some("2026-07-10T15:00:00Z")), // Friday
            // Winter: UTC+1, so 09:00 local is 08:00Z.
            ("2026-01-05T07:30:00Z", None),
            ("2026-01-05T08:00:00Z", Some("2026-01-05T16:00:00Z")),
        ];
        for (now, end) in cases {
            assert_eq!(w.end_if_open(at(now)), end.map(at), "at {now}");
        }
    }

    #[test]
    fn dst_change_keeps_wall_clock_times() {
        let w = TimeWindow::parse(&[], "01:00", "04:00", "Europe/Berlin").expect("window");
        // 2026-03-29: clocks go 02:00 CET -> 03:00 CEST. 01:00 CET = 00:00Z,
        // 04:00 CEST = 02:00Z: a two-hour window that day.
        assert_eq!(
            w.end_if_open(at("2026-03-29T00:00:00Z")),
            Some(at("2026-03-29T02:00:00Z"))
        );
        assert_eq!(w.end_if_open(at("2026-03-29T02:00:00Z")), None);
        // 2026-10-25: 03:00 CEST -> 02:00 CET. 01:00 CEST = 23:00Z the day
        // before, 04:00 CET = 03:00Z: a four-hour window.
        assert_eq!(
            w.end_if_open(at("2026-10-24T23:00:00Z")),
            Some(at("2026-10-25T03:00:00Z"))
        );
        assert_eq!(
            w.end_if_open(at("2026-10-25T02:59:59Z")),
            Some(at("2026-10-25T03:00:00Z"))
        );
        // An end inside the spring gap (02:30 does not exist) is read with
        // the winter offset in force before the gap: 01:30Z (03:30 CEST), so
        // the window lasts the 90 minutes written. (It used to end at 00:30Z,
        // an hour early: issue 17 item 10.)
        let gap = TimeWindow::parse(&[], "01:00", "02:30", "Europe/Berlin").expect("window");
        assert_eq!(
            gap.end_if_open(at("2026-03-29T00:10:00Z")),
            Some(at("2026-03-29T01:30:00Z"))
        );
        assert_eq!(
            gap.end_if_open(at("2026-03-29T01:00:00Z")),
            Some(at("2026-03-29T01:30:00Z"))
        );
        assert_eq!(gap.end_if_open(at("2026-03-29T01:30:00Z")), None);
        // An end in the autumn fold (02:30 happens twice) takes the first one.
        assert_eq!(
            gap.end_if_open(at("2026-10-24T23:30:00Z")),
            Some(at("2026-10-25T00:30:00Z"))
        );
    }

    #[test]
    fn runs_of_touching_windows_and_next_starts() {
        let morning = TimeWindow::parse(&[], "09:00", "12:00", "UTC").expect("window");
        let afternoon = TimeWindow::parse(&[], "12:00", "17:00", "UTC").expect("window");
        let both = [morning.clone(), afternoon];
        assert_eq!(
            open_until(&both, at("2026-07-06T11:00:00Z")),
            Some(at("2026-07-06T17:00:00Z"))
        );
        assert_eq!(
            open_until(&both, at("2026-07-06T12:00:00Z")),
            Some(at("2026-07-06T17:00:00Z"))
        );
        assert_eq!(open_until(&both, at("2026-07-06T17:00:00Z")), None);
        assert_eq!(
            open_until(std::slice::from_ref(&morning), at("2026-07-06T11:00:00Z")),
            Some(at("2026-07-06T12:00:00Z"))
        );
        // A daily 00:00–24:00 never ends; the run is followed about eight
        // days ahead, past anything a window end bounds.
        let always = TimeWindow::parse(&[], "00:00", "24:00", "Europe/Berlin").expect("window");
        let now = at("2026-07-06T21:30:00Z");
        let end = open_until(&[always], now).expect("open");
        assert!(end >= now + 8 * 24 * 3600, "{end}");
        // Next starts: later today, tomorrow, after a weekend, none.
        assert_eq!(
            morning.next_start(at("2026-07-06T08:00:00Z")),
            Some(at("2026-07-06T09:00:00Z"))
        );
        assert_eq!(
            morning.next_start(at("2026-07-06T09:00:00Z")),
            Some(at("2026-07-07T09:00:00Z"))
        );
        let office = berlin_office();
        assert_eq!(
            office.next_start(at("2026-07-10T16:00:00Z")),
            Some(at("2026-07-13T07:00:00Z"))
        );
        assert_eq!(
            next_start(&[office, morning], at("2026-07-11T10:00:00Z")),
            Some(at("2026-07-12T09:00:00Z"))
        );
    }

    #[test]
    fn overnight_and_midnight_windows() {
        let night = TimeWindow::parse(&["fri".into()], "22:00", "06:00", "UTC").expect("window");
        // Friday 2026-07-10 22:00 to Saturday 06:00.
        assert_eq!(
            night.end_if_open(at("2026-07-10T23:00:00Z")),
            Some(at("2026-07-11T06:00:00Z"))
        );
        assert_eq!(
            night.end_if_open(at("2026-07-11T05:00:00Z")),
            Some(at("2026-07-11T06:00:00Z"))
        );
        assert_eq!(night.end_if_open(at("2026-07-11T22:30:00Z")), None); // Saturday night
        let evening = TimeWindow::parse(&["sun-mon".into()], "18:00", "24:00", "UTC").expect("w");
        assert_eq!(
            evening.end_if_open(at("2026-07-12T19:00:00Z")),
            Some(at("2026-07-13T00:00:00Z"))
        );
        assert_eq!(evening.end_if_open(at("2026-07-14T19:00:00Z")), None); // Tuesday
    }

    #[test]
    fn bad_windows_are_refused() {
        let cases = [
            (
                vec![],
                "09:00",
                "17:00",
                "Europe/Berlinn",
                "unknown time zone",
            ),
            (vec![], "9:00", "17:00", "UTC", "invalid time"),
            (vec![], "09:00", "25:00", "UTC", "invalid time"),
            (vec![], "24:00", "17:00", "UTC", "invalid time"),
            (vec![], "09:00", "09:00", "UTC", "empty"),
            (
                vec!["monday".to_string()],
                "09:00",
                "17:00",
                "UTC",
                "unknown day",
            ),
        ];
        for (days, from, to, tz, why) in cases {
            let err = TimeWindow::parse(&days, from, to, tz).expect_err(why);
            assert!(err.contains(why), "{err}");
        }
        assert_eq!(
            berlin_office().to_string(),
            "Mon,Tue,Wed,Thu,Fri 09:00–17:00 Europe/Berlin"
        );
    }
}
