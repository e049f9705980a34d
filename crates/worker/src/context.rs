//! Build contexts on the host: which files a `Local` op selects, and their checksum.
//!
//! The checksum covers, for every selected entry in sorted order, its path, type, permission
//! bits, size, symlink target and content (blake3). Owners and timestamps are left out:
//! COPY from a context gives files to root and a `touch` must not bust the cache.
//!
//! Content hashes come from the store's persistent stat cache when a file is unchanged
//! since it was last hashed (see [`checksum_with`]).

use kiln_cache::{StatEntry, Store};
use kiln_opgraph::pattern::{glob_match, PatternMatcher};
use std::collections::{BTreeMap, HashMap};
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::sync::Arc;

/// Whether `rel` (a `/`-separated path relative to the context root) is selected by one of
/// the `include` paths: it is one of them or lies below one. Empty `include` selects all.
pub fn included(rel: &str, include: &[String]) -> bool {
    if include.is_empty() {
        return true;
    }
    let parts: Vec<&str> = rel.split('/').filter(|c| !c.is_empty()).collect();
    include.iter().any(|p| {
        let pat: Vec<&str> = p
            .split('/')
            .filter(|c| !c.is_empty() && *c != ".")
            .collect();
        if pat.is_empty() {
            return true;
        }
        parts.len() >= pat.len()
            && pat
                .iter()
                .zip(&parts)
                .all(|(p, c)| glob_match(p.as_bytes(), c.as_bytes()))
    })
}

/// Walks `dir`, calling `f(relative_path, metadata)` for every entry that is not excluded,
/// in sorted order (parents before children). Excluded directories are skipped wholesale
/// unless an exception pattern could re-include something below them.
pub fn walk(
    dir: &Path,
    exclude: &[String],
    mut f: impl FnMut(&str, &Path, &std::fs::Metadata) -> io::Result<()>,
) -> io::Result<()> {
    let matcher = PatternMatcher::new(exclude);
    let prune = !matcher.has_exceptions();
    let mut it = walkdir::WalkDir::new(dir)
        .sort_by_file_name()
        .min_depth(1)
        .into_iter();
    while let Some(entry) = it.next() {
        let entry = entry.map_err(|e| {
            let path = e
                .path()
                .map(|p| p.display().to_string())
                .unwrap_or_default();
            io::Error::other(format!("{path}: {e}"))
        })?;
        let rel = entry
            .path()
            .strip_prefix(dir)
            .map_err(io::Error::other)?
            .to_string_lossy()
            .into_owned();
        if !matcher.is_empty() && matcher.is_excluded(&rel) {
            if prune && entry.file_type().is_dir() {
                it.skip_current_dir();
            }
            continue;
        }
        let md = entry.path().symlink_metadata()?;
        f(&rel, entry.path(), &md)?;
    }
    Ok(())
}

/// Makes `into` (a new directory) a view of what `exclude` leaves of `dir`, for a
/// `RUN --mount=type=bind` of a context: an ignored file must not be seen there, by name or
/// through a symlink, as BuildKit never sends it. Directories are recreated with their mode
/// and mtime, symlinks as they are, regular files hard-linked (copied when `into` is on
/// another filesystem); other kinds are left out. The bind is read-only or of a copy, so a
/// hard link never lets a step change the context.
pub fn materialize(dir: &Path, exclude: &[String], into: &Path) -> io::Result<()> {
    use std::os::unix::fs::{lchown, symlink};
    std::fs::create_dir_all(into)?;
    let mut dirs = vec![(into.to_path_buf(), std::fs::metadata(dir)?)];
    walk(dir, exclude, |rel, path, md| {
        let target = into.join(rel);
        // With exception patterns an included file may lie below an excluded directory.
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let ft = md.file_type();
        if ft.is_dir() {
            std::fs::create_dir_all(&target)?;
            dirs.push((target, md.clone()));
        } else if ft.is_symlink() {
            symlink(std::fs::read_link(path)?, &target)?;
        } else if ft.is_file() && std::fs::hard_link(path, &target).is_err() {
            std::fs::copy(path, &target)?;
            lchown(&target, Some(md.uid()), Some(md.gid()))?;
            let t = filetime::FileTime::from_last_modification_time(md);
            filetime::set_file_times(&target, t, t)?;
        }
        Ok(())
    })?;
    // Deepest first, so creating entries does not change a finished directory's mtime.
    for (d, md) in dirs.iter().rev() {
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(md.mode() & 0o7777))?;
        let t = filetime::FileTime::from_last_modification_time(md);
        filetime::set_file_times(d, t, t)?;
    }
    Ok(())
}

