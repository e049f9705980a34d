//! The stored-image reader on a temp store (no root needed).

use super::*;
use kiln_oci::image::{image_manifest, to_json};
use serde_json::json;

fn store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(&dir.path().join("root")).unwrap();
    (dir, s)
}

fn blob(s: &Store, v: &Value) -> (String, u64) {
    s.write_blob(&to_json(v).unwrap()).unwrap()
}

/// An image of two made-up layers whose config holds Docker's extra fields.
fn image(s: &Store) -> (String, Vec<Layer>, Value) {
    let layers: Vec<Layer> = ["a", "b"]
        .iter()
        .map(|n| {
            let (digest, size) = s.write_blob(n.as_bytes()).unwrap();
            Layer {
                diff_id: kiln_oci::sha256_hex_digest(format!("diff {n}").as_bytes()),
                digest,
                size,
                media_type: media::OCI_LAYER_GZIP.into(),
            }
        })
        .collect();
    let cfg = json!({
        "created": "2024-01-01T00:00:00Z",
        "architecture": "amd64",
        "os": "linux",
        "config": {"Cmd": null, "OnBuild": ["RUN a", 7, "RUN b"], "Healthcheck": {"Test": ["NONE"]}},
        "rootfs": {"type": "layers", "diff_ids": layers.iter().map(|l| &l.diff_id).collect::<Vec<_>>()},
        "history": [{"created_by": "x", "empty_layer": true}],
    });
    let (cd, cs) = blob(s, &cfg);
    let m = image_manifest(&cd, cs, &layers).unwrap();
    let (md, _) = s.write_blob(&to_json(&m).unwrap()).unwrap();
    (md, layers, cfg)
}

#[test]
fn a_stored_image_reads_typed() {
    let (_d, s) = store();
    let (md, want, cfg) = image(&s);
    assert_eq!(layers(&s, &md).unwrap(), want);
    let img = stored(&s, &md).unwrap();
    assert_eq!(
        manifest(&s, &md).unwrap().config().digest().to_string(),
        img.config_digest
    );
    let b = blobs(&s, &md).unwrap();
    assert_eq!(b.len(), 4);
    assert_eq!(
        summary(&s, &md).unwrap(),
        Summary {
            config_digest: img.config_digest.clone(),
            size: want[0].size + want[1].size,
        }
    );
    assert_eq!(b[0].0, md);
    assert_eq!(b[1].0, img.config_digest);
    assert_eq!(
        b[3],
        (
            want[1].digest.clone(),
            want[1].media_type.clone(),
            want[1].size
        )
    );
    let c = config(&s, &md).unwrap();
    assert_eq!(c.on_build(), ["RUN a", "RUN b"]);
    // The container config comes back as stored, Docker's fields and nulls included.
    assert_eq!(serde_json::to_value(&c.config).unwrap(), cfg["config"]);
    assert_eq!(serde_json::to_value(&c.rootfs).unwrap(), cfg["rootfs"]);
    assert_eq!(serde_json::to_value(&c.history).unwrap(), cfg["history"]);
    assert_eq!(config_json(&s, &md).unwrap(), cfg);
    assert_eq!(oci_config(&s, &md).unwrap().rootfs().diff_ids().len(), 2);
}

