//! jq expressions (`${{ … }}`) and the templates that hold them, on the jaq implementation.
//!
//! A [`Program`] is one jq program compiled once, when its workflow version is loaded, and run for
//! every event. A [`Template`] is a YAML value in which strings may hold `${{ … }}`: a string that is
//! exactly one expression takes the expression's JSON value, and expressions inside longer strings are
//! interpolated as text (strings as they are, everything else as compact JSON, like jq's `\(…)`).
//!
//! Expressions see the run context as their input (`{trigger, input, steps, vars, run, env}`), never
//! the process environment: jaq's `env` and `halt` are replaced by errors, and `debug`/`stderr` write
//! nothing, so run data cannot leak into logs through them.
//!
//! Every evaluation runs under a [`Budget`] (time, memory, stack, cancellation; `budget.rs`): no
//! program, whatever its input, can loop, recurse or allocate past it. The natives that could are
//! replaced or guarded (`natives.rs`), and the operators that could are rewritten to guarded calls
//! before the program is compiled (`rewrite.rs`). The allocation meter that measures memory is
//! `meter.rs`.

mod budget;
#[cfg(test)]
mod limit_tests;
mod meter;
mod natives;
mod rewrite;

use std::sync::{Arc, OnceLock};

use jaq_core::load::parse::{Def, Term};
use jaq_core::load::{Arena, File, Loader};
use jaq_core::{Ctx, Vars};
use jaq_json::Num;
use serde_json::Value;

use crate::diag::Diagnostics;
use crate::yaml::{Kind, Node, Pos};

pub use budget::{Budget, EvalLimits, Limit, MAX_JSON_DEPTH};
pub use meter::{Metered, live_bytes};
use natives::{Env, Eval};

/// The value type jq programs work on.
pub use jaq_json::Val;
/// The map type of [`Val`] objects.
pub type ValMap = jaq_json::Map<Val, Val>;

/// Opens an expression inside a string.
const OPEN: &str = "${{";
/// Closes an expression.
const CLOSE: &str = "}}";

/// Longest error message an expression's failure carries, in characters.
const MAX_MESSAGE_CHARS: usize = 2000;

/// The name the program of an expression is compiled under (see [`Program::compile`]).
const MAIN: &str = "__weft_main__";

/// A compiled jq program.
#[derive(Clone)]
pub struct Program {
    filter: Arc<jaq_core::Filter<Eval>>,
}

impl std::fmt::Debug for Program {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Program")
    }
}

/// A jq syntax or compile error, with the byte offset in the program where it was found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CompileError {
    /// Byte offset in the program text.
    pub offset: usize,
    /// jaq's description of the problem.
    pub message: String,
    /// The program is refused for its size, not for its syntax.
    pub too_large: bool,
}

/// Why running a program gave no value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RunError {
    /// The program failed (jq's `error`, a type error, …).
    Failed(String),
    /// The program passed a limit of its budget and was stopped.
    Limit(Limit),
}

/// A program shortened for messages: at most 60 characters.
fn shorten(code: &str) -> String {
    if code.chars().count() <= 60 {
        code.to_string()
    } else {
        format!("{}…", code.chars().take(59).collect::<String>())
    }
}

/// The largest char boundary of `s` at or before `i`.
fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// The definitions of the standard library, parsed once per process (parsing them is most of the
/// cost of compiling a small program), with Weft's guarded definitions in front of the library
/// definitions that use them.
fn library_defs() -> &'static [Def] {
    static DEFS: OnceLock<Vec<Def>> = OnceLock::new();
    DEFS.get_or_init(|| {
        let mut guarded: Vec<Def> = jaq_core::load::parse(natives::GUARDED_DEFS, |p| p.defs())
            .expect("Weft's definitions parse");
        for def in &mut guarded {
            rewrite::rename_calls(&mut def.body);
        }
        let mut defs: Vec<Def> = jaq_core::defs()
            .chain(guarded)
            .chain(jaq_std::defs())
            .chain(jaq_json::defs())
            .collect();
        for def in &mut defs {
            rewrite::guard_operators(&mut def.body);
        }
        defs
    })
}

/// Most bytes one expression may hold.
pub const MAX_EXPRESSION_BYTES: usize = 16 * 1024;
/// Most tokens one expression may hold. jaq parses, compiles and runs programs recursively, so a
/// bound on their size is a bound on the stack they need; workflows split larger logic across steps.
pub const MAX_EXPRESSION_TOKENS: usize = 1000;
/// Deepest nesting of brackets, parentheses, braces and string interpolations in one expression.
pub const MAX_EXPRESSION_NESTING: usize = 64;

