//! Connector definitions: a connector written as data (a YAML file) rather than as code.
//!
//! A definition names a connection `type`, the API's `base_url` (with `{variables}` that each
//! connection fills in), the ways of authenticating it accepts, and its actions: an HTTP method and
//! path, and inputs that each go into the path, the query, a header or the JSON body, each with a
//! JSON Schema. [`decode`] reads a definition with every problem reported at its line and column;
//! the [`crate::Catalog`] then knows the type like any built-in connector, so that `weft lint`
//! checks connections of it ([`Definition::check_settings`]) and the `with:` of its actions
//! ([`ActionDef::check_inputs`]: unknown, missing and wrong-typed inputs, values outside an enum).
//!
//! ```yaml
//! connector: shop
//! summary: The shop's Admin REST API.
//! docs: https://shop.example.com/docs/admin
//! base_url: https://{shop}.shop.example.com/admin/api/2024-10
//! variables:
//!   shop: { description: "The shop's subdomain" }
//! auth: [api_key]
//! actions:
//!   get_order:
//!     summary: Reads one order.
//!     method: GET
//!     path: /orders/{id}.json
//!     inputs:
//!       id: { in: path, schema: { type: integer } }
//!       fields: { in: query, schema: { type: string }, description: Only these fields }
//!     response: /order
//! ```
//!
//! An action's body inputs are sent as JSON, or with `encoding: form` as a form
//! (`application/x-www-form-urlencoded`, as Stripe's API wants).
//!
//! A list action can read several pages (`pagination`, see [`Pagination`]): the step's output is
//! then `{items, pages, complete, next}`.
//!
//! A definition may also give its connections a default `rate_limit` (the vendor's documented
//! limit; a connection's own replaces it), the HTTP statuses worth retrying (`retry_on`, default
//! 408, 429 and 5xx), and where an API that answers 200 to a failed call says so (`errors`, as
//! Slack's `{"ok": false, "error": "channel_not_found"}`):
//!
//! ```yaml
//! rate_limit: { requests: 2, per: 1s }
//! retry_on: [409, 429, 500, 502, 503, 504]
//! errors: { ok: /ok, message: /error }
//! ```
//!
//! `triggers` name what a workflow can start from: the vendor's webhooks (with their signature
//! preset; the secret is the connection's `webhook_secret`) and polls of a list action with a
//! cursor. A workflow picks one with `uses:` ([`TriggerDef`]):
//!
//! ```yaml
//! triggers:
//!   order_created:
//!     summary: An order was placed.
//!     webhook: { signature: { preset: shopify } }
//!   customer_changed:
//!     summary: A customer was created or changed.
//!     poll:
//!       action: list_customers
//!       every: 5m
//!       with: { updated_at_min: "${{ .cursor // \"1970-01-01T00:00:00Z\" }}" }
//!       items: ${{ .response.items }}
//!       key: ${{ .item.id }}-${{ .item.updated_at }}
//!       cursor: ${{ [.items[].updated_at] | max }}
//! ```
//!
//! Unfinished: registering and removing a vendor's webhook subscription when a workflow is
//! deployed or removed; the subscription is made in the vendor's console, pointing at the
//! workflow's `/hooks/<path>`.

pub mod import;

use serde_json::{Map, Value};

use crate::decode::{self, Fields};
use crate::diag::{Diagnostics, did_you_mean};
use crate::yaml::{Kind, Node};

/// A connector described by a definition file.
#[derive(Clone, Debug)]
pub struct Definition {
    /// The `type:` of connections of this connector.
    pub type_name: String,
    /// One line saying what it talks to.
    pub summary: String,
    /// Where the API is documented.
    pub docs: Option<String>,
    /// The API's base URL, with `{variable}` placeholders.
    pub base_url: String,
    /// What each connection fills into the base URL, in file order.
    pub variables: Vec<Variable>,
    /// The `auth.type`s a connection of this type may use (the `http` connector's schemes).
    pub auth: Vec<String>,
    /// Settings of an `auth.type` that the vendor fixes, which connections need not repeat (an
    /// API key's `header`, an OAuth2 `token_url`): `auth: [{ type: api_key, header: X-Shopify-Access-Token }]`.
    /// A connection's own value wins.
    pub auth_defaults: Vec<(String, Node)>,
    /// The actions, in file order.
    pub actions: Vec<ActionDef>,
    /// The raw `request` action of the build's `http` connector, which connections of this type
    /// also have (the escape hatch: any request, with the connection's credentials), unless an
    /// action of the definition has that name. Set by [`crate::Catalog::define`].
    pub raw_request: Option<&'static crate::ActionSpec>,
    /// The limit of connections that do not set their own `rate_limit`.
    pub rate_limit: Option<crate::RateLimit>,
    /// The HTTP statuses after which a call is retried (`None`: 408, 429 and 5xx).
    pub retry_on: Option<Vec<u16>>,
    /// Where a successful (2xx) answer says the call failed, if the API does that.
    pub errors: Option<ErrorBody>,
    /// What workflows can start from, in file order.
    pub triggers: Vec<TriggerDef>,
    /// The SHA-256 of the definition as read (its JSON form), in hex: which version of it a
    /// workflow was compiled with.
    pub digest: String,
    /// The definition as read, as one line of JSON (kept with the workflow versions that use it).
    pub source: String,
}

/// A trigger of a defined connector, which a workflow's `webhook` or `poll` trigger names with
/// `uses: <connection>.<trigger>`; the workflow's own settings (a `path`, an `every`) add to the
/// definition's or replace them.
#[derive(Clone, Debug, PartialEq)]
pub struct TriggerDef {
    /// Its name, after the connection's in `uses:`.
    pub name: String,
    /// One line saying what starts a run.
    pub summary: String,
    /// Where it is documented.
    pub docs: Option<String>,
    /// A webhook or a poll.
    pub kind: TriggerKind,
    /// For a webhook: how the hub registers it with the vendor, if the vendor's API allows.
    pub subscription: Option<Subscription>,
}

