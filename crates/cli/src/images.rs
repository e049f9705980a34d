//! Image commands: images, pull, push, import, tag, rmi, inspect, history, save, load.
//!
//! An image loaded without a name (`Loaded image ID: …`) is kept under the name
//! [`UNTAGGED`]`<config digest>`, which no reference can spell: `kiln images` shows it as
//! `<none>`, `kiln tag ID NAME` names it, and `kiln image prune` removes it (it is what
//! docker calls a dangling image).

use crate::util::{now_rfc3339, Env, Failure};
use clap::Args;
use kiln_cache::image::{is_untagged, UNTAGGED};
use kiln_exporter::import::Input;
use kiln_oci::Reference;
use std::path::{Path, PathBuf};

#[derive(Args)]
pub(crate) struct RefArg {
    /// Image reference.
    reference: String,
}

#[derive(Args)]
pub(crate) struct HistoryArgs {
    /// Image reference.
    reference: String,
    /// Format with a Go template: `table` for columns under docker's headers, `json` for
    /// one object a line; fields .ID .CreatedSince .CreatedAt .CreatedBy .Comment.
    #[arg(long)]
    format: Option<String>,
}

/// `history --format` fields and docker's column titles for them.
const HISTORY_HEADERS: [(&str, &str); 6] = [
    ("ID", "IMAGE"),
    ("CreatedSince", "CREATED"),
    ("CreatedAt", "CREATED AT"),
    ("CreatedBy", "CREATED BY"),
    ("Size", "SIZE"),
    ("Comment", "COMMENT"),
];

#[derive(Args)]
pub(crate) struct PullArgs {
    /// Image reference.
    reference: String,
    /// Print only the image's name.
    #[arg(short, long)]
    quiet: bool,
}

#[derive(Args)]
pub(crate) struct ImagesArgs {
    /// Show only image IDs.
    #[arg(short, long)]
    quiet: bool,
    /// Format with a Go template: `table` for columns under docker's headers, `json` for
    /// one object a line; fields .ID .Repository .Tag .Digest .CreatedSince .CreatedAt .Size.
    #[arg(long)]
    format: Option<String>,
}

/// `images --format` fields and docker's column titles for them.
const IMAGES_HEADERS: [(&str, &str); 7] = [
    ("ID", "IMAGE ID"),
    ("Repository", "REPOSITORY"),
    ("Tag", "TAG"),
    ("Digest", "DIGEST"),
    ("CreatedSince", "CREATED"),
    ("CreatedAt", "CREATED AT"),
    ("Size", "SIZE"),
];

#[derive(Args)]
pub(crate) struct TagArgs {
    source: String,
    target: String,
}

#[derive(Args)]
pub(crate) struct RmiArgs {
    #[arg(required = true)]
    references: Vec<String>,
}

#[derive(Args)]
pub(crate) struct SaveArgs {
    /// Output file (default stdout is not supported: give -o).
    #[arg(short, long)]
    output: PathBuf,
    #[arg(required = true)]
    references: Vec<String>,
}

#[derive(Args)]
pub(crate) struct LoadArgs {
    /// Read from a tar archive file instead of stdin.
    #[arg(short, long)]
    input: Option<PathBuf>,
    /// Suppress the per-layer output (the `Loaded image` lines stay).
    #[arg(short, long)]
    quiet: bool,
}

#[derive(Args)]
pub(crate) struct ImportArgs {
    /// Dockerfile instruction applied to the image config (CMD, ENTRYPOINT, ENV, …); repeatable.
    #[arg(short = 'c', long = "change")]
    changes: Vec<String>,
    /// Root filesystem tarball (`-` for stdin).
    file: String,
    /// Name for the image.
    reference: String,
}

pub(crate) fn images(env: &Env, a: ImagesArgs) -> Result<u8, Failure> {
    let list = env.store.list_images()?;
    let format = match &a.format {
        // As docker's: -q wins over `table`, a template of one's own over -q.
        Some(f) if !(a.quiet && f.starts_with("table")) => Some(crate::format::listing(
            f,
            "{{.Repository}}\\t{{.Tag}}\\t{{.ID}}\\t{{.CreatedSince}}\\t{{.Size}}",
        )?),
        _ => None,
    };
    let mut rows = Vec::new();
    if !a.quiet && format.is_none() {
        println!(
            "{:<40} {:<16} {:<14} {:<22} {:>10}",
            "REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"
        );
    }
    for rec in list {
        let summary = kiln_cache::image::summary(&env.store, &rec.manifest_digest)?;
        let id = summary.config_digest.trim_start_matches("sha256:");
        let short = &id[..id.len().min(12)];
        if a.quiet && format.is_none() {
            println!("{short}");
            continue;
        }
        let parsed = if is_untagged(&rec.name) {
            Err(())
        } else {
            Reference::parse(&rec.name).map_err(|_| ())
        };
        let (repo, tag) = match parsed {
            Ok(r) => {
                let tag = r.tag.clone().unwrap_or_else(|| "<none>".into());
                let repo = Reference {
                    tag: None,
                    digest: None,
                    ..r
                }
                .familiar();
                (repo, tag)
            }
            Err(()) if is_untagged(&rec.name) => ("<none>".into(), "<none>".into()),
            Err(()) => (rec.name.clone(), "<none>".into()),
        };
        if format.is_some() {
            rows.push(serde_json::json!({
                "ID": short,
                "Repository": repo,
                "Tag": tag,
                "Digest": rec.manifest_digest,
                "CreatedSince": crate::format::ago(rec.created),
                "CreatedAt": crate::format::created_at(rec.created),
                "Size": human_size(summary.size),
            }));
            continue;
        }
        println!(
            "{:<40} {:<16} {:<14} {:<22} {:>10}",
            repo,
            tag,
            short,
            crate::util::rfc3339(rec.created),
            human_size(summary.size)
        );
    }
    match format {
        Some(f) => crate::format::print_rows(&f, &IMAGES_HEADERS, &rows),
        None => Ok(0),
    }
}

