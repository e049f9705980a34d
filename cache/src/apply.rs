//! OCI layer blob → snapshot directory (overlay lower dir).
//!
//! A hand-written unpack loop rather than `tar::Archive::unpack`, because OCI whiteouts
//! must become overlay whiteouts and because every path is resolved strictly inside the
//! destination: no `..`, no absolute names, and no existing symlink is ever followed (each
//! parent component must be a real directory).

use crate::diff::{
    OVERLAY_OPAQUE, OVERLAY_USER_XATTR_PREFIX, OVERLAY_XATTR_PREFIX, WH_OPAQUE, WH_PREFIX,
};
use crate::{io_err, Error, Result};
use nix::sys::stat::{Mode, SFlag};
use nix::sys::time::TimeSpec;
use sha2::{Digest as _, Sha256};
use std::ffi::{OsStr, OsString};
use std::fs::{File, Permissions};
use std::io::{self, BufRead, BufReader, Read};
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
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
    let mut pending: Vec<PendingDir> = Vec::new();
    {
        let entries = ar.entries().map_err(|e| bad(format!("tar: {e}")))?;
        for entry in entries {
            let entry = entry.map_err(|e| bad(format!("tar: {e}")))?;
            unpack_entry(entry, dst, &mut pending).map_err(|e| match e {
                Unpack::Bad(m) => bad(m),
                Unpack::Io(path, source) => Error::Io { path, source },
            })?;
        }
    }
    // Deepest first, so setting a child's mtime does not disturb its parent's afterwards.
    pending.sort_by_key(|d| std::cmp::Reverse(d.depth));
    for d in &pending {
        std::fs::set_permissions(&d.path, Permissions::from_mode(d.mode))
            .map_err(io_err(&d.path))?;
        set_times(&d.path, d.mtime, false).map_err(io_err(&d.path))?;
    }

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

enum Unpack {
    Bad(String),
    Io(PathBuf, io::Error),
}

fn ioe(path: &Path) -> impl FnOnce(io::Error) -> Unpack + '_ {
    move |e| Unpack::Io(path.to_path_buf(), e)
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

fn join(dst: &Path, comps: &[&OsStr]) -> PathBuf {
    let mut p = dst.to_path_buf();
    p.extend(comps);
    p
}

/// Makes sure every component of `comps` below `dst` is a real directory (not a symlink),
/// creating missing ones (0755) when `create`.
fn ensure_dirs(dst: &Path, comps: &[&OsStr], create: bool) -> Result<(), Unpack> {
    let mut p = dst.to_path_buf();
    for c in comps {
        p.push(c);
        match std::fs::symlink_metadata(&p) {
            Ok(md) if md.is_dir() => {}
            Ok(_) => {
                return Err(Unpack::Bad(format!(
                    "{} is not a directory but the layer puts entries under it",
                    p.display()
                )))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound && create => {
                std::fs::create_dir(&p).map_err(ioe(&p))?;
                std::fs::set_permissions(&p, Permissions::from_mode(0o755)).map_err(ioe(&p))?;
            }
            Err(e) => return Err(Unpack::Io(p, e)),
        }
    }
    Ok(())
}

/// Removes whatever is at `path` (never following a symlink), unless it is a directory
/// and `keep_dir`. Returns whether a directory was kept.
fn clear(path: &Path, keep_dir: bool) -> Result<bool, Unpack> {
    match std::fs::symlink_metadata(path) {
        Ok(md) if md.is_dir() => {
            if keep_dir {
                return Ok(true);
            }
            std::fs::remove_dir_all(path).map_err(ioe(path))?;
        }
        Ok(_) => std::fs::remove_file(path).map_err(ioe(path))?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(Unpack::Io(path.to_path_buf(), e)),
    }
    Ok(false)
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

fn chown(path: &Path, uid: u32, gid: u32) -> io::Result<()> {
    match std::os::unix::fs::lchown(path, Some(uid), Some(gid)) {
        Err(e) if e.raw_os_error() == Some(libc::EPERM) && !is_root() => Ok(()),
        r => r,
    }
}

fn set_xattrs(path: &Path, xattrs: &[(OsString, Vec<u8>)]) -> io::Result<()> {
    for (k, v) in xattrs {
        match xattr::set(path, k, v) {
            // Attributes the filesystem (or, unprivileged, we) cannot carry are dropped,
            // like other unpackers do.
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::ENOTSUP) | Some(libc::EPERM) | Some(libc::EACCES)
                ) => {}
            r => r?,
        }
    }
    Ok(())
}

fn set_times(path: &Path, mtime: i64, nofollow: bool) -> io::Result<()> {
    let t = TimeSpec::new(mtime, 0);
    let flag = if nofollow {
        nix::sys::stat::UtimensatFlags::NoFollowSymlink
    } else {
        nix::sys::stat::UtimensatFlags::FollowSymlink
    };
    nix::sys::stat::utimensat(None, path, &t, &t, flag).map_err(io::Error::from)
}

