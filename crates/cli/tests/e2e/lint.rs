//! `weft lint` on a folder of broken files: every diagnostic's file, line, column and text.

use crate::support::{repo_root, weft};

/// The fixture holds a project whose files have one of each kind of problem; `expected.txt` lists
/// every diagnostic with its file, line, column and text, as checked by hand against the files.
#[tokio::test]
async fn lint_reports_every_problem_of_every_file_with_its_position() {
    let fixture = repo_root().join("crates/cli/tests/fixtures/broken");
    let expected = std::fs::read_to_string(fixture.join("expected.txt")).unwrap();
    let out = weft(&fixture, &["lint"]).await;
    assert_eq!(out.code, 1, "{}", out.stderr);
    let got: Vec<&str> = out.stdout.lines().collect();
    let want: Vec<&str> = expected.lines().collect();
    assert_eq!(got, want, "\n--- got ---\n{}", out.stdout);
    assert!(
        out.stderr
            .contains(&format!("{} problems in 7 files.", want.len())),
        "{}",
        out.stderr
    );

    // The same as data.
    let out = weft(&fixture, &["lint", "--json"]).await;
    assert_eq!(out.code, 1);
    let json = out.json();
    let items = json.as_array().unwrap();
    assert_eq!(items.len(), want.len());
    for (item, line) in items.iter().zip(&want) {
        let text = format!(
            "{}:{}:{}: {}",
            item["file"].as_str().unwrap(),
            item["line"],
            item["column"],
            item["message"].as_str().unwrap()
        );
        assert_eq!(&text, line);
    }
}

#[tokio::test]
async fn lint_from_another_folder_prefixes_paths_with_the_folder() {
    let root = repo_root();
    let out = weft(&root, &["lint", "crates/cli/tests/fixtures/broken"]).await;
    assert_eq!(out.code, 1);
    let first = out.stdout.lines().next().unwrap();
    let expected =
        std::fs::read_to_string(root.join("crates/cli/tests/fixtures/broken/expected.txt"))
            .unwrap();
    let expected_first = expected.lines().next().unwrap();
    assert_eq!(
        first,
        format!("crates/cli/tests/fixtures/broken/{expected_first}")
    );
}

/// Expressions too large or too deep for the jq compiler's recursion get a clear error, not a crash,
/// and the largest allowed ones compile and run.
#[tokio::test]
async fn hostile_expressions_get_a_clear_error_and_the_largest_allowed_ones_run() {
    let deep = format!("{}1{}", "[".repeat(5000), "]".repeat(5000));
    let long = vec!["."; 3000].join(" | ");
    let largest = vec!["."; 499].join(" | ");
    let p = crate::support::Project::new(
        "",
        &[
            (
                "deep",
                &format!("trigger: manual\nsteps:\n  - id: a\n    map: \"${{{{ {deep} }}}}\"\n"),
            ),
            (
                "long",
                &format!("trigger: manual\nsteps:\n  - id: a\n    map: \"${{{{ {long} }}}}\"\n"),
            ),
        ],
    );
    let out = p.weft(&["lint"]).await;
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stdout.contains("workflows/deep.yaml:4:")
            && out.stdout.contains("nests more than 64 levels deep"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("workflows/long.yaml:4:")
            && out.stdout.contains("has more than 1000 tokens"),
        "{}",
        out.stdout
    );

    let p = crate::support::Project::new(
        "",
        &[(
            "largest",
            &format!("trigger: manual\nsteps:\n  - id: a\n    map: \"${{{{ {largest} | 7 }}}}\"\n"),
        )],
    );
    let out = p.weft(&["run", "largest"]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.json(), serde_json::json!(7));
}
