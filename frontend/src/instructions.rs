//! Typed instructions (BuildKit's `frontend/dockerfile/instructions`): the one place where a
//! parsed [`Node`] is matched by its keyword and its flags are read, checked and typed.
//!
//! [`parse`] does what BuildKit's `ParseInstruction` does up front for every instruction
//! (unknown instruction, unknown flag, argument count, JSON-only forms, what ONBUILD may
//! trigger). A flag whose *value* is wrong (`RUN --network=bogus`, `HEALTHCHECK
//! --interval=1x`) is parsed here too, but kiln reports it only when the instruction is
//! converted, as it always has (an unused stage with a bad value still builds): such fields
//! are [`Checked`] and hold the error, with its position, until then. Flags whose values are
//! expanded (`--from=$STAGE`, `--chown=$USER`) stay words: they can only be read once the
//! stage's ARG and ENV are known.

use crate::parser::{Heredoc, Node};
use crate::ErrorKind;
use kiln_opgraph::{NetworkMode, Security};
use std::fmt;
use std::time::Duration;

/// An instruction keyword BuildKit knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Keyword {
    /// `ADD`.
    Add,
    /// `ARG`.
    Arg,
    /// `CMD`.
    Cmd,
    /// `COPY`.
    Copy,
    /// `ENTRYPOINT`.
    Entrypoint,
    /// `ENV`.
    Env,
    /// `EXPOSE`.
    Expose,
    /// `FROM`.
    From,
    /// `HEALTHCHECK`.
    Healthcheck,
    /// `LABEL`.
    Label,
    /// `MAINTAINER`.
    Maintainer,
    /// `ONBUILD`.
    Onbuild,
    /// `RUN`.
    Run,
    /// `SHELL`.
    Shell,
    /// `STOPSIGNAL`.
    Stopsignal,
    /// `USER`.
    User,
    /// `VOLUME`.
    Volume,
    /// `WORKDIR`.
    Workdir,
}

impl Keyword {
    /// Every keyword, in alphabetical order.
    pub const ALL: [Keyword; 18] = [
        Keyword::Add,
        Keyword::Arg,
        Keyword::Cmd,
        Keyword::Copy,
        Keyword::Entrypoint,
        Keyword::Env,
        Keyword::Expose,
        Keyword::From,
        Keyword::Healthcheck,
        Keyword::Label,
        Keyword::Maintainer,
        Keyword::Onbuild,
        Keyword::Run,
        Keyword::Shell,
        Keyword::Stopsignal,
        Keyword::User,
        Keyword::Volume,
        Keyword::Workdir,
    ];

    /// The keyword a lower-case word names (the only place keywords are matched as text).
    pub fn from_name(lower: &str) -> Option<Keyword> {
        Some(match lower {
            "add" => Keyword::Add,
            "arg" => Keyword::Arg,
            "cmd" => Keyword::Cmd,
            "copy" => Keyword::Copy,
            "entrypoint" => Keyword::Entrypoint,
            "env" => Keyword::Env,
            "expose" => Keyword::Expose,
            "from" => Keyword::From,
            "healthcheck" => Keyword::Healthcheck,
            "label" => Keyword::Label,
            "maintainer" => Keyword::Maintainer,
            "onbuild" => Keyword::Onbuild,
            "run" => Keyword::Run,
            "shell" => Keyword::Shell,
            "stopsignal" => Keyword::Stopsignal,
            "user" => Keyword::User,
            "volume" => Keyword::Volume,
            "workdir" => Keyword::Workdir,
            _ => return None,
        })
    }

