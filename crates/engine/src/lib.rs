//! Weft's engine: it accepts events as runs, claims runs from the store and executes their steps
//! durably.
//!
//! # Brief overview
//!
//! - [`Engine`] is the facade. [`Engine::start_run`] commits a new run (or finds the one with the same
//!   idempotency key); [`Engine::drive`] claims runnable runs and executes them until a condition
//!   holds ([`Until`]), which is how `weft run`, `weft runs resume` and a long-running hub all work.
//! - Execution walks a run's steps from the start, taking every step whose outcome is already
//!   committed from the store and running the first one that is not: after a crash a run resumes at
//!   its first uncommitted step. Every attempt is recorded before its step starts (a `map` step in a
//!   run's first execution, which acts on nothing outside the run, once it is evaluated) and its
//!   outcome is stored before anything later in the run is.
//! - Connectors are injected ([`weft_connectors::Registry`]); in `weft test` a [`StepMocks`] answers
//!   for them, and a [`clock::VirtualClock`] makes waits and retry delays instant.
//! - [`project_dir`] reads a project folder; [`testing`] runs workflow test files; [`poll`] does one
//!   poll of a polling trigger for the hub.
//!
//! The engine never speaks HTTP to clients and never writes SQL: it talks to the store through
//! [`weft_store::Store`].

#![deny(missing_docs)]

pub mod clock;
mod drive;
pub mod eval;
mod exec;
pub mod poll;
pub mod project_dir;
mod queue;
mod state;
pub mod testing;
pub mod vault;
pub mod view;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::{Notify, broadcast, watch};
use weft_connectors::{ActionError, Registry};
use weft_core::{
    AttemptState, EvalError, Project, RunState, StepKey, Template, Val, Workflow, json_to_val,
};
use weft_store::{
    CancelOutcome, ClaimScope, Created, Millis, NewRun, RunRecord, Store, StoreError,
};

pub use clock::{Clock, SystemClock, VirtualClock};
pub use eval::{EvalOptions, Evaluator};

/// How the engine behaves; the defaults suit a single machine.
#[derive(Clone, Debug)]
pub struct EngineOptions {
    /// How long a claim lasts without renewal. Leases are renewed every third of this.
    pub lease: Duration,
    /// Most runs executing at once in this process.
    pub max_runs: usize,
    /// A top-level wait or retry delay at least this long gives the run back to the store (state
    /// `waiting`) instead of holding it in memory.
    pub park_after: Duration,
    /// How often an idle engine looks for work that another process created.
    pub poll_interval: Duration,
    /// Where expressions are evaluated (see [`eval`]).
    pub eval: EvalOptions,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            lease: Duration::from_secs(30),
            max_runs: 1024,
            park_after: Duration::from_secs(1),
            poll_interval: Duration::from_secs(2),
            eval: EvalOptions::default(),
        }
    }
}

/// Canned results for steps that call outside systems, as `weft test` provides them.
pub trait StepMocks: Send + Sync {
    /// The result of attempt `attempt` of step `step` given its input, or `None` when the test gives
    /// no mock for the step.
    fn result(&self, step: &str, attempt: u32, input: &Value)
    -> Option<Result<Value, ActionError>>;
}

/// Something that happened, for whoever watches (the CLI prints steps as they finish).
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    /// An attempt of a step reached a state.
    Step {
        /// The run.
        run_id: String,
        /// The run's workflow.
        workflow: String,
        /// Which step execution.
        step: StepKey,
        /// The attempt number.
        attempt: u32,
        /// The attempt's new state.
        state: AttemptState,
        /// How long the attempt took.
        elapsed: Duration,
        /// The error message, for failed attempts.
        error: Option<String>,
        /// When the next attempt or the end of the wait is due, for retrying and waiting attempts.
        until: Option<Millis>,
    },
    /// A run stopped executing: it finished, or it was parked until a time.
    Run {
        /// The run.
        run_id: String,
        /// The run's workflow.
        workflow: String,
        /// The run's state now.
        state: RunState,
        /// For a parked run, when it continues.
        until: Option<Millis>,
    },
}

