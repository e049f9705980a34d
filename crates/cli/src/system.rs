//! `kiln builder prune`, `kiln image prune`, `kiln system prune`, `kiln system df`, and the
//! storage cap (`[gc] keep-storage`) applied after every build.
//!
//! `image prune` and `system prune` remove image names (and stopped containers) first, then
//! run the same collection as `builder prune` ([`prune_locked`]): whatever those names
//! alone kept is then unreferenced and goes.
//!
//! What is live: every blob and snapshot an image name reaches (manifest, config, layers)
//! and every layer of a remaining build cache record. Prune removes cache records (all,
//! older than a duration, unusable ones, or least recently used first until the root fits
//! a size), then every blob and snapshot nothing live references. It holds the root's GC
//! lock exclusive while doing so: builds hold it shared for their whole run, because a
//! build in progress references blobs the database does not know yet.

use crate::util::{Env, Failure};
use clap::{Args, Subcommand};
use kiln_cache::Store;
use std::collections::{HashMap, HashSet};
use std::time::Duration;

#[derive(Args)]
pub(crate) struct BuilderArgs {
    #[command(subcommand)]
    cmd: BuilderCmd,
}

#[derive(Subcommand)]
enum BuilderCmd {
    /// Remove build cache (and the blobs and snapshots only it references).
    Prune(PruneArgs),
}

#[derive(Args)]
pub(crate) struct SystemArgs {
    #[command(subcommand)]
    cmd: SystemCmd,
}

#[derive(Subcommand)]
enum SystemCmd {
    /// Show disk usage: images, build cache, the rest, and what prune can reclaim.
    Df(DfArgs),
    /// Remove stopped containers, dangling images (all unused ones with -a) and build
    /// cache.
    Prune(SystemPruneArgs),
}

#[derive(Args)]
pub(crate) struct ImageArgs {
    #[command(subcommand)]
    cmd: ImageCmd,
}

#[derive(Subcommand)]
enum ImageCmd {
    /// Remove dangling (untagged) images, or with -a every image no container uses.
    Prune(ImagePruneArgs),
}

#[derive(Args)]
pub(crate) struct ImagePruneArgs {
    /// Remove every image no container uses, not only dangling ones.
    #[arg(short, long)]
    all: bool,
    /// Do not ask for confirmation (required when stdin is not a terminal).
    #[arg(short, long)]
    force: bool,
}

#[derive(Args)]
pub(crate) struct SystemPruneArgs {
    /// Remove every image no container uses (not only dangling ones) and all build cache.
    #[arg(short, long)]
    all: bool,
    /// Do not ask for confirmation (required when stdin is not a terminal).
    #[arg(short, long)]
    force: bool,
    /// Unused anonymous volumes too.
    #[arg(long)]
    volumes: bool,
}

#[derive(Args)]
pub(crate) struct PruneArgs {
    /// Remove all build cache, not only unusable records and unreferenced data.
    #[arg(short, long)]
    all: bool,
    /// Remove least recently used build cache until the root holds at most SIZE
    /// (e.g. 10GB, 512MB, 1.5GiB, bytes).
    #[arg(long)]
    keep_storage: Option<String>,
    /// `until=DURATION` (e.g. 24h, 30m, 7d, 1h30m): remove cache not used for that long.
    #[arg(long)]
    filter: Vec<String>,
    /// Do not ask for confirmation (kiln never asks; accepted for docker compatibility).
    #[arg(short, long)]
    force: bool,
}

#[derive(Args)]
pub(crate) struct DfArgs {
    /// Output format: table (default) or json.
    #[arg(long, default_value = "table", value_parser = ["table", "json"])]
    format: String,
}

pub(crate) fn builder(env: &Env, a: BuilderArgs) -> Result<u8, Failure> {
    match a.cmd {
        BuilderCmd::Prune(p) => prune(env, p),
    }
}

pub(crate) fn system(env: &Env, a: SystemArgs) -> Result<u8, Failure> {
    match a.cmd {
        SystemCmd::Df(d) => df(env, d),
        SystemCmd::Prune(p) => system_prune(env, p),
    }
}

