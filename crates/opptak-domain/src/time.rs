//! UTC calendar dates without a time-zone database.

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

#[cfg(test)]
mod tests {
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
