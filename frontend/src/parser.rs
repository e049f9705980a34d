//! The Dockerfile parser: BuildKit's line-level grammar (directives, comments, continuations,
//! flags, JSON or shell forms, heredocs) producing one [`Node`] per instruction with its
//! line range. [`Node::dump`] prints BuildKit's AST dump format, which the parser corpus
//! compares byte for byte. The nodes are still untyped (flags as written, arguments as
//! strings): [`crate::instructions`] turns them into typed instructions.

use crate::instructions::Keyword;
use crate::shell::{Lexer, ShellError};

/// A heredoc attached to an instruction (`<<EOF` … `EOF`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Heredoc {
    /// The delimiter (quotes removed).
    pub name: String,
    /// The file descriptor before `<<` (`0` when absent).
    pub file_descriptor: u32,
    /// Whether variables in the content are expanded (the delimiter was not quoted).
    pub expand: bool,
    /// `<<-`: leading tabs are stripped.
    pub chomp: bool,
    /// The body, each line with its newline.
    pub content: String,
}

/// One parsed instruction, untyped (BuildKit's `parser.Node`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Node {
    /// The instruction keyword, lower-case (`run`). Unknown keywords are kept.
    pub cmd: String,
    /// The keyword, when BuildKit knows it.
    pub keyword: Option<Keyword>,
    /// The keyword as written (`Run`).
    pub cmd_original: String,
    /// The logical line (continuations joined, comments dropped).
    pub original: String,
    /// `--flag=value` flags, as written (`--from=builder`).
    pub flags: Vec<String>,
    /// Where each of `flags` starts.
    pub flag_positions: Vec<Position>,
    /// Arguments. For ENV and LABEL: key, value, separator triples; for HEALTHCHECK the type
    /// first; for JSON forms the parsed strings.
    pub args: Vec<String>,
    /// The nested instruction of an ONBUILD.
    pub sub: Option<Box<Node>>,
    /// The arguments were a JSON array.
    pub json: bool,
    /// Heredocs, in order.
    pub heredocs: Vec<Heredoc>,
    /// First line, 1-based.
    pub start_line: u32,
    /// Last line, 1-based (including heredoc bodies).
    pub end_line: u32,
    /// 1-based column (in characters) of the keyword on its first line.
    pub column: u32,
}

/// A place in the Dockerfile.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Position {
    /// 1-based line.
    pub line: u32,
    /// 1-based column, in characters.
    pub column: u32,
}

impl Node {
    /// Places the node (its flags, and its ONBUILD trigger's) at `line`..`end_line`, column
    /// `column`: for text that is not in the Dockerfile (an image's ONBUILD triggers, a
    /// `--change`), whose errors point at the line that brought it in.
    pub fn place_at(&mut self, line: u32, end_line: u32, column: u32) {
        self.start_line = line;
        self.end_line = end_line;
        self.column = column;
        self.flag_positions.fill(Position { line, column });
        if let Some(sub) = &mut self.sub {
            sub.place_at(line, end_line, column);
        }
    }

    /// BuildKit's AST dump: `(run "echo hi")`, without the parentheses.
    pub fn dump(&self) -> String {
        let mut s = self.cmd.to_lowercase();
        if !self.flags.is_empty() {
            s.push_str(" [");
            let q: Vec<String> = self.flags.iter().map(|f| go_quote(f)).collect();
            s.push_str(&q.join(" "));
            s.push(']');
        }
        if let Some(sub) = &self.sub {
            s.push_str(" (");
            s.push_str(&sub.dump());
            s.push(')');
        }
        for a in &self.args {
            s.push(' ');
            s.push_str(&go_quote(a));
        }
        s.trim().to_string()
    }
}

/// A parsed Dockerfile.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dockerfile {
    /// The instructions, in order.
    pub instructions: Vec<Node>,
    /// The escape character in effect.
    pub escape: char,
    /// Parser directives found (`syntax`, `escape`, `check`), lower-case names.
    pub directives: Vec<(String, String)>,
}

impl Dockerfile {
    /// The whole AST dump, one instruction a line, as BuildKit's parser tests print it.
    pub fn dump(&self) -> String {
        let mut s = String::new();
        for i in &self.instructions {
            s.push('(');
            s.push_str(&i.dump());
            s.push_str(")\n");
        }
        s
    }
}

