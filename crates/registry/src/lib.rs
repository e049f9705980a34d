//! OCI distribution client: resolve a reference to a manifest, pull an image into the
//! content store, push an image from it.
//!
//! It speaks the [OCI distribution API](https://github.com/opencontainers/distribution-spec)
//! (which Docker Hub and the reference `registry` implement): manifests and blobs by digest,
//! anonymous access first, then the `Bearer` token flow or `Basic` credentials from a
//! Docker-style `config.json` when the registry challenges. Pulls try the configured mirrors
//! of a host in order before the host itself; pushes go to the host only.
//!
//! Design: blobs are never held whole in memory. A pulled blob streams from the response
//! body, chunk by chunk, through a small bounded channel into a blocking task that writes it
//! to the store's `BlobWriter` (which hashes as it writes and checks the digest on commit,
//! so a corrupt download never lands in the store). A pushed blob streams from its file as
//! the request body. Uploads are monolithic — `POST` opens an upload session, one `PUT`
//! carries the whole blob and its digest — rather than chunked `PATCH`es: one round trip
//! fewer per blob, accepted by every registry, and a failed upload simply starts over.
//!
//! Faults: every request kiln makes is safe to repeat — GET and HEAD, the manifest PUT
//! (same bytes under the same name), and a blob upload, which is retried whole (a new `POST`
//! session, then the `PUT`): the registry names a blob by its digest, so a second upload of
//! it is harmless, whereas a `PUT` into a session a failed attempt may have spoiled is not.
//! A connection error, a 408, 429 or 5xx (but 501 and 505) is retried up to
//! [`RetryConfig::retries`] times after a delay: the answer's `Retry-After` (seconds or an
//! HTTP date) when it has one, else an exponential backoff with jitter, both capped at
//! [`RetryConfig::max_delay`]. A blob download that breaks off resumes where it stopped with
//! `Range: bytes=N-` (a `206` must say it starts at N; a `200` — the registry ignored the
//! range — is read from its start and its first N bytes skipped); the digest is still
//! checked over the whole blob. A registry that sends nothing (no answer, no byte of a body)
//! for [`RegistryConfig::stall_timeout`] ends the transfer with an error naming it; a stall
//! is not retried.
//!
//! CONTRACT (fixed by the workspace; other crates call exactly these signatures).
#![deny(missing_docs)]

mod auth;

pub use auth::{
    docker_config_key, remove_docker_credentials, save_docker_credentials, stored_credentials,
};

use bytes::Bytes;
use futures::{StreamExt as _, TryStreamExt as _};
use kiln_cache::Store;
use kiln_oci::Reference;
use reqwest::header::{
    HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, LOCATION, WWW_AUTHENTICATE,
};
use reqwest::{Method, StatusCode, Url};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Write as _;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Per-host settings (from `[registry."HOST"]` in kiln's config.toml).
#[derive(Clone, Debug, Default, serde::Deserialize)]
pub struct HostConfig {
    /// Plain HTTP. Loopback hosts (127.0.0.0/8, localhost, ::1) default to true, like Docker.
    pub http: Option<bool>,
    /// Mirrors tried (in order) before the host itself, `host[:port]`.
    #[serde(default)]
    pub mirrors: Vec<String>,
}

/// Registry settings for every host.
#[derive(Clone, Debug)]
pub struct RegistryConfig {
    /// By host name (`docker.io`, `127.0.0.1:5000`).
    pub hosts: BTreeMap<String, HostConfig>,
    /// Path of the Docker-style credentials file (`~/.docker/config.json`); `auths` with
    /// base64 `auth` entries are used for Basic auth and for the Bearer token flow.
    pub docker_config: Option<std::path::PathBuf>,
    /// How transient faults are retried.
    pub retry: RetryConfig,
    /// A registry that sends nothing for this long (no connection, no answer, no byte of a
    /// body, or reads nothing of an upload) is given up on (default 30 s).
    pub stall_timeout: Duration,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        Self {
            hosts: BTreeMap::new(),
            docker_config: None,
            retry: RetryConfig::default(),
            stall_timeout: Duration::from_secs(30),
        }
    }
}

/// Retries of requests that failed for a reason that may pass (see the crate docs).
#[derive(Clone, Debug)]
pub struct RetryConfig {
    /// Attempts after the first (default 4).
    pub retries: u32,
    /// The first backoff delay (default 200 ms), doubled for each further attempt; the
    /// delay waited is a random point in its upper half.
    pub base_delay: Duration,
    /// The longest delay waited, for a backoff or a `Retry-After` (default 30 s).
    pub max_delay: Duration,
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            retries: 4,
            base_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(30),
        }
    }
}

impl RetryConfig {
    /// The backoff before attempt `n + 2` (after the `n + 1`th failure).
    fn backoff(&self, n: u32) -> Duration {
        use rand::Rng as _;
        let full = self
            .base_delay
            .saturating_mul(1u32 << n.min(20))
            .min(self.max_delay);
        rand::thread_rng().gen_range(full / 2..=full)
    }
}

/// Errors from registry operations; each names the registry and reference.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Could not connect / transport failure.
    #[error("cannot reach registry {registry}: {message}")]
    Unreachable {
        /// Host.
        registry: String,
        /// Cause.
        message: String,
    },
    /// The manifest or repository does not exist.
    #[error("{reference}: not found in registry")]
    NotFound {
        /// What was asked for.
        reference: String,
    },
    /// Authentication failed or is required.
    #[error("{registry}: unauthorized: {message}")]
    Unauthorized {
        /// Host.
        registry: String,
        /// Detail.
        message: String,
    },
    /// Any other protocol error (unexpected status, bad manifest, digest mismatch).
    #[error("{registry}: {message}")]
    Protocol {
        /// Host.
        registry: String,
        /// Detail.
        message: String,
    },
    /// The local store failed.
    #[error(transparent)]
    Store(#[from] kiln_cache::Error),
}

/// Result alias.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// An image whose manifest and config are in the local content store.
#[derive(Clone, Debug)]
pub struct PulledImage {
    /// `sha256:…` of the manifest (an image manifest, never an index: indexes are resolved
    /// to the linux/amd64 entry).
    pub manifest_digest: String,
    /// The manifest.
    pub manifest: kiln_oci::spec::ImageManifest,
    /// The config.
    pub config: kiln_oci::spec::ImageConfiguration,
}

impl PulledImage {
    /// The image's layers, bottom first: the manifest's blobs with the config's diff ids.
    pub fn layers(&self) -> std::result::Result<Vec<kiln_oci::Layer>, String> {
        let blobs = self.manifest.layers();
        let diff_ids = self.config.rootfs().diff_ids();
        if blobs.len() != diff_ids.len() {
            return Err(format!(
                "{} layers but {} diff ids",
                blobs.len(),
                diff_ids.len()
            ));
        }
        Ok(blobs
            .iter()
            .zip(diff_ids)
            .map(|(b, d)| kiln_oci::Layer {
                diff_id: d.clone(),
                digest: b.digest().to_string(),
                size: b.size(),
                media_type: b.media_type().to_string(),
            })
            .collect())
    }
}

