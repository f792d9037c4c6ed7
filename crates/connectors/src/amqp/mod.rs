//! The `amqp` connector (RabbitMQ, AMQP 0-9-1): publishing with publisher confirms, and consuming
//! a queue with manual acknowledgements and a prefetch limit for `queue` triggers.
//!
//! | action | `with:` | output |
//! |---|---|---|
//! | `publish` | `exchange` (default the default exchange), `routing_key`, `message` (text as it is, anything else as JSON), `headers`, `message_id`, `persistent` (default true) | `{confirmed}` |
//!
//! A publish is mandatory and waits for the broker's confirm, so a step succeeds only when the
//! broker has taken the message; a message no queue receives is a fatal error. It carries a
//! `message_id` (the step's idempotency key unless `message_id` says otherwise), which consumers
//! (Weft's among them) use to drop the copy a retried step may send. A refused or lost connection
//! or a missing confirm is retryable.
//!
//! Consuming: a message is acknowledged only when its run is committed; one that cannot be read
//! is rejected without requeueing, so RabbitMQ dead-letters it when the queue has a dead-letter
//! exchange (`dead_letter_queue` sets that up). The message's `message_id`, when it has one, is
//! the message id that de-duplicates a redelivery.

mod config;

pub use config::{AmqpConfig, ConsumeConfig};

use async_trait::async_trait;
use futures_util::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Channel, Confirmation, ConnectionProperties};
use serde_json::{Map, Value, json};
use weft_core::{ActionSpec, Connection, ConnectorSpec, ConsumeSpec, json_kind};

use crate::secret::Secrets;
use crate::{ActionError, Call, Connector, Delivery, Settle, Subscription};

/// The `amqp` connector's description.
pub static SPEC: ConnectorSpec = ConnectorSpec {
    probe: Some("connects, opens a channel and closes both"),
    type_name: "amqp",
    summary: "A RabbitMQ broker (AMQP 0-9-1): confirmed publishing, queue consumers with manual acknowledgements.",
    actions: &[ActionSpec {
        name: "publish",
        summary: "Publishes a message to an exchange and waits for the broker's confirm.",
        inputs: &[
            "exchange",
            "routing_key",
            "message",
            "headers",
            "message_id",
            "persistent",
        ],
        required: &["routing_key", "message"],
        check_inputs: weft_core::catalog::no_input_check,
    }],
    check: |node, diags| {
        AmqpConfig::decode(node, diags);
    },
    consume: Some(ConsumeSpec {
        keys: config::CONSUME_KEYS,
        check: |node, diags| {
            ConsumeConfig::decode(node, diags);
        },
        message_id: Some("the message_id property"),
    }),
};

/// A live `amqp` connection: a publishing channel opened on first use (and again after the
/// connection broke), and a connection of its own for each subscription.
pub struct AmqpConnector {
    config: AmqpConfig,
    publisher: tokio::sync::Mutex<Option<(lapin::Connection, Channel)>>,
    secrets: Secrets,
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn lost(what: &str, e: impl std::fmt::Display) -> ActionError {
    ActionError::retryable(format!("amqp: {what}: {e}"))
}

impl AmqpConnector {
    /// Builds the connector from a connection's settings; nothing connects until the first use.
    pub fn build(connection: &Connection, secrets: &Secrets) -> Result<AmqpConnector, String> {
        crate::settings::connection(connection, AmqpConfig::decode).map(|config| AmqpConnector {
            secrets: secrets.clone(),
            ..AmqpConnector::new(config)
        })
    }

    /// Builds the connector from decoded settings.
    pub fn new(config: AmqpConfig) -> AmqpConnector {
        AmqpConnector {
            config,
            publisher: tokio::sync::Mutex::new(None),
            secrets: Secrets::new(),
        }
    }

    async fn connect(&self) -> Result<lapin::Connection, ActionError> {
        let mut url = self.config.url.clone();
        if let Some(password) = &self.config.password {
            let password = self.secrets.resolve(password).map_err(ActionError::fatal)?;
            url.set_password(Some(&password))
                .map_err(|_| ActionError::fatal("amqp: the URL cannot carry a password"))?;
        }
        let connecting = lapin::Connection::connect(
            url.as_str(),
            ConnectionProperties::default().with_connection_name("weft".into()),
        );
        match tokio::time::timeout(self.config.timeout, connecting).await {
            Ok(Ok(c)) => Ok(c),
            Ok(Err(e)) => Err(lost("cannot connect", e)),
            Err(_) => Err(ActionError::retryable(format!(
                "amqp: cannot connect within {:?}",
                self.config.timeout
            ))),
        }
    }

