//! The actions besides COPY/ADD: `Mkdir` (WORKDIR) and `Mkfile` (`COPY <<EOF`), the owner of
//! a `--chown`, and setting a copied entry's metadata.

use super::resolve::resolve_in;
use super::Error;
use kiln_opgraph::Chown;
use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// uid:gid for a `--chown`, names resolved against the root's /etc/passwd and /etc/group.
pub(super) fn resolve_owner(root: &Path, c: &Chown) -> Result<(u32, u32), Error> {
    let passwd = fs::read_to_string(resolve_in(root, "/etc/passwd", true).unwrap_or_default())
        .unwrap_or_default();
    let group = fs::read_to_string(resolve_in(root, "/etc/group", true).unwrap_or_default())
        .unwrap_or_default();
    let (uid, primary) = match c.user.parse::<u32>() {
        Ok(n) => (n, n),
        Err(_) => passwd
            .lines()
            .map(|l| l.split(':').collect::<Vec<_>>())
            .find(|f| f.len() >= 4 && f[0] == c.user)
            .and_then(|f| Some((f[2].parse().ok()?, f[3].parse().ok()?)))
            .ok_or_else(|| Error::UnknownUser(c.user.clone()))?,
    };
    let gid = match &c.group {
        None => primary,
        Some(g) => match g.parse::<u32>() {
            Ok(n) => n,
            Err(_) => group
                .lines()
                .map(|l| l.split(':').collect::<Vec<_>>())
                .find(|f| f.len() >= 3 && f[0] == g)
                .and_then(|f| f[2].parse().ok())
                .ok_or_else(|| Error::UnknownGroup(g.clone()))?,
        },
    };
    Ok((uid, gid))
}

/// mkdir -p inside `root`: every missing directory gets `mode` and `owner` (root when None).
pub(super) fn mkdir_p(
    root: &Path,
    path: &str,
    mode: u32,
    owner: Option<(u32, u32)>,
) -> io::Result<PathBuf> {
    let target = resolve_in(root, path, true)?;
    let rel = target
        .strip_prefix(root)
        .map_err(io::Error::other)?
        .to_path_buf();
    let mut cur = root.to_path_buf();
    for c in rel.components() {
        cur.push(c);
        match fs::symlink_metadata(&cur) {
            Ok(md) if md.is_dir() => {}
            Ok(_) => {
                return Err(io::Error::other(format!(
                    "{}: not a directory",
                    Path::new("/")
                        .join(cur.strip_prefix(root).unwrap_or(&cur))
                        .display()
                )))
            }
            Err(_) => {
                fs::create_dir(&cur)?;
                fs::set_permissions(&cur, fs::Permissions::from_mode(mode))?;
                let (u, g) = owner.unwrap_or((0, 0));
                std::os::unix::fs::lchown(&cur, Some(u), Some(g))?;
            }
        }
    }
    Ok(target)
}

/// Writes a file inside `root` (parents created 0755, owned like the file).
pub(super) fn mkfile(
    root: &Path,
    path: &str,
    data: &[u8],
    mode: u32,
    owner: Option<(u32, u32)>,
) -> io::Result<()> {
    let parent = Path::new(path)
        .parent()
        .map(|p| p.to_string_lossy().into_owned());
    if let Some(p) = parent.filter(|p| !p.is_empty()) {
        mkdir_p(root, &p, 0o755, owner)?;
    }
    let target = resolve_in(root, path, false)?;
    if fs::symlink_metadata(&target).is_ok() {
        fs::remove_file(&target)?;
    }
    fs::write(&target, data)?;
    let (u, g) = owner.unwrap_or((0, 0));
    std::os::unix::fs::lchown(&target, Some(u), Some(g))?;
    fs::set_permissions(&target, fs::Permissions::from_mode(mode))
}

/// Sets a regular file's owner, mode and mtime (`md`'s) through its descriptor (no path
/// lookups through the overlay).
pub(super) fn set_file_meta(
    f: &fs::File,
    md: &fs::Metadata,
    owner: (u32, u32),
    mode: u32,
) -> io::Result<()> {
    std::os::unix::fs::fchown(f, Some(owner.0), Some(owner.1))?;
    f.set_permissions(fs::Permissions::from_mode(mode))?;
    let mtime = filetime::FileTime::from_last_modification_time(md);
    filetime::set_file_handle_times(f, Some(mtime), Some(mtime))
}

/// Sets the owner, mode (not for a symlink) and mtime of `target`.
pub(super) fn set_path_meta(
    target: &Path,
    owner: (u32, u32),
    mode: u32,
    mtime: filetime::FileTime,
    is_link: bool,
) -> io::Result<()> {
    std::os::unix::fs::lchown(target, Some(owner.0), Some(owner.1))?;
    if is_link {
        return filetime::set_symlink_file_times(target, mtime, mtime);
    }
    fs::set_permissions(target, fs::Permissions::from_mode(mode))?;
    filetime::set_file_times(target, mtime, mtime)
}
