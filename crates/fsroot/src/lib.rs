//! Files under a root kiln does not trust, reached and changed only through file descriptors.
//!
//! Image layers, build contexts, container root filesystems and volumes are written by
//! strangers: any directory in them may be a symlink to `/etc`, and a path joined onto the
//! root (`root.join(p)`) can end anywhere on the host. This crate is the one place kiln turns
//! such a path into something it acts on. A [`Root`] is opened once as a directory fd; every
//! lookup starts from that fd and returns fds ([`Dir`] for directories, [`OwnedFd`] with
//! `O_PATH` for anything), and every change (create, remove, link, mode, owner, times,
//! xattrs) is made relative to a [`Dir`] fd with a single final name that is never followed.
//!
//! # Two ways to resolve
//!
//! * [`Follow::InRoot`]: symlinks are followed as if the root were `/` (absolute targets
//!   restart at the root, `..` stops at the root). For COPY destinations, WORKDIR, mount
//!   targets, reading an image's `/etc/passwd`: what a process inside the container would see.
//! * [`Follow::Never`]: every component must be a real directory; a symlink anywhere is an
//!   error (`ELOOP`), an absolute path is read relative to the root and a `..` that would
//!   climb out of it is an error (`EXDEV`). For layer application, where a tar entry below a
//!   symlink is malformed.
//!
//! # How
//!
//! `openat2(2)` with `RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS` (in-root) or
//! `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS` (never): the kernel resolves the whole path in one
//! call and refuses (`EAGAIN`, retried) when a concurrent rename could have moved the walk
//! out of the root. Where `openat2` is missing (Linux < 5.6, or a seccomp filter answering
//! `ENOSYS`/`EPERM`) the same semantics come from a walk of `O_PATH | O_NOFOLLOW` fds, one
//! `openat` per component, symlinks read with `readlinkat` and expanded by hand, `..` popped
//! off kiln's own stack of fds (never `openat(fd, "..")`). Creating directories
//! ([`Root::mkdir_all`]) uses the same walk, one component at a time.
//!
//! # What it guarantees, against which races
//!
//! * No path outside the root is ever opened, created, removed or changed through a path
//!   this crate resolved, whatever symlinks, `..` or absolute names the tree holds.
//! * Everything after the lookup acts on the fd: a directory swapped for a symlink after it
//!   was resolved does not redirect later operations (they land in the directory that was
//!   resolved, wherever it now is). The final name of an operation is never followed:
//!   `O_NOFOLLOW`/`O_EXCL` opens, `AT_SYMLINK_NOFOLLOW` for owner and times, `lsetxattr`,
//!   and a mode change first opens the name `O_PATH | O_NOFOLLOW` and refuses a symlink.
//! * With `openat2`, a concurrent rename of a directory out of the root during a lookup is
//!   detected by the kernel. The fallback walk does not detect that one race (a directory it
//!   holds an fd to being moved outside the root by another process while it walks); kiln's
//!   hostile input is file content, not a concurrent process, except for a running container
//!   writing into its own volume, and openat2 exists on every kernel kiln supports.
//!
//! # What it does not cover
//!
//! * Mount points inside the root (no `RESOLVE_NO_XDEV`): a bind mount the caller made is
//!   followed like a directory.
//! * Some syscalls only take a path (`mount(2)`, `chmod` of an `O_PATH` fd, `lsetxattr`):
//!   [`proc_fd_path`] gives `/proc/self/fd/N`, which the host's /proc resolves to the fd's
//!   own inode; it needs the host's /proc (kiln never uses a container's).
//! * Hard links: a file in the root may share its inode with any file on the same
//!   filesystem; this crate never opens a file for writing that it did not create itself
//!   unless the caller asks, and callers must not truncate/rewrite existing files in place.
//!
//! # Why not the `pathrs` crate
//!
//! `pathrs` (libpathrs) implements in-root resolution with the same two strategies and
//! hardened /proc access. It was judged and not used: its `Root` only knows in-root
//! semantics (no "every component must be a real directory" mode that layer application
//! needs), it pulls nine crates into every binary for what is here one file over `rustix`
//! (already in the dependency graph through `tempfile`), and its Rust API is still 0.x.

