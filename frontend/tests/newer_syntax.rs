//! Conversion-level tests for the newer Dockerfile syntax (RUN --mount, --network,
//! --security, heredocs in COPY/ADD/RUN, COPY --parents/--exclude/--link, ADD URL,
//! --build-context, ONBUILD from images, "did you mean" hints). The cases come from
//! ../shared/conformance/cases-newer-syntax.md and the run-mount-* conformance cases.

use kiln_frontend::{
    build, BuildOptions, ImageResolver, NamedContext, ResolveError, ResolvedImage,
};
use kiln_oci::spec::{ConfigBuilder, ImageConfigurationBuilder};
use kiln_opgraph::{
    CacheSharing, CopyAction, Definition, ExecOp, FileAction, Input, MountKind, NetworkMode, Op,
    Security,
};

struct Images;
impl ImageResolver for Images {
    fn resolve(&self, reference: &str) -> Result<ResolvedImage, ResolveError> {
        if reference.contains("missing") || reference == "buidler" {
            return Err(ResolveError::new(format!("{reference}: not found")));
        }
        let cfg = ConfigBuilder::default()
            .cmd(vec!["sh".to_string()])
            .build()
            .unwrap();
        Ok(ResolvedImage {
            reference: reference.into(),
            digest: format!("sha256:{:0>64}", reference.len()),
            config: ImageConfigurationBuilder::default()
                .config(cfg)
                .build()
                .unwrap(),
            onbuild: if reference.contains("onbuild") {
                vec!["RUN echo triggered".into(), "ENV FROM_TRIGGER=1".into()]
            } else {
                vec![]
            },
        })
    }
}

fn opts() -> BuildOptions {
    BuildOptions {
        file_name: "Dockerfile".into(),
        ..Default::default()
    }
}

fn conv(df: &str) -> kiln_frontend::Build {
    let b = build(df, &opts(), &Images).unwrap_or_else(|e| panic!("{e} (hint {:?})", e.hint));
    b.definition.validate().unwrap();
    b
}

fn err(df: &str) -> kiln_frontend::Error {
    build(df, &opts(), &Images).expect_err("must fail")
}

/// The op of the vertex that produced the n-th history entry with a layer.
fn step_ops(b: &kiln_frontend::Build) -> Vec<Op> {
    b.history
        .iter()
        .filter_map(|h| h.layer_vertex.clone())
        .map(|v| {
            b.definition.vertices[&kiln_opgraph::VertexDigest(v)]
                .op
                .clone()
        })
        .collect()
}

fn execs(b: &kiln_frontend::Build) -> Vec<ExecOp> {
    step_ops(b)
        .into_iter()
        .filter_map(|o| match o {
            Op::Exec(e) => Some(e),
            _ => None,
        })
        .collect()
}

fn file_actions(b: &kiln_frontend::Build) -> Vec<Vec<FileAction>> {
    step_ops(b)
        .into_iter()
        .filter_map(|o| match o {
            Op::File(f) => Some(f.actions),
            _ => None,
        })
        .collect()
}

fn op_of<'a>(d: &'a Definition, i: &Input) -> &'a Op {
    &d.vertices[&i.vertex].op
}

#[test]
fn run_mount_bind_conformance_case() {
    let df = std::fs::read_to_string(
        "../../shared/conformance/cases/run-mount-bind/Dockerfile",
    )
    .unwrap_or_else(|_| "FROM 127.0.0.1:5000/busybox:latest AS data\nRUN mkdir /payload && echo from-stage > /payload/p.txt\n\nFROM 127.0.0.1:5000/busybox:latest\nRUN mkdir -p /mnt/ctx /mnt/stage\nRUN --mount=type=bind,target=/mnt/ctx cat /mnt/ctx/input.txt > /from-context.txt\nRUN --mount=type=bind,from=data,source=/payload,target=/mnt/stage cp /mnt/stage/p.txt /from-stage.txt\nRUN --mount=type=bind,target=/mnt/ctx,rw echo scribble >> /mnt/ctx/input.txt && cat /mnt/ctx/input.txt > /rw-view.txt\nRUN ls -A /mnt/ctx /mnt/stage > /after.txt\n".into());
    let b = conv(&df);
    let e = execs(&b);
    // The target stage's steps: mkdir, ctx, stage, rw, ls.
    let ctx = &e[1].mounts;
    assert_eq!(ctx.len(), 1);
    assert_eq!(ctx[0].target, "/mnt/ctx");
    let MountKind::Bind {
        source,
        path,
        readwrite,
    } = &ctx[0].kind
    else {
        panic!("{ctx:?}")
    };
    assert_eq!((path.as_str(), *readwrite), ("/", false));
    assert!(
        matches!(op_of(&b.definition, source), Op::Local { name, include, .. } if name == "context" && include.is_empty())
    );
    let st = &e[2].mounts[0];
    let MountKind::Bind { source, path, .. } = &st.kind else {
        panic!()
    };
    assert_eq!(path, "/payload");
    assert!(
        matches!(op_of(&b.definition, source), Op::Exec(x) if x.args[2].contains("from-stage"))
    );
    let MountKind::Bind { readwrite, .. } = &e[3].mounts[0].kind else {
        panic!()
    };
    assert!(*readwrite);
    assert!(e[4].mounts.is_empty());
}

