//! Against a fake cgroupfs: plain directories and files in a temporary directory, laid
//! out as the kernel would (interface files that exist in a new cgroup are created by
//! the test before [`Cgroup::create`] runs, as `mkdir` in a cgroupfs would).

use super::*;

struct Fake {
    dir: tempfile::TempDir,
}

impl Fake {
    fn new() -> Fake {
        // Not /tmp: it is slow on the development host.
        let dir = tempfile::Builder::new()
            .prefix("kiln-cgroup-test")
            .tempdir_in("/var/tmp")
            .unwrap();
        Fake { dir }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// Writes `content` to `rel`, creating parents.
    fn file(&self, rel: &str, content: &str) {
        let p = self.path(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, content).unwrap();
    }

    fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.path(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
    }

    /// A mountinfo line for a cgroup mount of `fstype` at `rel` with `opts`.
    fn mount(&self, id: u32, rel: &str, fstype: &str, opts: &str) -> String {
        format!(
            "{id} 31 0:{id} / {} rw,relatime - {fstype} {fstype} {opts}\n",
            self.path(rel).display()
        )
    }

    /// A hybrid host: v1 memory, cpu (with cpuacct), pids; cgroup2 at `unified`
    /// offering `v2_controllers`; the caller in `/user.slice/kiln.scope` everywhere.
    fn hybrid(&self, v2_controllers: &str) -> Hierarchies {
        let mountinfo = [
            self.mount(32, "cpu,cpuacct", "cgroup", "rw,cpu,cpuacct"),
            self.mount(35, "memory", "cgroup", "rw,memory"),
            self.mount(39, "pids", "cgroup", "rw,pids"),
            self.mount(41, "unified", "cgroup2", "rw,nsdelegate"),
            "22 1 0:21 / /proc rw - proc proc rw\n".to_string(),
        ]
        .concat();
        self.file("unified/cgroup.controllers", v2_controllers);
        self.file(
            "unified/user.slice/kiln.scope/cgroup.controllers",
            v2_controllers,
        );
        self.file("unified/user.slice/kiln.scope/cgroup.subtree_control", "");
        Hierarchies::parse(
            &mountinfo,
            "8:pids:/user.slice/kiln.scope\n4:memory:/user.slice/kiln.scope\n\
             1:cpu,cpuacct:/user.slice/kiln.scope\n0::/user.slice/kiln.scope\n",
        )
    }

    /// A pure v2 host: cgroup2 at `cg` offering `controllers` to the caller's cgroup
    /// `/kiln.service`.
    fn pure_v2(&self, controllers: &str) -> Hierarchies {
        self.file(
            "cg/cgroup.controllers",
            "cpuset cpu io memory hugetlb pids rdma",
        );
        self.file("cg/kiln.service/cgroup.controllers", controllers);
        self.file("cg/kiln.service/cgroup.subtree_control", "");
        Hierarchies::parse(
            &self.mount(30, "cg", "cgroup2", "rw,nsdelegate,memory_recursiveprot"),
            "0::/kiln.service\n",
        )
    }
}

fn all_limits() -> Resources {
    Resources {
        memory: Some(64 * 1024 * 1024),
        cpus: Some(1.5),
        pids: Some(50),
        ..Default::default()
    }
}

#[test]
fn no_limits_no_cgroup() {
    let fake = Fake::new();
    let h = fake.pure_v2("cpu memory pids");
    assert_eq!(
        Cgroup::locate_in(&h, "x", &Resources::default(), DevicePolicy::None).unwrap(),
        None
    );
}

#[test]
fn v2_writes_every_limit() {
    let fake = Fake::new();
    let h = fake.pure_v2("cpuset cpu io memory pids");
    let cg = Cgroup::locate_in(&h, "id1", &all_limits(), DevicePolicy::None)
        .unwrap()
        .unwrap();
    let dir = fake.path("cg/kiln.service/kiln/id1");
    assert_eq!(
        cg,
        Cgroup {
            v2: Some((
                dir.clone(),
                vec!["memory".into(), "cpu".into(), "pids".into()]
            )),
            v1: vec![],
            v2_devices: false,
        }
    );
    // What mkdir in a cgroupfs with swap accounting creates.
    fake.file("cg/kiln.service/kiln/id1/memory.swap.max", "max\n");
    cg.create(&all_limits(), &[]).unwrap();
    let sandbox = "cg/kiln.service/kiln/id1";
    assert_eq!(fake.read(&format!("{sandbox}/memory.max")), "67108864");
    assert_eq!(fake.read(&format!("{sandbox}/memory.swap.max")), "0");
    assert_eq!(fake.read(&format!("{sandbox}/cpu.max")), "150000 100000");
    assert_eq!(fake.read(&format!("{sandbox}/pids.max")), "50");
    // Enabled for the children of the caller's cgroup and of kiln/.
    assert_eq!(
        fake.read("cg/kiln.service/cgroup.subtree_control"),
        "+memory +cpu +pids"
    );
    assert_eq!(
        fake.read("cg/kiln.service/kiln/cgroup.subtree_control"),
        "+memory +cpu +pids"
    );
    // No v1 files.
    for f in ["memory.limit_in_bytes", "cpu.cfs_quota_us"] {
        assert!(!dir.join(f).exists(), "{f}");
    }

    cg.join().unwrap();
    assert_eq!(fake.read(&format!("{sandbox}/cgroup.procs")), "0");

    // The OOM counter is the `oom_kill` line of memory.events.
    assert_eq!(cg.oom_kills(), 0, "no memory.events yet");
    fake.file(
        &format!("{sandbox}/memory.events"),
        "low 0\nhigh 0\nmax 12\noom 1\noom_kill 1\noom_group_kill 0\n",
    );
    assert_eq!(cg.oom_kills(), 1);

    // remove() takes the sandbox's directory only (the fake's files first: a real
    // cgroupfs has no removable files).
    for f in std::fs::read_dir(&dir).unwrap() {
        std::fs::remove_file(f.unwrap().path()).unwrap();
    }
    // A sandbox of a process that is gone (pid 0x7fffffff) is swept, one of ours stays.
    let stale = fake.path("cg/kiln.service/kiln/7fffffff-1-0");
    let live = fake.path(&format!(
        "cg/kiln.service/kiln/{:x}-1-0",
        std::process::id()
    ));
    std::fs::create_dir(&stale).unwrap();
    std::fs::create_dir(&live).unwrap();
    cg.remove(std::time::Duration::ZERO);
    assert!(!dir.exists());
    assert!(!stale.exists());
    assert!(live.exists());
    assert!(fake.path("cg/kiln.service/kiln").is_dir());
}

#[test]
fn v2_without_swap_accounting_and_odd_values() {
    let fake = Fake::new();
    let h = fake.pure_v2("cpu memory pids");
    let res = Resources {
        memory: Some(1 << 20),
        cpus: Some(0.001),
        pids: Some(0),
        ..Default::default()
    };
    let cg = Cgroup::locate_in(&h, "id2", &res, DevicePolicy::None)
        .unwrap()
        .unwrap();
    cg.create(&res, &[]).unwrap();
    let sandbox = "cg/kiln.service/kiln/id2";
    assert_eq!(fake.read(&format!("{sandbox}/memory.max")), "1048576");
    assert!(!fake.path(&format!("{sandbox}/memory.swap.max")).exists());
    // With swap accounting, --memory-swap is memory plus swap: swap.max is the rest.
    fake.file(&format!("{sandbox}/memory.swap.max"), "max\n");
    for (swap, max) in [(3 << 20, "2097152"), (-1, "max")] {
        let res = Resources {
            memory_swap: Some(swap),
            ..res.clone()
        };
        cg.create(&res, &[]).unwrap();
        assert_eq!(fake.read(&format!("{sandbox}/memory.swap.max")), max);
    }
    fake.file(&format!("{sandbox}/memory.swap.max"), "max\n");
    cg.create(&res, &[]).unwrap();
    assert_eq!(fake.read(&format!("{sandbox}/memory.swap.max")), "0");
    std::fs::remove_file(fake.path(&format!("{sandbox}/memory.swap.max"))).unwrap();
    // The kernel's minimum quota is 1 ms; a zero limit means none, as in Docker.
    assert_eq!(fake.read(&format!("{sandbox}/cpu.max")), "1000 100000");
    assert_eq!(fake.read(&format!("{sandbox}/pids.max")), "max");
}

#[test]
fn v2_controllers_already_enabled_are_not_rewritten() {
    let fake = Fake::new();
    let h = fake.pure_v2("cpu memory pids");
    fake.file(
        "cg/kiln.service/cgroup.subtree_control",
        "cpu memory pids\n",
    );
    fake.file("cg/kiln.service/kiln/cgroup.subtree_control", "pids\n");
    let res = Resources {
        memory: Some(1 << 30),
        pids: Some(10),
        ..Default::default()
    };
    let cg = Cgroup::locate_in(&h, "id3", &res, DevicePolicy::None)
        .unwrap()
        .unwrap();
    cg.create(&res, &[]).unwrap();
    assert_eq!(
        fake.read("cg/kiln.service/cgroup.subtree_control"),
        "cpu memory pids\n"
    );
    assert_eq!(
        fake.read("cg/kiln.service/kiln/cgroup.subtree_control"),
        "+memory"
    );
    // cpu was not asked for: no cpu.max.
    assert!(!fake.path("cg/kiln.service/kiln/id3/cpu.max").exists());
}

#[test]
fn v2_delegation_failure_explains_itself() {
    let fake = Fake::new();
    let h = fake.pure_v2("pids");
    // Writing subtree_control fails (here: it is a directory; in the kernel, EBUSY
    // when the caller's cgroup holds processes).
    std::fs::remove_file(fake.path("cg/kiln.service/cgroup.subtree_control")).unwrap();
    std::fs::create_dir(fake.path("cg/kiln.service/cgroup.subtree_control")).unwrap();
    let res = Resources {
        pids: Some(10),
        ..Default::default()
    };
    let cg = Cgroup::locate_in(&h, "id4", &res, DevicePolicy::None)
        .unwrap()
        .unwrap();
    let err = cg.create(&res, &[]).unwrap_err().to_string();
    assert!(err.contains("writing \"+pids\" to"), "{err}");
    assert!(err.contains("cgroup.subtree_control"), "{err}");
    assert!(err.contains("run kiln from a cgroup of its own"), "{err}");
}

#[test]
fn missing_v2_controller_without_v1_names_it() {
    let fake = Fake::new();
    let h = fake.pure_v2("memory pids");
    let err = Cgroup::locate_in(&h, "id5", &all_limits(), DevicePolicy::None).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::NotFound);
    assert_eq!(
        err.to_string(),
        format!(
            "the cpu cgroup controller is not available: no cgroup v1 hierarchy has it, \
             and the cgroup2 hierarchy at {} does not offer it (cgroup.controllers: \
             \"memory pids\")",
            fake.path("cg").display()
        )
    );
    // Without the caller's own cgroup.controllers, the hierarchy root's counts.
    std::fs::remove_file(fake.path("cg/kiln.service/cgroup.controllers")).unwrap();
    let cg = Cgroup::locate_in(&h, "id5", &all_limits(), DevicePolicy::None)
        .unwrap()
        .unwrap();
    assert_eq!(cg.v2.unwrap().1, ["memory", "cpu", "pids"]);
}