/// A parse error with its line range.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ParseError {
    /// The message.
    pub message: String,
    /// First line (1-based; 0 when unknown).
    pub line: u32,
    /// Last line.
    pub end_line: u32,
}

/// Go's `strconv.Quote`.
pub fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c if c.is_control() || (c.is_whitespace() && c != ' ') || c == '\u{feff}' => {
                let n = c as u32;
                if n < 0x10000 {
                    out.push_str(&format!("\\u{n:04x}"));
                } else {
                    out.push_str(&format!("\\U{n:08x}"));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

struct Directives {
    escape: char,
    done: bool,
    seen: Vec<(String, String)>,
}

impl Directives {
    /// `# name = value` at the top of the file.
    fn possible_directive(&mut self, line: &str) -> Result<(), String> {
        if self.done {
            return Ok(());
        }
        let Some((k, v)) = parse_directive_line(line) else {
            self.done = true;
            return Ok(());
        };
        let k = k.to_lowercase();
        if !matches!(k.as_str(), "escape" | "syntax" | "check") {
            self.done = true;
            return Ok(());
        }
        if self.seen.iter().any(|(s, _)| *s == k) {
            return Err(format!("only one {k} parser directive can be used"));
        }
        if k == "escape" {
            match v.as_str() {
                "`" => self.escape = '`',
                "\\" => self.escape = '\\',
                _ => return Err(format!("invalid escape token '{v}' does not match ` or \\")),
            }
        }
        self.seen.push((k, v));
        Ok(())
    }
}

/// Matches `^#\s*([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.+?)\s*$`.
fn parse_directive_line(line: &str) -> Option<(String, String)> {
    let rest = line.strip_prefix('#')?;
    let rest = rest.trim_start_matches(is_re_space);
    let name_len = rest
        .char_indices()
        .find(|&(i, c)| !(c.is_ascii_alphabetic() || (i > 0 && c.is_ascii_digit())))
        .map_or(rest.len(), |(i, _)| i);
    if name_len == 0 {
        return None;
    }
    let name = &rest[..name_len];
    let rest = rest[name_len..].trim_start_matches(is_re_space);
    let rest = rest.strip_prefix('=')?;
    let value = rest.trim_matches(is_re_space);
    if value.is_empty() {
        return None;
    }
    Some((name.to_string(), value.to_string()))
}

/// Go regexp's `\s`: `[\t\n\f\r ]`.
fn is_re_space(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\x0c' | '\r' | ' ')
}

/// `[\t\v\f\r ]`, BuildKit's `reWhitespace`.
fn is_ws_token(c: char) -> bool {
    matches!(c, '\t' | '\x0b' | '\x0c' | '\r' | ' ')
}

fn trim_newline(s: &str) -> &str {
    s.trim_end_matches(['\r', '\n'])
}

fn is_comment(line: &str) -> bool {
    trim_newline(line).trim_start().starts_with('#')
}

/// If `line` ends with a line-continuation escape, returns the line without it.
fn trim_continuation(line: &str, escape: char) -> (String, bool) {
    let t = line.trim_end_matches([' ', '\t']);
    if let Some(before) = t.strip_suffix(escape) {
        if before.is_empty() {
            return (String::new(), false);
        }
        if !before.ends_with(escape) {
            return (before.to_string(), false);
        }
    }
    (line.to_string(), true)
}

/// Splits text into lines keeping their `\n`.
fn split_lines(src: &str) -> Vec<&str> {
    src.split_inclusive('\n').collect()
}

/// Parses a Dockerfile.
pub fn parse(src: &str) -> Result<Dockerfile, ParseError> {
    let src = src.strip_prefix('\u{feff}').unwrap_or(src);
    let lines = split_lines(src);
    let mut d = Directives {
        escape: '\\',
        done: false,
        seen: vec![],
    };
    let mut instructions = Vec::new();
    let mut current: u32 = 0;
    let mut idx = 0usize;
    let err = |message: String, line: u32, end_line: u32| ParseError {
        message,
        line,
        end_line,
    };

    while idx < lines.len() {
        let raw = lines[idx];
        idx += 1;
        let untrimmed = trim_newline(raw);
        let token = untrimmed.trim_start();
        if let Err(e) = d.possible_directive(token) {
            return Err(err(e, current + 1, current + 1));
        }
        let token = if token.starts_with('#') { "" } else { token };
        current += 1;
        let start_line = current;
        let indent = untrimmed[..untrimmed.len() - token.len().min(untrimmed.len())]
            .chars()
            .count();
        let column = u32::try_from(indent).map_or(u32::MAX, |n| n.saturating_add(1));
        let (mut line, mut eol) = trim_continuation(token, d.escape);
        if eol && line.is_empty() {
            continue;
        }
        // Where each piece of the logical line starts in the file: (offset in `line`,
        // position), to place flags that sit on continuation lines.
        let mut pieces = vec![(
            0usize,
            Position {
                line: start_line,
                column,
            },
        )];
        while !eol && idx < lines.len() {
            let raw = lines[idx];
            idx += 1;
            let token = trim_newline(raw);
            if let Err(e) = d.possible_directive(token) {
                return Err(err(e, current + 1, current + 1));
            }
            current += 1;
            if is_comment(raw) {
                continue;
            }
            if token.trim_start().is_empty() {
                continue;
            }
            let (l, e) = trim_continuation(token, d.escape);
            eol = e;
            pieces.push((
                line.len(),
                Position {
                    line: current,
                    column: 1,
                },
            ));
            line.push_str(&l);
        }
        let position = |offset: usize| {
            let (start, p) = pieces
                .iter()
                .rev()
                .find(|(start, _)| *start <= offset)
                .copied()
                .unwrap_or_default();
            let chars = line.get(start..offset).map_or(0, |s| s.chars().count());
            Position {
                line: p.line,
                column: p
                    .column
                    .saturating_add(u32::try_from(chars).unwrap_or(u32::MAX)),
            }
        };
        let mut ins = match node_from_line(&line, 0, d.escape, &position) {
            Ok(i) => i,
            Err(e) => return Err(err(e, start_line, current)),
        };
        if can_contain_heredoc(&ins) {
            let docs = match heredocs_from_line(&line) {
                Ok(d) => d,
                Err(e) => return Err(err(e.to_string(), start_line, current)),
            };
            for mut doc in docs {
                let mut terminated = false;
                while idx < lines.len() {
                    let raw = lines[idx];
                    idx += 1;
                    current += 1;
                    let mut possible = trim_newline(raw);
                    if doc.chomp {
                        possible = possible.trim_start_matches('\t');
                    }
                    if possible == doc.name {
                        terminated = true;
                        break;
                    }
                    doc.content.push_str(raw);
                }
                if !terminated {
                    return Err(err("unterminated heredoc".into(), start_line, current));
                }
                ins.heredocs.push(doc);
            }
        }
        ins.start_line = start_line;
        ins.end_line = current;
        ins.column = column;
        instructions.push(ins);
    }
    if instructions.is_empty() {
        return Err(err("file with no instructions".into(), current, current));
    }
    Ok(Dockerfile {
        instructions,
        escape: d.escape,
        directives: d.seen,
    })
}

fn can_contain_heredoc(ins: &Node) -> bool {
    let target = match (ins.keyword, &ins.sub) {
        (Some(Keyword::Onbuild), Some(s)) => s.as_ref(),
        _ => ins,
    };
    matches!(
        target.keyword,
        Some(Keyword::Add | Keyword::Copy | Keyword::Run)
    ) && !target.json
}

/// Finds the heredocs a line opens (`<<EOF`, `<<-EOF`, `<<"EOF"`, `3<<EOF`).
pub fn heredocs_from_line(line: &str) -> Result<Vec<Heredoc>, ShellError> {
    let lex = Lexer {
        escape: '\\',
        raw_quotes: true,
        raw_escapes: true,
        skip_unset_env: true,
    };
    let words = lex.process_words(line, &|_| None).unwrap_or_default();
    let mut docs = Vec::new();
    for w in words {
        if let Some(h) = parse_heredoc(&w)? {
            docs.push(h);
        }
    }
    Ok(docs)
}

/// Parses one word as a heredoc opener (`^(\d*)<<(-?)([^<]*)$`).
pub fn parse_heredoc(word: &str) -> Result<Option<Heredoc>, ShellError> {
    let digits = word.chars().take_while(char::is_ascii_digit).count();
    let (fd, rest) = word.split_at(digits);
    let Some(rest) = rest.strip_prefix("<<") else {
        return Ok(None);
    };
    let (chomp, rest) = match rest.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, rest),
    };
    if rest.is_empty() || rest.contains('<') {
        return Ok(None);
    }
    let fd = fd.parse::<u32>().unwrap_or(0);
    let env = |_: &str| None;
    let plain = Lexer {
        escape: '\\',
        raw_quotes: false,
        raw_escapes: false,
        skip_unset_env: true,
    };
    let words = plain.process_words(rest, &env)?;
    if words.len() != 1 {
        return Ok(None);
    }
    let raw = Lexer {
        raw_quotes: true,
        ..plain
    };
    let raw_words = raw.process_words(rest, &env)?;
    if raw_words.len() != words.len() {
        return Err(ShellError::InconsistentHeredoc(rest.to_string()));
    }
    let count = |s: &str| s.chars().filter(|&c| c == '\'' || c == '"').count();
    let name = words[0].clone();
    let expand = count(&name) == count(&raw_words[0]);
    Ok(Some(Heredoc {
        name,
        file_descriptor: fd,
        expand,
        chomp,
        content: String::new(),
    }))
}

