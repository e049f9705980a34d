//! The typed model: the Compose Specification's keys that real projects use (issue 15's list),
//! each read from every form the spec allows and kept in one normalised form — the one
//! `docker compose config` prints (ports and volumes in long syntax, `depends_on` and service
//! `networks` as mappings, `command` as a list, relative paths made absolute). Serialising a
//! [`Project`] gives that output.

use crate::de;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

fn is_false(b: &bool) -> bool {
    !*b
}

/// A whole project after loading, merging, interpolation and normalisation.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Project {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(default, deserialize_with = "de::nullable_map")]
    pub services: BTreeMap<String, Service>,
    #[serde(
        default,
        deserialize_with = "de::nullable_map",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub networks: BTreeMap<String, Network>,
    #[serde(
        default,
        deserialize_with = "de::nullable_map",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub volumes: BTreeMap<String, Volume>,
    #[serde(
        default,
        deserialize_with = "de::nullable_map",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub secrets: BTreeMap<String, FileObject>,
    #[serde(
        default,
        deserialize_with = "de::nullable_map",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub configs: BTreeMap<String, FileObject>,
    /// Obsolete (`version: "3.8"`): read, warned about, never printed.
    #[serde(default, skip_serializing)]
    pub version: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Service {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build: Option<Build>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cap_add: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cap_drop: Vec<String>,
    /// The command as a list (a string is split as a shell would, without expansion).
    #[serde(
        default,
        deserialize_with = "de::command",
        skip_serializing_if = "Option::is_none"
    )]
    pub command: Option<Vec<String>>,
    #[serde(
        default,
        deserialize_with = "de::file_refs",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub configs: Vec<FileRef>,
    #[serde(
        default,
        deserialize_with = "de::opt_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub container_name: Option<String>,
    /// Read as a mapping: the loader turns the list form into one before typing.
    #[serde(
        default,
        deserialize_with = "de::nullable_map",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub depends_on: BTreeMap<String, DependsOn>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deploy: Option<Deploy>,
    #[serde(
        default,
        deserialize_with = "de::string_or_list",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub dns: Vec<String>,
    #[serde(
        default,
        deserialize_with = "de::command",
        skip_serializing_if = "Option::is_none"
    )]
    pub entrypoint: Option<Vec<String>>,
    #[serde(
        default,
        deserialize_with = "de::env_files",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub env_file: Vec<EnvFile>,
    /// Variables; `None` is a name without a value (taken from the environment when set).
    #[serde(
        default,
        deserialize_with = "de::map_or_list",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub environment: BTreeMap<String, Option<String>>,
    #[serde(
        default,
        deserialize_with = "de::string_list",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub expose: Vec<String>,
    /// `host=ip` entries (the list's `host:ip` and the mapping form read into this one).
    #[serde(
        default,
        deserialize_with = "de::extra_hosts",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub extra_hosts: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthcheck: Option<Healthcheck>,
    #[serde(
        default,
        deserialize_with = "de::opt_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub hostname: Option<String>,
    #[serde(
        default,
        deserialize_with = "de::opt_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub image: Option<String>,
    #[serde(
        default,
        deserialize_with = "de::opt_bool",
        skip_serializing_if = "Option::is_none"
    )]
    pub init: Option<bool>,
    #[serde(
        default,
        deserialize_with = "de::labels",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub labels: BTreeMap<String, String>,
    #[serde(
        default,
        deserialize_with = "de::opt_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub network_mode: Option<String>,
    /// Networks the service joins; `None` for no per-network settings. Read as a mapping: the
    /// loader turns the list form into one before typing.
    #[serde(
        default,
        deserialize_with = "de::opt_map",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub networks: BTreeMap<String, Option<ServiceNetwork>>,
    #[serde(
        default,
        deserialize_with = "de::opt_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub platform: Option<String>,
    #[serde(
        default,
        deserialize_with = "de::ports",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub ports: Vec<Port>,
    #[serde(
        default,
        deserialize_with = "de::opt_bool",
        skip_serializing_if = "Option::is_none"
    )]
    pub privileged: Option<bool>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub profiles: Vec<String>,
    #[serde(
        default,
        deserialize_with = "de::opt_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub pull_policy: Option<String>,
    #[serde(
        default,
        deserialize_with = "de::opt_bool",
        skip_serializing_if = "Option::is_none"
    )]
    pub read_only: Option<bool>,
    #[serde(
        default,
        deserialize_with = "de::opt_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub restart: Option<String>,
    #[serde(
        default,
        deserialize_with = "de::opt_u64",
        skip_serializing_if = "Option::is_none"
    )]
    pub scale: Option<u64>,
    #[serde(
        default,
        deserialize_with = "de::file_refs",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub secrets: Vec<FileRef>,
    #[serde(
        default,
        deserialize_with = "de::opt_bool",
        skip_serializing_if = "Option::is_none"
    )]
    pub stdin_open: Option<bool>,
    #[serde(
        default,
        deserialize_with = "de::opt_duration",
        skip_serializing_if = "Option::is_none"
    )]
    pub stop_grace_period: Option<String>,
    #[serde(
        default,
        deserialize_with = "de::opt_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub stop_signal: Option<String>,
    #[serde(
        default,
        deserialize_with = "de::labels",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub sysctls: BTreeMap<String, String>,
    #[serde(
        default,
        deserialize_with = "de::string_or_list",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub tmpfs: Vec<String>,
    #[serde(
        default,
        deserialize_with = "de::opt_bool",
        skip_serializing_if = "Option::is_none"
    )]
    pub tty: Option<bool>,
    #[serde(
        default,
        deserialize_with = "de::opt_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub user: Option<String>,
    #[serde(
        default,
        deserialize_with = "de::volumes",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub volumes: Vec<ServiceVolume>,
    #[serde(
        default,
        deserialize_with = "de::opt_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub working_dir: Option<String>,
}