#[test]
fn missing_fields_read_as_none() {
    let (_d, s) = store();
    let c = ImageConfig::parse(b"{}").unwrap();
    assert_eq!(c, ImageConfig::default());
    assert!(c.on_build().is_empty());
    let c = ImageConfig::parse(br#"{"config": {"OnBuild": "RUN x"}}"#).unwrap();
    assert!(c.on_build().is_empty());
    assert!(ImageConfig::parse(b"not json").is_err());
    assert!(ImageConfig::parse(b"7").is_err());
    assert!(matches!(config(&s, "sha256:00"), Err(ReadError::Store(_))));
}

/// A manifest the strict parser refuses is an error for every strict reader, and still
/// pins what it names for the collector.
#[test]
fn a_malformed_manifest_is_an_error_but_pins_its_blobs() {
    let (_d, s) = store();
    let (cd, _) = blob(
        &s,
        &json!({"rootfs": {"type": "layers", "diff_ids": ["sha256:d1"]}}),
    );
    let (ld, _) = s.write_blob(b"layer").unwrap();
    // No media types or sizes: not an OCI manifest.
    let (md, _) = blob(
        &s,
        &json!({"schemaVersion": 2, "config": {"digest": cd}, "layers": [{"digest": ld}]}),
    );
    for e in [
        manifest(&s, &md).map(|_| ()).unwrap_err(),
        stored(&s, &md).map(|_| ()).unwrap_err(),
        layers(&s, &md).map(|_| ()).unwrap_err(),
        blobs(&s, &md).map(|_| ()).unwrap_err(),
        summary(&s, &md).map(|_| ()).unwrap_err(),
    ] {
        assert!(e.to_string().starts_with("bad image config: "), "{e}");
    }
    assert_eq!(
        references(&s, &md).unwrap(),
        References {
            config: cd.clone(),
            layers: vec![ld.clone()],
            diff_ids: vec!["sha256:d1".into()],
        }
    );
    // Diff ids that do not pair with the layers name nothing.
    let (md2, _) = blob(
        &s,
        &json!({"config": {"digest": cd}, "layers": [{"digest": ld}, {"digest": ld}]}),
    );
    assert!(references(&s, &md2).unwrap().diff_ids.is_empty());
    assert_eq!(references(&s, "sha256:00"), None);
    let (not_json, _) = s.write_blob(b"not json").unwrap();
    assert_eq!(references(&s, &not_json), None);
}

#[test]
fn an_image_is_found_by_a_unique_id_prefix() {
    let (_d, s) = store();
    let (md, _, _) = image(&s);
    let id = stored(&s, &md).unwrap().config_digest;
    let hex = id.trim_start_matches("sha256:");
    assert_eq!(by_id(&s, &id).unwrap(), None, "only named images are found");
    s.set_image("docker.io/library/a:1", &md).unwrap();
    s.set_image("docker.io/library/b:1", &md).unwrap();
    for want in [id.as_str(), hex, &hex[..4]] {
        assert_eq!(
            by_id(&s, want).unwrap().as_deref(),
            Some(md.as_str()),
            "{want}"
        );
    }
    assert_eq!(by_id(&s, &hex[..3]).unwrap(), None, "too short");
    assert_eq!(by_id(&s, "zzzz").unwrap(), None);
    // Another image whose ID starts with the same 4 digits: ambiguous.
    let cfg = (0..u32::MAX)
        .map(|n| json!({"architecture": "amd64", "os": "linux", "n": n, "rootfs": {"type": "layers", "diff_ids": []}}))
        .find(|c| {
            let d = kiln_oci::sha256_hex_digest(&to_json(c).unwrap());
            d.trim_start_matches("sha256:")[..4] == hex[..4]
        })
        .unwrap();
    let (cd, cs) = blob(&s, &cfg);
    let m = image_manifest(&cd, cs, &[]).unwrap();
    let (other, _) = s.write_blob(&to_json(&m).unwrap()).unwrap();
    s.set_image("docker.io/library/c:1", &other).unwrap();
    let e = by_id(&s, &hex[..4]).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!("image ID `{}` is ambiguous", &hex[..4])
    );
    assert_eq!(by_id(&s, &id).unwrap().as_deref(), Some(md.as_str()));
}

/// A second image (another config) besides [`image`]'s.
fn other_image(s: &Store) -> String {
    let (cd, cs) = blob(
        s,
        &json!({"architecture": "amd64", "os": "linux", "n": 2, "rootfs": {"type": "layers", "diff_ids": []}}),
    );
    let m = image_manifest(&cd, cs, &[]).unwrap();
    s.write_blob(&to_json(&m).unwrap()).unwrap().0
}

