//! An OAuth 2.0 authorization server on `127.0.0.1` for the authorization-code flow with PKCE, as
//! RFC 6749 section 4.1 and RFC 7636 describe it, and a protected API beside it.
//!
//! - `GET /authorize` approves at once (no person): it checks `response_type=code`, the client id
//!   and `code_challenge_method=S256`, and redirects to `redirect_uri` with a one-time `code` and
//!   the `state` it was given.
//! - `POST /token` takes `grant_type=authorization_code` (the code once, the same `redirect_uri`,
//!   a `code_verifier` whose S256 is the challenge) and `grant_type=refresh_token`; the client
//!   authenticates with HTTP Basic. Every refresh rotates: a new refresh token, the old one
//!   refused from then on. [`AuthorizationServer::revoke`] refuses every refresh token.
//! - `GET /api/me` answers `{token}` to a request with a current access token, 401 otherwise.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use serde_json::json;
use sha2::{Digest, Sha256};

/// The client the server knows.
pub const CLIENT_ID: &str = "weft";

#[derive(Default)]
struct Inner {
    secret: String,
    /// Codes not used yet: code → (challenge, redirect_uri).
    codes: HashMap<String, (String, String)>,
    /// Access tokens the API takes.
    access: Vec<String>,
    /// The refresh token that works now.
    refresh: Option<String>,
    /// Lifetime given to new access tokens, in seconds.
    expires_in: u64,
    issued: u64,
    refreshes: u64,
    refused_refreshes: u64,
    revoked: bool,
}

/// A running authorization server; cloning shares it.
#[derive(Clone)]
pub struct AuthorizationServer {
    inner: Arc<Mutex<Inner>>,
    /// Its address.
    pub addr: SocketAddr,
}

fn error(status: StatusCode, code: &str, text: &str) -> Response {
    (
        status,
        axum::Json(json!({"error": code, "error_description": text})),
    )
        .into_response()
}

impl AuthorizationServer {
    /// Starts one whose client secret is `secret`, giving access tokens `expires_in` seconds.
    pub async fn start(secret: &str, expires_in: u64) -> AuthorizationServer {
        let inner = Arc::new(Mutex::new(Inner {
            secret: secret.to_string(),
            expires_in,
            ..Inner::default()
        }));
        let app = Router::new()
            .route("/authorize", get(authorize))
            .route("/token", post(token))
            .route("/api/me", get(me))
            .with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        AuthorizationServer { inner, addr }
    }

    /// Refuses every refresh token from now on (the person revoked the app).
    pub fn revoke(&self) {
        self.inner.lock().unwrap().revoked = true;
    }

    /// The refresh token that works now.
    pub fn current_refresh_token(&self) -> Option<String> {
        self.inner.lock().unwrap().refresh.clone()
    }

    /// Refreshes granted so far.
    pub fn refreshes(&self) -> u64 {
        self.inner.lock().unwrap().refreshes
    }

    /// Refreshes refused so far.
    pub fn refused_refreshes(&self) -> u64 {
        self.inner.lock().unwrap().refused_refreshes
    }
}

async fn authorize(
    State(inner): State<Arc<Mutex<Inner>>>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let get = |k: &str| q.get(k).cloned().unwrap_or_default();
    if get("response_type") != "code" || get("client_id") != CLIENT_ID {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "unknown client or response type",
        );
    }
    if get("code_challenge_method") != "S256" || get("code_challenge").len() < 43 {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "PKCE S256 is required",
        );
    }
    let mut inner = inner.lock().unwrap();
    inner.issued += 1;
    let code = format!("code-{}", inner.issued);
    inner
        .codes
        .insert(code.clone(), (get("code_challenge"), get("redirect_uri")));
    let separator = if get("redirect_uri").contains('?') {
        '&'
    } else {
        '?'
    };
    let state: String = form_encode(&get("state"));
    Redirect::to(&format!(
        "{}{separator}code={code}&state={state}",
        get("redirect_uri")
    ))
    .into_response()
}

fn form_encode(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn issue(inner: &mut Inner) -> serde_json::Value {
    inner.issued += 1;
    let access = format!("at-{}-{}", inner.issued, inner.secret.len());
    let refresh = format!("rt-{}", inner.issued);
    inner.access.push(access.clone());
    inner.refresh = Some(refresh.clone());
    json!({
        "access_token": access,
        "token_type": "Bearer",
        "expires_in": inner.expires_in,
        "refresh_token": refresh,
    })
}

async fn token(
    State(inner): State<Arc<Mutex<Inner>>>,
    headers: HeaderMap,
    body: String,
) -> Response {
    let form: HashMap<String, String> = body
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (decode(k), decode(v)))
        .collect();
    let mut inner = inner.lock().unwrap();
    let expected = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{CLIENT_ID}:{}", inner.secret))
    );
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(expected.as_str()) {
        return error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "bad client credentials",
        );
    }
    let get = |k: &str| form.get(k).cloned().unwrap_or_default();
    match get("grant_type").as_str() {
        "authorization_code" => {
            let Some((challenge, redirect_uri)) = inner.codes.remove(&get("code")) else {
                return error(
                    StatusCode::BAD_REQUEST,
                    "invalid_grant",
                    "unknown or used code",
                );
            };
            if redirect_uri != get("redirect_uri") {
                return error(
                    StatusCode::BAD_REQUEST,
                    "invalid_grant",
                    "redirect_uri differs",
                );
            }
            let made = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .encode(Sha256::digest(get("code_verifier").as_bytes()));
            if made != challenge {
                return error(
                    StatusCode::BAD_REQUEST,
                    "invalid_grant",
                    "PKCE verifier does not match",
                );
            }
            axum::Json(issue(&mut inner)).into_response()
        }
        "refresh_token" => {
            if inner.revoked || inner.refresh.as_deref() != Some(get("refresh_token").as_str()) {
                inner.refused_refreshes += 1;
                return error(
                    StatusCode::BAD_REQUEST,
                    "invalid_grant",
                    "the refresh token is revoked",
                );
            }
            inner.refreshes += 1;
            axum::Json(issue(&mut inner)).into_response()
        }
        _ => error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "unknown grant",
        ),
    }
}

fn decode(text: &str) -> String {
    let bytes = text.replace('+', " ").into_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Ok(b) =
                u8::from_str_radix(std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or(""), 16)
        {
            out.push(b);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

async fn me(State(inner): State<Arc<Mutex<Inner>>>, headers: HeaderMap) -> Response {
    let token = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default()
        .to_string();
    let inner = inner.lock().unwrap();
    // Only the newest access token works: earlier ones were replaced by a refresh.
    if inner.access.last() != Some(&token) {
        return error(
            StatusCode::UNAUTHORIZED,
            "invalid_token",
            "unknown or replaced token",
        );
    }
    axum::Json(json!({"token": token})).into_response()
}
