//! The functions of docker's templates (Go's builtins plus `json`, `join`, `split`, `upper`,
//! `lower`, `title`, `truncate`, `pad`) and Go's `%v` printing of JSON values.

use crate::exec::{truth, type_name, Val};
use serde_json::Value;
use std::cmp::Ordering;
use std::fmt::Write as _;

/// Go's `%v` of a float64: shortest digits, exponent form below 1e-4 and from 1e21.
fn float(f: f64) -> String {
    if f != 0.0 && (f.abs() < 1e-4 || f.abs() >= 1e21) {
        let s = format!("{f:e}");
        let (m, e) = s.split_once('e').unwrap_or((&s, "0"));
        let e: i32 = e.parse().unwrap_or(0);
        let sign = if e < 0 { '-' } else { '+' };
        format!("{m}e{sign}{:02}", e.abs())
    } else {
        format!("{f}")
    }
}

fn number(n: &serde_json::Number) -> String {
    if n.is_f64() {
        float(n.as_f64().unwrap_or(0.0))
    } else {
        n.to_string()
    }
}

fn print_into(out: &mut String, v: &Value) {
    match v {
        Value::Null => out.push_str("<nil>"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => out.push_str(&number(n)),
        Value::String(s) => out.push_str(s),
        Value::Array(a) => {
            out.push('[');
            for (i, e) in a.iter().enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                print_into(out, e);
            }
            out.push(']');
        }
        Value::Object(o) => {
            out.push_str("map[");
            for (i, (k, e)) in o.iter().enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                out.push_str(k);
                out.push(':');
                print_into(out, e);
            }
            out.push(']');
        }
    }
}

/// A value as `{{.}}` prints it (Go's `%v`): `<no value>` for a missing key, `<nil>` for
/// null, `[a b]` for lists, `map[k:v]` for objects (keys in order).
pub(crate) fn print(v: &Val) -> String {
    match v {
        None => "<no value>".to_string(),
        Some(v) => {
            let mut s = String::new();
            print_into(&mut s, v);
            s
        }
    }
}

/// Go's `json.Marshal` as docker's `{{json}}` calls it: compact, and `<`, `>`, `&`, U+2028
/// and U+2029 escaped as `\u003c` and so on.
pub(crate) fn json(v: &Val) -> String {
    let text = v
        .as_ref()
        .map_or_else(|| "null".to_string(), Value::to_string);
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            '&' => out.push_str("\\u0026"),
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c => out.push(c),
        }
    }
    out
}

fn arity(args: &[Val], n: usize) -> Result<(), String> {
    if args.len() == n {
        Ok(())
    } else {
        Err(format!("wrong number of args: want {n} got {}", args.len()))
    }
}

fn string(v: &Val) -> Result<&str, String> {
    match v {
        Some(Value::String(s)) => Ok(s),
        other => Err(format!("expected string; found {}", print(other))),
    }
}

fn int(v: &Val) -> Result<i64, String> {
    match v {
        Some(Value::Number(n)) if n.as_i64().is_some() => Ok(n.as_i64().unwrap_or(0)),
        other => Err(format!("expected integer; found {}", print(other))),
    }
}

/// Go's `eq`/`lt` comparisons of basic values.
fn compare(a: &Val, b: &Val) -> Result<Ordering, String> {
    match (a, b) {
        (Some(Value::Number(x)), Some(Value::Number(y))) => {
            let (x, y) = (x.as_f64().unwrap_or(0.0), y.as_f64().unwrap_or(0.0));
            x.partial_cmp(&y)
                .ok_or_else(|| "incomparable numbers".to_string())
        }
        (Some(Value::String(x)), Some(Value::String(y))) => Ok(x.cmp(y)),
        (Some(Value::Bool(x)), Some(Value::Bool(y))) => Ok(x.cmp(y)),
        (None | Some(Value::Null), None | Some(Value::Null)) => Ok(Ordering::Equal),
        _ => Err("incompatible types for comparison".to_string()),
    }
}

