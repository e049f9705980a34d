//! Settings: per-host plain HTTP and mirrors, retries, the stall timeout.

use std::collections::BTreeMap;
use std::time::Duration;

/// Per-host settings (from `[registry."HOST"]` in kiln's config.toml).
#[derive(Clone, Debug, Default, serde::Deserialize)]
pub struct HostConfig {
    /// Plain HTTP. Loopback hosts (127.0.0.0/8, localhost, ::1) default to true, like Docker.
    pub http: Option<bool>,
    /// Mirrors tried (in order) before the host itself, `host[:port]`.
    #[serde(default)]
    pub mirrors: Vec<String>,
}

/// Registry settings for every host.
#[derive(Clone, Debug)]
pub struct RegistryConfig {
    /// By host name (`docker.io`, `127.0.0.1:5000`).
    pub hosts: BTreeMap<String, HostConfig>,
    /// Path of the Docker-style credentials file (`~/.docker/config.json`); `auths` with
    /// base64 `auth` entries are used for Basic auth and for the Bearer token flow.
    pub docker_config: Option<std::path::PathBuf>,
    /// How transient faults are retried.
    pub retry: RetryConfig,
    /// A registry that sends nothing for this long (no connection, no answer, no byte of a
    /// body, or reads nothing of an upload) is given up on (default 30 s).
    pub stall_timeout: Duration,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        Self {
            hosts: BTreeMap::new(),
            docker_config: None,
            retry: RetryConfig::default(),
            stall_timeout: Duration::from_secs(30),
        }
    }
}

/// Retries of requests that failed for a reason that may pass (see the crate docs).
#[derive(Clone, Debug)]
pub struct RetryConfig {
    /// Attempts after the first (default 4).
    pub retries: u32,
    /// The first backoff delay (default 200 ms), doubled for each further attempt; the
    /// delay waited is a random point in its upper half.
    pub base_delay: Duration,
    /// The longest delay waited, for a backoff or a `Retry-After` (default 30 s).
    pub max_delay: Duration,
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            retries: 4,
            base_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(30),
        }
    }
}

impl RetryConfig {
    /// The backoff before attempt `n + 2` (after the `n + 1`th failure).
    pub(crate) fn backoff(&self, n: u32) -> Duration {
        use rand::Rng as _;
        let full = self
            .base_delay
            .saturating_mul(1u32 << n.min(20))
            .min(self.max_delay);
        rand::thread_rng().gen_range(full / 2..=full)
    }
}