#[test]
fn run_mount_cache_and_tmpfs_defaults() {
    let b = conv("FROM busybox\nWORKDIR /w\nRUN --mount=type=cache,target=/cache-target --mount=type=tmpfs,target=tmp,size=1m true\nRUN --mount=type=cache,id=go,target=/root/.cache,sharing=locked,mode=0700,uid=1000,gid=1000,ro true\n");
    let e = execs(&b);
    assert_eq!(e[0].mounts.len(), 2);
    assert_eq!(
        e[0].mounts[0].kind,
        MountKind::Cache {
            id: "/cache-target".into(),
            sharing: CacheSharing::Shared,
            from: None,
            path: "/".into(),
            mode: 0o755,
            uid: 0,
            gid: 0,
            readonly: false
        }
    );
    assert_eq!(e[0].mounts[1].target, "/w/tmp");
    assert_eq!(
        e[0].mounts[1].kind,
        MountKind::Tmpfs {
            size: Some(1 << 20)
        }
    );
    assert_eq!(
        e[1].mounts[0].kind,
        MountKind::Cache {
            id: "go".into(),
            sharing: CacheSharing::Locked,
            from: None,
            path: "/".into(),
            mode: 0o700,
            uid: 1000,
            gid: 1000,
            readonly: true
        }
    );
}

#[test]
fn run_mount_cache_from_stage_and_variables() {
    let b = conv("FROM busybox AS seed\nRUN mkdir /s\nFROM busybox\nARG CACHE=/var/cache/x\nRUN --mount=type=cache,target=$CACHE,from=seed,source=s true\n");
    let e = execs(&b);
    let m = &e.last().unwrap().mounts[0];
    assert_eq!(m.target, "/var/cache/x");
    let MountKind::Cache { id, from, path, .. } = &m.kind else {
        panic!()
    };
    assert_eq!(id, "/var/cache/x");
    assert_eq!(path, "/s");
    assert!(matches!(
        op_of(&b.definition, from.as_ref().unwrap()),
        Op::Exec(_)
    ));
}

#[test]
fn run_mount_secret_defaults() {
    let b = conv("FROM busybox\nRUN --mount=type=secret,id=npmrc --mount=type=secret,target=/etc/token,required,mode=0440,uid=5 true\n");
    let e = execs(&b);
    assert_eq!(e[0].mounts[0].target, "/run/secrets/npmrc");
    assert_eq!(
        e[0].mounts[0].kind,
        MountKind::Secret {
            id: "npmrc".into(),
            required: false,
            mode: 0o400,
            uid: 0,
            gid: 0
        }
    );
    assert_eq!(e[0].mounts[1].target, "/etc/token");
    assert_eq!(
        e[0].mounts[1].kind,
        MountKind::Secret {
            id: "token".into(),
            required: true,
            mode: 0o440,
            uid: 5,
            gid: 0
        }
    );
}

#[test]
fn run_mount_bind_context_source_include_and_image() {
    let b = conv("FROM busybox\nRUN --mount=source=src/app,target=/app --mount=from=alpine:3,target=/alp true\n");
    let e = execs(&b);
    let MountKind::Bind { source, path, .. } = &e[0].mounts[0].kind else {
        panic!()
    };
    assert_eq!(path, "/src/app");
    assert!(
        matches!(op_of(&b.definition, source), Op::Local { include, .. } if include == &["src/app".to_string()])
    );
    let MountKind::Bind { source, .. } = &e[0].mounts[1].kind else {
        panic!()
    };
    assert!(
        matches!(op_of(&b.definition, source), Op::Image { reference, .. } if reference == "alpine:3")
    );
}