#[test]
fn no_hierarchy_at_all_names_the_controller() {
    let h = Hierarchies::parse("22 1 0:21 / /proc rw - proc proc rw\n", "0::/\n");
    let res = Resources {
        pids: Some(5),
        ..Default::default()
    };
    let err = Cgroup::locate_in(&h, "x", &res, DevicePolicy::None).unwrap_err();
    assert_eq!(
        err.to_string(),
        "the pids cgroup controller is not available: no cgroup v1 hierarchy has it, \
         and no cgroup2 hierarchy is mounted"
    );
}

#[test]
fn hybrid_host_falls_back_to_v1() {
    let fake = Fake::new();
    // This development host: the unified hierarchy offers only hugetlb.
    let h = fake.hybrid("hugetlb");
    let cg = Cgroup::locate_in(&h, "id6", &all_limits(), DevicePolicy::None)
        .unwrap()
        .unwrap();
    let own = "user.slice/kiln.scope/kiln/id6";
    assert_eq!(
        cg,
        Cgroup {
            v2: None,
            v1: vec![
                ("memory".into(), fake.path(&format!("memory/{own}"))),
                ("cpu".into(), fake.path(&format!("cpu,cpuacct/{own}"))),
                ("pids".into(), fake.path(&format!("pids/{own}"))),
            ],
            v2_devices: false,
        }
    );
    // What mkdir in a v1 memory hierarchy with swap accounting creates.
    fake.file(&format!("memory/{own}/memory.memsw.limit_in_bytes"), "0");
    cg.create(&all_limits(), &[]).unwrap();
    let m = 64 * 1024 * 1024;
    assert_eq!(
        fake.read(&format!("memory/{own}/memory.limit_in_bytes")),
        m.to_string()
    );
    assert_eq!(
        fake.read(&format!("memory/{own}/memory.memsw.limit_in_bytes")),
        m.to_string()
    );
    assert_eq!(
        fake.read(&format!("cpu,cpuacct/{own}/cpu.cfs_period_us")),
        "100000"
    );
    assert_eq!(
        fake.read(&format!("cpu,cpuacct/{own}/cpu.cfs_quota_us")),
        "150000"
    );
    assert_eq!(fake.read(&format!("pids/{own}/pids.max")), "50");
    // Nothing in the unified hierarchy.
    assert!(!fake.path("unified/user.slice/kiln.scope/kiln").exists());
    assert_eq!(
        fake.read("unified/user.slice/kiln.scope/cgroup.subtree_control"),
        ""
    );
    cg.join().unwrap();
    for d in ["memory", "cpu,cpuacct", "pids"] {
        assert_eq!(fake.read(&format!("{d}/{own}/tasks")), "0", "{d}");
    }
    // The v1 OOM counter.
    fake.file(
        &format!("memory/{own}/memory.oom_control"),
        "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n",
    );
    assert_eq!(cg.oom_kills(), 3);
}

