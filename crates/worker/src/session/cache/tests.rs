use super::*;
use kiln_oci::Layer;
use kiln_opgraph::{ExecOp, Input, VertexDigest, VertexMeta};
use std::collections::BTreeMap;
use std::sync::Mutex;

#[derive(Default)]
struct Notes(Mutex<Vec<String>>);

impl Observer for Notes {
    fn notice(&self, notice: Notice<'_>) {
        self.0.lock().unwrap().push(format!("{notice:?}"));
    }
}

fn store(dir: &tempfile::TempDir) -> Arc<Store> {
    Arc::new(Store::open(&dir.path().join("root")).unwrap())
}

fn cache(store: &Arc<Store>, imported: Vec<Arc<Imported>>) -> StoreCache {
    StoreCache::new(
        store.clone(),
        "ctx\0Dockerfile\0".into(),
        imported,
        Arc::new(Notes::default()),
    )
}

/// A layer whose blob is in `store` (so the store can produce it).
fn stored_layer(store: &Store, content: &[u8]) -> Layer {
    let (digest, size) = store.write_blob(content).unwrap();
    Layer {
        diff_id: digest.clone(),
        digest,
        size,
        media_type: "application/vnd.oci.image.layer.v1.tar".into(),
    }
}

fn missing_layer() -> Layer {
    Layer {
        diff_id: format!("sha256:{:064x}", 7),
        digest: format!("sha256:{:064x}", 7),
        size: 1,
        media_type: "application/vnd.oci.image.layer.v1.tar".into(),
    }
}

fn run(d: &mut Definition, rootfs: &VertexDigest, arg: &str) -> VertexDigest {
    d.add(
        Op::Exec(ExecOp {
            rootfs: Input {
                vertex: rootfs.clone(),
            },
            args: vec![arg.into()],
            env: vec![],
            cwd: "/".into(),
            user: String::new(),
            network: kiln_opgraph::NetworkMode::Default,
            mounts: vec![],
            security: kiln_opgraph::Security::Sandbox,
        }),
        VertexMeta::default(),
    )
    .vertex
}

fn record(store: &Store, key: &str, out: &Output) {
    store
        .cache_put(key, &serde_json::to_vec(out).unwrap())
        .unwrap();
}

#[test]
fn records_round_trip_through_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(&dir);
    let c = cache(&store, vec![]);
    assert_eq!(c.get("k"), None);
    c.put("k", b"{\"layers\":[]}");
    assert_eq!(c.get("k").as_deref(), Some(&b"{\"layers\":[]}"[..]));
    assert_eq!(
        store.cache_get("k").unwrap().as_deref(),
        Some(&b"{\"layers\":[]}"[..])
    );

    // Explanations' inputs are kept per scope.
    assert!(c.previous_inputs().is_empty());
    c.record_inputs(vec![("slot".into(), "key1".into(), b"made of".to_vec())]);
    let prev = c.previous_inputs();
    assert_eq!(prev["slot"], ("key1".to_string(), b"made of".to_vec()));
    let other = StoreCache::new(
        store.clone(),
        "another project".into(),
        vec![],
        Arc::new(Notes::default()),
    );
    assert!(other.previous_inputs().is_empty());
    // Reopened, the store still holds both.
    drop((c, other));
    let reopened = Arc::new(Store::open(&dir.path().join("root")).unwrap());
    let c = cache(&reopened, vec![]);
    assert!(c.get("k").is_some());
    assert_eq!(c.previous_inputs().len(), 1);
}

/// base → a (one layer, in the result) → b (two layers, the result); `side` (not in the
/// result), `gone` (its layer missing here), `ctx` (a build context) and `uncached`.
struct Fixture {
    def: Definition,
    solved: Solved<Output>,
    keys: BTreeMap<&'static str, String>,
}