/// Checks that a program is small enough to compile and run without exhausting the stack. Scans
/// without recursion, so hostile input cannot exhaust it either.
fn check_size(code: &str) -> Result<(), CompileError> {
    let too_big = |offset: usize, message: String| {
        Err(CompileError {
            offset,
            message,
            too_large: true,
        })
    };
    if code.len() > MAX_EXPRESSION_BYTES {
        return too_big(
            0,
            format!(
                "the expression is {} bytes long, more than the {MAX_EXPRESSION_BYTES} allowed; split it across steps",
                code.len()
            ),
        );
    }
    let bytes = code.as_bytes();
    let (mut tokens, mut depth, mut i) = (0usize, 0usize, 0usize);
    // Open string literals, each with the nesting depth at which it started.
    let mut strings: Vec<usize> = Vec::new();
    while i < bytes.len() {
        let c = bytes[i];
        if strings.last() == Some(&depth) {
            // Inside a string literal.
            match c {
                b'\\' if bytes.get(i + 1) == Some(&b'(') => {
                    depth += 1;
                    i += 2;
                    if depth > MAX_EXPRESSION_NESTING {
                        return too_big(
                            i,
                            format!(
                                "the expression nests more than {MAX_EXPRESSION_NESTING} levels deep"
                            ),
                        );
                    }
                    continue;
                }
                b'\\' => i += 1,
                b'"' => {
                    strings.pop();
                }
                _ => {}
            }
            i += 1;
            continue;
        }
        match c {
            b'"' => {
                strings.push(depth);
                tokens += 1;
            }
            b'(' | b'[' | b'{' => {
                depth += 1;
                tokens += 1;
                if depth > MAX_EXPRESSION_NESTING {
                    return too_big(
                        i,
                        format!(
                            "the expression nests more than {MAX_EXPRESSION_NESTING} levels deep"
                        ),
                    );
                }
            }
            b')' | b']' | b'}' => depth = depth.saturating_sub(1),
            c if c.is_ascii_whitespace() => {}
            c if c.is_ascii_alphanumeric() || matches!(c, b'_' | b'$' | b'@' | b'.') => {
                tokens += 1;
                while i + 1 < bytes.len()
                    && (bytes[i + 1].is_ascii_alphanumeric() || matches!(bytes[i + 1], b'_' | b'.'))
                {
                    i += 1;
                }
            }
            _ => tokens += 1,
        }
        if tokens > MAX_EXPRESSION_TOKENS {
            return too_big(
                i,
                format!(
                    "the expression has more than {MAX_EXPRESSION_TOKENS} tokens; split it across steps"
                ),
            );
        }
        i += 1;
    }
    Ok(())
}

impl Program {
    /// Compiles a jq program. The operators that could make values far larger than their operands
    /// are rewritten to guarded calls first; the rewritten program is compiled as a definition
    /// (named [`MAIN`]) at the end of the library, and the program text that is loaded only calls
    /// it, since jaq's loader takes text, not parsed programs.
    pub fn compile(code: &str) -> Result<Program, CompileError> {
        check_size(code)?;
        let arena = Arena::default();
        let Some(mut term) = jaq_core::load::parse(code, |p| p.term()) else {
            // Not a plain program: the loader says where and why.
            let loader = Loader::new(library_defs().iter().cloned());
            return Err(match loader.load(&arena, File { code, path: () }) {
                Err(errs) => load_error(code, errs),
                Ok(_) => CompileError {
                    offset: 0,
                    message: "modules, imports and includes are not available in Weft expressions"
                        .into(),
                    too_large: false,
                },
            });
        };
        rewrite::guard_operators(&mut term);
        let main: Def<&str> = Def {
            name: MAIN,
            args: Vec::new(),
            body: term,
        };
        let library = library_defs().iter().cloned();
        let loader = Loader::new(library.chain(std::iter::once(main)));
        let modules = loader
            .load(
                &arena,
                File {
                    code: MAIN,
                    path: (),
                },
            )
            .map_err(|errs| load_error(code, errs))?;
        let filter = jaq_core::Compiler::default()
            .with_funs(natives::all())
            .compile(modules)
            .map_err(|errs| {
                let (offset, message) = errs
                    .into_iter()
                    .flat_map(|(_, e)| e)
                    .map(|(name, undefined)| {
                        let what = match undefined {
                            jaq_core::compile::Undefined::Var => {
                                format!("undefined variable `{name}`")
                            }
                            jaq_core::compile::Undefined::Filter(arity) => {
                                format!("undefined function `{name}/{arity}`")
                            }
                            jaq_core::compile::Undefined::Label => {
                                format!("undefined label `{name}`")
                            }
                            _ => format!("undefined module `{name}`"),
                        };
                        (offset_in(code, name), what)
                    })
                    .next()
                    .unwrap_or((0, "invalid program".into()));
                CompileError {
                    offset,
                    message,
                    too_large: false,
                }
            })?;
        Ok(Program {
            filter: Arc::new(filter),
        })
    }

