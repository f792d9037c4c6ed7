//! Reading settings that the lint has checked, when a connector is built or a queue trigger
//! subscribes: the same decoders as `weft lint`, with the first problem as the error.

use serde_json::Value;
use weft_core::yaml::Node;
use weft_core::{Connection, Diagnostic, Diagnostics};

use crate::ActionError;

fn first_problem<T>(
    node: &Node,
    file: &str,
    decode: impl FnOnce(&Node, &mut Diagnostics) -> Option<T>,
) -> Result<T, Option<Diagnostic>> {
    let mut diags = Diagnostics::new(file);
    match decode(node, &mut diags) {
        Some(config) if diags.is_empty() => Ok(config),
        _ => Err(diags.into_vec().into_iter().next()),
    }
}

/// A connection's settings, or its first problem as `weft.yaml:line:column: message`.
pub(crate) fn connection<T>(
    connection: &Connection,
    decode: impl FnOnce(&Node, &mut Diagnostics) -> Option<T>,
) -> Result<T, String> {
    first_problem(&connection.node, "weft.yaml", decode)
        .map_err(|d| d.map_or_else(|| "invalid settings".into(), |d| d.to_string()))
}

/// A queue trigger's connector settings from their JSON form (JSON is YAML, so the checked
/// decoder reads them as they were written), or the first problem as a fatal error.
pub(crate) fn queue<T>(
    settings: &Value,
    decode: impl FnOnce(&Node, &mut Diagnostics) -> Option<T>,
) -> Result<T, ActionError> {
    let node = weft_core::yaml::parse(&settings.to_string())
        .map_err(|e| ActionError::fatal(format!("queue settings: {}", e.message)))?;
    // Positions in the JSON form mean nothing to a reader: the message alone.
    first_problem(&node, "queue trigger", decode).map_err(|d| {
        ActionError::fatal(d.map_or_else(|| "invalid queue settings".into(), |d| d.message))
    })
}
