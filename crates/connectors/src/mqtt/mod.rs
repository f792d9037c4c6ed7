//! The `mqtt` connector (MQTT 3.1.1 or 5, by the connection's `version`): publishing with QoS 0
//! or 1, and consuming a topic with a persistent session and QoS 1 for `queue` triggers.
//! `proto.rs` puts both protocol versions behind one surface.
//!
//! | action | `with:` | output |
//! |---|---|---|
//! | `publish` | `topic`, `message` (text as it is, anything else as JSON), `qos` (0 or 1, default 1), `retain` | `{topic, qos}` |
//!
//! A QoS 1 publish returns only when the broker's PUBACK arrives, so a step succeeds only when the
//! broker has the message; a lost connection or no PUBACK within the timeout is retryable (the
//! broker may then get the message twice: MQTT QoS 1 is at least once).
//!
//! Consuming: the session is persistent (`clean session` off, a stable client id), messages are
//! received with QoS 1 and acknowledged (PUBACK) only when their run is committed, so the broker
//! delivers them again after a crash. MQTT gives messages no id that survives redelivery, so such
//! a message may start a second run; a `key` over the message de-duplicates when the payload has
//! one. MQTT cannot reject a message: one that cannot be read is acknowledged and its reason
//! logged by the hub.

mod config;
mod proto;

pub use config::{ConsumeConfig, MqttConfig};
pub use proto::Version;

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use proto::{Client, Event, Loop, Message, Options};
use serde_json::{Map, Value, json};
use tokio::sync::oneshot;
use weft_core::{ActionSpec, Connection, ConnectorSpec, ConsumeSpec};

use crate::secret::Secrets;
use crate::{ActionError, Call, Connector, Delivery, Settle, Subscription};

/// Largest packet sent or received.
const MAX_PACKET: usize = 16 * 1024 * 1024;

/// The `mqtt` connector's description.
pub static SPEC: ConnectorSpec = ConnectorSpec {
    probe: Some(
        "connects with a client id of its own and waits for the broker to accept the session",
    ),
    type_name: "mqtt",
    summary: "An MQTT 3.1.1 or 5 broker: publishing with QoS 0 or 1, persistent QoS 1 subscriptions.",
    actions: &[ActionSpec {
        name: "publish",
        summary: "Publishes a message to a topic; with QoS 1 it waits for the broker's PUBACK.",
        inputs: &["topic", "message", "qos", "retain"],
        required: &["topic", "message"],
        check_inputs: weft_core::catalog::no_input_check,
    }],
    check: |node, diags| {
        MqttConfig::decode(node, diags);
    },
    consume: Some(ConsumeSpec {
        keys: config::CONSUME_KEYS,
        check: |node, diags| {
            ConsumeConfig::decode(node, diags);
        },
        message_id: None,
    }),
};

/// A live `mqtt` connection: a publishing client opened on first use (and again after it broke),
/// and a client of its own for each subscription.
pub struct MqttConnector {
    config: MqttConfig,
    publisher: tokio::sync::Mutex<Option<Arc<Publisher>>>,
    secrets: Secrets,
}

type Waiter = oneshot::Sender<Result<(), String>>;

/// Publishes waiting for their packet id (in the order they were sent) or for their PUBACK.
#[derive(Default)]
struct Waiters {
    queued: VecDeque<(u8, Waiter)>,
    inflight: HashMap<u16, Waiter>,
    broken: Option<String>,
}

struct Publisher {
    client: Client,
    waiters: Arc<std::sync::Mutex<Waiters>>,
    /// Held while a publish is queued, so that waiters line up with packets.
    order: tokio::sync::Mutex<()>,
    driver: tokio::task::JoinHandle<()>,
}

impl Drop for Publisher {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn unique_suffix() -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

fn lock(w: &std::sync::Mutex<Waiters>) -> std::sync::MutexGuard<'_, Waiters> {
    match w.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    }
}

/// Polls a publisher's event loop, matching packet ids and PUBACKs to waiting publishes. On the
/// first connection error every waiter fails (retryable) and the publisher is done.
async fn drive(mut eventloop: Loop, waiters: Arc<std::sync::Mutex<Waiters>>) {
    loop {
        match eventloop.poll().await {
            Ok(Event::Sent(pkid)) => {
                let mut w = lock(&waiters);
                if let Some((qos, tx)) = w.queued.pop_front() {
                    if qos == 0 {
                        let _ = tx.send(Ok(()));
                    } else {
                        w.inflight.insert(pkid, tx);
                    }
                }
            }
            Ok(Event::PubAck(pkid)) => {
                if let Some(tx) = lock(&waiters).inflight.remove(&pkid) {
                    let _ = tx.send(Ok(()));
                }
            }
            Ok(_) => {}
            Err(e) => {
                let mut w = lock(&waiters);
                let message = format!("mqtt: the connection broke: {e}");
                for (_, tx) in w.queued.drain(..) {
                    let _ = tx.send(Err(message.clone()));
                }
                for (_, tx) in w.inflight.drain() {
                    let _ = tx.send(Err(message.clone()));
                }
                w.broken = Some(message);
                return;
            }
        }
    }
}

