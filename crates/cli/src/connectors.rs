//! `weft connectors list|show|import-openapi`: the connector types a project can use (the build's
//! and its `connectors/` definitions), one of them in detail, and a definition made from a
//! vendor's OpenAPI document.

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
        Spec::Defined(_) => "connectors/",
    }
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
