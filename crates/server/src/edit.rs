//! Changing the project from the console (editor role): saving a workflow file, running a
//! workflow's test cases, and previewing an expression against a sample or a past run.
//!
//! A save writes `workflows/<file>.yaml` only when the whole project, with the new text, loads
//! without a problem; the text is written as given (comments and order are the author's), the file
//! is replaced atomically, and the hub serves the new version at once as `--watch` would (runs in
//! flight finish on their own version). `If-Match` with the version the editor started from makes
//! a save that would overwrite someone else's change a conflict (checked against the file on disk,
//! under a lock, so that two saves cannot both pass it), and `If-None-Match: *` one that would
//! overwrite an existing workflow. Every save is in the audit log with a summary of the lines
//! changed.

use std::path::Path;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::ToSchema;
use weft_core::Project;
use weft_core::expr::{Template, json_to_val, val_to_json};
use weft_core::testcase::TestFile;
use weft_core::yaml::{Kind, Node, Pos, Str};
use weft_engine::project_dir;

use crate::api::Problem;
use crate::auth::Identity;
use crate::error::{ApiError, ErrorBody};
use crate::{Hub, audit};

/// What a save did.
#[derive(Serialize, ToSchema)]
pub struct Saved {
    /// The workflow's name.
    pub name: String,
    /// Its file, relative to the project folder.
    pub file: String,
    /// The new version (the SHA-256 of the text).
    pub version: String,
    /// Whether the file is new.
    pub created: bool,
}

/// Whether `name` can be a workflow file's name: letters, digits, `-` and `_`.
fn file_name_ok(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 100
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

fn problems(diags: Vec<weft_core::Diagnostic>) -> Vec<Problem> {
    diags
        .into_iter()
        .map(|d| Problem {
            file: d.file,
            line: d.line,
            column: d.column,
            message: d.message,
        })
        .collect()
}

/// How many lines of `old` are not in `new` and the other way round (a multiset difference: a
/// summary for the audit log, not a diff to apply).
fn line_changes(old: &str, new: &str) -> (usize, usize) {
    let mut counts: std::collections::HashMap<&str, i64> = std::collections::HashMap::new();
    for line in old.lines() {
        *counts.entry(line).or_default() += 1;
    }
    for line in new.lines() {
        *counts.entry(line).or_default() -= 1;
    }
    let removed = counts.values().filter(|n| **n > 0).sum::<i64>() as usize;
    let added = counts.values().filter(|n| **n < 0).map(|n| -n).sum::<i64>() as usize;
    (added, removed)
}

/// The project folder's files as they are on disk.
fn read_project(dir: &Path) -> Result<project_dir::ProjectFiles, ApiError> {
    project_dir::read(dir).map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "project",
            format!("cannot read the project folder: {e}"),
        )
    })
}

/// Writes `text` to `path` by way of a temporary file in the same folder, so that a reader (or
/// the reloader) sees the old file or the new one, never half of one.
fn write_atomically(path: &Path, text: &str) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(
        ".{}.weft-save",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("file")
    ));
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)
}

/// Saves a workflow file: the body is its whole text. The project must load with it; then the
/// file is written and the hub serves the new version.
#[utoipa::path(put, path = "/workflows/{name}", tag = "workflows",
    params(
        ("name" = String, Path, description = "The workflow's name; for a new workflow, also its file name (letters, digits, `-`, `_`)"),
        ("If-Match" = Option<String>, Header, description = "The version the text was edited from; a save over another version of the file on disk is a conflict"),
        ("If-None-Match" = Option<String>, Header, description = "`*`: the workflow must be new; a conflict if it exists")),
    request_body(content = String, content_type = "application/yaml", description = "The workflow file's text"),
    responses(
        (status = 200, description = "Saved and loaded", body = Saved),
        (status = 201, description = "Created and loaded", body = Saved),
        (status = 400, description = "Not UTF-8 text, or a bad name", body = ErrorBody),
        (status = 409, description = "The file changed since the given version, or exists", body = ErrorBody),
        (status = 422, description = "The project would have problems (`details.problems`: file, line, column, message); nothing was written", body = ErrorBody)))]
