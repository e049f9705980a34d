//! Several `-f` files into one tree, by the Compose Specification's merge rules (13-merge.md):
//! mappings merge key by key, scalars are replaced, sequences are appended — except `command`,
//! `entrypoint` and `healthcheck.test`, which are replaced; `ports` (appended without
//! duplicates), `volumes` (one per container path), `secrets` and `configs` (one per target),
//! which are unique resources; and the fields written either as a list or a mapping
//! (`environment`, `labels`, `build.args`, `depends_on`, service `networks`), which are merged as
//! mappings. `!reset` drops a value, `!override` replaces it whole.
//!
//! Each file's services are first brought to one shape ([`canonical_service`]) so that a list
//! in one file merges with a mapping in another.

use crate::yaml::{MergeTag, Node, Value};

/// Merges `over` (a later file) onto `base`.
pub fn merge_files(base: Node, over: Node) -> Node {
    merge_at(base, over, &mut Vec::new())
}

/// Brings the fields of one service written in several shapes to the one merging works on.
pub fn canonical_service(service: &mut Node) {
    let Value::Map(entries) = &mut service.value else {
        return;
    };
    for (key, value) in entries.iter_mut() {
        match key.as_str() {
            "environment" | "labels" | "annotations" | "sysctls" => list_to_map(value, '='),
            "depends_on" => {
                if let Value::Seq(items) = &value.value {
                    let map = items
                        .iter()
                        .filter_map(|i| {
                            let name = i.scalar_text()?;
                            let cond =
                                Node::new(Value::Str("service_started".into()), i.pos.clone());
                            let entry = Node::new(
                                Value::Map(vec![("condition".into(), cond)]),
                                i.pos.clone(),
                            );
                            Some((name, entry))
                        })
                        .collect();
                    value.value = Value::Map(map);
                }
            }
            "networks" => {
                if let Value::Seq(items) = &value.value {
                    let map = items
                        .iter()
                        .filter_map(|i| {
                            Some((i.scalar_text()?, Node::new(Value::Null, i.pos.clone())))
                        })
                        .collect();
                    value.value = Value::Map(map);
                }
            }
            "build" => {
                if let Value::Str(context) = &value.value {
                    let ctx = Node::new(Value::Str(context.clone()), value.pos.clone());
                    value.value = Value::Map(vec![("context".into(), ctx)]);
                }
                if let Value::Map(build) = &mut value.value {
                    for (k, v) in build.iter_mut() {
                        if k == "args" || k == "labels" {
                            list_to_map(v, '=');
                        }
                    }
                }
            }
            "dns" | "dns_search" | "tmpfs" | "env_file" => {
                if matches!(value.value, Value::Str(_)) {
                    let item = value.clone();
                    value.value = Value::Seq(vec![item]);
                }
            }
            _ => {}
        }
    }
}

/// `["K=V", "K"]` → `{K: V, K: null}`.
fn list_to_map(node: &mut Node, sep: char) {
    let Value::Seq(items) = &node.value else {
        return;
    };
    let mut map: Vec<(String, Node)> = Vec::new();
    for item in items {
        let Some(text) = item.scalar_text() else {
            // Left as written: the typed layer reports the wrong shape.
            return;
        };
        let (k, v) = match text.split_once(sep) {
            Some((k, v)) => (k.to_string(), Value::Str(v.to_string())),
            None => (text.clone(), Value::Null),
        };
        map.retain(|(ek, _)| *ek != k);
        map.push((k, Node::new(v, item.pos.clone())));
    }
    node.value = Value::Map(map);
}

