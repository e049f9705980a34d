//! The one component walk of this crate: one `openat(O_PATH | O_NOFOLLOW)` per component
//! from the fd of the step before, symlinks read with `readlinkat` and expanded by hand
//! (at most [`MAX_LINKS`], an absolute target restarting at the root), `..` popped off the
//! walk's own stack of fds (never `openat(fd, "..")`): at the root it stays there
//! ([`Follow::InRoot`]) or is refused with `EXDEV` ([`Follow::Never`]).
//!
//! Every lookup that does not go through `openat2` runs it: the fallback of
//! [`Root::resolve`](crate::Root::resolve) and friends where `openat2` is missing, and
//! [`Root::mkdir_all`](crate::Root::mkdir_all), which want an fd ([`Goal::Fd`]); and
//! [`Root::resolve_path_hiding`](crate::Root::resolve_path_hiding), which wants the path a
//! lookup leads to ([`Goal::Path`]).

use crate::{nofollow_path, Follow};
use rustix::fs::{AtFlags, FileType, Mode, OFlags};
use rustix::io::Errno;
use std::ffi::OsStr;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// At most this many symlinks are expanded in one lookup (Linux's own limit).
const MAX_LINKS: usize = 40;

/// What a walk is for, and so what it does where the path stops naming directories.
#[derive(Clone, Copy)]
pub(crate) enum Goal<'a> {
    /// An fd of what the path names. A missing component is `ENOENT` (with `create`, a
    /// directory with that mode is made instead, umask not applied), a component before the
    /// last that is not a directory `ENOTDIR`, and with [`Follow::Never`] a symlink before
    /// the last `ELOOP`. `dir`: the result must be a directory.
    Fd { dir: bool, create: Option<u32> },
    /// The path the lookup leads to: from the first component that does not exist or is not
    /// a directory on, the rest is taken as written (`..` included). The entries the
    /// predicate names (relative to the root) are seen as missing: a symlink it names is
    /// not followed.
    Path(&'a dyn Fn(&Path) -> bool),
}

/// How far a walk got.
pub(crate) struct Walked {
    /// The components resolved, symlinks expanded, relative to the root.
    names: Vec<Vec<u8>>,
    /// The fds of the directories among them: a prefix of `names` (`dirs.len() <=
    /// names.len()`); shorter where the rest was taken as written ([`Goal::Path`]).
    dirs: Vec<OwnedFd>,
    /// [`Goal::Fd`]: the fd of a last component that is not a directory.
    last: Option<OwnedFd>,
    /// [`Goal::Path`]: whether the path is, or was reached through, an entry its predicate
    /// names.
    hidden: bool,
}

