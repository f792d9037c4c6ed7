//! The native functions expressions run with: jaq's, with the ones that could reach outside the run
//! context replaced, and the ones that could loop, recurse or allocate without passing a checkpoint
//! guarded by the evaluation's [`Budget`].
//!
//! - Replaced outright: `env` and `halt` (errors), `debug`/`stderr` (silent), `range/3`,
//!   `path`/`path_value` and `..` ([`RECURSE`]) (the same streams, with a checkpoint per value:
//!   they are loops inside one native call), `fromjson` (read through serde_json with its nesting
//!   limit, a checkpoint per value), `tojson` and the text of a string interpolation ([`TEXT`])
//!   (written under the budget: a value may hold one part many times and its text every copy),
//!   the comparisons and `indices` and `contains` (a checkpoint per pair of values compared).
//! - Guarded, then run as jaq has them: `matches`, `split_matches`, `split_` (the regular-expression
//!   family: the matches are counted first and their result reserved against the memory limit) and
//!   `explode`. The originals are registered under names no program can write (with spaces), and
//!   jq definitions under the usual names call the guard, then the original ([`GUARDED_DEFS`]).
//! - The operators `*` and `/` become calls of [`MUL`] and [`DIV`] (see `rewrite.rs`): a string
//!   repeated or split, and a big integer multiplied, are sized before they are made.
//!
//! Each replacement gives what jaq's own gives (`limit_tests.rs` compares them).

use jaq_core::box_iter::{BoxIter, box_once};
use jaq_core::native::{Fun, bome, v};
use jaq_core::ops::Cmp;
use jaq_core::{Bind, Ctx, DataT, Error, Exn, Native, ValT, ValXs};
use jaq_json::{Num, Val};

use super::budget::{Budget, Limit, MAX_JSON_DEPTH};

/// The data type expressions run on: jaq's JSON values, and an [`Env`] as global data.
pub(crate) struct Eval;

impl DataT for Eval {
    type V<'a> = Val;
    type Data<'a> = Env<'a>;
}

/// What every execution context carries: the program and the budget. jaq clones it on every
/// function call, pipe, binding and loop turn; each clone is a checkpoint.
pub(crate) struct Env<'a> {
    pub(crate) lut: &'a jaq_core::Lut<Eval>,
    pub(crate) budget: &'a Budget,
}

impl Clone for Env<'_> {
    #[inline]
    fn clone(&self) -> Self {
        self.budget.tick();
        Env {
            lut: self.lut,
            budget: self.budget,
        }
    }
}

impl<'a> jaq_core::data::HasLut<'a, Eval> for Env<'a> {
    fn lut(&self) -> &'a jaq_core::Lut<Eval> {
        self.lut
    }
}

/// The function `*` calls: `l * r` as jaq computes it, sized first.
pub(crate) const MUL: &str = "weft mul";
/// The function `/` calls.
pub(crate) const DIV: &str = "weft div";
/// The function `..` calls: jq's `recurse`, a checkpoint per value.
pub(crate) const RECURSE: &str = "weft recurse";

/// The function a comparison `l op r` calls, by operator.
pub(crate) fn compare_name(op: &Cmp) -> &'static str {
    match op {
        Cmp::Eq => "weft ==",
        Cmp::Ne => "weft !=",
        Cmp::Lt => "weft <",
        Cmp::Le => "weft <=",
        Cmp::Gt => "weft >",
        Cmp::Ge => "weft >=",
    }
}

/// The function a string interpolation `\(f)` calls on `f`'s values: jq's text form of a value,
/// written under the budget.
pub(crate) const TEXT: &str = "weft text";

/// Bytes counted for each string a split or a match makes (the value, its box and its bytes'
/// handle), and for each match object.
const PIECE_BYTES: u64 = 96;
const MATCH_BYTES: u64 = 640;
const GROUP_BYTES: u64 = 384;
/// Bytes counted per character that `explode` makes a number of.
const CHAR_BYTES: u64 = 32;

