//! `kiln top` through the real binary: a detached container's processes in docker's table,
//! `ps` options passed through, and docker's refusals. Needs root and Debian's
//! busybox-static (skipped with a message otherwise, failing under KILN_TEST_STRICT=1).

mod common;
use common::*;

#[test]
fn top_lists_the_containers_processes_and_only_those() {
    let Some(r) = ContainerRoot::new() else {
        return;
    };
    r.0.ok(&[
        "run",
        "-d",
        "--name",
        "t1",
        "busybox",
        "sh",
        "-c",
        "sleep 1000 & sleep 999",
    ]);

    // `run -d` returns once the container's command runs; its shell forks the first sleep
    // a moment later.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let out = loop {
        let out = r.0.ok(&["top", "t1"]);
        if out.contains("sleep 1000") || std::time::Instant::now() > deadline {
            break out;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let mut lines = out.lines();
    let header = lines.next().expect("a header");
    assert!(header.starts_with("UID "), "ps -ef's header: {header:?}");
    assert!(header.contains("PID") && header.trim_end().ends_with("CMD"));
    let rows: Vec<&str> = lines.collect();
    assert!(rows.iter().any(|l| l.ends_with("sleep 1000")), "{out}");
    assert!(rows.iter().any(|l| l.ends_with("sleep 999")), "{out}");
    // Nothing of the host's: not this test, not the host's init.
    let me = std::process::id().to_string();
    assert!(
        !rows
            .iter()
            .any(|l| l.split_whitespace().nth(1) == Some(me.as_str())),
        "{out}"
    );
    assert!(
        !rows
            .iter()
            .any(|l| l.split_whitespace().nth(1) == Some("1")),
        "{out}"
    );

    // ps options pass through.
    let out = r.0.ok(&["top", "t1", "-o", "pid,args"]);
    let mut lines = out.lines();
    assert!(
        lines.next().unwrap().trim_start().starts_with("PID"),
        "{out}"
    );
    assert!(lines.any(|l| l.ends_with("sleep 1000")), "{out}");

    // Options without a PID column are refused as docker does.
    let o = r.0.run(&["top", "t1", "-o", "args"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("Couldn't find PID field in ps output"),
        "{}",
        stderr(&o)
    );

    // A stopped container has no processes to show.
    r.0.ok(&["kill", "t1"]);
    let _ = r.0.run(&["wait", "t1"]);
    let o = r.0.run(&["top", "t1"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("is not running"), "{}", stderr(&o));
    let o = r.0.run(&["top", "nosuch"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("No such container: nosuch"),
        "{}",
        stderr(&o)
    );
}
