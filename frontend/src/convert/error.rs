//! Why a conversion failed. Each variant's text is what `kiln build` prints after the
//! `Dockerfile:LINE:COLUMN:` prefix; [`ConvertError::kind`] picks the exit status.

use crate::instructions::{InstructionError, Keyword};
use crate::mounts::MountError;
use crate::parser::ParseError;
use crate::shell::ShellError;
use crate::{ErrorKind, ResolveError};

/// A conversion failure, before its position is attached (see [`crate::Error`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum ConvertError {
    /// The instruction could not be typed.
    #[error(transparent)]
    Instruction(#[from] InstructionError),
    /// The Dockerfile (or an ONBUILD trigger of the base image) does not parse.
    #[error(transparent)]
    Parse(#[from] ParseError),
    /// A word's variables could not be expanded.
    #[error(transparent)]
    Expand(#[from] ShellError),
    /// The image resolver failed.
    #[error(transparent)]
    Resolve(#[from] ResolveError),
    /// A `RUN --mount` value is wrong.
    #[error("--mount={value}: {source}")]
    Mount {
        /// The flag's value.
        value: String,
        /// Why.
        source: MountError,
    },
    /// An EXPOSE port is wrong.
    #[error(transparent)]
    Port(#[from] PortError),
    #[error("circular dependency between stages")]
    CircularStages,
    /// Internal: the stage recursion was too deep and this stage is converted first.
    #[error("stage conversion deferred")]
    Deferred,
    #[error("platform {0} is not supported (only linux/amd64)")]
    Platform(String),
    #[error("base name (FROM) should not be blank")]
    BlankBase,
    #[error("invalid {what}{index}: stage index {index} is out of range (only {before} stage(s) defined before this one)")]
    StageIndex {
        what: &'static str,
        index: usize,
        before: usize,
    },
    #[error("{what}{name} names a stage defined later")]
    StageLater { what: &'static str, name: String },
    #[error("{what}{name}: no stage with that name, and not a valid image reference (repository name must be lowercase)")]
    NoSuchSource { what: &'static str, name: String },
    #[error(
        "invalid name for build stage: {0:?}, name can't start with a number or contain symbols"
    )]
    StageName(String),
    #[error("duplicate stage name {0:?}")]
    DuplicateStage(String),
    #[error("{0} before the first FROM: only ARG may come first")]
    BeforeFrom(Keyword),
    #[error("no build stage in the Dockerfile (missing FROM)")]
    NoStage,
    #[error("target stage {name:?} could not be found (stages: {stages})")]
    NoTarget { name: String, stages: String },
    #[error("{0} is not a valid change command")]
    NotAChange(String),
    #[error("{0} names can not be blank")]
    BlankName(Keyword),
    #[error("VOLUME specified can not be an empty string")]
    EmptyVolume,
    #[error("STOPSIGNAL requires a signal")]
    NoSignal,
    #[error("invalid secret mount: one of id, target required")]
    SecretId,
    #[error("two RUN --mount with the same target {0}")]
    SameTarget(String),
    #[error("ADD --keep-git-dir: git sources are not supported yet")]
    KeepGitDir,
    #[error("{0} --exclude needs a non-empty pattern")]
    EmptyExclude(Keyword),
    #[error("{0} requires at least two arguments")]
    CopyArguments(Keyword),
    #[error("{keyword} {url}: git sources are not supported yet")]
    GitSource { keyword: Keyword, url: String },
    #[error("source can't be a URL for COPY (use ADD, or RUN wget/curl)")]
    CopyUrl,
    #[error("checksum can't be specified for non-HTTP(S) sources")]
    ChecksumNotHttp,
    #[error("invalid checksum {0:?}: expected sha256:<64 hex digits>")]
    Checksum(String),
    #[error("invalid chmod parameter: '{0}'. it should be octal string and between 0 and 07777")]
    Chmod(String),
}

impl ConvertError {
    /// The exit status class.
    pub(crate) fn kind(&self) -> ErrorKind {
        match self {
            ConvertError::Instruction(e) => e.error_kind(),
            ConvertError::Parse(_)
            | ConvertError::Expand(_)
            | ConvertError::BlankName(_)
            | ConvertError::CopyArguments(_) => ErrorKind::Syntax,
            ConvertError::Resolve(_) => ErrorKind::Resolve,
            _ => ErrorKind::Semantic,
        }
    }

    /// A likely fix.
    pub(crate) fn hint(&self) -> Option<String> {
        match self {
            ConvertError::Instruction(e) => e.hint(),
            _ => None,
        }
    }
}

/// An EXPOSE (or `docker commit -c EXPOSE`) port that is not `PORT[-PORT][/PROTO]`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PortError {
    /// Not tcp, udp or sctp.
    #[error("invalid proto: {0}")]
    Proto(String),
    /// Not a port or a range of ports.
    #[error("invalid containerPort: {0}")]
    Port(String),
}
