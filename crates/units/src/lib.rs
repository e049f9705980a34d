//! Sizes and durations as docker's command line and the Dockerfile write them.
//!
//! One module for the units every layer of kiln parses or prints, so that `-m 512m`,
//! `RUN --mount=type=tmpfs,size=64k`, `--keep-storage 10GB`, `HEALTHCHECK --interval=30s` and
//! `--filter until=24h` all read numbers the same way docker does. Docker itself has two size
//! parsers with different units (go-units `RAMInBytes`, binary, and `FromHumanSize`, decimal),
//! so this crate has both, named after them; everything else is one function.
//!
//! No dependencies and no I/O: the frontend, the CLI and the libraries all use it.

use std::fmt;
use std::time::Duration;

/// Why a size or duration was refused; the message names the input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UnitError {
    /// Not a size at all (`ten`, `1x`).
    Size(String),
    /// Not a duration (`soon`, `5 parsecs`).
    Duration(String),
}

impl fmt::Display for UnitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UnitError::Size(s) => write!(f, "invalid size: '{s}'"),
            UnitError::Duration(s) => write!(f, "invalid duration: '{s}'"),
        }
    }
}

impl std::error::Error for UnitError {}

/// Splits `1.5gib` into `(1.5, "gib")`; the unit is lower-cased and trimmed.
fn split_number(s: &str) -> Option<(f64, String)> {
    let t = s.trim();
    let n = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let num: f64 = t[..n].parse().ok()?;
    Some((num, t[n..].trim().to_ascii_lowercase()))
}

fn to_bytes(s: &str, num: f64, mult: f64) -> Result<u64, UnitError> {
    let v = num * mult;
    if v.is_finite() && v >= 0.0 && v < u64::MAX as f64 {
        // Truncation is docker's rounding too (go-units converts with int64()).
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        Ok(v as u64)
    } else {
        Err(UnitError::Size(s.to_string()))
    }
}

/// go-units `RAMInBytes`: `1024`, `64k`, `1m`, `2g`, `1.5gb`, `1gib`: every unit is a power of
/// 1024 (memory limits, tmpfs sizes).
pub fn parse_ram(s: &str) -> Result<u64, UnitError> {
    let bad = || UnitError::Size(s.to_string());
    let (num, unit) = split_number(s).ok_or_else(bad)?;
    let k = 1024f64;
    let mult = match unit.as_str() {
        "" | "b" => 1.0,
        "k" | "kb" | "kib" => k,
        "m" | "mb" | "mib" => k * k,
        "g" | "gb" | "gib" => k.powi(3),
        "t" | "tb" | "tib" => k.powi(4),
        "p" | "pb" | "pib" => k.powi(5),
        _ => return Err(bad()),
    };
    to_bytes(s, num, mult)
}

/// go-units `FromHumanSize`: `10GB`, `512MB`, `100kb`, `4096` are powers of 1000; the binary
/// spellings `KiB`, `MiB`, … are powers of 1024 (disk sizes).
pub fn parse_human(s: &str) -> Result<u64, UnitError> {
    let bad = || UnitError::Size(s.to_string());
    let (num, unit) = split_number(s).ok_or_else(bad)?;
    let k = 1024f64;
    let mult = match unit.as_str() {
        "" | "b" => 1.0,
        "k" | "kb" => 1e3,
        "m" | "mb" => 1e6,
        "g" | "gb" => 1e9,
        "t" | "tb" => 1e12,
        "p" | "pb" => 1e15,
        "ki" | "kib" => k,
        "mi" | "mib" => k * k,
        "gi" | "gib" => k.powi(3),
        "ti" | "tib" => k.powi(4),
        "pi" | "pib" => k.powi(5),
        _ => return Err(bad()),
    };
    to_bytes(s, num, mult)
}

/// go-units `HumanSize`: decimal units with four significant digits (`1.093GB`, `2.5kB`,
/// `17B`), as `docker system df` and the prune commands print sizes.
pub fn human(n: u64) -> String {
    human_precision(n, 4)
}

/// go-units `HumanSizeWithPrecision`: decimal units with `digits` significant digits (Go's
/// `%.*g`); `docker images` and `docker history` use 3 (`452MB`, `12.3MB`).
pub fn human_precision(n: u64, digits: usize) -> String {
    scaled(
        n,
        1000.0,
        &["B", "kB", "MB", "GB", "TB", "PB", "EB"],
        digits,
    )
}

