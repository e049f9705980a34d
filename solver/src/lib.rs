//! kiln's solver: runs an op graph ([`kiln_opgraph::Definition`]) in parallel, with a
//! content-addressed cache.
//!
//! The solver knows nothing about what ops do: a [`Worker`] executes them (the `kiln-worker`
//! crate implements it on the store and the executor), and a [`CacheStorage`] keeps results.
//!
//! # Cache keys
//! Every vertex reachable from the root gets a key before anything runs:
//!
//! ```text
//! key(v) = blake3("kiln-cache-v1" ‖ digest(v) ‖ content_key(v)? ‖ key(input₀) ‖ key(input₁) …)
//! ```
//!
//! `digest(v)` covers the op's definition and, through it, its inputs' definitions;
//! `content_key` is what the op reads from outside the graph (a checksum of the selected
//! context files, for `Local` ops). Because keys need no execution, a cached vertex is never
//! executed and its inputs are never even visited: a fully cached build runs nothing.
//!
//! # Cache misses explained
//! For every vertex the solver records what its key was made of (the op, its inputs' keys
//! and names, the content key) under a *slot*: the vertex's display name up to the
//! instruction keyword (`[builder 2/5] RUN` of `[builder 2/5] RUN make`), which stays put
//! while the command, the files or the arguments change. When a vertex runs and its slot had a
//! result in an earlier build, an [`Event::Explain`] (before [`Event::Started`]) says what
//! differs: a file of the context, a build arg, the command, the base image, or the input
//! that changed. Records go through [`CacheStorage::previous_inputs`] /
//! [`CacheStorage::record_inputs`] (one read and one batched write per solve).
//!
//! # Scheduling
//! Each vertex is one lazily-started shared future (so a vertex reached from two stages runs
//! once); a vertex's inputs run concurrently; ops the worker marks as heavy (RUN steps) take a
//! slot: `jobs` of them, plus extra ones while CPUs sit idle when the caller allows it (module
//! `slots`: RUN steps that sleep or wait leave CPUs unused). When a vertex fails, the first error is
//! returned and every future still running is dropped, which cancels its work (the executor
//! kills sandboxes on drop).
#![deny(missing_docs)]

use futures::future::{BoxFuture, FutureExt, Shared};
use kiln_opgraph::{Definition, Vertex, VertexDigest};
use serde::{de::DeserializeOwned, Serialize};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

mod slots;
pub use slots::IdleProbe;

/// An error from a worker; the CLI downcasts it to the worker's concrete types.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Progress of a solve, in the order things happen.
#[derive(Clone, Debug)]
pub enum Event {
    /// Why a vertex runs although an earlier build had a result for the same step (sent
    /// just before its [`Event::Started`], with the same number).
    Explain {
        /// Which vertex.
        vertex: VertexDigest,
        /// Its progress number.
        number: u32,
        /// What changed, e.g. `src/main.rs changed (and 2 more files)`.
        reason: String,
    },
    /// A vertex started executing.
    Started {
        /// Which vertex.
        vertex: VertexDigest,
        /// Its progress number (`#N`), assigned in start order.
        number: u32,
        /// Display name.
        name: String,
    },
    /// A vertex's result came from the cache.
    Cached {
        /// Which vertex.
        vertex: VertexDigest,
        /// Its progress number.
        number: u32,
        /// Display name.
        name: String,
    },
    /// Output of a running vertex.
    Log {
        /// Which vertex.
        vertex: VertexDigest,
        /// Its progress number.
        number: u32,
        /// 1 = stdout, 2 = stderr.
        stream: u8,
        /// The bytes.
        data: Vec<u8>,
    },
    /// A vertex finished.
    Done {
        /// Which vertex.
        vertex: VertexDigest,
        /// Its progress number.
        number: u32,
        /// How long it ran.
        elapsed: Duration,
    },
    /// A vertex failed.
    Failed {
        /// Which vertex.
        vertex: VertexDigest,
        /// Its progress number.
        number: u32,
        /// The error, rendered.
        message: String,
        /// How long it ran.
        elapsed: Duration,
    },
}

/// What a worker's `exec` gets besides the inputs: a way to report output.
#[derive(Clone)]
pub struct ExecContext {
    vertex: VertexDigest,
    number: u32,
    events: Option<mpsc::UnboundedSender<Event>>,
    started: Option<slots::StartSignal>,
}

