//! Fuzzes the Dockerfile parser, and the conversion and lint passes behind it, on arbitrary
//! input: none of them may panic, loop or overflow, whatever the bytes.
#![no_main]

use kiln_frontend::{BuildOptions, ImageResolver, ResolveError, ResolvedImage};
use libfuzzer_sys::fuzz_target;

struct AnyImage;
impl ImageResolver for AnyImage {
    fn resolve(&self, reference: &str) -> Result<ResolvedImage, ResolveError> {
        if reference.len() > 64 {
            return Err(ResolveError::new("too long"));
        }
        Ok(ResolvedImage {
            reference: reference.into(),
            digest: "sha256:00".into(),
            config: Default::default(),
            onbuild: vec!["RUN x".into()],
        })
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(df) = kiln_frontend::parser::parse(text) {
        for i in &df.instructions {
            let _ = i.dump();
        }
        let opts = BuildOptions {
            file_name: "Dockerfile".into(),
            ..Default::default()
        };
        let _ = kiln_frontend::build(text, &opts, &AnyImage);
    }
    let _ = kiln_frontend::lint::lint(text, "Dockerfile");
});
