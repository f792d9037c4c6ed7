//! `weft test`: the workflow test cases of a project, one pass/fail line each.

use std::path::Path;

use serde_json::json;
use weft_core::testcase::TestFile;

use crate::{CliError, CmdResult, exit, setup};

pub(crate) async fn test(dir: &Path, json: bool) -> CmdResult {
    let loaded = setup::load(dir)?;
    let mut files = Vec::new();
    let mut problems = Vec::new();
    for (file, text) in &loaded.files.tests {
        match TestFile::parse(file, text) {
            Ok(test) => {
                let found = test.check(&loaded.project);
                if found.is_empty() {
                    files.push(test);
                } else {
                    problems.extend(found);
                }
            }
            Err(found) => problems.extend(found),
        }
    }
    if !problems.is_empty() {
        for d in &problems {
            eprintln!("{}", setup::display_path(dir, d));
        }
        return Err(CliError::usage(anyhow::anyhow!(
            "the test files have problems; fix them first"
        )));
    }
    if files.is_empty() {
        eprintln!(
            "No test files in {}; add cases to tests/*.yaml.",
            dir.join("tests").display()
        );
        return Ok(exit::OK);
    }
    let mut reports = Vec::new();
    for file in &files {
        let file_reports = weft_engine::testing::run_file(loaded.project.clone(), file).await;
        for report in &file_reports {
            if !json {
                if report.passed() {
                    println!("pass  {}  {}", report.file, report.case);
                } else {
                    println!("FAIL  {}  {}", report.file, report.case);
                    for problem in &report.problems {
                        for (i, line) in problem.lines().enumerate() {
                            println!("      {}{line}", if i == 0 { "- " } else { "  " });
                        }
                    }
                }
            }
        }
        reports.extend(file_reports);
    }
    let failed = reports.iter().filter(|r| !r.passed()).count();
    if json {
        let list: Vec<_> = reports
            .iter()
            .map(|r| json!({"file": r.file, "case": r.case, "passed": r.passed(), "problems": r.problems}))
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&list).map_err(CliError::internal)?
        );
    } else {
        eprintln!(
            "{} case{}: {} passed, {failed} failed.",
            reports.len(),
            if reports.len() == 1 { "" } else { "s" },
            reports.len() - failed
        );
    }
    Ok(if failed == 0 { exit::OK } else { exit::FAILED })
}
