//! Go's text/template syntax, the part docker users write: text and `{{actions}}` with trim
//! markers and comments, pipelines, variables, `if`/`else if`/`else`, `range`, `with`, `end`.

use crate::Error;

/// One piece of a template.
#[derive(Debug, Clone)]
pub(crate) enum Node {
    Text(String),
    /// `{{pipeline}}`: printed unless it declares variables.
    Action(Pipe),
    If(Pipe, Vec<Node>, Vec<Node>),
    Range(Pipe, Vec<Node>, Vec<Node>),
    With(Pipe, Vec<Node>, Vec<Node>),
}

/// A pipeline, where it starts in the source (for errors), and the variables it declares.
#[derive(Debug, Clone)]
pub(crate) struct Pipe {
    pub(crate) line: usize,
    pub(crate) col: usize,
    pub(crate) text: String,
    pub(crate) decl: Vec<String>,
    /// `$x = …`: sets a variable declared before (`:=` declares a new one).
    pub(crate) assign: bool,
    pub(crate) cmds: Vec<Vec<Arg>>,
}

/// An operand of a command.
#[derive(Debug, Clone)]
pub(crate) enum Arg {
    /// `.` followed by field names (`.` alone: none).
    Field(Vec<String>),
    /// `$name` followed by field names.
    Var(String, Vec<String>),
    Str(String),
    Num(serde_json::Number),
    Bool(bool),
    Nil,
    Func(String),
    /// `(pipeline)` followed by field names.
    Sub(Pipe, Vec<String>),
}

/// The functions a template may call (Go's builtins and docker's additions).
pub(crate) const FUNCS: [&str; 23] = [
    "and", "eq", "ge", "gt", "index", "join", "json", "le", "len", "lower", "lt", "ne", "not",
    "or", "pad", "print", "printf", "println", "slice", "split", "title", "truncate", "upper",
];

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    /// `.A.B` (empty for `.`), with whether a space came before it.
    Field(Vec<String>, bool),
    Var(String, Vec<String>),
    Str(String),
    Num(serde_json::Number),
    Ident(String),
    Open,
    Close,
    Bar,
    Declare,
    Assign,
    Comma,
}

/// An action's tokens and where it is.
struct Action {
    line: usize,
    col: usize,
    text: String,
    toks: Vec<Tok>,
}

enum Item {
    Text(String),
    Action(Action),
}

fn err(line: usize, msg: impl std::fmt::Display) -> Error {
    Error::Parse(format!("template: :{line}: {msg}"))
}

/// Splits the source into text and actions, applying trim markers and dropping comments.
fn items(src: &str) -> Result<Vec<Item>, Error> {
    let mut out = Vec::new();
    let mut rest = src;
    let mut pos = 0;
    let mut trim_next = false;
    loop {
        let Some(open) = rest.find("{{") else {
            let mut t = rest;
            if trim_next {
                t = t.trim_start();
            }
            if !t.is_empty() {
                out.push(Item::Text(t.to_string()));
            }
            return Ok(out);
        };
        let mut text = &rest[..open];
        if trim_next {
            text = text.trim_start();
        }
        let mut inner_start = open + 2;
        if rest[inner_start..].starts_with("- ")
            || rest[inner_start..].starts_with("-\t")
            || rest[inner_start..].starts_with("-\n")
        {
            text = text.trim_end();
            inner_start += 2;
        }
        if !text.is_empty() {
            out.push(Item::Text(text.to_string()));
        }
        let line = src[..pos + open].matches('\n').count() + 1;
        let col = pos + open - src[..pos + open].rfind('\n').map_or(0, |n| n + 1) + 2;
        let (inner, after) = action_end(&rest[inner_start..]).ok_or_else(|| {
            err(
                line,
                if rest[inner_start..].trim_start().starts_with("/*") {
                    "unclosed comment"
                } else {
                    "unclosed action"
                },
            )
        })?;
        let mut body = inner;
        trim_next = false;
        if body.ends_with(" -") || body.ends_with("\t-") || body.ends_with("\n-") {
            body = &body[..body.len() - 2];
            trim_next = true;
        }
        let consumed = inner_start + after;
        let trimmed = body.trim();
        if trimmed.starts_with("/*") {
            if !trimmed.ends_with("*/") {
                return Err(err(line, "comment ends before closing delimiter"));
            }
        } else {
            let toks = lex(trimmed, line)?;
            out.push(Item::Action(Action {
                line,
                col,
                text: trimmed.to_string(),
                toks,
            }));
        }
        pos += consumed;
        rest = &rest[consumed..];
    }
}

