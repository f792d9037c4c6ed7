//! Rewrites a parsed jq program so that the operators whose result can be much larger than their
//! operands call guarded natives: `l * r` becomes a call of [`super::natives::MUL`] with `l` and `r`,
//! `l / r` of [`super::natives::DIV`], and `l *= r` becomes `r as $x | l |= MUL(.; $x)` (jq's own
//! definition of the update operators); the comparisons `==`, `<`, … call natives that compare
//! under the budget, `..` calls a `recurse` with a checkpoint per value, and a string interpolation `"…\(f)…"` writes `f`'s values
//! through [`super::natives::TEXT`]. The library's definitions are rewritten the same way. The names cannot be written in a program, so no program can
//! call them or shadow them. Outputs and their order stay as jaq gives them: a native's arguments
//! are bound first argument outermost, as jaq's operators take the cartesian product.

use jaq_core::load::lex::StrPart;
use jaq_core::load::parse::{BinaryOp, Pattern, Term};
use jaq_core::ops::Math;
use jaq_core::path::Part;

use super::natives::{DIV, MUL, RECURSE, TEXT, compare_name};

/// The variable `l *= r` binds `r` to; it cannot be written in a program.
const RHS: &str = "$weft rhs";

fn guarded(op: &Math) -> Option<&'static str> {
    match op {
        Math::Mul => Some(MUL),
        Math::Div => Some(DIV),
        _ => None,
    }
}

/// Rewrites `term` in place (see the module docs).
pub(crate) fn guard_operators(term: &mut Term<&str>) {
    match term {
        Term::BinOp(l, op, r) => {
            guard_operators(l);
            guard_operators(r);
            if let BinaryOp::Pipe(Some(pattern)) = op {
                guard_pattern(pattern);
            }
            let name = match op {
                BinaryOp::Math(m) | BinaryOp::UpdateMath(m) => guarded(m),
                BinaryOp::Cmp(c) => Some(compare_name(c)),
                _ => None,
            };
            if let Some(name) = name {
                let Term::BinOp(l, op, r) = std::mem::take(term) else {
                    unreachable!("matched above")
                };
                *term = match op {
                    BinaryOp::UpdateMath(_) => Term::BinOp(
                        r,
                        BinaryOp::Pipe(Some(Pattern::Var(RHS))),
                        Box::new(Term::BinOp(
                            l,
                            BinaryOp::Update,
                            Box::new(Term::Call(name, vec![Term::Id, Term::Var(RHS)])),
                        )),
                    ),
                    _ => Term::Call(name, vec![*l, *r]),
                };
            }
        }
        Term::Str(format, parts) => {
            for part in parts {
                if let StrPart::Term(t) = part {
                    guard_operators(t);
                    if format.is_none() {
                        // `"…\(t)…"` writes `t`'s values as text: written under the budget.
                        let inner = std::mem::take(t);
                        *t = Term::BinOp(
                            Box::new(inner),
                            BinaryOp::Pipe(None),
                            Box::new(Term::Call(TEXT, Vec::new())),
                        );
                    }
                }
            }
        }
        Term::Arr(Some(t)) | Term::Neg(t) | Term::Label(_, t) => guard_operators(t),
        Term::Recurse => *term = Term::Call(RECURSE, Vec::new()),
        Term::Obj(entries) => {
            for (k, v) in entries {
                guard_operators(k);
                if let Some(v) = v {
                    guard_operators(v);
                }
            }
        }
        Term::Fold(_, xs, pattern, args) => {
            guard_operators(xs);
            guard_pattern(pattern);
            args.iter_mut().for_each(guard_operators);
        }
        Term::TryCatch(t, c) => {
            guard_operators(t);
            if let Some(c) = c {
                guard_operators(c);
            }
        }
        Term::IfThenElse(branches, otherwise) => {
            for (c, t) in branches {
                guard_operators(c);
                guard_operators(t);
            }
            if let Some(o) = otherwise {
                guard_operators(o);
            }
        }
        Term::Def(defs, t) => {
            for d in defs {
                guard_operators(&mut d.body);
            }
            guard_operators(t);
        }
        Term::Call(_, args) => args.iter_mut().for_each(guard_operators),
        Term::Path(base, path) => {
            guard_operators(base);
            for (part, _) in &mut path.0 {
                match part {
                    Part::Index(t) => guard_operators(t),
                    Part::Range(a, b) => {
                        a.iter_mut().chain(b.iter_mut()).for_each(guard_operators);
                    }
                }
            }
        }
        _ => {}
    }
}

fn guard_pattern(pattern: &mut Pattern<&str>) {
    match pattern {
        Pattern::Var(_) => {}
        Pattern::Arr(items) => items.iter_mut().for_each(guard_pattern),
        Pattern::Obj(entries) => {
            for (k, p) in entries {
                guard_operators(k);
                guard_pattern(p);
            }
        }
    }
}

/// Renames the calls in a definition of [`super::natives::GUARDED_DEFS`] to the guarded natives.
pub(crate) fn rename_calls(term: &mut Term<&'static str>) {
    match term {
        Term::Call(name, args) => {
            if let Some(new) = super::natives::rename_guarded(name) {
                *name = new;
            }
            args.iter_mut().for_each(rename_calls);
        }
        Term::BinOp(l, _, r) => {
            rename_calls(l);
            rename_calls(r);
        }
        _ => {}
    }
}
