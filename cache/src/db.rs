//! The metadata database (SQLite, WAL mode).

use crate::{now_secs, CacheRecord, Error, ImageRecord, Result, StatEntry};
use rusqlite::{params, Connection, OptionalExtension};
use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

/// How long a statement waits for another process's write lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS images (
    name TEXT PRIMARY KEY,
    manifest_digest TEXT NOT NULL,
    created INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS cache (
    key TEXT PRIMARY KEY,
    value BLOB NOT NULL,
    last_used INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS layers (
    diff_id TEXT NOT NULL,
    digest TEXT NOT NULL,
    size INTEGER NOT NULL,
    media_type TEXT NOT NULL,
    PRIMARY KEY (diff_id, digest)
);
CREATE TABLE IF NOT EXISTS stat_cache (
    root TEXT NOT NULL,
    path TEXT NOT NULL,
    dev INTEGER NOT NULL,
    ino INTEGER NOT NULL,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    ctime_ns INTEGER NOT NULL,
    mode INTEGER NOT NULL,
    hash BLOB NOT NULL,
    recorded_ns INTEGER NOT NULL,
    PRIMARY KEY (root, path)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS context_listings (
    content_key TEXT PRIMARY KEY,
    root TEXT NOT NULL,
    listing BLOB NOT NULL,
    created INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS key_inputs (
    scope TEXT NOT NULL,
    slot TEXT NOT NULL,
    key TEXT NOT NULL,
    inputs BLOB NOT NULL,
    created INTEGER NOT NULL,
    PRIMARY KEY (scope, slot)
);
CREATE TABLE IF NOT EXISTS file_pool (
    hash BLOB NOT NULL,
    diff_id TEXT NOT NULL,
    path TEXT NOT NULL,
    PRIMARY KEY (hash, diff_id, path)
);
CREATE TABLE IF NOT EXISTS last_results (
    op TEXT PRIMARY KEY,
    diff_id TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS unpacked_sizes (
    diff_id TEXT PRIMARY KEY,
    size INTEGER NOT NULL
);
";

/// Tables [`SCHEMA`] creates (an older database gets the missing ones on open).
const TABLES: &[&str] = &[
    "images",
    "cache",
    "layers",
    "stat_cache",
    "context_listings",
    "key_inputs",
    "file_pool",
    "last_results",
    "unpacked_sizes",
];

pub(crate) fn open(path: &Path) -> Result<Connection> {
    let db = |e: rusqlite::Error| Error::Db(format!("{}: {e}", path.display()));
    // SQLite does not always call the busy handler while another connection is switching
    // a fresh database to WAL or creating the schema (it reports SQLITE_BUSY at once to
    // avoid deadlocks), so the set-up as a whole is retried until the busy timeout.
    let deadline = std::time::Instant::now() + BUSY_TIMEOUT;
    loop {
        match try_open(path) {
            Ok(c) => return Ok(c),
            Err(e) if is_busy(&e) && std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(
                    20 + u64::from(rand::random::<u8>() % 30),
                ));
            }
            Err(e) => return Err(db(e)),
        }
    }
}

fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    )
}

fn try_open(path: &Path) -> rusqlite::Result<Connection> {
    let c = Connection::open(path)?;
    c.busy_timeout(BUSY_TIMEOUT)?;
    // The journal mode is persistent: only the first opener of a new database switches it
    // (which needs a moment of exclusive access).
    let mode: String = c.query_row("PRAGMA journal_mode", [], |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        let mode: String = c.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CANTOPEN),
                Some(format!("cannot switch to WAL mode (got {mode})")),
            ));
        }
    }
    c.pragma_update(None, "synchronous", "NORMAL")?;
    let names = TABLES
        .iter()
        .map(|t| format!("'{t}'"))
        .collect::<Vec<_>>()
        .join(", ");
    let have: i64 = c.query_row(
        &format!("SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name IN ({names})"),
        [],
        |r| r.get(0),
    )?;
    if have < TABLES.len() as i64 {
        if let Err(e) = c.execute_batch(&format!("BEGIN IMMEDIATE; {SCHEMA} COMMIT;")) {
            let _ = c.execute_batch("ROLLBACK");
            return Err(e);
        }
    }
    Ok(c)
}

