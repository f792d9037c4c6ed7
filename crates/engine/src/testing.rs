//! Running workflow test files (`weft test`): each case runs its workflow on a throwaway store with a
//! virtual clock (waits and retry delays take no time) and canned results for every `uses` step, then
//! checks the expectations.
//!
//! The run goes through the same engine code as a real one; only the connectors and the clock differ.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use weft_connectors::{ActionError, Registry};
use weft_core::testcase::{Mock, TestCase, TestFile};
use weft_core::{Project, RunState, json_to_val, val_to_json};
use weft_store::{ClaimScope, SqliteOptions, SqliteStore, Store};

use crate::{Engine, EngineOptions, EngineParts, StepMocks, Until, VirtualClock};

/// How long one case may take in real time.
const CASE_TIMEOUT: Duration = Duration::from_secs(60);

/// The result of one case.
#[derive(Clone, Debug)]
pub struct CaseReport {
    /// The test file.
    pub file: String,
    /// The case's name.
    pub case: String,
    /// Every expectation that did not hold; empty when the case passed.
    pub problems: Vec<String>,
}

impl CaseReport {
    /// Whether every expectation held.
    pub fn passed(&self) -> bool {
        self.problems.is_empty()
    }
}

struct CaseMocks {
    mocks: BTreeMap<String, Vec<Mock>>,
}

impl StepMocks for CaseMocks {
    fn result(
        &self,
        step: &str,
        attempt: u32,
        input: &Value,
    ) -> Option<Result<Value, ActionError>> {
        let entries = self.mocks.get(step)?;
        let mock = entries
            .get((attempt as usize).saturating_sub(1))
            .or_else(|| entries.last())?;
        Some(match mock {
            Mock::Output(template) => {
                let ctx = json_to_val(&json!({"input": input, "attempt": attempt}));
                // Evaluated where the step runs: a mock is a small value, held to a small budget.
                let budget = weft_core::expr::Budget::new(MOCK_LIMITS, None);
                template
                    .eval(&ctx, &budget)
                    .map_err(|e| ActionError::fatal(format!("the mock's output: {e}")))
                    .and_then(|v| val_to_json(&v).map_err(ActionError::fatal))
            }
            Mock::Error {
                message,
                retryable: true,
            } => Err(ActionError::retryable(message.clone())),
            Mock::Error {
                message,
                retryable: false,
            } => Err(ActionError::fatal(message.clone())),
        })
    }
}

/// Runs every case of a test file against the project.
pub async fn run_file(project: Arc<Project>, file: &TestFile) -> Vec<CaseReport> {
    let mut reports = Vec::new();
    for case in &file.cases {
        let problems = match run_case(project.clone(), &file.workflow, case).await {
            Ok(problems) => problems,
            Err(e) => vec![e],
        };
        reports.push(CaseReport {
            file: file.file.clone(),
            case: case.name.clone(),
            problems,
        });
    }
    reports
}

