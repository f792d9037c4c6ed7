//! `weft lint`: every problem of every project file, at once.

use std::path::Path;

use weft_core::Diagnostic;
use weft_core::testcase::TestFile;

use crate::{CliError, CmdResult, exit, setup};

pub(crate) fn lint(dir: &Path, json: bool) -> CmdResult {
    let (files, _catalog, project) = setup::read(dir)?;
    let mut problems: Vec<Diagnostic> = Vec::new();
    let project = match project {
        Ok(p) => Some(p),
        Err(diags) => {
            problems.extend(diags);
            None
        }
    };
    for (file, text) in &files.tests {
        match TestFile::parse(file, text) {
            Ok(test) => {
                if let Some(project) = &project {
                    problems.extend(test.check(project));
                }
            }
            Err(diags) => problems.extend(diags),
        }
    }
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
