//! The Dockerfile frontend: parses a Dockerfile (BuildKit's syntax) and converts it into an
//! op graph ([`kiln_opgraph::Definition`]) plus the image config the build will produce.
//!
//! CONTRACT (fixed by the workspace; other crates call exactly these signatures).
//!
//! Modules: [`parser`] (BuildKit's line grammar: directives, continuations, flags, JSON or
//! shell forms, heredocs, line ranges; its AST dump matches BuildKit's parser test vectors
//! byte for byte), [`shell`] (BuildKit's shell-word expansion) and the conversion behind
//! [`build`] and [`apply_changes`].
//!
//! The parser is hand-written rather than taken from the `dockerfile-parser` crate: that
//! crate has no heredocs, no `# escape=`/`# check=` handling as BuildKit does it and no way
//! to reproduce BuildKit's AST dumps, which are our conformance oracle. Nothing here panics
//! on any input: the parser is meant to be fuzzed.
#![deny(missing_docs)]

mod convert;
pub mod parser;
pub mod shell;

pub use convert::{join_path, parse_duration, parse_port_spec, DEFAULT_PATH};

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
    /// Image config fields that `oci-spec`'s `Config` cannot hold, in Docker's JSON form, to
    /// be merged into the config's `config` object by the exporter: `Healthcheck` (object
    /// with `Test`, durations in nanoseconds, `Retries`), `Shell` (array) and `OnBuild`
    /// (array). Absent keys mean unset.
    pub extra_config: serde_json::Map<String, serde_json::Value>,
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