/// Walks `path` in the root `root`: symlinks are followed with [`Follow::InRoot`] (a last
/// one only when `follow_last`) and refused with [`Follow::Never`]; `goal` says what the
/// walk is for.
pub(crate) fn walk(
    root: BorrowedFd<'_>,
    path: &[u8],
    follow: Follow,
    follow_last: bool,
    goal: Goal<'_>,
) -> io::Result<Walked> {
    // Components still to resolve, last one first.
    let mut todo: Vec<Vec<u8>> = components(path).rev().map(<[u8]>::to_vec).collect();
    let mut w = Walked {
        names: Vec::new(),
        dirs: Vec::new(),
        last: None,
        hidden: false,
    };
    let (want_dir, create, hidden) = match goal {
        Goal::Fd { dir, create } => (dir, create, None),
        Goal::Path(hidden) => (false, None, Some(hidden)),
    };
    let as_written = hidden.is_some();
    let mut links = 0;
    while let Some(c) = todo.pop() {
        if c == b".." {
            if w.names.pop().is_none() && follow == Follow::Never {
                return Err(Errno::XDEV.into());
            }
            w.dirs.truncate(w.names.len());
            continue;
        }
        if w.dirs.len() < w.names.len() {
            // Below something missing or not a directory: as written.
            w.names.push(c);
            continue;
        }
        let last = todo.is_empty();
        let cur = w.dirs.last().map_or(root, AsFd::as_fd);
        let name = OsStr::from_bytes(&c);
        let fd = match (
            rustix::fs::openat(cur, name, nofollow_path(), Mode::empty()),
            create,
        ) {
            (Ok(fd), _) => fd,
            (Err(Errno::NOENT), Some(mode)) => make_dir(cur, name, mode)?,
            (Err(Errno::NOENT | Errno::NOTDIR), _) if as_written => {
                w.names.push(c);
                continue;
            }
            (Err(e), _) => return Err(e.into()),
        };
        match FileType::from_raw_mode(rustix::fs::fstat(&fd)?.st_mode) {
            FileType::Directory => {
                w.names.push(c);
                w.dirs.push(fd);
            }
            FileType::Symlink if follow == Follow::InRoot && (!last || follow_last) => {
                if let Some(hidden) = hidden {
                    let mut rel = joined(&w.names);
                    rel.push(name);
                    if hidden(&rel) {
                        // Not in this view of the root: nothing to follow; what comes
                        // after it is taken as written.
                        w.hidden = true;
                        w.names.push(c);
                        continue;
                    }
                }
                links += 1;
                if links > MAX_LINKS {
                    return Err(Errno::LOOP.into());
                }
                let target = rustix::fs::readlinkat(cur, name, Vec::new())?;
                let target = target.as_bytes();
                if target.starts_with(b"/") {
                    w.names.clear();
                    w.dirs.clear();
                }
                todo.extend(components(target).rev().map(<[u8]>::to_vec));
            }
            // A file, or a last symlink not followed: the end of what exists.
            _ if as_written => w.names.push(c),
            FileType::Symlink if !last || follow == Follow::Never && want_dir => {
                return Err(Errno::LOOP.into())
            }
            _ if !last || want_dir => return Err(Errno::NOTDIR.into()),
            _ => {
                w.names.push(c);
                w.last = Some(fd);
            }
        }
    }
    if let Some(hidden) = hidden {
        w.hidden = w.hidden || (!w.names.is_empty() && hidden(&joined(&w.names)));
    }
    Ok(w)
}

/// Makes the directory `name` in `cur` with `mode` (umask not applied) and opens it; one
/// someone else made meanwhile is opened as it is.
fn make_dir(cur: BorrowedFd<'_>, name: &OsStr, mode: u32) -> io::Result<OwnedFd> {
    match rustix::fs::mkdirat(cur, name, Mode::from_raw_mode(0o700)) {
        Ok(()) => {
            let fd = rustix::fs::openat(
                cur,
                name,
                nofollow_path() | OFlags::DIRECTORY,
                Mode::empty(),
            )?;
            rustix::fs::chmodat(&fd, ".", Mode::from_raw_mode(mode), AtFlags::empty())?;
            Ok(fd)
        }
        // Made by someone else meanwhile: look at it again.
        Err(Errno::EXIST) => Ok(rustix::fs::openat(
            cur,
            name,
            nofollow_path(),
            Mode::empty(),
        )?),
        Err(e) => Err(e.into()),
    }
}

impl Walked {
    /// [`Goal::Fd`]: the fd of what the path names (the root itself for an empty path).
    pub(crate) fn into_fd(mut self, root: BorrowedFd<'_>) -> io::Result<OwnedFd> {
        if let Some(fd) = self.last.take().or_else(|| self.dirs.pop()) {
            return Ok(fd);
        }
        Ok(rustix::fs::openat(
            root,
            ".",
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?)
    }

    /// [`Goal::Path`]: the path relative to the root, and whether it is, or was reached
    /// through, an entry the predicate names.
    pub(crate) fn into_path(self) -> (PathBuf, bool) {
        (joined(&self.names), self.hidden)
    }
}

/// The relative path of `names`.
fn joined(names: &[Vec<u8>]) -> PathBuf {
    names.iter().map(|n| OsStr::from_bytes(n)).collect()
}

fn components(path: &[u8]) -> impl DoubleEndedIterator<Item = &[u8]> {
    path.split(|&b| b == b'/')
        .filter(|c| !c.is_empty() && *c != b".")
}
