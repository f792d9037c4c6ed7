//! The MCP server (Model Context Protocol, on the `rmcp` crate): the project's tools for chatbots
//! that speak MCP, over streamable HTTP at `/mcp` of `weft serve` and over stdio with `weft mcp`.
//!
//! `tools/list` gives every tool with its input and output schema; `tools/call` goes through
//! [`crate::tools::call`]. What a model should read is a tool result, never a protocol error:
//! arguments that do not match the schema and runs that fail are results with `isError`, naming
//! the field or the step and the reason. Only an unknown tool is a protocol error (invalid params),
//! as the specification asks. A call that carries a `progressToken` hears about each step and about
//! an approval its run waits for. A call may carry `_meta.idempotencyKey`: calls with the same key
//! return the same run's result. The protocol version is negotiated by `rmcp`: the newest version
//! both sides speak.

use std::sync::Arc;

use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, Implementation,
    ListToolsResult, PaginatedRequestParams, ProgressNotificationParam, ServerCapabilities,
    ServerConfig, Tool,
};
use rmcp::service::RequestContext;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{ErrorData, RoleServer, ServerHandler, ServiceExt};
use serde_json::{Value, json};
use weft_core::tool::ToolDef;
use weft_engine::{Engine, EngineError, ToolCallError};

use crate::auth::Identity;
use crate::tools::{self, CallOutcome, ToolError};

/// The `_meta` field of a `tools/call` that carries an idempotency key.
pub const IDEMPOTENCY_META: &str = "idempotencyKey";

/// Largest MCP request body: 4 MiB.
const MAX_BODY: usize = 4 * 1024 * 1024;

/// The MCP server of one engine's project.
#[derive(Clone)]
pub struct McpServer {
    engine: Engine,
}

impl McpServer {
    /// A server for the tools of `engine`'s current project.
    pub fn new(engine: Engine) -> McpServer {
        McpServer { engine }
    }

    /// Serves MCP on stdin and stdout until the client closes the connection.
    pub async fn serve_stdio(self) -> Result<(), String> {
        let running = self
            .serve(rmcp::transport::stdio())
            .await
            .map_err(|e| format!("the MCP session did not start: {e}"))?;
        running
            .waiting()
            .await
            .map_err(|e| format!("the MCP session ended with an error: {e}"))?;
        Ok(())
    }

    /// The streamable HTTP endpoint, to be mounted at `/mcp`. `allowed_hosts` are the host names
    /// the `Host` header may carry (a guard against DNS rebinding); empty means loopback only.
    ///
    /// Open streams end when the engine shuts down, so that they do not hold up a graceful stop.
    pub fn http_service(
        engine: Engine,
        allowed_hosts: &[String],
    ) -> StreamableHttpService<McpServer, LocalSessionManager> {
        let stop = tokio_util::sync::CancellationToken::new();
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let (engine, stop) = (engine.clone(), stop.clone());
            runtime.spawn(async move {
                engine.stopping().await;
                stop.cancel();
            });
        }
        let mut config = StreamableHttpServerConfig::default()
            .with_max_request_body_bytes(MAX_BODY)
            .with_cancellation_token(stop);
        if !allowed_hosts.is_empty() {
            config = config.with_allowed_hosts(allowed_hosts.iter().cloned());
        }
        StreamableHttpService::new(
            move || Ok(McpServer::new(engine.clone())),
            Arc::new(LocalSessionManager::default()),
            config,
        )
    }
}

/// The host names `/mcp` answers to when `mcp.allowed_hosts` is not set.
const LOOPBACK: &[&str] = &["localhost", "127.0.0.1", "::1"];

/// A host name or `host:port`, lower case, without the brackets of an IPv6 address.
fn authority(text: &str) -> Option<(String, Option<u16>)> {
    let parsed = text.trim().parse::<axum::http::uri::Authority>().ok()?;
    let host = parsed
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_ascii_lowercase();
    Some((host, parsed.port_u16()))
}

