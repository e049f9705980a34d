//! The sandbox's root filesystem, set up by pid 1 in its mount namespace: the overlay,
//! `/proc` with docker's masked and read-only paths, `/sys`, a minimal `/dev` (device
//! nodes), the generated /etc files, the bind and tmpfs mounts, then `pivot_root`. Every
//! mount target inside the rootfs is resolved in the root and held by an fd ([`Target`]).

use crate::report::{fail, OrFail};
use crate::spec::{BindMount, DeviceMapping, Network, RunSpec, TmpfsMount};
use crate::sys::{self, cstr};
use kiln_fsroot::Follow;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

const NOSUID_NODEV_NOEXEC: libc::c_ulong = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;

/// Mounts the rootfs at `root` and everything under it.
pub(super) fn setup_rootfs(spec: &RunSpec, root: &Path) {
    let rootfs = &spec.rootfs;
    if spec.extra.discard_upper {
        crate::mounts::volatile_overlay(&rootfs.lowers, &rootfs.upper, &rootfs.work, root)
    } else {
        crate::mounts::overlay(&rootfs.lowers, Some((&rootfs.upper, &rootfs.work)), root)
    }
    .or_fail(|| "mounting the overlay rootfs".into());
    let privileged = spec.extra.privileged;
    mount_proc(spec, root, privileged);
    mount_sys(root, privileged);
    mount_dev(spec, root, privileged);
    extra_mounts(spec, root);
    if spec.network != Network::Host {
        loopback_up().or_fail(|| "bringing up lo".into());
    }
}

/// `/proc` with docker's masked and read-only paths (unless privileged), after the /etc
/// files (their tmpfs is mounted on `/proc` for a moment).
fn mount_proc(spec: &RunSpec, root: &Path, privileged: bool) {
    let proc_target = dir_in_root(root, "/proc");
    etc_files(spec, root, &proc_target);
    sys::mount(
        Some("proc"),
        &proc_target.at(),
        Some("proc"),
        NOSUID_NODEV_NOEXEC,
        None,
    )
    .or_fail(|| "mounting /proc".into());
    // A fresh procfs: paths below it are the kernel's, not the image's.
    let proc_dir = &proc_target.path;
    for p in [
        "asound",
        "acpi",
        "kcore",
        "keys",
        "latency_stats",
        "timer_list",
        "timer_stats",
        "sched_debug",
        "scsi",
    ] {
        if !privileged {
            mask(&proc_dir.join(p));
        }
    }
    for p in ["bus", "fs", "irq", "sys", "sysrq-trigger"] {
        if privileged {
            break;
        }
        let path = proc_dir.join(p);
        if path.exists() {
            sys::bind(&path, &path, true).or_fail(|| format!("making /proc/{p} read-only"));
        }
    }
}

/// `/sys`: read-only sysfs (a read-only bind of the host's /sys when that fails), with
/// docker's masked paths; writable when privileged.
fn mount_sys(root: &Path, privileged: bool) {
    let sys_target = dir_in_root(root, "/sys");
    let sys_dir = &sys_target.path;
    let sys_ro = if privileged { 0 } else { libc::MS_RDONLY };
    if sys::mount(
        Some("sysfs"),
        &sys_target.at(),
        Some("sysfs"),
        NOSUID_NODEV_NOEXEC | sys_ro,
        None,
    )
    .is_err()
    {
        sys_target
            .bind(Path::new("/sys"), !privileged)
            .or_fail(|| "mounting /sys".into());
    }
    if !privileged {
        mask(&sys_dir.join("firmware"));
        mask(&sys_dir.join("devices/virtual/powercap"));
    }
}

