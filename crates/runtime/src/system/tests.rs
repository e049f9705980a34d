//! Image prune and disk usage on a temp store with containers and volumes written as
//! `kiln run` leaves them (no root needed).

use super::{prune_images, usage, ImagesRemoved};
use crate::{Config, Containers, MountedVolume, State, Status, Volumes};
use kiln_cache::image::UNTAGGED;
use kiln_cache::Store;
use kiln_oci::Layer;
use std::collections::BTreeMap;

fn store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(&dir.path().join("root")).unwrap();
    (dir, s)
}

/// A layer of one file `name` holding `data`, stored.
fn layer(s: &Store, name: &str, data: &[u8]) -> Layer {
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(data.len() as u64);
    h.set_mode(0o644);
    h.set_cksum();
    b.append_data(&mut h, name, data).unwrap();
    let tar = b.into_inner().unwrap();
    s.import_layer(&mut tar.as_slice()).unwrap()
}

/// Stores an image made of `layer` (a config unique to `tag`) and returns its manifest
/// and config digests.
fn image(s: &Store, tag: &str, layer: &Layer) -> (String, String) {
    let config = serde_json::json!({
        "architecture": "amd64", "os": "linux", "config": {"Labels": {"tag": tag}},
        "rootfs": {"type": "layers", "diff_ids": [layer.diff_id]}
    });
    let (config, size) = s.write_blob(config.to_string().as_bytes()).unwrap();
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config, "size": size},
        "layers": [{"mediaType": layer.media_type, "digest": layer.digest, "size": layer.size}],
    });
    let (manifest, _) = s.write_blob(manifest.to_string().as_bytes()).unwrap();
    (manifest, config)
}

/// A stopped container of `image` (as its `kiln run` named it) mounting `volumes`.
fn container(s: &Store, n: u8, image: &str, volumes: &[&str]) {
    container_in(
        s,
        n,
        image,
        volumes,
        State {
            status: Status::Exited,
            exit_code: Some(0),
            ..Default::default()
        },
    );
}

fn container_in(s: &Store, n: u8, image: &str, volumes: &[&str], state: State) {
    let id = format!("{n:02x}").repeat(32);
    let dir = s.root().join("containers").join(&id);
    std::fs::create_dir_all(&dir).unwrap();
    let mut config = Config {
        image: image.into(),
        detach: false,
        image_config: serde_json::json!({}),
        volumes: volumes
            .iter()
            .map(|v| MountedVolume {
                name: (*v).into(),
                destination: format!("/{v}"),
                anonymous: false,
            })
            .collect(),
        ..Config::for_test(&id, &format!("c{n}"), &dir)
    };
    config.spec.hostname = "c".into();
    std::fs::write(
        dir.join("config.json"),
        serde_json::to_vec(&config).unwrap(),
    )
    .unwrap();
    std::fs::write(dir.join("state.json"), serde_json::to_vec(&state).unwrap()).unwrap();
}

fn names(s: &Store) -> Vec<String> {
    let mut n: Vec<String> = s
        .list_images()
        .unwrap()
        .into_iter()
        .map(|r| r.name)
        .collect();
    n.sort();
    n
}

fn no_records(_: &[u8]) -> Vec<Layer> {
    Vec::new()
}

#[test]
fn prune_removes_dangling_images_and_with_all_every_unused_one() {
    let (_d, s) = store();
    let l = layer(&s, "a", b"a");
    let (tagged, _) = image(&s, "tagged", &l);
    let (dangling, dangling_id) = image(&s, "dangling", &l);
    s.set_image("docker.io/library/app:1", &tagged).unwrap();
    s.set_image(&format!("{UNTAGGED}{dangling_id}"), &dangling)
        .unwrap();

    let r = prune_images(&s, false).unwrap();
    assert_eq!(
        r,
        ImagesRemoved {
            untagged: vec![],
            deleted: vec![dangling_id],
        },
        "a dangling image has no name to untag; its ID is deleted"
    );
    assert_eq!(names(&s), ["docker.io/library/app:1"]);

    assert!(prune_images(&s, false).unwrap().is_empty());
    let r = prune_images(&s, true).unwrap();
    assert_eq!(r.untagged, ["app:1"]);
    assert_eq!(r.deleted.len(), 1);
    assert!(names(&s).is_empty());
}

