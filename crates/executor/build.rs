//! Tells the integration tests which cgroup hierarchies this host offers for resource limits,
//! so that the tests a host cannot run are marked ignored (reported as such by `cargo test`)
//! instead of passing without running; see `kiln-testutil`. `kiln_v1_limits`: the pids,
//! memory and cpu v1 hierarchies are mounted; `kiln_v2_limits`: this process's cgroup2 cgroup
//! offers the pids, memory and cpu controllers. Nothing in the library depends on these.

use std::path::Path;

const CONTROLLERS: [&str; 3] = ["pids", "memory", "cpu"];

fn main() {
    println!("cargo::rustc-check-cfg=cfg(kiln_v1_limits)");
    println!("cargo::rustc-check-cfg=cfg(kiln_v2_limits)");
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-changed=cgroup_probe.rs");
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

include!("cgroup_probe.rs");
