//! A project: `weft.yaml` (settings and named connections) plus its workflows, read from the text of
//! its files.
//!
//! Reading the folder is the caller's job (this crate does no I/O); [`Project::load`] takes the files'
//! text as [`Sources`] and returns the checked project or every problem found in any file.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use crate::catalog::Catalog;
use crate::decode::{self, Fields};
use crate::diag::{Diagnostic, Diagnostics, did_you_mean};
use crate::trigger::Trigger;
use crate::workflow::{self, Scope, Workflow, is_name};
use crate::yaml::{self, Kind, Node, Pos};

/// The name of the project file.
pub const PROJECT_FILE: &str = "weft.yaml";
/// Keys of `weft.yaml`.
pub const PROJECT_KEYS: &[&str] = &[
    "name",
    "description",
    "vars",
    "env",
    "limits",
    "retention",
    "mcp",
    "console",
    "connections",
];
/// Keys of `console:` in `weft.yaml`.
pub const CONSOLE_KEYS: &[&str] = &["session_lifetime", "sign_in_attempts_per_minute"];
/// Keys of `mcp:` in `weft.yaml`.
pub const MCP_KEYS: &[&str] = &["allowed_hosts", "allowed_origins"];
/// Keys of `retention:` in `weft.yaml`.
pub const RETENTION_KEYS: &[&str] = &["runs"];
/// Keys of `limits:` in `weft.yaml`.
pub const LIMIT_KEYS: &[&str] = &[
    "inline_output_bytes",
    "max_output_bytes",
    "max_context_bytes",
    "max_for_each_items",
    "max_call_depth",
    "token_requests_per_minute",
    "webhook_requests_per_minute",
    "max_request_bytes",
    "call_timeout",
    "expression_timeout",
    "expression_memory_bytes",
    "expression_stack_bytes",
    "request_header_timeout",
    "request_body_timeout",
    "max_connections",
    "webhook_buffer_bytes",
];

/// The text of a project's files.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Sources {
    /// `weft.yaml`: its path relative to the project folder and its text.
    pub project: (String, String),
    /// `workflows/*.yaml`: path relative to the project folder and text, in any order.
    pub workflows: Vec<(String, String)>,
    /// Whether the project has a knowledge base (a `kb/` folder), which `kb.search` steps need.
    pub has_kb: bool,
    /// `connectors/*.yaml`: connector definitions (see [`crate::definition`]), path and text.
    pub connectors: Vec<(String, String)>,
}

impl Sources {
    /// Sources with the given project file and no workflows.
    pub fn new(project_file: impl Into<String>, text: impl Into<String>) -> Sources {
        Sources {
            project: (project_file.into(), text.into()),
            workflows: Vec::new(),
            has_kb: false,
            connectors: Vec::new(),
        }
    }

    /// Adds a workflow file.
    pub fn add_workflow(&mut self, file: impl Into<String>, text: impl Into<String>) {
        self.workflows.push((file.into(), text.into()));
    }

    /// Adds a connector definition file.
    pub fn add_connector(&mut self, file: impl Into<String>, text: impl Into<String>) {
        self.connectors.push((file.into(), text.into()));
    }
}

/// Project-wide settings from `weft.yaml`.
#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    /// The project's name: `name:` or the folder's name.
    pub name: Option<String>,
    /// What the project is for.
    pub description: Option<String>,
    /// Constants available to every workflow as `.vars`.
    pub vars: serde_json::Map<String, Value>,
    /// Names of the environment variables that expressions may read as `.env`. No other variable is
    /// visible, so secrets in the environment stay out of run data.
    pub env: Vec<String>,
    /// Size and depth limits.
    pub limits: Limits,
    /// How long finished runs are kept: `retention: { runs: 30d }`. A running hub deletes runs
    /// that finished longer ago than this, with their step data, and gives the disk space back.
    /// Without it, runs are kept until deleted.
    pub retention: Option<std::time::Duration>,
    /// Host names (optionally `host:port`) that MCP clients may reach `/mcp` under:
    /// `mcp: { allowed_hosts: [hub.example.com] }`. The `Host` header of every MCP request must
    /// name one of them, a guard against DNS rebinding; without the setting, only loopback names
    /// (localhost, 127.0.0.1, ::1) are accepted. Read when `weft serve` starts.
    pub mcp_allowed_hosts: Vec<String>,
    /// `mcp.allowed_origins`: the browser origins (`https://chat.example.com`) whose pages may call
    /// `/mcp`; a request with another `Origin` gets 403. Default: none besides the origins on the
    /// allowed host names (loopback ones when `allowed_hosts` is empty).
    pub mcp_allowed_origins: Vec<String>,
    /// The web console's sign-in: `console: { session_lifetime: 12h }`.
    pub console: ConsoleSettings,
}

