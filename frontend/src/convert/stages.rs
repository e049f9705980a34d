//! Stages: splitting the instructions at each FROM, ARG scoping (global ARGs before the
//! first FROM, stage ARGs after), converting a stage's base (scratch, an earlier stage, a
//! named build context or an image) and what `COPY --from` / `RUN --mount=from=` name.

use super::config::ImgConfig;
use super::{Conv, ConvertError, Pos, Run, DEFAULT_PATH};
use crate::instructions::{ArgInstr, FromInstr, Instruction, Located, Span};
use crate::{Error, NamedContext};
use kiln_oci::spec::ImageConfiguration;
use kiln_oci::PendingHistory;
use kiln_opgraph::{CopyAction, FileAction, FileOp, Input, Op, VertexMeta};

pub(super) const PROXY_ARGS: &[&str] = &[
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

fn platform_args() -> Vec<(&'static str, &'static str)> {
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

/// How many stage conversions may run one inside the other (a `FROM` or `COPY --from` of a
/// stage not converted yet converts it on the spot). Deeper than this, the stage that is
/// needed is converted first from the top and the outer one is converted again (see
/// [`Conv::convert_target`]), so chains of any length convert without a deep stack.
pub(super) const MAX_STAGE_RECURSION: usize = 16;

pub(super) struct Stage {
    /// `AS NAME`, lower-cased.
    name: Option<String>,
    from: FromInstr,
    span: Span,
    instructions: Vec<Located>,
}

#[derive(Clone)]
pub(super) struct StageResult {
    pub(super) state: Input,
    pub(super) config: ImgConfig,
    pub(super) base: ImageConfiguration,
    pub(super) history: Vec<PendingHistory>,
}

/// A `--build-context` resolved: its filesystem and, for an image, its config and ONBUILD
/// triggers.
type Named = (Input, Option<(ImageConfiguration, Vec<String>)>);

impl Conv<'_> {
    /// Splits the instructions into the global section (ARGs only) and stages.
    pub(super) fn split_stages(&mut self, typed: Vec<Located>) -> Result<(), Error> {
        for ins in typed {
            match ins.instruction {
                Instruction::From(from) => {
                    if let Some(n) = &from.stage_name {
                        let valid = n.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
                            && n.chars()
                                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
                        if !valid {
                            return Err(self.err(ins.span, ConvertError::StageName(n.clone())));
                        }
                        if self
                            .stages
                            .iter()
                            .any(|s| s.name.as_deref().is_some_and(|m| m.eq_ignore_ascii_case(n)))
                        {
                            return Err(self.err(ins.span, ConvertError::DuplicateStage(n.clone())));
                        }
                    }
                    self.stages.push(Stage {
                        name: from.stage_name.as_ref().map(|n| n.to_lowercase()),
                        from,
                        span: ins.span,
                        instructions: vec![],
                    });
                }
                instruction => {
                    if let Some(s) = self.stages.last_mut() {
                        s.instructions.push(Located { instruction, ..ins });
                    } else if let Instruction::Arg(a) = &instruction {
                        for (name, default) in &a.args {
                            let default = match default {
                                Some(d) => Some(self.expand_global(d, ins.span)?),
                                None => None,
                            };
                            let v = self.opts.build_args.get(name).cloned().or(default);
                            self.global_args.push((name.clone(), v));
                        }
                    } else {
                        return Err(
                            self.err(ins.span, ConvertError::BeforeFrom(instruction.keyword()))
                        );
                    }
                }
            }
        }
        if self.stages.is_empty() {
            return Err(self.err(0, ConvertError::NoStage));
        }
        Ok(())
    }

    /// The stage `--target` names, or the last one.
    pub(super) fn target_stage(&self) -> Result<usize, Error> {
        let Some(t) = &self.opts.target else {
            return Ok(self.stages.len() - 1);
        };
        self.stages
            .iter()
            .position(|s| s.name.as_deref().is_some_and(|n| n.eq_ignore_ascii_case(t)))
            .ok_or_else(|| {
                let names: Vec<String> =
                    self.stages.iter().filter_map(|s| s.name.clone()).collect();
                self.err(
                    0,
                    ConvertError::NoTarget {
                        name: t.clone(),
                        stages: names.join(", "),
                    },
                )
            })
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

    fn expand_global(&self, word: &str, at: impl Into<Pos>) -> Result<String, Error> {
        let lookup = |k: &str| self.global_lookup(k);
        self.lexer()
            .process_word(word, &lookup)
            .map_err(|e| self.err(at, e))
    }

    /// ARG inside a stage: a `--build-arg` wins, then the default, then the global ARG of
    /// that name, then the predefined platform args.
    pub(super) fn arg(&mut self, run: &mut Run, span: Span, a: &ArgInstr) -> Result<(), Error> {
        let mut desc = vec![];
        for (name, default) in &a.args {
            let default = match default {
                Some(d) => Some(self.word(run, d, span)?),
                None => None,
            };
            let value = if let Some(v) = self.opts.build_args.get(name) {
                Some(v.clone())
            } else if default.is_some() {
                default
            } else if let Some((_, v)) = self.global_args.iter().rev().find(|(n, _)| n == name) {
                v.clone()
            } else {
                platform_args()
                    .into_iter()
                    .find(|(n, _)| n == name)
                    .map(|(_, v)| v.to_string())
            };
            run.args.retain(|(n, _)| n != name);
            if let Some(v) = value {
                desc.push(format!("{name}={v}"));
                run.args.push((name.clone(), v));
            } else {
                desc.push(name.clone());
            }
        }
        Self::push_history(run, format!("ARG {}", desc.join(" ")), None);
        Ok(())
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

    pub(super) fn stage_label(&self, stage: usize) -> String {
        match &self.stages[stage].name {
            Some(n) => format!("{n} "),
            None if stage == self.target => String::new(),
            None => format!("stage-{stage} "),
        }
    }

    fn resolve_image(
        &mut self,
        reference: &str,
        at: impl Into<Pos>,
        name: String,
    ) -> Result<(Input, ImageConfiguration, Vec<String>), Error> {
        let r = self
            .resolver
            .resolve(reference)
            .map_err(|e| self.err(at, e))?;
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
        let span = self.stages[idx].span;
        if self.busy[idx] {
            return Err(self.err(span, ConvertError::CircularStages));
        }
        if self.depth >= MAX_STAGE_RECURSION {
            self.deferred = Some(idx);
            return Err(self.err(span, ConvertError::Deferred));
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
    pub(super) fn convert_target(&mut self, target: usize) -> Result<StageResult, Error> {
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

    /// The image config a stage starts from: the base image's, with BuildKit's default
    /// PATH when it has none.
    fn image_base(cfg: &ImageConfiguration, onbuild: Vec<String>) -> ImgConfig {
        let mut ic = ImgConfig::from_oci(cfg);
        ic.on_build = onbuild;
        if ic.get_env("PATH").is_none() {
            ic.env.insert(0, DEFAULT_PATH.to_string());
        }
        ic
    }

    fn scratch_config() -> ImgConfig {
        ImgConfig {
            env: vec![DEFAULT_PATH.to_string()],
            working_dir: "/".into(),
            ..Default::default()
        }
    }

    fn convert_stage_inner(&mut self, idx: usize) -> Result<StageResult, Error> {
        let from = self.stages[idx].from.clone();
        let span = self.stages[idx].span;
        let total = self.stages[idx].instructions.len() + 1;
        let base_name = self.expand_global(&from.base, span)?;
        if let Some(f) = &from.platform {
            let p = self.expand_global(&f.value, f.at)?;
            if !p.is_empty() && p != "linux/amd64" && p != "linux" {
                return Err(self.err(f.at, ConvertError::Platform(p)));
            }
        }
        let label = self.stage_label(idx);
        let named = if base_name.eq_ignore_ascii_case("scratch") {
            None
        } else {
            self.named_context(&base_name, span.into())?
        };
        let (state, mut config, base, history) = if let Some((st, img)) = named {
            if let Some((cfg, onbuild)) = img {
                let ic = Self::image_base(&cfg, onbuild);
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
                (
                    fs,
                    Self::scratch_config(),
                    ImageConfiguration::default(),
                    vec![],
                )
            }
        } else if base_name.eq_ignore_ascii_case("scratch") {
            let st = self.def.add(Op::Scratch, VertexMeta::default());
            (
                st,
                Self::scratch_config(),
                ImageConfiguration::default(),
                vec![],
            )
        } else if let Some(j) = self.find_stage(&base_name, idx) {
            let r = self.convert_stage(j)?;
            (r.state, r.config, r.base, r.history)
        } else {
            if base_name.is_empty() {
                return Err(self.err(span, ConvertError::BlankBase));
            }
            let (st, cfg, onbuild) = self
                .resolve_image(
                    &base_name,
                    span,
                    format!("[{label}1/{total}] FROM {base_name}"),
                )
                .map_err(|mut e| {
                    e.hint = e.hint.or_else(|| self.stage_hint(&base_name, idx));
                    e
                })?;
            let ic = Self::image_base(&cfg, onbuild);
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
            // The base image's ONBUILD triggers run first, placed at the FROM.
            let parsed = crate::parser::parse(&t).map_err(|e| self.err(span, e))?;
            for mut node in parsed.instructions {
                node.place_at(span.start_line, span.end_line, span.column);
                let ins = self.typed(&node, true)?;
                self.dispatch(&mut run, &ins)?;
            }
        }
        let instructions = self.stages[idx].instructions.clone();
        for ins in &instructions {
            run.step += 1;
            self.dispatch(&mut run, ins)?;
        }
        Ok(StageResult {
            state: run.state,
            config: run.config,
            base,
            history: run.history,
        })
    }

    /// The `Local` vertex of a build context (`context` or a named one), reading `include`.
    pub(super) fn local(
        &mut self,
        name: &str,
        include: Vec<String>,
        exclude: Vec<String>,
    ) -> Input {
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
    fn named_context(&mut self, name: &str, at: Pos) -> Result<Option<Named>, Error> {
        let Some(nc) = self.opts.named_contexts.get(name).cloned() else {
            return Ok(None);
        };
        Ok(Some(match nc {
            NamedContext::Dir(_) => (self.local(name, vec![], vec![]), None),
            NamedContext::Image(r) => {
                let (st, cfg, onbuild) =
                    self.resolve_image(&r, at, format!("[context {name}] FROM {r}"))?;
                (st, Some((cfg, onbuild)))
            }
        }))
    }

    /// What `--from=NAME` (COPY) or `from=NAME` (RUN --mount) names: a named build context,
    /// an earlier stage (by name or index), or an image.
    pub(super) fn source_named(
        &mut self,
        run: &Run,
        f: &str,
        at: impl Into<Pos>,
        what: &'static str,
    ) -> Result<Input, Error> {
        let at = at.into();
        if let Some((st, _)) = self.named_context(f, at)? {
            return Ok(st);
        }
        if let Ok(index) = f.parse::<usize>() {
            if index >= run.stage {
                return Err(self.err(
                    at,
                    ConvertError::StageIndex {
                        what,
                        index,
                        before: run.stage,
                    },
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
            let name = f.to_string();
            return Err(self.err(at, ConvertError::StageLater { what, name }));
        }
        if f.is_empty()
            || f.chars()
                .any(|c| c.is_ascii_uppercase() || c.is_whitespace())
        {
            let name = f.to_string();
            let mut e = self.err(at, ConvertError::NoSuchSource { what, name });
            e.hint = self.stage_hint(f, run.stage);
            return Err(e);
        }
        let label = self.stage_label(run.stage);
        match self.resolve_image(
            f,
            at,
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
}
