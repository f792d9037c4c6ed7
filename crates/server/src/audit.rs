//! The audit log, as the hub writes it: who (a token id, `stdio`, `cli`, `system` or `files`) did
//! what and when. Entries are written after the action took effect; the API can read them
//! (`GET /api/audit`, admin tokens only) and never change them.

use serde_json::Value;
use weft_store::{AuditEntry, Store, now_millis};

use crate::auth::Identity;

/// The actor of a request: its token's id, or `stdio` for `weft mcp`, which has none.
pub fn actor(who: Option<&Identity>) -> String {
    who.map_or_else(|| "stdio".to_string(), |w| w.token_id.clone())
}

/// Appends an entry. The action has already happened, so a store that fails here is logged as an
/// error rather than undoing it.
pub async fn record(store: &dyn Store, actor: &str, action: &str, target: &str, details: Value) {
    let entry = AuditEntry {
        at: now_millis(),
        actor: actor.to_string(),
        action: action.to_string(),
        target: target.to_string(),
        details,
    };
    if let Err(e) = store.append_audit(&entry).await {
        tracing::error!(error = %e, action, target, actor, "The audit log could not be written.");
    }
}

/// An entry as the API and `weft audit` show it.
pub fn entry_json(seq: u64, e: &AuditEntry) -> Value {
    serde_json::json!({
        "seq": seq,
        "at": jiff::Timestamp::from_millisecond(e.at).map(|t| t.to_string()).unwrap_or_default(),
        "actor": e.actor,
        "action": e.action,
        "target": e.target,
        "details": e.details,
    })
}