    async fn publish(&self, call: &Call<'_>) -> Result<Value, ActionError> {
        let input = &call.input;
        let string = |key: &str, default: Option<&str>| -> Result<String, ActionError> {
            match input.get(key) {
                None | Some(Value::Null) => default
                    .map(str::to_string)
                    .ok_or_else(|| ActionError::fatal(format!("publish needs `with.{key}`"))),
                Some(Value::String(s)) => Ok(s.clone()),
                Some(other) => Err(ActionError::fatal(format!(
                    "`{key}` must be text, found {}",
                    json_kind(other)
                ))),
            }
        };
        let exchange = string("exchange", Some(""))?;
        let routing_key = string("routing_key", None)?;
        let message_id = match input.get("message_id") {
            None | Some(Value::Null) => call.idempotency_key.to_string(),
            Some(v) => text(v),
        };
        let persistent = match input.get("persistent") {
            None | Some(Value::Null) => true,
            Some(Value::Bool(b)) => *b,
            Some(other) => {
                return Err(ActionError::fatal(format!(
                    "`persistent` must be true or false, found {other}"
                )));
            }
        };
        let mut headers = FieldTable::default();
        match input.get("headers") {
            None | Some(Value::Null) => {}
            Some(Value::Object(map)) => {
                for (k, v) in map {
                    headers.insert(
                        ShortString::from(k.as_str()),
                        AMQPValue::LongString(LongString::from(text(v).into_bytes())),
                    );
                }
            }
            Some(other) => {
                return Err(ActionError::fatal(format!(
                    "`headers` must be a mapping, found {}",
                    json_kind(other)
                )));
            }
        }
        let message = input.get("message").unwrap_or(&Value::Null);
        let content_type = if message.is_string() {
            "text/plain"
        } else {
            "application/json"
        };
        let properties = BasicProperties::default()
            .with_message_id(message_id.into())
            .with_delivery_mode(if persistent { 2 } else { 1 })
            .with_content_type(content_type.into())
            .with_headers(headers);
        let payload = text(message).into_bytes();

        let mut slot = self.publisher.lock().await;
        if !slot
            .as_ref()
            .is_some_and(|(c, ch)| c.status().connected() && ch.status().connected())
        {
            let connection = self.connect().await?;
            let channel = connection
                .create_channel()
                .await
                .map_err(|e| lost("cannot open a channel", e))?;
            channel
                .confirm_select(ConfirmSelectOptions::default())
                .await
                .map_err(|e| lost("cannot enable publisher confirms", e))?;
            *slot = Some((connection, channel));
        }
        let Some((_, channel)) = slot.as_ref() else {
            return Err(ActionError::retryable("amqp: no channel"));
        };
        let confirming = async {
            channel
                .basic_publish(
                    exchange.as_str().into(),
                    routing_key.as_str().into(),
                    BasicPublishOptions {
                        mandatory: true,
                        ..Default::default()
                    },
                    &payload,
                    properties,
                )
                .await
                .map_err(|e| lost("cannot publish", e))?
                .await
                .map_err(|e| lost("no confirm", e))
        };
        let confirmation = match tokio::time::timeout(self.config.timeout, confirming).await {
            Ok(c) => c?,
            Err(_) => {
                *slot = None;
                return Err(ActionError::retryable(format!(
                    "amqp: no confirm within {:?}",
                    self.config.timeout
                )));
            }
        };
        match confirmation {
            Confirmation::Ack(None) => Ok(json!({"confirmed": true})),
            Confirmation::Ack(Some(returned)) | Confirmation::Nack(Some(returned)) => {
                Err(ActionError::fatal(format!(
                    "amqp: no queue receives messages sent to exchange `{exchange}` with routing key `{routing_key}` ({})",
                    returned.reply_text
                )))
            }
            Confirmation::Nack(None) => Err(ActionError::retryable(
                "amqp: the broker refused the message (nack); it may accept it later",
            )),
            Confirmation::NotRequested => Err(ActionError::retryable(
                "amqp: the channel lost publisher confirms",
            )),
        }
    }
}

#[async_trait]
impl Connector for AmqpConnector {
    async fn call(&self, call: Call<'_>) -> Result<Value, ActionError> {
        match call.action {
            "publish" => self.publish(&call).await,
            other => Err(ActionError::fatal(format!(
                "amqp connections have no action `{other}`"
            ))),
        }
    }

