//! Answering a registry's challenge (the Bearer token flow, Basic credentials) and the
//! `docker login` check.

use crate::auth;
use crate::client::{
    challenges_of, error_detail, is_loopback, read_capped, retry_after, transient_status, Ctx,
};
use crate::error::{error_chain, Fault, Result};
use crate::Client;
use kiln_oci::Reference;
use reqwest::header::AUTHORIZATION;
use reqwest::{StatusCode, Url};

impl Client {
    /// Checks `user`/`password` against `registry` as `docker login` does: `GET /v2/`, and
    /// when that is refused (401) answers the challenge with these credentials (Basic, or
    /// a token fetched from the Bearer realm with Basic auth) and asks again. Only a 2xx
    /// answer is success; a refusal is [`Error::Unauthorized`]. Nothing is cached or saved.
    /// Plain HTTP or HTTPS is chosen as for pulls and pushes (config `http`, loopback).
    pub async fn check_login(&self, registry: &str, user: &str, password: &str) -> Result<()> {
        let ep = self.host_endpoint(registry);
        // Registry-level: no repository (see `Ctx::detail`) and no token scope.
        let reference = Reference {
            registry: registry.to_string(),
            repository: String::new(),
            tag: None,
            digest: None,
        };
        let ctx = Ctx {
            ep: &ep,
            reference: &reference,
            scope: String::new(),
        };
        let url = ep.url("v2/");
        let client = self.client_for(ep.local);
        let get = |auth: Option<String>| {
            let mut rb = client.get(url.clone());
            if let Some(a) = auth {
                rb = rb.header(AUTHORIZATION, a);
            }
            async {
                rb.send()
                    .await
                    .map_err(|e| ctx.unreachable(error_chain(&e)))
            }
        };
        let mut resp = get(None).await?;
        if resp.status() == StatusCode::UNAUTHORIZED {
            let challenges = challenges_of(&resp);
            let creds = Some((user.to_string(), password.to_string()));
            let header = self.authenticate(&ctx, &challenges, creds).await?;
            resp = get(Some(header)).await?;
        }
        if resp.status().is_success() {
            Ok(())
        } else {
            Err(self.fail(&ctx, resp, "").await)
        }
    }

    /// The `Authorization` value answering one of `challenges` with `creds`.
    pub(crate) async fn authenticate(
        &self,
        ctx: &Ctx<'_>,
        challenges: &[auth::Challenge],
        creds: Option<(String, String)>,
    ) -> Result<String> {
        if let Some(c) = challenges.iter().find(|c| c.scheme == "bearer") {
            return self.fetch_token(ctx, c, creds).await;
        }
        if challenges.iter().any(|c| c.scheme == "basic") {
            return match creds {
                Some((u, p)) => Ok(auth::basic_header(&u, &p)),
                None => Err(ctx.unauthorized(format!(
                    "authentication required and no credentials for {} in the docker config",
                    ctx.ep.host
                ))),
            };
        }
        Err(ctx.unauthorized("authentication required (no usable WWW-Authenticate challenge)"))
    }

    /// The Bearer token flow: GET realm?service=…&scope=… (with Basic credentials if any).
    async fn fetch_token(
        &self,
        ctx: &Ctx<'_>,
        c: &auth::Challenge,
        creds: Option<(String, String)>,
    ) -> Result<String> {
        let realm = c
            .params
            .get("realm")
            .ok_or_else(|| ctx.unauthorized("Bearer challenge without realm"))?;
        let mut url = Url::parse(realm)
            .or_else(|_| ctx.ep.base.join(realm))
            .map_err(|e| ctx.unauthorized(format!("bad token realm `{realm}`: {e}")))?;
        {
            let mut q = url.query_pairs_mut();
            if let Some(s) = c.params.get("service") {
                q.append_pair("service", s);
            }
            if !ctx.scope.is_empty() {
                q.append_pair("scope", &ctx.scope);
            }
            if let Some(s) = c.params.get("scope").filter(|s| **s != ctx.scope) {
                q.append_pair("scope", s);
            }
        }
        let local = url.host_str().is_some_and(is_loopback);
        let what = format!("token service {realm}");
        let resp = self
            .with_retries(|last| {
                let mut rb = self.client_for(local).get(url.clone());
                if let Some((u, p)) = &creds {
                    rb = rb.basic_auth(u, Some(p));
                }
                let what = &what;
                async move {
                    let resp = rb
                        .send()
                        .await
                        .map_err(|e| self.transport_fault(ctx, what, &e))?;
                    if !last && transient_status(resp.status()) {
                        let retry_after = retry_after(resp.headers());
                        let detail = error_detail(resp).await;
                        return Err(Fault {
                            error: ctx.protocol(format!("{what}: {detail}")),
                            transient: true,
                            retry_after,
                        });
                    }
                    Ok(resp)
                }
            })
            .await?;
        let status = resp.status();
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            let detail = error_detail(resp).await;
            return Err(ctx.unauthorized(format!(
                "token service {realm} refused {}: {detail}",
                if creds.is_some() {
                    "the credentials"
                } else {
                    "anonymous access"
                }
            )));
        }
        if !status.is_success() {
            let detail = error_detail(resp).await;
            return Err(ctx.protocol(format!("token service {realm}: {detail}")));
        }
        let body = read_capped(resp, 1 << 20)
            .await
            .map_err(|e| ctx.protocol(format!("token service {realm}: {e}")))?;
        let v: serde_json::Value = serde_json::from_slice(&body)
            .map_err(|e| ctx.protocol(format!("token service {realm}: bad JSON: {e}")))?;
        let token = ["token", "access_token"]
            .iter()
            .find_map(|k| v.get(*k).and_then(|t| t.as_str()).filter(|t| !t.is_empty()))
            .ok_or_else(|| {
                ctx.protocol(format!("token service {realm}: no token in the answer"))
            })?;
        Ok(format!("Bearer {token}"))
    }
}
