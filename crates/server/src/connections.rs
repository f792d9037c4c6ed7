//! The project's connections: `GET /api/connections` lists them with the workflows that use each,
//! and `POST /api/connections/{name}/test` lets a connection check itself against its outside
//! system ("test connection" in the console).

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use serde::Serialize;
use serde_json::{Value, json};
use utoipa::ToSchema;

use crate::auth::Identity;
use crate::error::{ApiError, ErrorBody};
use crate::{Hub, audit};

/// Longest a connection check may take, whatever the connection's own timeouts.
const PROBE_TIMEOUT: Duration = Duration::from_secs(30);

/// A connection as listed: never a credential's value.
#[derive(Serialize, ToSchema)]
pub struct ConnectionView {
    /// Its name, as `uses: <name>.<action>` names it.
    pub name: String,
    /// The connector type, such as `http` or `postgres`.
    #[serde(rename = "type")]
    pub type_name: String,
    /// Its settings as written in `weft.yaml` (credentials appear as `{secret: NAME}` or
    /// `{env: NAME}` references; any value the hub knows as a credential is masked).
    #[schema(value_type = Object)]
    pub settings: Value,
    /// The workflows that use it, in steps or as their trigger.
    pub used_by: Vec<String>,
    /// Where it is defined: `weft.yaml:<line>`.
    pub defined_at: String,
    /// What "test connection" (`POST /api/connections/{name}/test`) checks, in words; absent
    /// when its connector cannot check itself.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub probe: Option<String>,
    /// For a connection that signs in (OAuth2 authorization code): where it stands.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sign_in: Option<SignInView>,
}

/// Where a connection that signs in stands.
#[derive(Serialize, ToSchema)]
pub struct SignInView {
    /// `connected`, `not_connected` or `needs_sign_in`.
    pub state: &'static str,
    /// Why it needs sign-in, when it does.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// When the access token expires (RFC 3339), when connected and the provider said.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
}

/// The sign-in state of connection `name`, if it signs in.
pub fn sign_in_view(hub: &Hub, name: &str) -> Option<SignInView> {
    use weft_connectors::http::SignInState;
    let state = hub.engine.connector(name)?.sign_in()?.state();
    let mut reason = match &state {
        SignInState::NeedsSignIn { reason } => Some(Value::String(reason.clone())),
        _ => None,
    };
    if let Some(r) = &mut reason {
        hub.engine.scrubber().json(r);
    }
    Some(SignInView {
        state: state.label(),
        reason: reason.and_then(|r| r.as_str().map(str::to_string)),
        expires_at: match state {
            SignInState::Connected {
                expires_at: Some(at),
            } => jiff::Timestamp::from_second(at).ok().map(|t| t.to_string()),
            _ => None,
        },
    })
}

/// The connections.
#[derive(Serialize, ToSchema)]
pub struct ConnectionList {
    /// Sorted by name.
    pub connections: Vec<ConnectionView>,
}

/// Lists the project's connections with the workflows that use each.
#[utoipa::path(get, path = "/connections", tag = "connections",
    responses((status = 200, description = "The connections", body = ConnectionList)))]
pub async fn list_connections(State(hub): State<Arc<Hub>>) -> axum::Json<ConnectionList> {
    let project = hub.engine.project();
    let scrubber = hub.engine.scrubber();
    let catalog = &project.catalog;
    let connections = project
        .connections
        .values()
        .map(|c| {
            let mut settings = c.node.to_json();
            scrubber.json(&mut settings);
            ConnectionView {
                name: c.name.clone(),
                type_name: c.type_name.clone(),
                settings,
                used_by: project
                    .workflows
                    .values()
                    .filter(|w| w.connections().contains(c.name.as_str()))
                    .map(|w| w.name.clone())
                    .collect(),
                defined_at: format!("weft.yaml:{}", c.pos.line),
                probe: catalog
                    .get(&c.type_name)
                    .and_then(|spec| spec.probe())
                    .map(str::to_string),
                sign_in: sign_in_view(&hub, &c.name),
            }
        })
        .collect();
    axum::Json(ConnectionList { connections })
}

/// What a connection check found.
#[derive(Serialize, ToSchema)]
pub struct ConnectionTest {
    /// The connection's name.
    pub connection: String,
    /// Whether the outside system answered and took the credentials.
    pub ok: bool,
    /// What was found, or why it failed, in words.
    pub message: String,
    /// Whether trying again later may give another answer (a refused or lost connection, a
    /// timeout), as opposed to a setting or credential that is wrong.
    pub retryable: bool,
    /// How long the check took, in milliseconds.
    pub elapsed_ms: u64,
}

/// Checks that a connection works: its connector talks to the outside system the way its
/// catalogue entry's `probe` says, changing nothing there. A failed check is an answer (200 with
/// `ok: false`), not an error.
#[utoipa::path(post, path = "/connections/{name}/test", tag = "connections",
    params(("name" = String, Path, description = "The connection's name")),
    responses(
        (status = 200, description = "The check's outcome", body = ConnectionTest),
        (status = 404, description = "No such connection", body = ErrorBody),
        (status = 409, description = "This connection's connector cannot check itself", body = ErrorBody)))]
pub async fn test_connection(
    State(hub): State<Arc<Hub>>,
    who: Option<axum::Extension<Identity>>,
    Path(name): Path<String>,
) -> Result<axum::Json<ConnectionTest>, ApiError> {
    let project = hub.engine.project();
    let Some(connection) = project.connections.get(&name) else {
        return Err(ApiError::not_found(format!(
            "the project has no connection named `{name}`"
        )));
    };
    let checks = project
        .catalog
        .get(&connection.type_name)
        .is_some_and(|spec| spec.probe().is_some());
    let connector = match hub.engine.connector(&name) {
        Some(connector) if checks => connector,
        _ => {
            return Err(ApiError::new(
                axum::http::StatusCode::CONFLICT,
                "conflict",
                format!(
                    "`{name}` is a `{}` connection, which cannot check itself; a step that uses it shows whether it works",
                    connection.type_name
                ),
            ));
        }
    };
    let started = Instant::now();
    let outcome = match tokio::time::timeout(PROBE_TIMEOUT, connector.probe()).await {
        Ok(outcome) => outcome,
        Err(_) => Err(weft_connectors::ActionError::retryable(format!(
            "no answer within {PROBE_TIMEOUT:?}"
        ))),
    };
    let elapsed_ms = started.elapsed().as_millis() as u64;
    // What a connector says may quote a credential (a URL with its password): scrub it.
    let mut said = Value::String(match &outcome {
        Ok(found) => found.clone(),
        Err(e) => e.to_string(),
    });
    hub.engine.scrubber().json(&mut said);
    let message = said.as_str().unwrap_or_default().to_string();
    let test = ConnectionTest {
        connection: name.clone(),
        ok: outcome.is_ok(),
        retryable: outcome.as_ref().is_err_and(|e| e.is_retryable()),
        message,
        elapsed_ms,
    };
    let actor = audit::actor(who.as_deref());
    let details = json!({"ok": test.ok, "message": test.message, "elapsed_ms": elapsed_ms});
    audit::record(
        hub.engine.store().as_ref(),
        &actor,
        "connection.test",
        &name,
        details,
    )
    .await;
    Ok(axum::Json(test))
}
