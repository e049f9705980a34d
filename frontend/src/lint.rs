//! `kiln build --check`: BuildKit's Dockerfile build checks
//! (<https://docs.docker.com/reference/build-checks/>), run on the parsed Dockerfile without
//! resolving images or building anything.
//!
//! The rules are data ([`RULES`]): name, description and documentation URL; each check below
//! names its rule. `# check=skip=Rule1,Rule2` (or `skip=all`) silences rules and
//! `# check=error=true` makes warnings fail the build ([`check_directive`]).
//!
//! `UndefinedVar` is only reported for stages whose base chain starts at `scratch`: for an
//! image base, the image's own environment (unknown without resolving it) could define the
//! variable.

use crate::instructions::Keyword;
use crate::parser::{self, Node};
use crate::{Error, ErrorKind};
use std::collections::{BTreeMap, BTreeSet};

/// One lint rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rule {
    /// BuildKit's rule name (`StageNameCasing`).
    pub name: &'static str,
    /// What it checks.
    pub description: &'static str,
}

impl Rule {
    /// The rule's documentation page.
    pub fn url(&self) -> String {
        let mut kebab = String::new();
        for (i, c) in self.name.chars().enumerate() {
            if c.is_ascii_uppercase() {
                if i > 0 {
                    kebab.push('-');
                }
                kebab.push(c.to_ascii_lowercase());
            } else {
                kebab.push(c);
            }
        }
        format!("https://docs.docker.com/go/dockerfile/rule/{kebab}/")
    }
}

/// Every rule kiln checks, as BuildKit names and describes them.
pub const RULES: &[Rule] = &[
    Rule { name: "StageNameCasing", description: "Stage names should be lowercase" },
    Rule { name: "FromAsCasing", description: "The 'as' keyword should match the case of the 'from' keyword" },
    Rule { name: "ConsistentInstructionCasing", description: "All commands within the Dockerfile should use the same casing (either upper or lower)" },
    Rule { name: "DuplicateStageName", description: "Stage names should be unique" },
    Rule { name: "ReservedStageName", description: "Reserved words should not be used as stage names" },
    Rule { name: "JSONArgsRecommended", description: "JSON arguments recommended for ENTRYPOINT/CMD to prevent unintended behavior related to OS signals" },
    Rule { name: "MaintainerDeprecated", description: "The MAINTAINER instruction is deprecated, use a label instead to define an image author" },
    Rule { name: "UndefinedArgInFrom", description: "FROM command must use declared ARGs" },
    Rule { name: "WorkdirRelativePath", description: "Relative workdir without an absolute workdir declared within the build can have unexpected results if the base image changes" },
    Rule { name: "UndefinedVar", description: "Variables should be defined before their use" },
    Rule { name: "MultipleInstructionsDisallowed", description: "Multiple instructions of the same type should not be used in the same stage" },
    Rule { name: "LegacyKeyValueFormat", description: "Legacy key/value format with whitespace separator should not be used" },
    Rule { name: "InvalidDefaultArgInFrom", description: "Default value for global ARG results in an empty or invalid base image name" },
    Rule { name: "FromPlatformFlagConstDisallowed", description: "FROM --platform flag should not use a constant value" },
    Rule { name: "SecretsUsedInArgOrEnv", description: "Sensitive data should not be used in the ARG or ENV commands" },
];

/// One finding.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Warning {
    /// Rule name.
    pub rule: &'static str,
    /// What is wrong, as BuildKit words it.
    pub message: String,
    /// File name as given.
    pub file: String,
    /// 1-based line.
    pub line: u32,
    /// The rule's documentation.
    pub url: String,
    /// The offending line's text.
    pub source_line: Option<String>,
}

impl std::fmt::Display for Warning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "WARNING: {} - {}\n{}:{}",
            self.rule, self.message, self.file, self.line
        )?;
        if let Some(s) = &self.source_line {
            write!(f, "\n  {} | {}", self.line, s)?;
        }
        write!(f, "\n{}", self.url)
    }
}

/// `# check=` directive settings.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CheckConfig {
    /// Rules to skip (`all` skips every rule).
    pub skip: Vec<String>,
    /// Warnings fail the build.
    pub error: bool,
}

