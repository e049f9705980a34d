//! Instruction typing: each keyword into its typed form, and the checks with their
//! positions. No root, no images: only the parser and `parse`.

use super::*;
use crate::parser;
use crate::ErrorKind;

/// Types the only instruction of `df` (or the last one).
fn one(df: &str) -> Result<Located, InstructionError> {
    let p = parser::parse(df).unwrap();
    parse(p.instructions.last().unwrap(), false)
}

fn ins(df: &str) -> Instruction {
    one(df).unwrap().instruction
}

fn flag(value: &str, line: u32, column: u32) -> Flag {
    Flag {
        value: value.into(),
        at: Position { line, column },
    }
}

fn value(f: &Option<Flag>) -> Option<&str> {
    f.as_ref().map(|f| f.value.as_str())
}

fn err(df: &str) -> (u32, u32, String) {
    let e = one(df).unwrap_err();
    (e.line, e.column, e.to_string())
}

#[test]
fn keywords_round_trip() {
    for k in Keyword::ALL {
        assert_eq!(Keyword::from_name(&k.name().to_lowercase()), Some(k));
        assert_eq!(k.to_string(), k.name());
    }
    assert_eq!(
        Keyword::from_name("FROM"),
        None,
        "names are lower-cased first"
    );
    assert_eq!(Keyword::from_name("frob"), None);
}

#[test]
fn from() {
    assert_eq!(
        ins("FROM --platform=$BUILDPLATFORM busybox:1 AS Build"),
        Instruction::From(FromInstr {
            base: "busybox:1".into(),
            stage_name: Some("Build".into()),
            platform: Some(flag("$BUILDPLATFORM", 1, 6)),
        })
    );
    assert_eq!(
        ins("from scratch"),
        Instruction::From(FromInstr {
            base: "scratch".into(),
            stage_name: None,
            platform: None,
        })
    );
}

#[test]
fn run() {
    let Instruction::Run(r) =
        ins("RUN --mount=type=cache,target=/c --network=none --mount=target=/x echo hi")
    else {
        panic!()
    };
    assert_eq!(
        r.command,
        CommandLine {
            args: vec!["echo hi".into()],
            json: false
        }
    );
    assert_eq!(
        r.mounts,
        [
            Ok(flag("type=cache,target=/c", 1, 5)),
            Ok(flag("target=/x", 1, 49))
        ]
    );
    assert_eq!(r.network, Ok(Some(NetworkMode::None)));
    assert_eq!(r.security, Ok(Security::Sandbox));
    let Instruction::Run(r) = ins("RUN --security=insecure --network=host [\"a\", \"b\"]") else {
        panic!()
    };
    assert_eq!(r.command.args, ["a", "b"]);
    assert!(r.command.json);
    assert_eq!(r.security, Ok(Security::Insecure));
    assert_eq!(r.network, Ok(Some(NetworkMode::Host)));
    let Instruction::Run(r) = ins("RUN --network=default <<EOF\necho\nEOF\n") else {
        panic!()
    };
    assert_eq!(r.network, Ok(None));
    assert_eq!(r.heredocs.len(), 1);
    assert_eq!(r.heredocs[0].content, "echo\n");
}

#[test]
fn copy_and_add() {
    let Instruction::Copy(c) = ins(
        "COPY --from=build --chown=1:2 --chmod=755 --link --parents --exclude=*.md --exclude=x a b /d/",
    ) else {
        panic!()
    };
    assert_eq!(c.sources, ["a", "b"]);
    assert_eq!(c.dest, "/d/");
    assert_eq!(value(&c.from), Some("build"));
    assert_eq!(value(&c.chown), Some("1:2"));
    assert_eq!(value(&c.chmod), Some("755"));
    assert_eq!((c.link.clone(), c.parents.clone()), (Ok(true), Ok(true)));
    assert_eq!(c.excludes, [Ok(flag("*.md", 1, 60)), Ok(flag("x", 1, 75))]);
    assert!(c.keep_git_dir.is_none() && c.checksum.is_none());
    let Instruction::Add(a) =
        ins("ADD --checksum=sha256:ab --link=false --keep-git-dir https://x/y /z")
    else {
        panic!()
    };
    assert_eq!(value(&a.checksum), Some("sha256:ab"));
    assert_eq!(a.link, Ok(false));
    assert_eq!(
        a.keep_git_dir,
        Some(Position {
            line: 1,
            column: 39
        })
    );
    assert_eq!(a.from, None);
    // A heredoc is a source: one argument is enough.
    let Instruction::Copy(c) = ins("COPY <<EOF /f\nx\nEOF\n") else {
        panic!()
    };
    assert_eq!(
        (c.sources.as_slice(), c.dest.as_str()),
        (["<<EOF".to_string()].as_slice(), "/f")
    );
    // The last value of a flag wins, as in BuildKit.
    let Instruction::Copy(c) = ins("COPY --from=a --from=b x y") else {
        panic!()
    };
    assert_eq!(c.from, Some(flag("b", 1, 15)));
}