pub(crate) fn image(env: &Env, a: ImageArgs) -> Result<u8, Failure> {
    match a.cmd {
        ImageCmd::Prune(p) => image_prune(env, p),
    }
}

/// Asks "Are you sure…" on a terminal unless `force`; without a terminal, `force` is
/// required (docker would read a "no" from a closed stdin).
pub(crate) fn confirm(force: bool, warning: &str) -> Result<bool, Failure> {
    if force {
        return Ok(true);
    }
    // SAFETY: isatty has no preconditions.
    if unsafe { libc::isatty(0) } != 1 {
        return Err(Failure::usage(format!(
            "{warning}\nstdin is not a terminal to confirm this: pass -f (--force)"
        )));
    }
    eprint!("{warning}\nAre you sure you want to continue? [y/N] ");
    let mut line = String::new();
    std::io::stdin()
        .read_line(&mut line)
        .map_err(|e| Failure::new(1, format!("stdin: {e}")))?;
    Ok(matches!(line.trim(), "y" | "Y" | "yes" | "Yes"))
}

/// The GC lock, waiting for running builds.
fn lock_exclusive(env: &Env) -> Result<kiln_cache::GcLock, Failure> {
    Ok(if let Some(l) = env.store.try_lock_gc_exclusive()? {
        l
    } else {
        eprintln!("waiting for running builds to finish…");
        env.store.lock_gc_exclusive()?
    })
}

/// The root's size once the database's write-ahead log is folded in, so that a prune
/// counts only what it removes (it compacts the database when done).
fn measured_usage(store: &Store) -> u64 {
    let _ = store.compact_db();
    kiln_cache::disk_usage(store.root())
}

/// The manifests of the images containers (running or stopped) were made from, by the
/// name their `kiln run` gave.
fn used_manifests(store: &Store) -> Result<HashSet<String>, Failure> {
    let mut used = HashSet::new();
    if let Ok(containers) = kiln_runtime::Containers::new(store.root()).list() {
        for c in containers {
            let name = match kiln_oci::Reference::parse(&c.config.image) {
                Ok(r) => r.to_string(),
                Err(_) => c.config.image.clone(),
            };
            if let Some(rec) = store.get_image(&name)? {
                used.insert(rec.manifest_digest);
            }
        }
    }
    Ok(used)
}

/// What an image prune removed: names (`untagged:` lines) and image IDs no name reaches
/// any more (`deleted:` lines).
#[derive(Default)]
struct ImagesRemoved {
    untagged: Vec<String>,
    deleted: Vec<String>,
}

/// Removes the names of dangling images (with `all`, of every image) that no container
/// uses. A container uses the image its `kiln run` named, by manifest: every other name
/// of that image stays too. Call with the GC lock held exclusive.
fn remove_images(store: &Store, all: bool) -> Result<ImagesRemoved, Failure> {
    let used = used_manifests(store)?;
    let records = store.list_images()?;
    let config_of = |manifest: &str| {
        kiln_exporter::read_manifest(store, manifest)
            .ok()
            .and_then(|m| m["config"]["digest"].as_str().map(str::to_string))
    };
    let mut out = ImagesRemoved::default();
    let mut removed_manifests = Vec::new();
    let mut kept_manifests = HashSet::new();
    for rec in records {
        let dangling = crate::images::is_untagged(&rec.name);
        if used.contains(&rec.manifest_digest) || !(all || dangling) {
            kept_manifests.insert(rec.manifest_digest);
            continue;
        }
        store.remove_image(&rec.name)?;
        if !dangling {
            out.untagged.push(
                kiln_oci::Reference::parse(&rec.name)
                    .map(|r| r.familiar())
                    .unwrap_or(rec.name),
            );
        }
        removed_manifests.push(rec.manifest_digest);
    }
    let mut seen = HashSet::new();
    for m in removed_manifests {
        if !kept_manifests.contains(&m) && seen.insert(m.clone()) {
            out.deleted.push(config_of(&m).unwrap_or(m));
        }
    }
    Ok(out)
}

