//! One poll of a polling trigger: call the API with the current cursor, turn the items it returns
//! into runs, and work out the next cursor.
//!
//! Nothing is committed here. The caller (the hub's poll task) commits the runs and the cursor
//! together with [`Engine::accept`], so that a crash keeps both or neither. The request goes through
//! the engine's live connectors, so it has the connection's settings, credentials and timeout.

use serde_json::{Value, json};
use weft_connectors::{ActionError, Call};
use weft_core::trigger::PollTrigger;
use weft_core::{Template, Val, ValMap, Workflow, json_kind, json_to_val, val_to_json};
use weft_store::NewRun;

use crate::{Engine, new_run, view};

/// What one poll produced.
#[derive(Debug)]
pub struct Polled {
    /// One run per item, each with the idempotency key `poll:<key>`; the store starts only those
    /// whose key no earlier run of the workflow carries.
    pub runs: Vec<NewRun>,
    /// The cursor to commit with the runs.
    pub cursor: Value,
}

/// Why a poll produced nothing. Either way nothing is committed and the next poll tries again.
#[derive(Debug, thiserror::Error)]
pub enum PollError {
    /// The request failed.
    #[error("{connection}.{action} failed: {source}")]
    Request {
        /// The connection called.
        connection: String,
        /// The action called.
        action: String,
        /// The connector's error.
        source: Box<ActionError>,
    },
    /// An expression failed or the response did not have the expected shape.
    #[error("{0}")]
    Data(String),
}

impl PollError {
    /// A short, stable label for metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            PollError::Request { .. } => "request_failed",
            PollError::Data(_) => "bad_data",
        }
    }
}

fn key(name: &str) -> Val {
    Val::from(name.to_string())
}

async fn eval(
    engine: &Engine,
    template: &Template,
    context: &ValMap,
    what: &str,
) -> Result<Value, PollError> {
    let value = engine
        .evaluate(template, &Val::obj(context.clone()))
        .await
        .map_err(|e| PollError::Data(format!("{what}: {e}")))?;
    val_to_json(&value).map_err(|e| PollError::Data(format!("{what}: {e}")))
}

impl Engine {
    /// Polls once for `workflow`, starting from `cursor` (the last committed one, or `null`).
    pub async fn poll(
        &self,
        workflow: &Workflow,
        poll: &PollTrigger,
        cursor: &Value,
    ) -> Result<Polled, PollError> {
        let current = self.inner.current();
        let limits = &current.project.settings.limits;
        let mut vars = current.project.settings.vars.clone();
        vars.extend(workflow.vars.clone());
        let mut context = ValMap::default();
        context.insert(key("cursor"), json_to_val(cursor));
        context.insert(key("vars"), json_to_val(&Value::Object(vars)));
        context.insert(key("env"), current.env.clone());

        let input = eval(self, &poll.with, &context, "`with`").await?;
        let request_error = |source: ActionError| PollError::Request {
            connection: poll.connection.clone(),
            action: poll.action.clone(),
            source: Box::new(source),
        };
        let connector = current.registry.get(&poll.connection).ok_or_else(|| {
            request_error(ActionError::fatal(format!(
                "the connection `{}` is not defined in weft.yaml any more",
                poll.connection
            )))
        })?;
        let now = self.inner.clock.now();
        let idempotency_key = format!("poll:{}:{now}", workflow.name);
        let response = connector
            .call(Call {
                action: &poll.action,
                input,
                idempotency_key: &idempotency_key,
                max_output_bytes: limits.max_output_bytes,
            })
            .await
            .map_err(request_error)?;
        context.insert(key("response"), json_to_val(&response));

        let items = match eval(
            self,
            &Template::Expr(poll.items.clone()),
            &context,
            "`items`",
        )
        .await?
        {
            Value::Null => Vec::new(),
            Value::Array(items) => items,
            other => {
                return Err(PollError::Data(format!(
                    "`items` must yield a list, got {}",
                    json_kind(&other)
                )));
            }
        };
        if items.len() as u64 > limits.max_for_each_items {
            return Err(PollError::Data(format!(
                "one poll returned {} items, more than limits.max_for_each_items ({}); page the request, nothing was started",
                items.len(),
                limits.max_for_each_items
            )));
        }

        let polled_at = view::time(now);
        let mut runs = Vec::with_capacity(items.len());
        for (index, item) in items.iter().enumerate() {
            let mut item_context = context.clone();
            item_context.insert(key("item"), json_to_val(item));
            item_context.insert(key("index"), json_to_val(&json!(index)));
            let item_key = match eval(self, &poll.key, &item_context, "`key`").await? {
                Value::String(s) if !s.is_empty() => s,
                Value::Number(n) => n.to_string(),
                other => {
                    return Err(PollError::Data(format!(
                        "`key` of item {index} is {}; every item needs a key of text or a number, so that it runs once",
                        match other {
                            Value::String(_) => "empty text".to_string(),
                            other => json_kind(&other).to_string(),
                        }
                    )));
                }
            };
            runs.push(NewRun {
                idempotency_key: Some(format!("poll:{item_key}")),
                ..new_run(
                    workflow,
                    json!({"type": "poll", "key": item_key, "polled_at": polled_at}),
                    item.clone(),
                    now,
                )
            });
        }

        let next = match &poll.cursor {
            None => cursor.clone(),
            Some(expr) => {
                context.insert(key("items"), json_to_val(&Value::Array(items)));
                match eval(self, &Template::Expr(expr.clone()), &context, "`cursor`").await? {
                    Value::Null => cursor.clone(),
                    next => next,
                }
            }
        };
        Ok(Polled { runs, cursor: next })
    }
}
