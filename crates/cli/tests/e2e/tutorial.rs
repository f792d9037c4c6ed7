//! The README's tutorial, tried as a new user would: `examples/shop-to-crm` with its connections
//! pointed at mock servers (Prism mocks of HubSpot's and Zendesk's documents, which refuse a request
//! that breaks them, and a local server answering as Slack's Web API does), its secrets set with
//! `weft secrets set`, and a signed Shopify order webhook sent to `weft serve`.

use std::process::Stdio;

use base64::Engine as _;
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;
use weft_testkit::{Answer, ScriptedServer};

use crate::definitions::{Mock, prism};
use crate::hub::Hub;
use crate::support::{command, copy_dir, repo_root};

const WEBHOOK_SECRET: &str = "shpss_tutorial_webhook_secret";

async fn set_secret(dir: &std::path::Path, name: &str, value: &str) {
    let mut child = command(dir, &["secrets", "set", name])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(value.as_bytes()).await.unwrap();
    drop(stdin);
    let out = child.wait_with_output().await.unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_tutorial_works_against_the_mocks() {
    let Some(bin) = prism() else { return };
    let openapi = repo_root().join("crates/core/tests/openapi");
    let hubspot = Mock::start(&bin, &openapi.join("hubspot-crm.openapi.json")).await;
    let zendesk = Mock::start(&bin, &openapi.join("zendesk-support.openapi.json")).await;
    let (slack, slack_addr) = ScriptedServer::start().await;
    slack.script(
        "chat.postMessage",
        vec![Answer::ok(
            json!({"ok": true, "channel": "C024BE91L", "ts": "1733580000.000300"}),
        )],
    );

    let dir = tempfile::tempdir().unwrap();
    copy_dir(&repo_root().join("examples/shop-to-crm"), dir.path());
    // As the README says: each connection pointed at its mock.
    let yaml = std::fs::read_to_string(dir.path().join("weft.yaml")).unwrap();
    let mut pointed = String::new();
    for line in yaml.lines() {
        pointed.push_str(line);
        pointed.push('\n');
        let port = match line.trim() {
            "type: hubspot" => Some(hubspot.port),
            "type: zendesk" => Some(zendesk.port),
            "type: slack" => Some(slack_addr.port()),
            _ => None,
        };
        if let Some(port) = port {
            pointed.push_str(&format!(
                "    base_url: http://127.0.0.1:{port}\n    allow_private_network: true\n"
            ));
        }
    }
    std::fs::write(dir.path().join("weft.yaml"), pointed).unwrap();
    for (name, value) in [
        ("SHOPIFY_TOKEN", "shpat_tutorial"),
        ("SHOPIFY_WEBHOOK_SECRET", WEBHOOK_SECRET),
        ("HUBSPOT_TOKEN", "pat-tutorial"),
        ("ZENDESK_API_TOKEN", "zd-tutorial"),
        ("SLACK_BOT_TOKEN", "xoxb-tutorial"),
    ] {
        set_secret(dir.path(), name, value).await;
    }
    let out = crate::support::weft(dir.path(), &["lint"]).await;
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    let out = crate::support::weft(dir.path(), &["test"]).await;
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);

    let hub = Hub::start(dir.path(), &[]).await;
    // "Test connection" works for the library's connections too: HubSpot's mock answers.
    let (status, tested) = hub.post_json("/api/connections/crm/test", json!({})).await;
    assert_eq!(status, 200, "{tested}");
    assert_eq!(tested["ok"], true, "{tested}");
    let order = json!({
        "id": 820982911946154508u64, "name": "#1002", "total_price": "1250.00", "currency": "EUR",
        "line_items": [{"sku": "DESK-1", "quantity": 5}],
        "customer": {"email": "grace@example.com", "first_name": "Grace", "last_name": "Hopper"}
    })
    .to_string();
    let hmac = weft_core::signature::hmac_sha256(WEBHOOK_SECRET.as_bytes(), &[order.as_bytes()]);
    let signed = vec![
        ("X-Shopify-Topic", "orders/create".to_string()),
        (
            "X-Shopify-Webhook-Id",
            "b54557e4-bdd9-4b37-8a5f-bf7d70bcd043".to_string(),
        ),
        (
            "X-Shopify-Hmac-Sha256",
            base64::engine::general_purpose::STANDARD.encode(hmac),
        ),
    ];
    let (status, unsigned) = hub.post_hook("shopify/orders", &[], &order).await;
    assert_eq!(status, 401, "{unsigned}");
    let (status, accepted) = hub.post_hook("shopify/orders", &signed, &order).await;
    assert_eq!(status, 202, "{accepted}");
    let run = hub
        .until_state_any(
            accepted["run_id"].as_str().unwrap(),
            &["succeeded", "failed"],
        )
        .await;
    assert_eq!(run["state"], "succeeded", "{run:#}");
    assert!(!run["output"]["contact"].is_null(), "{run:#}");
    assert!(
        run["output"]["ticket"].is_number(),
        "a large order has a ticket: {run:#}"
    );
    assert_eq!(run["output"]["message"], "1733580000.000300");
    let posted: Vec<Value> = slack
        .seen("chat.postMessage")
        .iter()
        .map(|s| s.body.clone())
        .collect();
    assert_eq!(posted.len(), 1, "{posted:?}");
    assert_eq!(posted[0]["channel"], "#orders");
    assert!(
        posted[0]["text"]
            .as_str()
            .unwrap()
            .contains("Zendesk ticket"),
        "{posted:?}"
    );
    assert_eq!(
        slack.seen("chat.postMessage")[0].headers["authorization"],
        "Bearer xoxb-tutorial"
    );
}
