//! Calendar dates for messages: seconds since 1970 as a UTC date and time. Pure.

/// `2026-12-03 07:30:00 UTC` for seconds since 1970 (the proleptic Gregorian
/// calendar, days to a date after Howard Hinnant's civil_from_days).
pub fn utc_text(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::utc_text;

    #[test]
    fn utc_dates() {
        for (secs, want) in [
            (0, "1970-01-01 00:00:00"),
            (951_782_400, "2000-02-29 00:00:00"),
            (1_796_280_000, "2026-12-03 06:40:00"),
            (1_796_282_999, "2026-12-03 07:29:59"),
            (4_102_444_799, "2099-12-31 23:59:59"),
        ] {
            assert_eq!(utc_text(secs), format!("{want} UTC"));
        }
    }
}
