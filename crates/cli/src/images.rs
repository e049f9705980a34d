//! Image commands: images, pull, push, import, tag, rmi, inspect, history, save, load, and
//! their `image ls|rm|inspect|history|tag|pull|push|save|load|import|prune` spellings.
//!
//! Every command that takes an image takes it as docker users name it: a full or unique
//! prefix ID, `sha256:…`, a name, `name@digest` ([`kiln_cache::image::lookup`]).
//!
//! An image loaded without a name (`Loaded image ID: …`) is kept under the name
//! [`UNTAGGED`]`<config digest>`, which no reference can spell: `kiln images` shows it as
//! `<none>`, `kiln tag ID NAME` names it, and `kiln image prune` removes it (it is what
//! docker calls a dangling image).

use crate::util::{lookup_failure, now_rfc3339, Env, Failure};
use clap::{Args, Subcommand};
use kiln_cache::image::list::{Filters, ListError, Row};
use kiln_cache::image::{is_untagged, LookupError, UNTAGGED};
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
    /// Only this repository (`REPOSITORY[:TAG]`, a glob as `--filter reference=`).
    reference: Option<String>,
    /// Show all images (kiln keeps no intermediate images: the same list).
    #[arg(short, long)]
    all: bool,
    /// Show digests.
    #[arg(long)]
    digests: bool,
    /// Filter output: `dangling=true|false`, `reference=PATTERN`, `label=KEY[=VALUE]`,
    /// `before=IMAGE`, `since=IMAGE`.
    #[arg(short, long)]
    filter: Vec<String>,
    /// Don't truncate output.
    #[arg(long)]
    no_trunc: bool,
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
pub(crate) struct ImageArgs {
    #[command(subcommand)]
    cmd: ImageCmd,
}

#[derive(Subcommand)]
enum ImageCmd {
    /// List images.
    #[command(visible_alias = "list")]
    Ls(ImagesArgs),
    /// Remove images.
    #[command(visible_alias = "remove")]
    Rm(RmiArgs),
    /// Show images' details as JSON.
    Inspect(ImageInspectArgs),
    /// Show an image's history.
    History(HistoryArgs),
    /// Give an image another name.
    Tag(TagArgs),
    /// Pull an image from a registry.
    Pull(PullArgs),
    /// Push an image to a registry.
    Push(RefArg),
    /// Write images to a docker archive.
    Save(SaveArgs),
    /// Load images from a docker archive or an OCI layout tar.
    Load(LoadArgs),
    /// Make an image from a root filesystem tarball.
    Import(ImportArgs),
    /// Remove dangling (untagged) images, or with -a every image no container uses.
    Prune(crate::system::ImagePruneArgs),
}

#[derive(Args)]
pub(crate) struct ImageInspectArgs {
    /// Images.
    #[arg(required = true)]
    images: Vec<String>,
    /// Format with a Go template (docker's `-f`).
    #[arg(short, long)]
    format: Option<String>,
}

/// `kiln image …`: docker's second spelling of the image commands.
pub(crate) async fn image(env: &Env, a: ImageArgs) -> Result<u8, Failure> {
    match a.cmd {
        ImageCmd::Ls(a) => images(env, a),
        ImageCmd::Rm(a) => rmi(env, a),
        ImageCmd::Inspect(a) => {
            crate::container::inspect_images(env, &a.images, a.format.as_deref())
        }
        ImageCmd::History(a) => history(env, a),
        ImageCmd::Tag(a) => tag(env, a),
        ImageCmd::Pull(a) => pull(env, a).await,
        ImageCmd::Push(a) => push(env, a).await,
        ImageCmd::Save(a) => save(env, a),
        ImageCmd::Load(a) => load(env, a),
        ImageCmd::Import(a) => import(env, a),
        ImageCmd::Prune(a) => crate::system::image_prune(env, a),
    }
}

#[derive(Args)]
pub(crate) struct TagArgs {
    source: String,
    target: String,
}

#[derive(Args)]
pub(crate) struct RmiArgs {
    /// Force removal of the image (of an image a stopped container uses, or that several
    /// names reach).
    #[arg(short, long)]
    force: bool,
    /// Accepted for docker's sake: kiln keeps no untagged parents.
    #[arg(long)]
    no_prune: bool,
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
    let _ = a.all;
    let mut filters = Filters::parse(&a.filter).map_err(|e| Failure::new(1, e.to_string()))?;
    if let Some(r) = &a.reference {
        // `docker.io/library/alpine` is listed as `alpine`.
        let r = r.strip_prefix("docker.io/").unwrap_or(r);
        filters
            .references
            .push(r.strip_prefix("library/").unwrap_or(r).to_string());
    }
    let rows = kiln_cache::image::list::list(&env.store, &filters).map_err(|e| match e {
        ListError::Lookup(e) => lookup_failure(e),
        e @ ListError::Read(_) => e.into(),
    })?;
    let format = match &a.format {
        // As docker's: -q wins over `table`, a template of one's own over -q.
        Some(f) if !(a.quiet && f.starts_with("table")) => Some(crate::format::listing(
            f,
            "{{.Repository}}\\t{{.Tag}}\\t{{.ID}}\\t{{.CreatedSince}}\\t{{.Size}}",
        )?),
        _ => None,
    };
    if let Some(f) = format {
        let rows: Vec<serde_json::Value> = rows
            .iter()
            .map(|r| {
                let hex = r.id.trim_start_matches("sha256:");
                let created = r.created.map_or(0, |c| {
                    c.duration_since(std::time::UNIX_EPOCH)
                        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(0))
                });
                serde_json::json!({
                    "ID": if a.no_trunc { r.id.as_str() } else { &hex[..hex.len().min(12)] },
                    "Repository": r.repository.as_deref().unwrap_or("<none>"),
                    "Tag": r.tag.as_deref().unwrap_or("<none>"),
                    "Digest": r.digest.as_deref().unwrap_or("<none>"),
                    "CreatedSince": crate::format::ago(created),
                    "CreatedAt": crate::format::created_at(created),
                    "Size": human_size(r.size),
                })
            })
            .collect();
        return crate::format::print_rows(&f, &IMAGES_HEADERS, &rows);
    }
    for line in render_images(&rows, &a, std::time::SystemTime::now()) {
        println!("{line}");
    }
    Ok(0)
}

