//! Running another process in a running container: `kiln exec`.

use crate::container::Container;
use crate::{AttachEnd, AttachOptions, DetachKeys, Error, Result};
use kiln_executor::HostProcess;
use kiln_executor::{ExecSpec, Executor, Output};

/// `kiln exec` options.
#[derive(Clone, Debug, Default)]
pub struct ExecOptions {
    /// Command and arguments.
    pub args: Vec<String>,
    /// `-e K=V`: added to the container's environment (replacing a variable of the same
    /// name).
    pub env: Vec<String>,
    /// `-u`: default, the container's user.
    pub user: Option<String>,
    /// `-w`: default, the container's working directory.
    pub workdir: Option<String>,
    /// `-t`: a pseudo-terminal of the container's own, relayed to the caller's stdout (and
    /// from its stdin with `-i`); the `output` given to [`Container::exec`] is then unused.
    pub tty: bool,
    /// `-i`, with `tty`: the caller's stdin is forwarded.
    pub interactive: bool,
    /// `--detach-keys` (with `tty` and `interactive`; see [`Container::exec_terminal`]).
    pub detach_keys: DetachKeys,
}

impl Container {
    /// The process `opts` describes, as the container would run it: its environment plus
    /// `-e`, its user and working directory unless overridden, its privileges.
    pub fn exec_spec(&self, opts: &ExecOptions) -> ExecSpec {
        let spec = &self.config.spec;
        let mut env = spec.env.clone();
        for e in &opts.env {
            let key = e.split('=').next().unwrap_or(e);
            env.retain(|x| x.split('=').next() != Some(key));
            env.push(e.clone());
        }
        ExecSpec {
            args: opts.args.clone(),
            env,
            cwd: opts.workdir.clone().unwrap_or_else(|| spec.cwd.clone()),
            user: opts.user.clone().unwrap_or_else(|| spec.user.clone()),
            privileged: spec.extra.privileged,
            process: spec.extra.process.clone(),
        }
    }

    /// Runs `opts` in the running container with `output` (see
    /// [`Executor::exec_in`]) and returns its exit code. (With `opts.tty`, see
    /// [`Container::exec_terminal`]; the detach keys then end the relay only.)
    pub async fn exec(
        &mut self,
        executor: &Executor,
        opts: &ExecOptions,
        output: Output,
    ) -> Result<i32> {
        if opts.tty {
            return match self.exec_terminal(executor, opts).await? {
                AttachEnd::Exited(code) => Ok(code),
                AttachEnd::Detached => Ok(0),
            };
        }
        let (init, spec) = self.exec_target(opts)?;
        Ok(executor.exec_in(&init, &spec, output).await?)
    }

    /// `kiln exec -t`: `opts` on a terminal of its own, relayed to the caller (its stdin
    /// with `-i`, in raw mode, through the detach keys). In a container under its shim the
    /// shim starts the process and holds the terminal (see `attach.rs`), so that the detach
    /// keys leave it running ([`AttachEnd::Detached`]), as `docker exec -it`; in one run
    /// in the foreground it is relayed here, without detaching.
    pub async fn exec_terminal(
        &mut self,
        executor: &Executor,
        opts: &ExecOptions,
    ) -> Result<AttachEnd> {
        let (init, spec) = self.exec_target(opts)?;
        if self.has_attach_socket() {
            let attach = AttachOptions {
                stdin: opts.interactive,
                detach_keys: opts.detach_keys.clone(),
                sig_proxy: true,
            };
            return self
                .exec_through_shim(&spec, opts.interactive, &attach)
                .await;
        }
        let (output, console) = crate::terminal::output();
        let run = executor.exec_in(&init, &spec, output);
        let code = crate::terminal::attach(run, console, opts.interactive).await?;
        Ok(AttachEnd::Exited(code))
    }

    /// The running container's pid 1 and the process `opts` describes.
    fn exec_target(&mut self, opts: &ExecOptions) -> Result<(HostProcess, ExecSpec)> {
        if opts.args.is_empty() {
            return Err(Error::NoCommand);
        }
        self.refresh()?;
        if !self.is_running() {
            return Err(Error::NotRunning(self.config.id.clone()));
        }
        let Some(init) = self.state.init else {
            return Err(Error::NoInit(self.config.id.clone()));
        };
        if !init.is_alive() {
            return Err(Error::NotRunning(self.config.id.clone()));
        }
        // A process joining a frozen cgroup would freeze with it.
        if self.is_paused() {
            return Err(Error::Paused(self.config.id.clone()));
        }
        Ok((init, self.exec_spec(opts)))
    }
}
