//! RUN: a process in the executor's sandbox on an overlay of the input's layers; the upper
//! dir becomes the new layer.

use crate::{BuildWorker, ExecFailed, Output, Tail};
use kiln_executor::{RootFs, RunSpec};
use kiln_oci::Layer;
use kiln_opgraph::NetworkMode;
use kiln_solver::{BoxError, ExecContext};

impl BuildWorker {
    pub(crate) async fn run_exec(
        &self,
        ctx: &ExecContext,
        e: &kiln_opgraph::ExecOp,
        base: &[Layer],
    ) -> Result<Output, BoxError> {
        let store = self.cfg.store.clone();
        let lowers = self.lowers(base)?;
        let tmp = store.temp_dir("exec-")?;
        let upper = tmp.path().join("upper");
        let work = tmp.path().join("work");
        std::fs::create_dir_all(&upper)?;
        std::fs::create_dir_all(&work)?;
        let spec = RunSpec {
            rootfs: RootFs {
                lowers,
                upper: upper.clone(),
                work,
            },
            args: e.args.clone(),
            env: e.env.clone(),
            cwd: if e.cwd.is_empty() {
                "/".into()
            } else {
                e.cwd.clone()
            },
            user: e.user.clone(),
            hostname: self.cfg.hostname.clone(),
            network: match e.network {
                NetworkMode::Host => kiln_executor::Network::Host,
                NetworkMode::None | NetworkMode::Default => kiln_executor::Network::None,
            },
            mounts: vec![],
            extra: Default::default(),
        };
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let executor = self.cfg.executor.clone();
        let run = async move {
            executor
                .run(&spec, kiln_executor::Output::Capture(tx))
                .await
        };
        let mut tail = Tail::new(20);
        let collect = async {
            while let Some((stream, data)) = rx.recv().await {
                let n = if stream == kiln_executor::Stream::Stdout {
                    1
                } else {
                    2
                };
                ctx.log(n, &data);
                tail.push(&data);
            }
        };
        let (code, ()) = tokio::join!(run, collect);
        let code = code?;
        if code != 0 {
            return Err(Box::new(ExecFailed {
                command: e.args.clone(),
                exit_code: code,
                tail: tail.lines(),
            }));
        }
        let layer = tokio::task::spawn_blocking(move || store.diff_to_layer(&upper)).await??;
        drop(tmp);
        let mut chain = base.to_vec();
        chain.extend(layer);
        Ok(Output::Layers(chain))
    }
}
