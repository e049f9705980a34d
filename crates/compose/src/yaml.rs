//! A YAML document as a tree whose every node remembers the file and line it came from.
//!
//! Built from `yaml-rust2`'s event parser (YAML 1.2, the core schema): anchors and aliases are
//! resolved, `<<` merge keys applied, duplicate keys refused, and the `!reset` / `!override`
//! tags of the merge rules kept on the node. Positions stay on every node so an error after
//! interpolation and merging still names the file and line the value was written on.

use crate::error::ComposeError;
use std::collections::HashMap;
use std::sync::Arc;
use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser, Tag as YamlTag};
use yaml_rust2::scanner::{Marker, TScalarStyle};

/// Where a node was written: the file and its 1-based line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pos {
    pub file: Arc<str>,
    pub line: usize,
}

impl std::fmt::Display for Pos {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.file, self.line)
    }
}

/// The merge tags of the Compose Specification (13-merge.md).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MergeTag {
    /// `!reset`: the value (and what earlier files said) is dropped.
    Reset,
    /// `!override`: the value replaces what earlier files said instead of merging with it.
    Override,
}

/// A YAML node with its position.
#[derive(Clone, Debug)]
pub struct Node {
    pub value: Value,
    pub pos: Pos,
    pub tag: Option<MergeTag>,
}

/// A node's value. Mapping keys are strings (scalar keys are written as text), in file order.
#[derive(Clone, Debug)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    Map(Vec<(String, Node)>),
}

impl Node {
    pub fn new(value: Value, pos: Pos) -> Node {
        Node {
            value,
            pos,
            tag: None,
        }
    }

    /// The entry `key` of a mapping node.
    pub fn get(&self, key: &str) -> Option<&Node> {
        match &self.value {
            Value::Map(m) => m.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// The value as text when it is a scalar (numbers and booleans written as YAML would).
    pub fn scalar_text(&self) -> Option<String> {
        match &self.value {
            Value::Str(s) => Some(s.clone()),
            Value::Int(i) => Some(i.to_string()),
            Value::Float(f) => Some(f.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            Value::Null | Value::Seq(_) | Value::Map(_) => None,
        }
    }

    /// The node as JSON (positions and tags dropped) for typed deserialisation.
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value as J;
        match &self.value {
            Value::Null => J::Null,
            Value::Bool(b) => J::Bool(*b),
            Value::Int(i) => J::from(*i),
            Value::Float(f) => serde_json::Number::from_f64(*f).map_or(J::Null, J::Number),
            Value::Str(s) => J::String(s.clone()),
            Value::Seq(items) => J::Array(items.iter().map(Node::to_json).collect()),
            Value::Map(m) => J::Object(m.iter().map(|(k, v)| (k.clone(), v.to_json())).collect()),
        }
    }

    /// The node at a key path (mapping keys and sequence indexes), or the deepest one that
    /// exists on the way there: the best position to report for something wrong at `path`.
    pub fn locate(&self, path: &[PathSeg]) -> &Node {
        let mut node = self;
        for seg in path {
            let next = match (seg, &node.value) {
                (PathSeg::Key(k), Value::Map(_)) => node.get(k),
                (PathSeg::Index(i), Value::Seq(items)) => items.get(*i),
                _ => None,
            };
            match next {
                Some(n) => node = n,
                None => break,
            }
        }
        node
    }
}

/// One step of a key path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PathSeg {
    Key(String),
    Index(usize),
}

/// Writes a key path as `services.web.ports[0]`.
pub fn path_string(path: &[PathSeg]) -> String {
    let mut s = String::new();
    for seg in path {
        match seg {
            PathSeg::Key(k) => {
                if !s.is_empty() {
                    s.push('.');
                }
                s.push_str(k);
            }
            PathSeg::Index(i) => s.push_str(&format!("[{i}]")),
        }
    }
    s
}

/// Parses one YAML document (an empty file is an empty mapping).
pub fn parse(text: &str, file: &Arc<str>) -> Result<Node, ComposeError> {
    let mut b = Builder {
        file: file.clone(),
        stack: Vec::new(),
        anchors: HashMap::new(),
        nodes: 0,
        root: None,
        error: None,
        documents: 0,
    };
    let mut parser = Parser::new_from_str(text);
    if let Err(e) = parser.load(&mut b, true) {
        return Err(ComposeError::Yaml {
            pos: Pos {
                file: file.clone(),
                line: e.marker().line(),
            },
            message: e.info().to_string(),
        });
    }
    if let Some(e) = b.error {
        return Err(e);
    }
    if b.documents > 1 {
        return Err(ComposeError::Yaml {
            pos: Pos {
                file: file.clone(),
                line: 1,
            },
            message: "a compose file holds one YAML document, this one has several".into(),
        });
    }
    Ok(b.root.unwrap_or_else(|| {
        Node::new(
            Value::Map(Vec::new()),
            Pos {
                file: file.clone(),
                line: 1,
            },
        )
    }))
}

enum Open {
    Seq(Node, usize),
    /// The mapping, its anchor, the key read but whose value is not yet, and the keys that
    /// came from `<<` (which keys written in the mapping itself override).
    Map(Node, usize, Option<(String, Pos)>, Vec<String>),
}

struct Builder {
    file: Arc<str>,
    stack: Vec<Open>,
    /// Anchored nodes and their sizes in nodes.
    anchors: HashMap<usize, (Node, usize)>,
    /// Nodes made so far, aliases counted at their expanded size.
    nodes: usize,
    root: Option<Node>,
    error: Option<ComposeError>,
    documents: usize,
}

impl Builder {
    fn pos(&self, mark: Marker) -> Pos {
        Pos {
            file: self.file.clone(),
            line: mark.line(),
        }
    }

