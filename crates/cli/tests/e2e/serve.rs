//! `weft serve` as a process: signed webhooks for every preset, SIGKILL and SIGTERM under a stream
//! of webhooks, schedules across a restart, the REST API against its OpenAPI document, metrics,
//! and reloading a changed project.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{Value, json};
use weft_core::signature::{hex_encode, hmac_sha256, standard_webhooks_sign};

use crate::hub::{Hub, SECRET, WHSEC};
use crate::support::Project;

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn hook(preset: &str, extra: &str) -> String {
    let secret = if preset == "standard-webhooks" {
        "E2E_WHSEC"
    } else {
        "E2E_SECRET"
    };
    format!(
        "trigger:\n  webhook:\n    signature: {{ preset: {preset}, secret: {{ env: {secret} }}{extra} }}\nsteps:\n  - id: echo\n    map: ${{{{ .input }}}}\n"
    )
}

/// Headers signing `body` for `preset` at time `ts`, with delivery id `id`.
fn sign(preset: &str, body: &str, ts: i64, id: &str) -> Vec<(&'static str, String)> {
    let mac = |parts: &[&[u8]]| hmac_sha256(SECRET.as_bytes(), parts);
    let b64 = |bytes: Vec<u8>| base64::engine::general_purpose::STANDARD.encode(bytes);
    match preset {
        "standard-webhooks" => vec![
            ("webhook-id", id.to_string()),
            ("webhook-timestamp", ts.to_string()),
            (
                "webhook-signature",
                standard_webhooks_sign(WHSEC, id, ts, body.as_bytes()).unwrap(),
            ),
        ],
        "github" => vec![
            ("X-GitHub-Delivery", id.to_string()),
            (
                "X-Hub-Signature-256",
                format!("sha256={}", hex_encode(&mac(&[body.as_bytes()]))),
            ),
        ],
        "stripe" => {
            let t = ts.to_string();
            let sig = hex_encode(&mac(&[t.as_bytes(), b".", body.as_bytes()]));
            vec![("Stripe-Signature", format!("t={t},v1={sig}"))]
        }
        "shopify" => vec![
            ("X-Shopify-Webhook-Id", id.to_string()),
            ("X-Shopify-Hmac-Sha256", b64(mac(&[body.as_bytes()]))),
        ],
        "slack" => {
            let t = ts.to_string();
            let sig = hex_encode(&mac(&[b"v0:", t.as_bytes(), b":", body.as_bytes()]));
            vec![
                ("X-Slack-Request-Timestamp", t),
                ("X-Slack-Signature", format!("v0={sig}")),
            ]
        }
        "zendesk" => {
            let t = jiff::Timestamp::from_second(ts).unwrap().to_string();
            let sig = b64(mac(&[t.as_bytes(), body.as_bytes()]));
            vec![
                ("X-Zendesk-Webhook-Invocation-Id", id.to_string()),
                ("X-Zendesk-Webhook-Signature-Timestamp", t),
                ("X-Zendesk-Webhook-Signature", sig),
            ]
        }
        "hmac" => vec![
            ("X-Delivery", id.to_string()),
            ("X-Sig", format!("sha256={}", b64(mac(&[body.as_bytes()])))),
        ],
        other => panic!("no preset {other}"),
    }
}