#[test]
fn lookup_takes_every_spelling_docker_users_type() {
    let (_d, s) = store();
    let (md, _, _) = image(&s);
    let id = stored(&s, &md).unwrap().config_digest;
    let hex = id.trim_start_matches("sha256:").to_string();
    s.set_image("docker.io/library/alpine:3", &md).unwrap();
    s.set_image(&format!("docker.io/library/pinned@{md}"), &md)
        .unwrap();
    let named = |n: &str| Some(n.to_string());
    for (spelling, name) in [
        ("alpine:3", named("docker.io/library/alpine:3")),
        (
            "docker.io/library/alpine:3",
            named("docker.io/library/alpine:3"),
        ),
        (
            &*format!("alpine@{md}"),
            named("docker.io/library/alpine:3"),
        ),
        (
            &*format!("pinned@{md}"),
            named(&format!("docker.io/library/pinned@{md}")),
        ),
        (&*id, None),
        (&hex, None),
        (&hex[..12], None),
        (&*format!("sha256:{}", &hex[..6]), None),
    ] {
        let f = lookup(&s, spelling).unwrap_or_else(|e| panic!("{spelling}: {e}"));
        assert_eq!(f.manifest_digest, md, "{spelling}");
        assert_eq!(f.name, name, "{spelling}");
    }
    let missing = |spelling: &str| match lookup(&s, spelling) {
        Err(e @ LookupError::NotFound(_)) => e.to_string(),
        other => panic!("{spelling}: {other:?}"),
    };
    assert_eq!(missing("alpine"), "no such image: alpine:latest");
    assert_eq!(missing("sha256:0000"), "no such image: sha256:0000");
    assert_eq!(
        missing(&format!("other@{md}")),
        format!("no such image: other@{md}")
    );
    assert!(matches!(lookup(&s, "Bad"), Err(LookupError::Reference(_))));
    // A name wins over an ID prefix, as in docker.
    let other = other_image(&s);
    s.set_image(&format!("docker.io/library/{}:latest", &hex[..8]), &other)
        .unwrap();
    assert_eq!(lookup(&s, &hex[..8]).unwrap().manifest_digest, other);
}

#[test]
fn a_retagged_image_stays_dangling_until_no_name_needs_it() {
    let (_d, s) = store();
    let (md, _, _) = image(&s);
    let id = stored(&s, &md).unwrap().config_digest;
    let other = other_image(&s);
    let names = |s: &Store| -> Vec<(String, String)> {
        s.list_images()
            .unwrap()
            .into_iter()
            .map(|r| (r.name, r.manifest_digest))
            .collect()
    };
    s.set_image("docker.io/library/a:1", &md).unwrap();
    s.set_image("docker.io/library/b:1", &md).unwrap();
    s.set_image("docker.io/library/a:1", &other).unwrap();
    // b:1 still names the old image: nothing dangles.
    assert_eq!(names(&s).len(), 2);
    s.set_image("docker.io/library/b:1", &other).unwrap();
    assert_eq!(
        names(&s),
        vec![
            (format!("{UNTAGGED}{id}"), md.clone()),
            ("docker.io/library/a:1".into(), other.clone()),
            ("docker.io/library/b:1".into(), other.clone()),
        ]
    );
    // Setting the same image again changes nothing.
    s.set_image("docker.io/library/b:1", &other).unwrap();
    assert_eq!(names(&s).len(), 3);
    assert_eq!(lookup(&s, &id).unwrap().manifest_digest, md);
    // Naming the dangling image again: it is no longer dangling.
    s.set_image("docker.io/library/c:1", &md).unwrap();
    assert_eq!(names(&s).len(), 3);
    assert!(!names(&s).iter().any(|(n, _)| is_untagged(n)));
}

