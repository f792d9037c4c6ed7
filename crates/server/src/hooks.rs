//! Webhook triggers: `POST /hooks/<path>` becomes a committed run, or a clear 4xx that starts
//! nothing.
//!
//! In order: find the workflow for the path (404), check the body size (413), verify the signature
//! (401), parse the body by its content type (400, 415), work out the delivery id for
//! de-duplication, and commit the run. Only then is the sender answered `202 {run_id}`; with
//! `respond: sync` the answer waits for the run's output, falling back to 202 after the timeout.

// A refusal carries the error answer itself; it is built once per refused request, never on the
// path of an accepted one, so its size does not matter.
#![allow(clippy::result_large_err)]

use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use base64::Engine as _;
use serde_json::{Map, Value, json};
use weft_core::trigger::{Dedupe, Respond, WebhookTrigger};
use weft_core::{Trigger, Workflow, json_to_val, val_to_json};
use weft_engine::new_run;
use weft_store::{Created, NewRun, now_millis};

use crate::Hub;
use crate::error::ApiError;

/// Request headers that never enter run data: they carry credentials.
const DROPPED_HEADERS: &[&str] = &["authorization", "proxy-authorization", "cookie"];

/// The `/hooks/{*path}` route.
pub fn router() -> Router<Arc<Hub>> {
    Router::new().route("/hooks/{*path}", any(receive))
}

fn count(workflow: &str, outcome: &'static str) {
    metrics::counter!("weft_webhooks_total", "workflow" => workflow.to_string(), "outcome" => outcome)
        .increment(1);
}

async fn receive(
    State(hub): State<Arc<Hub>>,
    Path(path): Path<String>,
    method: Method,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let Some(workflow) = hub.hook(&path) else {
        metrics::counter!("weft_webhooks_total", "workflow" => "", "outcome" => "unknown_path")
            .increment(1);
        return ApiError::not_found(format!("no webhook listens on /hooks/{path}")).into_response();
    };
    let Trigger::Webhook(hook) = &workflow.trigger else {
        return ApiError::not_found(format!("no webhook listens on /hooks/{path}")).into_response();
    };
    match accept(&hub, &workflow, hook, &path, method, query, headers, body).await {
        Ok(response) => response,
        Err((outcome, error)) => {
            count(&workflow.name, outcome);
            if error.status.is_client_error() {
                tracing::info!(workflow = %workflow.name, path = %path, outcome, "Webhook refused: {}", error.message);
            }
            error.into_response()
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn accept(
    hub: &Hub,
    workflow: &Arc<Workflow>,
    hook: &WebhookTrigger,
    path: &str,
    method: Method,
    query: Option<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, (&'static str, ApiError)> {
    if method != Method::POST && method != Method::PUT && method != Method::PATCH {
        return Err((
            "method_not_allowed",
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                format!("webhooks take POST, PUT or PATCH, not {method}"),
            ),
        ));
    }
    let limit = hook.max_body_bytes as usize;
    let too_large = || {
        (
            "too_large",
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                format!("the body is larger than this webhook's max_body_bytes ({limit})"),
            ),
        )
    };
    if let Some(len) = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        && len > limit as u64
    {
        return Err(too_large());
    }
    let bytes: Bytes = axum::body::to_bytes(body, limit)
        .await
        .map_err(|_| too_large())?;

    if let Some(sig) = &hook.signature {
        let secret = hub.engine.secrets().resolve(&sig.secret).map_err(|reason| {
            tracing::error!(workflow = %workflow.name, "The webhook's signing secret is unavailable: {reason}");
            (
                "misconfigured",
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    "the webhook cannot verify signatures right now; its log says why",
                ),
            )
        })?;
        let lookup = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        weft_core::signature::verify(
            &sig.scheme,
            &secret,
            &lookup,
            &bytes,
            now_millis() / 1000,
            sig.tolerance.as_secs() as i64,
        )
        .map_err(|rejection| {
            (
                rejection.reason(),
                ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "bad_signature",
                    rejection.to_string(),
                ),
            )
        })?;
    }

    // Counted after the signature, so that a flood of forged requests cannot use up the sender's
    // budget.
    let per_minute = hub
        .engine
        .project()
        .settings
        .limits
        .webhook_requests_per_minute;
    if let Err(wait) = hub.throttle.take(&format!("hook:{path}"), per_minute) {
        count(&workflow.name, "rate_limited");
        return Ok(crate::throttle::too_many(
            &format!("/hooks/{path}"),
            per_minute,
            wait,
        ));
    }

    let input = parse_body(&headers, &bytes)?;
    // The body the workflow says it takes, or 422 with every problem; nothing starts.
    if let Some(schema) = &hook.input {
        let problems = schema.problems(&input);
        if !problems.is_empty() {
            let list: Vec<Value> = problems
                .iter()
                .map(|p| json!({"path": p.path, "message": p.message}))
                .collect();
            let text: Vec<String> = problems.iter().map(ToString::to_string).collect();
            return Err((
                "invalid_input",
                ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "invalid_input",
                    format!(
                        "the body does not match the webhook's input schema: {}",
                        text.join("; ")
                    ),
                )
                .with_details(json!({"problems": list})),
            ));
        }
    }
    let mut header_map = match weft_connectors::http::headers_json(&headers) {
        Value::Object(map) => map,
        _ => Map::new(),
    };
    for name in DROPPED_HEADERS {
        header_map.remove(*name);
    }
    let query: Map<String, Value> = query.map(|q| form_object(q.as_bytes())).unwrap_or_default();
    let now = now_millis();
    let key = delivery_key(hub, hook, &headers, &header_map, &input).await?;
    let trigger = json!({
        "type": "webhook",
        "path": path,
        "method": method.as_str(),
        "headers": header_map,
        "query": query,
        "received_at": weft_engine::view::time(now),
    });
    let run = NewRun {
        idempotency_key: key.map(|k| format!("webhook:{k}")),
        ..new_run(workflow, trigger, input, now)
    };
    let created = hub
        .engine
        .accept(std::slice::from_ref(&run), None)
        .await
        .map_err(|e| ("store_failed", ApiError::from(e)))?;
    let created = created.into_iter().next().ok_or_else(|| {
        (
            "store_failed",
            ApiError::internal("the store created no run"),
        )
    })?;
    let duplicate = matches!(created, Created::Existing(_));
    count(
        &workflow.name,
        if duplicate { "duplicate" } else { "accepted" },
    );
    let run_id = created.id().to_string();
    let accepted = || {
        (
            StatusCode::ACCEPTED,
            axum::Json(json!({"run_id": run_id, "duplicate": duplicate})),
        )
            .into_response()
    };
    match hook.respond {
        Respond::Async => Ok(accepted()),
        Respond::Sync { timeout } => {
            let finished = hub
                .engine
                .wait_finished(&run_id, timeout)
                .await
                .map_err(|e| ("store_failed", ApiError::from(e)))?;
            match finished {
                Some(run) if run.state == weft_core::RunState::Succeeded => Ok((
                    StatusCode::OK,
                    axum::Json(run.output.unwrap_or(Value::Null)),
                )
                    .into_response()),
                // The sender is not authenticated: it learns that the run did not succeed and its
                // id, not what the run met on the way (an upstream's URL, headers and answer);
                // the API shows that to a token.
                Some(run) if run.state.is_terminal() => Ok(ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "run_failed",
                    format!(
                        "run {} {}; its details are in the hub's API (GET /api/runs/{})",
                        run.id, run.state, run.id
                    ),
                )
                .with_details(json!({"run_id": run.id, "state": run.state.as_str()}))
                .into_response()),
                _ => Ok(accepted()),
            }
        }
    }
}