/// Flags are placed where they are written, on continuation lines too.
#[test]
fn flag_positions() {
    let df = "FROM x\n  RUN --network=none \\\n# comment\n\t--mount=type=tmpfs,target=/t \\\n    --mount echo\n";
    let Instruction::Run(r) = ins(df) else {
        panic!()
    };
    assert_eq!(r.mounts[0], Ok(flag("type=tmpfs,target=/t", 4, 2)));
    let bare = r.mounts[1].clone().unwrap_err();
    assert_eq!((bare.line, bare.column), (5, 5));
    let e = one("FROM x\nCOPY --from=a \\\n  --form=b x y").unwrap_err();
    assert_eq!((e.line, e.column), (3, 3));
    let e = one("FROM x\nONBUILD COPY --nope a b").unwrap_err();
    assert_eq!(
        (e.line, e.column, e.to_string().as_str()),
        (2, 14, "unknown flag: nope (for COPY)")
    );
}

#[test]
fn config_instructions() {
    let kv = |p: &[(&str, &str)]| KeyValues {
        pairs: p
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    };
    assert_eq!(
        ins("ENV A=1 B=\"x y\""),
        Instruction::Env(kv(&[("A", "1"), ("B", "\"x y\"")]))
    );
    assert_eq!(ins("ENV A 1 2"), Instruction::Env(kv(&[("A", "1 2")])));
    assert_eq!(ins("LABEL a=b"), Instruction::Label(kv(&[("a", "b")])));
    assert_eq!(
        ins("ARG A B=2"),
        Instruction::Arg(ArgInstr {
            args: vec![("A".into(), None), ("B".into(), Some("2".into()))]
        })
    );
    assert_eq!(
        ins("EXPOSE 80 53/udp"),
        Instruction::Expose(vec!["80".into(), "53/udp".into()])
    );
    assert_eq!(ins("WORKDIR /a b"), Instruction::Workdir("/a b".into()));
    assert_eq!(ins("USER app:app"), Instruction::User("app:app".into()));
    assert_eq!(
        ins("VOLUME [\"/a\", \"/b\"]"),
        Instruction::Volume(vec!["/a".into(), "/b".into()])
    );
    assert_eq!(
        ins("CMD [\"sh\"]"),
        Instruction::Cmd(CommandLine {
            args: vec!["sh".into()],
            json: true
        })
    );
    assert_eq!(
        ins("ENTRYPOINT run me"),
        Instruction::Entrypoint(CommandLine {
            args: vec!["run me".into()],
            json: false
        })
    );
    assert_eq!(
        ins("SHELL [\"bash\", \"-c\"]"),
        Instruction::Shell(vec!["bash".into(), "-c".into()])
    );
    assert_eq!(
        ins("STOPSIGNAL SIGKILL"),
        Instruction::StopSignal("SIGKILL".into())
    );
    assert_eq!(
        ins("MAINTAINER me <m@e>"),
        Instruction::Maintainer("me <m@e>".into())
    );
}

#[test]
fn healthcheck() {
    let Instruction::Healthcheck(h) =
        ins("HEALTHCHECK --interval=30s --timeout=0 --retries=3 CMD curl -f x")
    else {
        panic!()
    };
    assert_eq!(h.text, "CMD curl -f x");
    let c = h.check.unwrap();
    assert_eq!(c.test, Ok(vec!["CMD-SHELL".into(), "curl -f x".into()]));
    assert_eq!(c.interval, Ok(Some(Duration::from_secs(30))));
    assert_eq!(c.timeout, Ok(None), "0 means unset");
    assert_eq!(c.start_period, Ok(None));
    assert_eq!(c.retries, Ok(Some(3)));
    let Instruction::Healthcheck(h) = ins("HEALTHCHECK CMD [\"true\"]") else {
        panic!()
    };
    assert_eq!(h.check.unwrap().test, Ok(vec!["CMD".into(), "true".into()]));
    let Instruction::Healthcheck(h) = ins("HEALTHCHECK none") else {
        panic!()
    };
    assert_eq!((h.text.as_str(), h.check), ("none", None));
}

#[test]
fn onbuild() {
    let Instruction::Onbuild(o) = ins("ONBUILD  RUN echo hi") else {
        panic!()
    };
    assert_eq!(o.expression, "RUN echo hi");
    assert!(matches!(*o.trigger, Instruction::Run(_)));
    assert_eq!(o.trigger.keyword(), Keyword::Run);
}

