//! Attacks on the hub's API: missing, wrong, expired and revoked tokens on every route, each role
//! against each kind of action, and `tool` tokens that try tools they were not given. Neither a 401
//! nor a 403 may tell whether what was asked for exists.

use std::time::Duration;

use serde_json::{Value, json};

use crate::hub::Hub;
use crate::support::{Project, weft};

const WORKFLOWS: &[(&str, &str)] = &[
    (
        "hello",
        "trigger: manual\nsteps:\n  - id: hi\n    map: ${{ \"hi \\(.input.name)\" }}\n",
    ),
    (
        "lookup",
        "trigger:\n  tool:\n    description: Look a thing up.\n    input: { type: object, properties: { id: { type: integer }, pin: { type: string, writeOnly: true } } }\nsteps:\n  - id: a\n    map: ${{ {id: .input.id} }}\n",
    ),
    (
        "wipe",
        "trigger:\n  tool:\n    description: Wipe everything.\nsteps:\n  - id: a\n    map: ${{ {wiped: true} }}\n",
    ),
    ("hook", "trigger: webhook\nsteps:\n  - id: a\n    map: 1\n"),
];

/// Makes a token with the CLI and returns its secret and id.
async fn token(p: &Project, args: &[&str]) -> (String, String) {
    let mut all = vec!["tokens", "create", "--json"];
    all.extend_from_slice(args);
    let out = p.weft(&all).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let made = out.json();
    (
        made["token"].as_str().unwrap().to_string(),
        made["id"].as_str().unwrap().to_string(),
    )
}

/// Every documented route, plus the tools' document, MCP, metrics and a path that does not exist,
/// with a method each.
async fn every_route(hub: &Hub, run_id: &str) -> Vec<(reqwest::Method, String)> {
    let (status, doc) = hub.get("/api/openapi.json").await;
    assert_eq!(status, 200);
    let mut routes = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            // Signing in to the console takes the token in its body, and asking for the session
            // is answered without one (no content): both are checked on their own below.
            if path == "/session" && (method == "get" || method == "post") {
                continue;
            }
            let path = path.replace("{name}", "hello").replace("{id}", run_id);
            routes.push((
                method.to_uppercase().parse().unwrap(),
                format!("/api{path}"),
            ));
        }
    }
    for (method, path) in [
        ("GET", "/api/openapi.json"),
        ("GET", "/api/tools/openapi.json"),
        ("POST", "/mcp"),
        ("GET", "/metrics"),
        ("GET", "/api/runs/no-such-run"),
        ("GET", "/no/such/path"),
    ] {
        routes.push((method.parse().unwrap(), path.to_string()));
    }
    routes
}

