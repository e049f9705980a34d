//! The normalised model as YAML, in the layout `docker compose config` prints (two-space
//! indentation, list items indented under their key, strings quoted only where plain text
//! would read as something else). Written here from the JSON form rather than through a YAML
//! serialiser: the output is small, and its exact shape is what the snapshot tests pin.

use serde_json::Value as J;

/// Top-level keys in Compose's order; everything below is in key order.
const TOP_ORDER: [&str; 6] = [
    "name", "services", "networks", "volumes", "secrets", "configs",
];

/// The project (as JSON) written as YAML.
pub fn to_yaml(project: &J) -> String {
    let mut out = String::new();
    if let J::Object(top) = project {
        for key in TOP_ORDER {
            if let Some(v) = top.get(key) {
                entry(&mut out, 0, key, v);
            }
        }
        for (k, v) in top {
            if !TOP_ORDER.contains(&k.as_str()) {
                entry(&mut out, 0, k, v);
            }
        }
    }
    out
}

fn indent(out: &mut String, n: usize) {
    out.extend(std::iter::repeat_n(' ', n));
}

fn entry(out: &mut String, depth: usize, key: &str, v: &J) {
    indent(out, depth);
    out.push_str(&scalar_str(key));
    out.push(':');
    match v {
        J::Object(m) if !m.is_empty() => {
            out.push('\n');
            for (k, v) in m {
                entry(out, depth + 2, k, v);
            }
        }
        J::Array(a) if !a.is_empty() => {
            out.push('\n');
            for item in a {
                seq_item(out, depth + 2, item);
            }
        }
        _ => {
            out.push(' ');
            out.push_str(&inline(v));
            out.push('\n');
        }
    }
}

fn seq_item(out: &mut String, depth: usize, v: &J) {
    indent(out, depth);
    out.push_str("- ");
    match v {
        J::Object(m) if !m.is_empty() => {
            let mut first = true;
            for (k, v) in m {
                if first {
                    // The first entry shares the dash's line.
                    let mut line = String::new();
                    entry(&mut line, 0, k, v);
                    let mut lines = line.lines();
                    out.push_str(lines.next().unwrap_or(""));
                    out.push('\n');
                    for l in lines {
                        indent(out, depth + 2);
                        out.push_str(l);
                        out.push('\n');
                    }
                    first = false;
                } else {
                    entry(out, depth + 2, k, v);
                }
            }
        }
        J::Array(a) if !a.is_empty() => {
            out.push('\n');
            for item in a {
                seq_item(out, depth + 4, item);
            }
        }
        _ => {
            out.push_str(&inline(v));
            out.push('\n');
        }
    }
}

fn inline(v: &J) -> String {
    match v {
        J::Null => "null".into(),
        J::Bool(b) => b.to_string(),
        J::Number(n) => n.to_string(),
        J::String(s) => scalar_str(s),
        J::Array(_) => "[]".into(),
        J::Object(_) => "{}".into(),
    }
}

/// A string as a plain scalar when it reads back as the same string, else double-quoted.
pub fn scalar_str(s: &str) -> String {
    // Plain when YAML reads the text back as this very string (no other type, no
    // indicator, comment or structure), else double-quoted (JSON's escapes are YAML's).
    let plain_ok = !s.is_empty()
        && !s.chars().any(char::is_control)
        && matches!(
            crate::yaml::parse(s, &std::sync::Arc::from("")).map(|n| n.value),
            Ok(crate::yaml::Value::Str(ref t)) if t == s
        );
    if plain_ok {
        s.to_string()
    } else {
        serde_json::to_string(s).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(scalar_str("nginx:latest"), "nginx:latest");
        assert_eq!(scalar_str("8080"), "\"8080\"");
        assert_eq!(scalar_str("true"), "\"true\"");
        assert_eq!(scalar_str(""), "\"\"");
        assert_eq!(scalar_str("a: b"), "\"a: b\"");
        assert_eq!(scalar_str("line\nbreak"), "\"line\\nbreak\"");
        assert_eq!(scalar_str("-x"), "-x");
        assert_eq!(scalar_str("- x"), "\"- x\"");
        assert_eq!(scalar_str("/run/x y"), "/run/x y");
    }

    #[test]
    fn layout() {
        let v = serde_json::json!({"services": {"a": {"ports": [{"target": 80, "published": "8080"}], "command": ["sh", "-c"], "e": {}}}, "name": "p"});
        assert_eq!(
            to_yaml(&v),
            "name: p\nservices:\n  a:\n    command:\n      - sh\n      - -c\n    e: {}\n    ports:\n      - published: \"8080\"\n        target: 80\n"
        );
    }
}