impl MqttConnector {
    /// Builds the connector from a connection's settings; nothing connects until the first use.
    pub fn build(connection: &Connection, secrets: &Secrets) -> Result<MqttConnector, String> {
        crate::settings::connection(connection, MqttConfig::decode).map(|config| MqttConnector {
            secrets: secrets.clone(),
            ..MqttConnector::new(config)
        })
    }

    /// Builds the connector from decoded settings.
    pub fn new(config: MqttConfig) -> MqttConnector {
        MqttConnector {
            config,
            publisher: tokio::sync::Mutex::new(None),
            secrets: Secrets::new(),
        }
    }

    fn options(&self, client_id: String, persistent: bool) -> Result<Options<'_>, ActionError> {
        let credentials = match (&self.config.username, &self.config.password) {
            (Some(user), Some(password)) => Some((
                user.clone(),
                self.secrets.resolve(password).map_err(ActionError::fatal)?,
            )),
            _ => None,
        };
        Ok(Options {
            version: self.config.version,
            client_id,
            host: &self.config.host,
            port: self.config.port,
            persistent,
            credentials,
            manual_acks: persistent,
            max_packet: MAX_PACKET,
        })
    }

    async fn publisher(&self) -> Result<Arc<Publisher>, ActionError> {
        let mut slot = self.publisher.lock().await;
        if let Some(p) = slot.as_ref()
            && lock(&p.waiters).broken.is_none()
        {
            return Ok(p.clone());
        }
        let options = self.options(
            format!("{}-pub-{}", self.config.client_id, unique_suffix()),
            false,
        )?;
        let (client, eventloop) = proto::open(options);
        let waiters = Arc::new(std::sync::Mutex::new(Waiters::default()));
        let driver = tokio::spawn(drive(eventloop, waiters.clone()));
        let p = Arc::new(Publisher {
            client,
            waiters,
            order: tokio::sync::Mutex::new(()),
            driver,
        });
        *slot = Some(p.clone());
        Ok(p)
    }

    async fn publish(&self, input: &Value) -> Result<Value, ActionError> {
        let topic = match input.get("topic") {
            Some(Value::String(t)) if !t.is_empty() && !t.contains(['+', '#', '\0']) => t.clone(),
            Some(other) => {
                return Err(ActionError::fatal(format!(
                    "`topic` must be a topic without wildcards, found {other}"
                )));
            }
            None => return Err(ActionError::fatal("publish needs `with.topic`")),
        };
        let qos: u8 = match input.get("qos") {
            None | Some(Value::Null) => 1,
            Some(v) if v == &json!(1) => 1,
            Some(v) if v == &json!(0) => 0,
            Some(other) => {
                return Err(ActionError::fatal(format!(
                    "`qos` must be 0 or 1, found {other}"
                )));
            }
        };
        let retain = match input.get("retain") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(other) => {
                return Err(ActionError::fatal(format!(
                    "`retain` must be true or false, found {other}"
                )));
            }
        };
        let payload = text(input.get("message").unwrap_or(&Value::Null));
        let publisher = self.publisher().await?;
        let (tx, rx) = oneshot::channel();
        {
            let _order = publisher.order.lock().await;
            lock(&publisher.waiters).queued.push_back((qos, tx));
            publisher
                .client
                .publish(topic.clone(), qos, retain, payload.into_bytes())
                .await
                .map_err(|e| ActionError::retryable(format!("mqtt: cannot publish: {e}")))?;
        }
        match tokio::time::timeout(self.config.timeout, rx).await {
            Ok(Ok(Ok(()))) => Ok(json!({"topic": topic, "qos": qos})),
            Ok(Ok(Err(message))) => Err(ActionError::retryable(message)),
            Ok(Err(_)) => Err(ActionError::retryable(
                "mqtt: the publishing connection ended",
            )),
            Err(_) => Err(ActionError::retryable(format!(
                "mqtt: no PUBACK within {:?}",
                self.config.timeout
            ))),
        }
    }
}

#[async_trait]
impl Connector for MqttConnector {
    async fn call(&self, call: Call<'_>) -> Result<Value, ActionError> {
        match call.action {
            "publish" => self.publish(&call.input).await,
            other => Err(ActionError::fatal(format!(
                "mqtt connections have no action `{other}`"
            ))),
        }
    }

    async fn probe(&self) -> Result<String, ActionError> {
        let options = self.options(
            format!("{}-check-{}", self.config.client_id, unique_suffix()),
            false,
        )?;
        let (_client, mut eventloop) = proto::open(options);
        let connected = async {
            loop {
                match eventloop.poll().await {
                    Ok(Event::ConnAck) => return Ok(()),
                    Ok(_) => {}
                    Err(e) => return Err(e),
                }
            }
        };
        match tokio::time::timeout(self.config.timeout, connected).await {
            Ok(Ok(())) => Ok(format!(
                "connected to {}:{} and the broker accepted the session",
                self.config.host, self.config.port
            )),
            Ok(Err(e)) => Err(ActionError::retryable(format!("mqtt: cannot connect: {e}"))),
            Err(_) => Err(ActionError::retryable(format!(
                "mqtt: no CONNACK within {:?}",
                self.config.timeout
            ))),
        }
    }

