//! The workflow model and its reader: `workflows/*.yaml` turned into a checked, compiled [`Workflow`].
//!
//! Reading collects every problem of a file at once: unknown keys, wrong types, duplicate step ids,
//! references to steps that do not exist or run later, jq errors inside `${{ }}`, unknown
//! connections, actions or workflows. A workflow that reads without problems has every expression
//! compiled, ready to run many times; its version is the SHA-256 of its text.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::catalog::Catalog;
use crate::decode::{self, Fields};
use crate::diag::{Diagnostic, Diagnostics, did_you_mean};
use crate::expr::{Expr, Template};
use crate::project::Connection;
use crate::retry::{Backoff, RetryPolicy};
use crate::trigger::{self, Trigger};
use crate::yaml::{self, Kind, Node, Pos};

/// Keys of a workflow file's top level.
pub const WORKFLOW_KEYS: &[&str] = &["name", "description", "trigger", "vars", "steps", "output"];
/// Keys a step may have.
pub const STEP_KEYS: &[&str] = &[
    "id",
    "if",
    "retry",
    "timeout",
    "on_error",
    "uses",
    "with",
    "map",
    "then",
    "else",
    "switch",
    "cases",
    "default",
    "for_each",
    "concurrency",
    "steps",
    "wait",
    "call",
    "fail",
    "approval",
    "respond",
];
/// Keys of a step's `retry` mapping.
pub const RETRY_KEYS: &[&str] = &["attempts", "backoff", "initial", "max", "jitter"];
/// Keys of a `wait` mapping.
pub const WAIT_KEYS: &[&str] = &["for", "until"];
/// Keys of an `approval` mapping.
pub const APPROVAL_KEYS: &[&str] = &["message", "data", "timeout", "on_timeout"];

/// The keys that decide what a step does; a step has exactly one of them.
const KIND_KEYS: &[&str] = &[
    "uses", "map", "then", "switch", "for_each", "wait", "call", "fail", "approval", "respond",
];

/// Most items a `for_each` may run in parallel.
pub const MAX_CONCURRENCY: u64 = 1000;

/// A checked and compiled workflow.
#[derive(Clone, Debug)]
pub struct Workflow {
    /// The workflow's name: `name:` in the file, or the file name without `.yaml`.
    pub name: String,
    /// Path of the file, relative to the project folder.
    pub file: String,
    /// What the workflow is for.
    pub description: Option<String>,
    /// SHA-256 of the file's text, in hex (and of the connector definitions it uses, when it uses
    /// defined connections: a changed definition is a new version). A run keeps the version it
    /// started with.
    pub version: String,
    /// The file's text, stored with runs so that a run finishes on the version it started with.
    pub source: Arc<str>,
    /// What starts a run.
    pub trigger: Trigger,
    /// Where `trigger:` is written.
    pub trigger_pos: Pos,
    /// Constants available as `.vars` (over the project's `vars`).
    pub vars: serde_json::Map<String, Value>,
    /// The steps, in order.
    pub steps: Vec<Step>,
    /// The run's output; without it, the output of the last top-level step that ran.
    pub output: Option<Template>,
    /// The connector definitions of the defined connections it uses, by connection name, as they
    /// were when it was compiled: its runs call their actions as these describe them.
    pub definitions: std::collections::BTreeMap<String, Arc<crate::definition::Definition>>,
    /// What is stored as this version's text: the file's text, followed (when it uses defined
    /// connections) by the definitions as comment lines, so that a run resumed after a restart
    /// keeps them too ([`stored_definitions`]).
    pub stored_source: Arc<str>,
}

/// The comment line that starts each definition kept in a stored version's text.
const DEFINITION_LINE: &str = "# weft-definition ";

/// The definitions a stored version's text keeps (see [`Workflow::stored_source`]), by connection
/// name, as JSON.
pub fn stored_definitions(stored: &str) -> Vec<(String, Value)> {
    stored
        .lines()
        .filter_map(|line| line.strip_prefix(DEFINITION_LINE))
        .filter_map(|rest| {
            let (name, json) = rest.split_once(' ')?;
            Some((name.to_string(), serde_json::from_str(json).ok()?))
        })
        .collect()
}

/// One step of a workflow.
#[derive(Clone, Debug)]
pub struct Step {
    /// The step's id, unique in the workflow; its output is `.steps.<id>`.
    pub id: String,
    /// Where the step starts in the file.
    pub pos: Pos,
    /// `if:` on a step that is not an `if`/`then` step: the step is skipped when this is false.
    pub guard: Option<Arc<Expr>>,
    /// How often the step may start and how long to wait in between.
    pub retry: RetryPolicy,
    /// Longest time one attempt may take (`uses` steps only).
    pub timeout: Option<Duration>,
    /// What to do when the step fails for good.
    pub on_error: OnError,
    /// What the step does.
    pub kind: StepKind,
}

/// What a step does.
#[derive(Clone, Debug)]
pub enum StepKind {
    /// Calls an action of a connection: `uses: shop.request` with `with:` inputs.
    Uses {
        /// The connection's name.
        connection: String,
        /// The action's name.
        action: String,
        /// The action's inputs.
        with: Template,
    },
    /// Computes a value: `map: ${{ … }}`.
    Map {
        /// The value.
        value: Template,
    },
    /// Runs `then` steps when the condition holds, `else` steps otherwise. Output: `{branch}`.
    If {
        /// The condition.
        cond: Arc<Expr>,
        /// Steps when true.
        then: Vec<Step>,
        /// Steps when false.
        otherwise: Vec<Step>,
    },
    /// Runs the steps of the case named by a value. Output: `{case}` (`null` for the default).
    Switch {
        /// The value that picks the case (strings as they are, other scalars as JSON text).
        value: Template,
        /// The cases, by name, in file order.
        cases: Vec<(String, Vec<Step>)>,
        /// Steps when no case matches.
        default: Vec<Step>,
    },
    /// Runs `steps` once per item of a list, with `.item` and `.index`. Output: one value per item,
    /// the output of the last step that ran for it.
    ForEach {
        /// The list.
        items: Template,
        /// How many items run at the same time.
        concurrency: u32,
        /// The steps run for each item.
        steps: Vec<Step>,
    },
    /// Pauses the run, durably: a restart does not reset the clock.
    Wait(WaitSpec),
    /// Runs another workflow as a child run and takes its output.
    Call {
        /// The workflow's name.
        workflow: String,
        /// The child run's input.
        with: Template,
    },
    /// Fails the run with a message.
    Fail {
        /// The message.
        message: Template,
    },
    /// Pauses the run until a person or program answers through the API, or the timeout passes.
    Approval(ApprovalSpec),
}

