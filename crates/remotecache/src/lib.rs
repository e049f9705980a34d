//! Build cache that leaves the machine: `kiln build --cache-to` and `--cache-from`.
//!
//! A build's cache records (cache key → the step's result, which names its layers by diff
//! id) are exported as one OCI image: its layers are the records' layer blobs (gzip), its
//! config an ordinary image config (`rootfs.diff_ids` pairs each blob with its diff id) that
//! also carries the records under the field `kiln.cache.v1`. Being a plain image, it goes
//! to any registry (`type=registry,ref=REF`) or into an OCI layout directory
//! (`type=local,dest=DIR`), and `skopeo` or `umoci` can read it. The format is kiln's own:
//! BuildKit's cache manifests describe BuildKit's cache keys, which kiln's are not.
//!
//! Importing (`--cache-from`) reads only the manifest and the config: the records join the
//! local cache lookups, and a layer blob is fetched only when a step that hit one of them
//! is really needed ([`Imported::fetch`]), so a fully cached build downloads just the
//! layers of its result.
//!
//! Cache keys carry nothing machine-specific (contexts are keyed by content, images by
//! digest), so a record made on one machine hits on another.
//!
//! Why a crate of its own rather than part of `exporter` (where `../shared/STYLE.md` puts
//! cache export/import): the import side is used by the worker while steps run (its
//! `restore` fetches blobs on demand), and the worker must not depend on the exporters;
//! and the exporters stay free of the registry client (pushing images is the CLI's
//! wiring of `exporter` + `registry`). This crate depends on `cache` and `registry` only.
#![deny(missing_docs)]

use kiln_cache::{Compression, Store};
use kiln_oci::image::{descriptor, image_index, image_layers, image_manifest, to_json};
use kiln_oci::{media, spec, Layer, Reference};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The config field that holds the records.
pub const CONFIG_FIELD: &str = "kiln.cache.v1";

/// Errors.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A `--cache-to` / `--cache-from` value is malformed.
    #[error("{0}")]
    Usage(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] kiln_cache::Error),
    /// The registry failed.
    #[error(transparent)]
    Registry(#[from] kiln_registry::Error),
    /// Reading or writing a local cache directory failed.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// What was read is not a kiln cache.
    #[error("{0} is not a kiln build cache: {1}")]
    Format(String, String),
    /// The cache's manifest or index could not be built or written.
    #[error(transparent)]
    Image(#[from] kiln_oci::ImageError),
}

/// The config of a cache image: an ordinary image config (so that registries and tools
/// take it) whose `rootfs.diff_ids` pair the layer blobs with their diff ids, carrying the
/// records under [`CONFIG_FIELD`].
#[derive(Serialize)]
struct CacheConfig<'a> {
    architecture: &'a str,
    os: &'a str,
    config: CacheImageConfig,
    rootfs: spec::RootFs,
    #[serde(rename = "kiln.cache.v1")]
    cache: CacheRecords,
}

#[derive(Serialize)]
struct CacheImageConfig {
    #[serde(rename = "Labels")]
    labels: BTreeMap<&'static str, &'static str>,
}

/// What [`import`] reads of a cache's config: its records (absent: not a kiln cache) and
/// `rootfs`.
#[derive(Deserialize)]
struct ImportedConfig {
    #[serde(rename = "kiln.cache.v1")]
    cache: Option<CacheRecords>,
    rootfs: spec::RootFs,
}

#[derive(Serialize, Deserialize)]
struct CacheRecords {
    records: Vec<CacheRecord>,
}

/// One record: the cache key and the recorded result, whose JSON is the worker's (kept
/// as it is).
#[derive(Serialize, Deserialize)]
struct CacheRecord {
    key: String,
    value: Value,
}

/// The bytes of the config of a cache made of `records` whose layers are `blobs`.
fn cache_config(records: &[Record], blobs: &[Layer]) -> Result<Vec<u8>> {
    let mut recs = Vec::with_capacity(records.len());
    for r in records {
        let value: Value = serde_json::from_slice(&r.value)
            .map_err(|e| Error::Format(r.key.clone(), e.to_string()))?;
        recs.push(CacheRecord {
            key: r.key.clone(),
            value,
        });
    }
    let mut rootfs = spec::RootFs::default();
    rootfs.set_diff_ids(blobs.iter().map(|b| b.diff_id.clone()).collect());
    let config = CacheConfig {
        architecture: "amd64",
        os: "linux",
        config: CacheImageConfig {
            labels: BTreeMap::from([("org.opencontainers.image.description", "kiln build cache")]),
        },
        rootfs,
        cache: CacheRecords { records: recs },
    };
    to_json(&config).map_err(|e| Error::Usage(e.to_string()))
}