/// The client. One per process; clones share connections and tokens.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    cfg: RegistryConfig,
    /// For remote hosts: honours the `*_PROXY` environment.
    http: reqwest::Client,
    /// For loopback hosts: never through a proxy.
    direct: reqwest::Client,
    /// `http` and `direct` without a read timeout, for blob uploads: reqwest's read timeout
    /// runs from the start of the request, so a long upload would trip it; uploads watch
    /// their own progress instead (`Client::push_blob_once`).
    upload_http: reqwest::Client,
    upload_direct: reqwest::Client,
    /// `Authorization` header values by (endpoint host, scope).
    tokens: Mutex<HashMap<(String, String), String>>,
}

/// How many blobs are transferred at once.
const PARALLEL_BLOBS: usize = 3;
/// Largest manifest accepted (the distribution spec lets registries cap at 4 MiB).
const MAX_MANIFEST: usize = 16 << 20;
/// Chunks in flight between the network and the blob writer.
const CHANNEL_CHUNKS: usize = 16;

const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.manifest.v1+json, \
    application/vnd.oci.image.index.v1+json, \
    application/vnd.docker.distribution.manifest.v2+json, \
    application/vnd.docker.distribution.manifest.list.v2+json";

/// Where requests for a registry go.
#[derive(Clone, Debug)]
struct Endpoint {
    /// `host[:port]` as contacted (`registry-1.docker.io` for `docker.io`).
    host: String,
    /// `scheme://host/`.
    base: Url,
    /// Loopback: no proxy.
    local: bool,
}

impl Endpoint {
    fn url(&self, path: &str) -> Url {
        // `path` is built from validated repository names and digests/tags.
        self.base.join(path).unwrap_or_else(|_| self.base.clone())
    }
}

/// What a request is for: the endpoint, the reference (for error messages) and the token
/// scope.
struct Ctx<'a> {
    ep: &'a Endpoint,
    reference: &'a Reference,
    scope: String,
}

impl Ctx<'_> {
    /// `message` prefixed with the reference (a registry-level request, such as the login
    /// check, carries a reference with an empty repository and gets no prefix).
    fn detail(&self, message: impl std::fmt::Display) -> String {
        if self.reference.repository.is_empty() {
            message.to_string()
        } else {
            format!("{}: {message}", self.reference)
        }
    }
    fn protocol(&self, message: impl std::fmt::Display) -> Error {
        Error::Protocol {
            registry: self.ep.host.clone(),
            message: self.detail(message),
        }
    }
    fn unreachable(&self, message: impl std::fmt::Display) -> Error {
        Error::Unreachable {
            registry: self.ep.host.clone(),
            message: self.detail(message),
        }
    }
    fn unauthorized(&self, message: impl std::fmt::Display) -> Error {
        Error::Unauthorized {
            registry: self.ep.host.clone(),
            message: self.detail(message),
        }
    }
    fn not_found(&self, what: Option<&str>) -> Error {
        let reference = match what {
            Some(w) => format!("{} ({w}, registry {})", self.reference, self.ep.host),
            None if self.ep.host != self.reference.registry => {
                format!("{} (registry {})", self.reference, self.ep.host)
            }
            None => self.reference.to_string(),
        };
        Error::NotFound { reference }
    }
}

/// A request builder; called again when the request must be retried (with credentials, or
/// after a fault).
type MakeRequest<'a> =
    dyn Fn(&reqwest::Client) -> Result<reqwest::RequestBuilder> + Send + Sync + 'a;

/// A failed attempt: the error, and whether another attempt may succeed (after the
/// registry's `Retry-After`, when it gave one).
struct Fault {
    error: Error,
    transient: bool,
    retry_after: Option<Duration>,
}

impl From<Error> for Fault {
    fn from(error: Error) -> Self {
        Fault {
            error,
            transient: false,
            retry_after: None,
        }
    }
}

/// Statuses worth another attempt: request timeout, too many requests, and the server
/// errors that describe a passing state (not 501 Not Implemented, 505 Version Not Supported).
fn transient_status(s: StatusCode) -> bool {
    s == StatusCode::REQUEST_TIMEOUT
        || s == StatusCode::TOO_MANY_REQUESTS
        || (s.is_server_error()
            && s != StatusCode::NOT_IMPLEMENTED
            && s != StatusCode::HTTP_VERSION_NOT_SUPPORTED)
}

/// A `Retry-After` header: delay-seconds or an HTTP date (past dates: no wait).
fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let v = headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = httpdate::parse_http_date(v).ok()?;
    Some(
        when.duration_since(std::time::SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

/// The first byte a `206` answer's `Content-Range: bytes START-END/TOTAL` holds, and TOTAL
/// (`None` for `*`).
fn content_range(headers: &reqwest::header::HeaderMap) -> Option<(u64, Option<u64>)> {
    let v = headers
        .get(reqwest::header::CONTENT_RANGE)?
        .to_str()
        .ok()?
        .trim();
    let (range, total) = v.strip_prefix("bytes ")?.split_once('/')?;
    let (start, end) = range.split_once('-')?;
    let (start, end) = (start.parse::<u64>().ok()?, end.parse::<u64>().ok()?);
    if end < start {
        return None;
    }
    let total = match total {
        "*" => None,
        t => Some(t.parse::<u64>().ok()?),
    };
    Some((start, total))
}

/// Whether a transport error is a timeout (a stall: not retried).
fn is_stall(e: &reqwest::Error) -> bool {
    e.is_timeout()
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        let m = c.to_string();
        if !s.contains(&m) {
            s.push_str(": ");
            s.push_str(&m);
        }
        src = c.source();
    }
    s
}

/// The host part of `host[:port]` (brackets of an IPv6 literal removed).
fn host_name(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match host.matches(':').count() {
        1 => host.split(':').next().unwrap_or(host),
        _ => host,
    }
}

/// 127.0.0.0/8, `localhost`, `::1`, with or without port.
pub fn is_loopback(host: &str) -> bool {
    let name = host_name(host);
    if name.eq_ignore_ascii_case("localhost") {
        return true;
    }
    name.parse::<std::net::IpAddr>()
        .is_ok_and(|ip| ip.is_loopback())
}

fn is_sha256_digest(d: &str) -> bool {
    d.strip_prefix("sha256:").is_some_and(|h| {
        h.len() == 64
            && h.bytes()
                .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c))
    })
}

fn is_index_type(mt: &str) -> bool {
    mt == kiln_oci::media::OCI_INDEX || mt == kiln_oci::media::DOCKER_LIST
}

/// The media type of a manifest: its `mediaType` field, else the response's content type,
/// else guessed from its shape.
fn manifest_media_type(json: &serde_json::Value, content_type: Option<&str>) -> String {
    if let Some(mt) = json.get("mediaType").and_then(|m| m.as_str()) {
        return mt.to_string();
    }
    if let Some(ct) = content_type {
        let ct = ct.split(';').next().unwrap_or("").trim();
        if is_index_type(ct)
            || ct == kiln_oci::media::OCI_MANIFEST
            || ct == kiln_oci::media::DOCKER_MANIFEST
        {
            return ct.to_string();
        }
    }
    if json.get("manifests").is_some() {
        kiln_oci::media::OCI_INDEX.to_string()
    } else {
        kiln_oci::media::OCI_MANIFEST.to_string()
    }
}

