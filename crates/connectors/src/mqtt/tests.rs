//! The `mqtt` connector against the real Mosquitto on 127.0.0.1:1883: QoS 1 publishing with
//! PUBACK, a persistent session that keeps messages while the consumer is away, and redelivery
//! of a message that was never acknowledged.

use std::time::Duration;

use serde_json::{Value, json};
use weft_core::yaml;

use super::*;
use crate::testing::{next, unique};
use weft_core::Diagnostics;

fn mqtt() -> Option<MqttConnector> {
    mqtt_version("3.1.1")
}

fn mqtt_version(version: &str) -> Option<MqttConnector> {
    weft_testkit::service("Mosquitto", 1883).then(|| {
        let node = yaml::parse(&format!(
            "{{type: mqtt, url: \"mqtt://127.0.0.1:1883\", version: \"{version}\", timeout: 5s}}"
        ))
        .unwrap();
        let mut diags = Diagnostics::new("weft.yaml");
        MqttConnector::new(MqttConfig::decode(&node, &mut diags).unwrap())
    })
}

async fn publish(c: &MqttConnector, input: Value) -> Result<Value, ActionError> {
    c.call(Call {
        action: "publish",
        input,
        idempotency_key: "run/step",
        max_output_bytes: 1 << 20,
    })
    .await
}

#[tokio::test]
async fn a_persistent_session_keeps_and_redelivers_until_acknowledged() {
    let Some(m) = mqtt() else { return };
    session_keeps_and_redelivers(m).await;
}

#[tokio::test]
async fn mqtt5_sessions_keep_and_redeliver_until_acknowledged() {
    let Some(m) = mqtt_version("5") else { return };
    session_keeps_and_redelivers(m).await;
}

async fn session_keeps_and_redelivers(m: MqttConnector) {
    let topic = unique("mqtt");
    let settings = json!({"topic": format!("{topic}/#"), "client_id": unique("mqtt")});
    // The first subscription creates the session; messages published while away wait in it.
    drop(m.subscribe("wf", &settings).await.unwrap());
    for n in 0..3 {
        let out = publish(
            &m,
            json!({"topic": format!("{topic}/in"), "message": {"n": n}}),
        )
        .await
        .unwrap();
        assert_eq!(out, json!({"topic": format!("{topic}/in"), "qos": 1}));
    }
    let mut sub = m.subscribe("wf", &settings).await.unwrap();
    let first = next(&mut sub).await;
    assert_eq!(first.payload, br#"{"n":0}"#);
    assert_eq!(first.meta["topic"], json!(format!("{topic}/in")));
    first.settle.ack().await.unwrap();
    // Taken but never acknowledged, as if the hub died before committing its run.
    let second = next(&mut sub).await;
    assert_eq!(second.payload, br#"{"n":1}"#);
    drop(second);
    let third = next(&mut sub).await;
    third.settle.ack().await.unwrap();
    // Give the PUBACK of the third time to leave before the connection goes.
    let _ = tokio::time::timeout(Duration::from_millis(300), sub.next()).await;
    drop(sub);

    let mut sub = m.subscribe("wf", &settings).await.unwrap();
    let again = next(&mut sub).await;
    assert_eq!(
        again.payload, br#"{"n":1}"#,
        "the unacknowledged message comes back"
    );
    assert_eq!(again.meta["redelivered"], true);
    again.settle.ack().await.unwrap();
    let quiet = tokio::time::timeout(Duration::from_millis(1000), sub.next()).await;
    assert!(quiet.is_err(), "nothing else comes back");

    let err = publish(&m, json!({"topic": "a/+", "message": "x"}))
        .await
        .unwrap_err();
    assert!(!err.is_retryable());
    assert_eq!(
        publish(
            &m,
            json!({"topic": format!("{topic}/q0"), "message": "x", "qos": 0})
        )
        .await
        .unwrap()["qos"],
        0
    );
}

#[tokio::test]
async fn an_unreachable_broker_is_retryable() {
    let node = yaml::parse("{type: mqtt, url: \"mqtt://127.0.0.1:1\", timeout: 1s}").unwrap();
    let mut diags = Diagnostics::new("weft.yaml");
    let m = MqttConnector::new(MqttConfig::decode(&node, &mut diags).unwrap());
    let err = publish(&m, json!({"topic": "a", "message": "x"}))
        .await
        .unwrap_err();
    assert!(err.is_retryable(), "{err}");
    let err = m
        .subscribe("wf", &json!({"topic": "a"}))
        .await
        .err()
        .unwrap();
    assert!(err.is_retryable(), "{err}");
}

#[tokio::test]
async fn keeps_up_with_a_stream_published_meanwhile() {
    let Some(m) = mqtt() else { return };
    let m = std::sync::Arc::new(m);
    let topic = unique("mqtt");
    let settings = json!({"topic": format!("{topic}/#"), "client_id": unique("mqtt")});
    drop(m.subscribe("wf", &settings).await.unwrap());
    let publisher = {
        let m = m.clone();
        let topic = topic.clone();
        tokio::spawn(async move {
            for n in 0..300 {
                publish(
                    &m,
                    json!({"topic": format!("{topic}/in"), "message": {"n": n}}),
                )
                .await
                .unwrap();
            }
        })
    };
    let mut sub = m.subscribe("wf", &settings).await.unwrap();
    for n in 0..300 {
        let d = next(&mut sub).await;
        assert_eq!(d.payload, format!("{{\"n\":{n}}}").into_bytes());
        d.settle.ack().await.unwrap();
    }
    publisher.await.unwrap();
}

#[tokio::test]
async fn a_probe_waits_for_the_broker_to_accept_the_session() {
    for version in ["3.1.1", "5"] {
        let Some(c) = mqtt_version(version) else {
            return;
        };
        assert_eq!(
            c.probe().await.unwrap(),
            "connected to 127.0.0.1:1883 and the broker accepted the session"
        );
    }
    let node = yaml::parse("{type: mqtt, url: \"mqtt://127.0.0.1:1\", timeout: 2s}").unwrap();
    let mut diags = Diagnostics::new("weft.yaml");
    let down = MqttConnector::new(MqttConfig::decode(&node, &mut diags).unwrap());
    let err = down.probe().await.unwrap_err();
    assert!(err.to_string().starts_with("mqtt: cannot connect"), "{err}");
}
