//! The work loop: claim runnable runs, execute each in its own task, renew leases, and sleep until
//! something can happen (a run is created or finishes, a parked run is due, a lease may expire).
//!
//! An idle loop does not poll the database in a busy loop: it sleeps until the next known wake time,
//! a local notification, or the poll interval that catches work created by other processes.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::task::JoinSet;
use weft_core::RunState;
use weft_store::{ClaimScope, Claimed};

use crate::exec::RunExec;
use crate::{EngineError, Inner, Until};

pub(crate) async fn drive(
    engine: Arc<Inner>,
    scope: ClaimScope,
    until: Until,
) -> Result<(), EngineError> {
    let mut tasks: JoinSet<String> = JoinSet::new();
    // The run each task executes, by task id (a panicking task still reports its id).
    let mut in_flight: HashMap<tokio::task::Id, String> = HashMap::new();
    let mut shutdown = engine.shutdown.subscribe();
    let renew_every = engine.options.lease / 3;
    let mut last_renew = Instant::now();

    loop {
        let notified = engine.wake.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();

        while let Some(done) = tasks.try_join_next() {
            finished(done, &mut in_flight);
        }
        if *shutdown.borrow() {
            break;
        }
        if tasks.is_empty() && done(&engine, &scope, &until).await? {
            break;
        }

        let capacity = engine.options.max_runs.saturating_sub(tasks.len());
        let mut claimed_any = false;
        if capacity > 0 {
            match engine
                .store
                .claim(&scope, capacity, engine.clock.now(), engine.options.lease)
                .await
            {
                Ok(claimed) => {
                    for c in claimed {
                        claimed_any = true;
                        spawn(&engine, &mut tasks, &mut in_flight, c).await;
                    }
                }
                Err(e) if e.is_retryable() => {
                    tracing::warn!(error = %e, "Claiming runs failed; trying again shortly.");
                }
                Err(e) => return Err(e.into()),
            }
        }
        if !tasks.is_empty() && last_renew.elapsed() >= renew_every {
            if let Err(e) = engine
                .store
                .renew_leases(engine.clock.now(), engine.options.lease)
                .await
            {
                tracing::warn!(error = %e, "Renewing leases failed; trying again shortly.");
            }
            last_renew = Instant::now();
        }
        if claimed_any {
            continue;
        }

        // Nothing to claim now: sleep until something can change.
        let now = engine.clock.now();
        let next_wake = engine.store.next_wake(&scope, now).await?;
        if tasks.is_empty() {
            // Nothing runs here, so time may jump straight to the next wake (a virtual clock does).
            let wait = next_wake.map_or(engine.options.poll_interval, |t| {
                Duration::from_millis((t - now).max(0) as u64)
            });
            let wait = wait.min(engine.options.poll_interval);
            tokio::select! {
                _ = &mut notified => {}
                _ = engine.clock.sleep(wait) => {}
                _ = shutdown.changed() => {}
            }
        } else {
            let mut wait = renew_every
                .saturating_sub(last_renew.elapsed())
                .min(engine.options.poll_interval);
            if let Some(t) = next_wake {
                wait = wait.min(Duration::from_millis((t - now).max(0) as u64));
            }
            tokio::select! {
                _ = &mut notified => {}
                done = tasks.join_next() => {
                    if let Some(done) = done {
                        finished(done, &mut in_flight);
                    }
                }
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown.changed() => {}
            }
        }
    }

    // Shutting down: runs stop at their next step boundary and give their leases back.
    while let Some(done) = tasks.join_next().await {
        finished(done, &mut in_flight);
    }
    Ok(())
}

async fn done(engine: &Inner, scope: &ClaimScope, until: &Until) -> Result<bool, EngineError> {
    Ok(match until {
        Until::RunFinished(id) => engine
            .store
            .get_run(id)
            .await?
            .is_none_or(|r| r.state.is_terminal() || r.state == RunState::Cancelled),
        Until::Idle => engine.store.unfinished(scope).await? == 0,
        Until::Shutdown => false,
    })
}

fn finished(
    done: Result<String, tokio::task::JoinError>,
    in_flight: &mut HashMap<tokio::task::Id, String>,
) {
    match done {
        Ok(id) => in_flight.retain(|_, run| *run != id),
        Err(e) => {
            // A panic in a run task is a bug; the run's lease expires and it is claimed again.
            let run = in_flight.remove(&e.id());
            tracing::error!(error = %e, run_id = ?run, "A run task ended abnormally.");
        }
    }
}

async fn spawn(
    engine: &Arc<Inner>,
    tasks: &mut JoinSet<String>,
    in_flight: &mut HashMap<tokio::task::Id, String>,
    claimed: Claimed,
) {
    let id = claimed.run.id.clone();
    if in_flight.values().any(|run| *run == id) {
        // Our own lease ran out while the run was still executing here (renewals failed). The claim
        // fenced the old task off; give the run back so it resumes cleanly once that task stops.
        let _ = engine.store.release(&claimed.lease).await;
        return;
    }
    let engine = engine.clone();
    let run = id.clone();
    // Lines logged while the run executes (connectors included) carry its id through this span.
    let span = tracing::info_span!("run", run_id = %id, workflow = %claimed.run.workflow);
    let handle = tasks.spawn(tracing::Instrument::instrument(async move {
        match RunExec::load(engine.clone(), claimed).await {
            Ok(exec) => exec.execute().await,
            Err((lease, message)) => {
                let error = serde_json::json!({"step": null, "kind": "load", "message": message}).to_string();
                let now = engine.clock.now();
                if let Err(e) = engine.store.finish_run(&lease, RunState::Failed, None, Some(&error), now).await {
                    tracing::error!(run_id = %lease.run_id, error = %e, "A run that cannot be loaded could not be marked failed.");
                }
                engine.wake.notify_waiters();
            }
        }
        id
    }, span));
    in_flight.insert(handle.id(), run);
}
