//! `kiln commit`: a container's writable layer as a new layer on its image, stored as
//! `kiln build` stores images (`kiln_exporter::store_image`: config and manifest in the
//! content store; the layer a gzip blob).
//!
//! As docker's: the layer is the overlay upper dir (deleted image files are whiteouts)
//! without what the sandbox itself put there — its mount points (`/dev`, `/proc`, `/sys`,
//! the generated `/etc/hosts`, `/etc/hostname`, `/etc/resolv.conf`) and the targets of
//! volumes, bind mounts and tmpfs mounts, whose contents are never in the upper dir anyway.
//! A container that changed nothing adds no layer (an `empty_layer` history entry). The
//! config is the container's (see [`Container::commit_config`]) with the caller's
//! changes; the history entry is the container's command line with `-m` as its comment.
//! With `pause` (docker's default) a running container is frozen while its layer is read.

use crate::container::Container;
use crate::copy::SANDBOX_MOUNTPOINTS;
use crate::Result;
use kiln_cache::Store;
use kiln_exporter::{HistoryEntry, StoredImage};
use serde_json::{json, Value};
use std::path::PathBuf;

/// Why a commit failed.
#[derive(Debug, thiserror::Error)]
pub enum CommitError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] kiln_cache::Error),
    /// A stored image could not be read.
    #[error(transparent)]
    Read(#[from] kiln_cache::image::ReadError),
    /// The image could not be stored.
    #[error(transparent)]
    Export(#[from] kiln_exporter::Error),
    /// No stored image has the container's layers any more.
    #[error(
        "the layers of the container's image {0} are no longer in the store (the image was \
         removed or renamed)"
    )]
    BaseGone(String),
}

/// `kiln commit`'s options.
#[derive(Clone, Debug, Default)]
pub struct CommitOptions {
    /// `-a`: the image's `author`.
    pub author: Option<String>,
    /// `-m`: the history entry's comment.
    pub message: Option<String>,
    /// `-p` (docker's default): freeze a running container while its layer is read.
    pub pause: bool,
    /// When the image is created (RFC 3339).
    pub created: String,
}

