//! The knowledge base as the built-in `kb` connection: `uses: kb.search` steps and the `kb_search`
//! tool reach the project's `kb/` folder ([`weft_kb::Library`]) through this adapter, which the
//! composition root adds to the engine's connectors.
//!
//! The index is built on the first search, not when a command starts: `weft runs cancel` does not
//! pay for it, and a file in `kb/` that cannot be read fails the searches (naming the file) until
//! it is fixed, rather than every command of the project.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use serde_json::{Value, json};
use weft_connectors::{ActionError, Call, Connector};
use weft_kb::{DEFAULT_MIN_SCORE, Library};

/// Most passages one search returns.
const MAX_LIMIT: u64 = 20;

/// The `kb` connection of a project.
pub(crate) struct KbConnector {
    shared: Arc<Shared>,
}

struct Shared {
    dir: PathBuf,
    library: Mutex<Option<Arc<Library>>>,
}

impl KbConnector {
    /// The knowledge base in `dir` (the project's `kb/`), opened on the first search.
    pub(crate) fn new(dir: PathBuf) -> KbConnector {
        KbConnector {
            shared: Arc::new(Shared {
                dir,
                library: Mutex::new(None),
            }),
        }
    }
}

impl Shared {
    /// The open library, opening it first if need be (blocking: call off the async workers).
    fn library(&self) -> Result<Arc<Library>, String> {
        let mut slot = self.library.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(library) = slot.as_ref() {
            return Ok(library.clone());
        }
        let library = Arc::new(Library::open(&self.dir).map_err(|e| e.to_string())?);
        *slot = Some(library.clone());
        Ok(library)
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
        // A search may first (re-)index the files: keep that off the async workers.
        let shared = self.shared.clone();
        let hits = tokio::task::spawn_blocking(move || {
            shared.library().and_then(|library| {
                library
                    .ask(&query, limit, min_score)
                    .map_err(|e| e.to_string())
            })
        })
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
