//! The image config: what ENV, LABEL, WORKDIR, CMD, ENTRYPOINT, EXPOSE, VOLUME, USER,
//! STOPSIGNAL, HEALTHCHECK (and SHELL, ONBUILD, MAINTAINER in `dispatch`) change, and the
//! history entry each adds.

use super::{join_path, Conv, ConvertError, PortError, Run};
use crate::instructions::{CommandLine, HealthcheckInstr, KeyValues, Keyword, Located, Span};
use crate::Error;
use kiln_oci::spec::{Config, ImageConfiguration};
use kiln_opgraph::{FileAction, FileOp, Op};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

/// The image config fields the Dockerfile changes, including those `oci-spec` lacks.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct ImgConfig {
    /// `KEY=value`.
    pub(crate) env: Vec<String>,
    /// Cmd.
    pub(crate) cmd: Option<Vec<String>>,
    /// Entrypoint.
    pub(crate) entrypoint: Option<Vec<String>>,
    /// WorkingDir.
    pub(crate) working_dir: String,
    /// User.
    pub(crate) user: String,
    /// ExposedPorts keys (`80/tcp`).
    pub(crate) exposed_ports: Vec<String>,
    /// Volumes.
    pub(crate) volumes: Vec<String>,
    /// Labels.
    pub(crate) labels: BTreeMap<String, String>,
    /// StopSignal.
    pub(crate) stop_signal: Option<String>,
    /// OnBuild triggers.
    pub(crate) on_build: Vec<String>,
    /// Healthcheck (Docker's JSON form).
    pub(crate) healthcheck: Option<Value>,
    /// Shell.
    pub(crate) shell: Option<Vec<String>>,
    /// Author (MAINTAINER).
    pub(crate) author: Option<String>,
}

impl ImgConfig {
    pub(crate) fn from_oci(c: &ImageConfiguration) -> Self {
        let mut out = ImgConfig {
            author: c.author().clone(),
            ..Default::default()
        };
        if let Some(cfg) = c.config() {
            out.env = cfg.env().clone().unwrap_or_default();
            out.cmd = cfg.cmd().clone();
            out.entrypoint = cfg.entrypoint().clone();
            out.working_dir = cfg.working_dir().clone().unwrap_or_default();
            out.user = cfg.user().clone().unwrap_or_default();
            out.exposed_ports = cfg.exposed_ports().clone().unwrap_or_default();
            out.volumes = cfg.volumes().clone().unwrap_or_default();
            out.labels = cfg
                .labels()
                .clone()
                .unwrap_or_default()
                .into_iter()
                .collect::<BTreeMap<_, _>>();
            out.stop_signal = cfg.stop_signal().clone();
        }
        out
    }

    pub(crate) fn get_env(&self, k: &str) -> Option<String> {
        self.env.iter().rev().find_map(|e| match e.split_once('=') {
            Some((n, v)) if n == k => Some(v.to_string()),
            None if e == k => Some(String::new()),
            _ => None,
        })
    }

    fn set_env(&mut self, k: &str, v: &str) {
        let entry = format!("{k}={v}");
        for e in &mut self.env {
            if e.split_once('=').map_or(e.as_str(), |(n, _)| n) == k {
                *e = entry;
                return;
            }
        }
        self.env.push(entry);
    }

    /// Writes these fields into an oci-spec config.
    pub(crate) fn to_oci(&self, base: &ImageConfiguration) -> ImageConfiguration {
        let mut out = base.clone();
        let mut c = Config::default();
        let some_vec = |v: &Vec<String>| if v.is_empty() { None } else { Some(v.clone()) };
        c.set_env(some_vec(&self.env));
        c.set_cmd(self.cmd.clone());
        c.set_entrypoint(self.entrypoint.clone());
        c.set_working_dir(if self.working_dir.is_empty() {
            None
        } else {
            Some(self.working_dir.clone())
        });
        c.set_user(if self.user.is_empty() {
            None
        } else {
            Some(self.user.clone())
        });
        c.set_exposed_ports(some_vec(&self.exposed_ports));
        c.set_volumes(some_vec(&self.volumes));
        c.set_labels(if self.labels.is_empty() {
            None
        } else {
            Some(self.labels.clone().into_iter().collect())
        });
        c.set_stop_signal(self.stop_signal.clone());
        out.set_config(Some(c));
        out.set_author(self.author.clone());
        out.set_architecture(kiln_oci::spec::Arch::Amd64);
        out.set_os(kiln_oci::spec::Os::Linux);
        out
    }

