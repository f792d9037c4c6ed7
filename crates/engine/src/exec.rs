//! Executing one claimed run: walk its steps, take committed outcomes from the store, run the first
//! step without one, and commit each outcome before going on.
//!
//! The walk is deterministic given the committed records: an `if` or `switch` records its branch
//! before its steps run, a `for_each` records its items, a `wait` records when it ends and a `call`
//! finds its child by an idempotency key. So a run that resumes after a crash takes the same path and
//! re-runs at most the step that was in flight.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use futures_util::stream::{FuturesUnordered, StreamExt};
use serde_json::{Value, json};
use weft_connectors::{ActionError, Call};
use weft_core::expr::{EvalLimits, Limit};
use weft_core::workflow::{ApprovalSpec, OnTimeout};
use weft_core::{
    AttemptState, EvalError, Expr, OnError, RunState, Step, StepKey, StepKind, Template, Val,
    ValMap, WaitSpec, Workflow, json_to_val, val_to_json,
};
use weft_store::{
    ApprovalRecord, ApprovalState, AttemptRecord, Claimed, Lease, Millis, NewApproval, NewRun,
    Outcome, RunRecord, StoreError,
};

use crate::{Current, Event, Inner};

/// Why the walk stopped before the end of the workflow.
#[derive(Debug)]
pub(crate) enum Stop {
    /// A step failed for good; the run fails with this error.
    Failed(Value),
    /// The run waits until this time, given back to the store.
    Park(Millis),
    /// Cancellation was requested.
    Cancelled,
    /// Another process took the run over.
    LeaseLost,
    /// The engine is shutting down.
    Shutdown,
    /// The store failed; the run is given back and continued later.
    Store(StoreError),
}

impl From<StoreError> for Stop {
    fn from(e: StoreError) -> Stop {
        match e {
            StoreError::LeaseLost { .. } => Stop::LeaseLost,
            other => Stop::Store(other),
        }
    }
}

/// Where the walk goes after a step.
enum Next {
    Continue,
    Goto(usize),
}

/// The state of one list of steps being walked.
#[derive(Clone)]
struct Scope {
    /// Item indices of the enclosing `for_each` steps.
    indices: Vec<usize>,
    /// The current item and its index, inside a `for_each`.
    item: Option<(Val, usize)>,
    /// `.steps`: outputs visible here.
    steps: ValMap,
    /// The output of the last step that ran (the default output of a workflow or item).
    last: Option<Val>,
    /// Whether the run may be parked from here (outside any `for_each`).
    top: bool,
}

/// A claimed run being executed.
pub(crate) struct RunExec {
    engine: Arc<Inner>,
    /// The project snapshot the run was claimed under: its settings and connectors.
    current: Arc<Current>,
    lease: Lease,
    run: RunRecord,
    workflow: Arc<Workflow>,
    history: HashMap<StepKey, Vec<AttemptRecord>>,
    base: ValMap,
    /// The size of the run context: every step output stored so far, as JSON bytes (items of
    /// `for_each` steps run side by side, hence atomic).
    context_bytes: std::sync::atomic::AtomicU64,
    /// Queued outcomes of steps that had their start recorded (steps that may act outside the
    /// run), counted as queued and as known to be on disk: a `map` step skips recording its start
    /// only while every such outcome is stored, so that a crash during it re-runs no step that
    /// acted outside the run and had finished.
    effects: Effects,
    /// The limits its expressions run under (the project's, when it was claimed).
    limits: EvalLimits,
    /// Set to stop the expressions it evaluates: its cancellation was requested, or the engine is
    /// stopping. Registered in [`Inner::running`] while it executes.
    cancel: Arc<AtomicBool>,
}

impl Drop for RunExec {
    fn drop(&mut self) {
        if let Ok(mut running) = self.engine.running.lock()
            && running
                .get(&self.run.id)
                .is_some_and(|r| Arc::ptr_eq(&r.cancel, &self.cancel))
        {
            running.remove(&self.run.id);
        }
    }
}

/// See [`RunExec::effects`].
#[derive(Default)]
struct Effects {
    queued: AtomicU64,
    stored: AtomicU64,
}

fn key(name: &str) -> Val {
    Val::from(name.to_string())
}

fn error_json(step: &StepKey, kind: &str, message: impl Into<String>) -> Value {
    json!({"step": step.as_str(), "kind": kind, "message": message.into()})
}

/// The step error of a failed expression: kind `limit` when a limit stopped it (not retried,
/// like every expression failure), `expression` otherwise.
fn expression_error(step: &StepKey, e: &EvalError) -> Value {
    let kind = if e.limit.is_some() {
        "limit"
    } else {
        "expression"
    };
    let mut err = error_json(step, kind, format!("step `{}`: {e}", step.step_id()));
    err["expression"] = Value::String(e.code.clone());
    err
}

fn message_of(error: &Value) -> String {
    error
        .get("message")
        .and_then(Value::as_str)
        .map_or_else(|| error.to_string(), String::from)
}

/// Attempts before and including the latest operator retry do not count against the limit.
fn budget_base(history: &[AttemptRecord]) -> u32 {
    history
        .iter()
        .filter(|a| a.budget_reset)
        .map(|a| a.attempt)
        .max()
        .unwrap_or(0)
}

impl RunExec {
    /// Prepares the execution of a claimed run: loads its workflow version and its history.
    pub(crate) async fn load(
        engine: Arc<Inner>,
        claimed: Claimed,
    ) -> Result<RunExec, (Lease, String)> {
        let Claimed { lease, run } = claimed;
        let workflow = match workflow_for(&engine, &run).await {
            Ok(w) => w,
            Err(message) => return Err((lease, message)),
        };
        // Attempts are only recorded under a lease, so a run claimed for the first time (epoch 1)
        // has none and its history need not be read.
        let attempts = if lease.epoch <= 1 {
            Vec::new()
        } else {
            match engine.store.attempts(&run.id).await {
                Ok(a) => a,
                Err(e) => return Err((lease, format!("cannot read the run's history: {e}"))),
            }
        };
        let mut history: HashMap<StepKey, Vec<AttemptRecord>> = HashMap::new();
        for a in attempts {
            history.entry(a.step_key.clone()).or_default().push(a);
        }
        for list in history.values_mut() {
            list.sort_by_key(|a| a.attempt);
        }
        // A resumed run carries what it stored before.
        let context_bytes: u64 = history
            .values()
            .flatten()
            .filter(|a| a.state == AttemptState::Succeeded)
            .filter_map(|a| a.output.as_ref())
            .map(|o| o.to_string().len() as u64)
            .sum();
        let current = engine.current();
        let mut vars = current.project.settings.vars.clone();
        vars.extend(workflow.vars.clone());
        let mut base = ValMap::default();
        base.insert(key("trigger"), json_to_val(&run.trigger));
        base.insert(key("input"), json_to_val(&run.input));
        base.insert(key("vars"), json_to_val(&Value::Object(vars)));
        base.insert(key("env"), current.env.clone());
        let limits = current.project.settings.limits.expressions();
        let cancel = Arc::new(AtomicBool::new(engine.stopping.load(Ordering::Relaxed)));
        if let Ok(mut running) = engine.running.lock() {
            running.insert(
                run.id.clone(),
                crate::Running {
                    cancel: cancel.clone(),
                    parent: run.parent_id.clone(),
                },
            );
        }
        Ok(RunExec {
            engine,
            current,
            lease,
            run,
            workflow,
            history,
            base,
            context_bytes: context_bytes.into(),
            effects: Effects::default(),
            limits,
            cancel,
        })
    }