    async fn probe(&self) -> Result<String, ActionError> {
        let connection = self.connect().await?;
        let opened = tokio::time::timeout(self.config.timeout, connection.create_channel()).await;
        let result = match opened {
            Ok(Ok(channel)) => {
                let _ = channel.close(200, "checked".into()).await;
                Ok("connected and opened a channel".to_string())
            }
            Ok(Err(e)) => Err(lost("connected, but cannot open a channel", e)),
            Err(_) => Err(ActionError::retryable(format!(
                "amqp: connected, but no channel within {:?}",
                self.config.timeout
            ))),
        };
        let _ = connection.close(200, "checked".into()).await;
        result
    }

    async fn subscribe(
        &self,
        workflow: &str,
        raw: &Value,
    ) -> Result<Box<dyn Subscription>, ActionError> {
        let config = crate::settings::queue(raw, ConsumeConfig::decode)?;
        let connection = self.connect().await?;
        let channel = connection
            .create_channel()
            .await
            .map_err(|e| lost("cannot open a channel", e))?;
        let mut arguments = FieldTable::default();
        if let Some(dead) = &config.dead_letter_queue {
            channel
                .queue_declare(
                    dead.as_str().into(),
                    QueueDeclareOptions {
                        durable: true,
                        ..Default::default()
                    },
                    FieldTable::default(),
                )
                .await
                .map_err(|e| lost("cannot declare the dead-letter queue", e))?;
            arguments.insert(
                "x-dead-letter-exchange".into(),
                AMQPValue::LongString(LongString::from(Vec::new())),
            );
            arguments.insert(
                "x-dead-letter-routing-key".into(),
                AMQPValue::LongString(LongString::from(dead.clone().into_bytes())),
            );
        }
        channel
            .queue_declare(
                config.queue.as_str().into(),
                QueueDeclareOptions {
                    durable: true,
                    ..Default::default()
                },
                arguments,
            )
            .await
            .map_err(|e| {
                lost(
                    "cannot declare the queue (does it exist with other settings?)",
                    e,
                )
            })?;
        channel
            .basic_qos(config.prefetch, BasicQosOptions::default())
            .await
            .map_err(|e| lost("cannot set the prefetch limit", e))?;
        let consumer = channel
            .basic_consume(
                config.queue.as_str().into(),
                format!("weft-{workflow}").into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(|e| lost("cannot consume", e))?;
        Ok(Box::new(AmqpSubscription {
            queue: config.queue,
            consumer,
            _channel: channel,
            _connection: connection,
        }))
    }
}

struct AmqpSubscription {
    queue: String,
    consumer: lapin::Consumer,
    // Kept open for as long as the subscription lives.
    _channel: Channel,
    _connection: lapin::Connection,
}

#[async_trait]
impl Subscription for AmqpSubscription {
    async fn next(&mut self) -> Result<Delivery, ActionError> {
        let delivery = match self.consumer.next().await {
            Some(Ok(d)) => d,
            Some(Err(e)) => return Err(lost("the consumer broke", e)),
            None => return Err(ActionError::retryable("amqp: the consumer was cancelled")),
        };
        let mut meta = Map::new();
        meta.insert("queue".into(), json!(self.queue));
        meta.insert("exchange".into(), json!(delivery.exchange.as_str()));
        meta.insert("routing_key".into(), json!(delivery.routing_key.as_str()));
        meta.insert("redelivered".into(), json!(delivery.redelivered));
        let message_id = delivery
            .properties
            .message_id()
            .as_ref()
            .map(|m| m.as_str().to_string());
        meta.insert("message_id".into(), json!(message_id));
        Ok(Delivery {
            payload: delivery.data,
            meta,
            id: message_id.map(|m| format!("{}:{m}", self.queue)),
            settle: Box::new(AmqpSettle(delivery.acker)),
        })
    }
}

struct AmqpSettle(lapin::Acker);

#[async_trait]
impl Settle for AmqpSettle {
    async fn ack(self: Box<Self>) -> Result<(), ActionError> {
        self.0
            .ack(BasicAckOptions::default())
            .await
            .map(|_| ())
            .map_err(|e| lost("acknowledging", e))
    }

    async fn reject(self: Box<Self>, _reason: &str) -> Result<(), ActionError> {
        self.0
            .nack(BasicNackOptions {
                requeue: false,
                multiple: false,
            })
            .await
            .map(|_| ())
            .map_err(|e| lost("rejecting", e))
    }
}

#[cfg(test)]
mod tests;