    /// The keyword in upper case (`RUN`), as messages and history write it.
    pub fn name(self) -> &'static str {
        match self {
            Keyword::Add => "ADD",
            Keyword::Arg => "ARG",
            Keyword::Cmd => "CMD",
            Keyword::Copy => "COPY",
            Keyword::Entrypoint => "ENTRYPOINT",
            Keyword::Env => "ENV",
            Keyword::Expose => "EXPOSE",
            Keyword::From => "FROM",
            Keyword::Healthcheck => "HEALTHCHECK",
            Keyword::Label => "LABEL",
            Keyword::Maintainer => "MAINTAINER",
            Keyword::Onbuild => "ONBUILD",
            Keyword::Run => "RUN",
            Keyword::Shell => "SHELL",
            Keyword::Stopsignal => "STOPSIGNAL",
            Keyword::User => "USER",
            Keyword::Volume => "VOLUME",
            Keyword::Workdir => "WORKDIR",
        }
    }

    /// The flags the instruction accepts (boolean flags may omit `=value`).
    pub fn flags(self) -> &'static [&'static str] {
        match self {
            Keyword::From => &["platform"],
            Keyword::Run => &["mount", "network", "security"],
            Keyword::Copy => &["from", "chown", "chmod", "link", "parents", "exclude"],
            Keyword::Add => &[
                "chown",
                "chmod",
                "link",
                "checksum",
                "keep-git-dir",
                "exclude",
            ],
            Keyword::Healthcheck => &[
                "interval",
                "timeout",
                "start-period",
                "start-interval",
                "retries",
            ],
            _ => &[],
        }
    }
}

impl fmt::Display for Keyword {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Where an instruction is: its line range and the column of its keyword.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Span {
    /// First line, 1-based.
    pub start_line: u32,
    /// Last line, 1-based (heredoc bodies included).
    pub end_line: u32,
    /// 1-based column of the keyword on the first line.
    pub column: u32,
}

impl Span {
    fn of(node: &Node) -> Span {
        Span {
            start_line: node.start_line,
            end_line: node.end_line,
            column: node.column,
        }
    }
}

/// A value that was parsed up front but whose error is reported when the instruction is
/// converted (see the module docs).
pub type Checked<T> = Result<T, InstructionError>;

/// An instruction that could not be typed, with its position.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{kind}")]
pub struct InstructionError {
    /// 1-based line (the instruction's first).
    pub line: u32,
    /// 1-based column.
    pub column: u32,
    /// What is wrong.
    pub kind: InstructionErrorKind,
}

impl InstructionError {
    fn at(span: Span, kind: InstructionErrorKind) -> Self {
        InstructionError {
            line: span.start_line,
            column: span.column,
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

/// A typed instruction with where it was written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Located {
    /// The instruction.
    pub instruction: Instruction,
    /// Its lines and column.
    pub span: Span,
    /// The logical line as written (continuations joined), for step names.
    pub original: String,
}

/// One instruction, its flags typed (BuildKit's `instructions.Command` implementations).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Instruction {
    /// `FROM [--platform=P] IMAGE [AS NAME]`.
    From(FromInstr),
    /// `RUN`.
    Run(RunInstr),
    /// `COPY`.
    Copy(CopyInstr),
    /// `ADD` (the same fields as COPY; `from` is never set, `checksum` and `keep_git_dir`
    /// only here).
    Add(CopyInstr),
    /// `ENV K=V …`.
    Env(KeyValues),
    /// `ARG NAME[=DEFAULT] …`.
    Arg(ArgInstr),
    /// `LABEL K=V …`.
    Label(KeyValues),
    /// `EXPOSE PORT[/PROTO] …` (words, expanded when converted).
    Expose(Vec<String>),
    /// `WORKDIR PATH`.
    Workdir(String),
    /// `USER NAME[:GROUP]`.
    User(String),
    /// `VOLUME PATH …` (JSON or words).
    Volume(Vec<String>),
    /// `CMD`.
    Cmd(CommandLine),
    /// `ENTRYPOINT`.
    Entrypoint(CommandLine),
    /// `SHELL ["exe", "arg"]`.
    Shell(Vec<String>),
    /// `HEALTHCHECK`.
    Healthcheck(HealthcheckInstr),
    /// `STOPSIGNAL SIGNAL`.
    StopSignal(String),
    /// `ONBUILD INSTRUCTION`.
    Onbuild(OnbuildInstr),
    /// `MAINTAINER NAME`.
    Maintainer(String),
}

impl Instruction {
    /// The instruction's keyword.
    pub fn keyword(&self) -> Keyword {
        match self {
            Instruction::From(_) => Keyword::From,
            Instruction::Run(_) => Keyword::Run,
            Instruction::Copy(_) => Keyword::Copy,
            Instruction::Add(_) => Keyword::Add,
            Instruction::Env(_) => Keyword::Env,
            Instruction::Arg(_) => Keyword::Arg,
            Instruction::Label(_) => Keyword::Label,
            Instruction::Expose(_) => Keyword::Expose,
            Instruction::Workdir(_) => Keyword::Workdir,
            Instruction::User(_) => Keyword::User,
            Instruction::Volume(_) => Keyword::Volume,
            Instruction::Cmd(_) => Keyword::Cmd,
            Instruction::Entrypoint(_) => Keyword::Entrypoint,
            Instruction::Shell(_) => Keyword::Shell,
            Instruction::Healthcheck(_) => Keyword::Healthcheck,
            Instruction::StopSignal(_) => Keyword::Stopsignal,
            Instruction::Onbuild(_) => Keyword::Onbuild,
            Instruction::Maintainer(_) => Keyword::Maintainer,
        }
    }
}

/// `FROM`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FromInstr {
    /// The base as written (expanded with the global ARGs when converted).
    pub base: String,
    /// `AS NAME`, as written.
    pub stage_name: Option<String>,
    /// `--platform=`, as written.
    pub platform: Option<String>,
}

/// A command in JSON (exec) or shell form.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CommandLine {
    /// The JSON array's strings, or the shell form as one string (empty when absent).
    pub args: Vec<String>,
    /// The arguments were a JSON array.
    pub json: bool,
}