/// How people sign in to the web console; keys under `console:` in `weft.yaml`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsoleSettings {
    /// How long a console session lasts after its sign-in (never longer than the token it was
    /// signed in with). Between 5m and 30d; default 12h.
    pub session_lifetime: std::time::Duration,
    /// Most failed sign-ins one client address may make per minute (all of them at once, then
    /// one every `60 / n` seconds); once they are spent, every sign-in from the address gets 429
    /// with `Retry-After`, the right token too. Default 10.
    pub sign_in_attempts_per_minute: u64,
}

impl Default for ConsoleSettings {
    fn default() -> Self {
        ConsoleSettings {
            session_lifetime: std::time::Duration::from_secs(12 * 3600),
            sign_in_attempts_per_minute: 10,
        }
    }
}

/// Size and depth limits; each is a key under `limits:` in `weft.yaml`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Step outputs larger than this many bytes (as JSON) are stored once, outside the run's rows,
    /// and referenced. Default 65,536.
    pub inline_output_bytes: u64,
    /// A step output larger than this many bytes fails the step with an explicit error; nothing is
    /// cut short. Default 16,777,216 (16 MiB).
    pub max_output_bytes: u64,
    /// Largest run context: the sum of every step output one run has stored (the steps inside
    /// `for_each` items included), as JSON. The step whose output would pass it fails with an
    /// explicit error. Default 67,108,864 (64 MiB).
    pub max_context_bytes: u64,
    /// Most items one `for_each` may iterate over. Default 10,000.
    pub max_for_each_items: u64,
    /// Deepest chain of `call` steps (a run calling a run calling a run …). Default 8.
    pub max_call_depth: u64,
    /// Most requests one API token may make per minute (`/api`, `/mcp`, `/metrics`); more get 429
    /// with `Retry-After`. Default 6,000 (100 a second, with bursts of ten seconds' worth).
    pub token_requests_per_minute: u64,
    /// Most requests one webhook path may take per minute; more get 429 with `Retry-After` (and
    /// no run). Default 600,000 (a guard against floods, far above what one hub ingests).
    pub webhook_requests_per_minute: u64,
    /// Largest request body `/api` and `/mcp` accept, in bytes; a larger one gets 413 and changes
    /// nothing. Default 1,048,576 (1 MiB). Webhooks have their own `max_body_bytes`.
    pub max_request_bytes: u64,
    /// Longest time one call of a connection's action may take when its step sets no `timeout`,
    /// for every connector (HTTP, SQL, brokers, mail); a call that takes longer fails the attempt
    /// as retryable. Default 5m.
    pub call_timeout: std::time::Duration,
    /// Longest time one evaluation of a step's expressions (its `with:`, `map:`, condition …) may
    /// take; an expression still running then is stopped and its step fails with kind `limit`
    /// (not retried). Wall-clock time. Default 10s.
    pub expression_timeout: std::time::Duration,
    /// Most memory one evaluation may hold beyond its input, in bytes; past it the expression is
    /// stopped (kind `limit`). A single operation whose result would pass it (a string repeated,
    /// split or matched many times) is refused before it starts. Default 134,217,728 (128 MiB).
    pub expression_memory_bytes: u64,
    /// How deep an expression may recurse, as the bytes of stack its evaluation may use; deeper
    /// recursion is stopped (kind `limit`). Default 67,108,864 (64 MiB: several thousand levels
    /// of a recursive jq function).
    pub expression_stack_bytes: u64,
    /// Longest time a client may take to send a request's headers, the first on a connection and
    /// every later one (a kept-alive connection idle for this long is closed). Default 10s.
    pub request_header_timeout: std::time::Duration,
    /// Longest time a client may take to send a request's body, from the end of its headers; a
    /// slower one gets 408 and nothing is done. Default 30s.
    pub request_body_timeout: std::time::Duration,
    /// Most connections the hub serves at once; one more is answered 503 with `Retry-After` and
    /// closed. Default 1,024.
    pub max_connections: u64,
    /// Most bytes of webhook bodies the hub holds at once, while they arrive and until they are
    /// answered (they come before anyone is authenticated); a webhook request that would pass it
    /// gets 503 with `Retry-After` and starts nothing. Default 67,108,864 (64 MiB).
    pub webhook_buffer_bytes: u64,
}

