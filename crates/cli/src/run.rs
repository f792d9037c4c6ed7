//! `weft run` and `weft runs …`: start, watch, inspect and steer runs.

use std::collections::BTreeMap;
use std::path::Path;
use std::pin::pin;
use std::sync::Arc;
use std::time::Instant;

use anyhow::anyhow;
use serde_json::Value;
use tokio::sync::broadcast;
use weft_core::RunState;
use weft_engine::{Engine, EngineError, Event, Until};
use weft_store::{
    CancelOutcome, ClaimScope, Created, RunFilter, SqliteOptions, SqliteStore, Store, StoreError,
};

use crate::output::{self, event_line};
use crate::{CliError, CmdResult, exit, setup};

fn engine_error(e: EngineError) -> CliError {
    match e {
        EngineError::UnknownWorkflow { .. }
        | EngineError::Unrunnable(_)
        | EngineError::InvalidInput { .. }
        | EngineError::BadIdempotencyKey
        | EngineError::KeyReused { .. } => CliError::usage(e),
        EngineError::Store(s) => store_error(s),
        other => CliError::internal(other),
    }
}

fn store_error(e: StoreError) -> CliError {
    match e {
        StoreError::NotFound(_)
        | StoreError::Ambiguous { .. }
        | StoreError::InvalidState { .. } => CliError::usage(e),
        other => CliError::internal(other),
    }
}

/// Reads `--input`: JSON text, `@file`, or `@-` for standard input.
fn parse_input(arg: &str) -> Result<Value, CliError> {
    let (text, from) = if arg == "@-" {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut text).map_err(|e| {
            CliError::usage(anyhow!("cannot read the input from standard input: {e}"))
        })?;
        (text, "standard input".to_string())
    } else if let Some(path) = arg.strip_prefix('@') {
        let text = std::fs::read_to_string(path)
            .map_err(|e| CliError::usage(anyhow!("cannot read the input file {path}: {e}")))?;
        (text, path.to_string())
    } else {
        (arg.to_string(), "--input".to_string())
    };
    serde_json::from_str(&text)
        .map_err(|e| CliError::usage(anyhow!("{from} is not valid JSON: {e}")))
}

/// Resolves when the process is asked to stop (Ctrl-C or SIGTERM).
pub(crate) async fn interrupt() {
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = tokio::signal::ctrl_c().await;
                    return;
                }
            };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Drives the engine until `until`, printing events; returns false when interrupted.
async fn watch(
    engine: &Engine,
    scope: ClaimScope,
    until: Until,
    mut events: broadcast::Receiver<Event>,
    prefix_run: bool,
    finished: &mut BTreeMap<String, RunState>,
) -> Result<bool, CliError> {
    let followed = match &until {
        Until::RunFinished(id) => Some(id.clone()),
        _ => None,
    };
    let mut drive = pin!(engine.drive(scope, until));
    let mut stopping = false;
    let print = |event: Event, finished: &mut BTreeMap<String, RunState>| {
        if let Event::Run { run_id, state, .. } = &event
            && state.is_terminal()
        {
            finished.insert(run_id.clone(), *state);
        }
        if let Some(line) = event_line(&event, prefix_run, followed.as_deref()) {
            eprintln!("{line}");
        }
    };
    loop {
        tokio::select! {
            result = &mut drive => {
                result.map_err(engine_error)?;
                break;
            }
            event = events.recv() => match event {
                Ok(event) => print(event, finished),
                Err(broadcast::error::RecvError::Lagged(n)) => eprintln!("  ({n} step events not shown)"),
                Err(broadcast::error::RecvError::Closed) => {}
            },
            _ = interrupt(), if !stopping => {
                stopping = true;
                eprintln!("Stopping: steps in flight finish, then their runs are kept for `weft runs resume`. Press Ctrl-C again to stop at once.");
                engine.shutdown();
            }
            _ = interrupt(), if stopping => {
                eprintln!("Stopped at once; the interrupted steps run again on `weft runs resume`.");
                return Ok(false);
            }
        }
    }
    while let Ok(event) = events.try_recv() {
        print(event, finished);
    }
    Ok(!stopping)
}

