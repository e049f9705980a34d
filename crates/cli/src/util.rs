//! What every command needs: the store, the registry client, the executor, and failures
//! with exit codes.

use kiln_cache::Store;
use kiln_units::DurationUnits;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// An error on its way to the user, with the exit code it ends in. `main` renders it (see
/// [`Failure::render`]).
pub(crate) struct Failure {
    /// Exit code (1 build failure, 2 usage / Dockerfile error).
    pub code: u8,
    /// The summary: the first line, as scripts read it.
    message: String,
    /// The library error behind it, when one is wrapped.
    source: Option<BoxError>,
    /// What to do about it.
    hint: Option<String>,
}

/// A library error, kept typed until it is rendered.
pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

impl Failure {
    pub(crate) fn new(code: u8, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            source: None,
            hint: None,
        }
    }
    pub(crate) fn usage(message: impl Into<String>) -> Self {
        Self::new(2, message)
    }
    /// A library error with its exit code; the summary is its own text, each cause it does
    /// not already state follows on a `Caused by:` line (see [`Failure::render`]).
    pub(crate) fn wrap(code: u8, e: impl Into<BoxError>) -> Self {
        let source = e.into();
        Self {
            code,
            message: source.to_string(),
            source: Some(source),
            hint: None,
        }
    }
    /// `message` as the summary, for a wrapped library error `source`.
    pub(crate) fn with_source(
        code: u8,
        message: impl Into<String>,
        source: impl Into<BoxError>,
    ) -> Self {
        Self {
            source: Some(source.into()),
            ..Self::new(code, message)
        }
    }
    /// Adds a `hint:` line.
    pub(crate) fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
    /// The texts of the wrapped error's `source()` chain that the summary (or an earlier
    /// cause) does not already state: library messages often embed their causes.
    fn causes(&self) -> Vec<String> {
        let mut said = self.message.clone();
        let mut out = Vec::new();
        let mut next: Option<&(dyn std::error::Error + 'static)> =
            self.source.as_deref().map(|e| e as _);
        while let Some(e) = next {
            let text = e.to_string();
            if !text.is_empty() && !said.contains(&text) {
                said.push('\n');
                said.push_str(&text);
                out.push(text);
            }
            next = e.source();
        }
        out
    }
    /// The failure as the user sees it, uv's way: `error: SUMMARY`, then one
    /// `  Caused by: …` line per cause the summary does not state, then `hint: …`.
    pub(crate) fn render(&self) -> String {
        let mut out = format!("error: {}\n", self.message);
        for c in self.causes() {
            out.push_str(&format!("  Caused by: {c}\n"));
        }
        if let Some(h) = &self.hint {
            out.push_str(&format!("hint: {h}\n"));
        }
        out
    }
    /// The summary and its causes on one line (`a: b`), for messages that are one line by
    /// docker's design (`Login did not succeed, error: …`, warnings).
    pub(crate) fn one_line(&self) -> String {
        let mut line = self.message.clone();
        for c in self.causes() {
            line.push_str(": ");
            line.push_str(&c);
        }
        line
    }
    /// Writes [`Failure::render`] to stderr.
    pub(crate) fn print(&self) {
        eprint!("{}", self.render());
    }
}

/// The prune commands' `--filter until=DURATION` (the only filter they take): how far back
/// from now, or `None` without one.
pub(crate) fn until_filter(filters: &[String]) -> Result<Option<std::time::Duration>, Failure> {
    let mut until = None;
    for f in filters {
        match f.split_once('=') {
            Some(("until", d)) => {
                let d = kiln_units::parse_duration(d, DurationUnits::Filter).map_err(|_| {
                    Failure::usage(format!(
                        "--filter: `{d}` is not a duration (e.g. 24h, 30m, 7d, 1h30m)"
                    ))
                })?;
                until = Some(d);
            }
            _ => {
                return Err(Failure::usage(format!(
                    "--filter `{f}`: only until=DURATION is supported"
                )))
            }
        }
    }
    Ok(until)
}

/// `--add-host NAME:IP` flags (of `build` and `run`) as `(name, ip)`, with docker's message.
pub(crate) fn parse_add_hosts(flags: &[String]) -> Result<Vec<(String, String)>, Failure> {
    flags
        .iter()
        .map(|h| {
            kiln_executor::parse_add_host(h).map_err(|e| {
                Failure::usage(format!(
                    "invalid argument {h:?} for \"--add-host\" flag: {e}"
                ))
            })
        })
        .collect()
}

