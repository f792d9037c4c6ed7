//! `weft connectors import-openapi`: an OpenAPI 3.0/3.1 or Swagger 2.0 document turned into a
//! connector definition, with a report of what could not be mapped.
//!
//! The document is read as plain JSON (YAML documents are read by [`crate::yaml`] first), so the
//! three versions share one walk: one action per operation (named from its `operationId` in
//! snake_case, unique), parameters in the path, query and headers as inputs, a JSON request body
//! as body inputs (one per property of an object body, else one `whole_body` input; a form body
//! of `application/x-www-form-urlencoded` as body inputs with `encoding: form`), local `$ref`s
//! resolved (a schema nested deeper than [`MAX_DEPTH`] becomes "any value", which also ends
//! cycles), the base URL from `servers` (3.x) or `host`/`basePath`/`schemes` (2.0) with server
//! variables as variables, the auth types from the security schemes, and pagination where the
//! document makes it plain (see `Walker::paging`). The result is checked by reading it back with
//! [`super::decode`].

use regex_bites::Regex;
use serde_json::{Map, Value, json};

/// How deep `$ref`s and nested schemas are followed before a schema becomes "any value".
pub const MAX_DEPTH: usize = 4;

/// Most schema nodes one import copies; beyond, schemas become "any value". Depth alone does not
/// bound the work: a schema of 100 properties that each refer to it again is 100⁴ nodes at depth 4.
pub const MAX_SCHEMA_NODES: usize = 50_000;

const METHODS: &[&str] = &["get", "post", "put", "patch", "delete", "head"];

/// What `import-openapi` was asked for.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// The connector's type name; by default from the document's title.
    pub name: Option<String>,
    /// Only operations whose operationId, name or one of whose tags this matches.
    pub include: Option<Regex>,
}

/// A definition made from a document.
#[derive(Clone, Debug)]
pub struct Imported {
    /// The definition, as the mapping a definition file holds (keys in file order).
    pub definition: Value,
    /// What could not be mapped, or was mapped with a guess, one line each.
    pub report: Vec<String>,
}

/// Makes a definition from an OpenAPI document.
pub fn from_openapi(doc: &Value, options: &Options) -> Result<Imported, String> {
    let version = if let Some(v) = doc.get("openapi").and_then(Value::as_str) {
        if !v.starts_with("3.") {
            return Err(format!(
                "OpenAPI {v} is not supported; use 3.0, 3.1 or Swagger 2.0"
            ));
        }
        Version::Three
    } else if doc.get("swagger").and_then(Value::as_str) == Some("2.0") {
        Version::Two
    } else {
        return Err(
            "this is not an OpenAPI document: it has neither `openapi: 3.x` nor `swagger: \"2.0\"`"
                .into(),
        );
    };
    let mut report = Vec::new();
    let title = doc["info"]["title"].as_str().unwrap_or("api");
    let name = match &options.name {
        Some(n) => n.clone(),
        None => identifier(title),
    };
    if !crate::decode::is_identifier(&name) {
        return Err(format!(
            "`{name}` cannot be a connector type: use letters, digits and `_` (--name)"
        ));
    }
    let mut out = Map::new();
    out.insert("connector".into(), json!(name));
    let version_text = doc["info"]["version"].as_str().unwrap_or("");
    let summary = if version_text.is_empty() {
        title.to_string()
    } else {
        format!("{title} (API version {version_text})")
    };
    out.insert("summary".into(), json!(summary));
    if let Some(docs) = doc["externalDocs"]["url"].as_str() {
        out.insert("docs".into(), json!(docs));
    }
    let (base_url, variables) = base_url(doc, version, &mut report);
    out.insert("base_url".into(), json!(base_url));
    if !variables.is_empty() {
        out.insert("variables".into(), Value::Object(variables));
    }
    let auth = auth(doc, version, &mut report);
    if !auth.is_empty() {
        out.insert("auth".into(), json!(auth));
    }
    let walker = Walker {
        doc,
        left: std::cell::Cell::new(MAX_SCHEMA_NODES),
    };
    let mut actions = Map::new();
    let mut skipped = 0;
    if let Some(paths) = doc["paths"].as_object() {
        for (path, item) in paths {
            for method in METHODS {
                let Some(operation) = item.get(*method) else {
                    continue;
                };
                let base = operation["operationId"]
                    .as_str()
                    .map(identifier)
                    .unwrap_or_else(|| identifier(&format!("{method} {path}")));
                if let Some(include) = &options.include {
                    let tags = operation["tags"].as_array().into_iter().flatten();
                    let op_id = operation["operationId"].as_str().unwrap_or("");
                    if !(include.is_match(op_id)
                        || include.is_match(&base)
                        || tags.filter_map(Value::as_str).any(|t| include.is_match(t)))
                    {
                        skipped += 1;
                        continue;
                    }
                }
                let mut action_name = base.clone();
                let mut n = 2;
                while actions.contains_key(&action_name) {
                    action_name = format!("{base}_{n}");
                    n += 1;
                }
                match walker.action(path, method, item, operation, version, &mut report) {
                    Some(action) => {
                        actions.insert(action_name, action);
                    }
                    None => report.push(format!(
                        "{} {path}: skipped (see above)",
                        method.to_uppercase()
                    )),
                }
            }
        }
    }
    if skipped > 0 {
        report.push(format!("{skipped} operations left out by --include"));
    }
    if walker.left.get() == 0 {
        report.push(format!(
            "the schemas hold more than {MAX_SCHEMA_NODES} parts: the rest became \"any value\" (--include fewer operations to keep them)"
        ));
    }
    if actions.is_empty() {
        return Err(
            "no operation could be mapped to an action (is --include too narrow?)".to_string(),
        );
    }
    out.insert("actions".into(), Value::Object(actions));
    report
        .push("webhooks and rate limits are not part of definitions yet: none were mapped".into());
    Ok(Imported {
        definition: Value::Object(out),
        report,
    })
}

