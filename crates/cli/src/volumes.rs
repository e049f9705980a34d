//! `kiln volume create|ls|inspect|rm|prune`, as docker's (the local driver only).

use crate::containers::table;
use crate::util::{confirm, Env, Failure};
use clap::{Args, Subcommand};
use kiln_runtime::Volumes;
use std::collections::BTreeMap;

#[derive(Args)]
pub(crate) struct VolumeArgs {
    #[command(subcommand)]
    cmd: VolumeCmd,
}

#[derive(Subcommand)]
enum VolumeCmd {
    /// Create a volume (a random name when none is given) and print its name.
    Create(CreateArgs),
    /// List volumes.
    #[command(visible_alias = "list")]
    Ls(LsArgs),
    /// Show volumes' details as a JSON array.
    Inspect(InspectArgs),
    /// Remove volumes (refused while a container, running or stopped, uses one).
    #[command(visible_alias = "remove")]
    Rm(RmArgs),
    /// Remove unused anonymous volumes (all unused ones with -a).
    Prune(PruneArgs),
}

#[derive(Args)]
struct CreateArgs {
    /// Label K=V; repeatable.
    #[arg(long)]
    label: Vec<String>,
    /// Driver (only `local`).
    #[arg(short, long, default_value = "local", value_parser = ["local"])]
    driver: String,
    /// Name.
    name: Option<String>,
}

#[derive(Args)]
struct LsArgs {
    /// Only show names.
    #[arg(short, long)]
    quiet: bool,
    /// Format with a Go template: `table` for columns under docker's headers, `json` for
    /// one object a line; fields .Name .Driver .Scope .Mountpoint .Labels .Label "k".
    #[arg(long)]
    format: Option<String>,
}

/// `volume ls --format` fields and docker's column titles for them.
const LS_HEADERS: [(&str, &str); 7] = [
    ("Name", "VOLUME NAME"),
    ("Driver", "DRIVER"),
    ("Scope", "SCOPE"),
    ("Mountpoint", "MOUNTPOINT"),
    ("Labels", "LABELS"),
    ("Links", "LINKS"),
    ("Size", "SIZE"),
];

#[derive(Args)]
struct InspectArgs {
    /// Format the output using the given Go template (`json`: the default JSON array).
    #[arg(short, long)]
    format: Option<String>,
    #[arg(required = true)]
    names: Vec<String>,
}

#[derive(Args)]
struct RmArgs {
    /// No error for volumes that do not exist (volumes in use are still refused).
    #[arg(short, long)]
    force: bool,
    #[arg(required = true)]
    names: Vec<String>,
}

#[derive(Args)]
struct PruneArgs {
    /// Remove every unused volume, named ones too.
    #[arg(short, long)]
    all: bool,
    /// Do not ask for confirmation (required when stdin is not a terminal).
    #[arg(short, long)]
    force: bool,
}

fn failure(e: kiln_runtime::Error) -> Failure {
    Failure::with_source(1, e.to_string(), e)
}

pub(crate) fn volume(env: &Env, a: VolumeArgs) -> Result<u8, Failure> {
    let vols = Volumes::new(env.store.root());
    match a.cmd {
        VolumeCmd::Create(c) => {
            let _ = c.driver;
            let mut labels = BTreeMap::new();
            for l in &c.label {
                let (k, v) = l.split_once('=').unwrap_or((l, ""));
                labels.insert(k.to_string(), v.to_string());
            }
            // Unnamed, but not anonymous (docker's `volume prune` keeps it without -a).
            let name = c.name.unwrap_or_else(kiln_runtime::random_volume_name);
            let (v, _) = vols.create(Some(&name), labels).map_err(|e| match e {
                kiln_runtime::Error::InvalidVolumeName(_) => {
                    Failure::with_source(2, e.to_string(), e)
                }
                e => failure(e),
            })?;
            println!("{}", v.name);
            Ok(0)
        }
        VolumeCmd::Ls(l) => {
            let list = vols.list().map_err(failure)?;
            // As docker's: -q wins over `table`, a template of one's own over -q.
            if let Some(f) = l
                .format
                .as_ref()
                .filter(|f| !(l.quiet && f.starts_with("table")))
            {
                let format = crate::format::listing(f, "{{.Driver}}\\t{{.Name}}")?;
                let rows: Vec<serde_json::Value> = list
                    .iter()
                    .map(|v| {
                        let mut row = v.inspect();
                        // As docker's listing: labels as `k=v,k=v`.
                        let labels: Vec<String> =
                            v.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
                        row["Labels"] = labels.join(",").into();
                        // Docker's, without usage data (`docker system df -v` has it).
                        row["Links"] = "N/A".into();
                        row["Size"] = "N/A".into();
                        row
                    })
                    .collect();
                return crate::format::print_rows(&format, &LS_HEADERS, &rows);
            }
            if l.quiet {
                for v in list {
                    println!("{}", v.name);
                }
                return Ok(0);
            }
            let mut rows = vec![["DRIVER".to_string(), "VOLUME NAME".to_string()]];
            rows.extend(list.into_iter().map(|v| ["local".to_string(), v.name]));
            print!("{}", table(&rows));
            Ok(0)
        }
        VolumeCmd::Inspect(n) => {
            let template = crate::format::inspect_template(n.format.as_deref())?;
            let mut out = Vec::new();
            let mut code = 0;
            for name in &n.names {
                match vols.get(name) {
                    Ok(v) => out.push(v.inspect()),
                    Err(e) => {
                        failure(e).print();
                        code = 1;
                    }
                }
            }
            if template.is_some() {
                return Ok(code.max(crate::format::print_inspected(template.as_ref(), out)));
            }
            println!(
                "{}",
                serde_json::to_string_pretty(&out).map_err(|e| Failure::with_source(
                    1,
                    e.to_string(),
                    e
                ))?
            );
            Ok(code)
        }
        VolumeCmd::Rm(r) => {
            let mut code = 0;
            for name in &r.names {
                match vols.remove(name, r.force) {
                    Ok(()) => println!("{name}"),
                    Err(e) => {
                        failure(e).print();
                        code = 1;
                    }
                }
            }
            Ok(code)
        }
        VolumeCmd::Prune(p) => {
            let warning = if p.all {
                "WARNING! This will remove all local volumes not used by at least one container."
            } else {
                "WARNING! This will remove anonymous local volumes not used by at least one \
                 container."
            };
            if !confirm(p.force, warning)? {
                return Ok(0);
            }
            let (removed, size) = vols.prune(p.all).map_err(failure)?;
            if !removed.is_empty() {
                println!("Deleted Volumes:");
                for n in &removed {
                    println!("{n}");
                }
                println!();
            }
            println!("Total reclaimed space: {}", kiln_units::human(size));
            Ok(0)
        }
    }
}
