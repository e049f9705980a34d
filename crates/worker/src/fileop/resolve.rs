//! In-root path resolution: every path inside a root filesystem is resolved on
//! [`kiln_fsroot`], which follows symlinks *within* that root.

use std::io;
use std::path::{Path, PathBuf};

/// Resolves `path` (absolute or relative to `root`) inside `root`, following symlinks as if
/// `root` were `/` (the last component too when `follow_last`). Missing components are
/// kept as they are. The walk is [`kiln_fsroot::Root::resolve_path`]: one `openat` of an
/// `O_PATH | O_NOFOLLOW` fd per component, so the path returned holds no symlink.
pub fn resolve_in(root: &Path, path: &str, follow_last: bool) -> io::Result<PathBuf> {
    resolve_visible(root, path, follow_last, &|_| false).map(|r| r.path)
}

/// Where [`resolve_visible`] led.
pub(super) struct Resolved {
    /// The path on the host.
    pub(super) path: PathBuf,
    /// The same, relative to the root (`/`-separated, no leading `/`).
    pub(super) rel: String,
    /// The path, or a symlink on the way, is hidden: it does not exist for the build.
    pub(super) hidden: bool,
}

/// [`resolve_in`] for a source where `hidden(rel)` entries (`.dockerignore`d ones) do not
/// exist: a hidden symlink is never followed, and a path that is, or was reached through,
/// a hidden entry is reported as `hidden` ([`kiln_fsroot::Root::resolve_path_hiding`]).
pub(super) fn resolve_visible(
    root: &Path,
    path: &str,
    follow_last: bool,
    hidden: &dyn Fn(&str) -> bool,
) -> io::Result<Resolved> {
    let (rel, is_hidden) =
        kiln_fsroot::Root::open(root)?
            .resolve_path_hiding(path, follow_last, &|r| hidden(&r.to_string_lossy()))?;
    Ok(Resolved {
        path: root.join(&rel),
        rel: rel.to_string_lossy().into_owned(),
        hidden: is_hidden,
    })
}
