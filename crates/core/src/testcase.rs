//! Workflow test files (`tests/*.yaml`): a trigger input, canned results for the steps that call
//! outside systems, and expectations written as jq predicates.
//!
//! ```yaml
//! workflow: order-status
//! cases:
//!   - name: a late order opens a ticket
//!     input: { order_id: 7 }
//!     mocks:
//!       order: { output: { status: 200, body: { order: { fulfillment_status: null } } } }
//!       ticket:                       # one entry per attempt; the last one repeats
//!         - error: { message: upstream unavailable, retryable: true }
//!         - output: { status: 201, body: { ticket: { id: 99 } } }
//!     expect:
//!       status: succeeded
//!       output: .ticket == 99
//!       steps:
//!         ticket: .body.ticket.subject == "Order 7 is late"   # a predicate on the step's input
//! ```
//!
//! This module only reads and checks the files; the engine runs them.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::Value;

use crate::decode::{self, Fields};
use crate::diag::{Diagnostic, Diagnostics, did_you_mean};
use crate::expr::{Expr, Template};
use crate::project::Project;
use crate::run::RunState;
use crate::workflow::StepKind;
use crate::yaml::{self, Kind, Node, Pos};

/// Keys of a test file's top level.
pub const FILE_KEYS: &[&str] = &["workflow", "cases"];
/// Keys of one case.
pub const CASE_KEYS: &[&str] = &["name", "input", "mocks", "expect"];
/// Keys of one mock entry.
pub const MOCK_KEYS: &[&str] = &["output", "error"];
/// Keys of `expect`.
pub const EXPECT_KEYS: &[&str] = &["status", "output", "output_equals", "error", "steps"];
/// Keys of a step expectation.
pub const STEP_EXPECT_KEYS: &[&str] = &["input", "output", "attempts", "ran"];

/// One test file.
#[derive(Clone, Debug)]
pub struct TestFile {
    /// Path relative to the project folder.
    pub file: String,
    /// The workflow the cases run.
    pub workflow: String,
    /// Where `workflow:` is.
    pub workflow_pos: Pos,
    /// The cases, in file order.
    pub cases: Vec<TestCase>,
}

/// One test case.
#[derive(Clone, Debug)]
pub struct TestCase {
    /// What the case shows.
    pub name: String,
    /// Where the case starts.
    pub pos: Pos,
    /// The run's input (`.input`).
    pub input: Value,
    /// Canned results by step id, one per attempt; the last one repeats.
    pub mocks: BTreeMap<String, Vec<Mock>>,
    /// Where each mocked step id is written.
    pub mock_pos: BTreeMap<String, Pos>,
    /// What must hold after the run.
    pub expect: Expect,
}

/// The canned result of one attempt of a mocked step.
#[derive(Clone, Debug)]
pub enum Mock {
    /// The step succeeds with this output. It may use `${{ }}` with `{input, attempt}` as context.
    Output(Template),
    /// The step fails with this error.
    Error {
        /// The error message.
        message: String,
        /// Whether the step's retry policy applies.
        retryable: bool,
    },
}

/// Expectations on a finished run.
#[derive(Clone, Debug)]
pub struct Expect {
    /// The state the run must end in (default `succeeded`).
    pub status: RunState,
    /// A jq predicate on the run's output.
    pub output: Option<Arc<Expr>>,
    /// The exact output.
    pub output_equals: Option<Value>,
    /// A jq predicate on the run's error message (a string), for cases that expect failure.
    pub error: Option<Arc<Expr>>,
    /// Expectations by step id.
    pub steps: BTreeMap<String, StepExpect>,
}

/// Expectations on one step.
#[derive(Clone, Debug, Default)]
pub struct StepExpect {
    /// Where the expectation is written.
    pub pos: Pos,
    /// A jq predicate on the step's input: the evaluated `with` of `uses` and `call` steps, the list
    /// of a `for_each`, `{until}` of a `wait`; other steps have no input (`null`).
    pub input: Option<Arc<Expr>>,
    /// A jq predicate on the step's output.
    pub output: Option<Arc<Expr>>,
    /// How many attempts the step must have made.
    pub attempts: Option<u32>,
    /// Whether the step must have run (`false`: skipped or never reached).
    pub ran: Option<bool>,
}

