//! Registry authentication: `WWW-Authenticate` challenges and Docker-style credentials.

use base64::Engine as _;
use std::collections::HashMap;
use std::path::Path;

/// One challenge of a `WWW-Authenticate` header, e.g.
/// `Bearer realm="https://auth.docker.io/token",service="registry.docker.io"`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Challenge {
    /// Lower-cased scheme (`bearer`, `basic`).
    pub scheme: String,
    /// Parameters, keys lower-cased.
    pub params: HashMap<String, String>,
}

/// Parses a `WWW-Authenticate` header value (RFC 7235: one or more challenges, each a scheme
/// followed by comma-separated `key=value` / `key="quoted value"` parameters).
pub(crate) fn parse_challenges(header: &str) -> Vec<Challenge> {
    let b = header.as_bytes();
    let mut out: Vec<Challenge> = Vec::new();
    let mut i = 0;
    let is_sep = |c: u8| c == b',' || c.is_ascii_whitespace();
    loop {
        while i < b.len() && is_sep(b[i]) {
            i += 1;
        }
        if i >= b.len() {
            break;
        }
        let start = i;
        while i < b.len() && !is_sep(b[i]) && b[i] != b'=' {
            i += 1;
        }
        let token = &header[start..i];
        // Look past blanks for '=' (a parameter) — but `token68` values end in '=' too.
        let mut j = i;
        while j < b.len() && b[j] == b' ' {
            j += 1;
        }
        if j < b.len() && b[j] == b'=' && !out.is_empty() {
            i = j + 1;
            while i < b.len() && b[i] == b' ' {
                i += 1;
            }
            let value = if i < b.len() && b[i] == b'"' {
                i += 1;
                let mut v = String::new();
                while i < b.len() && b[i] != b'"' {
                    if b[i] == b'\\' && i + 1 < b.len() {
                        i += 1;
                    }
                    // Multi-byte UTF-8 is copied byte-wise through the char boundary below.
                    let ch_len = utf8_len(b[i]);
                    v.push_str(&header[i..(i + ch_len).min(b.len())]);
                    i += ch_len;
                }
                i += 1; // closing quote
                v
            } else {
                let s = i;
                while i < b.len() && b[i] != b',' {
                    i += 1;
                }
                header[s..i].trim().to_string()
            };
            if let Some(c) = out.last_mut() {
                c.params.insert(token.to_ascii_lowercase(), value);
            }
        } else if j < b.len() && b[j] == b'=' {
            // '=' before any scheme: malformed, skip it.
            i = j + 1;
        } else if !token.is_empty() {
            out.push(Challenge {
                scheme: token.to_ascii_lowercase(),
                params: HashMap::new(),
            });
        }
    }
    out
}

fn utf8_len(first: u8) -> usize {
    match first {
        0xF0..=0xFF => 4,
        0xE0..=0xEF => 3,
        0xC0..=0xDF => 2,
        _ => 1,
    }
}

/// The host name credentials are filed under: scheme and path stripped, Docker Hub's aliases
/// folded into `docker.io`.
pub(crate) fn credential_key(s: &str) -> String {
    let s = s.trim();
    let s = s
        .strip_prefix("https://")
        .or_else(|| s.strip_prefix("http://"))
        .unwrap_or(s);
    let host = s.split('/').next().unwrap_or(s).to_ascii_lowercase();
    match host.as_str() {
        "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => {
            "docker.io".to_string()
        }
        _ => host,
    }
}

/// `(user, password)` for `host` from a Docker `config.json` (`auths.<host>.auth`, base64
/// `user:password`, or `username`/`password` fields). `None` when the file, the entry or
/// the fields are missing or unreadable.
pub(crate) fn credentials(docker_config: Option<&Path>, host: &str) -> Option<(String, String)> {
    let bytes = std::fs::read(docker_config?).ok()?;
    let v: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    let want = credential_key(host);
    let auths = v.get("auths")?.as_object()?;
    let entry = auths
        .iter()
        .find(|(k, _)| credential_key(k) == want)
        .map(|(_, e)| e)?;
    if let Some(auth) = entry
        .get("auth")
        .and_then(|a| a.as_str())
        .filter(|a| !a.is_empty())
    {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(auth.trim())
            .ok()?;
        let s = String::from_utf8(decoded).ok()?;
        let (u, p) = s.split_once(':')?;
        return Some((u.to_string(), p.to_string()));
    }
    let u = entry.get("username")?.as_str()?;
    let p = entry.get("password")?.as_str()?;
    Some((u.to_string(), p.to_string()))
}

/// The `auths` key `docker login` files `server`'s credentials under: Docker Hub (any of its
/// names) is `https://index.docker.io/v1/`, any other server its `host[:port]` (scheme and
/// path stripped).
pub fn docker_config_key(server: &str) -> String {
    match credential_key(server).as_str() {
        "docker.io" => DOCKER_HUB_KEY.to_string(),
        host => host.to_string(),
    }
}

const DOCKER_HUB_KEY: &str = "https://index.docker.io/v1/";