/// How the hub registers a webhook with the vendor when a workflow that uses it is served, and
/// removes it when the workflow goes: calls of the definition's own actions.
///
/// ```yaml
/// subscribe:
///   action: create_webhook
///   with: { webhook: { topic: orders/create, address: "${{ .url }}", format: json } }
///   id: /id                  # where the subscription's id is in the action's output
/// unsubscribe:
///   action: delete_webhook
///   with: { id: "${{ .id }}" }
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct Subscription {
    /// The action that registers the hook; its `with` is evaluated over `{url, workflow}`.
    pub subscribe: ActionCall,
    /// A JSON Pointer to the subscription's id in the subscribe action's output.
    pub id: String,
    /// The action that removes it; its `with` is evaluated over `{id, url, workflow}`.
    pub unsubscribe: Option<ActionCall>,
}

/// A call of one of the definition's actions, with inputs written as in a step.
#[derive(Clone, Debug, PartialEq)]
pub struct ActionCall {
    /// The action.
    pub action: String,
    /// Its inputs (templates).
    pub with: Node,
}

/// What kind of trigger a connector's trigger is.
#[derive(Clone, Debug, PartialEq)]
pub enum TriggerKind {
    /// The vendor calls `/hooks/<path>`: the settings of a webhook trigger (`signature` without
    /// its `secret`, which is the connection's `webhook_secret`; `dedupe`).
    Webhook(Node),
    /// An action asked for new items: the settings of a poll trigger (`every`, `with`, `items`,
    /// `key`, `cursor`), with `action` naming one of the definition's actions.
    Poll {
        /// The action polled.
        action: String,
        /// The poll trigger's settings.
        settings: Node,
    },
}

impl TriggerKind {
    /// `webhook` or `poll`: the workflow trigger that uses it.
    pub fn name(&self) -> &'static str {
        match self {
            TriggerKind::Webhook(_) => "webhook",
            TriggerKind::Poll { .. } => "poll",
        }
    }
}

/// How an API that answers 2xx to a failed call says so: `errors: { ok: /ok, message: /error }`.
#[derive(Clone, Debug, PartialEq)]
pub struct ErrorBody {
    /// A JSON Pointer to a flag in the body; `false` there means the call failed.
    pub ok: String,
    /// A JSON Pointer to what went wrong, for the step's error message.
    pub message: Option<String>,
}

/// A placeholder of the base URL, set by each connection.
#[derive(Clone, Debug, PartialEq)]
pub struct Variable {
    /// Its name, which is also the connection's key.
    pub name: String,
    /// What it is, for people.
    pub description: Option<String>,
    /// The value when a connection does not set it; without one, connections must.
    pub default: Option<String>,
}

/// One action of a defined connector: one HTTP request.
#[derive(Clone, Debug, PartialEq)]
pub struct ActionDef {
    /// Its name, after the connection's in `uses:`.
    pub name: String,
    /// One line saying what it does.
    pub summary: String,
    /// Where it is documented.
    pub docs: Option<String>,
    /// The HTTP method, in capitals.
    pub method: String,
    /// The path after the base URL, with `{input}` placeholders.
    pub path: String,
    /// Its inputs, in file order.
    pub inputs: Vec<InputDef>,
    /// A JSON Pointer into the response body: the part the step returns (`None`: the whole body).
    pub response: Option<String>,
    /// Whether the body inputs are sent as a form (`encoding: form`,
    /// `application/x-www-form-urlencoded`, nested values as `a[b]=…`) rather than JSON.
    pub form: bool,
    /// How the action reads more pages, if it does.
    pub pagination: Option<Pagination>,
}

/// How a list action reads more pages. The items of each page are at the action's `response`
/// pointer; a step reads up to `pages` pages (an input every paginated action has; default
/// [`DEFAULT_PAGES`], at most [`MAX_PAGES`]) and its output is `{items, pages, complete, next}`:
/// `complete` is false when pages were left, and `next` is what asks for the following one.
#[derive(Clone, Debug, PartialEq)]
pub enum Pagination {
    /// The next page's cursor is in the body (`next`, a JSON Pointer) and goes back in the query
    /// parameter `param`; no cursor, an empty one, or `has_more` false ends the list.
    Cursor {
        /// The query parameter.
        param: String,
        /// Where the next cursor is.
        next: CursorFrom,
        /// Where a "more pages" flag is, if the API gives one.
        has_more: Option<String>,
    },
    /// The next page's URL (or its path on the API's host) is in the body at `next`, as
    /// Salesforce's `nextRecordsUrl`; none, null or empty ends the list.
    NextUrl {
        /// Where the URL is in a page's body.
        next: String,
    },
    /// The next page's URL is in the `Link` header (`rel="next"`), as GitHub sends it.
    Link,
    /// The position goes in `param` as the number of items read so far (from 0); an empty page
    /// ends the list.
    Offset {
        /// The query parameter.
        param: String,
    },
    /// The page number goes in `param`, from `start`; an empty page ends the list.
    Page {
        /// The query parameter.
        param: String,
        /// The first page's number.
        start: u64,
    },
}

/// Where a cursor comes from.
#[derive(Clone, Debug, PartialEq)]
pub enum CursorFrom {
    /// A JSON Pointer into the page's body (`next: /meta/next_cursor`).
    Body(String),
    /// A JSON Pointer into the page's last item (`last: /id`, as Stripe's `starting_after`); an
    /// empty page ends the list.
    LastItem(String),
}

/// Pages a step reads when it does not say: `with: { pages: N }`.
pub const DEFAULT_PAGES: u64 = 10;
/// Most pages one step may read.
pub const MAX_PAGES: u64 = 1000;
/// The input of paginated actions that says how many pages to read.
pub const PAGES_INPUT: &str = "pages";

const PAGINATION_KEYS: &[&str] = &["style", "param", "next", "last", "has_more", "start"];