#[test]
fn controllers_moved_to_v2_are_used_there_and_the_rest_on_v1() {
    let fake = Fake::new();
    // pids and cpu moved to cgroup2 (their v1 hierarchies unmounted), memory still v1.
    let mut h = fake.hybrid("cpu pids hugetlb");
    h.mounts
        .retain(|m| !m.options.iter().any(|o| o == "pids" || o == "cpu"));
    let cg = Cgroup::locate_in(&h, "id7", &all_limits(), DevicePolicy::None)
        .unwrap()
        .unwrap();
    let own = "user.slice/kiln.scope/kiln/id7";
    assert_eq!(
        cg,
        Cgroup {
            v2: Some((
                fake.path(&format!("unified/{own}")),
                vec!["cpu".into(), "pids".into()]
            )),
            v1: vec![("memory".into(), fake.path(&format!("memory/{own}")))],
            v2_devices: false,
        }
    );
    cg.create(&all_limits(), &[]).unwrap();
    assert_eq!(
        fake.read("unified/user.slice/kiln.scope/cgroup.subtree_control"),
        "+cpu +pids"
    );
    assert_eq!(fake.read(&format!("unified/{own}/pids.max")), "50");
    assert_eq!(
        fake.read(&format!("unified/{own}/cpu.max")),
        "150000 100000"
    );
    assert!(!fake.path(&format!("unified/{own}/memory.max")).exists());
    assert_eq!(
        fake.read(&format!("memory/{own}/memory.limit_in_bytes")),
        (64 * 1024 * 1024).to_string()
    );
    cg.join().unwrap();
    assert_eq!(fake.read(&format!("unified/{own}/cgroup.procs")), "0");
    assert_eq!(fake.read(&format!("memory/{own}/tasks")), "0");
    // memory is on v1: its OOM counter is memory.oom_control, not v2's memory.events.
    fake.file(&format!("unified/{own}/memory.events"), "oom_kill 9\n");
    fake.file(&format!("memory/{own}/memory.oom_control"), "oom_kill 2\n");
    assert_eq!(cg.oom_kills(), 2);

    // Only pids asked for: v2 only.
    let res = Resources {
        pids: Some(7),
        ..Default::default()
    };
    let cg = Cgroup::locate_in(&h, "id8", &res, DevicePolicy::None)
        .unwrap()
        .unwrap();
    assert_eq!(cg.v1, vec![]);
    assert_eq!(cg.oom_kills(), 0, "no memory controller at all");
}

