//! Conversion of a typed Dockerfile into the op graph and the image config
//! (BuildKit's `dockerfile2llb`).
//!
//! [`build`] types every instruction up front ([`crate::instructions`]), splits them into
//! stages and converts the target stage, converting the stages it needs on the way
//! ([`stages`]). Each instruction is dispatched by its typed form to the module of its
//! concern: [`config`] (ENV, LABEL, CMD, … — the image config), [`run`] (RUN with its mounts,
//! network and security) and [`copy`] (COPY and ADD).

mod config;
mod copy;
mod error;
mod run;
mod stages;

use crate::instructions::{self, Instruction, Keyword, Located, Span};
use crate::shell::Lexer;
use crate::{Build, BuildOptions, Error, ImageResolver};
use config::ImgConfig;
pub(crate) use error::ConvertError;
pub use error::PortError;
use kiln_oci::spec::ImageConfiguration;
use kiln_oci::PendingHistory;
use kiln_opgraph::{Definition, Input, Op, SourceLocation, VertexMeta};
use stages::{Stage, StageResult};

pub use config::parse_port_spec;
pub(crate) use stages::is_predefined_arg;

/// The default PATH BuildKit adds to Linux images without one.
pub const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// A position for an error: a line and a column (the column is 1 for a bare line number,
/// 0 when there is no line).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Pos {
    line: u32,
    column: u32,
}

impl From<u32> for Pos {
    fn from(line: u32) -> Self {
        Pos {
            line,
            column: u32::from(line > 0),
        }
    }
}

impl From<Span> for Pos {
    fn from(s: Span) -> Self {
        Pos {
            line: s.start_line,
            column: s.column,
        }
    }
}

impl From<crate::parser::Position> for Pos {
    fn from(p: crate::parser::Position) -> Self {
        Pos {
            line: p.line,
            column: p.column,
        }
    }
}

impl From<&instructions::InstructionError> for Pos {
    fn from(e: &instructions::InstructionError) -> Self {
        Pos {
            line: e.line,
            column: e.column,
        }
    }
}

/// An error at `at` in `file`, without the offending line's text.
fn err_at(file: &str, at: impl Into<Pos>, e: impl Into<ConvertError>) -> Error {
    let at = at.into();
    let e = e.into();
    Error {
        kind: e.kind(),
        file: file.to_string(),
        line: at.line,
        column: at.column,
        message: e.to_string(),
        source_line: None,
        hint: e.hint(),
    }
}

struct Conv<'a> {
    opts: &'a BuildOptions,
    resolver: &'a dyn ImageResolver,
    def: Definition,
    stages: Vec<Stage>,
    results: Vec<Option<StageResult>>,
    busy: Vec<bool>,
    global_args: Vec<(String, Option<String>)>,
    src_lines: Vec<&'a str>,
    escape: char,
    target: usize,
    context: Option<Input>,
    /// Stages being converted now, one inside the other (see
    /// [`stages::MAX_STAGE_RECURSION`]).
    depth: usize,
    /// The stage whose conversion was put off because the recursion was too deep.
    deferred: Option<usize>,
}

/// Per-stage mutable state while dispatching.
struct Run {
    stage: usize,
    state: Input,
    config: ImgConfig,
    args: Vec<(String, String)>,
    cmd_set: bool,
    history: Vec<PendingHistory>,
    step: usize,
    total: usize,
}

impl<'a> Conv<'a> {
    fn new(
        opts: &'a BuildOptions,
        resolver: &'a dyn ImageResolver,
        src_lines: Vec<&'a str>,
        escape: char,
    ) -> Self {
        Conv {
            opts,
            resolver,
            def: Definition::new(),
            stages: vec![],
            results: vec![],
            busy: vec![],
            global_args: vec![],
            src_lines,
            escape,
            target: 0,
            context: None,
            depth: 0,
            deferred: None,
        }
    }

    /// An error at `at`, with the offending line's text.
    fn err(&self, at: impl Into<Pos>, e: impl Into<ConvertError>) -> Error {
        let at = at.into();
        let mut out = err_at(&self.opts.file_name, at, e);
        if at.line > 0 {
            out.source_line = self
                .src_lines
                .get(at.line as usize - 1)
                .map(std::string::ToString::to_string);
        }
        out
    }

    /// Types a parsed node; its error is placed where the typing put it.
    fn typed(&self, node: &crate::parser::Node, in_onbuild: bool) -> Result<Located, Error> {
        instructions::parse(node, in_onbuild).map_err(|e| self.err(&e, e.clone()))
    }

