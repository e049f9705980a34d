//! `RUN --mount=…` parsing with BuildKit's keys, defaults and messages
//! (`dockerfile/instructions/commands_runmount.go`).
//!
//! [`parse_mount`] turns one flag value into a [`MountSpec`] whose `from` is still a name;
//! the conversion resolves it (named context, stage, image) and builds the
//! [`kiln_opgraph::ExecMount`].

use crate::shell::ShellError;
use kiln_opgraph::CacheSharing;
use kiln_units::UnitError;
use std::fmt;

/// The mount types BuildKit knows.
pub const MOUNT_TYPES: &[&str] = &["bind", "cache", "tmpfs", "secret", "ssh"];

/// The keys a `--mount` value may have (for "did you mean" hints).
const KEYS: &[&str] = &[
    "type",
    "from",
    "source",
    "target",
    "readonly",
    "readwrite",
    "required",
    "size",
    "id",
    "sharing",
    "mode",
    "uid",
    "gid",
    "env",
];

/// A `type=` of `--mount`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MountType {
    /// `bind` (the default): a directory of the context, a stage or an image.
    Bind,
    /// `cache`: a persistent cache directory.
    Cache,
    /// `tmpfs`: an empty in-memory file system.
    Tmpfs,
    /// `secret`: a file with a secret's content.
    Secret,
    /// `ssh`: refused (no agent forwarding).
    Ssh,
}

impl MountType {
    fn from_name(lower: &str) -> Option<Self> {
        Some(match lower {
            "bind" => MountType::Bind,
            "cache" => MountType::Cache,
            "tmpfs" => MountType::Tmpfs,
            "secret" => MountType::Secret,
            "ssh" => MountType::Ssh,
            _ => return None,
        })
    }

    /// The name as written in `type=`.
    pub fn as_str(self) -> &'static str {
        match self {
            MountType::Bind => "bind",
            MountType::Cache => "cache",
            MountType::Tmpfs => "tmpfs",
            MountType::Secret => "secret",
            MountType::Ssh => "ssh",
        }
    }
}

impl fmt::Display for MountType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `" (did you mean X?)"` when there is a suggestion.
fn did_you_mean(s: Option<&String>) -> String {
    s.map(|s| format!(" (did you mean {s}?)"))
        .unwrap_or_default()
}

/// Why a `--mount` value was refused; the messages are BuildKit's where BuildKit has one.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MountError {
    /// A quoted CSV field that does not end where it should.
    #[error("extraneous or missing \" in quoted-field: {0}")]
    QuotedField(String),
    /// A `"` inside an unquoted CSV field.
    #[error("bare \" in non-quoted-field: {0}")]
    BareQuote(String),
    /// A field that is neither `key=value` nor a known boolean key.
    #[error("invalid field '{0}' must be a key=value pair")]
    NotKeyValue(String),
    /// A value's variables could not be expanded.
    #[error(transparent)]
    Expand(#[from] ShellError),
    /// An unknown `type=`.
    #[error("unsupported mount type {value:?}{}", did_you_mean(.suggestion.as_ref()))]
    UnsupportedType {
        /// As written.
        value: String,
        /// The closest known type.
        suggestion: Option<String>,
    },
    /// An unknown key.
    #[error("unexpected key '{key}' in '{field}'{}", did_you_mean(.suggestion.as_ref()))]
    UnexpectedKey {
        /// The key, lower-cased.
        key: String,
        /// The whole field.
        field: String,
        /// The closest known key.
        suggestion: Option<String>,
    },
    /// A boolean key with a value that is not a Go boolean.
    #[error("invalid value for {key}: {value}")]
    InvalidBool {
        /// The key.
        key: String,
        /// The value.
        value: String,
    },
    /// `mode=`, `uid=` or `gid=` that is not a number.
    #[error("invalid value {value} for {key}")]
    InvalidNumber {
        /// `mode`, `uid` or `gid`.
        key: &'static str,
        /// The value.
        value: String,
    },
    /// An unknown `sharing=`.
    #[error("unsupported sharing value {0:?}")]
    UnsupportedSharing(String),
    /// `size=` that is not a size.
    #[error(transparent)]
    InvalidSize(UnitError),
    /// `type=ssh`.
    #[error("RUN --mount=type=ssh is not supported by kiln (no SSH agent forwarding)")]
    Ssh,
    /// `size`, `required` or `env` on a type that has no such key.
    #[error("unexpected key '{key}' for mount type '{kind}'")]
    KeyNotForType {
        /// The key.
        key: &'static str,
        /// The mount type.
        kind: MountType,
    },
    /// `mode`, `uid` or `gid` on a bind or tmpfs mount.
    #[error("{key} not allowed for \"{kind}\" type mounts")]
    FileInfoNotAllowed {
        /// The key.
        key: &'static str,
        /// The mount type.
        kind: MountType,
    },
    /// `sharing=` on a mount that is not a cache.
    #[error("invalid cache sharing set for {0} mount")]
    SharingNotCache(MountType),
    /// `from=` on a secret.
    #[error("secret mount should not have a from")]
    SecretFrom,
    /// `source=` and `id=` on a secret.
    #[error("both source and id can't be set")]
    SourceAndId,
    /// A secret with nothing to name it.
    #[error("invalid secret mount. one of source, target required")]
    SecretNeedsTarget,
    /// `env=` on a secret.
    #[error(
        "RUN --mount=type=secret,env=… is not supported yet: mount the secret as a file (target=…)"
    )]
    SecretEnv,
    /// A bind, cache or tmpfs mount without a target.
    #[error("mount type \"{0}\" requires a target (e.g. --mount=type={0},target=/path)")]
    NeedsTarget(MountType),
    /// `from=` on a tmpfs.
    #[error("tmpfs mount should not have a from")]
    TmpfsFrom,
}

