//! The sandboxed process: the user it runs as (resolved against the sandbox's /etc/passwd
//! and /etc/group), its environment, the capabilities it keeps, `no_new_privs`, the seccomp
//! filter and the `execve`. The sandbox's command and a process joining a running sandbox
//! ([`crate::Executor::exec_in`]) both go through [`exec_process`]: there is one copy of
//! this code.

use crate::report::{exit, fail, OrFail};
use crate::security::{capability_set, last_cap};
use crate::spec::ProcessOptions;
use crate::sys::{cstr, write_all_fd};
use std::ffi::CString;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

pub(crate) const DEFAULT_PATH: &str =
    "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The user a process runs as.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct User {
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<u32>,
    pub home: String,
}

/// Why a user could not be resolved ([`resolve_user_in`]), with docker's messages.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum UserError {
    /// No such name (nor a number) in /etc/passwd.
    #[error("unable to find user {0}: no matching entries in passwd file")]
    UnknownUser(String),
    /// No such name (nor a number) in /etc/group.
    #[error("unable to find group {0}: no matching entries in group file")]
    UnknownGroup(String),
    /// The user's /etc/passwd entry has a uid that is not a number.
    #[error("bad uid in /etc/passwd for {0}")]
    BadUid(String),
    /// The user's /etc/passwd entry has a gid that is not a number.
    #[error("bad gid in /etc/passwd for {0}")]
    BadGid(String),
    /// The group's /etc/group entry has a gid that is not a number.
    #[error("bad gid in /etc/group for {0}")]
    BadGroupGid(String),
}

/// `env` plus a default `PATH` and the user's `HOME` when absent.
pub(crate) fn process_env(env: &[String], user: &User) -> Vec<String> {
    let mut env = env.to_vec();
    let has = |env: &[String], key: &str| {
        env.iter()
            .any(|e| e.split_once('=').map_or(e.as_str(), |(k, _)| k) == key)
    };
    if !has(&env, "PATH") {
        env.push(format!("PATH={DEFAULT_PATH}"));
    }
    if !has(&env, "HOME") {
        env.push(format!("HOME={}", user.home));
    }
    env
}

/// Resolves `user` against the current root's /etc/passwd and /etc/group.
pub(crate) fn resolve_user(user: &str) -> Result<User, UserError> {
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    let group = std::fs::read_to_string("/etc/group").unwrap_or_default();
    resolve_user_in(user, &passwd, &group)
}

/// Resolves `name`, `uid`, `name:group` or `uid:gid` (empty: root) against the contents of
/// /etc/passwd and /etc/group.
pub(crate) fn resolve_user_in(user: &str, passwd: &str, group: &str) -> Result<User, UserError> {
    let (user_part, group_part) = match user.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (user, None),
    };
    let user_part = if user_part.is_empty() { "0" } else { user_part };
    let numeric_uid = user_part.parse::<u32>().ok();
    let entries: Vec<Vec<&str>> = passwd
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|l| l.split(':').collect::<Vec<_>>())
        .filter(|f| f.len() >= 4)
        .collect();
    let entry = entries
        .iter()
        .find(|f| f[0] == user_part)
        .or_else(|| numeric_uid.and_then(|n| entries.iter().find(|f| f[2].parse() == Ok(n))));
    let (uid, mut gid, home, name) = match (entry, numeric_uid) {
        (Some(f), _) => (
            f[2].parse::<u32>()
                .map_err(|_| UserError::BadUid(f[0].to_string()))?,
            f[3].parse::<u32>()
                .map_err(|_| UserError::BadGid(f[0].to_string()))?,
            f.get(5)
                .filter(|h| !h.is_empty())
                .unwrap_or(&"/")
                .to_string(),
            Some(f[0]),
        ),
        (None, Some(n)) => (n, 0, "/".to_string(), None),
        (None, None) => return Err(UserError::UnknownUser(user_part.to_string())),
    };
    let groups: Vec<Vec<&str>> = group
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|l| l.split(':').collect::<Vec<_>>())
        .filter(|f| f.len() >= 3)
        .collect();
    let mut supplementary = Vec::new();
    match group_part {
        Some(g) if !g.is_empty() => {
            gid = match groups.iter().find(|f| f[0] == g) {
                Some(f) => f[2]
                    .parse()
                    .map_err(|_| UserError::BadGroupGid(g.to_string()))?,
                None => g
                    .parse()
                    .map_err(|_| UserError::UnknownGroup(g.to_string()))?,
            };
        }
        _ => {
            if let Some(name) = name {
                for f in &groups {
                    let members = f.get(3).copied().unwrap_or("");
                    if members.split(',').any(|m| m.trim() == name) {
                        if let Ok(g) = f[2].parse::<u32>() {
                            supplementary.push(g);
                        }
                    }
                }
            }
        }
    }
    let mut all = vec![gid];
    for g in supplementary {
        if !all.contains(&g) {
            all.push(g);
        }
    }
    Ok(User {
        uid,
        gid,
        groups: all,
        home,
    })
}

