//! Issue 11 item 9: registry faults. A fault-injecting proxy (tests/common/proxy.rs) stands
//! in front of a real `docker-registry` (skipped, with a message, when it is not installed):
//! 5xx and 429 answers are retried (`Retry-After` honoured), a blob download that breaks off
//! resumes with a `Range` request, and a registry that stops sending fails after the
//! configured stall timeout with an error naming it.

mod common;

use common::proxy::{Fault, Proxy};
use common::*;
use kiln_oci::Reference;
use kiln_registry::{Client, Error, RegistryConfig, RetryConfig};
use std::time::{Duration, Instant};

/// A client with short delays and the given stall timeout.
fn client(stall: Duration) -> Client {
    Client::new(RegistryConfig {
        retry: RetryConfig {
            retries: 3,
            base_delay: Duration::from_millis(10),
            max_delay: Duration::from_secs(5),
        },
        stall_timeout: stall,
        ..Default::default()
    })
}

/// A registry holding image `seed` as `kiln/faults:v1`, the proxy in front of it, the
/// image, and the store it came from.
async fn setup(
    seed: u8,
) -> Option<(
    Registry,
    Proxy,
    TestImage,
    tempfile::TempDir,
    kiln_cache::Store,
)> {
    let reg = Registry::start()?;
    let (dir, store) = new_store();
    let img = make_image(&store, seed, false);
    let r = Reference::parse(&format!("{}/kiln/faults:v1", reg.host())).unwrap();
    client(Duration::from_secs(30))
        .push(&store, &img.manifest_digest, &r)
        .await
        .unwrap();
    let proxy = Proxy::start(reg.host()).await;
    Some((reg, proxy, img, dir, store))
}

fn through(proxy: &Proxy) -> Reference {
    Reference::parse(&format!("{}/kiln/faults:v1", proxy.host())).unwrap()
}

#[tokio::test]
async fn a_500_then_success_is_retried() {
    let Some((_reg, proxy, img, _a_dir, a)) = setup(31).await else {
        return;
    };
    proxy.add("GET", "/manifests/", Fault::Status(500, vec![]), 1);
    proxy.add("GET", &img.layer_digests[1], Fault::Status(503, vec![]), 2);
    let (_b_dir, b) = new_store();
    let pulled = client(Duration::from_secs(30))
        .pull(&through(&proxy), &b)
        .await
        .unwrap();
    assert_eq!(pulled.manifest_digest, img.manifest_digest);
    assert_eq!(proxy.seen("GET", "/manifests/").len(), 2);
    assert_eq!(proxy.seen("GET", &img.layer_digests[1]).len(), 3);
    for l in &img.layer_digests {
        assert_same_blob(&a, &b, l);
    }
}

#[tokio::test]
async fn retries_end_with_the_registry_error() {
    let Some((_reg, proxy, _img, _a_dir, _a)) = setup(32).await else {
        return;
    };
    proxy.add("GET", "/manifests/", Fault::Status(500, vec![]), 100);
    let (_b_dir, b) = new_store();
    let err = client(Duration::from_secs(30))
        .pull(&through(&proxy), &b)
        .await
        .unwrap_err();
    // The first attempt and 3 retries.
    assert_eq!(proxy.seen("GET", "/manifests/").len(), 4);
    let msg = err.to_string();
    assert!(msg.contains(&proxy.host()) && msg.contains("500"), "{msg}");
}

#[tokio::test]
async fn a_429_waits_for_retry_after() {
    let Some((_reg, proxy, img, _a_dir, a)) = setup(33).await else {
        return;
    };
    let blob = &img.layer_digests[0];
    proxy.add(
        "GET",
        blob,
        Fault::Status(429, vec![("Retry-After".into(), "1".into())]),
        1,
    );
    let (_b_dir, b) = new_store();
    client(Duration::from_secs(30))
        .pull(&through(&proxy), &b)
        .await
        .unwrap();
    let gets = proxy.seen("GET", blob);
    assert_eq!(gets.len(), 2);
    let waited = gets[1].at - gets[0].at;
    // The backoff alone would be 10 ms at most.
    assert!(waited >= Duration::from_millis(950), "waited {waited:?}");
    assert_same_blob(&a, &b, blob);
}

#[tokio::test]
async fn a_dropped_blob_download_resumes_with_a_range_request() {
    let Some((_reg, proxy, img, _a_dir, a)) = setup(34).await else {
        return;
    };
    let blob = &img.layer_digests[1]; // ~5 MiB
    proxy.add("GET", blob, Fault::DropAfter(1_000_000), 1);
    let (_b_dir, b) = new_store();
    client(Duration::from_secs(30))
        .pull(&through(&proxy), &b)
        .await
        .unwrap();
    let gets = proxy.seen("GET", blob);
    assert_eq!(gets.len(), 2, "{gets:?}");
    assert_eq!(gets[0].range, None);
    assert_eq!(gets[1].range.as_deref(), Some("bytes=1000000-"));
    assert_same_blob(&a, &b, blob);
}