impl Limits {
    /// The limits every evaluation of an expression runs under.
    pub fn expressions(&self) -> crate::expr::EvalLimits {
        crate::expr::EvalLimits {
            timeout: self.expression_timeout,
            memory_bytes: self.expression_memory_bytes,
            stack_bytes: self.expression_stack_bytes,
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            inline_output_bytes: 64 * 1024,
            max_output_bytes: 16 * 1024 * 1024,
            max_context_bytes: 64 * 1024 * 1024,
            max_for_each_items: 10_000,
            max_call_depth: 8,
            token_requests_per_minute: 6_000,
            webhook_requests_per_minute: 600_000,
            max_request_bytes: 1024 * 1024,
            call_timeout: std::time::Duration::from_secs(300),
            expression_timeout: crate::expr::EvalLimits::default().timeout,
            expression_memory_bytes: crate::expr::EvalLimits::default().memory_bytes,
            expression_stack_bytes: crate::expr::EvalLimits::default().stack_bytes,
            request_header_timeout: std::time::Duration::from_secs(10),
            request_body_timeout: std::time::Duration::from_secs(30),
            max_connections: 1024,
            webhook_buffer_bytes: 64 << 20,
        }
    }
}

/// A named connection from `weft.yaml`. Its settings are checked by its connector when the project
/// is loaded and turned into a live client by the connector when the engine starts.
#[derive(Clone, Debug, PartialEq)]
pub struct Connection {
    /// The connection's name, used in `uses: <name>.<action>`.
    pub name: String,
    /// The connector type (`type:`).
    pub type_name: String,
    /// The connection's settings as written, `type` included.
    pub node: Node,
    /// Where the connection is defined.
    pub pos: Pos,
    /// `rate_limit:`, which any connection may carry; it is not part of `node`.
    pub rate_limit: Option<RateLimit>,
}

/// How hard a connection may be used, across every run of the hub:
/// `rate_limit: { requests: 10, per: 1s, concurrency: 4 }`. Either part may be left out. A call
/// waits for its turn (the wait counts toward the step's timeout).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RateLimit {
    /// At most `requests` calls start within any `per`.
    pub rate: Option<(u32, Duration)>,
    /// At most this many calls at once.
    pub concurrency: Option<u32>,
}

/// Keys of `rate_limit`.
pub const RATE_LIMIT_KEYS: &[&str] = &["requests", "per", "concurrency"];

pub(crate) fn read_rate_limit(node: &Node, diags: &mut Diagnostics) -> Option<RateLimit> {
    let mut f = Fields::new(node, "`rate_limit`", RATE_LIMIT_KEYS, diags)?;
    let requests = f
        .get("requests")
        .and_then(|n| decode::integer(n, "`rate_limit.requests`", 1, 1_000_000, diags));
    let per = f
        .get("per")
        .and_then(|n| decode::duration(n, "`rate_limit.per`", diags));
    let concurrency = f
        .get("concurrency")
        .and_then(|n| decode::integer(n, "`rate_limit.concurrency`", 1, 10_000, diags));
    let pos = f.pos();
    let (has_requests, has_per, has_concurrency) =
        (f.has("requests"), f.has("per"), f.has("concurrency"));
    f.finish(diags);
    if has_requests != has_per {
        diags.error(
            pos,
            "`rate_limit` needs `requests` and `per` together, such as `{ requests: 10, per: 1s }`",
        );
        return None;
    }
    if !has_requests && !has_concurrency {
        diags.error(
            pos,
            "`rate_limit` needs `requests` and `per`, `concurrency`, or both",
        );
        return None;
    }
    if per.is_some_and(|p| p.is_zero()) {
        diags.error(pos, "`rate_limit.per` must be longer than zero");
        return None;
    }
    Some(RateLimit {
        rate: requests.zip(per).map(|(r, p)| (r as u32, p)),
        concurrency: concurrency.map(|c| c as u32),
    })
}