fn fixture(store: &Store) -> Fixture {
    let l1 = stored_layer(store, b"one");
    let l2 = stored_layer(store, b"two");
    let l3 = stored_layer(store, b"three");
    let mut def = Definition::new();
    let base = def.add(Op::Scratch, VertexMeta::default()).vertex;
    let a = run(&mut def, &base, "a");
    let b = run(&mut def, &a, "b");
    let side = run(&mut def, &base, "side");
    let gone = run(&mut def, &base, "gone");
    let uncached = run(&mut def, &base, "uncached");
    let ctx = def
        .add(
            Op::Local {
                name: "context".into(),
                include: vec![],
                exclude: vec![],
            },
            VertexMeta::default(),
        )
        .vertex;
    def.root = Some(b.clone());
    let outs = [
        ("base", &base, Output::Layers(vec![])),
        ("a", &a, Output::Layers(vec![l1.clone()])),
        ("b", &b, Output::Layers(vec![l1.clone(), l2])),
        ("side", &side, Output::Layers(vec![l3])),
        ("gone", &gone, Output::Layers(vec![missing_layer()])),
        (
            "ctx",
            &ctx,
            Output::Local {
                name: "context".into(),
                exclude: vec![],
            },
        ),
    ];
    let mut keys = BTreeMap::new();
    let mut solved = Solved {
        root: outs[2].2.clone(),
        outputs: BTreeMap::new(),
        keys: BTreeMap::new(),
        executed: 2,
        cached: 3,
    };
    for (name, d, out) in outs {
        let key = format!("key-{name}");
        record(store, &key, &out);
        solved.outputs.insert(d.clone(), out);
        solved.keys.insert(d.clone(), key.clone());
        keys.insert(name, key);
    }
    solved.keys.insert(uncached, "key-uncached".into());
    // A key for a vertex the definition does not hold.
    solved
        .keys
        .insert(VertexDigest("sha256:elsewhere".into()), "key-a".into());
    Fixture { def, solved, keys }
}

fn exported(c: &StoreCache, f: &Fixture, max: bool) -> Vec<String> {
    let mut keys: Vec<String> = c
        .export_records(&f.def, &f.solved, max)
        .into_iter()
        .map(|r| r.key)
        .collect();
    keys.sort();
    keys
}

#[test]
fn min_exports_the_steps_whose_layers_the_result_holds() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(&dir);
    let f = fixture(&store);
    let c = cache(&store, vec![]);
    assert_eq!(exported(&c, &f, false), ["key-a", "key-b", "key-base"]);
    let records = c.export_records(&f.def, &f.solved, false);
    let b = records.iter().find(|r| r.key == f.keys["b"]).unwrap();
    assert_eq!(b.layers.len(), 2);
    assert_eq!(
        serde_json::from_slice::<Output>(&b.value).unwrap(),
        f.solved.root
    );
}

#[test]
fn max_exports_every_step_whose_layers_are_here_but_never_a_context() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(&dir);
    let f = fixture(&store);
    let c = cache(&store, vec![]);
    assert_eq!(
        exported(&c, &f, true),
        ["key-a", "key-b", "key-base", "key-side"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn imported_hits_are_kept_locally() {
    let dir = tempfile::tempdir().unwrap();
    // Another machine exports a record…
    let their_dir = tempfile::tempdir().unwrap();
    let theirs = store(&their_dir);
    let registry = kiln_registry::Client::new(kiln_registry::RegistryConfig::default());
    let out = Output::Layers(vec![]);
    let value = serde_json::to_vec(&out).unwrap();
    let to = kiln_remotecache::Location::Local(dir.path().join("exported"));
    kiln_remotecache::export(
        &theirs,
        &registry,
        &to,
        vec![Record {
            key: "shared".into(),
            value: value.clone(),
            layers: vec![],
        }],
    )
    .await
    .unwrap();
    // …which this machine imports and reads through the cache.
    let ours = store(&dir);
    let imported = kiln_remotecache::import(&ours, &registry, &to)
        .await
        .unwrap();
    let c = cache(&ours, vec![Arc::new(imported)]);
    assert_eq!(c.get("shared"), Some(value.clone()));
    assert_eq!(ours.cache_get("shared").unwrap(), None);

    let d = VertexDigest("sha256:step".into());
    let local = VertexDigest("sha256:local".into());
    c.put("local-only", b"{}");
    let solved = Solved {
        root: out.clone(),
        outputs: [(d.clone(), out.clone()), (local.clone(), out.clone())].into(),
        keys: [(d, "shared".to_string()), (local, "local-only".to_string())].into(),
        executed: 0,
        cached: 2,
    };
    c.keep_imported_hits(&solved);
    assert_eq!(ours.cache_get("shared").unwrap(), Some(value));
    // A local record is left as it was.
    assert_eq!(
        ours.cache_get("local-only").unwrap().as_deref(),
        Some(&b"{}"[..])
    );
}
