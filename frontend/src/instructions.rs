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

use crate::parser::{Heredoc, Node, Position};
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

    /// Where the keyword is.
    pub fn position(&self) -> Position {
        Position {
            line: self.start_line,
            column: self.column,
        }
    }
}

/// A flag's value as written, and where the flag is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Flag {
    /// The value (after `=`; empty for a bare `--flag`).
    pub value: String,
    /// Where `--flag` starts.
    pub at: Position,
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
    pub platform: Option<Flag>,
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
    /// `--mount=` values as written, in order (an error for a `--mount` without a value).
    pub mounts: Vec<Checked<Flag>>,
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
    pub from: Option<Flag>,
    /// `--chown=`.
    pub chown: Option<Flag>,
    /// `--chmod=`.
    pub chmod: Option<Flag>,
    /// `--link`.
    pub link: Checked<bool>,
    /// `--parents`.
    pub parents: Checked<bool>,
    /// `--exclude=` patterns as written, in order.
    pub excludes: Vec<Checked<Flag>>,
    /// `--checksum=` (ADD).
    pub checksum: Option<Flag>,
    /// Where `--keep-git-dir` is, when given (ADD).
    pub keep_git_dir: Option<Position>,
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

/// The flags with their positions (the keyword's when the parser gave none).
fn flags(node: &Node, span: Span) -> impl DoubleEndedIterator<Item = (&str, Position)> {
    node.flags.iter().enumerate().map(move |(i, f)| {
        let at = node
            .flag_positions
            .get(i)
            .copied()
            .unwrap_or_else(|| span.position());
        (f.as_str(), at)
    })
}

/// The last value of flag `--name` (`""` for a bare `--name`), as BuildKit's flag parser
/// keeps the last occurrence.
fn last_flag(node: &Node, span: Span, name: &str) -> Option<Flag> {
    flags(node, span).rev().find_map(|(f, at)| {
        let f = f.strip_prefix("--")?;
        let value = match f.split_once('=') {
            Some((n, v)) if n == name => v,
            None if f == name => "",
            _ => return None,
        };
        Some(Flag {
            value: value.to_string(),
            at,
        })
    })
}

/// Every `--name=value` in order; a bare `--name` is the error `bare`.
fn all_flags(
    node: &Node,
    span: Span,
    name: &str,
    bare: &InstructionErrorKind,
) -> Vec<Checked<Flag>> {
    flags(node, span)
        .filter_map(|(f, at)| {
            let rest = f.strip_prefix("--")?;
            if rest == name {
                return Some(Err(InstructionError::at(at, bare.clone())));
            }
            let value = rest.strip_prefix(name)?.strip_prefix('=')?;
            Some(Ok(Flag {
                value: value.to_string(),
                at,
            }))
        })
        .collect()
}

fn bool_flag(node: &Node, span: Span, flag: &'static str) -> Checked<bool> {
    let Some(f) = last_flag(node, span, flag) else {
        return Ok(false);
    };
    match f.value.as_str() {
        "false" => Ok(false),
        "" | "true" => Ok(true),
        _ => Err(InstructionError::at(
            f.at,
            InstructionErrorKind::InvalidBool {
                flag,
                value: f.value,
            },
        )),
    }
}

fn duration_flag(node: &Node, span: Span, flag: &'static str) -> Checked<Option<Duration>> {
    let Some(f) = last_flag(node, span, flag) else {
        return Ok(None);
    };
    let err = |kind| InstructionError::at(f.at, kind);
    let invalid = || {
        err(InstructionErrorKind::InvalidDuration {
            flag,
            value: f.value.clone(),
        })
    };
    let d = kiln_units::parse_duration(&f.value, kiln_units::DurationUnits::Go)
        .map_err(|_| invalid())?;
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
    let err = |kind| InstructionError::at(span.position(), kind);
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
    let retries = match last_flag(node, span, "retries") {
        None => Ok(None),
        Some(f) => match f.value.parse::<i64>() {
            Err(_) => Err(InstructionError::at(
                f.at,
                InstructionErrorKind::InvalidRetries(f.value),
            )),
            Ok(r) if r < 0 => Err(InstructionError::at(
                f.at,
                InstructionErrorKind::NegativeRetries,
            )),
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
    let security = match last_flag(node, span, "security") {
        None => Ok(Security::Sandbox),
        Some(f) => match f.value.as_str() {
            "sandbox" => Ok(Security::Sandbox),
            "insecure" => Ok(Security::Insecure),
            _ => Err(InstructionError::at(
                f.at,
                InstructionErrorKind::InvalidSecurity(f.value),
            )),
        },
    };
    let network = match last_flag(node, span, "network") {
        None => Ok(None),
        Some(f) => match f.value.as_str() {
            "default" => Ok(None),
            "none" => Ok(Some(NetworkMode::None)),
            "host" => Ok(Some(NetworkMode::Host)),
            v => Err(InstructionError::at(
                f.at,
                InstructionErrorKind::InvalidNetwork {
                    suggestion: crate::suggest(v, &["default", "none", "host"]),
                    value: f.value,
                },
            )),
        },
    };
    RunInstr {
        command: CommandLine {
            args: node.args.clone(),
            json: node.json,
        },
        heredocs: node.heredocs.clone(),
        mounts: all_flags(node, span, "mount", &InstructionErrorKind::MountNeedsValue),
        network,
        security,
    }
}

fn copy(node: &Node, span: Span, keyword: Keyword) -> CopyInstr {
    let (dest, sources) = match node.args.split_last() {
        Some((d, s)) => (d.clone(), s.to_vec()),
        None => (String::new(), vec![]),
    };
    CopyInstr {
        sources,
        dest,
        heredocs: node.heredocs.clone(),
        from: last_flag(node, span, "from"),
        chown: last_flag(node, span, "chown"),
        chmod: last_flag(node, span, "chmod"),
        link: bool_flag(node, span, "link"),
        parents: bool_flag(node, span, "parents"),
        excludes: all_flags(
            node,
            span,
            "exclude",
            &InstructionErrorKind::ExcludeNeedsPattern(keyword),
        ),
        checksum: last_flag(node, span, "checksum"),
        keep_git_dir: last_flag(node, span, "keep-git-dir").map(|f| f.at),
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
    let err = |kind| Err(InstructionError::at(span.position(), kind));
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
    for (f, at) in flags(node, span) {
        let name = f.trim_start_matches('-');
        let name = name.split_once('=').map_or(name, |(n, _)| n);
        if !allowed.contains(&name) {
            return Err(InstructionError::at(
                at,
                InstructionErrorKind::UnknownFlag {
                    flag: name.to_string(),
                    keyword,
                    suggestion: crate::suggest(name, allowed),
                },
            ));
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
            platform: last_flag(node, span, "platform"),
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
                    span.position(),
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

mod error;
pub use error::{Checked, InstructionError, InstructionErrorKind};

#[cfg(test)]
mod tests;
