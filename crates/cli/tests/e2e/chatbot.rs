//! The support-bot example as a chatbot meets it: the official MCP Python SDK (PyPI `mcp`)
//! connects over streamable HTTP (negotiating the newest protocol version and, when asked, an
//! older one) and over stdio, lists the tools and calls each one, including a call with invalid
//! input and one whose run fails; a tool call that reaches an approval waits, survives a SIGKILL of
//! the hub, and completes once the approval is answered.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Value, json};

use crate::hub::Hub;
use crate::support::{copy_dir, free_port, repo_root, weft_path};

/// A copy of `examples/support-bot` whose stand-in shop and helpdesk point at `port`.
fn support_bot(port: u16) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let src = repo_root().join("examples/support-bot");
    copy_dir(&src, dir.path());
    let yaml = std::fs::read_to_string(dir.path().join("weft.yaml")).unwrap();
    std::fs::write(
        dir.path().join("weft.yaml"),
        yaml.replace("127.0.0.1:7807", &format!("127.0.0.1:{port}")),
    )
    .unwrap();
    dir
}

/// Whether the MCP Python SDK can be imported; without it the test is skipped, or fails when
/// `WEFT_REQUIRE_SERVICES=1` (as in `.ci/run`, which installs it).
fn python_sdk() -> bool {
    let ok = std::process::Command::new("python3")
        .args(["-c", "import mcp"])
        .output()
        .is_ok_and(|o| o.status.success());
    if ok {
        return true;
    }
    if std::env::var("WEFT_REQUIRE_SERVICES").as_deref() == Ok("1") {
        panic!(
            "the MCP Python SDK is not installed (pip install mcp), and WEFT_REQUIRE_SERVICES=1"
        );
    }
    eprintln!("SKIPPED: the MCP Python SDK is not installed; `pip install mcp` to run this test");
    false
}

fn client_script() -> PathBuf {
    repo_root().join("crates/cli/tests/e2e/mcp_client.py")
}

/// Runs the SDK client script and returns its checks by name.
async fn run_client(args: &[&str]) -> std::collections::HashMap<String, Value> {
    let out = tokio::time::timeout(
        Duration::from_secs(180),
        tokio::process::Command::new("python3")
            .arg(client_script())
            .args(args)
            .env("WEFT_LOG", "warn")
            .output(),
    )
    .await
    .expect("the MCP client finishes within 3 minutes")
    .expect("python3 runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the MCP client failed:\n{stdout}\n{stderr}"
    );
    let checks: std::collections::HashMap<String, Value> = stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .map(|v| (v["check"].as_str().unwrap_or("").to_string(), v))
        .collect();
    assert!(checks.contains_key("done"), "{stdout}\n{stderr}");
    for (name, check) in &checks {
        assert!(
            check.get("exception").is_none(),
            "check {name} raised: {check}\n{stderr}"
        );
    }
    checks
}

/// What every transport must show, whichever protocol version was negotiated.
fn assert_tool_calls(c: &std::collections::HashMap<String, Value>) {
    let names: Vec<&str> = c["list"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["ask", "kb_search", "order_status", "refund", "run_result"]
    );
    for t in c["list"]["tools"].as_array().unwrap() {
        assert_eq!(t["hasInputSchema"], true, "{t}");
        // Every tool but run_result (whose output is that of another tool) declares its output.
        assert_eq!(t["hasOutputSchema"], t["name"] != "run_result", "{t}");
    }

    assert_eq!(c["order_ok"]["isError"], false, "{}", c["order_ok"]);
    assert_eq!(
        c["order_ok"]["structuredContent"],
        json!({"order_id": 1001, "status": "shipped", "carrier": "DHL", "tracking": "JD014600006281230000"})
    );

    assert_eq!(
        c["order_recall"]["structuredContent"]["order_id"], 1001,
        "{}",
        c["order_recall"]
    );

    let invalid = &c["order_invalid"];
    assert_eq!(invalid["isError"], true, "{invalid}");
    assert_eq!(
        invalid["structuredContent"]["problems"][0]["path"], "/order_id",
        "{invalid}"
    );
    let text = invalid["text"].as_str().unwrap();
    assert!(
        text.contains("`/order_id`") && text.contains("minimum of 1"),
        "{text}"
    );

    let missing = &c["order_missing"];
    assert_eq!(missing["isError"], true, "{missing}");
    assert_eq!(missing["structuredContent"]["step"], "missing", "{missing}");
    assert!(
        missing["text"]
            .as_str()
            .unwrap()
            .contains("there is no order 4242"),
        "{missing}"
    );

    let answered = &c["ask_answered"]["structuredContent"];
    assert_eq!(answered["answered"], true, "{answered}");
    assert_eq!(answered["passages"][0]["heading"], "Refunds", "{answered}");
    assert_eq!(answered["passages"][0]["source"], "faq.md", "{answered}");
    assert_eq!(answered["ticket"], Value::Null);

    let ticket = &c["ask_ticket"]["structuredContent"];
    assert_eq!(ticket["answered"], false, "{ticket}");
    assert!(
        ticket["ticket"].as_str().unwrap().starts_with("T-"),
        "{ticket}"
    );

    let kb = &c["kb_search"]["structuredContent"];
    assert_eq!(kb["matched"], true, "{kb}");
    assert_eq!(
        kb["passages"][0]["heading"], "Customer service hours",
        "{kb}"
    );
    assert_eq!(kb["passages"][0]["source"], "opening-hours.html", "{kb}");

    assert_eq!(
        c["refund_small"]["structuredContent"],
        json!({"refunded": 5, "decision": "automatic"})
    );
}