/// An `approval` step:
///
/// ```yaml
/// - id: refund_ok
///   approval:
///     message: "Refund ${{ .input.amount }} EUR to ${{ .input.email }}?"   # what the approver reads
///     data: ${{ {order: .input.order_id, amount: .input.amount} }}       # what they decide on
///     timeout: 24h                                                       # default: no limit
///     on_timeout: reject                                                 # reject | approve | fail
/// ```
///
/// The run waits (state `waiting`, durable across restarts) until `POST /api/approvals/<id>`
/// answers. The output is `{approved, decision, data, by, answered_at}` where `decision` is
/// `approved`, `rejected` or `expired` and `data` is what the answer carried. An expired approval
/// counts as rejected, as approved, or fails the step (so that `on_error` picks the branch).
/// `approval: "text"` is short for `approval: { message: "text" }`.
#[derive(Clone, Debug)]
pub struct ApprovalSpec {
    /// What the approver reads.
    pub message: Template,
    /// What they decide on (any JSON), shown with the message.
    pub data: Option<Template>,
    /// How long the approval stays open. Default: until answered.
    pub timeout: Option<Duration>,
    /// What an approval that was not answered in time means.
    pub on_timeout: OnTimeout,
}

/// What an approval that nobody answered in time means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnTimeout {
    /// `approved: false`, `decision: expired` (the default: silence is not consent).
    Reject,
    /// `approved: true`, `decision: expired`.
    Approve,
    /// The step fails (kind `approval_expired`), and its `on_error` decides what follows.
    Fail,
}

impl StepKind {
    /// The key that names this kind in a file.
    pub fn name(&self) -> &'static str {
        match self {
            StepKind::Uses { .. } => "uses",
            StepKind::Map { .. } => "map",
            StepKind::If { .. } => "if",
            StepKind::Switch { .. } => "switch",
            StepKind::ForEach { .. } => "for_each",
            StepKind::Wait(_) => "wait",
            StepKind::Call { .. } => "call",
            StepKind::Fail { .. } => "fail",
            StepKind::Approval(_) => "approval",
        }
    }

    /// The nested step lists of this step.
    pub fn children(&self) -> Vec<&[Step]> {
        match self {
            StepKind::If {
                then, otherwise, ..
            } => vec![then, otherwise],
            StepKind::Switch { cases, default, .. } => {
                let mut out: Vec<&[Step]> = cases.iter().map(|(_, s)| s.as_slice()).collect();
                out.push(default);
                out
            }
            StepKind::ForEach { steps, .. } => vec![steps],
            _ => Vec::new(),
        }
    }
}

/// How long a `wait` step pauses.
#[derive(Clone, Debug)]
pub enum WaitSpec {
    /// A fixed duration: `wait: 30s`.
    For(Duration),
    /// Until a time computed from the run: `wait: { until: ${{ … }} }`, an RFC 3339 timestamp or
    /// seconds since the Unix epoch.
    Until(Template),
}

/// What happens when a step fails for good.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub enum OnError {
    /// The run fails (the default).
    #[default]
    Fail,
    /// The run goes on; the step's output is `{error: {…}}`.
    Continue,
    /// The run goes on at a later step of the same list; the step's output is `{error: {…}}`.
    Goto(String),
}

/// What a workflow may refer to outside itself.
pub struct Scope<'a> {
    /// The project's connections.
    pub connections: &'a std::collections::BTreeMap<String, Connection>,
    /// The connector types.
    pub catalog: &'a Catalog,
    /// The names of every workflow of the project.
    pub workflows: &'a BTreeSet<String>,
    /// Whether the project has a knowledge base (`kb/`).
    pub has_kb: bool,
}