/// What `docker login [SERVER]` talks to: the host (`docker.io` when `server` is empty or
/// names Docker Hub) and the `auths` key it files the credentials under
/// ([`docker_config_key`]). `None` when `server` names no host (`https://`).
pub fn login_server(server: Option<&str>) -> Option<(String, String)> {
    let server = server.map(str::trim).filter(|s| !s.is_empty());
    let key = docker_config_key(server.unwrap_or("docker.io"));
    // The key without scheme and path is the host (Docker Hub's key maps to docker.io).
    let host = key
        .trim_start_matches("https://")
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap_or_default();
    match host {
        "" => None,
        "index.docker.io" => Some(("docker.io".to_string(), key)),
        h => Some((h.to_string(), key)),
    }
}

/// The `(user, password)` a Docker `config.json` at `path` holds for `server` (any spelling
/// of its key), as pulls and pushes use them.
pub fn stored_credentials(path: &Path, server: &str) -> Option<(String, String)> {
    credentials(Some(path), server)
}

/// Files `user`/`password` for `server` in the Docker `config.json` at `path`, as
/// `docker login` does: `auths.<key>.auth = base64(user:password)` under
/// [`docker_config_key`], replacing any other entry for the same server and keeping every
/// other key of the file. A missing directory is created (mode 0700); the file is written
/// to a temporary file (mode 0600) that is then renamed over it, so a crash leaves the old
/// or the new file, never a torn one. A file that is not a JSON object is an error (and is
/// left alone).
pub fn save_docker_credentials(
    path: &Path,
    server: &str,
    user: &str,
    password: &str,
) -> std::io::Result<()> {
    use base64::Engine as _;
    let mut config = read_config_object(path)?;
    let auths = auths_mut(&mut config)?;
    let want = credential_key(server);
    auths.retain(|k, _| credential_key(k) != want);
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    auths.insert(
        docker_config_key(server),
        serde_json::json!({ "auth": auth }),
    );
    write_config(path, &config)
}

/// Removes every entry for `server` from the Docker `config.json` at `path` (as `docker
/// logout`); `false` when there was none (the file is then not rewritten).
pub fn remove_docker_credentials(path: &Path, server: &str) -> std::io::Result<bool> {
    if !path.exists() {
        return Ok(false);
    }
    let mut config = read_config_object(path)?;
    let auths = auths_mut(&mut config)?;
    let want = credential_key(server);
    let before = auths.len();
    auths.retain(|k, _| credential_key(k) != want);
    if auths.len() == before {
        return Ok(false);
    }
    write_config(path, &config)?;
    Ok(true)
}

fn invalid(path: &Path, why: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::InvalidData,
        format!("{}: {why}", path.display()),
    )
}

/// The file's JSON object; an empty object when the file is missing or empty.
fn read_config_object(path: &Path) -> std::io::Result<serde_json::Value> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => {
            return Err(std::io::Error::new(
                e.kind(),
                format!("{}: {e}", path.display()),
            ))
        }
    };
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(serde_json::json!({}));
    }
    let v: serde_json::Value =
        serde_json::from_slice(&bytes).map_err(|e| invalid(path, format!("not JSON: {e}")))?;
    if !v.is_object() {
        return Err(invalid(path, "not a JSON object"));
    }
    Ok(v)
}

/// `config.auths`, created when missing.
fn auths_mut(
    config: &mut serde_json::Value,
) -> std::io::Result<&mut serde_json::Map<String, serde_json::Value>> {
    let obj = config
        .as_object_mut()
        .ok_or_else(|| std::io::Error::other("not a JSON object"))?;
    obj.entry("auths")
        .or_insert_with(|| serde_json::json!({}))
        .as_object_mut()
        .ok_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::InvalidData, "`auths` is not an object")
        })
}

/// An I/O error naming what was done to which path.
fn io_context<'a>(
    what: &'a str,
    p: &'a Path,
) -> impl FnOnce(std::io::Error) -> std::io::Error + 'a {
    move |e| std::io::Error::new(e.kind(), format!("{what} {}: {e}", p.display()))
}

/// Writes `config` (tab-indented, as docker writes it) to `path` through a temporary file in
/// the same directory and a rename. A symlinked `path` is written through (its target is
/// replaced), as docker does.
fn write_config(path: &Path, config: &serde_json::Value) -> std::io::Result<()> {
    use serde::Serialize as _;
    use std::io::Write as _;
    use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
    let target = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let dir = match target.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .map_err(io_context("cannot create", &dir))?;
    let mut bytes = Vec::new();
    let mut ser = serde_json::Serializer::with_formatter(
        &mut bytes,
        serde_json::ser::PrettyFormatter::with_indent(b"\t"),
    );
    config.serialize(&mut ser).map_err(std::io::Error::other)?;
    bytes.push(b'\n');
    let name = target.file_name().map_or_else(
        || "config.json".into(),
        |n| n.to_string_lossy().into_owned(),
    );
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp); // left over by a crashed run with the same pid
    let written = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(&bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, &target)?;
        // The rename itself reaches the disk with the directory.
        std::fs::File::open(&dir)?.sync_all()
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written.map_err(io_context("cannot write", &target))
}

