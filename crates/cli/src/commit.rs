//! `kiln commit`: glue to the runtime's `commit.rs`. The `-c` changes are applied by the
//! frontend (as for `kiln import`) to the container's config; the image ID is printed.

use crate::containers::{failure, find};
use crate::util::{now_rfc3339, Env, Failure};
use clap::{ArgAction, Args};
use kiln_cache::image::UNTAGGED;
use kiln_oci::spec::ImageConfiguration;
use kiln_oci::Reference;
use kiln_runtime::CommitOptions;

#[derive(Args)]
pub(crate) struct CommitArgs {
    /// Author (e.g. "John Hannibal Smith <hannibal@a-team.com>").
    #[arg(short, long)]
    author: Option<String>,
    /// Commit message.
    #[arg(short, long)]
    message: Option<String>,
    /// Apply a Dockerfile instruction to the image (CMD, ENTRYPOINT, ENV, EXPOSE, LABEL,
    /// ONBUILD, USER, VOLUME, WORKDIR, STOPSIGNAL); repeatable.
    #[arg(short = 'c', long = "change")]
    changes: Vec<String>,
    /// Pause the container during commit (`--pause=false` to not).
    #[arg(short, long, action = ArgAction::Set, num_args = 0..=1, require_equals = true,
          default_value_t = true, default_missing_value = "true")]
    pause: bool,
    /// The container (id, id prefix or name).
    container: String,
    /// The image's name.
    #[arg(value_name = "REPOSITORY[:TAG]")]
    reference: Option<String>,
}

pub(crate) fn commit(env: &Env, a: &CommitArgs) -> Result<u8, Failure> {
    let reference = a
        .reference
        .as_deref()
        .map(Reference::parse)
        .transpose()
        .map_err(|e| Failure::usage(e.to_string()))?;
    let mut c = find(env, &a.container)?;
    let mut config = c.commit_config();
    if !a.changes.is_empty() {
        let bad = |e: String| Failure::usage(format!("invalid --change: {e}"));
        let mut typed: ImageConfiguration =
            serde_json::from_value(config.clone()).map_err(|e| bad(e.to_string()))?;
        kiln_frontend::apply_changes(&mut typed, &a.changes).map_err(|e| bad(e.message))?;
        let changed = serde_json::to_value(&typed).map_err(|e| bad(e.to_string()))?;
        config = kiln_runtime::keep_docker_fields(&config, changed);
    }
    let opts = CommitOptions {
        author: a.author.clone(),
        message: a.message.clone(),
        pause: a.pause,
        created: now_rfc3339(),
    };
    let image = c.commit(&env.store, config, &opts).map_err(failure)?;
    let name = reference.map_or_else(
        || format!("{UNTAGGED}{}", image.config_digest),
        |r| r.to_string(),
    );
    env.store.set_image(&name, &image.manifest_digest)?;
    println!("{}", image.config_digest);
    Ok(0)
}
