//! The file pool and the reuse of the last result (see the module docs of [`super`]): a
//! regular file a COPY writes becomes a hard link to a committed file with the same content
//! and metadata when it may, else a copy.

use super::actions::set_file_meta;
use std::ffi::OsString;
use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Context files at least this large are pooled (see the module docs).
pub const POOL_MIN_SIZE: u64 = 1 << 20;

/// A large context file the store has hashed, and committed files with the same content.
#[derive(Clone, Debug)]
pub struct PoolHint {
    /// Its path relative to the context root.
    pub rel: String,
    /// Its `lstat` identity and content hash when it was hashed (trusted only while the
    /// file still matches it).
    pub entry: kiln_cache::StatEntry,
    /// Files in committed snapshots with that content (they may have gone or differ in
    /// metadata: checked before use).
    pub candidates: Vec<PathBuf>,
}

/// A placeholder written through the overlay, to become a hard link to `candidate`.
pub(super) struct Deferred {
    pub(super) target: PathBuf,
    pub(super) candidate: PathBuf,
    pub(super) hash: [u8; 32],
}

/// Committed inodes already linked into the layer being made (see "Reusing the last
/// result").
#[derive(Default)]
pub(super) struct Claims(std::sync::Mutex<std::collections::HashSet<(u64, u64)>>);

impl Claims {
    /// Whether `md`'s inode may be linked into the layer (it was not yet).
    pub(super) fn claim(&self, md: &fs::Metadata) -> bool {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert((md.dev(), md.ino()))
    }
}

/// Whether `candidate` (a committed file) is exactly what copying a file with `md` and
/// the wanted owner and mode would make. (Pooled files were written by COPYs, which set no
/// xattrs, so there are none to compare.)
pub(super) fn same_file(
    candidate: &Path,
    md: &fs::Metadata,
    mode: u32,
    owner: (u32, u32),
) -> Option<fs::Metadata> {
    fs::symlink_metadata(candidate).ok().filter(|c| {
        c.is_file()
            && c.size() == md.size()
            && c.mode() & 0o7777 == mode
            && (c.uid(), c.gid()) == owner
            && c.mtime() == md.mtime()
            && c.mtime_nsec() == md.mtime_nsec()
    })
}

/// Replaces the placeholder at `path` (in the upper dir, the overlay unmounted) with a hard
/// link to `candidate`, keeping the parent directory's timestamps. When the link cannot be
/// made (another filesystem, too many links), the content is copied into the placeholder.
pub(super) fn link_placeholder(path: &Path, candidate: &Path) -> io::Result<()> {
    let parent = path.parent().unwrap_or(Path::new("/"));
    let pmd = fs::symlink_metadata(parent)?;
    let mut name = OsString::from(".kiln-link-");
    name.push(path.file_name().unwrap_or_default());
    let tmp = parent.join(name);
    if let Ok(()) = fs::hard_link(candidate, &tmp) {
        if let Err(e) = fs::rename(&tmp, path) {
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
    } else {
        let md = fs::symlink_metadata(path)?;
        let mut to = fs::OpenOptions::new().write(true).open(path)?;
        io::copy(&mut fs::File::open(candidate)?, &mut to)?;
        let t = filetime::FileTime::from_last_modification_time(&md);
        filetime::set_file_times(path, t, t)?;
    }
    filetime::set_file_times(
        parent,
        filetime::FileTime::from_last_access_time(&pmd),
        filetime::FileTime::from_last_modification_time(&pmd),
    )
}

/// What copying a regular file leaves for the report.
pub(super) enum Outcome {
    /// A pooled file was copied: (content hash, target).
    Pooled([u8; 32], PathBuf),
    /// A pooled file became a hard link to a committed file: (content hash, target).
    Linked([u8; 32], PathBuf),
    /// A placeholder for a hard link was written.
    Deferred(Deferred),
    /// A file became a hard link to the same file of the op's last result.
    Reused,
}

/// What a pooled file with a matching committed file becomes.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum LinkMode<'a> {
    /// A copy (links are not allowed here).
    No,
    /// A placeholder, linked once the overlay is unmounted.
    Placeholder,
    /// A hard link, made now (`target` is in the upper dir itself); so is a link to
    /// `previous` (the same path in the op's last result) when it is the same small file.
    Now { previous: Option<&'a Path> },
}

/// Copies the regular file `src` (whose metadata is `md`) to `target` with `owner` and
/// `mode` (and `md`'s mtime). A pooled file (`hint`) whose content and metadata a committed
/// file already has becomes a link to it as `link` says, unless `claims` has its inode.
pub(super) fn write_file(
    src: &Path,
    target: &Path,
    md: &fs::Metadata,
    (owner, mode): ((u32, u32), u32),
    hint: Option<&PoolHint>,
    (link, claims): (LinkMode<'_>, &Claims),
) -> io::Result<Option<Outcome>> {
    if let LinkMode::Now { previous: Some(p) } = link {
        if md.size() < POOL_MIN_SIZE {
            if let Some(pmd) = same_file(p, md, mode, owner) {
                let data = fs::read(src)?;
                if data.len() as u64 != md.size() {
                    return Err(io::Error::other("file changed while being copied"));
                }
                if fs::read(p).is_ok_and(|d| d == data)
                    && claims.claim(&pmd)
                    && fs::hard_link(p, target).is_ok()
                {
                    return Ok(Some(Outcome::Reused));
                }
                let mut to = fs::File::create(target)?;
                io::Write::write_all(&mut to, &data)?;
                set_file_meta(&to, md, owner, mode)?;
                return Ok(None);
            }
        }
    }
    let candidate = hint.filter(|_| link != LinkMode::No).and_then(|h| {
        h.candidates
            .iter()
            .find_map(|c| same_file(c, md, mode, owner).map(|cmd| (c, cmd)))
    });
    if let (Some(h), Some((c, cmd))) = (hint, candidate) {
        if claims.claim(&cmd) {
            if link == LinkMode::Placeholder {
                let f = fs::File::create(target)?;
                set_file_meta(&f, md, owner, mode)?;
                return Ok(Some(Outcome::Deferred(Deferred {
                    target: target.to_path_buf(),
                    candidate: c.clone(),
                    hash: h.entry.hash,
                })));
            }
            // Another filesystem or too many links: copy instead.
            if fs::hard_link(c, target).is_ok() {
                return Ok(Some(Outcome::Linked(h.entry.hash, target.to_path_buf())));
            }
        }
    }
    let mut from = fs::File::open(src)?;
    let mut to = fs::File::create(target)?;
    io::copy(&mut from, &mut to)?;
    set_file_meta(&to, md, owner, mode)?;
    Ok(hint.map(|h| Outcome::Pooled(h.entry.hash, target.to_path_buf())))
}
