//! The web console in a real browser (headless Chromium through chromedriver), on a copy of
//! `examples/hub` served by the real binary: signing in and out, the overview, every workflow and
//! its graph, a failed run read in the inspector, an approval answered; a viewer sees no button that
//! acts and is refused when it forces one; a cross-site form cannot act with the session; the
//! session ends with the sign-out. The screenshots the README shows are taken here.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::browser::{self, Browser};
use crate::hub::{ADMIN_TOKEN, Hub, serve_command, until_listening_with_text};
use crate::support::{Project, copy_dir, free_port, repo_root, weft};

/// A copy of `examples/hub` whose connection to its own API points at `port`.
fn example_hub(port: u16) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&repo_root().join("examples/hub"), dir.path());
    let yaml = std::fs::read_to_string(dir.path().join("weft.yaml")).unwrap();
    std::fs::write(
        dir.path().join("weft.yaml"),
        yaml.replace("127.0.0.1:7807", &format!("127.0.0.1:{port}")),
    )
    .unwrap();
    dir
}

/// Types into the runs page's text filter and presses Enter.
async fn fill_search(b: &Browser, text: &str) {
    let field = b
        .find("input[aria-label='Text in the event or error']")
        .await;
    field.send_keys(text).await.unwrap();
    field.send_keys("\u{E007}").await.unwrap();
}

/// Signs in through the form.
pub(crate) async fn sign_in(b: &Browser, base: &str, token: &str) {
    b.goto(&format!("{base}/")).await;
    let field = b.find("#token").await;
    field.send_keys(token).await.unwrap();
    b.click_text("Sign in").await;
    b.find("nav.side").await;
}

