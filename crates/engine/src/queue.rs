//! One broker message of a `queue` trigger made into a run: the payload read as the trigger's
//! format says, `.trigger` from what the broker tells, and the de-duplication key.
//!
//! Nothing is committed here and nothing is acknowledged: the hub's queue task commits the run with
//! [`Engine::accept`] and only then acknowledges the message, or rejects it when this says the
//! message cannot be read.

use serde_json::{Map, Value, json};
use weft_core::trigger::{Format, QueueTrigger};
use weft_core::{Val, ValMap, Workflow, json_kind, json_to_val, val_to_json};
use weft_store::NewRun;

use crate::{Engine, new_run, view};

impl Engine {
    /// The run of one message, or why the message cannot be read (the hub then rejects it). `id`
    /// is the broker's message id, if it has one that survives redelivery.
    pub async fn queue_run(
        &self,
        workflow: &Workflow,
        queue: &QueueTrigger,
        payload: &[u8],
        meta: &Map<String, Value>,
        id: Option<&str>,
    ) -> Result<NewRun, String> {
        let input = match queue.format {
            Format::Json => serde_json::from_slice::<Value>(payload)
                .map_err(|e| format!("the payload is not JSON ({e})"))?,
            Format::Text => Value::String(
                String::from_utf8(payload.to_vec())
                    .map_err(|_| "the payload is not UTF-8 text".to_string())?,
            ),
        };
        let now = self.inner.clock.now();
        let mut trigger = Map::new();
        trigger.insert("type".into(), json!("queue"));
        trigger.insert("connection".into(), json!(queue.connection));
        trigger.insert("id".into(), json!(id));
        trigger.insert("received_at".into(), json!(view::time(now)));
        for (k, v) in meta {
            trigger.entry(k.clone()).or_insert_with(|| v.clone());
        }
        let trigger = Value::Object(trigger);
        let key = match &queue.key {
            None => id.map(str::to_string),
            Some(template) => {
                let mut context = ValMap::default();
                context.insert(Val::from("message".to_string()), json_to_val(&input));
                context.insert(Val::from("trigger".to_string()), json_to_val(&trigger));
                let value = self
                    .evaluate(template, &Val::obj(context))
                    .await
                    .map_err(|e| format!("`key`: {e}"))
                    .and_then(|v| val_to_json(&v).map_err(|e| format!("`key`: {e}")))?;
                match value {
                    Value::Null => None,
                    Value::String(s) if !s.is_empty() => Some(s),
                    Value::Number(n) => Some(n.to_string()),
                    other => {
                        return Err(format!(
                            "`key` is {}; it must be text, a number or null",
                            match other {
                                Value::String(_) => "empty text",
                                ref other => json_kind(other),
                            }
                        ));
                    }
                }
            }
        };
        Ok(NewRun {
            idempotency_key: key.map(|k| format!("queue:{k}")),
            ..new_run(workflow, trigger, input, now)
        })
    }
}
