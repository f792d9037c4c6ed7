//! Fuzz target: any UTF-8 text as a jq program and as a string holding `${{ … }}` templates,
//! compiled the ways a workflow compiles them.
//!
//! Only compiling: a program is never run, since a jq program may loop forever by design. Compiling
//! must end in a program or an error, never in a panic or a stack overflow (the core bounds the
//! size and nesting of expressions for that).

#![no_main]

use libfuzzer_sys::fuzz_target;
use weft_core::expr::{Program, step_refs};
use weft_core::yaml::{self, Kind, Node, Pos, Str};
use weft_core::{Diagnostics, Expr, Template};

/// A YAML string node holding `value`, as the YAML reader makes one.
fn string_node(value: String) -> Node {
    Node {
        pos: Pos::new(1, 1),
        kind: Kind::Str(Str {
            value,
            expr_pos: Vec::new(),
        }),
    }
}

/// Reads `node` as a template and as a step's single-expression field (such as `if`).
fn templates(node: &Node, diags: &mut Diagnostics) {
    let template = Template::from_node(node, diags);
    for e in template.exprs() {
        std::hint::black_box(e.step_refs());
    }
    std::hint::black_box(template.literal_keys());
    std::hint::black_box(Template::expr_from_node(node, "`if`", diags));
}

fuzz_target!(|data: &[u8]| {
    let Ok(code) = std::str::from_utf8(data) else {
        return;
    };

    // A bare program, as test files' expectations are written.
    if Program::compile(code).is_ok() {
        // The workflow checks read the step ids of every program that compiled.
        std::hint::black_box(step_refs(code));
    }
    let mut diags = Diagnostics::new("workflows/fuzz.yaml");
    if let Some(e) = Expr::parse_bare(code, Pos::new(1, 1), &mut diags) {
        std::hint::black_box(e.step_refs());
    }

    // The text as a string value that may hold `${{ … }}`, and wrapped as one expression.
    templates(&string_node(code.to_string()), &mut diags);
    templates(&string_node(format!("${{{{ {code} }}}}")), &mut diags);

    // The text as a YAML value, so that expressions written unquoted in a file are read too.
    if let Ok(node) = yaml::parse(code) {
        templates(&node, &mut diags);
    }

    for d in diags.into_vec() {
        std::hint::black_box(d.to_string());
    }
});
