//! Connectors defined as data ([`weft_core::definition`]): each action is one HTTP request, sent
//! through the `http` connector with the connection's credentials, guard and timeouts.
//!
//! A connection of a defined type is an `http` connection whose `base_url` comes from the
//! definition (or from the connection, which may replace it), with the connection's variables
//! filled in:
//!
//! ```yaml
//! connections:
//!   shop:
//!     type: shop                    # connectors/shop.yaml defines it
//!     shop: acme                    # a variable of its base_url
//!     auth: { type: api_key, header: X-Shop-Access-Token, value: { secret: SHOP_TOKEN } }
//! ```
//!
//! A step's inputs go where the action says (path, query, header, a JSON or form body); the step's output
//! is the response body, or the part of it the action's `response` pointer names. A value missing
//! at that pointer is an empty output (`null`), not an error.
//!
//! A paginated action reads page after page (a cursor from the body, the `Link` header's next URL,
//! an offset or a page number) up to the step's `pages`, and answers `{items, pages, complete,
//! next}`.
//!
//! Every defined connection also has the `http` connector's raw `request` action (unless the
//! definition names an action so), with the connection's credentials: the escape hatch for what
//! the definition does not describe.
//!
//! Unfinished: the vendor's webhooks are not there yet.

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::{Map, Value, json};
use weft_core::definition::{
    ActionDef, CursorFrom, DEFAULT_PAGES, Definition, Location, MAX_PAGES, PAGES_INPUT, Pagination,
};
use weft_core::yaml::{Key, Kind, Node, Str};
use weft_core::{Connection, json_kind};

use crate::http::HttpConnector;
use crate::secret::Secrets;
use crate::{ActionError, Call, Connector};

/// A live connection of a defined type.
pub struct DefinedConnector {
    definition: Arc<Definition>,
    http: HttpConnector,
    /// The connection's base URL, variables filled in.
    base_url: String,
}

