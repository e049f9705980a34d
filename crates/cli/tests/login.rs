//! `kiln login` / `kiln logout` against a real `docker-registry` with htpasswd auth. Every
//! run points HOME (and DOCKER_CONFIG, or not) at a temp dir, so the real ~/.docker is never
//! read or written.

mod common;

use common::registry_server::{Registry, PASSWORD, USER};
use common::*;
use std::io::Write as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// base64("kiln:kiln-secret"), i.e. `USER:PASSWORD`.
const AUTH: &str = "a2lsbjpraWxuLXNlY3JldA==";

/// Where kiln looks for credentials: HOME, and DOCKER_CONFIG when set.
struct DockerEnv {
    home: PathBuf,
    docker_config: Option<PathBuf>,
}

impl DockerEnv {
    fn config_file(&self) -> PathBuf {
        match &self.docker_config {
            Some(d) => d.join("config.json"),
            None => self.home.join(".docker/config.json"),
        }
    }

    fn apply(&self, c: &mut Command) {
        c.env("HOME", &self.home);
        match &self.docker_config {
            Some(d) => c.env("DOCKER_CONFIG", d),
            None => c.env_remove("DOCKER_CONFIG"),
        };
    }

    /// Runs `kiln ARGS` on `k`'s root with `stdin` as its standard input (none: /dev/null).
    fn run(&self, k: &Kiln, args: &[&str], stdin: Option<&str>) -> Output {
        let mut c = k.cmd();
        self.apply(&mut c);
        c.args(args).stdout(Stdio::piped()).stderr(Stdio::piped());
        if stdin.is_some() {
            c.stdin(Stdio::piped());
        }
        let mut child = c.spawn().expect("run kiln");
        if let Some(input) = stdin {
            let mut i = child.stdin.take().unwrap();
            i.write_all(input.as_bytes()).unwrap();
        }
        child.wait_with_output().unwrap()
    }

    fn config(&self) -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(self.config_file()).unwrap()).unwrap()
    }
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

fn show(o: &Output) -> String {
    format!(
        "status {}\nstdout:\n{}\nstderr:\n{}",
        o.status,
        stdout(o),
        stderr(o)
    )
}

/// A one-file root filesystem imported as `name` into `k`.
fn import_tiny(k: &Kiln, name: &str) {
    let d = tempfile::tempdir().unwrap();
    write(
        d.path(),
        "rootfs/hello.txt",
        "hello from a private registry\n",
    );
    let tar = d.path().join("rootfs.tar");
    let st = Command::new("tar")
        .args(["--owner=0", "--group=0", "-C"])
        .arg(d.path().join("rootfs"))
        .arg("-cf")
        .arg(&tar)
        .arg(".")
        .status()
        .unwrap();
    assert!(st.success());
    k.ok(&["import", tar.to_str().unwrap(), name]);
}

