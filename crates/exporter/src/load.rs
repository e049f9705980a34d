//! Reading images back: a docker archive (`docker save` / `kiln save`: `manifest.json`
//! with `Config`, `RepoTags`, `Layers`) or an OCI image layout tar (`index.json`), the
//! inverse of [`crate::layout::write`].
//!
//! The archive is streamed once. Its entries may come in any order (`docker save` writes
//! `manifest.json` last), so every regular file is spooled into a scratch dir under the
//! store's root as it passes, hashed on the way; nothing is held in memory but the small
//! JSON documents. Once the archive has ended, the images it describes are checked whole
//! (blob digests where the format names them, each layer's uncompressed digest against the
//! config's `rootfs.diff_ids`) before anything enters the content store; then the spooled
//! files are renamed into it ([`Store::commit_file`]). Layers are kept as they came
//! (plain, gzip or zstd) and recorded for their diff ids, as a pull keeps them; a snapshot
//! is extracted on first use. The config blob is kept byte for byte, so the image ID
//! survives a save/load round trip. Naming the images is left to the caller, after
//! [`load`] returns, so a failure leaves nothing named.

use crate::{Error, Result};
use kiln_cache::Store;
use kiln_oci::image::{image_manifest, to_json};
use kiln_oci::Layer;
/// `./a/b` and `a//b` → `a/b`; `..` components are resolved against the archive root.
use kiln_opgraph::pattern::clean as normalise;
use serde_json::Value;
use std::cell::RefCell;
use std::collections::HashMap;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};

/// JSON documents (manifests, configs, indexes) larger than this are refused.
const MAX_JSON: u64 = 16 << 20;

/// One image read from an archive and stored (but not named).
#[derive(Clone, Debug)]
pub struct LoadedImage {
    /// The names the archive gives it (`RepoTags`, or the index's
    /// `io.containerd.image.name` / a full `org.opencontainers.image.ref.name`), as written.
    pub names: Vec<String>,
    /// `sha256:…` of the config: the image ID.
    pub config_digest: String,
    /// `sha256:…` of the manifest in the content store.
    pub manifest_digest: String,
    /// Its layers.
    pub layers: Vec<Layer>,
}

/// A regular file of the archive, spooled.
struct Spooled {
    path: PathBuf,
    digest: String,
    size: u64,
}

/// The archive's files: spooled regular files and symlinks (legacy docker archives link
/// repeated layers), by normalised path.
struct Staged {
    files: HashMap<String, Spooled>,
    links: HashMap<String, String>,
    /// Diff ids computed so far, by blob digest (an archive with both a manifest.json and
    /// an index.json names each layer twice).
    diff_ids: RefCell<HashMap<String, (String, kiln_cache::Compression)>>,
}

fn bad(message: impl Into<String>) -> Error {
    Error::Archive(message.into())
}

impl Staged {
    fn get(&self, name: &str) -> Option<&Spooled> {
        let mut name = normalise(name);
        for _ in 0..16 {
            if let Some(s) = self.files.get(&name) {
                return Some(s);
            }
            name = self.links.get(&name)?.clone();
        }
        None
    }
    fn need(&self, name: &str) -> Result<&Spooled> {
        self.get(name)
            .ok_or_else(|| bad(format!("`{name}` is named but not in the archive")))
    }
    fn blob(&self, digest: &str) -> Result<&Spooled> {
        let s = self.need(&format!("blobs/{}", digest.replacen(':', "/", 1)))?;
        if s.digest != digest {
            return Err(bad(format!(
                "blob {digest} does not match its name: its content is {}",
                s.digest
            )));
        }
        Ok(s)
    }
    fn json(&self, s: &Spooled, what: &str) -> Result<Value> {
        if s.size > MAX_JSON {
            return Err(bad(format!("{what} is too large ({} bytes)", s.size)));
        }
        let bytes = std::fs::read(&s.path).map_err(crate::io_err(&s.path))?;
        serde_json::from_slice(&bytes).map_err(|e| bad(format!("{what} is not valid JSON: {e}")))
    }
}

