//! The REST API under `/api`: workflows, runs, approvals and the OpenAPI document that describes
//! them.
//!
//! Every handler is registered through [`utoipa_axum`], so a route and its entry in
//! `/api/openapi.json` come from the same declaration and cannot drift apart. Request bodies and
//! query strings are parsed here rather than by axum's extractors, so that every malformed request
//! gets the one error shape of [`crate::error`].

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::{OpenApi, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use weft_core::trigger::{Missed, Overlap, Respond};
use weft_core::{RunState, Trigger, Workflow};
use weft_engine::{EngineError, ToolCallError, view};
use weft_store::{CancelOutcome, RunFilter, now_millis};

use crate::auth::Identity;
use crate::error::{ApiError, ErrorBody};
use crate::{Hub, audit, connections, edit, events, overview, secrets, session, tokens, tools};

/// Most runs one page of `GET /api/runs` returns.
pub const MAX_PAGE: u32 = 500;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Weft API",
        description = "Inspect and steer a Weft hub: its workflows and their runs. Webhooks are served under /hooks/<path>, outside this API."
    ),
    servers((url = "/api")),
    components(schemas(ErrorBody)),
    tags(
        (name = "workflows", description = "The workflows of the project being served."),
        (name = "runs", description = "Runs and their step attempts."),
        (name = "approvals", description = "Questions that waiting runs ask a person or a program."),
        (name = "audit", description = "Who did what: changes, approvals, tool calls. Admin tokens only."),
        (name = "secrets", description = "The encrypted secret store: names and dates, set and delete; values are never shown. Admin tokens only."),
        (name = "tokens", description = "API tokens: list, make (the secret is shown once) and revoke. Admin tokens only."),
        (name = "connections", description = "The project's connections to outside systems, and the workflows that use them."),
        (name = "console", description = "Signing in to the web console: an API token exchanged for a session cookie."),
        (name = "tools", description = "Workflows that chatbots call as tools (HTTP function calling; MCP is at /mcp). /api/tools/openapi.json describes just the tools, for assistant platforms to import as actions.")
    )
)]
struct ApiDoc;

/// Every route of the API, each with its OpenAPI entry.
fn routes() -> OpenApiRouter<Arc<Hub>> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(list_workflows))
        .routes(routes!(show_workflow, edit::save_workflow))
        .routes(routes!(edit::run_tests))
        .routes(routes!(edit::preview))
        .routes(routes!(edit::edit_workflow))
        .routes(routes!(edit::catalog))
        .routes(routes!(lint_workflow))
        .routes(routes!(start_run))
        .routes(routes!(overview::overview))
        .routes(routes!(events::events))
        .routes(routes!(list_runs))
        .routes(routes!(show_run))
        .routes(routes!(show_attempt))
        .routes(routes!(retry_run))
        .routes(routes!(cancel_run))
        .routes(routes!(replay_run))
        .routes(routes!(list_approvals))
        .routes(routes!(show_approval, answer_approval))
        .routes(routes!(list_audit))
        .routes(routes!(secrets::list_secrets))
        .routes(routes!(secrets::put_secret, secrets::delete_secret))
        .routes(routes!(list_tools))
        .routes(routes!(call_tool))
        .routes(routes!(
            session::sign_in,
            session::show_session,
            session::sign_out
        ))
        .routes(routes!(tokens::list_tokens, tokens::create_token))
        .routes(routes!(tokens::revoke_token))
        .routes(routes!(connections::list_connections))
        .routes(routes!(connections::test_connection))
        .routes(routes!(crate::oauth::connect))
}

/// The API's routes, with their OpenAPI document served at `/openapi.json`.
pub fn router() -> OpenApiRouter<Arc<Hub>> {
    let (routes, doc) = routes().split_for_parts();
    let doc = Arc::new(doc);
    OpenApiRouter::new().merge(OpenApiRouter::from(
        routes
            .route(
                "/openapi.json",
                axum::routing::get(move || {
                    let doc = doc.clone();
                    async move { axum::Json(doc.as_ref().clone()) }
                }),
            )
            .route("/tools/openapi.json", axum::routing::get(tools_openapi)),
    ))
}

/// The OpenAPI document of the API.
pub fn openapi() -> utoipa::openapi::OpenApi {
    routes().split_for_parts().1
}

/// A workflow as listed.
#[derive(Serialize, ToSchema)]
pub struct WorkflowSummary {
    /// The workflow's name.
    pub name: String,
    /// What it is for.
    pub description: Option<String>,
    /// Its file, relative to the project folder.
    pub file: String,
    /// Its version: the SHA-256 of the file's text (and of the connector definitions it uses, for
    /// a workflow with defined connections).
    pub version: String,
    /// What starts its runs: `{type, …settings}`.
    #[schema(value_type = Object)]
    pub trigger: Value,
}

/// The workflows of the project.
#[derive(Serialize, ToSchema)]
pub struct WorkflowList {
    /// Sorted by name.
    pub workflows: Vec<WorkflowListItem>,
}

/// A workflow as listed: what it is, and how its runs have gone.
#[derive(Serialize, ToSchema)]
pub struct WorkflowListItem {
    /// Name, version and trigger.
    #[serde(flatten)]
    pub summary: WorkflowSummary,
    /// Its newest run, whenever it was, if it ever ran.
    pub last_run: Option<LastRun>,
    /// Runs created in the last 24 hours.
    pub runs_24h: u64,
    /// Of those, the ones that failed.
    pub failed_24h: u64,
}

