//! Op graph, vertex names, history and `apply_changes`.

use kiln_frontend::{
    apply_changes, build, BuildOptions, ImageResolver, ResolveError, ResolvedImage,
};
use kiln_oci::spec::{ConfigBuilder, ImageConfiguration, ImageConfigurationBuilder};
use kiln_opgraph::{FileAction, Op};

struct Busybox;
impl ImageResolver for Busybox {
    fn resolve(&self, reference: &str) -> Result<ResolvedImage, ResolveError> {
        let cfg = ConfigBuilder::default()
            .cmd(vec!["sh".to_string()])
            .build()
            .unwrap();
        let config = ImageConfigurationBuilder::default()
            .config(cfg)
            .build()
            .unwrap();
        Ok(ResolvedImage {
            reference: reference.into(),
            digest: "sha256:00".into(),
            config,
            onbuild: vec![],
        })
    }
}

fn opts() -> BuildOptions {
    BuildOptions {
        file_name: "Dockerfile".into(),
        ..Default::default()
    }
}

#[test]
fn graph_names_and_history() {
    let df = "FROM busybox AS builder\nRUN make\n\nFROM busybox\nARG V=1\nWORKDIR app\nCOPY --from=builder /out /bin/\nCOPY a b ./\nRUN <<EOF\necho $V\nEOF\nENV A=b\nEXPOSE 80\n";
    let b = build(df, &opts(), &Busybox).unwrap();
    b.definition.validate().unwrap();
    let names: Vec<&str> = b
        .definition
        .vertices
        .values()
        .map(|v| v.meta.name.as_str())
        .collect();
    assert!(names.contains(&"[builder 2/2] RUN make"), "{names:?}");
    assert!(
        names.contains(&"[internal] load build context"),
        "{names:?}"
    );
    assert!(names.contains(&"[3/8] WORKDIR app"), "{names:?}");
    let created: Vec<&str> = b.history.iter().map(|h| h.created_by.as_str()).collect();
    assert_eq!(
        created,
        [
            "ARG V=1",
            "WORKDIR /app",
            "COPY --from=builder /out /bin/ # buildkit",
            "COPY a b ./ # buildkit",
            "RUN |1 V=1 /bin/sh -c echo $V\n # buildkit",
            "ENV A=b",
            "EXPOSE map[80/tcp:{}]",
        ]
    );
    assert!(b.history[1].layer_vertex.is_some() && b.history[0].layer_vertex.is_none());
    let root = &b.definition.vertices[b.definition.root.as_ref().unwrap()];
    let Op::Exec(e) = &b.definition.vertices[&b.history[4]
        .layer_vertex
        .clone()
        .map(kiln_opgraph::VertexDigest)
        .unwrap()]
        .op
    else {
        panic!("not exec")
    };
    assert_eq!(e.args, ["/bin/sh", "-c", "echo $V\n"]);
    assert_eq!(e.cwd, "/app");
    assert!(e.env.contains(&"V=1".to_string()));
    assert!(matches!(root.op, Op::Exec(_)));
    let copies: Vec<_> = b
        .definition
        .vertices
        .values()
        .filter_map(|v| match &v.op {
            Op::File(f) => match f.actions.first() {
                Some(FileAction::Copy(c)) => Some((c.src.clone(), c.dest.clone())),
                _ => None,
            },
            _ => None,
        })
        .collect();
    assert!(
        copies.contains(&(vec!["a".into(), "b".into()], "/app/".into())),
        "{copies:?}"
    );
    assert!(
        copies.contains(&(vec!["out".into()], "/bin/".into())),
        "{copies:?}"
    );
}

#[test]
fn unused_stage_not_resolved() {
    struct Strict;
    impl ImageResolver for Strict {
        fn resolve(&self, r: &str) -> Result<ResolvedImage, ResolveError> {
            assert!(r != "unused", "resolved an unused stage");
            Busybox.resolve(r)
        }
    }
    build(
        "FROM unused\nRUN x\nFROM busybox\nRUN y\n",
        &opts(),
        &Strict,
    )
    .unwrap();
}

#[test]
fn changes() {
    let mut c = ImageConfiguration::default();
    apply_changes(
        &mut c,
        &[
            "CMD [\"sh\"]".into(),
            "ENV A=1 B=2".into(),
            "EXPOSE 80".into(),
            "WORKDIR /srv".into(),
            "USER nobody".into(),
        ],
    )
    .unwrap();
    let cfg = c.config().clone().unwrap();
    assert_eq!(cfg.cmd().clone().unwrap(), ["sh"]);
    assert_eq!(cfg.env().clone().unwrap(), ["A=1", "B=2"]);
    assert_eq!(cfg.working_dir().as_deref(), Some("/srv"));
    assert_eq!(cfg.user().as_deref(), Some("nobody"));
    assert!(apply_changes(&mut c, &["RUN x".into()]).is_err());
}

/// Runs `f` on a thread with the default 2 MiB test stack.
fn on_small_stack(f: impl FnOnce() + Send + 'static) {
    std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(f)
        .unwrap()
        .join()
        .unwrap();
}

/// Issue 11, item 6: deep input ends in a clear error or a result, never a stack overflow.
#[test]
fn deep_input_converts_or_fails_cleanly() {
    on_small_stack(|| {
        // ARG defaults nested 10,000 deep: the lexer's limit.
        let n = 10_000;
        let df = format!(
            "ARG X={}x{}\nFROM busybox\n",
            "${a:-".repeat(n),
            "}".repeat(n)
        );
        let e = build(&df, &opts(), &Busybox).unwrap_err();
        assert!(
            e.message
                .contains("variable substitutions nested deeper than 100"),
            "{}",
            e.message
        );
        assert!(
            e.message.len() < 400,
            "the message quotes the word's start only"
        );
        assert_eq!(e.line, 1);

        // 2,500 chained `FROM sN AS sN+1` stages: one image vertex.
        let mut df = String::from("FROM busybox AS s0\nENV FIRST=1\n");
        for i in 0..2500 {
            df.push_str(&format!("FROM s{i} AS s{}\n", i + 1));
        }
        let b = build(&df, &opts(), &Busybox).unwrap();
        assert_eq!(b.definition.vertices.len(), 1);
        let env = b.config.config().as_ref().unwrap().env().clone().unwrap();
        assert!(env.contains(&"FIRST=1".to_string()), "{env:?}");

        // A 2,500-long `COPY --from` chain: every stage's copy is in the graph.
        let mut df = String::from("FROM busybox AS s0\nRUN echo > /f\n");
        for i in 0..2500 {
            df.push_str(&format!(
                "FROM busybox AS s{}\nCOPY --from=s{i} /f /f\n",
                i + 1
            ));
        }
        let b = build(&df, &opts(), &Busybox).unwrap();
        b.definition.validate().unwrap();
        let copies = b
            .definition
            .vertices
            .values()
            .filter(|v| matches!(v.op, Op::File(_)))
            .count();
        assert_eq!(copies, 2500);
    });
}