async fn send(
    hub: &Hub,
    method: &reqwest::Method,
    path: &str,
    token: Option<&str>,
) -> (u16, Option<String>, Value) {
    // A client without the hub's default admin token.
    let client = reqwest::Client::new();
    let mut req = client
        .request(method.clone(), format!("{}{path}", hub.base))
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body("{}");
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let challenge = resp
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_string());
    (status, challenge, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_guard_every_route_and_roles_decide_what_a_token_may_do() {
    let p = Project::new("name: sec\n", WORKFLOWS);
    let hub = Hub::start(p.path(), &[]).await;
    let (status, started) = hub
        .post_json("/api/workflows/hello/runs", json!({"input": {"name": "a"}}))
        .await;
    assert_eq!(status, 202, "{started}");
    let run_id = started["run_id"].as_str().unwrap().to_string();
    hub.settle("hello", Duration::from_secs(10)).await;

    let (expired, _) = token(&p, &["--role", "admin", "--expires", "1s"]).await;
    let (revoked, revoked_id) = token(&p, &["--role", "admin"]).await;
    let out = p.weft(&["tokens", "revoke", &revoked_id]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    tokio::time::sleep(Duration::from_millis(1500)).await;

    // No token, a made-up one, an expired one, a revoked one: the same 401 everywhere.
    let routes = every_route(&hub, &run_id).await;
    assert!(routes.len() >= 15, "{routes:?}");
    for bad in [
        None,
        Some("weft_0000000000000000000000000000000000000000000000"),
        Some(expired.as_str()),
        Some(revoked.as_str()),
        Some(""),
    ] {
        let mut bodies = std::collections::BTreeSet::new();
        for (method, path) in &routes {
            let (status, challenge, body) = send(&hub, method, path, bad).await;
            assert_eq!(status, 401, "{method} {path} with {bad:?}: {body}");
            assert_eq!(challenge.as_deref(), Some("Bearer"), "{method} {path}");
            assert_eq!(body["error"]["code"], "unauthorized");
            bodies.insert(body.to_string());
        }
        assert_eq!(bodies.len(), 1, "one answer whatever was asked: {bodies:?}");
    }
    // Health, readiness and webhooks need none, nor does asking whether a console session is on.
    for (method, path) in [
        ("GET", "/healthz"),
        ("GET", "/readyz"),
        ("POST", "/hooks/hook"),
        ("GET", "/api/session"),
    ] {
        let (status, _, body) = send(&hub, &method.parse().unwrap(), path, None).await;
        assert!(status < 300, "{method} {path}: {status} {body}");
    }
    // Signing in with any of the bad tokens is the same 401, and sets no cookie.
    for bad in [
        "weft_0000000000000000000000000000000000000000000000",
        expired.as_str(),
        revoked.as_str(),
    ] {
        let r = reqwest::Client::new()
            .post(format!("{}/api/session", hub.base))
            .json(&json!({ "token": bad }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
        assert!(r.headers().get("set-cookie").is_none());
    }

    let (viewer, _) = token(&p, &["--role", "viewer"]).await;
    let (operator, _) = token(&p, &["--role", "operator"]).await;
    let (editor, _) = token(&p, &["--role", "editor"]).await;
    let (tool, _) = token(&p, &["--role", "tool", "--tools", "lookup"]).await;
    let retry = format!("/api/runs/{run_id}/retry");
    let show = format!("/api/runs/{run_id}");
    let post = reqwest::Method::POST;
    let get = reqwest::Method::GET;
    // (token, method, path, expected status)
    let cases: Vec<(&str, &reqwest::Method, &str, u16)> = vec![
        (&viewer, &get, "/api/runs", 200),
        (&viewer, &get, "/metrics", 200),
        (&viewer, &post, "/api/workflows/lint", 200),
        (&viewer, &post, &retry, 403),
        (&viewer, &post, "/api/runs/no-such-run/retry", 403),
        (&viewer, &post, "/api/tools/lookup", 403),
        (&viewer, &post, "/mcp", 403),
        (&operator, &post, &retry, 409),
        (&operator, &post, "/api/tools/lookup", 200),
        (&operator, &post, "/api/tools/wipe", 200),
        (&editor, &post, &retry, 409),
        (&tool, &get, "/api/runs", 403),
        (&tool, &get, &show, 403),
        (&tool, &get, "/api/runs/no-such-run", 403),
        (&tool, &post, &retry, 403),
        (&tool, &get, "/metrics", 403),
        (&tool, &post, "/api/tools/lookup", 200),
        (&tool, &post, "/api/tools/wipe", 404),
        (&tool, &post, "/api/tools/no-such-tool", 404),
    ];
    for (secret, method, path, expected) in cases {
        let (status, _, body) = send(&hub, method, path, Some(secret)).await;
        assert_eq!(status, expected, "{method} {path}: {body}");
        if status == 403 {
            assert_eq!(body["error"]["code"], "forbidden", "{body}");
        }
    }
    // A tool token sees only its tools, in the list and in the tools' OpenAPI document, and the
    // answer for a tool it was not given is the one for a tool that does not exist.
    let (_, _, listed) = send(&hub, &get, "/api/tools", Some(&tool)).await;
    let names: Vec<&str> = listed["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["lookup", "run_result"]);
    let (_, _, doc) = send(&hub, &get, "/api/tools/openapi.json", Some(&tool)).await;
    assert!(doc["paths"].get("/api/tools/wipe").is_none(), "{doc}");
    let (_, _, hidden) = send(&hub, &post, "/api/tools/wipe", Some(&tool)).await;
    let (_, _, absent) = send(&hub, &post, "/api/tools/wipf", Some(&tool)).await;
    assert_eq!(
        hidden["error"]["message"]
            .as_str()
            .unwrap()
            .replace("wipe", "?"),
        absent["error"]["message"]
            .as_str()
            .unwrap()
            .replace("wipf", "?")
    );
    assert_eq!(
        hub.all_runs("wipe").await.len(),
        1,
        "only the operator's call ran"
    );

    // Over MCP too: a tool token lists only its tools; an operator lists them all.
    assert_eq!(mcp_tools(&hub, &tool).await, ["lookup", "run_result"]);
    assert_eq!(
        mcp_tools(&hub, &operator).await,
        ["lookup", "run_result", "wipe"]
    );

    // The audit log: readable by admins only, not writable at all, and tool calls are in it with
    // their sensitive arguments masked.
    let (status, _, _) = send(&hub, &post, "/api/tools/lookup", Some(&tool)).await;
    assert_eq!(status, 200);
    let resp = reqwest::Client::new()
        .post(format!("{}/api/tools/lookup", hub.base))
        .header("authorization", format!("Bearer {tool}"))
        .json(&json!({"id": 7, "pin": "hunter2-pin"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let (status, _, _) = send(&hub, &get, "/api/audit", Some(&viewer)).await;
    assert_eq!(status, 403);
    let (status, _, _) = send(&hub, &get, "/api/audit", Some(&operator)).await;
    assert_eq!(status, 403);
    for method in [
        reqwest::Method::POST,
        reqwest::Method::PUT,
        reqwest::Method::DELETE,
    ] {
        let (status, _, _) = send(&hub, &method, "/api/audit", Some(crate::hub::ADMIN_TOKEN)).await;
        assert!(
            status == 405 || status == 404,
            "{method} /api/audit: {status}"
        );
    }
    let (status, log) = hub.get("/api/audit?limit=500").await;
    assert_eq!(status, 200, "{log}");
    let text = log.to_string();
    assert!(!text.contains("hunter2-pin"), "{text}");
    let entries = log["entries"].as_array().unwrap();
    let call = entries
        .iter()
        .find(|e| e["action"] == "tool.call" && e["details"]["arguments"]["id"] == 7)
        .unwrap_or_else(|| panic!("{text}"));
    assert_eq!(call["target"], "lookup");
    assert_eq!(call["details"]["arguments"]["pin"], "***");
    assert!(
        call["actor"].as_str().unwrap().starts_with("tok_"),
        "{call}"
    );
    let actions: Vec<&str> = entries
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    for expected in ["token.create", "token.revoke", "run.start", "tool.call"] {
        assert!(actions.contains(&expected), "{expected} in {actions:?}");
    }
    let out = p.weft(&["audit", "--json", "--limit", "500"]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.json().as_array().unwrap().len(), entries.len());

    // Oversized bodies are refused before anything reads them.
    for path in ["/api/tools/lookup", "/mcp", "/api/workflows/hello/runs"] {
        let resp = reqwest::Client::new()
            .post(format!("{}{path}", hub.base))
            .header("authorization", format!("Bearer {operator}"))
            .header("content-type", "application/json")
            .body(format!("{{\"pad\": \"{}\"}}", "x".repeat(1_100_000)))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 413, "{path}");
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["error"]["code"], "payload_too_large", "{path}");
    }

    // The tokens' list shows no secret.
    let out = weft(p.path(), &["tokens", "list", "--json"]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    for secret in [&viewer, &operator, &editor, &tool, &expired, &revoked] {
        assert!(!out.stdout.contains(secret.as_str()), "{}", out.stdout);
    }
    let listed = out.json();
    let states: Vec<bool> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["live"].as_bool().unwrap())
        .collect();
    assert_eq!(states.iter().filter(|l| !**l).count(), 2, "{listed}");
    hub.sigterm();
}

#[tokio::test]
async fn a_new_hub_makes_and_shows_an_admin_token_once_and_stores_only_its_hash() {
    let p = Project::new("name: first\n", WORKFLOWS);
    let mut cmd = crate::support::command(p.path(), &["serve", ".", "--listen", "127.0.0.1:0"]);
    cmd.env_remove("WEFT_ADMIN_TOKEN");
    let mut child = cmd.spawn().unwrap();
    let stderr = child.stderr.take().unwrap();
    use tokio::io::AsyncBufReadExt;
    let mut lines = tokio::io::BufReader::new(stderr).lines();
    let secret = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            let line = line.trim();
            if line.starts_with("weft_") {
                return line.to_string();
            }
        }
        panic!("no token was shown");
    })
    .await
    .unwrap();
    child.start_kill().unwrap();
    let _ = child.wait().await;
    let db = std::fs::read(p.path().join(".weft/weft.db")).unwrap();
    let wal = std::fs::read(p.path().join(".weft/weft.db-wal")).unwrap_or_default();
    for bytes in [&db, &wal] {
        assert!(
            !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
            "the secret is not in the database"
        );
    }
    let out = weft(p.path(), &["tokens", "list", "--json"]).await;
    assert_eq!(out.json().as_array().unwrap().len(), 1);

    // A second start makes no second token.
    let hub = Hub::start(p.path(), &[]).await;
    hub.sigterm();
    let out = weft(p.path(), &["tokens", "list", "--json"]).await;
    let roles: Vec<String> = out
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["role"].as_str().unwrap().to_string())
        .collect();
    // The first token, and the test hub's WEFT_ADMIN_TOKEN.
    assert_eq!(roles, ["admin", "admin"]);

    // Another WEFT_ADMIN_TOKEN replaces the earlier one, which stops working.
    let mut cmd = crate::hub::serve_command(p.path(), "127.0.0.1:0", &[]);
    cmd.env("WEFT_ADMIN_TOKEN", "a-rotated-admin-token-42");
    let mut child = cmd.spawn().unwrap();
    crate::hub::until_listening(&mut child).await;
    child.start_kill().unwrap();
    let _ = child.wait().await;
    let out = weft(p.path(), &["tokens", "list", "--json"]).await;
    let live: Vec<(String, bool)> = out
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["name"].as_str().unwrap_or("").to_string(),
                t["live"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        live,
        [
            ("first start".to_string(), true),
            ("WEFT_ADMIN_TOKEN".to_string(), false),
            ("WEFT_ADMIN_TOKEN".to_string(), true),
        ]
    );

    let out = weft(p.path(), &["tokens", "create", "--role", "tool"]).await;
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("`--tools`"), "{}", out.stderr);
    let out = weft(
        p.path(),
        &["tokens", "create", "--role", "tool", "--tools", "nope"],
    )
    .await;
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("has no tool `nope`"), "{}", out.stderr);
    let out = weft(p.path(), &["tokens", "create", "--role", "root"]).await;
    assert_eq!(out.code, 2);
    let out = weft(
        p.path(),
        &["tokens", "create", "--role", "viewer", "--expires", "0s"],
    )
    .await;
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.contains("--expires must be longer than zero"),
        "{}",
        out.stderr
    );
    let out = weft(p.path(), &["tokens", "revoke", "tok_nope"]).await;
    assert_eq!(out.code, 2);
}

