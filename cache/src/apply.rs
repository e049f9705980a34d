//! OCI layer blob → snapshot directory (overlay lower dir).
//!
//! A hand-written unpack loop rather than `tar::Archive::unpack`, because OCI whiteouts
//! must become overlay whiteouts and because every path is resolved strictly inside the
//! destination: no `..`, absolute names read relative to it, and no existing symlink is
//! ever followed (each parent component must be a real directory). Every file is made and
//! changed through the fd of its parent directory ([`kiln_fsroot`]), and directory modes
//! and times, set once the layer is complete, are set on a directory looked up again
//! without following symlinks: a later entry that replaced the directory with a symlink
//! cannot redirect them. The same loop, with whiteouts as deletions, flattens an image into
//! a directory for the rootfs exporters ([`apply_merged`]).

use crate::diff::{
    OVERLAY_OPAQUE, OVERLAY_USER_XATTR_PREFIX, OVERLAY_XATTR_PREFIX, WH_OPAQUE, WH_PREFIX,
};
use crate::{io_err, Error, Result};
use kiln_fsroot::{Dir, FileType, Follow, Root, SELF};
use nix::sys::time::TimeSpec;
use sha2::{Digest as _, Sha256};
use std::collections::HashSet;
use std::ffi::{OsStr, OsString};
use std::fs::{File, Permissions};
use std::io::{self, BufRead, BufReader, Read};
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use tar::EntryType;

/// Hashes (sha256) everything read through it.
struct HashReader<R> {
    inner: R,
    hasher: Sha256,
}

impl<R: Read> Read for HashReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// Metadata of one entry, with PAX overrides applied.
struct Meta {
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: i64,
    xattrs: Vec<(OsString, Vec<u8>)>,
}

/// A directory whose mode and mtime are applied once everything inside it exists.
struct PendingDir {
    /// Relative to the root.
    path: PathBuf,
    depth: usize,
    mode: u32,
    mtime: i64,
}

/// The uncompressed stream of a layer blob: gzip and zstd are recognised by their magic
/// bytes, anything else is read as a plain tar.
pub(crate) fn decompress(blob: File) -> io::Result<Box<dyn Read + Send>> {
    let mut r = BufReader::with_capacity(256 * 1024, blob);
    let magic = r.fill_buf()?;
    Ok(if magic.starts_with(&[0x1f, 0x8b]) {
        Box::new(flate2::read::MultiGzDecoder::new(r))
    } else if magic.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Box::new(zstd::Decoder::with_buffer(r)?)
    } else {
        Box::new(r)
    })
}

/// Extracts the layer blob `blob` (gzip, zstd or plain tar) into the empty dir `dst`,
/// checking that the uncompressed stream hashes to `diff_id`.
pub(crate) fn extract(blob: File, dst: &Path, digest: &str, diff_id: &str) -> Result<()> {
    let bad = |message: String| Error::BadLayer {
        digest: digest.to_string(),
        message,
    };
    let decoded = decompress(blob).map_err(|e| bad(format!("read: {e}")))?;
    let hr = HashReader {
        inner: decoded,
        hasher: Sha256::new(),
    };
    // The snapshot root is the container's `/` unless the layer says otherwise.
    std::fs::set_permissions(dst, Permissions::from_mode(0o755)).map_err(io_err(dst))?;

    let mut ar = tar::Archive::new(hr);
    unpack(&mut ar, dst, Whiteouts::Overlay, digest)?;

    // Hash whatever follows the end-of-archive marker too: the diff id covers all of it.
    let mut hr = ar.into_inner();
    io::copy(&mut hr, &mut io::sink()).map_err(|e| bad(format!("read: {e}")))?;
    let actual = format!("sha256:{}", hex::encode(hr.hasher.finalize()));
    if actual != diff_id {
        return Err(bad(format!(
            "diff id mismatch: expected {diff_id}, uncompressed content has {actual}"
        )));
    }
    Ok(())
}