/// An image of one uncompressed layer: a 5-byte file, a hard link to it, a symlink to
/// `target` (6 bytes) and a directory; created at `created`, with `labels`.
fn tar_image(s: &Store, created: &str, labels: &Value) -> String {
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Directory);
    h.set_size(0);
    h.set_mode(0o755);
    b.append_data(&mut h, "d/", &[][..]).unwrap();
    let mut h = tar::Header::new_gnu();
    h.set_size(5);
    h.set_mode(0o644);
    b.append_data(&mut h, "d/f", &b"hello"[..]).unwrap();
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Link);
    h.set_size(0);
    b.append_link(&mut h, "d/g", "d/f").unwrap();
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Symlink);
    h.set_size(0);
    b.append_link(&mut h, "d/l", "target").unwrap();
    let bytes = b.into_inner().unwrap();
    let (digest, size) = s.write_blob(&bytes).unwrap();
    let layer = Layer {
        diff_id: digest.clone(),
        digest,
        size,
        media_type: media::OCI_LAYER_TAR.into(),
    };
    let cfg = json!({
        "created": created, "architecture": "amd64", "os": "linux",
        "config": {"Labels": labels},
        "rootfs": {"type": "layers", "diff_ids": [layer.diff_id]},
    });
    let (cd, cs) = blob(s, &cfg);
    let m = image_manifest(&cd, cs, &[layer]).unwrap();
    s.write_blob(&to_json(&m).unwrap()).unwrap().0
}

#[test]
fn images_rows_are_dockers() {
    use list::{list, Filters};
    let (_d, s) = store();
    let old = tar_image(&s, "2020-01-01T00:00:00Z", &json!({"tier": "base"}));
    let new = tar_image(&s, "2024-05-01T10:00:00.5Z", &json!({}));
    s.set_image("docker.io/library/alpine:3", &old).unwrap();
    // A pull by digest of the tagged image adds no row; of an untagged one, a `<none>` tag.
    s.set_image(&format!("docker.io/library/alpine@{old}"), &old)
        .unwrap();
    s.set_image(&format!("docker.io/library/pinned@{new}"), &new)
        .unwrap();
    s.set_image("host:5000/x/app:1", &new).unwrap();
    // Retagging leaves the old image dangling.
    s.set_image("host:5000/x/app:1", &old).unwrap();
    let show = |f: &Filters| -> Vec<String> {
        list(&s, f)
            .unwrap()
            .into_iter()
            .map(|r| {
                format!(
                    "{} {} {} {}",
                    r.repository.as_deref().unwrap_or("<none>"),
                    r.tag.as_deref().unwrap_or("<none>"),
                    r.digest.is_some(),
                    r.size
                )
            })
            .collect()
    };
    // 5 (the file, once) + 6 (the symlink's target).
    assert_eq!(
        show(&Filters::default()),
        [
            "pinned <none> true 11",
            "alpine 3 true 11",
            "host:5000/x/app 1 false 11",
        ],
        "newest first; a dangling image named by digest is not dangling"
    );
    let f = |v: &[&str]| {
        Filters::parse(&v.iter().map(ToString::to_string).collect::<Vec<_>>()).unwrap()
    };
    s.remove_image(&format!("docker.io/library/pinned@{new}"))
        .unwrap();
    s.set_image("docker.io/library/tmp:1", &new).unwrap();
    s.set_image("docker.io/library/tmp:1", &old).unwrap();
    assert_eq!(show(&f(&["dangling=true"])), ["<none> <none> false 11"]);
    assert_eq!(show(&f(&["dangling=false"])).len(), 3);
    assert_eq!(show(&f(&["reference=alp*"])), ["alpine 3 true 11"]);
    assert_eq!(
        show(&f(&["reference=*/*/app:1"])),
        ["host:5000/x/app 1 false 11"]
    );
    assert_eq!(show(&f(&["label=tier=base"])).len(), 3);
    assert_eq!(show(&f(&["label=tier=top"])).len(), 0);
    assert_eq!(show(&f(&["label=tier"])).len(), 3);
    assert_eq!(show(&f(&["since=alpine:3"])), ["<none> <none> false 11"]);
    assert_eq!(show(&f(&["before=alpine:3"])).len(), 0);
    let newest = list(&s, &f(&["dangling=true"])).unwrap()[0].id.clone();
    assert_eq!(show(&f(&[&format!("before={newest}")])).len(), 3);
    let e = list(&s, &f(&["before=nothere"])).unwrap_err();
    assert_eq!(e.to_string(), "no such image: nothere:latest");
    let created = list(&s, &f(&["reference=alpine"])).unwrap()[0].created;
    assert_eq!(
        created,
        Some(humantime::parse_rfc3339("2020-01-01T00:00:00Z").unwrap())
    );
}
