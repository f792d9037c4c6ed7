//! The `request` action of the `http` connector.
//!
//! Inputs (`with:`), all optional:
//!
//! | key | meaning |
//! |---|---|
//! | `method` | `GET` (default), `POST`, `PUT`, `PATCH`, `DELETE`, `HEAD` or `OPTIONS` |
//! | `url` | a full `http`/`https` URL |
//! | `path` | appended to the connection's `base_url` (`/orders/7.json`) |
//! | `headers` | a mapping of header names to text; wins over the connection's headers |
//! | `query` | a mapping of query parameters; a list value repeats the parameter |
//! | `body` | any JSON value, sent as `application/json` |
//! | `text` | text, sent as `text/plain; charset=utf-8` unless a `content-type` header is given |
//! | `form` | a mapping, sent as `application/x-www-form-urlencoded` |
//! | `timeout` | a duration such as `10s`, instead of the connection's timeout |
//!
//! When the connection has `sign`, every request carries Standard Webhooks headers
//! (`webhook-id`, `webhook-timestamp`, `webhook-signature`) over the exact body bytes sent; see
//! [`Signing`](super::config::Signing).
//!
//! The output is `{status, headers, body}`: header names in lower case, the body parsed as JSON when
//! the response says it is JSON, text when it is UTF-8, and otherwise `null` with the bytes in
//! `body_base64`.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine as _;
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue, RETRY_AFTER};
use reqwest::{Method, StatusCode, Url};
use serde_json::{Map, Value, json};
use weft_core::{Connection, json_kind};

use super::config::{Auth, HttpConfig, Signing};
use crate::secret::Secrets;
use crate::{ActionError, Call, Connector};

/// Keys the `request` action accepts under `with:`.
pub const REQUEST_INPUTS: &[&str] = &[
    "method", "url", "path", "headers", "query", "body", "text", "form", "timeout",
];

const USER_AGENT: &str = concat!("weft/", env!("CARGO_PKG_VERSION"));

/// A live `http` connection.
pub struct HttpConnector {
    config: HttpConfig,
    client: reqwest::Client,
    tokens: super::oauth2::TokenCache,
    /// The sign-in of an OAuth2 authorization-code connection.
    sign_in: Option<Arc<super::oauth2::SignIn>>,
    secrets: Secrets,
}

fn install_crypto_provider() {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        // Another part of the process may have installed one already; either is fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

impl HttpConnector {
    /// Builds the connector from a connection's settings.
    pub fn build(connection: &Connection, secrets: &Secrets) -> Result<HttpConnector, String> {
        let config = crate::settings::connection(connection, HttpConfig::decode)?;
        let built = HttpConnector::new(config)?;
        let sign_in = match &built.config.auth {
            Some(Auth::OAuth2(settings)) => super::oauth2::SignIn::new(
                &connection.name,
                settings,
                built.client.clone(),
                secrets.clone(),
                built.config.timeout,
            )
            .map(Arc::new),
            _ => None,
        };
        Ok(HttpConnector {
            secrets: secrets.clone(),
            sign_in,
            ..built
        })
    }

    /// Builds the connector from decoded settings.
    pub fn new(config: HttpConfig) -> Result<HttpConnector, String> {
        install_crypto_provider();
        let mut builder = reqwest::Client::builder()
            .user_agent(USER_AGENT)
            .connect_timeout(config.timeout.min(Duration::from_secs(10)));
        // A header of the connection's own carrying its API key is not removed on a redirect to
        // another origin the way `Authorization` is: such redirects are not followed.
        let keep_origin = match &config.auth {
            Some(super::config::Auth::ApiKey { .. }) => Some(config.clone()),
            _ => None,
        };
        if !config.allow_private_network {
            // The guard must see every address: no proxy from the environment resolves names
            // behind its back.
            builder = builder
                .no_proxy()
                .dns_resolver(std::sync::Arc::new(super::guard::PublicOnly));
        }
        builder = builder.redirect(super::guard::redirects(
            !config.allow_private_network,
            keep_origin,
        ));
        let client = builder
            .build()
            .map_err(|e| format!("cannot create the HTTP client: {e}"))?;
        Ok(HttpConnector {
            config,
            client,
            tokens: Default::default(),
            sign_in: None,
            secrets: Secrets::new(),
        })
    }
}

/// A request, decoded from a step's inputs.
struct Request {
    method: Method,
    url: Url,
    headers: HeaderMap,
    body: Body,
    timeout: Duration,
}

enum Body {
    None,
    Json(Value),
    Text(String),
    Form(Vec<(String, String)>),
}

fn scalar_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Null => Some(String::new()),
        _ => None,
    }
}

