//! `kiln stats [-a] [--no-stream] [--no-trunc] [CONTAINER…]`: flags →
//! [`kiln_runtime::measure`] → docker's table, once or every second.

use crate::containers::table;
use crate::util::{Env, Failure};
use clap::Args;
use kiln_runtime::{Container, Containers, Usage};
use kiln_units::{human_binary, human_precision};
use std::io::IsTerminal;
use std::time::Duration;

#[derive(Args)]
pub(crate) struct StatsArgs {
    /// Show all containers (default shows just running).
    #[arg(short, long)]
    all: bool,
    /// Disable streaming stats and only pull the first result.
    #[arg(long)]
    no_stream: bool,
    /// Do not truncate output.
    #[arg(long)]
    no_trunc: bool,
    /// Format with docker's placeholders ({{.Container}} {{.Name}} {{.ID}} {{.CPUPerc}}
    /// {{.MemUsage}} {{.MemPerc}} {{.NetIO}} {{.BlockIO}} {{.PIDs}}); `table` prefix for
    /// aligned columns with a header.
    #[arg(long)]
    format: Option<String>,
    /// Containers (name, id or id prefix); default: all running (with -a, all).
    containers: Vec<String>,
}

const TITLES: [&str; 8] = [
    "CONTAINER ID",
    "NAME",
    "CPU %",
    "MEM USAGE / LIMIT",
    "MEM %",
    "NET I/O",
    "BLOCK I/O",
    "PIDS",
];

/// The placeholders of `--format`, their headers, in docker's stats context.
const FIELDS: [(&str, &str); 9] = [
    ("Container", "CONTAINER"),
    ("Name", "NAME"),
    ("ID", "CONTAINER ID"),
    ("CPUPerc", "CPU %"),
    ("MemUsage", "MEM USAGE / LIMIT"),
    ("MemPerc", "MEM %"),
    ("NetIO", "NET I/O"),
    ("BlockIO", "BLOCK I/O"),
    ("PIDs", "PIDS"),
];

/// A piece of a `--format` template.
#[derive(Debug, PartialEq)]
enum Piece {
    Text(String),
    /// Index into [`FIELDS`].
    Field(usize),
}

/// A `--format`: docker's `table` prefix, `\t` and `\n` escapes and `{{.Field}}`
/// placeholders (Go templates beyond plain fields are refused).
#[derive(Debug)]
struct Format {
    table: bool,
    pieces: Vec<Piece>,
}

impl Format {
    fn parse(format: &str) -> Result<Format, String> {
        let (table, rest) = match format.strip_prefix("table") {
            Some(r) => (true, r),
            None => (false, format),
        };
        let rest = if table && rest.trim().is_empty() {
            "{{.ID}}\\t{{.Name}}\\t{{.CPUPerc}}\\t{{.MemUsage}}\\t{{.MemPerc}}\\t{{.NetIO}}\\t{{.BlockIO}}\\t{{.PIDs}}"
        } else if table {
            rest.trim_matches(' ')
        } else {
            rest
        };
        let rest = rest.replace("\\t", "\t").replace("\\n", "\n");
        let mut pieces = Vec::new();
        let mut s = rest.as_str();
        while let Some(open) = s.find("{{") {
            if open > 0 {
                pieces.push(Piece::Text(s[..open].to_string()));
            }
            let close = s[open..]
                .find("}}")
                .ok_or_else(|| format!("template parsing error: unclosed action in `{format}`"))?;
            let action = s[open + 2..open + close].trim();
            let field = action
                .strip_prefix('.')
                .and_then(|f| FIELDS.iter().position(|(name, _)| *name == f))
                .ok_or_else(|| {
                    format!(
                        "template parsing error: {{{{{action}}}}} is not a stats placeholder \
                         (kiln knows {})",
                        FIELDS.map(|(n, _)| format!(".{n}")).join(" ")
                    )
                })?;
            pieces.push(Piece::Field(field));
            s = &s[open + close + 2..];
        }
        if !s.is_empty() {
            pieces.push(Piece::Text(s.to_string()));
        }
        Ok(Format { table, pieces })
    }

    fn render(&self, values: &[String; 9]) -> String {
        self.pieces
            .iter()
            .map(|p| match p {
                Piece::Text(t) => t.as_str(),
                Piece::Field(i) => values[*i].as_str(),
            })
            .collect()
    }

    /// The output for these rows: one line each (after a header and in aligned columns
    /// with `table`).
    fn output(&self, rows: &[[String; 9]]) -> String {
        let mut lines = Vec::new();
        if self.table {
            lines.push(self.render(&FIELDS.map(|(_, h)| h.to_string())));
        }
        lines.extend(rows.iter().map(|r| self.render(r)));
        if !self.table {
            return lines.iter().map(|l| format!("{l}\n")).collect();
        }
        tabwrite(&lines)
    }
}

