//! The hub's side of the secret store: `/api/secrets` for admin tokens, and the task that re-reads
//! the store, so that `weft secrets set`, `rm` and `rotate-key` take effect on a running hub within
//! seconds, without a restart.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use weft_core::secret::{MIN_SCRUBBED_LEN, check_name};
use weft_engine::Engine;
use weft_engine::vault::{Vault, VaultError};
use weft_store::now_millis;

use crate::auth::Identity;
use crate::error::{ApiError, ErrorBody};
use crate::{Hub, audit};

/// How often the hub looks for changed secrets.
pub const REFRESH_EVERY: Duration = Duration::from_secs(2);

/// Re-reads the secret store into the engine's credentials whenever it changes, until aborted (and
/// once at the first tick, for a change made while the hub started). A store that cannot be
/// decrypted (a wrong key after `rotate-key` elsewhere) keeps the values the hub has and logs why
/// at every try.
pub async fn refresh(engine: Engine, vault: Vault) {
    let mut seen = None;
    loop {
        tokio::time::sleep(REFRESH_EVERY).await;
        let version = match vault.version().await {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!("Cannot read the secret store: {e}");
                continue;
            }
        };
        if seen.as_ref() == Some(&version) {
            continue;
        }
        match vault.load_into(&engine.secrets()).await {
            Ok(count) => {
                // Only a change that was read counts as seen; a failed one is tried again.
                seen = Some(version);
                tracing::info!(secrets = count, "The secret store changed; reloaded it.")
            }
            Err(e) => tracing::error!(
                "The secret store changed but cannot be read: {e}; the values read before stay in use."
            ),
        }
    }
}

/// The body of `PUT /api/secrets/{name}`.
#[derive(serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SecretValue {
    /// The secret's value (at least 4 characters). It is stored encrypted and never shown again.
    pub value: String,
}

fn vault(hub: &Hub) -> Result<&Vault, ApiError> {
    hub.vault.as_ref().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "this hub was started without a secret store",
        )
    })
}

fn vault_error(e: VaultError) -> ApiError {
    match e {
        VaultError::Store(e) => ApiError::from(e),
        // No key, a wrong key: the hub's configuration, not the request.
        e => ApiError::new(StatusCode::CONFLICT, "secret_store", e.to_string()),
    }
}

/// After a write took effect: its audit entry (which must not depend on the reload), then the
/// hub's credentials from the store, so the next call uses the change.
async fn audit_and_reload(
    hub: &Hub,
    vault: &Vault,
    who: Option<&Identity>,
    action: &str,
    name: &str,
) -> Result<(), ApiError> {
    audit::record(
        hub.engine.store().as_ref(),
        &audit::actor(who),
        action,
        name,
        json!({}),
    )
    .await;
    vault
        .load_into(&hub.engine.secrets())
        .await
        .map(|_| ())
        .map_err(vault_error)
}

/// A secret as listed: never its value.
#[allow(dead_code)]
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct SecretView {
    /// Its name, as `{ secret: NAME }` refers to it.
    pub name: String,
    /// When it was first set (milliseconds since the Unix epoch).
    pub created_at: i64,
    /// When it was last set (milliseconds since the Unix epoch).
    pub updated_at: i64,
    /// A fingerprint of the master key that encrypted it.
    pub key_id: String,
}

/// The secret store's names.
#[allow(dead_code)]
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct SecretList {
    /// Every secret, by name.
    pub secrets: Vec<SecretView>,
}

/// A secret that was set.
#[allow(dead_code)]
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct SecretSet {
    /// Its name.
    pub name: String,
    /// Whether it is new.
    pub created: bool,
}

/// The secret store's names and dates, never values. Admin tokens only.
#[utoipa::path(get, path = "/secrets", tag = "secrets",
    responses((status = 200, description = "The secrets' names and dates", body = SecretList)))]
pub async fn list_secrets(State(hub): State<Arc<Hub>>) -> Result<axum::Json<Value>, ApiError> {
    let secrets = vault(&hub)?.list().await.map_err(vault_error)?;
    Ok(axum::Json(json!({ "secrets": secrets })))
}

/// Sets a secret (encrypted under the hub's master key); connections use it as `{ secret: NAME }`
/// from the next call on. The value is never echoed, in answers, errors or the audit log. Admin
/// tokens only.
#[utoipa::path(put, path = "/secrets/{name}", tag = "secrets",
    params(("name" = String, Path, description = "The secret's name: letters, digits, `_`, `-`, `.`")),
    request_body(content = SecretValue, description = "`{value}`"),
    responses(
        (status = 201, description = "Created", body = SecretSet),
        (status = 200, description = "Replaced", body = SecretSet),
        (status = 400, description = "A bad name or body", body = ErrorBody),
        (status = 409, description = "The hub's master key is missing or does not match the stored secrets", body = ErrorBody)))]
pub async fn put_secret(
    State(hub): State<Arc<Hub>>,
    who: Option<axum::Extension<Identity>>,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    check_name(&name).map_err(ApiError::bad_request)?;
    // serde's messages may quote the input, which holds the secret: say only where it broke.
    let body: SecretValue = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_request(format!(
            "the body must be {{\"value\": \"…\"}} and nothing else (the problem is at line {}, column {})",
            e.line(),
            e.column()
        ))
    })?;
    if body.value.chars().count() < MIN_SCRUBBED_LEN {
        return Err(ApiError::bad_request(format!(
            "the value is shorter than {MIN_SCRUBBED_LEN} characters: too short to be kept out of logs and run data"
        )));
    }
    let vault = vault(&hub)?;
    let (created, _) = vault
        .set(&name, &body.value, now_millis())
        .await
        .map_err(vault_error)?;
    let action = if created {
        "secret.create"
    } else {
        "secret.update"
    };
    audit_and_reload(&hub, vault, who.as_deref(), action, &name).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        axum::Json(json!({"name": name, "created": created})),
    )
        .into_response())
}

/// Deletes a secret. Admin tokens only.
#[utoipa::path(delete, path = "/secrets/{name}", tag = "secrets",
    params(("name" = String, Path, description = "The secret's name")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No such secret", body = ErrorBody)))]
pub async fn delete_secret(
    State(hub): State<Arc<Hub>>,
    who: Option<axum::Extension<Identity>>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    let vault = vault(&hub)?;
    if !vault.remove(&name).await.map_err(vault_error)? {
        return Err(ApiError::not_found(format!("there is no secret `{name}`")));
    }
    audit_and_reload(&hub, vault, who.as_deref(), "secret.delete", &name).await?;
    Ok(StatusCode::NO_CONTENT)
}
