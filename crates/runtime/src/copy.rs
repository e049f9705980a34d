//! `cp`, `export` and `diff`: a container's filesystem seen from the host.
//!
//! A container's root is its overlay (the image's layer snapshots under its upper dir). For a
//! running container kiln acts through the root of its recorded pid 1 (`/proc/PID/root`,
//! opened once as a directory fd); for a stopped one a thread of its own unshares its mount
//! namespace, mounts the overlay there (read-only for reading, writable with the container's
//! upper and work dirs for `cp` into it), acts, and ends: the mount is nowhere else.
//!
//! Every path inside the container is resolved through [`kiln_fsroot`] with its in-root
//! semantics (a symlink to `/` or `../../..` stays inside the container's root), and every
//! file is then read or created relative to a directory fd, its final name never followed.
//! Host-side paths are the user's own.
//!
//! Both directions go through a tar stream, as docker's do: `cp` out writes a tar of the
//! source (to stdout for `-`, else unpacked on the host); `cp` in reads a tar (stdin for `-`,
//! else made from the host source) and unpacks it into a directory of the container.
//! [`CopyPlan`] holds docker's rules for trailing `/` and `/.`.

use crate::{Container, Error, Result};
use kiln_fsroot::{Dir, FileType, Follow, Root};
use std::ffi::{OsStr, OsString};
use std::io::{self, Read, Write};
use std::path::{Component, Path, PathBuf};

/// One line of `diff`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    /// `A` (added), `C` (changed) or `D` (deleted).
    pub kind: char,
    /// Absolute path in the container.
    pub path: String,
}

/// Errors of `cp`, `export` and `diff` with docker's texts.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    /// The container path does not exist.
    #[error("Could not find the file {path} in container {container}")]
    NotFound {
        /// The path as given.
        path: String,
        /// The container as named.
        container: String,
    },
    /// A directory cannot replace a file.
    #[error("cannot copy a directory to a file: {0}")]
    DirToFile(String),
    /// The destination (or its parent) must exist as a directory.
    #[error("destination directory {0} does not exist")]
    NoDestDir(String),
    /// The destination of a tar stream must be a directory.
    #[error("destination \"{0}\" must be a directory")]
    NotADir(String),
    /// Reading, writing or mounting failed.
    #[error("{what}: {source}")]
    Io {
        /// What failed.
        what: String,
        /// Why.
        #[source]
        source: io::Error,
    },
}

fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> CopyError {
    let what = what.into();
    move |source| CopyError::Io { what, source }
}

/// What docker's rules make of a source and a destination that both exist or not.
#[derive(Debug, PartialEq, Eq)]
pub enum CopyPlan {
    /// Unpack into the directory `dir`, the source's top entry named `name` (`None`: the
    /// source directory's contents go straight into `dir`).
    Into {
        /// The existing directory entries are unpacked into.
        dir: String,
        /// The name of the source's top entry there.
        name: Option<OsString>,
    },
}

/// Docker's rules (`docker cp` docs): `src_is_dir`, `dest_kind` (`None`: missing,
/// `Some(true)`: a directory, `Some(false)`: something else), `dest_parent_is_dir`.
pub fn plan(
    src: &str,
    src_is_dir: bool,
    dest: &str,
    dest_kind: Option<bool>,
    dest_parent_is_dir: bool,
) -> Result<CopyPlan, CopyError> {
    let src_contents = src.ends_with("/.");
    let dest_dir_syntax = dest.ends_with('/') || dest.ends_with("/.");
    let src_name = base_name(src);
    match dest_kind {
        Some(true) => Ok(CopyPlan::Into {
            dir: dest.to_string(),
            name: if src_is_dir && src_contents {
                None
            } else {
                Some(src_name)
            },
        }),
        Some(false) if src_is_dir => Err(CopyError::DirToFile(dest.to_string())),
        Some(false) if dest_dir_syntax => Err(CopyError::NotADir(dest.to_string())),
        None if dest_dir_syntax && !src_is_dir => Err(CopyError::NoDestDir(dest.to_string())),
        _ if !dest_parent_is_dir => Err(CopyError::NoDestDir(parent_of(dest))),
        _ => Ok(CopyPlan::Into {
            dir: parent_of(dest),
            name: Some(base_name(dest)),
        }),
    }
}

