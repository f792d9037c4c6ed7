//! Test support for Weft's own tests (never a dependency of shipped code).
//!
//! [`ScriptedServer`] is a real HTTP server on `127.0.0.1` that answers `/<name>` from a script of
//! [`Answer`]s, one per request in order (the last one repeats), and records every request it saw,
//! with its `Idempotency-Key`. Tests use it to count calls, to make an outside system fail on cue,
//! and to hold a request open while a `weft` process is killed. [`smtp::SmtpSink`] is an SMTP
//! server that keeps what it is sent, for the email connector. [`oauth::AuthorizationServer`] is an
//! OAuth 2.0 authorization server (authorization code with PKCE, rotating refresh tokens) with a
//! protected API beside it.

#![deny(missing_docs)]

pub mod oauth;
pub mod smtp;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::IntoResponse;
use axum::routing::any;
use serde_json::{Value, json};

/// One scripted answer.
#[derive(Clone, Debug)]
pub struct Answer {
    /// The HTTP status.
    pub status: u16,
    /// A `Retry-After` header, in seconds.
    pub retry_after: Option<u64>,
    /// The JSON body.
    pub body: Value,
    /// How long to hold the request before answering.
    pub delay: Duration,
}

impl Answer {
    /// `200` with this JSON body.
    pub fn ok(body: Value) -> Answer {
        Answer {
            status: 200,
            retry_after: None,
            body,
            delay: Duration::ZERO,
        }
    }

    /// This status with a small JSON body.
    pub fn status(code: u16) -> Answer {
        Answer {
            status: code,
            retry_after: None,
            body: json!({ "error": code }),
            delay: Duration::ZERO,
        }
    }

    /// The same answer with a `Retry-After` header.
    pub fn retry_after(self, seconds: u64) -> Answer {
        Answer {
            retry_after: Some(seconds),
            ..self
        }
    }

    /// The same answer, given only after `delay`.
    pub fn after(self, delay: Duration) -> Answer {
        Answer { delay, ..self }
    }
}

/// A request the server saw.
#[derive(Clone, Debug)]
pub struct Seen {
    /// The name in `/<name>`.
    pub name: String,
    /// The method.
    pub method: String,
    /// The query string, without `?` (empty when there is none).
    pub query: String,
    /// The `Idempotency-Key` header, or empty.
    pub idempotency_key: String,
    /// The body as JSON (`null` when it was not JSON).
    pub body: Value,
    /// The body's exact bytes.
    pub raw_body: Vec<u8>,
    /// Every header, names in lower case (repeated ones joined with `, `).
    pub headers: HashMap<String, String>,
}

/// A scripted HTTP server on loopback. Unscripted names answer `200 {"echo": <body>, "call": n}`,
/// but for `/echo-headers`, which answers `200 {"headers": {<name>: <value>}}` with the request's
/// headers (as a careless API that reflects an `Authorization` header would).
#[derive(Clone, Default)]
pub struct ScriptedServer {
    scripts: Arc<Mutex<HashMap<String, Vec<Answer>>>>,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl ScriptedServer {
    /// Starts a server on a free loopback port, returning it and its address.
    pub async fn start() -> (ScriptedServer, SocketAddr) {
        let server = ScriptedServer::default();
        let app = Router::new()
            .route("/{*name}", any(answer))
            .with_state(server.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a loopback port is free");
        let addr = listener.local_addr().expect("the listener has an address");
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        (server, addr)
    }

    /// Sets the answers for `/<name>`, given in order; the last one repeats.
    pub fn script(&self, name: &str, answers: Vec<Answer>) {
        assert!(!answers.is_empty(), "a script needs at least one answer");
        self.scripts
            .lock()
            .expect("not poisoned")
            .insert(name.to_string(), answers);
    }

    /// The requests to `/<name>` so far.
    pub fn seen(&self, name: &str) -> Vec<Seen> {
        self.seen
            .lock()
            .expect("not poisoned")
            .iter()
            .filter(|s| s.name == name)
            .cloned()
            .collect()
    }

    /// Waits until `/<name>` has been requested `count` times, for at most `limit`.
    pub async fn wait_for(&self, name: &str, count: usize, limit: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        while tokio::time::Instant::now() < deadline {
            if self.seen(name).len() >= count {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        self.seen(name).len() >= count
    }
}

async fn answer(
    State(server): State<ScriptedServer>,
    Path(name): Path<String>,
    method: Method,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> impl IntoResponse {
    let idempotency_key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let raw_body = body.to_vec();
    let body = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let mut header_map: HashMap<String, String> = HashMap::new();
    for (k, v) in &headers {
        let text = String::from_utf8_lossy(v.as_bytes()).into_owned();
        header_map
            .entry(k.as_str().to_string())
            .and_modify(|e| {
                e.push_str(", ");
                e.push_str(&text);
            })
            .or_insert(text);
    }
    let answer = {
        let mut seen = server.seen.lock().expect("not poisoned");
        seen.push(Seen {
            name: name.clone(),
            method: method.to_string(),
            query: query.unwrap_or_default(),
            idempotency_key,
            body: body.clone(),
            raw_body,
            headers: header_map,
        });
        let count = seen.iter().filter(|s| s.name == name).count();
        match server.scripts.lock().expect("not poisoned").get(&name) {
            Some(list) => list[(count - 1).min(list.len() - 1)].clone(),
            None if name == "echo-headers" => {
                Answer::ok(json!({ "headers": seen[seen.len() - 1].headers }))
            }
            None => Answer::ok(json!({ "echo": body, "call": count })),
        }
    };
    tokio::time::sleep(answer.delay).await;
    let mut response_headers = HeaderMap::new();
    if let Some(secs) = answer.retry_after {
        response_headers.insert("retry-after", secs.into());
    }
    (
        StatusCode::from_u16(answer.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        response_headers,
        axum::Json(answer.body),
    )
}

/// Whether the local service `name` listens on loopback `port`, for tests that need a real server.
///
/// When it does not: with `WEFT_REQUIRE_SERVICES=1` (as `.ci/run` sets) the test fails, since CI
/// starts every service; otherwise it says plainly that it is skipped and returns `false`.
pub fn service(name: &str, port: u16) -> bool {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    if std::net::TcpStream::connect_timeout(&addr, std::time::Duration::from_secs(2)).is_ok() {
        return true;
    }
    if std::env::var("WEFT_REQUIRE_SERVICES").as_deref() == Ok("1") {
        panic!("{name} is not listening on 127.0.0.1:{port}, and WEFT_REQUIRE_SERVICES=1");
    }
    eprintln!("SKIPPED: {name} is not listening on 127.0.0.1:{port}; start it to run this test");
    false
}
