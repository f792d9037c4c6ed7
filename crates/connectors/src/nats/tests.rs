//! The `nats` connector against the real server on 127.0.0.1:4222 with JetStream: acknowledged
//! publishing with de-duplication, consuming with acknowledgements, termination of a rejected
//! message and redelivery of one that was never settled.

use std::time::Duration;

use serde_json::{Value, json};
use weft_core::yaml;

use super::*;
use crate::testing::{next, unique};
use weft_core::Diagnostics;

fn nats() -> Option<NatsConnector> {
    weft_testkit::service("NATS", 4222).then(|| {
        let node =
            yaml::parse("{type: nats, url: \"nats://127.0.0.1:4222\", timeout: 5s}").unwrap();
        let mut diags = Diagnostics::new("weft.yaml");
        NatsConnector::new(NatsConfig::decode(&node, &mut diags).unwrap())
    })
}

async fn publish(c: &NatsConnector, key: &str, input: Value) -> Result<Value, ActionError> {
    c.call(Call {
        action: "publish",
        input,
        idempotency_key: key,
        max_output_bytes: 1 << 20,
    })
    .await
}

#[tokio::test]
async fn publishes_once_and_consumes_with_acknowledgements() {
    let Some(n) = nats() else { return };
    let stream = unique("nats");
    let subject = format!("{stream}.orders");
    let settings = json!({"stream": stream, "subject": format!("{stream}.>"), "ack_wait": "1s"});
    // Subscribing creates the stream.
    let mut sub = n.subscribe("wf", &settings).await.unwrap();

    let first = publish(
        &n,
        "run/step",
        json!({"subject": subject, "message": {"n": 0}}),
    )
    .await
    .unwrap();
    assert_eq!(first["duplicate"], false);
    let again = publish(
        &n,
        "run/step",
        json!({"subject": subject, "message": {"n": 0}}),
    )
    .await
    .unwrap();
    assert_eq!(
        again["duplicate"], true,
        "the same idempotency key is one message"
    );
    assert_eq!(again["sequence"], first["sequence"]);
    for i in 1..3 {
        publish(
            &n,
            &format!("run/step/{i}"),
            json!({"subject": subject, "message": {"n": i}, "headers": {"x-kind": "test"}}),
        )
        .await
        .unwrap();
    }

    let d = next(&mut sub).await;
    assert_eq!(d.payload, br#"{"n":0}"#);
    assert_eq!(d.meta["subject"], json!(subject));
    assert_eq!(d.id, Some(format!("{stream}:1")));
    d.settle.ack().await.unwrap();
    let unsettled = next(&mut sub).await;
    let unsettled_id = unsettled.id.clone();
    assert_eq!(unsettled.meta["headers"]["x-kind"], "test");
    drop(unsettled);
    let rejected = next(&mut sub).await;
    rejected.settle.reject("not wanted").await.unwrap();
    // After ack_wait the unsettled one comes back, with its id; the others do not.
    let back = next(&mut sub).await;
    assert_eq!(back.id, unsettled_id);
    assert_eq!(back.meta["delivered"], 2);
    back.settle.ack().await.unwrap();
    let quiet = tokio::time::timeout(Duration::from_millis(2500), sub.next()).await;
    assert!(quiet.is_err(), "nothing else is delivered");

    let err = publish(
        &n,
        "k",
        json!({"subject": format!("{}.nowhere", unique("nats")), "message": "x"}),
    )
    .await
    .unwrap_err();
    assert!(!err.is_retryable(), "{err}");
    assert!(
        err.to_string().contains("no stream stores subject"),
        "{err}"
    );
}

#[tokio::test]
async fn an_unreachable_server_is_retryable() {
    let node = yaml::parse("{type: nats, url: \"nats://127.0.0.1:1\", timeout: 1s}").unwrap();
    let mut diags = Diagnostics::new("weft.yaml");
    let n = NatsConnector::new(NatsConfig::decode(&node, &mut diags).unwrap());
    let err = publish(&n, "k", json!({"subject": "a", "message": "x"}))
        .await
        .unwrap_err();
    assert!(err.is_retryable(), "{err}");
    let err = n
        .subscribe("wf", &json!({"stream": "S"}))
        .await
        .err()
        .unwrap();
    assert!(err.is_retryable(), "{err}");
}

#[tokio::test]
async fn a_probe_asks_jetstream_and_a_closed_port_fails_it() {
    let Some(c) = nats() else { return };
    let found = c.probe().await.unwrap();
    assert!(
        found.starts_with("connected to NATS ") && found.contains("JetStream answered"),
        "{found}"
    );
    let node = yaml::parse("{type: nats, url: \"nats://127.0.0.1:1\", timeout: 2s}").unwrap();
    let mut diags = Diagnostics::new("weft.yaml");
    let down = NatsConnector::new(NatsConfig::decode(&node, &mut diags).unwrap());
    let err = down.probe().await.unwrap_err();
    assert!(err.is_retryable(), "{err}");
}
