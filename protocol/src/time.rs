//! ISO 8601 timestamps as the app writes them (`2025-11-03T14:05:09Z`), to and from Unix
//! milliseconds. No clock: callers pass the time in.

/// Formats Unix milliseconds as ISO 8601 UTC with second precision and `Z`, the app's form of
/// `Updated-At`: `2025-11-03T14:05:09Z`. Milliseconds are dropped.
pub fn format_timestamp(ms: u64) -> String {
    let secs = ms / 1000;
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// Formats Unix milliseconds the way Python's `datetime.isoformat()` writes an aware UTC time,
/// as the app does in `key_metadata.json`: `2026-11-21T23:38:05.084000+00:00`.
pub fn format_timestamp_micros(ms: u64) -> String {
    let seconds = format_timestamp(ms);
    let base = seconds.trim_end_matches('Z');
    format!("{base}.{:06}+00:00", (ms % 1000) * 1000)
}

/// Parses the timestamps the app writes into Unix milliseconds: `YYYY-MM-DD`, optionally
/// followed by `T` or a space and `HH:MM[:SS[.fraction]]`, then an optional `+HH:MM`/`-HH:MM`
/// offset, then any number of `Z` (Python's `isoformat() + "Z"` yields `...+00:00Z` for aware
/// datetimes). No offset means UTC. Dates before 1970 are `None`.
pub fn parse_timestamp(text: &str) -> Option<u64> {
    let s = text.trim().trim_end_matches(['Z', 'z']);
    let b = s.as_bytes();
    let mut p = Cursor { b, i: 0 };
    let year = p.digits(4)?;
    p.expect(b'-')?;
    let month = p.digits(2)?;
    p.expect(b'-')?;
    let day = p.digits(2)?;
    if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
        return None;
    }
    let (mut hour, mut minute, mut second, mut ms) = (0, 0, 0, 0);
    if p.eat(b'T') || p.eat(b't') || p.eat(b' ') {
        hour = p.digits(2)?;
        p.expect(b':')?;
        minute = p.digits(2)?;
        if p.eat(b':') {
            second = p.digits(2)?;
            if p.eat(b'.') || p.eat(b',') {
                let start = p.i;
                while p.peek().is_some_and(|c| c.is_ascii_digit()) {
                    p.i += 1;
                }
                let frac = &b[start..p.i];
                if frac.is_empty() {
                    return None;
                }
                for (k, &d) in frac.iter().take(3).enumerate() {
                    ms += u64::from(d - b'0') * [100, 10, 1][k];
                }
            }
        }
    }
    if hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    let mut offset_secs: i64 = 0;
    if let Some(sign) = p.peek().filter(|c| *c == b'+' || *c == b'-') {
        p.i += 1;
        let oh = p.digits(2)?;
        p.eat(b':');
        let om = if p.peek().is_some() { p.digits(2)? } else { 0 };
        if oh > 23 || om > 59 {
            return None;
        }
        let off = i64::try_from(oh * 3600 + om * 60).ok()?;
        offset_secs = if sign == b'+' { off } else { -off };
    }
    if p.peek().is_some() {
        return None;
    }
    let days = days_from_civil(year, month, day);
    let secs =
        days * 86_400 + i64::try_from(hour * 3600 + minute * 60 + second).ok()? - offset_secs;
    let secs = u64::try_from(secs).ok()?;
    secs.checked_mul(1000)?.checked_add(ms)
}

struct Cursor<'a> {
    b: &'a [u8],
    i: usize,
}

impl Cursor<'_> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn eat(&mut self, c: u8) -> bool {
        if self.peek() == Some(c) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    fn expect(&mut self, c: u8) -> Option<()> {
        self.eat(c).then_some(())
    }

    fn digits(&mut self, n: usize) -> Option<u64> {
        let chunk = self.b.get(self.i..self.i + n)?;
        if !chunk.iter().all(u8::is_ascii_digit) {
            return None;
        }
        self.i += n;
        Some(
            chunk
                .iter()
                .fold(0, |acc, d| acc * 10 + u64::from(d - b'0')),
        )
    }
}

fn is_leap(year: u64) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

fn days_in_month(year: u64, month: u64) -> u64 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm); negative
/// before 1970.
fn days_from_civil(year: u64, month: u64, day: u64) -> i64 {
    // year <= 9999 and month/day are validated, so these conversions cannot fail.
    let y = i64::try_from(year).unwrap_or(0) - i64::from(month <= 2);
    let m = i64::try_from(month).unwrap_or(1);
    let d = i64::try_from(day).unwrap_or(1);
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of a day count since 1970-01-01 (inverse of [`days_from_civil`]), for any `u64`
/// day count a `u64` of milliseconds can reach.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn app_timestamps() {
        // `date -u -d 2025-11-03T14:05:09Z +%s` = 1762178709
        assert_eq!(format_timestamp(1_762_178_709_000), "2025-11-03T14:05:09Z");
        assert_eq!(format_timestamp(1_762_178_709_999), "2025-11-03T14:05:09Z");
        assert_eq!(format_timestamp(0), "1970-01-01T00:00:00Z");
        assert_eq!(
            format_timestamp_micros(1_709_210_096_789),
            "2024-02-29T12:34:56.789000+00:00"
        );
        for (text, ms) in [
            ("2025-11-03T14:05:09Z", 1_762_178_709_000),
            ("2025-11-03T14:05:09", 1_762_178_709_000),
            ("2025-11-03T14:05:09.084824Z", 1_762_178_709_084),
            ("2025-11-03T14:05:09.5", 1_762_178_709_500),
            ("2025-11-03 14:05:09+00:00Z", 1_762_178_709_000),
            ("2025-11-03T15:05:09+01:00", 1_762_178_709_000),
            ("2025-11-03T14:05", 1_762_178_700_000),
            ("2025-11-03", 1_762_128_000_000),
            ("2000-02-29T00:00:00Z", 951_782_400_000),
        ] {
            assert_eq!(parse_timestamp(text), Some(ms), "{text}");
        }
        for bad in [
            "",
            "Z",
            "2025-13-01",
            "2025-02-29",
            "2025-11-03T24:00:00",
            "2025-11-03T14:05:09.",
            "1969-12-31T23:59:59Z",
            "2025-11-03T14:05:09 junk",
            "20251103",
        ] {
            assert_eq!(parse_timestamp(bad), None, "{bad}");
        }
    }

    proptest! {
        #[test]
        fn second_precision_round_trip(secs in 0u64..253_402_300_800) {
            let ms = secs * 1000;
            prop_assert_eq!(parse_timestamp(&format_timestamp(ms)), Some(ms));
        }

        #[test]
        fn any_ms_formats(ms in any::<u64>()) {
            let _ = format_timestamp(ms);
        }

        #[test]
        fn any_text_parses_without_panic(s in ".{0,40}") {
            let _ = parse_timestamp(&s);
        }
    }
}
