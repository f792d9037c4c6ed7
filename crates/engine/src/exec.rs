//! Executing one claimed run: walk its steps, take committed outcomes from the store, run the first
//! step without one, and commit each outcome before going on.
//!
//! The walk is deterministic given the committed records: an `if` or `switch` records its branch
//! before its steps run, a `for_each` records its items, a `wait` records when it ends and a `call`
//! finds its child by an idempotency key. So a run that resumes after a crash takes the same path and
//! re-runs at most the step that was in flight.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use futures_util::stream::{FuturesUnordered, StreamExt};
use serde_json::{Value, json};
use weft_connectors::{ActionError, Call};
use weft_core::{
    AttemptState, EvalError, OnError, RunState, Step, StepKey, StepKind, Template, Val, ValMap,
    WaitSpec, Workflow, json_to_val, val_to_json,
};
use weft_store::{AttemptRecord, Claimed, Lease, Millis, NewRun, Outcome, RunRecord, StoreError};

use crate::{Event, Inner};

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
    lease: Lease,
    run: RunRecord,
    workflow: Arc<Workflow>,
    history: HashMap<StepKey, Vec<AttemptRecord>>,
    base: ValMap,
}

fn key(name: &str) -> Val {
    Val::from(name.to_string())
}

fn error_json(step: &StepKey, kind: &str, message: impl Into<String>) -> Value {
    json!({"step": step.as_str(), "kind": kind, "message": message.into()})
}