    /// Raises an error that typing recorded for when the instruction is converted.
    fn checked<T: Clone>(&self, v: &instructions::Checked<T>) -> Result<T, Error> {
        v.clone().map_err(|e| self.err(&e, e.clone()))
    }

    fn lexer(&self) -> Lexer {
        Lexer::new(self.escape)
    }

    fn meta(&self, name: String, span: Span) -> VertexMeta {
        VertexMeta {
            name,
            location: Some(SourceLocation {
                file: self.opts.file_name.clone(),
                line: span.start_line,
                end_line: span.end_line.max(span.start_line),
            }),
            ignore_cache: self.opts.no_cache,
        }
    }

    /// Env for word expansion: ENV wins over ARG.
    fn expand_env<'r>(&self, run: &'r Run) -> impl Fn(&str) -> Option<String> + 'r {
        move |k: &str| {
            run.config.get_env(k).or_else(|| {
                run.args
                    .iter()
                    .rev()
                    .find(|(n, _)| n == k)
                    .map(|(_, v)| v.clone())
            })
        }
    }

    fn word(&self, run: &Run, w: &str, at: impl Into<Pos>) -> Result<String, Error> {
        let env = self.expand_env(run);
        self.lexer()
            .process_word(w, &env)
            .map_err(|e| self.err(at, e))
    }

    fn words(&self, run: &Run, w: &str, at: impl Into<Pos>) -> Result<Vec<String>, Error> {
        let env = self.expand_env(run);
        self.lexer()
            .process_words(w, &env)
            .map_err(|e| self.err(at, e))
    }

    fn push_history(run: &mut Run, created_by: String, layer: Option<&Input>) {
        run.history.push(PendingHistory {
            created_by,
            comment: Some("buildkit.dockerfile.v0".into()),
            layer_vertex: layer.map(|i| i.vertex.0.clone()),
        });
    }

    fn step_name(&self, run: &Run, ins: &Located) -> String {
        let text = ins.original.trim();
        format!(
            "[{}{}/{}] {}",
            self.stage_label(run.stage),
            run.step,
            run.total,
            text
        )
    }

    /// Converts one instruction of a stage.
    fn dispatch(&mut self, run: &mut Run, ins: &Located) -> Result<(), Error> {
        let span = ins.span;
        match &ins.instruction {
            Instruction::Env(kv) => self.key_values(run, span, Keyword::Env, kv),
            Instruction::Label(kv) => self.key_values(run, span, Keyword::Label, kv),
            Instruction::Arg(a) => self.arg(run, span, a),
            Instruction::Run(r) => self.dispatch_run(run, ins, r),
            Instruction::Copy(c) => self.dispatch_copy(run, ins, c, Keyword::Copy),
            Instruction::Add(c) => self.dispatch_copy(run, ins, c, Keyword::Add),
            Instruction::Workdir(p) => self.workdir(run, ins, p),
            Instruction::Cmd(c) => {
                self.command(run, c, Keyword::Cmd);
                Ok(())
            }
            Instruction::Entrypoint(c) => {
                self.command(run, c, Keyword::Entrypoint);
                Ok(())
            }
            Instruction::Expose(ports) => self.expose(run, span, ports),
            Instruction::Volume(paths) => self.volume(run, span, paths),
            Instruction::User(u) => {
                let u = self.word(run, u, span)?;
                run.config.user.clone_from(&u);
                Self::push_history(run, format!("USER {u}"), None);
                Ok(())
            }
            Instruction::StopSignal(s) => self.stop_signal(run, span, s),
            Instruction::Maintainer(m) => {
                run.config.author = Some(m.clone());
                Self::push_history(run, format!("MAINTAINER {m}"), None);
                Ok(())
            }
            Instruction::Shell(s) => {
                run.config.shell = Some(s.clone());
                Self::push_history(run, format!("SHELL [{}]", s.join(" ")), None);
                Ok(())
            }
            Instruction::Onbuild(o) => {
                run.config.on_build.push(o.expression.clone());
                Self::push_history(run, format!("ONBUILD {}", o.expression), None);
                Ok(())
            }
            Instruction::Healthcheck(h) => self.healthcheck(run, h),
            // A FROM starts a stage; it is converted by `stages`.
            Instruction::From(_) => Ok(()),
        }
    }
}

