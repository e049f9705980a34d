//! `kiln`: a daemonless Dockerfile image builder and small container runtime.
//!
//! This crate only glues: it parses flags (named as in `docker buildx build` / `docker
//! run`, see shared/CLI.md), opens the store under `--root`, wires the frontend, the solver
//! and its worker, the exporters and the registry client together, renders progress and
//! errors, and maps failures to exit codes (0 ok, 1 build failure, 2 usage or Dockerfile
//! error).
//!
//! Every command is flags → resolved options → one library call → rendering. Errors reach
//! the user one way: a command returns a [`Failure`] (an exit code, the summary line, the
//! typed library error behind it, an optional hint), and `main` renders it with
//! [`Failure::render`] as `error: …`, `  Caused by: …` lines, `hint: …` (commands that go
//! on after a failed item, like `kiln rm A B`, render each the same way).
//!
//! Modules depend one way: `main` → commands (`build`, `run`, `images`, `containers`,
//! `volumes`, `system`, `login`, `top`, `stats`, `compose`) → `util` (the environment, `Failure`, shared helpers);
//! `volumes` and `stats` also use `containers`' table layout and `build` `system`'s GC.

// Every `println!`/`print!`/`eprintln!`/`eprint!` in this crate is the checked one below
// (`macro_rules!` defined before the `mod`s shadow std's in all of them). std's versions panic
// when stdout is a closed pipe (`kiln images | head -1`: exit 101 and a backtrace). Resetting
// SIGPIPE to its default would end the process quietly too, but kiln itself writes into pipes
// and sockets it owns (a container's stdin, a shim's control socket) where a signal would kill
// it half-way through; with SIGPIPE ignored (Rust's default) those get EPIPE as an error. So
// output to stdout goes through `util::out`, which ends the process with exit 0 on EPIPE, as
// ripgrep and `docker images | head` do: the reader is gone and there is nothing left to tell.
macro_rules! println {
    () => { $crate::util::out(format_args!("\n")) };
    ($($arg:tt)*) => { $crate::util::out(format_args!("{}\n", format_args!($($arg)*))) };
}
macro_rules! print {
    ($($arg:tt)*) => { $crate::util::out(format_args!($($arg)*)) };
}
// A closed stderr has nobody to tell: the message is dropped (std's would panic).
macro_rules! eprintln {
    () => { $crate::util::err(format_args!("\n")) };
    ($($arg:tt)*) => { $crate::util::err(format_args!("{}\n", format_args!($($arg)*))) };
}
macro_rules! eprint {
    ($($arg:tt)*) => { $crate::util::err(format_args!($($arg)*)) };
}

mod attach;
mod build;
mod commit;
mod compose;
mod container;
mod containers;
mod cp;
mod format;
mod images;
mod info;
mod login;
mod network;
mod progress;
mod run;
mod stats;
mod system;
mod top;
mod update;
mod util;
mod volumes;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;
use util::Failure;

