//! What garbage collection and the context stat cache need from the store: listing and
//! removing blobs, snapshots and cache records, disk usage, the root's GC lock, and the
//! per-file metadata cache that lets a build re-check an unchanged context with `stat`
//! calls only.
//!
//! # The GC lock
//!
//! A build holds references the database does not know yet (blobs it just wrote, snapshots
//! it extracted, cache records it is about to add). So every build takes `<root>/gc.lock`
//! shared for its whole run ([`Store::lock_gc_shared`]), and whatever deletes blobs or
//! snapshots takes it exclusive ([`Store::lock_gc_exclusive`] /
//! [`Store::try_lock_gc_exclusive`]). The lock is an advisory `flock`, released when the
//! [`GcLock`] is dropped or the process dies.
//!
//! The policy itself (what a prune removes, what is live) is in `gc/prune.rs`:
//! [`Store::prune`], [`Store::live_set`], [`Store::usage`].

use crate::{db, io_err, sha256_hex, Error, Result, Store};

mod prune;
#[cfg(test)]
mod tests;

pub use prune::{GcRoots, LiveSet, PrunePolicy, PruneReport, StoreUsage};
use std::collections::{HashMap, HashSet};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// A build cache record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CacheRecord {
    /// The cache key.
    pub key: String,
    /// The recorded result (JSON of the worker's output).
    pub value: Vec<u8>,
    /// Unix seconds of the last lookup or write.
    pub last_used: i64,
}

/// What the stat cache knows about one context file: its `lstat` identity when it was
/// hashed, and the blake3 of its content.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StatEntry {
    /// Device.
    pub dev: u64,
    /// Inode.
    pub ino: u64,
    /// Size in bytes.
    pub size: u64,
    /// Modification time, ns since the epoch.
    pub mtime_ns: i64,
    /// Status change time, ns since the epoch.
    pub ctime_ns: i64,
    /// `st_mode` (type and permission bits).
    pub mode: u32,
    /// blake3 of the content.
    pub hash: [u8; 32],
    /// When the hash was taken, ns since the epoch (for the "racy" rule: a file whose
    /// mtime is not clearly older than this may have changed again within the same
    /// timestamp granularity, so its hash is not trusted).
    pub recorded_ns: i64,
}

impl StatEntry {
    /// Whether `md` (an `lstat` of the same path now) shows the same file as when the hash
    /// was taken, and the hash can be trusted (the racy-git rule: an mtime within a second
    /// of the recording time is not trusted).
    pub fn matches(&self, md: &std::fs::Metadata) -> bool {
        let (mtime, ctime) = stat_times(md);
        self.dev == md.dev()
            && self.ino == md.ino()
            && self.size == md.size()
            && self.mtime_ns == mtime
            && self.ctime_ns == ctime
            && self.mode == md.mode()
            && mtime < self.recorded_ns.saturating_sub(1_000_000_000)
            && ctime < self.recorded_ns.saturating_sub(1_000_000_000)
    }

    /// An entry for `md` with content hash `hash`, recorded now.
    pub fn new(md: &std::fs::Metadata, hash: [u8; 32]) -> StatEntry {
        let (mtime_ns, ctime_ns) = stat_times(md);
        StatEntry {
            dev: md.dev(),
            ino: md.ino(),
            size: md.size(),
            mtime_ns,
            ctime_ns,
            mode: md.mode(),
            hash,
            recorded_ns: db::now_nanos(),
        }
    }
}

fn stat_times(md: &std::fs::Metadata) -> (i64, i64) {
    (
        md.mtime()
            .saturating_mul(1_000_000_000)
            .saturating_add(md.mtime_nsec()),
        md.ctime()
            .saturating_mul(1_000_000_000)
            .saturating_add(md.ctime_nsec()),
    )
}

/// The root's GC lock, held until dropped.
pub struct GcLock {
    _file: std::fs::File,
}

