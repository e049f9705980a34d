//! `--format`/`-f` as docker's commands take it, through [`kiln_template`]: listings
//! (`ps`, `images`, `history`, `volume ls`, `stats`) render rows under docker's headers;
//! `inspect` runs the template once per object.

use crate::util::Failure;
use kiln_template::{Format, Template};
use serde_json::Value;

/// A listing's `--format`: `table [TEMPLATE]`, `json` or a template (exit 1 on a parse
/// error, as docker's listings).
pub(crate) fn listing(format: &str, default: &str) -> Result<Format, Failure> {
    Format::new(format, default).map_err(|e| Failure::new(1, e.to_string()))
}

/// Prints `rows` in `format` under `headers` (field → docker's column title).
pub(crate) fn print_rows(
    format: &Format,
    headers: &[(&str, &str)],
    rows: &[Value],
) -> Result<u8, Failure> {
    let text = format
        .render(headers, rows)
        .map_err(|e| Failure::new(1, e.to_string()))?;
    print!("{text}");
    Ok(0)
}

/// `inspect -f`: `None` for docker's default (the JSON array; also for `-f json`), else
/// the parsed template (exit 64 on a parse error, as `docker inspect`).
pub(crate) fn inspect_template(format: Option<&str>) -> Result<Option<Template>, Failure> {
    match format {
        None | Some("" | "json") => Ok(None),
        Some(f) => Template::parse(f)
            .map(Some)
            .map_err(|e| Failure::new(64, e.to_string())),
    }
}

/// Prints each object through `template` (one line each), or as docker's JSON array;
/// a template that fails on an object is an error for that object (exit 1), as docker's.
pub(crate) fn print_inspected(template: Option<&Template>, found: Vec<Value>) -> u8 {
    let Some(t) = template else {
        if !found.is_empty() {
            let out = Value::Array(found);
            println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
        }
        return 0;
    };
    let mut code = 0;
    for v in &found {
        match t.execute(v) {
            Ok(text) => println!("{text}"),
            Err(e) => {
                Failure::new(1, format!("template parsing error: {e}")).print();
                code = 1;
            }
        }
    }
    code
}

/// Go's `time.Time` as docker's listings print it (`.CreatedAt`): `2026-12-04 20:12:27
/// +0000 UTC`.
pub(crate) fn created_at(secs: i64) -> String {
    crate::util::rfc3339(secs)
        .replace('T', " ")
        .replace('Z', " +0000 UTC")
}

/// How long ago a Unix time (seconds) was, as docker's CREATED columns: `2 hours ago`.
pub(crate) fn ago(secs: i64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let then = u64::try_from(secs).unwrap_or(0);
    let d = std::time::Duration::from_secs(now.saturating_sub(then));
    format!("{} ago", kiln_units::human_duration(d))
}

#[cfg(test)]
mod tests {
    #[test]
    fn created_at_is_gos_time_string() {
        assert_eq!(super::created_at(0), "1970-01-01 00:00:00 +0000 UTC");
    }
}