/// Calls the function `name` (one of [`crate::parse::FUNCS`]).
pub(crate) fn call(name: &str, args: &[Val]) -> Result<Val, String> {
    let s = |x: String| Ok(Some(Value::String(x)));
    match name {
        "json" => {
            arity(args, 1)?;
            s(json(&args[0]))
        }
        "upper" => {
            arity(args, 1)?;
            s(string(&args[0])?.to_uppercase())
        }
        "lower" => {
            arity(args, 1)?;
            s(string(&args[0])?.to_lowercase())
        }
        "title" => {
            arity(args, 1)?;
            s(title(string(&args[0])?))
        }
        "split" => {
            arity(args, 2)?;
            let (text, sep) = (string(&args[0])?, string(&args[1])?);
            let parts: Vec<Value> = if sep.is_empty() {
                text.chars().map(|c| Value::String(c.to_string())).collect()
            } else {
                text.split(sep).map(|p| Value::String(p.into())).collect()
            };
            Ok(Some(Value::Array(parts)))
        }
        "join" => {
            arity(args, 2)?;
            let sep = string(&args[1])?;
            match &args[0] {
                Some(Value::Array(a)) => s(a
                    .iter()
                    .map(|e| print(&Some(e.clone())))
                    .collect::<Vec<_>>()
                    .join(sep)),
                None | Some(Value::Null) => s(String::new()),
                other => Err(format!("expected a list; found {}", print(other))),
            }
        }
        "truncate" => {
            arity(args, 2)?;
            let n = usize::try_from(int(&args[1])?).unwrap_or(0);
            s(string(&args[0])?.chars().take(n).collect())
        }
        "pad" => {
            arity(args, 3)?;
            let (pre, post) = (int(&args[1])?, int(&args[2])?);
            let spaces = |n: i64| " ".repeat(usize::try_from(n).unwrap_or(0));
            s(format!(
                "{}{}{}",
                spaces(pre),
                string(&args[0])?,
                spaces(post)
            ))
        }
        "len" => {
            arity(args, 1)?;
            let n = match &args[0] {
                Some(Value::String(x)) => x.len(),
                Some(Value::Array(a)) => a.len(),
                Some(Value::Object(o)) => o.len(),
                other => return Err(format!("len of type {}", type_name(other))),
            };
            Ok(Some(n.into()))
        }
        "index" => {
            let Some((first, keys)) = args.split_first() else {
                return Err("wrong number of args: want at least 1 got 0".into());
            };
            let mut v = first.clone();
            for k in keys {
                v = match (v, k) {
                    (Some(Value::Object(mut o)), Some(Value::String(key))) => o.remove(key),
                    (Some(Value::Array(mut a)), Some(Value::Number(n))) => {
                        let i = n.as_u64().and_then(|i| usize::try_from(i).ok());
                        match i.filter(|&i| i < a.len()) {
                            Some(i) => Some(a.swap_remove(i)),
                            None => return Err(format!("index out of range: {n}")),
                        }
                    }
                    (None | Some(Value::Null), _) => {
                        return Err("index of untyped nil".into());
                    }
                    (v, k) => {
                        return Err(format!(
                            "cannot index {} with {}",
                            type_name(&v),
                            type_name(k)
                        ))
                    }
                };
            }
            Ok(v)
        }
        "slice" => {
            let Some((first, idx)) = args.split_first() else {
                return Err("wrong number of args: want at least 1 got 0".into());
            };
            let idx: Vec<usize> = idx
                .iter()
                .map(|i| int(i).map(|i| usize::try_from(i).unwrap_or(usize::MAX)))
                .collect::<Result<_, _>>()?;
            let (from, to) = (idx.first().copied().unwrap_or(0), idx.get(1).copied());
            match first {
                Some(Value::String(x)) => {
                    let to = to.unwrap_or(x.len());
                    x.get(from..to)
                        .map(|p| Some(Value::String(p.into())))
                        .ok_or_else(|| format!("index out of range: {to}"))
                }
                Some(Value::Array(a)) => {
                    let to = to.unwrap_or(a.len());
                    a.get(from..to)
                        .map(|p| Some(Value::Array(p.to_vec())))
                        .ok_or_else(|| format!("index out of range: {to}"))
                }
                other => Err(format!("can't slice item of type {}", type_name(other))),
            }
        }
        "not" => {
            arity(args, 1)?;
            Ok(Some(Value::Bool(!truth(&args[0]))))
        }
        "and" => Ok(args
            .iter()
            .find(|a| !truth(a))
            .or(args.last())
            .cloned()
            .unwrap_or(None)),
        "or" => Ok(args
            .iter()
            .find(|a| truth(a))
            .or(args.last())
            .cloned()
            .unwrap_or(None)),
        "eq" => {
            let Some((first, rest)) = args.split_first() else {
                return Err("missing argument for comparison".into());
            };
            let mut any = false;
            for r in rest {
                any |= compare(first, r)? == Ordering::Equal;
            }
            Ok(Some(Value::Bool(any)))
        }
        "ne" | "lt" | "le" | "gt" | "ge" => {
            arity(args, 2)?;
            let o = compare(&args[0], &args[1])?;
            Ok(Some(Value::Bool(match name {
                "ne" => o != Ordering::Equal,
                "lt" => o == Ordering::Less,
                "le" => o != Ordering::Greater,
                "gt" => o == Ordering::Greater,
                _ => o != Ordering::Less,
            })))
        }
        "print" => {
            let mut out = String::new();
            for (i, a) in args.iter().enumerate() {
                // Go's Sprint: a space between operands when neither is a string.
                let is_str = |v: &Val| matches!(v, Some(Value::String(_)));
                if i > 0 && !is_str(a) && !is_str(&args[i - 1]) {
                    out.push(' ');
                }
                out.push_str(&print(a));
            }
            s(out)
        }
        "println" => {
            let parts: Vec<String> = args.iter().map(print).collect();
            s(format!("{}\n", parts.join(" ")))
        }
        "printf" => {
            let Some((f, rest)) = args.split_first() else {
                return Err("wrong number of args: want at least 1 got 0".into());
            };
            s(printf(string(f)?, rest))
        }
        _ => Err(format!("function {name:?} not defined")),
    }
}

