//! `kiln compose up/ps/logs/exec/down` through the real binary, every kiln command in a
//! network namespace the test makes (the host's is never touched): the tutorial's shape, a
//! `db` (a busybox TCP server with a named volume and a health check) and an `api` built from
//! a Dockerfile that reaches `db` by name. Needs root and Debian's busybox-static; skipped
//! with a message otherwise.

mod common;
use common::*;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A process holding a network namespace of its own; killed on drop.
struct NetNs(Child);

impl NetNs {
    fn new() -> NetNs {
        NetNs(
            Command::new("unshare")
                .args(["-n", "sleep", "1000"])
                .spawn()
                .expect("unshare -n"),
        )
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `kiln ARGS` in `ns`, in the project directory `dir`.
fn kiln_in(k: &Kiln, ns: &NetNs, dir: &Path, args: &[&str]) -> Output {
    Command::new("nsenter")
        .arg(format!("--net=/proc/{}/ns/net", ns.0.id()))
        .arg(kiln_bin())
        .arg("--root")
        .arg(k.root.path())
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn ok_in(k: &Kiln, ns: &NetNs, dir: &Path, args: &[&str]) -> Output {
    let out = kiln_in(k, ns, dir, args);
    assert!(
        out.status.success(),
        "kiln {args:?} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        stderr(&out)
    );
    out
}

const COMPOSE: &str = r#"
name: shop
services:
  db:
    image: busybox
    command: ["sh", "-c", "[ -f /data/v ] || echo first > /data/v; while true; do cat /data/v | nc -l -p 5432; done"]
    volumes:
      - dbdata:/data
    healthcheck:
      test: ["CMD-SHELL", "test -f /data/v"]
      interval: 1s
      retries: 30
  api:
    build: ./api
    environment:
      DATABASE_HOST: db
    depends_on:
      db:
        condition: service_healthy
volumes:
  dbdata:
"#;

const DOCKERFILE: &str = r#"FROM busybox
COPY version /version
CMD ["sh", "-c", "echo api $(cat /version) got $(nc -w 2 $DATABASE_HOST 5432); sleep 1000"]
"#;

/// What `exec -T api nc db 5432` reads from `db` (retried while the server restarts its
/// listener between clients).
fn fetch(k: &Kiln, ns: &NetNs, dir: &Path) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let out = kiln_in(
            k,
            ns,
            dir,
            &[
                "compose", "exec", "-T", "api", "nc", "-w", "2", "db", "5432",
            ],
        );
        let got = stdout(&out).trim().to_string();
        if !got.is_empty() || Instant::now() > deadline {
            return got;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The containers, networks and volumes of project `name` (by their names' prefix).
fn leftovers(k: &Kiln, ns: &NetNs, dir: &Path, name: &str) -> Vec<String> {
    let mut left = Vec::new();
    // Every word of the listings that starts with the project's name (names, not ids).
    for args in [&["ps", "-a"][..], &["network", "ls"], &["volume", "ls"]] {
        let out = ok_in(k, ns, dir, args);
        left.extend(
            stdout(&out)
                .lines()
                .skip(1)
                .flat_map(str::split_whitespace)
                .filter(|w| w.starts_with(name))
                .map(str::to_string),
        );
    }
    left
}

#[test]
fn up_ps_logs_exec_rebuild_down() {
    if !can_run(&["unshare", "nsenter"]) {
        return;
    }
    let k = Kiln::new();
    k.seed_local_base();
    let ns = NetNs::new();
    let project = tempfile::tempdir().unwrap();
    let dir = project.path();
    write(dir, "compose.yaml", COMPOSE);
    write(dir, "api/Dockerfile", DOCKERFILE);
    write(dir, "api/version", "v1\n");

    let up = ok_in(&k, &ns, dir, &["compose", "up", "-d"]);
    let log = stderr(&up);
    for line in [
        " Network shop_default  Created",
        " Volume \"shop_dbdata\"  Created",
        " Container shop-db-1  Started",
        " Container shop-db-1  Healthy",
        " Container shop-api-1  Started",
    ] {
        assert!(log.contains(line), "no {line:?} in:\n{log}");
    }
    // db healthy before api started.
    assert!(
        log.find("shop-db-1  Healthy").unwrap() < log.find("shop-api-1  Started").unwrap(),
        "{log}"
    );

    let ps = stdout(&ok_in(&k, &ns, dir, &["compose", "ps"]));
    let mut lines = ps.lines();
    let header = lines.next().unwrap();
    for col in [
        "NAME", "IMAGE", "COMMAND", "SERVICE", "CREATED", "STATUS", "PORTS",
    ] {
        assert!(header.contains(col), "{ps}");
    }
    let rows: Vec<&str> = lines.collect();
    assert_eq!(rows.len(), 2, "{ps}");
    assert!(
        rows[0].starts_with("shop-api-1") && rows[0].contains("shop-api"),
        "{ps}"
    );
    assert!(
        rows[1].starts_with("shop-db-1") && rows[1].contains("(healthy)"),
        "{ps}"
    );
    assert_eq!(
        stdout(&ok_in(&k, &ns, dir, &["compose", "ps", "--services"])),
        "api\ndb\n"
    );

    // api reached db by its service name, and says so in its log.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let logs = stdout(&ok_in(&k, &ns, dir, &["compose", "logs", "api"]));
        if logs.contains("api v1 got first") {
            assert!(logs.starts_with("api-1  | api v1 got first"), "{logs}");
            break;
        }
        assert!(Instant::now() < deadline, "api's log: {logs:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(fetch(&k, &ns, dir), "first");

    // A new api source: only api is recreated; db (and its data) stay.
    let db_id = stdout(&ok_in(&k, &ns, dir, &["compose", "ps", "-q", "db"]));
    ok_in(
        &k,
        &ns,
        dir,
        &[
            "compose",
            "exec",
            "-T",
            "db",
            "sh",
            "-c",
            "echo second > /data/v",
        ],
    );
    write(dir, "api/version", "v2\n");
    let up = ok_in(&k, &ns, dir, &["compose", "up", "-d", "--build"]);
    let log = stderr(&up);
    assert!(log.contains(" Container shop-api-1  Recreated"), "{log}");
    assert!(log.contains(" Container shop-db-1  Running"), "{log}");
    assert!(!log.contains("shop-db-1  Recreated"), "{log}");
    assert_eq!(
        stdout(&ok_in(&k, &ns, dir, &["compose", "ps", "-q", "db"])),
        db_id
    );
    // Nothing changed: nothing recreated.
    let log = stderr(&ok_in(&k, &ns, dir, &["compose", "up", "-d"]));
    assert!(
        !log.contains("Recreated") && !log.contains("Created"),
        "{log}"
    );

    // down keeps the named volume, and its data, for the next up.
    ok_in(&k, &ns, dir, &["compose", "down"]);
    assert_eq!(
        leftovers(&k, &ns, dir, "shop"),
        vec!["shop_dbdata".to_string()]
    );
    ok_in(&k, &ns, dir, &["compose", "up", "-d"]);
    assert_eq!(fetch(&k, &ns, dir), "second");

    // down -v removes it too: nothing of the project is left.
    let down = ok_in(&k, &ns, dir, &["compose", "down", "-v"]);
    assert!(
        stderr(&down).contains(" Volume \"shop_dbdata\"  Removed"),
        "{}",
        stderr(&down)
    );
    assert_eq!(leftovers(&k, &ns, dir, "shop"), Vec::<String>::new());
}

#[test]
fn ports_are_refused_until_user_networks_publish_them() {
    if !can_run(&["unshare", "nsenter"]) {
        return;
    }
    let k = Kiln::new();
    k.seed_local_base();
    let ns = NetNs::new();
    let project = tempfile::tempdir().unwrap();
    let dir = project.path();
    write(
        dir,
        "compose.yaml",
        "name: pub\nservices:\n  web:\n    image: busybox\n    command: sleep 100\n    ports:\n      - \"127.0.0.1:8080:80\"\n",
    );
    let out = kiln_in(&k, &ns, dir, &["compose", "up", "-d"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(
            "service \"web\": ports: (publishing ports on a project network) is not supported by kiln compose yet"
        ),
        "{}",
        stderr(&out)
    );
    ok_in(&k, &ns, dir, &["compose", "down"]);
    assert_eq!(leftovers(&k, &ns, dir, "pub"), Vec::<String>::new());
}

#[test]
fn scale_three_gives_three_resolvable_containers() {
    if !can_run(&["unshare", "nsenter"]) {
        return;
    }
    let k = Kiln::new();
    k.seed_local_base();
    let ns = NetNs::new();
    let project = tempfile::tempdir().unwrap();
    let dir = project.path();
    write(
        dir,
        "compose.yaml",
        "name: sc\nservices:\n  web:\n    image: busybox\n    command: sleep 1000\n    scale: 3\n",
    );
    ok_in(&k, &ns, dir, &["compose", "up", "-d"]);
    let ids = stdout(&ok_in(&k, &ns, dir, &["compose", "ps", "-q"]));
    assert_eq!(ids.lines().count(), 3, "{ids}");
    let mut addresses = Vec::new();
    for name in ["sc-web-1", "sc-web-2", "sc-web-3"] {
        let out = ok_in(
            &k,
            &ns,
            dir,
            &[
                "compose", "exec", "-T", "--index", "2", "web", "nslookup", name,
            ],
        );
        let text = stdout(&out);
        let address = text
            .lines()
            .skip_while(|l| !l.starts_with("Name:"))
            .find_map(|l| l.strip_prefix("Address: "))
            .unwrap_or_else(|| panic!("{name} not resolved: {text}"))
            .trim()
            .to_string();
        addresses.push(address);
    }
    addresses.dedup();
    assert_eq!(addresses.len(), 3, "{addresses:?}");
    // The service's name answers with all three.
    let out = ok_in(
        &k,
        &ns,
        dir,
        &["compose", "exec", "-T", "web", "nslookup", "web"],
    );
    for a in &addresses {
        assert!(stdout(&out).contains(a.as_str()), "{}", stdout(&out));
    }
    ok_in(&k, &ns, dir, &["compose", "down"]);
    assert_eq!(leftovers(&k, &ns, dir, "sc"), Vec::<String>::new());
}