fn unpack_entry<R: Read>(
    mut entry: tar::Entry<'_, R>,
    dst: &Path,
    pending: &mut Vec<PendingDir>,
) -> Result<(), Unpack> {
    let raw = entry.path_bytes().into_owned();
    let comps = clean_path(&raw)?;
    let ty = entry.header().entry_type();
    let m = meta(&mut entry)?;

    // The root itself (`./` in `tar -C dir -cf - .` archives).
    let Some((last, parents)) = comps.split_last() else {
        if ty == EntryType::Directory {
            chown(dst, m.uid, m.gid).map_err(ioe(dst))?;
            set_xattrs(dst, &m.xattrs).map_err(ioe(dst))?;
            pending.push(PendingDir {
                path: dst.to_path_buf(),
                depth: 0,
                mode: m.mode,
                mtime: m.mtime,
            });
        }
        return Ok(());
    };
    ensure_dirs(dst, parents, true)?;
    let path = join(dst, &comps);
    let name = last.as_bytes();

    // OCI whiteouts → overlay whiteouts.
    if name == WH_OPAQUE.as_bytes() {
        let dir = join(dst, parents);
        xattr::set(&dir, OVERLAY_OPAQUE, b"y").map_err(ioe(&dir))?;
        return Ok(());
    }
    if let Some(hidden) = name.strip_prefix(WH_PREFIX.as_bytes()) {
        if hidden.starts_with(WH_PREFIX.as_bytes()) || hidden.is_empty() {
            // Other AUFS metadata (`.wh..wh.plnk` …): meaningless here.
            return Ok(());
        }
        let target = join(dst, parents).join(OsStr::from_bytes(hidden));
        if std::fs::symlink_metadata(&target).is_ok() {
            // The layer itself has this path: a whiteout only hides lower layers'.
            return Ok(());
        }
        nix::sys::stat::mknod(&target, SFlag::S_IFCHR, Mode::empty(), 0)
            .map_err(|e| Unpack::Io(target.clone(), e.into()))?;
        chown(&target, m.uid, m.gid).map_err(ioe(&target))?;
        return Ok(());
    }

    match ty {
        EntryType::Directory => {
            if !clear(&path, true)? {
                std::fs::create_dir(&path).map_err(ioe(&path))?;
            }
            chown(&path, m.uid, m.gid).map_err(ioe(&path))?;
            set_xattrs(&path, &m.xattrs).map_err(ioe(&path))?;
            pending.push(PendingDir {
                path,
                depth: comps.len(),
                mode: m.mode,
                mtime: m.mtime,
            });
        }
        EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => {
            clear(&path, false)?;
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .custom_flags(libc::O_NOFOLLOW)
                .open(&path)
                .map_err(ioe(&path))?;
            io::copy(&mut entry, &mut f).map_err(ioe(&path))?;
            match std::os::unix::fs::fchown(&f, Some(m.uid), Some(m.gid)) {
                Err(e) if e.raw_os_error() != Some(libc::EPERM) || is_root() => {
                    return Err(Unpack::Io(path, e))
                }
                _ => {}
            }
            // After chown (which clears setuid/setgid bits).
            f.set_permissions(Permissions::from_mode(m.mode))
                .map_err(ioe(&path))?;
            // After chown too (which clears security.capability).
            set_xattrs(&path, &m.xattrs).map_err(ioe(&path))?;
            let t = TimeSpec::new(m.mtime, 0);
            nix::sys::stat::futimens(f.as_raw_fd(), &t, &t)
                .map_err(|e| Unpack::Io(path.clone(), e.into()))?;
        }
        EntryType::Symlink => {
            let target = entry
                .link_name_bytes()
                .ok_or_else(|| Unpack::Bad(format!("symlink {} has no target", path.display())))?
                .into_owned();
            clear(&path, false)?;
            std::os::unix::fs::symlink(OsStr::from_bytes(&target), &path).map_err(ioe(&path))?;
            chown(&path, m.uid, m.gid).map_err(ioe(&path))?;
            set_xattrs(&path, &m.xattrs).map_err(ioe(&path))?;
            set_times(&path, m.mtime, true).map_err(ioe(&path))?;
        }
        EntryType::Link => {
            let target = entry
                .link_name_bytes()
                .ok_or_else(|| Unpack::Bad(format!("hard link {} has no target", path.display())))?
                .into_owned();
            let tcomps = clean_path(&target)?;
            let Some((_, tparents)) = tcomps.split_last() else {
                return Err(Unpack::Bad(format!(
                    "hard link {} to the root",
                    path.display()
                )));
            };
            ensure_dirs(dst, tparents, false)?;
            let tpath = join(dst, &tcomps);
            if tpath == path {
                return Ok(());
            }
            match std::fs::symlink_metadata(&tpath) {
                Ok(md) if !md.is_dir() => {}
                _ => {
                    return Err(Unpack::Bad(format!(
                        "hard link {} to missing or directory target {}",
                        path.display(),
                        tpath.display()
                    )))
                }
            }
            clear(&path, false)?;
            // linkat(2) without AT_SYMLINK_FOLLOW: links a symlink itself, never its target.
            std::fs::hard_link(&tpath, &path).map_err(ioe(&path))?;
        }
        EntryType::Char | EntryType::Block | EntryType::Fifo => {
            let kind = match ty {
                EntryType::Char => SFlag::S_IFCHR,
                EntryType::Block => SFlag::S_IFBLK,
                _ => SFlag::S_IFIFO,
            };
            let h = entry.header();
            let dev = if ty == EntryType::Fifo {
                0
            } else {
                let major = h.device_major().ok().flatten().unwrap_or(0);
                let minor = h.device_minor().ok().flatten().unwrap_or(0);
                libc::makedev(major, minor)
            };
            clear(&path, false)?;
            nix::sys::stat::mknod(&path, kind, Mode::empty(), dev)
                .map_err(|e| Unpack::Io(path.clone(), e.into()))?;
            chown(&path, m.uid, m.gid).map_err(ioe(&path))?;
            std::fs::set_permissions(&path, Permissions::from_mode(m.mode)).map_err(ioe(&path))?;
            set_xattrs(&path, &m.xattrs).map_err(ioe(&path))?;
            set_times(&path, m.mtime, true).map_err(ioe(&path))?;
        }
        // Global PAX headers and anything else without a filesystem meaning.
        _ => {}
    }
    Ok(())
}
