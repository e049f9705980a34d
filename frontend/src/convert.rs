//! Conversion of a parsed Dockerfile into the op graph and the image config.

use crate::parser::{self, chomp_heredoc_content, Instruction};
use crate::shell::Lexer;
use crate::{mounts, NamedContext};
use crate::{Build, BuildOptions, Error, ErrorKind, ImageResolver};
use kiln_oci::spec::{Config, ImageConfiguration};
use kiln_oci::PendingHistory;
use kiln_opgraph::{
    Chown, CopyAction, Definition, ExecMount, ExecOp, FileAction, FileOp, Input, MountKind, Op,
    Security, SourceLocation, VertexMeta,
};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

/// The default PATH BuildKit adds to Linux images without one.
pub const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

pub(crate) const PROXY_ARGS: &[&str] = &[
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "FTP_PROXY",
    "ftp_proxy",
    "NO_PROXY",
    "no_proxy",
    "ALL_PROXY",
    "all_proxy",
];

pub(crate) fn platform_args() -> Vec<(&'static str, &'static str)> {
    vec![
        ("TARGETPLATFORM", "linux/amd64"),
        ("TARGETOS", "linux"),
        ("TARGETARCH", "amd64"),
        ("TARGETVARIANT", ""),
        ("BUILDPLATFORM", "linux/amd64"),
        ("BUILDOS", "linux"),
        ("BUILDARCH", "amd64"),
        ("BUILDVARIANT", ""),
    ]
}

/// Whether `name` is an argument BuildKit predefines (proxy and platform args).
pub(crate) fn is_predefined_arg(name: &str) -> bool {
    PROXY_ARGS.contains(&name) || platform_args().iter().any(|(k, _)| *k == name)
}

/// The image config fields the Dockerfile changes, including those `oci-spec` lacks.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct ImgConfig {
    /// `KEY=value`.
    pub env: Vec<String>,
    /// Cmd.
    pub cmd: Option<Vec<String>>,
    /// Entrypoint.
    pub entrypoint: Option<Vec<String>>,
    /// WorkingDir.
    pub working_dir: String,
    /// User.
    pub user: String,
    /// ExposedPorts keys (`80/tcp`).
    pub exposed_ports: Vec<String>,
    /// Volumes.
    pub volumes: Vec<String>,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// StopSignal.
    pub stop_signal: Option<String>,
    /// OnBuild triggers.
    pub on_build: Vec<String>,
    /// Healthcheck (Docker's JSON form).
    pub healthcheck: Option<Value>,
    /// Shell.
    pub shell: Option<Vec<String>>,
    /// Author (MAINTAINER).
    pub author: Option<String>,
}

impl ImgConfig {
    fn from_oci(c: &ImageConfiguration) -> Self {
        let mut out = ImgConfig {
            author: c.author().clone(),
            ..Default::default()
        };
        if let Some(cfg) = c.config() {
            out.env = cfg.env().clone().unwrap_or_default();
            out.cmd = cfg.cmd().clone();
            out.entrypoint = cfg.entrypoint().clone();
            out.working_dir = cfg.working_dir().clone().unwrap_or_default();
            out.user = cfg.user().clone().unwrap_or_default();
            out.exposed_ports = cfg.exposed_ports().clone().unwrap_or_default();
            out.volumes = cfg.volumes().clone().unwrap_or_default();
            out.labels = cfg
                .labels()
                .clone()
                .unwrap_or_default()
                .into_iter()
                .collect::<BTreeMap<_, _>>();
            out.stop_signal = cfg.stop_signal().clone();
        }
        out
    }

    fn get_env(&self, k: &str) -> Option<String> {
        self.env.iter().rev().find_map(|e| match e.split_once('=') {
            Some((n, v)) if n == k => Some(v.to_string()),
            None if e == k => Some(String::new()),
            _ => None,
        })
    }

    fn set_env(&mut self, k: &str, v: &str) {
        let entry = format!("{k}={v}");
        for e in &mut self.env {
            if e.split_once('=').map(|(n, _)| n).unwrap_or(e) == k {
                *e = entry;
                return;
            }
        }
        self.env.push(entry);
    }

    /// Writes these fields into an oci-spec config.
    pub(crate) fn to_oci(&self, base: &ImageConfiguration) -> ImageConfiguration {
        let mut out = base.clone();
        let mut c = Config::default();
        let some_vec = |v: &Vec<String>| if v.is_empty() { None } else { Some(v.clone()) };
        c.set_env(some_vec(&self.env));
        c.set_cmd(self.cmd.clone());
        c.set_entrypoint(self.entrypoint.clone());
        c.set_working_dir(if self.working_dir.is_empty() {
            None
        } else {
            Some(self.working_dir.clone())
        });
        c.set_user(if self.user.is_empty() {
            None
        } else {
            Some(self.user.clone())
        });
        c.set_exposed_ports(some_vec(&self.exposed_ports));
        c.set_volumes(some_vec(&self.volumes));
        c.set_labels(if self.labels.is_empty() {
            None
        } else {
            Some(self.labels.clone().into_iter().collect())
        });
        c.set_stop_signal(self.stop_signal.clone());
        out.set_config(Some(c));
        out.set_author(self.author.clone());
        out.set_architecture(kiln_oci::spec::Arch::Amd64);
        out.set_os(kiln_oci::spec::Os::Linux);
        out
    }

    /// The fields oci-spec cannot hold: `Healthcheck`, `Shell`, `OnBuild`.
    pub(crate) fn extra(&self) -> Map<String, Value> {
        let mut m = Map::new();
        if let Some(h) = &self.healthcheck {
            m.insert("Healthcheck".into(), h.clone());
        }
        if let Some(s) = &self.shell {
            m.insert("Shell".into(), json!(s));
        }
        if !self.on_build.is_empty() {
            m.insert("OnBuild".into(), json!(self.on_build));
        }
        m
    }
}

struct Stage {
    name: Option<String>,
    from: Instruction,
    instructions: Vec<Instruction>,
}

#[derive(Clone)]
struct StageResult {
    state: Input,
    config: ImgConfig,
    base: ImageConfiguration,
    history: Vec<PendingHistory>,
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
    /// Stages being converted now, one inside the other (see [`MAX_STAGE_RECURSION`]).
    depth: usize,
    /// The stage whose conversion was put off because the recursion was too deep.
    deferred: Option<usize>,
}

/// How many stage conversions may run one inside the other (a `FROM` or `COPY --from` of a
/// stage not converted yet converts it on the spot). Deeper than this, the stage that is
/// needed is converted first from the top and the outer one is converted again (see
/// [`Conv::convert_target`]), so chains of any length convert without a deep stack.
const MAX_STAGE_RECURSION: usize = 16;

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

fn err_at(kind: ErrorKind, file: &str, line: u32, message: impl Into<String>) -> Error {
    Error {
        kind,
        file: file.to_string(),
        line,
        column: u32::from(line > 0),
        message: message.into(),
        source_line: None,
        hint: None,
    }
}

use crate::edit_distance;

/// Flags each instruction accepts (boolean flags may omit `=value`).
fn allowed_flags(cmd: &str) -> &'static [&'static str] {
    match cmd {
        "from" => &["platform"],
        "run" => &["mount", "network", "security"],
        "copy" => &["from", "chown", "chmod", "link", "parents", "exclude"],
        "add" => &[
            "chown",
            "chmod",
            "link",
            "checksum",
            "keep-git-dir",
            "exclude",
        ],
        "healthcheck" => &[
            "interval",
            "timeout",
            "start-period",
            "start-interval",
            "retries",
        ],
        _ => &[],
    }
}