/// The action's inside and the offset just past its `}}` (quotes may hold `}}`).
fn action_end(s: &str) -> Option<(&str, usize)> {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            q @ (b'"' | b'`' | b'\'') => {
                i += 1;
                while i < b.len() && b[i] != q {
                    if b[i] == b'\\' && q != b'`' {
                        i += 1;
                    }
                    i += 1;
                }
            }
            b'}' if b.get(i + 1) == Some(&b'}') => return Some((&s[..i], i + 2)),
            _ => {}
        }
        i += 1;
    }
    None
}

fn is_ident(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// Field names after a `.`, `$x` or `)`: `.A.B`.
fn fields(chars: &[char], i: &mut usize) -> Vec<String> {
    let mut names = Vec::new();
    while *i < chars.len() && chars[*i] == '.' {
        let start = *i + 1;
        let mut j = start;
        while j < chars.len() && is_ident(chars[j]) {
            j += 1;
        }
        if j == start {
            break;
        }
        names.push(chars[start..j].iter().collect());
        *i = j;
    }
    names
}

fn lex(s: &str, line: usize) -> Result<Vec<Tok>, Error> {
    let chars: Vec<char> = s.chars().collect();
    let mut toks = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let spaced = i == 0 || chars[i - 1].is_whitespace();
        match c {
            c if c.is_whitespace() => i += 1,
            '(' => {
                toks.push(Tok::Open);
                i += 1;
            }
            ')' => {
                toks.push(Tok::Close);
                i += 1;
            }
            '|' => {
                toks.push(Tok::Bar);
                i += 1;
            }
            ',' => {
                toks.push(Tok::Comma);
                i += 1;
            }
            ':' if chars.get(i + 1) == Some(&'=') => {
                toks.push(Tok::Declare);
                i += 2;
            }
            '=' => {
                toks.push(Tok::Assign);
                i += 1;
            }
            '.' if !chars.get(i + 1).is_some_and(char::is_ascii_digit) => {
                if chars.get(i + 1).is_some_and(|&c| is_ident(c)) {
                    toks.push(Tok::Field(fields(&chars, &mut i), spaced));
                } else {
                    toks.push(Tok::Field(Vec::new(), spaced));
                    i += 1;
                }
            }
            '$' => {
                let start = i;
                i += 1;
                while i < chars.len() && is_ident(chars[i]) {
                    i += 1;
                }
                let name: String = chars[start..i].iter().collect();
                toks.push(Tok::Var(name, fields(&chars, &mut i)));
            }
            '"' | '`' => {
                let (lit, next) =
                    string(&chars, i).ok_or_else(|| err(line, "unterminated quoted string"))?;
                toks.push(Tok::Str(lit));
                i = next;
            }
            '\'' => {
                let (lit, next) = string(&chars, i)
                    .ok_or_else(|| err(line, "unterminated character constant"))?;
                let code = lit.chars().next().map_or(0, |c| u64::from(u32::from(c)));
                toks.push(Tok::Num(code.into()));
                i = next;
            }
            c if c.is_ascii_digit() || c == '-' || c == '+' || c == '.' => {
                let start = i;
                i += 1;
                while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                    i += 1;
                }
                let text: String = chars[start..i].iter().collect();
                toks.push(Tok::Num(number(&text).ok_or_else(|| {
                    err(line, format!("bad number syntax: {text:?}"))
                })?));
            }
            c if is_ident(c) => {
                let start = i;
                while i < chars.len() && is_ident(chars[i]) {
                    i += 1;
                }
                toks.push(Tok::Ident(chars[start..i].iter().collect()));
                // `fn.Field` is not Go; a field chain after an identifier is an error.
                if chars.get(i) == Some(&'.') && chars.get(i + 1).is_some_and(|&c| is_ident(c)) {
                    return Err(err(line, "unexpected <.> in operand"));
                }
            }
            c => return Err(err(line, format!("unexpected {c:?} in command"))),
        }
    }
    Ok(toks)
}