/// Errors of engine operations (not of runs: a failing run is a run in state `failed`).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    /// The project has no such workflow.
    #[error("the project has no workflow named `{name}`{hint}")]
    UnknownWorkflow {
        /// The name asked for.
        name: String,
        /// A suggestion, with leading punctuation, or empty.
        hint: String,
    },
    /// A run's workflow cannot be loaded any more.
    #[error("{0}")]
    Unrunnable(String),
    /// The input does not match the input schema of a `tool` workflow; no run started.
    #[error("the arguments of `{workflow}` do not match its input schema: {}", problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    InvalidInput {
        /// The workflow (the tool).
        workflow: String,
        /// Every problem, with where it is.
        problems: Vec<weft_core::tool::SchemaProblem>,
    },
    /// An idempotency key that cannot be used: empty or longer than [`MAX_IDEMPOTENCY_KEY`].
    #[error("an idempotency key must be 1 to {MAX_IDEMPOTENCY_KEY} characters long")]
    BadIdempotencyKey,
    /// A tool call's idempotency key names a run that started with other arguments.
    #[error(
        "the idempotency key `{key}` belongs to run {run_id} of `{workflow}`, which was called with other arguments; use a new key for a new call"
    )]
    KeyReused {
        /// The workflow.
        workflow: String,
        /// The key.
        key: String,
        /// The run that carries it.
        run_id: String,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Why a tool call started no run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ToolCallError {
    /// No workflow of this name has a `tool` trigger.
    #[error("there is no tool named `{name}`{hint}")]
    UnknownTool {
        /// The name asked for.
        name: String,
        /// A suggestion or the list of tools, with leading punctuation.
        hint: String,
    },
    /// The arguments do not match (see [`EngineError::InvalidInput`]), the idempotency key cannot be
    /// used, or the run could not be committed.
    #[error(transparent)]
    Engine(#[from] EngineError),
}

/// Longest idempotency key a tool call may carry, in characters.
pub const MAX_IDEMPOTENCY_KEY: usize = 200;

/// Checks `input` against the input schema of `workflow` when it is a tool.
fn check_tool_input(workflow: &Workflow, input: &Value) -> Result<(), EngineError> {
    if let weft_core::Trigger::Tool(tool) = &workflow.trigger {
        let problems = tool.input.problems(input);
        if !problems.is_empty() {
            return Err(EngineError::InvalidInput {
                workflow: workflow.name.clone(),
                problems,
            });
        }
    }
    Ok(())
}

/// The names of the project's tools (workflows with a `tool` trigger), sorted.
pub fn tool_names(project: &Project) -> Vec<&str> {
    project
        .workflows
        .values()
        .filter(|w| matches!(w.trigger, weft_core::Trigger::Tool(_)))
        .map(|w| w.name.as_str())
        .collect()
}

/// When [`Engine::drive`] returns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Until {
    /// When this run has reached a final state.
    RunFinished(String),
    /// When no run in the scope is unfinished.
    Idle,
    /// Only on [`Engine::shutdown`].
    Shutdown,
}

/// The parts an [`Engine`] is built from.
pub struct EngineParts {
    /// The durable store.
    pub store: Arc<dyn Store>,
    /// The checked project.
    pub project: Arc<Project>,
    /// The live connectors.
    pub registry: Registry,
    /// Time.
    pub clock: Arc<dyn Clock>,
    /// Tuning.
    pub options: EngineOptions,
    /// Canned step results, in tests.
    pub mocks: Option<Arc<dyn StepMocks>>,
}

/// The engine. Cloning is cheap and shares everything.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

/// The project version the engine starts new runs on, with its live connectors. Replaced as a whole
/// when the project is reloaded; a run executes with the snapshot it was claimed under.
pub(crate) struct Current {
    pub(crate) project: Arc<Project>,
    pub(crate) registry: Registry,
    /// `.env` of the project, ready for expressions.
    pub(crate) env: Val,
}

impl Current {
    fn new(project: Arc<Project>, registry: Registry) -> Current {
        let env = json_to_val(&Value::Object(
            project
                .settings
                .env
                .iter()
                .map(|name| {
                    (
                        name.clone(),
                        std::env::var(name).map_or(Value::Null, Value::String),
                    )
                })
                .collect(),
        ));
        Current {
            project,
            registry,
            env,
        }
    }
}

pub(crate) struct Inner {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) current: RwLock<Arc<Current>>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) options: EngineOptions,
    pub(crate) mocks: Option<Arc<dyn StepMocks>>,
    /// Compiled workflows by version, so each version is compiled once.
    pub(crate) versions: Mutex<HashMap<String, Arc<Workflow>>>,
    /// Connectors Weft provides itself, added to every registry.
    pub(crate) builtins: Mutex<Vec<(String, Arc<dyn weft_connectors::Connector>)>>,
    /// Rung when a run is created or finishes, to wake the drive loop and callers waiting on runs.
    pub(crate) wake: Notify,
    /// Counts (before `wake` is rung) the times runs may have become claimable: a work loop claims
    /// when it moved, when a slot frees while runs wait, and when a timer says so, not on every
    /// ring. A count, not a flag, so that every loop sees every change.
    pub(crate) claimable: AtomicU64,
    /// The way into the work loop that takes any run, while one runs (see [`drive`]).
    pub(crate) handoff: Mutex<Option<drive::Handoff>>,
    pub(crate) events: broadcast::Sender<Event>,
    pub(crate) shutdown: watch::Sender<bool>,
    /// Set by [`Engine::shutdown`]: stops every expression being evaluated.
    pub(crate) stopping: Arc<AtomicBool>,
    /// Where expressions are evaluated.
    pub(crate) evaluator: Evaluator,
    /// The runs executing in this process, each with the flag that stops its expressions, and its
    /// parent run (to cancel a run's children with it).
    pub(crate) running: Mutex<HashMap<String, Running>>,
}

