//! `.env` and `env_file` files as Compose reads them: `KEY=VALUE` lines, `export KEY=VALUE`,
//! `#` comments (a ` #` after an unquoted value starts one too), single quotes literal, double
//! quotes with `\n`, `\t`, `\\`, `\"` escapes, and `${VAR}` interpolation in unquoted and
//! double-quoted values from the lines above and the environment. A line `KEY` alone takes KEY
//! from the environment (and is left out when it is not set there).

use crate::error::ComposeError;
use crate::interp::interpolate;
use std::collections::BTreeMap;

/// Parses the text of an env file named `file` (for errors). `lookup` is the environment.
pub fn parse(
    text: &str,
    file: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<BTreeMap<String, String>, ComposeError> {
    let mut vars: BTreeMap<String, String> = BTreeMap::new();
    let mut lines = text.lines().enumerate();
    while let Some((n, raw)) = lines.next() {
        let line = raw.trim_start();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").map_or(line, str::trim_start);
        let err = |message: String| ComposeError::EnvFile {
            file: file.to_string(),
            line: n + 1,
            message,
        };
        let (key, value) = match line.split_once('=') {
            Some((k, v)) => (k.trim_end(), Some(v.trim_start())),
            None => (line.trim_end(), None),
        };
        if key.is_empty() || key.chars().any(char::is_whitespace) {
            return Err(err(format!(
                "unexpected character in variable name {key:?}"
            )));
        }
        let Some(value) = value else {
            if let Some(v) = lookup(key) {
                vars.insert(key.to_string(), v);
            }
            continue;
        };
        let look = |name: &str| vars.get(name).cloned().or_else(|| lookup(name));
        let value = if let Some(rest) = value.strip_prefix('\'') {
            let mut body = rest.to_string();
            while !body.contains('\'') {
                let Some((_, next)) = lines.next() else {
                    return Err(err("unterminated single-quoted value".into()));
                };
                body.push('\n');
                body.push_str(next);
            }
            body[..body.find('\'').expect("quote present")].to_string()
        } else if let Some(rest) = value.strip_prefix('"') {
            let mut body = rest.to_string();
            let end = loop {
                if let Some(end) = closing_double_quote(&body) {
                    break end;
                }
                let Some((_, next)) = lines.next() else {
                    return Err(err("unterminated double-quoted value".into()));
                };
                body.push('\n');
                body.push_str(next);
            };
            let unescaped = unescape(&body[..end]);
            interpolate(&unescaped, &look, &mut Vec::new())
                .map_err(|_| err(format!("invalid interpolation in {key:?}")))?
        } else {
            let v = match value.find(" #") {
                Some(i) => &value[..i],
                None => value,
            };
            interpolate(v.trim_end(), &look, &mut Vec::new())
                .map_err(|_| err(format!("invalid interpolation in {key:?}")))?
        };
        vars.insert(key.to_string(), value);
    }
    Ok(vars)
}

fn closing_double_quote(s: &str) -> Option<usize> {
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        match c {
            '\\' if !escaped => escaped = true,
            '"' if !escaped => return Some(i),
            _ => escaped = false,
        }
    }
    None
}

fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some('r') => out.push('\r'),
            Some(o) => out.push(o),
            None => out.push('\\'),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dotenv_forms() {
        let text = "# comment\n\nA=1\nexport B = two\nC='lit $A # x'\nD=\"q\\n$A\"\nE=x #c\nF=${A}${B}\nHOME\nNOPE\nG=\"multi\nline\"\n";
        let env = |n: &str| (n == "HOME").then(|| "/root".to_string());
        let v = parse(text, ".env", &env).unwrap();
        assert_eq!(v["A"], "1");
        assert_eq!(v["B"], "two");
        assert_eq!(v["C"], "lit $A # x");
        assert_eq!(v["D"], "q\n1");
        assert_eq!(v["E"], "x");
        assert_eq!(v["F"], "1two");
        assert_eq!(v["HOME"], "/root");
        assert!(!v.contains_key("NOPE"));
        assert_eq!(v["G"], "multi\nline");
    }

    #[test]
    fn bad_lines_name_file_and_line() {
        let e = parse("A=1\nB C=2\n", "x.env", &|_| None).unwrap_err();
        assert_eq!(
            e.to_string(),
            "x.env:2: unexpected character in variable name \"B C\""
        );
        let e = parse("A='open\n", "x.env", &|_| None).unwrap_err();
        assert_eq!(e.to_string(), "x.env:1: unterminated single-quoted value");
    }
}