impl Service {
    /// How many containers the service runs (`deploy.replicas`, else `scale`, else 1).
    pub fn replicas(&self) -> u64 {
        self.deploy
            .as_ref()
            .and_then(|d| d.replicas)
            .or(self.scale)
            .unwrap_or(1)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Build {
    #[serde(default = "dot", deserialize_with = "de::string")]
    pub context: String,
    #[serde(
        default,
        deserialize_with = "de::opt_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub dockerfile: Option<String>,
    #[serde(
        default,
        deserialize_with = "de::opt_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub dockerfile_inline: Option<String>,
    #[serde(
        default,
        deserialize_with = "de::map_or_list",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub args: BTreeMap<String, Option<String>>,
    #[serde(
        default,
        deserialize_with = "de::opt_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub target: Option<String>,
    #[serde(
        default,
        deserialize_with = "de::labels",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cache_from: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cache_to: Vec<String>,
    #[serde(
        default,
        deserialize_with = "de::file_refs",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub secrets: Vec<FileRef>,
    #[serde(
        default,
        deserialize_with = "de::opt_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub network: Option<String>,
}

fn dot() -> String {
    ".".into()
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DependsOn {
    #[serde(default = "started", deserialize_with = "de::condition")]
    pub condition: String,
    #[serde(
        default,
        deserialize_with = "de::bool",
        skip_serializing_if = "is_false"
    )]
    pub restart: bool,
    #[serde(default = "yes", deserialize_with = "de::bool")]
    pub required: bool,
}

fn started() -> String {
    "service_started".into()
}
fn yes() -> bool {
    true
}

impl Default for DependsOn {
    fn default() -> Self {
        DependsOn {
            condition: started(),
            restart: false,
            required: true,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Healthcheck {
    /// `["CMD", …]`, `["CMD-SHELL", cmd]` or `["NONE"]` (a string is `CMD-SHELL`).
    #[serde(
        default,
        deserialize_with = "de::health_test",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub test: Vec<String>,
    #[serde(
        default,
        deserialize_with = "de::opt_duration",
        skip_serializing_if = "Option::is_none"
    )]
    pub interval: Option<String>,
    #[serde(
        default,
        deserialize_with = "de::opt_duration",
        skip_serializing_if = "Option::is_none"
    )]
    pub timeout: Option<String>,
    #[serde(
        default,
        deserialize_with = "de::opt_u64",
        skip_serializing_if = "Option::is_none"
    )]
    pub retries: Option<u64>,
    #[serde(
        default,
        deserialize_with = "de::opt_duration",
        skip_serializing_if = "Option::is_none"
    )]
    pub start_period: Option<String>,
    #[serde(
        default,
        deserialize_with = "de::opt_duration",
        skip_serializing_if = "Option::is_none"
    )]
    pub start_interval: Option<String>,
    #[serde(
        default,
        deserialize_with = "de::bool",
        skip_serializing_if = "is_false"
    )]
    pub disable: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Deploy {
    #[serde(
        default,
        deserialize_with = "de::opt_u64",
        skip_serializing_if = "Option::is_none"
    )]
    pub replicas: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<Resources>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Resources {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<Limits>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reservations: Option<Limits>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Limits {
    #[serde(
        default,
        deserialize_with = "de::opt_f64",
        skip_serializing_if = "Option::is_none"
    )]
    pub cpus: Option<f64>,
    /// Bytes (`512M` read as docker's `RAMInBytes`).
    #[serde(
        default,
        deserialize_with = "de::opt_bytes",
        skip_serializing_if = "Option::is_none"
    )]
    pub memory: Option<u64>,
    #[serde(
        default,
        deserialize_with = "de::opt_i64",
        skip_serializing_if = "Option::is_none"
    )]
    pub pids: Option<i64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ServiceNetwork {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<String>,
    #[serde(
        default,
        deserialize_with = "de::opt_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub ipv4_address: Option<String>,
    #[serde(
        default,
        deserialize_with = "de::opt_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub ipv6_address: Option<String>,
}

