//! The secret store from the outside: `weft secrets set` (from standard input), a connection that
//! uses `{ secret: NAME }` against a server that echoes the credential back, and the value found
//! nowhere it must not be: not in the stored run, the API's answers, the log or the database file.
//! Then a new value reaches a running hub, the master key is rotated, and a wrong key stops a start.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncWriteExt;

use crate::hub::Hub;
use crate::support::{Output, Project, command, weft};

const FIRST: &str = "sk_live_4f9Qz\"7Lw2xT";
const SECOND: &str = "sk_live_second-value-88";

/// `weft secrets set name` with `value` on standard input.
async fn set_secret(p: &Project, name: &str, value: &str) -> Output {
    let mut cmd = command(p.path(), &["secrets", "set", name]);
    cmd.stdin(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(value.as_bytes()).await.unwrap();
    stdin.write_all(b"\n").await.unwrap();
    drop(stdin);
    let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    Output::from(out)
}

fn holds(bytes: &[u8], needle: &str) -> bool {
    bytes.windows(needle.len()).any(|w| w == needle.as_bytes())
}

/// Every file of the store: the database and its write-ahead log.
fn database_bytes(p: &Project) -> Vec<u8> {
    let mut all = std::fs::read(p.path().join(".weft/weft.db")).unwrap();
    all.extend(std::fs::read(p.path().join(".weft/weft.db-wal")).unwrap_or_default());
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stored_secret_is_used_but_never_stored_shown_or_logged_in_clear() {
    let (server, addr) = weft_testkit::ScriptedServer::start().await;
    let p = Project::new(
        &format!(
            "connections:\n  api:\n    type: http\n    base_url: http://{addr}\n    allow_private_network: true\n    auth: {{ type: bearer, token: {{ secret: API_TOKEN }} }}\n"
        ),
        &[(
            "leak",
            "trigger: webhook\nsteps:\n  - id: call\n    uses: api.request\n    with: { path: /echo-headers }\n  - id: said\n    map: ${{ {auth: .steps.call.body.headers.authorization, note: .input.note} }}\n  - id: fail\n    if: ${{ .input.fail == true }}\n    fail: ${{ \"the API said \\(.steps.call.body.headers.authorization)\" }}\noutput: ${{ .steps.said }}\n",
        )],
    );

    // Bad input changes nothing.
    let out = weft(p.path(), &["secrets", "set", "API_TOKEN"]).await;
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("no value"), "{}", out.stderr);
    let out = set_secret(&p, "9 bad name", FIRST).await;
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.contains("is not a secret name"),
        "{}",
        out.stderr
    );
    let out = set_secret(&p, "API_TOKEN", "abc").await;
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("shorter than 4"), "{}", out.stderr);
    assert!(!p.path().join(".weft/master.key").exists());

    // The first secret makes the key file, private to its owner.
    let out = set_secret(&p, "API_TOKEN", FIRST).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stderr.contains("Created the master key"),
        "{}",
        out.stderr
    );
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(p.path().join(".weft/master.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let list = weft(p.path(), &["secrets", "list", "--json"]).await;
    assert_eq!(list.code, 0, "{}", list.stderr);
    let listed = list.json();
    assert_eq!(listed[0]["name"], "API_TOKEN");
    assert!(!list.stdout.contains("sk_live"), "{}", list.stdout);

    let hub = Hub::start(p.path(), &[]).await;
    // The event carries the secret too (a client that pastes a token where it should not).
    let (status, _) = hub
        .post_hook(
            "leak",
            &[],
            &format!(r#"{{"note": "mine is {}"}}"#, FIRST.replace('"', "\\\"")),
        )
        .await;
    assert_eq!(status, 202);
    let (status, _) = hub.post_hook("leak", &[], r#"{"fail": true}"#).await;
    assert_eq!(status, 202);
    let runs = hub.settle("leak", Duration::from_secs(30)).await;
    assert_eq!(runs.len(), 2);

    // The server got the real credential.
    let seen = server.seen("echo-headers");
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0].headers["authorization"], format!("Bearer {FIRST}"));

    // What was stored and what the API shows has it replaced, wherever it was.
    let mut shown = String::new();
    for run in &runs {
        let (status, detail) = hub
            .get(&format!("/api/runs/{}", run["id"].as_str().unwrap()))
            .await;
        assert_eq!(status, 200);
        shown.push_str(&detail.to_string());
    }
    assert!(!shown.contains("sk_live_4f9Qz"), "{shown}");
    assert!(
        shown.contains(r#""auth":"Bearer [secret API_TOKEN]""#),
        "{shown}"
    );
    assert!(shown.contains("mine is [secret API_TOKEN]"), "{shown}");
    assert!(
        shown.contains("the API said Bearer [secret API_TOKEN]"),
        "{shown}"
    );
    let (_, audit) = hub.get("/api/audit").await;
    assert!(!audit.to_string().contains("sk_live_4f9Qz"));

    // A new value reaches the running hub without a restart.
    let out = set_secret(&p, "API_TOKEN", SECOND).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (status, _) = hub.post_hook("leak", &[], "{}").await;
        assert_eq!(status, 202);
        hub.settle("leak", Duration::from_secs(30)).await;
        let last = server.seen("echo-headers").pop().unwrap();
        if last.headers["authorization"] == format!("Bearer {SECOND}") {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the hub still sends the old value"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let runs = hub.all_runs("leak").await;
    let (_, newest) = hub
        .get(&format!("/api/runs/{}", runs[0]["id"].as_str().unwrap()))
        .await;
    assert!(
        newest.to_string().contains("[secret API_TOKEN]"),
        "{newest}"
    );
    assert!(!newest.to_string().contains(SECOND), "{newest}");

    hub.sigterm();
    let mut child = hub.child;
    let _ = tokio::time::timeout(Duration::from_secs(30), child.wait()).await;
    let log: Vec<String> = hub
        .log
        .lock()
        .unwrap()
        .iter()
        .map(|l| l.to_string())
        .collect();
    let log = log.join("\n");
    assert!(log.contains("The secret store changed"), "{log}");
    for value in ["sk_live_4f9Qz", SECOND] {
        assert!(!log.contains(value), "the log holds a secret: {log}");
        assert!(
            !holds(&database_bytes(&p), value),
            "the database holds a secret in clear"
        );
    }

    // Rotation re-encrypts under a new key; the values still decrypt.
    let before = weft(p.path(), &["secrets", "list", "--json"]).await.json();
    let out = weft(p.path(), &["secrets", "rotate-key"]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let after = weft(p.path(), &["secrets", "list", "--json"]).await.json();
    assert_ne!(before[0]["key_id"], after[0]["key_id"]);
    let out = weft(p.path(), &["run", "leak", "--input", "{}", "--json"]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        server.seen("echo-headers").pop().unwrap().headers["authorization"],
        format!("Bearer {SECOND}")
    );

    // A wrong key stops the start and says which secret and which keys.
    let mut cmd = crate::hub::serve_command(p.path(), "127.0.0.1:0", &[]);
    cmd.env(
        "WEFT_MASTER_KEY",
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
    );
    let out = tokio::time::timeout(Duration::from_secs(60), cmd.output())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("the secret `API_TOKEN` was encrypted under master key"),
        "{stderr}"
    );

    let audit = weft(p.path(), &["audit", "--json"]).await.json();
    let actions: Vec<&str> = audit
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    for action in ["secret.create", "secret.update", "secret.rotate_key"] {
        assert!(actions.contains(&action), "{actions:?}");
    }
    let out = weft(p.path(), &["secrets", "rm", "API_TOKEN"]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let out = weft(p.path(), &["secrets", "rm", "API_TOKEN"]).await;
    assert_eq!(out.code, 2);
    // A connection whose secret is gone fails its step with a fatal error that says what to do.
    let out = weft(p.path(), &["run", "leak", "--input", "{}", "--json"]).await;
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stdout
            .contains("add it with `weft secrets set API_TOKEN`"),
        "{}",
        out.stdout
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admins_set_and_delete_secrets_through_the_api_and_nobody_reads_them_back() {
    let (server, addr) = weft_testkit::ScriptedServer::start().await;
    let p = Project::new(
        &format!(
            "connections:\n  api:\n    type: http\n    base_url: http://{addr}\n    allow_private_network: true\n    auth: {{ type: api_key, header: x-api-key, value: {{ secret: shop.key }} }}\n"
        ),
        &[(
            "call",
            "trigger: manual\nsteps:\n  - id: call\n    uses: api.request\n    with: { path: /echo-headers }\n",
        )],
    );
    let viewer = weft(
        p.path(),
        &["tokens", "create", "--role", "viewer", "--json"],
    )
    .await;
    let viewer = viewer.json()["token"].as_str().unwrap().to_string();
    let hub = Hub::start(p.path(), &[]).await;
    let url = |name: &str| format!("{}/api/secrets/{name}", hub.base);

    // A viewer may neither read the names nor write.
    for req in [
        hub.client.get(format!("{}/api/secrets", hub.base)),
        hub.client
            .put(url("shop.key"))
            .body(r#"{"value": "k-123456"}"#),
        hub.client.delete(url("shop.key")),
    ] {
        let resp = req.bearer_auth(&viewer).send().await.unwrap();
        assert_eq!(resp.status().as_u16(), 403);
    }
    // Bad names and bodies change nothing, and the error does not quote the value.
    let resp = hub
        .client
        .put(url("a b"))
        .body(r#"{"value": "k-123456"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    let resp = hub
        .client
        .put(url("shop.key"))
        .body(r#"{"value": "k-9876543", "extra": 1}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    let text = resp.text().await.unwrap();
    assert!(!text.contains("k-9876543"), "{text}");
    let resp = hub
        .client
        .put(url("shop.key"))
        .body(r#"{"value": 12345}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    assert!(!resp.text().await.unwrap().contains("12345"));
    let (_, listed) = hub.get("/api/secrets").await;
    assert_eq!(listed["secrets"], serde_json::json!([]));

    let resp = hub
        .client
        .put(url("shop.key"))
        .body(r#"{"value": "k-live-0042"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 201);
    let resp = hub
        .client
        .put(url("shop.key"))
        .body(r#"{"value": "k-live-0043"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let (_, listed) = hub.get("/api/secrets").await;
    assert_eq!(listed["secrets"][0]["name"], "shop.key");
    assert!(!listed.to_string().contains("k-live"), "{listed}");

    // The next call uses the new value at once.
    let (status, started) = hub
        .post_json("/api/workflows/call/runs", serde_json::json!({"input": {}}))
        .await;
    assert_eq!(status, 202, "{started}");
    hub.settle("call", Duration::from_secs(30)).await;
    assert_eq!(
        server.seen("echo-headers")[0].headers["x-api-key"],
        "k-live-0043"
    );

    let resp = hub.client.delete(url("shop.key")).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 204);
    let resp = hub.client.delete(url("shop.key")).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 404);
    let (_, audit) = hub.get("/api/audit").await;
    let audit = audit.to_string();
    assert!(
        audit.contains("secret.create") && audit.contains("secret.delete"),
        "{audit}"
    );
    assert!(!audit.contains("k-live"), "{audit}");
    hub.sigterm();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_in_conversation_state_child_runs_and_basic_auth_are_scrubbed_too() {
    let (server, addr) = weft_testkit::ScriptedServer::start().await;
    // `env:` hands the credential to expressions unscrubbed: every place that stores what an
    // expression made must scrub it.
    let p = Project::new(
        &format!(
            "env: [LEAKY]\nconnections:\n  api:\n    type: http\n    base_url: http://{addr}\n    allow_private_network: true\n    auth: {{ type: basic, username: bot, password: {{ secret: API_TOKEN }} }}\n"
        ),
        &[
            (
                "reflect",
                "trigger: manual\nsteps:\n  - id: keep\n    uses: state.set\n    with: { namespace: t, key: k, value: \"${{ .env.LEAKY }}\" }\n  - id: child\n    call: child\n    with: { v: \"${{ .env.LEAKY }}\" }\n  - id: basic\n    uses: api.request\n    with: { path: /echo-headers }\n",
            ),
            (
                "child",
                "trigger: manual\nsteps:\n  - id: echo\n    map: ${{ .input.v }}\n",
            ),
        ],
    );
    assert_eq!(set_secret(&p, "API_TOKEN", SECOND).await.code, 0);
    let mut cmd = command(p.path(), &["run", "reflect", "--json"]);
    cmd.env("LEAKY", SECOND);
    let out = cmd.output().await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    // The server got the real Basic credential and echoed it back.
    let seen = server.seen("echo-headers");
    let basic = seen[0].headers["authorization"].clone();
    assert!(basic.starts_with("Basic "), "{basic}");
    let encoded = basic.trim_start_matches("Basic ").to_string();
    assert!(stdout.contains("[secret basic auth]"), "{stdout}");
    for value in [SECOND, encoded.as_str()] {
        assert!(!stdout.contains(value), "{stdout}");
        assert!(
            !holds(&database_bytes(&p), value),
            "the database holds `{value}` in clear"
        );
    }
    let child = weft(p.path(), &["runs", "list", "--workflow", "child", "--json"]).await;
    assert!(
        child.stdout.contains("[secret API_TOKEN]"),
        "{}",
        child.stdout
    );
}