impl<E: std::error::Error + Send + Sync + 'static> From<E> for Failure {
    fn from(e: E) -> Self {
        Failure::wrap(1, e)
    }
}

/// `--keep-storage` and `[gc] keep-storage`: docker's FromHumanSize (`10GB`, `512MB`,
/// `1.5GiB`, bytes), refused in kiln's words.
pub(crate) fn parse_size(s: &str) -> Result<u64, String> {
    kiln_units::parse_human(s).map_err(|_| format!("`{s}` is not a size (e.g. 10GB, 512MB)"))
}

/// Asks "Are you sure…" on a terminal unless `force`; without a terminal, `force` is
/// required (docker would read a "no" from a closed stdin).
pub(crate) fn confirm(force: bool, warning: &str) -> Result<bool, Failure> {
    if force {
        return Ok(true);
    }
    // SAFETY: isatty has no preconditions.
    if unsafe { libc::isatty(0) } != 1 {
        return Err(Failure::usage(warning)
            .hint("stdin is not a terminal to confirm this: pass -f (--force)"));
    }
    eprint!("{warning}\nAre you sure you want to continue? [y/N] ");
    let mut line = String::new();
    std::io::stdin()
        .read_line(&mut line)
        .map_err(|e| Failure::with_source(1, format!("stdin: {e}"), e))?;
    Ok(matches!(line.trim(), "y" | "Y" | "yes" | "Yes"))
}

/// Writes to stdout (the crate's `print!`/`println!`). When the reader has gone away (EPIPE)
/// the process ends at once with exit 0; another write error ends it with exit 1 and a
/// one-line message.
pub(crate) fn out(args: std::fmt::Arguments<'_>) {
    use std::io::Write as _;
    if let Err(e) = std::io::stdout().lock().write_fmt(args) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        err(format_args!("error: cannot write to stdout: {e}\n"));
        std::process::exit(1);
    }
}

/// Writes to stderr (the crate's `eprint!`/`eprintln!`), ignoring errors: with stderr closed
/// there is nowhere to report them.
pub(crate) fn err(args: std::fmt::Arguments<'_>) {
    use std::io::Write as _;
    let _ = std::io::stderr().lock().write_fmt(args);
}

#[derive(serde::Deserialize, Default)]
struct ConfigFile {
    #[serde(default)]
    registry: RegistrySection,
    #[serde(default)]
    gc: GcConfig,
}

/// `[registry]`: settings for every registry (faults and timeouts), then one table per host
/// (`[registry."HOST"]`).
#[derive(serde::Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
struct RegistrySection {
    /// No byte from a registry for this long ends the transfer ("30s").
    stall_timeout: Option<String>,
    /// Attempts after the first for a request that failed for a reason that may pass.
    retries: Option<u32>,
    /// The first backoff delay, doubled for each retry ("200ms").
    retry_delay: Option<String>,
    /// The longest wait between attempts, `Retry-After` included ("30s").
    retry_max_delay: Option<String>,
    #[serde(flatten)]
    hosts: BTreeMap<String, kiln_registry::HostConfig>,
}

impl RegistrySection {
    /// The client's settings; `source` names the file in errors.
    fn resolve(self, source: &Path) -> Result<kiln_registry::RegistryConfig, Failure> {
        let duration =
            |key: &str, v: &Option<String>| -> Result<Option<std::time::Duration>, Failure> {
                v.as_deref()
                    .map(|s| {
                        // Go's units ("30s", "200ms"), and days and weeks as before.
                        kiln_units::parse_duration(s, DurationUnits::Go)
                            .or_else(|_| kiln_units::parse_duration(s, DurationUnits::Filter))
                            .map_err(|e| {
                                Failure::usage(format!(
                                    "{}: registry.{key}: `{s}`: {e}",
                                    source.display()
                                ))
                            })
                    })
                    .transpose()
            };
        let mut cfg = kiln_registry::RegistryConfig {
            hosts: self.hosts,
            docker_config: docker_config_path(),
            ..Default::default()
        };
        if let Some(d) = duration("stall-timeout", &self.stall_timeout)? {
            if d.is_zero() {
                return Err(Failure::usage(format!(
                    "{}: registry.stall-timeout must be above zero",
                    source.display()
                )));
            }
            cfg.stall_timeout = d;
        }
        if let Some(n) = self.retries {
            cfg.retry.retries = n;
        }
        if let Some(d) = duration("retry-delay", &self.retry_delay)? {
            cfg.retry.base_delay = d;
        }
        if let Some(d) = duration("retry-max-delay", &self.retry_max_delay)? {
            cfg.retry.max_delay = d;
        }
        Ok(cfg)
    }
}