fn print_images_removed(r: &ImagesRemoved) {
    if r.untagged.is_empty() && r.deleted.is_empty() {
        return;
    }
    println!("Deleted Images:");
    for n in &r.untagged {
        println!("untagged: {n}");
    }
    for d in &r.deleted {
        println!("deleted: {d}");
    }
    println!();
}

fn image_prune(env: &Env, a: ImagePruneArgs) -> Result<u8, Failure> {
    let warning = if a.all {
        "WARNING! This will remove all images without at least one container associated to them."
    } else {
        "WARNING! This will remove all dangling images."
    };
    if !confirm(a.force, warning)? {
        return Ok(0);
    }
    let lock = lock_exclusive(env)?;
    let before = measured_usage(&env.store);
    let removed = remove_images(&env.store, a.all)?;
    // Nothing removed, nothing to collect: what the build cache alone holds is
    // `builder prune`'s to free.
    let after = if removed.untagged.is_empty() && removed.deleted.is_empty() {
        before
    } else {
        prune_locked(&env.store, &PrunePolicy::default())?.after
    };
    drop(lock);
    print_images_removed(&removed);
    println!(
        "Total reclaimed space: {}",
        human(before.saturating_sub(after))
    );
    Ok(0)
}

fn system_prune(env: &Env, a: SystemPruneArgs) -> Result<u8, Failure> {
    let mut warning = String::from("WARNING! This will remove:\n  - all stopped containers\n");
    if a.all {
        warning.push_str(
            "  - all images without at least one container associated to them\n  - all build cache",
        );
    } else {
        warning.push_str("  - all dangling images\n  - unused build cache");
    }
    if a.volumes {
        warning.push_str("\n  - all anonymous volumes not used by at least one container");
    }
    if !confirm(a.force, &warning)? {
        return Ok(0);
    }
    let before = measured_usage(&env.store);
    let mut containers = Vec::new();
    for c in kiln_runtime::Containers::new(env.store.root()).list()? {
        if c.is_running() {
            continue;
        }
        let id = c.id().to_string();
        match c.remove(false) {
            Ok(()) => containers.push(id),
            // Started meanwhile: it stays, as `docker container prune` leaves it.
            Err(e) => eprintln!("warning: container {id}: {e}"),
        }
    }
    let volumes = if a.volumes {
        kiln_runtime::Volumes::new(env.store.root())
            .prune(false)
            .map_err(|e| Failure::new(1, e.to_string()))?
            .0
    } else {
        Vec::new()
    };
    let lock = lock_exclusive(env)?;
    let removed = remove_images(&env.store, a.all)?;
    let policy = PrunePolicy {
        all: a.all,
        ..Default::default()
    };
    let r = prune_locked(&env.store, &policy)?;
    drop(lock);
    if !containers.is_empty() {
        println!("Deleted Containers:");
        for id in &containers {
            println!("{id}");
        }
        println!();
    }
    if !volumes.is_empty() {
        println!("Deleted Volumes:");
        for v in &volumes {
            println!("{v}");
        }
        println!();
    }
    print_images_removed(&removed);
    if r.records + r.blobs + r.snapshots > 0 {
        println!(
            "Deleted {} build cache records, {} blobs, {} snapshots\n",
            r.records, r.blobs, r.snapshots
        );
    }
    println!(
        "Total reclaimed space: {}",
        human(before.saturating_sub(r.after))
    );
    Ok(0)
}

/// `10GB`, `512MB`, `1.5GiB`, `100kb`, `4096` (bytes). Decimal units are powers of 1000,
/// binary ones (`KiB`, `MiB`, …) of 1024, as docker does.
pub(crate) fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a size (e.g. 10GB, 512MB)"))?;
    let mult: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" => 1e3,
        "m" | "mb" => 1e6,
        "g" | "gb" => 1e9,
        "t" | "tb" => 1e12,
        "ki" | "kib" => 1024.0,
        "mi" | "mib" => 1024.0 * 1024.0,
        "gi" | "gib" => 1024.0 * 1024.0 * 1024.0,
        "ti" | "tib" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        other => return Err(format!("unknown size unit `{other}` in `{s}`")),
    };
    Ok((n * mult) as u64)
}