#[tokio::test]
async fn the_mcp_python_sdk_calls_every_tool_over_streamable_http_and_stdio() {
    if !python_sdk() {
        return;
    }
    let port = free_port();
    let project = support_bot(port);
    let hub = Hub::start_at(project.path(), &format!("127.0.0.1:{port}"), &[]).await;
    let mcp = format!("{}/mcp", hub.base);
    let api = format!("{}/api", hub.base);

    // The newest version both sides speak.
    let token = ["--token", crate::hub::ADMIN_TOKEN];
    let c = run_client(&[&["http", &mcp, &api, "--mode", "auto"][..], &token].concat()).await;
    assert_eq!(c["connect"]["protocolVersion"], "2026-07-28");
    assert_eq!(c["connect"]["serverName"], "weft");
    assert_tool_calls(&c);
    let approval = &c["refund_approval"];
    assert_eq!(
        approval["structuredContent"],
        json!({"refunded": 80, "decision": "approved"}),
        "{approval}"
    );
    let progress: Vec<&str> = approval["progress"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["message"].as_str().unwrap())
        .collect();
    assert!(
        progress[0].starts_with("waiting for approval ")
            && progress[0].contains("Refund 80 EUR on order 1003"),
        "{progress:?}"
    );
    assert!(
        progress
            .iter()
            .any(|p| p.starts_with("step `pay` succeeded")),
        "{progress:?}"
    );

    // A client that only speaks the handshake-era protocol gets that version.
    let c = run_client(&[&["http", &mcp, &api, "--mode", "legacy"][..], &token].concat()).await;
    assert_eq!(c["connect"]["protocolVersion"], "2025-11-25");
    assert_tool_calls(&c);
    assert_eq!(
        c["refund_approval"]["structuredContent"],
        json!({"refunded": 80, "decision": "approved"}),
        "{}",
        c["refund_approval"]
    );

    // Over stdio, `weft mcp` runs the tools in its own process; the stand-in shop it calls is
    // still served by the hub.
    let dir = project.path().to_str().unwrap().to_string();
    let c = run_client(&["stdio", weft_path(), &dir]).await;
    assert_eq!(c["connect"]["serverName"], "weft");
    assert_tool_calls(&c);

    // Invalid input started no run: every order_status run is one of the calls that passed.
    let runs = hub.settle("order_status", Duration::from_secs(30)).await;
    assert_eq!(runs.len(), 9, "three calls per client reach a run");
}

