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

pub(crate) fn stats(env: &Env, a: StatsArgs) -> Result<u8, Failure> {
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
    let mut prev = Vec::new();
    let clear = !a.no_stream && std::io::stdout().is_terminal();
    loop {
        let usage = kiln_runtime::measure(&mut chosen, &mut prev, Duration::from_secs(1));
        let mut rows = vec![TITLES.map(str::to_string)];
        for (c, u) in chosen.iter().zip(&usage) {
            rows.push(row(c, u.unwrap_or_default(), a.no_trunc));
        }
        if clear {
            // Docker's redraw: clear the screen, cursor home.
            print!("\x1b[2J\x1b[H");
        }
        print!("{}", table(&rows));
        if a.no_stream {
            return Ok(0);
        }
        std::thread::sleep(Duration::from_secs(1));
    }
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
