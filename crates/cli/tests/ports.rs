//! Published ports (`kiln run -p`) through the real `kiln` binary: a TCP and a UDP server in
//! a detached container reached from the host through pasta, `kiln port`, `kiln ps`'s PORTS
//! column, and usage errors. Needs root, Debian's busybox-static and pasta (Debian's passt);
//! skipped with a message otherwise.

mod common;
use common::*;
use std::io::Read;
use std::time::{Duration, Instant};

/// A free host port of `127.0.0.1` (bound, then released).
fn free_tcp_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A state directory with the busybox base image, or `None` (with a message) when the test
/// cannot run here.
fn setup() -> Option<Kiln> {
    if !can_run(&["pasta"]) {
        return None;
    }
    let k = Kiln::new();
    k.seed_local_base();
    Some(k)
}

struct Removed<'a>(&'a Kiln, String);
impl Drop for Removed<'_> {
    fn drop(&mut self) {
        let _ = self.0.run(&["rm", "-f", &self.1]);
    }
}

/// Connects to `127.0.0.1:port` until the server in the container answers; returns what it
/// sent.
fn read_from(port: u16) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut got = String::new();
            let _ = s.read_to_string(&mut got);
            if !got.is_empty() {
                return got;
            }
        }
        assert!(Instant::now() < deadline, "nothing answered on port {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_published_tcp_port_reaches_the_container_and_port_and_ps_show_it() {
    let Some(k) = setup() else { return };
    let port = free_tcp_port();
    let publish = format!("127.0.0.1:{port}:8080");
    let id = k
        .ok(&[
            "run",
            "-d",
            "--name",
            "web",
            "-p",
            &publish,
            "busybox",
            "sh",
            "-c",
            "while true; do echo hello | nc -l -p 8080; done",
        ])
        .trim()
        .to_string();
    let _rm = Removed(&k, id.clone());
    assert_eq!(read_from(port).trim(), "hello");
    assert_eq!(
        k.ok(&["port", "web"]),
        format!("8080/tcp -> 127.0.0.1:{port}\n")
    );
    assert_eq!(
        k.ok(&["port", "web", "8080/tcp"]),
        format!("127.0.0.1:{port}\n")
    );
    let missing = k.run(&["port", "web", "81"]);
    assert_eq!(missing.status.code(), Some(1), "{}", stderr(&missing));
    let ps = k.ok(&["ps"]);
    let header = ps.lines().next().unwrap();
    let (ports, names) = (header.find("PORTS").unwrap(), header.find("NAMES").unwrap());
    let row = ps.lines().nth(1).expect("the container's row");
    assert_eq!(
        row[ports..names].trim(),
        format!("127.0.0.1:{port}->8080/tcp"),
        "{ps}"
    );
    k.ok(&["stop", "-t", "1", "web"]);
    k.ok(&["rm", "web"]);
}

/// The base image's busybox has no UDP server (its nc lacks -u), so this checks that pasta
/// holds the published UDP port on the host and that `kiln port` shows it.
#[test]
fn a_published_udp_port_is_bound_on_the_host() {
    let Some(k) = setup() else { return };
    let port = free_udp_port();
    let publish = format!("127.0.0.1:{port}:5353/udp");
    let id = k
        .ok(&["run", "-d", "-p", &publish, "busybox", "sleep", "1000"])
        .trim()
        .to_string();
    let _rm = Removed(&k, id.clone());
    assert_eq!(
        k.ok(&["port", &id]),
        format!("5353/udp -> 127.0.0.1:{port}\n")
    );
    let bound = std::net::UdpSocket::bind(("127.0.0.1", port));
    assert_eq!(
        bound.map(|_| ()).map_err(|e| e.kind()),
        Err(std::io::ErrorKind::AddrInUse),
        "pasta listens on the published UDP port"
    );
}

#[test]
fn a_host_port_in_use_fails_the_run() {
    let Some(k) = setup() else { return };
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let publish = format!("127.0.0.1:{port}:80");
    let out = k.run(&["run", "--rm", "-p", &publish, "busybox", "true"]);
    assert_eq!(out.status.code(), Some(125), "{}", stderr(&out));
}

#[test]
fn run_d_on_a_host_port_in_use_exits_125_and_leaves_nothing() {
    let Some(k) = setup() else { return };
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let publish = format!("127.0.0.1:{port}:80");
    let out = k.run(&["run", "-d", "-p", &publish, "busybox", "sleep", "60"]);
    if out.status.success() {
        let _ = k.run(&["rm", "-f", stdout(&out).trim()]);
    }
    assert_eq!(out.status.code(), Some(125), "{}", stderr(&out));
    assert_eq!(stdout(&out), "", "no id is printed");
    assert!(
        stderr(&out).contains(&format!("{port}")),
        "the error names the port: {}",
        stderr(&out)
    );
    assert_eq!(k.ok(&["ps", "-aq"]), "", "no container is left");
}

#[test]
fn bad_publish_specs_are_usage_errors() {
    let k = Kiln::new();
    for spec in [
        "0:80",
        "8080:70000",
        "8080:80/sctp",
        "x:80",
        "nothere:8080:80",
        "8000-8002:80-81",
    ] {
        let out = k.run(&["run", "-p", spec, "busybox", "true"]);
        assert_eq!(out.status.code(), Some(2), "{spec}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("invalid publish spec"),
            "{spec}: {}",
            stderr(&out)
        );
    }
}

#[test]
fn restart_keeps_the_published_ports() {
    let Some(k) = setup() else { return };
    let port = free_tcp_port();
    let publish = format!("127.0.0.1:{port}:8080");
    let id = k
        .ok(&[
            "run",
            "-d",
            "-p",
            &publish,
            "busybox",
            "sh",
            "-c",
            "while true; do echo hello | nc -l -p 8080; done",
        ])
        .trim()
        .to_string();
    let _rm = Removed(&k, id.clone());
    let before = k.ok(&["port", &id]);
    assert_eq!(read_from(port), "hello\n");
    assert_eq!(k.ok(&["restart", "-t", "1", &id]).trim(), id);
    assert_eq!(k.ok(&["port", &id]), before);
    assert_eq!(read_from(port), "hello\n");
    k.ok(&["stop", "-t", "1", &id]);
    k.ok(&["start", &id]);
    assert_eq!(read_from(port), "hello\n");
}
