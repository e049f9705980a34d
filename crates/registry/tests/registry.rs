//! Push and pull against a real `docker-registry` (skipped, with a message, when it is not
//! installed).

mod common;

use common::*;
use kiln_oci::Reference;
use kiln_registry::{Client, Error, HostConfig, RegistryConfig};

fn reference(s: &str) -> Reference {
    Reference::parse(s).unwrap()
}

#[tokio::test]
async fn push_then_pull_roundtrip() {
    let Some(reg) = Registry::start() else { return };
    let (_a_dir, a) = new_store();
    let img = make_image(&a, 1, false);
    let client = Client::new(RegistryConfig::default());
    let r = reference(&format!("{}/kiln/roundtrip:v1", reg.host()));

    let pushed = client.push(&a, &img.manifest_digest, &r).await.unwrap();
    assert_eq!(pushed, img.manifest_digest);

    let (_b_dir, b) = new_store();
    let pulled = client.pull(&r, &b).await.unwrap();
    assert_eq!(pulled.manifest_digest, img.manifest_digest);
    assert_eq!(pulled.manifest.layers().len(), 2);
    assert_eq!(
        pulled.manifest.config().digest().to_string(),
        img.config_digest
    );
    assert_eq!(pulled.config.architecture().to_string(), "amd64");
    assert_eq!(pulled.config.rootfs().diff_ids().len(), 2);
    assert_same_blob(&a, &b, &img.manifest_digest);
    assert_same_blob(&a, &b, &img.config_digest);
    for l in &img.layer_digests {
        assert_same_blob(&a, &b, l);
    }

    // By digest too, into a third store; then again (everything present: nothing fetched).
    let by_digest = reference(&format!(
        "{}/kiln/roundtrip@{}",
        reg.host(),
        img.manifest_digest
    ));
    let (_c_dir, c) = new_store();
    let p = client.pull(&by_digest, &c).await.unwrap();
    assert_eq!(p.manifest_digest, img.manifest_digest);
    let gets = reg.count_requests("GET", "/blobs/");
    client.pull(&by_digest, &c).await.unwrap();
    assert_eq!(
        reg.count_requests("GET", "/blobs/"),
        gets,
        "present blobs fetched again"
    );
}

#[tokio::test]
async fn resolve_fetches_manifest_and_config_only() {
    let Some(reg) = Registry::start() else { return };
    let (_a_dir, a) = new_store();
    let img = make_image(&a, 2, false);
    let client = Client::new(RegistryConfig::default());
    let r = reference(&format!("{}/kiln/resolve:latest", reg.host()));
    client.push(&a, &img.manifest_digest, &r).await.unwrap();

    let (_b_dir, b) = new_store();
    let image = client.resolve(&r, &b).await.unwrap();
    assert_eq!(image.manifest_digest, img.manifest_digest);
    assert!(b.has_blob(&img.manifest_digest));
    assert!(b.has_blob(&img.config_digest));
    assert!(img.layer_digests.iter().all(|l| !b.has_blob(l)));
    client.fetch_layers(&r, &image.manifest, &b).await.unwrap();
    for l in &img.layer_digests {
        assert_same_blob(&a, &b, l);
    }
}

#[tokio::test]
async fn missing_tag_and_repository_are_not_found() {
    let Some(reg) = Registry::start() else { return };
    let (_a_dir, a) = new_store();
    let img = make_image(&a, 3, false);
    let client = Client::new(RegistryConfig::default());
    client
        .push(
            &a,
            &img.manifest_digest,
            &reference(&format!("{}/kiln/present:v1", reg.host())),
        )
        .await
        .unwrap();
    for name in ["kiln/present:nope", "kiln/absent:v1"] {
        let r = reference(&format!("{}/{name}", reg.host()));
        match client.resolve(&r, &a).await {
            Err(Error::NotFound { reference }) => {
                assert!(reference.contains(&r.to_string()), "{reference}");
            }
            other => panic!("{name}: expected NotFound, got {other:?}"),
        }
    }
    // A digest the registry does not have.
    let r = reference(&format!(
        "{}/kiln/present@sha256:{}",
        reg.host(),
        "0".repeat(64)
    ));
    assert!(matches!(
        client.resolve(&r, &a).await,
        Err(Error::NotFound { .. })
    ));
}

