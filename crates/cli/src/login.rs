//! `kiln login` and `kiln logout`, as `docker login` / `docker logout`: credentials are
//! checked against the registry, then filed in the Docker `config.json` that pulls and
//! pushes read (`$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`).

use crate::util::{docker_config_path, Failure};
use clap::Args;
use std::io::{BufRead as _, IsTerminal as _, Read as _, Write as _};
use std::path::PathBuf;

#[derive(Args)]
pub(crate) struct LoginArgs {
    /// Username.
    #[arg(short, long)]
    username: Option<String>,
    /// Password (insecure: it shows in the process list; prefer --password-stdin).
    #[arg(short, long)]
    password: Option<String>,
    /// Take the password from stdin.
    #[arg(long)]
    password_stdin: bool,
    /// Registry server (default: Docker Hub).
    server: Option<String>,
}

#[derive(Args)]
pub(crate) struct LogoutArgs {
    /// Registry server (default: Docker Hub).
    server: Option<String>,
}

const NON_TTY: &str = "cannot perform an interactive login from a non TTY device";

/// The host to talk to (`docker.io` when none is given) and the `auths` key to file under.
fn server(arg: Option<&str>) -> Result<(String, String), Failure> {
    kiln_registry::login_server(arg).ok_or_else(|| {
        Failure::usage(format!(
            "invalid registry server `{}`",
            arg.map(str::trim).unwrap_or_default()
        ))
    })
}

fn config_path() -> Result<PathBuf, Failure> {
    docker_config_path().ok_or_else(|| {
        Failure::new(
            1,
            "cannot find the docker config: set HOME or DOCKER_CONFIG",
        )
    })
}

pub(crate) async fn login(registry: &kiln_registry::Client, a: LoginArgs) -> Result<u8, Failure> {
    if a.password.is_some() && a.password_stdin {
        return Err(Failure::usage(
            "--password and --password-stdin are mutually exclusive",
        ));
    }
    if a.password_stdin && a.username.is_none() {
        return Err(Failure::usage(
            "must provide --username with --password-stdin",
        ));
    }
    if a.password.is_some() {
        eprintln!("WARNING! Using --password via the CLI is insecure. Use --password-stdin.");
    }
    let (host, key) = server(a.server.as_deref())?;
    let path = config_path()?;
    let check = |user: String, password: String| {
        let host = host.clone();
        async move {
            registry
                .check_login(&host, &user, &password)
                .await
                .map_err(|e| login_failure(&host, e))
        }
    };

    // Nothing given: the stored credentials, when they still work (as docker does).
    if a.username.is_none() && a.password.is_none() && !a.password_stdin {
        if let Some((user, password)) = kiln_registry::stored_credentials(&path, &host) {
            println!("Authenticating with existing credentials...");
            match check(user, password).await {
                Ok(()) => {
                    println!("Login Succeeded");
                    return Ok(0);
                }
                Err(f) => eprintln!("Login did not succeed, error: {}", f.one_line()),
            }
        }
    }

    let stdin = std::io::stdin();
    let user = if let Some(u) = a.username {
        u.trim().to_string()
    } else {
        if !stdin.is_terminal() {
            return Err(Failure::new(1, NON_TTY));
        }
        prompt("Username: ")?.trim().to_string()
    };
    if user.is_empty() {
        return Err(Failure::new(1, "username is required"));
    }
    let password = if let Some(p) = a.password {
        p
    } else if a.password_stdin {
        let mut s = String::new();
        stdin.lock().read_to_string(&mut s).map_err(|e| {
            Failure::with_source(1, format!("cannot read the password from stdin: {e}"), e)
        })?;
        let s = s.strip_suffix('\n').unwrap_or(&s);
        s.strip_suffix('\r').unwrap_or(s).to_string()
    } else {
        if !stdin.is_terminal() {
            return Err(Failure::new(1, NON_TTY));
        }
        prompt_hidden("Password: ")?
    };
    if password.is_empty() {
        return Err(Failure::new(1, "password is required"));
    }

    check(user.clone(), password.clone()).await?;
    kiln_registry::save_docker_credentials(&path, &key, &user, &password).map_err(|e| {
        let message = format!("login to {host} succeeded, but saving failed: {e}");
        Failure::with_source(1, message, e)
    })?;
    eprintln!(
        "WARNING! Your credentials are stored unencrypted in '{}'.",
        path.display()
    );
    println!("Login Succeeded");
    Ok(0)
}