    /// Runs the program on `input` under `budget` and returns its single value: no output is
    /// `null`, several outputs are an error (collect them with `[ … ]`).
    pub fn run(&self, input: Val, budget: &Budget) -> Result<Val, RunError> {
        let env = Env {
            lut: &self.filter.lut,
            budget,
        };
        // An error's message may quote a value: only its beginning is written.
        let message = |e: &jaq_core::Error<Val>| natives::capped(e, MAX_MESSAGE_CHARS);
        let ran = budget.run(|| {
            let ctx = Ctx::<Eval>::new(env, Vars::new([]));
            let mut outputs = self.filter.id.run((ctx, input)).map(jaq_core::unwrap_valr);
            let first = match outputs.next() {
                None => return Ok(Val::Null),
                Some(Ok(v)) => v,
                Some(Err(e)) => return Err(message(&e)),
            };
            let result = match outputs.next() {
                None => Ok(first),
                Some(Err(e)) => Err(message(&e)),
                Some(Ok(_)) => Err(
                    "the expression produced more than one value; collect them with [ … ] or pick one with first(…)"
                        .into(),
                ),
            };
            if let Ok(value) = &result {
                natives::check_output(value, budget);
            }
            result
        });
        match ran {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(message)) => Err(RunError::Failed(message)),
            Err(budget::Stop::Limit(limit)) => Err(RunError::Limit(limit)),
            Err(budget::Stop::Panic(message)) => Err(RunError::Failed(format!(
                "the expression stopped inside jaq: {message}"
            ))),
        }
    }
}

fn offset_in(whole: &str, part: &str) -> usize {
    let start = part.as_ptr() as usize;
    let base = whole.as_ptr() as usize;
    if start >= base && start <= base + whole.len() {
        start - base
    } else {
        0
    }
}

fn load_error(code: &str, errs: jaq_core::load::Errors<&str, ()>) -> CompileError {
    use jaq_core::load::Error;
    for (_, err) in errs {
        match err {
            Error::Lex(errs) => {
                if let Some((expect, found)) = errs.into_iter().next() {
                    return CompileError {
                        offset: offset_in(code, found),
                        message: format!("expected {}", expect.as_str()),
                        too_large: false,
                    };
                }
            }
            Error::Parse(errs) => {
                if let Some((expect, found)) = errs.into_iter().next() {
                    let found_text = if found.is_empty() {
                        "end of expression".to_string()
                    } else {
                        format!("`{}`", shorten(found))
                    };
                    return CompileError {
                        offset: offset_in(code, found),
                        message: format!("expected {}, found {found_text}", expect.as_str()),
                        too_large: false,
                    };
                }
            }
            Error::Io(errs) => {
                if let Some((path, msg)) = errs.into_iter().next() {
                    return CompileError {
                        offset: offset_in(code, path),
                        message: format!("cannot import `{path}`: {msg}"),
                        too_large: false,
                    };
                }
            }
        }
    }
    CompileError {
        offset: 0,
        message: "invalid program".into(),
        too_large: false,
    }
}

/// One `${{ … }}` expression of a workflow, with its source text and position.
#[derive(Clone, Debug)]
pub struct Expr {
    /// The jq program between `${{` and `}}`, trimmed.
    pub code: String,
    /// Where `${{` starts in the file.
    pub pos: Pos,
    program: Program,
}

/// A runtime failure of an expression: the program and jq's message, or the limit that stopped it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("expression `${{{{ {} }}}}` {}: {message}", shorten(code), if limit.is_some() { "was stopped" } else { "failed" })]
pub struct EvalError {
    /// The program that failed.
    pub code: String,
    /// What jq reported, or which limit stopped it and why.
    pub message: String,
    /// The limit that stopped the program, when one did (the failure is then not the program's
    /// own: a `try` in it could not catch it).
    pub limit: Option<Limit>,
}

impl EvalError {
    fn new(code: &str, error: RunError) -> EvalError {
        match error {
            RunError::Failed(message) => EvalError {
                code: code.to_string(),
                message,
                limit: None,
            },
            RunError::Limit(limit) => EvalError {
                code: code.to_string(),
                message: limit.to_string(),
                limit: Some(limit),
            },
        }
    }
}

