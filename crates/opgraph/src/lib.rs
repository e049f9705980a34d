//! The op graph: what a build is, as the solver sees it (BuildKit's LLB idea).
//!
//! A [`Definition`] is a Merkle DAG of [`Vertex`]es. Each vertex is an [`Op`] plus metadata;
//! its identity, [`VertexDigest`], is the blake3 hash of the op's canonical encoding, and an
//! op embeds its inputs' digests, so equal subgraphs have equal digests and are solved once.
//! Everything that must not change a vertex's identity (display name, source location,
//! whether to ignore the cache) lives in [`VertexMeta`], beside the op, never inside it.
//!
//! Key design decision: the canonical encoding is JSON produced by serde from types that hold
//! no maps with unstable order (only `Vec`s and `BTreeMap`s), prefixed by a version tag
//! ([`ENCODING_VERSION`]). Changing any op type changes digests, and with them every cache
//! key: bump the version tag in the same commit.
#![deny(missing_docs)]

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

pub mod pattern;

/// Version tag mixed into every vertex digest. Bump it whenever [`Op`]'s encoding changes.
pub const ENCODING_VERSION: &str = "kiln-op-v2";

/// The identity of a vertex: `blake3:<hex>` of its op's canonical encoding.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct VertexDigest(pub String);

impl fmt::Display for VertexDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A reference from an op to the output of another vertex.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Input {
    /// The vertex whose output is used.
    pub vertex: VertexDigest,
}

/// Network mode of an exec op.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum NetworkMode {
    /// The builder's default (a private namespace; today the same as `None`).
    #[default]
    Default,
    /// Only a loopback interface.
    None,
    /// The host's network namespace.
    Host,
}

/// What a vertex does.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Op {
    /// An empty filesystem (`FROM scratch`).
    Scratch,
    /// An image's filesystem. `reference` is the normalised name; `digest` pins the manifest
    /// the frontend resolved, so a moved tag changes the vertex.
    Image {
        /// Normalised reference, e.g. `127.0.0.1:5000/busybox:latest`.
        reference: String,
        /// `sha256:…` of the resolved manifest.
        digest: String,
    },
    /// Files from the host: a build context (`name` = `context`) or a named
    /// `--build-context`. Only paths matching `include` (all when empty) and not excluded by
    /// `exclude` (`.dockerignore` patterns, see [`pattern`]) are visible. The solver mixes a
    /// checksum of that content into the cache key; the op itself never names the host path.
    Local {
        /// Name of the local source.
        name: String,
        /// Paths (relative to the source root, may hold globs) that are read.
        include: Vec<String>,
        /// `.dockerignore`-style patterns that hide files.
        exclude: Vec<String>,
    },
    /// A file fetched over HTTP(S) (`ADD URL`): the output is a filesystem holding only
    /// `/<filename>`. With `checksum` the content is verified and is the cache key; without
    /// it the fetched content is.
    Http {
        /// The URL.
        url: String,
        /// `sha256:…` the content must have (`ADD --checksum`).
        checksum: Option<String>,
        /// Name of the file in the output (from the URL's last path segment).
        filename: String,
    },
    /// Run a process on a copy of `rootfs`; the output is `rootfs` plus what the process
    /// changed.
    Exec(ExecOp),
    /// Filesystem actions on a copy of `base`; the output is `base` plus the changes.
    File(FileOp),
}

/// A process run in a sandbox (a Dockerfile `RUN`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ExecOp {
    /// The root filesystem the process runs on.
    pub rootfs: Input,
    /// argv.
    pub args: Vec<String>,
    /// `KEY=value` environment, in order.
    pub env: Vec<String>,
    /// Working directory (absolute); created if missing.
    pub cwd: String,
    /// `user`, `uid`, `user:group` or `uid:gid`; empty means root.
    pub user: String,
    /// Network mode.
    pub network: NetworkMode,
    /// `RUN --mount`s, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mounts: Vec<ExecMount>,
    /// `RUN --security`.
    #[serde(default, skip_serializing_if = "is_default")]
    pub security: Security,
}

fn is_default<T: Default + PartialEq>(t: &T) -> bool {
    *t == T::default()
}

/// `RUN --security`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Security {
    /// The default sandbox.
    #[default]
    Sandbox,
    /// All capabilities, no seccomp (needs `--allow security.insecure`).
    Insecure,
}

/// One `RUN --mount`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ExecMount {
    /// Absolute path in the container.
    pub target: String,
    /// What is mounted.
    pub kind: MountKind,
}

/// Who may use a cache mount at the same time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum CacheSharing {
    /// Concurrent writers share one directory.
    #[default]
    Shared,
    /// A concurrent writer gets a new directory.
    Private,
    /// Writers wait for each other.
    Locked,
}

