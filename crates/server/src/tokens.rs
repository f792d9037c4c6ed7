//! `/api/tokens` (admin): API tokens over HTTP, as `weft tokens` manages them on the hub's
//! machine. A new token's secret is in the answer that creates it and nowhere else; the list never
//! shows secrets, and leaves out console sessions (they end with their token).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;
use weft_core::Project;
use weft_core::auth::Role;
use weft_store::{Millis, TokenRecord, now_millis};

use crate::auth::{self, Identity};
use crate::error::{ApiError, ErrorBody};
use crate::{Hub, audit};

/// What a token of `role` may call: for a `tool` token, the names given, each a tool of `project`;
/// for the other roles, nothing may be given (their role decides).
pub fn tools_for(
    role: Role,
    tools: Option<Vec<String>>,
    project: &Project,
) -> Result<Option<Vec<String>>, String> {
    match (role, tools) {
        (Role::Tool, None) => Err(
            "a `tool` token needs the tools it may call, such as order_status,kb_search (`--tools` in the command line, `tools` in the API)"
                .into(),
        ),
        (Role::Tool, Some(names)) => {
            let names: Vec<String> = names
                .into_iter()
                .map(|t| t.trim().to_string())
                .filter(|t| !t.is_empty())
                .collect();
            let known = weft_core::tool::definitions(project, project.has_kb);
            if let Some(unknown) = names.iter().find(|n| !known.iter().any(|d| &d.name == *n)) {
                let all: Vec<&str> = known.iter().map(|d| d.name.as_str()).collect();
                return Err(format!(
                    "the project has no tool `{unknown}`; its tools are: {}",
                    all.join(", ")
                ));
            }
            if names.is_empty() {
                return Err("a `tool` token needs at least one tool".into());
            }
            Ok(Some(names))
        }
        (role, Some(_)) => Err(format!(
            "tools apply to `tool` tokens only; a `{role}` token's role decides what it may do"
        )),
        (_, None) => Ok(None),
    }
}

/// A token as listed: never its secret.
#[derive(Serialize, ToSchema)]
pub struct TokenView {
    /// Its id (`tok_…`).
    pub id: String,
    /// `admin`, `editor`, `operator`, `viewer` or `tool`.
    pub role: String,
    /// For `tool` tokens: the tools it may call.
    pub tools: Option<Vec<String>>,
    /// Its label.
    pub name: Option<String>,
    /// When it was made (RFC 3339).
    pub created_at: String,
    /// When it stops working (RFC 3339), if ever.
    pub expires_at: Option<String>,
    /// When it was revoked (RFC 3339), if it was.
    pub revoked_at: Option<String>,
    /// Whether it works now.
    pub live: bool,
}

/// The tokens, oldest first.
#[derive(Serialize, ToSchema)]
pub struct TokenList {
    /// Every token (console sessions left out).
    pub tokens: Vec<TokenView>,
}

/// A token to make.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewToken {
    /// `admin`, `editor`, `operator`, `viewer` or `tool`.
    pub role: String,
    /// For `tool` tokens: the tools it may call.
    pub tools: Option<Vec<String>>,
    /// A label, such as the person or bot it is for.
    pub name: Option<String>,
    /// How long it works, such as `30d` (default: until revoked).
    pub expires: Option<String>,
}

/// A token just made, with its secret: shown this once.
#[derive(Serialize, ToSchema)]
pub struct CreatedToken {
    /// The token as listed.
    #[serde(flatten)]
    pub token: TokenView,
    /// Its secret, for `Authorization: Bearer <token>` or the console's sign-in. Not stored.
    pub token_secret: String,
}

fn time(at: Millis) -> String {
    jiff::Timestamp::from_millisecond(at)
        .map(|t| t.to_string())
        .unwrap_or_default()
}

