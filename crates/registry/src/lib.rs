//! OCI distribution client: resolve a reference to a manifest, pull an image into the
//! content store, push an image from it.
//!
//! It speaks the [OCI distribution API](https://github.com/opencontainers/distribution-spec)
//! (which Docker Hub and the reference `registry` implement): manifests and blobs by digest,
//! anonymous access first, then the `Bearer` token flow or `Basic` credentials from a
//! Docker-style `config.json` when the registry challenges. Pulls try the configured mirrors
//! of a host in order before the host itself; pushes go to the host only.
//!
//! Design: blobs are never held whole in memory. A pulled blob streams from the response
//! body, chunk by chunk, through a small bounded channel into a blocking task that writes it
//! to the store's `BlobWriter` (which hashes as it writes and checks the digest on commit,
//! so a corrupt download never lands in the store). A pushed blob streams from its file as
//! the request body. Uploads are monolithic — `POST` opens an upload session, one `PUT`
//! carries the whole blob and its digest — rather than chunked `PATCH`es: one round trip
//! fewer per blob, accepted by every registry, and a failed upload simply starts over.
//!
//! Faults: every request kiln makes is safe to repeat — GET and HEAD, the manifest PUT
//! (same bytes under the same name), and a blob upload, which is retried whole (a new `POST`
//! session, then the `PUT`): the registry names a blob by its digest, so a second upload of
//! it is harmless, whereas a `PUT` into a session a failed attempt may have spoiled is not.
//! A connection error, a 408, 429 or 5xx (but 501 and 505) is retried up to
//! [`RetryConfig::retries`] times after a delay: the answer's `Retry-After` (seconds or an
//! HTTP date) when it has one, else an exponential backoff with jitter, both capped at
//! [`RetryConfig::max_delay`]. A blob download that breaks off resumes where it stopped with
//! `Range: bytes=N-` (a `206` must say it starts at N; a `200` — the registry ignored the
//! range — is read from its start and its first N bytes skipped); the digest is still
//! checked over the whole blob. A registry that sends nothing (no answer, no byte of a body)
//! for [`RegistryConfig::stall_timeout`] ends the transfer with an error naming it; a stall
//! is not retried.
//!
//! CONTRACT (fixed by the workspace; other crates call exactly these signatures).
#![deny(missing_docs)]

mod auth;
mod blob;
mod client;
mod config;
mod error;
mod login;
mod manifest;
mod pull;
mod push;
#[cfg(test)]
mod tests;

pub use auth::{
    docker_config_key, login_server, remove_docker_credentials, save_docker_credentials,
    stored_credentials,
};
pub use client::{is_loopback, Client};
pub use config::{HostConfig, RegistryConfig, RetryConfig};
pub use error::{Error, Result};
pub use kiln_oci::LayerCountMismatch;
pub use manifest::PulledImage;
