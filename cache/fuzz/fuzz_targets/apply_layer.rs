//! Layer application (pull, import, load, FROM) of arbitrary layers, each into a fresh
//! empty directory as a snapshot: errors are fine, a panic or any change outside the
//! destination (a canary tree next to it) is a finding.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let sb = common::sandbox();
    for layer in common::layers(data, &sb.canary) {
        let dest = sb.dest();
        let _ = kiln_cache::apply_snapshot(&layer[..], dest.path(), "sha256:fuzz");
        sb.check(dest.path());
    }
});
