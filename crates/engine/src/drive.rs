//! The work loop: claim runnable runs, execute each in its own task, renew leases, and sleep until
//! something can happen (runs become claimable, a slot frees while runs wait, a parked run is due,
//! a lease may expire).
//!
//! The loop does not poll the database in a busy loop: it claims when told that runs may have
//! become claimable ([`Inner::kick`]), when a slot frees while runs wait in the store, when a
//! known due time comes, and at least every poll interval, which catches work created by other
//! processes. A run that merely finished wakes it (for its waiters) but makes it claim nothing.
//!
//! The loop that may take any run ([`ClaimScope::All`], the hub's) also takes runs handed to it by
//! [`crate::Engine::accept`]: an event accepted while this process has a free slot is created
//! already claimed (see [`weft_store::Store::create_claimed_runs`]) and executed at once, with no
//! claim of its own. Slots are the permits of one semaphore of `max_runs`, shared by both ways in;
//! while runs wait in the store (a backlog), accepted runs queue behind them instead.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::task::JoinSet;
use weft_core::RunState;
use weft_store::{ClaimScope, Claimed, Deliver};

use crate::exec::RunExec;
use crate::{EngineError, Inner, Until};

/// A run handed over by [`crate::Engine::accept`], with the slot it executes in.
type Handed = (Claimed, OwnedSemaphorePermit);

/// The way from [`crate::Engine::accept`] into a running work loop.
#[derive(Clone)]
pub(crate) struct Handoff {
    runs: mpsc::UnboundedSender<Handed>,
    slots: Arc<Semaphore>,
    /// Set while runs may wait in the store unclaimed; cleared when a claim finds fewer than it
    /// could take.
    backlog: Arc<AtomicBool>,
}

impl Handoff {
    /// A free slot for each of `n` runs, unless there are not that many or runs wait in the store.
    pub(crate) fn slots(&self, n: usize) -> Option<OwnedSemaphorePermit> {
        if self.backlog.load(Ordering::Acquire) {
            return None;
        }
        self.slots
            .clone()
            .try_acquire_many_owned(u32::try_from(n).ok()?)
            .ok()
    }

    /// What hands the runs created claimed in `slots` to the loop, on the store's thread once they
    /// are committed (see [`weft_store::Store::create_claimed_runs`]). A run the loop can no longer
    /// take (it stopped meanwhile) goes back to the queue for whoever runs next.
    pub(crate) fn deliver(&self, mut slots: OwnedSemaphorePermit, engine: Arc<Inner>) -> Deliver {
        let runtime = tokio::runtime::Handle::current();
        let runs = self.runs.clone();
        Box::new(move |claims| {
            for claimed in claims {
                let Some(slot) = slots.split(1) else {
                    // Not reached: the store delivers at most the runs it was given.
                    tracing::error!(run_id = %claimed.lease.run_id, "A run was delivered without a slot; its lease expires instead.");
                    continue;
                };
                if let Err(e) = runs.send((claimed, slot)) {
                    let (claimed, _slot) = e.0;
                    let engine = Arc::clone(&engine);
                    runtime.spawn(async move {
                        if let Err(e) = engine.store.release(&claimed.lease).await {
                            tracing::warn!(run_id = %claimed.lease.run_id, error = %e, "An accepted run could not be given back; its lease expires instead.");
                        }
                        engine.kick();
                    });
                }
            }
        })
    }

    /// Notes that a run was left queued in the store: later runs queue behind it.
    pub(crate) fn queued(&self) {
        self.backlog.store(true, Ordering::Release);
    }
}

pub(crate) async fn drive(
    engine: Arc<Inner>,
    scope: ClaimScope,
    until: Until,
) -> Result<(), EngineError> {
    let slots = Arc::new(Semaphore::new(engine.options.max_runs));
    let backlog = Arc::new(AtomicBool::new(true));
    let mut handed = match scope {
        ClaimScope::All => register(&engine, &slots, &backlog),
        ClaimScope::Tree(_) => None,
    };
    let result = work(&engine, &scope, &until, &slots, &backlog, &mut handed).await;
    // `work` closes the way in itself before it waits for its runs at shutdown; this is for when
    // it returned early with an error.
    unregister(&engine, &slots, handed.take()).await;
    result
}

