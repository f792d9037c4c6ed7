//! OAuth2 sign-in of connections whose auth is `grant: authorization_code`: `POST
//! /api/connections/{name}/connect` (admin) starts it and answers the provider's sign-in URL; the
//! provider sends the person's browser back to `GET /oauth/callback`, where the hub checks `state`
//! (one use, ten minutes), trades the code for tokens with the PKCE verifier, and stores them in
//! the secret store through the connection's [`SignIn`].
//!
//! The redirect URI is `<public URL>/oauth/callback`: `WEFT_PUBLIC_URL` when set (the address
//! people and the provider reach the hub at, behind a proxy), otherwise the `Host` the request to
//! `connect` came with. The provider must know it (register it with the OAuth app).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest, Sha256};
use utoipa::ToSchema;
use weft_connectors::http::SignIn;

use crate::auth::Identity;
use crate::error::{ApiError, ErrorBody};
use crate::{Hub, audit};

/// How long a started sign-in may take.
const PENDING_FOR: Duration = Duration::from_secs(600);
/// Most sign-ins started and not finished at once (older ones are dropped first).
const MOST_PENDING: usize = 100;
/// The callback's path.
pub const CALLBACK: &str = "/oauth/callback";

/// Sign-ins started and not finished, by `state`.
#[derive(Default)]
pub struct Pending {
    started: std::sync::Mutex<HashMap<String, Started>>,
}

struct Started {
    connection: String,
    verifier: String,
    redirect_uri: String,
    actor: String,
    at: Instant,
}

impl Pending {
    fn add(&self, state: String, started: Started) {
        let mut map = self.started.lock().unwrap_or_else(|e| e.into_inner());
        map.retain(|_, s| s.at.elapsed() < PENDING_FOR);
        while map.len() >= MOST_PENDING {
            let oldest = map
                .iter()
                .min_by_key(|(_, s)| s.at)
                .map(|(k, _)| k.clone())
                .expect("the map is not empty");
            map.remove(&oldest);
        }
        map.insert(state, started);
    }

    /// The sign-in `state` belongs to, once: a second use finds nothing.
    fn take(&self, state: &str) -> Option<Started> {
        let mut map = self.started.lock().unwrap_or_else(|e| e.into_inner());
        map.remove(state).filter(|s| s.at.elapsed() < PENDING_FOR)
    }
}

fn random_text(bytes: usize) -> String {
    let data: Vec<u8> = (0..bytes).map(|_| rand::random::<u8>()).collect();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(data)
}

/// A PKCE verifier and its S256 challenge (RFC 7636).
fn pkce() -> (String, String) {
    let verifier = random_text(32);
    let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(Sha256::digest(verifier.as_bytes()));
    (verifier, challenge)
}

/// The sign-in of connection `name`, or why it has none.
fn sign_in_of(hub: &Hub, name: &str) -> Result<Arc<SignIn>, ApiError> {
    let project = hub.engine.project();
    if !project.connections.contains_key(name) {
        return Err(ApiError::not_found(format!(
            "the project has no connection named `{name}`"
        )));
    }
    hub.engine
        .connector(name)
        .and_then(|c| c.sign_in())
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::CONFLICT,
                "conflict",
                format!(
                    "`{name}` does not sign in: only connections with `auth: {{ type: oauth2, grant: authorization_code }}` do"
                ),
            )
        })
}

/// Where the provider sends the browser back.
fn redirect_uri(hub: &Hub, headers: &HeaderMap) -> Result<String, ApiError> {
    if let Ok(public) = std::env::var("WEFT_PUBLIC_URL") {
        return Ok(format!("{}{CALLBACK}", public.trim_end_matches('/')));
    }
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| !h.is_empty() && !h.contains(['/', ' ', '@']))
        .ok_or_else(|| {
            ApiError::bad_request(
                "the request has no usable Host header to make the redirect URI from; set WEFT_PUBLIC_URL",
            )
        })?;
    let scheme = if hub.serves_tls() { "https" } else { "http" };
    Ok(format!("{scheme}://{host}{CALLBACK}"))
}

/// A started sign-in: where to send the person.
#[derive(Serialize, ToSchema)]
pub struct Connect {
    /// The connection.
    pub connection: String,
    /// The provider's sign-in page, for this one sign-in; open it in a browser.
    pub authorize_url: String,
    /// Where the provider sends the browser back (it must be registered with the OAuth app).
    pub redirect_uri: String,
    /// Seconds the sign-in may take.
    pub expires_in: u64,
}

