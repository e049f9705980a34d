//! Admission of heavy ops (RUN steps).
//!
//! `jobs` slots are always there. With [`crate::SolveOptions::idle_jobs`] set (kiln's
//! default), a heavy op that finds every slot taken may still start while the machine's
//! CPUs sit idle: RUN steps that sleep, wait on the network or on a disk leave CPUs unused,
//! and holding the next step back then only makes the build longer (BuildKit runs every
//! ready step at once). Each sampling interval admits at most as many extra ops as CPUs
//! were idle in its sample, so newly started CPU-hungry steps show in the next sample
//! before others join, and never more than `idle_jobs` heavy ops run in all.
//!
//! An admitted op is *starting* until its worker says its command runs
//! ([`crate::ExecContext::command_started`]; at most [`STARTUP_GRACE`]). No extra op is
//! admitted while one is starting: setting up a sandbox keeps a CPU busy for a moment
//! whatever the command does after, so a sample then says nothing about the command, and
//! what the starting ones will do is unknown. Once they run, one sample decides for all
//! the waiting ops at once.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// How often a waiting heavy op asks whether a CPU is idle (two idle answers in a row admit
/// one: 2 ms apart, four 1 s busy loops on 2 CPUs still ran two at a time in every trial).
pub(crate) const INTERVAL: Duration = Duration::from_millis(2);

/// How long an admitted op counts as starting when its worker never says it started.
pub(crate) const STARTUP_GRACE: Duration = Duration::from_millis(100);

/// How long after its command started an op still counts as starting: the command itself
/// starts up (e.g. `sh -c` execs what it runs) before it shows what it does.
pub(crate) const SETTLE: Duration = Duration::from_millis(5);

/// Says how many CPUs are idle now.
#[derive(Clone)]
pub struct IdleProbe(Arc<dyn Fn() -> usize + Send + Sync>);

impl IdleProbe {
    /// A probe from a function (tests inject fixed answers).
    pub fn new(f: impl Fn() -> usize + Send + Sync + 'static) -> IdleProbe {
        IdleProbe(Arc::new(f))
    }

    /// Reads `procs_running` in `/proc/stat` (tasks running or ready to run right now) and
    /// leaves out this process's own threads (those running to ask, among them): the CPUs
    /// that other tasks leave free, on this sample and on the one before (the fewer of the
    /// two, so a momentary dip, e.g. a step between two processes, does not count). Without
    /// `/proc/stat` no CPU is idle.
    pub fn proc_stat() -> IdleProbe {
        let cpus = std::thread::available_parallelism().map_or(1, std::num::NonZero::get) as u64;
        let before = AtomicUsize::new(0);
        IdleProbe::new(move || {
            let now = procs_running().map_or(0, |n| {
                cpus.saturating_sub(n.saturating_sub(own_running_threads())) as usize
            });
            before.swap(now, Ordering::SeqCst).min(now)
        })
    }

    fn idle_cpus(&self) -> usize {
        (self.0)()
    }
}

impl std::fmt::Debug for IdleProbe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("IdleProbe")
    }
}

/// How many threads of this process are running or runnable now.
fn own_running_threads() -> u64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    tasks
        .flatten()
        .filter(|t| {
            // `pid (comm) S …`: the state follows the last `)`.
            std::fs::read_to_string(t.path().join("stat")).is_ok_and(|s| {
                s.rsplit_once(')')
                    .is_some_and(|(_, rest)| rest.trim_start().starts_with('R'))
            })
        })
        .count() as u64
}

/// `procs_running` from `/proc/stat`.
fn procs_running() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/stat").ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix("procs_running "))
        .and_then(|n| n.trim().parse().ok())
}

struct Extra {
    /// Heavy ops running in all may not exceed this.
    max: usize,
    probe: IdleProbe,
    in_use: Arc<AtomicUsize>,
    /// When the probe was last asked, and how many extra ops its answer still admits.
    window: Mutex<(Option<Instant>, usize)>,
}

/// The slots of one solve.
pub(crate) struct Slots {
    jobs: usize,
    sem: Arc<Semaphore>,
    extra: Option<Extra>,
    starting: Starting,
}

/// Admitted ops that may still be starting: the last id given, and id → (when admitted,
/// when their command started).
#[derive(Clone, Default)]
pub(crate) struct Starting(Arc<Mutex<(u64, StartTimes)>>);

