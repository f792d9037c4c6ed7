//! Workflows as tools for chatbots: what a tool call does, whichever way it arrives (MCP over
//! streamable HTTP or stdio in [`crate::mcp`], HTTP function calling in [`crate::api`]).
//!
//! A call checks its arguments against the tool's input schema before any run starts
//! ([`weft_engine::Engine::call_tool`]), commits the run, and waits for it up to the tool's `wait`,
//! telling the caller about each step as it finishes and about an approval the run waits for. The
//! answer is one of three [`CallOutcome`]s: the output (checked against the output schema), the
//! failure (step and reason), or "still going" with the run's id, for a run that waits for a person;
//! calling again with the same idempotency key then returns that same run's result. The built-in
//! `kb_search` tool answers from the knowledge base without a run.

use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::broadcast;
use weft_connectors::{ActionError, Call};
use weft_core::tool::{ToolDef, definitions};
use weft_core::{AttemptState, RunState, Trigger};
use weft_engine::{Engine, EngineError, Event, ToolCallError, view};
use weft_store::{ApprovalState, RunRecord};

/// How often a waiting call reads its run again without being told of a change.
const RECHECK: Duration = Duration::from_secs(1);

/// Most passages `kb_search` returns.
const KB_MAX_LIMIT: u64 = 20;

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
        /// The run's state (`failed` or `cancelled`).
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
    /// Text for a model to read: the output as JSON, or what went wrong, or what the run waits for.
    pub fn text(&self) -> String {
        match self {
            CallOutcome::Done { output, .. } => output.to_string(),
            CallOutcome::Failed { message, .. } => message.clone(),
            CallOutcome::Pending {
                run_id,
                state,
                approval,
            } => match approval.as_ref().and_then(|a| a["message"].as_str()) {
                Some(question) => format!(
                    "Run {run_id} is waiting for a person to approve: {question}. Call the tool again with the same idempotency key to get its result once answered."
                ),
                None => format!(
                    "Run {run_id} is still {state}. Call the tool again with the same idempotency key to get its result."
                ),
            },
        }
    }

    /// The outcome as JSON, as the HTTP API answers it (besides status codes).
    pub fn json(&self) -> Value {
        match self {
            CallOutcome::Done { run_id, output } => {
                json!({"run_id": run_id, "state": "succeeded", "output": output})
            }
            CallOutcome::Failed {
                run_id,
                state,
                step,
                message,
                error,
            } => {
                json!({"run_id": run_id, "state": state.as_str(), "step": step, "message": message, "error": error})
            }
            CallOutcome::Pending {
                run_id,
                state,
                approval,
            } => json!({"run_id": run_id, "state": state.as_str(), "approval": approval}),
        }
    }
}

