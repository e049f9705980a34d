//! `kiln stats`: what a running container uses, from the host's `/proc`.
//!
//! A container's processes are the host processes in its pid namespace (as for `top`). Two
//! samples a second apart give docker's CPU figure: the container's CPU time over the
//! interval as a share of all CPUs' time, times the number of CPUs (so one busy thread on a
//! four-CPU host reads 100%). The rest is read once per sample: memory is the processes'
//! resident set (`VmRSS`; docker reads the cgroup's usage less its inactive page cache, so
//! figures differ by the shared pages and the cache), block I/O their `read_bytes` /
//! `write_bytes` from `/proc/PID/io`, network I/O the container's interfaces but `lo` from
//! its pid 1's `/proc/PID/net/dev`, and the limit `--memory` or else the host's memory.
//! [`measure`] is the one call `kiln stats` makes.
//!
//! Reading `/proc` rather than the cgroup files works the same on cgroup v1, v2 and hybrid
//! hosts, and for containers whose sandbox has no memory or cpu cgroup of its own (a
//! container without limits only gets a device-rules cgroup on a v1 host).

use crate::Container;
use std::collections::HashSet;
use std::fs;

/// One reading of a container's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Sample {
    /// The container's user + system CPU time, in clock ticks.
    pub cpu_ticks: u64,
    /// All CPUs' time since boot (the `cpu` line of `/proc/stat`), in clock ticks.
    pub system_ticks: u64,
    /// Resident memory of its processes, in bytes.
    pub memory: u64,
    /// Its memory limit (`--memory`, else the host's memory), in bytes.
    pub memory_limit: u64,
    /// Bytes received and sent on its interfaces but `lo`.
    pub net: (u64, u64),
    /// Bytes its processes read from and wrote to block devices.
    pub block: (u64, u64),
    /// Number of processes.
    pub pids: u64,
}

/// A container's usage over an interval, as `docker stats` shows it.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Usage {
    /// CPU %, 100 per fully used CPU.
    pub cpu_percent: f64,
    /// Memory in use and its limit, in bytes.
    pub memory: (u64, u64),
    /// Memory in use as a percentage of the limit.
    pub memory_percent: f64,
    /// Network bytes received, sent.
    pub net: (u64, u64),
    /// Block bytes read, written.
    pub block: (u64, u64),
    /// Processes.
    pub pids: u64,
}

impl Usage {
    /// The usage between two samples (`prev` taken first); zeros for a container that was
    /// not running for both.
    pub fn between(prev: &Sample, cur: &Sample, cpus: usize) -> Usage {
        let cpu = cur.cpu_ticks.saturating_sub(prev.cpu_ticks) as f64;
        let system = cur.system_ticks.saturating_sub(prev.system_ticks) as f64;
        let cpu_percent = if system > 0.0 {
            cpu / system * cpus as f64 * 100.0
        } else {
            0.0
        };
        let memory_percent = if cur.memory_limit > 0 {
            cur.memory as f64 / cur.memory_limit as f64 * 100.0
        } else {
            0.0
        };
        Usage {
            cpu_percent,
            memory: (cur.memory, cur.memory_limit),
            memory_percent,
            net: cur.net,
            block: cur.block,
            pids: cur.pids,
        }
    }
}

impl Container {
    /// The container's counters now; `None` when it is not running.
    pub fn sample(&mut self) -> Option<Sample> {
        let _ = self.refresh();
        if !self.is_running() {
            return None;
        }
        let init = self.state.init?;
        let ns = fs::read_link(format!("/proc/{}/ns/pid", init.pid)).ok()?;
        let mut s = Sample {
            system_ticks: system_ticks(),
            memory_limit: self
                .config
                .spec
                .extra
                .resources
                .memory
                .unwrap_or_else(host_memory),
            net: net_bytes(init.pid),
            ..Sample::default()
        };
        for pid in pids_in(&ns) {
            s.pids += 1;
            if let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) {
                s.cpu_ticks += cpu_ticks(&stat);
            }
            if let Ok(status) = fs::read_to_string(format!("/proc/{pid}/status")) {
                s.memory += field(&status, "VmRSS:") * 1024;
            }
            if let Ok(io) = fs::read_to_string(format!("/proc/{pid}/io")) {
                s.block.0 += field(&io, "read_bytes:");
                s.block.1 += field(&io, "write_bytes:");
            }
        }
        Some(s)
    }
}

