//! Micro-benchmarks of jq evaluation: one `map` expression over a 1 KB event, after the program was
//! compiled once (as it is once per workflow version), each under a fresh budget of the default
//! limits (as the engine evaluates), and the compile itself.

use divan::Bencher;
use serde_json::json;
use weft_core::expr::{Budget, EvalLimits};
use weft_core::{Diagnostics, Template, json_to_val, val_to_json};

fn main() {
    divan::main();
}

/// A webhook-sized event of about 1 KB.
fn event() -> serde_json::Value {
    let lines: Vec<_> = (0..8)
        .map(|i| json!({"sku": format!("SKU-{i:04}"), "qty": i + 1, "price": 9.5 + i as f64, "title": "A product with a longer title"}))
        .collect();
    json!({"trigger": {"type": "webhook"}, "input": {"id": 12345, "customer": {"email": "ada@example.com", "name": "Ada Lovelace", "tier": "gold"}, "lines": lines, "note": "Leave at the door, please."}, "steps": {}, "vars": {}, "env": {}})
}

/// A fresh budget with the default limits, as every evaluation gets one.
fn budget() -> Budget {
    Budget::new(EvalLimits::default(), None)
}

fn template(src: &str) -> Template {
    let node = weft_core::yaml::parse(src).expect("valid yaml");
    let mut diags = Diagnostics::new("bench.yaml");
    let t = Template::from_node(&node, &mut diags);
    assert!(diags.is_empty());
    t
}

const MAPPING: &str = "'${{ {id: .input.id, email: .input.customer.email, total: ([.input.lines[] | .qty * .price] | add), skus: [.input.lines[].sku]} }}'";

/// A typical field mapping: pick and rename a few fields of the event.
const PICK: &str = "'${{ {id: .input.id, email: .input.customer.email, name: .input.customer.name, note: .input.note} }}'";

#[divan::bench]
fn jq_pick_fields_1kb_event(bencher: Bencher) {
    let t = template(PICK);
    let ctx = json_to_val(&event());
    bencher.bench(|| {
        t.eval(divan::black_box(&ctx), &budget())
            .expect("evaluates")
    });
}

#[divan::bench]
fn jq_map_1kb_event(bencher: Bencher) {
    let t = template(MAPPING);
    let ctx = json_to_val(&event());
    bencher.bench(|| {
        t.eval(divan::black_box(&ctx), &budget())
            .expect("evaluates")
    });
}

#[divan::bench]
fn jq_map_1kb_event_with_json_conversion(bencher: Bencher) {
    let t = template(MAPPING);
    let event = event();
    bencher.bench(|| {
        let ctx = json_to_val(divan::black_box(&event));
        val_to_json(&t.eval(&ctx, &budget()).expect("evaluates")).expect("converts")
    });
}

#[divan::bench]
fn jq_compile(bencher: Bencher) {
    bencher.bench(|| template(divan::black_box(MAPPING)));
}