/// The SHA-256 of a workflow's text in hex: its version.
pub fn version_of(source: &str) -> String {
    let digest = Sha256::digest(source.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// The name a workflow file gets when it has no `name:`: its file name without the extension.
pub fn default_name(file: &str) -> String {
    let base = file.rsplit(['/', '\\']).next().unwrap_or(file);
    base.strip_suffix(".yaml")
        .or_else(|| base.strip_suffix(".yml"))
        .unwrap_or(base)
        .to_string()
}

/// Whether `name` is a valid workflow or connection name: letters, digits, `_` and `-`, starting
/// with a letter or `_`.
pub fn is_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

impl Workflow {
    /// Reads, checks and compiles one workflow file.
    pub fn parse(file: &str, source: &str, scope: &Scope<'_>) -> Result<Workflow, Vec<Diagnostic>> {
        let mut diags = Diagnostics::new(file);
        let workflow = read_workflow(file, source, scope, &mut diags);
        match workflow {
            Some(mut w) if diags.is_empty() => {
                let mut definitions = std::collections::BTreeMap::new();
                for name in w.connections() {
                    if let Some(crate::Spec::Defined(def)) = scope
                        .connections
                        .get(name)
                        .and_then(|c| scope.catalog.get(&c.type_name))
                    {
                        definitions.insert(name.to_string(), def.clone());
                    }
                }
                if !definitions.is_empty() {
                    // The definitions are part of what a run runs: one that changes makes a new
                    // version, and runs on the old one keep calling the actions it describes.
                    let mut text = source.to_string();
                    for (name, def) in &definitions {
                        text.push_str(&format!("\n#definition {name} {}", def.digest));
                    }
                    w.version = version_of(&text);
                    let mut stored = source.trim_end_matches('\n').to_string();
                    stored.push_str(
                        "\n\n# The connector definitions this version was compiled with, kept by Weft:\n",
                    );
                    for (name, def) in &definitions {
                        stored.push_str(&format!("{DEFINITION_LINE}{name} {}\n", def.source));
                    }
                    w.stored_source = Arc::from(stored);
                }
                w.definitions = definitions;
                Ok(w)
            }
            _ => Err(diags.into_vec()),
        }
    }

    /// Every step of the workflow, nested ones included, in file order.
    pub fn all_steps(&self) -> Vec<&Step> {
        fn walk<'a>(steps: &'a [Step], out: &mut Vec<&'a Step>) {
            for s in steps {
                out.push(s);
                for list in s.kind.children() {
                    walk(list, out);
                }
            }
        }
        let mut out = Vec::new();
        walk(&self.steps, &mut out);
        out
    }

    /// The names of the connections the workflow uses: in its steps' `uses`, and its poll or
    /// queue trigger's.
    pub fn connections(&self) -> std::collections::BTreeSet<&str> {
        let mut out: std::collections::BTreeSet<&str> = self
            .all_steps()
            .into_iter()
            .filter_map(|s| match &s.kind {
                StepKind::Uses { connection, .. } => Some(connection.as_str()),
                _ => None,
            })
            .collect();
        match &self.trigger {
            Trigger::Poll(p) => {
                out.insert(&p.connection);
            }
            Trigger::Queue(q) => {
                out.insert(&q.connection);
            }
            _ => {}
        }
        out
    }

    /// The step with id `id`, wherever it is.
    pub fn step(&self, id: &str) -> Option<&Step> {
        self.all_steps().into_iter().find(|s| s.id == id)
    }
}

fn read_workflow(
    file: &str,
    source: &str,
    scope: &Scope<'_>,
    diags: &mut Diagnostics,
) -> Option<Workflow> {
    let root = match yaml::parse(source) {
        Ok(root) => root,
        Err(e) => {
            diags.error(e.pos, e.message);
            return None;
        }
    };
    if matches!(root.kind, Kind::Null) {
        diags.error(
            root.pos,
            "the workflow file is empty; it needs at least `trigger` and `steps`",
        );
        return None;
    }
    let mut fields = Fields::new(&root, "workflow", WORKFLOW_KEYS, diags)?;
    let name = match fields.get("name") {
        Some(node) => {
            let name = decode::string(node, "`name`", diags);
            if let Some(n) = &name
                && !is_name(n)
            {
                diags.error(
                        node.pos,
                        format!("workflow name `{n}` may hold only letters, digits, `_` and `-`, and must start with a letter"),
                    );
            }
            name
        }
        None => {
            let name = default_name(file);
            if !is_name(&name) {
                diags.error(
                    root.pos,
                    format!("the file name gives the workflow name `{name}`, which may hold only letters, digits, `_` and `-`; rename the file or set `name:`"),
                );
            }
            Some(name)
        }
    };
    let description = fields
        .get("description")
        .and_then(|n| decode::string(n, "`description`", diags));
    let (trigger, trigger_pos) = match fields.require("trigger", diags) {
        Some(node) => (trigger::read(node, name.as_deref(), scope, diags), node.pos),
        None => (None, root.pos),
    };
    let vars = match fields.get("vars") {
        Some(node) => match node.to_json() {
            Value::Object(map) => map,
            _ => {
                diags.error(
                    node.pos,
                    format!("`vars` must be a mapping, found {}", node.kind_name()),
                );
                serde_json::Map::new()
            }
        },
        None => serde_json::Map::new(),
    };
    let steps = match fields.require("steps", diags) {
        Some(node) => {
            let steps = read_steps(node, "`steps`", scope, &mut Ids::new(), diags);
            if steps.is_empty() && matches!(&node.kind, Kind::Seq(items) if items.is_empty()) {
                diags.error(
                    node.pos,
                    "`steps` is empty; a workflow needs at least one step",
                );
            }
            steps
        }
        None => Vec::new(),
    };
    let output = fields.get("output").map(|n| Template::from_node(n, diags));
    fields.finish(diags);

    // The steps are checked even when the name or trigger is wrong, so that every problem shows.
    check_references(&steps, output.as_ref(), diags);
    Some(Workflow {
        name: name?,
        file: file.to_string(),
        description,
        version: version_of(source),
        source: Arc::from(source),
        trigger: trigger?,
        trigger_pos,
        vars,
        steps,
        output,
        definitions: Default::default(),
        stored_source: Arc::from(source),
    })
}

/// Step ids seen so far in a file, with where each was first used.
type Ids = std::collections::HashMap<String, Pos>;

fn read_steps(
    node: &Node,
    what: &str,
    scope: &Scope<'_>,
    ids: &mut Ids,
    diags: &mut Diagnostics,
) -> Vec<Step> {
    let Some(items) = decode::list(node, what, diags) else {
        return Vec::new();
    };
    items
        .iter()
        .filter_map(|item| read_step(item, scope, ids, diags))
        .collect()
}

fn read_step(
    node: &Node,
    scope: &Scope<'_>,
    ids: &mut Ids,
    diags: &mut Diagnostics,
) -> Option<Step> {
    let mut fields = Fields::new(node, "step", STEP_KEYS, diags)?;
    let id = match fields.get("id") {
        Some(n) => {
            let id = decode::string(n, "step `id`", diags);
            if let Some(id) = &id {
                if !decode::is_identifier(id) {
                    diags.error(
                        n.pos,
                        format!("step id `{id}` must be usable in `.steps.{id}`: letters, digits and `_`, starting with a letter or `_`"),
                    );
                }
                if let Some(first) = ids.get(id) {
                    diags.error(
                        n.pos,
                        format!("duplicate step id `{id}` (first used at {first})"),
                    );
                } else {
                    ids.insert(id.clone(), n.pos);
                }
            }
            id
        }
        None => {
            diags.error(node.pos, "step needs an `id`");
            None
        }
    };

    let present: Vec<&str> = KIND_KEYS
        .iter()
        .copied()
        .filter(|k| fields.has(k))
        .collect();
    let kind_key = match present.as_slice() {
        [one] => *one,
        [] => {
            diags.error(
                node.pos,
                "step needs one of `uses`, `map`, `if`/`then`, `switch`, `for_each`, `wait`, `call`, `fail` or `approval`",
            );
            fields.finish(diags);
            return None;
        }
        [first, second, rest @ ..] => {
            let label = |k: &str| {
                if k == "then" {
                    "if`/`then".to_string()
                } else {
                    k.to_string()
                }
            };
            diags.error(
                node.pos,
                format!(
                    "step has both `{}` and `{}`; a step does one thing",
                    label(first),
                    label(second)
                ),
            );
            // The other kinds are reported by the line above, not as keys that do not apply.
            for other in std::iter::once(second).chain(rest) {
                fields.get(other);
            }
            // Keep reading the first kind so that its own problems are reported too.
            first
        }
    };

    let is_if_step = kind_key == "then";
    let guard = if is_if_step {
        None
    } else {
        fields
            .get("if")
            .and_then(|n| Template::expr_from_node(n, "`if`", diags))
    };
    let allows_retry = matches!(kind_key, "uses" | "call");
    let retry = match fields.get("retry") {
        Some(n) if allows_retry => read_retry(n, diags).unwrap_or_default(),
        Some(n) => {
            diags.error(
                n.pos,
                format!(
                    "`retry` applies to `uses` and `call` steps, not to `{}` steps",
                    kind_label(kind_key)
                ),
            );
            RetryPolicy::default()
        }
        // A called workflow retries its own steps; the call itself starts it once unless told otherwise.
        None if kind_key == "call" => RetryPolicy {
            attempts: 1,
            ..RetryPolicy::default()
        },
        None => RetryPolicy::default(),
    };
    let timeout = match fields.get("timeout") {
        Some(n) if kind_key == "uses" => decode::duration(n, "`timeout`", diags),
        Some(n) => {
            diags.error(
                n.pos,
                format!(
                    "`timeout` applies to `uses` steps, not to `{}` steps",
                    kind_label(kind_key)
                ),
            );
            None
        }
        None => None,
    };
    let on_error = match fields.get("on_error") {
        Some(n) if kind_key == "fail" => {
            diags.error(
                n.pos,
                "`on_error` does not apply to a `fail` step; it always fails the run",
            );
            OnError::Fail
        }
        Some(n) => match decode::string(n, "`on_error`", diags).as_deref() {
            Some("fail") => OnError::Fail,
            Some("continue") => OnError::Continue,
            Some(target) if decode::is_identifier(target) => OnError::Goto(target.to_string()),
            Some(other) => {
                diags.error(n.pos, format!("`on_error` must be `fail`, `continue` or the id of a later step, found `{other}`"));
                OnError::Fail
            }
            None => OnError::Fail,
        },
        None => OnError::Fail,
    };

    let kind = read_kind(kind_key, &mut fields, scope, ids, diags);
    fields.finish(diags);
    Some(Step {
        id: id?,
        pos: node.pos,
        guard,
        retry,
        timeout,
        on_error,
        kind: kind?,
    })
}

fn kind_label(key: &str) -> &str {
    if key == "then" { "if" } else { key }
}

fn read_kind(
    key: &str,
    fields: &mut Fields<'_>,
    scope: &Scope<'_>,
    ids: &mut Ids,
    diags: &mut Diagnostics,
) -> Option<StepKind> {
    match key {
        "uses" => {
            let (uses_node, with_node) = (fields.get("uses")?, fields.get("with"));
            let with = with_node.map_or(
                Template::Const(crate::expr::Val::obj(Default::default())),
                |n| Template::from_node(n, diags),
            );
            let uses = decode::string(uses_node, "`uses`", diags)?;
            let (connection, action) =
                check_uses(&uses, uses_node.pos, with_node, &with, scope, diags)?;
            Some(StepKind::Uses {
                connection,
                action,
                with,
            })
        }
        "map" => Some(StepKind::Map {
            value: Template::from_node(fields.get("map")?, diags),
        }),
        "then" => {
            let cond = match fields.get("if") {
                Some(n) => Template::expr_from_node(n, "`if`", diags),
                None => {
                    diags.error(fields.pos(), "a step with `then` needs an `if` condition");
                    None
                }
            };
            let then = read_steps(fields.get("then")?, "`then`", scope, ids, diags);
            let otherwise = fields
                .get("else")
                .map_or_else(Vec::new, |n| read_steps(n, "`else`", scope, ids, diags));
            Some(StepKind::If {
                cond: cond?,
                then,
                otherwise,
            })
        }
        "switch" => {
            let value = Template::from_node(fields.get("switch")?, diags);
            let mut cases = Vec::new();
            match fields.get("cases") {
                Some(n) => {
                    for (k, v) in decode::entries(n, "`cases`", diags).unwrap_or_default() {
                        cases.push((
                            k.name.clone(),
                            read_steps(v, &format!("case `{}`", k.name), scope, ids, diags),
                        ));
                    }
                }
                None => diags.error(
                    fields.pos(),
                    "a `switch` step needs `cases`: a mapping from values to steps",
                ),
            }
            let default = fields
                .get("default")
                .map_or_else(Vec::new, |n| read_steps(n, "`default`", scope, ids, diags));
            Some(StepKind::Switch {
                value,
                cases,
                default,
            })
        }
        "for_each" => {
            let items = Template::from_node(fields.get("for_each")?, diags);
            let concurrency = fields
                .get("concurrency")
                .and_then(|n| decode::integer(n, "`concurrency`", 1, MAX_CONCURRENCY, diags))
                .unwrap_or(1) as u32;
            let steps = match fields.get("steps") {
                Some(n) => read_steps(n, "`steps`", scope, ids, diags),
                None => {
                    diags.error(
                        fields.pos(),
                        "a `for_each` step needs `steps` to run for each item",
                    );
                    Vec::new()
                }
            };
            forbid_nested_approvals(&steps, diags);
            Some(StepKind::ForEach {
                items,
                concurrency,
                steps,
            })
        }
        "wait" => {
            let node = fields.get("wait")?;
            match &node.kind {
                Kind::Map(_) => {
                    let mut w = Fields::new(node, "`wait`", WAIT_KEYS, diags)?;
                    let spec = match (w.get("for"), w.get("until")) {
                        (Some(d), None) => {
                            decode::duration(d, "`wait.for`", diags).map(WaitSpec::For)
                        }
                        (None, Some(u)) => Some(WaitSpec::Until(Template::from_node(u, diags))),
                        _ => {
                            diags.error(
                                node.pos,
                                "`wait` needs either `for` (a duration) or `until` (a time)",
                            );
                            None
                        }
                    };
                    w.finish(diags);
                    Some(StepKind::Wait(spec?))
                }
                _ => decode::duration(node, "`wait`", diags)
                    .map(|d| StepKind::Wait(WaitSpec::For(d))),
            }
        }
        "call" => {
            let node = fields.get("call")?;
            let workflow = decode::string(node, "`call`", diags)?;
            if !scope.workflows.contains(&workflow) {
                let hint = did_you_mean(&workflow, scope.workflows.iter().map(String::as_str))
                    .map(|h| format!("; did you mean `{h}`?"))
                    .unwrap_or_default();
                diags.error(node.pos, format!("unknown workflow `{workflow}`{hint}"));
            }
            let with = fields
                .get("with")
                .map_or(Template::Const(crate::expr::Val::Null), |n| {
                    Template::from_node(n, diags)
                });
            Some(StepKind::Call { workflow, with })
        }
        "fail" => Some(StepKind::Fail {
            message: Template::from_node(fields.get("fail")?, diags),
        }),
        "approval" => read_approval(fields.get("approval")?, diags).map(StepKind::Approval),
        "respond" => {
            let node = fields.get(key)?;
            diags.error(
                node.pos,
                format!("`{key}` steps are not available in this version of Weft yet"),
            );
            None
        }
        _ => None,
    }
}

fn read_approval(node: &Node, diags: &mut Diagnostics) -> Option<ApprovalSpec> {
    if let Kind::Str(_) = node.kind {
        return Some(ApprovalSpec {
            message: Template::from_node(node, diags),
            data: None,
            timeout: None,
            on_timeout: OnTimeout::Reject,
        });
    }
    let mut f = Fields::new(node, "`approval`", APPROVAL_KEYS, diags)?;
    let message = f
        .require("message", diags)
        .map(|n| Template::from_node(n, diags));
    let data = f.get("data").map(|n| Template::from_node(n, diags));
    let timeout = match f.get("timeout") {
        Some(n) => match decode::duration(n, "`approval.timeout`", diags) {
            Some(d) if d > Duration::ZERO => Some(Some(d)),
            Some(_) => {
                diags.error(n.pos, "`approval.timeout` must be more than 0s");
                None
            }
            None => None,
        },
        None => Some(None),
    };
    let on_timeout = match f.get("on_timeout") {
        Some(n) => match n.as_str() {
            Some("reject") => Some(OnTimeout::Reject),
            Some("approve") => Some(OnTimeout::Approve),
            Some("fail") => Some(OnTimeout::Fail),
            _ => {
                diags.error(
                    n.pos,
                    "`approval.on_timeout` must be `reject`, `approve` or `fail`",
                );
                None
            }
        },
        None => Some(OnTimeout::Reject),
    };
    f.finish(diags);
    Some(ApprovalSpec {
        message: message?,
        data,
        timeout: timeout?,
        on_timeout: on_timeout?,
    })
}

/// Reports approval steps inside `for_each` (whose items run side by side and cannot park the run).
fn forbid_nested_approvals(steps: &[Step], diags: &mut Diagnostics) {
    for step in steps {
        if let StepKind::Approval(_) = step.kind {
            diags.error(
                step.pos,
                format!("step `{}`: an `approval` cannot run inside `for_each`; ask once, before or after the loop", step.id),
            );
        }
        for children in step.kind.children() {
            forbid_nested_approvals(children, diags);
        }
    }
}

/// Checks `uses: <connection>.<action>` and its `with:` against the project; returns the connection
/// and action names.
pub(crate) fn check_uses(
    uses: &str,
    pos: Pos,
    with_node: Option<&Node>,
    with: &Template,
    scope: &Scope<'_>,
    diags: &mut Diagnostics,
) -> Option<(String, String)> {
    let Some((connection, action)) = uses.rsplit_once('.') else {
        diags.error(
            pos,
            format!("`uses: {uses}` must name a connection and an action, such as `shop.request`"),
        );
        return None;
    };
    if connection == "kb" && !scope.has_kb {
        diags.error(
            pos,
            format!("`uses: {uses}` searches the project's knowledge base, but the project has no kb/ folder; add one with Markdown, text or HTML files"),
        );
        return None;
    }
    let spec = match (
        scope.connections.get(connection),
        crate::catalog::builtin(connection),
    ) {
        (_, Some(builtin)) => builtin,
        // A connection of an unknown type is reported where it is defined, in weft.yaml.
        (Some(conn), None) => scope.catalog.get(&conn.type_name)?.clone(),
        (None, None) => {
            let known: Vec<&str> = scope.connections.keys().map(String::as_str).collect();
            let hint = match did_you_mean(connection, known.iter().copied()) {
                Some(h) => format!("; did you mean `{h}`?"),
                None if known.is_empty() => "; weft.yaml defines no connections".to_string(),
                None => format!("; weft.yaml defines: {}", known.join(", ")),
            };
            diags.error(pos, format!("unknown connection `{connection}`{hint}"));
            return None;
        }
    };
    let Some(action_spec) = spec.action(action) else {
        let names: Vec<&str> = spec.actions().iter().map(|a| a.name()).collect();
        diags.error(
            pos,
            format!(
                "connection `{connection}` ({}) has no action `{action}`; its actions are: {}",
                spec.type_name(),
                names.join(", ")
            ),
        );
        return None;
    };
    let inputs = action_spec.inputs();
    if let Some(with_node) = with_node {
        match &with_node.kind {
            Kind::Map(entries) => {
                for (key, _) in entries {
                    if !inputs.contains(&key.name.as_str()) {
                        let hint = did_you_mean(&key.name, inputs.iter().copied())
                            .map(|h| format!("; did you mean `{h}`?"))
                            .unwrap_or_else(|| format!("; expected one of: {}", inputs.join(", ")));
                        diags.error(
                            key.pos,
                            format!(
                                "unknown input `{}` for {}.{action}{hint}",
                                key.name,
                                spec.type_name()
                            ),
                        );
                    }
                }
                action_spec.check_inputs(with_node, diags);
            }
            Kind::Str(_) if matches!(with, Template::Expr(_)) => {
                action_spec.check_inputs(with_node, diags);
            }
            _ => diags.error(
                with_node.pos,
                format!("`with` must be a mapping, found {}", with_node.kind_name()),
            ),
        }
    }
    if let Some(keys) = with.literal_keys() {
        for required in action_spec.required() {
            if !keys.contains(&required) {
                diags.error(
                    pos,
                    format!("{}.{action} needs `with.{required}`", spec.type_name()),
                );
            }
        }
    } else if with_node.is_none() {
        for required in action_spec.required() {
            diags.error(
                pos,
                format!("{}.{action} needs `with.{required}`", spec.type_name()),
            );
        }
    }
    Some((connection.to_string(), action.to_string()))
}

fn read_retry(node: &Node, diags: &mut Diagnostics) -> Option<RetryPolicy> {
    let mut policy = RetryPolicy::default();
    if let Kind::Num(_) = node.kind {
        policy.attempts = decode::integer(node, "`retry`", 1, 100, diags)? as u32;
        return Some(policy);
    }
    let mut f = Fields::new(node, "`retry`", RETRY_KEYS, diags)?;
    if let Some(n) = f.get("attempts") {
        policy.attempts = decode::integer(n, "`retry.attempts`", 1, 100, diags).unwrap_or(3) as u32;
    }
    if let Some(n) = f.get("backoff") {
        match decode::string(n, "`retry.backoff`", diags).as_deref() {
            Some("exponential") => policy.backoff = Backoff::Exponential,
            Some("fixed") => policy.backoff = Backoff::Fixed,
            Some(other) => diags.error(
                n.pos,
                format!("`retry.backoff` must be `exponential` or `fixed`, found `{other}`"),
            ),
            None => {}
        }
    }
    if let Some(n) = f.get("initial")
        && let Some(d) = decode::duration(n, "`retry.initial`", diags)
    {
        policy.initial = d;
    }
    if let Some(n) = f.get("max")
        && let Some(d) = decode::duration(n, "`retry.max`", diags)
    {
        policy.max = d;
    }
    if let Some(n) = f.get("jitter")
        && let Some(b) = decode::boolean(n, "`retry.jitter`", diags)
    {
        policy.jitter = b;
    }
    if policy.max < policy.initial {
        diags.error(node.pos, "`retry.max` is shorter than `retry.initial`");
    }
    f.finish(diags);
    Some(policy)
}

/// Where a step sits: its order in the file, the `for_each` steps around it and its ancestors.
struct Placement<'a> {
    step: &'a Step,
    order: usize,
    /// Orders of the enclosing `for_each` steps, outermost first.
    loops: Vec<usize>,
    /// Orders of every enclosing step.
    ancestors: Vec<usize>,
    /// Ids of the steps in the same list that come after this one.
    later_siblings: Vec<&'a str>,
}

