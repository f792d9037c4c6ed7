//! `weft connections connect NAME`: signs an OAuth2 (authorization code) connection in through the
//! running hub, which serves the provider's redirect (`/oauth/callback`) and keeps the tokens in
//! the secret store. Prints the provider's sign-in address and waits until the hub says the
//! connection is connected.

use std::time::{Duration, Instant};

use anyhow::anyhow;
use serde_json::Value;

use crate::{CliError, CmdResult, exit};

/// How long a person has to sign in (the hub forgets a started sign-in after as long).
const WAIT: Duration = Duration::from_secs(600);

/// The hub's API token: `WEFT_TOKEN` (an admin's).
fn token() -> Result<String, CliError> {
    std::env::var("WEFT_TOKEN")
        .ok()
        .filter(|t| !t.is_empty())
        .ok_or_else(|| {
            CliError::usage(anyhow!(
                "set WEFT_TOKEN to an admin token of the hub (signing a connection in replaces its credentials)"
            ))
        })
}

/// The hub's answer as JSON, or what it said when it refused.
async fn call(request: reqwest::RequestBuilder, what: &str) -> Result<Value, CliError> {
    let response = request.send().await.map_err(|e| {
        CliError::usage(anyhow!(
            "cannot reach the hub to {what}: {e}; is `weft serve` running there (--hub)?"
        ))
    })?;
    let status = response.status();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        let message = body["error"]["message"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| format!("HTTP {status}"));
        return Err(CliError::usage(anyhow!(
            "the hub refused to {what}: {message}"
        )));
    }
    Ok(body)
}

/// Where the connection stands: `(state, expires_at)`.
async fn state(
    client: &reqwest::Client,
    hub: &str,
    token: &str,
    name: &str,
) -> Result<(String, Value), CliError> {
    let list = call(
        client
            .get(format!("{hub}/api/connections"))
            .bearer_auth(token),
        "list the connections",
    )
    .await?;
    let found = list["connections"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["name"] == name))
        .cloned()
        .unwrap_or(Value::Null);
    Ok((
        found["sign_in"]["state"].as_str().unwrap_or("").to_string(),
        found["sign_in"]["expires_at"].clone(),
    ))
}

/// Starts the sign-in of `name` at the hub at `hub` and waits for it.
pub(crate) async fn connect(name: &str, hub: &str) -> CmdResult {
    let hub = hub.trim_end_matches('/');
    let token = token()?;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .map_err(|e| CliError::internal(anyhow!("cannot make an HTTP client: {e}")))?;
    let before = state(&client, hub, &token, name).await?;
    let started = call(
        client
            .post(format!("{hub}/api/connections/{name}/connect"))
            .bearer_auth(&token),
        &format!("start the sign-in of `{name}`"),
    )
    .await?;
    let url = started["authorize_url"].as_str().unwrap_or_default();
    eprintln!(
        "Open this address in a browser and sign in; the provider then returns to {}:\n\n  {url}\n\nWaiting for the sign-in (at most {} minutes)…",
        started["redirect_uri"].as_str().unwrap_or_default(),
        WAIT.as_secs() / 60
    );
    let deadline = Instant::now() + WAIT;
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let now = state(&client, hub, &token, name).await?;
        if now.0 == "connected" && (before.0 != "connected" || now.1 != before.1) {
            eprintln!("`{name}` is connected.");
            return Ok(exit::OK);
        }
    }
    eprintln!(
        "No sign-in within {} minutes; run the command again.",
        WAIT.as_secs() / 60
    );
    Ok(exit::FAILED)
}
