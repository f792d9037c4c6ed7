//! Deleting run data on request: `weft runs purge --older-than 30d` (what retention does, now) and
//! `weft data erase --match '<jq predicate>'` (the runs whose event a data-protection request
//! names). Both write an audit entry with the count.

use std::path::Path;
use std::time::Duration;

use anyhow::anyhow;
use serde_json::json;
use weft_core::{Diagnostics, Expr, Pos, json_to_val};
use weft_store::{RunFilter, Store, now_millis};

use crate::{CliError, CmdResult, exit, setup};

/// Runs deleted per transaction.
const BATCH: u32 = 500;

/// Deletes every top-level run that finished longer ago than `older_than`, with its child runs.
pub(crate) async fn purge(dir: &Path, older_than: Duration, json_out: bool) -> CmdResult {
    let loaded = setup::load(dir)?;
    let store = setup::store(&loaded).await?;
    let before = now_millis() - older_than.as_millis() as i64;
    let mut total = 0u64;
    loop {
        let n = store
            .purge_finished(before, BATCH)
            .await
            .map_err(CliError::internal)?;
        total += n;
        if n < u64::from(BATCH) {
            break;
        }
    }
    let older = weft_core::duration::format(older_than);
    let details = json!({"older_than": older, "runs": total});
    weft_server::audit::record(store.as_ref(), "cli", "runs.purge", "runs", details).await;
    if json_out {
        println!("{}", json!({"deleted": total}));
    } else {
        eprintln!("Deleted {total} runs that finished more than {older} ago.");
    }
    Ok(exit::OK)
}

/// Deletes every run tree with a run whose `{input, trigger, workflow}` matches `predicate`; with
/// `dry_run`, only counts them.
pub(crate) async fn erase(dir: &Path, predicate: &str, dry_run: bool, json_out: bool) -> CmdResult {
    let mut diags = Diagnostics::new("--match");
    let Some(expr) = Expr::parse_bare(predicate, Pos::new(1, 1), &mut diags) else {
        let problems: Vec<String> = diags.into_vec().into_iter().map(|d| d.message).collect();
        return Err(CliError::usage(anyhow!(
            "--match is not a jq predicate: {}",
            problems.join("; ")
        )));
    };
    let loaded = setup::load(dir)?;
    let store = setup::store(&loaded).await?;
    let roots = matching_roots(store.as_ref(), &expr).await?;
    let (deleted, skipped) = if dry_run {
        (0, 0)
    } else {
        store
            .erase_trees(&roots)
            .await
            .map_err(CliError::internal)?
    };
    if !dry_run {
        // The predicate names the person; the log keeps only its hash, which ties the entry to
        // the request without keeping what was erased.
        let details = json!({
            "match_sha256": weft_server::auth::hash(predicate),
            "runs": deleted,
            "unfinished_left": skipped,
        });
        weft_server::audit::record(store.as_ref(), "cli", "data.erase", "runs", details).await;
    }
    if json_out {
        println!(
            "{}",
            json!({"matched_trees": roots.len(), "deleted_runs": deleted, "unfinished_left": skipped, "dry_run": dry_run})
        );
    } else if dry_run {
        eprintln!(
            "{} run trees match; nothing was deleted (--dry-run).",
            roots.len()
        );
    } else {
        eprintln!("Deleted {deleted} runs in {} matching trees.", roots.len());
        if skipped > 0 {
            eprintln!(
                "{skipped} matching trees have unfinished runs and were left; cancel them (weft runs cancel) or erase again once they finish."
            );
        }
    }
    Ok(if skipped > 0 { exit::FAILED } else { exit::OK })
}

/// The root ids of every run tree with a run that matches.
async fn matching_roots(store: &dyn Store, expr: &Expr) -> Result<Vec<String>, CliError> {
    let mut roots = std::collections::BTreeSet::new();
    let mut before = None;
    loop {
        let page = store
            .list_runs(&RunFilter {
                before: before.clone(),
                limit: BATCH,
                ..RunFilter::default()
            })
            .await
            .map_err(CliError::internal)?;
        for run in &page {
            let event = json_to_val(&json!({
                "input": run.input, "trigger": run.trigger, "workflow": run.workflow,
            }));
            // On the command's own thread: limits that fit its stack (see the engine's `eval`).
            let budget = weft_core::expr::Budget::new(
                weft_core::expr::EvalLimits {
                    timeout: std::time::Duration::from_secs(10),
                    memory_bytes: 8 << 20,
                    stack_bytes: 8 << 20,
                },
                None,
            );
            let matched = expr
                .eval_bool(&event, &budget)
                .map_err(|e| CliError::usage(anyhow!("--match failed on run {}: {e}", run.id)))?;
            if matched {
                roots.insert(run.root_id.clone());
            }
        }
        if page.len() < BATCH as usize {
            return Ok(roots.into_iter().collect());
        }
        before = page.last().map(|r| r.id.clone());
    }
}
