//! The executor: runs one process in a sandbox on an overlayfs root filesystem, and more
//! processes in a running sandbox. One executor serves `kiln build` (RUN steps), `kiln run`
//! and `kiln exec`.
//!
//! # Mechanism
//!
//! The calling process (multi-threaded, tokio) never forks into namespaces itself: `unshare`
//! of a pid or mount namespace and `fork` are not safe in a multi-threaded process. It spawns
//! a helper, a fresh single-threaded process (`kiln __kiln-sandbox SPEC_JSON`, see
//! [`HELPER_ARG`] and [`helper_main`]), which unshares mount/pid/uts/ipc(/net) namespaces,
//! forks the namespace's pid 1 (a tiny init that reaps zombies and forwards signals), mounts
//! the overlay, /proc, a minimal /dev, pivot_roots, drops to the requested user and execs
//! the command.
//!
//! ## `--init`
//!
//! Every sandbox already has what `docker run --init` adds: pid 1 is the helper itself, which
//! forks the command, forwards every catchable signal to it (as tini does without `-g`), reaps
//! every process reparented to it, and exits with the command's exit code (128+N when a
//! signal N ended it) once the command ends. So `kiln run --init` is recorded
//! (`HostConfig.Init`) and changes nothing in the sandbox: nothing is bind-mounted from the
//! host (docker mounts its `docker-init` binary at `/sbin/docker-init`), and the command is
//! never pid 1, with or without the flag. That differs from docker without `--init` in one
//! way people may notice: a command that installs no `SIGTERM` handler is not shielded from
//! `kill -s TERM` as pid 1 would be, so it ends at `stop`'s first signal.
//!
//! The sandbox is our own code on `nix`/`libc` rather than youki's `libcontainer` (a library,
//! but a large one built around OCI bundles on disk, cgroup managers and a multi-process
//! channel protocol) or shelling out to `runc` (an extra binary, an OCI bundle written to disk
//! per step and a Go runtime start-up per RUN). We chose our own code for start latency (one
//! `fork`+`exec` of our own binary, no bundle on disk, no external runtime) and for control
//! over exactly what is mounted and reported; `runc` stays available through
//! [`Executor::with_runtime`] (`kiln run --runtime PATH`). Measured on the development host
//! (Linux 6.18, hybrid cgroup v1, 2 cores; busybox rootfs; `hyperfine -N`; see [`perf`] for
//! the commands and numbers).
//!
//! # Isolation beyond namespaces
//!
//! - **cgroup namespace**: pid 1 unshares `CLONE_NEWCGROUP` after joining its cgroup, so
//!   `/proc/self/cgroup` shows `/`.
//! - **Limits** ([`Resources`]): a cgroup `kiln/<id>` below the caller's own cgroup, v2 for
//!   the controllers cgroup v2 offers and v1 for the others (see `cgroup.rs`), created and
//!   joined by pid 1 before anything else runs, removed by the caller afterwards;
//!   [`Executor::run_detailed`] reports OOM kills. pid 1 counts against `pids`. With
//!   [`Resources::updatable`] the sandbox has its own memory, cpu, pids and freezer cgroups
//!   even without limits, which [`SandboxCgroups`] finds again from its pid 1 to freeze,
//!   thaw or change the limits while it runs.
//! - **Devices**: every sandbox that is not privileged gets Docker's default device rules
//!   (`mknod` of any node; read/write only null, zero, full, random, urandom, tty, the pts
//!   devices, ptmx and tun) plus [`SandboxOptions::devices`], through the v1 `devices`
//!   controller or a BPF device program on cgroup v2 (see `devices.rs` for the list's source
//!   and the mechanism), so it has a cgroup even without limits. A node made with `mknod` or
//!   shipped in an image can be created but not opened.
//! - **Capabilities**: Docker's default set (bounding set too; inheritable and ambient sets
//!   cleared). **`no_new_privs`** is set (setuid binaries do not elevate) and **Docker's
//!   default seccomp profile** (`seccomp.rs`, an allow-list with `EPERM` as the default, built
//!   with the pure-Rust `seccompiler`) is installed just before `execve`.
//! - **Process options** ([`SandboxOptions::process`], `security.rs`): docker's `--cap-add`
//!   and `--cap-drop` change the set (moby's `TweakCapabilities`), `--security-opt
//!   no-new-privileges=false` leaves `no_new_privs` off (the seccomp filter is then
//!   installed before `setuid`, while CAP_SYS_ADMIN is still held, as runc does),
//!   `seccomp=unconfined` installs none, and `--ulimit`s are set before `setuid`. `exec`
//!   processes get the same ([`ExecSpec::process`]).
//! - **Read-only root** ([`SandboxOptions::read_only`]): `/` is remounted read-only once
//!   the working directory exists; the mounts on it keep their modes.
//! - **Privileged** ([`SandboxOptions::privileged`]): every capability, no seccomp, no
//!   `no_new_privs`, no masked or read-only paths in /proc and /sys, /sys writable, no device
//!   rules, and the host's device nodes in /dev (as Docker; not through
//!   [`Executor::with_runtime`]).
//! - **tmpfs mounts** ([`SandboxOptions::tmpfs`]): `nosuid,nodev,mode=1777[,size=N]`, mounted
//!   with the bind mounts, parents first.
//! - **/etc/hosts, /etc/hostname, /etc/resolv.conf**: generated (`localhost` lines plus
//!   `127.0.1.1 HOSTNAME`; the host's resolv.conf, without loopback resolvers for
//!   [`Network::None`]) on a tmpfs briefly mounted on the rootfs's /proc, and bind-mounted over
//!   the image's files; files the image lacks are created only with
//!   [`SandboxOptions::create_etc_files`] (`kiln run`), never for build steps.
//! - **Network `default`** ([`Network::Default`]): a private network namespace connected by
//!   `pasta` (Debian package `passt`; see `net.rs`). We chose pasta over `slirp4netns` (both
//!   install and work here) because it needs no TAP device setup helper or API socket of its
//!   own, copies the host's addresses, routes and resolvers (so /etc/resolv.conf can be the
//!   host's), is what Podman uses by default today, and adds about 4 ms to a sandbox here
//!   (started in parallel with the sandbox's setup; see `net.rs` for where the 60-90 ms
//!   of a naive start go). Without pasta the sandbox fails with an error naming the package.
//!
//! # Process and namespace sequence
//!
//! 1. [`Executor::run`] spawns the helper (`kill_on_drop`; with [`Output::Capture`] in a new
//!    session with stdin `/dev/null` and stdout/stderr piped). Setup errors come back on a
//!    dedicated pipe whose fd number is passed in `KILN_SANDBOX_ERROR_FD`; the helper then
//!    exits with 125 and `run` returns [`Error::Setup`]. Without that variable (the helper
//!    started by hand) the message goes to stderr as `kiln-sandbox-error: STEP: ERROR`.
//! 2. The *outer helper* unshares `CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWUTS | CLONE_NEWIPC`
//!    (plus `CLONE_NEWNET` unless [`Network::Host`]), makes `/` recursively private (nothing
//!    leaks to the host mount table) and forks. It stays in the host pid namespace, forwards
//!    user-sent SIGINT/SIGTERM/SIGHUP/SIGQUIT/SIGUSR1/SIGUSR2 to its child, waits for it and
//!    exits with its status.
//! 3. The child is pid 1 of the new pid namespace. It sets `PR_SET_PDEATHSIG(SIGKILL)` (so
//!    killing the outer helper, e.g. when the `run` future is dropped, kills pid 1 and with it
//!    every process in the namespace) and makes itself non-dumpable. It then
//!    - mounts the overlay (`lowerdir=…,upperdir=…,workdir=…,index=off,redirect_dir=off,
//!      metacopy=off`) on top of the overlay *work* dir itself: the kernel resolves the
//!      layer paths before grafting the mount, and nothing else lives under the work dir, so
//!      no extra directory is needed on the host;
//!    - mounts `proc` (nosuid,nodev,noexec) on `/proc`, with docker's masked paths (`/dev/null`
//!      or an empty read-only tmpfs) and read-only paths (`/proc/sys`, `/proc/sysrq-trigger`,
//!      …); read-only `sysfs` on `/sys` (a read-only bind of the host's /sys if that fails);
//!    - mounts a tmpfs on `/dev` (mode 755) with bind mounts of the host's
//!      null/zero/full/random/urandom/tty, a new `devpts` instance on `/dev/pts` (`/dev/ptmx`
//!      → `pts/ptmx`), a tmpfs on `/dev/shm` and the `fd`, `stdin`, `stdout`, `stderr` links;
//!    - bind-mounts [`RunSpec::mounts`] (destinations resolved inside the rootfs, symlinks
//!      included, and created when missing);
//!    - brings `lo` up in a new network namespace;
//!    - `chdir(rootfs)`, `pivot_root(".", ".")`, `umount2(".", MNT_DETACH)` (no directory
//!      for the old root is needed in the image);
//!    - sets the hostname, resolves [`RunSpec::user`] against the new root's `/etc/passwd`
//!      and `/etc/group`, creates and enters [`RunSpec::cwd`];
//!    - forks the main process and then only reaps zombies and forwards signals until the
//!      main process exits, then exits with its status (which kills what is left).
//! 4. The main process drops capabilities outside docker's default set from the bounding
//!    set, clears the inheritable/ambient sets, `setgroups`/`setgid`/`setuid`, sets the
//!    environment to exactly [`RunSpec::env`] (plus `HOME` and a default `PATH` when absent),
//!    looks the command up in `PATH` and `execve`s it. A command that cannot be found exits
//!    127 with `kiln: exec: "CMD": executable file not found in $PATH` on stderr.
//!
//! Exit codes are the process's own, `128+N` when it was killed by signal N.
//!
//! With [`Output::Terminal`] the command (or an exec'd process) gets a pseudo-terminal of
//! the sandbox's own devpts as its controlling terminal and stdio, and its master comes back
//! to the caller over a console socket (`KILN_SANDBOX_CONSOLE_FD`; see `console.rs`).
//!
//! With [`Executor::run_observed`] the caller also passes a *start pipe*
//! (`KILN_SANDBOX_START_FD`): the outer helper writes `pid PID START_TIME` for pid 1 right
//! after forking it, and pid 1 writes `ready` once the rootfs is entered, the hostname set and
//! the cgroup joined, just before it forks the command; the caller reports pid 1 as a
//! [`HostProcess`] when it has both. (The outer helper reads pid 1's start time through a
//! `/proc` it opened before the fork: pid 1's `pivot_root` moves the root of the mount
//! namespace they share, the outer helper's included.) A start that is neither reported nor
//! refused within [`START_TIMEOUT`] ([`Executor::with_start_timeout`]) kills the sandbox
//! and fails the run. Pid 1 forwards to the command not only the signals above
//! but every signal a process may handle (as tini does), so that a signal sent to pid 1 from
//! the host (`kiln kill -s SIG`) reaches the command.
//!
//! # Joining a running sandbox
//!
//! [`Executor::exec_in`] starts the same helper with `KILN_SANDBOX_MODE=exec` and an exec
//! request (pid 1 as a [`HostProcess`] and an [`ExecSpec`]) on the spec pipe. The helper
//! joins pid 1's cgroups and, with one `setns` on a pidfd, its mount, pid, ipc, uts, net and
//! cgroup namespaces, then forks the process, which goes through the same code as a
//! sandbox's command (user, capabilities, `no_new_privs`, seccomp, exec): there is one copy
//! of that code. See `exec.rs` for the order of the steps and why.
//!
//! # Modules
//!
//! Dependencies point one way, down this list (a module uses only modules below it):
//!
//! ```text
//! lib        the API: re-exports, helper_main, mount
//! helper     the helper's entry point and protocol: report fds, spec, dispatch
//!   ├─ exec      join a running sandbox (setns, then sandbox::process)
//!   ├─ oci       the same sandbox through an external OCI runtime
//!   └─ sandbox   a new sandbox: namespaces, pid 1 (mod.rs)
//!        ├─ rootfs   overlay, /proc, /sys, /dev, /etc files, bind/tmpfs mounts, pivot_root
//!        └─ process  the command: user and groups, capabilities, seccomp, execve
//! run        the caller's side: Executor, spawning the helper, output, status
//! console    pseudo-terminals: made in the sandbox, the master sent to the caller
//! net        pasta for Network::Default
//! signals    forwarding and waiting in the helper
//! report     setup errors and the start pipe
//! security   capability sets and ulimits from docker's flags
//! cgroup, devices, mounts, seccomp, process (HostProcess), sys   mechanisms
//! spec       what the caller and the helper exchange (RunSpec, ExecSpec, env names)
//! ```
#![deny(missing_docs)]