async fn run_case(
    project: Arc<Project>,
    workflow: &str,
    case: &TestCase,
) -> Result<Vec<String>, String> {
    let dir = tempfile::tempdir().map_err(|e| format!("cannot create a temporary store: {e}"))?;
    let mut options = SqliteOptions::new(dir.path().join("test.db"));
    options.sync_full = false;
    options.inline_limit = project.settings.limits.inline_output_bytes as usize;
    let store: Arc<dyn Store> = Arc::new(
        SqliteStore::open(options)
            .await
            .map_err(|e| e.to_string())?,
    );
    let engine = Engine::new(EngineParts {
        store: store.clone(),
        project,
        registry: Registry::default(),
        clock: Arc::new(VirtualClock::new(weft_store::now_millis())),
        options: EngineOptions {
            poll_interval: Duration::from_secs(3600),
            ..EngineOptions::default()
        },
        mocks: Some(Arc::new(CaseMocks {
            mocks: case.mocks.clone(),
        })),
    });
    let created = engine
        .start_run(workflow, case.input.clone(), None)
        .await
        .map_err(|e| e.to_string())?;
    let id = created.id().to_string();
    let driven = tokio::time::timeout(
        CASE_TIMEOUT,
        engine.drive(ClaimScope::Tree(id.clone()), Until::RunFinished(id.clone())),
    )
    .await;
    match driven {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(format!("the run could not be executed: {e}")),
        Err(_) => {
            return Err(format!(
                "the run did not finish within {}s",
                CASE_TIMEOUT.as_secs()
            ));
        }
    }
    let run = store
        .get_run(&id)
        .await
        .map_err(|e| e.to_string())?
        .ok_or("the run disappeared")?;
    // Steps of the run and of every child run it started, so expectations reach called workflows.
    let tree = store
        .list_runs(&weft_store::RunFilter {
            root: Some(id.clone()),
            limit: 10_000,
            ..weft_store::RunFilter::default()
        })
        .await
        .map_err(|e| e.to_string())?;
    let mut attempts = Vec::new();
    for member in tree.iter().rev() {
        attempts.extend(
            store
                .attempts(&member.id)
                .await
                .map_err(|e| e.to_string())?,
        );
    }
    let expect = &case.expect;
    let mut problems = Vec::new();

    let error_message = run
        .error
        .as_ref()
        .and_then(|e| e.get("message"))
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    if run.state != expect.status {
        let why = if error_message.is_empty() {
            String::new()
        } else {
            format!(": {error_message}")
        };
        problems.push(format!(
            "expected the run to end {}, but it ended {}{why}",
            expect.status, run.state
        ));
    }
    let output = run.output.clone().unwrap_or(Value::Null);
    if let Some(predicate) = &expect.output {
        check(
            &mut problems,
            "output",
            &predicate.code,
            holds(&engine, predicate, &output).await,
            &output,
        );
    }
    if let Some(expected) = &expect.output_equals {
        let mut diffs = Vec::new();
        diff(expected, &output, ".", &mut diffs);
        if !diffs.is_empty() {
            problems.push(format!(
                "output differs from output_equals:\n{}",
                diffs.join("\n")
            ));
        }
    }
    if let Some(predicate) = &expect.error {
        let message = Value::String(error_message.clone());
        check(
            &mut problems,
            "error",
            &predicate.code,
            holds(&engine, predicate, &message).await,
            &message,
        );
    }
    for (id, step) in &expect.steps {
        let of_step: Vec<_> = attempts
            .iter()
            .filter(|a| a.step_key.step_id() == id)
            .collect();
        let ran = of_step
            .iter()
            .any(|a| a.state != weft_core::AttemptState::Skipped);
        if let Some(want) = step.ran
            && want != ran
        {
            problems.push(format!(
                "step `{id}` {}",
                if want {
                    "was expected to run but did not"
                } else {
                    "was expected not to run but did"
                }
            ));
        }
        if let Some(want) = step.attempts {
            let count = of_step
                .iter()
                .filter(|a| a.state != weft_core::AttemptState::Skipped)
                .count() as u32;
            if count != want {
                problems.push(format!(
                    "step `{id}` made {count} attempts, expected {want}"
                ));
            }
        }
        if step.input.is_none() && step.output.is_none() {
            continue;
        }
        if !ran {
            problems.push(format!(
                "step `{id}` did not run, so its input and output cannot be checked"
            ));
            continue;
        }
        // Check the last attempt of each execution (for_each items run a step once per item).
        let mut last_by_key: BTreeMap<&str, &weft_store::AttemptRecord> = BTreeMap::new();
        for a in &of_step {
            last_by_key.insert(a.step_key.as_str(), a);
        }
        for (key, attempt) in last_by_key {
            if let Some(predicate) = &step.input {
                let input = attempt.input.clone().unwrap_or(Value::Null);
                check(
                    &mut problems,
                    &format!("step `{key}` input"),
                    &predicate.code,
                    holds(&engine, predicate, &input).await,
                    &input,
                );
            }
            if let Some(predicate) = &step.output {
                let out = attempt.output.clone().unwrap_or(Value::Null);
                check(
                    &mut problems,
                    &format!("step `{key}` output"),
                    &predicate.code,
                    holds(&engine, predicate, &out).await,
                    &out,
                );
            }
        }
    }
    if run.state == RunState::Waiting && expect.status != RunState::Waiting {
        problems.push("the run is still waiting; a test run cannot wait for outside events".into());
    }
    Ok(problems)
}