impl Container {
    /// The image config a commit starts from (before `-c` changes): the image's, with the
    /// container's own process as docker's container config has it — `Cmd` (and
    /// `Entrypoint` when the command still starts with the image's), `Env`, `WorkingDir`,
    /// `User` — its labels, health check and stop signal, and its published ports exposed.
    pub fn commit_config(&self) -> Value {
        let mut cfg = match &self.config.image_config {
            Value::Object(o) => Value::Object(o.clone()),
            _ => json!({"architecture": "amd64", "os": "linux"}),
        };
        let spec = &self.config.spec;
        let image = &self.config.image_config["config"];
        let mut c = image.as_object().cloned().unwrap_or_default();
        let entrypoint: Vec<String> = image["Entrypoint"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        if !entrypoint.is_empty() && spec.args.starts_with(&entrypoint) {
            c.insert("Cmd".into(), json!(spec.args[entrypoint.len()..]));
        } else {
            c.insert("Entrypoint".into(), Value::Null);
            c.insert("Cmd".into(), json!(spec.args));
        }
        c.insert("Env".into(), json!(spec.env));
        if spec.cwd != "/" || image["WorkingDir"].as_str().is_some_and(|w| !w.is_empty()) {
            c.insert("WorkingDir".into(), json!(spec.cwd));
        }
        if !spec.user.is_empty() {
            c.insert("User".into(), json!(spec.user));
        }
        if !self.config.labels.is_empty() {
            let mut labels = image["Labels"].as_object().cloned().unwrap_or_default();
            for (k, v) in &self.config.labels {
                labels.insert(k.clone(), json!(v));
            }
            c.insert("Labels".into(), Value::Object(labels));
        }
        if let Some(h) = &self.config.healthcheck {
            if let Ok(v) = serde_json::to_value(h) {
                c.insert("Healthcheck".into(), v);
            }
        }
        if let Some(s) = &self.config.stop_signal {
            c.insert("StopSignal".into(), json!(s));
        }
        if !spec.extra.ports.is_empty() {
            let mut exposed = image["ExposedPorts"]
                .as_object()
                .cloned()
                .unwrap_or_default();
            for p in &spec.extra.ports {
                exposed.insert(format!("{}/{}", p.container_port, p.protocol), json!({}));
            }
            c.insert("ExposedPorts".into(), Value::Object(exposed));
        }
        if let Some(o) = cfg.as_object_mut() {
            o.insert("config".into(), Value::Object(c));
            o.insert("container".into(), json!(self.config.id));
        }
        cfg
    }

    /// Paths the layer leaves out: the sandbox's mount points and the mount targets.
    fn mount_targets(&self) -> Vec<PathBuf> {
        let spec = &self.config.spec;
        SANDBOX_MOUNTPOINTS
            .iter()
            .map(PathBuf::from)
            .chain(spec.mounts.iter().map(|m| PathBuf::from(&m.destination)))
            .chain(
                self.config
                    .volumes
                    .iter()
                    .map(|v| PathBuf::from(&v.destination)),
            )
            .chain(
                spec.extra
                    .tmpfs
                    .iter()
                    .map(|t| PathBuf::from(&t.destination)),
            )
            .map(|p| PathBuf::from("/").join(p))
            .collect()
    }

    /// The layers of the container's image, found by the diff ids of its lower dirs: under
    /// the name it was run with, else any stored image with them.
    fn base_layers(&self, store: &Store) -> Result<Vec<kiln_oci::Layer>, CommitError> {
        let want: Vec<String> = self
            .config
            .spec
            .rootfs
            .lowers
            .iter()
            .rev()
            .filter_map(|l| l.file_name())
            .map(|hex| format!("sha256:{}", hex.to_string_lossy()))
            .collect();
        // The image as the container's `kiln run` named it (an ID, a name, `name@digest`).
        let mut manifests: Vec<String> = kiln_cache::image::lookup(store, &self.config.image)
            .map(|f| f.manifest_digest)
            .into_iter()
            .collect();
        manifests.extend(store.list_images()?.into_iter().map(|r| r.manifest_digest));
        for m in manifests {
            let Ok(layers) = kiln_cache::image::layers(store, &m) else {
                continue;
            };
            if layers.iter().map(|l| &l.diff_id).eq(want.iter()) {
                return Ok(layers);
            }
        }
        Err(CommitError::BaseGone(self.config.image.clone()))
    }

    /// `docker commit`: stores the image of the container's writable layer on its image,
    /// with `config` (from [`Container::commit_config`], changed by the caller); the image
    /// is not named.
    pub fn commit(
        &mut self,
        store: &Store,
        config: Value,
        opts: &CommitOptions,
    ) -> Result<StoredImage> {
        self.refresh()?;
        let frozen = if opts.pause && self.is_running() && !self.is_paused() {
            let cgroups = self.cgroups_to_change()?;
            cgroups.freeze()?;
            Some(cgroups)
        } else {
            None
        };
        let layer = store
            .diff_to_layer_excluding(&self.config.spec.rootfs.upper, &self.mount_targets())
            .map_err(CommitError::from);
        if let Some(c) = frozen {
            c.thaw()?;
        }
        let layer = layer?;
        let mut layers = self.base_layers(store)?;
        let mut config = config;
        if let (Some(a), Some(o)) = (&opts.author, config.as_object_mut()) {
            o.insert("author".into(), json!(a));
        }
        let entry = HistoryEntry {
            created_by: self.config.spec.args.join(" "),
            comment: opts.message.clone().filter(|m| !m.is_empty()),
            empty_layer: layer.is_none(),
        };
        layers.extend(layer);
        Ok(
            kiln_exporter::store_image(store, config, &[entry], &layers, &opts.created)
                .map_err(CommitError::from)?,
        )
    }
}

/// `config` with the keys of `before["config"]` the typed round trip through `-c` changes
/// lost (docker's own, e.g. `Healthcheck`, that the OCI config does not know) put back.
pub fn keep_docker_fields(before: &Value, mut after: Value) -> Value {
    let (Some(old), Some(new)) = (
        before["config"].as_object(),
        after.get_mut("config").and_then(Value::as_object_mut),
    ) else {
        return after;
    };
    for (k, v) in old {
        new.entry(k.clone()).or_insert_with(|| v.clone());
    }
    if let (Some(o), Some(b)) = (after.as_object_mut(), before.as_object()) {
        for (k, v) in b {
            o.entry(k.clone()).or_insert_with(|| v.clone());
        }
    }
    after
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::container::{Config, State};
    use crate::MountedVolume;

    fn container(image_config: Value, args: &[&str]) -> Container {
        let dir = std::path::Path::new("/nonexistent");
        let mut config = Config::for_test(&"c".repeat(64), "web", dir);
        config.image_config = image_config;
        config.spec.args = args.iter().map(|s| (*s).to_string()).collect();
        config.spec.env = vec!["PATH=/bin".into(), "A=1".into()];
        config.labels.insert("run".into(), "yes".into());
        config.volumes.push(MountedVolume {
            name: "v".into(),
            destination: "/data".into(),
            anonymous: true,
        });
        config.spec.mounts.push(kiln_executor::BindMount {
            source: "/srv".into(),
            destination: "/srv/app".into(),
            readonly: false,
        });
        Container {
            dir: dir.to_path_buf(),
            config,
            state: State::default(),
        }
    }

    #[test]
    fn the_config_is_the_containers_process_on_the_images_config() {
        let image = json!({
            "architecture": "arm64", "os": "linux",
            "config": {"Entrypoint": ["/ep"], "Cmd": ["default"], "Labels": {"img": "1"},
                       "Healthcheck": {"Test": ["NONE"]}},
            "history": [{"created_by": "base"}]
        });
        let c = container(image.clone(), &["/ep", "x", "y"]);
        let cfg = c.commit_config();
        assert_eq!(cfg["architecture"], "arm64");
        assert_eq!(cfg["config"]["Entrypoint"], json!(["/ep"]));
        assert_eq!(cfg["config"]["Cmd"], json!(["x", "y"]));
        assert_eq!(cfg["config"]["Env"], json!(["PATH=/bin", "A=1"]));
        assert_eq!(cfg["config"]["Labels"], json!({"img": "1", "run": "yes"}));
        assert_eq!(cfg["config"]["Healthcheck"], json!({"Test": ["NONE"]}));
        assert_eq!(cfg["container"], json!("c".repeat(64)));
        assert_eq!(
            cfg["history"], image["history"],
            "the base's history is kept"
        );
        assert!(cfg["config"].get("WorkingDir").is_none());
        // --entrypoint replaced the image's: the whole command line is the Cmd.
        let c = container(image, &["sh", "-c", "true"]);
        let cfg = c.commit_config();
        assert_eq!(cfg["config"]["Entrypoint"], Value::Null);
        assert_eq!(cfg["config"]["Cmd"], json!(["sh", "-c", "true"]));
    }

    #[test]
    fn mount_points_and_targets_are_left_out() {
        let c = container(Value::Null, &["true"]);
        let t = c.mount_targets();
        for p in ["/proc", "/etc/hosts", "/data", "/srv/app"] {
            assert!(t.contains(&PathBuf::from(p)), "{p} in {t:?}");
        }
    }

    #[test]
    fn docker_fields_the_typed_changes_lost_are_kept() {
        let before = json!({"config": {"Healthcheck": {"Test": ["NONE"]}, "Cmd": ["a"]},
                            "container": "x"});
        let after = json!({"config": {"Cmd": ["b"]}});
        assert_eq!(
            keep_docker_fields(&before, after),
            json!({"config": {"Healthcheck": {"Test": ["NONE"]}, "Cmd": ["b"]},
                   "container": "x"})
        );
    }
}