fn decode_request(input: &Value, config: &HttpConfig) -> Result<Request, String> {
    let Value::Object(with) = input else {
        return Err(format!(
            "`with` must be a mapping, got {}",
            json_kind(input)
        ));
    };
    if let Some(key) = with.keys().find(|k| !REQUEST_INPUTS.contains(&k.as_str())) {
        return Err(format!(
            "unknown input `{key}`; expected one of: {}",
            REQUEST_INPUTS.join(", ")
        ));
    }
    let method = match with.get("method") {
        None | Some(Value::Null) => Method::GET,
        Some(Value::String(m)) => match m.to_ascii_uppercase().as_str() {
            "GET" => Method::GET,
            "POST" => Method::POST,
            "PUT" => Method::PUT,
            "PATCH" => Method::PATCH,
            "DELETE" => Method::DELETE,
            "HEAD" => Method::HEAD,
            "OPTIONS" => Method::OPTIONS,
            other => {
                return Err(format!(
                    "`with.method`: `{other}` is not an HTTP method Weft sends"
                ));
            }
        },
        Some(other) => {
            return Err(format!(
                "`with.method` must be text, got {}",
                json_kind(other)
            ));
        }
    };
    let text_input = |key: &str| -> Result<Option<String>, String> {
        match with.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(other) => Err(format!(
                "`with.{key}` must be text, got {}",
                json_kind(other)
            )),
        }
    };
    let mut url = match (text_input("url")?, text_input("path")?, &config.base_url) {
        (Some(_), Some(_), _) => {
            return Err("give either `with.url` or `with.path`, not both".into());
        }
        (Some(url), None, _) => {
            let url = Url::parse(&url)
                .map_err(|e| format!("`with.url` `{url}` is not a valid URL: {e}"))?;
            if !matches!(url.scheme(), "http" | "https") {
                return Err(format!(
                    "`with.url` must be http or https, not {}",
                    url.scheme()
                ));
            }
            url
        }
        (None, Some(path), Some(base)) => join(base, &path)?,
        (None, Some(_), None) => {
            return Err(
                "`with.path` needs a `base_url` on the connection; give a full `with.url` instead"
                    .into(),
            );
        }
        (None, None, Some(base)) => base.clone(),
        (None, None, None) => {
            return Err("the request needs `with.url` (or a `base_url` on the connection)".into());
        }
    };
    match with.get("query") {
        None | Some(Value::Null) => {}
        Some(Value::Object(params)) => {
            let mut pairs = url.query_pairs_mut();
            for (k, v) in params {
                match v {
                    Value::Array(items) => {
                        for item in items {
                            let text = scalar_text(item).ok_or_else(|| {
                                format!(
                                    "`with.query.{k}` holds a nested value; use text or numbers"
                                )
                            })?;
                            pairs.append_pair(k, &text);
                        }
                    }
                    other => {
                        let text = scalar_text(other).ok_or_else(|| {
                            format!("`with.query.{k}` must be text, a number or a list of them")
                        })?;
                        pairs.append_pair(k, &text);
                    }
                }
            }
        }
        Some(other) => {
            return Err(format!(
                "`with.query` must be a mapping, got {}",
                json_kind(other)
            ));
        }
    }

    let mut headers = HeaderMap::new();
    for (name, value) in &config.headers {
        headers.insert(name.clone(), value.clone());
    }
    match with.get("headers") {
        None | Some(Value::Null) => {}
        Some(Value::Object(map)) => {
            for (k, v) in map {
                let name = HeaderName::from_bytes(k.as_bytes())
                    .map_err(|_| format!("`with.headers`: `{k}` is not a valid header name"))?;
                let text =
                    scalar_text(v).ok_or_else(|| format!("`with.headers.{k}` must be text"))?;
                let value = HeaderValue::from_str(&text).map_err(|_| {
                    format!("`with.headers.{k}` holds characters a header cannot carry")
                })?;
                headers.insert(name, value);
            }
        }
        Some(other) => {
            return Err(format!(
                "`with.headers` must be a mapping, got {}",
                json_kind(other)
            ));
        }
    }

    let bodies: Vec<&str> = ["body", "text", "form"]
        .into_iter()
        .filter(|k| with.get(*k).is_some_and(|v| !v.is_null()))
        .collect();
    if bodies.len() > 1 {
        return Err(format!(
            "a request has one body: `with.{}` and `with.{}` cannot be used together",
            bodies[0], bodies[1]
        ));
    }
    let body = match bodies.first().copied() {
        Some("body") => Body::Json(with["body"].clone()),
        Some("text") => Body::Text(text_input("text")?.unwrap_or_default()),
        Some("form") => match &with["form"] {
            Value::Object(map) => Body::Form(
                map.iter()
                    .map(|(k, v)| {
                        scalar_text(v)
                            .map(|t| (k.clone(), t))
                            .ok_or_else(|| format!("`with.form.{k}` must be text or a number"))
                    })
                    .collect::<Result<_, _>>()?,
            ),
            other => {
                return Err(format!(
                    "`with.form` must be a mapping, got {}",
                    json_kind(other)
                ));
            }
        },
        _ => Body::None,
    };
    let timeout = match text_input("timeout")? {
        Some(t) => weft_core::duration::parse(&t).map_err(|e| format!("`with.timeout`: {e}"))?,
        None => config.timeout,
    };
    Ok(Request {
        method,
        url,
        headers,
        body,
        timeout,
    })
}

