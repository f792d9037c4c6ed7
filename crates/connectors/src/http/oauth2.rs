//! OAuth 2.0 for `http` connections.
//!
//! Client credentials (RFC 6749 section 4.4): fetching an access token from the token endpoint,
//! caching it, and fetching a new one shortly before it expires or when the API answered 401.
//!
//! Authorization code with PKCE (RFC 6749 section 4.1, RFC 7636), [`SignIn`]: a person signs in
//! once; the hub (which serves the redirect, `/oauth/callback`) trades the code for tokens here and
//! keeps them in the secret store as `oauth2.<connection>` (`{access_token, refresh_token,
//! expires_at}`). Requests use the access token, refreshed shortly before it expires and once when
//! the API answers 401; a refresh token the provider replaces (rotation) is stored at once. When
//! the provider refuses the refresh token, the connection "needs sign-in": its calls fail at once
//! with that message (no request, no retry loop) until someone signs in again.

use std::time::{Duration, Instant};

use reqwest::{StatusCode, Url};
use serde_json::Value;

use super::config::{ClientAuth, Grant, OAuth2, ServiceAccount};
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
        self.cached(secrets, stale, || fetch(client, secrets, settings, timeout))
            .await
    }

    /// The same for a service account: a token for a signed JWT.
    pub async fn service_account(
        &self,
        client: &reqwest::Client,
        secrets: &Secrets,
        account: &ServiceAccount,
        timeout: Duration,
        stale: Option<&str>,
        guarded: bool,
    ) -> Result<String, ActionError> {
        self.cached(secrets, stale, || {
            fetch_service_account(client, secrets, account, timeout, guarded)
        })
        .await
    }

    async fn cached<F, Fut>(
        &self,
        secrets: &Secrets,
        stale: Option<&str>,
        fetch: F,
    ) -> Result<String, ActionError>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<(String, Duration), ActionError>>,
    {
        // One fetch at a time: requests that find the token missing wait for it.
        let mut slot = self.token.lock().await;
        if let Some((token, refresh_at)) = slot.as_ref()
            && Instant::now() < *refresh_at
            && stale != Some(token.as_str())
        {
            return Ok(token.clone());
        }
        let (token, lifetime) = fetch().await?;
        secrets.learn("oauth2 access token", &token);
        let early = EARLY.min(lifetime / 10);
        *slot = Some((token.clone(), Instant::now() + lifetime - early));
        Ok(token)
    }
}

/// The token endpoint Google's key files name when they name none.
const GOOGLE_TOKEN_URI: &str = "https://oauth2.googleapis.com/token";

/// Signs a JWT for the service account and trades it for an access token (RFC 7523).
async fn fetch_service_account(
    client: &reqwest::Client,
    secrets: &Secrets,
    account: &ServiceAccount,
    timeout: Duration,
    guarded: bool,
) -> Result<(String, Duration), ActionError> {
    let text = secrets
        .resolve(&account.key)
        .map_err(|e| ActionError::fatal(format!("service account key: {e}")))?;
    let key: Value = serde_json::from_str(&text).map_err(|e| {
        ActionError::fatal(format!(
            "the service account key is not the JSON of a key file ({e})"
        ))
    })?;
    let (Some(email), Some(pem)) = (key["client_email"].as_str(), key["private_key"].as_str())
    else {
        return Err(ActionError::fatal(
            "the service account key has no `client_email` or `private_key`",
        ));
    };
    if let Some(private) = key["private_key"].as_str() {
        secrets.learn("service account private key", private);
    }
    let token_url = match &account.token_url {
        Some(url) => url.clone(),
        None => Url::parse(key["token_uri"].as_str().unwrap_or(GOOGLE_TOKEN_URI)).map_err(|e| {
            ActionError::fatal(format!(
                "the service account key's `token_uri` is not a URL: {e}"
            ))
        })?,
    };
    if guarded {
        super::guard::check_url(&token_url).map_err(|r| {
            ActionError::fatal(format!("the service account token endpoint: {}", r.0))
        })?;
    }
    let now = jiff::Timestamp::now().as_second();
    let mut claims = serde_json::json!({
        "iss": email,
        "scope": account.scope,
        "aud": token_url.as_str(),
        "iat": now,
        "exp": now + 3600,
    });
    if let Some(subject) = &account.subject {
        claims["sub"] = Value::String(subject.clone());
    }
    let assertion = jwt_rs256(pem, &claims).map_err(ActionError::fatal)?;
    let what = format!("the service account token endpoint {token_url}");
    let request = client
        .post(token_url)
        .header("accept", "application/json")
        .timeout(timeout)
        .form(&[
            ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
            ("assertion", assertion.as_str()),
        ]);
    let body = token_call(request, &what, "the service account's assertion").await?;
    let token = body["access_token"].as_str().unwrap_or_default();
    let lifetime = expires_in(&body).map_or(DEFAULT_LIFETIME, Duration::from_secs);
    Ok((token.to_string(), lifetime))
}

