//! RFC 3339 timestamps in UTC: pgmoat's one formatter and parser. The store writes one
//! format per record (`2026-12-01T10:37:30.123456Z`, on the audit hot path), approvals
//! and session messages whole seconds ([`format_seconds`]), and the CLI filters read a
//! few more; kept by hand (two small, tested conversions) rather than a date crate.

use std::time::{SystemTime, UNIX_EPOCH};

/// Microseconds since the Unix epoch.
pub fn now_micros() -> i64 {
    match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_micros() as i64,
        Err(e) => -(e.duration().as_micros() as i64),
    }
}

/// Days since 1970-01-01 -> (year, month, day); Howard Hinnant's civil_from_days.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// (year, month, day) -> days since 1970-01-01; the inverse of the above.
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = m as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `2026-12-01T10:37:30.123456Z`
pub fn format_micros(us: i64) -> String {
    let secs = us.div_euclid(1_000_000);
    let frac = us.rem_euclid(1_000_000);
    let (y, mo, d) = civil_from_days(secs.div_euclid(86_400));
    let sod = secs.rem_euclid(86_400);
    format!(
        "{y:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}.{frac:06}Z",
        sod / 3600,
        (sod / 60) % 60,
        sod % 60
    )
}

/// `2026-12-01T10:37:30Z`: whole seconds (times before 1970 read as the epoch).
pub fn format_seconds(t: SystemTime) -> String {
    let secs = t
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs().min(i64::MAX as u64 / 1_000_000) as i64)
        .unwrap_or(0);
    let full = format_micros(secs * 1_000_000);
    format!("{}Z", full.get(..19).unwrap_or(&full))
}

/// serde's `serialize_with` for a time written as [`format_seconds`] does.
pub fn serialize_seconds<S: serde::Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format_seconds(*t))
}

/// Read `YYYY-MM-DD`, `YYYY-MM-DDTHH:MM[:SS[.frac]]` with `Z` or `±HH:MM` (a space may
/// stand for the `T`; a missing zone means UTC). Returns microseconds since the epoch.
pub fn parse_rfc3339(s: &str) -> Result<i64, String> {
    let bad = || format!("{s:?} is not an RFC 3339 time (like 2026-12-01T10:00:00Z)");
    let b = s.trim().as_bytes();
    let num = |r: std::ops::Range<usize>| -> Result<i64, String> {
        let part = b.get(r).ok_or_else(bad)?;
        if part.is_empty() || !part.iter().all(u8::is_ascii_digit) {
            return Err(bad());
        }
        std::str::from_utf8(part)
            .ok()
            .and_then(|p| p.parse().ok())
            .ok_or_else(bad)
    };
    if b.len() < 10 || b[4] != b'-' || b[7] != b'-' {
        return Err(bad());
    }
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) {
        return Err(bad());
    }
    let mut us = days_from_civil(y, mo as u32, d as u32) * 86_400_000_000;
    let mut i = 10;
    if i < b.len() {
        if !matches!(b[i], b'T' | b't' | b' ') || b.len() < i + 6 || b[i + 3] != b':' {
            return Err(bad());
        }
        let (h, mi) = (num(i + 1..i + 3)?, num(i + 4..i + 6)?);
        if h > 23 || mi > 59 {
            return Err(bad());
        }
        us += (h * 3600 + mi * 60) * 1_000_000;
        i += 6;
        if b.get(i) == Some(&b':') {
            let sec = num(i + 1..i + 3)?;
            if sec > 60 {
                return Err(bad());
            }
            us += sec * 1_000_000;
            i += 3;
            if b.get(i) == Some(&b'.') {
                let start = i + 1;
                let mut j = start;
                while j < b.len() && b[j].is_ascii_digit() {
                    j += 1;
                }
                if j == start {
                    return Err(bad());
                }
                let digits = &s.trim()[start..j.min(start + 6)];
                let scale = 10i64.pow(6 - digits.len() as u32);
                us += digits.parse::<i64>().map_err(|_| bad())? * scale;
                i = j;
            }
        }
        match b.get(i) {
            None | Some(b'Z') | Some(b'z') if b.len() <= i + 1 => {}
            Some(&sign @ (b'+' | b'-')) if b.len() == i + 6 && b[i + 3] == b':' => {
                let off = (num(i + 1..i + 3)? * 3600 + num(i + 4..i + 6)? * 60) * 1_000_000;
                us += if sign == b'+' { -off } else { off };
            }
            _ => return Err(bad()),
        }
    }
    Ok(us)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_known_values() {
        assert_eq!(format_micros(0), "1970-01-01T00:00:00.000000Z");
        // 2026-12-01T10:37:30Z, checked with `date -u -d @1796121450`.
        let t = 1_796_121_450_000_000 + 123_456;
        assert_eq!(format_micros(t), "2026-12-01T10:37:30.123456Z");
        assert_eq!(parse_rfc3339("2026-12-01T10:37:30.123456Z"), Ok(t));
        assert_eq!(parse_rfc3339("2026-12-01T11:37:30.123456+01:00"), Ok(t));
        assert_eq!(parse_rfc3339("2026-12-01"), Ok(1_796_083_200_000_000));
        assert_eq!(
            parse_rfc3339("2024-02-29 00:00Z"),
            Ok(1_709_164_800_000_000)
        );
        for us in [-86_400_000_001, 951_782_400_000_000, 4_102_444_799_999_999] {
            assert_eq!(parse_rfc3339(&format_micros(us)), Ok(us));
        }
        for bad in [
            "",
            "yesterday",
            "2026-13-01",
            "2026-12-01T25:00Z",
            "2026-12-01T10:00Q",
        ] {
            assert!(parse_rfc3339(bad).is_err(), "{bad}");
        }
    }
}