/// Reads the `# check=skip=A,B;error=true` directive.
pub fn check_directive(dockerfile: &str) -> CheckConfig {
    let mut c = CheckConfig::default();
    let Ok(df) = parser::parse(dockerfile) else {
        return c;
    };
    for (k, v) in &df.directives {
        if k != "check" {
            continue;
        }
        for part in v.split(';') {
            match part.trim().split_once('=') {
                Some(("skip", s)) => c.skip.extend(s.split(',').map(|x| x.trim().to_string())),
                Some(("error", e)) => c.error = e.trim().eq_ignore_ascii_case("true"),
                _ => {}
            }
        }
    }
    c
}

struct Ctx<'a> {
    file: &'a str,
    lines: Vec<&'a str>,
    out: Vec<Warning>,
}

impl Ctx<'_> {
    fn warn(&mut self, rule: &'static str, line: u32, message: String) {
        let r = RULES
            .iter()
            .find(|r| r.name == rule)
            .copied()
            .unwrap_or(Rule {
                name: rule,
                description: "",
            });
        self.out.push(Warning {
            rule: r.name,
            message,
            file: self.file.to_string(),
            line,
            url: r.url(),
            source_line: line
                .checked_sub(1)
                .and_then(|i| self.lines.get(i as usize))
                .map(std::string::ToString::to_string),
        });
    }
}

/// Variable names referenced by `$NAME` / `${NAME…}` in `word` (escapes and single quotes
/// respected).
pub fn referenced_vars(word: &str, escape: char) -> Vec<String> {
    let c: Vec<char> = word.chars().collect();
    let mut out = vec![];
    let mut i = 0;
    let mut in_single = false;
    while i < c.len() {
        let ch = c[i];
        if ch == escape && !in_single {
            i += 2;
            continue;
        }
        if ch == '\'' {
            in_single = !in_single;
        } else if ch == '$' && !in_single {
            let braced = c.get(i + 1) == Some(&'{');
            let start = if braced { i + 2 } else { i + 1 };
            let mut j = start;
            while j < c.len() && (c[j].is_ascii_alphanumeric() || c[j] == '_') {
                j += 1;
            }
            if j > start && !c[start].is_ascii_digit() {
                out.push(c[start..j].iter().collect());
            }
            i = j.max(i + 1);
            continue;
        }
        i += 1;
    }
    out
}

fn is_secret_name(k: &str) -> bool {
    let lower = k.to_ascii_lowercase();
    if lower.contains("public") {
        return false;
    }
    const TOKENS: &[&str] = &[
        "apikey",
        "auth",
        "credential",
        "credentials",
        "key",
        "password",
        "pword",
        "passwd",
        "secret",
        "token",
    ];
    lower.split(['_', '-']).any(|p| TOKENS.contains(&p))
}