/// Apparent size in bytes of everything below `path`, `path` included (as `du -sb`:
/// directories count their own size, hard links count once). Errors (entries vanishing
/// while walking) are ignored.
pub fn disk_usage(path: &Path) -> u64 {
    disk_usage_once(path, &mut HashSet::new())
}

/// [`disk_usage`], counting no multiply-linked inode in `seen` (and adding those it counts),
/// so that sizes of several trees sharing files add up to what they hold together.
fn disk_usage_once(path: &Path, seen: &mut HashSet<(u64, u64)>) -> u64 {
    let mut total = 0u64;
    for e in walkdir::WalkDir::new(path).into_iter().flatten() {
        let Ok(md) = e.metadata() else { continue };
        if md.nlink() > 1 && !md.is_dir() && !seen.insert((md.dev(), md.ino())) {
            continue;
        }
        total += md.len();
    }
    total
}

/// Whether a process with this pid exists (EPERM counts as existing).
fn pid_alive(pid: i32) -> bool {
    // SAFETY: kill with signal 0 only checks for existence.
    let r = unsafe { libc::kill(pid, 0) };
    r == 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
}

/// The pid that owns a temp entry named `[.tmp-]p<pid>-…`, if the name carries one.
pub(crate) fn owner_pid(name: &str) -> Option<i32> {
    let rest = name.strip_prefix(".tmp-").unwrap_or(name);
    let rest = rest.strip_prefix('p')?;
    let (pid, _) = rest.split_once('-')?;
    pid.parse().ok()
}

/// Whether a temp entry belongs to a process that is gone (so it can be removed whatever
/// its age).
pub(crate) fn owner_dead(name: &str) -> bool {
    owner_pid(name).is_some_and(|p| p > 0 && !pid_alive(p))
}

impl Store {
    // ---- GC lock ----
    fn gc_lock_file(&self) -> Result<std::fs::File> {
        let path = self.root.join("gc.lock");
        std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .map_err(io_err(&path))
    }
    /// Takes the GC lock shared (a build: blocks while a prune runs).
    pub fn lock_gc_shared(&self) -> Result<GcLock> {
        let f = self.gc_lock_file()?;
        fs4::fs_std::FileExt::lock_shared(&f).map_err(io_err(self.root.join("gc.lock")))?;
        Ok(GcLock { _file: f })
    }
    /// Takes the GC lock exclusive (a prune: waits for running builds).
    pub fn lock_gc_exclusive(&self) -> Result<GcLock> {
        let f = self.gc_lock_file()?;
        fs4::fs_std::FileExt::lock_exclusive(&f).map_err(io_err(self.root.join("gc.lock")))?;
        Ok(GcLock { _file: f })
    }
    /// Takes the GC lock exclusive if nobody holds it (`None` when a build runs).
    pub fn try_lock_gc_exclusive(&self) -> Result<Option<GcLock>> {
        let f = self.gc_lock_file()?;
        match fs4::fs_std::FileExt::try_lock_exclusive(&f) {
            Ok(()) => Ok(Some(GcLock { _file: f })),
            Err(_) => Ok(None),
        }
    }

    // ---- stat cache ----
    /// Every stat cache entry of one context root (absolute path), by relative path: one
    /// query.
    pub fn stat_cache_get_many(&self, root: &str) -> Result<HashMap<String, StatEntry>> {
        self.stat_cache_get_large(root, 0)
    }
    /// The entries of a context root for files of at least `min_size` bytes.
    pub fn stat_cache_get_large(
        &self,
        root: &str,
        min_size: u64,
    ) -> Result<HashMap<String, StatEntry>> {
        self.with_db(|c| db::stat_cache_load(c, root, min_size))
    }
    /// Records entries for a context root, in one transaction.
    pub fn stat_cache_put_many(&self, root: &str, entries: &[(String, StatEntry)]) -> Result<()> {
        if entries.is_empty() {
            return Ok(());
        }
        self.with_db(|c| db::stat_cache_put_many(c, root, entries))
    }
    /// Forgets entries (files that are gone) of a context root.
    pub fn stat_cache_remove(&self, root: &str, paths: &[String]) -> Result<()> {
        if paths.is_empty() {
            return Ok(());
        }
        self.with_db(|c| db::stat_cache_remove(c, root, paths))
    }
    /// Forgets stat cache entries and listings of context roots that no longer exist.
    pub fn stat_cache_forget_missing_roots(&self) -> Result<usize> {
        let roots = self.with_db(db::stat_cache_roots)?;
        let mut n = 0;
        for r in roots {
            if !Path::new(&r).is_dir() {
                self.with_db(|c| db::stat_cache_forget_root(c, &r))?;
                n += 1;
            }
        }
        Ok(n)
    }