#[test]
fn cgroup_paths_are_relative_to_the_mount_root() {
    let fake = Fake::new();
    // A container's view: the hierarchy's root is our cgroup, and mountinfo has an
    // escaped space in the mount point.
    let point = fake.path("with space");
    let mountinfo = format!(
        "41 31 0:38 /docker/abc {} rw - cgroup2 cgroup2 rw\n",
        point.display().to_string().replace(' ', "\\040")
    );
    fake.file("with space/cgroup.controllers", "pids");
    let h = Hierarchies::parse(&mountinfo, "0::/docker/abc\n");
    let res = Resources {
        pids: Some(3),
        ..Default::default()
    };
    let cg = Cgroup::locate_in(&h, "id9", &res, DevicePolicy::None)
        .unwrap()
        .unwrap();
    assert_eq!(cg.v2.unwrap().0, point.join("kiln/id9"));
}

#[test]
fn the_cgroup_survives_the_trip_to_the_helper() {
    let fake = Fake::new();
    let h = fake.hybrid("pids");
    let cg = Cgroup::locate_in(&h, "id10", &all_limits(), DevicePolicy::None)
        .unwrap()
        .unwrap();
    let json = serde_json::to_string(&cg).unwrap();
    assert_eq!(serde_json::from_str::<Cgroup>(&json).unwrap(), cg);
}