fn pagination(node: &Node, diags: &mut Diagnostics) -> Option<Pagination> {
    let mut f = Fields::new(node, "`pagination`", PAGINATION_KEYS, diags)?;
    let style_node = f.require("style", diags)?;
    let style = decode::string(style_node, "`pagination.style`", diags)?;
    let text = |key: &str, f: &mut Fields<'_>, diags: &mut Diagnostics| {
        f.require(key, diags)
            .and_then(|n| decode::string(n, &format!("`pagination.{key}`"), diags))
    };
    let pointer = |p: Option<String>, diags: &mut Diagnostics| {
        let p = p?;
        // "" is the whole body (or the whole last item).
        if p.is_empty() || p.starts_with('/') {
            Some(p)
        } else {
            diags.error(
                node.pos,
                format!("`pagination`: `{p}` must be a JSON Pointer such as `/next_cursor`"),
            );
            None
        }
    };
    let out = match style.as_str() {
        "cursor" => {
            let param = text("param", &mut f, diags);
            let next = match (f.has("next"), f.has("last")) {
                (true, true) | (false, false) => {
                    diags.error(
                        node.pos,
                        "a cursor comes from the body (`next: /pointer`) or from the last item (`last: /pointer`): give one of them",
                    );
                    None
                }
                (true, false) => pointer(text("next", &mut f, diags), diags).map(CursorFrom::Body),
                (false, true) => {
                    pointer(text("last", &mut f, diags), diags).map(CursorFrom::LastItem)
                }
            };
            let has_more = f
                .get("has_more")
                .and_then(|n| decode::string(n, "`pagination.has_more`", diags));
            let has_more = match has_more {
                Some(p) => Some(pointer(Some(p), diags)?),
                None => None,
            };
            Some(Pagination::Cursor {
                param: param?,
                next: next?,
                has_more,
            })
        }
        "link" => Some(Pagination::Link),
        "next_url" => {
            let next = text("next", &mut f, diags);
            pointer(next, diags).map(|next| Pagination::NextUrl { next })
        }
        "offset" => text("param", &mut f, diags).map(|param| Pagination::Offset { param }),
        "page" => {
            let param = text("param", &mut f, diags);
            let start = match f.get("start") {
                Some(n) => decode::integer(n, "`pagination.start`", 0, 1_000_000, diags)?,
                None => 1,
            };
            param.map(|param| Pagination::Page { param, start })
        }
        other => {
            diags.error(
                style_node.pos,
                format!("`pagination.style` must be cursor, link, next_url, offset or page, found `{other}`"),
            );
            // Which other keys apply depends on the style: nothing more to say about them.
            return None;
        }
    };
    f.finish(diags);
    out
}

/// An input of an action, and where the request carries it.
#[derive(Clone, Debug, PartialEq)]
pub struct InputDef {
    /// Its name under `with:`.
    pub name: String,
    /// Where it goes.
    pub location: Location,
    /// What a value must look like: a JSON Schema (`type`, `enum`, `items`, `properties`,
    /// `required` and `additionalProperties` are checked by the lint).
    pub schema: Value,
    /// Whether a step must give it (always for path inputs).
    pub required: bool,
    /// What it is, for people.
    pub description: Option<String>,
}

/// Where an input goes in the request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Location {
    /// Into the path, in place of `{name}`.
    Path,
    /// Into the query string.
    Query,
    /// Into a header of the input's name.
    Header,
    /// A field of the JSON body object.
    Body,
    /// The whole JSON body.
    WholeBody,
}

impl Location {
    fn parse(text: &str) -> Option<Location> {
        Some(match text {
            "path" => Location::Path,
            "query" => Location::Query,
            "header" => Location::Header,
            "body" => Location::Body,
            "whole_body" => Location::WholeBody,
            _ => return None,
        })
    }
}

/// Keys of the format that are reserved for what it does not do yet: refused with a message.
pub(crate) const NOT_YET: &[&str] = &[];
pub(crate) const KEYS: &[&str] = &[
    "connector",
    "summary",
    "docs",
    "base_url",
    "variables",
    "auth",
    "actions",
    "rate_limit",
    "retry_on",
    "errors",
    "triggers",
];
pub(crate) const ERRORS_KEYS: &[&str] = &["ok", "message"];
pub(crate) const TRIGGER_KEYS: &[&str] = &["summary", "docs", "webhook", "poll"];
/// Keys of a connector's webhook trigger: a workflow's webhook settings the vendor fixes, and how
/// the hub registers and removes the subscription.
pub(crate) const TRIGGER_WEBHOOK_KEYS: &[&str] =
    &["signature", "dedupe", "subscribe", "unsubscribe"];
/// Keys of `subscribe` and `unsubscribe`.
pub(crate) const SUBSCRIBE_KEYS: &[&str] = &["action", "with", "id"];
/// Keys of a connector's poll trigger.
pub(crate) const TRIGGER_POLL_KEYS: &[&str] =
    &["action", "every", "with", "items", "key", "cursor"];
/// The key of a connection of a defined type that holds its webhooks' signing secret.
pub const WEBHOOK_SECRET: &str = "webhook_secret";
pub(crate) const VARIABLE_KEYS: &[&str] = &["description", "default"];
pub(crate) const ACTION_KEYS: &[&str] = &[
    "summary",
    "docs",
    "method",
    "path",
    "inputs",
    "response",
    "encoding",
    "pagination",
];
pub(crate) const INPUT_KEYS: &[&str] = &["in", "schema", "required", "description"];
const METHODS: &[&str] = &["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"];
/// The `auth.type`s of the `http` connector, which a defined connector's connections use.
pub const AUTH_TYPES: &[&str] = &["bearer", "basic", "api_key", "oauth2", "service_account"];
/// The keys of a connection of a defined type besides its variables: what the `http` connector
/// takes (a `base_url` there replaces the definition's: a mock server, a proxy, an enterprise
/// host; its `{variables}` are filled in the same way).
pub const CONNECTION_KEYS: &[&str] = &[
    "type",
    "base_url",
    "auth",
    "headers",
    "timeout",
    "rate_limit",
    "allow_private_network",
    "credential_origins",
    WEBHOOK_SECRET,
];

