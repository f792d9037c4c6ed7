//! Settings of an `http` connection in `weft.yaml`; this module is their reference.
//!
//! ```yaml
//! connections:
//!   shop:
//!     type: http
//!     base_url: https://shop.example.com/api/v1   # steps then use `path: /orders/7.json`
//!     headers: { Accept: application/json }        # sent with every request
//!     timeout: 30s                                 # per request, unless the step says otherwise
//!     auth: { type: bearer, token: { env: SHOP_TOKEN } }
//!   crm:
//!     type: http
//!     base_url: https://crm.example.com/api
//!     # OAuth 2.0 client credentials: the token is cached and refreshed before it expires.
//!     auth: { type: oauth2, token_url: https://auth.example.com/oauth/token, client_id: weft,
//!             client_secret: { env: CRM_CLIENT_SECRET }, scope: "contacts:read" }
//!   hubspot:
//!     type: http
//!     base_url: https://api.hubapi.com
//!     # OAuth 2.0 authorization code with PKCE: a person signs in once (`weft connections
//!     # connect hubspot`, or Connect in the console); the hub keeps the tokens in the secret
//!     # store (`oauth2.hubspot`), refreshes them, and keeps the refresh token the provider rotates.
//!     auth:
//!       type: oauth2
//!       grant: authorization_code
//!       authorize_url: https://app.hubspot.com/oauth/authorize
//!       token_url: https://api.hubapi.com/oauth/v1/token
//!       client_id: 5b3c…
//!       client_secret: { secret: HUBSPOT_CLIENT_SECRET }
//!       client_auth: body      # the client's credentials in the form (HubSpot), or basic (default)
//!       scope: crm.objects.contacts.read crm.objects.contacts.write
//!   sheets:
//!     type: http
//!     base_url: https://sheets.googleapis.com
//!     # A Google service account: the JSON key file (a secret) signs a JWT traded for a token.
//!     auth: { type: service_account, key: { secret: GOOGLE_SA_KEY },
//!             scope: "https://www.googleapis.com/auth/spreadsheets" }
//!   partners:
//!     type: http
//!     base_url: https://partner.example.com/hooks
//!     # Signs every request with the Standard Webhooks scheme: webhook-id (the step's idempotency
//!     # key, the same on every retry), webhook-timestamp and webhook-signature.
//!     sign: { scheme: standard-webhooks, secret: { env: PARTNER_WHSEC } }
//!   files:
//!     type: http
//!     base_url: https://api.files.example.com
//!     auth: { type: api_key, header: X-Api-Key, value: { secret: FILES_KEY } }
//!     # Credentials go only to base_url's origin (scheme, host, port) and to these; a step whose
//!     # `url` points elsewhere is sent without them.
//!     credential_origins: [https://uploads.files.example.com]
//!   intranet:
//!     type: http
//!     base_url: http://10.0.4.12:8080
//!     # Requests may reach loopback, private, link-local and other non-public addresses only
//!     # with this; without it they are refused (a guard against server-side request forgery).
//!     allow_private_network: true
//! ```
//!
//! Decoding is pure (no I/O), so `weft lint` checks these settings offline.

use std::time::Duration;

use reqwest::Url;
use reqwest::header::{HeaderName, HeaderValue};
use weft_core::Diagnostics;
use weft_core::decode::{self, Fields};
use weft_core::yaml::Node;

use crate::secret::SecretRef;

/// Keys of an `http` connection.
pub const KEYS: &[&str] = &[
    "type",
    "base_url",
    "headers",
    "timeout",
    "auth",
    "sign",
    "allow_private_network",
    "credential_origins",
];
/// Keys of `sign`.
pub const SIGN_KEYS: &[&str] = &["scheme", "secret"];
/// Keys of `auth`.
pub const AUTH_KEYS: &[&str] = &[
    "type",
    "token",
    "username",
    "password",
    "header",
    "value",
    "token_url",
    "client_id",
    "client_secret",
    "scope",
    "audience",
    "grant",
    "authorize_url",
    "client_auth",
    "key",
    "subject",
    "query",
];