/// A published or exposed port in long syntax (one per port: short-syntax ranges expand).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Port {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default = "ingress")]
    pub mode: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_ip: Option<String>,
    #[serde(deserialize_with = "de::u16")]
    pub target: u16,
    /// The host port or range (`"8080"`, `"8000-8010"`); none for an ephemeral one.
    #[serde(
        default,
        deserialize_with = "de::opt_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub published: Option<String>,
    #[serde(default = "tcp")]
    pub protocol: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_protocol: Option<String>,
}

fn ingress() -> String {
    "ingress".into()
}
fn tcp() -> String {
    "tcp".into()
}

/// A service mount in long syntax.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceVolume {
    /// `volume`, `bind` or `tmpfs`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The volume's key, or the bind's host path (absolute); none for an anonymous volume.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    pub target: String,
    #[serde(default, skip_serializing_if = "is_false")]
    pub read_only: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bind: Option<BindOptions>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume: Option<VolumeOptions>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tmpfs: Option<TmpfsOptions>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consistency: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BindOptions {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub propagation: Option<String>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub create_host_path: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selinux: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VolumeOptions {
    #[serde(default, skip_serializing_if = "is_false")]
    pub nocopy: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subpath: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TmpfsOptions {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<u32>,
}

/// A service's `secrets:`/`configs:` entry (short syntax: the source alone).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileRef {
    pub source: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    #[serde(
        default,
        deserialize_with = "de::opt_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub uid: Option<String>,
    #[serde(
        default,
        deserialize_with = "de::opt_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub gid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<u32>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnvFile {
    pub path: String,
    #[serde(default = "yes")]
    pub required: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Network {
    #[serde(
        default,
        deserialize_with = "de::opt_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub name: Option<String>,
    #[serde(
        default,
        deserialize_with = "de::opt_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub driver: Option<String>,
    #[serde(
        default,
        deserialize_with = "de::bool",
        skip_serializing_if = "is_false"
    )]
    pub external: bool,
    #[serde(
        default,
        deserialize_with = "de::bool",
        skip_serializing_if = "is_false"
    )]
    pub internal: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipam: Option<Ipam>,
    #[serde(
        default,
        deserialize_with = "de::labels",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub labels: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Ipam {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub driver: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub config: Vec<IpamConfig>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct IpamConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subnet: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_range: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Volume {
    #[serde(
        default,
        deserialize_with = "de::opt_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub name: Option<String>,
    #[serde(
        default,
        deserialize_with = "de::opt_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub driver: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub driver_opts: BTreeMap<String, String>,
    #[serde(
        default,
        deserialize_with = "de::bool",
        skip_serializing_if = "is_false"
    )]
    pub external: bool,
    #[serde(
        default,
        deserialize_with = "de::labels",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub labels: BTreeMap<String, String>,
}

/// A top-level secret or config: a file (made absolute), an environment variable, or inline
/// content (configs).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FileObject {
    #[serde(
        default,
        deserialize_with = "de::opt_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub name: Option<String>,
    #[serde(
        default,
        deserialize_with = "de::opt_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub file: Option<String>,
    #[serde(
        default,
        deserialize_with = "de::opt_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub environment: Option<String>,
    #[serde(
        default,
        deserialize_with = "de::opt_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub content: Option<String>,
    #[serde(
        default,
        deserialize_with = "de::bool",
        skip_serializing_if = "is_false"
    )]
    pub external: bool,
}