/// The last real component of `p` (`/a/b/.` → `b`; `/` → `/`'s contents as `.`).
fn base_name(p: &str) -> OsString {
    Path::new(p)
        .components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_os_string()),
            _ => None,
        })
        .next_back()
        .unwrap_or_else(|| OsString::from("."))
}

fn parent_of(p: &str) -> String {
    let trimmed = p.trim_end_matches('/');
    match Path::new(trimmed).parent() {
        Some(q) if q.as_os_str().is_empty() => ".".into(),
        Some(q) => q.to_string_lossy().into_owned(),
        None => "/".into(),
    }
}

impl Container {
    /// Runs `f` on the container's root: its pid 1's root while it runs, else its overlay
    /// mounted in a private mount namespace (writable when `write`), with its volumes and
    /// bind mounts when `volumes` (a running container's are always there).
    pub fn with_root<T: Send>(
        &self,
        write: bool,
        volumes: bool,
        f: impl FnOnce(&Root) -> Result<T, CopyError> + Send,
    ) -> Result<T> {
        if self.is_running() {
            let init = self
                .state
                .init
                .ok_or_else(|| Error::NoInit(self.config.name.clone()))?;
            let path = format!("/proc/{}/root", init.pid);
            let root = Root::open(&path).map_err(io_err(format!("open {path}")))?;
            if !init.is_alive() {
                return Err(Error::NotRunning(self.config.name.clone()));
            }
            return Ok(f(&root)?);
        }
        let rootfs = &self.config.spec.rootfs;
        let target = self.dir.join("mnt");
        std::fs::create_dir_all(&target).map_err(io_err(format!("mkdir {}", target.display())))?;
        let r = std::thread::scope(|s| {
            s.spawn(|| -> Result<T, CopyError> {
                kiln_executor::mount::private_mount_namespace()
                    .map_err(io_err("unshare the mount namespace"))?;
                if write {
                    kiln_executor::mount::overlay(
                        &rootfs.lowers,
                        Some((&rootfs.upper, &rootfs.work)),
                        &target,
                    )
                } else {
                    let mut lowers = vec![rootfs.upper.clone()];
                    lowers.extend(rootfs.lowers.iter().cloned());
                    kiln_executor::mount::overlay(&lowers, None, &target)
                }
                .map_err(io_err("mount the container's filesystem"))?;
                let root = Root::open(&target).map_err(io_err("open the container's root"))?;
                if volumes {
                    self.mount_volumes(&root)?;
                }
                let r = f(&root);
                drop(root);
                let _ = nix::mount::umount2(&target, nix::mount::MntFlags::MNT_DETACH);
                r
            })
            .join()
            .unwrap_or_else(|_| {
                Err(CopyError::Io {
                    what: "copy".into(),
                    source: io::Error::other("the copy thread panicked"),
                })
            })
        });
        Ok(r?)
    }

    /// Bind-mounts the container's volumes and bind mounts on their mount points in `root`
    /// (resolved in the root; a missing one is skipped: the container never ran with it).
    fn mount_volumes(&self, root: &Root) -> Result<(), CopyError> {
        use nix::mount::{mount, MsFlags};
        for m in &self.config.spec.mounts {
            let what = || format!("mount {} on {}", m.source.display(), m.destination);
            let Ok(fd) = root.resolve(&m.destination, Follow::InRoot) else {
                continue;
            };
            let at = kiln_fsroot::proc_fd_path(&fd);
            let none: Option<&str> = None;
            mount(
                Some(&m.source),
                &at,
                none,
                MsFlags::MS_BIND | MsFlags::MS_REC,
                none,
            )
            .map_err(|e| io_err(what())(e.into()))?;
            if m.readonly {
                // The path now leads to the new mount's root (the old fd to what is below).
                let fd = root
                    .resolve(&m.destination, Follow::InRoot)
                    .map_err(io_err(what()))?;
                let flags = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY;
                mount(none, &kiln_fsroot::proc_fd_path(&fd), none, flags, none)
                    .map_err(|e| io_err(what())(e.into()))?;
            }
        }
        Ok(())
    }

