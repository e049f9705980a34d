//! `kiln version` and `kiln info`: docker's layout of [`kiln_runtime::system::info`]'s
//! facts (the Server section is this same process: kiln has no daemon).

use crate::util::{Env, Failure};
use clap::Args;
use kiln_runtime::system::info::{Info, VersionInfo};

#[derive(Args)]
pub(crate) struct VersionArgs {}

#[derive(Args)]
pub(crate) struct InfoArgs {}

pub(crate) fn version(_a: &VersionArgs) -> u8 {
    for line in version_lines(&kiln_runtime::system::info::version()) {
        println!("{line}");
    }
    0
}

pub(crate) fn info(env: &Env, _a: &InfoArgs) -> Result<u8, Failure> {
    let i = kiln_runtime::system::info::info(&env.store)?;
    for line in info_lines(&i) {
        println!("{line}");
    }
    Ok(0)
}

fn version_lines(v: &VersionInfo) -> Vec<String> {
    let (c, s) = (&v.client, &v.server);
    let mut out = vec![
        format!("Client: {}", c.platform.name),
        format!(" {:<18} {}", "Version:", c.version),
        format!(" {:<18} {}/{}", "OS/Arch:", c.os, c.arch),
        String::new(),
        format!("Server: {}", s.platform.name),
    ];
    for comp in &s.components {
        out.push(format!(" {}:", comp.name));
        out.push(format!("  {:<17} {}", "Version:", comp.version));
        out.push(format!("  {:<17} {}/{}", "OS/Arch:", s.os, s.arch));
    }
    out
}

fn info_lines(i: &Info) -> Vec<String> {
    vec![
        "Client:".into(),
        format!(" Version:    {}", i.server_version),
        String::new(),
        "Server:".into(),
        format!(" Containers: {}", i.containers),
        format!("  Running: {}", i.containers_running),
        format!("  Paused: {}", i.containers_paused),
        format!("  Stopped: {}", i.containers_stopped),
        format!(" Images: {}", i.images),
        format!(" Server Version: {}", i.server_version),
        format!(" Storage Driver: {}", i.driver),
        format!(" Logging Driver: {}", i.logging_driver),
        format!(" Cgroup Driver: {}", i.cgroup_driver),
        format!(" Cgroup Version: {}", i.cgroup_version),
        format!(" Kernel Version: {}", i.kernel_version),
        format!(" Operating System: {}", i.operating_system),
        format!(" OSType: {}", i.os_type),
        format!(" Architecture: {}", i.architecture),
        format!(" CPUs: {}", i.ncpu),
        format!(" Total Memory: {}", kiln_units::human_binary(i.mem_total)),
        format!(" Name: {}", i.name),
        format!(" Docker Root Dir: {}", i.docker_root_dir),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_reads_as_dockers() {
        let i = Info {
            containers: 3,
            containers_running: 1,
            containers_paused: 0,
            containers_stopped: 2,
            images: 5,
            driver: "overlayfs".into(),
            logging_driver: "json-file".into(),
            cgroup_driver: "cgroupfs".into(),
            cgroup_version: "2".into(),
            kernel_version: "6.1.0".into(),
            operating_system: "Debian GNU/Linux 12 (bookworm)".into(),
            os_version: "12".into(),
            os_type: "linux".into(),
            architecture: "x86_64".into(),
            ncpu: 2,
            mem_total: 16 << 30,
            name: "h".into(),
            docker_root_dir: "/var/lib/kiln".into(),
            server_version: "0.1.0".into(),
        };
        let text = info_lines(&i).join("\n");
        for want in [
            "\nServer:\n Containers: 3\n  Running: 1\n  Paused: 0\n  Stopped: 2\n Images: 5\n",
            "\n Total Memory: 16GiB\n",
            "\n Docker Root Dir: /var/lib/kiln",
            "\n Cgroup Version: 2\n",
        ] {
            assert!(text.contains(want), "{want:?} in\n{text}");
        }
    }
}