/// Characters a path segment keeps as they are; every other byte is percent-encoded.
fn unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn encode_segment(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for &b in text.as_bytes() {
        if unreserved(b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Puts `values` into `template`'s `{name}` placeholders.
fn fill(template: &str, values: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        let Some(close) = rest[open..].find('}') else {
            break;
        };
        let name = &rest[open + 1..open + close];
        out.push_str(&rest[..open]);
        out.push_str(&values(name).ok_or_else(|| format!("no value for `{{{name}}}`"))?);
        rest = &rest[open + close + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

fn text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// A form field's value as `name=…` pairs: nested mappings and lists as `name[key]` and
/// `name[0]` (the bracket notation form APIs such as Stripe's read).
fn flatten(name: &str, value: &Value, out: &mut Map<String, Value>) -> Result<(), String> {
    match value {
        Value::Null => {}
        Value::Object(map) => {
            for (k, v) in map {
                flatten(&format!("{name}[{k}]"), v, out)?;
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                flatten(&format!("{name}[{i}]"), v, out)?;
            }
        }
        scalar => {
            out.insert(
                name.to_string(),
                Value::String(
                    text(scalar).ok_or_else(|| format!("`{name}` cannot be sent in a form"))?,
                ),
            );
        }
    }
    Ok(())
}

impl DefinedConnector {
    /// Builds the connector of `connection`, whose type `definition` defines. Nothing connects yet.
    pub fn build(
        definition: Arc<Definition>,
        connection: &Connection,
        secrets: &Secrets,
    ) -> Result<DefinedConnector, String> {
        let Kind::Map(entries) = &connection.node.kind else {
            return Err("the settings must be a mapping".into());
        };
        let setting = |name: &str| {
            entries
                .iter()
                .find(|(k, _)| k.name == name)
                .and_then(|(_, v)| v.as_str().map(str::to_string))
        };
        // The connection's own base URL (a mock, a proxy, an enterprise host) replaces the
        // definition's.
        let template = setting("base_url").unwrap_or_else(|| definition.base_url.clone());
        let base_url = fill(&template, &|name| {
            let variable = definition.variables.iter().find(|v| v.name == name)?;
            let value = setting(name).or_else(|| variable.default.clone())?;
            // A variable fills part of a host or a path: it may not add one of its own.
            (!value.is_empty() && !value.contains(['/', '?', '#', '@', ':', ' '])).then_some(value)
        })
        .map_err(|e| {
            format!(
                "the `{}` base URL cannot be made: {e} (variables must be set, without `/ ? # @ :` or spaces)",
                definition.type_name
            )
        })?;
        // The connection is an `http` connection without its variables and with the base URL.
        let pos = connection.node.pos;
        let mut http_entries: Vec<(Key, Node)> = entries
            .iter()
            .filter(|(k, _)| {
                k.name != "base_url"
                    && k.name != weft_core::definition::WEBHOOK_SECRET
                    && !definition.variables.iter().any(|v| v.name == k.name)
            })
            .cloned()
            .collect();
        http_entries.push((
            Key {
                name: "base_url".into(),
                pos,
            },
            Node {
                pos,
                kind: Kind::Str(Str {
                    value: base_url.clone(),
                    expr_pos: Vec::new(),
                }),
            },
        ));
        // The settings the definition fixes for the connection's auth type, where the connection
        // does not give its own.
        if let Some((
            _,
            Node {
                kind: Kind::Map(auth),
                ..
            },
        )) = http_entries.iter_mut().find(|(k, _)| k.name == "auth")
        {
            let kind = auth
                .iter()
                .find(|(k, _)| k.name == "type")
                .and_then(|(_, v)| v.as_str())
                .map(str::to_string);
            if let Some((
                _,
                Node {
                    kind: Kind::Map(fixed),
                    ..
                },
            )) = definition
                .auth_defaults
                .iter()
                .find(|(t, _)| Some(t) == kind.as_ref())
            {
                for (k, v) in fixed {
                    if !auth.iter().any(|(a, _)| a.name == k.name) {
                        auth.push((k.clone(), v.clone()));
                    }
                }
            }
        }
        let node = Node {
            pos,
            kind: Kind::Map(http_entries),
        };
        let http = HttpConnector::build(
            &Connection {
                node,
                ..connection.clone()
            },
            secrets,
        )?;
        Ok(DefinedConnector {
            definition,
            http,
            base_url,
        })
    }

    /// The URL of `path` on the host of the connection's base URL.
    fn origin_url(&self, path: &str) -> Result<String, String> {
        let base = reqwest::Url::parse(&self.base_url)
            .map_err(|e| format!("the base URL {} is not a URL: {e}", self.base_url))?;
        base.join(path)
            .map(String::from)
            .map_err(|e| format!("the next page's address `{path}` is not a path: {e}"))
    }

    /// The `http` connector's request for one call of `action`.
    fn request(action: &ActionDef, input: &Value) -> Result<Value, String> {
        let Some(given) = input.as_object() else {
            return Err(format!(
                "the inputs must be a mapping, found {}",
                json_kind(input)
            ));
        };
        if let Some(unknown) = given
            .keys()
            .find(|k| !action.inputs.iter().any(|i| &i.name == *k))
        {
            return Err(format!(
                "unknown input `{unknown}` for {}; expected one of: {}",
                action.name,
                action.input_names().join(", ")
            ));
        }
        let (mut query, mut headers, mut fields) = (Map::new(), Map::new(), Map::new());
        let mut whole = None;
        for input in &action.inputs {
            let value = match given.get(&input.name) {
                None | Some(Value::Null) if input.required => {
                    return Err(format!("{} needs `with.{}`", action.name, input.name));
                }
                None | Some(Value::Null) => continue,
                Some(value) => value,
            };
            match input.location {
                Location::Path => {}
                Location::Query => {
                    query.insert(input.name.clone(), value.clone());
                }
                Location::Header => {
                    headers.insert(input.name.clone(), value.clone());
                }
                Location::Body => {
                    fields.insert(input.name.clone(), value.clone());
                }
                Location::WholeBody => whole = Some(value.clone()),
            }
        }
        let path = fill(&action.path, &|name| {
            given.get(name).and_then(text).map(|t| encode_segment(&t))
        })
        .map_err(|e| format!("`with`: {e} (a path input must be text or a number)"))?;
        let mut request = json!({ "method": action.method, "path": path });
        if !query.is_empty() {
            request["query"] = Value::Object(query);
        }
        if !headers.is_empty() {
            request["headers"] = Value::Object(headers);
        }
        if let Some(body) = whole {
            request["body"] = body;
        } else if !fields.is_empty() && action.form {
            let mut form = Map::new();
            for (name, value) in &fields {
                flatten(name, value, &mut form)?;
            }
            request["form"] = Value::Object(form);
        } else if !fields.is_empty() {
            request["body"] = Value::Object(fields);
        }
        Ok(request)
    }
}

/// The URL of the `rel="next"` link of a `Link` header, if there is one.
fn next_link(link: &str) -> Option<String> {
    link.split(',').find_map(|part| {
        let (target, params) = part.split_once(';')?;
        let is_next = params.split(';').any(|p| {
            let p = p.trim().replace(' ', "");
            p == "rel=\"next\"" || p == "rel=next"
        });
        is_next.then(|| {
            target
                .trim()
                .trim_start_matches('<')
                .trim_end_matches('>')
                .to_string()
        })
    })
}

impl DefinedConnector {
    /// Sends one request of `action` and returns the whole `http` output (status, headers, body),
    /// with the definition's `retry_on` statuses retryable and its `errors` flag read.
    async fn send(
        &self,
        def: &Definition,
        call: &Call<'_>,
        request: Value,
    ) -> Result<Value, ActionError> {
        let result = self
            .http
            .call(Call {
                action: "request",
                input: request,
                idempotency_key: call.idempotency_key,
                max_output_bytes: call.max_output_bytes,
            })
            .await;
        let output = match result {
            Ok(output) => output,
            Err(e) => return Err(classify(def, e)),
        };
        if let Some(errors) = &def.errors
            && output["body"].pointer(&errors.ok) == Some(&Value::Bool(false))
        {
            let said = errors
                .message
                .as_deref()
                .and_then(|p| output["body"].pointer(p))
                .map(|v| match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .unwrap_or_else(|| "no reason given".into());
            return Err(ActionError::Fatal {
                message: format!(
                    "{} answered {} but says the call failed: {said}",
                    def.type_name, output["status"]
                ),
                details: output,
            });
        }
        Ok(output)
    }
}

/// An HTTP failure, retryable or not as the definition's `retry_on` says (the `http` connector's
/// own rule otherwise). Failures without a status (a refused connection, a timeout) keep their
/// class.
fn classify(def: &Definition, error: ActionError) -> ActionError {
    let Some(retry_on) = &def.retry_on else {
        return error;
    };
    match error {
        ActionError::Retryable {
            message,
            retry_after,
            details,
        } => match details["status"].as_u64() {
            Some(status) if !retry_on.contains(&(status as u16)) => {
                ActionError::Fatal { message, details }
            }
            _ => ActionError::Retryable {
                message,
                retry_after,
                details,
            },
        },
        ActionError::Fatal { message, details } => match details["status"].as_u64() {
            Some(status) if retry_on.contains(&(status as u16)) => {
                let retry_after = details["headers"]["retry-after"]
                    .as_str()
                    .and_then(|v| crate::http::retry_after(v, jiff::Timestamp::now()));
                ActionError::Retryable {
                    message,
                    retry_after,
                    details,
                }
            }
            _ => ActionError::Fatal { message, details },
        },
    }
}

impl DefinedConnector {
    /// Reads up to `pages` pages of a paginated action: `{items, pages, complete, next}`.
    async fn pages(
        &self,
        def: &Definition,
        call: &Call<'_>,
        action: &ActionDef,
        pagination: &Pagination,
        mut request: Value,
        pages: u64,
    ) -> Result<Value, ActionError> {
        let pointer = action.response.as_deref().unwrap_or("");
        let mut items: Vec<Value> = Vec::new();
        let mut read = 0;
        let mut position: u64 = match pagination {
            Pagination::Page { start, .. } => *start,
            _ => 0,
        };
        if let Pagination::Page { param, .. } | Pagination::Offset { param } = pagination {
            request["query"][param] = json!(position);
        }
        let mut size: u64 = 0;
        loop {
            let output = self.send(def, call, request.clone()).await?;
            read += 1;
            let page = match output["body"].pointer(pointer) {
                Some(Value::Array(list)) => list.clone(),
                Some(Value::Null) | None => Vec::new(),
                Some(other) => {
                    return Err(ActionError::fatal(format!(
                        "{}: the page's `{pointer}` is {}, not a list",
                        action.name,
                        json_kind(other)
                    )));
                }
            };
            size += serde_json::to_string(&page).map_or(0, |t| t.len() as u64);
            if size > call.max_output_bytes {
                return Err(ActionError::fatal(format!(
                    "{}: the pages read so far are larger than {} bytes (limits.max_output_bytes); nothing was cut short, the step failed; read fewer pages (`with.pages`)",
                    action.name, call.max_output_bytes
                )));
            }
            let count = page.len() as u64;
            items.extend(page);
            // What asks for the next page, if there is one.
            let next: Option<Value> = match pagination {
                Pagination::Cursor { next, has_more, .. } => {
                    let more = has_more
                        .as_deref()
                        .and_then(|p| output["body"].pointer(p))
                        .is_none_or(|v| v != &Value::Bool(false));
                    let cursor = match next {
                        CursorFrom::Body(p) => output["body"].pointer(p),
                        CursorFrom::LastItem(p) => items
                            .last()
                            .filter(|_| count > 0)
                            .and_then(|item| item.pointer(p)),
                    };
                    cursor
                        .filter(|v| more && !v.is_null() && v != &&json!(""))
                        .cloned()
                }
                Pagination::NextUrl { next } => output["body"]
                    .pointer(next)
                    .filter(|v| v.as_str().is_some_and(|s| !s.is_empty()))
                    .cloned(),
                Pagination::Link => output["headers"]["link"]
                    .as_str()
                    .and_then(next_link)
                    .map(Value::String),
                Pagination::Offset { .. } => (count > 0).then(|| json!(position + count)),
                Pagination::Page { .. } => (count > 0).then(|| json!(position + 1)),
            };
            let Some(next) = next else {
                return Ok(json!({"items": items, "pages": read, "complete": true, "next": null}));
            };
            if read >= pages {
                return Ok(json!({"items": items, "pages": read, "complete": false, "next": next}));
            }
            match pagination {
                Pagination::Cursor { param, .. } => request["query"][param] = next,
                Pagination::Link => {
                    // The next page is a whole URL: the query it carries replaces ours.
                    let object = request.as_object_mut().expect("a request is a mapping");
                    object.remove("path");
                    object.remove("query");
                    object.insert("url".into(), next);
                }
                Pagination::NextUrl { .. } => {
                    let object = request.as_object_mut().expect("a request is a mapping");
                    object.remove("path");
                    object.remove("query");
                    let target = next.as_str().unwrap_or_default();
                    if target.starts_with("http://") || target.starts_with("https://") {
                        object.insert("url".into(), next);
                    } else {
                        // A path on the API's host (Salesforce's `/services/data/…`).
                        let url = self.origin_url(target).map_err(ActionError::fatal)?;
                        object.insert("url".into(), Value::String(url));
                    }
                }
                Pagination::Offset { param } | Pagination::Page { param, .. } => {
                    position = next.as_u64().unwrap_or(position);
                    request["query"][param] = next;
                }
            }
        }
    }
}

#[async_trait]
impl Connector for DefinedConnector {
    fn sign_in(&self) -> Option<Arc<crate::http::SignIn>> {
        self.http.sign_in()
    }

    async fn probe(&self) -> Result<String, ActionError> {
        self.http.probe().await
    }

    async fn call(&self, call: Call<'_>) -> Result<Value, ActionError> {
        self.call_defined(call, None).await
    }

    async fn call_defined(
        &self,
        call: Call<'_>,
        definition: Option<&Arc<Definition>>,
    ) -> Result<Value, ActionError> {
        // The definition the run's workflow was compiled with, when it is this type's.
        let def: &Definition = match definition {
            Some(d) if d.type_name == self.definition.type_name => d,
            _ => &self.definition,
        };
        let Some(action) = def.action(call.action) else {
            // The escape hatch: any request, with the connection's credentials and guard.
            if def.raw_request.is_some_and(|raw| raw.name == call.action) {
                return self.http.call(call).await;
            }
            return Err(ActionError::fatal(format!(
                "`{}` connections have no action `{}`",
                def.type_name, call.action
            )));
        };
        let mut input = call.input.clone();
        let pages = match (&action.pagination, input.as_object_mut()) {
            (Some(_), Some(map)) => match map.remove(PAGES_INPUT) {
                None | Some(Value::Null) => DEFAULT_PAGES,
                Some(v) => v
                    .as_u64()
                    .filter(|p| (1..=MAX_PAGES).contains(p))
                    .ok_or_else(|| {
                        ActionError::fatal(format!(
                            "`with.{PAGES_INPUT}` must be a whole number from 1 to {MAX_PAGES}, found {v}"
                        ))
                    })?,
            },
            _ => DEFAULT_PAGES,
        };
        let mut request = DefinedConnector::request(action, &input).map_err(ActionError::fatal)?;
        if let Some(pagination) = &action.pagination {
            if request.get("query").is_none() {
                request["query"] = json!({});
            }
            return self
                .pages(def, &call, action, pagination, request, pages)
                .await;
        }
        let output = self.send(def, &call, request).await?;
        Ok(match &action.response {
            Some(pointer) => output["body"]
                .pointer(pointer)
                .cloned()
                .unwrap_or(Value::Null),
            None => output["body"].clone(),
        })
    }
}

#[cfg(test)]
mod tests;
