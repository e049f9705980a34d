//! The rootfs exporter (`-o type=local|tar`) flattening arbitrary layers one over the other
//! into one destination: errors are fine, a panic or any change outside the destination
//! (a canary tree next to it) is a finding.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let sb = common::sandbox();
    let dest = sb.dest();
    for layer in common::layers(data, &sb.canary) {
        if kiln_cache::apply_merged(&layer[..], dest.path(), "sha256:fuzz").is_err() {
            break;
        }
    }
    sb.check(dest.path());
});