/// The usage of each container over `interval` (`None` for one not running at its end):
/// a sample of all, a sleep, a sample of all. `prev` are the samples of an earlier call
/// (streaming: no sleep then, the interval is the time since); they are replaced by the new.
pub fn measure(
    containers: &mut [Container],
    prev: &mut Vec<Option<Sample>>,
    interval: std::time::Duration,
) -> Vec<Option<Usage>> {
    if prev.len() != containers.len() {
        *prev = containers.iter_mut().map(Container::sample).collect();
        std::thread::sleep(interval);
    }
    let cpus = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let cur: Vec<Option<Sample>> = containers.iter_mut().map(Container::sample).collect();
    let usage = cur
        .iter()
        .zip(prev.iter())
        .map(|(c, p)| {
            c.as_ref()
                .map(|c| Usage::between(p.as_ref().unwrap_or(c), c, cpus))
        })
        .collect();
    *prev = cur;
    usage
}

/// The pids whose pid namespace link is `ns`.
fn pids_in(ns: &std::path::Path) -> HashSet<u32> {
    let Ok(dir) = fs::read_dir("/proc") else {
        return HashSet::new();
    };
    dir.filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|p| fs::read_link(format!("/proc/{p}/ns/pid")).is_ok_and(|l| l == ns))
        .collect()
}

/// utime + stime from a `/proc/PID/stat` line (fields 14 and 15, counted after the
/// parenthesised command, which may hold spaces).
fn cpu_ticks(stat: &str) -> u64 {
    let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
        return 0;
    };
    let f: Vec<&str> = rest.split_whitespace().collect();
    // After ')': state is field 3, so utime (14) and stime (15) are at 11 and 12.
    let n = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    n(11) + n(12)
}

/// The sum of the `cpu` line of `/proc/stat`.
fn system_ticks() -> u64 {
    fs::read_to_string("/proc/stat")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("cpu ")).map(|l| {
                l.split_whitespace()
                    .skip(1)
                    .filter_map(|v| v.parse::<u64>().ok())
                    .sum()
            })
        })
        .unwrap_or(0)
}

/// `KEY: N` (or `KEY: N kB`) → N.
fn field(text: &str, key: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// The host's memory (`MemTotal`), in bytes.
fn host_memory() -> u64 {
    fs::read_to_string("/proc/meminfo").map_or(0, |m| field(&m, "MemTotal:") * 1024)
}

/// Received and sent bytes of every interface but `lo` in the network namespace of `pid`.
fn net_bytes(pid: i32) -> (u64, u64) {
    let Ok(dev) = fs::read_to_string(format!("/proc/{pid}/net/dev")) else {
        return (0, 0);
    };
    parse_net_dev(&dev)
}

fn parse_net_dev(dev: &str) -> (u64, u64) {
    let mut total = (0, 0);
    for line in dev.lines().skip(2) {
        let Some((name, counters)) = line.split_once(':') else {
            continue;
        };
        if name.trim() == "lo" {
            continue;
        }
        let c: Vec<u64> = counters
            .split_whitespace()
            .filter_map(|v| v.parse().ok())
            .collect();
        if c.len() >= 9 {
            total.0 += c[0];
            total.1 += c[8];
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_ticks_count_after_the_command_even_with_spaces() {
        let stat = "4242 (sleep (a) b) S 1 4242 4242 0 -1 4194560 100 0 0 0 7 5 0 0 20 0 1 0";
        assert_eq!(cpu_ticks(stat), 12);
    }

    #[test]
    fn net_dev_skips_loopback() {
        let dev = "Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:    1000      10    0    0    0     0          0         0     1000      10    0    0    0     0       0          0
  eth0:    1100       5    0    0    0     0          0         0      648       4    0    0    0     0       0          0
";
        assert_eq!(parse_net_dev(dev), (1100, 648));
    }

    #[test]
    fn cpu_percent_is_per_cpu_as_docker_computes_it() {
        let prev = Sample {
            cpu_ticks: 100,
            system_ticks: 10_000,
            ..Sample::default()
        };
        let cur = Sample {
            cpu_ticks: 200,
            system_ticks: 10_400,
            memory: 50,
            memory_limit: 200,
            ..Sample::default()
        };
        // 100 of 400 ticks of all (4) CPUs: one CPU fully busy.
        let u = Usage::between(&prev, &cur, 4);
        assert!((u.cpu_percent - 100.0).abs() < 1e-9);
        assert!((u.memory_percent - 25.0).abs() < 1e-9);
    }

    #[test]
    fn this_process_reads_its_own_counters() {
        let status = fs::read_to_string("/proc/self/status").unwrap();
        assert!(field(&status, "VmRSS:") > 0);
        assert!(system_ticks() > 0);
        assert!(host_memory() > 0);
    }
}
