//! The `nats` connector: publishing to JetStream and consuming a stream with a durable pull
//! consumer, for `queue` triggers.
//!
//! | action | `with:` | output |
//! |---|---|---|
//! | `publish` | `subject`, `message` (text as it is, anything else as JSON), `headers`, `msg_id` | `{stream, sequence, duplicate}` |
//!
//! A publish waits for the stream's acknowledgement, so a step succeeds only when the message is
//! stored. It carries `Nats-Msg-Id` (the step's idempotency key unless `msg_id` says otherwise),
//! so the stream drops the copy a retried step sends within its duplicate window. No stream on
//! the subject is a fatal error; a timeout or a lost connection is retryable.
//!
//! Consuming: a message is acknowledged (and the acknowledgement confirmed by the server) only
//! when its run is committed; a message that cannot be read is terminated (`+TERM`), so it is not
//! delivered again. The stream sequence is the message id, so a message delivered again after a
//! crash starts no second run.

mod config;

pub use config::{ConsumeConfig, Deliver, NatsConfig};

use async_nats::HeaderMap;
use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, pull};
use async_nats::jetstream::context::PublishErrorKind;
use async_nats::jetstream::{self, AckKind};
use async_trait::async_trait;
use futures_util::StreamExt;
use serde_json::{Map, Value, json};
use weft_core::{ActionSpec, Connection, ConnectorSpec, ConsumeSpec, json_kind};

use crate::secret::Secrets;
use crate::{ActionError, Call, Connector, Delivery, Settle, Subscription};

/// The `nats` connector's description.
pub static SPEC: ConnectorSpec = ConnectorSpec {
    probe: Some("connects and asks JetStream about the account"),
    type_name: "nats",
    summary: "A NATS server with JetStream: acknowledged publishing with de-duplication, durable consumers.",
    actions: &[ActionSpec {
        name: "publish",
        summary: "Publishes a message to a JetStream subject and waits for the stream's acknowledgement.",
        inputs: &["subject", "message", "headers", "msg_id"],
        required: &["subject", "message"],
        check_inputs: weft_core::catalog::no_input_check,
    }],
    check: |node, diags| {
        NatsConfig::decode(node, diags);
    },
    consume: Some(ConsumeSpec {
        keys: config::CONSUME_KEYS,
        check: |node, diags| {
            ConsumeConfig::decode(node, diags);
        },
        message_id: Some("the stream sequence"),
    }),
};

/// A live `nats` connection, opened on first use; the client reconnects by itself.
pub struct NatsConnector {
    config: NatsConfig,
    client: tokio::sync::OnceCell<async_nats::Client>,
    secrets: Secrets,
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

impl NatsConnector {
    /// Builds the connector from a connection's settings; nothing connects until the first use.
    pub fn build(connection: &Connection, secrets: &Secrets) -> Result<NatsConnector, String> {
        crate::settings::connection(connection, NatsConfig::decode).map(|config| NatsConnector {
            secrets: secrets.clone(),
            ..NatsConnector::new(config)
        })
    }

    /// Builds the connector from decoded settings.
    pub fn new(config: NatsConfig) -> NatsConnector {
        NatsConnector {
            config,
            client: tokio::sync::OnceCell::new(),
            secrets: Secrets::new(),
        }
    }

    async fn client(&self) -> Result<async_nats::Client, ActionError> {
        self.client
            .get_or_try_init(|| async {
                let mut options = async_nats::ConnectOptions::new()
                    .name("weft")
                    .connection_timeout(self.config.timeout)
                    .request_timeout(Some(self.config.timeout));
                if let Some(token) = &self.config.token {
                    options =
                        options.token(self.secrets.resolve(token).map_err(ActionError::fatal)?);
                }
                if let (Some(user), Some(password)) = (&self.config.username, &self.config.password)
                {
                    options = options.user_and_password(
                        user.clone(),
                        self.secrets.resolve(password).map_err(ActionError::fatal)?,
                    );
                }
                options
                    .connect(self.config.url.as_str())
                    .await
                    .map_err(|e| ActionError::retryable(format!("nats: cannot connect: {e}")))
            })
            .await
            .cloned()
    }