/// The kinds of `RUN --mount`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MountKind {
    /// `type=bind`: a path of another vertex's output (the context by default), read-only
    /// unless `readwrite` (writes are then thrown away).
    Bind {
        /// Where from (a `Local` context or a stage / image filesystem).
        source: Input,
        /// Path inside the source.
        path: String,
        /// `rw`.
        readwrite: bool,
    },
    /// `type=cache`: a directory kept across builds under the store, by `id`. Its content is
    /// never part of a cache key or a layer.
    Cache {
        /// Cache id (defaults to the target).
        id: String,
        /// Sharing mode.
        sharing: CacheSharing,
        /// Seed the cache from this vertex's output on first use (`from=`).
        from: Option<Input>,
        /// Path inside `from` (`source=`).
        path: String,
        /// Mode of a created cache dir.
        mode: u32,
        /// Owner of a created cache dir.
        uid: u32,
        /// Group of a created cache dir.
        gid: u32,
        /// `ro`.
        readonly: bool,
    },
    /// `type=tmpfs`.
    Tmpfs {
        /// Size limit in bytes.
        size: Option<u64>,
    },
    /// `type=secret`: the secret `id` as a file (default target `/run/secrets/<id>`); its
    /// value never reaches a cache key or a layer.
    Secret {
        /// Secret id.
        id: String,
        /// Fail when the secret was not given.
        required: bool,
        /// File mode.
        mode: u32,
        /// Owner.
        uid: u32,
        /// Group.
        gid: u32,
    },
}

/// A list of filesystem actions (COPY, ADD, WORKDIR's mkdir).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct FileOp {
    /// The filesystem the actions change.
    pub base: Input,
    /// Applied in order.
    pub actions: Vec<FileAction>,
}

/// Ownership for created files.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Chown {
    /// User name or numeric id, resolved against the base's `/etc/passwd`.
    pub user: String,
    /// Group name or numeric id; `None` means the user's primary group (or the uid when
    /// numeric).
    pub group: Option<String>,
}

/// One filesystem action.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FileAction {
    /// Copy from another vertex's output (a `Local` context or a stage / image filesystem).
    Copy(CopyAction),
    /// Create a file with the given content (`COPY <<EOF /path`).
    Mkfile {
        /// Absolute path.
        path: String,
        /// Content.
        data: String,
        /// Permission bits.
        mode: u32,
        /// Owner.
        chown: Option<Chown>,
    },
    /// Create a directory (and its parents), as WORKDIR does.
    Mkdir {
        /// Absolute path.
        path: String,
        /// Permission bits.
        mode: u32,
        /// Owner of created directories.
        chown: Option<Chown>,
    },
}

/// Docker's COPY/ADD semantics for one instruction.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct CopyAction {
    /// Where the sources come from.
    pub source: Input,
    /// Source paths relative to the source's root; may hold glob patterns (`*`, `?`, `[...]`).
    pub src: Vec<String>,
    /// Absolute destination. A trailing `/` means "into this directory".
    pub dest: String,
    /// Owner of what is copied (`--chown`); `None` keeps 0:0 for context files and the
    /// source's owners for stage/image files, as Docker does.
    pub chown: Option<Chown>,
    /// Permission bits for what is copied (`--chmod`).
    pub chmod: Option<u32>,
    /// ADD semantics: a local tar archive is extracted at `dest` instead of copied.
    pub extract_archives: bool,
    /// `--parents`: keep each source's parent directories below `dest`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub parents: bool,
    /// `--exclude` patterns (`.dockerignore` syntax, relative to the source root).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude: Vec<String>,
}

/// Where a vertex came from in the Dockerfile, for error messages.
#[derive(Clone, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SourceLocation {
    /// File name as the user named it (e.g. `Dockerfile`).
    pub file: String,
    /// First line, 1-based.
    pub line: u32,
    /// Last line, 1-based (≥ `line`).
    pub end_line: u32,
}

/// Metadata beside an op: never part of its identity.
#[derive(Clone, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct VertexMeta {
    /// Display name, BuildKit style: `[stage 2/4] RUN make`, `[internal] load build context`.
    pub name: String,
    /// Source location, when the vertex comes from an instruction.
    pub location: Option<SourceLocation>,
    /// Re-run even when the cache has a result (`--no-cache`).
    pub ignore_cache: bool,
}

/// One node of the graph.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vertex {
    /// What it does.
    pub op: Op,
    /// How to show it.
    pub meta: VertexMeta,
}

impl Op {
    /// The canonical encoding that [`Op::digest`] hashes.
    pub fn canonical_bytes(&self) -> Vec<u8> {
        let mut out = ENCODING_VERSION.as_bytes().to_vec();
        out.push(0);
        // serde_json over types with only ordered containers is deterministic.
        out.extend(serde_json::to_vec(self).expect("ops always serialise"));
        out
    }

