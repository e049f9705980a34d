//! RUN: the command (JSON, shell or heredoc forms), its environment, and its flags —
//! `--mount` (bind, cache, tmpfs, secret), `--network` and `--security`.

use super::stages::PROXY_ARGS;
use super::{join_path, Conv, ConvertError, Run};
use crate::instructions::{Located, RunInstr};
use crate::mounts::{self, MountType};
use crate::parser::{self, chomp_heredoc_content, Heredoc, Position};
use crate::Error;
use kiln_opgraph::{ExecMount, ExecOp, FileAction, FileOp, MountKind, Op, VertexMeta};

/// `/a/b/` → `/a/b`, but `/` stays.
fn trim_trailing_slash(p: String) -> String {
    if p.len() > 1 {
        p.trim_end_matches('/').to_string()
    } else {
        p
    }
}

/// A heredoc's body, with `<<-` tabs stripped.
fn heredoc_body(h: &Heredoc) -> String {
    if h.chomp {
        chomp_heredoc_content(&h.content)
    } else {
        h.content.clone()
    }
}

impl Conv<'_> {
    /// The environment of a RUN: the config's, then the stage's ARGs, then the proxy
    /// `--build-arg`s, each only when not set already.
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

    fn run_mount(&mut self, run: &Run, value: &str, at: Position) -> Result<ExecMount, Error> {
        let spec = {
            let env = self.expand_env(run);
            let lex = self.lexer();
            let expand = |w: &str| lex.process_word(w, &env);
            mounts::parse_mount(value, &expand).map_err(|source| {
                self.err(
                    at,
                    ConvertError::Mount {
                        value: value.to_string(),
                        source,
                    },
                )
            })?
        };
        let wd = run.config.working_dir.clone();
        let abs = |p: &str| trim_trailing_slash(join_path(&wd, p));
        let src_path = trim_trailing_slash(join_path("/", spec.source.as_deref().unwrap_or("/")));
        let from = match &spec.from {
            Some(f) => Some(self.source_named(run, f, at, "--mount from=")?),
            None => None,
        };
        let (target, kind) = match spec.kind {
            MountType::Bind => {
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
            MountType::Cache => {
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
            MountType::Tmpfs => (
                abs(spec.target.as_deref().unwrap_or_default()),
                MountKind::Tmpfs { size: spec.size },
            ),
            // `parse_mount` refuses ssh: only secrets are left.
            MountType::Secret | MountType::Ssh => {
                let target = spec.target.as_deref().filter(|t| !t.is_empty()).map(&abs);
                let id = match (&spec.id, &target) {
                    (Some(id), _) if !id.is_empty() => id.clone(),
                    (_, Some(t)) => t.rsplit('/').next().unwrap_or_default().to_string(),
                    _ => return Err(self.err(at, ConvertError::SecretId)),
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

    /// A heredoc alone as the command whose body starts with `#!`: as BuildKit does, the body
    /// becomes an executable file on a read-only mount at /dev/pipes/, run directly so its
    /// shebang picks the interpreter. Returns the command.
    fn shebang_script(&mut self, h: &Heredoc, body: String, mounts: &mut Vec<ExecMount>) -> String {
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
        format!("/dev/pipes/{name}")
    }

    pub(super) fn dispatch_run(
        &mut self,
        run: &mut Run,
        ins: &Located,
        r: &RunInstr,
    ) -> Result<(), Error> {
        let span = ins.span;
        let security = self.checked(&r.security)?;
        let network = self.checked(&r.network)?.unwrap_or(self.opts.network);
        let mut mounts = vec![];
        for m in &r.mounts {
            let f = self.checked(m)?;
            let m = self.run_mount(run, &f.value, f.at)?;
            if mounts.iter().any(|o: &ExecMount| o.target == m.target) {
                return Err(self.err(f.at, ConvertError::SameTarget(m.target)));
            }
            mounts.push(m);
        }
        let c = &r.command;
        let args: Vec<String> = if c.json {
            c.args.clone()
        } else if let Some(h) = lone_heredoc(r) {
            let body = heredoc_body(h);
            if body.starts_with("#!") {
                vec![self.shebang_script(h, body, &mut mounts)]
            } else {
                let mut s = Self::shell(run);
                s.push(body);
                s
            }
        } else {
            let cmdline = c.args.join(" ");
            let script = if r.heredocs.is_empty() {
                cmdline
            } else {
                heredoc_script(&cmdline, &r.heredocs)
            };
            let mut s = Self::shell(run);
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
        let meta = self.meta(name, span);
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
        Self::push_history(run, created, Some(&st));
        Ok(())
    }
}

/// The heredoc of `RUN <<EOF` alone on its line (no command around it).
fn lone_heredoc(r: &RunInstr) -> Option<&Heredoc> {
    match (r.heredocs.as_slice(), r.command.args.as_slice()) {
        ([h], [only]) if parser::parse_heredoc(only).ok().flatten().is_some() => Some(h),
        _ => None,
    }
}

/// The script a heredoc RUN runs when the heredoc is not alone (a lone one is handled by
/// `dispatch_run`): the command line with the heredoc bodies appended, for the shell to
/// interpret.
fn heredoc_script(cmdline: &str, heredocs: &[Heredoc]) -> String {
    let mut s = cmdline.to_string();
    s.push('\n');
    for h in heredocs {
        s.push_str(&heredoc_body(h));
        s.push_str(&h.name);
        s.push('\n');
    }
    s
}
