//! The helper's entry point and its side of the protocol with [`crate::run`]: where to
//! report (the error and start pipes named in the environment), where the spec comes from
//! (the spec pipe, or the argument for a helper started by hand), and what to do with it:
//! join a running sandbox ([`crate::exec`]), run the sandbox through an external OCI
//! runtime ([`crate::oci`]), or create it ([`crate::sandbox`]).

use crate::cgroup::Cgroup;
use crate::report::{self, fail, OrFail};
use crate::spec::{
    RunSpec, CGROUP_ENV, ERROR_FD_ENV, HELPER_ARG, ID_ENV, MODE_ENV, RUNTIME_ENV, SPEC_FD_ENV,
    START_FD_ENV,
};
use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// An inherited fd named by the environment variable `var`, made close-on-exec (`None`
/// when unset, not a number, or not an open fd).
fn inherited_fd(var: &str) -> Option<libc::c_int> {
    let fd = std::env::var(var).ok()?.parse::<libc::c_int>().ok()?;
    // SAFETY: fcntl on an inherited fd; invalid fds just fail.
    (unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) } == 0).then_some(fd)
}

pub(crate) fn main(args: &[OsString]) -> ! {
    if let Some(fd) = inherited_fd(ERROR_FD_ENV) {
        report::set_error_fd(fd);
    }
    if let Some(fd) = inherited_fd(START_FD_ENV) {
        report::set_start_fd(fd);
    }
    std::env::remove_var(START_FD_ENV);
    if let Some(fd) = inherited_fd(crate::console::CONSOLE_FD_ENV) {
        crate::console::set_console_fd(fd);
    }
    std::env::remove_var(crate::console::CONSOLE_FD_ENV);
    // The spec comes on the fd named by SPEC_FD_ENV (how `Executor::run` sends it), or as
    // the argument (for running the helper by hand).
    let spec_fd = std::env::var(SPEC_FD_ENV)
        .ok()
        .and_then(|v| v.parse::<libc::c_int>().ok());
    let spec_bytes: Vec<u8> = match (spec_fd, args) {
        (Some(fd), [a]) if a == HELPER_ARG => {
            use std::io::Read;
            use std::os::fd::FromRawFd;
            // SAFETY: the fd was inherited for exactly this and is read once, here.
            let mut f = unsafe { std::fs::File::from_raw_fd(fd) };
            let mut buf = Vec::new();
            f.read_to_end(&mut buf)
                .or_fail(|| "reading the run spec".into());
            buf
        }
        (None, [a, json]) if a == HELPER_ARG => json.as_bytes().to_vec(),
        _ => fail("arguments", format!("usage: {HELPER_ARG} SPEC_JSON")),
    };
    std::env::remove_var(SPEC_FD_ENV);
    if std::env::var_os(MODE_ENV).is_some_and(|m| m == "exec") {
        std::env::remove_var(MODE_ENV);
        crate::exec::main(&spec_bytes);
    }
    let spec: RunSpec =
        serde_json::from_slice(&spec_bytes).or_fail(|| "parsing the run spec".into());
    if spec.args.is_empty() {
        fail("run spec", "no command");
    }
    // SAFETY: plain system call.
    unsafe { libc::umask(0o022) };
    let cgroup: Option<Cgroup> = std::env::var(CGROUP_ENV)
        .ok()
        .map(|c| serde_json::from_str(&c).or_fail(|| "parsing the cgroup".into()));
    let id = std::env::var(ID_ENV).unwrap_or_else(|_| format!("kiln-{}", std::process::id()));
    if let Ok(runtime) = std::env::var(RUNTIME_ENV) {
        crate::oci::main(&spec, Path::new(&runtime), &id);
    }
    crate::sandbox::main(&spec, cgroup.as_ref())
}
