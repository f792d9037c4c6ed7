//! Triggers: what starts the runs of a workflow, as written under `trigger:`. This module is the
//! reference of their settings.
//!
//! ```yaml
//! trigger: manual                      # weft run, the API, or a `call` step
//!
//! trigger:
//!   webhook:                           # POST /hooks/<path>
//!     path: shop/orders                # default: the workflow's name
//!     signature:                       # optional; a request without a valid one gets 401
//!       preset: github                 # standard-webhooks | github | stripe | shopify | slack | zendesk | hmac
//!       secret: { env: GITHUB_WEBHOOK_SECRET }
//!     dedupe: X-GitHub-Delivery        # header whose value identifies a delivery (default per preset)
//!     respond: async                   # async: 202 {run_id} once committed; sync: the run's output
//!     timeout: 10s                     # sync: answer 202 when the run takes longer than this
//!     max_body_bytes: 1048576
//!     input:                           # optional JSON Schema of the body: one that does not match
//!       type: object                   # gets 422 with every problem and starts nothing
//!       required: [id]
//!
//! trigger:
//!   schedule:
//!     cron: "0 */5 * * * *"            # 5 fields, or 6 with seconds first
//!     timezone: Europe/Berlin          # default UTC
//!     missed: skip                     # slots missed while the hub was down: skip | once
//!     overlap: skip                    # when the previous run is unfinished: allow | skip | queue
//!
//! trigger:
//!   poll:                              # asks an HTTP API for new items every interval
//!     every: 1m                        # at least 1s
//!     uses: shop.request               # an action of a connection, as in a step
//!     with:                            # its inputs, over {cursor, vars, env}
//!       path: /orders.json
//!       query: { updated_at_min: "${{ .cursor // \"1970-01-01T00:00:00Z\" }}" }
//!     items: ${{ .response.body.orders }}          # the new items, over {response, cursor, vars, env}
//!     key: ${{ .item.id }}-${{ .item.updated_at }} # one run per key, ever, over {item, …}
//!     cursor: ${{ [.items[].updated_at] | max }}   # the next .cursor, over {items, response, cursor, …}
//! ```
//!
//! Everything here is pure: cron expressions and time zones are checked and evaluated against the
//! time zone database compiled into the binary, so `weft lint` gives the same answer everywhere.

use std::sync::Arc;
use std::time::Duration;

use crate::decode::{self, Fields};
use crate::diag::{Diagnostics, did_you_mean};
use crate::expr::{Expr, Template};
use crate::secret::SecretRef;
pub use crate::tool::ToolTrigger;
use crate::workflow::{Scope, check_uses};
use crate::yaml::{Kind, Node, Pos};

/// Trigger types.
pub const TRIGGER_TYPES: &[&str] = &["manual", "webhook", "schedule", "poll", "queue", "tool"];
/// Keys of a `webhook` trigger.
pub const WEBHOOK_KEYS: &[&str] = &[
    "uses",
    "path",
    "signature",
    "dedupe",
    "respond",
    "timeout",
    "max_body_bytes",
    "input",
];
/// Keys of a webhook's `signature`.
pub const SIGNATURE_KEYS: &[&str] = &[
    "preset",
    "secret",
    "tolerance",
    "header",
    "prefix",
    "encoding",
];
/// Keys of a `schedule` trigger.
pub const SCHEDULE_KEYS: &[&str] = &["cron", "timezone", "missed", "overlap"];
/// Keys of a `poll` trigger.
pub const POLL_KEYS: &[&str] = &["every", "uses", "with", "items", "key", "cursor", "listen"];
/// Shortest interval between polls.
/// Keys of a queue trigger that the core reads; the connector reads the rest.
pub const QUEUE_KEYS: &[&str] = &["connection", "format", "key"];
/// The shortest poll interval.
pub const MIN_POLL_INTERVAL: Duration = Duration::from_secs(1);
/// Signature presets.
pub const PRESETS: &[&str] = &[
    "standard-webhooks",
    "github",
    "stripe",
    "shopify",
    "slack",
    "zendesk",
    "hmac",
];

/// Default largest webhook body: 1 MiB.
pub const DEFAULT_MAX_BODY: u64 = 1024 * 1024;
/// Largest body a webhook may be configured to accept: 64 MiB.
pub const MAX_MAX_BODY: u64 = 64 * 1024 * 1024;
/// Default time a `respond: sync` webhook waits for its run before answering 202.
pub const DEFAULT_SYNC_TIMEOUT: Duration = Duration::from_secs(10);
/// Default accepted clock difference for presets that sign a timestamp.
pub const DEFAULT_TOLERANCE: Duration = Duration::from_secs(5 * 60);

/// What starts a run of a workflow.
#[derive(Clone, Debug, PartialEq)]
pub enum Trigger {
    /// Started by a person or program: `weft run`, the API, or a `call` step.
    Manual,
    /// An HTTP request to `/hooks/<path>`.
    Webhook(WebhookTrigger),
    /// A cron schedule.
    Schedule(ScheduleTrigger),
    /// An HTTP API asked for new items every interval.
    Poll(PollTrigger),
    /// Messages consumed from a broker.
    Queue(QueueTrigger),
    /// A chatbot calls the workflow as a tool, over MCP or HTTP.
    Tool(ToolTrigger),
}

impl Trigger {
    /// The trigger's type name, as written in files.
    pub fn type_name(&self) -> &'static str {
        match self {
            Trigger::Manual => "manual",
            Trigger::Webhook(_) => "webhook",
            Trigger::Schedule(_) => "schedule",
            Trigger::Poll(_) => "poll",
            Trigger::Queue(_) => "queue",
            Trigger::Tool(_) => "tool",
        }
    }
}

/// An inbound HTTP request starts a run: `trigger: { webhook: {…} }`.
///
/// The run's `.input` is the body (JSON as JSON, a form as an object of strings, anything else as
/// text) and `.trigger` is `{type: "webhook", path, method, headers, query, received_at}`.
#[derive(Clone, Debug, PartialEq)]
pub struct WebhookTrigger {
    /// Where the hook listens, below `/hooks/`: letters, digits, `-`, `_`, `.` and `/` between
    /// segments. Default: the workflow's name.
    pub path: String,
    /// How requests prove they come from the sender. Without it, anyone who can reach the hub can
    /// start runs.
    pub signature: Option<Signature>,
    /// Which part of a request identifies a delivery, so that a sender's retry does not start a
    /// second run: a header name, or `${{ }}` over `{headers, input}`. Default from the preset;
    /// `false` turns it off.
    pub dedupe: Option<Dedupe>,
    /// When the sender gets its answer.
    pub respond: Respond,
    /// Largest request body accepted, in bytes; a larger one gets 413 and starts nothing.
    pub max_body_bytes: u64,
    /// The connector trigger it is (`<connection>.<trigger>`), when `uses:` names one: the hub
    /// registers its subscription with the vendor where the definition says how.
    pub uses: Option<String>,
    /// A JSON Schema the body (as the run's input) must match: a body that does not gets 422 with
    /// every problem and where it is, and starts nothing.
    pub input: Option<crate::tool::ToolSchema>,
}