/// Drives a run (and the child runs it starts) to its end and reports it.
async fn follow(engine: &Engine, id: &str, json: bool) -> CmdResult {
    let store = engine.store().clone();
    let run = store
        .get_run(id)
        .await
        .map_err(store_error)?
        .ok_or_else(|| CliError::usage(anyhow!("run {id} does not exist")))?;
    let started = Instant::now();
    let events = engine.subscribe();
    let mut finished = BTreeMap::new();
    let completed = watch(
        engine,
        ClaimScope::Tree(run.root_id.clone()),
        Until::RunFinished(id.to_string()),
        events,
        false,
        &mut finished,
    )
    .await?;
    let run = store
        .get_run(id)
        .await
        .map_err(store_error)?
        .ok_or_else(|| CliError::internal(anyhow!("run {id} disappeared")))?;
    if json {
        let attempts = store.attempts(id).await.map_err(store_error)?;
        println!(
            "{}",
            serde_json::to_string_pretty(&weft_engine::view::run_json(&run, Some(&attempts)))
                .map_err(CliError::internal)?
        );
    }
    let took = output::elapsed(started.elapsed());
    match run.state {
        RunState::Succeeded => {
            eprintln!("run {} succeeded in {took}", run.id);
            if !json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&run.output.unwrap_or(Value::Null))
                        .map_err(CliError::internal)?
                );
            }
            Ok(exit::OK)
        }
        RunState::Failed | RunState::Cancelled => {
            let message = run
                .error
                .as_ref()
                .and_then(|e| e.get("message"))
                .and_then(Value::as_str)
                .unwrap_or("no error recorded")
                .to_string();
            eprintln!("run {} {} after {took}: {message}", run.id, run.state);
            if run.state == RunState::Failed {
                eprintln!(
                    "Fix the cause, then continue it from the failed step with `weft runs retry {}`.",
                    run.id
                );
            }
            Ok(exit::FAILED)
        }
        state => {
            eprintln!(
                "run {} is {state}; `weft runs resume` continues it.",
                run.id
            );
            Ok(if completed {
                exit::OK
            } else {
                exit::INTERRUPTED
            })
        }
    }
}

pub(crate) async fn run(
    dir: &Path,
    workflow: &str,
    input: &str,
    key: Option<String>,
    json: bool,
) -> CmdResult {
    let input = parse_input(input)?;
    let loaded = setup::load(dir)?;
    let engine = setup::engine(&loaded).await?;
    let created = engine
        .start_run(workflow, input, key.clone())
        .await
        .map_err(engine_error)?;
    match &created {
        Created::New(id) => eprintln!("run {id} ({workflow}) started"),
        Created::Existing(id) => eprintln!(
            "run {id} ({workflow}) already carries the idempotency key {}; following it instead of starting another",
            key.unwrap_or_default()
        ),
    }
    follow(&engine, created.id(), json).await
}

pub(crate) async fn retry(dir: &Path, id: &str, json: bool) -> CmdResult {
    let loaded = setup::load(dir)?;
    let engine = setup::engine(&loaded).await?;
    let id = engine
        .store()
        .resolve_run_id(id)
        .await
        .map_err(store_error)?;
    engine.retry(&id).await.map_err(engine_error)?;
    eprintln!("run {id} continues from its failed step");
    follow(&engine, &id, json).await
}

pub(crate) async fn replay(dir: &Path, id: &str, json: bool) -> CmdResult {
    let loaded = setup::load(dir)?;
    let engine = setup::engine(&loaded).await?;
    let id = engine
        .store()
        .resolve_run_id(id)
        .await
        .map_err(store_error)?;
    let new = engine.replay(&id).await.map_err(engine_error)?;
    eprintln!("run {new} replays the trigger event of run {id}");
    follow(&engine, &new, json).await
}

pub(crate) async fn resume(dir: &Path) -> CmdResult {
    let loaded = setup::load(dir)?;
    let engine = setup::engine(&loaded).await?;
    let unfinished = engine
        .store()
        .unfinished(&ClaimScope::All)
        .await
        .map_err(store_error)?;
    if unfinished == 0 {
        eprintln!("No unfinished runs.");
        return Ok(exit::OK);
    }
    eprintln!(
        "Resuming {unfinished} unfinished run{}.",
        if unfinished == 1 { "" } else { "s" }
    );
    let events = engine.subscribe();
    let mut finished = BTreeMap::new();
    let completed = watch(
        &engine,
        ClaimScope::All,
        Until::Idle,
        events,
        true,
        &mut finished,
    )
    .await?;
    let failed = finished
        .values()
        .filter(|s| **s != RunState::Succeeded)
        .count();
    eprintln!(
        "{} run{} finished: {} succeeded, {failed} failed or cancelled.",
        finished.len(),
        if finished.len() == 1 { "" } else { "s" },
        finished.len() - failed
    );
    if !completed {
        return Ok(exit::INTERRUPTED);
    }
    Ok(if failed > 0 { exit::FAILED } else { exit::OK })
}

