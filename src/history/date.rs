//! Dates on the command line (`--since`, `--until`) and in reports, as Matrix timestamps
//! (milliseconds since 1970-01-01 UTC).
//!
//! Accepted: `YYYY-MM-DD` (midnight UTC), `YYYY-MM-DDTHH:MM[:SS[.fff]]` with `T` or a space,
//! then optionally `Z` or an offset `±HH:MM` (UTC when absent), and durations back from now:
//! `90m`, `36h`, `7d`, `2w`. The civil-date arithmetic is H. Hinnant's days-from-civil
//! algorithm; it is small enough that a date crate would add more than it saves.

use std::time::{SystemTime, UNIX_EPOCH};

/// Why a date was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{given:?} is not a date: {reason}")]
pub struct DateError {
    /// What was given (a date is not a secret).
    pub given: String,
    /// What is wrong.
    pub reason: &'static str,
}

/// What a date flag accepts, for hints.
pub const DATE_FORMS: &str = "give YYYY-MM-DD, YYYY-MM-DDTHH:MM[:SS][Z|±HH:MM] (UTC by default), or a duration back from now such as 36h, 7d or 2w";

/// Days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = i64::from((m + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The civil date (year, month, day) of a day count since 1970-01-01.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// `YYYY-MM-DD HH:MM` (UTC) of a Matrix timestamp.
pub fn format_utc_minutes(ms: u64) -> String {
    let secs = ms / 1000;
    let (y, mo, d) = civil_from_days((secs / 86_400) as i64);
    let (h, m) = ((secs % 86_400) / 3600, (secs % 3600) / 60);
    format!("{y:04}-{mo:02}-{d:02} {h:02}:{m:02}")
}

/// `YYYY-MM-DDTHH:MM:SSZ` of a Matrix timestamp.
pub fn format_rfc3339(ms: u64) -> String {
    let secs = ms / 1000;
    let (y, mo, d) = civil_from_days((secs / 86_400) as i64);
    let (h, m, s) = ((secs % 86_400) / 3600, (secs % 3600) / 60, secs % 60);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{m:02}:{s:02}Z")
}

/// Now, in milliseconds since the epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Parse a date flag's value, durations counted back from `now_ms`.
pub fn parse_at(s: &str, now_ms: u64) -> Result<u64, DateError> {
    let err = |reason| DateError {
        given: s.to_string(),
        reason,
    };
    let t = s.trim();
    if let Some(unit) = t.chars().last().filter(|c| "mhdw".contains(*c))
        && t.len() > 1
        && t[..t.len() - 1].bytes().all(|b| b.is_ascii_digit())
    {
        let n: u64 = t[..t.len() - 1]
            .parse()
            .map_err(|_| err("the number is too large"))?;
        let unit_ms: u64 = match unit {
            'm' => 60_000,
            'h' => 3_600_000,
            'd' => 86_400_000,
            _ => 7 * 86_400_000,
        };
        // Longer than the epoch is old: since the beginning.
        return Ok(now_ms.saturating_sub(n.saturating_mul(unit_ms)));
    }
    let b = t.as_bytes();
    let num = |r: std::ops::Range<usize>| -> Result<u32, DateError> {
        let part = t.get(r).ok_or(err("too short"))?;
        if part.is_empty() || !part.bytes().all(|c| c.is_ascii_digit()) {
            return Err(err("expected digits"));
        }
        part.parse().map_err(|_| err("expected digits"))
    };
    if b.len() < 10 || b[4] != b'-' || b[7] != b'-' {
        return Err(err("expected YYYY-MM-DD"));
    }
    let (y, mo, d) = (i64::from(num(0..4)?), num(5..7)?, num(8..10)?);
    if !(1..=12).contains(&mo) {
        return Err(err("the month is not 01-12"));
    }
    if d == 0 || d > days_in_month(y, mo) {
        return Err(err("no such day in that month"));
    }
    let mut secs = days_from_civil(y, mo, d) * 86_400;
    let mut ms_frac = 0u64;
    let mut rest = &t[10..];
    if !rest.is_empty() {
        if !(rest.starts_with('T') || rest.starts_with('t') || rest.starts_with(' ')) {
            return Err(err("expected T or a space before the time"));
        }
        let tb = &rest.as_bytes()[1..];
        let time = &rest[1..];
        if tb.len() < 5 || tb[2] != b':' {
            return Err(err("expected HH:MM after the date"));
        }
        let h: u32 = time[..2].parse().map_err(|_| err("expected HH:MM"))?;
        let mi: u32 = time[3..5].parse().map_err(|_| err("expected HH:MM"))?;
        let mut used = 5;
        let mut sec = 0u32;
        if tb.len() >= 8 && tb[5] == b':' {
            sec = time[6..8].parse().map_err(|_| err("expected :SS"))?;
            used = 8;
            if tb.len() > 8 && tb[8] == b'.' {
                let digits: String = time[9..].chars().take_while(char::is_ascii_digit).collect();
                if digits.is_empty() {
                    return Err(err("expected digits after the decimal point"));
                }
                let mut frac = digits.clone();
                frac.truncate(3);
                while frac.len() < 3 {
                    frac.push('0');
                }
                ms_frac = frac.parse().map_err(|_| err("expected digits"))?;
                used = 9 + digits.len();
            }
        }
        if h > 23 || mi > 59 || sec > 60 {
            return Err(err("the time is out of range"));
        }
        secs += i64::from(h * 3600 + mi * 60 + sec.min(59));
        rest = &time[used..];
        match rest {
            "" | "Z" | "z" => {}
            o if (o.starts_with('+') || o.starts_with('-'))
                && o.len() == 6
                && o.as_bytes()[3] == b':' =>
            {
                let oh: i64 = o[1..3].parse().map_err(|_| err("expected ±HH:MM"))?;
                let om: i64 = o[4..6].parse().map_err(|_| err("expected ±HH:MM"))?;
                if oh > 23 || om > 59 {
                    return Err(err("the offset is out of range"));
                }
                let off = oh * 3600 + om * 60;
                secs -= if o.starts_with('+') { off } else { -off };
            }
            _ => return Err(err("expected Z or ±HH:MM after the time")),
        }
    }
    if secs < 0 {
        return Err(err("before 1970"));
    }
    Ok(secs as u64 * 1000 + ms_frac)
}