/// The default request timeout.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// An HTTP API reached by steps with `uses: <connection>.request`.
#[derive(Clone, Debug, PartialEq)]
pub struct HttpConfig {
    /// URL that step `path`s are appended to, such as `https://shop.example.com/api/v1`. Without it,
    /// steps give a full `url`.
    pub base_url: Option<Url>,
    /// Headers sent with every request; a step's own headers win.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// Longest time one request may take, unless a step sets `with.timeout`. Default 30s.
    pub timeout: Duration,
    /// How requests authenticate.
    pub auth: Option<Auth>,
    /// How every request is signed for its receiver, if at all.
    pub sign: Option<Signing>,
    /// Whether requests may reach loopback, private, link-local, carrier-grade NAT, cloud-metadata
    /// and other non-public addresses. Default false: such requests are refused, whether the
    /// address is written in the URL, resolved from a name, or reached by a redirect.
    pub allow_private_network: bool,
    /// Origins (`https://host[:port]`) besides `base_url`'s that the connection's credentials
    /// (`auth`) are sent to. A request to any other origin, such as a step's `url` taken from an
    /// event or a response, is sent without them; a redirect to another origin is followed without
    /// them (a connection whose API key is a header of its own does not follow it: the 3xx is the
    /// step's answer). A connection with `auth` and no `base_url` must list the origins its
    /// credentials are for.
    pub credential_origins: Vec<Origin>,
}

/// The origin of a URL: scheme, host and port, the unit credentials are scoped to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Origin {
    scheme: String,
    host: String,
    port: Option<u16>,
}

impl Origin {
    /// The origin of `url`.
    pub fn of(url: &Url) -> Origin {
        Origin {
            scheme: url.scheme().to_ascii_lowercase(),
            host: url.host_str().unwrap_or("").to_ascii_lowercase(),
            port: url.port_or_known_default(),
        }
    }
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}://{}", self.scheme, self.host)?;
        match (self.scheme.as_str(), self.port) {
            ("http", Some(80)) | ("https", Some(443)) | (_, None) => Ok(()),
            (_, Some(port)) => write!(f, ":{port}"),
        }
    }
}

impl HttpConfig {
    /// Whether the connection's credentials may go to `url`: its origin is `base_url`'s or one of
    /// `credential_origins`.
    pub fn credentials_go_to(&self, url: &Url) -> bool {
        let origin = Origin::of(url);
        self.base_url
            .as_ref()
            .is_some_and(|b| Origin::of(b) == origin)
            || self.credential_origins.contains(&origin)
    }
}

/// Signing of outbound requests, so that receivers can check they come from this hub.
///
/// The only scheme is `standard-webhooks`: `webhook-id` is the step's idempotency key (the same on
/// every retry of the step, so a receiver can de-duplicate) unless the step sets a `webhook-id`
/// header itself; `webhook-timestamp` is the time of the attempt in seconds; `webhook-signature` is
/// `v1,` and the base64 HMAC-SHA256 of `id.timestamp.body` under the secret (`whsec_` and base64).
#[derive(Clone, Debug, PartialEq)]
pub struct Signing {
    /// The signing secret, `{ env: NAME }`.
    pub secret: SecretRef,
}

/// How an `http` connection authenticates. Every credential is a reference, `{ env: NAME }`.
#[derive(Clone, Debug, PartialEq)]
pub enum Auth {
    /// `Authorization: Bearer <token>`: `{ type: bearer, token: { env: NAME } }`.
    Bearer {
        /// The token.
        token: SecretRef,
    },
    /// HTTP Basic: `{ type: basic, username: ada, password: { env: NAME } }`.
    Basic {
        /// The user name (not a secret).
        username: String,
        /// The password.
        password: SecretRef,
    },
    /// An API key in a query parameter: `{ type: api_key, query: api_key, value: { env: NAME } }`
    /// (the URL then carries a credential: it is scrubbed from runs and logs like the value).
    ApiKeyQuery {
        /// The query parameter's name.
        param: String,
        /// The key.
        value: SecretRef,
    },
    /// An API key in a header: `{ type: api_key, header: X-Api-Key, value: { env: NAME } }`.
    ApiKey {
        /// The header's name (default `X-Api-Key`).
        header: HeaderName,
        /// The key.
        value: SecretRef,
    },
    /// OAuth 2.0 client credentials (RFC 6749 section 4.4): `{ type: oauth2, token_url: https://…,
    /// client_id: weft, client_secret: { env: NAME }, scope: "orders:read", audience: … }`. The
    /// token is fetched with HTTP Basic client authentication, cached, fetched again shortly
    /// before it expires, and once more when a request is answered 401.
    OAuth2(Box<OAuth2>),
    /// A Google-style service account (RFC 7523 JWT bearer grant): `{ type: service_account, key: {
    /// secret: GOOGLE_SA_KEY }, scope: "https://www.googleapis.com/auth/spreadsheets", subject:
    /// ada@acme.example }`. The key is the JSON key file's whole text; the hub signs a JWT with its
    /// private key (RS256), trades it at the key's `token_uri` for an access token, and caches
    /// that like client credentials.
    ServiceAccount(Box<ServiceAccount>),
}