    async fn publish(&self, call: &Call<'_>) -> Result<Value, ActionError> {
        let input = &call.input;
        let subject = match input.get("subject") {
            Some(Value::String(s)) if !s.is_empty() && !s.contains(char::is_whitespace) => {
                s.clone()
            }
            Some(other) => {
                return Err(ActionError::fatal(format!(
                    "`subject` must be a subject, found {other}"
                )));
            }
            None => return Err(ActionError::fatal("publish needs `with.subject`")),
        };
        let payload = text(input.get("message").unwrap_or(&Value::Null));
        let mut headers = HeaderMap::new();
        match input.get("headers") {
            None | Some(Value::Null) => {}
            Some(Value::Object(map)) => {
                for (k, v) in map {
                    headers.insert(k.as_str(), text(v).as_str());
                }
            }
            Some(other) => {
                return Err(ActionError::fatal(format!(
                    "`headers` must be a mapping, found {}",
                    json_kind(other)
                )));
            }
        }
        let msg_id = match input.get("msg_id") {
            None | Some(Value::Null) => call.idempotency_key.to_string(),
            Some(v) => text(v),
        };
        headers.insert("Nats-Msg-Id", msg_id.as_str());
        let js = jetstream::new(self.client().await?);
        let classify = |kind: PublishErrorKind, e: String| match kind {
            PublishErrorKind::StreamNotFound => ActionError::fatal(format!(
                "nats: no stream stores subject `{subject}`; create one whose subjects include it"
            )),
            PublishErrorKind::WrongLastMessageId
            | PublishErrorKind::WrongLastSequence
            | PublishErrorKind::MaxPayloadExceeded => ActionError::fatal(format!("nats: {e}")),
            _ => ActionError::retryable(format!("nats: {e}")),
        };
        let ack = js
            .publish_with_headers(subject.clone(), headers, payload.into())
            .await
            .map_err(|e| classify(e.kind(), e.to_string()))?
            .await
            .map_err(|e| classify(e.kind(), e.to_string()))?;
        Ok(json!({"stream": ack.stream, "sequence": ack.sequence, "duplicate": ack.duplicate}))
    }
}

#[async_trait]
impl Connector for NatsConnector {
    async fn call(&self, call: Call<'_>) -> Result<Value, ActionError> {
        match call.action {
            "publish" => self.publish(&call).await,
            other => Err(ActionError::fatal(format!(
                "nats connections have no action `{other}`"
            ))),
        }
    }

    async fn probe(&self) -> Result<String, ActionError> {
        let client = self.client().await?;
        // JetStream's account info, read as plain JSON: publish needs JetStream, and this
        // request answers with an error where it is not enabled.
        let asked = client.request("$JS.API.INFO", Default::default());
        let answer = match tokio::time::timeout(self.config.timeout, asked).await {
            Ok(Ok(message)) => {
                serde_json::from_slice::<Value>(&message.payload).unwrap_or_default()
            }
            Ok(Err(e)) => {
                return Err(ActionError::retryable(format!(
                    "nats: connected, but JetStream did not answer (publish needs it): {e}"
                )));
            }
            Err(_) => {
                return Err(ActionError::retryable(format!(
                    "nats: connected, but JetStream did not answer within {:?}",
                    self.config.timeout
                )));
            }
        };
        if let Some(error) = answer.get("error") {
            return Err(ActionError::fatal(format!(
                "nats: connected, but JetStream refused (publish needs it): {}",
                error["description"].as_str().unwrap_or("no description")
            )));
        }
        let streams = answer["streams"].as_u64().unwrap_or(0);
        Ok(format!(
            "connected to NATS {}; JetStream answered ({streams} stream{} in the account)",
            client.server_info().version,
            if streams == 1 { "" } else { "s" }
        ))
    }

