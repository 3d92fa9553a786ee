//! The `Date` header in RFC 2822 form, as Duo's clients write it
//! (`Tue, 21 Aug 2012 17:29:18 -0000`), and a parser for what a server may receive.
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const DAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// `t` in UTC as `Tue, 21 Aug 2012 17:29:18 -0000` (times before 1970 print as 1970).
pub fn rfc2822(t: SystemTime) -> String {
    let secs = t
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    let days = i64::try_from(secs / 86_400).unwrap_or_default();
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    // 1970-01-01 was a Thursday (index 3 from Monday).
    let wd = usize::try_from((days + 3).rem_euclid(7)).unwrap_or_default();
    format!(
        "{}, {:02} {} {:04} {:02}:{:02}:{:02} -0000",
        DAYS[wd],
        d,
        MONTHS[usize::from(m - 1)],
        y,
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Parses `[Day, ]DD Mon YYYY HH:MM[:SS] ZONE` where ZONE is `+hhmm`, `-hhmm`, `GMT`, `UT`
/// or `Z`. `None` for anything else.
pub fn parse_rfc2822(s: &str) -> Option<SystemTime> {
    let s = s.trim();
    let s = match s.split_once(',') {
        Some((day, rest)) if DAYS.contains(&day.trim()) => rest,
        Some(_) => return None,
        None => s,
    };
    let mut it = s.split_whitespace();
    let day: u32 = it.next()?.parse().ok()?;
    let mon = it.next()?;
    let month = MONTHS.iter().position(|m| *m == mon)?;
    let year: i64 = it.next()?.parse().ok()?;
    let time = it.next()?;
    let zone = it.next()?;
    if it.next().is_some() {
        return None;
    }
    let mut hms = time.split(':');
    let h: i64 = hms.next()?.parse().ok()?;
    let mi: i64 = hms.next()?.parse().ok()?;
    let se: i64 = match hms.next() {
        Some(x) => x.parse().ok()?,
        None => 0,
    };
    if hms.next().is_some() || h > 23 || mi > 59 || se > 60 || !(1..=31).contains(&day) {
        return None;
    }
    let offset_secs: i64 = match zone {
        "GMT" | "UT" | "UTC" | "Z" => 0,
        z if z.len() == 5 && (z.starts_with('+') || z.starts_with('-')) => {
            let n: i64 = z[1..].parse().ok()?;
            let off = (n / 100) * 3600 + (n % 100) * 60;
            if z.starts_with('-') { -off } else { off }
        }
        _ => return None,
    };
    let month = u8::try_from(month + 1).ok()?;
    let days = days_from_civil(year, month, u8::try_from(day).ok()?);
    let secs = days * 86_400 + h * 3600 + mi * 60 + se - offset_secs;
    Some(UNIX_EPOCH + Duration::from_secs(u64::try_from(secs).ok()?))
}

/// Days since 1970-01-01 → (year, month 1..=12, day 1..=31), proleptic Gregorian
/// (H. Hinnant's civil-from-days algorithm).
fn civil_from_days(z: i64) -> (i64, u8, u8) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (
        y,
        u8::try_from(m).unwrap_or(1),
        u8::try_from(d).unwrap_or(1),
    )
}

/// Inverse of [`civil_from_days`].
fn days_from_civil(y: i64, m: u8, d: u8) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(m);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_like_python_formatdate() {
        let t = UNIX_EPOCH + Duration::from_secs(1_345_570_158);
        assert_eq!(rfc2822(t), "Tue, 21 Aug 2012 17:29:18 -0000");
        assert_eq!(rfc2822(UNIX_EPOCH), "Thu, 01 Jan 1970 00:00:00 -0000");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(rfc2822(leap), "Tue, 29 Feb 2000 00:00:00 -0000");
    }

    #[test]
    fn parses_back_with_zones() {
        let t = UNIX_EPOCH + Duration::from_secs(1_345_570_158);
        assert_eq!(parse_rfc2822(&rfc2822(t)), Some(t));
        assert_eq!(parse_rfc2822("Tue, 21 Aug 2012 17:29:18 GMT"), Some(t));
        assert_eq!(parse_rfc2822("Tue, 21 Aug 2012 11:29:18 -0600"), Some(t));
        assert_eq!(parse_rfc2822("21 Aug 2012 19:29:18 +0200"), Some(t));
        for bad in [
            "",
            "yesterday",
            "Tue, 21 Foo 2012 17:29:18 -0000",
            "Tue, 21 Aug 2012 25:00:00 GMT",
        ] {
            assert_eq!(parse_rfc2822(bad), None, "{bad}");
        }
    }
}
