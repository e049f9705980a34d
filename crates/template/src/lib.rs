//! Docker's `--format`: the Go text/template subset docker users write, over
//! `serde_json::Value` data (each command renders its docker-shaped JSON), and docker's
//! listing conventions on top (`table` with headers, `json`, `\t`/`\n` escapes).
//!
//! Supported: `{{.Field}}`, `.A.B`, `$`, variables (`$x := …`, `range $k, $v := …`),
//! pipelines (`|`), parentheses, `if`/`else if`/`else`, `range` (with `else`), `with`,
//! trim markers `{{-`/`-}}`, comments, and the functions `json`, `index`, `join`, `split`,
//! `upper`, `lower`, `title`, `truncate`, `pad`, `len`, `slice`, `print`, `printf`,
//! `println`, `not`, `and`, `or`, `eq`, `ne`, `lt`, `le`, `gt`, `ge`.
//!
//! Go's semantics are kept where users see them: a missing key prints `<no value>`, null
//! prints `<nil>`, lists print `[a b]` and objects `map[k:v]`, maps range in key order,
//! `json` escapes `<`, `>` and `&` as Go's `json.Marshal` does, `printf` pads as Go's fmt.
//! (Docker's data are Go structs, which print as `{…}`; here they are JSON objects, so
//! `{{.Config}}` prints `map[…]`: use `{{json .Config}}` for a stable form.)
//!
//! Why not the `gtmpl` crate: tried (0.7) against these semantics, it prints a map as
//! Rust's `Debug` (`{"a": Number(…)}`), ranges over maps in hash order, left-aligns
//! `printf "%5s"`, and has no `json`; docker's examples need all four.

mod exec;
mod funcs;
mod parse;
#[cfg(test)]
mod tests;

use serde_json::Value;

/// A template that does not parse or fails while it runs, in Go's (and docker's) words.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    /// `template parsing error: template: :1: unclosed action`.
    #[error("template parsing error: {0}")]
    Parse(String),
    /// `template: :1:3: executing "" at <…>: …`.
    #[error("{0}")]
    Exec(String),
}

/// Methods of the data beyond its keys, such as docker's `{{.Label "key"}}`.
pub trait Methods {
    /// `recv.name args…`, or `None` when `recv` has no such method.
    fn call(&self, recv: &Value, name: &str, args: &[Value]) -> Option<Result<Value, String>>;
}

/// The methods docker's listing contexts share: `.Label "key"` (one label's value, from a
/// `Labels` object or docker's `k=v,k=v` string). A field the command does not have is an
/// error, as with docker's Go structs; one it has but the row lacks prints `<no value>`.
pub struct Docker<'a> {
    /// The command's fields (its header map's keys).
    pub known: &'a [(&'a str, &'a str)],
}

impl Methods for Docker<'_> {
    fn call(&self, recv: &Value, name: &str, args: &[Value]) -> Option<Result<Value, String>> {
        if name != "Label" {
            if !args.is_empty() || self.known.iter().any(|(k, _)| *k == name) {
                return None;
            }
            let fields: Vec<String> = self.known.iter().map(|(k, _)| format!(".{k}")).collect();
            return Some(Err(format!(
                "can't evaluate field {name} (the fields are {})",
                fields.join(" ")
            )));
        }
        let Some(Value::String(key)) = args.first() else {
            return Some(Err("wrong number of args for Label: want 1".into()));
        };
        let found = match recv.get("Labels") {
            Some(Value::Object(o)) => o.get(key).cloned(),
            Some(Value::String(s)) => s
                .split(',')
                .filter_map(|kv| kv.split_once('='))
                .find(|(k, _)| k == key)
                .map(|(_, v)| Value::String(v.into())),
            _ => None,
        };
        Some(Ok(found.unwrap_or_else(|| Value::String(String::new()))))
    }
}

/// The header row's methods: `.Label "com.example.key"` heads its column `KEY`, as docker's.
struct Headers;

impl Methods for Headers {
    fn call(&self, _: &Value, name: &str, args: &[Value]) -> Option<Result<Value, String>> {
        let key = match args.first() {
            Some(Value::String(k)) if name == "Label" => k,
            _ => return None,
        };
        let last = key.rsplit('.').next().unwrap_or(key);
        Some(Ok(Value::String(last.to_uppercase())))
    }
}

struct NoMethods;