type StartTimes = std::collections::HashMap<u64, (Instant, Option<Instant>)>;

impl Starting {
    fn add(&self) -> u64 {
        let mut g = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        g.0 += 1;
        let id = g.0;
        g.1.insert(id, (Instant::now(), None));
        id
    }
    fn started(&self, id: u64) {
        let mut g = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((_, started @ None)) = g.1.get_mut(&id) {
            *started = Some(Instant::now());
        }
    }
    fn remove(&self, id: u64) {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .1
            .remove(&id);
    }
    /// Whether an op is starting: admitted less than [`STARTUP_GRACE`] ago and not
    /// started, or started less than [`SETTLE`] ago.
    fn any(&self) -> bool {
        let mut g = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        g.1.retain(|_, (admitted, started)| match started {
            None => admitted.elapsed() < STARTUP_GRACE,
            Some(t) => t.elapsed() < SETTLE,
        });
        !g.1.is_empty()
    }
}

/// Tells the slots that a heavy op's command runs (see the module docs).
#[derive(Clone)]
pub(crate) struct StartSignal {
    starting: Starting,
    id: u64,
}

impl StartSignal {
    pub(crate) fn started(&self) {
        self.starting.started(self.id);
    }
}

/// A held slot; dropping it frees the slot.
pub(crate) struct Permit {
    kind: PermitKind,
    signal: StartSignal,
}

enum PermitKind {
    /// One of the `jobs` slots.
    Slot(#[allow(dead_code)] OwnedSemaphorePermit),
    /// An extra slot granted while CPUs were idle.
    Extra(Arc<AtomicUsize>),
}

impl Permit {
    /// What the op's worker calls once its command runs.
    pub(crate) fn signal(&self) -> StartSignal {
        self.signal.clone()
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.signal.starting.remove(self.signal.id);
        if let PermitKind::Extra(n) = &self.kind {
            n.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

impl Slots {
    pub(crate) fn new(jobs: usize, idle_jobs: Option<usize>, probe: Option<IdleProbe>) -> Slots {
        let jobs = jobs.max(1);
        Slots {
            jobs,
            sem: Arc::new(Semaphore::new(jobs)),
            extra: idle_jobs.filter(|&m| m > jobs).map(|max| Extra {
                max,
                probe: probe.unwrap_or_else(IdleProbe::proc_stat),
                in_use: Arc::new(AtomicUsize::new(0)),
                window: Mutex::new((None, 0)),
            }),
            starting: Starting::default(),
        }
    }

    fn permit(&self, kind: PermitKind) -> Permit {
        Permit {
            kind,
            signal: StartSignal {
                starting: self.starting.clone(),
                id: self.starting.add(),
            },
        }
    }

    /// Waits for a slot: a free one of the `jobs`, or an extra one while CPUs are idle.
    pub(crate) async fn acquire(&self) -> Result<Permit, tokio::sync::AcquireError> {
        let Some(x) = &self.extra else {
            let p = self.sem.clone().acquire_owned().await?;
            return Ok(self.permit(PermitKind::Slot(p)));
        };
        loop {
            tokio::select! {
                p = self.sem.clone().acquire_owned() => return Ok(self.permit(PermitKind::Slot(p?))),
                () = tokio::time::sleep(INTERVAL) => {
                    if self.grant_extra(x) {
                        return Ok(self.permit(PermitKind::Extra(x.in_use.clone())));
                    }
                }
            }
        }
    }

    fn grant_extra(&self, x: &Extra) -> bool {
        let mut window = x
            .window
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if window.0.is_none_or(|t| t.elapsed() >= INTERVAL) {
            // A sample taken while an admitted op sets up says nothing (module docs); the
            // ops one sample admits are admitted together.
            if self.starting.any() {
                *window = (None, 0);
                return false;
            }
            let idle = x.probe.idle_cpus();
            // After a pause, this sample only starts a new pair (the probe answers for the
            // last two samples).
            *window = (
                Some(Instant::now()),
                if window.0.is_none() { 0 } else { idle },
            );
        }
        let running = self.jobs - self.sem.available_permits() + x.in_use.load(Ordering::SeqCst);
        if running >= x.max || window.1 == 0 {
            return false;
        }
        window.1 -= 1;
        x.in_use.fetch_add(1, Ordering::SeqCst);
        true
    }
}
