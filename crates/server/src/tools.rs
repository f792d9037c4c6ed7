//! Workflows as tools for chatbots: what a tool call does, whichever way it arrives (MCP over
//! streamable HTTP or stdio in [`crate::mcp`], HTTP function calling in [`crate::api`]).
//!
//! A call checks its arguments against the tool's input schema before any run starts
//! ([`weft_engine::Engine::call_tool`]), commits the run, and waits for it up to the tool's `wait`,
//! telling the caller about each step as it finishes and about an approval the run waits for. The
//! answer is one of three [`CallOutcome`]s: the output (checked against the output schema), the
//! failure (step and reason), or "still going" with the run's id, for a run that waits for a person.
//! The built-in tool `run_result` waits for such a run again by its id; a call with the same
//! idempotency key does the same. The built-in tool `kb_search` answers from the knowledge base
//! through the `kb` connection, without a run.

use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::broadcast;
use weft_connectors::Call;
use weft_core::tool::{DEFAULT_WAIT, ToolDef, ToolSchema, definitions};
use weft_core::{AttemptState, RunState, Trigger};
use weft_engine::{Engine, EngineError, Event, ToolCallError, view};
use weft_store::{ApprovalState, RunRecord};

use crate::auth::Identity;

/// How often a waiting call reads its run again without being told of a change.
const RECHECK: Duration = Duration::from_secs(1);

/// How a tool call ended, as far as the caller waited.
#[derive(Clone, Debug, PartialEq)]
pub enum CallOutcome {
    /// The run succeeded (or the built-in tool answered).
    Done {
        /// The run, when the tool is a workflow.
        run_id: Option<String>,
        /// Its output.
        output: Value,
    },
    /// The run failed, or its output does not match the tool's output schema.
    Failed {
        /// The run.
        run_id: String,
        /// The run's state (`failed`, `cancelled`, or `succeeded` with an output that does not match).
        state: RunState,
        /// The step that failed, if one did.
        step: Option<String>,
        /// Why, for people and models.
        message: String,
        /// The run's error as stored.
        error: Value,
    },
    /// The run is still going when the call stops waiting.
    Pending {
        /// The run.
        run_id: String,
        /// Its state now.
        state: RunState,
        /// The approval it waits for, if it does.
        approval: Option<Value>,
    },
}

impl CallOutcome {
    /// Text for a model to read: the output as JSON, or what went wrong, or what the run waits for
    /// and how to get its result.
    pub fn text(&self) -> String {
        match self {
            CallOutcome::Done { output, .. } => output.to_string(),
            CallOutcome::Failed { message, .. } => message.clone(),
            CallOutcome::Pending {
                run_id,
                state,
                approval,
            } => {
                let what = match approval.as_ref().and_then(|a| a["message"].as_str()) {
                    Some(question) => {
                        format!("Run {run_id} is waiting for a person to approve: {question}")
                    }
                    None => format!("Run {run_id} is still {state}"),
                };
                format!(
                    "{what}. It goes on by itself; call the tool `run_result` with {{\"run_id\": \"{run_id}\"}} later to get its result."
                )
            }
        }
    }

    /// The outcome as JSON, as the HTTP API answers it.
    pub fn json(&self) -> Value {
        match self {
            CallOutcome::Done { run_id, output } => {
                json!({"run_id": run_id, "state": "succeeded", "is_error": false, "output": output})
            }
            CallOutcome::Failed {
                run_id,
                state,
                step,
                message,
                error,
            } => json!({
                "run_id": run_id, "state": state.as_str(), "is_error": true,
                "step": step, "message": message, "error": error,
            }),
            CallOutcome::Pending {
                run_id,
                state,
                approval,
            } => json!({
                "run_id": run_id, "state": state.as_str(), "is_error": false,
                "approval": approval, "message": self.text(),
            }),
        }
    }
}

/// Why a call is refused before any run starts, or cannot be answered.
#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    /// Unknown tool, arguments that do not match, an unusable idempotency key, or a store that
    /// failed (nothing started).
    #[error(transparent)]
    Call(#[from] ToolCallError),
    /// A built-in tool's arguments are wrong.
    #[error("{0}")]
    BadArguments(String),
    /// A built-in tool failed.
    #[error("{0}")]
    Failed(String),
}

impl From<EngineError> for ToolError {
    fn from(e: EngineError) -> ToolError {
        ToolError::Call(ToolCallError::Engine(e))
    }
}

/// What a caller hears while a call runs: a step finished, or the run waits for an approval.
#[derive(Clone, Debug, PartialEq)]
pub struct Progress {
    /// Counts up with every report.
    pub count: u32,
    /// What happened.
    pub message: String,
}

/// The tools of the engine's current project that `who` may see (a `tool` token: the ones it may
/// call; any other token, and no identity as over stdio: all): its `tool` workflows, `run_result` with them, and `kb_search` when the
/// project has a knowledge base.
pub fn list(engine: &Engine, who: Option<&Identity>) -> Vec<ToolDef> {
    let project = engine.project();
    let mut defs = definitions(&project, project.has_kb);
    // A `tool` token sees only its tools; every other role may read the whole list.
    defs.retain(|d| {
        who.is_none_or(|w| w.role != weft_core::auth::Role::Tool || w.may_call(&d.name))
    });
    if defs.iter().all(|d| d.name == "run_result") {
        defs.clear();
    }
    defs
}