/// A checked project, ready to run.
#[derive(Clone, Debug)]
pub struct Project {
    /// Project settings.
    pub settings: Settings,
    /// Connections by name.
    pub connections: BTreeMap<String, Connection>,
    /// Workflows by name.
    pub workflows: BTreeMap<String, Arc<Workflow>>,
    /// Whether the project has a knowledge base (`kb/`).
    pub has_kb: bool,
    /// The connector types the project was checked with: the build's, and those its
    /// `connectors/` folder defines.
    pub catalog: Catalog,
}

impl Project {
    /// Reads and checks every file of a project. Returns every problem of every file when there is any.
    pub fn load(sources: &Sources, catalog: &Catalog) -> Result<Project, Vec<Diagnostic>> {
        let (project, problems) = Project::load_partial(sources, catalog);
        if problems.is_empty() {
            Ok(project)
        } else {
            Err(problems)
        }
    }

    /// Reads and checks every file of a project, returning the parts that are valid (the workflows
    /// without problems) together with every problem found, for tools that go on checking.
    pub fn load_partial(sources: &Sources, catalog: &Catalog) -> (Project, Vec<Diagnostic>) {
        let (catalog, mut problems) = with_definitions(catalog, &sources.connectors);
        let catalog = &catalog;
        let (file, text) = &sources.project;
        let mut diags = Diagnostics::new(file.clone());
        let (settings, connections) = read_project_file(text, catalog, &mut diags);
        problems.extend(diags.into_vec());

        // Workflow names first, so that `call` steps can be checked against all of them.
        let mut names: BTreeMap<String, String> = BTreeMap::new();
        for (file, text) in &sources.workflows {
            let name = peek_name(file, text);
            if let Some(other) = names.get(&name) {
                let mut d = Diagnostics::new(file.clone());
                d.error(
                    Pos::new(1, 1),
                    format!("workflow name `{name}` is also used by {other}"),
                );
                problems.extend(d.into_vec());
            } else {
                names.insert(name, file.clone());
            }
        }
        let workflow_names: BTreeSet<String> = names.keys().cloned().collect();
        let scope = Scope {
            connections: &connections,
            catalog,
            workflows: &workflow_names,
            has_kb: sources.has_kb,
        };
        let mut workflows = BTreeMap::new();
        let mut sorted: Vec<&(String, String)> = sources.workflows.iter().collect();
        sorted.sort();
        for (file, text) in sorted {
            match Workflow::parse(file, text, &scope) {
                Ok(w) => {
                    workflows.insert(w.name.clone(), Arc::new(w));
                }
                Err(ds) => problems.extend(ds),
            }
        }
        check_hook_paths(&mut workflows, &mut problems);
        let project = Project {
            settings,
            connections,
            workflows,
            has_kb: sources.has_kb,
            catalog: catalog.clone(),
        };
        (project, problems)
    }

    /// Reads and checks a workflow text against this project, as when a run resumes on the version
    /// it started with.
    pub fn parse_workflow(&self, file: &str, source: &str) -> Result<Workflow, Vec<Diagnostic>> {
        let names: BTreeSet<String> = self.workflows.keys().cloned().collect();
        let scope = Scope {
            connections: &self.connections,
            catalog: &self.catalog,
            workflows: &names,
            has_kb: self.has_kb,
        };
        Workflow::parse(file, source, &scope)
    }
}

/// Two webhook workflows may not listen on one path: the later file (by name) is reported and left
/// out, so the first keeps serving.
fn check_hook_paths(
    workflows: &mut BTreeMap<String, Arc<Workflow>>,
    problems: &mut Vec<Diagnostic>,
) {
    let mut by_file: Vec<&Arc<Workflow>> = workflows.values().collect();
    by_file.sort_by(|a, b| a.file.cmp(&b.file));
    let mut seen: BTreeMap<&str, &Arc<Workflow>> = BTreeMap::new();
    let mut clashes = Vec::new();
    for w in by_file {
        if let Trigger::Webhook(hook) = &w.trigger {
            if let Some(first) = seen.get(hook.path.as_str()) {
                let mut d = Diagnostics::new(w.file.clone());
                d.error(
                    w.trigger_pos,
                    format!(
                        "webhook path `{}` is also used by workflow `{}` ({}); give this one its own `path`",
                        hook.path, first.name, first.file
                    ),
                );
                problems.extend(d.into_vec());
                clashes.push(w.name.clone());
            } else {
                seen.insert(&hook.path, w);
            }
        }
    }
    for name in clashes {
        workflows.remove(&name);
    }
}