/// A workflow's newest run.
#[derive(Serialize, ToSchema)]
pub struct LastRun {
    /// The run's id.
    pub id: String,
    /// Its state now: queued, running, waiting, succeeded, failed or cancelled.
    pub state: String,
    /// When it was created (RFC 3339).
    pub created_at: Option<String>,
}

/// A workflow with its text.
#[derive(Serialize, ToSchema)]
pub struct WorkflowDetail {
    /// Name, version and trigger.
    #[serde(flatten)]
    pub summary: WorkflowSummary,
    /// The file's text.
    pub source: String,
    /// The file as JSON, read the way the hub reads it (expressions such as `${{ {a: 1} }}` are
    /// strings, though plain YAML would not allow them unquoted): what the console draws.
    #[schema(value_type = Object)]
    pub document: Value,
}

/// One problem of a workflow file.
#[derive(Serialize, ToSchema)]
pub struct Problem {
    /// The file.
    pub file: String,
    /// 1-based line.
    pub line: u32,
    /// 1-based column.
    pub column: u32,
    /// What is wrong.
    pub message: String,
}

/// The result of linting a posted workflow file.
#[derive(Serialize, ToSchema)]
pub struct LintResult {
    /// Whether the file has no problem.
    pub ok: bool,
    /// Every problem, in file order.
    pub problems: Vec<Problem>,
    /// The file as JSON, read the way the hub reads it (`null` when it is not YAML): what the
    /// console's graph draws while the text is edited.
    #[schema(value_type = Object)]
    pub document: Value,
}

/// A request to start a run.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StartRun {
    /// The run's input (`.input`). Default `{}`.
    #[schema(value_type = Object)]
    #[serde(default)]
    pub input: Option<Value>,
    /// A key that makes the request idempotent: a second request with the same key returns the
    /// first run.
    #[serde(default)]
    pub idempotency_key: Option<String>,
    /// Start a workflow whose trigger is not `manual` anyway, as a trial: the input stands for
    /// the trigger's event. Editors only.
    #[serde(default)]
    pub trial: bool,
}

/// A run that was started, found or changed.
#[derive(Serialize, ToSchema)]
pub struct RunRef {
    /// The run's id.
    pub run_id: String,
    /// For starts: whether the idempotency key named an existing run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duplicate: Option<bool>,
    /// For cancels: `cancelled` (it was not executing) or `requested` (it stops at its next step
    /// boundary).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outcome: Option<String>,
}

/// A run, as the API shows it (`weft_engine::view::run_json` writes it; this type documents it,
/// and the end-to-end tests check real answers against the document).
#[allow(dead_code)]
#[derive(Serialize, ToSchema)]
pub struct RunView {
    /// Its id (a UUIDv7: ids sort by creation time).
    pub id: String,
    /// The workflow it runs.
    pub workflow: String,
    /// The workflow's version it runs on (the SHA-256 of the file).
    pub version: String,
    /// `queued`, `running`, `waiting`, `succeeded`, `failed` or `cancelled`.
    pub state: String,
    /// The run at the top of its tree (itself for a run no step started).
    pub root_id: String,
    /// The run whose `call` step started it.
    pub parent_id: Option<String>,
    /// That step's key.
    pub parent_step: Option<String>,
    /// The key that de-duplicated its start.
    pub idempotency_key: Option<String>,
    /// What started it: `{type, …}`.
    pub trigger: Value,
    /// Its input (`.input`): the event.
    pub input: Value,
    /// Its output, once it succeeded.
    pub output: Value,
    /// Why it failed: `{step, kind, message, …}`.
    pub error: Value,
    /// When it wakes (RFC 3339), while it waits.
    pub wake_at: Option<String>,
    /// When it was committed (RFC 3339).
    pub created_at: String,
    /// When it first started executing (RFC 3339).
    pub started_at: Option<String>,
    /// When it ended (RFC 3339).
    pub finished_at: Option<String>,
    /// Every step attempt, in order (`GET /runs/{id}` only).
    pub steps: Option<Vec<AttemptView>>,
}

/// One step attempt of a run.
#[allow(dead_code)]
#[derive(Serialize, ToSchema)]
pub struct AttemptView {
    /// The step's key: its id, and the item index of every `for_each` around it (`post/3`).
    pub step: String,
    /// The attempt's number, from 1.
    pub attempt: u32,
    /// `started`, `succeeded`, `failed`, `retrying`, `waiting`, … .
    pub state: String,
    /// What the step was given.
    pub input: Value,
    /// What it gave.
    pub output: Value,
    /// Why it failed.
    pub error: Value,
    /// When it is due again (RFC 3339), while it waits or before a retry.
    pub wake_at: Option<String>,
    /// When it started (RFC 3339).
    pub started_at: String,
    /// When it ended (RFC 3339).
    pub finished_at: Option<String>,
}