/// Joins `p` onto the working directory; keeps a trailing `/`.
pub fn join_path(wd: &str, p: &str) -> String {
    let abs = if p.starts_with('/') {
        p.to_string()
    } else {
        let wd = if wd.is_empty() { "/" } else { wd };
        format!("{}/{}", wd.trim_end_matches('/'), p)
    };
    let trailing = abs.ends_with('/') && abs.len() > 1;
    let mut parts: Vec<&str> = vec![];
    for c in abs.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    let mut out = format!("/{}", parts.join("/"));
    if trailing && out != "/" {
        out.push('/');
    }
    out
}

/// Entry point behind [`crate::build`].
pub(crate) fn build(
    dockerfile: &str,
    opts: &BuildOptions,
    resolver: &dyn ImageResolver,
) -> Result<Build, Error> {
    let src_lines: Vec<&str> = dockerfile.lines().collect();
    let parsed = match crate::parser::parse(dockerfile) {
        Ok(p) => p,
        Err(e) => {
            let conv = Conv::new(opts, resolver, src_lines, '\\');
            return Err(conv.err(e.line, e));
        }
    };
    let mut conv = Conv::new(opts, resolver, src_lines, parsed.escape);
    let typed = parsed
        .instructions
        .iter()
        .map(|node| conv.typed(node, false))
        .collect::<Result<Vec<_>, _>>()?;
    conv.split_stages(typed)?;
    let target = conv.target_stage()?;
    conv.target = target;
    conv.results = vec![None; conv.stages.len()];
    conv.busy = vec![false; conv.stages.len()];
    let r = conv.convert_target(target)?;
    let mut config = r.config;
    for (k, v) in &opts.labels {
        config.labels.insert(k.clone(), v.clone());
    }
    let mut definition = conv.def;
    definition.root = Some(r.state.vertex.clone());
    let mut base = r.base;
    base.rootfs_mut().set_diff_ids(vec![]);
    Ok(Build {
        definition,
        config: config.to_oci(&base),
        history: r.history,
        extra_config: config.extra(),
    })
}

/// Entry point behind [`crate::apply_changes`].
pub(crate) fn apply_changes(
    config: &mut ImageConfiguration,
    changes: &[String],
) -> Result<(), Error> {
    struct NoResolve;
    impl ImageResolver for NoResolve {
        fn resolve(&self, r: &str) -> Result<crate::ResolvedImage, crate::ResolveError> {
            Err(crate::ResolveError::new(format!(
                "cannot resolve {r} in a change"
            )))
        }
    }
    let mut cfg = ImgConfig::from_oci(config);
    let opts = BuildOptions {
        file_name: "change".into(),
        ..Default::default()
    };
    let resolver = NoResolve;
    for (i, change) in changes.iter().enumerate() {
        let line = u32::try_from(i + 1).unwrap_or(u32::MAX);
        let parsed = crate::parser::parse(change).map_err(|e| err_at("change", line, e))?;
        let mut conv = Conv::new(&opts, &resolver, vec![change.as_str()], parsed.escape);
        for mut node in parsed.instructions {
            node.place_at(line, line, 1);
            // `docker commit --change` takes these only (docker's `validCommitCommands`).
            let allowed = matches!(
                node.keyword,
                Some(
                    Keyword::Cmd
                        | Keyword::Entrypoint
                        | Keyword::Env
                        | Keyword::Expose
                        | Keyword::Label
                        | Keyword::Onbuild
                        | Keyword::User
                        | Keyword::Volume
                        | Keyword::Workdir
                        | Keyword::Stopsignal
                )
            );
            if !allowed {
                return Err(err_at(
                    "change",
                    line,
                    ConvertError::NotAChange(node.cmd_original.to_uppercase()),
                ));
            }
            let ins = conv.typed(&node, false)?;
            let state = conv.def.add(Op::Scratch, VertexMeta::default());
            let mut run = Run {
                stage: 0,
                state,
                config: std::mem::take(&mut cfg),
                args: vec![],
                cmd_set: true,
                history: vec![],
                step: 1,
                total: 1,
            };
            if let Instruction::Workdir(p) = &ins.instruction {
                // No filesystem to create it in: only the config changes.
                let p = conv.word(&run, p, ins.span)?;
                run.config.working_dir = join_path(&run.config.working_dir, &p);
            } else {
                conv.dispatch(&mut run, &ins)?;
            }
            cfg = run.config;
        }
    }
    let history = config.history().clone();
    let rootfs = config.rootfs().clone();
    let mut out = cfg.to_oci(config);
    out.set_history(history);
    out.set_rootfs(rootfs);
    *config = out;
    Ok(())
}

#[cfg(test)]
mod tests;