pub(crate) async fn cancel(dir: &Path, id: &str) -> CmdResult {
    let loaded = setup::load(dir)?;
    let engine = setup::engine(&loaded).await?;
    let id = engine
        .store()
        .resolve_run_id(id)
        .await
        .map_err(store_error)?;
    match engine.cancel(&id).await.map_err(engine_error)? {
        CancelOutcome::Cancelled => eprintln!("run {id} cancelled"),
        CancelOutcome::Requested => {
            eprintln!("run {id} is executing; it stops at its next step boundary")
        }
    }
    Ok(exit::OK)
}

/// Opens the store of a project folder without loading its workflows, so that runs can be looked at
/// even while the project has problems.
async fn open_store(dir: &Path) -> Result<Option<Arc<dyn Store>>, CliError> {
    if !dir.join("weft.yaml").is_file() {
        return Err(CliError::usage(anyhow!(
            "{} is not a Weft project: it has no weft.yaml",
            dir.display()
        )));
    }
    let path = dir.join(weft_engine::project_dir::DATA_DIR).join("weft.db");
    if !path.exists() {
        return Ok(None);
    }
    let store = SqliteStore::open(SqliteOptions::new(path))
        .await
        .map_err(CliError::internal)?;
    Ok(Some(Arc::new(store)))
}

pub(crate) async fn list(
    dir: &Path,
    workflow: Option<String>,
    state: Option<String>,
    limit: u32,
    before: Option<String>,
    json: bool,
) -> CmdResult {
    let state = state
        .map(|s| {
            s.parse::<RunState>()
                .map_err(|e| CliError::usage(anyhow!("--state: {e}")))
        })
        .transpose()?;
    let Some(store) = open_store(dir).await? else {
        if json {
            println!("[]");
        } else {
            eprintln!("No runs yet.");
        }
        return Ok(exit::OK);
    };
    let runs = store
        .list_runs(&RunFilter {
            workflow,
            state,
            before,
            limit: limit.max(1),
            root: None,
            ..Default::default()
        })
        .await
        .map_err(store_error)?;
    if json {
        let list: Vec<Value> = runs
            .iter()
            .map(|r| weft_engine::view::run_json(r, None))
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&list).map_err(CliError::internal)?
        );
        return Ok(exit::OK);
    }
    if runs.is_empty() {
        eprintln!("No runs match.");
        return Ok(exit::OK);
    }
    println!(
        "{:<36}  {:<20}  {:<9}  {:<24}  TOOK",
        "ID", "WORKFLOW", "STATE", "CREATED"
    );
    for r in &runs {
        let took = r
            .finished_at
            .map(|f| {
                output::elapsed(std::time::Duration::from_millis(
                    (f - r.created_at).max(0) as u64
                ))
            })
            .unwrap_or_default();
        println!(
            "{:<36}  {:<20}  {:<9}  {:<24}  {}",
            r.id,
            r.workflow,
            r.state.as_str(),
            output::time(r.created_at),
            took
        );
    }
    if runs.len() as u32 == limit
        && let Some(last) = runs.last()
    {
        eprintln!("More may follow: --before {}", last.id);
    }
    Ok(exit::OK)
}

pub(crate) async fn show(dir: &Path, id: &str, json: bool) -> CmdResult {
    let Some(store) = open_store(dir).await? else {
        return Err(CliError::usage(anyhow!(
            "no run has the id {id} (this project has no runs yet)"
        )));
    };
    let id = store.resolve_run_id(id).await.map_err(store_error)?;
    let run = store
        .get_run(&id)
        .await
        .map_err(store_error)?
        .ok_or_else(|| CliError::usage(anyhow!("no run has the id {id}")))?;
    let attempts = store.attempts(&id).await.map_err(store_error)?;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&weft_engine::view::run_json(&run, Some(&attempts)))
                .map_err(CliError::internal)?
        );
    } else {
        output::print_run(&run, &attempts);
    }
    Ok(exit::OK)
}