    /// `docker export`: the container's whole filesystem as a tar.
    pub fn export(&self, out: &mut (dyn Write + Send)) -> Result<()> {
        self.with_root(false, false, |root| {
            let dev = rustix::fs::fstat(root.dir())
                .map_err(|e| CopyError::Io {
                    what: "stat the container's root".into(),
                    source: e.into(),
                })?
                .st_dev;
            let mut b = tar::Builder::new(out);
            append_contents(&mut b, root.dir(), Path::new(""), Scope::OneFs(dev))?;
            b.into_inner()
                .map_err(io_err("write the tar"))?
                .flush()
                .map_err(io_err("write the tar"))
        })
    }

    /// Stats `path` in the container: `None` when missing, else whether it is a directory
    /// (symlinks on the way followed in the root, a final one when `follow`).
    pub fn stat_path(&self, path: &str, follow: bool) -> Result<Option<bool>> {
        self.with_root(false, true, |root| {
            Ok(kind_in(root, path, follow)?.map(|k| k == FileType::Directory))
        })
    }

    /// `cp CTR:SRC -`: a tar of `src` (its top entry named after it) to `out`.
    /// `follow`: `-L`, a final symlink is copied as its target.
    pub fn copy_out(
        &self,
        src: &str,
        follow: bool,
        name: Option<&OsStr>,
        out: &mut (dyn Write + Send),
    ) -> Result<()> {
        let container = self.config.name.clone();
        self.with_root(false, true, |root| {
            let rel = root
                .resolve_path(Path::new("/").join(src), follow)
                .map_err(io_err(format!("resolve {src}")))?;
            let not_found = || CopyError::NotFound {
                path: src.to_string(),
                container: container.clone(),
            };
            let mut b = tar::Builder::new(out);
            if rel.as_os_str().is_empty() || rel == Path::new("/") {
                append_contents(
                    &mut b,
                    root.dir(),
                    name.map_or(Path::new(""), Path::new),
                    Scope::NoPseudo,
                )?;
            } else {
                let (dir, last) = match root.parent(&rel, Follow::Never, None) {
                    Ok(x) => x,
                    Err(_) => return Err(not_found()),
                };
                if dir
                    .lstat(&last)
                    .map_err(io_err(format!("stat {src}")))?
                    .is_none()
                {
                    return Err(not_found());
                }
                let tar_name = name.map_or_else(|| PathBuf::from(&last), PathBuf::from);
                match name {
                    // The source directory's contents ("SRC/.").
                    None if src.ends_with("/.") => {
                        let d = dir.open_dir(&last).map_err(io_err(format!("open {src}")))?;
                        append_contents(&mut b, &d, Path::new(""), Scope::NoPseudo)?;
                    }
                    _ => append_node(&mut b, &dir, &last, &tar_name, Scope::NoPseudo)?,
                }
            }
            b.into_inner()
                .map_err(io_err("write the tar"))?
                .flush()
                .map_err(io_err("write the tar"))
        })
    }

    /// `cp - CTR:DEST` (and `cp SRC CTR:DEST` through a tar): unpacks `input` into the
    /// directory `dest` of the container. Owners are root unless `archive` (`-a`).
    pub fn copy_in(&self, input: &mut (dyn Read + Send), dest: &str, archive: bool) -> Result<()> {
        self.with_root(true, true, |root| {
            let dir = root
                .open_dir(Path::new("/").join(dest), Follow::InRoot)
                .map_err(|_| CopyError::NotADir(dest.to_string()))?;
            let into = Root::open(dir.proc_path()).map_err(io_err(format!("open {dest}")))?;
            unpack(&into, input, archive)
        })
    }

    /// `docker diff`: the changes in the container's upper dir against its image, sorted by
    /// path.
    pub fn diff(&self) -> Result<Vec<Change>> {
        let rootfs = &self.config.spec.rootfs;
        let upper = Root::open(&rootfs.upper)
            .map_err(io_err(format!("open {}", rootfs.upper.display())))?;
        let lowers: Vec<Root> = rootfs
            .lowers
            .iter()
            .filter_map(|l| Root::open(l).ok())
            .collect();
        let mut out = Vec::new();
        diff_dir(upper.dir(), Path::new("/"), &lowers, &mut out)?;
        Ok(hide_mountpoints(out))
    }
}