fn view(t: &TokenRecord, now: Millis) -> TokenView {
    TokenView {
        id: t.id.clone(),
        role: t.role.as_str().to_string(),
        tools: t.tools.clone(),
        name: t.name.clone(),
        created_at: time(t.created_at),
        expires_at: t.expires_at.map(time),
        revoked_at: t.revoked_at.map(time),
        live: t.is_live(now),
    }
}

/// Lists the API tokens, never their secrets. Admin tokens only.
#[utoipa::path(get, path = "/tokens", tag = "tokens",
    responses((status = 200, description = "The tokens", body = TokenList)))]
pub async fn list_tokens(State(hub): State<Arc<Hub>>) -> Result<axum::Json<TokenList>, ApiError> {
    let now = now_millis();
    let tokens = hub.engine.store().list_tokens().await?;
    Ok(axum::Json(TokenList {
        tokens: tokens
            .iter()
            .filter(|t| t.parent.is_none())
            .map(|t| view(t, now))
            .collect(),
    }))
}

/// Makes a token; the answer is the only place its secret is ever shown. Admin tokens only.
#[utoipa::path(post, path = "/tokens", tag = "tokens",
    request_body(content = NewToken, description = "Its role, tools, label and lifetime"),
    responses(
        (status = 201, description = "The token, with its secret", body = CreatedToken),
        (status = 400, description = "Not a valid token request", body = ErrorBody)))]
pub async fn create_token(
    State(hub): State<Arc<Hub>>,
    who: Option<axum::Extension<Identity>>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let request: NewToken = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("the body is not a token request: {e}")))?;
    let role = Role::parse(&request.role).ok_or_else(|| {
        ApiError::bad_request(format!(
            "unknown role `{}`; use admin, editor, operator, viewer or tool",
            request.role
        ))
    })?;
    let project = hub.engine.project();
    let tools = tools_for(role, request.tools, &project).map_err(ApiError::bad_request)?;
    let now = now_millis();
    let expires_at = match &request.expires {
        None => None,
        Some(text) => {
            let d = weft_core::duration::parse(text).map_err(|e| {
                ApiError::bad_request(format!("`expires` must be a duration such as 30d: {e}"))
            })?;
            if d.is_zero() {
                return Err(ApiError::bad_request(
                    "`expires` must be longer than zero; leave it out for a token that works until revoked",
                ));
            }
            Some(now.saturating_add(d.as_millis() as i64))
        }
    };
    let name = request.name.filter(|n| !n.trim().is_empty());
    let (secret, record) = auth::new_token(role, tools, name, expires_at, None, now);
    let store = hub.engine.store();
    store.create_token(&record).await?;
    let details = json!({"role": role.as_str(), "tools": record.tools, "expires_at": expires_at, "name": record.name});
    audit::record(
        store.as_ref(),
        &audit::actor(who.as_deref()),
        "token.create",
        &record.id,
        details,
    )
    .await;
    Ok((
        StatusCode::CREATED,
        axum::Json(CreatedToken {
            token: view(&record, now),
            token_secret: secret,
        }),
    )
        .into_response())
}

/// Revokes a token, and the console sessions signed in with it. Admin tokens only.
#[utoipa::path(delete, path = "/tokens/{id}", tag = "tokens",
    params(("id" = String, Path, description = "The token's id")),
    responses(
        (status = 204, description = "Revoked (or it was already)"),
        (status = 404, description = "No such token", body = ErrorBody)))]
pub async fn revoke_token(
    State(hub): State<Arc<Hub>>,
    who: Option<axum::Extension<Identity>>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let store = hub.engine.store();
    let known = store
        .list_tokens()
        .await?
        .into_iter()
        .any(|t| t.id == id && t.parent.is_none());
    if !known {
        return Err(ApiError::not_found(format!("no token has the id {id}")));
    }
    let was_live = store.revoke_token(&id, now_millis()).await?;
    if was_live {
        audit::record(
            store.as_ref(),
            &audit::actor(who.as_deref()),
            "token.revoke",
            &id,
            json!({}),
        )
        .await;
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}