/// The `linux/amd64` entry of an index (without a variant, or `v1` first).
fn pick_platform(index: &serde_json::Value) -> Option<String> {
    let entries = index.get("manifests")?.as_array()?;
    let mut best: Option<(u8, String)> = None;
    for m in entries {
        let Some(p) = m.get("platform") else { continue };
        let field = |k: &str| p.get(k).and_then(|v| v.as_str());
        if field("os") != Some("linux") || field("architecture") != Some("amd64") {
            continue;
        }
        let Some(digest) = m.get("digest").and_then(|d| d.as_str()) else {
            continue;
        };
        let rank = match field("variant") {
            None | Some("" | "v1") => 0,
            _ => 1,
        };
        let better = match &best {
            None => true,
            Some((r, _)) => rank < *r,
        };
        if better {
            best = Some((rank, digest.to_string()));
        }
    }
    best.map(|(_, d)| d)
}

/// A short description from a registry error body (`{"errors":[{"code","message"}]}`).
async fn error_detail(resp: reqwest::Response) -> String {
    let status = resp.status();
    let body = read_capped(resp, 64 << 10).await.unwrap_or_default();
    let mut parts = Vec::new();
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&body) {
        if let Some(errs) = v.get("errors").and_then(|e| e.as_array()) {
            for e in errs {
                let code = e.get("code").and_then(|c| c.as_str()).unwrap_or("");
                let msg = e.get("message").and_then(|c| c.as_str()).unwrap_or("");
                parts.push(format!("{code} {msg}").trim().to_string());
            }
        }
    }
    if parts.is_empty() {
        let text = String::from_utf8_lossy(&body);
        let text = text.trim();
        if !text.is_empty() {
            parts.push(text.chars().take(200).collect());
        }
    }
    if parts.is_empty() {
        format!("HTTP {status}")
    } else {
        format!("HTTP {status}: {}", parts.join("; "))
    }
}

