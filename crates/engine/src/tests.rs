//! The engine end to end in one process: real SQLite stores, a real HTTP server on loopback that
//! counts calls and answers from a script, and simulated crashes (a process's tasks aborted and its
//! node lock released, exactly what the store sees after a `kill -9`).

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use weft_connectors::Registry;
use weft_core::{AttemptState, Project, RunState, Sources};
use weft_store::{AttemptRecord, ClaimScope, RunRecord, SqliteOptions, SqliteStore, Store};
use weft_testkit::{Answer, ScriptedServer as Server};

use super::*;

async fn server() -> (Server, SocketAddr) {
    Server::start().await
}

fn ok(body: Value) -> Answer {
    Answer::ok(body)
}

fn status(code: u16) -> Answer {
    Answer::status(code)
}

fn project(addr: SocketAddr, workflows: &[(&str, &str)], limits: &str) -> Arc<Project> {
    let mut sources = Sources::new(
        "weft.yaml",
        format!(
            "connections:\n  api:\n    type: http\n    base_url: http://{addr}\n    timeout: 5s\n    allow_private_network: true\n{limits}"
        ),
    );
    for (name, text) in workflows {
        sources.add_workflow(format!("workflows/{name}.yaml"), *text);
    }
    match Project::load(&sources, &weft_connectors::catalog()) {
        Ok(p) => Arc::new(p),
        Err(diags) => panic!(
            "{}",
            diags
                .iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join("\n")
        ),
    }
}

async fn open_store(dir: &Path) -> Arc<SqliteStore> {
    let mut options = SqliteOptions::new(dir.join("weft.db"));
    options.sync_full = false;
    options.inline_limit = 256;
    Arc::new(SqliteStore::open(options).await.unwrap())
}

fn engine(store: Arc<SqliteStore>, project: Arc<Project>, clock: Arc<dyn Clock>) -> Engine {
    Engine::new(EngineParts {
        store,
        registry: Registry::build(&project, std::path::Path::new("."), &Default::default())
            .unwrap(),
        project,
        clock,
        options: EngineOptions {
            park_after: Duration::from_millis(500),
            ..EngineOptions::default()
        },
        mocks: None,
    })
}

async fn run_to_end(engine: &Engine, workflow: &str, input: Value) -> RunRecord {
    let id = engine
        .start_run(workflow, input, None)
        .await
        .unwrap()
        .id()
        .to_string();
    tokio::time::timeout(
        Duration::from_secs(30),
        engine.drive(ClaimScope::Tree(id.clone()), Until::RunFinished(id.clone())),
    )
    .await
    .expect("the run finishes in time")
    .unwrap();
    engine.store().get_run(&id).await.unwrap().unwrap()
}

async fn attempts_of(engine: &Engine, run: &str, key: &str) -> Vec<AttemptRecord> {
    engine
        .store()
        .attempts(run)
        .await
        .unwrap()
        .into_iter()
        .filter(|a| a.step_key.as_str() == key)
        .collect()
}

fn states(attempts: &[AttemptRecord]) -> Vec<AttemptState> {
    attempts.iter().map(|a| a.state).collect()
}

const FAST_RETRY: &str = "{ attempts: 5, initial: 10ms, max: 50ms, jitter: false }";

#[tokio::test]
async fn steps_run_in_order_and_the_output_reads_them() {
    let (server, addr) = server().await;
    let dir = tempfile::tempdir().unwrap();
    let wf = r#"
trigger: manual
steps:
  - id: total
    map: ${{ [.input.lines[].qty] | add }}
  - id: post
    uses: api.request
    with: { method: POST, path: /orders, body: { total: "${{ .steps.total }}", who: "${{ .input.who }}" } }
  - id: big
    if: ${{ .steps.total > 2 }}
    then:
      - id: note
        map: big order
    else:
      - id: small
        map: small order
output: ${{ {total: .steps.total, call: .steps.post.body.call, note: .steps.note, small: .steps.small} }}
"#;
    let e = engine(
        open_store(dir.path()).await,
        project(addr, &[("order", wf)], ""),
        Arc::new(SystemClock),
    );
    let run = run_to_end(
        &e,
        "order",
        json!({"who": "ada", "lines": [{"qty": 1}, {"qty": 2}]}),
    )
    .await;
    assert_eq!(run.state, RunState::Succeeded, "{:?}", run.error);
    assert_eq!(
        run.output,
        Some(json!({"total": 3, "call": 1, "note": "big order", "small": null}))
    );
    let seen = server.seen("orders");
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].body, json!({"total": 3, "who": "ada"}));
    assert_eq!(seen[0].idempotency_key, format!("{}/post", run.id));
}

