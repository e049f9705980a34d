//! Applying a spec: the private mount namespace, the overlay, the actions in order, then
//! what waits for the overlay to be unmounted (files written straight into the upper dir,
//! new directories' metadata, placeholders turned into hard links).

use super::actions::{mkdir_p, mkfile, resolve_owner, set_path_meta};
use super::copy::{Copier, DirectJob, LateDir};
use super::parallel::parallel;
use super::pool::{link_placeholder, write_file, Claims, Deferred, LinkMode, Outcome};
use super::{Action, Error, Report, Source, Spec};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// Applies `spec` in a mount namespace of this thread's own, unmounting what it mounted
/// before returning.
pub(super) fn apply(spec: &Spec) -> Result<Report, Error> {
    kiln_executor::mount::private_mount_namespace().map_err(Error::Namespace)?;
    let mut mounted = Vec::new();
    let r = apply_mounted(spec, &mut mounted);
    for m in mounted.iter().rev() {
        // EINVAL: already unmounted.
        let _ = nix::mount::umount2(m, nix::mount::MntFlags::MNT_DETACH);
    }
    r
}

fn apply_mounted(spec: &Spec, mounted: &mut Vec<PathBuf>) -> Result<Report, Error> {
    let root = spec.scratch.join("root");
    fs::create_dir_all(&root).map_err(Error::Fs)?;
    kiln_executor::mount::overlay(&spec.lowers, Some((&spec.upper, &spec.work)), &root)
        .map_err(Error::MountRoot)?;
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
                    .map_err(Error::io(format!("creating {path}")))?;
            }
            Action::Op(kiln_opgraph::FileAction::Mkdir { path, mode, chown }) => {
                let owner = chown
                    .as_ref()
                    .map(|c| resolve_owner(&root, c))
                    .transpose()?;
                mkdir_p(&root, path, *mode, owner).map_err(Error::io(format!("mkdir {path}")))?;
            }
            Action::Op(kiln_opgraph::FileAction::Copy(_)) => {
                return Err(Error::CopyWithoutSource);
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
                        fs::create_dir_all(&mnt).map_err(Error::Fs)?;
                        if !lowers.is_empty() {
                            kiln_executor::mount::overlay(lowers, None, &mnt)
                                .map_err(Error::MountSource)?;
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
        nix::mount::umount2(&root, nix::mount::MntFlags::MNT_DETACH).map_err(Error::Unmount)?;
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
        .map_err(Error::Copy)?;
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
                .map_err(Error::io(format!("/{}", d.target.display())))?;
        }
        for d in deferred {
            let Ok(rel) = d.target.strip_prefix(&root) else {
                continue;
            };
            let path = spec.upper.join(rel);
            link_placeholder(&path, &d.candidate)
                .map_err(Error::io(format!("linking {}", rel.display())))?;
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
