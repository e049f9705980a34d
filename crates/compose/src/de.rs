//! Readers for the fields the Compose Specification lets users write in several forms. Each
//! reads the value as JSON first and turns every accepted form into the model's one form;
//! anything else is a serde error, which the loader reports with file, line and key path.
//! Scalars written as strings where a number or a boolean is expected are accepted: after
//! interpolation `${PORT}` is text, and Compose casts it the same way.

use crate::model::{EnvFile, FileRef, Port, ServiceVolume};
use serde::de::{DeserializeOwned, Error};
use serde::{Deserialize, Deserializer};
use serde_json::Value as J;
use std::collections::BTreeMap;

fn type_name(v: &J) -> &'static str {
    match v {
        J::Null => "null",
        J::Bool(_) => "a boolean",
        J::Number(_) => "a number",
        J::String(_) => "a string",
        J::Array(_) => "a list",
        J::Object(_) => "a mapping",
    }
}

fn wrong<E: Error>(v: &J, expected: &str) -> E {
    E::custom(format!("expected {expected}, found {}", type_name(v)))
}

/// A scalar as text (numbers and booleans as YAML writes them).
fn text<E: Error>(v: &J, expected: &str) -> Result<String, E> {
    match v {
        J::String(s) => Ok(s.clone()),
        J::Number(n) => Ok(n.to_string()),
        J::Bool(b) => Ok(b.to_string()),
        _ => Err(wrong(v, expected)),
    }
}

pub(crate) fn string<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    text(&J::deserialize(d)?, "a string")
}

pub(crate) fn opt_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    match J::deserialize(d)? {
        J::Null => Ok(None),
        v => text(&v, "a string").map(Some),
    }
}

fn to_bool<E: Error>(v: &J) -> Result<bool, E> {
    match v {
        J::Bool(b) => Ok(*b),
        J::String(s) => match s.to_ascii_lowercase().as_str() {
            "true" | "yes" | "y" | "on" => Ok(true),
            "false" | "no" | "n" | "off" | "" => Ok(false),
            _ => Err(E::custom(format!("expected a boolean, found {s:?}"))),
        },
        _ => Err(wrong(v, "a boolean")),
    }
}

pub(crate) fn bool<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    match J::deserialize(d)? {
        J::Null => Ok(false),
        v => to_bool(&v),
    }
}

pub(crate) fn opt_bool<'de, D: Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
    match J::deserialize(d)? {
        J::Null => Ok(None),
        v => to_bool(&v).map(Some),
    }
}

fn number<T: std::str::FromStr, E: Error>(v: &J, expected: &str) -> Result<T, E> {
    let s = match v {
        J::Number(n) => n.to_string(),
        J::String(s) => s.trim().to_string(),
        _ => return Err(wrong(v, expected)),
    };
    s.parse()
        .map_err(|_| E::custom(format!("expected {expected}, found {s:?}")))
}

pub(crate) fn u16<'de, D: Deserializer<'de>>(d: D) -> Result<u16, D::Error> {
    number(&J::deserialize(d)?, "a port number")
}

pub(crate) fn opt_u64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    match J::deserialize(d)? {
        J::Null => Ok(None),
        v => number(&v, "a non-negative integer").map(Some),
    }
}

pub(crate) fn opt_i64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    match J::deserialize(d)? {
        J::Null => Ok(None),
        v => number(&v, "an integer").map(Some),
    }
}

pub(crate) fn opt_f64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    match J::deserialize(d)? {
        J::Null => Ok(None),
        v => number(&v, "a number").map(Some),
    }
}

/// Sizes: a number of bytes, or docker's `RAMInBytes` text (`512m`, `1g`).
pub(crate) fn opt_bytes<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    match J::deserialize(d)? {
        J::Null => Ok(None),
        J::Number(n) => n
            .as_u64()
            .map(Some)
            .ok_or_else(|| D::Error::custom(format!("expected a size in bytes, found {n}"))),
        J::String(s) => kiln_units::parse_ram(&s)
            .map(Some)
            .map_err(|e| D::Error::custom(format!("invalid size {s:?}: {e}"))),
        v => Err(wrong(&v, "a size")),
    }
}