/// Reads the archive from `input`, spooling its files into a scratch dir of the store.
fn stage(dir: &Path, input: &mut dyn Read) -> Result<Staged> {
    let mut staged = Staged {
        files: HashMap::new(),
        links: HashMap::new(),
        diff_ids: RefCell::default(),
    };
    let not_tar = |e: std::io::Error| bad(format!("not a tar archive (or a truncated one): {e}"));
    let mut ar = tar::Archive::new(input);
    let mut n = 0usize;
    for entry in ar.entries().map_err(not_tar)? {
        let mut entry = entry.map_err(not_tar)?;
        let name = entry
            .path()
            .map_err(not_tar)?
            .to_string_lossy()
            .into_owned();
        let name = normalise(&name);
        match entry.header().entry_type() {
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                n += 1;
                let path = dir.join(format!("e{n}"));
                let f = std::fs::File::create(&path).map_err(crate::io_err(&path))?;
                let mut w = kiln_oci::Sha256Writer::new(BufWriter::with_capacity(256 * 1024, f));
                std::io::copy(&mut entry, &mut w)
                    .map_err(|e| bad(format!("reading `{name}`: {e}")))?;
                let (mut f, digest, size) = w.finish();
                // A truncated archive ends an entry early without an error from `tar`.
                if size != entry.size() {
                    return Err(bad(format!(
                        "`{name}` is truncated: {size} of {} bytes",
                        entry.size()
                    )));
                }
                f.flush().map_err(crate::io_err(&path))?;
                staged.files.insert(name, Spooled { path, digest, size });
            }
            tar::EntryType::Symlink | tar::EntryType::Link => {
                let Some(target) = entry.link_name().map_err(not_tar)? else {
                    continue;
                };
                let target = target.to_string_lossy().into_owned();
                let resolved = if entry.header().entry_type() == tar::EntryType::Link {
                    normalise(&target)
                } else {
                    let parent = name.rsplit_once('/').map_or("", |(p, _)| p);
                    normalise(&format!("{parent}/{target}"))
                };
                staged.links.insert(name, resolved);
            }
            _ => {}
        }
    }
    Ok(staged)
}

/// The uncompressed digest of a spooled layer, and its compression (by magic bytes).
fn diff_id(s: &Spooled) -> Result<(String, kiln_cache::Compression)> {
    let f = std::fs::File::open(&s.path).map_err(crate::io_err(&s.path))?;
    let mut r = std::io::BufReader::with_capacity(256 * 1024, f);
    let magic = std::io::BufRead::fill_buf(&mut r).map_err(crate::io_err(&s.path))?;
    let (mut dec, compression): (Box<dyn Read>, _) = if magic.starts_with(&[0x1f, 0x8b]) {
        (
            Box::new(flate2::read::MultiGzDecoder::new(r)),
            kiln_cache::Compression::Gzip,
        )
    } else if magic.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        (
            Box::new(zstd::Decoder::with_buffer(r).map_err(crate::io_err(&s.path))?),
            kiln_cache::Compression::Zstd,
        )
    } else {
        (Box::new(r), kiln_cache::Compression::Uncompressed)
    };
    let mut h = kiln_oci::Sha256Writer::new(std::io::sink());
    std::io::copy(&mut dec, &mut h)
        .map_err(|e| bad(format!("layer {}: cannot decompress: {e}", s.digest)))?;
    Ok((h.finish().1, compression))
}

/// An image checked and ready to enter the store.
struct Plan<'a> {
    names: Vec<String>,
    config: &'a Spooled,
    /// The archive's own manifest (an OCI layout's), kept when present.
    manifest: Option<&'a Spooled>,
    layers: Vec<(Layer, &'a Spooled)>,
}

/// The diff ids an image config lists.
fn config_diff_ids(config: &Value, what: &str) -> Result<Vec<String>> {
    config["rootfs"]["diff_ids"]
        .as_array()
        .ok_or_else(|| bad(format!("{what} has no rootfs.diff_ids")))?
        .iter()
        .map(|d| {
            d.as_str()
                .map(str::to_string)
                .ok_or_else(|| bad(format!("{what}: a diff id is not a string")))
        })
        .collect()
}

