//! The `smtp` connector: steps send email with `uses: <connection>.send`.
//!
//! Settings in `weft.yaml` (this module is their reference):
//!
//! ```yaml
//! connections:
//!   mail:
//!     type: smtp
//!     host: smtp.example.com
//!     port: 587                      # default: 587 for starttls, 465 for tls, 25 for none
//!     tls: starttls                  # starttls (required, the default), tls (implicit), or none
//!     username: notifications@example.com
//!     password: { env: SMTP_PASSWORD }
//!     from: "Shop <notifications@example.com>"   # default sender; a step's `from` wins
//!     timeout: 30s
//! ```
//!
//! | action | `with:` | output |
//! |---|---|---|
//! | `send` | `to`, `cc`, `bcc` (an address or a list), `subject`, `text` and/or `html`, `from`, `reply_to` | `{message_id, recipients}` |
//!
//! Addresses are `ada@example.com` or `Ada Lovelace <ada@example.com>`. With both `text` and
//! `html` the message is `multipart/alternative`. The `Message-ID` is derived from the step's
//! idempotency key, so a message sent again by a retried step carries the same id and mail
//! clients show it once. A refused connection, a timeout or a 4xx answer is retryable; a 5xx
//! answer (an unknown mailbox, a refused login) or a bad address is fatal.

mod config;

pub use config::{SmtpConfig, TlsMode};

use async_trait::async_trait;
use lettre::message::header::ContentType;
use lettre::message::{Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use weft_core::{ActionSpec, Connection, ConnectorSpec, json_kind};

use crate::secret::Secrets;
use crate::{ActionError, Call, Connector};

/// The `smtp` connector's description.
pub static SPEC: ConnectorSpec = ConnectorSpec {
    probe: Some(
        "connects (with TLS if the connection says so), says EHLO, logs in if the connection has a username, then quits",
    ),
    type_name: "smtp",
    summary: "An SMTP server: sends email with text and HTML bodies over STARTTLS, TLS or plain TCP.",
    actions: &[ActionSpec {
        name: "send",
        summary: "Sends one email; returns {message_id, recipients}.",
        inputs: &[
            "to", "cc", "bcc", "subject", "text", "html", "from", "reply_to",
        ],
        required: &["to", "subject"],
        check_inputs: weft_core::catalog::no_input_check,
    }],
    check: |node, diags| {
        SmtpConfig::decode(node, diags);
    },
    consume: None,
};

/// A live `smtp` connection. Each send opens its own SMTP session.
pub struct SmtpConnector {
    config: SmtpConfig,
    secrets: Secrets,
}

fn mailboxes(input: &Value, key: &str) -> Result<Vec<Mailbox>, ActionError> {
    let parse = |s: &str| {
        s.parse::<Mailbox>().map_err(|e| {
            ActionError::fatal(format!("`{key}`: `{s}` is not an email address ({e})"))
        })
    };
    match input.get(key) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::String(s)) => Ok(vec![parse(s)?]),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| match v {
                Value::String(s) => parse(s),
                other => Err(ActionError::fatal(format!(
                    "`{key}` must list addresses, found {}",
                    json_kind(other)
                ))),
            })
            .collect(),
        Some(other) => Err(ActionError::fatal(format!(
            "`{key}` must be an address or a list of them, found {}",
            json_kind(other)
        ))),
    }
}

fn text_input(input: &Value, key: &str) -> Result<Option<String>, ActionError> {
    match input.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(ActionError::fatal(format!(
            "`{key}` must be text, found {}",
            json_kind(other)
        ))),
    }
}

fn classify(e: lettre::transport::smtp::Error) -> ActionError {
    let message = format!("smtp: {e}");
    if e.is_permanent() || e.is_client() {
        ActionError::fatal(message)
    } else {
        ActionError::retryable(message)
    }
}

impl SmtpConnector {
    /// Builds the connector from a connection's settings.
    pub fn build(connection: &Connection, secrets: &Secrets) -> Result<SmtpConnector, String> {
        crate::settings::connection(connection, SmtpConfig::decode).map(|config| SmtpConnector {
            secrets: secrets.clone(),
            ..SmtpConnector::new(config)
        })
    }

    /// Builds the connector from decoded settings.
    pub fn new(config: SmtpConfig) -> SmtpConnector {
        SmtpConnector {
            config,
            secrets: Secrets::new(),
        }
    }