/// The settings of `auth: { type: service_account }`.
#[derive(Clone, Debug, PartialEq)]
pub struct ServiceAccount {
    /// The JSON key file's text (`client_email`, `private_key`, `token_uri`).
    pub key: SecretRef,
    /// Space-separated scopes.
    pub scope: String,
    /// The user to act as (domain-wide delegation), if any.
    pub subject: Option<String>,
    /// The token endpoint, instead of the key's `token_uri`.
    pub token_url: Option<Url>,
}

/// The settings of `auth: { type: oauth2 }`.
#[derive(Clone, Debug, PartialEq)]
pub struct OAuth2 {
    /// The authorization server's token endpoint.
    pub token_url: Url,
    /// The client id (not a secret).
    pub client_id: String,
    /// The client secret.
    pub client_secret: SecretRef,
    /// Space-separated scopes to ask for, if any.
    pub scope: Option<String>,
    /// The `audience` parameter some servers want (Auth0, for one), if any.
    pub audience: Option<String>,
    /// How the hub gets tokens.
    pub grant: Grant,
    /// How the client proves itself to the token endpoint.
    pub client_auth: ClientAuth,
}

/// How an OAuth2 connection gets its tokens (`grant:`).
#[derive(Clone, Debug, PartialEq)]
pub enum Grant {
    /// `client_credentials` (the default): the hub asks for a token with the client's own
    /// credentials, no person involved.
    ClientCredentials,
    /// `authorization_code`: a person signs in at `authorize_url` once (with PKCE); the hub keeps
    /// the access and refresh tokens in the secret store and refreshes them.
    AuthorizationCode {
        /// Where the person signs in.
        authorize_url: Url,
    },
}

/// Where the client's id and secret go in token requests (`client_auth:`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientAuth {
    /// HTTP Basic (RFC 6749's recommended way; the default).
    Basic,
    /// `client_id` and `client_secret` fields in the form, as some providers (HubSpot) want.
    Body,
}