/// An approval, as the API shows it (`weft_engine::view::approval_json`).
#[allow(dead_code)]
#[derive(Serialize, ToSchema)]
pub struct ApprovalView {
    /// Its id.
    pub id: String,
    /// The run that asks.
    pub run_id: String,
    /// The asking step's key.
    pub step: String,
    /// The attempt of that step.
    pub attempt: u32,
    /// The run's workflow.
    pub workflow: String,
    /// What the approver reads.
    pub message: String,
    /// What they decide on.
    pub data: Value,
    /// `pending`, `approved`, `rejected` or `expired`.
    pub state: String,
    /// The run's state.
    pub run_state: String,
    /// When it was asked (RFC 3339).
    pub created_at: String,
    /// When it expires (RFC 3339), if it does.
    pub expires_at: Option<String>,
    /// When it was answered (RFC 3339).
    pub answered_at: Option<String>,
    /// What the answer carried.
    pub answer: Value,
    /// Who answered, as they said.
    pub answered_by: Option<String>,
}

/// One entry of the audit log.
#[allow(dead_code)]
#[derive(Serialize, ToSchema)]
pub struct AuditEntryView {
    /// Its sequence number (newer entries have larger ones).
    pub seq: u64,
    /// When (RFC 3339).
    pub at: String,
    /// Who: a token id, `cli`, `stdio`, `system`, `files` or `anonymous`.
    pub actor: String,
    /// What, such as `run.retry` or `session.sign_in`.
    pub action: String,
    /// To what: a run, token, approval, workflow, secret.
    pub target: String,
    /// More about it.
    pub details: Value,
}

/// A page of the audit log.
#[allow(dead_code)]
#[derive(Serialize, ToSchema)]
pub struct AuditPage {
    /// Newest first.
    pub entries: Vec<AuditEntryView>,
    /// Pass as `before` for the next page; absent on the last.
    pub next_before: Option<u64>,
}

/// One page of runs.
#[derive(Serialize, ToSchema)]
pub struct RunPage {
    /// Runs, newest first, as `GET /api/runs/{id}` shows them but without steps.
    #[schema(value_type = Vec<RunView>)]
    pub runs: Vec<Value>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

fn trigger_json(w: &Workflow) -> Value {
    match &w.trigger {
        Trigger::Manual => json!({"type": "manual"}),
        Trigger::Webhook(h) => json!({
            "type": "webhook",
            "path": h.path,
            "url": format!("/hooks/{}", h.path),
            "signature": h.signature.as_ref().map(|s| s.scheme.name()),
            "respond": match h.respond { Respond::Async => "async", Respond::Sync { .. } => "sync" },
            "max_body_bytes": h.max_body_bytes,
        }),
        Trigger::Schedule(s) => json!({
            "type": "schedule",
            "cron": s.cron_text,
            "timezone": s.timezone_name,
            "missed": match s.missed { Missed::Skip => "skip", Missed::Once => "once" },
            "overlap": match s.overlap { Overlap::Allow => "allow", Overlap::Skip => "skip", Overlap::Queue => "queue" },
            "next_slot": s.next_slot(now_millis()).map(|t| s.slot_text(t)),
        }),
        Trigger::Poll(p) => json!({
            "type": "poll",
            "every": weft_core::duration::format(p.every),
            "uses": format!("{}.{}", p.connection, p.action),
            "listen": p.listen,
        }),
        Trigger::Tool(t) => json!({
            "type": "tool",
            "description": t.description,
            "input": t.input.schema(),
            "output": t.output.as_ref().map(|o| o.schema()),
            "wait": weft_core::duration::format(t.wait),
        }),
        Trigger::Queue(q) => json!({
            "type": "queue",
            "connection": q.connection,
            "connection_type": q.type_name,
            "settings": q.settings,
        }),
    }
}

fn summary(w: &Workflow) -> WorkflowSummary {
    WorkflowSummary {
        name: w.name.clone(),
        description: w.description.clone(),
        file: w.file.clone(),
        version: w.version.clone(),
        trigger: trigger_json(w),
    }
}

fn workflow(hub: &Hub, name: &str) -> Result<Arc<Workflow>, ApiError> {
    hub.engine
        .project()
        .workflows
        .get(name)
        .cloned()
        .ok_or_else(|| ApiError::not_found(format!("the project has no workflow named `{name}`")))
}

/// Lists the workflows of the project being served.
#[utoipa::path(get, path = "/workflows", tag = "workflows",
    responses((status = 200, description = "The workflows", body = WorkflowList)))]
async fn list_workflows(State(hub): State<Arc<Hub>>) -> Result<axum::Json<WorkflowList>, ApiError> {
    let project = hub.engine.project();
    let store = hub.engine.store();
    let seen = store.overview(now_millis() - overview::WINDOW_MS).await?;
    let mut workflows = Vec::with_capacity(project.workflows.len());
    for w in project.workflows.values() {
        let (mut runs_24h, mut failed_24h) = (0, 0);
        for c in seen.counts.iter().filter(|c| c.workflow == w.name) {
            runs_24h += c.count;
            if c.state == RunState::Failed {
                failed_24h += c.count;
            }
        }
        let newest = store
            .list_runs(&RunFilter {
                workflow: Some(w.name.clone()),
                limit: 1,
                ..RunFilter::default()
            })
            .await?;
        workflows.push(WorkflowListItem {
            summary: summary(w),
            last_run: newest.into_iter().next().map(|r| LastRun {
                created_at: overview::time(r.created_at),
                id: r.id,
                state: r.state.as_str().to_string(),
            }),
            runs_24h,
            failed_24h,
        });
    }
    Ok(axum::Json(WorkflowList { workflows }))
}