/// The tool names `tools/list` gives over MCP (an initialize handshake, then the list) for `token`.
async fn mcp_tools(hub: &Hub, token: &str) -> Vec<String> {
    let client = reqwest::Client::new();
    let post = |body: Value, session: Option<&str>| {
        let mut req = client
            .post(format!("{}/mcp", hub.base))
            .header("authorization", format!("Bearer {token}"))
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .header("mcp-protocol-version", "2025-11-25")
            .body(body.to_string());
        if let Some(id) = session {
            req = req.header("mcp-session-id", id);
        }
        req.send()
    };
    let message = |text: &str| -> Value {
        text.lines()
            .filter_map(|l| l.strip_prefix("data: "))
            .find_map(|l| serde_json::from_str::<Value>(l).ok())
            .or_else(|| serde_json::from_str(text).ok())
            .unwrap_or_else(|| panic!("no JSON-RPC message in {text}"))
    };
    let resp = post(
        json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-11-25", "capabilities": {},
            "clientInfo": {"name": "e2e", "version": "1"}}}),
        None,
    )
    .await
    .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let session = resp
        .headers()
        .get("mcp-session-id")
        .map(|v| v.to_str().unwrap().to_string());
    let _ = resp.text().await;
    post(
        json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
        session.as_deref(),
    )
    .await
    .unwrap();
    let resp = post(
        json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}),
        session.as_deref(),
    )
    .await
    .unwrap();
    let listed = message(&resp.text().await.unwrap());
    listed["result"]["tools"]
        .as_array()
        .unwrap_or_else(|| panic!("{listed}"))
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_erase_deletes_the_runs_a_request_names_and_purge_deletes_old_runs() {
    let p = Project::new(
        "name: erase\n",
        &[
            (
                "signup",
                "trigger: manual\nsteps:\n  - id: hi\n    map: ${{ .input.email }}\n",
            ),
            (
                "slow",
                "trigger: manual\nsteps:\n  - id: later\n    wait: 1h\n",
            ),
        ],
    );
    let hub = Hub::start(p.path(), &[]).await;
    for (workflow, email) in [
        ("signup", "ada@example.com"),
        ("signup", "bob@example.com"),
        ("signup", "ada@example.com"),
        ("slow", "ada@example.com"),
    ] {
        let (status, body) = hub
            .post_json(
                &format!("/api/workflows/{workflow}/runs"),
                json!({"input": {"email": email}}),
            )
            .await;
        assert_eq!(status, 202, "{body}");
    }
    hub.settle("signup", Duration::from_secs(10)).await;

    let predicate = ".input.email == \"ada@example.com\"";
    let erase = ["data", "erase", "--match", predicate, "--json"];
    let out = p.weft(&[&erase[..], &["--dry-run"]].concat()).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.json()["matched_trees"], 3);
    assert_eq!(
        hub.all_runs("signup").await.len(),
        3,
        "a dry run deletes nothing"
    );

    let out = p.weft(&erase).await;
    assert_eq!(out.code, 1, "an unfinished run was left: {}", out.stderr);
    let counts = out.json();
    assert_eq!(counts["deleted_runs"], 2, "{counts}");
    assert_eq!(counts["unfinished_left"], 1, "{counts}");
    let left = hub.all_runs("signup").await;
    assert_eq!(left.len(), 1);
    assert_eq!(left[0]["input"]["email"], "bob@example.com");
    assert_eq!(
        hub.all_runs("slow").await.len(),
        1,
        "the waiting run is left"
    );

    // The audit entry has the count, and not the address the request named.
    let (_, log) = hub.get("/api/audit").await;
    let erase = log["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "data.erase")
        .unwrap_or_else(|| panic!("{log}"))
        .clone();
    assert_eq!(erase["details"]["runs"], 2);
    assert_eq!(erase["actor"], "cli");
    assert!(!erase.to_string().contains("ada@"), "{erase}");

    let out = p.weft(&["data", "erase", "--match", ".input |"]).await;
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.contains("--match is not a jq predicate"),
        "{}",
        out.stderr
    );

    // Purge: every run that finished more than a second ago.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let out = p
        .weft(&["runs", "purge", "--older-than", "1s", "--json"])
        .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.json()["deleted"], 1);
    assert!(hub.all_runs("signup").await.is_empty());
    let (_, log) = hub.get("/api/audit").await;
    assert!(
        log["entries"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["action"] == "runs.purge" && e["details"]["runs"] == 1),
        "{log}"
    );
    hub.sigterm();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_and_webhooks_over_their_rate_get_429_with_retry_after() {
    let p = Project::new(
        "name: limited\nlimits: { token_requests_per_minute: 6, webhook_requests_per_minute: 6 }\n",
        WORKFLOWS,
    );
    let hub = Hub::start(p.path(), &[]).await;
    let (viewer, _) = token(&p, &["--role", "viewer"]).await;
    let (other, _) = token(&p, &["--role", "viewer"]).await;
    let get = reqwest::Method::GET;
    // Six a minute is one at a time, one every ten seconds.
    let (status, _, _) = send(&hub, &get, "/api/runs", Some(&viewer)).await;
    assert_eq!(status, 200);
    let resp = reqwest::Client::new()
        .get(format!("{}/api/runs", hub.base))
        .header("authorization", format!("Bearer {viewer}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 429);
    let wait: u64 = resp.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=10).contains(&wait), "{wait}");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "rate_limited");
    // Another token has its own budget.
    let (status, _, _) = send(&hub, &get, "/api/runs", Some(&other)).await;
    assert_eq!(status, 200);

    let (status, _) = hub.post_hook("hook", &[], "{}").await;
    assert_eq!(status, 202);
    let (status, body) = hub.post_hook("hook", &[], "{}").await;
    assert_eq!(status, 429, "{body}");
    // (Read through the CLI: the test's admin token is limited too.)
    let out = p
        .weft(&["runs", "list", "--workflow", "hook", "--json"])
        .await;
    assert_eq!(
        out.json().as_array().unwrap().len(),
        1,
        "the refused request started nothing"
    );
    hub.sigterm();
}

