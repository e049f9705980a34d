//! Creating a container: its id, its unique name, its directory with the overlay's upper and
//! work dirs, `config.json` and a first `state.json`.

use crate::container::{io_err, now_millis, write_json_atomic, Config, Container, Containers};
use crate::container::{State, LAYOUT_VERSION};
use crate::{process, Error, Result, RunOptions};
use kiln_cache::Store;
use kiln_executor::{RootFs, RunSpec, SandboxOptions};
use kiln_oci::Layer;
use serde_json::Value;
use std::fs;

/// Adjectives and names for generated container names (`adjective_name`, as docker does).
const ADJECTIVES: &[&str] = &[
    "brave", "calm", "eager", "fancy", "gentle", "happy", "jolly", "keen", "lucid", "merry",
    "nifty", "proud", "quiet", "sharp", "swift", "tender", "upbeat", "vivid", "witty", "zen",
];
const NAMES: &[&str] = &[
    "babbage", "curie", "darwin", "euler", "faraday", "gauss", "hopper", "jackson", "kepler",
    "lovelace", "meitner", "noether", "pascal", "ritchie", "shannon", "thompson", "turing",
    "wozniak", "yalow", "zuse",
];

/// Whether `name` is a valid container name (docker's rule: `[a-zA-Z0-9][a-zA-Z0-9_.-]+`).
fn valid_name(name: &str) -> bool {
    let b = name.as_bytes();
    b.len() >= 2
        && b[0].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}

impl Containers {
    /// Creates a container for `opts` from an image (`layers`, `config`, named `image` by the
    /// user): state `created`, nothing running yet.
    pub fn create(
        &self,
        store: &Store,
        image: &str,
        layers: &[Layer],
        config: &Value,
        opts: &RunOptions,
    ) -> Result<Container> {
        let (args, env, cwd, user) = process(config, opts)?;
        if let Some(n) = &opts.name {
            if !valid_name(n) {
                return Err(Error::InvalidName(n.clone()));
            }
        }
        let mut lowers = Vec::with_capacity(layers.len());
        for l in layers.iter().rev() {
            lowers.push(store.snapshot(l)?);
        }
        let id = hex::encode(rand::random::<[u8; 32]>());
        let dir = self.dir().join(&id);
        let (upper, work) = (dir.join("upper"), dir.join("work"));
        let spec = RunSpec {
            rootfs: RootFs {
                lowers,
                upper: upper.clone(),
                work: work.clone(),
            },
            args,
            env,
            cwd,
            user,
            hostname: opts
                .hostname
                .clone()
                .unwrap_or_else(|| id[..12].to_string()),
            network: opts.network,
            mounts: opts.mounts.clone(),
            extra: SandboxOptions {
                create_etc_files: true,
                ..opts.extra.clone()
            },
        };

        let _lock = self.lock()?;
        let existing = self.list()?;
        let name = match &opts.name {
            Some(n) => {
                if let Some(c) = existing.iter().find(|c| c.config.name == *n) {
                    return Err(Error::NameInUse {
                        name: n.clone(),
                        id: c.config.id.clone(),
                    });
                }
                n.clone()
            }
            None => loop {
                let n = format!(
                    "{}_{}",
                    ADJECTIVES[rand::random::<usize>() % ADJECTIVES.len()],
                    NAMES[rand::random::<usize>() % NAMES.len()]
                );
                let n = if existing.iter().any(|c| c.config.name == n) {
                    format!("{n}_{}", &id[..4])
                } else {
                    n
                };
                if !existing.iter().any(|c| c.config.name == n) {
                    break n;
                }
            },
        };
        fs::create_dir_all(&upper).map_err(io_err(&upper))?;
        fs::create_dir_all(&work).map_err(io_err(&work))?;
        let container = Container {
            config: Config {
                version: LAYOUT_VERSION,
                id,
                name,
                image: image.to_string(),
                created: now_millis(),
                spec,
                remove: opts.remove,
                detach: opts.detach,
                interactive: opts.interactive,
                image_config: config.clone(),
            },
            state: State::default(),
            dir,
        };
        // The state first: a directory with a config is a container (see Containers::list).
        container.save_state()?;
        write_json_atomic(&container.dir.join("config.json"), &container.config)?;
        Ok(container)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn names() {
        for ok in ["ab", "web-1", "a.b_c", "X9"] {
            assert!(super::valid_name(ok), "{ok}");
        }
        for bad in ["", "a", "-ab", "_ab", "a b", "a/b", "é1"] {
            assert!(!super::valid_name(bad), "{bad}");
        }
    }
}