/// Whether `host` (a `Host` header's value, or an origin's authority) names one of `allowed`.
fn host_allowed(host: &str, allowed: &[String]) -> bool {
    let Some((name, port)) = authority(host) else {
        return false;
    };
    let loopback: Vec<String>;
    let allowed = if allowed.is_empty() {
        loopback = LOOPBACK.iter().map(|h| h.to_string()).collect();
        &loopback
    } else {
        allowed
    };
    allowed
        .iter()
        .filter_map(|a| authority(a))
        .any(|(a, a_port)| a == name && a_port.is_none_or(|p| Some(p) == port))
}

/// The checks in front of `/mcp`, answered in the hub's JSON error shape: the `Host` header must
/// name one of `mcp.allowed_hosts` (loopback names by default), and an `Origin` header, which a
/// browser sends, must be one of `mcp.allowed_origins` or an origin on an allowed host name; both
/// are guards against DNS rebinding, which the MCP specification asks for. The errors the MCP
/// transport answers in plain text (an unknown session, a wrong `Accept`) get the same shape.
pub async fn guard(
    axum::extract::State(hub): axum::extract::State<Arc<crate::Hub>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::http::{StatusCode, header};
    use axum::response::IntoResponse;
    let path = req.uri().path();
    if path != "/mcp" && !path.starts_with("/mcp/") {
        return next.run(req).await;
    }
    let settings = &hub.engine.project().settings;
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .or_else(|| req.uri().authority().map(|a| a.to_string()))
        .unwrap_or_default();
    if !host_allowed(&host, &settings.mcp_allowed_hosts) {
        return crate::error::ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!(
                "/mcp does not answer to the host `{host}`; list it in `mcp.allowed_hosts` in weft.yaml"
            ),
        )
        .into_response();
    }
    if let Some(origin) = req.headers().get(header::ORIGIN) {
        let origin = origin.to_str().unwrap_or("").trim().to_ascii_lowercase();
        let listed = settings.mcp_allowed_origins.contains(&origin);
        let on_allowed_host = origin
            .split_once("://")
            .filter(|(scheme, _)| matches!(*scheme, "http" | "https"))
            .is_some_and(|(_, rest)| host_allowed(rest, &settings.mcp_allowed_hosts));
        if !listed && !on_allowed_host {
            return crate::error::ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                format!(
                    "/mcp does not take requests from pages of the origin `{origin}`; list it in `mcp.allowed_origins` in weft.yaml"
                ),
            )
            .into_response();
        }
    }
    let response = next.run(req).await;
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("json") || v.contains("event-stream"));
    if status.is_success() || is_json || status.is_informational() {
        return response;
    }
    let body = axum::body::to_bytes(response.into_body(), 64 << 10)
        .await
        .unwrap_or_default();
    let text = String::from_utf8_lossy(&body).trim().to_string();
    let code = match status {
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::FORBIDDEN => "forbidden",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
        s if s.is_server_error() => "internal",
        _ => "bad_request",
    };
    let message = if text.is_empty() {
        status.canonical_reason().unwrap_or("error").to_string()
    } else {
        text
    };
    crate::error::ApiError::new(status, code, format!("MCP: {message}")).into_response()
}

/// The token behind an MCP request over HTTP (the auth check left it on the request); none over
/// stdio, where the user who started `weft mcp` may call every tool.
fn identity(context: &RequestContext<RoleServer>) -> Option<Identity> {
    context
        .extensions
        .get::<axum::http::request::Parts>()
        .and_then(|parts| parts.extensions.get::<Identity>())
        .cloned()
}

/// A tool in MCP's terms.
fn mcp_tool(def: ToolDef) -> Tool {
    let object = |v: Value| match v {
        Value::Object(map) => Arc::new(map),
        _ => Arc::new(serde_json::Map::new()),
    };
    let mut tool = Tool::new(def.name, def.description, object(def.input_schema));
    if let Some(title) = def.title {
        tool = tool.with_title(title);
    }
    if let Some(output) = def.output_schema {
        tool = tool.with_raw_output_schema(object(output));
    }
    tool
}