/// Starts the OAuth2 sign-in of a connection (authorization code with PKCE). The answer's
/// `authorize_url` is opened in a browser; the provider then sends it to `/oauth/callback`, and the
/// connection's tokens are stored.
#[utoipa::path(post, path = "/connections/{name}/connect", tag = "connections",
    params(("name" = String, Path, description = "The connection's name")),
    responses(
        (status = 200, description = "The sign-in page", body = Connect),
        (status = 404, description = "No such connection", body = ErrorBody),
        (status = 409, description = "The connection does not sign in", body = ErrorBody)))]
pub async fn connect(
    State(hub): State<Arc<Hub>>,
    who: Option<axum::Extension<Identity>>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Result<axum::Json<Connect>, ApiError> {
    let sign_in = sign_in_of(&hub, &name)?;
    let redirect_uri = redirect_uri(&hub, &headers)?;
    let state = random_text(24);
    let (verifier, challenge) = pkce();
    let authorize_url = sign_in.authorize_url(&redirect_uri, &state, &challenge);
    let actor = audit::actor(who.as_deref());
    hub.oauth.add(
        state,
        Started {
            connection: name.clone(),
            verifier,
            redirect_uri: redirect_uri.clone(),
            actor: actor.clone(),
            at: Instant::now(),
        },
    );
    audit::record(
        hub.engine.store().as_ref(),
        &actor,
        "connection.connect.start",
        &name,
        json!({"redirect_uri": redirect_uri}),
    )
    .await;
    Ok(axum::Json(Connect {
        connection: name,
        authorize_url,
        redirect_uri,
        expires_in: PENDING_FOR.as_secs(),
    }))
}

/// What the provider sends back.
#[derive(Deserialize)]
pub struct Callback {
    state: Option<String>,
    code: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

/// A small page for the person who signed in: no script, nothing loaded from elsewhere.
fn page(status: StatusCode, title: &str, text: &str) -> Response {
    let escape = |s: &str| {
        s.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('"', "&quot;")
    };
    let body = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width\"><title>{t} · Weft</title><style>body{{font:16px/1.5 system-ui,sans-serif;max-width:36rem;margin:4rem auto;padding:0 1rem;color:#1f2933}}h1{{font-size:1.4rem}}</style></head><body><h1>{t}</h1><p>{x}</p></body></html>",
        t = escape(title),
        x = escape(text)
    );
    (
        status,
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; style-src 'unsafe-inline'",
            ),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body,
    )
        .into_response()
}

/// The provider's redirect after a sign-in: checks `state`, trades the code for tokens and stores
/// them. Open (the browser comes from the provider without a token); `state` is the proof.
pub async fn callback(State(hub): State<Arc<Hub>>, Query(q): Query<Callback>) -> Response {
    let Some(started) = q.state.as_deref().and_then(|s| hub.oauth.take(s)) else {
        return page(
            StatusCode::BAD_REQUEST,
            "Sign-in not recognised",
            "This sign-in is unknown, was used already, or took longer than ten minutes. Start it again with Connect in the console or `weft connections connect`.",
        );
    };
    let store = hub.engine.store();
    let name = started.connection.clone();
    if let Some(error) = &q.error {
        let said = match &q.error_description {
            Some(d) => format!("{error}: {d}"),
            None => error.clone(),
        };
        audit::record(
            store.as_ref(),
            &started.actor,
            "connection.connect",
            &name,
            json!({"ok": false, "error": said}),
        )
        .await;
        return page(
            StatusCode::BAD_REQUEST,
            "Not connected",
            &format!("The provider did not grant access to “{name}” ({said})."),
        );
    }
    let Some(code) = q.code.as_deref().filter(|c| !c.is_empty()) else {
        return page(
            StatusCode::BAD_REQUEST,
            "Not connected",
            "The provider sent no authorization code.",
        );
    };
    let sign_in = match sign_in_of(&hub, &name) {
        Ok(s) => s,
        Err(e) => {
            return page(
                StatusCode::CONFLICT,
                "Not connected",
                &format!("The connection changed while signing in: {}", e.message),
            );
        }
    };
    let outcome = sign_in
        .exchange(code, &started.verifier, &started.redirect_uri)
        .await;
    let mut said = serde_json::Value::String(match &outcome {
        Ok(()) => String::new(),
        Err(e) => e.to_string(),
    });
    hub.engine.scrubber().json(&mut said);
    let said = said.as_str().unwrap_or_default().to_string();
    audit::record(
        store.as_ref(),
        &started.actor,
        "connection.connect",
        &name,
        json!({"ok": outcome.is_ok(), "error": (!said.is_empty()).then_some(&said)}),
    )
    .await;
    match outcome {
        Ok(()) => page(
            StatusCode::OK,
            "Connected",
            &format!(
                "“{name}” is connected; Weft keeps its tokens in the project's secret store and refreshes them. You can close this page."
            ),
        ),
        Err(_) => page(
            StatusCode::BAD_GATEWAY,
            "Not connected",
            &format!("“{name}” could not be connected: {said}"),
        ),
    }
}
