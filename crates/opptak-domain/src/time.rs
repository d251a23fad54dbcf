//! UTC calendar dates and times without a time-zone database — the one
//! place opptak reads and writes them: days ([`Day`], `YYYY-MM-DD`, ISO
//! weeks), `YYYY-MM-DD hh:mm:ss` for people ([`utc_time`]), ISO 8601 for
//! protocols ([`iso8601`], [`parse_iso8601`]: S3 retain-until dates), year
//! arithmetic for retention ([`add_years`]), and the injected [`Clock`].

use std::fmt;

/// `(year, month, day)` of a day counted from 1970-01-01 (Howard Hinnant's
/// `civil_from_days`, exact for the proleptic Gregorian calendar).
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + if m <= 2 { 1 } else { 0 };
    (y, m as u32, d as u32)
}

/// Days since 1970-01-01 of a civil date (Howard Hinnant's `days_from_civil`).
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = m as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `years` calendar years after `us` (same time of day). 29 February goes to
/// 1 March in a common year, so a period never ends early.
pub fn add_years(us: i64, years: u32) -> i64 {
    let day_us = 86_400_000_000;
    let days = us.div_euclid(day_us);
    let rem = us.rem_euclid(day_us);
    let (y, m, d) = civil_from_days(days);
    let y2 = y + years as i64;
    let leap = (y2 % 4 == 0 && y2 % 100 != 0) || y2 % 400 == 0;
    let (m2, d2) = if m == 2 && d == 29 && !leap { (3, 1) } else { (m, d) };
    days_from_civil(y2, m2, d2) * day_us + rem
}

/// The time, injected everywhere a decision depends on it, so tests travel in time.
pub trait Clock: Send + Sync + 'static {
    /// Microseconds since the Unix epoch.
    fn now_us(&self) -> i64;
}

/// The system's clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_us(&self) -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_micros() as i64)
            .unwrap_or(0)
    }
}

/// A clock that stands still until moved (tests, time travel).
#[derive(Debug, Default)]
pub struct ManualClock(std::sync::atomic::AtomicI64);

impl ManualClock {
    pub fn new(now_us: i64) -> Self {
        Self(std::sync::atomic::AtomicI64::new(now_us))
    }
    pub fn set(&self, now_us: i64) {
        self.0.store(now_us, std::sync::atomic::Ordering::SeqCst);
    }
    pub fn advance(&self, by_us: i64) {
        self.0.fetch_add(by_us, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_us(&self) -> i64 {
        self.0.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// `YYYY-MM-DDThh:mm:ssZ` (UTC), with `.ffffff` only when `us` has a fraction.
pub fn iso8601(us: i64) -> String {
    let secs = us.div_euclid(1_000_000);
    let frac = us.rem_euclid(1_000_000);
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    let s = secs.rem_euclid(86_400);
    let hms = format!("{:02}:{:02}:{:02}", s / 3600, s % 3600 / 60, s % 60);
    if frac == 0 {
        format!("{y:04}-{m:02}-{d:02}T{hms}Z")
    } else {
        format!("{y:04}-{m:02}-{d:02}T{hms}.{frac:06}Z")
    }
}

/// Parses `YYYY-MM-DDThh:mm:ss[.fraction](Z|+00:00)` (what S3 servers send);
/// fractions below a microsecond are dropped.
pub fn parse_iso8601(s: &str) -> Option<i64> {
    let s = s.trim();
    let s = s.strip_suffix('Z').or_else(|| s.strip_suffix("+00:00"))?;
    let (date, time) = s.split_once('T')?;
    let mut dp = date.splitn(3, '-');
    let y: i64 = dp.next()?.parse().ok()?;
    let m: u32 = dp.next()?.parse().ok()?;
    let d: u32 = dp.next()?.parse().ok()?;
    let (hms, frac) = match time.split_once('.') {
        Some((hms, frac)) => (hms, frac),
        None => (time, ""),
    };
    let mut tp = hms.splitn(3, ':');
    let hh: i64 = tp.next()?.parse().ok()?;
    let mm: i64 = tp.next()?.parse().ok()?;
    let ss: i64 = tp.next()?.parse().ok()?;
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) || hh > 23 || mm > 59 || ss > 60 {
        return None;
    }
    if !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut micros = 0i64;
    for (i, b) in frac.bytes().take(6).enumerate() {
        micros += i64::from(b - b'0') * 10i64.pow(5 - i as u32);
    }
    let secs = days_from_civil(y, m, d) * 86_400 + hh * 3600 + mm * 60 + ss;
    Some(secs * 1_000_000 + micros)
}

/// A UTC calendar day, counted from 1970-01-01.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Day(i64);

impl Day {
    /// The day of a civil date, `None` if there is no such date.
    pub fn from_ymd(year: i64, month: u32, day: u32) -> Option<Day> {
        let days = days_from_civil(year, month, day);
        (civil_from_days(days) == (year, month, day)).then_some(Day(days))
    }

    pub fn from_days_since_epoch(days: i64) -> Day {
        Day(days)
    }

    pub fn days_since_epoch(self) -> i64 {
        self.0
    }

    /// The day `n` days later (earlier if negative).
    pub fn plus(self, n: i64) -> Day {
        Day(self.0 + n)
    }

    /// 1 (Monday) to 7 (Sunday); 1970-01-01 was a Thursday.
    pub fn iso_weekday(self) -> u32 {
        (self.0 + 3).rem_euclid(7) as u32 + 1
    }

    /// The Monday of this day's ISO week.
    pub fn monday(self) -> Day {
        Day(self.0 - i64::from(self.iso_weekday()) + 1)
    }

    /// ISO 8601 week-numbering year and week: weeks start on Monday and
    /// belong to the year their Thursday falls in, so 2027-01-01 is in
    /// 2026-W53 and 2024-12-30 in 2025-W01.
    pub fn iso_week(self) -> (i64, u32) {
        let thursday = self.monday().0 + 3;
        let (year, _, _) = civil_from_days(thursday);
        let week = (thursday - days_from_civil(year, 1, 1)) / 7 + 1;
        (year, week as u32)
    }

    /// `YYYY-Www`, e.g. `2026-W48`.
    pub fn week_label(self) -> String {
        let (year, week) = self.iso_week();
        format!("{year:04}-W{week:02}")
    }
}

impl fmt::Display for Day {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (y, m, d) = civil_from_days(self.0);
        write!(f, "{y:04}-{m:02}-{d:02}")
    }
}

/// Not a `YYYY-MM-DD` calendar date.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvalidDay(pub String);

impl fmt::Display for InvalidDay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid day {:?} (YYYY-MM-DD expected)", self.0)
    }
}

