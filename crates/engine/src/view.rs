//! Runs, step attempts and approvals as JSON, in the one shape that `weft runs show --json` prints and the REST
//! API serves. Times are RFC 3339 in UTC with milliseconds.

use serde_json::{Value, json};
use weft_store::{AttemptRecord, Millis, RunRecord};

/// A time as RFC 3339 text with milliseconds.
pub fn time(ms: Millis) -> String {
    jiff::Timestamp::from_millisecond(ms).map_or_else(|_| ms.to_string(), |t| format!("{t:.3}"))
}

/// A run record as JSON, with its attempts (as `steps`) when given.
pub fn run_json(run: &RunRecord, attempts: Option<&[AttemptRecord]>) -> Value {
    let mut v = json!({
        "id": run.id,
        "workflow": run.workflow,
        "version": run.version,
        "state": run.state.as_str(),
        "root_id": run.root_id,
        "parent_id": run.parent_id,
        "parent_step": run.parent_step,
        "idempotency_key": run.idempotency_key,
        "trigger": run.trigger,
        "input": run.input,
        "output": run.output,
        "error": run.error,
        "wake_at": run.wake_at.map(time),
        "created_at": time(run.created_at),
        "started_at": run.started_at.map(time),
        "finished_at": run.finished_at.map(time),
    });
    if let Some(attempts) = attempts {
        v["steps"] = attempts.iter().map(attempt_json).collect();
    }
    v
}

/// One step attempt as JSON.
pub fn attempt_json(a: &AttemptRecord) -> Value {
    json!({
        "step": a.step_key.as_str(),
        "attempt": a.attempt,
        "state": a.state.as_str(),
        "input": a.input,
        "output": a.output,
        "error": a.error,
        "wake_at": a.wake_at.map(time),
        "started_at": time(a.started_at),
        "finished_at": a.finished_at.map(time),
    })
}

/// An approval as JSON.
pub fn approval_json(a: &weft_store::ApprovalRecord) -> Value {
    json!({
        "id": a.id,
        "run_id": a.run_id,
        "step": a.step_key.as_str(),
        "attempt": a.attempt,
        "workflow": a.workflow,
        "message": a.message,
        "data": a.data,
        "state": a.state.as_str(),
        "run_state": a.run_state.as_str(),
        "created_at": time(a.created_at),
        "expires_at": a.expires_at.map(time),
        "answered_at": a.answered_at.map(time),
        "answer": a.answer,
        "answered_by": a.answered_by,
    })
}