/// What identifies one delivery of a webhook.
#[derive(Clone, Debug)]
pub enum Dedupe {
    /// The value of this request header (matched without regard to case).
    Header(String),
    /// The value of this expression over `{headers, input}` (its text, and compiled); `null` means
    /// no key.
    Expr(String, Arc<Template>),
}

impl PartialEq for Dedupe {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Dedupe::Header(a), Dedupe::Header(b)) => a.eq_ignore_ascii_case(b),
            (Dedupe::Expr(a, _), Dedupe::Expr(b, _)) => a == b,
            _ => false,
        }
    }
}

/// When a webhook's sender gets its answer.
#[derive(Clone, Debug, PartialEq)]
pub enum Respond {
    /// `202 {run_id}` as soon as the event is committed; the run executes afterwards.
    Async,
    /// The run's output (200) or error (500) once it finishes; `202 {run_id}` if it takes longer
    /// than the timeout (the run goes on).
    Sync {
        /// How long to wait for the run.
        timeout: Duration,
    },
}

/// How a webhook's requests are signed.
#[derive(Clone, Debug, PartialEq)]
pub struct Signature {
    /// The signing scheme.
    pub scheme: Scheme,
    /// The shared secret. For `standard-webhooks`, the `whsec_…` secret as the sender shows it.
    pub secret: SecretRef,
    /// For schemes that sign a timestamp (`standard-webhooks`, `stripe`, `slack`): how far the
    /// timestamp may be from the hub's clock. Default 5m.
    pub tolerance: Duration,
}

/// A signature scheme, each as its vendor publishes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scheme {
    /// Standard Webhooks: `webhook-id`, `webhook-timestamp`, `webhook-signature: v1,<base64>`,
    /// HMAC-SHA256 over `id.timestamp.body` with the base64 key after `whsec_`.
    StandardWebhooks,
    /// GitHub: `X-Hub-Signature-256: sha256=<hex>`, HMAC-SHA256 over the body.
    Github,
    /// Stripe: `Stripe-Signature: t=<ts>,v1=<hex>`, HMAC-SHA256 over `ts.body`.
    Stripe,
    /// Shopify: `X-Shopify-Hmac-Sha256: <base64>`, HMAC-SHA256 over the body.
    Shopify,
    /// Slack: `X-Slack-Signature: v0=<hex>` with `X-Slack-Request-Timestamp`, HMAC-SHA256 over
    /// `v0:ts:body`.
    Slack,
    /// Zendesk: `X-Zendesk-Webhook-Signature: <base64>` with `X-Zendesk-Webhook-Signature-Timestamp`
    /// (ISO 8601), HMAC-SHA256 over `timestamp` followed by the body.
    Zendesk,
    /// Any sender that puts an HMAC-SHA256 of the body in a header.
    Hmac {
        /// The header (default `X-Signature`).
        header: String,
        /// Text before the signature in the header, such as `sha256=` (default none).
        prefix: String,
        /// How the signature is written.
        encoding: Encoding,
    },
}

impl Scheme {
    /// The preset's name.
    pub fn name(&self) -> &'static str {
        match self {
            Scheme::StandardWebhooks => "standard-webhooks",
            Scheme::Github => "github",
            Scheme::Stripe => "stripe",
            Scheme::Shopify => "shopify",
            Scheme::Slack => "slack",
            Scheme::Zendesk => "zendesk",
            Scheme::Hmac { .. } => "hmac",
        }
    }

    /// The header that identifies a delivery, for presets whose senders set one.
    pub fn delivery_header(&self) -> Option<&'static str> {
        match self {
            Scheme::StandardWebhooks => Some("webhook-id"),
            Scheme::Github => Some("X-GitHub-Delivery"),
            Scheme::Shopify => Some("X-Shopify-Webhook-Id"),
            Scheme::Zendesk => Some("X-Zendesk-Webhook-Invocation-Id"),
            Scheme::Stripe | Scheme::Slack | Scheme::Hmac { .. } => None,
        }
    }
}

/// How a signature is written in its header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoding {
    /// Lower- or upper-case hexadecimal.
    Hex,
    /// Standard base64.
    Base64,
}

/// A cron schedule starts a run per due slot: `trigger: { schedule: {…} }`.
///
/// The run's `.trigger` is `{type: "schedule", slot}`, `slot` being the RFC 3339 time the run was
/// due; `.input` is `{slot}` too.
#[derive(Clone, Debug)]
pub struct ScheduleTrigger {
    /// The cron expression as written: five fields (minute hour day-of-month month day-of-week), or
    /// six with seconds first.
    pub cron_text: String,
    /// The parsed expression.
    pub cron: Arc<croner::Cron>,
    /// The time zone the expression is read in (IANA name). Default `UTC`.
    pub timezone: jiff::tz::TimeZone,
    /// The time zone's name as written.
    pub timezone_name: String,
    /// What happens to slots that fell due while the hub was not running.
    pub missed: Missed,
    /// What happens when a slot falls due while the previous run is unfinished.
    pub overlap: Overlap,
}

impl PartialEq for ScheduleTrigger {
    fn eq(&self, other: &Self) -> bool {
        self.cron_text == other.cron_text
            && self.timezone_name == other.timezone_name
            && self.missed == other.missed
            && self.overlap == other.overlap
    }
}

impl ScheduleTrigger {
    /// The first slot strictly after `after` (milliseconds since the Unix epoch), in milliseconds.
    pub fn next_slot(&self, after: i64) -> Option<i64> {
        let ts = jiff::Timestamp::from_millisecond(after).ok()?;
        let zoned = ts.to_zoned(self.timezone.clone());
        let next = self.cron.find_next_occurrence(&zoned, false).ok()?;
        Some(next.timestamp().as_millisecond())
    }

    /// A slot as RFC 3339 text in the schedule's time zone.
    pub fn slot_text(&self, slot: i64) -> String {
        match jiff::Timestamp::from_millisecond(slot) {
            Ok(ts) => ts
                .to_zoned(self.timezone.clone())
                .strftime("%Y-%m-%dT%H:%M:%S%:z")
                .to_string(),
            Err(_) => slot.to_string(),
        }
    }
}