#[derive(Clone, Copy, PartialEq)]
enum Version {
    Two,
    Three,
}

/// `text` as a snake_case identifier: `listIssues` → `list_issues`, `GET /a/{b}` → `get_a_b`.
pub fn identifier(text: &str) -> String {
    let mut out = String::new();
    let mut prev_lower = false;
    for c in text.chars() {
        if c.is_ascii_alphanumeric() {
            if c.is_ascii_uppercase() && prev_lower && !out.ends_with('_') {
                out.push('_');
            }
            prev_lower = c.is_ascii_lowercase() || c.is_ascii_digit();
            out.push(c.to_ascii_lowercase());
        } else {
            if !out.is_empty() && !out.ends_with('_') {
                out.push('_');
            }
            prev_lower = false;
        }
    }
    let out = out.trim_matches('_').to_string();
    match out.chars().next() {
        None => "api".into(),
        Some(c) if c.is_ascii_digit() => format!("op_{out}"),
        Some(_) => out,
    }
}

fn base_url(
    doc: &Value,
    version: Version,
    report: &mut Vec<String>,
) -> (String, Map<String, Value>) {
    let mut variables = Map::new();
    let url = match version {
        Version::Three => {
            let server = &doc["servers"][0];
            if let Some(vars) = server["variables"].as_object() {
                for (name, v) in vars {
                    let mut var = Map::new();
                    if let Some(d) = v["description"].as_str() {
                        var.insert("description".into(), json!(first_line(d)));
                    }
                    if let Some(d) = v["default"].as_str() {
                        var.insert("default".into(), json!(d));
                    }
                    variables.insert(name.clone(), Value::Object(var));
                }
            }
            server["url"].as_str().unwrap_or("").to_string()
        }
        Version::Two => {
            let scheme = doc["schemes"]
                .as_array()
                .and_then(|s| {
                    s.iter()
                        .filter_map(Value::as_str)
                        .find(|s| *s == "https")
                        .or_else(|| s.first().and_then(Value::as_str))
                })
                .unwrap_or("https");
            match doc["host"].as_str() {
                Some(host) => format!(
                    "{scheme}://{host}{}",
                    doc["basePath"].as_str().unwrap_or("")
                ),
                None => doc["basePath"].as_str().unwrap_or("").to_string(),
            }
        }
    };
    let url = url.trim_end_matches('/').to_string();
    if url.starts_with("https://") || url.starts_with("http://") {
        return (url, variables);
    }
    report.push(format!(
        "the document names no absolute server URL (found `{url}`): the base URL takes a `host` variable that each connection sets"
    ));
    variables.insert(
        "host".into(),
        json!({"description": "The API's host name, such as api.example.com"}),
    );
    (format!("https://{{host}}{url}"), variables)
}