    async fn subscribe(
        &self,
        workflow: &str,
        raw: &Value,
    ) -> Result<Box<dyn Subscription>, ActionError> {
        let config = crate::settings::queue(raw, ConsumeConfig::decode)?;
        let client_id = config
            .client_id
            .clone()
            .unwrap_or_else(|| format!("{}-{workflow}", self.config.client_id));
        let options = self.options(client_id, true)?;
        let (client, mut eventloop) = proto::open(options);
        // Connect now, so that a broker that is down is an error here, not a silent wait.
        let connected = tokio::time::timeout(self.config.timeout, async {
            loop {
                match eventloop.poll().await {
                    Ok(Event::ConnAck) => return Ok(()),
                    Ok(_) => {}
                    Err(e) => return Err(e),
                }
            }
        })
        .await;
        match connected {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(ActionError::retryable(format!("mqtt: cannot connect: {e}"))),
            Err(_) => {
                return Err(ActionError::retryable(format!(
                    "mqtt: no CONNACK within {:?}",
                    self.config.timeout
                )));
            }
        }
        client
            .subscribe(config.topic.clone())
            .await
            .map_err(|e| ActionError::retryable(format!("mqtt: cannot subscribe: {e}")))?;
        // Wait for the SUBACK, keeping any message that arrives first (a persistent session
        // delivers its queued messages right after connecting).
        let mut early = VecDeque::new();
        let subscribed = tokio::time::timeout(self.config.timeout, async {
            loop {
                match eventloop.poll().await {
                    Ok(Event::SubAck) => return Ok(()),
                    Ok(Event::Message(m)) => early.push_back(*m),
                    Ok(_) => {}
                    Err(e) => return Err(e),
                }
            }
        })
        .await;
        match subscribed {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                return Err(ActionError::retryable(format!(
                    "mqtt: cannot subscribe: {e}"
                )));
            }
            Err(_) => {
                return Err(ActionError::retryable(format!(
                    "mqtt: no SUBACK within {:?}",
                    self.config.timeout
                )));
            }
        }
        // From here a task of its own polls the connection, so that keep-alives, PUBACKs and
        // reconnects go on while the hub commits a message's run.
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        for publish in early {
            let _ = tx.send(Ok(publish));
        }
        let driver = tokio::spawn(receive(eventloop, client.clone(), config.topic, tx));
        Ok(Box::new(MqttSubscription { client, rx, driver }))
    }
}

/// Polls a subscription's connection, passing messages on, subscribing again after a reconnect;
/// the first connection error ends it (the hub subscribes again).
async fn receive(
    mut eventloop: Loop,
    client: Client,
    topic: String,
    tx: tokio::sync::mpsc::UnboundedSender<Result<Message, String>>,
) {
    loop {
        match eventloop.poll().await {
            Ok(Event::Message(message)) => {
                if tx.send(Ok(*message)).is_err() {
                    return;
                }
            }
            Ok(Event::ConnAck) => {
                client.try_subscribe(topic.clone());
            }
            Ok(_) => {}
            Err(e) => {
                let _ = tx.send(Err(format!("mqtt: the connection broke: {e}")));
                return;
            }
        }
    }
}

struct MqttSubscription {
    client: Client,
    rx: tokio::sync::mpsc::UnboundedReceiver<Result<Message, String>>,
    driver: tokio::task::JoinHandle<()>,
}

impl Drop for MqttSubscription {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

impl MqttSubscription {
    fn delivery(&self, mut message: Message) -> Delivery {
        let mut meta = Map::new();
        meta.insert("topic".into(), json!(message.topic));
        meta.insert("qos".into(), json!(message.qos));
        meta.insert("retain".into(), json!(message.retain));
        meta.insert("redelivered".into(), json!(message.dup));
        Delivery {
            payload: std::mem::take(&mut message.payload),
            meta,
            id: None,
            settle: Box::new(MqttSettle {
                client: self.client.clone(),
                message,
            }),
        }
    }
}

#[async_trait]
impl Subscription for MqttSubscription {
    async fn next(&mut self) -> Result<Delivery, ActionError> {
        match self.rx.recv().await {
            Some(Ok(message)) => Ok(self.delivery(message)),
            Some(Err(message)) => Err(ActionError::retryable(message)),
            None => Err(ActionError::retryable("mqtt: the connection ended")),
        }
    }
}

struct MqttSettle {
    client: Client,
    message: Message,
}

#[async_trait]
impl Settle for MqttSettle {
    async fn ack(self: Box<Self>) -> Result<(), ActionError> {
        self.client
            .ack(&self.message)
            .await
            .map_err(|e| ActionError::retryable(format!("mqtt: acknowledging: {e}")))
    }

    async fn reject(self: Box<Self>, _reason: &str) -> Result<(), ActionError> {
        // MQTT has no way to refuse a message; acknowledging it keeps it from coming back.
        self.ack().await
    }
}

#[cfg(test)]
mod tests;