    /// Executes the run until it finishes, parks or has to stop, and records that.
    pub(crate) async fn execute(self) {
        let mut scope = Scope {
            indices: Vec::new(),
            item: None,
            steps: ValMap::default(),
            last: None,
            top: true,
        };
        let workflow = self.workflow.clone();
        let result = self.run_steps(&workflow.steps, &mut scope).await;
        let result = match result {
            Ok(()) => match self.output(&scope).await {
                Ok(output) => output.map_err(Stop::Failed),
                Err(stop) => Err(stop),
            },
            Err(stop) => Err(stop),
        };
        self.settle(result).await;
    }

    /// The run's output: `output:` evaluated, or the last top-level output; or the run's error.
    async fn output(&self, scope: &Scope) -> Result<Result<Value, Value>, Stop> {
        let value = match &self.workflow.output {
            Some(template) => match self.eval_raw(template, scope, 1).await {
                Ok(value) => value,
                Err(e) => {
                    self.stop_if_cancelled(&e)?;
                    let kind = if e.limit.is_some() {
                        "limit"
                    } else {
                        "expression"
                    };
                    let mut err = json!({"step": null, "kind": kind, "message": format!("the workflow output: {e}")});
                    err["expression"] = Value::String(e.code.clone());
                    return Ok(Err(err));
                }
            },
            None => scope.last.clone().unwrap_or(Val::Null),
        };
        Ok(self.output_json(value))
    }

    /// The run's output as stored: JSON, within `limits.max_output_bytes`.
    fn output_json(&self, value: Val) -> Result<Value, Value> {
        let json = val_to_json(&value)
            .map_err(|m| json!({"step": null, "kind": "output", "message": m}))?;
        let limit = self.current.project.settings.limits.max_output_bytes;
        let size = json.to_string().len() as u64;
        if size > limit {
            return Err(
                json!({"step": null, "kind": "limit", "message": format!("the run output is {size} bytes, above limits.max_output_bytes ({limit})")}),
            );
        }
        Ok(json)
    }

    /// Replaces every credential value known to the run's connectors in `value`, before it is
    /// stored, logged or seen by a later step; says whether anything changed.
    fn scrub(&self, value: &mut Value) -> bool {
        self.current.registry.secrets().scrubber().json(value)
    }

    async fn settle(&self, result: Result<Value, Stop>) {
        let result = match result {
            Ok(mut output) => {
                self.scrub(&mut output);
                Ok(output)
            }
            Err(Stop::Failed(mut error)) => {
                self.scrub(&mut error);
                Err(Stop::Failed(error))
            }
            other => other,
        };
        let store = &self.engine.store;
        let now = self.engine.clock.now();
        let (state, until, outcome) = match result {
            Ok(output) => (
                RunState::Succeeded,
                None,
                store
                    .finish_run(
                        &self.lease,
                        RunState::Succeeded,
                        Some(&output.to_string()),
                        None,
                        now,
                    )
                    .await,
            ),
            Err(Stop::Failed(error)) => (
                RunState::Failed,
                None,
                store
                    .finish_run(
                        &self.lease,
                        RunState::Failed,
                        None,
                        Some(&error.to_string()),
                        now,
                    )
                    .await,
            ),
            Err(Stop::Cancelled) => {
                let error = json!({"message": "the run was cancelled"}).to_string();
                (
                    RunState::Cancelled,
                    None,
                    store
                        .finish_run(&self.lease, RunState::Cancelled, None, Some(&error), now)
                        .await,
                )
            }
            Err(Stop::Park(at)) => (
                RunState::Waiting,
                Some(at),
                store.park(&self.lease, at, now).await,
            ),
            Err(Stop::Shutdown) => (RunState::Running, None, store.release(&self.lease).await),
            Err(Stop::LeaseLost) => {
                tracing::warn!(run_id = %self.run.id, "Another process took over the run; this one stops working on it.");
                return;
            }
            Err(Stop::Store(e)) => {
                tracing::error!(run_id = %self.run.id, error = %e, "The store failed; the run is given back and continues later.");
                let _ = store.release(&self.lease).await;
                self.engine.kick();
                return;
            }
        };
        match outcome {
            Ok(()) => {
                if state.is_terminal() {
                    metrics::counter!("weft_runs_finished_total", "workflow" => self.run.workflow.clone(), "state" => state.as_str()).increment(1);
                    if state == RunState::Succeeded {
                        tracing::debug!(run_id = %self.run.id, workflow = %self.run.workflow, "Run succeeded.");
                    } else {
                        tracing::info!(run_id = %self.run.id, workflow = %self.run.workflow, state = state.as_str(), "Run ended without success.");
                    }
                }
                let _ = self.engine.events.send(Event::Run {
                    run_id: self.run.id.clone(),
                    workflow: self.run.workflow.clone(),
                    state,
                    until,
                });
                // A parked or given-back run is for a claim; a finished one only for its waiters.
                if state.is_terminal() {
                    self.engine.wake.notify_waiters();
                } else {
                    self.engine.kick();
                }
            }
            Err(StoreError::LeaseLost { .. }) => {
                tracing::warn!(run_id = %self.run.id, "Another process took over the run before it could be settled.");
            }
            Err(e) => {
                tracing::error!(run_id = %self.run.id, error = %e, "The run's end could not be recorded; it continues later.");
                let _ = store.release(&self.lease).await;
                self.engine.kick();
            }
        }
    }

    /// The run context for expressions: `{trigger, input, steps, vars, run, env}`, plus `item` and
    /// `index` inside a `for_each`.
    fn context(&self, scope: &Scope, attempt: u32) -> Val {
        let mut map = self.base.clone();
        map.insert(key("steps"), Val::obj(scope.steps.clone()));
        let mut run = ValMap::default();
        run.insert(key("id"), key(&self.run.id));
        run.insert(key("workflow"), key(&self.run.workflow));
        run.insert(key("attempt"), json_to_val(&json!(attempt)));
        map.insert(key("run"), Val::obj(run));
        if let Some((item, index)) = &scope.item {
            map.insert(key("item"), item.clone());
            map.insert(key("index"), json_to_val(&json!(index)));
        }
        Val::obj(map)
    }

    fn history(&self, key: &StepKey) -> &[AttemptRecord] {
        self.history.get(key).map_or(&[], Vec::as_slice)
    }

    fn shutting_down(&self) -> bool {
        *self.engine.shutdown.borrow()
    }