/// jq definitions that put a guard in front of a native (names are rewritten to the guarded
/// natives' unwritable names by [`rename_guarded`]).
pub(crate) const GUARDED_DEFS: &str = r#"
def matches($re; $flags): _weft_guard_regex($re; $flags) | _weft_raw_matches($re; $flags);
def split_matches($re; $flags): _weft_guard_regex($re; $flags) | _weft_raw_split_matches($re; $flags);
def split_($re; $flags): _weft_guard_regex($re; $flags) | _weft_raw_split_($re; $flags);
def explode: _weft_guard_explode | _weft_raw_explode;
"#;

/// The unwritable name of a name in [`GUARDED_DEFS`].
pub(crate) fn rename_guarded(name: &str) -> Option<&'static str> {
    Some(match name {
        "_weft_guard_regex" => "weft guard regex",
        "_weft_guard_explode" => "weft guard explode",
        "_weft_raw_matches" => "weft raw matches",
        "_weft_raw_split_matches" => "weft raw split_matches",
        "_weft_raw_split_" => "weft raw split_",
        "_weft_raw_explode" => "weft raw explode",
        _ => return None,
    })
}

fn budget<'a>(ctx: &Ctx<'a, Eval>) -> &'a Budget {
    ctx.data().budget
}

fn fail<'a>(message: impl std::fmt::Display) -> ValXs<'a, Val> {
    box_once(Err(Exn::from(Error::str(message))))
}

/// The native functions, jaq's with Weft's replacements, renames and additions.
pub(crate) fn all() -> impl Iterator<Item = Fun<Eval>> {
    let jaq = jaq_core::funs::<Eval>()
        .chain(jaq_std::funs::<Eval>())
        .chain(jaq_json::funs::<Eval>())
        .filter_map(|(name, args, native)| {
            let replaced = matches!(
                (name, args.len()),
                ("env" | "halt" | "debug_empty" | "stderr_empty", _)
                    | ("range", 3)
                    | (
                        "path" | "path_value" | "fromjson" | "tojson" | "indices" | "contains",
                        _
                    )
            );
            if replaced {
                return None;
            }
            let name = match name {
                "matches" => "weft raw matches",
                "split_matches" => "weft raw split_matches",
                "split_" => "weft raw split_",
                "explode" => "weft raw explode",
                other => other,
            };
            Some((name, args, native))
        });
    jaq.chain(replacements())
}

fn f() -> Box<[Bind]> {
    [Bind::Fun(())].into()
}

fn replacements() -> Vec<Fun<Eval>> {
    vec![
        (
            "env",
            v(0),
            Native::new(|_| {
                fail(
                    "`env` is not available in Weft expressions; use `.env`, which holds the variables listed under `env:` in weft.yaml",
                )
            }),
        ),
        (
            "halt",
            v(1),
            Native::new(|_| {
                fail("`halt` is not available in Weft expressions; use `error(…)` to fail")
            }),
        ),
        (
            "debug_empty",
            v(0),
            Native::new(|_| Box::new(std::iter::empty())),
        ),
        (
            "stderr_empty",
            v(0),
            Native::new(|_| Box::new(std::iter::empty())),
        ),
        ("range", v(3), Native::new(|cv| range(cv))),
        ("path", f(), Native::new(|cv| path(cv))),
        ("path_value", f(), Native::new(|cv| path_value(cv))),
        ("fromjson", v(0), Native::new(|cv| fromjson(cv))),
        ("tojson", v(0), Native::new(|cv| tojson(cv))),
        (TEXT, v(0), Native::new(|cv| text(cv))),
        ("indices", v(1), Native::new(|cv| indices(cv))),
        ("contains", v(1), Native::new(|cv| contains(cv))),
        (MUL, v(2), Native::new(|cv| mul(cv))),
        (
            RECURSE,
            v(0),
            Native::new(|cv| recurse(cv))
                .with_paths(|cv| {
                    let budget = budget(&cv.0);
                    let mut stack = vec![vec![cv.1].into_iter()];
                    Box::new(std::iter::from_fn(move || {
                        loop {
                            let top = stack.last_mut()?;
                            let Some((value, path)) = top.next() else {
                                stack.pop();
                                continue;
                            };
                            budget.tick();
                            if matches!(value, Val::Arr(_) | Val::Obj(_)) {
                                let children: Vec<_> = value
                                    .clone()
                                    .key_values()
                                    .filter_map(Result::ok)
                                    .map(|(k, child)| (child, path.clone().cons(k)))
                                    .collect();
                                stack.push(children.into_iter());
                            }
                            return Some(Ok((value, path)));
                        }
                    }))
                })
                .with_update(|cv, f| recurse_update(cv.1, &*f, budget(&cv.0))),
        ),
        ("weft ==", v(2), Native::new(|cv| compare(cv, Cmp::Eq))),
        ("weft !=", v(2), Native::new(|cv| compare(cv, Cmp::Ne))),
        ("weft <", v(2), Native::new(|cv| compare(cv, Cmp::Lt))),
        ("weft <=", v(2), Native::new(|cv| compare(cv, Cmp::Le))),
        ("weft >", v(2), Native::new(|cv| compare(cv, Cmp::Gt))),
        ("weft >=", v(2), Native::new(|cv| compare(cv, Cmp::Ge))),
        (DIV, v(2), Native::new(|cv| div(cv))),
        ("weft guard regex", v(2), Native::new(|cv| guard_regex(cv))),
        (
            "weft guard explode",
            v(0),
            Native::new(|cv| guard_explode(cv)),
        ),
    ]
}