/// `n` divided by `base` until below it, printed with `digits` significant digits (trailing
/// zeros dropped, as Go's `%g`) and the unit of that power.
fn scaled(n: u64, base: f64, units: &[&str], digits: usize) -> String {
    let mut v = n as f64;
    let mut i = 0;
    while v >= base && i + 1 < units.len() {
        v /= base;
        i += 1;
    }
    let int_digits = if v >= 1.0 {
        v.log10().floor() as usize + 1
    } else {
        1
    };
    let decimals = digits.saturating_sub(int_digits);
    let mut s = format!("{v:.decimals$}");
    if s.contains('.') {
        s = s.trim_end_matches('0').trim_end_matches('.').to_string();
    }
    format!("{s}{}", units[i])
}

/// go-units `HumanDuration`, as `docker ps` prints ages (`Up 5 hours`, `2 days ago`).
pub fn human_duration(d: Duration) -> String {
    let seconds = d.as_secs();
    let minutes = seconds / 60;
    let hours = (d.as_secs_f64() / 3600.0 + 0.5) as u64;
    match () {
        () if seconds < 1 => "Less than a second".into(),
        () if seconds == 1 => "1 second".into(),
        () if seconds < 60 => format!("{seconds} seconds"),
        () if minutes == 1 => "About a minute".into(),
        () if minutes < 60 => format!("{minutes} minutes"),
        () if hours == 1 => "About an hour".into(),
        () if hours < 48 => format!("{hours} hours"),
        () if hours < 24 * 7 * 2 => format!("{} days", hours / 24),
        () if hours < 24 * 30 * 2 => format!("{} weeks", hours / 24 / 7),
        () if hours < 24 * 365 * 2 => format!("{} months", hours / 24 / 30),
        () => format!("{} years", seconds / 3600 / 24 / 365),
    }
}

/// Go's `time.Duration.String`: `200ms`, `30s`, `1m30s`, `1.5s`, `1h0m0s`, as docker prints
/// durations in messages (`Health check exceeded timeout (30s)`).
pub fn go_duration(d: Duration) -> String {
    // `n` in units of `10^digits` as a decimal with its trailing zeros dropped.
    fn decimal(n: u128, digits: u32) -> String {
        let unit = 10u128.pow(digits);
        let frac = n % unit;
        if frac == 0 {
            return (n / unit).to_string();
        }
        let frac = format!("{frac:0width$}", width = digits as usize);
        format!("{}.{}", n / unit, frac.trim_end_matches('0'))
    }
    let ns = d.as_nanos();
    match ns {
        0 => "0s".into(),
        n if n < 1_000 => format!("{n}ns"),
        n if n < 1_000_000 => format!("{}µs", decimal(n, 3)),
        n if n < 1_000_000_000 => format!("{}ms", decimal(n, 6)),
        n => {
            let secs = n / 1_000_000_000;
            let (h, m) = (secs / 3600, secs / 60 % 60);
            let s = decimal(n % 60_000_000_000, 9);
            match (h, m) {
                (0, 0) => format!("{s}s"),
                (0, m) => format!("{m}m{s}s"),
                (h, m) => format!("{h}h{m}m{s}s"),
            }
        }
    }
}

/// go-units `BytesSize`: binary units with four significant digits (`1.59MiB`,
/// `7.775GiB`), as `docker stats` prints memory.
pub fn human_binary(n: u64) -> String {
    scaled(
        n,
        1024.0,
        &["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"],
        4,
    )
}

/// Which suffixes a duration may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DurationUnits {
    /// Go's `time.ParseDuration`: `ns`, `us`/`µs`, `ms`, `s`, `m`, `h` (Dockerfile flags such as
    /// `HEALTHCHECK --interval`). A bare `0` is allowed, other bare numbers are not.
    Go,
    /// Filters (`until=`): `s`, `m`, `h`, `d`, `w`; a bare number is seconds.
    Filter,
}

