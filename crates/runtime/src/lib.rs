//! kiln's container runtime: runs containers from images in the local store, on the same
//! executor as build steps.
//!
//! A container lives in `ROOT/containers/<id>/` (`upper/`, `work/` for its overlay, and
//! `config.json`); `--rm` removes that directory when the process exits. Which process runs
//! follows `docker run`: `--entrypoint` replaces the image's entrypoint and drops its CMD,
//! arguments after the image replace CMD, `-e` overrides the image's Env by key.
#![deny(missing_docs)]

use kiln_cache::Store;
use kiln_executor::{BindMount, Executor, Network, Output, RootFs, RunSpec, SandboxOptions};
use kiln_oci::Layer;
use serde_json::Value;
use std::path::PathBuf;

/// Errors from the runtime.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Neither the image nor the command line names a command.
    #[error("no command specified")]
    NoCommand,
    /// The store failed.
    #[error(transparent)]
    Store(#[from] kiln_cache::Error),
    /// The sandbox failed.
    #[error(transparent)]
    Executor(#[from] kiln_executor::Error),
    /// Container state could not be written.
    #[error("{path}: {source}")]
    Io {
        /// Path.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
}

/// Result alias.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// `kiln run` options.
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    /// `--name`.
    pub name: Option<String>,
    /// `--rm`.
    pub remove: bool,
    /// `-e K=V` (or `-e K`, taken from the caller's environment by the CLI).
    pub env: Vec<String>,
    /// `-w`.
    pub workdir: Option<String>,
    /// `-u`.
    pub user: Option<String>,
    /// `--entrypoint` (empty string clears it).
    pub entrypoint: Option<String>,
    /// Arguments after the image.
    pub args: Vec<String>,
    /// `--network`.
    pub network: Network,
    /// `-v`.
    pub mounts: Vec<BindMount>,
    /// `--hostname` (default: the first 12 characters of the container id).
    pub hostname: Option<String>,
    /// `--tmpfs`, `--memory`, `--cpus`, `--pids-limit`, `--privileged`
    /// (`create_etc_files` is always set: containers get /etc/hosts, /etc/hostname and
    /// /etc/resolv.conf).
    pub extra: SandboxOptions,
}

/// The process a container runs: (argv, env, cwd, user), from the image config and options.
pub fn process(
    config: &Value,
    opts: &RunOptions,
) -> Result<(Vec<String>, Vec<String>, String, String)> {
    let c = &config["config"];
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    let (entrypoint, image_cmd) = match &opts.entrypoint {
        Some(e) if e.is_empty() => (vec![], vec![]),
        Some(e) => (vec![e.clone()], vec![]),
        None => (strings(&c["Entrypoint"]), strings(&c["Cmd"])),
    };
    let cmd = if opts.args.is_empty() {
        image_cmd
    } else {
        opts.args.clone()
    };
    let argv: Vec<String> = entrypoint.into_iter().chain(cmd).collect();
    if argv.is_empty() {
        return Err(Error::NoCommand);
    }
    let mut env = strings(&c["Env"]);
    for e in &opts.env {
        let key = e.split('=').next().unwrap_or(e);
        env.retain(|x| x.split('=').next() != Some(key));
        env.push(e.clone());
    }
    let cwd = opts
        .workdir
        .clone()
        .or_else(|| {
            c["WorkingDir"]
                .as_str()
                .filter(|s| !s.is_empty())
                .map(str::to_string)
        })
        .unwrap_or_else(|| "/".into());
    let user = opts
        .user
        .clone()
        .or_else(|| c["User"].as_str().map(str::to_string))
        .unwrap_or_default();
    Ok((argv, env, cwd, user))
}

/// Runs a container from an image (its `layers` and `config`) in the foreground, with the
/// caller's stdio, and returns its exit code.
pub async fn run(
    store: &Store,
    executor: &Executor,
    layers: &[Layer],
    config: &Value,
    opts: &RunOptions,
) -> Result<i32> {
    let (args, env, cwd, user) = process(config, opts)?;
    let mut lowers = Vec::with_capacity(layers.len());
    for l in layers.iter().rev() {
        lowers.push(store.snapshot(l)?);
    }
    let id = hex::encode(rand::random::<[u8; 32]>());
    let dir = store.root().join("containers").join(&id);
    let io = |path: &PathBuf| {
        let path = path.clone();
        move |source| Error::Io { path, source }
    };
    let (upper, work) = (dir.join("upper"), dir.join("work"));
    std::fs::create_dir_all(&upper).map_err(io(&upper))?;
    std::fs::create_dir_all(&work).map_err(io(&work))?;
    let state = serde_json::json!({
        "id": id, "name": opts.name, "args": args, "image_config": config,
    });
    std::fs::write(dir.join("config.json"), state.to_string()).map_err(io(&dir))?;
    let spec = RunSpec {
        rootfs: RootFs {
            lowers,
            upper,
            work,
        },
        args,
        env,
        cwd,
        user,
        hostname: opts
            .hostname
            .clone()
            .unwrap_or_else(|| id[..12].to_string()),
        network: opts.network,
        mounts: opts.mounts.clone(),
        extra: SandboxOptions {
            create_etc_files: true,
            ..opts.extra.clone()
        },
    };
    let result = executor.run_detailed(&spec, Output::Inherit).await;
    if opts.remove {
        let _ = std::fs::remove_dir_all(&dir);
    }
    let result = result?;
    if result.oom_killed {
        eprintln!("kiln: the container was killed: out of memory (--memory limit)");
    }
    Ok(result.exit_code)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cfg() -> Value {
        json!({"config": {"Entrypoint": ["/bin/ep"], "Cmd": ["default"], "Env": ["PATH=/bin", "A=1"], "WorkingDir": "/app"}})
    }

    #[test]
    fn docker_run_command_rules() {
        let (a, env, cwd, _) = process(&cfg(), &RunOptions::default()).unwrap();
        assert_eq!(a, vec!["/bin/ep", "default"]);
        assert_eq!(cwd, "/app");
        assert_eq!(env, vec!["PATH=/bin", "A=1"]);
        let o = RunOptions {
            args: vec!["x".into()],
            env: vec!["A=2".into()],
            ..Default::default()
        };
        let (a, env, _, _) = process(&cfg(), &o).unwrap();
        assert_eq!(a, vec!["/bin/ep", "x"]);
        assert_eq!(env, vec!["PATH=/bin", "A=2"]);
        let o = RunOptions {
            entrypoint: Some("sh".into()),
            ..Default::default()
        };
        assert_eq!(
            process(&cfg(), &o).unwrap().0,
            vec!["sh"],
            "--entrypoint drops the image CMD"
        );
        let o = RunOptions {
            entrypoint: Some(String::new()),
            ..Default::default()
        };
        assert!(matches!(process(&cfg(), &o), Err(Error::NoCommand)));
    }
}