impl ExecContext {
    /// Reports output of the running vertex (1 = stdout, 2 = stderr).
    pub fn log(&self, stream: u8, data: &[u8]) {
        if let Some(tx) = &self.events {
            let _ = tx.send(Event::Log {
                vertex: self.vertex.clone(),
                number: self.number,
                stream,
                data: data.to_vec(),
            });
        }
    }
    /// The vertex being executed.
    pub fn vertex(&self) -> &VertexDigest {
        &self.vertex
    }
    /// Says that a heavy op's command now runs (its sandbox is set up), so the scheduler
    /// may judge from the CPUs' load whether more heavy ops can start (see `--jobs`).
    pub fn command_started(&self) {
        if let Some(s) = &self.started {
            s.started();
        }
    }
}

/// Executes ops. Implemented by `kiln-worker`.
#[async_trait::async_trait]
pub trait Worker: Send + Sync + 'static {
    /// A vertex's result (e.g. a layer chain). Stored in the cache as JSON.
    type Output: Clone + Send + Sync + Serialize + DeserializeOwned + 'static;

    /// Key material for what the op reads from outside the graph (e.g. a checksum of the
    /// selected context files); `None` for ops that read only their inputs.
    async fn content_key(&self, vertex: &Vertex) -> Result<Option<String>, BoxError>;

    /// The version of the worker's op semantics, mixed into every cache key: bump it when an
    /// op's result for the same definition changes (e.g. a COPY rule is fixed), so results
    /// of older kiln versions are not reused.
    fn semantics_version(&self) -> &str;

    /// Whether the result of this op may be stored in and loaded from the cache.
    fn cacheable(&self, vertex: &Vertex) -> bool;

    /// Whether the op is heavy (a RUN) and must take one of the `jobs` permits.
    fn heavy(&self, vertex: &Vertex) -> bool;

    /// Whether a cached result can still be used (its blobs are still in the store).
    fn usable(&self, output: &Self::Output) -> bool;

    /// Makes a cached result that is not [`Worker::usable`] usable again when it can (e.g. by
    /// fetching its blobs from an imported cache); `false` (the default) runs the op.
    async fn restore(&self, _output: &Self::Output) -> bool {
        false
    }

    /// Executes the op on its inputs' results (in [`kiln_opgraph::Op::inputs`] order).
    async fn exec(
        &self,
        ctx: &ExecContext,
        vertex: &Vertex,
        inputs: Vec<Self::Output>,
    ) -> Result<Self::Output, BoxError>;
}

/// Where cache records live. Implemented on the store by the CLI.
pub trait CacheStorage: Send + Sync + 'static {
    /// The record under `key`.
    fn get(&self, key: &str) -> Option<Vec<u8>>;
    /// Records `value` under `key`.
    fn put(&self, key: &str, value: &[u8]);
    /// What the keys of the previous builds' steps were made of: slot → (key, record).
    /// Called once per solve.
    fn previous_inputs(&self) -> HashMap<String, (String, Vec<u8>)> {
        HashMap::new()
    }
    /// Records (slot, key, record) rows for the next build's explanations (one batch per
    /// solve, only slots whose key changed).
    fn record_inputs(&self, _records: Vec<(String, String, Vec<u8>)>) {}
    /// Which files differ between two content keys (e.g. `src/main.rs changed (and 2 more
    /// files)`), when the storage knows.
    fn describe_content_change(&self, _old: &str, _new: &str) -> Option<String> {
        None
    }
}

/// A cache that remembers nothing (for tests and `--no-cache` on a read-only root).
pub struct NoCache;
impl CacheStorage for NoCache {
    fn get(&self, _key: &str) -> Option<Vec<u8>> {
        None
    }
    fn put(&self, _key: &str, _value: &[u8]) {}
}

