//! API tokens: how they are made, and the check in front of every route but `/healthz`, `/readyz`
//! and the webhooks (which prove themselves with signatures).
//!
//! A token is a random secret shown once; the store keeps only its SHA-256 ([`TokenRecord`]). A
//! request carries it as `Authorization: Bearer <secret>`. Missing, unknown, expired and revoked
//! tokens all get the same 401, and the check runs before routing, so neither a 401 nor a 403 says
//! whether what was asked for exists. What a route needs ([`access_for`]) is granted by the
//! token's role ([`weft_core::auth::Role`]); a `tool` token may further call only its listed tools,
//! which the tool routes check per call through the [`Identity`] left on the request.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use weft_core::auth::{Access, Role};
use weft_store::{Millis, Store, StoreError, TokenRecord};

use crate::Hub;
use crate::error::ApiError;

/// Shortest secret accepted from `WEFT_ADMIN_TOKEN`.
pub const MIN_SECRET_LEN: usize = 16;

/// The name of the admin token that `WEFT_ADMIN_TOKEN` holds.
const FROM_ENV: &str = "WEFT_ADMIN_TOKEN";

/// Who a request comes from: the token that authenticated it.
#[derive(Clone, Debug, PartialEq)]
pub struct Identity {
    /// The token's public id.
    pub token_id: String,
    /// Its role.
    pub role: Role,
    /// For the `tool` role: the tools it may call.
    pub tools: Option<Vec<String>>,
    /// When the request came with a console session's cookie: the session's id (`token_id` is
    /// then the token it was signed in with).
    pub session: Option<String>,
}

impl Identity {
    /// Whether this token may call tool `name` (`run_result` is open to every token that may call
    /// tools; it answers only about runs of tools the token may call).
    pub fn may_call(&self, name: &str) -> bool {
        match self.role {
            Role::Tool => {
                name == "run_result"
                    || self
                        .tools
                        .as_ref()
                        .is_some_and(|t| t.iter().any(|n| n == name))
            }
            role => role.allows(Access::Tools),
        }
    }
}

/// The SHA-256 of a secret, in hex: what the store keeps.
pub fn hash(secret: &str) -> String {
    hash_bytes(secret.as_bytes())
}