    async fn subscribe(
        &self,
        workflow: &str,
        raw: &Value,
    ) -> Result<Box<dyn Subscription>, ActionError> {
        let config = crate::settings::queue(raw, ConsumeConfig::decode)?;
        let js = jetstream::new(self.client().await?);
        let lost = |what: &str, e: String| ActionError::retryable(format!("nats: {what}: {e}"));
        let stream = match &config.subject {
            Some(subject) => js
                .get_or_create_stream(jetstream::stream::Config {
                    name: config.stream.clone(),
                    subjects: vec![subject.clone()],
                    ..Default::default()
                })
                .await
                .map_err(|e| lost("cannot open or create the stream", e.to_string()))?,
            None => js
                .get_stream(&config.stream)
                .await
                .map_err(|e| lost("cannot open the stream", e.to_string()))?,
        };
        let name = config
            .consumer
            .clone()
            .unwrap_or_else(|| format!("weft-{workflow}"));
        let consumer: async_nats::jetstream::consumer::PullConsumer = stream
            .get_or_create_consumer(
                &name,
                pull::Config {
                    durable_name: Some(name.clone()),
                    filter_subject: config.subject.clone().unwrap_or_default(),
                    ack_policy: AckPolicy::Explicit,
                    ack_wait: config.ack_wait,
                    deliver_policy: match config.deliver {
                        Deliver::All => DeliverPolicy::All,
                        Deliver::New => DeliverPolicy::New,
                    },
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| lost("cannot open or create the consumer", e.to_string()))?;
        let messages = consumer
            .messages()
            .await
            .map_err(|e| lost("cannot consume", e.to_string()))?;
        Ok(Box::new(NatsSubscription { messages }))
    }
}

struct NatsSubscription {
    messages: pull::Stream,
}

#[async_trait]
impl Subscription for NatsSubscription {
    async fn next(&mut self) -> Result<Delivery, ActionError> {
        let message = match self.messages.next().await {
            Some(Ok(m)) => m,
            Some(Err(e)) => return Err(ActionError::retryable(format!("nats: {e}"))),
            None => return Err(ActionError::retryable("nats: the consumer ended")),
        };
        let mut meta = Map::new();
        meta.insert("subject".into(), json!(message.subject.as_str()));
        let mut id = None;
        if let Ok(info) = message.info() {
            meta.insert("stream".into(), json!(info.stream));
            meta.insert("sequence".into(), json!(info.stream_sequence));
            meta.insert("delivered".into(), json!(info.delivered));
            id = Some(format!("{}:{}", info.stream, info.stream_sequence));
        }
        if let Some(headers) = &message.headers {
            let mut h = Map::new();
            for (name, values) in headers.iter() {
                if let Some(v) = values.first() {
                    h.insert(name.to_string(), json!(v.as_str()));
                }
            }
            meta.insert("headers".into(), Value::Object(h));
        }
        let (message, acker) = message.split();
        Ok(Delivery {
            payload: message.payload.to_vec(),
            meta,
            id,
            settle: Box::new(NatsSettle(acker)),
        })
    }
}

struct NatsSettle(jetstream::message::Acker);

#[async_trait]
impl Settle for NatsSettle {
    async fn ack(self: Box<Self>) -> Result<(), ActionError> {
        self.0
            .double_ack()
            .await
            .map_err(|e| ActionError::retryable(format!("nats: acknowledging: {e}")))
    }

    async fn reject(self: Box<Self>, _reason: &str) -> Result<(), ActionError> {
        self.0
            .ack_with(AckKind::Term)
            .await
            .map_err(|e| ActionError::retryable(format!("nats: terminating: {e}")))
    }
}

#[cfg(test)]
mod tests;