pub async fn save_workflow(
    State(hub): State<Arc<Hub>>,
    who: Option<axum::Extension<Identity>>,
    UrlPath(name): UrlPath<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let text = std::str::from_utf8(&body)
        .map_err(|_| ApiError::bad_request("the body must be the workflow file as UTF-8 text"))?
        .to_string();
    let dir = hub.dir.clone();
    let current = hub.engine.project();
    let existing = current.workflows.get(&name).cloned();
    if existing.is_none() && !file_name_ok(&name) {
        return Err(ApiError::bad_request(format!(
            "`{name}` cannot name a new workflow file: use letters, digits, `-` and `_`"
        )));
    }
    let file = existing
        .as_ref()
        .map_or_else(|| format!("workflows/{name}.yaml"), |w| w.file.clone());
    let precondition = |name: header::HeaderName| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.trim().trim_matches('"').to_string())
    };
    let (if_match, if_none_match) = (
        precondition(header::IF_MATCH),
        precondition(header::IF_NONE_MATCH),
    );

    // One save at a time: the version checked below is the one replaced.
    let _saving = hub.saving.lock().await;
    let mut files = read_project(&dir)?;
    let on_disk = files
        .sources
        .workflows
        .iter()
        .find(|(f, _)| *f == file)
        .map(|(_, t)| t.clone());
    // Against the file as it is on disk, so that a change made there (and not yet served) is not
    // overwritten either.
    let disk_version = on_disk.as_deref().map(weft_core::workflow::version_of);
    // The served version names the file's text too when it is what is on disk (a workflow that
    // uses defined connectors has a version that also covers their definitions).
    let served_version = hub
        .engine
        .project()
        .workflows
        .values()
        .find(|w| w.file == file && Some(&*w.source) == on_disk.as_deref())
        .map(|w| w.version.clone());
    if let Some(wanted) = &if_match
        && wanted != "*"
        && disk_version.as_ref() != Some(wanted)
        && served_version.as_ref() != Some(wanted)
    {
        let now = disk_version.map_or_else(
            || "it no longer exists".to_string(),
            |v| format!("it is now version {}", &v[..12.min(v.len())]),
        );
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "conflict",
            format!(
                "{file} changed since it was opened ({now}); open it again and redo the change"
            ),
        ));
    }
    if on_disk.is_some() && (if_none_match.as_deref() == Some("*") || existing.is_none()) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "conflict",
            match &existing {
                Some(_) => format!("workflow `{name}` exists already"),
                None => format!("{file} exists but does not hold a workflow named `{name}`"),
            },
        ));
    }

    // The whole project, with the new text, must load.
    let old_text = on_disk;
    files.sources.workflows.retain(|(f, _)| *f != file);
    files.sources.add_workflow(file.clone(), text.clone());
    let catalog = weft_connectors::catalog();
    let project = match Project::load(&files.sources, &catalog) {
        Ok(p) => p,
        Err(diags) => {
            let found = problems(diags);
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid",
                format!(
                    "not saved: the project would have {} problem{}",
                    found.len(),
                    if found.len() == 1 { "" } else { "s" }
                ),
            )
            .with_details(json!({ "problems": found })));
        }
    };
    let Some(saved) = project.workflows.values().find(|w| w.file == file).cloned() else {
        return Err(ApiError::bad_request(format!("{file} holds no workflow")));
    };
    if saved.name != name {
        return Err(ApiError::bad_request(format!(
            "the text names the workflow `{}`, but it is saved as `{name}`; keep `name: {name}` (renaming is done in the files)",
            saved.name
        )));
    }
    write_atomically(&dir.join(&file), &text).map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "write",
            format!("cannot write {file}: {e}"),
        )
    })?;
    let (added, removed) = line_changes(old_text.as_deref().unwrap_or(""), &text);
    let actor = audit::actor(who.as_deref());
    let details = json!({
        "file": file,
        "version": saved.version,
        "previous_version": existing.as_ref().map(|w| w.version.clone()),
        "lines_added": added,
        "lines_removed": removed,
    });
    audit::record(
        hub.engine.store().as_ref(),
        &actor,
        if existing.is_some() {
            "workflow.save"
        } else {
            "workflow.create"
        },
        &name,
        details,
    )
    .await;
    crate::reload::serve(&hub, &dir, project, &actor).await?;
    let status = if existing.is_some() {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok((
        status,
        axum::Json(Saved {
            name,
            file,
            version: saved.version.clone(),
            created: existing.is_none(),
        }),
    )
        .into_response())
}

