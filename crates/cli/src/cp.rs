//! `kiln cp`, `kiln export`, `kiln diff`: flags and rendering over the runtime's
//! [`kiln_runtime::Container`] copy methods (docker's rules are in [`kiln_runtime::plan`]).

use crate::util::{Env, Failure};
use clap::Args;
use kiln_runtime::{plan, Container, CopyError, CopyPlan};
use std::io::IsTerminal;
use std::path::Path;

#[derive(Args)]
pub(crate) struct CpArgs {
    /// Archive mode (copy all uid/gid information).
    #[arg(short, long)]
    archive: bool,
    /// Always follow symbol link in SRC_PATH.
    #[arg(short = 'L', long)]
    follow_link: bool,
    /// CONTAINER:SRC_PATH, a host path, or `-` (a tar stream on stdin).
    src: String,
    /// CONTAINER:DEST_PATH, a host path, or `-` (a tar stream on stdout).
    dest: String,
}

#[derive(Args)]
pub(crate) struct ExportArgs {
    /// Write to a file, instead of STDOUT.
    #[arg(short, long)]
    output: Option<String>,
    /// Container (id, id prefix or name).
    container: String,
}

#[derive(Args)]
pub(crate) struct DiffArgs {
    /// Container (id, id prefix or name).
    container: String,
}

fn failure(e: impl Into<kiln_runtime::Error>) -> Failure {
    let e = e.into();
    Failure::with_source(1, e.to_string(), e)
}

fn find(env: &Env, what: &str) -> Result<Container, Failure> {
    let mut c = crate::containers::find(env, what)?;
    c.refresh().map_err(failure)?;
    Ok(c)
}

/// `CTR:PATH` as docker splits it: a local path may hold `:` when it starts with `/` or `.`.
fn split(arg: &str) -> Option<(&str, &str)> {
    if arg.starts_with('/') || arg.starts_with('.') {
        return None;
    }
    arg.split_once(':')
}

pub(crate) fn cp(env: &Env, a: CpArgs) -> Result<u8, Failure> {
    match (split(&a.src), split(&a.dest)) {
        (Some(_), Some(_)) => Err(Failure::new(
            1,
            "copying between containers is not supported",
        )),
        (None, None) => Err(Failure::new(
            1,
            "must specify at least one container source",
        )),
        (Some((ctr, src)), None) => copy_out(&find(env, ctr)?, src, &a),
        (None, Some((ctr, dest))) => copy_in(&find(env, ctr)?, dest, &a),
    }
}

fn not_found(c: &Container, path: &str) -> Failure {
    failure(CopyError::NotFound {
        path: path.to_string(),
        container: c.config.name.clone(),
    })
}

fn copy_out(c: &Container, src: &str, a: &CpArgs) -> Result<u8, Failure> {
    let src = if src.is_empty() { "/" } else { src };
    let Some(src_is_dir) = c.stat_path(src, a.follow_link).map_err(failure)? else {
        return Err(not_found(c, src));
    };
    if (src.ends_with('/') || src.ends_with("/.")) && !src_is_dir {
        return Err(Failure::new(1, format!("{src}: not a directory")));
    }
    if a.dest == "-" {
        let mut out = std::io::BufWriter::with_capacity(1 << 16, std::io::stdout());
        return match c.copy_out(src, a.follow_link, None, &mut out) {
            Ok(()) => Ok(0),
            Err(kiln_runtime::Error::Copy(CopyError::Io { source, .. }))
                if source.kind() == std::io::ErrorKind::BrokenPipe =>
            {
                Ok(0)
            }
            Err(e) => Err(failure(e)),
        };
    }
    let dest = &a.dest;
    let meta = std::fs::metadata(dest).ok();
    let parent = kiln_runtime_parent(dest);
    let parent_is_dir = Path::new(&parent).is_dir();
    let CopyPlan::Into { dir, name } = plan(
        src,
        src_is_dir,
        dest,
        meta.map(|m| m.is_dir()),
        parent_is_dir,
    )
    .map_err(failure)?;
    let (reader, mut writer) = std::io::pipe()
        .map_err(|e| Failure::with_source(1, format!("cannot make a pipe: {e}"), e))?;
    std::thread::scope(|s| {
        let name = name.clone();
        let producer = s.spawn(move || {
            let r = c.copy_out(src, a.follow_link, name.as_deref(), &mut writer);
            drop(writer);
            r
        });
        let mut archive = tar::Archive::new(reader);
        archive.set_preserve_permissions(true);
        archive.set_preserve_mtime(true);
        archive.set_preserve_ownerships(a.archive);
        archive.set_overwrite(true);
        let unpacked = archive.unpack(&dir);
        drop(archive);
        let produced = producer
            .join()
            .unwrap_or_else(|_| Err(kiln_runtime::Error::Shim("the copy thread panicked".into())));
        produced.map_err(failure)?;
        unpacked.map_err(|e| Failure::with_source(1, format!("{dest}: {e}"), e))?;
        Ok(0)
    })
}