/// The SHA-256 of some bytes, in hex.
pub fn hash_bytes(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn random_hex(bytes: usize) -> String {
    (0..bytes)
        .map(|_| format!("{:02x}", rand::random::<u8>()))
        .collect()
}

/// A new token: its secret (to show once) and its record (to store). With `secret`, that secret is
/// used instead of a random one (`WEFT_ADMIN_TOKEN`).
pub fn new_token(
    role: Role,
    tools: Option<Vec<String>>,
    name: Option<String>,
    expires_at: Option<Millis>,
    secret: Option<String>,
    now: Millis,
) -> (String, TokenRecord) {
    let secret = secret.unwrap_or_else(|| format!("weft_{}", random_hex(24)));
    let record = TokenRecord {
        id: format!("tok_{}", random_hex(6)),
        hash: hash(&secret),
        role,
        tools,
        name,
        created_at: now,
        expires_at,
        revoked_at: None,
        parent: None,
    };
    (secret, record)
}

/// Whether a secret someone chose is too regular to be one: fewer than 8 different characters,
/// or less than 48 bits by the frequencies of its characters (`aaaa…`, `abab…`, `12341234…`).
pub fn guessable(secret: &str) -> bool {
    let mut counts = std::collections::HashMap::new();
    for c in secret.chars() {
        *counts.entry(c).or_insert(0u32) += 1;
    }
    let n = secret.chars().count() as f64;
    let bits: f64 = counts
        .values()
        .map(|&k| {
            let p = f64::from(k) / n;
            -p * p.log2()
        })
        .sum::<f64>()
        * n;
    counts.len() < 8 || bits < 48.0
}

/// How long a one-time sign-in link works: an hour.
pub const SIGN_IN_LINK_LIFETIME: Millis = 60 * 60 * 1000;

/// The id prefix of one-time sign-in links.
const LINK_PREFIX: &str = "lnk_";

/// What a hub's first start made, to be shown once.
#[derive(Debug)]
pub struct FirstStart {
    /// The admin token's secret.
    pub token: String,
    /// The secret of a one-time sign-in link for the console, on behalf of that token.
    pub link: String,
}

/// Makes a one-time sign-in link on behalf of token `parent`: a record that only
/// `POST /api/session` accepts, once, within [`SIGN_IN_LINK_LIFETIME`]; the session it opens
/// belongs to `parent` (revoking `parent` revokes the link). Returns the link's secret.
pub async fn new_sign_in_link(
    store: &dyn Store,
    parent: &TokenRecord,
    now: Millis,
) -> Result<String, StoreError> {
    let (secret, mut link) = new_token(
        parent.role,
        None,
        Some("one-time sign-in link".into()),
        Some(now + SIGN_IN_LINK_LIFETIME),
        None,
        now,
    );
    link.id = link.id.replacen("tok_", LINK_PREFIX, 1);
    link.parent = Some(parent.id.clone());
    store.create_token(&link).await?;
    Ok(secret)
}

/// Whether a record is a one-time sign-in link (which is neither a bearer token nor a session).
pub fn is_sign_in_link(token: &TokenRecord) -> bool {
    token.id.starts_with(LINK_PREFIX) && token.parent.is_some()
}

/// Makes sure the hub can be reached. With `WEFT_ADMIN_TOKEN` set, its secret is an admin token
/// (a different secret than before replaces the earlier one, which is revoked). Without it, a hub
/// that never had a token gets a new admin token and a one-time sign-in link for the console,
/// whose secrets are returned to be shown once. A chosen secret that is [`guessable`] is refused.
pub async fn bootstrap(
    store: &dyn Store,
    from_env: Option<String>,
    now: Millis,
) -> Result<Option<FirstStart>, String> {
    if let Some(secret) = &from_env {
        if secret.len() < MIN_SECRET_LEN {
            return Err(format!(
                "WEFT_ADMIN_TOKEN must be at least {MIN_SECRET_LEN} characters long"
            ));
        }
        if guessable(secret) {
            return Err(
                "WEFT_ADMIN_TOKEN is too easy to guess: it is made of few different characters or repeats itself; use a random one, such as the output of `openssl rand -hex 24`".into(),
            );
        }
    }
    let tokens = store.list_tokens().await.map_err(|e| e.to_string())?;
    if let Some(secret) = &from_env {
        // A known secret stays as it is (revoked stays revoked).
        if tokens.iter().any(|t| t.hash == hash(secret)) {
            return Ok(None);
        }
        // A new secret replaces the one the variable held before.
        for old in tokens
            .iter()
            .filter(|t| t.name.as_deref() == Some(FROM_ENV) && t.is_live(now))
        {
            store
                .revoke_token(&old.id, now)
                .await
                .map_err(|e| e.to_string())?;
            let why = serde_json::json!({"reason": "WEFT_ADMIN_TOKEN changed"});
            crate::audit::record(store, "system", "token.revoke", &old.id, why).await;
        }
    } else if !tokens.is_empty() {
        // Only a hub that never had a token makes one: revoking them all stays revoked.
        return Ok(None);
    }
    let made_here = from_env.is_none();
    let (secret, record) = new_token(
        Role::Admin,
        None,
        Some(
            if made_here {
                "first start"
            } else {
                "WEFT_ADMIN_TOKEN"
            }
            .into(),
        ),
        None,
        from_env,
        now,
    );
    store
        .create_token(&record)
        .await
        .map_err(|e| e.to_string())?;
    let details = serde_json::json!({"role": "admin", "name": record.name});
    crate::audit::record(store, "system", "token.create", &record.id, details).await;
    if !made_here {
        return Ok(None);
    }
    let link = new_sign_in_link(store, &record, now)
        .await
        .map_err(|e| e.to_string())?;
    Ok(Some(FirstStart {
        token: secret,
        link,
    }))
}

/// What a request needs, or `None` for the open routes.
pub fn access_for(method: &Method, path: &str) -> Option<Access> {
    // The OAuth2 callback: the browser comes from the provider; the one-time `state` is the proof.
    if path == "/healthz"
        || path == "/readyz"
        || path.starts_with("/hooks/")
        || path == crate::oauth::CALLBACK
    {
        return None;
    }
    // The console's page and assets, and signing in to it.
    if crate::console::is_console_path(path)
        || (path == "/api/session" && (method == Method::POST || method == Method::GET))
    {
        return None;
    }
    // Every signed-in role may end its session.
    if path == "/api/session" {
        return Some(Access::Read);
    }
    // Signing a connection in replaces its credentials: the admin's, like secrets.
    if path == "/api/audit"
        || (path.starts_with("/api/connections/") && path.ends_with("/connect"))
        || path == "/api/secrets"
        || path.starts_with("/api/secrets/")
        || path == "/api/tokens"
        || path.starts_with("/api/tokens/")
    {
        return Some(Access::Admin);
    }
    if path == "/mcp" || path.starts_with("/mcp/") {
        return Some(Access::Tools);
    }
    if path == "/api/tools" || path.starts_with("/api/tools/") {
        // Listing is open to every role; calling needs the right to call tools.
        return Some(if method == Method::GET || method == Method::HEAD {
            Access::Read
        } else {
            Access::Tools
        });
    }
    if method == Method::GET || method == Method::HEAD || path == "/api/workflows/lint" {
        return Some(Access::Read);
    }
    // Changing workflows, running their tests and trying expressions are the editor's.
    if path == "/api/expressions/preview"
        || path == "/api/workflows/edit"
        || (path.starts_with("/api/workflows/")
            && (method == Method::PUT || path.ends_with("/tests")))
    {
        return Some(Access::Edit);
    }
    Some(Access::Operate)
}

/// The middleware: authenticates the request, checks its role against what the route needs, and
/// leaves the [`Identity`] on the request.
pub async fn check(State(hub): State<Arc<Hub>>, mut req: Request, next: Next) -> Response {
    let Some(access) = access_for(req.method(), req.uri().path()) else {
        return next.run(req).await;
    };
    let api = req.uri().path().starts_with("/api/");
    let identity = match identify(hub.engine.store().as_ref(), req.headers(), api).await {
        Ok(identity) => identity,
        Err(response) => return response,
    };
    // A session's changes need its CSRF token: a page of another site can send the cookie (where
    // SameSite does not hold) but cannot read or set the header.
    let safe = matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    if identity.session.is_some()
        && !safe
        && !crate::session::cookie_secret(req.headers())
            .is_some_and(|secret| crate::session::csrf_ok(req.headers(), secret))
    {
        return ApiError::new(
            StatusCode::FORBIDDEN,
            "csrf",
            "a console request that changes something needs the session's X-Weft-CSRF header and the hub's own Origin",
        )
        .into_response();
    }
    // A tool token may read the list of its tools, and nothing else.
    let tool_listing = access == Access::Read && req.uri().path().starts_with("/api/tools");
    let allowed = identity.role.allows(access) || (tool_listing && identity.role == Role::Tool);
    if !allowed {
        return ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!("a `{}` token may not {access}", identity.role),
        )
        .into_response();
    }
    let per_minute = hub
        .engine
        .project()
        .settings
        .limits
        .token_requests_per_minute;
    if let Err(wait) = hub
        .throttle
        .take(&format!("token:{}", identity.token_id), per_minute)
    {
        return crate::throttle::too_many("this token", per_minute, wait);
    }
    req.extensions_mut().insert(identity);
    next.run(req).await
}