/// The request body as the run's input: JSON as JSON, a form as an object, other text as a string,
/// and anything else as `{base64}`.
fn parse_body(headers: &HeaderMap, bytes: &[u8]) -> Result<Value, (&'static str, ApiError)> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    let mime = content_type.split(';').next().unwrap_or("").trim();
    if bytes.is_empty() {
        return Ok(Value::Null);
    }
    if mime == "application/json" || mime.ends_with("+json") {
        return serde_json::from_slice(bytes).map_err(|e| {
            (
                "bad_body",
                ApiError::bad_request(format!("the body is not valid JSON: {e}")),
            )
        });
    }
    if mime == "application/x-www-form-urlencoded" {
        return Ok(Value::Object(form_object(bytes)));
    }
    Ok(match std::str::from_utf8(bytes) {
        Ok(text) => Value::String(text.to_string()),
        Err(_) => json!({"base64": base64::engine::general_purpose::STANDARD.encode(bytes)}),
    })
}

/// Form or query pairs as an object; a repeated key collects its values in a list.
fn form_object(bytes: &[u8]) -> Map<String, Value> {
    let mut map = Map::new();
    for (k, v) in form_urlencoded::parse(bytes) {
        let v = Value::String(v.into_owned());
        match map.get_mut(k.as_ref()) {
            Some(Value::Array(list)) => list.push(v),
            Some(first) => {
                let first = first.take();
                map.insert(k.into_owned(), Value::Array(vec![first, v]));
            }
            None => {
                map.insert(k.into_owned(), v);
            }
        }
    }
    map
}

/// The delivery id that de-duplicates a sender's retries.
async fn delivery_key(
    hub: &Hub,
    hook: &WebhookTrigger,
    headers: &HeaderMap,
    header_map: &Map<String, Value>,
    input: &Value,
) -> Result<Option<String>, (&'static str, ApiError)> {
    match &hook.dedupe {
        None => Ok(None),
        Some(Dedupe::Header(name)) => Ok(headers
            .get(name.as_str())
            .and_then(|v| v.to_str().ok())
            .filter(|v| !v.is_empty())
            .map(str::to_string)),
        Some(Dedupe::Expr(text, template)) => {
            let ctx = json_to_val(&json!({"headers": header_map, "input": input}));
            let value = hub
                .engine
                .evaluate(template, &ctx)
                .await
                .map_err(|e| e.to_string())
                .and_then(|v| val_to_json(&v))
                .map_err(|message| {
                    (
                        "bad_body",
                        ApiError::bad_request(format!(
                            "this webhook's dedupe expression {text} failed on the request: {message}"
                        )),
                    )
                })?;
            match value {
                Value::Null => Ok(None),
                Value::String(s) if s.is_empty() => Ok(None),
                Value::String(s) => Ok(Some(s)),
                Value::Number(n) => Ok(Some(n.to_string())),
                other => Err((
                    "bad_body",
                    ApiError::bad_request(format!(
                        "this webhook's dedupe expression {text} gave {}, not a string or number",
                        weft_core::json_kind(&other)
                    )),
                )),
            }
        }
    }
}
