//! What the core knows about connectors: their names, actions and a check of their settings.
//!
//! The core cannot depend on the connectors crate, yet `weft lint` must tell an unknown action or a
//! bad connection setting apart without any I/O. So each connector written in code describes
//! itself with a static [`ConnectorSpec`], and the binary hands the list of them to
//! [`crate::Project::load`] as a [`Catalog`]; connectors written as data
//! ([`crate::definition::Definition`]) join it with [`Catalog::define`]. Callers see either kind as
//! a [`Spec`].

use std::sync::Arc;

use crate::definition::{ActionDef, Definition};
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

/// What "test connection" does for a connection of a defined type (the `http` connector's check,
/// at the API's base URL).
pub const DEFINED_PROBE: &str = "sends GET to the API's base URL with the connection's credentials; any answer but 401, 403 or a 5xx passes";

/// A connector type the catalog knows: written in code (a connector crate's static
/// [`ConnectorSpec`]) or defined by a file ([`Definition`]). Cheap to clone.
#[derive(Clone, Debug)]
pub enum Spec {
    /// A connector written in code.
    Static(&'static ConnectorSpec),
    /// A connector defined by a file.
    Defined(Arc<Definition>),
}

/// One action of a [`Spec`].
#[derive(Clone, Copy, Debug)]
pub enum Action<'a> {
    /// An action written in code.
    Static(&'static ActionSpec),
    /// An action of a definition.
    Defined(&'a ActionDef),
}

impl Spec {
    /// The `type:` of its connections.
    pub fn type_name(&self) -> &str {
        match self {
            Spec::Static(s) => s.type_name,
            Spec::Defined(d) => &d.type_name,
        }
    }

    /// One line saying what it talks to.
    pub fn summary(&self) -> &str {
        match self {
            Spec::Static(s) => s.summary,
            Spec::Defined(d) => &d.summary,
        }
    }

    /// Its actions, in order (a defined connector's end with the raw `request`, where it has one).
    pub fn actions(&self) -> Vec<Action<'_>> {
        match self {
            Spec::Static(s) => s.actions.iter().map(Action::Static).collect(),
            Spec::Defined(d) => {
                let mut actions: Vec<Action<'_>> = d.actions.iter().map(Action::Defined).collect();
                if let Some(raw) = d.raw_request
                    && d.action(raw.name).is_none()
                {
                    actions.push(Action::Static(raw));
                }
                actions
            }
        }
    }

    /// The action named `name`.
    pub fn action(&self, name: &str) -> Option<Action<'_>> {
        self.actions().into_iter().find(|a| a.name() == name)
    }

    /// Checks a connection's settings (the whole mapping, `type` included) without I/O.
    pub fn check_settings(&self, node: &Node, diags: &mut Diagnostics) {
        match self {
            Spec::Static(s) => (s.check)(node, diags),
            Spec::Defined(d) => d.check_settings(node, diags),
        }
    }

    /// How a `queue` trigger consumes its messages, if it can (connectors written in code only).
    pub fn consume(&self) -> Option<&'static ConsumeSpec> {
        match self {
            Spec::Static(s) => s.consume.as_ref(),
            Spec::Defined(_) => None,
        }
    }

    /// What "test connection" does, if the connector can check itself.
    pub fn probe(&self) -> Option<&str> {
        match self {
            Spec::Static(s) => s.probe,
            Spec::Defined(_) => Some(DEFINED_PROBE),
        }
    }
}

impl<'a> Action<'a> {
    /// Its name, after the connection's in `uses:`.
    pub fn name(&self) -> &'a str {
        match self {
            Action::Static(a) => a.name,
            Action::Defined(a) => &a.name,
        }
    }

    /// One line saying what it does.
    pub fn summary(&self) -> &'a str {
        match self {
            Action::Static(a) => a.summary,
            Action::Defined(a) => &a.summary,
        }
    }

    /// The keys it accepts under `with:`.
    pub fn inputs(&self) -> Vec<&'a str> {
        match self {
            Action::Static(a) => a.inputs.to_vec(),
            Action::Defined(a) => a.input_names(),
        }
    }

    /// The keys that must be present under `with:`.
    pub fn required(&self) -> Vec<&'a str> {
        match self {
            Action::Static(a) => a.required.to_vec(),
            Action::Defined(a) => a.required_names(),
        }
    }

    /// Checks `with:` as written, beyond known and required keys (receives a mapping, or a string
    /// that is one expression).
    pub fn check_inputs(&self, with: &Node, diags: &mut Diagnostics) {
        match self {
            Action::Static(a) => (a.check_inputs)(with, diags),
            Action::Defined(a) => a.check_inputs(with, diags),
        }
    }
}

/// The connector types a project may use: those of the build, and those defined by files.
#[derive(Clone, Debug, Default)]
pub struct Catalog {
    specs: Vec<Spec>,
}

impl Catalog {
    /// A catalog without connectors (only built-in steps are available).
    pub fn empty() -> Catalog {
        Catalog::default()
    }

    /// A catalog of the given connectors written in code.
    pub fn new(specs: Vec<&'static ConnectorSpec>) -> Catalog {
        Catalog {
            specs: specs.into_iter().map(Spec::Static).collect(),
        }
    }

    /// Adds a defined connector. A type the catalog has already (from code, or defined earlier) is
    /// refused, with the reason.
    pub fn define(&mut self, mut definition: Definition) -> Result<(), String> {
        if let Some(known) = self.get(&definition.type_name) {
            let what = match known {
                Spec::Static(_) => "a connector of this build",
                Spec::Defined(_) => "another definition",
            };
            return Err(format!(
                "connector type `{}` is {what} already; choose another name",
                definition.type_name
            ));
        }
        // Connections of a defined type are `http` connections: they have its raw request too.
        definition.raw_request = match self.get("http") {
            Some(Spec::Static(http)) => http.action("request"),
            _ => None,
        };
        self.specs.push(Spec::Defined(Arc::new(definition)));
        Ok(())
    }

    /// The connector for connections of `type_name`.
    pub fn get(&self, type_name: &str) -> Option<&Spec> {
        self.specs.iter().find(|s| s.type_name() == type_name)
    }

    /// Every connector type name.
    pub fn type_names(&self) -> Vec<&str> {
        self.specs.iter().map(Spec::type_name).collect()
    }
}

/// Names of the connections Weft provides itself, which `weft.yaml` may not define: `state` (the
/// conversation store, see [`STATE`]) and `kb` (the knowledge base, see [`KB`]).
pub const BUILTIN_CONNECTIONS: &[&str] = &["state", "kb"];

/// The built-in connection `name`, if it is one.
pub fn builtin(name: &str) -> Option<Spec> {
    match name {
        "state" => Some(Spec::Static(&STATE)),
        "kb" => Some(Spec::Static(&KB)),
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
