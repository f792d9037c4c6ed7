//! The `http` connector against a real HTTP server on loopback.

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::IntoResponse;
use axum::routing::any;
use serde_json::{Value, json};
use weft_core::yaml;

use super::*;
use crate::{ActionError, Call, Connector};

/// Echoes the request back as JSON.
async fn echo(
    method: Method,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> impl IntoResponse {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(String::from)
    };
    axum::Json(json!({
        "method": method.as_str(),
        "query": query,
        "idempotency_key": header("idempotency-key"),
        "authorization": header("authorization"),
        "api_key": header("x-api-key"),
        "content_type": header("content-type"),
        "accept": header("accept"),
        "body": String::from_utf8_lossy(&body),
    }))
}

async fn status(Path(code): Path<u16>) -> impl IntoResponse {
    let mut headers = HeaderMap::new();
    headers.insert("retry-after", "7".parse().unwrap());
    (StatusCode::from_u16(code).unwrap(), headers, "nope")
}

async fn serve() -> SocketAddr {
    let app = Router::new()
        .route("/api/echo", any(echo))
        .route("/api/status/{code}", any(status))
        .route("/api/big", any(|| async { "x".repeat(10_000) }))
        .route(
            "/api/redirect",
            any(
                |axum::extract::Query(q): axum::extract::Query<
                    std::collections::HashMap<String, String>,
                >| async move {
                    let to = q.get("to").cloned().unwrap_or_default();
                    (StatusCode::FOUND, [("location", to)], "")
                },
            ),
        )
        .route(
            "/api/bytes",
            any(|| async {
                (
                    [("content-type", "application/octet-stream")],
                    vec![0u8, 159, 146, 150],
                )
            }),
        )
        .route(
            "/api/slow",
            any(|| async {
                tokio::time::sleep(Duration::from_secs(5)).await;
                "late"
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

/// A connector for `settings`, allowed to reach the tests' servers on loopback.
fn connector(settings: &str) -> HttpConnector {
    let node = yaml::parse(&format!("{settings}allow_private_network: true\n")).unwrap();
    let mut diags = weft_core::Diagnostics::new("weft.yaml");
    let config = HttpConfig::decode(&node, &mut diags).unwrap();
    assert!(diags.is_empty(), "{:?}", diags.into_vec());
    HttpConnector::new(config).unwrap()
}

async fn call(c: &HttpConnector, input: Value) -> Result<Value, ActionError> {
    c.call(Call {
        action: "request",
        input,
        idempotency_key: "run-1/post",
        max_output_bytes: 4096,
    })
    .await
}

#[tokio::test]
async fn sends_json_with_idempotency_key_and_parses_the_response() {
    let addr = serve().await;
    let c = connector(&format!(
        "type: http\nbase_url: http://{addr}/api\nheaders: {{Accept: application/json}}\n"
    ));
    let out = call(&c, json!({"method": "POST", "path": "/echo", "query": {"a": 1, "tag": ["x", "y"]}, "body": {"id": 7}}))
        .await
        .unwrap();
    assert_eq!(out["status"], 200);
    assert_eq!(out["headers"]["content-type"], "application/json");
    let echoed = &out["body"];
    assert_eq!(echoed["method"], "POST");
    assert_eq!(echoed["query"], "a=1&tag=x&tag=y");
    assert_eq!(echoed["idempotency_key"], "run-1/post");
    assert_eq!(echoed["accept"], "application/json");
    assert_eq!(echoed["content_type"], "application/json");
    assert_eq!(echoed["body"], r#"{"id":7}"#);
}

#[tokio::test]
async fn sends_text_and_form_bodies() {
    let addr = serve().await;
    let c = connector("type: http\n");
    let url = format!("http://{addr}/api/echo");
    let out = call(&c, json!({"method": "PUT", "url": url, "text": "hello"}))
        .await
        .unwrap();
    assert_eq!(out["body"]["content_type"], "text/plain; charset=utf-8");
    assert_eq!(out["body"]["body"], "hello");
    let out = call(
        &c,
        json!({"method": "post", "url": url, "form": {"a": "1 2", "b": 3}}),
    )
    .await
    .unwrap();
    assert_eq!(
        out["body"]["content_type"],
        "application/x-www-form-urlencoded"
    );
    assert_eq!(out["body"]["body"], "a=1+2&b=3");
}

/// The issue's finding: a step's `url` on another origin than the connection's got its bearer
/// token. Credentials go only to the connection's origin and to `credential_origins`.
#[tokio::test]
async fn credentials_go_only_to_the_connections_origins() {
    let addr = serve().await;
    let name = env!("CARGO_PKG_NAME");
    let own = format!("http://{addr}/api/echo");
    // The same server under another name: another origin.
    let other = format!("http://localhost:{}/api/echo", addr.port());
    for auth in [
        "{type: bearer, token: {env: CARGO_PKG_NAME}}",
        "{type: api_key, value: {env: CARGO_PKG_NAME}}",
        "{type: basic, username: ada, password: {env: CARGO_PKG_NAME}}",
    ] {
        let c = connector(&format!(
            "type: http\nbase_url: http://{addr}/api\nauth: {auth}\n"
        ));
        let sent = |out: &Value| {
            !out["body"]["authorization"].is_null() || !out["body"]["api_key"].is_null()
        };
        let out = call(&c, json!({"url": own})).await.unwrap();
        assert!(sent(&out), "{auth}: {out}");
        let out = call(&c, json!({"path": "/echo"})).await.unwrap();
        assert!(sent(&out), "{auth}: {out}");
        let out = call(&c, json!({"url": other})).await.unwrap();
        assert!(!sent(&out), "{auth} went to another origin: {out}");
        assert_eq!(out["status"], 200);
        // Listed origins get them.
        let listed = connector(&format!(
            "type: http\nbase_url: http://{addr}/api\nauth: {auth}\ncredential_origins: [\"http://localhost:{}\"]\n",
            addr.port()
        ));
        let out = call(&listed, json!({"url": other})).await.unwrap();
        assert!(sent(&out), "{auth}: {out}");
    }
    let bearer = connector(&format!(
        "type: http\nbase_url: http://{addr}/api\nauth: {{type: bearer, token: {{env: CARGO_PKG_NAME}}}}\n"
    ));
    let out = call(&bearer, json!({"url": own})).await.unwrap();
    assert_eq!(out["body"]["authorization"], format!("Bearer {name}"));
    // A refusal by the other origin says why the credentials were not sent.
    let err = call(
        &bearer,
        json!({"url": format!("http://localhost:{}/api/status/401", addr.port())}),
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("credential_origins"), "{err}");
    // A redirect from the connection's origin to another is not followed with an API key.
    let key = connector(&format!(
        "type: http\nbase_url: http://{addr}/api\nauth: {{type: api_key, value: {{env: CARGO_PKG_NAME}}}}\n"
    ));
    let out = call(&key, json!({"path": "/redirect", "query": {"to": other}}))
        .await
        .unwrap_err();
    let ActionError::Fatal { details, .. } = out else {
        panic!("{out:?}")
    };
    assert_eq!(details["status"], 302, "{details}");
    // To its own origin it is.
    let out = call(&key, json!({"path": "/redirect", "query": {"to": own}}))
        .await
        .unwrap();
    assert_eq!(out["body"]["api_key"], name);
}

#[test]
fn credentials_need_a_place_to_go() {
    let node = yaml::parse(
        "type: http\nauth: {type: bearer, token: {env: X}}\ncredential_origins: [https://a.example.com/path, ftp://b]\n",
    )
    .unwrap();
    let mut diags = weft_core::Diagnostics::new("weft.yaml");
    HttpConfig::decode(&node, &mut diags);
    let text: Vec<String> = diags.into_vec().iter().map(ToString::to_string).collect();
    assert_eq!(text.len(), 2, "{text:?}");
    assert!(text[0].contains("is not an origin"), "{text:?}");
    let node = yaml::parse("type: http\nauth: {type: bearer, token: {env: X}}\n").unwrap();
    let mut diags = weft_core::Diagnostics::new("weft.yaml");
    HttpConfig::decode(&node, &mut diags);
    let text: Vec<String> = diags.into_vec().iter().map(ToString::to_string).collect();
    assert_eq!(
        text,
        [
            "weft.yaml:2:7: a connection with `auth` and no `base_url` must say where its credentials may go: add `base_url` or `credential_origins`"
        ]
    );
}

#[tokio::test]
async fn authenticates_from_environment_variables() {
    let addr = serve().await;
    // Changing the environment needs `unsafe` (and races other tests), so the credentials are
    // variables that cargo sets for every test process.
    let name = env!("CARGO_PKG_NAME");
    let base = format!("base_url: http://{addr}/api\n");
    let bearer = connector(&format!(
        "type: http\n{base}auth: {{type: bearer, token: {{env: CARGO_PKG_NAME}}}}\n"
    ));
    let out = call(&bearer, json!({"path": "echo"})).await.unwrap();
    assert_eq!(out["body"]["authorization"], format!("Bearer {name}"));
    let basic = connector(&format!(
        "type: http\n{base}auth: {{type: basic, username: ada, password: {{env: CARGO_PKG_NAME}}}}\n"
    ));
    let out = call(&basic, json!({"path": "/echo"})).await.unwrap();
    use base64::Engine as _;
    let expected = base64::engine::general_purpose::STANDARD.encode(format!("ada:{name}"));
    assert_eq!(out["body"]["authorization"], format!("Basic {expected}"));
    let key = connector(&format!(
        "type: http\n{base}auth: {{type: api_key, value: {{env: CARGO_PKG_NAME}}}}\n"
    ));
    let out = call(&key, json!({"path": "/echo"})).await.unwrap();
    assert_eq!(out["body"]["api_key"], name);
    // In the query, beside the step's own parameters.
    let in_query = connector(&format!(
        "type: http\n{base}auth: {{type: api_key, query: key, value: {{env: CARGO_PKG_NAME}}}}\n"
    ));
    let out = call(&in_query, json!({"path": "/echo", "query": {"page": 2}}))
        .await
        .unwrap();
    assert_eq!(out["body"]["query"], format!("page=2&key={name}"));
    assert_eq!(out["body"]["api_key"], Value::Null);
    let missing = connector(&format!(
        "type: http\n{base}auth: {{type: bearer, token: {{env: WEFT_TEST_HTTP_UNSET}}}}\n"
    ));
    let err = call(&missing, json!({"path": "/echo"})).await.unwrap_err();
    assert_eq!(
        err,
        ActionError::fatal(
            "bearer token: the environment variable WEFT_TEST_HTTP_UNSET is not set"
        )
    );
}

#[tokio::test]
async fn classifies_statuses_and_honours_retry_after() {
    let addr = serve().await;
    let c = connector(&format!("type: http\nbase_url: http://{addr}/api\n"));
    for code in [408u16, 429, 500, 502, 503] {
        match call(&c, json!({"path": format!("/status/{code}")}))
            .await
            .unwrap_err()
        {
            ActionError::Retryable {
                message,
                retry_after,
                details,
            } => {
                assert!(message.starts_with(&format!("HTTP {code}")), "{message}");
                assert_eq!(retry_after, Some(Duration::from_secs(7)));
                assert_eq!(details["status"], code);
                assert_eq!(details["body"], "nope");
            }
            other => panic!("{code} should be retryable, got {other:?}"),
        }
    }
    for code in [400u16, 401, 404, 422] {
        let err = call(&c, json!({"path": format!("/status/{code}")}))
            .await
            .unwrap_err();
        assert!(!err.is_retryable(), "{code} should be fatal");
        assert_eq!(err.details()["status"], code);
    }
}

#[tokio::test]
async fn transport_failures_are_retryable() {
    // A port that was just free: nothing listens there.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let c = connector("type: http\n");
    let err = call(&c, json!({"url": format!("http://{closed}/x")}))
        .await
        .unwrap_err();
    assert!(err.is_retryable(), "{err:?}");
    assert!(
        err.to_string().starts_with("cannot connect for GET"),
        "{err}"
    );

    let addr = serve().await;
    let err = call(
        &c,
        json!({"url": format!("http://{addr}/api/slow"), "timeout": "200ms"}),
    )
    .await
    .unwrap_err();
    assert!(err.is_retryable());
    assert!(err.to_string().contains("timed out after 200ms"), "{err}");
}

#[tokio::test]
async fn large_and_binary_bodies_are_explicit() {
    let addr = serve().await;
    let c = connector(&format!("type: http\nbase_url: http://{addr}/api\n"));
    let err = call(&c, json!({"path": "/big"})).await.unwrap_err();
    assert!(!err.is_retryable());
    assert!(
        err.to_string()
            .contains("larger than 4096 bytes (limits.max_output_bytes)"),
        "{err}"
    );
    let out = call(&c, json!({"path": "/bytes"})).await.unwrap();
    assert_eq!(out["body"], Value::Null);
    assert_eq!(out["body_base64"], "AJ+Slg==");
}

#[tokio::test]
async fn bad_inputs_are_fatal_and_say_what() {
    let c = connector("type: http\n");
    let cases = [
        (
            json!({"method": "FETCH", "url": "http://127.0.0.1:9/"}),
            "`with.method`: `FETCH` is not an HTTP method Weft sends",
        ),
        (
            json!({"path": "/x"}),
            "`with.path` needs a `base_url` on the connection; give a full `with.url` instead",
        ),
        (
            json!({"url": "ftp://x/"}),
            "`with.url` must be http or https, not ftp",
        ),
        (
            json!({"url": "http://127.0.0.1:9/", "body": 1, "text": "a"}),
            "a request has one body: `with.body` and `with.text` cannot be used together",
        ),
        (
            json!({"url": "http://127.0.0.1:9/", "query": {"a": {"b": 1}}}),
            "`with.query.a` must be text, a number or a list of them",
        ),
        (json!("GET /"), "`with` must be a mapping, got text"),
        (
            json!({"url": "http://127.0.0.1:9/", "retries": 2}),
            "unknown input `retries`; expected one of: method, url, path, headers, query, body, text, form, timeout",
        ),
    ];
    for (input, message) in cases {
        assert_eq!(
            call(&c, input).await.unwrap_err(),
            ActionError::fatal(message)
        );
    }
}

#[test]
fn retry_after_reads_seconds_and_dates() {
    let now: jiff::Timestamp = "2026-11-25T10:00:00Z".parse().unwrap();
    assert_eq!(retry_after("120", now), Some(Duration::from_secs(120)));
    assert_eq!(
        retry_after("Wed, 25 Nov 2026 10:00:30 GMT", now),
        Some(Duration::from_secs(30))
    );
    assert_eq!(
        retry_after("Wed, 25 Nov 2026 09:00:00 GMT", now),
        Some(Duration::ZERO)
    );
    assert_eq!(retry_after("soon", now), None);
}

#[test]
fn lint_checks_request_inputs() {
    assert!(SPEC.action("request").is_some());
    let with = weft_core::yaml::parse("{url: a, path: b, body: c, form: d}").unwrap();
    let mut diags = weft_core::Diagnostics::new("w.yaml");
    (SPEC.actions[0].check_inputs)(&with, &mut diags);
    let messages: Vec<String> = diags
        .into_vec()
        .into_iter()
        .map(|d| d.to_string())
        .collect();
    assert_eq!(
        messages,
        vec![
            "w.yaml:1:1: a request has one body: `body` and `form` cannot be used together",
            "w.yaml:1:1: give either `url` (a full URL) or `path` (appended to the connection's base_url), not both",
        ]
    );
}

/// A token endpoint and an API that accepts only the newest token it issued.
#[derive(Clone, Default)]
struct Issuer {
    issued: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    /// `expires_in` of the tokens issued.
    lifetime: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

async fn oauth_server(issuer: Issuer) -> SocketAddr {
    let token = {
        let issuer = issuer.clone();
        move |headers: HeaderMap, body: Bytes| {
            let issuer = issuer.clone();
            async move {
                use base64::Engine as _;
                let expected = format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode("weft:s3cret")
                );
                let form = String::from_utf8_lossy(&body).into_owned();
                if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(&expected) {
                    return (
                        StatusCode::UNAUTHORIZED,
                        axum::Json(
                            json!({"error": "invalid_client", "error_description": "unknown client"}),
                        ),
                    );
                }
                assert!(form.contains("grant_type=client_credentials"), "{form}");
                assert!(form.contains("scope=orders%3Aread"), "{form}");
                let mut issued = issuer.issued.lock().unwrap();
                let t = format!("t{}", issued.len() + 1);
                issued.push(t.clone());
                let lifetime = issuer.lifetime.load(std::sync::atomic::Ordering::Relaxed);
                (
                    StatusCode::OK,
                    axum::Json(
                        json!({"access_token": t, "token_type": "Bearer", "expires_in": lifetime}),
                    ),
                )
            }
        }
    };
    let api = {
        let issuer = issuer.clone();
        move |headers: HeaderMap| {
            let issuer = issuer.clone();
            async move {
                let newest = issuer.issued.lock().unwrap().last().cloned();
                let sent = headers
                    .get("authorization")
                    .and_then(|v| v.to_str().ok())
                    .map(|v| v.trim_start_matches("Bearer ").to_string());
                if sent.is_some() && sent == newest {
                    (StatusCode::OK, axum::Json(json!({"token": sent})))
                } else {
                    (
                        StatusCode::UNAUTHORIZED,
                        axum::Json(json!({"error": "expired"})),
                    )
                }
            }
        }
    };
    let app = Router::new()
        .route("/oauth/token", axum::routing::post(token))
        .route("/api/orders", any(api));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

fn oauth_connector(addr: SocketAddr, secret_var: &str) -> HttpConnector {
    let node = yaml::parse(&format!(
        "{{type: http, base_url: \"http://{addr}/api\", allow_private_network: true, auth: {{type: oauth2, token_url: \"http://{addr}/oauth/token\", client_id: weft, client_secret: {{env: {secret_var}}}, scope: \"orders:read\"}}}}"
    ))
    .unwrap();
    let mut diags = weft_core::Diagnostics::new("weft.yaml");
    let config = HttpConfig::decode(&node, &mut diags).unwrap();
    assert!(diags.is_empty());
    HttpConnector::new(config).unwrap()
}

async fn get_orders(c: &HttpConnector) -> Result<Value, ActionError> {
    c.call(Call {
        action: "request",
        input: json!({"path": "/orders"}),
        idempotency_key: "run/step",
        max_output_bytes: 1 << 20,
    })
    .await
}

#[tokio::test]
async fn oauth2_tokens_are_cached_refreshed_before_expiry_and_after_a_401() {
    let issuer = Issuer::default();
    issuer
        .lifetime
        .store(3600, std::sync::atomic::Ordering::Relaxed);
    let addr = oauth_server(issuer.clone()).await;
    let c = oauth_connector(addr, "WEFT_TEST_OAUTH_SECRET");
    assert_eq!(get_orders(&c).await.unwrap()["body"]["token"], "t1");
    assert_eq!(
        get_orders(&c).await.unwrap()["body"]["token"],
        "t1",
        "cached"
    );
    assert_eq!(issuer.issued.lock().unwrap().len(), 1);

    // The server issues a token elsewhere, so ours is refused: one new token, one retry.
    issuer.issued.lock().unwrap().push("elsewhere".into());
    assert_eq!(get_orders(&c).await.unwrap()["body"]["token"], "t3");

    // A short-lived token is replaced before it runs out.
    issuer
        .lifetime
        .store(2, std::sync::atomic::Ordering::Relaxed);
    issuer.issued.lock().unwrap().push("elsewhere-again".into());
    assert_eq!(get_orders(&c).await.unwrap()["body"]["token"], "t5");
    tokio::time::sleep(Duration::from_millis(1900)).await;
    assert_eq!(get_orders(&c).await.unwrap()["body"]["token"], "t6");
}

#[tokio::test]
async fn oauth2_refused_credentials_are_fatal_and_say_why() {
    let addr = oauth_server(Issuer::default()).await;
    let c = oauth_connector(addr, "WEFT_TEST_SMTP_PASSWORD");
    let err = get_orders(&c).await.unwrap_err();
    assert!(!err.is_retryable());
    assert_eq!(
        err.to_string(),
        format!(
            "the oauth2 token endpoint http://{addr}/oauth/token refused the client credentials (invalid_client: unknown client)"
        )
    );
}

/// A connector for `settings` as written: without `allow_private_network`.
fn guarded(settings: &str) -> HttpConnector {
    let node = yaml::parse(settings).unwrap();
    let mut diags = weft_core::Diagnostics::new("weft.yaml");
    let config = HttpConfig::decode(&node, &mut diags).unwrap();
    assert!(diags.is_empty(), "{:?}", diags.into_vec());
    assert!(!config.allow_private_network);
    HttpConnector::new(config).unwrap()
}

#[tokio::test]
async fn private_addresses_are_refused_unless_the_connection_allows_them() {
    let (server, addr) = weft_testkit::ScriptedServer::start().await;
    let port = addr.port();
    let c = guarded("type: http\n");
    for url in [
        format!("http://{addr}/x"),
        format!("http://localhost:{port}/x"),
        format!("http://2130706433:{port}/x"),
        format!("http://0x7f.0.0.1:{port}/x"),
        format!("http://[::ffff:127.0.0.1]:{port}/x"),
        format!("http://[::1]:{port}/x"),
        // Never sent anywhere: refused before any connection is tried.
        "http://10.0.0.1/x".to_string(),
        "http://169.254.169.254/latest/meta-data/".to_string(),
        "http://100.64.1.1/x".to_string(),
    ] {
        let err = call(&c, json!({"url": url})).await.unwrap_err();
        assert!(!err.is_retryable(), "{url}: {err}");
        assert!(
            err.to_string().contains("allow_private_network"),
            "{url}: {err}"
        );
    }
    // A base_url on a private address, and an OAuth2 token endpoint on one, are refused too.
    let c = guarded(&format!("type: http\nbase_url: http://{addr}\n"));
    let err = call(&c, json!({"path": "/x"})).await.unwrap_err();
    assert!(err.to_string().contains("loopback"), "{err}");
    let c = guarded(&format!(
        "type: http\nbase_url: https://api.example.com\nauth: {{ type: oauth2, token_url: http://{addr}/token, client_id: weft, client_secret: {{ env: CARGO_PKG_NAME }} }}\n"
    ));
    let err = call(&c, json!({"path": "/x"})).await.unwrap_err();
    assert!(err.to_string().contains("oauth2 token endpoint"), "{err}");
    assert!(server.seen("x").is_empty() && server.seen("token").is_empty());

    // With the flag, the same request goes through.
    server.script("x", vec![weft_testkit::Answer::ok(json!({"ok": true}))]);
    let c = connector("type: http\n");
    let out = call(&c, json!({"url": format!("http://localhost:{port}/x")}))
        .await
        .unwrap();
    assert_eq!(out["body"]["ok"], true);
}

#[tokio::test]
async fn a_probe_reads_the_base_url_and_tells_refused_credentials_from_other_answers() {
    let addr = serve().await;
    let probe = |path: &str| {
        connector(&format!(
            "type: http\nbase_url: http://{addr}{path}\nauth: {{type: bearer, token: {{env: WEFT_TEST_OAUTH_SECRET}}}}\n"
        ))
    };
    let found = probe("/api/echo").probe().await.unwrap();
    assert_eq!(
        found,
        format!("GET http://{addr}/api/echo answered 200; the credentials were not refused")
    );
    // A server that answers, even 404 at its base URL, is reachable.
    let found = probe("/api/status/404").probe().await.unwrap();
    assert!(found.contains("answered 404"), "{found}");
    for refused in ["401", "403"] {
        let err = probe(&format!("/api/status/{refused}"))
            .probe()
            .await
            .unwrap_err();
        assert!(!err.is_retryable(), "{err}");
        assert!(
            err.to_string().ends_with(&format!(
                "answered {refused}: the server refused the connection's credentials"
            )),
            "{err}"
        );
    }
    let err = probe("/api/status/503").probe().await.unwrap_err();
    assert!(err.is_retryable(), "{err}");
    let err = connector("type: http\n").probe().await.unwrap_err();
    assert!(err.to_string().contains("no `base_url`"), "{err}");
}

/// A throwaway RSA key made for this test only (`openssl genpkey -algorithm RSA`); it signs
/// nothing anywhere else.
const TEST_KEY_PEM: &str = include_str!("test-service-account.pem");

/// A token endpoint that checks a service account's JWT as Google's does: RS256 under the account's
/// public key, the JWT bearer grant, `aud` its own URL, a scope, an unexpired `exp`.
async fn service_account_server() -> SocketAddr {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let token = move |body: String| async move {
        let form: std::collections::HashMap<String, String> =
            form_urlencoded::parse(body.as_bytes())
                .into_owned()
                .collect();
        assert_eq!(
            form["grant_type"],
            "urn:ietf:params:oauth:grant-type:jwt-bearer"
        );
        let parts: Vec<&str> = form["assertion"].split('.').collect();
        let der: String = TEST_KEY_PEM
            .lines()
            .filter(|l| !l.starts_with("-----"))
            .collect();
        let der = base64::engine::general_purpose::STANDARD
            .decode(der)
            .unwrap();
        let pair = ring::signature::RsaKeyPair::from_pkcs8(&der).unwrap();
        let public = ring::signature::UnparsedPublicKey::new(
            &ring::signature::RSA_PKCS1_2048_8192_SHA256,
            pair.public().as_ref().to_vec(),
        );
        let signed = format!("{}.{}", parts[0], parts[1]);
        if public
            .verify(signed.as_bytes(), &b64.decode(parts[2]).unwrap())
            .is_err()
        {
            return (
                StatusCode::BAD_REQUEST,
                axum::Json(json!({"error": "invalid_grant", "error_description": "bad signature"})),
            )
                .into_response();
        }
        let header: Value = serde_json::from_slice(&b64.decode(parts[0]).unwrap()).unwrap();
        let claims: Value = serde_json::from_slice(&b64.decode(parts[1]).unwrap()).unwrap();
        assert_eq!(header["alg"], "RS256");
        assert_eq!(
            claims["iss"],
            "weft@example-project.iam.gserviceaccount.com"
        );
        assert_eq!(claims["aud"], format!("http://{addr}/token"));
        assert_eq!(
            claims["scope"],
            "https://www.googleapis.com/auth/spreadsheets"
        );
        assert_eq!(claims["sub"], "ada@acme.example");
        assert!(claims["exp"].as_i64().unwrap() > jiff::Timestamp::now().as_second());
        axum::Json(json!({"access_token": "ya29.service-token", "expires_in": 3599, "token_type": "Bearer"}))
            .into_response()
    };
    let api = |headers: HeaderMap| async move {
        let auth = headers
            .get("authorization")
            .map(|v| v.to_str().unwrap().to_string());
        if auth.as_deref() == Some("Bearer ya29.service-token") {
            axum::Json(json!({"values": [["a", "b"]]})).into_response()
        } else {
            StatusCode::UNAUTHORIZED.into_response()
        }
    };
    let app = Router::new()
        .route("/token", axum::routing::post(token))
        .route("/sheet", any(api));
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

#[tokio::test]
async fn a_service_account_signs_a_jwt_and_uses_the_token_it_gets() {
    let addr = service_account_server().await;
    let key = json!({
        "type": "service_account",
        "client_email": "weft@example-project.iam.gserviceaccount.com",
        "private_key": TEST_KEY_PEM,
        "token_uri": format!("http://{addr}/token"),
    })
    .to_string();
    let secrets = crate::Secrets::new();
    secrets.set_stored(std::collections::BTreeMap::from([(
        "GOOGLE_SA_KEY".to_string(),
        key,
    )]));
    let node = yaml::parse(&format!(
        "type: http\nbase_url: http://{addr}\nallow_private_network: true\nauth: {{ type: service_account, key: {{ secret: GOOGLE_SA_KEY }}, scope: \"https://www.googleapis.com/auth/spreadsheets\", subject: ada@acme.example }}\n"
    ))
    .unwrap();
    let connection = weft_core::Connection {
        name: "sheets".into(),
        type_name: "http".into(),
        node,
        pos: Default::default(),
        rate_limit: None,
    };
    let c = HttpConnector::build(&connection, &secrets).unwrap();
    let out = c
        .call(Call {
            action: "request",
            input: json!({"path": "/sheet"}),
            idempotency_key: "run/step",
            max_output_bytes: 1 << 20,
        })
        .await
        .unwrap();
    assert_eq!(out["body"]["values"][0][0], "a");
    // The private key and the token are scrubbed wherever they appear.
    let scrubbed = secrets.scrubber().text("Bearer ya29.service-token");
    assert!(!scrubbed.contains("ya29.service-token"), "{scrubbed}");
    // A key that is not a key file says so.
    secrets.set_stored(std::collections::BTreeMap::from([(
        "GOOGLE_SA_KEY".to_string(),
        "not json".to_string(),
    )]));
    let c = HttpConnector::build(&connection, &secrets).unwrap();
    let err = c
        .call(Call {
            action: "request",
            input: json!({"path": "/sheet"}),
            idempotency_key: "run/step",
            max_output_bytes: 1 << 20,
        })
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .starts_with("the service account key is not the JSON of a key file"),
        "{err}"
    );
}

#[test]
fn a_token_lifetime_beyond_a_year_is_cut_to_a_year() {
    // A provider's `expires_in` of 10^18 s would overflow `Instant` and Unix-time arithmetic.
    assert_eq!(
        super::oauth2::expires_in(&json!({"expires_in": 1_000_000_000_000_000_000u64})),
        Some(365 * 24 * 3600)
    );
    assert_eq!(
        super::oauth2::expires_in(&json!({"expires_in": "3599"})),
        Some(3599)
    );
    assert_eq!(super::oauth2::expires_in(&json!({"expires_in": -5})), None);
}