impl HttpConfig {
    /// Reads and checks the settings of an `http` connection (the whole mapping, `type` included).
    pub fn decode(node: &Node, diags: &mut Diagnostics) -> Option<HttpConfig> {
        let mut f = Fields::new(node, "http connection", KEYS, diags)?;
        f.get("type");
        let base_url = f.get("base_url").and_then(|n| {
            let text = decode::string(n, "`base_url`", diags)?;
            match Url::parse(&text) {
                Ok(url) if matches!(url.scheme(), "http" | "https") => Some(url),
                Ok(url) => {
                    diags.error(
                        n.pos,
                        format!(
                            "`base_url` must be an http or https URL, not {}",
                            url.scheme()
                        ),
                    );
                    None
                }
                Err(e) => {
                    diags.error(n.pos, format!("`base_url` is not a valid URL: {e}"));
                    None
                }
            }
        });
        let mut headers = Vec::new();
        if let Some(n) = f.get("headers") {
            for (key, value) in decode::entries(n, "`headers`", diags).unwrap_or_default() {
                let Ok(name) = HeaderName::from_bytes(key.name.as_bytes()) else {
                    diags.error(
                        key.pos,
                        format!("`{}` is not a valid header name", key.name),
                    );
                    continue;
                };
                let text = match value.to_json() {
                    serde_json::Value::String(s) => s,
                    serde_json::Value::Number(n) => n.to_string(),
                    serde_json::Value::Bool(b) => b.to_string(),
                    _ => {
                        diags.error(value.pos, format!("header `{}` must be text", key.name));
                        continue;
                    }
                };
                match HeaderValue::from_str(&text) {
                    Ok(v) => headers.push((name, v)),
                    Err(_) => diags.error(
                        value.pos,
                        format!(
                            "header `{}` holds characters a header cannot carry",
                            key.name
                        ),
                    ),
                }
            }
        }
        let timeout = f
            .get("timeout")
            .and_then(|n| decode::duration(n, "`timeout`", diags))
            .unwrap_or(DEFAULT_TIMEOUT);
        let auth_node = f.get("auth");
        let auth = auth_node.and_then(|n| decode_auth(n, diags));
        let sign = f.get("sign").and_then(|n| decode_sign(n, diags));
        let allow_private_network = f
            .get("allow_private_network")
            .and_then(|n| decode::boolean(n, "`allow_private_network`", diags))
            .unwrap_or(false);
        let mut credential_origins = Vec::new();
        let origins_node = f.get("credential_origins");
        if let Some(n) = origins_node {
            for item in decode::list(n, "`credential_origins`", diags).unwrap_or_default() {
                let Some(text) = decode::string(item, "an origin in `credential_origins`", diags)
                else {
                    continue;
                };
                match Url::parse(&text) {
                    Ok(url)
                        if matches!(url.scheme(), "http" | "https")
                            && url.host_str().is_some()
                            && url.path() == "/"
                            && url.query().is_none()
                            && url.username().is_empty() =>
                    {
                        credential_origins.push(Origin::of(&url));
                    }
                    _ => diags.error(
                        item.pos,
                        format!(
                            "`{text}` is not an origin; write the scheme, host and port only, such as `https://uploads.example.com`"
                        ),
                    ),
                }
            }
        }
        if let (Some(_), Some(n), None, None) = (&auth, auth_node, &base_url, origins_node) {
            diags.error(
                n.pos,
                "a connection with `auth` and no `base_url` must say where its credentials may go: add `base_url` or `credential_origins`",
            );
        }
        f.finish(diags);
        Some(HttpConfig {
            base_url,
            headers,
            timeout,
            auth,
            sign,
            allow_private_network,
            credential_origins,
        })
    }
}