/// Who the request comes from: its bearer token, or for `/api` requests without one (`cookies`), the
/// console session its cookie names.
async fn identify(
    store: &dyn Store,
    headers: &HeaderMap,
    cookies: bool,
) -> Result<Identity, Response> {
    let unauthorized = |message: &str| {
        let mut response =
            ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message).into_response();
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, "Bearer".parse().expect("valid"));
        response
    };
    let secret = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
        .filter(|s| !s.is_empty());
    let cookie = if cookies && secret.is_none() {
        crate::session::cookie_secret(headers)
    } else {
        None
    };
    let Some(secret) = secret.or(cookie) else {
        return Err(unauthorized(
            "this request needs an API token: `Authorization: Bearer <token>` (weft tokens create)",
        ));
    };
    let token = match store.token_by_hash(&hash(secret)).await {
        Ok(token) => token,
        Err(e) => return Err(ApiError::from(e).into_response()),
    };
    match token {
        // A session's secret works only as the cookie, a token's only as a bearer token, and a
        // sign-in link's only to sign in.
        Some(t)
            if t.is_live(weft_store::now_millis())
                && t.parent.is_some() == cookie.is_some()
                && !is_sign_in_link(&t) =>
        {
            Ok(match t.parent {
                Some(parent) => Identity {
                    token_id: parent,
                    role: t.role,
                    tools: t.tools,
                    session: Some(t.id),
                },
                None => Identity {
                    token_id: t.id,
                    role: t.role,
                    tools: t.tools,
                    session: None,
                },
            })
        }
        _ if cookie.is_some() => Err(unauthorized("the console session has ended: sign in again")),
        _ => Err(unauthorized(
            "the API token is not valid: unknown, expired or revoked",
        )),
    }
}

/// Revokes token `id`; an unknown id is [`StoreError::NotFound`].
pub async fn revoke(store: &dyn Store, id: &str, now: Millis) -> Result<bool, StoreError> {
    if !store.list_tokens().await?.iter().any(|t| t.id == id) {
        return Err(StoreError::NotFound(id.to_string()));
    }
    store.revoke_token(id, now).await
}