#[tokio::test]
async fn a_tool_call_waits_for_its_approval_across_restarts() {
    let port = free_port();
    let project = support_bot(port);
    // Calls wait 3 s here (the example waits a minute), so that "still going" comes quickly.
    let refund = project.path().join("workflows/refund.yaml");
    let text = std::fs::read_to_string(&refund).unwrap();
    std::fs::write(&refund, text.replace("wait: 1m", "wait: 3s")).unwrap();
    let listen = format!("127.0.0.1:{port}");
    let mut hub = Hub::start_at(project.path(), &listen, &[]).await;
    let arguments = json!({"order_id": 1003, "amount": 80, "reason": "arrived broken"});
    let call = |hub: &Hub, arguments: &Value| {
        hub.client
            .post(format!("{}/api/tools/refund", hub.base))
            .header("idempotency-key", "conversation-7/refund-1")
            .json(arguments)
            .send()
    };

    // The call waits for the run, which waits for a person: after `wait`, 202 with the approval.
    let resp = call(&hub, &arguments).await.unwrap();
    assert_eq!(resp.status().as_u16(), 202);
    let pending: Value = resp.json().await.unwrap();
    assert_eq!(pending["state"], "waiting", "{pending}");
    let approval = pending["approval"].clone();
    assert_eq!(approval["data"]["amount"], 80, "{pending}");
    let run_id = pending["run_id"].as_str().unwrap().to_string();
    assert!(
        pending["message"].as_str().unwrap().contains("run_result"),
        "{pending}"
    );

    // Calling again joins the same run; a hub that shuts down meanwhile answers "still going"
    // instead of dropping the call.
    let again = tokio::spawn(call(&hub, &arguments));
    tokio::time::sleep(Duration::from_millis(500)).await;
    hub.sigterm();
    let resp = again.await.unwrap().unwrap();
    assert_eq!(resp.status().as_u16(), 202);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["run_id"], run_id.as_str(), "{body}");
    let _ = hub.child.wait().await;

    // A restart, then a SIGKILL and another restart: the run still waits for the same approval.
    hub = Hub::start_at(project.path(), &listen, &[]).await;
    hub.child.start_kill().unwrap();
    let _ = hub.child.wait().await;
    hub = Hub::start_at(project.path(), &listen, &[]).await;
    let (status, listed) = hub.get("/api/approvals").await;
    assert_eq!(status, 200);
    assert_eq!(listed["approvals"].as_array().unwrap().len(), 1, "{listed}");
    assert_eq!(listed["approvals"][0]["id"], approval["id"]);

    // Answering completes the run; the same call, and run_result, now answer its output.
    let (status, answered) = hub
        .post_json(
            &format!("/api/approvals/{}", approval["id"].as_str().unwrap()),
            json!({"decision": "approve", "by": "e2e"}),
        )
        .await;
    assert_eq!(status, 200, "{answered}");
    let resp = call(&hub, &arguments).await.unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["run_id"], run_id.as_str());
    assert_eq!(
        body["output"],
        json!({"refunded": 80, "decision": "approved"}),
        "{body}"
    );
    let (status, result) = hub
        .post_json("/api/tools/run_result", json!({"run_id": run_id}))
        .await;
    assert_eq!(
        (status, &result["output"]),
        (200, &body["output"]),
        "{result}"
    );

    // The key names that call: with other arguments it is refused, and nothing starts.
    let resp = call(
        &hub,
        &json!({"order_id": 1003, "amount": 90, "reason": "arrived broken"}),
    )
    .await
    .unwrap();
    assert_eq!(resp.status().as_u16(), 409);

    // One run of the tool, one refund at the shop: the restarts changed nothing.
    let runs = hub.settle("refund", Duration::from_secs(10)).await;
    assert_eq!(runs.len(), 1, "{runs:?}");
    let refunds = hub
        .settle("demo-shop-refunds", Duration::from_secs(10))
        .await;
    assert_eq!(refunds.len(), 1, "{refunds:?}");
    hub.sigterm();
}