    fn message(&self, call: &Call<'_>) -> Result<Message, ActionError> {
        let input = &call.input;
        let from = match text_input(input, "from")?.or_else(|| self.config.from.clone()) {
            Some(f) => f.parse::<Mailbox>().map_err(|e| {
                ActionError::fatal(format!("`from`: `{f}` is not an email address ({e})"))
            })?,
            None => {
                return Err(ActionError::fatal(
                    "send needs `from`, in the step or as the connection's `from`",
                ));
            }
        };
        let to = mailboxes(input, "to")?;
        if to.is_empty() {
            return Err(ActionError::fatal(
                "send needs at least one address in `to`",
            ));
        }
        let digest = Sha256::digest(call.idempotency_key.as_bytes());
        let id: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
        let domain = from.email.domain().to_string();
        let mut builder = Message::builder()
            .from(from)
            .subject(text_input(input, "subject")?.unwrap_or_default())
            .message_id(Some(format!("<{id}@{domain}>")));
        for m in to {
            builder = builder.to(m);
        }
        for m in mailboxes(input, "cc")? {
            builder = builder.cc(m);
        }
        for m in mailboxes(input, "bcc")? {
            builder = builder.bcc(m);
        }
        for m in mailboxes(input, "reply_to")? {
            builder = builder.reply_to(m);
        }
        let built = match (text_input(input, "text")?, text_input(input, "html")?) {
            (Some(text), Some(html)) => {
                builder.multipart(MultiPart::alternative_plain_html(text, html))
            }
            (Some(text), None) => builder.singlepart(
                SinglePart::builder()
                    .header(ContentType::TEXT_PLAIN)
                    .body(text),
            ),
            (None, Some(html)) => builder.singlepart(
                SinglePart::builder()
                    .header(ContentType::TEXT_HTML)
                    .body(html),
            ),
            (None, None) => return Err(ActionError::fatal("send needs `text`, `html` or both")),
        };
        built.map_err(|e| ActionError::fatal(format!("smtp: cannot build the message: {e}")))
    }

    fn transport(&self) -> Result<AsyncSmtpTransport<Tokio1Executor>, ActionError> {
        let c = &self.config;
        let tls_params = || {
            TlsParameters::new(c.host.clone())
                .map_err(|e| ActionError::fatal(format!("smtp: TLS settings: {e}")))
        };
        let tls = match c.tls {
            TlsMode::None => Tls::None,
            TlsMode::StartTls => Tls::Required(tls_params()?),
            TlsMode::Tls => Tls::Wrapper(tls_params()?),
        };
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(c.host.clone())
            .port(c.port)
            .tls(tls)
            .timeout(Some(c.timeout));
        if let (Some(user), Some(password)) = (&c.username, &c.password) {
            builder = builder.credentials(Credentials::new(
                user.clone(),
                self.secrets.resolve(password).map_err(ActionError::fatal)?,
            ));
        }
        Ok(builder.build())
    }
}

#[async_trait]
impl Connector for SmtpConnector {
    async fn probe(&self) -> Result<String, ActionError> {
        let transport = self.transport()?;
        match tokio::time::timeout(self.config.timeout * 2, transport.test_connection()).await {
            Ok(Ok(true)) => Ok(format!(
                "connected to {}:{}{}",
                self.config.host,
                self.config.port,
                if self.config.username.is_some() {
                    " and logged in"
                } else {
                    ""
                }
            )),
            Ok(Ok(false)) => Err(ActionError::retryable(
                "smtp: connected, but the server did not answer NOOP",
            )),
            Ok(Err(e)) => Err(classify(e)),
            Err(_) => Err(ActionError::retryable(format!(
                "smtp: the server did not answer within {:?}",
                self.config.timeout * 2
            ))),
        }
    }

    async fn call(&self, call: Call<'_>) -> Result<Value, ActionError> {
        if call.action != "send" {
            return Err(ActionError::fatal(format!(
                "smtp connections have no action `{}`",
                call.action
            )));
        }
        let message = self.message(&call)?;
        let recipients: Vec<String> = message
            .envelope()
            .to()
            .iter()
            .map(|a| a.to_string())
            .collect();
        let message_id = message
            .headers()
            .get_raw("Message-ID")
            .unwrap_or_default()
            .to_string();
        let transport = self.transport()?;
        match tokio::time::timeout(self.config.timeout * 2, transport.send(message)).await {
            Ok(Ok(_)) => Ok(json!({"message_id": message_id, "recipients": recipients})),
            Ok(Err(e)) => Err(classify(e)),
            Err(_) => Err(ActionError::retryable(format!(
                "smtp: the server did not answer within {:?}",
                self.config.timeout * 2
            ))),
        }
    }
}

#[cfg(test)]
mod tests;
