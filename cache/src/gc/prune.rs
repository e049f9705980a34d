//! The GC policy: which build cache records a prune removes, and what stays live.
//!
//! What is live: every blob and snapshot an image name reaches (manifest, config, layers),
//! every snapshot a container stacks (the caller names them: the store does not know
//! containers), and every layer of a remaining build cache record (the caller decodes
//! records: their format is the worker's). [`Store::prune`] removes cache records (all,
//! older than a duration, unusable ones, or least recently used first until the root fits
//! a size), then every blob and snapshot nothing live references. The caller holds the GC
//! lock exclusive (see the parent module).
//!
//! Manifests and configs are read leniently here ([`crate::image::references`]: missing
//! fields are empty, not errors): a document the typed OCI parser refused would pin
//! nothing, and its layers would go. Reading too little is the one mistake a collector
//! must not make.

use crate::{disk_usage, Result, Store};
use kiln_oci::Layer;
use std::collections::{HashMap, HashSet};
use std::time::Duration;

/// How to choose the cache records a prune removes.
#[derive(Default, Clone, Debug, PartialEq, Eq)]
pub struct PrunePolicy {
    /// Every record (`--all`), not only unusable ones.
    pub all: bool,
    /// Records not used for this long (`--filter until=…`).
    pub until: Option<Duration>,
    /// Least recently used records until the root holds at most this many bytes
    /// (`--keep-storage`, `[gc] keep-storage`).
    pub keep_storage: Option<u64>,
}

/// What a prune did.
#[derive(Default, Clone, Debug, PartialEq, Eq)]
pub struct PruneReport {
    /// Cache records removed.
    pub records: usize,
    /// Blobs removed.
    pub blobs: usize,
    /// Snapshots removed.
    pub snapshots: usize,
    /// The root's size before, in bytes.
    pub before: u64,
    /// The root's size after, in bytes.
    pub after: u64,
}

/// What the store cannot know by itself: the snapshots containers stack, and how to read
/// the layers out of a cache record.
pub struct GcRoots<'a> {
    /// Diff ids (`sha256:…`) of snapshots in use outside the store (containers' root
    /// filesystems): kept even when no image names them any more.
    pub snapshots: Vec<String>,
    /// The layers a cache record's value references (empty when it cannot be read).
    pub record_layers: &'a dyn Fn(&[u8]) -> Vec<Layer>,
}

/// The blobs (digests) and snapshots (diff ids) a set of roots references.
#[derive(Default, Clone, Debug, PartialEq, Eq)]
pub struct LiveSet {
    /// Live blobs, `sha256:…`.
    pub blobs: HashSet<String>,
    /// Live snapshots, by diff id.
    pub snapshots: HashSet<String>,
}

/// Disk usage of the store, split as `kiln system df` shows it.
#[derive(Default, Clone, Debug, PartialEq, Eq)]
pub struct StoreUsage {
    /// Image names.
    pub images: usize,
    /// Bytes of blobs and snapshots that images and containers reference.
    pub images_size: u64,
    /// Build cache records.
    pub build_cache: usize,
    /// Bytes of every other blob and snapshot.
    pub build_cache_size: u64,
    /// The root's size.
    pub total: u64,
}

impl Store {
    /// What images (by name) and `roots.snapshots` reference, before cache records. Returns
    /// the set and the number of image names.
    fn image_refs(&self, roots: &GcRoots<'_>) -> Result<(LiveSet, usize)> {
        let mut live = LiveSet::default();
        let images = self.list_images()?;
        for img in &images {
            live.blobs.insert(img.manifest_digest.clone());
            if let Some(r) = crate::image::references(self, &img.manifest_digest) {
                live.blobs.insert(r.config);
                live.blobs.extend(r.layers);
                live.snapshots.extend(r.diff_ids);
            }
        }
        live.snapshots.extend(roots.snapshots.iter().cloned());
        Ok((live, images.len()))
    }

    /// A live layer whose snapshot is not extracted (one fetched from an imported cache,
    /// say) lives in a blob recorded for its diff id: that blob is live too.
    fn pin_unextracted(&self, live: &mut LiveSet, snaps: &HashMap<String, u64>) {
        let missing: Vec<String> = live
            .snapshots
            .iter()
            .filter(|d| !snaps.contains_key(*d))
            .cloned()
            .collect();
        for d in missing {
            if let Ok(Some(l)) = self.find_layer(&d) {
                live.blobs.insert(l.digest);
            }
        }
    }

    /// What images and `roots` keep (cache records not counted): what `image prune` and
    /// `rmi` could free, as opposed to what is build cache.
    pub fn live_set(&self, roots: &GcRoots<'_>) -> Result<LiveSet> {
        let (mut live, _) = self.image_refs(roots)?;
        let snaps: HashMap<String, u64> = self.list_snapshots()?.into_iter().collect();
        self.pin_unextracted(&mut live, &snaps);
        Ok(live)
    }

