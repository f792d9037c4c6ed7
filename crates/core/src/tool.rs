//! The `tool` trigger: a workflow that a chatbot calls as a typed tool, over MCP or HTTP function
//! calling. This module is the reference of its settings and holds the input check that runs before
//! any run starts.
//!
//! ```yaml
//! trigger:
//!   tool:
//!     description: Look up the status of a customer's order by its number.   # what the model reads
//!     title: Order status                  # optional, for people
//!     input:                               # JSON Schema of the arguments; `type: object`
//!       type: object
//!       required: [order_id]
//!       properties: { order_id: { type: integer, minimum: 1 } }
//!     output:                              # optional JSON Schema of the run's output; `type: object`
//!       type: object
//!       properties: { status: { type: string } }
//!     wait: 30s                            # how long a call waits for its run (default 30s)
//! ```
//!
//! The tool's name is the workflow's name. A call whose arguments do not match `input` is refused
//! with every problem (where and why), and no run starts. A call that outlasts `wait` (a run waiting
//! for an approval, say) answers that the run is still going, with its id; calling again with the
//! same idempotency key returns the same run's result.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use crate::decode::{self, Fields};
use crate::diag::Diagnostics;
use crate::yaml::{Node, Pos};

/// Keys of a `tool` trigger.
pub const TOOL_KEYS: &[&str] = &["description", "title", "input", "output", "wait"];

/// How long a tool call waits for its run by default.
pub const DEFAULT_WAIT: Duration = Duration::from_secs(30);

/// Longest a tool call may be configured to wait for its run.
pub const MAX_WAIT: Duration = Duration::from_secs(15 * 60);

/// Names of tools that Weft itself provides, which no workflow may take.
pub const BUILTIN_TOOLS: &[&str] = &["kb_search", "run_result"];

/// Longest tool name: function-calling APIs accept up to 64 characters.
pub const MAX_TOOL_NAME: usize = 64;

/// A workflow that a chatbot calls as a tool: `trigger: { tool: {…} }`.
#[derive(Clone, Debug, PartialEq)]
pub struct ToolTrigger {
    /// What the tool does, for the model that decides whether to call it.
    pub description: String,
    /// A short name for people.
    pub title: Option<String>,
    /// The arguments' JSON Schema.
    pub input: ToolSchema,
    /// The output's JSON Schema, if declared.
    pub output: Option<ToolSchema>,
    /// How long a call waits for its run before it answers that the run is still going.
    pub wait: Duration,
}

/// A JSON Schema as written in a workflow, compiled once.
#[derive(Clone)]
pub struct ToolSchema {
    schema: Arc<Value>,
    validator: Arc<jsonschema::Validator>,
}

/// One way a value does not match a schema.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SchemaProblem {
    /// Where in the value, as a JSON pointer (empty for the whole value).
    pub path: String,
    /// What is wrong.
    pub message: String,
}

/// `value` with every field its schema marks sensitive (`writeOnly: true` or `x-sensitive: true`)
/// replaced by `"***"`, for the audit log. Fields are followed through `properties`,
/// `additionalProperties`, `patternProperties` (every pattern, to be safe), `items`,
/// `prefixItems`, `allOf`/`anyOf`/`oneOf` and local `$ref`s.
pub fn mask_sensitive(schema: &Value, value: &Value) -> Value {
    mask(schema, schema, value, 0)
}

/// Deepest nesting of schemas followed, against `$ref` cycles.
const MAX_MASK_DEPTH: usize = 32;

fn mask(root: &Value, schema: &Value, value: &Value, depth: usize) -> Value {
    if depth > MAX_MASK_DEPTH {
        return value.clone();
    }
    let schemas = expand(root, schema, 0);
    if schemas
        .iter()
        .any(|s| s["writeOnly"] == true || s["x-sensitive"] == true)
    {
        return json!("***");
    }
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| {
                    let mut out = v.clone();
                    for s in &schemas {
                        let sub = match s["properties"].get(k) {
                            Some(p) => vec![p],
                            None => {
                                let mut subs: Vec<&Value> = s["patternProperties"]
                                    .as_object()
                                    .map(|m| m.values().collect())
                                    .unwrap_or_default();
                                if s["additionalProperties"].is_object() {
                                    subs.push(&s["additionalProperties"]);
                                }
                                subs
                            }
                        };
                        for sub in sub {
                            out = mask(root, sub, &out, depth + 1);
                        }
                    }
                    (k.clone(), out)
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(
            items
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    let mut out = v.clone();
                    for s in &schemas {
                        let sub = match s["prefixItems"].get(i) {
                            Some(p) => p,
                            None => &s["items"],
                        };
                        out = mask(root, sub, &out, depth + 1);
                    }
                    out
                })
                .collect(),
        ),
        other => other.clone(),
    }
}