/// A JWT of `claims` signed with RS256 under the PKCS#8 PEM private key `pem`.
pub fn jwt_rs256(pem: &str, claims: &Value) -> Result<String, String> {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let body: String = pem
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .map(str::trim)
        .collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(body)
        .map_err(|_| "the service account's private_key is not PEM".to_string())?;
    let pair = ring::signature::RsaKeyPair::from_pkcs8(&der)
        .map_err(|e| format!("the service account's private_key is not a PKCS#8 RSA key ({e})"))?;
    let header = b64.encode(br#"{"alg":"RS256","typ":"JWT"}"#);
    let payload = b64.encode(claims.to_string());
    let message = format!("{header}.{payload}");
    let mut signature = vec![0; pair.public().modulus_len()];
    pair.sign(
        &ring::signature::RSA_PKCS1_SHA256,
        &ring::rand::SystemRandom::new(),
        message.as_bytes(),
        &mut signature,
    )
    .map_err(|_| "the JWT could not be signed".to_string())?;
    Ok(format!("{message}.{}", b64.encode(signature)))
}

/// Longest token lifetime believed: a larger `expires_in` (a provider's mistake, or a hostile
/// answer) would overflow the clock arithmetic; the token is asked for again after a year at most.
const MAX_LIFETIME: u64 = 365 * 24 * 3600;

/// A token answer's `expires_in` in seconds (a number, or a number in a string), at most
/// [`MAX_LIFETIME`].
pub(crate) fn expires_in(body: &Value) -> Option<u64> {
    body["expires_in"]
        .as_u64()
        .or_else(|| body["expires_in"].as_str().and_then(|s| s.parse().ok()))
        .map(|secs| secs.min(MAX_LIFETIME))
}

/// A token request with the client's credentials where the settings say (`client_auth`).
fn token_request(
    client: &reqwest::Client,
    secrets: &Secrets,
    settings: &OAuth2,
    timeout: Duration,
    mut form: Vec<(&'static str, String)>,
) -> Result<reqwest::RequestBuilder, ActionError> {
    let secret = secrets
        .resolve(&settings.client_secret)
        .map_err(|e| ActionError::fatal(format!("oauth2 client secret: {e}")))?;
    let mut builder = client
        .post(settings.token_url.clone())
        .header("accept", "application/json")
        .timeout(timeout);
    match settings.client_auth {
        ClientAuth::Basic => builder = builder.basic_auth(&settings.client_id, Some(secret)),
        ClientAuth::Body => {
            form.push(("client_id", settings.client_id.clone()));
            form.push(("client_secret", secret));
        }
    }
    Ok(builder.form(&form))
}

/// Sends a token request: the answer's JSON, or why there is none (refusals are fatal, a server
/// that cannot answer now is retryable).
async fn token_call(
    request: reqwest::RequestBuilder,
    what: &str,
    refused: &str,
) -> Result<Value, ActionError> {
    let response = request
        .send()
        .await
        .map_err(|e| match super::guard::refused_in(&e) {
            Some(guard) => ActionError::fatal(format!("{what}: {guard}")),
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
        let message = format!("{what} refused {refused} ({reason})");
        return Err(
            if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
                ActionError::retryable(message)
            } else {
                ActionError::fatal(message)
            },
        );
    }
    if body["access_token"].as_str().is_none_or(str::is_empty) {
        return Err(ActionError::fatal(format!(
            "{what} answered without an access_token"
        )));
    }
    Ok(body)
}

async fn fetch(
    client: &reqwest::Client,
    secrets: &Secrets,
    settings: &OAuth2,
    timeout: Duration,
) -> Result<(String, Duration), ActionError> {
    let mut form = vec![("grant_type", "client_credentials".to_string())];
    if let Some(scope) = &settings.scope {
        form.push(("scope", scope.clone()));
    }
    if let Some(audience) = &settings.audience {
        form.push(("audience", audience.clone()));
    }
    let what = format!("the oauth2 token endpoint {}", settings.token_url);
    let request = token_request(client, secrets, settings, timeout, form)?;
    let body = token_call(request, &what, "the client credentials").await?;
    let token = body["access_token"].as_str().unwrap_or_default();
    let lifetime = expires_in(&body).map_or(DEFAULT_LIFETIME, Duration::from_secs);
    Ok((token.to_string(), lifetime))
}

/// The secret store's name for a connection's tokens.
pub fn token_secret(connection: &str) -> String {
    format!("oauth2.{connection}")
}

/// Where an authorization-code connection stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SignInState {
    /// Tokens are stored; the access token expires at this Unix time, if the provider said.
    Connected {
        /// When the access token expires (seconds since 1970).
        expires_at: Option<i64>,
    },
    /// Nobody has signed in yet.
    NotConnected,
    /// The provider refused the refresh token (revoked, expired, rotated elsewhere): a person
    /// must sign in again.
    NeedsSignIn {
        /// What the provider said.
        reason: String,
    },
}

impl SignInState {
    /// A short label: `connected`, `not_connected` or `needs_sign_in`.
    pub fn label(&self) -> &'static str {
        match self {
            SignInState::Connected { .. } => "connected",
            SignInState::NotConnected => "not_connected",
            SignInState::NeedsSignIn { .. } => "needs_sign_in",
        }
    }
}