    fn emit(
        &self,
        step: &StepKey,
        attempt: u32,
        state: AttemptState,
        started: Instant,
        error: Option<&Value>,
        until: Option<Millis>,
    ) {
        let elapsed = started.elapsed();
        match state {
            AttemptState::Succeeded | AttemptState::Failed | AttemptState::Retrying => {
                metrics::histogram!("weft_step_duration_seconds", "workflow" => self.run.workflow.clone(), "step" => step.step_id().to_string(), "state" => state.as_str()).record(elapsed.as_secs_f64());
                if state == AttemptState::Retrying {
                    metrics::counter!("weft_step_retries_total", "workflow" => self.run.workflow.clone(), "step" => step.step_id().to_string()).increment(1);
                }
            }
            _ => {}
        }
        // Every line names the run and the step; starts and successes are detail, failures news.
        let (run_id, workflow, step_id) = (&self.run.id, &self.run.workflow, step.as_str());
        let elapsed_ms = elapsed.as_millis() as u64;
        match state {
            AttemptState::Started => {
                tracing::debug!(run_id = %run_id, workflow = %workflow, step = %step_id, attempt, "Step started.");
            }
            AttemptState::Succeeded => {
                tracing::debug!(run_id = %run_id, workflow = %workflow, step = %step_id, attempt, elapsed_ms, "Step succeeded.");
            }
            AttemptState::Waiting => {
                tracing::debug!(run_id = %run_id, workflow = %workflow, step = %step_id, attempt, until = ?until, "Step waiting.");
            }
            AttemptState::Retrying => {
                let error = error.map(message_of).unwrap_or_default();
                tracing::info!(run_id = %run_id, workflow = %workflow, step = %step_id, attempt, elapsed_ms, error = %error, retry_at = ?until, "Step attempt failed; another follows.");
            }
            AttemptState::Failed | AttemptState::Handled => {
                let error = error.map(message_of).unwrap_or_default();
                tracing::info!(run_id = %run_id, workflow = %workflow, step = %step_id, attempt, elapsed_ms, error = %error, handled = state == AttemptState::Handled, "Step failed.");
            }
            AttemptState::Skipped | AttemptState::Interrupted => {}
        }
        let _ = self.engine.events.send(Event::Step {
            run_id: self.run.id.clone(),
            workflow: self.run.workflow.clone(),
            step: step.clone(),
            attempt,
            state,
            elapsed,
            error: error.map(message_of),
            until,
        });
    }

    fn check_fence(fence: weft_store::Fence) -> Result<(), Stop> {
        if fence.cancel_requested {
            Err(Stop::Cancelled)
        } else {
            Ok(())
        }
    }

    /// Waits until `at`: parks the run when allowed and the wait is long, otherwise sleeps.
    async fn wait_until(&self, at: Millis, scope: &Scope) -> Result<(), Stop> {
        let now = self.engine.clock.now();
        if at <= now {
            return Ok(());
        }
        let wait = Duration::from_millis((at - now) as u64);
        if scope.top && wait >= self.engine.options.park_after {
            return Err(Stop::Park(at));
        }
        let mut shutdown = self.engine.shutdown.subscribe();
        tokio::select! {
            _ = self.engine.clock.sleep(wait) => Ok(()),
            _ = shutdown.wait_for(|s| *s) => Err(Stop::Shutdown),
        }
    }

