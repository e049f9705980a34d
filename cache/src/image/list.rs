//! `kiln images`: the rows docker shows for the store's names, and its filters.
//!
//! One row per tag (`REPOSITORY TAG`). A name held only as `repo@digest` (a pull by digest)
//! is a `repo <none>` row unless the same image has a tag in that repository (docker keeps
//! such a digest as a repo digest of the tagged image); an image no name reaches is one
//! `<none> <none>` row (dangling). CREATED is the image config's `created`, SIZE the
//! unpacked size of its layers ([`Store::unpacked_size`]): what the image is, not when or
//! how it came into this store. Newest first, as docker sorts.

use super::{lookup, ImageConfig, LookupError, ReadError, UNTAGGED};
use crate::Store;
use kiln_oci::Reference;
use std::collections::HashMap;
use std::io::Read;
use std::time::{Duration, SystemTime};

/// One row of `kiln images`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Row {
    /// The repository, familiar (`alpine`, `host:5000/x`); `None` is `<none>`.
    pub repository: Option<String>,
    /// The tag; `None` is `<none>`.
    pub tag: Option<String>,
    /// The repo digest kept for this repository (a pull by digest), if any.
    pub digest: Option<String>,
    /// The image ID (`sha256:…` of the config).
    pub id: String,
    /// The manifest's digest.
    pub manifest_digest: String,
    /// The config's `created` (`None` when it has none or it is not RFC 3339).
    pub created: Option<SystemTime>,
    /// The unpacked size of the layers, in bytes.
    pub size: u64,
}

/// A `--filter` that cannot be used, in docker's words.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FilterError {
    /// Not `KEY=VALUE`.
    #[error("bad format of filter (expected name=value)")]
    Format,
    /// A key docker's `images` does not have.
    #[error("invalid filter '{0}'")]
    Key(String),
    /// A value the key does not take (`dangling=maybe`).
    #[error("invalid filter '{0}={1}'")]
    Value(String, String),
}

/// Parsed `images` filters (`--filter` and the `REPOSITORY[:TAG]` argument).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Filters {
    /// `dangling=true|false`.
    pub dangling: Option<bool>,
    /// `reference=PATTERN` (docker's glob on `repo` and `repo:tag`); any may match.
    pub references: Vec<String>,
    /// `label=KEY` or `label=KEY=VALUE`; all must match.
    pub labels: Vec<(String, Option<String>)>,
    /// `before=IMAGE`: images created before it.
    pub before: Option<String>,
    /// `since=IMAGE`: images created after it.
    pub since: Option<String>,
}

impl Filters {
    /// Parses `--filter KEY=VALUE` values.
    ///
    /// # Errors
    /// A value that is not `KEY=VALUE`, an unknown key, a `dangling` that is not a bool.
    pub fn parse(filters: &[String]) -> Result<Self, FilterError> {
        let mut out = Filters::default();
        for f in filters {
            let (k, v) = f.split_once('=').ok_or(FilterError::Format)?;
            let (k, v) = (k.trim().to_ascii_lowercase(), v.to_string());
            match k.as_str() {
                "dangling" => match v.to_ascii_lowercase().as_str() {
                    "true" | "1" => out.dangling = Some(true),
                    "false" | "0" => out.dangling = Some(false),
                    _ => return Err(FilterError::Value(k, v)),
                },
                "reference" => out.references.push(v),
                "label" => out.labels.push(match v.split_once('=') {
                    Some((k, v)) => (k.to_string(), Some(v.to_string())),
                    None => (v, None),
                }),
                "before" => out.before = Some(v),
                "since" => out.since = Some(v),
                _ => return Err(FilterError::Key(k)),
            }
        }
        Ok(out)
    }
}

