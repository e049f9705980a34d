//! `--format`/`-f` as docker users write it (docs.docker.com "Format command and log
//! output" and each command's --format section), through the real `kiln` binary: `images`,
//! `history`, `inspect`, `container inspect`, `ps`, `volume ls|inspect`, `stats`. Needs root
//! and Debian's busybox-static (the base image is imported locally); skipped otherwise.

mod common;
use common::*;

fn root() -> Option<Kiln> {
    if !can_run(&[]) {
        return None;
    }
    let k = Kiln::new();
    k.seed_local_base();
    Some(k)
}

#[test]
fn images_and_history_take_go_templates_and_tables() {
    let Some(k) = root() else { return };
    assert_eq!(
        k.ok(&["images", "--format", "{{.Repository}}:{{.Tag}}"]),
        "busybox:latest\n"
    );
    let id = k.ok(&["images", "-q"]);
    assert_eq!(
        k.ok(&["images", "--format", "{{.ID}}"]),
        id,
        "the same short ID as -q"
    );
    assert_eq!(k.ok(&["images", "-q", "--format", "table {{.Tag}}"]), id);
    assert_eq!(k.ok(&["images", "-q", "--format", "{{.Tag}}"]), "latest\n");
    let table = k.ok(&["images", "--format", "table {{.Repository}}\\t{{.Tag}}"]);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines, ["REPOSITORY   TAG", "busybox      latest"]);
    let json: serde_json::Value =
        serde_json::from_str(k.ok(&["images", "--format", "json"]).trim()).unwrap();
    assert_eq!(json["Repository"], "busybox");
    assert_eq!(json["Tag"], "latest");
    assert!(
        json["CreatedSince"].as_str().unwrap().ends_with(" ago"),
        "{json}"
    );

    let history = k.ok(&[
        "history",
        "--format",
        "{{.ID}}|{{.CreatedBy}}|{{upper .Comment}}",
        "busybox",
    ]);
    assert_eq!(
        history,
        format!("{}|kiln import|IMPORTED FROM TARBALL\n", id.trim())
    );
    // docker's history: RFC 3339 (images: Go's time string).
    let at = k.ok(&["history", "--format", "{{.CreatedAt}}", "busybox"]);
    assert!(at.trim_end().ends_with('Z') && at.contains('T'), "{at}");
    let at = k.ok(&["images", "--format", "{{.CreatedAt}}"]);
    assert!(at.trim_end().ends_with(" +0000 UTC"), "{at}");
    let history = k.ok(&["history", "--format", "table", "busybox"]);
    assert!(
        history.starts_with("IMAGE          CREATED"),
        "docker's headers:\n{history}"
    );
}