/// Appends `path` to `base`, keeping the base's own path (`/api/v1` + `/orders` is `/api/v1/orders`).
fn join(base: &Url, path: &str) -> Result<Url, String> {
    if path.contains("://") {
        return Err(format!(
            "`with.path` `{path}` is a full URL; use `with.url` for that"
        ));
    }
    let mut text = base.as_str().trim_end_matches('/').to_string();
    if base.query().is_some() {
        return Err("a `base_url` with a query string cannot take a `path`".into());
    }
    if !path.starts_with('/') {
        text.push('/');
    }
    text.push_str(path);
    Url::parse(&text).map_err(|e| format!("`with.path` `{path}` does not make a valid URL: {e}"))
}

/// How long a `Retry-After` header asks to wait: seconds, or an HTTP date (RFC 9110).
pub fn retry_after(value: &str, now: jiff::Timestamp) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = jiff::fmt::rfc2822::parse(value).ok()?.timestamp();
    let wait = when.as_millisecond() - now.as_millisecond();
    Some(Duration::from_millis(wait.max(0) as u64))
}

/// The URL without its query, for messages (queries may carry keys).
fn display_url(url: &Url) -> String {
    let mut shown = url.clone();
    shown.set_query(None);
    shown.set_fragment(None);
    let _ = shown.set_password(None);
    shown.to_string()
}

/// Headers as a JSON object: names in lower case, repeated headers joined with `, `, bytes that
/// are not UTF-8 replaced.
pub fn headers_json(headers: &HeaderMap) -> Value {
    let mut out: Map<String, Value> = Map::new();
    for (name, value) in headers {
        let text = String::from_utf8_lossy(value.as_bytes()).into_owned();
        match out.get_mut(name.as_str()) {
            Some(Value::String(existing)) => {
                existing.push_str(", ");
                existing.push_str(&text);
            }
            _ => {
                out.insert(name.as_str().to_string(), Value::String(text));
            }
        }
    }
    Value::Object(out)
}

