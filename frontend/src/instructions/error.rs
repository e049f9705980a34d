//! Why an instruction could not be typed.

use super::Keyword;
use crate::parser::Position;
use crate::ErrorKind;

/// A value that was parsed up front but whose error is reported when the instruction is
/// converted (see the module docs).
pub type Checked<T> = Result<T, InstructionError>;

/// An instruction that could not be typed, with its position (the keyword's, or the
/// offending flag's).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{kind}")]
pub struct InstructionError {
    /// 1-based line.
    pub line: u32,
    /// 1-based column.
    pub column: u32,
    /// What is wrong.
    pub kind: InstructionErrorKind,
}

impl InstructionError {
    pub(super) fn at(p: Position, kind: InstructionErrorKind) -> Self {
        InstructionError {
            line: p.line,
            column: p.column,
            kind,
        }
    }

    /// Malformed (exit 2 as a syntax error) or well-formed but wrong.
    pub fn error_kind(&self) -> ErrorKind {
        use InstructionErrorKind as K;
        match self.kind {
            K::TooFewArguments { .. }
            | K::FromArguments
            | K::ShellNotJson
            | K::OnbuildNeedsArgument
            | K::HealthcheckNeedsArgument
            | K::HealthcheckMissingCommand => ErrorKind::Syntax,
            _ => ErrorKind::Semantic,
        }
    }

    /// A likely fix ("did you mean FROM?").
    pub fn hint(&self) -> Option<String> {
        use InstructionErrorKind as K;
        match &self.kind {
            K::UnknownInstruction { suggestion, .. } => {
                suggestion.map(|k| format!("did you mean {k}?"))
            }
            K::UnknownFlag { suggestion, .. } => {
                suggestion.as_ref().map(|s| format!("did you mean --{s}?"))
            }
            K::InvalidNetwork { suggestion, .. } => suggestion
                .as_ref()
                .map(|s| format!("did you mean --network={s}?")),
            _ => None,
        }
    }
}

/// What is wrong with an instruction (the messages are kiln's, BuildKit's where it has one).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InstructionErrorKind {
    /// A keyword BuildKit does not know.
    #[error("unknown instruction: {name}")]
    UnknownInstruction {
        /// The keyword as written, upper-cased.
        name: String,
        /// The closest keyword.
        suggestion: Option<Keyword>,
    },
    /// A flag the instruction does not take.
    #[error("unknown flag: {flag} (for {keyword})")]
    UnknownFlag {
        /// The flag's name.
        flag: String,
        /// The instruction.
        keyword: Keyword,
        /// The closest flag it takes.
        suggestion: Option<String>,
    },
    /// Fewer arguments than the instruction needs.
    #[error("{keyword} requires at least {n} argument(s)")]
    TooFewArguments {
        /// The instruction.
        keyword: Keyword,
        /// How many it needs.
        n: usize,
    },
    /// `FROM a b`.
    #[error("FROM requires either one or three arguments")]
    FromArguments,
    /// FROM, ONBUILD or MAINTAINER after ONBUILD.
    #[error("{0} isn't allowed as an ONBUILD trigger")]
    NotATrigger(Keyword),
    /// `SHELL sh -c`.
    #[error("SHELL requires the arguments to be in JSON form")]
    ShellNotJson,
    /// `ONBUILD` alone.
    #[error("ONBUILD requires at least one argument")]
    OnbuildNeedsArgument,
    /// `HEALTHCHECK` alone.
    #[error("HEALTHCHECK requires an argument")]
    HealthcheckNeedsArgument,
    /// `HEALTHCHECK WHAT …`.
    #[error("Unknown type {0:?} in HEALTHCHECK (try CMD)")]
    HealthcheckType(String),
    /// `HEALTHCHECK NONE x`.
    #[error("HEALTHCHECK NONE takes no arguments")]
    HealthcheckNoneArguments,
    /// `HEALTHCHECK CMD` without a command.
    #[error("Missing command after HEALTHCHECK CMD")]
    HealthcheckMissingCommand,
    /// A HEALTHCHECK duration flag that is not a Go duration.
    #[error("invalid duration for --{flag}: {value:?}")]
    InvalidDuration {
        /// The flag.
        flag: &'static str,
        /// Its value.
        value: String,
    },
    /// A HEALTHCHECK duration under a millisecond (and not 0).
    #[error("interval {0:?} cannot be less than 1ms")]
    DurationTooShort(&'static str),
    /// `--retries` that is not a number.
    #[error("invalid value for --retries: {0:?}")]
    InvalidRetries(String),
    /// `--retries=-1`.
    #[error("--retries cannot be negative")]
    NegativeRetries,
    /// `RUN --security=…` other than sandbox or insecure.
    #[error("security mode {0:?} is not valid for RUN --security (use sandbox or insecure)")]
    InvalidSecurity(String),
    /// `RUN --network=…` other than default, none or host.
    #[error("unsupported network mode {value:?} for RUN --network (use default, none or host)")]
    InvalidNetwork {
        /// The value.
        value: String,
        /// The closest mode.
        suggestion: Option<String>,
    },
    /// A boolean flag (`--link`, `--parents`) with another value.
    #[error("invalid value {value:?} for --{flag}: expected true or false")]
    InvalidBool {
        /// The flag.
        flag: &'static str,
        /// The value.
        value: String,
    },
    /// `RUN --mount` without `=…`.
    #[error("--mount needs a value (e.g. --mount=type=cache,target=/root/.cache)")]
    MountNeedsValue,
    /// `COPY --exclude` without `=…`.
    #[error("{0} --exclude needs a pattern (--exclude=*.md)")]
    ExcludeNeedsPattern(Keyword),
}
