//! The JSON Schemas (draft 2020-12) of the workflow file format and of connector definitions,
//! printed by `weft schema` (and `weft schema --connector`) so that editors can validate and
//! complete `workflows/*.yaml` and `connectors/*.yaml`.
//!
//! The schema is written by hand next to the reader in [`crate::workflow`]; tests keep the two in
//! step: every key the reader accepts is in the schema and the other way round, and every example
//! workflow validates.

use serde_json::{Value, json};

const EXPRESSION: &str = r"^\s*\$\{\{[\s\S]*\}\}\s*$";
const DURATION: &str = r"^([0-9]+(ms|s|m|h|d))+$";

/// The schema as a JSON value.
pub fn workflow_schema() -> Value {
    let duration = json!({
        "type": "string",
        "pattern": DURATION,
        "description": "A duration with units: 500ms, 30s, 5m, 1h30m, 2d.",
        "examples": ["30s", "500ms", "1h"]
    });
    let expression = json!({
        "type": "string",
        "pattern": EXPRESSION,
        "description": "A jq expression in ${{ … }}, evaluated on the run context {trigger, input, steps, vars, run, env}."
    });
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "Weft workflow",
        "description": "A Weft workflow: one trigger, an ordered list of steps and an optional output. Strings may hold ${{ … }} jq expressions.",
        "type": "object",
        "additionalProperties": false,
        "required": ["trigger", "steps"],
        "properties": {
            "name": {
                "type": "string",
                "pattern": "^[A-Za-z_][A-Za-z0-9_-]*$",
                "description": "The workflow's name; defaults to the file name without .yaml."
            },
            "description": { "type": "string", "description": "What the workflow is for." },
            "trigger": { "$ref": "#/$defs/trigger" },
            "vars": {
                "type": "object",
                "description": "Constants available as .vars, over the project's vars."
            },
            "steps": { "$ref": "#/$defs/steps" },
            "output": {
                "description": "The run's output, usually an expression over .steps. Without it, the output of the last top-level step that ran."
            }
        },
        "$defs": {
            "expression": expression,
            "duration": duration,
            "trigger": {
                "description": "What starts a run: `manual` (weft run, the API, or a call step), `webhook` (POST /hooks/<path>), `schedule` (cron), `poll` (an HTTP API or a database asked for new items), `queue` (messages from NATS JetStream, RabbitMQ, MQTT or Redis streams) or `tool` (a chatbot calls the workflow over MCP or HTTP).",
                "oneOf": [
                    { "enum": ["manual", "webhook"] },
                    {
                        "type": "object",
                        "additionalProperties": false,
                        "required": ["manual"],
                        "properties": { "manual": { "type": ["object", "null"], "additionalProperties": false } }
                    },
                    {
                        "type": "object",
                        "additionalProperties": false,
                        "required": ["webhook"],
                        "properties": { "webhook": { "$ref": "#/$defs/webhook" } }
                    },
                    {
                        "type": "object",
                        "additionalProperties": false,
                        "required": ["schedule"],
                        "properties": { "schedule": { "$ref": "#/$defs/schedule" } }
                    },
                    {
                        "type": "object",
                        "additionalProperties": false,
                        "required": ["poll"],
                        "properties": { "poll": { "$ref": "#/$defs/poll" } }
                    },
                    {
                        "type": "object",
                        "additionalProperties": false,
                        "required": ["queue"],
                        "properties": { "queue": { "$ref": "#/$defs/queue" } }
                    },
                    {
                        "type": "object",
                        "additionalProperties": false,
                        "required": ["tool"],
                        "properties": { "tool": { "$ref": "#/$defs/tool" } }
                    }
                ]
            },
            "tool": {
                "type": "object",
                "additionalProperties": false,
                "required": ["description"],
                "description": "A chatbot calls the workflow as a tool named after it, over MCP (/mcp, weft mcp) or HTTP (POST /api/tools/<name>). Arguments are checked against `input` before any run starts.",
                "properties": {
                    "description": { "type": "string", "minLength": 1, "description": "What the tool does, for the model that decides whether to call it." },
                    "title": { "type": "string", "description": "A short name for people." },
                    "input": { "type": "object", "description": "JSON Schema of the arguments, with `type: object`. Default: an object with no properties." },
                    "output": { "type": "object", "description": "JSON Schema of the run's output, with `type: object`; an output that does not match is a tool error." },
                    "wait": { "$ref": "#/$defs/duration", "description": "How long a call waits for its run before answering that it is still going (1s to 15m, default 30s)." }
                }
            },
            "queue": {
                "type": "object",
                "required": ["connection"],
                "description": "Each message of a broker starts a run, acknowledged once the run is committed. Besides these keys, the connection's type has its own: nats (stream, subject, consumer, deliver, ack_wait), amqp (queue, prefetch, dead_letter_queue), mqtt (topic, client_id), redis (stream, group, consumer, start, claim_after, field).",
                "properties": {
                    "connection": { "type": "string", "description": "A connection of type nats, amqp, mqtt or redis in weft.yaml." },
                    "format": { "enum": ["json", "text"], "default": "json", "description": "How the payload becomes .input; a message that cannot be read so is rejected with a logged reason." },
                    "key": { "type": "string", "description": "De-duplication key, ${{ }} over {message, trigger}. Default: the broker's message id where it has one." }
                }
            },
            "webhook": {
                "type": ["object", "null"],
                "additionalProperties": false,
                "properties": {
                    "uses": { "type": "string", "description": "A connector's webhook trigger, `<connection>.<trigger>`: its signature preset, with the connection's `webhook_secret`." },
                    "input": { "type": "object", "description": "A JSON Schema the body must match; a body that does not gets 422 with every problem and starts nothing." },
                    "path": { "type": "string", "description": "Where the hook listens, below /hooks/. Default: the workflow's name." },
                    "signature": {
                        "type": "object",
                        "additionalProperties": false,
                        "required": ["preset", "secret"],
                        "description": "How requests prove they come from the sender; a request without a valid signature gets 401 and starts nothing.",
                        "properties": {
                            "preset": { "enum": ["standard-webhooks", "github", "stripe", "shopify", "slack", "zendesk", "hmac"] },
                            "secret": { "$ref": "#/$defs/secret" },
                            "tolerance": { "$ref": "#/$defs/duration", "default": "5m", "description": "How far a signed timestamp may be from the hub's clock (standard-webhooks, stripe, slack)." },
                            "header": { "type": "string", "default": "X-Signature", "description": "hmac: the header holding the signature." },
                            "prefix": { "type": "string", "default": "", "description": "hmac: text before the signature, such as `sha256=`." },
                            "encoding": { "enum": ["hex", "base64"], "default": "hex", "description": "hmac: how the signature is written." }
                        }
                    },
                    "dedupe": { "type": ["string", "boolean"], "description": "What identifies a delivery, so a sender's retry starts no second run: a header name, or ${{ }} over {headers, input}; false turns it off. Default from the preset." },
                    "respond": { "enum": ["async", "sync"], "default": "async", "description": "async: 202 {run_id} once the event is committed. sync: the run's output when it finishes in time." },
                    "timeout": { "$ref": "#/$defs/duration", "default": "10s", "description": "sync: how long to wait for the run before answering 202." },
                    "max_body_bytes": { "type": "integer", "minimum": 1, "maximum": 67108864, "default": 1048576, "description": "Largest request body; a larger one gets 413." }
                }
            },
            "schedule": {
                "type": "object",
                "additionalProperties": false,
                "required": ["cron"],
                "properties": {
                    "cron": { "type": "string", "description": "Five fields (minute hour day-of-month month day-of-week) or six with seconds first." },
                    "timezone": { "type": "string", "default": "UTC", "description": "IANA time zone the expression is read in, such as Europe/Berlin." },
                    "missed": { "enum": ["skip", "once"], "default": "skip", "description": "Slots that fell due while the hub was down: forget them, or run once for the latest." },
                    "overlap": { "enum": ["allow", "skip", "queue"], "default": "allow", "description": "A slot that falls due while the previous run is unfinished: run anyway, skip it, or run when the previous one finishes." }
                }
            },
            "poll": {
                "type": "object",
                "additionalProperties": false,
                "required": ["every", "uses", "items", "key"],
                "properties": {
                    "every": { "$ref": "#/$defs/duration", "description": "Time between polls; at least 1s." },
                    "uses": { "type": "string", "description": "The action called, as in a step: `<connection>.<action>`, such as `shop.request`." },
                    "with": { "type": ["object", "string"], "description": "The action's inputs; expressions read {cursor, vars, env}." },
                    "items": { "$ref": "#/$defs/expression", "description": "The new items, a list: one expression over {response, cursor, vars, env}." },
                    "key": { "type": "string", "description": "Each item's de-duplication key, ${{ }} over {item, index, response, cursor, vars, env}; one run per key, ever." },
                    "cursor": { "$ref": "#/$defs/expression", "description": "The next poll's .cursor, over {items, response, cursor, vars, env}; null keeps the previous one. Committed together with the runs." },
                    "listen": { "type": "string", "description": "postgres only: a LISTEN channel; a NOTIFY on it makes the next poll happen at once." }
                }
            },
            "secret": {
                "type": "object",
                "additionalProperties": false,
                "required": ["env"],
                "properties": { "env": { "type": "string", "description": "An environment variable of the Weft process." } },
                "description": "A credential is never written in a file; it is read from the environment when used."
            },
            "steps": {
                "type": "array",
                "minItems": 1,
                "items": { "$ref": "#/$defs/step" }
            },
            "retry": {
                "description": "How often the step may start (crashes included) and how long to wait in between. A number is shorthand for attempts.",
                "oneOf": [
                    { "type": "integer", "minimum": 1, "maximum": 100 },
                    {
                        "type": "object",
                        "additionalProperties": false,
                        "properties": {
                            "attempts": { "type": "integer", "minimum": 1, "maximum": 100, "default": 3, "description": "Most times the step may start, the first attempt included." },
                            "backoff": { "enum": ["exponential", "fixed"], "default": "exponential", "description": "How the delay grows between attempts." },
                            "initial": { "$ref": "#/$defs/duration", "default": "1s", "description": "Delay before the second attempt." },
                            "max": { "$ref": "#/$defs/duration", "default": "30s", "description": "Longest delay between attempts (a longer Retry-After is honoured up to 1h)." },
                            "jitter": { "type": "boolean", "default": true, "description": "Spread each delay randomly between half and all of it." }
                        }
                    }
                ]
            },
            "step": step_schema()
        }
    })
}

