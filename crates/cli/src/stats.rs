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
    /// Format with a Go template: `table` for columns under docker's headers, `json` for
    /// one object a line; fields .Container .Name .ID .CPUPerc .MemUsage .MemPerc .NetIO
    /// .BlockIO .PIDs.
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

/// `stats`'s default table, as docker's.
const TABLE: &str = "{{.ID}}\\t{{.Name}}\\t{{.CPUPerc}}\\t{{.MemUsage}}\\t{{.MemPerc}}\\t{{.NetIO}}\\t{{.BlockIO}}\\t{{.PIDs}}";

pub(crate) fn stats(env: &Env, a: StatsArgs) -> Result<u8, Failure> {
    let format = a
        .format
        .as_deref()
        .map(|f| crate::format::listing(f, TABLE))
        .transpose()?;
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
            let rows: Vec<serde_json::Value> = chosen
                .iter()
                .zip(&usage)
                .zip(&named)
                .map(|((c, u), n)| fields(c, n, u.unwrap_or_default(), a.no_trunc))
                .collect();
            f.render(&FIELDS, &rows)
                .map_err(|e| Failure::new(1, e.to_string()))?
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
fn fields(c: &Container, named: &str, u: Usage, no_trunc: bool) -> serde_json::Value {
    let [id, name, cpu, mem, mem_perc, net, block, pids] = row(c, u, no_trunc);
    serde_json::json!({
        "Container": named,
        "Name": name,
        "ID": id,
        "CPUPerc": cpu,
        "MemUsage": mem,
        "MemPerc": mem_perc,
        "NetIO": net,
        "BlockIO": block,
        "PIDs": pids,
    })
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

    fn values() -> serde_json::Value {
        serde_json::json!({
            "Container": "web", "Name": "web", "ID": "0123456789ab", "CPUPerc": "1.50%",
            "MemUsage": "1MiB / 2MiB", "MemPerc": "50.00%", "NetIO": "0B / 0B",
            "BlockIO": "0B / 0B", "PIDs": "3",
        })
    }

    fn render(f: &str, rows: &[serde_json::Value]) -> String {
        crate::format::listing(f, TABLE)
            .ok()
            .unwrap()
            .render(&FIELDS, rows)
            .unwrap()
    }

    #[test]
    fn plain_formats_fill_placeholders_and_escapes() {
        assert_eq!(
            render("{{.Name}}: {{ .CPUPerc }}\\t{{.PIDs}}", &[values()]),
            "web: 1.50%\t3\n"
        );
        assert_eq!(render("x", &[values(), values()]), "x\nx\n");
    }

    #[test]
    fn table_formats_have_headers_and_columns() {
        assert_eq!(
            render(
                "table {{.Container}}\\t{{.MemPerc}}\\t{{.PIDs}}",
                &[values()]
            ),
            "CONTAINER   MEM %    PIDS\nweb         50.00%   3\n"
        );
        assert_eq!(
            render("table", &[]),
            "CONTAINER ID   NAME   CPU %   MEM USAGE / LIMIT   MEM %   NET I/O   BLOCK I/O   PIDS\n"
        );
    }

    #[test]
    fn go_templates_and_unknown_fields() {
        assert_eq!(
            render("{{json .PIDs}} {{lower .Name | upper}}", &[values()]),
            "\"3\" WEB\n"
        );
        let e = crate::format::listing("{{.Nope}}", TABLE)
            .ok()
            .unwrap()
            .render(&FIELDS, &[values()])
            .unwrap_err()
            .to_string();
        assert!(e.contains("can't evaluate field Nope"), "{e}");
        assert!(crate::format::listing("{{.Name", TABLE).is_err());
    }
}