#![deny(missing_docs)]

/// File types, for [`Dir::mknod`] and [`Dir::file_type`].
pub use rustix::fs::FileType;
/// What [`Dir::lstat`] returns.
pub use rustix::fs::Stat;

use rustix::fs::{AtFlags, Mode, OFlags, ResolveFlags, Timespec, Timestamps};
use rustix::io::Errno;
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use walk::Goal;

/// How symlinks met during a lookup are treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Follow {
    /// Followed as if the root were `/`; `..` stops at the root.
    InRoot,
    /// Never followed: a symlink anywhere on the path is an error (`ELOOP`).
    Never,
}

/// `/proc/self/fd/N` for `fd`: for the syscalls that only take a path (`mount(2)`, `chmod`
/// or `setxattr` of an `O_PATH` fd). The host's /proc resolves it to the fd's own inode.
pub fn proc_fd_path(fd: impl AsFd) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", fd.as_fd().as_raw_fd()))
}

/// A directory reached without following a symlink that could lead out of its root: an
/// `O_PATH | O_DIRECTORY` fd. Every method acts on one name in this directory and never
/// follows it when it is a symlink.
#[derive(Debug)]
pub struct Dir {
    fd: OwnedFd,
}

/// The root everything is confined to, opened once.
#[derive(Debug)]
pub struct Root {
    dir: Dir,
    path: PathBuf,
    /// false: always the fallback walk (its tests).
    openat2: bool,
}

impl AsFd for Dir {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl AsRawFd for Dir {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

impl From<Dir> for OwnedFd {
    fn from(d: Dir) -> OwnedFd {
        d.fd
    }
}

fn nofollow_path() -> OFlags {
    OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC
}

/// Splits `path` into its last name and the part before it. `None` for a path without a
/// final name (empty, `/`, or ending in `.` or `..`).
fn split_last(path: &[u8]) -> Option<(&[u8], &OsStr)> {
    let trimmed = {
        let mut p = path;
        while p.len() > 1 && p.ends_with(b"/") {
            p = &p[..p.len() - 1];
        }
        p
    };
    let (parent, name) = match trimmed.iter().rposition(|&b| b == b'/') {
        Some(i) => (&trimmed[..i], &trimmed[i + 1..]),
        None => (&b""[..], trimmed),
    };
    if name.is_empty() || name == b"." || name == b".." {
        return None;
    }
    Some((parent, OsStr::from_bytes(name)))
}

fn no_name(path: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("{}: no file name to act on", path.display()),
    )
}

impl Dir {
    fn new(fd: OwnedFd) -> Dir {
        Dir { fd }
    }

