//! `kiln compose`, with Docker Compose v2's command line: the project flags (`-f`, `-p`,
//! `--project-directory`, `--env-file`, `--profile`), `config` and `version`. Loading,
//! interpolation, merging and normalisation are `kiln-compose`'s; this module resolves flags
//! and the environment into its options and prints. It needs no store: `main` calls it before
//! opening one.

use crate::util::Failure;
use clap::{Args, Subcommand};

mod project;
use std::path::PathBuf;

#[derive(Args)]
pub(crate) struct ComposeArgs {
    /// Compose configuration file (`-` for standard input); repeatable (later files merge
    /// onto earlier ones).
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    file: Vec<PathBuf>,
    /// Project name (default: `COMPOSE_PROJECT_NAME`, the `name:` key, the directory's name).
    #[arg(short = 'p', long = "project-name", value_name = "NAME")]
    project_name: Option<String>,
    /// Working directory of the project (default: the first file's directory).
    #[arg(long, value_name = "DIR")]
    project_directory: Option<PathBuf>,
    /// Alternate environment file (default: `.env` in the project directory); repeatable.
    #[arg(long, value_name = "FILE")]
    env_file: Vec<PathBuf>,
    /// Profile to enable; repeatable (default: `COMPOSE_PROFILES`).
    #[arg(long, value_name = "PROFILE")]
    profile: Vec<String>,
    #[command(subcommand)]
    cmd: ComposeCmd,
}

#[derive(Subcommand)]
enum ComposeCmd {
    /// Parse, resolve and render the compose file in canonical format.
    Config(ConfigArgs),
    /// Show the Compose version information.
    Version(VersionArgs),
    /// Create and start containers.
    Up(project::UpArgs),
    /// Stop and remove containers, networks.
    Down(project::DownArgs),
    /// List containers.
    Ps(project::PsArgs),
    /// View output from containers.
    Logs(project::LogsArgs),
    /// Execute a command in a running container.
    Exec(project::ExecArgs),
}

#[derive(Args)]
struct ConfigArgs {
    /// Print the service names, one per line.
    #[arg(long)]
    services: bool,
    /// Print the volume names, one per line.
    #[arg(long)]
    volumes: bool,
    /// Only validate the configuration, don't print anything.
    #[arg(short, long)]
    quiet: bool,
    /// Format the output.
    #[arg(long, default_value = "yaml", value_parser = ["yaml", "json"])]
    format: String,
    /// Services to show (and enable, whatever their profiles).
    service: Vec<String>,
}

#[derive(Args)]
struct VersionArgs {
    /// Show only the version number.
    #[arg(long)]
    short: bool,
    /// Format the output.
    #[arg(short, long, default_value = "pretty", value_parser = ["pretty", "json"])]
    format: String,
}

/// A load error, with Docker Compose's exit code for it (14 file not found, 15 parse failure).
fn load_failure(e: kiln_compose::ComposeError) -> Failure {
    Failure::wrap(e.exit_code(), e)
}

fn load(a: &ComposeArgs, services: &[String]) -> Result<kiln_compose::Loaded, Failure> {
    let cwd =
        std::env::current_dir().map_err(|e| load_failure(kiln_compose::ComposeError::Cwd(e)))?;
    let stdin = if a.file.iter().any(|f| f.as_os_str() == "-") {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut text).map_err(|source| {
            load_failure(kiln_compose::ComposeError::Read {
                path: PathBuf::from("-"),
                source,
            })
        })?;
        Some(text)
    } else {
        None
    };
    let opts = kiln_compose::LoadOptions {
        files: a.file.clone(),
        project_name: a.project_name.clone(),
        project_directory: a.project_directory.clone(),
        env_files: a.env_file.clone(),
        profiles: a.profile.clone(),
        services: services.to_vec(),
        cwd,
        environ: std::env::vars().collect(),
        stdin,
    };
    let loaded = kiln_compose::load(&opts).map_err(load_failure)?;
    for w in &loaded.warnings {
        eprintln!("warning: {w}");
    }
    Ok(loaded)
}

/// `kiln compose`; `root` and `config` open the store for the commands that need it.
pub(crate) async fn compose(
    a: ComposeArgs,
    root: Option<PathBuf>,
    config: Option<PathBuf>,
) -> Result<u8, Failure> {
    let open = || crate::util::Env::open(root.clone(), config.clone(), false);
    match &a.cmd {
        ComposeCmd::Up(u) => project::up(&open()?, &load(&a, &u.services)?, u).await,
        ComposeCmd::Down(d) => project::down(&open()?, &load(&a, &[])?, d),
        ComposeCmd::Ps(p) => project::ps(&open()?, &load(&a, &[])?, p),
        ComposeCmd::Logs(l) => project::logs(&open()?, &load(&a, &[])?, l),
        ComposeCmd::Exec(e) => project::exec(&open()?, &load(&a, &[])?, e).await,
        ComposeCmd::Version(v) => {
            let version = env!("CARGO_PKG_VERSION");
            if v.short {
                println!("{version}");
            } else if v.format == "json" {
                println!(
                    "{}",
                    serde_json::json!({ "version": format!("v{version}") })
                );
            } else {
                println!("kiln compose version v{version}");
            }
            Ok(0)
        }
        ComposeCmd::Config(c) => {
            let mut loaded = load(&a, &c.service)?;
            let project = &mut loaded.project;
            if !c.service.is_empty() {
                // The named services and what they depend on.
                let keep =
                    kiln_compose::plan::start_order(project, &c.service).map_err(load_failure)?;
                project.services.retain(|n, _| keep.contains(n));
            }
            if c.quiet {
                return Ok(0);
            }
            if c.services {
                for name in project.services.keys() {
                    println!("{name}");
                }
                return Ok(0);
            }
            if c.volumes {
                for name in project.volumes.keys() {
                    println!("{name}");
                }
                return Ok(0);
            }
            if c.format == "json" {
                println!("{}", kiln_compose::config_json(project));
            } else {
                print!("{}", kiln_compose::config_yaml(project));
            }
            Ok(0)
        }
    }
}