/// The name a workflow file declares, or its file name, without checking anything else.
fn peek_name(file: &str, text: &str) -> String {
    if let Ok(node) = yaml::parse(text)
        && let Kind::Map(entries) = &node.kind
        && let Some((_, v)) = entries.iter().find(|(k, _)| k.name == "name")
        && let Some(name) = v.as_str()
    {
        return name.to_string();
    }
    workflow::default_name(file)
}

/// `catalog` with the connector definitions of `files` added, and the problems of those files.
fn with_definitions(catalog: &Catalog, files: &[(String, String)]) -> (Catalog, Vec<Diagnostic>) {
    let mut catalog = catalog.clone();
    let mut problems = Vec::new();
    let mut sorted: Vec<&(String, String)> = files.iter().collect();
    sorted.sort();
    for (file, text) in sorted {
        let mut diags = Diagnostics::new(file.clone());
        let node = match crate::yaml::parse(text) {
            Ok(node) => node,
            Err(e) => {
                diags.error(e.pos, e.message);
                problems.extend(diags.into_vec());
                continue;
            }
        };
        let definition = crate::definition::decode(&node, &mut diags);
        if let Some(definition) = definition
            && diags.is_empty()
            && let Err(why) = catalog.define(definition)
        {
            diags.error(node.pos, why);
        }
        problems.extend(diags.into_vec());
    }
    (catalog, problems)
}