    fn fail(&mut self, pos: Pos, message: String) {
        if self.error.is_none() {
            self.error = Some(ComposeError::Yaml { pos, message });
        }
    }

    fn push_value(&mut self, node: Node, anchor: usize) {
        if anchor > 0 {
            let size = node_count(&node);
            self.anchors.insert(anchor, (node.clone(), size));
        }
        match self.stack.last_mut() {
            None => self.root = Some(node),
            Some(Open::Seq(seq, _)) => {
                if let Value::Seq(items) = &mut seq.value {
                    items.push(node);
                }
            }
            Some(Open::Map(_, _, key @ None, _)) => {
                let Some(text) = node
                    .scalar_text()
                    .or_else(|| matches!(node.value, Value::Null).then(String::new))
                else {
                    let pos = node.pos.clone();
                    self.fail(pos, "a mapping key must be a scalar".into());
                    return;
                };
                *key = Some((text, node.pos));
            }
            Some(Open::Map(map, _, key @ Some(_), merged)) => {
                let (k, kpos) = key.take().expect("key present");
                let mut node = node;
                if matches!(node.value, Value::Map(_) | Value::Seq(_)) {
                    // A block collection starts on the line after its key: report the key's.
                    node.pos = kpos.clone();
                }
                let Value::Map(entries) = &mut map.value else {
                    return;
                };
                if k == "<<" && node.tag.is_none() {
                    // Merge keys: entries of the referenced mapping(s) the mapping lacks.
                    let sources: Vec<Node> = match node.value {
                        Value::Seq(items) => items,
                        _ => vec![node],
                    };
                    for src in sources {
                        if let Value::Map(src_entries) = src.value {
                            for (sk, sv) in src_entries {
                                if !entries.iter().any(|(ek, _)| *ek == sk) {
                                    merged.push(sk.clone());
                                    entries.push((sk, sv));
                                }
                            }
                        } else {
                            let message = "`<<` merges mappings only".to_string();
                            self.fail(kpos.clone(), message);
                            return;
                        }
                    }
                    return;
                }
                if let Some(i) = merged.iter().position(|m| *m == k) {
                    merged.remove(i);
                    entries.retain(|(ek, _)| *ek != k);
                } else if entries.iter().any(|(ek, _)| *ek == k) {
                    self.fail(kpos, format!("mapping key {k:?} already defined"));
                    return;
                }
                entries.push((k, node));
            }
        }
    }
}

/// The most nodes a document may make (its own and those aliases copy).
const MAX_NODES: usize = 1_000_000;

fn node_count(n: &Node) -> usize {
    1 + match &n.value {
        Value::Seq(items) => items.iter().map(node_count).sum(),
        Value::Map(m) => m.iter().map(|(_, v)| 1 + node_count(v)).sum(),
        _ => 0,
    }
}

fn merge_tag(tag: Option<&YamlTag>) -> Option<MergeTag> {
    let tag = tag?;
    if tag.handle != "!" {
        return None;
    }
    match tag.suffix.as_str() {
        "reset" => Some(MergeTag::Reset),
        "override" => Some(MergeTag::Override),
        _ => None,
    }
}

/// A plain scalar as the YAML 1.2 core schema types it.
fn resolve_plain(s: &str) -> Value {
    match s {
        "" | "~" | "null" | "Null" | "NULL" => return Value::Null,
        "true" | "True" | "TRUE" => return Value::Bool(true),
        "false" | "False" | "FALSE" => return Value::Bool(false),
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => {
            return Value::Float(f64::INFINITY)
        }
        "-.inf" | "-.Inf" | "-.INF" => return Value::Float(f64::NEG_INFINITY),
        ".nan" | ".NaN" | ".NAN" => return Value::Float(f64::NAN),
        _ => {}
    }
    let digits = |t: &str, radix: u32| !t.is_empty() && t.chars().all(|c| c.is_digit(radix));
    if let Some(h) = s.strip_prefix("0x") {
        if digits(h, 16) {
            if let Ok(i) = i64::from_str_radix(h, 16) {
                return Value::Int(i);
            }
        }
    }
    if let Some(o) = s.strip_prefix("0o") {
        if digits(o, 8) {
            if let Ok(i) = i64::from_str_radix(o, 8) {
                return Value::Int(i);
            }
        }
    }
    let unsigned = s.strip_prefix(['-', '+']).unwrap_or(s);
    if digits(unsigned, 10) {
        if let Ok(i) = s.parse::<i64>() {
            return Value::Int(i);
        }
    }
    let is_float = {
        let (mantissa, exp) = match unsigned.find(['e', 'E']) {
            Some(i) => (&unsigned[..i], Some(&unsigned[i + 1..])),
            None => (unsigned, None),
        };
        let exp_ok = exp.is_none_or(|e| digits(e.strip_prefix(['-', '+']).unwrap_or(e), 10));
        let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
        exp_ok
            && (mantissa.contains('.') || exp.is_some())
            && (digits(int, 10) || digits(frac, 10))
            && (int.is_empty() || digits(int, 10))
            && (frac.is_empty() || digits(frac, 10))
    };
    if is_float {
        if let Ok(f) = s.parse::<f64>() {
            return Value::Float(f);
        }
    }
    Value::Str(s.to_string())
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        if self.error.is_some() {
            return;
        }
        let pos = self.pos(mark);
        self.nodes += 1;
        match ev {
            Event::DocumentStart => self.documents += 1,
            Event::Scalar(text, style, anchor, tag) => {
                let value = match (style, tag.as_ref()) {
                    (_, Some(t)) if t.handle == "tag:yaml.org,2002:" && t.suffix == "str" => {
                        Value::Str(text)
                    }
                    (TScalarStyle::Plain, _) => resolve_plain(&text),
                    _ => Value::Str(text),
                };
                let mut node = Node::new(value, pos);
                node.tag = merge_tag(tag.as_ref());
                self.push_value(node, anchor);
            }
            Event::SequenceStart(anchor, tag) => {
                let mut node = Node::new(Value::Seq(Vec::new()), pos);
                node.tag = merge_tag(tag.as_ref());
                self.stack.push(Open::Seq(node, anchor));
            }
            Event::MappingStart(anchor, tag) => {
                let mut node = Node::new(Value::Map(Vec::new()), pos);
                node.tag = merge_tag(tag.as_ref());
                self.stack.push(Open::Map(node, anchor, None, Vec::new()));
            }
            Event::SequenceEnd | Event::MappingEnd => {
                if let Some(Open::Seq(node, anchor) | Open::Map(node, anchor, _, _)) =
                    self.stack.pop()
                {
                    self.push_value(node, anchor);
                }
            }
            Event::Alias(id) => match self.anchors.get(&id) {
                Some((node, size)) => {
                    // Aliases of aliases grow a document exponentially ("billion laughs"):
                    // what they expand to is counted against a bound no compose file nears.
                    self.nodes += size;
                    if self.nodes > MAX_NODES {
                        let message = format!(
                            "the document expands to more than {MAX_NODES} nodes through aliases"
                        );
                        self.fail(pos, message);
                        return;
                    }
                    let node = node.clone();
                    self.push_value(node, 0);
                }
                None => self.fail(pos, "alias of an unknown anchor".into()),
            },
            Event::Nothing | Event::StreamStart | Event::StreamEnd | Event::DocumentEnd => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Node {
        parse(s, &Arc::from("t.yaml")).unwrap()
    }

    #[test]
    fn positions_scalars_anchors_and_merge_keys() {
        let n = p("x-base: &b\n  image: a\n  n: 3\nservices:\n  web:\n    <<: *b\n    n: 4\n    f: 1.5\n    s: '5'\n    t: ~\n");
        let web = n.get("services").unwrap().get("web").unwrap();
        assert_eq!(
            web.pos.line, 5,
            "a block collection is placed on its key's line"
        );
        assert!(matches!(web.get("image").unwrap().value, Value::Str(ref s) if s == "a"));
        assert!(matches!(web.get("n").unwrap().value, Value::Int(4)));
        assert!(matches!(web.get("f").unwrap().value, Value::Float(_)));
        assert!(matches!(web.get("s").unwrap().value, Value::Str(_)));
        assert!(matches!(web.get("t").unwrap().value, Value::Null));
        assert_eq!(web.get("f").unwrap().pos.line, 8);
    }

    #[test]
    fn duplicate_keys_and_bad_yaml_name_the_line() {
        let e = parse("a: 1\nb: 2\na: 3\n", &Arc::from("c.yaml")).unwrap_err();
        assert_eq!(e.to_string(), "c.yaml:3: mapping key \"a\" already defined");
        let e = parse("a: [1\n", &Arc::from("c.yaml")).unwrap_err();
        assert!(e.to_string().starts_with("c.yaml:"), "{e}");
    }

    #[test]
    fn alias_bombs_and_deep_nesting_are_refused() {
        let mut text = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
        let mut prev = "a".to_string();
        for i in 0..8 {
            let refs = vec![format!("*{prev}"); 10].join(", ");
            text.push_str(&format!("b{i}: &b{i} [{refs}]\n"));
            prev = format!("b{i}");
        }
        let e = parse(&text, &Arc::from("bomb.yaml")).unwrap_err();
        assert!(e.to_string().contains("expands to more than"), "{e}");
        let deep = format!("a: {}", "[".repeat(100_000));
        assert!(parse(&deep, &Arc::from("deep.yaml")).is_err());
    }

    #[test]
    fn merge_tags_are_kept() {
        let n = p("a: !reset []\nb: !override {x: 1}\n");
        assert_eq!(n.get("a").unwrap().tag, Some(MergeTag::Reset));
        assert_eq!(n.get("b").unwrap().tag, Some(MergeTag::Override));
    }
}
