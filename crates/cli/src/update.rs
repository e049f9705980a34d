//! `kiln pause`, `kiln unpause` and `kiln update`: glue to the runtime's `pause.rs` and
//! `update.rs`. Each prints the names it was given, one per line, as docker does; a
//! container that fails is reported and the others go on (exit 1 at the end).

use crate::containers::{each, failure};
use crate::util::{Env, Failure};
use clap::Args;
use kiln_runtime::UpdateOptions;

#[derive(Args)]
pub(crate) struct PauseArgs {
    /// Containers (id, id prefix or name).
    #[arg(required = true)]
    containers: Vec<String>,
}

#[derive(Args)]
pub(crate) struct UpdateArgs {
    /// Memory limit (bytes, or with a b/k/m/g suffix).
    #[arg(short = 'm', long, value_parser = crate::run::parse_ram)]
    memory: Option<u64>,
    /// Memory plus swap (bytes, or with a b/k/m/g suffix; -1: unlimited swap).
    #[arg(long, value_parser = parse_memory_swap, allow_hyphen_values = true)]
    memory_swap: Option<i64>,
    /// Number of CPUs (e.g. 1.5).
    #[arg(long, allow_hyphen_values = true)]
    cpus: Option<String>,
    /// Maximum number of processes (-1: unlimited).
    #[arg(long, allow_hyphen_values = true)]
    pids_limit: Option<i64>,
    /// Restart policy: no, on-failure[:N], always or unless-stopped.
    #[arg(long)]
    restart: Option<String>,
    /// Containers (id, id prefix or name).
    #[arg(required = true)]
    containers: Vec<String>,
}

/// `--memory-swap`: `-1`, or a size as `--memory` (docker's `MemSwapBytes`).
fn parse_memory_swap(s: &str) -> Result<i64, String> {
    if s == "-1" {
        return Ok(-1);
    }
    let n = crate::run::parse_ram(s)?;
    i64::try_from(n).map_err(|_| format!("{s}: too large"))
}

pub(crate) fn pause(env: &Env, a: &PauseArgs) -> u8 {
    each(env, &a.containers, |mut c, name| {
        c.pause().map_err(failure)?;
        println!("{name}");
        Ok(())
    })
}

pub(crate) fn unpause(env: &Env, a: &PauseArgs) -> u8 {
    each(env, &a.containers, |mut c, name| {
        c.unpause().map_err(failure)?;
        println!("{name}");
        Ok(())
    })
}

pub(crate) fn update(env: &Env, a: &UpdateArgs) -> Result<u8, Failure> {
    let cpus = match a.cpus.as_deref() {
        Some(c) => crate::run::parse_cpus(c)?,
        None => None,
    };
    let restart = match a.restart.as_deref() {
        Some(r) => Some(
            r.parse()
                .map_err(|e: kiln_runtime::PolicyError| Failure::usage(e.to_string()))?,
        ),
        None => None,
    };
    let opts = UpdateOptions {
        // 0 leaves the limit as it is, as docker.
        memory: a.memory.filter(|&m| m > 0),
        memory_swap: a.memory_swap.filter(|&m| m != 0),
        cpus,
        pids: a.pids_limit,
        restart,
    };
    if opts == UpdateOptions::default() {
        return Err(Failure::new(
            1,
            "you must provide one or more flags when using this command",
        ));
    }
    Ok(each(env, &a.containers, |mut c, name| {
        c.update(&opts).map_err(failure)?;
        println!("{name}");
        Ok(())
    }))
}