#[test]
fn inspect_format_runs_the_template_per_object() {
    let Some(k) = root() else { return };
    k.ok(&[
        "create",
        "--name",
        "web",
        "-l",
        "tier=front",
        "busybox",
        "sleep",
        "9",
    ]);
    assert_eq!(
        k.ok(&[
            "inspect",
            "-f",
            "{{.Os}} {{json .Config.Cmd}} {{.Nope}}",
            "busybox"
        ]),
        "linux [\"sh\"] <no value>\n"
    );
    assert_eq!(
        k.ok(&[
            "inspect",
            "--format",
            "{{.Name}} {{.State.Status}} {{.Config.Labels.tier}}",
            "web",
            "busybox"
        ]),
        "/web created front\n<no value> <no value> <no value>\n"
    );
    assert_eq!(
        k.ok(&[
            "container",
            "inspect",
            "-f",
            "{{range $k, $v := .Config.Labels}}{{$k}}={{$v}} {{end}}",
            "web"
        ]),
        "tier=front \n"
    );
    // `-f json` is docker's default output.
    assert_eq!(
        k.ok(&["inspect", "-f", "json", "web"]),
        k.ok(&["inspect", "web"])
    );
    // docker's exit codes: 64 for a template that does not parse, 1 when it fails.
    let bad = k.run(&["inspect", "-f", "{{.Name", "web"]);
    assert_eq!(bad.status.code(), Some(64));
    assert!(
        stderr(&bad).contains("template parsing error: template: :1: unclosed action"),
        "{}",
        stderr(&bad)
    );
    let bad = k.run(&["inspect", "-f", "{{.Name.First}}", "web"]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(
        stderr(&bad).contains("can't evaluate field First in type string"),
        "{}",
        stderr(&bad)
    );
}

#[test]
fn ps_format_has_dockers_fields_and_headers() {
    let Some(k) = root() else { return };
    k.ok(&["volume", "create", "data"]);
    let id = k.ok(&[
        "create",
        "--name",
        "web",
        "-l",
        "com.example.app=shop",
        "-v",
        "data:/d",
        "busybox",
        "sleep",
        "9",
    ]);
    let short = &id.trim()[..12];
    assert_eq!(
        k.ok(&[
            "ps",
            "-a",
            "--format",
            "{{.ID}}: {{.Names}} {{.Image}} {{.Command}} {{.State}} {{.Mounts}} {{.Label \"com.example.app\"}}"
        ]),
        format!("{short}: web busybox \"sleep 9\" created data shop\n")
    );
    let table = k.ok(&[
        "ps",
        "-a",
        "--format",
        "table {{.Names}}\\t{{.Status}}\\t{{.Label \"com.example.app\"}}",
    ]);
    assert_eq!(
        table.lines().collect::<Vec<_>>(),
        ["NAMES   STATUS    APP", "web     Created   shop"]
    );
    assert_eq!(
        k.ok(&["ps", "-a", "--format", "table"]),
        k.ok(&["ps", "-a"]),
        "`table` alone is the default listing"
    );
    assert_eq!(
        k.ok(&["ps", "-a", "-q", "--format", "table"]),
        format!("{short}\n"),
        "-q wins over `table`"
    );
    assert_eq!(
        k.ok(&["ps", "-a", "-q", "--format", "{{.Names}}"]),
        "web\n",
        "a template wins over -q, as docker's"
    );
    let json: serde_json::Value =
        serde_json::from_str(k.ok(&["ps", "-a", "--format", "{{json .}}"]).trim()).unwrap();
    assert_eq!(json["Names"], "web");
    assert_eq!(json["Labels"], "com.example.app=shop");
    assert_eq!(json["LocalVolumes"], "1");
    // A field ps does not have, and a template that does not parse: exit 1 as docker's.
    let bad = k.run(&["ps", "-a", "--format", "{{.Nope}}"]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(
        stderr(&bad).contains("can't evaluate field Nope"),
        "{}",
        stderr(&bad)
    );
    let bad = k.run(&["ps", "--format", "{{if .ID}}"]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(
        stderr(&bad).contains("template parsing error: template: :1: unexpected EOF"),
        "{}",
        stderr(&bad)
    );
    let stats = k.ok(&[
        "stats",
        "-a",
        "--no-stream",
        "--format",
        "{{.Name}} {{.PIDs}} {{json .MemPerc}}",
    ]);
    assert_eq!(stats, "web 0 \"0.00%\"\n");
}

#[test]
fn volume_ls_and_inspect_format() {
    let Some(k) = root() else { return };
    k.ok(&["volume", "create", "--label", "tier=db", "data"]);
    k.ok(&["volume", "create", "logs"]);
    assert_eq!(
        k.ok(&[
            "volume",
            "ls",
            "--format",
            "{{.Name}} {{.Driver}} {{.Label \"tier\"}}"
        ]),
        "data local db\nlogs local \n"
    );
    assert_eq!(
        k.ok(&["volume", "ls", "-q", "--format", "{{upper .Name}}"]),
        "DATA\nLOGS\n"
    );
    assert_eq!(
        k.ok(&["volume", "ls", "--format", "table {{.Name}}\\t{{.Scope}}"])
            .lines()
            .collect::<Vec<_>>(),
        [
            "VOLUME NAME   SCOPE",
            "data          local",
            "logs          local"
        ]
    );
    assert_eq!(
        k.ok(&["volume", "ls", "--format", "table"]),
        k.ok(&["volume", "ls"])
    );
    let out = k.ok(&[
        "volume",
        "inspect",
        "-f",
        "{{.Name}} {{json .Labels}}",
        "data",
    ]);
    assert_eq!(out, "data {\"tier\":\"db\"}\n");
    let bad = k.run(&["volume", "inspect", "--format", "{{nope}}", "data"]);
    assert_eq!(bad.status.code(), Some(64));
    assert!(
        stderr(&bad)
            .contains("template parsing error: template: :1: function \"nope\" not defined"),
        "{}",
        stderr(&bad)
    );
}