/// Shows one workflow: its version, trigger and text.
#[utoipa::path(get, path = "/workflows/{name}", tag = "workflows",
    params(("name" = String, Path, description = "The workflow's name")),
    responses(
        (status = 200, description = "The workflow", body = WorkflowDetail),
        (status = 404, description = "No such workflow", body = ErrorBody)))]
async fn show_workflow(
    State(hub): State<Arc<Hub>>,
    Path(name): Path<String>,
) -> Result<axum::Json<WorkflowDetail>, ApiError> {
    let w = workflow(&hub, &name)?;
    let document = weft_core::yaml::parse(&w.source).map_or(Value::Null, |n| n.to_json());
    Ok(axum::Json(WorkflowDetail {
        summary: summary(&w),
        source: w.source.to_string(),
        document,
    }))
}

/// Lints a workflow file posted as the request body (YAML text), against the project's
/// connections and workflows. Changes nothing.
#[utoipa::path(post, path = "/workflows/lint", tag = "workflows",
    params(("file" = Option<String>, Query, description = "The file name to report problems against (default workflows/posted.yaml); it also gives the default workflow name")),
    request_body(content = String, content_type = "application/yaml", description = "The workflow file's text"),
    responses(
        (status = 200, description = "The problems found (none when `ok`)", body = LintResult),
        (status = 400, description = "The body is not UTF-8 text", body = ErrorBody)))]
async fn lint_workflow(
    State(hub): State<Arc<Hub>>,
    Query(query): Query<HashMap<String, String>>,
    body: Bytes,
) -> Result<axum::Json<LintResult>, ApiError> {
    let text = std::str::from_utf8(&body)
        .map_err(|_| ApiError::bad_request("the body must be the workflow file as UTF-8 text"))?;
    let file = query
        .get("file")
        .cloned()
        .unwrap_or_else(|| "workflows/posted.yaml".into());
    let problems = match hub.engine.project().parse_workflow(&file, text) {
        Ok(_) => Vec::new(),
        Err(diags) => diags
            .into_iter()
            .map(|d| Problem {
                file: d.file,
                line: d.line,
                column: d.column,
                message: d.message,
            })
            .collect(),
    };
    Ok(axum::Json(LintResult {
        ok: problems.is_empty(),
        problems,
        document: weft_core::yaml::parse(text).map_or(Value::Null, |n| n.to_json()),
    }))
}

/// Starts a run of a `manual` workflow; editors may also start a trial run (`"trial": true`) of a
/// workflow with another trigger, whose input stands for the event (its `.trigger` is `{type: manual}`, without
/// a webhook's headers or a schedule's slot). The answer comes once the run is committed; the run
/// executes afterwards (follow it with `GET /api/runs/{id}`).
#[utoipa::path(post, path = "/workflows/{name}/runs", tag = "runs",
    params(("name" = String, Path, description = "The workflow's name")),
    request_body(content = StartRun, description = "The input, and an optional idempotency key"),
    responses(
        (status = 202, description = "The run is committed", body = RunRef),
        (status = 400, description = "The body is not a valid request", body = ErrorBody),
        (status = 404, description = "No such workflow", body = ErrorBody),
        (status = 403, description = "A trial run, asked for by a token that is not an editor's", body = ErrorBody),
        (status = 409, description = "The workflow is not started manually, and no trial run was asked for", body = ErrorBody)))]
async fn start_run(
    State(hub): State<Arc<Hub>>,
    who: Option<axum::Extension<Identity>>,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let w = workflow(&hub, &name)?;
    let request: StartRun = if body.iter().all(u8::is_ascii_whitespace) {
        StartRun {
            input: None,
            idempotency_key: None,
            trial: false,
        }
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::bad_request(format!("the body is not a valid request: {e}")))?
    };
    if w.trigger != Trigger::Manual && !request.trial {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "conflict",
            format!(
                "workflow `{name}` is started by its {} trigger, not through the API (an editor may start a trial run with `\"trial\": true`)",
                w.trigger.type_name()
            ),
        ));
    }
    let editor = who
        .as_deref()
        .is_some_and(|i| i.role.allows(weft_core::auth::Access::Edit));
    if w.trigger != Trigger::Manual && !editor {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "a trial run of a workflow that is not started manually needs an editor's token",
        ));
    }
    let created = hub
        .engine
        .start_run(
            &name,
            request.input.unwrap_or_else(|| json!({})),
            request.idempotency_key,
        )
        .await?;
    audit::record(
        hub.engine.store().as_ref(),
        &audit::actor(who.as_deref()),
        "run.start",
        &name,
        json!({"run_id": created.id(), "trial": w.trigger != Trigger::Manual}),
    )
    .await;
    Ok((
        StatusCode::ACCEPTED,
        axum::Json(RunRef {
            run_id: created.id().to_string(),
            duplicate: Some(matches!(created, weft_store::Created::Existing(_))),
            outcome: None,
        }),
    )
        .into_response())
}