/// `/dev`: a tmpfs with the host's null, zero, full, random, urandom and tty bound in, a new
/// devpts instance, shm, mqueue and the usual links; the host's devices when privileged, the
/// `--device` nodes.
fn mount_dev(spec: &RunSpec, root: &Path, privileged: bool) {
    let dev_target = dir_in_root(root, "/dev");
    sys::mount(
        Some("tmpfs"),
        &dev_target.at(),
        Some("tmpfs"),
        libc::MS_NOSUID | libc::MS_STRICTATIME,
        Some("mode=755,size=65536k"),
    )
    .or_fail(|| "mounting /dev".into());
    // A fresh tmpfs: paths below it hold no symlink of the image.
    let dev = &dev_target.path;
    for name in ["null", "zero", "full", "random", "urandom", "tty"] {
        let host = Path::new("/dev").join(name);
        let target = dev.join(name);
        let made = std::fs::File::create(&target)
            .map_err(|e| e.to_string())
            .and_then(|_| {
                sys::mount_path(&host, &target, libc::MS_BIND).map_err(|e| e.to_string())
            });
        if let Err(e) = made {
            if name == "tty" {
                let _ = std::fs::remove_file(&target);
            } else {
                fail(&format!("binding /dev/{name}"), e);
            }
        }
    }
    let pts = dev.join("pts");
    std::fs::create_dir(&pts).or_fail(|| "creating /dev/pts".into());
    sys::mount(
        Some("devpts"),
        &pts,
        Some("devpts"),
        libc::MS_NOSUID | libc::MS_NOEXEC,
        Some("newinstance,ptmxmode=0666,mode=0620,gid=5"),
    )
    .or_fail(|| "mounting /dev/pts".into());
    let shm = dev.join("shm");
    std::fs::create_dir(&shm).or_fail(|| "creating /dev/shm".into());
    sys::mount(
        Some("shm"),
        &shm,
        Some("tmpfs"),
        NOSUID_NODEV_NOEXEC,
        Some("mode=1777,size=65536k"),
    )
    .or_fail(|| "mounting /dev/shm".into());
    let mqueue = dev.join("mqueue");
    if std::fs::create_dir(&mqueue).is_ok()
        && sys::mount(
            Some("mqueue"),
            &mqueue,
            Some("mqueue"),
            NOSUID_NODEV_NOEXEC,
            None,
        )
        .is_err()
    {
        let _ = std::fs::remove_dir(&mqueue);
    }
    for (link, target) in [
        ("ptmx", "pts/ptmx"),
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
        ("core", "/proc/kcore"),
    ] {
        std::os::unix::fs::symlink(target, dev.join(link))
            .or_fail(|| format!("creating /dev/{link}"));
    }

    if privileged {
        host_devices(Path::new("/dev"), dev);
    }
    // Before the bind mounts: a node is never made in (nor a file removed from) a host
    // directory bound into the sandbox.
    for d in &spec.extra.devices {
        create_device_node(root, d);
    }
}

