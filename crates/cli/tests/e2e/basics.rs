//! `weft init`, `lint`, `test`, `run` and `runs` as a new user meets them, and the exit codes of
//! bad arguments.

use serde_json::json;

use crate::support::{Project, weft};

#[tokio::test]
async fn init_lint_test_and_run_work_as_the_readme_says() {
    let dir = tempfile::tempdir().unwrap();
    let out = weft(dir.path(), &["init", "demo"]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let demo = dir.path().join("demo");
    assert!(
        demo.join("weft.yaml").is_file()
            && demo.join("workflows/hello.yaml").is_file()
            && demo.join("tests/hello.yaml").is_file()
    );

    let out = weft(dir.path(), &["lint", "demo"]).await;
    assert_eq!((out.code, out.stdout.as_str()), (0, ""), "{}", out.stderr);
    let out = weft(dir.path(), &["test", "demo"]).await;
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert_eq!(
        out.stdout.lines().filter(|l| l.starts_with("pass")).count(),
        2,
        "{}",
        out.stdout
    );

    let out = weft(
        &demo,
        &[
            "run",
            "hello",
            "--input",
            r#"{"name": "Ada", "loud": true}"#,
        ],
    )
    .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        out.json(),
        json!({"greeting": "HELLO, ADA!", "friends": []})
    );
    // Each step is printed with its status, attempt and timing.
    let step_line = out
        .stderr
        .lines()
        .find(|l| l.contains("greeting"))
        .unwrap_or_else(|| panic!("{}", out.stderr));
    assert!(
        step_line.trim_start().starts_with("ok")
            && step_line.contains("attempt 1")
            && step_line.contains(" ms"),
        "{step_line}"
    );

    let out = weft(&demo, &["run", "hello", "--json"]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let record = out.json();
    assert_eq!(record["state"], "succeeded");
    assert_eq!(record["output"]["greeting"], "Hello, world!");
    let steps: Vec<&str> = record["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["step"].as_str().unwrap())
        .collect();
    assert_eq!(steps, vec!["greeting", "shout", "friends"]);

    let out = weft(&demo, &["runs", "list", "--json"]).await;
    let runs = out.json();
    assert_eq!(runs.as_array().unwrap().len(), 2);
    let id = runs[0]["id"].as_str().unwrap();
    assert_eq!(id, record["id"].as_str().unwrap(), "newest first");
    let out = weft(&demo, &["runs", "show", &id[..13]]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.contains("state     succeeded"), "{}", out.stdout);

    let out = weft(dir.path(), &["init", "demo"]).await;
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.contains("already holds a Weft project"),
        "{}",
        out.stderr
    );
}

#[tokio::test]
async fn bad_arguments_and_inputs_get_exit_code_2_and_say_what() {
    let p = Project::new(
        "",
        &[("a", "trigger: manual\nsteps:\n  - id: x\n    map: 1\n")],
    );
    let cases: &[(&[&str], &str)] = &[
        (
            &["run", "a", "--input", "{nope"],
            "--input is not valid JSON: key must be a string at line 1 column 2",
        ),
        (
            &["run", "a", "--input", "@missing.json"],
            "cannot read the input file missing.json",
        ),
        (
            &["run", "b"],
            "the project has no workflow named `b`; it has: a",
        ),
        (&["runs", "show", "0123"], "no run has the id 0123"),
        (
            &["runs", "list", "--state", "done"],
            "--state: unknown run state `done`",
        ),
        (
            &["run", "a", "--project", "/nonexistent-weft-dir"],
            "is not a Weft project: it has no weft.yaml",
        ),
    ];
    for (args, message) in cases {
        let out = p.weft(args).await;
        assert_eq!(out.code, 2, "{args:?}: {}", out.stderr);
        assert!(out.stderr.contains(message), "{args:?}: {}", out.stderr);
    }
    let out = p.weft(&["frobnicate"]).await;
    assert_eq!(out.code, 2);
}

#[tokio::test]
async fn an_idempotency_key_never_starts_a_second_run() {
    let p = Project::new(
        "",
        &[(
            "a",
            "trigger: manual\nsteps:\n  - id: x\n    map: ${{ .input.n }}\n",
        )],
    );
    let first = p
        .weft(&[
            "run",
            "a",
            "--input",
            r#"{"n": 1}"#,
            "--idempotency-key",
            "order-7",
        ])
        .await;
    assert_eq!(first.code, 0, "{}", first.stderr);
    let second = p
        .weft(&[
            "run",
            "a",
            "--input",
            r#"{"n": 2}"#,
            "--idempotency-key",
            "order-7",
        ])
        .await;
    assert_eq!(second.code, 0, "{}", second.stderr);
    assert!(
        second
            .stderr
            .contains("already carries the idempotency key order-7"),
        "{}",
        second.stderr
    );
    assert_eq!(
        second.json(),
        json!(1),
        "the first run's output, not a new run"
    );
    let runs = p.weft(&["runs", "list", "--json"]).await.json();
    assert_eq!(runs.as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn replay_starts_a_new_run_from_the_same_event_on_the_current_version() {
    let p = Project::new(
        "",
        &[(
            "a",
            "trigger: manual\nsteps:\n  - id: x\n    map: ${{ .input.n + 1 }}\n",
        )],
    );
    let out = p
        .weft(&["run", "a", "--input", r#"{"n": 1}"#, "--json"])
        .await;
    let first = out.json();
    assert_eq!(first["output"], 2);
    std::fs::write(
        p.path().join("workflows/a.yaml"),
        "trigger: manual\nsteps:\n  - id: x\n    map: ${{ .input.n + 100 }}\n",
    )
    .unwrap();
    let out = p
        .weft(&["runs", "replay", first["id"].as_str().unwrap(), "--json"])
        .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let second = out.json();
    assert_ne!(second["id"], first["id"]);
    assert_eq!(second["input"], json!({"n": 1}));
    assert_eq!(second["output"], 101);
    assert_ne!(second["version"], first["version"]);
}

#[tokio::test]
async fn a_waiting_run_can_be_cancelled() {
    let p = Project::new(
        "",
        &[(
            "slow",
            "trigger: manual\nsteps:\n  - id: pause\n    wait: 1d\n  - id: after\n    map: 1\n",
        )],
    );
    // Start it, and stop the command once the run waits (it would wait a day).
    let mut child = crate::support::command(p.path(), &["run", "slow"])
        .spawn()
        .unwrap();
    let mut id = String::new();
    for _ in 0..200 {
        let runs = p.weft(&["runs", "list", "--json"]).await.json();
        if let Some(run) = runs.as_array().unwrap().first()
            && run["state"] == "waiting"
        {
            id = run["id"].as_str().unwrap().to_string();
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(!id.is_empty(), "the run never started waiting");
    child.kill().await.unwrap();
    let out = p.weft(&["runs", "cancel", &id]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let run = p.weft(&["runs", "show", &id, "--json"]).await.json();
    assert_eq!(run["state"], "cancelled");
    let out = p.weft(&["runs", "cancel", &id]).await;
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.contains("has already finished"),
        "{}",
        out.stderr
    );
    let out = p.weft(&["runs", "resume"]).await;
    assert_eq!(out.code, 0);
    assert!(out.stderr.contains("No unfinished runs."), "{}", out.stderr);
}