/// Lists runs, newest first, a page at a time.
#[utoipa::path(get, path = "/runs", tag = "runs",
    params(
        ("workflow" = Option<String>, Query, description = "Only runs of this workflow"),
        ("state" = Option<String>, Query, description = "Only runs in this state: queued, running, waiting, succeeded, failed or cancelled"),
        ("root" = Option<String>, Query, description = "Only the runs of the tree rooted at this run: the run and the child runs it started, theirs, and so on"),
        ("since" = Option<String>, Query, description = "Only runs created at or after this time (RFC 3339)"),
        ("until" = Option<String>, Query, description = "Only runs created before this time (RFC 3339)"),
        ("q" = Option<String>, Query, description = "Only runs whose trigger event or error holds this text"),
        ("limit" = Option<u32>, Query, description = "Most runs on the page, 1 to 500 (default 50)"),
        ("cursor" = Option<String>, Query, description = "`next_cursor` of the previous page")),
    responses(
        (status = 200, description = "A page of runs", body = RunPage),
        (status = 400, description = "A query parameter is invalid", body = ErrorBody)))]
async fn list_runs(
    State(hub): State<Arc<Hub>>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<axum::Json<RunPage>, ApiError> {
    only_known_parameters(
        &query,
        &[
            "workflow", "state", "root", "since", "until", "q", "limit", "cursor",
        ],
    )?;
    let time = |name: &str| -> Result<Option<i64>, ApiError> {
        query
            .get(name)
            .filter(|v| !v.is_empty())
            .map(|v| {
                v.parse::<jiff::Timestamp>()
                    .map(|t| t.as_millisecond())
                    .map_err(|e| {
                        ApiError::bad_request(format!(
                            "`{name}` must be a time such as 2026-12-07T10:00:00Z: {e}"
                        ))
                    })
            })
            .transpose()
    };
    let (since, until) = (time("since")?, time("until")?);
    let state = match query.get("state") {
        Some(s) => Some(s.parse::<RunState>().map_err(ApiError::bad_request)?),
        None => None,
    };
    let limit = page_limit(&query)?;
    let runs = hub
        .engine
        .store()
        .list_runs(&RunFilter {
            workflow: query.get("workflow").cloned(),
            state,
            root: query.get("root").cloned(),
            before: query.get("cursor").cloned(),
            since,
            until,
            text: query.get("q").filter(|q| !q.is_empty()).cloned(),
            limit: limit + 1,
        })
        .await?;
    let more = runs.len() > limit as usize;
    let page: Vec<_> = runs.into_iter().take(limit as usize).collect();
    let next_cursor = if more {
        page.last().map(|r| r.id.clone())
    } else {
        None
    };
    Ok(axum::Json(RunPage {
        runs: page.iter().map(|r| view::run_json(r, None)).collect(),
        next_cursor,
    }))
}

/// Shows a run with every step attempt: input, output or error, and timings. With `payloads`,
/// every input, output and error larger than that many bytes (as JSON) is left out and replaced
/// by `{"$omitted": <bytes>}`, to be fetched on its own (`GET /runs/{id}/attempt`).
#[utoipa::path(get, path = "/runs/{id}", tag = "runs",
    params(
        ("id" = String, Path, description = "The run's id, or a unique prefix of it"),
        ("payloads" = Option<u64>, Query, description = "Leave out inputs, outputs and errors larger than this many bytes")),
    responses(
        (status = 200, description = "The run, with `steps`", body = RunView),
        (status = 400, description = "The prefix matches several runs, or a bad parameter", body = ErrorBody),
        (status = 404, description = "No such run", body = ErrorBody)))]
async fn show_run(
    State(hub): State<Arc<Hub>>,
    Path(id): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<axum::Json<Value>, ApiError> {
    only_known_parameters(&query, &["payloads"])?;
    let limit = match query.get("payloads") {
        Some(v) => Some(v.parse::<usize>().map_err(|_| {
            ApiError::bad_request(format!("`payloads` must be a number of bytes, found `{v}`"))
        })?),
        None => None,
    };
    let store = hub.engine.store();
    let id = store.resolve_run_id(&id).await?;
    let run = store
        .get_run(&id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no run has the id {id}")))?;
    let attempts = store.attempts(&id).await?;
    let mut shown = view::run_json(&run, Some(&attempts));
    if let Some(limit) = limit {
        let omit = |v: &mut Value| {
            let bytes = v.to_string().len();
            if bytes > limit {
                *v = json!({ "$omitted": bytes });
            }
        };
        for key in ["input", "output"] {
            omit(&mut shown[key]);
        }
        if let Some(steps) = shown["steps"].as_array_mut() {
            for step in steps {
                for key in ["input", "output", "error"] {
                    omit(&mut step[key]);
                }
            }
        }
    }
    Ok(axum::Json(shown))
}

/// One step attempt of a run, whole: for payloads `GET /runs/{id}?payloads=` left out.
#[utoipa::path(get, path = "/runs/{id}/attempt", tag = "runs",
    params(
        ("id" = String, Path, description = "The run's id, or a unique prefix of it"),
        ("step" = String, Query, description = "The step's key, such as `notify` or `post/3`"),
        ("attempt" = u32, Query, description = "The attempt's number")),
    responses(
        (status = 200, description = "The attempt", body = AttemptView),
        (status = 400, description = "A bad parameter", body = ErrorBody),
        (status = 404, description = "No such run or attempt", body = ErrorBody)))]
