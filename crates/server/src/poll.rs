//! Polling triggers: a task per polling workflow ([`crate::triggers`]) polls every interval and
//! commits the runs of the items it found together with the next cursor.
//!
//! The state under `poll:<workflow>` is `{cursor, last_poll}`. It is written only in the
//! transaction that creates the poll's runs ([`weft_engine::Engine::accept`]), so after a crash the
//! next poll starts from the cursor that belongs to the runs that exist. Items are de-duplicated by
//! their key (idempotency key `poll:<key>`), so an item seen again, on an overlapping page or after
//! a crash between the request and the commit, starts no second run. A poll that fails, or whose
//! commit fails, changes nothing; the next interval tries again from the same cursor. The interval
//! also holds across restarts: a hub that comes back sooner than `every` after the last poll waits
//! for the rest of it. With `listen` (PostgreSQL), a `NOTIFY` on the channel makes the next poll
//! happen at once; the cursor still decides what is new.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use weft_core::Workflow;
use weft_core::trigger::PollTrigger;
use weft_engine::Engine;
use weft_store::{Created, now_millis};

/// How long a store failure while reading the state pauses the task before it tries again.
const STORE_RETRY: Duration = Duration::from_secs(5);

/// Aborts a task when dropped, so the listener ends with its poll.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Listens on a PostgreSQL channel for a poll and wakes it on every notification, subscribing
/// again with backoff when the connection is lost (a missed notification is made up by `every`).
async fn listen(
    engine: Engine,
    connection: String,
    channel: String,
    workflow: String,
    wake: Arc<tokio::sync::Notify>,
) {
    let mut backoff = Duration::from_millis(500);
    loop {
        if let Some(connector) = engine.connector(&connection) {
            match connector
                .subscribe(&workflow, &json!({"channel": channel}))
                .await
            {
                Ok(mut notifications) => {
                    backoff = Duration::from_millis(500);
                    tracing::info!(workflow = %workflow, %channel, "Listening for notifications.");
                    while notifications.next().await.is_ok() {
                        wake.notify_one();
                    }
                }
                Err(e) => {
                    tracing::warn!(workflow = %workflow, %channel, error = %e, "Cannot listen; polling on the interval meanwhile.");
                }
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(30));
    }
}

/// The key of a workflow's poll state.
pub fn state_key(workflow: &str) -> String {
    format!("poll:{workflow}")
}

/// Polls for the workflow until the task is aborted.
pub(crate) async fn run_poll(
    engine: Engine,
    workflow: Arc<Workflow>,
    poll: PollTrigger,
    health: Arc<crate::triggers::Health>,
) {
    let key = state_key(&workflow.name);
    let name = workflow.name.clone();
    let (mut cursor, last_poll) = loop {
        match engine.store().trigger_state(&key).await {
            Ok(state) => {
                let state = state.unwrap_or(Value::Null);
                break (state["cursor"].clone(), state["last_poll"].as_i64());
            }
            Err(e) => {
                tracing::warn!(workflow = %name, error = %e, "Cannot read the poll's cursor; trying again.");
                tokio::time::sleep(STORE_RETRY).await;
            }
        }
    };
    let every = poll.every.as_millis() as i64;
    let mut next_at = last_poll.map_or(0, |last| last + every);
    let wake = Arc::new(tokio::sync::Notify::new());
    let _listening = poll.listen.as_ref().map(|channel| {
        AbortOnDrop(tokio::spawn(listen(
            engine.clone(),
            poll.connection.clone(),
            channel.clone(),
            name.clone(),
            wake.clone(),
        )))
    });
    loop {
        let wait = (next_at - now_millis()).max(0) as u64;
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(wait)) => {}
            _ = wake.notified() => {}
        }
        let started = now_millis();
        next_at = started + every;
        let polled = match engine.poll(&workflow, &poll, &cursor).await {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(workflow = %name, error = %e, "The poll failed; the next one tries again from the same cursor.");
                health.failed(&name, &e);
                metrics::counter!("weft_polls_total", "workflow" => name.clone(), "outcome" => e.reason()).increment(1);
                continue;
            }
        };
        let state = json!({"cursor": polled.cursor, "last_poll": started});
        match engine.accept(&polled.runs, Some((&key, &state))).await {
            Ok(created) => {
                let new = created
                    .iter()
                    .filter(|c| matches!(c, Created::New(_)))
                    .count();
                let seen = created.len() - new;
                tracing::debug!(workflow = %name, items = created.len(), new, seen, "Polled.");
                health.ok(&name);
                metrics::counter!("weft_polls_total", "workflow" => name.clone(), "outcome" => "ok")
                    .increment(1);
                metrics::counter!("weft_poll_items_total", "workflow" => name.clone(), "outcome" => "new")
                    .increment(new as u64);
                metrics::counter!("weft_poll_items_total", "workflow" => name.clone(), "outcome" => "seen")
                    .increment(seen as u64);
                cursor = polled.cursor;
            }
            Err(e) => {
                tracing::warn!(workflow = %name, error = %e, "The poll's runs could not be committed; the next poll tries again from the same cursor.");
                health.failed(
                    &name,
                    format!("the poll's runs could not be committed: {e}"),
                );
                metrics::counter!("weft_polls_total", "workflow" => name.clone(), "outcome" => "store_failed").increment(1);
            }
        }
    }
}
