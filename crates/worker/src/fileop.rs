//! File ops (COPY, ADD, WORKDIR's mkdir) with Docker's semantics.
//!
//! They run in a helper process (`kiln __kiln-fileop SPEC_JSON`, [`helper_main`]): it enters
//! a private mount namespace, mounts the base filesystem as a writable overlay (the upper dir
//! collects the changes, exactly as a RUN's would, so copy-up keeps parent directories'
//! metadata), mounts stage/image sources read-only, applies the actions and exits. The
//! mounts die with the process, so nothing leaks when a build is killed.
//!
//! Every path inside a root filesystem is resolved with [`resolve_in`], which follows
//! symlinks *within* that root: an absolute symlink in an image never reaches the host.

use kiln_opgraph::pattern::{glob_match, PatternMatcher};
use kiln_opgraph::{Chown, CopyAction};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::ffi::OsString;
use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// First argument that makes a binary act as the file-op helper.
pub const HELPER_ARG: &str = "__kiln-fileop";

/// Where a copy reads from.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum Source {
    /// A host directory (build context), minus what `exclude` hides. Files become 0:0.
    Dir {
        /// The directory.
        path: PathBuf,
        /// `.dockerignore` patterns.
        exclude: Vec<String>,
    },
    /// A filesystem made of these snapshot dirs (top first), mounted read-only.
    Layers(Vec<PathBuf>),
}

/// One action.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum Action {
    /// COPY / ADD.
    Copy {
        /// What to copy.
        copy: CopyAction,
        /// From where.
        source: Source,
    },
    /// `COPY <<EOF`: a file with this content.
    Mkfile {
        /// Absolute path.
        path: String,
        /// Content.
        data: String,
        /// Mode.
        mode: u32,
        /// Owner.
        chown: Option<Chown>,
    },
    /// WORKDIR.
    Mkdir {
        /// Absolute path.
        path: String,
        /// Mode.
        mode: u32,
        /// Owner.
        chown: Option<Chown>,
    },
}

/// What the helper does.
#[derive(Clone, Debug, Serialize, Deserialize)]
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
}

/// Runs the helper on `spec`; a failure's message is the helper's stderr.
pub async fn run(helper: &[OsString], spec: &Spec) -> Result<(), kiln_solver::BoxError> {
    let json = serde_json::to_string(spec)?;
    let (prog, args) = helper.split_first().ok_or("no file-op helper configured")?;
    let out = tokio::process::Command::new(prog)
        .args(args)
        .arg(json)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| format!("cannot start the file-op helper: {e}"))?;
    if out.status.success() {
        return Ok(());
    }
    let msg = String::from_utf8_lossy(&out.stderr).trim().to_string();
    Err(Box::new(crate::StepError(if msg.is_empty() {
        format!("file operation failed ({})", out.status)
    } else {
        msg
    })))
}

/// The helper's entry point (`args[0]` is [`HELPER_ARG`], `args[1]` the JSON spec).
pub fn helper_main(args: &[OsString]) -> ! {
    let result = args
        .get(1)
        .ok_or_else(|| "usage: __kiln-fileop SPEC_JSON".to_string())
        .and_then(|a| serde_json::from_str::<Spec>(&a.to_string_lossy()).map_err(|e| e.to_string()))
        .and_then(|spec| apply(&spec));
    match result {
        Ok(()) => std::process::exit(0),
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(1)
        }
    }
}

fn apply(spec: &Spec) -> Result<(), String> {
    kiln_executor::mount::private_mount_namespace()
        .map_err(|e| format!("cannot make a private mount namespace: {e}"))?;
    let root = spec.scratch.join("root");
    fs::create_dir_all(&root).map_err(|e| e.to_string())?;
    kiln_executor::mount::overlay(&spec.lowers, Some((&spec.upper, &spec.work)), &root)
        .map_err(|e| format!("cannot mount the build filesystem: {e}"))?;
    for (i, action) in spec.actions.iter().enumerate() {
        match action {
            Action::Mkfile {
                path,
                data,
                mode,
                chown,
            } => {
                let owner = chown
                    .as_ref()
                    .map(|c| resolve_owner(&root, c))
                    .transpose()?;
                mkfile(&root, path, data.as_bytes(), *mode, owner)
                    .map_err(|e| format!("creating {path}: {e}"))?;
            }
            Action::Mkdir { path, mode, chown } => {
                let owner = chown
                    .as_ref()
                    .map(|c| resolve_owner(&root, c))
                    .transpose()?;
                mkdir_p(&root, path, *mode, owner).map_err(|e| format!("mkdir {path}: {e}"))?;
            }
            Action::Copy { copy, source } => {
                let (src_root, exclude, from_context) = match source {
                    Source::Dir { path, exclude } => (path.clone(), exclude.clone(), true),
                    Source::Layers(lowers) => {
                        let mnt = spec.scratch.join(format!("src-{i}"));
                        fs::create_dir_all(&mnt).map_err(|e| e.to_string())?;
                        if !lowers.is_empty() {
                            kiln_executor::mount::overlay(lowers, None, &mnt)
                                .map_err(|e| format!("cannot mount the copy source: {e}"))?;
                        }
                        (mnt, vec![], false)
                    }
                };
                Copier::new(&root, &src_root, &exclude, from_context, copy)?.run()?;
            }
        }
    }
    Ok(())
}

