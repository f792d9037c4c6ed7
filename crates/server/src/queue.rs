//! Queue triggers: a task per consuming workflow ([`crate::triggers`]) subscribes to its
//! connection and turns every message into a committed run before it acknowledges the message.
//!
//! The order is the promise: commit, then acknowledge. A crash in between leaves the message
//! unacknowledged, so the broker delivers it again, and the run's key (the broker's message id
//! where there is one) keeps that from starting a second run. While the store fails, the message
//! is held, unacknowledged, and the commit is tried again with backoff. A message that cannot be
//! read (not JSON, a key expression that fails) is rejected with the reason in the log, and the
//! consumer goes on. A lost connection is subscribed again with backoff; the broker redelivers
//! what was not acknowledged.

use std::sync::Arc;
use std::time::Duration;

use weft_connectors::Delivery;
use weft_core::Workflow;
use weft_core::trigger::QueueTrigger;
use weft_engine::Engine;
use weft_store::Created;

/// The first pause before subscribing again; it doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
/// The longest pause between attempts to subscribe or to commit.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

fn double(d: Duration) -> Duration {
    (d * 2).min(MAX_BACKOFF)
}

/// Consumes for the workflow until the task is aborted.
pub(crate) async fn run_queue(
    engine: Engine,
    workflow: Arc<Workflow>,
    queue: QueueTrigger,
    health: Arc<crate::triggers::Health>,
) {
    let name = workflow.name.clone();
    let mut backoff = FIRST_BACKOFF;
    loop {
        let Some(connector) = engine.connector(&queue.connection) else {
            tracing::error!(workflow = %name, connection = %queue.connection, "The queue's connection is not defined any more; the trigger stops.");
            return;
        };
        let mut subscription = match connector.subscribe(&name, &queue.settings).await {
            Ok(s) => {
                tracing::info!(workflow = %name, connection = %queue.connection, "Consuming.");
                backoff = FIRST_BACKOFF;
                s
            }
            Err(e) => {
                tracing::warn!(workflow = %name, connection = %queue.connection, error = %e, retry_in = ?backoff, "Cannot subscribe; trying again.");
                health.failed(&name, format!("cannot subscribe: {e}"));
                metrics::counter!("weft_queue_subscribe_failures_total", "workflow" => name.clone()).increment(1);
                tokio::time::sleep(backoff).await;
                backoff = double(backoff);
                continue;
            }
        };
        loop {
            match subscription.next().await {
                Ok(delivery) => handle(&engine, &workflow, &queue, delivery, &health).await,
                Err(e) => {
                    tracing::warn!(workflow = %name, connection = %queue.connection, error = %e, "The subscription broke; subscribing again. Unacknowledged messages come back.");
                    health.failed(&name, format!("the subscription broke: {e}"));
                    break;
                }
            }
        }
        drop(subscription);
        tokio::time::sleep(backoff).await;
        backoff = double(backoff);
    }
}

async fn handle(
    engine: &Engine,
    workflow: &Workflow,
    queue: &QueueTrigger,
    delivery: Delivery,
    health: &crate::triggers::Health,
) {
    let name = &workflow.name;
    let run = match engine
        .queue_run(
            workflow,
            queue,
            &delivery.payload,
            &delivery.meta,
            delivery.id.as_deref(),
        )
        .await
    {
        Ok(run) => run,
        Err(reason) => {
            tracing::warn!(workflow = %name, connection = %queue.connection, message_id = ?delivery.id, %reason, "Rejected a message that cannot be read.");
            health.failed(
                name,
                format!("rejected a message that cannot be read: {reason}"),
            );
            metrics::counter!("weft_queue_messages_total", "workflow" => name.clone(), "outcome" => "rejected").increment(1);
            if let Err(e) = delivery.settle.reject(&reason).await {
                tracing::warn!(workflow = %name, error = %e, "Could not reject the message; the broker may deliver it again.");
            }
            return;
        }
    };
    let mut wait = Duration::from_millis(200);
    let created = loop {
        match engine.accept(std::slice::from_ref(&run), None).await {
            Ok(created) => break created,
            Err(e) => {
                tracing::warn!(workflow = %name, error = %e, retry_in = ?wait, "Cannot commit the message's run; it stays unacknowledged.");
                health.failed(name, format!("cannot commit the message's run: {e}"));
                metrics::counter!("weft_queue_commit_failures_total", "workflow" => name.clone())
                    .increment(1);
                tokio::time::sleep(wait).await;
                wait = double(wait);
            }
        }
    };
    health.ok(name);
    let outcome = match created.first() {
        Some(Created::New(_)) => "accepted",
        _ => "duplicate",
    };
    metrics::counter!("weft_queue_messages_total", "workflow" => name.clone(), "outcome" => outcome)
        .increment(1);
    if let Err(e) = delivery.settle.ack().await {
        // The run is committed; a redelivery is de-duplicated by the message id where there is one.
        tracing::warn!(workflow = %name, error = %e, "Could not acknowledge a committed message; the broker may deliver it again.");
    }
}