/// Result alias.
pub type Result<T, E = Error> = std::result::Result<T, E>;

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Where a cache goes or comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Location {
    /// An image in a registry.
    Registry(Reference),
    /// An OCI layout directory.
    Local(PathBuf),
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Location::Registry(r) => write!(f, "{r}"),
            Location::Local(p) => write!(f, "{}", p.display()),
        }
    }
}

/// A parsed `--cache-to`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExportSpec {
    /// Where.
    pub to: Location,
    /// `mode=max`: every step's result; `mode=min` (the default, as BuildKit): only the
    /// steps whose layers the final image holds.
    pub max: bool,
}

fn key_values(s: &str) -> BTreeMap<&str, &str> {
    s.split(',')
        .filter(|p| !p.is_empty())
        .map(|p| p.split_once('=').unwrap_or((p, "")))
        .collect()
}

fn registry_ref(kv: &BTreeMap<&str, &str>, flag: &str) -> Result<Location> {
    let r = kv
        .get("ref")
        .ok_or_else(|| Error::Usage(format!("{flag} type=registry needs ref=REF")))?;
    Reference::parse(r)
        .map(Location::Registry)
        .map_err(|e| Error::Usage(format!("{flag}: {e}")))
}

impl ExportSpec {
    /// Parses `type=registry,ref=REF[,mode=min|max]` or `type=local,dest=DIR[,mode=…]`.
    pub fn parse(s: &str) -> Result<ExportSpec> {
        let kv = key_values(s);
        let max = match kv.get("mode").copied() {
            None | Some("min") => false,
            Some("max") => true,
            Some(m) => return Err(Error::Usage(format!("--cache-to mode={m}: use min or max"))),
        };
        let to = match kv.get("type").copied() {
            Some("registry") => registry_ref(&kv, "--cache-to")?,
            Some("local") => {
                Location::Local(PathBuf::from(kv.get("dest").ok_or_else(|| {
                    Error::Usage("--cache-to type=local needs dest=DIR".into())
                })?))
            }
            Some("inline") => return Err(Error::Usage(
                "--cache-to type=inline is not supported: use type=registry,ref=REF (the cache \
                     goes to its own image, so pulling the app image never downloads it)"
                    .into(),
            )),
            Some(t) => {
                return Err(Error::Usage(format!(
                    "--cache-to type={t}: use registry or local"
                )))
            }
            None => return Err(Error::Usage("--cache-to needs type=registry|local".into())),
        };
        Ok(ExportSpec { to, max })
    }
}

/// Parses a `--cache-from`: `type=registry,ref=REF`, `type=local,src=DIR`, or a bare
/// reference (as BuildKit accepts).
pub fn parse_from(s: &str) -> Result<Location> {
    let kv = key_values(s);
    match kv.get("type").copied() {
        Some("registry") => registry_ref(&kv, "--cache-from"),
        Some("local") => Ok(Location::Local(PathBuf::from(kv.get("src").ok_or_else(
            || Error::Usage("--cache-from type=local needs src=DIR".into()),
        )?))),
        Some(t) => Err(Error::Usage(format!(
            "--cache-from type={t}: use registry or local"
        ))),
        None if !s.contains('=') => Reference::parse(s)
            .map(Location::Registry)
            .map_err(|e| Error::Usage(format!("--cache-from: {e}"))),
        None => Err(Error::Usage(
            "--cache-from needs type=registry,ref=REF or type=local,src=DIR".into(),
        )),
    }
}

/// One cache record to export.
#[derive(Clone, Debug)]
pub struct Record {
    /// The cache key.
    pub key: String,
    /// The recorded result (JSON).
    pub value: Vec<u8>,
    /// The layers the result names (their blobs go with the cache).
    pub layers: Vec<Layer>,
}