#[derive(Parser)]
#[command(
    name = "kiln",
    version,
    about = "A daemonless Dockerfile image builder and container runtime"
)]
struct Cli {
    /// State directory (content store, cache, images, containers).
    #[arg(long, global = true, env = "KILN_ROOT")]
    root: Option<PathBuf>,
    /// Configuration file (TOML; default ROOT/config.toml when present).
    #[arg(long, global = true, env = "KILN_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Build an image from a Dockerfile.
    Build(build::BuildArgs),
    /// Run a command in a new container.
    Run(run::RunArgs),
    /// Create a new container (`run`'s flags) without starting it.
    Create(run::RunArgs),
    /// Attach local standard input, output, and error streams to a running container.
    Attach(attach::AttachArgs),
    /// Start created or stopped containers.
    Start(containers::StartArgs),
    /// Restart containers (stop, then start).
    Restart(containers::RestartArgs),
    /// Rename a container.
    Rename(containers::RenameArgs),
    /// Manage containers (`container ls|run|start|stop|rm|prune|…`).
    Container(container::ContainerArgs),
    /// List images.
    Images(images::ImagesArgs),
    /// Pull an image from a registry.
    Pull(images::PullArgs),
    /// Push an image to a registry.
    Push(images::RefArg),
    /// Log in to a registry (credentials are checked, then saved in the docker config).
    Login(login::LoginArgs),
    /// Log out from a registry (its saved credentials are removed).
    Logout(login::LogoutArgs),
    /// Make an image from a root filesystem tarball.
    Import(images::ImportArgs),
    /// Give an image another name.
    Tag(images::TagArgs),
    /// Remove image names.
    Rmi(images::RmiArgs),
    /// Show containers' or images' details as JSON.
    Inspect(container::InspectArgs),
    /// Show an image's history.
    History(images::HistoryArgs),
    /// Write images to a docker archive (an OCI layout with Docker's manifest.json).
    Save(images::SaveArgs),
    /// Load images from a docker archive or an OCI layout tar (file or stdin).
    Load(images::LoadArgs),
    /// Manage images (`image ls|rm|inspect|history|tag|pull|push|save|load|import|prune`).
    Image(images::ImageArgs),
    /// Manage the build cache (`builder prune`).
    Builder(system::BuilderArgs),
    /// Disk usage of the store and cleaning up (`system df`, `system prune`).
    System(system::SystemArgs),
    /// List containers.
    Ps(containers::PsArgs),
    /// Show a container's output.
    Logs(containers::LogsArgs),
    /// Stop running containers (the stop signal, then SIGKILL).
    Stop(containers::StopArgs),
    /// Send a signal to running containers.
    Kill(containers::KillArgs),
    /// Wait for containers to stop and print their exit codes.
    Wait(containers::WaitArgs),
    /// List a container's published ports.
    Port(containers::PortArgs),
    /// Display the running processes of a container.
    Top(top::TopArgs),
    /// Display a live stream of container(s) resource usage statistics.
    Stats(stats::StatsArgs),
    /// Remove containers.
    Rm(containers::RmArgs),
    /// Run a command in a running container.
    Exec(containers::ExecArgs),
    Cp(cp::CpArgs),
    Export(cp::ExportArgs),
    Diff(cp::DiffArgs),
    /// Manage volumes (`volume create|ls|inspect|rm|prune`).
    Volume(volumes::VolumeArgs),
    /// Pause all processes within containers.
    Pause(update::PauseArgs),
    /// Unpause all processes within containers.
    Unpause(update::PauseArgs),
    /// Update configuration of containers (limits, restart policy).
    Update(update::UpdateArgs),
    /// Create a new image from a container's changes.
    Commit(commit::CommitArgs),
    /// Define and run multi-container applications (Docker Compose).
    Compose(compose::ComposeArgs),
    /// Manage networks (`network create|ls|inspect|rm|prune|connect|disconnect`).
    Network(network::NetworkArgs),
    /// Show the kiln version information.
    Version(info::VersionArgs),
    /// Display system-wide information.
    Info(info::InfoArgs),
}

fn main() -> ExitCode {
    // Helper processes first: they must stay single-threaded (no tokio runtime).
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if let Some(first) = args.get(1).and_then(|a| a.to_str()) {
        if first == kiln_executor::HELPER_ARG {
            kiln_executor::helper_main(&args[1..]);
        }
        if first == kiln_network::DNS_ARG {
            // A network's name server, started by its first running container.
            return ExitCode::from(kiln_network::dns_main(&args[2..]).clamp(0, 255) as u8);
        }
        if first == kiln_runtime::SHIM_ARG {
            // A detached container's supervisor (`kiln run -d`); it runs its own runtime.
            let executor = match std::env::current_exe() {
                Ok(exe) => kiln_executor::Executor::new(vec![
                    exe.into_os_string(),
                    kiln_executor::HELPER_ARG.into(),
                ]),
                Err(e) => {
                    let message = format!("cannot find the kiln binary: {e}");
                    Failure::with_source(1, message, e).print();
                    return ExitCode::from(1);
                }
            };
            let code = kiln_runtime::shim_main(&args[2..], executor);
            return ExitCode::from(code.clamp(0, 255) as u8);
        }
    }
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    // `exec` waits for one process (its terminal relay has threads of its own): no worker
    // threads to start first (issue 13's exec latency).
    let mut rt = if matches!(cli.command, Command::Exec(_)) {
        tokio::runtime::Builder::new_current_thread()
    } else {
        tokio::runtime::Builder::new_multi_thread()
    };
    let rt = match rt.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            let message = format!("cannot start the async runtime: {e}");
            Failure::with_source(1, message, e).print();
            return ExitCode::from(1);
        }
    };
    let result = rt.block_on(run(cli));
    match result {
        Ok(code) => ExitCode::from(code),
        Err(f) => {
            f.print();
            ExitCode::from(f.code)
        }
    }
}