/// A structural change to a workflow's text, from the visual editor.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EditRequest {
    /// The file's text as the editor holds it (not necessarily saved).
    pub source: String,
    /// The change: `{op: set, path, value}`, `{op: delete, path}`, `{op: insert, path, index,
    /// value}` or `{op: move, path, from, to}`; a path is a list of keys and list indexes, such as
    /// `["steps", 2, "with"]`.
    #[schema(value_type = Object)]
    pub edit: Value,
    /// The file name to lint the result as (default `workflows/edited.yaml`).
    pub file: Option<String>,
}

/// The text after a change, with what the editor draws and the lint's problems.
#[derive(Serialize, ToSchema)]
pub struct Edited {
    /// The new text: the old one with only the changed part rewritten.
    pub source: String,
    /// The new text as JSON, read the way the hub reads it.
    #[schema(value_type = Object)]
    pub document: Value,
    /// The lint's problems of the new text against the project (the change is made even when there
    /// are some: a workflow is often incomplete while it is built).
    pub problems: Vec<Problem>,
}

/// Applies a change to a workflow's text, keeping every part it does not change byte for byte
/// (comments included). Saves nothing: `PUT /workflows/{name}` does.
#[utoipa::path(post, path = "/workflows/edit", tag = "workflows",
    request_body(content = EditRequest, description = "The text and the change"),
    responses(
        (status = 200, description = "The new text", body = Edited),
        (status = 400, description = "Not an edit request", body = ErrorBody),
        (status = 422, description = "The change cannot be written into this text (a part in flow style, a path that does not exist); make it in the text", body = ErrorBody)))]
pub async fn edit_workflow(
    State(hub): State<Arc<Hub>>,
    body: Bytes,
) -> Result<axum::Json<Edited>, ApiError> {
    let request: EditRequest = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("the body is not an edit request: {e}")))?;
    let edit: weft_core::edit::Edit = serde_json::from_value(request.edit)
        .map_err(|e| ApiError::bad_request(format!("`edit` is not a change: {e}")))?;
    let source = weft_core::edit::apply(&request.source, &edit).map_err(|e| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "not_editable",
            e.to_string(),
        )
    })?;
    let document = weft_core::yaml::parse(&source).map_or(Value::Null, |n| n.to_json());
    let file = request
        .file
        .unwrap_or_else(|| "workflows/edited.yaml".into());
    let found = match hub.engine.project().parse_workflow(&file, &source) {
        Ok(_) => Vec::new(),
        Err(diags) => problems(diags),
    };
    Ok(axum::Json(Edited {
        source,
        document,
        problems: found,
    }))
}

/// An action of a connector type, as the editor's forms need it.
#[derive(Serialize, ToSchema)]
pub struct ActionView {
    /// `uses: <connection>.<name>`.
    pub name: String,
    /// What it does.
    pub summary: String,
    /// The keys it takes under `with:`.
    pub inputs: Vec<String>,
    /// The keys it needs.
    pub required: Vec<String>,
    /// What each input takes, where the connector says (connectors written as data): the
    /// editor's form picks its widget from the schema (a list for an `enum`, a number field…).
    pub schemas: std::collections::BTreeMap<String, InputView>,
}

/// What one input of a defined action takes.
#[derive(Serialize, ToSchema)]
pub struct InputView {
    /// Its JSON Schema, as the definition gives it.
    #[schema(value_type = Object)]
    pub schema: serde_json::Value,
    /// What it is, for people.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// A connector type.
#[derive(Serialize, ToSchema)]
pub struct ConnectorView {
    /// Its `type:`.
    #[serde(rename = "type")]
    pub type_name: String,
    /// What it talks to.
    pub summary: String,
    /// Its actions.
    pub actions: Vec<ActionView>,
}

/// The connector types.
#[derive(Serialize, ToSchema)]
pub struct CatalogView {
    /// Every connector type this hub knows, with its actions and their inputs.
    pub connectors: Vec<ConnectorView>,
}

/// The connector types with their actions and inputs: what `uses:` can name (the build's, and
/// those the project's `connectors/` folder defines).
#[utoipa::path(get, path = "/catalog", tag = "connections",
    responses((status = 200, description = "The catalogue", body = CatalogView)))]
