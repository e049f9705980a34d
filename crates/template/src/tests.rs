//! Docker's documentation examples ("Format command and log output", `inspect`, `ps`,
//! `images` --format sections) and Go's text/template semantics.

use super::*;
use serde_json::json;

fn run(t: &str, data: &Value) -> String {
    Template::parse(t).unwrap().execute(data).unwrap()
}

fn container() -> Value {
    json!({
        "Id": "4fa6e0f0c678",
        "Name": "/web",
        "LogPath": "/var/lib/kiln/containers/4fa6/json.log",
        "Args": ["-g", "daemon off;"],
        "State": {"Status": "running", "Health": null},
        "Config": {"Env": ["PATH=/usr/bin", "FOO=bar"], "Image": "nginx:latest",
                   "Labels": {"com.example.vendor": "ACME", "version": "1.0"}},
        "NetworkSettings": {
            "Networks": {"bridge": {"IPAddress": "172.17.0.2", "MacAddress": "02:42:ac:11:00:02"}},
            "Ports": {"80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8080"}]}
        }
    })
}

#[test]
fn fields_nested_fields_and_missing_keys() {
    let c = container();
    assert_eq!(run("{{.Name}}", &c), "/web");
    assert_eq!(run("{{.State.Status}}", &c), "running");
    assert_eq!(
        run("{{ .LogPath }}", &c),
        "/var/lib/kiln/containers/4fa6/json.log"
    );
    assert_eq!(run("{{.Nope}}", &c), "<no value>");
    assert_eq!(run("{{.Nope.Deeper}}", &c), "<no value>");
    assert_eq!(run("{{.State.Health}}", &c), "<nil>");
    assert_eq!(run("{{.Config.Env}}", &c), "[PATH=/usr/bin FOO=bar]");
    assert_eq!(
        run("{{.Config.Labels}}", &c),
        "map[com.example.vendor:ACME version:1.0]"
    );
    assert_eq!(run("{{.}} {{.}}", &json!([3, 1.5])), "[3 1.5] [3 1.5]");
    assert_eq!(run("{{.}}", &json!(1e21)), "1e+21");
}

#[test]
fn docker_docs_functions() {
    let c = container();
    // docs.docker.com "Format command and log output".
    assert_eq!(run("{{join .Args \" , \"}}", &c), "-g , daemon off;");
    assert_eq!(
        run("{{json .Config.Env}}", &c),
        r#"["PATH=/usr/bin","FOO=bar"]"#
    );
    assert_eq!(run("{{lower .State.Status}}", &c), "running");
    assert_eq!(run("{{upper .State.Status}}", &c), "RUNNING");
    assert_eq!(run("{{title .State.Status}}", &c), "Running");
    assert_eq!(run("{{split .Config.Image \":\"}}", &c), "[nginx latest]");
    assert_eq!(run("{{println .Name}}", &c), "/web\n");
    assert_eq!(run("{{len .Args}} {{len .Name}}", &c), "2 4");
    assert_eq!(
        run("{{range $e := .Args}}{{println $e}}{{end}}", &c),
        "-g\ndaemon off;\n"
    );
}

#[test]
fn docker_inspect_examples() {
    let c = container();
    assert_eq!(
        run(
            "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
            &c
        ),
        "172.17.0.2"
    );
    assert_eq!(
        run(
            "{{range $p, $conf := .NetworkSettings.Ports}} {{$p}} -> {{(index $conf 0).HostPort}} {{end}}",
            &c
        ),
        " 80/tcp -> 8080 "
    );
    assert_eq!(
        run(
            "{{(index (index .NetworkSettings.Ports \"80/tcp\") 0).HostPort}}",
            &c
        ),
        "8080"
    );
    assert_eq!(
        run("{{index .Config.Labels \"com.example.vendor\"}}", &c),
        "ACME"
    );
    assert_eq!(run("{{index .Config.Labels \"none\"}}", &c), "<no value>");
    assert_eq!(
        run("{{json .Config.Labels}}", &c),
        r#"{"com.example.vendor":"ACME","version":"1.0"}"#
    );
}

#[test]
fn json_escapes_html_as_go_does() {
    assert_eq!(
        run("{{json .}}", &json!({"a": "<b>&</b>", "n": 1})),
        r#"{"a":"\u003cb\u003e\u0026\u003c/b\u003e","n":1}"#
    );
    assert_eq!(run("{{json .Missing}}", &json!({})), "null");
}

