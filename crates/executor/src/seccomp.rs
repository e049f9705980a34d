//! Docker's default seccomp profile, applied to the sandboxed command (not to privileged
//! sandboxes).
//!
//! The allow-list below follows moby's `profiles/seccomp/default.json` (the profile Docker
//! applies to every container that does not ask for another one): the default action is
//! `ERRNO(EPERM)`; the syscalls listed there unconditionally are allowed; the entries gated on
//! capabilities are kept only for capabilities in Docker's default set (`chroot` for
//! `CAP_SYS_CHROOT`; nothing for `CAP_SYS_ADMIN`, `CAP_SYS_MODULE`, `CAP_SYS_BOOT`, …), and the
//! argument-filtered entries are reproduced: `socket` for every family but `AF_VSOCK`,
//! `personality` for the five personas Docker allows, `clone` without any `CLONE_NEW*` flag,
//! and `clone3` failing with `ENOSYS` (so that libcs fall back to `clone`, whose flags can be
//! checked). `ptrace`, `process_vm_readv` and `process_vm_writev` are allowed as in Docker for
//! kernels ≥ 4.8 (the pid namespace and the capability bounding set already confine them).
//! `fchmodat2` (Linux 6.6, used by glibc ≥ 2.39) is allowed as in newer moby profiles.
//!
//! Only the native ABI is admitted (seccompiler checks the audit architecture; 32-bit and
//! x32 syscalls are refused), so the 32-bit-only names of Docker's list (`chown32`,
//! `_llseek`, `socketcall`, …) do not appear here. [`ALLOWED`] is also used for the OCI
//! bundle written for `--runtime` (see `oci.rs`).

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};
use std::collections::BTreeMap;

macro_rules! syscalls {
    ($($name:ident),* $(,)?) => {
        &[$((stringify!($name), libc::$name as i64)),*]
    };
}

