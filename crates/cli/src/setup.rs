//! Loading a project folder and building the store and engine for it.

use std::path::Path;
use std::sync::Arc;

use anyhow::anyhow;
use weft_core::{Diagnostic, Project};
use weft_engine::project_dir::{self, ProjectFiles};
use weft_engine::vault::{KeyLocation, Vault};
use weft_engine::{Engine, EngineOptions, EngineParts, SystemClock};
use weft_store::{SqliteOptions, SqliteStore, Store};

use crate::CliError;

/// A project read and checked.
pub(crate) struct Loaded {
    pub files: ProjectFiles,
    pub project: Arc<Project>,
}

/// A project folder read: its files, and the project or its problems.
pub(crate) type Read = (ProjectFiles, Result<Project, Vec<Diagnostic>>);

/// Reads the project folder, or every problem in it.
pub(crate) fn read(dir: &Path) -> Result<Read, CliError> {
    let files = project_dir::read(dir).map_err(CliError::usage)?;
    let project = Project::load(&files.sources, &weft_connectors::catalog());
    Ok((files, project))
}

/// Reads and checks the project folder; problems are printed and end the command.
pub(crate) fn load(dir: &Path) -> Result<Loaded, CliError> {
    let (files, project) = read(dir)?;
    match project {
        Ok(project) => Ok(Loaded {
            files,
            project: Arc::new(project),
        }),
        Err(problems) => {
            for d in &problems {
                eprintln!("{}", display_path(dir, d));
            }
            Err(CliError::usage(anyhow!(
                "the project has {} problem{}; fix {} (`weft lint` lists them)",
                problems.len(),
                if problems.len() == 1 { "" } else { "s" },
                if problems.len() == 1 { "it" } else { "them" }
            )))
        }
    }
}

/// A diagnostic with its file shown relative to the current folder.
pub(crate) fn display_path(dir: &Path, d: &Diagnostic) -> String {
    let file = if dir == Path::new(".") {
        d.file.clone()
    } else {
        dir.join(&d.file).display().to_string()
    };
    format!("{file}:{}:{}: {}", d.line, d.column, d.message)
}

/// Opens the project's store.
pub(crate) async fn store(loaded: &Loaded) -> Result<Arc<dyn Store>, CliError> {
    let mut options = SqliteOptions::new(loaded.files.database_path());
    options.inline_limit = loaded.project.settings.limits.inline_output_bytes as usize;
    let store = SqliteStore::open(options)
        .await
        .map_err(CliError::internal)?;
    Ok(Arc::new(store))
}

/// The project's secret store in `store`, with the master key where the environment says (or in
/// `.weft/master.key`).
pub(crate) fn vault(loaded: &Loaded, store: Arc<dyn Store>) -> Vault {
    let data_dir = loaded.files.root.join(project_dir::DATA_DIR);
    Vault::new(store, KeyLocation::from_env(&data_dir))
}

/// Where this process evaluates expressions: on the runtime's threads (whose stacks are
/// [`crate::RUNTIME_STACK`]) up to a few MiB of recursion, then on threads of their own.
pub(crate) fn eval_options() -> weft_engine::EvalOptions {
    let mut options = weft_engine::EvalOptions::default();
    options.inline.stack_bytes = (crate::RUNTIME_STACK / 16) as u64;
    options
}

/// Builds the engine for the project, with the knowledge base (`kb/`, opened on the first search)
/// as the built-in `kb` connection.
pub(crate) async fn engine(loaded: &Loaded) -> Result<Engine, CliError> {
    let store = store(loaded).await?;
    // Connections resolve `{ secret: NAME }` through the process's credentials, which the log
    // writer scrubs too.
    let secrets = crate::logging::secrets();
    vault(loaded, store.clone())
        .load_into(secrets)
        .await
        .map_err(crate::secrets::vault_error)?;
    let registry = weft_connectors::Registry::build(&loaded.project, &loaded.files.root, secrets)
        .map_err(CliError::usage)?;
    let engine = Engine::new(EngineParts {
        store,
        project: loaded.project.clone(),
        registry,
        clock: Arc::new(SystemClock),
        options: EngineOptions {
            eval: eval_options(),
            ..EngineOptions::default()
        },
        mocks: None,
    });
    let kb = crate::kb::KbConnector::new(loaded.files.root.join("kb"));
    engine.add_builtin("kb", Arc::new(kb));
    Ok(engine)
}