/// Runs every rule on a Dockerfile. A Dockerfile that does not parse is an error.
pub fn lint(dockerfile: &str, file_name: &str) -> Result<Vec<Warning>, Error> {
    let lines: Vec<&str> = dockerfile.lines().collect();
    let df = parser::parse(dockerfile).map_err(|e| Error {
        kind: ErrorKind::Syntax,
        file: file_name.to_string(),
        line: e.line,
        column: u32::from(e.line > 0),
        message: e.message,
        source_line: e
            .line
            .checked_sub(1)
            .and_then(|i| lines.get(i as usize))
            .map(std::string::ToString::to_string),
        hint: None,
    })?;
    let mut cx = Ctx {
        file: file_name,
        lines,
        out: vec![],
    };
    let esc = df.escape;
    let ins = &df.instructions;

    // ConsistentInstructionCasing: the majority casing wins.
    let (mut upper, mut lower) = (0, 0);
    for i in ins {
        if i.cmd_original == i.cmd_original.to_uppercase() {
            upper += 1;
        } else if i.cmd_original == i.cmd_original.to_lowercase() {
            lower += 1;
        }
    }
    let majority_upper = upper >= lower;
    for i in ins {
        let o = &i.cmd_original;
        let ok = if majority_upper {
            *o == o.to_uppercase()
        } else {
            *o == o.to_lowercase()
        };
        if !ok {
            cx.warn(
                "ConsistentInstructionCasing",
                i.start_line,
                format!(
                    "Command '{o}' should match the case of the command majority ({})",
                    if majority_upper {
                        "uppercase"
                    } else {
                        "lowercase"
                    }
                ),
            );
        }
    }

    // Global ARGs (before the first FROM).
    let mut global: BTreeMap<String, Option<String>> = BTreeMap::new();
    let mut stage_names: Vec<(String, bool)> = vec![]; // (lowercase name, rooted at scratch)
    let mut stage: Option<StageState> = None;
    let mut stages_done: Vec<StageState> = vec![];
    for i in ins {
        if i.keyword == Some(Keyword::From) {
            if let Some(s) = stage.take() {
                finish_stage(&mut cx, &s);
                stages_done.push(s);
            }
            stage = Some(lint_from(
                &mut cx,
                i,
                esc,
                &global,
                &stage_names,
                &stages_done,
            ));
            let s = stage.as_ref().unwrap();
            stage_names.push((
                s.name.clone().unwrap_or_default().to_lowercase(),
                s.scratch_rooted,
            ));
            continue;
        }
        let Some(s) = stage.as_mut() else {
            if i.keyword == Some(Keyword::Arg) {
                for w in &i.args {
                    let (n, d) = match w.split_once('=') {
                        Some((n, d)) => (n.to_string(), Some(d.to_string())),
                        None => (w.clone(), None),
                    };
                    if is_secret_name(&n) {
                        cx.warn(
                            "SecretsUsedInArgOrEnv",
                            i.start_line,
                            format!(
                                "Do not use ARG or ENV instructions for sensitive data (ARG {n:?})"
                            ),
                        );
                    }
                    global.insert(n, d);
                }
            }
            continue;
        };
        lint_in_stage(&mut cx, s, i, esc, &global);
    }
    if let Some(s) = stage.take() {
        finish_stage(&mut cx, &s);
    }
    let cfg = check_directive(dockerfile);
    let mut out = cx.out;
    if cfg.skip.iter().any(|s| s.eq_ignore_ascii_case("all")) {
        out.clear();
    }
    out.retain(|w| !cfg.skip.iter().any(|s| s.eq_ignore_ascii_case(w.rule)));
    out.sort_by_key(|w| w.line);
    Ok(out)
}

struct StageState {
    name: Option<String>,
    scratch_rooted: bool,
    /// Variables defined so far (ARG, ENV; inherited ENV from an earlier stage).
    vars: BTreeSet<String>,
    /// Lines of CMD / ENTRYPOINT / HEALTHCHECK, for MultipleInstructionsDisallowed.
    singles: BTreeMap<&'static str, Vec<u32>>,
    workdir_abs: bool,
}

fn finish_stage(cx: &mut Ctx<'_>, s: &StageState) {
    for (name, lines) in &s.singles {
        for l in lines.iter().take(lines.len().saturating_sub(1)) {
            cx.warn(
                "MultipleInstructionsDisallowed",
                *l,
                format!("Multiple {name} instructions should not be used in the same stage because only the last one will be used"),
            );
        }
    }
}