fn read_project_file(
    text: &str,
    catalog: &Catalog,
    diags: &mut Diagnostics,
) -> (Settings, BTreeMap<String, Connection>) {
    let mut settings = Settings {
        name: None,
        description: None,
        vars: serde_json::Map::new(),
        env: Vec::new(),
        limits: Limits::default(),
        retention: None,
        mcp_allowed_hosts: Vec::new(),
        mcp_allowed_origins: Vec::new(),
        console: ConsoleSettings::default(),
    };
    let mut connections = BTreeMap::new();
    let root = match yaml::parse(text) {
        Ok(root) => root,
        Err(e) => {
            diags.error(e.pos, e.message);
            return (settings, connections);
        }
    };
    if matches!(root.kind, Kind::Null) {
        return (settings, connections);
    }
    let Some(mut fields) = Fields::new(&root, "weft.yaml", PROJECT_KEYS, diags) else {
        return (settings, connections);
    };
    settings.name = fields
        .get("name")
        .and_then(|n| decode::string(n, "`name`", diags));
    settings.description = fields
        .get("description")
        .and_then(|n| decode::string(n, "`description`", diags));
    if let Some(node) = fields.get("vars") {
        match node.to_json() {
            Value::Object(map) => settings.vars = map,
            _ => diags.error(
                node.pos,
                format!("`vars` must be a mapping, found {}", node.kind_name()),
            ),
        }
    }
    if let Some(node) = fields.get("env") {
        for item in decode::list(node, "`env`", diags).unwrap_or_default() {
            if let Some(name) = decode::string(item, "an `env` entry", diags) {
                if name.is_empty() || name.contains('=') {
                    diags.error(
                        item.pos,
                        format!("`{name}` is not an environment variable name"),
                    );
                } else {
                    settings.env.push(name);
                }
            }
        }
    }
    if let Some(node) = fields.get("limits") {
        read_limits(node, &mut settings.limits, diags);
    }
    if let Some(node) = fields.get("mcp")
        && let Some(mut f) = Fields::new(node, "`mcp`", MCP_KEYS, diags)
    {
        if let Some(n) = f.get("allowed_hosts")
            && let Some(items) = decode::list(n, "`mcp.allowed_hosts`", diags)
        {
            for item in items {
                if let Some(host) = decode::string(item, "a host name", diags) {
                    settings.mcp_allowed_hosts.push(host);
                }
            }
        }
        if let Some(n) = f.get("allowed_origins")
            && let Some(items) = decode::list(n, "`mcp.allowed_origins`", diags)
        {
            for item in items {
                if let Some(origin) = decode::string(item, "an origin", diags) {
                    let ok = origin.split_once("://").is_some_and(|(scheme, rest)| {
                        matches!(scheme, "http" | "https")
                            && !rest.is_empty()
                            && !rest.contains('/')
                    });
                    if ok {
                        settings
                            .mcp_allowed_origins
                            .push(origin.to_ascii_lowercase());
                    } else {
                        diags.error(
                            item.pos,
                            format!("`{origin}` is not an origin; write the scheme, host and port only, such as `https://chat.example.com`"),
                        );
                    }
                }
            }
        }
        f.finish(diags);
    }
    if let Some(node) = fields.get("console")
        && let Some(mut f) = Fields::new(node, "`console`", CONSOLE_KEYS, diags)
    {
        if let Some(n) = f.get("session_lifetime") {
            let (min, max) = (300, 30 * 86_400);
            match decode::duration(n, "`console.session_lifetime`", diags) {
                Some(d) if (min..=max).contains(&d.as_secs()) => {
                    settings.console.session_lifetime = d;
                }
                Some(_) => diags.error(n.pos, "`console.session_lifetime` must be from 5m to 30d"),
                None => {}
            }
        }
        if let Some(n) = f.get("sign_in_attempts_per_minute")
            && let Some(v) =
                decode::integer(n, "`console.sign_in_attempts_per_minute`", 1, 10_000, diags)
        {
            settings.console.sign_in_attempts_per_minute = v;
        }
        f.finish(diags);
    }
    if let Some(node) = fields.get("retention")
        && let Some(mut f) = Fields::new(node, "`retention`", RETENTION_KEYS, diags)
    {
        if let Some(n) = f.get("runs") {
            match decode::duration(n, "`retention.runs`", diags) {
                Some(d) if d >= std::time::Duration::from_secs(60) => settings.retention = Some(d),
                Some(_) => diags.error(n.pos, "`retention.runs` must be at least 1m"),
                None => {}
            }
        }
        f.finish(diags);
    }
    if let Some(node) = fields.get("connections") {
        for (key, value) in decode::entries(node, "`connections`", diags).unwrap_or_default() {
            if !is_name(&key.name) {
                diags.error(
                    key.pos,
                    format!("connection name `{}` may hold only letters, digits, `_` and `-`, and must start with a letter", key.name),
                );
                continue;
            }
            if crate::catalog::BUILTIN_CONNECTIONS.contains(&key.name.as_str()) {
                diags.error(
                    key.pos,
                    format!("`{}` is a connection Weft provides itself (`uses: {}.…`); give yours another name", key.name, key.name),
                );
                continue;
            }
            if let Some(connection) = read_connection(&key.name, value, catalog, diags) {
                connections.insert(key.name.clone(), connection);
            }
        }
    }
    fields.finish(diags);
    (settings, connections)
}