async fn show_attempt(
    State(hub): State<Arc<Hub>>,
    Path(id): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<axum::Json<Value>, ApiError> {
    only_known_parameters(&query, &["step", "attempt"])?;
    let step = query
        .get("step")
        .ok_or_else(|| ApiError::bad_request("`step` is needed: the step's key"))?;
    let attempt: u32 = query
        .get("attempt")
        .and_then(|a| a.parse().ok())
        .ok_or_else(|| ApiError::bad_request("`attempt` is needed: a number from 1"))?;
    let store = hub.engine.store();
    let id = store.resolve_run_id(&id).await?;
    let found = store
        .attempts(&id)
        .await?
        .into_iter()
        .find(|a| a.step_key.as_str() == step && a.attempt == attempt)
        .ok_or_else(|| {
            ApiError::not_found(format!(
                "run {id} has no attempt {attempt} of step `{step}`"
            ))
        })?;
    Ok(axum::Json(view::attempt_json(&found)))
}

/// Continues a failed run from its failed step, with a fresh attempt budget.
#[utoipa::path(post, path = "/runs/{id}/retry", tag = "runs",
    params(("id" = String, Path, description = "The run's id, or a unique prefix of it")),
    responses(
        (status = 202, description = "The run is queued again", body = RunRef),
        (status = 404, description = "No such run", body = ErrorBody),
        (status = 409, description = "The run is not failed", body = ErrorBody)))]
async fn retry_run(
    State(hub): State<Arc<Hub>>,
    who: Option<axum::Extension<Identity>>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = hub.engine.store().resolve_run_id(&id).await?;
    hub.engine.retry(&id).await?;
    let actor = audit::actor(who.as_deref());
    audit::record(
        hub.engine.store().as_ref(),
        &actor,
        "run.retry",
        &id,
        json!({}),
    )
    .await;
    Ok(accepted(id, None))
}

/// Cancels a run and its unfinished child runs.
#[utoipa::path(post, path = "/runs/{id}/cancel", tag = "runs",
    params(("id" = String, Path, description = "The run's id, or a unique prefix of it")),
    responses(
        (status = 202, description = "Cancelled, or asked to stop at its next step boundary", body = RunRef),
        (status = 404, description = "No such run", body = ErrorBody),
        (status = 409, description = "The run is already finished", body = ErrorBody)))]
async fn cancel_run(
    State(hub): State<Arc<Hub>>,
    who: Option<axum::Extension<Identity>>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = hub.engine.store().resolve_run_id(&id).await?;
    let outcome = match hub.engine.cancel(&id).await? {
        CancelOutcome::Cancelled => "cancelled",
        CancelOutcome::Requested => "requested",
    };
    let actor = audit::actor(who.as_deref());
    let details = json!({ "outcome": outcome });
    audit::record(
        hub.engine.store().as_ref(),
        &actor,
        "run.cancel",
        &id,
        details,
    )
    .await;
    Ok(accepted(id, Some(outcome)))
}

/// Starts a new run from the trigger event of a run, on the workflow's current version.
#[utoipa::path(post, path = "/runs/{id}/replay", tag = "runs",
    params(("id" = String, Path, description = "The run's id, or a unique prefix of it")),
    responses(
        (status = 202, description = "The new run is committed", body = RunRef),
        (status = 404, description = "No such run", body = ErrorBody),
        (status = 409, description = "The run's workflow is no longer in the project", body = ErrorBody)))]
async fn replay_run(
    State(hub): State<Arc<Hub>>,
    who: Option<axum::Extension<Identity>>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = hub.engine.store().resolve_run_id(&id).await?;
    let new_id = hub.engine.replay(&id).await?;
    let actor = audit::actor(who.as_deref());
    let details = json!({ "new_run_id": new_id });
    audit::record(
        hub.engine.store().as_ref(),
        &actor,
        "run.replay",
        &id,
        details,
    )
    .await;
    Ok(accepted(new_id, None))
}

/// Approvals as listed.
#[derive(Serialize, ToSchema)]
pub struct ApprovalList {
    /// Approvals, newest first.
    #[schema(value_type = Vec<ApprovalView>)]
    pub approvals: Vec<Value>,
}

/// An answer to an approval.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApprovalAnswer {
    /// `approve` or `reject`.
    pub decision: String,
    /// Anything the run should know with the answer; the step's output carries it as `data`.
    #[schema(value_type = Object)]
    pub data: Option<Value>,
    /// Who answers, as the run and the record should show it.
    pub by: Option<String>,
}

/// Lists approvals, newest first: the pending ones of unfinished runs, or all of them.
#[utoipa::path(get, path = "/approvals", tag = "approvals",
    params(
        ("state" = Option<String>, Query, description = "`pending` (default) or `all`"),
        ("limit" = Option<u32>, Query, description = "Most approvals, 1 to 500 (default 50)")),
    responses(
        (status = 200, description = "Approvals", body = ApprovalList),
        (status = 400, description = "A query parameter is invalid", body = ErrorBody)))]