/// An HTTP API polled for new items: `trigger: { poll: {…} }`. Each item becomes the `.input` of
/// one run, and `.trigger` is `{type: "poll", key, polled_at}`.
///
/// One poll: evaluate `with` and call the action; evaluate `items`; evaluate `key` for each item;
/// evaluate `cursor`. The runs and the new cursor are then committed in one transaction, so a crash
/// either keeps both or neither, and the next poll starts from the last committed cursor. A run
/// whose key an earlier run of the workflow carries is not started again, which makes overlapping
/// pages and repeated polls harmless. A poll that fails (the request, an expression, a missing key)
/// commits nothing and is tried again at the next interval.
#[derive(Clone, Debug)]
pub struct PollTrigger {
    /// Time between the start of one poll and the next.
    pub every: Duration,
    /// The connection called, as in `uses: <connection>.<action>`.
    pub connection: String,
    /// The action called.
    pub action: String,
    /// The action's inputs, over `{cursor, vars, env}`.
    pub with: Template,
    /// The new items: an expression over `{response, cursor, vars, env}` that yields a list (`null`
    /// means none).
    pub items: Arc<Expr>,
    /// Each item's de-duplication key, over `{item, index, response, cursor, vars, env}`: text or a
    /// number. Include a version (an `updated_at`) when a changed item should run again.
    pub key: Template,
    /// The cursor for the next poll, over `{items, response, cursor, vars, env}`; `null` keeps the
    /// previous one. Without it, the cursor stays `null`.
    pub cursor: Option<Arc<Expr>>,
    /// A PostgreSQL `LISTEN` channel that makes the next poll happen at once when a notification
    /// arrives (`NOTIFY channel`), so that a poll of a `postgres` connection reacts within
    /// moments while keeping its durability: notifications only wake the poll, the cursor still
    /// decides what is new, and `every` still polls when a notification was missed.
    pub listen: Option<String>,
    /// The settings as written, to compare versions.
    pub source: String,
}

impl PartialEq for PollTrigger {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

/// Messages from a broker start runs: `trigger: { queue: { connection: events, … } }`. The other
/// keys belong to the connection's type (a NATS subject, a RabbitMQ queue, an MQTT topic, a Redis
/// stream; see each connector's `consume` module).
///
/// Each message is one run: `.input` is the payload (parsed as JSON, or text with `format: text`)
/// and `.trigger` is `{type: "queue", connection, id, received_at, …}` with what the broker tells
/// about the message. A message is acknowledged only after its run is committed; one that cannot
/// be read (not JSON when JSON is expected) is rejected with the reason in the log, and the
/// consumer goes on. Runs are de-duplicated by `key`, by default the broker's message id where it
/// has one that survives redelivery.
#[derive(Clone, Debug)]
pub struct QueueTrigger {
    /// The connection consumed from.
    pub connection: String,
    /// The connection's type, which decides the other settings.
    pub type_name: String,
    /// How the payload is read.
    pub format: Format,
    /// The de-duplication key, over `{message, trigger}`: text or a number; `null` means none.
    /// Without it, the broker's message id, if it has one.
    pub key: Option<Template>,
    /// The connector's own settings, as JSON.
    pub settings: serde_json::Value,
    /// The settings as written, to compare versions.
    pub source: String,
}

impl PartialEq for QueueTrigger {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

/// How a queue message's payload becomes a run's input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// JSON; a payload that is not JSON is rejected.
    Json,
    /// UTF-8 text, as a string; a payload that is not UTF-8 is rejected.
    Text,
}

/// Slots missed while the hub was down.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Missed {
    /// Forget them; the next run is at the next slot from now.
    Skip,
    /// Run once for the latest missed slot, then go on.
    Once,
}

/// A slot that falls due while the workflow's previous scheduled run is unfinished.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Overlap {
    /// Start the run anyway.
    Allow,
    /// Do not run for this slot.
    Skip,
    /// Start the run when the previous one has finished (slots that fall due meanwhile are merged
    /// into that one run).
    Queue,
}

/// Reads `trigger:`. `workflow` is the workflow's name, the default webhook path; `scope` is what a
/// poll's `uses` may name.
pub fn read(
    node: &Node,
    workflow: Option<&str>,
    scope: &Scope<'_>,
    diags: &mut Diagnostics,
) -> Option<Trigger> {
    let (name, pos, settings) = match &node.kind {
        Kind::Str(s) => (s.value.as_str(), node.pos, None),
        Kind::Map(entries) if entries.len() == 1 => (
            entries[0].0.name.as_str(),
            entries[0].0.pos,
            Some(&entries[0].1),
        ),
        Kind::Map(entries) if entries.len() > 1 => {
            diags.error(
                entries[1].0.pos,
                "a workflow has one trigger; remove all but one",
            );
            return None;
        }
        _ => {
            diags.error(
                node.pos,
                "`trigger` must name one trigger, such as `trigger: manual`",
            );
            return None;
        }
    };
    let settings = settings.filter(|s| !matches!(s.kind, Kind::Null));
    // `uses: <connection>.<trigger>`: a connector's trigger, which brings its settings.
    let expanded = match (name, settings) {
        ("webhook" | "poll", Some(s)) => match connector_trigger(name, s, scope, diags) {
            Ok(expanded) => expanded,
            Err(()) => return None,
        },
        _ => None,
    };
    let settings = expanded.as_ref().or(settings);
    match name {
        "manual" => {
            if let Some(settings) = settings {
                match &settings.kind {
                    Kind::Map(entries) if entries.is_empty() => {}
                    Kind::Map(entries) => {
                        diags.error(
                            entries[0].0.pos,
                            format!(
                                "unknown key `{}` in manual trigger; it takes no settings",
                                entries[0].0.name
                            ),
                        );
                    }
                    _ => diags.error(settings.pos, "the manual trigger takes no settings"),
                }
            }
            Some(Trigger::Manual)
        }
        "webhook" => read_webhook(settings, pos, workflow, diags).map(Trigger::Webhook),
        "schedule" => match settings {
            Some(s) => read_schedule(s, diags).map(Trigger::Schedule),
            None => {
                diags.error(
                    pos,
                    "a schedule trigger needs settings, at least `cron:`, such as `schedule: { cron: \"0 * * * *\" }`",
                );
                None
            }
        },
        "poll" => match settings {
            Some(s) => read_poll(s, scope, diags).map(Trigger::Poll),
            None => {
                diags.error(
                    pos,
                    "a poll trigger needs settings: `every`, `uses`, `items` and `key`",
                );
                None
            }
        },
        "queue" => match settings {
            Some(s) => read_queue(s, scope, diags).map(Trigger::Queue),
            None => {
                diags.error(
                    pos,
                    "a queue trigger needs settings, at least `connection:`, such as `queue: { connection: events, subject: orders }`",
                );
                None
            }
        },
        "tool" => crate::tool::read(settings, pos, workflow, diags).map(Trigger::Tool),
        other => {
            let hint = did_you_mean(other, TRIGGER_TYPES.iter().copied())
                .map(|h| format!("; did you mean `{h}`?"))
                .unwrap_or_else(|| format!("; expected one of: {}", TRIGGER_TYPES.join(", ")));
            diags.error(pos, format!("unknown trigger `{other}`{hint}"));
            None
        }
    }
}

