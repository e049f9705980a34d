//! `ps --filter KEY=VALUE`: docker's container filters that kiln has the facts for — `id`
//! (prefix), `name` (substring), `label` (`KEY` or `KEY=VALUE`), `status`, `exited`,
//! `ancestor` (the image as named, `busybox` meaning `busybox:latest`) and `health`. Values
//! of one key are alternatives; different keys must all match (docker's rule).

use crate::container::Status;
use crate::{Container, HealthStatus};
use kiln_oci::Reference;

/// A `--filter` that cannot be used, in docker's words.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FilterError {
    /// Not `KEY=VALUE`.
    #[error("bad format of filter (expected name=value)")]
    Format,
    /// A key docker's `ps` does not have, or one kiln has no facts for.
    #[error("invalid filter '{0}'")]
    Key(String),
    /// A value the key does not take.
    #[error("Unrecognised filter value for {key}: {value}")]
    Value {
        /// The key.
        key: String,
        /// The value.
        value: String,
    },
    /// `exited=` that is not a number.
    #[error("invalid filter 'exited={0}'")]
    Exited(String),
}

const STATUSES: &[&str] = &[
    "created",
    "restarting",
    "running",
    "removing",
    "paused",
    "exited",
    "dead",
];
const HEALTH: &[&str] = &["starting", "healthy", "unhealthy", "none"];

/// Parsed `--filter` values.
#[derive(Clone, Debug, Default)]
pub struct Filters {
    pairs: Vec<(String, String)>,
}

impl Filters {
    /// Parses every `--filter` value (`KEY=VALUE`), checking keys and values.
    pub fn parse(filters: &[String]) -> Result<Filters, FilterError> {
        let mut pairs = Vec::new();
        for f in filters {
            let (k, v) = f.split_once('=').ok_or(FilterError::Format)?;
            let (k, v) = (k.trim().to_ascii_lowercase(), v.to_string());
            let bad = || FilterError::Value {
                key: k.clone(),
                value: v.clone(),
            };
            match k.as_str() {
                "id" | "name" | "label" | "ancestor" => {}
                "status" if STATUSES.contains(&v.as_str()) => {}
                "health" if HEALTH.contains(&v.as_str()) => {}
                "status" | "health" => return Err(bad()),
                "exited" if v.parse::<i32>().is_err() => return Err(FilterError::Exited(v)),
                "exited" => {}
                _ => return Err(FilterError::Key(k)),
            }
            pairs.push((k, v));
        }
        Ok(Filters { pairs })
    }

    /// Whether a `status` filter is given (docker's `ps` then lists stopped containers too).
    pub fn has_status(&self) -> bool {
        self.pairs.iter().any(|(k, _)| k == "status")
    }

    /// Whether `c` passes every filter key.
    pub fn matches(&self, c: &Container) -> bool {
        let mut keys: Vec<&str> = self.pairs.iter().map(|(k, _)| k.as_str()).collect();
        keys.dedup();
        keys.iter().all(|key| {
            self.pairs
                .iter()
                .filter(|(k, _)| k == key)
                .any(|(k, v)| one(c, k, v))
        })
    }
}

/// docker's `State.Status` of a container.
fn status(c: &Container) -> &'static str {
    let running = c.is_running();
    match c.state.status {
        Status::Running if running && c.state.restarting => "restarting",
        Status::Running if running => "running",
        Status::Created => "created",
        Status::Running | Status::Exited => "exited",
    }
}

/// `busybox` and `docker.io/library/busybox:latest` name the same image.
fn same_image(a: &str, b: &str) -> bool {
    match (Reference::parse(a), Reference::parse(b)) {
        (Ok(a), Ok(b)) => a.to_string() == b.to_string(),
        _ => a == b,
    }
}

fn one(c: &Container, key: &str, value: &str) -> bool {
    match key {
        "id" => c.id().starts_with(value),
        "name" => c.config.name.contains(value.trim_start_matches('/')),
        "label" => match value.split_once('=') {
            Some((k, v)) => c.config.labels.get(k).is_some_and(|l| l == v),
            None => c.config.labels.contains_key(value),
        },
        "status" => status(c) == value,
        "exited" => status(c) == "exited" && value.parse::<i32>().ok() == c.state.exit_code,
        "ancestor" => same_image(&c.config.image, value),
        "health" => {
            let h = match c.health().map(|h| h.status) {
                None => "none",
                Some(HealthStatus::Starting) => "starting",
                Some(HealthStatus::Healthy) => "healthy",
                Some(HealthStatus::Unhealthy) => "unhealthy",
            };
            h == value
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::container::{Config, State};

    fn container(name: &str, image: &str, status: Status, code: Option<i32>) -> Container {
        let dir = std::path::PathBuf::from("/nonexistent-kiln");
        Container {
            config: Config {
                image: image.into(),
                labels: [("tier".to_string(), "web".to_string())].into(),
                ..Config::for_test(&format!("ab{name}"), name, &dir)
            },
            state: State {
                status,
                exit_code: code,
                ..State::default()
            },
            dir,
        }
    }

    fn f(v: &[&str]) -> Filters {
        Filters::parse(&v.iter().map(ToString::to_string).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn keys_are_anded_and_values_ored() {
        let web = container("web1", "busybox", Status::Exited, Some(3));
        let db = container("db", "docker.io/library/redis:7", Status::Created, None);
        assert!(f(&["name=web"]).matches(&web));
        assert!(!f(&["name=web"]).matches(&db));
        assert!(f(&["name=web", "name=db"]).matches(&db));
        assert!(!f(&["name=web", "status=created"]).matches(&web));
        assert!(f(&["status=exited", "exited=3"]).matches(&web));
        assert!(!f(&["exited=0"]).matches(&web));
        assert!(f(&["status=created"]).matches(&db));
        assert!(f(&["label=tier"]).matches(&db));
        assert!(f(&["label=tier=web"]).matches(&db));
        assert!(!f(&["label=tier=db"]).matches(&db));
        assert!(f(&["ancestor=busybox:latest"]).matches(&web));
        assert!(f(&["ancestor=redis:7"]).matches(&db));
        assert!(!f(&["ancestor=redis"]).matches(&db));
        assert!(f(&["id=abweb"]).matches(&web));
        assert!(f(&["health=none"]).matches(&web));
        assert!(!f(&["health=healthy"]).matches(&web));
        assert!(f(&["status=exited"]).has_status());
    }

    #[test]
    fn bad_filters_in_dockers_words() {
        let e = |v: &str| Filters::parse(&[v.to_string()]).unwrap_err().to_string();
        assert_eq!(e("name"), "bad format of filter (expected name=value)");
        assert_eq!(e("colour=red"), "invalid filter 'colour'");
        assert_eq!(e("status=up"), "Unrecognised filter value for status: up");
        assert_eq!(e("health=ok"), "Unrecognised filter value for health: ok");
        assert_eq!(e("exited=x"), "invalid filter 'exited=x'");
    }
}