/// Points `name` at `digest`; `dangling` (the manifest the name pointed at, and the
/// untagged name to keep it under) is recorded when no name reaches that manifest any more.
pub(crate) fn set_image(
    c: &mut Connection,
    name: &str,
    digest: &str,
    dangling: Option<&(String, String)>,
) -> rusqlite::Result<()> {
    let tx = c.transaction()?;
    tx.execute(
        "INSERT INTO images (name, manifest_digest, created) VALUES (?1, ?2, ?3)
         ON CONFLICT(name) DO UPDATE SET manifest_digest = excluded.manifest_digest,
                                         created = excluded.created",
        params![name, digest, now_secs()],
    )?;
    if !name.starts_with(crate::image::UNTAGGED) {
        // A dangling image named again is no longer dangling.
        tx.execute(
            "DELETE FROM images WHERE manifest_digest = ?1 AND substr(name, 1, ?2) = ?3",
            params![
                digest,
                crate::image::UNTAGGED.len() as i64,
                crate::image::UNTAGGED
            ],
        )?;
    }
    if let Some((old, untagged)) = dangling {
        tx.execute(
            "INSERT OR IGNORE INTO images (name, manifest_digest, created)
             SELECT ?1, ?2, ?3
             WHERE NOT EXISTS (SELECT 1 FROM images WHERE manifest_digest = ?2)",
            params![untagged, old, now_secs()],
        )?;
    }
    tx.commit()
}

/// The unpacked size recorded for a layer.
pub(crate) fn unpacked_size(c: &mut Connection, diff_id: &str) -> rusqlite::Result<Option<u64>> {
    c.query_row(
        "SELECT size FROM unpacked_sizes WHERE diff_id = ?1",
        [diff_id],
        |r| r.get::<_, i64>(0),
    )
    .optional()
    .map(|n| n.map(|n| n.max(0) as u64))
}

pub(crate) fn set_unpacked_size(
    c: &mut Connection,
    diff_id: &str,
    size: u64,
) -> rusqlite::Result<()> {
    c.execute(
        "INSERT OR REPLACE INTO unpacked_sizes (diff_id, size) VALUES (?1, ?2)",
        params![diff_id, i64::try_from(size).unwrap_or(i64::MAX)],
    )?;
    Ok(())
}

fn image_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ImageRecord> {
    Ok(ImageRecord {
        name: r.get(0)?,
        manifest_digest: r.get(1)?,
        created: r.get(2)?,
    })
}

pub(crate) fn get_image(c: &mut Connection, name: &str) -> rusqlite::Result<Option<ImageRecord>> {
    c.query_row(
        "SELECT name, manifest_digest, created FROM images WHERE name = ?1",
        [name],
        image_row,
    )
    .optional()
}

pub(crate) fn list_images(c: &mut Connection) -> rusqlite::Result<Vec<ImageRecord>> {
    let mut st = c.prepare("SELECT name, manifest_digest, created FROM images ORDER BY name")?;
    let rows = st.query_map([], image_row)?;
    rows.collect()
}

pub(crate) fn remove_image(c: &mut Connection, name: &str) -> rusqlite::Result<bool> {
    Ok(c.execute("DELETE FROM images WHERE name = ?1", [name])? > 0)
}

pub(crate) fn cache_get(c: &mut Connection, key: &str) -> rusqlite::Result<Option<Vec<u8>>> {
    c.query_row(
        "UPDATE cache SET last_used = ?2 WHERE key = ?1 RETURNING value",
        params![key, now_secs()],
        |r| r.get(0),
    )
    .optional()
}

pub(crate) fn cache_put(c: &mut Connection, key: &str, value: &[u8]) -> rusqlite::Result<()> {
    c.execute(
        "INSERT INTO cache (key, value, last_used) VALUES (?1, ?2, ?3)
         ON CONFLICT(key) DO UPDATE SET value = excluded.value, last_used = excluded.last_used",
        params![key, value, now_secs()],
    )?;
    Ok(())
}

pub(crate) fn record_layer(c: &mut Connection, l: &kiln_oci::Layer) -> rusqlite::Result<()> {
    c.execute(
        "INSERT OR REPLACE INTO layers (diff_id, digest, size, media_type) VALUES (?1, ?2, ?3, ?4)",
        params![l.diff_id, l.digest, l.size as i64, l.media_type],
    )?;
    Ok(())
}

pub(crate) fn layers_for(
    c: &mut Connection,
    diff_id: &str,
) -> rusqlite::Result<Vec<kiln_oci::Layer>> {
    let mut st =
        c.prepare("SELECT diff_id, digest, size, media_type FROM layers WHERE diff_id = ?1")?;
    let rows = st.query_map([diff_id], |r| {
        Ok(kiln_oci::Layer {
            diff_id: r.get(0)?,
            digest: r.get(1)?,
            size: r.get::<_, i64>(2)? as u64,
            media_type: r.get(3)?,
        })
    })?;
    rows.collect()
}

