//! The crate's error, and a failed attempt at a request ([`Fault`]).

use std::time::Duration;

/// Errors from registry operations; each names the registry and reference.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Could not connect / transport failure.
    #[error("cannot reach registry {registry}: {message}")]
    Unreachable {
        /// Host.
        registry: String,
        /// Cause.
        message: String,
    },
    /// The manifest or repository does not exist.
    #[error("{reference}: not found in registry")]
    NotFound {
        /// What was asked for.
        reference: String,
    },
    /// Authentication failed or is required.
    #[error("{registry}: unauthorized: {message}")]
    Unauthorized {
        /// Host.
        registry: String,
        /// Detail.
        message: String,
    },
    /// Any other protocol error (unexpected status, bad manifest, digest mismatch).
    #[error("{registry}: {message}")]
    Protocol {
        /// Host.
        registry: String,
        /// Detail.
        message: String,
    },
    /// The local store failed.
    #[error(transparent)]
    Store(#[from] kiln_cache::Error),
}

/// Result alias.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A failed attempt: the error, and whether another attempt may succeed (after the
/// registry's `Retry-After`, when it gave one).
pub(crate) struct Fault {
    pub(crate) error: Error,
    pub(crate) transient: bool,
    pub(crate) retry_after: Option<Duration>,
}

impl From<Error> for Fault {
    fn from(error: Error) -> Self {
        Fault {
            error,
            transient: false,
            retry_after: None,
        }
    }
}

/// `e` and its causes as one line (`a: b: c`, a cause already inside the text above it
/// left out).
///
/// Kept inside the library on purpose: a transport failure ([`reqwest::Error`], whose
/// Display is only `error sending request for url (…)`) is reported in the `message` of
/// [`Error::Unreachable`] and [`Error::Protocol`], and callers print that field alone (the
/// CLI's `kiln login` failure: `cannot reach the registry: {message}`), so today's text —
/// `…: error sending request for url (…): client error (Connect): tcp connect error:
/// Connection refused (os error 111)` — needs the causes in the string.
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        let m = c.to_string();
        if !s.contains(&m) {
            s.push_str(": ");
            s.push_str(&m);
        }
        src = c.source();
    }
    s
}
