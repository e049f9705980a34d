//! Converts conformance cases that need no filesystem and compares the image config with
//! what BuildKit produced (`expected/NAME.json`), and checks that failure cases fail on the
//! right line. Uses /work/shared/conformance when present; skips otherwise.

use kiln_frontend::{build, BuildOptions, ErrorKind, ImageResolver, ResolveError, ResolvedImage};
use kiln_oci::spec::{Config, ConfigBuilder, ImageConfiguration, ImageConfigurationBuilder};
use serde_json::{json, Map, Value};
use std::path::PathBuf;

struct Busybox;

impl ImageResolver for Busybox {
    fn resolve(&self, reference: &str) -> Result<ResolvedImage, ResolveError> {
        if reference != "127.0.0.1:5000/busybox:latest" {
            return Err(ResolveError::new(format!("{reference}: not found")));
        }
        let cfg: Config = ConfigBuilder::default()
            .cmd(vec!["sh".to_string()])
            .build()
            .unwrap();
        let config: ImageConfiguration = ImageConfigurationBuilder::default()
            .config(cfg)
            .build()
            .unwrap();
        Ok(ResolvedImage {
            reference: reference.into(),
            digest: "sha256:0000".into(),
            config,
            onbuild: vec![],
        })
    }
}

fn root() -> Option<PathBuf> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/conformance");
    if !p.join("cases").is_dir() {
        kiln_testutil::skip(format_args!("{} is not there", p.display()));
        return None;
    }
    Some(p)
}

fn null_if_empty(v: Value) -> Value {
    match &v {
        Value::Array(a) if a.is_empty() => Value::Null,
        Value::Object(o) if o.is_empty() => Value::Null,
        Value::String(s) if s.is_empty() => Value::Null,
        _ => v,
    }
}

fn reduce(b: &kiln_frontend::Build) -> Value {
    let c = b.config.config().clone().unwrap_or_default();
    let map = |v: &Option<Vec<String>>| {
        v.as_ref().map(|v| {
            Value::Object(
                v.iter()
                    .map(|k| (k.clone(), json!({})))
                    .collect::<Map<_, _>>(),
            )
        })
    };
    let mut m = Map::new();
    m.insert("Env".into(), json!(c.env()));
    m.insert("Cmd".into(), json!(c.cmd()));
    m.insert("Entrypoint".into(), json!(c.entrypoint()));
    m.insert("WorkingDir".into(), json!(c.working_dir()));
    m.insert("User".into(), json!(c.user()));
    m.insert("ExposedPorts".into(), json!(map(c.exposed_ports())));
    m.insert("Volumes".into(), json!(map(c.volumes())));
    m.insert("Labels".into(), json!(c.labels()));
    m.insert("StopSignal".into(), json!(c.stop_signal()));
    for k in ["Healthcheck", "Shell", "OnBuild"] {
        m.insert(
            k.into(),
            b.extra_config.get(k).cloned().unwrap_or(Value::Null),
        );
    }
    Value::Object(m.into_iter().map(|(k, v)| (k, null_if_empty(v))).collect())
}

fn case(root: &std::path::Path, name: &str) -> (String, Value, BuildOptions) {
    let dir = root.join("cases").join(name);
    let df = std::fs::read_to_string(dir.join("Dockerfile")).unwrap();
    let cj: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("case.json")).unwrap()).unwrap();
    let mut opts = BuildOptions {
        file_name: "Dockerfile".into(),
        ..Default::default()
    };
    if let Some(a) = cj["build_args"].as_object() {
        for (k, v) in a {
            opts.build_args
                .insert(k.clone(), v.as_str().unwrap_or_default().to_string());
        }
    }
    opts.target = cj["target"].as_str().map(String::from);
    (df, cj, opts)
}