/// Checks a layer against the diff id its config gives it.
fn check_layer(
    staged: &Staged,
    s: &Spooled,
    expected: &str,
    media_type: Option<&str>,
) -> Result<Layer> {
    let known = staged.diff_ids.borrow().get(&s.digest).cloned();
    let (actual, compression) = if let Some(k) = known {
        k
    } else {
        let k = diff_id(s)?;
        staged
            .diff_ids
            .borrow_mut()
            .insert(s.digest.clone(), k.clone());
        k
    };
    if actual != expected {
        return Err(bad(format!(
            "layer {}: its uncompressed content is {actual}, the config says {expected}",
            s.digest
        )));
    }
    Ok(Layer {
        diff_id: actual,
        digest: s.digest.clone(),
        size: s.size,
        media_type: media_type.map_or_else(|| compression.media_type().to_string(), str::to_string),
    })
}

/// `manifest.json`: one entry per image.
fn docker_plans<'a>(staged: &'a Staged, manifest: &Spooled) -> Result<Vec<Plan<'a>>> {
    let doc = staged.json(manifest, "manifest.json")?;
    let entries = doc
        .as_array()
        .ok_or_else(|| bad("manifest.json is not a list of images"))?;
    let mut plans = Vec::new();
    for e in entries {
        let cfg_name = e["Config"]
            .as_str()
            .ok_or_else(|| bad("manifest.json: an image has no Config"))?;
        let config = staged.need(cfg_name)?;
        // `blobs/sha256/<hex>` and `<hex>.json` name the config's digest.
        let base = cfg_name.rsplit('/').next().unwrap_or(cfg_name);
        let hex = base.strip_suffix(".json").unwrap_or(base);
        if hex.len() == 64
            && hex.bytes().all(|b| b.is_ascii_hexdigit())
            && config.digest != format!("sha256:{hex}")
        {
            return Err(bad(format!(
                "config `{cfg_name}` does not match its name: its content is {}",
                config.digest
            )));
        }
        let cfg = staged.json(config, cfg_name)?;
        let diff_ids = config_diff_ids(&cfg, cfg_name)?;
        let layer_names: Vec<&str> = e["Layers"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        if layer_names.len() != diff_ids.len() {
            return Err(bad(format!(
                "manifest.json lists {} layers but config `{cfg_name}` has {} diff ids",
                layer_names.len(),
                diff_ids.len()
            )));
        }
        let mut layers = Vec::new();
        for (name, d) in layer_names.iter().zip(&diff_ids) {
            let s = if name.starts_with("blobs/sha256/") {
                staged.blob(&format!(
                    "sha256:{}",
                    name.trim_start_matches("blobs/sha256/")
                ))?
            } else {
                staged.need(name)?
            };
            layers.push((check_layer(staged, s, d, None)?, s));
        }
        let names = e["RepoTags"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default();
        plans.push(Plan {
            names,
            config,
            manifest: None,
            layers,
        });
    }
    Ok(plans)
}

/// The name an OCI index descriptor gives its image, when it is a full reference.
fn descriptor_name(d: &Value) -> Option<String> {
    let a = &d["annotations"];
    if let Some(n) = a["io.containerd.image.name"].as_str() {
        return Some(n.to_string());
    }
    // A bare tag (`latest`) names no repository: only a full reference is a name.
    a["org.opencontainers.image.ref.name"]
        .as_str()
        .filter(|n| n.contains('/') || n.contains(':'))
        .map(str::to_string)
}

/// `index.json`: each manifest it lists (for a nested index, the linux/amd64 manifest, or
/// the first one).
fn oci_plans<'a>(staged: &'a Staged, index: &Spooled) -> Result<Vec<Plan<'a>>> {
    let doc = staged.json(index, "index.json")?;
    let mut plans = Vec::new();
    for top in doc["manifests"].as_array().cloned().unwrap_or_default() {
        let names: Vec<String> = descriptor_name(&top).into_iter().collect();
        let mut desc = top;
        let mut depth = 0;
        let manifest = loop {
            let digest = desc["digest"]
                .as_str()
                .ok_or_else(|| bad("index.json: a descriptor has no digest"))?
                .to_string();
            let s = staged.blob(&digest)?;
            let m = staged.json(s, &digest)?;
            let Some(list) = m["manifests"].as_array() else {
                break (s, m);
            };
            depth += 1;
            if depth > 4 {
                return Err(bad("index.json: indexes nested too deep"));
            }
            let pick = list
                .iter()
                .find(|d| {
                    d["platform"]["os"] == "linux" && d["platform"]["architecture"] == "amd64"
                })
                .or_else(|| list.first())
                .ok_or_else(|| bad(format!("index {digest} lists no manifest")))?;
            desc = pick.clone();
        };
        let (ms, m) = manifest;
        let cfg_digest = m["config"]["digest"]
            .as_str()
            .ok_or_else(|| bad(format!("manifest {} has no config", ms.digest)))?;
        let config = staged.blob(cfg_digest)?;
        let cfg = staged.json(config, cfg_digest)?;
        let diff_ids = config_diff_ids(&cfg, cfg_digest)?;
        let descs = m["layers"].as_array().cloned().unwrap_or_default();
        if descs.len() != diff_ids.len() {
            return Err(bad(format!(
                "manifest {} lists {} layers but its config has {} diff ids",
                ms.digest,
                descs.len(),
                diff_ids.len()
            )));
        }
        let mut layers = Vec::new();
        for (d, id) in descs.iter().zip(&diff_ids) {
            let digest = d["digest"]
                .as_str()
                .ok_or_else(|| bad(format!("manifest {}: a layer has no digest", ms.digest)))?;
            let s = staged.blob(digest)?;
            layers.push((check_layer(staged, s, id, d["mediaType"].as_str())?, s));
        }
        plans.push(Plan {
            names,
            config,
            manifest: Some(ms),
            layers,
        });
    }
    if plans.is_empty() {
        return Err(bad("index.json lists no image"));
    }
    Ok(plans)
}

