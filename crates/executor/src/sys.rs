//! Thin wrappers over the system calls the sandbox needs, returning `io::Result`.

use std::ffi::{CString, OsStr};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// A path or string as a C string (interior NULs are an `InvalidInput` error).
pub(crate) fn cstr(s: impl AsRef<OsStr>) -> io::Result<CString> {
    CString::new(s.as_ref().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "string contains a NUL byte"))
}

fn check(r: libc::c_int) -> io::Result<()> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// `mount(2)`.
pub(crate) fn mount(
    source: Option<&str>,
    target: &Path,
    fstype: Option<&str>,
    flags: libc::c_ulong,
    data: Option<&str>,
) -> io::Result<()> {
    let source = source.map(cstr).transpose()?;
    let target = cstr(target)?;
    let fstype = fstype.map(cstr).transpose()?;
    let data = data.map(cstr).transpose()?;
    let ptr = |c: &Option<CString>| c.as_ref().map_or(std::ptr::null(), |c| c.as_ptr());
    // SAFETY: all pointers are NUL-terminated strings or null, valid for the call.
    check(unsafe {
        libc::mount(
            ptr(&source),
            target.as_ptr(),
            ptr(&fstype),
            flags,
            ptr(&data).cast::<libc::c_void>(),
        )
    })
}

/// `mount(2)` with a source path (bind mounts).
pub(crate) fn mount_path(source: &Path, target: &Path, flags: libc::c_ulong) -> io::Result<()> {
    let source = cstr(source)?;
    let target = cstr(target)?;
    // SAFETY: NUL-terminated strings valid for the call.
    check(unsafe {
        libc::mount(
            source.as_ptr(),
            target.as_ptr(),
            std::ptr::null(),
            flags,
            std::ptr::null(),
        )
    })
}

/// Bind-mounts `source` on `target` (recursively), read-only when asked.
pub(crate) fn bind(source: &Path, target: &Path, readonly: bool) -> io::Result<()> {
    mount_path(source, target, libc::MS_BIND | libc::MS_REC)?;
    if readonly {
        remount_readonly(target)?;
    }
    Ok(())
}

/// Remounts the bind mount at `target` read-only, keeping its nosuid/nodev/noexec flags
/// (dropping a locked flag would fail in a user namespace).
pub(crate) fn remount_readonly(target: &Path) -> io::Result<()> {
    let mut flags = libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY;
    if let Ok(st) = statvfs(target) {
        for (st_flag, ms_flag) in [
            (libc::ST_NOSUID, libc::MS_NOSUID),
            (libc::ST_NODEV, libc::MS_NODEV),
            (libc::ST_NOEXEC, libc::MS_NOEXEC),
            (libc::ST_NOATIME, libc::MS_NOATIME),
            (libc::ST_NODIRATIME, libc::MS_NODIRATIME),
            (libc::ST_RELATIME, libc::MS_RELATIME),
        ] {
            if st & st_flag != 0 {
                flags |= ms_flag;
            }
        }
    }
    mount(None, target, None, flags, None)
}

fn statvfs(path: &Path) -> io::Result<libc::c_ulong> {
    let c = cstr(path)?;
    // SAFETY: zeroed statvfs is a valid out-parameter.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: valid path and out-pointer.
    check(unsafe { libc::statvfs(c.as_ptr(), &raw mut st) })?;
    Ok(st.f_flag)
}

/// `umount2(2)`.
pub(crate) fn umount2(target: &Path, flags: libc::c_int) -> io::Result<()> {
    let t = cstr(target)?;
    // SAFETY: valid NUL-terminated path.
    check(unsafe { libc::umount2(t.as_ptr(), flags) })
}

/// `unshare(2)`.
pub(crate) fn unshare(flags: libc::c_int) -> io::Result<()> {
    // SAFETY: plain system call.
    check(unsafe { libc::unshare(flags) })
}

/// Makes every mount of the current mount namespace private, recursively.
pub(crate) fn make_rprivate() -> io::Result<()> {
    mount(
        None,
        Path::new("/"),
        None,
        libc::MS_REC | libc::MS_PRIVATE,
        None,
    )
}

/// `pivot_root(2)`.
pub(crate) fn pivot_root(new_root: &Path, put_old: &Path) -> io::Result<()> {
    let n = cstr(new_root)?;
    let o = cstr(put_old)?;
    // SAFETY: valid NUL-terminated paths.
    let r = unsafe { libc::syscall(libc::SYS_pivot_root, n.as_ptr(), o.as_ptr()) };
    check(r as libc::c_int)
}

/// Writes all of `buf` to `fd`, ignoring errors (used for diagnostics only).
pub(crate) fn write_all_fd(fd: libc::c_int, mut buf: &[u8]) {
    while !buf.is_empty() {
        // SAFETY: buf is valid for buf.len() bytes.
        let n = unsafe { libc::write(fd, buf.as_ptr().cast::<libc::c_void>(), buf.len()) };
        if n < 0 {
            if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return;
        }
        if n == 0 {
            return;
        }
        buf = &buf[n as usize..];
    }
}

/// Exit code for a `waitpid` status: the exit code, or 128+N for signal N.
pub(crate) fn status_code(status: libc::c_int) -> i32 {
    if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else if libc::WIFSIGNALED(status) {
        128 + libc::WTERMSIG(status)
    } else {
        255
    }
}
