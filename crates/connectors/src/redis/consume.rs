//! Consuming a Redis stream with a consumer group, for `queue` triggers.
//!
//! On subscribing, the group is created if missing (with the stream). The consumer first reads
//! its own pending entries (delivered before a crash, never acknowledged), then new ones with a
//! blocking `XREADGROUP`, and every half `claim_after` takes over entries that other consumers
//! left pending that long (`XAUTOCLAIM`). An entry is acknowledged (`XACK`) only when its run is
//! committed; a rejected entry is acknowledged too (Redis has no dead-letter), with the reason in
//! the hub's log. The entry id is the message id, so an entry delivered twice starts one run.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use ::redis::aio::{ConnectionManager, MultiplexedConnection};
use ::redis::streams::{StreamAutoClaimReply, StreamId, StreamReadReply};
use ::redis::{AsyncConnectionConfig, Value as RedisValue};
use async_trait::async_trait;
use serde_json::{Map, Value, json};

use super::config::{ConsumeConfig, Start};
use super::{RedisConnector, classify};
use crate::{ActionError, Delivery, Settle, Subscription};

/// How long one blocking read waits for new entries before it checks for stale ones.
const BLOCK: Duration = Duration::from_secs(2);
/// Entries read at once.
const BATCH: usize = 100;

pub(super) async fn subscribe(
    connector: &RedisConnector,
    workflow: &str,
    raw: &Value,
) -> Result<Box<dyn Subscription>, ActionError> {
    let config = crate::settings::queue(raw, ConsumeConfig::decode)?;
    let client = connector.client()?;
    let reader = client
        .get_multiplexed_async_connection_with_config(
            &AsyncConnectionConfig::new()
                .set_connection_timeout(Some(connector.config.timeout))
                .set_response_timeout(Some(BLOCK + connector.config.timeout)),
        )
        .await
        .map_err(classify)?;
    let mut sub = RedisSubscription {
        consumer: config
            .consumer
            .clone()
            .unwrap_or_else(|| format!("weft-{workflow}")),
        config,
        reader,
        acker: connector.manager().await?,
        buffer: VecDeque::new(),
        pending_from: Some("0".to_string()),
        next_claim: Instant::now(),
    };
    let start = match sub.config.start {
        Start::All => "0",
        Start::New => "$",
    };
    let created: Result<(), _> = ::redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(&sub.config.stream)
        .arg(&sub.config.group)
        .arg(start)
        .arg("MKSTREAM")
        .query_async(&mut sub.reader)
        .await;
    match created {
        Ok(()) => {}
        Err(e) if e.code() == Some("BUSYGROUP") => {}
        Err(e) => return Err(classify(e)),
    }
    Ok(Box::new(sub))
}

struct RedisSubscription {
    config: ConsumeConfig,
    consumer: String,
    /// A connection of its own: blocking reads would hold up other commands.
    reader: MultiplexedConnection,
    acker: ConnectionManager,
    buffer: VecDeque<StreamId>,
    /// Where the next read of this consumer's own pending entries starts; `None` once done.
    pending_from: Option<String>,
    next_claim: Instant,
}

impl RedisSubscription {
    async fn read(&mut self, from: &str, block: bool) -> Result<Vec<StreamId>, ActionError> {
        let mut cmd = ::redis::cmd("XREADGROUP");
        cmd.arg("GROUP")
            .arg(&self.config.group)
            .arg(&self.consumer)
            .arg("COUNT")
            .arg(BATCH);
        if block {
            cmd.arg("BLOCK").arg(BLOCK.as_millis() as u64);
        }
        cmd.arg("STREAMS").arg(&self.config.stream).arg(from);
        let reply: Option<StreamReadReply> =
            cmd.query_async(&mut self.reader).await.map_err(classify)?;
        Ok(reply
            .map(|r| r.keys.into_iter().flat_map(|k| k.ids).collect())
            .unwrap_or_default())
    }

