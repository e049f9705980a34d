//! Image assembly on a temp store (no root needed).

use crate::{distributable, store_image, Compress, HistoryEntry};
use kiln_cache::image::{layers as image_layers, stored as stored_image};
use kiln_cache::{Compression, Store};
use kiln_oci::{media, Layer};
use serde_json::{json, Value};

/// A store holding `n` uncompressed layer blobs (one file each), recorded as layers.
fn store_with_tar_layers(n: usize) -> (tempfile::TempDir, Store, Vec<Layer>) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let layers = (0..n)
        .map(|i| {
            let mut b = tar::Builder::new(Vec::new());
            let body = format!("layer {i}\n").repeat(100);
            let mut h = tar::Header::new_ustar();
            h.set_size(body.len() as u64);
            h.set_mode(0o644);
            h.set_mtime(0);
            b.append_data(&mut h, format!("f{i}"), body.as_bytes())
                .unwrap();
            let bytes = b.into_inner().unwrap();
            let (digest, size) = store.write_blob(&bytes).unwrap();
            let l = Layer {
                diff_id: digest.clone(),
                digest,
                size,
                media_type: media::OCI_LAYER_TAR.into(),
            };
            store.record_layer(&l).unwrap();
            l
        })
        .collect();
    (dir, store, layers)
}

/// The manifest `distributable` writes is the stored one with only its layers replaced,
/// byte for byte as kiln wrote it when it edited the JSON by hand; the layers keep their
/// order (compressed several at once) and their diff ids.
#[test]
fn distributable_replaces_only_the_layers() {
    let (_d, store, layers) = store_with_tar_layers(4);
    let history = [HistoryEntry {
        created_by: "COPY f /f".into(),
        comment: Some("c".into()),
        empty_layer: false,
    }];
    let config = json!({"config": {"Cmd": ["sh"]}, "history": [{"created_by": "base"}]});
    let image = store_image(&store, config, &history, &layers, "2024-01-01T00:00:00Z").unwrap();
    let gz = Compress {
        compression: Compression::Gzip,
        level: None,
    };
    let out = distributable(&store, &image, gz).unwrap();
    assert_eq!(out.config_digest, image.config_digest);
    let got = image_layers(&store, &out.manifest_digest).unwrap();
    assert_eq!(
        got.iter().map(|l| &l.diff_id).collect::<Vec<_>>(),
        layers.iter().map(|l| &l.diff_id).collect::<Vec<_>>()
    );
    assert!(got.iter().all(|l| l.media_type == media::OCI_LAYER_GZIP));

    let mut by_hand: Value =
        serde_json::from_slice(&store.read_blob(&image.manifest_digest).unwrap()).unwrap();
    by_hand["layers"] = json!(got
        .iter()
        .map(|l| json!({"mediaType": l.media_type, "digest": l.digest, "size": l.size}))
        .collect::<Vec<_>>());
    assert_eq!(
        String::from_utf8(store.read_blob(&out.manifest_digest).unwrap()).unwrap(),
        String::from_utf8(serde_json::to_vec(&by_hand).unwrap()).unwrap()
    );

    let cfg: Value =
        serde_json::from_slice(&store.read_blob(&image.config_digest).unwrap()).unwrap();
    assert_eq!(
        cfg["history"],
        json!([
            {"created_by": "base"},
            {"created": "2024-01-01T00:00:00Z", "created_by": "COPY f /f", "comment": "c"}
        ])
    );
    assert_eq!(cfg["rootfs"]["type"], "layers");
}

/// A manifest in the store that is JSON but not a manifest is an error, not an image with
/// empty digests.
#[test]
fn malformed_stored_manifests_are_errors() {
    let (_d, store, _) = store_with_tar_layers(0);
    for bad in [
        &br#"{"schemaVersion": 2}"#[..],
        br#"{"schemaVersion": 2, "config": {"mediaType": "x", "digest": 7, "size": 1}, "layers": []}"#,
    ] {
        let (digest, _) = store.write_blob(bad).unwrap();
        assert!(stored_image(&store, &digest).is_err());
        let e = image_layers(&store, &digest).unwrap_err().to_string();
        assert!(e.starts_with("bad image config: "), "{e}");
    }
}