    /// Opens the directory `path` of the host (a trusted path: symlinks in it are followed).
    pub fn open_host(path: &Path) -> io::Result<Dir> {
        let fd = rustix::fs::open(
            path,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        Ok(Dir::new(fd))
    }

    /// Another fd for the same directory.
    pub fn try_clone(&self) -> io::Result<Dir> {
        Ok(Dir::new(self.fd.try_clone()?))
    }

    /// `/proc/self/fd/N` of this directory (see [`proc_fd_path`]).
    pub fn proc_path(&self) -> PathBuf {
        proc_fd_path(&self.fd)
    }

    /// The subdirectory `name`; `ELOOP` or `ENOTDIR` when it is a symlink or not a directory.
    pub fn open_dir(&self, name: &OsStr) -> io::Result<Dir> {
        let fd = rustix::fs::openat(
            &self.fd,
            name,
            nofollow_path() | OFlags::DIRECTORY,
            Mode::empty(),
        )?;
        Ok(Dir::new(fd))
    }

    /// An `O_PATH` fd of whatever `name` is (a symlink itself, not its target).
    pub fn open_path(&self, name: &OsStr) -> io::Result<OwnedFd> {
        Ok(rustix::fs::openat(
            &self.fd,
            name,
            nofollow_path(),
            Mode::empty(),
        )?)
    }

    /// Opens the existing file `name` for reading; `ELOOP` when it is a symlink.
    pub fn open_read(&self, name: &OsStr) -> io::Result<File> {
        let fd = rustix::fs::openat(
            &self.fd,
            name,
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        Ok(File::from(fd))
    }

    /// Creates the file `name` (it must not exist: `EEXIST`, also for a dangling symlink)
    /// and opens it for writing.
    pub fn create_file(&self, name: &OsStr, mode: u32) -> io::Result<File> {
        let fd = rustix::fs::openat(
            &self.fd,
            name,
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(mode),
        )?;
        Ok(File::from(fd))
    }

    /// Creates the directory `name` (mode as `mkdir(2)`, umask applied).
    pub fn mkdir(&self, name: &OsStr, mode: u32) -> io::Result<()> {
        Ok(rustix::fs::mkdirat(
            &self.fd,
            name,
            Mode::from_raw_mode(mode),
        )?)
    }

    /// Creates the symlink `name` pointing at `target` (stored verbatim, never resolved).
    pub fn symlink(&self, name: &OsStr, target: &OsStr) -> io::Result<()> {
        Ok(rustix::fs::symlinkat(target, &self.fd, name)?)
    }

    /// Creates the device node or fifo `name`.
    pub fn mknod(&self, name: &OsStr, kind: FileType, mode: u32, dev: u64) -> io::Result<()> {
        Ok(rustix::fs::mknodat(
            &self.fd,
            name,
            kind,
            Mode::from_raw_mode(mode),
            dev,
        )?)
    }

    /// Hard-links `src_name` in `src_dir` as `name` here; a symlink is linked itself, never
    /// its target.
    pub fn hard_link(&self, name: &OsStr, src_dir: &Dir, src_name: &OsStr) -> io::Result<()> {
        Ok(rustix::fs::linkat(
            &src_dir.fd,
            src_name,
            &self.fd,
            name,
            AtFlags::empty(),
        )?)
    }

    /// Renames `name` here to `new_name` in `new_dir` (replacing a file there).
    pub fn rename(&self, name: &OsStr, new_dir: &Dir, new_name: &OsStr) -> io::Result<()> {
        Ok(rustix::fs::renameat(&self.fd, name, &new_dir.fd, new_name)?)
    }

    /// `lstat` of `name`; `None` when nothing is there.
    pub fn lstat(&self, name: &OsStr) -> io::Result<Option<rustix::fs::Stat>> {
        match rustix::fs::statat(&self.fd, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => Ok(Some(st)),
            Err(Errno::NOENT) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// The file type of `name` (not following it); `None` when nothing is there.
    pub fn file_type(&self, name: &OsStr) -> io::Result<Option<FileType>> {
        Ok(self
            .lstat(name)?
            .map(|st| FileType::from_raw_mode(st.st_mode)))
    }

    /// The target of the symlink `name`.
    pub fn read_link(&self, name: &OsStr) -> io::Result<OsString> {
        let t = rustix::fs::readlinkat(&self.fd, name, Vec::new())?;
        Ok(OsString::from_vec(t.into_bytes()))
    }

    /// The names in this directory (without `.` and `..`).
    pub fn names(&self) -> io::Result<Vec<OsString>> {
        let fd = rustix::fs::openat(
            &self.fd,
            ".",
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        let mut out = Vec::new();
        for e in rustix::fs::Dir::new(fd)? {
            let e = e?;
            let n = e.file_name().to_bytes();
            if n != b"." && n != b".." {
                out.push(OsString::from_vec(n.to_vec()));
            }
        }
        Ok(out)
    }

    /// Removes `name` if it is not a directory. `Ok(false)` when nothing was there.
    pub fn remove_file(&self, name: &OsStr) -> io::Result<bool> {
        match rustix::fs::unlinkat(&self.fd, name, AtFlags::empty()) {
            Ok(()) => Ok(true),
            Err(Errno::NOENT) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Removes `name` and, for a directory, everything below it, never following a symlink.
    /// `Ok(false)` when nothing was there.
    pub fn remove_all(&self, name: &OsStr) -> io::Result<bool> {
        match rustix::fs::unlinkat(&self.fd, name, AtFlags::empty()) {
            Ok(()) => return Ok(true),
            Err(Errno::NOENT) => return Ok(false),
            // EISDIR on Linux for a directory; EPERM elsewhere.
            Err(Errno::ISDIR | Errno::PERM) => {}
            Err(e) => return Err(e.into()),
        }
        let sub = match self.open_dir(name) {
            Ok(d) => d,
            Err(e) if e.raw_os_error() == Some(libc_enoent()) => return Ok(false),
            Err(e) => return Err(e),
        };
        sub.clear(|_| false)?;
        match rustix::fs::unlinkat(&self.fd, name, AtFlags::REMOVEDIR) {
            Ok(()) => Ok(true),
            Err(Errno::NOENT) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Removes everything in this directory except the names `keep` says to keep.
    pub fn clear(&self, keep: impl Fn(&OsStr) -> bool) -> io::Result<()> {
        for n in self.names()? {
            if !keep(&n) {
                self.remove_all(&n)?;
            }
        }
        Ok(())
    }

    /// Sets owner and group of `name` (`"."`: this directory), not following a symlink.
    pub fn set_owner(&self, name: &OsStr, uid: u32, gid: u32) -> io::Result<()> {
        Ok(rustix::fs::chownat(
            &self.fd,
            name,
            Some(rustix::fs::Uid::from_raw(uid)),
            Some(rustix::fs::Gid::from_raw(gid)),
            AtFlags::SYMLINK_NOFOLLOW,
        )?)
    }

    /// Sets access and modification time of `name` (`"."`: this directory) to `mtime`
    /// seconds, not following a symlink.
    pub fn set_times(&self, name: &OsStr, mtime: i64) -> io::Result<()> {
        let t = Timespec {
            tv_sec: mtime,
            tv_nsec: 0,
        };
        Ok(rustix::fs::utimensat(
            &self.fd,
            name,
            &Timestamps {
                last_access: t,
                last_modification: t,
            },
            AtFlags::SYMLINK_NOFOLLOW,
        )?)
    }

    /// Sets access and modification time of `name` (`"."`: this directory) to
    /// `(seconds, nanoseconds)` each, not following a symlink.
    pub fn set_times_ns(
        &self,
        name: &OsStr,
        atime: (i64, i64),
        mtime: (i64, i64),
    ) -> io::Result<()> {
        let ts = |(tv_sec, tv_nsec): (i64, i64)| Timespec { tv_sec, tv_nsec };
        Ok(rustix::fs::utimensat(
            &self.fd,
            name,
            &Timestamps {
                last_access: ts(atime),
                last_modification: ts(mtime),
            },
            AtFlags::SYMLINK_NOFOLLOW,
        )?)
    }

    /// Sets the mode (permission, setuid, setgid and sticky bits) of `name` (`"."`: this
    /// directory). `ELOOP` for a symlink: its target is never changed.
    pub fn set_mode(&self, name: &OsStr, mode: u32) -> io::Result<()> {
        let mode = Mode::from_raw_mode(mode & 0o7777);
        if name == "." {
            return Ok(rustix::fs::chmodat(&self.fd, ".", mode, AtFlags::empty())?);
        }
        let fd = self.open_path(name)?;
        if FileType::from_raw_mode(rustix::fs::fstat(&fd)?.st_mode) == FileType::Symlink {
            return Err(Errno::LOOP.into());
        }
        // chmod(2) through /proc follows the magic link to the inode the fd holds.
        Ok(rustix::fs::chmod(proc_fd_path(&fd), mode)?)
    }

    /// Sets the extended attribute `key` of `name` (`"."`: this directory), not following
    /// a symlink.
    pub fn set_xattr(&self, name: &OsStr, key: &OsStr, value: &[u8]) -> io::Result<()> {
        let path = self.proc_path().join(name);
        Ok(rustix::fs::lsetxattr(
            &path,
            key,
            value,
            rustix::fs::XattrFlags::empty(),
        )?)
    }
}

fn libc_enoent() -> i32 {
    Errno::NOENT.raw_os_error()
}

impl Root {
    /// Opens `path` (a trusted host path) as the root.
    pub fn open(path: impl AsRef<Path>) -> io::Result<Root> {
        let path = path.as_ref();
        Ok(Root {
            dir: Dir::open_host(path)?,
            path: path.to_path_buf(),
            openat2: true,
        })
    }

    /// Like [`Root::open`], but lookups never use `openat2` (to test the fallback walk).
    #[doc(hidden)]
    pub fn open_without_openat2(path: impl AsRef<Path>) -> io::Result<Root> {
        Ok(Root {
            openat2: false,
            ..Root::open(path)?
        })
    }

    /// The host path the root was opened at (for messages; never act on it).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The root directory itself.
    pub fn dir(&self) -> &Dir {
        &self.dir
    }

    /// An `O_PATH` fd of `path`. With [`Follow::InRoot`] a final symlink is followed (in the
    /// root); with [`Follow::Never`] the fd is the symlink itself.
    pub fn resolve(&self, path: impl AsRef<Path>, follow: Follow) -> io::Result<OwnedFd> {
        self.lookup(path.as_ref(), follow, follow == Follow::InRoot, false)
    }

    /// Like [`Root::resolve`], but a final symlink is never followed (`lstat` semantics).
    pub fn resolve_no_follow_last(
        &self,
        path: impl AsRef<Path>,
        follow: Follow,
    ) -> io::Result<OwnedFd> {
        self.lookup(path.as_ref(), follow, false, false)
    }

    /// The existing directory `path`.
    pub fn open_dir(&self, path: impl AsRef<Path>, follow: Follow) -> io::Result<Dir> {
        Ok(Dir::new(self.lookup(
            path.as_ref(),
            follow,
            follow == Follow::InRoot,
            true,
        )?))
    }

    /// The directory `path`, created with `mode` (umask not applied) where missing, like
    /// `mkdir -p`.
    pub fn mkdir_all(&self, path: impl AsRef<Path>, mode: u32, follow: Follow) -> io::Result<Dir> {
        let path = path.as_ref();
        match self.lookup(path, follow, true, true) {
            Err(e) if e.raw_os_error() == Some(libc_enoent()) => {}
            r => return r.map(Dir::new),
        }
        self.walk(path.as_os_str().as_bytes(), follow, true, true, Some(mode))
            .map(Dir::new)
    }

    /// The directory holding `path` and the final name in it, for creating, renaming or
    /// removing that name. `create` makes missing parents with that mode.
    pub fn parent(
        &self,
        path: impl AsRef<Path>,
        follow: Follow,
        create: Option<u32>,
    ) -> io::Result<(Dir, OsString)> {
        let path = path.as_ref();
        let (parent, name) =
            split_last(path.as_os_str().as_bytes()).ok_or_else(|| no_name(path))?;
        let parent = Path::new(OsStr::from_bytes(parent));
        let dir = match create {
            Some(mode) => self.mkdir_all(parent, mode, follow)?,
            None => self.open_dir(parent, follow)?,
        };
        Ok((dir, name.to_os_string()))
    }

    /// Where `path` leads in the root, as a path relative to it that holds no symlink:
    /// symlinks are expanded as [`Follow::InRoot`] does (the last one only when
    /// `follow_last`), and from the first component that does not exist (or is not a
    /// directory) on the rest is taken as written, `..` included. For callers that need a
    /// path (a COPY destination still to be made, a name for messages): act on it with
    /// [`Follow::Never`], so a symlink put there in between is refused, not followed.
    pub fn resolve_path(&self, path: impl AsRef<Path>, follow_last: bool) -> io::Result<PathBuf> {
        self.resolve_path_hiding(path, follow_last, &|_| false)
            .map(|(p, _)| p)
    }

    /// [`Root::resolve_path`] in a view of the root where the entries `hidden(rel)` names do
    /// not exist (a build context without its `.dockerignore`d files; `rel` is relative to
    /// the root): a hidden symlink is never followed, the rest of the path is taken as
    /// written below it. Also says whether the path is, or was reached through, a hidden
    /// entry (a directory that is hidden but not a symlink is walked through: an exception
    /// pattern may bring back something below it).
    pub fn resolve_path_hiding(
        &self,
        path: impl AsRef<Path>,
        follow_last: bool,
        hidden: &dyn Fn(&Path) -> bool,
    ) -> io::Result<(PathBuf, bool)> {
        let w = walk::walk(
            self.dir.fd.as_fd(),
            path.as_ref().as_os_str().as_bytes(),
            Follow::InRoot,
            follow_last,
            Goal::Path(hidden),
        )?;
        Ok(w.into_path())
    }

    fn lookup(
        &self,
        path: &Path,
        follow: Follow,
        follow_last: bool,
        want_dir: bool,
    ) -> io::Result<OwnedFd> {
        let bytes = path.as_os_str().as_bytes();
        let rel = {
            let mut b = bytes;
            while let Some(r) = b.strip_prefix(b"/") {
                b = r;
            }
            if b.is_empty() {
                b"."
            } else {
                b
            }
        };
        let mut flags = OFlags::PATH | OFlags::CLOEXEC;
        if !follow_last {
            flags |= OFlags::NOFOLLOW;
        }
        if want_dir {
            flags |= OFlags::DIRECTORY;
        }
        let resolve = match follow {
            Follow::InRoot => ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
            Follow::Never => ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS,
        };
        if self.openat2 && openat2_usable() {
            for _ in 0..16 {
                match rustix::fs::openat2(&self.dir.fd, rel, flags, Mode::empty(), resolve) {
                    // A rename elsewhere on the filesystem raced the lookup: try again.
                    Err(Errno::AGAIN) => continue,
                    Err(Errno::NOSYS | Errno::PERM) => {
                        OPENAT2.store(2, std::sync::atomic::Ordering::Relaxed);
                        break;
                    }
                    r => return Ok(r?),
                }
            }
        }
        self.walk(rel, follow, follow_last, want_dir, None)
    }

    /// Resolution one component at a time ([`walk::walk`]); missing directories made when
    /// `create`.
    fn walk(
        &self,
        path: &[u8],
        follow: Follow,
        follow_last: bool,
        want_dir: bool,
        create: Option<u32>,
    ) -> io::Result<OwnedFd> {
        let goal = Goal::Fd {
            dir: want_dir,
            create,
        };
        walk::walk(self.dir.fd.as_fd(), path, follow, follow_last, goal)?
            .into_fd(self.dir.fd.as_fd())
    }
}

/// 0: not known yet or usable, 2: the kernel (or a seccomp filter) refused it.
static OPENAT2: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(0);

fn openat2_usable() -> bool {
    OPENAT2.load(std::sync::atomic::Ordering::Relaxed) != 2
}

/// Name used by [`Dir::set_mode`] and friends for the directory itself.
pub const SELF: &str = ".";

#[cfg(test)]
mod tests;
mod walk;