fn read_limits(node: &Node, limits: &mut Limits, diags: &mut Diagnostics) {
    let Some(mut f) = Fields::new(node, "`limits`", LIMIT_KEYS, diags) else {
        return;
    };
    let mut number = |key: &str, min: u64, max: u64, slot: &mut u64, f: &mut Fields<'_>| {
        if let Some(n) = f.get(key)
            && let Some(v) = decode::integer(n, &format!("`limits.{key}`"), min, max, diags)
        {
            *slot = v;
        }
    };
    number(
        "inline_output_bytes",
        0,
        1 << 30,
        &mut limits.inline_output_bytes,
        &mut f,
    );
    number(
        "max_output_bytes",
        1,
        1 << 32,
        &mut limits.max_output_bytes,
        &mut f,
    );
    number(
        "max_context_bytes",
        1,
        1 << 36,
        &mut limits.max_context_bytes,
        &mut f,
    );
    number(
        "max_for_each_items",
        1,
        10_000_000,
        &mut limits.max_for_each_items,
        &mut f,
    );
    number("max_call_depth", 1, 100, &mut limits.max_call_depth, &mut f);
    number(
        "token_requests_per_minute",
        1,
        10_000_000,
        &mut limits.token_requests_per_minute,
        &mut f,
    );
    number(
        "max_request_bytes",
        1024,
        64 * 1024 * 1024,
        &mut limits.max_request_bytes,
        &mut f,
    );
    number(
        "webhook_requests_per_minute",
        1,
        10_000_000,
        &mut limits.webhook_requests_per_minute,
        &mut f,
    );
    number(
        "expression_memory_bytes",
        1 << 20,
        1 << 32,
        &mut limits.expression_memory_bytes,
        &mut f,
    );
    number(
        "expression_stack_bytes",
        1 << 20,
        1 << 30,
        &mut limits.expression_stack_bytes,
        &mut f,
    );
    number(
        "max_connections",
        1,
        1_000_000,
        &mut limits.max_connections,
        &mut f,
    );
    number(
        "webhook_buffer_bytes",
        1 << 20,
        1 << 32,
        &mut limits.webhook_buffer_bytes,
        &mut f,
    );
    for (key, slot) in [
        ("request_header_timeout", &mut limits.request_header_timeout),
        ("request_body_timeout", &mut limits.request_body_timeout),
    ] {
        if let Some(n) = f.get(key) {
            match decode::duration(n, &format!("`limits.{key}`"), diags) {
                Some(d) if d < std::time::Duration::from_secs(1) => {
                    diags.error(n.pos, format!("`limits.{key}` must be at least 1s"));
                }
                Some(d) => *slot = d,
                None => {}
            }
        }
    }
    if let Some(n) = f.get("expression_timeout") {
        match decode::duration(n, "`limits.expression_timeout`", diags) {
            Some(d) if d < std::time::Duration::from_millis(10) => {
                diags.error(n.pos, "`limits.expression_timeout` must be at least 10ms");
            }
            Some(d) => limits.expression_timeout = d,
            None => {}
        }
    }
    if let Some(n) = f.get("call_timeout") {
        match decode::duration(n, "`limits.call_timeout`", diags) {
            Some(d) if d < std::time::Duration::from_secs(1) => {
                diags.error(n.pos, "`limits.call_timeout` must be at least 1s");
            }
            Some(d) => limits.call_timeout = d,
            None => {}
        }
    }
    f.finish(diags);
}

