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
