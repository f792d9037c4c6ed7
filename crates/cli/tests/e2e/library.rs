//! The built-in library against its vendors' own API documents: for each connector, a Prism mock
//! of the vendor's OpenAPI document (which answers 422 to any request that breaks it) and one
//! workflow, from `crates/cli/tests/library/<connector>.yaml`, whose steps use every action of
//! the connector; the run must succeed.

use serde_json::{Value, json};
use weft_core::Spec;

use crate::definitions::{Mock, prism};
use crate::support::{Project, repo_root};

/// A check file: the document the mock serves, the connection's settings, the steps.
struct Check {
    connector: String,
    document: String,
    connection: Value,
    steps: Value,
}

fn checks() -> Vec<Check> {
    let dir = repo_root().join("crates/cli/tests/library");
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        let json = weft_core::yaml::parse(&text)
            .unwrap_or_else(|e| panic!("{}: {e:?}", path.display()))
            .to_json();
        out.push(Check {
            connector: path.file_stem().unwrap().to_string_lossy().into_owned(),
            document: json["document"].as_str().expect("document").to_string(),
            connection: json["connection"].clone(),
            steps: json["steps"].clone(),
        });
    }
    out.sort_by(|a, b| a.connector.cmp(&b.connector));
    out
}

#[test]
fn every_library_connector_has_a_check_that_uses_every_action() {
    let catalog = weft_connectors::catalog();
    let checks = checks();
    for (file, _) in weft_connectors::library::FILES {
        let name = file.trim_end_matches(".yaml");
        if matches!(name, "github" | "stripe") {
            // Checked with the importer's documents in `definitions.rs`.
            continue;
        }
        if name == "slack" {
            // The only machine-readable Slack document (APIs.guru's) describes form bodies and a
            // `token` header, older than the JSON bodies and bearer token the Web API takes now;
            // `errors` is checked against a local server in the connectors' tests.
            continue;
        }
        let check = checks
            .iter()
            .find(|c| c.connector == name)
            .unwrap_or_else(|| panic!("crates/cli/tests/library/{name}.yaml checks {name}"));
        let Some(Spec::Defined(def)) = catalog.get(name) else {
            panic!("{name} is in the catalog")
        };
        let used: Vec<&str> = check
            .steps
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|s| s["uses"].as_str())
            .filter_map(|u| u.strip_prefix("app."))
            .collect();
        for action in &def.actions {
            assert!(
                used.contains(&action.name.as_str()),
                "{name}.{} is used by a step of its check",
                action.name
            );
        }
    }
}

#[tokio::test]
async fn every_library_connector_passes_its_vendors_mock() {
    let Some(bin) = prism() else { return };
    let openapi = repo_root().join("crates/core/tests/openapi");
    for check in checks() {
        let mock = Mock::start(&bin, &openapi.join(&check.document)).await;
        let mut connection = check.connection.clone();
        connection["type"] = json!(check.connector);
        connection["base_url"] = json!(format!("http://127.0.0.1:{}", mock.port));
        connection["allow_private_network"] = json!(true);
        // JSON is YAML: the files are written as JSON.
        let weft_yaml = json!({ "connections": { "app": connection } }).to_string();
        let workflow = json!({ "trigger": "manual", "steps": check.steps }).to_string();
        let p = Project::new(&weft_yaml, &[("check", &workflow)]);
        let out = p.weft(&["lint"]).await;
        assert_eq!(
            out.code, 0,
            "{}: {}{}",
            check.connector, out.stdout, out.stderr
        );
        let out = p.weft(&["run", "check", "--json"]).await;
        let run = out.json();
        assert_eq!(
            run["state"], "succeeded",
            "{} against {}: {run:#}",
            check.connector, check.document
        );
    }
}

#[tokio::test]
async fn the_catalogue_pages_in_the_repository_are_the_generated_ones() {
    let dir = tempfile::tempdir().unwrap();
    let out = crate::support::weft(
        dir.path(),
        &[
            "connectors",
            "docs",
            "--out",
            dir.path().join("pages").to_str().unwrap(),
        ],
    )
    .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let committed = repo_root().join("docs/connectors");
    let mut stale = Vec::new();
    for entry in std::fs::read_dir(dir.path().join("pages")).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_owned();
        let fresh = std::fs::read_to_string(&path).unwrap();
        if std::fs::read_to_string(committed.join(&name))
            .ok()
            .as_deref()
            != Some(fresh.as_str())
        {
            stale.push(name.to_string_lossy().into_owned());
        }
    }
    let generated = std::fs::read_dir(dir.path().join("pages")).unwrap().count();
    let kept = std::fs::read_dir(&committed).unwrap().count();
    assert!(
        stale.is_empty() && generated == kept,
        "docs/connectors is out of date ({stale:?}, {kept} files for {generated}): run `weft connectors docs --out docs/connectors`"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_served_workflow_subscribes_its_vendor_webhook_and_unsubscribes_when_it_goes() {
    use crate::hub::{Hub, serve_command};
    use weft_testkit::{Answer, ScriptedServer};
    let (shop, addr) = ScriptedServer::start().await;
    shop.script(
        "webhooks.json",
        vec![Answer {
            status: 201,
            ..Answer::ok(json!({"webhook": {"id": 4759306, "topic": "orders/create", "address": "https://hub.acme.example/hooks/shopify/orders"}}))
        }],
    );
    shop.script("webhooks/4759306.json", vec![Answer::ok(json!({}))]);
    let p = Project::new(
        &format!(
            "connections:\n  shop:\n    type: shopify\n    shop: acme\n    base_url: http://{addr}\n    allow_private_network: true\n    auth: {{ type: api_key, value: {{ env: E2E_SECRET }} }}\n    webhook_secret: {{ env: E2E_SECRET }}\n"
        ),
        &[(
            "orders",
            "trigger:\n  webhook: { uses: shop.order_created, path: shopify/orders }\nsteps:\n  - id: echo\n    map: ${{ .input }}\n",
        )],
    );
    let start = || {
        let mut cmd = serve_command(p.path(), "127.0.0.1:0", &["--watch"]);
        cmd.env("WEFT_PUBLIC_URL", "https://hub.acme.example/");
        Hub::start_command(cmd)
    };
    let until = |name: &'static str, n: usize| {
        let shop = shop.clone();
        async move {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
            while shop.seen(name).len() < n {
                assert!(
                    std::time::Instant::now() < deadline,
                    "{name} was called {n} times"
                );
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    };
    let hub = start().await;
    until("webhooks.json", 1).await;
    let call = &shop.seen("webhooks.json")[0];
    assert_eq!(call.method, "POST");
    assert_eq!(
        call.body,
        json!({"webhook": {"topic": "orders/create", "address": "https://hub.acme.example/hooks/shopify/orders", "format": "json"}})
    );
    assert_eq!(call.headers["x-shopify-access-token"], crate::hub::SECRET);
    // Audited once recorded (so that a restart knows it): wait for that.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let (status, audit) = hub.get("/api/audit").await;
        assert_eq!(status, 200);
        if audit.to_string().contains("webhook.subscribe") {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "audited: {audit}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }

    // A restart finds it registered: no second subscription.
    hub.sigterm();
    drop(hub);
    let hub = start().await;
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    assert_eq!(shop.seen("webhooks.json").len(), 1, "registered once");

    // The workflow goes: its subscription is removed.
    std::fs::remove_file(p.path().join("workflows/orders.yaml")).unwrap();
    until("webhooks/4759306.json", 1).await;
    assert_eq!(shop.seen("webhooks/4759306.json")[0].method, "DELETE");
    drop(hub);
}