fn lint_from(
    cx: &mut Ctx<'_>,
    i: &Node,
    esc: char,
    global: &BTreeMap<String, Option<String>>,
    earlier: &[(String, bool)],
    done: &[StageState],
) -> StageState {
    let line = i.start_line;
    let base = i.args.first().cloned().unwrap_or_default();
    let name = (i.args.len() == 3).then(|| i.args[2].clone());
    if let Some(n) = &name {
        let as_kw = &i.args[1];
        let from_upper = i.cmd_original == i.cmd_original.to_uppercase();
        let as_upper = *as_kw == as_kw.to_uppercase();
        let from_lower = i.cmd_original == i.cmd_original.to_lowercase();
        let as_lower = *as_kw == as_kw.to_lowercase();
        if (from_upper && !as_upper) || (from_lower && !as_lower) {
            cx.warn(
                "FromAsCasing",
                line,
                format!(
                    "'{}' and '{}' keywords' casing do not match",
                    i.cmd_original, as_kw
                ),
            );
        }
        if *n != n.to_lowercase() {
            cx.warn(
                "StageNameCasing",
                line,
                format!("Stage name '{n}' should be lowercase"),
            );
        }
        let ln = n.to_lowercase();
        if earlier.iter().any(|(e, _)| *e == ln) {
            cx.warn(
                "DuplicateStageName",
                line,
                format!("Duplicate stage name {n:?}, stage names should be unique"),
            );
        }
        if ln == "scratch" || ln == "context" {
            cx.warn(
                "ReservedStageName",
                line,
                format!("Stage name should not use the same name as reserved stage {ln:?}"),
            );
        }
    }
    if let Some(p) = i.flags.iter().find_map(|f| f.strip_prefix("--platform=")) {
        if !p.contains('$') {
            cx.warn(
                "FromPlatformFlagConstDisallowed",
                line,
                format!("FROM --platform flag should not use constant value {p:?}"),
            );
        }
    }
    let mut undeclared = false;
    for v in referenced_vars(&base, esc) {
        if !global.contains_key(&v) && !crate::convert::is_predefined_arg(&v) {
            undeclared = true;
            cx.warn(
                "UndefinedArgInFrom",
                line,
                format!("FROM argument '{v}' is not declared"),
            );
        }
    }
    if !undeclared && base.contains('$') {
        let lookup = |k: &str| global.get(k).cloned().flatten();
        let expanded = crate::shell::Lexer::new(esc)
            .process_word(&base, &lookup)
            .unwrap_or_default();
        let invalid = expanded.is_empty()
            || expanded.ends_with(':')
            || expanded.ends_with('@')
            || expanded.starts_with(':')
            || expanded.contains(char::is_whitespace)
            || expanded.contains("::");
        if invalid {
            cx.warn(
                "InvalidDefaultArgInFrom",
                line,
                format!("Default value for ARG {base} results in empty or invalid base image name"),
            );
        }
    }
    let lb = base.to_lowercase();
    let parent = earlier.iter().position(|(n, _)| !n.is_empty() && *n == lb);
    let scratch_rooted = lb == "scratch" || parent.is_some_and(|p| earlier[p].1);
    let mut vars: BTreeSet<String> = ["PATH".to_string()].into();
    if let Some(p) = parent.and_then(|p| done.get(p)) {
        vars.extend(p.vars.iter().cloned());
    }
    StageState {
        name,
        scratch_rooted,
        vars,
        singles: BTreeMap::new(),
        workdir_abs: false,
    }
}

