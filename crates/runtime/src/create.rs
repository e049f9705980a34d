//! Creating a container: its id, its unique name, its directory with the overlay's upper and
//! work dirs, `config.json` and a first `state.json`.

use crate::container::{io_err, now_millis, write_json_atomic, Config, Container, Containers};
use crate::container::{valid_name, MountedVolume, State, LAYOUT_VERSION};
use crate::volume::{is_empty_dir, populate};
use crate::Volumes;
use crate::{process, CreateOptions, Error, Result};
use kiln_cache::Store;
use kiln_executor::{BindMount, RootFs, RunSpec, SandboxOptions};
use kiln_oci::Layer;
use serde_json::Value;
use std::collections::BTreeMap;
use std::fs;
use std::path::PathBuf;

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

impl Containers {
    /// Creates a container for `opts` from an image (`layers`, `config`, named `image` by the
    /// user): state `created`, nothing running yet.
    pub fn create(
        &self,
        store: &Store,
        image: &str,
        layers: &[Layer],
        config: &Value,
        opts: &CreateOptions,
    ) -> Result<Container> {
        let (args, env, cwd, user) = process(config, opts)?;
        let healthcheck = crate::health::resolve(config, &opts.health)?;
        let mut ports = opts.extra.ports.clone();
        if opts.network == kiln_executor::Network::Default {
            let mut exposed = crate::ports::exposed_by(config);
            exposed.extend(opts.expose.iter().cloned());
            ports.extend(crate::ports::resolve(
                &opts.publish,
                opts.publish_all,
                &exposed,
            )?);
        }
        if let Some(n) = &opts.name {
            if !valid_name(n) {
                return Err(Error::InvalidName(n.clone()));
            }
        }
        let mut lowers = Vec::with_capacity(layers.len());
        for l in layers.iter().rev() {
            lowers.push(store.snapshot(l)?);
        }
        // A user-defined network's name server is on its gateway (the network must exist).
        let network_gateway = match &opts.network_name {
            Some(n) => Some(
                kiln_network::Networks::new(self.root())
                    .find(n)?
                    .gateway
                    .to_string(),
            ),
            None => None,
        };
        let id = hex::encode(rand::random::<[u8; 32]>());
        let dir = self.dir().join(&id);
        let (upper, work) = (dir.join("upper"), dir.join("work"));
        let mut spec = RunSpec {
            rootfs: RootFs {
                lowers: lowers.clone(),
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
            network: match &opts.network_name {
                Some(_) => kiln_executor::Network::Join(
                    kiln_network::Networks::new(self.root()).sandbox_path(&id),
                ),
                None => opts.network.clone(),
            },
            mounts: opts.mounts.clone(),
            extra: SandboxOptions {
                create_etc_files: true,
                // A cgroup of its own in each controller: `kiln update` and `kiln pause`.
                resources: kiln_executor::Resources {
                    updatable: true,
                    ..opts.extra.resources.clone()
                },
                ports,
                dns: network_gateway.into_iter().collect(),
                discard_upper: opts.remove,
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
        let mut volumes = Vec::new();
        let resolved =
            resolve_volumes(store, &lowers, config, opts, &mut spec.mounts, &mut volumes)
                .and_then(|()| fs::create_dir_all(&upper).map_err(io_err(&upper)))
                .and_then(|()| fs::create_dir_all(&work).map_err(io_err(&work)));
        if let Err(e) = resolved {
            drop_anonymous(store, &volumes);
            return Err(e);
        }
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
                tty: opts.tty,
                restart: opts.restart,
                image_config: config.clone(),
                volumes,
                labels: opts.labels.clone(),
                stop_signal: opts.stop_signal.clone(),
                stop_timeout: opts.stop_timeout,
                healthcheck,
                publish: Some(opts.publish.clone()),
                publish_all: opts.publish_all,
                expose: opts.expose.clone(),
                init: opts.init,
                log: opts.log.clone(),
                network_name: opts.network_name.clone(),
                network_aliases: opts.network_aliases.clone(),
            },
            state: State::default(),
            dir,
        };
        // The state first: a directory with a config is a container (see Containers::list).
        let written = container.save_state().and_then(|()| {
            write_json_atomic(&container.dir.join("config.json"), &container.config)
        });
        // Its address, once it exists (so that a reconcile never frees it meanwhile).
        let written = written.and_then(|()| container.connect_networks());
        if let Err(e) = written {
            let _ = container.remove_dir();
            drop_anonymous(store, &container.config.volumes);
            return Err(e);
        }
        Ok(container)
    }
}

/// `/a/b/` → `/a/b`, for comparing mount destinations.
fn clean(path: &str) -> String {
    let t = path.trim_end_matches('/');
    if t.is_empty() {
        "/".into()
    } else {
        t.to_string()
    }
}

/// The container's volumes (`opts.volumes`, then an anonymous one for each of the image's
/// `VOLUME`s nothing else is mounted on), as docker: created when missing, filled with what
/// the image has at the mount point when empty. Their bind mounts are added to `mounts`,
/// which are then ordered parents first. Called with the containers' lock held.
fn resolve_volumes(
    store: &Store,
    lowers: &[PathBuf],
    config: &Value,
    opts: &CreateOptions,
    mounts: &mut Vec<BindMount>,
    out: &mut Vec<MountedVolume>,
) -> Result<()> {
    let mut wanted = opts.volumes.clone();
    let taken = |w: &[crate::VolumeSpec], mounts: &[BindMount], d: &str| {
        w.iter().any(|v| clean(&v.destination) == d)
            || mounts.iter().any(|m| clean(&m.destination) == d)
            || opts.extra.tmpfs.iter().any(|t| clean(&t.destination) == d)
    };
    if let Some(image_volumes) = config["config"]["Volumes"].as_object() {
        for dst in image_volumes.keys() {
            let d = clean(dst);
            if !d.starts_with('/') || taken(&wanted, mounts, &d) {
                continue;
            }
            wanted.push(crate::VolumeSpec {
                name: None,
                destination: d,
                readonly: false,
            });
        }
    }
    let vols = Volumes::new(store.root());
    for w in wanted {
        let (v, _) = vols.create(w.name.as_deref(), BTreeMap::new())?;
        out.push(MountedVolume {
            name: v.name.clone(),
            destination: w.destination.clone(),
            anonymous: w.name.is_none(),
        });
        let data = v.mountpoint();
        if is_empty_dir(&data) {
            populate(lowers, &w.destination, &v)?;
        }
        mounts.push(BindMount {
            source: data,
            destination: w.destination.clone(),
            readonly: w.readonly,
        });
    }
    // Parents before children (docker sorts mounts by depth), so that a volume at /a/b is
    // not hidden by one at /a.
    mounts.sort_by_key(|m| std::path::Path::new(&m.destination).components().count());
    Ok(())
}

/// Removes the anonymous volumes made for a container whose creation failed.
fn drop_anonymous(store: &Store, volumes: &[MountedVolume]) {
    let names: Vec<String> = volumes
        .iter()
        .filter(|v| v.anonymous)
        .map(|v| v.name.clone())
        .collect();
    let _ = Volumes::new(store.root()).remove_anonymous(&names);
}
