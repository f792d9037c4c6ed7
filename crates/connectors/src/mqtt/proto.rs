//! MQTT 3.1.1 and MQTT 5 behind one small surface: a client that publishes, subscribes and
//! acknowledges, and an event loop whose events are reduced to the few the connector acts on.
//! Everything above this module is the same for both protocol versions.

use rumqttc::Outgoing;
use rumqttc::v5::mqttbytes::v5::Packet as Packet5;

/// The protocol version of a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    /// MQTT 3.1.1.
    V311,
    /// MQTT 5.
    V5,
}

/// A received message, with what its acknowledgement needs.
pub(super) struct Message {
    pub topic: String,
    pub payload: Vec<u8>,
    pub qos: u8,
    pub retain: bool,
    pub dup: bool,
    raw: Raw,
}

enum Raw {
    V311(rumqttc::Publish),
    V5(rumqttc::v5::mqttbytes::v5::Publish),
}

/// What the connector acts on.
pub(super) enum Event {
    ConnAck,
    SubAck,
    Message(Box<Message>),
    /// A publish of ours was written with this packet id (0 for QoS 0).
    Sent(u16),
    /// The broker acknowledged our publish with this packet id.
    PubAck(u16),
    Other,
}

/// A client handle; cheap to clone.
#[derive(Clone)]
pub(super) enum Client {
    V311(rumqttc::AsyncClient),
    V5(rumqttc::v5::AsyncClient),
}

/// The connection itself, which must be polled for anything to happen.
pub(super) enum Loop {
    V311(Box<rumqttc::EventLoop>),
    V5(Box<rumqttc::v5::EventLoop>),
}

/// What a connection is opened with.
pub(super) struct Options<'a> {
    pub version: Version,
    pub client_id: String,
    pub host: &'a str,
    pub port: u16,
    /// Keep the session (and its queued messages) across connections.
    pub persistent: bool,
    pub credentials: Option<(String, String)>,
    pub manual_acks: bool,
    pub max_packet: usize,
}

/// How long a persistent MQTT 5 session outlives its connection: a week.
const SESSION_EXPIRY_SECONDS: u32 = 7 * 24 * 3600;

pub(super) fn open(o: Options<'_>) -> (Client, Loop) {
    let keep_alive = std::time::Duration::from_secs(15);
    match o.version {
        Version::V311 => {
            let mut m = rumqttc::MqttOptions::new(o.client_id, o.host, o.port);
            m.set_clean_session(!o.persistent)
                .set_keep_alive(keep_alive)
                .set_max_packet_size(o.max_packet, o.max_packet)
                .set_manual_acks(o.manual_acks);
            if let Some((user, password)) = o.credentials {
                m.set_credentials(user, password);
            }
            let (c, l) = rumqttc::AsyncClient::new(m, 100);
            (Client::V311(c), Loop::V311(Box::new(l)))
        }
        Version::V5 => {
            let mut m = rumqttc::v5::MqttOptions::new(o.client_id, o.host, o.port);
            m.set_clean_start(!o.persistent)
                .set_keep_alive(keep_alive)
                .set_max_packet_size(Some(o.max_packet as u32))
                .set_manual_acks(o.manual_acks);
            if o.persistent {
                m.set_session_expiry_interval(Some(SESSION_EXPIRY_SECONDS));
            }
            if let Some((user, password)) = o.credentials {
                m.set_credentials(user, password);
            }
            let (c, l) = rumqttc::v5::AsyncClient::new(m, 100);
            (Client::V5(c), Loop::V5(Box::new(l)))
        }
    }
}

fn qos311(qos: u8) -> rumqttc::QoS {
    if qos == 0 {
        rumqttc::QoS::AtMostOnce
    } else {
        rumqttc::QoS::AtLeastOnce
    }
}

fn qos5(qos: u8) -> rumqttc::v5::mqttbytes::QoS {
    if qos == 0 {
        rumqttc::v5::mqttbytes::QoS::AtMostOnce
    } else {
        rumqttc::v5::mqttbytes::QoS::AtLeastOnce
    }
}

impl Client {
    pub async fn publish(
        &self,
        topic: String,
        qos: u8,
        retain: bool,
        payload: Vec<u8>,
    ) -> Result<(), String> {
        match self {
            Client::V311(c) => c
                .publish(topic, qos311(qos), retain, payload)
                .await
                .map_err(|e| e.to_string()),
            Client::V5(c) => c
                .publish(topic, qos5(qos), retain, payload)
                .await
                .map_err(|e| e.to_string()),
        }
    }

    pub async fn subscribe(&self, topic: String) -> Result<(), String> {
        match self {
            Client::V311(c) => c
                .subscribe(topic, qos311(1))
                .await
                .map_err(|e| e.to_string()),
            Client::V5(c) => c.subscribe(topic, qos5(1)).await.map_err(|e| e.to_string()),
        }
    }

    pub fn try_subscribe(&self, topic: String) {
        // A failure shows as the connection breaking, which the hub handles.
        match self {
            Client::V311(c) => drop(c.try_subscribe(topic, qos311(1))),
            Client::V5(c) => drop(c.try_subscribe(topic, qos5(1))),
        }
    }

    pub async fn ack(&self, message: &Message) -> Result<(), String> {
        match (self, &message.raw) {
            (Client::V311(c), Raw::V311(p)) => c.ack(p).await.map_err(|e| e.to_string()),
            (Client::V5(c), Raw::V5(p)) => c.ack(p).await.map_err(|e| e.to_string()),
            _ => Err("a message acknowledged on a connection of another version".into()),
        }
    }
}

impl Loop {
    pub async fn poll(&mut self) -> Result<Event, String> {
        match self {
            Loop::V311(l) => match l.poll().await.map_err(|e| e.to_string())? {
                rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(_)) => Ok(Event::ConnAck),
                rumqttc::Event::Incoming(rumqttc::Packet::SubAck(_)) => Ok(Event::SubAck),
                rumqttc::Event::Incoming(rumqttc::Packet::PubAck(a)) => Ok(Event::PubAck(a.pkid)),
                rumqttc::Event::Incoming(rumqttc::Packet::Publish(p)) => {
                    Ok(Event::Message(Box::new(Message {
                        topic: p.topic.clone(),
                        payload: p.payload.to_vec(),
                        qos: p.qos as u8,
                        retain: p.retain,
                        dup: p.dup,
                        raw: Raw::V311(p),
                    })))
                }
                rumqttc::Event::Outgoing(Outgoing::Publish(pkid)) => Ok(Event::Sent(pkid)),
                _ => Ok(Event::Other),
            },
            Loop::V5(l) => match l.poll().await.map_err(|e| e.to_string())? {
                rumqttc::v5::Event::Incoming(Packet5::ConnAck(_)) => Ok(Event::ConnAck),
                rumqttc::v5::Event::Incoming(Packet5::SubAck(_)) => Ok(Event::SubAck),
                rumqttc::v5::Event::Incoming(Packet5::PubAck(a)) => Ok(Event::PubAck(a.pkid)),
                rumqttc::v5::Event::Incoming(Packet5::Publish(p)) => {
                    Ok(Event::Message(Box::new(Message {
                        topic: String::from_utf8_lossy(&p.topic).into_owned(),
                        payload: p.payload.to_vec(),
                        qos: p.qos as u8,
                        retain: p.retain,
                        dup: p.dup,
                        raw: Raw::V5(p),
                    })))
                }
                rumqttc::v5::Event::Outgoing(Outgoing::Publish(pkid)) => Ok(Event::Sent(pkid)),
                _ => Ok(Event::Other),
            },
        }
    }
}
