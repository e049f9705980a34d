//! COPY and ADD: sources (context paths, heredocs, URLs for ADD, `--from` a stage, a named
//! context or an image), the destination, and `--chown`, `--chmod`, `--parents`,
//! `--exclude`, `--checksum`, `--link`.

use super::{join_path, Conv, ConvertError, Run};
use crate::instructions::{CopyInstr, Keyword, Located};
use crate::parser::{self, chomp_heredoc_content};
use crate::shell::Lexer;
use crate::Error;
use kiln_opgraph::{Chown, CopyAction, FileAction, FileOp, Op, VertexMeta};

impl Conv<'_> {
    #[allow(clippy::too_many_lines)] // one instruction's steps, in BuildKit's order
    pub(super) fn dispatch_copy(
        &mut self,
        run: &mut Run,
        ins: &Located,
        c: &CopyInstr,
        keyword: Keyword,
    ) -> Result<(), Error> {
        let span = ins.span;
        let is_add = keyword == Keyword::Add;
        if let Some(at) = c.keep_git_dir {
            return Err(self.err(at, ConvertError::KeepGitDir));
        }
        let parents = self.checked(&c.parents)?;
        // --link only changes how BuildKit produces the layer (independent of the layers
        // below); kiln's file ops already give the same result, so it is accepted as is.
        let _link = self.checked(&c.link)?;
        let mut exclude = vec![];
        for e in &c.excludes {
            let f = self.checked(e)?;
            let p = self.word(run, &f.value, f.at)?;
            if p.is_empty() {
                return Err(self.err(f.at, ConvertError::EmptyExclude(keyword)));
            }
            exclude.push(p);
        }
        // Sources: heredocs (`<<EOF` words), URLs (ADD), and paths.
        let mut heredocs = vec![];
        let mut paths = vec![];
        let mut urls = vec![];
        let mut next_doc = c.heredocs.iter();
        for a in &c.sources {
            if parser::parse_heredoc(a).ok().flatten().is_some() {
                if let Some(h) = next_doc.next() {
                    heredocs.push(h.clone());
                    continue;
                }
            }
            let w = self.word(run, a, span)?;
            if w.starts_with("http://") || w.starts_with("https://") {
                urls.push(w);
            } else if w.starts_with("git@") || (w.contains("://") && w.ends_with(".git")) {
                return Err(self.err(span, ConvertError::GitSource { keyword, url: w }));
            } else {
                paths.push(w);
            }
        }
        let dest_raw = self.word(run, &c.dest, span)?;
        let n_sources = heredocs.len() + paths.len() + urls.len();
        if n_sources == 0 {
            return Err(self.err(span, ConvertError::CopyArguments(keyword)));
        }
        if !is_add && !urls.is_empty() {
            return Err(self.err(span, ConvertError::CopyUrl));
        }
        let checksum = match &c.checksum {
            Some(f) => {
                let sum = self.word(run, &f.value, f.at)?;
                if urls.is_empty() || !paths.is_empty() || !heredocs.is_empty() {
                    return Err(self.err(f.at, ConvertError::ChecksumNotHttp));
                }
                let ok = sum
                    .strip_prefix("sha256:")
                    .is_some_and(|h| h.len() == 64 && h.chars().all(|x| x.is_ascii_hexdigit()));
                if !ok {
                    return Err(self.err(f.at, ConvertError::Checksum(sum)));
                }
                Some(sum.to_ascii_lowercase())
            }
            None => None,
        };
        let chown = match &c.chown {
            Some(f) => {
                let o = self.word(run, &f.value, f.at)?;
                if o.is_empty() {
                    None
                } else {
                    Some(match o.split_once(':') {
                        Some((u, g)) => Chown {
                            user: u.to_string(),
                            group: Some(g.to_string()),
                        },
                        None => Chown {
                            user: o.clone(),
                            group: None,
                        },
                    })
                }
            }
            None => None,
        };
        let chmod = match &c.chmod {
            Some(f) => {
                let m = self.word(run, &f.value, f.at)?;
                match u32::from_str_radix(&m, 8) {
                    Ok(v) if v <= 0o7777 && !m.is_empty() => Some(v),
                    _ => return Err(self.err(f.at, ConvertError::Chmod(m))),
                }
            }
            None => None,
        };
        let mut dest = join_path(&run.config.working_dir, &dest_raw);
        let dir_like = dest_raw.ends_with('/') || dest_raw == "." || dest_raw.ends_with("/.");
        if (dir_like || n_sources > 1 || parents) && !dest.ends_with('/') {
            dest.push('/');
        }
        let from = match &c.from {
            Some(f) => Some((self.word(run, &f.value, f.at)?, f.at)),
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
                    .map_err(|e| self.err(span, e))?;
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
            let source = if let Some((f, at)) = &from {
                self.source_named(run, f, *at, "--from=")?
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
        let mut created = format!("{keyword} ");
        if let Some((f, _)) = &from {
            created.push_str(&format!("--from={f} "));
        }
        if let Some(o) = &c.chown {
            created.push_str(&format!("--chown={} ", o.value));
        }
        if let Some(m) = &c.chmod {
            created.push_str(&format!("--chmod={} ", m.value));
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
        created.push_str(&shown.join(" "));
        created.push(' ');
        created.push_str(&dest_raw);
        created.push_str(" # buildkit");
        let name = self.step_name(run, ins);
        let meta = self.meta(name, span);
        let st = self.def.add(
            Op::File(FileOp {
                base: run.state.clone(),
                actions,
            }),
            meta,
        );
        run.state = st.clone();
        Self::push_history(run, created, Some(&st));
        Ok(())
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
