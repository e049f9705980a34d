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

use kiln_opgraph::pattern::{glob_match, PatternMatcher};
use kiln_opgraph::{Chown, CopyAction};
use std::collections::HashMap;
use std::ffi::OsString;
use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

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

/// Context files at least this large are pooled (see the module docs).
pub const POOL_MIN_SIZE: u64 = 1 << 20;

/// A large context file the store has hashed, and committed files with the same content.
#[derive(Clone, Debug)]
pub struct PoolHint {
    /// Its path relative to the context root.
    pub rel: String,
    /// Its `lstat` identity and content hash when it was hashed (trusted only while the
    /// file still matches it).
    pub entry: kiln_cache::StatEntry,
    /// Files in committed snapshots with that content (they may have gone or differ in
    /// metadata: checked before use).
    pub candidates: Vec<PathBuf>,
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

/// Applies `spec` on a thread of its own (see the module docs); a failure's message says
/// what failed.
pub async fn run(spec: Spec) -> Result<Report, kiln_solver::BoxError> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("kiln-fileop".into())
        // Copying recurses once per directory level.
        .stack_size(16 << 20)
        .spawn(move || {
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| apply(&spec)))
                .unwrap_or_else(|_| Err("the file operation panicked".into()));
            let _ = tx.send(r);
        })
        .map_err(|e| format!("cannot start a file-op thread: {e}"))?;
    let r = rx
        .await
        .map_err(|_| "the file-op thread ended without a result")?;
    r.map_err(|msg| Box::new(crate::StepError(msg)) as kiln_solver::BoxError)
}

/// Applies `spec` in a mount namespace of this thread's own, unmounting what it mounted
/// before returning.
fn apply(spec: &Spec) -> Result<Report, String> {
    kiln_executor::mount::private_mount_namespace()
        .map_err(|e| format!("cannot make a private mount namespace: {e}"))?;
    let mut mounted = Vec::new();
    let r = apply_mounted(spec, &mut mounted);
    for m in mounted.iter().rev() {
        // EINVAL: already unmounted.
        let _ = nix::mount::umount2(m, nix::mount::MntFlags::MNT_DETACH);
    }
    r
}

fn apply_mounted(spec: &Spec, mounted: &mut Vec<PathBuf>) -> Result<Report, String> {
    let root = spec.scratch.join("root");
    fs::create_dir_all(&root).map_err(|e| e.to_string())?;
    kiln_executor::mount::overlay(&spec.lowers, Some((&spec.upper, &spec.work)), &root)
        .map_err(|e| format!("cannot mount the build filesystem: {e}"))?;
    mounted.push(root.clone());
    let mut report = Report::default();
    let mut deferred: Vec<Deferred> = Vec::new();
    let mut direct: Vec<DirectJob> = Vec::new();
    let mut late_dirs: Vec<LateDir> = Vec::new();
    let claims = std::sync::Arc::new(Claims::default());
    for (i, action) in spec.actions.iter().enumerate() {
        match action {
            Action::Op(kiln_opgraph::FileAction::Mkfile {
                path,
                data,
                mode,
                chown,
            }) => {
                let owner = chown
                    .as_ref()
                    .map(|c| resolve_owner(&root, c))
                    .transpose()?;
                mkfile(&root, path, data.as_bytes(), *mode, owner)
                    .map_err(|e| format!("creating {path}: {e}"))?;
            }
            Action::Op(kiln_opgraph::FileAction::Mkdir { path, mode, chown }) => {
                let owner = chown
                    .as_ref()
                    .map(|c| resolve_owner(&root, c))
                    .transpose()?;
                mkdir_p(&root, path, *mode, owner).map_err(|e| format!("mkdir {path}: {e}"))?;
            }
            Action::Op(kiln_opgraph::FileAction::Copy(_)) => {
                return Err("a copy without its source".into());
            }
            Action::Copy { copy, source } => {
                let (src_root, exclude, from_context, pool) = match source {
                    Source::Dir {
                        path,
                        exclude,
                        pool,
                    } => (path.clone(), exclude.clone(), true, pool.as_slice()),
                    Source::Layers(lowers) => {
                        let mnt = spec.scratch.join(format!("src-{i}"));
                        fs::create_dir_all(&mnt).map_err(|e| e.to_string())?;
                        if !lowers.is_empty() {
                            kiln_executor::mount::overlay(lowers, None, &mnt)
                                .map_err(|e| format!("cannot mount the copy source: {e}"))?;
                            mounted.push(mnt.clone());
                        }
                        (mnt, vec![], false, &[][..])
                    }
                };
                let mut copier = Copier::new(&root, &src_root, &exclude, from_context, copy)?;
                copier.pool = pool.iter().map(|h| (h.rel.as_str(), h)).collect();
                copier.defer_links = i + 1 == spec.actions.len();
                copier.claims = claims.clone();
                copier.run()?;
                let (pooled, links) = (copier.pooled, copier.deferred);
                direct.extend(copier.direct);
                late_dirs.extend(copier.late_dirs);
                for (hash, target) in pooled {
                    if let Ok(rel) = target.strip_prefix(&root) {
                        report
                            .pooled
                            .push((hash, rel.to_string_lossy().into_owned()));
                    }
                }
                deferred.extend(links);
            }
        }
    }
    if !deferred.is_empty() || !direct.is_empty() || !late_dirs.is_empty() {
        nix::mount::umount2(&root, nix::mount::MntFlags::MNT_DETACH)
            .map_err(|e| format!("cannot unmount the build filesystem: {e}"))?;
        let reusable = reusable_dirs(spec.previous.as_deref(), &direct);
        let written = parallel(
            &direct,
            |j| j.target.parent(),
            |j| {
                let target = spec.upper.join(&j.target);
                let previous = spec
                    .previous
                    .as_ref()
                    .filter(|_| j.target.parent().is_some_and(|p| reusable.contains(p)))
                    .map(|p| p.join(&j.target));
                write_file(
                    &j.src,
                    &target,
                    &j.md,
                    (j.owner, j.mode),
                    j.hint.as_ref(),
                    (
                        LinkMode::Now {
                            previous: previous.as_deref(),
                        },
                        &claims,
                    ),
                )
                .map_err(|e| io::Error::new(e.kind(), format!("/{}: {e}", j.rel)))
            },
        )
        .map_err(|e| format!("copying {e}"))?;
        for o in written {
            let (hash, target) = match o {
                Outcome::Linked(hash, target) => {
                    report.linked += 1;
                    (hash, target)
                }
                Outcome::Pooled(hash, target) => (hash, target),
                Outcome::Deferred(_) | Outcome::Reused => continue,
            };
            if let Ok(rel) = target.strip_prefix(&spec.upper) {
                report
                    .pooled
                    .push((hash, rel.to_string_lossy().into_owned()));
            }
        }
        for d in &late_dirs {
            let path = spec.upper.join(&d.target);
            set_path_meta(&path, d.owner, d.mode, d.mtime, false)
                .map_err(|e| format!("/{}: {e}", d.target.display()))?;
        }
        for d in deferred {
            let Ok(rel) = d.target.strip_prefix(&root) else {
                continue;
            };
            let path = spec.upper.join(rel);
            link_placeholder(&path, &d.candidate)
                .map_err(|e| format!("linking {}: {e}", rel.display()))?;
            report.linked += 1;
            report
                .pooled
                .push((d.hash, rel.to_string_lossy().into_owned()));
        }
    }
    Ok(report)
}

