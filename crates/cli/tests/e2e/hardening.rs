//! Hostile input and runaway expressions fail a step, never the hub: each finding of the hardening
//! issue, reproduced against the real binary. The hub must stay up, answer its health check and
//! webhooks while expressions run away, stop them on cancellation and SIGTERM, keep its memory
//! bounded, and fail the run with kind `limit` instead of crashing and resuming it.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::hub::Hub;
use crate::support::Project;

/// Peak resident memory of a process, in bytes (`VmHWM`).
fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

fn alive(hub: &mut Hub) -> bool {
    matches!(hub.child.try_wait(), Ok(None))
}

/// Waits until run `id` has finished and returns it.
async fn finished(hub: &Hub, id: &str, limit: Duration) -> Value {
    let start = Instant::now();
    loop {
        let (status, run) = hub.get(&format!("/api/runs/{id}")).await;
        assert_eq!(status, 200, "{run}");
        let state = run["state"].as_str().unwrap_or("").to_string();
        if ["succeeded", "failed", "cancelled"].contains(&state.as_str()) {
            return run;
        }
        assert!(
            start.elapsed() < limit,
            "run {id} did not finish in {limit:?}: {run}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn start_run(hub: &Hub, workflow: &str) -> String {
    let (status, body) = hub
        .post_json(
            &format!("/api/workflows/{workflow}/runs"),
            json!({"input": {}}),
        )
        .await;
    assert!(
        status == 201 || status == 202 || status == 200,
        "{status} {body}"
    );
    body["run_id"]
        .as_str()
        .or_else(|| body["id"].as_str())
        .unwrap_or_else(|| panic!("no run id in {body}"))
        .to_string()
}

fn error_kind(run: &Value) -> &str {
    run["error"]["kind"].as_str().unwrap_or("")
}

const MAP_PAYLOAD: &str = "trigger: { webhook: { path: embedded } }\nsteps:\n  - id: parse\n    map: ${{ .input.payload | fromjson }}\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deeply_nested_json_in_a_webhook_fails_its_step_and_the_hub_stays_up() {
    let p = Project::new(
        "name: hardening\n",
        &[
            ("embedded", MAP_PAYLOAD),
            (
                "form",
                "trigger: { webhook: { path: form } }\nsteps:\n  - id: parse\n    map: ${{ .input.payload | fromjson }}\n",
            ),
        ],
    );
    let mut hub = Hub::start(p.path(), &[]).await;
    // 200,000 opening brackets inside a JSON string: 200 KB, under the 1 MiB default.
    let body = format!("{{\"payload\":\"{}\"}}", "[".repeat(200_000));
    let (status, answer) = hub.post_hook("embedded", &[], &body).await;
    assert_eq!(status, 202, "{answer}");
    let id = answer["run_id"].as_str().unwrap().to_string();
    // The same as a Slack-style form body.
    let form = format!("payload={}", "%5B".repeat(200_000));
    let resp = hub
        .client
        .post(format!("{}/hooks/form", hub.base))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 202);
    let form_id = resp.json::<Value>().await.unwrap()["run_id"]
        .as_str()
        .unwrap()
        .to_string();

    for id in [&id, &form_id] {
        let run = finished(&hub, id, Duration::from_secs(30)).await;
        assert_eq!(run["state"], "failed", "{run}");
        assert_eq!(error_kind(&run), "limit", "{run}");
        let message = run["error"]["message"].as_str().unwrap();
        assert!(message.contains("nested deeper than 128"), "{message}");
    }
    assert!(alive(&mut hub), "the hub crashed");
    let (status, _) = hub.get("/healthz").await;
    assert_eq!(status, 200);
    // A valid payload still goes through.
    let (status, answer) = hub
        .post_hook(
            "embedded",
            &[],
            &json!({"payload": "[1, {\"a\": 2}]"}).to_string(),
        )
        .await;
    assert_eq!(status, 202);
    let run = finished(
        &hub,
        answer["run_id"].as_str().unwrap(),
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(run["state"], "succeeded", "{run}");
    assert_eq!(run["output"], json!([1, {"a": 2}]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runaway_recursion_and_deep_values_fail_the_run_with_kind_limit() {
    let manual =
        |code: &str| format!("trigger: manual\nsteps:\n  - id: run\n    map: ${{{{ {code} }}}}\n");
    let p = Project::new(
        "name: hardening\nlimits: { expression_stack_bytes: 16777216 }\n",
        &[
            ("recurse", &manual("def f: 1 + f; f")),
            ("deep", &manual("reduce range(100000) as $i (null; [.])")),
            (
                "fine",
                &manual("def f: if . < 100 then . + 1 | f else . end; 0 | f"),
            ),
        ],
    );
    let mut hub = Hub::start(p.path(), &[]).await;
    let recurse = start_run(&hub, "recurse").await;
    let deep = start_run(&hub, "deep").await;
    let fine = start_run(&hub, "fine").await;
    let run = finished(&hub, &recurse, Duration::from_secs(60)).await;
    assert_eq!(run["state"], "failed", "{run}");
    assert_eq!(error_kind(&run), "limit", "{run}");
    assert!(
        run["error"]["message"]
            .as_str()
            .unwrap()
            .contains("limits.expression_stack_bytes"),
        "{run}"
    );
    let run = finished(&hub, &deep, Duration::from_secs(60)).await;
    assert_eq!(run["state"], "failed", "{run}");
    assert_eq!(error_kind(&run), "limit", "{run}");
    let run = finished(&hub, &fine, Duration::from_secs(60)).await;
    assert_eq!(run["output"], json!(100), "{run}");
    assert!(alive(&mut hub), "the hub crashed");
    // Each failed once, for good: one attempt, no crash in between.
    let (_, steps) = hub.get(&format!("/api/runs/{recurse}")).await;
    let attempts = steps["steps"].as_array().map_or(0, Vec::len);
    assert!(attempts <= 1, "{steps}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endless_expressions_leave_the_hub_answering_and_stop_on_cancel_and_sigterm() {
    let p = Project::new(
        "name: hardening\nlimits: { expression_timeout: 60s }\n",
        &[
            (
                "spin",
                "trigger: manual\nsteps:\n  - id: spin\n    map: ${{ last(repeat(1)) }}\n",
            ),
            ("embedded", MAP_PAYLOAD),
        ],
    );
    let mut hub = Hub::start(p.path(), &["--shutdown-timeout", "5s"]).await;
    // Two runaways: as many as the machine has cores in CI.
    let first = start_run(&hub, "spin").await;
    let second = start_run(&hub, "spin").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    for _ in 0..5 {
        let start = Instant::now();
        let (status, _) = hub.get("/healthz").await;
        assert_eq!(status, 200);
        assert!(
            start.elapsed() < Duration::from_secs(1),
            "/healthz took {:?} while expressions ran",
            start.elapsed()
        );
        let start = Instant::now();
        let (status, _) = hub
            .post_hook("embedded", &[], &json!({"payload": "1"}).to_string())
            .await;
        assert_eq!(status, 202);
        assert!(start.elapsed() < Duration::from_secs(1));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The runaways are still running; cancelling one stops its expression.
    let (_, run) = hub.get(&format!("/api/runs/{first}")).await;
    assert_eq!(run["state"], "running", "{run}");
    let start = Instant::now();
    let (status, body) = hub
        .post_json(&format!("/api/runs/{first}/cancel"), json!({}))
        .await;
    assert!(status < 300, "{status} {body}");
    let run = finished(&hub, &first, Duration::from_secs(10)).await;
    assert_eq!(run["state"], "cancelled", "{run}");
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );

    // SIGTERM stops the other one and the process.
    let start = Instant::now();
    hub.sigterm();
    let status = tokio::time::timeout(Duration::from_secs(15), hub.child.wait())
        .await
        .expect("the hub exits after SIGTERM")
        .unwrap();
    assert!(status.success(), "{status:?}");
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "stopping took {:?}",
        start.elapsed()
    );
    // The run it gave back continues at the next start and stops at its limit there.
    let p_limits = std::fs::read_to_string(p.path().join("weft.yaml"))
        .unwrap()
        .replace("expression_timeout: 60s", "expression_timeout: 1s");
    std::fs::write(p.path().join("weft.yaml"), p_limits).unwrap();
    let hub = Hub::start(p.path(), &[]).await;
    let run = finished(&hub, &second, Duration::from_secs(30)).await;
    assert_eq!(run["state"], "failed", "{run}");
    assert_eq!(error_kind(&run), "limit", "{run}");
    assert!(
        run["error"]["message"]
            .as_str()
            .unwrap()
            .contains("limits.expression_timeout"),
        "{run}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn growing_expressions_stop_at_the_memory_limit_and_the_hub_stays_small() {
    let manual =
        |code: &str| format!("trigger: manual\nsteps:\n  - id: grow\n    map: ${{{{ {code} }}}}\n");
    let p = Project::new(
        "name: hardening\nlimits: { expression_memory_bytes: 67108864 }\n",
        &[
            ("range", &manual("[range(1e9)] | length")),
            (
                "doubling",
                &manual("reduce range(40) as $i (\"ab\"; . + .)"),
            ),
            ("repeat", &manual("\"x\" * 100000000000")),
            (
                "bomb",
                &manual("reduce range(64) as $i (1; [., .]) | tostring"),
            ),
        ],
    );
    let mut hub = Hub::start(p.path(), &[]).await;
    let pid = hub.child.id().unwrap();
    for workflow in ["range", "doubling", "repeat", "bomb"] {
        let id = start_run(&hub, workflow).await;
        let run = finished(&hub, &id, Duration::from_secs(60)).await;
        assert_eq!(run["state"], "failed", "{workflow}: {run}");
        assert_eq!(error_kind(&run), "limit", "{workflow}: {run}");
        assert!(
            run["error"]["message"]
                .as_str()
                .unwrap()
                .contains("limits.expression_memory_bytes"),
            "{workflow}: {run}"
        );
    }
    assert!(alive(&mut hub), "the hub was killed");
    let peak = peak_rss(pid);
    assert!(
        peak < 400 << 20,
        "the hub's peak memory was {} MiB",
        peak >> 20
    );
}

/// A raw TCP connection to the hub.
async fn connect(hub: &Hub) -> tokio::net::TcpStream {
    tokio::net::TcpStream::connect(hub.base.trim_start_matches("http://"))
        .await
        .expect("the hub accepts")
}

/// Reads what the hub sends until it closes the connection (at most `limit`); `None` when it
/// has not closed it by then.
async fn read_until_closed(stream: &mut tokio::net::TcpStream, limit: Duration) -> Option<String> {
    use tokio::io::AsyncReadExt;
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + limit;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return Some(String::from_utf8_lossy(&answer).into_owned()),
            Ok(Ok(n)) => answer.extend_from_slice(&buf[..n]),
            Err(_) => return None,
        }
    }
}

/// RSS of a process now, in bytes (`VmRSS`).
fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_are_cut_off_and_cannot_hold_memory() {
    use tokio::io::AsyncWriteExt;
    let p = Project::new(
        "name: hardening\nlimits: { request_header_timeout: 2s, request_body_timeout: 3s, webhook_buffer_bytes: 8388608 }\n",
        &[("embedded", MAP_PAYLOAD)],
    );
    let mut hub = Hub::start(p.path(), &[]).await;
    let pid = hub.child.id().unwrap();
    let address = hub.base.trim_start_matches("http://").to_string();

    // Half a request head, then silence: closed after the header timeout.
    let mut partial = connect(&hub).await;
    partial
        .write_all(format!("POST /hooks/embedded HTTP/1.1\r\nHost: {address}\r\n").as_bytes())
        .await
        .unwrap();
    let start = Instant::now();
    assert!(
        read_until_closed(&mut partial, Duration::from_secs(10))
            .await
            .is_some(),
        "a connection that sent half its headers was still open after 10 s"
    );
    assert!(
        start.elapsed() >= Duration::from_secs(1),
        "{:?}",
        start.elapsed()
    );
    // A connection that sends nothing at all is closed too.
    let mut silent = connect(&hub).await;
    assert!(
        read_until_closed(&mut silent, Duration::from_secs(10))
            .await
            .is_some(),
        "a silent connection was still open after 10 s"
    );

    // Part of a body, then silence: 408 after the body timeout, and no run.
    let mut slow = connect(&hub).await;
    slow.write_all(
        format!("POST /hooks/embedded HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"payload\":").as_bytes(),
    )
    .await
    .unwrap();
    let answer = read_until_closed(&mut slow, Duration::from_secs(10))
        .await
        .expect("the hub answers a slow body within 10 s");
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");

    // Many large bodies that never finish: only as many as the webhook buffer holds are taken;
    // the rest are refused at once with 503, and the hub's memory stays where it was.
    let before = rss(pid);
    let mut held = Vec::new();
    let mut refused = 0;
    for _ in 0..40 {
        let mut stream = connect(&hub).await;
        let head = format!(
            "POST /hooks/embedded HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\nContent-Length: 1048000\r\n\r\n"
        );
        stream.write_all(head.as_bytes()).await.unwrap();
        let chunk = vec![b' '; 1_000_000];
        // The hub may refuse before the body is sent; a failed write is that.
        let _ = tokio::time::timeout(Duration::from_secs(2), stream.write_all(&chunk)).await;
        held.push(stream);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    for stream in &mut held {
        if let Some(answer) = read_until_closed(stream, Duration::from_millis(50)).await
            && answer.starts_with("HTTP/1.1 503")
        {
            refused += 1;
        }
    }
    let grown = rss(pid).saturating_sub(before);
    assert!(refused >= 30, "only {refused} of 40 were refused");
    assert!(
        grown < 48 << 20,
        "the hub grew by {} MiB holding unfinished bodies",
        grown >> 20
    );
    drop(held);
    assert!(alive(&mut hub));
    // Once they are gone, webhooks are taken again.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let (status, _) = hub
        .post_hook("embedded", &[], &json!({"payload": "1"}).to_string())
        .await;
    assert_eq!(status, 202);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_past_the_limit_get_503_at_once() {
    use tokio::io::AsyncWriteExt;
    let p = Project::new(
        "name: hardening\nlimits: { max_connections: 8, request_header_timeout: 30s }\n",
        &[("embedded", MAP_PAYLOAD)],
    );
    let hub = Hub::start(p.path(), &[]).await;
    let mut open = Vec::new();
    for _ in 0..8 {
        let mut stream = connect(&hub).await;
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\n")
            .await
            .unwrap();
        open.push(stream);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut extra = connect(&hub).await;
    let start = Instant::now();
    let answer = read_until_closed(&mut extra, Duration::from_secs(5))
        .await
        .expect("the connection past the limit is answered and closed");
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("retry-after"), "{answer}");
    assert!(start.elapsed() < Duration::from_secs(2));
    // Freed slots are taken again.
    drop(open);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (status, _) = hub.get("/healthz").await;
    assert_eq!(status, 200);
}