/// One parsed `--mount`, before `from` is resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MountSpec {
    /// `type=`.
    pub kind: MountType,
    /// `from=`.
    pub from: Option<String>,
    /// `source=` / `src=`.
    pub source: Option<String>,
    /// `target=` / `dst=` / `destination=` (as written; may be relative to the workdir).
    pub target: Option<String>,
    /// Effective read-only flag (BuildKit's defaults applied: bind and secret read-only,
    /// cache and tmpfs writable).
    pub readonly: bool,
    /// `id=`.
    pub id: Option<String>,
    /// `sharing=`.
    pub sharing: CacheSharing,
    /// `mode=` (octal).
    pub mode: Option<u32>,
    /// `uid=`.
    pub uid: Option<u32>,
    /// `gid=`.
    pub gid: Option<u32>,
    /// `required` (secret).
    pub required: bool,
    /// `size=` (tmpfs), bytes.
    pub size: Option<u64>,
    /// `env=` (secret as an environment variable).
    pub env: Option<String>,
}

/// Splits a CSV record the way Go's `encoding/csv` reads one line: `,` separates fields, a
/// field starting with `"` is quoted (`""` is a literal quote).
pub fn split_csv(s: &str) -> Result<Vec<String>, MountError> {
    let mut out = Vec::new();
    let chars: Vec<char> = s.chars().collect();
    let mut i = 0;
    loop {
        let mut field = String::new();
        if chars.get(i) == Some(&'"') {
            i += 1;
            loop {
                match chars.get(i) {
                    None => return Err(MountError::QuotedField(s.to_string())),
                    Some('"') if chars.get(i + 1) == Some(&'"') => {
                        field.push('"');
                        i += 2;
                    }
                    Some('"') => {
                        i += 1;
                        break;
                    }
                    Some(c) => {
                        field.push(*c);
                        i += 1;
                    }
                }
            }
            match chars.get(i) {
                None => {
                    out.push(field);
                    return Ok(out);
                }
                Some(',') => i += 1,
                Some(_) => return Err(MountError::QuotedField(s.to_string())),
            }
            out.push(field);
        } else {
            while let Some(c) = chars.get(i) {
                if *c == ',' {
                    break;
                }
                if *c == '"' {
                    return Err(MountError::BareQuote(s.to_string()));
                }
                field.push(*c);
                i += 1;
            }
            out.push(field);
            if i >= chars.len() {
                return Ok(out);
            }
            i += 1;
        }
    }
}

fn parse_bool(key: &str, v: &str) -> Result<bool, MountError> {
    match v {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(false),
        _ => Err(MountError::InvalidBool {
            key: key.to_string(),
            value: v.to_string(),
        }),
    }
}

