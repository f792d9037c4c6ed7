//! Console sessions: an API token exchanged for a cookie, so that a browser never holds the token.
//!
//! `POST /api/session {token}` checks the token, stores a session (a token record of its own,
//! `ses_…`, with the token as its `parent`, the same role, and an expiry of
//! `console.session_lifetime`, never past the token's), and answers with a `weft_session` cookie
//! that is `HttpOnly`, `SameSite=Strict`, `Path=/` and, over HTTPS, `Secure`. Revoking the token
//! ends its sessions; `DELETE /api/session` ends one.
//!
//! The cookie authenticates `/api` requests only ([`crate::auth`] reads it when a request has no
//! `Authorization` header). A request that changes something must also carry the session's CSRF
//! token in `X-Weft-CSRF` ([`csrf_token`], derived from the cookie's secret, so nothing more is
//! stored) and, when it has an `Origin`, come from the hub's own origin: a form on another site can
//! set neither. Sign-ins, failed sign-ins and sign-outs go to the audit log; failed sign-ins are
//! limited per client address (`console.sign_in_attempts_per_minute`).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest, Sha256};
use utoipa::ToSchema;
use weft_core::auth::Role;
use weft_store::{Millis, TokenRecord, now_millis};

use crate::auth::{self, Identity};
use crate::error::{ApiError, ErrorBody};
use crate::http::Via;
use crate::{Hub, audit};

/// The cookie that carries a session's secret.
pub const COOKIE: &str = "weft_session";

/// The header that carries a session's CSRF token.
pub const CSRF_HEADER: &str = "x-weft-csrf";

/// A sign-in.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignIn {
    /// An API token's secret (`weft tokens create`, or the one `weft serve` printed on its first
    /// start). A `tool` token cannot sign in.
    pub token: String,
}

/// The signed-in session.
#[derive(Serialize, ToSchema)]
pub struct SessionInfo {
    /// The token the session was signed in with: the actor of what the session does.
    pub token_id: String,
    /// The session's own id.
    pub session_id: String,
    /// What the session may do: the token's role.
    pub role: String,
    /// The token's name.
    pub name: Option<String>,
    /// What requests that change something carry in `X-Weft-CSRF`.
    pub csrf: String,
    /// When the session ends (RFC 3339).
    pub expires_at: String,
}

/// The CSRF token of the session whose cookie holds `secret`.
pub fn csrf_token(secret: &str) -> String {
    auth::hash(&format!("weft-csrf:{secret}"))
}

/// The session secret in a request's `Cookie` header.
pub fn cookie_secret(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.trim())
        .filter(|v| !v.is_empty())
}

fn set_cookie(secret: &str, max_age: u64, secure: bool) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{COOKIE}={secret}; Path=/; Max-Age={max_age}; HttpOnly; SameSite=Strict{secure}"
    ))
    .expect("a cookie of hex digits and fixed text is a valid header value")
}

fn rfc3339(at: Millis) -> String {
    jiff::Timestamp::from_millisecond(at)
        .map(|t| t.to_string())
        .unwrap_or_default()
}

fn info(session: &TokenRecord, parent_id: &str, secret: &str) -> SessionInfo {
    SessionInfo {
        token_id: parent_id.to_string(),
        session_id: session.id.clone(),
        role: session.role.as_str().to_string(),
        name: session.name.clone(),
        csrf: csrf_token(secret),
        expires_at: session.expires_at.map(rfc3339).unwrap_or_default(),
    }
}

/// Signs in: exchanges an API token for a session cookie.
#[utoipa::path(post, path = "/session", tag = "console",
    request_body(content = SignIn, description = "The API token to sign in with"),
    responses(
        (status = 200, description = "Signed in; the answer sets the `weft_session` cookie", body = SessionInfo),
        (status = 400, description = "The body is not a sign-in", body = ErrorBody),
        (status = 401, description = "The token is unknown, expired or revoked, or may not sign in", body = ErrorBody),
        (status = 429, description = "Too many failed sign-ins from this address", body = ErrorBody)))]