#[test]
fn configs_match_buildkit() {
    let Some(root) = root() else { return };
    let names = [
        "env-forms",
        "env-expansion",
        "env-escapes",
        "config-metadata",
        "cmd-inherited",
        "cmd-reset-by-entrypoint",
        "entrypoint-cmd-exec",
        "entrypoint-shell-form",
        "arg-build-arg-override",
        "arg-global-scope",
        "arg-predefined",
        "healthcheck-shell",
        "onbuild-config",
        "onbuild-trigger",
        "shell-instruction",
        "workdir-chain",
        "multistage-target",
        "multistage-unused-stage",
        "user-uid-gid",
        "run-shell-form",
        "run-exec-form",
        "escape-backtick",
        "line-continuations",
        "copy-from-stage",
        "copy-from-index",
        "copy-dest-forms",
        "copy-globs",
        "copy-from-image",
    ];
    let mut failed = vec![];
    for name in names {
        let (df, _, opts) = case(&root, name);
        let want: Value = serde_json::from_str(
            &std::fs::read_to_string(root.join("expected").join(format!("{name}.json"))).unwrap(),
        )
        .unwrap();
        let want = Value::Object(
            want["config"]
                .as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| (k.clone(), null_if_empty(v.clone())))
                .collect(),
        );
        match build(&df, &opts, &Busybox) {
            Ok(b) => {
                b.definition.validate().unwrap();
                let got = reduce(&b);
                if got != want {
                    failed.push(format!("{name}:\n want {want}\n got  {got}"));
                }
            }
            Err(e) => failed.push(format!("{name}: error {e}")),
        }
    }
    eprintln!("compared {} cases", names.len());
    assert!(failed.is_empty(), "{}", failed.join("\n"));
}

#[test]
fn failures_name_their_line() {
    let Some(root) = root() else { return };
    for name in [
        "fail-unknown-instruction",
        "fail-missing-from-stage",
        "fail-stage-index-out-of-range",
    ] {
        let (df, cj, opts) = case(&root, name);
        let e = build(&df, &opts, &Busybox)
            .err()
            .unwrap_or_else(|| panic!("{name} built"));
        assert_eq!(
            u64::from(e.line),
            cj["error_line"].as_u64().unwrap(),
            "{name}: {e}"
        );
        let text = e.to_string().to_lowercase();
        for want in cj["error_contains"].as_array().unwrap() {
            let alts: Vec<String> = match want {
                Value::Array(a) => a
                    .iter()
                    .map(|s| s.as_str().unwrap().to_lowercase())
                    .collect(),
                v => vec![v.as_str().unwrap().to_lowercase()],
            };
            let text = format!("{text} line {} dockerfile:{}", e.line, e.line);
            assert!(
                alts.iter().any(|a| text.contains(a)),
                "{name}: {text} lacks {alts:?}"
            );
        }
    }
}

#[test]
fn invalid_json_falls_back_to_shell_form() {
    let Some(root) = root() else { return };
    for name in ["fail-invalid-json-run", "cmd-invalid-json"] {
        let (df, _, opts) = case(&root, name);
        assert!(build(&df, &opts, &Busybox).is_ok(), "{name}");
    }
}

#[test]
fn unknown_instruction_hint_and_kinds() {
    let opts = BuildOptions {
        file_name: "Dockerfile".into(),
        ..Default::default()
    };
    let e = build("FROM scratch\nFORM x\n", &opts, &Busybox).unwrap_err();
    assert_eq!(
        (e.kind, e.line, e.message.as_str()),
        (ErrorKind::Semantic, 2, "unknown instruction: FORM")
    );
    assert_eq!(e.hint.as_deref(), Some("did you mean FROM?"));
    assert_eq!(
        build("", &opts, &Busybox).unwrap_err().kind,
        ErrorKind::Syntax
    );
    assert_eq!(
        build("FROM nope\n", &opts, &Busybox).unwrap_err().kind,
        ErrorKind::Resolve
    );
    let e = build("FROM scratch\nCOPY --nope=1 a b\n", &opts, &Busybox).unwrap_err();
    assert!(e.message.contains("nope"), "{e}");
    let o = BuildOptions {
        target: Some("x".into()),
        ..opts.clone()
    };
    let e = build("FROM scratch AS a\n", &o, &Busybox).unwrap_err();
    assert!(e.message.contains('a'), "{e}");
}
