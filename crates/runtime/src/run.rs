//! `kiln run` as one call: the image found in the store (or pulled, as `docker run` does),
//! a container made from it, then run in the foreground with the caller's stdio or started
//! in the background under a shim. The command line only resolves its flags into
//! [`RunOptions`] and renders the [`Outcome`] or the [`RunError`].

use crate::{Container, Containers, CreateOptions, Error};
use kiln_cache::Store;
use kiln_executor::{Executor, RunResult};
use kiln_oci::{Layer, Reference};
use serde_json::Value;
use std::ffi::OsString;
use std::sync::Arc;

/// `kiln run`, resolved from its flags.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// The image as the user named it (recorded in the container's config, shown by `ps`).
    pub image: String,
    /// The image's reference (parsed from `image`): looked up in the store, pulled when
    /// missing.
    pub reference: Reference,
    /// `--platform`: the image must be of it (see [`crate::PlatformError`]).
    pub platform: Option<String>,
    /// How the container is made; `detach` runs it under the shim.
    pub container: CreateOptions,
}

/// How to run containers: the executor for the foreground, the shim's command line (the
/// one that reaches [`crate::shim_main`]) for the background.
#[derive(Clone, Debug)]
pub struct Launcher {
    /// Runs foreground containers.
    pub executor: Executor,
    /// Starts the supervisor of a detached container.
    pub shim: Vec<OsString>,
}

/// What happens while a run starts, for the caller to show.
#[derive(Debug)]
pub enum RunEvent<'a> {
    /// The image is not in the store: it is pulled.
    Pulling(&'a Reference),
}

/// How a run ended.
#[derive(Debug)]
pub enum Outcome {
    /// Started in the background (`-d`), running.
    Detached(Box<Container>),
    /// Started under its shim with a terminal (`-t` without `-d`), which waits for the
    /// caller to [`Container::attach`] (as `docker run -it` does, so that detaching leaves
    /// it running).
    Attach(Box<Container>),
    /// Ran in the foreground and exited.
    Exited(RunResult),
}

impl Outcome {
    /// The exit code of `kiln run`: the container's (`0..=255`; 128+N when a signal N
    /// killed it), 0 once a detached one is running.
    pub fn exit_code(&self) -> u8 {
        match self {
            Outcome::Detached(_) | Outcome::Attach(_) => 0,
            Outcome::Exited(r) => u8::try_from(r.exit_code.clamp(0, 255)).unwrap_or(u8::MAX),
        }
    }
}