/// `range($from; $upto; $by)`: the values from `$from` by `$by` while they have not passed
/// `$upto` (for ever when `$by` is 0 and `$from` is not `$upto`), with a checkpoint per value.
fn range(mut cv: jaq_core::Cv<'_, Eval>) -> ValXs<'_, Val> {
    use std::cmp::Ordering::{Equal, Greater, Less};
    let budget = budget(&cv.0);
    let by = cv.0.pop_var();
    let to = cv.0.pop_var();
    let from = cv.0.pop_var();
    let direction = by.partial_cmp(&Val::from(0isize)).unwrap_or(Equal);
    let mut next: Option<Result<Val, Exn<Val>>> = Some(Ok(from));
    Box::new(std::iter::from_fn(move || {
        budget.tick();
        match next.take()? {
            Ok(x) => {
                let go_on = match direction {
                    Greater => x < to,
                    Less => x > to,
                    Equal => x != to,
                };
                if !go_on {
                    return None;
                }
                next = Some((x.clone() + by.clone()).map_err(Exn::from));
                Some(Ok(x))
            }
            Err(e) => Some(Err(e)),
        }
    }))
}

/// `path(f)`: the paths of `f`'s outputs, with a checkpoint per path (each is as long as the value
/// is deep, so a long stream of them on a deep value must be bounded).
fn path(mut cv: jaq_core::Cv<'_, Eval>) -> ValXs<'_, Val> {
    let budget = budget(&cv.0);
    let (f, fc) = cv.0.pop_fun();
    Box::new(f.paths((fc, (cv.1, Default::default()))).map(move |vp| {
        budget.tick();
        let (_value, path) = vp?;
        let parts: Vec<Val> = path.iter().cloned().collect();
        Ok(parts.into_iter().rev().collect())
    }))
}

/// `path_value(f)`: `[path, value]` of each of `f`'s outputs, with a checkpoint per pair.
fn path_value(mut cv: jaq_core::Cv<'_, Eval>) -> ValXs<'_, Val> {
    let budget = budget(&cv.0);
    let (f, fc) = cv.0.pop_fun();
    Box::new(f.paths((fc, (cv.1, Default::default()))).map(move |vp| {
        budget.tick();
        let (value, path) = vp?;
        let parts: Vec<Val> = path.iter().cloned().collect();
        let path: Val = parts.into_iter().rev().collect();
        Ok([path, value].into_iter().collect())
    }))
}

/// `fromjson`: the JSON text read into a value, at most [`MAX_JSON_DEPTH`] deep, with a
/// checkpoint per value read.
fn fromjson(cv: jaq_core::Cv<'_, Eval>) -> ValXs<'_, Val> {
    let budget = budget(&cv.0);
    let text = match &cv.1 {
        Val::TStr(b) | Val::BStr(b) => b.clone(),
        other => {
            return bome(Err(Error::str(format_args!(
                "fromjson needs text, got {}",
                kind(other)
            ))));
        }
    };
    box_once(read_json(&text, budget).map_err(|message| {
        Exn::from(Error::str(format_args!(
            "cannot parse {} as JSON: {message}",
            short(&cv.1)
        )))
    }))
}

/// A value for messages: its JSON, cut to 40 characters.
fn short(value: &Val) -> String {
    capped(value, 40)
}

/// What `value` displays as (jaq's Display, so an error's message too), cut to `max` characters.
/// Writing stops once it has that many, so a value whose whole text would be enormous costs no
/// more than its first characters.
pub(crate) fn capped(value: &impl std::fmt::Display, max: usize) -> String {
    struct Cap {
        out: String,
        left: usize,
        cut: bool,
    }
    impl std::fmt::Write for Cap {
        fn write_str(&mut self, s: &str) -> std::fmt::Result {
            for c in s.chars() {
                if self.left == 0 {
                    self.cut = true;
                    return Err(std::fmt::Error);
                }
                self.out.push(c);
                self.left -= 1;
            }
            Ok(())
        }
    }
    let mut cap = Cap {
        out: String::new(),
        left: max,
        cut: false,
    };
    let _ = std::fmt::write(&mut cap, format_args!("{value}"));
    if cap.cut {
        cap.out.pop();
        cap.out.push('…');
    }
    cap.out
}

/// Writes a value's JSON (jaq's compact form, as `tojson` gives it) under the budget: every
/// piece written is a checkpoint and counts against the memory limit, so a value whose text would
/// be far larger than the value (one that holds the same part many times) is stopped as it grows.
fn write_json(value: &Val, budget: &Budget) -> Vec<u8> {
    struct Sink<'b> {
        out: Vec<u8>,
        budget: &'b Budget,
        checked: usize,
    }
    impl std::io::Write for Sink<'_> {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.out.extend_from_slice(bytes);
            if self.out.len() - self.checked >= 4096 {
                self.checked = self.out.len();
                self.budget.tick();
                self.budget.reserve(self.out.len() as u64);
            }
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut sink = Sink {
        out: Vec::new(),
        budget,
        checked: 0,
    };
    // Writing to a Vec fails only when the budget stops it, which unwinds instead.
    let _ = jaq_json::write::write(&mut sink, &jaq_json::write::Pp::default(), 0, value);
    sink.out
}

/// `tojson`: the value's JSON text, written under the budget.
fn tojson(cv: jaq_core::Cv<'_, Eval>) -> ValXs<'_, Val> {
    let json = write_json(&cv.1, budget(&cv.0));
    box_once(Ok(Val::utf8_str(json)))
}

/// [`TEXT`]: a string as it is, anything else as its JSON text (jq's `tostring`).
fn text(cv: jaq_core::Cv<'_, Eval>) -> ValXs<'_, Val> {
    match cv.1 {
        Val::TStr(s) | Val::BStr(s) => box_once(Ok(Val::TStr(s))),
        other => {
            let json = write_json(&other, budget(&cv.0));
            box_once(Ok(Val::utf8_str(json)))
        }
    }
}

fn kind(value: &Val) -> &'static str {
    match value {
        Val::Null => "null",
        Val::Bool(_) => "a boolean",
        Val::Num(_) => "a number",
        Val::TStr(_) | Val::BStr(_) => "text",
        Val::Arr(_) => "a list",
        Val::Obj(_) => "a mapping",
    }
}

/// Reads one JSON text into a jq value. Nesting deeper than [`MAX_JSON_DEPTH`] stops the
/// evaluation with [`Limit::Depth`]; other problems are errors the program can catch.
pub(crate) fn read_json(text: &[u8], budget: &Budget) -> Result<Val, String> {
    use serde::de::DeserializeSeed;
    let mut de = serde_json::Deserializer::from_slice(text);
    let value = match (ValSeed { budget }).deserialize(&mut de) {
        Ok(value) => value,
        Err(e) if e.to_string().starts_with("recursion limit exceeded") => {
            budget.stop(Limit::Depth)
        }
        Err(e) => return Err(e.to_string()),
    };
    de.end().map_err(|e| e.to_string())?;
    Ok(value)
}

/// Builds a [`Val`] straight from serde_json's reader, with a checkpoint per value.
#[derive(Clone, Copy)]
struct ValSeed<'b> {
    budget: &'b Budget,
}

impl<'de> serde::de::DeserializeSeed<'de> for ValSeed<'_> {
    type Value = Val;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Val, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for ValSeed<'_> {
    type Value = Val;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_unit<E>(self) -> Result<Val, E> {
        Ok(Val::Null)
    }
    fn visit_bool<E>(self, b: bool) -> Result<Val, E> {
        Ok(Val::Bool(b))
    }
    fn visit_i64<E>(self, n: i64) -> Result<Val, E> {
        Ok(Val::Num(Num::from_integral(n)))
    }
    fn visit_u64<E>(self, n: u64) -> Result<Val, E> {
        Ok(Val::Num(Num::from_integral(n)))
    }
    fn visit_f64<E>(self, n: f64) -> Result<Val, E> {
        Ok(Val::Num(Num::Float(n)))
    }
    fn visit_str<E>(self, s: &str) -> Result<Val, E> {
        Ok(Val::from(s.to_string()))
    }
    fn visit_string<E>(self, s: String) -> Result<Val, E> {
        Ok(Val::from(s))
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Val, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(self)? {
            self.budget.tick();
            items.push(item);
        }
        Ok(items.into_iter().collect())
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Val, A::Error> {
        let mut entries = jaq_json::Map::default();
        while let Some(key) = map.next_key::<String>()? {
            let value = map.next_value_seed(self)?;
            self.budget.tick();
            entries.insert(Val::from(key), value);
        }
        Ok(Val::obj(entries))
    }
}

/// `indices($i)`: where `$i` occurs in the input (a string in a string, counted in characters; a
/// list in a list; an element in a list), with a checkpoint per place tried.
fn indices(mut cv: jaq_core::Cv<'_, Eval>) -> ValXs<'_, Val> {
    let budget = budget(&cv.0);
    let needle = cv.0.pop_var();
    let found: Vec<usize> = match (&cv.1, &needle) {
        (Val::TStr(_), Val::TStr(y)) | (Val::BStr(_), Val::BStr(y)) if y.is_empty() => Vec::new(),
        (Val::TStr(x), Val::TStr(y)) => {
            let mut out = Vec::new();
            for (n, (start, _, _)) in bstr::ByteSlice::char_indices(&x[..]).enumerate() {
                budget.tick();
                match x.get(start..start + y.len()) {
                    Some(window) if window == &y[..] => out.push(n),
                    Some(_) => {}
                    None => break,
                }
            }
            out
        }
        (Val::BStr(x), Val::BStr(y)) => {
            let mut out = Vec::new();
            for (n, window) in x.windows(y.len()).enumerate() {
                budget.tick();
                if window == &y[..] {
                    out.push(n);
                }
            }
            out
        }
        (Val::Arr(_), Val::Arr(y)) if y.is_empty() => Vec::new(),
        (Val::Arr(x), Val::Arr(y)) => {
            let mut out = Vec::new();
            for (n, window) in x.windows(y.len()).enumerate() {
                budget.tick();
                if window == &y[..] {
                    out.push(n);
                }
            }
            out
        }
        (Val::Arr(x), y) => {
            let mut out = Vec::new();
            for (n, item) in x.iter().enumerate() {
                budget.tick();
                if item == y {
                    out.push(n);
                }
            }
            out
        }
        (x, y) => return bome(Err(Error::index(x.clone(), y.clone()))),
    };
    box_once(Ok(found
        .into_iter()
        .map(|n| Val::from(n as isize))
        .collect()))
}

/// `contains($b)`: whether the input contains `$b` (a substring; every element of a list in some
/// element; every entry of a mapping in the entry of the same key; otherwise equality), with a
/// checkpoint per comparison.
fn contains(mut cv: jaq_core::Cv<'_, Eval>) -> ValXs<'_, Val> {
    let budget = budget(&cv.0);
    let b = cv.0.pop_var();
    let a = cv.1;
    box_once(Ok(Val::from(contained(&a, &b, budget))))
}

fn contained(a: &Val, b: &Val, budget: &Budget) -> bool {
    budget.tick();
    match (a, b) {
        (Val::TStr(l), Val::TStr(r)) | (Val::BStr(l), Val::BStr(r)) => {
            bstr::ByteSlice::contains_str(&l[..], &r[..])
        }
        (Val::Arr(l), Val::Arr(r)) => r.iter().all(|r| l.iter().any(|l| contained(l, r, budget))),
        (Val::Obj(l), Val::Obj(r)) => r
            .iter()
            .all(|(k, r)| l.get(k).is_some_and(|l| contained(l, r, budget))),
        _ => a == b,
    }
}

/// `..`: the input and every value inside it, depth first, parents before their children, with
/// a checkpoint per value.
fn recurse(cv: jaq_core::Cv<'_, Eval>) -> ValXs<'_, Val> {
    let budget = budget(&cv.0);
    let mut stack: Vec<std::vec::IntoIter<Val>> = vec![vec![cv.1].into_iter()];
    Box::new(std::iter::from_fn(move || {
        loop {
            let top = stack.last_mut()?;
            let Some(value) = top.next() else {
                stack.pop();
                continue;
            };
            budget.tick();
            let children: Vec<Val> = match &value {
                Val::Arr(items) => items.iter().cloned().collect(),
                Val::Obj(map) => map.values().cloned().collect(),
                _ => Vec::new(),
            };
            if !children.is_empty() {
                stack.push(children.into_iter());
            }
            return Some(Ok(value));
        }
    }))
}

/// `.. |= f`: `f` applied from the leaves up, as jaq does it, with a checkpoint per value.
fn recurse_update<'a>(
    value: Val,
    f: &dyn Fn(Val) -> ValXs<'a, Val>,
    budget: &Budget,
) -> ValXs<'a, Val> {
    budget.tick();
    let updated = value.map_values(jaq_core::path::Opt::Optional, |v| {
        recurse_update(v, f, budget)
    });
    jaq_core::box_iter::then(updated, f)
}

/// `l op r` for a comparison operator: jq's order of values (null, false, true, numbers,
/// strings, lists, mappings), decided with a checkpoint per pair of values compared.
fn compare(mut cv: jaq_core::Cv<'_, Eval>, op: Cmp) -> ValXs<'_, Val> {
    let budget = budget(&cv.0);
    let r = cv.0.pop_var();
    let l = cv.0.pop_var();
    // Equality is decided as jaq decides it (a mapping equals one with the same entries in
    // another order); only the order needs the full comparison.
    let result = match op {
        Cmp::Eq => equal(&l, &r, budget),
        Cmp::Ne => !equal(&l, &r, budget),
        Cmp::Lt => order(&l, &r, budget).is_lt(),
        Cmp::Le => order(&l, &r, budget).is_le(),
        Cmp::Gt => order(&l, &r, budget).is_gt(),
        Cmp::Ge => order(&l, &r, budget).is_ge(),
    };
    box_once(Ok(Val::Bool(result)))
}

/// `l == r` as jaq decides it, with a checkpoint per pair of values compared.
fn equal(l: &Val, r: &Val, budget: &Budget) -> bool {
    budget.tick();
    match (l, r) {
        (Val::Arr(x), Val::Arr(y)) => {
            std::sync::Arc::ptr_eq(x, y)
                || (x.len() == y.len() && x.iter().zip(y.iter()).all(|(a, b)| equal(a, b, budget)))
        }
        (Val::Obj(x), Val::Obj(y)) => {
            std::sync::Arc::ptr_eq(x, y)
                || (x.len() == y.len()
                    && x.iter()
                        .all(|(k, a)| y.get(k).is_some_and(|b| equal(a, b, budget))))
        }
        _ => l == r,
    }
}

/// jq's order of `l` and `r` as jaq decides it, with a checkpoint per pair of values compared.
fn order(l: &Val, r: &Val, budget: &Budget) -> std::cmp::Ordering {
    use std::cmp::Ordering::Equal;
    budget.tick();
    match (l, r) {
        (Val::Arr(x), Val::Arr(y)) => {
            for (a, b) in x.iter().zip(y.iter()) {
                match order(a, b, budget) {
                    Equal => {}
                    other => return other,
                }
            }
            x.len().cmp(&y.len())
        }
        (Val::Obj(x), Val::Obj(y)) if !x.is_empty() && !y.is_empty() => {
            let mut xs: Vec<(&Val, &Val)> = x.iter().collect();
            let mut ys: Vec<(&Val, &Val)> = y.iter().collect();
            xs.sort_by(|a, b| order(a.0, b.0, budget));
            ys.sort_by(|a, b| order(a.0, b.0, budget));
            for (a, b) in xs.iter().zip(ys.iter()) {
                match order(a.0, b.0, budget) {
                    Equal => {}
                    other => return other,
                }
            }
            match xs.len().cmp(&ys.len()) {
                Equal => {}
                other => return other,
            }
            for (a, b) in xs.iter().zip(ys.iter()) {
                match order(a.1, b.1, budget) {
                    Equal => {}
                    other => return other,
                }
            }
            Equal
        }
        _ => l.cmp(r),
    }
}

/// Bytes a big integer takes.
fn big_bytes(n: &Num) -> u64 {
    match n {
        Num::BigInt(i) => i.bits() / 8 + 8,
        _ => 16,
    }
}

/// `l * r`: a string repeated, and a product of big integers, are reserved against the memory
/// limit before they are made (a product of integers costs time beyond proportion too, so it is
/// reserved several times over).
fn mul(mut cv: jaq_core::Cv<'_, Eval>) -> ValXs<'_, Val> {
    let budget = budget(&cv.0);
    let r = cv.0.pop_var();
    let l = cv.0.pop_var();
    match (&l, &r) {
        (Val::TStr(s) | Val::BStr(s), Val::Num(n)) | (Val::Num(n), Val::TStr(s) | Val::BStr(s)) => {
            let times = match n {
                Num::Int(i) => (*i).max(0) as u64,
                Num::BigInt(_) if Val::Num(n.clone()) < Val::from(0isize) => 0,
                Num::BigInt(_) => u64::MAX,
                _ => 0,
            };
            budget.reserve((s.len() as u64).saturating_mul(times));
        }
        (Val::Num(a @ Num::BigInt(_)), Val::Num(b))
        | (Val::Num(b), Val::Num(a @ Num::BigInt(_))) => {
            budget.reserve((big_bytes(a) + big_bytes(b)).saturating_mul(8));
        }
        _ => {}
    }
    bome(l * r)
}

/// `l / r`: a string split into pieces is counted and reserved before it is made.
fn div(mut cv: jaq_core::Cv<'_, Eval>) -> ValXs<'_, Val> {
    let budget = budget(&cv.0);
    let r = cv.0.pop_var();
    let l = cv.0.pop_var();
    if let (Val::TStr(x), Val::TStr(y)) | (Val::BStr(x), Val::BStr(y)) = (&l, &r) {
        let pieces = if y.is_empty() {
            bstr::ByteSlice::chars(&x[..]).count()
        } else {
            bstr::ByteSlice::find_iter(&x[..], &y[..]).count() + 1
        } as u64;
        budget.reserve(pieces.saturating_mul(PIECE_BYTES));
    }
    bome(l / r)
}

/// Before `matches`, `split_matches` and `split_`: counts the matches of `$re` with `$flags` in
/// the input and reserves what their values will take. Passes the input on; a regular expression
/// or flags that are not valid are left for the function itself to report.
fn guard_regex(mut cv: jaq_core::Cv<'_, Eval>) -> ValXs<'_, Val> {
    let budget = budget(&cv.0);
    let flags = cv.0.pop_var();
    let re = cv.0.pop_var();
    if let (Val::TStr(text), Val::TStr(re), Val::TStr(flags)) = (&cv.1, &re, &flags)
        && let (Ok(re), Ok(flags)) = (std::str::from_utf8(re), std::str::from_utf8(flags))
        && let Some(regex) = compile_regex(re, flags)
    {
        let global = flags.contains('g');
        let skip_empty = flags.contains('n');
        let groups = regex.captures_len() as u64;
        let mut count = 0u64;
        for m in regex.find_iter(text) {
            if skip_empty && m.as_bytes().is_empty() {
                continue;
            }
            count += 1;
            if count.is_multiple_of(1024) {
                budget.tick();
            }
            if !global {
                break;
            }
        }
        let per_match = MATCH_BYTES + GROUP_BYTES * groups + PIECE_BYTES;
        budget.reserve((count + 1).saturating_mul(per_match));
    }
    box_once(Ok(cv.1))
}

/// The regular expression jq's `matches` would use: the flags `i`, `x`, `s`, `m`, `p`, `l`
/// change how it is built (`g` and `n` how it is applied). `None` for a pattern or flag jaq will
/// refuse itself.
fn compile_regex(re: &str, flags: &str) -> Option<regex_bites::bytes::Regex> {
    let mut builder = regex_bites::bytes::RegexBuilder::new(re);
    for flag in flags.chars() {
        match flag {
            'g' | 'n' => {}
            'i' => {
                builder.case_insensitive(true);
            }
            'x' => {
                builder.ignore_whitespace(true);
            }
            's' => {
                builder.dot_matches_new_line(true);
            }
            'm' => {
                builder.multi_line(true);
            }
            'p' => {
                builder.multi_line(true).dot_matches_new_line(true);
            }
            'l' => {
                builder.swap_greed(true);
            }
            _ => return None,
        }
    }
    builder.build().ok()
}

/// Before `explode`: reserves a number per character.
fn guard_explode(cv: jaq_core::Cv<'_, Eval>) -> ValXs<'_, Val> {
    if let Val::TStr(s) = &cv.1 {
        budget(&cv.0).reserve((s.len() as u64).saturating_mul(CHAR_BYTES));
    }
    box_once(Ok(cv.1))
}

/// Checks, without recursion, what an expression returns before anything else reads it: that it
/// nests at most [`MAX_JSON_DEPTH`] levels deep, and that its JSON would fit the memory limit (a
/// value may hold the same part many times over, and its JSON holds each copy). A checkpoint per
/// part.
pub(crate) fn check_output(value: &Val, budget: &Budget) {
    let mut stack: Vec<(&Val, usize)> = vec![(value, 0)];
    let mut bytes: u64 = 0;
    while let Some((value, depth)) = stack.pop() {
        budget.tick();
        bytes += match value {
            Val::TStr(s) | Val::BStr(s) => s.len() as u64 + 2,
            Val::Arr(items) => 2 + items.len() as u64,
            Val::Obj(map) => 2 + 2 * map.len() as u64,
            _ => 8,
        };
        if bytes > 1 << 16 {
            budget.reserve(bytes);
        }
        let children: BoxIter<'_, &Val> = match value {
            Val::Arr(items) => Box::new(items.iter()),
            Val::Obj(map) => Box::new(map.iter().flat_map(|(k, v)| [k, v])),
            _ => continue,
        };
        if depth >= MAX_JSON_DEPTH {
            budget.stop(Limit::Depth);
        }
        for child in children {
            stack.push((child, depth + 1));
        }
    }
    budget.reserve(bytes);
}