#[tokio::test]
async fn unused_port_is_unreachable() {
    let port = free_port();
    let host = format!("127.0.0.1:{port}");
    let (_dir, store) = new_store();
    let client = Client::new(RegistryConfig::default());
    let r = reference(&format!("{host}/kiln/x:v1"));
    match client.resolve(&r, &store).await {
        Err(e @ Error::Unreachable { .. }) => {
            let msg = e.to_string();
            assert!(msg.contains(&host) && msg.contains("kiln/x:v1"), "{msg}");
        }
        other => panic!("expected Unreachable, got {other:?}"),
    }
    let img = make_image(&store, 4, false);
    assert!(matches!(
        client.push(&store, &img.manifest_digest, &r).await,
        Err(Error::Unreachable { .. })
    ));
}

#[tokio::test]
async fn pushing_twice_skips_existing_blobs() {
    let Some(reg) = Registry::start() else { return };
    let (_a_dir, a) = new_store();
    let img = make_image(&a, 5, false);
    let client = Client::new(RegistryConfig::default());
    let r = reference(&format!("{}/kiln/twice:v1", reg.host()));
    client.push(&a, &img.manifest_digest, &r).await.unwrap();
    let uploads = reg.count_requests("POST", "/blobs/uploads/");
    assert_eq!(uploads, 3, "config and two layers uploaded once each");
    // Same image under another tag: every blob is found by HEAD, none uploaded again.
    let r2 = reference(&format!("{}/kiln/twice:v2", reg.host()));
    assert_eq!(
        client.push(&a, &img.manifest_digest, &r).await.unwrap(),
        img.manifest_digest
    );
    assert_eq!(
        client.push(&a, &img.manifest_digest, &r2).await.unwrap(),
        img.manifest_digest
    );
    assert_eq!(reg.count_requests("POST", "/blobs/uploads/"), uploads);
    assert!(reg.count_requests("HEAD", "/blobs/sha256:") >= 9);
    let (_b_dir, b) = new_store();
    assert_eq!(
        client.resolve(&r2, &b).await.unwrap().manifest_digest,
        img.manifest_digest
    );
}

#[tokio::test]
async fn docker_media_types_and_index_resolve_to_amd64() {
    let Some(reg) = Registry::start() else { return };
    let (_a_dir, a) = new_store();
    let amd64 = make_image(&a, 6, true);
    let arm64 = make_image(&a, 7, true);
    let list = make_index(&a, &amd64.manifest_digest, &arm64.manifest_digest, true);
    let client = Client::new(RegistryConfig::default());
    let r = reference(&format!("{}/kiln/multi:v1", reg.host()));
    assert_eq!(client.push(&a, &list, &r).await.unwrap(), list);

    let (_b_dir, b) = new_store();
    let image = client.pull(&r, &b).await.unwrap();
    assert_eq!(image.manifest_digest, amd64.manifest_digest);
    assert_eq!(
        image
            .manifest
            .media_type()
            .as_ref()
            .map(std::string::ToString::to_string)
            .as_deref(),
        Some(kiln_oci::media::DOCKER_MANIFEST)
    );
    assert_same_blob(&a, &b, &amd64.manifest_digest);
    for l in &amd64.layer_digests {
        assert_same_blob(&a, &b, l);
    }
    assert!(arm64.layer_digests.iter().all(|l| !b.has_blob(l)));

    // The index by digest resolves to the same child; an OCI index works the same way.
    let by_digest = reference(&format!("{}/kiln/multi@{list}", reg.host()));
    let (_c_dir, c) = new_store();
    assert_eq!(
        client
            .resolve(&by_digest, &c)
            .await
            .unwrap()
            .manifest_digest,
        amd64.manifest_digest
    );
    let oci_amd64 = make_image(&a, 8, false);
    let oci_arm64 = make_image(&a, 9, false);
    let index = make_index(
        &a,
        &oci_amd64.manifest_digest,
        &oci_arm64.manifest_digest,
        false,
    );
    let r = reference(&format!("{}/kiln/multi:oci", reg.host()));
    client.push(&a, &index, &r).await.unwrap();
    assert_eq!(
        client.resolve(&r, &c).await.unwrap().manifest_digest,
        oci_amd64.manifest_digest
    );
}

#[tokio::test]
async fn mirrors_are_tried_in_order_before_the_host() {
    let Some(reg) = Registry::start() else { return };
    let (_a_dir, a) = new_store();
    let img = make_image(&a, 10, false);
    let client = Client::new(RegistryConfig::default());
    client
        .push(
            &a,
            &img.manifest_digest,
            &reference(&format!("{}/kiln/mirrored:v1", reg.host())),
        )
        .await
        .unwrap();

    // `registry.invalid` does not resolve; the first mirror refuses connections; the second
    // is the real registry.
    let mut hosts = std::collections::BTreeMap::new();
    hosts.insert(
        "registry.invalid".to_string(),
        HostConfig {
            http: None,
            mirrors: vec![format!("127.0.0.1:{}", free_port()), reg.host()],
        },
    );
    let mirrored = Client::new(RegistryConfig {
        hosts,
        docker_config: None,
        ..Default::default()
    });
    let (_b_dir, b) = new_store();
    let r = reference("registry.invalid/kiln/mirrored:v1");
    let image = mirrored.pull(&r, &b).await.unwrap();
    assert_eq!(image.manifest_digest, img.manifest_digest);
    for l in &img.layer_digests {
        assert_same_blob(&a, &b, l);
    }
}