/// `24h`, `30m`, `45s`, `7d`, `1h30m`, `1.5h`.
pub(crate) fn parse_duration(s: &str) -> Result<Duration, String> {
    let bad = || format!("`{s}` is not a duration (e.g. 24h, 30m, 7d, 1h30m)");
    let mut total = 0f64;
    let mut num = String::new();
    let mut any = false;
    for c in s.trim().chars() {
        if c.is_ascii_digit() || c == '.' {
            num.push(c);
            continue;
        }
        let n: f64 = num.parse().map_err(|_| bad())?;
        num.clear();
        total += n * match c {
            's' => 1.0,
            'm' => 60.0,
            'h' => 3600.0,
            'd' => 86400.0,
            'w' => 7.0 * 86400.0,
            _ => return Err(bad()),
        };
        any = true;
    }
    if !num.is_empty() {
        // A bare number is seconds.
        total += num.parse::<f64>().map_err(|_| bad())?;
        any = true;
    }
    if !any {
        return Err(bad());
    }
    Ok(Duration::from_secs_f64(total))
}

/// Human size, docker style (powers of 1000).
pub(crate) fn human(n: u64) -> String {
    let units = ["B", "kB", "MB", "GB", "TB"];
    let mut v = n as f64;
    let mut i = 0;
    while v >= 1000.0 && i < units.len() - 1 {
        v /= 1000.0;
        i += 1;
    }
    if i == 0 {
        format!("{n}B")
    } else {
        let num = format!("{v:.2}");
        let num = num.trim_end_matches('0').trim_end_matches('.');
        format!("{num}{}", units[i])
    }
}

/// How to choose the cache records to remove.
#[derive(Default, Clone, Debug)]
pub(crate) struct PrunePolicy {
    pub all: bool,
    pub until: Option<Duration>,
    pub keep_storage: Option<u64>,
}

/// What a prune did.
#[derive(Default, Debug)]
pub(crate) struct PruneReport {
    pub records: usize,
    pub blobs: usize,
    pub snapshots: usize,
    pub before: u64,
    pub after: u64,
}

/// The blobs (digests) and snapshots (diff ids) a set of roots references.
#[derive(Default)]
struct Refs {
    blobs: HashSet<String>,
    diffs: HashSet<String>,
}

/// What images and containers reference: manifests, configs, layers, snapshots.
fn image_refs(store: &Store) -> Result<(Refs, usize), Failure> {
    let mut r = Refs::default();
    let images = store.list_images()?;
    for img in &images {
        r.blobs.insert(img.manifest_digest.clone());
        if let Ok(blobs) = kiln_exporter::image_blobs(store, &img.manifest_digest) {
            r.blobs.extend(blobs.into_iter().map(|(d, _, _)| d));
        }
        if let Ok(layers) = kiln_exporter::image_layers(store, &img.manifest_digest) {
            for l in layers {
                r.blobs.insert(l.digest);
                r.diffs.insert(l.diff_id);
            }
        }
    }
    // Containers, running or stopped, keep the snapshots their root filesystems stack:
    // pruning must not pull layers from under them (even after `rmi` of their image).
    if let Ok(containers) = kiln_runtime::Containers::new(store.root()).list() {
        for c in containers {
            for lower in &c.config.spec.rootfs.lowers {
                if let Some(hex) = lower.file_name() {
                    r.diffs.insert(format!("sha256:{}", hex.to_string_lossy()));
                }
            }
        }
    }
    Ok((r, images.len()))
}

/// A live layer whose snapshot is not extracted (one fetched from an imported cache, say)
/// lives in a blob recorded for its diff id: that blob is live too.
fn pin_unextracted(store: &Store, refs: &mut Refs, snaps: &HashMap<String, u64>) {
    let missing: Vec<String> = refs
        .diffs
        .iter()
        .filter(|d| !snaps.contains_key(*d))
        .cloned()
        .collect();
    for d in missing {
        if let Ok(Some(l)) = store.find_layer(&d) {
            refs.blobs.insert(l.digest);
        }
    }
}

