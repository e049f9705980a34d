//! `kiln container …`: docker's second spelling of the container commands (`container ls`
//! is `ps`, `container run` is `run`, …), `container prune`, and `kiln inspect`, which
//! answers for containers and images.

use crate::containers;
use crate::run;
use crate::util::{confirm, Env, Failure};
use clap::{Args, Subcommand};
use kiln_units::human;

#[derive(Args)]
pub(crate) struct ContainerArgs {
    #[command(subcommand)]
    command: ContainerCommand,
}

#[derive(Subcommand)]
enum ContainerCommand {
    /// List containers.
    #[command(visible_alias = "ps", visible_alias = "list")]
    Ls(containers::PsArgs),
    /// Run a command in a new container.
    Run(run::RunArgs),
    /// Create a new container without starting it.
    Create(run::RunArgs),
    /// Start created or stopped containers.
    Start(containers::StartArgs),
    /// Attach to a running container.
    Attach(crate::attach::AttachArgs),
    /// Stop running containers.
    Stop(containers::StopArgs),
    /// Restart containers.
    Restart(containers::RestartArgs),
    /// Send a signal to running containers.
    Kill(containers::KillArgs),
    /// Rename a container.
    Rename(containers::RenameArgs),
    /// Remove containers.
    #[command(visible_alias = "remove")]
    Rm(containers::RmArgs),
    /// Show a container's output.
    Logs(containers::LogsArgs),
    /// Run a command in a running container.
    Exec(containers::ExecArgs),
    /// List a container's published ports.
    Port(containers::PortArgs),
    /// Wait for containers to stop and print their exit codes.
    Wait(containers::WaitArgs),
    /// Remove all stopped containers.
    Prune(PruneArgs),
    /// Show containers' details as JSON (docker's shape).
    Inspect(ContainerInspectArgs),
    /// Pause all processes within containers.
    Pause(crate::update::PauseArgs),
    /// Unpause all processes within containers.
    Unpause(crate::update::PauseArgs),
    /// Update configuration of containers.
    Update(crate::update::UpdateArgs),
    /// Create a new image from a container's changes.
    Commit(crate::commit::CommitArgs),
}

#[derive(Args)]
pub(crate) struct ContainerInspectArgs {
    /// Format the output using the given Go template (`json`: the default JSON array).
    #[arg(short, long)]
    format: Option<String>,
    /// Containers (id, id prefix or name).
    #[arg(required = true)]
    containers: Vec<String>,
}

#[derive(Args)]
pub(crate) struct InspectArgs {
    /// Only this kind of object (default: a container when one has the name, else an
    /// image).
    #[arg(long = "type", value_parser = ["container", "image"])]
    kind: Option<String>,
    /// Format the output using the given Go template (`json`: the default JSON array).
    #[arg(short, long)]
    format: Option<String>,
    /// Containers (id, id prefix or name) or images.
    #[arg(required = true)]
    names: Vec<String>,
}

#[derive(Args)]
pub(crate) struct PruneArgs {
    /// Do not prompt for confirmation.
    #[arg(short, long)]
    force: bool,
    /// `until=DURATION` (e.g. 24h, 30m, 7d, 1h30m): only containers created before then.
    #[arg(long)]
    filter: Vec<String>,
}

pub(crate) async fn container(env: &Env, a: ContainerArgs) -> Result<u8, Failure> {
    match a.command {
        ContainerCommand::Ls(a) => containers::ps(env, a),
        ContainerCommand::Run(a) => run::run(env, a).await,
        ContainerCommand::Create(a) => run::create(env, a).await,
        ContainerCommand::Start(a) => containers::start(env, a).await,
        ContainerCommand::Attach(a) => crate::attach::attach(env, a).await,
        ContainerCommand::Stop(a) => containers::stop(env, a),
        ContainerCommand::Restart(a) => containers::restart(env, a),
        ContainerCommand::Kill(a) => containers::kill(env, a),
        ContainerCommand::Rename(a) => containers::rename(env, a),
        ContainerCommand::Rm(a) => containers::rm(env, a),
        ContainerCommand::Logs(a) => containers::logs(env, a),
        ContainerCommand::Exec(a) => containers::exec(env, a).await,
        ContainerCommand::Port(a) => containers::port(env, a),
        ContainerCommand::Wait(a) => containers::wait(env, a),
        ContainerCommand::Prune(a) => prune(env, &a),
        ContainerCommand::Pause(a) => Ok(crate::update::pause(env, &a)),
        ContainerCommand::Unpause(a) => Ok(crate::update::unpause(env, &a)),
        ContainerCommand::Update(a) => crate::update::update(env, &a),
        ContainerCommand::Commit(a) => crate::commit::commit(env, &a),
        ContainerCommand::Inspect(a) => {
            let template = crate::format::inspect_template(a.format.as_deref())?;
            Ok(render(
                inspect_each(env, &a.containers, Some("container")),
                template.as_ref(),
            ))
        }
    }
}