async fn list_approvals(
    State(hub): State<Arc<Hub>>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<axum::Json<ApprovalList>, ApiError> {
    only_known_parameters(&query, &["state", "limit"])?;
    let pending_only = match query.get("state").map(String::as_str) {
        None | Some("pending") => true,
        Some("all") => false,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "`state` must be `pending` or `all`, found `{other}`"
            )));
        }
    };
    let limit = page_limit(&query)?;
    let approvals = hub
        .engine
        .store()
        .list_approvals(pending_only, limit)
        .await?;
    Ok(axum::Json(ApprovalList {
        approvals: approvals.iter().map(view::approval_json).collect(),
    }))
}

/// Shows one approval, with its answer once given.
#[utoipa::path(get, path = "/approvals/{id}", tag = "approvals",
    params(("id" = String, Path, description = "The approval's id")),
    responses(
        (status = 200, description = "The approval", body = ApprovalView),
        (status = 404, description = "No such approval", body = ErrorBody)))]
async fn show_approval(
    State(hub): State<Arc<Hub>>,
    Path(id): Path<String>,
) -> Result<axum::Json<Value>, ApiError> {
    let approval = hub
        .engine
        .store()
        .approval(&id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no approval has the id {id}")))?;
    Ok(axum::Json(view::approval_json(&approval)))
}

/// Answers a pending approval; its run goes on at once. An approval is answered once: a second
/// answer, or one for an expired approval or a finished run, is a conflict and changes nothing.
#[utoipa::path(post, path = "/approvals/{id}", tag = "approvals",
    params(("id" = String, Path, description = "The approval's id")),
    request_body(content = ApprovalAnswer, description = "The decision, with optional data and who gives it"),
    responses(
        (status = 200, description = "The answered approval", body = ApprovalView),
        (status = 400, description = "The body is not a valid answer", body = ErrorBody),
        (status = 404, description = "No such approval", body = ErrorBody),
        (status = 409, description = "Already answered or expired, or the run has finished", body = ErrorBody)))]
async fn answer_approval(
    State(hub): State<Arc<Hub>>,
    who: Option<axum::Extension<Identity>>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<axum::Json<Value>, ApiError> {
    let answer: ApprovalAnswer = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("the body is not a valid answer: {e}")))?;
    let decision = match answer.decision.as_str() {
        "approve" => weft_store::ApprovalState::Approved,
        "reject" => weft_store::ApprovalState::Rejected,
        other => {
            return Err(ApiError::bad_request(format!(
                "`decision` must be `approve` or `reject`, found `{other}`"
            )));
        }
    };
    let record = hub
        .engine
        .answer_approval(
            &id,
            decision,
            &answer.data.unwrap_or(Value::Null),
            answer.by.as_deref(),
        )
        .await?;
    audit::record(
        hub.engine.store().as_ref(),
        &audit::actor(who.as_deref()),
        "approval.answer",
        &record.id,
        json!({"decision": record.state.as_str(), "by": record.answered_by, "run_id": record.run_id, "workflow": record.workflow}),
    )
    .await;
    Ok(axum::Json(view::approval_json(&record)))
}

/// The audit log, newest first: who (token id) did what, to what, and when. Admin tokens only; the
/// API cannot change it.
#[utoipa::path(get, path = "/audit", tag = "audit",
    params(
        ("limit" = Option<u32>, Query, description = "Most entries, 1 to 500 (default 50)"),
        ("before" = Option<u64>, Query, description = "Only entries older than this `seq`, to page back"),
        ("q" = Option<String>, Query, description = "Only entries whose actor, action, target or details hold this text")),
    responses(
        (status = 200, description = "A page of entries", body = AuditPage),
        (status = 400, description = "A bad parameter", body = ErrorBody)))]
async fn list_audit(
    State(hub): State<Arc<Hub>>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<axum::Json<Value>, ApiError> {
    only_known_parameters(&query, &["limit", "before", "q"])?;
    let limit = page_limit(&query)?;
    let before = match query.get("before") {
        Some(b) => Some(b.parse::<u64>().map_err(|_| {
            ApiError::bad_request(format!("`before` must be a whole number, found `{b}`"))
        })?),
        None => None,
    };
    let matching = query.get("q").map(String::as_str).filter(|q| !q.is_empty());
    let entries = hub
        .engine
        .store()
        .list_audit(before, limit, matching)
        .await?;
    let next = (entries.len() == limit as usize)
        .then(|| entries.last().map(|(seq, _)| *seq))
        .flatten();
    Ok(axum::Json(json!({
        "entries": entries.iter().map(|(seq, e)| audit::entry_json(*seq, e)).collect::<Vec<_>>(),
        "next_before": next,
    })))
}

/// The tools of the project, as chatbots see them.
#[utoipa::path(get, path = "/tools", tag = "tools",
    responses((status = 200, description = "Every tool with its input and output schema", body = Object)))]
async fn list_tools(
    State(hub): State<Arc<Hub>>,
    who: Option<axum::Extension<Identity>>,
) -> axum::Json<Value> {
    let tools: Vec<Value> = tools::list(&hub.engine, who.as_deref())
        .into_iter()
        .map(|d| {
            json!({
                "name": d.name,
                "title": d.title,
                "description": d.description,
                "input_schema": d.input_schema,
                "output_schema": d.output_schema,
            })
        })
        .collect();
    axum::Json(json!({ "tools": tools }))
}

