//! Shared by the executor's integration tests.

/// True as root; prints why the test is skipped otherwise.
pub fn is_root() -> bool {
    if nix::unistd::geteuid().is_root() {
        true
    } else {
        eprintln!("skipped: needs root");
        false
    }
}

/// Returns from the test (after printing why) unless running as root.
#[macro_export]
macro_rules! require_root {
    () => {
        if !common::is_root() {
            return;
        }
    };
}
