//! What the core knows about connectors: their names, actions and a check of their settings.
//!
//! The core cannot depend on the connectors crate, yet `weft lint` must tell an unknown action or a
//! bad connection setting apart without any I/O. So each connector describes itself with a static
//! [`ConnectorSpec`], and the binary hands the list of them to [`crate::Project::load`] as a
//! [`Catalog`].

use crate::diag::Diagnostics;
use crate::yaml::Node;

/// One action of a connector, such as `request` of `http`.
#[derive(Debug)]
pub struct ActionSpec {
    /// Name used after the connection name in `uses: <connection>.<action>`.
    pub name: &'static str,
    /// One line saying what the action does.
    pub summary: &'static str,
    /// Keys the action accepts under `with:`.
    pub inputs: &'static [&'static str],
    /// Keys that must be present under `with:`.
    pub required: &'static [&'static str],
    /// Checks `with:` as written in the file, beyond known and required keys (such as "at most one
    /// of `body`, `text`, `form`", or "SQL text is fixed"). Receives the `with` node: a mapping, or a
    /// string that is one expression.
    pub check_inputs: fn(with: &Node, diags: &mut Diagnostics),
}

/// A connector type, such as `http`.
#[derive(Debug)]
pub struct ConnectorSpec {
    /// The `type:` of connections of this connector.
    pub type_name: &'static str,
    /// One line saying what the connector talks to.
    pub summary: &'static str,
    /// The actions steps can use.
    pub actions: &'static [ActionSpec],
    /// Checks a connection's settings (the whole mapping, `type` included) without I/O.
    pub check: fn(node: &Node, diags: &mut Diagnostics),
    /// How a workflow consumes this connector's messages with `trigger: { queue: … }`, if it can.
    pub consume: Option<ConsumeSpec>,
    /// What "test connection" does for a live connection, in words (such as "connects and sends
    /// PING"); `None` when the connector cannot check itself.
    pub probe: Option<&'static str>,
}

/// What a broker connector reads from a `queue` trigger.
#[derive(Debug)]
pub struct ConsumeSpec {
    /// Its own keys of the trigger (besides `connection`, `format` and `key`, which the core reads).
    pub keys: &'static [&'static str],
    /// Checks those settings without I/O: receives a mapping of only the connector's own keys.
    pub check: fn(settings: &Node, diags: &mut Diagnostics),
    /// What the broker offers as a message id that stays the same when a message is delivered
    /// again (the default de-duplication key), such as "the stream sequence"; `None` when there
    /// is none.
    pub message_id: Option<&'static str>,
}

impl ConnectorSpec {
    /// The action named `name`.
    pub fn action(&self, name: &str) -> Option<&'static ActionSpec> {
        self.actions.iter().find(|a| a.name == name)
    }
}

/// The connector types a project may use.
#[derive(Clone, Debug, Default)]
pub struct Catalog {
    specs: Vec<&'static ConnectorSpec>,
}

impl Catalog {
    /// A catalog without connectors (only built-in steps are available).
    pub fn empty() -> Catalog {
        Catalog::default()
    }

    /// A catalog of the given connectors.
    pub fn new(specs: Vec<&'static ConnectorSpec>) -> Catalog {
        Catalog { specs }
    }

    /// The connector for connections of `type_name`.
    pub fn get(&self, type_name: &str) -> Option<&'static ConnectorSpec> {
        self.specs
            .iter()
            .copied()
            .find(|s| s.type_name == type_name)
    }

    /// Every connector type name.
    pub fn type_names(&self) -> Vec<&'static str> {
        self.specs.iter().map(|s| s.type_name).collect()
    }
}

/// Names of the connections Weft provides itself, which `weft.yaml` may not define: `state` (the
/// conversation store, see [`STATE`]) and `kb` (the knowledge base, see [`KB`]).
pub const BUILTIN_CONNECTIONS: &[&str] = &["state", "kb"];

/// The built-in connection `name`, if it is one.
pub fn builtin(name: &str) -> Option<&'static ConnectorSpec> {
    match name {
        "state" => Some(&STATE),
        "kb" => Some(&KB),
        _ => None,
    }
}

