//! What every consuming connector shares: reading a `queue` trigger's settings at run time.

use serde_json::Value;
use weft_core::Diagnostics;

use crate::ActionError;

/// Reads a trigger's settings, which the lint has checked, from their JSON form.
pub(crate) fn settings<T>(
    settings: &Value,
    decode: impl FnOnce(&weft_core::yaml::Node, &mut Diagnostics) -> Option<T>,
) -> Result<T, ActionError> {
    // JSON is YAML, so the checked decoder reads the settings as they were written.
    let node = weft_core::yaml::parse(&settings.to_string())
        .map_err(|e| ActionError::fatal(format!("queue settings: {}", e.message)))?;
    let mut diags = Diagnostics::new("queue trigger");
    match decode(&node, &mut diags) {
        Some(config) if diags.is_empty() => Ok(config),
        _ => Err(ActionError::fatal(
            diags
                .into_vec()
                .into_iter()
                .next()
                .map_or_else(|| "invalid queue settings".into(), |d| d.message),
        )),
    }
}