/// Whether `path` exists in the container and its type.
fn kind_in(root: &Root, path: &str, follow: bool) -> Result<Option<FileType>, CopyError> {
    let rel = root
        .resolve_path(Path::new("/").join(path), follow)
        .map_err(io_err(format!("resolve {path}")))?;
    if rel.as_os_str().is_empty() || rel == Path::new("/") {
        return Ok(Some(FileType::Directory));
    }
    let Ok((dir, last)) = root.parent(&rel, Follow::Never, None) else {
        return Ok(None);
    };
    dir.file_type(&last).map_err(io_err(format!("stat {path}")))
}

/// Mount points the sandbox makes in every container (docker keeps them in its "init"
/// layer, so its `diff` never shows them).
pub(crate) const SANDBOX_MOUNTPOINTS: [&str; 6] = [
    "/dev",
    "/proc",
    "/sys",
    "/etc/hostname",
    "/etc/hosts",
    "/etc/resolv.conf",
];

/// `changes` sorted by path (docker's order) without the sandbox's own mount points (when
/// the image did not have them) and without directories that are "changed" only because
/// the sandbox made one of those in them.
fn hide_mountpoints(mut changes: Vec<Change>) -> Vec<Change> {
    let below = |p: &str, m: &str| p == m || p.strip_prefix(m).is_some_and(|r| r.starts_with('/'));
    changes.retain(|c| !(c.kind == 'A' && SANDBOX_MOUNTPOINTS.iter().any(|m| below(&c.path, m))));
    changes.sort_by(|a, b| a.path.cmp(&b.path));
    let keep: Vec<bool> = changes
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let made_in = SANDBOX_MOUNTPOINTS
                .iter()
                .any(|m| Path::new(m).parent() == Some(Path::new(&c.path)));
            !(c.kind == 'C' && made_in)
                || changes[i + 1..]
                    .first()
                    .is_some_and(|n| below(&n.path, &c.path))
        })
        .collect();
    let mut keep = keep.into_iter();
    changes.retain(|_| keep.next().unwrap_or(true));
    changes
}

fn whiteout(st: &kiln_fsroot::Stat) -> bool {
    FileType::from_raw_mode(st.st_mode) == FileType::CharacterDevice && st.st_rdev == 0
}

/// Whether `path` (relative) exists below the upper dir, layers top-most first.
fn in_lowers(lowers: &[Root], path: &Path) -> bool {
    for l in lowers {
        let Ok((dir, last)) = l.parent(path, Follow::Never, None) else {
            continue;
        };
        match dir.lstat(&last) {
            Ok(Some(st)) => return !whiteout(&st),
            _ => {
                if dir
                    .lstat(OsStr::new(&format!(".wh.{}", last.to_string_lossy())))
                    .ok()
                    .flatten()
                    .is_some()
                {
                    return false;
                }
            }
        }
    }
    false
}

fn diff_dir(dir: &Dir, at: &Path, lowers: &[Root], out: &mut Vec<Change>) -> Result<(), CopyError> {
    let mut names = dir
        .names()
        .map_err(io_err(format!("read {}", at.display())))?;
    names.sort();
    for name in names {
        let path = at.join(&name);
        let Some(st) = dir
            .lstat(&name)
            .map_err(io_err(format!("stat {}", path.display())))?
        else {
            continue;
        };
        let rel = path.strip_prefix("/").unwrap_or(&path);
        let show = path.to_string_lossy().into_owned();
        if whiteout(&st) {
            out.push(Change {
                kind: 'D',
                path: show,
            });
            continue;
        }
        let kind = if in_lowers(lowers, rel) { 'C' } else { 'A' };
        out.push(Change { kind, path: show });
        if FileType::from_raw_mode(st.st_mode) == FileType::Directory {
            let sub = dir
                .open_dir(&name)
                .map_err(io_err(format!("open {}", path.display())))?;
            diff_dir(&sub, &path, lowers, out)?;
        }
    }
    Ok(())
}