    fn run_steps<'a>(
        &'a self,
        steps: &'a [Step],
        scope: &'a mut Scope,
    ) -> BoxFuture<'a, Result<(), Stop>> {
        Box::pin(async move {
            let mut i = 0;
            while i < steps.len() {
                if self.shutting_down() {
                    return Err(Stop::Shutdown);
                }
                i = match self.run_step(&steps[i], steps, scope).await? {
                    Next::Continue => i + 1,
                    Next::Goto(j) => j,
                };
            }
            Ok(())
        })
    }

    /// Commits a successful outcome of attempt `attempt` (whose row exists) and makes it visible to
    /// later steps. An output that cannot be stored fails the step instead.
    async fn succeed(
        &self,
        at: &At<'_>,
        scope: &mut Scope,
        attempt: u32,
        output: Val,
    ) -> Result<Next, Stop> {
        self.succeed_in(at, scope, attempt, Row::Begun, output)
            .await
    }

    /// Settles attempt `attempt` as succeeded with `output`, finishing its recorded start
    /// ([`Row::Begun`]) or recording it whole ([`Row::New`]).
    async fn succeed_in(
        &self,
        at: &At<'_>,
        scope: &mut Scope,
        attempt: u32,
        row: Row,
        output: Val,
    ) -> Result<Next, Stop> {
        let mut json = match val_to_json(&output) {
            Ok(json) => json,
            Err(m) => {
                let error = error_json(&at.key, "output", format!("step `{}`: {m}", at.step.id));
                return self.fail(at, scope, attempt, row, error).await;
            }
        };
        // Later steps see what is stored: the output without credentials.
        let output = if self.scrub(&mut json) {
            json_to_val(&json)
        } else {
            output
        };
        let text = json.to_string();
        let limit = self.current.project.settings.limits.max_output_bytes;
        if text.len() as u64 > limit {
            let error = error_json(
                &at.key,
                "limit",
                format!(
                    "the output of step `{}` is {} bytes, above limits.max_output_bytes ({limit}); nothing was cut short",
                    at.step.id,
                    text.len()
                ),
            );
            return self.fail(at, scope, attempt, row, error).await;
        }
        let size = text.len() as u64;
        let limit = self.current.project.settings.limits.max_context_bytes;
        let before = self
            .context_bytes
            .fetch_add(size, std::sync::atomic::Ordering::Relaxed);
        if before + size > limit {
            self.context_bytes
                .fetch_sub(size, std::sync::atomic::Ordering::Relaxed);
            let error = error_json(
                &at.key,
                "limit",
                format!(
                    "the output of step `{}` ({size} bytes) would make the run context {} bytes, above limits.max_context_bytes ({limit}); nothing was cut short",
                    at.step.id,
                    before + size
                ),
            );
            return self.fail(at, scope, attempt, row, error).await;
        }
        let outcome = Outcome {
            state: AttemptState::Succeeded,
            output: Some(text),
            error: None,
            wake_at: None,
        };
        // Not waited for: the run's next write (the next step's start, or the run's end) is stored
        // after it or not at all, and nothing outside the run sees the outcome before then. A
        // cancellation is seen by the next step's start; after the last step the run ends as it
        // finished, succeeded.
        let now = self.engine.clock.now();
        match row {
            Row::Begun => {
                self.effects.queued.fetch_add(1, Ordering::AcqRel);
                self.engine
                    .store
                    .queue_finish_attempt(&self.lease, &at.key, attempt, &outcome, now)
            }
            Row::New => {
                self.engine
                    .store
                    .queue_record_attempt(&self.lease, &at.key, attempt, &outcome, now)
            }
        }
        self.emit(
            &at.key,
            attempt,
            AttemptState::Succeeded,
            at.started,
            None,
            None,
        );
        scope.steps.insert(key(&at.step.id), output.clone());
        scope.last = Some(output);
        Ok(Next::Continue)
    }

    /// Settles a step as failed for good: the run fails, or `on_error` lets it go on.
    async fn fail(
        &self,
        at: &At<'_>,
        scope: &mut Scope,
        attempt: u32,
        row: Row,
        mut error: Value,
    ) -> Result<Next, Stop> {
        self.scrub(&mut error);
        let state = if at.step.on_error == OnError::Fail {
            AttemptState::Failed
        } else {
            AttemptState::Handled
        };
        let outcome = Outcome {
            state,
            output: None,
            error: Some(error.to_string()),
            wake_at: None,
        };
        let now = self.engine.clock.now();
        let fence = match row {
            Row::Begun => {
                self.engine
                    .store
                    .finish_attempt(&self.lease, &at.key, attempt, &outcome, now)
                    .await?
            }
            Row::New => {
                self.engine
                    .store
                    .record_attempt(&self.lease, &at.key, attempt, None, &outcome, now)
                    .await?
            }
        };
        self.emit(&at.key, attempt, state, at.started, Some(&error), None);
        if state == AttemptState::Failed {
            return Err(Stop::Failed(error));
        }
        Self::check_fence(fence)?;
        Ok(Self::handled(at.step, at.siblings, scope, &error))
    }

    /// Where `on_error` sends the walk after a failure that it handles.
    fn handled(step: &Step, siblings: &[Step], scope: &mut Scope, error: &Value) -> Next {
        scope
            .steps
            .insert(key(&step.id), json_to_val(&json!({ "error": error })));
        match &step.on_error {
            OnError::Goto(target) => siblings
                .iter()
                .position(|s| &s.id == target)
                .map_or(Next::Continue, Next::Goto),
            _ => Next::Continue,
        }
    }

    /// Records a whole attempt that settled without running: a skipped step or an `if`/`switch`
    /// decision. Queued like a step's success (see [`RunExec::succeed`]).
    fn settle_at_once(
        &self,
        at: &At<'_>,
        attempt: u32,
        state: AttemptState,
        output: Option<&Value>,
    ) {
        let outcome = Outcome {
            state,
            output: output.map(Value::to_string),
            error: None,
            wake_at: None,
        };
        self.engine.store.queue_record_attempt(
            &self.lease,
            &at.key,
            attempt,
            &outcome,
            self.engine.clock.now(),
        );
        self.emit(&at.key, attempt, state, at.started, None, None);
    }

    /// Records the start of attempt `attempt` before the step runs.
    async fn begin(
        &self,
        at: &At<'_>,
        attempt: u32,
        input: Option<&Value>,
        state: AttemptState,
        wake_at: Option<Millis>,
    ) -> Result<(), Stop> {
        // No copy unless there is something to replace (this runs for every step).
        let scrubber = self.current.registry.secrets().scrubber();
        let input = input.map(|input| {
            if scrubber.finds(input) {
                let mut input = input.clone();
                scrubber.json(&mut input);
                input.to_string()
            } else {
                input.to_string()
            }
        });
        // Writes are stored in the order they are queued: once this start is stored, so is every
        // outcome queued before it.
        let queued = self.effects.queued.load(Ordering::Acquire);
        let fence = self
            .engine
            .store
            .begin_attempt(
                &self.lease,
                &at.key,
                attempt,
                input.as_deref(),
                state,
                wake_at,
                self.engine.clock.now(),
            )
            .await?;
        self.effects.stored.fetch_max(queued, Ordering::AcqRel);
        Self::check_fence(fence)?;
        self.emit(&at.key, attempt, state, at.started, None, wake_at);
        Ok(())
    }

    /// Records a failed attempt that another one follows after `delay`, and returns when.
    /// One clock reading serves as both the attempt's end and the base of its delay.
    async fn retrying(
        &self,
        at: &At<'_>,
        attempt: u32,
        error: &Value,
        delay: std::time::Duration,
    ) -> Result<Millis, Stop> {
        let now = self.engine.clock.now();
        let retry_at = now + delay.as_millis() as i64;
        let mut error = error.clone();
        self.scrub(&mut error);
        let error = &error;
        let outcome = Outcome {
            state: AttemptState::Retrying,
            output: None,
            error: Some(error.to_string()),
            wake_at: Some(retry_at),
        };
        let fence = self
            .engine
            .store
            .finish_attempt(&self.lease, &at.key, attempt, &outcome, now)
            .await?;
        self.emit(
            &at.key,
            attempt,
            AttemptState::Retrying,
            at.started,
            Some(error),
            Some(retry_at),
        );
        Self::check_fence(fence)?;
        Ok(retry_at)
    }

    /// Evaluates a template on the run context (see [`crate::eval`]).
    async fn eval_raw(
        &self,
        template: &Template,
        scope: &Scope,
        attempt: u32,
    ) -> Result<Val, EvalError> {
        let context = self.context(scope, attempt);
        self.engine
            .evaluator
            .eval(template, &context, &self.limits, Some(&self.cancel))
            .await
    }

    /// Stops the walk when an evaluation was cancelled: the hub is stopping (the run is given back
    /// and the step runs again later) or the run's cancellation was requested.
    fn stop_if_cancelled(&self, e: &EvalError) -> Result<(), Stop> {
        if e.limit == Some(Limit::Cancelled) {
            return Err(if self.shutting_down() {
                Stop::Shutdown
            } else {
                Stop::Cancelled
            });
        }
        Ok(())
    }

    /// Evaluates a template for the step at `at`: its value, or the step error that says why there
    /// is none, or a reason to stop.
    async fn eval_step(
        &self,
        at: &At<'_>,
        template: &Template,
        scope: &Scope,
        attempt: u32,
    ) -> Result<Result<Val, Value>, Stop> {
        match self.eval_raw(template, scope, attempt).await {
            Ok(value) => Ok(Ok(value)),
            Err(e) => {
                self.stop_if_cancelled(&e)?;
                Ok(Err(expression_error(&at.key, &e)))
            }
        }
    }

    /// [`RunExec::eval_step`] of a condition: jq truthiness (everything but `false` and `null`).
    async fn eval_cond(
        &self,
        at: &At<'_>,
        expr: &Arc<Expr>,
        scope: &Scope,
    ) -> Result<Result<bool, Value>, Stop> {
        let template = Template::Expr(expr.clone());
        Ok(self
            .eval_step(at, &template, scope, 1)
            .await?
            .map(|v| !matches!(v, Val::Null | Val::Bool(false))))
    }

    /// Evaluates a template into JSON, or the step error that says why it could not be, or a
    /// reason to stop.
    async fn eval_json(
        &self,
        at: &At<'_>,
        template: &Template,
        scope: &Scope,
        attempt: u32,
    ) -> Result<Result<Value, Value>, Stop> {
        let value = match self.eval_step(at, template, scope, attempt).await? {
            Ok(value) => value,
            Err(error) => return Ok(Err(error)),
        };
        Ok(val_to_json(&value)
            .map_err(|m| error_json(&at.key, "expression", format!("step `{}`: {m}", at.step.id))))
    }

    async fn run_step(
        &self,
        step: &Step,
        siblings: &[Step],
        scope: &mut Scope,
    ) -> Result<Next, Stop> {
        let at = At {
            step,
            siblings,
            key: StepKey::new(&step.id, &scope.indices),
            started: Instant::now(),
        };
        let history = self.history(&at.key);

        // A committed outcome is taken as it is.
        if let Some(last) = history.last() {
            match last.state {
                AttemptState::Skipped => {
                    scope.steps.insert(key(&step.id), Val::Null);
                    return Ok(Next::Continue);
                }
                AttemptState::Handled => {
                    let error = last.error.clone().unwrap_or(Value::Null);
                    return Ok(Self::handled(step, siblings, scope, &error));
                }
                AttemptState::Failed => {
                    // The failure was committed but the run was not settled before the process stopped.
                    return Err(Stop::Failed(last.error.clone().unwrap_or(Value::Null)));
                }
                AttemptState::Succeeded
                    if !matches!(step.kind, StepKind::If { .. } | StepKind::Switch { .. }) =>
                {
                    let output = last.output.as_ref().map_or(Val::Null, json_to_val);
                    scope.steps.insert(key(&step.id), output.clone());
                    scope.last = Some(output);
                    return Ok(Next::Continue);
                }
                _ => {}
            }
        }

        let n = self.next_number(&at.key);
        // The guard is evaluated once, before the step's first attempt.
        if history.is_empty()
            && let Some(guard) = &step.guard
        {
            match self.eval_cond(&at, guard, scope).await? {
                Ok(true) => {}
                Ok(false) => {
                    self.settle_at_once(&at, n, AttemptState::Skipped, None);
                    scope.steps.insert(key(&step.id), Val::Null);
                    return Ok(Next::Continue);
                }
                Err(error) => {
                    return self.fail(&at, scope, n, Row::New, error).await;
                }
            }
        }
        // The branch an `if` or `switch` already took.
        let decided = history
            .last()
            .filter(|a| a.state == AttemptState::Succeeded)
            .and_then(|a| a.output.clone());

        match &step.kind {
            StepKind::Uses {
                connection,
                action,
                with,
            } => self.run_uses(&at, scope, connection, action, with).await,
            StepKind::Map { value } => self.run_map(&at, scope, value).await,
            StepKind::If {
                cond,
                then,
                otherwise,
            } => {
                let branch = match decided {
                    Some(out) => out["branch"] == "then",
                    None => match self.eval_cond(&at, cond, scope).await? {
                        Ok(b) => {
                            self.settle_at_once(
                                &at,
                                n,
                                AttemptState::Succeeded,
                                Some(&branch_json(b)),
                            );
                            b
                        }
                        Err(error) => {
                            return self.fail(&at, scope, n, Row::New, error).await;
                        }
                    },
                };
                scope
                    .steps
                    .insert(key(&step.id), json_to_val(&branch_json(branch)));
                self.run_steps(if branch { then } else { otherwise }, scope)
                    .await?;
                Ok(Next::Continue)
            }
            StepKind::Switch {
                value,
                cases,
                default,
            } => {
                let case: Option<String> = match decided {
                    Some(out) => out["case"].as_str().map(String::from),
                    None => {
                        let picked = match self.eval_step(&at, value, scope, 1).await? {
                            Ok(v) => text_of(&v),
                            Err(error) => {
                                return self.fail(&at, scope, n, Row::New, error).await;
                            }
                        };
                        let case = cases
                            .iter()
                            .any(|(name, _)| *name == picked)
                            .then_some(picked);
                        self.settle_at_once(
                            &at,
                            n,
                            AttemptState::Succeeded,
                            Some(&json!({ "case": case })),
                        );
                        case
                    }
                };
                scope
                    .steps
                    .insert(key(&step.id), json_to_val(&json!({ "case": case })));
                let list = case
                    .as_ref()
                    .and_then(|name| cases.iter().find(|(c, _)| c == name))
                    .map_or(default.as_slice(), |(_, s)| s.as_slice());
                self.run_steps(list, scope).await?;
                Ok(Next::Continue)
            }
            StepKind::ForEach {
                items,
                concurrency,
                steps: body,
            } => {
                self.run_for_each(&at, scope, items, *concurrency, body)
                    .await
            }
            StepKind::Wait(spec) => self.run_wait(&at, scope, spec).await,
            StepKind::Approval(spec) => self.run_approval(&at, scope, spec).await,
            StepKind::Call { workflow, with } => self.run_call(&at, scope, workflow, with).await,
            StepKind::Fail { message } => {
                let error = match self.eval_step(&at, message, scope, 1).await? {
                    Ok(v) => error_json(&at.key, "fail", text_of(&v)),
                    Err(error) => error,
                };
                self.fail(&at, scope, n, Row::New, error).await
            }
        }
    }

    /// The number of a new attempt of `key`: one more than the last recorded.
    fn next_number(&self, key: &StepKey) -> u32 {
        self.history(key).last().map_or(1, |a| a.attempt + 1)
    }

    /// The failure when attempt `n` would exceed the step's attempt budget. A failed attempt decides
    /// at once whether another follows, so this only happens when the process stopped during each of
    /// the attempts (a step that crashes the process must not loop for ever).
    fn exhausted(&self, at: &At<'_>, base: u32, n: u32) -> Option<Value> {
        let attempts = at.step.retry.attempts;
        if n - base <= attempts {
            return None;
        }
        let interrupted = self
            .history(&at.key)
            .iter()
            .filter(|a| {
                a.attempt > base
                    && matches!(a.state, AttemptState::Started | AttemptState::Interrupted)
            })
            .count();
        Some(error_json(
            &at.key,
            "interrupted",
            format!(
                "step `{}` used all {attempts} of its attempts; the process stopped during {interrupted} of them, so the step is not started again",
                at.step.id
            ),
        ))
    }

    async fn run_uses(
        &self,
        at: &At<'_>,
        scope: &mut Scope,
        connection: &str,
        action: &str,
        with: &Template,
    ) -> Result<Next, Stop> {
        let history = self.history(&at.key);
        let base = budget_base(history);
        let mut retry_at = history
            .last()
            .filter(|a| a.state == AttemptState::Retrying)
            .and_then(|a| a.wake_at);
        let mut last = history.last().map_or(0, |a| a.attempt);
        loop {
            if let Some(t) = retry_at {
                self.wait_until(t, scope).await?;
            }
            let n = last + 1;
            if let Some(error) = self.exhausted(at, base, n) {
                return self.fail(at, scope, last, Row::Begun, error).await;
            }
            let input = match self.eval_json(at, with, scope, n).await? {
                Ok(v) => v,
                Err(error) => return self.fail(at, scope, n, Row::New, error).await,
            };
            self.begin(at, n, Some(&input), AttemptState::Started, None)
                .await?;
            let error = match self.call_action(at, connection, action, n, input).await {
                Ok(output) => return self.succeed(at, scope, n, json_to_val(&output)).await,
                Err(e) => e,
            };
            let mut error_value = error_json(
                &at.key,
                if error.is_retryable() {
                    "retryable"
                } else {
                    "fatal"
                },
                format!("step `{}`: {error}", at.step.id),
            );
            if !error.details().is_null() {
                error_value["details"] = error.details().clone();
            }
            let used = n - base;
            match error {
                ActionError::Retryable { retry_after, .. } if used < at.step.retry.attempts => {
                    let delay = at
                        .step
                        .retry
                        .delay(used, rand::random::<f64>(), retry_after);
                    let next = self.retrying(at, n, &error_value, delay).await?;
                    retry_at = Some(next);
                    last = n;
                }
                _ => return self.fail(at, scope, n, Row::Begun, error_value).await,
            }
        }
    }

    async fn call_action(
        &self,
        at: &At<'_>,
        connection: &str,
        action: &str,
        attempt: u32,
        input: Value,
    ) -> Result<Value, ActionError> {
        let step = at.step;
        let mocked = self
            .engine
            .mocks
            .as_ref()
            .and_then(|mocks| mocks.result(&step.id, attempt, &input));
        if let Some(result) = mocked {
            return result;
        }
        // Conversation state lives in Weft's own store, which a test has too: it needs no mock.
        if connection == "state" {
            let now = self.engine.clock.now();
            // Conversation state is stored data too.
            let mut input = input.clone();
            self.scrub(&mut input);
            return crate::state::call(self.engine.store.as_ref(), action, &input, now).await;
        }
        if self.engine.mocks.is_some() {
            return Err(ActionError::fatal(format!(
                "the test gives no mock for step `{}`, which calls {connection}.{action}; tests never call outside systems",
                step.id
            )));
        }
        let Some(connector) = self.current.registry.get(connection) else {
            if connection == "kb" {
                return Err(ActionError::fatal(
                    "the project's knowledge base is not available here: it has no kb/ folder",
                ));
            }
            return Err(ActionError::fatal(format!(
                "the connection `{connection}` is not defined in weft.yaml any more"
            )));
        };
        let idempotency_key = at.key.idempotency_key(&self.run.id);
        // A connector written as data runs as the run's workflow version knew it.
        let definition = self.workflow.definitions.get(connection);
        let call = connector.call_defined(
            Call {
                action,
                input,
                idempotency_key: &idempotency_key,
                max_output_bytes: self.current.project.settings.limits.max_output_bytes,
            },
            definition,
        );
        // Every call ends: the step's own timeout, or the project's `limits.call_timeout`.
        let (limit, whose) = match step.timeout {
            Some(limit) => (limit, "the step's timeout"),
            None => (
                self.current.project.settings.limits.call_timeout,
                "limits.call_timeout",
            ),
        };
        tokio::time::timeout(limit, call).await.unwrap_or_else(|_| {
            Err(ActionError::retryable(format!(
                "{connection}.{action} did not finish within {whose} of {}",
                weft_core::duration::format(limit)
            )))
        })
    }

    async fn run_map(
        &self,
        at: &At<'_>,
        scope: &mut Scope,
        value: &Template,
    ) -> Result<Next, Stop> {
        let history = self.history(&at.key);
        let last = history.last().map_or(0, |a| a.attempt);
        let n = last + 1;
        if let Some(error) = self.exhausted(at, budget_base(history), n) {
            return self.fail(at, scope, last, Row::Begun, error).await;
        }
        // A map step acts on nothing outside the run. In a run's first execution (its first
        // lease), and while no finished step that may have acted outside the run waits to be
        // stored, it is recorded whole once evaluated, in a queued write, instead of having its
        // start waited for: should evaluating it crash the process, the run resumes under a later
        // lease, where the start is recorded first and counts against the attempt limit, so a
        // map that keeps crashing the process costs at most one crash more than another step.
        let settled = self.effects.stored.load(Ordering::Acquire)
            >= self.effects.queued.load(Ordering::Acquire);
        let row = if self.lease.epoch == 1 && settled {
            Row::New
        } else {
            self.begin(at, n, None, AttemptState::Started, None).await?;
            Row::Begun
        };
        match self.eval_step(at, value, scope, n).await? {
            Ok(output) => self.succeed_in(at, scope, n, row, output).await,
            Err(error) => self.fail(at, scope, n, row, error).await,
        }
    }

    /// Opens an approval, then waits, parked and durable, for its answer or its expiry. An answer
    /// makes the run due at once ([`weft_store::Store::answer_approval`]); without a timeout the run
    /// still looks once a day, which costs nothing and needs no special case.
    async fn run_approval(
        &self,
        at: &At<'_>,
        scope: &mut Scope,
        spec: &ApprovalSpec,
    ) -> Result<Next, Stop> {
        const RECHECK: Millis = 24 * 3_600_000;
        let n = match self.history(&at.key).last() {
            Some(a) if a.state == AttemptState::Waiting => a.attempt,
            _ => {
                let n = self.next_number(&at.key);
                let message = match self.eval_step(at, &spec.message, scope, 1).await? {
                    Ok(v) => text_of(&v),
                    Err(error) => {
                        return self.fail(at, scope, n, Row::New, error).await;
                    }
                };
                let data = match &spec.data {
                    None => Value::Null,
                    Some(t) => match self.eval_json(at, t, scope, 1).await? {
                        Ok(v) => v,
                        Err(error) => return self.fail(at, scope, n, Row::New, error).await,
                    },
                };
                // Tests answer approvals the way they answer actions: with a mock of the step.
                if let Some(mocks) = &self.engine.mocks {
                    let input = json!({"message": message, "data": data});
                    return match mocks.result(&at.step.id, n, &input) {
                        Some(Ok(output)) => {
                            self.begin(at, n, Some(&input), AttemptState::Started, None)
                                .await?;
                            self.succeed(at, scope, n, json_to_val(&output)).await
                        }
                        Some(Err(e)) => {
                            let error = error_json(&at.key, "approval", e.to_string());
                            self.fail(at, scope, n, Row::New, error).await
                        }
                        None => {
                            let error = error_json(
                                &at.key,
                                "approval",
                                format!(
                                    "the test gives no answer for approval step `{}`; mock its output, such as {{approved: true}}",
                                    at.step.id
                                ),
                            );
                            self.fail(at, scope, n, Row::New, error).await
                        }
                    };
                }
                let now = self.engine.clock.now();
                let expires_at = spec.timeout.map(|t| now + t.as_millis() as i64);
                // What the approver is shown is stored and served: without credentials.
                let mut message = Value::String(message.clone());
                self.scrub(&mut message);
                let message = message.as_str().unwrap_or_default().to_string();
                let mut data = data.clone();
                self.scrub(&mut data);
                let approval = self
                    .engine
                    .store
                    .open_approval(&NewApproval {
                        run_id: self.run.id.clone(),
                        step_key: at.key.clone(),
                        attempt: n,
                        workflow: self.run.workflow.clone(),
                        message: message.clone(),
                        data: data.clone(),
                        expires_at,
                        now,
                    })
                    .await?;
                let input = json!({
                    "approval_id": approval.id,
                    "message": message,
                    "data": data,
                    "expires_at": expires_at.map(format_millis),
                });
                self.begin(at, n, Some(&input), AttemptState::Waiting, expires_at)
                    .await?;
                n
            }
        };
        loop {
            let Some(approval) = self
                .engine
                .store
                .approval_for(&self.run.id, &at.key, n)
                .await?
            else {
                let error = error_json(
                    &at.key,
                    "approval",
                    format!("the approval that step `{}` opened is gone", at.step.id),
                );
                return self.fail(at, scope, n, Row::Begun, error).await;
            };
            let now = self.engine.clock.now();
            let approved = match approval.state {
                ApprovalState::Approved => true,
                ApprovalState::Rejected => false,
                ApprovalState::Expired => match spec.on_timeout {
                    OnTimeout::Approve => true,
                    OnTimeout::Reject => false,
                    OnTimeout::Fail => {
                        let error = error_json(
                            &at.key,
                            "approval_expired",
                            format!(
                                "step `{}`: nobody answered the approval before it expired",
                                at.step.id
                            ),
                        );
                        return self.fail(at, scope, n, Row::Begun, error).await;
                    }
                },
                ApprovalState::Pending => {
                    if let Some(deadline) = approval.expires_at
                        && deadline <= now
                    {
                        // Expire it, unless an answer got there first; then look again.
                        match self
                            .engine
                            .store
                            .answer_approval(
                                &approval.id,
                                ApprovalState::Expired,
                                &Value::Null,
                                None,
                                now,
                            )
                            .await
                        {
                            Ok(_) | Err(StoreError::ApprovalClosed { .. }) => continue,
                            Err(e) => return Err(e.into()),
                        }
                    }
                    let wake = approval
                        .expires_at
                        .map_or(now + RECHECK, |t| t.min(now + RECHECK));
                    return Err(Stop::Park(wake));
                }
            };
            let output = approval_output(&approval, approved);
            return self.succeed(at, scope, n, json_to_val(&output)).await;
        }
    }

    async fn run_wait(
        &self,
        at: &At<'_>,
        scope: &mut Scope,
        spec: &WaitSpec,
    ) -> Result<Next, Stop> {
        let (n, until) = match self.history(&at.key).last() {
            Some(a) if a.state == AttemptState::Waiting => (a.attempt, a.wake_at.unwrap_or(0)),
            _ => {
                let n = self.next_number(&at.key);
                let until = match spec {
                    WaitSpec::For(d) => Ok(self.engine.clock.now() + d.as_millis() as i64),
                    WaitSpec::Until(template) => {
                        self.eval_json(at, template, scope, 1).await?.and_then(|v| {
                            wait_time(&v).map_err(|m| {
                                error_json(
                                    &at.key,
                                    "expression",
                                    format!("step `{}`: {m}", at.step.id),
                                )
                            })
                        })
                    }
                };
                let until = match until {
                    Ok(t) => t,
                    Err(error) => return self.fail(at, scope, n, Row::New, error).await,
                };
                self.begin(
                    at,
                    n,
                    Some(&json!({"until": format_millis(until)})),
                    AttemptState::Waiting,
                    Some(until),
                )
                .await?;
                (n, until)
            }
        };
        self.wait_until(until, scope).await?;
        self.succeed(
            at,
            scope,
            n,
            json_to_val(&json!({"waited_until": format_millis(until)})),
        )
        .await
    }

    async fn run_call(
        &self,
        at: &At<'_>,
        scope: &mut Scope,
        target: &str,
        with: &Template,
    ) -> Result<Next, Stop> {
        let history = self.history(&at.key);
        let base = budget_base(history);
        // The attempt in flight (whose child may exist), or the one a new attempt follows.
        let mut previous: Option<(u32, AttemptState, Option<Millis>, Option<Value>)> = history
            .last()
            .map(|a| (a.attempt, a.state, a.wake_at, a.input.clone()));
        loop {
            let (n, input) = match previous.take() {
                Some((n, AttemptState::Started, _, input)) => (n, input.unwrap_or(Value::Null)),
                other => {
                    let last = other.as_ref().map_or(0, |p| p.0);
                    if let Some((_, AttemptState::Retrying, Some(t), _)) = other {
                        self.wait_until(t, scope).await?;
                    }
                    let n = last + 1;
                    if n - base > at.step.retry.attempts {
                        let error = error_json(
                            &at.key,
                            "call",
                            format!(
                                "step `{}` used all {} of its attempts",
                                at.step.id, at.step.retry.attempts
                            ),
                        );
                        return self.fail(at, scope, last, Row::Begun, error).await;
                    }
                    let input = match self.eval_json(at, with, scope, n).await? {
                        Ok(v) => v,
                        Err(error) => return self.fail(at, scope, n, Row::New, error).await,
                    };
                    self.begin(at, n, Some(&input), AttemptState::Started, None)
                        .await?;
                    (n, input)
                }
            };
            let child = match self.start_child(&at.key, target, n, input).await {
                Ok(id) => id,
                Err(Ok(error)) => return self.fail(at, scope, n, Row::Begun, error).await,
                Err(Err(stop)) => return Err(stop),
            };
            let finished = self.wait_for_child(&child).await?;
            if finished.state == RunState::Succeeded {
                return self
                    .succeed(
                        at,
                        scope,
                        n,
                        json_to_val(&finished.output.unwrap_or(Value::Null)),
                    )
                    .await;
            }
            let reason = finished
                .error
                .as_ref()
                .map_or_else(|| finished.state.to_string(), message_of);
            let mut error = error_json(
                &at.key,
                "call",
                format!(
                    "step `{}`: workflow `{target}` (run {child}) {}: {reason}",
                    at.step.id, finished.state
                ),
            );
            error["child_run"] = Value::String(child.clone());
            if n - base < at.step.retry.attempts && finished.state == RunState::Failed {
                let delay = at.step.retry.delay(n - base, rand::random::<f64>(), None);
                let next = self.retrying(at, n, &error, delay).await?;
                previous = Some((n, AttemptState::Retrying, Some(next), None));
                continue;
            }
            return self.fail(at, scope, n, Row::Begun, error).await;
        }
    }

    /// Creates (or finds, after a crash) the child run of attempt `attempt` of a `call` step. The
    /// inner error is a step failure (`Ok`) or a reason to stop (`Err`).
    async fn start_child(
        &self,
        key: &StepKey,
        target: &str,
        attempt: u32,
        mut input: Value,
    ) -> Result<String, Result<Value, Stop>> {
        // The child's input is stored as its run's input.
        self.scrub(&mut input);
        let project = &self.current.project;
        let Some(w) = project.workflows.get(target) else {
            return Err(Ok(error_json(
                key,
                "call",
                format!("the workflow `{target}` is no longer in the project"),
            )));
        };
        let depth = self.run.depth + 1;
        let limit = project.settings.limits.max_call_depth;
        if u64::from(depth) > limit {
            return Err(Ok(error_json(
                key,
                "limit",
                format!(
                    "calling `{target}` would nest runs {depth} deep, above limits.max_call_depth ({limit})"
                ),
            )));
        }
        let trigger =
            json!({"type": "call", "parent_run": self.run.id, "parent_step": key.as_str()});
        let run = NewRun {
            idempotency_key: Some(format!("{}#{attempt}", key.idempotency_key(&self.run.id))),
            parent: Some((self.run.id.clone(), key.clone())),
            root: Some(self.run.root_id.clone()),
            depth,
            ..crate::new_run(w, trigger, input, self.engine.clock.now())
        };
        let created = self
            .engine
            .store
            .create_run(run)
            .await
            .map_err(|e| Err(Stop::from(e)))?;
        self.engine.kick();
        Ok(created.id().to_string())
    }

    /// Waits, holding this run's lease, until the child run has finished.
    async fn wait_for_child(&self, child: &str) -> Result<RunRecord, Stop> {
        let store = &self.engine.store;
        let mut shutdown = self.engine.shutdown.subscribe();
        loop {
            let notified = self.engine.wake.notified();
            let record = store
                .get_run(child)
                .await?
                .ok_or_else(|| Stop::Store(StoreError::NotFound(child.to_string())))?;
            if record.state.is_terminal() {
                return Ok(record);
            }
            if store
                .get_run(&self.run.id)
                .await?
                .is_some_and(|r| r.cancel_requested)
            {
                return Err(Stop::Cancelled);
            }
            tokio::select! {
                _ = notified => {}
                _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                _ = shutdown.wait_for(|s| *s) => return Err(Stop::Shutdown),
            }
        }
    }

    async fn run_for_each(
        &self,
        at: &At<'_>,
        scope: &mut Scope,
        items: &Template,
        concurrency: u32,
        body: &[Step],
    ) -> Result<Next, Stop> {
        let in_flight = self
            .history(&at.key)
            .last()
            .filter(|a| a.state == AttemptState::Started);
        let n = in_flight.map_or_else(|| self.next_number(&at.key), |a| a.attempt);
        let list: Vec<Value> = match in_flight.and_then(|a| a.input.clone()) {
            Some(Value::Array(items)) => items,
            _ => {
                let value = match self.eval_json(at, items, scope, 1).await? {
                    Ok(v) => v,
                    Err(error) => return self.fail(at, scope, n, Row::New, error).await,
                };
                let Value::Array(list) = value else {
                    let error = error_json(
                        &at.key,
                        "expression",
                        format!(
                            "step `{}`: for_each needs a list, got {}",
                            at.step.id,
                            weft_core::json_kind(&value)
                        ),
                    );
                    return self.fail(at, scope, n, Row::New, error).await;
                };
                let limit = self.current.project.settings.limits.max_for_each_items;
                if list.len() as u64 > limit {
                    let error = error_json(
                        &at.key,
                        "limit",
                        format!(
                            "step `{}`: the list has {} items, above limits.max_for_each_items ({limit})",
                            at.step.id,
                            list.len()
                        ),
                    );
                    return self.fail(at, scope, n, Row::New, error).await;
                }
                let list = Value::Array(list);
                self.begin(at, n, Some(&list), AttemptState::Started, None)
                    .await?;
                let Value::Array(list) = list else {
                    unreachable!("built as an array")
                };
                list
            }
        };

        let mut outputs: Vec<Val> = vec![Val::Null; list.len()];
        let mut failure: Option<(usize, Value)> = None;
        let mut stop: Option<Stop> = None;
        let mut next = 0;
        let mut running = FuturesUnordered::new();
        let outer = scope.clone();
        loop {
            while failure.is_none()
                && stop.is_none()
                && next < list.len()
                && running.len() < concurrency as usize
            {
                let mut item_scope = Scope {
                    indices: outer.indices.iter().copied().chain([next]).collect(),
                    item: Some((json_to_val(&list[next]), next)),
                    steps: outer.steps.clone(),
                    last: None,
                    top: false,
                };
                let index = next;
                running.push(async move {
                    let result = self.run_steps(body, &mut item_scope).await;
                    (index, result.map(|()| item_scope.last.unwrap_or(Val::Null)))
                });
                next += 1;
            }
            let Some((index, result)) = running.next().await else {
                break;
            };
            match result {
                Ok(output) => outputs[index] = output,
                Err(Stop::Failed(error)) => {
                    failure.get_or_insert((index, error));
                }
                Err(other) => {
                    stop.get_or_insert(other);
                }
            }
        }
        if let Some(stop) = stop {
            return Err(stop);
        }
        if let Some((index, item_error)) = failure {
            let mut error = error_json(
                &at.key,
                "for_each",
                format!(
                    "step `{}`: item {index} failed: {}",
                    at.step.id,
                    message_of(&item_error)
                ),
            );
            error["item"] = json!(index);
            error["cause"] = item_error;
            return self.fail(at, scope, n, Row::Begun, error).await;
        }
        self.succeed(at, scope, n, outputs.into_iter().collect())
            .await
    }
}

