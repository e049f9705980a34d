//! `kiln`: a daemonless Dockerfile image builder and small container runtime.
//!
//! This crate only glues: it parses flags (named as in `docker buildx build` / `docker
//! run`, see shared/CLI.md), opens the store under `--root`, wires the frontend, the solver
//! and its worker, the exporters and the registry client together, renders progress and
//! errors, and maps failures to exit codes (0 ok, 1 build failure, 2 usage or Dockerfile
//! error).

mod build;
mod images;
mod progress;
mod system;
mod util;

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
    Run(images::RunArgs),
    /// List images.
    Images(images::ImagesArgs),
    /// Pull an image from a registry.
    Pull(images::RefArg),
    /// Push an image to a registry.
    Push(images::RefArg),
    /// Make an image from a root filesystem tarball.
    Import(images::ImportArgs),
    /// Give an image another name.
    Tag(images::TagArgs),
    /// Remove image names.
    Rmi(images::RmiArgs),
    /// Show an image's details as JSON.
    Inspect(images::RefArg),
    /// Show an image's history.
    History(images::RefArg),
    /// Write images to a docker archive (an OCI layout with Docker's manifest.json).
    Save(images::SaveArgs),
    /// Manage the build cache (`builder prune`).
    Builder(system::BuilderArgs),
    /// Disk usage of the store (`system df`).
    System(system::SystemArgs),
}

fn main() -> ExitCode {
    // Helper processes first: they must stay single-threaded (no tokio runtime).
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if let Some(first) = args.get(1).and_then(|a| a.to_str()) {
        if first == kiln_executor::HELPER_ARG {
            kiln_executor::helper_main(&args[1..]);
        }
        if first == kiln_worker::fileop::HELPER_ARG {
            kiln_worker::fileop::helper_main(&args[1..]);
        }
    }
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
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
    let env = util::Env::open(cli.root, cli.config)?;
    match cli.command {
        Command::Build(a) => build::build(&env, a).await,
        Command::Run(a) => images::run(&env, a).await,
        Command::Images(a) => images::images(&env, a),
        Command::Pull(a) => images::pull(&env, a).await,
        Command::Push(a) => images::push(&env, a).await,
        Command::Import(a) => images::import(&env, a),
        Command::Tag(a) => images::tag(&env, a),
        Command::Rmi(a) => images::rmi(&env, a),
        Command::Inspect(a) => images::inspect(&env, a),
        Command::History(a) => images::history(&env, a),
        Command::Save(a) => images::save(&env, a),
        Command::Builder(a) => system::builder(&env, a),
        Command::System(a) => system::system(&env, a),
    }
}