/// Parses `30s`, `1m30s`, `500ms`, `1.5h` (and `7d`, `2w` with [`DurationUnits::Filter`]).
pub fn parse_duration(s: &str, units: DurationUnits) -> Result<Duration, UnitError> {
    let bad = || UnitError::Duration(s.to_string());
    let t = s.trim();
    if t.is_empty() {
        return Err(bad());
    }
    if t == "0" {
        return Ok(Duration::ZERO);
    }
    let mut rest = t;
    let mut secs = 0f64;
    while !rest.is_empty() {
        let n = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if n == 0 {
            return Err(bad());
        }
        let num: f64 = rest[..n].parse().map_err(|_| bad())?;
        rest = &rest[n..];
        let u = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let mult = match (units, &rest[..u]) {
            (DurationUnits::Go, "ns") => 1e-9,
            (DurationUnits::Go, "us" | "µs") => 1e-6,
            (DurationUnits::Go, "ms") => 1e-3,
            (DurationUnits::Filter, "") => 1.0,
            (_, "s") => 1.0,
            (_, "m") => 60.0,
            (_, "h") => 3600.0,
            (DurationUnits::Filter, "d") => 86400.0,
            (DurationUnits::Filter, "w") => 7.0 * 86400.0,
            _ => return Err(bad()),
        };
        rest = &rest[u..];
        secs += num * mult;
    }
    Duration::try_from_secs_f64(secs).map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_print_as_gos() {
        let ms = Duration::from_millis;
        assert_eq!(go_duration(Duration::ZERO), "0s");
        assert_eq!(go_duration(Duration::from_nanos(5)), "5ns");
        assert_eq!(go_duration(Duration::from_nanos(1_500)), "1.5µs");
        assert_eq!(go_duration(ms(200)), "200ms");
        assert_eq!(go_duration(ms(1_500)), "1.5s");
        assert_eq!(go_duration(ms(30_000)), "30s");
        assert_eq!(go_duration(ms(90_000)), "1m30s");
        assert_eq!(go_duration(ms(3_600_000)), "1h0m0s");
        assert_eq!(go_duration(ms(3_723_250)), "1h2m3.25s");
    }

    #[test]
    fn ram_sizes_are_binary() {
        assert_eq!(parse_ram("1024"), Ok(1024));
        assert_eq!(parse_ram("64k"), Ok(65536));
        assert_eq!(parse_ram("2GB"), Ok(2 << 30));
        assert_eq!(parse_ram("1.5g"), Ok(1_610_612_736));
        assert_eq!(parse_ram("512MiB"), Ok(512 << 20));
        assert!(parse_ram("x").is_err());
        assert!(parse_ram("1q").is_err());
        assert!(parse_ram("").is_err());
    }

    #[test]
    fn human_sizes_are_decimal_unless_binary_spelled() {
        assert_eq!(parse_human("10GB"), Ok(10_000_000_000));
        assert_eq!(parse_human("1.5GiB"), Ok(1_610_612_736));
        assert_eq!(parse_human("512mb"), Ok(512_000_000));
        assert_eq!(parse_human("4096"), Ok(4096));
        assert!(parse_human("ten").is_err());
        assert!(parse_human("1e400").is_err());
    }

    #[test]
    fn human_prints_like_go_units() {
        assert_eq!(human(17), "17B");
        assert_eq!(human(2_500), "2.5kB");
        assert_eq!(human(451_600_000), "451.6MB");
        assert_eq!(human(1_000_000), "1MB");
        assert_eq!(human(1_093_000_000), "1.093GB");
        assert_eq!(human(12_345_678), "12.35MB");
        assert_eq!(human_precision(451_600_000, 3), "452MB");
        assert_eq!(human_precision(12_345_678, 3), "12.3MB");
        assert_eq!(human_precision(5_540_000, 3), "5.54MB");
        assert_eq!(human_precision(999, 3), "999B");
    }

    #[test]
    fn binary_sizes_print_like_bytes_size() {
        assert_eq!(human_binary(0), "0B");
        assert_eq!(human_binary(1023), "1023B");
        assert_eq!(human_binary(1_667_235), "1.59MiB");
        assert_eq!(human_binary(8_348_000_000), "7.775GiB");
        assert_eq!(human_binary(1024 * 1024), "1MiB");
    }

    #[test]
    fn go_durations() {
        let go = |s| parse_duration(s, DurationUnits::Go);
        assert_eq!(go("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(go("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(go("0"), Ok(Duration::ZERO));
        assert!(go("x").is_err());
        assert!(go("30").is_err());
        assert!(go("1d").is_err());
    }

    #[test]
    fn filter_durations() {
        let f = |s| parse_duration(s, DurationUnits::Filter);
        assert_eq!(f("24h"), Ok(Duration::from_hours(24)));
        assert_eq!(f("1h30m"), Ok(Duration::from_mins(90)));
        assert_eq!(f("7d"), Ok(Duration::from_hours(168)));
        assert_eq!(f("45"), Ok(Duration::from_secs(45)));
        assert!(f("soon").is_err());
        assert!(f("1ms").is_err());
    }

    #[test]
    fn durations_read_like_docker() {
        let s = Duration::from_secs;
        assert_eq!(
            human_duration(Duration::from_millis(300)),
            "Less than a second"
        );
        assert_eq!(human_duration(s(1)), "1 second");
        assert_eq!(human_duration(s(42)), "42 seconds");
        assert_eq!(human_duration(s(90)), "About a minute");
        assert_eq!(human_duration(s(600)), "10 minutes");
        assert_eq!(human_duration(s(3600)), "About an hour");
        assert_eq!(human_duration(s(5 * 3600)), "5 hours");
        assert_eq!(human_duration(s(3 * 86400)), "3 days");
    }
}
