//! `--log-driver` and `--log-opt`: docker's `HostConfig.LogConfig`, checked as docker's
//! json-file driver checks it.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Where a container's output goes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LogDriver {
    /// docker's json-file: `<id>-json.log` in the container directory (`local` is taken as
    /// this one too: kiln has no second on-disk format).
    #[default]
    JsonFile,
    /// Nowhere: `logs` fails, as docker's `none`.
    None,
}

impl LogDriver {
    /// docker's name of it.
    pub fn name(self) -> &'static str {
        match self {
            LogDriver::JsonFile => "json-file",
            LogDriver::None => "none",
        }
    }
}

/// A bad `--log-driver` or `--log-opt` (docker's daemon messages).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LogConfigError {
    /// A driver kiln does not have.
    #[error(
        "logging driver `{0}` is not supported (kiln has json-file, local (as json-file) and \
         none)"
    )]
    UnknownDriver(String),
    /// `--log-opt` without `=`.
    #[error("invalid key value pair format in log opt: {0}")]
    BadPair(String),
    /// An option the driver does not know.
    #[error("unknown log opt '{key}' for {driver} log driver")]
    UnknownOpt {
        /// The option.
        key: String,
        /// The driver's name.
        driver: &'static str,
    },
    /// An option docker knows and kiln does not carry out.
    #[error("log opt '{0}' is not supported by kiln (only max-size and max-file are)")]
    Unsupported(String),
    /// `max-size` is not a size.
    #[error("invalid max-size `{0}`: give a size such as 10m")]
    BadSize(String),
    /// `max-size` is 0.
    #[error("max-size must be a positive number")]
    ZeroSize,
    /// `max-file` is not a number.
    #[error("invalid max-file `{0}`: give a number")]
    BadCount(String),
    /// `max-file` is 0.
    #[error("max-file cannot be less than 1")]
    ZeroCount,
}

/// A container's logging: its driver and options, as given (`inspect` shows them) and as
/// read.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogConfig {
    /// The driver.
    pub driver: LogDriver,
    /// `--log-opt K=V`, as given.
    #[serde(default)]
    pub opts: BTreeMap<String, String>,
    /// `max-size` in bytes: the file is rotated once it is this long (no limit: `None`).
    #[serde(default)]
    pub max_size: Option<u64>,
    /// `max-file`: how many files (the current one and the rotated ones) are kept.
    #[serde(default = "one")]
    pub max_file: u32,
}

fn one() -> u32 {
    1
}

impl Default for LogConfig {
    /// json-file without rotation: docker's default, and what containers made before
    /// `--log-driver` existed have.
    fn default() -> Self {
        LogConfig {
            driver: LogDriver::JsonFile,
            opts: BTreeMap::new(),
            max_size: None,
            max_file: 1,
        }
    }
}

impl LogConfig {
    /// `--log-driver DRIVER` (`None`: json-file) with `--log-opt K=V…`.
    pub fn new(driver: Option<&str>, opts: &[String]) -> Result<LogConfig, LogConfigError> {
        let driver = match driver.unwrap_or("json-file") {
            "json-file" | "local" => LogDriver::JsonFile,
            "none" => LogDriver::None,
            other => return Err(LogConfigError::UnknownDriver(other.to_string())),
        };
        let mut config = LogConfig {
            driver,
            ..LogConfig::default()
        };
        for o in opts {
            let (k, v) = o
                .split_once('=')
                .ok_or_else(|| LogConfigError::BadPair(o.clone()))?;
            config.opts.insert(k.to_string(), v.to_string());
        }
        for (k, v) in &config.opts {
            if driver == LogDriver::None {
                return Err(LogConfigError::UnknownOpt {
                    key: k.clone(),
                    driver: driver.name(),
                });
            }
            match k.as_str() {
                "max-size" => {
                    // docker's json-file takes it with go-units' FromHumanSize.
                    let n = kiln_units::parse_human(v)
                        .map_err(|_| LogConfigError::BadSize(v.clone()))?;
                    if n == 0 {
                        return Err(LogConfigError::ZeroSize);
                    }
                    config.max_size = Some(n);
                }
                "max-file" => {
                    let n: u32 = v
                        .trim()
                        .parse()
                        .map_err(|_| LogConfigError::BadCount(v.clone()))?;
                    if n == 0 {
                        return Err(LogConfigError::ZeroCount);
                    }
                    config.max_file = n;
                }
                // Rotated files are not compressed: only "no" is carried out.
                "compress" if v == "false" => {}
                "compress" | "labels" | "labels-regex" | "env" | "env-regex" | "tag" => {
                    return Err(LogConfigError::Unsupported(format!("{k}={v}")));
                }
                _ => {
                    return Err(LogConfigError::UnknownOpt {
                        key: k.clone(),
                        driver: driver.name(),
                    })
                }
            }
        }
        Ok(config)
    }

    /// docker's `HostConfig.LogConfig`.
    pub fn inspect(&self) -> serde_json::Value {
        serde_json::json!({ "Type": self.driver.name(), "Config": self.opts })
    }
}
