//! Interpolation (the Compose Specification's 12-interpolation.md), applied to every string
//! value of a file before it is typed: `$VAR`, `${VAR}`, `${VAR:-default}`, `${VAR-default}`,
//! `${VAR:?error}`, `${VAR?error}`, `${VAR:+alt}`, `${VAR+alt}` (defaults and alternatives may
//! hold further interpolation), and `$$` for a literal `$`. Mapping keys are not interpolated.

use crate::error::ComposeError;
use crate::yaml::{path_string, Node, PathSeg, Value};

/// What went wrong in one string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InterpError {
    /// `${VAR:?message}` / `${VAR?message}` with VAR unset (or empty for `:?`).
    Required { var: String, message: String },
    /// A `$` that starts no valid form (`${`, `${}`, `$!`).
    Invalid,
}

/// Interpolates one string. `lookup` gives a variable's value; `unset` receives the names of
/// variables that were unset and defaulted to a blank string.
pub fn interpolate(
    s: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
    unset: &mut Vec<String>,
) -> Result<String, InterpError> {
    let mut out = String::with_capacity(s.len());
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < s.len() {
        let Some(off) = s[i..].find('$') else {
            out.push_str(&s[i..]);
            break;
        };
        out.push_str(&s[i..i + off]);
        i += off + 1;
        match bytes.get(i) {
            Some(b'$') => {
                out.push('$');
                i += 1;
            }
            Some(b'{') => {
                let end = closing_brace(s, i + 1).ok_or(InterpError::Invalid)?;
                out.push_str(&braced(&s[i + 1..end], lookup, unset)?);
                i = end + 1;
            }
            Some(c) if c.is_ascii_alphabetic() || *c == b'_' => {
                let len = name_len(&s[i..]);
                let name = &s[i..i + len];
                out.push_str(&value_or_blank(name, lookup, unset));
                i += len;
            }
            _ => return Err(InterpError::Invalid),
        }
    }
    Ok(out)
}

fn name_len(s: &str) -> usize {
    s.bytes()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == b'_')
        .count()
}

/// The index of the `}` closing a `${` whose body starts at `start` (nested `${…}` skipped).
fn closing_brace(s: &str, start: usize) -> Option<usize> {
    let bytes = s.as_bytes();
    let mut depth = 0usize;
    let mut i = start;
    while i < bytes.len() {
        match bytes[i] {
            b'$' if bytes.get(i + 1) == Some(&b'$') => i += 1,
            b'$' if bytes.get(i + 1) == Some(&b'{') => {
                depth += 1;
                i += 1;
            }
            b'}' if depth == 0 => return Some(i),
            b'}' => depth -= 1,
            _ => {}
        }
        i += 1;
    }
    None
}

fn value_or_blank(
    name: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
    unset: &mut Vec<String>,
) -> String {
    lookup(name).unwrap_or_else(|| {
        if !unset.iter().any(|u| u == name) {
            unset.push(name.to_string());
        }
        String::new()
    })
}

fn braced(
    body: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
    unset: &mut Vec<String>,
) -> Result<String, InterpError> {
    let len = name_len(body);
    let name = &body[..len];
    if name.is_empty() || name.as_bytes()[0].is_ascii_digit() {
        return Err(InterpError::Invalid);
    }
    let rest = &body[len..];
    if rest.is_empty() {
        return Ok(value_or_blank(name, lookup, unset));
    }
    let value = lookup(name);
    let (colon, rest) = match rest.strip_prefix(':') {
        Some(r) => (true, r),
        None => (false, rest),
    };
    let op = rest.chars().next();
    let arg = &rest[op.map_or(0, char::len_utf8)..];
    // `:` tests "set and not empty", without it only "set".
    let present = match &value {
        Some(v) => !colon || !v.is_empty(),
        None => false,
    };
    match op {
        Some('-') => {
            if present {
                Ok(value.unwrap_or_default())
            } else {
                interpolate(arg, lookup, unset)
            }
        }
        Some('+') => {
            if present {
                interpolate(arg, lookup, unset)
            } else {
                Ok(String::new())
            }
        }
        Some('?') => {
            if present {
                Ok(value.unwrap_or_default())
            } else {
                let message = interpolate(arg, lookup, unset)?;
                Err(InterpError::Required {
                    var: name.to_string(),
                    message,
                })
            }
        }
        _ => Err(InterpError::Invalid),
    }
}

