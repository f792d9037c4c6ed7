//! The `amqp` connector against the real RabbitMQ on 127.0.0.1:5672: confirmed publishing, an
//! unroutable message as a fatal error, consuming with acknowledgements, redelivery of a message
//! that was never settled, and dead-lettering of a rejected one.

use serde_json::{Value, json};
use weft_core::yaml;

use super::*;
use crate::testing::{next, unique};
use weft_core::Diagnostics;

fn rabbit() -> Option<AmqpConnector> {
    weft_testkit::service("RabbitMQ", 5672).then(|| {
        let node = yaml::parse(
            "{type: amqp, url: \"amqp://guest@127.0.0.1:5672/%2f\", password: {env: WEFT_TEST_AMQP_PASSWORD}, timeout: 5s}",
        )
        .unwrap();
        let mut diags = Diagnostics::new("weft.yaml");
        AmqpConnector::new(AmqpConfig::decode(&node, &mut diags).unwrap())
    })
}

async fn publish(c: &AmqpConnector, key: &str, input: Value) -> Result<Value, ActionError> {
    c.call(Call {
        action: "publish",
        input,
        idempotency_key: key,
        max_output_bytes: 1 << 20,
    })
    .await
}

#[tokio::test]
async fn confirms_consumes_redelivers_and_dead_letters() {
    let Some(r) = rabbit() else { return };
    let queue = unique("amqp");
    let dead = format!("{queue}.dead");
    let settings = json!({"queue": queue, "prefetch": 10, "dead_letter_queue": dead});
    // Subscribing declares the queue and its dead-letter queue.
    let mut sub = r.subscribe("wf", &settings).await.unwrap();
    for n in 0..3 {
        let out = publish(
            &r,
            &format!("run/step/{n}"),
            json!({"routing_key": queue, "message": {"n": n}, "headers": {"x-kind": "test"}}),
        )
        .await
        .unwrap();
        assert_eq!(out, json!({"confirmed": true}));
    }
    let first = next(&mut sub).await;
    assert_eq!(first.payload, br#"{"n":0}"#);
    assert_eq!(first.id, Some(format!("{queue}:run/step/0")));
    assert_eq!(first.meta["routing_key"], json!(queue));
    first.settle.ack().await.unwrap();
    let unsettled = next(&mut sub).await;
    let unsettled_id = unsettled.id.clone();
    let third = next(&mut sub).await;
    third.settle.reject("not wanted").await.unwrap();
    drop(unsettled);
    drop(sub);

    // A new consumer gets the unsettled message again, marked redelivered.
    let mut sub = r.subscribe("wf", &settings).await.unwrap();
    let again = next(&mut sub).await;
    assert_eq!(again.id, unsettled_id);
    assert_eq!(again.meta["redelivered"], true);
    again.settle.ack().await.unwrap();
    // The rejected one went to the dead-letter queue.
    let mut dead_sub = r
        .subscribe("wf-dead", &json!({"queue": dead}))
        .await
        .unwrap();
    let dead_letter = next(&mut dead_sub).await;
    assert_eq!(dead_letter.payload, br#"{"n":2}"#);
    dead_letter.settle.ack().await.unwrap();

    let err = publish(
        &r,
        "k",
        json!({"routing_key": unique("amqp"), "message": "lost"}),
    )
    .await
    .unwrap_err();
    assert!(!err.is_retryable(), "{err}");
    assert!(
        err.to_string().contains("no queue receives messages"),
        "{err}"
    );
}

#[tokio::test]
async fn an_unreachable_broker_is_retryable() {
    let node =
        yaml::parse("{type: amqp, url: \"amqp://guest@127.0.0.1:1/%2f\", timeout: 2s}").unwrap();
    let mut diags = Diagnostics::new("weft.yaml");
    let r = AmqpConnector::new(AmqpConfig::decode(&node, &mut diags).unwrap());
    let err = publish(&r, "k", json!({"routing_key": "q", "message": "x"}))
        .await
        .unwrap_err();
    assert!(err.is_retryable(), "{err}");
}

#[tokio::test]
async fn a_probe_opens_a_channel_and_a_wrong_password_fails_it() {
    let Some(c) = rabbit() else { return };
    assert_eq!(c.probe().await.unwrap(), "connected and opened a channel");
    // The SMTP tests' password is not the broker's.
    let node = yaml::parse(
        "{type: amqp, url: \"amqp://guest@127.0.0.1:5672/%2f\", password: {env: WEFT_TEST_SMTP_PASSWORD}, timeout: 5s}",
    )
    .unwrap();
    let mut diags = Diagnostics::new("weft.yaml");
    let wrong = AmqpConnector::new(AmqpConfig::decode(&node, &mut diags).unwrap());
    let err = wrong.probe().await.unwrap_err();
    assert!(err.to_string().starts_with("amqp: cannot connect"), "{err}");
}