pub async fn catalog(State(hub): State<Arc<Hub>>) -> axum::Json<CatalogView> {
    let project = hub.engine.project();
    let catalog = &project.catalog;
    axum::Json(CatalogView {
        connectors: catalog
            .type_names()
            .into_iter()
            .filter_map(|name| catalog.get(name))
            .map(|spec| ConnectorView {
                type_name: spec.type_name().to_string(),
                summary: spec.summary().to_string(),
                actions: spec
                    .actions()
                    .iter()
                    .map(|a| ActionView {
                        name: a.name().to_string(),
                        summary: a.summary().to_string(),
                        inputs: a.inputs().iter().map(|s| s.to_string()).collect(),
                        required: a.required().iter().map(|s| s.to_string()).collect(),
                        schemas: match &a {
                            weft_core::Action::Defined(d) => d
                                .inputs
                                .iter()
                                .map(|i| {
                                    (
                                        i.name.clone(),
                                        InputView {
                                            schema: i.schema.clone(),
                                            description: i.description.clone(),
                                        },
                                    )
                                })
                                .collect(),
                            _ => Default::default(),
                        },
                    })
                    .collect(),
            })
            .collect(),
    })
}

/// The result of one test case.
#[derive(Serialize, ToSchema)]
pub struct CaseResult {
    /// The test file.
    pub file: String,
    /// The case's name.
    pub case: String,
    /// Whether every expectation held.
    pub passed: bool,
    /// Every expectation that did not hold.
    pub problems: Vec<String>,
}

/// The results of a workflow's test cases.
#[derive(Serialize, ToSchema)]
pub struct TestResults {
    /// One per case, in file order.
    pub cases: Vec<CaseResult>,
    /// Problems of the test files themselves (they ran no case).
    pub problems: Vec<Problem>,
}

/// Runs the cases of `tests/*.yaml` that test this workflow, on the version being served, with
/// their mocked connections (nothing outside is called).
#[utoipa::path(post, path = "/workflows/{name}/tests", tag = "workflows",
    params(("name" = String, Path, description = "The workflow's name")),
    responses(
        (status = 200, description = "The results (no cases: an empty list)", body = TestResults),
        (status = 404, description = "No such workflow", body = ErrorBody)))]
pub async fn run_tests(
    State(hub): State<Arc<Hub>>,
    UrlPath(name): UrlPath<String>,
) -> Result<axum::Json<TestResults>, ApiError> {
    let project = hub.engine.project();
    if !project.workflows.contains_key(&name) {
        return Err(ApiError::not_found(format!(
            "the project has no workflow named `{name}`"
        )));
    }
    let files = read_project(&hub.dir)?;
    let mut results = TestResults {
        cases: Vec::new(),
        problems: Vec::new(),
    };
    for (file, text) in &files.tests {
        let test = match TestFile::parse(file, text) {
            Ok(t) => t,
            Err(diags) => {
                results.problems.extend(problems(diags));
                continue;
            }
        };
        if test.workflow != name {
            continue;
        }
        let found = test.check(&project);
        if !found.is_empty() {
            results.problems.extend(problems(found));
            continue;
        }
        for report in weft_engine::testing::run_file(project.clone(), &test).await {
            results.cases.push(CaseResult {
                passed: report.passed(),
                file: report.file,
                case: report.case,
                problems: report.problems,
            });
        }
    }
    Ok(axum::Json(results))
}

/// An expression to try.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Preview {
    /// A value as a workflow file holds it: text with `${{ … }}` expressions (a string that is one
    /// expression gives that expression's value).
    pub expression: String,
    /// The context to evaluate in: `{input, steps, vars, …}`. Default: from `run_id`, else `{}`.
    #[schema(value_type = Object)]
    pub context: Option<Value>,
    /// A past run whose context to use: its input and trigger, the outputs of its steps that
    /// succeeded, the workflow's `vars`.
    pub run_id: Option<String>,
}