/// `schema` with its local `$ref` and the branches of `allOf`/`anyOf`/`oneOf`, resolved.
fn expand<'a>(root: &'a Value, schema: &'a Value, depth: usize) -> Vec<&'a Value> {
    if depth > MAX_MASK_DEPTH || !schema.is_object() {
        return Vec::new();
    }
    let mut out = vec![schema];
    if let Some(target) = schema["$ref"]
        .as_str()
        .and_then(|r| r.strip_prefix('#'))
        .and_then(|pointer| root.pointer(pointer))
    {
        out.extend(expand(root, target, depth + 1));
    }
    for key in ["allOf", "anyOf", "oneOf"] {
        for branch in schema[key].as_array().into_iter().flatten() {
            out.extend(expand(root, branch, depth + 1));
        }
    }
    out
}

/// Problems as JSON, for programs: `[{path, message}]`.
pub fn problems_json(problems: &[SchemaProblem]) -> Value {
    problems
        .iter()
        .map(|p| json!({"path": p.path, "message": p.message}))
        .collect()
}

impl std::fmt::Display for SchemaProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "at `{}`: {}", self.path, self.message)
        }
    }
}

impl ToolSchema {
    /// Compiles a schema; the error says what is wrong with it. Remote `$ref`s are not fetched.
    pub fn compile(schema: Value) -> Result<ToolSchema, String> {
        // `format` (email, date-time, uri …) is checked, not only noted.
        let validator = jsonschema::draft202012::options()
            .should_validate_formats(true)
            .build(&schema)
            .map_err(|e| {
                let at = e.schema_path().to_string();
                if at.is_empty() || at == "/" {
                    e.to_string()
                } else {
                    format!("{e} (at `{at}`)")
                }
            })?;
        Ok(ToolSchema {
            schema: Arc::new(schema),
            validator: Arc::new(validator),
        })
    }

    /// The schema as written.
    pub fn schema(&self) -> &Value {
        &self.schema
    }

    /// Every way `value` does not match, in the order the validator finds them.
    pub fn problems(&self, value: &Value) -> Vec<SchemaProblem> {
        self.validator
            .iter_errors(value)
            .map(|e| SchemaProblem {
                path: e.instance_path().to_string(),
                message: e.to_string(),
            })
            .collect()
    }
}

impl PartialEq for ToolSchema {
    fn eq(&self, other: &Self) -> bool {
        self.schema == other.schema
    }
}

impl std::fmt::Debug for ToolSchema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("ToolSchema").field(&self.schema).finish()
    }
}

/// A tool as chatbots see it: what `tools/list`, the tools' OpenAPI document and
/// `weft tools export` describe.
#[derive(Clone, Debug, PartialEq)]
pub struct ToolDef {
    /// The tool's name (the workflow's name, or a built-in tool's).
    pub name: String,
    /// A short name for people.
    pub title: Option<String>,
    /// What the tool does.
    pub description: String,
    /// The arguments' JSON Schema.
    pub input_schema: Value,
    /// The output's JSON Schema, if declared.
    pub output_schema: Option<Value>,
}