/// A test CA and a certificate it signed for 127.0.0.1 and localhost, made with the `openssl`
/// command: returns (the CA's certificate, the server's certificate, its key).
fn test_certificates(
    dir: &std::path::Path,
) -> Option<(std::path::PathBuf, std::path::PathBuf, std::path::PathBuf)> {
    std::fs::write(
        dir.join("leaf.ext"),
        "basicConstraints=critical,CA:FALSE\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n",
    )
    .unwrap();
    let ec = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";
    let steps = [
        format!("req -x509 {ec} -days 2 -subj /CN=weft-test-CA -keyout ca.key -out ca.pem"),
        format!("req {ec} -subj /CN=localhost -keyout key.pem -out leaf.csr"),
        "x509 -req -days 2 -in leaf.csr -CA ca.pem -CAkey ca.key -CAcreateserial -extfile leaf.ext -out cert.pem".to_string(),
    ];
    let made = steps.iter().all(|args| {
        std::process::Command::new("openssl")
            .args(args.split(' '))
            .current_dir(dir)
            .output()
            .is_ok_and(|o| o.status.success())
    });
    if made {
        return Some((
            dir.join("ca.pem"),
            dir.join("cert.pem"),
            dir.join("key.pem"),
        ));
    }
    if std::env::var("WEFT_REQUIRE_SERVICES").as_deref() == Ok("1") {
        panic!("the openssl command could not make test certificates");
    }
    eprintln!("SKIPPED: the openssl command could not make test certificates");
    None
}

