//! `GET /api/events`: what this hub's engine does, as server-sent events, so that the console shows
//! runs and steps as they change instead of asking again and again.
//!
//! Each event is `event: run` (`{run_id, workflow, state}`) or `event: step` (`{run_id, workflow,
//! step, attempt, state, error}`), from the moment the stream opens; a client that falls behind
//! gets `event: lagged` and should read what it shows again. A comment every 15 s keeps proxies
//! from closing the stream; it ends when the hub shuts down. Events are this process's: with
//! several hubs on one store, a client sees the runs its hub executes.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::response::sse::{Event as Sse, KeepAlive};
use axum::response::{IntoResponse, Response};
use futures_util::stream;
use serde_json::json;
use tokio::sync::broadcast::error::RecvError;
use weft_engine::Event;

use crate::Hub;

/// The engine's events as server-sent events.
#[utoipa::path(get, path = "/events", tag = "runs",
    responses((status = 200, description = "A stream of `text/event-stream` events: `run` `{run_id, workflow, state}`, `step` `{run_id, workflow, step, attempt, state, error}`, `lagged`", content_type = "text/event-stream", body = String)))]
pub async fn events(State(hub): State<Arc<Hub>>) -> Response {
    let receiver = hub.engine.subscribe();
    let engine = hub.engine.clone();
    let stopping = Box::pin(async move { engine.stopping().await });
    let events = stream::unfold(
        (receiver, stopping),
        |(mut receiver, mut stopping)| async move {
            let next = tokio::select! {
                () = &mut stopping => return None,
                next = receiver.recv() => next,
            };
            let event = match next {
                Ok(Event::Run {
                    run_id,
                    workflow,
                    state,
                    ..
                }) => Sse::default().event("run").data(
                    json!({"run_id": run_id, "workflow": workflow, "state": state.as_str()})
                        .to_string(),
                ),
                Ok(Event::Step {
                    run_id,
                    workflow,
                    step,
                    attempt,
                    state,
                    error,
                    ..
                }) => Sse::default().event("step").data(
                    json!({
                        "run_id": run_id, "workflow": workflow, "step": step.as_str(),
                        "attempt": attempt, "state": state.as_str(), "error": error,
                    })
                    .to_string(),
                ),
                Err(RecvError::Lagged(missed)) => Sse::default()
                    .event("lagged")
                    .data(json!({"missed": missed}).to_string()),
                Err(RecvError::Closed) => return None,
            };
            Some((
                Ok::<_, std::convert::Infallible>(event),
                (receiver, stopping),
            ))
        },
    );
    axum::response::sse::Sse::new(events)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}