// ---- stat cache ----

pub(crate) fn stat_cache_load(
    c: &mut Connection,
    root: &str,
    min_size: u64,
) -> rusqlite::Result<HashMap<String, StatEntry>> {
    let mut st = c.prepare_cached(
        "SELECT path, dev, ino, size, mtime_ns, ctime_ns, mode, hash, recorded_ns
         FROM stat_cache WHERE root = ?1 AND size >= ?2",
    )?;
    let rows = st.query_map(params![root, min_size as i64], |r| {
        let hash: Vec<u8> = r.get(7)?;
        let mut h = [0u8; 32];
        if hash.len() == 32 {
            h.copy_from_slice(&hash);
        }
        Ok((
            r.get::<_, String>(0)?,
            StatEntry {
                dev: r.get::<_, i64>(1)? as u64,
                ino: r.get::<_, i64>(2)? as u64,
                size: r.get::<_, i64>(3)? as u64,
                mtime_ns: r.get(4)?,
                ctime_ns: r.get(5)?,
                mode: r.get::<_, i64>(6)? as u32,
                hash: h,
                // A malformed hash is never trusted.
                recorded_ns: if hash.len() == 32 {
                    r.get(8)?
                } else {
                    i64::MIN
                },
            },
        ))
    })?;
    rows.collect()
}

pub(crate) fn stat_cache_put_many(
    c: &mut Connection,
    root: &str,
    entries: &[(String, StatEntry)],
) -> rusqlite::Result<()> {
    let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    {
        let mut st = tx.prepare_cached(
            "INSERT OR REPLACE INTO stat_cache
             (root, path, dev, ino, size, mtime_ns, ctime_ns, mode, hash, recorded_ns)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        )?;
        for (path, e) in entries {
            st.execute(params![
                root,
                path,
                e.dev as i64,
                e.ino as i64,
                e.size as i64,
                e.mtime_ns,
                e.ctime_ns,
                i64::from(e.mode),
                &e.hash[..],
                e.recorded_ns
            ])?;
        }
    }
    tx.commit()
}

pub(crate) fn stat_cache_remove(
    c: &mut Connection,
    root: &str,
    paths: &[String],
) -> rusqlite::Result<()> {
    let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    {
        let mut st = tx.prepare_cached("DELETE FROM stat_cache WHERE root = ?1 AND path = ?2")?;
        for p in paths {
            st.execute(params![root, p])?;
        }
    }
    tx.commit()
}

pub(crate) fn stat_cache_roots(c: &mut Connection) -> rusqlite::Result<Vec<String>> {
    let mut st = c.prepare("SELECT DISTINCT root FROM stat_cache")?;
    let rows = st.query_map([], |r| r.get(0))?;
    rows.collect()
}

pub(crate) fn stat_cache_forget_root(c: &mut Connection, root: &str) -> rusqlite::Result<()> {
    c.execute("DELETE FROM stat_cache WHERE root = ?1", [root])?;
    c.execute("DELETE FROM context_listings WHERE root = ?1", [root])?;
    Ok(())
}

// ---- context listings ----

/// How many listings are kept per context root (older ones are dropped).
const LISTINGS_PER_ROOT: i64 = 8;

pub(crate) fn listing_put(
    c: &mut Connection,
    content_key: &str,
    root: &str,
    listing: &[u8],
) -> rusqlite::Result<()> {
    let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    tx.execute(
        "INSERT INTO context_listings (content_key, root, listing, created) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT(content_key) DO UPDATE SET created = excluded.created",
        params![content_key, root, listing, now_nanos()],
    )?;
    tx.execute(
        "DELETE FROM context_listings WHERE root = ?1 AND content_key NOT IN
         (SELECT content_key FROM context_listings WHERE root = ?1 ORDER BY created DESC LIMIT ?2)",
        params![root, LISTINGS_PER_ROOT],
    )?;
    tx.commit()
}

pub(crate) fn listing_has(c: &mut Connection, content_key: &str) -> rusqlite::Result<bool> {
    Ok(c.query_row(
        "SELECT 1 FROM context_listings WHERE content_key = ?1",
        [content_key],
        |_| Ok(()),
    )
    .optional()?
    .is_some())
}