/// Removes leading tabs of every line (`<<-`).
pub fn chomp_heredoc_content(s: &str) -> String {
    s.split_inclusive('\n')
        .map(|l| l.trim_start_matches('\t'))
        .collect()
}

/// `line` split into keyword, flags (each with its byte offset in `line`) and the rest
/// (with its offset).
struct Command {
    cmd: String,
    flags: Vec<(String, usize)>,
    rest: String,
    rest_offset: usize,
}

/// Splits `line` into keyword, flags and the rest.
fn split_command(line: &str) -> Command {
    let t = line.trim();
    let t_offset = line.len() - line.trim_start().len();
    let (cmd, rest) = match t.find(is_ws_token) {
        Some(i) => (&t[..i], t[i..].trim_start_matches(is_ws_token)),
        None => (t, ""),
    };
    let rest_offset = t_offset + t.len() - rest.len();
    let (args, flags) = if rest.is_empty() && !t.contains(is_ws_token) {
        (String::new(), vec![])
    } else {
        extract_flags(rest)
    };
    let args_offset = rest_offset + rest.len() - args.len();
    let trimmed = args.trim();
    Command {
        cmd: cmd.to_string(),
        flags: flags
            .into_iter()
            .map(|(f, at)| (f, rest_offset + at))
            .collect(),
        rest_offset: args_offset + args.len() - args.trim_start().len(),
        rest: trimmed.to_string(),
    }
}

