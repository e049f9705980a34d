//! The metadata database (SQLite, WAL mode).

use crate::{now_secs, Error, ImageRecord, Result};
use rusqlite::{params, Connection, OptionalExtension};
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
";

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
        Some(rusqlite::ErrorCode::DatabaseBusy) | Some(rusqlite::ErrorCode::DatabaseLocked)
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
    let have: i64 = c.query_row(
        "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name IN ('images', 'cache', 'layers')",
        [],
        |r| r.get(0),
    )?;
    if have < 3 {
        if let Err(e) = c.execute_batch(&format!("BEGIN IMMEDIATE; {SCHEMA} COMMIT;")) {
            let _ = c.execute_batch("ROLLBACK");
            return Err(e);
        }
    }
    Ok(c)
}

pub(crate) fn set_image(c: &mut Connection, name: &str, digest: &str) -> rusqlite::Result<()> {
    c.execute(
        "INSERT INTO images (name, manifest_digest, created) VALUES (?1, ?2, ?3)
         ON CONFLICT(name) DO UPDATE SET manifest_digest = excluded.manifest_digest,
                                         created = excluded.created",
        params![name, digest, now_secs()],
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
