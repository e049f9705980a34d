//! `kiln network create|ls|inspect|rm|prune|connect|disconnect`, as docker's (the bridge driver only; the
//! predefined `bridge`, `host` and `none` are not listed yet).

use crate::containers::table;
use crate::util::{confirm, Env, Failure};
use clap::{Args, Subcommand};
use kiln_network::{CreateOptions, Error, Network, Networks};
use std::collections::BTreeMap;

#[derive(Args)]
pub(crate) struct NetworkArgs {
    #[command(subcommand)]
    cmd: NetworkCmd,
}

#[derive(Subcommand)]
enum NetworkCmd {
    /// Create a network and print its id.
    Create(CreateArgs),
    /// List networks.
    #[command(visible_alias = "list")]
    Ls(LsArgs),
    /// Show networks' details as a JSON array.
    Inspect(NamesArgs),
    /// Remove networks (refused while a container is on one).
    #[command(visible_alias = "remove")]
    Rm(NamesArgs),
    /// Remove every network no container is on.
    Prune(PruneArgs),
    /// Connect a container to a network (at once when it runs).
    Connect(ConnectArgs),
    /// Disconnect a container from a network (at once when it runs).
    Disconnect(DisconnectArgs),
}

#[derive(Args)]
struct ConnectArgs {
    /// Another name of the container on the network; repeatable.
    #[arg(long)]
    alias: Vec<String>,
    /// Its IPv4 address on the network.
    #[arg(long)]
    ip: Option<String>,
    /// The network.
    network: String,
    /// The container.
    container: String,
}

#[derive(Args)]
struct DisconnectArgs {
    /// Accepted for docker's compatibility (the interface goes either way).
    #[arg(short, long)]
    force: bool,
    /// The network.
    network: String,
    /// The container.
    container: String,
}

#[derive(Args)]
struct CreateArgs {
    /// Driver (only `bridge`).
    #[arg(short, long, default_value = "bridge")]
    driver: String,
    /// Subnet in CIDR form (e.g. 172.20.0.0/16).
    #[arg(long)]
    subnet: Option<String>,
    /// Gateway of the subnet (default: its first address).
    #[arg(long)]
    gateway: Option<String>,
    /// No outbound route.
    #[arg(long)]
    internal: bool,
    /// Label K=V; repeatable.
    #[arg(long)]
    label: Vec<String>,
    /// Name.
    name: String,
}

#[derive(Args)]
struct LsArgs {
    /// Only show ids.
    #[arg(short, long)]
    quiet: bool,
    /// Filter: name=, id=, driver=, label=K or label=K=V; repeatable.
    #[arg(short, long)]
    filter: Vec<String>,
    /// Do not truncate ids.
    #[arg(long)]
    no_trunc: bool,
}

#[derive(Args)]
struct NamesArgs {
    #[arg(required = true)]
    names: Vec<String>,
}

#[derive(Args)]
struct PruneArgs {
    /// Do not ask for confirmation (required when stdin is not a terminal).
    #[arg(short, long)]
    force: bool,
}

fn failure(e: Error) -> Failure {
    let code = match e {
        Error::BadName(_)
        | Error::Driver(_)
        | Error::Ipam(_)
        | Error::Predefined(_)
        | Error::Overlap(..) => 2,
        _ => 1,
    };
    Failure::with_source(code, e.to_string(), e)
}

fn runtime_failure(e: kiln_runtime::Error) -> Failure {
    Failure::with_source(1, e.to_string(), e)
}

/// One `--filter` of `network ls`.
fn matches(n: &Network, filter: &str) -> Result<bool, Failure> {
    let (k, v) = filter.split_once('=').ok_or_else(|| {
        Failure::usage(format!(
            "bad format of filter (expected name=value): {filter}"
        ))
    })?;
    Ok(match k {
        // docker matches names and ids as substrings and prefixes.
        "name" => n.name.contains(v),
        "id" => n.id.starts_with(v),
        "driver" => n.driver == v,
        "label" => match v.split_once('=') {
            Some((lk, lv)) => n.labels.get(lk).is_some_and(|x| x == lv),
            None => n.labels.contains_key(v),
        },
        _ => return Err(Failure::usage(format!("invalid filter '{k}'"))),
    })
}

