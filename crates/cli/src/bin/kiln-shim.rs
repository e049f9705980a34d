//! `kiln-shim`: the small binary that runs a detached container's shim (`kiln-shim
//! __kiln-shim DIR`), the sandbox helper (`kiln-shim __kiln-sandbox …`) and a network's name
//! server (`kiln-shim __kiln-dns …`, started by a detached container) exactly as `kiln`
//! does with the same arguments, and nothing else. `kiln` runs it when it is installed in the
//! same directory ([`kiln_runtime::companion_binary`]); it links only the runtime and the
//! executor, statically where `build.rs` can, so that a container's monitor stays small
//! (see the runtime's `companion.rs`).

use std::ffi::OsString;
use std::io::Write;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().collect();
    match args.get(1).and_then(|a| a.to_str()) {
        Some(kiln_executor::HELPER_ARG) => kiln_executor::helper_main(&args[1..]),
        // A network's name server, started by the first container of the network that starts
        // (under this shim when it is detached: `current_exe` is then this binary).
        Some(kiln_network::DNS_ARG) => ExitCode::from(
            u8::try_from(kiln_network::dns_main(&args[2..]).clamp(0, 255)).unwrap_or(u8::MAX),
        ),
        Some(kiln_runtime::SHIM_ARG) => {
            // Its sandbox helper and health probes run from this binary too.
            let exe = match std::env::current_exe() {
                Ok(exe) => exe,
                Err(e) => {
                    let _ = writeln!(
                        std::io::stderr(),
                        "error: cannot find the kiln-shim binary: {e}"
                    );
                    return ExitCode::from(1);
                }
            };
            let executor = kiln_executor::Executor::new(vec![
                exe.into_os_string(),
                kiln_executor::HELPER_ARG.into(),
            ]);
            let code = kiln_runtime::shim_main(&args[2..], executor);
            ExitCode::from(u8::try_from(code.clamp(0, 255)).unwrap_or(u8::MAX))
        }
        _ => {
            let _ = writeln!(
                std::io::stderr(),
                "kiln-shim is run by kiln: `kiln-shim {} CONTAINER_DIR` or `kiln-shim {} SPEC`",
                kiln_runtime::SHIM_ARG,
                kiln_executor::HELPER_ARG
            );
            ExitCode::from(2)
        }
    }
}