    /// The fields oci-spec cannot hold: `Healthcheck`, `Shell`, `OnBuild`.
    pub(crate) fn extra(&self) -> Map<String, Value> {
        let mut m = Map::new();
        if let Some(h) = &self.healthcheck {
            m.insert("Healthcheck".into(), h.clone());
        }
        if let Some(s) = &self.shell {
            m.insert("Shell".into(), json!(s));
        }
        if !self.on_build.is_empty() {
            m.insert("OnBuild".into(), json!(self.on_build));
        }
        m
    }
}

impl Conv<'_> {
    /// The shell of the shell forms: SHELL's, or `/bin/sh -c`.
    pub(super) fn shell(run: &Run) -> Vec<String> {
        run.config
            .shell
            .clone()
            .unwrap_or_else(|| vec!["/bin/sh".into(), "-c".into()])
    }

    /// ENV and LABEL.
    pub(super) fn key_values(
        &self,
        run: &mut Run,
        span: Span,
        keyword: Keyword,
        kv: &KeyValues,
    ) -> Result<(), Error> {
        let mut parts = vec![];
        for (k, v) in &kv.pairs {
            let k = self.word(run, k, span)?;
            let v = self.word(run, v, span)?;
            if k.is_empty() {
                return Err(self.err(span, ConvertError::BlankName(keyword)));
            }
            parts.push((k, v));
        }
        let mut desc = vec![];
        for (k, v) in parts {
            if keyword == Keyword::Env {
                run.config.set_env(&k, &v);
                desc.push(format!("{k}={v}"));
            } else {
                desc.push(format!(
                    "{}={}",
                    go_quote_if_needed(&k),
                    go_quote_if_needed(&v)
                ));
                run.config.labels.insert(k, v);
            }
        }
        Self::push_history(run, format!("{keyword} {}", desc.join(" ")), None);
        Ok(())
    }

    /// WORKDIR: the config and a directory made in the filesystem.
    pub(super) fn workdir(&mut self, run: &mut Run, ins: &Located, raw: &str) -> Result<(), Error> {
        let p = self.word(run, raw, ins.span)?;
        let wd = join_path(&run.config.working_dir, &p);
        run.config.working_dir.clone_from(&wd);
        let name = self.step_name(run, ins);
        let meta = self.meta(name, ins.span);
        let st = self.def.add(
            Op::File(FileOp {
                base: run.state.clone(),
                actions: vec![FileAction::Mkdir {
                    path: wd.clone(),
                    mode: 0o755,
                    chown: None,
                }],
            }),
            meta,
        );
        run.state = st.clone();
        Self::push_history(run, format!("WORKDIR {wd}"), Some(&st));
        Ok(())
    }

    /// CMD and ENTRYPOINT (an ENTRYPOINT resets a CMD inherited from the base).
    pub(super) fn command(&self, run: &mut Run, c: &CommandLine, keyword: Keyword) {
        let v = if c.json {
            c.args.clone()
        } else if c.args.is_empty() {
            vec![]
        } else {
            let mut s = Self::shell(run);
            s.push(c.args.join(" "));
            s
        };
        let created = format!(
            "{keyword} {}",
            serde_json::to_string(&v).unwrap_or_default()
        );
        if keyword == Keyword::Cmd {
            run.config.cmd = Some(v);
            run.cmd_set = true;
        } else {
            run.config.entrypoint = Some(v);
            if !run.cmd_set {
                run.config.cmd = None;
            }
        }
        Self::push_history(run, created, None);
    }

    pub(super) fn expose(&self, run: &mut Run, span: Span, ports: &[String]) -> Result<(), Error> {
        let mut added = vec![];
        for a in ports {
            for w in self.words(run, a, span)? {
                for p in parse_port_spec(&w).map_err(|e| self.err(span, e))? {
                    if !run.config.exposed_ports.contains(&p) {
                        run.config.exposed_ports.push(p.clone());
                    }
                    added.push(p);
                }
            }
        }
        added.sort();
        added.dedup();
        let m: Vec<String> = added.iter().map(|p| format!("{p}:{{}}")).collect();
        Self::push_history(run, format!("EXPOSE map[{}]", m.join(" ")), None);
        Ok(())
    }

    pub(super) fn volume(&self, run: &mut Run, span: Span, paths: &[String]) -> Result<(), Error> {
        let mut vols = vec![];
        for a in paths {
            let v = self.word(run, a, span)?;
            let v = v.trim().to_string();
            if v.is_empty() {
                return Err(self.err(span, ConvertError::EmptyVolume));
            }
            if !run.config.volumes.contains(&v) {
                run.config.volumes.push(v.clone());
            }
            vols.push(v);
        }
        Self::push_history(run, format!("VOLUME [{}]", vols.join(" ")), None);
        Ok(())
    }

    pub(super) fn stop_signal(&self, run: &mut Run, span: Span, raw: &str) -> Result<(), Error> {
        let s = self.word(run, raw, span)?;
        if s.is_empty() {
            return Err(self.err(span, ConvertError::NoSignal));
        }
        run.config.stop_signal = Some(s.clone());
        Self::push_history(run, format!("STOPSIGNAL {s}"), None);
        Ok(())
    }

    /// HEALTHCHECK in Docker's JSON form (durations in nanoseconds; 0 values left out).
    pub(super) fn healthcheck(&self, run: &mut Run, h: &HealthcheckInstr) -> Result<(), Error> {
        let value = match &h.check {
            None => json!({"Test": ["NONE"]}),
            Some(h) => {
                let mut m = Map::new();
                m.insert("Test".into(), json!(self.checked(&h.test)?));
                for (d, key) in [
                    (&h.interval, "Interval"),
                    (&h.timeout, "Timeout"),
                    (&h.start_period, "StartPeriod"),
                    (&h.start_interval, "StartInterval"),
                ] {
                    if let Some(d) = self.checked(d)? {
                        // `Checked` made sure it fits Docker's int64 of nanoseconds.
                        let ns = i64::try_from(d.as_nanos()).unwrap_or(i64::MAX);
                        m.insert(key.into(), json!(ns));
                    }
                }
                if let Some(r) = self.checked(&h.retries)? {
                    m.insert("Retries".into(), json!(r));
                }
                Value::Object(m)
            }
        };
        run.config.healthcheck = Some(value);
        Self::push_history(run, format!("HEALTHCHECK {}", h.text), None);
        Ok(())
    }
}