fn login_failure(host: &str, e: kiln_registry::Error) -> Failure {
    let why = match e {
        // The host is named once, by the summary.
        kiln_registry::Error::Unauthorized { message, .. } => format!("unauthorized: {message}"),
        kiln_registry::Error::Unreachable { message, .. } => {
            format!("cannot reach the registry: {message}")
        }
        kiln_registry::Error::Protocol { message, .. } => message,
        other => other.to_string(),
    };
    // The registry's own wording is rephrased (the host named once), so the error is not
    // kept as a cause: it would repeat the summary.
    Failure::new(1, format!("login to {host} failed: {why}"))
}

pub(crate) fn logout(a: LogoutArgs) -> Result<u8, Failure> {
    let (host, key) = server(a.server.as_deref())?;
    let path = config_path()?;
    let removed = kiln_registry::remove_docker_credentials(&path, &host)
        .map_err(|e| Failure::with_source(1, format!("cannot remove the credentials: {e}"), e))?;
    if removed {
        println!("Removing login credentials for {key}");
    } else {
        println!("Not logged in to {key}");
    }
    Ok(0)
}

/// Prints `label` (to stdout, as docker does) and reads one line from the terminal.
fn prompt(label: &str) -> Result<String, Failure> {
    let mut out = std::io::stdout().lock();
    let _ = write!(out, "{label}");
    let _ = out.flush();
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| Failure::with_source(1, format!("cannot read from the terminal: {e}"), e))?;
    Ok(line.trim_end_matches(['\n', '\r']).to_string())
}

/// `prompt` with the terminal's echo turned off while the line is read.
fn prompt_hidden(label: &str) -> Result<String, Failure> {
    let _echo_off = EchoOff::new();
    let line = prompt(label);
    println!();
    line
}

/// Turns off echo on stdin's terminal; restores the previous settings on drop.
struct EchoOff(Option<libc::termios>);

impl EchoOff {
    fn new() -> Self {
        // SAFETY: termios is plain data; tcgetattr fills it or fails (then it is not used).
        let mut old: libc::termios = unsafe { std::mem::zeroed() };
        if unsafe { libc::tcgetattr(libc::STDIN_FILENO, &raw mut old) } != 0 {
            return Self(None);
        }
        let mut quiet = old;
        quiet.c_lflag &= !libc::ECHO;
        // SAFETY: a valid termios for the same descriptor.
        if unsafe { libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, &raw const quiet) } != 0 {
            return Self(None);
        }
        Self(Some(old))
    }
}

impl Drop for EchoOff {
    fn drop(&mut self) {
        if let Some(old) = &self.0 {
            // SAFETY: restores the settings read in `new`.
            unsafe { libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, old) };
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn server_names() {
        let s = |a: Option<&str>| super::server(a).ok().unwrap();
        let hub = (
            "docker.io".to_string(),
            "https://index.docker.io/v1/".to_string(),
        );
        assert_eq!(s(None), hub);
        assert_eq!(s(Some("docker.io")), hub);
        assert_eq!(s(Some("https://index.docker.io/v1/")), hub);
        assert_eq!(
            s(Some("127.0.0.1:5000")),
            ("127.0.0.1:5000".to_string(), "127.0.0.1:5000".to_string())
        );
        assert_eq!(
            s(Some("http://localhost:5000/v2/")),
            ("localhost:5000".to_string(), "localhost:5000".to_string())
        );
        assert!(super::server(Some("https:///")).is_err());
    }
}