/// The parent directories (relative) of `jobs` that are real directories of `previous`,
/// reached without symlinks, so that files below them are files of that snapshot.
fn reusable_dirs(
    previous: Option<&Path>,
    jobs: &[DirectJob],
) -> std::collections::HashSet<PathBuf> {
    let Some(prev) = previous.and_then(|p| fs::canonicalize(p).ok()) else {
        return Default::default();
    };
    let mut dirs: Vec<&Path> = jobs.iter().filter_map(|j| j.target.parent()).collect();
    dirs.dedup();
    dirs.into_iter()
        .filter(|d| {
            let p = prev.join(d);
            fs::canonicalize(&p).is_ok_and(|c| c == p)
        })
        .map(Path::to_path_buf)
        .collect()
}

/// A placeholder written through the overlay, to become a hard link to `candidate`.
struct Deferred {
    target: PathBuf,
    candidate: PathBuf,
    hash: [u8; 32],
}

/// A regular file to write straight into the upper dir once the overlay is unmounted (see
/// "Writing below new directories").
struct DirectJob {
    src: PathBuf,
    /// Its path relative to the source root (for errors).
    rel: String,
    /// Where it goes, relative to the root.
    target: PathBuf,
    md: fs::Metadata,
    owner: (u32, u32),
    mode: u32,
    hint: Option<PoolHint>,
}

/// Committed inodes already linked into the layer being made (see "Reusing the last
/// result").
#[derive(Default)]
struct Claims(std::sync::Mutex<std::collections::HashSet<(u64, u64)>>);

impl Claims {
    /// Whether `md`'s inode may be linked into the layer (it was not yet).
    fn claim(&self, md: &fs::Metadata) -> bool {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert((md.dev(), md.ino()))
    }
}

/// A new directory whose metadata is set after the files written into it directly.
struct LateDir {
    /// Relative to the root.
    target: PathBuf,
    owner: (u32, u32),
    mode: u32,
    mtime: filetime::FileTime,
}

/// Whether `candidate` (a committed file) is exactly what copying a file with `md` and
/// the wanted owner and mode would make. (Pooled files were written by COPYs, which set no
/// xattrs, so there are none to compare.)
fn same_file(
    candidate: &Path,
    md: &fs::Metadata,
    mode: u32,
    owner: (u32, u32),
) -> Option<fs::Metadata> {
    fs::symlink_metadata(candidate).ok().filter(|c| {
        c.is_file()
            && c.size() == md.size()
            && c.mode() & 0o7777 == mode
            && (c.uid(), c.gid()) == owner
            && c.mtime() == md.mtime()
            && c.mtime_nsec() == md.mtime_nsec()
    })
}

/// Replaces the placeholder at `path` (in the upper dir, the overlay unmounted) with a hard
/// link to `candidate`, keeping the parent directory's timestamps. When the link cannot be
/// made (another filesystem, too many links), the content is copied into the placeholder.
fn link_placeholder(path: &Path, candidate: &Path) -> io::Result<()> {
    let parent = path.parent().unwrap_or(Path::new("/"));
    let pmd = fs::symlink_metadata(parent)?;
    let mut name = OsString::from(".kiln-link-");
    name.push(path.file_name().unwrap_or_default());
    let tmp = parent.join(name);
    if let Ok(()) = fs::hard_link(candidate, &tmp) {
        if let Err(e) = fs::rename(&tmp, path) {
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
    } else {
        let md = fs::symlink_metadata(path)?;
        let mut to = fs::OpenOptions::new().write(true).open(path)?;
        io::copy(&mut fs::File::open(candidate)?, &mut to)?;
        let t = filetime::FileTime::from_last_modification_time(&md);
        filetime::set_file_times(path, t, t)?;
    }
    filetime::set_file_times(
        parent,
        filetime::FileTime::from_last_access_time(&pmd),
        filetime::FileTime::from_last_modification_time(&pmd),
    )
}

/// Resolves `path` (absolute or relative to `root`) inside `root`, following symlinks as if
/// `root` were `/` (the last component too when `follow_last`). Missing components are
/// kept as they are. The walk is [`kiln_fsroot::Root::resolve_path`]: one `openat` of an
/// `O_PATH | O_NOFOLLOW` fd per component, so the path returned holds no symlink.
pub fn resolve_in(root: &Path, path: &str, follow_last: bool) -> io::Result<PathBuf> {
    resolve_visible(root, path, follow_last, &|_| false).map(|r| r.path)
}

/// Where [`resolve_visible`] led.
pub(crate) struct Resolved {
    /// The path on the host.
    pub path: PathBuf,
    /// The same, relative to the root (`/`-separated, no leading `/`).
    pub rel: String,
    /// The path, or a symlink on the way, is hidden: it does not exist for the build.
    pub hidden: bool,
}

/// [`resolve_in`] for a source where `hidden(rel)` entries (`.dockerignore`d ones) do not
/// exist: a hidden symlink is never followed, and a path that is, or was reached through,
/// a hidden entry is reported as `hidden` ([`kiln_fsroot::Root::resolve_path_hiding`]).
pub(crate) fn resolve_visible(
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

/// uid:gid for a `--chown`, names resolved against the root's /etc/passwd and /etc/group.
fn resolve_owner(root: &Path, c: &Chown) -> Result<(u32, u32), String> {
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
            .ok_or_else(|| {
                format!(
                    "unable to find user {}: no matching entries in passwd file",
                    c.user
                )
            })?,
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
                .ok_or_else(|| {
                    format!("unable to find group {g}: no matching entries in group file")
                })?,
        },
    };
    Ok((uid, gid))
}

