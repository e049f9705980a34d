//! Overlay mounts (see [`crate::mount`]).

use crate::sys;
use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

/// Size of the `mount(2)` data page, including the terminating NUL.
const MOUNT_DATA_MAX: usize = 4096;

/// Options that keep the upper dir a plain diff and avoid "in use" conflicts between
/// overlays sharing layers.
const OVERLAY_OPTS: &[(&str, &str)] = &[
    ("index", "off"),
    ("redirect_dir", "off"),
    ("metacopy", "off"),
];

pub(crate) fn private_mount_namespace() -> io::Result<()> {
    sys::unshare(libc::CLONE_NEWNS)?;
    sys::make_rprivate()
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg)
}

fn check_layer_path(p: &Path) -> io::Result<()> {
    let b = p.as_os_str().as_bytes();
    if b.iter().any(|c| matches!(c, b':' | b',' | b'\\')) {
        return Err(invalid(format!(
            "overlay layer path {} contains ':', ',' or '\\', which overlayfs cannot take",
            p.display()
        )));
    }
    Ok(())
}

pub(crate) fn overlay(
    lowers: &[PathBuf],
    upper_work: Option<(&Path, &Path)>,
    target: &Path,
) -> io::Result<()> {
    overlay_with(lowers, upper_work, target, false)
}

/// Where a `volatile` overlay leaves its mark in the work dir; the kernel refuses to mount
/// a work dir that has it (Documentation/filesystems/overlayfs.rst, "Volatile mount").
const VOLATILE_MARK: &str = "work/incompat/volatile";

/// A writable overlay whose upper dir is thrown away when the sandbox ends (a `--rm`
/// container): mounted `volatile`, so that neither its unmount nor `fsync` in the
/// container waits for the upper filesystem to write back (overlayfs syncs the upper
/// filesystem when it is unmounted; on a journaled filesystem that is a journal commit, about
/// 1.5 ms per run here). Podman does the same for `--rm` containers.
///
/// The kernel leaves [`VOLATILE_MARK`] (a directory with a file `dirty`) in the work dir
/// and refuses to mount it again, as the
/// upper dir may have lost writes in a crash. Such a container is mounted again only when it
/// is restarted in the same boot after a clean unmount (after a crash the next `kiln`
/// command removes an `--rm` container whose supervisor died), so the mark is removed and
/// the mount retried. Kernels without `volatile` (before 5.10) get a plain overlay.
pub(crate) fn volatile_overlay(
    lowers: &[PathBuf],
    upper: &Path,
    work: &Path,
    target: &Path,
) -> io::Result<()> {
    let first = match overlay_with(lowers, Some((upper, work)), target, true) {
        Ok(()) => return Ok(()),
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => e,
        Err(e) => return Err(e),
    };
    let mark = work.join(VOLATILE_MARK);
    let _ = std::fs::remove_file(mark.join("dirty"));
    if std::fs::remove_dir(&mark).is_ok() {
        if let Some(incompat) = mark.parent() {
            let _ = std::fs::remove_dir(incompat);
        }
        return overlay_with(lowers, Some((upper, work)), target, true);
    }
    overlay_with(lowers, Some((upper, work)), target, false).map_err(|_| first)
}