/// The issue's check: signed webhooks for each preset — valid, tampered, expired, replayed — get
/// the right status codes, and exactly the valid ones (once each) become runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_webhooks_of_every_preset() {
    let presets = weft_core::trigger::PRESETS;
    let workflows: Vec<(String, String)> = presets
        .iter()
        .map(|p| {
            let extra = if *p == "hmac" {
                ", header: X-Sig, prefix: 'sha256=', encoding: base64"
            } else {
                ""
            };
            let mut text = hook(p, extra);
            if *p == "hmac" {
                text = text.replace("    signature:", "    dedupe: X-Delivery\n    signature:");
            }
            (p.replace('-', "_"), text)
        })
        .collect();
    let refs: Vec<(&str, &str)> = workflows
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    let p = Project::new("name: hooks\n", &refs);
    let hub = Hub::start(p.path(), &[]).await;

    for preset in presets {
        let path = preset.replace('-', "_");
        let body = format!(r#"{{"id": "evt-{preset}", "event_id": "evt-{preset}", "n": 1}}"#);
        let ts = now();
        let headers = sign(preset, &body, ts, &format!("msg-{preset}"));

        let (status, first) = hub.post_hook(&path, &headers, &body).await;
        assert_eq!(status, 202, "{preset}: valid: {first}");
        assert_eq!(first["duplicate"], false, "{preset}");

        let tampered = body.replace("\"n\": 1", "\"n\": 2");
        let (status, err) = hub.post_hook(&path, &headers, &tampered).await;
        assert_eq!(status, 401, "{preset}: tampered: {err}");
        assert_eq!(err["error"]["code"], "bad_signature", "{preset}");

        let (status, err) = hub.post_hook(&path, &[], &body).await;
        assert_eq!(status, 401, "{preset}: unsigned: {err}");
        assert!(
            err["error"]["message"]
                .as_str()
                .unwrap()
                .contains("missing"),
            "{preset}: {err}"
        );

        if ["standard-webhooks", "stripe", "slack", "zendesk"].contains(preset) {
            let old = sign(preset, &body, ts - 3600, &format!("msg-{preset}-old"));
            let (status, err) = hub.post_hook(&path, &old, &body).await;
            assert_eq!(status, 401, "{preset}: expired: {err}");
            assert!(
                err["error"]["message"]
                    .as_str()
                    .unwrap()
                    .contains("tolerance"),
                "{preset}: {err}"
            );
        }

        // The sender retries the same delivery (re-signed, as senders do): no second run.
        let again = sign(preset, &body, now(), &format!("msg-{preset}"));
        let (status, second) = hub.post_hook(&path, &again, &body).await;
        assert_eq!(status, 202, "{preset}: replayed: {second}");
        assert_eq!(second["duplicate"], true, "{preset}: {second}");
        assert_eq!(second["run_id"], first["run_id"], "{preset}");
    }
    for preset in presets {
        let runs = hub
            .settle(&preset.replace('-', "_"), Duration::from_secs(30))
            .await;
        assert_eq!(runs.len(), 1, "{preset}: {runs:?}");
        assert_eq!(runs[0]["state"], "succeeded", "{preset}");
        assert_eq!(runs[0]["output"]["n"], 1, "{preset}");
        assert_eq!(runs[0]["trigger"]["type"], "webhook");
    }

    // Metrics count exactly what was sent: one accepted, duplicate, tampered and unsigned delivery
    // per preset, and an expired one per timestamped preset.
    let metrics = parse_metrics(&hub.text("/metrics").await);
    let sum = |outcome: &str| -> f64 {
        metrics
            .iter()
            .filter(|(name, labels, _)| {
                name == "weft_webhooks_total"
                    && labels.get("outcome").map(String::as_str) == Some(outcome)
            })
            .map(|(_, _, v)| v)
            .sum()
    };
    let n = presets.len() as f64;
    assert_eq!(sum("accepted"), n);
    assert_eq!(sum("duplicate"), n);
    assert_eq!(sum("signature_mismatch"), n);
    assert_eq!(sum("signature_missing"), n);
    assert_eq!(sum("signature_expired"), 4.0);
    let started: f64 = metrics
        .iter()
        .filter(|(n, l, _)| n == "weft_runs_started_total" && l["trigger"] == "webhook")
        .map(|(_, _, v)| v)
        .sum();
    assert_eq!(started, n);
}

/// Prometheus text as (name, labels, value); panics on a line that does not parse.
fn parse_metrics(text: &str) -> Vec<(String, HashMap<String, String>, f64)> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (series, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("bad line {line}"));
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("bad value in {line}"));
        let (name, labels) = match series.split_once('{') {
            Some((name, rest)) => {
                let rest = rest
                    .strip_suffix('}')
                    .unwrap_or_else(|| panic!("bad labels in {line}"));
                let mut labels = HashMap::new();
                for pair in rest.split("\",").filter(|p| !p.is_empty()) {
                    let (k, v) = pair
                        .split_once("=\"")
                        .unwrap_or_else(|| panic!("bad label in {line}"));
                    labels.insert(k.to_string(), v.trim_end_matches('"').to_string());
                }
                (name.to_string(), labels)
            }
            None => (series.to_string(), HashMap::new()),
        };
        assert!(
            name.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "bad metric name in {line}"
        );
        out.push((name, labels, value));
    }
    out
}

const STREAM: &str = r#"
trigger:
  webhook:
    path: events
    dedupe: X-Event-Id
steps:
  - id: pause
    wait: { for: 50ms }
  - id: echo
    map: ${{ .input.n }}
"#;