/// A failed solve: which vertex failed and why.
#[derive(Debug, thiserror::Error)]
pub enum SolveError {
    /// The definition is not a valid graph.
    #[error("invalid build graph: {0}")]
    Definition(#[from] kiln_opgraph::DefinitionError),
    /// The definition has no root.
    #[error("the build graph has no result")]
    NoRoot,
    /// The definition is not acyclic (a vertex depends on itself).
    #[error("invalid build graph: vertex {0} depends on itself")]
    Cycle(VertexDigest),
    /// A vertex failed.
    #[error("{name}: {source}")]
    Vertex {
        /// The vertex.
        vertex: VertexDigest,
        /// Its display name.
        name: String,
        /// Its Dockerfile location.
        location: Option<kiln_opgraph::SourceLocation>,
        /// The worker's error.
        source: Arc<BoxError>,
    },
}

/// The outcome of a solve.
pub struct Solved<O> {
    /// The root vertex's result.
    pub root: O,
    /// Every vertex result that was computed or loaded, by digest (vertices never needed,
    /// e.g. inputs of a cached vertex, are absent).
    pub outputs: BTreeMap<VertexDigest, O>,
    /// Cache keys of all reachable vertices.
    pub keys: BTreeMap<VertexDigest, String>,
    /// How many vertices executed.
    pub executed: u32,
    /// How many came from the cache.
    pub cached: u32,
}

/// Solver settings.
#[derive(Clone, Debug)]
pub struct SolveOptions {
    /// Heavy ops that may always run at once.
    pub jobs: usize,
    /// When set, more heavy ops may start, up to this many at once in all, one per sampling
    /// interval while at least one CPU's worth of time is going idle (see the `slots`
    /// module). `None`: `jobs` is a strict bound.
    pub idle_jobs: Option<usize>,
    /// What says a CPU is idle (default: `/proc/stat` sampling).
    pub idle_probe: Option<IdleProbe>,
}

impl SolveOptions {
    /// A strict bound of `jobs` heavy ops (what an explicit `--jobs N` asks for).
    pub fn strict(jobs: usize) -> SolveOptions {
        SolveOptions {
            jobs,
            idle_jobs: None,
            idle_probe: None,
        }
    }
}

impl Default for SolveOptions {
    /// As many heavy ops as CPUs, and up to four times as many while CPUs sit idle.
    fn default() -> Self {
        let cpus = std::thread::available_parallelism().map_or(2, std::num::NonZero::get);
        Self {
            jobs: cpus,
            idle_jobs: Some(cpus * 4),
            idle_probe: None,
        }
    }
}

type VertexFuture<O> = Shared<BoxFuture<'static, Result<O, Arc<SolveErrorShared>>>>;

/// Every vertex's future of a solve, by digest.
type Registry<O> = std::sync::Mutex<HashMap<VertexDigest, VertexFuture<O>>>;

/// The error shared between the futures waiting on a failed vertex.
#[derive(Debug)]
struct SolveErrorShared {
    vertex: VertexDigest,
    name: String,
    location: Option<kiln_opgraph::SourceLocation>,
    source: Arc<BoxError>,
}

struct Shared_<W: Worker> {
    worker: Arc<W>,
    cache: Arc<dyn CacheStorage>,
    events: Option<mpsc::UnboundedSender<Event>>,
    jobs: slots::Slots,
    counter: AtomicU32,
    executed: AtomicU32,
    cached: AtomicU32,
    outputs: std::sync::Mutex<BTreeMap<VertexDigest, W::Output>>,
    /// Every reachable vertex with its cache key (for walking cached ancestors).
    graph: HashMap<VertexDigest, (Vertex, String)>,
    /// Vertices already reported (started or cached), so none is reported twice.
    announced: std::sync::Mutex<HashSet<VertexDigest>>,
    /// Each vertex's slot (for explanations) and what its key is made of.
    records: HashMap<VertexDigest, (String, explain::KeyInputs)>,
    /// The previous builds' records, by slot.
    previous: HashMap<String, (String, Vec<u8>)>,
    /// Vertices below a vertex that ignores the cache (`--no-cache-filter`): their inputs
    /// run first, even when they themselves are cached.
    forced: HashSet<VertexDigest>,
}

/// Solves `def` with `worker`, recording results in `cache`, reporting to `events`.
pub async fn solve<W: Worker>(
    def: &Definition,
    worker: Arc<W>,
    cache: Arc<dyn CacheStorage>,
    events: Option<mpsc::UnboundedSender<Event>>,
    opts: &SolveOptions,
) -> Result<Solved<W::Output>, SolveError> {
    def.validate()?;
    let root = def.root.clone().ok_or(SolveError::NoRoot)?;
    let order = topo_order(def, &root)?;

    // Content keys of every reachable vertex that reads from outside the graph, in parallel.
    let content = futures::future::join_all(order.iter().map(|d| {
        let worker = worker.clone();
        let v = &def.vertices[d];
        async move { (d.clone(), worker.content_key(v).await) }
    }))
    .await;
    let mut content_keys = HashMap::new();
    for (d, r) in content {
        match r {
            Ok(k) => {
                content_keys.insert(d, k);
            }
            Err(e) => {
                let v = &def.vertices[&d];
                return Err(SolveError::Vertex {
                    vertex: d,
                    name: v.meta.name.clone(),
                    location: v.meta.location.clone(),
                    source: Arc::new(e),
                });
            }
        }
    }

    let mut keys: BTreeMap<VertexDigest, String> = BTreeMap::new();
    for d in &order {
        let v = &def.vertices[d];
        let mut h = blake3::Hasher::new();
        h.update(b"kiln-cache-v1\0");
        h.update(worker.semantics_version().as_bytes());
        h.update(b"\0");
        h.update(d.0.as_bytes());
        h.update(b"\0");
        if let Some(Some(c)) = content_keys.get(d) {
            h.update(b"content\0");
            h.update(c.as_bytes());
            h.update(b"\0");
        }
        for i in v.op.inputs() {
            h.update(keys[&i.vertex].as_bytes());
            h.update(b"\0");
        }
        keys.insert(d.clone(), format!("blake3:{}", h.finalize().to_hex()));
    }

    // What each key is made of, by slot (the display name; repeated names are numbered).
    let mut records = HashMap::new();
    let mut slot_uses: HashMap<&str, u32> = HashMap::new();
    for d in &order {
        let v = &def.vertices[d];
        if matches!(v.op, kiln_opgraph::Op::Local { .. }) {
            continue;
        }
        let base = explain::slot_of(&v.meta.name);
        let n = slot_uses.entry(base).or_insert(0);
        *n += 1;
        let slot = if *n == 1 {
            base.to_string()
        } else {
            format!("{base} ({n})")
        };
        let rec = explain::KeyInputs {
            semantics: worker.semantics_version().to_string(),
            op: serde_json::to_value(&v.op).unwrap_or_default(),
            content: content_keys.get(d).cloned().flatten(),
            inputs: v
                .op
                .inputs()
                .iter()
                .map(|i| explain::InputRecord {
                    name: def.vertices[&i.vertex].meta.name.clone(),
                    key: keys[&i.vertex].clone(),
                    content: content_keys.get(&i.vertex).cloned().flatten(),
                })
                .collect(),
        };
        records.insert(d.clone(), (slot, rec));
    }
    let previous = cache.previous_inputs();
    let mut forced = HashSet::new();
    for d in &order {
        let v = &def.vertices[d];
        if v.op
            .inputs()
            .iter()
            .any(|i| def.vertices[&i.vertex].meta.ignore_cache || forced.contains(&i.vertex))
        {
            forced.insert(d.clone());
        }
    }

    let shared = Arc::new(Shared_ {
        worker,
        cache,
        events,
        jobs: slots::Slots::new(opts.jobs, opts.idle_jobs, opts.idle_probe.clone()),
        counter: AtomicU32::new(0),
        executed: AtomicU32::new(0),
        cached: AtomicU32::new(0),
        outputs: std::sync::Mutex::new(BTreeMap::new()),
        graph: order
            .iter()
            .map(|d| (d.clone(), (def.vertices[d].clone(), keys[d].clone())))
            .collect(),
        announced: std::sync::Mutex::new(HashSet::new()),
        records,
        previous,
        forced,
    });

    // Every vertex's future, by digest. A vertex future finds its inputs' futures here
    // (through a weak reference) when it needs them, instead of holding them: a chain of
    // futures holding futures would be dropped recursively, once per level of the graph.
    let registry: Arc<Registry<W::Output>> = Arc::default();
    let tasks = tokio_util::task::TaskTracker::new();
    let aborts: Arc<std::sync::Mutex<Vec<tokio::task::AbortHandle>>> = Arc::default();
    for d in &order {
        let v = def.vertices[d].clone();
        let inputs: Vec<VertexDigest> = v.op.inputs().iter().map(|i| i.vertex.clone()).collect();
        let failed = fail_with(d, &v);
        let fut = vertex_future(
            shared.clone(),
            d.clone(),
            v,
            keys[d].clone(),
            inputs,
            Arc::downgrade(&registry),
        );
        // Each vertex runs as its own task, started when it is first awaited (so inputs
        // still run only when needed): awaiting a task is one poll deep, where awaiting
        // the nested futures themselves would recurse once per level of the graph and
        // overflow the stack on a long chain (a 2,500-step COPY --from chain).
        let (tasks, aborts) = (tasks.clone(), aborts.clone());
        let lazy = async move {
            let task = tasks.spawn(fut);
            aborts
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push(task.abort_handle());
            match AbortOnDrop(task).await {
                Ok(r) => r,
                Err(e) => Err(failed(Box::new(std::io::Error::other(format!(
                    "the step's task failed: {e}"
                ))))),
            }
        };
        registry
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(d.clone(), lazy.boxed().shared());
    }
    let root_future = registry
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .get(&root)
        .cloned();
    let result = match root_future {
        Some(f) => f.await,
        None => return Err(SolveError::NoRoot),
    };
    drop(registry);
    // Nothing of this solve runs on once it returns: steps no one waits for any more (a
    // sibling failed) are stopped and their work dropped before the caller goes on.
    for a in aborts
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .drain(..)
    {
        a.abort();
    }
    tasks.close();
    tasks.wait().await;
    record_key_inputs(&shared, &keys);
    match result {
        Ok(out) => {
            let outputs = std::mem::take(
                &mut *shared
                    .outputs
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner),
            );
            Ok(Solved {
                root: out,
                outputs,
                keys,
                executed: shared.executed.load(Ordering::Relaxed),
                cached: shared.cached.load(Ordering::Relaxed),
            })
        }
        Err(e) => Err(SolveError::Vertex {
            vertex: e.vertex.clone(),
            name: e.name.clone(),
            location: e.location.clone(),
            source: e.source.clone(),
        }),
    }
}