use std::ffi::OsString;

mod cgroup;
mod console;
mod devices;
mod exec;
mod helper;
mod mounts;
mod net;
mod oci;
mod process;
mod report;
mod run;
mod sandbox;
mod seccomp;
mod security;
mod signals;
mod spec;
mod sys;

pub use cgroup::{CgroupError, SandboxCgroups};
pub use console::{set_window_size, window_size};
pub use run::{Console, Error, Executor, Output, Result, RunResult, Stream, START_TIMEOUT};
#[doc(hidden)]
pub use spec::TEST_REPORT_DELAY_ENV;
pub use spec::{
    parse_add_host, valid_hostname, AddHostError, BindMount, DeviceMapping, DeviceMappingError,
    ExecSpec, Network, PortMapping, ProcessOptions, Resources, RootFs, RunSpec, SandboxOptions,
    TmpfsMount, ERROR_FD_ENV, HELPER_ARG, SETUP_ERROR_PREFIX, SETUP_FAILED_EXIT,
};

/// A process another process can join: a sandbox's pid 1 for [`Executor::exec_in`].
pub use process::HostProcess;
pub use security::{normalize_capability, SecurityError, Ulimit};

pub mod perf {
    //! Start-latency measurements behind the choice of mechanism.
    //!
    //! Host: Linux 6.18, 2 cores, hybrid cgroup v1; release build (`cargo build --release
    //! -p kiln`); busybox rootfs from `scripts/lib.sh`'s `busybox_rootfs_tar`, imported with
    //! `kiln --root /tmp/kr import -c 'CMD ["sh"]' bb.tar busybox:latest` and, for runc,
    //! unpacked into `/tmp/bundle/rootfs` with `runc spec` (terminal off, args `true`).
    //! `hyperfine -N --warmup 5 -r 60` on a quiet machine:
    //!
    //! | command | mean ± σ | min |
    //! | --- | --- | --- |
    //! | `kiln --root /tmp/kr run --rm busybox:latest true` | 14.1 ± 1.6 ms | 13.3 ms |
    //! | `runc run --bundle /tmp/bundle bench` (Debian runc 1.1) | 27.2 ± 5.7 ms | 18.4 ms |
    //! | sandbox only, as for a RUN step (`kiln __kiln-sandbox SPEC`: overlay, /proc, /dev, /etc files, pivot_root, seccomp, `true`, teardown) | 10.5 ± 1.6 ms | 8.5 ms |
    //! | `unshare -f true` (process start-up baseline) | 1.5 ms | 1.4 ms |
    //! | `kiln --root /var/tmp/kr exec CTR true` ([`crate::Executor::exec_in`] via the CLI, into `run -d busybox sleep`; measured with load ≈3 from other jobs, `-r 100`) | 8.8 ± 2.2 ms | 6.3 ms |
    //!
    //! So `kiln run` takes about 0.52 × `runc run` on the same rootfs, and a RUN step's
    //! sandbox setup + teardown stays under 15 ms. Through `--runtime runc` kiln pays runc's
    //! cost plus the bundle. `Network::Default` adds about 4 ms (pasta starts in parallel
    //! with the sandbox; see `net.rs`); resource limits add a cgroup mkdir/rmdir per
    //! controller (well under 1 ms each).
    //! Under load (parallel builds on the 2 cores) every number above grows 2-4×.
    //!
    //! Device rules (issue 11) give every sandbox a cgroup: here a v1 `devices` cgroup (mkdir,
    //! `a` to `devices.deny`, 11 lines to `devices.allow`, join, rmdir: under 1 ms). Joining
    //! through `cgroup.procs` cost 7-15 ms more per sandbox (an RCU grace period in the
    //! kernel; see `cgroup.rs`, `V1_JOIN_FILE`), so v1 cgroups are joined through `tasks`.
    //! Release builds, same rootfs, `hyperfine -N --warmup 5 -r 100`, load ≈3 from other jobs
    //! (so all numbers are above the quiet ones in the table):
    //!
    //! | command | mean ± σ | min |
    //! | --- | --- | --- |
    //! | `kiln run --rm busybox:latest true`, before device rules | 21.8 ± 4.3 ms | 15.9 ms |
    //! | the same with device rules, joined through `cgroup.procs` | 27.4 ± 8.4 ms | 13.6 ms |
    //! | the same with device rules, joined through `tasks` | 21.9 ± 4.1 ms | 13.0 ms |
    //! | `runc run --bundle /tmp/bundle bench` | 38.3 ± 7.5 ms | 23.1 ms |
    //!
    //! On a pure cgroup v2 host the BPF path still joins through `cgroup.procs` (v2 has no
    //! per-thread join outside threaded subtrees); creating pid 1 directly in its cgroup
    //! (`clone3` with `CLONE_INTO_CGROUP`) would avoid that cost and is not done yet.
}