/// The bind and tmpfs mounts, parents before children.
fn extra_mounts(spec: &RunSpec, root: &Path) {
    enum Extra<'a> {
        Bind(&'a BindMount),
        Tmpfs(&'a TmpfsMount),
    }
    let mut extra: Vec<(&str, Extra)> = spec
        .mounts
        .iter()
        .map(|m| (m.destination.as_str(), Extra::Bind(m)))
        .chain(
            spec.extra
                .tmpfs
                .iter()
                .map(|t| (t.destination.as_str(), Extra::Tmpfs(t))),
        )
        .collect();
    extra.sort_by_key(|(d, _)| Path::new(d).components().count());
    for (dest, m) in extra {
        if !dest.starts_with('/') {
            fail(&format!("mount {dest}"), "destination is not absolute");
        }
        match m {
            Extra::Bind(m) => {
                let is_dir = std::fs::metadata(&m.source)
                    .or_fail(|| format!("bind mount source {}", m.source.display()))
                    .is_dir();
                let target = if is_dir {
                    dir_in_root(root, dest)
                } else {
                    file_in_root(root, dest)
                };
                target
                    .bind(&m.source, m.readonly)
                    .or_fail(|| format!("bind-mounting {} on {dest}", m.source.display()));
            }
            Extra::Tmpfs(t) => {
                let target = dir_in_root(root, dest);
                let mut data = format!("mode={:o}", t.mode.unwrap_or(0o1777));
                if let Some(size) = t.size {
                    data.push_str(&format!(",size={size}"));
                }
                sys::mount(
                    Some("tmpfs"),
                    &target.at(),
                    Some("tmpfs"),
                    libc::MS_NOSUID | libc::MS_NODEV,
                    Some(&data),
                )
                .or_fail(|| format!("mounting a tmpfs on {dest}"));
            }
        }
    }
}

/// Privileged sandboxes see the host's devices, as with Docker (containerd's `HostDevices`):
/// a node in the sandbox's /dev (below `dev`) for each device node below the host's `host`
/// that the sandbox's /dev does not have yet, with the host node's mode and owner; the
/// host's `pts`, `shm`, `mqueue` and `fd` are not copied, nor is `console`.
fn host_devices(host: &Path, dev: &Path) {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let Ok(entries) = std::fs::read_dir(host) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let (Ok(ft), Ok(m)) = (entry.file_type(), entry.metadata()) else {
            continue;
        };
        let target = dev.join(&name);
        if ft.is_dir() {
            let skip = [".lxc", ".lxd-mounts", ".udev", "fd", "mqueue", "pts", "shm"];
            if !skip.iter().any(|s| name == *s) && std::fs::create_dir_all(&target).is_ok() {
                host_devices(&entry.path(), &target);
            }
            continue;
        }
        if !(ft.is_char_device() || ft.is_block_device())
            || name == "console"
            || std::fs::symlink_metadata(&target).is_ok()
        {
            continue;
        }
        let Ok(path) = cstr(&target) else { continue };
        // SAFETY: a valid path; mode and dev from the host node.
        if unsafe { libc::mknod(path.as_ptr(), m.mode(), m.rdev()) } == 0 {
            let _ = std::os::unix::fs::chown(&target, Some(m.uid()), Some(m.gid()));
            let _ = std::fs::set_permissions(
                &target,
                std::fs::Permissions::from_mode(m.mode() & 0o7777),
            );
        }
    }
}

/// Creates the node of `--device` mapping `d` in the rootfs: the host node's type, numbers,
/// mode and owner, replacing what the path held (e.g. the bound `/dev/null`).
fn create_device_node(root: &Path, d: &DeviceMapping) {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let step = || format!("--device {}:{}", d.host.display(), d.container);
    let m = std::fs::metadata(&d.host).or_fail(step);
    if !m.file_type().is_char_device() && !m.file_type().is_block_device() {
        fail(&step(), "not a device node");
    }
    // Through kiln-fsroot, like every mount target: a symlink in the image cannot send the
    // node (or the unmount and removal of what was there) out of the rootfs.
    let r = kiln_fsroot::Root::open(root).or_fail(|| "opening the rootfs".into());
    let rel = r.resolve_path(&d.container, true).or_fail(step);
    let (dir, name) = r.parent(&rel, Follow::Never, Some(0o755)).or_fail(step);
    if dir.lstat(&name).or_fail(step).is_some() {
        // What was there (the bound /dev/null, say), by the path that holds no symlink.
        let _ = sys::umount2(&root.join(&rel), libc::MNT_DETACH);
        dir.remove_file(&name).or_fail(step);
    }
    let kind = if m.file_type().is_char_device() {
        kiln_fsroot::FileType::CharacterDevice
    } else {
        kiln_fsroot::FileType::BlockDevice
    };
    dir.mknod(&name, kind, m.mode() & 0o7777, m.rdev())
        .or_fail(step);
    dir.set_owner(&name, m.uid(), m.gid()).or_fail(step);
    // Not the umask's.
    dir.set_mode(&name, m.mode() & 0o7777).or_fail(step);
}

