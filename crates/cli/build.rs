//! Links `kiln-shim` (src/bin/kiln-shim.rs) statically on glibc targets.
//!
//! The shim is a detached container's monitor for as long as the container runs, and the
//! sandbox helper of every run, exec and RUN step. Dynamically linked, the C library, the
//! loader and libgcc map ~2 MB of pages into it (measured with /proc/PID/smaps: libc 1.3 MB,
//! ld.so 0.2 MB, libm, libgcc_s) before it does anything, and the loader's work is on every
//! start; statically linked it keeps only the pages of the one small binary it uses.
//!
//! Cargo has no per-binary target features: `-C target-feature=+crt-static` applies to a
//! whole build (including build scripts and proc macros, which cannot be static), so it
//! would make `kiln` itself static too. Instead, only this binary's link gets `-static-pie`
//! and a search directory in which the libraries rustc names for a
//! dynamic link (`-lgcc_s -lutil -lrt -lpthread -lm -ldl -lc`) are linker scripts naming
//! their static archives (libgcc_eh.a for libgcc_s, as `crt-static` does). That directory
//! must come before any other that holds libc.so: a dependency that adds the system library
//! directory to the search path (lzma-sys probing pkg-config did; liblzma-sys builds its own
//! now, see the root Cargo.toml) would make the shim a broken half-static binary, which every
//! container test notices at once. The archives come with Debian's libc6-dev and gcc,
//! which every build needs anyway. The helper needs
//! nothing that static glibc lacks: it resolves users from the image's /etc/passwd itself
//! (no NSS) and loads no modules.
//!
//! Where an archive is missing (or with `KILN_SHIM_DYNAMIC=1`) the shim is linked
//! dynamically, with a warning: it works the same, with the larger footprint.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The libraries of a dynamic link of a Rust binary on glibc and the archive each stands for.
const LIBS: [(&str, &str); 7] = [
    ("gcc_s", "libgcc_eh.a"),
    ("c", "libc.a"),
    ("m", "libm.a"),
    ("dl", "libdl.a"),
    ("pthread", "libpthread.a"),
    ("rt", "librt.a"),
    ("util", "libutil.a"),
];

const SHIM: &str = "kiln-shim";

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=KILN_SHIM_DYNAMIC");
    println!("cargo:rerun-if-env-changed=CC");
    let var = |k: &str| std::env::var(k).unwrap_or_default();
    if var("CARGO_CFG_TARGET_OS") != "linux"
        || var("CARGO_CFG_TARGET_ENV") != "gnu"
        // Already static (RUSTFLAGS): nothing to do.
        || var("CARGO_CFG_TARGET_FEATURE")
            .split(',')
            .any(|f| f == "crt-static")
        || var("KILN_SHIM_DYNAMIC") == "1"
    {
        return;
    }
    let out = PathBuf::from(var("OUT_DIR")).join("static-libs");
    match write_scripts(&out) {
        Ok(()) => {
            println!("cargo:rustc-link-arg-bin={SHIM}=-static-pie");
            println!("cargo:rustc-link-arg-bin={SHIM}=-L{}", out.display());
        }
        Err(why) => println!("cargo:warning={SHIM} is linked dynamically: {why}"),
    }
}

/// Writes `lib<NAME>.so` in `dir` for each of [`LIBS`], naming its archive; an archive the
/// C compiler does not find is an error.
fn write_scripts(dir: &Path) -> Result<(), String> {
    let compiler = std::env::var("CC").unwrap_or_else(|_| "cc".to_string());
    let mut scripts = Vec::new();
    for (lib, archive) in LIBS {
        let found = Command::new(&compiler)
            .arg(format!("-print-file-name={archive}"))
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .map(|p| PathBuf::from(p.trim()))
            // Not found, the compiler prints the bare name back.
            .filter(|p| p.is_absolute() && p.is_file())
            .ok_or_else(|| format!("{archive} not found (Debian: libc6-dev, gcc)"))?;
        scripts.push((
            format!("lib{lib}.so"),
            format!("INPUT({})\n", found.display()),
        ));
    }
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    for (name, text) in scripts {
        let path = dir.join(name);
        std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(())
}