#[tokio::test]
async fn a_503_twice_then_200_succeeds_on_the_third_attempt() {
    let (server, addr) = server().await;
    server.script(
        "flaky",
        vec![status(503), status(503), ok(json!({"done": true}))],
    );
    let dir = tempfile::tempdir().unwrap();
    let wf = format!(
        "trigger: manual\nsteps:\n  - id: call\n    uses: api.request\n    with: {{ path: /flaky }}\n    retry: {FAST_RETRY}\n"
    );
    let e = engine(
        open_store(dir.path()).await,
        project(addr, &[("flaky", &wf)], ""),
        Arc::new(SystemClock),
    );
    let run = run_to_end(&e, "flaky", json!({})).await;
    assert_eq!(run.state, RunState::Succeeded, "{:?}", run.error);
    let attempts = attempts_of(&e, &run.id, "call").await;
    assert_eq!(
        states(&attempts),
        vec![
            AttemptState::Retrying,
            AttemptState::Retrying,
            AttemptState::Succeeded
        ]
    );
    // Exponential backoff without jitter: 10ms, then 20ms.
    let delays: Vec<i64> = attempts[..2]
        .iter()
        .map(|a| a.wake_at.unwrap() - a.finished_at.unwrap())
        .collect();
    assert_eq!(delays, vec![10, 20]);
    assert!(attempts[1].started_at >= attempts[0].wake_at.unwrap());
    assert!(attempts[2].started_at >= attempts[1].wake_at.unwrap());
    let keys: Vec<String> = server
        .seen("flaky")
        .iter()
        .map(|s| s.idempotency_key.clone())
        .collect();
    assert_eq!(keys, vec![format!("{}/call", run.id); 3]);
    assert_eq!(
        attempts[0].error.as_ref().unwrap()["details"]["status"],
        503
    );
}

#[tokio::test]
async fn a_429_waits_as_long_as_retry_after_asks() {
    let (server, addr) = server().await;
    server.script(
        "limited",
        vec![
            Answer {
                retry_after: Some(3),
                ..status(429)
            },
            ok(json!({})),
        ],
    );
    let dir = tempfile::tempdir().unwrap();
    let wf = format!(
        "trigger: manual\nsteps:\n  - id: call\n    uses: api.request\n    with: {{ path: /limited }}\n    retry: {FAST_RETRY}\n"
    );
    // A virtual clock: the 3 s wait parks the run and the engine jumps to its wake time.
    let e = engine(
        open_store(dir.path()).await,
        project(addr, &[("limited", &wf)], ""),
        Arc::new(VirtualClock::new(1_000_000)),
    );
    let run = run_to_end(&e, "limited", json!({})).await;
    assert_eq!(run.state, RunState::Succeeded, "{:?}", run.error);
    let attempts = attempts_of(&e, &run.id, "call").await;
    assert_eq!(
        states(&attempts),
        vec![AttemptState::Retrying, AttemptState::Succeeded]
    );
    assert_eq!(
        attempts[0].wake_at.unwrap() - attempts[0].finished_at.unwrap(),
        3_000
    );
    assert!(attempts[1].started_at >= attempts[0].wake_at.unwrap());
}

#[tokio::test]
async fn a_permanent_400_fails_at_once_and_retry_resumes_from_that_step() {
    let (server, addr) = server().await;
    server.script("submit", vec![status(400)]);
    let dir = tempfile::tempdir().unwrap();
    let wf = format!(
        "trigger: manual\nsteps:\n  - id: first\n    uses: api.request\n    with: {{ path: /first }}\n  - id: submit\n    uses: api.request\n    with: {{ method: POST, path: /submit, body: {{ n: 1 }} }}\n    retry: {FAST_RETRY}\n  - id: after\n    uses: api.request\n    with: {{ path: /after }}\n"
    );
    let e = engine(
        open_store(dir.path()).await,
        project(addr, &[("submit", &wf)], ""),
        Arc::new(SystemClock),
    );
    let run = run_to_end(&e, "submit", json!({})).await;
    assert_eq!(run.state, RunState::Failed);
    let error = run.error.unwrap();
    assert_eq!(error["step"], "submit");
    assert_eq!(error["kind"], "fatal");
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .starts_with("step `submit`: HTTP 400 Bad Request from POST http://"),
        "{error}"
    );
    assert_eq!(server.seen("submit").len(), 1, "a 400 is not retried");
    assert_eq!(server.seen("after").len(), 0);

    server.script("submit", vec![ok(json!({"accepted": true}))]);
    e.retry(&run.id).await.unwrap();
    e.drive(
        ClaimScope::Tree(run.id.clone()),
        Until::RunFinished(run.id.clone()),
    )
    .await
    .unwrap();
    let run = e.store().get_run(&run.id).await.unwrap().unwrap();
    assert_eq!(run.state, RunState::Succeeded, "{:?}", run.error);
    assert_eq!(
        server.seen("first").len(),
        1,
        "steps before the failed one are not run again"
    );
    assert_eq!(server.seen("submit").len(), 2);
    assert_eq!(server.seen("after").len(), 1);
    assert_eq!(
        states(&attempts_of(&e, &run.id, "submit").await),
        vec![AttemptState::Retrying, AttemptState::Succeeded]
    );
}

/// Starts driving a run in a task of its own "process" (its own store, so its own node), and kills
/// it once the server has seen `calls` requests to `/path`.
async fn kill_when_seen(
    dir: &Path,
    project: Arc<Project>,
    server: &Server,
    path: &str,
    calls: usize,
    run: &str,
) {
    let store = open_store(dir).await;
    let e = engine(store.clone(), project, Arc::new(SystemClock));
    let (scope, until) = (
        ClaimScope::Tree(run.to_string()),
        Until::RunFinished(run.to_string()),
    );
    let task = tokio::spawn(async move { e.drive(scope, until).await });
    assert!(
        server.wait_for(path, calls, Duration::from_secs(10)).await,
        "the step never started"
    );
    task.abort();
    let _ = task.await;
    // The "process" is gone: its node lock goes with it.
    drop(store);
}