fn expression_error(step: &StepKey, e: &EvalError) -> Value {
    let mut err = error_json(
        step,
        "expression",
        format!("step `{}`: {e}", step.step_id()),
    );
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
        let attempts = match engine.store.attempts(&run.id).await {
            Ok(a) => a,
            Err(e) => return Err((lease, format!("cannot read the run's history: {e}"))),
        };
        let mut history: HashMap<StepKey, Vec<AttemptRecord>> = HashMap::new();
        for a in attempts {
            history.entry(a.step_key.clone()).or_default().push(a);
        }
        for list in history.values_mut() {
            list.sort_by_key(|a| a.attempt);
        }
        let mut vars = engine.project.settings.vars.clone();
        vars.extend(workflow.vars.clone());
        let mut base = ValMap::default();
        base.insert(key("trigger"), json_to_val(&run.trigger));
        base.insert(key("input"), json_to_val(&run.input));
        base.insert(key("vars"), json_to_val(&Value::Object(vars)));
        base.insert(key("env"), engine.env.clone());
        Ok(RunExec {
            engine,
            lease,
            run,
            workflow,
            history,
            base,
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
            Ok(()) => self.output(&scope).map_err(Stop::Failed),
            Err(stop) => Err(stop),
        };
        self.settle(result).await;
    }

    /// The run's output: `output:` evaluated, or the last top-level output.
    fn output(&self, scope: &Scope) -> Result<Value, Value> {
        let value = match &self.workflow.output {
            Some(template) => {
                let ctx = self.context(scope, 1);
                template.eval(&ctx).map_err(|e| {
                    let mut err = json!({"step": null, "kind": "expression", "message": format!("the workflow output: {e}")});
                    err["expression"] = Value::String(e.code.clone());
                    err
                })?
            }
            None => scope.last.clone().unwrap_or(Val::Null),
        };
        let json = val_to_json(&value)
            .map_err(|m| json!({"step": null, "kind": "output", "message": m}))?;
        let limit = self.engine.project.settings.limits.max_output_bytes;
        let size = json.to_string().len() as u64;
        if size > limit {
            return Err(
                json!({"step": null, "kind": "limit", "message": format!("the run output is {size} bytes, above limits.max_output_bytes ({limit})")}),
            );
        }
        Ok(json)
    }

    async fn settle(&self, result: Result<Value, Stop>) {
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
                return;
            }
        };
        match outcome {
            Ok(()) => {
                let _ = self.engine.events.send(Event::Run {
                    run_id: self.run.id.clone(),
                    workflow: self.run.workflow.clone(),
                    state,
                    until,
                });
                self.engine.wake.notify_waiters();
            }
            Err(StoreError::LeaseLost { .. }) => {
                tracing::warn!(run_id = %self.run.id, "Another process took over the run before it could be settled.");
            }
            Err(e) => {
                tracing::error!(run_id = %self.run.id, error = %e, "The run's end could not be recorded; it continues later.");
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
        let _ = self.engine.events.send(Event::Step {
            run_id: self.run.id.clone(),
            workflow: self.run.workflow.clone(),
            step: step.clone(),
            attempt,
            state,
            elapsed: started.elapsed(),
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

    fn set_output(scope: &mut Scope, step: &Step, output: Val) {
        scope.steps.insert(key(&step.id), output.clone());
        scope.last = Some(output);
    }

    /// Where `on_error` sends the walk after a failure that it handles.
    fn handled(step: &Step, steps: &[Step], scope: &mut Scope, error: &Value) -> Next {
        scope
            .steps
            .insert(key(&step.id), json_to_val(&json!({ "error": error })));
        match &step.on_error {
            OnError::Goto(target) => steps
                .iter()
                .position(|s| &s.id == target)
                .map_or(Next::Continue, Next::Goto),
            _ => Next::Continue,
        }
    }

    /// Settles a step as failed for good: the run fails, or `on_error` lets it go on. `recorded` says
    /// whether attempt `attempt` has a row to update (otherwise one is written whole).
    #[allow(clippy::too_many_arguments)]
    async fn fail_step(
        &self,
        step: &Step,
        steps: &[Step],
        scope: &mut Scope,
        key: &StepKey,
        attempt: u32,
        recorded: bool,
        input: Option<&str>,
        error: Value,
        started: Instant,
    ) -> Result<Next, Stop> {
        let state = if step.on_error == OnError::Fail {
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
        let fence = if recorded {
            self.engine
                .store
                .finish_attempt(&self.lease, key, attempt, &outcome, now)
                .await?
        } else {
            self.engine
                .store
                .record_attempt(&self.lease, key, attempt, input, &outcome, now)
                .await?
        };
        self.emit(key, attempt, state, started, Some(&error), None);
        if state == AttemptState::Failed {
            return Err(Stop::Failed(error));
        }
        Self::check_fence(fence)?;
        Ok(Self::handled(step, steps, scope, &error))
    }

    /// Commits a successful outcome and makes it visible to later steps.
    async fn succeed(
        &self,
        step: &Step,
        scope: &mut Scope,
        key: &StepKey,
        attempt: u32,
        output: Val,
        started: Instant,
    ) -> Result<Next, Stop> {
        let json = match val_to_json(&output) {
            Ok(j) => j,
            Err(m) => {
                return Err(Stop::Failed(error_json(
                    key,
                    "output",
                    format!("step `{}`: {m}", step.id),
                )));
            }
        };
        let text = json.to_string();
        let limit = self.engine.project.settings.limits.max_output_bytes;
        if text.len() as u64 > limit {
            let error = error_json(
                key,
                "limit",
                format!(
                    "the output of step `{}` is {} bytes, above limits.max_output_bytes ({limit}); nothing was cut short",
                    step.id,
                    text.len()
                ),
            );
            return Err(Stop::Failed(error));
        }
        let outcome = Outcome {
            state: AttemptState::Succeeded,
            output: Some(text),
            error: None,
            wake_at: None,
        };
        let fence = self
            .engine
            .store
            .finish_attempt(&self.lease, key, attempt, &outcome, self.engine.clock.now())
            .await?;
        self.emit(key, attempt, AttemptState::Succeeded, started, None, None);
        Self::set_output(scope, step, output);
        Self::check_fence(fence)?;
        Ok(Next::Continue)
    }

    async fn run_step(&self, step: &Step, steps: &[Step], scope: &mut Scope) -> Result<Next, Stop> {
        let key = StepKey::new(&step.id, &scope.indices);
        let history = self.history(&key);
        let started = Instant::now();

        // A committed outcome is taken as it is.
        if let Some(last) = history.last() {
            match last.state {
                AttemptState::Skipped => {
                    scope.steps.insert(self::key(&step.id), Val::Null);
                    return Ok(Next::Continue);
                }
                AttemptState::Handled => {
                    let error = last.error.clone().unwrap_or(Value::Null);
                    return Ok(Self::handled(step, steps, scope, &error));
                }
                AttemptState::Failed => {
                    // The failure was committed but the run was not settled before the process stopped.
                    return Err(Stop::Failed(last.error.clone().unwrap_or(Value::Null)));
                }
                AttemptState::Succeeded
                    if !matches!(step.kind, StepKind::If { .. } | StepKind::Switch { .. }) =>
                {
                    let output = last.output.as_ref().map_or(Val::Null, json_to_val);
                    Self::set_output(scope, step, output);
                    return Ok(Next::Continue);
                }
                _ => {}
            }
        }

        // The guard is evaluated once, before the step's first attempt.
        if history.is_empty()
            && let Some(guard) = &step.guard
        {
            match guard.eval_bool(&self.context(scope, 1)) {
                Ok(true) => {}
                Ok(false) => {
                    let outcome = Outcome {
                        state: AttemptState::Skipped,
                        output: None,
                        error: None,
                        wake_at: None,
                    };
                    let n = self.next_number(&key);
                    let fence = self
                        .engine
                        .store
                        .record_attempt(
                            &self.lease,
                            &key,
                            n,
                            None,
                            &outcome,
                            self.engine.clock.now(),
                        )
                        .await?;
                    self.emit(&key, n, AttemptState::Skipped, started, None, None);
                    scope.steps.insert(self::key(&step.id), Val::Null);
                    Self::check_fence(fence)?;
                    return Ok(Next::Continue);
                }
                Err(e) => {
                    let n = self.next_number(&key);
                    return self
                        .fail_step(
                            step,
                            steps,
                            scope,
                            &key,
                            n,
                            false,
                            None,
                            expression_error(&key, &e),
                            started,
                        )
                        .await;
                }
            }
        }
        let decided = history
            .last()
            .filter(|a| a.state == AttemptState::Succeeded)
            .and_then(|a| a.output.as_ref());
        let n = self.next_number(&key);

        match &step.kind {
            StepKind::Uses {
                connection,
                action,
                with,
            } => {
                self.run_uses(step, steps, scope, &key, connection, action, with)
                    .await
            }
            StepKind::Map { value } => self.run_map(step, steps, scope, &key, value).await,
            StepKind::If {
                cond,
                then,
                otherwise,
            } => {
                let branch = match decided {
                    Some(out) => out["branch"].as_str() == Some("then"),
                    None => match cond.eval_bool(&self.context(scope, 1)) {
                        Ok(b) => {
                            let output = json!({"branch": if b { "then" } else { "else" }});
                            self.record_decision(&key, n, &output, started).await?;
                            b
                        }
                        Err(e) => {
                            return self
                                .fail_step(
                                    step,
                                    steps,
                                    scope,
                                    &key,
                                    n,
                                    false,
                                    None,
                                    expression_error(&key, &e),
                                    started,
                                )
                                .await;
                        }
                    },
                };
                let output = json_to_val(&json!({"branch": if branch { "then" } else { "else" }}));
                scope.steps.insert(self::key(&step.id), output);
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
                        let picked = match value.eval(&self.context(scope, 1)) {
                            Ok(Val::TStr(s)) => String::from_utf8_lossy(&s).into_owned(),
                            Ok(other) => val_to_json(&other)
                                .map(|j| j.to_string())
                                .unwrap_or_default(),
                            Err(e) => {
                                return self
                                    .fail_step(
                                        step,
                                        steps,
                                        scope,
                                        &key,
                                        n,
                                        false,
                                        None,
                                        expression_error(&key, &e),
                                        started,
                                    )
                                    .await;
                            }
                        };
                        let case = cases
                            .iter()
                            .any(|(name, _)| *name == picked)
                            .then_some(picked);
                        self.record_decision(&key, n, &json!({ "case": case }), started)
                            .await?;
                        case
                    }
                };
                scope
                    .steps
                    .insert(self::key(&step.id), json_to_val(&json!({ "case": case })));
                let list = match &case {
                    Some(name) => cases
                        .iter()
                        .find(|(n, _)| n == name)
                        .map_or(default.as_slice(), |(_, s)| s.as_slice()),
                    None => default.as_slice(),
                };
                self.run_steps(list, scope).await?;
                Ok(Next::Continue)
            }
            StepKind::ForEach {
                items,
                concurrency,
                steps: body,
            } => {
                self.run_for_each(step, steps, scope, &key, items, *concurrency, body)
                    .await
            }
            StepKind::Wait(spec) => self.run_wait(step, steps, scope, &key, spec).await,
            StepKind::Call { workflow, with } => {
                self.run_call(step, steps, scope, &key, workflow, with)
                    .await
            }
            StepKind::Fail { message } => {
                let error = match message.eval(&self.context(scope, 1)) {
                    Ok(Val::TStr(s)) => {
                        error_json(&key, "fail", String::from_utf8_lossy(&s).into_owned())
                    }
                    Ok(other) => error_json(
                        &key,
                        "fail",
                        val_to_json(&other)
                            .map(|j| j.to_string())
                            .unwrap_or_default(),
                    ),
                    Err(e) => expression_error(&key, &e),
                };
                self.fail_step(step, steps, scope, &key, n, false, None, error, started)
                    .await
            }
        }
    }

    /// Records the branch an `if` or `switch` took, before its steps run.
    async fn record_decision(
        &self,
        key: &StepKey,
        attempt: u32,
        output: &Value,
        started: Instant,
    ) -> Result<(), Stop> {
        let outcome = Outcome {
            state: AttemptState::Succeeded,
            output: Some(output.to_string()),
            error: None,
            wake_at: None,
        };
        let fence = self
            .engine
            .store
            .record_attempt(
                &self.lease,
                key,
                attempt,
                None,
                &outcome,
                self.engine.clock.now(),
            )
            .await?;
        self.emit(key, attempt, AttemptState::Succeeded, started, None, None);
        Self::check_fence(fence)
    }

    /// The number of a new attempt of `key`: one more than the last recorded.
    fn next_number(&self, key: &StepKey) -> u32 {
        self.history(key).last().map_or(1, |a| a.attempt + 1)
    }

    /// The failure when attempt `n` would exceed the step's attempt budget. A failed attempt decides
    /// at once whether another follows, so this only happens when the process stopped during each of
    /// the attempts (a step that crashes the process must not loop for ever).
    fn exhausted(&self, step: &Step, key: &StepKey, base: u32, n: u32) -> Option<Value> {
        if n - base <= step.retry.attempts {
            return None;
        }
        let interrupted = self
            .history(key)
            .iter()
            .filter(|a| {
                a.attempt > base
                    && matches!(a.state, AttemptState::Started | AttemptState::Interrupted)
            })
            .count();
        Some(error_json(
            key,
            "interrupted",
            format!(
                "step `{}` used all {} of its attempts; the process stopped during {interrupted} of them, so the step is not started again",
                step.id, step.retry.attempts
            ),
        ))
    }

    #[allow(clippy::too_many_arguments)]
    async fn run_uses(
        &self,
        step: &Step,
        steps: &[Step],
        scope: &mut Scope,
        key: &StepKey,
        connection: &str,
        action: &str,
        with: &Template,
    ) -> Result<Next, Stop> {
        let history = self.history(key);
        let base = budget_base(history);
        let mut retry_at = history
            .last()
            .filter(|a| a.state == AttemptState::Retrying)
            .and_then(|a| a.wake_at);
        let mut last = history.last().map_or(0, |a| a.attempt);
        loop {
            if let Some(at) = retry_at {
                self.wait_until(at, scope).await?;
            }
            let started = Instant::now();
            let n = last + 1;
            if let Some(error) = self.exhausted(step, key, base, n) {
                return self
                    .fail_step(step, steps, scope, key, last, true, None, error, started)
                    .await;
            }
            let input = match with
                .eval(&self.context(scope, n))
                .map_err(|e| expression_error(key, &e))
                .and_then(|v| {
                    val_to_json(&v).map_err(|m| {
                        error_json(key, "expression", format!("step `{}`: {m}", step.id))
                    })
                }) {
                Ok(v) => v,
                Err(error) => {
                    return self
                        .fail_step(step, steps, scope, key, n, false, None, error, started)
                        .await;
                }
            };
            let input_text = input.to_string();
            let now = self.engine.clock.now();
            let fence = self
                .engine
                .store
                .begin_attempt(
                    &self.lease,
                    key,
                    n,
                    Some(&input_text),
                    AttemptState::Started,
                    None,
                    now,
                )
                .await?;
            Self::check_fence(fence)?;
            self.emit(key, n, AttemptState::Started, started, None, None);

            let result = self
                .call_action(step, key, connection, action, n, input)
                .await;
            match result {
                Ok(output) => {
                    return self
                        .succeed(step, scope, key, n, json_to_val(&output), started)
                        .await;
                }
                Err(e) => {
                    let mut error = error_json(
                        key,
                        if e.is_retryable() {
                            "retryable"
                        } else {
                            "fatal"
                        },
                        format!("step `{}`: {e}", step.id),
                    );
                    if !e.details().is_null() {
                        error["details"] = e.details().clone();
                    }
                    let used = n - base;
                    match &e {
                        ActionError::Retryable { retry_after, .. }
                            if used < step.retry.attempts =>
                        {
                            let delay = step.retry.delay(used, rand::random::<f64>(), *retry_after);
                            let at = self.engine.clock.now() + delay.as_millis() as i64;
                            let outcome = Outcome {
                                state: AttemptState::Retrying,
                                output: None,
                                error: Some(error.to_string()),
                                wake_at: Some(at),
                            };
                            let fence = self
                                .engine
                                .store
                                .finish_attempt(
                                    &self.lease,
                                    key,
                                    n,
                                    &outcome,
                                    self.engine.clock.now(),
                                )
                                .await?;
                            self.emit(
                                key,
                                n,
                                AttemptState::Retrying,
                                started,
                                Some(&error),
                                Some(at),
                            );
                            Self::check_fence(fence)?;
                            retry_at = Some(at);
                            last = n;
                        }
                        _ => {
                            return self
                                .fail_step(step, steps, scope, key, n, true, None, error, started)
                                .await;
                        }
                    }
                }
            }
        }
    }

    async fn call_action(
        &self,
        step: &Step,
        key: &StepKey,
        connection: &str,
        action: &str,
        attempt: u32,
        input: Value,
    ) -> Result<Value, ActionError> {
        let idempotency_key = key.idempotency_key(&self.run.id);
        let max_output_bytes = self.engine.project.settings.limits.max_output_bytes;
        if let Some(mocks) = &self.engine.mocks {
            return match mocks.result(&step.id, attempt, &input) {
                Some(result) => result,
                None => Err(ActionError::fatal(format!(
                    "the test gives no mock for step `{}`, which calls {connection}.{action}; tests never call outside systems",
                    step.id
                ))),
            };
        }
        let Some(connector) = self.engine.registry.get(connection) else {
            return Err(ActionError::fatal(format!(
                "the connection `{connection}` is not defined in weft.yaml any more"
            )));
        };
        let call = connector.call(Call {
            action,
            input,
            idempotency_key: &idempotency_key,
            max_output_bytes,
        });
        match step.timeout {
            Some(limit) => match tokio::time::timeout(limit, call).await {
                Ok(result) => result,
                Err(_) => Err(ActionError::retryable(format!(
                    "{connection}.{action} did not finish within the step's timeout of {}",
                    weft_core::duration::format(limit)
                ))),
            },
            None => call.await,
        }
    }

    async fn run_map(
        &self,
        step: &Step,
        steps: &[Step],
        scope: &mut Scope,
        key: &StepKey,
        value: &Template,
    ) -> Result<Next, Stop> {
        let started = Instant::now();
        let history = self.history(key);
        let last = history.last().map_or(0, |a| a.attempt);
        let n = last + 1;
        if let Some(error) = self.exhausted(step, key, budget_base(history), n) {
            return self
                .fail_step(step, steps, scope, key, last, true, None, error, started)
                .await;
        }
        let fence = self
            .engine
            .store
            .begin_attempt(
                &self.lease,
                key,
                n,
                None,
                AttemptState::Started,
                None,
                self.engine.clock.now(),
            )
            .await?;
        Self::check_fence(fence)?;
        match value.eval(&self.context(scope, n)) {
            Ok(output) => self.succeed(step, scope, key, n, output, started).await,
            Err(e) => {
                self.fail_step(
                    step,
                    steps,
                    scope,
                    key,
                    n,
                    true,
                    None,
                    expression_error(key, &e),
                    started,
                )
                .await
            }
        }
    }

    async fn run_wait(
        &self,
        step: &Step,
        steps: &[Step],
        scope: &mut Scope,
        key: &StepKey,
        spec: &WaitSpec,
    ) -> Result<Next, Stop> {
        let started = Instant::now();
        let (n, until) = match self.history(key).last() {
            Some(a) if a.state == AttemptState::Waiting => (a.attempt, a.wake_at.unwrap_or(0)),
            _ => {
                let n = self.next_number(key);
                let now = self.engine.clock.now();
                let until = match spec {
                    WaitSpec::For(d) => now + d.as_millis() as i64,
                    WaitSpec::Until(template) => match template
                        .eval(&self.context(scope, 1))
                        .map_err(|e| expression_error(key, &e))
                        .and_then(|v| {
                            wait_time(&v).map_err(|m| {
                                error_json(key, "expression", format!("step `{}`: {m}", step.id))
                            })
                        }) {
                        Ok(t) => t,
                        Err(error) => {
                            return self
                                .fail_step(step, steps, scope, key, n, false, None, error, started)
                                .await;
                        }
                    },
                };
                let input = json!({"until": format_millis(until)}).to_string();
                let fence = self
                    .engine
                    .store
                    .begin_attempt(
                        &self.lease,
                        key,
                        n,
                        Some(&input),
                        AttemptState::Waiting,
                        Some(until),
                        now,
                    )
                    .await?;
                self.emit(key, n, AttemptState::Waiting, started, None, Some(until));
                Self::check_fence(fence)?;
                (n, until)
            }
        };
        self.wait_until(until, scope).await?;
        self.succeed(
            step,
            scope,
            key,
            n,
            json_to_val(&json!({"waited_until": format_millis(until)})),
            started,
        )
        .await
    }

    async fn run_call(
        &self,
        step: &Step,
        steps: &[Step],
        scope: &mut Scope,
        key: &StepKey,
        target: &str,
        with: &Template,
    ) -> Result<Next, Stop> {
        let history = self.history(key);
        let base = budget_base(history);
        let mut last = history.last().cloned();
        loop {
            let started = Instant::now();
            // Continue the attempt in flight (its child may exist), or start the next one.
            let (n, input) = match &last {
                Some(a) if a.state == AttemptState::Started => {
                    (a.attempt, a.input.clone().unwrap_or(Value::Null))
                }
                other => {
                    if let Some(AttemptRecord {
                        state: AttemptState::Retrying,
                        wake_at: Some(at),
                        ..
                    }) = other
                    {
                        self.wait_until(*at, scope).await?;
                    }
                    let n = other.as_ref().map_or(0, |a| a.attempt) + 1;
                    if n - base > step.retry.attempts {
                        let error = error_json(
                            key,
                            "call",
                            format!(
                                "step `{}` used all {} of its attempts",
                                step.id, step.retry.attempts
                            ),
                        );
                        return self
                            .fail_step(step, steps, scope, key, n - 1, true, None, error, started)
                            .await;
                    }
                    let input = match with
                        .eval(&self.context(scope, n))
                        .map_err(|e| expression_error(key, &e))
                        .and_then(|v| {
                            val_to_json(&v).map_err(|m| {
                                error_json(key, "expression", format!("step `{}`: {m}", step.id))
                            })
                        }) {
                        Ok(v) => v,
                        Err(error) => {
                            return self
                                .fail_step(step, steps, scope, key, n, false, None, error, started)
                                .await;
                        }
                    };
                    let fence = self
                        .engine
                        .store
                        .begin_attempt(
                            &self.lease,
                            key,
                            n,
                            Some(&input.to_string()),
                            AttemptState::Started,
                            None,
                            self.engine.clock.now(),
                        )
                        .await?;
                    Self::check_fence(fence)?;
                    (n, input)
                }
            };
            let child = match self.start_child(key, target, n, input).await {
                Ok(id) => id,
                Err(Ok(error)) => {
                    return self
                        .fail_step(step, steps, scope, key, n, true, None, error, started)
                        .await;
                }
                Err(Err(stop)) => return Err(stop),
            };
            let finished = self.wait_for_child(&child).await?;
            if finished.state == RunState::Succeeded {
                return self
                    .succeed(
                        step,
                        scope,
                        key,
                        n,
                        json_to_val(&finished.output.unwrap_or(Value::Null)),
                        started,
                    )
                    .await;
            }
            let reason = finished
                .error
                .as_ref()
                .map_or_else(|| finished.state.to_string(), message_of);
            let mut error = error_json(
                key,
                "call",
                format!(
                    "step `{}`: workflow `{target}` (run {child}) {}: {reason}",
                    step.id, finished.state
                ),
            );
            error["child_run"] = Value::String(child.clone());
            if n - base < step.retry.attempts && finished.state == RunState::Failed {
                let delay = step.retry.delay(n - base, rand::random::<f64>(), None);
                let at = self.engine.clock.now() + delay.as_millis() as i64;
                let outcome = Outcome {
                    state: AttemptState::Retrying,
                    output: None,
                    error: Some(error.to_string()),
                    wake_at: Some(at),
                };
                let fence = self
                    .engine
                    .store
                    .finish_attempt(&self.lease, key, n, &outcome, self.engine.clock.now())
                    .await?;
                self.emit(
                    key,
                    n,
                    AttemptState::Retrying,
                    started,
                    Some(&error),
                    Some(at),
                );
                Self::check_fence(fence)?;
                last = Some(AttemptRecord {
                    step_key: key.clone(),
                    attempt: n,
                    state: AttemptState::Retrying,
                    input: None,
                    output: None,
                    error: None,
                    wake_at: Some(at),
                    budget_reset: false,
                    started_at: 0,
                    finished_at: None,
                });
                continue;
            }
            return self
                .fail_step(step, steps, scope, key, n, true, None, error, started)
                .await;
        }
    }

    /// Creates (or finds, after a crash) the child run of attempt `attempt` of a `call` step. The
    /// inner error is a step failure (`Ok`) or a reason to stop (`Err`).
    async fn start_child(
        &self,
        key: &StepKey,
        target: &str,
        attempt: u32,
        input: Value,
    ) -> Result<String, Result<Value, Stop>> {
        let project = &self.engine.project;
        let Some(w) = project.workflows.get(target) else {
            return Err(Ok(error_json(
                key,
                "call",
                format!("the workflow `{target}` is no longer in the project"),
            )));
        };
        let depth = self.run.depth + 1;
        if u64::from(depth) > project.settings.limits.max_call_depth {
            return Err(Ok(error_json(
                key,
                "limit",
                format!(
                    "calling `{target}` would nest runs {depth} deep, above limits.max_call_depth ({})",
                    project.settings.limits.max_call_depth
                ),
            )));
        }
        let created = self
            .engine
            .store
            .create_run(NewRun {
                workflow: w.name.clone(),
                version: w.version.clone(),
                file: w.file.clone(),
                source: w.source.to_string(),
                trigger: json!({"type": "call", "parent_run": self.run.id, "parent_step": key.as_str()}),
                input,
                idempotency_key: Some(format!("{}#{attempt}", key.idempotency_key(&self.run.id))),
                parent: Some((self.run.id.clone(), key.clone())),
                root: Some(self.run.root_id.clone()),
                depth,
                now: self.engine.clock.now(),
            })
            .await
            .map_err(|e| Err(Stop::from(e)))?;
        self.engine.wake.notify_waiters();
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

    #[allow(clippy::too_many_arguments)]
    async fn run_for_each(
        &self,
        step: &Step,
        steps: &[Step],
        scope: &mut Scope,
        key: &StepKey,
        items: &Template,
        concurrency: u32,
        body: &[Step],
    ) -> Result<Next, Stop> {
        let started = Instant::now();
        let in_flight = self
            .history(key)
            .last()
            .filter(|a| a.state == AttemptState::Started);
        let n = in_flight.map_or_else(|| self.next_number(key), |a| a.attempt);
        let list: Vec<Value> = match in_flight.and_then(|a| a.input.clone()) {
            Some(Value::Array(items)) => items,
            _ => {
                let value = match items
                    .eval(&self.context(scope, 1))
                    .map_err(|e| expression_error(key, &e))
                    .and_then(|v| {
                        val_to_json(&v).map_err(|m| {
                            error_json(key, "expression", format!("step `{}`: {m}", step.id))
                        })
                    }) {
                    Ok(v) => v,
                    Err(error) => {
                        return self
                            .fail_step(step, steps, scope, key, n, false, None, error, started)
                            .await;
                    }
                };
                let Value::Array(list) = value else {
                    let error = error_json(
                        key,
                        "expression",
                        format!(
                            "step `{}`: for_each needs a list, got {}",
                            step.id,
                            kind_of(&value)
                        ),
                    );
                    return self
                        .fail_step(step, steps, scope, key, n, false, None, error, started)
                        .await;
                };
                let limit = self.engine.project.settings.limits.max_for_each_items;
                if list.len() as u64 > limit {
                    let error = error_json(
                        key,
                        "limit",
                        format!(
                            "step `{}`: the list has {} items, above limits.max_for_each_items ({limit})",
                            step.id,
                            list.len()
                        ),
                    );
                    return self
                        .fail_step(step, steps, scope, key, n, false, None, error, started)
                        .await;
                }
                let input = Value::Array(list.clone()).to_string();
                let fence = self
                    .engine
                    .store
                    .begin_attempt(
                        &self.lease,
                        key,
                        n,
                        Some(&input),
                        AttemptState::Started,
                        None,
                        self.engine.clock.now(),
                    )
                    .await?;
                Self::check_fence(fence)?;
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
                    if failure.is_none() {
                        failure = Some((index, error));
                    }
                }
                Err(other) => {
                    if stop.is_none() {
                        stop = Some(other);
                    }
                }
            }
        }
        if let Some(stop) = stop {
            return Err(stop);
        }
        if let Some((index, item_error)) = failure {
            let mut error = error_json(
                key,
                "for_each",
                format!(
                    "step `{}`: item {index} failed: {}",
                    step.id,
                    message_of(&item_error)
                ),
            );
            error["item"] = json!(index);
            error["cause"] = item_error;
            return self
                .fail_step(step, steps, scope, key, n, true, None, error, started)
                .await;
        }
        self.succeed(step, scope, key, n, outputs.into_iter().collect(), started)
            .await
    }
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "text",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

/// Reads the end of a `wait: {until}`: an RFC 3339 time or seconds since the Unix epoch.
fn wait_time(v: &Val) -> Result<Millis, String> {
    match val_to_json(v)? {
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
            kind_of(&other)
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
        .project
        .parse_workflow(&stored.file, &stored.source, &engine.catalog)
        .map_err(|diags| {
            let problems: Vec<String> = diags.iter().take(3).map(|d| d.to_string()).collect();
            format!(
                "the run's workflow version ({} as it was when the run started) no longer loads in this project: {}",
                stored.file,
                problems.join("; ")
            )
        })?;
    let workflow = Arc::new(workflow);
    if let Ok(mut v) = engine.versions.lock() {
        v.insert(run.version.clone(), workflow.clone());
    }
    Ok(workflow)
}