/// The helper's entry point: `args` are the arguments after the program name, starting
/// with [`HELPER_ARG`]. Never returns.
pub fn helper_main(args: &[OsString]) -> ! {
    helper::main(args)
}

/// Mount helpers for other kiln code that must see a layered filesystem outside a sandbox
/// (the file ops of COPY run in a private mount namespace of a helper process).
pub mod mount {
    use std::path::{Path, PathBuf};

    /// Moves the calling (single-threaded) process into a new private mount namespace.
    /// (`unshare(CLONE_NEWNS)` implies `CLONE_FS`: called from one thread of a
    /// multi-threaded process, only that thread moves, and its cwd becomes its own; the
    /// tests rely on this.)
    pub fn private_mount_namespace() -> std::io::Result<()> {
        crate::mounts::private_mount_namespace()
    }

    /// Mounts an overlay at `target`: `lowers` top-most first; with `upper_work` it is
    /// writable, without it read-only (a single lower is bind-mounted read-only instead).
    /// Stays under the kernel's mount-option size limit for many layers.
    ///
    /// The legacy `mount(2)` option string is limited to one page (4096 bytes including the
    /// NUL). When the absolute layer paths do not fit, the calling process temporarily
    /// `chdir`s to the longest common parent directory of the lowers and passes them relative
    /// to it (overlayfs resolves relative layer paths against the mounting process's cwd), so
    /// only call this from a single-threaded process (or one whose other threads do not care
    /// about the cwd); the cwd is restored afterwards. When even that does not fit, the new
    /// mount API (`fsopen` with one `lowerdir+` option per layer, Linux 6.8+) is used; when
    /// that is unavailable, the error names the limit. Layer paths containing `:`, `,` or
    /// `\` are rejected (`InvalidInput`). Overlay mounts use `index=off,redirect_dir=off,
    /// metacopy=off` so that the upper dir is a plain diff (whiteouts and opaque dirs only).
    /// Without layers at all: with `upper_work`, an empty directory `.kiln-empty-lower` is
    /// created next to the work dir and used as the lower; without, an empty read-only tmpfs
    /// is mounted.
    pub fn overlay(
        lowers: &[PathBuf],
        upper_work: Option<(&Path, &Path)>,
        target: &Path,
    ) -> std::io::Result<()> {
        crate::mounts::overlay(lowers, upper_work, target)
    }
}