/// A tool result for a model to read.
fn result(outcome: &CallOutcome) -> CallToolResult {
    let text = vec![ContentBlock::text(outcome.text())];
    match outcome {
        CallOutcome::Done { output, .. } => {
            let mut r = CallToolResult::success(text);
            if output.is_object() {
                r.structured_content = Some(output.clone());
            }
            r
        }
        CallOutcome::Failed { .. } | CallOutcome::Pending { .. } => {
            let mut r = CallToolResult::error(text);
            // The details for programs; a pending run is an error only in that it has no output yet.
            r.structured_content = Some(outcome.json());
            r
        }
    }
}

impl ServerHandler for McpServer {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("weft", env!("CARGO_PKG_VERSION")))
            .with_instructions(
                "Tools of a Weft hub: each one runs a workflow that acts on the company's systems. Arguments are checked against each tool's input schema; a result with isError explains what went wrong.",
            )
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let who = identity(&context);
        let tools = tools::list(&self.engine, who.as_ref())
            .into_iter()
            .map(mcp_tool)
            .collect();
        Ok(ListToolsResult::with_all_items(tools))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let arguments = Value::Object(request.arguments.unwrap_or_default());
        let key = request
            .meta
            .as_ref()
            .and_then(|m| m.get(IDEMPOTENCY_META))
            .or_else(|| context.meta.get(IDEMPOTENCY_META))
            .and_then(Value::as_str)
            .map(String::from);
        // Progress goes out in order, and before the result, through one forwarding task.
        let token = context.meta.get_progress_token();
        let (notes, mut pending) = tokio::sync::mpsc::unbounded_channel::<tools::Progress>();
        let forward = token.map(|token| {
            let peer = context.peer.clone();
            tokio::spawn(async move {
                while let Some(p) = pending.recv().await {
                    let note = ProgressNotificationParam::new(token.clone(), f64::from(p.count))
                        .with_message(p.message);
                    let _ = peer.notify_progress(note).await;
                }
            })
        });
        let progress = move |p: tools::Progress| {
            let _ = notes.send(p);
        };
        let who = identity(&context);
        let call = tools::call(
            &self.engine,
            who.as_ref(),
            &request.name,
            arguments,
            key,
            progress,
        );
        let outcome = tokio::select! {
            outcome = call => outcome,
            () = context.ct.cancelled() => {
                return Err(ErrorData::internal_error("the client cancelled the call; its run goes on", None));
            }
        };
        if let Some(forward) = forward {
            let _ = forward.await;
        }
        match outcome {
            Ok(outcome) => Ok(result(&outcome).into()),
            Err(ToolError::Call(ToolCallError::UnknownTool { name, hint })) => Err(
                ErrorData::invalid_params(format!("there is no tool named `{name}`{hint}"), None),
            ),
            // What the model can correct or should read is a tool result, not a protocol error.
            Err(ToolError::Call(ToolCallError::Engine(
                e @ (EngineError::InvalidInput { .. }
                | EngineError::BadIdempotencyKey
                | EngineError::KeyReused { .. }),
            ))) => {
                let mut r = CallToolResult::error(vec![ContentBlock::text(e.to_string())]);
                if let EngineError::InvalidInput { problems, .. } = &e {
                    let list = weft_core::tool::problems_json(problems);
                    r.structured_content = Some(json!({ "problems": list }));
                }
                Ok(r.into())
            }
            Err(e @ (ToolError::BadArguments(_) | ToolError::Failed(_))) => {
                Ok(CallToolResult::error(vec![ContentBlock::text(e.to_string())]).into())
            }
            Err(e) => Err(ErrorData::internal_error(e.to_string(), None)),
        }
    }
}
