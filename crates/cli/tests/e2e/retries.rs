//! Retries against a server that fails on cue (503, 429 with Retry-After, 400), and `weft runs retry`.

use serde_json::{Value, json};
use weft_testkit::{Answer, ScriptedServer};

use crate::support::Project;

fn steps_of<'a>(run: &'a Value, step: &str) -> Vec<&'a Value> {
    run["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["step"] == step)
        .collect()
}

fn millis(v: &Value) -> i64 {
    v.as_str()
        .unwrap()
        .parse::<jiff::Timestamp>()
        .unwrap()
        .as_millisecond()
}

#[tokio::test]
async fn a_503_twice_then_200_succeeds_with_backoff_between_attempts() {
    let (server, addr) = ScriptedServer::start().await;
    server.script(
        "flaky",
        vec![
            Answer::status(503),
            Answer::status(503),
            Answer::ok(json!({"ok": true})),
        ],
    );
    let wf = "trigger: manual\nsteps:\n  - id: call\n    uses: api.request\n    with: { path: /flaky }\n    retry: { attempts: 4, backoff: exponential, initial: 100ms, max: 1s, jitter: false }\n";
    let p = Project::with_api(addr, &[("flaky", wf)]);
    let out = p.weft(&["run", "flaky", "--json"]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let run = out.json();
    let attempts = steps_of(&run, "call");
    let states: Vec<&str> = attempts
        .iter()
        .map(|a| a["state"].as_str().unwrap())
        .collect();
    assert_eq!(states, vec!["retrying", "retrying", "succeeded"]);
    // The planned delays are the policy's, and each attempt started no earlier than planned.
    let planned: Vec<i64> = attempts[..2]
        .iter()
        .map(|a| millis(&a["wake_at"]) - millis(&a["finished_at"]))
        .collect();
    assert_eq!(planned, vec![100, 200]);
    for i in 0..2 {
        assert!(millis(&attempts[i + 1]["started_at"]) >= millis(&attempts[i]["wake_at"]));
    }
    assert!(
        out.stderr.contains("retry") && out.stderr.contains("HTTP 503 Service Unavailable"),
        "{}",
        out.stderr
    );
    assert_eq!(server.seen("flaky").len(), 3);
}

#[tokio::test]
async fn a_429_with_retry_after_waits_that_long() {
    let (server, addr) = ScriptedServer::start().await;
    server.script(
        "limited",
        vec![Answer::status(429).retry_after(2), Answer::ok(json!({}))],
    );
    let wf = "trigger: manual\nsteps:\n  - id: call\n    uses: api.request\n    with: { path: /limited }\n    retry: { attempts: 3, initial: 10ms, jitter: false }\n";
    let p = Project::with_api(addr, &[("limited", wf)]);
    let out = p.weft(&["run", "limited", "--json"]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let run = out.json();
    let attempts = steps_of(&run, "call");
    assert_eq!(attempts.len(), 2);
    assert_eq!(attempts[0]["state"], "retrying");
    assert_eq!(
        millis(&attempts[0]["wake_at"]) - millis(&attempts[0]["finished_at"]),
        2000
    );
    assert!(
        millis(&attempts[1]["started_at"]) >= millis(&attempts[0]["wake_at"]),
        "the second attempt waited for Retry-After"
    );
}

#[tokio::test]
async fn a_permanent_400_fails_at_once_and_runs_retry_resumes_from_that_step() {
    let (server, addr) = ScriptedServer::start().await;
    server.script("create", vec![Answer::status(400)]);
    let wf = "trigger: manual\nsteps:\n  - id: lookup\n    uses: api.request\n    with: { path: /lookup }\n  - id: create\n    uses: api.request\n    with: { method: POST, path: /create, body: { name: x } }\n    retry: 5\n  - id: notify\n    uses: api.request\n    with: { method: POST, path: /notify }\n";
    let p = Project::with_api(addr, &[("create", wf)]);
    let out = p.weft(&["run", "create"]).await;
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stderr.contains("HTTP 400 Bad Request"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("weft runs retry"), "{}", out.stderr);
    assert_eq!(server.seen("create").len(), 1, "a 400 is not retried");
    let runs = p.weft(&["runs", "list", "--json"]).await.json();
    assert_eq!(runs[0]["state"], "failed");
    assert_eq!(runs[0]["error"]["step"], "create");
    let id = runs[0]["id"].as_str().unwrap().to_string();

    server.script("create", vec![Answer::ok(json!({"id": 7}))]);
    let out = p.weft(&["runs", "retry", &id, "--json"]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let run = out.json();
    assert_eq!(run["state"], "succeeded");
    assert_eq!(
        server.seen("lookup").len(),
        1,
        "the step before the failed one is not run again"
    );
    assert_eq!(server.seen("create").len(), 2);
    assert_eq!(server.seen("notify").len(), 1);
    let states: Vec<&str> = steps_of(&run, "create")
        .iter()
        .map(|a| a["state"].as_str().unwrap())
        .collect();
    assert_eq!(states, vec!["retrying", "succeeded"]);

    let out = p.weft(&["runs", "retry", &id]).await;
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.contains("only failed runs can be retried"),
        "{}",
        out.stderr
    );
}

/// A Standard Webhooks secret: `whsec_` and base64.
const PARTNER_WHSEC: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";

#[tokio::test]
async fn a_signing_connection_is_a_verifiable_webhook_sender_across_retries() {
    use weft_core::signature::verify;
    use weft_core::trigger::Scheme;

    let (server, addr) = ScriptedServer::start().await;
    server.script(
        "partner",
        vec![Answer::status(503), Answer::ok(json!({"received": true}))],
    );
    let wf = "trigger: manual\nsteps:\n  - id: notify\n    uses: partner.request\n    with: { method: POST, path: /partner, body: { event: order.paid, order: 7 } }\n    retry: { attempts: 3, backoff: fixed, initial: 10ms, jitter: false }\n";
    let p = Project::new(
        &format!(
            "connections:\n  partner:\n    type: http\n    base_url: http://{addr}\n    allow_private_network: true\n    sign: {{ scheme: standard-webhooks, secret: {{ env: PARTNER_WHSEC }} }}\n"
        ),
        &[("notify", wf)],
    );
    let out = crate::support::command(p.path(), &["run", "notify", "--json"])
        .env("PARTNER_WHSEC", PARTNER_WHSEC)
        .output()
        .await
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let run: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(run["state"], "succeeded");

    // Both attempts carry the same webhook-id (the step's idempotency key), so the receiver can
    // de-duplicate; each one is signed over the exact bytes it received.
    let seen = server.seen("partner");
    assert_eq!(seen.len(), 2);
    let expected_id = format!("{}/notify", run["id"].as_str().unwrap());
    let now = jiff::Timestamp::now().as_second();
    for request in &seen {
        assert_eq!(request.headers["webhook-id"], expected_id);
        assert_eq!(request.idempotency_key, expected_id);
        assert_eq!(request.body, json!({"event": "order.paid", "order": 7}));
        let header = |name: &str| request.headers.get(&name.to_ascii_lowercase()).cloned();
        verify(
            &Scheme::StandardWebhooks,
            PARTNER_WHSEC,
            &header,
            &request.raw_body,
            now,
            300,
        )
        .unwrap_or_else(|e| panic!("the receiver accepts the signature: {e}"));
        let mut tampered = request.raw_body.clone();
        tampered[2] ^= 1;
        assert!(
            verify(
                &Scheme::StandardWebhooks,
                PARTNER_WHSEC,
                &header,
                &tampered,
                now,
                300
            )
            .is_err(),
            "a changed body does not verify"
        );
        assert!(
            verify(
                &Scheme::StandardWebhooks,
                "whsec_b3RoZXI=",
                &header,
                &request.raw_body,
                now,
                300
            )
            .is_err(),
            "another secret does not verify"
        );
    }

    // Without its secret the step fails at once, saying which variable is missing; nothing is sent.
    let out = p.weft(&["run", "notify"]).await;
    assert_eq!(out.code, 1);
    assert!(
        out.stderr
            .contains("signing secret: the environment variable PARTNER_WHSEC is not set"),
        "{}",
        out.stderr
    );
    assert_eq!(server.seen("partner").len(), 2);
}
