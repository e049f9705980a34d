//! Op graph, vertex names, history and `apply_changes`.

use kiln_frontend::{apply_changes, build, BuildOptions, ImageResolver, ResolvedImage};
use kiln_oci::spec::{ConfigBuilder, ImageConfiguration, ImageConfigurationBuilder};
use kiln_opgraph::{FileAction, Op};

struct Busybox;
impl ImageResolver for Busybox {
    fn resolve(&self, reference: &str) -> Result<ResolvedImage, String> {
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
        fn resolve(&self, r: &str) -> Result<ResolvedImage, String> {
            if r == "unused" {
                panic!("resolved an unused stage")
            }
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
