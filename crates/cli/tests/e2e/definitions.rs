//! A connector written as data: a project's `connectors/` definition is linted with its steps,
//! and `weft run` calls its actions on a local server with the connection's credentials.

use serde_json::{Value, json};
use weft_testkit::{Answer, ScriptedServer};

use crate::support::Project;

const DEFINITION: &str = r#"connector: shop
summary: The shop's order API.
base_url: http://127.0.0.1:{port}
variables:
  port: { description: "The server's port" }
auth: [bearer]
actions:
  get_order:
    summary: Reads one order.
    method: GET
    path: /order-{id}
    inputs:
      id: { in: path, schema: { type: integer } }
      expand: { in: query, schema: { type: string, enum: [lines, customer] } }
    response: /order
"#;

fn project(port: u16, with: &str) -> Project {
    let p = Project::new(
        &format!(
            "connections:\n  shop:\n    type: shop\n    port: \"{port}\"\n    allow_private_network: true\n    auth: {{ type: bearer, token: {{ env: WEFT_TEST_OAUTH_SECRET }} }}\n"
        ),
        &[(
            "order",
            &format!(
                "trigger: manual\nsteps:\n  - id: order\n    uses: shop.get_order\n    with: {with}\noutput: ${{{{ .steps.order }}}}\n"
            ),
        )],
    );
    std::fs::create_dir(p.path().join("connectors")).unwrap();
    std::fs::write(p.path().join("connectors/shop.yaml"), DEFINITION).unwrap();
    p
}

