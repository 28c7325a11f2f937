//! ISO weeks (`2026-W47`): the digest's period, Monday 00:00 to the next Monday, in UTC.

use chrono::{Datelike, NaiveDate, TimeZone, Utc, Weekday};
use std::fmt;
use std::str::FromStr;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Week {
    pub year: i32,
    pub week: u32,
}

impl Week {
    /// The week `at_ms` (Unix ms) falls in.
    pub fn of(at_ms: i64) -> Week {
        let d = Utc
            .timestamp_millis_opt(at_ms)
            .single()
            .unwrap_or_default()
            .date_naive()
            .iso_week();
        Week {
            year: d.year(),
            week: d.week(),
        }
    }

    fn monday(self) -> NaiveDate {
        NaiveDate::from_isoywd_opt(self.year, self.week, Weekday::Mon)
            .expect("a Week is always a valid ISO week")
    }

    /// Its start and end, in Unix ms: [start, end).
    pub fn range_ms(self) -> (i64, i64) {
        let start = self
            .monday()
            .and_hms_opt(0, 0, 0)
            .unwrap()
            .and_utc()
            .timestamp_millis();
        (start, start + 7 * 86_400_000)
    }

    pub fn previous(self) -> Week {
        Week::of(self.range_ms().0 - 1)
    }
}

impl fmt::Display for Week {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-W{:02}", self.year, self.week)
    }
}

#[derive(Debug, PartialEq, thiserror::Error)]
#[error("not an ISO week like 2026-W47: {0:?}")]
pub struct BadWeek(String);

impl FromStr for Week {
    type Err = BadWeek;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || BadWeek(s.chars().take(40).collect());
        let (y, w) = s.split_once("-W").ok_or_else(bad)?;
        let year: i32 = y.parse().map_err(|_| bad())?;
        let week: u32 = w.parse().map_err(|_| bad())?;
        if !(1970..=9999).contains(&year) || y.len() != 4 || w.len() != 2 {
            return Err(bad());
        }
        NaiveDate::from_isoywd_opt(year, week, Weekday::Mon).ok_or_else(bad)?;
        Ok(Week { year, week })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weeks_parse_print_and_span_seven_days() {
        let w: Week = "2026-W47".parse().unwrap();
        assert_eq!(w.to_string(), "2026-W47");
        let (start, end) = w.range_ms();
        // Monday 16 November 2026, 00:00 UTC.
        assert_eq!(start, 1_794_787_200_000);
        assert_eq!(end - start, 7 * 86_400_000);
        assert_eq!(Week::of(start), w);
        assert_eq!(Week::of(end - 1), w);
        assert_eq!(w.previous().to_string(), "2026-W46");
        assert_eq!(
            "2027-W01".parse::<Week>().unwrap().previous().to_string(),
            "2026-W53"
        );
        for bad in [
            "", "2026", "2026-W", "2026-W0", "2026-W54", "2025-W53", "26-W01", "2026-W1x",
            "2026-w47",
        ] {
            assert!(bad.parse::<Week>().is_err(), "{bad:?}");
        }
    }
}