impl Expr {
    /// Compiles `code` found at `pos`, reporting syntax errors at their position inside the string.
    fn compile(code: &str, pos: Pos, code_start: Pos, diags: &mut Diagnostics) -> Option<Expr> {
        match Program::compile(code) {
            Ok(program) => Some(Expr {
                code: code.trim().to_string(),
                pos,
                program,
            }),
            Err(e) => {
                let what = if e.too_large {
                    "invalid expression"
                } else {
                    "jq syntax error in"
                };
                let offset = floor_char_boundary(code, e.offset.min(code.len()));
                diags.error(
                    advance(code_start, &code[..offset]),
                    format!(
                        "{what} `${{{{ {} }}}}`: {}",
                        shorten(code.trim()),
                        e.message
                    ),
                );
                None
            }
        }
    }

    /// Compiles a bare jq program (not wrapped in `${{ }}`), as test expectations use.
    pub fn parse_bare(code: &str, pos: Pos, diags: &mut Diagnostics) -> Option<Expr> {
        Expr::compile(code, pos, pos, diags)
    }

    /// Runs the expression on the run context, under `budget`.
    pub fn eval(&self, context: &Val, budget: &Budget) -> Result<Val, EvalError> {
        self.program
            .run(context.clone(), budget)
            .map_err(|e| EvalError::new(&self.code, e))
    }

    /// Evaluates the expression as a condition: jq truthiness (everything but `false` and `null`).
    pub fn eval_bool(&self, context: &Val, budget: &Budget) -> Result<bool, EvalError> {
        Ok(!matches!(
            self.eval(context, budget)?,
            Val::Null | Val::Bool(false)
        ))
    }

    /// The names of the steps this expression reads through `.steps.<id>`.
    pub fn step_refs(&self) -> Vec<String> {
        step_refs(&self.code)
    }
}

/// Moves a position forward over `text`.
fn advance(mut pos: Pos, text: &str) -> Pos {
    for c in text.chars() {
        if c == '\n' {
            pos.line += 1;
            pos.col = 1;
        } else {
            pos.col += 1;
        }
    }
    pos
}

/// A YAML value in which strings may hold expressions.
#[derive(Clone, Debug)]
pub enum Template {
    /// A value without expressions.
    Const(Val),
    /// A string that is exactly one expression: its JSON value.
    Expr(Arc<Expr>),
    /// A string with embedded expressions: text.
    Text(Vec<Segment>),
    /// A list with expressions inside.
    List(Vec<Template>),
    /// A mapping with expressions inside.
    Object(Vec<(String, Template)>),
}

/// A piece of an interpolated string.
#[derive(Clone, Debug)]
pub enum Segment {
    /// Literal text.
    Lit(String),
    /// An expression whose value is rendered as text.
    Expr(Arc<Expr>),
}

impl Template {
    /// Reads a template from a YAML node, reporting unclosed or invalid expressions.
    pub fn from_node(node: &Node, diags: &mut Diagnostics) -> Template {
        match &node.kind {
            Kind::Str(s) if s.value.contains(OPEN) => {
                Template::from_str(&s.value, node.pos, &s.expr_pos, diags)
            }
            Kind::Seq(items) => {
                let items: Vec<Template> = items
                    .iter()
                    .map(|n| Template::from_node(n, diags))
                    .collect();
                if items.iter().all(|t| matches!(t, Template::Const(_))) {
                    Template::Const(json_to_val(&node.to_json()))
                } else {
                    Template::List(items)
                }
            }
            Kind::Map(entries) => {
                let entries: Vec<(String, Template)> = entries
                    .iter()
                    .map(|(k, v)| (k.name.clone(), Template::from_node(v, diags)))
                    .collect();
                if entries.iter().all(|(_, t)| matches!(t, Template::Const(_))) {
                    Template::Const(json_to_val(&node.to_json()))
                } else {
                    Template::Object(entries)
                }
            }
            _ => Template::Const(json_to_val(&node.to_json())),
        }
    }

    /// Reads a string that must be exactly one expression (such as a step's `if`).
    pub fn expr_from_node(node: &Node, what: &str, diags: &mut Diagnostics) -> Option<Arc<Expr>> {
        match Template::from_node(node, diags) {
            Template::Expr(e) => Some(e),
            Template::Const(_) if !matches!(node.kind, Kind::Str(ref s) if s.value.contains(OPEN)) =>
            {
                diags.error(
                    node.pos,
                    format!(
                        "{what} must be one expression, such as `${{{{ .input.total > 100 }}}}`"
                    ),
                );
                None
            }
            Template::Const(_) => None, // The expression was invalid and is already reported.
            _ => {
                diags.error(
                    node.pos,
                    format!("{what} must be exactly one `${{{{ … }}}}` expression, without text around it"),
                );
                None
            }
        }
    }