/// The store whose stat cache [`checksum`] uses (set once per process by the CLI with
/// [`use_stat_cache`]).
static STAT_STORE: std::sync::OnceLock<Arc<Store>> = std::sync::OnceLock::new();

/// Makes [`checksum`] use `store`'s persistent stat cache from now on (first call wins).
pub fn use_stat_cache(store: Arc<Store>) {
    let _ = STAT_STORE.set(store);
}

/// The checksum of what `include` and `exclude` select in `dir`: `blake3:<hex>`. Uses the
/// stat cache of the store given to [`use_stat_cache`], if any (see [`checksum_with`]).
pub fn checksum(dir: &Path, include: &[String], exclude: &[String]) -> io::Result<String> {
    checksum_with(dir, include, exclude, STAT_STORE.get().map(|s| &**s))
}

/// The checksum of what `include` and `exclude` select in `dir`: `blake3:<hex>`.
///
/// With a store, file contents come from its persistent stat cache when a file's `lstat`
/// identity (dev, inode, size, mtime, ctime, mode) is unchanged since it was hashed and its
/// mtime is more than a second older than the hashing (the "racy git" rule: a file changed
/// twice within one timestamp tick looks unchanged), so an unchanged context is re-checked
/// with `stat` calls only; only new or changed files are read. The per-file listing behind
/// a new checksum is recorded too, to explain cache misses
/// ([`describe_change`]).
pub fn checksum_with(
    dir: &Path,
    include: &[String],
    exclude: &[String],
    store: Option<&Store>,
) -> io::Result<String> {
    let root = dir.to_string_lossy().into_owned();
    let known: HashMap<String, StatEntry> = store
        .and_then(|s| s.stat_cache_get_many(&root).ok())
        .unwrap_or_default();
    let mut updates: Vec<(String, StatEntry)> = Vec::new();
    let mut listing: Vec<u8> = Vec::new();
    let mut h = blake3::Hasher::new();
    h.update(b"kiln-context-v1\0");
    let mut entry = Vec::with_capacity(256);
    walk(dir, exclude, |rel, path, md| {
        if !included(rel, include) {
            return Ok(());
        }
        entry.clear();
        entry.extend_from_slice(rel.as_bytes());
        entry.push(0);
        let ft = md.file_type();
        let kind: &[u8] = if ft.is_dir() {
            b"d"
        } else if ft.is_symlink() {
            b"l"
        } else if ft.is_file() {
            b"f"
        } else {
            b"o"
        };
        entry.extend_from_slice(kind);
        entry.extend_from_slice(&(md.permissions().mode() & 0o7777).to_le_bytes());
        if ft.is_symlink() {
            entry.extend_from_slice(std::fs::read_link(path)?.as_os_str().as_encoded_bytes());
        } else if ft.is_file() {
            entry.extend_from_slice(&md.size().to_le_bytes());
            let content = match known.get(rel) {
                Some(e) if e.matches(md) => e.hash,
                _ => {
                    let mut file = std::fs::File::open(path)?;
                    let mut fh = blake3::Hasher::new();
                    fh.update_reader(&mut file)?;
                    let hash = *fh.finalize().as_bytes();
                    if store.is_some() {
                        updates.push((rel.to_string(), StatEntry::new(md, hash)));
                    }
                    hash
                }
            };
            entry.extend_from_slice(&content);
        }
        entry.push(b'\n');
        h.update(&entry);
        if store.is_some() && !ft.is_dir() {
            // "<16 hex of the entry's hash> <path>\n": enough to tell which files changed.
            let eh = blake3::hash(&entry);
            listing.extend_from_slice(hex16(eh.as_bytes()).as_bytes());
            listing.push(b' ');
            listing.extend_from_slice(rel.as_bytes());
            listing.push(b'\n');
        }
        Ok(())
    })?;
    let key = format!("blake3:{}", h.finalize().to_hex());
    if let Some(s) = store {
        // The cache is an optimisation: failing to record it must not fail the build.
        let _ = s.stat_cache_put_many(&root, &updates);
        if !s.context_listing_has(&key).unwrap_or(true) {
            let _ = s.context_listing_put(&key, &root, &listing);
        }
    }
    Ok(key)
}