/// Durations (`1m30s`), written back in Go's form as Compose prints them.
pub(crate) fn opt_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    match J::deserialize(d)? {
        J::Null => Ok(None),
        J::String(s) => kiln_units::parse_duration(&s, kiln_units::DurationUnits::Go)
            .map(|d| Some(kiln_units::go_duration(d)))
            .map_err(|e| D::Error::custom(format!("invalid duration {s:?}: {e}"))),
        v => Err(wrong(&v, "a duration such as \"30s\"")),
    }
}

/// A mapping whose values may be null (`volumes: {data: }`): null is the default value.
pub(crate) fn nullable_map<'de, D, T>(d: D) -> Result<BTreeMap<String, T>, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    let m: Option<BTreeMap<String, Option<T>>> = Option::deserialize(d)?;
    Ok(m.unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, v.unwrap_or_default()))
        .collect())
}

pub(crate) fn string_or_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    match J::deserialize(d)? {
        J::Null => Ok(Vec::new()),
        J::Array(items) => items.iter().map(|i| text(i, "a string")).collect(),
        v => Ok(vec![text(&v, "a string or a list of strings")?]),
    }
}

/// A list of scalars (`expose: [80, "8000-8010"]`).
pub(crate) fn string_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    match J::deserialize(d)? {
        J::Null => Ok(Vec::new()),
        J::Array(items) => items.iter().map(|i| text(i, "a string")).collect(),
        v => Err(wrong(&v, "a list")),
    }
}

/// `command`/`entrypoint`: a list, or a string split as a shell would split it.
pub(crate) fn command<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<String>>, D::Error> {
    match J::deserialize(d)? {
        J::Null => Ok(None),
        J::Array(items) => items
            .iter()
            .map(|i| text(i, "a string"))
            .collect::<Result<_, _>>()
            .map(Some),
        J::String(s) => split_shell(&s).map(Some).map_err(D::Error::custom),
        v => Err(wrong(&v, "a string or a list of strings")),
    }
}

/// Splits a command line into words as POSIX sh does (quotes and backslashes; no expansion).
pub(crate) fn split_shell(s: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => word.push(c),
                        None => return Err(format!("unterminated quote in {s:?}")),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c @ ('"' | '\\' | '$' | '`')) => word.push(c),
                            Some('\n') => {}
                            Some(c) => {
                                word.push('\\');
                                word.push(c);
                            }
                            None => return Err(format!("unterminated quote in {s:?}")),
                        },
                        Some(c) => word.push(c),
                        None => return Err(format!("unterminated quote in {s:?}")),
                    }
                }
            }
            '\\' => {
                in_word = true;
                match chars.next() {
                    Some('\n') => {}
                    Some(c) => word.push(c),
                    None => word.push('\\'),
                }
            }
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    Ok(words)
}

/// `environment`/`args`: a mapping (values scalars or null) or a list of `K=V` / `K`.
pub(crate) fn map_or_list<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<BTreeMap<String, Option<String>>, D::Error> {
    match J::deserialize(d)? {
        J::Null => Ok(BTreeMap::new()),
        J::Object(m) => m
            .into_iter()
            .map(|(k, v)| match v {
                J::Null => Ok((k, None)),
                v => text(&v, "a string, number or boolean").map(|t| (k, Some(t))),
            })
            .collect(),
        J::Array(items) => items
            .iter()
            .map(|i| {
                let t = text::<D::Error>(i, "a string")?;
                Ok(match t.split_once('=') {
                    Some((k, v)) => (k.to_string(), Some(v.to_string())),
                    None => (t, None),
                })
            })
            .collect(),
        v => Err(wrong(&v, "a mapping or a list")),
    }
}

/// `labels`: as [`map_or_list`], a label without a value is empty.
pub(crate) fn labels<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<BTreeMap<String, String>, D::Error> {
    Ok(map_or_list(d)?
        .into_iter()
        .map(|(k, v)| (k, v.unwrap_or_default()))
        .collect())
}

pub(crate) fn extra_hosts<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    match J::deserialize(d)? {
        J::Null => Ok(Vec::new()),
        J::Object(m) => m
            .into_iter()
            .map(|(k, v)| Ok(format!("{k}={}", text::<D::Error>(&v, "an address")?)))
            .collect(),
        J::Array(items) => items
            .iter()
            .map(|i| {
                let t = text::<D::Error>(i, "a string")?;
                if t.contains('=') {
                    return Ok(t);
                }
                // `host:ip`, where the ip may be IPv6 (`host:::1`).
                t.split_once(':')
                    .map(|(h, ip)| format!("{h}={ip}"))
                    .ok_or_else(|| {
                        D::Error::custom(format!("invalid extra host {t:?}: expected HOST:IP"))
                    })
            })
            .collect(),
        v => Err(wrong(&v, "a mapping or a list")),
    }
}