/// The generated `/etc/hosts`, `/etc/hostname` and `/etc/resolv.conf`.
pub(super) fn etc_contents(spec: &RunSpec) -> [(&'static str, String); 3] {
    let mut hosts =
        String::from("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n");
    // Checked by the callers; a name that would add lines of its own is left out here too.
    let one_line =
        |s: &str| !s.is_empty() && !s.contains(|c: char| c.is_whitespace() || c.is_control());
    if one_line(&spec.hostname) {
        hosts.push_str(&format!("127.0.1.1\t{}\n", spec.hostname));
    }
    for (name, ip) in &spec.extra.extra_hosts {
        if one_line(name) && one_line(ip) {
            hosts.push_str(&format!("{ip}\t{name}\n"));
        }
    }
    let host_resolv = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    let resolv = match spec.network {
        Network::Host | Network::Default => host_resolv,
        // Loopback resolvers of the host are unreachable from a namespace of its own.
        Network::None | Network::Join(_) => host_resolv
            .lines()
            .filter(|l| {
                let mut w = l.split_whitespace();
                !(w.next() == Some("nameserver")
                    && w.next()
                        .is_some_and(|a| a.starts_with("127.") || a == "::1"))
            })
            .map(|l| format!("{l}\n"))
            .collect(),
    };
    let resolv = if spec.extra.dns.is_empty() {
        resolv
    } else {
        let mut r: String = spec
            .extra
            .dns
            .iter()
            .map(|s| format!("nameserver {s}\n"))
            .collect();
        r.extend(
            resolv
                .lines()
                .filter(|l| l.split_whitespace().next() != Some("nameserver"))
                .map(|l| format!("{l}\n")),
        );
        r
    };
    [
        ("/etc/hosts", hosts),
        ("/etc/hostname", format!("{}\n", spec.hostname)),
        ("/etc/resolv.conf", resolv),
    ]
}

/// Mounts generated /etc files over the rootfs's (see [`crate::SandboxOptions::create_etc_files`]).
/// The files live on a tmpfs mounted for a moment on `scratch` (a directory that is mounted
/// over afterwards), so nothing is written to the layer.
fn etc_files(spec: &RunSpec, root: &Path, scratch_target: &Target) {
    let files = etc_contents(spec);
    let mut targets = Vec::new();
    let r = kiln_fsroot::Root::open(root).or_fail(|| "opening the rootfs".into());
    for (path, _) in &files {
        let target = r.resolve(path, Follow::InRoot).ok().filter(|fd| {
            std::fs::metadata(kiln_fsroot::proc_fd_path(fd)).is_ok_and(|m| m.is_file())
        });
        let target = match target {
            Some(fd) => Some(Target {
                fd,
                path: PathBuf::new(),
            }),
            _ if spec.extra.create_etc_files => Some(file_in_root(root, path)),
            _ => None,
        };
        targets.push(target);
    }
    if targets.iter().all(Option::is_none) {
        return;
    }
    let scratch = &scratch_target.path;
    sys::mount(
        Some("tmpfs"),
        &scratch_target.at(),
        Some("tmpfs"),
        libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
        Some("mode=755,size=64k"),
    )
    .or_fail(|| "mounting a tmpfs for /etc files".into());
    for ((path, content), target) in files.iter().zip(targets) {
        let Some(target) = target else { continue };
        let name = scratch.join(path.trim_start_matches("/etc/"));
        std::fs::write(&name, content).or_fail(|| format!("writing {path}"));
        sys::mount_path(&name, &target.at(), libc::MS_BIND).or_fail(|| format!("mounting {path}"));
    }
    sys::umount2(scratch, libc::MNT_DETACH).or_fail(|| "unmounting the /etc files' tmpfs".into());
}

/// Hides `path` (under /proc or /sys): an empty read-only tmpfs on a directory, /dev/null on
/// a file.
fn mask(path: &Path) {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return;
    };
    let r = if meta.is_dir() {
        sys::mount(
            Some("tmpfs"),
            path,
            Some("tmpfs"),
            libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
            Some("size=0"),
        )
    } else {
        sys::mount_path(Path::new("/dev/null"), path, libc::MS_BIND)
    };
    r.or_fail(|| format!("masking {}", path.display()));
}