#[cfg(test)]
mod tests {
    #[test]
    fn chosen_admin_tokens_must_not_be_guessable() {
        for weak in [
            "aaaaaaaaaaaaaaaaaaaaaaaa",
            "abababababababababababab",
            "1234123412341234123412341234",
            "passwordpasswordpassword",
        ] {
            assert!(super::guessable(weak), "{weak}");
        }
        for fine in [
            "local-admin-token-123",
            "e2e-admin-token-0123456789",
            "3f9a1c07be52d846",
            "weft_8HqZ2nV4kP9sLr3TyXw6Bc1Dm5Gf7Jh0",
        ] {
            assert!(!super::guessable(fine), "{fine}");
        }
    }

    use super::*;

    #[test]
    fn routes_need_what_their_method_and_path_say() {
        let get = Method::GET;
        let post = Method::POST;
        assert_eq!(access_for(&get, "/healthz"), None);
        assert_eq!(access_for(&get, "/readyz"), None);
        assert_eq!(access_for(&post, "/hooks/shop/orders"), None);
        assert_eq!(access_for(&get, "/hooksx"), Some(Access::Read));
        assert_eq!(access_for(&get, "/metrics"), Some(Access::Read));
        assert_eq!(access_for(&get, "/api/runs"), Some(Access::Read));
        assert_eq!(access_for(&get, "/api/audit"), Some(Access::Admin));
        assert_eq!(access_for(&get, "/api/secrets"), Some(Access::Admin));
        assert_eq!(access_for(&get, "/api/tokens"), Some(Access::Admin));
        assert_eq!(
            access_for(&Method::DELETE, "/api/tokens/tok_1"),
            Some(Access::Admin)
        );
        assert_eq!(access_for(&get, "/"), None);
        assert_eq!(access_for(&get, "/assets/app.js"), None);
        assert_eq!(access_for(&post, "/api/session"), None);
        assert_eq!(access_for(&get, "/api/session"), None);
        assert_eq!(
            access_for(&Method::DELETE, "/api/session"),
            Some(Access::Read)
        );
        assert_eq!(
            access_for(&Method::PUT, "/api/secrets/shop"),
            Some(Access::Admin)
        );
        assert_eq!(access_for(&post, "/api/workflows/lint"), Some(Access::Read));
        assert_eq!(
            access_for(&Method::PUT, "/api/workflows/order"),
            Some(Access::Edit)
        );
        assert_eq!(
            access_for(&post, "/api/workflows/order/tests"),
            Some(Access::Edit)
        );
        assert_eq!(
            access_for(&post, "/api/expressions/preview"),
            Some(Access::Edit)
        );
        assert_eq!(
            access_for(&post, "/api/workflows/order/runs"),
            Some(Access::Operate)
        );
        assert_eq!(
            access_for(&post, "/api/runs/x/retry"),
            Some(Access::Operate)
        );
        assert_eq!(access_for(&post, "/api/approvals/x"), Some(Access::Operate));
        assert_eq!(access_for(&get, "/api/tools"), Some(Access::Read));
        assert_eq!(access_for(&post, "/api/tools/refund"), Some(Access::Tools));
        assert_eq!(access_for(&post, "/mcp"), Some(Access::Tools));
        assert_eq!(access_for(&get, "/mcp"), Some(Access::Tools));
        assert_eq!(access_for(&get, "/nothing-here"), Some(Access::Read));
    }

    #[test]
    fn a_tool_token_calls_only_its_tools() {
        let tool = Identity {
            token_id: "t".into(),
            role: Role::Tool,
            tools: Some(vec!["order_status".into()]),
            session: None,
        };
        assert!(tool.may_call("order_status"));
        assert!(tool.may_call("run_result"));
        assert!(!tool.may_call("refund"));
        assert!(!tool.may_call("kb_search"));
        let viewer = Identity {
            role: Role::Viewer,
            tools: None,
            ..tool.clone()
        };
        assert!(!viewer.may_call("order_status"));
        let operator = Identity {
            role: Role::Operator,
            tools: None,
            ..tool
        };
        assert!(operator.may_call("refund"));
    }

    #[test]
    fn secrets_are_random_and_stored_as_hashes() {
        let (a, ra) = new_token(Role::Admin, None, None, None, None, 1);
        let (b, rb) = new_token(Role::Admin, None, None, None, None, 1);
        assert_ne!(a, b);
        assert_ne!(ra.id, rb.id);
        assert!(a.starts_with("weft_") && a.len() == 53, "{a}");
        assert_eq!(ra.hash, hash(&a));
        assert!(!ra.hash.contains(&a));
        let (given, rg) = new_token(
            Role::Admin,
            None,
            None,
            None,
            Some("s3cret-s3cret-s3cret".into()),
            1,
        );
        assert_eq!(given, "s3cret-s3cret-s3cret");
        assert_eq!(rg.hash, hash(&given));
    }
}