/// Go's tabwriter as docker's tables use it (padding 3): tab-separated cells in columns.
fn tabwrite(lines: &[String]) -> String {
    let cells: Vec<Vec<&str>> = lines.iter().map(|l| l.split('\t').collect()).collect();
    let mut widths: Vec<usize> = Vec::new();
    for row in &cells {
        // The last cell of a line is not in a column.
        for (i, c) in row.iter().take(row.len().saturating_sub(1)).enumerate() {
            if widths.len() <= i {
                widths.push(0);
            }
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    let mut out = String::new();
    for row in &cells {
        let mut line = String::new();
        for (i, c) in row.iter().enumerate() {
            line.push_str(c);
            if i + 1 < row.len() {
                line.extend(std::iter::repeat_n(' ', widths[i] - c.chars().count() + 3));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

pub(crate) fn stats(env: &Env, a: StatsArgs) -> Result<u8, Failure> {
    let format = a
        .format
        .as_deref()
        .map(Format::parse)
        .transpose()
        .map_err(Failure::usage)?;
    let all = Containers::new(env.store.root());
    let mut chosen: Vec<Container> = if a.containers.is_empty() {
        all.list()
            .map_err(|e| Failure::wrap(1, e))?
            .into_iter()
            .filter(|c| a.all || c.is_running())
            .collect()
    } else {
        a.containers
            .iter()
            .map(|n| crate::containers::find(env, n))
            .collect::<Result<_, _>>()?
    };
    // `.Container`: the name or id as given, the short id otherwise (as docker's).
    let named: Vec<String> = if a.containers.is_empty() {
        chosen.iter().map(|c| c.short_id().to_string()).collect()
    } else {
        a.containers.clone()
    };
    let mut prev = Vec::new();
    let clear = !a.no_stream && std::io::stdout().is_terminal();
    loop {
        let usage = kiln_runtime::measure(&mut chosen, &mut prev, Duration::from_secs(1));
        let text = if let Some(f) = &format {
            let rows: Vec<[String; 9]> = chosen
                .iter()
                .zip(&usage)
                .zip(&named)
                .map(|((c, u), n)| fields(c, n, u.unwrap_or_default(), a.no_trunc))
                .collect();
            f.output(&rows)
        } else {
            let mut rows = vec![TITLES.map(str::to_string)];
            for (c, u) in chosen.iter().zip(&usage) {
                rows.push(row(c, u.unwrap_or_default(), a.no_trunc));
            }
            table(&rows)
        };
        if clear {
            // Docker's redraw: clear the screen, cursor home.
            print!("\x1b[2J\x1b[H");
        }
        print!("{text}");
        if a.no_stream {
            return Ok(0);
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// The values of [`FIELDS`] for one container.
fn fields(c: &Container, named: &str, u: Usage, no_trunc: bool) -> [String; 9] {
    let [id, name, cpu, mem, mem_perc, net, block, pids] = row(c, u, no_trunc);
    [
        named.to_string(),
        name,
        id,
        cpu,
        mem,
        mem_perc,
        net,
        block,
        pids,
    ]
}

/// One container's line, with docker's units: memory in binary units (BytesSize), I/O in
/// decimal ones with three digits.
fn row(c: &Container, u: Usage, no_trunc: bool) -> [String; 8] {
    let pair =
        |(x, y): (u64, u64)| format!("{} / {}", human_precision(x, 3), human_precision(y, 3));
    [
        if no_trunc { c.id() } else { c.short_id() }.to_string(),
        c.config.name.clone(),
        format!("{:.2}%", u.cpu_percent),
        format!(
            "{} / {}",
            human_binary(u.memory.0),
            human_binary(u.memory.1)
        ),
        format!("{:.2}%", u.memory_percent),
        pair(u.net),
        pair(u.block),
        u.pids.to_string(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values() -> [String; 9] {
        [
            "web",
            "web",
            "0123456789ab",
            "1.50%",
            "1MiB / 2MiB",
            "50.00%",
            "0B / 0B",
            "0B / 0B",
            "3",
        ]
        .map(str::to_string)
    }

    #[test]
    fn plain_formats_fill_placeholders_and_escapes() {
        let f = Format::parse("{{.Name}}: {{ .CPUPerc }}\\t{{.PIDs}}").unwrap();
        assert_eq!(f.output(&[values()]), "web: 1.50%\t3\n");
        assert_eq!(
            Format::parse("x").unwrap().output(&[values(), values()]),
            "x\nx\n"
        );
    }

    #[test]
    fn table_formats_have_headers_and_columns() {
        let f = Format::parse("table {{.Container}}\\t{{.MemPerc}}\\t{{.PIDs}}").unwrap();
        assert_eq!(
            f.output(&[values()]),
            "CONTAINER   MEM %    PIDS\nweb         50.00%   3\n"
        );
        let default = Format::parse("table").unwrap().output(&[]);
        assert_eq!(
            default,
            "CONTAINER ID   NAME   CPU %   MEM USAGE / LIMIT   MEM %   NET I/O   BLOCK I/O   PIDS\n"
        );
    }

    #[test]
    fn unknown_placeholders_are_refused() {
        let e = Format::parse("{{.Nope}}").unwrap_err();
        assert!(e.contains("{{.Nope}} is not a stats placeholder"), "{e}");
        assert!(Format::parse("{{json .}}").is_err());
        assert!(Format::parse("{{.Name").is_err());
    }
}
