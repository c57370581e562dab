//! Wall-calendar facts about virtual time: the run's epoch, hour of day, day of week, the
//! academic calendar, ISO 8601 timestamps.
//!
//! Virtual time is milliseconds since the epoch; the marketplace keeps UTC as its local time.
//! Day facts are computed once per day and cached, because the hot path asks for them on every
//! arrival.

use chrono::{DateTime, Datelike, NaiveDate, Utc};

use super::catalog::{CalendarPeriod, MonthDay};
use crate::engine::{VirtualTimeMs, MS_PER_DAY, MS_PER_HOUR};

/// The instant virtual time 0 stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Epoch {
    unix_ms: i64,
}

impl Epoch {
    pub fn from_datetime(start: DateTime<Utc>) -> Self {
        Epoch {
            unix_ms: start.timestamp_millis(),
        }
    }

    pub fn unix_ms(&self) -> i64 {
        self.unix_ms
    }

    pub fn datetime(&self) -> DateTime<Utc> {
        DateTime::from_timestamp_millis(self.unix_ms).unwrap_or_default()
    }

    /// Absolute UTC milliseconds of virtual time `t`.
    #[inline]
    pub fn absolute_ms(&self, t: VirtualTimeMs) -> i64 {
        self.unix_ms + t as i64
    }

    /// Hour of day (0–23, UTC) at virtual time `t`.
    #[inline]
    pub fn hour_of_day(&self, t: VirtualTimeMs) -> usize {
        (self.absolute_ms(t).rem_euclid(MS_PER_DAY as i64) / MS_PER_HOUR as i64) as usize
    }

    /// Days since 1970-01-01 of virtual time `t`.
    #[inline]
    pub fn unix_day(&self, t: VirtualTimeMs) -> i64 {
        self.absolute_ms(t).div_euclid(MS_PER_DAY as i64)
    }

    /// The start of `t`'s wall-clock hour, in signed virtual milliseconds: an epoch that is
    /// not on the hour puts the start of the first hour before virtual time 0.
    #[inline]
    pub fn hour_start(&self, t: VirtualTimeMs) -> i64 {
        let into_hour = self.absolute_ms(t).rem_euclid(MS_PER_HOUR as i64);
        t as i64 - into_hour
    }

    /// The first virtual time after `t` that starts a wall-clock hour.
    #[inline]
    pub fn next_hour_start(&self, t: VirtualTimeMs) -> VirtualTimeMs {
        let into_hour = self.absolute_ms(t).rem_euclid(MS_PER_HOUR as i64) as u64;
        t + (MS_PER_HOUR - into_hour)
    }

    /// The virtual time of the next `hour`:00 strictly after `t`.
    pub fn next_time_of_day(&self, t: VirtualTimeMs, hour: u8) -> VirtualTimeMs {
        let into_day = self.absolute_ms(t).rem_euclid(MS_PER_DAY as i64) as u64;
        let target = hour as u64 * MS_PER_HOUR;
        if into_day < target {
            t + (target - into_day)
        } else {
            t + (MS_PER_DAY - into_day) + target
        }
    }

    /// ISO 8601 UTC with milliseconds, e.g. `2025-01-15T14:30:00.000Z`.
    pub fn format(&self, t: VirtualTimeMs) -> String {
        format_unix_ms(self.absolute_ms(t))
    }
}

/// ISO 8601 UTC with milliseconds.
pub fn format_unix_ms(unix_ms: i64) -> String {
    match DateTime::from_timestamp_millis(unix_ms) {
        Some(datetime) => datetime.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string(),
        None => format!("@{unix_ms}ms"),
    }
}

/// Compound growth at the start of `t`'s wall hour, relative to the epoch: rates stay constant
/// within an hour, so recomputing a rate mid-hour gives the cached value.
///
/// The hour's start is signed: when the epoch is not on the hour, the first hour began before
/// virtual time 0 (unsigned arithmetic here once wrapped to 2^64 and made every rate infinite).
pub fn growth_factor(growth_per_month: f64, epoch: Epoch, t: VirtualTimeMs) -> f64 {
    let hour_start = epoch.hour_start(t) as f64;
    (1.0 + growth_per_month).powf(hour_start / (30.0 * MS_PER_DAY as f64))
}

