//! What the store, containers and volumes are together: which image names an image prune
//! removes ([`prune_images`]), what a collection must keep for containers ([`gc_roots`]),
//! and the disk usage by category ([`usage`], `kiln system df`).
//!
//! The store alone decides what its collection removes ([`kiln_cache::Store::prune`]);
//! this module gives it what it cannot know: the snapshots containers stack and, from the
//! caller, how a build cache record names its layers (the worker's format: the runtime
//! does not depend on the worker, so the decoder is a parameter). Locking (the store's GC
//! lock), confirmation and printing are the caller's.

use crate::{Containers, Result, Volumes};

pub mod info;
mod rmi;
use kiln_cache::image::is_untagged;
use kiln_cache::{GcRoots, Store};
use kiln_oci::Layer;
pub use rmi::{remove_image, ImageRemoved, RmiError};
use std::collections::HashSet;

/// The layers a build cache record's value references (empty when it cannot be read):
/// `kiln_worker::record_layers`.
pub type RecordLayers = dyn Fn(&[u8]) -> Vec<Layer>;

/// What a collection must keep besides what the store references: the snapshots
/// containers (running or stopped) stack, and how a build cache record names its layers.
pub fn gc_roots<'a>(store: &Store, record_layers: &'a RecordLayers) -> GcRoots<'a> {
    GcRoots {
        snapshots: Containers::new(store.root()).stacked_snapshots(),
        record_layers,
    }
}

/// The manifests of the images containers (running or stopped) were made from.
pub fn used_manifests(store: &Store) -> Result<HashSet<String>> {
    Containers::new(store.root()).image_manifests(store)
}

/// What an image prune removed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImagesRemoved {
    /// The names removed (familiar form; untagged images have none): `untagged:` lines.
    pub untagged: Vec<String>,
    /// The image IDs (config digests; the manifest digest when the config cannot be read)
    /// no name reaches any more: `deleted:` lines.
    pub deleted: Vec<String>,
}

impl ImagesRemoved {
    /// Whether nothing was removed.
    pub fn is_empty(&self) -> bool {
        self.untagged.is_empty() && self.deleted.is_empty()
    }
}

/// Removes the names of dangling images (with `all`, of every image) that no container
/// uses. A container uses the image its `kiln run` named, by manifest: every other name
/// of that image stays too. The blobs stay until the store's collection runs; call with
/// the store's GC lock held exclusive.
pub fn prune_images(store: &Store, all: bool) -> Result<ImagesRemoved> {
    let used = used_manifests(store)?;
    let records = store.list_images()?;
    let config_of = |manifest: &str| {
        kiln_cache::image::references(store, manifest)
            .map(|r| r.config)
            .filter(|c| !c.is_empty())
    };
    let mut out = ImagesRemoved::default();
    let mut removed_manifests = Vec::new();
    let mut kept_manifests = HashSet::new();
    for rec in records {
        let dangling = is_untagged(&rec.name);
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

/// Disk usage by category (`kiln system df`; its JSON form is this struct's).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Usage {
    /// Named images.
    pub images: usize,
    /// Images a container (running or stopped) uses: `image prune -a` keeps them.
    pub images_active: usize,
    /// What images hold.
    pub images_size: u64,
    /// What removing images would free: all of it (every image can be removed with
    /// `kiln rmi`; its layers stay while a container stacks them).
    pub images_reclaimable: u64,
    /// Build cache records.
    pub build_cache: usize,
    /// What only the build cache holds.
    pub build_cache_size: u64,
    /// All of the build cache (`builder prune -a`).
    pub build_cache_reclaimable: u64,
    /// Volumes.
    pub volumes: usize,
    /// Volumes a container (running or stopped) uses.
    pub volumes_active: usize,
    /// What volumes hold.
    pub volumes_size: u64,
    /// What the volumes no container uses hold.
    pub volumes_reclaimable: u64,
    /// The rest: the database, containers' upper dirs, scratch.
    pub other_size: u64,
    /// The whole root.
    pub total: u64,
}

/// The root's disk usage by category. Volumes that cannot be listed count as none.
pub fn usage(store: &Store, record_layers: &RecordLayers) -> Result<Usage> {
    let u = store.usage(&gc_roots(store, record_layers))?;
    let used = used_manifests(store)?;
    let images_active = store
        .list_images()?
        .iter()
        .filter(|r| used.contains(&r.manifest_digest))
        .count();
    let vols = Volumes::new(store.root());
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
        images: u.images,
        images_active,
        images_size: u.images_size,
        images_reclaimable: u.images_size,
        build_cache: u.build_cache,
        build_cache_size: u.build_cache_size,
        build_cache_reclaimable: u.build_cache_size,
        other_size: u
            .total
            .saturating_sub(u.images_size + u.build_cache_size + volumes_size),
        total: u.total,
    })
}

#[cfg(test)]
mod tests;
