//! `weft connectors list|show|import-openapi|docs`: the connector types a project can use (the
//! build's, its library's and the project's `connectors/` definitions), one of them in detail, a
//! definition made from a vendor's OpenAPI document, and the library's reference pages.

use std::io::Read;
use std::path::Path;

use anyhow::anyhow;
use serde_json::{Value, json};
use weft_core::definition::import::{self, Options};
use weft_core::{Catalog, Spec};

use crate::{CliError, CmdResult, exit, setup};

/// The catalog of the project in `dir`, or the build's when `dir` holds no project.
fn catalog(dir: &Path) -> Result<Catalog, CliError> {
    if dir.join(weft_core::project::PROJECT_FILE).is_file() {
        Ok(setup::load(dir)?.project.catalog.clone())
    } else {
        Ok(weft_connectors::catalog())
    }
}

fn origin(spec: &Spec) -> &'static str {
    match spec {
        Spec::Static(_) => "built in",
        // A project's definition cannot take a library type's name.
        Spec::Defined(d) if is_library(&d.type_name) => "library",
        Spec::Defined(_) => "connectors/",
    }
}

fn is_library(type_name: &str) -> bool {
    weft_connectors::library::FILES
        .iter()
        .any(|(file, _)| file.strip_suffix(".yaml") == Some(type_name))
}

/// Lists the connector types with a line each.
pub(crate) fn list(dir: &Path, json: bool) -> CmdResult {
    let catalog = catalog(dir)?;
    let specs: Vec<&Spec> = catalog
        .type_names()
        .into_iter()
        .filter_map(|t| catalog.get(t))
        .collect();
    if json {
        let list: Vec<Value> = specs
            .iter()
            .map(|s| json!({"type": s.type_name(), "summary": s.summary(), "from": origin(s), "actions": s.actions().iter().map(|a| a.name()).collect::<Vec<_>>()}))
            .collect();
        println!("{}", Value::Array(list));
        return Ok(exit::OK);
    }
    for s in specs {
        println!("{:<10} {:<12} {}", s.type_name(), origin(s), s.summary());
    }
    Ok(exit::OK)
}

/// Shows one connector type: its actions with their inputs.
pub(crate) fn show(dir: &Path, name: &str, json: bool) -> CmdResult {
    let catalog = catalog(dir)?;
    let Some(spec) = catalog.get(name) else {
        let names = catalog.type_names();
        let hint = weft_core::diag::did_you_mean(name, names.iter().copied())
            .map(|h| format!("; did you mean `{h}`?"))
            .unwrap_or_else(|| format!("; the types are: {}", names.join(", ")));
        return Err(CliError::usage(anyhow!("no connector type `{name}`{hint}")));
    };
    if json {
        let actions: Vec<Value> = spec
            .actions()
            .iter()
            .map(|a| json!({"name": a.name(), "summary": a.summary(), "inputs": a.inputs(), "required": a.required()}))
            .collect();
        println!(
            "{}",
            json!({"type": spec.type_name(), "summary": spec.summary(), "from": origin(spec), "actions": actions})
        );
        return Ok(exit::OK);
    }
    println!(
        "{} ({}): {}",
        spec.type_name(),
        origin(spec),
        spec.summary()
    );
    if let Spec::Defined(d) = spec {
        println!("  base URL: {}", d.base_url);
        if !d.auth.is_empty() {
            println!("  auth: {}", d.auth.join(", "));
        }
        if let Some(docs) = &d.docs {
            println!("  docs: {docs}");
        }
        if let Some(limit) = &d.rate_limit {
            println!("  default rate limit: {}", rate_limit_text(limit));
        }
        for t in &d.triggers {
            println!(
                "  trigger {}.{} ({}) — {}",
                d.type_name,
                t.name,
                t.kind.name(),
                t.summary
            );
        }
    }
    for action in spec.actions() {
        println!(
            "\n  {}.{} — {}",
            spec.type_name(),
            action.name(),
            action.summary()
        );
        let required = action.required();
        for input in action.inputs() {
            let mark = if required.contains(&input) {
                " (required)"
            } else {
                ""
            };
            let about = match (spec, action) {
                (Spec::Defined(_), weft_core::Action::Defined(a)) => a
                    .inputs
                    .iter()
                    .find(|i| i.name == input)
                    .map(|i| {
                        let kind = i.schema["type"]
                            .as_str()
                            .map(|t| format!(" {t}"))
                            .unwrap_or_default();
                        let place = format!("{:?}", i.location).to_lowercase();
                        let text = i
                            .description
                            .as_deref()
                            .map(|d| format!(" — {d}"))
                            .unwrap_or_default();
                        format!(" [{place}{kind}]{text}")
                    })
                    .unwrap_or_default(),
                _ => String::new(),
            };
            println!("    {input}{mark}{about}");
        }
    }
    Ok(exit::OK)
}

