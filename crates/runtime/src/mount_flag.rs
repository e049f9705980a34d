//! `--mount type=bind|volume|tmpfs,source=…,target=…,…`: docker's CSV fields and their
//! aliases (`src`/`source`, `dst`/`destination`/`target`, `ro`/`readonly`), parsed into the
//! mount kinds `-v` and `--tmpfs` already make. Unlike `-v`, a bind source that does not
//! exist is an error (docker's words), checked by [`MountFlag::check`].
//!
//! Not supported, and refused by name: `bind-propagation` other than docker's default
//! `rprivate`, `bind-recursive`/`bind-nonrecursive`, `volume-driver` other than `local`,
//! `volume-opt` and `volume-label` (kiln's volumes are plain directories). `volume-nocopy`
//! and `consistency` are accepted (the latter is ignored on Linux by docker too).

use crate::VolumeSpec;
use kiln_executor::{BindMount, TmpfsMount};
use std::path::{Path, PathBuf};

/// One `--mount`, resolved.
#[derive(Clone, Debug)]
pub enum MountFlag {
    /// `type=bind`.
    Bind(BindMount),
    /// `type=volume` (a new anonymous volume without `source`).
    Volume(VolumeSpec),
    /// `type=tmpfs`.
    Tmpfs(TmpfsMount),
}

/// A `--mount` that cannot be used, in docker's words.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MountFlagError {
    /// The value does not parse.
    #[error("invalid argument \"{spec}\" for \"--mount\" flag: {why}")]
    Invalid {
        /// The value as given.
        spec: String,
        /// What is wrong.
        why: String,
    },
    /// The mount cannot be made as asked.
    #[error("invalid mount config for type \"{kind}\": {why}")]
    Config {
        /// `bind`, `volume` or `tmpfs`.
        kind: &'static str,
        /// What is wrong.
        why: String,
    },
}

/// docker's boolean values for `readonly` and `volume-nocopy`.
fn boolean(v: &str) -> Option<bool> {
    match v.to_ascii_lowercase().as_str() {
        "" | "1" | "true" => Some(true),
        "0" | "false" => Some(false),
        _ => None,
    }
}

impl MountFlag {
    /// Parses one `--mount` value; a relative bind source is taken from `cwd` (docker 23+).
    pub fn parse(spec: &str, cwd: &Path) -> Result<MountFlag, MountFlagError> {
        let invalid = |why: String| MountFlagError::Invalid {
            spec: spec.to_string(),
            why,
        };
        let mut kind = "volume";
        let (mut source, mut target) = (String::new(), String::new());
        let mut readonly = false;
        let (mut size, mut mode) = (None, None);
        let (mut bind_opt, mut volume_opt, mut tmpfs_opt) = (None, None, None);
        for field in spec.split(',') {
            let (key, value) = match field.split_once('=') {
                Some((k, v)) => (k.trim().to_ascii_lowercase(), Some(v)),
                None => (field.trim().to_ascii_lowercase(), None),
            };
            let need = || {
                value.ok_or_else(|| {
                    invalid(format!("invalid field '{field}' must be a key=value pair"))
                })
            };
            match key.as_str() {
                "readonly" | "ro" => {
                    readonly = boolean(value.unwrap_or_default()).ok_or_else(|| {
                        invalid(format!(
                            "invalid value for {key}: {}",
                            value.unwrap_or_default()
                        ))
                    })?;
                }
                "volume-nocopy" => {
                    boolean(value.unwrap_or_default()).ok_or_else(|| {
                        invalid(format!(
                            "invalid value for {key}: {}",
                            value.unwrap_or_default()
                        ))
                    })?;
                    volume_opt.get_or_insert(key.clone());
                }
                "type" => {
                    kind = match need()?.to_ascii_lowercase().as_str() {
                        "bind" => "bind",
                        "volume" => "volume",
                        "tmpfs" => "tmpfs",
                        t => return Err(invalid(format!("invalid mount type \"{t}\""))),
                    }
                }
                "source" | "src" => need()?.clone_into(&mut source),
                "target" | "dst" | "destination" => need()?.clone_into(&mut target),
                "consistency" => {
                    need()?;
                }
                "bind-propagation" => {
                    let v = need()?;
                    if v != "rprivate" {
                        return Err(invalid(format!(
                            "bind-propagation={v} is not supported by kiln (its bind mounts \
                             are rprivate)"
                        )));
                    }
                    bind_opt.get_or_insert(key.clone());
                }
                "bind-nonrecursive" | "bind-recursive" => {
                    return Err(invalid(format!("{key} is not supported by kiln")));
                }
                "volume-driver" => {
                    let v = need()?;
                    if v != "local" {
                        return Err(invalid(format!(
                            "volume-driver={v} is not supported: kiln has the local driver only"
                        )));
                    }
                    volume_opt.get_or_insert(key.clone());
                }
                "volume-opt" | "volume-label" => {
                    return Err(invalid(format!(
                        "{key} is not supported: kiln's volumes are plain directories"
                    )));
                }
                "tmpfs-size" => {
                    let v = need()?;
                    size = Some(
                        kiln_units::parse_ram(v)
                            .map_err(|_| invalid(format!("invalid value for {key}: {v}")))?,
                    );
                    tmpfs_opt.get_or_insert(key.clone());
                }
                "tmpfs-mode" => {
                    let v = need()?;
                    mode = Some(
                        u32::from_str_radix(v, 8)
                            .map_err(|_| invalid(format!("invalid value for {key}: {v}")))?,
                    );
                    tmpfs_opt.get_or_insert(key.clone());
                }
                _ => return Err(invalid(format!("unexpected key '{key}' in '{field}'"))),
            }
        }
        let others = match kind {
            "bind" => [("volume", &volume_opt), ("tmpfs", &tmpfs_opt)],
            "volume" => [("bind", &bind_opt), ("tmpfs", &tmpfs_opt)],
            _ => [("bind", &bind_opt), ("volume", &volume_opt)],
        };
        if let Some((family, _)) = others.iter().find(|(_, o)| o.is_some()) {
            return Err(invalid(format!(
                "cannot mix '{family}-*' options with mount type '{kind}'"
            )));
        }
        if target.is_empty() {
            return Err(invalid("target is required".into()));
        }
        let config = |why: &str| MountFlagError::Config {
            kind,
            why: why.to_string(),
        };
        if !target.starts_with('/') {
            return Err(config(&format!(
                "invalid mount path: '{target}' mount path must be absolute"
            )));
        }
        Ok(match kind {
            "bind" => {
                if source.is_empty() {
                    return Err(config("field Source must not be empty"));
                }
                // `./html` is `CWD/html`.
                let relative: PathBuf = Path::new(&source)
                    .components()
                    .filter(|c| *c != std::path::Component::CurDir)
                    .collect();
                MountFlag::Bind(BindMount {
                    source: cwd.join(relative),
                    destination: target,
                    readonly,
                })
            }
            "volume" => {
                if !source.is_empty() && !crate::valid_volume_name(&source) {
                    return Err(config(&crate::Error::InvalidVolumeName(source).to_string()));
                }
                MountFlag::Volume(VolumeSpec {
                    name: (!source.is_empty()).then_some(source),
                    destination: target,
                    readonly,
                })
            }
            _ => {
                if !source.is_empty() {
                    return Err(config("field Source must not be specified"));
                }
                if readonly {
                    return Err(config("field ReadOnly must not be specified"));
                }
                MountFlag::Tmpfs(TmpfsMount {
                    destination: target,
                    size,
                    mode,
                })
            }
        })
    }