/// The whole body, failing when it exceeds `cap` bytes.
async fn read_capped(resp: reqwest::Response, cap: usize) -> std::result::Result<Vec<u8>, String> {
    if resp.content_length().is_some_and(|n| n > cap as u64) {
        return Err(format!("response larger than {cap} bytes"));
    }
    let mut out = Vec::new();
    let mut stream = resp.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| error_chain(&e))?;
        if out.len() + chunk.len() > cap {
            return Err(format!("response larger than {cap} bytes"));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

/// What the network side hands the blob-writing task.
enum Chunk {
    Data(Bytes),
    /// Everything arrived: commit. (A channel closed without `End` — an error, or the
    /// download future dropped — abandons the blob.)
    End,
}

impl Client {
    /// A client with these settings.
    pub fn new(cfg: RegistryConfig) -> Self {
        let stall = cfg.stall_timeout.max(Duration::from_millis(1));
        // The read timeout restarts with every read, so it is the stall timeout of a
        // download; it also bounds the wait for an answer's head.
        let builder = |read_timeout: bool| {
            let b = reqwest::Client::builder()
                .user_agent(concat!("kiln/", env!("CARGO_PKG_VERSION")))
                .connect_timeout(stall);
            if read_timeout {
                b.read_timeout(stall)
            } else {
                b
            }
        };
        let http = builder(true)
            .build()
            .unwrap_or_else(|_| reqwest::Client::new());
        let direct = builder(true)
            .no_proxy()
            .build()
            .unwrap_or_else(|_| http.clone());
        let upload_http = builder(false).build().unwrap_or_else(|_| http.clone());
        let upload_direct = builder(false)
            .no_proxy()
            .build()
            .unwrap_or_else(|_| direct.clone());
        Self {
            inner: Arc::new(Inner {
                cfg,
                http,
                direct,
                upload_http,
                upload_direct,
                tokens: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// Fetches the manifest (resolving an index to linux/amd64) and the config blob into
    /// `store`, but no layers. Docker schema 2 manifests are accepted and returned as OCI
    /// types (their media types kept as they are in the stored blob).
    pub async fn resolve(&self, reference: &Reference, store: &Store) -> Result<PulledImage> {
        let eps = self.endpoints(&reference.registry, true);
        let mut last = None;
        for ep in &eps {
            let ctx = Ctx {
                ep,
                reference,
                scope: pull_scope(reference),
            };
            match self.resolve_at(&ctx, store).await {
                Ok(p) => return Ok(p),
                Err(e @ Error::Store(_)) => return Err(e),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| Error::NotFound {
            reference: reference.to_string(),
        }))
    }

    /// `resolve`, then every layer blob not already present, streamed to disk with its digest
    /// verified. Names nothing (see [`Client::pull_and_name`]).
    pub async fn pull(&self, reference: &Reference, store: &Store) -> Result<PulledImage> {
        let image = self.resolve(reference, store).await?;
        self.fetch_layers(reference, &image.manifest, store).await?;
        Ok(image)
    }

    /// What `kiln pull` and the pull of `kiln run` do: [`Client::pull`], then every layer
    /// unpacked into its snapshot (several at once), which checks it against the config's
    /// diff id and refuses hostile entries, and only then `reference` named in `store`. A
    /// name thus only ever points at an image whose every digest was checked; on any
    /// failure nothing is named (the checked blobs stay, unreferenced, for the next pull or
    /// a prune).
    pub async fn pull_and_name(
        &self,
        reference: &Reference,
        store: &Arc<Store>,
    ) -> Result<PulledImage> {
        let image = self.pull(reference, store).await?;
        let ep = self
            .endpoints(&reference.registry, false)
            .pop()
            .expect("the host itself");
        let ctx = Ctx {
            ep: &ep,
            reference,
            scope: String::new(),
        };
        let layers = image
            .layers()
            .map_err(|e| ctx.protocol(format!("image {}: {e}", image.manifest_digest)))?;
        let unpacks = layers.into_iter().map(|l| {
            let store = store.clone();
            tokio::task::spawn_blocking(move || store.snapshot(&l).map(|_| ()))
        });
        for done in futures::future::join_all(unpacks).await {
            done.map_err(|e| ctx.protocol(format!("unpacking a layer failed: {e}")))??;
        }
        store.set_image(&reference.to_string(), &image.manifest_digest)?;
        Ok(image)
    }

    /// Fetches the layer blobs of an already-resolved manifest that are missing from `store`.
    pub async fn fetch_layers(
        &self,
        reference: &Reference,
        manifest: &kiln_oci::spec::ImageManifest,
        store: &Store,
    ) -> Result<()> {
        let blobs: Vec<(String, u64)> = manifest
            .layers()
            .iter()
            .map(|l| (l.digest().to_string(), l.size()))
            .collect();
        self.fetch_blobs(reference, &blobs, store).await
    }

    /// Fetches blobs (digest, size) of `reference`'s repository that are missing from
    /// `store`, several at once, each streamed to disk with its digest verified.
    pub async fn fetch_blobs(
        &self,
        reference: &Reference,
        blobs: &[(String, u64)],
        store: &Store,
    ) -> Result<()> {
        let mut seen = BTreeSet::new();
        let wanted: Vec<(String, u64)> = blobs
            .iter()
            .filter(|(d, _)| seen.insert(d.clone()) && !store.has_blob(d))
            .cloned()
            .collect();
        if wanted.is_empty() {
            return Ok(());
        }
        let eps = self.endpoints(&reference.registry, true);
        futures::stream::iter(wanted)
            .map(|(digest, size)| {
                let eps = &eps;
                async move {
                    let mut last = None;
                    for ep in eps {
                        let ctx = Ctx {
                            ep,
                            reference,
                            scope: pull_scope(reference),
                        };
                        match self.download_blob(&ctx, &digest, Some(size), store).await {
                            Ok(()) => return Ok(()),
                            Err(e @ Error::Store(_)) => return Err(e),
                            Err(e) => last = Some(e),
                        }
                    }
                    Err(last.unwrap_or_else(|| Error::NotFound {
                        reference: reference.to_string(),
                    }))
                }
            })
            .buffer_unordered(PARALLEL_BLOBS)
            .try_collect::<Vec<()>>()
            .await?;
        Ok(())
    }

    /// Pushes the image whose manifest blob is `manifest_digest` in `store` to `reference`
    /// (blobs that the registry has are skipped; blobs are streamed from disk; the manifest
    /// is put last under the reference's tag). Returns the manifest digest.
    pub async fn push(
        &self,
        store: &Store,
        manifest_digest: &str,
        reference: &Reference,
    ) -> Result<String> {
        let ep = self
            .endpoints(&reference.registry, false)
            .pop()
            .expect("the host itself");
        let ctx = Ctx {
            ep: &ep,
            reference,
            scope: push_scope(reference),
        };
        if !is_sha256_digest(manifest_digest) {
            return Err(ctx.protocol(format!("invalid manifest digest `{manifest_digest}`")));
        }
        let target = match (&reference.tag, &reference.digest) {
            (Some(t), _) => t.clone(),
            (None, Some(d)) if d != manifest_digest => {
                return Err(ctx.protocol(format!(
                    "the reference's digest does not match the manifest {manifest_digest}"
                )))
            }
            _ => manifest_digest.to_string(),
        };
        self.push_manifest(&ctx, store, manifest_digest, &target)
            .await?;
        Ok(manifest_digest.to_string())
    }

    /// Checks `user`/`password` against `registry` as `docker login` does: `GET /v2/`, and
    /// when that is refused (401) answers the challenge with these credentials (Basic, or
    /// a token fetched from the Bearer realm with Basic auth) and asks again. Only a 2xx
    /// answer is success; a refusal is [`Error::Unauthorized`]. Nothing is cached or saved.
    /// Plain HTTP or HTTPS is chosen as for pulls and pushes (config `http`, loopback).
    pub async fn check_login(&self, registry: &str, user: &str, password: &str) -> Result<()> {
        let ep = self
            .endpoints(registry, false)
            .pop()
            .expect("the host itself");
        // Registry-level: no repository (see `Ctx::detail`) and no token scope.
        let reference = Reference {
            registry: registry.to_string(),
            repository: String::new(),
            tag: None,
            digest: None,
        };
        let ctx = Ctx {
            ep: &ep,
            reference: &reference,
            scope: String::new(),
        };
        let url = ep.url("v2/");
        let client = self.client_for(ep.local);
        let get = |auth: Option<String>| {
            let mut rb = client.get(url.clone());
            if let Some(a) = auth {
                rb = rb.header(AUTHORIZATION, a);
            }
            async {
                rb.send()
                    .await
                    .map_err(|e| ctx.unreachable(error_chain(&e)))
            }
        };
        let mut resp = get(None).await?;
        if resp.status() == StatusCode::UNAUTHORIZED {
            let challenges = challenges_of(&resp);
            let creds = Some((user.to_string(), password.to_string()));
            let header = self.authenticate(&ctx, &challenges, creds).await?;
            resp = get(Some(header)).await?;
        }
        if resp.status().is_success() {
            Ok(())
        } else {
            Err(self.fail(&ctx, resp, "").await)
        }
    }

    // ---- endpoints and requests ----

    /// Mirrors (when `with_mirrors`) then the host itself.
    fn endpoints(&self, registry: &str, with_mirrors: bool) -> Vec<Endpoint> {
        let cfg = &self.inner.cfg;
        let mut out = Vec::new();
        let host_cfg = cfg.hosts.get(registry);
        if with_mirrors {
            for m in host_cfg.map(|h| h.mirrors.as_slice()).unwrap_or_default() {
                let m = m.trim().trim_end_matches('/');
                // Accept `https://mirror` too.
                let (scheme, host) = match m.split_once("://") {
                    Some((s, h)) => (Some(s == "http"), h),
                    None => (None, m),
                };
                let http = scheme.or_else(|| cfg.hosts.get(host).and_then(|h| h.http));
                if let Some(ep) = make_endpoint(host, http) {
                    out.push(ep);
                }
            }
        }
        let real = if registry == "docker.io" || registry == "index.docker.io" {
            "registry-1.docker.io"
        } else {
            registry
        };
        let http = host_cfg
            .and_then(|h| h.http)
            .or_else(|| cfg.hosts.get(real).and_then(|h| h.http));
        out.push(make_endpoint(real, http).unwrap_or_else(|| Endpoint {
            host: real.to_string(),
            base: Url::parse("https://invalid.invalid/").expect("static URL"),
            local: false,
        }));
        out
    }

    fn client_for(&self, local: bool) -> &reqwest::Client {
        if local {
            &self.inner.direct
        } else {
            &self.inner.http
        }
    }

    fn upload_client_for(&self, local: bool) -> &reqwest::Client {
        if local {
            &self.inner.upload_direct
        } else {
            &self.inner.upload_http
        }
    }

    /// Runs `attempt` until it succeeds, fails for good, or the retries are spent, waiting
    /// between attempts (the fault's `Retry-After`, else a backoff; both capped). `attempt`
    /// is told whether it is the last one.
    async fn with_retries<T, F, Fut>(&self, mut attempt: F) -> Result<T>
    where
        F: FnMut(bool) -> Fut,
        Fut: std::future::Future<Output = std::result::Result<T, Fault>>,
    {
        let rc = &self.inner.cfg.retry;
        let mut n = 0;
        loop {
            match attempt(n >= rc.retries).await {
                Ok(v) => return Ok(v),
                Err(f) if f.transient && n < rc.retries => {
                    let wait = match f.retry_after {
                        Some(d) => d.min(rc.max_delay),
                        None => rc.backoff(n),
                    };
                    tokio::time::sleep(wait).await;
                    n += 1;
                }
                Err(f) => return Err(f.error),
            }
        }
    }

    /// The error of a request that failed in transport: a stall (a timeout) names the
    /// stall timeout and is final; anything else (refused, reset) may pass.
    fn transport_fault(&self, ctx: &Ctx<'_>, what: &str, e: &reqwest::Error) -> Fault {
        let prefix = if what.is_empty() {
            String::new()
        } else {
            format!("{what}: ")
        };
        if is_stall(e) {
            return Fault::from(self.stalled(ctx, what));
        }
        Fault {
            error: ctx.unreachable(format!("{prefix}{}", error_chain(e))),
            transient: true,
            retry_after: None,
        }
    }

    /// The error of a transfer that made no progress for the stall timeout.
    fn stalled(&self, ctx: &Ctx<'_>, what: &str) -> Error {
        ctx.unreachable(format!(
            "{what}{}the registry sent nothing for {} (registry stall-timeout)",
            if what.is_empty() { "" } else { ": " },
            humantime::format_duration(self.inner.cfg.stall_timeout)
        ))
    }

    /// Sends a request (every caller's is safe to repeat: GET, HEAD, the manifest PUT),
    /// retrying after faults that may pass, authenticating when the registry answers 401.
    /// Returns the response whatever its status (a 5xx once the retries are spent, a 401
    /// when credentials were rejected).
    async fn send(&self, ctx: &Ctx<'_>, make: &MakeRequest<'_>) -> Result<reqwest::Response> {
        self.with_retries(|last| self.send_once(ctx, make, last, false))
            .await
    }

    /// One attempt at a request (authenticating and asking again once on a 401). Unless
    /// this is the `last` attempt, a transient status is a transient [`Fault`]. `upload`
    /// picks the clients without a read timeout.
    async fn send_once(
        &self,
        ctx: &Ctx<'_>,
        make: &MakeRequest<'_>,
        last: bool,
        upload: bool,
    ) -> std::result::Result<reqwest::Response, Fault> {
        let key = (ctx.ep.host.clone(), ctx.scope.clone());
        let mut authenticated = false;
        loop {
            let client = if upload {
                self.upload_client_for(ctx.ep.local)
            } else {
                self.client_for(ctx.ep.local)
            };
            let mut req = make(client)?
                .build()
                .map_err(|e| ctx.unreachable(error_chain(&e)))?;
            let same_host = req.url().host_str() == ctx.ep.base.host_str()
                && req.url().port_or_known_default() == ctx.ep.base.port_or_known_default();
            let cached = self
                .inner
                .tokens
                .lock()
                .expect("token cache")
                .get(&key)
                .cloned();
            if let (true, Some(auth)) = (same_host, &cached) {
                if let Ok(v) = HeaderValue::from_str(auth) {
                    req.headers_mut().insert(AUTHORIZATION, v);
                }
            }
            let resp = client
                .execute(req)
                .await
                .map_err(|e| self.transport_fault(ctx, "", &e))?;
            if !last && transient_status(resp.status()) {
                let retry_after = retry_after(resp.headers());
                let error = self.fail(ctx, resp, "").await;
                return Err(Fault {
                    error,
                    transient: true,
                    retry_after,
                });
            }
            if resp.status() != StatusCode::UNAUTHORIZED || authenticated {
                return Ok(resp);
            }
            let challenges = challenges_of(&resp);
            let creds = auth::credentials(self.inner.cfg.docker_config.as_deref(), &ctx.ep.host);
            let header = self.authenticate(ctx, &challenges, creds).await?;
            self.inner
                .tokens
                .lock()
                .expect("token cache")
                .insert(key.clone(), header);
            authenticated = true;
        }
    }

    /// The `Authorization` value answering one of `challenges` with `creds`.
    async fn authenticate(
        &self,
        ctx: &Ctx<'_>,
        challenges: &[auth::Challenge],
        creds: Option<(String, String)>,
    ) -> Result<String> {
        if let Some(c) = challenges.iter().find(|c| c.scheme == "bearer") {
            return self.fetch_token(ctx, c, creds).await;
        }
        if challenges.iter().any(|c| c.scheme == "basic") {
            return match creds {
                Some((u, p)) => Ok(auth::basic_header(&u, &p)),
                None => Err(ctx.unauthorized(format!(
                    "authentication required and no credentials for {} in the docker config",
                    ctx.ep.host
                ))),
            };
        }
        Err(ctx.unauthorized("authentication required (no usable WWW-Authenticate challenge)"))
    }

    /// The Bearer token flow: GET realm?service=…&scope=… (with Basic credentials if any).
    async fn fetch_token(
        &self,
        ctx: &Ctx<'_>,
        c: &auth::Challenge,
        creds: Option<(String, String)>,
    ) -> Result<String> {
        let realm = c
            .params
            .get("realm")
            .ok_or_else(|| ctx.unauthorized("Bearer challenge without realm"))?;
        let mut url = Url::parse(realm)
            .or_else(|_| ctx.ep.base.join(realm))
            .map_err(|e| ctx.unauthorized(format!("bad token realm `{realm}`: {e}")))?;
        {
            let mut q = url.query_pairs_mut();
            if let Some(s) = c.params.get("service") {
                q.append_pair("service", s);
            }
            if !ctx.scope.is_empty() {
                q.append_pair("scope", &ctx.scope);
            }
            if let Some(s) = c.params.get("scope").filter(|s| **s != ctx.scope) {
                q.append_pair("scope", s);
            }
        }
        let local = url.host_str().is_some_and(is_loopback);
        let what = format!("token service {realm}");
        let resp = self
            .with_retries(|last| {
                let mut rb = self.client_for(local).get(url.clone());
                if let Some((u, p)) = &creds {
                    rb = rb.basic_auth(u, Some(p));
                }
                let what = &what;
                async move {
                    let resp = rb
                        .send()
                        .await
                        .map_err(|e| self.transport_fault(ctx, what, &e))?;
                    if !last && transient_status(resp.status()) {
                        let retry_after = retry_after(resp.headers());
                        let detail = error_detail(resp).await;
                        return Err(Fault {
                            error: ctx.protocol(format!("{what}: {detail}")),
                            transient: true,
                            retry_after,
                        });
                    }
                    Ok(resp)
                }
            })
            .await?;
        let status = resp.status();
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            let detail = error_detail(resp).await;
            return Err(ctx.unauthorized(format!(
                "token service {realm} refused {}: {detail}",
                if creds.is_some() {
                    "the credentials"
                } else {
                    "anonymous access"
                }
            )));
        }
        if !status.is_success() {
            let detail = error_detail(resp).await;
            return Err(ctx.protocol(format!("token service {realm}: {detail}")));
        }
        let body = read_capped(resp, 1 << 20)
            .await
            .map_err(|e| ctx.protocol(format!("token service {realm}: {e}")))?;
        let v: serde_json::Value = serde_json::from_slice(&body)
            .map_err(|e| ctx.protocol(format!("token service {realm}: bad JSON: {e}")))?;
        let token = ["token", "access_token"]
            .iter()
            .find_map(|k| v.get(*k).and_then(|t| t.as_str()).filter(|t| !t.is_empty()))
            .ok_or_else(|| {
                ctx.protocol(format!("token service {realm}: no token in the answer"))
            })?;
        Ok(format!("Bearer {token}"))
    }

    /// Turns a non-success response into the error it means.
    async fn fail(&self, ctx: &Ctx<'_>, resp: reqwest::Response, what: &str) -> Error {
        let status = resp.status();
        let detail = error_detail(resp).await;
        match status {
            StatusCode::NOT_FOUND => ctx.not_found(if what.is_empty() { None } else { Some(what) }),
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => ctx.unauthorized(format!(
                "{what}{}access denied ({detail})",
                if what.is_empty() { "" } else { ": " }
            )),
            _ => ctx.protocol(format!(
                "{what}{}{detail}",
                if what.is_empty() { "" } else { ": " }
            )),
        }
    }

    // ---- pull ----

    async fn get_manifest(
        &self,
        ctx: &Ctx<'_>,
        tag_or_digest: &str,
    ) -> Result<(Vec<u8>, serde_json::Value, String, Option<String>)> {
        let url = ctx.ep.url(&format!(
            "v2/{}/manifests/{}",
            ctx.reference.repository, tag_or_digest
        ));
        let resp = self
            .send(ctx, &|c| {
                Ok(c.get(url.clone()).header(ACCEPT, MANIFEST_ACCEPT))
            })
            .await?;
        if !resp.status().is_success() {
            let what = if tag_or_digest == ctx.reference.tag_or_digest() {
                String::new()
            } else {
                format!("manifest {tag_or_digest}")
            };
            return Err(self.fail(ctx, resp, &what).await);
        }
        let header_digest = resp
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let content_type = resp
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let bytes = read_capped(resp, MAX_MANIFEST)
            .await
            .map_err(|e| ctx.protocol(format!("manifest {tag_or_digest}: {e}")))?;
        let json: serde_json::Value = serde_json::from_slice(&bytes)
            .map_err(|e| ctx.protocol(format!("manifest {tag_or_digest} is not JSON: {e}")))?;
        let mt = manifest_media_type(&json, content_type.as_deref());
        Ok((bytes, json, mt, header_digest))
    }

    async fn resolve_at(&self, ctx: &Ctx<'_>, store: &Store) -> Result<PulledImage> {
        let reference = ctx.reference;
        let (mut bytes, mut json, mut mt, header_digest) =
            self.get_manifest(ctx, reference.tag_or_digest()).await?;
        let mut digest = kiln_oci::sha256_hex_digest(&bytes);
        let expected = reference
            .digest
            .clone()
            .or(header_digest.filter(|d| d.starts_with("sha256:")));
        if let Some(want) = expected {
            if want != digest {
                return Err(ctx.protocol(format!(
                    "manifest digest mismatch: expected {want}, got {digest}"
                )));
            }
        }
        if is_index_type(&mt) {
            let child = pick_platform(&json)
                .ok_or_else(|| ctx.protocol("the image index has no linux/amd64 manifest"))?;
            if !is_sha256_digest(&child) {
                return Err(ctx.protocol(format!("unsupported manifest digest `{child}`")));
            }
            (bytes, json, mt, _) = self.get_manifest(ctx, &child).await?;
            digest = kiln_oci::sha256_hex_digest(&bytes);
            if digest != child {
                return Err(ctx.protocol(format!(
                    "manifest digest mismatch: expected {child}, got {digest}"
                )));
            }
            if is_index_type(&mt) {
                return Err(ctx.protocol(format!("manifest {child} is an index inside an index")));
            }
        }
        if json
            .get("schemaVersion")
            .and_then(serde_json::Value::as_u64)
            != Some(2)
        {
            return Err(ctx.protocol(format!(
                "manifest {digest}: only schema version 2 manifests are supported ({mt})"
            )));
        }
        let manifest: kiln_oci::spec::ImageManifest = serde_json::from_slice(&bytes)
            .map_err(|e| ctx.protocol(format!("manifest {digest}: {e}")))?;
        let (stored, _) = store.write_blob(&bytes)?;
        if stored != digest {
            return Err(ctx.protocol(format!("manifest stored as {stored}, expected {digest}")));
        }
        let config_digest = manifest.config().digest().to_string();
        if !store.has_blob(&config_digest) {
            self.download_blob(ctx, &config_digest, Some(manifest.config().size()), store)
                .await?;
        }
        let config_bytes = store.read_blob(&config_digest)?;
        let config: kiln_oci::spec::ImageConfiguration = serde_json::from_slice(&config_bytes)
            .map_err(|e| ctx.protocol(format!("image config {config_digest}: {e}")))?;
        Ok(PulledImage {
            manifest_digest: digest,
            manifest,
            config,
        })
    }

    /// Streams one blob into the store, verifying size and digest. A body that breaks off
    /// is resumed with a `Range` request (see the crate docs).
    async fn download_blob(
        &self,
        ctx: &Ctx<'_>,
        digest: &str,
        size: Option<u64>,
        store: &Store,
    ) -> Result<()> {
        if !is_sha256_digest(digest) {
            return Err(ctx.protocol(format!("unsupported blob digest `{digest}`")));
        }
        let what = format!("blob {digest}");
        let url = ctx
            .ep
            .url(&format!("v2/{}/blobs/{digest}", ctx.reference.repository));
        let resp = self.send(ctx, &|c| Ok(c.get(url.clone()))).await?;
        if !resp.status().is_success() {
            return Err(self.fail(ctx, resp, &what).await);
        }
        let writer = store.blob_writer()?;
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Chunk>(CHANNEL_CHUNKS);
        let expected = digest.to_string();
        let root = store.root().to_path_buf();
        let task = tokio::task::spawn_blocking(move || -> Option<Result<(String, u64)>> {
            let mut w = writer;
            while let Some(chunk) = rx.blocking_recv() {
                match chunk {
                    Chunk::Data(b) => {
                        if let Err(source) = w.write_all(&b) {
                            return Some(Err(Error::Store(kiln_cache::Error::Io {
                                path: root,
                                source,
                            })));
                        }
                    }
                    Chunk::End => return Some(w.commit(Some(&expected)).map_err(Error::from)),
                }
            }
            // Dropping the writer removes its temp file.
            None
        });
        let failure = self
            .receive_blob(ctx, &what, &url, size, resp, &tx)
            .await
            .err();
        if failure.is_none() {
            let _ = tx.send(Chunk::End).await;
        }
        drop(tx);
        let outcome = task
            .await
            .map_err(|e| ctx.protocol(format!("{what}: writer task failed: {e}")))?;
        match (failure, outcome) {
            // The writer failed first; its error says why.
            (Some(None) | None, Some(Err(e))) => match e {
                Error::Store(kiln_cache::Error::DigestMismatch { expected, actual }) => Err(ctx
                    .protocol(format!(
                    "{what}: content does not match its digest (expected {expected}, got {actual})"
                ))),
                e => Err(e),
            },
            (Some(Some(f)), _) => Err(f),
            (None, Some(Ok(_))) => Ok(()),
            _ => Err(ctx.protocol(format!("{what}: download aborted"))),
        }
    }

    /// Feeds the body of `resp` (a blob's `GET` answer) to the writer, resuming with a
    /// `Range` request when it breaks off, until `size` bytes (or the end of a body of
    /// unknown size) went through. `Err(None)`: the writer is gone (its error says why).
    async fn receive_blob(
        &self,
        ctx: &Ctx<'_>,
        what: &str,
        url: &Url,
        size: Option<u64>,
        mut resp: reqwest::Response,
        tx: &tokio::sync::mpsc::Sender<Chunk>,
    ) -> std::result::Result<(), Option<Error>> {
        let retries = self.inner.cfg.retry.retries;
        let mut received: u64 = 0;
        // Bytes of the current body already received from an earlier one (a registry that
        // ignored `Range` starts over).
        let mut skip: u64 = 0;
        let mut resumes = 0;
        loop {
            let mut stream = resp.bytes_stream();
            let broke = loop {
                match stream.next().await {
                    Some(Ok(mut chunk)) => {
                        if skip > 0 {
                            let n = skip.min(chunk.len() as u64);
                            skip -= n;
                            chunk = chunk.slice(n as usize..);
                            if chunk.is_empty() {
                                continue;
                            }
                        }
                        received += chunk.len() as u64;
                        if size.is_some_and(|s| received > s) {
                            return Err(Some(ctx.protocol(format!(
                                "{what}: more than the {} bytes announced",
                                size.unwrap_or(0)
                            ))));
                        }
                        if tx.send(Chunk::Data(chunk)).await.is_err() {
                            return Err(None);
                        }
                    }
                    Some(Err(e)) if is_stall(&e) => return Err(Some(self.stalled(ctx, what))),
                    Some(Err(e)) => break Some(e),
                    None => break None,
                }
            };
            let short = size.is_some_and(|s| received < s);
            if broke.is_none() && !short {
                return Ok(());
            }
            let cause = match &broke {
                Some(e) => error_chain(e),
                None => format!("got {received} bytes, expected {}", size.unwrap_or(0)),
            };
            if resumes >= retries {
                return Err(Some(ctx.unreachable(format!("{what}: {cause}"))));
            }
            tokio::time::sleep(self.inner.cfg.retry.backoff(resumes)).await;
            resumes += 1;
            let range = format!("bytes={received}-");
            resp = self
                .send(ctx, &|c| {
                    Ok(c.get(url.clone())
                        .header(reqwest::header::RANGE, range.as_str()))
                })
                .await
                .map_err(Some)?;
            match resp.status() {
                StatusCode::PARTIAL_CONTENT => match content_range(resp.headers()) {
                    Some((start, total))
                        if start == received
                            && (total.is_none() || size.is_none() || total == size) =>
                    {
                        skip = 0;
                    }
                    _ => {
                        let got = resp
                            .headers()
                            .get(reqwest::header::CONTENT_RANGE)
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("none")
                            .to_string();
                        return Err(Some(ctx.protocol(format!(
                            "{what}: asked for bytes {received}- to resume, got Content-Range `{got}`"
                        ))));
                    }
                },
                // The range was ignored: the whole blob again, whose start is skipped.
                s if s.is_success() => skip = received,
                _ => return Err(Some(self.fail(ctx, resp, what).await)),
            }
        }
    }

    // ---- push ----

    fn push_manifest<'a>(
        &'a self,
        ctx: &'a Ctx<'a>,
        store: &'a Store,
        digest: &'a str,
        target: &'a str,
    ) -> futures::future::BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let bytes = store.read_blob(digest)?;
            let json: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| {
                ctx.protocol(format!("manifest {digest} in the store is not JSON: {e}"))
            })?;
            let mt = manifest_media_type(&json, None);
            if is_index_type(&mt) {
                let children: Vec<String> = json
                    .get("manifests")
                    .and_then(|m| m.as_array())
                    .map(|a| {
                        a.iter()
                            .filter_map(|m| {
                                m.get("digest").and_then(|d| d.as_str()).map(str::to_string)
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                for child in &children {
                    if !is_sha256_digest(child) {
                        return Err(
                            ctx.protocol(format!("index {digest}: bad manifest digest `{child}`"))
                        );
                    }
                    self.push_manifest(ctx, store, child, child).await?;
                }
            } else {
                let manifest: kiln_oci::spec::ImageManifest = serde_json::from_slice(&bytes)
                    .map_err(|e| ctx.protocol(format!("manifest {digest}: {e}")))?;
                let mut seen = BTreeSet::new();
                let blobs: Vec<String> = std::iter::once(manifest.config())
                    .chain(manifest.layers().iter())
                    .map(|d| d.digest().to_string())
                    .filter(|d| seen.insert(d.clone()))
                    .collect();
                futures::stream::iter(blobs)
                    .map(|d| async move { self.push_blob(ctx, store, &d).await })
                    .buffer_unordered(PARALLEL_BLOBS)
                    .try_collect::<Vec<()>>()
                    .await?;
            }
            let url = ctx.ep.url(&format!(
                "v2/{}/manifests/{target}",
                ctx.reference.repository
            ));
            let body = Bytes::from(bytes);
            let resp = self
                .send(ctx, &|c| {
                    Ok(c.put(url.clone())
                        .header(CONTENT_TYPE, mt.as_str())
                        .body(body.clone()))
                })
                .await?;
            if !resp.status().is_success() {
                return Err(self
                    .fail(ctx, resp, &format!("put manifest {digest}"))
                    .await);
            }
            if let Some(got) = resp
                .headers()
                .get("docker-content-digest")
                .and_then(|v| v.to_str().ok())
            {
                if got.starts_with("sha256:") && got != digest {
                    return Err(ctx.protocol(format!("registry stored manifest {digest} as {got}")));
                }
            }
            Ok(())
        })
    }

    /// Whether the registry has a blob (HEAD).
    async fn has_remote_blob(&self, ctx: &Ctx<'_>, digest: &str) -> Result<bool> {
        let url = ctx
            .ep
            .url(&format!("v2/{}/blobs/{digest}", ctx.reference.repository));
        let resp = self
            .send(ctx, &|c| Ok(c.request(Method::HEAD, url.clone())))
            .await?;
        match resp.status() {
            s if s.is_success() => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            _ => Err(self.fail(ctx, resp, &format!("blob {digest}")).await),
        }
    }

    /// Uploads a blob unless the registry has it: POST (session) then one streamed PUT, the
    /// pair retried whole after a fault that may pass.
    async fn push_blob(&self, ctx: &Ctx<'_>, store: &Store, digest: &str) -> Result<()> {
        if !is_sha256_digest(digest) {
            return Err(ctx.protocol(format!("unsupported blob digest `{digest}`")));
        }
        if !store.has_blob(digest) {
            return Err(Error::Store(kiln_cache::Error::NotFound(
                digest.to_string(),
            )));
        }
        if self.has_remote_blob(ctx, digest).await? {
            return Ok(());
        }
        self.with_retries(|last| self.push_blob_once(ctx, store, digest, last))
            .await
    }

    /// One upload of a blob. The `PUT` goes through a client without a read timeout: its
    /// stall timeout is a watchdog over the body's progress (no chunk taken by the
    /// connection for the stall timeout), then over the wait for the answer.
    async fn push_blob_once(
        &self,
        ctx: &Ctx<'_>,
        store: &Store,
        digest: &str,
        last: bool,
    ) -> std::result::Result<(), Fault> {
        let what = format!("upload blob {digest}");
        let url = ctx
            .ep
            .url(&format!("v2/{}/blobs/uploads/", ctx.reference.repository));
        let resp = self
            .send_once(
                ctx,
                &|c| Ok(c.post(url.clone()).header(CONTENT_LENGTH, "0")),
                last,
                false,
            )
            .await?;
        if !resp.status().is_success() {
            return Err(self.fail(ctx, resp, &what).await.into());
        }
        let location = resp
            .headers()
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| ctx.protocol(format!("{what}: no Location in the answer")))?;
        let mut put_url = resp
            .url()
            .join(location)
            .map_err(|e| ctx.protocol(format!("{what}: bad Location `{location}`: {e}")))?;
        put_url.query_pairs_mut().append_pair("digest", digest);
        drop(resp);
        let size = store.blob_size(digest).map_err(Error::from)?;
        let start = tokio::time::Instant::now();
        // Milliseconds from `start` to the last chunk the connection took.
        let progress = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let make = |c: &reqwest::Client| -> Result<reqwest::RequestBuilder> {
            let file = store.open_blob(digest)?;
            let progress = progress.clone();
            let stream = tokio_util::io::ReaderStream::new(tokio::fs::File::from_std(file))
                .inspect(move |_| {
                    let ms = start.elapsed().as_millis() as u64;
                    progress.store(ms, std::sync::atomic::Ordering::Relaxed);
                });
            Ok(c.put(put_url.clone())
                .header(CONTENT_TYPE, "application/octet-stream")
                .header(CONTENT_LENGTH, size)
                .body(reqwest::Body::wrap_stream(stream)))
        };
        let stall = self.inner.cfg.stall_timeout;
        let watchdog = async {
            loop {
                let last_ms = progress.load(std::sync::atomic::Ordering::Relaxed);
                let due = start + Duration::from_millis(last_ms) + stall;
                if tokio::time::Instant::now() >= due {
                    return;
                }
                tokio::time::sleep_until(due).await;
            }
        };
        let resp = tokio::select! {
            r = self.send_once(ctx, &make, last, true) => r?,
            () = watchdog => return Err(self.stalled(ctx, &what).into()),
        };
        if !resp.status().is_success() {
            return Err(self.fail(ctx, resp, &what).await.into());
        }
        Ok(())
    }
}

/// The `WWW-Authenticate` challenges of a response.
fn challenges_of(resp: &reqwest::Response) -> Vec<auth::Challenge> {
    resp.headers()
        .get_all(WWW_AUTHENTICATE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(auth::parse_challenges)
        .collect()
}

fn pull_scope(r: &Reference) -> String {
    format!("repository:{}:pull", r.repository)
}

fn push_scope(r: &Reference) -> String {
    format!("repository:{}:pull,push", r.repository)
}

fn make_endpoint(host: &str, http: Option<bool>) -> Option<Endpoint> {
    let host = host.trim();
    if host.is_empty() {
        return None;
    }
    let local = is_loopback(host);
    let scheme = if http.unwrap_or(local) {
        "http"
    } else {
        "https"
    };
    // A bare IPv6 literal needs brackets in a URL.
    let authority = if host.matches(':').count() > 1 && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host.to_string()
    };
    let base = Url::parse(&format!("{scheme}://{authority}/")).ok()?;
    Some(Endpoint {
        host: host.to_string(),
        base,
        local,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_detection() {
        for h in [
            "127.0.0.1",
            "127.0.0.1:5000",
            "127.1.2.3:80",
            "localhost",
            "LOCALHOST:5000",
            "[::1]",
            "[::1]:5000",
            "::1",
        ] {
            assert!(is_loopback(h), "{h}");
        }
        for h in [
            "docker.io",
            "10.0.0.1:5000",
            "example.com:443",
            "[2001:db8::1]:5000",
            "localhost.example.com",
        ] {
            assert!(!is_loopback(h), "{h}");
        }
    }

    #[test]
    fn endpoint_choice() {
        let mut hosts = BTreeMap::new();
        hosts.insert(
            "docker.io".to_string(),
            HostConfig {
                http: None,
                mirrors: vec!["mirror.local:5000".into(), "127.0.0.1:6000".into()],
            },
        );
        hosts.insert(
            "mirror.local:5000".to_string(),
            HostConfig {
                http: Some(true),
                mirrors: vec![],
            },
        );
        hosts.insert(
            "insecure.example".to_string(),
            HostConfig {
                http: Some(true),
                mirrors: vec![],
            },
        );
        hosts.insert(
            "127.0.0.1:7000".to_string(),
            HostConfig {
                http: Some(false),
                mirrors: vec![],
            },
        );
        let c = Client::new(RegistryConfig {
            hosts,
            docker_config: None,
            ..Default::default()
        });
        let urls = |r: &str, m: bool| -> Vec<String> {
            c.endpoints(r, m)
                .iter()
                .map(|e| e.base.to_string())
                .collect()
        };
        assert_eq!(
            urls("docker.io", true),
            [
                "http://mirror.local:5000/",
                "http://127.0.0.1:6000/",
                "https://registry-1.docker.io/"
            ]
        );
        assert_eq!(urls("docker.io", false), ["https://registry-1.docker.io/"]);
        assert_eq!(urls("quay.io", true), ["https://quay.io/"]);
        assert_eq!(urls("insecure.example", true), ["http://insecure.example/"]);
        assert_eq!(urls("localhost:5000", true), ["http://localhost:5000/"]);
        assert_eq!(urls("[::1]:5000", true), ["http://[::1]:5000/"]);
        assert_eq!(urls("127.0.0.1:7000", true), ["https://127.0.0.1:7000/"]);
    }

    #[test]
    fn index_platform_choice() {
        let idx: serde_json::Value = serde_json::json!({
            "manifests": [
                {"digest": "sha256:arm", "platform": {"os": "linux", "architecture": "arm64"}},
                {"digest": "sha256:v3", "platform": {"os": "linux", "architecture": "amd64", "variant": "v3"}},
                {"digest": "sha256:amd", "platform": {"os": "linux", "architecture": "amd64"}},
                {"digest": "sha256:att", "platform": {"os": "unknown", "architecture": "unknown"}}
            ]
        });
        assert_eq!(pick_platform(&idx).as_deref(), Some("sha256:amd"));
        let idx = serde_json::json!({"manifests": [{"digest": "sha256:arm", "platform": {"os": "linux", "architecture": "arm64"}}]});
        assert_eq!(pick_platform(&idx), None);
    }

    #[test]
    fn retry_after_and_content_range_parsing() {
        use reqwest::header::{HeaderMap, CONTENT_RANGE, RETRY_AFTER};
        let h = |k, v: &str| {
            let mut m = HeaderMap::new();
            m.insert(k, HeaderValue::from_str(v).unwrap());
            m
        };
        assert_eq!(
            retry_after(&h(RETRY_AFTER, "7")),
            Some(Duration::from_secs(7))
        );
        let later = std::time::SystemTime::now() + Duration::from_mins(2);
        let d = retry_after(&h(RETRY_AFTER, &httpdate::fmt_http_date(later))).unwrap();
        assert!(
            d > Duration::from_secs(100) && d <= Duration::from_mins(2),
            "{d:?}"
        );
        assert_eq!(
            retry_after(&h(RETRY_AFTER, "Wed, 21 Oct 2015 07:28:00 GMT")),
            Some(Duration::ZERO)
        );
        assert_eq!(retry_after(&h(RETRY_AFTER, "soon")), None);
        assert_eq!(retry_after(&HeaderMap::new()), None);

        assert_eq!(
            content_range(&h(CONTENT_RANGE, "bytes 100-199/200")),
            Some((100, Some(200)))
        );
        assert_eq!(
            content_range(&h(CONTENT_RANGE, "bytes 5-9/*")),
            Some((5, None))
        );
        for bad in ["bytes */200", "bytes 9-5/200", "items 0-1/2", "bytes 0-x/2"] {
            assert_eq!(content_range(&h(CONTENT_RANGE, bad)), None, "{bad}");
        }
    }

    #[test]
    fn backoff_doubles_within_its_cap() {
        let rc = RetryConfig {
            retries: 10,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(1),
        };
        for (n, full) in [
            (0, 100),
            (1, 200),
            (2, 400),
            (3, 800),
            (4, 1000),
            (30, 1000),
        ] {
            let d = rc.backoff(n);
            let full = Duration::from_millis(full);
            assert!(d >= full / 2 && d <= full, "attempt {n}: {d:?}");
        }
    }

    #[test]
    fn media_type_detection() {
        let m =
            serde_json::json!({"schemaVersion": 2, "mediaType": kiln_oci::media::DOCKER_MANIFEST});
        assert_eq!(
            manifest_media_type(&m, Some(kiln_oci::media::OCI_MANIFEST)),
            kiln_oci::media::DOCKER_MANIFEST
        );
        let m = serde_json::json!({"schemaVersion": 2, "manifests": []});
        assert_eq!(manifest_media_type(&m, None), kiln_oci::media::OCI_INDEX);
        assert_eq!(
            manifest_media_type(
                &m,
                Some("application/vnd.docker.distribution.manifest.list.v2+json; charset=utf-8")
            ),
            kiln_oci::media::DOCKER_LIST
        );
    }
}