#[tokio::test]
async fn a_run_killed_mid_step_resumes_there_with_the_same_idempotency_key() {
    let (server, addr) = server().await;
    server.script(
        "slow",
        vec![
            Answer {
                delay: Duration::from_secs(30),
                ..ok(json!({}))
            },
            ok(json!({"slow": "done"})),
        ],
    );
    let dir = tempfile::tempdir().unwrap();
    let wf = "trigger: manual\nsteps:\n  - id: one\n    uses: api.request\n    with: { path: /one }\n  - id: two\n    uses: api.request\n    with: { path: /slow }\n  - id: three\n    uses: api.request\n    with: { path: /three }\n";
    let p = project(addr, &[("crashy", wf)], "");
    let id = {
        let store = open_store(dir.path()).await;
        let e = engine(store, p.clone(), Arc::new(SystemClock));
        e.start_run("crashy", json!({}), None)
            .await
            .unwrap()
            .id()
            .to_string()
    };
    kill_when_seen(dir.path(), p.clone(), &server, "slow", 1, &id).await;

    let e = engine(open_store(dir.path()).await, p, Arc::new(SystemClock));
    e.drive(ClaimScope::All, Until::Idle).await.unwrap();
    let run = e.store().get_run(&id).await.unwrap().unwrap();
    assert_eq!(run.state, RunState::Succeeded, "{:?}", run.error);
    assert_eq!(server.seen("one").len(), 1);
    assert_eq!(server.seen("three").len(), 1);
    let slow = server.seen("slow");
    assert_eq!(slow.len(), 2);
    assert_eq!(slow[0].idempotency_key, slow[1].idempotency_key);
    assert_eq!(
        states(&attempts_of(&e, &id, "two").await),
        vec![AttemptState::Interrupted, AttemptState::Succeeded]
    );
}

#[tokio::test]
async fn a_step_that_keeps_killing_the_process_fails_after_its_attempts() {
    let (server, addr) = server().await;
    server.script(
        "hang",
        vec![Answer {
            delay: Duration::from_secs(60),
            ..ok(json!({}))
        }],
    );
    let dir = tempfile::tempdir().unwrap();
    let wf = "trigger: manual\nsteps:\n  - id: hang\n    uses: api.request\n    with: { path: /hang }\n    retry: 2\n";
    let p = project(addr, &[("hang", wf)], "");
    let id = engine(
        open_store(dir.path()).await,
        p.clone(),
        Arc::new(SystemClock),
    )
    .start_run("hang", json!({}), None)
    .await
    .unwrap()
    .id()
    .to_string();
    kill_when_seen(dir.path(), p.clone(), &server, "hang", 1, &id).await;
    kill_when_seen(dir.path(), p.clone(), &server, "hang", 2, &id).await;
    let e = engine(open_store(dir.path()).await, p, Arc::new(SystemClock));
    e.drive(ClaimScope::All, Until::Idle).await.unwrap();
    let run = e.store().get_run(&id).await.unwrap().unwrap();
    assert_eq!(run.state, RunState::Failed);
    let error = run.error.unwrap();
    assert_eq!(error["kind"], "interrupted");
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("the process stopped during 2 of them"),
        "{error}"
    );
    assert_eq!(
        server.seen("hang").len(),
        2,
        "the step is not started a third time"
    );
}

#[tokio::test]
async fn for_each_runs_items_concurrently_with_item_idempotency_keys() {
    let (server, addr) = server().await;
    let dir = tempfile::tempdir().unwrap();
    let wf = r#"
trigger: manual
steps:
  - id: each
    for_each: ${{ .input.skus }}
    concurrency: 3
    steps:
      - id: post
        uses: api.request
        with: { method: POST, path: /items, body: { sku: "${{ .item }}", index: "${{ .index }}" } }
      - id: sku
        map: ${{ .steps.post.body.echo.sku }}
output: ${{ .steps.each }}
"#;
    let e = engine(
        open_store(dir.path()).await,
        project(addr, &[("fan", wf)], ""),
        Arc::new(SystemClock),
    );
    let skus: Vec<String> = (0..7).map(|i| format!("S{i}")).collect();
    let run = run_to_end(&e, "fan", json!({ "skus": skus })).await;
    assert_eq!(run.state, RunState::Succeeded, "{:?}", run.error);
    assert_eq!(run.output, Some(json!(skus)));
    let mut keys: Vec<String> = server
        .seen("items")
        .iter()
        .map(|s| s.idempotency_key.clone())
        .collect();
    keys.sort();
    let expected: Vec<String> = (0..7).map(|i| format!("{}/post/{i}", run.id)).collect();
    assert_eq!(keys, expected);
}

#[tokio::test]
async fn a_failing_item_fails_the_loop_unless_on_error_continues() {
    let (server, addr) = server().await;
    server.script("bad", vec![status(422)]);
    let dir = tempfile::tempdir().unwrap();
    let wf = r#"
trigger: manual
steps:
  - id: each
    for_each: ${{ ["ok", "bad", "ok"] }}
    on_error: continue
    steps:
      - id: post
        uses: api.request
        with: { path: "/${{ .item }}" }
  - id: after
    map: ${{ .steps.each.error.item }}
"#;
    let e = engine(
        open_store(dir.path()).await,
        project(addr, &[("items", wf)], ""),
        Arc::new(SystemClock),
    );
    let run = run_to_end(&e, "items", json!({})).await;
    assert_eq!(run.state, RunState::Succeeded, "{:?}", run.error);
    assert_eq!(run.output, Some(json!(1)));
    assert_eq!(server.seen("bad").len(), 1);
}

