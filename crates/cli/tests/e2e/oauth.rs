//! OAuth2 sign-in of a connection against a local authorization server: the hub starts the
//! sign-in, serves the provider's redirect, keeps the tokens in the secret store, refreshes them
//! (keeping the rotated refresh token across a restart), and when the refresh token is revoked
//! marks the connection "needs sign-in" instead of retrying.

use std::time::Duration;

use serde_json::{Value, json};
use weft_testkit::oauth::{AuthorizationServer, CLIENT_ID};

use crate::hub::Hub;
use crate::support::Project;

fn project(server: &AuthorizationServer) -> Project {
    let a = server.addr;
    Project::new(
        &format!(
            "connections:\n  crm:\n    type: http\n    base_url: http://{a}\n    allow_private_network: true\n    auth:\n      type: oauth2\n      grant: authorization_code\n      authorize_url: http://{a}/authorize\n      token_url: http://{a}/token\n      client_id: {CLIENT_ID}\n      client_secret: {{ env: WEFT_TEST_OAUTH_SECRET }}\n      scope: contacts\n"
        ),
        &[(
            "me",
            "trigger: manual\nsteps:\n  - id: me\n    uses: crm.request\n    with: { path: /api/me }\n    retry: { attempts: 3, backoff: exponential, initial: 100ms, max: 1s }\noutput: ${{ .steps.me.body }}\n",
        )],
    )
}

async fn sign_in_state(hub: &Hub) -> Value {
    let (status, list) = hub.get("/api/connections").await;
    assert_eq!(status, 200, "{list}");
    list["connections"][0]["sign_in"].clone()
}