pub(crate) fn listing_get(
    c: &mut Connection,
    content_key: &str,
) -> rusqlite::Result<Option<Vec<u8>>> {
    c.query_row(
        "SELECT listing FROM context_listings WHERE content_key = ?1",
        [content_key],
        |r| r.get(0),
    )
    .optional()
}

// ---- key inputs (cache-miss explanations) ----

pub(crate) fn key_inputs_load(
    c: &mut Connection,
    scope: &str,
) -> rusqlite::Result<HashMap<String, (String, Vec<u8>)>> {
    let mut st = c.prepare_cached("SELECT slot, key, inputs FROM key_inputs WHERE scope = ?1")?;
    let rows = st.query_map([scope], |r| Ok((r.get(0)?, (r.get(1)?, r.get(2)?))))?;
    rows.collect()
}

pub(crate) fn key_inputs_put_many(
    c: &mut Connection,
    scope: &str,
    records: &[(String, String, Vec<u8>)],
) -> rusqlite::Result<()> {
    let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    {
        let mut st = tx.prepare_cached(
            "INSERT OR REPLACE INTO key_inputs (scope, slot, key, inputs, created)
             VALUES (?1, ?2, ?3, ?4, ?5)",
        )?;
        let now = now_secs();
        for (slot, key, inputs) in records {
            st.execute(params![scope, slot, key, inputs, now])?;
        }
    }
    tx.commit()
}

// ---- garbage collection ----

pub(crate) fn cache_records(c: &mut Connection) -> rusqlite::Result<Vec<CacheRecord>> {
    let mut st = c.prepare("SELECT key, value, last_used FROM cache ORDER BY last_used, key")?;
    let rows = st.query_map([], |r| {
        Ok(CacheRecord {
            key: r.get(0)?,
            value: r.get(1)?,
            last_used: r.get(2)?,
        })
    })?;
    rows.collect()
}

pub(crate) fn cache_remove(c: &mut Connection, keys: &[String]) -> rusqlite::Result<()> {
    let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    {
        let mut st = tx.prepare_cached("DELETE FROM cache WHERE key = ?1")?;
        for k in keys {
            st.execute([k])?;
        }
    }
    tx.commit()
}

pub(crate) fn forget_layer_blobs(c: &mut Connection, digests: &[String]) -> rusqlite::Result<()> {
    let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    {
        let mut st = tx.prepare_cached("DELETE FROM layers WHERE digest = ?1")?;
        for d in digests {
            st.execute([d])?;
        }
    }
    tx.commit()
}

/// Nanoseconds since the epoch.
pub(crate) fn now_nanos() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64)
}

// ---- file pool ----

pub(crate) fn file_pool_get(
    c: &mut Connection,
    hash: &[u8; 32],
) -> rusqlite::Result<Vec<(String, String)>> {
    let mut st = c.prepare_cached("SELECT diff_id, path FROM file_pool WHERE hash = ?1")?;
    let rows = st.query_map([&hash[..]], |r| Ok((r.get(0)?, r.get(1)?)))?;
    rows.collect()
}

pub(crate) fn file_pool_put(
    c: &mut Connection,
    diff_id: &str,
    entries: &[([u8; 32], String)],
) -> rusqlite::Result<()> {
    let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    {
        let mut st = tx.prepare_cached(
            "INSERT OR IGNORE INTO file_pool (hash, diff_id, path) VALUES (?1, ?2, ?3)",
        )?;
        for (hash, path) in entries {
            st.execute(params![&hash[..], diff_id, path])?;
        }
    }
    tx.commit()
}

pub(crate) fn file_pool_forget(c: &mut Connection, diff_id: &str) -> rusqlite::Result<()> {
    c.execute("DELETE FROM file_pool WHERE diff_id = ?1", [diff_id])?;
    c.execute("DELETE FROM last_results WHERE diff_id = ?1", [diff_id])
        .map(|_| ())
}

pub(crate) fn last_result_get(c: &mut Connection, op: &str) -> rusqlite::Result<Option<String>> {
    c.query_row(
        "SELECT diff_id FROM last_results WHERE op = ?1",
        [op],
        |r| r.get(0),
    )
    .optional()
}

pub(crate) fn last_result_put(c: &mut Connection, op: &str, diff_id: &str) -> rusqlite::Result<()> {
    c.execute(
        "INSERT INTO last_results (op, diff_id) VALUES (?1, ?2)
         ON CONFLICT(op) DO UPDATE SET diff_id = excluded.diff_id",
        params![op, diff_id],
    )
    .map(|_| ())
}