/// Resolves `path` (absolute or relative to `root`) inside `root`, following symlinks as if
/// `root` were `/` (the last component too when `follow_last`). Missing components are
/// kept as they are.
pub fn resolve_in(root: &Path, path: &str, follow_last: bool) -> io::Result<PathBuf> {
    let mut done: Vec<OsString> = Vec::new();
    let mut todo: Vec<OsString> = Path::new(path)
        .components()
        .rev()
        .filter_map(component)
        .collect();
    let mut links = 0;
    while let Some(c) = todo.pop() {
        if c == ".." {
            done.pop();
            continue;
        }
        let mut candidate = root.to_path_buf();
        candidate.extend(&done);
        candidate.push(&c);
        let is_last = todo.is_empty();
        match fs::symlink_metadata(&candidate) {
            Ok(md) if md.file_type().is_symlink() && (!is_last || follow_last) => {
                links += 1;
                if links > 40 {
                    return Err(io::Error::other(format!(
                        "{path}: too many levels of symbolic links"
                    )));
                }
                let target = fs::read_link(&candidate)?;
                if target.is_absolute() {
                    done.clear();
                }
                todo.extend(target.components().rev().filter_map(component));
            }
            _ => done.push(c),
        }
    }
    let mut out = root.to_path_buf();
    out.extend(&done);
    Ok(out)
}