    fn from_str(text: &str, pos: Pos, expr_pos: &[Pos], diags: &mut Diagnostics) -> Template {
        let mut segments = Vec::new();
        let mut rest = text;
        let mut index = 0;
        let mut failed = false;
        while let Some(start) = rest.find(OPEN) {
            let opener = expr_pos.get(index).copied().unwrap_or(pos);
            index += 1;
            if start > 0 {
                segments.push(Segment::Lit(rest[..start].to_string()));
            }
            let body = &rest[start + OPEN.len()..];
            let Some(end) = find_close(body) else {
                diags.error(opener, "unclosed `${{`; end the expression with `}}`");
                return Template::Const(Val::Null);
            };
            let code = &body[..end];
            if code.trim().is_empty() {
                diags.error(opener, "empty expression `${{ }}`");
                failed = true;
            } else {
                let code_start = Pos::new(opener.line, opener.col + OPEN.chars().count() as u32);
                match Expr::compile(code, opener, code_start, diags) {
                    Some(e) => segments.push(Segment::Expr(Arc::new(e))),
                    None => failed = true,
                }
            }
            rest = &body[end + CLOSE.len()..];
        }
        if !rest.is_empty() {
            segments.push(Segment::Lit(rest.to_string()));
        }
        if failed {
            return Template::Const(Val::Null);
        }
        let only_expr = text.trim().starts_with(OPEN)
            && text.trim().ends_with(CLOSE)
            && segments
                .iter()
                .filter(|s| matches!(s, Segment::Expr(_)))
                .count()
                == 1
            && segments.iter().all(|s| {
                matches!(s, Segment::Expr(_)) || matches!(s, Segment::Lit(l) if l.trim().is_empty())
            });
        if only_expr {
            if let Some(Segment::Expr(e)) =
                segments.into_iter().find(|s| matches!(s, Segment::Expr(_)))
            {
                return Template::Expr(e);
            }
            unreachable!("one expression was counted");
        }
        Template::Text(segments)
    }

    /// Evaluates the template against the run context, every expression in it under `budget`.
    pub fn eval(&self, context: &Val, budget: &Budget) -> Result<Val, EvalError> {
        Ok(match self {
            Template::Const(v) => v.clone(),
            Template::Expr(e) => e.eval(context, budget)?,
            Template::Text(segments) => {
                let mut out = String::new();
                for segment in segments {
                    match segment {
                        Segment::Lit(s) => out.push_str(s),
                        Segment::Expr(e) => match e.eval(context, budget)? {
                            Val::TStr(s) => out.push_str(&String::from_utf8_lossy(&s)),
                            other => out.push_str(
                                &val_to_json(&other)
                                    .map_err(|message| EvalError {
                                        code: e.code.clone(),
                                        message,
                                        limit: None,
                                    })?
                                    .to_string(),
                            ),
                        },
                    }
                }
                Val::from(out)
            }
            Template::List(items) => items
                .iter()
                .map(|t| t.eval(context, budget))
                .collect::<Result<Vec<Val>, _>>()?
                .into_iter()
                .collect(),
            Template::Object(entries) => {
                let mut map = jaq_json::Map::default();
                for (k, t) in entries {
                    map.insert(Val::from(k.clone()), t.eval(context, budget)?);
                }
                Val::obj(map)
            }
        })
    }

    /// Whether evaluating the template runs no expression.
    pub fn is_const(&self) -> bool {
        matches!(self, Template::Const(_))
    }

    /// Every expression in the template, in order.
    pub fn exprs(&self) -> Vec<&Arc<Expr>> {
        let mut out = Vec::new();
        self.collect_exprs(&mut out);
        out
    }