/// Reads a definition; every problem goes to `diags` (whose file is the definition's).
pub fn decode(node: &Node, diags: &mut Diagnostics) -> Option<Definition> {
    let mut f = Fields::new(node, "connector definition", KEYS, diags)?;
    for &later in NOT_YET {
        if let Some((key, _)) = f.get_entry(later) {
            diags.error(
                key.pos,
                format!("`{later}` is not supported in connector definitions yet"),
            );
        }
    }
    let type_name = f
        .require("connector", diags)
        .and_then(|n| decode::string(n, "`connector`", diags));
    if let (Some(name), Some(n)) = (&type_name, f.get("connector"))
        && !decode::is_identifier(name)
    {
        diags.error(
            n.pos,
            format!("`connector` must be letters, digits and `_`, found `{name}`"),
        );
    }
    let summary = f
        .require("summary", diags)
        .and_then(|n| decode::string(n, "`summary`", diags));
    let docs = f
        .get("docs")
        .and_then(|n| decode::string(n, "`docs`", diags));
    let base_node = f.require("base_url", diags);
    let base_url = base_node.and_then(|n| decode::string(n, "`base_url`", diags));
    let variables = match f.get("variables") {
        Some(n) => variables(n, diags),
        None => Vec::new(),
    };
    if let (Some(url), Some(n)) = (&base_url, base_node) {
        check_base_url(url, &variables, n, diags);
    }
    let (auth, auth_defaults) = match f.get("auth") {
        Some(n) => auth(n, diags),
        None => (Vec::new(), Vec::new()),
    };
    let actions = match f.require("actions", diags) {
        Some(n) => actions(n, diags),
        None => Vec::new(),
    };
    let rate_limit = f
        .get("rate_limit")
        .and_then(|n| crate::project::read_rate_limit(n, diags));
    let retry_on = f.get("retry_on").and_then(|n| statuses(n, diags));
    let errors = f.get("errors").and_then(|n| error_body(n, diags));
    let triggers = match f.get("triggers") {
        Some(n) => triggers(n, &actions, diags),
        None => Vec::new(),
    };
    f.finish(diags);
    Some(Definition {
        type_name: type_name?,
        summary: summary?,
        docs,
        base_url: base_url?,
        variables,
        auth,
        auth_defaults,
        actions,
        raw_request: None,
        rate_limit,
        retry_on,
        errors,
        triggers,
        digest: crate::workflow::version_of(&node.to_json().to_string()),
        source: node.to_json().to_string(),
    })
}

/// Reads back a definition kept as JSON with a workflow version ([`Definition::source`]), with the
/// raw `request` action of `catalog`'s `http` connector as [`crate::Catalog::define`] gives it.
pub fn restore(json: &Value, catalog: &crate::Catalog) -> Option<Definition> {
    let node = crate::yaml::parse(&json.to_string()).ok()?;
    let mut diags = Diagnostics::new("stored definition");
    let mut def = decode(&node, &mut diags).filter(|_| diags.is_empty())?;
    def.raw_request = match catalog.get("http") {
        Some(crate::Spec::Static(http)) => http.action("request"),
        _ => None,
    };
    Some(def)
}

fn triggers(node: &Node, actions: &[ActionDef], diags: &mut Diagnostics) -> Vec<TriggerDef> {
    let Some(entries) = decode::entries(node, "`triggers`", diags) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (key, value) in entries {
        if !decode::is_identifier(&key.name) {
            diags.error(
                key.pos,
                format!("trigger `{}` must be letters, digits and `_`", key.name),
            );
            continue;
        }
        if actions.iter().any(|a| a.name == key.name) {
            diags.error(
                key.pos,
                format!(
                    "trigger `{}` has the name of an action; `uses:` could not tell them apart",
                    key.name
                ),
            );
            continue;
        }
        let what = format!("trigger `{}`", key.name);
        let Some(mut f) = Fields::new(value, &what, TRIGGER_KEYS, diags) else {
            continue;
        };
        let summary = f
            .require("summary", diags)
            .and_then(|n| decode::string(n, "`summary`", diags));
        let docs = f
            .get("docs")
            .and_then(|n| decode::string(n, "`docs`", diags));
        let mut subscription = None;
        let kind = match (f.get("webhook"), f.get("poll")) {
            (Some(w), None) => {
                subscription = subscription_of(w, actions, diags);
                webhook_trigger(w, diags)
            }
            (None, Some(p)) => poll_trigger(p, actions, diags),
            _ => {
                diags.error(
                    value.pos,
                    format!("{what} must be a `webhook` or a `poll`, one of them"),
                );
                None
            }
        };
        f.finish(diags);
        if let (Some(summary), Some(kind)) = (summary, kind) {
            out.push(TriggerDef {
                name: key.name.clone(),
                summary,
                docs,
                kind,
                subscription,
            });
        }
    }
    out
}

fn webhook_trigger(node: &Node, diags: &mut Diagnostics) -> Option<TriggerKind> {
    let mut f = Fields::new(node, "a connector's `webhook`", TRIGGER_WEBHOOK_KEYS, diags)?;
    let before = diags.len();
    if let Some(sig) = f.get("signature") {
        // Checked as a workflow's would be, with a stand-in for the connection's secret.
        let with_secret = with_entry(sig, "secret", &format!("{{ env: {WEBHOOK_SECRET} }}"));
        if let Some(with_secret) = with_secret {
            crate::trigger::read_signature(&with_secret, diags);
        } else {
            diags.error(
                sig.pos,
                "`signature` must be a mapping such as `{ preset: shopify }`",
            );
        }
        if let Kind::Map(entries) = &sig.kind
            && let Some((k, _)) = entries.iter().find(|(k, _)| k.name == "secret")
        {
            diags.error(
                k.pos,
                format!("the secret is each connection's `{WEBHOOK_SECRET}`, not the definition's"),
            );
        }
    }
    f.get("dedupe");
    f.get("subscribe");
    f.get("unsubscribe");
    f.finish(diags);
    let settings = without_entry(&without_entry(node, "subscribe"), "unsubscribe");
    (diags.len() == before).then_some(TriggerKind::Webhook(settings))
}

