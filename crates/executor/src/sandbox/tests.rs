use super::process::{lookup, resolve_user_in, User};
use super::rootfs::{dir_in_root, file_in_root};

const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\n\
                      nobody:x:65534:65534:nobody:/nonexistent:/bin/sh\n\
                      app:x:1000:1000::/home/app:/bin/sh\n";
const GROUP: &str = "root:x:0:\nnogroup:x:65534:\napp:x:1000:\nwheel:x:10:app,other\n";

#[test]
fn users() {
    let u = |s| resolve_user_in(s, PASSWD, GROUP);
    assert_eq!(
        u("").unwrap(),
        User {
            uid: 0,
            gid: 0,
            groups: vec![0],
            home: "/root".into()
        }
    );
    assert_eq!(u("nobody").unwrap().uid, 65534);
    assert_eq!(u("nobody").unwrap().home, "/nonexistent");
    let app = u("app").unwrap();
    assert_eq!((app.uid, app.gid, app.groups), (1000, 1000, vec![1000, 10]));
    let app = u("1000").unwrap();
    assert_eq!(app.groups, vec![1000, 10]);
    assert_eq!(u("app:nogroup").unwrap().groups, vec![65534]);
    let n = u("1234:1234").unwrap();
    assert_eq!((n.uid, n.gid, n.home.as_str()), (1234, 1234, "/"));
    assert_eq!(u("1234").unwrap().gid, 0);
    assert_eq!(
        u("missing").unwrap_err().to_string(),
        "unable to find user missing: no matching entries in passwd file"
    );
    assert_eq!(
        u("app:missing").unwrap_err().to_string(),
        "unable to find group missing: no matching entries in group file"
    );
}

#[test]
fn paths() {
    assert_eq!(lookup("sh", "/nonexistent"), None);
    let dir = std::env::temp_dir().join(format!("kiln-resolve-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("a/b")).unwrap();
    std::os::unix::fs::symlink("/a", dir.join("abs")).unwrap();
    std::os::unix::fs::symlink("../../..", dir.join("a/b/up")).unwrap();
    assert_eq!(dir_in_root(&dir, "/abs/b").path, dir.join("a/b"));
    assert_eq!(dir_in_root(&dir, "/a/b/up/x").path, dir.join("x"));
    assert!(dir.join("x").is_dir());
    assert_eq!(dir_in_root(&dir, "/../../etc").path, dir.join("etc"));
    assert_eq!(file_in_root(&dir, "/abs/f").path, dir.join("a/f"));
    assert!(dir.join("a/f").is_file());
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A sandbox given name servers (a user-defined network's, on its gateway) lists only them
/// in its /etc/resolv.conf, in order, whatever the host's are.
#[test]
fn given_name_servers_replace_the_hosts_in_resolv_conf() {
    let spec = crate::spec::RunSpec {
        rootfs: crate::spec::RootFs {
            lowers: vec![],
            upper: "/u".into(),
            work: "/w".into(),
        },
        args: vec!["true".into()],
        env: vec![],
        cwd: "/".into(),
        user: String::new(),
        hostname: "h".into(),
        network: crate::spec::Network::Join("/run/ns".into()),
        mounts: vec![],
        extra: crate::spec::SandboxOptions {
            dns: vec!["172.18.0.1".into(), "10.0.0.53".into()],
            ..Default::default()
        },
    };
    let files = super::rootfs::etc_contents(&spec);
    let resolv = &files
        .iter()
        .find(|(p, _)| *p == "/etc/resolv.conf")
        .unwrap()
        .1;
    let servers: Vec<&str> = resolv
        .lines()
        .filter(|l| l.starts_with("nameserver"))
        .collect();
    assert_eq!(
        servers,
        ["nameserver 172.18.0.1", "nameserver 10.0.0.53"],
        "{resolv}"
    );
}