    fn collect_exprs<'a>(&'a self, out: &mut Vec<&'a Arc<Expr>>) {
        match self {
            Template::Const(_) => {}
            Template::Expr(e) => out.push(e),
            Template::Text(segments) => out.extend(segments.iter().filter_map(|s| match s {
                Segment::Expr(e) => Some(e),
                Segment::Lit(_) => None,
            })),
            Template::List(items) => items.iter().for_each(|t| t.collect_exprs(out)),
            Template::Object(entries) => entries.iter().for_each(|(_, t)| t.collect_exprs(out)),
        }
    }

    /// The keys of the template when it is a mapping written out in the file (not computed).
    pub fn literal_keys(&self) -> Option<Vec<&str>> {
        match self {
            Template::Object(entries) => Some(entries.iter().map(|(k, _)| k.as_str()).collect()),
            Template::Const(Val::Obj(map)) => Some(
                map.keys()
                    .filter_map(|k| match k {
                        Val::TStr(s) => std::str::from_utf8(s).ok(),
                        _ => None,
                    })
                    .collect(),
            ),
            _ => None,
        }
    }
}

/// Finds the `}}` that closes an expression, skipping the braces, brackets and strings of the jq
/// code, so that `${{ {a: {b: 1}} }}` closes at the last `}}`.
pub(crate) fn find_close(body: &str) -> Option<usize> {
    scan_code(body.as_bytes(), 0, true)
}

/// Scans jq code from `i`. At the top level it returns the index of the closing `}}`; inside a
/// string interpolation `\(…)` it returns the index of the interpolation's `)`.
fn scan_code(b: &[u8], mut i: usize, top: bool) -> Option<usize> {
    let mut depth = 0i32;
    while i < b.len() {
        match b[i] {
            b'}' if top && depth == 0 && b.get(i + 1) == Some(&b'}') => return Some(i),
            b')' if !top && depth == 0 => return Some(i),
            b'(' | b'[' | b'{' => depth += 1,
            b')' | b']' | b'}' => depth -= 1,
            b'"' => {
                i = scan_string(b, i + 1)?;
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    None
}

/// Scans a string literal whose opening quote is just before `i`; returns the index after its
/// closing quote.
fn scan_string(b: &[u8], mut i: usize) -> Option<usize> {
    while i < b.len() {
        match b[i] {
            b'\\' if b.get(i + 1) == Some(&b'(') => i = scan_code(b, i + 2, false)? + 1,
            b'\\' => i += 2,
            b'"' => return Some(i + 1),
            _ => i += 1,
        }
    }
    None
}

/// The step ids a jq program reads with `.steps.<id>` or `.steps["<id>"]`.
pub fn step_refs(code: &str) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(term) = jaq_core::load::parse(code, |p| p.term()) {
        walk_term(&term, &mut out);
    }
    out.sort();
    out.dedup();
    out
}

fn literal_key<'a>(term: &'a Term<&str>) -> Option<&'a str> {
    use jaq_core::load::lex::StrPart;
    match term {
        Term::Str(None, parts) => match parts.as_slice() {
            [StrPart::Str(s)] => Some(s),
            _ => None,
        },
        _ => None,
    }
}

fn walk_term(term: &Term<&str>, out: &mut Vec<String>) {
    use jaq_core::load::lex::StrPart;
    use jaq_core::path::Part;
    match term {
        Term::Path(base, path) => {
            if matches!(**base, Term::Id) {
                let mut parts = path.0.iter();
                if let (Some((Part::Index(first), _)), Some((Part::Index(second), _))) =
                    (parts.next(), parts.next())
                    && literal_key(first) == Some("steps")
                    && let Some(id) = literal_key(second)
                {
                    out.push(id.to_string());
                }
            }
            walk_term(base, out);
            for (part, _) in &path.0 {
                match part {
                    Part::Index(t) => walk_term(t, out),
                    Part::Range(a, b) => {
                        a.iter().chain(b.iter()).for_each(|t| walk_term(t, out));
                    }
                }
            }
        }
        Term::Str(_, parts) => {
            for part in parts {
                if let StrPart::Term(t) = part {
                    walk_term(t, out);
                }
            }
        }
        Term::Arr(Some(t)) | Term::Neg(t) | Term::Label(_, t) => walk_term(t, out),
        Term::Obj(entries) => {
            for (k, v) in entries {
                walk_term(k, out);
                if let Some(v) = v {
                    walk_term(v, out);
                }
            }
        }
        Term::BinOp(l, _, r) => {
            walk_term(l, out);
            walk_term(r, out);
        }
        Term::Fold(_, a, _, rest) => {
            walk_term(a, out);
            rest.iter().for_each(|t| walk_term(t, out));
        }
        Term::TryCatch(t, c) => {
            walk_term(t, out);
            if let Some(c) = c {
                walk_term(c, out);
            }
        }
        Term::IfThenElse(branches, otherwise) => {
            for (c, t) in branches {
                walk_term(c, out);
                walk_term(t, out);
            }
            if let Some(o) = otherwise {
                walk_term(o, out);
            }
        }
        Term::Def(defs, t) => {
            for d in defs {
                walk_term(&d.body, out);
            }
            walk_term(t, out);
        }
        Term::Call(_, args) => args.iter().for_each(|t| walk_term(t, out)),
        _ => {}
    }
}

