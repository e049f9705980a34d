//! Loading a project: which files (discovery, `-f`, `COMPOSE_FILE`), which environment
//! (`.env`, `--env-file`, the process's), interpolation and merging of the files, the typed
//! model with warnings for keys it does not know, the project name, profiles, and the
//! normalisation `docker compose config` shows (names, absolute paths, the default network).

use crate::error::ComposeError;
use crate::interp::interpolate_tree;
use crate::merge::{canonical_service, merge_files};
use crate::model::{Network, Project};
use crate::yaml::{self, path_string, Node, PathSeg, Pos, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The file names looked for in the working directory and its parents, preferred first.
pub const DEFAULT_FILES: [&str; 4] = [
    "compose.yaml",
    "compose.yml",
    "docker-compose.yaml",
    "docker-compose.yml",
];
const OVERRIDE_FILES: [&str; 4] = [
    "compose.override.yaml",
    "compose.override.yml",
    "docker-compose.override.yaml",
    "docker-compose.override.yml",
];

/// What the command line and the environment say about the project to load.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// `-f` files, in order (empty: `COMPOSE_FILE`, else discovery).
    pub files: Vec<PathBuf>,
    /// `-p`.
    pub project_name: Option<String>,
    /// `--project-directory` (default: the first file's directory).
    pub project_directory: Option<PathBuf>,
    /// `--env-file` (default: `.env` in the project directory, when there is one).
    pub env_files: Vec<PathBuf>,
    /// `--profile` (empty: `COMPOSE_PROFILES`).
    pub profiles: Vec<String>,
    /// Services named on the command line: enabled whatever their profiles.
    pub services: Vec<String>,
    /// Where discovery starts and relative `-f` paths are resolved.
    pub cwd: PathBuf,
    /// The process environment (passed in so tests need not change the real one).
    pub environ: BTreeMap<String, String>,
    /// The text of `-f -` (the caller reads its standard input when a file is `-`).
    pub stdin: Option<String>,
}

