//! Inputs the fuzzers (fuzz/) once crashed on; each must keep loading without a panic.

use weft_core::{Catalog, Project, Sources};

/// Reads `input` as YAML, as a workflow file and as `weft.yaml`: diagnostics are fine, a panic
/// is the failure.
fn load(input: &[u8]) {
    let text = std::str::from_utf8(input).expect("the input is UTF-8");
    let _ = weft_core::yaml::parse(text);
    let mut sources = Sources::new("weft.yaml", "name: fuzz\n");
    sources.add_workflow("workflows/fuzz.yaml", text);
    let _ = Project::load_partial(&sources, &Catalog::empty());
    let _ = Project::load_partial(&Sources::new("weft.yaml", text), &Catalog::empty());
}

/// Found by `expr_compile` (through `yaml::parse`): a plain value holding `${{` after a character
/// of more than one byte (`Ι`, U+0399) made the quoting of expressions slice the line inside
/// that character.
#[test]
fn a_multibyte_character_before_an_expression() {
    load(b": \xce\x99${{");
}

/// The same crash as a workflow meets it: any non-ASCII text before `${{ … }}` in an unquoted
/// value. The workflow is valid and must load.
#[test]
fn non_ascii_text_around_an_expression_loads() {
    load(b"map: Gr\xc3\xbc\xc3\x9fe ${{ .input.name }}\n");
    let mut sources = Sources::new("weft.yaml", "name: fuzz\n");
    sources.add_workflow(
        "workflows/greet.yaml",
        "trigger: manual\nsteps:\n  - id: greet\n    map: Grüße, ${{ .input.name }}!\n",
    );
    let project = Project::load(&sources, &Catalog::empty());
    assert!(project.is_ok(), "{:?}", project.err());
}