/// BuildKit's `extractBuilderFlags`: leading `--words` (quotes and `\` processed), until a
/// word not starting with `--` or a lone `--`. Each flag comes with its byte offset.
fn extract_flags(line: &str) -> (String, Vec<(String, usize)>) {
    #[derive(PartialEq)]
    enum Phase {
        Spaces,
        Word,
        Quote,
    }
    let chars: Vec<(usize, char)> = line.char_indices().collect();
    let mut words = Vec::new();
    let mut phase = Phase::Spaces;
    let mut word = String::new();
    let mut start = 0;
    let mut quote = '\0';
    let mut blank_ok = false;
    let mut i = 0;
    loop {
        let at_end = i >= chars.len();
        let (pos, ch) = chars.get(i).copied().unwrap_or((line.len(), '\0'));
        if phase == Phase::Spaces {
            if at_end {
                break;
            }
            if ch.is_whitespace() {
                i += 1;
                continue;
            }
            let next_dash = chars.get(i + 1).is_some_and(|&(_, c)| c == '-');
            if ch != '-' || !next_dash {
                return (line[pos..].to_string(), words);
            }
            phase = Phase::Word;
            start = pos;
        }
        if at_end {
            if word != "--" && (blank_ok || !word.is_empty()) {
                words.push((word, start));
            }
            break;
        }
        if phase == Phase::Word {
            if ch.is_whitespace() {
                phase = Phase::Spaces;
                if word == "--" {
                    return (line[pos..].to_string(), words);
                }
                if blank_ok || !word.is_empty() {
                    words.push((std::mem::take(&mut word), start));
                }
                word.clear();
                blank_ok = false;
                i += 1;
                continue;
            }
            if ch == '\'' || ch == '"' {
                quote = ch;
                blank_ok = true;
                phase = Phase::Quote;
                i += 1;
                continue;
            }
            let mut c = ch;
            if ch == '\\' {
                if i + 1 >= chars.len() {
                    i += 1;
                    continue;
                }
                i += 1;
                c = chars[i].1;
            }
            word.push(c);
            i += 1;
            continue;
        }
        // Quote
        if ch == quote {
            phase = Phase::Word;
            i += 1;
            continue;
        }
        let mut c = ch;
        if ch == '\\' {
            if i + 1 >= chars.len() {
                phase = Phase::Word;
                i += 1;
                continue;
            }
            i += 1;
            c = chars[i].1;
        }
        word.push(c);
        i += 1;
    }
    (String::new(), words)
}