/// Applies the uncompressed layer tar `tar` (the layer `digest`, for messages) onto the
/// directory `dst`, which holds the layers below it: whiteouts delete what they name, an
/// opaque whiteout empties its directory of everything earlier layers put there, and an
/// entry replaces what is at its path (a directory only by a non-directory). A path whose
/// parent is a non-directory from an earlier layer gets a directory there, as overlayfs
/// shows such a layer. Nothing outside `dst` is read or changed, whatever the layers hold:
/// symlinks are never followed (the result is what `kiln run` shows of the image).
pub fn apply_merged(tar: impl Read, dst: &Path, digest: &str) -> Result<()> {
    let mut ar = tar::Archive::new(tar);
    unpack(&mut ar, dst, Whiteouts::Delete, digest)
}

/// Unpacks one uncompressed layer tar into the empty directory `dst` as a snapshot (overlay
/// whiteouts), without the diff id check: what [`crate::Store::snapshot`] does after
/// decompressing, for the fuzz target (cache/fuzz).
#[doc(hidden)]
pub fn apply_snapshot(tar: impl Read, dst: &Path, digest: &str) -> Result<()> {
    let mut ar = tar::Archive::new(tar);
    unpack(&mut ar, dst, Whiteouts::Overlay, digest)
}

/// What OCI whiteouts become.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Whiteouts {
    /// Overlay whiteouts (0:0 char devices, the opaque xattr): a snapshot, one layer alone,
    /// into an empty directory. Every parent must be a real directory of this layer.
    Overlay,
    /// Deletions of what earlier layers put into the same directory (a flattened rootfs).
    Delete,
}

fn unpack<R: Read>(
    ar: &mut tar::Archive<R>,
    dst: &Path,
    whiteouts: Whiteouts,
    digest: &str,
) -> Result<()> {
    let bad = |message: String| Error::BadLayer {
        digest: digest.to_string(),
        message,
    };
    let root = Root::open(dst).map_err(io_err(dst))?;
    let mut u = Unpacker {
        root: &root,
        dst,
        whiteouts,
        pending: Vec::new(),
        cached: None,
        written: HashSet::new(),
    };
    let conv = |e| match e {
        Unpack::Bad(m) => bad(m),
        Unpack::Io(path, source) => Error::Io { path, source },
    };
    let entries = ar.entries().map_err(|e| bad(format!("tar: {e}")))?;
    for entry in entries {
        let entry = entry.map_err(|e| bad(format!("tar: {e}")))?;
        u.entry(entry).map_err(conv)?;
    }
    u.cached = None;
    // Deepest first, so setting a child's mtime does not disturb its parent's afterwards.
    u.pending.sort_by_key(|d| std::cmp::Reverse(d.depth));
    for d in &u.pending {
        // Resolved again, never following a symlink: a later entry of the layer may have
        // replaced the directory (or one of its parents) with a symlink, whose target must
        // not get the directory's mode and times. Such a directory is gone: skip it.
        let dir = match root.open_dir(&d.path, Follow::Never) {
            Ok(dir) => dir,
            Err(e) if gone(&e) => continue,
            Err(e) => return Err(conv(Unpack::Io(dst.join(&d.path), e))),
        };
        let here = OsStr::new(SELF);
        dir.set_mode(here, d.mode)
            .and_then(|()| dir.set_times(here, d.mtime))
            .map_err(|e| conv(Unpack::Io(dst.join(&d.path), e)))?;
    }
    Ok(())
}

/// A lookup error that means "not there as a real directory" (missing, a symlink, a file).
fn gone(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::ENOENT | libc::ELOOP | libc::ENOTDIR | libc::EXDEV)
    )
}

enum Unpack {
    Bad(String),
    Io(PathBuf, io::Error),
}

/// Splits an archive path into safe components (`.`, empty and leading `/` dropped).
fn clean_path(raw: &[u8]) -> Result<Vec<&OsStr>, Unpack> {
    let mut out = Vec::new();
    for c in raw.split(|&b| b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => {
                return Err(Unpack::Bad(format!(
                    "path {:?} escapes the layer",
                    String::from_utf8_lossy(raw)
                )))
            }
            c => out.push(OsStr::from_bytes(c)),
        }
    }
    Ok(out)
}

fn rel(comps: &[&OsStr]) -> PathBuf {
    comps.iter().collect()
}