/// Which mounted filesystems a tar of a running container's files descends into (only
/// their mount points are written otherwise).
#[derive(Clone, Copy)]
enum Scope {
    /// Only the root's own filesystem (`export`: the container's filesystem, no volumes).
    OneFs(u64),
    /// Everything but the kernel's pseudo filesystems (`cp`: volumes included, as docker's
    /// are; not /proc, /sys, /dev/pts, …).
    NoPseudo,
}

impl Scope {
    fn descends(self, st: &kiln_fsroot::Stat, dir: &Dir) -> bool {
        match self {
            Scope::OneFs(dev) => st.st_dev == dev,
            Scope::NoPseudo => {
                // proc, sysfs, devpts, cgroup, cgroup2, mqueue, securityfs, debugfs, tracefs,
                // bpf.
                const PSEUDO: [i64; 10] = [
                    0x9fa0,
                    0x6265_6572,
                    0x1cd1,
                    0x27e0eb,
                    0x6367_7270,
                    0x1980_0202,
                    0x7363_6673,
                    0x6462_6720,
                    0x7472_6163,
                    0xcafe_4a11,
                ];
                // `f_type`'s type differs between targets.
                #[allow(clippy::useless_conversion)]
                rustix::fs::fstatfs(dir).map_or(true, |s| !PSEUDO.contains(&i64::from(s.f_type)))
            }
        }
    }
}

fn header_for(st: &kiln_fsroot::Stat, kind: tar::EntryType) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(st.st_mode & 0o7777);
    h.set_uid(u64::from(st.st_uid));
    h.set_gid(u64::from(st.st_gid));
    h.set_mtime(u64::try_from(st.st_mtime).unwrap_or(0));
    h.set_size(0);
    h
}

fn append_contents<W: Write>(
    b: &mut tar::Builder<W>,
    dir: &Dir,
    at: &Path,
    scope: Scope,
) -> Result<(), CopyError> {
    let mut names = dir
        .names()
        .map_err(io_err(format!("read {}", at.display())))?;
    names.sort();
    for name in names {
        append_node(b, dir, &name, &at.join(&name), scope)?;
    }
    Ok(())
}

/// Appends `name` of `dir` (never followed) as `tar_name`, directories recursively as far
/// as `scope` lets it.
fn append_node<W: Write>(
    b: &mut tar::Builder<W>,
    dir: &Dir,
    name: &OsStr,
    tar_name: &Path,
    scope: Scope,
) -> Result<(), CopyError> {
    let what = || format!("read {}", tar_name.display());
    let Some(st) = dir.lstat(name).map_err(io_err(what()))? else {
        return Ok(());
    };
    let w = |e: io::Error| CopyError::Io {
        what: "write the tar".into(),
        source: e,
    };
    match FileType::from_raw_mode(st.st_mode) {
        FileType::Directory => {
            let mut h = header_for(&st, tar::EntryType::Directory);
            b.append_data(&mut h, tar_name, io::empty()).map_err(w)?;
            let sub = dir.open_dir(name).map_err(io_err(what()))?;
            if scope.descends(&st, &sub) {
                append_contents(b, &sub, tar_name, scope)?;
            }
        }
        FileType::RegularFile => {
            let f = dir.open_read(name).map_err(io_err(what()))?;
            let mut h = header_for(&st, tar::EntryType::Regular);
            h.set_size(u64::try_from(st.st_size).unwrap_or(0));
            b.append_data(
                &mut h,
                tar_name,
                f.take(u64::try_from(st.st_size).unwrap_or(0)),
            )
            .map_err(w)?;
        }
        FileType::Symlink => {
            let target = dir.read_link(name).map_err(io_err(what()))?;
            let mut h = header_for(&st, tar::EntryType::Symlink);
            b.append_link(&mut h, tar_name, Path::new(&target))
                .map_err(w)?;
        }
        kind @ (FileType::CharacterDevice | FileType::BlockDevice | FileType::Fifo) => {
            let t = match kind {
                FileType::CharacterDevice => tar::EntryType::Char,
                FileType::BlockDevice => tar::EntryType::Block,
                _ => tar::EntryType::Fifo,
            };
            let mut h = header_for(&st, t);
            let dev = st.st_rdev;
            let _ = h.set_device_major(rustix::fs::major(dev));
            let _ = h.set_device_minor(rustix::fs::minor(dev));
            b.append_data(&mut h, tar_name, io::empty()).map_err(w)?;
        }
        _ => {}
    }
    Ok(())
}