fn lint_in_stage(
    cx: &mut Ctx<'_>,
    s: &mut StageState,
    i: &Node,
    esc: char,
    global: &BTreeMap<String, Option<String>>,
) {
    let line = i.start_line;
    let check_vars = |cx: &mut Ctx<'_>, s: &StageState, word: &str| {
        if !s.scratch_rooted {
            return;
        }
        for v in referenced_vars(word, esc) {
            if !s.vars.contains(&v) && !crate::convert::is_predefined_arg(&v) {
                let known: Vec<&String> = s.vars.iter().collect();
                let mut msg = format!("Usage of undefined variable '${v}'");
                if let Some(best) = crate::suggest(&v, &known) {
                    msg.push_str(&format!(" (did you mean ${best}?)"));
                }
                cx.warn("UndefinedVar", line, msg);
            }
        }
    };
    let Some(keyword) = i.keyword else {
        return;
    };
    match keyword {
        Keyword::Env | Keyword::Label => {
            for t in i.args.chunks(3) {
                if t.get(2).is_some_and(std::string::String::is_empty) {
                    let up = keyword.name();
                    cx.warn(
                        "LegacyKeyValueFormat",
                        line,
                        format!("\"{up} key=value\" should be used instead of legacy \"{up} key value\" format"),
                    );
                }
                if let Some(v) = t.get(1) {
                    check_vars(cx, s, v);
                }
                if keyword == Keyword::Env {
                    if let Some(k) = t.first() {
                        if is_secret_name(k) {
                            cx.warn(
                                "SecretsUsedInArgOrEnv",
                                line,
                                format!("Do not use ARG or ENV instructions for sensitive data (ENV {k:?})"),
                            );
                        }
                        s.vars.insert(k.clone());
                    }
                }
            }
        }
        Keyword::Arg => {
            for w in &i.args {
                let (n, d) = match w.split_once('=') {
                    Some((n, d)) => (n.to_string(), Some(d)),
                    None => (w.clone(), None),
                };
                if let Some(d) = d {
                    check_vars(cx, s, d);
                }
                if is_secret_name(&n) {
                    cx.warn(
                        "SecretsUsedInArgOrEnv",
                        line,
                        format!(
                            "Do not use ARG or ENV instructions for sensitive data (ARG {n:?})"
                        ),
                    );
                }
                let _ = global;
                s.vars.insert(n);
            }
        }
        Keyword::Maintainer => cx.warn(
            "MaintainerDeprecated",
            line,
            "Maintainer instruction is deprecated in favor of using label".into(),
        ),
        Keyword::Cmd | Keyword::Entrypoint | Keyword::Healthcheck => {
            let key = keyword.name();
            s.singles.entry(key).or_default().push(line);
            if keyword != Keyword::Healthcheck && !i.json && !i.args.is_empty() {
                cx.warn(
                    "JSONArgsRecommended",
                    line,
                    format!("JSON arguments recommended for {key} to prevent unintended behavior related to OS signals"),
                );
            }
        }
        Keyword::Workdir => {
            let p = i.args.first().cloned().unwrap_or_default();
            check_vars(cx, s, &p);
            if p.starts_with('/') || p.starts_with('$') {
                s.workdir_abs = true;
            } else if !s.workdir_abs {
                cx.warn(
                    "WorkdirRelativePath",
                    line,
                    format!("Relative workdir {p:?} can have unexpected results if the base image changes"),
                );
            }
        }
        Keyword::Copy
        | Keyword::Add
        | Keyword::User
        | Keyword::Expose
        | Keyword::Volume
        | Keyword::Stopsignal => {
            for a in &i.args {
                if !a.starts_with("<<") {
                    check_vars(cx, s, a);
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(df: &str) -> Vec<(&'static str, u32)> {
        lint(df, "Dockerfile")
            .unwrap()
            .into_iter()
            .map(|w| (w.rule, w.line))
            .collect()
    }

    #[test]
    fn clean_dockerfile_has_no_warnings() {
        assert_eq!(
            rules("FROM busybox AS build\nWORKDIR /src\nENV A=b\nCMD [\"sh\"]\n"),
            []
        );
    }

    #[test]
    fn each_rule() {
        let df = "ARG TAG\nARG API_TOKEN=x\nFROM busybox:${TAG} AS Builder\nFROM --platform=linux/amd64 busybox as builder\nfrom busybox AS scratch\nMAINTAINER me\nENV key value\nWORKDIR rel\nCMD echo a\nCMD [\"b\"]\nENTRYPOINT [\"e\"]\nFROM busybox:$NOPE\nENV DB_PASSWORD=x\n";
        let got = rules(df);
        for want in [
            ("SecretsUsedInArgOrEnv", 2),
            ("InvalidDefaultArgInFrom", 3),
            ("StageNameCasing", 3),
            ("FromAsCasing", 4),
            ("DuplicateStageName", 4),
            ("FromPlatformFlagConstDisallowed", 4),
            ("ConsistentInstructionCasing", 5),
            ("ReservedStageName", 5),
            ("MaintainerDeprecated", 6),
            ("LegacyKeyValueFormat", 7),
            ("WorkdirRelativePath", 8),
            ("JSONArgsRecommended", 9),
            ("MultipleInstructionsDisallowed", 9),
            ("UndefinedArgInFrom", 12),
            ("SecretsUsedInArgOrEnv", 13),
        ] {
            assert!(got.contains(&want), "missing {want:?} in {got:?}");
        }
        assert!(!got.contains(&("MultipleInstructionsDisallowed", 10)));
    }

    #[test]
    fn undefined_var_in_scratch_stages() {
        let got = lint(
            "FROM scratch\nARG VERSION=1\nENV DIR=/app\nCOPY a $DIR/$VERSON\n",
            "Dockerfile",
        )
        .unwrap();
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!(got[0].rule, "UndefinedVar");
        assert_eq!(
            got[0].message,
            "Usage of undefined variable '$VERSON' (did you mean $VERSION?)"
        );
        assert_eq!(got[0].line, 4);
        assert_eq!(
            got[0].url,
            "https://docs.docker.com/go/dockerfile/rule/undefined-var/"
        );
    }

    #[test]
    fn check_directive_skips_and_errors() {
        let df =
            "# check=skip=MaintainerDeprecated;error=true\nFROM busybox\nMAINTAINER x\nCMD echo\n";
        assert_eq!(rules(df), [("JSONArgsRecommended", 4)]);
        assert!(check_directive(df).error);
        assert_eq!(rules("# check=skip=all\nFROM busybox\nMAINTAINER x\n"), []);
        assert!(lint("FROM x\nRUN <<EOF\n", "Dockerfile").is_err());
    }

    #[test]
    fn vars_are_found() {
        assert_eq!(
            referenced_vars("a$B ${C:-x} '$D' \\$E $1", '\\'),
            ["B", "C"]
        );
    }
}
