//! `kiln rmi` / `kiln image rm`: docker's rules for removing an image that containers
//! may use.
//!
//! Named by a reference (`alpine`, `alpine@sha256:…`), the name is removed (`Untagged:`);
//! when it was the image's last name the image is gone too (`Deleted:`), unless a container
//! uses it, which without `force` is refused (it would leave that container's image
//! dangling) and with it leaves the image dangling. Named by ID, every name goes and the
//! image with them: refused without `force` when several repositories name it or a stopped
//! container uses it, and refused even with it while a running container does. The blobs
//! stay until the store's collection (`image prune`, `system prune`) runs.

use crate::{Container, Containers};
use kiln_cache::image::{is_untagged, lookup, LookupError, UNTAGGED};
use kiln_cache::Store;

/// What a removal did: `Untagged:` and `Deleted:` lines, in order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImageRemoved {
    /// The names removed (familiar form).
    pub untagged: Vec<String>,
    /// The image ID, when no name reaches the image any more.
    pub deleted: Option<String>,
}

/// Why an image is not removed, in docker's words.
#[derive(Debug, thiserror::Error)]
pub enum RmiError {
    /// Not a stored image.
    #[error(transparent)]
    Lookup(#[from] LookupError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] kiln_cache::Error),
    /// The image's config or manifest cannot be read.
    #[error(transparent)]
    Read(#[from] kiln_cache::image::ReadError),
    /// A container uses the image this reference is the last name of.
    #[error("conflict: unable to remove repository reference \"{reference}\" (must force) - container {container} is using its referenced image {image}")]
    ReferenceInUse {
        /// As given.
        reference: String,
        /// Short container ID.
        container: String,
        /// Short image ID.
        image: String,
    },
    /// An ID of an image several names reach.
    #[error("conflict: unable to delete {0} (must be forced) - image is referenced in multiple repositories")]
    MultipleRepositories(String),
    /// An ID of an image a container uses.
    #[error("conflict: unable to delete {image} ({force}) - image is being used by {state} container {container}")]
    InUse {
        /// Short image ID.
        image: String,
        /// `must be forced` or `cannot be forced`.
        force: &'static str,
        /// `running` or `stopped`.
        state: &'static str,
        /// Short container ID.
        container: String,
    },
}

fn short(id: &str) -> String {
    let hex = id.strip_prefix("sha256:").unwrap_or(id);
    hex[..hex.len().min(12)].to_string()
}

fn familiar(name: &str) -> String {
    kiln_oci::Reference::parse(name).map_or_else(|_| name.to_string(), |r| r.familiar())
}

/// The containers made from the image `manifest_digest` ([`Container::image_manifest`]).
fn users(store: &Store, manifest_digest: &str) -> Result<Vec<Container>, RmiError> {
    let images = store.list_images()?;
    Ok(Containers::new(store.root())
        .list()
        .unwrap_or_default()
        .into_iter()
        .filter(|c| c.image_manifest(store, &images).as_deref() == Some(manifest_digest))
        .collect())
}

/// Removes the image `what` names (see the module docs).
///
/// # Errors
/// [`RmiError`]: not found, or refused in docker's words.
pub fn remove_image(store: &Store, what: &str, force: bool) -> Result<ImageRemoved, RmiError> {
    let found = lookup(store, what)?;
    let manifest = found.manifest_digest;
    let id = kiln_cache::image::stored(store, &manifest)?.config_digest;
    let records: Vec<_> = store
        .list_images()?
        .into_iter()
        .filter(|r| r.manifest_digest == manifest)
        .collect();
    let names: Vec<&str> = records
        .iter()
        .map(|r| r.name.as_str())
        .filter(|n| !is_untagged(n))
        .collect();
    let users = users(store, &manifest)?;
    let mut out = ImageRemoved::default();
    if let Some(name) = found.name.filter(|n| !is_untagged(n)) {
        let last = names.len() <= 1;
        if last && !force {
            if let Some(c) = users.first() {
                return Err(RmiError::ReferenceInUse {
                    reference: what.to_string(),
                    container: c.short_id().to_string(),
                    image: short(&id),
                });
            }
        }
        store.remove_image(&name)?;
        out.untagged.push(familiar(&name));
        if last {
            if users.is_empty() {
                out.deleted = Some(id);
            } else {
                // A container's image is kept, dangling, as docker keeps it.
                store.set_image(&format!("{UNTAGGED}{id}"), &manifest)?;
            }
        }
        return Ok(out);
    }
    if names.len() > 1 && !force {
        return Err(RmiError::MultipleRepositories(short(&id)));
    }
    let in_use = |c: &Container, force: &'static str, state: &'static str| RmiError::InUse {
        image: short(&id),
        force,
        state,
        container: c.short_id().to_string(),
    };
    if let Some(c) = users.iter().find(|c| c.is_running()) {
        return Err(in_use(c, "cannot be forced", "running"));
    }
    if let (Some(c), false) = (users.first(), force) {
        return Err(in_use(c, "must be forced", "stopped"));
    }
    for r in &records {
        store.remove_image(&r.name)?;
        if !is_untagged(&r.name) {
            out.untagged.push(familiar(&r.name));
        }
    }
    out.deleted = Some(id);
    Ok(out)
}