/// The step being executed: the step, the list it is in, its key, and when this try began.
struct At<'a> {
    step: &'a Step,
    siblings: &'a [Step],
    key: StepKey,
    started: Instant,
}

/// Whether the attempt being settled already has a row (it was begun) or needs one written whole.
#[derive(Clone, Copy)]
enum Row {
    Begun,
    New,
}

/// An approval step's output.
fn approval_output(approval: &ApprovalRecord, approved: bool) -> Value {
    json!({
        "approved": approved,
        "decision": approval.state.as_str(),
        "data": approval.answer,
        "by": approval.answered_by,
        "answered_at": approval.answered_at.map(format_millis),
        "approval_id": approval.id,
    })
}

fn branch_json(then: bool) -> Value {
    json!({"branch": if then { "then" } else { "else" }})
}

/// A value as text: strings as they are, anything else as compact JSON.
fn text_of(v: &Val) -> String {
    match v {
        Val::TStr(s) => String::from_utf8_lossy(s).into_owned(),
        other => val_to_json(other)
            .map(|j| j.to_string())
            .unwrap_or_default(),
    }
}

/// Reads the end of a `wait: {until}`: an RFC 3339 time or seconds since the Unix epoch.
fn wait_time(v: &Value) -> Result<Millis, String> {
    match v {
        Value::String(s) => s
            .parse::<jiff::Timestamp>()
            .map(|t| t.as_millisecond())
            .map_err(|e| format!("`wait.until` `{s}` is not an RFC 3339 time: {e}")),
        Value::Number(n) => n
            .as_f64()
            .filter(|f| f.is_finite())
            .map(|secs| (secs * 1000.0) as i64)
            .ok_or_else(|| "`wait.until` is not a usable number of seconds".to_string()),
        other => Err(format!(
            "`wait.until` must be an RFC 3339 time or Unix seconds, got {}",
            weft_core::json_kind(other)
        )),
    }
}

