//! The errors of loading a compose project. Each names the file and line it comes from when
//! there is one, so the CLI prints them as they are.

use crate::yaml::Pos;
use std::path::PathBuf;

/// Docker Compose's exit codes for a project that cannot be loaded (its metrics categories):
/// a file not found, or a file that does not parse or validate.
pub const EXIT_FILE_NOT_FOUND: u8 = 14;
pub const EXIT_PARSE_FAILURE: u8 = 15;

#[derive(Debug, thiserror::Error)]
pub enum ComposeError {
    /// No compose file in the directory or its parents, and none given.
    #[error("no configuration file provided: not found")]
    NoConfigFile,
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read the current directory: {0}")]
    Cwd(#[source] std::io::Error),
    #[error("{pos}: {message}")]
    Yaml { pos: Pos, message: String },
    /// A value of the wrong type or shape; `path` is the key path (`services.web.ports[0]`).
    #[error("{pos}: {path}: {message}")]
    Type {
        pos: Pos,
        path: String,
        message: String,
    },
    #[error("{pos}: invalid interpolation format for {path}: {value:?}; you may need to escape any $ with another $")]
    InvalidInterpolation {
        pos: Pos,
        path: String,
        value: String,
    },
    /// `${VAR:?message}` with VAR unset.
    #[error("{pos}: required variable {var} is missing a value: {message}")]
    RequiredVariable {
        pos: Pos,
        var: String,
        message: String,
    },
    #[error("{file}:{line}: {message}")]
    EnvFile {
        file: String,
        line: usize,
        message: String,
    },
    #[error("env file {} not found", path.display())]
    EnvFileNotFound { path: PathBuf },
    #[error("invalid project name {0:?}: must consist only of lowercase alphanumeric characters, hyphens, and underscores as well as start with a letter or number")]
    InvalidProjectName(String),
    #[error("project name must not be empty")]
    EmptyProjectName,
    #[error(
        "service {service:?} depends on undefined service {dependency:?}: invalid compose project"
    )]
    UndefinedService { service: String, dependency: String },
    #[error("service {service:?} refers to undefined {kind} {name}: invalid compose project")]
    UndefinedResource {
        service: String,
        kind: &'static str,
        name: String,
    },
    #[error("service {dependency:?} is required by {service:?} but is disabled. Can be enabled by profiles {profiles:?}")]
    DisabledDependency {
        service: String,
        dependency: String,
        profiles: Vec<String>,
    },
    #[error("services.deploy.replicas: can't set container_name and {0} as container name must be unique: invalid compose project")]
    ContainerNameScale(String),
    #[error("services.{0}: can't set distinct values on 'scale' and 'deploy.replicas': invalid compose project")]
    ScaleAndReplicas(String),
    #[error("services.{service}.container_name: invalid container name {name:?}, only [a-zA-Z0-9][a-zA-Z0-9_.-]+ are allowed")]
    InvalidContainerName { service: String, name: String },
    #[error("service {service:?} asks for {replicas} containers, more than kiln runs for one service ({max})")]
    TooManyReplicas {
        service: String,
        replicas: u64,
        max: u64,
    },
    #[error("no such service: {0}")]
    NoSuchService(String),
    #[error("dependency cycle detected: {}", .0.join(" -> "))]
    Cycle(Vec<String>),
    #[error(
        "service {0:?} has neither an image nor a build context specified: invalid compose project"
    )]
    NoImage(String),
}

impl ComposeError {
    /// The exit code `docker compose` ends with for this error: 14 for a file not found, 15
    /// for a project that does not parse or validate, 1 for the rest.
    pub fn exit_code(&self) -> u8 {
        match self {
            // A file that is there but not text does not parse.
            ComposeError::Read { source, .. }
                if source.kind() == std::io::ErrorKind::InvalidData =>
            {
                EXIT_PARSE_FAILURE
            }
            ComposeError::NoConfigFile
            | ComposeError::Read { .. }
            | ComposeError::EnvFileNotFound { .. } => EXIT_FILE_NOT_FOUND,
            ComposeError::Cwd(_)
            | ComposeError::NoSuchService(_)
            | ComposeError::Cycle(_)
            | ComposeError::TooManyReplicas { .. } => 1,
            _ => EXIT_PARSE_FAILURE,
        }
    }
}
