//! `weft lint`: every problem of every project file, at once.

use std::path::Path;

use weft_core::Project;
use weft_core::testcase::TestFile;

use crate::{CliError, CmdResult, exit, setup};

pub(crate) fn lint(dir: &Path, json: bool) -> CmdResult {
    let files = weft_engine::project_dir::read(dir).map_err(CliError::usage)?;
    let (project, mut problems) =
        Project::load_partial(&files.sources, &weft_connectors::catalog());
    let broken: std::collections::BTreeSet<String> = files
        .sources
        .workflows
        .iter()
        .filter(|(file, _)| problems.iter().any(|d| &d.file == file))
        .map(|(file, _)| weft_core::workflow::default_name(file))
        .collect();
    for (file, text) in &files.tests {
        let (test, diags) = TestFile::read(file, text);
        problems.extend(diags);
        // A test of a workflow that has problems itself is checked once the workflow is fixed.
        if let Some(test) = test.filter(|t| !broken.contains(&t.workflow)) {
            problems.extend(test.check(&project));
        }
    }
    // Group by file in the order files were read, each file's problems by position.
    let mut order: Vec<String> = Vec::new();
    for d in &problems {
        if !order.contains(&d.file) {
            order.push(d.file.clone());
        }
    }
    problems.sort_by_key(|d| (order.iter().position(|f| *f == d.file), d.line, d.column));
    if json {
        let value = serde_json::to_string_pretty(&problems).map_err(CliError::internal)?;
        println!("{value}");
    } else {
        for d in &problems {
            println!("{}", setup::display_path(dir, d));
        }
        let in_files: std::collections::BTreeSet<&str> =
            problems.iter().map(|d| d.file.as_str()).collect();
        if problems.is_empty() {
            let workflows = files.sources.workflows.len();
            eprintln!(
                "No problems in weft.yaml, {workflows} workflow{} and {} test file{}.",
                if workflows == 1 { "" } else { "s" },
                files.tests.len(),
                if files.tests.len() == 1 { "" } else { "s" }
            );
        } else {
            eprintln!(
                "{} problem{} in {} file{}.",
                problems.len(),
                if problems.len() == 1 { "" } else { "s" },
                in_files.len(),
                if in_files.len() == 1 { "" } else { "s" }
            );
        }
    }
    Ok(if problems.is_empty() {
        exit::OK
    } else {
        exit::FAILED
    })
}
