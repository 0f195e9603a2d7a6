//! Business time in a team's calendar (pure): working hours per weekday in the team's IANA time
//! zone, minus holidays. Adding a business duration to an instant, and the business time elapsed
//! between two instants, are exact over daylight-saving changes because every working interval
//! is turned into UTC instants on its own date before it is measured.

use std::collections::BTreeSet;

use chrono::{DateTime, Datelike, Duration, LocalResult, NaiveDate, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;

/// How far ahead [`Calendar::add`] looks for working time before giving up (ten years).
const HORIZON_DAYS: i64 = 3660;

/// A working interval within one local day, in minutes from midnight (`end` may be 1440).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Interval {
    /// First working minute.
    pub start: u16,
    /// Minute the interval ends (exclusive), at most 1440.
    pub end: u16,
}

/// A team's working calendar.
#[derive(Debug, Clone, PartialEq)]
pub struct Calendar {
    /// The team's time zone.
    pub zone: Tz,
    /// Working intervals per weekday, Monday first, sorted and disjoint.
    pub hours: [Vec<Interval>; 7],
    /// Local dates with no working time.
    pub holidays: BTreeSet<NaiveDate>,
}

/// Which clock a policy's durations run on.
#[derive(Debug, Clone, Copy)]
pub enum Clock<'a> {
    /// Wall-clock time: every minute counts.
    Wall,
    /// Only the calendar's working time counts.
    Business(&'a Calendar),
}

impl Clock<'_> {
    /// `start` plus `d` on this clock; `None` when the calendar has no working time ahead.
    pub fn add(&self, start: DateTime<Utc>, d: Duration) -> Option<DateTime<Utc>> {
        match self {
            Clock::Wall => Some(start + d),
            Clock::Business(c) => c.add(start, d),
        }
    }

    /// Time counted on this clock between `from` and `to` (zero when `to` is not after `from`).
    pub fn elapsed(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> Duration {
        match self {
            Clock::Wall => (to - from).max(Duration::zero()),
            Clock::Business(c) => c.elapsed(from, to),
        }
    }
}

impl Calendar {
    /// The working intervals of one local date as UTC instants (none on a holiday).
    fn day(&self, date: NaiveDate) -> Vec<(DateTime<Utc>, DateTime<Utc>)> {
        if self.holidays.contains(&date) {
            return Vec::new();
        }
        let weekday = date.weekday().num_days_from_monday() as usize;
        self.hours[weekday]
            .iter()
            .map(|i| (self.instant(date, i.start), self.instant(date, i.end)))
            .filter(|(s, e)| s < e)
            .collect()
    }

    /// The instant a local wall time happens: the earlier one when the clock is set back and the
    /// time happens twice, the first minute after the gap when the clock jumps over it.
    fn instant(&self, date: NaiveDate, minute: u16) -> DateTime<Utc> {
        let mut local: NaiveDateTime =
            date.and_hms_opt(0, 0, 0).expect("midnight exists") + Duration::minutes(minute.into());
        // A gap lasts at most a few hours; look minute by minute past it.
        for _ in 0..=24 * 60 {
            match self.zone.from_local_datetime(&local) {
                LocalResult::Single(t) => return t.with_timezone(&Utc),
                LocalResult::Ambiguous(early, _) => return early.with_timezone(&Utc),
                LocalResult::None => local += Duration::minutes(1),
            }
        }
        // No zone skips a whole day; treat the wall time as UTC rather than panic.
        Utc.from_utc_datetime(&local)
    }

    fn local_date(&self, at: DateTime<Utc>) -> NaiveDate {
        at.with_timezone(&self.zone).date_naive()
    }

    /// `start` plus `d` of working time: a start outside working hours waits for the next
    /// opening; `None` when no working time is left within ten years.
    pub fn add(&self, start: DateTime<Utc>, d: Duration) -> Option<DateTime<Utc>> {
        let mut remaining = d.max(Duration::zero());
        let first = self.local_date(start);
        for offset in 0..HORIZON_DAYS {
            let date = first + Duration::days(offset);
            for (s, e) in self.day(date) {
                let s = s.max(start);
                if e <= s {
                    continue;
                }
                if remaining <= e - s {
                    return Some(s + remaining);
                }
                remaining -= e - s;
            }
        }
        None
    }