/// The settings of a `webhook` or `poll` trigger whose `uses:` names a trigger of a defined
/// connector: the definition's, with the workflow's added or replacing them (`Ok(None)` when `uses`
/// names no connector trigger, as a poll's action does). A webhook's signature secret is the
/// connection's `webhook_secret`.
fn connector_trigger(
    kind: &str,
    settings: &Node,
    scope: &Scope<'_>,
    diags: &mut Diagnostics,
) -> Result<Option<Node>, ()> {
    let Kind::Map(entries) = &settings.kind else {
        return Ok(None);
    };
    let Some((_, uses)) = entries.iter().find(|(k, _)| k.name == "uses") else {
        return Ok(None);
    };
    let Some(text) = uses.as_str() else {
        return Ok(None);
    };
    let (connection_name, trigger_name) = text.split_once('.').unwrap_or((text, ""));
    let connection = scope.connections.get(connection_name);
    let definition = connection.and_then(|c| match scope.catalog.get(&c.type_name) {
        Some(crate::Spec::Defined(def)) => Some(def.clone()),
        _ => None,
    });
    let found = definition.as_ref().and_then(|d| d.trigger(trigger_name));
    let Some(found) = found.filter(|t| t.kind.name() == kind) else {
        if kind == "poll" && found.is_none() {
            // A poll of an action, as before.
            return Ok(None);
        }
        let offered: Vec<String> = definition
            .iter()
            .flat_map(|d| d.triggers.iter())
            .filter(|t| t.kind.name() == kind)
            .map(|t| format!("{connection_name}.{}", t.name))
            .collect();
        let why = match (connection, &definition) {
            (None, _) => format!("there is no connection `{connection_name}`"),
            (Some(c), None) => format!(
                "connection `{connection_name}` is of type `{}`, which has no triggers",
                c.type_name
            ),
            (Some(_), Some(_)) if offered.is_empty() => {
                format!("its connector has no {kind} triggers")
            }
            (Some(_), Some(_)) => {
                let hint = did_you_mean(text, offered.iter().map(String::as_str))
                    .map(|h| format!("did you mean `{h}`? "))
                    .unwrap_or_default();
                format!("{hint}{kind} triggers of it: {}", offered.join(", "))
            }
        };
        diags.error(
            uses.pos,
            format!("`uses: {text}` names no {kind} trigger: {why}"),
        );
        return Err(());
    };
    let (base, extra) = match &found.kind {
        crate::definition::TriggerKind::Webhook(node) => {
            let mut base = node.clone();
            let secret = connection.and_then(|c| match &c.node.kind {
                Kind::Map(e) => e
                    .iter()
                    .find(|(k, _)| k.name == crate::definition::WEBHOOK_SECRET)
                    .map(|(_, v)| v.clone()),
                _ => None,
            });
            if let Kind::Map(base_entries) = &mut base.kind
                && let Some((_, sig)) = base_entries.iter_mut().find(|(k, _)| k.name == "signature")
                && let Kind::Map(sig_entries) = &mut sig.kind
            {
                let Some(secret) = secret else {
                    diags.error(
                        uses.pos,
                        format!(
                            "{text} webhooks are signed: connection `{connection_name}` needs `{}`, such as `{{ secret: {} }}`",
                            crate::definition::WEBHOOK_SECRET,
                            connection_name.to_ascii_uppercase() + "_WEBHOOK_SECRET"
                        ),
                    );
                    return Err(());
                };
                sig_entries.push((
                    crate::yaml::Key {
                        name: "secret".into(),
                        pos: uses.pos,
                    },
                    secret,
                ));
            }
            (base, None)
        }
        crate::definition::TriggerKind::Poll { action, settings } => (
            settings.clone(),
            Some(format!("{connection_name}.{action}")),
        ),
    };
    let Kind::Map(mut merged) = base.kind else {
        return Ok(None);
    };
    for (k, v) in entries {
        // A webhook keeps its `uses` (the hub subscribes it); a poll's becomes the action's.
        if k.name == "uses" && kind == "poll" {
            continue;
        }
        merged.retain(|(m, _)| m.name != k.name);
        merged.push((k.clone(), v.clone()));
    }
    if let Some(action) = extra {
        merged.push((
            crate::yaml::Key {
                name: "uses".into(),
                pos: uses.pos,
            },
            Node {
                pos: uses.pos,
                kind: Kind::Str(crate::yaml::Str {
                    value: action,
                    expr_pos: Vec::new(),
                }),
            },
        ));
    }
    Ok(Some(Node {
        pos: settings.pos,
        kind: Kind::Map(merged),
    }))
}

/// Whether `path` is a usable webhook path: segments of letters, digits, `-`, `_` and `.`, joined by
/// single `/`, not starting or ending with `/`, no `.` or `..` segment.
pub fn is_hook_path(path: &str) -> bool {
    !path.is_empty()
        && path.len() <= 200
        && path.split('/').all(|seg| {
            !seg.is_empty()
                && seg != "."
                && seg != ".."
                && seg
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        })
}