#[test]
fn control_flow() {
    let d = json!({"on": true, "off": false, "n": 0, "list": [], "name": "x"});
    assert_eq!(run("{{if .on}}yes{{else}}no{{end}}", &d), "yes");
    assert_eq!(run("{{if .off}}yes{{else}}no{{end}}", &d), "no");
    assert_eq!(run("{{if .n}}a{{else if .name}}b{{else}}c{{end}}", &d), "b");
    assert_eq!(run("{{range .list}}x{{else}}empty{{end}}", &d), "empty");
    assert_eq!(run("{{with .name}}[{{.}}]{{end}}", &d), "[x]");
    assert_eq!(run("{{with .gone}}[{{.}}]{{else}}none{{end}}", &d), "none");
    assert_eq!(
        run(
            "{{if and .on (not .off)}}ok{{end}}{{if or .off .n}}bad{{end}}",
            &d
        ),
        "ok"
    );
    assert_eq!(run("{{if eq .name \"x\" \"y\"}}eq{{end}}", &d), "eq");
    assert_eq!(run("{{if lt .n 1}}lt{{end}}", &d), "lt");
    // Maps range in key order, as Go's.
    assert_eq!(
        run(
            "{{range $k, $v := .}}{{$k}}={{$v}};{{end}}",
            &json!({"b": 2, "a": 1, "c": 3})
        ),
        "a=1;b=2;c=3;"
    );
    assert_eq!(
        run(
            "{{range $i, $e := .}}{{$i}}:{{$e}} {{end}}",
            &json!(["x", "y"])
        ),
        "0:x 1:y "
    );
}

#[test]
fn trim_markers_comments_pipes_and_variables() {
    let d = json!({"a": "A", "b": ["x", "y"]});
    assert_eq!(run("x  {{- .a -}}  \n y", &d), "xAy");
    assert_eq!(run("x {{.a}} y", &d), "x A y");
    assert_eq!(run("{{/* a comment */}}z", &d), "z");
    assert_eq!(run("{{.a | lower}}", &d), "a");
    assert_eq!(run("{{.b | len}}", &d), "2");
    assert_eq!(run("{{$x := .a}}{{$x}}{{$x}}", &d), "AA");
    // `=` sets the outer variable, as Go 1.11+.
    assert_eq!(
        run(
            "{{$last := \"\"}}{{range .b}}{{$last = .}}{{end}}{{$last}}",
            &d
        ),
        "y"
    );
    assert_eq!(run("{{range .b}}{{$.a}}{{.}}{{end}}", &d), "AxAy");
    assert_eq!(run("{{\"a}}b\"}}", &d), "a}}b");
}

#[test]
fn printf_as_go_fmt() {
    let d = json!({"s": "x", "n": 42, "f": 1.5, "neg": -7});
    assert_eq!(run("{{printf \"%5s|%-5s|\" .s .s}}", &d), "    x|x    |");
    assert_eq!(
        run("{{printf \"%d %05d %v\" .n .neg .f}}", &d),
        "42 -0007 1.5"
    );
    assert_eq!(
        run("{{printf \"%.2f %q %t %%\" .f .s true}}", &d),
        "1.50 \"x\" true %"
    );
    assert_eq!(run("{{printf \"%d\" .s}}", &d), "%!d(string=x)");
    assert_eq!(run("{{printf \"%s %s\" .s}}", &d), "x %!s(MISSING)");
    assert_eq!(run("{{printf \"%.3s\" \"abcdef\"}}", &d), "abc");
    assert_eq!(run("{{print 1 2 \"a\" \"b\"}}", &d), "1 2ab");
    assert_eq!(run("{{truncate .s 0}}|{{pad .s 1 2}}|", &d), "| x  |");
}

#[test]
fn parse_errors_in_docker_words() {
    let e = |t: &str| Template::parse(t).unwrap_err().to_string();
    assert_eq!(
        e("{{.Name"),
        "template parsing error: template: :1: unclosed action"
    );
    assert_eq!(
        e("{{nope .Name}}"),
        "template parsing error: template: :1: function \"nope\" not defined"
    );
    assert_eq!(
        e("{{if .A}}x"),
        "template parsing error: template: :1: unexpected EOF"
    );
    assert_eq!(
        e("x\n{{end}}"),
        "template parsing error: template: :2: unexpected {{end}}"
    );
    assert!(e("{{(index .A}}").contains("unclosed left paren"));
    assert!(e("{{\"abc}}").starts_with("template parsing error: "));
}

#[test]
fn execution_errors_in_gos_words() {
    let t = Template::parse("{{.Name.First}}").unwrap();
    assert_eq!(
        t.execute(&json!({"Name": "web"})).unwrap_err().to_string(),
        "template: :1:2: executing \"\" at <.Name.First>: can't evaluate field First in type string"
    );
    let t = Template::parse("{{index .A 5}}").unwrap();
    assert!(t
        .execute(&json!({"A": [1]}))
        .unwrap_err()
        .to_string()
        .ends_with("error calling index: index out of range: 5"));
}

