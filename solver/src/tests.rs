//! Solver tests with a fake worker that counts calls (no store, no sandbox).
use super::*;
use kiln_opgraph::{ExecOp, Input, NetworkMode, Op, VertexMeta};
use std::sync::Mutex;

/// A fake worker: an exec's output is its input's output plus its command; `sleep:MS` sleeps,
/// `fail` fails. Records every exec and the time spans.
#[derive(Default)]
struct Fake {
    calls: Mutex<Vec<String>>,
    spans: Mutex<Vec<(String, Instant, Instant)>>,
    cancelled: Arc<AtomicU32>,
}

struct DropGuard(Arc<AtomicU32>, bool);
impl Drop for DropGuard {
    fn drop(&mut self) {
        if !self.1 {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
}

#[async_trait::async_trait]
impl Worker for Fake {
    type Output = Vec<String>;
    async fn content_key(&self, _v: &Vertex) -> Result<Option<String>, BoxError> {
        Ok(None)
    }
    fn semantics_version(&self) -> &'static str {
        "fake-1"
    }
    fn cacheable(&self, _v: &Vertex) -> bool {
        true
    }
    fn heavy(&self, v: &Vertex) -> bool {
        matches!(v.op, Op::Exec(_))
    }
    fn usable(&self, _o: &Self::Output) -> bool {
        true
    }
    async fn exec(
        &self,
        ctx: &ExecContext,
        v: &Vertex,
        inputs: Vec<Self::Output>,
    ) -> Result<Self::Output, BoxError> {
        let Op::Exec(e) = &v.op else {
            return Ok(vec![]);
        };
        let cmd = e.args.join(" ");
        self.calls.lock().unwrap().push(cmd.clone());
        ctx.log(1, cmd.as_bytes());
        let start = Instant::now();
        // `startup:N`: 60 ms to set up, then N ms of command.
        if cmd.starts_with("startup:") {
            tokio::time::sleep(Duration::from_millis(60)).await;
        }
        ctx.command_started();
        let mut guard = DropGuard(self.cancelled.clone(), false);
        if let Some(ms) = cmd
            .strip_prefix("sleep:")
            .or_else(|| cmd.strip_prefix("startup:"))
        {
            tokio::time::sleep(Duration::from_millis(ms.parse().unwrap())).await;
        }
        guard.1 = true;
        self.spans
            .lock()
            .unwrap()
            .push((cmd.clone(), start, Instant::now()));
        if cmd == "fail" {
            return Err("exit 1".into());
        }
        let mut out: Vec<String> = inputs.into_iter().flatten().collect();
        out.push(cmd);
        Ok(out)
    }
}

#[derive(Default)]
struct MemCache(
    Mutex<HashMap<String, Vec<u8>>>,
    Mutex<HashMap<String, (String, Vec<u8>)>>,
);
impl CacheStorage for MemCache {
    fn get(&self, k: &str) -> Option<Vec<u8>> {
        self.0.lock().unwrap().get(k).cloned()
    }
    fn put(&self, k: &str, v: &[u8]) {
        self.0.lock().unwrap().insert(k.into(), v.to_vec());
    }
    fn previous_inputs(&self) -> HashMap<String, (String, Vec<u8>)> {
        self.1.lock().unwrap().clone()
    }
    fn record_inputs(&self, records: Vec<(String, String, Vec<u8>)>) {
        let mut m = self.1.lock().unwrap();
        for (slot, key, rec) in records {
            m.insert(slot, (key, rec));
        }
    }
}

fn exec(d: &mut Definition, rootfs: Input, cmd: &str) -> Input {
    d.add(
        Op::Exec(ExecOp {
            rootfs,
            args: vec![cmd.into()],
            env: vec![],
            cwd: "/".into(),
            user: String::new(),
            network: NetworkMode::None,
            mounts: vec![],
            security: Default::default(),
        }),
        VertexMeta {
            name: format!("RUN {cmd}"),
            ..Default::default()
        },
    )
}

/// A final vertex that reads several stages: a file op copying from each.
fn merge(d: &mut Definition, base: Input, sources: Vec<Input>) -> Input {
    use kiln_opgraph::{CopyAction, FileAction, FileOp};
    let actions = sources
        .into_iter()
        .map(|s| {
            FileAction::Copy(CopyAction {
                source: s,
                src: vec!["/".into()],
                dest: "/".into(),
                chown: None,
                chmod: None,
                extract_archives: false,
                parents: false,
                exclude: vec![],
            })
        })
        .collect();
    d.add(Op::File(FileOp { base, actions }), VertexMeta::default())
}

async fn run(
    d: &Definition,
    w: Arc<Fake>,
    c: Arc<MemCache>,
    jobs: usize,
) -> (Result<Solved<Vec<String>>, SolveError>, Vec<Event>) {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let r = solve(d, w, c, Some(tx), &SolveOptions::strict(jobs)).await;
    let mut evs = vec![];
    while let Ok(e) = rx.try_recv() {
        evs.push(e);
    }
    (r, evs)
}

#[tokio::test]
async fn chain_runs_in_order_then_hits_the_cache() {
    let mut d = Definition::new();
    let s = d.add(Op::Scratch, VertexMeta::default());
    let a = exec(&mut d, s, "a");
    let b = exec(&mut d, a, "b");
    d.root = Some(b.vertex);
    let cache = Arc::new(MemCache::default());
    let w = Arc::new(Fake::default());
    let (r, evs) = run(&d, w.clone(), cache.clone(), 2).await;
    let r = r.unwrap();
    assert_eq!(r.root, vec!["a", "b"]);
    assert_eq!(*w.calls.lock().unwrap(), vec!["a", "b"]);
    assert!(evs
        .iter()
        .any(|e| matches!(e, Event::Log { data, .. } if data == b"a")));

    // Second solve: nothing runs; every step is reported CACHED, inputs first.
    let w2 = Arc::new(Fake::default());
    let (r, evs) = run(&d, w2.clone(), cache, 2).await;
    let r = r.unwrap();
    assert_eq!(r.root, vec!["a", "b"]);
    assert_eq!((r.executed, r.cached), (0, 3));
    assert!(w2.calls.lock().unwrap().is_empty());
    let cached: Vec<&str> = evs
        .iter()
        .filter_map(|e| match e {
            Event::Cached { name, .. } => Some(name.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(cached, vec!["", "RUN a", "RUN b"], "{evs:?}");
    assert!(!evs.iter().any(|e| matches!(e, Event::Started { .. })));
}

#[tokio::test]
async fn a_changed_step_reruns_it_and_what_follows_only() {
    let cache = Arc::new(MemCache::default());
    let build = |mid: &str| {
        let mut d = Definition::new();
        let s = d.add(Op::Scratch, VertexMeta::default());
        let a = exec(&mut d, s, "a");
        let b = exec(&mut d, a, mid);
        let c = exec(&mut d, b, "c");
        d.root = Some(c.vertex);
        d
    };
    run(&build("b1"), Arc::new(Fake::default()), cache.clone(), 2)
        .await
        .0
        .unwrap();
    let w = Arc::new(Fake::default());
    run(&build("b2"), w.clone(), cache, 2).await.0.unwrap();
    assert_eq!(*w.calls.lock().unwrap(), vec!["b2", "c"]);
}

#[tokio::test]
async fn shared_vertex_runs_once_and_independent_stages_overlap() {
    let mut d = Definition::new();
    let s = d.add(Op::Scratch, VertexMeta::default());
    let common = exec(&mut d, s.clone(), "sleep:50");
    let x = exec(&mut d, common.clone(), "sleep:300");
    let y = exec(&mut d, common.clone(), "sleep:301");
    let root = merge(&mut d, s, vec![x, y, common]);
    d.root = Some(root.vertex);
    let w = Arc::new(Fake::default());
    let (r, _) = run(&d, w.clone(), Arc::new(MemCache::default()), 4).await;
    r.unwrap();
    let calls = w.calls.lock().unwrap().clone();
    assert_eq!(
        calls.iter().filter(|c| *c == "sleep:50").count(),
        1,
        "{calls:?}"
    );
    let spans = w.spans.lock().unwrap();
    let span = |n: &str| spans.iter().find(|s| s.0 == n).unwrap().clone();
    let (x, y) = (span("sleep:300"), span("sleep:301"));
    assert!(
        x.1 < y.2 && y.1 < x.2,
        "the two stages must overlap in time"
    );
}

#[tokio::test]
async fn jobs_bound_serialises_heavy_ops() {
    let mut d = Definition::new();
    let s = d.add(Op::Scratch, VertexMeta::default());
    let x = exec(&mut d, s.clone(), "sleep:100");
    let y = exec(&mut d, s.clone(), "sleep:101");
    let root = merge(&mut d, s, vec![x, y]);
    d.root = Some(root.vertex);
    let w = Arc::new(Fake::default());
    run(&d, w.clone(), Arc::new(MemCache::default()), 1)
        .await
        .0
        .unwrap();
    let spans = w.spans.lock().unwrap();
    let (a, b) = (&spans[0], &spans[1]);
    assert!(a.2 <= b.1, "with --jobs 1 heavy ops must not overlap");
}

#[tokio::test]
async fn failure_names_the_vertex_and_cancels_siblings() {
    let mut d = Definition::new();
    let s = d.add(Op::Scratch, VertexMeta::default());
    let slow = exec(&mut d, s.clone(), "sleep:5000");
    let bad = exec(&mut d, s.clone(), "fail");
    let root = merge(&mut d, s, vec![slow, bad]);
    d.root = Some(root.vertex);
    let w = Arc::new(Fake::default());
    let start = Instant::now();
    let (r, evs) = run(&d, w.clone(), Arc::new(MemCache::default()), 4).await;
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "the slow sibling must be cancelled"
    );
    match r {
        Err(SolveError::Vertex { name, source, .. }) => {
            assert_eq!(name, "RUN fail");
            assert_eq!(source.to_string(), "exit 1");
        }
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => panic!("must fail"),
    }
    assert_eq!(
        w.cancelled.load(Ordering::SeqCst),
        1,
        "the sleeping exec was dropped"
    );
    assert_eq!(
        evs.iter()
            .filter(|e| matches!(e, Event::Failed { .. }))
            .count(),
        1
    );
}

#[tokio::test]
async fn ignore_cache_reruns() {
    let mut d = Definition::new();
    let s = d.add(Op::Scratch, VertexMeta::default());
    let a = d.add(
        Op::Exec(ExecOp {
            rootfs: s,
            args: vec!["a".into()],
            env: vec![],
            cwd: "/".into(),
            user: String::new(),
            network: NetworkMode::None,
            mounts: vec![],
            security: Default::default(),
        }),
        VertexMeta {
            ignore_cache: true,
            ..Default::default()
        },
    );
    d.root = Some(a.vertex);
    let cache = Arc::new(MemCache::default());
    run(&d, Arc::new(Fake::default()), cache.clone(), 2)
        .await
        .0
        .unwrap();
    let w = Arc::new(Fake::default());
    run(&d, w.clone(), cache, 2).await.0.unwrap();
    assert_eq!(w.calls.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn reruns_are_explained_against_the_previous_build_of_the_same_step() {
    let cache = Arc::new(MemCache::default());
    let build = |mid: &str| {
        let mut d = Definition::new();
        let s = d.add(Op::Scratch, VertexMeta::default());
        let a = exec(&mut d, s, "a");
        let b = d.add(
            Op::Exec(ExecOp {
                rootfs: a,
                args: vec![mid.into()],
                env: vec![],
                cwd: "/".into(),
                user: String::new(),
                network: NetworkMode::None,
                mounts: vec![],
                security: Default::default(),
            }),
            VertexMeta {
                name: "[2/3] RUN mid".into(),
                ..Default::default()
            },
        );
        let c = exec(&mut d, b, "c");
        d.root = Some(c.vertex);
        d
    };
    let (_, evs) = run(&build("b1"), Arc::new(Fake::default()), cache.clone(), 2).await;
    assert!(
        !evs.iter().any(|e| matches!(e, Event::Explain { .. })),
        "first build: nothing to compare"
    );
    let (r, evs) = run(&build("b2"), Arc::new(Fake::default()), cache.clone(), 2).await;
    r.unwrap();
    let explained: Vec<(u32, String)> = evs
        .iter()
        .filter_map(|e| match e {
            Event::Explain { number, reason, .. } => Some((*number, reason.clone())),
            _ => None,
        })
        .collect();
    let started = |n: &str| {
        evs.iter()
            .find_map(|e| match e {
                Event::Started { number, name, .. } if name == n => Some(*number),
                _ => None,
            })
            .unwrap()
    };
    assert_eq!(
        explained,
        vec![
            (started("[2/3] RUN mid"), "command changed".to_string()),
            (
                started("RUN c"),
                "an input changed: [2/3] RUN mid".to_string()
            )
        ]
    );
    // The same build again is cached; then with the cache entry gone, the reason says so.
    cache.0.lock().unwrap().clear();
    let (_, evs) = run(&build("b2"), Arc::new(Fake::default()), cache, 2).await;
    assert!(evs.iter().any(
        |e| matches!(e, Event::Explain { reason, .. } if reason == "its cached result is gone (pruned)")
    ));
}

fn four_sleeps() -> Definition {
    let mut d = Definition::new();
    let s = d.add(Op::Scratch, VertexMeta::default());
    let xs: Vec<Input> = (0..4)
        .map(|i| exec(&mut d, s.clone(), &format!("sleep:{}", 300 + i)))
        .collect();
    let root = merge(&mut d, s, xs);
    d.root = Some(root.vertex);
    d
}

/// The most heavy ops the fake worker had running at once.
fn most_at_once(w: &Fake) -> usize {
    let spans = w.spans.lock().unwrap();
    spans
        .iter()
        .map(|a| spans.iter().filter(|b| b.1 <= a.1 && a.1 < b.2).count())
        .max()
        .unwrap_or(0)
}

#[tokio::test]
async fn idle_cpus_admit_more_heavy_ops_than_jobs_and_busy_ones_do_not() {
    let d = four_sleeps();
    let opts = |idle: bool| SolveOptions {
        jobs: 1,
        idle_jobs: Some(3),
        idle_probe: Some(IdleProbe::new(move || usize::from(idle))),
    };
    // CPUs idle: one slot plus two extra ones, so three run at once (never four).
    let w = Arc::new(Fake::default());
    solve(
        &d,
        w.clone(),
        Arc::new(MemCache::default()),
        None,
        &opts(true),
    )
    .await
    .unwrap();
    assert_eq!(most_at_once(&w), 3);
    // CPUs busy: the one slot only, as with a strict bound.
    let w = Arc::new(Fake::default());
    solve(
        &d,
        w.clone(),
        Arc::new(MemCache::default()),
        None,
        &opts(false),
    )
    .await
    .unwrap();
    assert_eq!(
        most_at_once(&w),
        1,
        "busy CPUs: heavy ops ran one at a time"
    );
}

#[tokio::test]
async fn no_extra_heavy_op_is_admitted_while_one_is_still_starting() {
    let mut d = Definition::new();
    let s = d.add(Op::Scratch, VertexMeta::default());
    let xs: Vec<Input> = (0..3)
        .map(|i| exec(&mut d, s.clone(), &format!("startup:{}", 400 + i)))
        .collect();
    let root = merge(&mut d, s, xs);
    d.root = Some(root.vertex);
    let opts = SolveOptions {
        jobs: 1,
        idle_jobs: Some(3),
        idle_probe: Some(IdleProbe::new(|| 2)),
    };
    let w = Arc::new(Fake::default());
    solve(&d, w.clone(), Arc::new(MemCache::default()), None, &opts)
        .await
        .unwrap();
    let mut starts: Vec<Instant> = w.spans.lock().unwrap().iter().map(|s| s.1).collect();
    starts.sort();
    // The first op holds its slot; the idle CPUs admit the other two only once its command
    // runs (60 ms in), and then both at once.
    let (second, third) = (starts[1] - starts[0], starts[2] - starts[0]);
    assert!(second >= Duration::from_millis(60), "{second:?}");
    assert!(
        third.checked_sub(second).unwrap() < Duration::from_millis(40),
        "{second:?} {third:?}"
    );
    assert_eq!(most_at_once(&w), 3);
}

#[tokio::test]
async fn a_cycle_is_an_error_not_a_hang() {
    let mut d = Definition::new();
    let s = d.add(Op::Scratch, VertexMeta::default());
    let a = exec(&mut d, s, "a");
    let b = exec(&mut d, a.clone(), "b");
    // Tamper with a deserialised definition: a now reads b, which reads a.
    if let Some(Op::Exec(e)) = d.vertices.get_mut(&a.vertex).map(|v| &mut v.op) {
        e.rootfs = b.clone();
    }
    d.root = Some(b.vertex);
    let (r, _) = run(
        &d,
        Arc::new(Fake::default()),
        Arc::new(MemCache::default()),
        1,
    )
    .await;
    assert!(matches!(r, Err(SolveError::Cycle(_))), "{:?}", r.err());
}

/// Issue 11, item 6: a graph 5,000 vertices deep solves on a 2 MiB stack (awaiting each
/// level's future inside the next used to recurse once per level and overflow it).
#[test]
fn a_deep_chain_solves_on_a_small_stack() {
    std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(|| {
            let mut d = Definition::new();
            let mut top = d.add(Op::Scratch, VertexMeta::default());
            for _ in 0..5000 {
                top = merge(&mut d, top, vec![]);
            }
            d.root = Some(top.vertex);
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            let cache = Arc::new(MemCache::default());
            let (r, _) = rt.block_on(run(&d, Arc::new(Fake::default()), cache.clone(), 2));
            assert_eq!(r.unwrap().executed, 5001);
            let (r, _) = rt.block_on(run(&d, Arc::new(Fake::default()), cache, 2));
            assert_eq!(r.unwrap().executed, 0);
        })
        .unwrap()
        .join()
        .unwrap();
}