/// mkdir -p inside `root`: every missing directory gets `mode` and `owner` (root when None).
fn mkdir_p(root: &Path, path: &str, mode: u32, owner: Option<(u32, u32)>) -> io::Result<PathBuf> {
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
fn mkfile(
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

fn has_glob(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

/// Cleans a source path the way Docker does: relative to the source root, no `.`/`..`
/// escaping it.
fn clean_src(s: &str) -> String {
    kiln_opgraph::pattern::clean(s)
}

/// A named source after glob expansion.
struct Src {
    /// Path relative to the source root, as the user named it.
    rel: String,
    /// Where it is now.
    path: PathBuf,
    /// `path` relative to the source root (`rel` with its symlinks followed): what
    /// `.dockerignore` and `--exclude` patterns are matched against below it.
    real: String,
    /// `--parents`: the leading part of `rel` that is not kept below the destination (the
    /// part before a `/./` pivot; empty without one).
    pivot: String,
}

struct Copier<'a> {
    root: &'a Path,
    src_root: &'a Path,
    exclude: PatternMatcher,
    /// `--exclude` patterns, matched against paths relative to the source being copied.
    copy_exclude: PatternMatcher,
    /// `rel` of the source being copied (for `copy_exclude`).
    top: String,
    from_context: bool,
    copy: &'a CopyAction,
    owner: Option<(u32, u32)>,
    /// (dev, ino) of a copied source file → where it went, to keep hard links.
    links: HashMap<(u64, u64), PathBuf>,
    /// Large context files the stat cache knows, by path relative to the context.
    pool: HashMap<&'a str, &'a PoolHint>,
    /// Whether pooled files may become deferred hard links (the spec's last action only).
    defer_links: bool,
    /// Large context files copied: (content hash, target).
    pooled: Vec<([u8; 32], PathBuf)>,
    /// Placeholders to turn into hard links.
    deferred: Vec<Deferred>,
    /// Regular files of the current source, copied in parallel by [`Copier::flush`].
    jobs: Vec<FileJob>,
    /// Hard links within the current source, made after its copies: (first path, new path).
    link_jobs: Vec<(PathBuf, PathBuf)>,
    /// Directories of the current source whose metadata is set once their contents exist,
    /// deepest first.
    dir_meta: Vec<(PathBuf, fs::Metadata)>,
    /// Whether regular files in new directories are written after the overlay is unmounted
    /// (see "Writing below new directories").
    direct_ok: bool,
    /// Directories this copy created (nothing was merged into them).
    fresh: std::collections::HashSet<PathBuf>,
    /// Files for the upper dir, once the overlay is unmounted.
    direct: Vec<DirectJob>,
    /// New directories' metadata, set after `direct`.
    late_dirs: Vec<LateDir>,
    /// Committed inodes linked into the layer so far (shared by the spec's actions).
    claims: std::sync::Arc<Claims>,
}

/// A regular file to copy.
struct FileJob {
    src: PathBuf,
    rel: String,
    target: PathBuf,
    md: fs::Metadata,
}

/// What copying a regular file leaves for the report.
enum Outcome {
    /// A pooled file was copied: (content hash, target).
    Pooled([u8; 32], PathBuf),
    /// A pooled file became a hard link to a committed file: (content hash, target).
    Linked([u8; 32], PathBuf),
    /// A placeholder for a hard link was written.
    Deferred(Deferred),
    /// A file became a hard link to the same file of the op's last result.
    Reused,
}

/// What a pooled file with a matching committed file becomes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum LinkMode<'a> {
    /// A copy (links are not allowed here).
    No,
    /// A placeholder, linked once the overlay is unmounted.
    Placeholder,
    /// A hard link, made now (`target` is in the upper dir itself); so is a link to
    /// `previous` (the same path in the op's last result) when it is the same small file.
    Now { previous: Option<&'a Path> },
}

/// Copies the regular file `src` (whose metadata is `md`) to `target` with `owner` and
/// `mode` (and `md`'s mtime). A pooled file (`hint`) whose content and metadata a committed
/// file already has becomes a link to it as `link` says, unless `claims` has its inode.
fn write_file(
    src: &Path,
    target: &Path,
    md: &fs::Metadata,
    (owner, mode): ((u32, u32), u32),
    hint: Option<&PoolHint>,
    (link, claims): (LinkMode<'_>, &Claims),
) -> io::Result<Option<Outcome>> {
    if let LinkMode::Now { previous: Some(p) } = link {
        if md.size() < POOL_MIN_SIZE {
            if let Some(pmd) = same_file(p, md, mode, owner) {
                let data = fs::read(src)?;
                if data.len() as u64 != md.size() {
                    return Err(io::Error::other("file changed while being copied"));
                }
                if fs::read(p).is_ok_and(|d| d == data)
                    && claims.claim(&pmd)
                    && fs::hard_link(p, target).is_ok()
                {
                    return Ok(Some(Outcome::Reused));
                }
                let mut to = fs::File::create(target)?;
                io::Write::write_all(&mut to, &data)?;
                set_file_meta(&to, md, owner, mode)?;
                return Ok(None);
            }
        }
    }
    let candidate = hint.filter(|_| link != LinkMode::No).and_then(|h| {
        h.candidates
            .iter()
            .find_map(|c| same_file(c, md, mode, owner).map(|cmd| (c, cmd)))
    });
    if let (Some(h), Some((c, cmd))) = (hint, candidate) {
        if claims.claim(&cmd) {
            if link == LinkMode::Placeholder {
                let f = fs::File::create(target)?;
                set_file_meta(&f, md, owner, mode)?;
                return Ok(Some(Outcome::Deferred(Deferred {
                    target: target.to_path_buf(),
                    candidate: c.clone(),
                    hash: h.entry.hash,
                })));
            }
            // Another filesystem or too many links: copy instead.
            if fs::hard_link(c, target).is_ok() {
                return Ok(Some(Outcome::Linked(h.entry.hash, target.to_path_buf())));
            }
        }
    }
    let mut from = fs::File::open(src)?;
    let mut to = fs::File::create(target)?;
    io::copy(&mut from, &mut to)?;
    set_file_meta(&to, md, owner, mode)?;
    Ok(hint.map(|h| Outcome::Pooled(h.entry.hash, target.to_path_buf())))
}

/// Sets a regular file's owner, mode and mtime (`md`'s) through its descriptor (no path
/// lookups through the overlay).
fn set_file_meta(f: &fs::File, md: &fs::Metadata, owner: (u32, u32), mode: u32) -> io::Result<()> {
    std::os::unix::fs::fchown(f, Some(owner.0), Some(owner.1))?;
    f.set_permissions(fs::Permissions::from_mode(mode))?;
    let mtime = filetime::FileTime::from_last_modification_time(md);
    filetime::set_file_handle_times(f, Some(mtime), Some(mtime))
}

/// Sets the owner, mode (not for a symlink) and mtime of `target`.
fn set_path_meta(
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

/// Runs `f` on every item, on several threads when there are many (creating small files is
/// most of a copy's time), and gathers what it returns. The first error stops the rest.
/// Consecutive items with the same `dir` go to one thread together: creating entries in one
/// directory from two threads at once only makes them wait on its lock.
fn parallel<T: Sync, R: Send>(
    items: &[T],
    dir: impl Fn(&T) -> Option<&Path>,
    f: impl Fn(&T) -> io::Result<Option<R>> + Sync,
) -> io::Result<Vec<R>> {
    let threads = std::thread::available_parallelism()
        .map_or(1, std::num::NonZero::get)
        .min(items.len() / 64 + 1);
    // Runs of items in one directory, at most 64 long (a big directory is still shared).
    let mut groups: Vec<std::ops::Range<usize>> = Vec::new();
    for i in 0..items.len() {
        match groups.last_mut() {
            Some(g) if g.len() < 64 && dir(&items[g.start]) == dir(&items[i]) => g.end = i + 1,
            _ => groups.push(i..i + 1),
        }
    }
    let next = std::sync::atomic::AtomicUsize::new(0);
    let work = || -> io::Result<Vec<R>> {
        let mut out = Vec::new();
        loop {
            let g = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let Some(range) = groups.get(g) else {
                return Ok(out);
            };
            for item in &items[range.clone()] {
                match f(item) {
                    Ok(o) => out.extend(o),
                    Err(e) => {
                        // Stop the other threads too.
                        next.store(groups.len(), std::sync::atomic::Ordering::Relaxed);
                        return Err(e);
                    }
                }
            }
        }
    };
    let results: Vec<io::Result<Vec<R>>> = if threads <= 1 {
        vec![work()]
    } else {
        std::thread::scope(|s| {
            let handles: Vec<_> = (0..threads).map(|_| s.spawn(work)).collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Err(io::Error::other("copy thread panicked")))
                })
                .collect()
        })
    };
    let mut all = Vec::new();
    for r in results {
        all.extend(r?);
    }
    Ok(all)
}

impl<'a> Copier<'a> {
    fn new(
        root: &'a Path,
        src_root: &'a Path,
        exclude: &[String],
        from_context: bool,
        copy: &'a CopyAction,
    ) -> Result<Self, String> {
        let owner = copy
            .chown
            .as_ref()
            .map(|c| resolve_owner(root, c))
            .transpose()?;
        Ok(Self {
            root,
            src_root,
            exclude: PatternMatcher::new(exclude),
            copy_exclude: PatternMatcher::new(&copy.exclude),
            top: String::new(),
            from_context,
            copy,
            owner,
            links: HashMap::new(),
            pool: HashMap::new(),
            defer_links: false,
            pooled: Vec::new(),
            deferred: Vec::new(),
            jobs: Vec::new(),
            link_jobs: Vec::new(),
            dir_meta: Vec::new(),
            direct_ok: false,
            fresh: Default::default(),
            direct: Vec::new(),
            late_dirs: Vec::new(),
            claims: Default::default(),
        })
    }

    /// The owner and mode a copy of a file with `md` gets.
    fn wanted(&self, md: &fs::Metadata) -> ((u32, u32), u32) {
        let owner = match self.owner {
            Some(o) => o,
            None if self.from_context => (0, 0),
            None => (md.uid(), md.gid()),
        };
        (owner, self.copy.chmod.unwrap_or(md.mode() & 0o7777))
    }

    /// The pool hint for a regular file, when the stat cache vouches for its content.
    fn hint(&self, rel: &str, md: &fs::Metadata) -> Option<&'a PoolHint> {
        self.pool.get(rel).copied().filter(|h| {
            // A multiply-linked source keeps its links through `links` instead.
            self.from_context
                && md.size() >= POOL_MIN_SIZE
                && md.nlink() == 1
                && h.entry.matches(md)
        })
    }

    /// Copies one regular file. A large context file the stat cache vouches for becomes a
    /// placeholder for a deferred hard link when a committed file has its content and
    /// metadata, else a copy that is reported for the pool.
    fn copy_file(&self, j: &FileJob) -> io::Result<Option<Outcome>> {
        let link = if self.defer_links {
            LinkMode::Placeholder
        } else {
            LinkMode::No
        };
        let hint = self.hint(&j.rel, &j.md);
        let wanted = self.wanted(&j.md);
        write_file(&j.src, &j.target, &j.md, wanted, hint, (link, &self.claims))
    }

    /// Finishes the current source: copies its regular files (in parallel), then makes its
    /// hard links, then sets its directories' metadata, deepest first, so creating their
    /// entries does not change their mtimes afterwards. New directories that receive files
    /// directly in the upper dir get theirs later ([`Copier::late_dirs`]).
    fn flush(&mut self) -> io::Result<()> {
        let jobs = std::mem::take(&mut self.jobs);
        let outcomes = parallel(
            &jobs,
            |j| j.target.parent(),
            |j| {
                self.copy_file(j)
                    .map_err(|e| io::Error::new(e.kind(), format!("/{}: {e}", j.rel)))
            },
        )?;
        for o in outcomes {
            match o {
                Outcome::Pooled(hash, target) | Outcome::Linked(hash, target) => {
                    self.pooled.push((hash, target));
                }
                Outcome::Deferred(d) => self.deferred.push(d),
                Outcome::Reused => {}
            }
        }
        for (first, target) in std::mem::take(&mut self.link_jobs) {
            fs::hard_link(first, target)?;
        }
        for (dir, md) in std::mem::take(&mut self.dir_meta) {
            if self.direct_ok && self.fresh.contains(&dir) {
                let (owner, mode) = self.wanted(&md);
                self.late_dirs.push(LateDir {
                    target: dir
                        .strip_prefix(self.root)
                        .map_err(io::Error::other)?
                        .to_path_buf(),
                    owner,
                    mode,
                    mtime: filetime::FileTime::from_last_modification_time(&md),
                });
            } else {
                self.set_meta(&dir, &md, false)?;
            }
        }
        Ok(())
    }

    fn excluded(&self, rel: &str) -> bool {
        !rel.is_empty() && !self.exclude.is_empty() && self.exclude.is_excluded(rel)
    }

    /// Whether `--exclude` hides `rel` (relative to the source root), below the source
    /// being copied. The named source itself is never hidden (as BuildKit's copier).
    fn copy_excluded(&self, rel: &str) -> bool {
        if self.copy_exclude.is_empty() {
            return false;
        }
        let below = if self.top.is_empty() {
            rel
        } else {
            match rel
                .strip_prefix(self.top.as_str())
                .and_then(|r| r.strip_prefix('/'))
            {
                Some(r) => r,
                None => return false,
            }
        };
        !below.is_empty() && self.copy_exclude.is_excluded(below)
    }

    /// Expands the sources.
    fn sources(&self) -> Result<Vec<Src>, String> {
        let mut out: Vec<Src> = Vec::new();
        for s in &self.copy.src {
            // `--parents`: `a/./b/c` keeps `b/c` below the destination.
            let pivot = match s.split_once("/./") {
                Some((p, _)) if self.copy.parents => clean_src(p),
                _ => String::new(),
            };
            let rel = clean_src(s);
            if has_glob(&rel) {
                // BuildKit allows a wildcard that matches nothing (AllowEmptyWildcard).
                let mut found = Vec::new();
                self.glob(&rel, &mut found).map_err(|e| e.to_string())?;
                for (rel, r) in found {
                    if !out.iter().any(|o| o.rel == rel) {
                        out.push(Src {
                            rel,
                            path: r.path,
                            real: r.rel,
                            pivot: pivot.clone(),
                        });
                    }
                }
            } else {
                // A symlink to an ignored file finds nothing, as in BuildKit, where the
                // ignored file is not in the context at all.
                let r = self.resolve(&rel).map_err(|e| e.to_string())?;
                if fs::symlink_metadata(&r.path).is_err() || r.hidden {
                    let why = if r.hidden {
                        " (excluded by .dockerignore)"
                    } else {
                        ""
                    };
                    return Err(format!(
                        "failed to compute cache key: \"/{rel}\": not found{why}"
                    ));
                }
                out.push(Src {
                    rel,
                    path: r.path,
                    real: r.rel,
                    pivot,
                });
            }
        }
        Ok(out)
    }

    /// Every entry below `base` (relative to the source root), parents first, sorted: what
    /// a `**` component can stand for (besides `base` itself).
    fn descendants(&self, base: &str, out: &mut Vec<String>) -> io::Result<()> {
        let dir = resolve_in(self.src_root, base, true)?;
        let Ok(rd) = fs::read_dir(&dir) else {
            return Ok(());
        };
        let mut names: Vec<String> = rd
            .filter_map(std::result::Result::ok)
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        for n in names {
            let p = if base.is_empty() {
                n
            } else {
                format!("{base}/{n}")
            };
            let is_dir = fs::symlink_metadata(dir.join(p.rsplit('/').next().unwrap_or("")))
                .is_ok_and(|m| m.is_dir());
            out.push(p.clone());
            if is_dir && out.len() < 1_000_000 {
                self.descendants(&p, out)?;
            }
        }
        Ok(())
    }

    /// Resolves `rel` in the source, following symlinks; `.dockerignore`d entries of a
    /// context do not exist.
    fn resolve(&self, rel: &str) -> io::Result<Resolved> {
        resolve_visible(self.src_root, rel, true, &|r| {
            self.from_context && self.excluded(r)
        })
    }

    fn glob(&self, pattern: &str, found: &mut Vec<(String, Resolved)>) -> io::Result<()> {
        let parts: Vec<&str> = pattern.split('/').collect();
        let mut cur: Vec<String> = vec![String::new()];
        for (i, part) in parts.iter().enumerate() {
            let mut next = Vec::new();
            for base in &cur {
                let dir = resolve_in(self.src_root, base, true)?;
                if *part == "**" {
                    next.push(base.clone());
                    self.descendants(base, &mut next)?;
                } else if has_glob(part) {
                    let Ok(rd) = fs::read_dir(&dir) else { continue };
                    let mut names: Vec<String> = rd
                        .filter_map(std::result::Result::ok)
                        .map(|e| e.file_name().to_string_lossy().into_owned())
                        .filter(|n| glob_match(part.as_bytes(), n.as_bytes()))
                        .collect();
                    names.sort();
                    for n in names {
                        next.push(if base.is_empty() {
                            n
                        } else {
                            format!("{base}/{n}")
                        });
                    }
                } else {
                    let p = if base.is_empty() {
                        part.to_string()
                    } else {
                        format!("{base}/{part}")
                    };
                    if fs::symlink_metadata(resolve_in(self.src_root, &p, i + 1 == parts.len())?)
                        .is_ok()
                    {
                        next.push(p);
                    }
                }
            }
            cur = next;
        }
        for rel in cur {
            if !self.excluded(&rel) {
                let r = self.resolve(&rel)?;
                if !r.hidden {
                    found.push((rel, r));
                }
            }
        }
        Ok(())
    }

    fn run(&mut self) -> Result<(), String> {
        let sources = self.sources()?;
        // One source: no later source of this copy can replace what it wrote.
        self.direct_ok = self.defer_links && sources.len() == 1;
        if self.copy.parents {
            return self.run_parents(sources);
        }
        let dest = &self.copy.dest;
        let dest_is_dir = dest.ends_with('/') || sources.len() > 1 || dest.ends_with("/.");
        let dest_path = resolve_in(self.root, dest, true).map_err(|e| e.to_string())?;
        if dest_is_dir {
            self.ensure_dir(dest).map_err(|e| format!("{dest}: {e}"))?;
        }
        for Src {
            rel,
            path: src,
            real,
            ..
        } in sources
        {
            self.top = real.clone();
            let md = fs::metadata(&src).map_err(|e| format!("/{rel}: {e}"))?;
            let res = if md.is_dir() {
                self.ensure_dir_like(dest, &md)
                    .map_err(|e| format!("{dest}: {e}"))?;
                self.copy_dir_contents(&src, &real, &dest_path)
            } else {
                let target = if dest_is_dir || dest_path.is_dir() {
                    // The name the user gave (a followed symlink keeps its own name).
                    let name = Path::new(&rel)
                        .file_name()
                        .map(std::ffi::OsStr::to_os_string)
                        .unwrap_or_default();
                    dest_path.join(name)
                } else {
                    if let Some(parent) = Path::new(dest).parent() {
                        self.ensure_dir(&parent.to_string_lossy())
                            .map_err(|e| format!("{dest}: {e}"))?;
                    }
                    dest_path.clone()
                };
                if self.copy.extract_archives && self.from_context {
                    if let Some(kind) = archive_kind(&src).map_err(|e| e.to_string())? {
                        let into = if dest_is_dir || dest_path.is_dir() {
                            dest_path.clone()
                        } else {
                            self.ensure_dir(dest).map_err(|e| format!("{dest}: {e}"))?;
                            dest_path.clone()
                        };
                        extract(&src, kind, &into, self.owner)
                            .map_err(|e| format!("/{rel}: {e}"))?;
                        continue;
                    }
                }
                self.copy_entry(&src, &real, &target, true)
            };
            res.and_then(|()| self.flush())
                .map_err(|e| format!("copying /{rel} to {dest}: {e}"))?;
        }
        Ok(())
    }

    /// `COPY --parents`: each source lands at `dest/<its path after the pivot>`, its parent
    /// directories created as needed.
    fn run_parents(&mut self, sources: Vec<Src>) -> Result<(), String> {
        let dest = self.copy.dest.trim_end_matches('/').to_string();
        self.ensure_dir(&format!("{dest}/"))
            .map_err(|e| format!("{dest}: {e}"))?;
        for Src {
            rel,
            path,
            real,
            pivot,
        } in sources
        {
            self.top = real.clone();
            let keep = if pivot.is_empty() {
                rel.as_str()
            } else {
                rel.strip_prefix(pivot.as_str())
                    .map_or(rel.as_str(), |r| r.trim_start_matches('/'))
            };
            let target = if keep.is_empty() {
                format!("{dest}/")
            } else {
                format!("{dest}/{keep}")
            };
            let md = fs::metadata(&path).map_err(|e| format!("/{rel}: {e}"))?;
            let res = (|| -> io::Result<()> {
                if let Some(parent) = Path::new(&target).parent() {
                    self.ensure_dir(&parent.to_string_lossy())?;
                }
                let tp = resolve_in(self.root, &target, true)?;
                if md.is_dir() {
                    self.ensure_dir_like(&target, &md)?;
                    self.copy_dir_contents(&path, &real, &tp)
                } else {
                    self.copy_entry(&path, &real, &tp, true)
                }
            })();
            res.and_then(|()| self.flush())
                .map_err(|e| format!("copying /{rel} to {target}: {e}"))?;
        }
        Ok(())
    }

    /// Creates `dest` (inside the root) and its parents as directories owned by the
    /// `--chown` user (root otherwise), mode 0755.
    fn ensure_dir(&self, dest: &str) -> io::Result<PathBuf> {
        mkdir_p(self.root, dest, 0o755, self.owner)
    }

    /// Creates `dest` for the contents of a source dir: a missing dest gets the source
    /// dir's metadata (mode, owner, mtime), once the contents are in (as BuildKit's copier),
    /// so the layer does not depend on when it was built.
    fn ensure_dir_like(&mut self, dest: &str, md: &fs::Metadata) -> io::Result<()> {
        let p = resolve_in(self.root, dest, true)?;
        if fs::symlink_metadata(&p).is_ok() {
            return Ok(());
        }
        if let Some(parent) = Path::new(dest).parent() {
            self.ensure_dir(&parent.to_string_lossy())?;
        }
        fs::create_dir(&p)?;
        self.fresh.insert(p.clone());
        self.dir_meta.push((p, md.clone()));
        Ok(())
    }

    fn copy_dir_contents(&mut self, src: &Path, rel: &str, dest: &Path) -> io::Result<()> {
        let mut names: Vec<OsString> = fs::read_dir(src)?
            .filter_map(std::result::Result::ok)
            .map(|e| e.file_name())
            .collect();
        names.sort();
        for n in names {
            let child_rel = if rel.is_empty() {
                n.to_string_lossy().into_owned()
            } else {
                format!("{rel}/{}", n.to_string_lossy())
            };
            if self.from_context && self.excluded(&child_rel) && !self.exclude.has_exceptions() {
                continue;
            }
            if self.copy_excluded(&child_rel) && !self.copy_exclude.has_exceptions() {
                continue;
            }
            self.copy_entry(&src.join(&n), &child_rel, &dest.join(&n), false)?;
        }
        Ok(())
    }

    /// Copies one entry (recursively for directories) to `target`. `top`: the entry is a
    /// named source (its symlink, if any, was already followed).
    fn copy_entry(&mut self, src: &Path, rel: &str, target: &Path, top: bool) -> io::Result<()> {
        let md = if top {
            fs::metadata(src)?
        } else {
            fs::symlink_metadata(src)?
        };
        let ft = md.file_type();
        if ft.is_dir() {
            let existed = match fs::symlink_metadata(target) {
                Ok(t) if t.is_dir() => true,
                Ok(_) => {
                    fs::remove_file(target)?;
                    fs::create_dir(target)?;
                    false
                }
                Err(_) => {
                    fs::create_dir(target)?;
                    false
                }
            };
            if !existed {
                self.fresh.insert(target.to_path_buf());
            }
            let queued = self.jobs.len() + self.link_jobs.len() + self.direct.len();
            self.copy_dir_contents(src, rel, target)?;
            // An excluded directory only exists when an exception re-included something in it.
            if !existed
                && ((self.from_context && self.excluded(rel)) || self.copy_excluded(rel))
                && self.jobs.len() + self.link_jobs.len() + self.direct.len() == queued
                && fs::read_dir(target)?.next().is_none()
            {
                self.fresh.remove(target);
                return fs::remove_dir(target);
            }
            self.dir_meta.push((target.to_path_buf(), md));
            return Ok(());
        }
        if (self.from_context && self.excluded(rel)) || self.copy_excluded(rel) {
            return Ok(());
        }
        // A new directory of a single-source copy holds nothing yet at `target`: no lookup
        // through the overlay to find out.
        if ft.is_file()
            && md.nlink() == 1
            && self.direct_ok
            && target.parent().is_some_and(|p| self.fresh.contains(p))
        {
            let (owner, mode) = self.wanted(&md);
            self.direct.push(DirectJob {
                src: src.to_path_buf(),
                rel: rel.to_string(),
                target: target
                    .strip_prefix(self.root)
                    .map_err(io::Error::other)?
                    .to_path_buf(),
                hint: self.hint(rel, &md).cloned(),
                md,
                owner,
                mode,
            });
            return Ok(());
        }
        if let Ok(t) = fs::symlink_metadata(target) {
            if t.is_dir() {
                fs::remove_dir_all(target)?;
            } else {
                fs::remove_file(target)?;
            }
        }
        if ft.is_symlink() {
            symlink(fs::read_link(src)?, target)?;
            return self.set_meta(target, &md, true);
        }
        if ft.is_file() {
            if md.nlink() > 1 {
                if let Some(first) = self.links.get(&(md.dev(), md.ino())) {
                    self.link_jobs.push((first.clone(), target.to_path_buf()));
                    return Ok(());
                }
                self.links
                    .insert((md.dev(), md.ino()), target.to_path_buf());
            }
            self.jobs.push(FileJob {
                src: src.to_path_buf(),
                rel: rel.to_string(),
                target: target.to_path_buf(),
                md,
            });
            return Ok(());
        }
        // Devices, fifos, sockets: recreate with mknod.
        let kind = if ft.is_char_device() {
            nix::sys::stat::SFlag::S_IFCHR
        } else if ft.is_block_device() {
            nix::sys::stat::SFlag::S_IFBLK
        } else if ft.is_fifo() {
            nix::sys::stat::SFlag::S_IFIFO
        } else {
            return Ok(());
        };
        nix::sys::stat::mknod(
            target,
            kind,
            nix::sys::stat::Mode::from_bits_truncate(md.mode() & 0o7777),
            md.rdev(),
        )
        .map_err(io::Error::from)?;
        self.set_meta(target, &md, false)
    }

    fn set_meta(&self, target: &Path, md: &fs::Metadata, is_link: bool) -> io::Result<()> {
        let (owner, mode) = self.wanted(md);
        let mtime = filetime::FileTime::from_last_modification_time(md);
        set_path_meta(target, owner, mode, mtime, is_link)
    }
}