/// Syscalls allowed with any arguments, as `(name, number)` (names with a `SYS_` prefix).
#[rustfmt::skip]
pub(crate) const ALLOWED: &[(&str, i64)] = syscalls![
    SYS_accept, SYS_accept4, SYS_adjtimex, SYS_bind, SYS_brk, SYS_capget, SYS_capset,
    SYS_chdir, SYS_chroot, SYS_clock_adjtime, SYS_clock_getres, SYS_clock_gettime,
    SYS_clock_nanosleep, SYS_close, SYS_close_range, SYS_connect, SYS_copy_file_range,
    SYS_dup, SYS_dup3, SYS_epoll_create1, SYS_epoll_ctl, SYS_epoll_pwait, SYS_epoll_pwait2,
    SYS_eventfd2, SYS_execve, SYS_execveat, SYS_exit, SYS_exit_group, SYS_faccessat,
    SYS_faccessat2, SYS_fadvise64, SYS_fallocate, SYS_fanotify_mark, SYS_fchdir, SYS_fchmod,
    SYS_fchmodat, SYS_fchmodat2, SYS_fchown, SYS_fchownat, SYS_fcntl, SYS_fdatasync,
    SYS_fgetxattr, SYS_flistxattr, SYS_flock, SYS_fremovexattr, SYS_fsetxattr, SYS_fstat,
    SYS_fstatfs, SYS_fsync, SYS_ftruncate, SYS_futex, SYS_futex_waitv, SYS_getcpu,
    SYS_getcwd, SYS_getdents64, SYS_getegid, SYS_geteuid, SYS_getgid, SYS_getgroups,
    SYS_getitimer, SYS_getpeername, SYS_getpgid, SYS_getpid, SYS_getppid, SYS_getpriority,
    SYS_getrandom, SYS_getresgid, SYS_getresuid, SYS_getrlimit, SYS_get_robust_list,
    SYS_getrusage, SYS_getsid, SYS_getsockname, SYS_getsockopt, SYS_gettid,
    SYS_gettimeofday, SYS_getuid, SYS_getxattr, SYS_inotify_add_watch, SYS_inotify_init1,
    SYS_inotify_rm_watch, SYS_io_cancel, SYS_ioctl, SYS_io_destroy, SYS_io_getevents,
    SYS_ioprio_get, SYS_ioprio_set, SYS_io_setup, SYS_io_submit,
    SYS_io_uring_enter, SYS_io_uring_register, SYS_io_uring_setup, SYS_kill,
    SYS_landlock_add_rule, SYS_landlock_create_ruleset, SYS_landlock_restrict_self,
    SYS_lgetxattr, SYS_linkat, SYS_listen, SYS_listxattr, SYS_llistxattr, SYS_lremovexattr,
    SYS_lseek, SYS_lsetxattr, SYS_madvise, SYS_membarrier, SYS_memfd_create,
    SYS_memfd_secret, SYS_mincore, SYS_mkdirat, SYS_mknodat, SYS_mlock, SYS_mlock2,
    SYS_mlockall, SYS_mmap, SYS_mprotect, SYS_mq_getsetattr, SYS_mq_notify, SYS_mq_open,
    SYS_mq_timedreceive, SYS_mq_timedsend, SYS_mq_unlink, SYS_mremap, SYS_msgctl,
    SYS_msgget, SYS_msgrcv, SYS_msgsnd, SYS_msync, SYS_munlock, SYS_munlockall, SYS_munmap,
    SYS_name_to_handle_at, SYS_nanosleep, SYS_newfstatat, SYS_openat, SYS_openat2,
    SYS_pidfd_open, SYS_pidfd_send_signal, SYS_pipe2, SYS_pkey_alloc, SYS_pkey_free,
    SYS_pkey_mprotect, SYS_ppoll, SYS_prctl, SYS_pread64, SYS_preadv, SYS_preadv2,
    SYS_prlimit64, SYS_process_mrelease, SYS_process_vm_readv, SYS_process_vm_writev,
    SYS_pselect6, SYS_ptrace, SYS_pwrite64, SYS_pwritev, SYS_pwritev2, SYS_read,
    SYS_readahead, SYS_readlinkat, SYS_readv, SYS_recvfrom, SYS_recvmmsg, SYS_recvmsg,
    SYS_remap_file_pages, SYS_removexattr, SYS_renameat, SYS_renameat2, SYS_restart_syscall,
    SYS_rseq, SYS_rt_sigaction, SYS_rt_sigpending, SYS_rt_sigprocmask, SYS_rt_sigqueueinfo,
    SYS_rt_sigreturn, SYS_rt_sigsuspend, SYS_rt_sigtimedwait, SYS_rt_tgsigqueueinfo,
    SYS_sched_getaffinity, SYS_sched_getattr, SYS_sched_getparam,
    SYS_sched_get_priority_max, SYS_sched_get_priority_min, SYS_sched_getscheduler,
    SYS_sched_rr_get_interval, SYS_sched_setaffinity, SYS_sched_setattr,
    SYS_sched_setparam, SYS_sched_setscheduler, SYS_sched_yield, SYS_seccomp, SYS_semctl,
    SYS_semget, SYS_semop, SYS_semtimedop, SYS_sendfile, SYS_sendmmsg, SYS_sendmsg,
    SYS_sendto, SYS_setfsgid, SYS_setfsuid, SYS_setgid, SYS_setgroups, SYS_setitimer,
    SYS_setpgid, SYS_setpriority, SYS_setregid, SYS_setresgid, SYS_setresuid, SYS_setreuid,
    SYS_setrlimit, SYS_set_robust_list, SYS_setsid, SYS_setsockopt, SYS_set_tid_address,
    SYS_setuid, SYS_setxattr, SYS_shmat, SYS_shmctl, SYS_shmdt, SYS_shmget, SYS_shutdown,
    SYS_sigaltstack, SYS_signalfd4, SYS_socketpair, SYS_splice, SYS_statfs, SYS_statx,
    SYS_symlinkat, SYS_sync, SYS_sync_file_range, SYS_syncfs, SYS_sysinfo, SYS_tee,
    SYS_tgkill, SYS_timer_create, SYS_timer_delete, SYS_timer_getoverrun,
    SYS_timer_gettime, SYS_timer_settime, SYS_timerfd_create, SYS_timerfd_gettime,
    SYS_timerfd_settime, SYS_times, SYS_tkill, SYS_truncate, SYS_umask, SYS_uname,
    SYS_unlinkat, SYS_utimensat, SYS_vmsplice, SYS_wait4, SYS_waitid, SYS_write, SYS_writev,
];