/// The layers of a cache record (a `kiln_worker::Output` as JSON).
fn record_layers(value: &[u8]) -> Vec<kiln_oci::Layer> {
    serde_json::from_slice::<kiln_worker::Output>(value)
        .map(|o| o.layers().to_vec())
        .unwrap_or_default()
}

/// Removes cache records per `policy`, then every blob and snapshot nothing references.
/// Compressed blobs made for pushes and exports of build-step layers are referenced by no
/// image or record (those name the layer's snapshot), so a prune drops them: they are
/// remade from the snapshot when next needed. The caller holds the GC lock exclusive.
pub(crate) fn prune_locked(store: &Store, policy: &PrunePolicy) -> Result<PruneReport, Failure> {
    let root = store.root().to_path_buf();
    let before = kiln_cache::disk_usage(&root);
    let (pinned, _) = image_refs(store)?;
    let blobs: HashMap<String, u64> = store.list_blobs()?.into_iter().collect();
    let snaps: HashMap<String, u64> = store.list_snapshots()?.into_iter().collect();
    let records = store.cache_records()?; // least recently used first
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);

    let mut remove: Vec<String> = Vec::new();
    let mut keep: Vec<(String, Vec<kiln_oci::Layer>)> = Vec::new();
    for r in records {
        let layers = record_layers(&r.value);
        let usable = layers.iter().all(|l| store.layer_available(l));
        let old = policy
            .until
            .is_some_and(|u| r.last_used < now - u.as_secs() as i64);
        if policy.all || old || !usable {
            remove.push(r.key);
        } else {
            keep.push((r.key, layers));
        }
    }

    // LRU until the root fits: count references, drop the oldest records first, and count
    // what each drop frees (blobs and snapshots no image and no other record references).
    if let Some(cap) = policy.keep_storage {
        let mut blob_refs: HashMap<&str, u32> = HashMap::new();
        let mut diff_refs: HashMap<&str, u32> = HashMap::new();
        for (_, layers) in &keep {
            for l in layers {
                *blob_refs.entry(l.digest.as_str()).or_default() += 1;
                *diff_refs.entry(l.diff_id.as_str()).or_default() += 1;
            }
        }
        // What removing the already chosen records and the orphans frees.
        let mut freed: u64 = 0;
        for (d, size) in &blobs {
            if !pinned.blobs.contains(d) && !blob_refs.contains_key(d.as_str()) {
                freed += size;
            }
        }
        for (d, size) in &snaps {
            if !pinned.diffs.contains(d) && !diff_refs.contains_key(d.as_str()) {
                freed += size;
            }
        }
        let mut n = 0;
        while before.saturating_sub(freed) > cap && n < keep.len() {
            for l in &keep[n].1 {
                if let Some(c) = blob_refs.get_mut(l.digest.as_str()) {
                    *c -= 1;
                    if *c == 0 && !pinned.blobs.contains(&l.digest) {
                        freed += blobs.get(&l.digest).copied().unwrap_or(0);
                    }
                }
                if let Some(c) = diff_refs.get_mut(l.diff_id.as_str()) {
                    *c -= 1;
                    if *c == 0 && !pinned.diffs.contains(&l.diff_id) {
                        freed += snaps.get(&l.diff_id).copied().unwrap_or(0);
                    }
                }
            }
            n += 1;
        }
        remove.extend(keep.drain(..n).map(|(k, _)| k));
    }

    // Records first (a crash after this leaves only unreferenced files, collected next
    // time), then the files nothing live references.
    store.cache_remove(&remove)?;
    let mut live = pinned;
    for (_, layers) in &keep {
        for l in layers {
            live.blobs.insert(l.digest.clone());
            live.diffs.insert(l.diff_id.clone());
        }
    }
    pin_unextracted(store, &mut live, &snaps);
    let dead_blobs: Vec<String> = blobs
        .keys()
        .filter(|d| !live.blobs.contains(*d))
        .cloned()
        .collect();
    store.remove_blobs(&dead_blobs)?;
    let mut nsnap = 0;
    for d in snaps.keys().filter(|d| !live.diffs.contains(*d)) {
        store.remove_snapshot(d)?;
        nsnap += 1;
    }
    store.clean_temp();
    let _ = store.stat_cache_forget_missing_roots();
    let _ = store.compact_db();
    Ok(PruneReport {
        records: remove.len(),
        blobs: dead_blobs.len(),
        snapshots: nsnap,
        before,
        after: kiln_cache::disk_usage(&root),
    })
}