/// Interpolates every string value under `node` in place; `path` is the node's key path (for
/// errors). Unset variables are added to `unset`.
pub fn interpolate_tree(
    node: &mut Node,
    path: &mut Vec<PathSeg>,
    lookup: &dyn Fn(&str) -> Option<String>,
    unset: &mut Vec<String>,
) -> Result<(), ComposeError> {
    match &mut node.value {
        Value::Str(s) => {
            if s.contains('$') {
                match interpolate(s, lookup, unset) {
                    Ok(v) => *s = v,
                    Err(InterpError::Required { var, message }) => {
                        return Err(ComposeError::RequiredVariable {
                            pos: node.pos.clone(),
                            var,
                            message,
                        })
                    }
                    Err(InterpError::Invalid) => {
                        return Err(ComposeError::InvalidInterpolation {
                            pos: node.pos.clone(),
                            path: path_string(path),
                            value: s.clone(),
                        })
                    }
                }
            }
        }
        Value::Seq(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                path.push(PathSeg::Index(i));
                let r = interpolate_tree(item, path, lookup, unset);
                path.pop();
                r?;
            }
        }
        Value::Map(entries) => {
            for (k, v) in entries.iter_mut() {
                if k.starts_with("x-") && path.len() <= 2 {
                    // Extensions are not the model's: left as written.
                    continue;
                }
                path.push(PathSeg::Key(k.clone()));
                let r = interpolate_tree(v, path, lookup, unset);
                path.pop();
                r?;
            }
        }
        Value::Null | Value::Bool(_) | Value::Int(_) | Value::Float(_) => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "SET" => Some("value".into()),
            "EMPTY" => Some(String::new()),
            "OTHER" => Some("other".into()),
            _ => None,
        }
    }

    fn i(s: &str) -> Result<String, InterpError> {
        interpolate(s, &env, &mut Vec::new())
    }

    #[test]
    fn every_form() {
        assert_eq!(i("a $SET b").unwrap(), "a value b");
        assert_eq!(i("${SET}x").unwrap(), "valuex");
        assert_eq!(i("$SET_x").unwrap(), "");
        assert_eq!(i("${UNSET:-def}").unwrap(), "def");
        assert_eq!(i("${EMPTY:-def}").unwrap(), "def");
        assert_eq!(i("${EMPTY-def}").unwrap(), "");
        assert_eq!(i("${UNSET-def}").unwrap(), "def");
        assert_eq!(i("${SET:-def}").unwrap(), "value");
        assert_eq!(i("${SET:+alt}").unwrap(), "alt");
        assert_eq!(i("${EMPTY:+alt}").unwrap(), "");
        assert_eq!(i("${EMPTY+alt}").unwrap(), "alt");
        assert_eq!(i("${UNSET+alt}").unwrap(), "");
        assert_eq!(i("${SET:?boom}").unwrap(), "value");
        assert_eq!(i("${EMPTY?boom}").unwrap(), "");
        assert_eq!(i("${UNSET:-${OTHER}}").unwrap(), "other");
        assert_eq!(i("${UNSET:-${ALSO:-x$$y}}").unwrap(), "x$y");
        assert_eq!(i("$$SET $${SET}").unwrap(), "$SET ${SET}");
        assert_eq!(i("no dollar").unwrap(), "no dollar");
    }

    #[test]
    fn errors() {
        assert_eq!(
            i("${UNSET:?must be set}"),
            Err(InterpError::Required {
                var: "UNSET".into(),
                message: "must be set".into()
            })
        );
        assert_eq!(
            i("${EMPTY:?empty}"),
            Err(InterpError::Required {
                var: "EMPTY".into(),
                message: "empty".into()
            })
        );
        assert!(matches!(i("${UNSET?}"), Err(InterpError::Required { .. })));
        for bad in [
            "${SET",
            "${}",
            "$!",
            "a $",
            "${1A}",
            "${SET:x}",
            "${A€}",
            "$€",
            "${€}",
            "${A:€x}",
            "${A:}",
        ] {
            assert_eq!(i(bad), Err(InterpError::Invalid), "{bad}");
        }
    }

    #[test]
    fn unset_variables_are_reported_once() {
        let mut unset = Vec::new();
        let v = interpolate("$A ${A} ${B:-b} $C", &env, &mut unset).unwrap();
        assert_eq!(v, "  b ");
        assert_eq!(unset, vec!["A".to_string(), "C".to_string()]);
    }
}