/// The limits a mock's output is evaluated under (on the engine's thread, so small).
const MOCK_LIMITS: weft_core::expr::EvalLimits = weft_core::expr::EvalLimits {
    timeout: Duration::from_secs(5),
    memory_bytes: 1 << 20,
    stack_bytes: 512 << 10,
};

/// Whether `value` satisfies `predicate` (jq truthiness), evaluated as a step's expressions are.
async fn holds(
    engine: &Engine,
    predicate: &Arc<weft_core::Expr>,
    value: &Value,
) -> Result<bool, weft_core::EvalError> {
    let template = weft_core::Template::Expr(predicate.clone());
    let value = engine.evaluate(&template, &json_to_val(value)).await?;
    Ok(!matches!(
        value,
        weft_core::Val::Null | weft_core::Val::Bool(false)
    ))
}

fn check(
    problems: &mut Vec<String>,
    what: &str,
    code: &str,
    result: Result<bool, weft_core::EvalError>,
    value: &Value,
) {
    match result {
        Ok(true) => {}
        Ok(false) => problems.push(format!(
            "{what} does not satisfy `{code}`; it was:\n{}",
            pretty(value)
        )),
        Err(e) => problems.push(format!("{what}: the predicate failed: {}", e.message)),
    }
}

fn pretty(v: &Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string())
}

/// Lists where `actual` differs from `expected`, as `path: expected X, got Y` lines.
fn diff(expected: &Value, actual: &Value, path: &str, out: &mut Vec<String>) {
    let join = |key: &str| {
        if path == "." {
            format!(".{key}")
        } else {
            format!("{path}.{key}")
        }
    };
    match (expected, actual) {
        (Value::Object(e), Value::Object(a)) => {
            for (k, ev) in e {
                match a.get(k) {
                    Some(av) => diff(ev, av, &join(k), out),
                    None => out.push(format!("  {}: expected {}, missing", join(k), ev)),
                }
            }
            for (k, av) in a {
                if !e.contains_key(k) {
                    out.push(format!("  {}: not expected, got {}", join(k), av));
                }
            }
        }
        (Value::Array(e), Value::Array(a)) => {
            for i in 0..e.len().max(a.len()) {
                let p = format!("{}[{i}]", if path == "." { "" } else { path });
                match (e.get(i), a.get(i)) {
                    (Some(ev), Some(av)) => diff(ev, av, &p, out),
                    (Some(ev), None) => out.push(format!("  {p}: expected {ev}, missing")),
                    (None, Some(av)) => out.push(format!("  {p}: not expected, got {av}")),
                    (None, None) => {}
                }
            }
        }
        _ if expected == actual => {}
        _ => out.push(format!("  {path}: expected {expected}, got {actual}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diffs_name_each_differing_path() {
        let mut out = Vec::new();
        diff(
            &json!({"a": 1, "b": [1, 2], "c": {"d": "x"}}),
            &json!({"a": 2, "b": [1], "c": {"d": "x"}, "e": true}),
            ".",
            &mut out,
        );
        assert_eq!(
            out,
            vec![
                "  .a: expected 1, got 2",
                "  .b[1]: expected 2, missing",
                "  .e: not expected, got true",
            ]
        );
    }
}