pub async fn sign_in(
    State(hub): State<Arc<Hub>>,
    via: Option<axum::Extension<Via>>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let store = hub.engine.store();
    let settings = hub.engine.project().settings.console.clone();
    let address = via.map_or_else(|| "unknown".to_string(), |v| v.peer.ip().to_string());
    let per_minute = settings.sign_in_attempts_per_minute;
    let request: SignIn = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_request(format!(
            "the body must be `{{\"token\": \"<API token>\"}}`: {e}"
        ))
    })?;
    // Once an address has spent its budget of failed sign-ins, no token is even looked at.
    let bucket = format!("sign-in:{address}");
    if let Some(wait) = hub.sign_ins.empty(&bucket) {
        return Ok(crate::throttle::too_many(
            "failed sign-ins from this address",
            per_minute,
            wait,
        ));
    }
    let now = now_millis();
    let token = store
        .token_by_hash(&auth::hash(request.token.trim()))
        .await?;
    let refusal = match &token {
        Some(t) if !t.is_live(now) => Some("the token is expired or revoked"),
        Some(t) if auth::is_sign_in_link(t) => None,
        Some(t) if t.parent.is_some() => Some("a session cannot sign in again"),
        Some(t) if t.role == Role::Tool => Some("a `tool` token may only call tools"),
        Some(_) => None,
        None => Some("no such token"),
    };
    // A one-time link is spent before its session exists: of two requests with one link, the
    // second finds it revoked.
    let link = match &token {
        Some(t) if refusal.is_none() && auth::is_sign_in_link(t) => {
            if store.revoke_token(&t.id, now).await? {
                Some(t.id.clone())
            } else {
                None
            }
        }
        _ => None,
    };
    let refusal = match &token {
        Some(t) if refusal.is_none() && auth::is_sign_in_link(t) && link.is_none() => {
            Some("the sign-in link was used already")
        }
        _ => refusal,
    };
    let token = match token {
        Some(token) if refusal.is_none() => token,
        token => {
            let details = json!({"reason": refusal, "address": address});
            let target = token.map_or_else(String::new, |t| t.id);
            audit::record(
                store.as_ref(),
                "anonymous",
                "session.sign_in_failed",
                &target,
                details,
            )
            .await;
            let _ = hub.sign_ins.take_minute(&bucket, per_minute);
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "the API token is not valid for the console: unknown, expired or revoked (a sign-in link works once), or a `tool` token",
            ));
        }
    };
    // A link's session belongs to the token the link was made for (revoking that token revoked
    // the link too, so it is live).
    let token = match &link {
        Some(_) => {
            let parent = token.parent.as_deref().unwrap_or_default();
            store
                .list_tokens()
                .await?
                .into_iter()
                .find(|t| t.id == parent && t.is_live(now))
                .ok_or_else(|| {
                    ApiError::new(
                        StatusCode::UNAUTHORIZED,
                        "unauthorized",
                        "the token this sign-in link was made for is revoked",
                    )
                })?
        }
        None => token,
    };
    let lifetime = settings.session_lifetime.as_millis() as Millis;
    let expires_at = token
        .expires_at
        .map_or(now + lifetime, |t| t.min(now + lifetime));
    let (secret, mut session) = auth::new_token(
        token.role,
        None,
        token.name.clone(),
        Some(expires_at),
        None,
        now,
    );
    let owner = token.id.clone();
    session.id = session.id.replacen("tok_", "ses_", 1);
    session.parent = Some(owner.clone());
    store.create_token(&session).await?;
    let mut details =
        json!({"session": session.id, "role": token.role.as_str(), "address": address});
    if let Some(link) = &link {
        details["link"] = json!(link);
    }
    audit::record(
        store.as_ref(),
        &owner,
        "session.sign_in",
        &session.id,
        details,
    )
    .await;
    let secure = via.is_some_and(|v| v.tls);
    let max_age = (expires_at - now).max(0) as u64 / 1000;
    let mut response = axum::Json(info(&session, &owner, &secret)).into_response();
    response
        .headers_mut()
        .insert(header::SET_COOKIE, set_cookie(&secret, max_age, secure));
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

/// The session the request's cookie names, if it is live (no content when there is none, so that
/// the console's first question is not an error).
#[utoipa::path(get, path = "/session", tag = "console",
    responses(
        (status = 200, description = "The session", body = SessionInfo),
        (status = 204, description = "Not signed in: no cookie, or its session has ended")))]
