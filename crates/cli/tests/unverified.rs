//! Issue 11 item 7: nothing unverified is ever named. An image whose layer blob the
//! registry serves corrupted, or whose layer does not match its diff id, leaves no name
//! behind: `kiln run` (which pulls it) exits 125, `kiln pull` exits 1, and `kiln images`
//! lists neither. Needs root and Debian's docker-registry; skipped with a message otherwise.

mod common;

use common::*;
use kiln_cache::Store;
use kiln_oci::Reference;

/// Pushes a one-layer image (an uncompressed tar holding `/hello`) to `name`; with
/// `wrong_diff_id` the config's diff id is not the layer's. Returns the layer's digest.
fn push_image(name: &str, wrong_diff_id: bool) -> String {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("store")).unwrap();
    write(dir.path(), "rootfs/hello", "hello\n");
    let tar = dir.path().join("layer.tar");
    let st = std::process::Command::new("tar")
        .arg("-C")
        .arg(dir.path().join("rootfs"))
        .arg("-cf")
        .arg(&tar)
        .arg("hello")
        .status()
        .unwrap();
    assert!(st.success());
    let (layer, layer_size) = store.write_blob(&std::fs::read(&tar).unwrap()).unwrap();
    let diff_id = if wrong_diff_id {
        kiln_oci::sha256_hex_digest(b"some other layer")
    } else {
        layer.clone()
    };
    let config = serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {"Cmd": ["/hello"]},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
    });
    let (cfg, cfg_size) = store
        .write_blob(&serde_json::to_vec(&config).unwrap())
        .unwrap();
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": kiln_oci::media::OCI_MANIFEST,
        "config": {"mediaType": kiln_oci::media::OCI_CONFIG, "digest": cfg, "size": cfg_size},
        "layers": [{"mediaType": kiln_oci::media::OCI_LAYER_TAR, "digest": layer, "size": layer_size}],
    });
    let (m, _) = store
        .write_blob(&serde_json::to_vec(&manifest).unwrap())
        .unwrap();
    let client = kiln_registry::Client::new(Default::default());
    tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(client.push(&store, &m, &Reference::parse(name).unwrap()))
        .unwrap();
    layer
}

/// `kiln run` and `kiln pull` of `name` fail, as the issue says, and nothing is named.
fn assert_never_named(name: &str, why: &str) {
    let k = Kiln::new();
    let run = k.run(&["run", "--rm", name]);
    assert_eq!(run.status.code(), Some(125), "run: {}", stderr(&run));
    assert!(stderr(&run).contains(why), "run: {}", stderr(&run));
    let images = k.ok(&["images"]);
    assert_eq!(
        images.lines().count(),
        1,
        "named after a failed run:\n{images}"
    );

    let pull = k.run(&["pull", name]);
    assert_eq!(pull.status.code(), Some(1), "pull: {}", stderr(&pull));
    assert!(stderr(&pull).contains(why), "pull: {}", stderr(&pull));
    let images = k.ok(&["images"]);
    assert_eq!(
        images.lines().count(),
        1,
        "named after a failed pull:\n{images}"
    );
    let inspect = k.run(&["inspect", name]);
    assert!(!inspect.status.success());
}

#[test]
fn issue_11_a_corrupted_layer_blob_is_never_named() {
    if !can_run(&["docker-registry"]) {
        return;
    }
    let reg = Registry::start();
    let name = format!("{}/kiln/corrupt:1", reg.addr);
    let layer = push_image(&name, false);
    // The registry serves whatever its storage holds.
    let hex = &layer["sha256:".len()..];
    let data = reg
        .storage()
        .join("docker/registry/v2/blobs/sha256")
        .join(&hex[..2])
        .join(hex)
        .join("data");
    let mut bytes = std::fs::read(&data).unwrap();
    bytes[600] ^= 0xff;
    std::fs::write(&data, bytes).unwrap();
    assert_never_named(&name, "does not match its digest");
}

#[test]
fn issue_11_a_layer_not_matching_its_diff_id_is_never_named() {
    if !can_run(&["docker-registry"]) {
        return;
    }
    let reg = Registry::start();
    let name = format!("{}/kiln/bad-diff-id:1", reg.addr);
    push_image(&name, true);
    assert_never_named(&name, "diff id");
}