/// Sizes in the `images`, `history` and `load` lines: three significant digits, as docker's.
fn human_size(n: u64) -> String {
    kiln_units::human_precision(n, 3)
}

/// `kiln pull`: fetches the image and, as `docker pull` does, unpacks its layers, so that
/// the first build or run from it starts at once.
pub(crate) async fn pull(env: &Env, a: PullArgs) -> Result<u8, Failure> {
    let r = Reference::parse(&a.reference).map_err(|e| Failure::usage(e.to_string()))?;
    let pulled = env.registry.pull_and_name(&r, &env.store).await?;
    if a.quiet {
        println!("{r}");
    } else {
        println!("{}: digest: {}", r.familiar(), pulled.manifest_digest);
    }
    Ok(0)
}

pub(crate) async fn push(env: &Env, a: RefArg) -> Result<u8, Failure> {
    let (r, manifest) = env.local_image(&a.reference)?;
    let image = kiln_cache::image::stored(&env.store, &manifest)?;
    let digest =
        kiln_worker::session::push_image(&env.store, &env.registry, &image, &r, Default::default())
            .await?;
    println!("{}: digest: {digest}", r.familiar());
    Ok(0)
}

pub(crate) fn import(env: &Env, a: ImportArgs) -> Result<u8, Failure> {
    let r = Reference::parse(&a.reference).map_err(|e| Failure::usage(e.to_string()))?;
    let mut config = kiln_exporter::import::base_config()?;
    kiln_frontend::apply_changes(&mut config, &a.changes)
        .map_err(|e| Failure::usage(format!("invalid --change: {}", e.message)))?;
    let mut stdin;
    let input = if a.file == "-" {
        stdin = std::io::stdin().lock();
        Input::Stream(&mut stdin)
    } else {
        Input::File(Path::new(&a.file))
    };
    let image = kiln_exporter::import::import(&env.store, input, &config, &now_rfc3339())?;
    env.store
        .set_image(&r.to_string(), &image.manifest_digest)?;
    println!("{}", image.config_digest);
    Ok(0)
}

pub(crate) fn tag(env: &Env, a: TagArgs) -> Result<u8, Failure> {
    let manifest = match env.local_image(&a.source) {
        Ok((_, m)) => m,
        Err(e) => kiln_cache::image::by_id(&env.store, &a.source)?.ok_or(e)?,
    };
    let t = Reference::parse(&a.target).map_err(|e| Failure::usage(e.to_string()))?;
    env.store.set_image(&t.to_string(), &manifest)?;
    Ok(0)
}

pub(crate) fn rmi(env: &Env, a: RmiArgs) -> Result<u8, Failure> {
    let mut code = 0;
    for name in &a.references {
        let r = Reference::parse(name).map_err(|e| Failure::usage(e.to_string()))?;
        if env.store.remove_image(&r.to_string())? {
            println!("Untagged: {}", r.familiar());
        } else {
            Failure::new(1, format!("no such image: {}", r.familiar())).print();
            code = 1;
        }
    }
    Ok(code)
}

/// `kiln inspect IMAGE`'s object for one image (see `container::inspect`, which also
/// answers for containers).
pub(crate) fn inspect_image(env: &Env, reference: &str) -> Result<serde_json::Value, Failure> {
    let (r, manifest) = env.local_image(reference)?;
    let summary = kiln_cache::image::summary(&env.store, &manifest)?;
    let cfg = kiln_cache::image::config(&env.store, &manifest)?;
    Ok(serde_json::json!({
        "Id": summary.config_digest,
        "RepoTags": [r.familiar()],
        "ManifestDigest": manifest,
        "Created": cfg.created,
        "Architecture": cfg.architecture,
        "Os": cfg.os,
        "Config": cfg.config,
        "RootFS": cfg.rootfs,
        "History": cfg.history,
        "Size": summary.size,
    }))
}