#[tokio::test]
async fn serve_speaks_https_with_a_given_certificate() {
    let p = Project::new("name: tls\n", WORKFLOWS);
    let certs = tempfile::tempdir().unwrap();
    let Some((ca, cert, key)) = test_certificates(certs.path()) else {
        return;
    };
    let (cert_arg, key_arg) = (cert.to_str().unwrap(), key.to_str().unwrap());
    let mut cmd = crate::hub::serve_command(
        p.path(),
        "127.0.0.1:0",
        &["--tls-cert", cert_arg, "--tls-key", key_arg],
    );
    let mut child = cmd.spawn().unwrap();
    let (listening, _log) = crate::hub::until_listening(&mut child).await;
    assert_eq!(listening["scheme"], "https");
    let address = listening["address"].as_str().unwrap();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let trusted = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&std::fs::read(&ca).unwrap()).unwrap())
        .build()
        .unwrap();
    let resp = trusted
        .get(format!("https://{address}/api/runs"))
        .bearer_auth(crate::hub::ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    // Plain HTTP to the same port gets no answer, and a client that does not trust the certificate
    // does not connect.
    assert!(
        reqwest::get(format!("http://{address}/healthz"))
            .await
            .is_err()
    );
    assert!(
        reqwest::get(format!("https://{address}/healthz"))
            .await
            .is_err()
    );
    child.start_kill().unwrap();
    let _ = child.wait().await;

    // A key that is not a key, or a missing file, is named and stops the start.
    std::fs::write(certs.path().join("bad.pem"), "not a key").unwrap();
    let bad = certs.path().join("bad.pem");
    for (c, k, named) in [
        (cert.clone(), bad.clone(), bad.clone()),
        (
            certs.path().join("missing.pem"),
            key.clone(),
            certs.path().join("missing.pem"),
        ),
    ] {
        let out = crate::support::weft(
            p.path(),
            &[
                "serve",
                ".",
                "--listen",
                "127.0.0.1:0",
                "--tls-cert",
                c.to_str().unwrap(),
                "--tls-key",
                k.to_str().unwrap(),
            ],
        )
        .await;
        assert_eq!(out.code, 2, "{}", out.stderr);
        assert!(
            out.stderr.contains(named.to_str().unwrap()),
            "{}",
            out.stderr
        );
    }
}