/// The tokens of an authorization-code connection, as stored.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
struct Stored {
    access_token: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    refresh_token: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    expires_at: Option<i64>,
}

/// The OAuth2 authorization-code side of one connection, shared by its connector (which needs
/// access tokens) and the hub (which runs the sign-in).
pub struct SignIn {
    connection: String,
    settings: OAuth2,
    authorize_url: Url,
    client: reqwest::Client,
    secrets: Secrets,
    timeout: Duration,
    /// One refresh at a time.
    refreshing: tokio::sync::Mutex<()>,
    /// Why the provider refused, and the stored value it refused: until that value changes (a
    /// new sign-in), calls fail at once.
    refused: std::sync::Mutex<Option<(String, String)>>,
}

impl SignIn {
    /// The sign-in of `connection`, if its auth is `grant: authorization_code`.
    pub fn new(
        connection: &str,
        settings: &OAuth2,
        client: reqwest::Client,
        secrets: Secrets,
        timeout: Duration,
    ) -> Option<SignIn> {
        let Grant::AuthorizationCode { authorize_url } = &settings.grant else {
            return None;
        };
        Some(SignIn {
            connection: connection.to_string(),
            settings: settings.clone(),
            authorize_url: authorize_url.clone(),
            client,
            secrets,
            timeout,
            refreshing: tokio::sync::Mutex::new(()),
            refused: std::sync::Mutex::new(None),
        })
    }

    /// Why the provider refused the stored tokens `text`, if it did (a new sign-in stores others).
    fn refused_for(&self, text: &str) -> Option<String> {
        let refused = self.refused.lock().unwrap_or_else(|e| e.into_inner());
        refused
            .as_ref()
            .filter(|(_, stored)| stored == text)
            .map(|(reason, _)| reason.clone())
    }

    /// Remembers that the provider refused the stored tokens `text`, and why.
    fn refuse(&self, reason: &str, text: String) {
        *self.refused.lock().unwrap_or_else(|e| e.into_inner()) = Some((reason.to_string(), text));
    }

    /// The connection's name.
    pub fn connection(&self) -> &str {
        &self.connection
    }

    fn stored(&self) -> Option<(String, Result<Stored, String>)> {
        let text = self.secrets.stored(&token_secret(&self.connection))?;
        let parsed = serde_json::from_str::<Stored>(&text).map_err(|e| {
            format!(
                "the stored sign-in `{}` cannot be read ({e})",
                token_secret(&self.connection)
            )
        });
        Some((text, parsed))
    }

    /// Where the connection stands now.
    pub fn state(&self) -> SignInState {
        let Some((text, parsed)) = self.stored() else {
            return SignInState::NotConnected;
        };
        if let Some(reason) = self.refused_for(&text) {
            return SignInState::NeedsSignIn { reason };
        }
        match parsed {
            Ok(stored) => SignInState::Connected {
                expires_at: stored.expires_at,
            },
            Err(reason) => SignInState::NeedsSignIn { reason },
        }
    }

    /// The provider's sign-in page for this connection: the user agent goes there, and comes
    /// back to `redirect_uri` with `state` and a code.
    pub fn authorize_url(&self, redirect_uri: &str, state: &str, challenge: &str) -> String {
        let mut url = self.authorize_url.clone();
        {
            let mut query = url.query_pairs_mut();
            query
                .append_pair("response_type", "code")
                .append_pair("client_id", &self.settings.client_id)
                .append_pair("redirect_uri", redirect_uri)
                .append_pair("state", state)
                .append_pair("code_challenge", challenge)
                .append_pair("code_challenge_method", "S256");
            if let Some(scope) = &self.settings.scope {
                query.append_pair("scope", scope);
            }
        }
        url.to_string()
    }

