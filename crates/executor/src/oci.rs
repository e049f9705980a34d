//! [`crate::Executor::with_runtime`]: the same sandbox through an external OCI runtime.
//!
//! The helper unshares a mount namespace, mounts the overlay rootfs (as for its own
//! sandboxes), writes an OCI bundle (`config.json` built with `oci-spec`: Docker's
//! capabilities, masked and read-only paths, the seccomp profile of `seccomp.rs`, the limits
//! in `linux.resources` under the cgroup `/kiln/<id>`, tmpfs and bind mounts, the resolved
//! user) into a temporary directory and runs `RUNTIME run --bundle DIR ID` in that mount
//! namespace, forwarding signals to it; its exit code is the container's. `/etc/hosts` & co.
//! are not generated, [`crate::Network::Default`] is refused and OOM kills are not reported
//! on this path.

use crate::devices::DeviceRule;
use crate::report::{exit, fail, OrFail};
use crate::sandbox::process::{process_env, resolve_user_in, UserError};
use crate::signals;
use crate::spec::{Network, RunSpec};
use oci_spec::runtime::{
    Arch, Capability, LinuxBuilder, LinuxCpuBuilder, LinuxDeviceBuilder, LinuxDeviceCgroupBuilder,
    LinuxDeviceType, LinuxMemoryBuilder, LinuxNamespaceType, LinuxPidsBuilder,
    LinuxResourcesBuilder, LinuxSeccompAction, LinuxSeccompArgBuilder, LinuxSeccompBuilder,
    LinuxSeccompOperator, LinuxSyscall, LinuxSyscallBuilder, Mount, MountBuilder, ProcessBuilder,
    RootBuilder, Spec, UserBuilder,
};
use std::collections::HashSet;
use std::path::Path;

/// The capabilities of the process: docker's default set as `--cap-add`/`--cap-drop` change it.
fn caps(privileged: bool, opts: &crate::ProcessOptions) -> HashSet<Capability> {
    let last = crate::security::last_cap();
    crate::security::capability_set(privileged, &opts.cap_add, &opts.cap_drop, last)
        .into_iter()
        .filter_map(|n| crate::security::CAP_NAMES.get(n as usize))
        .filter_map(|n| serde_json::from_value(serde_json::Value::String(format!("CAP_{n}"))).ok())
        .collect()
}

fn seccomp() -> Result<oci_spec::runtime::LinuxSeccomp, oci_spec::OciSpecError> {
    let arg = |index: usize, op, value: u64| {
        LinuxSeccompArgBuilder::default()
            .index(index)
            .op(op)
            .value(value)
            .build()
    };
    let allow = |names: Vec<String>, args: Vec<oci_spec::runtime::LinuxSeccompArg>| {
        let b = LinuxSyscallBuilder::default()
            .names(names)
            .action(LinuxSeccompAction::ScmpActAllow);
        if args.is_empty() {
            b.build()
        } else {
            b.args(args).build()
        }
    };
    let mut syscalls: Vec<LinuxSyscall> = vec![allow(
        crate::seccomp::allowed_names()
            .map(str::to_string)
            .collect(),
        vec![],
    )?];
    syscalls.push(allow(
        vec!["socket".into()],
        vec![arg(
            0,
            LinuxSeccompOperator::ScmpCmpNe,
            crate::seccomp::AF_VSOCK,
        )?],
    )?);
    for &p in crate::seccomp::PERSONAS {
        syscalls.push(allow(
            vec!["personality".into()],
            vec![arg(0, LinuxSeccompOperator::ScmpCmpEq, p)?],
        )?);
    }
    // SCMP_CMP_MASKED_EQ: (arg & value) == valueTwo.
    let clone_arg = LinuxSeccompArgBuilder::default()
        .index(0usize)
        .op(LinuxSeccompOperator::ScmpCmpMaskedEq)
        .value(crate::seccomp::CLONE_NS_FLAGS)
        .value_two(0u64)
        .build()?;
    syscalls.push(allow(vec!["clone".into()], vec![clone_arg])?);
    syscalls.push(
        LinuxSyscallBuilder::default()
            .names(vec!["clone3".to_string()])
            .action(LinuxSeccompAction::ScmpActErrno)
            .errno_ret(libc::ENOSYS as u32)
            .build()?,
    );
    LinuxSeccompBuilder::default()
        .default_action(LinuxSeccompAction::ScmpActErrno)
        .default_errno_ret(libc::EPERM as u32)
        .architectures(vec![if cfg!(target_arch = "aarch64") {
            Arch::ScmpArchAarch64
        } else {
            Arch::ScmpArchX86_64
        }])
        .syscalls(syscalls)
        .build()
}

