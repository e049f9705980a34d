//! Cache misses explained: what each vertex's cache key was made of, recorded per "slot"
//! (the vertex's display name, e.g. `[builder 2/5] RUN make`, which stays the same from one
//! build to the next while the key changes), and a diff against the previous record of the
//! same slot when a vertex has to run again.

use crate::CacheStorage;
use kiln_opgraph::{Op, Vertex};
use serde::{Deserialize, Serialize};

/// What a cache key was made of.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct KeyInputs {
    /// The worker's semantics version.
    pub semantics: String,
    /// The op (JSON), with its inputs' digests.
    pub op: serde_json::Value,
    /// Content key (context checksum), for ops reading outside the graph.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    /// The inputs, in op order.
    pub inputs: Vec<InputRecord>,
}

/// One input of a recorded key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct InputRecord {
    /// The input's display name.
    pub name: String,
    /// Its cache key.
    pub key: String,
    /// Its content key, when it reads from outside the graph (a build context).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
}

/// The slot of a display name: `[stage n/m] KEYWORD` of `[stage n/m] KEYWORD args…` (so
/// a changed command keeps its slot); other names whole.
pub(crate) fn slot_of(name: &str) -> &str {
    let Some(close) = name.find("] ") else {
        return name;
    };
    if !name.starts_with('[') {
        return name;
    }
    let rest = &name[close + 2..];
    match rest.find(' ') {
        Some(sp) => &name[..close + 2 + sp],
        None => name,
    }
}

/// Replaces every `{"vertex": …}` (an [`kiln_opgraph::Input`]) with null, so two ops
/// compare equal when only their inputs differ.
fn blank_inputs(v: &serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match v {
        Value::Object(m) if m.len() == 1 && m.contains_key("vertex") => Value::Null,
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, v)| (k.clone(), blank_inputs(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(blank_inputs).collect()),
        other => other.clone(),
    }
}

fn short(d: &str) -> String {
    match d.split_once(':') {
        Some((alg, hex)) if hex.len() > 12 => format!("{alg}:{}", &hex[..12]),
        _ => d.to_string(),
    }
}

fn env_map(env: &[String]) -> Vec<(String, String)> {
    let mut m: Vec<(String, String)> = Vec::new();
    for e in env {
        let (k, v) = e.split_once('=').unwrap_or((e, ""));
        match m.iter_mut().find(|(mk, _)| mk == k) {
            Some(slot) => slot.1 = v.to_string(),
            None => m.push((k.to_string(), v.to_string())),
        }
    }
    m
}

fn env_diff(old: &[String], new: &[String]) -> Option<String> {
    let (old, new) = (env_map(old), env_map(new));
    let mut changes = Vec::new();
    for (k, v) in &new {
        match old.iter().find(|(ok, _)| ok == k) {
            Some((_, ov)) if ov != v => {
                changes.push(format!("build arg or env {k} changed {ov}→{v}"));
            }
            None => changes.push(format!("build arg or env {k}={v} was added")),
            _ => {}
        }
    }
    for (k, _) in &old {
        if !new.iter().any(|(nk, _)| nk == k) {
            changes.push(format!("build arg or env {k} was removed"));
        }
    }
    (!changes.is_empty()).then(|| changes.join(", "))
}

/// Why the op itself (inputs aside) differs, or `None` when it does not.
fn op_change(old: &serde_json::Value, new: &serde_json::Value) -> Option<String> {
    if blank_inputs(old) == blank_inputs(new) {
        return None;
    }
    let (Ok(o), Ok(n)) = (
        serde_json::from_value::<Op>(old.clone()),
        serde_json::from_value::<Op>(new.clone()),
    ) else {
        return Some("the instruction changed".into());
    };
    Some(match (&o, &n) {
        (
            Op::Image {
                reference: r1,
                digest: d1,
            },
            Op::Image {
                reference: r2,
                digest: d2,
            },
        ) => {
            if r1 == r2 {
                format!("base image digest changed: {} → {}", short(d1), short(d2))
            } else {
                format!("base image changed: {r1} → {r2}")
            }
        }
        (Op::Exec(a), Op::Exec(b)) => {
            if a.args != b.args {
                "command changed".into()
            } else if let Some(d) = env_diff(&a.env, &b.env) {
                d
            } else if a.cwd != b.cwd {
                format!("working directory changed: {} → {}", a.cwd, b.cwd)
            } else if a.user != b.user {
                format!("user changed: {:?} → {:?}", a.user, b.user)
            } else if a.network != b.network {
                "network mode changed".into()
            } else if a.mounts != b.mounts {
                "RUN --mount options changed".into()
            } else {
                "RUN options changed".into()
            }
        }
        (Op::File(_), Op::File(_)) => {
            "the instruction changed (sources, destination or options)".into()
        }
        (Op::Local { .. }, Op::Local { .. }) => "the selected paths changed".into(),
        _ => "the instruction changed".into(),
    })
}

