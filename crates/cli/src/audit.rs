//! `weft audit`: reads the hub's audit log (who did what, and when), newest first.

use std::path::Path;

use crate::{CliError, CmdResult, exit, setup};

/// Prints up to `limit` entries older than `before`.
pub(crate) async fn audit(dir: &Path, limit: u32, before: Option<u64>, json: bool) -> CmdResult {
    let loaded = setup::load(dir)?;
    let store = setup::store(&loaded).await?;
    let entries = store
        .list_audit(before, limit.clamp(1, 10_000), None)
        .await
        .map_err(CliError::internal)?;
    if json {
        let list: Vec<_> = entries
            .iter()
            .map(|(seq, e)| weft_server::audit::entry_json(*seq, e))
            .collect();
        println!("{}", serde_json::Value::Array(list));
        return Ok(exit::OK);
    }
    for (seq, e) in &entries {
        let v = weft_server::audit::entry_json(*seq, e);
        println!(
            "{seq:>6}  {}  {:<14} {:<16} {}  {}",
            v["at"].as_str().unwrap_or(""),
            e.actor,
            e.action,
            e.target,
            e.details
        );
    }
    Ok(exit::OK)
}