/// A quoted string starting at `chars[i]`: its value and the index past it.
fn string(chars: &[char], i: usize) -> Option<(String, usize)> {
    let q = chars[i];
    let mut out = String::new();
    let mut j = i + 1;
    while j < chars.len() {
        let c = chars[j];
        if c == q {
            return Some((out, j + 1));
        }
        if c == '\\' && q != '`' {
            j += 1;
            out.push(match *chars.get(j)? {
                'n' => '\n',
                't' => '\t',
                'r' => '\r',
                '0' => '\0',
                c => c,
            });
        } else {
            out.push(c);
        }
        j += 1;
    }
    None
}

fn number(text: &str) -> Option<serde_json::Number> {
    if let Ok(n) = text.parse::<i64>() {
        return Some(n.into());
    }
    if let Some(hex) = text.strip_prefix("0x") {
        return i64::from_str_radix(hex, 16).ok().map(Into::into);
    }
    serde_json::Number::from_f64(text.parse::<f64>().ok()?)
}

/// Parses a whole template (without docker's `table` prefix).
pub(crate) fn parse(src: &str) -> Result<Vec<Node>, Error> {
    let items = items(src)?;
    let mut it = items.into_iter().peekable();
    let (nodes, end) = list(&mut it)?;
    match end {
        None => Ok(nodes),
        Some((line, word)) => Err(err(line, format!("unexpected {{{{{word}}}}}"))),
    }
}

type Items = std::iter::Peekable<std::vec::IntoIter<Item>>;

/// The `{{end}}` or `{{else …}}` a list stopped at: its line and text.
type Stop = Option<(usize, String)>;

/// Nodes up to an `{{end}}` or `{{else …}}` (returned with its line) or the end of input.
fn list(it: &mut Items) -> Result<(Vec<Node>, Stop), Error> {
    let mut nodes = Vec::new();
    while let Some(item) = it.next() {
        let a = match item {
            Item::Text(t) => {
                nodes.push(Node::Text(t));
                continue;
            }
            Item::Action(a) => a,
        };
        match a.toks.first() {
            Some(Tok::Ident(w)) if w == "end" => {
                if a.toks.len() > 1 {
                    return Err(err(a.line, "unexpected token in end"));
                }
                return Ok((nodes, Some((a.line, "end".into()))));
            }
            Some(Tok::Ident(w)) if w == "else" => {
                return Ok((nodes, Some((a.line, a.text.clone()))));
            }
            Some(Tok::Ident(w)) if matches!(w.as_str(), "if" | "range" | "with") => {
                let kind = w.clone();
                nodes.push(control(it, &kind, a)?);
            }
            Some(Tok::Ident(w))
                if matches!(
                    w.as_str(),
                    "template" | "define" | "block" | "break" | "continue"
                ) =>
            {
                return Err(err(a.line, format!("{{{{{w}}}}} is not supported by kiln")));
            }
            None => return Err(err(a.line, "missing value for command")),
            _ => nodes.push(Node::Action(pipe(&a, &a.toks)?)),
        }
    }
    Ok((nodes, None))
}

/// `if`/`range`/`with` from its opening action to its `{{end}}`.
fn control(it: &mut Items, kind: &str, a: Action) -> Result<Node, Error> {
    let mut p = pipe(&a, &a.toks[1..])?;
    // Go's errors name the pipeline, not the keyword: `at <.>`.
    p.text = a
        .text
        .strip_prefix(kind)
        .unwrap_or(&a.text)
        .trim()
        .to_string();
    let (body, end) = list(it)?;
    let mut other = Vec::new();
    match end {
        None => return Err(err(a.line, "unexpected EOF")),
        Some((_, w)) if w == "end" => {}
        Some((line, w)) => {
            let rest = w.strip_prefix("else").unwrap_or_default().trim();
            if rest.is_empty() {
                let (els, end) = list(it)?;
                match end {
                    Some((_, w)) if w == "end" => other = els,
                    None => return Err(err(line, "unexpected EOF")),
                    Some((line, w)) => return Err(err(line, format!("unexpected {{{{{w}}}}}"))),
                }
            } else {
                // `{{else if …}}` / `{{else with …}}`: a nested control sharing the `{{end}}`.
                let inner = Action {
                    line,
                    col: a.col,
                    text: rest.to_string(),
                    toks: lex(rest, line)?,
                };
                let word = match inner.toks.first() {
                    Some(Tok::Ident(w)) if w == kind && kind != "range" => w.clone(),
                    _ => return Err(err(line, format!("unexpected {{{{{w}}}}}"))),
                };
                other = vec![control(it, &word, inner)?];
            }
        }
    }
    Ok(match kind {
        "if" => Node::If(p, body, other),
        "range" => Node::Range(p, body, other),
        _ => Node::With(p, body, other),
    })
}