/// `kiln image inspect IMAGE…`: `inspect --type image`.
pub(crate) fn inspect_images(
    env: &Env,
    names: &[String],
    format: Option<&str>,
) -> Result<u8, Failure> {
    let template = crate::format::inspect_template(format)?;
    Ok(render(
        inspect_each(env, names, Some("image")),
        template.as_ref(),
    ))
}

/// `kiln inspect [--type container|image] NAME…`: one JSON array of what the names name;
/// as docker, a container when one has the name (without `--type`), else an image.
pub(crate) fn inspect(env: &Env, a: &InspectArgs) -> Result<u8, Failure> {
    let template = crate::format::inspect_template(a.format.as_deref())?;
    Ok(render(
        inspect_each(env, &a.names, a.kind.as_deref()),
        template.as_ref(),
    ))
}

fn inspect_each(
    env: &Env,
    names: &[String],
    kind: Option<&str>,
) -> Vec<Result<serde_json::Value, Failure>> {
    let containers = kiln_runtime::Containers::new(env.store.root());
    let one = |name: &str| {
        if kind != Some("image") {
            match containers.find(name) {
                Ok(c) => return Ok(c.inspect()),
                Err(kiln_runtime::Error::NoSuchContainer(_)) if kind.is_none() => {}
                Err(e) => return Err(containers::failure(e)),
            }
        }
        match kind {
            Some(_) => crate::images::inspect_image(env, name),
            // Neither a container nor a (valid, stored) image: docker's words.
            None => crate::images::inspect_image(env, name)
                .map_err(|_| Failure::new(1, format!("No such object: {name}"))),
        }
    };
    names.iter().map(|n| one(n)).collect()
}

/// Prints the objects found (one JSON array, or each through `-f`'s template) and the
/// errors; exit 1 if any failed.
fn render(
    results: Vec<Result<serde_json::Value, Failure>>,
    template: Option<&kiln_template::Template>,
) -> u8 {
    let mut found = Vec::new();
    let mut code = 0;
    for r in results {
        match r {
            Ok(v) => found.push(v),
            Err(f) => {
                f.print();
                code = 1;
            }
        }
    }
    code.max(crate::format::print_inspected(template, found))
}

/// `--filter until=DURATION` as a creation time (milliseconds since the Unix epoch) before
/// which containers go.
fn created_before(filters: &[String], now: i64) -> Result<Option<i64>, Failure> {
    Ok(crate::util::until_filter(filters)?.map(|d| {
        let millis = i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        now.saturating_sub(millis)
    }))
}

fn prune(env: &Env, a: &PruneArgs) -> Result<u8, Failure> {
    let before = created_before(&a.filter, kiln_runtime::now_millis())?;
    if !confirm(a.force, "WARNING! This will remove all stopped containers.")? {
        return Ok(0);
    }
    let pruned = kiln_runtime::Containers::new(env.store.root())
        .prune_created_before(before)
        .map_err(containers::failure)?;
    for (id, e) in &pruned.failed {
        eprintln!("warning: container {id}: {e}");
    }
    if !pruned.removed.is_empty() {
        println!("Deleted Containers:");
        for id in &pruned.removed {
            println!("{id}");
        }
        println!();
    }
    println!("Total reclaimed space: {}", human(pruned.reclaimed));
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::created_before;

    #[test]
    fn until_is_a_duration_back_from_now() {
        let f = |s: &[&str]| {
            let filters: Vec<String> = s.iter().map(ToString::to_string).collect();
            created_before(&filters, 100_000_000).map_err(|e| e.code)
        };
        assert_eq!(f(&[]), Ok(None));
        assert_eq!(f(&["until=30s"]), Ok(Some(100_000_000 - 30_000)));
        assert_eq!(f(&["until=1h"]), Ok(Some(100_000_000 - 3_600_000)));
        assert_eq!(f(&["until=soon"]), Err(2));
        assert_eq!(f(&["label=a"]), Err(2));
    }
}