/// Why a vertex with record `cur` (key `key`) runs although its slot had a result `prev`
/// (under `prev_key`).
pub(crate) fn reason(
    cache: &dyn CacheStorage,
    vertex: &Vertex,
    prev_key: &str,
    prev: &KeyInputs,
    key: &str,
    cur: &KeyInputs,
) -> String {
    if prev_key == key {
        return if vertex.meta.ignore_cache {
            "the cache is disabled for this step (--no-cache or --no-cache-filter)".into()
        } else {
            "its cached result is gone (pruned)".into()
        };
    }
    let prefix = if vertex.meta.ignore_cache {
        "the cache is disabled for this step; also "
    } else {
        ""
    };
    if prev.semantics != cur.semantics {
        return format!("{prefix}kiln's build semantics changed (another kiln version)");
    }
    if let Some(r) = op_change(&prev.op, &cur.op) {
        return format!("{prefix}{r}");
    }
    if prev.content != cur.content {
        if let (Some(o), Some(n)) = (&prev.content, &cur.content) {
            if let Some(d) = cache.describe_content_change(o, n) {
                return format!("{prefix}{d}");
            }
        }
        return format!("{prefix}the files it reads changed");
    }
    if prev.inputs.len() == cur.inputs.len() {
        for (p, c) in prev.inputs.iter().zip(&cur.inputs) {
            if p.key == c.key {
                continue;
            }
            if let (Some(o), Some(n)) = (&p.content, &c.content) {
                if o != n {
                    if let Some(d) = cache.describe_content_change(o, n) {
                        return format!("{prefix}{d}");
                    }
                    return format!("{prefix}the files it copies changed");
                }
            }
            return format!("{prefix}an input changed: {}", c.name);
        }
    }
    format!("{prefix}its cache key changed")
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_opgraph::{ExecOp, Input, NetworkMode, VertexDigest};

    fn exec(args: &[&str], env: &[&str], rootfs: &str) -> serde_json::Value {
        serde_json::to_value(Op::Exec(ExecOp {
            rootfs: Input {
                vertex: VertexDigest(rootfs.into()),
            },
            args: args.iter().map(std::string::ToString::to_string).collect(),
            env: env.iter().map(std::string::ToString::to_string).collect(),
            cwd: "/".into(),
            user: String::new(),
            network: NetworkMode::None,
            mounts: vec![],
            security: Default::default(),
        }))
        .unwrap()
    }

    #[test]
    fn slots() {
        assert_eq!(slot_of("[builder 2/5] RUN make all"), "[builder 2/5] RUN");
        assert_eq!(slot_of("[2/3] COPY . /app"), "[2/3] COPY");
        assert_eq!(slot_of("[internal] load build context"), "[internal] load");
        assert_eq!(slot_of("RUN a"), "RUN a");
    }

    #[test]
    fn op_changes_are_named() {
        let a = exec(&["sh", "-c", "make"], &["VERSION=1.2"], "x");
        assert_eq!(
            op_change(&a, &exec(&["sh", "-c", "make"], &["VERSION=1.2"], "y")),
            None
        );
        assert_eq!(
            op_change(&a, &exec(&["sh", "-c", "make"], &["VERSION=1.3"], "x")).as_deref(),
            Some("build arg or env VERSION changed 1.2→1.3")
        );
        assert_eq!(
            op_change(&a, &exec(&["sh", "-c", "make all"], &["VERSION=1.2"], "x")).as_deref(),
            Some("command changed")
        );
        let img = |d: &str| {
            serde_json::to_value(Op::Image {
                reference: "r".into(),
                digest: d.into(),
            })
            .unwrap()
        };
        assert!(op_change(
            &img("sha256:aaaaaaaaaaaaaaaa"),
            &img("sha256:bbbbbbbbbbbbbbbb")
        )
        .unwrap()
        .starts_with("base image digest changed: sha256:aaaaaaaaaaaa → sha256:bbbbbbbbbbbb"));
    }
}