fn read_connection(
    name: &str,
    node: &Node,
    catalog: &Catalog,
    diags: &mut Diagnostics,
) -> Option<Connection> {
    let Kind::Map(entries) = &node.kind else {
        diags.error(
            node.pos,
            format!(
                "connection `{name}` must be a mapping with a `type`, found {}",
                node.kind_name()
            ),
        );
        return None;
    };
    let Some((_, type_node)) = entries.iter().find(|(k, _)| k.name == "type") else {
        diags.error(
            node.pos,
            format!("connection `{name}` needs a `type`, such as `type: http`"),
        );
        return None;
    };
    let type_name = decode::string(type_node, "`type`", diags)?;
    let Some(spec) = catalog.get(&type_name) else {
        let known = catalog.type_names();
        let hint = did_you_mean(&type_name, known.iter().copied())
            .map(|h| format!("; did you mean `{h}`?"))
            .unwrap_or_else(|| format!("; available types: {}", known.join(", ")));
        diags.error(
            type_node.pos,
            format!("unknown connection type `{type_name}`{hint}"),
        );
        return None;
    };
    // `rate_limit` belongs to every connection type; the connector sees the rest.
    let rate_limit = entries
        .iter()
        .find(|(k, _)| k.name == "rate_limit")
        .and_then(|(_, v)| read_rate_limit(v, diags));
    let node = Node {
        pos: node.pos,
        kind: Kind::Map(
            entries
                .iter()
                .filter(|(k, _)| k.name != "rate_limit")
                .cloned()
                .collect(),
        ),
    };
    spec.check_settings(&node, diags);
    Some(Connection {
        name: name.to_string(),
        type_name,
        pos: node.pos,
        node,
        rate_limit,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(project: &str, workflows: &[(&str, &str)]) -> Result<Project, Vec<String>> {
        let mut sources = Sources::new("weft.yaml", project);
        for (f, t) in workflows {
            sources.add_workflow(*f, *t);
        }
        Project::load(&sources, &Catalog::empty())
            .map_err(|ds| ds.iter().map(|d| d.to_string()).collect())
    }

    #[test]
    fn any_connection_may_carry_a_rate_limit() {
        static ANY: crate::ConnectorSpec = crate::ConnectorSpec {
            probe: None,
            type_name: "any",
            summary: "test",
            actions: &[],
            check: |node, diags| {
                if let Some(mut f) = Fields::new(node, "any connection", &["type", "url"], diags) {
                    f.get("type");
                    f.get("url");
                    f.finish(diags);
                }
            },
            consume: None,
        };
        let catalog = Catalog::new(vec![&ANY]);
        let load = |text: &str| {
            Project::load(&Sources::new("weft.yaml", text), &catalog)
                .map_err(|ds| ds.iter().map(|d| d.to_string()).collect::<Vec<_>>())
        };
        let p = load("connections:\n  a: {type: any, url: x, rate_limit: {requests: 10, per: 1s, concurrency: 4}}\n  b: {type: any}\n").unwrap();
        assert_eq!(
            p.connections["a"].rate_limit,
            Some(RateLimit {
                rate: Some((10, Duration::from_secs(1))),
                concurrency: Some(4)
            })
        );
        assert_eq!(p.connections["b"].rate_limit, None);
        assert_eq!(
            load("connections:\n  a: {type: any, rate_limit: {requests: 10}}\n  b: {type: any, rate_limit: {}}\n  c: {type: any, rate_limit: {burst: 3, concurrency: 0}}\n").unwrap_err(),
            vec![
                "weft.yaml:2:30: `rate_limit` needs `requests` and `per` together, such as `{ requests: 10, per: 1s }`",
                "weft.yaml:3:30: `rate_limit` needs `requests` and `per`, `concurrency`, or both",
                "weft.yaml:4:31: unknown key `burst` in `rate_limit`; expected one of: requests, per, concurrency",
                "weft.yaml:4:54: `rate_limit.concurrency` must be a whole number from 1 to 10000, found 0",
            ]
        );
    }

    #[test]
    fn loads_settings_and_workflows() {
        let p = load(
            "name: demo\nvars: {region: eu}\nenv: [SHOP_URL]\nlimits: {max_for_each_items: 50}\n",
            &[
                (
                    "workflows/a.yaml",
                    "trigger: manual\nsteps: [{id: x, call: b}]\n",
                ),
                (
                    "workflows/b.yaml",
                    "trigger: manual\nsteps: [{id: y, map: 1}]\n",
                ),
            ],
        )
        .unwrap();
        assert_eq!(p.settings.name.as_deref(), Some("demo"));
        assert_eq!(p.settings.env, vec!["SHOP_URL"]);
        assert_eq!(p.settings.limits.max_for_each_items, 50);
        assert_eq!(p.workflows.keys().collect::<Vec<_>>(), vec!["a", "b"]);
    }

    #[test]
    fn collects_problems_of_every_file() {
        let errs = load(
            "limits: {max_output_bytes: -1}\nconnections:\n  shop: {type: htp}\n",
            &[
                (
                    "workflows/a.yaml",
                    "trigger: manual\nsteps: [{id: x, uses: shop.request}]\n",
                ),
                (
                    "workflows/b.yaml",
                    "name: a\ntrigger: manual\nsteps: [{id: y, map: 1}]\n",
                ),
            ],
        )
        .unwrap_err();
        assert_eq!(
            errs,
            vec![
                "weft.yaml:1:28: `limits.max_output_bytes` must be a whole number from 1 to 4294967296, found -1",
                "weft.yaml:3:16: unknown connection type `htp`; available types: ",
                "workflows/b.yaml:1:1: workflow name `a` is also used by workflows/a.yaml",
                "workflows/a.yaml:2:23: unknown connection `shop`; weft.yaml defines no connections",
            ]
        );
    }

    #[test]
    fn two_webhooks_may_not_share_a_path() {
        let errs = load(
            "",
            &[
                (
                    "workflows/a.yaml",
                    "trigger: {webhook: {path: orders}}\nsteps: [{id: x, map: 1}]\n",
                ),
                (
                    "workflows/orders.yaml",
                    "trigger: webhook\nsteps: [{id: y, map: 1}]\n",
                ),
            ],
        )
        .unwrap_err();
        assert_eq!(
            errs,
            vec![
                "workflows/orders.yaml:1:10: webhook path `orders` is also used by workflow `a` (workflows/a.yaml); give this one its own `path`"
            ]
        );
    }
}