fn overlay_with(
    lowers: &[PathBuf],
    upper_work: Option<(&Path, &Path)>,
    target: &Path,
    volatile: bool,
) -> io::Result<()> {
    let mut lowers: Vec<PathBuf> = lowers
        .iter()
        .map(std::path::absolute)
        .collect::<io::Result<_>>()?;
    let upper_work = match upper_work {
        Some((u, w)) => Some((std::path::absolute(u)?, std::path::absolute(w)?)),
        None => None,
    };
    for p in lowers
        .iter()
        .chain(upper_work.iter().flat_map(|(u, w)| [u, w]))
    {
        check_layer_path(p)?;
    }
    match (&upper_work, lowers.len()) {
        (None, 0) => {
            return sys::mount(
                Some("tmpfs"),
                target,
                Some("tmpfs"),
                libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV,
                Some("size=4k,mode=755"),
            )
        }
        (None, 1) => return sys::bind(&lowers[0], target, true),
        (Some((_, work)), 0) => {
            let parent = work.parent().unwrap_or(Path::new("/"));
            let empty = parent.join(".kiln-empty-lower");
            match std::fs::create_dir(&empty) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(e),
            }
            check_layer_path(&empty)?;
            lowers.push(empty);
        }
        _ => {}
    }
    let flags = if upper_work.is_none() {
        libc::MS_RDONLY
    } else {
        0
    };

    // 1. Absolute paths.
    let data = options(&lowers, upper_work.as_ref(), volatile);
    if data.len() < MOUNT_DATA_MAX {
        return sys::mount(Some("overlay"), target, Some("overlay"), flags, Some(&data));
    }

    // 2. Lowers relative to their longest common parent, with the cwd there.
    let target = std::path::absolute(target)?;
    let base = common_parent(&lowers);
    let relative: Vec<PathBuf> = lowers
        .iter()
        .map(|l| match l.strip_prefix(&base) {
            Ok(r) if r.as_os_str().is_empty() => PathBuf::from("."),
            Ok(r) => r.to_path_buf(),
            Err(_) => l.clone(),
        })
        .collect();
    let data = options(&relative, upper_work.as_ref(), volatile);
    if data.len() < MOUNT_DATA_MAX {
        return with_cwd(&base, || {
            sys::mount(
                Some("overlay"),
                &target,
                Some("overlay"),
                flags,
                Some(&data),
            )
        });
    }

    // 3. The new mount API, one `lowerdir+` per layer (Linux 6.8+); each value is limited to
    //    256 bytes, so relative paths are used when they are shorter.
    let per_layer: Vec<PathBuf> = lowers
        .iter()
        .zip(&relative)
        .map(|(a, r)| {
            if a.as_os_str().len() < 256 {
                a.clone()
            } else {
                r.clone()
            }
        })
        .collect();
    match with_cwd(&base, || {
        fsmount_overlay(&per_layer, upper_work.as_ref(), &target, volatile)
    }) {
        Ok(()) => Ok(()),
        Err(e) => Err(io::Error::new(
            e.kind(),
            format!(
                "overlay options for {} layers exceed the kernel's {MOUNT_DATA_MAX}-byte \
                 mount-data limit even relative to {} ({} bytes), and the new mount API \
                 (lowerdir+) failed: {e}",
                lowers.len(),
                base.display(),
                data.len()
            ),
        )),
    }
}

fn options(lowers: &[PathBuf], upper_work: Option<&(PathBuf, PathBuf)>, volatile: bool) -> String {
    let mut s = String::from("lowerdir=");
    for (i, l) in lowers.iter().enumerate() {
        if i > 0 {
            s.push(':');
        }
        s.push_str(&l.to_string_lossy());
    }
    if let Some((u, w)) = upper_work {
        s.push_str(",upperdir=");
        s.push_str(&u.to_string_lossy());
        s.push_str(",workdir=");
        s.push_str(&w.to_string_lossy());
    }
    for (k, v) in OVERLAY_OPTS {
        s.push(',');
        s.push_str(k);
        s.push('=');
        s.push_str(v);
    }
    if volatile {
        s.push_str(",volatile");
    }
    s
}

/// The longest common ancestor directory of `paths` (all absolute).
fn common_parent(paths: &[PathBuf]) -> PathBuf {
    let mut common: Vec<Component> = match paths.first() {
        Some(p) => p.components().collect(),
        None => return PathBuf::from("/"),
    };
    for p in &paths[1..] {
        let n = common
            .iter()
            .zip(p.components())
            .take_while(|(a, b)| **a == *b)
            .count();
        common.truncate(n);
    }
    let base: PathBuf = common.iter().collect();
    if base.as_os_str().is_empty() {
        PathBuf::from("/")
    } else {
        base
    }
}

