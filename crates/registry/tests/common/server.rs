//! A throwaway `docker-registry` (the reference distribution server) on a free loopback port,
//! optionally with htpasswd (Basic) auth.
//!
//! Shared by the registry crate's tests and the `kiln` CLI's tests (which include this file
//! with `#[path]`), so it uses only `std` and `tempfile`.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub(crate) const REGISTRY_BIN: &str = "/usr/bin/docker-registry";

/// `user:password` accepted by [`Registry::start_with_auth`].
pub(crate) const USER: &str = "kiln";
pub(crate) const PASSWORD: &str = "kiln-secret";
/// bcrypt (cost 4) of [`PASSWORD`], made with python3's `crypt` so the test needs no tool.
const PASSWORD_BCRYPT: &str = "$2b$04$WSMAMqWQsv3zAGQHdGuM6uIjpsXhKHMz7Lp8odsqJnXcbK/bFo1xK";

pub(crate) struct Registry {
    child: Child,
    pub port: u16,
    pub dir: tempfile::TempDir,
}

/// A port nobody listens on (bound, read, released).
pub(crate) fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().unwrap().port()
}

impl Registry {
    /// `None` (after printing why) when the binary is not installed.
    pub(crate) fn start() -> Option<Registry> {
        Self::start_inner(false)
    }

    /// With htpasswd (Basic) auth for [`USER`]/[`PASSWORD`].
    pub(crate) fn start_with_auth() -> Option<Registry> {
        Self::start_inner(true)
    }

    fn start_inner(auth: bool) -> Option<Registry> {
        if !Path::new(REGISTRY_BIN).exists() {
            kiln_testutil::skip(format_args!(
                "docker-registry not installed ({REGISTRY_BIN} missing)"
            ));
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
            assert!(
                Instant::now() <= deadline,
                "docker-registry did not answer on port {port}:\n{}",
                reg.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub(crate) fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    /// How many requests with this method and a path containing `path_part` the access log
    /// shows.
    pub(crate) fn count_requests(&self, method: &str, path_part: &str) -> usize {
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