/// Sends numbered events, four at a time, until `stop` is set; returns each event's outcome:
/// `Some(status)` or `None` when the connection failed.
async fn stream(
    base: String,
    stop: tokio::sync::watch::Receiver<bool>,
) -> BTreeMap<u32, Option<u16>> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let mut outcomes = BTreeMap::new();
    let mut n = 0u32;
    while !*stop.borrow() && n < 5000 {
        let mut batch = Vec::new();
        for _ in 0..4 {
            n += 1;
            let client = client.clone();
            let base = base.clone();
            batch.push(tokio::spawn(async move {
                let r = client
                    .post(format!("{base}/hooks/events"))
                    .header("content-type", "application/json")
                    .header("X-Event-Id", format!("e{n}"))
                    .body(format!(r#"{{"n": {n}}}"#))
                    .send()
                    .await;
                (n, r.ok().map(|r| r.status().as_u16()))
            }));
        }
        for b in batch {
            let (n, status) = b.await.unwrap();
            outcomes.insert(n, status);
        }
    }
    outcomes
}

/// Checks the promise after a crash or shutdown: every event answered 2xx became exactly one run
/// that completed; no event answered with an error did; an event whose answer was lost became at
/// most one run.
fn check_no_loss(outcomes: &BTreeMap<u32, Option<u16>>, runs: &[Value]) {
    let mut by_event: HashMap<u64, Vec<&Value>> = HashMap::new();
    for r in runs {
        by_event
            .entry(r["input"]["n"].as_u64().unwrap())
            .or_default()
            .push(r);
    }
    let mut accepted = 0;
    for (n, outcome) in outcomes {
        let found = by_event.get(&u64::from(*n)).map_or(0, Vec::len);
        match outcome {
            Some(s) if (200..300).contains(s) => {
                accepted += 1;
                assert_eq!(found, 1, "event {n} was accepted but has {found} runs");
                assert_eq!(
                    by_event[&u64::from(*n)][0]["state"],
                    "succeeded",
                    "event {n}"
                );
            }
            Some(s) => assert_eq!(found, 0, "event {n} got {s} but has a run"),
            None => assert!(found <= 1, "event {n} has {found} runs"),
        }
    }
    assert!(accepted > 20, "too few events were accepted: {accepted}");
}

/// The issue's check: under a steady stream of webhooks the server is killed with SIGKILL and
/// restarted; every event that got a 2xx becomes exactly one run that completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_under_a_stream_of_webhooks_loses_no_accepted_event() {
    let p = Project::new("name: stream\n", &[("events", STREAM)]);
    let mut hub = Hub::start(p.path(), &[]).await;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let sender = tokio::spawn(stream(hub.base.clone(), stop_rx));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    hub.child.start_kill().unwrap(); // SIGKILL, mid-stream
    let _ = hub.child.wait().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let _ = stop_tx.send(true);
    let outcomes = sender.await.unwrap();

    let hub = Hub::start(p.path(), &[]).await;
    let runs = hub.settle("events", Duration::from_secs(120)).await;
    check_no_loss(&outcomes, &runs);
}

/// The issue's check: SIGTERM during load: the process exits within its bound, and after a
/// restart nothing accepted is missing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_exits_in_time_and_keeps_everything_accepted() {
    let p = Project::new("name: stream\n", &[("events", STREAM)]);
    let mut hub = Hub::start(p.path(), &["--shutdown-timeout", "3s"]).await;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let sender = tokio::spawn(stream(hub.base.clone(), stop_rx));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let asked = Instant::now();
    hub.sigterm();
    let status = tokio::time::timeout(Duration::from_secs(10), hub.child.wait())
        .await
        .expect("weft serve exits within its bound after SIGTERM")
        .unwrap();
    let took = asked.elapsed();
    assert!(status.success(), "{status:?}");
    assert!(took < Duration::from_secs(5), "shutdown took {took:?}");
    let _ = stop_tx.send(true);
    let outcomes = sender.await.unwrap();

    let hub = Hub::start(p.path(), &[]).await;
    let runs = hub.settle("events", Duration::from_secs(120)).await;
    check_no_loss(&outcomes, &runs);
}