#[tokio::test]
async fn a_defined_connector_is_linted_and_its_actions_run() {
    let (server, addr) = ScriptedServer::start().await;
    server.script(
        "order-42",
        vec![Answer::ok(json!({"order": {"id": 42, "total": 9.5}}))],
    );
    let p = project(addr.port(), "{ id: 42, expand: lines }");
    let out = p.weft(&["lint"]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let out = p.weft(&["run", "order", "--json"]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let run: Value = out.json();
    assert_eq!(run["state"], "succeeded", "{run}");
    assert_eq!(
        run["output"],
        json!({"id": 42, "total": 9.5}),
        "the part `response` names"
    );
    let seen = server.seen("order-42");
    assert_eq!(seen.len(), 1);
    assert_eq!(
        (seen[0].method.as_str(), seen[0].query.as_str()),
        ("GET", "expand=lines")
    );
    assert_eq!(seen[0].headers["authorization"], "Bearer s3cret");

    // Editors complete the project's actions and inputs, and check definitions.
    let out = p.weft(&["schema", "--project", "."]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let schema: Value = out.json();
    let step = &schema["$defs"]["step"];
    assert!(
        step["properties"]["uses"]["anyOf"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["const"] == "shop.get_order"),
        "{step}"
    );
    let out = p.weft(&["schema", "--connector"]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let validator = jsonschema::validator_for(&out.json()).unwrap();
    let definition = weft_core::yaml::parse(DEFINITION).unwrap().to_json();
    assert!(validator.is_valid(&definition));

    // A step that breaks the action's schema is found before anything runs.
    let bad = project(addr.port(), "{ id: \"x\", expand: line }");
    let out = bad.weft(&["lint"]).await;
    assert_eq!(out.code, 1, "{}", out.stderr);
    for expected in [
        "workflows/order.yaml:5:17: `with.id` must be a whole number, found a string",
        "workflows/order.yaml:5:30: `with.expand` must be one of \"lines\", \"customer\", found \"line\"; did you mean `lines`?",
    ] {
        assert!(
            out.stdout.contains(expected),
            "{expected}\nin:\n{}",
            out.stdout
        );
    }
    // And a definition with a problem names its file.
    std::fs::write(
        bad.path().join("connectors/shop.yaml"),
        DEFINITION.replace("method: GET", "method: FETCH"),
    )
    .unwrap();
    let out = bad.weft(&["lint"]).await;
    assert_eq!(out.code, 1);
    assert!(
        out.stdout.contains("connectors/shop.yaml:10:13: `method` must be one of GET, POST, PUT, PATCH, DELETE, HEAD, found `FETCH`"),
        "{}",
        out.stdout
    );
}

/// Slack's own OpenAPI document (trimmed), the importer's fixture.
fn slack_document() -> std::path::PathBuf {
    crate::support::repo_root().join("crates/core/tests/openapi/slack-web.openapi.json")
}

#[tokio::test]
async fn a_definition_imported_from_a_vendors_document_lints_and_runs() {
    let (server, addr) = ScriptedServer::start().await;
    server.script(
        "users.lookupByEmail",
        vec![Answer::ok(
            json!({"ok": true, "user": {"id": "U1", "name": "ada"}}),
        )],
    );
    let p = Project::new(
        &format!(
            "connections:\n  slack:\n    type: slack_web\n    base_url: http://{addr}\n    allow_private_network: true\n    auth: {{ type: bearer, token: {{ env: WEFT_TEST_OAUTH_SECRET }} }}\n"
        ),
        &[(
            "who",
            "trigger: manual\nsteps:\n  - id: user\n    uses: slack.users_lookup_by_email\n    with: { email: ada@example.com, token: t }\n",
        )],
    );
    std::fs::create_dir(p.path().join("connectors")).unwrap();
    let document = slack_document();
    let out = p
        .weft(&[
            "connectors",
            "import-openapi",
            document.to_str().unwrap(),
            "--name",
            "slack_web",
            "--out",
            "connectors/slack_web.yaml",
        ])
        .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("Made connector `slack_web` with 2 actions."),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("problem:"), "{}", out.stderr);

    let out = p.weft(&["lint"]).await;
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    let out = p.weft(&["connectors", "list"]).await;
    assert!(
        out.stdout
            .lines()
            .any(|l| l.starts_with("slack_web") && l.contains("connectors/")),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .lines()
            .any(|l| l.starts_with("http") && l.contains("built in")),
        "{}",
        out.stdout
    );
    let out = p.weft(&["connectors", "show", "slack_web"]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout.contains("slack_web.chat_post_message"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("    email (required) [query string]"),
        "{}",
        out.stdout
    );
    let out = p.weft(&["connectors", "show", "slack_wb"]).await;
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.contains("did you mean `slack_web`?"),
        "{}",
        out.stderr
    );

    let out = p.weft(&["run", "who", "--json"]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let run = out.json();
    assert_eq!(run["output"]["user"]["name"], "ada", "{run}");
    let seen = server.seen("users.lookupByEmail");
    assert_eq!(seen[0].query, "token=t&email=ada%40example.com");
    assert_eq!(seen[0].headers["authorization"], "Bearer s3cret");

    // Not an OpenAPI document: a clear refusal, nothing written.
    std::fs::write(p.path().join("nope.json"), "{\"hello\": 1}").unwrap();
    let out = p
        .weft(&[
            "connectors",
            "import-openapi",
            "nope.json",
            "--out",
            "connectors/nope.yaml",
        ])
        .await;
    assert_eq!(out.code, 2);
    assert!(
        out.stderr
            .contains("nope.json: this is not an OpenAPI document"),
        "{}",
        out.stderr
    );
    assert!(!p.path().join("connectors/nope.yaml").exists());
}

/// Prism, the spec-validating mock server `mocks/` installs (`npm ci` there; `.ci/run` does).
pub(crate) fn prism() -> Option<std::path::PathBuf> {
    let bin = crate::support::repo_root().join("mocks/node_modules/.bin/prism");
    if bin.exists() {
        return Some(bin);
    }
    if std::env::var("WEFT_REQUIRE_SERVICES").as_deref() == Ok("1") {
        panic!("{} is missing: run `npm ci` in mocks/", bin.display());
    }
    eprintln!("SKIPPED: Prism is not installed; run `npm ci` in mocks/");
    None
}

/// A Prism mock of one of the importer's vendor documents on a free loopback port, answering 422
/// to any request that breaks the document; stopped when dropped.
pub(crate) struct Mock {
    child: tokio::process::Child,
    pub(crate) port: u16,
}

impl Mock {
    pub(crate) async fn start(bin: &std::path::Path, document: &std::path::Path) -> Mock {
        let port = crate::support::free_port();
        let child = tokio::process::Command::new(bin)
            .args([
                "mock",
                "--errors",
                "-h",
                "127.0.0.1",
                "-p",
                &port.to_string(),
            ])
            .arg(document)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("prism starts");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            assert!(
                std::time::Instant::now() < deadline,
                "prism listens within a minute"
            );
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        Mock { child, port }
    }
}

impl Drop for Mock {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

#[tokio::test]
async fn imported_actions_pass_the_vendors_own_mock_and_a_broken_request_does_not() {
    let Some(bin) = prism() else { return };
    let openapi = crate::support::repo_root().join("crates/core/tests/openapi");
    let github = Mock::start(&bin, &openapi.join("github-issues.openapi.json")).await;
    let stripe = Mock::start(&bin, &openapi.join("stripe-core.openapi.json")).await;
    let p = Project::new(
        &format!(
            "connections:\n  github:\n    type: github_imported\n    base_url: http://127.0.0.1:{g}\n    allow_private_network: true\n    auth: {{ type: bearer, token: {{ env: WEFT_TEST_OAUTH_SECRET }} }}\n  stripe:\n    type: stripe_imported\n    base_url: http://127.0.0.1:{s}\n    allow_private_network: true\n    auth: {{ type: bearer, token: {{ env: WEFT_TEST_OAUTH_SECRET }} }}\n  gh:\n    type: github\n    base_url: http://127.0.0.1:{g}\n    allow_private_network: true\n    auth: {{ type: bearer, token: {{ env: WEFT_TEST_OAUTH_SECRET }} }}\n  pay:\n    type: stripe\n    base_url: http://127.0.0.1:{s}\n    allow_private_network: true\n    auth: {{ type: bearer, token: {{ env: WEFT_TEST_OAUTH_SECRET }} }}\n",
            g = github.port,
            s = stripe.port
        ),
        &[
            (
                "issue",
                "trigger: manual\nsteps:\n  - id: open\n    uses: github.issues_create\n    with:\n      owner: acme\n      repo: shop\n      title: ${{ .input.title }}\n      labels: ${{ .input.labels }}\n",
            ),
            (
                "refund",
                "trigger: manual\nsteps:\n  - id: refund\n    uses: stripe.post_refunds\n    with: { payment_intent: pi_123, amount: 500 }\n",
            ),
            // The built-in library's GitHub and Stripe, on the same documents.
            (
                "library",
                "trigger: manual\nsteps:\n  - id: issue\n    uses: gh.create_issue\n    with: { owner: acme, repo: shop, title: Late order, labels: [shop] }\n  - id: comment\n    uses: gh.create_comment\n    with: { owner: acme, repo: shop, issue_number: 7, body: Shipped }\n  - id: customer\n    uses: pay.create_customer\n    with: { email: ada@example.com, metadata: { crm: c-1 } }\n  - id: intent\n    uses: pay.create_payment_intent\n    with: { amount: 1999, currency: eur }\n  - id: refund\n    uses: pay.create_refund\n    with: { payment_intent: pi_123, amount: 500, reason: requested_by_customer }\n  - id: customers\n    uses: pay.list_customers\n    with: { limit: 3 }\n",
            ),
        ],
    );
    std::fs::create_dir(p.path().join("connectors")).unwrap();
    for (name, file) in [
        ("github_imported", "github-issues.openapi.json"),
        ("stripe_imported", "stripe-core.openapi.json"),
    ] {
        let document = openapi.join(file);
        let out = p
            .weft(&[
                "connectors",
                "import-openapi",
                document.to_str().unwrap(),
                "--name",
                name,
                "--out",
                &format!("connectors/{name}.yaml"),
            ])
            .await;
        assert_eq!(out.code, 0, "{}", out.stderr);
    }
    let out = p.weft(&["lint"]).await;
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);

    // Requests the vendor's document accepts: a JSON body, a form body.
    let out = p
        .weft(&[
            "run",
            "issue",
            "--json",
            "--input",
            r#"{"title": "Late order", "labels": ["shop"]}"#,
        ])
        .await;
    let run = out.json();
    assert_eq!(run["state"], "succeeded", "{run}");
    let out = p.weft(&["run", "refund", "--json"]).await;
    let run = out.json();
    assert_eq!(run["state"], "succeeded", "{run}");

    let out = p.weft(&["run", "library", "--json"]).await;
    let run = out.json();
    assert_eq!(run["state"], "succeeded", "{run}");

    // One it refuses (labels must be a list): the mock answers 422 and the step fails.
    let out = p
        .weft(&[
            "run",
            "issue",
            "--json",
            "--input",
            r#"{"title": "Late order", "labels": "shop"}"#,
        ])
        .await;
    let run = out.json();
    assert_eq!(run["state"], "failed", "{run}");
    assert_eq!(run["steps"][0]["error"]["details"]["status"], 422, "{run}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_keeps_the_definition_it_started_with_when_the_definition_changes() {
    use crate::hub::{Hub, serve_command};
    let (server, addr) = ScriptedServer::start().await;
    server.script("old-path", vec![Answer::ok(json!({"order": "old"}))]);
    server.script("new-path", vec![Answer::ok(json!({"order": "new"}))]);
    let definition = |path: &str| {
        format!(
            "connector: shop\nsummary: s\nbase_url: http://{addr}\nactions:\n  get:\n    summary: s\n    method: GET\n    path: /{path}\n    response: /order\n"
        )
    };
    let p = Project::new(
        "connections:\n  shop: { type: shop, allow_private_network: true }\n",
        &[(
            "later",
            "trigger: manual\nsteps:\n  - id: pause\n    wait: 4s\n  - id: get\n    uses: shop.get\noutput: ${{ .steps.get }}\n",
        )],
    );
    std::fs::create_dir(p.path().join("connectors")).unwrap();
    std::fs::write(
        p.path().join("connectors/shop.yaml"),
        definition("old-path"),
    )
    .unwrap();
    let hub = Hub::start_command(serve_command(p.path(), "127.0.0.1:0", &["--watch"])).await;
    let (_, before) = hub.get("/api/workflows/later").await;
    let first = hub.start_run("later", json!({})).await;
    // The definition changes while the first run waits; the hub reloads it.
    std::fs::write(
        p.path().join("connectors/shop.yaml"),
        definition("new-path"),
    )
    .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        let (_, now) = hub.get("/api/workflows/later").await;
        if now["version"] != before["version"] {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the hub reloads the changed definition"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let second = hub.start_run("later", json!({})).await;
    let first = hub.until_state_any(&first, &["succeeded", "failed"]).await;
    let second = hub.until_state_any(&second, &["succeeded", "failed"]).await;
    assert_eq!(
        first["output"], "old",
        "the run started on the old definition: {first}"
    );
    assert_eq!(
        second["output"], "new",
        "a new run is on the new one: {second}"
    );
    assert_ne!(first["version"], second["version"]);

    // Across a restart too: a run waiting on the new definition when it changes back and the hub
    // stops, resumed by the next hub, which loaded the changed one.
    let third = hub.start_run("later", json!({})).await;
    std::fs::write(
        p.path().join("connectors/shop.yaml"),
        definition("old-path"),
    )
    .unwrap();
    let mut hub = hub;
    hub.sigterm();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(30), hub.child.wait()).await;
    let hub = Hub::start(p.path(), &[]).await;
    let third = hub.until_state_any(&third, &["succeeded", "failed"]).await;
    assert_eq!(
        third["output"], "new",
        "resumed on the definition it started with: {third}"
    );
    assert_eq!(server.seen("new-path").len(), 2);
}
