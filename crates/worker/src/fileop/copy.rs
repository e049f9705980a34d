//! COPY and ADD: the [`Copier`] expands the sources (globs, `--parents`), walks them and
//! queues regular files, which it writes in parallel per source ([`Copier::flush`]), or
//! leaves for the upper dir ([`DirectJob`], see "Writing below new directories" in the module
//! docs of [`super`]).

use super::actions::{mkdir_p, resolve_owner, set_path_meta};
use super::archive::{archive_kind, extract};
use super::parallel::parallel;
use super::pool::{write_file, Claims, Deferred, LinkMode, Outcome, PoolHint, POOL_MIN_SIZE};
use super::resolve::{resolve_in, resolve_visible, Resolved};
use super::Error;
use kiln_opgraph::pattern::{glob_match, PatternMatcher};
use kiln_opgraph::CopyAction;
use std::collections::HashMap;
use std::ffi::OsString;
use std::fs;
use std::io;
use std::os::unix::fs::{symlink, FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

/// A regular file to write straight into the upper dir once the overlay is unmounted (see
/// "Writing below new directories").
pub(super) struct DirectJob {
    pub(super) src: PathBuf,
    /// Its path relative to the source root (for errors).
    pub(super) rel: String,
    /// Where it goes, relative to the root.
    pub(super) target: PathBuf,
    pub(super) md: fs::Metadata,
    pub(super) owner: (u32, u32),
    pub(super) mode: u32,
    pub(super) hint: Option<PoolHint>,
}

/// A new directory whose metadata is set after the files written into it directly.
pub(super) struct LateDir {
    /// Relative to the root.
    pub(super) target: PathBuf,
    pub(super) owner: (u32, u32),
    pub(super) mode: u32,
    pub(super) mtime: filetime::FileTime,
}

fn has_glob(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

/// Cleans a source path the way Docker does: relative to the source root, no `.`/`..`
/// escaping it.
pub(super) fn clean_src(s: &str) -> String {
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

/// One COPY/ADD action: its sources, where they go, and what the copy leaves for the rest of
/// the file op (pooled files, placeholders, direct writes, late directory metadata).
pub(super) struct Copier<'a> {
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
    pub(super) pool: HashMap<&'a str, &'a PoolHint>,
    /// Whether pooled files may become deferred hard links (the spec's last action only).
    pub(super) defer_links: bool,
    /// Large context files copied: (content hash, target).
    pub(super) pooled: Vec<([u8; 32], PathBuf)>,
    /// Placeholders to turn into hard links.
    pub(super) deferred: Vec<Deferred>,
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
    pub(super) direct: Vec<DirectJob>,
    /// New directories' metadata, set after `direct`.
    pub(super) late_dirs: Vec<LateDir>,
    /// Committed inodes linked into the layer so far (shared by the spec's actions).
    pub(super) claims: std::sync::Arc<Claims>,
}

/// A regular file to copy.
struct FileJob {
    src: PathBuf,
    rel: String,
    target: PathBuf,
    md: fs::Metadata,
}

impl<'a> Copier<'a> {
    pub(super) fn new(
        root: &'a Path,
        src_root: &'a Path,
        exclude: &[String],
        from_context: bool,
        copy: &'a CopyAction,
    ) -> Result<Self, Error> {
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
    fn sources(&self) -> Result<Vec<Src>, Error> {
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
                self.glob(&rel, &mut found).map_err(Error::Fs)?;
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
                let r = self.resolve(&rel).map_err(Error::Fs)?;
                if fs::symlink_metadata(&r.path).is_err() || r.hidden {
                    return Err(Error::NotFound {
                        path: rel,
                        excluded: r.hidden,
                    });
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

    pub(super) fn run(&mut self) -> Result<(), Error> {
        let sources = self.sources()?;
        // One source: no later source of this copy can replace what it wrote.
        self.direct_ok = self.defer_links && sources.len() == 1;
        if self.copy.parents {
            return self.run_parents(sources);
        }
        let dest = &self.copy.dest;
        let dest_is_dir = dest.ends_with('/') || sources.len() > 1 || dest.ends_with("/.");
        let dest_path = resolve_in(self.root, dest, true).map_err(Error::Fs)?;
        if dest_is_dir {
            self.ensure_dir(dest).map_err(Error::io(dest.as_str()))?;
        }
        for Src {
            rel,
            path: src,
            real,
            ..
        } in sources
        {
            self.top = real.clone();
            let md = fs::metadata(&src).map_err(Error::io(format!("/{rel}")))?;
            let res = if md.is_dir() {
                self.ensure_dir_like(dest, &md)
                    .map_err(Error::io(dest.as_str()))?;
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
                            .map_err(Error::io(dest.as_str()))?;
                    }
                    dest_path.clone()
                };
                if self.copy.extract_archives && self.from_context {
                    if let Some(kind) = archive_kind(&src).map_err(Error::Fs)? {
                        let into = if dest_is_dir || dest_path.is_dir() {
                            dest_path.clone()
                        } else {
                            self.ensure_dir(dest).map_err(Error::io(dest.as_str()))?;
                            dest_path.clone()
                        };
                        extract(&src, kind, &into, self.owner)
                            .map_err(Error::io(format!("/{rel}")))?;
                        continue;
                    }
                }
                self.copy_entry(&src, &real, &target, true)
            };
            res.and_then(|()| self.flush())
                .map_err(Error::io(format!("copying /{rel} to {dest}")))?;
        }
        Ok(())
    }

    /// `COPY --parents`: each source lands at `dest/<its path after the pivot>`, its parent
    /// directories created as needed.
    fn run_parents(&mut self, sources: Vec<Src>) -> Result<(), Error> {
        let dest = self.copy.dest.trim_end_matches('/').to_string();
        self.ensure_dir(&format!("{dest}/"))
            .map_err(Error::io(dest.as_str()))?;
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
            let md = fs::metadata(&path).map_err(Error::io(format!("/{rel}")))?;
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
                .map_err(Error::io(format!("copying /{rel} to {target}")))?;
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