fn decode_auth(node: &Node, diags: &mut Diagnostics) -> Option<Auth> {
    let mut f = Fields::new(node, "`auth`", AUTH_KEYS, diags)?;
    let kind = f
        .require("type", diags)
        .and_then(|n| decode::string(n, "`auth.type`", diags));
    let auth = match kind.as_deref() {
        Some("bearer") => f
            .require("token", diags)
            .and_then(|n| SecretRef::decode(n, "`auth.token`", diags))
            .map(|token| Auth::Bearer { token }),
        Some("basic") => {
            let username = f
                .require("username", diags)
                .and_then(|n| decode::string(n, "`auth.username`", diags));
            let password = f
                .require("password", diags)
                .and_then(|n| SecretRef::decode(n, "`auth.password`", diags));
            username
                .zip(password)
                .map(|(username, password)| Auth::Basic { username, password })
        }
        Some("api_key") if node_of(node, "query").is_some() => {
            if let Some(n) = node_of(node, "header") {
                diags.error(
                    n.pos,
                    "an API key goes in a `header` or in the `query`, not both",
                );
            }
            let param = f
                .get("query")
                .and_then(|n| decode::string(n, "`auth.query`", diags))
                .filter(|p| !p.is_empty());
            let value = f
                .require("value", diags)
                .and_then(|n| SecretRef::decode(n, "`auth.value`", diags));
            param
                .zip(value)
                .map(|(param, value)| Auth::ApiKeyQuery { param, value })
        }
        Some("api_key") => {
            let header = match f.get("header") {
                Some(n) => decode::string(n, "`auth.header`", diags).and_then(|text| {
                    match HeaderName::from_bytes(text.as_bytes()) {
                        Ok(h) => Some(h),
                        Err(_) => {
                            diags.error(n.pos, format!("`{text}` is not a valid header name"));
                            None
                        }
                    }
                }),
                None => Some(HeaderName::from_static("x-api-key")),
            };
            let value = f
                .require("value", diags)
                .and_then(|n| SecretRef::decode(n, "`auth.value`", diags));
            header
                .zip(value)
                .map(|(header, value)| Auth::ApiKey { header, value })
        }
        Some("oauth2") => {
            let token_url = f.require("token_url", diags).and_then(|n| {
                let text = decode::string(n, "`auth.token_url`", diags)?;
                match Url::parse(&text) {
                    Ok(url) if matches!(url.scheme(), "http" | "https") => Some(url),
                    _ => {
                        diags.error(
                            n.pos,
                            format!("`auth.token_url` must be an http or https URL, not `{text}`"),
                        );
                        None
                    }
                }
            });
            let client_id = f
                .require("client_id", diags)
                .and_then(|n| decode::string(n, "`auth.client_id`", diags));
            let client_secret = f
                .require("client_secret", diags)
                .and_then(|n| SecretRef::decode(n, "`auth.client_secret`", diags));
            let scope = f
                .get("scope")
                .and_then(|n| decode::string(n, "`auth.scope`", diags));
            let audience = f
                .get("audience")
                .and_then(|n| decode::string(n, "`auth.audience`", diags));
            let client_auth = match f.get("client_auth") {
                None => Some(ClientAuth::Basic),
                Some(n) => match decode::string(n, "`auth.client_auth`", diags).as_deref() {
                    Some("basic") => Some(ClientAuth::Basic),
                    Some("body") => Some(ClientAuth::Body),
                    Some(other) => {
                        diags.error(
                            n.pos,
                            format!("`auth.client_auth` must be basic or body, found `{other}`"),
                        );
                        None
                    }
                    None => None,
                },
            };
            let authorize_url = f.get("authorize_url");
            let grant = match f.get("grant") {
                None => Some("client_credentials".to_string()),
                Some(n) => decode::string(n, "`auth.grant`", diags),
            };
            let grant = match grant.as_deref() {
                Some("client_credentials") => {
                    if let Some(n) = authorize_url {
                        diags.error(
                            n.pos,
                            "`auth.authorize_url` applies only to `grant: authorization_code`",
                        );
                    }
                    Some(Grant::ClientCredentials)
                }
                Some("authorization_code") => match authorize_url {
                    Some(n) => {
                        let text = decode::string(n, "`auth.authorize_url`", diags);
                        match text.as_deref().map(Url::parse) {
                            Some(Ok(url)) if matches!(url.scheme(), "http" | "https") => {
                                Some(Grant::AuthorizationCode { authorize_url: url })
                            }
                            Some(_) => {
                                diags.error(
                                    n.pos,
                                    "`auth.authorize_url` must be an http or https URL",
                                );
                                None
                            }
                            None => None,
                        }
                    }
                    None => {
                        diags.error(
                            f.pos(),
                            "`grant: authorization_code` needs `authorize_url`, where people sign in",
                        );
                        None
                    }
                },
                Some(other) => {
                    if let Some(n) = node_of(node, "grant") {
                        diags.error(
                            n.pos,
                            format!(
                                "`auth.grant` must be client_credentials or authorization_code, found `{other}`"
                            ),
                        );
                    }
                    None
                }
                None => None,
            };
            match (token_url, client_id, client_secret, grant, client_auth) {
                (
                    Some(token_url),
                    Some(client_id),
                    Some(client_secret),
                    Some(grant),
                    Some(client_auth),
                ) => Some(Auth::OAuth2(Box::new(OAuth2 {
                    token_url,
                    client_id,
                    client_secret,
                    scope,
                    audience,
                    grant,
                    client_auth,
                }))),
                _ => None,
            }
        }
        Some("service_account") => {
            let key = f
                .require("key", diags)
                .and_then(|n| SecretRef::decode(n, "`auth.key`", diags));
            let scope = f
                .require("scope", diags)
                .and_then(|n| decode::string(n, "`auth.scope`", diags));
            let subject = f
                .get("subject")
                .and_then(|n| decode::string(n, "`auth.subject`", diags));
            let token_url = match f.get("token_url") {
                None => Some(None),
                Some(n) => {
                    let text = decode::string(n, "`auth.token_url`", diags);
                    match text.as_deref().map(Url::parse) {
                        Some(Ok(url)) if matches!(url.scheme(), "http" | "https") => {
                            Some(Some(url))
                        }
                        Some(_) => {
                            diags.error(n.pos, "`auth.token_url` must be an http or https URL");
                            None
                        }
                        None => None,
                    }
                }
            };
            match (key, scope, token_url) {
                (Some(key), Some(scope), Some(token_url)) => {
                    Some(Auth::ServiceAccount(Box::new(ServiceAccount {
                        key,
                        scope,
                        subject,
                        token_url,
                    })))
                }
                _ => None,
            }
        }
        Some(other) => {
            if let Some(n) = node_of(node, "type") {
                diags.error(
                    n.pos,
                    format!(
                        "unknown `auth.type` `{other}`; use bearer, basic, api_key, oauth2 or service_account"
                    ),
                );
            }
            None
        }
        None => None,
    };
    // Keys that belong to another auth type are reported as not applying.
    f.finish(diags);
    auth
}