    /// Trades the code the provider sent back for tokens, and stores them.
    pub async fn exchange(
        &self,
        code: &str,
        verifier: &str,
        redirect_uri: &str,
    ) -> Result<(), ActionError> {
        let _one = self.refreshing.lock().await;
        let what = format!("the oauth2 token endpoint {}", self.settings.token_url);
        let form = vec![
            ("grant_type", "authorization_code".to_string()),
            ("code", code.to_string()),
            ("redirect_uri", redirect_uri.to_string()),
            ("code_verifier", verifier.to_string()),
        ];
        let request = token_request(
            &self.client,
            &self.secrets,
            &self.settings,
            self.timeout,
            form,
        )?;
        let body = token_call(request, &what, "the authorization code").await?;
        let stored = self.tokens_of(&body, None);
        self.keep(&stored)
            .await
            .map_err(|e| ActionError::fatal(format!("the tokens cannot be stored: {e}")))?;
        *self.refused.lock().unwrap_or_else(|e| e.into_inner()) = None;
        tracing::info!(connection = %self.connection, "oauth2 sign-in completed");
        Ok(())
    }

    fn tokens_of(&self, body: &Value, previous_refresh: Option<String>) -> Stored {
        let expires_at =
            expires_in(body).map(|secs| jiff::Timestamp::now().as_second() + secs as i64);
        Stored {
            access_token: body["access_token"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            // A provider that rotates sends a new one; one that does not keeps the old valid.
            refresh_token: body["refresh_token"]
                .as_str()
                .filter(|t| !t.is_empty())
                .map(str::to_string)
                .or(previous_refresh),
            expires_at,
        }
    }

    async fn keep(&self, stored: &Stored) -> Result<(), String> {
        self.secrets
            .learn("oauth2 access token", &stored.access_token);
        if let Some(refresh) = &stored.refresh_token {
            self.secrets.learn("oauth2 refresh token", refresh);
        }
        let text = serde_json::to_string(stored).expect("tokens serialize");
        self.secrets
            .store(&token_secret(&self.connection), &text)
            .await
    }

    fn needs_sign_in(&self, reason: &str) -> ActionError {
        ActionError::fatal(format!(
            "connection `{c}` needs sign-in: {reason}; sign in again with `weft connections connect {c}` or the console's Connect button",
            c = self.connection
        ))
    }

    /// A valid access token: the stored one, or a refreshed one when it is about to expire or the
    /// API refused `stale`.
    pub async fn access_token(&self, stale: Option<&str>) -> Result<String, ActionError> {
        let _one = self.refreshing.lock().await;
        let Some((text, parsed)) = self.stored() else {
            return Err(ActionError::fatal(format!(
                "connection `{c}` is not signed in yet: sign in with `weft connections connect {c}` or the console's Connect button",
                c = self.connection
            )));
        };
        if let Some(reason) = self.refused_for(&text) {
            return Err(self.needs_sign_in(&reason));
        }
        let stored = parsed.map_err(|reason| self.needs_sign_in(&reason))?;
        self.secrets
            .learn("oauth2 access token", &stored.access_token);
        if let Some(refresh) = &stored.refresh_token {
            self.secrets.learn("oauth2 refresh token", refresh);
        }
        let now = jiff::Timestamp::now().as_second();
        let expiring = stored
            .expires_at
            .is_some_and(|at| at - (EARLY.as_secs() as i64) <= now);
        if !expiring && stale != Some(stored.access_token.as_str()) {
            return Ok(stored.access_token);
        }
        let Some(refresh) = stored.refresh_token.clone() else {
            let reason =
                "the access token expired and the provider gave no refresh token".to_string();
            self.refuse(&reason, text);
            return Err(self.needs_sign_in(&reason));
        };
        let what = format!("the oauth2 token endpoint {}", self.settings.token_url);
        let form = vec![
            ("grant_type", "refresh_token".to_string()),
            ("refresh_token", refresh.clone()),
        ];
        let request = token_request(
            &self.client,
            &self.secrets,
            &self.settings,
            self.timeout,
            form,
        )?;
        let body = match token_call(request, &what, "the refresh token").await {
            Ok(body) => body,
            Err(ActionError::Fatal { message, .. }) => {
                tracing::warn!(connection = %self.connection, "oauth2 connection needs sign-in: {message}");
                self.refuse(&message, text);
                return Err(self.needs_sign_in(&message));
            }
            Err(retryable) => return Err(retryable),
        };
        let renewed = self.tokens_of(&body, Some(refresh));
        if let Err(e) = self.keep(&renewed).await {
            // The new tokens work for this process; after a restart a rotated-away refresh token
            // will be refused and the connection will need sign-in.
            tracing::error!(connection = %self.connection, "the refreshed oauth2 tokens could not be stored: {e}");
        }
        Ok(renewed.access_token)
    }
}
