//! `--platform` of `run` and `create`: kiln runs the image it has (pulls fetch this host's
//! platform), so a platform is accepted when it names the image's platform and refused in
//! docker's words otherwise. Names are normalised as containerd's `platforms.Normalize`
//! (`x86_64` is `amd64`, `aarch64` is `arm64`, `arm64/v8` is `arm64`).

use serde_json::Value;

/// A `--platform` that cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PlatformError {
    /// Not `os[/arch[/variant]]` with a known os and architecture.
    #[error("\"{0}\": unknown operating system or architecture: invalid argument")]
    Unknown(String),
    /// The image is of another platform.
    #[error(
        "image with reference {reference} was found but does not match the specified \
         platform: wanted {wanted}, actual: {actual}"
    )]
    Mismatch {
        /// The image as named.
        reference: String,
        /// The platform asked for.
        wanted: String,
        /// The image's.
        actual: String,
    },
}

/// `os/arch[/variant]`, normalised.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Platform {
    os: String,
    arch: String,
    variant: String,
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.arch)?;
        if !self.variant.is_empty() {
            write!(f, "/{}", self.variant)?;
        }
        Ok(())
    }
}

const OSES: &[&str] = &[
    "aix",
    "android",
    "darwin",
    "dragonfly",
    "freebsd",
    "illumos",
    "ios",
    "js",
    "linux",
    "netbsd",
    "openbsd",
    "plan9",
    "solaris",
    "wasip1",
    "windows",
];

/// containerd's normalised architecture and variant.
fn arch(arch: &str, variant: &str) -> Option<(String, String)> {
    let (a, v) = match (arch, variant) {
        ("x86_64" | "x86-64" | "amd64", v) => ("amd64", v),
        ("i386" | "386", v) => ("386", v),
        ("aarch64" | "arm64", "v8" | "8") => ("arm64", ""),
        ("aarch64" | "arm64", v) => ("arm64", v),
        ("armhf", _) => ("arm", "v7"),
        ("armel", _) => ("arm", "v6"),
        ("arm", "" | "7") => ("arm", "v7"),
        ("arm", "5" | "6" | "8") => ("arm", variant),
        (
            a @ ("arm" | "ppc64le" | "ppc64" | "s390x" | "riscv64" | "mips64le" | "mips64"
            | "mipsle" | "mips" | "loong64" | "wasm"),
            v,
        ) => (a, v),
        _ => return None,
    };
    let v = match v {
        "5" | "6" | "7" | "8" => format!("v{v}"),
        v => v.to_string(),
    };
    Some((a.to_string(), v))
}

/// This host's platform (`linux/amd64` on x86-64).
fn host() -> Platform {
    let (a, v) = arch(std::env::consts::ARCH, "").unwrap_or_default();
    Platform {
        os: "linux".into(),
        arch: a,
        variant: v,
    }
}

impl std::str::FromStr for Platform {
    type Err = PlatformError;

    fn from_str(s: &str) -> Result<Platform, PlatformError> {
        let unknown = || PlatformError::Unknown(s.to_string());
        let lower = s.to_ascii_lowercase();
        let parts: Vec<&str> = lower.split('/').collect();
        let (os, a, v) = match parts.as_slice() {
            // One part: an os (with this host's architecture) or an architecture (linux).
            [one] if OSES.contains(one) => {
                let h = host();
                return Ok(Platform {
                    os: (*one).to_string(),
                    ..h
                });
            }
            [one] => ("linux", *one, ""),
            [os, a] => (*os, *a, ""),
            [os, a, v] => (*os, *a, *v),
            _ => return Err(unknown()),
        };
        if !OSES.contains(&os) {
            return Err(unknown());
        }
        let (arch, variant) = arch(a, v).ok_or_else(unknown)?;
        Ok(Platform {
            os: os.to_string(),
            arch,
            variant,
        })
    }
}

/// The platform of an image config (`os`, `architecture`, `variant`); `None` when it says
/// none.
fn of_image(config: &Value) -> Option<Platform> {
    let os = config["os"].as_str()?;
    let a = config["architecture"].as_str()?;
    let v = config["variant"].as_str().unwrap_or_default();
    let (arch, variant) = arch(a, v).unwrap_or((a.to_string(), v.to_string()));
    Some(Platform {
        os: os.to_string(),
        arch,
        variant,
    })
}

/// Checks that `--platform` `wanted` parses, as docker does before anything else.
pub fn check_platform_name(wanted: &str) -> Result<(), PlatformError> {
    wanted.parse::<Platform>().map(|_| ())
}

/// Whether the image (`config`, named `reference`) is of platform `wanted`; a variant only
/// counts when both name one.
pub(crate) fn check(reference: &str, wanted: &str, config: &Value) -> Result<(), PlatformError> {
    let want: Platform = wanted.parse()?;
    let Some(actual) = of_image(config) else {
        return Ok(());
    };
    let variant_ok =
        want.variant.is_empty() || actual.variant.is_empty() || want.variant == actual.variant;
    if want.os == actual.os && want.arch == actual.arch && variant_ok {
        return Ok(());
    }
    Err(PlatformError::Mismatch {
        reference: reference.to_string(),
        wanted: want.to_string(),
        actual: actual.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn names_normalise_as_containerd() {
        let p = |s: &str| s.parse::<Platform>().unwrap().to_string();
        assert_eq!(p("linux/x86_64"), "linux/amd64");
        assert_eq!(p("linux/aarch64"), "linux/arm64");
        assert_eq!(p("linux/arm64/v8"), "linux/arm64");
        assert_eq!(p("linux/arm"), "linux/arm/v7");
        assert_eq!(p("Linux/AMD64"), "linux/amd64");
        assert_eq!(p("arm64"), "linux/arm64");
        assert_eq!(
            "foo".parse::<Platform>().unwrap_err().to_string(),
            "\"foo\": unknown operating system or architecture: invalid argument"
        );
        assert!("linux/amd64/v3/x".parse::<Platform>().is_err());
        assert!("plan10/amd64".parse::<Platform>().is_err());
    }

    #[test]
    fn the_images_platform_is_accepted_and_another_refused() {
        let amd = json!({"os": "linux", "architecture": "amd64"});
        assert_eq!(check("busybox", "linux/amd64", &amd), Ok(()));
        assert_eq!(check("busybox", "linux/x86_64", &amd), Ok(()));
        assert_eq!(check("busybox", "linux/amd64/v3", &amd), Ok(()));
        assert_eq!(
            check("busybox", "linux/arm64", &amd)
                .unwrap_err()
                .to_string(),
            "image with reference busybox was found but does not match the specified \
             platform: wanted linux/arm64, actual: linux/amd64"
        );
        let arm = json!({"os": "linux", "architecture": "arm64", "variant": "v8"});
        assert_eq!(check("x", "linux/arm64", &arm), Ok(()));
        assert!(check("x", "windows/arm64", &arm).is_err());
        // An image that names no platform is taken as it is.
        assert_eq!(check("x", "linux/s390x", &json!({})), Ok(()));
    }
}