/// The schema of one step.
fn step_schema() -> Value {
    json!({
        "type": "object",
        "required": ["id"],
        "additionalProperties": false,
        "properties": {
            "id": {
                "type": "string",
                "pattern": "^[A-Za-z_][A-Za-z0-9_]*$",
                "description": "Unique in the workflow; the step's output is .steps.<id>."
            },
            "if": {
                "$ref": "#/$defs/expression",
                "description": "With `then`: the condition of an if step. Otherwise: the step runs only when this is true."
            },
            "retry": { "$ref": "#/$defs/retry" },
            "timeout": { "$ref": "#/$defs/duration", "description": "Longest time one attempt of a uses step may take." },
            "on_error": {
                "type": "string",
                "description": "When the step fails for good: `fail` (default), `continue`, or the id of a later step of the same list to go to. Its output is then {error: {…}}.",
                "examples": ["fail", "continue"]
            },
            "uses": {
                "type": "string",
                "pattern": "^[A-Za-z_][A-Za-z0-9_-]*\\.[A-Za-z_][A-Za-z0-9_]*$",
                "description": "<connection>.<action>: calls an action of a connection defined in weft.yaml."
            },
            "with": { "description": "Inputs of a uses step (a mapping), or the input of a called workflow." },
            "map": { "description": "Computes the step's output, usually with ${{ … }}." },
            "then": { "$ref": "#/$defs/steps", "description": "Steps run when `if` is true." },
            "else": { "$ref": "#/$defs/steps", "description": "Steps run when `if` is false." },
            "switch": { "description": "The value that picks one of `cases` (strings as they are, other scalars as JSON text)." },
            "cases": {
                "type": "object",
                "additionalProperties": { "$ref": "#/$defs/steps" },
                "description": "Steps by value of `switch`."
            },
            "default": { "$ref": "#/$defs/steps", "description": "Steps when no case matches." },
            "for_each": { "description": "A list (usually an expression); `steps` run once per item with .item and .index." },
            "concurrency": { "type": "integer", "minimum": 1, "maximum": 1000, "default": 1, "description": "How many items of for_each run at the same time." },
            "steps": { "$ref": "#/$defs/steps", "description": "The steps for_each runs for each item." },
            "wait": {
                "description": "Pauses the run durably: a duration, or {for: duration} or {until: time}.",
                "oneOf": [
                    { "$ref": "#/$defs/duration" },
                    {
                        "type": "object",
                        "additionalProperties": false,
                        "properties": {
                            "for": { "$ref": "#/$defs/duration" },
                            "until": { "description": "An RFC 3339 time or Unix seconds, usually an expression." }
                        },
                        "oneOf": [{ "required": ["for"] }, { "required": ["until"] }]
                    }
                ]
            },
            "call": { "type": "string", "description": "Runs another workflow of the project as a child run; its output is this step's output." },
            "fail": { "description": "Fails the run with this message." },
            "approval": {
                "description": "Pauses the run until POST /api/approvals/<id> answers or the timeout passes. Output: {approved, decision, data, by, answered_at}.",
                "oneOf": [
                    { "type": "string", "description": "The message; short for {message: …}." },
                    {
                        "type": "object",
                        "additionalProperties": false,
                        "required": ["message"],
                        "properties": {
                            "message": { "type": "string", "description": "What the approver reads." },
                            "data": { "description": "What they decide on, any JSON." },
                            "timeout": { "$ref": "#/$defs/duration", "description": "How long the approval stays open; default until answered." },
                            "on_timeout": { "enum": ["reject", "approve", "fail"], "default": "reject", "description": "What an approval nobody answered in time means." }
                        }
                    }
                ]
            }
        },
        "oneOf": [
            { "required": ["uses"] },
            { "required": ["map"] },
            { "required": ["if", "then"] },
            { "required": ["switch", "cases"] },
            { "required": ["for_each", "steps"] },
            { "required": ["wait"] },
            { "required": ["call"] },
            { "required": ["fail"] },
            { "required": ["approval"] }
        ]
    })
}

