//! Tests of the limits expressions run under: every runaway program of the hardening issue is
//! stopped with the limit it passed, and the guarded natives and operators give what jaq's give.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::*;

fn limits(timeout_ms: u64, memory: u64, stack: u64) -> EvalLimits {
    EvalLimits {
        timeout: Duration::from_millis(timeout_ms),
        memory_bytes: memory,
        stack_bytes: stack,
    }
}

/// Runs `code` on `input` on a thread with a large stack (as the engine's evaluation threads
/// have), under `limits`.
fn run_with(code: &str, input: Value, limits: EvalLimits) -> Result<Value, RunError> {
    let code = code.to_string();
    std::thread::Builder::new()
        .stack_size(256 << 20)
        .spawn(move || {
            let program = Program::compile(&code).expect("compiles");
            let budget = Budget::new(limits, None);
            program
                .run(json_to_val(&input), &budget)
                .map(|v| val_to_json(&v).expect("JSON"))
        })
        .unwrap()
        .join()
        .unwrap()
}

fn run(code: &str, input: Value) -> Result<Value, RunError> {
    run_with(code, input, EvalLimits::default())
}

fn limit_of(code: &str, input: Value, limits: EvalLimits) -> Limit {
    match run_with(code, input, limits) {
        Err(RunError::Limit(limit)) => limit,
        other => panic!("`{code}` was not stopped by a limit: {other:?}"),
    }
}

const SMALL: u64 = 8 << 20;

#[test]
fn unbounded_recursion_stops_at_the_stack_limit() {
    for code in [
        "def f: 1 + f; f",
        "def f: [f]; f",
        "def f(g): g | f(g + 1); [f(1)]",
    ] {
        assert_eq!(
            limit_of(code, json!(null), limits(10_000, 1 << 30, 1 << 20)),
            Limit::Stack(1 << 20),
            "{code}"
        );
    }
}

#[test]
fn endless_loops_stop_at_the_timeout() {
    for code in [
        "last(repeat(1))",
        "[limit(1000000000000; repeat(1))] | length",
        "def f: f; f",
        "last(range(0; 1; 0))",
        "until(false; .)",
        "[.[]?] | last(repeat(.))",
    ] {
        let started = Instant::now();
        assert_eq!(
            limit_of(code, json!(1), limits(200, 1 << 30, 8 << 20)),
            Limit::Time(Duration::from_millis(200)),
            "{code}"
        );
        assert!(started.elapsed() < Duration::from_secs(5), "{code}");
    }
}

#[test]
fn cancellation_stops_an_expression() {
    let cancel = Arc::new(AtomicBool::new(false));
    let flag = cancel.clone();
    let handle = std::thread::spawn(move || {
        let program = Program::compile("last(repeat(1))").unwrap();
        let budget = Budget::new(limits(60_000, 1 << 30, 1 << 20), Some(flag));
        program.run(Val::Null, &budget)
    });
    std::thread::sleep(Duration::from_millis(50));
    cancel.store(true, Ordering::Relaxed);
    assert_eq!(
        handle.join().unwrap(),
        Err(RunError::Limit(Limit::Cancelled))
    );
}

#[test]
fn growing_values_stop_at_the_memory_limit() {
    for code in [
        "[range(1e9)] | length",
        "reduce range(40) as $i (\"ab\"; . + .)",
        "\"x\" * 10000000000",
        "\"xy\" * (1e12 | floor)",
        "[limit(1e9; repeat(\"abcdefgh\"))] | length",
        "reduce range(1e9) as $i ([]; . + [$i])",
        "reduce range(64) as $i (3; . * .) | tostring | length",
        "(\"a\" * 4000000) / \"\" | length",
        "(\"a\" * 2000000) | [match(\"a\"; \"g\")] | length",
        "(\"a\" * 2000000) | gsub(\"a\"; \"bb\") | length",
        "(\"a\" * 4000000) | explode | length",
        "(\"a\" * 4000000) | splits(\"\") | length",
        "[paths] | length",
    ] {
        let input = json!(null);
        let got = run_with(code, input, limits(30_000, SMALL, 8 << 20));
        // `[paths]` on null has nothing to grow: it is here to check that it is not stopped.
        if code == "[paths] | length" {
            assert_eq!(got, Ok(json!(0)));
            continue;
        }
        assert_eq!(got, Err(RunError::Limit(Limit::Memory(SMALL))), "{code}");
    }
}

