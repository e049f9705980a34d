//! Build contexts on the host: which files a `Local` op selects, and their checksum.
//!
//! The checksum covers, for every selected entry in sorted order, its path, type, permission
//! bits, size, symlink target and content (blake3). Owners and timestamps are left out:
//! COPY from a context gives files to root and a `touch` must not bust the cache.

use kiln_opgraph::pattern::{glob_match, PatternMatcher};
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

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

/// The checksum of what `include` and `exclude` select in `dir`: `blake3:<hex>`.
pub fn checksum(dir: &Path, include: &[String], exclude: &[String]) -> io::Result<String> {
    let mut h = blake3::Hasher::new();
    h.update(b"kiln-context-v1\0");
    walk(dir, exclude, |rel, path, md| {
        if !included(rel, include) {
            return Ok(());
        }
        h.update(rel.as_bytes());
        h.update(b"\0");
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
        h.update(kind);
        h.update(&(md.permissions().mode() & 0o7777).to_le_bytes());
        if ft.is_symlink() {
            h.update(std::fs::read_link(path)?.as_os_str().as_encoded_bytes());
        } else if ft.is_file() {
            h.update(&md.size().to_le_bytes());
            let mut file = std::fs::File::open(path)?;
            let mut fh = blake3::Hasher::new();
            fh.update_reader(&mut file)?;
            h.update(fh.finalize().as_bytes());
        }
        h.update(b"\n");
        Ok(())
    })?;
    Ok(format!("blake3:{}", h.finalize().to_hex()))
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