/// A short name for the kind of a JSON value, for messages such as "for_each needs a list, got text".
pub fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "text",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

/// Converts JSON to a jq value.
pub fn json_to_val(value: &Value) -> Val {
    match value {
        Value::Null => Val::Null,
        Value::Bool(b) => Val::Bool(*b),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                Val::Num(Num::from_integral(i))
            } else if let Some(u) = n.as_u64() {
                Val::Num(Num::from_integral(u))
            } else {
                Val::Num(Num::Float(n.as_f64().unwrap_or(0.0)))
            }
        }
        Value::String(s) => Val::from(s.clone()),
        Value::Array(items) => items.iter().map(json_to_val).collect(),
        Value::Object(map) => Val::obj(
            map.iter()
                .map(|(k, v)| (Val::from(k.clone()), json_to_val(v)))
                .collect(),
        ),
    }
}

/// Converts a jq value to JSON. Non-finite numbers become `null` (as jq's `tojson` does); byte
/// strings, non-string object keys and nesting deeper than [`MAX_JSON_DEPTH`] are errors.
pub fn val_to_json(value: &Val) -> Result<Value, String> {
    to_json_at(value, 0)
}

fn to_json_at(value: &Val, depth: usize) -> Result<Value, String> {
    if depth > MAX_JSON_DEPTH {
        return Err(format!(
            "the value nests deeper than {MAX_JSON_DEPTH} levels, the most JSON in Weft may nest"
        ));
    }
    Ok(match value {
        Val::Null => Value::Null,
        Val::Bool(b) => Value::Bool(*b),
        Val::Num(n) => num_to_json(n),
        Val::TStr(s) => Value::String(String::from_utf8_lossy(s).into_owned()),
        Val::BStr(_) => {
            return Err(
                "a byte string cannot be converted to JSON; decode it to text first".into(),
            );
        }
        Val::Arr(items) => Value::Array(
            items
                .iter()
                .map(|v| to_json_at(v, depth + 1))
                .collect::<Result<_, _>>()?,
        ),
        Val::Obj(map) => {
            let mut out = serde_json::Map::with_capacity(map.len());
            for (k, v) in map.iter() {
                let Val::TStr(k) = k else {
                    return Err(format!("object keys must be strings in JSON, found {k}"));
                };
                out.insert(
                    String::from_utf8_lossy(k).into_owned(),
                    to_json_at(v, depth + 1)?,
                );
            }
            Value::Object(out)
        }
    })
}