    /// The store's disk usage, split into what images and containers use and the build
    /// cache (everything else the content store and snapshots hold).
    pub fn usage(&self, roots: &GcRoots<'_>) -> Result<StoreUsage> {
        // The write-ahead log is folded into the database first, so that what is counted is
        // what stays on disk once kiln exits (SQLite removes the log on the last close).
        let _ = self.compact_db();
        let (mut live, images) = self.image_refs(roots)?;
        let blobs = self.list_blobs()?;
        let snaps = self.list_snapshots()?;
        self.pin_unextracted(&mut live, &snaps.iter().cloned().collect());
        let build_cache = self.cache_records()?.len();
        let mut u = StoreUsage {
            images,
            build_cache,
            total: disk_usage(self.root()),
            ..StoreUsage::default()
        };
        let sized = blobs
            .iter()
            .map(|(d, s)| (live.blobs.contains(d), *s))
            .chain(snaps.iter().map(|(d, s)| (live.snapshots.contains(d), *s)));
        for (is_live, size) in sized {
            if is_live {
                u.images_size += size;
            } else {
                u.build_cache_size += size;
            }
        }
        Ok(u)
    }

    /// Removes cache records per `policy`, then every blob and snapshot nothing references.
    /// Compressed blobs made for pushes and exports of build-step layers are referenced by
    /// no image or record (those name the layer's snapshot), so a prune drops them: they
    /// are remade from the snapshot when next needed. Call with the GC lock held exclusive.
    pub fn prune(&self, policy: &PrunePolicy, roots: &GcRoots<'_>) -> Result<PruneReport> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        self.prune_at(policy, roots, now)
    }

    /// [`Store::prune`] as if the time were `now` (Unix seconds).
    pub(crate) fn prune_at(
        &self,
        policy: &PrunePolicy,
        roots: &GcRoots<'_>,
        now: i64,
    ) -> Result<PruneReport> {
        let before = disk_usage(self.root());
        let (pinned, _) = self.image_refs(roots)?;
        let blobs: HashMap<String, u64> = self.list_blobs()?.into_iter().collect();
        let snaps: HashMap<String, u64> = self.list_snapshots()?.into_iter().collect();
        let records = self.cache_records()?; // least recently used first

        let mut remove: Vec<String> = Vec::new();
        let mut keep: Vec<(String, Vec<Layer>)> = Vec::new();
        for r in records {
            let layers = (roots.record_layers)(&r.value);
            let usable = layers.iter().all(|l| self.layer_available(l));
            let old = policy.until.is_some_and(|u| {
                r.last_used < now.saturating_sub(i64::try_from(u.as_secs()).unwrap_or(i64::MAX))
            });
            if policy.all || old || !usable {
                remove.push(r.key);
            } else {
                keep.push((r.key, layers));
            }
        }
        if let Some(cap) = policy.keep_storage {
            let n = lru_to_fit(&keep, &pinned, &blobs, &snaps, before, cap);
            remove.extend(keep.drain(..n).map(|(k, _)| k));
        }

        // Records first (a crash after this leaves only unreferenced files, collected next
        // time), then the files nothing live references.
        self.cache_remove(&remove)?;
        let mut live = pinned;
        for (_, layers) in &keep {
            for l in layers {
                live.blobs.insert(l.digest.clone());
                live.snapshots.insert(l.diff_id.clone());
            }
        }
        self.pin_unextracted(&mut live, &snaps);
        let dead_blobs: Vec<String> = blobs
            .keys()
            .filter(|d| !live.blobs.contains(*d))
            .cloned()
            .collect();
        self.remove_blobs(&dead_blobs)?;
        let mut nsnap = 0;
        for d in snaps.keys().filter(|d| !live.snapshots.contains(*d)) {
            self.remove_snapshot(d)?;
            nsnap += 1;
        }
        self.clean_temp();
        let _ = self.stat_cache_forget_missing_roots();
        let _ = self.compact_db();
        Ok(PruneReport {
            records: remove.len(),
            blobs: dead_blobs.len(),
            snapshots: nsnap,
            before,
            after: disk_usage(self.root()),
        })
    }
}

/// How many of the kept records (least recently used first) must go for the root to fit
/// `cap`: counts references, drops the oldest records first, and counts what each drop
/// frees (blobs and snapshots no image and no other record references).
fn lru_to_fit(
    keep: &[(String, Vec<Layer>)],
    pinned: &LiveSet,
    blobs: &HashMap<String, u64>,
    snaps: &HashMap<String, u64>,
    before: u64,
    cap: u64,
) -> usize {
    let mut blob_refs: HashMap<&str, u32> = HashMap::new();
    let mut diff_refs: HashMap<&str, u32> = HashMap::new();
    for (_, layers) in keep {
        for l in layers {
            *blob_refs.entry(l.digest.as_str()).or_default() += 1;
            *diff_refs.entry(l.diff_id.as_str()).or_default() += 1;
        }
    }
    // What removing the already chosen records and the orphans frees.
    let mut freed: u64 = 0;
    for (d, size) in blobs {
        if !pinned.blobs.contains(d) && !blob_refs.contains_key(d.as_str()) {
            freed += size;
        }
    }
    for (d, size) in snaps {
        if !pinned.snapshots.contains(d) && !diff_refs.contains_key(d.as_str()) {
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
                if *c == 0 && !pinned.snapshots.contains(&l.diff_id) {
                    freed += snaps.get(&l.diff_id).copied().unwrap_or(0);
                }
            }
        }
        n += 1;
    }
    n
}