fn read_webhook(
    settings: Option<&Node>,
    pos: Pos,
    workflow: Option<&str>,
    diags: &mut Diagnostics,
) -> Option<WebhookTrigger> {
    let mut trigger = WebhookTrigger {
        path: workflow.unwrap_or_default().to_string(),
        signature: None,
        dedupe: None,
        respond: Respond::Async,
        max_body_bytes: DEFAULT_MAX_BODY,
        uses: None,
        input: None,
    };
    let Some(settings) = settings else {
        return workflow.map(|_| trigger);
    };
    let mut f = Fields::new(settings, "webhook trigger", WEBHOOK_KEYS, diags)?;
    // A `uses:` that names a connector trigger was expanded; any other was reported.
    trigger.uses = f.get("uses").and_then(|n| n.as_str()).map(str::to_string);
    let mut ok = true;
    if let Some(n) = f.get("path") {
        match decode::string(n, "`path`", diags) {
            Some(p) => {
                let p = p.trim_start_matches('/').to_string();
                if is_hook_path(&p) {
                    trigger.path = p;
                } else {
                    diags.error(
                        n.pos,
                        format!("webhook path `{p}` may hold only letters, digits, `-`, `_` and `.`, in segments joined by `/`"),
                    );
                    ok = false;
                }
            }
            None => ok = false,
        }
    }
    if let Some(n) = f.get("signature") {
        match read_signature(n, diags) {
            Some(s) => trigger.signature = Some(s),
            None => ok = false,
        }
    }
    let mut dedupe_set = false;
    if let Some(n) = f.get("dedupe") {
        dedupe_set = true;
        match &n.kind {
            Kind::Bool(false) => {}
            Kind::Str(s) if s.value.contains("${{") => {
                trigger.dedupe = Some(Dedupe::Expr(
                    s.value.clone(),
                    Arc::new(Template::from_node(n, diags)),
                ));
            }
            Kind::Str(s) if is_header_name(&s.value) => {
                trigger.dedupe = Some(Dedupe::Header(s.value.clone()));
            }
            _ => {
                diags.error(
                    n.pos,
                    "`dedupe` must be a header name, `${{ … }}` over `{headers, input}`, or false",
                );
                ok = false;
            }
        }
    }
    if !dedupe_set && let Some(sig) = &trigger.signature {
        trigger.dedupe = match sig.scheme {
            Scheme::Stripe => Some(default_expr(".input.id")),
            Scheme::Slack => Some(default_expr(".input.event_id")),
            ref s => s.delivery_header().map(|h| Dedupe::Header(h.to_string())),
        };
    }
    let mut timeout = DEFAULT_SYNC_TIMEOUT;
    let timeout_node = f.get("timeout");
    if let Some(n) = timeout_node {
        match decode::duration(n, "`timeout`", diags) {
            Some(d) if d > Duration::ZERO && d <= Duration::from_secs(300) => timeout = d,
            Some(_) => {
                diags.error(n.pos, "`timeout` must be more than 0s and at most 5m");
                ok = false;
            }
            None => ok = false,
        }
    }
    if let Some(n) = f.get("respond") {
        match n.as_str() {
            Some("async") => {
                if let Some(t) = timeout_node {
                    diags.error(t.pos, "`timeout` applies only with `respond: sync`");
                    ok = false;
                }
            }
            Some("sync") => trigger.respond = Respond::Sync { timeout },
            _ => {
                diags.error(n.pos, "`respond` must be `async` or `sync`");
                ok = false;
            }
        }
    } else if let Some(t) = timeout_node {
        diags.error(t.pos, "`timeout` applies only with `respond: sync`");
        ok = false;
    }
    if let Some(n) = f.get("input") {
        match crate::tool::read_any_schema(n, "input", false, diags) {
            Some(schema) => trigger.input = Some(schema),
            None => ok = false,
        }
    }
    if let Some(n) = f.get("max_body_bytes") {
        match decode::integer(n, "`max_body_bytes`", 1, MAX_MAX_BODY, diags) {
            Some(v) => trigger.max_body_bytes = v,
            None => ok = false,
        }
    }
    f.finish(diags);
    if trigger.path.is_empty() {
        diags.error(pos, "the webhook trigger needs a `path`");
        return None;
    }
    ok.then_some(trigger)
}

fn default_expr(code: &str) -> Dedupe {
    let text = format!("${{{{ {code} }}}}");
    let node = crate::yaml::parse(&format!("'{text}'")).expect("a fixed expression");
    let mut d = Diagnostics::new("");
    let template = Template::from_node(&node, &mut d);
    debug_assert!(d.is_empty());
    Dedupe::Expr(text, Arc::new(template))
}