async fn vertex_future<W: Worker>(
    s: Arc<Shared_<W>>,
    digest: VertexDigest,
    vertex: Vertex,
    key: String,
    inputs: Vec<VertexDigest>,
    registry: std::sync::Weak<Registry<W::Output>>,
) -> Result<W::Output, Arc<SolveErrorShared>> {
    let cacheable = s.worker.cacheable(&vertex);
    let forced = s.forced.contains(&digest);
    let cached = if forced {
        None
    } else {
        lookup(&s, &vertex, &key).await
    };
    if let Some(out) = cached {
        // Show the cached steps below this one too, as BuildKit does, without loading or
        // executing anything: only their cache records are read.
        announce_cached_ancestors(&s, &vertex);
        announce_cached(&s, &digest, &vertex, &out);
        return Ok(out);
    }

    // Inputs run concurrently; the first failure cancels the rest.
    let inputs = {
        let Some(registry) = registry.upgrade() else {
            return Err(fail(&digest, &vertex, "the build was cancelled".into()));
        };
        let map = registry
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        inputs
            .iter()
            .map(|d| {
                map.get(d)
                    .cloned()
                    .ok_or("an input of this step is missing")
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| fail(&digest, &vertex, e.into()))?
    };
    let input_results = futures::future::try_join_all(inputs).await?;
    if forced {
        // An input had to run (it ignores the cache); this vertex's own result may still
        // come from the cache.
        if let Some(out) = lookup(&s, &vertex, &key).await {
            announce_cached(&s, &digest, &vertex, &out);
            return Ok(out);
        }
    }

    let permit = if s.worker.heavy(&vertex) {
        Some(
            s.jobs
                .acquire()
                .await
                .map_err(|e| fail(&digest, &vertex, Box::new(e) as BoxError))?,
        )
    } else {
        None
    };
    let number = s.counter.fetch_add(1, Ordering::Relaxed) + 1;
    if let Some(tx) = &s.events {
        if let Some(reason) = explain_miss(&s, &digest, &vertex, &key) {
            let _ = tx.send(Event::Explain {
                vertex: digest.clone(),
                number,
                reason,
            });
        }
        let _ = tx.send(Event::Started {
            vertex: digest.clone(),
            number,
            name: vertex.meta.name.clone(),
        });
    }
    let ctx = ExecContext {
        vertex: digest.clone(),
        number,
        events: s.events.clone(),
        started: permit.as_ref().map(slots::Permit::signal),
    };
    let start = Instant::now();
    match s.worker.exec(&ctx, &vertex, input_results).await {
        Ok(out) => {
            s.executed.fetch_add(1, Ordering::Relaxed);
            if let Some(tx) = &s.events {
                let _ = tx.send(Event::Done {
                    vertex: digest.clone(),
                    number,
                    elapsed: start.elapsed(),
                });
            }
            if cacheable {
                if let Ok(bytes) = serde_json::to_vec(&out) {
                    s.cache.put(&key, &bytes);
                }
            }
            record(&s, &digest, &out);
            Ok(out)
        }
        Err(e) => {
            if let Some(tx) = &s.events {
                let _ = tx.send(Event::Failed {
                    vertex: digest.clone(),
                    number,
                    message: e.to_string(),
                    elapsed: start.elapsed(),
                });
            }
            Err(fail(&digest, &vertex, e))
        }
    }
}

/// The usable cached result of a vertex, if there is one.
/// The cached result of a vertex when it is recorded and usable as it is.
fn cached_output<W: Worker>(s: &Shared_<W>, vertex: &Vertex, key: &str) -> Option<W::Output> {
    recorded(s, vertex, key).filter(|out| s.worker.usable(out))
}

fn recorded<W: Worker>(s: &Shared_<W>, vertex: &Vertex, key: &str) -> Option<W::Output> {
    if !s.worker.cacheable(vertex) || vertex.meta.ignore_cache {
        return None;
    }
    let bytes = s.cache.get(key)?;
    serde_json::from_slice::<W::Output>(&bytes).ok()
}

/// The cached result of a vertex that is about to be used: a recorded result that is not
/// usable as it is gets a chance to be restored ([`Worker::restore`]).
async fn lookup<W: Worker>(s: &Shared_<W>, vertex: &Vertex, key: &str) -> Option<W::Output> {
    let out = recorded(s, vertex, key)?;
    if s.worker.usable(&out) || s.worker.restore(&out).await {
        Some(out)
    } else {
        None
    }
}

/// Reports a cache hit (once per vertex) and keeps its result.
fn announce_cached<W: Worker>(
    s: &Shared_<W>,
    digest: &VertexDigest,
    vertex: &Vertex,
    out: &W::Output,
) {
    let first = s
        .announced
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .insert(digest.clone());
    if first {
        let number = s.counter.fetch_add(1, Ordering::Relaxed) + 1;
        s.cached.fetch_add(1, Ordering::Relaxed);
        if let Some(tx) = &s.events {
            let _ = tx.send(Event::Cached {
                vertex: digest.clone(),
                number,
                name: vertex.meta.name.clone(),
            });
        }
    }
    record(s, digest, out);
}

/// Reports, inputs first, every ancestor of `vertex` reachable through cache hits.
fn announce_cached_ancestors<W: Worker>(s: &Shared_<W>, vertex: &Vertex) {
    let mut order = Vec::new();
    let mut seen = HashSet::new();
    let mut stack: Vec<(VertexDigest, bool)> = vertex
        .op
        .inputs()
        .into_iter()
        .rev()
        .map(|i| (i.vertex.clone(), false))
        .collect();
    while let Some((d, expanded)) = stack.pop() {
        let Some((v, key)) = s.graph.get(&d) else {
            continue;
        };
        if expanded {
            order.push(d);
            continue;
        }
        if !seen.insert(d.clone()) || cached_output(s, v, key).is_none() {
            continue;
        }
        stack.push((d.clone(), true));
        for i in v.op.inputs().into_iter().rev() {
            stack.push((i.vertex.clone(), false));
        }
    }
    for d in order {
        let (v, key) = &s.graph[&d];
        if let Some(out) = cached_output(s, v, key) {
            announce_cached(s, &d, v, &out);
        }
    }
}

/// Why `vertex` runs, when its slot had a result in an earlier build.
fn explain_miss<W: Worker>(
    s: &Shared_<W>,
    digest: &VertexDigest,
    vertex: &Vertex,
    key: &str,
) -> Option<String> {
    let (slot, cur) = s.records.get(digest)?;
    let (prev_key, prev) = s.previous.get(slot)?;
    let prev: explain::KeyInputs = serde_json::from_slice(prev).ok()?;
    Some(explain::reason(
        &*s.cache, vertex, prev_key, &prev, key, cur,
    ))
}

/// Records, for the next build's explanations, what the keys of the vertices that have a
/// result (run or cached) were made of: one batch, only the slots whose key changed.
fn record_key_inputs<W: Worker>(s: &Shared_<W>, keys: &BTreeMap<VertexDigest, String>) {
    let outputs = s
        .outputs
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let mut batch = Vec::new();
    for (d, (slot, rec)) in &s.records {
        if !outputs.contains_key(d) {
            continue;
        }
        let key = &keys[d];
        if s.previous.get(slot).is_some_and(|(k, _)| k == key) {
            continue;
        }
        if let Ok(bytes) = serde_json::to_vec(rec) {
            batch.push((slot.clone(), key.clone(), bytes));
        }
    }
    drop(outputs);
    if !batch.is_empty() {
        s.cache.record_inputs(batch);
    }
}

fn record<W: Worker>(s: &Shared_<W>, d: &VertexDigest, out: &W::Output) {
    s.outputs
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .insert(d.clone(), out.clone());
}

/// A task that is aborted when its handle is dropped: when no one waits for a vertex any
/// more (a sibling input failed, the build was cancelled), its work stops, as a dropped
/// future's would.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl<T> std::future::Future for AbortOnDrop<T> {
    type Output = Result<T, tokio::task::JoinError>;
    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        std::pin::Pin::new(&mut self.0).poll(cx)
    }
}