/// Calls tool `name` with `arguments` on behalf of `who` (anyone without an identity, as over
/// stdio), waiting for its run at most the tool's `wait`, and reports progress through `progress`.
/// A tool `who` may not call is answered as unknown, so that its existence does not show.
pub async fn call(
    engine: &Engine,
    who: Option<&Identity>,
    name: &str,
    arguments: Value,
    idempotency_key: Option<String>,
    progress: impl FnMut(Progress),
) -> Result<CallOutcome, ToolError> {
    if who.is_some_and(|w| !w.may_call(name)) {
        let names: Vec<String> = list(engine, who).into_iter().map(|d| d.name).collect();
        return Err(ToolError::Call(ToolCallError::UnknownTool {
            name: name.to_string(),
            hint: format!("; the tools are: {}", names.join(", ")),
        }));
    }
    let store = engine.store().as_ref();
    let actor = crate::audit::actor(who);
    match name {
        "kb_search" if engine.project().has_kb => {
            let details = json!({ "arguments": arguments });
            crate::audit::record(store, &actor, "tool.call", name, details).await;
            return kb_search(engine, arguments).await;
        }
        "run_result" => {
            let details = json!({ "arguments": arguments });
            crate::audit::record(store, &actor, "tool.call", name, details).await;
            return run_result(engine, who, arguments, progress).await;
        }
        _ => {}
    }
    // Listen before the run exists, so that no event of it is missed.
    let events = engine.subscribe();
    let shown = arguments.clone();
    let key = idempotency_key.clone();
    let caller = who.map(|w| w.token_id.as_str());
    let (created, tool) = engine
        .call_tool(name, arguments, idempotency_key, caller)
        .await?;
    let details = json!({
        "arguments": weft_core::tool::mask_sensitive(tool.input.schema(), &shown),
        "run_id": created.id(),
        "idempotency_key": key,
    });
    crate::audit::record(store, &actor, "tool.call", name, details).await;
    follow(
        engine,
        created.id(),
        tool.wait,
        tool.output.as_ref(),
        events,
        progress,
    )
    .await
}

/// Waits for run `run_id` at most `wait`, reporting its steps, and answers its outcome.
async fn follow(
    engine: &Engine,
    run_id: &str,
    wait: Duration,
    output_schema: Option<&ToolSchema>,
    mut events: broadcast::Receiver<Event>,
    mut progress: impl FnMut(Progress),
) -> Result<CallOutcome, ToolError> {
    let deadline = tokio::time::Instant::now() + wait;
    let mut count = 0u32;
    loop {
        let run = read_run(engine, run_id).await?;
        if run.state.is_terminal() {
            return Ok(finished(run, output_schema));
        }
        if tokio::time::Instant::now() >= deadline {
            return pending(engine, run).await;
        }
        // Read the run again at least every second: another process may be executing it.
        let recheck = tokio::time::Instant::now() + RECHECK;
        loop {
            let event = tokio::select! {
                event = tokio::time::timeout_at(deadline.min(recheck), events.recv()) => event,
                // A hub that shuts down answers with the run's id rather than dropping the call.
                () = engine.stopping() => {
                    let run = read_run(engine, run_id).await?;
                    return if run.state.is_terminal() {
                        Ok(finished(run, output_schema))
                    } else {
                        pending(engine, run).await
                    };
                }
            };
            let event = match event {
                Err(_) | Ok(Err(broadcast::error::RecvError::Lagged(_))) => break,
                Ok(Err(broadcast::error::RecvError::Closed)) => {
                    return pending(engine, read_run(engine, run_id).await?).await;
                }
                Ok(Ok(event)) => event,
            };
            match event {
                Event::Step {
                    run_id: id,
                    step,
                    attempt,
                    state,
                    error,
                    ..
                } if id == run_id => {
                    let message = match state {
                        AttemptState::Started => continue,
                        AttemptState::Waiting => {
                            match engine.store().approval_for(run_id, &step, attempt).await {
                                Ok(Some(a)) if a.state == ApprovalState::Pending => {
                                    format!("waiting for approval {}: {}", a.id, a.message)
                                }
                                _ => format!("step `{}` is waiting", step.step_id()),
                            }
                        }
                        other => match error {
                            Some(e) => format!("step `{}` {other}: {e}", step.step_id()),
                            None => format!("step `{}` {other}", step.step_id()),
                        },
                    };
                    count += 1;
                    progress(Progress { count, message });
                }
                Event::Run { run_id: id, .. } if id == run_id => break,
                _ => {}
            }
        }
    }
}

async fn read_run(engine: &Engine, run_id: &str) -> Result<RunRecord, EngineError> {
    engine
        .store()
        .get_run(run_id)
        .await?
        .ok_or_else(|| EngineError::Unrunnable(format!("run {run_id} no longer exists")))
}

