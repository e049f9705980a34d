//! A throwaway `docker-registry` (the reference distribution server) on a free loopback port.

#![allow(dead_code)]

use kiln_cache::Store;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const REGISTRY_BIN: &str = "/usr/bin/docker-registry";

/// `user:password` accepted by [`Registry::start_with_auth`].
pub const USER: &str = "kiln";
pub const PASSWORD: &str = "kiln-secret";
/// bcrypt (cost 4) of [`PASSWORD`], made with python3's `crypt` so the test needs no tool.
const PASSWORD_BCRYPT: &str = "$2b$04$WSMAMqWQsv3zAGQHdGuM6uIjpsXhKHMz7Lp8odsqJnXcbK/bFo1xK";

pub struct Registry {
    child: Child,
    pub port: u16,
    pub dir: tempfile::TempDir,
}

/// A port nobody listens on (bound, read, released).
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().unwrap().port()
}

impl Registry {
    /// `None` (after printing why) when the binary is not installed.
    pub fn start() -> Option<Registry> {
        Self::start_inner(false)
    }

    /// With htpasswd (Basic) auth for [`USER`]/[`PASSWORD`].
    pub fn start_with_auth() -> Option<Registry> {
        Self::start_inner(true)
    }

    fn start_inner(auth: bool) -> Option<Registry> {
        if !Path::new(REGISTRY_BIN).exists() {
            // Straight to stderr: the test harness would swallow `eprintln!`.
            let _ = writeln!(
                std::io::stderr().lock(),
                "skipped: docker-registry not installed ({REGISTRY_BIN} missing)"
            );
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let mut cfg = format!(
            "version: 0.1\nlog:\n  level: info\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n",
            dir.path().join("data").display()
        );
        if auth {
            let htpasswd = dir.path().join("htpasswd");
            std::fs::write(&htpasswd, format!("{USER}:{PASSWORD_BCRYPT}\n")).unwrap();
            cfg.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: kiln-test\n    path: {}\n",
                htpasswd.display()
            ));
        }
        let cfg_path = dir.path().join("config.yml");
        std::fs::write(&cfg_path, cfg).unwrap();
        let log = std::fs::File::create(dir.path().join("registry.log")).unwrap();
        let child = Command::new(REGISTRY_BIN)
            .arg("serve")
            .arg(&cfg_path)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start docker-registry");
        let mut reg = Registry { child, port, dir };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = get_status(port, "/v2/") {
                if status == 200 || status == 401 {
                    return Some(reg);
                }
            }
            if let Ok(Some(exit)) = reg.child.try_wait() {
                panic!("docker-registry exited ({exit}):\n{}", reg.log());
            }
            if Instant::now() > deadline {
                panic!(
                    "docker-registry did not answer on port {port}:\n{}",
                    reg.log()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    /// How many requests with this method and a path containing `path_part` the access log
    /// shows.
    pub fn count_requests(&self, method: &str, path_part: &str) -> usize {
        let needle = format!("\"{method} ");
        self.log()
            .lines()
            .filter(|l| l.contains(&needle) && l.contains(path_part))
            .count()
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The status code of a plain HTTP/1.0 GET, `None` when nothing answers.
fn get_status(port: u16, path: &str) -> Option<u16> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut buf = [0u8; 64];
    let n = s.read(&mut buf).ok()?;
    let head = std::str::from_utf8(&buf[..n]).ok()?;
    head.split_whitespace().nth(1)?.parse().ok()
}

/// A new empty store in its own temp dir.
pub fn new_store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("root")).unwrap();
    (dir, store)
}

/// An image put together in `store`; blob digests for checks.
pub struct TestImage {
    pub manifest_digest: String,
    pub config_digest: String,
    pub layer_digests: Vec<String>,
}

/// Writes a config blob, two layer blobs (one small, one of several MiB, streamed through a
/// `BlobWriter`) and a manifest of `manifest_media_type` (OCI or Docker schema 2; the
/// blobs' media types follow) into `store`.
pub fn make_image(store: &Store, seed: u8, docker: bool) -> TestImage {
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
        for b in chunk.iter_mut() {
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
pub fn make_index(store: &Store, amd64: &str, arm64: &str, docker: bool) -> String {
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
pub fn assert_same_blob(a: &Store, b: &Store, digest: &str) {
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
pub fn docker_config(dir: &Path, host: &str, user: &str, password: &str) -> PathBuf {
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