fn auth(doc: &Value, version: Version, report: &mut Vec<String>) -> Vec<String> {
    let schemes = match version {
        Version::Three => &doc["components"]["securitySchemes"],
        Version::Two => &doc["securityDefinitions"],
    };
    let mut out: Vec<String> = Vec::new();
    for (name, scheme) in schemes.as_object().into_iter().flatten() {
        let kind = match (
            scheme["type"].as_str().unwrap_or(""),
            scheme["scheme"].as_str().map(str::to_ascii_lowercase),
        ) {
            ("http", Some(s)) if s == "bearer" => Some("bearer"),
            ("http", Some(s)) if s == "basic" => Some("basic"),
            ("basic", _) => Some("basic"),
            ("apiKey", _) => {
                report.push(format!(
                    "auth `{name}`: an API key in the {} `{}`; connections say so: auth: {{ type: api_key, {}: {}, value: … }}",
                    scheme["in"].as_str().unwrap_or("header"),
                    scheme["name"].as_str().unwrap_or("?"),
                    if scheme["in"] == "query" { "query" } else { "header" },
                    scheme["name"].as_str().unwrap_or("?"),
                ));
                Some("api_key")
            }
            ("oauth2", _) => {
                report.push(format!(
                    "auth `{name}`: OAuth2; connections send an access token they hold as `bearer`, or use the client-credentials grant as `oauth2` (the authorization-code sign-in is not there yet)"
                ));
                if !out.iter().any(|k| k == "bearer") {
                    out.push("bearer".to_string());
                }
                Some("oauth2")
            }
            (other, _) => {
                report.push(format!("auth `{name}`: `{other}` is not mapped"));
                None
            }
        };
        if let Some(kind) = kind
            && !out.iter().any(|k| k == kind)
        {
            out.push(kind.to_string());
        }
    }
    out
}

fn first_line(text: &str) -> String {
    let line = text
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim();
    if line.chars().count() > 200 {
        format!("{}…", line.chars().take(200).collect::<String>())
    } else {
        line.to_string()
    }
}

/// Resolves local `$ref`s of one document.
struct Walker<'a> {
    doc: &'a Value,
    /// Schema nodes still to be copied (see [`MAX_SCHEMA_NODES`]).
    left: std::cell::Cell<usize>,
}