fn component(c: std::path::Component<'_>) -> Option<OsString> {
    match c {
        std::path::Component::Normal(s) => Some(s.to_os_string()),
        std::path::Component::ParentDir => Some("..".into()),
        _ => None,
    }
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
    /// Path relative to the source root.
    rel: String,
    /// Where it is now.
    path: PathBuf,
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
        })
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
                for (rel, path) in found {
                    if !out.iter().any(|o| o.rel == rel) {
                        out.push(Src {
                            rel,
                            path,
                            pivot: pivot.clone(),
                        });
                    }
                }
            } else {
                let p = resolve_in(self.src_root, &rel, true).map_err(|e| e.to_string())?;
                if fs::symlink_metadata(&p).is_err() || self.excluded(&rel) {
                    let why = if self.excluded(&rel) {
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
                    path: p,
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
            .filter_map(|e| e.ok())
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
                .map(|m| m.is_dir())
                .unwrap_or(false);
            out.push(p.clone());
            if is_dir && out.len() < 1_000_000 {
                self.descendants(&p, out)?;
            }
        }
        Ok(())
    }

    fn glob(&self, pattern: &str, found: &mut Vec<(String, PathBuf)>) -> io::Result<()> {
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
                        .filter_map(|e| e.ok())
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
                let p = resolve_in(self.src_root, &rel, true)?;
                found.push((rel, p));
            }
        }
        Ok(())
    }

    fn run(mut self) -> Result<(), String> {
        let sources = self.sources()?;
        if self.copy.parents {
            return self.run_parents(sources);
        }
        let dest = &self.copy.dest;
        let dest_is_dir = dest.ends_with('/') || sources.len() > 1 || dest.ends_with("/.");
        let dest_path = resolve_in(self.root, dest, true).map_err(|e| e.to_string())?;
        if dest_is_dir {
            self.ensure_dir(dest).map_err(|e| format!("{dest}: {e}"))?;
        }
        for Src { rel, path: src, .. } in sources {
            self.top = rel.clone();
            let md = fs::metadata(&src).map_err(|e| format!("/{rel}: {e}"))?;
            let res = if md.is_dir() {
                self.ensure_dir_like(dest, &md)
                    .map_err(|e| format!("{dest}: {e}"))?;
                self.copy_dir_contents(&src, &rel, &dest_path)
            } else {
                let target = if dest_is_dir || dest_path.is_dir() {
                    // The name the user gave (a followed symlink keeps its own name).
                    let name = Path::new(&rel)
                        .file_name()
                        .map(|n| n.to_os_string())
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
                self.copy_entry(&src, &rel, &target, true)
            };
            res.map_err(|e| format!("copying /{rel} to {dest}: {e}"))?;
        }
        Ok(())
    }

    /// `COPY --parents`: each source lands at `dest/<its path after the pivot>`, its parent
    /// directories created as needed.
    fn run_parents(mut self, sources: Vec<Src>) -> Result<(), String> {
        let dest = self.copy.dest.trim_end_matches('/').to_string();
        self.ensure_dir(&format!("{dest}/"))
            .map_err(|e| format!("{dest}: {e}"))?;
        for Src { rel, path, pivot } in sources {
            self.top = rel.clone();
            let keep = if pivot.is_empty() {
                rel.as_str()
            } else {
                rel.strip_prefix(pivot.as_str())
                    .map(|r| r.trim_start_matches('/'))
                    .unwrap_or(&rel)
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
                    self.copy_dir_contents(&path, &rel, &tp)
                } else {
                    self.copy_entry(&path, &rel, &tp, true)
                }
            })();
            res.map_err(|e| format!("copying /{rel} to {target}: {e}"))?;
        }
        Ok(())
    }

    /// Creates `dest` (inside the root) and its parents as directories owned by the
    /// `--chown` user (root otherwise), mode 0755.
    fn ensure_dir(&self, dest: &str) -> io::Result<PathBuf> {
        mkdir_p(self.root, dest, 0o755, self.owner)
    }

    /// Creates `dest` for the contents of a source dir: a missing dest gets the source
    /// dir's mode.
    fn ensure_dir_like(&self, dest: &str, md: &fs::Metadata) -> io::Result<()> {
        let p = resolve_in(self.root, dest, true)?;
        if fs::symlink_metadata(&p).is_ok() {
            return Ok(());
        }
        if let Some(parent) = Path::new(dest).parent() {
            self.ensure_dir(&parent.to_string_lossy())?;
        }
        fs::create_dir(&p)?;
        self.set_meta(&p, md, false)
    }

    fn copy_dir_contents(&mut self, src: &Path, rel: &str, dest: &Path) -> io::Result<()> {
        let mut names: Vec<OsString> = fs::read_dir(src)?
            .filter_map(|e| e.ok())
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
            self.copy_dir_contents(src, rel, target)?;
            // An excluded directory only exists when an exception re-included something in it.
            if !existed
                && ((self.from_context && self.excluded(rel)) || self.copy_excluded(rel))
                && fs::read_dir(target)?.next().is_none()
            {
                return fs::remove_dir(target);
            }
            return self.set_meta(target, &md, false);
        }
        if (self.from_context && self.excluded(rel)) || self.copy_excluded(rel) {
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
                    return fs::hard_link(first, target);
                }
                self.links
                    .insert((md.dev(), md.ino()), target.to_path_buf());
            }
            let mut from = fs::File::open(src)?;
            let mut to = fs::File::create(target)?;
            io::copy(&mut from, &mut to)?;
            return self.set_meta(target, &md, false);
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
        let (uid, gid) = match self.owner {
            Some(o) => o,
            None if self.from_context => (0, 0),
            None => (md.uid(), md.gid()),
        };
        std::os::unix::fs::lchown(target, Some(uid), Some(gid))?;
        let mtime = filetime::FileTime::from_last_modification_time(md);
        if is_link {
            return filetime::set_symlink_file_times(target, mtime, mtime);
        }
        let mode = self.copy.chmod.unwrap_or(md.mode() & 0o7777);
        fs::set_permissions(target, fs::Permissions::from_mode(mode))?;
        filetime::set_file_times(target, mtime, mtime)
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

    fn copy_action(src: &[&str], dest: &str) -> CopyAction {
        CopyAction {
            source: kiln_opgraph::Input {
                vertex: kiln_opgraph::VertexDigest("blake3:x".into()),
            },
            src: src.iter().map(|s| s.to_string()).collect(),
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