#[test]
fn run_mount_errors() {
    for (df, want) in [
        (
            "FROM busybox\nRUN --mount=type=bind true\n",
            "requires a target",
        ),
        (
            "FROM busybox\nRUN --mount=type=cahce,target=/x true\n",
            "did you mean cache?",
        ),
        (
            "FROM busybox\nRUN --mount=type=tmpfs,target=/x,from=a true\n",
            "should not have a from",
        ),
        (
            "FROM busybox\nRUN --mount=type=bind,target=/x,size=1 true\n",
            "unexpected key 'size'",
        ),
        ("FROM busybox\nRUN --mount=type=ssh true\n", "ssh"),
        (
            "FROM busybox\nRUN --mount=target=/x --mount=type=tmpfs,target=/x true\n",
            "same target",
        ),
        (
            "FROM busybox\nRUN --security=bogus true\n",
            "not valid for RUN --security",
        ),
        (
            "FROM busybox\nRUN --network=hots true\n",
            "unsupported network mode",
        ),
    ] {
        let e = err(df);
        let text = format!("{} {:?}", e.message, e.hint);
        assert!(text.contains(want), "{df:?}: {text}");
        assert_eq!(e.line, 2, "{df:?}");
    }
    assert_eq!(
        err("FROM busybox\nRUN --network=hots true\n")
            .hint
            .as_deref(),
        Some("did you mean --network=host?")
    );
}

#[test]
fn run_network_and_security() {
    let b = conv("FROM busybox\nRUN --network=none echo ok\nRUN --network=default echo d\nRUN --network=host --security=insecure echo h\n");
    let e = execs(&b);
    assert_eq!(e[0].network, NetworkMode::None);
    assert_eq!(e[1].network, NetworkMode::Default);
    assert_eq!(e[2].network, NetworkMode::Host);
    assert_eq!(e[2].security, Security::Insecure);
    assert_eq!(e[0].security, Security::Sandbox);
}

#[test]
fn heredoc_run_forms() {
    let b = conv("FROM busybox\nRUN <<EOF\necho \"line one\" > /heredoc.txt\necho \"HOME is $HOME\" >> /heredoc.txt\nEOF\nRUN <<-EOF\n\techo tab-stripped > /tabs.txt\n\tEOF\nRUN <<FILE1 cat > /file1 && <<FILE2 cat > /file2\nI am\nfirst\nFILE1\nI am\nsecond\nFILE2\n");
    let e = execs(&b);
    assert_eq!(
        e[0].args,
        [
            "/bin/sh",
            "-c",
            "echo \"line one\" > /heredoc.txt\necho \"HOME is $HOME\" >> /heredoc.txt\n"
        ]
    );
    assert_eq!(e[1].args[2], "echo tab-stripped > /tabs.txt\n");
    assert_eq!(
        e[2].args[2],
        "<<FILE1 cat > /file1 && <<FILE2 cat > /file2\nI am\nfirst\nFILE1\nI am\nsecond\nFILE2\n"
    );
}

#[test]
fn heredoc_run_with_shebang_runs_the_file() {
    let b = conv("FROM busybox\nRUN <<EOF\n#!/usr/bin/env python3\nprint('hi')\nEOF\n");
    let e = &execs(&b)[0];
    assert_eq!(e.args, ["/dev/pipes/EOF"]);
    assert_eq!(e.mounts[0].target, "/dev/pipes");
    let MountKind::Bind {
        source,
        path,
        readwrite,
    } = &e.mounts[0].kind
    else {
        panic!()
    };
    assert_eq!((path.as_str(), *readwrite), ("/", false));
    let Op::File(f) = op_of(&b.definition, source) else {
        panic!()
    };
    assert!(matches!(op_of(&b.definition, &f.base), Op::Scratch));
    assert_eq!(
        f.actions,
        [FileAction::Mkfile {
            path: "/EOF".into(),
            data: "#!/usr/bin/env python3\nprint('hi')\n".into(),
            mode: 0o755,
            chown: None
        }]
    );
}

