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
}