/// Makes a definition from an OpenAPI document (a file, or `-` for standard input), prints it (or
/// writes `out`) and reports on standard error what could not be mapped.
pub(crate) fn import_openapi(
    spec: &str,
    name: Option<String>,
    include: Option<String>,
    out: Option<&Path>,
) -> CmdResult {
    let text = if spec == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(|e| CliError::usage(anyhow!("cannot read standard input: {e}")))?;
        text
    } else {
        std::fs::read_to_string(spec)
            .map_err(|e| CliError::usage(anyhow!("cannot read {spec}: {e}")))?
    };
    // JSON first (it is YAML too, but the JSON reader is faster on large documents).
    let doc: Value = match serde_json::from_str(&text) {
        Ok(doc) => doc,
        Err(_) => weft_core::yaml::parse(&text)
            .map_err(|e| {
                CliError::usage(anyhow!(
                    "{spec}:{}:{}: {} (the document must be JSON or YAML)",
                    e.pos.line,
                    e.pos.col,
                    e.message
                ))
            })?
            .to_json(),
    };
    let include = include
        .map(|r| {
            regex_bites::Regex::new(&r).map_err(|e| {
                CliError::usage(anyhow!("--include `{r}` is not a regular expression: {e}"))
            })
        })
        .transpose()?;
    let imported = import::from_openapi(&doc, &Options { name, include })
        .map_err(|e| CliError::usage(anyhow!("{spec}: {e}")))?;
    let Some(map) = imported.definition.as_object() else {
        return Err(CliError::internal(anyhow!(
            "the definition is not a mapping"
        )));
    };
    let yaml = format!(
        "# Made by `weft connectors import-openapi` from {}; edit freely.\n{}",
        if spec == "-" { "standard input" } else { spec },
        weft_core::edit::render_document(map)
    );
    // What was written must read back as a definition.
    let node = weft_core::yaml::parse(&yaml).map_err(|e| {
        CliError::internal(anyhow!("the definition made does not read back: {e:?}"))
    })?;
    let mut diags = weft_core::Diagnostics::new("the definition made");
    weft_core::definition::decode(&node, &mut diags);
    for d in diags.into_vec() {
        imported_problem(&d.to_string());
    }
    match out {
        Some(path) => std::fs::write(path, &yaml)
            .map_err(|e| CliError::usage(anyhow!("cannot write {}: {e}", path.display())))?,
        None => print!("{yaml}"),
    }
    let actions = map["actions"].as_object().map_or(0, |a| a.len());
    for line in &imported.report {
        eprintln!("note: {line}");
    }
    eprintln!(
        "Made connector `{}` with {actions} action{}.",
        map["connector"].as_str().unwrap_or("?"),
        if actions == 1 { "" } else { "s" }
    );
    Ok(exit::OK)
}

fn imported_problem(line: &str) {
    eprintln!("problem: {line}");
}

fn rate_limit_text(limit: &weft_core::RateLimit) -> String {
    let mut parts = Vec::new();
    if let Some((n, per)) = limit.rate {
        parts.push(format!(
            "{n} requests per {}",
            weft_core::duration::format(per)
        ));
    }
    if let Some(c) = limit.concurrency {
        parts.push(format!("{c} at once"));
    }
    parts.join(", ")
}

/// Writes the library's reference: `README.md` (the list) and one page per connector, into `out`.
pub(crate) fn docs(out: &Path) -> CmdResult {
    std::fs::create_dir_all(out)
        .map_err(|e| CliError::internal(anyhow!("cannot create {}: {e}", out.display())))?;
    let pages = pages();
    for (file, text) in &pages {
        let path = out.join(file);
        std::fs::write(&path, text)
            .map_err(|e| CliError::internal(anyhow!("cannot write {}: {e}", path.display())))?;
    }
    eprintln!("wrote {} pages to {}", pages.len(), out.display());
    Ok(exit::OK)
}

