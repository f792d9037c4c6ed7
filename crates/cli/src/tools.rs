//! `weft mcp` (the project's tools over MCP on stdin and stdout, with the engine running their
//! runs in this process) and `weft tools export` (tool definitions in the vendors'
//! function-calling formats).

use std::path::Path;

use weft_engine::Until;
use weft_store::ClaimScope;

use crate::{CliError, CmdResult, exit, setup};

/// The function-calling formats `weft tools export` writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum ExportFormat {
    /// OpenAI's `tools` array: `{type: function, function: {name, description, parameters}}`.
    Openai,
    /// Anthropic's `tools` array: `{name, description, input_schema}`.
    Anthropic,
    /// The OpenAPI 3.1 document that `GET /api/tools/openapi.json` serves.
    Openapi,
}

/// Prints the project's tool definitions in `format`.
pub(crate) fn export(dir: &Path, format: ExportFormat, server: &str) -> CmdResult {
    let loaded = setup::load(dir)?;
    let defs = weft_core::tool::definitions(&loaded.project, loaded.project.has_kb);
    let doc = match format {
        ExportFormat::Openai => weft_core::tool::openai(&defs),
        ExportFormat::Anthropic => weft_core::tool::anthropic(&defs),
        ExportFormat::Openapi => weft_core::tool::openapi(&defs, server),
    };
    println!(
        "{}",
        serde_json::to_string_pretty(&doc).map_err(CliError::internal)?
    );
    Ok(exit::OK)
}

/// Serves the project's tools over MCP on stdio until the client disconnects. Runs execute here;
/// a run left unfinished (a waiting approval) continues at the next start of any Weft process on
/// this project.
pub(crate) async fn mcp(dir: &Path) -> CmdResult {
    let loaded = setup::load(dir)?;
    let engine = setup::engine(&loaded).await?;
    let drive = {
        let engine = engine.clone();
        tokio::spawn(async move { engine.drive(ClaimScope::All, Until::Shutdown).await })
    };
    let served = weft_server::mcp::McpServer::new(engine.clone())
        .serve_stdio()
        .await;
    engine.shutdown();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(10), drive).await;
    served.map_err(|e| CliError::internal(anyhow::anyhow!(e)))?;
    Ok(exit::OK)
}