/// The lines of `kiln images` (with its header unless `-q`).
fn render_images(rows: &[Row], a: &ImagesArgs, now: std::time::SystemTime) -> Vec<String> {
    let id = |r: &Row| {
        if a.no_trunc {
            r.id.clone()
        } else {
            let hex = r.id.trim_start_matches("sha256:");
            hex[..hex.len().min(12)].to_string()
        }
    };
    if a.quiet {
        return rows.iter().map(id).collect();
    }
    let none = "<none>";
    let digest_col = |d: &str| {
        if a.digests {
            format!("{d:<72}")
        } else {
            String::new()
        }
    };
    let id_width = if a.no_trunc { 72 } else { 14 };
    let mut out = vec![format!(
        "{:<40} {:<16} {}{:<id_width$} {:<22} {:>10}",
        "REPOSITORY",
        "TAG",
        digest_col("DIGEST"),
        "IMAGE ID",
        "CREATED",
        "SIZE"
    )];
    for r in rows {
        let created = r.created.map_or_else(
            || "N/A".to_string(),
            |c| {
                let age = now.duration_since(c).unwrap_or_default();
                format!("{} ago", kiln_units::human_duration(age))
            },
        );
        out.push(format!(
            "{:<40} {:<16} {}{:<id_width$} {:<22} {:>10}",
            r.repository.as_deref().unwrap_or(none),
            r.tag.as_deref().unwrap_or(none),
            digest_col(r.digest.as_deref().unwrap_or(none)),
            id(r),
            created,
            human_size(r.size)
        ));
    }
    out
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
    let found = env.local_image(&a.reference)?;
    // A push needs a name to push to: an image named by ID has none.
    let Some(r) = found.name.as_deref().and_then(|n| Reference::parse(n).ok()) else {
        return Err(Failure::new(
            1,
            format!(
                "An image does not exist locally with the tag: {}",
                a.reference
            ),
        ));
    };
    let image = kiln_cache::image::stored(&env.store, &found.manifest_digest)?;
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
    let manifest = env.local_image(&a.source)?.manifest_digest;
    let t = Reference::parse(&a.target).map_err(|e| Failure::usage(e.to_string()))?;
    env.store.set_image(&t.to_string(), &manifest)?;
    Ok(0)
}

pub(crate) fn rmi(env: &Env, a: RmiArgs) -> Result<u8, Failure> {
    use kiln_runtime::system::{remove_image, RmiError};
    let _ = a.no_prune;
    let mut code = 0;
    for name in &a.references {
        match remove_image(&env.store, name, a.force) {
            Ok(removed) => {
                for n in &removed.untagged {
                    println!("Untagged: {n}");
                }
                if let Some(id) = &removed.deleted {
                    println!("Deleted: {id}");
                }
            }
            Err(RmiError::Lookup(LookupError::Reference(e))) => {
                return Err(Failure::usage(e.to_string()))
            }
            Err(RmiError::Lookup(e)) => {
                lookup_failure(e).print();
                code = 1;
            }
            Err(e) => {
                Failure::from(e).print();
                code = 1;
            }
        }
    }
    Ok(code)
}

/// `kiln inspect IMAGE`'s object for one image (see `container::inspect`, which also
/// answers for containers).
pub(crate) fn inspect_image(env: &Env, reference: &str) -> Result<serde_json::Value, Failure> {
    let manifest = env.local_image(reference)?.manifest_digest;
    let summary = kiln_cache::image::summary(&env.store, &manifest)?;
    let cfg = kiln_cache::image::config(&env.store, &manifest)?;
    // Every name of the image: tags, and the digests it was pulled by.
    let (mut tags, mut digests) = (Vec::new(), Vec::new());
    for rec in env.store.list_images()? {
        if rec.manifest_digest != manifest {
            continue;
        }
        if let Ok(r) = Reference::parse(&rec.name) {
            if r.tag.is_some() {
                &mut tags
            } else {
                &mut digests
            }
            .push(r.familiar());
        }
    }
    Ok(serde_json::json!({
        "Id": summary.config_digest,
        "RepoTags": tags,
        "RepoDigests": digests,
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
    let manifest = env.local_image(&a.reference)?.manifest_digest;
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
    let found = env.local_image(&a.references[0])?;
    let image = kiln_cache::image::stored(&env.store, &found.manifest_digest)?;
    // An image saved by ID has no name in the archive, as docker's.
    let name = found.name.filter(|n| !is_untagged(n));
    kiln_exporter::layout::write(
        &env.store,
        &image,
        name.as_deref(),
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