/// The device hierarchy of a hybrid host (this development host) or of none.
fn with_v1_devices(fake: &Fake, h: Hierarchies) -> Hierarchies {
    let mut mounts = fake.mount(36, "devices", "cgroup", "rw,devices");
    for m in &h.mounts {
        mounts.push_str(&format!(
            "1 1 0:1 {} {} rw - {} {} {}\n",
            m.root,
            m.point.display(),
            m.fstype,
            m.fstype,
            m.options.join(",")
        ));
    }
    let mut membership = String::from("5:devices:/user.slice/kiln.scope\n");
    for (c, p) in &h.membership {
        membership.push_str(&format!("1:{c}:{p}\n"));
    }
    Hierarchies::parse(&mounts, &membership)
}

#[test]
fn device_rules_go_to_the_v1_devices_controller_without_limits() {
    let fake = Fake::new();
    let h = with_v1_devices(&fake, fake.hybrid("hugetlb"));
    let cg = Cgroup::locate_in(&h, "d1", &Resources::default(), DevicePolicy::Auto)
        .unwrap()
        .unwrap();
    let dir = fake.path("devices/user.slice/kiln.scope/kiln/d1");
    assert_eq!(
        cg,
        Cgroup {
            v2: None,
            v1: vec![("devices".into(), dir.clone())],
            v2_devices: false,
        }
    );
    // What mkdir in a devices hierarchy creates.
    fake.file("devices/user.slice/kiln.scope/kiln/d1/devices.allow", "");
    cg.create(&Resources::default(), crate::devices::DEFAULT_ALLOWED)
        .unwrap();
    // Deny all first, then one write per rule (a plain file concatenates them).
    assert_eq!(
        fake.read("devices/user.slice/kiln.scope/kiln/d1/devices.deny"),
        "a"
    );
    assert_eq!(
        fake.read("devices/user.slice/kiln.scope/kiln/d1/devices.allow"),
        "c *:* mb *:* mc 1:3 rwmc 1:8 rwmc 1:7 rwmc 5:0 rwmc 1:5 rwmc 1:9 rwmc 136:* rwm\
         c 5:2 rwmc 10:200 rwm"
    );
    // Privileged: nothing at all.
    assert_eq!(
        Cgroup::locate_in(&h, "d2", &Resources::default(), DevicePolicy::None).unwrap(),
        None
    );
}