impl Walker<'_> {
    /// The value a local `$ref` (`#/components/schemas/Order`) points at, if it is one.
    fn deref<'v>(&'v self, value: &'v Value) -> &'v Value {
        let mut current = value;
        for _ in 0..16 {
            match current.get("$ref").and_then(Value::as_str) {
                Some(r) if r.starts_with("#/") => {
                    let pointer = r[1..].replace("~1", "/").replace("~0", "~");
                    match self.doc.pointer(&pointer) {
                        Some(target) => current = target,
                        None => return &Value::Null,
                    }
                }
                _ => return current,
            }
        }
        &Value::Null
    }

    /// A schema for the definition: resolved, trimmed to what validates and documents, and
    /// "any value" beyond [`MAX_DEPTH`].
    fn schema(&self, schema: &Value, depth: usize) -> Value {
        if depth > MAX_DEPTH || self.left.get() == 0 {
            return json!({});
        }
        self.left.set(self.left.get() - 1);
        let schema = self.deref(schema);
        let Some(obj) = schema.as_object() else {
            return json!({});
        };
        let mut out = Map::new();
        for (key, value) in obj {
            match key.as_str() {
                "type" | "enum" | "format" | "minimum" | "maximum" | "default" => {
                    out.insert(key.clone(), value.clone());
                }
                "description" => {
                    if let Some(d) = value.as_str() {
                        out.insert(key.clone(), json!(first_line(d)));
                    }
                }
                "required" if value.is_array() => {
                    out.insert(key.clone(), value.clone());
                }
                "items" => {
                    out.insert(key.clone(), self.schema(value, depth + 1));
                }
                "properties" => {
                    let props: Map<String, Value> = value
                        .as_object()
                        .into_iter()
                        .flatten()
                        .map(|(k, v)| (k.clone(), self.schema(v, depth + 1)))
                        .collect();
                    out.insert(key.clone(), Value::Object(props));
                }
                "additionalProperties" if value == &Value::Bool(false) => {
                    out.insert(key.clone(), value.clone());
                }
                "anyOf" | "oneOf" => {
                    let items: Vec<Value> = value
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|v| self.schema(v, depth + 1))
                        .collect();
                    out.insert(key.clone(), Value::Array(items));
                }
                _ => {}
            }
        }
        // OpenAPI 3.0's `nullable` is 3.1's `type: [t, "null"]`.
        if obj.get("nullable") == Some(&Value::Bool(true))
            && let Some(Value::String(t)) = out.get("type").cloned()
        {
            out.insert("type".into(), json!([t, "null"]));
        }
        // A required list names only properties that are there.
        if let (Some(Value::Array(req)), Some(Value::Object(props))) =
            (out.get("required").cloned(), out.get("properties"))
        {
            let kept: Vec<Value> = req
                .into_iter()
                .filter(|r| r.as_str().is_some_and(|n| props.contains_key(n)))
                .collect();
            out.insert("required".into(), Value::Array(kept));
        }
        Value::Object(out)
    }

    /// The items pointer and the pagination of a list operation, where the document makes them
    /// plain: a `Link` response header (link), an `offset` parameter (offset), a cursor parameter
    /// with the next cursor in the body (cursor), a `page` parameter (page). The items are the
    /// body when it is a list, or its one list property (`_links` and the like aside).
    fn paging(&self, operation: &Value, inputs: &Map<String, Value>) -> Option<(String, Value)> {
        if inputs.contains_key(super::PAGES_INPUT) {
            return None;
        }
        let ok = operation["responses"]
            .as_object()?
            .iter()
            .find(|(code, _)| code.starts_with('2'))
            .map(|(_, r)| self.deref(r))?;
        let schema = ok["content"]
            .as_object()
            .into_iter()
            .flatten()
            .find(|(m, _)| m.starts_with("application/json") || m.ends_with("+json"))
            .map(|(_, m)| self.deref(&m["schema"]))?;
        let properties = schema["properties"].as_object();
        let items = if schema["type"] == "array" {
            String::new()
        } else {
            let lists: Vec<&String> = properties?
                .iter()
                .filter(|(k, v)| !k.starts_with('_') && self.deref(v)["type"] == "array")
                .map(|(k, _)| k)
                .collect();
            match lists.as_slice() {
                [one] => format!("/{one}"),
                _ => return None,
            }
        };
        let query = |name: &str| inputs.get(name).is_some_and(|i| i["in"] == "query");
        let link = ok["headers"]
            .as_object()
            .is_some_and(|h| h.keys().any(|k| k.eq_ignore_ascii_case("link")));
        let pagination = if link {
            json!({"style": "link"})
        } else if query("offset") {
            json!({"style": "offset", "param": "offset"})
        } else if let Some((param, next)) =
            ["page_token", "pageToken", "cursor", "after", "next_token"]
                .iter()
                .filter(|p| query(p))
                .find_map(|param| {
                    let next = [
                        "next_page_token",
                        "nextPageToken",
                        "next_cursor",
                        "nextCursor",
                        "cursor",
                    ]
                    .iter()
                    .find(|n| properties.is_some_and(|p| p.contains_key(**n)))?;
                    Some((*param, format!("/{next}")))
                })
        {
            json!({"style": "cursor", "param": param, "next": next})
        } else if query("page") {
            json!({"style": "page", "param": "page"})
        } else {
            return None;
        };
        Some((items, pagination))
    }

    fn action(
        &self,
        path: &str,
        method: &str,
        item: &Value,
        operation: &Value,
        version: Version,
        report: &mut Vec<String>,
    ) -> Option<Value> {
        let what = format!("{} {path}", method.to_uppercase());
        let mut inputs = Map::new();
        // Parameters of the path item, then the operation's, which win by name and place.
        let mut params: Vec<&Value> = Vec::new();
        for p in item["parameters"]
            .as_array()
            .into_iter()
            .flatten()
            .chain(operation["parameters"].as_array().into_iter().flatten())
        {
            let p = self.deref(p);
            params.retain(|q| !(q["name"] == p["name"] && q["in"] == p["in"]));
            params.push(p);
        }
        for p in params {
            let Some(name) = p["name"].as_str() else {
                continue;
            };
            let place = p["in"].as_str().unwrap_or("");
            let (location, schema) = match place {
                "path" | "query" | "header" => {
                    let schema = match version {
                        Version::Three => self.schema(&p["schema"], 0),
                        // Swagger 2.0 puts the schema's keys on the parameter itself.
                        Version::Two => self.schema(p, 0),
                    };
                    (place, schema)
                }
                "body" => ("whole_body", self.schema(&p["schema"], 0)),
                other => {
                    report.push(format!(
                        "{what}: parameter `{name}` in `{other}` is not mapped (form and cookie parameters are not supported)"
                    ));
                    if other == "formData" {
                        return None;
                    }
                    continue;
                }
            };
            let mut input = Map::new();
            input.insert("in".into(), json!(location));
            if schema.as_object().is_some_and(|s| !s.is_empty()) {
                input.insert("schema".into(), schema);
            }
            if p["required"] == Value::Bool(true) && location != "path" {
                input.insert("required".into(), json!(true));
            }
            if let Some(d) = p["description"].as_str() {
                input.insert("description".into(), json!(first_line(d)));
            }
            inputs.insert(name.to_string(), Value::Object(input));
        }
        let mut form = false;
        // A body on a GET or HEAD (some documents declare an empty one) is not sent.
        let body = operation
            .get("requestBody")
            .filter(|_| !matches!(method, "get" | "head"));
        if let Some(body) = body {
            let body = self.deref(body);
            let content = &body["content"];
            let media = |wanted: &dyn Fn(&str) -> bool| {
                content
                    .as_object()
                    .into_iter()
                    .flatten()
                    .find(|(m, _)| wanted(m))
                    .map(|(_, m)| &m["schema"])
            };
            let json_schema = media(&|m| m.starts_with("application/json") || m.ends_with("+json"));
            let form_schema = media(&|m| m.starts_with("application/x-www-form-urlencoded"));
            form = json_schema.is_none() && form_schema.is_some();
            match json_schema.or(form_schema) {
                None => {
                    let types: Vec<&String> = content
                        .as_object()
                        .into_iter()
                        .flatten()
                        .map(|(k, _)| k)
                        .collect();
                    report.push(format!(
                        "{what}: the request body is neither JSON nor a form ({}); left out",
                        types
                            .iter()
                            .map(|t| t.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ));
                    return None;
                }
                Some(schema) => {
                    let schema = self.schema(schema, 0);
                    let required_body = body["required"] == Value::Bool(true);
                    match schema["properties"].as_object() {
                        Some(props)
                            if schema["type"] == "object" || schema.get("type").is_none() =>
                        {
                            let required: Vec<&str> = schema["required"]
                                .as_array()
                                .into_iter()
                                .flatten()
                                .filter_map(Value::as_str)
                                .collect();
                            for (field, field_schema) in props {
                                if inputs.contains_key(field) {
                                    report.push(format!(
                                        "{what}: body field `{field}` has the name of a parameter; left out"
                                    ));
                                    continue;
                                }
                                let mut input = Map::new();
                                input.insert("in".into(), json!("body"));
                                if field_schema.as_object().is_some_and(|s| !s.is_empty()) {
                                    input.insert("schema".into(), field_schema.clone());
                                }
                                if required_body && required.contains(&field.as_str()) {
                                    input.insert("required".into(), json!(true));
                                }
                                inputs.insert(field.clone(), Value::Object(input));
                            }
                        }
                        _ if form => {
                            report.push(format!(
                                "{what}: the form body has no properties to map; left out"
                            ));
                        }
                        _ => {
                            let mut input = Map::new();
                            input.insert("in".into(), json!("whole_body"));
                            if schema.as_object().is_some_and(|s| !s.is_empty()) {
                                input.insert("schema".into(), schema.clone());
                            }
                            if required_body {
                                input.insert("required".into(), json!(true));
                            }
                            let name = if inputs.contains_key("body") {
                                "request_body"
                            } else {
                                "body"
                            };
                            inputs.insert(name.into(), Value::Object(input));
                        }
                    }
                }
            }
        }
        // Every placeholder of the path is an input (some documents forget to declare one).
        for placeholder in path.split('{').skip(1).filter_map(|s| s.split('}').next()) {
            let declared = inputs.get(placeholder).is_some_and(|i| i["in"] == "path");
            if !declared {
                report.push(format!(
                    "{what}: `{{{placeholder}}}` is not declared as a path parameter; it becomes a text input"
                ));
                inputs.insert(
                    placeholder.to_string(),
                    json!({"in": "path", "schema": {"type": "string"}}),
                );
            }
        }
        let mut action = Map::new();
        let summary = operation["summary"]
            .as_str()
            .or_else(|| operation["description"].as_str())
            .map(first_line)
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| what.clone());
        action.insert("summary".into(), json!(summary));
        if let Some(docs) = operation["externalDocs"]["url"].as_str() {
            action.insert("docs".into(), json!(docs));
        }
        action.insert("method".into(), json!(method.to_uppercase()));
        action.insert("path".into(), json!(path));
        let paging = if method == "get" {
            self.paging(operation, &inputs)
        } else {
            None
        };
        if !inputs.is_empty() {
            action.insert("inputs".into(), Value::Object(inputs));
        }
        if form {
            action.insert("encoding".into(), json!("form"));
        }
        if let Some((response, pagination)) = paging {
            report.push(format!(
                "{what}: pages as `{}`",
                pagination["style"].as_str().unwrap_or("?")
            ));
            action.insert("response".into(), json!(response));
            action.insert("pagination".into(), pagination);
        }
        Some(Value::Object(action))
    }
}

#[cfg(test)]
mod tests;