/// A run executing in this process (see [`Inner::running`]).
pub(crate) struct Running {
    pub(crate) cancel: Arc<AtomicBool>,
    pub(crate) parent: Option<String>,
}

impl Engine {
    /// Builds an engine.
    pub fn new(parts: EngineParts) -> Engine {
        let mut versions = HashMap::new();
        for workflow in parts.project.workflows.values() {
            versions.insert(workflow.version.clone(), workflow.clone());
        }
        let (events, _) = broadcast::channel(4096);
        let (shutdown, _) = watch::channel(false);
        let evaluator = Evaluator::new(parts.options.eval.clone());
        Engine {
            inner: Arc::new(Inner {
                store: parts.store,
                current: RwLock::new(Arc::new(Current::new(parts.project, parts.registry))),
                clock: parts.clock,
                options: parts.options,
                mocks: parts.mocks,
                versions: Mutex::new(versions),
                builtins: Mutex::new(Vec::new()),
                wake: Notify::new(),
                claimable: AtomicU64::new(0),
                handoff: Mutex::new(None),
                events,
                shutdown,
                stopping: Arc::new(AtomicBool::new(false)),
                evaluator,
                running: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// Evaluates `template` on `context` under the current project's expression limits, off the
    /// runtime's threads when it runs long (see [`eval`]); stopped when the engine shuts down.
    pub async fn evaluate(&self, template: &Template, context: &Val) -> Result<Val, EvalError> {
        let limits = self.inner.current().project.settings.limits.expressions();
        self.inner
            .evaluator
            .eval(template, context, &limits, Some(&self.inner.stopping))
            .await
    }

    /// Replaces the credentials the current project's connections resolve (the secret store's
    /// values, and environment variables once used) wherever they appear; applied to everything a
    /// run stores.
    pub fn scrubber(&self) -> Arc<weft_core::secret::Scrubber> {
        self.inner.current().registry.secrets().scrubber()
    }

    /// The credentials the current project's connections resolve through (shared by every
    /// registry built with them).
    pub fn secrets(&self) -> weft_connectors::secret::Secrets {
        self.inner.current().registry.secrets().clone()
    }

    /// The store the engine writes to.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.inner.store
    }

    /// The project version new runs start on.
    pub fn project(&self) -> Arc<Project> {
        self.inner.current().project.clone()
    }

    /// The live connector of connection `name` in the current project, for trigger tasks that
    /// consume from it.
    pub fn connector(&self, name: &str) -> Option<Arc<dyn weft_connectors::Connector>> {
        self.inner.current().registry.get(name)
    }

    /// Makes `project` the version new runs start on, with its connectors. Runs that started on an
    /// earlier version finish on it.
    pub fn set_project(&self, project: Arc<Project>, registry: Registry) {
        if let Ok(mut versions) = self.inner.versions.lock() {
            for workflow in project.workflows.values() {
                versions
                    .entry(workflow.version.clone())
                    .or_insert_with(|| workflow.clone());
            }
        }
        let mut registry = registry;
        if let Ok(builtins) = self.inner.builtins.lock() {
            for (name, connector) in builtins.iter() {
                registry.insert(name.clone(), connector.clone());
            }
        }
        let current = Arc::new(Current::new(project, registry));
        match self.inner.current.write() {
            Ok(mut slot) => *slot = current,
            Err(poisoned) => *poisoned.into_inner() = current,
        }
    }

    /// Adds a connector that Weft provides itself (the knowledge base as `kb`) to the current
    /// registry and to every registry [`Engine::set_project`] installs from now on.
    pub fn add_builtin(&self, name: &str, connector: Arc<dyn weft_connectors::Connector>) {
        if let Ok(mut builtins) = self.inner.builtins.lock() {
            builtins.push((name.to_string(), connector));
        }
        let current = self.inner.current();
        self.set_project(current.project.clone(), current.registry.clone());
    }

    /// Events from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.inner.events.subscribe()
    }

    /// Completes once [`Engine::shutdown`] has been called.
    pub async fn stopping(&self) {
        let mut rx = self.inner.shutdown.subscribe();
        let _ = rx.wait_for(|stop| *stop).await;
    }

    /// Asks every [`Engine::drive`] to stop claiming work, let in-flight steps finish, give their
    /// runs back to the store and return.
    pub fn shutdown(&self) {
        self.inner.shutdown.send_replace(true);
        self.inner.stopping.store(true, Ordering::Relaxed);
        if let Ok(running) = self.inner.running.lock() {
            for run in running.values() {
                run.cancel.store(true, Ordering::Relaxed);
            }
        }
        self.inner.wake.notify_waiters();
    }

    /// Commits a new run of a `manual` workflow with `input`. With an idempotency key that a run of
    /// the workflow already carries, returns that run instead of starting a second one.
    pub async fn start_run(
        &self,
        workflow: &str,
        input: Value,
        idempotency_key: Option<String>,
    ) -> Result<Created, EngineError> {
        let project = self.project();
        let Some(w) = project.workflows.get(workflow) else {
            let hint = weft_core::diag::did_you_mean(
                workflow,
                project.workflows.keys().map(String::as_str),
            )
            .map(|h| format!("; did you mean `{h}`?"))
            .unwrap_or_else(|| {
                let names: Vec<&str> = project.workflows.keys().map(String::as_str).collect();
                format!("; it has: {}", names.join(", "))
            });
            return Err(EngineError::UnknownWorkflow {
                name: workflow.to_string(),
                hint,
            });
        };
        // A tool's schema holds however its workflow is started.
        check_tool_input(w, &input)?;
        let run = NewRun {
            idempotency_key,
            ..new_run(w, json!({"type": "manual"}), input, self.inner.clock.now())
        };
        let mut created = self.accept(&[run], None).await?;
        Ok(created.remove(0))
    }

    /// Checks a tool call's arguments against the input schema of workflow `name`'s `tool`
    /// trigger and, when they match, commits its run (or, with an idempotency key a run of the
    /// workflow already carries with the same arguments, returns that run). Arguments that do not
    /// match start nothing. Returns the run and the tool's settings it was called under.
    ///
    /// `caller` is the API token calling (its public id), recorded in the run's trigger as
    /// `caller`; an idempotency key is the caller's own: the same key from another caller starts
    /// another run, so no caller can reach another's run or result by guessing its key.
    pub async fn call_tool(
        &self,
        name: &str,
        arguments: Value,
        idempotency_key: Option<String>,
        caller: Option<&str>,
    ) -> Result<(Created, weft_core::tool::ToolTrigger), ToolCallError> {
        let project = self.project();
        let tool = project.workflows.get(name).and_then(|w| match &w.trigger {
            weft_core::Trigger::Tool(t) => Some((w, t.clone())),
            _ => None,
        });
        let Some((workflow, tool)) = tool else {
            let names = tool_names(&project);
            let hint = weft_core::diag::did_you_mean(name, names.iter().copied())
                .map(|h| format!("; did you mean `{h}`?"))
                .unwrap_or_else(|| format!("; the tools are: {}", names.join(", ")));
            return Err(ToolCallError::UnknownTool {
                name: name.to_string(),
                hint,
            });
        };
        check_tool_input(workflow, &arguments)?;
        // Stored (and compared with a repeated call's) without credentials.
        let mut arguments = arguments;
        self.scrubber().json(&mut arguments);
        if let Some(key) = &idempotency_key
            && (key.is_empty() || key.chars().count() > MAX_IDEMPOTENCY_KEY)
        {
            return Err(EngineError::BadIdempotencyKey.into());
        }
        let trigger = match caller {
            Some(caller) => json!({"type": "tool", "tool": name, "caller": caller}),
            None => json!({"type": "tool", "tool": name}),
        };
        let run = NewRun {
            idempotency_key: idempotency_key
                .as_ref()
                .map(|key| format!("tool:{}:{key}", caller.unwrap_or(""))),
            ..new_run(workflow, trigger, arguments.clone(), self.inner.clock.now())
        };
        let created = self.accept(&[run], None).await?.remove(0);
        // A key names one call: the same key with other arguments is a mistake, not a retry.
        if let (Created::Existing(id), Some(key)) = (&created, idempotency_key) {
            let existing = self
                .inner
                .store
                .get_run(id)
                .await
                .map_err(EngineError::from)?;
            if existing.is_some_and(|r| r.input != arguments) {
                return Err(EngineError::KeyReused {
                    workflow: name.to_string(),
                    key,
                    run_id: id.clone(),
                }
                .into());
            }
        }
        Ok((created, tool))
    }

    /// Commits runs that a trigger produced (see [`new_run`]) and, in the same transaction, the
    /// trigger's state under a key (a schedule's last slot, a poll's cursor). A run whose
    /// idempotency key is already taken is not created again: its existing run is returned. Only
    /// once this returns is the event accepted.
    pub async fn accept(
        &self,
        runs: &[NewRun],
        state: Option<(&str, &Value)>,
    ) -> Result<Vec<Created>, EngineError> {
        // An event that carries a credential is stored without it (and runs without it).
        let scrubber = self.scrubber();
        let cleaned: Option<Vec<NewRun>> = runs
            .iter()
            .any(|r| scrubber.finds(&r.trigger) || scrubber.finds(&r.input))
            .then(|| {
                runs.iter()
                    .cloned()
                    .map(|mut r| {
                        scrubber.json(&mut r.trigger);
                        scrubber.json(&mut r.input);
                        r
                    })
                    .collect()
            });
        let runs = cleaned.as_deref().unwrap_or(runs);
        let created = self.create(runs, state).await?;
        for (run, c) in runs.iter().zip(&created) {
            if let Created::New(_) = c {
                let trigger = run.trigger["type"]
                    .as_str()
                    .unwrap_or("unknown")
                    .to_string();
                metrics::counter!("weft_runs_started_total", "workflow" => run.workflow.clone(), "trigger" => trigger).increment(1);
            }
        }
        Ok(created)
    }

    /// Commits `runs`: claimed and handed straight to this process's work loop when it has a free
    /// slot for each and no runs wait before them, queued for a claim otherwise.
    async fn create(
        &self,
        runs: &[NewRun],
        state: Option<(&str, &Value)>,
    ) -> Result<Vec<Created>, EngineError> {
        let inner = &self.inner;
        let now = inner.clock.now();
        let handoff = inner
            .handoff
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let slots = handoff.as_ref().and_then(|h| h.slots(runs.len()));
        if let (Some(handoff), Some(slots)) = (&handoff, slots) {
            let deliver = handoff.deliver(slots, Arc::clone(inner));
            return Ok(inner
                .store
                .create_claimed_runs(runs, state, now, inner.options.lease, deliver)
                .await?);
        }
        let created = inner.store.create_runs(runs, state, now).await?;
        if let Some(handoff) = &handoff {
            handoff.queued();
        }
        inner.kick();
        Ok(created)
    }

    /// Answers a pending approval (`Approved` or `Rejected`, with what the answer carries and who
    /// gave it) and wakes its run at once.
    pub async fn answer_approval(
        &self,
        id: &str,
        decision: weft_store::ApprovalState,
        answer: &Value,
        by: Option<&str>,
    ) -> Result<weft_store::ApprovalRecord, EngineError> {
        let mut answer = answer.clone();
        self.scrubber().json(&mut answer);
        let record = self
            .inner
            .store
            .answer_approval(id, decision, &answer, by, self.inner.clock.now())
            .await?;
        metrics::counter!("weft_approvals_answered_total", "workflow" => record.workflow.clone(), "decision" => decision.as_str()).increment(1);
        self.inner.kick();
        Ok(record)
    }

    /// Waits until run `id` is finished or `timeout` has passed, and returns the run as it is then.
    pub async fn wait_finished(
        &self,
        id: &str,
        timeout: Duration,
    ) -> Result<Option<RunRecord>, EngineError> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut events = self.subscribe();
        loop {
            let run = self.inner.store.get_run(id).await?;
            match &run {
                Some(r) if r.state.is_terminal() => return Ok(run),
                None => return Ok(None),
                Some(_) => {}
            }
            // Wait for this run's end event; on anything unclear (lagging, timeout), read again.
            loop {
                match tokio::time::timeout_at(deadline, events.recv()).await {
                    Err(_) => return Ok(self.inner.store.get_run(id).await?),
                    Ok(Ok(Event::Run { run_id, state, .. })) if run_id == id => {
                        if state.is_terminal() {
                            break;
                        }
                    }
                    Ok(Ok(_)) => {}
                    Ok(Err(broadcast::error::RecvError::Lagged(_))) => break,
                    Ok(Err(broadcast::error::RecvError::Closed)) => {
                        return Ok(self.inner.store.get_run(id).await?);
                    }
                }
            }
        }
    }

    /// Starts a new run from the trigger event of run `id`, on the workflow's current version.
    pub async fn replay(&self, id: &str) -> Result<String, EngineError> {
        let store = &self.inner.store;
        let run = store
            .get_run(id)
            .await?
            .ok_or_else(|| StoreError::NotFound(id.to_string()))?;
        let project = self.project();
        let Some(w) = project.workflows.get(&run.workflow) else {
            return Err(EngineError::Unrunnable(format!(
                "run {id} cannot be replayed: its workflow `{}` is no longer in the project",
                run.workflow
            )));
        };
        let created = store
            .create_run(new_run(
                w,
                run.trigger.clone(),
                run.input.clone(),
                self.inner.clock.now(),
            ))
            .await?;
        self.inner.kick();
        Ok(created.id().to_string())
    }

    /// Makes failed run `id` runnable again from its failed step, with a fresh attempt budget.
    pub async fn retry(&self, id: &str) -> Result<(), EngineError> {
        self.inner
            .store
            .retry_run(id, self.inner.clock.now())
            .await?;
        self.inner.kick();
        Ok(())
    }

    /// Cancels run `id` and its unfinished child runs.
    pub async fn cancel(&self, id: &str) -> Result<CancelOutcome, EngineError> {
        let outcome = self
            .inner
            .store
            .request_cancel(id, self.inner.clock.now())
            .await?;
        self.inner.stop_expressions_of(id);
        self.inner.kick();
        Ok(outcome)
    }

    /// Claims and executes runs in `scope` until `until` holds or [`Engine::shutdown`] is called.
    pub async fn drive(&self, scope: ClaimScope, until: Until) -> Result<(), EngineError> {
        drive::drive(self.inner.clone(), scope, until).await
    }
}

impl Inner {
    /// Tells the work loop that runs may have become claimable, and wakes everyone waiting.
    pub(crate) fn kick(&self) {
        self.claimable.fetch_add(1, Ordering::AcqRel);
        self.wake.notify_waiters();
    }

