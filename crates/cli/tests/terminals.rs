//! Terminals through the real `kiln` binary: `run -it`, `run -t`, `exec -it`, `exec -t`,
//! driven from a pseudo-terminal the test opens (kiln is its session leader, as under a
//! terminal emulator). Needs root and Debian's busybox-static; skipped otherwise.

mod common;
use common::*;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A pseudo-terminal whose slave is the controlling terminal and stdio of a kiln process.
struct Pty {
    master: std::fs::File,
    slave: OwnedFd,
    output: Arc<Mutex<Vec<u8>>>,
    /// How much of `output` [`Pty::expect`] consumed.
    seen: usize,
    /// The terminal's local modes before kiln started (see [`Pty::lflag`]).
    cooked: libc::tcflag_t,
    child: Child,
}

fn winsize(rows: u16, cols: u16) -> libc::winsize {
    libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    }
}

impl Pty {
    /// Starts `cmd` on a new terminal of `rows`×`cols`.
    fn spawn(mut cmd: Command, rows: u16, cols: u16) -> Pty {
        let (mut m, mut s) = (-1, -1);
        let mut ws = winsize(rows, cols);
        // SAFETY: valid out-pointers; no name buffer, default termios.
        let r = unsafe {
            libc::openpty(
                &raw mut m,
                &raw mut s,
                std::ptr::null_mut(),
                std::ptr::null(),
                &raw mut ws,
            )
        };
        assert_eq!(r, 0, "openpty: {}", std::io::Error::last_os_error());
        // SAFETY: fresh fds owned here.
        let (master, slave) = unsafe { (OwnedFd::from_raw_fd(m), OwnedFd::from_raw_fd(s)) };
        // SAFETY: zeroed termios is a valid out-buffer; valid fd and pointer.
        let cooked = unsafe {
            let mut t: libc::termios = std::mem::zeroed();
            assert_eq!(libc::tcgetattr(slave.as_raw_fd(), &raw mut t), 0);
            t.c_lflag
        };
        let stdio = |fd: &OwnedFd| Stdio::from(fd.try_clone().unwrap());
        cmd.stdin(stdio(&slave))
            .stdout(stdio(&slave))
            .stderr(stdio(&slave));
        // SAFETY: setsid and ioctl are async-signal-safe.
        unsafe {
            cmd.pre_exec(|| {
                if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().expect("start kiln");
        let master = std::fs::File::from(master);
        let output = Arc::new(Mutex::new(Vec::new()));
        let mut reader = master.try_clone().unwrap();
        let out = output.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            // Ends with EIO once the last slave is closed.
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 {
                    break;
                }
                out.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        Pty {
            master,
            slave,
            output,
            seen: 0,
            cooked,
            child,
        }
    }

    fn send(&mut self, s: &str) {
        self.master.write_all(s.as_bytes()).unwrap();
    }

    /// Waits until the output after what was already matched contains `needle`.
    fn expect(&mut self, needle: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            {
                let out = self.output.lock().unwrap();
                let text = String::from_utf8_lossy(&out[self.seen..]).into_owned();
                if let Some(i) = text.find(needle) {
                    self.seen += text[..i + needle.len()].len();
                    return;
                }
                assert!(
                    Instant::now() < deadline,
                    "no {needle:?} on the terminal; it shows:\n{text}"
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn resize(&self, rows: u16, cols: u16) {
        let ws = winsize(rows, cols);
        // SAFETY: valid pointer. The kernel sends SIGWINCH to kiln (the foreground process
        // group of the terminal).
        let r = unsafe { libc::ioctl(self.master.as_raw_fd(), libc::TIOCSWINSZ, &raw const ws) };
        assert_eq!(r, 0);
    }

    /// Kiln's exit code, waiting at most 20 s.
    fn exit_code(&mut self) -> i32 {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                return st.code().unwrap_or(-1);
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let out = self.output.lock().unwrap();
                panic!(
                    "kiln did not exit; the terminal shows:\n{}",
                    String::from_utf8_lossy(&out)
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The terminal's local modes (ICANON, ECHO, ISIG…).
    fn lflag(&self) -> libc::tcflag_t {
        // SAFETY: zeroed termios is a valid out-buffer.
        let mut t: libc::termios = unsafe { std::mem::zeroed() };
        // SAFETY: valid fd and pointer.
        assert_eq!(
            unsafe { libc::tcgetattr(self.slave.as_raw_fd(), &raw mut t) },
            0
        );
        t.c_lflag
    }
}

/// Drives an interactive busybox sh started by `cmd` on a 30×100 terminal: `tty`, `stty
/// size` before and after a resize, ctrl-c on a `sleep 100`, `exit 4`; the caller's terminal
/// is back in its own modes afterwards.
fn interactive_shell(cmd: Command) {
    let mut t = Pty::spawn(cmd, 30, 100);
    // Read before kiln started: it may be in raw mode already.
    let cooked = t.cooked;
    // The computed strings never appear in the echo of what is typed.
    t.send("tty; echo t$((40+2))\r");
    t.expect("/dev/pts/");
    t.expect("t42");
    t.send("stty size\r");
    t.expect("30 100");
    t.resize(40, 120);
    // SIGWINCH reaches kiln asynchronously: ask until the new size shows.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        t.send("stty size; echo s$((1+1))\r");
        t.expect("s2");
        let out = t.output.lock().unwrap().clone();
        if String::from_utf8_lossy(&out).contains("40 120") {
            break;
        }
        assert!(Instant::now() < deadline, "stty size never showed 40 120");
        std::thread::sleep(Duration::from_millis(100));
    }
    let started = Instant::now();
    t.send("sleep 100\r");
    std::thread::sleep(Duration::from_millis(700));
    t.send("\x03");
    t.send("echo alive$((1+1))\r");
    t.expect("alive2");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "ctrl-c did not interrupt sleep"
    );
    t.send("exit 4\r");
    assert_eq!(t.exit_code(), 4, "exit 4 in the container's shell");
    assert_eq!(
        t.lflag() & (libc::ICANON | libc::ECHO | libc::ISIG),
        cooked & (libc::ICANON | libc::ECHO | libc::ISIG),
        "the caller's terminal is out of raw mode again"
    );
}

#[test]
fn run_it_gives_the_shell_a_terminal_of_the_container() {
    let Some((k, _ctx)) = local_project(&["busybox"]) else {
        return;
    };
    let mut cmd = k.cmd();
    cmd.args(["run", "--rm", "-it", "busybox", "sh"]);
    interactive_shell(cmd);
    assert_eq!(k.ok(&["ps", "-aq"]).trim(), "", "--rm removed it");
}

#[test]
fn exec_it_gives_the_shell_a_terminal_of_the_container() {
    let Some((k, _ctx)) = local_project(&["busybox"]) else {
        return;
    };
    let id = k.ok(&["run", "-d", "busybox", "sleep", "1000"]);
    let id = id.trim();
    let mut cmd = k.cmd();
    cmd.args(["exec", "-it", id, "sh"]);
    interactive_shell(cmd);
    // Without a terminal on the caller's side: -t still gets one, as with docker.
    let out = k.run(&["exec", "-t", id, "tty"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(
        String::from_utf8_lossy(&out.stdout).starts_with("/dev/pts/"),
        "{out:?}"
    );
    let out = k.run(&["exec", "-it", id, "tty"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("the input device is not a TTY"),
        "{out:?}"
    );
    k.ok(&["rm", "-f", id]);
}

#[test]
fn run_t_without_a_caller_terminal_still_gets_one() {
    let Some((k, _ctx)) = local_project(&["busybox"]) else {
        return;
    };
    // The container's terminal turns \n into \r\n, as with docker run -t.
    let out = k.run(&["run", "--rm", "-t", "busybox", "tty"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.starts_with("/dev/pts/") && stdout.ends_with("\r\n"),
        "{stdout:?}"
    );
    let out = k.run(&["run", "--rm", "-t", "busybox", "sh", "-c", "exit 7"]);
    assert_eq!(out.status.code(), Some(7));
    // -it needs a terminal on stdin (the test's is /dev/null), as with docker.
    let out = k.run(&["run", "--rm", "-it", "busybox", "tty"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("the input device is not a TTY"),
        "{out:?}"
    );
    // Without -t, -i keeps pipes: no terminal.
    let out = k.run(&["run", "--rm", "-i", "busybox", "tty"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("not a tty"),
        "{out:?}"
    );
}

/// A `run -t` whose command ends before the caller attaches (a loaded host: the test hook
/// `KILN_ATTACH_TEST_DELAY_MS` delays the attach) still gets all of its output and its exit
/// code, as docker's does.
#[test]
fn run_t_gets_the_output_and_exit_code_of_a_command_that_ended_before_it_attached() {
    let Some((k, _ctx)) = local_project(&["busybox"]) else {
        return;
    };
    let run = |args: &[&str]| {
        k.cmd()
            .env("KILN_ATTACH_TEST_DELAY_MS", "1000")
            .args(args)
            .output()
            .expect("run kiln")
    };
    let out = run(&[
        "run",
        "--rm",
        "-t",
        "busybox",
        "sh",
        "-c",
        "echo hi; exit 7",
    ]);
    assert_eq!(out.status.code(), Some(7), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hi\r\n", "{out:?}");
    // Without --rm too, and the container is then listed as exited with its code.
    let out = run(&["run", "--name", "early", "-t", "busybox", "echo", "done"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "done\r\n", "{out:?}");
    assert!(
        status(&k, "early").starts_with("Exited (0)"),
        "{}",
        status(&k, "early")
    );
    // A command that cannot be started is still reported at once (no wait for a client).
    let started = Instant::now();
    let out = run(&["run", "--rm", "-t", "busybox", "/no/such/command"]);
    assert_eq!(out.status.code(), Some(127), "{out:?}");
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "{:?}",
        started.elapsed()
    );
}

/// `ps -a`'s STATUS of the container whose id or name is `what` (empty when it is not
/// listed).
fn status(k: &common::Kiln, what: &str) -> String {
    let ps = k.ok(&["ps", "-a", "--no-trunc"]);
    let Some(line) = ps
        .lines()
        .skip(1)
        .find(|l| l.starts_with(what) || l.trim_end().ends_with(what))
    else {
        return String::new();
    };
    for s in ["Up", "Exited", "Created"] {
        if let Some(i) = line.find(s) {
            return line[i..].to_string();
        }
    }
    String::new()
}

/// `kiln attach ARGS…` on a fresh 30×100 terminal.
fn attach(k: &common::Kiln, args: &[&str]) -> Pty {
    let mut cmd = k.cmd();
    cmd.arg("attach").args(args);
    Pty::spawn(cmd, 30, 100)
}

/// Detaches `t` with `keys`: kiln exits 0 saying docker's "read escape sequence".
fn detach(t: &mut Pty, keys: &str) {
    t.send(keys);
    t.expect("read escape sequence");
    assert_eq!(t.exit_code(), 0, "a detach exits 0");
}

#[test]
fn attach_to_a_detached_terminal_detach_and_attach_again() {
    let Some((k, _ctx)) = local_project(&["busybox"]) else {
        return;
    };
    let id = k.ok(&["run", "-dit", "busybox", "sh"]);
    let id = id.trim();
    let inspect = k.ok(&["inspect", id]);
    assert!(inspect.contains(r#""Tty": true"#), "{inspect}");
    let mut t = attach(&k, &[id]);
    // The computed strings never appear in the echo of what is typed.
    t.send("tty; echo t$((40+2))\r");
    t.expect("/dev/pts/");
    t.expect("t42");
    // The window size at attach, and after a resize.
    t.send("stty size\r");
    t.expect("30 100");
    t.resize(40, 120);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        t.send("stty size; echo s$((1+1))\r");
        t.expect("s2");
        let out = t.output.lock().unwrap().clone();
        if String::from_utf8_lossy(&out).contains("40 120") {
            break;
        }
        assert!(Instant::now() < deadline, "stty size never showed 40 120");
        std::thread::sleep(Duration::from_millis(100));
    }
    detach(&mut t, "\x10\x11");
    assert!(status(&k, id).starts_with("Up"), "{}", status(&k, id));
    // Again: the same shell (its variable), then its exit code.
    let mut t = attach(&k, &[id]);
    t.send("echo again$((1+1))\r");
    t.expect("again2");
    t.send("exit 4\r");
    assert_eq!(t.exit_code(), 4, "attach exits with the container's code");
    assert!(
        status(&k, id).starts_with("Exited (4)"),
        "{}",
        status(&k, id)
    );
    // The log has the terminal's output too.
    let logs = k.ok(&["logs", id]);
    assert!(logs.contains("t42") && logs.contains("again2"), "{logs}");
    k.ok(&["rm", id]);
}

#[test]
fn detach_keys_can_be_chosen_and_bad_ones_are_refused() {
    let Some((k, _ctx)) = local_project(&["busybox"]) else {
        return;
    };
    let id = k.ok(&["run", "-dit", "busybox", "sh"]);
    let id = id.trim();
    let mut t = attach(&k, &["--detach-keys", "ctrl-x,y", id]);
    // A broken sequence reaches the shell as typed: ctrl-x then a command.
    t.send("echo a$((1+1))\r");
    t.expect("a2");
    detach(&mut t, "\x18y");
    assert!(status(&k, id).starts_with("Up"), "{}", status(&k, id));
    let mut t = attach(&k, &["--detach-keys", "ctrl-1", id]);
    assert_eq!(t.exit_code(), 1);
    t.expect("Invalid detach keys (ctrl-1) provided");
    // run -it --detach-keys: detached, it runs on; attach gets it back.
    let mut cmd = k.cmd();
    cmd.args([
        "run",
        "-it",
        "--detach-keys",
        "ctrl-x,y",
        "--name",
        "keys",
        "busybox",
        "sh",
    ]);
    let mut t = Pty::spawn(cmd, 30, 100);
    t.send("echo r$((2+2))\r");
    t.expect("r4");
    detach(&mut t, "\x18y");
    assert!(
        status(&k, "keys").starts_with("Up"),
        "{}",
        status(&k, "keys")
    );
    let mut t = attach(&k, &["keys"]);
    t.send("exit 6\r");
    assert_eq!(t.exit_code(), 6);
    k.ok(&["rm", "-f", id, "keys"]);
}

#[test]
fn run_it_detaches_and_rm_removes_it_once_it_exits() {
    let Some((k, _ctx)) = local_project(&["busybox"]) else {
        return;
    };
    let mut cmd = k.cmd();
    cmd.args(["run", "--rm", "-it", "--name", "away", "busybox", "sh"]);
    let mut t = Pty::spawn(cmd, 30, 100);
    t.send("echo x$((3+4))\r");
    t.expect("x7");
    detach(&mut t, "\x10\x11");
    assert!(
        status(&k, "away").starts_with("Up"),
        "{}",
        status(&k, "away")
    );
    let mut t = attach(&k, &["away"]);
    t.send("exit 4\r");
    assert_eq!(t.exit_code(), 4);
    assert_eq!(k.ok(&["ps", "-aq"]).trim(), "", "--rm removed it");
}

#[test]
fn start_ai_attaches_to_a_created_terminal() {
    let Some((k, _ctx)) = local_project(&["busybox"]) else {
        return;
    };
    let id = k.ok(&["create", "-it", "busybox", "sh"]);
    let id = id.trim();
    let mut cmd = k.cmd();
    cmd.args(["start", "-ai", id]);
    let mut t = Pty::spawn(cmd, 25, 90);
    t.send("stty size; echo p$((2+3))\r");
    t.expect("25 90");
    t.expect("p5");
    t.send("exit 5\r");
    assert_eq!(t.exit_code(), 5);
    // Started again: the same container, attached again.
    let mut cmd = k.cmd();
    cmd.args(["start", "-ai", id]);
    let mut t = Pty::spawn(cmd, 25, 90);
    t.send("echo q$((2+3))\r");
    t.expect("q5");
    t.send("exit\r");
    assert_eq!(t.exit_code(), 0);
    k.ok(&["rm", id]);
}

#[test]
fn attach_feeds_the_stdin_of_a_run_di_container_without_a_terminal() {
    let Some((k, _ctx)) = local_project(&["busybox"]) else {
        return;
    };
    let id = k.ok(&["run", "-di", "busybox", "sh"]);
    let id = id.trim();
    let mut child = k
        .cmd()
        .args(["attach", id])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"echo in$((2+2)); echo err$((1+1)) >&2\nexit 3\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "in4\n");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "err2\n");
    let logs = k.run(&["logs", id]);
    assert_eq!(String::from_utf8_lossy(&logs.stdout), "in4\n");
    // Stopped: attach refuses, as docker.
    let out = k.run(&["attach", id]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("You cannot attach to a stopped container, start it first"),
        "{out:?}"
    );
    k.ok(&["rm", id]);
}

#[test]
fn run_it_of_a_command_that_cannot_start_fails_at_once() {
    let Some((k, _ctx)) = local_project(&["busybox"]) else {
        return;
    };
    let mut cmd = k.cmd();
    cmd.args(["run", "--rm", "-it", "busybox", "/no/such/command"]);
    let started = Instant::now();
    let mut t = Pty::spawn(cmd, 30, 100);
    assert_eq!(t.exit_code(), 127, "as docker run");
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "no wait for a client that will never attach"
    );
    t.expect("/no/such/command");
    assert_eq!(k.ok(&["ps", "-aq"]).trim(), "", "nothing is left behind");
    // A foreground container without -t has no shim to attach to.
    let mut fg = k
        .cmd()
        .args(["run", "--name", "fg", "busybox", "sleep", "30"])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !status(&k, "fg").starts_with("Up") {
        assert!(Instant::now() < deadline, "fg never ran");
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = k.run(&["attach", "fg"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("only a container run with -d or -t"),
        "{out:?}"
    );
    k.ok(&["rm", "-f", "fg"]);
    let _ = fg.wait();
}

#[test]
fn exec_it_detaches_and_the_process_runs_on() {
    let Some((k, _ctx)) = local_project(&["busybox"]) else {
        return;
    };
    let id = k.ok(&["run", "-d", "busybox", "sleep", "1000"]);
    let id = id.trim();
    let mut cmd = k.cmd();
    cmd.args(["exec", "-it", "--detach-keys", "ctrl-x,y", id, "sh"]);
    let mut t = Pty::spawn(cmd, 30, 100);
    t.send("echo e$((1+1))\r");
    t.expect("e2");
    // Still running after the detach: it writes the file a second later.
    t.send("sleep 1; touch /after\r");
    detach(&mut t, "\x18y");
    let deadline = Instant::now() + Duration::from_secs(20);
    while k.run(&["exec", id, "test", "-e", "/after"]).status.code() != Some(0) {
        assert!(
            Instant::now() < deadline,
            "the detached shell did not go on"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = k.run(&["exec", "-t", "--detach-keys", "ctrl-", id, "sh"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        stderr(&out).contains("Invalid detach keys (ctrl-) provided"),
        "{out:?}"
    );
    k.ok(&["rm", "-f", id]);
}