impl std::error::Error for InvalidDay {}

impl std::str::FromStr for Day {
    type Err = InvalidDay;

    /// Exactly `YYYY-MM-DD`, a real date.
    fn from_str(s: &str) -> Result<Day, InvalidDay> {
        let invalid = || InvalidDay(s.to_owned());
        let b = s.as_bytes();
        let digits = |r: std::ops::Range<usize>| b[r.clone()].iter().all(u8::is_ascii_digit).then(|| &s[r]);
        if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
            return Err(invalid());
        }
        let (Some(y), Some(m), Some(d)) = (digits(0..4), digits(5..7), digits(8..10)) else {
            return Err(invalid());
        };
        let (Ok(y), Ok(m), Ok(d)) = (y.parse::<i64>(), m.parse::<u32>(), d.parse::<u32>()) else {
            return Err(invalid());
        };
        Day::from_ymd(y, m, d).ok_or_else(invalid)
    }
}

/// `YYYY-MM-DD` (UTC) of a time in µs since the epoch.
pub fn utc_day(us: i64) -> String {
    let (y, m, d) = civil_from_days(us.div_euclid(86_400_000_000));
    format!("{y:04}-{m:02}-{d:02}")
}

/// `YYYY-MM-DD hh:mm:ss` (UTC) of a time in µs since the epoch.
pub fn utc_time(us: i64) -> String {
    let secs = us.div_euclid(1_000_000);
    let rem = secs.rem_euclid(86_400);
    format!(
        "{} {:02}:{:02}:{:02}",
        utc_day(us),
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// The offset of Norway's civil time (Europe/Oslo) from UTC at `us`, in
/// seconds: CEST (+2 h) from 01:00 UTC on the last Sunday of March to 01:00
/// UTC on the last Sunday of October, CET (+1 h) otherwise (the EU rule, in
/// force in Norway since 1996; earlier instants get it too).
pub fn oslo_offset_s(us: i64) -> i64 {
    let secs = us.div_euclid(1_000_000);
    let (y, _, _) = civil_from_days(secs.div_euclid(86_400));
    // The last Sunday of a 31-day month: day 31 back to its Sunday
    // (1970-01-01, day 0, was a Thursday: weekday 4 with Sunday 0).
    let last_sunday = |m: u32| {
        let d31 = days_from_civil(y, m, 31);
        d31 - (d31 + 4).rem_euclid(7)
    };
    let start = last_sunday(3) * 86_400 + 3_600;
    let end = last_sunday(10) * 86_400 + 3_600;
    if (start..end).contains(&secs) {
        7_200
    } else {
        3_600
    }
}

/// `(year, month, day, hour, minute, second)` of `us` in Norway's civil time.
pub fn oslo_civil(us: i64) -> (i64, u32, u32, u32, u32, u32) {
    let secs = us.div_euclid(1_000_000) + oslo_offset_s(us);
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    let s = secs.rem_euclid(86_400);
    (y, m, d, (s / 3600) as u32, (s % 3600 / 60) as u32, (s % 60) as u32)
}

#[cfg(test)]
mod tests {
    #[test]
    fn oslo_time_follows_the_eu_summer_time_rule() {
        let at = |y, m, d, h: i64, mi: i64| (days_from_civil(y, m, d) * 86_400 + h * 3600 + mi * 60) * 1_000_000;
        // 2026: summer time 29 March 01:00 UTC to 25 October 01:00 UTC.
        assert_eq!(oslo_offset_s(at(2026, 3, 29, 0, 59)), 3_600);
        assert_eq!(oslo_offset_s(at(2026, 3, 29, 1, 0)), 7_200);
        assert_eq!(oslo_offset_s(at(2026, 10, 25, 0, 59)), 7_200);
        assert_eq!(oslo_offset_s(at(2026, 10, 25, 1, 0)), 3_600);
        // 2024: 31 March and 27 October.
        assert_eq!(oslo_offset_s(at(2024, 3, 31, 1, 0)), 7_200);
        assert_eq!(oslo_offset_s(at(2024, 3, 30, 12, 0)), 3_600);
        assert_eq!(oslo_offset_s(at(2024, 10, 27, 0, 30)), 7_200);
        assert_eq!(oslo_civil(at(2026, 12, 31, 23, 30)), (2027, 1, 1, 0, 30, 0));
        assert_eq!(oslo_civil(at(2026, 7, 1, 22, 5)), (2026, 7, 2, 0, 5, 0));
    }

    #[test]
    fn iso8601_round_trips() {
        for us in [
            0,
            1_795_824_000_000_000,
            1_795_824_003_000_001,
            951_782_400_500_000,
            -1_000_000,
        ] {
            assert_eq!(parse_iso8601(&iso8601(us)), Some(us), "{}", iso8601(us));
        }
        assert_eq!(iso8601(1_795_824_003_000_000), "2026-11-28T00:00:03Z");
        assert_eq!(parse_iso8601("2026-11-28T00:00:03.000Z"), Some(1_795_824_003_000_000));
        assert_eq!(
            parse_iso8601("2026-11-28T00:00:03.123456789Z"),
            Some(1_795_824_003_123_456)
        );
        assert_eq!(parse_iso8601("2026-11-28T00:00:03+00:00"), Some(1_795_824_003_000_000));
        assert_eq!(parse_iso8601("2026-11-28 00:00:03"), None);
        assert_eq!(parse_iso8601("2026-13-28T00:00:03Z"), None);
    }

    use super::*;

    #[test]
    fn known_dates() {
        assert_eq!(utc_day(0), "1970-01-01");
        assert_eq!(utc_day(1_795_824_000_000_000), "2026-11-28");
        assert_eq!(utc_day(951_782_400_000_000), "2000-02-29");
        assert_eq!(utc_day(-1), "1969-12-31");
        assert_eq!(utc_time(1_795_824_000_000_000 + 3_723_000_000), "2026-11-28 01:02:03");
    }

    #[test]
    fn calendar_years() {
        for days in [-800_000i64, -1, 0, 11_016, 20_785, 2_932_896] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
        let nov28 = 1_795_824_000_000_000 + 3_723_000_000;
        assert_eq!(utc_time(add_years(nov28, 5)), "2031-11-28 01:02:03");
        let feb29 = days_from_civil(2028, 2, 29) * 86_400_000_000;
        assert_eq!(utc_day(add_years(feb29, 1)), "2029-03-01");
        assert_eq!(utc_day(add_years(feb29, 4)), "2032-02-29");
    }
}