/// A tar entry's path as normal components only; `None` for the root itself, an error
/// for `..` (a stream climbing out of its destination is refused, not cleaned).
fn entry_path(p: &Path) -> Result<Option<PathBuf>, CopyError> {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::CurDir | Component::RootDir => {}
            _ => {
                return Err(CopyError::Io {
                    what: format!("tar entry {}", p.display()),
                    source: io::Error::new(
                        io::ErrorKind::InvalidData,
                        "path climbs out of the destination",
                    ),
                })
            }
        }
    }
    Ok((!out.as_os_str().is_empty()).then_some(out))
}

/// Unpacks a tar into `into`: every parent resolved with [`Follow::Never`] (a symlink the
/// stream or the container put on the way is refused), every final name replaced, never
/// followed.
fn unpack(into: &Root, input: &mut dyn Read, archive: bool) -> Result<(), CopyError> {
    let mut a = tar::Archive::new(input);
    let entries = a.entries().map_err(io_err("read the tar"))?;
    for entry in entries {
        let mut e = entry.map_err(io_err("read the tar"))?;
        let raw = e.path().map_err(io_err("read the tar"))?.into_owned();
        let Some(path) = entry_path(&raw)? else {
            continue;
        };
        let what = || format!("write {}", raw.display());
        let (dir, name) = into
            .parent(&path, Follow::Never, Some(0o755))
            .map_err(io_err(what()))?;
        let h = e.header().clone();
        let mode = h.mode().unwrap_or(0o644) & 0o7777;
        let kind = h.entry_type();
        let existing = dir.file_type(&name).map_err(io_err(what()))?;
        if existing.is_some() && !(kind.is_dir() && existing == Some(FileType::Directory)) {
            dir.remove_all(&name).map_err(io_err(what()))?;
        }
        match kind {
            k if k.is_dir() => {
                if existing != Some(FileType::Directory) {
                    dir.mkdir(&name, mode).map_err(io_err(what()))?;
                }
            }
            k if k.is_file() || k == tar::EntryType::GNUSparse => {
                let mut f = dir.create_file(&name, mode).map_err(io_err(what()))?;
                io::copy(&mut e, &mut f).map_err(io_err(what()))?;
            }
            k if k.is_symlink() => {
                let target = e
                    .link_name()
                    .map_err(io_err(what()))?
                    .unwrap_or_default()
                    .into_owned();
                dir.symlink(&name, target.as_os_str())
                    .map_err(io_err(what()))?;
            }
            k if k.is_hard_link() => {
                let target = e
                    .link_name()
                    .map_err(io_err(what()))?
                    .unwrap_or_default()
                    .into_owned();
                let Some(target) = entry_path(&target)? else {
                    continue;
                };
                let (sdir, sname) = into
                    .parent(&target, Follow::Never, None)
                    .map_err(io_err(what()))?;
                dir.hard_link(&name, &sdir, &sname)
                    .map_err(io_err(what()))?;
                continue;
            }
            k if k.is_character_special() || k.is_block_special() || k.is_fifo() => {
                let ft = if k.is_fifo() {
                    FileType::Fifo
                } else if k.is_block_special() {
                    FileType::BlockDevice
                } else {
                    FileType::CharacterDevice
                };
                let dev = rustix::fs::makedev(
                    h.device_major().ok().flatten().unwrap_or(0),
                    h.device_minor().ok().flatten().unwrap_or(0),
                );
                dir.mknod(&name, ft, mode, dev).map_err(io_err(what()))?;
            }
            _ => continue,
        }
        let (uid, gid) = if archive {
            (
                u32::try_from(h.uid().unwrap_or(0)).unwrap_or(0),
                u32::try_from(h.gid().unwrap_or(0)).unwrap_or(0),
            )
        } else {
            (0, 0)
        };
        dir.set_owner(&name, uid, gid).map_err(io_err(what()))?;
        if !kind.is_symlink() {
            dir.set_mode(&name, mode).map_err(io_err(what()))?;
        }
        if let Ok(m) = h.mtime() {
            let _ = dir.set_times(&name, i64::try_from(m).unwrap_or(0));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