async fn work(
    engine: &Arc<Inner>,
    scope: &ClaimScope,
    until: &Until,
    slots: &Arc<Semaphore>,
    backlog: &AtomicBool,
    handed: &mut Option<mpsc::UnboundedReceiver<Handed>>,
) -> Result<(), EngineError> {
    let mut tasks: JoinSet<String> = JoinSet::new();
    // The run each task executes, by task id (a panicking task still reports its id).
    let mut in_flight: HashMap<tokio::task::Id, String> = HashMap::new();
    let mut shutdown = engine.shutdown.subscribe();
    let renew_every = engine.options.lease / 3;
    let mut last_renew = Instant::now();
    // Whether to claim on this turn: on the first, after a timer, when told that runs may have
    // become claimable, and when a slot freed while runs wait. Not merely because a run finished:
    // each of those would be a write that finds nothing.
    let mut claim = true;
    let mut claimable = engine.claimable.load(Ordering::Acquire);
    // A claim is owed at least every poll interval, however often the loop wakes, for work that
    // nothing here is told about (other processes' runs, leases that ran out).
    let mut last_claim = Instant::now();
    // When the next parked run is due or another process's lease may end, read after each claim
    // (what changes it makes runs claimable, so a claim follows).
    let mut next_wake = None;

    loop {
        let notified = engine.wake.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();

        while let Some(done) = tasks.try_join_next() {
            finished(done, &mut in_flight);
            claim |= backlog.load(Ordering::Acquire);
        }
        while let Some((claimed, slot)) = handed.as_mut().and_then(|rx| rx.try_recv().ok()) {
            spawn(engine, &mut tasks, &mut in_flight, claimed, slot).await;
        }
        if *shutdown.borrow() {
            break;
        }
        if tasks.is_empty() && done(engine, scope, until).await? {
            break;
        }

        let told = engine.claimable.load(Ordering::Acquire);
        claim |= told != claimable || last_claim.elapsed() >= engine.options.poll_interval;
        claimable = told;
        let taken = if claim { take_slots(slots) } else { None };
        if claim && taken.is_none() {
            // Owed but no slot is free: accepted runs queue behind, and the next free slot claims
            // (the poll timer starts again meanwhile, or it would fire at once, again and again).
            backlog.store(true, Ordering::Release);
            last_claim = Instant::now();
        }
        if let Some((capacity, mut permits)) = taken {
            last_claim = Instant::now();
            match engine
                .store
                .claim(scope, capacity, engine.clock.now(), engine.options.lease)
                .await
            {
                Ok(claimed) => {
                    // Taking fewer than it could means nothing else waits: accepted runs may
                    // start at once again.
                    backlog.store(claimed.len() >= capacity, Ordering::Release);
                    claim = false;
                    for c in claimed {
                        match permits.split(1) {
                            Some(slot) => spawn(engine, &mut tasks, &mut in_flight, c, slot).await,
                            // Not reached: a claim takes at most the runs it is asked for.
                            None => {
                                let _ = engine.store.release(&c.lease).await;
                            }
                        }
                    }
                    match engine.store.next_wake(scope, engine.clock.now()).await {
                        Ok(at) => next_wake = at,
                        Err(e) => {
                            tracing::warn!(error = %e, "Reading when work is next due failed; looking again at the next poll.");
                        }
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

        // Sleep until something can change. While a claim is still owed (every slot was taken, or
        // it failed), a due time cannot be acted on before a slot frees or the retry below.
        let now = engine.clock.now();
        let due = if claim { None } else { next_wake };
        if tasks.is_empty() {
            // Nothing runs here, so time may jump straight to the next wake (a virtual clock does).
            let poll = engine
                .options
                .poll_interval
                .saturating_sub(last_claim.elapsed());
            let wait = due.map_or(poll, |t| Duration::from_millis((t - now).max(0) as u64));
            let wait = wait.min(poll);
            tokio::select! {
                _ = &mut notified => {}
                Some((claimed, slot)) = next_handed(handed) => {
                    spawn(engine, &mut tasks, &mut in_flight, claimed, slot).await;
                }
                _ = engine.clock.sleep(wait) => claim = true,
                _ = shutdown.changed() => {}
            }
        } else {
            let mut wait = renew_every.saturating_sub(last_renew.elapsed()).min(
                engine
                    .options
                    .poll_interval
                    .saturating_sub(last_claim.elapsed()),
            );
            if let Some(t) = due {
                wait = wait.min(Duration::from_millis((t - now).max(0) as u64));
            }
            tokio::select! {
                _ = &mut notified => {}
                Some((claimed, slot)) = next_handed(handed) => {
                    spawn(engine, &mut tasks, &mut in_flight, claimed, slot).await;
                }
                done = tasks.join_next() => {
                    if let Some(done) = done {
                        finished(done, &mut in_flight);
                        claim |= backlog.load(Ordering::Acquire);
                    }
                }
                _ = tokio::time::sleep(wait) => claim = true,
                _ = shutdown.changed() => {}
            }
        }
    }

    // Shutting down: runs stop at their next step boundary and give their leases back, as do the
    // runs handed over but not started.
    unregister(engine, slots, handed.take()).await;
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

/// Takes every free slot for a claim: how many, and their permits; `None` when none is free.
fn take_slots(slots: &Arc<Semaphore>) -> Option<(usize, OwnedSemaphorePermit)> {
    // An accept may take slots between the count and the taking: count again then.
    for _ in 0..3 {
        let free = slots.available_permits();
        if free == 0 {
            return None;
        }
        if let Ok(permits) = slots.clone().try_acquire_many_owned(free as u32) {
            return Some((free, permits));
        }
    }
    None
}

/// Opens the way in for [`crate::Engine::accept`], unless another loop has it.
fn register(
    engine: &Inner,
    slots: &Arc<Semaphore>,
    backlog: &Arc<AtomicBool>,
) -> Option<mpsc::UnboundedReceiver<Handed>> {
    let mut handoff = engine.handoff.lock().unwrap_or_else(|p| p.into_inner());
    if handoff.is_some() {
        return None;
    }
    let (tx, rx) = mpsc::unbounded_channel();
    *handoff = Some(Handoff {
        runs: tx,
        slots: slots.clone(),
        backlog: backlog.clone(),
    });
    Some(rx)
}

/// Closes the way in and gives back the leases of the runs handed over but not started; a run
/// accepted later is created queued (or, when the hand-over fails, given back by its acceptor).
async fn unregister(
    engine: &Inner,
    slots: &Arc<Semaphore>,
    handed: Option<mpsc::UnboundedReceiver<Handed>>,
) {
    let Some(mut rx) = handed else { return };
    {
        let mut handoff = engine.handoff.lock().unwrap_or_else(|p| p.into_inner());
        if handoff
            .as_ref()
            .is_some_and(|h| Arc::ptr_eq(&h.slots, slots))
        {
            *handoff = None;
        }
    }
    rx.close();
    while let Ok((claimed, _slot)) = rx.try_recv() {
        if let Err(e) = engine.store.release(&claimed.lease).await {
            tracing::warn!(run_id = %claimed.lease.run_id, error = %e, "A run handed over at shutdown could not be given back; its lease expires instead.");
        }
    }
}

/// The next run handed over, or never when this loop takes none.
async fn next_handed(handed: &mut Option<mpsc::UnboundedReceiver<Handed>>) -> Option<Handed> {
    match handed {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

async fn spawn(
    engine: &Arc<Inner>,
    tasks: &mut JoinSet<String>,
    in_flight: &mut HashMap<tokio::task::Id, String>,
    claimed: Claimed,
    slot: OwnedSemaphorePermit,
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
        // The slot is free again when the task ends, however it ends.
        let _slot = slot;
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
