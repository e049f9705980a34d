//! Blob transfer: a download streamed into the store and resumed with `Range` when it
//! breaks off; an upload streamed from the store, retried whole, watched for stalls.

use crate::client::{is_stall, Ctx};
use crate::error::{error_chain, Fault};
use crate::manifest::is_sha256_digest;
use crate::{Client, Error, Result};
use bytes::Bytes;
use futures::StreamExt as _;
use kiln_cache::Store;
use reqwest::header::{CONTENT_LENGTH, CONTENT_TYPE, LOCATION};
use reqwest::{Method, StatusCode, Url};
use std::io::Write as _;
use std::sync::Arc;
use std::time::Duration;

/// Chunks in flight between the network and the blob writer.
const CHANNEL_CHUNKS: usize = 16;

/// What the network side hands the blob-writing task.
enum Chunk {
    Data(Bytes),
    /// Everything arrived: commit. (A channel closed without `End` — an error, or the
    /// download future dropped — abandons the blob.)
    End,
}

/// The first byte a `206` answer's `Content-Range: bytes START-END/TOTAL` holds, and TOTAL
/// (`None` for `*`).
pub(crate) fn content_range(headers: &reqwest::header::HeaderMap) -> Option<(u64, Option<u64>)> {
    let v = headers
        .get(reqwest::header::CONTENT_RANGE)?
        .to_str()
        .ok()?
        .trim();
    let (range, total) = v.strip_prefix("bytes ")?.split_once('/')?;
    let (start, end) = range.split_once('-')?;
    let (start, end) = (start.parse::<u64>().ok()?, end.parse::<u64>().ok()?);
    if end < start {
        return None;
    }
    let total = match total {
        "*" => None,
        t => Some(t.parse::<u64>().ok()?),
    };
    Some((start, total))
}

impl Client {
    /// Streams one blob into the store, verifying size and digest. A body that breaks off
    /// is resumed with a `Range` request (see the crate docs).
    pub(crate) async fn download_blob(
        &self,
        ctx: &Ctx<'_>,
        digest: &str,
        size: Option<u64>,
        store: &Store,
    ) -> Result<()> {
        if !is_sha256_digest(digest) {
            return Err(ctx.protocol(format!("unsupported blob digest `{digest}`")));
        }
        let what = format!("blob {digest}");
        let url = ctx
            .ep
            .url(&format!("v2/{}/blobs/{digest}", ctx.reference.repository));
        let resp = self.send(ctx, &|c| Ok(c.get(url.clone()))).await?;
        if !resp.status().is_success() {
            return Err(self.fail(ctx, resp, &what).await);
        }
        let writer = store.blob_writer()?;
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Chunk>(CHANNEL_CHUNKS);
        let expected = digest.to_string();
        let root = store.root().to_path_buf();
        let task = tokio::task::spawn_blocking(move || -> Option<Result<(String, u64)>> {
            let mut w = writer;
            while let Some(chunk) = rx.blocking_recv() {
                match chunk {
                    Chunk::Data(b) => {
                        if let Err(source) = w.write_all(&b) {
                            return Some(Err(Error::Store(kiln_cache::Error::Io {
                                path: root,
                                source,
                            })));
                        }
                    }
                    Chunk::End => return Some(w.commit(Some(&expected)).map_err(Error::from)),
                }
            }
            // Dropping the writer removes its temp file.
            None
        });
        let failure = self
            .receive_blob(ctx, &what, &url, size, resp, &tx)
            .await
            .err();
        if failure.is_none() {
            let _ = tx.send(Chunk::End).await;
        }
        drop(tx);
        let outcome = task
            .await
            .map_err(|e| ctx.protocol(format!("{what}: writer task failed: {e}")))?;
        match (failure, outcome) {
            // The writer failed first; its error says why.
            (Some(None) | None, Some(Err(e))) => match e {
                Error::Store(kiln_cache::Error::DigestMismatch { expected, actual }) => Err(ctx
                    .protocol(format!(
                    "{what}: content does not match its digest (expected {expected}, got {actual})"
                ))),
                e => Err(e),
            },
            (Some(Some(f)), _) => Err(f),
            (None, Some(Ok(_))) => Ok(()),
            _ => Err(ctx.protocol(format!("{what}: download aborted"))),
        }
    }

