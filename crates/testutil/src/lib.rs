//! Test-only helpers shared by the workspace's tests (a dev-dependency, never linked into kiln).
//!
//! The one decision here: **a test that cannot run must not pass in CI.** Tests that need root
//! or a tool (`docker-registry`, `skopeo`, `pasta`, …) call [`skip`] with the reason when it is
//! missing and return. On a developer's machine that prints `skipped: REASON` and the test
//! counts as passed, so `cargo test` works without the packages; with `KILN_TEST_STRICT=1` in
//! the environment (`.ci/run` sets it) [`skip`] panics instead, so a CI machine that lacks a
//! package or root fails instead of going green.
//!
//! What a host cannot offer at all (cgroup v2 controllers on a host that binds them to v1) is
//! not a skip: those tests are marked `#[ignore]` at build time by their crate's build script,
//! so `cargo test` reports them as ignored, never as passed.

use std::fmt::Display;
use std::path::PathBuf;

/// The variable that turns every [`skip`] into a failure.
pub const STRICT_VAR: &str = "KILN_TEST_STRICT";

/// True when skips are failures (`KILN_TEST_STRICT` set to anything but empty or `0`).
pub fn strict() -> bool {
    std::env::var_os(STRICT_VAR).is_some_and(|v| !v.is_empty() && v != "0")
}

/// Says why the calling test cannot run here. Prints `skipped: REASON` (straight to stderr:
/// the harness shows it with `--nocapture`), or panics under [`strict`] mode.
#[track_caller]
pub fn skip(reason: impl Display) {
    assert!(
        !strict(),
        "this test cannot run here ({STRICT_VAR} is set, so that is a failure): {reason}"
    );
    use std::io::Write;
    let _ = writeln!(std::io::stderr().lock(), "skipped: {reason}");
}

/// True as root; otherwise [`skip`]s with `why` (what the test needs root for).
#[track_caller]
pub fn require_root(why: &str) -> bool {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        return true;
    }
    skip(format_args!("needs root ({why})"));
    false
}

/// `tool` on `PATH`.
pub fn which(tool: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .map(|d| d.join(tool))
        .find(|p| p.is_file())
}

/// True when every tool is on `PATH`; otherwise [`skip`]s naming the first missing one.
#[track_caller]
pub fn require_tools(tools: &[&str]) -> bool {
    match tools.iter().find(|t| which(t).is_none()) {
        None => true,
        Some(t) => {
            skip(format_args!(
                "`{t}` is not installed (the README's test command installs it)"
            ));
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn which_finds_sh_and_not_nonsense() {
        assert!(which("sh").is_some());
        assert!(which("no-such-tool-anywhere-kiln").is_none());
        assert!(require_tools(&["sh"]));
    }
}