#[tokio::test]
async fn on_error_goto_skips_forward() {
    let (server, addr) = server().await;
    server.script("broken", vec![status(500)]);
    let dir = tempfile::tempdir().unwrap();
    let wf = r#"
trigger: manual
steps:
  - id: try
    uses: api.request
    with: { path: /broken }
    retry: { attempts: 2, initial: 10ms, jitter: false }
    on_error: fallback
  - id: skipped
    uses: api.request
    with: { path: /skipped }
  - id: fallback
    map: ${{ "fell back after: " + .steps.try.error.message }}
"#;
    let e = engine(
        open_store(dir.path()).await,
        project(addr, &[("goto", wf)], ""),
        Arc::new(SystemClock),
    );
    let run = run_to_end(&e, "goto", json!({})).await;
    assert_eq!(run.state, RunState::Succeeded, "{:?}", run.error);
    assert!(
        run.output
            .unwrap()
            .as_str()
            .unwrap()
            .starts_with("fell back after: step `try`: HTTP 500")
    );
    assert_eq!(server.seen("broken").len(), 2);
    assert_eq!(server.seen("skipped").len(), 0);
    assert_eq!(
        states(&attempts_of(&e, &run.id, "try").await),
        vec![AttemptState::Retrying, AttemptState::Handled]
    );
}

