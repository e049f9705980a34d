//! Tells the integration tests which cgroup hierarchies this host offers for resource limits,
//! so that the tests a host cannot run are marked ignored (reported as such by `cargo test`)
//! instead of passing without running; see `kiln-testutil`. `kiln_v1_limits`: the pids,
//! memory and cpu v1 hierarchies are mounted; `kiln_v2_limits`: this process's cgroup2 cgroup
//! offers the pids, memory and cpu controllers. Nothing in the library depends on these.

use std::path::{Path, PathBuf};

const CONTROLLERS: [&str; 3] = ["pids", "memory", "cpu"];

fn main() {
    println!("cargo::rustc-check-cfg=cfg(kiln_v1_limits)");
    println!("cargo::rustc-check-cfg=cfg(kiln_v2_limits)");
    println!("cargo::rerun-if-changed=build.rs");
    if CONTROLLERS
        .iter()
        .all(|c| Path::new("/sys/fs/cgroup").join(c).join("tasks").exists())
    {
        println!("cargo::rustc-cfg=kiln_v1_limits");
    }
    let offered = own_v2_cgroup()
        .and_then(|p| std::fs::read_to_string(p.join("cgroup.controllers")).ok())
        .unwrap_or_default();
    if CONTROLLERS
        .iter()
        .all(|c| offered.split_whitespace().any(|o| o == *c))
    {
        println!("cargo::rustc-cfg=kiln_v2_limits");
    }
}

/// This process's cgroup in the cgroup2 hierarchy, when one is mounted.
fn own_v2_cgroup() -> Option<PathBuf> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let (root, point) = mountinfo.lines().find_map(|l| {
        let (pre, post) = l.split_once(" - ")?;
        if !post.starts_with("cgroup2 ") {
            return None;
        }
        let f: Vec<&str> = pre.split(' ').collect();
        Some((f.get(3)?.to_string(), PathBuf::from(f.get(4)?)))
    })?;
    let own = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let path = own.lines().find_map(|l| l.strip_prefix("0::"))?;
    let rel = path
        .strip_prefix(root.trim_end_matches('/'))
        .unwrap_or(path)
        .trim_start_matches('/');
    Some(point.join(rel))
}
