//! What can end a build session.

use super::EntitlementError;
use crate::ExecFailed;
use kiln_opgraph::SourceLocation;
use kiln_remotecache::Location;
use kiln_solver::BoxError;
use std::fmt::Write as _;
use std::sync::Arc;

/// Why a build session failed. The messages are the ones `kiln build` prints after
/// `error: `; [`Error::is_usage`] tells which ones are the user's flags (exit status 2).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The Dockerfile could not be converted (its kind decides the exit status).
    #[error(transparent)]
    Frontend(kiln_frontend::Error),
    /// A step needs an entitlement that was not granted.
    #[error(transparent)]
    Entitlement(#[from] EntitlementError),
    /// A RUN step exited non-zero: `Dockerfile:3: [2/3] RUN false: process … exit code: 1`,
    /// then the last lines of its output.
    #[error("{}{step}: {failed}{}", at(location.as_ref()), tail(&failed.tail))]
    Run {
        /// The step's display name.
        step: String,
        /// Its Dockerfile location.
        location: Option<SourceLocation>,
        /// The process that failed.
        failed: ExecFailed,
    },
    /// Another step failed (a missing COPY source, a pull that failed, …).
    #[error("{}{step}: {cause}", at(location.as_ref()))]
    Step {
        /// The step's display name.
        step: String,
        /// Its Dockerfile location.
        location: Option<SourceLocation>,
        /// The worker's error.
        cause: Arc<BoxError>,
    },
    /// The graph could not be solved (invalid, no result).
    #[error("{0}")]
    Solve(kiln_solver::SolveError),
    /// The image config could not be serialised.
    #[error("image config: {0}")]
    ImageConfig(#[source] serde_json::Error),
    /// Writing the image or an export failed.
    #[error(transparent)]
    Export(#[from] kiln_exporter::Error),
    /// The store failed (naming the image).
    #[error(transparent)]
    Store(#[from] kiln_cache::Error),
    /// A push failed.
    #[error(transparent)]
    Push(#[from] kiln_registry::Error),
    /// Preparing the image for a push stopped unexpectedly.
    #[error("{0}")]
    Task(#[from] tokio::task::JoinError),
    /// `-o type=image,name=REF` holds an invalid reference.
    #[error("{0}")]
    ImageName(#[from] kiln_oci::ReferenceError),
    /// A push without a name.
    #[error("pushing needs a name: use -t or -o type=image,name=REF")]
    NoImageName,
    /// A `--cache-to` export failed.
    #[error("exporting cache to {to}: {source}")]
    CacheExport {
        /// Where.
        to: Box<Location>,
        /// Why.
        source: Box<kiln_remotecache::Error>,
    },
}

impl Error {
    /// Whether the error is in the flags (`-o name=…`), not in the build: `kiln build`
    /// exits 2 for these.
    pub fn is_usage(&self) -> bool {
        matches!(self, Error::ImageName(_) | Error::NoImageName)
    }

    /// The solver's error, with a failed RUN step as [`Error::Run`].
    pub(crate) fn from_solve(e: kiln_solver::SolveError) -> Self {
        match e {
            kiln_solver::SolveError::Vertex {
                name,
                location,
                source,
                ..
            } => match source.downcast_ref::<ExecFailed>() {
                Some(x) => Error::Run {
                    step: name,
                    location,
                    failed: ExecFailed {
                        command: x.command.clone(),
                        exit_code: x.exit_code,
                        tail: x.tail.clone(),
                    },
                },
                None => Error::Step {
                    step: name,
                    location,
                    cause: source,
                },
            },
            other => Error::Solve(other),
        }
    }
}

/// `Dockerfile:3: ` (empty without a location).
pub(super) fn at(location: Option<&SourceLocation>) -> String {
    location
        .map(|l| format!("{}:{}: ", l.file, l.line))
        .unwrap_or_default()
}

/// The last lines of a failed process's output, as a block under the message.
fn tail(lines: &[String]) -> String {
    let mut s = String::new();
    if !lines.is_empty() {
        s.push_str("\n--- last lines of output ---");
        for l in lines {
            let _ = write!(s, "\n  {l}");
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loc() -> Option<SourceLocation> {
        Some(SourceLocation {
            file: "Dockerfile".into(),
            line: 3,
            end_line: 3,
        })
    }

    #[test]
    fn a_failed_run_shows_its_location_and_output_tail() {
        let e = Error::from_solve(kiln_solver::SolveError::Vertex {
            vertex: kiln_opgraph::VertexDigest("sha256:x".into()),
            name: "[2/3] RUN false".into(),
            location: loc(),
            source: Arc::new(Box::new(ExecFailed {
                command: vec!["/bin/sh".into(), "-c".into(), "false".into()],
                exit_code: 1,
                tail: vec!["a".into(), "b".into()],
            })),
        });
        assert!(matches!(e, Error::Run { .. }));
        assert_eq!(
            e.to_string(),
            "Dockerfile:3: [2/3] RUN false: process \"/bin/sh -c false\" did not complete \
             successfully: exit code: 1\n--- last lines of output ---\n  a\n  b"
        );
    }

    #[test]
    fn another_step_error_is_one_line() {
        let e = Error::from_solve(kiln_solver::SolveError::Vertex {
            vertex: kiln_opgraph::VertexDigest("sha256:x".into()),
            name: "[2/2] COPY a /".into(),
            location: None,
            source: Arc::new(Box::new(crate::StepError("\"/a\": not found".into()))),
        });
        assert!(matches!(e, Error::Step { .. }));
        assert_eq!(e.to_string(), "[2/2] COPY a /: \"/a\": not found");
        assert!(!e.is_usage());
        assert!(Error::NoImageName.is_usage());
    }
}