    /// Stops the expressions that run `id` and the runs below it in this process are evaluating
    /// (their cancellation was requested).
    pub(crate) fn stop_expressions_of(&self, id: &str) {
        let Ok(running) = self.running.lock() else {
            return;
        };
        for (run, entry) in running.iter() {
            // Walk up the run's parents that execute here; stop it when one of them is `id`.
            let mut at = Some(run.as_str());
            let mut hops = 0;
            while let Some(current) = at {
                if current == id {
                    entry.cancel.store(true, Ordering::Relaxed);
                    break;
                }
                hops += 1;
                if hops > 100 {
                    break;
                }
                at = running.get(current).and_then(|r| r.parent.as_deref());
            }
        }
    }

    /// The project snapshot new work starts with.
    pub(crate) fn current(&self) -> Arc<Current> {
        match self.current.read() {
            Ok(c) => c.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }
}

/// A top-level run of the current version of `workflow`, without an idempotency key, accepted at
/// `now`.
pub fn new_run(workflow: &Workflow, trigger: Value, input: Value, now: Millis) -> NewRun {
    NewRun {
        workflow: workflow.name.clone(),
        version: workflow.version.clone(),
        file: workflow.file.clone(),
        source: workflow.stored_source.to_string(),
        trigger,
        input,
        idempotency_key: None,
        parent: None,
        root: None,
        depth: 0,
        now,
    }
}

#[cfg(test)]
mod tests;
