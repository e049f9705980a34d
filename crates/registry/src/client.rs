//! The client: endpoints (mirrors, plain HTTP), sending a request with retries and
//! authentication, and turning a failed answer into an [`Error`].

use crate::auth;
use crate::config::RegistryConfig;
use crate::error::{error_chain, Error, Fault, Result};
use futures::StreamExt as _;
use kiln_oci::Reference;
use reqwest::header::{HeaderValue, AUTHORIZATION, WWW_AUTHENTICATE};
use reqwest::{StatusCode, Url};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The client. One per process; clones share connections and tokens.
#[derive(Clone)]
pub struct Client {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) cfg: RegistryConfig,
    /// For remote hosts: honours the `*_PROXY` environment.
    http: reqwest::Client,
    /// For loopback hosts: never through a proxy.
    direct: reqwest::Client,
    /// `http` and `direct` without a read timeout, for blob uploads: reqwest's read timeout
    /// runs from the start of the request, so a long upload would trip it; uploads watch
    /// their own progress instead (`Client::push_blob_once`).
    upload_http: reqwest::Client,
    upload_direct: reqwest::Client,
    /// `Authorization` header values by (endpoint host, scope).
    tokens: Mutex<HashMap<(String, String), String>>,
}

/// Where requests for a registry go.
#[derive(Clone, Debug)]
pub(crate) struct Endpoint {
    /// `host[:port]` as contacted (`registry-1.docker.io` for `docker.io`).
    pub(crate) host: String,
    /// `scheme://host/`.
    pub(crate) base: Url,
    /// Loopback: no proxy.
    pub(crate) local: bool,
}

impl Endpoint {
    pub(crate) fn url(&self, path: &str) -> Url {
        // `path` is built from validated repository names and digests/tags.
        self.base.join(path).unwrap_or_else(|_| self.base.clone())
    }
}

/// What a request is for: the endpoint, the reference (for error messages) and the token
/// scope.
pub(crate) struct Ctx<'a> {
    pub(crate) ep: &'a Endpoint,
    pub(crate) reference: &'a Reference,
    pub(crate) scope: String,
}

impl Ctx<'_> {
    /// `message` prefixed with the reference (a registry-level request, such as the login
    /// check, carries a reference with an empty repository and gets no prefix).
    fn detail(&self, message: impl std::fmt::Display) -> String {
        if self.reference.repository.is_empty() {
            message.to_string()
        } else {
            format!("{}: {message}", self.reference)
        }
    }
    pub(crate) fn protocol(&self, message: impl std::fmt::Display) -> Error {
        Error::Protocol {
            registry: self.ep.host.clone(),
            message: self.detail(message),
        }
    }
    pub(crate) fn unreachable(&self, message: impl std::fmt::Display) -> Error {
        Error::Unreachable {
            registry: self.ep.host.clone(),
            message: self.detail(message),
        }
    }
    pub(crate) fn unauthorized(&self, message: impl std::fmt::Display) -> Error {
        Error::Unauthorized {
            registry: self.ep.host.clone(),
            message: self.detail(message),
        }
    }
    pub(crate) fn not_found(&self, what: Option<&str>) -> Error {
        let reference = match what {
            Some(w) => format!("{} ({w}, registry {})", self.reference, self.ep.host),
            None if self.ep.host != self.reference.registry => {
                format!("{} (registry {})", self.reference, self.ep.host)
            }
            None => self.reference.to_string(),
        };
        Error::NotFound { reference }
    }
}

/// A request builder; called again when the request must be retried (with credentials, or
/// after a fault).
pub(crate) type MakeRequest<'a> =
    dyn Fn(&reqwest::Client) -> Result<reqwest::RequestBuilder> + Send + Sync + 'a;

/// Statuses worth another attempt: request timeout, too many requests, and the server
/// errors that describe a passing state (not 501 Not Implemented, 505 Version Not Supported).
pub(crate) fn transient_status(s: StatusCode) -> bool {
    s == StatusCode::REQUEST_TIMEOUT
        || s == StatusCode::TOO_MANY_REQUESTS
        || (s.is_server_error()
            && s != StatusCode::NOT_IMPLEMENTED
            && s != StatusCode::HTTP_VERSION_NOT_SUPPORTED)
}