fn kiln_runtime_parent(dest: &str) -> String {
    let trimmed = dest.trim_end_matches('/');
    match Path::new(trimmed).parent() {
        Some(q) if q.as_os_str().is_empty() => ".".into(),
        Some(q) => q.to_string_lossy().into_owned(),
        None => "/".into(),
    }
}

fn copy_in(c: &Container, dest: &str, a: &CpArgs) -> Result<u8, Failure> {
    let dest = if dest.is_empty() { "/" } else { dest };
    if a.src == "-" {
        if c.stat_path(dest, true).map_err(failure)? != Some(true) {
            return Err(failure(CopyError::NotADir(dest.to_string())));
        }
        let mut input = std::io::stdin();
        c.copy_in(&mut input, dest, a.archive).map_err(failure)?;
        return Ok(0);
    }
    let src = &a.src;
    let meta = if a.follow_link {
        std::fs::metadata(src)
    } else {
        std::fs::symlink_metadata(src)
    }
    .map_err(|e| {
        let why = if e.kind() == std::io::ErrorKind::NotFound {
            "no such file or directory".to_string()
        } else {
            e.to_string()
        };
        Failure::with_source(1, format!("lstat {src}: {why}"), e)
    })?;
    let src_is_dir = meta.is_dir();
    if (src.ends_with('/') || src.ends_with("/.")) && !src_is_dir {
        return Err(Failure::new(1, format!("{src}: not a directory")));
    }
    let dest_kind = c.stat_path(dest, true).map_err(failure)?;
    let parent = kiln_runtime_parent(dest);
    let parent_is_dir = c.stat_path(&parent, true).map_err(failure)? == Some(true);
    let CopyPlan::Into { dir, name } =
        plan(src, src_is_dir, dest, dest_kind, parent_is_dir).map_err(failure)?;
    let (mut reader, writer) = std::io::pipe()
        .map_err(|e| Failure::with_source(1, format!("cannot make a pipe: {e}"), e))?;
    std::thread::scope(|s| {
        let producer = s.spawn(move || -> std::io::Result<()> {
            let mut b = tar::Builder::new(writer);
            b.follow_symlinks(a.follow_link);
            let top = name.as_deref().map_or(Path::new("."), Path::new);
            if src_is_dir {
                b.append_dir_all(top, src)?;
            } else {
                b.append_path_with_name(src, top)?;
            }
            b.into_inner()?;
            Ok(())
        });
        let copied = c.copy_in(&mut reader, &dir, a.archive);
        drop(reader);
        let produced = producer
            .join()
            .unwrap_or_else(|_| Err(std::io::Error::other("the tar thread panicked")));
        copied.map_err(failure)?;
        produced.map_err(|e| Failure::with_source(1, format!("{src}: {e}"), e))?;
        Ok(0)
    })
}

pub(crate) fn export(env: &Env, a: ExportArgs) -> Result<u8, Failure> {
    if a.output.is_none() && std::io::stdout().is_terminal() {
        return Err(Failure::new(
            1,
            "cowardly refusing to save to a terminal. Use the -o flag or redirect",
        ));
    }
    let c = find(env, &a.container)?;
    if let Some(path) = &a.output {
        let mut f = std::fs::File::create(path)
            .map_err(|e| Failure::with_source(1, format!("{path}: {e}"), e))?;
        c.export(&mut f).map_err(failure)?;
        return Ok(0);
    }
    let mut out = std::io::BufWriter::with_capacity(1 << 16, std::io::stdout());
    match c.export(&mut out) {
        Err(kiln_runtime::Error::Copy(CopyError::Io { source, .. }))
            if source.kind() == std::io::ErrorKind::BrokenPipe =>
        {
            Ok(0)
        }
        r => r.map(|()| 0).map_err(failure),
    }
}

pub(crate) fn diff(env: &Env, a: DiffArgs) -> Result<u8, Failure> {
    let c = find(env, &a.container)?;
    for change in c.diff().map_err(failure)? {
        println!("{} {}", change.kind, change.path);
    }
    Ok(0)
}
