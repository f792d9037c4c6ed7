//! The knowledge base as the built-in `kb` connection: `uses: kb.search` steps and the `kb_search`
//! tool reach the project's `kb/` folder ([`weft_kb::Library`]) through this adapter, which the
//! composition root adds to the engine's connectors.

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::{Value, json};
use weft_connectors::{ActionError, Call, Connector};
use weft_kb::{DEFAULT_MIN_SCORE, Library};

/// Most passages one search returns.
const MAX_LIMIT: u64 = 20;

/// The `kb` connection of a project.
pub(crate) struct KbConnector {
    library: Arc<Library>,
}

impl KbConnector {
    pub(crate) fn new(library: Library) -> KbConnector {
        KbConnector {
            library: Arc::new(library),
        }
    }
}

#[async_trait]
impl Connector for KbConnector {
    async fn call(&self, call: Call<'_>) -> Result<Value, ActionError> {
        if call.action != "search" {
            return Err(ActionError::fatal(format!(
                "the kb connection has no action `{}`; its action is search",
                call.action
            )));
        }
        let input = &call.input;
        let query = match input.get("query") {
            Some(Value::String(q)) => q.clone(),
            Some(other) => {
                return Err(ActionError::fatal(format!(
                    "`query` must be a string, found {}",
                    weft_core::json_kind(other)
                )));
            }
            None => return Err(ActionError::fatal("kb.search needs `query`")),
        };
        let limit = match input.get("limit") {
            None | Some(Value::Null) => 3,
            Some(v) => match v.as_u64() {
                Some(n) if (1..=MAX_LIMIT).contains(&n) => n as usize,
                _ => {
                    return Err(ActionError::fatal(format!(
                        "`limit` must be a whole number from 1 to {MAX_LIMIT}, found {v}"
                    )));
                }
            },
        };
        let min_score = match input.get("min_score") {
            None | Some(Value::Null) => DEFAULT_MIN_SCORE,
            Some(v) => match v.as_f64() {
                Some(s) if s >= 0.0 => s as f32,
                _ => {
                    return Err(ActionError::fatal(format!(
                        "`min_score` must be a number of at least 0, found {v}"
                    )));
                }
            },
        };
        // A search may first re-index changed files: keep that off the async workers.
        let library = self.library.clone();
        let hits = tokio::task::spawn_blocking(move || library.ask(&query, limit, min_score))
            .await
            .map_err(|e| ActionError::fatal(format!("the knowledge base search stopped: {e}")))?
            .map_err(|e| ActionError::fatal(format!("the knowledge base cannot answer: {e}")))?;
        Ok(json!({
            "matched": hits.matched,
            "passages": hits.passages,
            "best_score": hits.best_score,
        }))
    }
}