    async fn claim(&mut self) -> Result<Vec<StreamId>, ActionError> {
        let idle = self.config.claim_after.as_millis() as u64;
        let mut cursor = "0-0".to_string();
        let mut claimed = Vec::new();
        loop {
            let reply: StreamAutoClaimReply = ::redis::cmd("XAUTOCLAIM")
                .arg(&self.config.stream)
                .arg(&self.config.group)
                .arg(&self.consumer)
                .arg(idle)
                .arg(&cursor)
                .arg("COUNT")
                .arg(BATCH)
                .query_async(&mut self.reader)
                .await
                .map_err(classify)?;
            claimed.extend(reply.claimed);
            if reply.next_stream_id == "0-0" || claimed.len() >= BATCH {
                return Ok(claimed);
            }
            cursor = reply.next_stream_id;
        }
    }

    fn delivery(&self, entry: StreamId) -> Delivery {
        let bytes = |v: &RedisValue| match v {
            RedisValue::BulkString(b) => b.clone(),
            RedisValue::SimpleString(s) => s.clone().into_bytes(),
            RedisValue::Int(i) => i.to_string().into_bytes(),
            other => format!("{other:?}").into_bytes(),
        };
        let payload = match entry.map.get(&self.config.field) {
            Some(v) => bytes(v),
            None => {
                let fields: Map<String, Value> = entry
                    .map
                    .iter()
                    .map(|(k, v)| {
                        (
                            k.clone(),
                            Value::String(String::from_utf8_lossy(&bytes(v)).into_owned()),
                        )
                    })
                    .collect();
                Value::Object(fields).to_string().into_bytes()
            }
        };
        let mut meta = Map::new();
        meta.insert("stream".into(), json!(self.config.stream));
        meta.insert("entry_id".into(), json!(entry.id));
        Delivery {
            payload,
            meta,
            id: Some(format!("{}:{}", self.config.stream, entry.id)),
            settle: Box::new(RedisSettle {
                conn: self.acker.clone(),
                stream: self.config.stream.clone(),
                group: self.config.group.clone(),
                id: entry.id,
            }),
        }
    }
}

#[async_trait]
impl Subscription for RedisSubscription {
    async fn next(&mut self) -> Result<Delivery, ActionError> {
        loop {
            if let Some(entry) = self.buffer.pop_front() {
                if entry.map.is_empty() {
                    // Trimmed from the stream while pending: nothing left to deliver.
                    self.delivery(entry).settle.ack().await?;
                    continue;
                }
                return Ok(self.delivery(entry));
            }
            if let Some(from) = self.pending_from.clone() {
                let entries = self.read(&from, false).await?;
                match entries.last() {
                    Some(last) => self.pending_from = Some(last.id.clone()),
                    None => self.pending_from = None,
                }
                self.buffer.extend(entries);
                continue;
            }
            if Instant::now() >= self.next_claim {
                self.next_claim =
                    Instant::now() + (self.config.claim_after / 2).max(Duration::from_secs(1));
                let claimed = self.claim().await?;
                self.buffer.extend(claimed);
                continue;
            }
            let entries = self.read(">", true).await?;
            self.buffer.extend(entries);
        }
    }
}

struct RedisSettle {
    conn: ConnectionManager,
    stream: String,
    group: String,
    id: String,
}

impl RedisSettle {
    async fn xack(mut self) -> Result<(), ActionError> {
        let _: u64 = ::redis::cmd("XACK")
            .arg(&self.stream)
            .arg(&self.group)
            .arg(&self.id)
            .query_async(&mut self.conn)
            .await
            .map_err(classify)?;
        Ok(())
    }
}

#[async_trait]
impl Settle for RedisSettle {
    async fn ack(self: Box<Self>) -> Result<(), ActionError> {
        self.xack().await
    }

    async fn reject(self: Box<Self>, _reason: &str) -> Result<(), ActionError> {
        // Redis streams have no dead-letter; the hub logs the reason, the entry stays in the
        // stream (XRANGE finds it) and leaves the group's pending list.
        self.xack().await
    }
}