#[test]
fn prune_all_keeps_every_name_of_an_image_a_container_uses() {
    let (_d, s) = store();
    let l = layer(&s, "a", b"a");
    let (used, _) = image(&s, "used", &l);
    let (unused, unused_id) = image(&s, "unused", &l);
    s.set_image("docker.io/library/used:1", &used).unwrap();
    s.set_image("docker.io/library/alias:1", &used).unwrap();
    s.set_image("docker.io/library/other:1", &unused).unwrap();
    s.set_image("docker.io/library/other:2", &unused).unwrap();
    container(&s, 1, "used:1", &[]);

    let r = prune_images(&s, true).unwrap();
    assert_eq!(r.untagged, ["other:1", "other:2"]);
    assert_eq!(r.deleted, [unused_id], "one ID for the image's two names");
    assert_eq!(
        names(&s),
        ["docker.io/library/alias:1", "docker.io/library/used:1"]
    );
}

#[test]
fn a_dangling_name_of_a_named_image_goes_without_a_line() {
    let (_d, s) = store();
    let l = layer(&s, "a", b"a");
    let (m, id) = image(&s, "x", &l);
    s.set_image("docker.io/library/x:1", &m).unwrap();
    s.set_image(&format!("{UNTAGGED}{id}"), &m).unwrap();
    let r = prune_images(&s, false).unwrap();
    assert!(
        r.is_empty(),
        "the dangling name's image is still x:1: {r:?}"
    );
    assert_eq!(names(&s), ["docker.io/library/x:1"]);
}

#[test]
fn usage_counts_images_containers_and_volumes() {
    let (_d, s) = store();
    let empty = usage(&s, &no_records).unwrap();
    assert_eq!(
        (
            empty.images,
            empty.images_active,
            empty.volumes,
            empty.build_cache
        ),
        (0, 0, 0, 0)
    );

    let l = layer(&s, "a", b"a");
    let (used, _) = image(&s, "used", &l);
    let (unused, _) = image(&s, "unused", &l);
    s.set_image("docker.io/library/used:1", &used).unwrap();
    s.set_image("docker.io/library/unused:1", &unused).unwrap();
    let vols = Volumes::new(s.root());
    let mut dirs = Vec::new();
    for name in ["data", "spare"] {
        let (v, _) = vols.create(Some(name), BTreeMap::new()).unwrap();
        std::fs::write(v.mountpoint().join("f"), vec![0u8; 10_000]).unwrap();
        dirs.push(v.dir);
    }
    container(&s, 1, "used:1", &["data"]);

    let u = usage(&s, &no_records).unwrap();
    assert_eq!((u.images, u.images_active), (2, 1));
    assert_eq!((u.volumes, u.volumes_active), (2, 1));
    assert!(u.volumes_size >= 20_000, "{u:?}");
    assert_eq!(
        u.volumes_reclaimable,
        kiln_cache::disk_usage(&dirs[1]),
        "only the volume no container uses: {u:?}"
    );
    assert_eq!(u.images_reclaimable, u.images_size);
    assert_eq!(
        u.other_size,
        u.total - u.images_size - u.build_cache_size - u.volumes_size
    );
}

#[test]
fn container_prune_removes_the_stopped_and_keeps_the_running() {
    let (_d, s) = store();
    container(&s, 1, "a:1", &[]);
    container_in(
        &s,
        2,
        "a:1",
        &[],
        State {
            status: Status::Running,
            supervisor: Some(kiln_executor::HostProcess::current().unwrap()),
            ..Default::default()
        },
    );
    let r = Containers::new(s.root()).prune().unwrap();
    assert_eq!(r.removed, ["01".repeat(32)]);
    assert!(r.failed.is_empty(), "{:?}", r.failed);
    let left: Vec<String> = Containers::new(s.root())
        .list()
        .unwrap()
        .iter()
        .map(|c| c.id().to_string())
        .collect();
    assert_eq!(left, ["02".repeat(32)]);
}

