//! `kiln-compose`: the Compose Specification for `kiln compose`.
//!
//! - [`load`](load::load): finds the files (`compose.yaml` … in the working directory and its
//!   parents, `-f`, `COMPOSE_FILE`), reads the environment (`.env`, `--env-file`), parses each
//!   file ([`yaml`]), interpolates it ([`interp`]), merges the files by the spec's rules
//!   ([`merge`]), reads the result into the typed [`model`] (unknown keys are warnings naming
//!   file and line, `x-` keys are ignored, a wrong type is an error with file, line and key
//!   path), names the project, applies profiles, and normalises it as `docker compose config`
//!   prints it ([`emit`]).
//! - [`plan`](plan::plan): the networks, volumes, builds and containers `up` makes, named and
//!   labelled as Docker Compose does, in `depends_on` order. Pure data.
//!
//! The YAML crate: `yaml-rust2` (maintained, pure Rust, YAML 1.2, its event parser gives every
//! node a line). serde_yaml is unmaintained and its successors either lack positions or are
//! not well kept; positions are what the errors and warnings need, so the loader builds its own
//! positioned tree from the events ([`yaml::Node`]), and serde reads the model from that tree
//! (as JSON) with `serde_path_to_error` (the key path of a type error) and `serde_ignored` (the
//! keys the model does not know); the path leads back to the node, and so to the line.
//!
//! Not yet: `extends`, `include`, `env_file`'s `format: raw`.
//! Unknown keys inside the long syntax of
//! `ports`, `volumes`, `secrets`/`configs`, `env_file` and `depends_on` entries are errors
//! (those entries are read whole), not warnings. Octal modes (`mode: 0440`) read as YAML 1.2
//! reads them (decimal 440), where Compose's YAML 1.1 parser reads octal.

mod de;
pub mod emit;
pub mod envfile;
mod error;
pub mod interp;
pub mod load;
pub mod merge;
pub mod model;
pub mod plan;
pub mod short;
pub mod up;
pub mod yaml;

pub use error::{ComposeError, EXIT_FILE_NOT_FOUND, EXIT_PARSE_FAILURE};
pub use load::{load, LoadOptions, Loaded, Warning};
pub use model::Project;
pub use plan::{plan, Plan};

/// The project as `docker compose config` prints it (YAML).
pub fn config_yaml(project: &Project) -> String {
    emit::to_yaml(&serde_json::to_value(project).expect("the model serialises"))
}

/// The project as `docker compose config --format json` prints it.
pub fn config_json(project: &Project) -> String {
    serde_json::to_string_pretty(project).expect("the model serialises")
}
