//! `RUN --mount=…` parsing with BuildKit's keys, defaults and messages
//! (`dockerfile/instructions/commands_runmount.go`).
//!
//! [`parse_mount`] turns one flag value into a [`MountSpec`] whose `from` is still a name;
//! the conversion resolves it (named context, stage, image) and builds the
//! [`kiln_opgraph::ExecMount`].

use kiln_opgraph::CacheSharing;

/// The mount types BuildKit knows.
pub const MOUNT_TYPES: &[&str] = &["bind", "cache", "tmpfs", "secret", "ssh"];

/// One parsed `--mount`, before `from` is resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MountSpec {
    /// `bind`, `cache`, `tmpfs` or `secret`.
    pub kind: String,
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
pub fn split_csv(s: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let chars: Vec<char> = s.chars().collect();
    let mut i = 0;
    loop {
        let mut field = String::new();
        if chars.get(i) == Some(&'"') {
            i += 1;
            loop {
                match chars.get(i) {
                    None => return Err(format!("extraneous or missing \" in quoted-field: {s}")),
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
                Some(_) => return Err(format!("extraneous or missing \" in quoted-field: {s}")),
            }
            out.push(field);
        } else {
            while let Some(c) = chars.get(i) {
                if *c == ',' {
                    break;
                }
                if *c == '"' {
                    return Err(format!("bare \" in non-quoted-field: {s}"));
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

fn parse_bool(key: &str, v: &str) -> Result<bool, String> {
    match v {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(false),
        _ => Err(format!("invalid value for {key}: {v}")),
    }
}

/// Docker's `RAMInBytes`: `1024`, `64k`, `1m`, `2g`, `1.5gb` (binary units).
pub fn parse_size(s: &str) -> Option<u64> {
    let t = s.trim();
    let n = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let num: f64 = t[..n].parse().ok()?;
    let mult: f64 = match t[n..].to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" | "kib" => 1024.0,
        "m" | "mb" | "mib" => 1024.0 * 1024.0,
        "g" | "gb" | "gib" => 1024.0 * 1024.0 * 1024.0,
        "t" | "tb" | "tib" => 1024f64.powi(4),
        "p" | "pb" | "pib" => 1024f64.powi(5),
        _ => return None,
    };
    let v = num * mult;
    (v.is_finite() && v >= 0.0 && v < u64::MAX as f64).then_some(v as u64)
}

/// Parses one `--mount` value. `expand` expands a value's variables (ARG / ENV).
pub fn parse_mount(
    val: &str,
    expand: &dyn Fn(&str) -> Result<String, String>,
) -> Result<MountSpec, String> {
    let mut m = MountSpec {
        kind: "bind".into(),
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
                _ => return Err(format!("invalid field '{field}' must be a key=value pair")),
            }
            continue;
        };
        let value = expand(&value)?;
        match key.as_str() {
            "type" => {
                let t = value.to_ascii_lowercase();
                if !MOUNT_TYPES.contains(&t.as_str()) {
                    let mut msg = format!("unsupported mount type {value:?}");
                    if let Some(s) = crate::suggest(&t, MOUNT_TYPES) {
                        msg.push_str(&format!(" (did you mean {s}?)"));
                    }
                    return Err(msg);
                }
                m.kind = t;
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
                    _ => return Err(format!("unsupported sharing value {value:?}")),
                };
                sharing_set = true;
            }
            "mode" => {
                m.mode = Some(
                    u32::from_str_radix(&value, 8)
                        .map_err(|_| format!("invalid value {value} for mode"))?,
                );
            }
            "uid" => {
                m.uid = Some(
                    value
                        .parse()
                        .map_err(|_| format!("invalid value {value} for uid"))?,
                );
            }
            "gid" => {
                m.gid = Some(
                    value
                        .parse()
                        .map_err(|_| format!("invalid value {value} for gid"))?,
                );
            }
            "env" => m.env = Some(value),
            _ => {
                let keys = [
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
                let mut msg = format!("unexpected key '{key}' in '{field}'");
                if let Some(s) = crate::suggest(&key, &keys) {
                    msg.push_str(&format!(" (did you mean {s}?)"));
                }
                return Err(msg);
            }
        }
    }
    let kind = m.kind.as_str();
    if kind == "ssh" {
        return Err(
            "RUN --mount=type=ssh is not supported by kiln (no SSH agent forwarding)".into(),
        );
    }
    if let Some(s) = size_raw {
        if kind != "tmpfs" {
            return Err(format!("unexpected key 'size' for mount type '{kind}'"));
        }
        m.size = Some(parse_size(&s).ok_or_else(|| format!("invalid size: '{s}'"))?);
    }
    if required_set && kind != "secret" {
        return Err(format!("unexpected key 'required' for mount type '{kind}'"));
    }
    let file_info_allowed = matches!(kind, "secret" | "cache");
    if !file_info_allowed {
        for (n, v) in [("mode", m.mode), ("uid", m.uid), ("gid", m.gid)] {
            if v.is_some() {
                return Err(format!("{n} not allowed for {kind:?} type mounts"));
            }
        }
    }
    if sharing_set && kind != "cache" {
        return Err(format!("invalid cache sharing set for {kind} mount"));
    }
    if m.env.is_some() && kind != "secret" {
        return Err(format!("unexpected key 'env' for mount type '{kind}'"));
    }
    m.readonly = ro.unwrap_or(!matches!(kind, "cache" | "tmpfs"));
    if kind == "secret" {
        if m.from.is_some() {
            return Err("secret mount should not have a from".into());
        }
        if m.source.is_some() && m.id.is_some() {
            return Err("both source and id can't be set".into());
        }
        if m.source.is_none() && m.target.is_none() && m.id.is_none() && m.env.is_none() {
            return Err("invalid secret mount. one of source, target required".into());
        }
        if m.env.is_some() {
            return Err(
                "RUN --mount=type=secret,env=… is not supported yet: mount the secret as a file (target=…)"
                    .into(),
            );
        }
        if m.id.is_none() {
            m.id = m.source.take();
        }
    } else {
        if m.target.as_deref().unwrap_or("").is_empty() {
            return Err(format!(
                "mount type {kind:?} requires a target (e.g. --mount=type={kind},target=/path)"
            ));
        }
        if kind == "tmpfs" && m.from.is_some() {
            return Err("tmpfs mount should not have a from".into());
        }
    }
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Result<MountSpec, String> {
        parse_mount(s, &|v| Ok(v.to_string()))
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
        assert_eq!(b.kind, "bind");
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

    #[test]
    fn sizes() {
        assert_eq!(parse_size("1024"), Some(1024));
        assert_eq!(parse_size("64k"), Some(65536));
        assert_eq!(parse_size("2GB"), Some(2 << 30));
        assert_eq!(parse_size("x"), None);
    }
}
