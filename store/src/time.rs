//! Wall-clock helpers: milliseconds since the epoch and ISO 8601 text, without a date crate.

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch (0 if the clock is before 1970).
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// `2026-11-21T23:38:05.084000+00:00`: Python's `datetime.isoformat()` of an aware UTC time,
/// the form the WhiteBalloon app writes in `key_metadata.json`.
pub fn iso_utc_micros(ms: u64) -> String {
    let (date, secs_of_day) = civil(ms / 1000);
    format!(
        "{date}T{:02}:{:02}:{:02}.{:06}+00:00",
        secs_of_day / 3600,
        secs_of_day / 60 % 60,
        secs_of_day % 60,
        (ms % 1000) * 1000
    )
}

/// `2026-11-21T23:38:05Z`.
pub fn iso_utc_seconds(ms: u64) -> String {
    let (date, s) = civil(ms / 1000);
    format!("{date}T{:02}:{:02}:{:02}Z", s / 3600, s / 60 % 60, s % 60)
}

/// (YYYY-MM-DD, seconds of the day) for seconds since the epoch (Howard Hinnant's algorithm).
fn civil(secs: u64) -> (String, u64) {
    let days = (secs / 86_400) as i64;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (format!("{y:04}-{m:02}-{d:02}"), secs % 86_400)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_known_instants() {
        assert_eq!(iso_utc_seconds(0), "1970-01-01T00:00:00Z");
        assert_eq!(iso_utc_seconds(1_762_178_709_000), "2025-11-03T14:05:09Z");
        assert_eq!(
            iso_utc_micros(1_709_210_096_789),
            "2024-02-29T12:34:56.789000+00:00"
        );
    }
}