/// `RUN`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunInstr {
    /// The command.
    pub command: CommandLine,
    /// Heredocs, in order.
    pub heredocs: Vec<Heredoc>,
    /// `--mount=` values as written, in order (`None`: a `--mount` without a value).
    pub mounts: Vec<Checked<String>>,
    /// `--network`: `None` for the build's default.
    pub network: Checked<Option<NetworkMode>>,
    /// `--security`.
    pub security: Checked<Security>,
}

/// `COPY` and `ADD`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CopyInstr {
    /// The sources as written (heredoc openers included).
    pub sources: Vec<String>,
    /// The destination as written.
    pub dest: String,
    /// Heredocs, in order.
    pub heredocs: Vec<Heredoc>,
    /// `--from=` (COPY).
    pub from: Option<String>,
    /// `--chown=`.
    pub chown: Option<String>,
    /// `--chmod=`.
    pub chmod: Option<String>,
    /// `--link`.
    pub link: Checked<bool>,
    /// `--parents`.
    pub parents: Checked<bool>,
    /// `--exclude=` patterns as written, in order.
    pub excludes: Vec<Checked<String>>,
    /// `--checksum=` (ADD).
    pub checksum: Option<String>,
    /// `--keep-git-dir` was given (ADD).
    pub keep_git_dir: bool,
}

/// `ENV` and `LABEL`: key/value pairs as written.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeyValues {
    /// `(key, value)`, in order.
    pub pairs: Vec<(String, String)>,
}

/// `ARG`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ArgInstr {
    /// `(name, default as written)`, in order.
    pub args: Vec<(String, Option<String>)>,
}

/// `HEALTHCHECK`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HealthcheckInstr {
    /// The arguments after HEALTHCHECK as written, for the history.
    pub text: String,
    /// The check; `None` for `HEALTHCHECK NONE`.
    pub check: Option<Healthcheck>,
}

/// `HEALTHCHECK CMD` and its flags.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Healthcheck {
    /// Docker's `Test`: `["CMD", …]` or `["CMD-SHELL", "…"]`.
    pub test: Checked<Vec<String>>,
    /// `--interval` (`None` when unset or 0).
    pub interval: Checked<Option<Duration>>,
    /// `--timeout`.
    pub timeout: Checked<Option<Duration>>,
    /// `--start-period`.
    pub start_period: Checked<Option<Duration>>,
    /// `--start-interval`.
    pub start_interval: Checked<Option<Duration>>,
    /// `--retries` (`None` when unset or 0).
    pub retries: Checked<Option<i64>>,
}

/// `ONBUILD`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OnbuildInstr {
    /// The trigger, typed (and so checked now, as BuildKit does).
    pub trigger: Box<Instruction>,
    /// The trigger as written, stored in the image config.
    pub expression: String,
}