    // ---- context listings (for explaining cache misses) ----
    /// Records the per-file listing behind a context checksum (kept for the last few
    /// checksums of each context root).
    pub fn context_listing_put(&self, content_key: &str, root: &str, listing: &[u8]) -> Result<()> {
        self.with_db(|c| db::listing_put(c, content_key, root, listing))
    }
    /// Whether a listing is recorded for this checksum.
    pub fn context_listing_has(&self, content_key: &str) -> Result<bool> {
        self.with_db(|c| db::listing_has(c, content_key))
    }
    /// The per-file listing behind a context checksum, when still recorded.
    pub fn context_listing_get(&self, content_key: &str) -> Result<Option<Vec<u8>>> {
        self.with_db(|c| db::listing_get(c, content_key))
    }

    // ---- file pool (large files of committed snapshots, by content) ----
    /// Files of committed snapshots whose content hashes (blake3) to `hash`: absolute
    /// paths, which may be gone or changed since (callers check before use).
    pub fn file_pool_get(&self, hash: &[u8; 32]) -> Result<Vec<PathBuf>> {
        let rows = self.with_db(|c| db::file_pool_get(c, hash))?;
        Ok(rows
            .into_iter()
            .filter_map(|(diff_id, path)| {
                let hex = sha256_hex(&diff_id)?;
                let rel = Path::new(&path);
                // Only plain relative paths inside the snapshot.
                rel.components()
                    .all(|c| matches!(c, std::path::Component::Normal(_)))
                    .then(|| self.snapshots.join(hex).join(rel))
            })
            .collect())
    }
    /// Records files (content hash, path relative to the snapshot) of the snapshot of
    /// `diff_id`, so later copies of the same content can hard-link them instead of
    /// writing them again.
    pub fn file_pool_put(&self, diff_id: &str, entries: &[([u8; 32], String)]) -> Result<()> {
        if entries.is_empty() {
            return Ok(());
        }
        self.with_db(|c| db::file_pool_put(c, diff_id, entries))
    }

    // ---- last results (link sources for the next run of an op) ----
    /// The snapshot of the layer that `op` (an op's identity without its inputs' content,
    /// e.g. a vertex digest) made when it last ran, while that snapshot is still there.
    pub fn last_result(&self, op: &str) -> Result<Option<PathBuf>> {
        let Some(diff_id) = self.with_db(|c| db::last_result_get(c, op))? else {
            return Ok(None);
        };
        Ok(sha256_hex(&diff_id)
            .map(|hex| self.snapshots.join(hex))
            .filter(|d| d.is_dir()))
    }
    /// Records that `op` made the layer `diff_id` (forgotten when its snapshot is removed).
    pub fn set_last_result(&self, op: &str, diff_id: &str) -> Result<()> {
        self.with_db(|c| db::last_result_put(c, op, diff_id))
    }

    // ---- key inputs (for explaining cache misses) ----
    /// The last recorded (key, inputs) of every slot of a scope (one query).
    pub fn key_inputs_get_many(&self, scope: &str) -> Result<HashMap<String, (String, Vec<u8>)>> {
        self.with_db(|c| db::key_inputs_load(c, scope))
    }
    /// Records (slot, key, inputs) rows of a scope, in one transaction.
    pub fn key_inputs_put_many(
        &self,
        scope: &str,
        records: &[(String, String, Vec<u8>)],
    ) -> Result<()> {
        if records.is_empty() {
            return Ok(());
        }
        self.with_db(|c| db::key_inputs_put_many(c, scope, records))
    }

