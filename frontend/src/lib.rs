//! The Dockerfile frontend: parses a Dockerfile (BuildKit's syntax) and converts it into an
//! op graph ([`kiln_opgraph::Definition`]) plus the image config the build will produce.
//!
//! CONTRACT (fixed by the workspace; other crates call exactly these signatures).
//!
//! Modules: [`parser`] (BuildKit's line grammar: directives, continuations, flags, JSON or
//! shell forms, heredocs, line ranges; its AST dump matches BuildKit's parser test vectors
//! byte for byte), [`instructions`] (the parsed nodes typed, flags checked once),
//! [`shell`] (BuildKit's shell-word expansion), [`mounts`] (`RUN --mount` values) and the
//! conversion behind [`build`] and [`apply_changes`] (`convert/`: stages and ARG scoping,
//! RUN, COPY/ADD, the image config).
//!
//! The parser is hand-written rather than taken from the `dockerfile-parser` crate: that
//! crate has no heredocs, no `# escape=`/`# check=` handling as BuildKit does it and no way
//! to reproduce BuildKit's AST dumps, which are our conformance oracle. Nothing here panics
//! on any input: the parser is meant to be fuzzed.
#![deny(missing_docs)]

mod convert;
pub mod instructions;
pub mod lint;
pub mod mounts;
pub mod parser;
pub mod shell;

pub use convert::{join_path, parse_port_spec, PortError, DEFAULT_PATH};

use kiln_oci::spec::ImageConfiguration;
use std::collections::BTreeMap;

/// What kind of error, for the exit status (CLI.md: 2 for syntax/usage, 1 for build
/// failures such as a missing COPY source).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// The Dockerfile is malformed (exit 2).
    Syntax,
    /// Well-formed, but wrong: unknown stage, undefined base, bad flag value (exit 2).
    Semantic,
    /// The base image could not be resolved (exit 1).
    Resolve,
}

/// A Dockerfile error with its location.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Error {
    /// Kind.
    pub kind: ErrorKind,
    /// File name as given (e.g. `Dockerfile`).
    pub file: String,
    /// 1-based line (0 when the error has no line).
    pub line: u32,
    /// 1-based column (0 when unknown).
    pub column: u32,
    /// The message, without location.
    pub message: String,
    /// The offending line's text, for display.
    pub source_line: Option<String>,
    /// A likely fix ("did you mean FROM?").
    pub hint: Option<String>,
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // "Dockerfile:3:1: unknown instruction: FORM"
        write!(
            f,
            "{}:{}:{}: {}",
            self.file, self.line, self.column, self.message
        )
    }
}
impl std::error::Error for Error {}

/// An image the frontend asked for, resolved.
#[derive(Clone, Debug)]
pub struct ResolvedImage {
    /// Normalised reference (`127.0.0.1:5000/busybox:latest`).
    pub reference: String,
    /// `sha256:…` of its manifest.
    pub digest: String,
    /// Its config (Env, WorkingDir, User, Cmd, …, history, rootfs).
    pub config: ImageConfiguration,
    /// Its `OnBuild` triggers (oci-spec's config drops them; read from the raw JSON), run
    /// after a `FROM` of this image.
    pub onbuild: Vec<String>,
}

/// A `--build-context NAME=…` value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NamedContext {
    /// A host directory: becomes `Op::Local { name: NAME, .. }`; the CLI registers the
    /// directory as the worker's local source `NAME`.
    Dir(std::path::PathBuf),
    /// `docker-image://REF`: resolved with the [`ImageResolver`].
    Image(String),
}

/// Why the [`ImageResolver`] could not resolve an image: the resolver's own error, shown as
/// it is (its `Display` is the message after `Dockerfile:LINE:COLUMN:`).
#[derive(Debug)]
pub struct ResolveError(Box<dyn std::error::Error + Send + Sync>);

impl ResolveError {
    /// Wraps the resolver's error (or a message).
    pub fn new(e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        ResolveError(e.into())
    }
}