/// A webhook's `subscribe` and `unsubscribe`, checked against the definition's actions.
fn subscription_of(
    node: &Node,
    actions: &[ActionDef],
    diags: &mut Diagnostics,
) -> Option<Subscription> {
    let Kind::Map(entries) = &node.kind else {
        return None;
    };
    let get = |key: &str| entries.iter().find(|(k, _)| k.name == key).map(|(_, v)| v);
    let call = |n: &Node, what: &str, needs_id: bool, diags: &mut Diagnostics| {
        let mut f = Fields::new(n, what, SUBSCRIBE_KEYS, diags)?;
        let action = f.require("action", diags).and_then(|a| {
            let name = decode::string(a, "`action`", diags)?;
            if actions.iter().any(|x| x.name == name) {
                Some(name)
            } else {
                diags.error(
                    a.pos,
                    format!("{what}: the definition has no action `{name}`"),
                );
                None
            }
        });
        let with = f.get("with").cloned();
        if let Some(w) = &with {
            crate::expr::Template::from_node(w, diags);
        }
        let id = if needs_id {
            f.require("id", diags).and_then(|i| {
                let p = decode::string(i, "`id`", diags)?;
                if p.is_empty() || p.starts_with('/') {
                    Some(p)
                } else {
                    diags.error(i.pos, "`id` must be a JSON Pointer such as `/webhook/id`");
                    None
                }
            })
        } else {
            if let Some((k, _)) = f.get_entry("id") {
                diags.error(
                    k.pos,
                    "`id` belongs to `subscribe`: where its output holds the id",
                );
            }
            Some(String::new())
        };
        f.finish(diags);
        Some((
            ActionCall {
                action: action?,
                with: with.unwrap_or(Node {
                    pos: n.pos,
                    kind: Kind::Map(Vec::new()),
                }),
            },
            id?,
        ))
    };
    let subscribe = get("subscribe").and_then(|n| call(n, "`subscribe`", true, diags));
    let unsubscribe = get("unsubscribe").and_then(|n| call(n, "`unsubscribe`", false, diags));
    if let (None, Some(n)) = (get("subscribe"), get("unsubscribe")) {
        diags.error(n.pos, "`unsubscribe` needs a `subscribe`");
    }
    let (subscribe, id) = subscribe?;
    Some(Subscription {
        subscribe,
        id,
        unsubscribe: unsubscribe.map(|(c, _)| c),
    })
}

fn poll_trigger(
    node: &Node,
    actions: &[ActionDef],
    diags: &mut Diagnostics,
) -> Option<TriggerKind> {
    let mut f = Fields::new(node, "a connector's `poll`", TRIGGER_POLL_KEYS, diags)?;
    let before = diags.len();
    let action = f.require("action", diags).and_then(|n| {
        let name = decode::string(n, "`action`", diags)?;
        if actions.iter().any(|a| a.name == name) {
            Some(name)
        } else {
            let hint = did_you_mean(&name, actions.iter().map(|a| a.name.as_str()))
                .map(|h| format!("; did you mean `{h}`?"))
                .unwrap_or_default();
            diags.error(
                n.pos,
                format!("`action`: the definition has no action `{name}`{hint}"),
            );
            None
        }
    });
    if let Some(n) = f.get("every") {
        decode::duration(n, "`every`", diags);
    }
    if let Some(n) = f.get("with") {
        crate::expr::Template::from_node(n, diags);
    }
    for key in ["items", "cursor"] {
        if let Some(n) = f.get(key) {
            crate::expr::Template::expr_from_node(n, &format!("`{key}`"), diags);
        }
    }
    if let Some(n) = f.get("key") {
        crate::expr::Template::from_node(n, diags);
    }
    f.finish(diags);
    let action = action?;
    let settings = without_entry(node, "action");
    (diags.len() == before).then_some(TriggerKind::Poll { action, settings })
}

/// `node` (a mapping) with `key: <yaml>` added, or `None` when it is not a mapping.
pub(crate) fn with_entry(node: &Node, key: &str, yaml: &str) -> Option<Node> {
    let Kind::Map(entries) = &node.kind else {
        return None;
    };
    let mut value = crate::yaml::parse(yaml).ok()?;
    set_pos(&mut value, node.pos);
    let mut entries = entries.clone();
    entries.push((
        crate::yaml::Key {
            name: key.to_string(),
            pos: node.pos,
        },
        value,
    ));
    Some(Node {
        pos: node.pos,
        kind: Kind::Map(entries),
    })
}

/// `node` (a mapping) without `key`.
pub(crate) fn without_entry(node: &Node, key: &str) -> Node {
    match &node.kind {
        Kind::Map(entries) => Node {
            pos: node.pos,
            kind: Kind::Map(
                entries
                    .iter()
                    .filter(|(k, _)| k.name != key)
                    .cloned()
                    .collect(),
            ),
        },
        _ => node.clone(),
    }
}

fn set_pos(node: &mut Node, pos: crate::yaml::Pos) {
    node.pos = pos;
    match &mut node.kind {
        Kind::Map(entries) => {
            for (k, v) in entries {
                k.pos = pos;
                set_pos(v, pos);
            }
        }
        Kind::Seq(items) => items.iter_mut().for_each(|v| set_pos(v, pos)),
        _ => {}
    }
}

fn statuses(node: &Node, diags: &mut Diagnostics) -> Option<Vec<u16>> {
    let items = decode::list(node, "`retry_on`", diags)?;
    let mut out = Vec::new();
    for item in items {
        let status = decode::integer(item, "a `retry_on` status", 100, 599, diags)?;
        out.push(status as u16);
    }
    Some(out)
}

fn error_body(node: &Node, diags: &mut Diagnostics) -> Option<ErrorBody> {
    let mut f = Fields::new(node, "`errors`", ERRORS_KEYS, diags)?;
    let pointer = |key: &str, f: &mut Fields<'_>, diags: &mut Diagnostics| {
        let n = f.get(key)?;
        let p = decode::string(n, &format!("`errors.{key}`"), diags)?;
        if p.starts_with('/') {
            Some(p)
        } else {
            diags.error(
                n.pos,
                format!("`errors.{key}` must be a JSON Pointer such as `/ok`, found `{p}`"),
            );
            None
        }
    };
    let ok = pointer("ok", &mut f, diags);
    let message = pointer("message", &mut f, diags);
    if !f.has("ok") {
        diags.error(
            node.pos,
            "`errors` needs `ok`, the pointer to the flag that is false when a call failed",
        );
    }
    f.finish(diags);
    Some(ErrorBody { ok: ok?, message })
}