/// The workflow schema completed for `project`: `uses` offers each of its connections' actions
/// (and the built-in `state` and `kb` ones), and the `with:` of each action offers its inputs,
/// with their JSON Schemas where the action declares them, and requires the required ones.
pub fn workflow_schema_for(project: &crate::Project) -> Value {
    let mut schema = workflow_schema();
    let mut choices = Vec::new();
    let mut rules = Vec::new();
    let mut connections: Vec<(String, crate::Spec)> = project
        .connections
        .values()
        .filter_map(|c| {
            project
                .catalog
                .get(&c.type_name)
                .map(|spec| (c.name.clone(), spec.clone()))
        })
        .collect();
    for name in crate::catalog::BUILTIN_CONNECTIONS {
        if let Some(spec) = crate::catalog::builtin(name) {
            connections.push((name.to_string(), spec));
        }
    }
    for (connection, spec) in &connections {
        for action in spec.actions() {
            let uses = format!("{connection}.{}", action.name());
            let mut properties = serde_json::Map::new();
            for input in action.inputs() {
                let declared = match (spec, action) {
                    (crate::Spec::Defined(_), crate::catalog::Action::Defined(a)) => {
                        a.inputs.iter().find(|i| i.name == input).map(|i| {
                            let mut s = i.schema.clone();
                            if let (Some(obj), Some(d)) = (s.as_object_mut(), &i.description) {
                                obj.entry("description").or_insert(json!(d));
                            }
                            s
                        })
                    }
                    _ => None,
                };
                properties.insert(input.to_string(), declared.unwrap_or(json!({})));
            }
            choices.push(json!({ "const": uses, "description": action.summary() }));
            rules.push(json!({
                "if": { "properties": { "uses": { "const": uses } }, "required": ["uses"] },
                "then": { "properties": { "with": { "anyOf": [
                    { "$ref": "#/$defs/expression" },
                    {
                        "type": "object",
                        "additionalProperties": false,
                        "properties": properties,
                        "required": action.required(),
                    }
                ] } } }
            }));
        }
    }
    let step = &mut schema["$defs"]["step"];
    step["properties"]["uses"]["anyOf"] = Value::Array(choices);
    step["allOf"] = Value::Array(rules);
    schema
}

