//! `weft serve --watch`: reloads the project when its files change.
//!
//! The folder is read once a second and compared with the version being served. A version that
//! loads becomes the one new runs start on (runs already started finish on their own version); a
//! version with problems is reported, problem by problem, and the last good one keeps serving.
//! Every reload is written to the audit log with the workflows and connections it changed. A save
//! from the console ([`crate::edit`]) installs its project through the same [`install`].

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use weft_core::Project;
use weft_engine::project_dir;

use crate::Hub;
use crate::triggers::TriggerTasks;

/// How often the folder is read.
const EVERY: Duration = Duration::from_secs(1);

/// Watches `dir` until the task is aborted.
pub async fn watch(dir: PathBuf, hub: Arc<Hub>, triggers: TriggerTasks) {
    let catalog = weft_connectors::catalog();
    let mut seen = project_dir::read(&dir).ok().map(|f| f.sources);
    loop {
        tokio::time::sleep(EVERY).await;
        let files = match project_dir::read(&dir) {
            Ok(f) => f,
            Err(e) => {
                tracing::warn!("Cannot read the project for reloading: {e}");
                continue;
            }
        };
        if seen.as_ref() == Some(&files.sources) {
            continue;
        }
        seen = Some(files.sources.clone());
        let project = match Project::load(&files.sources, &catalog) {
            Ok(p) => p,
            Err(problems) => {
                for d in &problems {
                    tracing::error!("{d}");
                }
                tracing::error!(
                    problems = problems.len(),
                    "The changed project has problems; the last good version keeps serving."
                );
                metrics::counter!("weft_reloads_total", "outcome" => "rejected").increment(1);
                continue;
            }
        };
        let workflows = project.workflows.len();
        match install(&hub, &triggers, &dir, project) {
            Ok(changes) => {
                crate::audit::record(
                    hub.engine.store().as_ref(),
                    "files",
                    "project.reload",
                    &dir.display().to_string(),
                    changes,
                )
                .await;
                tracing::info!(
                    workflows,
                    "Reloaded the project; new runs start on the new version."
                );
                crate::subscriptions::sync(&hub).await;
            }
            Err(e) => tracing::error!("{e}; the last good version keeps serving."),
        }
    }
}

/// Makes `project` the one the hub serves: its connections, routes and trigger tasks. Returns what
/// changed, for the audit log.
fn install(
    hub: &Hub,
    triggers: &TriggerTasks,
    dir: &std::path::Path,
    project: Project,
) -> Result<serde_json::Value, String> {
    let registry = match weft_connectors::Registry::build(&project, dir, &hub.engine.secrets()) {
        Ok(r) => r,
        Err(e) => {
            metrics::counter!("weft_reloads_total", "outcome" => "rejected").increment(1);
            return Err(e.to_string());
        }
    };
    let project = Arc::new(project);
    let changes = changes(&hub.engine.project(), &project);
    hub.engine.set_project(project.clone(), registry);
    hub.route(&project);
    triggers.restart();
    metrics::counter!("weft_reloads_total", "outcome" => "loaded").increment(1);
    Ok(changes)
}

/// Serves `project`, which a request loaded from the folder (a save from the console), at once.
pub(crate) async fn serve(
    hub: &Hub,
    dir: &std::path::Path,
    project: Project,
    actor: &str,
) -> Result<(), crate::error::ApiError> {
    let Some(triggers) = hub.triggers.get() else {
        return Err(crate::error::ApiError::new(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            "starting",
            "the hub is still starting; the file is saved and is served at the next start",
        ));
    };
    install(hub, triggers, dir, project).map_err(|e| {
        crate::error::ApiError::new(
            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
            "reload",
            format!("the file is saved, but the hub cannot serve it: {e}; the last good version keeps serving"),
        )
    })?;
    tracing::info!(
        actor,
        "Saved from the console; new runs start on the new version."
    );
    crate::subscriptions::sync(hub).await;
    Ok(())
}

/// What a reload changed: workflows and connections added, changed and removed, by name.
fn changes(old: &Project, new: &Project) -> serde_json::Value {
    fn diff<T>(
        old: &std::collections::BTreeMap<String, T>,
        new: &std::collections::BTreeMap<String, T>,
        same: impl Fn(&T, &T) -> bool,
    ) -> serde_json::Value {
        let added: Vec<&String> = new.keys().filter(|k| !old.contains_key(*k)).collect();
        let removed: Vec<&String> = old.keys().filter(|k| !new.contains_key(*k)).collect();
        let changed: Vec<&String> = new
            .iter()
            .filter(|(k, v)| old.get(*k).is_some_and(|o| !same(o, v)))
            .map(|(k, _)| k)
            .collect();
        serde_json::json!({"added": added, "changed": changed, "removed": removed})
    }
    serde_json::json!({
        "workflows": diff(&old.workflows, &new.workflows, |a, b| a.version == b.version),
        "connections": diff(&old.connections, &new.connections, |a, b| {
            a.node.to_json() == b.node.to_json() && a.rate_limit == b.rate_limit
        }),
    })
}