/// Parses one `--mount` value. `expand` expands a value's variables (ARG / ENV).
pub fn parse_mount(
    val: &str,
    expand: &dyn Fn(&str) -> Result<String, ShellError>,
) -> Result<MountSpec, MountError> {
    let mut m = MountSpec {
        kind: MountType::Bind,
        from: None,
        source: None,
        target: None,
        readonly: false,
        id: None,
        sharing: CacheSharing::Shared,
        mode: None,
        uid: None,
        gid: None,
        required: false,
        size: None,
        env: None,
    };
    let mut ro: Option<bool> = None;
    let mut sharing_set = false;
    let mut size_raw: Option<String> = None;
    let mut required_set = false;
    for field in split_csv(val)? {
        let (key, value) = match field.split_once('=') {
            Some((k, v)) => (k.to_ascii_lowercase(), Some(v.to_string())),
            None => (field.to_ascii_lowercase(), None),
        };
        let Some(value) = value else {
            match key.as_str() {
                "readonly" | "ro" => ro = Some(true),
                "readwrite" | "rw" => ro = Some(false),
                "required" => {
                    m.required = true;
                    required_set = true;
                }
                _ => return Err(MountError::NotKeyValue(field)),
            }
            continue;
        };
        let value = expand(&value)?;
        let number = |key: &'static str, radix: u32| {
            u32::from_str_radix(&value, radix).map_err(|_| MountError::InvalidNumber {
                key,
                value: value.clone(),
            })
        };
        match key.as_str() {
            "type" => {
                let t = value.to_ascii_lowercase();
                m.kind = MountType::from_name(&t).ok_or_else(|| MountError::UnsupportedType {
                    suggestion: crate::suggest(&t, MOUNT_TYPES),
                    value: value.clone(),
                })?;
            }
            "from" => m.from = Some(value),
            "source" | "src" => m.source = Some(value),
            "target" | "dst" | "destination" => m.target = Some(value),
            "readonly" | "ro" => ro = Some(parse_bool(&key, &value)?),
            "readwrite" | "rw" => ro = Some(!parse_bool(&key, &value)?),
            "required" => {
                m.required = parse_bool(&key, &value)?;
                required_set = true;
            }
            "size" => size_raw = Some(value),
            "id" => m.id = Some(value),
            "sharing" => {
                m.sharing = match value.to_ascii_lowercase().as_str() {
                    "shared" => CacheSharing::Shared,
                    "private" => CacheSharing::Private,
                    "locked" => CacheSharing::Locked,
                    _ => return Err(MountError::UnsupportedSharing(value)),
                };
                sharing_set = true;
            }
            "mode" => m.mode = Some(number("mode", 8)?),
            "uid" => m.uid = Some(number("uid", 10)?),
            "gid" => m.gid = Some(number("gid", 10)?),
            "env" => m.env = Some(value),
            _ => {
                return Err(MountError::UnexpectedKey {
                    suggestion: crate::suggest(&key, KEYS),
                    key,
                    field,
                })
            }
        }
    }
    let kind = m.kind;
    if kind == MountType::Ssh {
        return Err(MountError::Ssh);
    }
    if let Some(s) = size_raw {
        if kind != MountType::Tmpfs {
            return Err(MountError::KeyNotForType { key: "size", kind });
        }
        m.size = Some(kiln_units::parse_ram(&s).map_err(MountError::InvalidSize)?);
    }
    if required_set && kind != MountType::Secret {
        return Err(MountError::KeyNotForType {
            key: "required",
            kind,
        });
    }
    let file_info_allowed = matches!(kind, MountType::Secret | MountType::Cache);
    if !file_info_allowed {
        for (key, v) in [("mode", m.mode), ("uid", m.uid), ("gid", m.gid)] {
            if v.is_some() {
                return Err(MountError::FileInfoNotAllowed { key, kind });
            }
        }
    }
    if sharing_set && kind != MountType::Cache {
        return Err(MountError::SharingNotCache(kind));
    }
    if m.env.is_some() && kind != MountType::Secret {
        return Err(MountError::KeyNotForType { key: "env", kind });
    }
    m.readonly = ro.unwrap_or(!matches!(kind, MountType::Cache | MountType::Tmpfs));
    if kind == MountType::Secret {
        if m.from.is_some() {
            return Err(MountError::SecretFrom);
        }
        if m.source.is_some() && m.id.is_some() {
            return Err(MountError::SourceAndId);
        }
        if m.source.is_none() && m.target.is_none() && m.id.is_none() && m.env.is_none() {
            return Err(MountError::SecretNeedsTarget);
        }
        if m.env.is_some() {
            return Err(MountError::SecretEnv);
        }
        if m.id.is_none() {
            m.id = m.source.take();
        }
    } else {
        if m.target.as_deref().unwrap_or("").is_empty() {
            return Err(MountError::NeedsTarget(kind));
        }
        if kind == MountType::Tmpfs && m.from.is_some() {
            return Err(MountError::TmpfsFrom);
        }
    }
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Result<MountSpec, String> {
        parse_mount(s, &|v| Ok(v.to_string())).map_err(|e| e.to_string())
    }

    #[test]
    fn csv() {
        assert_eq!(split_csv("a,b=c").unwrap(), ["a", "b=c"]);
        assert_eq!(split_csv("\"a,b\",c").unwrap(), ["a,b", "c"]);
        assert_eq!(split_csv("a,").unwrap(), ["a", ""]);
        assert!(split_csv("\"a").is_err());
    }

    #[test]
    fn defaults() {
        let b = p("target=/x").unwrap();
        assert_eq!(b.kind, MountType::Bind);
        assert!(b.readonly);
        let b = p("type=bind,target=/x,rw").unwrap();
        assert!(!b.readonly);
        let c = p("type=cache,target=/c").unwrap();
        assert!(!c.readonly);
        assert_eq!(c.sharing, CacheSharing::Shared);
        let c = p("type=cache,target=/c,sharing=locked,mode=0700,uid=1,gid=2,ro").unwrap();
        assert_eq!(
            (c.sharing, c.mode, c.uid, c.gid, c.readonly),
            (CacheSharing::Locked, Some(0o700), Some(1), Some(2), true)
        );
        let t = p("type=tmpfs,target=/t,size=1m").unwrap();
        assert_eq!(t.size, Some(1 << 20));
        let s = p("type=secret,id=tok,required").unwrap();
        assert!(s.required && s.readonly);
        let s = p("type=secret,source=tok").unwrap();
        assert_eq!(s.id.as_deref(), Some("tok"));
    }

    #[test]
    fn errors() {
        assert!(p("type=bind").unwrap_err().contains("requires a target"));
        assert!(p("type=nope,target=/x")
            .unwrap_err()
            .contains("unsupported mount type"));
        assert!(p("type=cahce,target=/x")
            .unwrap_err()
            .contains("did you mean cache?"));
        assert!(p("type=bind,target=/x,size=1")
            .unwrap_err()
            .contains("unexpected key 'size'"));
        assert!(p("type=bind,target=/x,mode=0600")
            .unwrap_err()
            .contains("mode not allowed"));
        assert!(p("type=bind,target=/x,sharing=private")
            .unwrap_err()
            .contains("invalid cache sharing"));
        assert!(p("type=cache,target=/x,sharing=nope")
            .unwrap_err()
            .contains("unsupported sharing value"));
        assert!(p("type=secret")
            .unwrap_err()
            .contains("one of source, target"));
        assert!(p("type=secret,id=a,from=x")
            .unwrap_err()
            .contains("should not have a from"));
        assert!(p("target=/x,bogus=1")
            .unwrap_err()
            .contains("unexpected key"));
        assert!(p("target=/x,bogus").unwrap_err().contains("key=value pair"));
        assert!(p("type=bind,target=/x,required")
            .unwrap_err()
            .contains("unexpected key 'required'"));
        assert!(p("type=cache,target=/x,mode=9")
            .unwrap_err()
            .contains("mode"));
    }

    /// The messages are BuildKit's (and today's) word for word.
    #[test]
    fn messages() {
        for (value, want) in [
            (
                "type=bind",
                "mount type \"bind\" requires a target (e.g. --mount=type=bind,target=/path)",
            ),
            (
                "type=cahce,target=/x",
                "unsupported mount type \"cahce\" (did you mean cache?)",
            ),
            ("type=tmpfs,target=/x,size=1q", "invalid size: '1q'"),
            (
                "type=bind,target=/x,mode=0600",
                "mode not allowed for \"bind\" type mounts",
            ),
            (
                "type=bind,target=/x,size=1",
                "unexpected key 'size' for mount type 'bind'",
            ),
            (
                "target=/x,trget=1",
                "unexpected key 'trget' in 'trget=1' (did you mean target?)",
            ),
            ("type=cache,target=/x,uid=a", "invalid value a for uid"),
            ("type=secret,id=a,ro=maybe", "invalid value for ro: maybe"),
            ("\"a", "extraneous or missing \" in quoted-field: \"a"),
            (
                "type=ssh",
                "RUN --mount=type=ssh is not supported by kiln (no SSH agent forwarding)",
            ),
        ] {
            assert_eq!(p(value).unwrap_err(), want, "{value}");
        }
    }
}