#[tokio::test]
async fn http_function_calling_refuses_bad_calls_and_describes_the_tools() {
    let port = free_port();
    let project = support_bot(port);
    let hub = Hub::start_at(project.path(), &format!("127.0.0.1:{port}"), &[]).await;

    let (status, body) = hub
        .post_json(
            "/api/tools/order_status",
            json!({"order_id": "seven", "extra": 1}),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["code"], "invalid_input");
    let paths: Vec<&str> = body["error"]["details"]["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["path"].as_str().unwrap())
        .collect();
    assert!(
        paths.contains(&"/order_id") && paths.contains(&""),
        "{body}"
    );

    let (status, body) = hub.post_json("/api/tools/order_statu", json!({})).await;
    assert_eq!(status, 404, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("did you mean `order_status`"),
        "{body}"
    );
    // A webhook workflow is not a tool.
    let (status, _) = hub
        .post_json("/api/tools/demo-shop-orders", json!({}))
        .await;
    assert_eq!(status, 404);
    assert!(
        hub.all_runs("order_status").await.is_empty(),
        "no run started"
    );

    // A failed run is an answer too, flagged as an error, with the step and the reason.
    let (status, body) = hub
        .post_json("/api/tools/order_status", json!({"order_id": 4242}))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["is_error"], true, "{body}");
    assert_eq!(body["state"], "failed", "{body}");
    assert_eq!(body["step"], "missing", "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("no order 4242"),
        "{body}"
    );

    // A tool's schema holds also when its workflow is run from the command line.
    let out = crate::support::weft(
        project.path(),
        &["run", "order_status", "--input", r#"{"order_id": -1}"#],
    )
    .await;
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("at `/order_id`"), "{}", out.stderr);
    let (status, body) = hub
        .post_json(
            "/api/tools/ask",
            json!({"question": "Why?", "email": "not an address"}),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(
        body["error"]["details"]["problems"][0]["path"], "/email",
        "{body}"
    );

    // An output that does not match the declared output schema is an error, not an answer.
    let ask = project.path().join("workflows/ask.yaml");
    let text = std::fs::read_to_string(&ask).unwrap();
    std::fs::write(
        &ask,
        text.replace("answered: { type: boolean }", "answered: { type: string }"),
    )
    .unwrap();
    let hub2 = Hub::start(project.path(), &[]).await;
    let (status, body) = hub2
        .post_json(
            "/api/tools/ask",
            json!({"question": "How long does a refund take?", "email": "ada@example.com"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["is_error"], true, "{body}");
    assert_eq!(body["state"], "succeeded", "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("does not match the tool's output schema"),
        "{body}"
    );
    hub2.sigterm();
    std::fs::write(&ask, text).unwrap();

    let (status, doc) = hub.get("/api/tools/openapi.json").await;
    assert_eq!(status, 200);
    assert_eq!(doc["openapi"], "3.1.0");
    assert_eq!(doc["servers"][0]["url"], hub.base);
    let op = &doc["paths"]["/api/tools/order_status"]["post"];
    assert_eq!(op["operationId"], "order_status");
    assert_eq!(
        op["requestBody"]["content"]["application/json"]["schema"]["anyOf"],
        json!([{"required": ["order_id"]}, {"required": ["conversation_id"]}])
    );
    assert_eq!(doc["paths"].as_object().unwrap().len(), 5, "{doc}");

    for (format, name_at) in [("openai", "/0/function/name"), ("anthropic", "/0/name")] {
        let out =
            crate::support::weft(project.path(), &["tools", "export", "--format", format]).await;
        assert_eq!(out.code, 0, "{}", out.stderr);
        let tools = out.json();
        assert_eq!(tools.as_array().unwrap().len(), 5, "{tools}");
        assert_eq!(tools.pointer(name_at).unwrap(), "ask", "{tools}");
    }
    let out =
        crate::support::weft(project.path(), &["tools", "export", "--format", "openai"]).await;
    assert_eq!(
        out.json()[2]["function"]["parameters"]["properties"]["order_id"]["minimum"],
        1
    );
    hub.sigterm();
}

#[tokio::test]
async fn mcp_negotiates_older_versions_and_refuses_foreign_hosts() {
    let port = free_port();
    let project = support_bot(port);
    let hub = Hub::start_at(project.path(), &format!("127.0.0.1:{port}"), &[]).await;
    let initialize = |version: &str, host: Option<&str>| {
        let mut req = hub
            .client
            .post(format!("{}/mcp", hub.base))
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .body(
                json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
                    "protocolVersion": version, "capabilities": {},
                    "clientInfo": {"name": "e2e", "version": "1"}}})
                .to_string(),
            );
        if let Some(host) = host {
            req = req.header("host", host);
        }
        req.send()
    };
    // The answer is one JSON-RPC message, in an event stream or as JSON.
    let answer = |text: String| -> Value {
        text.lines()
            .filter_map(|l| l.strip_prefix("data: "))
            .chain(std::iter::once(text.as_str()))
            .find_map(|l| serde_json::from_str::<Value>(l).ok())
            .unwrap_or_else(|| panic!("no JSON-RPC answer in {text}"))
    };
    // A version the hub knows is kept; one it does not know gets its newest handshake version.
    for (asked, agreed) in [("2024-11-05", "2024-11-05"), ("2099-01-01", "2025-11-25")] {
        let resp = initialize(asked, None).await.unwrap();
        assert_eq!(resp.status().as_u16(), 200);
        let body = answer(resp.text().await.unwrap());
        assert_eq!(body["result"]["protocolVersion"], agreed, "{body}");
        assert_eq!(body["result"]["serverInfo"]["name"], "weft");
    }
    // A Host outside mcp.allowed_hosts (by default: loopback names) is refused.
    let resp = initialize("2025-11-25", Some("evil.example.com"))
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 403);
    hub.sigterm();
    let _ = hub.child.wait_with_output().await;

    // Named in weft.yaml, a host is let in.
    let yaml = project.path().join("weft.yaml");
    let text = std::fs::read_to_string(&yaml).unwrap();
    std::fs::write(
        &yaml,
        format!("{text}mcp: {{ allowed_hosts: [bot.example.com] }}\n"),
    )
    .unwrap();
    let hub = Hub::start_at(project.path(), &format!("127.0.0.1:{port}"), &[]).await;
    let resp = hub
        .client
        .post(format!("{}/mcp", hub.base))
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("host", "bot.example.com")
        .body(
            json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
                "protocolVersion": "2025-11-25", "capabilities": {},
                "clientInfo": {"name": "e2e", "version": "1"}}})
            .to_string(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    hub.sigterm();
}
