//! The example projects lint clean and pass their tests; `weft schema` accepts them; a failing case
//! explains itself.

use std::path::PathBuf;

use serde_json::Value;

use crate::support::{Project, repo_root, weft};

fn example_dirs() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(repo_root().join("examples"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("weft.yaml").is_file())
        .collect();
    dirs.sort();
    assert!(dirs.len() >= 2, "the examples are found");
    dirs
}

#[tokio::test]
async fn every_example_lints_clean_and_passes_its_tests() {
    for dir in example_dirs() {
        let out = weft(&dir, &["lint"]).await;
        assert_eq!(
            (out.code, out.stdout.as_str()),
            (0, ""),
            "{}: {}",
            dir.display(),
            out.stderr
        );
        let out = weft(&dir, &["test", "--json"]).await;
        assert_eq!(
            out.code,
            0,
            "{}: {}\n{}",
            dir.display(),
            out.stdout,
            out.stderr
        );
        let cases = out.json();
        assert!(
            !cases.as_array().unwrap().is_empty(),
            "{} has test cases",
            dir.display()
        );
        assert!(
            cases
                .as_array()
                .unwrap()
                .iter()
                .all(|c| c["passed"] == true)
        );
    }
}

fn yaml_to_json(path: &std::path::Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap();
    weft_core::yaml::parse(&text).unwrap().to_json()
}

#[tokio::test]
async fn the_printed_schema_accepts_every_example_workflow_and_rejects_broken_ones() {
    let out = weft(&repo_root(), &["schema"]).await;
    assert_eq!(out.code, 0);
    let schema = out.json();
    let validator = jsonschema::validator_for(&schema).expect("the schema is a valid JSON Schema");
    let mut checked = 0;
    for dir in example_dirs() {
        for entry in std::fs::read_dir(dir.join("workflows")).unwrap() {
            let path = entry.unwrap().path();
            let doc = yaml_to_json(&path);
            let errors: Vec<String> = validator
                .iter_errors(&doc)
                .map(|e| format!("{} at {}", e, e.instance_path()))
                .collect();
            assert!(errors.is_empty(), "{}: {errors:?}", path.display());
            checked += 1;
        }
    }
    assert!(checked >= 3);
    let broken =
        yaml_to_json(&repo_root().join("crates/cli/tests/fixtures/broken/workflows/keys.yaml"));
    assert!(
        !validator.is_valid(&broken),
        "an unknown key fails the schema as it fails lint"
    );
}

#[tokio::test]
async fn a_failing_test_case_says_why_and_exits_1() {
    let p = Project::new(
        "",
        &[(
            "sum",
            "trigger: manual\nsteps:\n  - id: add\n    map: ${{ {total: (.input.a + .input.b), items: 2} }}\n",
        )],
    );
    std::fs::create_dir(p.path().join("tests")).unwrap();
    std::fs::write(
        p.path().join("tests/sum.yaml"),
        "workflow: sum\ncases:\n  - name: adds\n    input: {a: 1, b: 2}\n    expect:\n      output_equals: {total: 4, items: 2}\n  - name: right\n    input: {a: 1, b: 2}\n    expect: {output: '.total == 3'}\n",
    )
    .unwrap();
    let out = p.weft(&["test"]).await;
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stdout.contains("FAIL  tests/sum.yaml  adds"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains(".total: expected 4, got 3"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("pass  tests/sum.yaml  right"),
        "{}",
        out.stdout
    );
    assert!(
        out.stderr.contains("2 cases: 1 passed, 1 failed."),
        "{}",
        out.stderr
    );
}