    /// docker's check at create: a bind source must exist (`-v` would create it).
    pub fn check(&self) -> Result<(), MountFlagError> {
        match self {
            MountFlag::Bind(b) if !b.source.exists() => Err(MountFlagError::Config {
                kind: "bind",
                why: format!("bind source path does not exist: {}", b.source.display()),
            }),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<MountFlag, String> {
        MountFlag::parse(s, Path::new("/work")).map_err(|e| e.to_string())
    }

    #[test]
    fn each_type_with_docker_aliases() {
        let bind = |s: &str| match parse(s).unwrap() {
            MountFlag::Bind(b) => (b.source.display().to_string(), b.destination, b.readonly),
            m => panic!("{s}: {m:?}"),
        };
        assert_eq!(
            bind("type=bind,src=/srv,dst=/x,ro"),
            ("/srv".into(), "/x".into(), true)
        );
        assert_eq!(
            bind("type=bind,source=./html,destination=/x,readonly=false"),
            ("/work/html".into(), "/x".into(), false)
        );
        assert!(matches!(
            parse("source=data,target=/d,volume-nocopy").unwrap(),
            MountFlag::Volume(VolumeSpec { name: Some(n), readonly: false, .. }) if n == "data"
        ));
        assert!(matches!(
            parse("type=volume,target=/d,ro=1").unwrap(),
            MountFlag::Volume(VolumeSpec {
                name: None,
                readonly: true,
                ..
            })
        ));
        assert!(matches!(
            parse("type=tmpfs,target=/t,tmpfs-size=1m,tmpfs-mode=1770").unwrap(),
            MountFlag::Tmpfs(TmpfsMount { destination, size: Some(1_048_576), mode: Some(0o1770) })
                if destination == "/t"
        ));
    }

    #[test]
    fn refusals_in_dockers_words() {
        for (s, want) in [
            (
                "type=bind,src=/a",
                "for \"--mount\" flag: target is required",
            ),
            (
                "type=bind,dst=/a",
                "invalid mount config for type \"bind\": field Source must not be empty",
            ),
            (
                "type=tmpfs,src=/a,dst=/b",
                "field Source must not be specified",
            ),
            (
                "type=bind,src=/a,dst=/b,tmpfs-size=1m",
                "cannot mix 'tmpfs-*' options with mount type 'bind'",
            ),
            (
                "type=volume,dst=/b,bind-propagation=rprivate",
                "cannot mix 'bind-*' options with mount type 'volume'",
            ),
            (
                "type=bind,src=/a,dst=/b,bind-propagation=shared",
                "bind-propagation=shared is not supported",
            ),
            ("type=nfs,dst=/b", "invalid mount type \"nfs\""),
            (
                "type=bind,src=/a,dst=/b,colour=red",
                "unexpected key 'colour' in 'colour=red'",
            ),
            (
                "type,dst=/b",
                "invalid field 'type' must be a key=value pair",
            ),
            ("type=bind,src=/a,dst=b", "mount path must be absolute"),
            (
                "type=tmpfs,dst=/b,tmpfs-mode=9",
                "invalid value for tmpfs-mode: 9",
            ),
            (
                "type=volume,src=a/b,dst=/b",
                "includes invalid characters for a local volume name",
            ),
        ] {
            let e = parse(s).unwrap_err();
            assert!(e.contains(want), "{s}: {e}");
        }
    }

    #[test]
    fn a_missing_bind_source_is_an_error() {
        let m = parse("type=bind,src=/nonexistent-kiln,dst=/x").unwrap();
        assert_eq!(
            m.check().unwrap_err().to_string(),
            "invalid mount config for type \"bind\": bind source path does not exist: \
             /nonexistent-kiln"
        );
        assert_eq!(
            MountFlag::parse("type=bind,src=/,dst=/x", Path::new("/"))
                .unwrap()
                .check(),
            Ok(())
        );
    }
}