/// `Basic base64(user:password)`.
pub(crate) fn basic_header(user: &str, password: &str) -> String {
    let enc = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    format!("Basic {enc}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_challenge_with_commas_in_scope() {
        let c = parse_challenges(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull,push""#,
        );
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].scheme, "bearer");
        assert_eq!(c[0].params["realm"], "https://auth.docker.io/token");
        assert_eq!(c[0].params["service"], "registry.docker.io");
        assert_eq!(c[0].params["scope"], "repository:library/busybox:pull,push");
    }

    #[test]
    fn basic_and_multiple_challenges() {
        let c = parse_challenges(r#"Basic realm="Registry Realm""#);
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].scheme, "basic");
        assert_eq!(c[0].params["realm"], "Registry Realm");
        let c = parse_challenges(r#"Basic realm="a\"b", Bearer realm=x, service = y"#);
        assert_eq!(c.len(), 2);
        assert_eq!(c[0].params["realm"], "a\"b");
        assert_eq!(c[1].scheme, "bearer");
        assert_eq!(c[1].params["realm"], "x");
        assert_eq!(c[1].params["service"], "y");
        assert!(parse_challenges("").is_empty());
    }

    #[test]
    fn credentials_from_docker_config() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("config.json");
        let auth = base64::engine::general_purpose::STANDARD.encode("me:se:cret");
        std::fs::write(
            &p,
            format!(
                r#"{{"auths":{{"https://index.docker.io/v1/":{{"auth":"{auth}"}},
                "127.0.0.1:5000":{{"username":"u","password":"p"}}}}}}"#
            ),
        )
        .unwrap();
        assert_eq!(
            credentials(Some(&p), "registry-1.docker.io"),
            Some(("me".into(), "se:cret".into()))
        );
        assert_eq!(
            credentials(Some(&p), "127.0.0.1:5000"),
            Some(("u".into(), "p".into()))
        );
        assert_eq!(credentials(Some(&p), "quay.io"), None);
        assert_eq!(credentials(None, "quay.io"), None);
        assert_eq!(basic_header("u", "p"), "Basic dTpw");
    }

    #[test]
    fn docker_login_keys() {
        for hub in [
            "docker.io",
            "index.docker.io",
            "registry-1.docker.io",
            "https://index.docker.io/v1/",
        ] {
            assert_eq!(
                docker_config_key(hub),
                "https://index.docker.io/v1/",
                "{hub}"
            );
        }
        assert_eq!(docker_config_key("127.0.0.1:5000"), "127.0.0.1:5000");
        assert_eq!(docker_config_key("https://Quay.io/v2/"), "quay.io");
    }

    #[test]
    fn save_and_remove_credentials_keep_the_rest() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("new/config.json");
        save_docker_credentials(&p, "127.0.0.1:5000", "u", "p:w").unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&p), 0o600);
        assert_eq!(mode(p.parent().unwrap()), 0o700);
        assert_eq!(
            credentials(Some(&p), "127.0.0.1:5000"),
            Some(("u".into(), "p:w".into()))
        );

        // Other keys and hosts stay; an old spelling of the same host is replaced.
        std::fs::write(
            &p,
            r#"{"auths":{"http://127.0.0.1:5000/v2/":{"auth":"b2xkOm9sZA=="},"quay.io":{"auth":"cTpx"}},
               "credHelpers":{"x.io":"x"},"psFormat":"{{.ID}}"}"#,
        )
        .unwrap();
        save_docker_credentials(&p, "127.0.0.1:5000", "new", "pw").unwrap();
        save_docker_credentials(&p, "docker.io", "hub", "hpw").unwrap();
        let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
        let keys: Vec<&String> = v["auths"].as_object().unwrap().keys().collect();
        assert_eq!(
            keys,
            ["127.0.0.1:5000", "https://index.docker.io/v1/", "quay.io"]
        );
        assert_eq!(v["credHelpers"]["x.io"], "x");
        assert_eq!(v["psFormat"], "{{.ID}}");
        assert_eq!(
            credentials(Some(&p), "127.0.0.1:5000"),
            Some(("new".into(), "pw".into()))
        );
        assert_eq!(
            credentials(Some(&p), "registry-1.docker.io"),
            Some(("hub".into(), "hpw".into()))
        );
        assert_eq!(mode(&p), 0o600);
        let leftovers: Vec<_> = std::fs::read_dir(p.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(leftovers, ["config.json"]);

        assert!(remove_docker_credentials(&p, "docker.io").unwrap());
        assert!(!remove_docker_credentials(&p, "docker.io").unwrap());
        assert!(!remove_docker_credentials(&dir.path().join("none.json"), "quay.io").unwrap());
        assert_eq!(credentials(Some(&p), "docker.io"), None);
        assert!(credentials(Some(&p), "quay.io").is_some());

        // Not JSON: an error, and the file is left as it was.
        std::fs::write(&p, "{oops").unwrap();
        assert!(save_docker_credentials(&p, "quay.io", "a", "b").is_err());
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "{oops");
    }
}