impl TestFile {
    /// Reads a test file.
    pub fn parse(file: &str, text: &str) -> Result<TestFile, Vec<Diagnostic>> {
        match TestFile::read(file, text) {
            (Some(t), diags) if diags.is_empty() => Ok(t),
            (_, diags) => Err(diags),
        }
    }

    /// Reads as much of a test file as makes sense, with every problem found, so that `weft lint`
    /// can also check the readable part against the project.
    pub fn read(file: &str, text: &str) -> (Option<TestFile>, Vec<Diagnostic>) {
        let mut diags = Diagnostics::new(file);
        let parsed = read_file(file, text, &mut diags);
        (parsed, diags.into_vec())
    }

    /// Checks the file against a project: the workflow exists, and every mocked or expected step is
    /// one of its steps (or of a workflow it calls). Mocks are required for every `uses` step that
    /// the run may reach, so that tests never touch outside systems; an `approval` step's mock is
    /// its answer.
    pub fn check(&self, project: &Project) -> Vec<Diagnostic> {
        let mut diags = Diagnostics::new(self.file.clone());
        let Some(workflow) = project.workflows.get(&self.workflow) else {
            let hint = did_you_mean(&self.workflow, project.workflows.keys().map(String::as_str))
                .map(|h| format!("; did you mean `{h}`?"))
                .unwrap_or_default();
            diags.error(
                self.workflow_pos,
                format!("unknown workflow `{}`{hint}", self.workflow),
            );
            return diags.into_vec();
        };
        // Steps of the workflow and of every workflow it calls, transitively.
        let mut steps: BTreeMap<String, bool> = BTreeMap::new();
        let mut todo = vec![workflow.name.clone()];
        let mut seen = std::collections::BTreeSet::new();
        while let Some(name) = todo.pop() {
            if !seen.insert(name.clone()) {
                continue;
            }
            let Some(w) = project.workflows.get(&name) else {
                continue;
            };
            for step in w.all_steps() {
                steps.insert(
                    step.id.clone(),
                    matches!(step.kind, StepKind::Uses { .. } | StepKind::Approval(_)),
                );
                if let StepKind::Call { workflow, .. } = &step.kind {
                    todo.push(workflow.clone());
                }
            }
        }
        for case in &self.cases {
            for (id, pos) in &case.mock_pos {
                match steps.get(id) {
                    Some(true) => {}
                    Some(false) => diags.error(*pos, format!("step `{id}` does not call an outside system; only `uses` and `approval` steps are mocked")),
                    None => diags.error(*pos, unknown_step(id, &steps)),
                }
            }
            for (id, expect) in &case.expect.steps {
                if !steps.contains_key(id) {
                    diags.error(expect.pos, unknown_step(id, &steps));
                }
            }
        }
        diags.into_vec()
    }
}

fn unknown_step(id: &str, steps: &BTreeMap<String, bool>) -> String {
    let hint = did_you_mean(id, steps.keys().map(String::as_str))
        .map(|h| format!("; did you mean `{h}`?"))
        .unwrap_or_default();
    format!("the workflow has no step `{id}`{hint}")
}

fn read_file(file: &str, text: &str, diags: &mut Diagnostics) -> Option<TestFile> {
    let root = match yaml::parse(text) {
        Ok(root) => root,
        Err(e) => {
            diags.error(e.pos, e.message);
            return None;
        }
    };
    let mut f = Fields::new(&root, "test file", FILE_KEYS, diags)?;
    let workflow_node = f.require("workflow", diags);
    let workflow = workflow_node.and_then(|n| decode::string(n, "`workflow`", diags));
    let cases = match f.require("cases", diags) {
        Some(n) => decode::list(n, "`cases`", diags)
            .unwrap_or_default()
            .iter()
            .enumerate()
            .filter_map(|(i, c)| read_case(i, c, diags))
            .collect(),
        None => Vec::new(),
    };
    f.finish(diags);
    Some(TestFile {
        file: file.to_string(),
        workflow: workflow?,
        workflow_pos: workflow_node.map_or(root.pos, |n| n.pos),
        cases,
    })
}