/// Exports `records` to `to`; returns the digest of the cache manifest.
pub async fn export(
    store: &Arc<Store>,
    registry: &kiln_registry::Client,
    to: &Location,
    records: Vec<Record>,
) -> Result<String> {
    let mut seen = HashSet::new();
    let layers: Vec<Layer> = records
        .iter()
        .flat_map(|r| r.layers.iter())
        .filter(|l| seen.insert(l.diff_id.clone()))
        .cloned()
        .collect();
    let s = store.clone();
    let blobs = tokio::task::spawn_blocking(move || {
        layers
            .iter()
            .map(|l| s.compressed_layer(l, Compression::Gzip))
            .collect::<Result<Vec<Layer>, _>>()
    })
    .await
    .map_err(|e| Error::Usage(format!("compressing the cache's layers: {e}")))??;
    let config_bytes = cache_config(&records, &blobs)?;
    let (config_digest, config_size) = store.write_blob(&config_bytes)?;
    let manifest = image_manifest(&config_digest, config_size, &blobs)?;
    let manifest_bytes = to_json(&manifest).map_err(|e| Error::Usage(e.to_string()))?;
    let (manifest_digest, manifest_size) = store.write_blob(&manifest_bytes)?;
    match to {
        Location::Registry(r) => {
            registry.push(store, &manifest_digest, r).await?;
        }
        Location::Local(dir) => {
            let mut all = vec![manifest_digest.clone(), config_digest];
            all.extend(blobs.iter().map(|b| b.digest.clone()));
            let (s, dir, md) = (store.clone(), dir.clone(), manifest_digest.clone());
            tokio::task::spawn_blocking(move || write_layout(&s, &dir, &md, manifest_size, &all))
                .await
                .map_err(|e| Error::Usage(e.to_string()))??;
        }
    }
    Ok(manifest_digest)
}