/// The issue's check: a schedule due every second, across a restart, fires once per slot: no
/// duplicate slot, and the slots missed while the hub was down are run once (`missed: once`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schedule_fires_once_per_slot_across_a_restart() {
    let tick = "trigger:\n  schedule: { cron: '* * * * * *', missed: once }\nsteps:\n  - id: at\n    map: ${{ .input.slot }}\n";
    let p = Project::new("name: ticks\n", &[("tick", tick)]);
    let mut hub = Hub::start(p.path(), &[]).await;
    tokio::time::sleep(Duration::from_millis(3500)).await;
    hub.child.start_kill().unwrap();
    let _ = hub.child.wait().await;
    let down_from = now();
    tokio::time::sleep(Duration::from_millis(3000)).await;
    let down_to = now();
    let hub = Hub::start(p.path(), &[]).await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let runs = hub.settle("tick", Duration::from_secs(30)).await;

    let mut slots: Vec<i64> = runs
        .iter()
        .map(|r| {
            let text = r["trigger"]["slot"].as_str().unwrap();
            text.parse::<jiff::Timestamp>().unwrap().as_second()
        })
        .collect();
    slots.sort();
    let distinct: std::collections::BTreeSet<i64> = slots.iter().copied().collect();
    assert_eq!(distinct.len(), slots.len(), "a slot fired twice: {slots:?}");
    assert!(runs.iter().all(|r| r["state"] == "succeeded"));
    // While the hub was down no slot fired, except the one `missed: once` runs for at restart.
    let in_gap: Vec<i64> = slots
        .iter()
        .copied()
        .filter(|s| *s > down_from + 1 && *s < down_to - 1)
        .collect();
    assert!(
        in_gap.len() <= 1,
        "slots in the downtime: {in_gap:?} of {slots:?}"
    );
    // Outside the gap, consecutive slots are one second apart: nothing skipped while running.
    let before: Vec<i64> = slots.iter().copied().filter(|s| *s <= down_from).collect();
    assert!(before.len() >= 2, "{slots:?}");
    assert!(before.windows(2).all(|w| w[1] - w[0] == 1), "{before:?}");
    let after: Vec<i64> = slots.iter().copied().filter(|s| *s >= down_to).collect();
    assert!(after.len() >= 2, "{slots:?}");
    assert!(after.windows(2).all(|w| w[1] - w[0] == 1), "{after:?}");
}

