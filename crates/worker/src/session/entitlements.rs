//! BuildKit's entitlements: what a step may only do when the user grants it (`--allow`).

use super::error::at;
use super::Entitlements;
use kiln_opgraph::{Definition, NetworkMode, Op, Security, SourceLocation};

/// An entitlement a step can need.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Entitlement {
    /// `network.host`: `RUN --network=host`.
    NetworkHost,
    /// `security.insecure`: `RUN --security=insecure`.
    SecurityInsecure,
}

impl Entitlement {
    /// Its name, as `--allow` takes it.
    pub fn name(self) -> &'static str {
        match self {
            Entitlement::NetworkHost => "network.host",
            Entitlement::SecurityInsecure => "security.insecure",
        }
    }
}

impl std::fmt::Display for Entitlement {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A step needs an entitlement that was not granted. The message is BuildKit's wording
/// ("network.host is not allowed") after the step, with a hint naming the flag.
#[derive(Debug, thiserror::Error)]
#[error(
    "{}{step}: {entitlement} is not allowed\nhint: pass `--allow {entitlement}` to grant it",
    at(location.as_ref())
)]
pub struct EntitlementError {
    /// The step's display name.
    pub step: String,
    /// Its Dockerfile location.
    pub location: Option<SourceLocation>,
    /// What it needs.
    pub entitlement: Entitlement,
}

impl Entitlements {
    /// The first exec op of `def` (in digest order) that needs an entitlement not granted.
    ///
    /// # Errors
    /// That op, as an [`EntitlementError`].
    pub fn check(self, def: &Definition) -> Result<(), EntitlementError> {
        for v in def.vertices.values() {
            let Op::Exec(e) = &v.op else { continue };
            let needed = if e.network == NetworkMode::Host && !self.network_host {
                Entitlement::NetworkHost
            } else if e.security == Security::Insecure && !self.security_insecure {
                Entitlement::SecurityInsecure
            } else {
                continue;
            };
            return Err(EntitlementError {
                step: v.meta.name.clone(),
                location: v.meta.location.clone(),
                entitlement: needed,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_opgraph::{ExecOp, VertexMeta};

    fn def(network: NetworkMode, security: Security) -> Definition {
        let mut d = Definition::new();
        let base = d.add(Op::Scratch, VertexMeta::default());
        let run = d.add(
            Op::Exec(ExecOp {
                rootfs: base,
                args: vec!["/bin/true".into()],
                env: vec![],
                cwd: "/".into(),
                user: String::new(),
                network,
                mounts: vec![],
                security,
            }),
            VertexMeta {
                name: "[2/2] RUN true".into(),
                location: Some(SourceLocation {
                    file: "Dockerfile".into(),
                    line: 2,
                    end_line: 2,
                }),
                ignore_cache: false,
            },
        );
        d.root = Some(run.vertex);
        d
    }

    #[test]
    fn host_network_needs_network_host() {
        let d = def(NetworkMode::Host, Security::Sandbox);
        let e = Entitlements::default().check(&d).unwrap_err();
        assert_eq!(e.entitlement, Entitlement::NetworkHost);
        assert_eq!(
            e.to_string(),
            "Dockerfile:2: [2/2] RUN true: network.host is not allowed\n\
             hint: pass `--allow network.host` to grant it"
        );
        let granted = Entitlements {
            network_host: true,
            ..Entitlements::default()
        };
        assert!(granted.check(&d).is_ok());
    }

    #[test]
    fn insecure_needs_security_insecure() {
        let d = def(NetworkMode::Default, Security::Insecure);
        let e = Entitlements::default().check(&d).unwrap_err();
        assert_eq!(e.entitlement, Entitlement::SecurityInsecure);
        assert_eq!(
            e.to_string(),
            "Dockerfile:2: [2/2] RUN true: security.insecure is not allowed\n\
             hint: pass `--allow security.insecure` to grant it"
        );
        let granted = Entitlements {
            security_insecure: true,
            ..Entitlements::default()
        };
        assert!(granted.check(&d).is_ok());
    }

    #[test]
    fn a_step_without_location_is_named_alone() {
        let mut d = def(NetworkMode::Host, Security::Insecure);
        for v in d.vertices.values_mut() {
            v.meta.location = None;
        }
        // network.host is checked first, as BuildKit does.
        assert_eq!(
            Entitlements::default().check(&d).unwrap_err().to_string(),
            "[2/2] RUN true: network.host is not allowed\n\
             hint: pass `--allow network.host` to grant it"
        );
        assert!(Entitlements::default().check(&Definition::new()).is_ok());
    }
}
