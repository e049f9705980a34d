//! `kiln builder prune`, `kiln image prune`, `kiln system prune`, `kiln system df`, and the
//! storage cap (`[gc] keep-storage`) applied after every build.
//!
//! `image prune` and `system prune` remove image names (and stopped containers) first, then
//! run the same collection as `builder prune` ([`kiln_cache::Store::prune`], where the
//! policy and what is live are decided): whatever those names alone kept is then
//! unreferenced and goes. Which names go, what the collection keeps for containers and the
//! `df` figures are [`kiln_runtime::system`]'s; this module gives it the worker's record
//! format ([`gc_roots`]), holds the root's GC lock exclusive while a prune runs (builds hold
//! it shared for their whole run, because a build in progress references blobs the database
//! does not know yet), asks for confirmation and prints.

use crate::util::{confirm, parse_size, Env, Failure};
use clap::{Args, Subcommand};
use kiln_cache::{GcRoots, PrunePolicy, Store};
use kiln_runtime::system::{prune_images, usage, ImagesRemoved};
use kiln_units::human;

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

/// What the store cannot know by itself: the snapshots containers stack, and how a build
/// cache record (the worker's) names its layers.
fn gc_roots(store: &Store) -> GcRoots<'static> {
    kiln_runtime::system::gc_roots(store, &kiln_worker::record_layers)
}

fn print_images_removed(r: &ImagesRemoved) {
    if r.is_empty() {
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

pub(crate) fn image_prune(env: &Env, a: ImagePruneArgs) -> Result<u8, Failure> {
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
    let removed = prune_images(&env.store, a.all)?;
    // Nothing removed, nothing to collect: what the build cache alone holds is
    // `builder prune`'s to free.
    let after = if removed.is_empty() {
        before
    } else {
        env.store
            .prune(&PrunePolicy::default(), &gc_roots(&env.store))?
            .after
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
    let pruned = kiln_runtime::Containers::new(env.store.root()).prune()?;
    for (id, e) in &pruned.failed {
        eprintln!("warning: container {id}: {e}");
    }
    let containers = pruned.removed;
    let volumes = if a.volumes {
        kiln_runtime::Volumes::new(env.store.root())
            .prune(false)
            .map_err(|e| Failure::with_source(1, e.to_string(), e))?
            .0
    } else {
        Vec::new()
    };
    let lock = lock_exclusive(env)?;
    let removed = prune_images(&env.store, a.all)?;
    let policy = PrunePolicy {
        all: a.all,
        ..Default::default()
    };
    let r = env.store.prune(&policy, &gc_roots(&env.store))?;
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
    policy.until = crate::util::until_filter(&a.filter)?;
    let lock = lock_exclusive(env)?;
    let r = env.store.prune(&policy, &gc_roots(&env.store))?;
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
    if let Err(e) = env.store.prune(&policy, &gc_roots(&env.store)) {
        let e = Failure::from(e);
        eprintln!(
            "warning: trimming the store to gc.keep-storage failed: {}",
            e.one_line()
        );
    }
    drop(lock);
}

fn df(env: &Env, a: DfArgs) -> Result<u8, Failure> {
    let u = usage(&env.store, &kiln_worker::record_layers)?;
    if a.format == "json" {
        println!(
            "{}",
            serde_json::to_string_pretty(&u).map_err(|e| Failure::with_source(
                1,
                e.to_string(),
                e
            ))?
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
    use std::time::Duration;

    /// `--keep-storage` and `--filter until=` read as they did before kiln-units.
    #[test]
    fn sizes_and_durations() {
        let size = crate::util::parse_size;
        assert_eq!(size("10GB").unwrap(), 10_000_000_000);
        assert_eq!(size("1.5GiB").unwrap(), 1_610_612_736);
        assert_eq!(size("512mb").unwrap(), 512_000_000);
        assert_eq!(size("4096").unwrap(), 4096);
        assert!(size("ten").is_err());
        let until = |s| kiln_units::parse_duration(s, kiln_units::DurationUnits::Filter);
        assert_eq!(until("24h").unwrap(), Duration::from_hours(24));
        assert_eq!(until("1h30m").unwrap(), Duration::from_mins(90));
        assert_eq!(until("7d").unwrap(), Duration::from_hours(168));
        assert_eq!(until("1.5h").unwrap(), Duration::from_mins(90));
        assert_eq!(until("45").unwrap(), Duration::from_secs(45));
        assert!(until("soon").is_err());
    }
}
