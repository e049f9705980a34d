//! The Dockerfile frontend: parses a Dockerfile (BuildKit's syntax) and converts it into an
//! op graph ([`kiln_opgraph::Definition`]) plus the image config the build will produce.
//!
//! CONTRACT (fixed by the workspace; other crates call exactly these signatures).
#![deny(missing_docs)]

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
        write!(f, "{}:{}:{}: {}", self.file, self.line, self.column, self.message)
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
}

/// Resolves `FROM` and `COPY --from` image names. Implemented by the CLI (local store, then
/// registry).
pub trait ImageResolver {
    /// Resolves `reference` as written after variable expansion (e.g. `busybox`).
    fn resolve(&self, reference: &str) -> Result<ResolvedImage, String>;
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
}

/// Parses and converts a Dockerfile.
pub fn build(
    _dockerfile: &str,
    _opts: &BuildOptions,
    _resolver: &dyn ImageResolver,
) -> Result<Build, Error> {
    todo!()
}

/// Applies `docker import -c` / `docker commit -c` changes (CMD, ENTRYPOINT, ENV, EXPOSE,
/// LABEL, ONBUILD, USER, VOLUME, WORKDIR, STOPSIGNAL) to a config.
pub fn apply_changes(
    _config: &mut ImageConfiguration,
    _changes: &[String],
) -> Result<(), Error> {
    todo!()
}
