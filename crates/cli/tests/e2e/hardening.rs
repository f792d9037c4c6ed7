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
    let recurse = hub.start_run("recurse", json!({})).await;
    let deep = hub.start_run("deep", json!({})).await;
    let fine = hub.start_run("fine", json!({})).await;
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
    let first = hub.start_run("spin", json!({})).await;
    let second = hub.start_run("spin", json!({})).await;
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
        let id = hub.start_run(workflow, json!({})).await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_sync_webhook_tells_the_sender_only_the_run_id() {
    let (server, addr) = weft_testkit::ScriptedServer::start().await;
    server.script(
        "orders",
        vec![weft_testkit::Answer {
            body: json!({"internal": "upstream-secret-detail", "trace": "db-host-17"}),
            ..weft_testkit::Answer::status(500)
        }],
    );
    let p = Project::with_api(
        addr,
        &[(
            "relay",
            "trigger: { webhook: { path: relay, respond: sync } }\nsteps:\n  - id: push\n    uses: api.request\n    with:\n      method: POST\n      path: /orders\n      body: ${{ .input }}\n    retry: { attempts: 1 }\n",
        )],
    );
    let hub = Hub::start(p.path(), &[]).await;
    let resp = reqwest::Client::new()
        .post(format!("{}/hooks/relay", hub.base))
        .header("content-type", "application/json")
        .body(r#"{"id": 1}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 500);
    let text = resp.text().await.unwrap();
    for leak in [
        "upstream-secret-detail",
        "db-host-17",
        "/orders",
        &addr.to_string(),
    ] {
        assert!(!text.contains(leak), "the answer tells `{leak}`: {text}");
    }
    let body: Value = serde_json::from_str(&text).unwrap();
    let run_id = body["error"]["details"]["run_id"].as_str().unwrap();
    // With a token, the API tells what happened.
    let (status, run) = hub.get(&format!("/api/runs/{run_id}")).await;
    assert_eq!(status, 200);
    assert!(run.to_string().contains("upstream-secret-detail"), "{run}");
}

/// Makes a token with the CLI and returns its secret.
async fn tool_token(p: &Project, tools: &str) -> String {
    let out = p
        .weft(&[
            "tokens", "create", "--json", "--role", "tool", "--tools", tools,
        ])
        .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    out.json()["token"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tool_token_reaches_only_its_own_calls() {
    let p = Project::new(
        "name: hardening\n",
        &[(
            "lookup",
            "trigger:\n  tool:\n    description: Look a thing up.\n    input: { type: object, properties: { id: { type: integer } } }\nsteps:\n  - id: a\n    map: ${{ {id: .input.id, secret: \"for the first caller only\"} }}\n",
        )],
    );
    let hub = Hub::start(p.path(), &[]).await;
    let alice = tool_token(&p, "lookup").await;
    let mallory = tool_token(&p, "lookup").await;
    let client = reqwest::Client::new();
    let call = |token: &str, path: &str, key: Option<&str>, body: Value| {
        let mut req = client
            .post(format!("{}/api/tools/{path}", hub.base))
            .bearer_auth(token)
            .json(&body);
        if let Some(key) = key {
            req = req.header("idempotency-key", key);
        }
        req.send()
    };
    let resp = call(&alice, "lookup", Some("conversation-1"), json!({"id": 7}))
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let first: Value = resp.json().await.unwrap();
    let run_id = first["run_id"].as_str().unwrap().to_string();

    // The same key from another token is another call: a run of its own.
    let resp = call(&mallory, "lookup", Some("conversation-1"), json!({"id": 7}))
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let second: Value = resp.json().await.unwrap();
    assert_ne!(second["run_id"], first["run_id"], "{second}");
    // Alice's own retry joins her run.
    let resp = call(&alice, "lookup", Some("conversation-1"), json!({"id": 7}))
        .await
        .unwrap();
    let again: Value = resp.json().await.unwrap();
    assert_eq!(again["run_id"], first["run_id"], "{again}");

    // run_result with another token's run id tells nothing.
    let resp = call(&mallory, "run_result", None, json!({"run_id": run_id}))
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    assert!(status >= 400, "{status} {text}");
    assert!(!text.contains("for the first caller only"), "{text}");
    let resp = call(&alice, "run_result", None, json!({"run_id": run_id}))
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let mine: Value = resp.json().await.unwrap();
    assert_eq!(mine["output"]["id"], 7, "{mine}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mcp_checks_host_and_origin_and_answers_errors_in_json() {
    let p = Project::new(
        "name: hardening\nmcp: { allowed_origins: [\"https://chat.example.com\"] }\n",
        &[(
            "lookup",
            "trigger:\n  tool:\n    description: Look a thing up.\nsteps:\n  - id: a\n    map: 1\n",
        )],
    );
    let hub = Hub::start(p.path(), &[]).await;
    let list = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"});
    let post = |origin: Option<&str>, host: Option<&str>, session: Option<&str>| {
        let mut req = hub
            .client
            .post(format!("{}/mcp", hub.base))
            .header("accept", "application/json, text/event-stream")
            .json(&list);
        if let Some(origin) = origin {
            req = req.header("origin", origin);
        }
        if let Some(host) = host {
            req = req.header("host", host);
        }
        if let Some(session) = session {
            req = req.header("mcp-session-id", session);
        }
        req.send()
    };
    for (origin, host, session, want) in [
        (Some("http://evil.example"), None, None, 403),
        (Some("null"), None, None, 403),
        (None, Some("evil.example"), None, 403),
        (None, None, Some("no-such-session"), 404),
    ] {
        let resp = post(origin, host, session).await.unwrap();
        let status = resp.status().as_u16();
        let ct = resp
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        let text = resp.text().await.unwrap();
        assert_eq!(status, want, "{origin:?} {host:?} {session:?}: {text}");
        assert!(ct.contains("application/json"), "{ct}: {text}");
        let body: Value = serde_json::from_str(&text).unwrap();
        assert!(body["error"]["message"].is_string(), "{body}");
    }
    // The listed origin and the hub's own loopback origin are let through.
    let initialize = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {},
        "clientInfo": {"name": "e2e", "version": "1"}}});
    for origin in ["https://chat.example.com", hub.base.as_str()] {
        let resp = hub
            .client
            .post(format!("{}/mcp", hub.base))
            .header("accept", "application/json, text/event-stream")
            .header("origin", origin)
            .json(&initialize)
            .send()
            .await
            .unwrap();
        assert!(resp.status().is_success(), "{origin}: {}", resp.status());
    }
}

/// A small tmpfs, mounted for the test's lifetime (it needs root, as CI runs; the test says so
/// otherwise and fails).
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(megabytes: u32) -> SmallDisk {
        let dir = tempfile::tempdir().unwrap();
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={megabytes}m"), "tmpfs"])
            .arg(dir.path())
            .status()
            .expect("mount runs");
        assert!(
            status.success(),
            "this test mounts a small tmpfs to fill the disk, which needs root"
        );
        SmallDisk { dir }
    }

    fn path(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// Fills the file system: writes `filler` until no byte more fits.
    fn fill(&self) {
        use std::io::Write;
        let mut file = std::fs::File::create(self.path().join("filler")).unwrap();
        let chunk = vec![0u8; 64 << 10];
        while file.write_all(&chunk).is_ok() {}
        let mut byte = [0u8; 1];
        while file.write_all(&byte).is_ok() {
            byte[0] = 1;
        }
        let _ = file.flush();
    }

    fn free(&self) {
        std::fs::remove_file(self.path().join("filler")).unwrap();
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_makes_the_hub_not_ready_and_its_files_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let disk = SmallDisk::mount(16);
    let root = disk.path().join("project");
    std::fs::create_dir_all(root.join("workflows")).unwrap();
    std::fs::write(root.join("weft.yaml"), "name: hardening\n").unwrap();
    std::fs::write(root.join("workflows/embedded.yaml"), MAP_PAYLOAD).unwrap();
    let mut hub = Hub::start(&root, &[]).await;
    let (status, _) = hub.get("/readyz").await;
    assert_eq!(status, 200);
    let body = json!({"payload": "[1]"}).to_string();
    let (status, _) = hub.post_hook("embedded", &[], &body).await;
    assert_eq!(status, 202);

    // Run data and token hashes are readable by their owner only.
    let mode = |p: &str| {
        std::fs::metadata(root.join(p))
            .map(|m| m.permissions().mode() & 0o777)
            .unwrap_or_else(|e| panic!("{p}: {e}"))
    };
    assert_eq!(mode(".weft"), 0o700);
    for file in [".weft/weft.db", ".weft/weft.db-wal", ".weft/weft.db-shm"] {
        assert_eq!(mode(file), 0o600, "{file}");
    }

    // The disk fills up: once writes fail, the hub says it is not ready.
    disk.fill();
    let mut refused = false;
    for n in 0..2000 {
        let body = json!({"payload": format!("[{}]", "1,".repeat(2000) + &n.to_string())});
        let (status, _) = hub.post_hook("embedded", &[], &body.to_string()).await;
        if status >= 500 {
            refused = true;
            break;
        }
    }
    assert!(refused, "every webhook was accepted on a full disk");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (status, body) = hub.get("/readyz").await;
    assert_eq!(status, 503, "{body}");
    assert!(alive(&mut hub));

    // Space again: ready again, and webhooks are taken.
    disk.free();
    let start = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let (status, _) = hub.get("/readyz").await;
        if status == 200 {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "not ready again");
    }
    let (status, _) = hub.post_hook("embedded", &[], &body.to_string()).await;
    assert_eq!(status, 202);
    hub.child.start_kill().unwrap();
    let _ = hub.child.wait().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_ahead_log_deleted_after_a_crash_is_reported() {
    let p = Project::new("name: hardening\n", &[("embedded", MAP_PAYLOAD)]);
    let mut hub = Hub::start(p.path(), &[]).await;
    for n in 0..20 {
        let body = json!({"payload": format!("[{n}]")}).to_string();
        let (status, _) = hub.post_hook("embedded", &[], &body).await;
        assert_eq!(status, 202);
    }
    tokio::time::sleep(Duration::from_millis(1200)).await;
    hub.child.start_kill().unwrap();
    let _ = hub.child.wait().await;
    std::fs::remove_file(p.path().join(".weft/weft.db-wal")).unwrap();
    let _ = std::fs::remove_file(p.path().join(".weft/weft.db-shm"));
    // The next process to open the store says what happened, once.
    let out = p.weft(&["runs", "list"]).await;
    assert!(
        out.stderr.contains("write-ahead log") && out.stderr.contains("is lost"),
        "no error about the lost log: {}",
        out.stderr
    );
    let out = p.weft(&["runs", "list"]).await;
    assert!(!out.stderr.contains("write-ahead log"), "{}", out.stderr);
}

#[tokio::test]
async fn a_guessable_admin_token_is_refused() {
    let p = Project::new("name: hardening\n", &[("embedded", MAP_PAYLOAD)]);
    let out = crate::hub::serve_command(p.path(), "127.0.0.1:0", &[])
        .env("WEFT_ADMIN_TOKEN", "aaaaaaaaaaaaaaaaaaaaaaaa")
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("too easy to guess"), "{stderr}");
}
