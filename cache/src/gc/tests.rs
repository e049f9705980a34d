//! The GC policy on a temp store (no root needed): what each policy removes, and that
//! images, containers and kept records keep what they reference.

use super::{GcRoots, PrunePolicy};
use crate::Store;
use kiln_oci::Layer;
use std::time::Duration;

fn store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(&dir.path().join("root")).unwrap();
    (dir, s)
}

/// A layer of one file `name` holding `data`: its blob, and its snapshot extracted.
fn layer(s: &Store, name: &str, data: &[u8]) -> Layer {
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(data.len() as u64);
    h.set_mode(0o644);
    h.set_cksum();
    b.append_data(&mut h, name, data).unwrap();
    let tar = b.into_inner().unwrap();
    let l = s.import_layer(&mut tar.as_slice()).unwrap();
    s.snapshot(&l).unwrap();
    l
}

/// Names an image made of `layers`.
fn image(s: &Store, name: &str, layers: &[&Layer]) {
    let diff_ids: Vec<&str> = layers.iter().map(|l| l.diff_id.as_str()).collect();
    let config = serde_json::json!({"rootfs": {"type": "layers", "diff_ids": diff_ids}});
    let (config, _) = s.write_blob(config.to_string().as_bytes()).unwrap();
    let descs: Vec<_> = layers
        .iter()
        .map(|l| serde_json::json!({"mediaType": l.media_type, "digest": l.digest, "size": l.size}))
        .collect();
    let manifest =
        serde_json::json!({"schemaVersion": 2, "config": {"digest": config}, "layers": descs});
    let (manifest, _) = s.write_blob(manifest.to_string().as_bytes()).unwrap();
    s.set_image(name, &manifest).unwrap();
}

/// A cache record referencing `layers` (the tests' record format: JSON of the layers).
fn record(s: &Store, key: &str, layers: &[&Layer]) {
    s.cache_put(key, &serde_json::to_vec(layers).unwrap())
        .unwrap();
}

fn decode(value: &[u8]) -> Vec<Layer> {
    serde_json::from_slice(value).unwrap_or_default()
}

fn roots(snapshots: &[&Layer]) -> GcRoots<'static> {
    GcRoots {
        snapshots: snapshots.iter().map(|l| l.diff_id.clone()).collect(),
        record_layers: &decode,
    }
}

fn keys(s: &Store) -> Vec<String> {
    s.cache_records()
        .unwrap()
        .into_iter()
        .map(|r| r.key)
        .collect()
}

/// Whether the layer's blob and its snapshot are there.
fn present(s: &Store, l: &Layer) -> (bool, bool) {
    (
        s.has_blob(&l.digest),
        s.snapshot_dir(l).is_some_and(|d| d.is_dir()),
    )
}

#[test]
fn all_removes_every_record_and_what_only_records_kept() {
    let (_d, s) = store();
    let base = layer(&s, "base", b"image layer");
    let built = layer(&s, "built", b"build step layer");
    image(&s, "docker.io/library/a:latest", &[&base]);
    record(&s, "k1", &[&base, &built]);
    let r = s
        .prune(
            &PrunePolicy {
                all: true,
                ..PrunePolicy::default()
            },
            &roots(&[]),
        )
        .unwrap();
    assert_eq!((r.records, r.blobs, r.snapshots), (1, 1, 1));
    assert!(keys(&s).is_empty());
    assert_eq!(
        present(&s, &base),
        (true, true),
        "the image keeps its layer"
    );
    assert_eq!(present(&s, &built), (false, false));
    assert!(r.after < r.before);
}

#[test]
fn default_keeps_usable_records_and_drops_unusable_ones_and_orphans() {
    let (_d, s) = store();
    let kept = layer(&s, "kept", b"a record uses me");
    let gone = layer(&s, "gone", b"my blob and snapshot are removed below");
    let orphan = layer(&s, "orphan", b"nothing references me");
    record(&s, "usable", &[&kept]);
    record(&s, "unusable", &[&gone]);
    s.remove_blobs(std::slice::from_ref(&gone.digest)).unwrap();
    s.remove_snapshot(&gone.diff_id).unwrap();
    let r = s.prune(&PrunePolicy::default(), &roots(&[])).unwrap();
    assert_eq!(keys(&s), ["usable"]);
    assert_eq!((r.records, r.blobs, r.snapshots), (1, 1, 1));
    assert_eq!(present(&s, &kept), (true, true));
    assert_eq!(present(&s, &orphan), (false, false));
}