/// `[gc]`: `keep-storage = "10GB"` caps what the root holds; after every build the least
/// recently used build cache is removed until the root is below it.
#[derive(serde::Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
struct GcConfig {
    keep_storage: Option<String>,
}

/// The opened state directory and the clients built from the configuration.
pub(crate) struct Env {
    pub store: Arc<Store>,
    pub registry: kiln_registry::Client,
    /// The binary that runs the shim and the sandbox helper (`kiln-shim`, or `kiln`).
    pub exe: PathBuf,
    /// `[gc] keep-storage`, in bytes.
    gc_keep_storage: Option<u64>,
}

impl Env {
    /// Opens the state directory; with `defer_db`, the store's database only when first
    /// used ([`Store::open_deferred`], for commands that may not need it).
    pub(crate) fn open(
        root: Option<PathBuf>,
        config: Option<PathBuf>,
        defer_db: bool,
    ) -> Result<Self, Failure> {
        let root = root.unwrap_or_else(default_root);
        std::fs::create_dir_all(&root).map_err(|e| {
            Failure::with_source(1, format!("cannot create root {}: {e}", root.display()), e)
        })?;
        let (cfg, config_path) = read_config(&root, config)?;
        let store = if defer_db {
            Store::open_deferred(&root)
        } else {
            Store::open(&root)
        };
        let store = store.map_err(|e| {
            let message = format!("cannot open the store at {}: {e}", root.display());
            Failure::with_source(1, message, e)
        })?;
        let gc_keep_storage = match &cfg.gc.keep_storage {
            Some(s) => Some(parse_size(s).map_err(|e| {
                Failure::usage(format!(
                    "{}: gc.keep-storage: {e}",
                    config_path.as_deref().unwrap_or(root.as_path()).display()
                ))
            })?),
            None => None,
        };
        let registry = registry_client(
            cfg.registry,
            config_path.as_deref().unwrap_or(root.as_path()),
        )?;
        // The shim and the sandbox helper run from the small kiln-shim beside this binary
        // when it is installed, else from this binary.
        let exe = std::env::current_exe()
            .map(|kiln| kiln_runtime::companion_binary(&kiln))
            .map_err(|e| Failure::with_source(1, format!("cannot find the kiln binary: {e}"), e))?;
        Ok(Self {
            store: Arc::new(store),
            registry,
            exe,
            gc_keep_storage,
        })
    }

    /// The storage cap (`[gc] keep-storage`), in bytes.
    pub(crate) fn gc_keep_storage(&self) -> Option<u64> {
        self.gc_keep_storage
    }

    pub(crate) fn executor(&self) -> kiln_executor::Executor {
        kiln_executor::Executor::new(vec![
            self.exe.clone().into_os_string(),
            kiln_executor::HELPER_ARG.into(),
        ])
    }

    /// The stored image a user names (ID, ID prefix, `sha256:…`, name, `name@digest`:
    /// [`kiln_cache::image::lookup`]), or a clear error: exit 2 for what is no reference.
    pub(crate) fn local_image(&self, name: &str) -> Result<kiln_cache::image::Found, Failure> {
        kiln_cache::image::lookup(&self.store, name).map_err(lookup_failure)
    }
}

/// An image lookup that failed, in the lookup's words: exit 2 for what is no reference at
/// all, 1 otherwise.
pub(crate) fn lookup_failure(e: kiln_cache::image::LookupError) -> Failure {
    use kiln_cache::image::LookupError;
    match e {
        LookupError::Reference(e) => Failure::usage(e.to_string()),
        e @ (LookupError::NotFound(_) | LookupError::Ambiguous(_)) => {
            Failure::new(1, e.to_string())
        }
        e => e.into(),
    }
}