fn prune(env: &Env, a: PruneArgs) -> Result<u8, Failure> {
    let _ = a.force;
    let mut policy = PrunePolicy {
        all: a.all,
        ..Default::default()
    };
    if let Some(k) = &a.keep_storage {
        policy.keep_storage =
            Some(parse_size(k).map_err(|e| Failure::usage(format!("--keep-storage: {e}")))?);
    }
    for f in &a.filter {
        match f.split_once('=') {
            Some(("until", d)) => {
                policy.until =
                    Some(parse_duration(d).map_err(|e| Failure::usage(format!("--filter: {e}")))?);
            }
            _ => {
                return Err(Failure::usage(format!(
                    "--filter `{f}`: only until=DURATION is supported"
                )))
            }
        }
    }
    let lock = if let Some(l) = env.store.try_lock_gc_exclusive()? {
        l
    } else {
        eprintln!("waiting for running builds to finish…");
        env.store.lock_gc_exclusive()?
    };
    let r = prune_locked(&env.store, &policy)?;
    drop(lock);
    println!(
        "Deleted {} build cache records, {} blobs, {} snapshots",
        r.records, r.blobs, r.snapshots
    );
    println!(
        "Total reclaimed space: {}",
        human(r.before.saturating_sub(r.after))
    );
    Ok(0)
}

/// After a build: trim the root below `[gc] keep-storage` (least recently used cache
/// first). Skipped when another build holds the GC lock (the last one to finish trims).
pub(crate) fn gc_after_build(env: &Env) {
    let Some(cap) = env.gc_keep_storage() else {
        return;
    };
    let Ok(Some(lock)) = env.store.try_lock_gc_exclusive() else {
        return;
    };
    if kiln_cache::disk_usage(env.store.root()) <= cap {
        return;
    }
    let policy = PrunePolicy {
        keep_storage: Some(cap),
        ..Default::default()
    };
    if let Err(e) = prune_locked(&env.store, &policy) {
        eprintln!(
            "warning: trimming the store to gc.keep-storage failed: {}",
            e.message
        );
    }
    drop(lock);
}

/// Disk usage by category.
#[derive(serde::Serialize)]
struct Usage {
    images: usize,
    /// Images a container (running or stopped) uses: `image prune -a` keeps them.
    images_active: usize,
    images_size: u64,
    images_reclaimable: u64,
    build_cache: usize,
    build_cache_size: u64,
    build_cache_reclaimable: u64,
    volumes: usize,
    volumes_active: usize,
    volumes_size: u64,
    volumes_reclaimable: u64,
    other_size: u64,
    total: u64,
}

