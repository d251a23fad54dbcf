//! Times, numbers and lengths as staff read them: Norway's local time
//! (Europe/Oslo, summer time included) in both languages, and numbers in
//! the page language's form (Norwegian `0,2`, English `0.2`). Every page
//! formats through here, never with `{:.1}` or a UTC string of its own.

use super::Lang;
use opptak_domain::time::oslo_civil;

/// `07.12.2026 10:41` (Norwegian) or `2026-12-07 10:41` (English), Oslo time.
pub(crate) fn when(lang: Lang, us: i64) -> String {
    let (y, m, d, h, mi, _) = oslo_civil(us);
    match lang {
        Lang::Nb => format!("{d:02}.{m:02}.{y} {h:02}:{mi:02}"),
        Lang::En => format!("{y}-{m:02}-{d:02} {h:02}:{mi:02}"),
    }
}

/// [`when`] with seconds, for the audit log.
pub(crate) fn when_s(lang: Lang, us: i64) -> String {
    let (y, m, d, h, mi, s) = oslo_civil(us);
    match lang {
        Lang::Nb => format!("{d:02}.{m:02}.{y} {h:02}:{mi:02}:{s:02}"),
        Lang::En => format!("{y}-{m:02}-{d:02} {h:02}:{mi:02}:{s:02}"),
    }
}

/// `v` with `decimals` decimals, a decimal comma and a space between
/// thousands in Norwegian (`1 234,5`), a point and a comma in English.
pub(crate) fn number(lang: Lang, v: f64, decimals: usize) -> String {
    let s = format!("{:.*}", decimals, v.abs());
    let (int, frac) = s.split_once('.').map_or((s.as_str(), None), |(i, f)| (i, Some(f)));
    let (sep, point) = match lang {
        Lang::Nb => ('\u{a0}', ','),
        Lang::En => (',', '.'),
    };
    let mut out = String::new();
    if v < 0.0 && s.bytes().any(|b| b.is_ascii_digit() && b != b'0') {
        out.push('−');
    }
    for (i, c) in int.chars().enumerate() {
        if i > 0 && (int.len() - i) % 3 == 0 && int.len() > 4 {
            out.push(sep);
        }
        out.push(c);
    }
    if let Some(f) = frac {
        out.push(point);
        out.push_str(f);
    }
    out
}

/// A whole count with thousands separated (`12 345`).
pub(crate) fn count(lang: Lang, n: u64) -> String {
    number(lang, n as f64, 0)
}

/// A share in 0..=1 as a percentage, clamped to that range (`37 %`).
pub(crate) fn percent(lang: Lang, share: f64, decimals: usize) -> String {
    let p = if share.is_finite() {
        share.clamp(0.0, 1.0) * 100.0
    } else {
        0.0
    };
    format!("{}\u{a0}%", number(lang, p, decimals))
}

/// A length as `m:ss` or `h:mm:ss` (the form players show).
pub(crate) fn clock(total_s: f64) -> String {
    let t = total_s.max(0.0).floor() as u64;
    let (h, m, s) = (t / 3600, t % 3600 / 60, t % 60);
    if h > 0 {
        format!("{h}:{m:02}:{s:02}")
    } else {
        format!("{m}:{s:02}")
    }
}

/// A waiting time in the largest sensible units: `3 t 12 min` / `3 h 12 min`,
/// `2 d 4 t` / `2 d 4 h`, `45 min`.
pub(crate) fn waited(lang: Lang, us: i64) -> String {
    let min = us.max(0) / 60_000_000;
    let (d, h, m) = (min / 1440, min % 1440 / 60, min % 60);
    let hour = match lang {
        Lang::Nb => "t",
        Lang::En => "h",
    };
    if d > 0 {
        format!("{d}\u{a0}d {h}\u{a0}{hour}")
    } else if h > 0 {
        format!("{h}\u{a0}{hour} {m}\u{a0}min")
    } else {
        format!("{m}\u{a0}min")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_follow_the_language() {
        assert_eq!(number(Lang::Nb, 0.2, 1), "0,2");
        assert_eq!(number(Lang::Nb, 1234.5, 1), "1234,5");
        assert_eq!(number(Lang::Nb, 12345.0, 0), "12\u{a0}345");
        assert_eq!(number(Lang::En, 12345.25, 2), "12,345.25");
        assert_eq!(number(Lang::Nb, -3.0, 0), "−3");
        assert_eq!(percent(Lang::Nb, 1.11, 0), "100\u{a0}%");
        assert_eq!(percent(Lang::En, 0.375, 1), "37.5\u{a0}%");
        assert_eq!(clock(3725.9), "1:02:05");
        assert_eq!(clock(72.0), "1:12");
        assert_eq!(waited(Lang::Nb, 26 * 3_600_000_000), "1\u{a0}d 2\u{a0}t");
        assert_eq!(waited(Lang::En, 90 * 60_000_000), "1\u{a0}h 30\u{a0}min");
    }

    #[test]
    fn times_are_oslo_times() {
        // 2026-12-07 09:41 UTC is 10:41 in Oslo (winter); 2026-07-01 12:00 UTC is 14:00.
        let dec = 1_796_636_460_000_000;
        assert_eq!(when(Lang::Nb, dec), "07.12.2026 10:41");
        assert_eq!(when(Lang::En, dec), "2026-12-07 10:41");
        let jul = 1_782_907_200_000_000;
        assert_eq!(when(Lang::Nb, jul), "01.07.2026 14:00");
    }
}