/// Parse a date flag's value (durations back from the current time).
pub fn parse(s: &str) -> Result<u64, DateError> {
    parse_at(s, now_ms())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(format_utc_minutes(0), "1970-01-01 00:00");
        assert_eq!(format_utc_minutes(1_700_000_000_000), "2023-11-14 22:13");
        assert_eq!(format_utc_minutes(951_782_400_000), "2000-02-29 00:00");
        assert_eq!(format_rfc3339(1_700_000_000_123), "2023-11-14T22:13:20Z");
    }

    #[test]
    fn dates_and_times() {
        assert_eq!(parse_at("1970-01-01", 0), Ok(0));
        assert_eq!(parse_at("2000-02-29", 0), Ok(951_782_400_000));
        assert_eq!(parse_at("2023-11-14T22:13:20Z", 0), Ok(1_700_000_000_000));
        assert_eq!(parse_at("2023-11-14 22:13:20", 0), Ok(1_700_000_000_000));
        assert_eq!(parse_at("2023-11-14T22:13", 0), Ok(1_699_999_980_000));
        assert_eq!(
            parse_at("2023-11-14T23:13:20+01:00", 0),
            Ok(1_700_000_000_000)
        );
        assert_eq!(
            parse_at("2023-11-14T21:13:20.5-01:00", 0),
            Ok(1_700_000_000_500)
        );
        for ms in [0u64, 951_782_400_000, 1_700_000_000_000, 4_102_444_800_000] {
            assert_eq!(parse_at(&format_rfc3339(ms), 0), Ok(ms));
        }
    }

    #[test]
    fn durations_count_back_from_now() {
        let now = 1_700_000_000_000;
        assert_eq!(parse_at("90m", now), Ok(now - 90 * 60_000));
        assert_eq!(parse_at("36h", now), Ok(now - 36 * 3_600_000));
        assert_eq!(parse_at("7d", now), Ok(now - 7 * 86_400_000));
        assert_eq!(parse_at("2w", now), Ok(now - 14 * 86_400_000));
        assert_eq!(parse_at("99999999999999999w", now), Ok(0));
    }

    #[test]
    fn refusals_say_why() {
        for (s, why) in [
            ("", "expected YYYY-MM-DD"),
            ("yesterday", "expected YYYY-MM-DD"),
            ("2023-13-01", "the month is not 01-12"),
            ("2023-02-29", "no such day in that month"),
            ("2023-11-14T25:00", "the time is out of range"),
            ("2023-11-14T22", "expected HH:MM after the date"),
            (
                "2023-11-14T22:13+0100",
                "expected Z or ±HH:MM after the time",
            ),
            ("2023-11-14X", "expected T or a space before the time"),
            ("1969-12-31", "before 1970"),
            ("2023-1-01", "expected YYYY-MM-DD"),
            ("2023-0a-01", "expected digits"),
        ] {
            let e = parse_at(s, 0).unwrap_err();
            assert_eq!(e.reason, why, "{s}");
            assert!(e.to_string().contains("is not a date"));
        }
    }
}