#[test]
fn deep_values_are_refused_when_read_and_when_returned() {
    // fromjson of deeply nested text (a webhook field), also as a form field would carry it.
    let deep = format!("{}{}", "[".repeat(200_000), "]".repeat(200_000));
    let got = run(".payload | fromjson", json!({"payload": deep}));
    assert_eq!(got, Err(RunError::Limit(Limit::Depth)));
    let unclosed = "[".repeat(200_000);
    let got = run(".payload | fromjson", json!({"payload": unclosed}));
    assert_eq!(got, Err(RunError::Limit(Limit::Depth)));
    // `try` cannot catch a limit.
    let got = run(
        "try (.payload | fromjson) catch \"caught\"",
        json!({"payload": deep}),
    );
    assert_eq!(got, Err(RunError::Limit(Limit::Depth)));
    // Nesting within the limit reads; ordinary errors stay catchable.
    let fine = format!("{}1{}", "[".repeat(100), "]".repeat(100));
    assert!(run("fromjson | flatten", json!(fine)).is_ok());
    assert_eq!(
        run("try fromjson catch \"caught\"", json!("{nope")),
        Ok(json!("caught"))
    );

    // A value built deep by a program: the program runs, returning it is refused.
    let t = template("'${{ reduce range(100000) as $i (null; [.]) }}'");
    let budget = Budget::new(EvalLimits::default(), None);
    let err = std::thread::Builder::new()
        .stack_size(256 << 20)
        .spawn(move || t.eval(&Val::Null, &budget).map(|_| ()))
        .unwrap()
        .join()
        .unwrap()
        .unwrap_err();
    assert_eq!(err.limit, Some(Limit::Depth));
    assert!(err.to_string().contains("nested deeper than 128"), "{err}");
    // Deep inside, shallow outside: fine.
    assert_eq!(
        run(
            "reduce range(100000) as $i (null; [.]) | length",
            json!(null)
        ),
        Ok(json!(1))
    );
}

fn template(src: &str) -> Template {
    let node = crate::yaml::parse(src).unwrap();
    let mut diags = Diagnostics::new("t.yaml");
    let t = Template::from_node(&node, &mut diags);
    assert!(diags.into_vec().is_empty());
    t
}

#[test]
fn values_that_hold_one_part_many_times_cannot_be_written_out() {
    // 2^64 copies of one number, held in 64 small arrays.
    let bomb = "reduce range(64) as $i (1; [., .])";
    for code in [
        format!("{bomb} | . == ({bomb})"),
        format!("{bomb} | . < ({bomb})"),
        format!("{bomb} | last(..)"),
        format!("{bomb} | [..] | length"),
        format!("{bomb} | tostring"),
        format!("{bomb} | tojson"),
        format!("{bomb} | \"\\(.)\""),
        format!("{bomb} | @text"),
        bomb.to_string(),
    ] {
        let started = Instant::now();
        let got = run_with(&code, json!(null), limits(2_000, SMALL, 8 << 20));
        assert!(
            matches!(got, Err(RunError::Limit(Limit::Memory(_) | Limit::Time(_)))),
            "{code}: {got:?}"
        );
        assert!(started.elapsed() < Duration::from_secs(5), "{code}");
    }
    // Its error message is cut short.
    let got = run_with(
        &format!("{bomb} | error"),
        json!(null),
        limits(10_000, SMALL, 8 << 20),
    );
    let Err(RunError::Failed(message)) = got else {
        panic!("{got:?}")
    };
    assert!(message.chars().count() <= 2000, "{}", message.len());
}

#[test]
fn limits_name_themselves_in_messages() {
    let t = template("'${{ last(repeat(1)) }}'");
    let budget = Budget::new(limits(100, SMALL, 1 << 20), None);
    let err = t.eval(&Val::Null, &budget).unwrap_err();
    assert_eq!(err.limit, Some(Limit::Time(Duration::from_millis(100))));
    assert_eq!(
        err.to_string(),
        "expression `${{ last(repeat(1)) }}` was stopped: it ran longer than limits.expression_timeout (100ms)"
    );
    assert!(
        Limit::Memory(5)
            .to_string()
            .contains("limits.expression_memory_bytes (5 bytes)")
    );
    assert!(
        Limit::Stack(7)
            .to_string()
            .contains("limits.expression_stack_bytes")
    );
}