/// Why the OCI config could not be built.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConfigError {
    /// `oci-spec` refused a value.
    #[error(transparent)]
    Spec(oci_spec::OciSpecError),
    /// The user is not in the rootfs's /etc/passwd (or /etc/group).
    #[error(transparent)]
    User(#[from] UserError),
    /// A `--device` mapping with a bad mode.
    #[error("--device: invalid device mode: {0}")]
    DeviceMode(String),
    /// A `--device` node that cannot be read.
    #[error("--device {}: {source}", host.display())]
    Device {
        /// The host's node.
        host: std::path::PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// The OCI runtime spec for `spec`, with the rootfs mounted at `root`.
pub(crate) fn config(spec: &RunSpec, root: &Path, id: &str) -> Result<Spec, ConfigError> {
    let e = ConfigError::Spec;
    let passwd = std::fs::read_to_string(root.join("etc/passwd")).unwrap_or_default();
    let group = std::fs::read_to_string(root.join("etc/group")).unwrap_or_default();
    let user = resolve_user_in(&spec.user, &passwd, &group)?;
    let env = process_env(&spec.env, &user);
    let privileged = spec.extra.privileged;
    let popts = &spec.extra.process;
    let caps = caps(privileged, popts);
    let capabilities = oci_spec::runtime::LinuxCapabilitiesBuilder::default()
        .bounding(caps.clone())
        .effective(caps.clone())
        .permitted(caps)
        // oci-spec's defaults would put CAP_KILL, CAP_NET_BIND_SERVICE and CAP_AUDIT_WRITE
        // here, which runc refuses when they are not permitted (`--cap-drop`).
        .inheritable(HashSet::new())
        .ambient(HashSet::new())
        .build()
        .map_err(e)?;
    let process = ProcessBuilder::default()
        .args(spec.args.clone())
        .env(env)
        .cwd(if spec.cwd.is_empty() { "/" } else { &spec.cwd })
        .user(
            UserBuilder::default()
                .uid(user.uid)
                .gid(user.gid)
                .additional_gids(user.groups.clone())
                .build()
                .map_err(e)?,
        )
        .capabilities(capabilities)
        .no_new_privileges(!privileged && popts.no_new_privileges != Some(false))
        .rlimits(
            popts
                .ulimits
                .iter()
                .filter_map(|u| {
                    let (_, l) = u.rlimit()?;
                    let typ: oci_spec::runtime::PosixRlimitType =
                        serde_json::from_value(serde_json::Value::String(format!(
                            "RLIMIT_{}",
                            u.name.to_ascii_uppercase()
                        )))
                        .ok()?;
                    oci_spec::runtime::PosixRlimitBuilder::default()
                        .typ(typ)
                        .soft(l.rlim_cur)
                        .hard(l.rlim_max)
                        .build()
                        .ok()
                })
                .collect::<Vec<_>>(),
        )
        .build()
        .map_err(e)?;

    let mut mounts: Vec<Mount> = oci_spec::runtime::get_default_mounts();
    if privileged {
        for m in &mut mounts {
            if m.destination() == Path::new("/sys") {
                m.set_options(Some(
                    ["nosuid", "noexec", "nodev", "rw"]
                        .iter()
                        .map(std::string::ToString::to_string)
                        .collect(),
                ));
            }
        }
    }
    for t in &spec.extra.tmpfs {
        let mut options = vec!["nosuid".to_string(), "nodev".into(), "mode=1777".into()];
        if let Some(size) = t.size {
            options.push(format!("size={size}"));
        }
        mounts.push(
            MountBuilder::default()
                .destination(&t.destination)
                .typ("tmpfs")
                .source("tmpfs")
                .options(options)
                .build()
                .map_err(e)?,
        );
    }
    for b in &spec.mounts {
        let mut options = vec!["rbind".to_string()];
        options.push(if b.readonly { "ro" } else { "rw" }.into());
        mounts.push(
            MountBuilder::default()
                .destination(&b.destination)
                .typ("bind")
                .source(&b.source)
                .options(options)
                .build()
                .map_err(e)?,
        );
    }

    let r = &spec.extra.resources;
    let mut resources = LinuxResourcesBuilder::default();
    if let Some(m) = r.memory {
        resources = resources.memory(
            LinuxMemoryBuilder::default()
                .limit(m as i64)
                .swap(r.memory_swap.unwrap_or(m as i64))
                .build()
                .map_err(e)?,
        );
    }
    if let Some(c) = r.cpus {
        resources = resources.cpu(
            LinuxCpuBuilder::default()
                .period(100_000u64)
                .quota((c * 100_000.0).round() as i64)
                .build()
                .map_err(e)?,
        );
    }
    if let Some(p) = r.pids {
        resources = resources.pids(LinuxPidsBuilder::default().limit(p).build().map_err(e)?);
    }
    // Docker's device rules (see devices.rs; runc appends its defaults anyway, other runtimes
    // may not) and the --device nodes.
    let cgroup_rule = |allow: bool, kind: Option<LinuxDeviceType>, r: Option<&DeviceRule>| {
        let mut b = LinuxDeviceCgroupBuilder::default().allow(allow).access(
            r.map_or("rwm".to_string(), |r| {
                crate::devices::access_string(r.access)
            }),
        );
        if let Some(k) = kind {
            b = b.typ(k);
        }
        if let Some(major) = r.and_then(|r| r.major) {
            b = b.major(i64::from(major));
        }
        if let Some(minor) = r.and_then(|r| r.minor) {
            b = b.minor(i64::from(minor));
        }
        b.build()
    };
    let device_type = |r: &DeviceRule| {
        if r.kind == 'b' {
            LinuxDeviceType::B
        } else {
            LinuxDeviceType::C
        }
    };
    let mut device_rules = vec![cgroup_rule(privileged, None, None).map_err(e)?];
    let mut devices = Vec::new();
    for d in &spec.extra.devices {
        let access = crate::devices::parse_access(&d.permissions)
            .ok_or_else(|| ConfigError::DeviceMode(d.permissions.clone()))?;
        let device = |source| ConfigError::Device {
            host: d.host.clone(),
            source,
        };
        let r = crate::devices::rule_for_node(&d.host, access).map_err(device)?;
        let meta = std::fs::metadata(&d.host).map_err(device)?;
        devices.push(
            LinuxDeviceBuilder::default()
                .path(&d.container)
                .typ(device_type(&r))
                .major(i64::from(r.major.unwrap_or_default()))
                .minor(i64::from(r.minor.unwrap_or_default()))
                .file_mode(std::os::unix::fs::MetadataExt::mode(&meta) & 0o7777)
                .uid(std::os::unix::fs::MetadataExt::uid(&meta))
                .gid(std::os::unix::fs::MetadataExt::gid(&meta))
                .build()
                .map_err(e)?,
        );
        if !privileged {
            device_rules.push(cgroup_rule(true, Some(device_type(&r)), Some(&r)).map_err(e)?);
        }
    }
    if !privileged {
        for r in crate::devices::DEFAULT_ALLOWED {
            device_rules.push(cgroup_rule(true, Some(device_type(r)), Some(r)).map_err(e)?);
        }
    }
    resources = resources.devices(device_rules);
    let mut linux = LinuxBuilder::default()
        .resources(resources.build().map_err(e)?)
        .devices(devices)
        .cgroups_path(format!("/kiln/{id}"));
    let mut namespaces = oci_spec::runtime::get_default_namespaces();
    if spec.network == Network::Host {
        namespaces.retain(|n| n.typ() != LinuxNamespaceType::Network);
    }
    if let Network::Join(path) = &spec.network {
        for n in &mut namespaces {
            if n.typ() == LinuxNamespaceType::Network {
                n.set_path(Some(path.clone()));
            }
        }
    }
    linux = linux.namespaces(namespaces);
    if privileged {
        linux = linux.masked_paths(vec![]).readonly_paths(vec![]);
    } else {
        let mut masked = oci_spec::runtime::get_default_maskedpaths();
        masked.push("/sys/devices/virtual/powercap".into());
        linux = linux
            .masked_paths(masked)
            .readonly_paths(oci_spec::runtime::get_default_readonly_paths());
        if !popts.seccomp_unconfined {
            linux = linux.seccomp(seccomp().map_err(e)?);
        }
    }
    let mut oci = Spec::default();
    oci.set_process(Some(process));
    oci.set_root(Some(
        RootBuilder::default()
            .path(root)
            .readonly(spec.extra.read_only)
            .build()
            .map_err(e)?,
    ));
    oci.set_hostname(Some(spec.hostname.clone()));
    oci.set_mounts(Some(mounts));
    oci.set_linux(Some(linux.build().map_err(e)?));
    Ok(oci)
}

/// The helper's path for an external runtime. Never returns.
pub(crate) fn main(spec: &RunSpec, runtime: &Path, id: &str) -> ! {
    if spec.network == Network::Default {
        fail(
            "--runtime",
            "the default network (pasta) is not supported with an external OCI runtime; use \
             --network none or host",
        );
    }
    crate::mounts::private_mount_namespace().or_fail(|| "unshare(CLONE_NEWNS)".into());
    let root = std::path::absolute(&spec.rootfs.work).or_fail(|| "rootfs path".into());
    let rootfs = &spec.rootfs;
    crate::mounts::overlay(&rootfs.lowers, Some((&rootfs.upper, &rootfs.work)), &root)
        .or_fail(|| "mounting the overlay rootfs".into());
    let bundle = std::env::temp_dir().join(format!("kiln-bundle-{id}"));
    std::fs::create_dir_all(&bundle).or_fail(|| format!("creating {}", bundle.display()));
    let config = config(spec, &root, id).or_fail(|| "building the OCI config".into());
    config
        .save(bundle.join("config.json"))
        .or_fail(|| "writing config.json".into());
    let status = signals::spawn_and_wait(
        runtime,
        &[
            "run".as_ref(),
            "--bundle".as_ref(),
            bundle.as_os_str(),
            id.as_ref(),
        ],
    );
    let _ = std::fs::remove_dir_all(&bundle);
    exit(crate::sys::status_code(status))
}