async fn run(cli: Cli) -> Result<u8, Failure> {
    // Credentials only: the store is not opened.
    match cli.command {
        Command::Login(a) => {
            let registry = util::registry_only(cli.root, cli.config)?;
            return login::login(&registry, a).await;
        }
        Command::Logout(a) => return login::logout(a),
        Command::Compose(a) => return compose::compose(a, cli.root, cli.config).await,
        Command::Version(a) => return Ok(info::version(&a)),
        _ => {}
    }
    // `exec` reads no image metadata: its start skips opening the database (issue 13).
    let defer_db = matches!(cli.command, Command::Exec(_));
    let env = util::Env::open(cli.root, cli.config, defer_db)?;
    match cli.command {
        Command::Login(_) | Command::Logout(_) | Command::Compose(_) | Command::Version(_) => {
            unreachable!("handled above")
        }
        Command::Build(a) => build::build(&env, a).await,
        Command::Run(a) => run::run(&env, a).await,
        Command::Create(a) => run::create(&env, a).await,
        Command::Attach(a) => attach::attach(&env, a).await,
        Command::Start(a) => containers::start(&env, a).await,
        Command::Restart(a) => containers::restart(&env, a),
        Command::Rename(a) => containers::rename(&env, a),
        Command::Container(a) => container::container(&env, a).await,
        Command::Images(a) => images::images(&env, a),
        Command::Pull(a) => images::pull(&env, a).await,
        Command::Push(a) => images::push(&env, a).await,
        Command::Import(a) => images::import(&env, a),
        Command::Tag(a) => images::tag(&env, a),
        Command::Rmi(a) => images::rmi(&env, a),
        Command::Inspect(a) => container::inspect(&env, &a),
        Command::History(a) => images::history(&env, a),
        Command::Save(a) => images::save(&env, a),
        Command::Load(a) => images::load(&env, a),
        Command::Image(a) => images::image(&env, a).await,
        Command::Builder(a) => system::builder(&env, a),
        Command::System(a) => system::system(&env, a),
        Command::Ps(a) => containers::ps(&env, a),
        Command::Logs(a) => containers::logs(&env, a),
        Command::Stop(a) => containers::stop(&env, a),
        Command::Kill(a) => containers::kill(&env, a),
        Command::Wait(a) => containers::wait(&env, a),
        Command::Port(a) => containers::port(&env, a),
        Command::Top(a) => top::top(&env, a),
        Command::Stats(a) => stats::stats(&env, a),
        Command::Rm(a) => containers::rm(&env, a),
        Command::Exec(a) => containers::exec(&env, a).await,
        Command::Cp(a) => cp::cp(&env, a),
        Command::Export(a) => cp::export(&env, a),
        Command::Diff(a) => cp::diff(&env, a),
        Command::Volume(a) => volumes::volume(&env, a),
        Command::Pause(a) => Ok(update::pause(&env, &a)),
        Command::Unpause(a) => Ok(update::unpause(&env, &a)),
        Command::Update(a) => update::update(&env, &a),
        Command::Commit(a) => commit::commit(&env, &a),
        Command::Network(a) => network::network(&env, a),
        Command::Info(a) => info::info(&env, &a),
    }
}