/// [`fail`] for `d` later, without holding on to the vertex.
fn fail_with(
    d: &VertexDigest,
    v: &Vertex,
) -> impl FnOnce(BoxError) -> Arc<SolveErrorShared> + Send + 'static {
    let (d, name, location) = (d.clone(), v.meta.name.clone(), v.meta.location.clone());
    move |e| {
        Arc::new(SolveErrorShared {
            vertex: d,
            name,
            location,
            source: Arc::new(e),
        })
    }
}

fn fail(d: &VertexDigest, v: &Vertex, e: BoxError) -> Arc<SolveErrorShared> {
    Arc::new(SolveErrorShared {
        vertex: d.clone(),
        name: v.meta.name.clone(),
        location: v.meta.location.clone(),
        source: Arc::new(e),
    })
}

/// The vertices reachable from `root`, inputs before the vertices that read them.
/// The vertices `root` depends on (itself included), inputs before the vertices that use
/// them: a petgraph DAG of the reachable vertices (edges from input to user), sorted
/// topologically, so a malformed definition with a cycle is an error, not a hang.
fn topo_order(def: &Definition, root: &VertexDigest) -> Result<Vec<VertexDigest>, SolveError> {
    let mut g = petgraph::graph::DiGraph::<VertexDigest, ()>::new();
    let mut index = HashMap::new();
    let mut node = |g: &mut petgraph::graph::DiGraph<VertexDigest, ()>, d: &VertexDigest| {
        *index
            .entry(d.clone())
            .or_insert_with(|| g.add_node(d.clone()))
    };
    node(&mut g, root);
    // Iterative walk (graphs can be deep: 50+ chained RUNs).
    let mut stack = vec![root.clone()];
    let mut seen = HashSet::from([root.clone()]);
    while let Some(d) = stack.pop() {
        let user = node(&mut g, &d);
        for i in def.vertices[&d].op.inputs() {
            let input = node(&mut g, &i.vertex);
            g.update_edge(input, user, ());
            if seen.insert(i.vertex.clone()) {
                stack.push(i.vertex.clone());
            }
        }
    }
    petgraph::algo::toposort(&g, None)
        .map(|order| order.into_iter().map(|n| g[n].clone()).collect())
        .map_err(|cycle| SolveError::Cycle(g[cycle.node_id()].clone()))
}

mod explain;
#[cfg(test)]
mod tests;