/// The reference pages of the library: (file name, Markdown).
pub(crate) fn pages() -> Vec<(String, String)> {
    let defs = weft_connectors::library::definitions();
    let mut index = String::from(
        "# Connector library\n\nThe business apps built into Weft, written as connector definitions \
         (`crates/connectors/library/`). Every connection of one of these types also has the \
         `request` action (any request, with the connection's credentials). Generated by \
         `weft connectors docs --out docs/connectors`; do not edit by hand.\n\n\
         | Type | What | Actions | Triggers |\n|---|---|---|---|\n",
    );
    let mut out = Vec::new();
    for d in &defs {
        index.push_str(&format!(
            "| [`{t}`]({t}.md) | {s} | {a} | {g} |\n",
            t = d.type_name,
            s = d.summary,
            a = d.actions.len(),
            g = d.triggers.len()
        ));
        out.push((format!("{}.md", d.type_name), page(d)));
    }
    out.insert(0, ("README.md".to_string(), index));
    out
}

fn page(d: &weft_core::definition::Definition) -> String {
    use std::fmt::Write as _;
    let mut p = String::new();
    let _ = writeln!(p, "# `{}`\n\n{}\n", d.type_name, d.summary);
    if let Some(docs) = &d.docs {
        let _ = writeln!(p, "Vendor documentation: <{docs}>\n");
    }
    let _ = writeln!(p, "## Connection\n");
    let _ = writeln!(p, "- Base URL: `{}`", d.base_url);
    for v in &d.variables {
        let about = v.description.as_deref().unwrap_or("");
        match &v.default {
            Some(def) => {
                let _ = writeln!(p, "- `{}`: {about} (default `{def}`)", v.name);
            }
            None => {
                let _ = writeln!(p, "- `{}` (required): {about}", v.name);
            }
        }
    }
    if !d.auth.is_empty() {
        let _ = writeln!(p, "- Auth: {}", d.auth.join(", "));
        for (kind, fixed) in &d.auth_defaults {
            let settings: Vec<String> = fixed
                .to_json()
                .as_object()
                .into_iter()
                .flatten()
                .map(|(k, v)| match v {
                    serde_json::Value::String(t) => format!("`{k}: {t}`"),
                    other => format!("`{k}: {other}`"),
                })
                .collect();
            let _ = writeln!(p, "  - `{kind}` comes with {}", settings.join(", "));
            if fixed.to_json()["grant"] == "authorization_code" {
                let _ = writeln!(
                    p,
                    "  - a connection with `auth: {{ type: {kind}, client_id: …, client_secret: {{ secret: … }}, scope: … }}` is signed in once with `weft connections connect <name>` or Connect in the console"
                );
            }
        }
    }
    if let Some(limit) = &d.rate_limit {
        let _ = writeln!(
            p,
            "- Default rate limit: {} (a connection's own `rate_limit` replaces it)",
            rate_limit_text(limit)
        );
    }
    if let Some(statuses) = &d.retry_on {
        let list: Vec<String> = statuses.iter().map(u16::to_string).collect();
        let _ = writeln!(p, "- Retried statuses: {}", list.join(", "));
    }
    if let Some(e) = &d.errors {
        let _ = writeln!(
            p,
            "- A 2xx answer whose `{}` is false fails the step{}",
            e.ok,
            e.message
                .as_deref()
                .map(|m| format!(" with the text at `{m}`"))
                .unwrap_or_default()
        );
    }
    if d.triggers.iter().any(|t| t.kind.name() == "webhook") {
        let _ = writeln!(
            p,
            "- Webhook triggers check signatures with the connection's `webhook_secret`"
        );
    }
    let _ = writeln!(
        p,
        "\n```yaml\nconnections:\n  {t}:\n    type: {t}",
        t = d.type_name
    );
    for v in d.variables.iter().filter(|v| v.default.is_none()) {
        let _ = writeln!(p, "    {}: …", v.name);
    }
    let secret = format!("{}_TOKEN", d.type_name.to_ascii_uppercase());
    let auth = match d.auth.first().map(String::as_str) {
        Some("api_key") => format!("{{ type: api_key, value: {{ secret: {secret} }} }}"),
        Some("basic") => {
            format!("{{ type: basic, username: …, password: {{ secret: {secret} }} }}")
        }
        _ => format!("{{ type: bearer, token: {{ secret: {secret} }} }}"),
    };
    let _ = writeln!(p, "    auth: {auth}\n```\n");
    if !d.triggers.is_empty() {
        let _ = writeln!(p, "## Triggers\n");
        for t in &d.triggers {
            let _ = writeln!(
                p,
                "### `{}.{}` ({})\n\n{}\n",
                d.type_name,
                t.name,
                t.kind.name(),
                t.summary
            );
            if let Some(docs) = &t.docs {
                let _ = writeln!(p, "Documentation: <{docs}>\n");
            }
            if let Some(sub) = &t.subscription {
                let _ = writeln!(
                    p,
                    "The hub registers it with the vendor (`{}.{}`) when a workflow that uses it is served and `WEFT_PUBLIC_URL` says where the vendor reaches the hub{}.\n",
                    d.type_name,
                    sub.subscribe.action,
                    sub.unsubscribe
                        .as_ref()
                        .map(|u| format!(
                            ", and removes it (`{}.{}`) when the workflow goes",
                            d.type_name, u.action
                        ))
                        .unwrap_or_default()
                );
            }
            let _ = writeln!(
                p,
                "```yaml\ntrigger:\n  {}: {{ uses: {}.{} }}\n```\n",
                t.kind.name(),
                d.type_name,
                t.name
            );
        }
    }
    let _ = writeln!(p, "## Actions\n");
    for a in &d.actions {
        let _ = writeln!(p, "### `{}.{}`\n\n{}\n", d.type_name, a.name, a.summary);
        match &a.docs {
            Some(docs) => {
                let _ = writeln!(p, "`{} {}` — [reference]({docs})\n", a.method, a.path);
            }
            None => {
                let _ = writeln!(p, "`{} {}`\n", a.method, a.path);
            }
        }
        if let Some(pagination) = &a.pagination {
            use weft_core::definition::{CursorFrom, Pagination};
            let how = match pagination {
                Pagination::Cursor { param, next, .. } => match next {
                    CursorFrom::Body(at) => format!("the cursor at `{at}` goes back as `{param}`"),
                    CursorFrom::LastItem(at) => {
                        format!("the last item's `{at}` goes back as `{param}`")
                    }
                },
                Pagination::Link => "the `Link` header's next URL".to_string(),
                Pagination::NextUrl { next } => format!("the next page's URL at `{next}`"),
                Pagination::Offset { param } => format!("an offset in `{param}`"),
                Pagination::Page { param, .. } => format!("a page number in `{param}`"),
            };
            let _ = writeln!(
                p,
                "Reads several pages ({how}); `pages` says how many (default {}), and the output is `{{items, pages, complete, next}}` with the items at `{}`.\n",
                weft_core::definition::DEFAULT_PAGES,
                a.response.as_deref().unwrap_or("")
            );
        } else if let Some(r) = a.response.as_deref().filter(|r| !r.is_empty()) {
            let _ = writeln!(p, "Output: the response body's `{r}`.\n");
        }
        if a.inputs.is_empty() {
            continue;
        }
        let _ = writeln!(
            p,
            "| Input | In | Type | Required | About |\n|---|---|---|---|---|"
        );
        for i in &a.inputs {
            let kind = match (&i.schema["type"], &i.schema["enum"]) {
                (_, serde_json::Value::Array(values)) => values
                    .iter()
                    .map(|v| v.to_string())
                    .collect::<Vec<_>>()
                    .join(" \\| "),
                (serde_json::Value::String(t), _) => t.clone(),
                _ => String::new(),
            };
            let about = i
                .description
                .as_deref()
                .unwrap_or("")
                .replace('|', "\\|")
                .replace('\n', " ");
            let _ = writeln!(
                p,
                "| `{}` | {} | {} | {} | {} |",
                i.name,
                format!("{:?}", i.location).to_lowercase(),
                kind,
                if i.required { "yes" } else { "" },
                about
            );
        }
        let _ = writeln!(p);
    }
    p
}