pub(crate) fn network(env: &Env, a: NetworkArgs) -> Result<u8, Failure> {
    let root = env.store.root();
    // What a killed kiln left behind goes first.
    kiln_runtime::reconcile_networks(root).map_err(runtime_failure)?;
    let nets = Networks::new(root);
    match a.cmd {
        NetworkCmd::Create(c) => {
            let mut labels = BTreeMap::new();
            for l in &c.label {
                let (k, v) = l.split_once('=').unwrap_or((l, ""));
                labels.insert(k.to_string(), v.to_string());
            }
            let opts = CreateOptions {
                driver: Some(c.driver),
                subnet: c.subnet,
                gateway: c.gateway,
                internal: c.internal,
                labels,
            };
            let n = nets.create(&c.name, &opts).map_err(failure)?;
            println!("{}", n.id);
            Ok(0)
        }
        NetworkCmd::Ls(l) => {
            let mut list = Vec::new();
            for n in nets.list().map_err(failure)? {
                let mut keep = true;
                for f in &l.filter {
                    keep &= matches(&n, f)?;
                }
                if keep {
                    list.push(n);
                }
            }
            let id = |n: &Network| {
                if l.no_trunc {
                    n.id.clone()
                } else {
                    n.id[..12].to_string()
                }
            };
            if l.quiet {
                for n in &list {
                    println!("{}", id(n));
                }
                return Ok(0);
            }
            let mut rows = vec![[
                "NETWORK ID".to_string(),
                "NAME".to_string(),
                "DRIVER".to_string(),
                "SCOPE".to_string(),
            ]];
            rows.extend(
                list.iter()
                    .map(|n| [id(n), n.name.clone(), n.driver.clone(), "local".to_string()]),
            );
            print!("{}", table(&rows));
            Ok(0)
        }
        NetworkCmd::Inspect(n) => {
            let mut out = Vec::new();
            let mut code = 0;
            for name in &n.names {
                match nets
                    .find(name)
                    .and_then(|n| Ok(n.inspect(&nets.endpoints(&n.id)?)))
                {
                    Ok(v) => out.push(v),
                    Err(e) => {
                        failure(e).print();
                        code = 1;
                    }
                }
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
        NetworkCmd::Rm(r) => {
            let mut code = 0;
            for name in &r.names {
                match nets.remove(name) {
                    Ok(_) => println!("{name}"),
                    Err(e) => {
                        failure(e).print();
                        code = 1;
                    }
                }
            }
            Ok(code)
        }
        NetworkCmd::Connect(c) => {
            let ip =
                c.ip.as_deref()
                    .map(|s| {
                        s.parse()
                            .map_err(|_| Failure::usage(format!("invalid IPv4 address: {s}")))
                    })
                    .transpose()?;
            let mut ctr = crate::containers::find(env, &c.container)?;
            ctr.connect_network(&c.network, &c.alias, ip)
                .map_err(runtime_failure)?;
            Ok(0)
        }
        NetworkCmd::Disconnect(d) => {
            let _ = d.force;
            let mut ctr = crate::containers::find(env, &d.container)?;
            ctr.disconnect_network(&d.network)
                .map_err(runtime_failure)?;
            Ok(0)
        }
        NetworkCmd::Prune(p) => {
            if !confirm(
                p.force,
                "WARNING! This will remove all custom networks not used by at least one container.",
            )? {
                return Ok(0);
            }
            let mut removed = Vec::new();
            for n in nets.list().map_err(failure)? {
                if nets.endpoints(&n.id).map_err(failure)?.is_empty() {
                    match nets.remove(&n.id) {
                        Ok(n) => removed.push(n.name),
                        // Joined meanwhile: it stays, as docker's.
                        Err(Error::ActiveEndpoints { .. }) => {}
                        Err(e) => return Err(failure(e)),
                    }
                }
            }
            if !removed.is_empty() {
                println!("Deleted Networks:");
                for n in &removed {
                    println!("{n}");
                }
            }
            Ok(0)
        }
    }
}