#[tokio::test]
async fn basic_auth_with_docker_config_credentials() {
    let Some(reg) = Registry::start_with_auth() else {
        return;
    };
    let (a_dir, a) = new_store();
    let img = make_image(&a, 11, false);
    let r = reference(&format!("{}/kiln/private:v1", reg.host()));

    // Anonymous: refused, naming the registry.
    let anonymous = Client::new(RegistryConfig::default());
    match anonymous.push(&a, &img.manifest_digest, &r).await {
        Err(e @ Error::Unauthorized { .. }) => assert!(e.to_string().contains(&reg.host()), "{e}"),
        other => panic!("expected Unauthorized, got {other:?}"),
    }
    // Wrong password: refused.
    let bad = docker_config(a_dir.path(), &reg.host(), USER, "wrong");
    let wrong = Client::new(RegistryConfig {
        hosts: Default::default(),
        docker_config: Some(bad),
        ..Default::default()
    });
    assert!(matches!(
        wrong.resolve(&r, &a).await,
        Err(Error::Unauthorized { .. })
    ));

    let cfg_dir = tempfile::tempdir().unwrap();
    let good = docker_config(cfg_dir.path(), &reg.host(), USER, PASSWORD);
    let client = Client::new(RegistryConfig {
        hosts: Default::default(),
        docker_config: Some(good),
        ..Default::default()
    });
    assert_eq!(
        client.push(&a, &img.manifest_digest, &r).await.unwrap(),
        img.manifest_digest
    );
    let (_b_dir, b) = new_store();
    let image = client.pull(&r, &b).await.unwrap();
    assert_eq!(image.manifest_digest, img.manifest_digest);
    for l in &img.layer_digests {
        assert_same_blob(&a, &b, l);
    }
}

#[test]
fn futures_are_send() {
    fn is_send<T: Send>(_: &T) {}
    let client = Client::new(RegistryConfig::default());
    let (_d, store) = new_store();
    let r = reference("127.0.0.1:1/x:y");
    is_send(&client.resolve(&r, &store));
    is_send(&client.pull(&r, &store));
    is_send(&client.push(&store, "sha256:00", &r));
}

#[tokio::test]
async fn corrupt_blob_is_rejected_and_not_stored() {
    let Some(reg) = Registry::start() else { return };
    let (_a_dir, a) = new_store();
    let img = make_image(&a, 12, false);
    let client = Client::new(RegistryConfig::default());
    let r = reference(&format!("{}/kiln/corrupt:v1", reg.host()));
    client.push(&a, &img.manifest_digest, &r).await.unwrap();

    // Flip a byte of the big layer in the registry's own storage (same size, wrong digest).
    let layer = &img.layer_digests[1];
    let hex = layer.strip_prefix("sha256:").unwrap();
    let data = reg
        .dir
        .path()
        .join("data/docker/registry/v2/blobs/sha256")
        .join(&hex[..2])
        .join(hex)
        .join("data");
    let mut bytes = std::fs::read(&data).unwrap();
    bytes[1000] ^= 0xff;
    std::fs::write(&data, bytes).unwrap();

    let (_b_dir, b) = new_store();
    match client.pull(&r, &b).await {
        Err(e @ Error::Protocol { .. }) => {
            let m = e.to_string();
            assert!(m.contains(layer) && m.contains(&reg.host()), "{m}");
        }
        other => panic!("expected a digest error, got {other:?}"),
    }
    assert!(!b.has_blob(layer));
}

#[tokio::test]
async fn check_login_with_basic_auth() {
    let Some(reg) = Registry::start_with_auth() else {
        return;
    };
    let client = Client::new(RegistryConfig::default());
    client
        .check_login(&reg.host(), USER, PASSWORD)
        .await
        .unwrap();
    match client.check_login(&reg.host(), USER, "wrong").await {
        Err(e @ Error::Unauthorized { .. }) => {
            assert!(e.to_string().contains(&reg.host()), "{e}");
        }
        other => panic!("expected Unauthorized, got {other:?}"),
    }
    // An open registry accepts any login, as with docker.
    let open = Registry::start().unwrap();
    client
        .check_login(&open.host(), "anyone", "anything")
        .await
        .unwrap();
}
