//! Shared by the executor's integration tests.
#![allow(dead_code)] // each test binary uses a part of it

/// True as root; prints why the test is skipped otherwise.
pub(crate) fn is_root() -> bool {
    kiln_testutil::require_root("namespaces, overlayfs, mounts")
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

/// `tool` on `PATH`.
pub(crate) fn which(tool: &str) -> Option<std::path::PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .map(|d| d.join(tool))
        .find(|p| p.is_file())
}

/// The executor, its helper being the test helper binary.
pub(crate) fn executor() -> kiln_executor::Executor {
    kiln_executor::Executor::new(vec![
        std::ffi::OsString::from(env!("CARGO_BIN_EXE_kiln-sandbox-test-helper")),
        std::ffi::OsString::from(kiln_executor::HELPER_ARG),
    ])
}

/// Everything a finished run sent through `Output::Capture`: (stdout, stderr).
pub(crate) fn drain<B: AsRef<[u8]>>(
    rx: &mut tokio::sync::mpsc::UnboundedReceiver<(kiln_executor::Stream, B)>,
) -> (String, String) {
    let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
    while let Ok((stream, chunk)) = rx.try_recv() {
        match stream {
            kiln_executor::Stream::Stdout => stdout.extend_from_slice(chunk.as_ref()),
            kiln_executor::Stream::Stderr => stderr.extend_from_slice(chunk.as_ref()),
        }
    }
    (
        String::from_utf8_lossy(&stdout).into_owned(),
        String::from_utf8_lossy(&stderr).into_owned(),
    )
}
