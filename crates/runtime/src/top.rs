//! `kiln top`: the processes of a running container, as `docker top` shows them.
//!
//! Docker's way, kept: run the host's `ps` with the user's options (`-ef` by default), find
//! the `PID` column in its header, and keep the rows whose pid is one of the container's. A
//! container's processes are the host processes in its pid namespace (`/proc/PID/ns/pid` the
//! same as its pid 1's), so nothing is asked of the container itself: its image may have no
//! `ps` at all.

use crate::Container;
use std::collections::HashSet;
use std::fs;
use std::process::Command;

/// Why `top` failed; texts as `docker top`'s.
#[derive(Debug, thiserror::Error)]
pub enum TopError {
    /// The container is not running.
    #[error("Container {0} is not running")]
    NotRunning(String),
    /// Its pid 1 is not known (an external OCI runtime runs it).
    #[error("container {0} has no known pid 1: top is not available")]
    NoInit(String),
    /// The container's pid namespace could not be read.
    #[error("reading the pid namespace of container {id}: {source}")]
    Namespace {
        /// The container.
        id: String,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// `ps` could not run or failed.
    #[error("Error running ps: {0}")]
    Ps(String),
    /// `ps`'s output has no PID column (options like `-o comm`).
    #[error("Couldn't find PID field in ps output")]
    NoPidColumn,
}

/// What `top` shows: `ps`'s column titles and the container's rows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Top {
    /// Column titles, from `ps`'s header.
    pub titles: Vec<String>,
    /// One row a process, one cell a title (the last cell, the command, keeps its spaces).
    pub processes: Vec<Vec<String>>,
}

impl Container {
    /// The container's processes through `ps PS_ARGS` (`-ef` when empty).
    pub fn top(&mut self, ps_args: &[String]) -> Result<Top, TopError> {
        // A stale "running" state must not list a pid that now belongs to someone else.
        let _ = self.refresh();
        if !self.is_running() {
            return Err(TopError::NotRunning(self.id().to_string()));
        }
        let init = self
            .state
            .init
            .ok_or_else(|| TopError::NoInit(self.id().to_string()))?;
        let args: Vec<String> = if ps_args.is_empty() {
            vec!["-ef".into()]
        } else {
            ps_args.to_vec()
        };
        let out = Command::new("ps")
            .args(&args)
            .output()
            .map_err(|e| TopError::Ps(e.to_string()))?;
        if !out.status.success() {
            let err = String::from_utf8_lossy(&out.stderr);
            return Err(TopError::Ps(format!("{} ({})", err.trim(), out.status)));
        }
        // The namespace is read after `ps` ran, so a process started just before `ps` is
        // not missed; one that ended in between is dropped (its pid is gone from /proc).
        let pids = namespace_pids(init.pid).map_err(|source| TopError::Namespace {
            id: self.id().to_string(),
            source,
        })?;
        parse_ps(&String::from_utf8_lossy(&out.stdout), &pids)
    }
}

/// The host pids of every process in the pid namespace of `pid`.
fn namespace_pids(pid: i32) -> std::io::Result<HashSet<u32>> {
    let ns = fs::read_link(format!("/proc/{pid}/ns/pid"))?;
    let mut pids = HashSet::new();
    for e in fs::read_dir("/proc")? {
        let Ok(e) = e else { continue };
        let Some(p) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        // A process that ended meanwhile has no link any more: it is not listed.
        if fs::read_link(format!("/proc/{p}/ns/pid")).is_ok_and(|l| l == ns) {
            pids.insert(p);
        }
    }
    Ok(pids)
}

/// `ps` output → the rows of `pids`, as docker's `parsePSOutput`.
fn parse_ps(output: &str, pids: &HashSet<u32>) -> Result<Top, TopError> {
    let mut lines = output.lines();
    let titles: Vec<String> = lines
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .map(str::to_string)
        .collect();
    let pid_col = titles
        .iter()
        .position(|t| t == "PID")
        .ok_or(TopError::NoPidColumn)?;
    let mut processes = Vec::new();
    for line in lines {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.len() <= pid_col {
            continue;
        }
        let Ok(pid) = fields[pid_col].parse::<u32>() else {
            return Err(TopError::Ps(format!(
                "unexpected pid '{}' in ps output",
                fields[pid_col]
            )));
        };
        if !pids.contains(&pid) {
            continue;
        }
        // Every column but the last is one word; the last (the command) keeps its spaces.
        let n = titles.len().min(fields.len());
        let mut row: Vec<String> = fields[..n - 1].iter().map(|s| (*s).to_string()).collect();
        row.push(fields[n - 1..].join(" "));
        processes.push(row);
    }
    Ok(Top { titles, processes })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PS: &str = "\
UID          PID    PPID  C STIME TTY          TIME CMD
root           1       0  0 16:43 ?        00:00:02 /sbin/init
root        4242       1  0 18:20 ?        00:00:00 sleep 100
root        4243    4242  0 18:20 ?        00:00:00 sh -c echo a  b
";

    #[test]
    fn only_the_containers_rows_are_kept_with_their_commands_whole() {
        let top = parse_ps(PS, &HashSet::from([4242, 4243])).unwrap();
        assert_eq!(
            top.titles,
            ["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"]
        );
        assert_eq!(top.processes.len(), 2);
        assert_eq!(top.processes[0][1], "4242");
        assert_eq!(top.processes[0][7], "sleep 100");
        assert_eq!(top.processes[1][7], "sh -c echo a b");
    }

    #[test]
    fn ps_output_without_a_pid_column_is_refused() {
        let e = parse_ps("COMMAND\nsleep\n", &HashSet::new()).unwrap_err();
        assert_eq!(e.to_string(), "Couldn't find PID field in ps output");
    }

    #[test]
    fn the_namespace_of_this_process_holds_this_process() {
        let me = std::process::id();
        let pids = namespace_pids(me as i32).unwrap();
        assert!(pids.contains(&me));
    }
}