/// Calls a tool: the body is its arguments. The arguments are checked against the tool's input
/// schema before any run starts; then the call waits for the run up to the tool's `wait`.
#[utoipa::path(post, path = "/tools/{name}", tag = "tools",
    params(
        ("name" = String, Path, description = "The tool's name"),
        ("Idempotency-Key" = Option<String>, Header, description = "Calls with the same key return the same run's result instead of starting another run")),
    request_body(content = Object, description = "The tool's arguments, as its input schema says"),
    responses(
        (status = 200, description = "The run finished: `{run_id, state, is_error, output}`, or with `is_error: true`, the failed `step` and the reason (`message`)", body = Object),
        (status = 202, description = "The run is still going (waiting for an approval, say): `{run_id, state, approval, message}`; call again with the same Idempotency-Key, or `run_result` with the run id, for its result", body = Object),
        (status = 400, description = "The body is not JSON, or the Idempotency-Key header is not usable", body = ErrorBody),
        (status = 404, description = "No such tool", body = ErrorBody),
        (status = 409, description = "The Idempotency-Key belongs to a call with other arguments", body = ErrorBody),
        (status = 422, description = "The arguments do not match the input schema (`details.problems`); no run started", body = ErrorBody)))]
async fn call_tool(
    State(hub): State<Arc<Hub>>,
    who: Option<axum::Extension<Identity>>,
    Path(name): Path<String>,
    headers: axum::http::HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let arguments: Value = if body.iter().all(u8::is_ascii_whitespace) {
        json!({})
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::bad_request(format!("the body is not JSON: {e}")))?
    };
    // Its length is checked with the call (`Engine::call_tool`), whichever way the call comes.
    let key = match headers.get("idempotency-key") {
        Some(v) => Some(
            v.to_str()
                .map_err(|_| {
                    ApiError::bad_request("the Idempotency-Key header must be visible ASCII text")
                })?
                .to_string(),
        ),
        None => None,
    };
    let outcome = tools::call(&hub.engine, who.as_deref(), &name, arguments, key, |_| {}).await;
    match outcome {
        Ok(o @ tools::CallOutcome::Pending { .. }) => {
            Ok((StatusCode::ACCEPTED, axum::Json(o.json())).into_response())
        }
        // A failed run is an answer for the model, like a successful one: 200 with `is_error`, so
        // that no proxy retries it as a server fault.
        Ok(o) => Ok(axum::Json(o.json()).into_response()),
        Err(tools::ToolError::Call(e @ ToolCallError::UnknownTool { .. })) => {
            Err(ApiError::not_found(e.to_string()))
        }
        Err(tools::ToolError::Call(ToolCallError::Engine(
            e @ EngineError::InvalidInput { .. },
        ))) => {
            let EngineError::InvalidInput { problems, .. } = &e else {
                unreachable!()
            };
            let list = weft_core::tool::problems_json(problems);
            Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_input",
                e.to_string(),
            )
            .with_details(json!({ "problems": list })))
        }
        Err(tools::ToolError::BadArguments(message)) => Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_input",
            message,
        )),
        Err(tools::ToolError::Failed(message)) => Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            message,
        )),
        Err(tools::ToolError::Call(ToolCallError::Engine(e))) => Err(e.into()),
        Err(tools::ToolError::Call(e)) => Err(ApiError::internal(e)),
    }
}

/// The OpenAPI document of just the tools, for assistant platforms to import as actions. Its
/// server URL is the one this request came to.
async fn tools_openapi(
    State(hub): State<Arc<Hub>>,
    who: Option<axum::Extension<Identity>>,
    headers: axum::http::HeaderMap,
) -> axum::Json<Value> {
    let host = headers
        .get(axum::http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost");
    let scheme = headers
        .get("x-forwarded-proto")
        .and_then(|h| h.to_str().ok())
        .filter(|p| *p == "https" || *p == "http")
        .unwrap_or("http");
    let defs = tools::list(&hub.engine, who.as_deref());
    axum::Json(weft_core::tool::openapi(
        &defs,
        &format!("{scheme}://{host}"),
    ))
}

/// Refuses a query string with a parameter the route does not take.
fn only_known_parameters(query: &HashMap<String, String>, known: &[&str]) -> Result<(), ApiError> {
    match query.keys().find(|k| !known.contains(&k.as_str())) {
        Some(key) => Err(ApiError::bad_request(format!(
            "unknown query parameter `{key}`; this route takes {}",
            known.join(", ")
        ))),
        None => Ok(()),
    }
}

/// The `limit` parameter of a listing: 1 to [`MAX_PAGE`], default 50.
fn page_limit(query: &HashMap<String, String>) -> Result<u32, ApiError> {
    match query.get("limit") {
        Some(l) => match l.parse::<u32>() {
            Ok(n) if (1..=MAX_PAGE).contains(&n) => Ok(n),
            _ => Err(ApiError::bad_request(format!(
                "`limit` must be a whole number from 1 to {MAX_PAGE}, found `{l}`"
            ))),
        },
        None => Ok(50),
    }
}

fn accepted(run_id: String, outcome: Option<&str>) -> Response {
    (
        StatusCode::ACCEPTED,
        axum::Json(RunRef {
            run_id,
            duplicate: None,
            outcome: outcome.map(str::to_string),
        }),
    )
        .into_response()
}