async fn token(dir: &Path, role: &str) -> String {
    let out = weft(dir, &["tokens", "create", "--json", "--role", role]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    out.json()["token"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_signs_in_reads_a_failed_run_answers_an_approval_and_signs_out() {
    if !browser::available() {
        return;
    }
    let port = free_port();
    let dir = example_hub(port);
    let hub = Hub::start_at(dir.path(), &format!("127.0.0.1:{port}"), &[]).await;
    let base = hub.base.clone();

    // Something to look at: an order that goes through, one that fails, a refund that waits.
    let good = json!({"id": "A-1", "lines": [{"qty": 2, "price": 30}]}).to_string();
    let (status, ok) = hub.post_hook("shop/orders", &[], &good).await;
    assert_eq!(status, 202, "{ok}");
    let bad = json!({"id": "A-2", "lines": "two mugs"}).to_string();
    let (_, failed) = hub.post_hook("shop/orders", &[], &bad).await;
    let failed_id = failed["run_id"].as_str().unwrap().to_string();
    hub.until_state(&failed_id, "failed").await;
    let (status, refund) = hub
        .post_json(
            "/api/workflows/refund/runs",
            json!({"input": {"order": "A-1", "amount": 30}}),
        )
        .await;
    assert_eq!(status, 202, "{refund}");
    let refund_id = refund["run_id"].as_str().unwrap().to_string();
    hub.until_state(&refund_id, "waiting").await;

    let b = Browser::start(1280, 800).await;

    // A wrong token is refused, in words.
    b.goto(&format!("{base}/")).await;
    b.find("#token")
        .await
        .send_keys("not-a-token")
        .await
        .unwrap();
    b.click_text("Sign in").await;
    b.until_text("not valid").await;
    let field = b.find("#token").await;
    field.clear().await.unwrap();
    field.send_keys(ADMIN_TOKEN).await.unwrap();
    b.click_text("Sign in").await;

    // The overview: the last day's runs by state, the failing workflow, the waiting approval.
    b.find("nav.side").await;
    b.until_text("Failing workflows").await;
    let failed_tile = b.text(".tile.state-failed .figure").await;
    assert_eq!(failed_tile, "1");
    b.until_text("order-created").await;
    b.until_text("1 pending approval").await;
    b.screenshot("overview").await;

    // Every workflow of the example.
    b.click_text("Workflows").await;
    for name in [
        "failed-runs",
        "heartbeat",
        "order-created",
        "quote",
        "refund",
    ] {
        b.until_text(name).await;
    }
    b.screenshot("workflows").await;

    // A workflow's graph: trigger, steps, both branches of the `if`, the output.
    b.click_text("order-created").await;
    for key in ["@trigger", "total", "shipping", "free", "paid", "@output"] {
        b.find(&format!("svg.graph .node[data-key='{key}']")).await;
    }
    b.find("svg.graph .node[data-key='total']")
        .await
        .click()
        .await
        .unwrap();
    b.until_text("Recent runs").await;
    b.find(".step-run .badge.state-failed").await;
    b.find(".step-run .badge.state-succeeded").await;
    b.screenshot("workflow-graph").await;

    // Runs found by text in their event.
    b.goto(&format!("{base}/#/runs")).await;
    fill_search(&b, "two mugs").await;
    // Until the filter applied: the unfiltered page shows the failed run too.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let rows = b.all_text("table.runs tbody tr").await;
        if rows.len() == 1 && rows[0].contains(&failed_id[..14]) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the filter never applied: {rows:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The failed run says where and why at a glance.
    b.goto(&format!("{base}/#/runs?state=failed")).await;
    b.click_text(&failed_id[..14]).await;
    b.until_text("Failed at step total").await;
    let failure = b.text(".failure").await;
    assert!(
        failure.contains("two mugs"),
        "the error names the cause: {failure}"
    );
    assert!(b.has_button("Retry").await);
    b.screenshot("run-inspector").await;

    // The approval, answered here, lets the run go on.
    b.click_text("Approvals").await;
    b.until_text("Refund 30 EUR for order A-1?").await;
    b.screenshot("approvals").await;
    b.click_text("Approve").await;
    let run = hub.until_state(&refund_id, "succeeded").await;
    assert_eq!(run["output"]["refunded"], 30, "{run}");
    b.until_text("Nothing waits for an answer.").await;

    // Nothing went wrong in the page, but for the wrong token's refusal.
    let errors: Vec<String> = b
        .console_errors()
        .await
        .into_iter()
        .filter(|e| !(e.contains("/api/session") && e.contains("401")))
        .collect();
    assert!(errors.is_empty(), "the browser logged errors: {errors:?}");

    // Signing out ends the session: the old cookie opens nothing.
    let cookie = b
        .client
        .get_named_cookie("weft_session")
        .await
        .expect("the session cookie");
    assert_eq!(cookie.http_only(), Some(true));
    assert_eq!(
        cookie.same_site().map(|s| format!("{s:?}")).as_deref(),
        Some("Strict")
    );
    let old = format!("weft_session={}", cookie.value());
    b.click_text("Sign out").await;
    b.find("#token").await;
    let status = reqwest::Client::new()
        .get(format!("{base}/api/runs"))
        .header("cookie", &old)
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 401, "a signed-out session's cookie is refused");

    // The audit log has the sign-ins, the failed one and the sign-out.
    let (_, audit) = hub.get("/api/audit?limit=100").await;
    let actions: Vec<&str> = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["action"].as_str())
        .collect();
    for action in [
        "session.sign_in",
        "session.sign_in_failed",
        "session.sign_out",
        "approval.answer",
    ] {
        assert!(actions.contains(&action), "{action} in {actions:?}");
    }
    b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewer_sees_no_act_buttons_and_forced_or_cross_site_actions_are_refused() {
    if !browser::available() {
        return;
    }
    let p = Project::new(
        "name: console\n",
        &[(
            "ask.yaml",
            "name: ask\ntrigger: manual\nsteps:\n  - id: ok\n    approval: Go ahead?\n",
        )],
    );
    let hub = Hub::start(p.path(), &[]).await;
    let base = hub.base.clone();
    let run_id = hub.start_run("ask", json!({})).await;
    hub.until_state(&run_id, "waiting").await;
    let viewer = token(p.path(), "viewer").await;

    let b = Browser::start(1280, 800).await;
    sign_in(&b, &base, &viewer).await;
    b.goto(&format!("{base}/#/runs/{run_id}")).await;
    b.until_text("Trigger event").await;
    for label in ["Retry", "Replay", "Cancel run"] {
        assert!(
            !b.has_button(label).await,
            "a viewer sees no {label} button"
        );
    }
    b.click_text("Approvals").await;
    b.until_text("Go ahead?").await;
    assert!(
        !b.has_button("Approve").await,
        "a viewer sees no Approve button"
    );

    // Forced from the page, with the session and its CSRF token: the server refuses.
    let forced = b
        .eval(&format!(
            "const s = await (await fetch('/api/session')).json();
             const r = await fetch('/api/runs/{run_id}/cancel', {{method: 'POST', headers: {{'X-Weft-CSRF': s.csrf}}}});
             return [r.status, (await r.json()).error.code];"
        ))
        .await;
    assert_eq!(forced, json!([403, "forbidden"]), "{forced}");

    // An operator's session in the same browser, then a form on another site that posts to the
    // hub: the browser sends no cookie (SameSite=Strict) and the form cannot set the CSRF header.
    b.click_text("Sign out").await;
    b.find("#token").await;
    let operator = token(p.path(), "operator").await;
    sign_in(&b, &base, &operator).await;
    let evil = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let evil_addr = evil.local_addr().unwrap();
    let page = format!(
        "<!doctype html><form id=f method=post action='{base}/api/runs/{run_id}/cancel' enctype=text/plain><input name=a value=b></form><script>document.getElementById('f').submit()</script>"
    );
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        while let Ok((mut s, _)) = evil.accept().await {
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf).await;
            let answer = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: text/html\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{page}",
                page.len()
            );
            let _ = s.write_all(answer.as_bytes()).await;
        }
    });
    b.goto(&format!("http://{evil_addr}/")).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (_, run) = hub.get(&format!("/api/runs/{run_id}")).await;
    assert_eq!(
        run["state"], "waiting",
        "the cross-site form changed nothing: {run}"
    );

    // The same session's cookie without the CSRF header, or from another origin, is refused too.
    b.goto(&format!("{base}/")).await;
    b.find("nav.side").await;
    let cookie = b.client.get_named_cookie("weft_session").await.unwrap();
    let client = reqwest::Client::new();
    let cancel = format!("{base}/api/runs/{run_id}/cancel");
    let cookie = format!("weft_session={}", cookie.value());
    let no_header = client
        .post(&cancel)
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(no_header.status(), 403);
    let (_, session) = {
        let r = client
            .get(format!("{base}/api/session"))
            .header("cookie", &cookie)
            .send()
            .await
            .unwrap();
        (r.status(), r.json::<Value>().await.unwrap())
    };
    let csrf = session["csrf"].as_str().unwrap();
    let other_origin = client
        .post(&cancel)
        .header("cookie", &cookie)
        .header("x-weft-csrf", csrf)
        .header("origin", format!("http://{evil_addr}"))
        .send()
        .await
        .unwrap();
    assert_eq!(other_origin.status(), 403);
    let (_, run) = hub.get(&format!("/api/runs/{run_id}")).await;
    assert_eq!(run["state"], "waiting", "{run}");

    // With both, the operator's session acts.
    let allowed = client
        .post(&cancel)
        .header("cookie", &cookie)
        .header("x-weft-csrf", csrf)
        .header("origin", &base)
        .send()
        .await
        .unwrap();
    assert_eq!(allowed.status(), 202);
    hub.until_state(&run_id, "cancelled").await;
    b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_sign_ins_are_limited_and_a_tool_token_cannot_sign_in() {
    let p = Project::new(
        "name: console\nconsole: { sign_in_attempts_per_minute: 3 }\n",
        &[(
            "echo.yaml",
            "name: echo\ntrigger:\n  tool:\n    description: Echo.\n    input: { type: object }\nsteps:\n  - id: e\n    map: ${{ .input }}\n",
        )],
    );
    let hub = Hub::start(p.path(), &[]).await;
    let client = reqwest::Client::new();
    let sign_in = |token: String| {
        let client = client.clone();
        let url = format!("{}/api/session", hub.base);
        async move {
            let r = client
                .post(url)
                .json(&json!({ "token": token }))
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.headers().get("set-cookie").cloned())
        }
    };
    let tool = {
        let out = weft(
            p.path(),
            &[
                "tokens", "create", "--json", "--role", "tool", "--tools", "echo",
            ],
        )
        .await;
        out.json()["token"].as_str().unwrap().to_string()
    };
    assert_eq!(sign_in(tool).await.0, 401, "a tool token cannot sign in");
    let mut statuses = Vec::new();
    for i in 0..3 {
        statuses.push(sign_in(format!("wrong-{i}")).await.0);
    }
    // The tool token's attempt was the first failure: two more are answered, then none.
    assert_eq!(statuses, [401, 401, 429], "failed sign-ins are limited");
    // Once limited, even the right token waits.
    let (status, cookie) = sign_in(ADMIN_TOKEN.to_string()).await;
    assert_eq!(status, 429);
    assert!(cookie.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_start_prints_a_sign_in_link_that_works_once() {
    if !browser::available() {
        return;
    }
    let port = free_port();
    let dir = example_hub(port);
    let mut serve = serve_command(dir.path(), &format!("127.0.0.1:{port}"), &[]);
    serve.env_remove("WEFT_ADMIN_TOKEN");
    let mut child = serve.spawn().expect("weft serve starts");
    let (_, _log, text) = until_listening_with_text(&mut child).await;
    let base = format!("http://127.0.0.1:{port}");
    let prefix = format!("{base}/#/sign-in/");
    let link = text
        .iter()
        .find_map(|l| l.trim().strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no sign-in link in {text:#?}"))
        .to_string();
    let token = text
        .iter()
        .map(|l| l.trim())
        .find(|l| l.starts_with("weft_"))
        .expect("the admin token is printed")
        .to_string();

    // The link is no bearer token.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let api = reqwest::Client::new();
    let status = api
        .get(format!("{base}/api/workflows"))
        .bearer_auth(&link)
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 401);

    // Opened, it signs in as the first start's admin token and leaves the address at once.
    let b = Browser::start(1280, 800).await;
    b.goto(&format!("{prefix}{link}")).await;
    b.find("nav.side").await;
    b.until_text("first start").await;
    assert_eq!(b.eval("return location.hash").await, json!("#/"));
    b.click_text("Workflows").await;
    b.until_text("order-created").await;
    b.click_text("Sign out").await;
    b.find("#token").await;

    // Opened again, it is spent: the sign-in page says so.
    b.goto(&format!("{prefix}{link}")).await;
    b.until_text("The sign-in link did not work").await;
    b.screenshot("sign-in-link-spent").await;

    // Who signed in with it is in the audit log, under the token it was made for.
    let audit: Value = api
        .get(format!("{base}/api/audit?q=session.sign_in"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let entries = audit["entries"].as_array().unwrap();
    let signed_in: Vec<&Value> = entries
        .iter()
        .filter(|e| e["action"] == "session.sign_in")
        .collect();
    assert_eq!(signed_in.len(), 1, "{audit}");
    assert!(
        signed_in[0]["actor"].as_str().unwrap().starts_with("tok_"),
        "{audit}"
    );
    assert!(
        signed_in[0]["details"]["link"]
            .as_str()
            .unwrap()
            .starts_with("lnk_"),
        "{audit}"
    );
    assert!(
        entries
            .iter()
            .any(|e| e["action"] == "session.sign_in_failed"),
        "{audit}"
    );
    let errors = b.console_errors().await;
    assert!(
        errors.iter().all(|e| e.contains("401")),
        "the browser logged errors other than the spent link's refusal: {errors:?}"
    );
    b.close().await;
    let _ = child.start_kill();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_is_served_from_the_binary_with_a_strict_policy() {
    let p = Project::new("name: console\n", &[]);
    let hub = Hub::start(p.path(), &[]).await;
    let client = reqwest::Client::new();
    let page = client.get(format!("{}/", hub.base)).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let csp = page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        csp.contains("default-src 'none'") && csp.contains("connect-src 'self'"),
        "{csp}"
    );
    assert_eq!(page.headers()["x-frame-options"], "DENY");
    let etag = page.headers()["etag"].clone();
    let html = page.text().await.unwrap();
    assert!(html.contains("/assets/app.js"), "{html}");
    for asset in ["/assets/app.js", "/assets/app.css"] {
        let r = client
            .get(format!("{}{asset}", hub.base))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{asset}");
        let body = r.bytes().await.unwrap();
        assert!(!body.is_empty());
        // Nothing in the bundle reaches for another host.
        let text = String::from_utf8_lossy(&body);
        for far in ["https://", "//cdn", "googleapis", "unpkg", "jsdelivr"] {
            assert!(
                !text.contains(&format!("src=\"{far}")) && !text.contains(&format!("href=\"{far}")),
                "{asset} loads from {far}"
            );
        }
    }
    let again = client
        .get(format!("{}/", hub.base))
        .header("if-none-match", etag)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 304);
    // The API without a session or token still says 401 in JSON.
    let api = client
        .get(format!("{}/api/runs", hub.base))
        .send()
        .await
        .unwrap();
    assert_eq!(api.status(), 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_manages_tokens_and_secrets_and_reads_connections_and_the_audit_log() {
    if !browser::available() {
        return;
    }
    let port = free_port();
    let dir = example_hub(port);
    // A database that is not there, for a connection check that fails.
    let yaml = std::fs::read_to_string(dir.path().join("weft.yaml")).unwrap();
    std::fs::write(
        dir.path().join("weft.yaml"),
        yaml.replace(
            "connections:\n",
            "connections:\n  orders_db:\n    type: postgres\n    url: postgres://postgres@127.0.0.1:1/orders\n    timeout: 2s\n",
        ),
    )
    .unwrap();
    let hub = Hub::start_at(dir.path(), &format!("127.0.0.1:{port}"), &[]).await;
    let base = hub.base.clone();
    let b = Browser::start(1280, 800).await;
    sign_in(&b, &base, ADMIN_TOKEN).await;

    // Connections: the example's `hub` connection, used by the failed-runs poll, its token only a
    // reference. Each checks itself: the hub's own API answers, the database is not there.
    b.click_text("Connections").await;
    b.until_text("failed-runs").await;
    b.until_text("weft.yaml:").await;
    for (name, outcome) in [("hub", "Works"), ("orders_db", "Does not work")] {
        let button = format!(
            "//section[.//h2[normalize-space(.)='{name}']]//button[normalize-space(.)='Test connection']"
        );
        b.client
            .find(fantoccini::Locator::XPath(&button))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        b.until_text(outcome).await;
    }
    b.until_text(&format!("GET http://127.0.0.1:{port}/api answered 404"))
        .await;
    b.screenshot("connections").await;
    let (status, tested) = hub
        .post_json("/api/connections/orders_db/test", json!({}))
        .await;
    assert_eq!(status, 200, "{tested}");
    assert_eq!(tested["ok"], false, "{tested}");
    assert_eq!(tested["retryable"], true, "{tested}");
    let (status, _) = hub
        .post_json("/api/connections/nowhere/test", json!({}))
        .await;
    assert_eq!(status, 404);
    let viewer = token(dir.path(), "viewer").await;
    let status = reqwest::Client::new()
        .post(format!("{base}/api/connections/hub/test"))
        .bearer_auth(&viewer)
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 403, "a viewer may not make the hub call out");

    // A token made here is shown once and works; revoked, it does not.
    b.click_text("API tokens").await;
    b.find("form[aria-label='Make a token'] select")
        .await
        .select_by_label("operator")
        .await
        .unwrap();
    b.find("form[aria-label='Make a token'] input")
        .await
        .send_keys("night shift")
        .await
        .unwrap();
    b.click_text("Make token").await;
    let secret = b
        .find("input[aria-label=\"The new token's secret\"]")
        .await
        .prop("value")
        .await
        .unwrap()
        .expect("the secret is shown");
    assert!(secret.starts_with("weft_"), "{secret}");
    b.until_text("night shift").await;
    b.screenshot("tokens").await;
    let status = reqwest::Client::new()
        .get(format!("{base}/api/runs"))
        .bearer_auth(&secret)
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 200, "the new token works");
    let (_, list) = hub.get("/api/tokens").await;
    let id = list["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "night shift")
        .expect("the token is listed")["id"]
        .as_str()
        .unwrap()
        .to_string();
    let row = format!("//tr[td[normalize-space(.)='{id}']]//button[normalize-space(.)='Revoke']");
    b.client
        .find(fantoccini::Locator::XPath(&row))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    b.confirm().await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let status = reqwest::Client::new()
            .get(format!("{base}/api/runs"))
            .bearer_auth(&secret)
            .send()
            .await
            .unwrap()
            .status();
        if status == 401 {
            break;
        }
        assert!(Instant::now() < deadline, "the revoked token still works");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // A secret set here is stored, and its value never comes back.
    b.click_text("Secrets").await;
    let form = "form[aria-label='Set a secret']";
    b.find(&format!("{form} input:not([type=password])"))
        .await
        .send_keys("shop_token")
        .await
        .unwrap();
    b.find(&format!("{form} input[type=password]"))
        .await
        .send_keys("sk-console-secret-value-1")
        .await
        .unwrap();
    b.click_text("Set").await;
    b.until_text("shop_token").await;
    let page = b.client.source().await.unwrap();
    assert!(
        !page.contains("sk-console-secret-value-1"),
        "the value is not shown back"
    );
    let (_, secrets) = hub.get("/api/secrets").await;
    assert_eq!(secrets["secrets"][0]["name"], "shop_token", "{secrets}");

    // The audit log shows what was done here.
    b.click_text("Audit log").await;
    for action in [
        "token.create",
        "token.revoke",
        "secret.create",
        "session.sign_in",
        "connection.test",
    ] {
        b.until_text(action).await;
    }
    b.screenshot("audit").await;
    // The filter asks the hub, so it finds entries beyond the page shown.
    b.find("input[aria-label='Filter the audit log']")
        .await
        .send_keys("token.revoke")
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let rows = b.all_text("table.list tbody tr").await;
        if rows.len() == 1 && rows[0].contains("token.revoke") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the filter never applied: {rows:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (_, filtered) = hub.get("/api/audit?q=SECRET.CREATE").await;
    assert_eq!(
        filtered["entries"].as_array().unwrap().len(),
        1,
        "{filtered}"
    );
    let errors = b.console_errors().await;
    assert!(errors.is_empty(), "the browser logged errors: {errors:?}");
    b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_that_failed_on_a_down_system_is_retried_from_the_console_once_it_is_back() {
    if !browser::available() {
        return;
    }
    let (server, addr) = weft_testkit::ScriptedServer::start().await;
    server.script("crm", vec![weft_testkit::Answer::status(503)]);
    let wf = "name: sync\ntrigger: manual\nsteps:\n  - id: lookup\n    map: ${{ {email: .input.email} }}\n  - id: crm\n    uses: api.request\n    with:\n      method: POST\n      path: /crm\n      body: ${{ .steps.lookup }}\n    retry: { attempts: 1 }\n";
    let p = Project::with_api(addr, &[("sync", wf)]);
    let hub = Hub::start(p.path(), &[]).await;
    let base = hub.base.clone();
    let run_id = hub
        .start_run("sync", json!({"email": "ada@example.com"}))
        .await;
    hub.until_state(&run_id, "failed").await;

    let b = Browser::start(1280, 800).await;
    sign_in(&b, &base, ADMIN_TOKEN).await;
    b.goto(&format!("{base}/#/runs/{run_id}")).await;
    b.until_text("Failed at step crm").await;
    b.until_text("503").await;
    // The CRM is back; the person retries.
    server.script("crm", vec![weft_testkit::Answer::ok(json!({"id": 7}))]);
    b.click_text("Retry").await;
    b.confirm().await;
    let run = hub.until_state(&run_id, "succeeded").await;
    assert_eq!(server.seen("crm").len(), 2, "{run}");
    // The page follows the run to its end.
    b.find(".page-head .badge.state-succeeded").await;
    assert!(!b.has_button("Retry").await);
    b.close().await;
}

/// Replaces the editor's text as typing would (an `input` event), without typing it key by key.
async fn set_editor_text(b: &Browser, text: &str) {
    let script = format!(
        "const t = document.querySelector('textarea[aria-label=\"Workflow file\"]');
         t.value = {};
         t.dispatchEvent(new Event('input', {{bubbles: true}}));
         return true;",
        serde_json::to_string(text).unwrap()
    );
    b.eval(&script).await;
}

async fn editor_text(b: &Browser) -> String {
    b.eval("return document.querySelector('textarea[aria-label=\"Workflow file\"]').value;")
        .await
        .as_str()
        .unwrap()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_editor_changes_a_workflow_keeping_its_comments_and_creates_one_that_a_webhook_runs() {
    if !browser::available() {
        return;
    }
    let port = free_port();
    let dir = example_hub(port);
    let hub = Hub::start_at(dir.path(), &format!("127.0.0.1:{port}"), &[]).await;
    let base = hub.base.clone();
    let editor = token(dir.path(), "editor").await;
    let b = Browser::start(1280, 800).await;
    sign_in(&b, &base, &editor).await;

    // Open the example's order workflow in the editor.
    b.goto(&format!("{base}/#/workflows/order-created")).await;
    b.click_text("Edit").await;
    b.click_text("Text").await;
    b.find("textarea[aria-label='Workflow file']").await;
    let original =
        std::fs::read_to_string(dir.path().join("workflows/order-created.yaml")).unwrap();
    assert_eq!(editor_text(&b).await, original);

    // A mistake is shown at its line as it is typed, and a save is refused without writing.
    let broken = original.replace("map: free", "map: free\n      - id: total\n        map: 1");
    set_editor_text(&b, &broken).await;
    b.until_text("duplicate step id `total`").await;
    b.find(".code .gutter .bad").await;
    b.click_text("Save").await;
    b.until_text("Not saved").await;
    assert_eq!(
        std::fs::read_to_string(dir.path().join("workflows/order-created.yaml")).unwrap(),
        original,
        "a refused save writes nothing"
    );

    // A good change is saved, served at once, and the comments around it survive.
    let changed = original.replace(
        "description: Summarise a new order from the shop and decide on its shipping.",
        "description: Summarise a new order and decide on its shipping.",
    );
    assert_ne!(changed, original);
    set_editor_text(&b, &changed).await;
    b.until_text("No problems").await;
    b.screenshot("editor").await;
    b.click_text("Save").await;
    b.until_text("Summarise a new order and decide on its shipping.")
        .await;
    let on_disk = std::fs::read_to_string(dir.path().join("workflows/order-created.yaml")).unwrap();
    assert_eq!(on_disk, changed);
    assert!(
        on_disk.starts_with("# POST /hooks/shop/orders"),
        "the comment survived"
    );
    let (_, served) = hub.get("/api/workflows/order-created").await;
    assert_eq!(
        served["description"],
        "Summarise a new order and decide on its shipping."
    );
    let lint = weft(dir.path(), &["lint"]).await;
    assert_eq!(lint.code, 0, "the saved project lints: {}", lint.stderr);

    // The workflow's tests run from the editor.
    b.click_text("Edit").await;
    b.click_text("Text").await;
    b.click_text("Run tests").await;
    b.find(".test-results .badge.state-passed").await;
    assert!(
        b.all_text(".test-results .badge.state-failed")
            .await
            .is_empty()
    );

    // An expression tried against a sample.
    let field = b.find("input[aria-label='Expression to try']").await;
    field.clear().await.unwrap();
    field
        .send_keys("${{ [.input.lines[] | .qty * .price] | add }}")
        .await
        .unwrap();
    b.until_text("60").await;

    // A new workflow from a template: webhook → map → HTTP request (to the hub's own API).
    b.goto(&format!("{base}/#/new")).await;
    b.find("input[aria-label=\"New workflow's name\"]")
        .await
        .send_keys("order-relay")
        .await
        .unwrap();
    b.find("select[aria-label='Template']")
        .await
        .select_by_label("Webhook → map → HTTP request")
        .await
        .unwrap();
    b.click_text("Text").await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let text = loop {
        let text = editor_text(&b).await;
        if text.contains("path: order-relay") {
            break text;
        }
        assert!(
            Instant::now() < deadline,
            "the template never showed: {text}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let text = text
        .replace("uses: api.request", "uses: hub.request")
        .replace("method: POST", "method: GET")
        .replace("path: /orders", "path: /workflows")
        .replace("      body: ${{ .steps.shape }}\n", "");
    set_editor_text(&b, &text).await;
    b.until_text("No problems").await;
    b.click_text("Save").await;
    b.find("details.source").await;
    b.find("svg.graph .node[data-key='send']").await;
    assert!(dir.path().join("workflows/order-relay.yaml").is_file());
    let order = json!({"id": "B-7", "lines": [{"qty": 3, "price": 5}]}).to_string();
    let (status, accepted) = hub.post_hook("order-relay", &[], &order).await;
    assert_eq!(status, 202, "{accepted}");
    let run_id = accepted["run_id"].as_str().unwrap().to_string();
    let run = hub.until_state(&run_id, "succeeded").await;
    assert_eq!(run["steps"][0]["output"]["total"], 15, "{run}");
    b.goto(&format!("{base}/#/runs/{run_id}")).await;
    b.find(".page-head .badge.state-succeeded").await;

    // Saves are in the audit log, with a summary of what changed.
    let (_, audit) = hub.get("/api/audit?limit=50").await;
    let saves: Vec<&Value> = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "workflow.save" || e["action"] == "workflow.create")
        .collect();
    assert_eq!(saves.len(), 2, "{audit}");
    assert_eq!(saves[1]["details"]["lines_added"], 1, "{}", saves[1]);
    assert_eq!(saves[1]["details"]["lines_removed"], 1);
    let errors = b.console_errors().await;
    let unexpected: Vec<&String> = errors.iter().filter(|e| !e.contains("422")).collect();
    assert!(
        unexpected.is_empty(),
        "the browser logged errors: {errors:?}"
    );
    b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn saves_are_for_editors_checked_against_the_version_and_the_whole_project() {
    let p = Project::new(
        "name: edits\n",
        &[(
            "a",
            "name: a\ntrigger: manual\nsteps:\n  - id: one\n    map: 1\n",
        )],
    );
    let hub = Hub::start(p.path(), &[]).await;
    let client = reqwest::Client::new();
    // `precondition`: `*` asks for a new workflow (If-None-Match), a version for that one (If-Match).
    let put = |name: &str, token: &str, precondition: Option<&str>, text: &str| {
        let mut req = client
            .put(format!("{}/api/workflows/{name}", hub.base))
            .bearer_auth(token)
            .header("content-type", "application/yaml")
            .body(text.to_string());
        match precondition {
            Some("*") => req = req.header("if-none-match", "*"),
            Some(v) => req = req.header("if-match", v),
            None => {}
        }
        req.send()
    };
    let operator = token(p.path(), "operator").await;
    let r = put(
        "a",
        &operator,
        None,
        "name: a\ntrigger: manual\nsteps: []\n",
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 403, "an operator cannot save");
    let (_, a) = hub.get("/api/workflows/a").await;
    let version = a["version"].as_str().unwrap().to_string();
    let good = "name: a\ntrigger: manual\nsteps:\n  - id: one\n    map: 2\n";
    let stale = put("a", ADMIN_TOKEN, Some("0123456789abcdef"), good)
        .await
        .unwrap();
    assert_eq!(
        stale.status(),
        409,
        "a save over another version is a conflict"
    );
    // A workflow that calls one that does not exist breaks the project: refused, nothing written.
    let calls = "name: b\ntrigger: manual\nsteps:\n  - id: c\n    call: nowhere\n";
    let refused = put("b", ADMIN_TOKEN, Some("*"), calls).await.unwrap();
    assert_eq!(refused.status(), 422);
    let body: Value = refused.json().await.unwrap();
    assert_eq!(
        body["error"]["details"]["problems"][0]["file"], "workflows/b.yaml",
        "{body}"
    );
    assert!(!p.path().join("workflows/b.yaml").exists());
    // A new workflow cannot take an existing one's place.
    let taken = put("a", ADMIN_TOKEN, Some("*"), good).await.unwrap();
    assert_eq!(taken.status(), 409);
    // A change made to the file on disk, not yet served, is not overwritten either.
    let file = p.path().join("workflows/a.yaml");
    let original = std::fs::read_to_string(&file).unwrap();
    std::fs::write(&file, format!("# edited by hand\n{original}")).unwrap();
    let over = put("a", ADMIN_TOKEN, Some(&version), good).await.unwrap();
    assert_eq!(
        over.status(),
        409,
        "the file on disk is another version now"
    );
    std::fs::write(&file, &original).unwrap();
    let saved = put("a", ADMIN_TOKEN, Some(&version), good).await.unwrap();
    assert_eq!(saved.status(), 200);
    let (_, a) = hub.get("/api/workflows/a").await;
    assert_ne!(a["version"], version.as_str());
    let bad_name = put("../x", ADMIN_TOKEN, None, good).await.unwrap();
    assert!(
        bad_name.status() == 400 || bad_name.status() == 404,
        "{}",
        bad_name.status()
    );
    let renamed = put("a", ADMIN_TOKEN, None, &good.replace("name: a", "name: z"))
        .await
        .unwrap();
    assert_eq!(
        renamed.status(),
        400,
        "the text must name the workflow it is saved as"
    );
    let (_, a) = hub.get("/api/workflows/a").await;
    assert_eq!(a["name"], "a", "a refused rename changes nothing");
}

/// Types `text` into the form field labelled `label` (replacing what it holds) and commits it.
async fn fill(b: &Browser, label: &str, text: &str) {
    let css = format!("[aria-label=\"{label}\"]");
    b.find(&css).await;
    // As typing would: focus, the value, an `input` event; then the field loses focus, which
    // commits it. In one script, and again if a re-render replaced the field meanwhile.
    let script = format!(
        "const f = document.querySelector({});
         if (!f) return false;
         f.focus();
         f.value = {};
         f.dispatchEvent(new Event('input', {{bubbles: true}}));
         f.blur();
         return true;",
        serde_json::to_string(&css).unwrap(),
        serde_json::to_string(text).unwrap()
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while b.eval(&script).await != json!(true) {
        assert!(Instant::now() < deadline, "the field `{label}` went away");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workflow_built_in_the_visual_editor_runs_from_its_webhook() {
    if !browser::available() {
        return;
    }
    let port = free_port();
    let dir = example_hub(port);
    let hub = Hub::start_at(dir.path(), &format!("127.0.0.1:{port}"), &[]).await;
    let base = hub.base.clone();
    let editor = token(dir.path(), "editor").await;
    let b = Browser::start(1280, 800).await;
    sign_in(&b, &base, &editor).await;

    b.click_text("Workflows").await;
    b.click_text("New workflow").await;
    b.find("input[aria-label=\"New workflow's name\"]")
        .await
        .send_keys("visual-relay")
        .await
        .unwrap();
    // The blank page: a manual trigger and one step. Make the trigger a webhook.
    b.find("svg.graph .node[data-key='first']").await;
    b.find("svg.graph .node[data-key='@trigger']")
        .await
        .click()
        .await
        .unwrap();
    b.find("select[aria-label='Trigger']")
        .await
        .select_by_label("webhook")
        .await
        .unwrap();
    b.until_text("/hooks/visual-relay").await;
    // The first step sums the order's lines.
    b.find("svg.graph .node[data-key='first']")
        .await
        .click()
        .await
        .unwrap();
    fill(
        &b,
        "Value (map)",
        "${{ {id: .input.id, total: ([.input.lines[] | .qty * .price] | add)} }}",
    )
    .await;
    b.until_text("map ${{ {id: .input.id").await;
    // Then an HTTP request through the example's `hub` connection.
    b.find("select[aria-label=\"New step's kind\"]")
        .await
        .select_by_label("Call a connection")
        .await
        .unwrap();
    b.click_text("Add step below").await;
    b.find("svg.graph .node[data-key='call']").await;
    b.find("select[aria-label='Connection']")
        .await
        .select_by_label("hub (http)")
        .await
        .unwrap();
    fill(&b, "path", "/workflows").await;
    b.until_text("no problems").await;
    // Its retries and what a failure does, in the form.
    fill(&b, "Attempts (default 3)", "4").await;
    b.until_text("no problems").await;
    b.find("select[aria-label='When it fails for good']")
        .await
        .select_by_label("go on with the next step")
        .await
        .unwrap();
    b.until_text("no problems").await;
    b.screenshot("visual-editor").await;
    // A switch below it, with a second case added in its form.
    b.find("select[aria-label=\"New step's kind\"]")
        .await
        .select_by_label("Switch on a value")
        .await
        .unwrap();
    b.click_text("Add step below").await;
    b.find("svg.graph .node[data-key='switch']").await;
    fill(&b, "New case's value", "b").await;
    b.click_text("Add case").await;
    b.find("svg.graph .node[data-key='b']").await;
    b.until_text("no problems").await;
    b.screenshot("visual-switch").await;
    // A wait until a moment (long past, so the run goes on at once).
    b.find("select[aria-label=\"New step's kind\"]")
        .await
        .select_by_label("Wait")
        .await
        .unwrap();
    b.click_text("Add step below").await;
    b.find("svg.graph .node[data-key='wait']").await;
    b.find("select[aria-label='How the step waits']")
        .await
        .select_by_label("until a moment")
        .await
        .unwrap();
    fill(
        &b,
        "Until (a time such as 2026-12-24T09:00:00Z, or an expression)",
        "2020-01-01T00:00:00Z",
    )
    .await;
    b.until_text("no problems").await;
    // A child workflow, run only when a condition holds (never, here).
    b.find("select[aria-label=\"New step's kind\"]")
        .await
        .select_by_label("Run another workflow (call)")
        .await
        .unwrap();
    b.click_text("Add step below").await;
    b.find("svg.graph .node[data-key='call_2']").await;
    b.find("select[aria-label='Workflow to run']")
        .await
        .select_by_label("order-created")
        .await
        .unwrap();
    fill(&b, "Only when (if; empty: always)", "${{ false }}").await;
    b.until_text("no problems").await;
    b.screenshot("visual-call").await;

    // Both views edit the same file.
    b.click_text("Text").await;
    let text = editor_text(&b).await;
    assert!(text.contains("uses: hub.request"), "{text}");
    assert!(text.contains("path: /workflows"), "{text}");
    assert!(text.contains("    cases:\n      a:\n"), "{text}");
    assert!(text.contains("      b:\n        - id: b\n"), "{text}");
    assert!(text.contains("attempts: 4"), "{text}");
    assert!(text.contains("on_error: continue"), "{text}");
    assert!(text.contains("2020-01-01T00:00:00Z"), "{text}");
    assert!(text.contains("call: order-created"), "{text}");
    assert!(text.contains("if: ${{ false }}"), "{text}");
    b.click_text("Visual").await;

    b.click_text("Save").await;
    b.find("details.source").await;
    b.find("svg.graph .node[data-key='call']").await;
    let saved = std::fs::read_to_string(dir.path().join("workflows/visual-relay.yaml")).unwrap();
    let lint = weft(dir.path(), &["lint"]).await;
    assert_eq!(lint.code, 0, "{saved}\n{}", lint.stderr);

    let order = json!({"id": "V-1", "lines": [{"qty": 4, "price": 2.5}]}).to_string();
    let (status, accepted) = hub.post_hook("visual-relay", &[], &order).await;
    assert_eq!(status, 202, "{accepted}");
    let run_id = accepted["run_id"].as_str().unwrap().to_string();
    let run = hub.until_state(&run_id, "succeeded").await;
    assert_eq!(
        run["steps"][0]["output"],
        json!({"id": "V-1", "total": 10.0}),
        "{run}"
    );
    assert!(
        run["steps"][1]["output"]
            .to_string()
            .contains("visual-relay"),
        "the request reached the hub's API: {run}"
    );
    let states: Vec<&str> = run["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["state"].as_str().unwrap_or("?"))
        .collect();
    assert_eq!(
        states,
        [
            "succeeded",
            "succeeded",
            "succeeded",
            "succeeded",
            "skipped"
        ],
        "{run}"
    );

    // "Run with this input" on its page: a trial run that opens in the inspector.
    b.goto(&format!("{base}/#/workflows/visual-relay")).await;
    b.until_text("A trial run").await;
    let field = b.find("textarea[aria-label='Run input (JSON)']").await;
    field.clear().await.unwrap();
    field
        .send_keys(r#"{"id": "V-2", "lines": [{"qty": 1, "price": 7}]}"#)
        .await
        .unwrap();
    b.click_text("Run").await;
    b.until_text("V-2").await;
    b.until_text("succeeded").await;
    let url = b.client.current_url().await.unwrap();
    let trial = url
        .fragment()
        .unwrap()
        .trim_start_matches("/runs/")
        .to_string();
    let run = hub.until_state(&trial, "succeeded").await;
    assert_eq!(run["steps"][0]["output"]["total"], json!(7), "{run}");
    // Trial runs are the editor's: an operator is refused, and without `trial` it is a conflict.
    let operator = token(dir.path(), "operator").await;
    let start = |who: String, body: Value| {
        let url = format!("{base}/api/workflows/visual-relay/runs");
        async move {
            reqwest::Client::new()
                .post(url)
                .bearer_auth(who)
                .json(&body)
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    assert_eq!(start(operator, json!({"trial": true})).await, 403);
    assert_eq!(start(editor.clone(), json!({"input": {}})).await, 409);
    let errors = b.console_errors().await;
    assert!(errors.is_empty(), "the browser logged errors: {errors:?}");
    b.close().await;
}

const TAB: &str = "\u{E004}";
const ENTER: &str = "\u{E007}";

/// Presses Tab until the focused element's text is `label` (at most 60 times), as a person
/// without a mouse would.
async fn tab_to(b: &Browser, label: &str) {
    let label = serde_json::to_string(label).unwrap();
    tab_until(
        b,
        &format!("const e = document.activeElement; return !!e && (e.innerText || '').trim() === {label};"),
    )
    .await;
}

/// Presses Tab until the script `focused` returns true (at most 60 times).
async fn tab_until(b: &Browser, focused: &str) {
    for _ in 0..60 {
        if b.eval(focused).await == json!(true) {
            return;
        }
        b.client
            .active_element()
            .await
            .unwrap()
            .send_keys(TAB)
            .await
            .unwrap();
    }
    let shot = b.screenshot("failed").await;
    panic!(
        "Tab never reached what {focused} looks for (screenshot: {})",
        shot.display()
    );
}

async fn press_enter(b: &Browser) {
    b.client
        .active_element()
        .await
        .unwrap()
        .send_keys(ENTER)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_approvals_inbox_works_on_a_phone_with_the_keyboard_alone() {
    if !browser::available() {
        return;
    }
    let p = Project::new(
        "name: console\n",
        &[(
            "ask",
            "name: ask\ntrigger: manual\nsteps:\n  - id: ok\n    approval:\n      message: Refund 42 EUR to a customer who waited three weeks for a parcel?\n      data: ${{ .input }}\n",
        )],
    );
    let hub = Hub::start(p.path(), &[]).await;
    let base = hub.base.clone();
    let run_id = hub
        .start_run(
            "ask",
            json!({"order": "A-77", "amount": 42, "reason": "late parcel"}),
        )
        .await;
    hub.until_state(&run_id, "waiting").await;
    let operator = token(p.path(), "operator").await;

    // A phone-sized window: 390 × 844.
    let b = Browser::start(390, 844).await;
    b.goto(&format!("{base}/")).await;
    b.find("#token").await.send_keys(&operator).await.unwrap();
    press_enter(&b).await;
    b.find("header.top").await;
    // The menu opens from its button; the inbox is one of its links.
    tab_to(&b, "☰").await;
    press_enter(&b).await;
    tab_to(&b, "Approvals").await;
    press_enter(&b).await;
    b.until_text("Refund 42 EUR").await;
    let fits = b
        .eval("return document.documentElement.scrollWidth <= window.innerWidth;")
        .await;
    assert_eq!(fits, json!(true), "the inbox fits the phone's width");
    b.screenshot("approvals-phone").await;
    // Name, note, approve: all from the keyboard.
    tab_until(
        &b,
        "return document.activeElement.matches(\"input[autocomplete='name']\");",
    )
    .await;
    b.client
        .active_element()
        .await
        .unwrap()
        .send_keys("Dana")
        .await
        .unwrap();
    tab_to(&b, "Approve").await;
    press_enter(&b).await;
    let run = hub.until_state(&run_id, "succeeded").await;
    assert_eq!(run["steps"][0]["output"]["by"], "Dana", "{run}");
    b.until_text("Nothing waits for an answer.").await;
    let errors = b.console_errors().await;
    assert!(errors.is_empty(), "the browser logged errors: {errors:?}");
    b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_answers_the_console_reads_match_their_openapi_schemas() {
    let p = Project::new(
        "name: typed\n",
        &[
            (
                "ask",
                "name: ask\ntrigger: manual\nsteps:\n  - id: ok\n    approval: Go?\n",
            ),
            (
                "boom",
                "name: boom\ntrigger: manual\nsteps:\n  - id: one\n    map: 1\n  - id: two\n    fail: no ${{ .input.why }}\n",
            ),
        ],
    );
    let hub = Hub::start(p.path(), &[]).await;
    let asked = hub.start_run("ask", json!({"n": 1})).await;
    let boom = hub.start_run("boom", json!({"why": "reason"})).await;
    hub.until_state(&asked, "waiting").await;
    hub.until_state(&boom, "failed").await;
    let (status, _) = hub
        .client
        .put(format!("{}/api/secrets/typed_secret", hub.base))
        .json(&json!({"value": "a-long-enough-value"}))
        .send()
        .await
        .map(|r| (r.status().as_u16(), ()))
        .unwrap();
    assert!(status == 201 || status == 200);

    let (_, doc) = hub.get("/api/openapi.json").await;
    let components = doc["components"].clone();
    // The schema an answer of `path` (GET, 200) is documented with.
    let schema_of = |path: &str| -> Value {
        let schema =
            doc["paths"][path]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
                .clone();
        assert!(
            schema["$ref"].is_string(),
            "{path} documents its answer with a named type, not just `object`: {schema}"
        );
        json!({"$ref": schema["$ref"], "components": components})
    };
    let approval_id = {
        let (_, list) = hub.get("/api/approvals").await;
        list["approvals"][0]["id"].as_str().unwrap().to_string()
    };
    for (path, url) in [
        ("/runs", "/api/runs".to_string()),
        ("/runs/{id}", format!("/api/runs/{boom}")),
        ("/runs/{id}", format!("/api/runs/{asked}")),
        ("/approvals", "/api/approvals?state=all".to_string()),
        ("/approvals/{id}", format!("/api/approvals/{approval_id}")),
        ("/audit", "/api/audit".to_string()),
        ("/secrets", "/api/secrets".to_string()),
        ("/overview", "/api/overview".to_string()),
        ("/workflows", "/api/workflows".to_string()),
        ("/workflows/{name}", "/api/workflows/boom".to_string()),
        ("/connections", "/api/connections".to_string()),
        ("/tokens", "/api/tokens".to_string()),
        ("/catalog", "/api/catalog".to_string()),
    ] {
        let schema = schema_of(path);
        let validator = jsonschema::validator_for(&schema)
            .unwrap_or_else(|e| panic!("{path}: the documented schema is valid: {e}"));
        let (status, answer) = hub.get(&url).await;
        assert_eq!(status, 200, "{url}: {answer}");
        let problems: Vec<String> = validator
            .iter_errors(&answer)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect();
        assert!(
            problems.is_empty(),
            "{url} does not match its schema: {problems:?}\n{answer}"
        );
    }
    // The schemas say something: a run without its fields, or with a number for its id, is not one.
    let run = jsonschema::validator_for(&schema_of("/runs/{id}")).unwrap();
    assert!(!run.is_valid(&json!({"id": 5})));
    let (_, real) = hub.get(&format!("/api/runs/{boom}")).await;
    let mut wrong = real.clone();
    wrong["state"] = json!(7);
    assert!(run.is_valid(&real) && !run.is_valid(&wrong));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_and_steps_stream_as_server_sent_events() {
    let p = Project::new(
        "name: live\n",
        &[(
            "two",
            "name: two\ntrigger: manual\nsteps:\n  - id: a\n    map: 1\n  - id: b\n    map: 2\n",
        )],
    );
    let hub = Hub::start(p.path(), &[]).await;
    let mut stream = hub
        .client
        .get(format!("{}/api/events", hub.base))
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    assert!(
        stream.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let run_id = hub.start_run("two", json!({})).await;
    let mut seen = String::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    let ended = |seen: &str| {
        seen.lines().any(|l| {
            l.starts_with("data: ")
                && l.contains(&run_id)
                && l.contains("\"state\":\"succeeded\"")
                && !l.contains("\"step\"")
        })
    };
    while !ended(&seen) {
        let left = deadline.saturating_duration_since(Instant::now());
        let chunk = tokio::time::timeout(left, stream.chunk())
            .await
            .unwrap_or_else(|_| panic!("no run event within 10 s; saw:\n{seen}"))
            .unwrap()
            .expect("the stream stays open");
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(seen.contains("event: step"), "{seen}");
    assert!(seen.contains("\"step\":\"b\""), "{seen}");
    // A viewer may follow the stream; no token may not.
    let anonymous = reqwest::Client::new()
        .get(format!("{}/api/events", hub.base))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_payloads_are_fetched_when_they_are_opened() {
    if !browser::available() {
        return;
    }
    let p = Project::new(
        "name: big\n",
        &[(
            "big",
            "name: big\ntrigger: manual\nsteps:\n  - id: many\n    map: ${{ [range(6000)] }}\n  - id: few\n    map: ${{ .steps.many | length }}\n",
        )],
    );
    let hub = Hub::start(p.path(), &[]).await;
    let run_id = hub.start_run("big", json!({})).await;
    hub.until_state(&run_id, "succeeded").await;
    // The API leaves the large output out when asked, and gives it on its own.
    let (_, light) = hub.get(&format!("/api/runs/{run_id}?payloads=16384")).await;
    let omitted = light["steps"][0]["output"]["$omitted"].as_u64().unwrap();
    assert!(omitted > 16384, "{light}");
    assert_eq!(light["steps"][1]["output"], 6000);
    let (_, whole) = hub
        .get(&format!("/api/runs/{run_id}/attempt?step=many&attempt=1"))
        .await;
    assert_eq!(whole["output"].as_array().unwrap().len(), 6000);

    let b = Browser::start(1280, 800).await;
    sign_in(&b, &hub.base, ADMIN_TOKEN).await;
    b.goto(&format!("{}/#/runs/{run_id}", hub.base)).await;
    b.until_text("Steps").await;
    let page = b.client.source().await.unwrap();
    assert!(
        !page.contains("5999"),
        "the large output is not loaded with the page"
    );
    // Open the step and ask for its output.
    b.find("ol.timeline li:first-child summary")
        .await
        .click()
        .await
        .unwrap();
    b.click_text(&format!("Show ({} KB)", (omitted as f64 / 1024.0).round()))
        .await;
    b.until_text("5999").await;
    let errors = b.console_errors().await;
    assert!(errors.is_empty(), "the browser logged errors: {errors:?}");
    b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_editors_form_for_a_defined_action_follows_its_input_schemas() {
    if !browser::available() {
        return;
    }
    let p = Project::new(
        "connections:\n  gh:\n    type: github\n    auth: { type: bearer, token: { env: WEFT_TEST_OAUTH_SECRET } }\n",
        &[(
            "issues",
            "trigger: manual\nsteps:\n  - id: list\n    uses: gh.list_issues\n    with: { owner: acme, repo: shop }\n",
        )],
    );
    let hub = Hub::start(p.path(), &[]).await;
    let b = Browser::start(1280, 800).await;
    sign_in(&b, &hub.base, ADMIN_TOKEN).await;
    b.goto(&format!("{}/#/workflows/issues/edit", hub.base))
        .await;
    b.find("svg.graph .node[data-key='list']")
        .await
        .click()
        .await
        .unwrap();
    // `state` is an enum in the definition: a list of its values; `per_page` an integer.
    let options = b.all_text("select[aria-label='state'] option").await;
    assert_eq!(
        options,
        ["(not set)", "open", "closed", "all"],
        "{options:?}"
    );
    b.until_text("Comma-separated label names").await;
    let source = || async {
        let text = b
            .eval("return document.querySelector('textarea[aria-label=\"Workflow file\"]').value;")
            .await;
        text.as_str().unwrap_or_default().to_string()
    };
    b.find("select[aria-label='state']")
        .await
        .select_by_label("closed")
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !source().await.contains("state: closed") {
        assert!(
            Instant::now() < deadline,
            "the enum's value is written: {}",
            source().await
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    fill(&b, "per_page", "50").await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = b
            .eval("return document.querySelector('textarea[aria-label=\"Workflow file\"]').value;")
            .await;
        let text = text.as_str().unwrap_or_default().to_string();
        if text.contains("state: closed") && text.contains("per_page: 50") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the form writes an enum value and a number: {text}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    b.until_text("no problems").await;
    b.screenshot("defined-action-form").await;
    assert!(b.console_errors().await.is_empty());
    b.close().await;
}