#[test]
fn until_removes_records_unused_for_that_long() {
    let (_d, s) = store();
    let l = layer(&s, "f", b"x");
    record(&s, "k", &[&l]);
    let now = s.cache_records().unwrap()[0].last_used;
    let until = |h| PrunePolicy {
        until: Some(Duration::from_hours(h)),
        ..PrunePolicy::default()
    };
    // Two hours later: not old for until=3h, old for until=1h.
    let r = s.prune_at(&until(3), &roots(&[]), now + 7200).unwrap();
    assert_eq!((r.records, keys(&s).len()), (0, 1));
    let r = s.prune_at(&until(1), &roots(&[]), now + 7200).unwrap();
    assert_eq!(r.records, 1);
    assert!(keys(&s).is_empty());
    assert_eq!(present(&s, &l), (false, false));
}

#[test]
fn keep_storage_drops_least_recently_used_records_until_the_root_fits() {
    let (_d, s) = store();
    // Incompressible content, so that each record's layer weighs about 2 × 256 KiB (blob
    // and snapshot).
    let blob = |seed: u8| -> Vec<u8> {
        let mut x = u32::from(seed) | 1;
        (0..256 * 1024)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x.to_le_bytes()[0]
            })
            .collect()
    };
    let (a, b, c) = (
        layer(&s, "a", &blob(1)),
        layer(&s, "b", &blob(2)),
        layer(&s, "c", &blob(3)),
    );
    // Same second: least recently used first is by key.
    record(&s, "a", &[&a]);
    record(&s, "b", &[&b]);
    record(&s, "c", &[&c]);
    let _ = s.compact_db();
    let before = crate::disk_usage(s.root());
    let policy = PrunePolicy {
        keep_storage: Some(before - 300 * 1024),
        ..PrunePolicy::default()
    };
    let r = s.prune(&policy, &roots(&[])).unwrap();
    assert_eq!(keys(&s), ["b", "c"], "the oldest record only");
    assert_eq!(r.records, 1);
    assert_eq!(present(&s, &a), (false, false));
    assert_eq!(present(&s, &c), (true, true));
    // A cap above the root's size removes nothing.
    let r = s
        .prune(
            &PrunePolicy {
                keep_storage: Some(u64::MAX),
                ..PrunePolicy::default()
            },
            &roots(&[]),
        )
        .unwrap();
    assert_eq!(r.records, 0);
}

#[test]
fn the_live_set_keeps_what_images_and_containers_reference() {
    let (_d, s) = store();
    let in_image = layer(&s, "img", b"named by an image");
    let stacked = layer(&s, "ctr", b"stacked by a container whose image is gone");
    image(&s, "docker.io/library/a:latest", &[&in_image]);
    let live = s.live_set(&roots(&[&stacked])).unwrap();
    assert!(live.blobs.contains(&in_image.digest));
    assert!(live.snapshots.contains(&in_image.diff_id));
    assert!(live.snapshots.contains(&stacked.diff_id));
    assert!(!live.blobs.contains(&stacked.digest));
    let u = s.usage(&roots(&[&stacked])).unwrap();
    assert_eq!((u.images, u.build_cache), (1, 0));
    assert!(u.images_size > 0 && u.build_cache_size > 0);

    let all = PrunePolicy {
        all: true,
        ..PrunePolicy::default()
    };
    s.prune(&all, &roots(&[&stacked])).unwrap();
    assert_eq!(present(&s, &in_image), (true, true));
    assert_eq!(
        present(&s, &stacked),
        (false, true),
        "the container keeps its snapshot (the blob is not needed to run it)"
    );
    // Once the image name and the container are gone, everything goes.
    s.remove_image("docker.io/library/a:latest").unwrap();
    s.prune(&all, &roots(&[])).unwrap();
    assert_eq!(present(&s, &in_image), (false, false));
    assert_eq!(present(&s, &stacked), (false, false));
}

#[test]
fn an_unextracted_live_layer_keeps_its_blob() {
    let (_d, s) = store();
    let l = layer(&s, "f", b"only the blob is there");
    s.remove_snapshot(&l.diff_id).unwrap();
    record(&s, "k", &[&l]);
    let r = s.prune(&PrunePolicy::default(), &roots(&[])).unwrap();
    assert_eq!(r.records, 0, "the record is usable from the blob");
    assert_eq!(present(&s, &l), (true, false));
}