use std::os::unix::fs::FileTypeExt;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Archive {
    Tar,
    Gzip,
    Zstd,
    Bzip2,
    Xz,
}

/// Whether a file is a tar archive ADD extracts (plain, gzip, bzip2, xz or zstd).
fn archive_kind(path: &Path) -> io::Result<Option<Archive>> {
    let mut head = [0u8; 512];
    let mut f = fs::File::open(path)?;
    let mut n = 0;
    while n < head.len() {
        let r = f.read(&mut head[n..])?;
        if r == 0 {
            break;
        }
        n += r;
    }
    let head = &head[..n];
    if head.starts_with(&[0x1f, 0x8b]) {
        let mut d = flate2::read::GzDecoder::new(fs::File::open(path)?);
        return Ok(is_tar(&mut d).then_some(Archive::Gzip));
    }
    if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        let mut d = zstd::stream::read::Decoder::new(fs::File::open(path)?)?;
        return Ok(is_tar(&mut d).then_some(Archive::Zstd));
    }
    if head.starts_with(b"BZh") {
        let mut d = bzip2::read::BzDecoder::new(fs::File::open(path)?);
        return Ok(is_tar(&mut d).then_some(Archive::Bzip2));
    }
    if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0x00]) {
        let mut d = xz2::read::XzDecoder::new(fs::File::open(path)?);
        return Ok(is_tar(&mut d).then_some(Archive::Xz));
    }
    Ok((n >= 262 && &head[257..262] == b"ustar").then_some(Archive::Tar))
}