/// A pipeline: `[$a[, $b] :=] cmd | cmd …`.
fn pipe(a: &Action, toks: &[Tok]) -> Result<Pipe, Error> {
    let mut toks = toks;
    let mut decl = Vec::new();
    let mut assign = false;
    if let Some(at) = toks
        .iter()
        .position(|t| matches!(t, Tok::Declare | Tok::Assign))
    {
        let names = &toks[..at];
        let ok = names.iter().enumerate().all(|(i, t)| {
            if i % 2 == 1 {
                *t == Tok::Comma
            } else {
                matches!(t, Tok::Var(_, f) if f.is_empty())
            }
        });
        if ok && !names.is_empty() && names.len() <= 3 {
            decl = names
                .iter()
                .filter_map(|t| match t {
                    Tok::Var(n, _) => Some(n.clone()),
                    _ => None,
                })
                .collect();
            assign = toks[at] == Tok::Assign;
            toks = &toks[at + 1..];
        }
    }
    let mut cmds = Vec::new();
    let mut i = 0;
    let mut cmd = Vec::new();
    while i < toks.len() {
        match &toks[i] {
            Tok::Bar => {
                if cmd.is_empty() {
                    return Err(err(a.line, "missing value for command"));
                }
                cmds.push(std::mem::take(&mut cmd));
                i += 1;
            }
            _ => cmd.push(operand(a, toks, &mut i)?),
        }
    }
    if cmd.is_empty() {
        return Err(err(a.line, format!("missing value for {}", a.text)));
    }
    cmds.push(cmd);
    Ok(Pipe {
        line: a.line,
        col: a.col,
        text: a.text.clone(),
        decl,
        assign,
        cmds,
    })
}

fn operand(a: &Action, toks: &[Tok], i: &mut usize) -> Result<Arg, Error> {
    let t = toks[*i].clone();
    *i += 1;
    Ok(match t {
        Tok::Field(f, _) => Arg::Field(f),
        Tok::Var(v, f) => Arg::Var(v, f),
        Tok::Str(s) => Arg::Str(s),
        Tok::Num(n) => Arg::Num(n),
        Tok::Ident(w) => match w.as_str() {
            "true" => Arg::Bool(true),
            "false" => Arg::Bool(false),
            "nil" => Arg::Nil,
            w if FUNCS.contains(&w) => Arg::Func(w.to_string()),
            w => return Err(err(a.line, format!("function {w:?} not defined"))),
        },
        Tok::Open => {
            let start = *i;
            let mut depth = 1;
            while *i < toks.len() {
                match toks[*i] {
                    Tok::Open => depth += 1,
                    Tok::Close => depth -= 1,
                    _ => {}
                }
                if depth == 0 {
                    break;
                }
                *i += 1;
            }
            if depth != 0 {
                return Err(err(a.line, "unclosed left paren"));
            }
            let sub = pipe(a, &toks[start..*i])?;
            *i += 1;
            let mut chain = Vec::new();
            if let Some(Tok::Field(f, false)) = toks.get(*i) {
                chain.clone_from(f);
                *i += 1;
            }
            Arg::Sub(sub, chain)
        }
        Tok::Close => return Err(err(a.line, "unexpected right paren")),
        Tok::Declare | Tok::Assign => return Err(err(a.line, "unexpected \":=\" in operand")),
        Tok::Comma => return Err(err(a.line, "unexpected \",\" in operand")),
        Tok::Bar => return Err(err(a.line, "missing value for command")),
    })
}
