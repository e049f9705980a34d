//! File ops (COPY, ADD, WORKDIR's mkdir) with Docker's semantics.
//!
//! Each runs on a thread of its own ([`run`]): the thread unshares its mount namespace (and
//! with it its root and working directory, which no other thread of the process sees
//! change), mounts the base filesystem as a writable overlay (the upper dir collects the
//! changes, exactly as a RUN's would, so copy-up keeps parent directories' metadata), mounts
//! stage/image sources read-only, applies the actions, unmounts everything and ends. The
//! threads it starts to copy in parallel share its namespace. The mounts are nowhere else,
//! so nothing leaks when a build is killed. (A thread instead of a helper process saves a
//! process start, ~2 ms per COPY.)
//!
//! Every path inside a root filesystem is resolved with [`resolve_in`] (on
//! [`kiln_fsroot`]), which follows symlinks *within* that root: an absolute symlink in an
//! image never reaches the host.
//!
//! # The file pool
//! Large context files (at least [`POOL_MIN_SIZE`]) that a COPY writes are reported back
//! ([`Report`]) with their content hash, and the worker records them in the store's file
//! pool once the layer is committed. When a later COPY takes a file whose content the stat
//! cache vouches for ([`PoolHint`]) and a committed snapshot holds a file with that content
//! and exactly the metadata this COPY would give it (mode, owner, mtime), the new layer gets
//! a hard link to that file instead of a copy: snapshots are never written once committed,
//! so sharing the inode is safe, and a rebuild after a small edit does not rewrite a large
//! unchanged file. Hard links cannot cross into the overlay, so the COPY writes an empty
//! placeholder through it (which keeps parent directories, whiteouts and copy-up exactly as
//! a copy would) and the placeholder is swapped for the link in the upper dir once the
//! overlay is unmounted, the parent directory's mtime restored. Only the spec's last action
//! defers links, so no later action can touch a placeholder.
//!
//! # Writing below new directories
//! Creating a file through overlayfs costs about twice what it costs on the upper dir's own
//! filesystem, and a COPY of a source tree is mostly file creation. A directory that the
//! copy itself creates (nothing was at its path in the merged view, or what was there is
//! replaced) has no lower directory merged into it: its contents are exactly what the upper
//! dir holds. So the single-source copy of the spec's last action creates directories
//! through the overlay as usual (that copies their parents up), but writes the regular files
//! that land directly in such a new directory straight into the upper dir once the overlay
//! is unmounted, in parallel, and sets those directories' metadata after that (deepest
//! first). Large pooled files there become hard links at once, without placeholders.
//! Multiply-linked files and everything outside new directories go through the overlay.
//!
//! # Reusing the last result
//! When a COPY runs again because a few of its source files changed, the layer it made last
//! time ([`Spec::previous`], recorded by the worker per op) holds the rest already. A file
//! written directly (above) whose counterpart at the same path there is a regular file with
//! the same size, mode, owner and mtime, and byte for byte the same content, becomes a hard
//! link to it instead of a new file: committed snapshots are never written, so sharing is
//! safe, as with the pool. No inode is linked twice into one layer (two paths of a layer
//! sharing an inode would be a hard link the source did not have), and the candidate's
//! directories must be real directories of that snapshot (a symlink there could lead out of
//! it). Such files show a link count above one inside the build, as pooled files do.
//!
//! # Layout
//! [`run`] and the types of the spec are here; `apply` mounts and drives the actions,
//! `copy` is COPY/ADD (the `Copier`), `pool` the file pool and the reuse of the last result
//! (hard links to committed files), `archive` ADD's extraction, `actions` the other actions
//! (mkdir, mkfile) and metadata, `resolve` in-root path resolution, `parallel` the parallel
//! writing of files.

mod actions;
mod apply;
mod archive;
mod copy;
mod parallel;
mod pool;
mod resolve;
#[cfg(test)]
mod tests;

use kiln_opgraph::CopyAction;
use std::io;
use std::path::PathBuf;

pub use pool::{PoolHint, POOL_MIN_SIZE};
pub use resolve::resolve_in;

/// Where a copy reads from.
#[derive(Clone, Debug)]
pub enum Source {
    /// A host directory (build context), minus what `exclude` hides. Files become 0:0.
    Dir {
        /// The directory.
        path: PathBuf,
        /// `.dockerignore` patterns.
        exclude: Vec<String>,
        /// Large files of the directory that committed snapshots may already hold.
        pool: Vec<PoolHint>,
    },
    /// A filesystem made of these snapshot dirs (top first), mounted read-only.
    Layers(Vec<PathBuf>),
}