/// Programs whose results must not change with the guards: compared with jaq's own natives.
#[test]
fn guarded_operators_and_natives_give_what_jaq_gives() {
    let cases: &[(&str, Value)] = &[
        ("[(1,2) * (3,4)]", json!([3, 4, 6, 8])),
        (
            "[\"ab\" * 3, 3 * \"ab\", \"ab\" * 0, \"ab\" * -1]",
            json!(["ababab", "ababab", null, null]),
        ),
        ("{a: {b: 1}} * {a: {c: 2}}", json!({"a": {"b": 1, "c": 2}})),
        (
            "9223372036854775807 * 2 | tostring",
            json!("18446744073709551614"),
        ),
        (
            "[6 / 3, (\"a,b,c\" / \",\"), (\"abc\" / \"\")]",
            json!([2.0, ["a", "b", "c"], ["a", "b", "c"]]),
        ),
        (".a *= 2 | .b /= 2", json!({"a": 6, "b": 2.0})),
        ("[.a, .b] as [$x, $y] | $x * $y", json!(12)),
        (
            "[[range(0; 10; 3)], [range(5; 0; -2)], [range(3)]]",
            json!([[0, 3, 6, 9], [5, 3, 1], [0, 1, 2]]),
        ),
        ("[paths]", json!([["a"], ["b"]])),
        ("[path(..)]", json!([[], ["a"], ["b"]])),
        ("[path_value(.a)]", json!([[["a"], 3]])),
        (
            "\"[1,{\\\"a\\\":null}]\" | fromjson",
            json!([1, {"a": null}]),
        ),
        ("\"a,b, cd, efg\" | [indices(\", \")]", json!([[3, 7]])),
        (
            "[0,1,2,1,3,1,2] | [indices(1), indices([1,2]), index(1), rindex(1)]",
            json!([[1, 3, 5], [1, 5], 1, 5]),
        ),
        ("\"añb\" | indices(\"b\")", json!([2])),
        (
            "[\"foobar\" | contains(\"bar\"), ([1,[2,3]] | contains([[2]])), ({a: {b: 1, c: 2}} | contains({a: {b: 1}})), (1 | contains(1))]",
            json!([true, true, true, true]),
        ),
        (
            "[\"abc\" | test(\"B\"; \"i\"), [match(\"a(b)?\"; \"g\") | .string], (\"a-b-c\" | split(\"-\"; null)), (\"aXbxc\" | gsub(\"x\"; \"_\"; \"i\"))]",
            json!([true, ["ab"], ["a", "b", "c"], "a_b_c"]),
        ),
        ("\"héllo\" | explode | implode", json!("héllo")),
        (
            "\"a\\(1)b\\(\"x\")c\\([1, {a: null}])\\(null)\"",
            json!("a1bxc[1,{\"a\":null}]null"),
        ),
        (
            "[tojson, tostring, (.a | tostring), @text, @json, @json \"v=\\(.a)\"]",
            json!([
                "{\"a\":3,\"b\":4}",
                "{\"a\":3,\"b\":4}",
                "3",
                "{\"a\":3,\"b\":4}",
                "{\"a\":3,\"b\":4}",
                "v=3"
            ]),
        ),
        (
            "[1.5, \"é\\n\", [true]] | tojson",
            json!("[1.5,\"é\\n\",[true]]"),
        ),
        (
            "[1 == 1.0, {a: 1, b: 2} == {b: 2, a: 1}, [1,2] < [1,2,0], {a: 2} > {a: 1, b: 0}, {b: 1} > {a: 9}, null < false, \"a\" >= \"a\", [] != {}, 2 <= 1]",
            json!([true, true, true, false, true, true, true, true, false]),
        ),
        (
            "[.[] | select(. > 3)], ([3, 1, 2] | sort), ([{a: 2}, {a: 1}] | min_by(.a))",
            json!(null),
        ),
        ("[..]", json!([{"a": 3, "b": 4}, 3, 4])),
        (
            "[paths(type == \"number\")], [paths(..)], [getpath([\"a\"])]",
            json!(null),
        ),
        (
            "(.. |= (if type == \"number\" then . + 1 else . end)), walk(if type == \"number\" then . * 10 else . end)",
            json!(null),
        ),
        ("[.. | numbers] | add", json!(7)),
        (
            "[\"a\" | capture(\"(?<x>a)\"), (\"test 123 45\" | [scan(\"[0-9]+\")])]",
            json!([{"x": "a"}, ["123", "45"]]),
        ),
    ];
    let input = json!({"a": 3, "b": 4});
    for (code, want) in cases {
        if want.is_null() {
            // Compared with jaq's own evaluation of the same program instead.
            let all = format!("[{code}]");
            let got = run(&all, input.clone());
            assert_eq!(got, Ok(jaq_unguarded(&all, input.clone())), "{code}");
        } else {
            let got = run(code, input.clone());
            assert_eq!(got.as_ref(), Ok(want), "{code}");
        }
    }
}