#[test]
fn device_rules_without_a_v1_devices_controller_are_a_bpf_program_on_v2() {
    let fake = Fake::new();
    let h = fake.pure_v2("cpu memory pids");
    let cg = Cgroup::locate_in(&h, "d3", &Resources::default(), DevicePolicy::Auto)
        .unwrap()
        .unwrap();
    assert_eq!(
        cg,
        Cgroup {
            v2: Some((fake.path("cg/kiln.service/kiln/d3"), vec![])),
            v1: vec![],
            v2_devices: true,
        }
    );
    // With limits: the same directory.
    let res = Resources {
        pids: Some(3),
        ..Default::default()
    };
    let cg = Cgroup::locate_in(&h, "d4", &res, DevicePolicy::Auto)
        .unwrap()
        .unwrap();
    assert_eq!(
        cg.v2,
        Some((fake.path("cg/kiln.service/kiln/d4"), vec!["pids".into()]))
    );
    assert!(cg.v2_devices);
    // Forced on a hybrid host.
    let h = with_v1_devices(&fake, fake.hybrid("hugetlb"));
    let cg = Cgroup::locate_in(&h, "d5", &Resources::default(), DevicePolicy::V2)
        .unwrap()
        .unwrap();
    assert_eq!(
        (cg.v2, cg.v1, cg.v2_devices),
        (
            Some((fake.path("unified/user.slice/kiln.scope/kiln/d5"), vec![])),
            vec![],
            true
        )
    );
}

#[test]
fn no_device_cgroup_at_all_is_an_error() {
    let h = Hierarchies::parse("22 1 0:21 / /proc rw - proc proc rw\n", "0::/\n");
    let err = Cgroup::locate_in(&h, "x", &Resources::default(), DevicePolicy::Auto)
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        "no device cgroup: no cgroup v1 hierarchy has the devices controller, and no \
         cgroup2 hierarchy is mounted"
    );
}

#[test]
fn an_updatable_sandbox_gets_every_controller_limits_or_not() {
    let fake = Fake::new();
    // This development host: v1 memory, cpu, pids (and freezer, added here).
    let h = fake.hybrid("hugetlb");
    let mut mounts = fake.mount(37, "freezer", "cgroup", "rw,freezer");
    for m in &h.mounts {
        mounts.push_str(&format!(
            "1 1 0:1 {} {} rw - {} {} {}\n",
            m.root,
            m.point.display(),
            m.fstype,
            m.fstype,
            m.options.join(",")
        ));
    }
    let mut membership = String::from("6:freezer:/user.slice/kiln.scope\n");
    for (c, p) in &h.membership {
        membership.push_str(&format!("1:{c}:{p}\n"));
    }
    let h = Hierarchies::parse(&mounts, &membership);
    let res = Resources {
        pids: Some(9),
        updatable: true,
        ..Default::default()
    };
    let cg = Cgroup::locate_in(&h, "u1", &res, DevicePolicy::None)
        .unwrap()
        .unwrap();
    let own = "user.slice/kiln.scope/kiln/u1";
    let names: Vec<&str> = cg.v1.iter().map(|(c, _)| c.as_str()).collect();
    assert_eq!(names, ["pids", "memory", "cpu", "freezer"]);
    assert_eq!(cg.v2, None);
    cg.create(&res, &[]).unwrap();
    assert!(fake.path(&format!("freezer/{own}")).is_dir());
    assert!(!fake
        .path(&format!("memory/{own}/memory.limit_in_bytes"))
        .exists());
    // Without updatable, nothing beyond the limit.
    let res = Resources {
        pids: Some(9),
        ..Default::default()
    };
    let cg = Cgroup::locate_in(&h, "u2", &res, DevicePolicy::None)
        .unwrap()
        .unwrap();
    assert_eq!(cg.v1.len(), 1);

    // A pure v2 host without the cpu controller: the rest on v2, cpu skipped (no error),
    // and the v2 directory carries the freezer.
    let fake = Fake::new();
    let h = fake.pure_v2("memory pids");
    let res = Resources {
        updatable: true,
        ..Default::default()
    };
    let cg = Cgroup::locate_in(&h, "u3", &res, DevicePolicy::None)
        .unwrap()
        .unwrap();
    assert_eq!(
        cg.v2,
        Some((
            fake.path("cg/kiln.service/kiln/u3"),
            vec!["memory".into(), "pids".into()]
        ))
    );
}