impl Methods for NoMethods {
    fn call(&self, _: &Value, _: &str, _: &[Value]) -> Option<Result<Value, String>> {
        None
    }
}

/// A parsed Go template.
#[derive(Debug, Clone)]
pub struct Template {
    nodes: Vec<parse::Node>,
}

impl Template {
    /// Parses `src` as Go's text/template does (no `table` prefix, no escapes).
    ///
    /// # Errors
    /// [`Error::Parse`] with Go's message.
    pub fn parse(src: &str) -> Result<Self, Error> {
        Ok(Self {
            nodes: parse::parse(src)?,
        })
    }

    /// Runs the template over `data`.
    ///
    /// # Errors
    /// [`Error::Exec`] with Go's message (a field of a string, an index out of range, …).
    pub fn execute(&self, data: &Value) -> Result<String, Error> {
        self.execute_with(data, &NoMethods)
    }

    /// Runs the template over `data`, with `methods` for fields that take arguments.
    ///
    /// # Errors
    /// As [`Template::execute`].
    pub fn execute_with(&self, data: &Value, methods: &dyn Methods) -> Result<String, Error> {
        let root = Some(data.clone());
        let mut state = exec::State {
            vars: vec![("$".to_string(), root.clone())],
            methods,
            out: String::new(),
        };
        state.walk(&self.nodes, &root)?;
        Ok(state.out)
    }
}

/// A listing's `--format` as docker reads it: `table [TEMPLATE]` (aligned columns under a
/// header; `table` alone is the command's default), `json` (one JSON object a line), or a
/// template; `\t` and `\n` written out stand for tab and newline.
#[derive(Debug, Clone)]
pub struct Format {
    table: bool,
    template: Template,
}

impl Format {
    /// `format` as given to `--format`; `default` is the command's own table template.
    ///
    /// # Errors
    /// [`Error::Parse`].
    pub fn new(format: &str, default: &str) -> Result<Self, Error> {
        let (table, rest) = match format.strip_prefix("table") {
            Some(rest) => (true, rest),
            None => (false, format),
        };
        let text = if table && rest.trim().is_empty() {
            default
        } else if !table && format.trim() == "json" {
            "{{json .}}"
        } else {
            rest.trim_matches(' ')
        };
        let text = text.replace("\\t", "\t").replace("\\n", "\n");
        Ok(Self {
            table,
            template: Template::parse(&text)?,
        })
    }

    /// Whether this is a `table` format.
    #[must_use]
    pub fn is_table(&self) -> bool {
        self.table
    }

    /// The output for `rows`: each row's line (after the header line made from `headers`,
    /// field → column title, and in aligned columns with `table`). A field outside
    /// `headers` and the row is an error; one in `headers` only prints `<no value>`.
    ///
    /// # Errors
    /// [`Error::Exec`] from the first row the template fails on.
    pub fn render(&self, headers: &[(&str, &str)], rows: &[Value]) -> Result<String, Error> {
        let mut lines = Vec::new();
        if self.table {
            let head: serde_json::Map<String, Value> = headers
                .iter()
                .map(|(k, v)| ((*k).to_string(), Value::String((*v).to_string())))
                .collect();
            lines.push(self.template.execute_with(&Value::Object(head), &Headers)?);
        }
        for r in rows {
            lines.push(self.template.execute_with(r, &Docker { known: headers })?);
        }
        if self.table {
            Ok(tabwrite(&lines))
        } else {
            Ok(lines.iter().map(|l| format!("{l}\n")).collect())
        }
    }
}

/// Go's tabwriter as kiln's tables use it (padding 3): tab-separated cells in columns,
/// the last cell of a line outside them, trailing blanks trimmed.
#[must_use]
pub fn tabwrite(lines: &[String]) -> String {
    let lines: Vec<&str> = lines.iter().flat_map(|l| l.split('\n')).collect();
    let cells: Vec<Vec<&str>> = lines.iter().map(|l| l.split('\t').collect()).collect();
    let mut widths: Vec<usize> = Vec::new();
    for row in &cells {
        for (i, c) in row.iter().take(row.len().saturating_sub(1)).enumerate() {
            if widths.len() <= i {
                widths.push(0);
            }
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    let mut out = String::new();
    for row in &cells {
        let mut line = String::new();
        for (i, c) in row.iter().enumerate() {
            line.push_str(c);
            if i + 1 < row.len() {
                line.extend(std::iter::repeat_n(' ', widths[i] - c.chars().count() + 3));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}