/// Why a call is refused before any run starts, or cannot be answered.
#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    /// Unknown tool or arguments that do not match (nothing started).
    #[error(transparent)]
    Call(#[from] ToolCallError),
    /// The built-in tool's arguments are wrong, or it failed.
    #[error("{0}")]
    Builtin(String),
    /// The store failed while the call waited.
    #[error(transparent)]
    Engine(#[from] EngineError),
}

/// What a caller hears while a call runs: a step finished, or the run waits for an approval.
#[derive(Clone, Debug, PartialEq)]
pub struct Progress {
    /// Counts up with every report.
    pub count: u32,
    /// What happened.
    pub message: String,
}

/// The tools of the engine's current project: its `tool` workflows, and `kb_search` when the
/// project has a knowledge base.
pub fn list(engine: &Engine) -> Vec<ToolDef> {
    definitions(&engine.project(), engine.connector("kb").is_some())
}

/// Calls tool `name` with `arguments`, waiting for its run at most the tool's `wait`, and reports
/// progress through `progress`.
pub async fn call(
    engine: &Engine,
    name: &str,
    arguments: Value,
    idempotency_key: Option<String>,
    mut progress: impl FnMut(Progress),
) -> Result<CallOutcome, ToolError> {
    if name == "kb_search" && engine.connector("kb").is_some() {
        return kb_search(engine, arguments).await;
    }
    let project = engine.project();
    let (wait, output_schema) = match project.workflows.get(name).map(|w| &w.trigger) {
        Some(Trigger::Tool(t)) => (t.wait, t.output.clone()),
        _ => (Duration::ZERO, None),
    };
    // Listen before the run exists, so that no event of it is missed.
    let mut events = engine.subscribe();
    let created = engine.call_tool(name, arguments, idempotency_key).await?;
    let run_id = created.id().to_string();
    let deadline = tokio::time::Instant::now() + wait;
    let mut count = 0u32;
    let mut approval: Option<Value> = None;
    loop {
        let run = engine
            .store()
            .get_run(&run_id)
            .await
            .map_err(EngineError::from)?
            .ok_or_else(|| EngineError::Unrunnable(format!("run {run_id} disappeared")))?;
        if run.state.is_terminal() {
            return Ok(finished(run, output_schema.as_ref()));
        }
        // Read the run again at least every second: another process may be executing it.
        let recheck = tokio::time::Instant::now() + RECHECK;
        loop {
            let event = tokio::select! {
                event = tokio::time::timeout_at(deadline.min(recheck), events.recv()) => event,
                // A hub that shuts down answers with the run's id rather than dropping the call.
                () = engine.stopping() => return pending(engine, &run_id, approval).await,
            };
            let event = match event {
                Err(_) if tokio::time::Instant::now() >= deadline => {
                    return pending(engine, &run_id, approval).await;
                }
                Err(_) => break,
                Ok(Err(broadcast::error::RecvError::Lagged(_))) => break,
                Ok(Err(broadcast::error::RecvError::Closed)) => {
                    return pending(engine, &run_id, approval).await;
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
                        AttemptState::Waiting => {
                            match engine.store().approval_for(&run_id, &step, attempt).await {
                                Ok(Some(a)) if a.state == ApprovalState::Pending => {
                                    let text =
                                        format!("waiting for approval {}: {}", a.id, a.message);
                                    approval = Some(view::approval_json(&a));
                                    text
                                }
                                _ => format!("step `{}` is waiting", step.step_id()),
                            }
                        }
                        AttemptState::Started => continue,
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

/// The outcome of a run that finished.
fn finished(run: RunRecord, output_schema: Option<&weft_core::tool::ToolSchema>) -> CallOutcome {
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

/// The outcome of a run that is still going, with the approval it waits for.
async fn pending(
    engine: &Engine,
    run_id: &str,
    approval: Option<Value>,
) -> Result<CallOutcome, ToolError> {
    let store = engine.store();
    let run = store
        .get_run(run_id)
        .await
        .map_err(EngineError::from)?
        .ok_or_else(|| EngineError::Unrunnable(format!("run {run_id} disappeared")))?;
    if run.state.is_terminal() {
        return Ok(finished(run, None));
    }
    // A call that joined a run already waiting saw no event: look the approval up.
    let approval = match approval {
        Some(a) => Some(a),
        None => store
            .list_approvals(true, 500)
            .await
            .map_err(EngineError::from)?
            .iter()
            .find(|a| a.run_id == run_id)
            .map(view::approval_json),
    };
    Ok(CallOutcome::Pending {
        run_id: run_id.to_string(),
        state: run.state,
        approval,
    })
}

/// The built-in `kb_search` tool.
async fn kb_search(engine: &Engine, arguments: Value) -> Result<CallOutcome, ToolError> {
    let query = match arguments.get("query") {
        Some(Value::String(q)) if !q.trim().is_empty() => q.clone(),
        _ => {
            return Err(ToolError::Builtin(
                "kb_search needs `query`: the question to look up, as a string".into(),
            ));
        }
    };
    let limit = match arguments.get("limit") {
        None | Some(Value::Null) => 3,
        Some(v) => match v.as_u64() {
            Some(n) if (1..=KB_MAX_LIMIT).contains(&n) => n,
            _ => {
                return Err(ToolError::Builtin(format!(
                    "kb_search: `limit` must be a whole number from 1 to {KB_MAX_LIMIT}"
                )));
            }
        },
    };
    if let Some(key) = arguments
        .as_object()
        .and_then(|o| o.keys().find(|k| !["query", "limit"].contains(&k.as_str())))
    {
        return Err(ToolError::Builtin(format!(
            "kb_search takes `query` and `limit`, not `{key}`"
        )));
    }
    let kb = engine
        .connector("kb")
        .ok_or_else(|| ToolError::Builtin("this project has no knowledge base (kb/)".into()))?;
    let output = kb
        .call(Call {
            action: "search",
            input: json!({"query": query, "limit": limit}),
            idempotency_key: "kb_search",
            max_output_bytes: u64::MAX,
        })
        .await
        .map_err(|e: ActionError| ToolError::Builtin(format!("kb_search failed: {e}")))?;
    Ok(CallOutcome::Done {
        run_id: None,
        output,
    })
}