/// Formats milliseconds since the epoch as RFC 3339.
pub(crate) fn format_millis(ms: Millis) -> String {
    jiff::Timestamp::from_millisecond(ms).map_or_else(|_| ms.to_string(), |t| t.to_string())
}

/// The compiled workflow of a run's version: the project's, or the stored text compiled again.
async fn workflow_for(engine: &Inner, run: &RunRecord) -> Result<Arc<Workflow>, String> {
    if let Some(w) = engine
        .versions
        .lock()
        .ok()
        .and_then(|v| v.get(&run.version).cloned())
    {
        return Ok(w);
    }
    let stored = engine
        .store
        .load_version(&run.version)
        .await
        .map_err(|e| format!("cannot read workflow version {}: {e}", run.version))?
        .ok_or_else(|| format!("workflow version {} is missing from the store", run.version))?;
    let workflow = engine
        .current()
        .project
        .parse_workflow(&stored.file, &stored.source)
        .map_err(|diags| {
            let problems: Vec<String> = diags.iter().take(3).map(|d| d.to_string()).collect();
            format!(
                "the run's workflow version ({} as it was when the run started) no longer loads in this project: {}",
                stored.file,
                problems.join("; ")
            )
        })?;
    let mut workflow = workflow;
    // The definitions the version was compiled with, kept with its text, over the current ones.
    let project = engine.current().project.clone();
    for (name, json) in weft_core::workflow::stored_definitions(&stored.source) {
        match weft_core::definition::restore(&json, &project.catalog) {
            Some(def) => {
                workflow.definitions.insert(name, Arc::new(def));
            }
            None => tracing::warn!(
                run = %run.id,
                connection = %name,
                "the connector definition kept with the run's workflow version no longer reads; the current one applies"
            ),
        }
    }
    let workflow = Arc::new(workflow);
    if let Ok(mut v) = engine.versions.lock() {
        v.insert(run.version.clone(), workflow.clone());
    }
    Ok(workflow)
}
