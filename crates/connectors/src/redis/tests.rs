//! The `redis` connector against the real server on 127.0.0.1:6379: every action, and consuming a
//! stream with acknowledgements, redelivery of what was not acknowledged, and taking over what a
//! dead consumer left behind.

use std::time::Duration;

use serde_json::{Value, json};
use weft_core::yaml;

use super::*;
use crate::testing::{next, unique as name};

fn redis() -> Option<RedisConnector> {
    weft_testkit::service("Redis", 6379).then(|| {
        let node =
            yaml::parse("{type: redis, url: \"redis://127.0.0.1:6379/0\", timeout: 5s}").unwrap();
        let mut diags = Diagnostics::new("weft.yaml");
        RedisConnector::new(RedisConfig::decode(&node, &mut diags).unwrap())
    })
}

async fn call(c: &RedisConnector, action: &str, input: Value) -> Result<Value, ActionError> {
    c.call(Call {
        action,
        input,
        idempotency_key: "run/step",
        max_output_bytes: 1 << 20,
    })
    .await
}

#[tokio::test]
async fn keys_with_ttl_channels_and_streams() {
    let Some(r) = redis() else { return };
    let key = name("key");
    assert_eq!(
        call(&r, "get", json!({"key": key})).await.unwrap(),
        json!({"value": null})
    );
    assert_eq!(
        call(
            &r,
            "set",
            json!({"key": key, "value": {"a": 1}, "ttl": "300ms", "only_if": "absent"})
        )
        .await
        .unwrap(),
        json!({"written": true})
    );
    assert_eq!(
        call(
            &r,
            "set",
            json!({"key": key, "value": "other", "only_if": "absent"})
        )
        .await
        .unwrap(),
        json!({"written": false})
    );
    assert_eq!(
        call(&r, "get", json!({"key": key})).await.unwrap(),
        json!({"value": "{\"a\":1}"})
    );
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        call(&r, "get", json!({"key": key})).await.unwrap(),
        json!({"value": null}),
        "the TTL ran out"
    );
    call(&r, "set", json!({"key": key, "value": 7}))
        .await
        .unwrap();
    assert_eq!(
        call(&r, "delete", json!({"key": key})).await.unwrap(),
        json!({"deleted": 1})
    );
    assert_eq!(
        call(
            &r,
            "publish",
            json!({"channel": name("ch"), "message": "hi"})
        )
        .await
        .unwrap(),
        json!({"receivers": 0})
    );
    let stream = name("stream");
    let out = call(&r, "xadd", json!({"stream": stream, "message": {"n": 1}}))
        .await
        .unwrap();
    assert!(out["id"].as_str().unwrap().contains('-'), "{out}");
    // Wrong type: a stream is not a string. Fatal, trying again cannot help.
    let err = call(&r, "get", json!({"key": stream})).await.unwrap_err();
    assert!(!err.is_retryable(), "{err}");
    assert!(err.to_string().contains("WRONGTYPE"), "{err}");
    let err = call(&r, "set", json!({"key": key, "value": 1, "ttl": "soon"}))
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "`ttl`: `soon` is not a duration; write a number and a unit (ms, s, m, h, d), such as `30s`"
    );
    call(&r, "delete", json!({"key": stream})).await.unwrap();
}

#[tokio::test]
async fn a_stream_is_consumed_with_acknowledgements_and_redelivery() {
    let Some(r) = redis() else { return };
    let stream = name("consume");
    for n in 0..3 {
        call(&r, "xadd", json!({"stream": stream, "message": {"n": n}}))
            .await
            .unwrap();
    }
    call(
        &r,
        "xadd",
        json!({"stream": stream, "fields": {"kind": "raw", "n": 3}}),
    )
    .await
    .unwrap();
    let settings = json!({"stream": stream, "group": "g", "claim_after": "1s"});
    let mut sub = r.subscribe("wf", &settings).await.unwrap();
    let first = next(&mut sub).await;
    assert_eq!(first.payload, br#"{"n":0}"#);
    assert_eq!(first.meta["stream"], json!(stream));
    let first_id = first.id.clone().unwrap();
    first.settle.ack().await.unwrap();
    // The second is taken but never settled, as if the hub died before committing its run.
    let second = next(&mut sub).await;
    let second_id = second.id.clone().unwrap();
    drop(second);
    let third = next(&mut sub).await;
    third.settle.reject("not wanted").await.unwrap();
    let fourth = next(&mut sub).await;
    assert_eq!(
        serde_json::from_slice::<Value>(&fourth.payload).unwrap(),
        json!({"kind": "raw", "n": "3"}),
        "without a `message` field the entry's fields are the payload"
    );
    fourth.settle.ack().await.unwrap();
    drop(sub);

    // The same consumer comes back: its pending entry is delivered again, with the same id.
    let mut sub = r.subscribe("wf", &settings).await.unwrap();
    let again = next(&mut sub).await;
    assert_eq!(again.id.as_deref(), Some(second_id.as_str()));
    assert_ne!(again.id.as_deref(), Some(first_id.as_str()));
    drop(again);
    drop(sub);

    // Another consumer takes it over once it has been idle for `claim_after`.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let other = json!({"stream": stream, "group": "g", "consumer": "other", "claim_after": "1s"});
    let mut sub = r.subscribe("wf", &other).await.unwrap();
    let claimed = next(&mut sub).await;
    assert_eq!(claimed.id.as_deref(), Some(second_id.as_str()));
    claimed.settle.ack().await.unwrap();
    // Nothing is left pending in the group.
    let mut conn = r.manager().await.unwrap();
    let pending: Vec<RedisValue> = ::redis::cmd("XPENDING")
        .arg(&stream)
        .arg("g")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(pending[0], RedisValue::Int(0), "{pending:?}");
    call(&r, "delete", json!({"key": stream})).await.unwrap();
}

use ::redis::Value as RedisValue;

#[tokio::test]
async fn a_probe_pings_the_server_and_a_closed_port_fails_it() {
    let Some(c) = redis() else { return };
    assert_eq!(
        c.probe().await.unwrap(),
        "connected; the server answered PING with PONG"
    );
    let node = yaml::parse("{type: redis, url: \"redis://127.0.0.1:1/0\", timeout: 2s}").unwrap();
    let mut diags = Diagnostics::new("weft.yaml");
    let down = RedisConnector::new(RedisConfig::decode(&node, &mut diags).unwrap());
    let err = down.probe().await.unwrap_err();
    assert!(err.is_retryable(), "{err}");
}