/// Why the images cannot be listed.
#[derive(Debug, thiserror::Error)]
pub enum ListError {
    /// The store failed.
    #[error(transparent)]
    Read(#[from] ReadError),
    /// A `before=`/`since=` image that is not there.
    #[error(transparent)]
    Lookup(#[from] LookupError),
}

/// The rows of `kiln images` that pass `filters`, newest first.
///
/// # Errors
/// The store cannot be read; a `before`/`since` image that is not there.
pub fn list(store: &Store, filters: &Filters) -> Result<Vec<Row>, ListError> {
    let records = store.list_images().map_err(ReadError::from)?;
    let mut names_of: HashMap<&str, Vec<Option<Reference>>> = HashMap::new();
    for rec in &records {
        let r = Reference::parse(&rec.name).ok();
        names_of.entry(&rec.manifest_digest).or_default().push(r);
    }
    let bound = |s: Option<&str>| -> Result<Bound, ListError> {
        let Some(s) = s else {
            return Ok(Bound::Unset);
        };
        let f = lookup(store, s)?;
        Ok(created(&super::config(store, &f.manifest_digest)?).map_or(Bound::Unknown, Bound::At))
    };
    let before = bound(filters.before.as_deref())?;
    let since = bound(filters.since.as_deref())?;
    let mut rows = Vec::new();
    let mut images: HashMap<String, (ImageConfig, String, u64)> = HashMap::new();
    for rec in &records {
        let others = &names_of[rec.manifest_digest.as_str()];
        let (repository, tag, digest) = if let Some(id) = rec.name.strip_prefix(UNTAGGED) {
            // A dangling image that has a name again is listed under the name.
            if others.iter().any(Option::is_some) {
                continue;
            }
            let _ = id;
            (None, None, None)
        } else if let Ok(r) = Reference::parse(&rec.name) {
            let repo = r.name();
            let same_repo = |o: &Option<Reference>, tagged: bool| {
                o.as_ref()
                    .is_some_and(|o| o.name() == repo && o.tag.is_some() == tagged)
            };
            let familiar = Reference {
                tag: None,
                digest: None,
                ..r.clone()
            }
            .familiar();
            match (&r.tag, &r.digest) {
                (None, Some(_)) if others.iter().any(|o| same_repo(o, true)) => continue,
                (None, d) => (Some(familiar), None, d.clone()),
                (Some(t), _) => {
                    let digest = others
                        .iter()
                        .flatten()
                        .find(|o| o.name() == repo && o.tag.is_none())
                        .and_then(|o| o.digest.clone());
                    (Some(familiar), Some(t.clone()), digest)
                }
            }
        } else {
            (Some(rec.name.clone()), None, None)
        };
        if !images.contains_key(&rec.manifest_digest) {
            let cfg = super::config(store, &rec.manifest_digest)?;
            let id = super::stored(store, &rec.manifest_digest)?.config_digest;
            let size = store.image_unpacked_size(&rec.manifest_digest)?;
            images.insert(rec.manifest_digest.clone(), (cfg, id, size));
        }
        let (cfg, id, size) = &images[&rec.manifest_digest];
        let row = Row {
            repository,
            tag,
            digest,
            id: id.clone(),
            manifest_digest: rec.manifest_digest.clone(),
            created: created(cfg),
            size: *size,
        };
        if passes(&row, cfg, filters, before, since) {
            rows.push(row);
        }
    }
    rows.sort_by(|a, b| {
        b.created
            .cmp(&a.created)
            .then_with(|| a.repository.cmp(&b.repository))
            .then_with(|| a.tag.cmp(&b.tag))
    });
    Ok(rows)
}

/// The config's `created` as a time.
pub fn created(cfg: &ImageConfig) -> Option<SystemTime> {
    cfg.created
        .as_deref()
        .and_then(|c| humantime::parse_rfc3339_weak(c.trim_end_matches('Z')).ok())
}

/// A `before=`/`since=` image's creation time.
#[derive(Clone, Copy)]
enum Bound {
    /// No such filter.
    Unset,
    /// The image has no creation time: nothing is before or after it.
    Unknown,
    /// Its creation time.
    At(SystemTime),
}

fn passes(row: &Row, cfg: &ImageConfig, f: &Filters, before: Bound, since: Bound) -> bool {
    let dangling = row.repository.is_none();
    if f.dangling.is_some_and(|d| d != dangling) {
        return false;
    }
    if !f.references.is_empty() {
        let Some(repo) = &row.repository else {
            return false;
        };
        let with_tag = row.tag.as_ref().map(|t| format!("{repo}:{t}"));
        let hit = f
            .references
            .iter()
            .any(|p| path_match(p, repo) || with_tag.as_deref().is_some_and(|t| path_match(p, t)));
        if !hit {
            return false;
        }
    }
    let labels = cfg
        .config
        .as_ref()
        .and_then(|c| c.0.get("Labels"))
        .and_then(serde_json::Value::as_object);
    let label_ok = |(k, v): &(String, Option<String>)| {
        labels
            .and_then(|l| l.get(k))
            .is_some_and(|have| v.as_ref().is_none_or(|v| have.as_str() == Some(v)))
    };
    if !f.labels.iter().all(label_ok) {
        return false;
    }
    // An image without a creation time is neither before nor after another.
    let ok = |bound: Bound, cmp: fn(&SystemTime, &SystemTime) -> bool| match bound {
        Bound::Unset => true,
        Bound::Unknown => false,
        Bound::At(t) => row.created.is_some_and(|c| cmp(&c, &t)),
    };
    ok(before, SystemTime::lt) && ok(since, SystemTime::gt)
}

/// Go's `path.Match` (what docker's `reference=` filter uses): `*` is any run of
/// characters but `/`, `?` one such character, `[…]` a class (`^` negates, `a-z`
/// ranges), `\` escapes. A malformed pattern matches nothing.
pub fn path_match(pattern: &str, name: &str) -> bool {
    fn class(p: &[char], c: char) -> Option<(bool, usize)> {
        // p starts after '['; returns (matched, chars consumed including ']').
        let mut i = 0;
        let negate = p.first() == Some(&'^');
        if negate {
            i += 1;
        }
        let mut hit = false;
        let mut first = true;
        loop {
            let lo = *p.get(i)?;
            if lo == ']' && !first {
                return Some((hit != negate, i + 1));
            }
            first = false;
            let lo = if lo == '\\' {
                i += 1;
                *p.get(i)?
            } else {
                lo
            };
            i += 1;
            let mut hi = lo;
            if p.get(i) == Some(&'-') && p.get(i + 1).is_some_and(|&h| h != ']') {
                hi = if p[i + 1] == '\\' {
                    i += 1;
                    *p.get(i + 1)?
                } else {
                    p[i + 1]
                };
                i += 2;
            }
            if lo <= c && c <= hi {
                hit = true;
            }
        }
    }
    fn go(p: &[char], n: &[char]) -> bool {
        match p.first() {
            None => n.is_empty(),
            Some('*') => (0..=n.len())
                .take_while(|&k| k == 0 || n[k - 1] != '/')
                .any(|k| go(&p[1..], &n[k..])),
            Some('?') => n.first().is_some_and(|&c| c != '/') && go(&p[1..], &n[1..]),
            Some('[') => match n.first() {
                Some(&c) if c != '/' => match class(&p[1..], c) {
                    Some((true, used)) => go(&p[1 + used..], &n[1..]),
                    _ => false,
                },
                _ => false,
            },
            Some('\\') => p.get(1).is_some() && n.first() == p.get(1) && go(&p[2..], &n[1..]),
            Some(c) => n.first() == Some(c) && go(&p[1..], &n[1..]),
        }
    }
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    go(&p, &n)
}

impl Store {
    /// The unpacked size of an image: the sum of its layers' [`Store::unpacked_size`].
    ///
    /// # Errors
    /// The manifest or config cannot be read.
    pub fn image_unpacked_size(&self, manifest_digest: &str) -> Result<u64, ReadError> {
        Ok(super::layers(self, manifest_digest)?
            .iter()
            .map(|l| self.unpacked_size(l))
            .sum())
    }

    /// The unpacked size of a layer, as docker counts it (the sizes of its files and
    /// symlinks, each hard-linked file once, directories nothing): read once from the
    /// layer's tar and kept by diff id, so it is the same whichever way the layer came in.
    /// A layer whose tar cannot be read counts its blob's size (not kept).
    pub fn unpacked_size(&self, layer: &kiln_oci::Layer) -> u64 {
        if let Ok(Some(n)) = self.with_db(|c| crate::db::unpacked_size(c, &layer.diff_id)) {
            return n;
        }
        match self.layer_tar(layer).map(tar_content_size) {
            Ok(Ok(n)) => {
                let _ = self.with_db(|c| crate::db::set_unpacked_size(c, &layer.diff_id, n));
                n
            }
            _ => layer.size,
        }
    }
}

/// The size a tar unpacks to, as docker's `directory.Size` counts it.
fn tar_content_size(r: Box<dyn Read + Send>) -> std::io::Result<u64> {
    let mut a = tar::Archive::new(r);
    let mut n = 0u64;
    for e in a.entries()? {
        let e = e?;
        let h = e.header();
        match h.entry_type() {
            tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::GNUSparse => {
                n = n.saturating_add(e.size());
            }
            tar::EntryType::Symlink => {
                n = n.saturating_add(e.link_name_bytes().map_or(0, |l| l.len() as u64));
            }
            _ => {}
        }
    }
    Ok(n)
}

/// How long ago `t` was (zero when it is in the future).
pub fn age(t: SystemTime) -> Duration {
    SystemTime::now().duration_since(t).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_match_is_gos() {
        for (p, n, want) in [
            ("alpine", "alpine", true),
            ("alp*", "alpine", true),
            ("*", "x/y", false),
            ("*/*", "x/y", true),
            ("a?pine", "alpine", true),
            ("[a-c]lpine", "alpine", true),
            ("[^a-c]lpine", "alpine", false),
            ("alpine:3*", "alpine:3.20", true),
            ("alpine:3*", "alpine", false),
            ("\\*", "*", true),
            ("[", "[", false),
        ] {
            assert_eq!(path_match(p, n), want, "{p} {n}");
        }
    }

    #[test]
    fn filters_parse_in_dockers_words() {
        let f = Filters::parse(&[
            "dangling=true".into(),
            "reference=alp*".into(),
            "label=a=b".into(),
            "label=c".into(),
            "before=x".into(),
            "since=y".into(),
        ])
        .unwrap();
        assert_eq!(f.dangling, Some(true));
        assert_eq!(f.references, ["alp*"]);
        assert_eq!(
            f.labels,
            [("a".into(), Some("b".into())), ("c".into(), None)]
        );
        assert_eq!(
            (f.before.as_deref(), f.since.as_deref()),
            (Some("x"), Some("y"))
        );
        let e = |s: &str| Filters::parse(&[s.into()]).unwrap_err().to_string();
        assert_eq!(e("dangling"), "bad format of filter (expected name=value)");
        assert_eq!(e("colour=red"), "invalid filter 'colour'");
        assert_eq!(e("dangling=maybe"), "invalid filter 'dangling=maybe'");
    }
}
