//! The namespaces, bridge and veths of a network, as root, all inside a network namespace
//! this test makes (the host's is never touched): two containers on one network reach each
//! other over TCP, a third on another network cannot, and removing everything leaves no
//! namespace behind. Skipped with a message without root.

use kiln_network::{attach, detach, CreateOptions, Networks};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

/// Runs `f` on a thread in `ns`'s network namespace.
fn in_ns<T: Send>(ns: &Path, f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| {
        s.spawn(|| {
            let fd = std::fs::File::open(ns).unwrap();
            // SAFETY: our fd; this thread only.
            assert_eq!(
                unsafe { libc::setns(std::os::fd::AsRawFd::as_raw_fd(&fd), libc::CLONE_NEWNET) },
                0
            );
            f()
        })
        .join()
        .unwrap()
    })
}

fn connects(from: &Path, to: SocketAddr) -> bool {
    in_ns(from, || {
        TcpStream::connect_timeout(&to, Duration::from_millis(500)).is_ok_and(|mut s| {
            let mut b = [0u8; 2];
            s.write_all(b"hi").is_ok() && s.read_exact(&mut b).is_ok() && &b == b"ok"
        })
    })
}

fn nsfs_mounts_under(dir: &Path) -> usize {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter(|l| l.contains(dir.to_str().unwrap()))
        .count()
}

#[test]
fn containers_on_one_network_connect_others_cannot_and_nothing_is_left() {
    if !kiln_testutil::require_root("network namespaces") {
        return;
    }
    // Everything below on a thread in a namespace of the test's own; threads it starts
    // inherit it.
    std::thread::spawn(|| {
        // SAFETY: this thread only.
        assert_eq!(unsafe { libc::unshare(libc::CLONE_NEWNET) }, 0);
        let host_links = std::fs::read_to_string("/proc/self/net/dev").unwrap();
        let dir = tempfile::tempdir().unwrap();
        let s = Networks::new(dir.path());
        s.create("a", &CreateOptions::default()).unwrap();
        s.create("b", &CreateOptions::default()).unwrap();
        let mut eps = Vec::new();
        for (net, c) in [("a", "c1"), ("a", "c2"), ("b", "c3")] {
            let id = format!("{c}{}", "0".repeat(62));
            s.connect(net, &id, c, &[], None).unwrap();
            let t = Instant::now();
            attach(&s, &id, &s.of_container(&id).unwrap(), None).unwrap();
            eprintln!("attach {c}: {:?}", t.elapsed());
            eps.push((id.clone(), s.of_container(&id).unwrap()[0].1.ip));
        }
        let server_ns = s.sandbox_path(&eps[1].0);
        let addr = SocketAddr::from((eps[1].1, 8080));
        let listener = in_ns(&server_ns, || TcpListener::bind(addr).unwrap());
        let server = std::thread::spawn(move || {
            for mut c in listener.incoming().flatten() {
                let mut b = [0u8; 2];
                if c.read_exact(&mut b).is_ok() {
                    let _ = c.write_all(b"ok");
                }
            }
        });
        assert!(
            connects(&s.sandbox_path(&eps[0].0), addr),
            "c1 -> c2 on network a"
        );
        assert!(
            !connects(&s.sandbox_path(&eps[2].0), addr),
            "c3 on b reaches c2 on a"
        );
        // The thread's own namespace is what it was.
        assert_eq!(
            std::fs::read_to_string("/proc/self/net/dev").unwrap(),
            host_links
        );
        for (id, _) in &eps {
            detach(&s, id).unwrap();
            s.disconnect(None, id).unwrap();
        }
        s.remove("a").unwrap();
        s.remove("b").unwrap();
        assert_eq!(nsfs_mounts_under(dir.path()), 0);
        drop(server);
    })
    .join()
    .unwrap();
}