pub(crate) fn history(env: &Env, a: HistoryArgs) -> Result<u8, Failure> {
    let (_, manifest) = env.local_image(&a.reference)?;
    let cfg = kiln_cache::image::config(&env.store, &manifest)?;
    if let Some(f) = &a.format {
        let format = crate::format::listing(
            f,
            "{{.ID}}\\t{{.CreatedSince}}\\t{{.CreatedBy}}\\t{{.Comment}}",
        )?;
        let summary = kiln_cache::image::summary(&env.store, &manifest)?;
        let id = summary.config_digest.trim_start_matches("sha256:");
        let rows: Vec<serde_json::Value> = cfg
            .history
            .iter()
            .flatten()
            .rev()
            .enumerate()
            .map(|(i, e)| {
                let created = e.created().as_deref().unwrap_or_default();
                let secs = humantime::parse_rfc3339_weak(created)
                    .ok()
                    .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                    .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(0));
                // As docker's: the image's ID on the newest line, `<missing>` below.
                let shown = if i == 0 {
                    &id[..id.len().min(12)]
                } else {
                    "<missing>"
                };
                serde_json::json!({
                    "ID": shown,
                    "CreatedSince": crate::format::ago(secs),
                    // docker's history prints RFC 3339 here (images and ps: Go's time string).
                    "CreatedAt": crate::util::rfc3339(secs),
                    "CreatedBy": e.created_by().as_deref().unwrap_or_default(),
                    "Comment": e.comment().as_deref().unwrap_or_default(),
                })
            })
            .collect();
        return crate::format::print_rows(&format, &HISTORY_HEADERS, &rows);
    }
    println!("{:<22} {:<60} EMPTY", "CREATED", "CREATED BY");
    for e in cfg.history.iter().flatten().rev() {
        let by: String = e
            .created_by()
            .as_deref()
            .unwrap_or_default()
            .chars()
            .take(60)
            .collect();
        println!(
            "{:<22} {:<60} {}",
            e.created().as_deref().unwrap_or_default(),
            by,
            e.empty_layer().unwrap_or(false)
        );
    }
    Ok(0)
}

pub(crate) fn save(env: &Env, a: SaveArgs) -> Result<u8, Failure> {
    if a.references.len() != 1 {
        return Err(Failure::usage("kiln save takes one image for now"));
    }
    let (r, manifest) = env.local_image(&a.references[0])?;
    let image = kiln_cache::image::stored(&env.store, &manifest)?;
    kiln_exporter::layout::write(
        &env.store,
        &image,
        Some(&r.to_string()),
        kiln_exporter::layout::Format::Docker,
        &a.output,
        false,
        Default::default(),
    )?;
    Ok(0)
}

/// `kiln load`: a docker archive or an OCI layout tar (file or stdin) into the store, then
/// its names, once every image in it has been read and checked.
pub(crate) fn load(env: &Env, a: LoadArgs) -> Result<u8, Failure> {
    // SAFETY: isatty has no preconditions.
    if a.input.is_none() && unsafe { libc::isatty(0) } == 1 {
        return Err(Failure::usage(
            "kiln load reads an archive from stdin, which is a terminal: redirect a file or give -i FILE",
        ));
    }
    // Held until the images are named: a prune meanwhile would see unreferenced blobs.
    let _gc = env.store.lock_gc_shared()?;
    let quiet = a.quiet;
    let mut progress = |l: &kiln_oci::Layer| {
        if !quiet {
            let id = l.diff_id.trim_start_matches("sha256:");
            eprintln!(
                "Loaded layer {} ({})",
                &id[..id.len().min(12)],
                human_size(l.size)
            );
        }
    };
    let (source, result) = match &a.input {
        Some(p) => {
            let f = std::fs::File::open(p)
                .map_err(|e| Failure::with_source(1, format!("{}: {e}", p.display()), e))?;
            let mut r = std::io::BufReader::with_capacity(256 * 1024, f);
            (
                p.display().to_string(),
                kiln_exporter::load::load(&env.store, &mut r, &mut progress),
            )
        }
        None => (
            "stdin".to_string(),
            kiln_exporter::load::load(&env.store, &mut std::io::stdin().lock(), &mut progress),
        ),
    };
    let images =
        result.map_err(|e| Failure::with_source(1, format!("cannot load {source}: {e}"), e))?;
    // Every name is checked before any is set.
    let mut names = Vec::new();
    for img in &images {
        for n in &img.names {
            let r = Reference::parse(n).map_err(|e| {
                Failure::with_source(1, format!("cannot load {source}: bad image name: {e}"), e)
            })?;
            names.push((r, &img.manifest_digest));
        }
    }
    for (r, manifest) in &names {
        env.store.set_image(&r.to_string(), manifest)?;
        println!("Loaded image: {}", r.familiar());
    }
    for img in images.iter().filter(|i| i.names.is_empty()) {
        env.store.set_image(
            &format!("{UNTAGGED}{}", img.config_digest),
            &img.manifest_digest,
        )?;
        println!("Loaded image ID: {}", img.config_digest);
    }
    Ok(0)
}
