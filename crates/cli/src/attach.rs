//! `kiln attach`, and the attaching half of `kiln start -ai` and `kiln run -it`: flags →
//! [`kiln_runtime::AttachOptions`] → [`kiln_runtime::Container::attach`] → its end as the
//! exit code (the container's, or 0 after the detach keys, with docker's "read escape
//! sequence" on stderr).

use crate::containers::{failure, find, NOT_A_TTY};
use crate::util::{Env, Failure};
use clap::Args;
use kiln_runtime::{AttachEnd, AttachOptions, DetachKeys};

#[derive(Args)]
pub(crate) struct AttachArgs {
    /// Do not attach stdin.
    #[arg(long)]
    no_stdin: bool,
    /// Override the key sequence for detaching a container (`ctrl-<x>`, a letter,
    /// comma-separated; default ctrl-p,ctrl-q).
    #[arg(long)]
    detach_keys: Option<String>,
    /// Proxy all received signals to the process.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1,
          default_missing_value = "true", require_equals = true)]
    sig_proxy: bool,
    /// Container (id, id prefix or name).
    container: String,
}

/// `--detach-keys`, checked as docker does (exit `code` when refused).
pub(crate) fn detach_keys(keys: Option<&str>, code: u8) -> Result<DetachKeys, Failure> {
    match keys {
        None => Ok(DetachKeys::default_keys()),
        Some(k) => DetachKeys::parse(k).map_err(|e| Failure::with_source(code, e.to_string(), e)),
    }
}

/// The exit code of an attach that ended with `end`.
pub(crate) fn ended(end: AttachEnd) -> u8 {
    match end {
        AttachEnd::Exited(code) => u8::try_from(code.clamp(0, 255)).unwrap_or(u8::MAX),
        AttachEnd::Detached => {
            eprintln!("read escape sequence");
            0
        }
    }
}

pub(crate) async fn attach(env: &Env, a: AttachArgs) -> Result<u8, Failure> {
    let keys = detach_keys(a.detach_keys.as_deref(), 1)?;
    let mut c = find(env, &a.container)?;
    let stdin = !a.no_stdin && c.config.interactive;
    // As docker: a terminal's input needs a terminal.
    if stdin && c.config.tty && !kiln_runtime::stdin_is_terminal() {
        return Err(Failure::new(1, NOT_A_TTY));
    }
    let opts = AttachOptions {
        stdin,
        detach_keys: keys,
        sig_proxy: a.sig_proxy,
    };
    let end = c.attach(&opts).await.map_err(failure)?;
    Ok(ended(end))
}