/// The `{name}` placeholders of a template, in order.
fn placeholders(template: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        let Some(close) = rest[open..].find('}') else {
            break;
        };
        out.push(&rest[open + 1..open + close]);
        rest = &rest[open + close + 1..];
    }
    out
}

fn check_base_url(url: &str, variables: &[Variable], node: &Node, diags: &mut Diagnostics) {
    if !(url.starts_with("https://") || url.starts_with("http://")) {
        diags.error(
            node.pos,
            format!("`base_url` must start with https:// or http://, found `{url}`"),
        );
    }
    for name in placeholders(url) {
        if !variables.iter().any(|v| v.name == name) {
            diags.error(
                node.pos,
                format!("`base_url` uses `{{{name}}}`, which `variables` does not declare"),
            );
        }
    }
}

fn variables(node: &Node, diags: &mut Diagnostics) -> Vec<Variable> {
    let Some(entries) = decode::entries(node, "`variables`", diags) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (key, value) in entries {
        if !decode::is_identifier(&key.name) || CONNECTION_KEYS.contains(&key.name.as_str()) {
            diags.error(
                key.pos,
                format!(
                    "variable `{}` must be letters, digits and `_`, and not one of: {}",
                    key.name,
                    CONNECTION_KEYS.join(", ")
                ),
            );
            continue;
        }
        let what = format!("variable `{}`", key.name);
        let Some(mut f) = Fields::new(value, &what, VARIABLE_KEYS, diags) else {
            continue;
        };
        let description = f
            .get("description")
            .and_then(|n| decode::string(n, "`description`", diags));
        let default = f
            .get("default")
            .and_then(|n| decode::string(n, "`default`", diags));
        f.finish(diags);
        out.push(Variable {
            name: key.name.clone(),
            description,
            default,
        });
    }
    out
}

type AuthList = (Vec<String>, Vec<(String, Node)>);

/// `auth: [bearer, { type: api_key, header: X-Shopify-Access-Token }]`: the types, and the settings
/// a mapping entry fixes for its type.
fn auth(node: &Node, diags: &mut Diagnostics) -> AuthList {
    let Some(items) = decode::list(node, "`auth`", diags) else {
        return (Vec::new(), Vec::new());
    };
    let (mut out, mut defaults) = (Vec::new(), Vec::new());
    for item in items {
        let (name, name_pos) = match &item.kind {
            Kind::Map(entries) => match entries.iter().find(|(k, _)| k.name == "type") {
                Some((_, t)) => (decode::string(t, "`auth` entry's `type`", diags), t.pos),
                None => {
                    diags.error(
                        item.pos,
                        "an `auth` entry written as a mapping needs `type`, such as `{ type: api_key, header: X-Api-Key }`",
                    );
                    continue;
                }
            },
            _ => (decode::string(item, "an `auth` entry", diags), item.pos),
        };
        let Some(name) = name else {
            continue;
        };
        if !AUTH_TYPES.contains(&name.as_str()) {
            diags.error(
                name_pos,
                format!("unknown auth type `{name}`; use {}", AUTH_TYPES.join(", ")),
            );
            continue;
        }
        if let Kind::Map(entries) = &item.kind {
            for (k, v) in entries {
                if k.name == "type" {
                    continue;
                }
                // Credentials belong to each connection, never to the definition.
                if matches!(v.kind, Kind::Map(_)) || AUTH_CREDENTIALS.contains(&k.name.as_str()) {
                    diags.error(
                        k.pos,
                        format!(
                            "`{}` is a credential of each connection, not of the definition",
                            k.name
                        ),
                    );
                }
            }
            defaults.push((name.clone(), without_entry(item, "type")));
        }
        out.push(name);
    }
    (out, defaults)
}

/// The settings of the `http` connector's auth schemes that hold credentials.
const AUTH_CREDENTIALS: &[&str] = &[
    "token",
    "password",
    "value",
    "client_secret",
    "username",
    "key",
];

fn actions(node: &Node, diags: &mut Diagnostics) -> Vec<ActionDef> {
    let Some(entries) = decode::entries(node, "`actions`", diags) else {
        return Vec::new();
    };
    if entries.is_empty() {
        diags.error(node.pos, "`actions` must name at least one action");
    }
    let mut out = Vec::new();
    for (key, value) in entries {
        if !decode::is_identifier(&key.name) {
            diags.error(
                key.pos,
                format!("action `{}` must be letters, digits and `_`", key.name),
            );
            continue;
        }
        if let Some(action) = action(&key.name, value, diags) {
            out.push(action);
        }
    }
    out
}