/// `uses: state.get | state.set | state.delete`: a key–value store in Weft's own database, for
/// what a chatbot must remember between tool calls (a conversation's context, say).
///
/// ```yaml
/// - id: remember
///   uses: state.set
///   with:
///     namespace: conversation-${{ .input.conversation_id }}   # keys live in namespaces
///     key: last_order
///     value: ${{ .input.order_id }}                           # any JSON
///     ttl: 24h                                                # optional: forgotten after this long
/// - id: recall
///   uses: state.get                 # output: {found, value} (value null when not found)
///   with: { namespace: "conversation-${{ .input.conversation_id }}", key: last_order }
/// - id: forget
///   uses: state.delete              # output: {deleted}
///   with: { namespace: "conversation-${{ .input.conversation_id }}", key: last_order }
/// ```
///
/// `state.set` answers `{namespace, key, expires_at}` (milliseconds since the Unix epoch, or
/// null). An expired key reads as not found.
pub static STATE: ConnectorSpec = ConnectorSpec {
    probe: None,
    type_name: "state",
    summary: "Weft's key-value store for conversation state, in its own database",
    actions: &[
        ActionSpec {
            name: "get",
            summary: "read a key: {found, value}",
            inputs: &["namespace", "key"],
            required: &["namespace", "key"],
            check_inputs: no_input_check,
        },
        ActionSpec {
            name: "set",
            summary: "write a key, optionally with a time to live",
            inputs: &["namespace", "key", "value", "ttl"],
            required: &["namespace", "key", "value"],
            check_inputs: check_ttl,
        },
        ActionSpec {
            name: "delete",
            summary: "forget a key: {deleted}",
            inputs: &["namespace", "key"],
            required: &["namespace", "key"],
            check_inputs: no_input_check,
        },
    ],
    check: no_settings,
    consume: None,
};

/// `uses: kb.search`: the best passages of the project's knowledge base (`kb/`) for a question.
///
/// ```yaml
/// - id: answer
///   uses: kb.search
///   with:
///     query: ${{ .input.question }}
///     limit: 3              # default 3, at most 20
///     min_score: 1.0        # optional, default 0.75: scores are scaled so that a word
///                           # found in one passage only scores about 1
/// ```
///
/// The output is `{matched, passages: [{title, source, heading, text, score}]}`, best first;
/// `matched` is false when no passage reaches the threshold, so a workflow can hand the question
/// over to a person.
pub static KB: ConnectorSpec = ConnectorSpec {
    probe: None,
    type_name: "kb",
    summary: "the project's knowledge base (files in kb/)",
    actions: &[ActionSpec {
        name: "search",
        summary: "the best passages for a question: {matched, passages}",
        inputs: &["query", "limit", "min_score"],
        required: &["query"],
        check_inputs: no_input_check,
    }],
    check: no_settings,
    consume: None,
};

fn no_settings(_node: &Node, _diags: &mut Diagnostics) {}

/// A literal `ttl` must be a duration.
fn check_ttl(with: &Node, diags: &mut Diagnostics) {
    if let crate::yaml::Kind::Map(entries) = &with.kind
        && let Some((_, ttl)) = entries.iter().find(|(k, _)| k.name == "ttl")
        && let crate::yaml::Kind::Str(s) = &ttl.kind
        && !s.value.contains("${{")
    {
        match crate::duration::parse(&s.value) {
            Err(e) => diags.error(ttl.pos, format!("`ttl`: {e}")),
            Ok(d) if d.is_zero() => diags.error(ttl.pos, "`ttl` must be longer than zero"),
            Ok(_) => {}
        }
    }
}

/// An input check for actions that need none beyond known and required keys.
pub fn no_input_check(_with: &Node, _diags: &mut Diagnostics) {}

/// The keys of a `with:` mapping (none when it is an expression).
pub fn input_keys(with: &Node) -> Vec<&str> {
    match &with.kind {
        crate::yaml::Kind::Map(entries) => entries.iter().map(|(k, _)| k.name.as_str()).collect(),
        _ => Vec::new(),
    }
}