/// Reads a docker archive or an OCI layout tar from `input` and stores its images (blobs
/// and layer records; no names). `progress` is told about each layer as it is stored.
/// The caller holds the store's GC lock shared until it has named the images.
pub fn load(
    store: &Store,
    input: &mut dyn Read,
    progress: &mut dyn FnMut(&Layer),
) -> Result<Vec<LoadedImage>> {
    let scratch = store.temp_dir("load")?;
    let staged = stage(scratch.path(), input)?;
    // Docker's manifest.json first: it carries every RepoTag. An archive that also holds
    // an OCI index (`kiln save`, docker 25+) keeps its own manifest blob when one
    // matches, so the manifest digest survives too.
    let mut plans = if let Some(m) = staged.get("manifest.json") {
        let mut plans = docker_plans(&staged, m)?;
        if let Some(ix) = staged.get("index.json") {
            if let Ok(oci) = oci_plans(&staged, ix) {
                for p in &mut plans {
                    let same = oci.iter().find(|o| {
                        o.config.digest == p.config.digest
                            && o.layers.len() == p.layers.len()
                            && o.layers
                                .iter()
                                .zip(&p.layers)
                                .all(|(a, b)| a.0.digest == b.0.digest)
                    });
                    if let Some(o) = same {
                        p.manifest = o.manifest;
                        p.layers = o.layers.clone();
                    }
                }
            }
        }
        plans
    } else if let Some(ix) = staged.get("index.json") {
        oci_plans(&staged, ix)?
    } else {
        return Err(bad(
            "neither manifest.json nor index.json found: not a docker archive or an OCI image layout",
        ));
    };
    let mut out = Vec::new();
    for p in plans.drain(..) {
        for (l, s) in &p.layers {
            if !store.has_blob(&l.digest) {
                store.commit_file(&s.path, &s.digest)?;
            }
            store.record_layer(l)?;
            progress(l);
        }
        if !store.has_blob(&p.config.digest) {
            store.commit_file(&p.config.path, &p.config.digest)?;
        }
        let manifest_digest = if let Some(m) = p.manifest {
            if !store.has_blob(&m.digest) {
                store.commit_file(&m.path, &m.digest)?;
            }
            m.digest.clone()
        } else {
            let layers: Vec<Layer> = p.layers.iter().map(|(l, _)| l.clone()).collect();
            let m = image_manifest(&p.config.digest, p.config.size, &layers)?;
            let bytes = to_json(&m)?;
            store.write_blob(&bytes)?.0
        };
        out.push(LoadedImage {
            names: p.names,
            config_digest: p.config.digest.clone(),
            manifest_digest,
            layers: p.layers.into_iter().map(|(l, _)| l).collect(),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::normalise;

    #[test]
    fn paths_are_normalised() {
        assert_eq!(normalise("./manifest.json"), "manifest.json");
        assert_eq!(normalise("a//b/./c"), "a/b/c");
        assert_eq!(normalise("a/../b/layer.tar"), "b/layer.tar");
        assert_eq!(normalise("/../x"), "x");
    }
}