fn is_tar(r: &mut dyn Read) -> bool {
    let mut head = [0u8; 512];
    let mut n = 0;
    while n < head.len() {
        match r.read(&mut head[n..]) {
            Ok(0) | Err(_) => break,
            Ok(k) => n += k,
        }
    }
    n >= 262 && &head[257..262] == b"ustar"
}

/// Unpacks an archive into `into`. With `owner` (ADD --chown) every extracted entry gets
/// that owner, as current BuildKit does; otherwise the archive's owners are kept.
fn extract(src: &Path, kind: Archive, into: &Path, owner: Option<(u32, u32)>) -> io::Result<()> {
    let f = fs::File::open(src)?;
    let reader: Box<dyn Read> = match kind {
        Archive::Tar => Box::new(f),
        Archive::Gzip => Box::new(flate2::read::GzDecoder::new(f)),
        Archive::Zstd => Box::new(zstd::stream::read::Decoder::new(f)?),
        Archive::Bzip2 => Box::new(bzip2::read::BzDecoder::new(f)),
        Archive::Xz => Box::new(xz2::read::XzDecoder::new(f)),
    };
    let mut ar = tar::Archive::new(reader);
    ar.set_preserve_permissions(true);
    ar.set_preserve_ownerships(true);
    ar.set_preserve_mtime(true);
    ar.set_overwrite(true);
    let Some((uid, gid)) = owner else {
        return ar.unpack(into);
    };
    for entry in ar.entries()? {
        let mut e = entry?;
        let rel = e.path()?.into_owned();
        if e.unpack_in(into)? {
            std::os::unix::fs::lchown(into.join(&rel), Some(uid), Some(gid))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symlinks_resolve_inside_the_root() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        fs::create_dir_all(r.join("real/dir")).unwrap();
        symlink("/real", r.join("abs")).unwrap();
        symlink("../../..", r.join("real/dir/up")).unwrap();
        assert_eq!(resolve_in(r, "/abs/dir", true).unwrap(), r.join("real/dir"));
        assert_eq!(
            resolve_in(r, "/real/dir/up/etc", true).unwrap(),
            r.join("etc")
        );
        assert_eq!(resolve_in(r, "abs", false).unwrap(), r.join("abs"));
        assert_eq!(resolve_in(r, "/../../x", true).unwrap(), r.join("x"));
    }

    /// Issue 11, item 5: a symlink never brings in a `.dockerignore`d file's content.
    #[test]
    fn symlinks_to_ignored_files_find_nothing() {
        let ctx = context(&["secret", "public/a", "hidden/b"]);
        let c = ctx.path();
        symlink("secret", c.join("link")).unwrap();
        symlink("/secret", c.join("abslink")).unwrap();
        symlink("hidden", c.join("dirlink")).unwrap();
        symlink("public", c.join("pub")).unwrap();
        fs::write(c.join("public/ignored.txt"), "x").unwrap();
        let ex: Vec<String> = ["secret", "hidden", "public/ignored.txt"]
            .iter()
            .map(std::string::ToString::to_string)
            .collect();
        let copy = |src: &[&str]| {
            let root = tempfile::tempdir().unwrap();
            let r = Copier::new(root.path(), c, &ex, true, &copy_action(src, "/x/"))
                .unwrap()
                .run();
            (root, r)
        };
        for src in ["link", "abslink", "dirlink/b", "dirlink"] {
            let (_, r) = copy(&[src]);
            let e = r.expect_err(src);
            assert!(e.contains("not found"), "{src}: {e}");
        }
        // A wildcard does not match through them either.
        let (root, r) = copy(&["*link*"]);
        r.unwrap();
        assert_eq!(files(root.path()), ["x/"]);
        // Below a followed symlink, patterns apply to the real paths.
        let (root, r) = copy(&["pub"]);
        r.unwrap();
        assert_eq!(files(root.path()), ["x/", "x/a"]);
        // Copied as part of a directory, a symlink stays a symlink.
        let (root, r) = copy(&["."]);
        r.unwrap();
        assert_eq!(
            fs::read_link(root.path().join("x/link")).unwrap(),
            Path::new("secret")
        );
        assert!(!root.path().join("x/secret").exists());
    }

    fn copy_action(src: &[&str], dest: &str) -> CopyAction {
        CopyAction {
            source: kiln_opgraph::Input {
                vertex: kiln_opgraph::VertexDigest("blake3:x".into()),
            },
            src: src.iter().map(std::string::ToString::to_string).collect(),
            dest: dest.into(),
            chown: None,
            chmod: None,
            extract_archives: false,
            parents: false,
            exclude: vec![],
        }
    }

    fn files(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = walkdir::WalkDir::new(dir)
            .min_depth(1)
            .into_iter()
            .flatten()
            .map(|e| {
                let r = e.path().strip_prefix(dir).unwrap().display().to_string();
                if e.file_type().is_dir() {
                    format!("{r}/")
                } else {
                    r
                }
            })
            .collect();
        v.sort();
        v
    }

    fn context(paths: &[&str]) -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        for p in paths {
            let f = d.path().join(p);
            fs::create_dir_all(f.parent().unwrap()).unwrap();
            fs::write(&f, p.as_bytes()).unwrap();
        }
        d
    }

    fn run_copy(ctx: &Path, copy: &CopyAction) -> tempfile::TempDir {
        let root = tempfile::tempdir().unwrap();
        Copier::new(root.path(), ctx, &[], true, copy)
            .unwrap()
            .run()
            .unwrap();
        root
    }

    #[test]
    fn a_placeholder_becomes_a_link_and_its_directory_keeps_its_mtime() {
        let d = tempfile::tempdir().unwrap();
        let committed = d.path().join("committed");
        fs::write(&committed, b"content").unwrap();
        let dir = d.path().join("upper/app");
        fs::create_dir_all(&dir).unwrap();
        let placeholder = dir.join("big.bin");
        fs::write(&placeholder, b"").unwrap();
        let old = filetime::FileTime::from_unix_time(1_600_000_000, 0);
        filetime::set_file_times(&dir, old, old).unwrap();
        link_placeholder(&placeholder, &committed).unwrap();
        assert_eq!(fs::read(&placeholder).unwrap(), b"content");
        assert_eq!(
            fs::metadata(&placeholder).unwrap().ino(),
            fs::metadata(&committed).unwrap().ino()
        );
        let md = fs::metadata(&dir).unwrap();
        assert_eq!(filetime::FileTime::from_last_modification_time(&md), old);
        assert_eq!(fs::read_dir(&dir).unwrap().count(), 1, "no temp name left");
    }

    #[test]
    fn copy_parents_case() {
        let ctx = context(&[
            "x/a.txt",
            "y/a.txt",
            "x/y/b.txt",
            "x/y/c.txt",
            "src/s.txt",
            "src/m/t.txt",
            "src/m/n/u.txt",
            "src/m/skip.md",
        ]);
        let mut c = copy_action(&["x/a.txt", "y/a.txt"], "/parents/");
        c.parents = true;
        let r = run_copy(ctx.path(), &c);
        assert_eq!(
            files(r.path()),
            [
                "parents/",
                "parents/x/",
                "parents/x/a.txt",
                "parents/y/",
                "parents/y/a.txt"
            ]
        );
        let mut c = copy_action(&["x/./y/*.txt"], "/pivot/");
        c.parents = true;
        let r = run_copy(ctx.path(), &c);
        assert_eq!(
            files(r.path()),
            ["pivot/", "pivot/y/", "pivot/y/b.txt", "pivot/y/c.txt"]
        );
        let mut c = copy_action(&["src/**/*.txt"], "/deep/");
        c.parents = true;
        let r = run_copy(ctx.path(), &c);
        assert_eq!(
            files(r.path()),
            [
                "deep/",
                "deep/src/",
                "deep/src/m/",
                "deep/src/m/n/",
                "deep/src/m/n/u.txt",
                "deep/src/m/t.txt",
                "deep/src/s.txt"
            ]
        );
        // `**` without --parents flattens, like any glob.
        let c = copy_action(&["src/**/*.txt"], "/flat/");
        let r = run_copy(ctx.path(), &c);
        assert_eq!(
            files(r.path()),
            ["flat/", "flat/s.txt", "flat/t.txt", "flat/u.txt"]
        );
    }

    #[test]
    fn copy_exclude_case() {
        let ctx = context(&[
            "Dockerfile",
            "main.c",
            "README.md",
            "docs/guide.md",
            "docs/keep.txt",
            "tmp/x",
            "logs/a.log",
            "logs/b.txt",
        ]);
        let mut c = copy_action(&["."], "/app/");
        c.exclude = vec!["*.md".into(), "docs/*.md".into(), "tmp".into()];
        let r = run_copy(ctx.path(), &c);
        assert_eq!(
            files(r.path()),
            [
                "app/",
                "app/Dockerfile",
                "app/docs/",
                "app/docs/keep.txt",
                "app/logs/",
                "app/logs/a.log",
                "app/logs/b.txt",
                "app/main.c"
            ]
        );
        let mut c = copy_action(&["logs"], "/logs/");
        c.exclude = vec!["*.log".into()];
        c.extract_archives = true;
        let r = run_copy(ctx.path(), &c);
        assert_eq!(files(r.path()), ["logs/", "logs/b.txt"]);
    }

    fn tar_bytes() -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_ustar();
        h.set_size(3);
        h.set_mode(0o644);
        h.set_uid(7);
        h.set_gid(8);
        h.set_cksum();
        b.append_data(&mut h, "dir/f.txt", &b"abc"[..]).unwrap();
        b.into_inner().unwrap()
    }

    #[test]
    fn add_extracts_bzip2_and_xz() {
        use std::io::Write;
        let ctx = tempfile::tempdir().unwrap();
        let mut bz = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::fast());
        bz.write_all(&tar_bytes()).unwrap();
        fs::write(ctx.path().join("a.tar.bz2"), bz.finish().unwrap()).unwrap();
        let mut xz = xz2::write::XzEncoder::new(Vec::new(), 1);
        xz.write_all(&tar_bytes()).unwrap();
        fs::write(ctx.path().join("b.tar.xz"), xz.finish().unwrap()).unwrap();
        assert_eq!(
            archive_kind(&ctx.path().join("a.tar.bz2")).unwrap(),
            Some(Archive::Bzip2)
        );
        assert_eq!(
            archive_kind(&ctx.path().join("b.tar.xz")).unwrap(),
            Some(Archive::Xz)
        );
        for (src, dest) in [("a.tar.bz2", "/bz/"), ("b.tar.xz", "/xz/")] {
            let mut c = copy_action(&[src], dest);
            c.extract_archives = true;
            let r = run_copy(ctx.path(), &c);
            let f = r.path().join(dest.trim_matches('/')).join("dir/f.txt");
            assert_eq!(fs::read(&f).unwrap(), b"abc");
            if unsafe { libc::geteuid() } == 0 {
                assert_eq!(fs::metadata(&f).unwrap().uid(), 7);
            }
        }
        // ADD --chown chowns every extracted entry.
        if unsafe { libc::geteuid() } == 0 {
            let mut c = copy_action(&["a.tar.bz2"], "/own/");
            c.extract_archives = true;
            c.chown = Some(Chown {
                user: "100".into(),
                group: Some("200".into()),
            });
            let r = run_copy(ctx.path(), &c);
            let md = fs::metadata(r.path().join("own/dir/f.txt")).unwrap();
            assert_eq!((md.uid(), md.gid()), (100, 200));
        }
    }

    #[test]
    fn clean_src_stays_inside() {
        assert_eq!(clean_src("./a/../b/"), "b");
        assert_eq!(clean_src("../../etc/passwd"), "etc/passwd");
        assert_eq!(clean_src("."), "");
    }
}
