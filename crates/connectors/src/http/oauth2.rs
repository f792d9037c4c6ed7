//! OAuth 2.0 client credentials for `http` connections: fetching an access token from the token
//! endpoint (RFC 6749 section 4.4, client authentication with HTTP Basic), caching it, and
//! fetching a new one shortly before it expires or when the API answered 401.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::Value;

use super::config::OAuth2;
use crate::ActionError;
use crate::secret::Secrets;

/// A token is fetched again this long before it expires (or at a tenth of its lifetime, if
/// that is shorter).
const EARLY: Duration = Duration::from_secs(60);
/// The lifetime assumed when the server does not say (`expires_in` missing).
const DEFAULT_LIFETIME: Duration = Duration::from_secs(300);

/// The cached token of one connection.
#[derive(Default)]
pub struct TokenCache {
    token: tokio::sync::Mutex<Option<(String, Instant)>>,
}

impl TokenCache {
    /// A valid access token: the cached one, or a new one when it is missing, about to expire,
    /// or `stale` (the API refused it).
    pub async fn token(
        &self,
        client: &reqwest::Client,
        secrets: &Secrets,
        settings: &OAuth2,
        timeout: Duration,
        stale: Option<&str>,
    ) -> Result<String, ActionError> {
        // One fetch at a time: requests that find the token missing wait for it.
        let mut slot = self.token.lock().await;
        if let Some((token, refresh_at)) = slot.as_ref()
            && Instant::now() < *refresh_at
            && stale != Some(token.as_str())
        {
            return Ok(token.clone());
        }
        let (token, lifetime) = fetch(client, secrets, settings, timeout).await?;
        secrets.learn("oauth2 access token", &token);
        let early = EARLY.min(lifetime / 10);
        *slot = Some((token.clone(), Instant::now() + lifetime - early));
        Ok(token)
    }
}

async fn fetch(
    client: &reqwest::Client,
    secrets: &Secrets,
    settings: &OAuth2,
    timeout: Duration,
) -> Result<(String, Duration), ActionError> {
    let secret = secrets
        .resolve(&settings.client_secret)
        .map_err(|e| ActionError::fatal(format!("oauth2 client secret: {e}")))?;
    let mut form = vec![("grant_type", "client_credentials".to_string())];
    if let Some(scope) = &settings.scope {
        form.push(("scope", scope.clone()));
    }
    if let Some(audience) = &settings.audience {
        form.push(("audience", audience.clone()));
    }
    let what = format!("the oauth2 token endpoint {}", settings.token_url);
    let response = client
        .post(settings.token_url.clone())
        .basic_auth(&settings.client_id, Some(secret))
        .header("accept", "application/json")
        .form(&form)
        .timeout(timeout)
        .send()
        .await
        .map_err(|e| match super::guard::refused_in(&e) {
            Some(refused) => ActionError::fatal(format!("{what}: {refused}")),
            None => ActionError::retryable(format!("{what} cannot be reached: {e}")),
        })?;
    let status = response.status();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        let reason = match (body["error"].as_str(), body["error_description"].as_str()) {
            (Some(e), Some(d)) => format!("{e}: {d}"),
            (Some(e), None) => e.to_string(),
            _ => format!("HTTP {}", status.as_u16()),
        };
        let message = format!("{what} refused the client credentials ({reason})");
        return Err(
            if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
                ActionError::retryable(message)
            } else {
                ActionError::fatal(message)
            },
        );
    }
    let Some(token) = body["access_token"].as_str().filter(|t| !t.is_empty()) else {
        return Err(ActionError::fatal(format!(
            "{what} answered without an access_token"
        )));
    };
    let lifetime = body["expires_in"]
        .as_u64()
        .or_else(|| body["expires_in"].as_str().and_then(|s| s.parse().ok()))
        .map_or(DEFAULT_LIFETIME, Duration::from_secs);
    Ok((token.to_string(), lifetime))
}
