//! The Bearer token flow against a tiny fake registry (the reference registry's token auth
//! needs a separate token server and certificates).

use base64::Engine as _;
use kiln_oci::Reference;
use kiln_registry::{Client, Error, RegistryConfig};
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

const TOKEN: &str = "tok-123";

#[derive(Default)]
struct Seen {
    /// Query strings of token requests.
    token_queries: Vec<String>,
    /// `Authorization` of every /v2/ request.
    v2_auth: Vec<Option<String>>,
}

/// Serves: `/token` (needs Basic kiln:pw; the first `token_503s` requests get a 503) and
/// `/v2/…` (needs `Bearer tok-123`, then 404s, except `/v2/` itself: 200).
fn fake_registry_with(token_503s: usize) -> (u16, Arc<Mutex<Seen>>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Seen::default()));
    let seen2 = seen.clone();
    std::thread::spawn(move || {
        for conn in l.incoming() {
            let Ok(mut conn) = conn else { continue };
            let mut reader = BufReader::new(conn.try_clone().unwrap());
            let mut line = String::new();
            if reader.read_line(&mut line).is_err() {
                continue;
            }
            let target = line.split_whitespace().nth(1).unwrap_or("").to_string();
            let mut auth = None;
            loop {
                let mut h = String::new();
                if reader.read_line(&mut h).is_err() || h.trim().is_empty() {
                    break;
                }
                if let Some((k, v)) = h.split_once(':') {
                    if k.eq_ignore_ascii_case("authorization") {
                        auth = Some(v.trim().to_string());
                    }
                }
            }
            let basic = format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode("kiln:pw")
            );
            let (status, headers, body) = if let Some(q) = target.strip_prefix("/token?") {
                let n = {
                    let mut s = seen2.lock().unwrap();
                    s.token_queries.push(q.to_string());
                    s.token_queries.len()
                };
                if n <= token_503s {
                    (
                        "503 Service Unavailable",
                        "Retry-After: 0\r\n".to_string(),
                        "{}".to_string(),
                    )
                } else if auth.as_deref() == Some(basic.as_str()) {
                    (
                        "200 OK",
                        String::new(),
                        format!("{{\"token\":\"{TOKEN}\"}}"),
                    )
                } else {
                    ("401 Unauthorized", String::new(), "{}".to_string())
                }
            } else {
                seen2.lock().unwrap().v2_auth.push(auth.clone());
                if auth.as_deref() == Some(&format!("Bearer {TOKEN}")) && target == "/v2/" {
                    ("200 OK", String::new(), "{}".to_string())
                } else if auth.as_deref() == Some(&format!("Bearer {TOKEN}")) {
                    (
                        "404 Not Found",
                        String::new(),
                        r#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}"#
                            .to_string(),
                    )
                } else {
                    (
                        "401 Unauthorized",
                        format!(
                            "WWW-Authenticate: Bearer realm=\"http://127.0.0.1:{port}/token\",service=\"fake\",scope=\"repository:kiln/x:pull\"\r\n"
                        ),
                        "{}".to_string(),
                    )
                }
            };
            let _ = write!(
                conn,
                "HTTP/1.1 {status}\r\n{headers}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    (port, seen)
}

fn fake_registry() -> (u16, Arc<Mutex<Seen>>) {
    fake_registry_with(0)
}

#[tokio::test]
async fn bearer_token_is_fetched_with_credentials_and_cached() {
    let (port, seen) = fake_registry();
    let dir = tempfile::tempdir().unwrap();
    let host = format!("127.0.0.1:{port}");
    let auth = base64::engine::general_purpose::STANDARD.encode("kiln:pw");
    let cfg = dir.path().join("config.json");
    std::fs::write(
        &cfg,
        format!(r#"{{"auths":{{"{host}":{{"auth":"{auth}"}}}}}}"#),
    )
    .unwrap();
    let store = kiln_cache::Store::open(&dir.path().join("store")).unwrap();
    let client = Client::new(RegistryConfig {
        hosts: Default::default(),
        docker_config: Some(cfg),
        ..Default::default()
    });
    let r = Reference::parse(&format!("{host}/kiln/x:v1")).unwrap();

    // Authenticated, the fake says 404: NotFound proves the token was accepted.
    assert!(matches!(
        client.resolve(&r, &store).await,
        Err(Error::NotFound { .. })
    ));
    // A clone shares the token: no second token request, the first try carries it.
    let clone = client.clone();
    assert!(matches!(
        clone.resolve(&r, &store).await,
        Err(Error::NotFound { .. })
    ));
    let s = seen.lock().unwrap();
    assert_eq!(s.token_queries.len(), 1, "{:?}", s.token_queries);
    let q = &s.token_queries[0];
    assert!(
        q.contains("service=fake") && q.contains("scope=repository%3Akiln%2Fx%3Apull"),
        "{q}"
    );
    let bearer = format!("Bearer {TOKEN}");
    assert_eq!(
        s.v2_auth,
        vec![None, Some(bearer.clone()), Some(bearer)],
        "anonymous first, then the token, then the cached token"
    );
}

#[tokio::test]
async fn bearer_without_credentials_is_unauthorized() {
    let (port, _seen) = fake_registry();
    let dir = tempfile::tempdir().unwrap();
    let store = kiln_cache::Store::open(&dir.path().join("store")).unwrap();
    let client = Client::new(RegistryConfig::default());
    let r = Reference::parse(&format!("127.0.0.1:{port}/kiln/x:v1")).unwrap();
    match client.resolve(&r, &store).await {
        Err(e @ Error::Unauthorized { .. }) => {
            let m = e.to_string();
            assert!(
                m.contains(&format!("127.0.0.1:{port}")) && m.contains("kiln/x:v1"),
                "{m}"
            );
        }
        other => panic!("expected Unauthorized, got {other:?}"),
    }
}

#[tokio::test]
async fn check_login_gets_a_token_with_the_given_credentials() {
    let (port, seen) = fake_registry();
    let host = format!("127.0.0.1:{port}");
    // No docker config at all: only the given credentials are used.
    let client = Client::new(RegistryConfig::default());
    client.check_login(&host, "kiln", "pw").await.unwrap();
    match client.check_login(&host, "kiln", "wrong").await {
        Err(e @ Error::Unauthorized { .. }) => {
            let m = e.to_string();
            assert!(
                m.contains(&host) && m.contains("refused the credentials"),
                "{m}"
            );
        }
        other => panic!("expected Unauthorized, got {other:?}"),
    }
    let s = seen.lock().unwrap();
    // Login asks for no repository scope, only the challenge's own.
    assert!(
        s.token_queries
            .iter()
            .all(|q| q == "service=fake&scope=repository%3Akiln%2Fx%3Apull"),
        "{:?}",
        s.token_queries
    );
    assert_eq!(
        s.v2_auth,
        vec![None, Some(format!("Bearer {TOKEN}")), None],
        "anonymous, then with the token; the refused login never retries"
    );
}

#[tokio::test]
async fn a_token_service_503_is_retried() {
    let (port, seen) = fake_registry_with(2);
    let dir = tempfile::tempdir().unwrap();
    let host = format!("127.0.0.1:{port}");
    let auth = base64::engine::general_purpose::STANDARD.encode("kiln:pw");
    let cfg = dir.path().join("config.json");
    std::fs::write(
        &cfg,
        format!(r#"{{"auths":{{"{host}":{{"auth":"{auth}"}}}}}}"#),
    )
    .unwrap();
    let store = kiln_cache::Store::open(&dir.path().join("store")).unwrap();
    let client = Client::new(RegistryConfig {
        docker_config: Some(cfg),
        ..Default::default()
    });
    let r = Reference::parse(&format!("{host}/kiln/x:v1")).unwrap();
    // Two 503s, then the token: the manifest request carries it (the fake's 404).
    assert!(matches!(
        client.resolve(&r, &store).await,
        Err(Error::NotFound { .. })
    ));
    assert_eq!(seen.lock().unwrap().token_queries.len(), 3);
}