fn read_case(index: usize, node: &Node, diags: &mut Diagnostics) -> Option<TestCase> {
    let mut f = Fields::new(node, "test case", CASE_KEYS, diags)?;
    let name = f
        .get("name")
        .and_then(|n| decode::string(n, "`name`", diags))
        .unwrap_or_else(|| format!("case {}", index + 1));
    let input = f.get("input").map_or(Value::Null, Node::to_json);
    let mut mocks = BTreeMap::new();
    let mut mock_pos = BTreeMap::new();
    if let Some(n) = f.get("mocks") {
        for (key, value) in decode::entries(n, "`mocks`", diags).unwrap_or_default() {
            let entries: Vec<&Node> = match &value.kind {
                Kind::Seq(items) => items.iter().collect(),
                _ => vec![value],
            };
            if entries.is_empty() {
                diags.error(
                    value.pos,
                    format!(
                        "mock `{}` is an empty list; give at least one result",
                        key.name
                    ),
                );
            }
            let parsed: Vec<Mock> = entries
                .into_iter()
                .filter_map(|m| read_mock(m, diags))
                .collect();
            mock_pos.insert(key.name.clone(), key.pos);
            mocks.insert(key.name.clone(), parsed);
        }
    }
    let expect = match f.get("expect") {
        Some(n) => read_expect(n, diags)?,
        None => Expect {
            status: RunState::Succeeded,
            output: None,
            output_equals: None,
            error: None,
            steps: BTreeMap::new(),
        },
    };
    f.finish(diags);
    Some(TestCase {
        name,
        pos: node.pos,
        input,
        mocks,
        mock_pos,
        expect,
    })
}

fn read_mock(node: &Node, diags: &mut Diagnostics) -> Option<Mock> {
    let mut f = Fields::new(node, "mock", MOCK_KEYS, diags)?;
    let mock = match (f.get("output"), f.get("error")) {
        (Some(out), None) => Some(Mock::Output(Template::from_node(out, diags))),
        (None, Some(err)) => match &err.kind {
            Kind::Str(s) => Some(Mock::Error {
                message: s.value.clone(),
                retryable: false,
            }),
            _ => {
                let mut e = Fields::new(err, "mock `error`", &["message", "retryable"], diags)?;
                let message = e
                    .require("message", diags)
                    .and_then(|n| decode::string(n, "`message`", diags));
                let retryable = e
                    .get("retryable")
                    .and_then(|n| decode::boolean(n, "`retryable`", diags))
                    .unwrap_or(false);
                e.finish(diags);
                message.map(|message| Mock::Error { message, retryable })
            }
        },
        _ => {
            diags.error(node.pos, "a mock needs either `output` or `error`");
            None
        }
    };
    f.finish(diags);
    mock
}

/// Reads a jq predicate: bare jq (`.total > 3`) or one `${{ … }}` expression.
fn predicate(node: &Node, what: &str, diags: &mut Diagnostics) -> Option<Arc<Expr>> {
    match &node.kind {
        Kind::Str(s) if s.value.contains("${{") => Template::expr_from_node(node, what, diags),
        Kind::Str(s) => Expr::parse_bare(&s.value, node.pos, diags).map(Arc::new),
        _ => {
            diags.error(
                node.pos,
                format!(
                    "{what} must be a jq predicate such as `.total > 3`, found {}",
                    node.kind_name()
                ),
            );
            None
        }
    }
}