#[test]
fn a_running_sandbox_is_found_from_its_pid_1_and_frozen_and_limited() {
    use super::live::{CgroupError, SandboxCgroups};
    let fake = Fake::new();
    let h = fake.hybrid("hugetlb");
    let mut mounts = fake.mount(37, "freezer", "cgroup", "rw,freezer");
    for m in &h.mounts {
        mounts.push_str(&format!(
            "1 1 0:1 {} {} rw - {} {} {}\n",
            m.root,
            m.point.display(),
            m.fstype,
            m.fstype,
            m.options.join(",")
        ));
    }
    let h = Hierarchies::parse(&mounts, "0::/\n");
    // pid 1 has its own memory, cpu and freezer cgroups; pids and v2 are its supervisor's.
    let own = "/user.slice/kiln.scope/kiln/abc";
    let proc_cgroup = format!(
        "8:pids:/user.slice/kiln.scope\n6:freezer:{own}\n4:memory:{own}\n\
         1:cpu,cpuacct:{own}\n0::/user.slice/kiln.scope\n"
    );
    let cg = SandboxCgroups::of_in(&h, &proc_cgroup);
    fake.file(&format!("freezer{own}/freezer.state"), "THAWED\n");
    fake.file(&format!("memory{own}/memory.limit_in_bytes"), "0");
    fake.file(&format!("memory{own}/memory.memsw.limit_in_bytes"), "0");
    fake.file(&format!("cpu,cpuacct{own}/cpu.cfs_quota_us"), "-1");
    assert!(!cg.frozen());
    // A fake freezer.state reads back what was written: FROZEN at once.
    cg.freeze().unwrap();
    assert_eq!(fake.read(&format!("freezer{own}/freezer.state")), "FROZEN");
    assert!(cg.frozen());
    cg.thaw().unwrap();
    assert!(!cg.frozen());

    let res = Resources {
        memory: Some(32 << 20),
        cpus: Some(0.5),
        ..Default::default()
    };
    cg.set_limits(&res).unwrap();
    let m = (32 << 20).to_string();
    assert_eq!(fake.read(&format!("memory{own}/memory.limit_in_bytes")), m);
    assert_eq!(
        fake.read(&format!("memory{own}/memory.memsw.limit_in_bytes")),
        m
    );
    assert_eq!(
        fake.read(&format!("cpu,cpuacct{own}/cpu.cfs_quota_us")),
        "50000"
    );
    // --memory-swap: memory plus swap on v1; -1 is unlimited.
    for (swap, memsw) in [(96 << 20, (96 << 20).to_string()), (-1, "-1".to_string())] {
        cg.set_limits(&Resources {
            memory: Some(32 << 20),
            memory_swap: Some(swap),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(
            fake.read(&format!("memory{own}/memory.memsw.limit_in_bytes")),
            memsw
        );
    }
    // Its pids cgroup is its supervisor's: never touched.
    let err = cg
        .set_limits(&Resources {
            pids: Some(5),
            ..Default::default()
        })
        .unwrap_err();
    assert!(matches!(err, CgroupError::NoCgroup("pids")), "{err}");
    assert!(!fake.path("pids/user.slice/kiln.scope/pids.max").exists());

    // On v2: cgroup.freeze, done when cgroup.events says frozen; one that never says so
    // is thawed again.
    let fake = Fake::new();
    let h = fake.pure_v2("memory pids");
    let dir = "cg/kiln.service/kiln/xyz";
    fake.file(&format!("{dir}/cgroup.freeze"), "0\n");
    fake.file(&format!("{dir}/cgroup.events"), "populated 1\nfrozen 0\n");
    fake.file(&format!("{dir}/pids.max"), "max\n");
    let cg = SandboxCgroups::of_in(&h, "0::/kiln.service/kiln/xyz\n");
    let err = cg
        .freeze_within(std::time::Duration::from_millis(20))
        .unwrap_err();
    assert!(matches!(err, CgroupError::FreezeTimeout(_)), "{err}");
    assert_eq!(fake.read(&format!("{dir}/cgroup.freeze")), "0");
    fake.file(&format!("{dir}/cgroup.events"), "populated 1\nfrozen 1\n");
    cg.freeze().unwrap();
    assert!(cg.frozen());
    cg.set_limits(&Resources {
        pids: Some(0),
        ..Default::default()
    })
    .unwrap();
    assert_eq!(fake.read(&format!("{dir}/pids.max")), "max");
    assert!(matches!(
        cg.set_limits(&Resources {
            memory: Some(1),
            ..Default::default()
        }),
        Err(CgroupError::NoCgroup("memory"))
    ));
    // A process in no sandbox cgroup at all.
    assert_eq!(
        SandboxCgroups::of_in(&h, "0::/kiln.service\n"),
        SandboxCgroups::default()
    );
}