/// A `Retry-After` header: delay-seconds or an HTTP date (past dates: no wait).
pub(crate) fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let v = headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = httpdate::parse_http_date(v).ok()?;
    Some(
        when.duration_since(std::time::SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

/// Whether a transport error is a timeout (a stall: not retried).
pub(crate) fn is_stall(e: &reqwest::Error) -> bool {
    e.is_timeout()
}

/// The host part of `host[:port]` (brackets of an IPv6 literal removed).
fn host_name(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match host.matches(':').count() {
        1 => host.split(':').next().unwrap_or(host),
        _ => host,
    }
}

/// 127.0.0.0/8, `localhost`, `::1`, with or without port.
pub fn is_loopback(host: &str) -> bool {
    let name = host_name(host);
    if name.eq_ignore_ascii_case("localhost") {
        return true;
    }
    name.parse::<std::net::IpAddr>()
        .is_ok_and(|ip| ip.is_loopback())
}

/// A short description from a registry error body (`{"errors":[{"code","message"}]}`).
pub(crate) async fn error_detail(resp: reqwest::Response) -> String {
    let status = resp.status();
    let body = read_capped(resp, 64 << 10).await.unwrap_or_default();
    let mut parts = Vec::new();
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&body) {
        if let Some(errs) = v.get("errors").and_then(|e| e.as_array()) {
            for e in errs {
                let code = e.get("code").and_then(|c| c.as_str()).unwrap_or("");
                let msg = e.get("message").and_then(|c| c.as_str()).unwrap_or("");
                parts.push(format!("{code} {msg}").trim().to_string());
            }
        }
    }
    if parts.is_empty() {
        let text = String::from_utf8_lossy(&body);
        let text = text.trim();
        if !text.is_empty() {
            parts.push(text.chars().take(200).collect());
        }
    }
    if parts.is_empty() {
        format!("HTTP {status}")
    } else {
        format!("HTTP {status}: {}", parts.join("; "))
    }
}

/// Why a body could not be read whole.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BodyError {
    /// More than the cap.
    #[error("response larger than {0} bytes")]
    TooLarge(usize),
    /// The connection failed. The message flattens the cause chain because it ends up in
    /// an [`Error`]'s `message` (see [`error_chain`]).
    #[error("{}", error_chain(.0))]
    Transport(reqwest::Error),
}