/// How a sandboxed process is started.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Launch {
    /// The sandbox's own command: a command that cannot be started exits 127 when it is
    /// not found and 126 otherwise, as with `docker run`.
    Command,
    /// A process started in a running sandbox by [`crate::Executor::exec_in`]: it gets
    /// `PR_SET_PDEATHSIG(SIGKILL)` once it has its final credentials (a credential change
    /// clears it), for a parent outside its pid namespace (`getppid()` is 0 while that
    /// parent lives), and exits 126 for any start failure, as with `docker exec`.
    Exec,
}

/// A sandboxed process (see [`Launch`]): drop privileges, set the environment, exec `args`.
pub(crate) fn exec_process(
    args: &[String],
    privileged: bool,
    opts: &ProcessOptions,
    user: &User,
    env: &[String],
    launch: Launch,
) -> ! {
    // Before setuid: raising a hard limit takes CAP_SYS_RESOURCE.
    for u in &opts.ulimits {
        if let Some((resource, limit)) = u.rlimit() {
            // SAFETY: plain system call with a valid rlimit.
            if unsafe { libc::setrlimit(resource, &raw const limit) } < 0 {
                fail(
                    &format!("setting ulimit {}", u.name),
                    io::Error::last_os_error(),
                );
            }
        }
    }
    drop_capabilities(privileged, opts);
    let seccomp = if privileged || opts.seccomp_unconfined {
        Vec::new()
    } else {
        crate::seccomp::programs().or_fail(|| "building the seccomp filter".into())
    };
    let no_new_privs = !privileged && opts.no_new_privileges != Some(false);
    if !seccomp.is_empty() && !no_new_privs {
        // Without no_new_privs a filter takes CAP_SYS_ADMIN, which we have only before
        // setuid (as runc).
        crate::seccomp::apply_keeping_privs(&seccomp)
            .or_fail(|| "installing the seccomp filter".into());
    }
    let groups: Vec<libc::gid_t> = user.groups.clone();
    // SAFETY: plain system calls with valid arguments.
    unsafe {
        if libc::setgroups(groups.len(), groups.as_ptr()) < 0 {
            fail("setgroups", io::Error::last_os_error());
        }
        if libc::setgid(user.gid) < 0 {
            fail("setgid", io::Error::last_os_error());
        }
        if libc::setuid(user.uid) < 0 {
            fail("setuid", io::Error::last_os_error());
        }
        if launch == Launch::Exec {
            libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGKILL as libc::c_ulong,
                0,
                0,
                0,
            );
            if libc::getppid() != 0 {
                // Reparented to the sandbox's pid 1: the parent is already gone.
                exit(128 + libc::SIGKILL);
            }
        }
        // Nothing of ours leaks into the process (stdio excepted).
        libc::syscall(
            libc::SYS_close_range,
            3u32,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        );
    }

    let cmd = &args[0];
    let path_var = env
        .iter()
        .rev()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or(DEFAULT_PATH);
    let program = if cmd.contains('/') {
        PathBuf::from(cmd)
    } else {
        match lookup(cmd, path_var) {
            Some(p) => p,
            None => exec_failed(
                launch,
                &format!("kiln: exec: {cmd:?}: executable file not found in $PATH\n"),
                127,
            ),
        }
    };
    let to_c = |s: &str| {
        cstr(s).unwrap_or_else(|_| {
            exec_failed(
                launch,
                "kiln: exec: argument or environment contains a NUL byte\n",
                126,
            )
        })
    };
    let argv: Vec<CString> = args.iter().map(|a| to_c(a)).collect();
    let envp: Vec<CString> = env.iter().map(|e| to_c(e)).collect();
    let program_c =
        cstr(&program).unwrap_or_else(|_| exec_failed(launch, "kiln: exec: NUL in path\n", 126));
    let mut argv_p: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
    argv_p.push(std::ptr::null());
    let mut envp_p: Vec<*const libc::c_char> = envp.iter().map(|e| e.as_ptr()).collect();
    envp_p.push(std::ptr::null());
    if no_new_privs {
        // SAFETY: plain prctl.
        if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } < 0 {
            fail("PR_SET_NO_NEW_PRIVS", io::Error::last_os_error());
        }
        if !seccomp.is_empty() {
            crate::seccomp::apply(&seccomp).or_fail(|| "installing the seccomp filter".into());
        }
    }
    // SAFETY: NULL-terminated arrays of valid C strings.
    unsafe { libc::execve(program_c.as_ptr(), argv_p.as_ptr(), envp_p.as_ptr()) };
    let e = io::Error::last_os_error();
    let (what, code) = match e.raw_os_error() {
        Some(libc::ENOENT | libc::ENOTDIR) => ("no such file or directory".to_string(), 127),
        Some(libc::EACCES) => ("permission denied".to_string(), 126),
        _ => (e.to_string(), 126),
    };
    exec_failed(
        launch,
        &format!("kiln: exec: {:?}: {what}\n", program.display().to_string()),
        code,
    )
}