#[test]
fn rmi_follows_dockers_rules_for_images_containers_use() {
    use super::{remove_image, ImageRemoved, RmiError};
    let (_d, s) = store();
    let l = layer(&s, "a", b"a");
    let (m, id) = image(&s, "app", &l);
    let short = &id[7..19];
    s.set_image("docker.io/library/app:1", &m).unwrap();
    s.set_image("docker.io/library/app:2", &m).unwrap();
    // By ID with two names: refused without -f.
    let e = remove_image(&s, short, false).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!("conflict: unable to delete {short} (must be forced) - image is referenced in multiple repositories")
    );
    container(&s, 1, &id, &[]);
    // A name that is not the last one goes, container or not.
    assert_eq!(
        remove_image(&s, "app:2", false).unwrap(),
        ImageRemoved {
            untagged: vec!["app:2".into()],
            deleted: None
        }
    );
    // The last name of an image a container (named it by ID) uses: refused.
    let e = remove_image(&s, "app:1", false).unwrap_err();
    assert!(matches!(e, RmiError::ReferenceInUse { .. }));
    assert_eq!(
        e.to_string(),
        format!("conflict: unable to remove repository reference \"app:1\" (must force) - container 010101010101 is using its referenced image {short}")
    );
    // By ID: a stopped container's image needs -f.
    let e = remove_image(&s, &id, false).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!("conflict: unable to delete {short} (must be forced) - image is being used by stopped container 010101010101")
    );
    // -f on the name: untagged, kept dangling for the container.
    assert_eq!(
        remove_image(&s, "app:1", true).unwrap(),
        ImageRemoved {
            untagged: vec!["app:1".into()],
            deleted: None
        }
    );
    assert_eq!(names(&s), [format!("{UNTAGGED}{id}")]);
    // -f on the ID: the image goes.
    assert_eq!(
        remove_image(&s, short, true).unwrap(),
        ImageRemoved {
            untagged: vec![],
            deleted: Some(id.clone())
        }
    );
    assert!(names(&s).is_empty());
    let e = remove_image(&s, short, true).unwrap_err();
    assert_eq!(e.to_string(), format!("no such image: {short}:latest"));
    // An unused image's last name: untagged and deleted.
    s.set_image("docker.io/library/other:1", &m).unwrap();
    std::fs::remove_dir_all(s.root().join("containers")).unwrap();
    assert_eq!(
        remove_image(&s, "other:1", false).unwrap(),
        ImageRemoved {
            untagged: vec!["other:1".into()],
            deleted: Some(id)
        }
    );
}

#[test]
fn a_container_keeps_its_image_after_the_name_moves_on() {
    use super::{remove_image, used_manifests};
    let (_d, s) = store();
    let (la, lb) = (layer(&s, "a", b"a"), layer(&s, "b", b"b"));
    let (a, a_id) = image(&s, "a", &la);
    let (b, _) = image(&s, "b", &lb);
    s.set_image("docker.io/library/app:1", &a).unwrap();
    container(&s, 1, "app:1", &[]);
    // The container stacks image a's layer.
    let dir = s.root().join("containers").join("01".repeat(32));
    let mut cfg: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("config.json")).unwrap()).unwrap();
    cfg["spec"]["rootfs"]["lowers"] =
        serde_json::json!([format!("/snapshots/{}", &la.diff_id[7..])]);
    std::fs::write(dir.join("config.json"), cfg.to_string()).unwrap();
    s.set_image("docker.io/library/app:1", &b).unwrap();
    let used = used_manifests(&s).unwrap();
    assert!(used.contains(&a) && !used.contains(&b), "{used:?}");
    let e = remove_image(&s, &a_id, false).unwrap_err();
    assert!(e.to_string().contains("stopped container 0101"), "{e}");
    assert!(remove_image(&s, "app:1", false).is_ok(), "b is nobody's");
}