/// The legacy syscalls of x86_64 in Docker's list (absent from the generic syscall table).
#[cfg(target_arch = "x86_64")]
#[rustfmt::skip]
pub(crate) const ALLOWED_ARCH: &[(&str, i64)] = syscalls![
    SYS_access, SYS_alarm, SYS_arch_prctl, SYS_chmod, SYS_chown, SYS_creat, SYS_dup2,
    SYS_epoll_create, SYS_epoll_ctl_old, SYS_epoll_wait, SYS_epoll_wait_old, SYS_eventfd,
    SYS_fork, SYS_futimesat, SYS_getdents, SYS_getpgrp, SYS_get_thread_area,
    SYS_inotify_init, SYS_lchown, SYS_link, SYS_lstat, SYS_mkdir, SYS_mknod, SYS_modify_ldt,
    SYS_open, SYS_pause, SYS_pipe, SYS_poll, SYS_readlink, SYS_rename, SYS_rmdir,
    SYS_select, SYS_set_thread_area, SYS_signalfd, SYS_stat, SYS_symlink, SYS_time,
    SYS_unlink, SYS_utime, SYS_utimes, SYS_vfork, SYS_io_pgetevents,
];

#[cfg(target_arch = "x86_64")]
#[allow(non_upper_case_globals)]
mod libc {
    pub(super) use ::libc::*;
    /// Not named by `libc` for x86_64 (shadows the glob import).
    pub(super) const SYS_io_pgetevents: ::libc::c_long = 333;
}

/// The legacy syscalls of other architectures (none on aarch64), and `io_pgetevents`, which
/// `libc` does not name on every target.
#[cfg(target_arch = "aarch64")]
pub(crate) const ALLOWED_ARCH: &[(&str, i64)] = &[("SYS_io_pgetevents", 292)];
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
pub(crate) const ALLOWED_ARCH: &[(&str, i64)] = &[];

/// `AF_VSOCK`: the one socket family Docker's profile refuses.
pub(crate) const AF_VSOCK: u64 = 40;
/// The personas `personality(2)` may select (Docker's list: `PER_LINUX`, `PER_LINUX32`,
/// `UNAME26`, `UNAME26|PER_LINUX32`, and the query `0xffffffff`).
pub(crate) const PERSONAS: &[u64] = &[0, 8, 0x20000, 0x20008, 0xffff_ffff];
/// `CLONE_NEWNS|CLONE_NEWCGROUP|CLONE_NEWUTS|CLONE_NEWIPC|CLONE_NEWUSER|CLONE_NEWPID|
/// CLONE_NEWNET`: `clone` is allowed only without these.
pub(crate) const CLONE_NS_FLAGS: u64 = 0x7E02_0000;

