//! Operations: `/healthz` (the process is up), `/readyz` (the project is loaded and the store
//! commits writes: a full disk makes the hub not ready), `/metrics` (Prometheus text) and the background retention of old runs.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use serde_json::{Value, json};
use weft_engine::Engine;
use weft_store::now_millis;

use crate::Hub;
use crate::error::ApiError;

/// Bucket bounds of the step duration histogram, in seconds.
const STEP_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// How often retention looks for runs to delete.
const RETENTION_EVERY: Duration = Duration::from_secs(15 * 60);
/// Runs deleted per transaction, so that retention never holds the writer long.
const RETENTION_BATCH: u32 = 500;

/// `/healthz`, `/readyz` and `/metrics`.
pub fn router() -> Router<Arc<Hub>> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
}

/// Installs the Prometheus recorder for this process, once. Returns `None` when another recorder
/// is installed already (as in tests that start several hubs in one process).
pub(crate) fn install_recorder() -> Option<PrometheusHandle> {
    static HANDLE: std::sync::OnceLock<Option<PrometheusHandle>> = std::sync::OnceLock::new();
    HANDLE
        .get_or_init(|| {
            PrometheusBuilder::new()
                .set_buckets_for_metric(
                    metrics_exporter_prometheus::Matcher::Full("weft_step_duration_seconds".into()),
                    STEP_BUCKETS,
                )
                .ok()?
                .install_recorder()
                .ok()
        })
        .clone()
}

async fn healthz() -> Response {
    axum::Json(json!({"status": "ok"})).into_response()
}

async fn readyz(State(hub): State<Arc<Hub>>) -> Response {
    if !hub.is_ready() {
        return ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "the hub is starting or shutting down",
        )
        .into_response();
    }
    match writable(&hub).await {
        Ok(()) => {
            let mut body =
                json!({"status": "ready", "workflows": hub.engine.project().workflows.len()});
            // Connections a person must sign in again: the hub works, their steps fail at once.
            let needing: Vec<Value> = needs_sign_in(&hub)
                .into_iter()
                .map(|(name, reason)| json!({"connection": name, "reason": reason}))
                .collect();
            if !needing.is_empty() {
                body["needs_sign_in"] = Value::Array(needing);
            }
            axum::Json(body).into_response()
        }
        Err(e) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            format!("the store does not take writes: {e}"),
        )
        .into_response(),
    }
}

/// Whether the store commits a write, looked at most once a second however often `/readyz` is
/// asked (it needs no token, so it must not become a way to make the hub write).
async fn writable(hub: &Hub) -> Result<(), String> {
    let mut last = hub.write_check.lock().await;
    if let Some((at, result)) = &*last
        && at.elapsed() < Duration::from_secs(1)
    {
        return result.clone();
    }
    let result = hub
        .engine
        .store()
        .check_writable(now_millis())
        .await
        .map_err(|e| e.to_string());
    *last = Some((std::time::Instant::now(), result.clone()));
    result
}

/// The connections that sign in and must be signed in (again), with why.
fn needs_sign_in(hub: &Hub) -> Vec<(String, String)> {
    hub.engine
        .project()
        .connections
        .keys()
        .filter_map(|name| {
            let view = crate::connections::sign_in_view(hub, name)?;
            (view.state != "connected").then(|| {
                let reason = view
                    .reason
                    .unwrap_or_else(|| "nobody has signed in yet".to_string());
                (name.clone(), reason)
            })
        })
        .collect()
}

async fn metrics_text(State(hub): State<Arc<Hub>>) -> Response {
    let mut text = hub.metrics.as_ref().map(|h| h.render()).unwrap_or_default();
    let signing: Vec<(String, bool)> = hub
        .engine
        .project()
        .connections
        .keys()
        .filter_map(|name| {
            let view = crate::connections::sign_in_view(&hub, name)?;
            Some((name.clone(), view.state != "connected"))
        })
        .collect();
    if !signing.is_empty() {
        text.push_str("# HELP weft_connection_needs_sign_in 1 while an OAuth2 connection must be signed in (again) by a person.\n");
        text.push_str("# TYPE weft_connection_needs_sign_in gauge\n");
        for (name, needs) in signing {
            let _ = writeln!(
                text,
                "weft_connection_needs_sign_in{{connection=\"{name}\"}} {}",
                u8::from(needs)
            );
        }
    }
    match hub.engine.store().count_unfinished().await {
        Ok(counts) => {
            text.push_str("# HELP weft_runs_unfinished Runs queued, running or waiting, by workflow and state.\n");
            text.push_str("# TYPE weft_runs_unfinished gauge\n");
            for (workflow, state, n) in counts {
                let _ = writeln!(
                    text,
                    "weft_runs_unfinished{{workflow=\"{}\",state=\"{}\"}} {n}",
                    escape_label(&workflow),
                    state.as_str()
                );
            }
        }
        Err(e) => return ApiError::from(e).into_response(),
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

fn escape_label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Deletes runs older than the project's `retention.runs` and conversation state whose time to live
/// has passed, now and every quarter of an hour.
pub(crate) async fn retention(engine: Engine) {
    loop {
        let store = engine.store();
        let expired = in_batches("expired conversation state", || {
            store.purge_expired_state(now_millis(), RETENTION_BATCH)
        })
        .await;
        if expired > 0 {
            tracing::info!(
                keys = expired,
                "Retention deleted expired conversation state."
            );
        }
        // Console sessions that ended a day ago or more: their rows are of no more use.
        let ended = in_batches("ended console sessions", || {
            store.purge_sessions(now_millis() - 24 * 3600 * 1000, RETENTION_BATCH)
        })
        .await;
        if ended > 0 {
            tracing::debug!(
                sessions = ended,
                "Retention deleted ended console sessions."
            );
        }
        if let Some(keep) = engine.project().settings.retention {
            let before = now_millis() - keep.as_millis() as i64;
            let total = in_batches("old runs", || async {
                let n = store.purge_finished(before, RETENTION_BATCH).await?;
                metrics::counter!("weft_runs_purged_total").increment(n);
                Ok(n)
            })
            .await;
            if total > 0 {
                tracing::info!(
                    runs = total,
                    "Retention deleted runs that finished more than {} ago.",
                    weft_core::duration::format(keep)
                );
            }
        }
        tokio::time::sleep(RETENTION_EVERY).await;
    }
}

/// Runs `batch` (one deletion of at most [`RETENTION_BATCH`]) until one deletes fewer, and returns
/// how many were deleted in all; a failure is logged and retried at the next round.
async fn in_batches<F, Fut>(what: &str, mut batch: F) -> u64
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<u64, weft_store::StoreError>>,
{
    let mut total = 0u64;
    loop {
        match batch().await {
            Ok(n) => {
                total += n;
                if n < u64::from(RETENTION_BATCH) {
                    return total;
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "Retention could not delete {what}; it tries again later.");
                return total;
            }
        }
        tokio::task::yield_now().await;
    }
}