fn is_header_name(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

pub(crate) fn read_signature(node: &Node, diags: &mut Diagnostics) -> Option<Signature> {
    let mut f = Fields::new(node, "`signature`", SIGNATURE_KEYS, diags)?;
    let preset_node = f.require("preset", diags);
    let preset = preset_node.and_then(|n| decode::string(n, "`signature.preset`", diags));
    let secret = f
        .require("secret", diags)
        .and_then(|n| SecretRef::decode(n, "`signature.secret`", diags));
    let tolerance = match f.get("tolerance") {
        Some(n) => decode::duration(n, "`signature.tolerance`", diags),
        None => Some(DEFAULT_TOLERANCE),
    };
    let header = f.get("header");
    let prefix = f.get("prefix");
    let encoding = f.get("encoding");
    let scheme = match preset.as_deref() {
        Some("hmac") => {
            let header = match header {
                Some(n) => decode::string(n, "`signature.header`", diags).filter(|h| {
                    let ok = is_header_name(h);
                    if !ok {
                        diags.error(n.pos, format!("`{h}` is not a header name"));
                    }
                    ok
                }),
                None => Some("X-Signature".to_string()),
            };
            let prefix = match prefix {
                Some(n) => decode::string(n, "`signature.prefix`", diags),
                None => Some(String::new()),
            };
            let encoding = match encoding.map(|n| (n, n.as_str())) {
                None | Some((_, Some("hex"))) => Some(Encoding::Hex),
                Some((_, Some("base64"))) => Some(Encoding::Base64),
                Some((n, _)) => {
                    diags.error(n.pos, "`signature.encoding` must be `hex` or `base64`");
                    None
                }
            };
            Some(Scheme::Hmac {
                header: header?,
                prefix: prefix?,
                encoding: encoding?,
            })
        }
        Some(name) if PRESETS.contains(&name) => {
            for (key, n) in [
                ("header", header),
                ("prefix", prefix),
                ("encoding", encoding),
            ] {
                if let Some(n) = n {
                    diags.error(
                        n.pos,
                        format!(
                            "`signature.{key}` applies only to the `hmac` preset; `{name}` fixes it"
                        ),
                    );
                }
            }
            match name {
                "standard-webhooks" => Some(Scheme::StandardWebhooks),
                "github" => Some(Scheme::Github),
                "stripe" => Some(Scheme::Stripe),
                "shopify" => Some(Scheme::Shopify),
                "zendesk" => Some(Scheme::Zendesk),
                _ => Some(Scheme::Slack),
            }
        }
        Some(other) => {
            let hint = did_you_mean(other, PRESETS.iter().copied())
                .map(|h| format!("; did you mean `{h}`?"))
                .unwrap_or_else(|| format!("; expected one of: {}", PRESETS.join(", ")));
            if let Some(n) = preset_node {
                diags.error(n.pos, format!("unknown signature preset `{other}`{hint}"));
            }
            None
        }
        None => None,
    };
    f.finish(diags);
    Some(Signature {
        scheme: scheme?,
        secret: secret?,
        tolerance: tolerance?,
    })
}

fn read_schedule(node: &Node, diags: &mut Diagnostics) -> Option<ScheduleTrigger> {
    let mut f = Fields::new(node, "schedule trigger", SCHEDULE_KEYS, diags)?;
    let cron = f.require("cron", diags).and_then(|n| {
        let text = decode::string(n, "`cron`", diags)?;
        let parser = croner::parser::CronParser::builder()
            .seconds(croner::parser::Seconds::Optional)
            .build();
        match parser.parse(&text) {
            Ok(c) => Some((text, c)),
            Err(e) => {
                diags.error(n.pos, format!("`cron`: {e}"));
                None
            }
        }
    });
    let timezone = match f.get("timezone") {
        Some(n) => decode::string(n, "`timezone`", diags).and_then(|name| {
            match jiff::tz::TimeZone::get(&name) {
                Ok(tz) => Some((name, tz)),
                Err(_) => {
                    diags.error(
                        n.pos,
                        format!("unknown time zone `{name}`; use an IANA name such as `Europe/Berlin` or `UTC`"),
                    );
                    None
                }
            }
        }),
        None => Some(("UTC".to_string(), jiff::tz::TimeZone::UTC)),
    };
    let missed = match f.get("missed") {
        Some(n) => match n.as_str() {
            Some("skip") => Some(Missed::Skip),
            Some("once") => Some(Missed::Once),
            _ => {
                diags.error(n.pos, "`missed` must be `skip` or `once`");
                None
            }
        },
        None => Some(Missed::Skip),
    };
    let overlap = match f.get("overlap") {
        Some(n) => match n.as_str() {
            Some("allow") => Some(Overlap::Allow),
            Some("skip") => Some(Overlap::Skip),
            Some("queue") => Some(Overlap::Queue),
            _ => {
                diags.error(n.pos, "`overlap` must be `allow`, `skip` or `queue`");
                None
            }
        },
        None => Some(Overlap::Allow),
    };
    f.finish(diags);
    let (cron_text, cron) = cron?;
    let (timezone_name, timezone) = timezone?;
    Some(ScheduleTrigger {
        cron_text,
        cron: Arc::new(cron),
        timezone,
        timezone_name,
        missed: missed?,
        overlap: overlap?,
    })
}

fn read_poll(node: &Node, scope: &Scope<'_>, diags: &mut Diagnostics) -> Option<PollTrigger> {
    let mut f = Fields::new(node, "poll trigger", POLL_KEYS, diags)?;
    let every = f.require("every", diags).and_then(|n| {
        let d = decode::duration(n, "`every`", diags)?;
        if d < MIN_POLL_INTERVAL {
            diags.error(n.pos, "`every` must be at least 1s");
            return None;
        }
        Some(d)
    });
    let with_node = f.get("with");
    let with = with_node.map_or(
        Template::Const(crate::expr::Val::obj(Default::default())),
        |n| Template::from_node(n, diags),
    );
    let uses = f.require("uses", diags).and_then(|n| {
        let text = decode::string(n, "`uses`", diags)?;
        check_uses(&text, n.pos, with_node, &with, scope, diags)
    });
    let items = f
        .require("items", diags)
        .and_then(|n| Template::expr_from_node(n, "`items`", diags));
    let key = f.require("key", diags).and_then(|n| match &n.kind {
        Kind::Str(s) if s.value.contains("${{") => Some(Template::from_node(n, diags)),
        _ => {
            diags.error(
                n.pos,
                "`key` must use `${{ }}` over the item, such as `${{ .item.id }}`; a fixed key would let only one item ever run",
            );
            None
        }
    });
    let cursor = f
        .get("cursor")
        .map(|n| Template::expr_from_node(n, "`cursor`", diags));
    let listen = match f.get("listen") {
        None => Some(None),
        Some(n) => {
            let channel = decode::string(n, "`listen`", diags);
            let type_name = uses
                .as_ref()
                .and_then(|(c, _)| scope.connections.get(c))
                .map(|c| c.type_name.as_str());
            match channel {
                Some(ch) if ch.is_empty() || ch.len() > 63 || ch.contains('\0') => {
                    diags.error(
                        n.pos,
                        "`listen` must be a channel name of 1 to 63 characters",
                    );
                    None
                }
                Some(_) if type_name.is_some_and(|t| t != "postgres") => {
                    diags.error(
                        n.pos,
                        "`listen` needs a poll that uses a postgres connection (LISTEN/NOTIFY is PostgreSQL's)",
                    );
                    None
                }
                Some(ch) => Some(Some(ch)),
                None => None,
            }
        }
    };
    f.finish(diags);
    let (connection, action) = uses?;
    Some(PollTrigger {
        every: every?,
        connection,
        action,
        with,
        items: items?,
        key: key?,
        cursor: match cursor {
            Some(c) => Some(c?),
            None => None,
        },
        listen: listen?,
        source: node.to_json().to_string(),
    })
}

fn read_queue(node: &Node, scope: &Scope<'_>, diags: &mut Diagnostics) -> Option<QueueTrigger> {
    let Kind::Map(entries) = &node.kind else {
        diags.error(
            node.pos,
            format!("`queue` must be a mapping, found {}", node.kind_name()),
        );
        return None;
    };
    let find = |key: &str| entries.iter().find(|(k, _)| k.name == key).map(|(_, v)| v);
    let Some(conn_node) = find("connection") else {
        diags.error(node.pos, "queue trigger needs `connection`");
        return None;
    };
    let name = decode::string(conn_node, "`connection`", diags)?;
    let Some(connection) = scope.connections.get(&name) else {
        let known: Vec<&str> = scope.connections.keys().map(String::as_str).collect();
        let hint = match did_you_mean(&name, known.iter().copied()) {
            Some(h) => format!("; did you mean `{h}`?"),
            None if known.is_empty() => "; weft.yaml defines no connections".to_string(),
            None => format!("; weft.yaml defines: {}", known.join(", ")),
        };
        diags.error(conn_node.pos, format!("unknown connection `{name}`{hint}"));
        return None;
    };
    // A connection of an unknown type is reported where it is defined, in weft.yaml.
    let spec = scope.catalog.get(&connection.type_name)?;
    let Some(consume) = spec.consume() else {
        let brokers: Vec<&str> = scope
            .catalog
            .type_names()
            .into_iter()
            .filter(|t| scope.catalog.get(t).is_some_and(|s| s.consume().is_some()))
            .collect();
        diags.error(
            conn_node.pos,
            format!(
                "connection `{name}` ({}) has no messages to consume; a queue trigger reads from a connection of type {}",
                spec.type_name(),
                brokers.join(", ")
            ),
        );
        return None;
    };
    let format = match find("format") {
        None => Some(Format::Json),
        Some(n) => match decode::string(n, "`format`", diags).as_deref() {
            Some("json") => Some(Format::Json),
            Some("text") => Some(Format::Text),
            Some(other) => {
                diags.error(
                    n.pos,
                    format!("unknown `format` `{other}`; use json or text"),
                );
                None
            }
            None => None,
        },
    };
    let key = match find("key") {
        None => Some(None),
        Some(n) => match &n.kind {
            Kind::Str(s) if s.value.contains("${{") => Some(Some(Template::from_node(n, diags))),
            _ => {
                diags.error(
                    n.pos,
                    "`key` must use `${{ }}` over the message, such as `${{ .message.order_id }}`; a fixed key would let only one message ever run",
                );
                None
            }
        },
    };
    // The connector checks its own keys; keys it does not know are reported there, with the
    // core's keys among the ones offered.
    let own: Vec<(crate::yaml::Key, Node)> = entries
        .iter()
        .filter(|(k, _)| !QUEUE_KEYS.contains(&k.name.as_str()))
        .cloned()
        .collect();
    let own = Node {
        pos: node.pos,
        kind: Kind::Map(own),
    };
    let before = diags.len();
    (consume.check)(&own, diags);
    if diags.len() > before {
        return None;
    }
    Some(QueueTrigger {
        connection: name,
        type_name: spec.type_name().to_string(),
        format: format?,
        key: key?,
        settings: own.to_json(),
        source: node.to_json().to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::yaml;

    #[test]
    fn only_postgres_polls_listen() {
        let (t, errs) = read_str(
            "poll: { every: 1m, uses: shop.request, items: \"${{ .response.body }}\", key: \"${{ .item.id }}\", listen: changes }",
        );
        assert!(t.is_none());
        assert_eq!(
            errs,
            vec!["1:104: `listen` needs a poll that uses a postgres connection (LISTEN/NOTIFY is PostgreSQL's)".to_string()]
        );
    }

    #[test]
    fn queue_triggers_name_a_broker_connection() {
        let (t, errs) = read_str(
            "queue: { connection: events, topic: orders, format: text, key: \"${{ .message }}\" }",
        );
        assert!(errs.is_empty(), "{errs:?}");
        let Some(Trigger::Queue(q)) = t else {
            panic!("a queue trigger")
        };
        assert_eq!(q.connection, "events");
        assert_eq!(q.type_name, "broker");
        assert_eq!(q.format, Format::Text);
        assert_eq!(q.settings, serde_json::json!({"topic": "orders"}));
        assert!(q.key.is_some());
        let cases = [
            (
                "queue: { connection: evnts, topic: x }",
                "1:22: unknown connection `evnts`; did you mean `events`?",
            ),
            (
                "queue: { connection: shop }",
                "1:22: connection `shop` (http) has no messages to consume; a queue trigger reads from a connection of type broker",
            ),
            (
                "queue: { connection: events, topic: x, format: xml }",
                "1:48: unknown `format` `xml`; use json or text",
            ),
            (
                "queue: { connection: events, topic: x, key: fixed }",
                "1:45: `key` must use `${{ }}` over the message, such as `${{ .message.order_id }}`; a fixed key would let only one message ever run",
            ),
            (
                "queue: { connection: events }",
                "1:8: queue trigger (broker) needs `topic`",
            ),
            (
                "queue: { topic: x }",
                "1:8: queue trigger needs `connection`",
            ),
        ];
        for (src, expected) in cases {
            let (t, errs) = read_str(src);
            assert!(t.is_none(), "{src}");
            assert_eq!(errs, vec![expected.to_string()], "{src}");
        }
    }

    fn read_str(src: &str) -> (Option<Trigger>, Vec<String>) {
        let node = yaml::parse(src).unwrap();
        let mut d = Diagnostics::new("w.yaml");
        let t = crate::workflow::test_scope::with_scope(|scope| {
            read(&node, Some("orders"), scope, &mut d)
        });
        (
            t,
            d.into_vec()
                .into_iter()
                .map(|d| format!("{}:{}: {}", d.line, d.column, d.message))
                .collect(),
        )
    }

    #[test]
    fn a_webhook_may_say_what_body_it_takes() {
        let (t, errs) = read_str(
            "webhook: { input: { type: object, required: [id], properties: { id: { type: integer } } } }",
        );
        assert!(errs.is_empty(), "{errs:?}");
        let Some(Trigger::Webhook(hook)) = t else {
            panic!("a webhook")
        };
        let schema = hook.input.expect("its schema");
        assert!(schema.problems(&serde_json::json!({"id": 7})).is_empty());
        let problems: Vec<String> = schema
            .problems(&serde_json::json!({"id": "seven"}))
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].starts_with("at `/id`"), "{problems:?}");
        let (t, errs) = read_str("webhook: { input: [1] }");
        assert!(t.is_none());
        assert_eq!(
            errs,
            ["1:19: `input` must be a JSON Schema mapping, found a list"]
        );
    }

    #[test]
    fn webhook_defaults_to_the_workflow_name_and_async() {
        let (t, d) = read_str("webhook");
        assert!(d.is_empty(), "{d:?}");
        let Some(Trigger::Webhook(w)) = t else {
            panic!("{t:?}")
        };
        assert_eq!(w.path, "orders");
        assert_eq!(w.respond, Respond::Async);
        assert_eq!(w.max_body_bytes, DEFAULT_MAX_BODY);
        assert!(w.signature.is_none() && w.dedupe.is_none());
    }

    #[test]
    fn presets_bring_their_delivery_header() {
        let (t, d) = read_str(
            "webhook: {path: /gh/push, signature: {preset: github, secret: {env: GH}}, respond: sync, timeout: 3s}",
        );
        assert!(d.is_empty(), "{d:?}");
        let Some(Trigger::Webhook(w)) = t else {
            panic!("{t:?}")
        };
        assert_eq!(w.path, "gh/push");
        assert_eq!(w.dedupe, Some(Dedupe::Header("X-GitHub-Delivery".into())));
        assert_eq!(
            w.respond,
            Respond::Sync {
                timeout: Duration::from_secs(3)
            }
        );
        let sig = w.signature.unwrap();
        assert_eq!(sig.scheme, Scheme::Github);
        assert_eq!(sig.secret, SecretRef::Env("GH".into()));
    }

    #[test]
    fn hmac_takes_header_prefix_and_encoding() {
        let (t, d) = read_str(
            "webhook: {signature: {preset: hmac, secret: {env: S}, header: X-Sig, prefix: 'sha256=', encoding: base64}, dedupe: false}",
        );
        assert!(d.is_empty(), "{d:?}");
        let Some(Trigger::Webhook(w)) = t else {
            panic!("{t:?}")
        };
        assert_eq!(
            w.signature.unwrap().scheme,
            Scheme::Hmac {
                header: "X-Sig".into(),
                prefix: "sha256=".into(),
                encoding: Encoding::Base64
            }
        );
        assert_eq!(w.dedupe, None);
    }

    #[test]
    fn bad_webhook_settings_are_each_reported() {
        let (t, d) = read_str(
            "webhook:\n  path: a//b\n  signature: {preset: githb, secret: plain, header: X}\n  respond: later\n  timeout: 1s\n  max_body_bytes: 0\n  colour: red\n",
        );
        assert!(t.is_none());
        assert_eq!(
            d,
            vec![
                "2:9: webhook path `a//b` may hold only letters, digits, `-`, `_` and `.`, in segments joined by `/`",
                "3:23: unknown signature preset `githb`; did you mean `github`?",
                "3:38: `signature.secret` must not be written in the file; refer to the secret store with `{ secret: NAME }` or to an environment variable with `{ env: NAME }`",
                "4:12: `respond` must be `async` or `sync`",
                "6:19: `max_body_bytes` must be a whole number from 1 to 67108864, found 0",
                "7:3: unknown key `colour` in webhook trigger; expected one of: uses, path, signature, dedupe, respond, timeout, max_body_bytes, input",
            ]
        );
    }

    #[test]
    fn schedules_compute_slots_in_their_time_zone() {
        let (t, d) = read_str(
            "schedule: {cron: '0 30 9 * * *', timezone: Europe/Berlin, missed: once, overlap: queue}",
        );
        assert!(d.is_empty(), "{d:?}");
        let Some(Trigger::Schedule(s)) = t else {
            panic!("{t:?}")
        };
        assert_eq!((s.missed, s.overlap), (Missed::Once, Overlap::Queue));
        // 2026-11-25T00:00:00Z; 09:30 in Berlin (UTC+1 in winter) is 08:30Z.
        let midnight = 1_795_564_800_000;
        let next = s.next_slot(midnight).unwrap();
        assert_eq!(s.slot_text(next), "2026-11-25T09:30:00+01:00");
        assert_eq!(next - midnight, (8 * 3600 + 30 * 60) * 1000);
        // Strictly after: a slot does not repeat itself.
        assert_eq!(s.next_slot(next).unwrap() - next, 24 * 3600 * 1000);
    }

    #[test]
    fn five_field_cron_means_whole_minutes() {
        let (t, _) = read_str("schedule: {cron: '*/15 * * * *'}");
        let Some(Trigger::Schedule(s)) = t else {
            panic!("{t:?}")
        };
        let next = s.next_slot(1_795_564_800_001).unwrap();
        assert_eq!(next, 1_795_564_800_000 + 15 * 60 * 1000);
    }

    #[test]
    fn bad_schedules_are_reported() {
        let (_, d) = read_str(
            "schedule: {cron: '61 * * * *', timezone: Mars/Olympus, missed: all, overlap: maybe}",
        );
        assert_eq!(d.len(), 4, "{d:?}");
        assert!(d[0].starts_with("1:18: `cron`:"), "{d:?}");
        assert!(d[1].contains("unknown time zone `Mars/Olympus`"), "{d:?}");
        assert!(d[2].contains("`missed` must be `skip` or `once`"), "{d:?}");
        assert!(d[3].contains("`overlap` must be"), "{d:?}");
        let (_, d) = read_str("schedule");
        assert!(d[0].contains("needs settings"), "{d:?}");
    }

    #[test]
    fn polls_read_their_request_and_expressions() {
        let (t, d) = read_str(
            "poll:\n  every: 30s\n  uses: shop.request\n  with: { path: /orders, query: { since: '${{ .cursor }}' } }\n  items: ${{ .response.body.orders }}\n  key: ${{ .item.id }}-${{ .item.updated_at }}\n  cursor: ${{ [.items[].updated_at] | max }}\n",
        );
        assert!(d.is_empty(), "{d:?}");
        let Some(Trigger::Poll(p)) = t else {
            panic!("a poll trigger")
        };
        assert_eq!(p.every, Duration::from_secs(30));
        assert_eq!(
            (p.connection.as_str(), p.action.as_str()),
            ("shop", "request")
        );
        let ctx = crate::json_to_val(&serde_json::json!({
            "cursor": "2026-01-01",
            "response": {"body": {"orders": [{"id": 7, "updated_at": "b"}, {"id": 8, "updated_at": "a"}]}},
        }));
        let with = crate::val_to_json(
            &p.with
                .eval(&ctx, &crate::expr::Budget::new(Default::default(), None))
                .unwrap(),
        )
        .unwrap();
        assert_eq!(with["query"]["since"], "2026-01-01");
        let items = crate::val_to_json(
            &p.items
                .eval(&ctx, &crate::expr::Budget::new(Default::default(), None))
                .unwrap(),
        )
        .unwrap();
        assert_eq!(items.as_array().unwrap().len(), 2);
        let item_ctx = crate::json_to_val(&serde_json::json!({"item": items[0]}));
        assert_eq!(
            crate::val_to_json(
                &p.key
                    .eval(
                        &item_ctx,
                        &crate::expr::Budget::new(Default::default(), None)
                    )
                    .unwrap()
            )
            .unwrap(),
            "7-b"
        );
        let cursor_ctx = crate::json_to_val(&serde_json::json!({"items": items}));
        let cursor = p
            .cursor
            .as_ref()
            .unwrap()
            .eval(
                &cursor_ctx,
                &crate::expr::Budget::new(Default::default(), None),
            )
            .unwrap();
        assert_eq!(crate::val_to_json(&cursor).unwrap(), "b");
    }

    #[test]
    fn bad_polls_are_reported() {
        let (t, d) = read_str(
            "poll:\n  every: 500ms\n  uses: billing.request\n  items: .response.body\n  key: fixed\n  cursor: ${{ .items | }}\n  colour: red\n",
        );
        assert!(t.is_none());
        assert_eq!(
            d,
            vec![
                "2:10: `every` must be at least 1s",
                "3:9: unknown connection `billing`; weft.yaml defines: events, shop",
                "4:10: `items` must be one expression, such as `${{ .input.total > 100 }}`",
                "5:8: `key` must use `${{ }}` over the item, such as `${{ .item.id }}`; a fixed key would let only one item ever run",
                "6:24: jq syntax error in `${{ .items | }}`: expected term, found end of expression",
                "7:3: unknown key `colour` in poll trigger; expected one of: every, uses, with, items, key, cursor, listen",
            ]
        );
        let (_, d) = read_str("poll:\n  uses: shop.fetch\n  with: { retries: 3 }\n");
        assert_eq!(
            d,
            vec![
                "2:3: poll trigger needs `every`",
                "2:3: poll trigger needs `items`",
                "2:3: poll trigger needs `key`",
                "2:9: connection `shop` (http) has no action `fetch`; its actions are: request",
            ]
        );
        let (_, d) = read_str("poll");
        assert!(d[0].contains("a poll trigger needs settings"), "{d:?}");
    }
}