    /// Feeds the body of `resp` (a blob's `GET` answer) to the writer, resuming with a
    /// `Range` request when it breaks off, until `size` bytes (or the end of a body of
    /// unknown size) went through. `Err(None)`: the writer is gone (its error says why).
    async fn receive_blob(
        &self,
        ctx: &Ctx<'_>,
        what: &str,
        url: &Url,
        size: Option<u64>,
        mut resp: reqwest::Response,
        tx: &tokio::sync::mpsc::Sender<Chunk>,
    ) -> std::result::Result<(), Option<Error>> {
        let retries = self.inner.cfg.retry.retries;
        let mut received: u64 = 0;
        // Bytes of the current body already received from an earlier one (a registry that
        // ignored `Range` starts over).
        let mut skip: u64 = 0;
        let mut resumes = 0;
        loop {
            let mut stream = resp.bytes_stream();
            let broke = loop {
                match stream.next().await {
                    Some(Ok(mut chunk)) => {
                        if skip > 0 {
                            let n = skip.min(chunk.len() as u64);
                            skip -= n;
                            chunk = chunk.slice(n as usize..);
                            if chunk.is_empty() {
                                continue;
                            }
                        }
                        received += chunk.len() as u64;
                        if size.is_some_and(|s| received > s) {
                            return Err(Some(ctx.protocol(format!(
                                "{what}: more than the {} bytes announced",
                                size.unwrap_or(0)
                            ))));
                        }
                        if tx.send(Chunk::Data(chunk)).await.is_err() {
                            return Err(None);
                        }
                    }
                    Some(Err(e)) if is_stall(&e) => return Err(Some(self.stalled(ctx, what))),
                    Some(Err(e)) => break Some(e),
                    None => break None,
                }
            };
            let short = size.is_some_and(|s| received < s);
            if broke.is_none() && !short {
                return Ok(());
            }
            let cause = match &broke {
                Some(e) => error_chain(e),
                None => format!("got {received} bytes, expected {}", size.unwrap_or(0)),
            };
            if resumes >= retries {
                return Err(Some(ctx.unreachable(format!("{what}: {cause}"))));
            }
            tokio::time::sleep(self.inner.cfg.retry.backoff(resumes)).await;
            resumes += 1;
            let range = format!("bytes={received}-");
            resp = self
                .send(ctx, &|c| {
                    Ok(c.get(url.clone())
                        .header(reqwest::header::RANGE, range.as_str()))
                })
                .await
                .map_err(Some)?;
            match resp.status() {
                StatusCode::PARTIAL_CONTENT => match content_range(resp.headers()) {
                    Some((start, total))
                        if start == received
                            && (total.is_none() || size.is_none() || total == size) =>
                    {
                        skip = 0;
                    }
                    _ => {
                        let got = resp
                            .headers()
                            .get(reqwest::header::CONTENT_RANGE)
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("none")
                            .to_string();
                        return Err(Some(ctx.protocol(format!(
                            "{what}: asked for bytes {received}- to resume, got Content-Range `{got}`"
                        ))));
                    }
                },
                // The range was ignored: the whole blob again, whose start is skipped.
                s if s.is_success() => skip = received,
                _ => return Err(Some(self.fail(ctx, resp, what).await)),
            }
        }
    }

    /// Whether the registry has a blob (HEAD).
    async fn has_remote_blob(&self, ctx: &Ctx<'_>, digest: &str) -> Result<bool> {
        let url = ctx
            .ep
            .url(&format!("v2/{}/blobs/{digest}", ctx.reference.repository));
        let resp = self
            .send(ctx, &|c| Ok(c.request(Method::HEAD, url.clone())))
            .await?;
        match resp.status() {
            s if s.is_success() => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            _ => Err(self.fail(ctx, resp, &format!("blob {digest}")).await),
        }
    }

    /// Uploads a blob unless the registry has it: POST (session) then one streamed PUT, the
    /// pair retried whole after a fault that may pass.
    pub(crate) async fn push_blob(&self, ctx: &Ctx<'_>, store: &Store, digest: &str) -> Result<()> {
        if !is_sha256_digest(digest) {
            return Err(ctx.protocol(format!("unsupported blob digest `{digest}`")));
        }
        if !store.has_blob(digest) {
            return Err(Error::Store(kiln_cache::Error::NotFound(
                digest.to_string(),
            )));
        }
        if self.has_remote_blob(ctx, digest).await? {
            return Ok(());
        }
        self.with_retries(|last| self.push_blob_once(ctx, store, digest, last))
            .await
    }

    /// One upload of a blob. The `PUT` goes through a client without a read timeout: its
    /// stall timeout is a watchdog over the body's progress (no chunk taken by the
    /// connection for the stall timeout), then over the wait for the answer.
    async fn push_blob_once(
        &self,
        ctx: &Ctx<'_>,
        store: &Store,
        digest: &str,
        last: bool,
    ) -> std::result::Result<(), Fault> {
        let what = format!("upload blob {digest}");
        let url = ctx
            .ep
            .url(&format!("v2/{}/blobs/uploads/", ctx.reference.repository));
        let resp = self
            .send_once(
                ctx,
                &|c| Ok(c.post(url.clone()).header(CONTENT_LENGTH, "0")),
                last,
                false,
            )
            .await?;
        if !resp.status().is_success() {
            return Err(self.fail(ctx, resp, &what).await.into());
        }
        let location = resp
            .headers()
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| ctx.protocol(format!("{what}: no Location in the answer")))?;
        let mut put_url = resp
            .url()
            .join(location)
            .map_err(|e| ctx.protocol(format!("{what}: bad Location `{location}`: {e}")))?;
        put_url.query_pairs_mut().append_pair("digest", digest);
        drop(resp);
        let size = store.blob_size(digest).map_err(Error::from)?;
        let start = tokio::time::Instant::now();
        // Milliseconds from `start` to the last chunk the connection took.
        let progress = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let make = |c: &reqwest::Client| -> Result<reqwest::RequestBuilder> {
            let file = store.open_blob(digest)?;
            let progress = progress.clone();
            let stream = tokio_util::io::ReaderStream::new(tokio::fs::File::from_std(file))
                .inspect(move |_| {
                    let ms = start.elapsed().as_millis() as u64;
                    progress.store(ms, std::sync::atomic::Ordering::Relaxed);
                });
            Ok(c.put(put_url.clone())
                .header(CONTENT_TYPE, "application/octet-stream")
                .header(CONTENT_LENGTH, size)
                .body(reqwest::Body::wrap_stream(stream)))
        };
        let stall = self.inner.cfg.stall_timeout;
        let watchdog = async {
            loop {
                let last_ms = progress.load(std::sync::atomic::Ordering::Relaxed);
                let due = start + Duration::from_millis(last_ms) + stall;
                if tokio::time::Instant::now() >= due {
                    return;
                }
                tokio::time::sleep_until(due).await;
            }
        };
        let resp = tokio::select! {
            r = self.send_once(ctx, &make, last, true) => r?,
            () = watchdog => return Err(self.stalled(ctx, &what).into()),
        };
        if !resp.status().is_success() {
            return Err(self.fail(ctx, resp, &what).await.into());
        }
        Ok(())
    }
}