/// Why the profile could not be built or installed (seccompiler's messages).
#[derive(Debug, thiserror::Error)]
pub(crate) enum SeccompError {
    /// Building the BPF programs failed.
    #[error(transparent)]
    Build(#[from] seccompiler::BackendError),
    /// The kernel refused a program.
    #[error(transparent)]
    Install(#[from] seccompiler::Error),
    /// The kernel refused a program installed without `no_new_privs`.
    #[error("seccomp(SECCOMP_SET_MODE_FILTER): {0}")]
    InstallPrivileged(#[source] std::io::Error),
}

fn arch() -> Result<TargetArch, SeccompError> {
    Ok(TargetArch::try_from(std::env::consts::ARCH)?)
}

fn cond(index: u8, op: SeccompCmpOp, value: u64) -> Result<SeccompCondition, SeccompError> {
    Ok(SeccompCondition::new(
        index,
        SeccompCmpArgLen::Qword,
        op,
        value,
    )?)
}

fn rule(conditions: Vec<SeccompCondition>) -> Result<SeccompRule, SeccompError> {
    Ok(SeccompRule::new(conditions)?)
}

/// The BPF programs implementing the profile, in the order they must be installed: the
/// allow-list (default `ERRNO(EPERM)`), then the `clone3` → `ENOSYS` filter (when several
/// filters return `ERRNO`, the one installed last decides the errno).
pub(crate) fn programs() -> Result<Vec<BpfProgram>, SeccompError> {
    let arch = arch()?;
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = ALLOWED
        .iter()
        .chain(ALLOWED_ARCH)
        .map(|&(_, nr)| (nr, Vec::new()))
        .collect();
    rules.insert(
        libc::SYS_socket,
        vec![rule(vec![cond(0, SeccompCmpOp::Ne, AF_VSOCK)?])?],
    );
    rules.insert(
        libc::SYS_personality,
        PERSONAS
            .iter()
            .map(|&p| rule(vec![cond(0, SeccompCmpOp::Eq, p)?]))
            .collect::<Result<_, _>>()?,
    );
    rules.insert(
        libc::SYS_clone,
        vec![rule(vec![cond(
            0,
            SeccompCmpOp::MaskedEq(CLONE_NS_FLAGS),
            0,
        )?])?],
    );
    let allow = SeccompFilter::new(
        rules,
        SeccompAction::Errno(libc::EPERM as u32),
        SeccompAction::Allow,
        arch,
    )?;
    let clone3 = SeccompFilter::new(
        [(libc::SYS_clone3, Vec::new())].into_iter().collect(),
        SeccompAction::Allow,
        SeccompAction::Errno(libc::ENOSYS as u32),
        arch,
    )?;
    Ok(vec![allow.try_into()?, clone3.try_into()?])
}

/// Installs `programs` on the calling thread (`no_new_privs` must be set, or the caller must
/// hold `CAP_SYS_ADMIN`).
/// Installs `programs` without setting `no_new_privs` (`--security-opt
/// no-new-privileges=false`; seccompiler's `apply_filter` always sets it). Takes
/// CAP_SYS_ADMIN in the caller.
pub(crate) fn apply_keeping_privs(programs: &[BpfProgram]) -> Result<(), SeccompError> {
    for p in programs.iter().filter(|p| !p.is_empty()) {
        let len = u16::try_from(p.len()).map_err(|_| {
            SeccompError::InstallPrivileged(std::io::Error::from_raw_os_error(libc::EINVAL))
        })?;
        let prog = libc::sock_fprog {
            len,
            // seccompiler's sock_filter has the kernel's layout (as libc's).
            filter: p.as_ptr().cast::<libc::sock_filter>().cast_mut(),
        };
        // SAFETY: the kernel copies the program; `p` outlives the call.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_seccomp,
                libc::SECCOMP_SET_MODE_FILTER,
                0,
                &raw const prog,
            )
        };
        if rc < 0 {
            return Err(SeccompError::InstallPrivileged(
                std::io::Error::last_os_error(),
            ));
        }
    }
    Ok(())
}

pub(crate) fn apply(programs: &[BpfProgram]) -> Result<(), SeccompError> {
    for p in programs {
        seccompiler::apply_filter(p)?;
    }
    Ok(())
}

/// The names of the unconditionally allowed syscalls (without the `SYS_` prefix), for OCI
/// bundles.
pub(crate) fn allowed_names() -> impl Iterator<Item = &'static str> {
    ALLOWED
        .iter()
        .chain(ALLOWED_ARCH)
        .map(|(n, _)| n.trim_start_matches("SYS_"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn programs_compile() {
        let p = super::programs().unwrap();
        assert_eq!(p.len(), 2);
        assert!(p[0].len() > super::ALLOWED.len());
    }
}
