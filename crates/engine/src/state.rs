//! The built-in `state` connection: `state.get`, `state.set` and `state.delete` steps on the
//! conversation store in Weft's own database (see [`weft_core::catalog::STATE`] for the inputs).
//!
//! These steps are actions like any other (recorded, retried, mocked nowhere: a workflow test uses
//! its own throw-away store), but they talk to the [`Store`] rather than to an outside system.

use serde_json::{Value, json};
use weft_connectors::ActionError;
use weft_store::{Millis, Store};

/// Longest namespace or key, in bytes.
const MAX_NAME: usize = 512;

/// Longest time to live: ten years, in milliseconds.
const MAX_TTL_MILLIS: i64 = 10 * 365 * 24 * 3600 * 1000;

/// Runs `state.<action>` with its evaluated inputs.
pub(crate) async fn call(
    store: &dyn Store,
    action: &str,
    input: &Value,
    now: Millis,
) -> Result<Value, ActionError> {
    let namespace = name(input, "namespace")?;
    let key = name(input, "key")?;
    let (namespace, key) = (namespace.as_str(), key.as_str());
    let stored = |e: weft_store::StoreError| {
        let message = format!("the conversation store failed: {e}");
        if e.is_retryable() {
            ActionError::retryable(message)
        } else {
            ActionError::fatal(message)
        }
    };
    match action {
        "get" => {
            let value = store.state_get(namespace, key, now).await.map_err(stored)?;
            Ok(json!({"found": value.is_some(), "value": value.unwrap_or(Value::Null)}))
        }
        "set" => {
            let Some(value) = input.get("value") else {
                return Err(ActionError::fatal("state.set needs `value`"));
            };
            let expires_at = match input.get("ttl") {
                None | Some(Value::Null) => None,
                Some(ttl) => Some(now.saturating_add(ttl_millis(ttl)?)),
            };
            store
                .state_set(namespace, key, value, expires_at, now)
                .await
                .map_err(stored)?;
            Ok(json!({"namespace": namespace, "key": key, "expires_at": expires_at}))
        }
        "delete" => {
            let deleted = store
                .state_delete(namespace, key, now)
                .await
                .map_err(stored)?;
            Ok(json!({"deleted": deleted}))
        }
        other => Err(ActionError::fatal(format!(
            "the state connection has no action `{other}`; its actions are get, set, delete"
        ))),
    }
}

/// A namespace or key: a string that is not empty (numbers are taken as their text).
fn name(input: &Value, field: &str) -> Result<String, ActionError> {
    match input.get(field) {
        Some(Value::String(s)) if !s.is_empty() && s.len() <= MAX_NAME => Ok(s.clone()),
        Some(Value::Number(n)) => Ok(n.to_string()),
        Some(Value::String(s)) if s.is_empty() => Err(ActionError::fatal(format!(
            "`{field}` is empty; name what to remember, such as conversation-<id>"
        ))),
        Some(Value::String(_)) => Err(ActionError::fatal(format!(
            "`{field}` is longer than {MAX_NAME} bytes"
        ))),
        Some(other) => Err(ActionError::fatal(format!(
            "`{field}` must be a string, found {}",
            weft_core::json_kind(other)
        ))),
        None => Err(ActionError::fatal(format!("state needs `{field}`"))),
    }
}

/// A time to live: a duration such as `30m`, or a number of seconds; more than zero, at most ten
/// years.
fn ttl_millis(ttl: &Value) -> Result<i64, ActionError> {
    let millis = match ttl {
        Value::String(s) => {
            let d = weft_core::duration::parse(s)
                .map_err(|e| ActionError::fatal(format!("`ttl`: {e}")))?;
            i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
        }
        Value::Number(n) => match n.as_f64() {
            Some(secs) if secs > 0.0 && secs.is_finite() => {
                (secs * 1000.0).min(i64::MAX as f64) as i64
            }
            _ => {
                return Err(ActionError::fatal(format!(
                    "`ttl` must be a positive number of seconds or a duration such as 30m, found {n}"
                )));
            }
        },
        other => {
            return Err(ActionError::fatal(format!(
                "`ttl` must be a duration such as 30m or a number of seconds, found {}",
                weft_core::json_kind(other)
            )));
        }
    };
    if millis <= 0 {
        return Err(ActionError::fatal("`ttl` must be longer than zero"));
    }
    if millis > MAX_TTL_MILLIS {
        return Err(ActionError::fatal(
            "`ttl` may be at most ten years (3650d); leave it out to keep the key until deleted",
        ));
    }
    Ok(millis)
}
