use super::*;

#[test]
fn paths_ports_durations() {
    assert_eq!(join_path("/a/b", "../c/"), "/a/c/");
    assert_eq!(join_path("", "x"), "/x");
    assert_eq!(join_path("/w", "/abs"), "/abs");
    assert_eq!(
        parse_port_spec("8000-8002").unwrap(),
        ["8000/tcp", "8001/tcp", "8002/tcp"]
    );
    assert_eq!(parse_port_spec("53/udp").unwrap(), ["53/udp"]);
    assert_eq!(
        parse_port_spec("x").unwrap_err().to_string(),
        "invalid containerPort: x"
    );
    assert_eq!(
        parse_port_spec("80/icmp").unwrap_err().to_string(),
        "invalid proto: icmp"
    );
    assert_eq!(crate::edit_distance("form", "from"), 1);
}

#[test]
fn url_file_names() {
    assert_eq!(copy::url_filename("https://h/a/b.tgz?x=1"), "b.tgz");
    assert_eq!(copy::url_filename("https://h/"), "__unnamed__");
}

struct NoImages;
impl ImageResolver for NoImages {
    fn resolve(&self, r: &str) -> Result<crate::ResolvedImage, crate::ResolveError> {
        Err(crate::ResolveError::new(format!("{r}: not found")))
    }
}

fn convert(df: &str) -> Result<Build, Error> {
    let opts = BuildOptions {
        file_name: "Dockerfile".into(),
        ..Default::default()
    };
    build(df, &opts, &NoImages)
}

/// Errors name the line, and the column of the flag they are about (the keyword's
/// otherwise); the text and the kind are what they always were.
#[test]
fn errors_point_at_their_flag() {
    use crate::ErrorKind::{Resolve, Semantic, Syntax};
    for (df, want) in [
        (
            "FROM scratch\nCOPY --chmod=999 a b",
            (Semantic, 2, 6, "invalid chmod parameter: '999'. it should be octal string and between 0 and 07777"),
        ),
        (
            "FROM scratch\nRUN --network=none \\\n  --mount=type=bind x",
            (Semantic, 3, 3, "--mount=type=bind: mount type \"bind\" requires a target (e.g. --mount=type=bind,target=/path)"),
        ),
        (
            "FROM scratch\nRUN --mount=type=tmpfs,target=/a --mount=type=tmpfs,target=/a/ x",
            (Semantic, 2, 34, "two RUN --mount with the same target /a"),
        ),
        (
            "FROM scratch\nRUN --network=bogus x",
            (Semantic, 2, 5, "unsupported network mode \"bogus\" for RUN --network (use default, none or host)"),
        ),
        (
            "FROM --platform=linux/arm64 scratch",
            (Semantic, 1, 6, "platform linux/arm64 is not supported (only linux/amd64)"),
        ),
        (
            "FROM scratch\nCOPY --link --from=img a b",
            (Resolve, 2, 13, "img: not found"),
        ),
        (
            "FROM scratch\nADD --checksum=sha256:00 https://e/x /x",
            (Semantic, 2, 5, "invalid checksum \"sha256:00\": expected sha256:<64 hex digits>"),
        ),
        (
            "FROM scratch\n  WORKDIR /${X:?nope}",
            (Syntax, 2, 3, "failed to process \"/${X:?nope}\": X: nope"),
        ),
        ("FROM scratch\nENV =1", (Syntax, 2, 1, "ENV names can not be blank")),
        ("FROM nothere", (Resolve, 1, 1, "nothere: not found")),
        ("RUN x\nFROM scratch", (Semantic, 1, 1, "RUN before the first FROM: only ARG may come first")),
        ("ARG A", (Semantic, 0, 0, "no build stage in the Dockerfile (missing FROM)")),
    ] {
        let e = convert(df).unwrap_err();
        assert_eq!((e.kind, e.line, e.column, e.message.as_str()), want, "{df:?}");
    }
}

/// A bad flag value in a stage the target does not need is not an error (kiln converts
/// only the stages it builds); an unknown flag there is, as BuildKit checks every stage.
#[test]
fn flag_values_are_checked_when_their_stage_is_converted() {
    let unused = "FROM scratch AS a\nRUN --network=bogus --security=root --mount x\nFROM scratch\nCOPY --link=maybe x y\n";
    let e = convert(unused).unwrap_err();
    assert_eq!((e.line, e.column), (4, 6), "{e}");
    assert!(convert("FROM scratch AS a\nRUN --network=bogus x\nFROM scratch\n").is_ok());
    assert!(
        convert("FROM scratch AS a\nHEALTHCHECK --interval=1x CMD true\nFROM scratch\n").is_ok()
    );
    let e = convert("FROM scratch AS a\nRUN --bogus x\nFROM scratch\n").unwrap_err();
    assert_eq!(e.message, "unknown flag: bogus (for RUN)");
}