/// The last value of flag `--name` (`""` for a bare `--name`), as BuildKit's flag parser
/// keeps the last occurrence.
fn last_flag<'a>(node: &'a Node, name: &str) -> Option<&'a str> {
    node.flags.iter().rev().find_map(|f| {
        let f = f.strip_prefix("--")?;
        match f.split_once('=') {
            Some((n, v)) if n == name => Some(v),
            None if f == name => Some(""),
            _ => None,
        }
    })
}

/// Every `--name=value` in order; a bare `--name` is `bare`.
fn all_flags(node: &Node, name: &str, bare: &InstructionError) -> Vec<Checked<String>> {
    node.flags
        .iter()
        .filter_map(|f| {
            let rest = f.strip_prefix("--")?;
            if rest == name {
                return Some(Err(bare.clone()));
            }
            rest.strip_prefix(name)?
                .strip_prefix('=')
                .map(|v| Ok(v.to_string()))
        })
        .collect()
}

fn bool_flag(node: &Node, span: Span, flag: &'static str) -> Checked<bool> {
    match last_flag(node, flag) {
        None | Some("false") => Ok(false),
        Some("" | "true") => Ok(true),
        Some(v) => Err(InstructionError::at(
            span,
            InstructionErrorKind::InvalidBool {
                flag,
                value: v.to_string(),
            },
        )),
    }
}

fn duration_flag(node: &Node, span: Span, flag: &'static str) -> Checked<Option<Duration>> {
    let Some(v) = last_flag(node, flag) else {
        return Ok(None);
    };
    let err = |kind| InstructionError::at(span, kind);
    let invalid = || {
        err(InstructionErrorKind::InvalidDuration {
            flag,
            value: v.to_string(),
        })
    };
    let d = kiln_units::parse_duration(v, kiln_units::DurationUnits::Go).map_err(|_| invalid())?;
    // Docker stores nanoseconds in an int64.
    if i64::try_from(d.as_nanos()).is_err() {
        return Err(invalid());
    }
    if d.is_zero() {
        return Ok(None);
    }
    if d < Duration::from_millis(1) {
        return Err(err(InstructionErrorKind::DurationTooShort(flag)));
    }
    Ok(Some(d))
}

fn healthcheck(node: &Node, span: Span) -> Healthcheck {
    let err = |kind| InstructionError::at(span, kind);
    let test = if node.json {
        Ok(std::iter::once("CMD".to_string())
            .chain(node.args[1..].iter().cloned())
            .collect())
    } else {
        let cmd = node.args.get(1..).unwrap_or(&[]).join(" ");
        if cmd.is_empty() {
            Err(err(InstructionErrorKind::HealthcheckMissingCommand))
        } else {
            Ok(vec!["CMD-SHELL".into(), cmd])
        }
    };
    let retries = match last_flag(node, "retries") {
        None => Ok(None),
        Some(v) => match v.parse::<i64>() {
            Err(_) => Err(err(InstructionErrorKind::InvalidRetries(v.to_string()))),
            Ok(r) if r < 0 => Err(err(InstructionErrorKind::NegativeRetries)),
            Ok(0) => Ok(None),
            Ok(r) => Ok(Some(r)),
        },
    };
    Healthcheck {
        test,
        interval: duration_flag(node, span, "interval"),
        timeout: duration_flag(node, span, "timeout"),
        start_period: duration_flag(node, span, "start-period"),
        start_interval: duration_flag(node, span, "start-interval"),
        retries,
    }
}

fn run(node: &Node, span: Span) -> RunInstr {
    let err = |kind| InstructionError::at(span, kind);
    let security = match last_flag(node, "security") {
        None | Some("sandbox") => Ok(Security::Sandbox),
        Some("insecure") => Ok(Security::Insecure),
        Some(v) => Err(err(InstructionErrorKind::InvalidSecurity(v.to_string()))),
    };
    let network = match last_flag(node, "network") {
        None | Some("default") => Ok(None),
        Some("none") => Ok(Some(NetworkMode::None)),
        Some("host") => Ok(Some(NetworkMode::Host)),
        Some(v) => Err(err(InstructionErrorKind::InvalidNetwork {
            value: v.to_string(),
            suggestion: crate::suggest(v, &["default", "none", "host"]),
        })),
    };
    RunInstr {
        command: CommandLine {
            args: node.args.clone(),
            json: node.json,
        },
        heredocs: node.heredocs.clone(),
        mounts: all_flags(node, "mount", &err(InstructionErrorKind::MountNeedsValue)),
        network,
        security,
    }
}