/// The schema of a connector definition (`connectors/*.yaml`, see [`crate::definition`]).
pub fn connector_schema() -> Value {
    let text = json!({ "type": "string" });
    let triggers = json!({
        "type": "object",
        "description": "What workflows can start from (`uses: <connection>.<trigger>` in a webhook or poll trigger).",
        "propertyNames": { "pattern": "^[A-Za-z_][A-Za-z0-9_]*$" },
        "additionalProperties": {
            "type": "object",
            "additionalProperties": false,
            "required": ["summary"],
            "properties": {
                "summary": text,
                "docs": text,
                "webhook": {
                    "type": "object",
                    "additionalProperties": false,
                    "description": "The vendor's webhook: its signature preset (the secret is each connection's `webhook_secret`) and the header that identifies a delivery.",
                    "properties": {
                        "signature": { "type": "object", "description": "As a webhook trigger's `signature`, without `secret`." },
                        "dedupe": { "type": ["string", "boolean"] },
                        "subscribe": {
                            "type": "object",
                            "required": ["action", "id"],
                            "description": "How the hub registers the webhook with the vendor (an action of this definition, `with` over {url, workflow}); `id` points at the subscription's id in its output.",
                            "properties": { "action": { "type": "string" }, "with": {}, "id": { "type": "string" } }
                        },
                        "unsubscribe": {
                            "type": "object",
                            "required": ["action"],
                            "description": "How the hub removes it (`with` over {id, url, workflow}).",
                            "properties": { "action": { "type": "string" }, "with": {} }
                        }
                    }
                },
                "poll": {
                    "type": "object",
                    "additionalProperties": false,
                    "required": ["action"],
                    "description": "An action asked for new items: a poll trigger's settings.",
                    "properties": {
                        "action": { "type": "string" },
                        "every": { "type": "string" },
                        "with": {},
                        "items": { "type": "string" },
                        "key": { "type": "string" },
                        "cursor": { "type": "string" }
                    }
                }
            }
        }
    });
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "Weft connector definition",
        "description": "An API described as data: its base URL, how connections authenticate, and its actions as HTTP requests.",
        "type": "object",
        "additionalProperties": false,
        "required": ["connector", "summary", "base_url", "actions"],
        "properties": {
            "connector": {
                "type": "string",
                "pattern": "^[A-Za-z_][A-Za-z0-9_]*$",
                "description": "The `type:` of connections of this connector."
            },
            "summary": { "type": "string", "description": "One line saying what it talks to." },
            "docs": { "type": "string", "description": "Where the API is documented." },
            "base_url": {
                "type": "string",
                "pattern": "^https?://",
                "description": "The API's base URL; `{name}` placeholders are filled from each connection's variables."
            },
            "variables": {
                "type": "object",
                "description": "What each connection sets (as a key of its own) to fill the base URL.",
                "additionalProperties": {
                    "type": "object",
                    "additionalProperties": false,
                    "properties": {
                        "description": text,
                        "default": { "type": "string", "description": "The value when a connection does not set it." }
                    }
                }
            },
            "auth": {
                "type": "array",
                "description": "The `auth.type`s of the http connector that connections may use; a mapping also fixes settings of its type that connections need not repeat, such as an API key's `header`.",
                "items": {
                    "oneOf": [
                        { "enum": crate::definition::AUTH_TYPES },
                        {
                            "type": "object",
                            "required": ["type"],
                            "properties": { "type": { "enum": crate::definition::AUTH_TYPES } }
                        }
                    ]
                }
            },
            "actions": {
                "type": "object",
                "minProperties": 1,
                "propertyNames": { "pattern": "^[A-Za-z_][A-Za-z0-9_]*$" },
                "additionalProperties": { "$ref": "#/$defs/action" }
            },
            "triggers": triggers,
            "rate_limit": {
                "type": "object",
                "additionalProperties": false,
                "description": "The vendor's limit, for connections that do not set their own `rate_limit`.",
                "properties": {
                    "requests": { "type": "integer", "minimum": 1 },
                    "per": { "type": "string", "description": "A duration such as 1s or 10s." },
                    "concurrency": { "type": "integer", "minimum": 1 }
                }
            },
            "retry_on": {
                "type": "array",
                "description": "HTTP statuses after which a call is retried (default 408, 429 and 5xx).",
                "items": { "type": "integer", "minimum": 100, "maximum": 599 }
            },
            "errors": {
                "type": "object",
                "additionalProperties": false,
                "required": ["ok"],
                "description": "Where an API that answers 2xx to a failed call says so.",
                "properties": {
                    "ok": { "type": "string", "description": "A JSON Pointer to a flag that is false when the call failed." },
                    "message": { "type": "string", "description": "A JSON Pointer to what went wrong." }
                }
            }
        },
        "$defs": {
            "action": {
                "type": "object",
                "additionalProperties": false,
                "required": ["summary", "method", "path"],
                "properties": {
                    "summary": text,
                    "docs": text,
                    "method": { "enum": ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "get", "post", "put", "patch", "delete", "head"] },
                    "path": { "type": "string", "pattern": "^/", "description": "After the base URL; `{input}` placeholders take path inputs." },
                    "inputs": {
                        "type": "object",
                        "additionalProperties": { "$ref": "#/$defs/input" }
                    },
                    "response": { "type": "string", "description": "A JSON Pointer into the response body: the part the step returns." },
                    "encoding": { "enum": ["json", "form"], "default": "json", "description": "How body inputs are sent: a JSON object, or a form (nested values as a[b]=…)." },
                    "pagination": {
                        "type": "object",
                        "additionalProperties": false,
                        "required": ["style"],
                        "description": "How the action reads more pages; steps then take `pages` and get {items, pages, complete, next}.",
                        "properties": {
                            "style": { "enum": ["cursor", "link", "next_url", "offset", "page"] },
                            "param": { "type": "string", "description": "The query parameter of the cursor, offset or page number." },
                            "next": { "type": "string", "description": "cursor: a JSON Pointer to the next cursor in a page's body; next_url: to the next page's URL." },
                            "last": { "type": "string", "description": "cursor: a JSON Pointer into a page's last item, whose value is the next cursor (instead of `next`)." },
                            "has_more": { "type": "string", "description": "cursor: a JSON Pointer to a flag that is false on the last page." },
                            "start": { "type": "integer", "description": "page: the first page's number (default 1)." }
                        }
                    }
                }
            },
            "input": {
                "type": "object",
                "additionalProperties": false,
                "required": ["in"],
                "properties": {
                    "in": { "enum": ["path", "query", "header", "body", "whole_body"] },
                    "schema": { "type": "object", "description": "A JSON Schema that literal `with:` values are checked against." },
                    "required": { "type": "boolean", "description": "Whether steps must give it (path inputs always must)." },
                    "description": text
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trigger;
    use crate::workflow::{RETRY_KEYS, STEP_KEYS, WAIT_KEYS, WORKFLOW_KEYS};

    fn keys(v: &Value) -> Vec<String> {
        let mut k: Vec<String> = v["properties"]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect();
        k.sort();
        k
    }

    fn sorted(keys: &[&str]) -> Vec<String> {
        let mut k: Vec<String> = keys.iter().map(|s| s.to_string()).collect();
        k.sort();
        k
    }

    #[test]
    fn a_projects_schema_completes_its_actions_and_checks_their_inputs() {
        let mut sources = crate::Sources::new(
            "weft.yaml",
            "connections:\n  shop: {type: shop, shop: acme}\n",
        );
        sources.add_connector(
            "connectors/shop.yaml",
            "connector: shop\nsummary: s\nbase_url: https://{shop}.example.com\nvariables: {shop: {}}\nactions:\n  get:\n    summary: Reads an order.\n    method: GET\n    path: /orders/{id}\n    inputs: {id: {in: path, schema: {type: integer}}}\n",
        );
        let project = crate::Project::load(&sources, &crate::Catalog::empty()).unwrap();
        let s = workflow_schema_for(&project);
        let offered: Vec<&str> = s["$defs"]["step"]["properties"]["uses"]["anyOf"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|c| c["const"].as_str())
            .collect();
        assert!(offered.contains(&"shop.get"), "{offered:?}");
        assert!(offered.contains(&"state.get"), "{offered:?}");
        let validator = jsonschema::validator_for(&s).unwrap();
        let workflow = |with: &str| {
            crate::yaml::parse(&format!(
                "trigger: manual\nsteps:\n  - id: a\n    uses: shop.get\n    with: {with}\n"
            ))
            .unwrap()
            .to_json()
        };
        assert!(validator.is_valid(&workflow("{id: 7}")));
        assert!(validator.is_valid(&workflow("\"${{ {id: 7} }}\"")));
        assert!(
            !validator.is_valid(&workflow("{id: seven}")),
            "a wrong type"
        );
        assert!(!validator.is_valid(&workflow("{}")), "a missing input");
        assert!(
            !validator.is_valid(&workflow("{id: 7, idd: 8}")),
            "an unknown input"
        );
    }

    #[test]
    fn the_connector_schema_matches_the_reader_and_takes_a_definition() {
        use crate::definition::{ACTION_KEYS, INPUT_KEYS, KEYS, NOT_YET, VARIABLE_KEYS};
        let s = connector_schema();
        let now = |keys: &[&str]| -> Vec<String> {
            let current: Vec<&str> = keys
                .iter()
                .copied()
                .filter(|k| !NOT_YET.contains(k))
                .collect();
            sorted(&current)
        };
        assert_eq!(keys(&s), now(KEYS));
        assert_eq!(keys(&s["$defs"]["action"]), now(ACTION_KEYS));
        assert_eq!(keys(&s["$defs"]["input"]), sorted(INPUT_KEYS));
        assert_eq!(
            keys(&s["properties"]["variables"]["additionalProperties"]),
            sorted(VARIABLE_KEYS)
        );
        let validator = jsonschema::validator_for(&s).unwrap();
        let good = crate::yaml::parse(
            "connector: shop\nsummary: s\nbase_url: https://{shop}.example.com\nvariables: {shop: {}}\nauth: [bearer]\nactions:\n  get:\n    summary: s\n    method: GET\n    path: /orders/{id}\n    inputs: {id: {in: path, schema: {type: integer}}}\n",
        )
        .unwrap()
        .to_json();
        assert!(validator.is_valid(&good));
        let mut bad = good.clone();
        bad["actions"]["get"]["inputs"]["id"]["in"] = json!("cookie");
        assert!(!validator.is_valid(&bad));
    }

    #[test]
    fn schema_keys_match_the_reader() {
        let s = workflow_schema();
        assert_eq!(keys(&s), sorted(WORKFLOW_KEYS));
        let not_yet = ["respond"];
        let step_keys: Vec<&str> = STEP_KEYS
            .iter()
            .copied()
            .filter(|k| !not_yet.contains(k))
            .collect();
        assert_eq!(keys(&s["$defs"]["step"]), sorted(&step_keys));
        assert_eq!(keys(&s["$defs"]["retry"]["oneOf"][1]), sorted(RETRY_KEYS));
        assert_eq!(keys(&s["$defs"]["webhook"]), sorted(trigger::WEBHOOK_KEYS));
        assert_eq!(
            keys(&s["$defs"]["webhook"]["properties"]["signature"]),
            sorted(trigger::SIGNATURE_KEYS)
        );
        assert_eq!(
            keys(&s["$defs"]["schedule"]),
            sorted(trigger::SCHEDULE_KEYS)
        );
        assert_eq!(keys(&s["$defs"]["poll"]), sorted(trigger::POLL_KEYS));
        assert_eq!(keys(&s["$defs"]["queue"]), sorted(trigger::QUEUE_KEYS));
        assert_eq!(keys(&s["$defs"]["tool"]), sorted(crate::tool::TOOL_KEYS));
        assert_eq!(
            keys(&s["$defs"]["step"]["properties"]["approval"]["oneOf"][1]),
            sorted(crate::workflow::APPROVAL_KEYS)
        );
        assert_eq!(
            keys(&s["$defs"]["step"]["properties"]["wait"]["oneOf"][1]),
            sorted(WAIT_KEYS)
        );
    }
}
