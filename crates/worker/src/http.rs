//! `ADD <url>`: a file fetched over HTTP(S) as a one-file filesystem.
//!
//! The body is streamed to a temporary file under the store while its sha256 is computed;
//! with `--checksum` a mismatch fails the step. The file lands at `/<filename>` in a fresh
//! directory (mode 0600 like Docker, mtime from `Last-Modified` when the server sends one,
//! owner 0:0), which becomes the vertex's only layer.

use crate::{BuildWorker, Output, StepError};
use futures::StreamExt;
use kiln_solver::BoxError;
use sha2::{Digest, Sha256};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::SystemTime;
use tokio::io::AsyncWriteExt;

/// What [`download`] fetched.
#[derive(Debug)]
#[allow(dead_code)] // `size` is for callers and tests.
pub(crate) struct Downloaded {
    /// `sha256:<hex>` of the body.
    pub digest: String,
    /// The `Last-Modified` header, parsed.
    pub last_modified: Option<SystemTime>,
    /// Body size in bytes.
    pub size: u64,
}

/// Streams `url` into `dest` and checks it against `checksum` (`sha256:<hex>`) if given.
pub(crate) async fn download(
    url: &str,
    checksum: Option<&str>,
    dest: &Path,
) -> Result<Downloaded, BoxError> {
    let step = |m: String| -> BoxError { Box::new(StepError(m)) };
    let client = reqwest::Client::builder()
        .user_agent(concat!("kiln/", env!("CARGO_PKG_VERSION")))
        .build()?;
    let resp = client
        .get(url)
        .send()
        .await
        .map_err(|e| step(format!("ADD {url}: {e}")))?;
    let status = resp.status();
    if !status.is_success() {
        return Err(step(format!(
            "ADD {url}: invalid response status {}",
            status.as_u16()
        )));
    }
    let last_modified = resp
        .headers()
        .get(reqwest::header::LAST_MODIFIED)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| httpdate::parse_http_date(v).ok());
    let mut file = tokio::fs::File::create(dest).await?;
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    let mut body = resp.bytes_stream();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| step(format!("ADD {url}: reading the body: {e}")))?;
        hasher.update(&chunk);
        size += chunk.len() as u64;
        file.write_all(&chunk).await?;
    }
    file.flush().await?;
    file.sync_all().await?;
    drop(file);
    let digest = format!("sha256:{}", hex::encode(hasher.finalize()));
    if let Some(want) = checksum {
        if !want.eq_ignore_ascii_case(&digest) {
            return Err(step(format!(
                "ADD {url}: digest mismatch: expected {want}, got {digest}"
            )));
        }
    }
    Ok(Downloaded {
        digest,
        last_modified,
        size,
    })
}

impl BuildWorker {
    pub(crate) async fn http(
        &self,
        url: &str,
        checksum: Option<&str>,
        filename: &str,
    ) -> Result<Output, BoxError> {
        if filename.is_empty() || filename.contains('/') || filename == "." || filename == ".." {
            return Err(Box::new(StepError(format!(
                "ADD {url}: invalid file name {filename:?}"
            ))));
        }
        let store = self.cfg.store.clone();
        let tmp = store.temp_dir("http-")?;
        let upper = tmp.path().join("upper");
        std::fs::create_dir_all(&upper)?;
        let part = tmp.path().join("download");
        let got = download(url, checksum, &part).await?;
        let target = upper.join(filename);
        std::fs::rename(&part, &target)?;
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o600))?;
        std::os::unix::fs::lchown(&target, Some(0), Some(0))?;
        if let Some(t) = got.last_modified {
            let ft = filetime::FileTime::from_system_time(t);
            filetime::set_file_times(&target, ft, ft)?;
        }
        let layer = tokio::task::spawn_blocking(move || store.commit_upper(&upper)).await??;
        drop(tmp);
        Ok(Output::Layers(layer.into_iter().collect()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    /// A one-shot HTTP server on loopback answering every request with `status` and `body`.
    async fn serve(status: &'static str, body: &'static [u8]) -> String {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf).await;
                let head = format!(
                    "HTTP/1.1 {status}\r\nContent-Length: {}\r\nLast-Modified: Wed, 21 Oct 2015 07:28:00 GMT\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = s.write_all(head.as_bytes()).await;
                let _ = s.write_all(body).await;
                let _ = s.shutdown().await;
            }
        });
        format!("http://{addr}")
    }

    #[tokio::test]
    async fn downloads_and_verifies() {
        let base = serve("200 OK", b"hello\n").await;
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("f");
        let sum = "sha256:5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03";
        let got = download(&format!("{base}/x/hello.txt"), Some(sum), &f)
            .await
            .unwrap();
        assert_eq!(got.digest, sum);
        assert_eq!(got.size, 6);
        assert_eq!(std::fs::read(&f).unwrap(), b"hello\n");
        assert_eq!(
            got.last_modified,
            Some(SystemTime::UNIX_EPOCH + std::time::Duration::from_mins(24090208))
        );
        let bad = format!("sha256:{}", "0".repeat(64));
        let e = download(&format!("{base}/x"), Some(&bad), &f)
            .await
            .unwrap_err();
        assert!(e.to_string().contains("digest mismatch"), "{e}");
    }

    #[tokio::test]
    async fn http_errors_are_step_errors() {
        let base = serve("404 Not Found", b"nope").await;
        let d = tempfile::tempdir().unwrap();
        let e = download(&format!("{base}/missing"), None, &d.path().join("f"))
            .await
            .unwrap_err();
        assert!(e.downcast_ref::<StepError>().is_some());
        assert!(e.to_string().contains("404"), "{e}");
    }
}
