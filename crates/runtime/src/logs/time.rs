//! `logs --since`/`--until` values, read as docker's `GetTimestamp` reads them: a Go duration
//! before now (`10m`, `1h30m`), a Unix timestamp (`1700000000`, `1700000000.5`), or an RFC
//! 3339 date or time (`2024-05-01`, `2024-05-01T12:00`, `2024-05-01T12:00:00.5Z`,
//! `2024-05-01T12:00:00+02:00`; without a zone, local time).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A `--since`/`--until` value that is neither a time nor a duration.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("failed to parse value as time or duration: \"{0}\"")]
pub struct LogTimeError(pub String);

/// The time `value` names, durations counted back from `now`.
pub fn parse_log_time(value: &str, now: SystemTime) -> Result<SystemTime, LogTimeError> {
    let bad = || LogTimeError(value.to_string());
    if value != "0" {
        if let Ok(d) = kiln_units::parse_duration(value, kiln_units::DurationUnits::Go) {
            return Ok(now.checked_sub(d).unwrap_or(UNIX_EPOCH));
        }
    }
    if value.contains('-') {
        return parse_date_time(value).ok_or_else(bad);
    }
    // SECONDS[.NANOSECONDS]
    let (secs, frac) = value.split_once('.').unwrap_or((value, ""));
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(secs) || !(frac.is_empty() || digits(frac)) || frac.len() > 9 {
        return Err(bad());
    }
    let secs: u64 = secs.parse().map_err(|_| bad())?;
    let nanos: u32 = if frac.is_empty() {
        0
    } else {
        format!("{frac:0<9}").parse().map_err(|_| bad())?
    };
    UNIX_EPOCH
        .checked_add(Duration::new(secs, nanos))
        .ok_or_else(bad)
}

/// Takes `n` ASCII digits off the front of `s`.
fn number(s: &mut &str, n: usize) -> Option<i64> {
    let head = s.get(..n)?;
    if !head.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    *s = &s[n..];
    head.parse().ok()
}

fn expect(s: &mut &str, c: char) -> Option<()> {
    *s = s.strip_prefix(c)?;
    Some(())
}

/// `YYYY-MM-DD[THH[:MM[:SS[.F]]]][Z|±HH:MM]`.
fn parse_date_time(value: &str) -> Option<SystemTime> {
    let mut s = value;
    let year = number(&mut s, 4)?;
    expect(&mut s, '-')?;
    let month = number(&mut s, 2)?;
    expect(&mut s, '-')?;
    let day = number(&mut s, 2)?;
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return None;
    }
    let (mut hour, mut minute, mut second, mut nanos) = (0, 0, 0, 0u32);
    if s.starts_with(['T', 't']) {
        s = &s[1..];
        hour = number(&mut s, 2)?;
        if expect(&mut s, ':').is_some() {
            minute = number(&mut s, 2)?;
            if expect(&mut s, ':').is_some() {
                second = number(&mut s, 2)?;
                if expect(&mut s, '.').is_some() {
                    let n = s.bytes().take_while(u8::is_ascii_digit).count();
                    if n == 0 || n > 9 {
                        return None;
                    }
                    nanos = format!("{:0<9}", &s[..n]).parse().ok()?;
                    s = &s[n..];
                }
            }
        }
        if hour > 23 || minute > 59 || second > 60 {
            return None;
        }
    }
    let offset = match s {
        "" => None,
        "Z" | "z" => Some(0),
        _ => {
            let sign = match s.as_bytes()[0] {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            s = &s[1..];
            let h = number(&mut s, 2)?;
            expect(&mut s, ':')?;
            let m = number(&mut s, 2)?;
            if !s.is_empty() || h > 23 || m > 59 {
                return None;
            }
            Some(sign * (h * 3600 + m * 60))
        }
    };
    let secs = match offset {
        Some(offset) => {
            days_from_civil(year, month, day) * 86400 + hour * 3600 + minute * 60 + second - offset
        }
        None => local_time(year, month, day, hour, minute, second)?,
    };
    let base = if secs >= 0 {
        UNIX_EPOCH.checked_add(Duration::from_secs(secs as u64))?
    } else {
        UNIX_EPOCH.checked_sub(Duration::from_secs(secs.unsigned_abs()))?
    };
    base.checked_add(Duration::from_nanos(u64::from(nanos)))
}

/// Days from 1970-01-01 to the date (proleptic Gregorian; Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Seconds since the epoch of a time in the local time zone (`mktime`).
fn local_time(y: i64, mo: i64, d: i64, h: i64, mi: i64, s: i64) -> Option<i64> {
    // SAFETY: a zeroed `tm` is a valid value; mktime only reads and normalises it.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    tm.tm_year = i32::try_from(y - 1900).ok()?;
    tm.tm_mon = (mo - 1) as i32;
    tm.tm_mday = d as i32;
    tm.tm_hour = h as i32;
    tm.tm_min = mi as i32;
    tm.tm_sec = s as i32;
    tm.tm_isdst = -1;
    // SAFETY: `tm` is a valid, initialised struct.
    let t = unsafe { libc::mktime(&raw mut tm) };
    (t != -1).then_some(t)
}
