//! From a loaded project to the resources `up` makes, named and labelled as Docker Compose
//! names them, so `down` (and `docker compose` users) find them again from labels alone:
//! networks `<project>_<key>`, volumes `<project>_<key>`, containers
//! `<project>-<service>-<n>`, images built for services without `image:` tagged
//! `<project>-<service>`, and `com.docker.compose.*` labels with a config hash per service
//! (what decides, as in docker/compose's convergence, whether a container is recreated).
//! Pure data: nothing here touches the store or a container.

use crate::error::ComposeError;
use crate::load::Loaded;
use crate::model::{DependsOn, Project, Service};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};

pub const LABEL_PROJECT: &str = "com.docker.compose.project";
pub const LABEL_SERVICE: &str = "com.docker.compose.service";
pub const LABEL_CONFIG_HASH: &str = "com.docker.compose.config-hash";
pub const LABEL_CONTAINER_NUMBER: &str = "com.docker.compose.container-number";
pub const LABEL_ONEOFF: &str = "com.docker.compose.oneoff";
pub const LABEL_WORKING_DIR: &str = "com.docker.compose.project.working_dir";
pub const LABEL_CONFIG_FILES: &str = "com.docker.compose.project.config_files";
pub const LABEL_DEPENDS_ON: &str = "com.docker.compose.depends_on";
pub const LABEL_NETWORK: &str = "com.docker.compose.network";
pub const LABEL_VOLUME: &str = "com.docker.compose.volume";
pub const LABEL_VERSION: &str = "com.docker.compose.version";

/// The most containers one service may ask for: a hostile `scale: 4294967295` must not make
/// the planner allocate billions of plans.
pub const MAX_REPLICAS: u64 = 1000;