fn from_value<T: DeserializeOwned, E: Error>(v: J) -> Result<T, E> {
    serde_json::from_value(v).map_err(E::custom)
}

/// A `depends_on` condition: one of the three the spec names.
pub(crate) fn condition<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let c = string(d)?;
    let known = [
        "service_started",
        "service_healthy",
        "service_completed_successfully",
    ];
    if known.contains(&c.as_str()) {
        Ok(c)
    } else {
        Err(D::Error::custom(format!(
            "{c:?} is not one of {}",
            known.join(", ")
        )))
    }
}

/// A mapping that may be null as a whole.
pub(crate) fn opt_map<'de, D, T>(d: D) -> Result<BTreeMap<String, T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Ok(Option::<BTreeMap<String, T>>::deserialize(d)?.unwrap_or_default())
}

pub(crate) fn health_test<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    match J::deserialize(d)? {
        J::Null => Ok(Vec::new()),
        J::String(s) => Ok(vec!["CMD-SHELL".into(), s]),
        J::Array(items) => items.iter().map(|i| text(i, "a string")).collect(),
        v => Err(wrong(&v, "a string or a list")),
    }
}

pub(crate) fn env_files<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<EnvFile>, D::Error> {
    let one = |v: J| -> Result<EnvFile, D::Error> {
        match v {
            J::String(path) => Ok(EnvFile {
                path,
                required: true,
            }),
            v @ J::Object(_) => from_value(v),
            v => Err(wrong(&v, "a path or a mapping")),
        }
    };
    match J::deserialize(d)? {
        J::Null => Ok(Vec::new()),
        J::Array(items) => items.into_iter().map(one).collect(),
        v => Ok(vec![one(v)?]),
    }
}

pub(crate) fn file_refs<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<FileRef>, D::Error> {
    match J::deserialize(d)? {
        J::Null => Ok(Vec::new()),
        J::Array(items) => items
            .into_iter()
            .enumerate()
            .map(|(n, i)| match i {
                J::String(source) => Ok(FileRef {
                    source,
                    ..FileRef::default()
                }),
                v @ J::Object(_) => {
                    from_value(v).map_err(|e: D::Error| D::Error::custom(format!("[{n}]: {e}")))
                }
                v => Err(wrong(&v, "a name or a mapping")),
            })
            .collect(),
        v => Err(wrong(&v, "a list")),
    }
}

pub(crate) fn ports<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Port>, D::Error> {
    let items = match J::deserialize(d)? {
        J::Null => return Ok(Vec::new()),
        J::Array(items) => items,
        v => return Err(wrong(&v, "a list")),
    };
    let mut out = Vec::new();
    for (n, item) in items.into_iter().enumerate() {
        match item {
            J::Object(_) => out.push(
                from_value(item).map_err(|e: D::Error| D::Error::custom(format!("[{n}]: {e}")))?,
            ),
            v @ (J::String(_) | J::Number(_)) => {
                let spec = text::<D::Error>(&v, "a port")?;
                out.extend(
                    crate::short::parse_port(&spec)
                        .map_err(|e| D::Error::custom(format!("[{n}]: {e}")))?,
                );
            }
            v => {
                return Err(D::Error::custom(format!(
                    "[{n}]: {}",
                    wrong::<D::Error>(&v, "a port")
                )))
            }
        }
    }
    Ok(out)
}

pub(crate) fn volumes<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<ServiceVolume>, D::Error> {
    let items = match J::deserialize(d)? {
        J::Null => return Ok(Vec::new()),
        J::Array(items) => items,
        v => return Err(wrong(&v, "a list")),
    };
    items
        .into_iter()
        .enumerate()
        .map(|(n, item)| match item {
            J::String(spec) => crate::short::parse_volume(&spec)
                .map_err(|e| D::Error::custom(format!("[{n}]: {e}"))),
            v @ J::Object(_) => {
                from_value(v).map_err(|e: D::Error| D::Error::custom(format!("[{n}]: {e}")))
            }
            v => Err(D::Error::custom(format!(
                "[{n}]: {}",
                wrong::<D::Error>(&v, "a volume")
            ))),
        })
        .collect()
}