/// The node of a logical line; `offset` is where `line` starts in the whole logical line
/// (an ONBUILD's trigger starts after the keyword) and `position` places an offset of the
/// whole line in the file.
fn node_from_line(
    line: &str,
    offset: usize,
    escape: char,
    position: &dyn Fn(usize) -> Position,
) -> Result<Node, String> {
    let Command {
        cmd: cmd_original,
        flags,
        rest,
        rest_offset,
    } = split_command(line);
    let cmd = cmd_original.to_lowercase();
    let keyword = Keyword::from_name(&cmd);
    let (flags, flag_positions) = flags
        .into_iter()
        .map(|(f, at)| (f, position(offset + at)))
        .unzip();
    let mut ins = Node {
        cmd,
        keyword,
        cmd_original,
        original: line.to_string(),
        flags,
        flag_positions,
        args: vec![],
        sub: None,
        json: false,
        heredocs: vec![],
        start_line: 0,
        end_line: 0,
        column: 1,
    };
    // BuildKit's dispatch table (parser.go `dispatch`): how each keyword's rest is split.
    let Some(keyword) = keyword else {
        return Ok(ins);
    };
    match keyword {
        Keyword::Add | Keyword::Copy | Keyword::Volume => {
            let (a, j) = parse_maybe_json_to_list(&rest)?;
            ins.args = a;
            ins.json = j;
        }
        Keyword::Arg => ins.args = parse_words(&rest, escape),
        Keyword::Cmd | Keyword::Entrypoint | Keyword::Run | Keyword::Shell => {
            let (a, j) = parse_maybe_json(&rest)?;
            ins.args = a;
            ins.json = j;
        }
        Keyword::Env => ins.args = parse_name_val(&rest, "ENV", escape)?,
        Keyword::Label => ins.args = parse_name_val(&rest, "LABEL", escape)?,
        Keyword::Expose | Keyword::From => ins.args = split_ws(&rest),
        Keyword::Healthcheck => {
            let t = rest.find(char::is_whitespace).unwrap_or(rest.len());
            if t > 0 {
                let typ = &rest[..t];
                let r = rest[t..].trim_start();
                let (a, j) = parse_maybe_json(r)?;
                ins.args = std::iter::once(typ.to_string()).chain(a).collect();
                ins.json = j;
            }
        }
        Keyword::Maintainer | Keyword::Stopsignal | Keyword::User | Keyword::Workdir
            if !rest.is_empty() =>
        {
            ins.args = vec![rest];
        }
        Keyword::Onbuild if !rest.is_empty() => {
            let sub = node_from_line(&rest, offset + rest_offset, escape, position)?;
            ins.sub = Some(Box::new(sub));
        }
        _ => {}
    }
    Ok(ins)
}

fn split_ws(rest: &str) -> Vec<String> {
    if rest.is_empty() {
        return vec![];
    }
    rest.split(is_ws_token)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect()
}

/// `Err(NotStringArray)` when the JSON parsed but holds non-strings.
fn parse_json(rest: &str) -> Result<Option<Vec<String>>, String> {
    let r = rest.trim_start();
    if !r.starts_with('[') {
        return Ok(None);
    }
    let Ok(v) = serde_json::from_str::<Vec<serde_json::Value>>(r) else {
        return Ok(None);
    };
    let mut out = Vec::with_capacity(v.len());
    for x in v {
        match x {
            serde_json::Value::String(s) => out.push(s),
            _ => {
                return Err(
                    "when using JSON array syntax, arrays must be comprised of strings only".into(),
                )
            }
        }
    }
    Ok(Some(out))
}

fn parse_maybe_json(rest: &str) -> Result<(Vec<String>, bool), String> {
    if rest.is_empty() {
        return Ok((vec![], false));
    }
    match parse_json(rest)? {
        Some(v) => Ok((v, true)),
        None => Ok((vec![rest.to_string()], false)),
    }
}

