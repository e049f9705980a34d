//! Unit tests of the client's pure parts (no registry needed).

use crate::blob::content_range;
use crate::client::retry_after;
use crate::manifest::{manifest_media_type, pick_platform};
use crate::{is_loopback, Client, HostConfig, RegistryConfig, RetryConfig};
use reqwest::header::HeaderValue;
use std::collections::BTreeMap;
use std::time::Duration;

#[test]
fn loopback_detection() {
    for h in [
        "127.0.0.1",
        "127.0.0.1:5000",
        "127.1.2.3:80",
        "localhost",
        "LOCALHOST:5000",
        "[::1]",
        "[::1]:5000",
        "::1",
    ] {
        assert!(is_loopback(h), "{h}");
    }
    for h in [
        "docker.io",
        "10.0.0.1:5000",
        "example.com:443",
        "[2001:db8::1]:5000",
        "localhost.example.com",
    ] {
        assert!(!is_loopback(h), "{h}");
    }
}

#[test]
fn endpoint_choice() {
    let mut hosts = BTreeMap::new();
    hosts.insert(
        "docker.io".to_string(),
        HostConfig {
            http: None,
            mirrors: vec!["mirror.local:5000".into(), "127.0.0.1:6000".into()],
        },
    );
    hosts.insert(
        "mirror.local:5000".to_string(),
        HostConfig {
            http: Some(true),
            mirrors: vec![],
        },
    );
    hosts.insert(
        "insecure.example".to_string(),
        HostConfig {
            http: Some(true),
            mirrors: vec![],
        },
    );
    hosts.insert(
        "127.0.0.1:7000".to_string(),
        HostConfig {
            http: Some(false),
            mirrors: vec![],
        },
    );
    let c = Client::new(RegistryConfig {
        hosts,
        docker_config: None,
        ..Default::default()
    });
    let urls = |r: &str, m: bool| -> Vec<String> {
        c.endpoints(r, m)
            .iter()
            .map(|e| e.base.to_string())
            .collect()
    };
    assert_eq!(
        urls("docker.io", true),
        [
            "http://mirror.local:5000/",
            "http://127.0.0.1:6000/",
            "https://registry-1.docker.io/"
        ]
    );
    assert_eq!(urls("docker.io", false), ["https://registry-1.docker.io/"]);
    assert_eq!(urls("quay.io", true), ["https://quay.io/"]);
    assert_eq!(urls("insecure.example", true), ["http://insecure.example/"]);
    assert_eq!(urls("localhost:5000", true), ["http://localhost:5000/"]);
    assert_eq!(urls("[::1]:5000", true), ["http://[::1]:5000/"]);
    assert_eq!(urls("127.0.0.1:7000", true), ["https://127.0.0.1:7000/"]);
}

#[test]
fn index_platform_choice() {
    let idx: serde_json::Value = serde_json::json!({
        "manifests": [
            {"digest": "sha256:arm", "platform": {"os": "linux", "architecture": "arm64"}},
            {"digest": "sha256:v3", "platform": {"os": "linux", "architecture": "amd64", "variant": "v3"}},
            {"digest": "sha256:amd", "platform": {"os": "linux", "architecture": "amd64"}},
            {"digest": "sha256:att", "platform": {"os": "unknown", "architecture": "unknown"}}
        ]
    });
    assert_eq!(pick_platform(&idx).as_deref(), Some("sha256:amd"));
    let idx = serde_json::json!({"manifests": [{"digest": "sha256:arm", "platform": {"os": "linux", "architecture": "arm64"}}]});
    assert_eq!(pick_platform(&idx), None);
}

#[test]
fn retry_after_and_content_range_parsing() {
    use reqwest::header::{HeaderMap, CONTENT_RANGE, RETRY_AFTER};
    let h = |k, v: &str| {
        let mut m = HeaderMap::new();
        m.insert(k, HeaderValue::from_str(v).unwrap());
        m
    };
    assert_eq!(
        retry_after(&h(RETRY_AFTER, "7")),
        Some(Duration::from_secs(7))
    );
    let later = std::time::SystemTime::now() + Duration::from_mins(2);
    let d = retry_after(&h(RETRY_AFTER, &httpdate::fmt_http_date(later))).unwrap();
    assert!(
        d > Duration::from_secs(100) && d <= Duration::from_mins(2),
        "{d:?}"
    );
    assert_eq!(
        retry_after(&h(RETRY_AFTER, "Wed, 21 Oct 2015 07:28:00 GMT")),
        Some(Duration::ZERO)
    );
    assert_eq!(retry_after(&h(RETRY_AFTER, "soon")), None);
    assert_eq!(retry_after(&HeaderMap::new()), None);

    assert_eq!(
        content_range(&h(CONTENT_RANGE, "bytes 100-199/200")),
        Some((100, Some(200)))
    );
    assert_eq!(
        content_range(&h(CONTENT_RANGE, "bytes 5-9/*")),
        Some((5, None))
    );
    for bad in ["bytes */200", "bytes 9-5/200", "items 0-1/2", "bytes 0-x/2"] {
        assert_eq!(content_range(&h(CONTENT_RANGE, bad)), None, "{bad}");
    }
}

#[test]
fn backoff_doubles_within_its_cap() {
    let rc = RetryConfig {
        retries: 10,
        base_delay: Duration::from_millis(100),
        max_delay: Duration::from_secs(1),
    };
    for (n, full) in [
        (0, 100),
        (1, 200),
        (2, 400),
        (3, 800),
        (4, 1000),
        (30, 1000),
    ] {
        let d = rc.backoff(n);
        let full = Duration::from_millis(full);
        assert!(d >= full / 2 && d <= full, "attempt {n}: {d:?}");
    }
}

#[test]
fn media_type_detection() {
    let m = serde_json::json!({"schemaVersion": 2, "mediaType": kiln_oci::media::DOCKER_MANIFEST});
    assert_eq!(
        manifest_media_type(&m, Some(kiln_oci::media::OCI_MANIFEST)),
        kiln_oci::media::DOCKER_MANIFEST
    );
    let m = serde_json::json!({"schemaVersion": 2, "manifests": []});
    assert_eq!(manifest_media_type(&m, None), kiln_oci::media::OCI_INDEX);
    assert_eq!(
        manifest_media_type(
            &m,
            Some("application/vnd.docker.distribution.manifest.list.v2+json; charset=utf-8")
        ),
        kiln_oci::media::DOCKER_LIST
    );
}

#[test]
fn login_servers_name_their_host_and_auths_key() {
    let hub = Some((
        "docker.io".to_string(),
        "https://index.docker.io/v1/".to_string(),
    ));
    assert_eq!(crate::login_server(None), hub);
    assert_eq!(crate::login_server(Some("  ")), hub);
    assert_eq!(crate::login_server(Some("index.docker.io")), hub);
    assert_eq!(
        crate::login_server(Some("https://127.0.0.1:5000/v2/")),
        Some(("127.0.0.1:5000".to_string(), "127.0.0.1:5000".to_string()))
    );
    assert_eq!(crate::login_server(Some("https://")), None);
}