fn placements(steps: &[Step]) -> Vec<Placement<'_>> {
    fn walk<'a>(
        steps: &'a [Step],
        loops: &[usize],
        ancestors: &[usize],
        out: &mut Vec<Placement<'a>>,
    ) {
        for (i, step) in steps.iter().enumerate() {
            let order = out.len();
            out.push(Placement {
                step,
                order,
                loops: loops.to_vec(),
                ancestors: ancestors.to_vec(),
                later_siblings: steps[i + 1..].iter().map(|s| s.id.as_str()).collect(),
            });
            let mut inner_loops = loops.to_vec();
            if matches!(step.kind, StepKind::ForEach { .. }) {
                inner_loops.push(order);
            }
            let mut inner_ancestors = ancestors.to_vec();
            inner_ancestors.push(order);
            for list in step.kind.children() {
                walk(list, &inner_loops, &inner_ancestors, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(steps, &[], &[], &mut out);
    out
}

/// The expressions of a step itself (not of its nested steps).
fn own_exprs(step: &Step) -> Vec<&Arc<Expr>> {
    let mut out: Vec<&Arc<Expr>> = step.guard.iter().collect();
    match &step.kind {
        StepKind::Uses { with, .. } | StepKind::Call { with, .. } => out.extend(with.exprs()),
        StepKind::Map { value } => out.extend(value.exprs()),
        StepKind::If { cond, .. } => out.push(cond),
        StepKind::Switch { value, .. } => out.extend(value.exprs()),
        StepKind::ForEach { items, .. } => out.extend(items.exprs()),
        StepKind::Wait(WaitSpec::Until(t)) => out.extend(t.exprs()),
        StepKind::Wait(WaitSpec::For(_)) => {}
        StepKind::Fail { message } => out.extend(message.exprs()),
        StepKind::Approval(spec) => {
            out.extend(spec.message.exprs());
            if let Some(data) = &spec.data {
                out.extend(data.exprs());
            }
        }
    }
    out
}

fn check_references(steps: &[Step], output: Option<&Template>, diags: &mut Diagnostics) {
    let places = placements(steps);
    let find = |id: &str| places.iter().find(|p| p.step.id == id);
    let all_ids: Vec<&str> = places.iter().map(|p| p.step.id.as_str()).collect();

    let check = |expr: &Expr, reader: Option<&Placement<'_>>, diags: &mut Diagnostics| {
        for id in expr.step_refs() {
            let Some(target) = find(&id) else {
                let hint = did_you_mean(&id, all_ids.iter().copied())
                    .map(|h| format!("; did you mean `{h}`?"))
                    .unwrap_or_default();
                diags.error(
                    expr.pos,
                    format!("`.steps.{id}` refers to a step that does not exist{hint}"),
                );
                continue;
            };
            let (order, loops, ancestors, reader_name) = match reader {
                Some(r) => (
                    r.order,
                    r.loops.as_slice(),
                    r.ancestors.as_slice(),
                    format!("step `{}`", r.step.id),
                ),
                None => (
                    usize::MAX,
                    &[][..],
                    &[][..],
                    "the workflow output".to_string(),
                ),
            };
            if target.order >= order || ancestors.contains(&target.order) {
                let when = if target.order == order {
                    "is this step itself"
                } else if ancestors.contains(&target.order) {
                    "has not finished when its nested steps run"
                } else {
                    "runs later"
                };
                diags.error(expr.pos, format!("`.steps.{id}` is not available to {reader_name}: step `{id}` {when}; a step can read only the steps before it"));
                continue;
            }
            if !loops.starts_with(&target.loops) {
                let outer = target
                    .loops
                    .last()
                    .map(|&o| places[o].step.id.as_str())
                    .unwrap_or_default();
                diags.error(
                    expr.pos,
                    format!("`.steps.{id}` is not available to {reader_name}: step `{id}` runs once per item inside for_each `{outer}`; read the results through `.steps.{outer}`"),
                );
            }
        }
    };

    for place in &places {
        for expr in own_exprs(place.step) {
            check(expr, Some(place), diags);
        }
        if let OnError::Goto(target) = &place.step.on_error
            && !place.later_siblings.contains(&target.as_str())
        {
            let why = if find(target).is_some() {
                "is not a later step of the same list"
            } else {
                "does not exist"
            };
            diags.error(
                place.step.pos,
                format!(
                    "`on_error: {target}`: step `{target}` {why}; on_error can only skip forward"
                ),
            );
        }
    }
    if let Some(output) = output {
        for expr in output.exprs() {
            check(expr, None, diags);
        }
    }
}

/// Reads a list of diagnostics' worth of problems from an already parsed node. Used by tests.
#[cfg(test)]
pub(crate) fn parse_for_test(source: &str, scope: &Scope<'_>) -> Result<Workflow, Vec<String>> {
    Workflow::parse("workflows/test.yaml", source, scope).map_err(|ds| {
        ds.iter()
            .map(|d| format!("{}:{}: {}", d.line, d.column, d.message))
            .collect()
    })
}

/// A small project scope for tests: an `http` connection `shop` and workflows `test` and `other`.
#[cfg(test)]
pub(crate) mod test_scope {
    use super::*;
    use crate::catalog::{ActionSpec, ConnectorSpec, no_input_check};
    use std::collections::BTreeMap;

    static HTTP: ConnectorSpec = ConnectorSpec {
        probe: None,
        type_name: "http",
        summary: "test",
        actions: &[ActionSpec {
            name: "request",
            summary: "test",
            inputs: &["method", "path", "url", "body", "query"],
            required: &[],
            check_inputs: no_input_check,
        }],
        check: |_, _| {},
        consume: None,
    };

    /// A broker whose queue triggers take one key, `topic`.
    static BROKER: ConnectorSpec = ConnectorSpec {
        probe: None,
        type_name: "broker",
        summary: "test",
        actions: &[],
        check: |_, _| {},
        consume: Some(crate::catalog::ConsumeSpec {
            keys: &["topic"],
            check: |node, diags| {
                if let Some(mut f) =
                    crate::decode::Fields::new(node, "queue trigger (broker)", &["topic"], diags)
                {
                    f.require("topic", diags);
                    f.finish(diags);
                }
            },
            message_id: None,
        }),
    };

    pub(crate) fn with_scope<T>(f: impl FnOnce(&Scope<'_>) -> T) -> T {
        let catalog = Catalog::new(vec![&HTTP, &BROKER]);
        let mut connections = BTreeMap::new();
        connections.insert(
            "events".to_string(),
            Connection {
                name: "events".into(),
                type_name: "broker".into(),
                node: crate::yaml::parse("type: broker").unwrap(),
                pos: Pos::new(1, 1),
                rate_limit: None,
            },
        );
        connections.insert(
            "shop".to_string(),
            Connection {
                name: "shop".into(),
                type_name: "http".into(),
                node: crate::yaml::parse("type: http").unwrap(),
                pos: Pos::new(1, 1),
                rate_limit: None,
            },
        );
        let workflows: BTreeSet<String> = ["test".to_string(), "other".to_string()].into();
        f(&Scope {
            connections: &connections,
            catalog: &catalog,
            workflows: &workflows,
            has_kb: false,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::test_scope::with_scope;
    use super::*;

    fn errors(source: &str) -> Vec<String> {
        with_scope(|scope| parse_for_test(source, scope).err().unwrap_or_default())
    }

    #[test]
    fn built_in_connections_need_no_definition_and_kb_needs_a_kb_folder() {
        let source = "trigger: manual\nsteps:\n  - id: s\n    uses: state.set\n    with: { namespace: n, key: k, value: 1, ttl: soon }\n  - id: g\n    uses: state.get\n    with: { namespace: n }\n  - id: q\n    uses: kb.search\n    with: { query: hi }\n";
        assert_eq!(
            errors(source),
            [
                "5:50: `ttl`: `soon` is not a duration; write a number and a unit (ms, s, m, h, d), such as `30s`",
                "7:11: state.get needs `with.key`",
                "10:11: `uses: kb.search` searches the project's knowledge base, but the project has no kb/ folder; add one with Markdown, text or HTML files",
            ]
        );
    }

    #[test]
    fn reads_a_complete_workflow() {
        let source = r#"
name: order-status
trigger: manual
steps:
  - id: order
    uses: shop.request
    with: { method: GET, path: "/orders/${{ .input.id }}.json" }
    retry: { attempts: 5, backoff: exponential, initial: 500ms, max: 30s }
    timeout: 10s
  - id: late
    if: ${{ .steps.order.body.late }}
    then:
      - id: ticket
        uses: shop.request
        with: { method: POST, path: /tickets }
        on_error: continue
  - id: each
    for_each: ${{ .steps.order.body.lines }}
    concurrency: 4
    steps:
      - id: line
        map: ${{ .item.sku }}
  - id: pause
    wait: 1s
  - id: child
    call: other
    with: { id: "${{ .input.id }}" }
output: ${{ {ticket: .steps.ticket, lines: .steps.each} }}
"#;
        let w = with_scope(|scope| parse_for_test(source, scope)).unwrap();
        assert_eq!(w.name, "order-status");
        assert_eq!(w.steps.len(), 5);
        assert_eq!(w.steps[0].retry.attempts, 5);
        assert_eq!(w.steps[0].timeout, Some(Duration::from_secs(10)));
        assert!(matches!(w.steps[1].kind, StepKind::If { .. }));
        assert_eq!(w.all_steps().len(), 7);
        assert_eq!(w.version.len(), 64);
    }

    #[test]
    fn reports_every_problem_of_a_file() {
        let errs = errors(
            r#"trigger: manual
colour: blue
steps:
  - id: a
    map: 1
    retyr: 3
  - id: a
    uses: shop.fetch
  - id: c
    uses: nowhere.request
  - id: d
    map: ${{ .steps.e + .steps.zz }}
  - id: e
    map: ${{ .x | }}
"#,
        );
        assert_eq!(
            errs,
            vec![
                "2:1: unknown key `colour` in workflow; expected one of: name, description, trigger, vars, steps, output",
                "6:5: unknown key `retyr` in step; did you mean `retry`?",
                "7:9: duplicate step id `a` (first used at 4:9)",
                "8:11: connection `shop` (http) has no action `fetch`; its actions are: request",
                "10:11: unknown connection `nowhere`; weft.yaml defines: events, shop",
                "12:10: `.steps.e` is not available to step `d`: step `e` runs later; a step can read only the steps before it",
                "12:10: `.steps.zz` refers to a step that does not exist",
                "14:19: jq syntax error in `${{ .x | }}`: expected term, found end of expression",
            ]
        );
    }

    #[test]
    fn checks_types_and_step_shapes() {
        let errs = errors(
            r#"trigger: tool
steps:
  - id: a
    map: 1
    uses: shop.request
  - id: b-c
    wait: soon
  - id: d
    for_each: ${{ [1] }}
    concurrency: 0
    steps: []
  - id: e
    map: 1
    retry: 2
  - id: f
    call: nope
  - {}
"#,
        );
        assert_eq!(
            errs,
            vec![
                "1:10: a tool trigger needs settings, at least `description:`, such as `tool: { description: \"Look up an order\" }`",
                "3:5: step has both `uses` and `map`; a step does one thing",
                "6:9: step id `b-c` must be usable in `.steps.b-c`: letters, digits and `_`, starting with a letter or `_`",
                "7:11: `wait`: `soon` is not a duration; write a number and a unit (ms, s, m, h, d), such as `30s`",
                "10:18: `concurrency` must be a whole number from 1 to 1000, found 0",
                "14:12: `retry` applies to `uses` and `call` steps, not to `map` steps",
                "16:11: unknown workflow `nope`",
                "17:5: step needs an `id`",
                "17:5: step needs one of `uses`, `map`, `if`/`then`, `switch`, `for_each`, `wait`, `call`, `fail` or `approval`",
            ]
        );
    }

    #[test]
    fn loop_steps_are_read_through_their_loop() {
        let errs = errors(
            r#"trigger: manual
steps:
  - id: each
    for_each: ${{ [1, 2] }}
    steps:
      - id: inner
        map: ${{ .item }}
      - id: uses_inner
        map: ${{ .steps.inner + .steps.each }}
  - id: after
    map: ${{ .steps.inner }}
    on_error: before
  - id: before
    map: 1
    on_error: after
"#,
        );
        assert_eq!(
            errs,
            vec![
                "9:14: `.steps.each` is not available to step `uses_inner`: step `each` has not finished when its nested steps run; a step can read only the steps before it",
                "11:10: `.steps.inner` is not available to step `after`: step `inner` runs once per item inside for_each `each`; read the results through `.steps.each`",
                "13:5: `on_error: after`: step `after` is not a later step of the same list; on_error can only skip forward",
            ]
        );
    }

    #[test]
    fn the_file_name_names_the_workflow() {
        assert_eq!(default_name("workflows/order-status.yaml"), "order-status");
        assert_eq!(default_name("a.yml"), "a");
        let errs = errors("");
        assert_eq!(
            errs,
            vec!["1:1: the workflow file is empty; it needs at least `trigger` and `steps`"]
        );
    }

    #[test]
    fn approvals_read_their_settings_and_stay_out_of_loops() {
        with_scope(|scope| {
            let w = parse_for_test(
                "trigger: manual\nsteps:\n  - id: ok\n    approval: { message: \"Refund ${{ .input.amount }}?\", data: \"${{ .input }}\", timeout: 1h, on_timeout: fail }\n  - id: short\n    approval: Go ahead?\n",
                scope,
            )
            .unwrap();
            let StepKind::Approval(spec) = &w.steps[0].kind else {
                panic!("an approval step")
            };
            assert_eq!(spec.timeout, Some(Duration::from_secs(3600)));
            assert_eq!(spec.on_timeout, OnTimeout::Fail);
            assert!(spec.data.is_some());
            let StepKind::Approval(short) = &w.steps[1].kind else {
                panic!("an approval step")
            };
            assert_eq!((short.timeout, short.on_timeout), (None, OnTimeout::Reject));
        });
        assert_eq!(
            errors(
                "trigger: manual\nsteps:\n  - id: a\n    approval: { timeout: 0s, on_timeout: maybe, colour: red }\n  - id: each\n    for_each: [1]\n    steps:\n      - id: inner\n        approval: Sure?\n"
            ),
            vec![
                "4:15: `approval` needs `message`",
                "4:26: `approval.timeout` must be more than 0s",
                "4:42: `approval.on_timeout` must be `reject`, `approve` or `fail`",
                "4:49: unknown key `colour` in `approval`; expected one of: message, data, timeout, on_timeout",
                "8:9: step `inner`: an `approval` cannot run inside `for_each`; ask once, before or after the loop",
            ]
        );
    }
}