fn meta<R: Read>(entry: &mut tar::Entry<'_, R>) -> Result<Meta, Unpack> {
    let h = entry.header();
    let bad = |what: &str, e: io::Error| Unpack::Bad(format!("bad {what} in header: {e}"));
    let mut m = Meta {
        mode: h.mode().map_err(|e| bad("mode", e))? & 0o7777,
        // Some writers leave these fields blank; read blank as 0 like other unpackers.
        uid: h.uid().unwrap_or(0) as u32,
        gid: h.gid().unwrap_or(0) as u32,
        mtime: h.mtime().unwrap_or(0) as i64,
        xattrs: Vec::new(),
    };
    if let Some(exts) = entry
        .pax_extensions()
        .map_err(|e| Unpack::Bad(format!("pax: {e}")))?
    {
        for ext in exts {
            let ext = ext.map_err(|e| Unpack::Bad(format!("pax: {e}")))?;
            let Ok(key) = ext.key() else { continue };
            let value = ext.value_bytes();
            let num = || std::str::from_utf8(value).ok();
            match key {
                "uid" => {
                    if let Some(v) = num().and_then(|s| s.parse().ok()) {
                        m.uid = v;
                    }
                }
                "gid" => {
                    if let Some(v) = num().and_then(|s| s.parse().ok()) {
                        m.gid = v;
                    }
                }
                "mtime" => {
                    // Seconds, possibly with a fraction.
                    if let Some(v) = num()
                        .and_then(|s| s.split('.').next())
                        .and_then(|s| s.parse().ok())
                    {
                        m.mtime = v;
                    }
                }
                k => {
                    if let Some(name) = k.strip_prefix("SCHILY.xattr.") {
                        // A layer must not smuggle in overlayfs' own attributes (redirects,
                        // opaque markers other than via `.wh..wh..opq`).
                        if !name.starts_with(OVERLAY_XATTR_PREFIX)
                            && !name.starts_with(OVERLAY_USER_XATTR_PREFIX)
                        {
                            m.xattrs.push((name.into(), value.to_vec()));
                        }
                    }
                }
            }
        }
    }
    Ok(m)
}

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Unprivileged, files keep our own owner (`EPERM` ignored).
fn owner_result(r: io::Result<()>) -> io::Result<()> {
    match r {
        Err(e) if e.raw_os_error() == Some(libc::EPERM) && !is_root() => Ok(()),
        r => r,
    }
}

/// Attributes the filesystem (or, unprivileged, we) cannot carry are dropped, like other
/// unpackers do.
fn xattr_result(r: io::Result<()>) -> io::Result<()> {
    match r {
        Err(e)
            if matches!(
                e.raw_os_error(),
                Some(libc::ENOTSUP | libc::EPERM | libc::EACCES)
            ) =>
        {
            Ok(())
        }
        r => r,
    }
}

/// One layer being unpacked into a [`Root`]. Every file is created, removed and changed
/// through the fd of its parent directory, which was reached from the root's fd without
/// following a symlink.
struct Unpacker<'a> {
    root: &'a Root,
    dst: &'a Path,
    whiteouts: Whiteouts,
    pending: Vec<PendingDir>,
    /// The last parent directory used, by its components: tars list a directory's entries
    /// together, so most entries need no lookup at all. Dropped whenever a directory is
    /// removed (the only way a cached fd could stop being the directory at its path).
    cached: Option<(Vec<OsString>, Dir)>,
    /// Paths this layer wrote (`Delete` only): an opaque whiteout keeps them.
    written: HashSet<PathBuf>,
}

fn io_at(dst: &Path, comps: &[&OsStr]) -> impl FnOnce(io::Error) -> Unpack {
    let path = dst.join(rel(comps));
    move |e| Unpack::Io(path, e)
}

