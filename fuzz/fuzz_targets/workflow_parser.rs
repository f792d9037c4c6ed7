//! Fuzz target: any UTF-8 text as a workflow file, as the project file `weft.yaml` and as a
//! connector definition (`connectors/*.yaml`), read through `Project::load_partial` as `weft lint`
//! and `weft serve` read a project folder.
//!
//! Whatever the text, loading must end in a project or in diagnostics, never in a panic. The
//! catalog holds two stand-in connectors written here (an `http`-like one with an action and a
//! broker that `queue` triggers can consume), since the real ones live in weft-connectors, which
//! the core must not depend on.

#![no_main]

use libfuzzer_sys::fuzz_target;
use weft_core::catalog::no_input_check;
use weft_core::{ActionSpec, Catalog, ConnectorSpec, ConsumeSpec, Diagnostic, Project, Sources};

/// A connector with one action, `request`, for `uses: <connection>.request` steps.
static HTTP: ConnectorSpec = ConnectorSpec {
    probe: None,
    type_name: "http",
    summary: "fuzz stand-in for the http connector",
    actions: &[ActionSpec {
        name: "request",
        summary: "fuzz stand-in",
        inputs: &[
            "method", "path", "url", "query", "headers", "body", "json", "form", "timeout",
        ],
        required: &[],
        check_inputs: no_input_check,
    }],
    check: |_, _| {},
    consume: None,
};

/// A broker whose `queue` triggers take one key of their own, `topic`.
static BROKER: ConnectorSpec = ConnectorSpec {
    probe: None,
    type_name: "broker",
    summary: "fuzz stand-in for a message broker",
    actions: &[],
    check: |_, _| {},
    consume: Some(ConsumeSpec {
        keys: &["topic"],
        check: |_, _| {},
        message_id: Some("the stand-in's message id"),
    }),
};

/// A valid project file whose connections the example workflows (the seeds) use.
const PROJECT: &str = "\
name: fuzz
vars:
  free_shipping_from: 50
  auto_refund_limit: 20
connections:
  shop: { type: http }
  helpdesk: { type: http }
  hub: { type: http }
  events: { type: broker }
";

/// A valid workflow that uses the project's connections, loaded beside the fuzzed text; the
/// seeds' `call` steps call it.
const WORKFLOW: &str = "\
name: card
trigger: manual
steps:
  - id: fetch
    uses: shop.request
    with: { path: /orders }
";

/// Renders every diagnostic, as the CLI does, so that formatting them is checked too.
fn render(problems: &[Diagnostic]) {
    for d in problems {
        std::hint::black_box(d.to_string());
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let catalog = Catalog::new(vec![&HTTP, &BROKER]);

    // The text as a workflow of a valid project (with a knowledge base, so `kb.search` is allowed).
    let mut sources = Sources::new("weft.yaml", PROJECT);
    sources.has_kb = true;
    sources.add_workflow("workflows/fuzz.yaml", text);
    sources.add_workflow("workflows/card.yaml", WORKFLOW);
    let (project, problems) = Project::load_partial(&sources, &catalog);
    render(&problems);
    // Again on its own, as when a run resumes on the workflow version it started with.
    if let Err(problems) = project.parse_workflow("workflows/fuzz.yaml", text) {
        render(&problems);
    }

    // The text as the project file, beside a workflow that needs its connections.
    let mut sources = Sources::new("weft.yaml", text);
    sources.add_workflow("workflows/card.yaml", WORKFLOW);
    let (_, problems) = Project::load_partial(&sources, &catalog);
    render(&problems);

    // The text as a connector definition, beside the project and workflow that use `http`.
    let mut sources = Sources::new("weft.yaml", PROJECT);
    sources.add_connector("connectors/fuzz.yaml", text);
    sources.add_workflow("workflows/card.yaml", WORKFLOW);
    let (_, problems) = Project::load_partial(&sources, &catalog);
    render(&problems);
});