fn exec_failed(launch: Launch, msg: &str, code: i32) -> ! {
    write_all_fd(2, msg.as_bytes());
    if launch == Launch::Command {
        crate::report::exec_failed();
    }
    exit(if launch == Launch::Exec { 126 } else { code })
}

/// `cmd` in the colon-separated `path` (an empty entry is the working directory).
pub(super) fn lookup(cmd: &str, path: &str) -> Option<PathBuf> {
    for dir in path.split(':') {
        let dir = if dir.is_empty() { "." } else { dir };
        let candidate = Path::new(dir).join(cmd);
        let Ok(meta) = std::fs::metadata(&candidate) else {
            continue;
        };
        if !meta.is_file() || meta.permissions().mode() & 0o111 == 0 {
            continue;
        }
        let Ok(c) = cstr(candidate.as_os_str()) else {
            continue;
        };
        // SAFETY: valid NUL-terminated path.
        if unsafe { libc::access(c.as_ptr(), libc::X_OK) } == 0 {
            return Some(candidate);
        }
    }
    None
}

/// Drops every capability outside docker's default set (as changed by `--cap-add` and
/// `--cap-drop`, see [`capability_set`]) from the bounding set and clears the inheritable
/// and ambient sets, so that even root in the sandbox has only those capabilities after
/// `execve`.
fn drop_capabilities(privileged: bool, opts: &ProcessOptions) {
    let last = last_cap();
    let keep = capability_set(privileged, &opts.cap_add, &opts.cap_drop, last);
    for cap in 0..=last {
        if keep.contains(&cap) {
            continue;
        }
        // SAFETY: plain prctl.
        if unsafe { libc::prctl(libc::PR_CAPBSET_DROP, libc::c_ulong::from(cap), 0, 0, 0) } < 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::EINVAL) {
                fail(&format!("dropping capability {cap}"), e);
            }
        }
    }
    #[repr(C)]
    struct CapHeader {
        version: u32,
        pid: libc::c_int,
    }
    #[repr(C)]
    #[derive(Clone, Copy, Default)]
    struct CapData {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    const VERSION_3: u32 = 0x2008_0522;
    let mut header = CapHeader {
        version: VERSION_3,
        pid: 0,
    };
    let mut data = [CapData::default(); 2];
    // SAFETY: capget/capset with a v3 header and two data structs.
    unsafe {
        if libc::syscall(libc::SYS_capget, &mut header, data.as_mut_ptr()) == 0 {
            for d in &mut data {
                d.inheritable = 0;
            }
            if libc::syscall(libc::SYS_capset, &mut header, data.as_ptr()) < 0 {
                fail(
                    "clearing inheritable capabilities",
                    io::Error::last_os_error(),
                );
            }
        }
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL,
            0,
            0,
            0,
        );
    }
}