/// Writes blobs (each by temp name + rename, skipping those already there) and then
/// `index.json` (also by rename), so a reader never sees an index naming a missing blob.
fn write_layout(
    store: &Store,
    dir: &Path,
    manifest_digest: &str,
    manifest_size: u64,
    blobs: &[String],
) -> Result<()> {
    let bdir = dir.join("blobs/sha256");
    std::fs::create_dir_all(&bdir).map_err(io_err(&bdir))?;
    for d in blobs {
        let hex = d.trim_start_matches("sha256:");
        let dest = bdir.join(hex);
        if dest.exists() {
            continue;
        }
        let tmp = bdir.join(format!(".tmp-{hex}"));
        std::fs::copy(store.blob_path(d), &tmp).map_err(io_err(&tmp))?;
        std::fs::rename(&tmp, &dest).map_err(io_err(&dest))?;
    }
    let layout = dir.join("oci-layout");
    std::fs::write(&layout, br#"{"imageLayoutVersion":"1.0.0"}"#).map_err(io_err(&layout))?;
    let index = image_index(vec![descriptor(
        media::OCI_MANIFEST,
        manifest_digest,
        manifest_size,
    )?])?;
    let index = to_json(&index).map_err(|e| Error::Usage(e.to_string()))?;
    let tmp = dir.join(".index.json.tmp");
    let mut f = std::fs::File::create(&tmp).map_err(io_err(&tmp))?;
    f.write_all(&index)
        .and_then(|()| f.sync_all())
        .map_err(io_err(&tmp))?;
    let dest = dir.join("index.json");
    std::fs::rename(&tmp, &dest).map_err(io_err(&dest))
}

/// An imported cache: its records, and where the blobs of their layers are.
#[derive(Debug)]
pub struct Imported {
    from: Location,
    records: HashMap<String, Vec<u8>>,
    /// diff id → the blob carrying it.
    blobs: HashMap<String, Layer>,
}

/// Reads the cache at `from` (manifest and config only; blobs come later, on demand).
pub async fn import(
    store: &Store,
    registry: &kiln_registry::Client,
    from: &Location,
) -> Result<Imported> {
    let format = |e: &dyn std::fmt::Display| Error::Format(from.to_string(), e.to_string());
    let (manifest, config) = match from {
        Location::Registry(r) => {
            let img = registry.resolve(r, store).await?;
            let cd = img.manifest.config().digest().to_string();
            (img.manifest, store.read_blob(&cd)?)
        }
        Location::Local(dir) => {
            let read = |p: PathBuf| -> Result<Vec<u8>> { std::fs::read(&p).map_err(io_err(&p)) };
            let in_file = |p: &Path, e: &dyn std::fmt::Display| {
                Error::Format(p.display().to_string(), e.to_string())
            };
            let index_path = dir.join("index.json");
            let index = kiln_oci::image::parse_index(&read(index_path.clone())?)
                .map_err(|e| in_file(&index_path, &e))?;
            let md = index
                .manifests()
                .first()
                .ok_or_else(|| in_file(&index_path, &"it lists no manifest"))?
                .digest()
                .to_string();
            let manifest_path = blob_in(dir, &md);
            let m = kiln_oci::image::parse_manifest(&read(manifest_path.clone())?)
                .map_err(|e| in_file(&manifest_path, &e))?;
            let c = read(blob_in(dir, m.config().digest().as_ref()))?;
            (m, c)
        }
    };
    let bad = |what: &str| Error::Format(from.to_string(), what.to_string());
    let config: ImportedConfig = serde_json::from_slice(&config).map_err(|e| format(&e))?;
    let records_json = config
        .cache
        .ok_or_else(|| bad("its config has no kiln.cache.v1 records"))?
        .records;
    let layers = image_layers(&manifest, config.rootfs.diff_ids())
        .map_err(|_| bad("its layers and diff ids do not pair up"))?;
    let blobs = layers.into_iter().map(|l| (l.diff_id.clone(), l)).collect();
    let mut records = HashMap::new();
    for r in records_json {
        let v = serde_json::to_vec(&r.value).map_err(|e| format(&e))?;
        records.insert(r.key, v);
    }
    Ok(Imported {
        from: from.clone(),
        records,
        blobs,
    })
}

fn blob_in(dir: &Path, digest: &str) -> PathBuf {
    dir.join("blobs")
        .join(digest.replacen(':', "/", 1).replace("..", ""))
}

impl Imported {
    /// The imported record under `key`.
    pub fn get(&self, key: &str) -> Option<Vec<u8>> {
        self.records.get(key).cloned()
    }

    /// How many records were imported.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Whether nothing was imported.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Makes `layers` available in `store`: fetches, from where the cache came from, the
    /// blobs of those that are neither extracted nor stored, and records them under their
    /// diff ids. `Ok(false)` when a layer is missing locally and the cache has no blob
    /// for it.
    pub async fn fetch(
        &self,
        store: &Arc<Store>,
        registry: &kiln_registry::Client,
        layers: &[Layer],
    ) -> Result<bool> {
        let mut wanted = Vec::new();
        for l in layers {
            if store.layer_available(l) {
                continue;
            }
            match self.blobs.get(&l.diff_id) {
                Some(b) => wanted.push(b.clone()),
                None => return Ok(false),
            }
        }
        if wanted.is_empty() {
            return Ok(true);
        }
        match &self.from {
            Location::Registry(r) => {
                let list: Vec<(String, u64)> =
                    wanted.iter().map(|b| (b.digest.clone(), b.size)).collect();
                registry.fetch_blobs(r, &list, store).await?;
            }
            Location::Local(dir) => {
                let (s, dir, w) = (store.clone(), dir.clone(), wanted.clone());
                tokio::task::spawn_blocking(move || -> Result<()> {
                    for b in &w {
                        let p = blob_in(&dir, &b.digest);
                        let mut f = std::fs::File::open(&p).map_err(io_err(&p))?;
                        let mut bw = s.blob_writer()?;
                        std::io::copy(&mut f, &mut bw).map_err(io_err(&p))?;
                        bw.commit(Some(&b.digest))?;
                    }
                    Ok(())
                })
                .await
                .map_err(|e| Error::Usage(e.to_string()))??;
            }
        }
        for b in &wanted {
            store.record_layer(b)?;
        }
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse_as_buildx_spells_them() {
        let e = ExportSpec::parse("type=registry,ref=127.0.0.1:5000/cache:x,mode=max").unwrap();
        assert!(e.max);
        assert!(matches!(e.to, Location::Registry(_)));
        let e = ExportSpec::parse("type=local,dest=/tmp/c").unwrap();
        assert!(!e.max, "mode=min is the default");
        assert_eq!(e.to, Location::Local("/tmp/c".into()));
        for bad in [
            "type=registry",
            "type=local",
            "type=gha",
            "mode=max",
            "type=registry,ref=x,mode=all",
        ] {
            assert!(ExportSpec::parse(bad).is_err(), "{bad}");
        }
        assert!(ExportSpec::parse("type=inline")
            .unwrap_err()
            .to_string()
            .contains("not supported"));
        assert!(matches!(
            parse_from("127.0.0.1:5000/cache:x").unwrap(),
            Location::Registry(_)
        ));
        assert_eq!(
            parse_from("type=local,src=/c").unwrap(),
            Location::Local("/c".into())
        );
        assert!(parse_from("type=local").is_err());
    }

    /// The typed config is byte for byte the one kiln built by hand before, so a cache's
    /// digests do not change.
    #[test]
    fn cache_config_bytes_are_the_hand_built_ones() {
        let layer = |n: char| Layer {
            diff_id: format!("sha256:{}", n.to_string().repeat(64)),
            digest: format!("sha256:{}", "f".repeat(64)),
            size: 3,
            media_type: media::OCI_LAYER_GZIP.into(),
        };
        let blobs = [layer('a'), layer('b')];
        let records = vec![
            Record {
                key: "sha256:k1".into(),
                value: br#"{"z": 1, "a": [true, null], "m": {"y": "x", "b": 2}}"#.to_vec(),
                layers: vec![],
            },
            Record {
                key: "sha256:k2".into(),
                value: b"[]".to_vec(),
                layers: vec![],
            },
        ];
        let mut recs = Vec::new();
        for r in &records {
            let value: Value = serde_json::from_slice(&r.value).unwrap();
            recs.push(serde_json::json!({"key": r.key, "value": value}));
        }
        let by_hand = serde_json::json!({
            "architecture": "amd64",
            "os": "linux",
            "config": {"Labels": {"org.opencontainers.image.description": "kiln build cache"}},
            "rootfs": {"type": "layers", "diff_ids": blobs.iter().map(|b| &b.diff_id).collect::<Vec<_>>()},
            CONFIG_FIELD: {"records": recs},
        });
        assert_eq!(
            String::from_utf8(cache_config(&records, &blobs).unwrap()).unwrap(),
            String::from_utf8(serde_json::to_vec(&by_hand).unwrap()).unwrap()
        );
    }

    /// A local cache whose index or manifest is malformed is refused with an error naming
    /// it, not read with empty digests.
    #[tokio::test]
    async fn malformed_local_caches_are_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(&tmp.path().join("store")).unwrap();
        let registry = kiln_registry::Client::new(kiln_registry::RegistryConfig::default());
        let dir = tmp.path().join("cache");
        let blob = |bytes: &[u8]| {
            let d = kiln_oci::sha256_hex_digest(bytes);
            let p = blob_in(&dir, &d);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, bytes).unwrap();
            d
        };
        let index = |manifest: Option<&str>| {
            let m = manifest.map_or_else(Vec::new, |d| {
                vec![serde_json::json!({"mediaType": media::OCI_MANIFEST, "digest": d, "size": 1})]
            });
            let v = serde_json::json!({"schemaVersion": 2, "manifests": m});
            std::fs::write(dir.join("index.json"), serde_json::to_vec(&v).unwrap()).unwrap();
        };
        let from = Location::Local(dir.clone());
        std::fs::create_dir_all(&dir).unwrap();

        index(None);
        let e = import(&store, &registry, &from).await.unwrap_err();
        assert!(matches!(e, Error::Format(..)), "{e}");
        assert!(e.to_string().contains("lists no manifest"), "{e}");

        let diff_id = format!("sha256:{}", "a".repeat(64));
        let config = blob(
            serde_json::to_string(&serde_json::json!({
                "rootfs": {"type": "layers", "diff_ids": [diff_id]},
                CONFIG_FIELD: {"records": []},
            }))
            .unwrap()
            .as_bytes(),
        );
        let manifest = blob(
            serde_json::to_string(&serde_json::json!({
                "schemaVersion": 2,
                "config": {"mediaType": media::OCI_CONFIG, "digest": config, "size": 1},
                "layers": [{"mediaType": media::OCI_LAYER_GZIP, "size": 1}],
            }))
            .unwrap()
            .as_bytes(),
        );
        index(Some(&manifest));
        let e = import(&store, &registry, &from).await.unwrap_err();
        assert!(matches!(e, Error::Format(..)), "{e}");
        assert!(e.to_string().contains("is not a kiln build cache"), "{e}");
    }
}
