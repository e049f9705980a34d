//! Issue 11 item 9, through the command line: `[registry] stall-timeout` in config.toml
//! bounds how long a silent registry is waited for, and a bad value is a usage error.

mod common;

use common::*;
use std::time::{Duration, Instant};

#[test]
fn issue_11_a_silent_registry_fails_after_the_configured_stall_timeout() {
    // Accepts connections and never answers.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let host = listener.local_addr().unwrap().to_string();
    let held = std::thread::spawn(move || {
        let mut conns = Vec::new();
        while let Ok((c, _)) = listener.accept() {
            conns.push(c);
            if conns.len() >= 4 {
                break;
            }
        }
        std::thread::sleep(Duration::from_mins(1));
    });
    let k = Kiln::new();
    let cfg = k.root.path().join("config.toml");
    std::fs::write(&cfg, "[registry]\nstall-timeout = \"1s\"\nretries = 1\n").unwrap();
    let start = Instant::now();
    let out = k.run(&["pull", &format!("{host}/kiln/silent:1")]);
    let took = start.elapsed();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&host) && err.contains("sent nothing for 1s"),
        "{err}"
    );
    // Not the 300 s it used to take (a stall is not retried).
    assert!(took < Duration::from_secs(20), "{took:?}");
    drop(held);

    std::fs::write(&cfg, "[registry]\nstall-timeout = \"soon\"\n").unwrap();
    let out = k.run(&["pull", &format!("{host}/kiln/silent:1")]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("registry.stall-timeout"),
        "{}",
        stderr(&out)
    );
}