/// The checks made up front, at the instruction's line and keyword column.
#[test]
fn errors_with_positions() {
    for (df, want) in [
        ("FROM x\nFORM y", (2, 1, "unknown instruction: FORM")),
        (
            "FROM x\n  COPY --nope=1 a b",
            (2, 8, "unknown flag: nope (for COPY)"),
        ),
        (
            "FROM x\nRUN --from=a b",
            (2, 5, "unknown flag: from (for RUN)"),
        ),
        (
            "FROM x\nADD --link --from=a b c",
            (2, 12, "unknown flag: from (for ADD)"),
        ),
        (
            "FROM a b",
            (1, 1, "FROM requires either one or three arguments"),
        ),
        (
            "FROM x\nCOPY a",
            (2, 1, "COPY requires at least 2 argument(s)"),
        ),
        (
            "FROM x\n\n\tRUN",
            (3, 2, "RUN requires at least 1 argument(s)"),
        ),
        (
            "FROM x\nSHELL sh -c",
            (2, 1, "SHELL requires the arguments to be in JSON form"),
        ),
        (
            "FROM x\nONBUILD",
            (2, 1, "ONBUILD requires at least one argument"),
        ),
        (
            "FROM x\nONBUILD ONBUILD RUN x",
            (2, 1, "ONBUILD isn't allowed as an ONBUILD trigger"),
        ),
        (
            "FROM x\nONBUILD MAINTAINER me",
            (2, 1, "MAINTAINER isn't allowed as an ONBUILD trigger"),
        ),
        (
            "FROM x\nONBUILD FROM y",
            (2, 1, "FROM isn't allowed as an ONBUILD trigger"),
        ),
        (
            "FROM x\nONBUILD FROB y",
            (2, 1, "unknown instruction: FROB"),
        ),
        (
            "FROM x\nHEALTHCHECK",
            (2, 1, "HEALTHCHECK requires an argument"),
        ),
        (
            "FROM x\nHEALTHCHECK NONE x",
            (2, 1, "HEALTHCHECK NONE takes no arguments"),
        ),
        (
            "FROM x\nHEALTHCHECK TEST x",
            (2, 1, "Unknown type \"TEST\" in HEALTHCHECK (try CMD)"),
        ),
        ("FROM x\nENV", (2, 1, "ENV requires at least 1 argument(s)")),
    ] {
        let got = err(df);
        assert_eq!((got.0, got.1, got.2.as_str()), want, "{df:?}");
    }
    let e = one("FROM x\nFORM y").unwrap_err();
    assert_eq!(
        (e.error_kind(), e.hint().as_deref()),
        (ErrorKind::Semantic, Some("did you mean FROM?"))
    );
    let e = one("FROM x\nCOPY --chmd=1 a b").unwrap_err();
    assert_eq!(e.hint().as_deref(), Some("did you mean --chmod?"));
    assert_eq!(one("FROM a b").unwrap_err().error_kind(), ErrorKind::Syntax);
    // In an ONBUILD trigger (from an image), a FROM is refused.
    let p = parser::parse("FROM x").unwrap();
    assert_eq!(
        parse(&p.instructions[0], true).unwrap_err().kind,
        InstructionErrorKind::NotATrigger(Keyword::From)
    );
}

/// Flag values are typed now and their errors kept, with the position, for when the
/// instruction is converted.
#[test]
fn deferred_flag_errors() {
    let at = |column, kind| InstructionError {
        line: 2,
        column,
        kind,
    };
    let Instruction::Run(r) = ins("FROM x\nRUN --network=hots --security=root --mount x") else {
        panic!()
    };
    assert_eq!(
        r.network,
        Err(at(
            5,
            InstructionErrorKind::InvalidNetwork {
                value: "hots".into(),
                suggestion: Some("host".into())
            }
        ))
    );
    assert_eq!(
        r.network.unwrap_err().to_string(),
        "unsupported network mode \"hots\" for RUN --network (use default, none or host)"
    );
    assert_eq!(
        r.security.unwrap_err().to_string(),
        "security mode \"root\" is not valid for RUN --security (use sandbox or insecure)"
    );
    assert_eq!(
        r.mounts,
        [Err(at(36, InstructionErrorKind::MountNeedsValue))]
    );
    let Instruction::Copy(c) = ins("FROM x\nCOPY --link=maybe --exclude a b") else {
        panic!()
    };
    assert_eq!(
        c.link.unwrap_err().to_string(),
        "invalid value \"maybe\" for --link: expected true or false"
    );
    assert_eq!(
        c.excludes[0].clone().unwrap_err().to_string(),
        "COPY --exclude needs a pattern (--exclude=*.md)"
    );
    let Instruction::Healthcheck(h) =
        ins("FROM x\nHEALTHCHECK --interval=1x --timeout=1us --start-period=-1s --retries=-1 CMD")
    else {
        panic!()
    };
    let c = h.check.unwrap();
    let test = c.test.unwrap_err();
    assert_eq!(test.to_string(), "Missing command after HEALTHCHECK CMD");
    assert_eq!(test.column, 1, "the command's error is at the keyword");
    let interval = c.interval.unwrap_err();
    assert_eq!(
        interval.to_string(),
        "invalid duration for --interval: \"1x\""
    );
    assert_eq!(interval.column, 13);
    assert_eq!(
        c.timeout.unwrap_err().to_string(),
        "interval \"timeout\" cannot be less than 1ms"
    );
    assert!(c.start_period.is_err());
    let retries = c.retries.unwrap_err();
    assert_eq!(retries.to_string(), "--retries cannot be negative");
    assert_eq!((retries.line, retries.column), (2, 60));
}