/// The built-in `kb_search` tool: the best passages of the project's knowledge base.
pub fn kb_search_def() -> ToolDef {
    ToolDef {
        name: "kb_search".into(),
        title: Some("Search the knowledge base".into()),
        description: "Search the company's knowledge base (FAQ, policies, manuals) for passages that answer a question. Returns the best passages with their title, source file, heading and score; `matched` is false when nothing answers the question well, in which case say so rather than guess.".into(),
        input_schema: json!({
            "type": "object",
            "required": ["query"],
            "properties": {
                "query": {"type": "string", "minLength": 1, "description": "The question or keywords."},
                "limit": {"type": "integer", "minimum": 1, "maximum": 20, "default": 3, "description": "Most passages to return."}
            },
            "additionalProperties": false
        }),
        output_schema: Some(json!({
            "type": "object",
            "required": ["matched", "passages"],
            "properties": {
                "matched": {"type": "boolean"},
                "passages": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {
                            "title": {"type": "string"},
                            "source": {"type": "string"},
                            "heading": {"type": "string"},
                            "text": {"type": "string"},
                            "score": {"type": "number"}
                        }
                    }
                }
            }
        })),
    }
}

/// The built-in `run_result` tool: the result of a run that a tool call left running (waiting for
/// an approval, say), by its id.
pub fn run_result_def() -> ToolDef {
    ToolDef {
        name: "run_result".into(),
        title: Some("Result of an earlier tool call".into()),
        description: "Get the result of an earlier tool call whose run was still going (for example waiting for a person's approval): pass the run_id that call answered with. Waits a while for the run to finish; if it still has not, says so again.".into(),
        input_schema: json!({
            "type": "object",
            "required": ["run_id"],
            "properties": {
                "run_id": {"type": "string", "minLength": 1, "description": "The run id an earlier tool call answered with."}
            },
            "additionalProperties": false
        }),
        output_schema: None,
    }
}

/// The project's tools, sorted by name: every workflow with a `tool` trigger and, with them,
/// `run_result`; `kb_search` when the project has a knowledge base.
pub fn definitions(project: &crate::Project, with_kb: bool) -> Vec<ToolDef> {
    let mut defs: Vec<ToolDef> = project
        .workflows
        .values()
        .filter_map(|w| match &w.trigger {
            crate::Trigger::Tool(t) => Some(ToolDef {
                name: w.name.clone(),
                title: t.title.clone(),
                description: t.description.clone(),
                input_schema: t.input.schema().clone(),
                output_schema: t.output.as_ref().map(|o| o.schema().clone()),
            }),
            _ => None,
        })
        .collect();
    if !defs.is_empty() {
        defs.push(run_result_def());
    }
    if with_kb {
        defs.push(kb_search_def());
    }
    defs.sort_by(|a, b| a.name.cmp(&b.name));
    defs
}

/// Tool definitions in OpenAI's function-calling format (the `tools` of a Chat Completions
/// request).
pub fn openai(defs: &[ToolDef]) -> Value {
    Value::Array(
        defs.iter()
            .map(|d| {
                json!({
                    "type": "function",
                    "function": {
                        "name": d.name,
                        "description": d.description,
                        "parameters": d.input_schema,
                    }
                })
            })
            .collect(),
    )
}

/// Tool definitions in Anthropic's format (the `tools` of a Messages request).
pub fn anthropic(defs: &[ToolDef]) -> Value {
    Value::Array(
        defs.iter()
            .map(|d| {
                json!({
                    "name": d.name,
                    "description": d.description,
                    "input_schema": d.input_schema,
                })
            })
            .collect(),
    )
}