    // ---- garbage collection ----
    /// Every build cache record, least recently used first.
    pub fn cache_records(&self) -> Result<Vec<CacheRecord>> {
        self.with_db(db::cache_records)
    }
    /// Removes build cache records.
    pub fn cache_remove(&self, keys: &[String]) -> Result<()> {
        if keys.is_empty() {
            return Ok(());
        }
        self.with_db(|c| db::cache_remove(c, keys))
    }
    /// Every blob in the content store: (`sha256:…`, size on disk).
    pub fn list_blobs(&self) -> Result<Vec<(String, u64)>> {
        let dir = self.blobs.join("sha256");
        let mut v = Vec::new();
        for e in std::fs::read_dir(&dir).map_err(io_err(&dir))?.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let digest = format!("sha256:{name}");
            if sha256_hex(&digest).is_none() {
                continue;
            }
            let size = e.metadata().map_or(0, |m| m.len());
            v.push((digest, size));
        }
        v.sort();
        Ok(v)
    }
    /// Every snapshot: (diff id `sha256:…`, size on disk as `du -sb` counts it). A file
    /// that several snapshots share (hard links of the file pool) counts in the first one
    /// only, so the sizes add up to what the snapshots hold together.
    pub fn list_snapshots(&self) -> Result<Vec<(String, u64)>> {
        let mut v = Vec::new();
        let mut seen = HashSet::new();
        for e in std::fs::read_dir(&self.snapshots)
            .map_err(io_err(&self.snapshots))?
            .flatten()
        {
            let name = e.file_name().to_string_lossy().into_owned();
            let diff_id = format!("sha256:{name}");
            if sha256_hex(&diff_id).is_none() {
                continue;
            }
            v.push((diff_id, disk_usage_once(&e.path(), &mut seen)));
        }
        v.sort();
        Ok(v)
    }
    /// Removes blobs (and their `layers` rows). Call with the GC lock held exclusive.
    pub fn remove_blobs(&self, digests: &[String]) -> Result<()> {
        self.with_db(|c| db::forget_layer_blobs(c, digests))?;
        for d in digests {
            let p = self.blob_path(d);
            match std::fs::remove_file(&p) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err(&p)(e)),
            }
        }
        Ok(())
    }
    /// Removes an extracted snapshot: renamed to a temp name first, so a half-removed
    /// snapshot is never seen under its final name. Call with the GC lock held exclusive.
    pub fn remove_snapshot(&self, diff_id: &str) -> Result<()> {
        let Some(hex) = sha256_hex(diff_id) else {
            return Err(Error::NotFound(diff_id.to_string()));
        };
        self.with_db(|c| db::file_pool_forget(c, diff_id))?;
        let dir = self.snapshots.join(hex);
        if !dir.exists() {
            return Ok(());
        }
        let tmp = self.snapshots.join(format!(
            ".tmp-p{}-rm-{}",
            std::process::id(),
            crate::random_name()
        ));
        std::fs::rename(&dir, &tmp).map_err(io_err(&dir))?;
        std::fs::remove_dir_all(&tmp).map_err(io_err(&tmp))
    }
    /// Checkpoints the database's write-ahead log and truncates it (after a prune).
    pub fn compact_db(&self) -> Result<()> {
        self.with_db(|c| c.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)"))
    }
    /// Removes temp entries (ingest files, half-extracted snapshots, scratch dirs) left by
    /// processes that are gone, or older than [`crate::STALE_AFTER`].
    pub fn clean_temp(&self) {
        crate::clean_stale(&self.ingest, |_| true);
        crate::clean_stale(&self.snapshots, |name| name.starts_with(".tmp-"));
        crate::clean_stale(&self.tmp, |_| true);
    }
}
