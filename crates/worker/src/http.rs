//! `ADD <url>`: a file fetched over HTTP(S) as a one-file filesystem.

use crate::{BuildWorker, Output, StepError};
use kiln_solver::BoxError;

impl BuildWorker {
    pub(crate) async fn http(
        &self,
        url: &str,
        _checksum: Option<&str>,
        _filename: &str,
    ) -> Result<Output, BoxError> {
        Err(Box::new(StepError(format!(
            "ADD {url}: fetching URLs is not implemented yet"
        ))))
    }
}