fn body_json(headers: &HeaderMap, bytes: &[u8]) -> (Value, Option<String>) {
    if bytes.is_empty() {
        return (Value::Null, None);
    }
    let is_json = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| {
            let ct = ct
                .split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase();
            ct == "application/json" || ct.ends_with("+json")
        });
    if is_json && let Ok(v) = serde_json::from_slice(bytes) {
        return (v, None);
    }
    match std::str::from_utf8(bytes) {
        Ok(text) => (Value::String(text.to_string()), None),
        Err(_) => (
            Value::Null,
            Some(base64::engine::general_purpose::STANDARD.encode(bytes)),
        ),
    }
}

fn transport_error(err: &reqwest::Error, request: &Request) -> ActionError {
    // A refused address stays refused: no retry.
    if let Some(refused) = super::guard::refused_in(err) {
        return ActionError::fatal(refused.0.clone());
    }
    let target = format!("{} {}", request.method, display_url(&request.url));
    let message = if err.is_timeout() {
        format!(
            "{target} timed out after {}",
            weft_core::duration::format(request.timeout)
        )
    } else if err.is_connect() {
        format!("cannot connect for {target}: {}", root_cause(err))
    } else {
        format!("{target} failed: {}", root_cause(err))
    };
    if err.is_builder() {
        ActionError::fatal(message)
    } else {
        ActionError::retryable(message)
    }
}