fn with_cwd<T>(dir: &Path, f: impl FnOnce() -> io::Result<T>) -> io::Result<T> {
    let old = std::env::current_dir()?;
    std::env::set_current_dir(dir)?;
    let r = f();
    let back = std::env::set_current_dir(&old);
    let r = r?;
    back?;
    Ok(r)
}

const FSCONFIG_SET_FLAG: libc::c_uint = 0;
const FSCONFIG_SET_STRING: libc::c_uint = 1;
const FSCONFIG_CMD_CREATE: libc::c_uint = 6;
const FSOPEN_CLOEXEC: libc::c_uint = 1;
const FSMOUNT_CLOEXEC: libc::c_uint = 1;
const MOUNT_ATTR_RDONLY: libc::c_uint = 1;
const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 4;

struct Fd(libc::c_int);
impl Drop for Fd {
    fn drop(&mut self) {
        // SAFETY: we own the fd.
        unsafe { libc::close(self.0) };
    }
}

fn syscall_fd(r: libc::c_long) -> io::Result<Fd> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(Fd(r as libc::c_int))
    }
}

fn fsconfig(
    fd: &Fd,
    cmd: libc::c_uint,
    key: Option<&str>,
    value: Option<&CString>,
) -> io::Result<()> {
    let key = key.map(sys::cstr).transpose()?;
    // SAFETY: key/value are NUL-terminated strings or null, valid for the call.
    let r = unsafe {
        libc::syscall(
            libc::SYS_fsconfig,
            fd.0,
            cmd,
            key.as_ref().map_or(std::ptr::null(), |k| k.as_ptr()),
            value.map_or(std::ptr::null(), |v| v.as_ptr()),
            0,
        )
    };
    if r < 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(
            e.kind(),
            format!(
                "fsconfig {}{}: {e}",
                key.as_ref()
                    .map_or("create".into(), |k| k.to_string_lossy()),
                value.map_or(String::new(), |v| format!("={}", v.to_string_lossy())),
            ),
        ));
    }
    Ok(())
}

fn fsmount_overlay(
    lowers: &[PathBuf],
    upper_work: Option<&(PathBuf, PathBuf)>,
    target: &Path,
    volatile: bool,
) -> io::Result<()> {
    let name = sys::cstr("overlay")?;
    // SAFETY: valid NUL-terminated string.
    let fs = syscall_fd(unsafe { libc::syscall(libc::SYS_fsopen, name.as_ptr(), FSOPEN_CLOEXEC) })?;
    for l in lowers {
        fsconfig(
            &fs,
            FSCONFIG_SET_STRING,
            Some("lowerdir+"),
            Some(&sys::cstr(l)?),
        )?;
    }
    if let Some((u, w)) = upper_work {
        fsconfig(
            &fs,
            FSCONFIG_SET_STRING,
            Some("upperdir"),
            Some(&sys::cstr(u)?),
        )?;
        fsconfig(
            &fs,
            FSCONFIG_SET_STRING,
            Some("workdir"),
            Some(&sys::cstr(w)?),
        )?;
    }
    for (k, v) in OVERLAY_OPTS {
        fsconfig(&fs, FSCONFIG_SET_STRING, Some(k), Some(&sys::cstr(v)?))?;
    }
    if volatile {
        fsconfig(&fs, FSCONFIG_SET_FLAG, Some("volatile"), None)?;
    }
    fsconfig(&fs, FSCONFIG_CMD_CREATE, None, None)?;
    let attrs = if upper_work.is_none() {
        MOUNT_ATTR_RDONLY
    } else {
        0
    };
    // SAFETY: plain system call on our fd.
    let mnt =
        syscall_fd(unsafe { libc::syscall(libc::SYS_fsmount, fs.0, FSMOUNT_CLOEXEC, attrs) })?;
    let empty = sys::cstr("")?;
    let t = sys::cstr(target)?;
    // SAFETY: valid fds and NUL-terminated strings.
    let r = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            mnt.0,
            empty.as_ptr(),
            libc::AT_FDCWD,
            t.as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