/// What `up` makes for a project (or for some of its services and their dependencies).
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub project: String,
    pub networks: Vec<NetworkPlan>,
    pub volumes: Vec<VolumePlan>,
    /// Images to build, one per service with `build:` (all in one solver run).
    pub builds: Vec<BuildPlan>,
    /// Services in start order (dependencies first).
    pub services: Vec<ServicePlan>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct NetworkPlan {
    /// The key in the file (`default`, `backnet`).
    pub key: String,
    /// The network's name (`<project>_<key>`, or `name:`; an external one's own).
    pub name: String,
    /// Only looked up, never created or removed.
    pub external: bool,
    pub internal: bool,
    pub subnets: Vec<String>,
    pub labels: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct VolumePlan {
    pub key: String,
    pub name: String,
    pub external: bool,
    pub driver: String,
    pub labels: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct BuildPlan {
    pub service: String,
    /// The tag the image gets (`image:`, else `<project>-<service>`).
    pub tag: String,
    pub context: String,
    pub dockerfile: Option<String>,
    pub dockerfile_inline: Option<String>,
    /// Build args; a name without a value in the file takes the environment's, and is left
    /// out when the environment has none.
    pub args: BTreeMap<String, String>,
    pub target: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub cache_from: Vec<String>,
    pub cache_to: Vec<String>,
    pub network: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ServicePlan {
    pub name: String,
    /// The image the containers run.
    pub image: String,
    pub config_hash: String,
    pub depends_on: BTreeMap<String, DependsOn>,
    /// The networks joined: network name → aliases (the service name is always one).
    pub networks: BTreeMap<String, Vec<String>>,
    pub containers: Vec<ContainerPlan>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ContainerPlan {
    pub name: String,
    pub number: u64,
    pub labels: BTreeMap<String, String>,
}

/// The service's config hash: SHA-256 of its normalised form, without what changes no
/// container (`scale`/`deploy.replicas`, `depends_on`, `profiles`, `pull_policy`). `up`
/// compares it with the label of a running container to decide whether to recreate it (a
/// rebuilt image changes the container's image, which `up` compares too).
pub fn config_hash(service: &Service) -> String {
    let mut s = service.clone();
    s.scale = None;
    if let Some(d) = &mut s.deploy {
        d.replicas = None;
    }
    s.depends_on.clear();
    s.profiles.clear();
    s.pull_policy = None;
    let bytes = serde_json::to_vec(&s).expect("a service serialises");
    hex::encode(Sha256::digest(&bytes))
}

/// The services to start for `selected` (all when empty) with their dependencies, in an order
/// where every service comes after what it depends on; ties in name order. A cycle is an
/// error naming it.
pub fn start_order(project: &Project, selected: &[String]) -> Result<Vec<String>, ComposeError> {
    let services = &project.services;
    for s in selected {
        if !services.contains_key(s) {
            return Err(ComposeError::NoSuchService(s.clone()));
        }
    }
    let mut wanted: BTreeSet<String> = if selected.is_empty() {
        services.keys().cloned().collect()
    } else {
        selected.iter().cloned().collect()
    };
    let mut stack: Vec<String> = wanted.iter().cloned().collect();
    while let Some(s) = stack.pop() {
        for dep in services[&s].depends_on.keys() {
            if services.contains_key(dep) && wanted.insert(dep.clone()) {
                stack.push(dep.clone());
            }
        }
    }
    let mut order = Vec::new();
    let mut state: BTreeMap<&str, u8> = BTreeMap::new(); // 1 visiting, 2 done
    fn visit<'a>(
        name: &'a str,
        project: &'a Project,
        state: &mut BTreeMap<&'a str, u8>,
        path: &mut Vec<&'a str>,
        order: &mut Vec<String>,
    ) -> Result<(), ComposeError> {
        match state.get(name) {
            Some(2) => return Ok(()),
            Some(_) => {
                let start = path.iter().position(|p| *p == name).unwrap_or(0);
                let mut cycle: Vec<String> =
                    path[start..].iter().map(|s| (*s).to_string()).collect();
                cycle.push(name.to_string());
                return Err(ComposeError::Cycle(cycle));
            }
            None => {}
        }
        state.insert(name, 1);
        path.push(name);
        for dep in project.services[name].depends_on.keys() {
            if project.services.contains_key(dep) {
                visit(dep, project, state, path, order)?;
            }
        }
        path.pop();
        state.insert(name, 2);
        order.push(name.to_string());
        Ok(())
    }
    for name in &wanted {
        visit(name, project, &mut state, &mut Vec::new(), &mut order)?;
    }
    Ok(order)
}

/// The plan for `selected` services (all when empty) and what they depend on.
pub fn plan(loaded: &Loaded, selected: &[String]) -> Result<Plan, ComposeError> {
    let project = &loaded.project;
    let name = &project.name;
    let order = start_order(project, selected)?;
    let version = env!("CARGO_PKG_VERSION").to_string();
    let base_labels = |kind: &str, key: &str| {
        BTreeMap::from([
            (LABEL_PROJECT.to_string(), name.clone()),
            (kind.to_string(), key.to_string()),
            (LABEL_VERSION.to_string(), version.clone()),
        ])
    };
    let used_networks: BTreeSet<&String> = order
        .iter()
        .flat_map(|s| project.services[s].networks.keys())
        .collect();
    let networks = project
        .networks
        .iter()
        .filter(|(k, _)| used_networks.contains(k))
        .map(|(k, n)| {
            let mut labels = base_labels(LABEL_NETWORK, k);
            labels.extend(n.labels.clone());
            NetworkPlan {
                key: k.clone(),
                name: n.name.clone().unwrap_or_else(|| format!("{name}_{k}")),
                external: n.external,
                internal: n.internal,
                subnets: n
                    .ipam
                    .iter()
                    .flat_map(|i| i.config.iter().filter_map(|c| c.subnet.clone()))
                    .collect(),
                labels,
            }
        })
        .collect();
    let volumes = project
        .volumes
        .iter()
        .map(|(k, v)| {
            let mut labels = base_labels(LABEL_VOLUME, k);
            labels.extend(v.labels.clone());
            VolumePlan {
                key: k.clone(),
                name: v.name.clone().unwrap_or_else(|| format!("{name}_{k}")),
                external: v.external,
                driver: v.driver.clone().unwrap_or_else(|| "local".into()),
                labels,
            }
        })
        .collect();
    let mut builds = Vec::new();
    let mut services = Vec::new();
    let config_files = loaded
        .config_files
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(",");
    for sname in &order {
        let s = &project.services[sname];
        let image = s.image.clone().unwrap_or_else(|| format!("{name}-{sname}"));
        if let Some(b) = &s.build {
            builds.push(BuildPlan {
                service: sname.clone(),
                tag: image.clone(),
                context: b.context.clone(),
                dockerfile: b.dockerfile.clone(),
                dockerfile_inline: b.dockerfile_inline.clone(),
                args: b
                    .args
                    .iter()
                    .filter_map(|(k, v)| {
                        v.clone()
                            .or_else(|| loaded.environment.get(k).cloned())
                            .map(|v| (k.clone(), v))
                    })
                    .collect(),
                target: b.target.clone(),
                labels: b.labels.clone(),
                cache_from: b.cache_from.clone(),
                cache_to: b.cache_to.clone(),
                network: b.network.clone(),
            });
        }
        if s.replicas() > MAX_REPLICAS {
            return Err(ComposeError::TooManyReplicas {
                service: sname.clone(),
                replicas: s.replicas(),
                max: MAX_REPLICAS,
            });
        }
        let hash = config_hash(s);
        let depends = s
            .depends_on
            .iter()
            .map(|(d, o)| format!("{d}:{}:{}", o.condition, o.restart))
            .collect::<Vec<_>>()
            .join(",");
        let containers = (1..=s.replicas())
            .map(|n| {
                let mut labels = s.labels.clone();
                labels.extend([
                    (LABEL_PROJECT.to_string(), name.clone()),
                    (LABEL_SERVICE.to_string(), sname.clone()),
                    (LABEL_CONTAINER_NUMBER.to_string(), n.to_string()),
                    (LABEL_CONFIG_HASH.to_string(), hash.clone()),
                    (LABEL_ONEOFF.to_string(), "False".to_string()),
                    (
                        LABEL_WORKING_DIR.to_string(),
                        loaded.working_dir.display().to_string(),
                    ),
                    (LABEL_CONFIG_FILES.to_string(), config_files.clone()),
                    (LABEL_DEPENDS_ON.to_string(), depends.clone()),
                    (LABEL_VERSION.to_string(), version.clone()),
                ]);
                ContainerPlan {
                    name: s
                        .container_name
                        .clone()
                        .unwrap_or_else(|| format!("{name}-{sname}-{n}")),
                    number: n,
                    labels,
                }
            })
            .collect();
        let networks = s
            .networks
            .iter()
            .map(|(k, sn)| {
                let net = project.networks[k]
                    .name
                    .clone()
                    .unwrap_or_else(|| format!("{name}_{k}"));
                let mut aliases = vec![sname.clone()];
                if let Some(sn) = sn {
                    aliases.extend(sn.aliases.iter().cloned());
                }
                (net, aliases)
            })
            .collect();
        services.push(ServicePlan {
            name: sname.clone(),
            image,
            config_hash: hash,
            depends_on: s.depends_on.clone(),
            networks,
            containers,
        });
    }
    Ok(Plan {
        project: name.clone(),
        networks,
        volumes,
        builds,
        services,
    })
}