/// The configuration file (`--config`, else `ROOT/config.toml` when present) and its path.
fn read_config(
    root: &Path,
    config: Option<PathBuf>,
) -> Result<(ConfigFile, Option<PathBuf>), Failure> {
    let config_path = config.or_else(|| {
        let p = root.join("config.toml");
        p.exists().then_some(p)
    });
    let cfg: ConfigFile = match &config_path {
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .map_err(|e| Failure::with_source(2, format!("{}: {e}", p.display()), e))?;
            toml::from_str(&text)
                .map_err(|e| Failure::with_source(2, format!("{}: {e}", p.display()), e))?
        }
        None => ConfigFile::default(),
    };
    Ok((cfg, config_path))
}

fn registry_client(
    section: RegistrySection,
    source: &Path,
) -> Result<kiln_registry::Client, Failure> {
    Ok(kiln_registry::Client::new(section.resolve(source)?))
}

/// The registry client alone, for commands that do not touch the store (`login`): the
/// configuration is read as [`Env::open`] reads it, but the root is neither created nor
/// opened.
pub(crate) fn registry_only(
    root: Option<PathBuf>,
    config: Option<PathBuf>,
) -> Result<kiln_registry::Client, Failure> {
    let root = root.unwrap_or_else(default_root);
    let (cfg, config_path) = read_config(&root, config)?;
    registry_client(
        cfg.registry,
        config_path.as_deref().unwrap_or(root.as_path()),
    )
}

/// The Docker credentials file that pulls and pushes read and `kiln login` writes:
/// `$DOCKER_CONFIG/config.json`, else `$HOME/.docker/config.json`.
pub(crate) fn docker_config_path() -> Option<PathBuf> {
    std::env::var_os("DOCKER_CONFIG")
        .filter(|d| !d.is_empty())
        .map(|d| PathBuf::from(d).join("config.json"))
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|h| !h.is_empty())
                .map(|h| PathBuf::from(h).join(".docker/config.json"))
        })
}

fn default_root() -> PathBuf {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        return PathBuf::from("/var/lib/kiln");
    }
    std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))
        .unwrap_or_else(|| PathBuf::from("."))
        .join("kiln")
}

/// RFC 3339 UTC time of now, as image configs carry it.
pub(crate) fn now_rfc3339() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    rfc3339(secs)
}

/// RFC 3339 UTC time of a Unix time in seconds (times before 1970 print as 1970).
pub(crate) fn rfc3339(secs: i64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs.max(0) as u64);
    humantime::format_rfc3339_seconds(t).to_string()
}

#[cfg(test)]
mod tests {
    use super::Failure;

    /// An error whose Display leaves its cause out (`#[source]` without `{source}`).
    #[derive(Debug)]
    struct Outer(std::io::Error);
    impl std::fmt::Display for Outer {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("cannot read the thing")
        }
    }
    impl std::error::Error for Outer {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    fn denied() -> std::io::Error {
        std::io::Error::new(std::io::ErrorKind::PermissionDenied, "permission denied")
    }

    #[test]
    fn errors_render_as_summary_causes_and_hint() {
        assert_eq!(Failure::usage("bad flag").render(), "error: bad flag\n");
        // The summary is the error's own text; its cause follows on a line of its own.
        let f = Failure::from(Outer(denied()));
        assert_eq!((f.code, f.message.as_str()), (1, "cannot read the thing"));
        assert_eq!(f.one_line(), "cannot read the thing: permission denied");
        assert_eq!(
            f.render(),
            "error: cannot read the thing\n  Caused by: permission denied\n"
        );
        // A cause the summary does not say gets a line of its own.
        let f = Failure::with_source(125, "cannot read the thing", Outer(denied()));
        assert_eq!(
            f.render(),
            "error: cannot read the thing\n  Caused by: permission denied\n"
        );
        let f = Failure::usage("WARNING! This removes things.").hint("pass -f");
        assert_eq!(
            f.render(),
            "error: WARNING! This removes things.\nhint: pass -f\n"
        );
    }

    #[test]
    fn rfc3339_dates() {
        assert_eq!(super::rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(super::rfc3339(1_795_000_000), "2026-11-18T11:06:40Z");
    }
}
