//! Which binary the shim and the sandbox helper run from.
//!
//! Both are the `kiln` binary re-executed with a first argument ([`SHIM_ARG`],
//! [`kiln_executor::HELPER_ARG`]) — or, when it is installed next to `kiln`, the small
//! [`SHIM_BINARY`] that answers the same two arguments and nothing else. It links only the
//! runtime and the executor (no command line parser, no HTTP client, no compression), and is
//! linked statically where the build finds static C libraries (see the cli crate's
//! `build.rs`), so that a detached container's monitor keeps 2.7 MB resident instead of the
//! 6.7 MB of pages that `kiln` and its shared libraries put in every process (measured with
//! /proc/PID/smaps, 2026-12-04), and a sandbox helper starts without loading a large
//! dynamic binary and its libraries. Both must come from the same build: the helper's
//! protocol with [`kiln_executor::Executor`] is not versioned.
//!
//! [`SHIM_ARG`]: crate::SHIM_ARG

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// File name of the small binary for the shim and the sandbox helper, looked for in the
/// directory of the `kiln` binary.
pub const SHIM_BINARY: &str = "kiln-shim";

/// The binary to run as the shim and the sandbox helper: [`SHIM_BINARY`] beside `kiln`
/// (the running `kiln` binary's path) when it is an executable file there, else `kiln`
/// itself.
pub fn companion_binary(kiln: &Path) -> PathBuf {
    let Some(dir) = kiln.parent() else {
        return kiln.to_path_buf();
    };
    let small = dir.join(SHIM_BINARY);
    match std::fs::metadata(&small) {
        Ok(m) if m.is_file() && m.permissions().mode() & 0o111 != 0 => small,
        _ => kiln.to_path_buf(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_small_binary_beside_kiln_when_executable_else_kiln() {
        let dir = tempfile::tempdir().unwrap();
        let kiln = dir.path().join("kiln");
        std::fs::write(&kiln, b"").unwrap();
        assert_eq!(companion_binary(&kiln), kiln);

        let small = dir.path().join(SHIM_BINARY);
        std::fs::write(&small, b"").unwrap();
        std::fs::set_permissions(&small, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(companion_binary(&kiln), kiln, "not executable: not used");

        std::fs::set_permissions(&small, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(companion_binary(&kiln), small);

        std::fs::remove_file(&small).unwrap();
        std::fs::create_dir(&small).unwrap();
        assert_eq!(companion_binary(&kiln), kiln, "a directory is not a binary");
    }
}