/// Something the user should know that does not stop the load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    pub pos: Option<Pos>,
    pub message: String,
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.pos {
            Some(p) => write!(f, "{p}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

/// A loaded project and what came with it.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub project: Project,
    /// The project directory (relative paths in the files are resolved against it).
    pub working_dir: PathBuf,
    /// The files merged, in order (absolute).
    pub config_files: Vec<PathBuf>,
    /// The variables interpolation saw (`.env` under the process environment).
    pub environment: BTreeMap<String, String>,
    pub warnings: Vec<Warning>,
}

/// Normalises a directory name into a project name as Compose does: lower case, only
/// `a-z0-9_-`, starting with a letter or digit.
pub fn normalize_project_name(s: &str) -> String {
    let lowered: String = s
        .to_lowercase()
        .chars()
        .filter(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_' || *c == '-')
        .collect();
    lowered.trim_start_matches(['_', '-']).to_string()
}

fn check_project_name(s: &str) -> Result<String, ComposeError> {
    if s.is_empty() {
        return Err(ComposeError::EmptyProjectName);
    }
    if normalize_project_name(s) != s {
        return Err(ComposeError::InvalidProjectName(s.to_string()));
    }
    Ok(s.to_string())
}

fn absolute(base: &Path, p: &Path) -> PathBuf {
    let joined = if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    };
    // Lexically: `.` and `..` removed, symlinks left alone (as Compose prints paths).
    let mut out = PathBuf::new();
    for c in joined.components() {
        match c {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// Finds the compose files to load when no `-f` and no `COMPOSE_FILE` name them.
fn discover(cwd: &Path, warnings: &mut Vec<Warning>) -> Result<Vec<PathBuf>, ComposeError> {
    let mut dir = Some(cwd);
    while let Some(d) = dir {
        let found: Vec<PathBuf> = DEFAULT_FILES
            .iter()
            .map(|n| d.join(n))
            .filter(|p| p.is_file())
            .collect();
        if let Some(first) = found.first() {
            if found.len() > 1 {
                let names: Vec<String> = found.iter().map(|p| p.display().to_string()).collect();
                warnings.push(Warning {
                    pos: None,
                    message: format!(
                        "Found multiple config files with supported names: {}\nUsing {}",
                        names.join(", "),
                        first.display()
                    ),
                });
            }
            let mut files = vec![first.clone()];
            if let Some(o) = OVERRIDE_FILES
                .iter()
                .map(|n| d.join(n))
                .find(|p| p.is_file())
            {
                files.push(o);
            }
            return Ok(files);
        }
        dir = d.parent();
    }
    Err(ComposeError::NoConfigFile)
}

fn read(path: &Path) -> Result<String, ComposeError> {
    std::fs::read_to_string(path).map_err(|source| ComposeError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// Loads, interpolates, merges, types and normalises a project.
pub fn load(opts: &LoadOptions) -> Result<Loaded, ComposeError> {
    let mut warnings = Vec::new();
    let files: Vec<PathBuf> = if !opts.files.is_empty() {
        opts.files
            .iter()
            .map(|f| {
                if f.as_os_str() == "-" {
                    f.clone()
                } else {
                    absolute(&opts.cwd, f)
                }
            })
            .collect()
    } else if let Some(list) = opts.environ.get("COMPOSE_FILE").filter(|s| !s.is_empty()) {
        let sep = opts
            .environ
            .get("COMPOSE_PATH_SEPARATOR")
            .and_then(|s| s.chars().next())
            .unwrap_or(':');
        list.split(sep)
            .filter(|s| !s.is_empty())
            .map(|f| absolute(&opts.cwd, Path::new(f)))
            .collect()
    } else {
        discover(&opts.cwd, &mut warnings)?
    };
    if files.is_empty() {
        // `COMPOSE_FILE=:` names none.
        return Err(ComposeError::NoConfigFile);
    }
    let working_dir = match &opts.project_directory {
        Some(d) => absolute(&opts.cwd, d),
        // `-f -`: the current directory, as Compose takes it.
        None if files[0].as_os_str() == "-" => opts.cwd.clone(),
        None => files[0]
            .parent()
            .map_or_else(|| opts.cwd.clone(), Path::to_path_buf),
    };

    // The environment: `.env` (or --env-file) under the process's own variables.
    let os_lookup = |n: &str| opts.environ.get(n).cloned();
    let mut environment = BTreeMap::new();
    let env_files: Vec<(PathBuf, bool)> = if opts.env_files.is_empty() {
        vec![(working_dir.join(".env"), false)]
    } else {
        opts.env_files
            .iter()
            .map(|f| (absolute(&opts.cwd, f), true))
            .collect()
    };
    for (path, required) in env_files {
        if !path.is_file() {
            if required {
                return Err(ComposeError::EnvFileNotFound { path });
            }
            continue;
        }
        let vars = crate::envfile::parse(&read(&path)?, &path.display().to_string(), &os_lookup)?;
        environment.extend(vars);
    }
    environment.extend(opts.environ.clone());
    let lookup = |n: &str| environment.get(n).cloned();

    let mut merged: Option<Node> = None;
    let mut unset = Vec::new();
    for file in &files {
        let name: Arc<str> = Arc::from(file.display().to_string());
        let text = if file.as_os_str() == "-" {
            opts.stdin.clone().unwrap_or_default()
        } else {
            read(file)?
        };
        let mut node = yaml::parse(&text, &name)?;
        if !matches!(node.value, Value::Map(_)) {
            return Err(ComposeError::Type {
                pos: node.pos.clone(),
                path: "(top level)".into(),
                message: "expected a mapping".into(),
            });
        }
        interpolate_tree(&mut node, &mut Vec::new(), &lookup, &mut unset)?;
        if let Value::Map(top) = &mut node.value {
            for (k, v) in top.iter_mut() {
                if k == "services" {
                    if let Value::Map(services) = &mut v.value {
                        for (_, s) in services.iter_mut() {
                            canonical_service(s);
                        }
                    }
                }
            }
        }
        merged = Some(match merged {
            None => node,
            Some(base) => merge_files(base, node),
        });
    }
    let tree = merged.expect("at least one file");
    for var in unset {
        warnings.push(Warning {
            pos: None,
            message: format!("The \"{var}\" variable is not set. Defaulting to a blank string."),
        });
    }

    let mut project = typed(&tree, &mut warnings)?;
    if project.version.is_some() {
        let pos = tree.get("version").map(|n| n.pos.clone());
        warnings.push(Warning {
            pos,
            message: "the attribute `version` is obsolete, it will be ignored, please remove it to avoid potential confusion".into(),
        });
    }

    project.name = if let Some(p) = &opts.project_name {
        check_project_name(p)?
    } else if let Some(p) = environment
        .get("COMPOSE_PROJECT_NAME")
        .filter(|s| !s.is_empty())
    {
        check_project_name(p)?
    } else if !project.name.is_empty() {
        check_project_name(&project.name)?
    } else {
        let dir = working_dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let name = normalize_project_name(&dir);
        if name.is_empty() {
            return Err(ComposeError::EmptyProjectName);
        }
        name
    };

    apply_profiles(&mut project, opts, &environment, &mut warnings)?;
    let mut loaded = Loaded {
        project,
        working_dir,
        config_files: files,
        environment,
        warnings,
    };
    normalise(&mut loaded)?;
    Ok(loaded)
}

fn to_segments(path: &serde_path_to_error::Path) -> Vec<PathSeg> {
    path.iter()
        .filter_map(|s| match s {
            serde_path_to_error::Segment::Map { key } => Some(PathSeg::Key(key.clone())),
            serde_path_to_error::Segment::Seq { index } => Some(PathSeg::Index(*index)),
            serde_path_to_error::Segment::Enum { .. } | serde_path_to_error::Segment::Unknown => {
                None
            }
        })
        .collect()
}

fn ignored_segments(path: &serde_ignored::Path<'_>, out: &mut Vec<PathSeg>) {
    match path {
        serde_ignored::Path::Root => {}
        serde_ignored::Path::Seq { parent, index } => {
            ignored_segments(parent, out);
            out.push(PathSeg::Index(*index));
        }
        serde_ignored::Path::Map { parent, key } => {
            ignored_segments(parent, out);
            out.push(PathSeg::Key(key.clone()));
        }
        serde_ignored::Path::Some { parent }
        | serde_ignored::Path::NewtypeStruct { parent }
        | serde_ignored::Path::NewtypeVariant { parent } => ignored_segments(parent, out),
    }
}

/// The merged tree as the typed model: wrong types are errors naming file, line and key path;
/// keys the model does not know are warnings (`x-` extensions are silent).
fn typed(tree: &Node, warnings: &mut Vec<Warning>) -> Result<Project, ComposeError> {
    let json = tree.to_json();
    let mut unknown: Vec<Vec<PathSeg>> = Vec::new();
    let mut track = serde_path_to_error::Track::new();
    let result = {
        let de = serde_path_to_error::Deserializer::new(&json, &mut track);
        let mut on_ignored = |p: serde_ignored::Path<'_>| {
            let mut segs = Vec::new();
            ignored_segments(&p, &mut segs);
            unknown.push(segs);
        };
        serde::Deserialize::deserialize(serde_ignored::Deserializer::new(de, &mut on_ignored))
    };
    let project: Project = match result {
        Ok(p) => p,
        Err(e) => {
            let e: serde_json::Error = e;
            let mut path = to_segments(&track.path());
            let mut message = e.to_string();
            // Readers of lists name the bad item as `[n]: …`: point at it.
            if let Some(rest) = message.strip_prefix('[') {
                if let Some((n, tail)) = rest.split_once("]: ") {
                    if let Ok(n) = n.parse() {
                        path.push(PathSeg::Index(n));
                        message = tail.to_string();
                    }
                }
            }
            return Err(ComposeError::Type {
                pos: tree.locate(&path).pos.clone(),
                path: path_string(&path),
                message,
            });
        }
    };
    // Names that become resource names (`<project>-<service>-1`, `<project>_<volume>`):
    // the spec's pattern, so no `/` or `..` reaches a name kiln makes from them.
    let names = [
        ("services", project.services.keys().collect::<Vec<_>>()),
        ("networks", project.networks.keys().collect()),
        ("volumes", project.volumes.keys().collect()),
        ("secrets", project.secrets.keys().collect()),
        ("configs", project.configs.keys().collect()),
    ];
    for (kind, keys) in names {
        for key in keys {
            let ok = !key.is_empty()
                && key
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
            if !ok {
                let path = [PathSeg::Key(kind.into()), PathSeg::Key(key.clone())];
                return Err(ComposeError::Type {
                    pos: tree.locate(&path).pos.clone(),
                    path: path_string(&path),
                    message: "invalid name: only letters, digits, `.`, `_` and `-` are allowed"
                        .into(),
                });
            }
        }
    }
    let mut found: Vec<Warning> = Vec::new();
    for path in unknown {
        if let Some(PathSeg::Key(k)) = path.last() {
            if k.starts_with("x-") {
                continue;
            }
        }
        let node = tree.locate(&path);
        found.push(Warning {
            pos: Some(node.pos.clone()),
            message: format!("{}: unknown key, ignored", path_string(&path)),
        });
    }
    // In the order of the files (serde visits keys sorted).
    found.sort_by(|a, b| {
        let key = |w: &Warning| w.pos.as_ref().map(|p| (p.file.clone(), p.line));
        key(a).cmp(&key(b))
    });
    warnings.extend(found);
    Ok(project)
}

fn apply_profiles(
    project: &mut Project,
    opts: &LoadOptions,
    environment: &BTreeMap<String, String>,
    warnings: &mut Vec<Warning>,
) -> Result<(), ComposeError> {
    let mut active: BTreeSet<String> = opts.profiles.iter().cloned().collect();
    if active.is_empty() {
        // From the process environment or `.env`, as Compose reads its own variables.
        if let Some(p) = environment.get("COMPOSE_PROFILES") {
            active.extend(
                p.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(String::from),
            );
        }
    }
    for s in &opts.services {
        if !project.services.contains_key(s) {
            return Err(ComposeError::NoSuchService(s.clone()));
        }
    }
    let enabled = |name: &str, profiles: &[String]| {
        profiles.is_empty()
            || active.contains("*")
            || profiles.iter().any(|p| active.contains(p))
            || opts.services.iter().any(|s| s == name)
    };
    let disabled: BTreeMap<String, Vec<String>> = project
        .services
        .iter()
        .filter(|(n, s)| !enabled(n, &s.profiles))
        .map(|(n, s)| (n.clone(), s.profiles.clone()))
        .collect();
    project.services.retain(|n, _| !disabled.contains_key(n));
    for (name, service) in &mut project.services {
        let mut dropped = Vec::new();
        for (dep, d) in &service.depends_on {
            if let Some(profiles) = disabled.get(dep) {
                if d.required {
                    return Err(ComposeError::DisabledDependency {
                        service: name.clone(),
                        dependency: dep.clone(),
                        profiles: profiles.clone(),
                    });
                }
                dropped.push(dep.clone());
            }
        }
        for dep in dropped {
            service.depends_on.remove(&dep);
            warnings.push(Warning {
                pos: None,
                message: format!("service {name:?} depends on {dep:?}, which is disabled and not required; ignored"),
            });
        }
    }
    let names: BTreeSet<String> = project.services.keys().cloned().collect();
    for (name, service) in &mut project.services {
        let missing: Vec<String> = service
            .depends_on
            .keys()
            .filter(|d| !names.contains(*d))
            .cloned()
            .collect();
        for dep in missing {
            if service.depends_on[&dep].required {
                return Err(ComposeError::UndefinedService {
                    service: name.clone(),
                    dependency: dep,
                });
            }
            service.depends_on.remove(&dep);
        }
    }
    Ok(())
}

fn is_remote_context(c: &str) -> bool {
    c.contains("://") || c.starts_with("git@") || c.starts_with("github.com/")
}

fn expand_home(p: &str, env: &BTreeMap<String, String>) -> String {
    match (p.strip_prefix('~'), env.get("HOME")) {
        (Some(rest), Some(home)) if rest.is_empty() || rest.starts_with('/') => {
            format!("{home}{rest}")
        }
        _ => p.to_string(),
    }
}

/// What `docker compose config` shows beyond what was written: resource names, absolute
/// paths, the implicit `default` network, variables resolved from the environment and from
/// `env_file`s; and the references checked.
fn normalise(loaded: &mut Loaded) -> Result<(), ComposeError> {
    let dir = loaded.working_dir.clone();
    let env = loaded.environment.clone();
    let project = &mut loaded.project;
    let name = project.name.clone();
    let abs = |p: &str| {
        absolute(&dir, Path::new(&expand_home(p, &env)))
            .display()
            .to_string()
    };
    let mut uses_default = false;
    for (sname, s) in &mut project.services {
        if s.image.is_none() && s.build.is_none() {
            return Err(ComposeError::NoImage(sname.clone()));
        }
        if let Some(b) = &mut s.build {
            if !is_remote_context(&b.context) {
                b.context = abs(&b.context);
            }
            if b.dockerfile.is_none() && b.dockerfile_inline.is_none() {
                b.dockerfile = Some("Dockerfile".into());
            }
            for (k, v) in &mut b.args {
                if v.is_none() {
                    *v = env.get(k).cloned();
                }
            }
        }
        if s.pull_policy.as_deref() == Some("if_not_present") {
            s.pull_policy = Some("missing".into());
        }
        // `network_mode: service:db` needs db started first, as Compose infers.
        if let Some(dep) = s
            .network_mode
            .as_deref()
            .and_then(|m| m.strip_prefix("service:"))
        {
            s.depends_on
                .entry(dep.to_string())
                .or_insert(crate::model::DependsOn {
                    restart: true,
                    ..Default::default()
                });
        }
        // env_file values under `environment`, names without a value from the environment.
        let mut from_files = BTreeMap::new();
        for f in &mut s.env_file {
            f.path = abs(&f.path);
            let path = PathBuf::from(&f.path);
            if !path.is_file() {
                if f.required {
                    return Err(ComposeError::EnvFileNotFound { path });
                }
                continue;
            }
            let lookup = |n: &str| env.get(n).cloned();
            from_files.extend(crate::envfile::parse(&read(&path)?, &f.path, &lookup)?);
        }
        for (k, v) in from_files {
            s.environment.entry(k).or_insert(Some(v));
        }
        for (k, v) in &mut s.environment {
            if v.is_none() {
                *v = env.get(k).cloned();
            }
        }
        for v in &mut s.volumes {
            if v.kind == "bind" {
                if let Some(src) = &mut v.source {
                    *src = abs(src);
                }
            }
        }
        if s.network_mode.is_none() && s.networks.is_empty() {
            s.networks.insert("default".into(), None);
        }
        if s.networks.contains_key("default") {
            uses_default = true;
        }
        if s.container_name.is_some() && s.replicas() > 1 {
            return Err(ComposeError::ContainerNameScale(sname.clone()));
        }
        if let (Some(scale), Some(replicas)) = (s.scale, s.deploy.as_ref().and_then(|d| d.replicas))
        {
            if scale != replicas {
                return Err(ComposeError::ScaleAndReplicas(sname.clone()));
            }
        }
        if let Some(name) = &s.container_name {
            // docker's rule for container names: `[a-zA-Z0-9][a-zA-Z0-9_.-]+`.
            let ok = name.len() > 1
                && name.starts_with(|c: char| c.is_ascii_alphanumeric())
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
            if !ok {
                return Err(ComposeError::InvalidContainerName {
                    service: sname.clone(),
                    name: name.clone(),
                });
            }
        }
    }
    if uses_default && !project.networks.contains_key("default") {
        project
            .networks
            .insert("default".into(), Network::default());
    }
    for (key, n) in &mut project.networks {
        if n.name.is_none() {
            n.name = Some(if n.external {
                key.clone()
            } else {
                format!("{name}_{key}")
            });
        }
    }
    for (key, v) in &mut project.volumes {
        if v.name.is_none() {
            v.name = Some(if v.external {
                key.clone()
            } else {
                format!("{name}_{key}")
            });
        }
    }
    for (key, f) in project.secrets.iter_mut().chain(project.configs.iter_mut()) {
        if let Some(file) = &mut f.file {
            *file = abs(file);
        }
        if f.name.is_none() {
            f.name = Some(if f.external {
                key.clone()
            } else {
                format!("{name}_{key}")
            });
        }
    }
    // References to top-level resources.
    for (sname, s) in &project.services {
        let undefined = |kind: &'static str, n: &str| ComposeError::UndefinedResource {
            service: sname.clone(),
            kind,
            name: n.to_string(),
        };
        if let Some(d) = s
            .depends_on
            .keys()
            .find(|d| !project.services.contains_key(*d))
        {
            // A `network_mode: service:…` naming no service.
            return Err(ComposeError::UndefinedService {
                service: sname.clone(),
                dependency: d.clone(),
            });
        }
        if let Some(n) = s
            .networks
            .keys()
            .find(|n| !project.networks.contains_key(*n))
        {
            return Err(undefined("network", n));
        }
        for v in &s.volumes {
            if let (Some(src), "volume") = (&v.source, v.kind.as_str()) {
                if !project.volumes.contains_key(src) {
                    return Err(undefined("volume", src));
                }
            }
        }
        if let Some(r) = s
            .secrets
            .iter()
            .find(|r| !project.secrets.contains_key(&r.source))
        {
            return Err(undefined("secret", &r.source));
        }
        if let Some(r) = s
            .configs
            .iter()
            .find(|r| !project.configs.contains_key(&r.source))
        {
            return Err(undefined("config", &r.source));
        }
    }
    Ok(())
}