fn flag<'i>(ins: &'i Instruction, name: &str) -> Option<&'i str> {
    ins.flags.iter().rev().find_map(|f| {
        let f = f.strip_prefix("--")?;
        match f.split_once('=') {
            Some((n, v)) if n == name => Some(v),
            None if f == name => Some(""),
            _ => None,
        }
    })
}

impl Conv<'_> {
    fn err(&self, kind: ErrorKind, line: u32, message: impl Into<String>) -> Error {
        let mut e = err_at(kind, &self.opts.file_name, line, message);
        if line > 0 {
            e.source_line = self
                .src_lines
                .get(line as usize - 1)
                .map(std::string::ToString::to_string);
        }
        e
    }

    fn lexer(&self) -> Lexer {
        Lexer::new(self.escape)
    }

    /// Checks every instruction up front, as BuildKit's instruction parser does.
    fn validate(&self, ins: &Instruction, in_onbuild: bool) -> Result<(), Error> {
        let line = ins.start_line;
        if !parser::KNOWN.contains(&ins.cmd.as_str()) {
            let mut e = self.err(
                ErrorKind::Semantic,
                line,
                format!("unknown instruction: {}", ins.cmd_original.to_uppercase()),
            );
            let best = parser::KNOWN
                .iter()
                .map(|k| (edit_distance(&ins.cmd, k), k))
                .min_by_key(|(d, _)| *d);
            if let Some((d, k)) = best {
                if d <= 2 {
                    e.hint = Some(format!("did you mean {}?", k.to_uppercase()));
                }
            }
            return Err(e);
        }
        let allowed = allowed_flags(&ins.cmd);
        for f in &ins.flags {
            let name = f.trim_start_matches('-');
            let name = name.split_once('=').map_or(name, |(n, _)| n);
            if !allowed.contains(&name) {
                let mut e = self.err(
                    ErrorKind::Semantic,
                    line,
                    format!("unknown flag: {} (for {})", name, ins.cmd.to_uppercase()),
                );
                e.hint = crate::suggest(name, allowed).map(|s| format!("did you mean --{s}?"));
                return Err(e);
            }
        }
        let up = ins.cmd.to_uppercase();
        let need_args = |n: usize| -> Result<(), Error> {
            if ins.args.len() < n {
                Err(self.err(
                    ErrorKind::Syntax,
                    line,
                    format!("{up} requires at least {n} argument(s)"),
                ))
            } else {
                Ok(())
            }
        };
        match ins.cmd.as_str() {
            "from" => {
                if ins.args.len() != 1
                    && !(ins.args.len() == 3 && ins.args[1].eq_ignore_ascii_case("as"))
                {
                    return Err(self.err(
                        ErrorKind::Syntax,
                        line,
                        "FROM requires either one or three arguments",
                    ));
                }
                if in_onbuild {
                    return Err(self.err(
                        ErrorKind::Semantic,
                        line,
                        "FROM isn't allowed as an ONBUILD trigger",
                    ));
                }
            }
            "copy" | "add" => {
                if ins.heredocs.is_empty() {
                    need_args(2)?;
                } else {
                    need_args(1)?;
                }
            }
            "run" => need_args(1)?,
            "shell" => {
                need_args(1)?;
                if !ins.json {
                    return Err(self.err(
                        ErrorKind::Syntax,
                        line,
                        "SHELL requires the arguments to be in JSON form",
                    ));
                }
            }
            "env" | "label" | "user" | "workdir" | "stopsignal" | "maintainer" | "expose"
            | "volume" | "arg" => need_args(1)?,
            "onbuild" => match &ins.sub {
                None => {
                    return Err(self.err(
                        ErrorKind::Syntax,
                        line,
                        "ONBUILD requires at least one argument",
                    ))
                }
                Some(sub) => {
                    if matches!(sub.cmd.as_str(), "onbuild" | "maintainer") {
                        return Err(self.err(
                            ErrorKind::Semantic,
                            line,
                            format!(
                                "{} isn't allowed as an ONBUILD trigger",
                                sub.cmd.to_uppercase()
                            ),
                        ));
                    }
                    let mut s = (**sub).clone();
                    s.start_line = line;
                    self.validate(&s, true)?;
                }
            },
            "healthcheck" => {
                if let Some(t) = ins.args.first() {
                    if !t.eq_ignore_ascii_case("none") && !t.eq_ignore_ascii_case("cmd") {
                        return Err(self.err(
                            ErrorKind::Semantic,
                            line,
                            format!("Unknown type {t:?} in HEALTHCHECK (try CMD)"),
                        ));
                    }
                    if t.eq_ignore_ascii_case("none") && ins.args.len() > 1 {
                        return Err(self.err(
                            ErrorKind::Semantic,
                            line,
                            "HEALTHCHECK NONE takes no arguments",
                        ));
                    }
                } else {
                    return Err(self.err(
                        ErrorKind::Syntax,
                        line,
                        "HEALTHCHECK requires an argument",
                    ));
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn global_lookup(&self, k: &str) -> Option<String> {
        if let Some((_, v)) = self.global_args.iter().rev().find(|(n, _)| n == k) {
            return v.clone();
        }
        platform_args()
            .into_iter()
            .find(|(n, _)| *n == k)
            .map(|(_, v)| v.to_string())
    }

    fn expand_global(&self, word: &str, line: u32) -> Result<String, Error> {
        let lookup = |k: &str| self.global_lookup(k);
        self.lexer()
            .process_word(word, &lookup)
            .map_err(|e| self.err(ErrorKind::Syntax, line, e))
    }

    fn find_stage(&self, name: &str, before: usize) -> Option<usize> {
        if let Ok(i) = name.parse::<usize>() {
            return (i < before).then_some(i);
        }
        self.stages[..before.min(self.stages.len())]
            .iter()
            .position(|s| {
                s.name
                    .as_deref()
                    .is_some_and(|n| n.eq_ignore_ascii_case(name))
            })
    }

    fn stage_label(&self, stage: usize) -> String {
        match &self.stages[stage].name {
            Some(n) => format!("{n} "),
            None if stage == self.target => String::new(),
            None => format!("stage-{stage} "),
        }
    }

    fn meta(&self, name: String, ins_line: (u32, u32)) -> VertexMeta {
        VertexMeta {
            name,
            location: Some(SourceLocation {
                file: self.opts.file_name.clone(),
                line: ins_line.0,
                end_line: ins_line.1.max(ins_line.0),
            }),
            ignore_cache: self.opts.no_cache,
        }
    }

    fn resolve_image(
        &mut self,
        reference: &str,
        line: u32,
        name: String,
    ) -> Result<(Input, ImageConfiguration, Vec<String>), Error> {
        let r = self
            .resolver
            .resolve(reference)
            .map_err(|e| self.err(ErrorKind::Resolve, line, e))?;
        let input = self.def.add(
            Op::Image {
                reference: r.reference.clone(),
                digest: r.digest.clone(),
            },
            VertexMeta {
                name,
                location: None,
                ignore_cache: self.opts.no_cache,
            },
        );
        Ok((input, r.config, r.onbuild))
    }

    fn convert_stage(&mut self, idx: usize) -> Result<StageResult, Error> {
        if let Some(Some(r)) = self.results.get(idx) {
            return Ok(r.clone());
        }
        if self.busy[idx] {
            let line = self.stages[idx].from.start_line;
            return Err(self.err(
                ErrorKind::Semantic,
                line,
                "circular dependency between stages",
            ));
        }
        if self.depth >= MAX_STAGE_RECURSION {
            self.deferred = Some(idx);
            let line = self.stages[idx].from.start_line;
            return Err(self.err(ErrorKind::Semantic, line, "stage conversion deferred"));
        }
        self.busy[idx] = true;
        self.depth += 1;
        let r = self.convert_stage_inner(idx);
        self.depth -= 1;
        self.busy[idx] = false;
        let r = r?;
        self.results[idx] = Some(r.clone());
        Ok(r)
    }

    /// Converts stage `target` and what it needs, on an explicit stack of stages whose
    /// conversion was put off: a stage only ever needs earlier ones, so each deferral names
    /// an earlier stage and the loop ends. A stage started and put off is converted again
    /// from the start (conversion is deterministic and adds the same vertices).
    fn convert_target(&mut self, target: usize) -> Result<StageResult, Error> {
        let mut outer = Vec::new();
        let mut idx = target;
        loop {
            match self.convert_stage(idx) {
                Ok(r) => match outer.pop() {
                    Some(o) => idx = o,
                    None => return Ok(r),
                },
                Err(e) => match self.deferred.take() {
                    Some(j) => {
                        outer.push(idx);
                        idx = j;
                    }
                    None => return Err(e),
                },
            }
        }
    }

    fn convert_stage_inner(&mut self, idx: usize) -> Result<StageResult, Error> {
        let from = self.stages[idx].from.clone();
        let line = from.start_line;
        let total = self.stages[idx].instructions.len() + 1;
        let base_raw = from.args.first().cloned().unwrap_or_default();
        let base_name = self.expand_global(&base_raw, line)?;
        if let Some(p) = flag(&from, "platform") {
            let p = self.expand_global(p, line)?;
            if !p.is_empty() && p != "linux/amd64" && p != "linux" {
                return Err(self.err(
                    ErrorKind::Semantic,
                    line,
                    format!("platform {p} is not supported (only linux/amd64)"),
                ));
            }
        }
        let label = self.stage_label(idx);
        let named = if base_name.eq_ignore_ascii_case("scratch") {
            None
        } else {
            self.named_context(&base_name, line)?
        };
        let (state, mut config, base, history) = if let Some((st, img)) = named {
            if let Some((cfg, onbuild)) = img {
                let mut ic = ImgConfig::from_oci(&cfg);
                ic.on_build = onbuild;
                if ic.get_env("PATH").is_none() {
                    ic.env.insert(0, DEFAULT_PATH.to_string());
                }
                (st, ic, cfg, vec![])
            } else {
                // A directory context as a root filesystem: its files copied onto scratch.
                let scratch = self.def.add(Op::Scratch, VertexMeta::default());
                let fs = self.def.add(
                    Op::File(FileOp {
                        base: scratch,
                        actions: vec![FileAction::Copy(CopyAction {
                            source: st,
                            src: vec![".".into()],
                            dest: "/".into(),
                            chown: None,
                            chmod: None,
                            extract_archives: false,
                            parents: false,
                            exclude: vec![],
                        })],
                    }),
                    VertexMeta {
                        name: format!("[{label}1/{total}] FROM {base_name}"),
                        location: None,
                        ignore_cache: self.opts.no_cache,
                    },
                );
                let cfg = ImgConfig {
                    env: vec![DEFAULT_PATH.to_string()],
                    working_dir: "/".into(),
                    ..Default::default()
                };
                (fs, cfg, ImageConfiguration::default(), vec![])
            }
        } else if base_name.eq_ignore_ascii_case("scratch") {
            let st = self.def.add(Op::Scratch, VertexMeta::default());
            let cfg = ImgConfig {
                env: vec![DEFAULT_PATH.to_string()],
                working_dir: "/".into(),
                ..Default::default()
            };
            (st, cfg, ImageConfiguration::default(), vec![])
        } else if let Some(j) = self.find_stage(&base_name, idx) {
            let r = self.convert_stage(j)?;
            (r.state, r.config, r.base, r.history)
        } else {
            if base_name.is_empty() {
                return Err(self.err(
                    ErrorKind::Semantic,
                    line,
                    "base name (FROM) should not be blank",
                ));
            }
            let (st, cfg, onbuild) = self
                .resolve_image(
                    &base_name,
                    line,
                    format!("[{label}1/{total}] FROM {base_name}"),
                )
                .map_err(|mut e| {
                    e.hint = e.hint.or_else(|| self.stage_hint(&base_name, idx));
                    e
                })?;
            let mut ic = ImgConfig::from_oci(&cfg);
            ic.on_build = onbuild;
            if ic.get_env("PATH").is_none() {
                ic.env.insert(0, DEFAULT_PATH.to_string());
            }
            let mut base = cfg;
            base.set_history(base.history().clone());
            (st, ic, base, vec![])
        };
        let triggers = std::mem::take(&mut config.on_build);
        let mut run = Run {
            stage: idx,
            state,
            config,
            args: vec![],
            cmd_set: false,
            history,
            step: 1,
            total,
        };
        for t in triggers {
            let parsed =
                parser::parse(&t).map_err(|e| self.err(ErrorKind::Syntax, line, e.message))?;
            for mut ins in parsed.instructions {
                ins.start_line = line;
                ins.end_line = from.end_line;
                self.validate(&ins, true)?;
                self.dispatch(&mut run, &ins, false)?;
            }
        }
        let instructions = self.stages[idx].instructions.clone();
        for ins in &instructions {
            run.step += 1;
            self.dispatch(&mut run, ins, true)?;
        }
        Ok(StageResult {
            state: run.state,
            config: run.config,
            base,
            history: run.history,
        })
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

    fn word(&self, run: &Run, w: &str, line: u32) -> Result<String, Error> {
        let env = self.expand_env(run);
        self.lexer()
            .process_word(w, &env)
            .map_err(|e| self.err(ErrorKind::Syntax, line, e))
    }

    fn words(&self, run: &Run, w: &str, line: u32) -> Result<Vec<String>, Error> {
        let env = self.expand_env(run);
        self.lexer()
            .process_words(w, &env)
            .map_err(|e| self.err(ErrorKind::Syntax, line, e))
    }

    fn push_history(&self, run: &mut Run, created_by: String, layer: Option<&Input>) {
        run.history.push(PendingHistory {
            created_by,
            comment: Some("buildkit.dockerfile.v0".into()),
            layer_vertex: layer.map(|i| i.vertex.0.clone()),
        });
    }

    fn step_name(&self, run: &Run, ins: &Instruction) -> String {
        let text = ins.original.trim();
        format!(
            "[{}{}/{}] {}",
            self.stage_label(run.stage),
            run.step,
            run.total,
            text
        )
    }

    fn dispatch(&mut self, run: &mut Run, ins: &Instruction, _top: bool) -> Result<(), Error> {
        let line = ins.start_line;
        let lines = (ins.start_line, ins.end_line);
        match ins.cmd.as_str() {
            "env" | "label" => {
                let mut parts = vec![];
                for t in ins.args.chunks(3) {
                    let (Some(k), Some(v)) = (t.first(), t.get(1)) else {
                        continue;
                    };
                    let k = self.word(run, k, line)?;
                    let v = self.word(run, v, line)?;
                    if k.is_empty() {
                        return Err(self.err(
                            ErrorKind::Syntax,
                            line,
                            format!("{} names can not be blank", ins.cmd.to_uppercase()),
                        ));
                    }
                    parts.push((k, v));
                }
                let mut desc = vec![];
                for (k, v) in parts {
                    if ins.cmd == "env" {
                        run.config.set_env(&k, &v);
                        desc.push(format!("{k}={v}"));
                    } else {
                        desc.push(format!(
                            "{}={}",
                            go_quote_if_needed(&k),
                            go_quote_if_needed(&v)
                        ));
                        run.config.labels.insert(k, v);
                    }
                }
                self.push_history(
                    run,
                    format!("{} {}", ins.cmd.to_uppercase(), desc.join(" ")),
                    None,
                );
            }
            "arg" => {
                let mut desc = vec![];
                for w in &ins.args {
                    let (name, default) = match w.split_once('=') {
                        Some((n, d)) => (n.to_string(), Some(self.word(run, d, line)?)),
                        None => (w.clone(), None),
                    };
                    let value = if let Some(v) = self.opts.build_args.get(&name) {
                        Some(v.clone())
                    } else if default.is_some() {
                        default
                    } else if let Some((_, v)) =
                        self.global_args.iter().rev().find(|(n, _)| *n == name)
                    {
                        v.clone()
                    } else {
                        platform_args()
                            .into_iter()
                            .find(|(n, _)| *n == name)
                            .map(|(_, v)| v.to_string())
                    };
                    run.args.retain(|(n, _)| *n != name);
                    if let Some(v) = value {
                        desc.push(format!("{name}={v}"));
                        run.args.push((name, v));
                    } else {
                        desc.push(name);
                    }
                }
                self.push_history(run, format!("ARG {}", desc.join(" ")), None);
            }
            "run" => self.dispatch_run(run, ins)?,
            "copy" | "add" => self.dispatch_copy(run, ins)?,
            "workdir" => {
                let raw = ins.args.first().cloned().unwrap_or_default();
                let p = self.word(run, &raw, line)?;
                let wd = join_path(&run.config.working_dir, &p);
                run.config.working_dir = wd.clone();
                let name = self.step_name(run, ins);
                let meta = self.meta(name, lines);
                let st = self.def.add(
                    Op::File(FileOp {
                        base: run.state.clone(),
                        actions: vec![FileAction::Mkdir {
                            path: wd.clone(),
                            mode: 0o755,
                            chown: None,
                        }],
                    }),
                    meta,
                );
                run.state = st.clone();
                self.push_history(run, format!("WORKDIR {wd}"), Some(&st));
            }
            "cmd" | "entrypoint" => {
                let v = if ins.json {
                    ins.args.clone()
                } else if ins.args.is_empty() {
                    vec![]
                } else {
                    let mut s = self.shell(run);
                    s.push(ins.args.join(" "));
                    s
                };
                let created = format!(
                    "{} {}",
                    ins.cmd.to_uppercase(),
                    serde_json::to_string(&v).unwrap_or_default()
                );
                if ins.cmd == "cmd" {
                    run.config.cmd = Some(v);
                    run.cmd_set = true;
                } else {
                    run.config.entrypoint = Some(v);
                    if !run.cmd_set {
                        run.config.cmd = None;
                    }
                }
                self.push_history(run, created, None);
            }
            "expose" => {
                let mut added = vec![];
                for a in &ins.args {
                    for w in self.words(run, a, line)? {
                        for p in parse_port_spec(&w)
                            .map_err(|e| self.err(ErrorKind::Semantic, line, e))?
                        {
                            if !run.config.exposed_ports.contains(&p) {
                                run.config.exposed_ports.push(p.clone());
                            }
                            added.push(p);
                        }
                    }
                }
                added.sort();
                added.dedup();
                let m: Vec<String> = added.iter().map(|p| format!("{p}:{{}}")).collect();
                self.push_history(run, format!("EXPOSE map[{}]", m.join(" ")), None);
            }
            "volume" => {
                let mut vols = vec![];
                for a in &ins.args {
                    let v = self.word(run, a, line)?;
                    let v = v.trim().to_string();
                    if v.is_empty() {
                        return Err(self.err(
                            ErrorKind::Semantic,
                            line,
                            "VOLUME specified can not be an empty string",
                        ));
                    }
                    if !run.config.volumes.contains(&v) {
                        run.config.volumes.push(v.clone());
                    }
                    vols.push(v);
                }
                self.push_history(run, format!("VOLUME [{}]", vols.join(" ")), None);
            }
            "user" => {
                let u = self.word(run, ins.args.first().map_or("", String::as_str), line)?;
                run.config.user = u.clone();
                self.push_history(run, format!("USER {u}"), None);
            }
            "stopsignal" => {
                let s = self.word(run, ins.args.first().map_or("", String::as_str), line)?;
                if s.is_empty() {
                    return Err(self.err(
                        ErrorKind::Semantic,
                        line,
                        "STOPSIGNAL requires a signal",
                    ));
                }
                run.config.stop_signal = Some(s.clone());
                self.push_history(run, format!("STOPSIGNAL {s}"), None);
            }
            "maintainer" => {
                let m = ins.args.first().cloned().unwrap_or_default();
                run.config.author = Some(m.clone());
                self.push_history(run, format!("MAINTAINER {m}"), None);
            }
            "shell" => {
                run.config.shell = Some(ins.args.clone());
                self.push_history(run, format!("SHELL [{}]", ins.args.join(" ")), None);
            }
            "onbuild" => {
                let text = ins
                    .original
                    .trim()
                    .get(ins.cmd_original.len()..)
                    .unwrap_or("")
                    .trim()
                    .to_string();
                run.config.on_build.push(text.clone());
                self.push_history(run, format!("ONBUILD {text}"), None);
            }
            "healthcheck" => {
                let h = self.healthcheck(run, ins)?;
                run.config.healthcheck = Some(h);
                self.push_history(run, format!("HEALTHCHECK {}", ins.args.join(" ")), None);
            }
            "from" => {}
            other => {
                return Err(self.err(
                    ErrorKind::Semantic,
                    line,
                    format!("unknown instruction: {}", other.to_uppercase()),
                ))
            }
        }
        Ok(())
    }

    fn shell(&self, run: &Run) -> Vec<String> {
        run.config
            .shell
            .clone()
            .unwrap_or_else(|| vec!["/bin/sh".into(), "-c".into()])
    }

    fn healthcheck(&self, run: &Run, ins: &Instruction) -> Result<Value, Error> {
        let line = ins.start_line;
        let typ = ins.args.first().cloned().unwrap_or_default();
        if typ.eq_ignore_ascii_case("none") {
            return Ok(json!({"Test": ["NONE"]}));
        }
        let test: Vec<String> = if ins.json {
            std::iter::once("CMD".to_string())
                .chain(ins.args[1..].iter().cloned())
                .collect()
        } else {
            let cmd = ins.args.get(1..).unwrap_or(&[]).join(" ");
            if cmd.is_empty() {
                return Err(self.err(
                    ErrorKind::Syntax,
                    line,
                    "Missing command after HEALTHCHECK CMD",
                ));
            }
            vec!["CMD-SHELL".into(), cmd]
        };
        let _ = run;
        let mut m = Map::new();
        m.insert("Test".into(), json!(test));
        for (flagname, key) in [
            ("interval", "Interval"),
            ("timeout", "Timeout"),
            ("start-period", "StartPeriod"),
            ("start-interval", "StartInterval"),
        ] {
            if let Some(v) = flag(ins, flagname) {
                let d = parse_duration(v).ok_or_else(|| {
                    self.err(
                        ErrorKind::Semantic,
                        line,
                        format!("invalid duration for --{flagname}: {v:?}"),
                    )
                })?;
                if d != 0 && d < 1_000_000 {
                    return Err(self.err(
                        ErrorKind::Semantic,
                        line,
                        format!("interval {flagname:?} cannot be less than 1ms"),
                    ));
                }
                if d != 0 {
                    m.insert(key.into(), json!(d));
                }
            }
        }
        if let Some(v) = flag(ins, "retries") {
            let r: i64 = v.parse().map_err(|_| {
                self.err(
                    ErrorKind::Semantic,
                    line,
                    format!("invalid value for --retries: {v:?}"),
                )
            })?;
            if r < 0 {
                return Err(self.err(ErrorKind::Semantic, line, "--retries cannot be negative"));
            }
            if r != 0 {
                m.insert("Retries".into(), json!(r));
            }
        }
        Ok(Value::Object(m))
    }

    fn run_env(&self, run: &Run) -> Vec<String> {
        let mut env = run.config.env.clone();
        let has = |env: &Vec<String>, k: &str| {
            env.iter()
                .any(|e| e.split_once('=').map(|(n, _)| n) == Some(k))
        };
        for (k, v) in &run.args {
            if !has(&env, k) {
                env.push(format!("{k}={v}"));
            }
        }
        for p in PROXY_ARGS {
            if let Some(v) = self.opts.build_args.get(*p) {
                if !has(&env, p) {
                    env.push(format!("{p}={v}"));
                }
            }
        }
        env
    }

    /// A `--network` / `--security` / `--parents`-style boolean flag value.
    fn bool_flag(&self, ins: &Instruction, name: &str) -> Result<bool, Error> {
        match flag(ins, name) {
            None | Some("false") => Ok(false),
            Some("" | "true") => Ok(true),
            Some(v) => Err(self.err(
                ErrorKind::Semantic,
                ins.start_line,
                format!("invalid value {v:?} for --{name}: expected true or false"),
            )),
        }
    }

    /// The `Local` vertex of a build context (`context` or a named one), reading `include`.
    fn local(&mut self, name: &str, include: Vec<String>, exclude: Vec<String>) -> Input {
        let display = if name == "context" {
            "[internal] load build context".to_string()
        } else {
            format!("[context {name}] load build context {name}")
        };
        let st = self.def.add(
            Op::Local {
                name: name.into(),
                include,
                exclude,
            },
            VertexMeta {
                name: display,
                location: None,
                ignore_cache: self.opts.no_cache,
            },
        );
        if name == "context" {
            self.context = Some(st.clone());
        }
        st
    }

    /// A `--build-context NAME=…`: its filesystem (a `Local` for a directory, or the image)
    /// and, for an image, what a `FROM` of it inherits.
    #[allow(clippy::type_complexity)]
    fn named_context(
        &mut self,
        name: &str,
        line: u32,
    ) -> Result<Option<(Input, Option<(ImageConfiguration, Vec<String>)>)>, Error> {
        let Some(nc) = self.opts.named_contexts.get(name).cloned() else {
            return Ok(None);
        };
        Ok(Some(match nc {
            NamedContext::Dir(_) => (self.local(name, vec![], vec![]), None),
            NamedContext::Image(r) => {
                let (st, cfg, onbuild) =
                    self.resolve_image(&r, line, format!("[context {name}] FROM {r}"))?;
                (st, Some((cfg, onbuild)))
            }
        }))
    }

    /// What `--from=NAME` (COPY) or `from=NAME` (RUN --mount) names: a named build context,
    /// an earlier stage (by name or index), or an image.
    fn source_named(&mut self, run: &Run, f: &str, line: u32, what: &str) -> Result<Input, Error> {
        if let Some((st, _)) = self.named_context(f, line)? {
            return Ok(st);
        }
        if let Ok(n) = f.parse::<usize>() {
            if n >= run.stage {
                return Err(self.err(
                    ErrorKind::Semantic,
                    line,
                    format!("invalid {what}{n}: stage index {n} is out of range (only {} stage(s) defined before this one)", run.stage),
                ));
            }
        }
        if let Some(j) = self.find_stage(f, run.stage) {
            return Ok(self.convert_stage(j)?.state);
        }
        if self
            .stages
            .iter()
            .any(|s| s.name.as_deref().is_some_and(|n| n.eq_ignore_ascii_case(f)))
        {
            return Err(self.err(
                ErrorKind::Semantic,
                line,
                format!("{what}{f} names a stage defined later"),
            ));
        }
        if f.is_empty()
            || f.chars()
                .any(|c| c.is_ascii_uppercase() || c.is_whitespace())
        {
            let mut e = self.err(
                ErrorKind::Semantic,
                line,
                format!("{what}{f}: no stage with that name, and not a valid image reference (repository name must be lowercase)"),
            );
            e.hint = self.stage_hint(f, run.stage);
            return Err(e);
        }
        let label = self.stage_label(run.stage);
        match self.resolve_image(
            f,
            line,
            format!("[{}{}/{}] FROM {}", label, run.step, run.total, f),
        ) {
            Ok((st, _, _)) => Ok(st),
            Err(mut e) => {
                e.hint = e.hint.or_else(|| self.stage_hint(f, run.stage));
                Err(e)
            }
        }
    }

    /// "did you mean STAGE?" for a misspelt stage name.
    fn stage_hint(&self, name: &str, before: usize) -> Option<String> {
        let names: Vec<String> = self.stages[..before.min(self.stages.len())]
            .iter()
            .filter_map(|s| s.name.clone())
            .chain(self.opts.named_contexts.keys().cloned())
            .collect();
        crate::suggest(name, &names).map(|s| format!("did you mean stage {s:?}?"))
    }

    fn run_mount(&mut self, run: &Run, value: &str, line: u32) -> Result<ExecMount, Error> {
        let spec = {
            let env = self.expand_env(run);
            let lex = self.lexer();
            let expand = |w: &str| lex.process_word(w, &env);
            mounts::parse_mount(value, &expand)
                .map_err(|e| self.err(ErrorKind::Semantic, line, format!("--mount={value}: {e}")))?
        };
        let wd = run.config.working_dir.clone();
        let abs = |p: &str| {
            let j = join_path(&wd, p);
            if j.len() > 1 {
                j.trim_end_matches('/').to_string()
            } else {
                j
            }
        };
        let src_path = join_path("/", spec.source.as_deref().unwrap_or("/"));
        let src_path = if src_path.len() > 1 {
            src_path.trim_end_matches('/').to_string()
        } else {
            src_path
        };
        let from = match &spec.from {
            Some(f) => Some(self.source_named(run, f, line, "--mount from=")?),
            None => None,
        };
        let (target, kind) = match spec.kind.as_str() {
            "bind" => {
                let source = if let Some(s) = from {
                    s
                } else {
                    let rel = src_path.trim_start_matches('/').to_string();
                    let include = if rel.is_empty() || rel.contains("**") {
                        vec![]
                    } else {
                        vec![rel]
                    };
                    let ex = self.opts.excludes.clone();
                    self.local("context", include, ex)
                };
                (
                    abs(spec.target.as_deref().unwrap_or_default()),
                    MountKind::Bind {
                        source,
                        path: src_path,
                        readwrite: !spec.readonly,
                    },
                )
            }
            "cache" => {
                let target = abs(spec.target.as_deref().unwrap_or_default());
                (
                    target.clone(),
                    MountKind::Cache {
                        id: spec.id.clone().unwrap_or(target),
                        sharing: spec.sharing,
                        from,
                        path: src_path,
                        mode: spec.mode.unwrap_or(0o755),
                        uid: spec.uid.unwrap_or(0),
                        gid: spec.gid.unwrap_or(0),
                        readonly: spec.readonly,
                    },
                )
            }
            "tmpfs" => (
                abs(spec.target.as_deref().unwrap_or_default()),
                MountKind::Tmpfs { size: spec.size },
            ),
            _ => {
                // secret
                let target = spec.target.as_deref().filter(|t| !t.is_empty()).map(&abs);
                let id = match (&spec.id, &target) {
                    (Some(id), _) if !id.is_empty() => id.clone(),
                    (_, Some(t)) => t.rsplit('/').next().unwrap_or_default().to_string(),
                    _ => {
                        return Err(self.err(
                            ErrorKind::Semantic,
                            line,
                            "invalid secret mount: one of id, target required",
                        ))
                    }
                };
                (
                    target.unwrap_or_else(|| format!("/run/secrets/{id}")),
                    MountKind::Secret {
                        id,
                        required: spec.required,
                        mode: spec.mode.unwrap_or(0o400),
                        uid: spec.uid.unwrap_or(0),
                        gid: spec.gid.unwrap_or(0),
                    },
                )
            }
        };
        Ok(ExecMount { target, kind })
    }

    fn dispatch_run(&mut self, run: &mut Run, ins: &Instruction) -> Result<(), Error> {
        let line = ins.start_line;
        let security = match flag(ins, "security") {
            None | Some("sandbox") => Security::Sandbox,
            Some("insecure") => Security::Insecure,
            Some(v) => {
                return Err(self.err(
                    ErrorKind::Semantic,
                    line,
                    format!(
                    "security mode {v:?} is not valid for RUN --security (use sandbox or insecure)"
                ),
                ))
            }
        };
        let network = match flag(ins, "network") {
            None => self.opts.network,
            Some("default") => self.opts.network,
            Some("none") => kiln_opgraph::NetworkMode::None,
            Some("host") => kiln_opgraph::NetworkMode::Host,
            Some(v) => {
                let mut e = self.err(
                    ErrorKind::Semantic,
                    line,
                    format!("unsupported network mode {v:?} for RUN --network (use default, none or host)"),
                );
                e.hint = crate::suggest(v, &["default", "none", "host"])
                    .map(|s| format!("did you mean --network={s}?"));
                return Err(e);
            }
        };
        let mut mounts = vec![];
        for f in &ins.flags {
            let Some(rest) = f.strip_prefix("--") else {
                continue;
            };
            if rest == "mount" {
                return Err(self.err(
                    ErrorKind::Semantic,
                    line,
                    "--mount needs a value (e.g. --mount=type=cache,target=/root/.cache)",
                ));
            }
            if let Some(v) = rest.strip_prefix("mount=") {
                let m = self.run_mount(run, v, line)?;
                if mounts.iter().any(|o: &ExecMount| o.target == m.target) {
                    return Err(self.err(
                        ErrorKind::Semantic,
                        line,
                        format!("two RUN --mount with the same target {}", m.target),
                    ));
                }
                mounts.push(m);
            }
        }
        let args: Vec<String> = if ins.json {
            ins.args.clone()
        } else if let Some(h) = lone_heredoc(ins) {
            let body = if h.chomp {
                chomp_heredoc_content(&h.content)
            } else {
                h.content.clone()
            };
            if body.starts_with("#!") {
                // As BuildKit does: the body becomes an executable file on a read-only
                // mount at /dev/pipes/, run directly so its shebang picks the interpreter.
                let name = if h.name.contains('/') || h.name.is_empty() {
                    "script".to_string()
                } else {
                    h.name.clone()
                };
                let scratch = self.def.add(Op::Scratch, VertexMeta::default());
                let file = self.def.add(
                    Op::File(FileOp {
                        base: scratch,
                        actions: vec![FileAction::Mkfile {
                            path: format!("/{name}"),
                            data: body,
                            mode: 0o755,
                            chown: None,
                        }],
                    }),
                    VertexMeta {
                        name: "[internal] preparing inline document".into(),
                        location: None,
                        ignore_cache: self.opts.no_cache,
                    },
                );
                mounts.push(ExecMount {
                    target: "/dev/pipes".into(),
                    kind: MountKind::Bind {
                        source: file,
                        path: "/".into(),
                        readwrite: false,
                    },
                });
                vec![format!("/dev/pipes/{name}")]
            } else {
                let mut s = self.shell(run);
                s.push(body);
                s
            }
        } else {
            let cmdline = ins.args.join(" ");
            let script = if ins.heredocs.is_empty() {
                cmdline
            } else {
                heredoc_script(&cmdline, ins)
            };
            let mut s = self.shell(run);
            s.push(script);
            s
        };
        let mut created = String::from("RUN ");
        if !run.args.is_empty() {
            let a: Vec<String> = run.args.iter().map(|(k, v)| format!("{k}={v}")).collect();
            created.push_str(&format!("|{} {} ", a.len(), a.join(" ")));
        }
        created.push_str(&args.join(" "));
        created.push_str(" # buildkit");
        let cwd = if run.config.working_dir.is_empty() {
            "/".to_string()
        } else {
            run.config.working_dir.clone()
        };
        let name = self.step_name(run, ins);
        let meta = self.meta(name, (ins.start_line, ins.end_line));
        let st = self.def.add(
            Op::Exec(ExecOp {
                rootfs: run.state.clone(),
                args,
                env: self.run_env(run),
                cwd,
                user: run.config.user.clone(),
                network,
                mounts,
                security,
            }),
            meta,
        );
        run.state = st.clone();
        self.push_history(run, created, Some(&st));
        Ok(())
    }

    fn dispatch_copy(&mut self, run: &mut Run, ins: &Instruction) -> Result<(), Error> {
        let line = ins.start_line;
        let up = ins.cmd.to_uppercase();
        let is_add = ins.cmd == "add";
        if flag(ins, "keep-git-dir").is_some() {
            return Err(self.err(
                ErrorKind::Semantic,
                line,
                "ADD --keep-git-dir: git sources are not supported yet",
            ));
        }
        let parents = self.bool_flag(ins, "parents")?;
        // --link only changes how BuildKit produces the layer (independent of the layers
        // below); kiln's file ops already give the same result, so it is accepted as is.
        let _link = self.bool_flag(ins, "link")?;
        let mut exclude = vec![];
        for f in &ins.flags {
            if f == "--exclude" {
                return Err(self.err(
                    ErrorKind::Semantic,
                    line,
                    format!("{up} --exclude needs a pattern (--exclude=*.md)"),
                ));
            }
            if let Some(p) = f.strip_prefix("--exclude=") {
                let p = self.word(run, p, line)?;
                if p.is_empty() {
                    return Err(self.err(
                        ErrorKind::Semantic,
                        line,
                        format!("{up} --exclude needs a non-empty pattern"),
                    ));
                }
                exclude.push(p);
            }
        }
        // Sources: heredocs (`<<EOF` words), URLs (ADD), and paths.
        let mut heredocs = vec![];
        let mut paths = vec![];
        let mut raw_paths = vec![];
        let mut urls = vec![];
        let mut next_doc = ins.heredocs.iter();
        let Some((dest_word, src_words)) = ins.args.split_last() else {
            return Err(self.err(
                ErrorKind::Syntax,
                line,
                format!("{up} requires at least two arguments"),
            ));
        };
        for a in src_words {
            if parser::parse_heredoc(a).ok().flatten().is_some() {
                if let Some(h) = next_doc.next() {
                    heredocs.push(h.clone());
                    continue;
                }
            }
            let w = self.word(run, a, line)?;
            if w.starts_with("http://") || w.starts_with("https://") {
                urls.push(w);
            } else if w.starts_with("git@") || (w.contains("://") && w.ends_with(".git")) {
                return Err(self.err(
                    ErrorKind::Semantic,
                    line,
                    format!("{up} {w}: git sources are not supported yet"),
                ));
            } else {
                raw_paths.push(a.clone());
                paths.push(w);
            }
        }
        let dest_raw = self.word(run, dest_word, line)?;
        let n_sources = heredocs.len() + paths.len() + urls.len();
        if n_sources == 0 {
            return Err(self.err(
                ErrorKind::Syntax,
                line,
                format!("{up} requires at least two arguments"),
            ));
        }
        if !is_add && !urls.is_empty() {
            return Err(self.err(
                ErrorKind::Semantic,
                line,
                "source can't be a URL for COPY (use ADD, or RUN wget/curl)",
            ));
        }
        let checksum = match flag(ins, "checksum") {
            Some(c) => {
                let c = self.word(run, c, line)?;
                if urls.is_empty() || !paths.is_empty() || !heredocs.is_empty() {
                    return Err(self.err(
                        ErrorKind::Semantic,
                        line,
                        "checksum can't be specified for non-HTTP(S) sources",
                    ));
                }
                let ok = c
                    .strip_prefix("sha256:")
                    .is_some_and(|h| h.len() == 64 && h.chars().all(|x| x.is_ascii_hexdigit()));
                if !ok {
                    return Err(self.err(
                        ErrorKind::Semantic,
                        line,
                        format!("invalid checksum {c:?}: expected sha256:<64 hex digits>"),
                    ));
                }
                Some(c.to_ascii_lowercase())
            }
            None => None,
        };
        let chown = match flag(ins, "chown") {
            Some(c) => {
                let c = self.word(run, c, line)?;
                if c.is_empty() {
                    None
                } else {
                    Some(match c.split_once(':') {
                        Some((u, g)) => Chown {
                            user: u.to_string(),
                            group: Some(g.to_string()),
                        },
                        None => Chown {
                            user: c.clone(),
                            group: None,
                        },
                    })
                }
            }
            None => None,
        };
        let chmod = match flag(ins, "chmod") {
            Some(c) => {
                let c = self.word(run, c, line)?;
                match u32::from_str_radix(&c, 8) {
                    Ok(m) if m <= 0o7777 && !c.is_empty() => Some(m),
                    _ => {
                        return Err(self.err(
                            ErrorKind::Semantic,
                            line,
                            format!("invalid chmod parameter: '{c}'. it should be octal string and between 0 and 07777"),
                        ))
                    }
                }
            }
            None => None,
        };
        let mut dest = join_path(&run.config.working_dir, &dest_raw);
        let dir_like = dest_raw.ends_with('/') || dest_raw == "." || dest_raw.ends_with("/.");
        if (dir_like || n_sources > 1 || parents) && !dest.ends_with('/') {
            dest.push('/');
        }
        let from = match flag(ins, "from") {
            Some(f) => Some(self.word(run, f, line)?),
            None => None,
        };
        let mut actions = vec![];
        for h in &heredocs {
            let mut data = if h.chomp {
                chomp_heredoc_content(&h.content)
            } else {
                h.content.clone()
            };
            if h.expand {
                let env = self.expand_env(run);
                let lex = Lexer {
                    raw_quotes: true,
                    raw_escapes: true,
                    ..self.lexer()
                };
                data = lex
                    .process_word(&data, &env)
                    .map_err(|e| self.err(ErrorKind::Syntax, line, e))?;
            }
            let path = if dest.ends_with('/') {
                format!("{dest}{}", h.name)
            } else {
                dest.clone()
            };
            actions.push(FileAction::Mkfile {
                path,
                data,
                mode: chmod.unwrap_or(0o644),
                chown: chown.clone(),
            });
        }
        for u in &urls {
            let filename = url_filename(u);
            let src = self.def.add(
                Op::Http {
                    url: u.clone(),
                    checksum: checksum.clone(),
                    filename: filename.clone(),
                },
                VertexMeta {
                    name: format!(
                        "[{}{}/{}] ADD {}",
                        self.stage_label(run.stage),
                        run.step,
                        run.total,
                        u
                    ),
                    location: None,
                    ignore_cache: self.opts.no_cache,
                },
            );
            actions.push(FileAction::Copy(CopyAction {
                source: src,
                src: vec![filename],
                dest: dest.clone(),
                chown: chown.clone(),
                chmod,
                extract_archives: false,
                parents: false,
                exclude: exclude.clone(),
            }));
        }
        if !paths.is_empty() {
            let norm_src = |s: &str| -> String {
                let t = s.trim_start_matches('/');
                let t = t.strip_prefix("./").unwrap_or(t);
                if t.is_empty() {
                    ".".to_string()
                } else {
                    t.to_string()
                }
            };
            let src: Vec<String> = paths.iter().map(|s| norm_src(s)).collect();
            let source = if let Some(f) = &from {
                self.source_named(run, f, line, "--from=")?
            } else {
                let include = if src
                    .iter()
                    .any(|s| s == "." || s.contains("**") || s.contains("/./"))
                {
                    vec![]
                } else {
                    src.clone()
                };
                let ex = self.opts.excludes.clone();
                self.local("context", include, ex)
            };
            actions.push(FileAction::Copy(CopyAction {
                source,
                src,
                dest: dest.clone(),
                chown: chown.clone(),
                chmod,
                extract_archives: is_add,
                parents,
                exclude: exclude.clone(),
            }));
        }
        let mut created = format!("{up} ");
        if let Some(f) = &from {
            created.push_str(&format!("--from={f} "));
        }
        if let Some(c) = flag(ins, "chown") {
            created.push_str(&format!("--chown={c} "));
        }
        if let Some(c) = flag(ins, "chmod") {
            created.push_str(&format!("--chmod={c} "));
        }
        if parents {
            created.push_str("--parents ");
        }
        for e in &exclude {
            created.push_str(&format!("--exclude={e} "));
        }
        let mut shown: Vec<String> = heredocs.iter().map(|h| format!("<<{}", h.name)).collect();
        shown.extend(urls.iter().cloned());
        shown.extend(paths.iter().cloned());
        let _ = raw_paths;
        created.push_str(&shown.join(" "));
        created.push(' ');
        created.push_str(&dest_raw);
        created.push_str(" # buildkit");
        let name = self.step_name(run, ins);
        let meta = self.meta(name, (ins.start_line, ins.end_line));
        let st = self.def.add(
            Op::File(FileOp {
                base: run.state.clone(),
                actions,
            }),
            meta,
        );
        run.state = st.clone();
        self.push_history(run, created, Some(&st));
        Ok(())
    }
}

/// The heredoc of `RUN <<EOF` alone on its line (no command around it).
fn lone_heredoc(ins: &Instruction) -> Option<&parser::Heredoc> {
    match (ins.heredocs.as_slice(), ins.args.as_slice()) {
        ([h], [only]) if parser::parse_heredoc(only).ok().flatten().is_some() => Some(h),
        _ => None,
    }
}

/// The file name `ADD URL` gives: the URL path's last segment, or `__unnamed__` (BuildKit).
pub(crate) fn url_filename(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let path = rest
        .split(['?', '#'])
        .next()
        .unwrap_or("")
        .split_once('/')
        .map_or("", |(_, p)| p);
    match path.trim_end_matches('/').rsplit('/').next() {
        Some(b) if !b.is_empty() && b != "." && b != ".." => b.to_string(),
        _ => "__unnamed__".to_string(),
    }
}

fn go_quote_if_needed(s: &str) -> String {
    if s.is_empty() || s.contains(|c: char| c.is_whitespace() || c == '"') {
        parser::go_quote(s)
    } else {
        s.to_string()
    }
}

/// The script a heredoc RUN runs when the heredoc is not alone (a lone one is handled by
/// `dispatch_run`): the command line with the heredoc bodies appended, for the shell to
/// interpret.
fn heredoc_script(cmdline: &str, ins: &Instruction) -> String {
    let body = |h: &parser::Heredoc| {
        if h.chomp {
            chomp_heredoc_content(&h.content)
        } else {
            h.content.clone()
        }
    };
    let mut s = cmdline.to_string();
    s.push('\n');
    for h in &ins.heredocs {
        s.push_str(&body(h));
        s.push_str(&h.name);
        s.push('\n');
    }
    s
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

/// Parses a Go duration (`30s`, `1m30s`, `500ms`) into nanoseconds.
pub fn parse_duration(s: &str) -> Option<i64> {
    if s == "0" {
        return Some(0);
    }
    let mut rest = s;
    let mut total: f64 = 0.0;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let n = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if n == 0 {
            return None;
        }
        let num: f64 = rest[..n].parse().ok()?;
        rest = &rest[n..];
        let u = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let mult = match &rest[..u] {
            "ns" => 1.0,
            "us" | "µs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return None,
        };
        rest = &rest[u..];
        total += num * mult;
    }
    if total > i64::MAX as f64 {
        return None;
    }
    Some(total as i64)
}

/// `80`, `80/tcp`, `53/udp`, `8000-8002` → `80/tcp` keys.
pub fn parse_port_spec(s: &str) -> Result<Vec<String>, String> {
    let (ports, proto) = match s.split_once('/') {
        Some((p, proto)) => (p, proto.to_lowercase()),
        None => (s, "tcp".to_string()),
    };
    if !matches!(proto.as_str(), "tcp" | "udp" | "sctp") {
        return Err(format!("invalid proto: {proto}"));
    }
    // An `ip:host:container` form keeps only the container port.
    let ports = ports.rsplit(':').next().unwrap_or(ports);
    let (lo, hi) = match ports.split_once('-') {
        Some((a, b)) => (a, b),
        None => (ports, ports),
    };
    let lo: u32 = lo
        .parse()
        .map_err(|_| format!("invalid containerPort: {ports}"))?;
    let hi: u32 = hi
        .parse()
        .map_err(|_| format!("invalid containerPort: {ports}"))?;
    if hi < lo || hi > 65535 {
        return Err(format!("invalid containerPort: {ports}"));
    }
    Ok((lo..=hi).map(|p| format!("{p}/{proto}")).collect())
}

/// Entry point behind [`crate::build`].
pub(crate) fn build(
    dockerfile: &str,
    opts: &BuildOptions,
    resolver: &dyn ImageResolver,
) -> Result<Build, Error> {
    let file = opts.file_name.as_str();
    let src_lines: Vec<&str> = dockerfile.lines().collect();
    let parsed = parser::parse(dockerfile).map_err(|e| {
        let mut er = err_at(ErrorKind::Syntax, file, e.line, e.message);
        if e.line > 0 {
            er.source_line = src_lines
                .get(e.line as usize - 1)
                .map(std::string::ToString::to_string);
        }
        er
    })?;
    let mut conv = Conv {
        opts,
        resolver,
        def: Definition::new(),
        stages: vec![],
        results: vec![],
        busy: vec![],
        global_args: vec![],
        src_lines,
        escape: parsed.escape,
        target: 0,
        context: None,
        depth: 0,
        deferred: None,
    };
    for ins in &parsed.instructions {
        conv.validate(ins, false)?;
    }
    // Split into the global section and stages.
    for ins in parsed.instructions {
        if ins.cmd == "from" {
            let name = if ins.args.len() == 3 {
                Some(ins.args[2].clone())
            } else {
                None
            };
            if let Some(n) = &name {
                let valid = n.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
                    && n.chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
                if !valid {
                    return Err(conv.err(ErrorKind::Semantic, ins.start_line, format!("invalid name for build stage: {n:?}, name can't start with a number or contain symbols")));
                }
                if conv
                    .stages
                    .iter()
                    .any(|s| s.name.as_deref().is_some_and(|m| m.eq_ignore_ascii_case(n)))
                {
                    return Err(conv.err(
                        ErrorKind::Semantic,
                        ins.start_line,
                        format!("duplicate stage name {n:?}"),
                    ));
                }
            }
            conv.stages.push(Stage {
                name: name.map(|n| n.to_lowercase()),
                from: ins,
                instructions: vec![],
            });
        } else if let Some(s) = conv.stages.last_mut() {
            s.instructions.push(ins);
        } else if ins.cmd == "arg" {
            for w in &ins.args {
                let (name, default) = match w.split_once('=') {
                    Some((n, d)) => (n.to_string(), Some(conv.expand_global(d, ins.start_line)?)),
                    None => (w.clone(), None),
                };
                let v = opts.build_args.get(&name).cloned().or(default);
                conv.global_args.push((name, v));
            }
        } else {
            return Err(conv.err(
                ErrorKind::Semantic,
                ins.start_line,
                format!(
                    "{} before the first FROM: only ARG may come first",
                    ins.cmd.to_uppercase()
                ),
            ));
        }
    }
    if conv.stages.is_empty() {
        return Err(err_at(
            ErrorKind::Semantic,
            file,
            0,
            "no build stage in the Dockerfile (missing FROM)",
        ));
    }
    let target = match &opts.target {
        Some(t) => {
            if let Some(i) = conv
                .stages
                .iter()
                .position(|s| s.name.as_deref().is_some_and(|n| n.eq_ignore_ascii_case(t)))
            {
                i
            } else {
                let names: Vec<String> =
                    conv.stages.iter().filter_map(|s| s.name.clone()).collect();
                return Err(err_at(
                    ErrorKind::Semantic,
                    file,
                    0,
                    format!(
                        "target stage {:?} could not be found (stages: {})",
                        t,
                        names.join(", ")
                    ),
                ));
            }
        }
        None => conv.stages.len() - 1,
    };
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
    let mut cfg = ImgConfig::from_oci(config);
    let opts = BuildOptions {
        file_name: "change".into(),
        ..Default::default()
    };
    struct NoResolve;
    impl ImageResolver for NoResolve {
        fn resolve(&self, r: &str) -> Result<crate::ResolvedImage, String> {
            Err(format!("cannot resolve {r} in a change"))
        }
    }
    let resolver = NoResolve;
    for (i, change) in changes.iter().enumerate() {
        let line = i as u32 + 1;
        let parsed = parser::parse(change)
            .map_err(|e| err_at(ErrorKind::Syntax, "change", line, e.message))?;
        let mut conv = Conv {
            opts: &opts,
            resolver: &resolver,
            def: Definition::new(),
            stages: vec![],
            results: vec![],
            busy: vec![],
            global_args: vec![],
            src_lines: vec![change.as_str()],
            escape: parsed.escape,
            target: 0,
            context: None,
            depth: 0,
            deferred: None,
        };
        for mut ins in parsed.instructions {
            ins.start_line = line;
            ins.end_line = line;
            if !matches!(
                ins.cmd.as_str(),
                "cmd"
                    | "entrypoint"
                    | "env"
                    | "expose"
                    | "label"
                    | "onbuild"
                    | "user"
                    | "volume"
                    | "workdir"
                    | "stopsignal"
            ) {
                return Err(err_at(
                    ErrorKind::Semantic,
                    "change",
                    line,
                    format!(
                        "{} is not a valid change command",
                        ins.cmd_original.to_uppercase()
                    ),
                ));
            }
            conv.validate(&ins, false)?;
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
            if ins.cmd == "workdir" {
                let p = conv.word(&run, ins.args.first().map_or("", String::as_str), line)?;
                run.config.working_dir = join_path(&run.config.working_dir, &p);
            } else {
                conv.dispatch(&mut run, &ins, true)?;
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
mod tests {
    use super::*;

    #[test]
    fn paths_ports_durations() {
        assert_eq!(join_path("/a/b", "../c/"), "/a/c/");
        assert_eq!(join_path("", "x"), "/x");
        assert_eq!(join_path("/w", "/abs"), "/abs");
        assert_eq!(
            parse_port_spec("8000-8002").unwrap(),
            ["8000/tcp", "8001/tcp", "8002/tcp"]
        );
        assert_eq!(parse_port_spec("53/udp").unwrap(), ["53/udp"]);
        assert!(parse_port_spec("x").is_err());
        assert_eq!(parse_duration("1m30s"), Some(90_000_000_000));
        assert_eq!(parse_duration("500ms"), Some(500_000_000));
        assert_eq!(parse_duration("x"), None);
        assert_eq!(edit_distance("form", "from"), 1);
    }
}