    /// The op's identity.
    pub fn digest(&self) -> VertexDigest {
        VertexDigest(format!(
            "blake3:{}",
            blake3::hash(&self.canonical_bytes()).to_hex()
        ))
    }

    /// The inputs this op reads, in a fixed order.
    pub fn inputs(&self) -> Vec<&Input> {
        match self {
            Op::Scratch | Op::Image { .. } | Op::Local { .. } | Op::Http { .. } => vec![],
            Op::Exec(e) => {
                let mut v = vec![&e.rootfs];
                for m in &e.mounts {
                    match &m.kind {
                        MountKind::Bind { source, .. } => v.push(source),
                        MountKind::Cache { from: Some(f), .. } => v.push(f),
                        _ => {}
                    }
                }
                v
            }
            Op::File(f) => {
                let mut v = vec![&f.base];
                for a in &f.actions {
                    if let FileAction::Copy(c) = a {
                        v.push(&c.source);
                    }
                }
                v
            }
        }
    }
}

/// Why a definition is not a valid graph.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DefinitionError {
    /// An op names an input that is not in the definition.
    #[error("vertex {vertex} reads {input}, which the definition does not hold")]
    MissingInput {
        /// The reading vertex.
        vertex: VertexDigest,
        /// The missing input.
        input: VertexDigest,
    },
    /// The root is not in the definition.
    #[error("the root vertex {0} is not in the definition")]
    MissingRoot(VertexDigest),
}

/// A whole build graph: vertices by digest, and the vertex whose output is the result.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Definition {
    /// Every vertex, by its digest.
    pub vertices: BTreeMap<VertexDigest, Vertex>,
    /// The result.
    pub root: Option<VertexDigest>,
}

impl Definition {
    /// An empty definition.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a vertex (once per digest: an equal op added twice is one vertex; the first
    /// metadata wins) and returns an [`Input`] naming it.
    pub fn add(&mut self, op: Op, meta: VertexMeta) -> Input {
        let digest = op.digest();
        self.vertices
            .entry(digest.clone())
            .or_insert(Vertex { op, meta });
        Input { vertex: digest }
    }

    /// Checks that every input and the root exist. (Cycles are impossible: a digest covers
    /// its inputs' digests.)
    pub fn validate(&self) -> Result<(), DefinitionError> {
        for (d, v) in &self.vertices {
            for i in v.op.inputs() {
                if !self.vertices.contains_key(&i.vertex) {
                    return Err(DefinitionError::MissingInput {
                        vertex: d.clone(),
                        input: i.vertex.clone(),
                    });
                }
            }
        }
        if let Some(r) = &self.root {
            if !self.vertices.contains_key(r) {
                return Err(DefinitionError::MissingRoot(r.clone()));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exec(rootfs: Input, cmd: &str) -> Op {
        Op::Exec(ExecOp {
            rootfs,
            args: vec!["/bin/sh".into(), "-c".into(), cmd.into()],
            env: vec![],
            cwd: "/".into(),
            user: String::new(),
            network: NetworkMode::None,
            mounts: vec![],
            security: Security::Sandbox,
        })
    }

    #[test]
    fn equal_ops_are_one_vertex_and_meta_is_not_identity() {
        let mut d = Definition::new();
        let a = d.add(
            Op::Scratch,
            VertexMeta {
                name: "a".into(),
                ..Default::default()
            },
        );
        let b = d.add(
            Op::Scratch,
            VertexMeta {
                name: "b".into(),
                ..Default::default()
            },
        );
        assert_eq!(a, b);
        assert_eq!(d.vertices.len(), 1);
        let r1 = d.add(exec(a.clone(), "true"), VertexMeta::default());
        let r2 = d.add(exec(a, "false"), VertexMeta::default());
        assert_ne!(r1, r2);
        assert_eq!(d.vertices.len(), 3);
    }

    #[test]
    fn digest_covers_inputs() {
        let img = |d: &str| Op::Image {
            reference: "x".into(),
            digest: d.into(),
        };
        let e1 = exec(
            Input {
                vertex: img("sha256:1").digest(),
            },
            "make",
        );
        let e2 = exec(
            Input {
                vertex: img("sha256:2").digest(),
            },
            "make",
        );
        assert_ne!(e1.digest(), e2.digest());
        assert!(e1.digest().0.starts_with("blake3:"));
    }

    #[test]
    fn validate_finds_missing_inputs() {
        let mut d = Definition::new();
        d.add(
            exec(
                Input {
                    vertex: VertexDigest("blake3:nope".into()),
                },
                "x",
            ),
            VertexMeta::default(),
        );
        assert!(matches!(
            d.validate(),
            Err(DefinitionError::MissingInput { .. })
        ));
    }
}