async fn run(hub: &Hub) -> Value {
    let id = hub.start_run("me", json!({})).await;
    hub.until_state_any(&id, &["succeeded", "failed"]).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_signs_in_refreshes_rotates_and_needs_sign_in_when_revoked() {
    // Access tokens live 30 s, under the hub's one-minute margin: every call refreshes.
    let server = AuthorizationServer::start("s3cret", 30).await;
    let p = project(&server);
    let mut hub = Hub::start(p.path(), &[]).await;

    // Not signed in: visible, and a run fails at once saying so.
    assert_eq!(sign_in_state(&hub).await["state"], "not_connected");
    let ready = hub.text("/readyz").await;
    assert!(ready.contains("\"needs_sign_in\""), "{ready}");
    assert!(
        hub.text("/metrics")
            .await
            .contains("weft_connection_needs_sign_in{connection=\"crm\"} 1")
    );
    let failed = run(&hub).await;
    assert_eq!(failed["state"], "failed", "{failed}");
    let message = failed["steps"][0]["error"]["message"].as_str().unwrap();
    assert!(message.contains("is not signed in yet"), "{message}");
    assert_eq!(
        failed["steps"].as_array().unwrap().len(),
        1,
        "not retried: {failed}"
    );

    // A viewer may not start it; the admin may.
    let (status, started) = hub
        .post_json("/api/connections/crm/connect", json!({}))
        .await;
    assert_eq!(status, 200, "{started}");
    let authorize = started["authorize_url"].as_str().unwrap();
    assert!(
        authorize.contains("code_challenge_method=S256"),
        "{authorize}"
    );
    assert!(authorize.starts_with(&format!("http://{}/authorize?", server.addr)));
    // The browser: to the provider, which sends it back to the hub.
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let back = browser.get(authorize).send().await.unwrap();
    assert_eq!(back.status(), 303, "the provider redirects");
    let callback = back.headers()["location"].to_str().unwrap().to_string();
    assert!(
        callback.starts_with(&format!("{}/oauth/callback?", hub.base)),
        "{callback}"
    );
    let page = browser.get(&callback).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("Connected"));
    // The same `state` does not work twice.
    let again = browser.get(&callback).send().await.unwrap();
    assert_eq!(again.status(), 400);
    assert_eq!(sign_in_state(&hub).await["state"], "connected");
    assert!(
        hub.text("/metrics")
            .await
            .contains("weft_connection_needs_sign_in{connection=\"crm\"} 0")
    );

    // Runs use the token, refreshing it each time; the provider rotates the refresh token.
    let ok = run(&hub).await;
    assert_eq!(ok["state"], "succeeded", "{ok}");
    assert!(
        !ok.to_string().contains("at-"),
        "the access token is scrubbed from the run: {ok}"
    );
    let first_rotation = server.current_refresh_token();
    let ok = run(&hub).await;
    assert_eq!(ok["state"], "succeeded", "{ok}");
    assert!(server.refreshes() >= 2, "{}", server.refreshes());
    assert_ne!(server.current_refresh_token(), first_rotation);

    // A restart reads the rotated refresh token from the secret store.
    hub.sigterm();
    let _ = tokio::time::timeout(Duration::from_secs(30), hub.child.wait()).await;
    hub = Hub::start(p.path(), &[]).await;
    let ok = run(&hub).await;
    assert_eq!(ok["state"], "succeeded", "after a restart: {ok}");
    assert_eq!(server.refused_refreshes(), 0);

    // Revoked: one refused refresh, then "needs sign-in" everywhere, and no retry loop.
    server.revoke();
    let failed = run(&hub).await;
    assert_eq!(failed["state"], "failed", "{failed}");
    let message = failed["steps"][0]["error"]["message"].as_str().unwrap();
    assert!(message.contains("needs sign-in"), "{message}");
    assert_eq!(
        failed["steps"].as_array().unwrap().len(),
        1,
        "not retried: {failed}"
    );
    let failed = run(&hub).await;
    assert_eq!(failed["state"], "failed");
    assert_eq!(
        server.refused_refreshes(),
        1,
        "the second run did not ask the provider again"
    );
    let state = sign_in_state(&hub).await;
    assert_eq!(state["state"], "needs_sign_in", "{state}");
    assert!(
        state["reason"].as_str().unwrap().contains("invalid_grant"),
        "{state}"
    );
    let ready = hub.text("/readyz").await;
    assert!(ready.contains("invalid_grant"), "{ready}");
    assert!(
        hub.text("/metrics")
            .await
            .contains("weft_connection_needs_sign_in{connection=\"crm\"} 1")
    );
    let log = hub.log.lock().unwrap().clone();
    assert!(
        log.iter().any(|l| l.to_string().contains("needs sign-in")),
        "the log says so"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_connects_a_connection_from_the_console() {
    use crate::browser::{Browser, available};
    if !available() {
        return;
    }
    let server = AuthorizationServer::start("s3cret", 3600).await;
    let p = project(&server);
    let hub = Hub::start(p.path(), &[]).await;
    let b = Browser::start(1280, 800).await;
    crate::console::sign_in(&b, &hub.base, crate::hub::ADMIN_TOKEN).await;
    b.click_text("Connections").await;
    b.until_text("Not connected").await;
    b.screenshot("connect-before").await;
    b.click_text("Connect").await;
    b.click_text("Open the sign-in page").await;
    // The provider approves at once and sends the new tab back to the hub.
    let console = b.client.window().await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let tab = loop {
        let windows = b.client.windows().await.unwrap();
        if let Some(tab) = windows.into_iter().find(|w| *w != console) {
            break tab;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no sign-in tab opened"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    b.client.switch_to_window(tab).await.unwrap();
    b.until_text("is connected; Weft keeps its tokens").await;
    b.screenshot("connect-callback").await;
    b.client.close_window().await.unwrap();
    b.client.switch_to_window(console).await.unwrap();
    b.until_text("access token until").await;
    b.until_text("Sign in again").await;
    b.screenshot("connect-after").await;
    assert_eq!(sign_in_state(&hub).await["state"], "connected");
    assert!(b.console_errors().await.is_empty());
    b.close().await;
}