fn copy(node: &Node, span: Span, keyword: Keyword) -> CopyInstr {
    let (dest, sources) = match node.args.split_last() {
        Some((d, s)) => (d.clone(), s.to_vec()),
        None => (String::new(), vec![]),
    };
    let owned = |v: Option<&str>| v.map(str::to_string);
    CopyInstr {
        sources,
        dest,
        heredocs: node.heredocs.clone(),
        from: owned(last_flag(node, "from")),
        chown: owned(last_flag(node, "chown")),
        chmod: owned(last_flag(node, "chmod")),
        link: bool_flag(node, span, "link"),
        parents: bool_flag(node, span, "parents"),
        excludes: all_flags(
            node,
            "exclude",
            &InstructionError::at(span, InstructionErrorKind::ExcludeNeedsPattern(keyword)),
        ),
        checksum: owned(last_flag(node, "checksum")),
        keep_git_dir: last_flag(node, "keep-git-dir").is_some(),
    }
}

/// ENV and LABEL nodes hold `key, value, separator` triples.
fn key_values(node: &Node) -> KeyValues {
    KeyValues {
        pairs: node
            .args
            .chunks(3)
            .filter_map(|t| Some((t.first()?.clone(), t.get(1)?.clone())))
            .collect(),
    }
}

/// The first argument, or `""`.
fn first(node: &Node) -> String {
    node.args.first().cloned().unwrap_or_default()
}

/// Checks what BuildKit checks before dispatching anything: the keyword, the flags' names
/// and the argument count.
fn check(node: &Node, span: Span, in_onbuild: bool) -> Result<Keyword, InstructionError> {
    let err = |kind| Err(InstructionError::at(span, kind));
    let Some(keyword) = node.keyword else {
        let best = Keyword::ALL
            .iter()
            .map(|k| {
                (
                    crate::edit_distance(&node.cmd, &k.name().to_lowercase()),
                    *k,
                )
            })
            .min_by_key(|(d, _)| *d);
        return err(InstructionErrorKind::UnknownInstruction {
            name: node.cmd_original.to_uppercase(),
            suggestion: best.and_then(|(d, k)| (d <= 2).then_some(k)),
        });
    };
    let allowed = keyword.flags();
    for f in &node.flags {
        let name = f.trim_start_matches('-');
        let name = name.split_once('=').map_or(name, |(n, _)| n);
        if !allowed.contains(&name) {
            return err(InstructionErrorKind::UnknownFlag {
                flag: name.to_string(),
                keyword,
                suggestion: crate::suggest(name, allowed),
            });
        }
    }
    let need_args = |n: usize| {
        if node.args.len() < n {
            err(InstructionErrorKind::TooFewArguments { keyword, n })
        } else {
            Ok(keyword)
        }
    };
    match keyword {
        Keyword::From => {
            let a = &node.args;
            if a.len() != 1 && !(a.len() == 3 && a[1].eq_ignore_ascii_case("as")) {
                return err(InstructionErrorKind::FromArguments);
            }
            if in_onbuild {
                return err(InstructionErrorKind::NotATrigger(keyword));
            }
        }
        Keyword::Copy | Keyword::Add => {
            need_args(if node.heredocs.is_empty() { 2 } else { 1 })?;
        }
        Keyword::Shell => {
            need_args(1)?;
            if !node.json {
                return err(InstructionErrorKind::ShellNotJson);
            }
        }
        Keyword::Run
        | Keyword::Env
        | Keyword::Label
        | Keyword::User
        | Keyword::Workdir
        | Keyword::Stopsignal
        | Keyword::Maintainer
        | Keyword::Expose
        | Keyword::Volume
        | Keyword::Arg => {
            need_args(1)?;
        }
        Keyword::Onbuild => {
            let Some(sub) = &node.sub else {
                return err(InstructionErrorKind::OnbuildNeedsArgument);
            };
            if let Some(k @ (Keyword::Onbuild | Keyword::Maintainer)) = sub.keyword {
                return err(InstructionErrorKind::NotATrigger(k));
            }
        }
        Keyword::Healthcheck => match node.args.first() {
            None => return err(InstructionErrorKind::HealthcheckNeedsArgument),
            Some(t) if t.eq_ignore_ascii_case("none") => {
                if node.args.len() > 1 {
                    return err(InstructionErrorKind::HealthcheckNoneArguments);
                }
            }
            Some(t) if t.eq_ignore_ascii_case("cmd") => {}
            Some(t) => return err(InstructionErrorKind::HealthcheckType(t.clone())),
        },
        Keyword::Cmd | Keyword::Entrypoint => {}
    }
    Ok(keyword)
}