impl std::fmt::Display for ResolveError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for ResolveError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}

/// Resolves `FROM` and `COPY --from` image names. Implemented by the CLI (local store, then
/// registry).
pub trait ImageResolver {
    /// Resolves `reference` as written after variable expansion (e.g. `busybox`).
    fn resolve(&self, reference: &str) -> Result<ResolvedImage, ResolveError>;
}

/// Build options that change the conversion.
#[derive(Clone, Debug, Default)]
pub struct BuildOptions {
    /// Dockerfile file name for messages (e.g. `Dockerfile`).
    pub file_name: String,
    /// `--build-arg`s.
    pub build_args: BTreeMap<String, String>,
    /// `--target`.
    pub target: Option<String>,
    /// `--label`s, added to the image config.
    pub labels: BTreeMap<String, String>,
    /// `--network` for RUN steps.
    pub network: kiln_opgraph::NetworkMode,
    /// `.dockerignore` patterns (already parsed with
    /// [`kiln_opgraph::pattern::parse_dockerignore`]).
    pub excludes: Vec<String>,
    /// `--no-cache`: every vertex gets `ignore_cache`.
    pub no_cache: bool,
    /// `--build-context NAME=DIR|docker-image://REF`: `FROM NAME`, `COPY --from=NAME` and
    /// `RUN --mount=from=NAME` resolve to these before stages and images (BuildKit's
    /// precedence; a context named like a stage replaces the stage).
    pub named_contexts: BTreeMap<String, NamedContext>,
}

/// The converted build.
#[derive(Clone, Debug)]
pub struct Build {
    /// The op graph; its `root` is the target stage's final filesystem.
    pub definition: kiln_opgraph::Definition,
    /// The image config (without `rootfs` and with only the history of the base; the
    /// exporter completes both from the solved layers and `history`).
    pub config: ImageConfiguration,
    /// History entries added by this build, in order, after the base image's own.
    pub history: Vec<kiln_oci::PendingHistory>,
    /// Image config fields that `oci-spec`'s `Config` cannot hold, in Docker's JSON form, to
    /// be merged into the config's `config` object by the exporter: `Healthcheck` (object
    /// with `Test`, durations in nanoseconds, `Retries`), `Shell` (array) and `OnBuild`
    /// (array). Absent keys mean unset.
    pub extra_config: serde_json::Map<String, serde_json::Value>,
}

/// Edit distance with adjacent transpositions (optimal string alignment), for "did you
/// mean" hints: `form` → `from` is 1.
pub(crate) fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut v = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                v = v.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = v;
        }
    }
    d[a.len()][b.len()]
}

/// The closest candidate to `word` (case-insensitive), when close enough to be a typo.
pub(crate) fn suggest<S: AsRef<str>>(word: &str, candidates: &[S]) -> Option<String> {
    let w = word.to_ascii_lowercase();
    let best = candidates
        .iter()
        .map(|c| {
            (
                edit_distance(&w, &c.as_ref().to_ascii_lowercase()),
                c.as_ref(),
            )
        })
        .filter(|(d, c)| *d > 0 || !c.eq_ignore_ascii_case(word))
        .min_by_key(|(d, _)| *d)?;
    let limit = if w.chars().count() <= 3 { 1 } else { 2 };
    (best.0 <= limit).then(|| best.1.to_string())
}

/// Parses and converts a Dockerfile.
pub fn build(
    dockerfile: &str,
    opts: &BuildOptions,
    resolver: &dyn ImageResolver,
) -> Result<Build, Error> {
    convert::build(dockerfile, opts, resolver)
}

/// Applies `docker import -c` / `docker commit -c` changes (CMD, ENTRYPOINT, ENV, EXPOSE,
/// LABEL, ONBUILD, USER, VOLUME, WORKDIR, STOPSIGNAL) to a config.
pub fn apply_changes(config: &mut ImageConfiguration, changes: &[String]) -> Result<(), Error> {
    convert::apply_changes(config, changes)
}