fn action(name: &str, node: &Node, diags: &mut Diagnostics) -> Option<ActionDef> {
    let what = format!("action `{name}`");
    let mut f = Fields::new(node, &what, ACTION_KEYS, diags)?;
    let pagination = f.get("pagination").and_then(|n| pagination(n, diags));
    let summary = f
        .require("summary", diags)
        .and_then(|n| decode::string(n, "`summary`", diags));
    let docs = f
        .get("docs")
        .and_then(|n| decode::string(n, "`docs`", diags));
    let method = f.require("method", diags).and_then(|n| {
        let m = decode::string(n, "`method`", diags)?.to_ascii_uppercase();
        if METHODS.contains(&m.as_str()) {
            Some(m)
        } else {
            diags.error(
                n.pos,
                format!(
                    "`method` must be one of {}, found `{m}`",
                    METHODS.join(", ")
                ),
            );
            None
        }
    });
    let path_node = f.require("path", diags);
    let path = path_node.and_then(|n| decode::string(n, "`path`", diags));
    let mut inputs = match f.get("inputs") {
        Some(n) => action_inputs(n, diags),
        None => Vec::new(),
    };
    let response = f.get("response").and_then(|n| {
        let pointer = decode::string(n, "`response`", diags)?;
        if pointer.is_empty() || pointer.starts_with('/') {
            Some(pointer)
        } else {
            diags.error(
                n.pos,
                format!("`response` must be a JSON Pointer such as `/orders`, found `{pointer}`"),
            );
            None
        }
    });
    let form = match f.get("encoding") {
        Some(n) => match decode::string(n, "`encoding`", diags).as_deref() {
            Some("json") => false,
            Some("form") => true,
            Some(other) => {
                diags.error(
                    n.pos,
                    format!("`encoding` must be json or form, found `{other}`"),
                );
                false
            }
            None => false,
        },
        None => false,
    };
    f.finish(diags);
    let (path, path_node) = (path?, path_node?);
    if !path.starts_with('/') {
        diags.error(
            path_node.pos,
            format!("`path` must start with `/`, found `{path}`"),
        );
    }
    let named = placeholders(&path);
    for input in &mut inputs {
        if input.location == Location::Path {
            input.required = true;
            if !named.contains(&input.name.as_str()) {
                diags.error(
                    path_node.pos,
                    format!(
                        "input `{}` goes into the path, but `path` has no `{{{}}}`",
                        input.name, input.name
                    ),
                );
            }
        }
    }
    for placeholder in named {
        if !inputs
            .iter()
            .any(|i| i.name == placeholder && i.location == Location::Path)
        {
            diags.error(
                path_node.pos,
                format!("`path` uses `{{{placeholder}}}`, which no input with `in: path` declares"),
            );
        }
    }
    let whole = inputs
        .iter()
        .filter(|i| i.location == Location::WholeBody)
        .count();
    let fields = inputs
        .iter()
        .filter(|i| i.location == Location::Body)
        .count();
    if pagination.is_some() && response.is_none() {
        diags.error(
            node.pos,
            format!("{what}: a paginated action needs `response`, the pointer to each page's list of items"),
        );
    }
    if pagination.is_some() && inputs.iter().any(|i| i.name == PAGES_INPUT) {
        diags.error(
            node.pos,
            format!("{what}: `{PAGES_INPUT}` is the input that says how many pages to read; name the API's own parameter otherwise"),
        );
    }
    if form && whole > 0 {
        diags.error(
            node.pos,
            format!("{what}: a form body is made of `body` inputs; `whole_body` is for JSON"),
        );
    }
    if whole > 1 || (whole == 1 && fields > 0) {
        diags.error(
            node.pos,
            format!("{what}: one `whole_body` input is the whole body; it cannot share it with other body inputs"),
        );
    }
    Some(ActionDef {
        name: name.to_string(),
        summary: summary?,
        docs,
        method: method?,
        path,
        inputs,
        response,
        form,
        pagination,
    })
}

fn action_inputs(node: &Node, diags: &mut Diagnostics) -> Vec<InputDef> {
    let Some(entries) = decode::entries(node, "`inputs`", diags) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (key, value) in entries {
        let what = format!("input `{}`", key.name);
        let Some(mut f) = Fields::new(value, &what, INPUT_KEYS, diags) else {
            continue;
        };
        let location = f.require("in", diags).and_then(|n| {
            let text = decode::string(n, "`in`", diags)?;
            let location = Location::parse(&text);
            if location.is_none() {
                diags.error(
                    n.pos,
                    format!("`in` must be path, query, header, body or whole_body, found `{text}`"),
                );
            }
            location
        });
        let schema = match f.get("schema") {
            Some(n) => {
                let schema = n.to_json();
                if !schema.is_object() {
                    diags.error(
                        n.pos,
                        format!(
                            "`schema` must be a mapping (a JSON Schema), found {}",
                            n.kind_name()
                        ),
                    );
                }
                schema
            }
            None => Value::Object(Map::new()),
        };
        let required = f
            .get("required")
            .and_then(|n| decode::boolean(n, "`required`", diags))
            .unwrap_or(false);
        let description = f
            .get("description")
            .and_then(|n| decode::string(n, "`description`", diags));
        f.finish(diags);
        if let Some(location) = location {
            out.push(InputDef {
                name: key.name.clone(),
                location,
                schema,
                required,
                description,
            });
        }
    }
    out
}

impl Definition {
    /// The action named `name`.
    pub fn action(&self, name: &str) -> Option<&ActionDef> {
        self.actions.iter().find(|a| a.name == name)
    }

    /// The trigger named `name`.
    pub fn trigger(&self, name: &str) -> Option<&TriggerDef> {
        self.triggers.iter().find(|t| t.name == name)
    }

    /// Checks a connection of this type as written in `weft.yaml` (the whole mapping, `type`
    /// included): its keys are the `http` connector's and the variables, every
    /// variable without a default is set, and `auth.type` is one the definition lists. (The `http`
    /// connector's own checks of `auth`, `headers` and the rest run when the connection is built.)
    pub fn check_settings(&self, node: &Node, diags: &mut Diagnostics) {
        let Kind::Map(entries) = &node.kind else {
            return;
        };
        let known: Vec<&str> = CONNECTION_KEYS
            .iter()
            .copied()
            .chain(self.variables.iter().map(|v| v.name.as_str()))
            .collect();
        for (key, value) in entries {
            if !known.contains(&key.name.as_str()) {
                let hint = match did_you_mean(&key.name, known.iter().copied()) {
                    Some(h) => format!("; did you mean `{h}`?"),
                    None => format!("; expected one of: {}", known.join(", ")),
                };
                diags.error(
                    key.pos,
                    format!(
                        "unknown key `{}` in a `{}` connection{hint}",
                        key.name, self.type_name
                    ),
                );
            } else if self.variables.iter().any(|v| v.name == key.name) {
                decode::string(value, &format!("`{}`", key.name), diags);
            } else if key.name == WEBHOOK_SECRET {
                crate::secret::SecretRef::decode(value, &format!("`{WEBHOOK_SECRET}`"), diags);
            } else if key.name == "auth" && !self.auth.is_empty() {
                let kind = match &value.kind {
                    Kind::Map(auth) => auth
                        .iter()
                        .find(|(k, _)| k.name == "type")
                        .and_then(|(_, t)| t.as_str()),
                    _ => None,
                };
                if let Some(kind) = kind
                    && !self.auth.iter().any(|a| a == kind)
                {
                    diags.error(
                        value.pos,
                        format!(
                            "a `{}` connection authenticates with {}, not `{kind}`",
                            self.type_name,
                            self.auth.join(" or ")
                        ),
                    );
                }
            }
        }
        for v in &self.variables {
            if v.default.is_none() && !entries.iter().any(|(k, _)| k.name == v.name) {
                let about = v
                    .description
                    .as_deref()
                    .map(|d| format!(" ({d})"))
                    .unwrap_or_default();
                diags.error(
                    node.pos,
                    format!(
                        "a `{}` connection needs `{}`{about}",
                        self.type_name, v.name
                    ),
                );
            }
        }
    }
}