#[test]
fn heredoc_copy_case() {
    let b = conv("FROM busybox\nARG NAME=kiln\nCOPY <<EOF /greeting.txt\nhello $NAME\nEOF\nCOPY <<'EOF' /literal.txt\nhello $NAME\nEOF\nWORKDIR /dest\nCOPY <<EOF <<EOF2 double/\nfirst file\nEOF\nsecond file\nEOF2\nCOPY --chmod=755 --chown=1:2 <<EOF /usr/local/bin/hello\n#!/bin/sh\necho \"hello\"\nEOF\n");
    let a = file_actions(&b);
    let mk = |path: &str, data: &str, mode: u32| FileAction::Mkfile {
        path: path.into(),
        data: data.into(),
        mode,
        chown: None,
    };
    assert_eq!(a[0], [mk("/greeting.txt", "hello kiln\n", 0o644)]);
    assert_eq!(a[1], [mk("/literal.txt", "hello $NAME\n", 0o644)]);
    // a[2] is WORKDIR's mkdir.
    assert_eq!(
        a[3],
        [
            mk("/dest/double/EOF", "first file\n", 0o644),
            mk("/dest/double/EOF2", "second file\n", 0o644)
        ]
    );
    assert_eq!(
        a[4],
        [FileAction::Mkfile {
            path: "/usr/local/bin/hello".into(),
            data: "#!/bin/sh\necho \"hello\"\n".into(),
            mode: 0o755,
            chown: Some(kiln_opgraph::Chown {
                user: "1".into(),
                group: Some("2".into())
            })
        }]
    );
    assert_eq!(
        b.config.config().as_ref().unwrap().working_dir().as_deref(),
        Some("/dest")
    );
}

#[test]
fn heredoc_mixed_with_files() {
    let b = conv("FROM busybox\nADD <<EOF a.txt /out/\nx\nEOF\n");
    let a = &file_actions(&b)[0];
    assert!(matches!(&a[0], FileAction::Mkfile { path, .. } if path == "/out/EOF"));
    assert!(
        matches!(&a[1], FileAction::Copy(c) if c.src == ["a.txt"] && c.dest == "/out/" && c.extract_archives)
    );
}

fn copy_of(a: &[FileAction]) -> &CopyAction {
    a.iter()
        .find_map(|x| match x {
            FileAction::Copy(c) => Some(c),
            _ => None,
        })
        .unwrap()
}

#[test]
fn copy_parents_exclude_link() {
    let b = conv("FROM busybox\nCOPY --parents x/a.txt y/a.txt /parents/\nCOPY --parents ./x/./y/*.txt /pivot/\nCOPY --parents ./src/**/*.txt /deep\nCOPY --exclude=*.md --exclude=docs/*.md --exclude=tmp . /app/\nADD --exclude=*.log logs /logs/\nCOPY --link file.txt /linked/file.txt\n");
    let a = file_actions(&b);
    let c = copy_of(&a[0]);
    assert!(c.parents);
    assert_eq!(c.src, ["x/a.txt", "y/a.txt"]);
    assert_eq!(c.dest, "/parents/");
    let c = copy_of(&a[1]);
    assert_eq!(c.src, ["x/./y/*.txt"]);
    let c = copy_of(&a[2]);
    assert_eq!(c.src, ["src/**/*.txt"]);
    assert_eq!(c.dest, "/deep/", "--parents always copies into a directory");
    let c = copy_of(&a[3]);
    assert_eq!(c.exclude, ["*.md", "docs/*.md", "tmp"]);
    assert!(!c.parents);
    let c = copy_of(&a[4]);
    assert_eq!(c.exclude, ["*.log"]);
    assert!(c.extract_archives);
    let c = copy_of(&a[5]);
    assert_eq!(c.dest, "/linked/file.txt");
    assert!(c.exclude.is_empty());
    let e = err("FROM busybox\nCOPY --parents=maybe a /b/\n");
    assert!(e.message.contains("--parents"), "{}", e.message);
    let e = err("FROM busybox\nADD --parents a /b/\n");
    assert!(e.message.contains("unknown flag: parents"), "{}", e.message);
}

#[test]
fn add_url_with_checksum() {
    let sum = format!("sha256:{}", "ab".repeat(32));
    let b = conv(&format!(
        "FROM busybox\nADD --checksum={sum} --chmod=600 https://example.com/dl/tool.tar.gz?x=1 /opt/\nADD http://example.com/ /index\n"
    ));
    let a = file_actions(&b);
    let c = copy_of(&a[0]);
    assert!(!c.extract_archives, "URLs are never extracted");
    assert_eq!(c.src, ["tool.tar.gz"]);
    assert_eq!(c.dest, "/opt/");
    assert_eq!(c.chmod, Some(0o600));
    assert_eq!(
        op_of(&b.definition, &c.source),
        &Op::Http {
            url: "https://example.com/dl/tool.tar.gz?x=1".into(),
            checksum: Some(sum.clone()),
            filename: "tool.tar.gz".into()
        }
    );
    let c = copy_of(&a[1]);
    assert_eq!(c.src, ["__unnamed__"]);
    assert_eq!(c.dest, "/index");
    for (df, want) in [
        ("FROM busybox\nCOPY http://example.com/x /x\n", "source can't be a URL for COPY"),
        ("FROM busybox\nADD --checksum=sha256:00 http://e.com/x /x\n", "invalid checksum"),
        (
            "FROM busybox\nADD --checksum=sha256:0000000000000000000000000000000000000000000000000000000000000000 a /x\n",
            "non-HTTP(S) sources",
        ),
        ("FROM busybox\nADD git@github.com:a/b.git /x\n", "git sources"),
    ] {
        let e = err(df);
        assert!(e.message.contains(want), "{df:?}: {}", e.message);
    }
}