/// `chdir(root)`, `pivot_root(".", ".")`, detach the old root.
pub(super) fn enter_root(root: &Path) {
    std::env::set_current_dir(root).or_fail(|| "chdir to the rootfs".into());
    sys::pivot_root(Path::new("."), Path::new(".")).or_fail(|| "pivot_root".into());
    sys::umount2(Path::new("."), libc::MNT_DETACH).or_fail(|| "detaching the old root".into());
    std::env::set_current_dir("/").or_fail(|| "chdir /".into());
}

/// A mount target in the rootfs, resolved inside the root (symlinks followed as if it were
/// `/`) and held by an fd. Mounts go on `/proc/self/fd/N` ([`Target::at`], runc's
/// `WithProcfd`), so a symlink swapped in after the lookup cannot send them elsewhere.
pub(super) struct Target {
    fd: OwnedFd,
    /// Where the target is (below the root, no symlink in it), for what is done after the
    /// mount on top of it (paths below a fresh procfs, sysfs or tmpfs; a read-only remount).
    pub(super) path: PathBuf,
}

impl Target {
    fn at(&self) -> PathBuf {
        kiln_fsroot::proc_fd_path(&self.fd)
    }

    /// Bind-mounts `source` here (then read-only when asked, through the new mount).
    fn bind(&self, source: &Path, readonly: bool) -> io::Result<()> {
        sys::mount_path(source, &self.at(), libc::MS_BIND | libc::MS_REC)?;
        if readonly {
            sys::remount_readonly(&self.path)?;
        }
        Ok(())
    }
}

/// The directory `path` in the rootfs, created when missing.
pub(super) fn dir_in_root(root: &Path, path: &str) -> Target {
    let r = kiln_fsroot::Root::open(root).or_fail(|| "opening the rootfs".into());
    let rel = r
        .resolve_path(path, true)
        .or_fail(|| format!("resolving {path} in the rootfs"));
    let dir = r
        .mkdir_all(&rel, 0o755, Follow::Never)
        .or_fail(|| format!("creating {path} in the rootfs"));
    Target {
        fd: dir.into(),
        path: root.join(rel),
    }
}

/// The file `path` in the rootfs, created (empty) when missing.
pub(super) fn file_in_root(root: &Path, path: &str) -> Target {
    let r = kiln_fsroot::Root::open(root).or_fail(|| "opening the rootfs".into());
    let rel = r
        .resolve_path(path, true)
        .or_fail(|| format!("resolving {path} in the rootfs"));
    let creating = || format!("creating {path} in the rootfs");
    let fd = match r.resolve(&rel, Follow::Never) {
        Ok(fd) => fd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let (dir, name) = r.parent(&rel, Follow::Never, Some(0o755)).or_fail(creating);
            match dir.create_file(&name, 0o644) {
                Err(e) if e.kind() != io::ErrorKind::AlreadyExists => fail(&creating(), e),
                _ => {}
            }
            dir.open_path(&name).or_fail(creating)
        }
        Err(e) => fail(&creating(), e),
    };
    Target {
        fd,
        path: root.join(rel),
    }
}

fn loopback_up() -> io::Result<()> {
    #[repr(C)]
    struct IfReq {
        name: [u8; libc::IFNAMSIZ],
        flags: libc::c_short,
        _pad: [u8; 22],
    }
    // SAFETY: socket/ioctl with a correctly laid out struct ifreq; the fd is closed.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut req = IfReq {
            name: [0; libc::IFNAMSIZ],
            flags: 0,
            _pad: [0; 22],
        };
        req.name[..2].copy_from_slice(b"lo");
        let mut r = libc::ioctl(fd, libc::SIOCGIFFLAGS, &mut req);
        if r == 0 {
            req.flags |= libc::IFF_UP as libc::c_short;
            r = libc::ioctl(fd, libc::SIOCSIFFLAGS, &req);
        }
        let e = io::Error::last_os_error();
        libc::close(fd);
        if r < 0 {
            return Err(e);
        }
    }
    Ok(())
}