fn go_quote_if_needed(s: &str) -> String {
    if s.is_empty() || s.contains(|c: char| c.is_whitespace() || c == '"') {
        crate::parser::go_quote(s)
    } else {
        s.to_string()
    }
}

/// `80`, `80/tcp`, `53/udp`, `8000-8002` → `80/tcp` keys.
pub fn parse_port_spec(s: &str) -> Result<Vec<String>, PortError> {
    let (ports, proto) = match s.split_once('/') {
        Some((p, proto)) => (p, proto.to_lowercase()),
        None => (s, "tcp".to_string()),
    };
    if !matches!(proto.as_str(), "tcp" | "udp" | "sctp") {
        return Err(PortError::Proto(proto));
    }
    // An `ip:host:container` form keeps only the container port.
    let ports = ports.rsplit(':').next().unwrap_or(ports);
    let (lo, hi) = match ports.split_once('-') {
        Some((a, b)) => (a, b),
        None => (ports, ports),
    };
    let bad = || PortError::Port(ports.to_string());
    let lo: u32 = lo.parse().map_err(|_| bad())?;
    let hi: u32 = hi.parse().map_err(|_| bad())?;
    if hi < lo || hi > 65535 {
        return Err(bad());
    }
    Ok((lo..=hi).map(|p| format!("{p}/{proto}")).collect())
}