#[test]
fn login_checks_saves_and_logout_removes() {
    if !can_run(&["tar"]) {
        return;
    }
    let Some(reg) = Registry::start_with_auth() else {
        return;
    };
    let host = reg.host();
    let tmp = tempfile::tempdir().unwrap();
    // HOME only: the file is ~/.docker/config.json.
    let denv = DockerEnv {
        home: tmp.path().join("home"),
        docker_config: None,
    };
    std::fs::create_dir_all(&denv.home).unwrap();
    let file = denv.config_file();
    let pusher = Kiln::new();
    let image = format!("{host}/kiln/private:v1");
    import_tiny(&pusher, &image);

    // Not logged in: push and pull are refused.
    let out = denv.run(&pusher, &["push", &image], None);
    assert!(!out.status.success(), "{}", show(&out));
    assert!(stderr(&out).contains("unauthorized"), "{}", show(&out));

    // Wrong password: exit 1, a clear message, nothing written (not even the directory).
    let out = denv.run(
        &pusher,
        &["login", "-u", USER, "--password-stdin", &host],
        Some("wrong\n"),
    );
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(
        stderr(&out).contains(&format!("login to {host} failed: unauthorized")),
        "{}",
        show(&out)
    );
    assert!(!stdout(&out).contains("Login Succeeded"), "{}", show(&out));
    assert!(!file.parent().unwrap().exists(), "{}", show(&out));

    // Right password on stdin: saved (0600 file in a 0700 dir), other keys and hosts kept.
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    std::fs::set_permissions(
        file.parent().unwrap(),
        std::fs::Permissions::from_mode(0o700),
    )
    .unwrap();
    std::fs::write(
        &file,
        r#"{"auths":{"quay.io":{"auth":"cTpx"}},"psFormat":"table {{.ID}}","credHelpers":{"gcr.io":"gcloud"}}"#,
    )
    .unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = denv.run(
        &pusher,
        &["login", "-u", USER, "--password-stdin", &host],
        Some(&format!("{PASSWORD}\n")),
    );
    assert!(out.status.success(), "{}", show(&out));
    assert!(stdout(&out).contains("Login Succeeded"), "{}", show(&out));
    assert_eq!(mode(&file), 0o600);
    assert_eq!(mode(file.parent().unwrap()), 0o700);
    let cfg = denv.config();
    assert_eq!(cfg["auths"][host.as_str()]["auth"], AUTH, "{cfg}");
    assert_eq!(cfg["auths"]["quay.io"]["auth"], "cTpx", "{cfg}");
    assert_eq!(cfg["psFormat"], "table {{.ID}}", "{cfg}");
    assert_eq!(cfg["credHelpers"]["gcr.io"], "gcloud", "{cfg}");
    assert_eq!(
        files_below(file.parent().unwrap()),
        ["config.json"],
        "temp file left"
    );

    // -p works too, with docker's warning; a wrong -p leaves the saved entry alone.
    let out = denv.run(&pusher, &["login", "-u", USER, "-p", "nope", &host], None);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(
        stderr(&out)
            .contains("WARNING! Using --password via the CLI is insecure. Use --password-stdin."),
        "{}",
        show(&out)
    );
    assert_eq!(denv.config()["auths"][host.as_str()]["auth"], AUTH);

    // The saved credentials serve push, then pull into another root.
    let out = denv.run(&pusher, &["push", &image], None);
    assert!(out.status.success(), "{}", show(&out));
    let puller = Kiln::new();
    let out = denv.run(&puller, &["pull", &image], None);
    assert!(out.status.success(), "{}", show(&out));
    assert!(puller.ok(&["images"]).contains("kiln/private"));

    // No flags, no terminal: the stored credentials are checked and still work.
    let out = denv.run(&pusher, &["login", &host], None);
    assert!(out.status.success(), "{}", show(&out));
    assert!(
        stdout(&out).contains("Authenticating with existing credentials...")
            && stdout(&out).contains("Login Succeeded"),
        "{}",
        show(&out)
    );

    // Logout removes only this host; a second logout says so and succeeds.
    let out = denv.run(&pusher, &["logout", &host], None);
    assert!(out.status.success(), "{}", show(&out));
    assert!(
        stdout(&out).contains(&format!("Removing login credentials for {host}")),
        "{}",
        show(&out)
    );
    let cfg = denv.config();
    assert!(cfg["auths"].get(host.as_str()).is_none(), "{cfg}");
    assert_eq!(cfg["auths"]["quay.io"]["auth"], "cTpx", "{cfg}");
    assert_eq!(cfg["psFormat"], "table {{.ID}}", "{cfg}");
    let out = denv.run(&pusher, &["logout", &host], None);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert!(
        stdout(&out).contains(&format!("Not logged in to {host}")),
        "{}",
        show(&out)
    );

    // Logged out: pulls are refused again, and a login needs a terminal to ask.
    let out = denv.run(&Kiln::new(), &["pull", &image], None);
    assert!(!out.status.success(), "{}", show(&out));
    let out = denv.run(&pusher, &["login", &host], None);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(
        stderr(&out).contains("cannot perform an interactive login from a non TTY device"),
        "{}",
        show(&out)
    );
}

#[test]
fn login_flag_errors_and_docker_hub_key() {
    let tmp = tempfile::tempdir().unwrap();
    let denv = DockerEnv {
        home: tmp.path().join("home"),
        docker_config: Some(tmp.path().join("dockercfg")),
    };
    let k = Kiln::new();
    let out = denv.run(
        &k,
        &["login", "--password-stdin", "127.0.0.1:1"],
        Some("x\n"),
    );
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(
        stderr(&out).contains("must provide --username with --password-stdin"),
        "{}",
        show(&out)
    );
    let out = denv.run(
        &k,
        &[
            "login",
            "-u",
            "a",
            "-p",
            "b",
            "--password-stdin",
            "127.0.0.1:1",
        ],
        Some("x\n"),
    );
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    // Nothing listens there: a clear failure, nothing written.
    let port = registry_server::free_port();
    let out = denv.run(
        &k,
        &[
            "login",
            "-u",
            "a",
            "--password-stdin",
            &format!("127.0.0.1:{port}"),
        ],
        Some("b"),
    );
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(
        stderr(&out).contains(&format!("login to 127.0.0.1:{port} failed")),
        "{}",
        show(&out)
    );
    assert!(!denv.config_file().exists());

    // Docker Hub is filed under docker's key; `logout` without a server means it (no
    // network needed for logout).
    std::fs::create_dir_all(tmp.path().join("dockercfg")).unwrap();
    std::fs::write(
        denv.config_file(),
        r#"{"auths":{"https://index.docker.io/v1/":{"auth":"dTpw"},"quay.io":{"auth":"cTpx"}}}"#,
    )
    .unwrap();
    let out = denv.run(&k, &["logout"], None);
    assert!(out.status.success(), "{}", show(&out));
    assert!(
        stdout(&out).contains("Removing login credentials for https://index.docker.io/v1/"),
        "{}",
        show(&out)
    );
    let out = denv.run(&k, &["logout", "docker.io"], None);
    assert!(
        stdout(&out).contains("Not logged in to https://index.docker.io/v1/"),
        "{}",
        show(&out)
    );
    assert_eq!(denv.config()["auths"]["quay.io"]["auth"], "cTpx");
    assert!(
        !tmp.path().join("home/.docker").exists(),
        "HOME used despite DOCKER_CONFIG"
    );
}