fn read_expect(node: &Node, diags: &mut Diagnostics) -> Option<Expect> {
    let mut f = Fields::new(node, "`expect`", EXPECT_KEYS, diags)?;
    let status = match f.get("status") {
        Some(n) => match decode::string(n, "`status`", diags)?.parse::<RunState>() {
            Ok(s) if s.is_terminal() || s == RunState::Waiting => s,
            Ok(s) => {
                diags.error(
                    n.pos,
                    format!("a test run ends succeeded, failed, cancelled or waiting, not {s}"),
                );
                return None;
            }
            Err(e) => {
                diags.error(n.pos, e);
                return None;
            }
        },
        None => RunState::Succeeded,
    };
    let output = f
        .get("output")
        .and_then(|n| predicate(n, "`expect.output`", diags));
    let output_equals = f.get("output_equals").map(Node::to_json);
    let error = f
        .get("error")
        .and_then(|n| predicate(n, "`expect.error`", diags));
    let mut steps = BTreeMap::new();
    if let Some(n) = f.get("steps") {
        for (key, value) in decode::entries(n, "`expect.steps`", diags).unwrap_or_default() {
            let expect = match &value.kind {
                Kind::Str(_) => StepExpect {
                    pos: key.pos,
                    input: predicate(value, "a step expectation", diags),
                    ..StepExpect::default()
                },
                _ => {
                    let Some(mut s) =
                        Fields::new(value, "step expectation", STEP_EXPECT_KEYS, diags)
                    else {
                        continue;
                    };
                    let e = StepExpect {
                        pos: key.pos,
                        input: s.get("input").and_then(|n| predicate(n, "`input`", diags)),
                        output: s
                            .get("output")
                            .and_then(|n| predicate(n, "`output`", diags)),
                        attempts: s
                            .get("attempts")
                            .and_then(|n| decode::integer(n, "`attempts`", 0, 1000, diags))
                            .map(|a| a as u32),
                        ran: s
                            .get("ran")
                            .and_then(|n| decode::boolean(n, "`ran`", diags)),
                    };
                    s.finish(diags);
                    e
                }
            };
            steps.insert(key.name.clone(), expect);
        }
    }
    f.finish(diags);
    Some(Expect {
        status,
        output,
        output_equals,
        error,
        steps,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_cases_mocks_and_expectations() {
        let t = TestFile::parse(
            "tests/a.yaml",
            r#"workflow: order
cases:
  - name: works
    input: {id: 7}
    mocks:
      fetch:
        - error: {message: down, retryable: true}
        - output: {status: 200, body: "${{ .input.path }}"}
    expect:
      output: .ok
      steps:
        fetch: '.path == "/orders/7"'
        other: {ran: false, attempts: 0}
  - input: 1
    expect: {status: failed, error: '${{ contains("boom") }}'}
"#,
        )
        .unwrap();
        assert_eq!(t.workflow, "order");
        assert_eq!(t.cases.len(), 2);
        assert_eq!(t.cases[0].mocks["fetch"].len(), 2);
        assert!(matches!(
            t.cases[0].mocks["fetch"][0],
            Mock::Error {
                retryable: true,
                ..
            }
        ));
        assert_eq!(t.cases[0].expect.steps["other"].ran, Some(false));
        assert_eq!(t.cases[1].name, "case 2");
        assert_eq!(t.cases[1].expect.status, RunState::Failed);
    }

    #[test]
    fn reports_bad_predicates_and_keys() {
        let errs = TestFile::parse(
            "tests/a.yaml",
            "workflow: order\ncases:\n  - expect: {output: '.a |', staus: failed}\n    mocks: {x: {}}\n",
        )
        .unwrap_err();
        let errs: Vec<String> = errs.iter().map(|d| d.to_string()).collect();
        assert_eq!(errs.len(), 3, "{errs:?}");
        assert!(
            errs.iter().any(|e| e.contains("did you mean `status`?")),
            "{errs:?}"
        );
        assert!(
            errs.iter().any(|e| e.contains("jq syntax error")),
            "{errs:?}"
        );
        assert!(
            errs.iter()
                .any(|e| e.contains("a mock needs either `output` or `error`")),
            "{errs:?}"
        );
    }
}