#[tokio::test]
async fn a_registry_ignoring_range_is_read_again_from_the_start() {
    let Some((_reg, proxy, img, _a_dir, a)) = setup(35).await else {
        return;
    };
    let blob = &img.layer_digests[1];
    proxy.add("GET", blob, Fault::DropAfter(700_000), 1);
    proxy.add("GET", blob, Fault::IgnoreRange, 1);
    let (_b_dir, b) = new_store();
    client(Duration::from_secs(30))
        .pull(&through(&proxy), &b)
        .await
        .unwrap();
    let gets = proxy.seen("GET", blob);
    assert_eq!(gets.len(), 2, "{gets:?}");
    assert_eq!(gets[1].range.as_deref(), Some("bytes=700000-"));
    assert_same_blob(&a, &b, blob);
}

#[tokio::test]
async fn a_download_that_keeps_breaking_fails_naming_the_registry() {
    let Some((_reg, proxy, img, _a_dir, _a)) = setup(36).await else {
        return;
    };
    let blob = &img.layer_digests[1];
    proxy.add("GET", blob, Fault::DropAfter(100_000), 100);
    let (_b_dir, b) = new_store();
    let err = client(Duration::from_secs(30))
        .pull(&through(&proxy), &b)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Unreachable { .. }), "{err:?}");
    assert!(err.to_string().contains(&proxy.host()), "{err}");
    assert!(!b.has_blob(blob));
    assert_eq!(proxy.seen("GET", blob).len(), 4);
}

#[tokio::test]
async fn a_stalled_body_fails_after_the_stall_timeout() {
    let Some((_reg, proxy, img, _a_dir, _a)) = setup(37).await else {
        return;
    };
    let blob = &img.layer_digests[1];
    proxy.add("GET", blob, Fault::StallAfter(200_000), 100);
    let (_b_dir, b) = new_store();
    let start = Instant::now();
    let err = client(Duration::from_millis(500))
        .pull(&through(&proxy), &b)
        .await
        .unwrap_err();
    let took = start.elapsed();
    let msg = err.to_string();
    assert!(
        msg.contains(&proxy.host()) && msg.contains("stall-timeout"),
        "{msg}"
    );
    // A stall is not retried: one request, given up on after the stall timeout (not the
    // 300 s it used to take).
    assert_eq!(proxy.seen("GET", blob).len(), 1);
    assert!(took >= Duration::from_millis(500), "{took:?}");
    assert!(took < Duration::from_secs(30), "{took:?}");
    assert!(!b.has_blob(blob));
}

#[tokio::test]
async fn a_silent_registry_fails_after_the_stall_timeout() {
    let Some((_reg, proxy, _img, _a_dir, _a)) = setup(38).await else {
        return;
    };
    proxy.add("GET", "/manifests/", Fault::Silent, 100);
    let (_b_dir, b) = new_store();
    let start = Instant::now();
    let err = client(Duration::from_millis(500))
        .resolve(&through(&proxy), &b)
        .await
        .unwrap_err();
    let took = start.elapsed();
    let msg = err.to_string();
    assert!(
        msg.contains(&proxy.host()) && msg.contains("stall-timeout"),
        "{msg}"
    );
    assert_eq!(proxy.seen("GET", "/manifests/").len(), 1);
    assert!(took < Duration::from_secs(30), "{took:?}");
}

#[tokio::test]
async fn a_failed_blob_upload_starts_over() {
    let Some(reg) = Registry::start() else { return };
    let proxy = Proxy::start(reg.host()).await;
    let (_a_dir, a) = new_store();
    let img = make_image(&a, 39, false);
    // The first upload of the big layer fails: its session is given up and a new one made.
    // (The upload's URL carries the digest with `:` escaped: match on the hex.)
    let hex = &img.layer_digests[1]["sha256:".len()..];
    proxy.add("PUT", hex, Fault::Status(500, vec![]), 1);
    proxy.add("GET", "/manifests/", Fault::Status(502, vec![]), 1);
    proxy.add("PUT", "/manifests/", Fault::Status(503, vec![]), 1);
    let r = through(&proxy);
    let c = client(Duration::from_secs(30));
    c.push(&a, &img.manifest_digest, &r).await.unwrap();
    assert_eq!(proxy.seen("PUT", hex).len(), 2);
    // One session per blob (config and two layers) and one more for the retry.
    assert_eq!(proxy.seen("POST", "/blobs/uploads/").len(), 4);
    assert_eq!(proxy.seen("PUT", "/manifests/").len(), 2);
    let (_b_dir, b) = new_store();
    let pulled = c.pull(&r, &b).await.unwrap();
    assert_eq!(pulled.manifest_digest, img.manifest_digest);
    assert_same_blob(&a, &b, &img.layer_digests[1]);
}