/// Types a parsed node (BuildKit's `ParseInstruction`). `in_onbuild`: the node is an ONBUILD
/// trigger (a FROM is refused there).
pub fn parse(node: &Node, in_onbuild: bool) -> Result<Located, InstructionError> {
    let span = Span::of(node);
    let instruction = parse_at(node, span, in_onbuild)?;
    Ok(Located {
        instruction,
        span,
        original: node.original.clone(),
    })
}

fn parse_at(node: &Node, span: Span, in_onbuild: bool) -> Result<Instruction, InstructionError> {
    let keyword = check(node, span, in_onbuild)?;
    Ok(match keyword {
        Keyword::From => Instruction::From(FromInstr {
            base: first(node),
            stage_name: node.args.get(2).cloned(),
            platform: last_flag(node, "platform").map(str::to_string),
        }),
        Keyword::Run => Instruction::Run(run(node, span)),
        Keyword::Copy => Instruction::Copy(copy(node, span, keyword)),
        Keyword::Add => Instruction::Add(copy(node, span, keyword)),
        Keyword::Env => Instruction::Env(key_values(node)),
        Keyword::Label => Instruction::Label(key_values(node)),
        Keyword::Arg => Instruction::Arg(ArgInstr {
            args: node
                .args
                .iter()
                .map(|w| match w.split_once('=') {
                    Some((n, d)) => (n.to_string(), Some(d.to_string())),
                    None => (w.clone(), None),
                })
                .collect(),
        }),
        Keyword::Expose => Instruction::Expose(node.args.clone()),
        Keyword::Workdir => Instruction::Workdir(first(node)),
        Keyword::User => Instruction::User(first(node)),
        Keyword::Volume => Instruction::Volume(node.args.clone()),
        Keyword::Cmd | Keyword::Entrypoint => {
            let c = CommandLine {
                args: node.args.clone(),
                json: node.json,
            };
            if keyword == Keyword::Cmd {
                Instruction::Cmd(c)
            } else {
                Instruction::Entrypoint(c)
            }
        }
        Keyword::Shell => Instruction::Shell(node.args.clone()),
        Keyword::Healthcheck => Instruction::Healthcheck(HealthcheckInstr {
            text: node.args.join(" "),
            check: if node
                .args
                .first()
                .is_some_and(|t| t.eq_ignore_ascii_case("none"))
            {
                None
            } else {
                Some(healthcheck(node, span))
            },
        }),
        Keyword::Stopsignal => Instruction::StopSignal(first(node)),
        Keyword::Maintainer => Instruction::Maintainer(first(node)),
        Keyword::Onbuild => {
            // The trigger is checked at the ONBUILD's position.
            let Some(sub) = node.sub.as_deref() else {
                return Err(InstructionError::at(
                    span,
                    InstructionErrorKind::OnbuildNeedsArgument,
                ));
            };
            let trigger = parse_at(sub, span, true)?;
            let expression = node
                .original
                .trim()
                .get(node.cmd_original.len()..)
                .unwrap_or("")
                .trim()
                .to_string();
            Instruction::Onbuild(OnbuildInstr {
                trigger: Box::new(trigger),
                expression,
            })
        }
    })
}

#[cfg(test)]
mod tests;
