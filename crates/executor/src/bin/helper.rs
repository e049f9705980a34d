//! The sandbox helper as a stand-alone binary, so that this crate's tests can run sandboxes
//! without the `kiln` binary. `kiln` itself dispatches `kiln __kiln-sandbox …` to the same
//! function.
fn main() {
    let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    kiln_executor::helper_main(&args)
}