fn merge_at(base: Node, over: Node, path: &mut Vec<String>) -> Node {
    if over.tag == Some(MergeTag::Override) {
        return over;
    }
    let at = |p: &[String], pat: &[&str]| {
        p.len() == pat.len() && p.iter().zip(pat).all(|(a, b)| *b == "*" || a == b)
    };
    match (base.value, over.value) {
        (Value::Map(mut b), Value::Map(o)) => {
            for (k, v) in o {
                let existing = b.iter().position(|(bk, _)| *bk == k);
                if v.tag == Some(MergeTag::Reset) {
                    if let Some(i) = existing {
                        b.remove(i);
                    }
                    continue;
                }
                match existing {
                    Some(i) => {
                        let (_, old) = b.remove(i);
                        path.push(k.clone());
                        let merged = merge_at(old, v, path);
                        path.pop();
                        b.insert(i, (k, merged));
                    }
                    None => b.push((k, v)),
                }
            }
            Node {
                value: Value::Map(b),
                pos: base.pos,
                tag: None,
            }
        }
        (Value::Seq(b), Value::Seq(o))
            if !at(path, &["services", "*", "command"])
                && !at(path, &["services", "*", "entrypoint"])
                && !at(path, &["services", "*", "healthcheck", "test"]) =>
        {
            let key: fn(&Node) -> Option<String> = if at(path, &["services", "*", "volumes"]) {
                volume_target
            } else if at(path, &["services", "*", "secrets"])
                || at(path, &["services", "*", "configs"])
            {
                file_target
            } else {
                |_| None
            };
            let mut items = b;
            for item in o {
                let k = key(&item);
                if let Some(k) = &k {
                    items.retain(|e| key(e).as_ref() != Some(k));
                } else if items.iter().any(|e| e.to_json() == item.to_json()) {
                    continue;
                }
                items.push(item);
            }
            Node {
                value: Value::Seq(items),
                pos: base.pos,
                tag: None,
            }
        }
        (_, value) => Node {
            value,
            pos: over.pos,
            tag: None,
        },
    }
}

/// The container path of a service volume (short `src:dst:mode` or long `target:`).
fn volume_target(n: &Node) -> Option<String> {
    match &n.value {
        Value::Str(s) => {
            let parts: Vec<&str> = s.split(':').collect();
            Some(if parts.len() == 1 { parts[0] } else { parts[1] }.to_string())
        }
        Value::Map(_) => n.get("target")?.scalar_text(),
        _ => None,
    }
}

/// The target of a service secret or config (its source when no target is given).
fn file_target(n: &Node) -> Option<String> {
    match &n.value {
        Value::Str(s) => Some(s.clone()),
        Value::Map(_) => n.get("target").or_else(|| n.get("source"))?.scalar_text(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::yaml::parse;
    use std::sync::Arc;

    fn load(text: &str) -> Node {
        let mut n = parse(text, &Arc::from("f.yaml")).unwrap();
        if let Some(Value::Map(services)) = n.get("services").map(|s| s.value.clone()) {
            let services = services
                .into_iter()
                .map(|(k, mut v)| {
                    canonical_service(&mut v);
                    (k, v)
                })
                .collect();
            if let Value::Map(top) = &mut n.value {
                for (k, v) in top.iter_mut() {
                    if k == "services" {
                        v.value = Value::Map(services);
                        break;
                    }
                }
            }
        }
        n
    }

    #[test]
    fn spec_rules() {
        let a = load(
            "services:\n  web:\n    image: a\n    command: [a, b]\n    environment: [X=1, Y=2]\n    ports: ['80:80']\n    volumes: ['data:/data', '/src:/app']\n    depends_on: [db]\n    cap_add: [NET_ADMIN]\n    labels: {keep: me}\n",
        );
        let b = load(
            "services:\n  web:\n    image: b\n    command: [c]\n    environment:\n      Y: '3'\n      Z: '4'\n    ports: ['80:80', '443:443']\n    volumes: ['other:/data']\n    depends_on:\n      cache:\n        condition: service_healthy\n    cap_add: [SYS_TIME]\n    labels: !reset {}\n",
        );
        let m = merge_files(a, b).to_json();
        let web = &m["services"]["web"];
        assert_eq!(web["image"], "b");
        assert_eq!(web["command"], serde_json::json!(["c"]));
        assert_eq!(
            web["environment"],
            serde_json::json!({"X": "1", "Y": "3", "Z": "4"})
        );
        assert_eq!(web["ports"], serde_json::json!(["80:80", "443:443"]));
        assert_eq!(
            web["volumes"],
            serde_json::json!(["/src:/app", "other:/data"])
        );
        assert_eq!(web["cap_add"], serde_json::json!(["NET_ADMIN", "SYS_TIME"]));
        assert_eq!(
            web["depends_on"],
            serde_json::json!({"db": {"condition": "service_started"}, "cache": {"condition": "service_healthy"}})
        );
        assert!(web.get("labels").is_none());
    }

    #[test]
    fn override_tag_replaces() {
        let a = load("services:\n  web:\n    environment: {A: '1'}\n");
        let b = load("services:\n  web:\n    environment: !override {B: '2'}\n");
        let m = merge_files(a, b).to_json();
        assert_eq!(
            m["services"]["web"]["environment"],
            serde_json::json!({"B": "2"})
        );
    }
}