fn usage(store: &Store) -> Result<Usage, Failure> {
    // The write-ahead log is folded into the database first, so that what is counted is
    // what stays on disk once kiln exits (SQLite removes the log on the last close).
    let _ = store.compact_db();
    let (mut pinned, nimages) = image_refs(store)?;
    let blobs = store.list_blobs()?;
    let snaps = store.list_snapshots()?;
    pin_unextracted(store, &mut pinned, &snaps.iter().cloned().collect());
    let records = store.cache_records()?;
    let total = kiln_cache::disk_usage(store.root());
    let mut images_size = 0;
    let mut cache_size = 0;
    for (d, size) in &blobs {
        if pinned.blobs.contains(d) {
            images_size += size;
        } else {
            cache_size += size;
        }
    }
    for (d, size) in &snaps {
        if pinned.diffs.contains(d) {
            images_size += size;
        } else {
            cache_size += size;
        }
    }
    let used = used_manifests(store)?;
    let images_active = store
        .list_images()?
        .iter()
        .filter(|r| used.contains(&r.manifest_digest))
        .count();
    let vols = kiln_runtime::Volumes::new(store.root());
    let users = vols.users().unwrap_or_default();
    let (mut volumes, mut volumes_active, mut volumes_size, mut volumes_reclaimable) = (0, 0, 0, 0);
    for v in vols.list().unwrap_or_default() {
        let size = kiln_cache::disk_usage(&v.dir);
        volumes += 1;
        volumes_size += size;
        if users.contains_key(&v.name) {
            volumes_active += 1;
        } else {
            volumes_reclaimable += size;
        }
    }
    Ok(Usage {
        volumes,
        volumes_active,
        volumes_size,
        volumes_reclaimable,
        images: nimages,
        images_active,
        images_size,
        // Every image can be removed with `kiln rmi` (its layers stay while a container
        // stacks them), so all of it counts as reclaimable.
        images_reclaimable: images_size,
        build_cache: records.len(),
        build_cache_size: cache_size,
        build_cache_reclaimable: cache_size,
        other_size: total.saturating_sub(images_size + cache_size + volumes_size),
        total,
    })
}

fn df(env: &Env, a: DfArgs) -> Result<u8, Failure> {
    let u = usage(&env.store)?;
    if a.format == "json" {
        println!(
            "{}",
            serde_json::to_string_pretty(&u).map_err(|e| Failure::new(1, e.to_string()))?
        );
        return Ok(0);
    }
    let pct = |r: u64, s: u64| {
        if s == 0 {
            0
        } else {
            (r as f64 * 100.0 / s as f64).round() as u64
        }
    };
    println!(
        "{:<16}{:<8}{:<8}{:<12}RECLAIMABLE",
        "TYPE", "TOTAL", "ACTIVE", "SIZE"
    );
    println!(
        "{:<16}{:<8}{:<8}{:<12}{} ({}%)",
        "Images",
        u.images,
        u.images_active,
        human(u.images_size),
        human(u.images_reclaimable),
        pct(u.images_reclaimable, u.images_size)
    );
    println!(
        "{:<16}{:<8}{:<8}{:<12}{} ({}%)",
        "Build Cache",
        u.build_cache,
        0,
        human(u.build_cache_size),
        human(u.build_cache_reclaimable),
        pct(u.build_cache_reclaimable, u.build_cache_size)
    );
    println!(
        "{:<16}{:<8}{:<8}{:<12}{} ({}%)",
        "Local Volumes",
        u.volumes,
        u.volumes_active,
        human(u.volumes_size),
        human(u.volumes_reclaimable),
        pct(u.volumes_reclaimable, u.volumes_size)
    );
    println!(
        "{:<16}{:<8}{:<8}{:<12}0B",
        "Metadata/other",
        "-",
        "-",
        human(u.other_size)
    );
    println!("\nTotal on disk: {} ({} bytes)", human(u.total), u.total);
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_durations() {
        assert_eq!(parse_size("10GB").unwrap(), 10_000_000_000);
        assert_eq!(parse_size("1.5GiB").unwrap(), 1_610_612_736);
        assert_eq!(parse_size("512mb").unwrap(), 512_000_000);
        assert_eq!(parse_size("4096").unwrap(), 4096);
        assert!(parse_size("ten").is_err());
        assert_eq!(parse_duration("24h").unwrap(), Duration::from_hours(24));
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_mins(90));
        assert_eq!(parse_duration("7d").unwrap(), Duration::from_hours(168));
        assert!(parse_duration("soon").is_err());
        assert_eq!(human(999), "999B");
        assert_eq!(human(1_500_000), "1.5MB");
        assert_eq!(human(2_000_000_000), "2GB");
    }
}