/// Why a run failed before the container's command ended.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The image is not of the `--platform` asked for.
    #[error(transparent)]
    Platform(#[from] crate::PlatformError),
    /// The image is not in the store and could not be pulled.
    #[error(transparent)]
    Pull(kiln_registry::Error),
    /// The stored image could not be read.
    #[error(transparent)]
    Image(kiln_cache::image::ReadError),
    /// An ID prefix several images have, or an image ID (`sha256:…`, 64 hex digits) no
    /// image has: nothing a registry could answer.
    #[error(transparent)]
    Lookup(kiln_cache::image::LookupError),
    /// The container could not be made or run.
    #[error(transparent)]
    Run(#[from] Error),
}

impl RunError {
    /// The exit code, as `docker run`'s: 125 when kiln itself failed to run the container
    /// (a failed pull included), 127 or 126 when a detached container's command could not
    /// be started (not found, not executable), 1 when the stored image cannot be read.
    pub fn exit_code(&self) -> u8 {
        match self {
            // 127 or 126 when the command of a detached container could not be started.
            RunError::Run(Error::CommandNotStarted { code, .. }) => {
                u8::try_from(*code).unwrap_or(125)
            }
            // crate::START_FAILED_EXIT, the code a detached container's failed start records.
            RunError::Pull(_) | RunError::Run(_) | RunError::Platform(_) | RunError::Lookup(_) => {
                125
            }
            RunError::Image(_) => 1,
        }
    }
}

/// Runs `opts`: finds the image (pulling it when it is not stored; `on` hears of it first),
/// makes the container and runs it, in the foreground with the caller's stdio or, with
/// `opts.container.detach`, in the background. A foreground container is listed while it
/// runs and stays (exited) afterwards unless `remove`.
pub async fn run(
    store: &Arc<Store>,
    registry: &kiln_registry::Client,
    launcher: &Launcher,
    opts: &RunOptions,
    on: impl FnMut(RunEvent<'_>),
) -> Result<Outcome, RunError> {
    let (layers, config) = image(store, registry, opts, on).await?;
    let c = &opts.container;
    // With a terminal in the foreground: under its shim too, which waits for the caller to
    // attach (an external runtime has no terminal: it says so in the foreground).
    if c.detach || (c.tty && launcher.executor.runtime().is_none()) {
        let attach = (!c.detach).then(|| crate::attach::Awaited {
            size: crate::terminal::caller_size(),
        });
        let container = run_detached(store, &opts.image, &layers, &config, c, launcher, attach)?;
        return Ok(if c.detach {
            Outcome::Detached(Box::new(container))
        } else {
            Outcome::Attach(Box::new(container))
        });
    }
    let containers = Containers::new(store.root());
    let mut container = containers.create(store, &opts.image, &layers, &config, c)?;
    Ok(Outcome::Exited(
        container.run_foreground(&launcher.executor).await?,
    ))
}

/// `kiln create`: finds the image as [`run`] does and makes the container ("Created");
/// `kiln start` runs it. (`opts.container.detach` is recorded as given: the CLI sets it, so
/// that the container's output, which goes to its log under the shim, can be read.)
pub async fn create(
    store: &Arc<Store>,
    registry: &kiln_registry::Client,
    opts: &RunOptions,
    on: impl FnMut(RunEvent<'_>),
) -> Result<Container, RunError> {
    let (layers, config) = image(store, registry, opts, on).await?;
    let containers = Containers::new(store.root());
    Ok(containers.create(store, &opts.image, &layers, &config, &opts.container)?)
}

/// The image `reference` names, from the store or pulled (`on` hears of it first): its
/// layers and config.
async fn image(
    store: &Arc<Store>,
    registry: &kiln_registry::Client,
    opts: &RunOptions,
    mut on: impl FnMut(RunEvent<'_>),
) -> Result<(Vec<Layer>, Value), RunError> {
    let reference = &opts.reference;
    // The image as docker users name it (ID, ID prefix, name, `name@digest`): an image in
    // the store is never pulled. An ambiguous ID prefix is an error; a name that cannot be
    // read from the store is treated as missing: the pull says why.
    let stored = match kiln_cache::image::lookup(store, &opts.image) {
        Ok(f) => Some(f.manifest_digest),
        Err(e @ kiln_cache::image::LookupError::Ambiguous(_)) => return Err(RunError::Lookup(e)),
        Err(kiln_cache::image::LookupError::NotFound(_)) if is_image_id(&opts.image) => {
            let e = kiln_cache::image::LookupError::NotFound(opts.image.clone());
            return Err(RunError::Lookup(e));
        }
        Err(_) => None,
    };
    let manifest = if let Some(m) = stored {
        m
    } else {
        on(RunEvent::Pulling(reference));
        registry
            .pull_and_name(reference, store)
            .await
            .map_err(RunError::Pull)?
            .manifest_digest
    };
    let layers = kiln_cache::image::layers(store, &manifest).map_err(RunError::Image)?;
    let config = kiln_cache::image::config_json(store, &manifest).map_err(RunError::Image)?;
    if let Some(p) = &opts.platform {
        crate::platform::check(&opts.image, p, &config)?;
    }
    Ok((layers, config))
}

/// Whether `s` can only be an image ID (`sha256:…`, or 64 hex digits, which docker
/// refuses as a repository name).
fn is_image_id(s: &str) -> bool {
    let hex = s.strip_prefix("sha256:");
    hex.is_some() || (s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Creates a container and starts it in the background under a shim; returns it once it
/// runs. A container whose start fails (a port in use, a bad mount) is removed, with the
/// anonymous volumes made for it: the error is all that is left.
fn run_detached(
    store: &Store,
    image: &str,
    layers: &[Layer],
    config: &Value,
    opts: &CreateOptions,
    launcher: &Launcher,
    attach: Option<crate::attach::Awaited>,
) -> Result<Container, Error> {
    let containers = Containers::new(store.root());
    let mut container = containers.create(store, image, layers, config, opts)?;
    match container.start_shim(&launcher.shim, attach) {
        Ok(()) => Ok(container),
        Err(e) => {
            // A container that never ran is not left behind half-made ("Created" forever):
            // the error is all `kiln run -d` reports. The shim has exited by now (the ready
            // pipe closed), so nothing writes into the directory any more.
            let _ = container.remove_dir();
            let _ = container.remove_anonymous_volumes();
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn launcher() -> Launcher {
        Launcher {
            executor: Executor::new(vec!["/nonexistent".into()]),
            shim: vec!["/nonexistent".into()],
        }
    }

    fn opts(image: &str) -> RunOptions {
        RunOptions {
            image: image.into(),
            reference: Reference::parse(image).unwrap(),
            platform: None,
            container: CreateOptions::default(),
        }
    }

    /// A registry nothing listens on, tried once.
    fn offline() -> kiln_registry::Client {
        let mut cfg = kiln_registry::RegistryConfig::default();
        cfg.retry.retries = 0;
        kiln_registry::Client::new(cfg)
    }

    #[tokio::test]
    async fn a_missing_image_is_pulled_and_a_failed_pull_exits_125() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(dir.path()).unwrap());
        let mut pulled = Vec::new();
        let r = run(
            &store,
            &offline(),
            &launcher(),
            &opts("127.0.0.1:1/none:latest"),
            |e| match e {
                RunEvent::Pulling(r) => pulled.push(r.to_string()),
            },
        )
        .await;
        assert_eq!(pulled, ["127.0.0.1:1/none:latest"]);
        let e = r.unwrap_err();
        assert!(matches!(e, RunError::Pull(_)), "{e:?}");
        assert_eq!(e.exit_code(), 125);
    }

    #[tokio::test]
    async fn a_stored_image_is_not_pulled() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(dir.path()).unwrap());
        // An image without layers or a command: found, read, then refused (no command).
        let (config, _) = store
            .write_blob(br#"{"config": {}, "rootfs": {"type": "layers", "diff_ids": []}}"#)
            .unwrap();
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config, "size": 1},
            "layers": [],
        });
        let (manifest, _) = store.write_blob(manifest.to_string().as_bytes()).unwrap();
        store
            .set_image("127.0.0.1:1/stored:latest", &manifest)
            .unwrap();
        let mut events = 0;
        let r = run(
            &store,
            &offline(),
            &launcher(),
            &opts("127.0.0.1:1/stored"),
            |_| events += 1,
        )
        .await;
        assert_eq!(events, 0);
        let e = r.unwrap_err();
        assert!(matches!(e, RunError::Run(Error::NoCommand)), "{e:?}");
        assert_eq!(e.exit_code(), 125);
        assert_eq!(e.to_string(), "no command specified");
    }

    #[tokio::test]
    async fn an_image_named_by_id_is_never_pulled() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(dir.path()).unwrap());
        store_image(
            &store,
            "127.0.0.1:1/stored:latest",
            &serde_json::json!({"config": {}, "rootfs": {"type": "layers", "diff_ids": []}}),
        );
        let m = store
            .get_image("127.0.0.1:1/stored:latest")
            .unwrap()
            .unwrap();
        let id = kiln_cache::image::stored(&store, &m.manifest_digest)
            .unwrap()
            .config_digest;
        for name in [id.clone(), id[7..19].to_string(), id[..20].to_string()] {
            let mut events = 0;
            let r = run(&store, &offline(), &launcher(), &opts(&name), |_| {
                events += 1;
            })
            .await;
            assert_eq!(events, 0, "{name}");
            assert!(
                matches!(r.unwrap_err(), RunError::Run(Error::NoCommand)),
                "{name}"
            );
        }
        // An ID no image has: not found here, and not asked of a registry.
        for name in [format!("sha256:{}", "0".repeat(64)), "0".repeat(64)] {
            let mut events = 0;
            let r = run(&store, &offline(), &launcher(), &opts(&name), |_| {
                events += 1;
            })
            .await;
            assert_eq!(events, 0, "{name}");
            let e = r.unwrap_err();
            assert_eq!(e.to_string(), format!("no such image: {name}"));
            assert_eq!(e.exit_code(), 125);
        }
    }

    /// Stores an image without layers whose config is `config`, named `name`.
    fn store_image(store: &Store, name: &str, config: &Value) {
        let (config, _) = store.write_blob(config.to_string().as_bytes()).unwrap();
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config, "size": 1},
            "layers": [],
        });
        let (manifest, _) = store.write_blob(manifest.to_string().as_bytes()).unwrap();
        store.set_image(name, &manifest).unwrap();
    }

    #[tokio::test]
    async fn a_detached_run_that_cannot_start_leaves_no_container() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(dir.path()).unwrap());
        let config = serde_json::json!({
            "config": {"Cmd": ["true"], "Volumes": {"/data": {}}},
            "rootfs": {"type": "layers", "diff_ids": []},
        });
        store_image(&store, "127.0.0.1:1/img:latest", &config);
        // A shim that exits without starting anything.
        let launcher = Launcher {
            executor: Executor::new(vec!["/nonexistent".into()]),
            shim: vec!["/bin/false".into()],
        };
        let mut o = opts("127.0.0.1:1/img");
        o.container.detach = true;
        let e = run(&store, &offline(), &launcher, &o, |_| {})
            .await
            .unwrap_err();
        assert!(matches!(e, RunError::Run(Error::Shim(_))), "{e:?}");
        assert_eq!(e.exit_code(), 125);
        assert!(Containers::new(store.root()).list().unwrap().is_empty());
        let left = std::fs::read_dir(dir.path().join("containers"))
            .unwrap()
            .count();
        assert_eq!(left, 0, "no container directory is left");
        let volumes = crate::Volumes::new(store.root()).list().unwrap();
        assert!(volumes.is_empty(), "the image's anonymous volume goes too");
    }

    #[test]
    fn exit_codes_follow_the_container() {
        let exited = |code| {
            Outcome::Exited(RunResult {
                exit_code: code,
                oom_killed: false,
            })
            .exit_code()
        };
        assert_eq!(exited(0), 0);
        assert_eq!(exited(137), 137);
        assert_eq!(exited(300), 255);
        assert_eq!(exited(-1), 0);
    }
}