/// What the model needs to know about one calendar day.
#[derive(Debug, Clone, Copy)]
pub struct DayFacts {
    /// Monday = 0.
    pub weekday: usize,
    /// Product of the demand multipliers of the academic periods covering the day.
    pub academic_factor: f64,
}

/// Caches [`DayFacts`] for the days of a run, from the epoch's day on.
#[derive(Debug, Clone)]
pub struct DayTable {
    epoch: Epoch,
    first_unix_day: i64,
    periods: Vec<CalendarPeriod>,
    days: Vec<DayFacts>,
}

impl DayTable {
    pub fn new(epoch: Epoch, periods: &[CalendarPeriod]) -> Self {
        DayTable {
            epoch,
            first_unix_day: epoch.unix_day(0),
            periods: periods.to_vec(),
            days: Vec::new(),
        }
    }

    pub fn epoch(&self) -> Epoch {
        self.epoch
    }

    /// Index of the run day (0 = the epoch's day) that contains `t`.
    #[inline]
    pub fn day_index(&self, t: VirtualTimeMs) -> usize {
        (self.epoch.unix_day(t) - self.first_unix_day) as usize
    }

    #[inline]
    pub fn facts(&mut self, t: VirtualTimeMs) -> DayFacts {
        let index = self.day_index(t);
        while self.days.len() <= index {
            let unix_day = self.first_unix_day + self.days.len() as i64;
            let facts = self.compute(unix_day);
            self.days.push(facts);
        }
        self.days[index]
    }

    fn compute(&self, unix_day: i64) -> DayFacts {
        let date = NaiveDate::from_ymd_opt(1970, 1, 1)
            .and_then(|d| d.checked_add_signed(chrono::Duration::days(unix_day)))
            .unwrap_or_default();
        let month_day = MonthDay {
            month: date.month(),
            day: date.day(),
        };
        let academic_factor = self
            .periods
            .iter()
            .filter(|p| p.covers(month_day))
            .map(|p| p.demand)
            .product();
        DayFacts {
            weekday: date.weekday().num_days_from_monday() as usize,
            academic_factor,
        }
    }

    /// Names of the academic periods covering the day of `t` (for the inspector and reports).
    pub fn periods_at(&self, t: VirtualTimeMs) -> Vec<&CalendarPeriod> {
        let datetime = self.epoch.datetime() + chrono::Duration::milliseconds(t as i64);
        let month_day = MonthDay {
            month: datetime.month(),
            day: datetime.day(),
        };
        self.periods
            .iter()
            .filter(|p| p.covers(month_day))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn epoch(text: &str) -> Epoch {
        Epoch::from_datetime(text.parse().unwrap_or_default())
    }

    #[test]
    fn growth_is_finite_and_near_one_in_a_first_hour_that_began_before_the_epoch() {
        for start in [
            "2025-02-03T09:30:00Z",
            "2025-02-03T00:00:30Z",
            "2025-02-03T00:00:00+05:30",
            "2025-02-03T23:59:59.999Z",
        ] {
            let e = epoch(start);
            assert!(e.hour_start(0) <= 0, "{start}");
            assert!(e.hour_start(0) > -(MS_PER_HOUR as i64), "{start}");
            let growth = growth_factor(0.03, e, 0);
            assert!(
                growth.is_finite() && (0.99..=1.0).contains(&growth),
                "{start}: {growth}"
            );
        }
    }

    #[test]
    fn hours_days_and_formatting() {
        let e = epoch("2025-01-01T22:30:00Z");
        assert_eq!(e.hour_of_day(0), 22);
        assert_eq!(e.hour_of_day(2 * MS_PER_HOUR), 0);
        assert_eq!(e.next_hour_start(0), 30 * 60_000);
        assert_eq!(e.next_time_of_day(0, 2), 3 * MS_PER_HOUR + 30 * 60_000);
        assert_eq!(e.format(1_234), "2025-01-01T22:30:01.234Z");
        let mut table = DayTable::new(e, &[]);
        assert_eq!(table.facts(0).weekday, 2); // 2025-01-01 was a Wednesday.
        assert_eq!(table.day_index(2 * MS_PER_HOUR), 1);
    }
}