fn decode_sign(node: &Node, diags: &mut Diagnostics) -> Option<Signing> {
    let mut f = Fields::new(node, "`sign`", SIGN_KEYS, diags)?;
    let scheme_ok = match f.get("scheme") {
        None => true,
        Some(n) => match decode::string(n, "`sign.scheme`", diags).as_deref() {
            Some("standard-webhooks") => true,
            Some(other) => {
                diags.error(
                    n.pos,
                    format!("unknown `sign.scheme` `{other}`; Weft signs with standard-webhooks"),
                );
                false
            }
            None => false,
        },
    };
    let secret = f
        .require("secret", diags)
        .and_then(|n| SecretRef::decode(n, "`sign.secret`", diags));
    f.finish(diags);
    secret
        .filter(|_| scheme_ok)
        .map(|secret| Signing { secret })
}

fn node_of<'a>(node: &'a Node, key: &str) -> Option<&'a Node> {
    match &node.kind {
        weft_core::yaml::Kind::Map(entries) => {
            entries.iter().find(|(k, _)| k.name == key).map(|(_, v)| v)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weft_core::yaml;

    fn decode(src: &str) -> (Option<HttpConfig>, Vec<String>) {
        let node = yaml::parse(src).unwrap();
        let mut d = Diagnostics::new("weft.yaml");
        let c = HttpConfig::decode(&node, &mut d);
        (c, d.into_vec().into_iter().map(|d| d.to_string()).collect())
    }

    #[test]
    fn the_documented_example_decodes() {
        let (c, errs) = decode(
            "type: http\nbase_url: https://shop.example.com/api/v1\nheaders: { Accept: application/json }\ntimeout: 10s\nauth: { type: bearer, token: { env: SHOP_TOKEN } }\n",
        );
        assert!(errs.is_empty(), "{errs:?}");
        let c = c.unwrap();
        assert_eq!(
            c.base_url.unwrap().as_str(),
            "https://shop.example.com/api/v1"
        );
        assert_eq!(c.timeout, Duration::from_secs(10));
        assert_eq!(
            c.auth,
            Some(Auth::Bearer {
                token: SecretRef::Env("SHOP_TOKEN".into())
            })
        );
        assert_eq!(c.sign, None);
        let (c, errs) = decode(
            "type: http\nsign: { scheme: standard-webhooks, secret: { env: PARTNER_WHSEC } }\n",
        );
        assert!(errs.is_empty(), "{errs:?}");
        assert_eq!(
            c.unwrap().sign,
            Some(Signing {
                secret: SecretRef::Env("PARTNER_WHSEC".into())
            })
        );
    }

    #[test]
    fn bad_settings_are_reported_with_positions() {
        let (_, errs) = decode(
            "type: http\nbase_url: ftp://x\nheaders: {\"bad header\": x}\nauth: {type: basic, username: ada, password: hunter2, token: {env: X}}\nretries: 3\nsign: {scheme: jwt, secret: whsec_abc}\n",
        );
        assert_eq!(
            errs,
            vec![
                "weft.yaml:2:11: `base_url` must be an http or https URL, not ftp",
                "weft.yaml:3:11: `bad header` is not a valid header name",
                "weft.yaml:4:46: `auth.password` must not be written in the file; refer to the secret store with `{ secret: NAME }` or to an environment variable with `{ env: NAME }`",
                "weft.yaml:4:55: `token` does not apply to this `auth`",
                "weft.yaml:5:1: unknown key `retries` in http connection; expected one of: type, base_url, headers, timeout, auth, sign, allow_private_network, credential_origins",
                "weft.yaml:6:16: unknown `sign.scheme` `jwt`; Weft signs with standard-webhooks",
                "weft.yaml:6:29: `sign.secret` must not be written in the file; refer to the secret store with `{ secret: NAME }` or to an environment variable with `{ env: NAME }`",
            ]
        );
    }
}
