//! A `weft` process killed with SIGKILL in the middle of a step loses nothing and repeats only the
//! step that was in flight, with the same idempotency key.

use std::time::Duration;

use serde_json::json;
use weft_testkit::{Answer, ScriptedServer};

use crate::support::{Project, command};

const WORKFLOW: &str = r#"
trigger: manual
steps:
  - id: reserve
    uses: api.request
    with: { method: POST, path: /reserve, body: { order: "${{ .input.order }}" } }
  - id: charge
    uses: api.request
    with: { method: POST, path: /charge, body: { order: "${{ .input.order }}", amount: 42 } }
  - id: total
    map: ${{ .steps.charge.body.echo.amount + 1 }}
  - id: ship
    uses: api.request
    with: { method: POST, path: /ship, body: { order: "${{ .input.order }}", total: "${{ .steps.total }}" } }
output: ${{ {charged: .steps.charge.body.echo.amount, shipped: .steps.ship.body.call} }}
"#;

/// The issue's check: kill `weft` with SIGKILL in the middle of a step, start it again, and the run
/// finishes; every step before the killed one ran exactly once; the killed step ran at most twice
/// with the same idempotency key; no run is lost or duplicated.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_killed_in_the_middle_of_a_step_finishes_after_a_restart() {
    let (server, addr) = ScriptedServer::start().await;
    // The first charge hangs, so the process is killed while the step is in flight.
    server.script(
        "charge",
        vec![
            Answer::ok(json!({})).after(Duration::from_secs(600)),
            Answer::ok(json!({"echo": {"amount": 42}})),
        ],
    );
    let p = Project::with_api(addr, &[("order", WORKFLOW)]);

    let mut child = command(
        p.path(),
        &["run", "order", "--input", r#"{"order": "A-1"}"#],
    )
    .spawn()
    .unwrap();
    assert!(
        server.wait_for("charge", 1, Duration::from_secs(60)).await,
        "the charge step never started"
    );
    child.start_kill().unwrap(); // SIGKILL
    let status = child.wait().await.unwrap();
    assert!(!status.success());
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(9), "killed by SIGKILL");
    }

    let runs = p.weft(&["runs", "list", "--json"]).await.json();
    assert_eq!(runs.as_array().unwrap().len(), 1);
    assert_eq!(
        runs[0]["state"], "running",
        "the killed run is unfinished, not lost"
    );
    let id = runs[0]["id"].as_str().unwrap().to_string();

    let out = p.weft(&["runs", "resume"]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stderr.contains("1 run finished: 1 succeeded"),
        "{}",
        out.stderr
    );

    let run = p.weft(&["runs", "show", &id, "--json"]).await.json();
    assert_eq!(run["state"], "succeeded", "{run}");
    assert_eq!(run["output"], json!({"charged": 42, "shipped": 1}));
    assert_eq!(
        server.seen("reserve").len(),
        1,
        "the step before the killed one ran exactly once"
    );
    let charges = server.seen("charge");
    assert_eq!(charges.len(), 2, "the killed step ran at most twice");
    assert_eq!(charges[0].idempotency_key, format!("{id}/charge"));
    assert_eq!(charges[0].idempotency_key, charges[1].idempotency_key);
    assert_eq!(charges[0].body, charges[1].body);
    assert_eq!(server.seen("ship").len(), 1);
    let states: Vec<(&str, &str)> = run["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["step"].as_str().unwrap(), s["state"].as_str().unwrap()))
        .collect();
    assert_eq!(
        states,
        vec![
            ("reserve", "succeeded"),
            ("charge", "interrupted"),
            ("charge", "succeeded"),
            ("total", "succeeded"),
            ("ship", "succeeded")
        ]
    );
    let runs = p.weft(&["runs", "list", "--json"]).await.json();
    assert_eq!(runs.as_array().unwrap().len(), 1, "no run was duplicated");
}