/// One action.
#[derive(Clone, Debug)]
pub enum Action {
    /// COPY / ADD.
    Copy {
        /// What to copy.
        copy: CopyAction,
        /// From where.
        source: Source,
    },
    /// `COPY <<EOF` (`Mkfile`) or WORKDIR (`Mkdir`), as the op graph says; a `Copy` here
    /// is refused (it needs its source: [`Action::Copy`]).
    Op(kiln_opgraph::FileAction),
}

/// What a file op did, for the worker.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// Large context files now in the upper dir: (content hash, path relative to the
    /// upper dir), to record in the file pool once committed.
    pub pooled: Vec<([u8; 32], String)>,
    /// How many of them are hard links to committed files rather than copies.
    pub linked: usize,
}

/// What a file op does.
#[derive(Clone, Debug)]
pub struct Spec {
    /// The base filesystem's snapshot dirs, top first.
    pub lowers: Vec<PathBuf>,
    /// Overlay upper dir (receives the changes).
    pub upper: PathBuf,
    /// Overlay work dir.
    pub work: PathBuf,
    /// A scratch dir for mount points.
    pub scratch: PathBuf,
    /// The actions, in order.
    pub actions: Vec<Action>,
    /// The snapshot this op made when it last ran (see "Reusing the last result").
    pub previous: Option<PathBuf>,
}

/// Why a file op failed. The messages are BuildKit's where it has one (a missing source,
/// an unknown `--chown` user).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The file op's thread panicked.
    #[error("the file operation panicked")]
    Panicked,
    /// The private mount namespace could not be made.
    #[error("cannot make a private mount namespace: {0}")]
    Namespace(#[source] io::Error),
    /// The overlay of the base filesystem could not be mounted.
    #[error("cannot mount the build filesystem: {0}")]
    MountRoot(#[source] io::Error),
    /// A stage or image source could not be mounted.
    #[error("cannot mount the copy source: {0}")]
    MountSource(#[source] io::Error),
    /// The overlay could not be unmounted to write into the upper dir.
    #[error("cannot unmount the build filesystem: {0}")]
    Unmount(#[source] nix::Error),
    /// A `--chown` user missing from the root's /etc/passwd.
    #[error("unable to find user {0}: no matching entries in passwd file")]
    UnknownUser(String),
    /// A `--chown` group missing from the root's /etc/group.
    #[error("unable to find group {0}: no matching entries in group file")]
    UnknownGroup(String),
    /// An [`Action::Op`] holding a copy.
    #[error("a copy without its source")]
    CopyWithoutSource,
    /// A named COPY source that does not exist (or that `.dockerignore` hides).
    #[error(
        "failed to compute cache key: \"/{path}\": not found{}",
        if *.excluded { " (excluded by .dockerignore)" } else { "" }
    )]
    NotFound {
        /// The source, relative to the source root.
        path: String,
        /// `.dockerignore` hides it.
        excluded: bool,
    },
    /// Copying regular files failed (the cause names the file).
    #[error("copying {0}")]
    Copy(#[source] io::Error),
    /// A filesystem operation on `what` failed.
    #[error("{what}: {source}")]
    Io {
        /// What was done or to which path (`mkdir /app`, `copying /src to /dst/`, `/a`).
        what: String,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// A filesystem operation failed (the cause names the path when it has one).
    #[error(transparent)]
    Fs(io::Error),
}

impl Error {
    /// An [`Error::Io`] for `what`, for `map_err`.
    pub(crate) fn io(what: impl Into<String>) -> impl FnOnce(io::Error) -> Self {
        let what = what.into();
        move |source| Error::Io { what, source }
    }
}

/// Applies `spec` on a thread of its own (see the module docs); a failure's message says
/// what failed (an [`Error`]).
pub async fn run(spec: Spec) -> Result<Report, kiln_solver::BoxError> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("kiln-fileop".into())
        // Copying recurses once per directory level.
        .stack_size(16 << 20)
        .spawn(move || {
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| apply::apply(&spec)))
                .unwrap_or(Err(Error::Panicked));
            let _ = tx.send(r);
        })
        .map_err(|e| format!("cannot start a file-op thread: {e}"))?;
    let r = rx
        .await
        .map_err(|_| "the file-op thread ended without a result")?;
    Ok(r?)
}