#[test]
fn chmod_invalid_message() {
    for v in ["64a", "10000"] {
        let e = err(&format!("FROM busybox\nCOPY --chmod={v} file.txt /f\n"));
        assert_eq!(
            e.message,
            format!(
                "invalid chmod parameter: '{v}'. it should be octal string and between 0 and 07777"
            )
        );
    }
    let b = conv("FROM busybox\nCOPY --chmod=4750 f /f\n");
    assert_eq!(copy_of(&file_actions(&b)[0]).chmod, Some(0o4750));
}

#[test]
fn named_build_contexts() {
    let mut o = opts();
    o.named_contexts
        .insert("src".into(), NamedContext::Dir("/tmp/x".into()));
    o.named_contexts.insert(
        "base".into(),
        NamedContext::Image("127.0.0.1:5000/alpine:3".into()),
    );
    o.named_contexts.insert(
        "builder".into(),
        NamedContext::Image("127.0.0.1:5000/builder:1".into()),
    );
    let df = "FROM busybox AS builder\nRUN make\nFROM base\nCOPY --from=src a /a\nCOPY --from=builder /out /out\nRUN --mount=from=src,target=/s true\n";
    let b = build(df, &o, &Images).unwrap();
    b.definition.validate().unwrap();
    let ops = step_ops(&b);
    let Op::File(f) = &ops[0] else { panic!() };
    assert!(
        matches!(op_of(&b.definition, &f.base), Op::Image { reference, .. } if reference == "127.0.0.1:5000/alpine:3")
    );
    let c = copy_of(&f.actions);
    assert!(matches!(op_of(&b.definition, &c.source), Op::Local { name, .. } if name == "src"));
    let Op::File(f) = &ops[1] else { panic!() };
    // A context named like a stage replaces the stage.
    assert!(
        matches!(op_of(&b.definition, &copy_of(&f.actions).source), Op::Image { reference, .. } if reference == "127.0.0.1:5000/builder:1")
    );
    let Op::Exec(e) = &ops[2] else { panic!() };
    let MountKind::Bind { source, .. } = &e.mounts[0].kind else {
        panic!()
    };
    assert!(matches!(op_of(&b.definition, source), Op::Local { name, .. } if name == "src"));
    // A directory context as a FROM: copied onto scratch.
    let b = build("FROM src\nRUN true\n", &o, &Images).unwrap();
    let e = execs(&b);
    let Op::File(f) = op_of(&b.definition, &e[0].rootfs) else {
        panic!()
    };
    assert!(matches!(op_of(&b.definition, &f.base), Op::Scratch));
}

#[test]
fn onbuild_triggers_of_images_run_after_from() {
    let b = conv("FROM registry/onbuild-base\nRUN mine\n");
    let e = execs(&b);
    assert_eq!(e[0].args[2], "echo triggered");
    assert_eq!(e[1].args[2], "mine");
    assert!(e[1].env.contains(&"FROM_TRIGGER=1".to_string()));
    let extra = &b.extra_config;
    assert!(!extra.contains_key("OnBuild"), "triggers are consumed");
}

#[test]
fn did_you_mean_hints() {
    let e = err("FROM busybox\nCOPY --chmdo=644 a /b\n");
    assert_eq!(e.hint.as_deref(), Some("did you mean --chmod?"));
    let e = err("FROM busybox AS builder\nFROM busybox\nCOPY --from=buidler /a /b\n");
    assert_eq!(e.hint.as_deref(), Some("did you mean stage \"builder\"?"));
    let e = err("FROM busybox AS builder\nFROM buidler\n");
    assert!(e.message.contains("not found"), "{}", e.message);
    assert_eq!(e.hint.as_deref(), Some("did you mean stage \"builder\"?"));
}