fn root_cause(err: &(dyn std::error::Error + 'static)) -> String {
    let mut current = err;
    while let Some(next) = current.source() {
        current = next;
    }
    current.to_string()
}

#[async_trait]
impl Connector for HttpConnector {
    async fn probe(&self) -> Result<String, ActionError> {
        let Some(base) = &self.config.base_url else {
            return Err(ActionError::fatal(
                "this connection has no `base_url` to check; its steps give whole URLs",
            ));
        };
        let call = Call {
            action: "request",
            input: serde_json::json!({ "method": "GET", "url": base.as_str() }),
            idempotency_key: "probe",
            max_output_bytes: 16 * 1024 * 1024,
        };
        let status = match self.call(call).await {
            Ok(output) => output["status"].as_u64().unwrap_or(200),
            Err(e) => match e.details()["status"].as_u64() {
                Some(status @ (401 | 403)) => {
                    return Err(ActionError::fatal(format!(
                        "{base} answered {status}: the server refused the connection's credentials"
                    )));
                }
                Some(status) if status < 500 => status,
                _ => return Err(e),
            },
        };
        Ok(format!(
            "GET {base} answered {status}{}",
            if self.config.auth.is_some() {
                "; the credentials were not refused"
            } else {
                ""
            }
        ))
    }

    fn sign_in(&self) -> Option<Arc<super::oauth2::SignIn>> {
        self.sign_in.clone()
    }

    async fn call(&self, call: Call<'_>) -> Result<Value, ActionError> {
        if call.action != "request" {
            return Err(ActionError::fatal(format!(
                "the http connector has no action `{}`",
                call.action
            )));
        }
        let request = decode_request(&call.input, &self.config).map_err(ActionError::fatal)?;
        if !self.config.allow_private_network {
            super::guard::check_url(&request.url).map_err(|r| ActionError::fatal(r.0))?;
            if let Some(Auth::OAuth2(settings)) = &self.config.auth {
                super::guard::check_url(&settings.token_url).map_err(|r| {
                    ActionError::fatal(format!("the oauth2 token endpoint: {}", r.0))
                })?;
            }
        }
        let mut sent_token = None;
        let first = self.attempt(&call, &request, None, &mut sent_token).await;
        // An OAuth2 token the API refuses is fetched again, and the request sent once more.
        if let (Some(token), Err(ActionError::Fatal { details, .. })) = (&sent_token, &first)
            && details["status"] == 401
        {
            let refused = token.clone();
            return self
                .attempt(&call, &request, Some(&refused), &mut sent_token)
                .await;
        }
        first
    }
}

impl HttpConnector {
    /// Sends the request once. `stale` is an OAuth2 token the API refused, to be replaced;
    /// `sent_token` receives the OAuth2 token sent, if any.
    async fn attempt(
        &self,
        call: &Call<'_>,
        request: &Request,
        stale: Option<&str>,
        sent_token: &mut Option<String>,
    ) -> Result<Value, ActionError> {
        let mut builder = self
            .client
            .request(request.method.clone(), request.url.clone())
            .timeout(request.timeout)
            .headers(request.headers.clone());
        if !request.headers.contains_key("idempotency-key") {
            builder = builder.header("idempotency-key", call.idempotency_key);
        }
        // Credentials go only where the connection says they may (its origin and
        // `credential_origins`); a request elsewhere, such as to a URL an event or a response
        // gave, is sent without them.
        let auth = match &self.config.auth {
            Some(auth) if self.config.credentials_go_to(&request.url) => Some(auth),
            _ => None,
        };
        let withheld = auth.is_none() && self.config.auth.is_some();
        match auth {
            None => {}
            Some(Auth::Bearer { token }) => {
                let token = self
                    .secrets
                    .resolve(token)
                    .map_err(|e| ActionError::fatal(format!("bearer token: {e}")))?;
                builder = builder.bearer_auth(token);
            }
            Some(Auth::Basic { username, password }) => {
                let password = self
                    .secrets
                    .resolve(password)
                    .map_err(|e| ActionError::fatal(format!("basic auth password: {e}")))?;
                // The header value an API might echo back is a credential too.
                self.secrets.learn(
                    "basic auth",
                    &base64::engine::general_purpose::STANDARD
                        .encode(format!("{username}:{password}")),
                );
                builder = builder.basic_auth(username, Some(password));
            }
            Some(Auth::ApiKeyQuery { param, value }) => {
                let value = self
                    .secrets
                    .resolve(value)
                    .map_err(|e| ActionError::fatal(format!("API key: {e}")))?;
                builder = builder.query(&[(param.as_str(), value.as_str())]);
            }
            Some(Auth::ApiKey { header, value }) => {
                let value = self
                    .secrets
                    .resolve(value)
                    .map_err(|e| ActionError::fatal(format!("API key: {e}")))?;
                let value = HeaderValue::from_str(&value).map_err(|_| {
                    ActionError::fatal("the API key holds characters a header cannot carry")
                })?;
                builder = builder.header(header.clone(), value);
            }
            Some(Auth::OAuth2(settings)) => {
                let token = match &self.sign_in {
                    Some(sign_in) => sign_in.access_token(stale).await?,
                    None => {
                        self.tokens
                            .token(
                                &self.client,
                                &self.secrets,
                                settings,
                                request.timeout,
                                stale,
                            )
                            .await?
                    }
                };
                builder = builder.bearer_auth(&token);
                *sent_token = Some(token);
            }
            Some(Auth::ServiceAccount(account)) => {
                let token = self
                    .tokens
                    .service_account(
                        &self.client,
                        &self.secrets,
                        account,
                        request.timeout,
                        stale,
                        !self.config.allow_private_network,
                    )
                    .await?;
                builder = builder.bearer_auth(&token);
                *sent_token = Some(token);
            }
        }
        // The body is encoded here, not by the client, so that a signature covers its exact bytes.
        let (content_type, bytes): (Option<&str>, Vec<u8>) = match &request.body {
            Body::None => (None, Vec::new()),
            Body::Json(v) => (
                Some("application/json"),
                serde_json::to_vec(v).expect("JSON values always serialize"),
            ),
            Body::Text(t) => (Some("text/plain; charset=utf-8"), t.clone().into_bytes()),
            Body::Form(pairs) => (
                Some("application/x-www-form-urlencoded"),
                form_urlencoded::Serializer::new(String::new())
                    .extend_pairs(pairs)
                    .finish()
                    .into_bytes(),
            ),
        };
        if let Some(ct) = content_type
            && !request.headers.contains_key(CONTENT_TYPE)
        {
            builder = builder.header(CONTENT_TYPE, ct);
        }
        if let Some(signing) = &self.config.sign {
            let id = request
                .headers
                .get("webhook-id")
                .and_then(|v| v.to_str().ok())
                .unwrap_or(call.idempotency_key);
            let headers = sign(
                &self.secrets,
                signing,
                id,
                jiff::Timestamp::now().as_second(),
                &bytes,
            )?;
            // `headers` replaces same-named ones, so a step's own `webhook-*` values never double up.
            builder = builder.headers(headers);
        }
        if !matches!(request.body, Body::None) {
            builder = builder.body(bytes);
        }

        let mut response = builder
            .send()
            .await
            .map_err(|e| transport_error(&e, request))?;
        let status = response.status();
        let headers = response.headers().clone();
        let mut bytes: Vec<u8> = Vec::new();
        loop {
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    if (bytes.len() + chunk.len()) as u64 > call.max_output_bytes {
                        return Err(ActionError::fatal(format!(
                            "the response of {} {} is larger than {} bytes (limits.max_output_bytes); nothing was cut short, the step failed",
                            request.method,
                            display_url(&request.url),
                            call.max_output_bytes
                        )));
                    }
                    bytes.extend_from_slice(&chunk);
                }
                Ok(None) => break,
                Err(e) => return Err(transport_error(&e, request)),
            }
        }
        let (body, base64) = body_json(&headers, &bytes);
        let mut output = json!({
            "status": status.as_u16(),
            "headers": headers_json(&headers),
            "body": body,
        });
        if let Some(b) = base64 {
            output["body_base64"] = Value::String(b);
        }
        if status.is_success() || status.is_informational() {
            return Ok(output);
        }
        let mut message = format!(
            "HTTP {} from {} {}",
            status_text(status),
            request.method,
            display_url(&request.url)
        );
        if withheld && matches!(status.as_u16(), 401 | 403) {
            message.push_str(&format!(
                " (sent without the connection's credentials: {} is not the connection's origin; list it in `credential_origins` to send them there)",
                super::config::Origin::of(&request.url)
            ));
        }
        let retryable = status == StatusCode::REQUEST_TIMEOUT
            || status == StatusCode::TOO_MANY_REQUESTS
            || status.is_server_error();
        if retryable {
            let wait = headers
                .get(RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| retry_after(v, jiff::Timestamp::now()));
            Err(ActionError::Retryable {
                message,
                retry_after: wait,
                details: output,
            })
        } else {
            Err(ActionError::Fatal {
                message,
                details: output,
            })
        }
    }
}

/// The Standard Webhooks headers for one request.
fn sign(
    secrets: &Secrets,
    signing: &Signing,
    id: &str,
    timestamp: i64,
    body: &[u8],
) -> Result<HeaderMap, ActionError> {
    let secret = secrets
        .resolve(&signing.secret)
        .map_err(|e| ActionError::fatal(format!("signing secret: {e}")))?;
    let signature = weft_core::signature::standard_webhooks_sign(&secret, id, timestamp, body)
        .map_err(|e| ActionError::fatal(format!("signing secret: {e}")))?;
    let mut headers = HeaderMap::new();
    for (name, value) in [
        ("webhook-id", id.to_string()),
        ("webhook-timestamp", timestamp.to_string()),
        ("webhook-signature", signature),
    ] {
        let value = HeaderValue::from_str(&value).map_err(|_| {
            ActionError::fatal(format!("`{name}` holds characters a header cannot carry"))
        })?;
        headers.insert(HeaderName::from_static(name), value);
    }
    Ok(headers)
}

fn status_text(status: StatusCode) -> String {
    match status.canonical_reason() {
        Some(reason) => format!("{} {reason}", status.as_u16()),
        None => status.as_u16().to_string(),
    }
}