/// A poll starts one run per new item, never two for an item seen again, commits its cursor with
/// the runs, leaves the cursor alone when a poll fails, and goes on from it after a SIGKILL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poll_runs_each_item_once_and_keeps_its_cursor_across_a_restart() {
    let (server, addr) = weft_testkit::ScriptedServer::start().await;
    let page =
        |items: Value, next: Value| weft_testkit::Answer::ok(json!({"items": items, "next": next}));
    server.script(
        "feed",
        vec![
            page(
                json!([{"id": 1, "v": "a"}, {"id": 2, "v": "b"}]),
                json!("c2"),
            ),
            // Overlaps the first page: item 2 must not run again.
            page(
                json!([{"id": 2, "v": "b"}, {"id": 3, "v": "c"}]),
                json!("c3"),
            ),
            // A failing poll commits nothing and keeps the cursor.
            weft_testkit::Answer::status(503),
            // No next cursor: the last one stays.
            page(json!([]), Value::Null),
        ],
    );
    let feed = "trigger:\n  poll:\n    every: 1s\n    uses: api.request\n    with: { path: /feed, query: { after: '${{ .cursor // \"start\" }}' } }\n    items: ${{ .response.body.items }}\n    key: ${{ .item.id }}\n    cursor: ${{ .response.body.next }}\nsteps:\n  - id: value\n    map: ${{ .input.v }}\n";
    let p = Project::with_api(addr, &[("feed", feed)]);
    let mut hub = Hub::start(p.path(), &[]).await;
    assert!(
        server.wait_for("feed", 4, Duration::from_secs(30)).await,
        "four polls within 30s"
    );
    let runs = hub.settle("feed", Duration::from_secs(30)).await;
    hub.child.start_kill().unwrap();
    let _ = hub.child.wait().await;

    let mut values: Vec<(String, String)> = runs
        .iter()
        .map(|r| {
            assert_eq!(r["state"], "succeeded", "{r}");
            assert_eq!(r["trigger"]["type"], "poll");
            (
                r["trigger"]["key"].as_str().unwrap().to_string(),
                r["output"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    values.sort();
    assert_eq!(
        values,
        vec![
            ("1".to_string(), "a".to_string()),
            ("2".to_string(), "b".to_string()),
            ("3".to_string(), "c".to_string())
        ]
    );
    let queries: Vec<String> = server
        .seen("feed")
        .iter()
        .map(|s| s.query.clone())
        .collect();
    assert_eq!(
        &queries[..4],
        ["after=start", "after=c2", "after=c3", "after=c3"],
        "each poll asks from the last committed cursor"
    );

    // After a SIGKILL the poll goes on from the committed cursor and starts nothing twice.
    let before = server.seen("feed").len();
    server.script(
        "feed",
        vec![page(
            json!([{"id": 3, "v": "c"}, {"id": 4, "v": "d"}]),
            json!("c4"),
        )],
    );
    let hub = Hub::start(p.path(), &[]).await;
    assert!(
        server
            .wait_for("feed", before + 2, Duration::from_secs(30))
            .await
    );
    let runs = hub.settle("feed", Duration::from_secs(30)).await;
    let mut keys: Vec<String> = runs
        .iter()
        .map(|r| r["trigger"]["key"].as_str().unwrap().to_string())
        .collect();
    keys.sort();
    assert_eq!(keys, ["1", "2", "3", "4"]);
    let queries: Vec<String> = server
        .seen("feed")
        .iter()
        .map(|s| s.query.clone())
        .collect();
    assert_eq!(queries[before], "after=c3", "{queries:?}");
    assert_eq!(queries[before + 1], "after=c4", "{queries:?}");
    let metrics = hub.text("/metrics").await;
    assert!(
        metrics.contains("weft_poll_items_total{workflow=\"feed\",outcome=\"new\"}"),
        "{metrics}"
    );
}

/// JSON log lines about a step name its run and step; lines inside a run carry the run's span.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_name_the_run_and_the_step() {
    let p = Project::new(
        "name: logs\n",
        &[(
            "boom",
            "trigger: webhook\nsteps:\n  - id: explode\n    fail: ${{ \"no \\(.input.what)\" }}\n",
        )],
    );
    let hub = Hub::start(p.path(), &[]).await;
    let (status, accepted) = hub.post_hook("boom", &[], r#"{"what": "luck"}"#).await;
    assert_eq!(status, 202);
    let run_id = accepted["run_id"].as_str().unwrap().to_string();
    hub.settle("boom", Duration::from_secs(30)).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let line = loop {
        let found = hub
            .log
            .lock()
            .unwrap()
            .iter()
            .find(|l| l["message"] == "Step failed.")
            .cloned();
        if let Some(l) = found {
            break l;
        }
        assert!(Instant::now() < deadline, "no step failure was logged");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(line["level"], "INFO");
    assert_eq!(line["run_id"], run_id.as_str());
    assert_eq!(line["workflow"], "boom");
    assert_eq!(line["step"], "explode");
    assert_eq!(line["span"]["run_id"], run_id.as_str());
    assert!(
        line["error"].as_str().unwrap().contains("no luck"),
        "{line}"
    );
}

/// An approval step waits, durably across a SIGKILL, until the API answers it; an answer is given
/// once; an approval nobody answers expires into the branch its step chose.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approvals_wait_across_a_restart_and_are_answered_once() {
    let refund = "trigger: manual\nsteps:\n  - id: ok\n    approval:\n      message: Refund ${{ .input.amount }} EUR?\n      data: ${{ {amount: .input.amount} }}\n  - id: result\n    map: '${{ if .steps.ok.approved then \"refunded by \\(.steps.ok.by), \\(.steps.ok.data.note)\" else \"declined\" end }}'\n";
    let quick = "trigger: manual\nsteps:\n  - id: ok\n    approval: { message: Quick?, timeout: 1s, on_timeout: reject }\n  - id: result\n    map: ${{ .steps.ok.decision }}\n";
    let strict = "trigger: manual\nsteps:\n  - id: ok\n    approval: { message: Strict?, timeout: 1s, on_timeout: fail }\n";
    let p = Project::new(
        "name: approvals\n",
        &[("refund", refund), ("quick", quick), ("strict", strict)],
    );
    let mut hub = Hub::start(p.path(), &[]).await;
    let (status, started) = hub
        .post_json(
            "/api/workflows/refund/runs",
            json!({"input": {"amount": 30}}),
        )
        .await;
    assert_eq!(status, 202, "{started}");
    let run_id = started["run_id"].as_str().unwrap().to_string();
    let pending = async |hub: &Hub| {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let (status, list) = hub.get("/api/approvals").await;
            assert_eq!(status, 200, "{list}");
            if let Some(a) = list["approvals"].as_array().unwrap().first() {
                return a.clone();
            }
            assert!(Instant::now() < deadline, "no approval became pending");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    let approval = pending(&hub).await;
    assert_eq!(approval["run_id"], run_id.as_str());
    assert_eq!(approval["message"], "Refund 30 EUR?");
    assert_eq!(approval["data"], json!({"amount": 30}));
    assert_eq!(approval["state"], "pending");
    let id = approval["id"].as_str().unwrap().to_string();

    // A restart changes nothing: the run still waits for the same approval.
    hub.child.start_kill().unwrap();
    let _ = hub.child.wait().await;
    let hub = Hub::start(p.path(), &[]).await;
    let again = pending(&hub).await;
    assert_eq!(again["id"], id.as_str());
    // The restarted hub resumes the run, which asks the same approval again and waits.
    let start = Instant::now();
    loop {
        let (_, run) = hub.get(&format!("/api/runs/{run_id}")).await;
        if run["state"] == "waiting" {
            break;
        }
        assert_eq!(run["state"], "running", "{run}");
        assert!(start.elapsed() < Duration::from_secs(10), "{run}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Bad answers change nothing.
    let (status, err) = hub
        .post_json(
            &format!("/api/approvals/{id}"),
            json!({"decision": "maybe"}),
        )
        .await;
    assert_eq!(
        (status, err["error"]["code"].as_str()),
        (400, Some("bad_request"))
    );
    let (status, _) = hub
        .post_json("/api/approvals/nope", json!({"decision": "approve"}))
        .await;
    assert_eq!(status, 404);

    let (status, answered) = hub
        .post_json(
            &format!("/api/approvals/{id}"),
            json!({"decision": "approve", "by": "ada", "data": {"note": "goodwill"}}),
        )
        .await;
    assert_eq!(status, 200, "{answered}");
    assert_eq!(answered["state"], "approved");
    let (status, err) = hub
        .post_json(
            &format!("/api/approvals/{id}"),
            json!({"decision": "reject"}),
        )
        .await;
    assert_eq!(
        (status, err["error"]["code"].as_str()),
        (409, Some("conflict")),
        "{err}"
    );
    let runs = hub.settle("refund", Duration::from_secs(30)).await;
    assert_eq!(runs[0]["state"], "succeeded", "{}", runs[0]);
    assert_eq!(runs[0]["output"], "refunded by ada, goodwill");
    let (_, list) = hub.get("/api/approvals").await;
    assert!(list["approvals"].as_array().unwrap().is_empty(), "{list}");

    // Nobody answers: after its timeout the approval expires, here into `reject`.
    let (status, _) = hub.post_json("/api/workflows/quick/runs", json!({})).await;
    assert_eq!(status, 202);
    let start = Instant::now();
    let runs = loop {
        let runs = hub.settle("quick", Duration::from_secs(30)).await;
        if !runs.is_empty() {
            break runs;
        }
        assert!(start.elapsed() < Duration::from_secs(30));
    };
    assert_eq!(runs[0]["state"], "succeeded", "{}", runs[0]);
    assert_eq!(runs[0]["output"], "expired");
    let (_, all) = hub.get("/api/approvals?state=all").await;
    let states: Vec<&str> = all["approvals"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["state"].as_str().unwrap())
        .collect();
    assert_eq!(states, ["expired", "approved"]);

    // `on_timeout: fail` fails the run; retrying it asks again instead of reusing the expired one.
    let (_, started) = hub.post_json("/api/workflows/strict/runs", json!({})).await;
    let strict_id = started["run_id"].as_str().unwrap().to_string();
    let runs = hub.settle("strict", Duration::from_secs(30)).await;
    assert_eq!(runs[0]["state"], "failed", "{}", runs[0]);
    assert_eq!(runs[0]["error"]["kind"], "approval_expired", "{}", runs[0]);
    let (status, _) = hub
        .post_json(&format!("/api/runs/{strict_id}/retry"), json!({}))
        .await;
    assert_eq!(status, 202);
    let asked_again = pending(&hub).await;
    assert_eq!(asked_again["run_id"], strict_id.as_str());
    assert_eq!(asked_again["attempt"], 2);
    let (status, _) = hub
        .post_json(
            &format!("/api/approvals/{}", asked_again["id"].as_str().unwrap()),
            json!({"decision": "approve"}),
        )
        .await;
    assert_eq!(status, 200);
    let runs = hub.settle("strict", Duration::from_secs(30)).await;
    assert_eq!(runs[0]["state"], "succeeded", "{}", runs[0]);
}

/// Every route in `/api/openapi.json` exists with its method, the API answers errors in its one
/// shape, and runs can be started, listed page by page, shown, cancelled and replayed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_matches_its_openapi_document() {
    let p = Project::new(
        "name: api\n",
        &[
            (
                "hello",
                "trigger: manual\nsteps:\n  - id: hi\n    map: ${{ \"hi \\(.input.name)\" }}\n",
            ),
            ("hook", "trigger: webhook\nsteps:\n  - id: a\n    map: 1\n"),
            (
                "keyed",
                "trigger:\n  webhook:\n    dedupe: ${{ .input.id }}\nsteps:\n  - id: a\n    map: 1\n",
            ),
        ],
    );
    let hub = Hub::start(p.path(), &[]).await;
    let (status, doc) = hub.get("/api/openapi.json").await;
    assert_eq!(status, 200);
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3.1"),
        "{}",
        doc["openapi"]
    );
    let paths = doc["paths"].as_object().unwrap();
    assert!(paths.len() >= 9, "{paths:?}");
    for (path, item) in paths {
        // The event stream does not end; the console's tests read it.
        if path == "/events" {
            continue;
        }
        for method in item.as_object().unwrap().keys() {
            let url = format!(
                "{}/api{}",
                hub.base,
                path.replace("{name}", "hello").replace("{id}", "0000")
            );
            let req = match method.as_str() {
                "get" => hub.client.get(&url),
                "post" => hub.client.post(&url).body("{}"),
                "put" => hub.client.put(&url).body("{}"),
                "delete" => hub.client.delete(&url),
                other => panic!("unexpected method {other} in the document"),
            };
            let resp = req.send().await.unwrap();
            let status = resp.status().as_u16();
            let body: Value = resp.json().await.unwrap_or(Value::Null);
            assert_ne!(status, 405, "{method} {path} is documented but not routed");
            let fallback = body["error"]["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("nothing is served"));
            assert!(!fallback, "{method} {path} is documented but not routed");
            if status >= 400 {
                assert!(body["error"]["code"].is_string(), "{method} {path}: {body}");
            }
        }
    }

    // Start runs, page through them, show one with its steps.
    let mut ids = Vec::new();
    for i in 0..5 {
        let resp = hub
            .client
            .post(format!("{}/api/workflows/hello/runs", hub.base))
            .body(json!({"input": {"name": format!("n{i}")}}).to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 202);
        ids.push(
            resp.json::<Value>().await.unwrap()["run_id"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    hub.settle("hello", Duration::from_secs(30)).await;
    let (_, page1) = hub.get("/api/runs?workflow=hello&limit=2").await;
    let cursor = page1["next_cursor"].as_str().unwrap();
    let (_, page2) = hub
        .get(&format!("/api/runs?workflow=hello&limit=2&cursor={cursor}"))
        .await;
    let (_, page3) = hub
        .get(&format!(
            "/api/runs?workflow=hello&limit=2&cursor={}",
            page2["next_cursor"].as_str().unwrap()
        ))
        .await;
    assert!(page3["next_cursor"].is_null());
    let listed: Vec<&str> = [&page1, &page2, &page3]
        .iter()
        .flat_map(|p| {
            p["runs"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["id"].as_str().unwrap())
        })
        .collect();
    let mut expected: Vec<&str> = ids.iter().map(String::as_str).collect();
    expected.reverse();
    // The route probe above started one run first: it is the oldest.
    assert_eq!(listed.len(), 6, "{listed:?}");
    assert_eq!(listed[..5], expected[..], "newest first, each once");
    let (status, run) = hub.get(&format!("/api/runs/{}", ids[0])).await;
    assert_eq!(status, 200);
    assert_eq!(run["output"], "hi n0");
    assert_eq!(run["steps"][0]["step"], "hi");

    // Errors: one shape, fitting codes.
    let (status, err) = hub.get("/api/runs/ffffffff").await;
    assert_eq!(
        (status, err["error"]["code"].as_str()),
        (404, Some("not_found"))
    );
    let (status, err) = hub.get("/api/runs?state=done").await;
    assert_eq!(
        (status, err["error"]["code"].as_str()),
        (400, Some("bad_request"))
    );
    let (status, _) = hub.post_json("/api/workflows/hook/runs", json!({})).await;
    assert_eq!(status, 409, "webhook workflows start from their hook");
    let (status, _) = hub
        .post_json(&format!("/api/runs/{}/retry", ids[0]), json!({}))
        .await;
    assert_eq!(status, 409, "a succeeded run is not retried");
    let (status, _) = hub
        .post_json(&format!("/api/runs/{}/replay", ids[0]), json!({}))
        .await;
    assert_eq!(status, 202);

    // Lint a posted file: problems with positions, nothing changed.
    let resp = hub
        .client
        .post(format!(
            "{}/api/workflows/lint?file=workflows/x.yaml",
            hub.base
        ))
        .body("trigger: manual\nsteps:\n  - id: a\n    map: ${{ .steps.b }}\n")
        .send()
        .await
        .unwrap();
    let lint: Value = resp.json().await.unwrap();
    assert_eq!(lint["ok"], false);
    assert_eq!(lint["problems"][0]["file"], "workflows/x.yaml");
    assert_eq!(lint["problems"][0]["line"], 4);

    // Oversized and malformed webhook bodies: 413 and 400, no run.
    // The hub answers 413 from the declared length, before any of the body arrives; a raw socket
    // shows that without the client racing to write a body the server will never read.
    assert_eq!(
        hub.raw_post_status("/hooks/hook", 2 * 1024 * 1024).await,
        413
    );
    let (status, err) = hub.post_hook("hook", &[], "{not json").await;
    assert_eq!(
        (status, err["error"]["code"].as_str()),
        (400, Some("bad_request"))
    );
    let (status, _) = hub.post_hook("nothing-here", &[], "{}").await;
    assert_eq!(status, 404);
    // A dedupe expression that fails on the body is a clear 400, not a run without de-duplication.
    let (status, err) = hub.post_hook("keyed", &[], r#""just text""#).await;
    assert_eq!(status, 400, "{err}");
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("dedupe expression"),
        "{err}"
    );
    assert!(hub.all_runs("keyed").await.is_empty());
    assert!(hub.all_runs("hook").await.is_empty());
    let (status, ready) = hub.get("/readyz").await;
    assert_eq!((status, ready["status"].as_str()), (200, Some("ready")));
}

/// `--watch`: a broken change is refused while the last good version keeps serving; a good change
/// is served from then on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_reloads_good_changes_and_refuses_broken_ones() {
    let v1 = "trigger: { webhook: { respond: sync } }\nsteps:\n  - id: v\n    map: 1\n";
    let p = Project::new("name: watch\n", &[("echo", v1)]);
    let hub = Hub::start(p.path(), &["--watch"]).await;
    let (status, out) = hub.post_hook("echo", &[], "{}").await;
    assert_eq!((status, out), (200, json!(1)));

    let file = p.path().join("workflows/echo.yaml");
    std::fs::write(
        &file,
        "trigger: { webhook: { respond: sync } }\nsteps:\n  - id: v\n    map: ${{ .nope[ }}\n",
    )
    .unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let (status, out) = hub.post_hook("echo", &[], "{}").await;
    assert_eq!(
        (status, out),
        (200, json!(1)),
        "the last good version keeps serving"
    );

    std::fs::write(
        &file,
        "trigger: { webhook: { respond: sync } }\nsteps:\n  - id: v\n    map: 2\n",
    )
    .unwrap();
    let start = Instant::now();
    loop {
        let (_, out) = hub.post_hook("echo", &[], "{}").await;
        if out == json!(2) {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "the change was not loaded"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (_, wf) = hub.get("/api/workflows/echo").await;
    assert!(wf["source"].as_str().unwrap().contains("map: 2"));
    // The audit log names the reload and what it changed; the refused version is not in it.
    let (_, log) = hub.get("/api/audit").await;
    let reloads: Vec<&Value> = log["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "project.reload")
        .collect();
    assert_eq!(reloads.len(), 1, "{log}");
    assert_eq!(reloads[0]["actor"], "files");
    assert_eq!(
        reloads[0]["details"]["workflows"]["changed"],
        json!(["echo"])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_body_that_breaks_its_input_schema_gets_422_and_starts_nothing() {
    let p = Project::new(
        "name: hooks\n",
        &[(
            "orders",
            "trigger:\n  webhook:\n    input:\n      type: object\n      required: [id, lines]\n      properties:\n        id: { type: integer }\n        lines: { type: array, items: { type: object, required: [sku] } }\nsteps:\n  - id: echo\n    map: ${{ .input.id }}\n",
        )],
    );
    let hub = Hub::start(p.path(), &[]).await;
    let (status, err) = hub
        .post_hook("orders", &[], r#"{"id": "x", "lines": [{"qty": 1}]}"#)
        .await;
    assert_eq!(status, 422, "{err}");
    assert_eq!(err["error"]["code"], "invalid_input");
    let problems = err["error"]["details"]["problems"].as_array().unwrap();
    let paths: Vec<&str> = problems
        .iter()
        .map(|p| p["path"].as_str().unwrap())
        .collect();
    assert!(
        paths.contains(&"/id") && paths.contains(&"/lines/0"),
        "{err}"
    );
    let (status, ok) = hub
        .post_hook("orders", &[], r#"{"id": 7, "lines": [{"sku": "MUG"}]}"#)
        .await;
    assert_eq!(status, 202, "{ok}");
    let runs = hub.settle("orders", Duration::from_secs(20)).await;
    assert_eq!(runs.len(), 1, "only the valid body started a run: {runs:?}");
    let metrics = hub.text("/metrics").await;
    assert!(
        metrics.contains("outcome=\"invalid_input\""),
        "counted: {metrics}"
    );
}