fn hex16(b: &[u8]) -> String {
    b.iter().take(8).map(|x| format!("{x:02x}")).collect()
}

fn parse_listing(data: &[u8]) -> BTreeMap<String, String> {
    String::from_utf8_lossy(data)
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(h, p)| (p.to_string(), h.to_string()))
        .collect()
}

/// Which files differ between the contexts behind two checksums (from the listings
/// [`checksum_with`] recorded): e.g. "src/main.rs changed (and 2 more files)". `None` when
/// a listing is no longer recorded.
pub fn describe_change(store: &Store, old: &str, new: &str) -> Option<String> {
    let old = parse_listing(&store.context_listing_get(old).ok()??);
    let new = parse_listing(&store.context_listing_get(new).ok()??);
    let mut changes: Vec<String> = Vec::new();
    for (p, h) in &new {
        match old.get(p) {
            None => changes.push(format!("{p} added")),
            Some(o) if o != h => changes.push(format!("{p} changed")),
            _ => {}
        }
    }
    for p in old.keys() {
        if !new.contains_key(p) {
            changes.push(format!("{p} removed"));
        }
    }
    let first = changes.first()?.clone();
    Some(match changes.len() {
        1 => first,
        2 => format!("{first} (and 1 more file)"),
        n => format!("{first} (and {} more files)", n - 1),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn materialize_leaves_out_ignored_files() {
        let d = tempfile::tempdir().unwrap();
        let ctx = d.path().join("ctx");
        std::fs::create_dir_all(ctx.join("sub/keep")).unwrap();
        std::fs::write(ctx.join("secret"), "s").unwrap();
        std::fs::write(ctx.join("a"), "a").unwrap();
        std::fs::write(ctx.join("sub/x.log"), "l").unwrap();
        std::fs::write(ctx.join("sub/keep/k.log"), "k").unwrap();
        std::os::unix::fs::symlink("secret", ctx.join("link")).unwrap();
        let ex: Vec<String> = ["secret", "**/*.log", "!sub/keep/k.log"]
            .iter()
            .map(std::string::ToString::to_string)
            .collect();
        let out = d.path().join("out");
        materialize(&ctx, &ex, &out).unwrap();
        let mut got = Vec::new();
        walk(&out, &[], |rel, _, _| {
            got.push(rel.to_string());
            Ok(())
        })
        .unwrap();
        assert_eq!(got, ["a", "link", "sub", "sub/keep", "sub/keep/k.log"]);
        assert!(std::fs::read(out.join("link")).is_err(), "link is dangling");
    }

    #[test]
    fn include_selects_paths_and_below() {
        let inc = vec!["src".to_string(), "*.json".to_string()];
        assert!(included("src", &inc));
        assert!(included("src/a/b.rs", &inc));
        assert!(included("package.json", &inc));
        assert!(!included("README.md", &inc));
        assert!(included("anything", &[".".to_string()]));
        assert!(included("anything", &[]));
    }

    #[test]
    fn checksum_changes_only_with_selected_content() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("src")).unwrap();
        std::fs::write(d.path().join("src/a"), "1").unwrap();
        std::fs::write(d.path().join("other"), "x").unwrap();
        std::fs::write(d.path().join("ignored.log"), "x").unwrap();
        let inc = vec!["src".to_string()];
        let all: Vec<String> = vec![];
        let ex = vec!["*.log".to_string()];
        let a = checksum(d.path(), &inc, &ex).unwrap();
        let full = checksum(d.path(), &all, &ex).unwrap();
        std::fs::write(d.path().join("other"), "y").unwrap();
        std::fs::write(d.path().join("ignored.log"), "y").unwrap();
        assert_eq!(
            a,
            checksum(d.path(), &inc, &ex).unwrap(),
            "unselected change"
        );
        assert_ne!(
            full,
            checksum(d.path(), &all, &ex).unwrap(),
            "selected change"
        );
        let full2 = checksum(d.path(), &all, &ex).unwrap();
        std::fs::write(d.path().join("ignored.log"), "z").unwrap();
        assert_eq!(
            full2,
            checksum(d.path(), &all, &ex).unwrap(),
            "ignored change"
        );
        std::fs::write(d.path().join("src/a"), "2").unwrap();
        assert_ne!(a, checksum(d.path(), &inc, &ex).unwrap());
    }

    #[test]
    fn stat_cache_is_used_for_old_files_and_not_for_racy_ones() {
        let d = tempfile::tempdir().unwrap();
        let store = Store::open(&d.path().join("root")).unwrap();
        let ctx = d.path().join("ctx");
        std::fs::create_dir(&ctx).unwrap();
        std::fs::write(ctx.join("old"), "old").unwrap();
        std::fs::write(ctx.join("new"), "new").unwrap();
        let none: Vec<String> = vec![];
        let plain = checksum_with(&ctx, &none, &none, None).unwrap();
        let first = checksum_with(&ctx, &none, &none, Some(&store)).unwrap();
        assert_eq!(plain, first, "the cache does not change checksums");
        let root = ctx.to_string_lossy().into_owned();
        let mut entries = store.stat_cache_get_many(&root).unwrap();
        assert_eq!(entries.len(), 2);
        // Pretend both were hashed long after they were written, with a wrong hash: a
        // trusted entry is used as is (proving no read happens) ...
        for e in entries.values_mut() {
            e.recorded_ns += 10_000_000_000;
            e.hash = [7; 32];
        }
        let v: Vec<(String, StatEntry)> = entries.clone().into_iter().collect();
        store.stat_cache_put_many(&root, &v).unwrap();
        assert_ne!(
            checksum_with(&ctx, &none, &none, Some(&store)).unwrap(),
            plain
        );
        // ... a changed file is re-read (same size, new content: mtime/ctime differ) ...
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(ctx.join("old"), "OLD").unwrap();
        std::fs::write(ctx.join("new"), "NEW").unwrap();
        std::fs::write(ctx.join("old"), "old").unwrap();
        std::fs::write(ctx.join("new"), "new").unwrap();
        assert_eq!(
            checksum_with(&ctx, &none, &none, Some(&store)).unwrap(),
            plain
        );
        // ... and an entry recorded within a second of the file's mtime is never trusted.
        let mut entries = store.stat_cache_get_many(&root).unwrap();
        for e in entries.values_mut() {
            e.hash = [7; 32];
        }
        let v: Vec<(String, StatEntry)> = entries.into_iter().collect();
        store.stat_cache_put_many(&root, &v).unwrap();
        assert_eq!(
            checksum_with(&ctx, &none, &none, Some(&store)).unwrap(),
            plain
        );
    }

    #[test]
    fn listings_explain_which_files_changed() {
        let d = tempfile::tempdir().unwrap();
        let store = Store::open(&d.path().join("root")).unwrap();
        let ctx = d.path().join("ctx");
        std::fs::create_dir_all(ctx.join("src")).unwrap();
        for f in ["src/a.rs", "src/b.rs", "src/main.rs"] {
            std::fs::write(ctx.join(f), f).unwrap();
        }
        let none: Vec<String> = vec![];
        let a = checksum_with(&ctx, &none, &none, Some(&store)).unwrap();
        std::fs::write(ctx.join("src/main.rs"), "fn main() {}").unwrap();
        let b = checksum_with(&ctx, &none, &none, Some(&store)).unwrap();
        assert_eq!(
            describe_change(&store, &a, &b).as_deref(),
            Some("src/main.rs changed")
        );
        std::fs::write(ctx.join("src/a.rs"), "x").unwrap();
        std::fs::remove_file(ctx.join("src/b.rs")).unwrap();
        std::fs::write(ctx.join("src/c.rs"), "c").unwrap();
        let c = checksum_with(&ctx, &none, &none, Some(&store)).unwrap();
        assert_eq!(
            describe_change(&store, &b, &c).as_deref(),
            Some("src/a.rs changed (and 2 more files)")
        );
    }
}
