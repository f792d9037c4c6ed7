//! Schedule triggers: a task per scheduled workflow ([`crate::triggers`]) fires a run for each due
//! cron slot.
//!
//! Exactly one run per slot, also across restarts and several processes: a slot's run carries the
//! idempotency key `slot:<time>`, and the last fired slot is committed together with that run
//! ([`weft_engine::Engine::accept`]). On start, the slots that fell due while the hub was down are
//! skipped or run once (`missed`); a slot that falls due while the previous run is unfinished is
//! run anyway, skipped, or held until that run ends (`overlap`).

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use weft_core::Workflow;
use weft_core::trigger::{Missed, Overlap, ScheduleTrigger};
use weft_engine::{Engine, Event, new_run};
use weft_store::{Millis, NewRun, now_millis};

/// How long a store failure pauses a schedule before it tries again.
const STORE_RETRY: Duration = Duration::from_secs(5);

/// The key of a workflow's schedule state.
pub fn state_key(workflow: &str) -> String {
    format!("schedule:{workflow}")
}

/// Fires the workflow's slots until the task is aborted.
pub(crate) async fn run_schedule(
    engine: Engine,
    workflow: Arc<Workflow>,
    schedule: ScheduleTrigger,
) {
    let key = state_key(&workflow.name);
    let last = loop {
        match engine.store().trigger_state(&key).await {
            Ok(state) => break state.and_then(|s| s["last_slot"].as_i64()),
            Err(e) => {
                tracing::warn!(workflow = %workflow.name, error = %e, "Cannot read the schedule's last slot; trying again.");
                tokio::time::sleep(STORE_RETRY).await;
            }
        }
    };
    let now = now_millis();
    // Where to count from: the last fired slot, or now for a schedule that never fired.
    let mut cursor = last.unwrap_or(now);
    if let Some(last) = last
        && let Some(first_missed) = schedule.next_slot(last)
        && first_missed <= now
    {
        let latest = latest_slot_until(&schedule, first_missed, now);
        match schedule.missed {
            Missed::Once => {
                tracing::info!(workflow = %workflow.name, slot = %schedule.slot_text(latest), "Running once for slots missed while the hub was down.");
                fire(&engine, &workflow, &schedule, &key, latest).await;
            }
            Missed::Skip => {
                tracing::info!(workflow = %workflow.name, "Skipping slots missed while the hub was down (missed: skip).");
            }
        }
        cursor = latest.max(cursor);
    }
    loop {
        let Some(next) = schedule.next_slot(cursor.max(now_millis() - 1)) else {
            tracing::warn!(workflow = %workflow.name, "The schedule has no further slot; it stops.");
            return;
        };
        let wait = (next - now_millis()).max(0) as u64;
        tokio::time::sleep(Duration::from_millis(wait)).await;
        fire(&engine, &workflow, &schedule, &key, next).await;
        cursor = next;
    }
}

/// The latest slot at or before `until`, starting from slot `from` (which is at or before it).
fn latest_slot_until(schedule: &ScheduleTrigger, from: Millis, until: Millis) -> Millis {
    let mut slot = from;
    // Bounded: a schedule every second that missed a day walks 86,400 slots; beyond a million the
    // walk stops at the slot reached, which is still in the past.
    for _ in 0..1_000_000 {
        match schedule.next_slot(slot) {
            Some(next) if next <= until => slot = next,
            _ => break,
        }
    }
    slot
}

/// Commits the run of one slot (or, for a skipped slot, only the slot), retrying on store errors.
async fn fire(
    engine: &Engine,
    workflow: &Workflow,
    schedule: &ScheduleTrigger,
    key: &str,
    slot: Millis,
) {
    let state = json!({"last_slot": slot});
    let mut runs = vec![slot_run(workflow, schedule, slot)];
    match schedule.overlap {
        Overlap::Allow => {}
        Overlap::Skip => {
            if unfinished(engine, &workflow.name).await > 0 {
                tracing::info!(workflow = %workflow.name, slot = %schedule.slot_text(slot), "Slot skipped: the previous run is unfinished (overlap: skip).");
                metrics::counter!("weft_schedule_slots_skipped_total", "workflow" => workflow.name.clone()).increment(1);
                runs.clear();
            }
        }
        Overlap::Queue => wait_until_idle(engine, &workflow.name).await,
    }
    loop {
        match engine.accept(&runs, Some((key, &state))).await {
            Ok(created) => {
                if let Some(c) = created.first() {
                    tracing::debug!(workflow = %workflow.name, run_id = %c.id(), slot = %schedule.slot_text(slot), "Schedule fired.");
                }
                return;
            }
            Err(e) => {
                tracing::warn!(workflow = %workflow.name, error = %e, "The schedule's run could not be committed; trying again.");
                tokio::time::sleep(STORE_RETRY).await;
            }
        }
    }
}

fn slot_run(workflow: &Workflow, schedule: &ScheduleTrigger, slot: Millis) -> NewRun {
    let text = schedule.slot_text(slot);
    NewRun {
        idempotency_key: Some(format!("slot:{slot}")),
        ..new_run(
            workflow,
            json!({"type": "schedule", "slot": text, "cron": schedule.cron_text, "timezone": schedule.timezone_name}),
            json!({"slot": text}),
            now_millis(),
        )
    }
}

async fn unfinished(engine: &Engine, workflow: &str) -> u64 {
    loop {
        match engine.store().count_unfinished().await {
            Ok(counts) => {
                return counts
                    .iter()
                    .filter(|(w, _, _)| w == workflow)
                    .map(|(_, _, n)| n)
                    .sum();
            }
            Err(e) => {
                tracing::warn!(error = %e, "Cannot count unfinished runs; trying again.");
                tokio::time::sleep(STORE_RETRY).await;
            }
        }
    }
}

/// Waits until the workflow has no unfinished run, woken by the engine's run events.
async fn wait_until_idle(engine: &Engine, workflow: &str) {
    let mut events = engine.subscribe();
    while unfinished(engine, workflow).await > 0 {
        // A run of the workflow ending is the signal; the timeout covers runs ended elsewhere.
        let _ = tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                match events.recv().await {
                    Ok(Event::Run {
                        workflow: w, state, ..
                    }) if w == workflow && state.is_terminal() => return,
                    Ok(_) => {}
                    Err(_) => return,
                }
            }
        })
        .await;
    }
}