impl Unpacker<'_> {
    fn io(&self, comps: &[&OsStr]) -> impl FnOnce(io::Error) -> Unpack {
        io_at(self.dst, comps)
    }

    /// The directory [`Unpacker::parent`] returned last.
    fn last_parent(cached: &Option<(Vec<OsString>, Dir)>) -> &Dir {
        &cached.as_ref().expect("a parent was looked up").1
    }

    /// The directory at `parents`, made when missing (`create`).
    fn parent(&mut self, parents: &[&OsStr], create: bool) -> Result<&Dir, Unpack> {
        let hit = matches!(&self.cached, Some((c, _)) if c.len() == parents.len() && c.iter().zip(parents).all(|(a, b)| a == b));
        if !hit {
            let dir = self.lookup(parents, create)?;
            self.cached = Some((parents.iter().map(|c| c.to_os_string()).collect(), dir));
        }
        Ok(&self.cached.as_ref().expect("just set").1)
    }

    fn lookup(&self, parents: &[&OsStr], create: bool) -> Result<Dir, Unpack> {
        let path = rel(parents);
        let r = match (self.whiteouts, create) {
            (_, false) => self.root.open_dir(&path, Follow::Never),
            (Whiteouts::Overlay, true) => self.root.mkdir_all(&path, 0o755, Follow::Never),
            (Whiteouts::Delete, true) => return self.replace_parents(parents),
        };
        r.map_err(|e| {
            if gone(&e) && (create || e.raw_os_error() != Some(libc::ENOENT)) {
                Unpack::Bad(format!(
                    "{} is not a directory but the layer puts entries under it",
                    self.dst.join(&path).display()
                ))
            } else {
                Unpack::Io(self.dst.join(&path), e)
            }
        })
    }

    /// The directory at `parents` in a flattened rootfs: a symlink or file an earlier layer
    /// left at one of these names is replaced by a directory, never followed.
    fn replace_parents(&self, parents: &[&OsStr]) -> Result<Dir, Unpack> {
        match self.root.open_dir(rel(parents), Follow::Never) {
            Ok(d) => return Ok(d),
            Err(e) if gone(&e) => {}
            Err(e) => return Err(self.io(parents)(e)),
        }
        let mut dir = self.root.dir().try_clone().map_err(self.io(&[]))?;
        for (i, c) in parents.iter().enumerate() {
            let here = &parents[..=i];
            dir = match dir.open_dir(c) {
                Ok(d) => d,
                Err(e) if gone(&e) => {
                    if e.raw_os_error() != Some(libc::ENOENT) {
                        dir.remove_all(c).map_err(self.io(here))?;
                    }
                    dir.mkdir(c, 0o755).map_err(self.io(here))?;
                    dir.open_dir(c).map_err(self.io(here))?
                }
                Err(e) => return Err(self.io(here)(e)),
            };
        }
        Ok(dir)
    }

    /// Removes whatever is at `name` in `dir` (never following a symlink), unless it is a
    /// directory and `keep_dir`. Returns whether a directory was kept.
    fn clear(&mut self, comps: &[&OsStr], keep_dir: bool) -> Result<bool, Unpack> {
        let (name, parents) = comps.split_last().expect("a name");
        let dst = self.dst;
        self.parent(parents, false)?;
        let dir = Self::last_parent(&self.cached);
        match dir.file_type(name).map_err(io_at(dst, comps))? {
            Some(FileType::Directory) => {
                if keep_dir {
                    return Ok(true);
                }
                // The cached fd may be this directory or one below it.
                let (_, dir) = self.cached.take().expect("looked up");
                dir.remove_all(name).map_err(io_at(dst, comps))?;
            }
            Some(_) => {
                dir.remove_file(name).map_err(io_at(dst, comps))?;
            }
            None => {}
        }
        Ok(false)
    }

    fn set_xattrs(
        &self,
        dir: &Dir,
        name: &OsStr,
        comps: &[&OsStr],
        m: &Meta,
    ) -> Result<(), Unpack> {
        if self.whiteouts == Whiteouts::Delete {
            // A flattened rootfs carries no xattrs (as before; `-o type=tar` writes none).
            return Ok(());
        }
        for (k, v) in &m.xattrs {
            xattr_result(dir.set_xattr(name, k, v)).map_err(self.io(comps))?;
        }
        Ok(())
    }

    fn entry<R: Read>(&mut self, mut entry: tar::Entry<'_, R>) -> Result<(), Unpack> {
        let raw = entry.path_bytes().into_owned();
        let comps = clean_path(&raw)?;
        let ty = entry.header().entry_type();
        let m = meta(&mut entry)?;

        // The root itself (`./` in `tar -C dir -cf - .` archives).
        let Some((last, parents)) = comps.split_last() else {
            if ty == EntryType::Directory {
                let root = self.root.dir();
                let here = OsStr::new(SELF);
                owner_result(root.set_owner(here, m.uid, m.gid)).map_err(self.io(&[]))?;
                self.set_xattrs(root, here, &[], &m)?;
                self.pending.push(PendingDir {
                    path: PathBuf::new(),
                    depth: 0,
                    mode: m.mode,
                    mtime: m.mtime,
                });
            }
            return Ok(());
        };
        let name = last.as_bytes();

        // OCI whiteouts.
        if name == WH_OPAQUE.as_bytes() {
            return self.opaque(parents);
        }
        if let Some(hidden) = name.strip_prefix(WH_PREFIX.as_bytes()) {
            if hidden.starts_with(WH_PREFIX.as_bytes()) || hidden.is_empty() {
                // Other AUFS metadata (`.wh..wh.plnk` …): meaningless here.
                return Ok(());
            }
            return self.whiteout(parents, OsStr::from_bytes(hidden), &m);
        }

        if ty.is_hard_link() {
            // Checked before anything is created for it.
            return self.hard_link(&mut entry, &comps);
        }
        let known = matches!(
            ty,
            EntryType::Directory
                | EntryType::Regular
                | EntryType::Continuous
                | EntryType::GNUSparse
                | EntryType::Symlink
                | EntryType::Char
                | EntryType::Block
                | EntryType::Fifo
        );
        if !known {
            // Global PAX headers and anything else without a filesystem meaning.
            return Ok(());
        }
        self.parent(parents, true)?;
        if self.whiteouts == Whiteouts::Delete {
            self.written.insert(rel(&comps));
        }
        let kept = self.clear(&comps, ty == EntryType::Directory)?;
        self.parent(parents, true)?;
        let dst = self.dst;
        let dir = Self::last_parent(&self.cached);
        let ioe = || io_at(dst, &comps);
        match ty {
            EntryType::Directory => {
                if !kept {
                    dir.mkdir(last, 0o777).map_err(ioe())?;
                }
                owner_result(dir.set_owner(last, m.uid, m.gid)).map_err(ioe())?;
                self.set_xattrs(dir, last, &comps, &m)?;
                self.pending.push(PendingDir {
                    path: rel(&comps),
                    depth: comps.len(),
                    mode: m.mode,
                    mtime: m.mtime,
                });
            }
            EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => {
                let mut f = dir.create_file(last, 0o600).map_err(ioe())?;
                io::copy(&mut entry, &mut f).map_err(ioe())?;
                owner_result(std::os::unix::fs::fchown(&f, Some(m.uid), Some(m.gid)))
                    .map_err(ioe())?;
                // After chown (which clears setuid/setgid bits).
                f.set_permissions(Permissions::from_mode(m.mode))
                    .map_err(ioe())?;
                // After chown too (which clears security.capability).
                if self.whiteouts == Whiteouts::Overlay {
                    for (k, v) in &m.xattrs {
                        xattr_result(xattr::FileExt::set_xattr(&f, k, v)).map_err(ioe())?;
                    }
                }
                let t = TimeSpec::new(m.mtime, 0);
                nix::sys::stat::futimens(f.as_raw_fd(), &t, &t).map_err(|e| ioe()(e.into()))?;
            }
            EntryType::Symlink => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| {
                        Unpack::Bad(format!(
                            "symlink {} has no target",
                            self.dst.join(rel(&comps)).display()
                        ))
                    })?
                    .into_owned();
                dir.symlink(last, OsStr::from_bytes(&target))
                    .map_err(ioe())?;
                owner_result(dir.set_owner(last, m.uid, m.gid)).map_err(ioe())?;
                self.set_xattrs(dir, last, &comps, &m)?;
                dir.set_times(last, m.mtime).map_err(ioe())?;
            }
            _ => {
                let kind = match ty {
                    EntryType::Char => FileType::CharacterDevice,
                    EntryType::Block => FileType::BlockDevice,
                    _ => FileType::Fifo,
                };
                let h = entry.header();
                let dev = if ty == EntryType::Fifo {
                    0
                } else {
                    let major = h.device_major().ok().flatten().unwrap_or(0);
                    let minor = h.device_minor().ok().flatten().unwrap_or(0);
                    libc::makedev(major, minor)
                };
                dir.mknod(last, kind, 0, dev).map_err(ioe())?;
                owner_result(dir.set_owner(last, m.uid, m.gid)).map_err(ioe())?;
                dir.set_mode(last, m.mode).map_err(ioe())?;
                self.set_xattrs(dir, last, &comps, &m)?;
                dir.set_times(last, m.mtime).map_err(ioe())?;
            }
        }
        Ok(())
    }

    fn hard_link<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        comps: &[&OsStr],
    ) -> Result<(), Unpack> {
        let shown = self.dst.join(rel(comps));
        let target = entry
            .link_name_bytes()
            .ok_or_else(|| Unpack::Bad(format!("hard link {} has no target", shown.display())))?
            .into_owned();
        let tcomps = clean_path(&target)?;
        let Some((tname, tparents)) = tcomps.split_last() else {
            return Err(Unpack::Bad(format!(
                "hard link {} to the root",
                shown.display()
            )));
        };
        if tcomps == comps {
            return Ok(());
        }
        let (name, parents) = comps.split_last().expect("a name");
        let tdir = self.lookup(tparents, false)?;
        let tshown = self.dst.join(rel(&tcomps));
        match tdir.file_type(tname).map_err(self.io(&tcomps))? {
            Some(t) if t != FileType::Directory => {}
            _ => {
                return Err(Unpack::Bad(format!(
                    "hard link {} to missing or directory target {}",
                    shown.display(),
                    tshown.display()
                )))
            }
        }
        self.parent(parents, true)?;
        if self.whiteouts == Whiteouts::Delete {
            self.written.insert(rel(comps));
        }
        self.clear(comps, false)?;
        let err = self.io(comps);
        let dir = self.parent(parents, true)?;
        // linkat(2) without AT_SYMLINK_FOLLOW: links a symlink itself, never its target.
        dir.hard_link(name, &tdir, tname).map_err(err)
    }

    fn opaque(&mut self, parents: &[&OsStr]) -> Result<(), Unpack> {
        match self.whiteouts {
            Whiteouts::Overlay => {
                let err = self.io(parents);
                let dir = self.parent(parents, true)?;
                dir.set_xattr(OsStr::new(SELF), OsStr::new(OVERLAY_OPAQUE), b"y")
                    .map_err(err)
            }
            Whiteouts::Delete => {
                let base = rel(parents);
                // Only a real directory is emptied: an opaque marker below a symlink (or
                // a missing directory) empties nothing.
                let dir = match self.root.open_dir(&base, Follow::Never) {
                    Ok(dir) => dir,
                    Err(e) if gone(&e) => return Ok(()),
                    Err(e) => return Err(self.io(parents)(e)),
                };
                // Directories below this one go: so may the cached fd.
                self.cached = None;
                let written = &self.written;
                dir.clear(|n| written.contains(&base.join(n)))
                    .map_err(self.io(parents))
            }
        }
    }

    fn whiteout(&mut self, parents: &[&OsStr], hidden: &OsStr, m: &Meta) -> Result<(), Unpack> {
        let mut comps = parents.to_vec();
        comps.push(hidden);
        match self.whiteouts {
            Whiteouts::Overlay => {
                let dst = self.dst;
                self.parent(parents, true)?;
                let dir = Self::last_parent(&self.cached);
                if dir.lstat(hidden).map_err(io_at(dst, &comps))?.is_some() {
                    // The layer itself has this path: a whiteout only hides lower layers'.
                    return Ok(());
                }
                let err = io_at(dst, &comps);
                dir.mknod(hidden, FileType::CharacterDevice, 0, 0)
                    .and_then(|()| owner_result(dir.set_owner(hidden, m.uid, m.gid)))
                    .map_err(err)
            }
            Whiteouts::Delete => {
                // Only what is there through real directories: a whiteout below a symlink
                // (or a missing directory) deletes nothing.
                match self.root.open_dir(rel(parents), Follow::Never) {
                    Ok(_) => {}
                    Err(e) if gone(&e) => return Ok(()),
                    Err(e) => return Err(self.io(parents)(e)),
                }
                self.clear(&comps, false).map(|_| ())
            }
        }
    }
}

#[cfg(test)]
#[path = "apply_tests.rs"]
mod tests;