/// `code` run by jaq as it comes, without Weft's rewriting and natives (as the first version of
/// Weft ran it), all its outputs collected.
fn jaq_unguarded(code: &str, input: Value) -> Value {
    use jaq_core::load::{Arena, File, Loader};
    let arena = Arena::default();
    let defs = jaq_core::defs()
        .chain(jaq_std::defs())
        .chain(jaq_json::defs());
    let loader = Loader::new(defs);
    let modules = loader.load(&arena, File { code, path: () }).unwrap();
    let filter = jaq_core::Compiler::default()
        .with_funs(
            jaq_core::funs::<jaq_core::data::JustLut<Val>>()
                .chain(jaq_std::funs())
                .chain(jaq_json::funs()),
        )
        .compile(modules)
        .unwrap();
    let ctx =
        jaq_core::Ctx::<jaq_core::data::JustLut<Val>>::new(&filter.lut, jaq_core::Vars::new([]));
    let outputs: Vec<Val> = filter
        .id
        .run((ctx, json_to_val(&input)))
        .map(|r| jaq_core::unwrap_valr(r).unwrap())
        .collect();
    let mut values: Vec<Value> = outputs.iter().map(|v| val_to_json(v).unwrap()).collect();
    if values.len() == 1 {
        values.pop().unwrap()
    } else {
        Value::Array(values)
    }
}

#[test]
fn ordinary_programs_are_not_stopped_by_the_default_limits() {
    let order = json!({"lines": (0..1000).map(|i| json!({"qty": i % 5, "price": 2.5})).collect::<Vec<_>>()});
    assert_eq!(
        run("[.lines[] | .qty * .price] | add", order.clone()),
        Ok(json!(5000.0))
    );
    assert!(run("[range(100000)] | length", json!(null)).is_ok());
    assert!(
        run(
            "def f: if . < 2000 then . + 1 | f else . end; 0 | f",
            json!(null)
        )
        .is_ok()
    );
    assert_eq!(
        run(
            "def f: if . < 1000 then [(. + 1 | f)] else . end; 0 | f | flatten",
            json!(null)
        ),
        Ok(json!([1000]))
    );
}

#[test]
#[ignore = "a measurement, run by hand"]
fn measure_recursion_depth() {
    // How deep jq recursion gets in 16 MiB of stack.
    for code in [
        "def f: if . < $n then . + 1 | f | . + 0 else . end; 0 | f",
        "def f: if . < $n then [(. + 1 | f)] else . end; 0 | f | flatten | length",
    ] {
        let (mut lo, mut hi) = (1u64, 1_000_000u64);
        while lo + 1 < hi {
            let mid = (lo + hi) / 2;
            let c = code.replace("$n", &mid.to_string());
            match run_with(&c, json!(null), limits(60_000, 1 << 32, 16 << 20)) {
                Ok(_) => lo = mid,
                Err(_) => hi = mid,
            }
        }
        eprintln!(
            "{code}: {lo} levels in 16 MiB, {} bytes a level",
            (16u64 << 20) / lo
        );
    }
    // Bytes of memory a level of nesting takes.
    for code in [
        "reduce range(1e9) as $i (null; [.])",
        "reduce range(1e9) as $i (null; {a: .})",
        "reduce range(1e9) as $i (null; [., .])",
        "reduce range(1e9) as $i (null; {($i|tostring): .})",
    ] {
        let memory = 16u64 << 20;
        let c = format!("{code} | length");
        let levels = format!("[limit(1e9; {code} | ..)] | length");
        let got = run_with(&c, json!(null), limits(60_000, memory, 1 << 30));
        // Count how many levels fit: reduce over a range, stopping before the limit.
        let (mut lo, mut hi) = (1u64, 10_000_000u64);
        while lo + 1 < hi {
            let mid = (lo + hi) / 2;
            let c = code.replace("1e9", &mid.to_string()) + " | length";
            match run_with(&c, json!(null), limits(60_000, memory, 1 << 30)) {
                Ok(_) => lo = mid,
                Err(_) => hi = mid,
            }
        }
        let _ = levels;
        eprintln!(
            "{code}: {got:?}; {lo} levels in 16 MiB: {} bytes a level",
            memory / lo
        );
    }
}

#[test]
#[ignore = "a measurement, run by hand: WEFT_DEPTH=n WEFT_STACK=bytes WEFT_CODE=…"]
fn measure_drop_stack() {
    let n: u64 = std::env::var("WEFT_DEPTH").unwrap().parse().unwrap();
    let stack: usize = std::env::var("WEFT_STACK").unwrap().parse().unwrap();
    let code = std::env::var("WEFT_CODE")
        .unwrap()
        .replace("$n", &n.to_string());
    // Build the value on a big stack, drop it on a thread of `stack` bytes.
    let value = std::thread::Builder::new()
        .stack_size(1 << 30)
        .spawn(move || {
            let program = Program::compile(&code).unwrap();
            let budget = Budget::new(limits(600_000, 1 << 34, 1 << 29), None);
            let v = program.run(Val::Null, &budget).unwrap();
            // Send across as a boxed value (Val is Send).
            v
        })
        .unwrap()
        .join()
        .unwrap();
    std::thread::Builder::new()
        .stack_size(stack)
        .spawn(move || drop(value))
        .unwrap()
        .join()
        .unwrap();
    eprintln!("dropped {n} levels on {stack} bytes");
}