#[tokio::test]
async fn a_wait_survives_a_restart_without_starting_over() {
    let (_server, addr) = server().await;
    let dir = tempfile::tempdir().unwrap();
    let wf = "trigger: manual\nsteps:\n  - id: pause\n    wait: 1h\n  - id: done\n    map: ${{ .steps.pause.waited_until }}\n";
    let p = project(addr, &[("pause", wf)], "");
    let start = 1_700_000_000_000;
    let id = {
        let store = open_store(dir.path()).await;
        let e = engine(store.clone(), p.clone(), Arc::new(VirtualClock::new(start)));
        let id = e
            .start_run("pause", json!({}), None)
            .await
            .unwrap()
            .id()
            .to_string();
        // Drive until the run has parked, then "stop the process".
        let driver = e.clone();
        let task =
            tokio::spawn(async move { driver.drive(ClaimScope::All, Until::Shutdown).await });
        for _ in 0..500 {
            if store.get_run(&id).await.unwrap().unwrap().state == RunState::Waiting {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        e.shutdown();
        task.await.unwrap().unwrap();
        let run = store.get_run(&id).await.unwrap().unwrap();
        assert_eq!(run.state, RunState::Waiting);
        assert_eq!(run.wake_at, Some(start + 3_600_000));
        id
    };
    // A restart ten minutes later: the wait still ends an hour after it began.
    let e = engine(
        open_store(dir.path()).await,
        p,
        Arc::new(VirtualClock::new(start + 600_000)),
    );
    e.drive(ClaimScope::All, Until::Idle).await.unwrap();
    let run = e.store().get_run(&id).await.unwrap().unwrap();
    assert_eq!(run.state, RunState::Succeeded, "{:?}", run.error);
    assert_eq!(run.output, Some(json!("2023-11-14T23:13:20Z")));
}

#[tokio::test]
async fn call_runs_another_workflow_as_a_child_run() {
    let (_server, addr) = server().await;
    let dir = tempfile::tempdir().unwrap();
    let parent = "trigger: manual\nsteps:\n  - id: child\n    call: double\n    with: { n: \"${{ .input.n }}\" }\noutput: ${{ .steps.child.result }}\n";
    let child =
        "trigger: manual\nsteps:\n  - id: twice\n    map: ${{ {result: (.input.n * 2)} }}\n";
    let e = engine(
        open_store(dir.path()).await,
        project(addr, &[("parent", parent), ("double", child)], ""),
        Arc::new(SystemClock),
    );
    let run = run_to_end(&e, "parent", json!({"n": 21})).await;
    assert_eq!(run.state, RunState::Succeeded, "{:?}", run.error);
    assert_eq!(run.output, Some(json!(42)));
    let children = e
        .store()
        .children(&run.id, &weft_core::StepKey::top("child"))
        .await
        .unwrap();
    assert_eq!(children.len(), 1);
    assert_eq!(children[0].parent_id.as_deref(), Some(run.id.as_str()));
    assert_eq!(children[0].root_id, run.id);
    assert_eq!(children[0].input, json!({"n": 21}));
}

#[tokio::test]
async fn a_failing_child_fails_the_call_step() {
    let (_server, addr) = server().await;
    let dir = tempfile::tempdir().unwrap();
    let parent =
        "trigger: manual\nsteps:\n  - id: child\n    call: broken\n    with: ${{ .input }}\n";
    let child =
        "trigger: manual\nsteps:\n  - id: stop\n    fail: ${{ \"no stock for \" + .input.sku }}\n";
    let e = engine(
        open_store(dir.path()).await,
        project(addr, &[("parent", parent), ("broken", child)], ""),
        Arc::new(SystemClock),
    );
    let run = run_to_end(&e, "parent", json!({"sku": "A1"})).await;
    assert_eq!(run.state, RunState::Failed);
    let message = run.error.unwrap()["message"].as_str().unwrap().to_string();
    assert!(
        message.contains("workflow `broken`") && message.ends_with("failed: no stock for A1"),
        "{message}"
    );
}

#[tokio::test]
async fn expression_errors_name_the_step_and_the_expression() {
    let (_server, addr) = server().await;
    let dir = tempfile::tempdir().unwrap();
    let wf = "trigger: manual\nsteps:\n  - id: bad\n    map: ${{ .input.n + \"x\" }}\n";
    let e = engine(
        open_store(dir.path()).await,
        project(addr, &[("bad", wf)], ""),
        Arc::new(SystemClock),
    );
    let run = run_to_end(&e, "bad", json!({"n": 1})).await;
    assert_eq!(run.state, RunState::Failed);
    let error = run.error.unwrap();
    assert_eq!(error["step"], "bad");
    assert_eq!(error["expression"], ".input.n + \"x\"");
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .starts_with("step `bad`: expression `${{ .input.n + \"x\" }}` failed: "),
        "{error}"
    );
}

#[tokio::test]
async fn outputs_above_the_limit_fail_and_large_ones_are_kept_whole() {
    let (_server, addr) = server().await;
    let dir = tempfile::tempdir().unwrap();
    let wf = "trigger: manual\nsteps:\n  - id: big\n    map: ${{ [range(.input.n)] | map(\"0123456789\") | add }}\n";
    let p = project(addr, &[("big", wf)], "limits: { max_output_bytes: 2000 }\n");
    let e = engine(open_store(dir.path()).await, p, Arc::new(SystemClock));
    // 1,000 bytes: above the store's inline limit of 256, so kept as a blob, and read back whole.
    let run = run_to_end(&e, "big", json!({"n": 100})).await;
    assert_eq!(run.state, RunState::Succeeded, "{:?}", run.error);
    assert_eq!(run.output.unwrap().as_str().unwrap().len(), 1000);
    let run = run_to_end(&e, "big", json!({"n": 300})).await;
    assert_eq!(run.state, RunState::Failed);
    let message = run.error.unwrap()["message"].as_str().unwrap().to_string();
    assert_eq!(
        message,
        "the output of step `big` is 3002 bytes, above limits.max_output_bytes (2000); nothing was cut short"
    );
}

#[tokio::test]
async fn a_run_context_above_the_limit_fails_the_step_that_would_pass_it_also_after_a_park() {
    let (_server, addr) = server().await;
    let dir = tempfile::tempdir().unwrap();
    let kb = "${{ [range(100)] | map(\"0123456789\") | add }}";
    let wf = format!(
        "trigger: manual\nsteps:\n  - id: a\n    map: {kb}\n  - id: pause\n    wait: 600ms\n  - id: b\n    map: {kb}\n  - id: c\n    map: {kb}\n"
    );
    let p = project(
        addr,
        &[("ctx", &wf)],
        "limits: { max_context_bytes: 2500 }\n",
    );
    let e = engine(open_store(dir.path()).await, p, Arc::new(SystemClock));
    let run = run_to_end(&e, "ctx", json!({})).await;
    assert_eq!(run.state, RunState::Failed);
    let error = run.error.unwrap();
    assert_eq!(error["step"], "c");
    assert_eq!(error["kind"], "limit");
    let message = error["message"].as_str().unwrap();
    // `a` (1,002 bytes, stored before the run parked) counts after it resumes.
    assert!(
        message.starts_with("the output of step `c` (1002 bytes) would make the run context 30"),
        "{message}"
    );
    assert!(
        message.ends_with("above limits.max_context_bytes (2500); nothing was cut short"),
        "{message}"
    );
}

#[tokio::test]
async fn the_same_idempotency_key_never_starts_two_runs() {
    let (_server, addr) = server().await;
    let dir = tempfile::tempdir().unwrap();
    let wf = "trigger: manual\nsteps:\n  - id: a\n    map: 1\n";
    let e = engine(
        open_store(dir.path()).await,
        project(addr, &[("a", wf)], ""),
        Arc::new(SystemClock),
    );
    let first = e
        .start_run("a", json!({}), Some("evt-9".into()))
        .await
        .unwrap();
    let second = e
        .start_run("a", json!({}), Some("evt-9".into()))
        .await
        .unwrap();
    assert_eq!(first.id(), second.id());
    assert!(matches!(second, weft_store::Created::Existing(_)));
}

#[tokio::test]
async fn cancelling_a_waiting_run_stops_it() {
    let (_server, addr) = server().await;
    let dir = tempfile::tempdir().unwrap();
    let wf = "trigger: manual\nsteps:\n  - id: pause\n    wait: 1d\n  - id: never\n    map: 1\n";
    let store = open_store(dir.path()).await;
    let e = engine(
        store.clone(),
        project(addr, &[("pause", wf)], ""),
        Arc::new(SystemClock),
    );
    let id = e
        .start_run("pause", json!({}), None)
        .await
        .unwrap()
        .id()
        .to_string();
    let driver = e.clone();
    let task = tokio::spawn(async move { driver.drive(ClaimScope::All, Until::Idle).await });
    for _ in 0..500 {
        if store.get_run(&id).await.unwrap().unwrap().state == RunState::Waiting {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(
        e.cancel(&id).await.unwrap(),
        weft_store::CancelOutcome::Cancelled
    );
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let run = store.get_run(&id).await.unwrap().unwrap();
    assert_eq!(run.state, RunState::Cancelled);
    assert!(attempts_of(&e, &id, "never").await.is_empty());
}

/// A cancellation asked for while a step runs is seen at the next step's start that waits for the
/// store (any step but a `map` in a run's first execution, which acts on nothing outside the run):
/// the step finishes and is stored, the next never starts. Asked for during the last step, it finds
/// no step left: the run ends as it finished (succeeded).
#[tokio::test]
async fn cancelling_a_running_run_stops_it_at_the_next_step() {
    let (server, addr) = server().await;
    let slow = || ok(json!({"done": true})).after(Duration::from_millis(400));
    server.script("slow", vec![slow(), slow()]);
    let dir = tempfile::tempdir().unwrap();
    let two = "trigger: manual\nsteps:\n  - id: slow\n    uses: api.request\n    with: { path: /slow }\n  - id: never\n    uses: api.request\n    with: { path: /never }\n";
    let last =
        "trigger: manual\nsteps:\n  - id: slow\n    uses: api.request\n    with: { path: /slow }\n";
    let store = open_store(dir.path()).await;
    let e = engine(
        store.clone(),
        project(addr, &[("two", two), ("last", last)], ""),
        Arc::new(SystemClock),
    );
    for (workflow, ends) in [("two", RunState::Cancelled), ("last", RunState::Succeeded)] {
        let id = e
            .start_run(workflow, json!({}), None)
            .await
            .unwrap()
            .id()
            .to_string();
        let driver = e.clone();
        let task = tokio::spawn(async move { driver.drive(ClaimScope::All, Until::Idle).await });
        for _ in 0..500 {
            if !attempts_of(&e, &id, "slow").await.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(
            e.cancel(&id).await.unwrap(),
            weft_store::CancelOutcome::Requested,
            "{workflow}: the step had not started"
        );
        tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        let run = store.get_run(&id).await.unwrap().unwrap();
        assert_eq!(run.state, ends, "{workflow}: {:?}", run.error);
        assert_eq!(
            states(&attempts_of(&e, &id, "slow").await),
            vec![AttemptState::Succeeded],
            "{workflow}"
        );
        assert!(attempts_of(&e, &id, "never").await.is_empty(), "{workflow}");
    }
}

/// A run accepted while the hub's work loop has a free slot is created already claimed and starts
/// at once; one accepted while every slot is taken waits in the store and is claimed when a slot
/// frees; after the loop has stopped, runs are only queued.
#[tokio::test]
async fn accepted_runs_start_at_once_when_a_slot_is_free_and_queue_otherwise() {
    let (server, addr) = server().await;
    server.script(
        "slow",
        vec![ok(json!({"done": true})).after(Duration::from_millis(300))],
    );
    let dir = tempfile::tempdir().unwrap();
    let slow =
        "trigger: manual\nsteps:\n  - id: slow\n    uses: api.request\n    with: { path: /slow }\n";
    let quick = "trigger: manual\nsteps:\n  - id: one\n    map: 1\n";
    let store = open_store(dir.path()).await;
    let project = project(addr, &[("slow", slow), ("quick", quick)], "");
    let e = Engine::new(EngineParts {
        store: store.clone(),
        registry: Registry::build(&project, Path::new("."), &Default::default()).unwrap(),
        project,
        clock: Arc::new(SystemClock),
        options: EngineOptions {
            max_runs: 1,
            ..EngineOptions::default()
        },
        mocks: None,
    });
    let driver = e.clone();
    let task = tokio::spawn(async move { driver.drive(ClaimScope::All, Until::Shutdown).await });
    for _ in 0..500 {
        if e.inner.handoff.lock().unwrap().is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let start = |workflow: &'static str| {
        let e = e.clone();
        async move {
            let id = e.start_run(workflow, json!({}), None).await.unwrap();
            let run = e.store().get_run(id.id()).await.unwrap().unwrap();
            (id.id().to_string(), run.state)
        }
    };
    // The only slot is free: the run is running as soon as it is accepted.
    let (first, state) = start("slow").await;
    assert_eq!(state, RunState::Running);
    // It holds the slot for 300 ms: the next run waits, and runs once the slot frees.
    let (second, state) = start("quick").await;
    assert_eq!(state, RunState::Queued);
    let finished = |id: String| {
        let store = store.clone();
        async move {
            for _ in 0..1000 {
                let run = store.get_run(&id).await.unwrap().unwrap();
                if run.state.is_terminal() {
                    return run;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            panic!("run {id} did not finish");
        }
    };
    let (first, second) = (finished(first).await, finished(second).await);
    assert_eq!(first.state, RunState::Succeeded, "{:?}", first.error);
    assert_eq!(second.state, RunState::Succeeded, "{:?}", second.error);
    assert!(
        second.started_at >= first.finished_at,
        "{first:?} {second:?}"
    );

    e.shutdown();
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(e.inner.handoff.lock().unwrap().is_none());
    let (_, state) = start("quick").await;
    assert_eq!(state, RunState::Queued);
}

#[tokio::test]
async fn switch_runs_the_matching_case_or_the_default() {
    let (_server, addr) = server().await;
    let dir = tempfile::tempdir().unwrap();
    let wf = r#"
trigger: manual
steps:
  - id: route
    switch: ${{ .input.kind }}
    cases:
      refund:
        - id: refund
          map: refunding
      "42":
        - id: answer
          map: a number
    default:
      - id: other
        map: ${{ "no case for \(.input.kind)" }}
output: ${{ {case: .steps.route.case, refund: .steps.refund, answer: .steps.answer, other: .steps.other} }}
"#;
    let e = engine(
        open_store(dir.path()).await,
        project(addr, &[("route", wf)], ""),
        Arc::new(SystemClock),
    );
    let run = run_to_end(&e, "route", json!({"kind": "refund"})).await;
    assert_eq!(
        run.output,
        Some(json!({"case": "refund", "refund": "refunding", "answer": null, "other": null}))
    );
    let run = run_to_end(&e, "route", json!({"kind": 42})).await;
    assert_eq!(
        run.output,
        Some(json!({"case": "42", "refund": null, "answer": "a number", "other": null}))
    );
    let run = run_to_end(&e, "route", json!({"kind": "swap"})).await;
    assert_eq!(
        run.output,
        Some(json!({"case": null, "refund": null, "answer": null, "other": "no case for swap"}))
    );
}

#[tokio::test]
async fn a_step_timeout_is_a_retryable_failure() {
    let (server, addr) = server().await;
    server.script(
        "sleepy",
        vec![
            ok(json!({})).after(Duration::from_secs(5)),
            ok(json!({"fast": true})),
        ],
    );
    let dir = tempfile::tempdir().unwrap();
    let wf = "trigger: manual\nsteps:\n  - id: call\n    uses: api.request\n    with: { path: /sleepy }\n    timeout: 200ms\n    retry: { attempts: 2, initial: 10ms, jitter: false }\n";
    let e = engine(
        open_store(dir.path()).await,
        project(addr, &[("sleepy", wf)], ""),
        Arc::new(SystemClock),
    );
    let run = run_to_end(&e, "sleepy", json!({})).await;
    assert_eq!(run.state, RunState::Succeeded, "{:?}", run.error);
    let attempts = attempts_of(&e, &run.id, "call").await;
    assert_eq!(
        states(&attempts),
        vec![AttemptState::Retrying, AttemptState::Succeeded]
    );
    let message = attempts[0].error.as_ref().unwrap()["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        message,
        "step `call`: api.request did not finish within the step's timeout of 200ms"
    );
}

#[tokio::test]
async fn wait_until_a_computed_time() {
    let (_server, addr) = server().await;
    let dir = tempfile::tempdir().unwrap();
    let wf = "trigger: manual\nsteps:\n  - id: pause\n    wait: { until: \"${{ .input.at }}\" }\n  - id: late\n    wait: { until: 0 }\n";
    let start = 1_700_000_000_000;
    let e = engine(
        open_store(dir.path()).await,
        project(addr, &[("until", wf)], ""),
        Arc::new(VirtualClock::new(start)),
    );
    let run = run_to_end(&e, "until", json!({"at": "2023-11-15T00:00:00Z"})).await;
    assert_eq!(run.state, RunState::Succeeded, "{:?}", run.error);
    assert_eq!(
        run.output,
        Some(json!({"waited_until": "1970-01-01T00:00:00Z"}))
    );
    let pause = attempts_of(&e, &run.id, "pause").await;
    assert_eq!(pause[0].wake_at, Some(1_700_006_400_000));
    let run = run_to_end(&e, "until", json!({"at": "soon"})).await;
    assert_eq!(run.state, RunState::Failed);
    assert!(
        run.error.unwrap()["message"]
            .as_str()
            .unwrap()
            .contains("`wait.until` `soon` is not an RFC 3339 time")
    );
}

#[tokio::test]
async fn a_retry_delay_survives_a_restart() {
    let (server, addr) = server().await;
    server.script(
        "later",
        vec![status(503).retry_after(3600), ok(json!({"finally": true}))],
    );
    let dir = tempfile::tempdir().unwrap();
    let wf = "trigger: manual\nsteps:\n  - id: call\n    uses: api.request\n    with: { path: /later }\n";
    let p = project(addr, &[("later", wf)], "");
    let start = 1_700_000_000_000;
    let id = {
        let store = open_store(dir.path()).await;
        let e = engine(store.clone(), p.clone(), Arc::new(VirtualClock::new(start)));
        let id = e
            .start_run("later", json!({}), None)
            .await
            .unwrap()
            .id()
            .to_string();
        // Run until the failed attempt parked the run for an hour, then stop "the process".
        let driver = e.clone();
        let task =
            tokio::spawn(async move { driver.drive(ClaimScope::All, Until::Shutdown).await });
        for _ in 0..500 {
            if store.get_run(&id).await.unwrap().unwrap().state == RunState::Waiting {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        e.shutdown();
        task.await.unwrap().unwrap();
        id
    };
    // Restarted 59 minutes later: the second attempt still waits for the hour the server asked for.
    let e = engine(
        open_store(dir.path()).await,
        p,
        Arc::new(VirtualClock::new(start + 59 * 60_000)),
    );
    e.drive(ClaimScope::All, Until::Idle).await.unwrap();
    let run = e.store().get_run(&id).await.unwrap().unwrap();
    assert_eq!(run.state, RunState::Succeeded, "{:?}", run.error);
    let attempts = attempts_of(&e, &id, "call").await;
    assert_eq!(
        states(&attempts),
        vec![AttemptState::Retrying, AttemptState::Succeeded]
    );
    assert!(
        attempts[1].started_at >= start + 3_600_000,
        "the delay was not reset by the restart"
    );
    assert_eq!(server.seen("later").len(), 2);
}

#[tokio::test]
async fn state_steps_remember_across_runs_and_forget_after_their_ttl() {
    let (_server, addr) = server().await;
    let dir = tempfile::tempdir().unwrap();
    let remember = r#"
trigger: manual
steps:
  - id: set
    uses: state.set
    with: { namespace: "conv-${{ .input.conv }}", key: order, value: "${{ .input.order }}", ttl: 1h }
"#;
    let recall = r#"
trigger: manual
steps:
  - id: get
    uses: state.get
    with: { namespace: "conv-${{ .input.conv }}", key: order }
"#;
    let forget = r#"
trigger: manual
steps:
  - id: delete
    uses: state.delete
    with: { namespace: "conv-${{ .input.conv }}", key: order }
"#;
    let bad = r#"
trigger: manual
steps:
  - id: set
    uses: state.set
    with: { namespace: "", key: order, value: 1 }
"#;
    let project = project(
        addr,
        &[
            ("remember", remember),
            ("recall", recall),
            ("forget", forget),
            ("bad", bad),
        ],
        "",
    );
    let clock = Arc::new(VirtualClock::new(1_000_000));
    let engine = engine(open_store(dir.path()).await, project, clock.clone());

    let run = run_to_end(
        &engine,
        "remember",
        json!({"conv": "a", "order": {"id": 7}}),
    )
    .await;
    assert_eq!(run.state, RunState::Succeeded, "{:?}", run.error);
    assert_eq!(
        run.output.unwrap(),
        json!({"namespace": "conv-a", "key": "order", "expires_at": 1_000_000 + 3_600_000})
    );
    let run = run_to_end(&engine, "recall", json!({"conv": "a"})).await;
    assert_eq!(
        run.output.unwrap(),
        json!({"found": true, "value": {"id": 7}})
    );
    // Namespaces keep conversations apart.
    let run = run_to_end(&engine, "recall", json!({"conv": "b"})).await;
    assert_eq!(run.output.unwrap(), json!({"found": false, "value": null}));

    // An hour later the key is gone.
    clock.sleep(Duration::from_secs(3600)).await;
    let run = run_to_end(&engine, "recall", json!({"conv": "a"})).await;
    assert_eq!(run.output.unwrap(), json!({"found": false, "value": null}));

    run_to_end(&engine, "remember", json!({"conv": "a", "order": 8})).await;
    let run = run_to_end(&engine, "forget", json!({"conv": "a"})).await;
    assert_eq!(run.output.unwrap(), json!({"deleted": true}));
    let run = run_to_end(&engine, "forget", json!({"conv": "a"})).await;
    assert_eq!(run.output.unwrap(), json!({"deleted": false}));

    let run = run_to_end(&engine, "bad", json!({})).await;
    assert_eq!(run.state, RunState::Failed);
    let error = run.error.unwrap();
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("`namespace` is empty"),
        "{error}"
    );
}

#[tokio::test]
async fn a_tool_call_with_arguments_that_do_not_match_starts_no_run() {
    let (_server, addr) = server().await;
    let dir = tempfile::tempdir().unwrap();
    let tool = r#"
trigger:
  tool:
    description: Doubles a number.
    input: { type: object, required: [n], properties: { n: { type: integer, maximum: 10 } }, additionalProperties: false }
steps:
  - id: double
    map: ${{ .input.n * 2 }}
"#;
    let project = project(
        addr,
        &[
            ("double", tool),
            ("plain", "trigger: manual\nsteps: [{id: a, map: 1}]\n"),
        ],
        "",
    );
    let engine = engine(open_store(dir.path()).await, project, Arc::new(SystemClock));
    let err = engine
        .call_tool("double", json!({"n": 11, "m": 1}), None, None)
        .await
        .unwrap_err();
    let ToolCallError::Engine(EngineError::InvalidInput { problems, .. }) = &err else {
        panic!("{err}");
    };
    let mut paths: Vec<&str> = problems.iter().map(|p| p.path.as_str()).collect();
    paths.sort();
    assert_eq!(paths, ["", "/n"], "{err}");
    assert!(err.to_string().contains("'m' was unexpected"), "{err}");
    let err = engine
        .call_tool("plain", json!({}), None, None)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("the tools are: double"), "{err}");
    let runs = engine
        .store()
        .list_runs(&weft_store::RunFilter::default())
        .await
        .unwrap();
    assert!(runs.is_empty(), "no run started");

    let (created, _) = engine
        .call_tool("double", json!({"n": 4}), Some("k".into()), None)
        .await
        .unwrap();
    let (again, tool) = engine
        .call_tool("double", json!({"n": 4}), Some("k".into()), None)
        .await
        .unwrap();
    assert_eq!(tool.description, "Doubles a number.");
    let err = engine
        .call_tool("double", json!({"n": 5}), Some("k".into()), None)
        .await
        .unwrap_err();
    assert!(
        matches!(err, ToolCallError::Engine(EngineError::KeyReused { .. })),
        "{err}"
    );
    let err = engine
        .call_tool("double", json!({"n": 5}), Some(String::new()), None)
        .await
        .unwrap_err();
    assert!(
        matches!(err, ToolCallError::Engine(EngineError::BadIdempotencyKey)),
        "{err}"
    );
    assert_eq!(created.id(), again.id(), "the same key joins the same run");
    let run = engine.store().get_run(created.id()).await.unwrap().unwrap();
    assert_eq!(run.trigger, json!({"type": "tool", "tool": "double"}));
    assert_eq!(run.input, json!({"n": 4}));
}

#[tokio::test]
async fn a_call_without_a_step_timeout_ends_at_the_projects_call_timeout() {
    let (server, addr) = server().await;
    server.script("sleepy", vec![ok(json!({})).after(Duration::from_secs(3))]);
    let dir = tempfile::tempdir().unwrap();
    let wf = "trigger: manual\nsteps:\n  - id: call\n    uses: api.request\n    with: { path: /sleepy }\n    retry: 1\n";
    let e = engine(
        open_store(dir.path()).await,
        project(addr, &[("sleepy", wf)], "limits: { call_timeout: 1s }\n"),
        Arc::new(SystemClock),
    );
    let run = run_to_end(&e, "sleepy", json!({})).await;
    assert_eq!(run.state, RunState::Failed);
    assert_eq!(
        run.error.unwrap()["message"],
        "step `call`: api.request did not finish within limits.call_timeout of 1s"
    );
}
