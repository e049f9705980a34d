//! `kiln stats --no-stream` through the real binary: a busy container's CPU, its memory
//! limit and processes in docker's table. Needs root and Debian's busybox-static (skipped
//! with a message otherwise, failing under KILN_TEST_STRICT=1).

mod common;
use common::*;

/// The cells of `name`'s row: columns split at the header's titles.
fn row(out: &str, name: &str) -> Vec<String> {
    let mut lines = out.lines();
    let header = lines.next().expect("a header");
    let titles = [
        "CONTAINER ID",
        "NAME",
        "CPU %",
        "MEM USAGE / LIMIT",
        "MEM %",
        "NET I/O",
        "BLOCK I/O",
        "PIDS",
    ];
    let starts: Vec<usize> = titles
        .iter()
        .map(|t| {
            header
                .find(t)
                .unwrap_or_else(|| panic!("{t} in {header:?}"))
        })
        .collect();
    let line = lines
        .find(|l| l[starts[1]..].starts_with(&format!("{name} ")))
        .unwrap_or_else(|| panic!("a row for {name} in:\n{out}"));
    (0..titles.len())
        .map(|i| {
            let end = starts.get(i + 1).copied().unwrap_or(line.len());
            line[starts[i]..end].trim().to_string()
        })
        .collect()
}

#[test]
fn stats_shows_a_busy_containers_cpu_memory_limit_and_processes() {
    let Some(r) = ContainerRoot::new() else {
        return;
    };
    r.0.ok(&[
        "run",
        "-d",
        "--name",
        "busy",
        "-m",
        "64m",
        "busybox",
        "sh",
        "-c",
        "sleep 1000 & while :; do :; done",
    ]);
    r.0.ok(&["run", "-d", "--name", "done", "busybox", "true"]);
    let _ = r.0.run(&["wait", "done"]);

    let out = r.0.ok(&["stats", "--no-stream"]);
    let busy = row(&out, "busy");
    assert_eq!(busy[0].len(), 12, "short id: {busy:?}");
    let cpu: f64 = busy[2].trim_end_matches('%').parse().unwrap();
    assert!(cpu > 20.0, "a busy loop uses a CPU: {busy:?}");
    assert!(
        busy[3].ends_with(" / 64MiB"),
        "the --memory limit: {busy:?}"
    );
    let pids: u32 = busy[7].parse().unwrap();
    assert!(pids >= 2, "the shell and the sleep: {busy:?}");
    assert!(
        !out.contains("done "),
        "stopped containers only with -a:\n{out}"
    );

    let out = r.0.ok(&["stats", "--no-stream", "-a"]);
    assert_eq!(
        row(&out, "done")[2..],
        ["0.00%", "0B / 0B", "0.00%", "0B / 0B", "0B / 0B", "0"]
    );

    let o = r.0.run(&["stats", "--no-stream", "nosuch"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("No such container: nosuch"),
        "{}",
        stderr(&o)
    );
}
