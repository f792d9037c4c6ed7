//! Micro-benchmarks of reading a project: the bench harness's relay workflow (a `map` and an HTTP
//! step) and a 20-step chain, each with its project file, from text to a checked [`Project`] with
//! every expression compiled, against the real connector catalog, as `weft serve` does on start and
//! on every reload. (It lives here rather than in weft-core because the catalog is
//! weft-connectors', which the core must not depend on.)

use weft_core::{Catalog, Project, Sources};

fn main() {
    divan::main();
}

const PROJECT: &str =
    "name: bench\nconnections:\n  sink:\n    type: http\n    base_url: http://127.0.0.1:9\n";

const RELAY: &str = "trigger: webhook\nsteps:\n  - id: shape\n    map: ${{ {id: .input.id, customer: .input.customer.email, total: ([.input.items[].price] | add)} }}\n  - id: post\n    uses: sink.request\n    with: { method: POST, path: /relay, body: \"${{ .steps.shape }}\" }\n";

fn chain() -> String {
    let mut text =
        String::from("trigger: webhook\nsteps:\n  - id: s1\n    map: ${{ .input.n + 1 }}\n");
    for i in 2..=20 {
        text.push_str(&format!(
            "  - id: s{i}\n    map: ${{{{ .steps.s{} + 1 }}}}\n",
            i - 1
        ));
    }
    text
}

fn load(workflow: &str, catalog: &Catalog) -> Project {
    let mut sources = Sources::new("weft.yaml", PROJECT);
    sources.add_workflow("workflows/w.yaml", workflow.to_string());
    Project::load(&sources, catalog).expect("the bench project is valid")
}

#[divan::bench]
fn parse_relay_workflow(bencher: divan::Bencher) {
    let catalog = weft_connectors::catalog();
    bencher.bench(|| load(divan::black_box(RELAY), &catalog));
}

#[divan::bench]
fn parse_chain_of_20_maps(bencher: divan::Bencher) {
    let catalog = weft_connectors::catalog();
    let text = chain();
    bencher.bench(|| load(divan::black_box(&text), &catalog));
}