impl ActionDef {
    /// The names of its inputs (with `pages` for a paginated action).
    pub fn input_names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.inputs.iter().map(|i| i.name.as_str()).collect();
        if self.pagination.is_some() {
            names.push(PAGES_INPUT);
        }
        names
    }

    /// The names of the inputs a step must give.
    pub fn required_names(&self) -> Vec<&str> {
        self.inputs
            .iter()
            .filter(|i| i.required)
            .map(|i| i.name.as_str())
            .collect()
    }

    /// Checks the literal values of a step's `with:` against the inputs' schemas (values that are
    /// expressions are known only when the step runs). Unknown and missing keys are the caller's.
    pub fn check_inputs(&self, with: &Node, diags: &mut Diagnostics) {
        let Kind::Map(entries) = &with.kind else {
            return;
        };
        for (key, value) in entries {
            if let Some(input) = self.inputs.iter().find(|i| i.name == key.name) {
                check_value(&input.schema, value, &format!("with.{}", key.name), diags);
            } else if key.name == PAGES_INPUT && self.pagination.is_some() {
                let schema = serde_json::json!({"type": "integer"});
                check_value(&schema, value, "with.pages", diags);
                if let Kind::Num(n) = &value.kind
                    && !n.as_u64().is_some_and(|p| (1..=MAX_PAGES).contains(&p))
                {
                    diags.error(
                        value.pos,
                        format!("`with.pages` must be from 1 to {MAX_PAGES}, found {n}"),
                    );
                }
            }
        }
    }
}

/// Whether a node is, or holds, an expression (`${{ … }}`): its value is known only at run time.
fn dynamic(node: &Node) -> bool {
    matches!(&node.kind, Kind::Str(s) if !s.expr_pos.is_empty())
}

/// Checks a literal value against a JSON Schema: `type` (one or a list), `enum`, and for lists and
/// mappings their `items`, `properties`, `required` and `additionalProperties: false`. Parts that
/// are expressions are skipped. `path` names the value in messages, such as `with.customer`.
pub fn check_value(schema: &Value, node: &Node, path: &str, diags: &mut Diagnostics) {
    if dynamic(node) {
        return;
    }
    let Some(schema) = schema.as_object() else {
        return;
    };
    if let Some(types) = schema.get("type") {
        let allowed: Vec<&str> = match types {
            Value::String(t) => vec![t.as_str()],
            Value::Array(list) => list.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        };
        if !allowed.is_empty() && !allowed.iter().any(|t| fits(t, node)) {
            diags.error(
                node.pos,
                format!(
                    "`{path}` must be {}, found {}",
                    allowed
                        .iter()
                        .map(|t| type_words(t))
                        .collect::<Vec<_>>()
                        .join(" or "),
                    node.kind_name()
                ),
            );
            return;
        }
    }
    if let Some(Value::Array(choices)) = schema.get("enum") {
        let value = node.to_json();
        if !choices.contains(&value) {
            let listed: Vec<String> = choices.iter().map(Value::to_string).collect();
            let hint = value
                .as_str()
                .and_then(|v| {
                    did_you_mean(v, choices.iter().filter_map(Value::as_str))
                        .map(|h| format!("; did you mean `{h}`?"))
                })
                .unwrap_or_default();
            diags.error(
                node.pos,
                format!(
                    "`{path}` must be one of {}, found {value}{hint}",
                    listed.join(", ")
                ),
            );
        }
    }
    match &node.kind {
        Kind::Seq(items) => {
            if let Some(item_schema) = schema.get("items") {
                for (i, item) in items.iter().enumerate() {
                    check_value(item_schema, item, &format!("{path}[{i}]"), diags);
                }
            }
        }
        Kind::Map(entries) => {
            let properties = schema.get("properties").and_then(Value::as_object);
            for (key, value) in entries {
                let inner = format!("{path}.{}", key.name);
                match properties.and_then(|p| p.get(&key.name)) {
                    Some(s) => check_value(s, value, &inner, diags),
                    None if schema.get("additionalProperties") == Some(&Value::Bool(false)) => {
                        let names = properties
                            .map(|p| p.keys().map(String::as_str).collect::<Vec<_>>())
                            .unwrap_or_default();
                        let hint = did_you_mean(&key.name, names.iter().copied())
                            .map(|h| format!("; did you mean `{h}`?"))
                            .unwrap_or_else(|| format!("; expected one of: {}", names.join(", ")));
                        diags.error(
                            key.pos,
                            format!("unknown key `{}` in `{path}`{hint}", key.name),
                        );
                    }
                    None => {}
                }
            }
            if let Some(Value::Array(required)) = schema.get("required") {
                for name in required.iter().filter_map(Value::as_str) {
                    if !entries.iter().any(|(k, _)| k.name == name) {
                        diags.error(node.pos, format!("`{path}` needs `{name}`"));
                    }
                }
            }
        }
        _ => {}
    }
}

fn fits(json_type: &str, node: &Node) -> bool {
    match (json_type, &node.kind) {
        ("string", Kind::Str(_))
        | ("boolean", Kind::Bool(_))
        | ("null", Kind::Null)
        | ("array", Kind::Seq(_))
        | ("object", Kind::Map(_))
        | ("number", Kind::Num(_)) => true,
        ("integer", Kind::Num(n)) => {
            n.is_i64() || n.is_u64() || n.as_f64().is_some_and(|f| f.fract() == 0.0)
        }
        _ => false,
    }
}

fn type_words(json_type: &str) -> &str {
    match json_type {
        "string" => "a string",
        "boolean" => "a boolean",
        "null" => "null",
        "array" => "a list",
        "object" => "a mapping",
        "number" => "a number",
        "integer" => "a whole number",
        other => other,
    }
}

#[cfg(test)]
mod tests;