fn num_to_json(n: &Num) -> Value {
    match n {
        Num::Int(i) => Value::from(*i as i64),
        Num::Float(f) => serde_json::Number::from_f64(*f).map_or(Value::Null, Value::Number),
        other => {
            let text = other.to_string();
            if let Ok(i) = text.parse::<i64>() {
                Value::from(i)
            } else if let Ok(u) = text.parse::<u64>() {
                Value::from(u)
            } else {
                text.parse::<f64>()
                    .ok()
                    .and_then(serde_json::Number::from_f64)
                    .map_or(Value::Null, Value::Number)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::yaml;
    use serde_json::json;

    fn budget() -> Budget {
        Budget::new(EvalLimits::default(), None)
    }

    fn template(src: &str) -> (Template, Vec<String>) {
        let node = yaml::parse(src).unwrap();
        let mut diags = Diagnostics::new("t.yaml");
        let t = Template::from_node(&node, &mut diags);
        (t, diags.into_vec().iter().map(|d| d.to_string()).collect())
    }

    fn eval(src: &str, ctx: Value) -> Value {
        let (t, errs) = template(src);
        assert!(errs.is_empty(), "{errs:?}");
        val_to_json(&t.eval(&json_to_val(&ctx), &budget()).unwrap()).unwrap()
    }

    #[test]
    fn whole_value_expressions_yield_json() {
        assert_eq!(eval("'${{ .a + 1 }}'", json!({"a": 1})), json!(2));
        assert_eq!(
            eval("'  ${{ {x: .a} }}  '", json!({"a": [1]})),
            json!({"x": [1]})
        );
        assert_eq!(eval("'${{ empty }}'", json!({})), json!(null));
    }

    #[test]
    fn embedded_expressions_interpolate_text() {
        assert_eq!(
            eval(
                "'/orders/${{ .id }}.json?x=${{ .o }}'",
                json!({"id": 7, "o": {"k": "v"}})
            ),
            json!("/orders/7.json?x={\"k\":\"v\"}")
        );
        assert_eq!(
            eval("'${{ .a }}${{ .b }}'", json!({"a": "x", "b": "y"})),
            json!("xy")
        );
    }

    #[test]
    fn nested_values_keep_structure() {
        assert_eq!(
            eval(
                "{a: [1, '${{ .n }}'], b: 'n=${{ .n }}', c: plain}",
                json!({"n": 5})
            ),
            json!({"a": [1, 5], "b": "n=5", "c": "plain"})
        );
    }

    #[test]
    fn braces_inside_expressions_do_not_close_them() {
        assert_eq!(
            eval("'${{ {a: {b: 1}} }}'", json!({})),
            json!({"a": {"b": 1}})
        );
        assert_eq!(eval("'${{ \"}}\" }}'", json!({})), json!("}}"));
        assert_eq!(
            eval("'${{ \"a\\(.x + 1)}}\" }}'", json!({"x": 1})),
            json!("a2}}")
        );
    }

    #[test]
    fn syntax_errors_point_inside_the_string() {
        let (_, errs) = template("key: \"x ${{ .a | }}\"\n");
        assert_eq!(errs.len(), 1);
        assert!(
            errs[0].starts_with("t.yaml:1:18: jq syntax error in `${{ .a | }}`"),
            "{errs:?}"
        );
        let (_, errs) = template("key: \"${{ nosuch(1) }}\"\n");
        assert!(
            errs[0].contains("undefined function `nosuch/1`"),
            "{errs:?}"
        );
        let (_, errs) = template("key: \"${{ .a \"\n");
        assert!(errs[0].contains("unclosed `${{`"), "{errs:?}");
    }

    #[test]
    fn runtime_errors_carry_the_expression() {
        let (t, _) = template("'${{ .a.b }}'");
        let err = t
            .eval(&json_to_val(&json!({"a": 1})), &budget())
            .unwrap_err();
        assert_eq!(err.code, ".a.b");
        assert!(
            err.to_string()
                .starts_with("expression `${{ .a.b }}` failed: "),
            "{err}"
        );
        let (t, _) = template("'${{ .[] }}'");
        let err = t.eval(&json_to_val(&json!([1, 2])), &budget()).unwrap_err();
        assert!(err.message.contains("more than one value"));
    }

    #[test]
    fn the_environment_is_out_of_reach() {
        let (t, _) = template("'${{ env }}'");
        let err = t.eval(&Val::Null, &budget()).unwrap_err();
        assert!(err.message.contains("not available"), "{}", err.message);
        assert_eq!(eval("'${{ 1 | debug }}'", json!(null)), json!(1));
    }

    #[test]
    fn oversized_programs_are_refused_before_they_reach_jaq() {
        let deep = format!("{}1{}", "[".repeat(100), "]".repeat(100));
        assert!(
            Program::compile(&deep)
                .unwrap_err()
                .message
                .contains("nests more than 64 levels")
        );
        let long = vec!["."; 1500].join(" | ");
        assert!(
            Program::compile(&long)
                .unwrap_err()
                .message
                .contains("more than 1000 tokens")
        );
        let huge = format!("\"{}\"", "x".repeat(20_000));
        assert!(
            Program::compile(&huge)
                .unwrap_err()
                .message
                .contains("bytes long")
        );
        let interpolated = format!("\"{}1{}\"", "\\(".repeat(70), ")".repeat(70));
        assert!(
            Program::compile(&interpolated)
                .unwrap_err()
                .message
                .contains("nests more than")
        );
        // Programs of ordinary size pass, strings with brackets inside included.
        let fields: Vec<String> = (0..100).map(|i| format!("f{i}: .input.f{i}")).collect();
        assert!(Program::compile(&format!("{{{}}}", fields.join(", "))).is_ok());
        assert!(Program::compile(r#""((((" + "[[[[" | length"#).is_ok());
    }

    #[test]
    fn finds_step_references() {
        assert_eq!(
            step_refs(
                ".steps.order.body + (.steps[\"ticket\"] | .id) + [.steps.x?] + \"\\(.steps.y)\""
            ),
            vec!["order", "ticket", "x", "y"]
        );
        assert!(step_refs(".input.steps.order").is_empty());
    }

    #[test]
    fn numbers_round_trip() {
        let v = json!([1, -2, 1.5, 18446744073709551615u64, 9007199254740993i64]);
        assert_eq!(val_to_json(&json_to_val(&v)).unwrap(), v);
    }
}