/// An OpenAPI 3.1 document of just the tools, one `POST /api/tools/<name>` each, that an assistant
/// platform can import as actions. `server` is the hub's base URL, such as `https://hub.example.com`.
pub fn openapi(defs: &[ToolDef], server: &str) -> Value {
    let mut paths = serde_json::Map::new();
    for d in defs {
        let output = d
            .output_schema
            .clone()
            .unwrap_or_else(|| json!({"description": "The workflow's output."}));
        paths.insert(
            format!("/api/tools/{}", d.name),
            json!({
                "post": {
                    "operationId": d.name,
                    "summary": d.title.clone().unwrap_or_else(|| d.name.clone()),
                    "description": d.description,
                    "parameters": [{
                        "name": "Idempotency-Key",
                        "in": "header",
                        "required": false,
                        "description": "Calls with the same key return the same run's result instead of starting another run.",
                        "schema": {"type": "string"}
                    }],
                    "requestBody": {
                        "required": true,
                        "content": {"application/json": {"schema": d.input_schema}}
                    },
                    "responses": {
                        "200": {
                            "description": "The run finished: `output` when it succeeded; `is_error` with the step and the reason when it failed.",
                            "content": {"application/json": {"schema": {
                                "type": "object",
                                "required": ["state", "is_error"],
                                "properties": {
                                    "run_id": {"type": ["string", "null"]},
                                    "state": {"type": "string", "description": "succeeded, failed or cancelled"},
                                    "is_error": {"type": "boolean"},
                                    "output": output,
                                    "step": {"type": ["string", "null"], "description": "The step that failed."},
                                    "message": {"type": "string", "description": "Why it failed."}
                                }
                            }}}
                        },
                        "202": {
                            "description": "The run is still going (waiting for an approval, say); call again with the same Idempotency-Key, or call run_result with the run_id, for its result.",
                            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Pending"}}}
                        },
                        "404": {"description": "No such tool.", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
                        "409": {"description": "The Idempotency-Key belongs to a call with other arguments.", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
                        "422": {"description": "The arguments do not match the input schema; `details.problems` says where and why. No run started.", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
                    }
                }
            }),
        );
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Weft tools",
            "version": "1",
            "description": "The tools of a Weft hub, for chatbots that call functions over HTTP."
        },
        "servers": [{"url": server}],
        "paths": paths,
        "components": {
            "schemas": {
                "Pending": {
                    "type": "object",
                    "required": ["run_id", "state"],
                    "properties": {
                        "run_id": {"type": "string"},
                        "state": {"type": "string", "description": "queued, running or waiting"},
                        "approval": {"type": ["object", "null"], "description": "The approval the run waits for, if any."},
                        "message": {"type": "string", "description": "What the run waits for and how to get its result."}
                    }
                },
                "Error": {
                    "type": "object",
                    "required": ["error"],
                    "properties": {
                        "error": {
                            "type": "object",
                            "required": ["code", "message"],
                            "properties": {
                                "code": {"type": "string"},
                                "message": {"type": "string"},
                                "details": {}
                            }
                        }
                    }
                }
            }
        }
    })
}

/// Whether `name` can name a tool in MCP and in the vendors' function-calling formats.
pub fn is_tool_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_TOOL_NAME
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// Reads `tool:` settings; `workflow` is the workflow's name, which is the tool's name.
pub(crate) fn read(
    settings: Option<&Node>,
    pos: Pos,
    workflow: Option<&str>,
    diags: &mut Diagnostics,
) -> Option<ToolTrigger> {
    let mut ok = true;
    if let Some(name) = workflow {
        if BUILTIN_TOOLS.contains(&name) {
            diags.error(
                pos,
                format!("`{name}` is a tool Weft provides itself; give this workflow another name"),
            );
            ok = false;
        } else if !is_tool_name(name) {
            diags.error(
                pos,
                format!(
                    "the workflow name `{name}` cannot name a tool: at most {MAX_TOOL_NAME} letters, digits, `_` and `-`"
                ),
            );
            ok = false;
        }
    }
    let Some(settings) = settings else {
        diags.error(
            pos,
            "a tool trigger needs settings, at least `description:`, such as `tool: { description: \"Look up an order\" }`",
        );
        return None;
    };
    let mut f = Fields::new(settings, "tool trigger", TOOL_KEYS, diags)?;
    let description = match f.require("description", diags) {
        Some(n) => match decode::string(n, "`description`", diags) {
            Some(d) if d.trim().is_empty() => {
                diags.error(n.pos, "`description` must say what the tool does");
                None
            }
            d => d,
        },
        None => None,
    };
    let title = f
        .get("title")
        .and_then(|n| decode::string(n, "`title`", diags));
    let input = match f.get("input") {
        Some(n) => read_schema(n, "input", diags),
        None => Some(
            ToolSchema::compile(json!({"type": "object", "properties": {}}))
                .expect("the empty object schema compiles"),
        ),
    };
    let output = match f.get("output") {
        Some(n) => read_schema(n, "output", diags).map(Some),
        None => Some(None),
    };
    let wait = match f.get("wait") {
        Some(n) => match decode::duration(n, "`wait`", diags) {
            Some(d) if d < Duration::from_secs(1) || d > MAX_WAIT => {
                diags.error(n.pos, "`wait` must be between 1s and 15m");
                None
            }
            d => d,
        },
        None => Some(DEFAULT_WAIT),
    };
    f.finish(diags);
    Some(ToolTrigger {
        description: description?,
        title,
        input: input?,
        output: output?,
        wait: wait?,
    })
    .filter(|_| ok)
}

/// Reads a schema under `input` or `output`: a mapping with `type: object`, as MCP requires.
fn read_schema(node: &Node, which: &str, diags: &mut Diagnostics) -> Option<ToolSchema> {
    read_any_schema(node, which, true, diags)
}

/// Reads a JSON Schema written in a workflow (local references only); `object` says whether it
/// must have `type: object`.
pub(crate) fn read_any_schema(
    node: &Node,
    which: &str,
    object: bool,
    diags: &mut Diagnostics,
) -> Option<ToolSchema> {
    let schema = node.to_json();
    if !schema.is_object() {
        diags.error(
            node.pos,
            format!(
                "`{which}` must be a JSON Schema mapping, found {}",
                node.kind_name()
            ),
        );
        return None;
    }
    if object && schema.get("type") != Some(&json!("object")) {
        diags.error(
            node.pos,
            format!(
                "the `{which}` schema must have `type: object` (tools take and give named fields)"
            ),
        );
        return None;
    }
    if let Some(r) = find_remote_ref(&schema) {
        diags.error(
            node.pos,
            format!(
                "the `{which}` schema refers to `{r}`; only local references (`#/…`) are allowed"
            ),
        );
        return None;
    }
    match ToolSchema::compile(schema) {
        Ok(s) => Some(s),
        Err(e) => {
            diags.error(
                node.pos,
                format!("the `{which}` schema is not a valid JSON Schema: {e}"),
            );
            None
        }
    }
}

/// A `$ref` that points outside the schema, which a hub that fetches nothing cannot follow.
fn find_remote_ref(schema: &Value) -> Option<String> {
    match schema {
        Value::Object(map) => map.iter().find_map(|(k, v)| match (k.as_str(), v) {
            ("$ref", Value::String(r)) if !r.starts_with('#') => Some(r.clone()),
            _ => find_remote_ref(v),
        }),
        Value::Array(items) => items.iter().find_map(find_remote_ref),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::yaml;

    fn read_text(text: &str, name: &str) -> (Option<ToolTrigger>, Vec<String>) {
        let node = yaml::parse(text).unwrap();
        let mut diags = Diagnostics::new("workflows/t.yaml");
        let t = read(Some(&node), node.pos, Some(name), &mut diags);
        let messages = diags.into_vec().into_iter().map(|d| d.message).collect();
        (t, messages)
    }

    #[test]
    fn reads_a_tool_and_checks_arguments_against_its_input_schema() {
        let (t, problems) = read_text(
            "description: Order status\ninput:\n  type: object\n  required: [order_id]\n  properties: { order_id: { type: integer, minimum: 1 } }\nwait: 2m\n",
            "order-status",
        );
        assert!(problems.is_empty(), "{problems:?}");
        let t = t.unwrap();
        assert_eq!(t.wait, Duration::from_secs(120));
        assert!(t.input.problems(&json!({"order_id": 7})).is_empty());
        let p = t.input.problems(&json!({"order_id": 0}));
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].path, "/order_id");
        assert!(p[0].message.contains("minimum"), "{}", p[0]);
        assert_eq!(
            p[0].to_string(),
            format!("at `/order_id`: {}", p[0].message)
        );
        let p = t.input.problems(&json!({}));
        assert_eq!(p[0].path, "");
        assert!(p[0].message.contains("order_id"), "{}", p[0]);
    }

    #[test]
    fn refuses_bad_tool_settings() {
        let (_, p) = read_text("description: x\ninput: { type: array }\n", "t");
        assert!(p[0].contains("must have `type: object`"), "{p:?}");
        let (_, p) = read_text(
            "description: x\ninput: { type: object, properties: { a: { type: 5 } } }\n",
            "t",
        );
        assert!(p[0].contains("not a valid JSON Schema"), "{p:?}");
        let (_, p) = read_text(
            "description: x\ninput: { type: object, properties: { a: { $ref: \"https://example.com/s.json\" } } }\n",
            "t",
        );
        assert!(p[0].contains("only local references"), "{p:?}");
        let (_, p) = read_text("title: x\n", "t");
        assert!(p[0].contains("needs `description`"), "{p:?}");
        let (_, p) = read_text("description: x\nwait: 1h\n", "t");
        assert!(p[0].contains("between 1s and 15m"), "{p:?}");
        let (_, p) = read_text("description: x\nwait: 500ms\n", "t");
        assert!(p[0].contains("between 1s and 15m"), "{p:?}");
        let (_, p) = read_text("description: x\n", "kb_search");
        assert!(p[0].contains("Weft provides itself"), "{p:?}");
        let (_, p) = read_text("description: x\n", &"a".repeat(65));
        assert!(p[0].contains("cannot name a tool"), "{p:?}");
        let (_, p) = read_text("description: x\ninputs: {}\n", "t");
        assert!(p[0].contains("did you mean `input`"), "{p:?}");
    }

    #[test]
    fn formats_are_checked() {
        let (t, p) = read_text(
            "description: x\ninput: { type: object, properties: { email: { type: string, format: email } } }\n",
            "t",
        );
        assert!(p.is_empty(), "{p:?}");
        let t = t.unwrap();
        assert!(
            t.input
                .problems(&json!({"email": "ada@example.com"}))
                .is_empty()
        );
        let p = t.input.problems(&json!({"email": "not an address"}));
        assert_eq!(p.len(), 1, "{p:?}");
        assert_eq!(p[0].path, "/email");
    }

    #[test]
    fn sensitive_fields_are_masked() {
        let schema = json!({"type": "object", "properties": {
            "card": {"type": "string", "writeOnly": true},
            "note": {"type": "string"},
            "people": {"type": "array", "items": {"type": "object", "properties": {"ssn": {"x-sensitive": true}}}}
        }});
        let masked = mask_sensitive(
            &schema,
            &json!({"card": "4111", "note": "hi", "people": [{"ssn": "1", "name": "a"}], "extra": 1}),
        );
        assert_eq!(
            masked,
            json!({"card": "***", "note": "hi", "people": [{"ssn": "***", "name": "a"}], "extra": 1})
        );
        // Through $ref, combinators, additionalProperties and prefixItems, and a $ref cycle ends.
        let schema = json!({
            "type": "object",
            "properties": {
                "pay": {"$ref": "#/$defs/card"},
                "either": {"anyOf": [{"type": "string"}, {"type": "object", "properties": {"pin": {"writeOnly": true}}}]},
                "tags": {"type": "object", "additionalProperties": {"x-sensitive": true}},
                "pair": {"type": "array", "prefixItems": [{"type": "string"}, {"writeOnly": true}]},
                "loop": {"$ref": "#/$defs/loop"}
            },
            "$defs": {
                "card": {"type": "object", "properties": {"number": {"writeOnly": true}, "brand": {"type": "string"}}},
                "loop": {"$ref": "#/$defs/loop"}
            }
        });
        let masked = mask_sensitive(
            &schema,
            &json!({"pay": {"number": "4111", "brand": "visa"}, "either": {"pin": "1234"},
                    "tags": {"a": "x"}, "pair": ["open", "hidden"], "loop": 1}),
        );
        assert_eq!(
            masked,
            json!({"pay": {"number": "***", "brand": "visa"}, "either": {"pin": "***"},
                   "tags": {"a": "***"}, "pair": ["open", "***"], "loop": 1})
        );
    }

    #[test]
    fn a_tool_without_input_takes_an_empty_object() {
        let (t, p) = read_text("description: Ping\n", "ping");
        assert!(p.is_empty(), "{p:?}");
        let t = t.unwrap();
        assert!(t.input.problems(&json!({})).is_empty());
        assert!(!t.input.problems(&json!([])).is_empty());
        assert!(t.output.is_none());
    }
}