pub async fn show_session(
    State(hub): State<Arc<Hub>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let Some(secret) = cookie_secret(&headers) else {
        return Ok(StatusCode::NO_CONTENT.into_response());
    };
    let session = hub
        .engine
        .store()
        .token_by_hash(&auth::hash(secret))
        .await?
        .filter(|s| s.is_live(now_millis()));
    let Some((session, parent)) = session.and_then(|s| s.parent.clone().map(|parent| (s, parent)))
    else {
        return Ok(StatusCode::NO_CONTENT.into_response());
    };
    let mut response = axum::Json(info(&session, &parent, secret)).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

/// Signs out: ends the session and clears its cookie.
#[utoipa::path(delete, path = "/session", tag = "console",
    responses(
        (status = 204, description = "Signed out"),
        (status = 401, description = "Not signed in", body = ErrorBody)))]
pub async fn sign_out(
    State(hub): State<Arc<Hub>>,
    who: Option<axum::Extension<Identity>>,
    via: Option<axum::Extension<Via>>,
) -> Result<Response, ApiError> {
    let Some(who) = who else {
        return Err(not_a_session());
    };
    let Some(session_id) = who.session.clone() else {
        return Err(not_a_session());
    };
    let store = hub.engine.store();
    store.revoke_token(&session_id, now_millis()).await?;
    audit::record(
        store.as_ref(),
        &who.token_id,
        "session.sign_out",
        &session_id,
        json!({}),
    )
    .await;
    let secure = via.is_some_and(|v| v.tls);
    let mut response = StatusCode::NO_CONTENT.into_response();
    response
        .headers_mut()
        .insert(header::SET_COOKIE, set_cookie("", 0, secure));
    Ok(response)
}

fn not_a_session() -> ApiError {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        "not signed in to the console: POST /api/session with an API token",
    )
}

/// Whether a cookie-authenticated request that changes something may go on: it carries the
/// session's CSRF token and, if it says where it comes from, comes from the hub's own origin.
pub fn csrf_ok(headers: &HeaderMap, secret: &str) -> bool {
    let token_ok = headers
        .get(CSRF_HEADER)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| constant_time_eq(v.as_bytes(), csrf_token(secret).as_bytes()));
    let origin_ok = match headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) {
        None => true,
        Some(origin) => {
            let host = headers
                .get(header::HOST)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            origin
                .split_once("://")
                .is_some_and(|(_, rest)| rest.eq_ignore_ascii_case(host))
        }
    };
    token_ok && origin_ok
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    // Compare digests, so that neither length nor content shows in the time taken.
    Sha256::digest(a) == Sha256::digest(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    #[test]
    fn the_cookie_is_found_among_others() {
        let h = headers(&[("cookie", "a=1; weft_session=abc ; b=2")]);
        assert_eq!(cookie_secret(&h), Some("abc"));
        let h = headers(&[("cookie", "a=1"), ("cookie", "weft_session=def")]);
        assert_eq!(cookie_secret(&h), Some("def"));
        assert_eq!(
            cookie_secret(&headers(&[("cookie", "weft_sessionx=1")])),
            None
        );
        assert_eq!(
            cookie_secret(&headers(&[("cookie", "weft_session=")])),
            None
        );
    }

    #[test]
    fn a_change_needs_the_csrf_token_and_the_hubs_own_origin() {
        let csrf = csrf_token("s3cret");
        let host = ("host", "127.0.0.1:7807");
        assert!(csrf_ok(&headers(&[host, ("x-weft-csrf", &csrf)]), "s3cret"));
        assert!(csrf_ok(
            &headers(&[
                host,
                ("x-weft-csrf", &csrf),
                ("origin", "http://127.0.0.1:7807")
            ]),
            "s3cret"
        ));
        assert!(!csrf_ok(&headers(&[host]), "s3cret"), "no token");
        assert!(
            !csrf_ok(&headers(&[host, ("x-weft-csrf", "nope")]), "s3cret"),
            "wrong token"
        );
        assert!(
            !csrf_ok(&headers(&[host, ("x-weft-csrf", &csrf)]), "other"),
            "another session's token"
        );
        assert!(
            !csrf_ok(
                &headers(&[
                    host,
                    ("x-weft-csrf", &csrf),
                    ("origin", "http://evil.example")
                ]),
                "s3cret"
            ),
            "another origin"
        );
    }

    #[test]
    fn cookies_are_http_only_strict_and_secure_over_https() {
        let plain = set_cookie("abc", 60, false);
        assert_eq!(
            plain.to_str().unwrap(),
            "weft_session=abc; Path=/; Max-Age=60; HttpOnly; SameSite=Strict"
        );
        assert!(
            set_cookie("abc", 60, true)
                .to_str()
                .unwrap()
                .ends_with("; Secure")
        );
    }
}