/// The outcome of a run that finished.
fn finished(run: RunRecord, output_schema: Option<&ToolSchema>) -> CallOutcome {
    let error = run.error.clone().unwrap_or(Value::Null);
    if run.state == RunState::Succeeded {
        let output = run.output.unwrap_or(Value::Null);
        let problems = output_schema
            .map(|s| s.problems(&output))
            .unwrap_or_default();
        if problems.is_empty() {
            return CallOutcome::Done {
                run_id: Some(run.id),
                output,
            };
        }
        let list: Vec<String> = problems.iter().map(ToString::to_string).collect();
        return CallOutcome::Failed {
            message: format!(
                "the output of run {} does not match the tool's output schema: {}",
                run.id,
                list.join("; ")
            ),
            run_id: run.id,
            state: run.state,
            step: None,
            error: json!({"kind": "output_schema", "problems": list}),
        };
    }
    let step = error["step"].as_str().map(String::from);
    let reason = error["message"]
        .as_str()
        .map_or_else(|| run.state.to_string(), String::from);
    CallOutcome::Failed {
        message: match &step {
            Some(s) => format!("run {} {} at step `{s}`: {reason}", run.id, run.state),
            None => format!("run {} {}: {reason}", run.id, run.state),
        },
        run_id: run.id,
        state: run.state,
        step,
        error,
    }
}

/// The outcome of a run that is still going, with the approval it waits for now.
async fn pending(engine: &Engine, run: RunRecord) -> Result<CallOutcome, ToolError> {
    let store = engine.store();
    // The approval, if the run waits for one: the one its waiting attempt opened.
    let attempts = store.attempts(&run.id).await.map_err(EngineError::from)?;
    let mut approval = None;
    if let Some(a) = attempts
        .iter()
        .rev()
        .find(|a| a.state == AttemptState::Waiting)
        && let Some(record) = store
            .approval_for(&run.id, &a.step_key, a.attempt)
            .await
            .map_err(EngineError::from)?
        && record.state == ApprovalState::Pending
    {
        approval = Some(view::approval_json(&record));
    }
    Ok(CallOutcome::Pending {
        run_id: run.id,
        state: run.state,
        approval,
    })
}

/// The built-in `run_result` tool: waits (at most the default tool wait) for a run that a tool call
/// started and answers its outcome.
async fn run_result(
    engine: &Engine,
    who: Option<&Identity>,
    arguments: Value,
    progress: impl FnMut(Progress),
) -> Result<CallOutcome, ToolError> {
    let run_id = match (
        arguments.get("run_id"),
        arguments.as_object().map(|o| o.len()),
    ) {
        (Some(Value::String(id)), Some(1)) if !id.is_empty() => id.clone(),
        _ => {
            return Err(ToolError::BadArguments(
                "run_result takes one argument, `run_id`: the id a tool call answered with".into(),
            ));
        }
    };
    let events = engine.subscribe();
    let run = engine
        .store()
        .get_run(&run_id)
        .await
        .map_err(EngineError::from)?
        // Only runs that calls of tools `who` may call started, and for a `tool` token only its own
        // calls: a chatbot sees nothing else.
        .filter(|r| {
            r.trigger["type"] == "tool"
                && who.is_none_or(|w| {
                    w.may_call(&r.workflow)
                        && (w.role != weft_core::auth::Role::Tool
                            || r.trigger["caller"] == w.token_id.as_str())
                })
        })
        .ok_or_else(|| {
            ToolError::BadArguments(format!("no tool call started a run with the id {run_id}"))
        })?;
    let project = engine.project();
    let output_schema = match project.workflows.get(&run.workflow).map(|w| &w.trigger) {
        Some(Trigger::Tool(t)) => t.output.clone(),
        _ => None,
    };
    follow(
        engine,
        &run_id,
        DEFAULT_WAIT,
        output_schema.as_ref(),
        events,
        progress,
    )
    .await
}

/// The built-in `kb_search` tool, through the `kb` connection.
async fn kb_search(engine: &Engine, arguments: Value) -> Result<CallOutcome, ToolError> {
    static SCHEMA: std::sync::OnceLock<ToolSchema> = std::sync::OnceLock::new();
    let schema = SCHEMA.get_or_init(|| {
        ToolSchema::compile(weft_core::tool::kb_search_def().input_schema)
            .expect("the kb_search schema compiles")
    });
    let problems = schema.problems(&arguments);
    if !problems.is_empty() {
        let list: Vec<String> = problems.iter().map(ToString::to_string).collect();
        return Err(ToolError::BadArguments(format!(
            "the arguments of `kb_search` do not match its input schema: {}",
            list.join("; ")
        )));
    }
    let kb = engine
        .connector("kb")
        .ok_or_else(|| ToolError::Failed("the knowledge base is not available here".into()))?;
    let output = kb
        .call(Call {
            action: "search",
            input: arguments,
            idempotency_key: "kb_search",
            max_output_bytes: u64::MAX,
        })
        .await
        .map_err(|e| ToolError::Failed(format!("kb_search failed: {e}")))?;
    Ok(CallOutcome::Done {
        run_id: None,
        output,
    })
}