#[test]
fn table_format_with_headers_and_label_method() {
    let headers = [
        ("ID", "CONTAINER ID"),
        ("Names", "NAMES"),
        ("Labels", "LABELS"),
    ];
    let rows = [
        json!({"ID": "0123456789ab", "Names": "web", "Labels": "com.example.app=shop,tier=front"}),
        json!({"ID": "ba9876543210", "Names": "database-1", "Labels": ""}),
    ];
    let f = Format::new("table {{.ID}}\\t{{.Names}}\\t{{.Label \"tier\"}}", "").unwrap();
    assert!(f.is_table());
    assert_eq!(
        f.render(&headers, &rows).unwrap(),
        "CONTAINER ID   NAMES        TIER\n\
         0123456789ab   web          front\n\
         ba9876543210   database-1\n"
    );
    let f = Format::new("{{.ID}}: {{.Names}}", "").unwrap();
    assert_eq!(
        f.render(&headers, &rows).unwrap(),
        "0123456789ab: web\nba9876543210: database-1\n"
    );
    // `table` alone is the command's default; `json` is one object a line.
    let f = Format::new("table", "{{.Names}}\\t{{.ID}}").unwrap();
    assert_eq!(
        f.render(&headers, &rows[..1]).unwrap(),
        "NAMES   CONTAINER ID\nweb     0123456789ab\n"
    );
    let f = Format::new("json", "").unwrap();
    assert_eq!(
        f.render(&headers, &rows[1..]).unwrap(),
        "{\"ID\":\"ba9876543210\",\"Labels\":\"\",\"Names\":\"database-1\"}\n"
    );
}

#[test]
fn listing_fields_outside_the_command_are_errors() {
    let headers = [("ID", "CONTAINER ID"), ("Size", "SIZE")];
    let rows = [json!({"ID": "0123456789ab"})];
    let f = Format::new("{{.ID}} {{.Size}}", "").unwrap();
    assert_eq!(
        f.render(&headers, &rows).unwrap(),
        "0123456789ab <no value>\n"
    );
    let e = Format::new("{{.Nope}}", "")
        .unwrap()
        .render(&headers, &rows);
    assert_eq!(
        e.unwrap_err().to_string(),
        "template: :1:2: executing \"\" at <.Nope>: can't evaluate field Nope (the fields are .ID .Size)"
    );
}

#[test]
fn odd_templates_give_errors_not_panics() {
    // Pieces of templates, glued in pseudo-random order: every result is Ok or an Error.
    let pieces = [
        "{{",
        "}}",
        "{{-",
        "-}}",
        " ",
        ".",
        ".A",
        ".A.B",
        "$",
        "$x",
        ":=",
        "=",
        ",",
        "|",
        "(",
        ")",
        "\"s\"",
        "`r`",
        "'c'",
        "\"",
        "1",
        "-2",
        "0x1f",
        "1.5e3",
        "if",
        "else",
        "end",
        "range",
        "with",
        "index",
        "json",
        "printf \"%-3d%q\"",
        "len",
        "é",
        "/*",
        "*/",
        "\\t",
        "table ",
        "nil",
        "true",
        ".Label \"k\"",
    ];
    let data = json!({"A": {"B": [1, "x", null]}, "Labels": "k=v"});
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    for _ in 0..20_000 {
        let mut t = String::new();
        for _ in 0..(seed % 9) {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            t.push_str(pieces[usize::try_from(seed % pieces.len() as u64).unwrap()]);
        }
        if let Ok(f) = Format::new(&t, "{{.A}}") {
            let _ = f.render(&[("A", "A")], std::slice::from_ref(&data));
        }
        seed = seed.wrapping_add(1);
    }
}

#[test]
fn range_over_a_scalar_is_an_error() {
    let t = Template::parse("{{range .}}x{{end}}").unwrap();
    assert_eq!(
        t.execute(&json!(1_000_000_000_000_u64))
            .unwrap_err()
            .to_string(),
        "template: :1:2: executing \"\" at <.>: range can't iterate over 1000000000000"
    );
}

#[test]
fn docker_docs_formatting_page_examples() {
    // docs.docker.com/engine/cli/formatting: println, json .Mounts, table of image list.
    let c = json!({
        "NetworkSettings": {"Networks": {"a": {"IPAddress": "10.0.0.2"}, "b": {"IPAddress": "10.0.1.2"}}},
        "Mounts": [{"Type": "volume", "Name": "data", "Destination": "/d", "RW": true}],
    });
    assert_eq!(
        run(
            "{{range .NetworkSettings.Networks}}{{println .IPAddress}}{{end}}",
            &c
        ),
        "10.0.0.2\n10.0.1.2\n"
    );
    assert_eq!(
        run("{{json .Mounts}}", &c),
        r#"[{"Destination":"/d","Name":"data","RW":true,"Type":"volume"}]"#
    );
    let headers = [
        ("ID", "IMAGE ID"),
        ("Repository", "REPOSITORY"),
        ("Tag", "TAG"),
        ("Size", "SIZE"),
    ];
    let rows =
        [json!({"ID": "c0626902efb7", "Repository": "busybox", "Tag": "latest", "Size": "1.06MB"})];
    let f = Format::new("table {{.ID}}\\t{{.Repository}}\\t{{.Tag}}\\t{{.Size}}", "").unwrap();
    assert_eq!(
        f.render(&headers, &rows).unwrap(),
        "IMAGE ID       REPOSITORY   TAG      SIZE\nc0626902efb7   busybox      latest   1.06MB\n"
    );
}