/// What the expression gave.
#[derive(Serialize, ToSchema)]
pub struct PreviewResult {
    /// Whether it evaluated.
    pub ok: bool,
    /// Its value.
    #[schema(value_type = Object)]
    pub value: Option<Value>,
    /// Why it did not compile (with the column inside the text) or did not evaluate.
    pub problems: Vec<Problem>,
    /// The context it was evaluated in.
    #[schema(value_type = Object)]
    pub context: Value,
}

/// The context a run's steps saw, as far as its record tells: what the preview of an expression
/// against a past run evaluates in.
async fn run_context(hub: &Hub, id: &str) -> Result<Value, ApiError> {
    let store = hub.engine.store();
    let id = store.resolve_run_id(id).await?;
    let run = store
        .get_run(&id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no run has the id {id}")))?;
    let mut steps = serde_json::Map::new();
    for a in store.attempts(&id).await? {
        if a.state == weft_core::run::AttemptState::Succeeded && !a.step_key.as_str().contains('/')
        {
            steps.insert(
                a.step_key.as_str().to_string(),
                a.output.unwrap_or(Value::Null),
            );
        }
    }
    let project = hub.engine.project();
    let mut vars = project.settings.vars.clone();
    if let Some(w) = project.workflows.get(&run.workflow) {
        vars.extend(w.vars.clone());
    }
    Ok(json!({
        "input": run.input,
        "trigger": run.trigger,
        "steps": steps,
        "vars": vars,
        "run": {"id": run.id, "workflow": run.workflow, "attempt": 1},
    }))
}

/// Evaluates an expression as a step would, under the project's expression limits: for the
/// editor's live preview. Changes nothing.
#[utoipa::path(post, path = "/expressions/preview", tag = "workflows",
    request_body(content = Preview, description = "The expression and its context"),
    responses(
        (status = 200, description = "Its value, or why it has none", body = PreviewResult),
        (status = 400, description = "Not a preview request", body = ErrorBody),
        (status = 404, description = "No such run", body = ErrorBody)))]
pub async fn preview(
    State(hub): State<Arc<Hub>>,
    body: Bytes,
) -> Result<axum::Json<PreviewResult>, ApiError> {
    let request: Preview = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("the body is not a preview request: {e}")))?;
    let context = match (request.context, &request.run_id) {
        (Some(c), _) => c,
        (None, Some(id)) => run_context(&hub, id).await?,
        (None, None) => json!({}),
    };
    let text = request.expression;
    let expr_pos = text
        .char_indices()
        .filter(|(i, _)| text[*i..].starts_with("${{"))
        .map(|(i, _)| Pos::new(1, text[..i].chars().count() as u32 + 1))
        .collect();
    let node = Node {
        pos: Pos::new(1, 1),
        kind: Kind::Str(Str {
            value: text.clone(),
            expr_pos,
        }),
    };
    let mut diags = weft_core::Diagnostics::new("expression");
    let template = Template::from_node(&node, &mut diags);
    if !diags.is_empty() {
        return Ok(axum::Json(PreviewResult {
            ok: false,
            value: None,
            problems: problems(diags.into_vec()),
            context,
        }));
    }
    let outcome = hub
        .engine
        .evaluate(&template, &json_to_val(&context))
        .await
        .map_err(|e| e.to_string())
        .and_then(|v| val_to_json(&v));
    Ok(axum::Json(match outcome {
        Ok(value) => PreviewResult {
            ok: true,
            value: Some(value),
            problems: Vec::new(),
            context,
        },
        Err(message) => PreviewResult {
            ok: false,
            value: None,
            problems: vec![Problem {
                file: "expression".into(),
                line: 1,
                column: 1,
                message,
            }],
            context,
        },
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_changes_count_lines_in_and_out() {
        assert_eq!(line_changes("a\nb\nc\n", "a\nb\nc\n"), (0, 0));
        assert_eq!(line_changes("a\nb\n", "a\nx\nb\n"), (1, 0));
        assert_eq!(line_changes("a\nb\n", "a\n"), (0, 1));
        assert_eq!(line_changes("", "a\nb\n"), (2, 0));
    }

    #[test]
    fn new_workflow_names_are_plain_file_names() {
        assert!(file_name_ok("order-sync_2"));
        for bad in ["", "../x", "a/b", "a.yaml", "a b", ".hidden"] {
            assert!(!file_name_ok(bad), "{bad}");
        }
    }
}
