//! `GET /api/overview`: how the hub is doing, in one answer for the console's first page.
//!
//! Everything comes from one read of the store ([`weft_store::Store::overview`], which reads only
//! the last 24 hours' runs, so it stays fast however many runs the store holds), the newest run of
//! each trigger's workflow, and what this hub's poll and queue tasks last did
//! ([`crate::triggers::Health`]).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::State;
use serde::Serialize;
use utoipa::ToSchema;
use weft_core::{RunState, Trigger};
use weft_store::{RunFilter, now_millis};

use crate::Hub;
use crate::error::ApiError;

/// The window the overview counts runs in.
pub(crate) const WINDOW_MS: i64 = 24 * 3600 * 1000;

/// A workflow whose runs failed in the window.
#[derive(Serialize, ToSchema)]
pub struct FailingWorkflow {
    /// The workflow.
    pub workflow: String,
    /// Its runs that failed in the window.
    pub failed: u64,
    /// All its runs in the window.
    pub total: u64,
    /// The newest failed run.
    pub last_failed_run: String,
    /// Why that run failed.
    pub last_error: Option<String>,
}

/// Unfinished runs.
#[derive(Serialize, ToSchema)]
pub struct Unfinished {
    /// Runs waiting for a slot.
    pub queued: u64,
    /// Runs executing.
    pub running: u64,
    /// Runs waiting for a time or an answer.
    pub waiting: u64,
    /// When the queued run that has waited longest became due (RFC 3339).
    pub oldest_queued_at: Option<String>,
}

/// How one trigger that reaches outside (webhook, schedule, poll, queue) is doing.
#[derive(Serialize, ToSchema)]
pub struct TriggerHealth {
    /// The workflow.
    pub workflow: String,
    /// `webhook`, `schedule`, `poll` or `queue`.
    #[serde(rename = "type")]
    pub kind: String,
    /// When its newest run was created (RFC 3339), whatever became of it.
    pub last_success: Option<String>,
    /// For polls and queues: the last failure of the trigger itself on this hub (not of a run).
    pub last_error: Option<String>,
    /// When that failure happened (RFC 3339).
    pub last_error_at: Option<String>,
    /// Failures of the trigger since its last success.
    pub failures_in_a_row: u64,
}

/// The hub at a glance.
#[derive(Serialize, ToSchema)]
pub struct OverviewBody {
    /// The start of the window (RFC 3339): 24 hours ago.
    pub since: String,
    /// Runs created in the window, by state (every state is present).
    pub runs_by_state: BTreeMap<String, u64>,
    /// Workflows with failed runs in the window, most failures first.
    pub failing_workflows: Vec<FailingWorkflow>,
    /// Approvals of unfinished runs waiting for an answer.
    pub pending_approvals: u64,
    /// Runs not finished, whenever created.
    pub unfinished: Unfinished,
    /// Every webhook, schedule, poll and queue trigger of the project.
    pub triggers: Vec<TriggerHealth>,
}

/// A time as RFC 3339, if it is one.
pub(crate) fn time(ms: i64) -> Option<String> {
    jiff::Timestamp::from_millisecond(ms)
        .ok()
        .map(|t| t.to_string())
}

/// The hub at a glance: the last 24 hours' runs by state, failing workflows, pending approvals,
/// unfinished runs and trigger health.
#[utoipa::path(get, path = "/overview", tag = "runs",
    responses((status = 200, description = "The overview", body = OverviewBody)))]
pub async fn overview(State(hub): State<Arc<Hub>>) -> Result<axum::Json<OverviewBody>, ApiError> {
    let store = hub.engine.store();
    let since = now_millis() - WINDOW_MS;
    let seen = store.overview(since).await?;
    let mut runs_by_state: BTreeMap<String, u64> = RunState::ALL
        .iter()
        .map(|s| (s.as_str().to_string(), 0))
        .collect();
    let mut per_workflow: BTreeMap<&str, (u64, u64, Option<&str>)> = BTreeMap::new();
    for c in &seen.counts {
        *runs_by_state
            .entry(c.state.as_str().to_string())
            .or_default() += c.count;
        let entry = per_workflow.entry(&c.workflow).or_default();
        entry.1 += c.count;
        if c.state == RunState::Failed {
            entry.0 += c.count;
            entry.2 = Some(&c.newest_id);
        }
    }
    let mut failing = Vec::new();
    for (workflow, (failed, total, newest)) in per_workflow {
        let Some(run_id) = newest else { continue };
        let error = store.get_run(run_id).await?.and_then(|r| r.error);
        let last_error = error.map(|e| {
            let message = e["message"].as_str().unwrap_or("failed").to_string();
            match e["step"].as_str() {
                Some(step) => format!("{step}: {message}"),
                None => message,
            }
        });
        failing.push(FailingWorkflow {
            workflow: workflow.to_string(),
            failed,
            total,
            last_failed_run: run_id.to_string(),
            last_error,
        });
    }
    failing.sort_by(|a, b| b.failed.cmp(&a.failed).then(a.workflow.cmp(&b.workflow)));

    let mut unfinished = Unfinished {
        queued: 0,
        running: 0,
        waiting: 0,
        oldest_queued_at: seen.oldest_queued.and_then(time),
    };
    for &(state, n) in &seen.unfinished {
        match state {
            RunState::Queued => unfinished.queued += n,
            RunState::Running => unfinished.running += n,
            RunState::Waiting => unfinished.waiting += n,
            _ => {}
        }
    }

    let project = hub.engine.project();
    let mut triggers = Vec::new();
    for w in project.workflows.values() {
        let kind = match &w.trigger {
            Trigger::Webhook(_) | Trigger::Schedule(_) | Trigger::Poll(_) | Trigger::Queue(_) => {
                w.trigger.type_name()
            }
            Trigger::Manual | Trigger::Tool(_) => continue,
        };
        let newest = store
            .list_runs(&RunFilter {
                workflow: Some(w.name.clone()),
                state: None,
                root: None,
                before: None,
                limit: 1,
                ..Default::default()
            })
            .await?;
        let health = hub.health.get(&w.name);
        triggers.push(TriggerHealth {
            workflow: w.name.clone(),
            kind: kind.to_string(),
            last_success: newest.first().and_then(|r| time(r.created_at)),
            last_error: health.last_error.as_ref().map(|(_, m)| m.clone()),
            last_error_at: health.last_error.as_ref().and_then(|(at, _)| time(*at)),
            failures_in_a_row: health.failures_in_a_row,
        });
    }
    Ok(axum::Json(OverviewBody {
        since: time(since).unwrap_or_default(),
        runs_by_state,
        failing_workflows: failing,
        pending_approvals: seen.pending_approvals,
        unfinished,
        triggers,
    }))
}