/// Go's `strings.Title`: the first letter of each word upper-cased.
fn title(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut start = true;
    for c in s.chars() {
        if start {
            out.extend(c.to_uppercase());
        } else {
            out.push(c);
        }
        start = !(c.is_alphanumeric() || c == '_' || c == '\'');
    }
    out
}

/// Go's `fmt.Sprintf` for the verbs templates use: `%v %s %d %q %f %x %X %t %%`, with the
/// flags `-` and `0`, a width and a precision.
pub(crate) fn printf(f: &str, args: &[Val]) -> String {
    let mut out = String::new();
    let mut next = args.iter();
    let mut chars = f.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let (mut left, mut zero, mut plus) = (false, false, false);
        while let Some(&fl) = chars.peek() {
            match fl {
                '-' => left = true,
                '0' => zero = true,
                '+' => plus = true,
                ' ' | '#' => {}
                _ => break,
            }
            chars.next();
        }
        let mut width = String::new();
        while let Some(d) = chars.next_if(char::is_ascii_digit) {
            width.push(d);
        }
        let mut precision = None;
        if chars.next_if_eq(&'.').is_some() {
            let mut p = String::new();
            while let Some(d) = chars.next_if(char::is_ascii_digit) {
                p.push(d);
            }
            precision = Some(p.parse::<usize>().unwrap_or(0));
        }
        let Some(verb) = chars.next() else {
            out.push_str("%!(NOVERB)");
            break;
        };
        if verb == '%' {
            out.push('%');
            continue;
        }
        let Some(arg) = next.next() else {
            let _ = write!(out, "%!{verb}(MISSING)");
            continue;
        };
        let bad = || format!("%!{verb}({}={})", type_name(arg), print(arg));
        let body = match (verb, arg) {
            ('v' | 's', _) => {
                let text = print(arg);
                match precision {
                    Some(p) if verb == 's' => text.chars().take(p).collect(),
                    _ => text,
                }
            }
            ('d', Some(Value::Number(n))) if !n.is_f64() => {
                let t = n.to_string();
                if plus && !t.starts_with('-') {
                    format!("+{t}")
                } else {
                    t
                }
            }
            ('f' | 'F', Some(Value::Number(n))) => {
                format!("{:.*}", precision.unwrap_or(6), n.as_f64().unwrap_or(0.0))
            }
            ('t', Some(Value::Bool(b))) => b.to_string(),
            ('q', Some(Value::String(t))) => Value::String(t.clone()).to_string(),
            ('x', Some(Value::Number(n))) if n.as_i64().is_some() => {
                format!("{:x}", n.as_i64().unwrap_or(0))
            }
            ('X', Some(Value::Number(n))) if n.as_i64().is_some() => {
                format!("{:X}", n.as_i64().unwrap_or(0))
            }
            ('x', Some(Value::String(t))) => t.bytes().fold(String::new(), |mut o, b| {
                let _ = write!(o, "{b:02x}");
                o
            }),
            _ => bad(),
        };
        let w = width.parse::<usize>().unwrap_or(0);
        let n = body.chars().count();
        if n >= w {
            out.push_str(&body);
        } else if left {
            out.push_str(&body);
            out.push_str(&" ".repeat(w - n));
        } else if zero && matches!(verb, 'd' | 'f' | 'F' | 'x' | 'X') {
            let (sign, digits) = match body.strip_prefix('-') {
                Some(d) => ("-", d),
                None => ("", body.as_str()),
            };
            out.push_str(sign);
            out.push_str(&"0".repeat(w - n));
            out.push_str(digits);
        } else {
            out.push_str(&" ".repeat(w - n));
            out.push_str(&body);
        }
    }
    let extra: Vec<String> = next
        .map(|a| format!("{}={}", type_name(a), print(a)))
        .collect();
    if !extra.is_empty() {
        let _ = write!(out, "%!(EXTRA {})", extra.join(", "));
    }
    out
}