    /// Working time between `from` and `to` (zero when `to` is not after `from`).
    pub fn elapsed(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> Duration {
        if to <= from {
            return Duration::zero();
        }
        let (first, last) = (self.local_date(from), self.local_date(to));
        let mut total = Duration::zero();
        let mut date = first;
        while date <= last {
            for (s, e) in self.day(date) {
                let (s, e) = (s.max(from), e.min(to));
                if s < e {
                    total += e - s;
                }
            }
            date += Duration::days(1);
        }
        total
    }

    /// True when `at` falls in working time.
    pub fn is_open(&self, at: DateTime<Utc>) -> bool {
        self.day(self.local_date(at)).iter().any(|(s, e)| *s <= at && at < *e)
    }

    /// The local date of `at` in the team's zone (absences and holidays are local dates).
    pub fn date_of(&self, at: DateTime<Utc>) -> NaiveDate {
        self.local_date(at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn date(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    fn hours(start: u16, end: u16, days: usize) -> [Vec<Interval>; 7] {
        std::array::from_fn(|d| {
            if d < days {
                vec![Interval { start, end }]
            } else {
                vec![]
            }
        })
    }

    /// Paris, Monday to Friday 08:00–18:00, Christmas off.
    fn paris() -> Calendar {
        Calendar {
            zone: chrono_tz::Europe::Paris,
            hours: hours(8 * 60, 18 * 60, 5),
            holidays: [date("2026-12-25")].into(),
        }
    }

    #[test]
    fn adding_business_time_in_paris() {
        let c = paris();
        let h = Duration::hours;
        #[rustfmt::skip]
        let cases = [
            // (arrival, business duration, due) — Paris is UTC+1 in winter, UTC+2 in summer
            ("2026-11-27T17:00:00Z", h(4), "2026-11-30T11:00:00Z", "Friday 18:00 Paris → Monday 12:00"),
            ("2026-11-27T18:30:00Z", h(4), "2026-11-30T11:00:00Z", "Friday 19:30 → Monday 12:00"),
            ("2026-11-27T16:00:00Z", h(4), "2026-11-30T10:00:00Z", "Friday 17:00: 1h Friday, 3h Monday"),
            ("2026-11-28T10:00:00Z", h(4), "2026-11-30T11:00:00Z", "Saturday waits for Monday"),
            ("2026-11-30T08:00:00Z", h(4), "2026-11-30T12:00:00Z", "Monday 09:00, inside hours"),
            ("2026-11-30T06:00:00Z", h(0), "2026-11-30T07:00:00Z", "zero before opening is the opening"),
            ("2026-11-30T08:00:00Z", h(10), "2026-12-01T08:00:00Z", "a whole working day"),
            ("2026-12-24T16:00:00Z", h(2), "2026-12-28T08:00:00Z", "Christmas Eve 17:00 + 2h: Christmas Friday off"),
            ("2026-12-23T08:00:00Z", h(30), "2026-12-29T08:00:00Z", "three working days across Christmas"),
            ("2026-11-27T17:00:00Z", Duration::minutes(5), "2026-11-30T07:05:00Z", "five minutes after the weekend"),
        ];
        for (at, d, due, why) in cases {
            assert_eq!(c.add(utc(at), d), Some(utc(due)), "{why}");
        }
    }

    #[test]
    fn both_daylight_saving_days_are_exact() {
        let c = paris();
        // Spring forward 2026-03-29 (Sunday): Friday 18:00 CET → Monday 12:00 CEST = 10:00Z.
        assert_eq!(
            c.add(utc("2026-03-27T17:00:00Z"), Duration::hours(4)),
            Some(utc("2026-03-30T10:00:00Z"))
        );
        // Fall back 2026-10-25 (Sunday): Friday 18:00 CEST → Monday 12:00 CET = 11:00Z.
        assert_eq!(
            c.add(utc("2026-10-23T16:00:00Z"), Duration::hours(4)),
            Some(utc("2026-10-26T11:00:00Z"))
        );
        // Round the clock: the spring day has 23 working hours, the autumn day 25.
        let always = Calendar {
            zone: chrono_tz::Europe::Paris,
            hours: hours(0, 24 * 60, 7),
            holidays: BTreeSet::new(),
        };
        let midnight = |d: &str| always.instant(date(d), 0);
        assert_eq!(
            always.elapsed(midnight("2026-03-29"), midnight("2026-03-30")),
            Duration::hours(23)
        );
        assert_eq!(
            always.elapsed(midnight("2026-10-25"), midnight("2026-10-26")),
            Duration::hours(25)
        );
        assert_eq!(
            always.add(midnight("2026-03-29"), Duration::hours(23)),
            Some(midnight("2026-03-30"))
        );
        assert_eq!(
            always.add(midnight("2026-10-25"), Duration::hours(25)),
            Some(midnight("2026-10-26"))
        );
        // Hours inside the gap start when the clock lands: 02:00–04:00 on 29 March is 03:00–04:00 CEST.
        let night = Calendar {
            zone: chrono_tz::Europe::Paris,
            hours: hours(2 * 60, 4 * 60, 7),
            holidays: BTreeSet::new(),
        };
        assert_eq!(
            night.elapsed(utc("2026-03-28T23:00:00Z"), utc("2026-03-29T23:00:00Z")),
            Duration::hours(1)
        );
        // ... and the repeated hour on 25 October counts both times: 02:00 CEST to 04:00 CET is 3 hours.
        assert_eq!(
            night.elapsed(utc("2026-10-24T22:00:00Z"), utc("2026-10-25T22:00:00Z")),
            Duration::hours(3)
        );
    }

    #[test]
    fn a_team_in_another_zone_counts_its_own_hours() {
        let ny = Calendar {
            zone: chrono_tz::America::New_York,
            hours: hours(9 * 60, 17 * 60, 5),
            holidays: [date("2026-11-26")].into(),
        };
        // The same Friday 18:00 Paris instant is 12:00 in New York: 4h fit before 17:00.
        assert_eq!(
            ny.add(utc("2026-11-27T17:00:00Z"), Duration::hours(4)),
            Some(utc("2026-11-27T21:00:00Z"))
        );
        // Thanksgiving Thursday is off: Wednesday 16:00 + 2h → Friday 10:00 EST (15:00Z).
        assert_eq!(
            ny.add(utc("2026-11-25T21:00:00Z"), Duration::hours(2)),
            Some(utc("2026-11-27T15:00:00Z"))
        );
        // US daylight saving ends 2026-11-01, a week after Paris: Monday 09:00 is 14:00Z, not 13:00Z.
        assert_eq!(
            ny.add(utc("2026-10-30T21:00:00Z"), Duration::zero()),
            Some(utc("2026-11-02T14:00:00Z"))
        );
    }

    #[test]
    fn elapsed_counts_only_working_time_and_inverts_add() {
        let c = paris();
        #[rustfmt::skip]
        let cases = [
            ("2026-11-27T17:00:00Z", "2026-11-30T11:00:00Z", Duration::hours(4)),
            ("2026-11-27T16:00:00Z", "2026-11-27T18:00:00Z", Duration::hours(1)),
            ("2026-11-28T00:00:00Z", "2026-11-29T23:00:00Z", Duration::zero()),
            ("2026-11-30T11:00:00Z", "2026-11-30T10:00:00Z", Duration::zero()),
            ("2026-12-24T07:00:00Z", "2026-12-28T17:00:00Z", Duration::hours(20)),
        ];
        for (from, to, want) in cases {
            assert_eq!(c.elapsed(utc(from), utc(to)), want, "{from} → {to}");
        }
        let start = utc("2026-12-22T15:17:00Z");
        for minutes in [0, 1, 59, 600, 601, 3000, 9999] {
            let d = Duration::minutes(minutes);
            let due = c.add(start, d).unwrap();
            assert_eq!(c.elapsed(start, due), d, "{minutes} minutes");
        }
    }

    #[test]
    fn open_hours_and_a_calendar_with_none() {
        let c = paris();
        assert!(c.is_open(utc("2026-11-30T07:00:00Z")), "Monday 08:00 opens");
        assert!(!c.is_open(utc("2026-11-30T17:00:00Z")), "Monday 18:00 is closed");
        assert!(!c.is_open(utc("2026-12-25T10:00:00Z")), "Christmas");
        let closed = Calendar {
            zone: chrono_tz::UTC,
            hours: hours(0, 0, 0),
            holidays: BTreeSet::new(),
        };
        assert_eq!(closed.add(utc("2026-11-30T07:00:00Z"), Duration::hours(1)), None);
        assert_eq!(
            Clock::Wall.add(utc("2026-11-27T17:00:00Z"), Duration::hours(4)),
            Some(utc("2026-11-27T21:00:00Z"))
        );
    }
}