/// The whole body, failing when it exceeds `cap` bytes.
pub(crate) async fn read_capped(
    resp: reqwest::Response,
    cap: usize,
) -> std::result::Result<Vec<u8>, BodyError> {
    if resp.content_length().is_some_and(|n| n > cap as u64) {
        return Err(BodyError::TooLarge(cap));
    }
    let mut out = Vec::new();
    let mut stream = resp.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(BodyError::Transport)?;
        if out.len() + chunk.len() > cap {
            return Err(BodyError::TooLarge(cap));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

impl Client {
    /// A client with these settings.
    pub fn new(cfg: RegistryConfig) -> Self {
        let stall = cfg.stall_timeout.max(Duration::from_millis(1));
        // The read timeout restarts with every read, so it is the stall timeout of a
        // download; it also bounds the wait for an answer's head.
        let builder = |read_timeout: bool| {
            let b = reqwest::Client::builder()
                .user_agent(concat!("kiln/", env!("CARGO_PKG_VERSION")))
                .connect_timeout(stall);
            if read_timeout {
                b.read_timeout(stall)
            } else {
                b
            }
        };
        let http = builder(true)
            .build()
            .unwrap_or_else(|_| reqwest::Client::new());
        let direct = builder(true)
            .no_proxy()
            .build()
            .unwrap_or_else(|_| http.clone());
        let upload_http = builder(false).build().unwrap_or_else(|_| http.clone());
        let upload_direct = builder(false)
            .no_proxy()
            .build()
            .unwrap_or_else(|_| direct.clone());
        Self {
            inner: Arc::new(Inner {
                cfg,
                http,
                direct,
                upload_http,
                upload_direct,
                tokens: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// The host itself (pushes and logins never go to a mirror).
    pub(crate) fn host_endpoint(&self, registry: &str) -> Endpoint {
        self.endpoints(registry, false)
            .pop()
            .expect("the host itself")
    }

    /// Mirrors (when `with_mirrors`) then the host itself.
    pub(crate) fn endpoints(&self, registry: &str, with_mirrors: bool) -> Vec<Endpoint> {
        let cfg = &self.inner.cfg;
        let mut out = Vec::new();
        let host_cfg = cfg.hosts.get(registry);
        if with_mirrors {
            for m in host_cfg.map(|h| h.mirrors.as_slice()).unwrap_or_default() {
                let m = m.trim().trim_end_matches('/');
                // Accept `https://mirror` too.
                let (scheme, host) = match m.split_once("://") {
                    Some((s, h)) => (Some(s == "http"), h),
                    None => (None, m),
                };
                let http = scheme.or_else(|| cfg.hosts.get(host).and_then(|h| h.http));
                if let Some(ep) = make_endpoint(host, http) {
                    out.push(ep);
                }
            }
        }
        let real = if registry == "docker.io" || registry == "index.docker.io" {
            "registry-1.docker.io"
        } else {
            registry
        };
        let http = host_cfg
            .and_then(|h| h.http)
            .or_else(|| cfg.hosts.get(real).and_then(|h| h.http));
        out.push(make_endpoint(real, http).unwrap_or_else(|| Endpoint {
            host: real.to_string(),
            base: Url::parse("https://invalid.invalid/").expect("static URL"),
            local: false,
        }));
        out
    }

    pub(crate) fn client_for(&self, local: bool) -> &reqwest::Client {
        if local {
            &self.inner.direct
        } else {
            &self.inner.http
        }
    }

    fn upload_client_for(&self, local: bool) -> &reqwest::Client {
        if local {
            &self.inner.upload_direct
        } else {
            &self.inner.upload_http
        }
    }

    /// Runs `attempt` until it succeeds, fails for good, or the retries are spent, waiting
    /// between attempts (the fault's `Retry-After`, else a backoff; both capped). `attempt`
    /// is told whether it is the last one.
    pub(crate) async fn with_retries<T, F, Fut>(&self, mut attempt: F) -> Result<T>
    where
        F: FnMut(bool) -> Fut,
        Fut: std::future::Future<Output = std::result::Result<T, Fault>>,
    {
        let rc = &self.inner.cfg.retry;
        let mut n = 0;
        loop {
            match attempt(n >= rc.retries).await {
                Ok(v) => return Ok(v),
                Err(f) if f.transient && n < rc.retries => {
                    let wait = match f.retry_after {
                        Some(d) => d.min(rc.max_delay),
                        None => rc.backoff(n),
                    };
                    tokio::time::sleep(wait).await;
                    n += 1;
                }
                Err(f) => return Err(f.error),
            }
        }
    }

    /// The error of a request that failed in transport: a stall (a timeout) names the
    /// stall timeout and is final; anything else (refused, reset) may pass.
    pub(crate) fn transport_fault(&self, ctx: &Ctx<'_>, what: &str, e: &reqwest::Error) -> Fault {
        let prefix = if what.is_empty() {
            String::new()
        } else {
            format!("{what}: ")
        };
        if is_stall(e) {
            return Fault::from(self.stalled(ctx, what));
        }
        Fault {
            error: ctx.unreachable(format!("{prefix}{}", error_chain(e))),
            transient: true,
            retry_after: None,
        }
    }

    /// The error of a transfer that made no progress for the stall timeout.
    pub(crate) fn stalled(&self, ctx: &Ctx<'_>, what: &str) -> Error {
        ctx.unreachable(format!(
            "{what}{}the registry sent nothing for {} (registry stall-timeout)",
            if what.is_empty() { "" } else { ": " },
            humantime::format_duration(self.inner.cfg.stall_timeout)
        ))
    }

    /// Sends a request (every caller's is safe to repeat: GET, HEAD, the manifest PUT),
    /// retrying after faults that may pass, authenticating when the registry answers 401.
    /// Returns the response whatever its status (a 5xx once the retries are spent, a 401
    /// when credentials were rejected).
    pub(crate) async fn send(
        &self,
        ctx: &Ctx<'_>,
        make: &MakeRequest<'_>,
    ) -> Result<reqwest::Response> {
        self.with_retries(|last| self.send_once(ctx, make, last, false))
            .await
    }

    /// One attempt at a request (authenticating and asking again once on a 401). Unless
    /// this is the `last` attempt, a transient status is a transient [`Fault`]. `upload`
    /// picks the clients without a read timeout.
    pub(crate) async fn send_once(
        &self,
        ctx: &Ctx<'_>,
        make: &MakeRequest<'_>,
        last: bool,
        upload: bool,
    ) -> std::result::Result<reqwest::Response, Fault> {
        let key = (ctx.ep.host.clone(), ctx.scope.clone());
        let mut authenticated = false;
        loop {
            let client = if upload {
                self.upload_client_for(ctx.ep.local)
            } else {
                self.client_for(ctx.ep.local)
            };
            let mut req = make(client)?
                .build()
                .map_err(|e| ctx.unreachable(error_chain(&e)))?;
            let same_host = req.url().host_str() == ctx.ep.base.host_str()
                && req.url().port_or_known_default() == ctx.ep.base.port_or_known_default();
            let cached = self
                .inner
                .tokens
                .lock()
                .expect("token cache")
                .get(&key)
                .cloned();
            if let (true, Some(auth)) = (same_host, &cached) {
                if let Ok(v) = HeaderValue::from_str(auth) {
                    req.headers_mut().insert(AUTHORIZATION, v);
                }
            }
            let resp = client
                .execute(req)
                .await
                .map_err(|e| self.transport_fault(ctx, "", &e))?;
            if !last && transient_status(resp.status()) {
                let retry_after = retry_after(resp.headers());
                let error = self.fail(ctx, resp, "").await;
                return Err(Fault {
                    error,
                    transient: true,
                    retry_after,
                });
            }
            if resp.status() != StatusCode::UNAUTHORIZED || authenticated {
                return Ok(resp);
            }
            let challenges = challenges_of(&resp);
            let creds = auth::credentials(self.inner.cfg.docker_config.as_deref(), &ctx.ep.host);
            let header = self.authenticate(ctx, &challenges, creds).await?;
            self.inner
                .tokens
                .lock()
                .expect("token cache")
                .insert(key.clone(), header);
            authenticated = true;
        }
    }

    /// Turns a non-success response into the error it means.
    pub(crate) async fn fail(&self, ctx: &Ctx<'_>, resp: reqwest::Response, what: &str) -> Error {
        let status = resp.status();
        let detail = error_detail(resp).await;
        match status {
            StatusCode::NOT_FOUND => ctx.not_found(if what.is_empty() { None } else { Some(what) }),
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => ctx.unauthorized(format!(
                "{what}{}access denied ({detail})",
                if what.is_empty() { "" } else { ": " }
            )),
            _ => ctx.protocol(format!(
                "{what}{}{detail}",
                if what.is_empty() { "" } else { ": " }
            )),
        }
    }
}

/// The `WWW-Authenticate` challenges of a response.
pub(crate) fn challenges_of(resp: &reqwest::Response) -> Vec<auth::Challenge> {
    resp.headers()
        .get_all(WWW_AUTHENTICATE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(auth::parse_challenges)
        .collect()
}

pub(crate) fn pull_scope(r: &Reference) -> String {
    format!("repository:{}:pull", r.repository)
}

pub(crate) fn push_scope(r: &Reference) -> String {
    format!("repository:{}:pull,push", r.repository)
}

fn make_endpoint(host: &str, http: Option<bool>) -> Option<Endpoint> {
    let host = host.trim();
    if host.is_empty() {
        return None;
    }
    let local = is_loopback(host);
    let scheme = if http.unwrap_or(local) {
        "http"
    } else {
        "https"
    };
    // A bare IPv6 literal needs brackets in a URL.
    let authority = if host.matches(':').count() > 1 && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host.to_string()
    };
    let base = Url::parse(&format!("{scheme}://{authority}/")).ok()?;
    Some(Endpoint {
        host: host.to_string(),
        base,
        local,
    })
}
