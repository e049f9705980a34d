//! Test helpers: a throwaway `docker-registry` (in `server.rs`, shared with the CLI's
//! tests), a fault-injecting proxy (`proxy.rs`), stores and images made by hand.

#![allow(dead_code)]

mod server;
pub(crate) use server::*;
/// The fault-injecting proxy of `faults.rs`.
pub(crate) mod proxy;

use kiln_cache::Store;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// A new empty store in its own temp dir.
pub(crate) fn new_store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("root")).unwrap();
    (dir, store)
}

/// An image put together in `store`; blob digests for checks.
pub(crate) struct TestImage {
    pub manifest_digest: String,
    pub config_digest: String,
    pub layer_digests: Vec<String>,
}

/// Writes a config blob, two layer blobs (one small, one of several MiB, streamed through a
/// `BlobWriter`) and a manifest of `manifest_media_type` (OCI or Docker schema 2; the
/// blobs' media types follow) into `store`.
pub(crate) fn make_image(store: &Store, seed: u8, docker: bool) -> TestImage {
    let (config_mt, layer_mt, manifest_mt) = if docker {
        (
            kiln_oci::media::DOCKER_CONFIG,
            kiln_oci::media::DOCKER_LAYER_GZIP,
            kiln_oci::media::DOCKER_MANIFEST,
        )
    } else {
        (
            kiln_oci::media::OCI_CONFIG,
            kiln_oci::media::OCI_LAYER_GZIP,
            kiln_oci::media::OCI_MANIFEST,
        )
    };
    let small = format!("layer one, seed {seed}").into_bytes();
    let (l1, l1_size) = store.write_blob(&small).unwrap();
    // ~5 MiB, written in chunks, so that transfers span many network chunks.
    let mut w = store.blob_writer().unwrap();
    let mut state: u32 = 0x1234_5678 ^ u32::from(seed);
    let mut chunk = vec![0u8; 64 * 1024];
    for _ in 0..80 {
        for b in &mut chunk {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            *b = state as u8;
        }
        w.write_all(&chunk).unwrap();
    }
    let (l2, l2_size) = w.commit(None).unwrap();
    let config = serde_json::json!({
        "created": "2024-01-01T00:00:00Z",
        "architecture": "amd64",
        "os": "linux",
        "config": {"Env": ["PATH=/usr/bin:/bin"], "Cmd": ["/bin/sh"], "ExposedPorts": {"80/tcp": {}}},
        "rootfs": {"type": "layers", "diff_ids": [
            format!("sha256:{}", "1".repeat(64)),
            format!("sha256:{}", "2".repeat(64)),
        ]},
        "history": [{"created_by": format!("seed {seed}")}, {"created_by": "RUN x"}]
    });
    let (cfg, cfg_size) = store
        .write_blob(&serde_json::to_vec(&config).unwrap())
        .unwrap();
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": manifest_mt,
        "config": {"mediaType": config_mt, "digest": cfg, "size": cfg_size},
        "layers": [
            {"mediaType": layer_mt, "digest": l1, "size": l1_size},
            {"mediaType": layer_mt, "digest": l2, "size": l2_size},
        ]
    });
    let (m, _) = store
        .write_blob(&serde_json::to_vec_pretty(&manifest).unwrap())
        .unwrap();
    TestImage {
        manifest_digest: m,
        config_digest: cfg,
        layer_digests: vec![l1, l2],
    }
}

/// Writes an index (`docker` → Docker manifest list) naming `amd64` and `arm64` manifests.
pub(crate) fn make_index(store: &Store, amd64: &str, arm64: &str, docker: bool) -> String {
    let (mt, child_mt) = if docker {
        (
            kiln_oci::media::DOCKER_LIST,
            kiln_oci::media::DOCKER_MANIFEST,
        )
    } else {
        (kiln_oci::media::OCI_INDEX, kiln_oci::media::OCI_MANIFEST)
    };
    let entry = |d: &str, arch: &str| {
        serde_json::json!({
            "mediaType": child_mt, "digest": d, "size": store.blob_size(d).unwrap(),
            "platform": {"os": "linux", "architecture": arch}
        })
    };
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": mt,
        "manifests": [entry(arm64, "arm64"), entry(amd64, "amd64")]
    });
    store
        .write_blob(&serde_json::to_vec(&index).unwrap())
        .unwrap()
        .0
}

/// Asserts both stores hold `digest` with identical bytes.
pub(crate) fn assert_same_blob(a: &Store, b: &Store, digest: &str) {
    assert!(
        b.has_blob(digest),
        "{digest} missing from the pulling store"
    );
    let read = |s: &Store| -> Vec<u8> {
        let mut v = Vec::new();
        s.open_blob(digest).unwrap().read_to_end(&mut v).unwrap();
        v
    };
    let bytes = read(b);
    assert_eq!(kiln_oci::sha256_hex_digest(&bytes), digest);
    assert_eq!(bytes, read(a));
}

/// A Docker `config.json` with Basic credentials for `host`.
pub(crate) fn docker_config(dir: &Path, host: &str, user: &str, password: &str) -> PathBuf {
    use base64::Engine as _;
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    let p = dir.join("docker-config.json");
    std::fs::write(
        &p,
        serde_json::to_vec(&serde_json::json!({"auths": {host: {"auth": auth}}})).unwrap(),
    )
    .unwrap();
    p
}