fn parse_maybe_json_to_list(rest: &str) -> Result<(Vec<String>, bool), String> {
    match parse_json(rest)? {
        Some(v) => Ok((v, true)),
        None => Ok((split_ws(rest), false)),
    }
}

/// BuildKit's `parseWords`: splits on spaces, keeping quotes and escapes in the words.
pub fn parse_words(rest: &str, escape: char) -> Vec<String> {
    #[derive(PartialEq)]
    enum Phase {
        Spaces,
        Word,
        Quote,
    }
    let chars: Vec<char> = rest.chars().collect();
    let mut words = Vec::new();
    let mut phase = Phase::Spaces;
    let mut quote = '\0';
    let mut blank_ok = false;
    let mut word = String::new();
    let mut i = 0;
    loop {
        let at_end = i >= chars.len();
        let mut ch = chars.get(i).copied().unwrap_or('\0');
        if phase == Phase::Spaces {
            if at_end {
                break;
            }
            if ch.is_whitespace() {
                i += 1;
                continue;
            }
            phase = Phase::Word;
        }
        if at_end {
            if blank_ok || !word.is_empty() {
                words.push(word);
            }
            break;
        }
        if phase == Phase::Word {
            if ch.is_whitespace() {
                phase = Phase::Spaces;
                if blank_ok || !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
                blank_ok = false;
                i += 1;
                continue;
            }
            if ch == '\'' || ch == '"' {
                quote = ch;
                blank_ok = true;
                phase = Phase::Quote;
            }
            if ch == escape {
                if i + 1 == chars.len() {
                    i += 1;
                    continue;
                }
                word.push(ch);
                i += 1;
                ch = chars[i];
            }
            word.push(ch);
            i += 1;
            continue;
        }
        // Quote
        if ch == quote {
            phase = Phase::Word;
        }
        if ch == escape && quote != '\'' {
            if i + 1 == chars.len() {
                phase = Phase::Word;
                i += 1;
                continue;
            }
            i += 1;
            word.push(ch);
            ch = chars[i];
        }
        word.push(ch);
        i += 1;
    }
    words
}

fn parse_name_val(rest: &str, key: &str, escape: char) -> Result<Vec<String>, String> {
    let words = parse_words(rest, escape);
    let Some(first) = words.first() else {
        return Ok(vec![]);
    };
    if !first.contains('=') {
        let t = rest;
        let Some(i) = t.find(is_ws_token) else {
            return Err(format!("{key} must have two arguments"));
        };
        let k = &t[..i];
        let v = t[i..].trim_start_matches(is_ws_token);
        return Ok(vec![k.to_string(), v.to_string(), String::new()]);
    }
    let mut out = Vec::new();
    for w in &words {
        let Some((k, v)) = w.split_once('=') else {
            return Err(format!(
                "Syntax error - can't find = in {}. Must be of the form: name=value",
                go_quote(w)
            ));
        };
        out.extend([k.to_string(), v.to_string(), "=".to_string()]);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heredocs() {
        let df = "FROM x\nRUN <<EOF cat <<-'B'\necho $A\nEOF\n\tbody\n\tB\nRUN x\n";
        let p = parse(df).unwrap();
        let r = &p.instructions[1];
        assert_eq!(r.heredocs.len(), 2);
        assert_eq!(r.heredocs[0].name, "EOF");
        assert!(r.heredocs[0].expand);
        assert_eq!(r.heredocs[0].content, "echo $A\n");
        assert_eq!(r.heredocs[1].name, "B");
        assert!(!r.heredocs[1].expand && r.heredocs[1].chomp);
        assert_eq!((r.start_line, r.end_line), (2, 6));
        assert_eq!(p.instructions[2].start_line, 7);
        assert!(parse("FROM x\nRUN <<EOF\nabc\n").is_err());
    }

    #[test]
    fn no_panic_on_odd_input() {
        for s in [
            "\\",
            "RUN \\",
            "#escape=`\nRUN `",
            "ONBUILD",
            "HEALTHCHECK \u{a0}x",
            "RUN [1]",
            "ENV a",
            "COPY --x=\"",
            "X \u{85}--a",
        ] {
            let _ = parse(s);
        }
    }
}
